//! The API's routes in one declarative table: method, path pattern, the role required, and the
//! handler that serves it ([`ROUTES`]).
//!
//! Layer: pure (data and matching). The router (`api::route`) looks every request up here,
//! checks the route's role once — no handler checks access itself — and dispatches on the
//! handler. Metric labels ([`super::route_template`]), the routes a handler peer may call,
//! what the dashboard shows each role ([`permitted`], through `GET /api/v1/whoami`) and
//! `tests/openapi.rs` (every route documented, nothing else) read the same table.

use super::Need;

/// A route of `/api/v1/peers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRoute {
    /// `GET /api/v1/peers`: every peer with its statistics.
    List,
    /// `POST /api/v1/peers`: add a peer; the reply carries its config and QR code.
    Create,
    /// `GET /api/v1/peers/{name}`: one peer.
    Get,
    /// `PATCH /api/v1/peers/{name}`: change its role or enable/disable it.
    Patch,
    /// `DELETE /api/v1/peers/{name}`: remove it and free its address.
    Delete,
    /// `POST /api/v1/peers/{name}/rotate`: a new key and config; the old key stops working.
    Rotate,
}

/// A route of `/api/v1/jobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobRoute {
    /// `GET /api/v1/jobs`: every job, next fire first.
    List,
    /// `POST /api/v1/jobs`: create a job.
    Create,
    /// `POST /api/v1/jobs/test`: send one webhook attempt of an unsaved job.
    Test,
    /// `GET /api/v1/jobs/{id}`: one job.
    Get,
    /// `PATCH /api/v1/jobs/{id}`: change a job's spec.
    Patch,
    /// `DELETE /api/v1/jobs/{id}`: delete a job (its runs stay until pruned).
    Delete,
    /// `POST /api/v1/jobs/{id}/pause`: stop its fires.
    Pause,
    /// `POST /api/v1/jobs/{id}/resume`: fire again, from now or catching up.
    Resume,
    /// `POST /api/v1/jobs/{id}/run`: fire now, outside the schedule.
    Run,
    /// `GET /api/v1/jobs/{id}/runs`: the job's run history.
    Runs,
}

/// A route of a handler peer's task queue, `/api/v1/tasks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRoute {
    /// `POST /api/v1/tasks/lease`: long-poll for the caller's queued tasks.
    Lease,
    /// `POST /api/v1/tasks/{id}/heartbeat`: extend a held lease.
    Heartbeat,
    /// `POST /api/v1/tasks/{id}/ack`: finish a held task with its result.
    Ack,
    /// `POST /api/v1/tasks/{id}/fail`: report a failed attempt (retried or final).
    Fail,
}

/// A ScheduleZero route (`/api/…` outside `/api/v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleZeroRoute {
    /// `GET /api/health`: ScheduleZero's liveness check.
    Health,
    /// `GET /api/handlers`: registered handlers in ScheduleZero's shape.
    Handlers,
    /// `POST /api/schedule`: create a job from a ScheduleZero trigger form.
    Schedule,
    /// `POST /api/run_now`: run a handler method once and wait for its answer.
    RunNow,
    /// `GET /api/schedules`: jobs in ScheduleZero's shape.
    Schedules,
    /// `DELETE /api/schedules/{id}`: delete a job.
    Delete,
    /// `GET /api/executions`: run history in ScheduleZero's shape.
    Executions,
    /// `GET /api/executions/stats`: run counters.
    ExecutionStats,
    /// `GET /api/executions/errors`: failed runs.
    ExecutionErrors,
    /// `POST /api/executions/clear`: delete the finished run history.
    ExecutionsClear,
}

