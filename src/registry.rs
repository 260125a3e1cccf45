//! Peer registry core: the pure decisions behind every peer command.
//!
//! Layer: core. Takes the current peer list, a validated request and the time, and returns what
//! must be written ([`PeerChange`]) or a typed error. It performs no I/O and reads no clock, so
//! the CLI (database opened directly), the control socket and the HTTP API all share it, and
//! [`crate::store::Store::update_peers`] commits its result atomically.

use std::net::Ipv4Addr;

use peers::{AddressPool, Ipv4Net, PeerName, PoolError, PresharedKey, PublicKey, Role};

use crate::model::{Actor, AuditEntry, PeerAction, PeerChange, PeerRecord, ServerRecord};
use crate::store::StoreError;

/// A request to register a new peer. The client's private key is not part of it.
#[derive(Clone, Debug)]
pub struct AddPeer {
    /// The new peer's name.
    pub name: PeerName,
    /// Its role.
    pub role: Role,
    /// Its public key (the device keeps the private key).
    pub public_key: PublicKey,
    /// An optional preshared key.
    pub preshared_key: Option<PresharedKey>,
    /// Extra source ranges the peer may use besides its own address (rarely needed).
    pub extra_allowed_ips: Vec<Ipv4Net>,
}

/// Why a peer could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddPeerError {
    /// Peer names are unique.
    #[error("a peer named '{0}' already exists; pick another name or remove it first")]
    NameTaken(PeerName),
    /// Each WireGuard key identifies one peer.
    #[error("that public key already belongs to peer '{0}'")]
    KeyTaken(PeerName),
    /// The server's own key cannot be a peer.
    #[error("that public key is the server's own key")]
    ServerKey,
    /// No free address is left in the tunnel subnet.
    #[error(transparent)]
    PoolFull(#[from] PoolError),
    /// Allowed IPs must not overlap another peer's, or the caller identity would be ambiguous.
    #[error("allowed IPs {net} overlap those of peer '{other}'")]
    AllowedIpsOverlap {
        /// The range asked for.
        net: Ipv4Net,
        /// The peer whose range it overlaps.
        other: PeerName,
    },
    /// Allowed IPs must not contain the server's tunnel address.
    #[error("allowed IPs {net} contain the server's tunnel address {server}")]
    AllowedIpsContainServer {
        /// The range asked for.
        net: Ipv4Net,
        /// The server's tunnel address.
        server: Ipv4Addr,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server stopped while the change was being made live (it is stored).
    #[error("the appliance is shutting down; the peer is stored and will be live after restart")]
    ShuttingDown,
}

/// Decides the record for a new peer: a unique name and key, the lowest free address.
pub fn plan_add(
    existing: &[PeerRecord],
    server: &ServerRecord,
    req: AddPeer,
    now_unix: u64,
) -> Result<(PeerChange, PeerRecord), AddPeerError> {
    if let Some(p) = existing.iter().find(|p| p.name == req.name) {
        return Err(AddPeerError::NameTaken(p.name.clone()));
    }
    if let Some(p) = existing.iter().find(|p| p.public_key == req.public_key) {
        return Err(AddPeerError::KeyTaken(p.name.clone()));
    }
    if req.public_key == server.private_key.public_key() {
        return Err(AddPeerError::ServerKey);
    }
    let server_ip = server.interface.addr();
    let pool = AddressPool::new(server.subnet(), server_ip);
    let used: Vec<Ipv4Addr> = existing
        .iter()
        .flat_map(|p| p.allowed_ips.iter())
        .filter(|n| n.prefix() == 32)
        .map(|n| n.addr())
        .collect();
    let address = loop_free_address(&pool, &used, existing)?;
    let mut allowed_ips = vec![Ipv4Net::host(address)];
    allowed_ips.extend(req.extra_allowed_ips.iter().copied());
    for net in &allowed_ips {
        if net.contains(server_ip) {
            return Err(AddPeerError::AllowedIpsContainServer {
                net: *net,
                server: server_ip,
            });
        }
        for p in existing {
            if p.allowed_ips.iter().any(|o| o.overlaps(net)) {
                return Err(AddPeerError::AllowedIpsOverlap {
                    net: *net,
                    other: p.name.clone(),
                });
            }
        }
    }
    let record = PeerRecord {
        name: req.name,
        role: req.role,
        public_key: req.public_key,
        preshared_key: req.preshared_key,
        address,
        allowed_ips,
        enabled: true,
        created_at: now_unix,
    };
    let change = PeerChange {
        upsert: vec![record.clone()],
        remove: vec![],
        audit: None,
    };
    Ok((change, record))
}

/// The lowest pool address not inside any existing peer's allowed IPs.
fn loop_free_address(
    pool: &AddressPool,
    used: &[Ipv4Addr],
    existing: &[PeerRecord],
) -> Result<Ipv4Addr, PoolError> {
    let mut taken: Vec<Ipv4Addr> = used.to_vec();
    loop {
        let candidate = pool.allocate(taken.iter())?;
        let covered = existing
            .iter()
            .any(|p| p.allowed_ips.iter().any(|n| n.contains(candidate)));
        if !covered {
            return Ok(candidate);
        }
        taken.push(candidate);
    }
}

/// Why a change to an existing peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerUpdateError {
    /// No peer has that name.
    #[error("no peer named '{0}' (see `appliance peer list`)")]
    NotFound(PeerName),
    /// The new key already belongs to another peer (rotate).
    #[error("that public key already belongs to peer '{0}'")]
    KeyTaken(PeerName),
    /// The new key is the server's own key (rotate).
    #[error("that public key is the server's own key")]
    ServerKey,
    /// Over the API, the last enabled admin cannot be disabled, demoted or removed.
    #[error("refused: this would leave no enabled admin (do it with the CLI on the server if you mean it)")]
    LastAdmin,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server stopped while the change was being made live (it is stored).
    #[error("the appliance is shutting down; the change is stored and takes effect after restart")]
    ShuttingDown,
}

