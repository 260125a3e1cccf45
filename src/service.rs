//! The running appliance's operations, shared by the HTTP API and the control socket.
//!
//! Layer: driver glue. Each peer operation runs [`crate::peer_ops::PeerOps`] — the pure core
//! decision and its audit entry in one write transaction — on a blocking thread (commits
//! fsync), then tells the network driver, so the change is live before the caller hears "ok".
#![allow(clippy::disallowed_methods)] // driver glue: reads the wall clock for record timestamps

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use peers::PublicKey;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::directory::Roster;
use crate::driver::{Command, LivePeerStats, Metrics};
use crate::model::{Actor, PeerRecord, PeerStats, ServerRecord};
use crate::peer_ops::{AddError, Applied, Live, PeerOps, UpdateError};
use crate::registry::{AddPeer, PeerUpdate};
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
    /// The peer's name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its tunnel address.
    pub address: std::net::Ipv4Addr,
    /// Source ranges it may use (its address first).
    pub allowed_ips: Vec<String>,
    /// Its public key (base64).
    pub public_key: String,
    /// Whether it may connect.
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last completed handshake; `None`: never.
    pub last_handshake: Option<u64>,
    /// Bytes received from it, over all its sessions.
    pub rx_bytes: u64,
    /// Bytes sent to it, over all its sessions.
    pub tx_bytes: u64,
    /// The peer's current UDP endpoint (`ip:port`), if it has one.
    pub endpoint: Option<String>,
}

impl PeerView {
    /// The view of a stored peer with its statistics (zero if none).
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
    /// A book starting from the stored totals.
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

    /// The totals of this peer.
    pub fn get(&self, name: &str) -> Option<&PeerStats> {
        self.totals.get(name)
    }

    /// Forgets a removed peer.
    pub fn forget(&mut self, name: &str) {
        self.totals.remove(name);
    }
}

/// Handle to the running appliance: the store, the live server record, the network driver's
/// command channel and shared tables, the scheduler. Built once, with everything it needs
/// ([`Appliance::new`]); the HTTP side keeps its own state ([`crate::api::ApiState`]).
pub struct Appliance {
    store: Arc<Store>,
    /// The server record; its endpoint changes live (`appliance endpoint`, `PUT
    /// /api/v1/endpoint`). Read it with [`Appliance::server`].
    server: RwLock<ServerRecord>,
    listen: std::net::SocketAddr,
    data_dir: std::path::PathBuf,
    commands: mpsc::Sender<Command>,
    directory: Arc<RwLock<Roster>>,
    metrics: Arc<Metrics>,
    stats: Mutex<StatsBook>,
    started: Instant,
    jobs: crate::scheduler::Handle,
    damaged_rows: std::sync::atomic::AtomicUsize,
    backups: Arc<crate::backups::BackupStats>,
}

/// What an [`Appliance`] is built from.
pub struct ApplianceParts {
    /// The open database.
    pub store: Arc<Store>,
    /// The server record as loaded (its endpoint may change later).
    pub server: ServerRecord,
    /// The UDP address the WireGuard socket is bound to.
    pub listen: std::net::SocketAddr,
    /// The data directory (the disk-space check of `status`; backups requested over the
    /// control socket are staged there).
    pub data_dir: std::path::PathBuf,
    /// The network driver's command channel.
    pub commands: mpsc::Sender<Command>,
    /// The enabled and disabled peers, shared with the driver.
    pub directory: Arc<RwLock<Roster>>,
    /// The tunnel's counters, shared with the driver.
    pub metrics: Arc<Metrics>,
    /// Peer traffic totals loaded from the store.
    pub stats: StatsBook,
    /// When the server started (uptime).
    pub started: Instant,
    /// The scheduler, its jobs loaded.
    pub jobs: crate::scheduler::Handle,
    /// Stored rows skipped as damaged at start (peers, jobs, runs).
    pub damaged_rows: usize,
}

/// The driver stopped (the appliance is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the appliance is shutting down")]
pub struct ShuttingDown;

impl From<ShuttingDown> for AddError {
    fn from(_: ShuttingDown) -> Self {
        AddError::ShuttingDown
    }
}

impl From<ShuttingDown> for UpdateError {
    fn from(_: ShuttingDown) -> Self {
        UpdateError::ShuttingDown
    }
}

