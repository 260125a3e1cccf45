//! `/api/v1/peers`: peer management for admins, with the CLI's rules and live effect.
//!
//! `POST` generates the client key pair on the server and returns the client config and its QR
//! code (SVG) in that one response; the private key is stored nowhere.

use std::net::IpAddr;

use hyper::StatusCode;
use peers::{PeerName, PresharedKey, PrivateKey, PublicKey, Role};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::body::{self, Body};
use super::routes::PeerRoute;
use super::{ok, ApiError, ApiResult, Ctx};
use crate::peer_ops::{ConfigOptions, PeerAdded};
use crate::registry::{AddPeer, AddPeerError, PeerUpdate, PeerUpdateError};

pub(super) async fn handle(ctx: &Ctx<'_>, route: PeerRoute, params: &[&str]) -> ApiResult {
    let name = || parse_name(params[0]);
    match route {
        PeerRoute::List => ok(json!(ctx
            .service
            .list_peers()
            .await
            .map_err(ApiError::internal)?)),
        PeerRoute::Create => create(ctx).await,
        PeerRoute::Get => {
            let name = name()?;
            let views = ctx.service.list_peers().await.map_err(ApiError::internal)?;
            views
                .into_iter()
                .find(|v| v.name == name.as_str())
                .map(|v| ok(json!(v)))
                .unwrap_or_else(|| Err(not_found(&name)))
        }
        PeerRoute::Patch => patch(ctx, name()?).await,
        PeerRoute::Rotate => rotate(ctx, name()?).await,
        PeerRoute::Delete => update(ctx, PeerUpdate::Remove { name: name()? }).await,
    }
}

fn parse_name(s: &str) -> Result<PeerName, ApiError> {
    PeerName::new(s).map_err(|e| ApiError::bad_request("name", e.to_string()))
}

fn not_found(name: &PeerName) -> ApiError {
    ApiError::not_found(format!("no peer named '{name}'"))
}

/// `POST /api/v1/peers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePeer {
    #[serde(default, deserialize_with = "name_field")]
    name: Option<PeerName>,
    /// Default `viewer`.
    #[serde(default, deserialize_with = "role_field")]
    role: Option<Role>,
    /// A key the device generated itself; absent, the server generates the pair.
    #[serde(default, deserialize_with = "public_key_field")]
    public_key: Option<PublicKey>,
    #[serde(default, deserialize_with = "dns_field")]
    dns: Vec<IpAddr>,
}

impl Body for CreatePeer {
    const FIELDS: &'static [&'static str] = &["name", "role", "public_key", "dns"];
}

/// `PATCH /api/v1/peers/{name}`: role and/or enabled.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchPeer {
    #[serde(default, deserialize_with = "role_field")]
    role: Option<Role>,
    #[serde(default, deserialize_with = "enabled_field")]
    enabled: Option<bool>,
}

impl Body for PatchPeer {
    const FIELDS: &'static [&'static str] = &["role", "enabled"];
}

fn name_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PeerName>, D::Error> {
    (body::opt_string(d, "name")?)
        .map(|s| PeerName::new(&s).map_err(|e| body::refuse("name", e)))
        .transpose()
}

fn role_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Role>, D::Error> {
    (body::opt_string(d, "role")?)
        .map(|s| {
            s.parse()
                .map_err(|e: peers::RoleError| body::refuse("role", e))
        })
        .transpose()
}

/// A device's own key: refused (naming `public_key`) when it is not a key a device can have —
/// malformed, a low-order point, or a non-canonical encoding.
fn public_key_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PublicKey>, D::Error> {
    (body::opt_string(d, "public_key")?)
        .map(|s| PublicKey::parse(&s).map_err(|e| body::refuse("public_key", e)))
        .transpose()
}

fn dns_field<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    let refused = || body::refuse("dns", "'dns' must be a list of IP addresses");
    match Value::deserialize(d)? {
        Value::Null => Ok(vec![]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().and_then(|s| s.parse().ok()).ok_or_else(refused))
            .collect(),
        _ => Err(refused()),
    }
}

fn enabled_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    body::opt_bool(d, "enabled")
}

async fn create(ctx: &Ctx<'_>) -> ApiResult {
    let body: CreatePeer = body::read(ctx)?;
    let name = (body.name).ok_or_else(|| ApiError::bad_request("name", "'name' is required"))?;
    let role = body.role.unwrap_or(Role::Viewer);
    let (private, public) = match body.public_key {
        Some(k) => (None, k),
        None => {
            let k = PrivateKey::generate(&mut rand_core::OsRng);
            let p = k.public_key();
            (Some(k), p)
        }
    };
    let dns = body.dns;
    let psk = PresharedKey::generate(&mut rand_core::OsRng);
    let req = AddPeer {
        name,
        role,
        public_key: public,
        preshared_key: Some(psk.clone()),
        extra_allowed_ips: vec![],
    };
    let rec = ctx
        .service
        .add_peer(req, ctx.caller.actor())
        .await
        .map_err(|e| match e {
            AddPeerError::NameTaken(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()).field("name")
            }
            AddPeerError::KeyTaken(_) | AddPeerError::ServerKey => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()).field("public_key")
            }
            AddPeerError::PoolFull(_) => {
                ApiError::new(StatusCode::CONFLICT, "pool_full", e.to_string())
            }
            AddPeerError::AllowedIpsOverlap { .. }
            | AddPeerError::AllowedIpsContainServer { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            AddPeerError::Store(s) => ApiError::store(&s),
            AddPeerError::ShuttingDown => ApiError::internal(e),
        })?;
    let (text, svg) = client_config(ctx, &rec, private, psk, dns)?;
    let mut r = super::json_response(
        StatusCode::CREATED,
        json!({"peer": ctx.service.view(&rec), "config": text, "qr_svg": svg}),
    );
    r.headers_mut().insert(
        hyper::header::LOCATION,
        hyper::header::HeaderValue::from_str(&format!("/api/v1/peers/{}", rec.name))
            .expect("peer names are header-safe"),
    );
    Ok(r)
}

