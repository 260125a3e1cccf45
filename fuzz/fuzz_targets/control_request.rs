//! cargo-fuzz target `control_request`: see `appliance::fuzzing::control_request`, which `tests/fuzz_corpus.rs`
//! also replays the corpus through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| appliance::fuzzing::control_request(data));
