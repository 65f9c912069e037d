//! `cargo fuzz run vina_poses`: see fuzz/README.md. The check lives in dockyard-common so that
//! `cargo test` replays fuzz/regressions/vina_poses/ without a fuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dockyard_common::fuzzing::vina_poses(data));
