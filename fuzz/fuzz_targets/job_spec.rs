//! `cargo fuzz run job_spec`: see fuzz/README.md. The check lives in dockyard-common so that
//! `cargo test` replays fuzz/regressions/job_spec/ without a fuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dockyard_common::fuzzing::job_spec(data));
