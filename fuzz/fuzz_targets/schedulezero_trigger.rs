//! cargo-fuzz target `schedulezero_trigger`: see `appliance::fuzzing::schedulezero_trigger`,
//! which `tests/fuzz_corpus.rs` also replays the corpus through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| appliance::fuzzing::schedulezero_trigger(data));
