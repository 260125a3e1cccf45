//! `/api/v1/jobs`, `/api/v1/runs`, `/api/v1/stats`: the scheduler over HTTP.
//!
//! Roles: viewers read; officers and admins create, edit, pause, resume, run and delete.
//! Every change is committed (with its audit entry, webhook secrets redacted) before the
//! answer: a 201 means the job is on disk.

use hyper::StatusCode;
use jiff::Timestamp;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};

use super::body::{self, Body};
use super::routes::JobRoute;
use super::view::{self, JobView, RunView};
use super::{json_response, ok, ApiError, ApiResult, Ctx, Need};
use crate::model::{RunFilter, RunRecord, RunStatus};
use crate::sched::{JobDraft, JobId, SpecError};
use crate::scheduler::{
    sort_key, ChangeError, CreateError, JobEntry, JobNotFound, JobQuery, NameTaken, RunNowError,
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
        JobView::full(e).to_json()
    } else {
        JobView::for_viewer(e, &ctx.service.url_fingerprint_key()).to_json()
    }
}

/// The request's job (create, test), decoded into the checked type before anything else
/// happens; a 400 naming the field otherwise.
fn job_body(ctx: &Ctx<'_>, defaults: Option<&Map<String, Value>>) -> Result<JobDraft, ApiError> {
    let body = ctx
        .body
        .as_ref()
        .ok_or_else(|| ApiError::bad_request("body", "this request needs a JSON body (the job)"))?;
    match (body, defaults) {
        (Value::Object(obj), Some(defaults)) => {
            let mut obj = obj.clone();
            for (k, v) in defaults {
                obj.entry(k).or_insert_with(|| v.clone());
            }
            JobDraft::from_value(&Value::Object(obj))
        }
        _ => JobDraft::from_value(body),
    }
    .map_err(invalid)
}