fn find<'a>(
    existing: &'a [PeerRecord],
    name: &PeerName,
) -> Result<&'a PeerRecord, PeerUpdateError> {
    existing
        .iter()
        .find(|p| &p.name == name)
        .ok_or_else(|| PeerUpdateError::NotFound(name.clone()))
}

/// Enables or disables a peer. A disabled peer stays stored (same address, same key) but
/// cannot handshake until enabled again.
pub fn plan_set_enabled(
    existing: &[PeerRecord],
    name: &PeerName,
    enabled: bool,
) -> Result<(PeerChange, PeerRecord), PeerUpdateError> {
    plan_update(existing, name, None, Some(enabled))
}

/// Changes a peer's role.
pub fn plan_set_role(
    existing: &[PeerRecord],
    name: &PeerName,
    role: Role,
) -> Result<(PeerChange, PeerRecord), PeerUpdateError> {
    plan_update(existing, name, Some(role), None)
}

/// The change that stores `rec` (insert or replace by name).
fn upsert(rec: PeerRecord) -> (PeerChange, PeerRecord) {
    (
        PeerChange {
            upsert: vec![rec.clone()],
            remove: vec![],
            audit: None,
        },
        rec,
    )
}

/// Changes a peer's role and/or enabled flag in one step (the API's PATCH).
pub fn plan_update(
    existing: &[PeerRecord],
    name: &PeerName,
    role: Option<Role>,
    enabled: Option<bool>,
) -> Result<(PeerChange, PeerRecord), PeerUpdateError> {
    let mut rec = find(existing, name)?.clone();
    if let Some(r) = role {
        rec.role = r;
    }
    if let Some(e) = enabled {
        rec.enabled = e;
    }
    Ok(upsert(rec))
}

/// Removes a peer and its statistics; its address becomes free for the next peer.
pub fn plan_remove(
    existing: &[PeerRecord],
    name: &PeerName,
) -> Result<(PeerChange, PeerRecord), PeerUpdateError> {
    let rec = find(existing, name)?.clone();
    Ok((
        PeerChange {
            upsert: vec![],
            remove: vec![rec.name.clone()],
            audit: None,
        },
        rec,
    ))
}

