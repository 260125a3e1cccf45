//! `GET /api/v1/audit`: the audit trail, newest first, for admins.
//!
//! Query: `limit` (1–500, default 50), `cursor` (the `next_cursor` of the previous page),
//! `since` (RFC 3339 time or Unix seconds).

use serde_json::json;

use super::{ok, view, ApiError, ApiResult, Ctx};

/// Parses `since`: RFC 3339 or Unix seconds, into Unix milliseconds. Seconds beyond the
/// latest time representable (year 9999) are refused, never wrapped.
pub fn parse_since(s: &str) -> Result<u64, String> {
    if let Ok(secs) = s.parse::<u64>() {
        let max = jiff::Timestamp::MAX.as_second() as u64;
        return secs
            .checked_mul(1000)
            .filter(|_| secs <= max)
            .ok_or_else(|| {
                format!("{secs} Unix seconds is out of range; give at most {max} (year 9999)")
            });
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond().max(0) as u64)
        .map_err(|e| format!("'{s}' is neither an RFC 3339 time nor Unix seconds: {e}"))
}

pub(super) async fn list(ctx: &Ctx<'_>) -> ApiResult {
    super::deny_unknown_query(ctx, &["limit", "cursor", "since"])?;
    let limit = super::limit_param(ctx, 50, super::MAX_LIMIT)?;
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
    let store = ctx.service.store().clone();
    let entries = tokio::task::spawn_blocking(move || {
        store.audit_page(cursor, since, view::read_limit(limit))
    })
    .await
    .expect("store task does not panic")
    .map_err(|e| ApiError::store(&e))?;
    let (entries, next) = view::page(entries, limit, |e| e.seq.to_string());
    ok(json!({"entries": view::audit_items(entries), "next_cursor": next}))
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_never_wraps() {
        assert_eq!(parse_since("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_since("1970-01-01T00:00:01Z"), Ok(1000));
        // 18446744073709552 * 1000 wraps a u64 to 1_616 ms — January 1970.
        let e = parse_since("18446744073709552").unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        assert!(parse_since(&u64::MAX.to_string()).is_err());
        // Just past jiff's last second is refused too (it could not become a time).
        let last = jiff::Timestamp::MAX.as_second();
        assert!(parse_since(&last.to_string()).is_ok());
        assert!(parse_since(&(last + 1).to_string()).is_err());
    }
}