/// What a test body may leave out, as it is not needed to send: a name and a trigger.
fn test_defaults() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!("test"));
    m.insert("trigger".into(), json!({"every": "1h"}));
    m
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
            let job = job_body(ctx, None)?;
            let entry = jobs(ctx)?.create(job, &ctx.caller.actor()).await?;
            let mut r = json_response(StatusCode::CREATED, JobView::full(&entry).to_json());
            r.headers_mut().insert(
                hyper::header::LOCATION,
                hyper::header::HeaderValue::from_str(&format!("/api/v1/jobs/{}", entry.record.id))
                    .expect("ids are header-safe"),
            );
            Ok(r)
        }
        JobRoute::Test => {
            let job = job_body(ctx, Some(&test_defaults()))?;
            let r = jobs(ctx)?.test_action(job, &ctx.caller.actor()).await?;
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
            ok(JobView::full(&e).to_json())
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
            ok(JobView::full(&e).to_json())
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
            ok(JobView::full(&e).to_json())
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
    // Filtered and ordered in memory; only the page's rows are read.
    let page = jobs(ctx)?
        .list_page(&JobQuery {
            paused,
            name,
            after: cursor,
            limit: view::read_limit(limit),
        })
        .map_err(|e| ApiError::store(&e))?;
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

    mod over_http {
        use hyper::Method;
        use serde_json::{json, Value};

        use crate::api::tests::{call, call_as};
        use crate::store::testing::Disk;

        fn job() -> Value {
            json!({
                "name": "raid-reminder",
                "trigger": {"cron": "45 19 * * THU", "timezone": "Europe/Berlin"},
                "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/t"}},
            })
        }

        fn refusal(field: &str, message: &str) -> Value {
            json!({"error": {"code": "invalid", "field": field, "message": message}})
        }

        /// The audit trail's actions, newest first.
        async fn audited(service: &crate::service::Appliance) -> Vec<Value> {
            let (_, audit) = call(service, Method::GET, "/api/v1/audit", None).await;
            audit["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .map(|e| e["action"].clone())
                .collect()
        }

        /// A create body is decoded into the checked spec before anything happens: a wrongly
        /// typed or unknown field deep inside is a 400 naming its full path, and nothing is
        /// stored or audited.
        #[tokio::test]
        async fn a_create_body_is_refused_by_the_full_path_of_its_field() {
            let disk = Disk::default();
            let service = crate::api::tests::service_on(&disk);
            let post = |body: Value| call(&service, Method::POST, "/api/v1/jobs", Some(body));
            let mut bad = job();
            bad["action"]["webhook"]["headers"] = json!({"X-Count": 1});
            assert_eq!(
                post(bad).await,
                (
                    hyper::StatusCode::BAD_REQUEST,
                    refusal("action.webhook.headers.X-Count", "must be a string")
                )
            );
            let mut bad = job();
            bad["trigger"]["tz"] = json!("UTC");
            assert_eq!(
                post(bad).await.1,
                refusal(
                    "trigger.tz",
                    "unknown field; remove it (allowed here: cron, timezone, start, end)"
                )
            );
            let mut bad = job();
            bad["retry"] = json!({"attempts": 2.5});
            assert_eq!(
                post(bad).await.1,
                refusal("retry.attempts", "must be a whole number from 1 to 10")
            );
            let (_, list) = call(&service, Method::GET, "/api/v1/jobs", None).await;
            assert_eq!(list["jobs"], json!([]));
            assert_eq!(audited(&service).await, Vec::<Value>::new());

            // An `every` without `start` starts at the scheduler's time of the create: the
            // time its record carries.
            let mut every = job();
            every["trigger"] = json!({"every": "1h"});
            let (status, created) = post(every).await;
            assert_eq!(status, hyper::StatusCode::CREATED, "{created}");
            let start: jiff::Timestamp = created["trigger"]["start"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let at: jiff::Timestamp = created["created_at"].as_str().unwrap().parse().unwrap();
            assert_eq!(start.as_millisecond(), at.as_millisecond());
        }

        /// A PATCH is merged into the job's JSON, then decoded like a create: a result that is
        /// not a valid job is refused naming the field, and the job stays as it was.
        #[tokio::test]
        async fn a_patch_that_makes_the_job_invalid_is_refused_and_nothing_changes() {
            let disk = Disk::default();
            let service = crate::api::tests::service_on(&disk);
            let (status, created) = call(&service, Method::POST, "/api/v1/jobs", Some(job())).await;
            assert_eq!(status, hyper::StatusCode::CREATED, "{created}");
            let path = format!("/api/v1/jobs/{}", created["id"].as_str().unwrap());
            let patch = |body: Value| call(&service, Method::PATCH, &path, Some(body));
            assert_eq!(
                patch(json!({"retry": {"attempts": "3"}})).await,
                (
                    hyper::StatusCode::BAD_REQUEST,
                    refusal("retry.attempts", "must be a whole number from 1 to 10")
                )
            );
            assert_eq!(
                patch(json!({"action": {"webhook": {"verb": "GET"}}}))
                    .await
                    .1,
                refusal(
                    "action.webhook.verb",
                    "unknown field; remove it (allowed here: url, method, headers, body)"
                )
            );
            assert_eq!(
                patch(json!({"trigger": {"cron": null}})).await.1,
                refusal(
                    "trigger",
                    "needs exactly one of at, every, cron; it has none"
                )
            );
            let (_, now) = call(&service, Method::GET, &path, None).await;
            assert_eq!(now, created, "the job is unchanged");
            let rows = service.jobs().store.jobs().unwrap().rows;
            assert_eq!(rows[0].spec.to_json(), {
                let mut spec = created.clone();
                for k in [
                    "id",
                    "next_fire_at",
                    "created_at",
                    "updated_at",
                    "created_by",
                    "running",
                ] {
                    spec.as_object_mut().unwrap().remove(k);
                }
                spec
            });
            assert_eq!(audited(&service).await, vec![json!("job.create")]);

            // A valid patch still goes through, and its reply is the view.
            let (status, patched) = patch(json!({"retry": {"attempts": 3}})).await;
            assert_eq!(status, hyper::StatusCode::OK, "{patched}");
            assert_eq!(patched["retry"], json!({"attempts": 3, "backoff": "10s"}));
            assert_eq!(patched["id"], created["id"]);
        }

        /// A test body is decoded the same way, with a name and a trigger it may leave out.
        #[tokio::test]
        async fn a_test_body_is_decoded_like_a_job() {
            let disk = Disk::default();
            let service = crate::api::tests::service_on(&disk);
            let test = |body: Value| {
                call_as(
                    &service,
                    ::peers::Role::Officer,
                    Method::POST,
                    "/api/v1/jobs/test",
                    Some(body),
                )
            };
            assert_eq!(
                test(json!({"action": {"webhook": {"url": 5}}})).await.1,
                refusal(
                    "action.webhook.url",
                    "must be a string such as \"https://discord.com/api/webhooks/…\""
                )
            );
            assert_eq!(
                test(json!({"action": {"webhook": {"url": "https://a.example/"}}, "colour": 1}))
                    .await
                    .1["error"]["field"],
                json!("colour")
            );
            assert_eq!(
                test(json!({"action": {"handler": {"id": "bot", "method": "m"}}}))
                    .await
                    .1["error"]["field"],
                json!("action")
            );
            assert_eq!(audited(&service).await, Vec::<Value>::new());
        }
    }

    /// A listing page filters and orders the job table in memory and reads only the rows it
    /// returns (`Store::job_rows_read`), not every job; its pages hold exactly the jobs a
    /// filter over every stored row finds, in listing order, each shown as `GET` shows it.
    #[tokio::test]
    async fn a_jobs_page_reads_only_its_own_rows() {
        use super::super::tests::{call, service_on};
        use hyper::Method;
        let disk = crate::store::testing::Disk::default();
        let service = service_on(&disk);
        for i in 0..24u32 {
            let name = if i % 3 == 0 {
                format!("Raid-{i}")
            } else {
                format!("weekly-{i}")
            };
            let body = json!({
                "name": name,
                // Fire order differs from creation (id) order.
                "trigger": {"every": format!("{}m", 1 + (i * 7) % 24)},
                "paused": i % 4 == 0,
                "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/t"}},
            });
            let (status, v) = call(&service, Method::POST, "/api/v1/jobs", Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{v}");
        }
        let store = service.store().clone();
        let stored = store.jobs().unwrap().rows;
        type Keep = fn(&crate::model::JobRecord) -> bool;
        let queries: [(&str, Keep); 5] = [
            ("", |_| true),
            ("paused=true&", |r| r.spec.paused),
            ("paused=false&", |r| !r.spec.paused),
            ("name=RAID&", |r| {
                r.spec.name.as_str().to_lowercase().contains("raid")
            }),
            ("name=weekly-1&paused=false&", |r| {
                r.spec.name.as_str().starts_with("weekly-1") && !r.spec.paused
            }),
        ];
        for (query, keep) in queries {
            let mut want: Vec<&crate::model::JobRecord> =
                stored.iter().filter(|r| keep(r)).collect();
            want.sort_by_key(|r| sort_key(r));
            let mut got = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    None => format!("/api/v1/jobs?{query}limit=4"),
                    Some(c) => format!("/api/v1/jobs?{query}limit=4&cursor={c}"),
                };
                let before = store.job_rows_read();
                let (status, page) = call(&service, Method::GET, &path, None).await;
                assert_eq!(status, StatusCode::OK, "{page}");
                let read = store.job_rows_read() - before;
                assert!(
                    read <= 5,
                    "{path}: read {read} rows of {} for a page of 4",
                    stored.len()
                );
                for job in page["jobs"].as_array().unwrap() {
                    let id = job["id"].as_str().unwrap();
                    let (_, one) =
                        call(&service, Method::GET, &format!("/api/v1/jobs/{id}"), None).await;
                    assert_eq!(job, &one, "a listed job is shown as GET shows it");
                    got.push(id.to_string());
                }
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
            let want: Vec<String> = want.iter().map(|r| r.id.to_string()).collect();
            assert!(!want.is_empty(), "{query}");
            assert_eq!(got, want, "{query}");
        }
    }
}
