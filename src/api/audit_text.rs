//! An audit entry as one plain sentence: the `text` of every [`crate::api::view::AuditItem`],
//! which the dashboard's Audit page and `appliance audit` both show (the wording lives here
//! once).
//!
//! Layer: pure. Reads only what the entry holds (action, target, its redacted summary), so it
//! can say nothing a summary does not: secrets stay as redacted as the stored summary. Each
//! known action names what matters (the job's name, an update's changed fields before → after,
//! the peer's name and role); an unknown action, or a summary not of its action's shape, falls
//! back to compact `key: value` text.

use serde_json::{Map, Value};

use crate::model::{AuditAction, JobAction, PeerAction};

/// Longest value shown for one field of an update, in terminal columns (longer ones end in `…`).
const MAX_FIELD_COLUMNS: usize = 80;
/// Longest sentence, in terminal columns (a longer one ends in `…`).
const MAX_TEXT_COLUMNS: usize = 400;

/// The sentence for an entry: what was done, to what, with the fields that matter.
pub fn describe(action: &AuditAction, target: Option<&str>, summary: &Value) -> String {
    let s = summary.as_object();
    let known = match action {
        AuditAction::Peer(a) => s.and_then(|s| peer(*a, target?, s)),
        AuditAction::Job(a) => s.map(|s| job(*a, target, s)),
        AuditAction::RunsClear => s.and_then(|s| {
            let n = s.get("deleted")?.as_u64()?;
            Some(format!(
                "Cleared the run history: {n} finished {} deleted.",
                plural(n, "run", "runs")
            ))
        }),
        AuditAction::HandlerRegister => s.and_then(|s| {
            let methods: Vec<&str> = (s.get("methods")?.as_array()?.iter())
                .map(Value::as_str)
                .collect::<Option<_>>()?;
            let handler = target?;
            Some(match methods.as_slice() {
                [] => format!("Handler {handler} registered no methods."),
                [one] => format!("Handler {handler} registered its method {one}."),
                all => format!(
                    "Handler {handler} registered its methods: {}.",
                    all.join(", ")
                ),
            })
        }),
        AuditAction::ServerEndpoint => s.and_then(|s| {
            Some(format!(
                "Changed the endpoint new configs carry from {} to {}.",
                s.get("from")?.as_str()?,
                s.get("to")?.as_str()?
            ))
        }),
        AuditAction::StoreQuarantine => s.and_then(|s| {
            Some(format!(
                "Moved the damaged row {} into quarantine: {}.",
                target?,
                s.get("reason")?.as_str()?
            ))
        }),
        AuditAction::Denied => s.and_then(|s| denied(s, target)),
        AuditAction::Other(_) => None,
    };
    let text = known.unwrap_or_else(|| fallback(action, target, summary));
    cut(&text, MAX_TEXT_COLUMNS)
}

fn peer(action: PeerAction, name: &str, s: &Map<String, Value>) -> Option<String> {
    let str_of = |k: &str| s.get(k).and_then(Value::as_str);
    Some(match action {
        PeerAction::Add => format!(
            "Added peer {name} as {} at {}.",
            str_of("role")?,
            str_of("address")?
        ),
        PeerAction::Enable => format!("Enabled peer {name}: it may connect again."),
        PeerAction::Disable => format!("Disabled peer {name}: its tunnel stopped."),
        PeerAction::Role => format!("Made peer {name} {}.", str_of("role")?),
        PeerAction::Update => format!(
            "Updated peer {name}: role {}, {}.",
            str_of("role")?,
            if s.get("enabled")?.as_bool()? {
                "enabled"
            } else {
                "disabled"
            }
        ),
        PeerAction::Rotate => format!(
            "Gave peer {name} a new key ({}); the old one no longer connects.",
            str_of("key")?
        ),
        PeerAction::Remove => format!(
            "Removed peer {name}; address {} is free again.",
            str_of("address")?
        ),
    })
}

fn job(action: JobAction, target: Option<&str>, s: &Map<String, Value>) -> String {
    let after = s.get("after").and_then(Value::as_object);
    let name = [Some(s), after]
        .into_iter()
        .flatten()
        .find_map(|o| o.get("name").and_then(Value::as_str))
        .map(|n| format!("job {n}"))
        .or_else(|| target.map(|id| format!("job {id}")))
        .unwrap_or_else(|| "a job".into());
    match action {
        JobAction::Create => format!("Created {name}{}.", what_it_does(s)),
        JobAction::Update => format!("Changed {name}: {}.", changes(s)),
        JobAction::Delete => format!("Deleted {name}."),
        JobAction::Pause => format!("Paused {name}."),
        JobAction::Resume => match s.get("catch_up").and_then(Value::as_bool) {
            Some(true) => format!("Resumed {name}, catching up the runs missed while paused."),
            _ => format!("Resumed {name}."),
        },
        JobAction::Run => match s.get("run").and_then(Value::as_u64) {
            Some(run) => format!("Ran {name} now (run {run})."),
            None => format!("Ran {name} now."),
        },
        JobAction::Test => format!("Sent a test of {name}{}.", what_it_does(s)),
    }
}

