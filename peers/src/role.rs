//! Roles: what a peer is allowed to do once its packets reach the scheduler.
//!
//! Layer: pure edge type. This module owns the closed set of [`Role`]s and their wire spelling
//! (`admin`, `officer`, `viewer`, `handler`); it touches nothing else. Contract: the spelling
//! returned by [`Role::as_str`] is what the store and the CLI persist and accept, and
//! `as_str(r).parse() == Ok(r)` for every role. What each role may do is decided elsewhere.

use std::fmt;
use std::str::FromStr;

/// The part a peer plays in the crew.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Manages peers and every job.
    Admin,
    /// Creates and runs jobs.
    Officer,
    /// Reads jobs and results only.
    Viewer,
    /// A machine identity that executes jobs handed to it.
    Handler,
}

/// A string that names no [`Role`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role '{given}': expected one of admin, officer, viewer, handler")]
pub struct RoleError {
    /// The text that was given.
    pub given: String,
}

impl Role {
    /// Every role, in order of decreasing authority.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Officer, Role::Viewer, Role::Handler];

    /// The lowercase spelling used by the CLI and the store.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Officer => "officer",
            Role::Viewer => "viewer",
            Role::Handler => "handler",
        }
    }
}

impl FromStr for Role {
    type Err = RoleError;

    /// Accepts the spelling of [`Role::as_str`], ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| RoleError {
                given: s.to_owned(),
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_role() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(r.to_string(), r.as_str());
        }
        assert_eq!("Admin".parse::<Role>(), Ok(Role::Admin));
        assert_eq!("HANDLER".parse::<Role>(), Ok(Role::Handler));
    }

    #[test]
    fn refuses_unknown() {
        let err = "root".parse::<Role>().unwrap_err();
        assert_eq!(err.given, "root");
        assert_eq!(
            err.to_string(),
            "unknown role 'root': expected one of admin, officer, viewer, handler"
        );
        assert!("".parse::<Role>().is_err());
        assert!(" admin".parse::<Role>().is_err());
    }
}
