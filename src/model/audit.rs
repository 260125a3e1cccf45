//! The audit trail: who did what, and when.
//!
//! Pure data. Stored by [`crate::store`] in the `audit` table (its row is private there), shown
//! by the API, the control socket and the CLI as [`crate::api::view::AuditItem`]. What was done
//! is an [`AuditAction`]; its wire strings (`peer.add`, `job.create`, …) are what existing
//! databases hold and what API clients read, so they never change.

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
    /// Who did it.
    pub actor: Actor,
    /// What was done.
    pub action: AuditAction,
    /// The object acted on (peer name, job id).
    pub target: Option<String>,
    /// A redacted summary of the change.
    pub summary: serde_json::Value,
}

/// What an audit entry records. Stored and shown as its wire string (`peer.add`,
/// `job.create`, …, see [`AuditAction::as_str`]); a string this build does not know (written by
/// another version) reads as [`AuditAction::Other`] and is written back unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditAction {
    /// A change to a peer (`peer.*`).
    Peer(PeerAction),
    /// A change to a job, or a test send (`job.*`).
    Job(JobAction),
    /// `runs.clear`: the finished run history was deleted.
    RunsClear,
    /// `handler.register`: a handler peer registered (or replaced) its methods.
    HandlerRegister,
    /// `server.endpoint`: the endpoint new client configs carry changed.
    ServerEndpoint,
    /// `store.quarantine`: damaged rows were moved into the quarantine table.
    StoreQuarantine,
    /// `denied`: a privileged request refused for the caller's role.
    Denied,
    /// A string this build does not know, kept as read. Never built for a known string:
    /// [`AuditAction::from_wire`] maps those to their variants.
    Other(String),
}

impl AuditAction {
    /// The wire string: stored in the audit table and shown by the API, control socket and CLI.
    pub fn as_str(&self) -> &str {
        match self {
            AuditAction::Peer(a) => a.as_str(),
            AuditAction::Job(a) => a.as_str(),
            AuditAction::RunsClear => "runs.clear",
            AuditAction::HandlerRegister => "handler.register",
            AuditAction::ServerEndpoint => "server.endpoint",
            AuditAction::StoreQuarantine => "store.quarantine",
            AuditAction::Denied => "denied",
            AuditAction::Other(s) => s,
        }
    }

    /// Reads a wire string; never fails (an unknown string is [`AuditAction::Other`]).
    pub fn from_wire(s: &str) -> AuditAction {
        const KNOWN: [AuditAction; 5] = [
            AuditAction::RunsClear,
            AuditAction::HandlerRegister,
            AuditAction::ServerEndpoint,
            AuditAction::StoreQuarantine,
            AuditAction::Denied,
        ];
        if let Some(a) = PeerAction::ALL.into_iter().find(|a| a.as_str() == s) {
            return AuditAction::Peer(a);
        }
        if let Some(a) = JobAction::ALL.into_iter().find(|a| a.as_str() == s) {
            return AuditAction::Job(a);
        }
        KNOWN
            .into_iter()
            .find(|a| a.as_str() == s)
            .unwrap_or_else(|| AuditAction::Other(s.to_string()))
    }
}

impl From<PeerAction> for AuditAction {
    fn from(a: PeerAction) -> AuditAction {
        AuditAction::Peer(a)
    }
}

impl From<JobAction> for AuditAction {
    fn from(a: JobAction) -> AuditAction {
        AuditAction::Job(a)
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl serde::Serialize for AuditAction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for AuditAction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AuditAction, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(AuditAction::from_wire(&s))
    }
}

/// The audit action of a peer change (`peer.add`, `peer.enable`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PeerAction {
    /// `peer.add`: a new peer.
    #[serde(rename = "peer.add")]
    Add,
    /// `peer.enable`: a disabled peer may connect again.
    #[serde(rename = "peer.enable")]
    Enable,
    /// `peer.disable`: the peer's tunnel stops at once; it stays stored.
    #[serde(rename = "peer.disable")]
    Disable,
    /// `peer.role`: a new role.
    #[serde(rename = "peer.role")]
    Role,
    /// `peer.update`: role and/or enabled in one step (the API's PATCH).
    #[serde(rename = "peer.update")]
    Update,
    /// `peer.rotate`: a new key; the old one stops working.
    #[serde(rename = "peer.rotate")]
    Rotate,
    /// `peer.remove`: the peer is deleted and its address freed.
    #[serde(rename = "peer.remove")]
    Remove,
}