/// `": cron 45 19 * * THU (Europe/Berlin), webhook to discord.com"`, or what of it the spec
/// has.
fn what_it_does(spec: &Map<String, Value>) -> String {
    let parts: Vec<String> = [
        spec.get("trigger").map(trigger),
        spec.get("action").map(action),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join(", "))
    }
}

fn trigger(t: &Value) -> String {
    let field = |k: &str| t.get(k).and_then(Value::as_str);
    let zone = field("timezone").map_or(String::new(), |z| format!(" ({z})"));
    if let Some(cron) = field("cron") {
        format!("cron {cron}{zone}")
    } else if let Some(every) = field("every") {
        format!("every {every}")
    } else if let Some(at) = field("at") {
        format!("once at {at}")
    } else {
        compact(t)
    }
}

fn action(a: &Value) -> String {
    if let Some(url) = a.pointer("/webhook/url").and_then(Value::as_str) {
        // The host only: a path can hold a token even where the summary did not redact it.
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        format!("webhook to {host}")
    } else if let Some(h) = a.get("handler") {
        match (
            h.get("method").and_then(Value::as_str),
            h.get("id").and_then(Value::as_str),
        ) {
            (Some(method), Some(id)) => format!("{method} on handler {id}"),
            _ => compact(a),
        }
    } else {
        compact(a)
    }
}

/// An update's changed fields, before → after; only their names when the summary kept only
/// those (`{"changed": [...]}`, a summary cut to fit).
fn changes(s: &Map<String, Value>) -> String {
    let (Some(before), Some(after)) = (
        s.get("before").and_then(Value::as_object),
        s.get("after").and_then(Value::as_object),
    ) else {
        return match s.get("changed").and_then(list) {
            Some(names) => format!("{names} (too large to keep before and after)"),
            None => compact(&Value::Object(without_truncated(s))),
        };
    };
    let mut changed = Vec::new();
    diff("", before, after, &mut changed);
    if changed.is_empty() {
        "nothing differs".into()
    } else {
        changed.join("; ")
    }
}

/// `path before → after` for each field that differs between two objects, `path` dotted
/// down to the innermost field that changed; a trigger or action whose description changed
/// is shown as that description instead (`trigger cron 45 19 * * THU → cron 0 20 * * THU`).
fn diff(
    prefix: &str,
    before: &Map<String, Value>,
    after: &Map<String, Value>,
    out: &mut Vec<String>,
) {
    let mut keys: Vec<&String> = after.keys().chain(before.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (b, a) = (before.get(k), after.get(k));
        if b == a || (prefix.is_empty() && k == "truncated") {
            continue;
        }
        let path = format!("{prefix}{k}");
        let shown = |v: Option<&Value>| match v {
            None => "(none)".to_string(),
            Some(v) => cut(&field_text(&path, v), MAX_FIELD_COLUMNS),
        };
        let (tb, ta) = (shown(b), shown(a));
        match (b, a) {
            (Some(Value::Object(b)), Some(Value::Object(a)))
                if tb == ta || !matches!(path.as_str(), "trigger" | "action") =>
            {
                diff(&format!("{path}."), b, a, out)
            }
            _ => out.push(format!("{path} {tb} → {ta}")),
        }
    }
}

fn field_text(key: &str, v: &Value) -> String {
    match key {
        "trigger" => trigger(v),
        "action" => action(v),
        _ => compact(v),
    }
}

fn denied(s: &Map<String, Value>, target: Option<&str>) -> Option<String> {
    let route = s.get("route").and_then(Value::as_str).or(target)?;
    let mut text = format!(
        "Refused {route} to role {}: {}",
        s.get("role")?.as_str()?,
        s.get("reason")?.as_str()?.trim_end_matches('.')
    );
    match s.get("earlier_attempts_not_logged").and_then(Value::as_u64) {
        Some(n) if n > 0 => text.push_str(&format!(
            " ({n} earlier {} not logged).",
            plural(n, "attempt", "attempts")
        )),
        _ => text.push('.'),
    }
    Some(text)
}

