//! `GET /api/v1/endpoint` (viewer, officer, admin) and `PUT /api/v1/endpoint` (admin): the
//! `HOST:PORT` new client configs carry in `Endpoint =`.
//!
//! `PUT` takes `{"endpoint": "HOST[:PORT]"}` (a missing port is the port listened on); the
//! change is committed with its audit entry (`server.endpoint`) before the answer (507 on a
//! full disk, nothing changed) and is live
//! at once: the next `POST /api/v1/peers` and `appliance peer add` carry it. Tunnels that are
//! up stay up.

use serde::{Deserialize, Deserializer};

use super::body::{self, Body};
use super::view::EndpointView;
use super::{ok, ApiError, ApiResult, Ctx};

/// `PUT /api/v1/endpoint`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutEndpoint {
    #[serde(default, deserialize_with = "endpoint_field")]
    endpoint: Option<String>,
}

impl Body for PutEndpoint {
    const FIELDS: &'static [&'static str] = &["endpoint"];
}

/// Present, it must be a string (null included: it is not a way to say "unset").
fn endpoint_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(Some(s)),
        _ => Err(body::refuse(
            "endpoint",
            "endpoint must be a string such as \"vpn.example.org\" or \"203.0.113.7:51820\"",
        )),
    }
}

/// `GET /api/v1/endpoint`.
pub(super) fn get(ctx: &Ctx<'_>) -> ApiResult {
    let view = EndpointView::new(&ctx.service.server().endpoint, None);
    ok(serde_json::to_value(view).expect("plain data"))
}

/// `PUT /api/v1/endpoint` `{"endpoint": "HOST[:PORT]"}`.
pub(super) async fn put(ctx: &Ctx<'_>) -> ApiResult {
    let body: PutEndpoint = body::read(ctx)?;
    let text = body.endpoint.ok_or_else(|| {
        ApiError::bad_request(
            "endpoint",
            "endpoint is required, e.g. {\"endpoint\": \"vpn.example.org\"}",
        )
    })?;
    let endpoint = peers::Endpoint::parse(&text, ctx.service.listen().port())
        .map_err(|e| ApiError::bad_request("endpoint", format!("invalid endpoint: {e}")))?;
    let previous = ctx
        .service
        .set_endpoint(endpoint.clone(), ctx.caller.actor())
        .await
        .map_err(|e| ApiError::store(&e))?;
    let view = EndpointView::new(&endpoint, Some(&previous));
    ok(serde_json::to_value(view).expect("plain data"))
}
