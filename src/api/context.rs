//! What a handler works with: who is calling ([`Caller`]), what a route requires ([`Need`]),
//! the request in hand ([`Ctx`]) with its query and body helpers, and the one error type of the
//! API ([`ApiError`], always `{"error":{"code","message","field"}}`).

use super::*;

/// The identity of a request: the WireGuard peer it came through.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: ::peers::Role,
    pub address: Ipv4Addr,
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

pub type Resp = Response<Full<Bytes>>;

/// An API error: status, code, sentence, and the offending field if any.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
    /// Close the connection after answering (the request's body was not read).
    pub close: bool,
}

impl ApiError {
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

    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message).field(field)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

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

pub type ApiResult = Result<Resp, ApiError>;

/// Per-request context handed to route handlers.
pub struct Ctx<'a> {
    pub service: &'a Service,
    pub api: &'a ApiState,
    pub caller: Caller,
    pub query: HashMap<String, String>,
    /// The parsed JSON body, if the request had one.
    pub body: Option<Value>,
}

impl Ctx<'_> {
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

/// Parses `limit` (1..=500, default 100 unless given).
pub fn limit_param(ctx: &Ctx<'_>, default: usize) -> Result<usize, ApiError> {
    const MAX: usize = 500;
    match ctx.query.get("limit") {
        None => Ok(default),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request("limit", format!("limit must be a number from 1 to {MAX}"))
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
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn ok(body: Value) -> ApiResult {
    Ok(json_response(StatusCode::OK, body))
}