/// The client config for a peer's new keys, as text and as a QR code (SVG) of its compact form
/// (as the CLI's codes).
fn client_config(
    ctx: &Ctx<'_>,
    rec: &crate::model::PeerRecord,
    private: Option<PrivateKey>,
    psk: PresharedKey,
    dns: Vec<std::net::IpAddr>,
) -> Result<(String, String), ApiError> {
    let added = PeerAdded::new(rec, &ctx.service.server());
    let opts = ConfigOptions {
        dns,
        ..ConfigOptions::default()
    };
    let config = crate::peer_ops::client_config(&added, private, psk, opts);
    let svg = peers::render_svg(&crate::peer_ops::qr_text(&config)).map_err(ApiError::internal)?;
    let text = config.render();
    Ok((text, svg))
}

/// `POST /api/v1/peers/{name}/rotate`: new key pair and PSK generated here; the old config
/// stops working at once; the new config and QR are in this one answer only (no body needed).
async fn rotate(ctx: &Ctx<'_>, name: PeerName) -> ApiResult {
    if ctx.body.is_some() {
        return Err(ApiError::bad_request("body", "rotate takes no body"));
    }
    let private = PrivateKey::generate(&mut rand_core::OsRng);
    let psk = PresharedKey::generate(&mut rand_core::OsRng);
    let op = PeerUpdate::Rotate {
        name,
        public_key: private.public_key(),
        preshared_key: Some(psk.clone()),
    };
    let rec = ctx
        .service
        .update_peer(op, ctx.caller.actor())
        .await
        .map_err(update_error)?;
    let (text, svg) = client_config(ctx, &rec, Some(private), psk, vec![])?;
    ok(json!({"peer": ctx.service.view(&rec), "config": text, "qr_svg": svg}))
}

async fn patch(ctx: &Ctx<'_>, name: PeerName) -> ApiResult {
    let PatchPeer { role, enabled } = body::read(ctx)?;
    if role.is_none() && enabled.is_none() {
        return Err(ApiError::bad_request(
            "body",
            "give 'role' and/or 'enabled'",
        ));
    }
    let op = PeerUpdate::Fields {
        name,
        role,
        enabled,
    };
    update(ctx, op).await
}

/// Applies a change to a peer as the caller and answers with the peer as it is now.
async fn update(ctx: &Ctx<'_>, op: PeerUpdate) -> ApiResult {
    let rec = ctx
        .service
        .update_peer(op, ctx.caller.actor())
        .await
        .map_err(update_error)?;
    ok(json!(ctx.service.view(&rec)))
}

fn update_error(e: PeerUpdateError) -> ApiError {
    match e {
        PeerUpdateError::NotFound(_) => ApiError::not_found(e.to_string()),
        PeerUpdateError::KeyTaken(_) | PeerUpdateError::ServerKey | PeerUpdateError::LastAdmin => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        PeerUpdateError::Store(s) => ApiError::store(&s),
        PeerUpdateError::ShuttingDown => ApiError::internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_body(v: Value) -> Result<CreatePeer, ApiError> {
        body::decode(v.as_object().expect("an object"))
    }

    #[test]
    fn low_order_and_non_canonical_public_keys_are_400_naming_public_key() {
        for (key, needle) in [
            (
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "low-order point",
            ),
            (
                "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "low-order point",
            ),
            ("/////////////////////////////////////////38=", "canonical"),
        ] {
            let e = create_body(json!({"name": "a", "public_key": key})).expect_err(key);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{key}");
            assert_eq!(e.field.as_deref(), Some("public_key"), "{key}");
            assert!(e.message.contains(needle), "{key}: {}", e.message);
        }
        let good = PrivateKey::generate(&mut rand_core::OsRng).public_key();
        let body = create_body(json!({"name": "a", "public_key": good.to_base64()})).unwrap();
        assert_eq!(body.public_key, Some(good));
    }

    #[test]
    fn typed_bodies_name_the_field_they_refuse() {
        for (v, field, message) in [
            (json!({"name": 5}), "name", "'name' must be a string"),
            (json!({"name": "a", "role": "king"}), "role", "king"),
            (
                json!({"name": "a", "dns": ["1.1.1.1", 7]}),
                "dns",
                "'dns' must be a list of IP addresses",
            ),
            (
                json!({"name": "a", "colour": "red"}),
                "colour",
                "unknown field 'colour'",
            ),
        ] {
            let e = create_body(v.clone()).expect_err(&v.to_string());
            assert_eq!(e.field.as_deref(), Some(field), "{v}");
            assert!(e.message.contains(message), "{v}: {}", e.message);
        }
        let body = create_body(json!({"name": "a", "role": null, "dns": ["9.9.9.9"]})).unwrap();
        assert_eq!(body.name.unwrap().as_str(), "a");
        assert_eq!(body.role, None);
        assert_eq!(body.dns, vec!["9.9.9.9".parse::<IpAddr>().unwrap()]);
        let e =
            body::decode::<PatchPeer>(json!({"enabled": "yes"}).as_object().unwrap()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("enabled"));
        assert_eq!(e.message, "'enabled' must be true or false");
    }
}
