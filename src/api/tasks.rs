//! `/api/v1/handler` and `/api/v1/tasks/…`: the handler side of the task queue, and
//! `GET /api/v1/handlers` for everyone who reads the scheduler.
//!
//! A handler is a peer with role `handler`; its name is its `handler_id`. It reaches these
//! routes only through its own tunnel, so it can only register its own methods and lease,
//! extend, ack or fail its own tasks. Admins do not lease: the task routes need role
//! `handler`. Every change is committed before the 200 (see [`crate::tasks`]).

use std::time::Duration;

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::routes::TaskRoute;
use super::{deny_unknown, ok, ApiError, ApiResult, Ctx};
use crate::queue::{AckOutcome, DeliveryId, FailOutcome, LeaseError, MAX_PER_LEASE};
use crate::tasks::{TaskError, Tasks, MAX_METHODS, MAX_RESULT_BYTES};

/// Longest long poll, in seconds.
pub const MAX_WAIT_S: u64 = 60;
/// Default lease when a call names none, in seconds.
pub const DEFAULT_LEASE_S: u64 = 60;
/// Longest error text a `fail` may carry, in bytes.
pub const MAX_ERROR_BYTES: usize = 4096;

fn tasks<'a>(ctx: &Ctx<'a>) -> Result<&'a Tasks, ApiError> {
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

/// The body as an object with only `allowed` keys; an absent body is an empty object.
fn body(ctx: &Ctx<'_>, allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let obj = match &ctx.body {
        None => Map::new(),
        Some(_) => ctx.object()?.clone(),
    };
    deny_unknown(&obj, allowed, "")?;
    Ok(obj)
}

/// An optional whole number in `min..=max`.
fn int(
    obj: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
    default: u64,
) -> Result<u64, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    key,
                    format!("{key} must be a whole number from {min} to {max}"),
                )
            }),
    }
}

fn lease_s(obj: &Map<String, Value>) -> Result<Duration, ApiError> {
    let min = crate::queue::MIN_LEASE.as_secs();
    let max = crate::queue::MAX_LEASE.as_secs();
    int(obj, "lease_s", min, max, DEFAULT_LEASE_S).map(Duration::from_secs)
}

fn delivery(id: &str) -> Result<DeliveryId, ApiError> {
    id.parse()
        .map_err(|e: crate::queue::DeliveryIdError| ApiError::bad_request("id", e.to_string()))
}

/// `PUT /api/v1/handler` `{"methods": [...]}`: registers or replaces the caller's methods.
pub(super) async fn register(ctx: &Ctx<'_>) -> ApiResult {
    let obj = ctx.object()?;
    deny_unknown(obj, &["methods"], "")?;
    let Some(Value::Array(list)) = obj.get("methods") else {
        return Err(ApiError::bad_request(
            "methods",
            "methods must be a list of method names, e.g. [\"send_message\"]",
        ));
    };
    if list.len() > MAX_METHODS {
        return Err(ApiError::bad_request(
            "methods",
            format!(
                "at most {MAX_METHODS} methods; this list has {}",
                list.len()
            ),
        ));
    }
    let mut methods = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let Value::String(m) = m else {
            return Err(ApiError::bad_request(
                format!("methods.{i}"),
                "each method must be a string such as \"send_message\"",
            ));
        };
        crate::sched::check_method_name(m)
            .map_err(|e| ApiError::bad_request(format!("methods.{i}"), format!("{m:?} {e}")))?;
        if methods.contains(m) {
            return Err(ApiError::bad_request(
                format!("methods.{i}"),
                format!("{m:?} is listed twice; list each method once"),
            ));
        }
        methods.push(m.clone());
    }
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
            let obj = body(ctx, &["lease_s"])?;
            let lease = lease_s(&obj)?;
            let (expires, cancel) = tasks(ctx)?
                .heartbeat(id, &ctx.caller.name, lease)
                .await
                .map_err(task_error)?;
            ok(json!({"lease_expires_at": expires.to_string(), "cancel_requested": cancel}))
        }
        TaskRoute::Ack => {
            let id = id()?;
            let obj = body(ctx, &["result"])?;
            let result = obj.get("result").cloned().unwrap_or(Value::Null);
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
            let obj = ctx.object()?;
            deny_unknown(obj, &["error", "retry"], "")?;
            let error = match obj.get("error") {
                Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_ERROR_BYTES => s,
                _ => {
                    return Err(ApiError::bad_request(
                        "error",
                        format!("error must be a non-empty string of at most {MAX_ERROR_BYTES} bytes saying what went wrong"),
                    ))
                }
            };
            let retry = match obj.get("retry") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "retry",
                        "retry must be true or false",
                    ))
                }
            };
            let outcome = tasks(ctx)?
                .fail(id, &ctx.caller.name, error, retry)
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
    let obj = body(ctx, &["wait_s", "max", "lease_s"])?;
    let wait = Duration::from_secs(int(&obj, "wait_s", 0, MAX_WAIT_S, 0)?);
    let max = int(&obj, "max", 1, MAX_PER_LEASE as u64, 1)? as usize;
    let lease = lease_s(&obj)?;
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
