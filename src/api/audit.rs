//! `GET /api/v1/audit`: the audit trail, newest first, for admins.
//!
//! Query: `limit` (1–500, default 50), `cursor` (the `next_cursor` of the previous page),
//! `since` (RFC 3339 time or Unix seconds).

use serde_json::json;

use super::{ok, ApiError, ApiResult, Ctx, Need};

/// Parses `since`: RFC 3339 or Unix seconds, into Unix milliseconds.
pub fn parse_since(s: &str) -> Result<u64, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(secs * 1000);
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond().max(0) as u64)
        .map_err(|e| format!("'{s}' is neither an RFC 3339 time nor Unix seconds: {e}"))
}

pub(super) async fn list(ctx: &Ctx<'_>) -> ApiResult {
    ctx.require(Need::Admin)?;
    super::deny_unknown_query(ctx, &["limit", "cursor", "since"])?;
    let limit = super::limit_param(ctx, 50)?;
    let cursor = ctx
        .query
        .get("cursor")
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                ApiError::bad_request("cursor", "cursor must be a number from next_cursor")
            })
        })
        .transpose()?;
    let since = ctx
        .query
        .get("since")
        .map(|s| parse_since(s).map_err(|m| ApiError::bad_request("since", m)))
        .transpose()?;
    let store = ctx.service.store.clone();
    let mut entries =
        tokio::task::spawn_blocking(move || store.audit_page(cursor, since, limit + 1))
            .await
            .expect("store task does not panic")
            .map_err(|e| ApiError::store(&e))?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next = more
        .then(|| entries.last().map(|e| e.seq.to_string()))
        .flatten();
    ok(json!({"entries": entries, "next_cursor": next}))
}
