//! The local control socket: how CLI commands reach a running `appliance serve`.
//!
//! Layer: driver. redb lets only one process open the database, so while the server runs the
//! CLI sends its request here instead: a Unix socket `control.sock` in the data directory, mode
//! 0600 (only the owner of the data directory can manage peers). The protocol is one JSON
//! request line and one JSON response line per connection.
//!
//! The client's private key never crosses this socket: the CLI generates the key pair and
//! sends only the public key and the preshared key.
//!
//! Requests deserialise straight into checked types (`PeerName`, `Role`, `PublicKey`, …, see
//! [`crate::wire`]): a request line with a bad name or key is refused as a whole by
//! [`parse_request`], and the handlers run the same [`crate::peer_ops`] path as the API.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use peers::{Ipv4Net, PeerName, PresharedKey, PublicKey, Role};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::model::{Actor, PeerRecord};
pub use crate::peer_ops::PeerAdded;
use crate::peer_ops::{AddError, UpdateError};
use crate::registry::{AddPeer, PeerUpdate, PeerUpdateError};
use crate::service::{Appliance, PeerView};
use crate::store::StoreError;

/// Longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

/// A request from the CLI.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Register a new peer; replies [`PeerAdded`].
    PeerAdd {
        /// The new peer's name.
        #[serde(with = "crate::wire::text")]
        name: PeerName,
        /// Its role.
        #[serde(with = "crate::wire::text")]
        role: Role,
        /// Its public key (the device keeps the private key).
        #[serde(with = "crate::wire::text")]
        public_key: PublicKey,
        /// An optional preshared key.
        #[serde(with = "crate::wire::psk_opt", default)]
        preshared_key: Option<PresharedKey>,
        /// Addresses it may route beyond its own tunnel address.
        #[serde(with = "crate::wire::text_list", default)]
        extra_allowed_ips: Vec<Ipv4Net>,
    },
    /// Every peer with statistics; replies `[PeerView]`.
    PeerList,
    /// Enable or disable a peer; replies [`PeerView`].
    PeerSetEnabled {
        /// The peer.
        #[serde(with = "crate::wire::text")]
        name: PeerName,
        /// Whether it may connect.
        enabled: bool,
    },
    /// Change a peer's role; replies [`PeerView`].
    PeerSetRole {
        /// The peer.
        #[serde(with = "crate::wire::text")]
        name: PeerName,
        /// Its new role.
        #[serde(with = "crate::wire::text")]
        role: Role,
    },
    /// Remove a peer; replies [`PeerView`] of the removed peer.
    PeerRemove {
        /// The peer.
        #[serde(with = "crate::wire::text")]
        name: PeerName,
    },
    /// Audit entries, newest first; replies `[AuditItem]` ([`crate::api::view::AuditItem`]).
    AuditList {
        /// Only entries before this sequence number (the paging cursor).
        before: Option<u64>,
        /// Only entries at or after this Unix millisecond.
        since_ms: Option<u64>,
        /// Most entries to return.
        limit: usize,
    },
    /// New key and PSK for a peer; replies [`PeerAdded`].
    PeerRotate {
        /// The peer.
        #[serde(with = "crate::wire::text")]
        name: PeerName,
        /// Its new public key.
        #[serde(with = "crate::wire::text")]
        public_key: PublicKey,
        /// Its new preshared key, if any.
        #[serde(with = "crate::wire::psk_opt", default)]
        preshared_key: Option<PresharedKey>,
    },
    /// List damaged stored rows, or move them into quarantine; replies
    /// [`crate::store::DoctorReport`].
    Doctor {
        /// Move the damaged rows into quarantine instead of only listing them.
        quarantine: bool,
    },
    /// Show the endpoint clients dial, or change it (`set`: `HOST[:PORT]`, a missing port is
    /// the port listened on); replies [`crate::api::view::EndpointView`].
    Endpoint {
        /// The new endpoint; `None` only shows the current one.
        set: Option<String>,
    },
    /// The whole appliance at a glance; replies [`crate::status::Report`].
    Status,
    /// Write a consistent snapshot of the database into the data directory under a staging
    /// name; replies [`crate::store::BackupInfo`] whose `path` is that file's name. The CLI
    /// copies it to its destination and deletes it: the server may not be able to write where
    /// the caller wants (the systemd unit's sandbox gives it only the data directory, and its
    /// own private /tmp).
    Backup,
}

