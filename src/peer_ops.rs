//! One path for every peer operation: add, enable, disable, role, update, rotate, remove.
//!
//! Layer: storage glue, synchronous. The CLI with the database opened directly, the control
//! socket and the HTTP API all run a peer change through [`PeerOps`]: the pure decision
//! ([`crate::registry`]), its audit entry, the API's last-admin guard, committed in one write
//! transaction. The result says what the network must do for the change to be live
//! ([`Live`]); the running server hands that to the driver ([`crate::service::Appliance`]),
//! while the CLI offline drops it — nothing runs that could make it live, and the next
//! `serve` loads the stored peers.
//!
//! Client configs are assembled here too, once ([`client_config`]), for the CLI's `peer
//! add|rotate` and the API's `POST /api/v1/peers` and `…/rotate`, and what their QR codes
//! carry is decided once ([`qr_text`]).

use std::net::{IpAddr, Ipv4Addr};

use peers::{ClientConfig, Endpoint, Ipv4Net, PeerName, PresharedKey, PrivateKey, PublicKey, Role};

use crate::model::{Actor, PeerAction, PeerRecord, ServerRecord, Via};
use crate::registry::{
    audited, keeps_an_admin, plan_add, AddPeer, AddPeerError, PeerUpdate, PeerUpdateError,
};
use crate::store::{Store, StoreError};

/// Why adding a peer failed: the registry refused it, or storage failed, or the server
/// stopped before it was live.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// The registry refused the peer (name or key taken, pool full, overlapping ranges).
    #[error(transparent)]
    Refused(#[from] AddPeerError),
    /// The database failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server stopped while the change was being made live (it is stored).
    #[error("the appliance is shutting down; the peer is stored and will be live after restart")]
    ShuttingDown,
}

/// Why a change to an existing peer failed: the registry refused it, or storage failed, or
/// the server stopped before it was live.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The registry refused the change (no such peer, key taken, the last admin).
    #[error(transparent)]
    Refused(#[from] PeerUpdateError),
    /// The database failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server stopped while the change was being made live (it is stored).
    #[error("the appliance is shutting down; the change is stored and takes effect after restart")]
    ShuttingDown,
}

/// What the network must do for a committed peer change to take effect.
#[derive(Debug, Clone, PartialEq)]
pub enum Live {
    /// Add or replace the peer in the tunnel (new key, enabled flag, role).
    Upsert(PeerRecord),
    /// Drop the peer: its sessions and connections end at once.
    Remove(PeerName),
}

/// A committed peer change: the record (for a removal, the record as it was) and what makes
/// it live.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The peer as committed.
    pub record: PeerRecord,
    /// What makes the change live.
    pub live: Live,
}

/// Peer operations against one store, by one actor, at one time.
pub struct PeerOps<'a> {
    store: &'a Store,
    server: &'a ServerRecord,
    actor: &'a Actor,
    now_ms: u64,
}

impl<'a> PeerOps<'a> {
    /// `now_ms` (Unix milliseconds) stamps the audit entry and a new peer's creation time.
    pub fn new(
        store: &'a Store,
        server: &'a ServerRecord,
        actor: &'a Actor,
        now_ms: u64,
    ) -> PeerOps<'a> {
        PeerOps {
            store,
            server,
            actor,
            now_ms,
        }
    }

    /// Registers a new peer, audited as [`PeerAction::Add`].
    pub fn add(&self, req: AddPeer) -> Result<Applied, AddError> {
        let rec = self.store.update_peers(|existing| {
            let planned = plan_add(existing, self.server, req, self.now_ms / 1000);
            audited(planned, PeerAction::Add, self.actor, self.now_ms).map_err(AddError::from)
        })?;
        Ok(Applied {
            live: Live::Upsert(rec.clone()),
            record: rec,
        })
    }

    /// Changes an existing peer, audited under the update's action. Over the API
    /// ([`Via::Api`]) it refuses to leave no enabled admin; the CLI on the server may.
    pub fn update(&self, op: PeerUpdate) -> Result<Applied, UpdateError> {
        let op = one_step(op);
        let action = op.action();
        let guard = self.actor.via == Via::Api;
        let rec = self.store.update_peers(|existing| {
            let planned = audited(
                op.plan(existing, self.server),
                action,
                self.actor,
                self.now_ms,
            )?;
            if guard && !keeps_an_admin(existing, &planned.0) {
                return Err(UpdateError::Refused(PeerUpdateError::LastAdmin));
            }
            Ok(planned)
        })?;
        let live = match action {
            PeerAction::Remove => Live::Remove(rec.name.clone()),
            _ => Live::Upsert(rec.clone()),
        };
        Ok(Applied { record: rec, live })
    }
}

