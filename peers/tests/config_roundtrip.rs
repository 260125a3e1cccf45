//! `ClientConfig::parse(&c.render()) == Ok(c)` over many seeded random configs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use peers::{ClientConfig, Endpoint, Ipv4Net, PeerName, PresharedKey, PrivateKey};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn pick<T: Clone>(rng: &mut ChaCha20Rng, items: &[T]) -> T {
    items[rng.next_u32() as usize % items.len()].clone()
}

fn maybe(rng: &mut ChaCha20Rng) -> bool {
    rng.next_u32() % 2 == 0
}

fn random_config(rng: &mut ChaCha20Rng) -> ClientConfig {
    let name_chars: Vec<char> = "abcdefghijklmnopqrstuvwxyz0123456789_-".chars().collect();
    let name_len = 1 + rng.next_u32() as usize % 32;
    let name: String = (0..name_len).map(|_| pick(rng, &name_chars)).collect();
    let name = PeerName::new(&name).unwrap();

    let dns_count = rng.next_u32() % 3;
    let dns = (0..dns_count)
        .map(|_| {
            if maybe(rng) {
                IpAddr::V4(Ipv4Addr::from(rng.next_u32()))
            } else {
                let mut b = [0u8; 16];
                rng.fill_bytes(&mut b);
                IpAddr::V6(Ipv6Addr::from(b))
            }
        })
        .collect();

    let allowed_count = 1 + rng.next_u32() % 3;
    let allowed_ips = (0..allowed_count)
        .map(|_| Ipv4Net::new(Ipv4Addr::from(rng.next_u32()), (rng.next_u32() % 33) as u8).unwrap())
        .collect();

    let endpoint_text = pick(
        rng,
        &[
            "vpn.example.org",
            "203.0.113.9",
            "[2001:db8::7]",
            "host-1.crew_net.example",
        ],
    );
    let port = 1 + (rng.next_u32() % 65535) as u16;

    ClientConfig {
        private_key: maybe(rng).then(|| PrivateKey::generate(rng)),
        address: Ipv4Addr::from(rng.next_u32()),
        dns,
        mtu: rng.next_u32() as u16,
        server_public_key: PrivateKey::generate(rng).public_key(),
        preshared_key: maybe(rng).then(|| PresharedKey::generate(rng)),
        endpoint: Endpoint::parse(endpoint_text, port).unwrap(),
        allowed_ips,
        persistent_keepalive: maybe(rng).then(|| rng.next_u32() as u16),
        name: maybe(rng).then(|| name.to_string()),
    }
}

#[test]
fn random_configs_round_trip() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x5eed);
    for _ in 0..500 {
        let c = random_config(&mut rng);
        let text = c.render();
        assert!(text.ends_with('\n') && !text.ends_with("\n\n"), "{text}");
        assert_eq!(ClientConfig::parse(&text), Ok(c), "{text}");
    }
}
