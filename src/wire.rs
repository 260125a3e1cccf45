//! Serde helpers that read checked types straight from their text form on the wire (the
//! control socket's JSON lines): `#[serde(with = "crate::wire::text")]` on a `PeerName`,
//! `Role`, `PublicKey` or `Ipv4Net` field. A value that fails the type's own check is a
//! deserialisation error naming why, so nothing downstream parses the string again.
//!
//! Layer: pure. The `peers` crate stays free of serde; these adapt its `FromStr`/`Display`.

/// `T` as its `Display` text; read back with its `FromStr` check.
pub mod text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Writes `v` as its `Display` text.
    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// Reads the text and checks it with `T`'s `FromStr`.
    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// A list of `T`, each as its text.
pub mod text_list {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{de::Error, ser::SerializeSeq, Deserialize, Deserializer, Serializer};

    /// Writes each item as its text.
    pub fn serialize<T: Display, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for item in v {
            seq.serialize_element(&item.to_string())?;
        }
        seq.end()
    }

    /// Reads each item's text and checks it.
    pub fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| s.parse().map_err(D::Error::custom))
            .collect()
    }
}

/// An optional preshared key as base64 (`null` for none). Its `Debug` stays redacted.
pub mod psk_opt {
    use peers::PresharedKey;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Writes the key as base64, or `null`.
    pub fn serialize<S: Serializer>(v: &Option<PresharedKey>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(k) => s.serialize_some(&k.to_base64()),
            None => s.serialize_none(),
        }
    }

    /// Reads base64 (or `null`) as a checked key.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PresharedKey>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| PresharedKey::parse(&s).map_err(D::Error::custom))
            .transpose()
    }
}

/// An endpoint as `HOST:PORT` (the port is required on the wire).
pub mod endpoint {
    use peers::Endpoint;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Writes `HOST:PORT`.
    pub fn serialize<S: Serializer>(v: &Endpoint, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// Reads `HOST:PORT`; the port is required.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
        let s = String::deserialize(d)?;
        Endpoint::parse(&s, 0).map_err(D::Error::custom)
    }
}