/// The API's PATCH with one field is the CLI's one-step command, so the audit trail names it
/// the same way whoever made it (`peer.role`, `peer.enable`, `peer.disable`); only a change
/// of role and enabled together stays `peer.update`.
fn one_step(op: PeerUpdate) -> PeerUpdate {
    match op {
        PeerUpdate::Fields {
            name,
            role: Some(role),
            enabled: None,
        } => PeerUpdate::SetRole { name, role },
        PeerUpdate::Fields {
            name,
            role: None,
            enabled: Some(enabled),
        } => PeerUpdate::SetEnabled { name, enabled },
        other => other,
    }
}

/// What a successful add or rotate gives the client's side: enough to write its config.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeerAdded {
    /// The new peer's name.
    #[serde(with = "crate::wire::text")]
    pub name: PeerName,
    /// Its role.
    #[serde(with = "crate::wire::text")]
    pub role: Role,
    /// Its tunnel address.
    pub address: Ipv4Addr,
    /// The server's public key, for the client config.
    #[serde(with = "crate::wire::text")]
    pub server_public_key: PublicKey,
    /// `HOST:PORT` clients dial.
    #[serde(with = "crate::wire::endpoint")]
    pub endpoint: Endpoint,
    /// The tunnel subnet: the config's default AllowedIPs.
    #[serde(with = "crate::wire::text")]
    pub subnet: Ipv4Net,
}

impl PeerAdded {
    /// What a new peer's client needs, from its record and the server's.
    pub fn new(rec: &PeerRecord, server: &ServerRecord) -> PeerAdded {
        PeerAdded {
            name: rec.name.clone(),
            role: rec.role,
            address: rec.address,
            server_public_key: server.private_key.public_key(),
            endpoint: server.endpoint.clone(),
            subnet: server.subnet(),
        }
    }
}

/// PersistentKeepalive of a client config unless asked otherwise: phones behind NAT keep
/// their mapping alive.
pub const DEFAULT_KEEPALIVE: u16 = 25;

/// The choices a client config offers beyond the peer itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigOptions {
    /// DNS servers for the client.
    pub dns: Vec<IpAddr>,
    /// AllowedIPs of the client; `None`: the tunnel subnet.
    pub allowed_ips: Option<Vec<Ipv4Net>>,
    /// PersistentKeepalive in seconds; 0 leaves it out.
    pub keepalive: u16,
    /// The Endpoint written into the config instead of the server's.
    pub endpoint: Option<Endpoint>,
}

impl Default for ConfigOptions {
    fn default() -> Self {
        ConfigOptions {
            dns: Vec::new(),
            allowed_ips: None,
            keepalive: DEFAULT_KEEPALIVE,
            endpoint: None,
        }
    }
}

/// The text a QR code of `config` carries, wherever it is drawn (the CLI's terminal and PNG
/// codes, the dashboard's SVG): the compact form, the same settings in fewer bytes, so a
/// smaller code that scans from further away.
pub fn qr_text(config: &ClientConfig) -> String {
    config.render_compact()
}

/// The wg-quick config for a peer's new keys. `private_key` is `None` when the device
/// registered its own public key (the config then says to fill it in).
pub fn client_config(
    added: &PeerAdded,
    private_key: Option<PrivateKey>,
    preshared_key: PresharedKey,
    opts: ConfigOptions,
) -> ClientConfig {
    ClientConfig {
        private_key,
        address: added.address,
        dns: opts.dns,
        mtu: peers::DEFAULT_MTU,
        server_public_key: added.server_public_key,
        preshared_key: Some(preshared_key),
        endpoint: opts.endpoint.unwrap_or_else(|| added.endpoint.clone()),
        allowed_ips: opts.allowed_ips.unwrap_or_else(|| vec![added.subnet]),
        persistent_keepalive: (opts.keepalive > 0).then_some(opts.keepalive),
        name: Some(added.name.to_string()),
    }
}