/// Gives a peer a new key and preshared key, keeping its name, role and address. The old key
/// stops working.
pub fn plan_rotate(
    existing: &[PeerRecord],
    server: &ServerRecord,
    name: &PeerName,
    public_key: PublicKey,
    preshared_key: Option<PresharedKey>,
) -> Result<(PeerChange, PeerRecord), PeerUpdateError> {
    let mut rec = find(existing, name)?.clone();
    if let Some(other) = existing.iter().find(|p| p.public_key == public_key) {
        return Err(PeerUpdateError::KeyTaken(other.name.clone()));
    }
    if public_key == server.private_key.public_key() {
        return Err(PeerUpdateError::ServerKey);
    }
    rec.public_key = public_key;
    rec.preshared_key = preshared_key;
    Ok(upsert(rec))
}

/// A change to an existing peer, checked and ready to plan: the one value the CLI (offline),
/// the control socket and the API all build.
#[derive(Clone, Debug)]
pub enum PeerUpdate {
    /// Enable or disable (`peer enable|disable`).
    SetEnabled {
        /// The peer.
        name: PeerName,
        /// Whether it may connect.
        enabled: bool,
    },
    /// Change the role (`peer role`).
    SetRole {
        /// The peer.
        name: PeerName,
        /// Its new role.
        role: Role,
    },
    /// Role and/or enabled in one step (the API's PATCH).
    Fields {
        /// The peer.
        name: PeerName,
        /// Its new role, if it changes.
        role: Option<Role>,
        /// Whether it may connect, if that changes.
        enabled: Option<bool>,
    },
    /// New key and preshared key; the old key stops working.
    Rotate {
        /// The peer.
        name: PeerName,
        /// Its new public key.
        public_key: PublicKey,
        /// Its new preshared key, if any.
        preshared_key: Option<PresharedKey>,
    },
    /// Delete the peer; its address becomes free.
    Remove {
        /// The peer.
        name: PeerName,
    },
}

impl PeerUpdate {
    /// The peer it changes.
    pub fn name(&self) -> &PeerName {
        match self {
            PeerUpdate::SetEnabled { name, .. }
            | PeerUpdate::SetRole { name, .. }
            | PeerUpdate::Fields { name, .. }
            | PeerUpdate::Rotate { name, .. }
            | PeerUpdate::Remove { name } => name,
        }
    }

    /// How the change is named in the audit trail.
    pub fn action(&self) -> PeerAction {
        match self {
            PeerUpdate::SetEnabled { enabled: true, .. } => PeerAction::Enable,
            PeerUpdate::SetEnabled { enabled: false, .. } => PeerAction::Disable,
            PeerUpdate::SetRole { .. } => PeerAction::Role,
            PeerUpdate::Fields { .. } => PeerAction::Update,
            PeerUpdate::Rotate { .. } => PeerAction::Rotate,
            PeerUpdate::Remove { .. } => PeerAction::Remove,
        }
    }

    /// Decides the change against the current peers (no audit entry yet: see [`audited`]).
    pub fn plan(
        self,
        existing: &[PeerRecord],
        server: &ServerRecord,
    ) -> Result<(PeerChange, PeerRecord), PeerUpdateError> {
        match self {
            PeerUpdate::SetEnabled { name, enabled } => plan_set_enabled(existing, &name, enabled),
            PeerUpdate::SetRole { name, role } => plan_set_role(existing, &name, role),
            PeerUpdate::Fields {
                name,
                role,
                enabled,
            } => plan_update(existing, &name, role, enabled),
            PeerUpdate::Rotate {
                name,
                public_key,
                preshared_key,
            } => plan_rotate(existing, server, &name, public_key, preshared_key),
            PeerUpdate::Remove { name } => plan_remove(existing, &name),
        }
    }
}

/// The audit entry for a peer change. Never includes a key secret: only the public key's
/// fingerprint.
pub fn audit_peer(action: PeerAction, rec: &PeerRecord, actor: &Actor, now_ms: u64) -> AuditEntry {
    let summary = match action {
        PeerAction::Add => serde_json::json!({
            "role": rec.role.as_str(),
            "address": rec.address.to_string(),
            "key": rec.public_key.fingerprint(),
        }),
        PeerAction::Rotate => serde_json::json!({"key": rec.public_key.fingerprint()}),
        PeerAction::Enable | PeerAction::Disable => serde_json::json!({"enabled": rec.enabled}),
        PeerAction::Role => serde_json::json!({"role": rec.role.as_str()}),
        PeerAction::Update => {
            serde_json::json!({"role": rec.role.as_str(), "enabled": rec.enabled})
        }
        PeerAction::Remove => serde_json::json!({
            "address": rec.address.to_string(),
            "key": rec.public_key.fingerprint(),
        }),
    };
    AuditEntry {
        seq: 0,
        at_ms: now_ms,
        actor: actor.clone(),
        action: action.into(),
        target: Some(rec.name.to_string()),
        summary,
    }
}