impl PeerAction {
    /// Every peer action, for reading wire strings.
    pub const ALL: [PeerAction; 7] = [
        PeerAction::Add,
        PeerAction::Enable,
        PeerAction::Disable,
        PeerAction::Role,
        PeerAction::Update,
        PeerAction::Rotate,
        PeerAction::Remove,
    ];

    /// The audit trail's name of the action (the serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            PeerAction::Add => "peer.add",
            PeerAction::Enable => "peer.enable",
            PeerAction::Disable => "peer.disable",
            PeerAction::Role => "peer.role",
            PeerAction::Update => "peer.update",
            PeerAction::Rotate => "peer.rotate",
            PeerAction::Remove => "peer.remove",
        }
    }
}

impl std::fmt::Display for PeerAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The audit action of a job operation (`job.create`, `job.update`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    /// `job.create`: a new job (its spec, redacted, is the summary).
    Create,
    /// `job.update`: a changed spec.
    Update,
    /// `job.delete`: the job is gone (its runs stay until pruned).
    Delete,
    /// `job.pause`: no more fires until resumed.
    Pause,
    /// `job.resume`: fires again, from now or catching up.
    Resume,
    /// `job.run`: "run now", a manual fire outside the schedule.
    Run,
    /// `job.test`: one webhook attempt sent from the form; nothing stored but this entry.
    Test,
}

impl JobAction {
    /// Every job action, for reading wire strings.
    pub const ALL: [JobAction; 7] = [
        JobAction::Create,
        JobAction::Update,
        JobAction::Delete,
        JobAction::Pause,
        JobAction::Resume,
        JobAction::Run,
        JobAction::Test,
    ];

    /// The audit trail's name of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            JobAction::Create => "job.create",
            JobAction::Update => "job.update",
            JobAction::Delete => "job.delete",
            JobAction::Pause => "job.pause",
            JobAction::Resume => "job.resume",
            JobAction::Run => "job.run",
            JobAction::Test => "job.test",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every known action, in the order of [`PINNED`].
    fn every_known_action() -> Vec<AuditAction> {
        // A new variant is a compile error here until it is listed below and pinned.
        match AuditAction::Denied {
            AuditAction::Peer(_)
            | AuditAction::Job(_)
            | AuditAction::RunsClear
            | AuditAction::HandlerRegister
            | AuditAction::ServerEndpoint
            | AuditAction::StoreQuarantine
            | AuditAction::Denied
            | AuditAction::Other(_) => {}
        }
        let mut all: Vec<AuditAction> = PeerAction::ALL.into_iter().map(Into::into).collect();
        all.extend(JobAction::ALL.into_iter().map(AuditAction::from));
        all.extend([
            AuditAction::RunsClear,
            AuditAction::HandlerRegister,
            AuditAction::ServerEndpoint,
            AuditAction::StoreQuarantine,
            AuditAction::Denied,
        ]);
        all
    }

    /// The wire strings existing databases and API clients have, written out once more.
    const PINNED: [&str; 19] = [
        "peer.add",
        "peer.enable",
        "peer.disable",
        "peer.role",
        "peer.update",
        "peer.rotate",
        "peer.remove",
        "job.create",
        "job.update",
        "job.delete",
        "job.pause",
        "job.resume",
        "job.run",
        "job.test",
        "runs.clear",
        "handler.register",
        "server.endpoint",
        "store.quarantine",
        "denied",
    ];

    #[test]
    fn every_action_keeps_its_wire_string_both_ways() {
        let all = every_known_action();
        assert_eq!(all.len(), PINNED.len(), "a new action must be pinned");
        for (a, text) in all.into_iter().zip(PINNED) {
            assert_eq!(a.as_str(), text);
            assert_eq!(a.to_string(), text);
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{text}\""));
            assert_eq!(AuditAction::from_wire(text), a);
            assert_eq!(
                serde_json::from_str::<AuditAction>(&format!("\"{text}\"")).unwrap(),
                a
            );
            if let AuditAction::Peer(p) = a {
                assert_eq!(
                    serde_json::to_value(p).unwrap(),
                    text,
                    "PeerAction's own serde"
                );
            }
        }
        // Padding works (the CLI's table lines the column up).
        assert_eq!(format!("{:<12}|", AuditAction::Denied), "denied      |");
    }

    #[test]
    fn an_unknown_action_string_reads_and_writes_back_unchanged() {
        for text in ["job.archive", "Peer.Add", "", "peer.add "] {
            let a: AuditAction = serde_json::from_str(&serde_json::to_string(text).unwrap())
                .expect("unknown strings decode");
            assert_eq!(a, AuditAction::Other(text.to_string()));
            assert_eq!(serde_json::to_value(&a).unwrap(), text);
        }
    }
}
