//! Benchmarks (not tests): each starts the real binaries and prints one line of figures.

mod dispatch;
mod docking;
mod procs;
mod scale;

pub use dispatch::{dispatch, DispatchArgs};
pub use docking::{docking, DockingArgs};
pub use scale::{scale, ScaleArgs};
