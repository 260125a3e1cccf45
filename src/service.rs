//! The running appliance's operations, shared by the HTTP API and the control socket.
//!
//! Layer: driver glue. Each operation runs the pure core decision against the store in one
//! write transaction (on a blocking thread: commits fsync), then tells the network driver so
//! the change is live before the caller hears "ok".

use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::directory::Directory;
use crate::driver::{Command, Metrics};
use crate::registry::{plan_add, AddPeer, AddPeerError};
use crate::store::{PeerRecord, ServerRecord, Store};

/// Seconds since the Unix epoch (driver-side clock read).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Handle to the running appliance.
pub struct Service {
    pub store: Arc<Store>,
    pub server: ServerRecord,
    pub commands: mpsc::Sender<Command>,
    pub directory: Arc<RwLock<Directory>>,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
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

impl Service {
    /// Registers a peer durably and makes it live.
    pub async fn add_peer(&self, req: AddPeer) -> Result<PeerRecord, AddPeerError> {
        let store = self.store.clone();
        let server = self.server.clone();
        let now = unix_now();
        let rec = tokio::task::spawn_blocking(move || {
            store.update_peers(|existing| plan_add(existing, &server, req, now))
        })
        .await
        .expect("store task does not panic")?;
        self.make_live(rec.clone()).await?;
        Ok(rec)
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