/// What kind of failure a refused request met; on the wire in snake_case
/// (`invalid_input`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The request itself is wrong (a bad name, key, endpoint, destination).
    InvalidInput,
    /// No peer by that name.
    NotFound,
    /// It clashes with what exists (name or key taken, the last admin, a full pool).
    Conflict,
    /// The server's disk is full: nothing was saved.
    InsufficientStorage,
    /// The server's database is being reopened after a disk error.
    Unavailable,
    /// The server failed (or is shutting down).
    Internal,
}

impl FailureKind {
    /// Whether the server, not the caller, is at fault (a full disk, a failure): the CLI exits
    /// 1 for these and 2 for what the caller got wrong.
    pub fn is_servers(self) -> bool {
        matches!(
            self,
            FailureKind::Internal | FailureKind::InsufficientStorage | FailureKind::Unavailable
        )
    }
}

/// The error half of a response.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ControlFailure {
    /// What kind of failure it was (the CLI's exit code follows from it).
    pub kind: FailureKind,
    /// The sentence to show the operator.
    pub message: String,
}

impl ControlFailure {
    pub(crate) fn new(kind: FailureKind, message: impl ToString) -> Self {
        ControlFailure {
            kind,
            message: message.to_string(),
        }
    }

    /// A refusal of what the caller sent (`invalid_input`).
    pub fn invalid(message: impl ToString) -> Self {
        ControlFailure::new(FailureKind::InvalidInput, message)
    }
}

impl From<UpdateError> for ControlFailure {
    fn from(e: UpdateError) -> Self {
        let kind = match e {
            UpdateError::Refused(PeerUpdateError::NotFound(_)) => FailureKind::NotFound,
            UpdateError::Refused(
                PeerUpdateError::KeyTaken(_)
                | PeerUpdateError::ServerKey
                | PeerUpdateError::LastAdmin,
            ) => FailureKind::Conflict,
            UpdateError::Store(ref s) => store_kind(s),
            UpdateError::ShuttingDown => FailureKind::Internal,
        };
        ControlFailure::new(kind, e)
    }
}

/// The failure kind of a storage error: `insufficient_storage` (the disk is full),
/// `unavailable` (the database is being reopened after a disk error) or `internal`.
fn store_kind(e: &StoreError) -> FailureKind {
    match e {
        StoreError::DiskFull => FailureKind::InsufficientStorage,
        StoreError::Unavailable { .. } => FailureKind::Unavailable,
        StoreError::Redb(_) | StoreError::Corrupt { .. } => FailureKind::Internal,
    }
}

impl From<StoreError> for ControlFailure {
    fn from(e: StoreError) -> Self {
        ControlFailure::new(store_kind(&e), e)
    }
}

impl From<crate::store::BackupError> for ControlFailure {
    fn from(e: crate::store::BackupError) -> Self {
        use crate::store::BackupError::*;
        let kind = match e {
            Exists { .. } | NoDirectory { .. } => FailureKind::InvalidInput,
            _ => FailureKind::Internal,
        };
        ControlFailure::new(kind, e)
    }
}

