//! `cargo fuzz run mol2`: see fuzz/README.md. The check lives in dockyard-common so that
//! `cargo test` replays fuzz/regressions/mol2/ without a fuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dockyard_common::fuzzing::mol2(data));
