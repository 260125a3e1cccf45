//! `/api/v1/jobs`, `/api/v1/runs`, `/api/v1/stats`: the scheduler over HTTP.
//!
//! Roles: viewers read; officers and admins create, edit, pause, resume, run and delete.
//! Every change is committed (with its audit entry, webhook secrets redacted) before the
//! answer: a 201 means the job is on disk.

use hyper::StatusCode;
use jiff::Timestamp;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::body::{self, Body};
use super::routes::JobRoute;
use super::view::{self, RunView};
use super::{json_response, ok, ApiError, ApiResult, Ctx, Need};
use crate::model::{RunFilter, RunRecord, RunStatus};
use crate::sched::JobId;
use crate::sched::SpecError;
use crate::scheduler::{
    sort_key, ChangeError, CreateError, JobEntry, JobNotFound, NameTaken, RunNowError,
    ShuttingDown, TestError, UpdateError,
};

const DEFAULT_LIMIT: usize = 100;

/// `POST /api/v1/jobs/{id}/resume`'s body (may be left out): whether the fires missed while
/// paused are due now (default no).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resume {
    #[serde(default, deserialize_with = "catch_up_field")]
    catch_up: Option<bool>,
}

impl Body for Resume {
    const FIELDS: &'static [&'static str] = &["catch_up"];
}

fn catch_up_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    body::opt_flag(d, "catch_up")
}

fn jobs<'a>(ctx: &Ctx<'a>) -> Result<&'a crate::scheduler::Handle, ApiError> {
    Ok(ctx.service.jobs())
}

// Each operation's error enum maps to HTTP here, once; ScheduleZero's routes answer in their own
// terms (`super::schedulezero`).

/// 404: no such job.
fn not_found(e: JobNotFound) -> ApiError {
    ApiError::not_found(e.to_string())
}

/// 400 naming the spec's field (when it names one).
fn invalid(s: SpecError) -> ApiError {
    let err = ApiError::new(StatusCode::BAD_REQUEST, "invalid", s.message);
    if s.field.is_empty() {
        err
    } else {
        err.field(s.field)
    }
}

/// 409 naming `name`.
fn name_taken(e: NameTaken) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "name_taken", e.to_string()).field("name")
}

/// 500: the appliance is stopping.
pub(super) fn shutting_down(e: ShuttingDown) -> ApiError {
    ApiError::internal(e)
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> ApiError {
        match e {
            CreateError::Spec(s) => invalid(s),
            CreateError::NameTaken(n) => name_taken(n),
            CreateError::Store(s) => ApiError::store(&s),
            CreateError::ShuttingDown(d) => shutting_down(d),
        }
    }
}

impl From<UpdateError> for ApiError {
    fn from(e: UpdateError) -> ApiError {
        match e {
            UpdateError::NotFound(n) => not_found(n),
            UpdateError::Spec(s) => invalid(s),
            UpdateError::NameTaken(n) => name_taken(n),
            UpdateError::Store(s) => ApiError::store(&s),
            UpdateError::ShuttingDown(d) => shutting_down(d),
        }
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> ApiError {
        match e {
            ChangeError::NotFound(n) => not_found(n),
            ChangeError::Store(s) => ApiError::store(&s),
            ChangeError::ShuttingDown(d) => shutting_down(d),
        }
    }
}

impl From<RunNowError> for ApiError {
    fn from(e: RunNowError) -> ApiError {
        match e {
            RunNowError::NotFound(n) => not_found(n),
            RunNowError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "busy", e.to_string()),
            // 507/503 as for any store refusal, with the sentence saying the run did not start.
            RunNowError::NotRecorded(ref s) => {
                let mut err = ApiError::store(s);
                err.message = e.to_string();
                err
            }
            RunNowError::Store(s) => ApiError::store(&s),
            RunNowError::ShuttingDown(d) => shutting_down(d),
        }
    }
}

