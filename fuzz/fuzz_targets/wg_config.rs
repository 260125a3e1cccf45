//! cargo-fuzz target `wg_config`: see `appliance::fuzzing::wg_config`, which `tests/fuzz_corpus.rs`
//! also replays the corpus through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| appliance::fuzzing::wg_config(data));