/// Attaches the audit entry for `action` to a planned peer change.
pub fn audited<E>(
    planned: Result<(PeerChange, PeerRecord), E>,
    action: PeerAction,
    actor: &Actor,
    now_ms: u64,
) -> Result<(PeerChange, PeerRecord), E> {
    planned.map(|(mut change, rec)| {
        change.audit = Some(audit_peer(action, &rec, actor, now_ms));
        (change, rec)
    })
}

/// Refuses a change that would leave no enabled admin (the API must not lock everyone out;
/// the CLI on the server can still do it deliberately).
pub fn keeps_an_admin(existing: &[PeerRecord], after: &PeerChange) -> bool {
    let had = existing.iter().any(|p| p.enabled && p.role == Role::Admin);
    if !had {
        return true;
    }
    existing
        .iter()
        .filter(|p| !after.remove.contains(&p.name))
        .map(|p| after.upsert.iter().find(|u| u.name == p.name).unwrap_or(p))
        .chain(
            after
                .upsert
                .iter()
                .filter(|u| !existing.iter().any(|p| p.name == u.name)),
        )
        .any(|p| p.enabled && p.role == Role::Admin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use peers::{Endpoint, PrivateKey};
    use rand_chacha::rand_core::SeedableRng;

    fn server(rng: &mut rand_chacha::ChaCha20Rng) -> ServerRecord {
        ServerRecord {
            private_key: PrivateKey::generate(rng),
            listen_port: 51820,
            interface: "10.88.88.1/24".parse().unwrap(),
            endpoint: Endpoint::parse("vpn.example.test", 51820).unwrap(),
            created_at: 0,
        }
    }

    fn req(name: &str, rng: &mut rand_chacha::ChaCha20Rng) -> AddPeer {
        AddPeer {
            name: name.parse().unwrap(),
            role: Role::Viewer,
            public_key: PrivateKey::generate(rng).public_key(),
            preshared_key: Some(PresharedKey::generate(rng)),
            extra_allowed_ips: vec![],
        }
    }

    #[test]
    fn allocates_lowest_free_and_rejects_duplicates() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let srv = server(&mut rng);
        let (_, a) = plan_add(&[], &srv, req("alice", &mut rng), 1).unwrap();
        assert_eq!(a.address, Ipv4Addr::new(10, 88, 88, 2));
        assert_eq!(a.allowed_ips, vec![Ipv4Net::host(a.address)]);
        let (_, b) = plan_add(std::slice::from_ref(&a), &srv, req("bob", &mut rng), 1).unwrap();
        assert_eq!(b.address, Ipv4Addr::new(10, 88, 88, 3));

        let err = plan_add(&[a.clone(), b.clone()], &srv, req("alice", &mut rng), 1).unwrap_err();
        assert!(matches!(err, AddPeerError::NameTaken(_)), "{err}");

        let mut dup = req("carol", &mut rng);
        dup.public_key = b.public_key;
        let err = plan_add(&[a.clone(), b.clone()], &srv, dup, 1).unwrap_err();
        assert!(matches!(err, AddPeerError::KeyTaken(ref n) if n.as_str() == "bob"));

        // A freed address is reused: with only bob left, the next peer gets .2 again.
        let (_, c) = plan_add(&[b], &srv, req("carol", &mut rng), 1).unwrap();
        assert_eq!(c.address, Ipv4Addr::new(10, 88, 88, 2));
    }

    #[test]
    fn rejects_overlapping_extra_ranges_and_server_key() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        let srv = server(&mut rng);
        let mut r = req("gw", &mut rng);
        r.extra_allowed_ips = vec!["10.88.88.0/24".parse().unwrap()];
        let err = plan_add(&[], &srv, r, 1).unwrap_err();
        assert!(matches!(err, AddPeerError::AllowedIpsContainServer { .. }));

        let mut r = req("gw", &mut rng);
        r.extra_allowed_ips = vec!["192.168.50.0/24".parse().unwrap()];
        let (_, gw) = plan_add(&[], &srv, r, 1).unwrap();
        let mut r2 = req("gw2", &mut rng);
        r2.extra_allowed_ips = vec!["192.168.50.128/25".parse().unwrap()];
        let err = plan_add(&[gw], &srv, r2, 1).unwrap_err();
        assert!(matches!(err, AddPeerError::AllowedIpsOverlap { .. }));

        let mut r = req("me", &mut rng);
        r.public_key = srv.private_key.public_key();
        assert!(matches!(
            plan_add(&[], &srv, r, 1).unwrap_err(),
            AddPeerError::ServerKey
        ));
    }

    #[test]
    fn full_pool_is_a_clear_error() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let mut srv = server(&mut rng);
        srv.interface = "10.0.0.1/30".parse().unwrap();
        let (_, a) = plan_add(&[], &srv, req("a", &mut rng), 1).unwrap();
        assert_eq!(a.address, Ipv4Addr::new(10, 0, 0, 2));
        let err = plan_add(&[a], &srv, req("b", &mut rng), 1).unwrap_err();
        assert!(matches!(err, AddPeerError::PoolFull(_)));
        assert!(err.to_string().contains("10.0.0.0/30"), "{err}");
    }
    #[test]
    fn enable_disable_remove_rotate() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(10);
        let srv = server(&mut rng);
        let (_, a) = plan_add(&[], &srv, req("alice", &mut rng), 1).unwrap();
        let (_, b) = plan_add(std::slice::from_ref(&a), &srv, req("bob", &mut rng), 1).unwrap();
        let all = vec![a.clone(), b.clone()];
        let name: PeerName = "alice".parse().unwrap();

        let (ch, off) = plan_set_enabled(&all, &name, false).unwrap();
        assert!(!off.enabled);
        assert_eq!(ch.upsert, vec![off.clone()]);
        assert_eq!(off.address, a.address);

        let (_, admin) = plan_set_role(&all, &name, Role::Admin).unwrap();
        assert_eq!(admin.role, Role::Admin);

        let (ch, gone) = plan_remove(&all, &name).unwrap();
        assert_eq!(ch.remove, vec![name.clone()]);
        assert_eq!(gone.name, name);

        let new_key = PrivateKey::generate(&mut rng).public_key();
        let (_, rot) = plan_rotate(&all, &srv, &name, new_key, None).unwrap();
        assert_eq!(rot.public_key, new_key);
        assert_eq!(rot.address, a.address);
        assert_eq!(rot.role, a.role);
        let err = plan_rotate(&all, &srv, &name, b.public_key, None).unwrap_err();
        assert!(matches!(err, PeerUpdateError::KeyTaken(ref n) if n.as_str() == "bob"));

        let ghost: PeerName = "ghost".parse().unwrap();
        let err = plan_remove(&all, &ghost).unwrap_err();
        assert!(err.to_string().contains("no peer named 'ghost'"), "{err}");
    }

    #[test]
    fn peer_actions_keep_the_audit_trails_strings() {
        let name: PeerName = "alice".parse().unwrap();
        let cases = [
            (
                PeerUpdate::SetEnabled {
                    name: name.clone(),
                    enabled: true,
                },
                "peer.enable",
            ),
            (
                PeerUpdate::SetEnabled {
                    name: name.clone(),
                    enabled: false,
                },
                "peer.disable",
            ),
            (
                PeerUpdate::SetRole {
                    name: name.clone(),
                    role: Role::Admin,
                },
                "peer.role",
            ),
            (
                PeerUpdate::Fields {
                    name: name.clone(),
                    role: None,
                    enabled: None,
                },
                "peer.update",
            ),
            (PeerUpdate::Remove { name: name.clone() }, "peer.remove"),
        ];
        for (op, text) in cases {
            assert_eq!(op.name(), &name);
            assert_eq!(op.action().as_str(), text);
            assert_eq!(serde_json::to_value(op.action()).unwrap(), text);
        }
        assert_eq!(PeerAction::Add.to_string(), "peer.add");
        assert_eq!(
            serde_json::from_str::<PeerAction>("\"peer.rotate\"").unwrap(),
            PeerAction::Rotate
        );
    }
}
