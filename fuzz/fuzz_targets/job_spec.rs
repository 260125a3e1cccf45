//! cargo-fuzz target `job_spec`: see `appliance::fuzzing::job_spec`, which `tests/fuzz_corpus.rs`
//! also replays the corpus through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| appliance::fuzzing::job_spec(data));