/// Compact `key: value` text for an entry no sentence fits.
fn fallback(action: &AuditAction, target: Option<&str>, summary: &Value) -> String {
    let mut text = action.as_str().to_string();
    if let Some(t) = target {
        text.push(' ');
        text.push_str(t);
    }
    let rest = match summary {
        Value::Object(m) if m.is_empty() => String::new(),
        Value::Null => String::new(),
        Value::Object(m) => compact(&Value::Object(without_truncated(m))),
        v => compact(v),
    };
    if !rest.is_empty() {
        text.push_str(": ");
        text.push_str(&rest);
    }
    text
}

fn without_truncated(m: &Map<String, Value>) -> Map<String, Value> {
    let mut m = m.clone();
    m.remove("truncated");
    m
}

/// A value as a person reads it: strings bare, objects as `key: value, …`, lists as `a, b`
/// (nested ones in braces and brackets).
fn compact(v: &Value) -> String {
    fn go(v: &Value, nested: bool) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Null => "none".into(),
            Value::Array(items) => {
                let inner: Vec<String> = items.iter().map(|i| go(i, true)).collect();
                let inner = inner.join(", ");
                if nested {
                    format!("[{inner}]")
                } else {
                    inner
                }
            }
            Value::Object(m) => {
                let inner: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", go(v, true)))
                    .collect();
                let inner = inner.join(", ");
                if nested {
                    format!("{{{inner}}}")
                } else {
                    inner
                }
            }
            v => v.to_string(),
        }
    }
    go(v, false)
}

