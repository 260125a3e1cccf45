//! The local control socket: how CLI commands reach a running `appliance serve`.
//!
//! Layer: driver. redb lets only one process open the database, so while the server runs the
//! CLI sends its request here instead: a Unix socket `control.sock` in the data directory, mode
//! 0600 (only the owner of the data directory can manage peers). The protocol is one JSON
//! request line and one JSON response line per connection.
//!
//! The client's private key never crosses this socket: the CLI generates the key pair and
//! sends only the public key and the preshared key.

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
use crate::registry::{AddPeer, AddPeerError, PeerUpdateError};
use crate::service::{PeerView, Service};
use crate::store::StoreError;

/// Longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

/// A request from the CLI.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Register a new peer; replies [`PeerAdded`].
    PeerAdd {
        name: String,
        role: String,
        public_key: String,
        preshared_key: Option<String>,
        #[serde(default)]
        extra_allowed_ips: Vec<String>,
    },
    /// Every peer with statistics; replies `[PeerView]`.
    PeerList,
    /// Enable or disable a peer; replies [`PeerView`].
    PeerSetEnabled { name: String, enabled: bool },
    /// Change a peer's role; replies [`PeerView`].
    PeerSetRole { name: String, role: String },
    /// Remove a peer; replies [`PeerView`] of the removed peer.
    PeerRemove { name: String },
    /// Audit entries, newest first; replies `[AuditEntry]`.
    AuditList {
        before: Option<u64>,
        since_ms: Option<u64>,
        limit: usize,
    },
    /// New key and PSK for a peer; replies [`PeerAdded`].
    PeerRotate {
        name: String,
        public_key: String,
        preshared_key: Option<String>,
    },
    /// List damaged stored rows, or move them into quarantine; replies
    /// [`crate::store::DoctorReport`].
    Doctor { quarantine: bool },
    /// Show the endpoint clients dial, or change it (`set`: `HOST[:PORT]`, a missing port is
    /// the port listened on); replies [`EndpointView`].
    Endpoint { set: Option<String> },
    /// The whole appliance at a glance; replies [`crate::status::Status`].
    Status,
    /// Write a consistent snapshot of the database into the data directory under a staging
    /// name; replies [`crate::store::BackupInfo`] whose `path` is that file's name. The CLI
    /// copies it to its destination and deletes it: the server may not be able to write where
    /// the caller wants (the systemd unit's sandbox gives it only the data directory, and its
    /// own private /tmp).
    Backup,
}

/// The endpoint new client configs carry, as `appliance endpoint` and `/api/v1/endpoint`
/// show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointView {
    /// `HOST:PORT` (IPv6 in brackets).
    pub endpoint: String,
    /// The endpoint it replaced, when this was a change.
    pub previous: Option<String>,
    /// Why phones may not reach it, with what to run ([`crate::server::endpoint_warning`]).
    pub warning: Option<String>,
}

impl EndpointView {
    pub fn new(endpoint: &peers::Endpoint, previous: Option<&peers::Endpoint>) -> EndpointView {
        EndpointView {
            endpoint: endpoint.to_string(),
            previous: previous.map(ToString::to_string),
            warning: crate::server::endpoint_warning(endpoint),
        }
    }
}

/// What a successful `peer add` returns: enough for the CLI to render the client config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerAdded {
    pub name: String,
    pub role: String,
    pub address: std::net::Ipv4Addr,
    pub server_public_key: String,
    pub endpoint: String,
    pub subnet: String,
}

impl PeerAdded {
    pub fn new(rec: &PeerRecord, server: &crate::model::ServerRecord) -> PeerAdded {
        PeerAdded {
            name: rec.name.to_string(),
            role: rec.role.to_string(),
            address: rec.address,
            server_public_key: server.private_key.public_key().to_base64(),
            endpoint: server.endpoint.to_string(),
            subnet: server.subnet().to_string(),
        }
    }
}

/// The error half of a response.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ControlFailure {
    /// `invalid_input`, `not_found`, `conflict`, `insufficient_storage` (the server's disk is
    /// full), `unavailable` (its database is being reopened) or `internal`.
    pub kind: String,
    pub message: String,
}

impl ControlFailure {
    pub(crate) fn invalid(message: impl ToString) -> Self {
        ControlFailure {
            kind: "invalid_input".into(),
            message: message.to_string(),
        }
    }
}

impl From<PeerUpdateError> for ControlFailure {
    fn from(e: PeerUpdateError) -> Self {
        let kind = match e {
            PeerUpdateError::NotFound(_) => "not_found",
            PeerUpdateError::KeyTaken(_)
            | PeerUpdateError::ServerKey
            | PeerUpdateError::LastAdmin => "conflict",
            PeerUpdateError::Store(ref s) => store_kind(s),
            PeerUpdateError::ShuttingDown => "internal",
        };
        ControlFailure {
            kind: kind.into(),
            message: e.to_string(),
        }
    }
}

/// The failure kind of a storage error: `insufficient_storage` (the disk is full),
/// `unavailable` (the database is being reopened after a disk error) or `internal`.
fn store_kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::DiskFull => "insufficient_storage",
        StoreError::Unavailable { .. } => "unavailable",
        StoreError::Redb(_) | StoreError::Corrupt { .. } => "internal",
    }
}

impl From<StoreError> for ControlFailure {
    fn from(e: StoreError) -> Self {
        ControlFailure {
            kind: store_kind(&e).into(),
            message: e.to_string(),
        }
    }
}

impl From<crate::store::BackupError> for ControlFailure {
    fn from(e: crate::store::BackupError) -> Self {
        use crate::store::BackupError::*;
        let kind = match e {
            Exists { .. } | NoDirectory { .. } => "invalid_input",
            _ => "internal",
        };
        ControlFailure {
            kind: kind.into(),
            message: e.to_string(),
        }
    }
}

