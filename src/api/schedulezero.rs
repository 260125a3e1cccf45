//! `/api/*`: ScheduleZero's routes and shapes, so its clients (scripts, bots, dashboard
//! callers) keep working unchanged through the tunnel.
//!
//! Layer: driver (application side), a thin translation over the native API: ScheduleZero
//! bodies become job specs (triggers through [`crate::sched::apscheduler`]), handler actions
//! and run records, and back. Same gate as everything else (see [`super`]); reads need viewer,
//! changes officer, `POST /api/executions/clear` admin. Errors keep our shape
//! `{"error":{"code","message","field"}}` with ScheduleZero's field names.
//!
//! A ScheduleZero `job_id` is kept in the job's `metadata.schedulezero_job_id` (and as its
//! name); our own 16-hex id stays the job's key. ScheduleZero's bugs are fixed on purpose: a
//! repeated `job_id` is a 409, deleting an unknown id a 404, a non-JSON body a 415 (the gate),
//! and handler status is real. `run_now` is a durable run: it waits up to 30 s for the
//! handler's answer and otherwise answers 202 with the run to follow.

use std::time::Duration;

use hyper::StatusCode;
use jiff::Timestamp;
use serde_json::{json, Map, Value};

use self::form::{handler_call, job_id, Clear, RunNow, Schedule};
use super::body;
use super::routes::ScheduleZeroRoute;
use super::{deny_unknown_query, json_response, ok, ApiError, ApiResult, Ctx, Need};
use crate::model::{RunFilter, RunRecord, RunStatus};
use crate::sched::apscheduler;
use crate::sched::SpecError;
use crate::sched::{JobDraft, JobId, Trigger};
use crate::scheduler::{ChangeError, CreateError, Handle, JobEntry, RunNowError};

mod form;

/// Metadata key holding the ScheduleZero job id (the job table indexes it).
pub const SZ_ID: &str = crate::sched::spec::SCHEDULEZERO_ID;
/// Metadata key marking the paused job that carries one `run_now`.
pub const SZ_RUN_NOW: &str = "schedulezero_run_now";
/// How long `run_now` waits for the handler's answer.
pub const RUN_NOW_WAIT: Duration = Duration::from_secs(30);
/// Most records `GET /api/executions` returns (ScheduleZero's buffer size).
const MAX_EXECUTIONS: usize = 1000;
/// Most records `GET /api/executions/errors` returns.
const MAX_ERRORS: usize = 500;

/// Serialises `POST /api/schedule` so two requests cannot both claim one `job_id`.
static SCHEDULE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn jobs<'a>(ctx: &Ctx<'a>) -> Result<&'a Handle, ApiError> {
    Ok(ctx.service.jobs())
}

/// Our spec field names in ScheduleZero's terms.
fn sz_field(native: &str) -> String {
    let f = match native {
        "name" => "job_id",
        "action.handler.id" => "handler_id",
        "action.handler.method" => "job_method",
        "trigger.at" => "trigger.run_date",
        "trigger.start" => "trigger.start_date",
        "trigger.end" => "trigger.end_date",
        "jitter" => "trigger.jitter",
        f if f.starts_with("action.handler.params") => "job_params",
        f if f.starts_with("trigger") => "trigger",
        f => f,
    };
    f.to_string()
}

// The scheduler's errors in ScheduleZero's terms, one function per operation used here. Storage
// failures are 500s (ScheduleZero has no 507), and fields carry ScheduleZero's names.

/// A spec refusal, naming ScheduleZero's field; an unknown handler is a 404, as there.
fn invalid(s: SpecError) -> ApiError {
    let field = sz_field(&s.field);
    if field == "handler_id" {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_handler", s.message).field(field)
    } else {
        ApiError::bad_request(field, s.message)
    }
}

fn create_error(e: CreateError) -> ApiError {
    match e {
        CreateError::Spec(s) => invalid(s),
        // Job names are unique and a ScheduleZero job_id is the job's name.
        CreateError::NameTaken(_) => {
            ApiError::new(StatusCode::CONFLICT, "duplicate_job_id", e.to_string()).field("job_id")
        }
        CreateError::Store(_) | CreateError::ShuttingDown(_) => ApiError::internal(e),
    }
}