fn list(v: &Value) -> Option<String> {
    let items: Option<Vec<&str>> = v.as_array()?.iter().map(Value::as_str).collect();
    Some(items?.join(", "))
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// The columns `s` takes on a terminal: a CJK character or most emoji take two, a combining
/// mark none (Unicode's East Asian Width, as terminals count). Table columns are measured in
/// these, not in characters, so a guild's emoji names keep the table straight.
pub fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// `s` cut to `max` columns ([`width`]), the last one `…` when cut. The one such cut: the
/// CLI's tables use it too (`cli::format::cut`).
pub fn cut(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let room = max.saturating_sub(1);
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > room {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::describe;
    use crate::model::{AuditAction, JobAction, PeerAction};

    fn job(a: JobAction, summary: serde_json::Value) -> String {
        describe(&a.into(), Some("1234567890abcdef"), &summary)
    }

    fn peer(a: PeerAction, summary: serde_json::Value) -> String {
        describe(&a.into(), Some("otto"), &summary)
    }

    fn spec(trigger: serde_json::Value) -> serde_json::Value {
        json!({"name": "raid-reminder", "trigger": trigger, "retry": {"attempts": 3, "backoff": "10s"},
               "action": {"webhook": {"url": "https://discord.com/api/webhooks/123/***",
                                      "headers": {"authorization": "***"}, "body": {"content": "raid!"}}}})
    }

    #[test]
    fn job_actions_read_as_sentences_naming_the_job() {
        let cron = json!({"cron": "45 19 * * THU", "timezone": "Europe/Berlin"});
        assert_eq!(
            job(JobAction::Create, spec(cron.clone())),
            "Created job raid-reminder: cron 45 19 * * THU (Europe/Berlin), webhook to discord.com."
        );
        assert_eq!(
            job(JobAction::Test, spec(json!({"every": "1h"}))),
            "Sent a test of job raid-reminder: every 1h, webhook to discord.com."
        );
        let name = json!({"name": "raid-reminder"});
        assert_eq!(
            job(JobAction::Delete, name.clone()),
            "Deleted job raid-reminder."
        );
        assert_eq!(job(JobAction::Pause, name), "Paused job raid-reminder.");
        assert_eq!(
            job(
                JobAction::Resume,
                json!({"name": "raid-reminder", "catch_up": false})
            ),
            "Resumed job raid-reminder."
        );
        assert_eq!(
            job(
                JobAction::Resume,
                json!({"name": "raid-reminder", "catch_up": true})
            ),
            "Resumed job raid-reminder, catching up the runs missed while paused."
        );
        assert_eq!(
            job(JobAction::Run, json!({"name": "raid-reminder", "run": 42})),
            "Ran job raid-reminder now (run 42)."
        );
        // A summary without the name (an older row): the id the entry targets.
        assert_eq!(
            job(JobAction::Delete, json!({})),
            "Deleted job 1234567890abcdef."
        );
    }

    #[test]
    fn an_update_names_only_the_changed_fields_before_and_after() {
        let before = spec(json!({"cron": "45 19 * * THU", "timezone": "Europe/Berlin"}));
        let mut after = spec(json!({"cron": "0 20 * * THU", "timezone": "Europe/Berlin"}));
        after["paused"] = json!(true);
        after["name"] = json!("raid");
        after["action"]["webhook"]["body"] = json!({"content": "raid now!"});
        assert_eq!(
            job(JobAction::Update, json!({"before": before, "after": after})),
            "Changed job raid: action.webhook.body.content raid! → raid now!; \
             name raid-reminder → raid; paused (none) → true; \
             trigger cron 45 19 * * THU (Europe/Berlin) → cron 0 20 * * THU (Europe/Berlin)."
        );
        // Cut to fit the store's bound: only the names were kept.
        assert_eq!(
            job(
                JobAction::Update,
                json!({"changed": ["action", "name"], "truncated": true})
            ),
            "Changed job 1234567890abcdef: action, name (too large to keep before and after)."
        );
    }

    #[test]
    fn peer_actions_name_the_peer_and_its_role() {
        assert_eq!(
            peer(
                PeerAction::Add,
                json!({"role": "officer", "address": "10.88.88.3", "key": "ab12cd34"})
            ),
            "Added peer otto as officer at 10.88.88.3."
        );
        assert_eq!(
            peer(PeerAction::Disable, json!({"enabled": false})),
            "Disabled peer otto: its tunnel stopped."
        );
        assert_eq!(
            peer(PeerAction::Enable, json!({"enabled": true})),
            "Enabled peer otto: it may connect again."
        );
        assert_eq!(
            peer(PeerAction::Role, json!({"role": "viewer"})),
            "Made peer otto viewer."
        );
        assert_eq!(
            peer(
                PeerAction::Update,
                json!({"role": "admin", "enabled": true})
            ),
            "Updated peer otto: role admin, enabled."
        );
        assert_eq!(
            peer(PeerAction::Rotate, json!({"key": "ab12cd34"})),
            "Gave peer otto a new key (ab12cd34); the old one no longer connects."
        );
        assert_eq!(
            peer(
                PeerAction::Remove,
                json!({"address": "10.88.88.3", "key": "ab12cd34"})
            ),
            "Removed peer otto; address 10.88.88.3 is free again."
        );
    }

    #[test]
    fn server_actions_read_as_sentences() {
        assert_eq!(
            describe(&AuditAction::RunsClear, None, &json!({"deleted": 12})),
            "Cleared the run history: 12 finished runs deleted."
        );
        assert_eq!(
            describe(
                &AuditAction::HandlerRegister,
                Some("discord-bot"),
                &json!({"methods": ["send_message", "kick"]})
            ),
            "Handler discord-bot registered its methods: send_message, kick."
        );
        for (methods, said) in [
            (
                json!(["send_message"]),
                "Handler discord-bot registered its method send_message.",
            ),
            (json!([]), "Handler discord-bot registered no methods."),
        ] {
            let summary = json!({ "methods": methods });
            assert_eq!(
                describe(&AuditAction::HandlerRegister, Some("discord-bot"), &summary),
                said
            );
        }
        assert_eq!(
            describe(
                &AuditAction::ServerEndpoint,
                None,
                &json!({"from": "vm:51820", "to": "vpn.example.org:51820"})
            ),
            "Changed the endpoint new configs carry from vm:51820 to vpn.example.org:51820."
        );
        assert_eq!(
            describe(
                &AuditAction::StoreQuarantine,
                Some("jobs/42"),
                &json!({"reason": "does not decode", "bytes": 12})
            ),
            "Moved the damaged row jobs/42 into quarantine: does not decode."
        );
        assert_eq!(
            describe(
                &AuditAction::Denied,
                Some("DELETE /api/v1/jobs/{id}"),
                &json!({"route": "DELETE /api/v1/jobs/{id}", "role": "viewer",
                        "reason": "viewers may only read.", "earlier_attempts_not_logged": 3})
            ),
            "Refused DELETE /api/v1/jobs/{id} to role viewer: viewers may only read (3 earlier attempts not logged)."
        );
    }

    #[test]
    fn unknown_actions_and_odd_summaries_fall_back_to_key_value_text() {
        assert_eq!(
            describe(
                &AuditAction::Other("job.archive".into()),
                Some("42"),
                &json!({"name": "old", "kept": [1, 2], "truncated": true, "why": {"by": "rule"}})
            ),
            "job.archive 42: kept: [1, 2], name: old, why: {by: rule}"
        );
        assert_eq!(
            describe(&AuditAction::Other("x.y".into()), None, &json!({})),
            "x.y"
        );
        // A known action whose summary lacks what its sentence needs.
        assert_eq!(
            describe(&PeerAction::Add.into(), Some("otto"), &json!({"role": 5})),
            "peer.add otto: role: 5"
        );
        let long = describe(
            &AuditAction::Other("x".into()),
            None,
            &json!({"pad": "y".repeat(1000)}),
        );
        assert_eq!(long.chars().count(), 400);
        assert!(long.ends_with('…'));
    }
}
