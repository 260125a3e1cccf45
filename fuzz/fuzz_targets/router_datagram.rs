//! cargo-fuzz target `router_datagram`: see `appliance::fuzzing::router_datagram`, which `tests/fuzz_corpus.rs`
//! also replays the corpus through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| appliance::fuzzing::router_datagram(data));
