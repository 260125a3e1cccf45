//! `/api/v1/handler` and `/api/v1/tasks/…`: the handler side of the task queue, and
//! `GET /api/v1/handlers` for everyone who reads the scheduler.
//!
//! A handler is a peer with role `handler`; its name is its `handler_id`. It reaches these
//! routes only through its own tunnel, so it can only register its own methods and lease,
//! extend, ack or fail its own tasks. Admins do not lease: the task routes need role
//! `handler`. Every change is committed before the 200 (see [`crate::tasks`]).

use std::time::Duration;

use hyper::StatusCode;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::body::{self, Body};
use super::routes::TaskRoute;
use super::{ok, ApiError, ApiResult, Ctx};
use crate::queue::{AckOutcome, DeliveryId, FailOutcome, LeaseError, MAX_PER_LEASE};
use crate::tasks::{Queue, TaskError, MAX_METHODS, MAX_RESULT_BYTES};

/// Longest long poll, in seconds.
pub const MAX_WAIT_S: u64 = 60;
/// Default lease when a call names none, in seconds.
pub const DEFAULT_LEASE_S: u64 = 60;
/// Longest error text a `fail` may carry, in bytes.
pub const MAX_ERROR_BYTES: usize = 4096;

fn tasks<'a>(ctx: &Ctx<'a>) -> Result<&'a Queue, ApiError> {
    Ok(&ctx.service.jobs().tasks)
}

fn task_error(e: TaskError) -> ApiError {
    match e {
        TaskError::Lease(LeaseError::Unknown(_)) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_task", e.to_string()).field("id")
        }
        TaskError::Lease(LeaseError::NotHeld(..)) => {
            ApiError::new(StatusCode::CONFLICT, "lease_lost", e.to_string()).field("id")
        }
        // 507 on a full disk, 503 while the store is unavailable: the change did not happen.
        TaskError::Store(s) => {
            let mut a = ApiError::store(&s);
            a.message = format!(
                "the change could not be saved, so it did not happen: {}",
                a.message
            );
            a
        }
        // Another change in the same group commit failed; this one is not on disk either.
        TaskError::NotSaved(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{e}; retry shortly"),
        ),
    }
}

/// `PUT /api/v1/handler`'s body: the caller's methods, each a valid name, none twice.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Register {
    #[serde(default, deserialize_with = "methods_field")]
    methods: Option<Vec<String>>,
}

impl Body for Register {
    const FIELDS: &'static [&'static str] = &["methods"];
}

/// `POST /api/v1/tasks/lease`'s body (may be left out): how long to wait, how many, for how
/// long.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lease {
    #[serde(default, deserialize_with = "wait_field")]
    wait_s: Option<u64>,
    #[serde(default, deserialize_with = "max_field")]
    max: Option<u64>,
    #[serde(default, deserialize_with = "lease_field")]
    lease_s: Option<u64>,
}

impl Body for Lease {
    const FIELDS: &'static [&'static str] = &["wait_s", "max", "lease_s"];
}

/// `POST /api/v1/tasks/{id}/heartbeat`'s body (may be left out): the new lease.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Heartbeat {
    #[serde(default, deserialize_with = "lease_field")]
    lease_s: Option<u64>,
}

impl Body for Heartbeat {
    const FIELDS: &'static [&'static str] = &["lease_s"];
}

/// `POST /api/v1/tasks/{id}/ack`'s body (may be left out): the call's result, any JSON
/// (absent: `null`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ack {
    #[serde(default)]
    result: Value,
}

impl Body for Ack {
    const FIELDS: &'static [&'static str] = &["result"];
}

/// `POST /api/v1/tasks/{id}/fail`'s body: what went wrong, and whether to retry (default yes).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fail {
    #[serde(default, deserialize_with = "error_field")]
    error: Option<String>,
    #[serde(default, deserialize_with = "retry_field")]
    retry: Option<bool>,
}

impl Body for Fail {
    const FIELDS: &'static [&'static str] = &["error", "retry"];
}

const METHODS_LIST: &str = "methods must be a list of method names, e.g. [\"send_message\"]";

fn methods_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let Value::Array(list) = Value::deserialize(d)? else {
        return Err(body::refuse("methods", METHODS_LIST));
    };
    if list.len() > MAX_METHODS {
        return Err(body::refuse(
            "methods",
            format!(
                "at most {MAX_METHODS} methods; this list has {}",
                list.len()
            ),
        ));
    }
    let mut methods: Vec<String> = Vec::with_capacity(list.len());
    for (i, m) in list.into_iter().enumerate() {
        let field = format!("methods.{i}");
        let Value::String(m) = m else {
            return Err(body::refuse(
                &field,
                "each method must be a string such as \"send_message\"",
            ));
        };
        crate::sched::check_method_name(&m)
            .map_err(|e| body::refuse(&field, format!("{m:?} {e}")))?;
        if methods.contains(&m) {
            return Err(body::refuse(
                &field,
                format!("{m:?} is listed twice; list each method once"),
            ));
        }
        methods.push(m);
    }
    Ok(Some(methods))
}