/// The job a route built, decoded as every job body is; a refusal in ScheduleZero's terms.
fn sz_job(spec: &Value) -> Result<JobDraft, ApiError> {
    JobDraft::from_value(spec).map_err(invalid)
}

fn run_now_error(e: RunNowError) -> ApiError {
    match e {
        RunNowError::NotFound(_) => ApiError::not_found(e.to_string()).field("id"),
        RunNowError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "busy", e.to_string()),
        RunNowError::NotRecorded(_) | RunNowError::Store(_) | RunNowError::ShuttingDown(_) => {
            ApiError::internal(e)
        }
    }
}

fn delete_error(e: ChangeError) -> ApiError {
    match e {
        ChangeError::NotFound(_) => ApiError::not_found(e.to_string()).field("id"),
        ChangeError::Store(_) | ChangeError::ShuttingDown(_) => ApiError::internal(e),
    }
}

pub(super) async fn handle(ctx: &Ctx<'_>, route: ScheduleZeroRoute, params: &[&str]) -> ApiResult {
    use ScheduleZeroRoute as R;
    match route {
        R::Health => ok(json!({"status": "ok", "service": "ScheduleZero"})),
        R::Handlers => handlers(ctx).await,
        R::Schedule => schedule(ctx).await,
        R::RunNow => run_now(ctx).await,
        R::Schedules => schedules(ctx),
        R::Delete => delete(ctx, params[0]).await,
        R::Executions => executions(ctx).await,
        R::ExecutionStats => stats(ctx).await,
        R::ExecutionErrors => errors(ctx).await,
        R::ExecutionsClear => clear(ctx).await,
    }
}

/// The 404 for a path under `/api/` that is neither ScheduleZero's nor ours.
pub(super) fn not_found(rest: &[&str]) -> ApiError {
    ApiError::not_found(format!(
        "no endpoint at /api/{}; ScheduleZero's routes are health, handlers, schedule, run_now, schedules, executions; ours are under /api/v1/",
        rest.join("/")
    ))
}

/// `GET /api/handlers`: status is "Connected" when the handler polled within the last minute.
async fn handlers(ctx: &Ctx<'_>) -> ApiResult {
    deny_unknown_query(ctx, &[])?;
    let list = jobs(ctx)?.tasks.list().await;
    let dir = ctx.service.directory().read().unwrap();
    let out: Vec<Value> = list
        .iter()
        .map(|h| {
            let address = dir
                .iter()
                .find(|p| p.name.as_str() == h.name)
                .map(|p| p.address.to_string());
            json!({
                "id": h.name,
                "address": address,
                "methods": h.methods,
                "status": if h.online { "Connected" } else { "Disconnected" },
            })
        })
        .collect();
    ok(json!({"handlers": out}))
}

fn is_run_now(e: &JobEntry) -> bool {
    e.record.spec.metadata.contains_key(SZ_RUN_NOW)
}

/// The id a ScheduleZero client sees: its own, else ours.
fn sz_id(e: &JobEntry) -> String {
    e.record
        .spec
        .schedulezero_id()
        .map(str::to_string)
        .unwrap_or_else(|| e.record.id.to_string())
}

/// ScheduleZero's default job_id: `HANDLER_METHOD_SECONDS`, the Unix seconds of `now`.
fn default_job_id(handler: &str, method: &str, now: Timestamp) -> String {
    format!("{handler}_{method}_{}", now.as_second())
}

