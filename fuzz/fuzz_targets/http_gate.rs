//! cargo-fuzz target `http_gate`: see `appliance::fuzzing::http_gate`, which `tests/fuzz_corpus.rs`
//! also replays the corpus through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| appliance::fuzzing::http_gate(data));
