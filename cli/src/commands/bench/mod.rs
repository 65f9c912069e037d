//! Benchmarks (not tests): each starts the real binaries and prints one line of figures.

mod compression;
mod disk;
mod dispatch;
mod docking;
mod funnel;
mod obrms;
mod per_request;
mod plain_loop;
mod procs;
mod redock;
mod redock_set;
mod redock_summary;
mod scale;

pub use compression::{compression, CompressionArgs};
pub use dispatch::{dispatch, DispatchArgs};
pub use docking::{docking, DockingArgs};
pub use funnel::{funnel, FunnelArgs};
pub use redock::{redock, RedockArgs, REDOCK_HELP};
pub use scale::{scale, ScaleArgs};
