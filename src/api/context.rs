//! What a handler works with: who is calling ([`Caller`]), what a route requires ([`Need`]),
//! the request in hand ([`Ctx`]) with its query and body helpers, and the one error type of the
//! API ([`ApiError`], always `{"error":{"code","message","field"}}`).

use super::*;

/// The identity of a request: the WireGuard peer it came through.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The peer's name.
    pub name: String,
    /// The peer's role, which decides what it may call.
    pub role: ::peers::Role,
    /// The tunnel address the request came from.
    pub address: Ipv4Addr,
    /// Short fingerprint of the peer's public key, for the audit trail.
    pub fingerprint: String,
    /// The peer's WireGuard endpoint when the connection was accepted.
    pub endpoint: Option<SocketAddr>,
}

impl Caller {
    /// This caller as the actor of an audited change.
    pub fn actor(&self) -> Actor {
        Actor {
            peer: self.name.clone(),
            fingerprint: Some(self.fingerprint.clone()),
            address: Some(self.address.to_string()),
            endpoint: self.endpoint.map(|e| e.to_string()),
            via: crate::model::Via::Api,
        }
    }
}

/// What a route demands of the caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any peer, handlers included.
    Any,
    /// Read the scheduler: viewer, officer, admin.
    Read,
    /// Create, edit, pause and run jobs: officer, admin.
    Operate,
    /// Everything, including peers and the audit trail: admin.
    Admin,
    /// Lease and finish handler tasks: handler only (admins do not lease).
    Handler,
}

impl Need {
    pub(super) fn allows(self, role: ::peers::Role) -> bool {
        use ::peers::Role::*;
        match self {
            Need::Any => true,
            Need::Read => matches!(role, Admin | Officer | Viewer),
            Need::Operate => matches!(role, Admin | Officer),
            Need::Admin => role == Admin,
            Need::Handler => role == Handler,
        }
    }

    pub(super) fn roles(self) -> &'static str {
        match self {
            Need::Any => "any",
            Need::Read => "viewer, officer or admin",
            Need::Operate => "officer or admin",
            Need::Admin => "admin",
            Need::Handler => "handler",
        }
    }
}

/// An HTTP response with a complete body.
pub type Resp = Response<Full<Bytes>>;

/// An API error: status, code, sentence, and the offending field if any.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status of the reply.
    pub status: StatusCode,
    /// Machine-readable code (`invalid_input`, `not_found`, …) in the JSON body.
    pub code: &'static str,
    /// The sentence telling the caller what to do.
    pub message: String,
    /// The request field at fault, when one is.
    pub field: Option<String>,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
    /// Close the connection after answering (the request's body was not read).
    pub close: bool,
}

impl ApiError {
    /// An error with this status, code and sentence, naming no field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            close: false,
        }
    }

    /// Names the request field at fault.
    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// A 400 `invalid_input` naming the field at fault.
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message).field(field)
    }

    /// A 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A 500 `internal`; the cause is logged, the caller gets a generic sentence.
    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %message, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error: {message}"),
        )
    }

    /// A storage failure: 507 while the disk is full, 503 while the database is unavailable
    /// (both: nothing was saved, the store recovers by itself), 500 for anything else.
    pub fn store(e: &StoreError) -> ApiError {
        match e {
            StoreError::DiskFull => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                e.to_string(),
            ),
            StoreError::Unavailable { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
            StoreError::Redb(_) | StoreError::Corrupt { .. } => ApiError::internal(e),
        }
    }

    /// The JSON error reply (`{"error":{"code","message","field"}}`) with its headers.
    pub fn into_response(self) -> Resp {
        let mut r = json_response(
            self.status,
            json!({"error": {"code": self.code, "message": self.message, "field": self.field}}),
        );
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            r.headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

/// What a route handler returns: a reply, or an error to render as one.
pub type ApiResult = Result<Resp, ApiError>;

/// Per-request context handed to route handlers.
pub struct Ctx<'a> {
    /// The running server's operations.
    pub service: &'a Appliance,
    /// The API's own state: configuration, limiters, counters.
    pub api: &'a ApiState,
    /// Who is asking.
    pub caller: Caller,
    /// The decoded query string.
    pub query: HashMap<String, String>,
    /// The parsed JSON body, if the request had one.
    pub body: Option<Value>,
}

impl Ctx<'_> {
    /// Refuses (403 naming the role needed) a caller whose role is below `need`.
    pub fn require(&self, need: Need) -> Result<(), ApiError> {
        if need.allows(self.caller.role) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_role",
                format!(
                    "this needs the {} role; {} is {}",
                    need.roles(),
                    self.caller.name,
                    self.caller.role
                ),
            ))
        }
    }

    /// The JSON body as an object, or a 400 naming the body.
    pub fn object(&self) -> Result<&serde_json::Map<String, Value>, ApiError> {
        match &self.body {
            Some(Value::Object(m)) => Ok(m),
            Some(_) => Err(ApiError::bad_request(
                "body",
                "the body must be a JSON object",
            )),
            None => Err(ApiError::bad_request(
                "body",
                "this request needs a JSON body",
            )),
        }
    }
}

/// Rejects query parameters not in `allowed`, naming the first unknown one.
pub fn deny_unknown_query(ctx: &Ctx<'_>, allowed: &[&str]) -> Result<(), ApiError> {
    for k in ctx.query.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(
                k.clone(),
                format!(
                    "unknown query parameter '{k}'; expected one of: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The largest `limit` of the native listings (jobs, runs, audit).
pub const MAX_LIMIT: usize = 500;

/// Parses the `limit` query parameter: 1..=`max`, `default` when absent.
pub fn limit_param(ctx: &Ctx<'_>, default: usize, max: usize) -> Result<usize, ApiError> {
    match ctx.query.get("limit") {
        None => Ok(default),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request("limit", format!("limit must be a number from 1 to {max}"))
            }),
    }
}

/// Rejects object keys not in `allowed`, naming the first unknown one.
pub fn deny_unknown(
    obj: &serde_json::Map<String, Value>,
    allowed: &[&str],
    prefix: &str,
) -> Result<(), ApiError> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(
                format!("{prefix}{k}"),
                format!(
                    "unknown field '{k}'; expected one of: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: Value) -> Resp {
    json_bytes(status, Bytes::from(body.to_string()))
}

/// A JSON response whose body is already serialized (a typed body, a static document).
pub fn json_bytes(status: StatusCode, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A 200 with `body` as JSON.
pub fn ok(body: Value) -> ApiResult {
    Ok(json_response(StatusCode::OK, body))
}