fn wait_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    body::opt_whole(d, "wait_s", 0, MAX_WAIT_S)
}

fn max_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    body::opt_whole(d, "max", 1, MAX_PER_LEASE as u64)
}

fn lease_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let min = crate::queue::MIN_LEASE.as_secs();
    let max = crate::queue::MAX_LEASE.as_secs();
    body::opt_whole(d, "lease_s", min, max)
}

fn error_text() -> String {
    format!("error must be a non-empty string of at most {MAX_ERROR_BYTES} bytes saying what went wrong")
}

fn error_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) if !s.trim().is_empty() && s.len() <= MAX_ERROR_BYTES => Ok(Some(s)),
        _ => Err(body::refuse("error", error_text())),
    }
}

fn retry_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    body::opt_flag(d, "retry")
}

fn lease_s(lease_s: Option<u64>) -> Duration {
    Duration::from_secs(lease_s.unwrap_or(DEFAULT_LEASE_S))
}

fn delivery(id: &str) -> Result<DeliveryId, ApiError> {
    id.parse()
        .map_err(|e: crate::queue::DeliveryIdError| ApiError::bad_request("id", e.to_string()))
}

/// `PUT /api/v1/handler` `{"methods": [...]}`: registers or replaces the caller's methods.
pub(super) async fn register(ctx: &Ctx<'_>) -> ApiResult {
    let Register { methods } = body::read(ctx)?;
    let mut methods = methods.ok_or_else(|| ApiError::bad_request("methods", METHODS_LIST))?;
    methods.sort();
    let rec = tasks(ctx)?
        .register(&ctx.caller.name, methods, &ctx.caller.actor())
        .await
        .map_err(|e| ApiError::store(&e))?;
    ok(json!({"handler_id": rec.name, "methods": rec.methods}))
}

/// `GET /api/v1/handlers`.
pub(super) async fn list(ctx: &Ctx<'_>) -> ApiResult {
    super::deny_unknown_query(ctx, &[])?;
    let handlers = tasks(ctx)?.list().await;
    ok(json!({"handlers": handlers.iter().map(|h| h.to_json()).collect::<Vec<_>>()}))
}

/// `/api/v1/tasks/…`.
pub(super) async fn handle(ctx: &Ctx<'_>, route: TaskRoute, params: &[&str]) -> ApiResult {
    let id = || delivery(params[0]);
    match route {
        TaskRoute::Lease => lease(ctx).await,
        TaskRoute::Heartbeat => {
            let id = id()?;
            let body: Heartbeat = body::read_or_empty(ctx)?;
            let lease = lease_s(body.lease_s);
            let (expires, cancel) = tasks(ctx)?
                .heartbeat(id, &ctx.caller.name, lease)
                .await
                .map_err(task_error)?;
            ok(json!({"lease_expires_at": expires.to_string(), "cancel_requested": cancel}))
        }
        TaskRoute::Ack => {
            let id = id()?;
            let Ack { result } = body::read_or_empty(ctx)?;
            let size = serde_json::to_vec(&result)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size > MAX_RESULT_BYTES {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "result_too_large",
                    format!("result is {size} bytes of JSON; at most {MAX_RESULT_BYTES} are kept, store big data elsewhere and return a reference"),
                )
                .field("result"));
            }
            let outcome = tasks(ctx)?
                .ack(id, &ctx.caller.name, result)
                .await
                .map_err(task_error)?;
            ok(json!({
                "id": id.to_string(),
                "status": "succeeded",
                "repeated": outcome == AckOutcome::Repeated,
            }))
        }
        TaskRoute::Fail => {
            let id = id()?;
            let Fail { error, retry } = body::read(ctx)?;
            let error = error.ok_or_else(|| ApiError::bad_request("error", error_text()))?;
            let retry = retry.unwrap_or(true);
            let outcome = tasks(ctx)?
                .fail(id, &ctx.caller.name, &error, retry)
                .await
                .map_err(task_error)?;
            let mut body = json!({"id": id.to_string()});
            match outcome {
                FailOutcome::Requeued(at) => {
                    body["status"] = json!("queued");
                    body["retry_at"] = json!(at.to_string());
                }
                FailOutcome::Failed => body["status"] = json!("failed"),
                FailOutcome::Repeated => body["repeated"] = json!(true),
            }
            ok(body)
        }
    }
}