/// Which handler serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// The dashboard page, `GET /`.
    Index,
    /// The dashboard's script modules and style sheet, `GET /assets/{name}`.
    Asset,
    /// Next fire times of an unsaved trigger.
    SchedulePreview,
    /// Liveness and counters, `GET /api/v1/health`.
    Health,
    /// The caller's peer name and role.
    Whoami,
    /// The audit trail, newest first.
    Audit,
    /// The endpoint client configs carry.
    EndpointGet,
    /// Change that endpoint.
    EndpointPut,
    /// Prometheus text exposition, `GET /metrics`.
    Metrics,
    /// The OpenAPI document.
    OpenApi,
    /// Runs of every job, newest first.
    Runs,
    /// Run counters and lateness.
    Stats,
    /// A route of `/api/v1/peers`.
    Peer(PeerRoute),
    /// A route of `/api/v1/jobs`.
    Job(JobRoute),
    /// `PUT /api/v1/handler`: a handler peer registers its methods.
    HandlerRegister,
    /// `GET /api/v1/handlers`: registered handlers with their queue counts.
    HandlersList,
    /// A route of a handler's task queue.
    Task(TaskRoute),
    /// A ScheduleZero compatibility route.
    ScheduleZero(ScheduleZeroRoute),
}

/// One route: `method` (upper case; `HEAD` is served wherever `GET` is), a path pattern whose
/// `{name}` segments match any one segment, the role it needs, and its handler.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Upper-case HTTP method.
    pub method: &'static str,
    /// Path pattern; a `{name}` segment matches any one segment.
    pub path: &'static str,
    /// The least role that may call it.
    pub need: Need,
    /// What serves it.
    pub handler: Handler,
}

const fn r(method: &'static str, path: &'static str, need: Need, handler: Handler) -> Route {
    Route {
        method,
        path,
        need,
        handler,
    }
}

use Handler as H;
use Need::{Admin, Any, Handler as HandlerRole, Operate, Read};

/// Every route the API serves. Order matters only where a literal segment and a `{param}`
/// could both match (`/api/v1/jobs/test` before `/api/v1/jobs/{id}`): the first match wins.
#[rustfmt::skip]
pub static ROUTES: &[Route] = &[
    r("GET", "/", Any, H::Index),
    r("GET", "/assets/{name}", Any, H::Asset),
    r("POST", "/api/v1/schedule/preview", Read, H::SchedulePreview),
    r("GET", "/api/v1/health", Any, H::Health),
    r("GET", "/api/v1/whoami", Any, H::Whoami),
    r("GET", "/api/v1/openapi.json", Any, H::OpenApi),
    r("GET", "/api/v1/audit", Admin, H::Audit),
    r("GET", "/api/v1/endpoint", Read, H::EndpointGet),
    r("PUT", "/api/v1/endpoint", Admin, H::EndpointPut),
    r("GET", "/metrics", Read, H::Metrics),
    r("GET", "/api/v1/runs", Read, H::Runs),
    r("GET", "/api/v1/stats", Read, H::Stats),
    r("GET", "/api/v1/peers", Admin, H::Peer(PeerRoute::List)),
    r("POST", "/api/v1/peers", Admin, H::Peer(PeerRoute::Create)),
    r("GET", "/api/v1/peers/{name}", Admin, H::Peer(PeerRoute::Get)),
    r("PATCH", "/api/v1/peers/{name}", Admin, H::Peer(PeerRoute::Patch)),
    r("DELETE", "/api/v1/peers/{name}", Admin, H::Peer(PeerRoute::Delete)),
    r("POST", "/api/v1/peers/{name}/rotate", Admin, H::Peer(PeerRoute::Rotate)),
    r("GET", "/api/v1/jobs", Read, H::Job(JobRoute::List)),
    r("POST", "/api/v1/jobs", Operate, H::Job(JobRoute::Create)),
    r("POST", "/api/v1/jobs/test", Operate, H::Job(JobRoute::Test)),
    r("GET", "/api/v1/jobs/{id}", Read, H::Job(JobRoute::Get)),
    r("PATCH", "/api/v1/jobs/{id}", Operate, H::Job(JobRoute::Patch)),
    r("DELETE", "/api/v1/jobs/{id}", Operate, H::Job(JobRoute::Delete)),
    r("POST", "/api/v1/jobs/{id}/pause", Operate, H::Job(JobRoute::Pause)),
    r("POST", "/api/v1/jobs/{id}/resume", Operate, H::Job(JobRoute::Resume)),
    r("POST", "/api/v1/jobs/{id}/run", Operate, H::Job(JobRoute::Run)),
    r("GET", "/api/v1/jobs/{id}/runs", Read, H::Job(JobRoute::Runs)),
    r("PUT", "/api/v1/handler", HandlerRole, H::HandlerRegister),
    r("GET", "/api/v1/handlers", Read, H::HandlersList),
    r("POST", "/api/v1/tasks/lease", HandlerRole, H::Task(TaskRoute::Lease)),
    r("POST", "/api/v1/tasks/{id}/heartbeat", HandlerRole, H::Task(TaskRoute::Heartbeat)),
    r("POST", "/api/v1/tasks/{id}/ack", HandlerRole, H::Task(TaskRoute::Ack)),
    r("POST", "/api/v1/tasks/{id}/fail", HandlerRole, H::Task(TaskRoute::Fail)),
    r("GET", "/api/health", Read, H::ScheduleZero(ScheduleZeroRoute::Health)),
    r("GET", "/api/handlers", Read, H::ScheduleZero(ScheduleZeroRoute::Handlers)),
    r("POST", "/api/schedule", Operate, H::ScheduleZero(ScheduleZeroRoute::Schedule)),
    r("POST", "/api/run_now", Operate, H::ScheduleZero(ScheduleZeroRoute::RunNow)),
    r("GET", "/api/schedules", Read, H::ScheduleZero(ScheduleZeroRoute::Schedules)),
    r("DELETE", "/api/schedules/{id}", Operate, H::ScheduleZero(ScheduleZeroRoute::Delete)),
    r("GET", "/api/executions", Read, H::ScheduleZero(ScheduleZeroRoute::Executions)),
    r("GET", "/api/executions/stats", Read, H::ScheduleZero(ScheduleZeroRoute::ExecutionStats)),
    r("GET", "/api/executions/errors", Read, H::ScheduleZero(ScheduleZeroRoute::ExecutionErrors)),
    r("POST", "/api/executions/clear", Admin, H::ScheduleZero(ScheduleZeroRoute::ExecutionsClear)),
];

