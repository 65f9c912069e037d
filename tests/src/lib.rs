//! `TestCluster`: the harness for Dockyard's cross-crate integration tests.
//!
//! It runs the REAL binaries as child processes — one `dockyard-coordinator` on
//! `127.0.0.1:0` with a temporary data folder, and any number of `dockyard-agent`s — so
//! the tests exercise exactly what operators run. The binaries are taken from the cargo
//! target folder next to the test executable (`target/debug/`); build them first with
//! `cargo build --workspace` (a plain `cargo test -p dockyard-tests` does not build other
//! packages' binaries).
//!
//! Every child's stderr (its log) goes to a file in the cluster's temporary folder; when a
//! test panics, the harness prints the tail of each log and kills every child (SIGKILL) as
//! the cluster is dropped. Set `DOCKYARD_TEST_KEEP=1` to keep the temporary folder.
//!
//! Timings default to short values (heartbeat 200 ms, lease 1000 ms, retry base 100 ms,
//! reconcile grace 3000 ms) so failure handling is exercised in seconds.

mod cluster;
pub mod fault_engine;
pub mod faults;
mod fixtures;
pub mod ha;
pub mod ha_secure;
pub mod metrics_scrape;
mod paths;
pub mod pki;
pub(crate) mod process;
pub mod proxy;
mod requests;
pub mod servers;
pub mod sled_audit;
pub mod slurm;

pub use dockyard_proto::v1 as pb;

pub use cluster::{AgentOptions, ClusterBuilder, TestCluster, WAIT};
pub use fixtures::{bench_field, ligand_1iep, read_shared, receptor_1iep, require_smina, require_vina, shared_data};
pub use paths::{bin_dir, binary, files_under};
pub use process::clean_command;
pub use process::processes_mentioning;
pub(crate) use process::tail;
pub use requests::{
    counts, describe_job, input, is_final, node_state, sleep_docking_request, sleep_funnel_request, sleep_request, stage, state, vec3,
    vina_1iep_request, with_token,
};
