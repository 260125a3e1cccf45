//! `appliance audit`: the audit trail (who changed what, when, from where), newest first.

use appliance::control::Request;
use appliance::paths::DataDir;

use super::format::date;
use super::{call, fatal, to_value, usage, Failure};

pub fn run(dir: &DataDir, json: bool, since: Option<String>, limit: usize) -> Result<(), Failure> {
    let since_ms = since
        .as_deref()
        .map(appliance::api::parse_since)
        .transpose()
        .map_err(|e| usage(format!("invalid --since: {e}")))?;
    if limit == 0 {
        return Err(usage("--limit must be at least 1"));
    }
    let req = Request::AuditList {
        before: None,
        since_ms,
        limit,
    };
    let v = call(dir, req, move |store, _| {
        Ok(to_value(&appliance::api::view::audit_views(
            store.audit_page(None, since_ms, limit)?,
        )))
    })?;
    let entries: Vec<appliance::api::view::AuditView> = serde_json::from_value(v).map_err(fatal)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries).unwrap());
        return Ok(());
    }
    if entries.is_empty() {
        println!("no audit entries");
    }
    for e in &entries {
        let who = match (&e.actor.fingerprint, &e.actor.endpoint) {
            (Some(fp), Some(ep)) => format!("{} [{fp}] from {ep}", e.actor.peer),
            (Some(fp), None) => format!("{} [{fp}]", e.actor.peer),
            _ => format!("{} ({})", e.actor.peer, e.actor.via),
        };
        println!(
            "{}  #{:<5} {:<14} {:<20} by {}  {}",
            date(e.at_ms / 1000),
            e.seq,
            e.action,
            e.target.as_deref().unwrap_or("-"),
            who,
            e.summary
        );
    }
    Ok(())
}