impl Appliance {
    /// The one constructor: everything the running appliance's operations need.
    pub fn new(parts: ApplianceParts) -> Appliance {
        Appliance {
            store: parts.store,
            server: RwLock::new(parts.server),
            listen: parts.listen,
            data_dir: parts.data_dir,
            commands: parts.commands,
            directory: parts.directory,
            metrics: parts.metrics,
            stats: Mutex::new(parts.stats),
            started: parts.started,
            jobs: parts.jobs,
            damaged_rows: parts.damaged_rows.into(),
            backups: Default::default(),
        }
    }

    /// The database.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The UDP address the WireGuard socket is bound to.
    pub fn listen(&self) -> std::net::SocketAddr {
        self.listen
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The network driver's command channel.
    pub fn commands(&self) -> &mpsc::Sender<Command> {
        &self.commands
    }

    /// The peers as the driver routes them.
    pub fn directory(&self) -> &RwLock<Roster> {
        &self.directory
    }

    /// The tunnel's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// When the server started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The scheduler.
    pub fn jobs(&self) -> &crate::scheduler::Handle {
        &self.jobs
    }

    /// Damaged stored rows (`/api/v1/health`, `/metrics` and `appliance status` show this one
    /// count): at start those skipped while loading peers, jobs and the open runs (a damaged
    /// finished run is not read at start); each `appliance doctor`
    /// recounts over every table (run and audit history included), and `--quarantine` leaves
    /// none. No full scan runs by itself: on a long history it would cost the memory and
    /// time that loading only summaries saves.
    pub fn damaged_rows(&self) -> usize {
        self.damaged_rows.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `appliance doctor` counted `rows` damaged rows just now (0 after `--quarantine` moved
    /// them aside).
    pub fn set_damaged_rows(&self, rows: usize) {
        self.damaged_rows
            .store(rows, std::sync::atomic::Ordering::Relaxed);
    }

    /// Backups this server wrote (`GET /metrics`).
    pub fn backups(&self) -> &Arc<crate::backups::BackupStats> {
        &self.backups
    }

    /// Runs a peer operation as `actor` on a blocking thread (its commit fsyncs).
    async fn peer_op<E>(
        &self,
        actor: Actor,
        op: impl FnOnce(&PeerOps<'_>) -> Result<Applied, E> + Send + 'static,
    ) -> Result<Applied, E>
    where
        E: Send + 'static,
    {
        let store = self.store.clone();
        let server = self.server();
        let now = unix_now_ms();
        tokio::task::spawn_blocking(move || op(&PeerOps::new(&store, &server, &actor, now)))
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
    pub async fn status(&self) -> Result<crate::status::Report, StoreError> {
        let stats = self.sample_stats().await.unwrap_or_default();
        let live = crate::status::Live {
            damaged_rows: self.damaged_rows() as u64,
            listen: self.listen.to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            stats,
            filter: self.metrics.filter_status(),
            jobs: Some(self.jobs.glance()),
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
    pub async fn add_peer(&self, req: AddPeer, actor: Actor) -> Result<PeerRecord, AddError> {
        let applied = self.peer_op(actor, move |ops| ops.add(req)).await?;
        self.make_live(applied.live).await?;
        Ok(applied.record)
    }

    /// Changes an existing peer with its audit entry (over the API, refusing to leave no
    /// enabled admin), then makes it live: disabling, rotating or removing ends the old
    /// sessions and connections at once; a role change applies from the next request.
    pub async fn update_peer(
        &self,
        op: PeerUpdate,
        actor: Actor,
    ) -> Result<PeerRecord, UpdateError> {
        let applied = self.peer_op(actor, move |ops| ops.update(op)).await?;
        self.make_live(applied.live).await?;
        Ok(applied.record)
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

    /// Hands a committed change to the network driver and waits until it is live.
    async fn make_live(&self, live: Live) -> Result<(), ShuttingDown> {
        match live {
            Live::Upsert(rec) => {
                let (tx, rx) = oneshot::channel();
                self.commands
                    .send(Command::UpsertPeer(rec, tx))
                    .await
                    .map_err(|_| ShuttingDown)?;
                rx.await.map_err(|_| ShuttingDown)
            }
            Live::Remove(name) => {
                let (tx, rx) = oneshot::channel();
                self.commands
                    .send(Command::RemovePeer {
                        name: name.clone(),
                        done: tx,
                    })
                    .await
                    .map_err(|_| ShuttingDown)?;
                rx.await.map_err(|_| ShuttingDown)?;
                self.stats.lock().unwrap().forget(name.as_str());
                Ok(())
            }
        }
    }
}
