//! `/api/v1/peers`: peer management for admins, with the CLI's rules and live effect.
//!
//! `POST` generates the client key pair on the server and returns the client config and its QR
//! code (SVG) in that one response; the private key is stored nowhere.

use hyper::{Method, StatusCode};
use peers::{ClientConfig, PeerName, PresharedKey, PrivateKey, PublicKey, Role};
use serde_json::{json, Value};

use super::{deny_unknown, ok, ApiError, ApiResult, Ctx, Need};
use crate::registry::{AddPeer, AddPeerError, PeerUpdateError};

pub(super) async fn route(ctx: &Ctx<'_>, method: &Method, rest: &[&str]) -> ApiResult {
    ctx.require(Need::Admin)?;
    match (method, rest) {
        (&Method::GET, []) => ok(json!(ctx
            .service
            .list_peers()
            .await
            .map_err(ApiError::internal)?)),
        (&Method::POST, []) => create(ctx).await,
        (&Method::GET, [name]) => {
            let name = parse_name(name)?;
            let views = ctx.service.list_peers().await.map_err(ApiError::internal)?;
            views
                .into_iter()
                .find(|v| v.name == name.as_str())
                .map(|v| ok(json!(v)))
                .unwrap_or_else(|| Err(not_found(&name)))
        }
        (&Method::PATCH, [name]) => patch(ctx, parse_name(name)?).await,
        (&Method::POST, [name, "rotate"]) => rotate(ctx, parse_name(name)?).await,
        (&Method::DELETE, [name]) => {
            let rec = ctx
                .service
                .remove_peer(parse_name(name)?, ctx.caller.actor())
                .await
                .map_err(update_error)?;
            ok(json!(ctx.service.view(&rec)))
        }
        (_, [] | [_] | [_, "rotate"]) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed here"),
        )),
        _ => Err(ApiError::not_found("no such peer endpoint")),
    }
}

fn parse_name(s: &str) -> Result<PeerName, ApiError> {
    PeerName::new(s).map_err(|e| ApiError::bad_request("name", e.to_string()))
}

/// A device's own key: refused (400 naming `public_key`) when it is not a key a device can
/// have — malformed, a low-order point, or a non-canonical encoding.
fn parse_public_key(s: &str) -> Result<PublicKey, ApiError> {
    PublicKey::parse(s).map_err(|e| ApiError::bad_request("public_key", e.to_string()))
}

fn not_found(name: &PeerName) -> ApiError {
    ApiError::not_found(format!("no peer named '{name}'"))
}

fn str_field<'a>(
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(
            key,
            format!("'{key}' must be a string"),
        )),
    }
}

async fn create(ctx: &Ctx<'_>) -> ApiResult {
    let obj = ctx.object()?;
    deny_unknown(obj, &["name", "role", "public_key", "dns"], "")?;
    let name = parse_name(
        str_field(obj, "name")?
            .ok_or_else(|| ApiError::bad_request("name", "'name' is required"))?,
    )?;
    let role: Role = str_field(obj, "role")?
        .unwrap_or("viewer")
        .parse()
        .map_err(|e: peers::RoleError| ApiError::bad_request("role", e.to_string()))?;
    let (private, public) = match str_field(obj, "public_key")? {
        Some(k) => (None, parse_public_key(k)?),
        None => {
            let k = PrivateKey::generate(&mut rand_core::OsRng);
            let p = k.public_key();
            (Some(k), p)
        }
    };
    let dns = match obj.get("dns") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                    ApiError::bad_request("dns", "'dns' must be a list of IP addresses")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "dns",
                "'dns' must be a list of IP addresses",
            ))
        }
    };
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

/// The client config for a peer's new keys, as text and as a QR code (SVG).
fn client_config(
    ctx: &Ctx<'_>,
    rec: &crate::model::PeerRecord,
    private: Option<PrivateKey>,
    psk: PresharedKey,
    dns: Vec<std::net::IpAddr>,
) -> Result<(String, String), ApiError> {
    let server = &ctx.service.server();
    let config = ClientConfig {
        private_key: private,
        address: rec.address,
        dns,
        mtu: peers::DEFAULT_MTU,
        server_public_key: server.private_key.public_key(),
        preshared_key: Some(psk),
        endpoint: server.endpoint.clone(),
        allowed_ips: vec![server.subnet()],
        persistent_keepalive: Some(25),
        name: Some(rec.name.to_string()),
    };
    let text = config.render();
    let svg = peers::render_svg(&text).map_err(ApiError::internal)?;
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
    let rec = ctx
        .service
        .rotate(
            name,
            private.public_key(),
            Some(psk.clone()),
            ctx.caller.actor(),
        )
        .await
        .map_err(update_error)?;
    let (text, svg) = client_config(ctx, &rec, Some(private), psk, vec![])?;
    ok(json!({"peer": ctx.service.view(&rec), "config": text, "qr_svg": svg}))
}

async fn patch(ctx: &Ctx<'_>, name: PeerName) -> ApiResult {
    let obj = ctx.object()?;
    deny_unknown(obj, &["role", "enabled"], "")?;
    let role = str_field(obj, "role")?
        .map(|r| {
            r.parse::<Role>()
                .map_err(|e| ApiError::bad_request("role", e.to_string()))
        })
        .transpose()?;
    let enabled = match obj.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(ApiError::bad_request(
                "enabled",
                "'enabled' must be true or false",
            ))
        }
    };
    if role.is_none() && enabled.is_none() {
        return Err(ApiError::bad_request(
            "body",
            "give 'role' and/or 'enabled'",
        ));
    }
    let rec = ctx
        .service
        .update_fields(name, role, enabled, ctx.caller.actor())
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
            let e = parse_public_key(key).expect_err(key);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{key}");
            assert_eq!(e.field.as_deref(), Some("public_key"), "{key}");
            assert!(e.message.contains(needle), "{key}: {}", e.message);
        }
        let good = PrivateKey::generate(&mut rand_core::OsRng).public_key();
        assert_eq!(parse_public_key(&good.to_base64()).unwrap(), good);
    }
}