/// `POST /api/v1/tasks/lease` `{"wait_s", "max", "lease_s"}`.
async fn lease(ctx: &Ctx<'_>) -> ApiResult {
    let body: Lease = body::read_or_empty(ctx)?;
    let wait = Duration::from_secs(body.wait_s.unwrap_or(0));
    let max = body.max.unwrap_or(1) as usize;
    let lease = lease_s(body.lease_s);
    let leases = tasks(ctx)?
        .lease(&ctx.caller.name, max, lease, wait)
        .await
        .map_err(task_error)?;
    let tasks: Vec<Value> = leases
        .iter()
        .map(|l| {
            json!({
                "id": l.id.to_string(),
                "job_id": l.job_id.to_string(),
                "run_id": l.run_id.to_string(),
                "method": l.method,
                "params": Value::Object(l.params.clone()),
                "attempt": l.attempt,
                "lease_expires_at": l.lease_expires_at.to_string(),
            })
        })
        .collect();
    ok(json!({"tasks": tasks}))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::body::refused;

    /// Every task body refuses an unknown field and a wrongly typed one, naming it.
    #[test]
    fn task_bodies_name_the_field_they_refuse() {
        for ((field, message), want_field, want) in [
            (
                refused::<Register>(json!({"methods": ["echo"], "name": "bot"})),
                "name",
                "unknown field 'name'; expected one of: methods",
            ),
            (
                refused::<Register>(json!({"methods": "echo"})),
                "methods",
                METHODS_LIST,
            ),
            (
                refused::<Register>(json!({"methods": ["echo", 7]})),
                "methods.1",
                "each method must be a string such as \"send_message\"",
            ),
            (
                refused::<Register>(json!({"methods": ["echo", "echo"]})),
                "methods.1",
                "\"echo\" is listed twice; list each method once",
            ),
            (
                refused::<Lease>(json!({"queue": "x"})),
                "queue",
                "unknown field 'queue'; expected one of: wait_s, max, lease_s",
            ),
            (
                refused::<Lease>(json!({"wait_s": "5"})),
                "wait_s",
                "wait_s must be a whole number from 0 to 60",
            ),
            (
                refused::<Lease>(json!({"max": 0})),
                "max",
                "max must be a whole number from 1 to 100",
            ),
            (
                refused::<Heartbeat>(json!({"extend": 5})),
                "extend",
                "unknown field 'extend'; expected one of: lease_s",
            ),
            (
                refused::<Heartbeat>(json!({"lease_s": true})),
                "lease_s",
                "lease_s must be a whole number from",
            ),
            (
                refused::<Ack>(json!({"outcome": 1})),
                "outcome",
                "unknown field 'outcome'; expected one of: result",
            ),
            (
                refused::<Fail>(json!({"error": "x", "why": "y"})),
                "why",
                "unknown field 'why'; expected one of: error, retry",
            ),
            (
                refused::<Fail>(json!({"error": 5})),
                "error",
                "error must be a non-empty string of at most 4096 bytes",
            ),
            (
                refused::<Fail>(json!({"error": "x", "retry": "yes"})),
                "retry",
                "retry must be true or false",
            ),
        ] {
            assert_eq!(field, want_field, "{message}");
            assert!(message.starts_with(want), "{field}: {message}");
        }
    }

    #[test]
    fn task_bodies_read_defaults_and_values() {
        let empty = serde_json::Map::new();
        let lease: Lease = body::decode(&empty).unwrap();
        assert_eq!((lease.wait_s, lease.max, lease.lease_s), (None, None, None));
        let lease: Lease = body::decode(
            json!({"wait_s": 3, "max": null, "lease_s": 30})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (lease.wait_s, lease.max, lease.lease_s),
            (Some(3), None, Some(30))
        );
        let ack: Ack = body::decode(&empty).unwrap();
        assert_eq!(ack.result, Value::Null);
        let ack: Ack = body::decode(json!({"result": [1, "two"]}).as_object().unwrap()).unwrap();
        assert_eq!(ack.result, json!([1, "two"]));
        let fail: Fail = body::decode(json!({"error": "boom"}).as_object().unwrap()).unwrap();
        assert_eq!((fail.error.as_deref(), fail.retry), (Some("boom"), None));
        let reg: Register =
            body::decode(json!({"methods": ["b", "a"]}).as_object().unwrap()).unwrap();
        assert_eq!(reg.methods.unwrap(), ["b", "a"]);
    }
}