impl From<AddPeerError> for ControlFailure {
    fn from(e: AddPeerError) -> Self {
        let kind = match e {
            AddPeerError::Store(ref s) => store_kind(s),
            AddPeerError::ShuttingDown => "internal",
            _ => "conflict",
        };
        ControlFailure {
            kind: kind.into(),
            message: e.to_string(),
        }
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

/// Parses the wire request into the checked core request.
pub fn parse_add(
    name: &str,
    role: &str,
    public_key: &str,
    preshared_key: Option<&str>,
    extra: &[String],
) -> Result<AddPeer, ControlFailure> {
    Ok(AddPeer {
        name: PeerName::new(name).map_err(ControlFailure::invalid)?,
        role: role.parse::<Role>().map_err(ControlFailure::invalid)?,
        public_key: PublicKey::parse(public_key).map_err(ControlFailure::invalid)?,
        preshared_key: preshared_key
            .map(PresharedKey::parse)
            .transpose()
            .map_err(ControlFailure::invalid)?,
        extra_allowed_ips: extra
            .iter()
            .map(|s| Ipv4Net::parse(s))
            .collect::<Result<_, _>>()
            .map_err(ControlFailure::invalid)?,
    })
}

async fn handle(service: &Service, req: Request) -> Result<serde_json::Value, ControlFailure> {
    match req {
        Request::PeerAdd {
            name,
            role,
            public_key,
            preshared_key,
            extra_allowed_ips,
        } => {
            let req = parse_add(
                &name,
                &role,
                &public_key,
                preshared_key.as_deref(),
                &extra_allowed_ips,
            )?;
            let rec = service.add_peer(req, Actor::local_cli()).await?;
            Ok(serde_json::to_value(PeerAdded::new(&rec, &service.server())).unwrap())
        }
        Request::PeerList => Ok(serde_json::to_value(service.list_peers().await?).unwrap()),
        Request::AuditList {
            before,
            since_ms,
            limit,
        } => {
            let store = service.store.clone();
            let page =
                tokio::task::spawn_blocking(move || store.audit_page(before, since_ms, limit))
                    .await
                    .expect("store task does not panic")?;
            Ok(serde_json::to_value(crate::api::view::audit_views(page)).unwrap())
        }
        Request::PeerSetEnabled { name, enabled } => {
            let rec = service
                .set_enabled(parse_name(&name)?, enabled, Actor::local_cli())
                .await?;
            Ok(view(&rec))
        }
        Request::PeerSetRole { name, role } => {
            let role = role.parse::<Role>().map_err(ControlFailure::invalid)?;
            let rec = service
                .set_role(parse_name(&name)?, role, Actor::local_cli())
                .await?;
            Ok(view(&rec))
        }
        Request::PeerRemove { name } => {
            let rec = service
                .remove_peer(parse_name(&name)?, Actor::local_cli())
                .await?;
            Ok(view(&rec))
        }
        Request::Doctor { quarantine } => {
            let store = service.store.clone();
            let now = crate::service::unix_now_ms();
            let report = tokio::task::spawn_blocking(move || {
                store.doctor(quarantine, &Actor::local_cli(), now)
            })
            .await
            .expect("store task does not panic")?;
            if quarantine {
                service
                    .damaged_rows
                    .store(0, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(serde_json::to_value(report).unwrap())
        }
        Request::Endpoint { set: None } => {
            Ok(serde_json::to_value(EndpointView::new(&service.server().endpoint, None)).unwrap())
        }
        Request::Endpoint { set: Some(text) } => {
            let endpoint = peers::Endpoint::parse(&text, service.listen.port())
                .map_err(|e| ControlFailure::invalid(format!("invalid endpoint: {e}")))?;
            let previous = service
                .set_endpoint(endpoint.clone(), Actor::local_cli())
                .await?;
            Ok(serde_json::to_value(EndpointView::new(&endpoint, Some(&previous))).unwrap())
        }
        Request::Status => Ok(serde_json::to_value(service.status().await?).unwrap()),
        Request::Backup => {
            let name = crate::backups::staged_name();
            let path = service.data_dir.join(&name);
            let store = service.store.clone();
            let info = tokio::task::spawn_blocking(move || store.backup_to(&path))
                .await
                .expect("store task does not panic");
            service.backups.record(&info);
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
            let key = PublicKey::parse(&public_key).map_err(ControlFailure::invalid)?;
            let psk = preshared_key
                .as_deref()
                .map(PresharedKey::parse)
                .transpose()
                .map_err(ControlFailure::invalid)?;
            let rec = service
                .rotate(parse_name(&name)?, key, psk, Actor::local_cli())
                .await?;
            Ok(serde_json::to_value(PeerAdded::new(&rec, &service.server())).unwrap())
        }
    }
}

pub(crate) fn parse_name(name: &str) -> Result<PeerName, ControlFailure> {
    PeerName::new(name).map_err(ControlFailure::invalid)
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
pub async fn serve(listener: UnixListener, service: Arc<Service>) {
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
        // The control socket carries raw strings and parses them again: a request crafted by
        // hand (not by the CLI) gets the same check.
        let err = parse_add(
            "mallory",
            "admin",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            None,
            &[],
        )
        .expect_err("the all-zero key is refused");
        assert_eq!(err.kind, "invalid_input");
        assert!(err.message.contains("low-order point"), "{}", err.message);
        let key = peers::PrivateKey::generate(&mut rand_core::OsRng).public_key();
        assert!(parse_add("alice", "admin", &key.to_base64(), None, &[]).is_ok());
    }
}
