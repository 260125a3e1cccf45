//! WireGuard keys: Curve25519 public and private keys and the optional preshared key.
//!
//! Layer: pure edge type. This module owns the three 32-byte key types and their base64 text
//! form (standard alphabet, padded: 44 characters ending in `=`, exactly what `wg genkey` and
//! wg-quick configs use). It touches no OS randomness: generation takes the caller's
//! `CryptoRngCore`. Contract: every key value is exactly 32 bytes; `parse(to_base64(k)) == k`;
//! a [`PublicKey`] is never a low-order point nor a non-canonical encoding (see
//! [`PublicKey::from_bytes`]), so every path that reads a key (CLI, API, control socket, stored
//! rows, configs) refuses them;
//! the `Debug` output of a [`PrivateKey`] or [`PresharedKey`] never contains key material, and
//! neither type implements `Display`, so secrets reach text only through an explicit
//! `to_base64()`.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand_core::CryptoRngCore;
use x25519_dalek::StaticSecret;

/// Why a text could not be read as a WireGuard key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text was empty or only whitespace.
    #[error("no key given: a WireGuard key is 44 characters of base64 ending in '='")]
    Empty,
    /// The text is not standard, padded base64.
    #[error("key is not valid base64: a WireGuard key is 44 characters of base64 ending in '='")]
    InvalidBase64,
    /// The text is base64 but does not decode to 32 bytes.
    #[error("key decodes to {len} bytes; a WireGuard key is exactly 32 bytes")]
    WrongLength {
        /// Number of bytes the text decoded to.
        len: usize,
    },
    /// (Public keys only.) The key is one of the X25519 points of order 1, 2, 4 or 8. Any
    /// Diffie-Hellman with it gives the all-zero secret, so anyone could complete a handshake
    /// as this "peer" without a private key; no real device has such a key.
    #[error("public key is a low-order point: no device has this key; paste the key from the WireGuard app")]
    LowOrder,
    /// (Public keys only.) The 32 bytes, read as a little-endian number, are at least
    /// p = 2^255 - 19 (this includes every value with the top bit set). X25519 would reduce
    /// them to another key's point; `wg pubkey` and every WireGuard app print keys below p.
    #[error("public key is not in canonical form (its value is not below 2^255-19): no device has this key; paste the key from the WireGuard app")]
    NonCanonical,
}

fn decode(s: &str) -> Result<[u8; 32], KeyError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(KeyError::Empty);
    }
    let bytes = STANDARD.decode(s).map_err(|_| KeyError::InvalidBase64)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::WrongLength { len: bytes.len() })
}

/// A Curve25519 public key: a peer's identity on the tunnel.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

/// The u-coordinates of the X25519 points of small order (1, 2, 4, 8), with the top bit clear;
/// libsodium's `has_small_order` blocklist. 0 and 1 also have the non-canonical encodings p and
/// p + 1, listed too; the top bit is ignored when comparing (X25519 masks it).
const SMALL_ORDER: [[u8; 32]; 7] = {
    let mut p_minus_1 = [0xff; 32];
    p_minus_1[0] = 0xec;
    p_minus_1[31] = 0x7f;
    let mut p = p_minus_1;
    p[0] = 0xed;
    let mut p_plus_1 = p_minus_1;
    p_plus_1[0] = 0xee;
    let mut one = [0; 32];
    one[0] = 1;
    [
        // 0 (order 4)
        [0; 32],
        // 1 (order 1)
        one,
        // 325606250916557431795983626356110631294008115727848805560023387167927233504 (order 8)
        [
            0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f,
            0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16,
            0x5f, 0x49, 0xb8, 0x00,
        ],
        // 39382357235489614581723060781553021112529911719440698176882885853963445705823 (order 8)
        [
            0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83,
            0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd,
            0xd0, 0x9f, 0x11, 0x57,
        ],
        // p - 1 (order 2)
        p_minus_1,
        // p, a non-canonical 0
        p,
        // p + 1, a non-canonical 1
        p_plus_1,
    ]
};

fn has_small_order(b: &[u8; 32]) -> bool {
    let mut masked = *b;
    masked[31] &= 0x7f;
    SMALL_ORDER.contains(&masked)
}

/// True when `b`, little-endian, is below p = 2^255 - 19.
fn is_canonical(b: &[u8; 32]) -> bool {
    // p = 0x7fff…ffed. Values at or above p: top byte 0x7f, bytes 1..=30 all 0xff and the low
    // byte >= 0xed; or the top bit set.
    if b[31] & 0x80 != 0 {
        return false;
    }
    !(b[31] == 0x7f && b[1..31].iter().all(|&x| x == 0xff) && b[0] >= 0xed)
}

