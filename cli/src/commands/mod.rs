//! One module per group of subcommands.

pub mod admin;
pub mod autoscale;
pub mod bench;
pub mod query;
pub mod results;
pub mod run;
pub mod stages;
pub mod submit;
pub mod top;
pub mod watch;
