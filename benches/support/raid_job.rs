//! The weekly raid reminder that the footprint and scheduler benches and `tests/footprint.rs`
//! store by the thousand: one job body, with the trigger and webhook URL each caller needs.
//! Shared with `#[path]` (each bench and test is its own crate).

use std::sync::Arc;

use appliance::model::JobRecord;
use appliance::sched::{JobId, JobSpec};
use jiff::Timestamp;
use serde_json::{json, Value};

/// The body of raid reminder `i`: a small Discord-style JSON post to `url` on `trigger`.
pub fn raid_reminder(i: usize, trigger: Value, url: &str) -> Value {
    json!({
        "name": format!("raid-reminder-{i}"),
        "trigger": trigger,
        "action": {"webhook": {
            "url": url,
            "body": {"content": "@raiders raid starts at 19:45 Berlin time"}
        }},
        "misfire_grace": "5m",
        "retry": {"attempts": 3, "backoff": "10s"},
        "metadata": {"channel": "announcements"}
    })
}

/// Raid reminder `i` on a weekly Thursday cron at `minute hour` in one of four zones, posting to
/// a public Discord-shaped URL (never called), as a stored record created at `now` by `by`.
#[allow(dead_code)] // the scheduler bench builds bodies only
pub fn weekly_record(i: usize, minute: usize, hour: usize, now: Timestamp, by: &str) -> JobRecord {
    let zone = ["Europe/Berlin", "America/New_York", "UTC", "Asia/Tokyo"][i % 4];
    let body = raid_reminder(
        i,
        json!({"cron": format!("{minute} {hour} * * THU"), "timezone": zone}),
        &format!("https://discord.com/api/webhooks/{i}/not-a-real-token"),
    );
    let spec = JobSpec::from_json(&body, Some(now)).expect("valid job");
    JobRecord {
        id: JobId::from_u64(0x5eed_0000_0000 + i as u64),
        next_fire_at: spec.trigger.next_after(now),
        spec: Arc::new(spec),
        created_at_ms: now.as_millisecond() as u64,
        updated_at_ms: now.as_millisecond() as u64,
        created_by: by.into(),
        paused_at_ms: None,
    }
}