impl PublicKey {
    /// Checks and wraps raw key bytes: refuses the low-order points ([`KeyError::LowOrder`],
    /// checked first, also in their non-canonical and top-bit-set encodings) and any other
    /// value that is not below p = 2^255 - 19 ([`KeyError::NonCanonical`]). Keys made by
    /// [`PrivateKey::public_key`], `wg pubkey` or a WireGuard app always pass.
    pub fn from_bytes(b: [u8; 32]) -> Result<Self, KeyError> {
        if has_small_order(&b) {
            return Err(KeyError::LowOrder);
        }
        if !is_canonical(&b) {
            return Err(KeyError::NonCanonical);
        }
        Ok(PublicKey(b))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 44-character base64 form used by wg-quick.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Reads the base64 form, ignoring surrounding whitespace, and checks the key as
    /// [`PublicKey::from_bytes`] does.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        decode(s).and_then(PublicKey::from_bytes)
    }

    /// The first 8 characters of the base64 form: enough to tell keys apart in listings and
    /// audit lines, never used for lookups.
    pub fn fingerprint(&self) -> String {
        let mut b = self.to_base64();
        b.truncate(8);
        b
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::parse(s)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

/// A Curve25519 private key, as stored in a wg-quick `PrivateKey` line.
///
/// The bytes are kept as given (x25519 clamping is applied when the key is used), so a key read
/// from a config is written back byte for byte.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey([u8; 32]);

impl PrivateKey {
    /// Draws a fresh private key from `rng`, clamped as `wg genkey` does.
    ///
    /// x25519-dalek 2 stores the random bytes unclamped and clamps only when multiplying, while
    /// wg and wireguard-go clamp the key they are given and report it back clamped; clamping
    /// here makes the key we store the one `wg showconf` prints. The public key is the same
    /// either way.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut b = StaticSecret::random_from_rng(rng).to_bytes();
        b[0] &= 248;
        b[31] &= 127;
        b[31] |= 64;
        PrivateKey(b)
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        PrivateKey(b)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The matching public key (X25519 scalar multiplication of the base point).
    pub fn public_key(&self) -> PublicKey {
        let secret = StaticSecret::from(self.0);
        PublicKey(*x25519_dalek::PublicKey::from(&secret).as_bytes())
    }

    /// The 44-character base64 form used by wg-quick. This is the secret itself: only write it
    /// where the user asked for it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Reads the base64 form, ignoring surrounding whitespace.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        decode(s).map(PrivateKey)
    }
}

impl FromStr for PrivateKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PrivateKey::parse(s)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// A WireGuard preshared key: 32 random bytes mixed into the handshake of one peer pair.
#[derive(Clone, PartialEq, Eq)]
pub struct PresharedKey([u8; 32]);

impl PresharedKey {
    /// Draws a fresh preshared key from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        PresharedKey(b)
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        PresharedKey(b)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 44-character base64 form used by wg-quick. This is a secret: only write it where
    /// the user asked for it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Reads the base64 form, ignoring surrounding whitespace.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        decode(s).map(PresharedKey)
    }
}