/// `POST /api/schedule`. The default job_id carries the time, as ScheduleZero's does: the
/// scheduler's clock.
async fn schedule(ctx: &Ctx<'_>) -> ApiResult {
    let Schedule(body) = body::read(ctx)?;
    let (handler, method, params) =
        handler_call(body.handler_id, body.job_method, body.job_params)?;
    let trigger = body.trigger.ok_or_else(|| {
        ApiError::bad_request(
            "trigger",
            "trigger is required, e.g. {\"type\": \"cron\", \"hour\": 9, \"minute\": 0}",
        )
    })?;
    let t =
        apscheduler::translate(&trigger).map_err(|e| ApiError::bad_request(e.field, e.message))?;
    let job_id = match job_id(body.job_id)? {
        Some(id) => id,
        None => {
            let now = jobs(ctx)?.now().map_err(super::jobs::shutting_down)?;
            default_job_id(&handler, &method, now)
        }
    };
    let mut spec = json!({
        "name": job_id,
        "trigger": t.trigger,
        "action": {"handler": {"id": handler, "method": method, "params": params}},
        "metadata": {SZ_ID: job_id},
    });
    if let Some(j) = t.jitter {
        spec["jitter"] = json!(j);
    }
    let jobs = jobs(ctx)?;
    let _one_at_a_time = SCHEDULE_LOCK.lock().await;
    let taken = jobs
        .by_schedulezero_id(&job_id)
        .map_err(|e| ApiError::store(&e))?;
    if let Some(e) = taken {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "duplicate_job_id",
            format!(
                "a schedule with job_id {job_id:?} exists already (our id {}); delete it first or pick another job_id",
                e.record.id
            ),
        )
        .field("job_id"));
    }
    let entry = jobs
        .create(sz_job(&spec)?, &ctx.caller.actor())
        .await
        .map_err(create_error)?;
    Ok(json_response(
        StatusCode::CREATED,
        json!({
            "status": "success",
            "job_id": job_id,
            "id": entry.record.id.to_string(),
            "message": format!("scheduled {handler}.{method}"),
        }),
    ))
}

/// `POST /api/run_now`: one durable run of `handler_id.job_method`, carried by a paused job.
async fn run_now(ctx: &Ctx<'_>) -> ApiResult {
    let RunNow(body) = body::read(ctx)?;
    let (handler, method, params) =
        handler_call(body.handler_id, body.job_method, body.job_params)?;
    let jobs = jobs(ctx)?;
    let actor = ctx.caller.actor();
    // Paused and with a date far ahead: it only ever runs through run_now below. Its attempt may
    // take up to 10 min (the most a job allows); the caller stops waiting after 30 s.
    let spec = json!({
        // Job names are unique: several run_now calls of one method may be in flight.
        "name": format!("run_now {method} {:08x}", rand_core::RngCore::next_u32(&mut rand_core::OsRng)),
        "trigger": {"at": "2999-01-01T00:00:00Z"},
        "paused": true,
        "timeout": "10m",
        "action": {"handler": {"id": handler, "method": method, "params": params}},
        "metadata": {SZ_RUN_NOW: true},
    });
    let carrier = jobs
        .create(sz_job(&spec)?, &actor)
        .await
        .map_err(create_error)?;
    let id = carrier.record.id;
    let run = jobs.run_now(id, &actor).await.map_err(run_now_error)?;
    match jobs.tasks.wait_finished(run, RUN_NOW_WAIT).await {
        Some(task) => {
            // Finished: the run record keeps the history; the carrier has done its work.
            if let Err(e) = jobs.delete(id, &actor).await {
                tracing::warn!(job = %id, error = %e, "could not delete a finished run_now carrier job");
            }
            if task.state == crate::queue::TaskState::Succeeded {
                ok(json!({
                    "status": "success",
                    "result": task.result,
                    "message": format!("{handler}.{method} ran (run {run})"),
                    "run_id": run.to_string(),
                }))
            } else {
                Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "handler_failed",
                    format!(
                        "{handler}.{method} failed after {} attempt(s): {}",
                        task.attempt,
                        task.error.as_deref().unwrap_or("no error given")
                    ),
                ))
            }
        }
        None => Ok(json_response(
            StatusCode::ACCEPTED,
            json!({
                "status": "queued",
                "run_id": run.to_string(),
                "job_id": id.to_string(),
                "message": format!(
                    "{handler} has not answered within {} s; the call stays queued durably, follow it at /api/v1/jobs/{id}/runs",
                    RUN_NOW_WAIT.as_secs()
                ),
            }),
        )),
    }
}

