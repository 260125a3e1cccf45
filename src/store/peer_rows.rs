//! Storage of the server record (in `meta`), the peers and their statistics (part of
//! [`crate::store`]).
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `server` | the server's key, port, interface, endpoint, creation time (JSON) |
//! | `peers` | peer name | name, role, public key, PSK, address, allowed IPs, enabled, creation time (JSON) |
//! | `peer_stats` | peer name | last handshake, bytes in and out, endpoint (JSON) |

use std::net::Ipv4Addr;

use peers::{Endpoint, Ipv4Net, PeerName, PresharedKey, PrivateKey, PublicKey};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::rows::decode_rows;
use super::{
    append_audit, corrupt, Loaded, Store, StoreError, KEY_SERVER, META, PEERS, PEER_STATS,
};
use crate::model::{
    Actor, AuditAction, AuditEntry, PeerChange, PeerRecord, PeerStats, ServerRecord,
};

#[derive(Serialize, Deserialize)]
struct ServerRow {
    private_key: String,
    listen_port: u16,
    interface: String,
    endpoint: String,
    created_at: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerRow {
    name: String,
    role: String,
    public_key: String,
    preshared_key: Option<String>,
    address: Ipv4Addr,
    allowed_ips: Vec<String>,
    enabled: bool,
    created_at: u64,
}

impl ServerRow {
    fn from_record(r: &ServerRecord) -> Self {
        ServerRow {
            private_key: r.private_key.to_base64(),
            listen_port: r.listen_port,
            interface: r.interface.to_string(),
            endpoint: r.endpoint.to_string(),
            created_at: r.created_at,
        }
    }
    fn into_record(self) -> Result<ServerRecord, StoreError> {
        let c = |e: &dyn std::fmt::Display| corrupt(KEY_SERVER, e);
        Ok(ServerRecord {
            private_key: PrivateKey::parse(&self.private_key).map_err(|e| c(&e))?,
            listen_port: self.listen_port,
            interface: Ipv4Net::parse(&self.interface).map_err(|e| c(&e))?,
            endpoint: Endpoint::parse(&self.endpoint, self.listen_port).map_err(|e| c(&e))?,
            created_at: self.created_at,
        })
    }
}

impl PeerRow {
    fn from_record(r: &PeerRecord) -> Self {
        PeerRow {
            name: r.name.to_string(),
            role: r.role.to_string(),
            public_key: r.public_key.to_base64(),
            preshared_key: r.preshared_key.as_ref().map(|k| k.to_base64()),
            address: r.address,
            allowed_ips: r.allowed_ips.iter().map(|n| n.to_string()).collect(),
            enabled: r.enabled,
            created_at: r.created_at,
        }
    }
    fn into_record(self) -> Result<PeerRecord, StoreError> {
        let key = self.name.clone();
        let c = |e: &dyn std::fmt::Display| corrupt(&key, e);
        Ok(PeerRecord {
            name: PeerName::new(&self.name).map_err(|e| c(&e))?,
            role: self.role.parse().map_err(|e| c(&e))?,
            public_key: PublicKey::parse(&self.public_key).map_err(|e| c(&e))?,
            preshared_key: match self.preshared_key {
                Some(k) => Some(PresharedKey::parse(&k).map_err(|e| c(&e))?),
                None => None,
            },
            address: self.address,
            allowed_ips: self
                .allowed_ips
                .iter()
                .map(|s| Ipv4Net::parse(s))
                .collect::<Result<_, _>>()
                .map_err(|e| c(&e))?,
            enabled: self.enabled,
            created_at: self.created_at,
        })
    }
}

/// Encodes the server record as stored in `meta`.
pub(super) fn encode_server(r: &ServerRecord) -> Vec<u8> {
    serde_json::to_vec(&ServerRow::from_record(r)).expect("rows serialise")
}

/// Decodes the stored server record.
fn decode_server(bytes: &[u8]) -> Result<ServerRecord, StoreError> {
    let row: ServerRow = serde_json::from_slice(bytes).map_err(|e| corrupt(KEY_SERVER, e))?;
    row.into_record()
}

/// A `peer_stats` row.
#[derive(Serialize, Deserialize)]
struct StatsRow {
    last_handshake: Option<u64>,
    rx_bytes: u64,
    tx_bytes: u64,
    endpoint: Option<String>,
}

/// Encodes a peer's statistics as stored in `peer_stats`.
fn encode_stats(s: &PeerStats) -> Vec<u8> {
    serde_json::to_vec(&StatsRow {
        last_handshake: s.last_handshake,
        rx_bytes: s.rx_bytes,
        tx_bytes: s.tx_bytes,
        endpoint: s.endpoint.clone(),
    })
    .expect("rows serialise")
}

/// Decodes a `peer_stats` row.
pub(super) fn decode_stats(key: &str, bytes: &[u8]) -> Result<PeerStats, StoreError> {
    let row: StatsRow = serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))?;
    Ok(PeerStats {
        last_handshake: row.last_handshake,
        rx_bytes: row.rx_bytes,
        tx_bytes: row.tx_bytes,
        endpoint: row.endpoint,
    })
}

/// Encodes a peer record as stored bytes (exposed for tests of the on-disk format).
pub fn encode_peer(r: &PeerRecord) -> Vec<u8> {
    serde_json::to_vec(&PeerRow::from_record(r)).expect("rows serialise")
}

pub(super) fn decode_peer(key: &str, bytes: &[u8]) -> Result<PeerRecord, StoreError> {
    let row: PeerRow = serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))?;
    row.into_record()
}

