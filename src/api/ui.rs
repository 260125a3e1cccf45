//! The phone dashboard: one page, its script modules and its stylesheet, compiled into the binary.
//!
//! Layer: API edge (static assets only). Owns the files under `src/api/ui/` and the headers
//! they are served with; the page itself does everything through the JSON API, under the same
//! gate as any other client (identity by tunnel address, same-origin writes). Nothing is
//! fetched from anywhere else: no CDN, no fonts, so the page works on a tunnel that reaches
//! nothing but this appliance. The Content-Security-Policy allows only this origin's script and
//! stylesheet, no inline script, no `eval`, and images only from this origin or `data:` (the
//! QR code of a new peer). The page loads one entry module, `app.js`, which imports the others
//! by relative name (`./dom.js`), so every module is an asset listed in [`ASSETS`]. Before it,
//! one classic script, `boot.js`, watches the entry: when a module fails to load (a phone that
//! changes network mid-load), it reloads once, then says so with a button to try again.

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

/// Everything served under `/assets/`, by name: the loader guard (a classic script), the entry
/// module, the modules it imports (one per concern, see docs/design.md) and the stylesheet. The
/// content type follows the name's extension. A module missing here is a 404 for the browser,
/// which the tests catch.
const ASSETS: &[(&str, &str)] = &[
    ("boot.js", include_str!("ui/boot.js")),
    ("app.js", include_str!("ui/app.js")),
    ("dom.js", include_str!("ui/dom.js")),
    ("state.js", include_str!("ui/state.js")),
    ("api.js", include_str!("ui/api.js")),
    ("health.js", include_str!("ui/health.js")),
    ("format.js", include_str!("ui/format.js")),
    ("confirm.js", include_str!("ui/confirm.js")),
    ("jobs.js", include_str!("ui/jobs.js")),
    ("jobspec.js", include_str!("ui/jobspec.js")),
    ("form.js", include_str!("ui/form.js")),
    ("handlers.js", include_str!("ui/handlers.js")),
    ("members.js", include_str!("ui/members.js")),
    ("audit.js", include_str!("ui/audit.js")),
    ("app.css", include_str!("ui/app.css")),
];

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

