//! cargo-fuzz target `cron_tz`: see `appliance::fuzzing::cron_tz`, which `tests/fuzz_corpus.rs`
//! also replays the corpus through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| appliance::fuzzing::cron_tz(data));