impl FromStr for PresharedKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PresharedKey::parse(s)
    }
}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresharedKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn rfc7748_alice_vector() {
        // RFC 7748 section 6.1.
        let sk = PrivateKey::from_bytes(hex32(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let pk = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        assert_eq!(sk.public_key(), PublicKey::from_bytes(pk).unwrap());
        assert_eq!(sk.public_key().as_bytes(), &pk);
    }

    #[test]
    fn rfc7748_bob_vector() {
        let sk = PrivateKey::from_bytes(hex32(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        let pk = hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        assert_eq!(sk.public_key().as_bytes(), &pk);
    }

    #[test]
    fn base64_round_trips() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for _ in 0..16 {
            let sk = PrivateKey::generate(&mut rng);
            let pk = sk.public_key();
            let psk = PresharedKey::generate(&mut rng);
            for text in [sk.to_base64(), pk.to_base64(), psk.to_base64()] {
                assert_eq!(text.len(), 44);
                assert!(text.ends_with('='));
            }
            assert_eq!(PrivateKey::parse(&sk.to_base64()).unwrap(), sk);
            assert_eq!(PublicKey::parse(&pk.to_base64()).unwrap(), pk);
            assert_eq!(pk.to_string().parse::<PublicKey>().unwrap(), pk);
            assert_eq!(PresharedKey::parse(&psk.to_base64()).unwrap(), psk);
            assert_eq!(pk.fingerprint(), pk.to_base64()[..8]);
        }
    }

    #[test]
    fn generated_keys_are_clamped() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        for _ in 0..64 {
            let b = *PrivateKey::generate(&mut rng).as_bytes();
            assert_eq!(b[0] & 7, 0);
            assert_eq!(b[31] & 0xc0, 0x40);
        }
        // Clamping does not change the public key.
        let raw = [0xffu8; 32];
        let mut clamped = raw;
        clamped[0] &= 248;
        clamped[31] = (clamped[31] & 127) | 64;
        assert_eq!(
            PrivateKey::from_bytes(raw).public_key(),
            PrivateKey::from_bytes(clamped).public_key()
        );
    }

    #[test]
    fn generate_is_deterministic_for_a_seed() {
        let a = PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let b = PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let c = PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn parse_errors() {
        assert_eq!(PublicKey::parse(""), Err(KeyError::Empty));
        assert_eq!(PublicKey::parse("  \t"), Err(KeyError::Empty));
        assert_eq!(
            PublicKey::parse("not base64 at all!"),
            Err(KeyError::InvalidBase64)
        );
        // URL-safe alphabet is not what wg uses.
        assert_eq!(
            PublicKey::parse("-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_8="),
            Err(KeyError::InvalidBase64)
        );
        assert_eq!(
            PublicKey::parse("AAAA"),
            Err(KeyError::WrongLength { len: 3 })
        );
        let long = STANDARD.encode([0u8; 33]);
        assert_eq!(
            PrivateKey::parse(&long),
            Err(KeyError::WrongLength { len: 33 })
        );
        assert_eq!(
            KeyError::WrongLength { len: 3 }.to_string(),
            "key decodes to 3 bytes; a WireGuard key is exactly 32 bytes"
        );
        assert_eq!(
            KeyError::InvalidBase64.to_string(),
            "key is not valid base64: a WireGuard key is 44 characters of base64 ending in '='"
        );
        // Surrounding whitespace (a pasted line) is fine.
        let pk = PublicKey::from_bytes([9; 32]).unwrap();
        assert_eq!(PublicKey::parse(&format!(" {}\n", pk.to_base64())), Ok(pk));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let sk = PrivateKey::from_bytes([0x42; 32]);
        let psk = PresharedKey::from_bytes([0x42; 32]);
        assert_eq!(format!("{sk:?}"), "PrivateKey(<redacted>)");
        assert_eq!(format!("{psk:?}"), "PresharedKey(<redacted>)");
        assert!(!format!("{sk:#?}").contains(&sk.to_base64()));
        let pk = PublicKey::from_bytes([0x42; 32]).unwrap();
        assert_eq!(format!("{pk:?}"), format!("PublicKey({})", pk.to_base64()));
    }

    /// Every encoding of a small-order point: the seven blocklisted values, each also with the
    /// top bit set.
    fn small_order_encodings() -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        for b in SMALL_ORDER {
            out.push(b);
            let mut high = b;
            high[31] |= 0x80;
            out.push(high);
        }
        out
    }

    #[test]
    fn low_order_points_are_refused_in_every_encoding() {
        let all = small_order_encodings();
        assert_eq!(all.len(), 14);
        // The list is right: X25519 with any (clamped, so a multiple of 8) secret and each of
        // these points gives the all-zero shared secret.
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let secret = StaticSecret::random_from_rng(&mut rng);
        for b in &all {
            let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*b));
            assert_eq!(shared.as_bytes(), &[0u8; 32], "{b:02x?} is not low order");
            assert_eq!(
                PublicKey::from_bytes(*b),
                Err(KeyError::LowOrder),
                "{b:02x?}"
            );
            assert_eq!(
                PublicKey::parse(&STANDARD.encode(b)),
                Err(KeyError::LowOrder),
                "{b:02x?}"
            );
        }
        assert_eq!(
            PublicKey::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(KeyError::LowOrder)
        );
        assert_eq!(
            KeyError::LowOrder.to_string(),
            "public key is a low-order point: no device has this key; paste the key from the WireGuard app"
        );
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        // p + 2 ..= p + 18 (below 2^255), and a few values with the top bit set.
        for low in 0xefu8..=0xff {
            let mut b = [0xff; 32];
            b[0] = low;
            b[31] = 0x7f;
            assert_eq!(
                PublicKey::from_bytes(b),
                Err(KeyError::NonCanonical),
                "{low:#x}"
            );
        }
        for b in [[0xff; 32], [0x80; 32], {
            let mut b = [9; 32];
            b[31] |= 0x80;
            b
        }] {
            assert_eq!(PublicKey::from_bytes(b), Err(KeyError::NonCanonical));
            assert_eq!(
                PublicKey::parse(&STANDARD.encode(b)),
                Err(KeyError::NonCanonical)
            );
        }
        // The largest canonical value, p - 1, is low order; p - 2 is an ordinary point.
        let mut p_minus_2 = [0xff; 32];
        p_minus_2[0] = 0xeb;
        p_minus_2[31] = 0x7f;
        assert!(PublicKey::from_bytes(p_minus_2).is_ok());
    }

    #[test]
    fn every_generated_key_is_accepted() {
        let mut rng = ChaCha20Rng::seed_from_u64(0x5eed);
        for _ in 0..2000 {
            let pk = PrivateKey::generate(&mut rng).public_key();
            assert_eq!(PublicKey::from_bytes(*pk.as_bytes()), Ok(pk));
            assert_eq!(PublicKey::parse(&pk.to_base64()), Ok(pk));
        }
        // Unclamped raw secrets too (how x25519 reads a key from a config).
        for _ in 0..500 {
            let mut raw = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rng, &mut raw);
            let pk = PrivateKey::from_bytes(raw).public_key();
            assert!(PublicKey::from_bytes(*pk.as_bytes()).is_ok());
        }
    }
}
