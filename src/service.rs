//! The running appliance's operations, shared by the HTTP API and the control socket.
//!
//! Layer: driver glue. Each operation runs the pure core decision ([`crate::registry`]) against
//! the store in one write transaction (on a blocking thread: commits fsync), then tells the
//! network driver, so the change is live before the caller hears "ok".
#![allow(clippy::disallowed_methods)] // driver glue: reads the wall clock for record timestamps

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use peers::{PeerName, PresharedKey, PublicKey, Role};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::directory::Directory;
use crate::driver::{Command, LivePeerStats, Metrics};
use crate::model::{Actor, PeerChange, PeerRecord, PeerStats, ServerRecord};
use crate::registry::{
    audited, keeps_an_admin, plan_add, plan_remove, plan_rotate, plan_set_enabled, plan_set_role,
    plan_update, AddPeer, AddPeerError, PeerUpdateError,
};
use crate::store::{Store, StoreError};

/// Seconds since the Unix epoch (driver-side clock read).
pub fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// Milliseconds since the Unix epoch (driver-side clock read).
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One peer as `peer list` / `GET /api/v1/peers` show it. Never contains a key secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    pub name: String,
    pub role: String,
    pub address: std::net::Ipv4Addr,
    pub allowed_ips: Vec<String>,
    pub public_key: String,
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last completed handshake; `None`: never.
    pub last_handshake: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// The peer's current UDP endpoint (`ip:port`), if it has one.
    pub endpoint: Option<String>,
}

impl PeerView {
    pub fn new(rec: &PeerRecord, stats: Option<&PeerStats>) -> PeerView {
        let s = stats.cloned().unwrap_or_default();
        PeerView {
            name: rec.name.to_string(),
            role: rec.role.to_string(),
            address: rec.address,
            allowed_ips: rec.allowed_ips.iter().map(|n| n.to_string()).collect(),
            public_key: rec.public_key.to_base64(),
            enabled: rec.enabled,
            created_at: rec.created_at,
            last_handshake: s.last_handshake,
            rx_bytes: s.rx_bytes,
            tx_bytes: s.tx_bytes,
            endpoint: s.endpoint,
        }
    }
}

/// Running totals of per-peer statistics across tunnel restarts, keyed by peer name.
///
/// The router's counters start at zero whenever a peer's `Tunn` is created (server start,
/// rotate, enable), so the book adds deltas to the stored totals.
#[derive(Default)]
pub struct StatsBook {
    totals: HashMap<String, PeerStats>,
    last_seen: HashMap<PublicKey, (u64, u64)>,
}

impl StatsBook {
    pub fn new(stored: Vec<(String, PeerStats)>) -> StatsBook {
        StatsBook {
            totals: stored.into_iter().collect(),
            last_seen: HashMap::new(),
        }
    }

    /// Folds in a live sample; `names` maps keys to peer names. Returns the updated totals.
    pub fn update(
        &mut self,
        live: &[LivePeerStats],
        names: &HashMap<PublicKey, String>,
        now_unix: u64,
    ) -> Vec<(String, PeerStats)> {
        for s in live {
            let Some(name) = names.get(&s.public_key) else {
                continue;
            };
            let (prx, ptx) = self.last_seen.get(&s.public_key).copied().unwrap_or((0, 0));
            let (drx, dtx) = if s.rx_bytes < prx || s.tx_bytes < ptx {
                (s.rx_bytes, s.tx_bytes)
            } else {
                (s.rx_bytes - prx, s.tx_bytes - ptx)
            };
            self.last_seen
                .insert(s.public_key, (s.rx_bytes, s.tx_bytes));
            let t = self.totals.entry(name.clone()).or_default();
            t.rx_bytes += drx;
            t.tx_bytes += dtx;
            if let Some(since) = s.since_handshake {
                t.last_handshake = Some(now_unix.saturating_sub(since.as_secs()));
            }
            if let Some(e) = s.endpoint {
                t.endpoint = Some(e.to_string());
            }
        }
        self.totals.retain(|n, _| names.values().any(|v| v == n));
        let mut out: Vec<_> = self
            .totals
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn get(&self, name: &str) -> Option<&PeerStats> {
        self.totals.get(name)
    }

    /// Forgets a removed peer.
    pub fn forget(&mut self, name: &str) {
        self.totals.remove(name);
    }
}

/// Handle to the running appliance.
pub struct Service {
    pub store: Arc<Store>,
    /// The server record; its endpoint changes live (`appliance endpoint`, `PUT
    /// /api/v1/endpoint`). Read it with [`Service::server`].
    pub server: RwLock<ServerRecord>,
    /// The UDP address the WireGuard socket is bound to.
    pub listen: std::net::SocketAddr,
    /// The data directory (the disk-space check of `status`; backups requested over the
    /// control socket are staged there).
    pub data_dir: std::path::PathBuf,
    pub commands: mpsc::Sender<Command>,
    pub directory: Arc<RwLock<Directory>>,
    pub metrics: Arc<Metrics>,
    pub stats: Mutex<StatsBook>,
    pub started: Instant,
    /// HTTP limits and allowed host names.
    pub api: crate::api::ApiConfig,
    /// Open HTTP connections per peer address.
    pub connections: crate::api::ConnectionCounts,
    /// Write rate limits, refused-attempt log and buffer budgets of the API (with their
    /// counters, shown in `/api/v1/health` under `api`).
    pub guards: crate::api::Guards,
    /// The scheduler (set once it has loaded its jobs).
    pub jobs: std::sync::OnceLock<crate::jobs::Jobs>,
    /// Stored rows skipped as damaged (peers, jobs, runs found at start); reset by
    /// `appliance doctor --quarantine`. Shown in `/api/v1/health`.
    pub damaged_rows: std::sync::atomic::AtomicUsize,
    /// HTTP requests by route template and status, with latencies (`GET /metrics`).
    pub http: crate::metrics::HttpMetrics,
    /// Backups this server wrote (`GET /metrics`).
    pub backups: Arc<crate::backups::BackupStats>,
}

/// The driver stopped (the appliance is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the appliance is shutting down")]
pub struct ShuttingDown;

impl From<ShuttingDown> for AddPeerError {
    fn from(_: ShuttingDown) -> Self {
        AddPeerError::ShuttingDown
    }
}

impl From<ShuttingDown> for PeerUpdateError {
    fn from(_: ShuttingDown) -> Self {
        PeerUpdateError::ShuttingDown
    }
}

impl Service {
    /// Runs a pure peer decision in one write transaction on a blocking thread.
    async fn commit<T, E>(
        &self,
        plan: impl FnOnce(&[PeerRecord], &ServerRecord) -> Result<(PeerChange, T), E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        let server = self.server();
        tokio::task::spawn_blocking(move || store.update_peers(|existing| plan(existing, &server)))
            .await
            .expect("store task does not panic")
    }

