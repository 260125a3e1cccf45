//! Peer names: the checked, human-chosen handle for one device on the tunnel.
//!
//! Layer: pure edge type. This module owns [`PeerName`] and its validation rule — 1 to 32
//! characters, each one of `a-z`, `0-9`, `_` or `-` — and touches nothing else. Contract: a
//! `PeerName` can only be built through [`PeerName::new`] (or `FromStr`), so every name held
//! anywhere in the appliance is safe to use as a store key, a CLI argument, a file name stem or a
//! comment in a wg-quick config without further escaping.

use std::fmt;
use std::str::FromStr;

/// The longest peer name accepted, in characters.
pub const MAX_NAME_LEN: usize = 32;

/// A validated peer name: 1 to 32 characters of `[a-z0-9_-]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerName(String);

/// Why a string was refused as a peer name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name was the empty string.
    #[error("the peer name is empty; use 1 to 32 characters of a-z, 0-9, '_' and '-'")]
    Empty,
    /// The name had more than [`MAX_NAME_LEN`] characters.
    #[error("the peer name is {len} characters long; use at most 32 characters")]
    TooLong {
        /// Length of the refused name, in characters.
        len: usize,
    },
    /// The name contained a character outside `[a-z0-9_-]`.
    #[error(
        "the peer name contains {ch:?}; use only lowercase letters a-z, digits 0-9, '_' and '-'"
    )]
    InvalidChar {
        /// The first offending character.
        ch: char,
    },
}

impl PeerName {
    /// Checks `s` against the naming rule and wraps it.
    pub fn new(s: &str) -> Result<PeerName, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if let Some(ch) = s
            .chars()
            .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'))
        {
            return Err(NameError::InvalidChar { ch });
        }
        // Only ASCII is left, so bytes and characters agree.
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong { len: s.len() });
        }
        Ok(PeerName(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PeerName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PeerName::new(s)
    }
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for PeerName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_whole_alphabet() {
        for ok in [
            "a",
            "alice",
            "bob-2",
            "ops_laptop",
            "0",
            "-",
            "_",
            "a-b_c-9",
        ] {
            let n = PeerName::new(ok).unwrap();
            assert_eq!(n.as_str(), ok);
            assert_eq!(n.to_string(), ok);
            assert_eq!(n.as_ref(), ok);
            assert_eq!(ok.parse::<PeerName>().unwrap(), n);
        }
        let max = "x".repeat(32);
        assert_eq!(PeerName::new(&max).unwrap().as_str(), max);
    }

    #[test]
    fn refuses_empty() {
        assert_eq!(PeerName::new(""), Err(NameError::Empty));
    }

    #[test]
    fn refuses_33_chars() {
        assert_eq!(
            PeerName::new(&"a".repeat(33)),
            Err(NameError::TooLong { len: 33 })
        );
    }

    #[test]
    fn refuses_uppercase_space_and_unicode() {
        assert_eq!(
            PeerName::new("Alice"),
            Err(NameError::InvalidChar { ch: 'A' })
        );
        assert_eq!(
            PeerName::new("alice phone"),
            Err(NameError::InvalidChar { ch: ' ' })
        );
        assert_eq!(
            PeerName::new("zoë"),
            Err(NameError::InvalidChar { ch: 'ë' })
        );
        assert_eq!(
            PeerName::new("a.b"),
            Err(NameError::InvalidChar { ch: '.' })
        );
        assert_eq!(
            PeerName::new("a\nb"),
            Err(NameError::InvalidChar { ch: '\n' })
        );
        // A long name of multi-byte characters reports the character, not a byte length.
        assert_eq!(
            PeerName::new(&"é".repeat(20)),
            Err(NameError::InvalidChar { ch: 'é' })
        );
    }

    #[test]
    fn errors_are_sentences() {
        assert_eq!(
            NameError::InvalidChar { ch: 'A' }.to_string(),
            "the peer name contains 'A'; use only lowercase letters a-z, digits 0-9, '_' and '-'"
        );
        assert!(NameError::TooLong { len: 40 }.to_string().contains("40"));
    }
}