/// `GET /assets/{name}`: a script module or the stylesheet.
pub fn asset(name: &str) -> ApiResult {
    let Some(&(_, body)) = ASSETS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<String> = ASSETS.iter().map(|(n, _)| format!("/assets/{n}")).collect();
        return Err(ApiError::not_found(format!(
            "no asset named '{name}'; the dashboard has {}",
            names.join(", ")
        )));
    };
    let content_type = if name.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "text/javascript; charset=utf-8"
    };
    Ok(asset_response(body, content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts that are not modules: the page loads them with a plain `<script src>`, and
    /// nothing imports them.
    const CLASSIC: &[&str] = &["boot.js"];

    /// Every script, modules and classic, by name.
    fn scripts() -> impl Iterator<Item = (&'static str, &'static str)> {
        ASSETS
            .iter()
            .copied()
            .filter(|(name, _)| name.ends_with(".js"))
    }

    /// The script modules, by name.
    fn modules() -> impl Iterator<Item = (&'static str, &'static str)> {
        scripts().filter(|(name, _)| !CLASSIC.contains(name))
    }

    /// What each `import` line of `src` names: `import { a, b } from "./x.js";` gives `x.js`.
    /// Any other form of import (a bare specifier, another directory, a dynamic `import(`) is
    /// an error, so the check below cannot be dodged.
    fn imports(module: &str, src: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        for line in src.lines() {
            let line = line.trim_start();
            if !line.starts_with("import") {
                assert!(
                    !line.contains("import("),
                    "{module}: dynamic import: {line}"
                );
                continue;
            }
            let spec = line
                .split_once(" from \"./")
                .and_then(|(_, rest)| rest.strip_suffix("\";"))
                .unwrap_or_else(|| {
                    panic!("{module}: not `import {{ … }} from \"./x.js\";`: {line}")
                });
            let served = ASSETS
                .iter()
                .find(|(n, _)| *n == spec)
                .unwrap_or_else(|| panic!("{module} imports ./{spec}, which is not in ASSETS"));
            out.push(served.0);
        }
        out
    }

    /// The page loads its entry module and stylesheet from files, never inline, so the CSP can
    /// forbid inline script and style.
    #[test]
    fn page_loads_the_entry_module_and_nothing_inline() {
        assert!(
            INDEX.contains(r#"<script type="module" id="entry" src="/assets/app.js"></script>"#)
        );
        assert!(INDEX.contains(r#"<link rel="stylesheet" href="/assets/app.css">"#));
        for name in CLASSIC {
            assert!(INDEX.contains(&format!(r#"<script src="/assets/{name}"></script>"#)));
        }
        assert_eq!(
            INDEX.matches("<script").count(),
            1 + CLASSIC.len(),
            "only the entry module and the classic scripts"
        );
        // The guard must run before the entry can fail: a plain script placed before it.
        assert!(INDEX.find("/assets/boot.js") < INDEX.find("/assets/app.js"));
        assert!(!INDEX.contains("<style"), "no inline stylesheet");
        assert!(!INDEX.contains(" style="), "no style attributes");
        assert!(!INDEX.contains(" on"), "no inline event handlers");
        assert!(
            !INDEX.contains("//"),
            "the page loads nothing from another origin"
        );
        assert!(!CSP.contains("unsafe"), "{CSP}");
    }

    /// A phone on a slow link would fetch the modules in rounds, one per level of imports
    /// (the entry, its imports, theirs): the page names every module it needs up front, so
    /// they all load in one round beside the entry.
    #[test]
    fn the_page_preloads_every_module_the_entry_imports() {
        for (name, _) in modules().filter(|(n, _)| *n != "app.js") {
            let link = format!(r#"<link rel="modulepreload" href="/assets/{name}">"#);
            assert!(INDEX.contains(&link), "index.html lacks {link}");
        }
        assert_eq!(
            INDEX.matches("modulepreload").count(),
            modules().count() - 1,
            "a preload for a module that is not served"
        );
    }

    /// No module builds markup from strings or code from text: the policy forbids `eval` and
    /// inline script, and API data must never become markup.
    #[test]
    fn no_module_uses_what_the_policy_forbids() {
        for (name, src) in scripts() {
            for banned in [
                "eval(",
                "new Function",
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "setTimeout(\"",
                "setInterval(\"",
            ] {
                assert!(!src.contains(banned), "{name} uses {banned}");
            }
        }
    }

    /// Every module imports only served modules, and every served module is reached from the
    /// entry module: a new file that is not registered, or registered but never loaded, fails.
    #[test]
    fn every_module_is_served_and_reached_from_the_entry() {
        let mut reached = vec!["app.js"];
        let mut i = 0;
        while let Some(&name) = reached.get(i) {
            let src = ASSETS.iter().find(|(n, _)| *n == name).unwrap().1;
            for dep in imports(name, src) {
                if !reached.contains(&dep) {
                    reached.push(dep);
                }
            }
            i += 1;
        }
        for name in CLASSIC {
            assert!(
                !reached.contains(name),
                "{name} is a classic script, not a module"
            );
        }
        for (name, src) in modules() {
            imports(name, src);
            assert!(
                reached.contains(&name),
                "{name} is served but never imported"
            );
        }
    }

    /// Every file under `src/api/ui/` is served (or is the page itself).
    #[test]
    fn every_file_in_the_ui_directory_is_served() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/ui");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                file == "index.html" || ASSETS.iter().any(|(n, _)| *n == file),
                "src/api/ui/{file} is not in ASSETS"
            );
        }
    }

    /// The OpenAPI document's `/assets/{name}` lists exactly the served assets.
    #[test]
    fn openapi_lists_every_asset() {
        let doc: serde_json::Value = serde_json::from_str(crate::api::OPENAPI).unwrap();
        let listed = &doc["paths"]["/assets/{name}"]["parameters"][0]["schema"]["enum"];
        let served: Vec<&str> = ASSETS.iter().map(|(n, _)| *n).collect();
        assert_eq!(*listed, serde_json::json!(served));
    }

    #[test]
    fn assets_are_served_with_the_policy() {
        for (name, _) in ASSETS {
            let r = asset(name).unwrap();
            assert_eq!(r.headers()["content-security-policy"], CSP, "{name}");
            let want = if name.ends_with(".css") {
                "text/css; charset=utf-8"
            } else {
                "text/javascript; charset=utf-8"
            };
            assert_eq!(r.headers()[CONTENT_TYPE], want, "{name}");
        }
        let e = asset("nope.js").unwrap_err();
        assert_eq!(e.status, 404);
        for (name, _) in ASSETS {
            assert!(e.message.contains(&format!("/assets/{name}")), "{name}");
        }
    }
}