/// APScheduler-like text for a trigger.
fn trigger_text(t: &Trigger) -> String {
    match t {
        Trigger::At(at) => format!("date[{at}]"),
        Trigger::Every { interval, .. } => {
            format!("interval[{}]", crate::sched::format_duration(*interval))
        }
        Trigger::Cron { expr, zone, .. } => format!("cron[{expr}] {}", zone.name()),
    }
}

/// `GET /api/schedules`: every job except the carriers of `run_now`.
fn schedules(ctx: &Ctx<'_>) -> ApiResult {
    deny_unknown_query(ctx, &[])?;
    // Params may carry channel ids or tokens: viewers see `***`, as in the native API.
    let operator = ctx.require(Need::Operate).is_ok();
    let list: Vec<Value> = jobs(ctx)?
        .list()
        .map_err(|e| ApiError::store(&e))?
        .iter()
        .filter(|e| !is_run_now(e))
        .map(|e| {
            let id = sz_id(e);
            let args = match e.record.spec.action.handler() {
                Some(h) if operator => json!([h.id, h.method, h.params, id]),
                Some(h) => json!([h.id, h.method, "***", id]),
                None => json!([]),
            };
            json!({
                "id": id,
                "next_fire_time": e.record.next_fire_at.map(|t| t.to_string()),
                "trigger": trigger_text(&e.record.spec.trigger),
                "args": args,
                "paused": e.record.spec.paused,
            })
        })
        .collect();
    ok(json!({"count": list.len(), "schedules": list}))
}

/// `DELETE /api/schedules/{id}`: by ScheduleZero id, or by our id for other jobs. Of jobs
/// sharing a ScheduleZero id (possible natively: metadata is free-form), the first in
/// `GET /api/schedules` order goes. Reads one row (the job's), not every job.
async fn delete(ctx: &Ctx<'_>, id: &str) -> ApiResult {
    let jobs = jobs(ctx)?;
    let mut found = jobs
        .by_schedulezero_id(id)
        .map_err(|e| ApiError::store(&e))?;
    if found.is_none() {
        if let Ok(n) = id.parse::<JobId>() {
            found = jobs.get(n).map_err(|e| ApiError::store(&e))?;
        }
    }
    let Some(e) = found else {
        return Err(ApiError::not_found(format!(
            "no schedule with id {id:?}; GET /api/schedules lists them"
        ))
        .field("id"));
    };
    jobs.delete(e.record.id, &ctx.caller.actor())
        .await
        .map_err(delete_error)?;
    ok(json!({
        "status": "success",
        "message": format!("schedule {id} deleted"),
        "schedule_id": id,
    }))
}

/// A run as ScheduleZero's execution log shows it.
fn record(r: &RunRecord, job: Option<&JobEntry>) -> Value {
    let status = match r.status {
        RunStatus::Succeeded => "success",
        RunStatus::Failed => "error",
        RunStatus::Queued | RunStatus::Leased | RunStatus::Running => "running",
        RunStatus::Missed => "missed",
        RunStatus::Skipped => "skipped",
    };
    let call = job.and_then(|j| j.record.spec.action.handler());
    json!({
        "id": r.id.to_string(),
        "job_id": job.map(sz_id).unwrap_or_else(|| r.job_name.clone()),
        "handler_id": r.handler,
        "job_method": call.map(|c| c.method.clone()),
        "status": status,
        "scheduled_at": r.scheduled_at.to_string(),
        "started_at": r.started_at.map(|t| t.to_string()),
        "completed_at": r.finished_at.map(|t| t.to_string()),
        "duration_ms": r.duration_ms,
        "attempt_number": r.attempt,
        "result": r.result,
        "error": r.error,
        "trigger": r.trigger,
    })
}

