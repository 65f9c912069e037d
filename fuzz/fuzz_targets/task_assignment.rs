//! `cargo fuzz run task_assignment`: see fuzz/README.md. The check lives in dockyard-common so that
//! `cargo test` replays fuzz/regressions/task_assignment/ without a fuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dockyard_common::fuzzing::task_assignment(data));