impl From<TestError> for ApiError {
    fn from(e: TestError) -> ApiError {
        match e {
            TestError::Spec(s) => invalid(s),
            TestError::Store(s) => ApiError::store(&s),
            TestError::ShuttingDown(d) => shutting_down(d),
        }
    }
}

/// A job for this caller: read-only roles see the webhook as scheme, host and fingerprint.
fn view(ctx: &Ctx<'_>, e: &JobEntry) -> Value {
    if ctx.require(Need::Operate).is_ok() {
        e.to_json()
    } else {
        e.to_json_for_viewer(&ctx.service.url_fingerprint_key())
    }
}

fn parse_id(s: &str) -> Result<JobId, ApiError> {
    s.parse()
        .map_err(|e: crate::sched::JobIdError| ApiError::bad_request("id", e.to_string()))
}

fn limit(ctx: &Ctx<'_>) -> Result<usize, ApiError> {
    super::limit_param(ctx, DEFAULT_LIMIT, super::MAX_LIMIT)
}

use super::deny_unknown_query;

pub(super) async fn handle(ctx: &Ctx<'_>, route: JobRoute, params: &[&str]) -> ApiResult {
    let id = || parse_id(params[0]);
    match route {
        JobRoute::List => list(ctx),
        JobRoute::Create => {
            let body = ctx.body.as_ref().ok_or_else(|| {
                ApiError::bad_request("body", "this request needs a JSON body (the job)")
            })?;
            let entry = jobs(ctx)?.create(body, &ctx.caller.actor()).await?;
            let mut r = json_response(StatusCode::CREATED, entry.to_json());
            r.headers_mut().insert(
                hyper::header::LOCATION,
                hyper::header::HeaderValue::from_str(&format!("/api/v1/jobs/{}", entry.record.id))
                    .expect("ids are header-safe"),
            );
            Ok(r)
        }
        JobRoute::Test => {
            let body = ctx.body.as_ref().ok_or_else(|| {
                ApiError::bad_request("body", "this request needs a JSON body (the job)")
            })?;
            let r = jobs(ctx)?.test_action(body, &ctx.caller.actor()).await?;
            ok(json!({"status": r.status, "ok": r.succeeded(), "error": r.error}))
        }
        JobRoute::Get => {
            let id = id()?;
            let e = jobs(ctx)?
                .get(id)
                .map_err(|e| ApiError::store(&e))?
                .ok_or_else(|| not_found(JobNotFound(id)))?;
            ok(view(ctx, &e))
        }
        JobRoute::Patch => {
            let id = id()?;
            let patch = ctx.object().map(|o| Value::Object(o.clone()))?;
            let e = jobs(ctx)?.patch(id, &patch, &ctx.caller.actor()).await?;
            ok(e.to_json())
        }
        JobRoute::Delete => {
            let id = id()?;
            let e = jobs(ctx)?.delete(id, &ctx.caller.actor()).await?;
            ok(json!({"deleted": e.record.id.to_string(), "name": e.record.spec.name}))
        }
        JobRoute::Pause => {
            let id = id()?;
            if ctx.body.is_some() {
                return Err(ApiError::bad_request("body", "pause takes no body"));
            }
            let e = jobs(ctx)?
                .set_paused(id, true, false, &ctx.caller.actor())
                .await?;
            ok(e.to_json())
        }
        JobRoute::Resume => {
            let id = id()?;
            let catch_up = match ctx.body {
                None => false,
                Some(_) => {
                    let Resume { catch_up } = body::read(ctx)?;
                    catch_up.unwrap_or(false)
                }
            };
            let e = jobs(ctx)?
                .set_paused(id, false, catch_up, &ctx.caller.actor())
                .await?;
            ok(e.to_json())
        }
        JobRoute::Run => {
            let id = id()?;
            let run = jobs(ctx)?.run_now(id, &ctx.caller.actor()).await?;
            let mut r = json_response(
                StatusCode::ACCEPTED,
                json!({"job": id.to_string(), "run": run.to_string(), "status": "started"}),
            );
            r.headers_mut().insert(
                hyper::header::LOCATION,
                hyper::header::HeaderValue::from_str(&format!("/api/v1/jobs/{id}/runs"))
                    .expect("ids are header-safe"),
            );
            Ok(r)
        }
        JobRoute::Runs => {
            let id = id()?;
            if !jobs(ctx)?.contains(id) {
                return Err(not_found(JobNotFound(id)));
            }
            runs(ctx, Some(id)).await
        }
    }
}