/// The `{param}` values of `pattern` in `segs`, or `None` if the path does not match.
fn matches<'p>(pattern: &str, segs: &[&'p str]) -> Option<Vec<&'p str>> {
    let pat: Vec<&str> = super::path_segments(pattern);
    if pat.len() != segs.len() {
        return None;
    }
    let mut params = Vec::new();
    for (p, s) in pat.iter().zip(segs) {
        if p.starts_with('{') {
            params.push(*s);
        } else if p != s {
            return None;
        }
    }
    Some(params)
}

/// What the table says about a request.
#[derive(Debug)]
pub enum Lookup<'p> {
    /// The route, and its `{param}` values in order.
    Found(&'static Route, Vec<&'p str>),
    /// The path is served, but not with this method.
    MethodNotAllowed,
    /// No route has this path.
    NotFound,
}

/// Finds the route for `method` (upper case, `GET` for `HEAD`) and a path split by
/// [`super::path_segments`].
pub fn lookup<'p>(method: &str, segs: &[&'p str]) -> Lookup<'p> {
    let mut path_known = false;
    for route in ROUTES {
        if let Some(params) = matches(route.path, segs) {
            if route.method == method {
                return Lookup::Found(route, params);
            }
            path_known = true;
        }
    }
    if path_known {
        Lookup::MethodNotAllowed
    } else {
        Lookup::NotFound
    }
}

/// The pattern of the first route with this path (any method), for metric labels.
pub fn template(segs: &[&str]) -> Option<&'static str> {
    ROUTES
        .iter()
        .find(|r| matches(r.path, segs).is_some())
        .map(|r| r.path)
}

