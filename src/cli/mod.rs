//! The commands of the `appliance` CLI, one file per concern; `main` parses and dispatches.
//!
//! Layer: CLI edge. Parse into checked types, reach the running server through its control
//! socket or the database offline ([`call`]), print. `anyhow`-free: every failure is a
//! [`Failure`], a sentence and an exit code.

pub mod args;
pub mod audit;
pub mod backup;
pub mod doctor;
pub mod endpoint;
pub mod format;
pub mod man;
pub mod peer;
pub mod qr;
pub mod serve;
pub mod status;
pub mod when;

use appliance::control::{self, ClientError, ControlFailure, Request};
use appliance::model::ServerRecord;
use appliance::paths::DataDir;
use appliance::server;
use appliance::store::Store;
use serde_json::Value;

/// A CLI failure: a sentence for the user and the exit code.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

pub fn usage(message: impl ToString) -> Failure {
    Failure {
        code: 2,
        message: message.to_string(),
    }
}

pub fn fatal(message: impl ToString) -> Failure {
    Failure {
        code: 1,
        message: message.to_string(),
    }
}

impl From<ControlFailure> for Failure {
    fn from(f: ControlFailure) -> Self {
        Failure {
            // 2 is for what the caller got wrong; a full disk or a failure is the server's.
            code: if f.kind.is_servers() { 1 } else { 2 },
            message: f.message,
        }
    }
}

/// Exit code for a database that cannot be used as it is: restarting will not help.
const EXIT_DAMAGED: u8 = 3;

pub fn init_failure(e: server::InitError) -> Failure {
    use appliance::store::OpenError;
    use server::InitError::*;
    match e {
        AlreadyInitialized(_) | SubnetTooSmall(_) | Endpoint(_) | ListenPort | NoData { .. } => {
            usage(e)
        }
        Open(
            OpenError::Damaged { .. }
            | OpenError::SchemaTooNew { .. }
            | OpenError::Migration { .. },
        ) => Failure {
            code: EXIT_DAMAGED,
            message: e.to_string(),
        },
        _ => fatal(e),
    }
}

/// Sends `req` to the running server, or runs `offline` on the database when none runs. Never
/// creates anything: a missing data directory or database exits 2 saying where it looked.
pub fn call(
    dir: &DataDir,
    req: Request,
    offline: impl FnOnce(&Store, &ServerRecord) -> Result<Value, ControlFailure>,
) -> Result<Value, Failure> {
    match control::request(&dir.control_socket(), &req) {
        Ok(v) => return Ok(v),
        Err(ClientError::NotServing(_)) => {}
        Err(ClientError::Refused(f)) => return Err(f.into()),
        Err(e) => return Err(fatal(e)),
    }
    let (store, server_rec) = server::open_existing(dir).map_err(|e| match e {
        server::InitError::Open(appliance::store::OpenError::Locked { .. }) => fatal(format!(
            "{e}; its control socket {} did not answer",
            dir.control_socket().display()
        )),
        e => init_failure(e),
    })?;
    Ok(offline(&store, &server_rec)?)
}

pub fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("plain data serialises")
}
