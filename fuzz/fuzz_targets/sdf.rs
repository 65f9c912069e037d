//! `cargo fuzz run sdf`: see fuzz/README.md. The check lives in dockyard-common so that
//! `cargo test` replays fuzz/regressions/sdf/ without a fuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dockyard_common::fuzzing::sdf(data));
