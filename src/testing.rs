//! Test support shared by the unit tests and the benchmarks (hidden from the docs).
//!
//! Layer: outside the product's layers. Compiled only for `cargo test` and for targets that
//! enable the `testing` feature (the dev-dependency on ourselves does, so `benches/` and
//! `tests/` see it); a release build never contains it. No I/O, no clocks.

use std::net::Ipv4Addr;

/// A minimal IPv4 packet from `src` to `dst` carrying `payload`: version 4, a 20-byte header,
/// TTL 64, protocol 17 (UDP, though `payload` is not a UDP header), checksum left zero. What
/// the router checks (version, length, source and destination address) is real; nothing
/// behind it parses the rest.
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let len = 20 + payload.len();
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..].copy_from_slice(payload);
    p
}