impl Store {
    /// The server record, if `init` has run.
    pub fn server(&self) -> Result<Option<ServerRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let Some(v) = meta.get(KEY_SERVER)? else {
            return Ok(None);
        };
        decode_server(v.value()).map(Some)
    }

    /// Writes the server record unless one exists; returns `false` (and writes nothing) if
    /// the server was already initialised — its key is never replaced.
    pub fn init_server(&self, record: &ServerRecord) -> Result<bool, StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            if meta.get(KEY_SERVER)?.is_some() {
                return Ok(false);
            }
            let row = encode_server(record);
            meta.insert(KEY_SERVER, row.as_slice())?;
        }
        self.commit(txn)?;
        Ok(true)
    }

    /// Replaces the endpoint clients dial, with its audit entry (`server.endpoint`) in the same
    /// transaction; returns the endpoint it replaced. Nothing else in the record changes:
    /// the server key and the peers stay, so existing configs keep working wherever they
    /// still reach this machine.
    pub fn set_endpoint(
        &self,
        endpoint: &Endpoint,
        actor: &Actor,
        now_ms: u64,
    ) -> Result<Endpoint, StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        let previous = {
            let mut meta = txn.open_table(META)?;
            let mut record = match meta.get(KEY_SERVER)? {
                Some(v) => decode_server(v.value())?,
                None => {
                    return Err(corrupt(
                        KEY_SERVER,
                        "there is no server record; run `appliance init`",
                    ))
                }
            };
            let previous = std::mem::replace(&mut record.endpoint, endpoint.clone());
            let row = encode_server(&record);
            meta.insert(KEY_SERVER, row.as_slice())?;
            previous
        };
        append_audit(
            &txn,
            &self.audit_meter,
            AuditEntry {
                seq: 0,
                at_ms: now_ms,
                actor: actor.clone(),
                action: AuditAction::ServerEndpoint,
                target: None,
                summary: serde_json::json!({
                    "from": previous.to_string(),
                    "to": endpoint.to_string(),
                }),
            },
        )?;
        self.commit(txn)?;
        Ok(previous)
    }

    /// Every stored peer that decodes, ordered by name, and the rows that do not (each logged
    /// at WARN). A damaged peer — including one whose stored key is low-order — is not routed.
    pub fn peers(&self) -> Result<Loaded<PeerRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(PEERS)?;
        let rows = decode_rows(&table, |k, v| (k.to_string(), decode_peer(k, v)))?;
        Ok(Loaded::sort("peers", rows))
    }

    /// Runs `plan` on the current peer list inside one write transaction and stores the peers
    /// it returns (replacing same-named rows) and removes the names it lists, atomically.
    /// `plan` is a pure decision (see [`crate::registry`]); if it fails nothing is written.
    pub fn update_peers<T, E>(
        &self,
        plan: impl FnOnce(&[PeerRecord]) -> Result<(PeerChange, T), E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let db = self.writer()?;
        let txn = db.begin_write().map_err(StoreError::from)?;
        let out = {
            let mut table = txn.open_table(PEERS).map_err(StoreError::from)?;
            let mut current = Vec::new();
            let mut damaged = Vec::new();
            for (key, peer) in decode_rows(&table, |k, v| (k.to_string(), decode_peer(k, v)))? {
                match peer {
                    Ok(p) => current.push(p),
                    // The plan never sees a damaged row; it must not be overwritten either.
                    Err(_) => damaged.push(key),
                }
            }
            let (change, out) = plan(&current)?;
            if let Some(rec) = change
                .upsert
                .iter()
                .find(|r| damaged.iter().any(|d| d == r.name.as_str()))
            {
                return Err(StoreError::Corrupt {
                    key: rec.name.to_string(),
                    reason: "its stored row is damaged; run `appliance doctor --quarantine` to move it aside first".into(),
                }
                .into());
            }
            for name in &change.remove {
                table.remove(name.as_str()).map_err(StoreError::from)?;
            }
            for rec in &change.upsert {
                table
                    .insert(rec.name.as_str(), encode_peer(rec).as_slice())
                    .map_err(StoreError::from)?;
            }
            if !change.remove.is_empty() {
                let mut stats = txn.open_table(PEER_STATS).map_err(StoreError::from)?;
                for name in &change.remove {
                    stats.remove(name.as_str()).map_err(StoreError::from)?;
                }
            }
            if let Some(entry) = change.audit {
                append_audit(&txn, &self.audit_meter, entry)?;
            }
            out
        };
        self.commit(txn).map_err(StoreError::from)?;
        Ok(out)
    }

    /// Stored statistics for every peer that has any.
    pub fn peer_stats(&self) -> Result<Vec<(String, PeerStats)>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(PEER_STATS)?;
        decode_rows(&table, |k, v| Ok((k.to_string(), decode_stats(k, v)?)))?
            .into_iter()
            .collect()
    }

    /// Persists statistics for the named peers (ignoring names no longer stored).
    pub fn save_peer_stats(&self, stats: &[(String, PeerStats)]) -> Result<(), StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let peers = txn.open_table(PEERS)?;
            let mut table = txn.open_table(PEER_STATS)?;
            for (name, s) in stats {
                if peers.get(name.as_str())?.is_some() {
                    table.insert(name.as_str(), encode_stats(s).as_slice())?;
                }
            }
        }
        self.commit(txn)?;
        Ok(())
    }
}