    /// The server record as it is now (the endpoint may have changed since start).
    pub fn server(&self) -> ServerRecord {
        self.server.read().unwrap().clone()
    }

    /// Changes the endpoint new configs carry, durably with its audit entry, then live: the
    /// next `peer add` and `POST /api/v1/peers` use it. Tunnels that are up stay up (the
    /// server key, port and peers do not change). A port-less `host` takes the port listened
    /// on. Returns the endpoint it replaced.
    pub async fn set_endpoint(
        &self,
        endpoint: peers::Endpoint,
        actor: Actor,
    ) -> Result<peers::Endpoint, StoreError> {
        let store = self.store.clone();
        let now = unix_now_ms();
        let stored = endpoint.clone();
        let previous =
            tokio::task::spawn_blocking(move || store.set_endpoint(&stored, &actor, now))
                .await
                .expect("store task does not panic")?;
        tracing::info!(from = %previous, to = %endpoint, "endpoint changed; new configs carry it");
        self.server.write().unwrap().endpoint = endpoint;
        Ok(previous)
    }

    /// `appliance status` while serving: the stored state with live statistics, the bound
    /// socket and the uptime folded in.
    pub async fn status(&self) -> Result<crate::status::Status, StoreError> {
        let stats = self.sample_stats().await.unwrap_or_default();
        let live = crate::status::Live {
            listen: self.listen.to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            stats,
        };
        let store = self.store.clone();
        let server = self.server();
        // Disk only: the clock probe (adjtimex) is outside the systemd unit's
        // SystemCallFilter; the CLI, which runs outside the sandbox, adds that warning.
        let host = crate::status::HostChecks {
            disk_free: crate::paths::disk_free(&self.data_dir),
            clock_synced: None,
        };
        tokio::task::spawn_blocking(move || {
            crate::status::collect(&store, &server, Some(live), host, unix_now())
        })
        .await
        .expect("store task does not panic")
    }

    /// Registers a peer durably (with its audit entry) and makes it live.
    pub async fn add_peer(&self, req: AddPeer, actor: Actor) -> Result<PeerRecord, AddPeerError> {
        let now = unix_now_ms();
        let rec = self
            .commit(move |existing, server| {
                audited(
                    plan_add(existing, server, req, now / 1000),
                    "peer.add",
                    &actor,
                    now,
                )
            })
            .await?;
        self.make_live(rec.clone()).await?;
        Ok(rec)
    }

