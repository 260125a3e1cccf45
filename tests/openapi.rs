//! The OpenAPI document served at `GET /api/v1/openapi.json` (src/api/openapi.json) must stay
//! in step with the router: every route it serves is documented, nothing else is, and every
//! `$ref` resolves. No network; the document is compiled in exactly as the server embeds it.

use std::collections::BTreeSet;

use serde_json::Value;

const DOC: &str = include_str!("../src/api/openapi.json");

/// Every (method, path) the router serves: the route table itself (src/api/routes.rs), which
/// the router dispatches on.
fn routes() -> Vec<(&'static str, &'static str)> {
    appliance::api::routes::ROUTES
        .iter()
        .map(|r| match r.method {
            "GET" => ("get", r.path),
            "POST" => ("post", r.path),
            "PUT" => ("put", r.path),
            "PATCH" => ("patch", r.path),
            "DELETE" => ("delete", r.path),
            other => panic!("a route with method {other}: teach this test its OpenAPI key"),
        })
        .collect()
}

/// HEAD is served wherever GET is, and documented as its own operation.
fn with_head(routes: &[(&'static str, &'static str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = routes
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    for (m, p) in routes {
        if *m == "get" {
            out.push(("head".to_string(), p.to_string()));
        }
    }
    out
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn doc() -> Value {
    serde_json::from_str(DOC).expect("src/api/openapi.json is valid JSON")
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for key in item.keys() {
            if METHODS.contains(&key.as_str()) {
                out.insert((key.clone(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn is_openapi_3_1_with_the_tunnel_server() {
    let doc = doc();
    let version = doc["openapi"].as_str().expect("openapi is a string");
    assert!(
        version.starts_with("3.1"),
        "openapi is {version}, expected 3.1.x"
    );
    assert_eq!(doc["servers"][0]["url"], "http://10.88.88.1:8888");
    assert!(doc["info"]["title"].is_string());
    assert!(doc["info"]["version"].is_string());
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc = doc();
    let documented = documented(&doc);
    let served: BTreeSet<(String, String)> = with_head(&routes()).into_iter().collect();
    assert_eq!(
        served.len(),
        with_head(&routes()).len(),
        "ROUTES has duplicates"
    );
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(missing.is_empty(), "served but not documented: {missing:?}");
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
}

#[test]
fn every_operation_names_roles_and_has_a_unique_id() {
    let doc = doc();
    let roles = ["admin", "officer", "viewer", "handler"];
    let mut ids = BTreeSet::new();
    for (method, path) in documented(&doc) {
        let op = &doc["paths"][&path][&method];
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
        let allowed = op["x-roles"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path}: no x-roles"));
        assert!(!allowed.is_empty(), "{method} {path}: empty x-roles");
        for r in allowed {
            assert!(
                roles.contains(&r.as_str().unwrap_or("")),
                "{method} {path}: role {r}"
            );
        }
        assert!(
            op["responses"]
                .as_object()
                .is_some_and(|r| r.keys().any(|k| k.starts_with('2'))),
            "{method} {path}: no success response"
        );
    }
}

#[test]
fn path_templates_declare_their_parameters() {
    let doc = doc();
    let params = &doc["components"]["parameters"];
    let resolve = |p: &Value| -> Value {
        match p["$ref"].as_str() {
            Some(r) => params[r.rsplit('/').next().unwrap()].clone(),
            None => p.clone(),
        }
    };
    for (path, item) in doc["paths"].as_object().unwrap() {
        let wanted: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let mut declared = BTreeSet::new();
            for list in [&item["parameters"], &op["parameters"]] {
                for p in list.as_array().into_iter().flatten() {
                    let p = resolve(p);
                    if p["in"] == "path" {
                        assert_eq!(
                            p["required"], true,
                            "{method} {path}: path parameter not required"
                        );
                        declared.insert(p["name"].as_str().unwrap().to_string());
                    }
                }
            }
            let declared: BTreeSet<&str> = declared.iter().map(String::as_str).collect();
            assert_eq!(declared, wanted, "{method} {path}: path parameters");
        }
    }
}

fn collect_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$ref" {
                    out.push(v.as_str().expect("$ref is a string"));
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_ref_resolves() {
    let doc = doc();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{r}: only local references are used"));
        assert!(
            pointer.starts_with("/components/"),
            "{r}: references point into components"
        );
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

#[test]
fn the_named_components_exist() {
    let doc = doc();
    for name in [
        "Error",
        "Job",
        "JobInput",
        "JobPatch",
        "Trigger",
        "Webhook",
        "Retry",
        "Run",
        "RunStatus",
        "Peer",
        "PeerInput",
        "PeerPatch",
        "PeerCreated",
        "AuditEntry",
        "Actor",
        "Health",
        "Whoami",
        "Stats",
        "Duration",
        "Endpoint",
        "EndpointInput",
    ] {
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "components.schemas.{name} is missing"
        );
    }
}

#[test]
fn every_route_has_its_own_metrics_label() {
    // `GET /metrics` labels requests by route template; each served route must map to its own
    // documented template (and an unknown path to `other`), or the labels drift from the API.
    for (_, path) in routes() {
        let concrete = path
            .replace("{name}", "alice")
            .replace("{id}", "00000000000000ff");
        assert_eq!(
            appliance::api::route_template(&concrete),
            path,
            "{concrete}"
        );
    }
    assert_eq!(appliance::api::route_template("/no/such/thing"), "other");
}