/// The routes `role` may call, as `METHOD /path/{param}`, in table order: `GET
/// /api/v1/whoami` gives them as `permitted`, and the dashboard shows a control only when its
/// route is there (the router still checks every request).
pub fn permitted(role: ::peers::Role) -> Vec<String> {
    ROUTES
        .iter()
        .filter(|r| r.need.allows(role))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// Whether a handler peer may call this path at all: some route there admits the handler
/// role (health, whoami, openapi.json, the dashboard's static files, registration, tasks).
pub fn handler_may_call(segs: &[&str]) -> bool {
    ROUTES
        .iter()
        .any(|r| r.need.allows(::peers::Role::Handler) && matches(r.path, segs).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<&str> {
        super::super::path_segments(p)
    }

    #[test]
    fn literals_win_over_params_and_methods_are_told_apart() {
        let s = segs("/api/v1/jobs/test");
        assert!(matches!(
            lookup("POST", &s),
            Lookup::Found(r, _) if r.handler == Handler::Job(JobRoute::Test)
        ));
        assert!(matches!(
            lookup("GET", &s),
            Lookup::Found(r, ref p) if r.handler == Handler::Job(JobRoute::Get) && p == &["test"]
        ));
        assert!(matches!(lookup("PUT", &s), Lookup::MethodNotAllowed));
        assert!(matches!(
            lookup("GET", &segs("/api/v1/jobs/a/b/c")),
            Lookup::NotFound
        ));
        assert!(matches!(
            lookup("POST", &segs("/api/v1/peers/alice/rotate")),
            Lookup::Found(r, ref p) if r.need == Need::Admin && p == &["alice"]
        ));
    }

    /// What each role may call comes from the table: a change of role changes the list, and
    /// every entry is a route whose requirement the role meets.
    #[test]
    fn permitted_routes_follow_the_role() {
        use ::peers::Role::*;
        let of = |role| permitted(role);
        let has = |role, route: &str| of(role).iter().any(|r| r == route);
        assert!(has(Viewer, "GET /api/v1/jobs"));
        assert!(!has(Viewer, "POST /api/v1/jobs"));
        assert!(has(Officer, "POST /api/v1/jobs"));
        assert!(has(Officer, "POST /api/v1/jobs/{id}/run"));
        assert!(!has(Officer, "GET /api/v1/peers"));
        assert!(!has(Officer, "GET /api/v1/audit"));
        assert!(has(Admin, "GET /api/v1/peers"));
        assert!(has(Admin, "PATCH /api/v1/peers/{name}"));
        assert!(
            !has(Admin, "POST /api/v1/tasks/lease"),
            "admins do not lease"
        );
        assert!(has(Handler, "POST /api/v1/tasks/lease"));
        assert!(!has(Handler, "GET /api/v1/jobs"));
        let roles = [Viewer, Officer, Admin, Handler];
        for (i, a) in roles.iter().enumerate() {
            for b in &roles[..i] {
                assert_ne!(of(*a), of(*b), "{a} and {b}");
            }
            let expect: Vec<String> = ROUTES
                .iter()
                .filter(|r| r.need.allows(*a))
                .map(|r| format!("{} {}", r.method, r.path))
                .collect();
            assert_eq!(of(*a), expect, "{a}");
        }
        // Everything a viewer may do, an officer may, and an admin may do all of that too.
        for r in of(Viewer) {
            assert!(has(Officer, &r), "{r}");
        }
        for r in of(Officer) {
            assert!(has(Admin, &r), "{r}");
        }
    }

    #[test]
    fn every_route_is_unique_and_reachable() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[..i] {
                assert!(
                    (a.method, a.path) != (b.method, b.path),
                    "{} {} twice",
                    a.method,
                    a.path
                );
            }
            let s = segs(a.path);
            match lookup(a.method, &s) {
                Lookup::Found(r, _) => assert_eq!(r.handler, a.handler, "{} {}", a.method, a.path),
                other => panic!("{} {} is shadowed: {other:?}", a.method, a.path),
            }
        }
    }
}