    /// Runs a planned change to an existing peer with its audit entry; over the API, refuses
    /// to leave no enabled admin. Then makes the result live.
    async fn update_peer(
        &self,
        action: &'static str,
        actor: Actor,
        plan: impl FnOnce(
                &[PeerRecord],
                &ServerRecord,
            ) -> Result<(PeerChange, PeerRecord), PeerUpdateError>
            + Send
            + 'static,
    ) -> Result<PeerRecord, PeerUpdateError> {
        let now = unix_now_ms();
        let guard = actor.via == "api";
        let rec = self
            .commit(move |existing, server| {
                let planned = audited(plan(existing, server), action, &actor, now)?;
                if guard && !keeps_an_admin(existing, &planned.0) {
                    return Err(PeerUpdateError::LastAdmin);
                }
                Ok(planned)
            })
            .await?;
        if action == "peer.remove" {
            let (tx, rx) = oneshot::channel();
            self.commands
                .send(Command::RemovePeer {
                    name: rec.name.clone(),
                    done: tx,
                })
                .await
                .map_err(|_| ShuttingDown)?;
            rx.await.map_err(|_| ShuttingDown)?;
            self.stats.lock().unwrap().forget(rec.name.as_str());
        } else {
            self.make_live(rec.clone()).await?;
        }
        Ok(rec)
    }

    /// Enables or disables a peer; disabling ends its sessions and connections at once.
    pub async fn set_enabled(
        &self,
        name: PeerName,
        enabled: bool,
        actor: Actor,
    ) -> Result<PeerRecord, PeerUpdateError> {
        let action = if enabled {
            "peer.enable"
        } else {
            "peer.disable"
        };
        self.update_peer(action, actor, move |existing, _| {
            plan_set_enabled(existing, &name, enabled)
        })
        .await
    }

    /// Changes a peer's role (effective from its next request).
    pub async fn set_role(
        &self,
        name: PeerName,
        role: Role,
        actor: Actor,
    ) -> Result<PeerRecord, PeerUpdateError> {
        self.update_peer("peer.role", actor, move |existing, _| {
            plan_set_role(existing, &name, role)
        })
        .await
    }

    /// Changes role and/or enabled in one audited step (the API's PATCH).
    pub async fn update_fields(
        &self,
        name: PeerName,
        role: Option<Role>,
        enabled: Option<bool>,
        actor: Actor,
    ) -> Result<PeerRecord, PeerUpdateError> {
        self.update_peer("peer.update", actor, move |existing, _| {
            plan_update(existing, &name, role, enabled)
        })
        .await
    }

    /// Replaces a peer's key and PSK; the old key's sessions and connections end at once.
    pub async fn rotate(
        &self,
        name: PeerName,
        public_key: PublicKey,
        psk: Option<PresharedKey>,
        actor: Actor,
    ) -> Result<PeerRecord, PeerUpdateError> {
        self.update_peer("peer.rotate", actor, move |existing, server| {
            plan_rotate(existing, server, &name, public_key, psk)
        })
        .await
    }

    /// Removes a peer; its sessions and connections end at once and its address is freed.
    pub async fn remove_peer(
        &self,
        name: PeerName,
        actor: Actor,
    ) -> Result<PeerRecord, PeerUpdateError> {
        self.update_peer("peer.remove", actor, move |existing, _| {
            plan_remove(existing, &name)
        })
        .await
    }

    /// The key of the webhook-URL fingerprints viewers see: derived from the server's private
    /// key, so fingerprints are stable across restarts and cannot be computed by a viewer.
    pub fn url_fingerprint_key(&self) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"appliance url fingerprint v1\0");
        ctx.update(self.server.read().unwrap().private_key.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    /// One peer with the statistics known so far.
    pub fn view(&self, rec: &PeerRecord) -> PeerView {
        PeerView::new(rec, self.stats.lock().unwrap().get(rec.name.as_str()))
    }

    /// Every peer with live statistics merged into the stored totals.
    pub async fn list_peers(&self) -> Result<Vec<PeerView>, StoreError> {
        let _ = self.sample_stats().await;
        let dir = self.directory.read().unwrap();
        let book = self.stats.lock().unwrap();
        let mut out: Vec<PeerView> = dir
            .iter()
            .map(|p| PeerView::new(p, book.get(p.name.as_str())))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Asks the driver for live statistics and folds them into the book; returns the totals.
    pub async fn sample_stats(&self) -> Result<Vec<(String, PeerStats)>, ShuttingDown> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::PeerStats(tx))
            .await
            .map_err(|_| ShuttingDown)?;
        let live = rx.await.map_err(|_| ShuttingDown)?;
        let names: HashMap<PublicKey, String> = self
            .directory
            .read()
            .unwrap()
            .iter()
            .map(|p| (p.public_key, p.name.to_string()))
            .collect();
        Ok(self.stats.lock().unwrap().update(&live, &names, unix_now()))
    }

    /// Persists the statistics totals (called now and then, and at shutdown).
    pub async fn persist_stats(&self) -> Result<(), StoreError> {
        let Ok(totals) = self.sample_stats().await else {
            return Ok(());
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.save_peer_stats(&totals))
            .await
            .expect("store task does not panic")
    }

    async fn make_live(&self, rec: PeerRecord) -> Result<(), ShuttingDown> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::UpsertPeer(rec, tx))
            .await
            .map_err(|_| ShuttingDown)?;
        rx.await.map_err(|_| ShuttingDown)
    }
}
