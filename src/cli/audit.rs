//! `appliance audit`: the audit trail (who changed what, when, from where), newest first.
//!
//! Each entry is a line saying when and by whom, then its sentence (the API's `text`, worded
//! once in [`appliance::api::audit_text`]) wrapped below it: both fit the terminal (80
//! columns when not on one). `--json` keeps every field in full.

use appliance::api::view::AuditItem;
use appliance::control::Request;
use appliance::paths::DataDir;
use appliance::service::unix_now;

use super::format::{ago, cut, wrap};
use super::{call, fatal, to_value, usage, Failure};

pub fn run(dir: &DataDir, json: bool, since: Option<String>, limit: usize) -> Result<(), Failure> {
    let since_ms = since
        .as_deref()
        .map(|s| {
            let zone = jiff::tz::TimeZone::system();
            super::when::parse("--since", s, jiff::Timestamp::now(), &zone)
        })
        .transpose()
        .map_err(usage)?;
    if limit == 0 {
        return Err(usage("--limit must be at least 1"));
    }
    let req = Request::AuditList {
        before: None,
        since_ms,
        limit,
    };
    let v = call(dir, req, move |store, _| {
        Ok(to_value(&appliance::api::view::audit_items(
            store.audit_page(None, since_ms, limit)?,
        )))
    })?;
    let entries: Vec<AuditItem> = serde_json::from_value(v).map_err(fatal)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries).unwrap());
        return Ok(());
    }
    if entries.is_empty() {
        println!("no audit entries");
    }
    print!(
        "{}",
        render(&entries, unix_now(), super::format::stdout_columns())
    );
    Ok(())
}

/// The entries for a terminal `columns` wide: `#SEQ  AGO  by PEER [KEY] from ENDPOINT` (cut
/// with `…` when longer), then the sentence, indented two spaces and wrapped.
pub fn render(entries: &[AuditItem], now: u64, columns: usize) -> String {
    let mut o = String::new();
    for item in entries {
        let e = &item.entry;
        let who = match (&e.actor.fingerprint, &e.actor.endpoint) {
            (Some(fp), Some(ep)) => format!("{} [{fp}] from {ep}", e.actor.peer),
            (Some(fp), None) => format!("{} [{fp}]", e.actor.peer),
            _ => format!("{} ({})", e.actor.peer, e.actor.via),
        };
        let head = format!("#{}  {}  by {who}", e.seq, ago(Some(e.at_ms / 1000), now));
        o.push_str(&cut(&head, columns));
        o.push('\n');
        let width = columns.saturating_sub(2).max(20);
        for line in wrap(&item.text, width).lines() {
            o.push_str("  ");
            o.push_str(&cut(line, width));
            o.push('\n');
        }
    }
    o
}