impl From<AddError> for ControlFailure {
    fn from(e: AddError) -> Self {
        let kind = match e {
            AddError::Store(ref s) => store_kind(s),
            AddError::ShuttingDown => FailureKind::Internal,
            AddError::Refused(_) => FailureKind::Conflict,
        };
        ControlFailure::new(kind, e)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Response {
    Ok(serde_json::Value),
    Error(ControlFailure),
}

/// Reads one request line (untrusted bytes from the socket; fuzzed as `control_request`).
pub fn parse_request(line: &str) -> Result<Request, ControlFailure> {
    serde_json::from_str::<Request>(line)
        .map_err(|e| ControlFailure::invalid(format!("malformed control request: {e}")))
}

async fn handle(service: &Appliance, req: Request) -> Result<serde_json::Value, ControlFailure> {
    match req {
        Request::PeerAdd {
            name,
            role,
            public_key,
            preshared_key,
            extra_allowed_ips,
        } => {
            let req = AddPeer {
                name,
                role,
                public_key,
                preshared_key,
                extra_allowed_ips,
            };
            let rec = service.add_peer(req, Actor::local_cli()).await?;
            Ok(serde_json::to_value(PeerAdded::new(&rec, &service.server())).unwrap())
        }
        Request::PeerList => Ok(serde_json::to_value(service.list_peers().await?).unwrap()),
        Request::AuditList {
            before,
            since_ms,
            limit,
        } => {
            let store = service.store().clone();
            let page =
                tokio::task::spawn_blocking(move || store.audit_page(before, since_ms, limit))
                    .await
                    .expect("store task does not panic")?;
            Ok(serde_json::to_value(crate::api::view::audit_items(page)).unwrap())
        }
        Request::PeerSetEnabled { name, enabled } => {
            update(service, PeerUpdate::SetEnabled { name, enabled }).await
        }
        Request::PeerSetRole { name, role } => {
            update(service, PeerUpdate::SetRole { name, role }).await
        }
        Request::PeerRemove { name } => update(service, PeerUpdate::Remove { name }).await,
        Request::Doctor { quarantine } => {
            let store = service.store().clone();
            let now = crate::service::unix_now_ms();
            let report = tokio::task::spawn_blocking(move || {
                store.doctor(quarantine, &Actor::local_cli(), now)
            })
            .await
            .expect("store task does not panic")?;
            // The scan just made is the newest count; after a quarantine, nothing is left.
            service.set_damaged_rows(if quarantine { 0 } else { report.damaged.len() });
            Ok(serde_json::to_value(report).unwrap())
        }
        Request::Endpoint { set: None } => Ok(serde_json::to_value(
            crate::api::view::EndpointView::new(&service.server().endpoint, None),
        )
        .unwrap()),
        Request::Endpoint { set: Some(text) } => {
            let endpoint = peers::Endpoint::parse(&text, service.listen().port())
                .map_err(|e| ControlFailure::invalid(format!("invalid endpoint: {e}")))?;
            let previous = service
                .set_endpoint(endpoint.clone(), Actor::local_cli())
                .await?;
            Ok(serde_json::to_value(crate::api::view::EndpointView::new(
                &endpoint,
                Some(&previous),
            ))
            .unwrap())
        }
        Request::Status => Ok(serde_json::to_value(service.status().await?).unwrap()),
        Request::Backup => {
            let name = crate::backups::staged_name();
            let path = service.data_dir().join(&name);
            let store = service.store().clone();
            let info = tokio::task::spawn_blocking(move || store.backup_to(&path))
                .await
                .expect("store task does not panic");
            service.backups().record(&info);
            let mut info = info?;
            tracing::info!(
                bytes = info.bytes,
                "backup staged for the CLI (control socket)"
            );
            info.path = name;
            Ok(serde_json::to_value(info).unwrap())
        }
        Request::PeerRotate {
            name,
            public_key,
            preshared_key,
        } => {
            let op = PeerUpdate::Rotate {
                name,
                public_key,
                preshared_key,
            };
            let rec = service.update_peer(op, Actor::local_cli()).await?;
            Ok(serde_json::to_value(PeerAdded::new(&rec, &service.server())).unwrap())
        }
    }
}

/// A change to an existing peer by the local CLI; replies the peer as it is now.
async fn update(service: &Appliance, op: PeerUpdate) -> Result<serde_json::Value, ControlFailure> {
    let rec = service.update_peer(op, Actor::local_cli()).await?;
    Ok(view(&rec))
}

fn view(rec: &PeerRecord) -> serde_json::Value {
    serde_json::to_value(PeerView::new(rec, None)).unwrap()
}

/// Binds the control socket (replacing a stale one) with mode 0600.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if path.exists() {
        // A previous server died without cleaning up, or one is running right now.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is answering: another appliance serve is running",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // Bound beside it, made owner-only, then renamed into place: the socket never appears
    // at `path` with the umask's wider mode (its appearance is the readiness signal).
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)?;
    Ok(listener)
}

/// Serves control requests until the task is dropped.
pub async fn serve(listener: UnixListener, service: Arc<Appliance>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept");
                continue;
            }
        };
        let service = service.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = tokio::io::BufReader::new(r).take(MAX_REQUEST as u64);
            let mut line = String::new();
            let resp = match r.read_line(&mut line).await {
                Ok(_) => match parse_request(&line) {
                    Ok(req) => match handle(&service, req).await {
                        Ok(v) => Response::Ok(v),
                        Err(f) => Response::Error(f),
                    },
                    Err(f) => Response::Error(f),
                },
                Err(e) => Response::Error(ControlFailure::invalid(e)),
            };
            let mut out = serde_json::to_vec(&resp).unwrap();
            out.push(b'\n');
            let _ = w.write_all(&out).await;
        });
    }
}

