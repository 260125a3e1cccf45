//! The audit trail: who did what, and when.
//!
//! Pure data. Stored by [`crate::store`] in the `audit` table (its row is private there), shown
//! by the API, the control socket and the CLI as [`crate::api::view::AuditView`].

/// Who made a change.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    /// Peer name, or `"local"` for the CLI on the server itself.
    pub peer: String,
    /// Short fingerprint of the peer's public key (`None` for the local CLI).
    pub fingerprint: Option<String>,
    /// Tunnel address the request came from.
    pub address: Option<String>,
    /// The peer's WireGuard endpoint (public `ip:port`) when the request arrived.
    pub endpoint: Option<String>,
    /// Through which door the change came.
    pub via: Via,
}

/// Through which door a change came: stored and shown as `"api"` or `"cli"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The HTTP API, from a peer through the tunnel.
    Api,
    /// The CLI on the server itself (control socket, or the database directly).
    Cli,
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Via::Api => "api",
            Via::Cli => "cli",
        })
    }
}

impl Actor {
    /// The administrator at the server's own terminal.
    pub fn local_cli() -> Actor {
        Actor {
            peer: "local".into(),
            fingerprint: None,
            address: None,
            endpoint: None,
            via: Via::Cli,
        }
    }
}

/// One audit-trail entry. Summaries never contain secrets (keys, PSKs, webhook tokens).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Sequence number, assigned when committed (0 before).
    pub seq: u64,
    /// Unix milliseconds.
    pub at_ms: u64,
    pub actor: Actor,
    /// What was done, e.g. `peer.add`, `job.create`.
    pub action: String,
    /// The object acted on (peer name, job id).
    pub target: Option<String>,
    /// A redacted summary of the change.
    pub summary: serde_json::Value,
}