/// Runs matching `keep`, newest first, at most `limit`, scanning at most `MAX_EXECUTIONS`
/// pages of history.
async fn scan(
    jobs: &Handle,
    status: Option<RunStatus>,
    limit: usize,
    keep: impl Fn(&Value) -> bool,
) -> Result<Vec<Value>, ApiError> {
    // Only the jobs the runs name are read, each once (a deleted job's runs show its name).
    let mut named: std::collections::HashMap<JobId, Option<JobEntry>> = Default::default();
    let mut out = Vec::new();
    let mut before = None;
    for _ in 0..MAX_EXECUTIONS {
        let page = jobs
            .runs(RunFilter {
                job: None,
                status,
                since: None,
                before,
                limit: MAX_EXECUTIONS,
            })
            .await
            .map_err(ApiError::internal)?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        let full = page.len() == MAX_EXECUTIONS;
        for r in &page {
            let job = match named.entry(r.job_id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(jobs.get(r.job_id).map_err(|e| ApiError::store(&e))?)
                }
            };
            let v = record(r, job.as_ref());
            if keep(&v) {
                out.push(v);
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        if !full {
            break;
        }
    }
    Ok(out)
}

/// `GET /api/executions?limit=&handler_id=|job_id=&status=`.
async fn executions(ctx: &Ctx<'_>) -> ApiResult {
    deny_unknown_query(ctx, &["limit", "handler_id", "job_id", "status"])?;
    let limit = super::limit_param(ctx, 100, MAX_EXECUTIONS)?;
    let handler = ctx.query.get("handler_id").cloned();
    let job = ctx.query.get("job_id").cloned();
    if handler.is_some() && job.is_some() {
        return Err(ApiError::bad_request(
            "job_id",
            "give handler_id or job_id, not both",
        ));
    }
    let status = match ctx.query.get("status").map(String::as_str) {
        None => None,
        Some(s @ ("success" | "error" | "running" | "missed" | "skipped")) => Some(s.to_string()),
        Some(s) => {
            return Err(ApiError::bad_request(
                "status",
                format!(
                    "unknown status {s:?}: expected success, error, running, missed or skipped"
                ),
            ))
        }
    };
    let native = match status.as_deref() {
        Some("success") => Some(RunStatus::Succeeded),
        Some("error") => Some(RunStatus::Failed),
        Some("missed") => Some(RunStatus::Missed),
        Some("skipped") => Some(RunStatus::Skipped),
        _ => None,
    };
    let records = scan(jobs(ctx)?, native, limit, |v| {
        handler.as_ref().is_none_or(|h| v["handler_id"] == **h)
            && job.as_ref().is_none_or(|j| v["job_id"] == **j)
            && status.as_ref().is_none_or(|s| v["status"] == **s)
    })
    .await?;
    ok(json!({"count": records.len(), "limit": limit, "records": records}))
}

/// `GET /api/executions/stats`, over the latest 1000 runs.
async fn stats(ctx: &Ctx<'_>) -> ApiResult {
    deny_unknown_query(ctx, &[])?;
    let jobs = jobs(ctx)?;
    let records = scan(jobs, None, MAX_EXECUTIONS, |_| true).await?;
    let (mut success, mut error, mut dur_sum, mut dur_n) = (0u64, 0u64, 0u64, 0u64);
    let mut by_handler: Map<String, Value> = Map::new();
    for r in &records {
        let ok = r["status"] == "success";
        let err = r["status"] == "error";
        success += ok as u64;
        error += err as u64;
        if let Some(d) = r["duration_ms"].as_u64() {
            dur_sum += d;
            dur_n += 1;
        }
        if let Some(h) = r["handler_id"].as_str() {
            let e = by_handler
                .entry(h.to_string())
                .or_insert_with(|| json!({"total": 0, "success": 0, "error": 0}));
            e["total"] = json!(e["total"].as_u64().unwrap_or(0) + 1);
            e["success"] = json!(e["success"].as_u64().unwrap_or(0) + ok as u64);
            e["error"] = json!(e["error"].as_u64().unwrap_or(0) + err as u64);
        }
    }
    let total = records.len() as u64;
    let lifetime = jobs.stats.lock().unwrap().fired;
    ok(json!({
        "total_executions": total,
        "lifetime_executions": lifetime,
        "success_count": success,
        "error_count": error,
        "success_rate": if success + error == 0 { 0.0 } else { 100.0 * success as f64 / (success + error) as f64 },
        "avg_duration_ms": if dur_n == 0 { 0.0 } else { dur_sum as f64 / dur_n as f64 },
        "by_handler": by_handler,
        "buffer_size": MAX_EXECUTIONS,
        "buffer_utilization": 100.0 * total as f64 / MAX_EXECUTIONS as f64,
    }))
}

/// `GET /api/executions/errors?limit=`.
async fn errors(ctx: &Ctx<'_>) -> ApiResult {
    deny_unknown_query(ctx, &["limit"])?;
    let limit = super::limit_param(ctx, 50, MAX_ERRORS)?;
    let errors = scan(jobs(ctx)?, Some(RunStatus::Failed), limit, |_| true).await?;
    ok(json!({"count": errors.len(), "limit": limit, "errors": errors}))
}

/// `POST /api/executions/clear`: deletes the finished run history (admin; audited).
async fn clear(ctx: &Ctx<'_>) -> ApiResult {
    let Clear {} = body::read_or_empty(ctx)?;
    let n = jobs(ctx)?
        .clear_runs(&ctx.caller.actor())
        .await
        .map_err(ApiError::internal)?;
    ok(json!({
        "status": "success",
        "message": format!("cleared {n} finished runs; queued and running ones are kept"),
        "cleared": n,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default job_id carries the seconds of the time it is given (the scheduler's),
    /// not of the wall clock.
    #[test]
    fn the_default_job_id_carries_the_given_time() {
        let now: Timestamp = "2031-03-04T05:06:07.9Z".parse().unwrap();
        assert_eq!(default_job_id("bot", "ping", now), "bot_ping_1930367167");
    }

    /// The scheduler's errors in ScheduleZero's terms: its field names, 500 for storage.
    #[test]
    fn scheduler_errors_answer_in_schedulezero_terms() {
        use crate::scheduler::{JobNotFound, NameTaken};
        let id: JobId = "00000000deadbeef".parse().unwrap();
        let e = create_error(
            NameTaken {
                name: "a".into(),
                id,
            }
            .into(),
        );
        assert_eq!(
            (e.status, e.code, e.field.as_deref()),
            (StatusCode::CONFLICT, "duplicate_job_id", Some("job_id"))
        );
        let e = create_error(
            SpecError {
                field: "action.handler.id".into(),
                message: "no such handler".into(),
            }
            .into(),
        );
        assert_eq!(
            (e.status, e.code, e.field.as_deref()),
            (StatusCode::NOT_FOUND, "unknown_handler", Some("handler_id"))
        );
        let e = delete_error(JobNotFound(id).into());
        assert_eq!(
            (e.status, e.field.as_deref()),
            (StatusCode::NOT_FOUND, Some("id"))
        );
        let e = run_now_error(RunNowError::NotRecorded(crate::store::StoreError::DiskFull));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            e.message
                .starts_with("internal error: the run could not be recorded"),
            "{}",
            e.message
        );
    }

    #[test]
    fn native_fields_read_as_schedulezero_fields() {
        assert_eq!(sz_field("action.handler.id"), "handler_id");
        assert_eq!(sz_field("action.handler.method"), "job_method");
        assert_eq!(sz_field("action.handler.params.x"), "job_params");
        assert_eq!(sz_field("trigger.at"), "trigger.run_date");
        assert_eq!(sz_field("trigger.every"), "trigger");
        assert_eq!(sz_field("name"), "job_id");
    }

    /// `GET /api/executions` reads the rows of the jobs its runs name, each once, not every
    /// job (`Store::job_rows_read`); a deleted job's runs still show its name.
    #[tokio::test]
    async fn executions_read_only_the_jobs_their_runs_name() {
        use crate::api::tests::{call, service_on};
        use crate::model::RunRecord;
        use hyper::Method;
        let disk = crate::store::testing::Disk::default();
        let service = service_on(&disk);
        let mut ids = Vec::new();
        for i in 0..20 {
            let body = json!({
                "name": format!("job-{i}"),
                "trigger": {"every": "1h"},
                "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/t"}},
            });
            let (status, v) = call(&service, Method::POST, "/api/v1/jobs", Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{v}");
            ids.push(v["id"].as_str().unwrap().parse::<JobId>().unwrap());
        }
        let gone = JobId::from_u64(0xdead);
        let store = service.store().clone();
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut runs: Vec<RunRecord> = [ids[3], ids[3], ids[7], gone, ids[3]]
            .into_iter()
            .map(|job| RunRecord {
                status: RunStatus::Succeeded,
                ..RunRecord::starting(job, format!("was {job}"), at, "schedule")
            })
            .collect();
        store.start_runs(&mut runs, &[]).unwrap();
        let before = store.job_rows_read();
        let (status, v) = call(&service, Method::GET, "/api/executions", None).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(store.job_rows_read() - before, 2, "jobs 3 and 7, once each");
        let names: Vec<&str> = v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["job_id"].as_str().unwrap())
            .collect();
        let ours = |i: usize| ids[i].to_string();
        let gone_name = format!("was {gone}");
        assert_eq!(
            names,
            vec![&*ours(3), &*gone_name, &*ours(7), &*ours(3), &*ours(3)],
            "newest first; the deleted job's run shows its name"
        );
    }

    /// Issue 12: `POST /api/schedule`'s duplicate check and `DELETE /api/schedules/{id}` read
    /// the row of the job they are about (`Store::job_rows_read`), not every job's: among
    /// 1,000 jobs a new job_id reads none (a pass read 1,000), a repeated one, one carried
    /// natively by a renamed job, a delete by either id each read one.
    #[tokio::test]
    async fn schedule_and_delete_read_one_row_not_every_job() {
        use crate::api::tests::{call, service_on};
        use crate::model::Actor;
        use hyper::Method;
        let disk = crate::store::testing::Disk::default();
        let service = service_on(&disk);
        let jobs = service.jobs();
        let actor = Actor::local_cli();
        jobs.tasks
            .register("bot", vec!["ping".into()], &actor)
            .await
            .unwrap();
        for i in 0..1000 {
            let body = json!({
                "name": format!("job-{i}"),
                "trigger": {"every": "1h"},
                "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/t"}},
            });
            jobs.create(JobDraft::from_value(&body).unwrap(), &actor)
                .await
                .unwrap();
        }
        // A native job carrying a ScheduleZero id in its metadata, then renamed.
        let native = json!({
            "name": "native",
            "trigger": {"every": "1h"},
            "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/t"}},
            "metadata": {SZ_ID: "carried"},
        });
        let (status, v) = call(&service, Method::POST, "/api/v1/jobs", Some(native)).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        let native_id = v["id"].as_str().unwrap().to_string();
        let path = format!("/api/v1/jobs/{native_id}");
        let (status, v) = call(
            &service,
            Method::PATCH,
            &path,
            Some(json!({"name": "other"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");

        let store = service.store().clone();
        let schedule = |job_id: &str| {
            json!({"handler_id": "bot", "job_method": "ping", "job_id": job_id,
                   "trigger": {"type": "interval", "hours": 1}})
        };
        let mut rows_read = Vec::new();
        for (method, path, body, want) in [
            (
                Method::POST,
                "/api/schedule",
                Some(schedule("ding")),
                StatusCode::CREATED,
            ),
            (
                Method::POST,
                "/api/schedule",
                Some(schedule("ding")),
                StatusCode::CONFLICT,
            ),
            (
                Method::POST,
                "/api/schedule",
                Some(schedule("carried")),
                StatusCode::CONFLICT,
            ),
            (Method::DELETE, "/api/schedules/ding", None, StatusCode::OK),
            (
                Method::DELETE,
                "/api/schedules/ding",
                None,
                StatusCode::NOT_FOUND,
            ),
            (
                Method::DELETE,
                &format!("/api/schedules/{native_id}"),
                None,
                StatusCode::OK,
            ),
        ] {
            let before = store.job_rows_read();
            let (status, v) = call(&service, method.clone(), path, body).await;
            assert_eq!(status, want, "{method} {path}: {v}");
            rows_read.push(store.job_rows_read() - before);
        }
        assert_eq!(rows_read, [0, 1, 1, 1, 0, 1], "rows read per request");
        assert_eq!(jobs.counts().0, 1000, "the two deleted, the others kept");
    }
}