use tokio::io::AsyncReadExt as _;

/// Why a control request failed on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing is listening: the server is not running.
    #[error("no appliance is serving on {0}")]
    NotServing(String),
    /// The socket broke mid-request.
    #[error("control socket error: {0}")]
    Io(#[from] io::Error),
    /// The server refused the request.
    #[error("{0}")]
    Refused(ControlFailure),
    /// The reply did not parse.
    #[error("the server sent a malformed reply: {0}")]
    Protocol(String),
}

/// Sends one request to a running server (blocking; for the CLI).
pub fn request(path: &Path, req: &Request) -> Result<serde_json::Value, ClientError> {
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NotServing(path.display().to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    // A backup copies the whole database before it answers; everything else is quick.
    let wait = match req {
        Request::Backup => Duration::from_secs(3600),
        _ => Duration::from_secs(30),
    };
    stream.set_read_timeout(Some(wait))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_vec(req).unwrap();
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    match serde_json::from_str::<Response>(&reply) {
        Ok(Response::Ok(v)) => Ok(v),
        Ok(Response::Error(f)) => Err(ClientError::Refused(f)),
        Err(e) => Err(ClientError::Protocol(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_requests_refuse_low_order_public_keys() {
        // A request crafted by hand (not by the CLI) meets the same checks: it deserialises
        // into checked types or not at all.
        let line = |key: &str| {
            format!(
                r#"{{"op":"peer_add","name":"mallory","role":"admin","public_key":"{key}","preshared_key":null}}"#
            )
        };
        let err = parse_request(&line("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="))
            .expect_err("the all-zero key is refused");
        assert_eq!(err.kind, FailureKind::InvalidInput);
        assert!(err.message.contains("low-order point"), "{}", err.message);
        let key = peers::PrivateKey::generate(&mut rand_core::OsRng).public_key();
        assert!(matches!(
            parse_request(&line(&key.to_base64())),
            Ok(Request::PeerAdd { public_key, .. }) if public_key == key
        ));
    }

    #[test]
    fn control_requests_check_names_roles_and_nets_as_they_are_read() {
        for (bad, needle) in [
            (r#"{"op":"peer_remove","name":"Not A Name"}"#, "name"),
            (
                r#"{"op":"peer_set_role","name":"alice","role":"king"}"#,
                "king",
            ),
            (
                r#"{"op":"peer_add","name":"a","role":"viewer","public_key":"x","preshared_key":null}"#,
                "key",
            ),
        ] {
            let err = parse_request(bad).expect_err(bad);
            assert_eq!(err.kind, FailureKind::InvalidInput, "{bad}");
            assert!(err.message.contains(needle), "{bad}: {}", err.message);
        }
        let ok = parse_request(r#"{"op":"peer_set_role","name":"alice","role":"officer"}"#);
        assert!(
            matches!(ok, Ok(Request::PeerSetRole { ref name, role: Role::Officer }) if name.as_str() == "alice"),
            "{ok:?}"
        );
    }

    #[test]
    fn typed_requests_keep_the_wire_form() {
        let key = peers::PrivateKey::generate(&mut rand_core::OsRng).public_key();
        let req = Request::PeerAdd {
            name: "alice".parse().unwrap(),
            role: Role::Admin,
            public_key: key,
            preshared_key: None,
            extra_allowed_ips: vec!["10.1.0.0/16".parse().unwrap()],
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"op": "peer_add", "name": "alice", "role": "admin",
                "public_key": key.to_base64(), "preshared_key": null,
                "extra_allowed_ips": ["10.1.0.0/16"]})
        );
        let failure = ControlFailure::new(FailureKind::InsufficientStorage, "disk full");
        assert_eq!(
            serde_json::to_value(&failure).unwrap(),
            serde_json::json!({"kind": "insufficient_storage", "message": "disk full"})
        );
        assert!(FailureKind::Unavailable.is_servers());
        assert!(!FailureKind::Conflict.is_servers());
    }
}