/// `GET /api/v1/jobs?paused=&name=&limit=&cursor=`, sorted by next fire time.
fn list(ctx: &Ctx<'_>) -> ApiResult {
    deny_unknown_query(ctx, &["paused", "name", "limit", "cursor"])?;
    let limit = limit(ctx)?;
    let paused = match ctx.query.get("paused").map(String::as_str) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return Err(ApiError::bad_request(
                "paused",
                "paused must be true or false",
            ))
        }
    };
    let name = ctx.query.get("name").map(|n| n.to_lowercase());
    let cursor = ctx
        .query
        .get("cursor")
        .map(|c| {
            parse_job_cursor(c).ok_or_else(|| {
                ApiError::bad_request(
                    "cursor",
                    "cursor must be a next_cursor value from a previous page",
                )
            })
        })
        .transpose()?;
    let all = jobs(ctx)?.list().map_err(|e| ApiError::store(&e))?;
    let page: Vec<&JobEntry> = all
        .iter()
        .filter(|e| paused.is_none_or(|p| e.record.spec.paused == p))
        .filter(|e| {
            name.as_ref()
                .is_none_or(|n| e.record.spec.name.to_lowercase().contains(n))
        })
        .filter(|e| cursor.is_none_or(|c| sort_key(&e.record) > c))
        .take(view::read_limit(limit))
        .collect();
    let (page, next) = view::page(page, limit, |e| job_cursor(sort_key(&e.record)));
    ok(json!({
        "jobs": page.iter().map(|e| view(ctx, e)).collect::<Vec<_>>(),
        "next_cursor": next,
    }))
}

fn job_cursor((t, id): (i128, u64)) -> String {
    format!("{t}_{id:016x}")
}

fn parse_job_cursor(s: &str) -> Option<(i128, u64)> {
    let (t, id) = s.split_once('_')?;
    Some((t.parse().ok()?, u64::from_str_radix(id, 16).ok()?))
}

/// `GET /api/v1/runs?status=&since=&limit=&cursor=` (and per job), newest first.
pub(super) async fn runs(ctx: &Ctx<'_>, job: Option<JobId>) -> ApiResult {
    deny_unknown_query(ctx, &["status", "since", "limit", "cursor"])?;
    let status = ctx
        .query
        .get("status")
        .map(|s| {
            s.parse::<RunStatus>()
                .map_err(|m| ApiError::bad_request("status", m))
        })
        .transpose()?;
    let since = ctx
        .query
        .get("since")
        .map(|s| {
            super::parse_since(s)
                .map_err(|m| ApiError::bad_request("since", m))
                .and_then(|ms| {
                    Timestamp::from_millisecond(ms as i64)
                        .map_err(|e| ApiError::bad_request("since", e.to_string()))
                })
        })
        .transpose()?;
    let before = ctx
        .query
        .get("cursor")
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    "cursor",
                    "cursor must be a next_cursor value from a previous page",
                )
            })
        })
        .transpose()?;
    let limit = limit(ctx)?;
    let runs: Vec<RunRecord> = jobs(ctx)?
        .runs(RunFilter {
            job,
            status,
            since,
            before,
            limit: view::read_limit(limit),
        })
        .await
        .map_err(|e| ApiError::store(&e))?;
    let (runs, next) = view::page(runs, limit, |r| r.id.to_string());
    let runs: Vec<RunView> = runs.iter().map(RunView::from).collect();
    ok(json!({"runs": runs, "next_cursor": next}))
}

