//! The phone dashboard: one page and its script and stylesheet, compiled into the binary.
//!
//! Layer: API edge (static assets only). Owns the three files under `src/api/ui/` and the
//! headers they are served with; the page itself does everything through the JSON API, under
//! the same gate as any other client (identity by tunnel address, same-origin writes). Nothing
//! is fetched from anywhere else: no CDN, no fonts, so the page works on a tunnel that reaches
//! nothing but this appliance. The Content-Security-Policy allows only this origin's script and
//! stylesheet, no inline script, no `eval`, and images only from this origin or `data:` (the
//! QR code of a new peer).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;

use super::{ApiError, ApiResult, Resp};

/// The policy for the page and its assets.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

const INDEX: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

fn asset_response(body: &'static str, content_type: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    r
}

/// `GET /`: the page.
pub fn index() -> Resp {
    asset_response(INDEX, "text/html; charset=utf-8")
}

/// `GET /assets/{name}`: the script or the stylesheet.
pub fn asset(name: &str) -> ApiResult {
    match name {
        "app.js" => Ok(asset_response(APP_JS, "text/javascript; charset=utf-8")),
        "app.css" => Ok(asset_response(APP_CSS, "text/css; charset=utf-8")),
        _ => Err(ApiError::not_found(format!(
            "no asset named '{name}'; the dashboard has /assets/app.js and /assets/app.css"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page loads its script and stylesheet from files, never inline, so the CSP can
    /// forbid inline script and style.
    #[test]
    fn page_has_no_inline_script_or_style() {
        assert!(INDEX.contains(r#"<script src="/assets/app.js" defer></script>"#));
        assert!(INDEX.contains(r#"<link rel="stylesheet" href="/assets/app.css">"#));
        assert_eq!(
            INDEX.matches("<script").count(),
            1,
            "only the external script"
        );
        assert!(!INDEX.contains("<style"), "no inline stylesheet");
        assert!(!INDEX.contains(" style="), "no style attributes");
        assert!(!INDEX.contains(" on"), "no inline event handlers");
        for banned in [
            "eval(",
            "new Function",
            "innerHTML",
            "outerHTML",
            "document.write",
        ] {
            assert!(!APP_JS.contains(banned), "app.js uses {banned}");
        }
        assert!(
            !INDEX.contains("//"),
            "the page loads nothing from another origin"
        );
        assert!(!CSP.contains("unsafe"), "{CSP}");
    }

    #[test]
    fn assets_are_served_with_the_policy() {
        let r = asset("app.js").unwrap();
        assert_eq!(r.headers()["content-security-policy"], CSP);
        assert!(r.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript"));
        assert_eq!(asset("nope.js").unwrap_err().status, 404);
    }
}