/// `GET /api/v1/stats`.
pub(super) async fn stats(ctx: &Ctx<'_>) -> ApiResult {
    let jobs = jobs(ctx)?;
    let (total, paused, running) = jobs.counts();
    let tasks = jobs.tasks.totals().await;
    let s = jobs.stats.lock().unwrap();
    let lateness = s
        .lateness_percentiles()
        .map(|(p50, p99, n)| json!({"p50_ms": p50, "p99_ms": p99, "samples": n}));
    ok(json!({
        "jobs": total,
        "paused": paused,
        "running": running,
        "since_start": {
            "fired": s.fired,
            "succeeded": s.succeeded,
            "failed": s.failed,
            "missed": s.missed,
            "skipped": s.skipped,
        },
        "lateness": lateness,
        "tasks": {"queued": tasks.queued, "leased": tasks.leased},
        "uptime_s": ctx.service.started().elapsed().as_secs(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each operation's errors answer with the status, code, field and sentence they always had.
    #[test]
    fn each_operations_errors_keep_their_http_answer() {
        let id: JobId = "00000000deadbeef".parse().unwrap();
        let spec = || SpecError {
            field: "trigger.cron".into(),
            message: "bad minute".into(),
        };
        let taken = || NameTaken {
            name: "raid".into(),
            id,
        };
        let answer = |e: ApiError| (e.status.as_u16(), e.code, e.field, e.message);
        let some = |f: &str| Some(f.to_string());
        assert_eq!(
            answer(CreateError::from(spec()).into()),
            (400, "invalid", some("trigger.cron"), "bad minute".into())
        );
        assert_eq!(
            answer(CreateError::from(taken()).into()),
            (409, "name_taken", some("name"), "job 00000000deadbeef is already called 'raid'; job names are unique (ignoring case): pick another or change that job".into())
        );
        assert_eq!(
            answer(CreateError::from(crate::store::StoreError::DiskFull).into()).0,
            507
        );
        assert_eq!(
            answer(UpdateError::from(JobNotFound(id)).into()),
            (
                404,
                "not_found",
                None,
                "no job with id 00000000deadbeef".into()
            )
        );
        assert_eq!(answer(UpdateError::from(taken()).into()).1, "name_taken");
        assert_eq!(
            answer(ChangeError::from(ShuttingDown).into()),
            (
                500,
                "internal",
                None,
                "internal error: the scheduler is shutting down".into()
            )
        );
        assert_eq!(
            answer(RunNowError::Busy(id).into()),
            (409, "busy", None, "job 00000000deadbeef already runs its maximum number of instances; try again when one finishes".into())
        );
        assert_eq!(
            answer(RunNowError::NotRecorded(crate::store::StoreError::DiskFull).into()),
            (507, "insufficient_storage", None, "the run could not be recorded, so it did not start: the appliance's disk is full: nothing was saved; free space on the server and try again".into())
        );
        assert_eq!(answer(TestError::from(spec()).into()).0, 400);
    }

    #[test]
    fn resume_body_names_the_field_it_refuses() {
        let decode = |v: Value| body::decode::<Resume>(v.as_object().unwrap());
        let e = decode(json!({"catch_up": "yes"})).unwrap_err();
        assert_eq!(
            (e.field.as_deref(), e.message.as_str()),
            (Some("catch_up"), "catch_up must be true or false")
        );
        let e = decode(json!({"catch_up": true, "since": 1})).unwrap_err();
        assert_eq!(
            (e.field.as_deref(), e.message.as_str()),
            (
                Some("since"),
                "unknown field 'since'; expected one of: catch_up"
            )
        );
        assert_eq!(
            decode(json!({"catch_up": true})).unwrap().catch_up,
            Some(true)
        );
        assert_eq!(decode(json!({"catch_up": null})).unwrap().catch_up, None);
    }
}
