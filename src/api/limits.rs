//! Per-peer limits of the HTTP API: write rate, refused-attempt logging, buffered bytes.
//!
//! Layer: pure core of the API driver. Nothing here reads a clock or does I/O: every decision
//! takes `now` (an [`Instant`] the driver read) as an argument, so the rules are tested under
//! virtual time. Owns [`WriteLimiter`] (a token bucket per peer for state-changing requests),
//! [`DeniedLog`] (which refused privileged attempts get an audit entry: at most one per peer and
//! route per window, the rest counted) and [`BufferBudget`] (request-body bytes held in memory,
//! per peer and in total). Contract: the maps stay bounded — idle entries are dropped as new
//! ones arrive — so a peer cannot grow them without limit.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept in a per-peer map before idle ones are swept.
const SWEEP_AT: usize = 1024;

/// A rate: `per_second` tokens refill each second, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained requests per second (greater than 0).
    pub per_second: f64,
    /// Requests allowed at once after an idle spell (at least 1).
    pub burst: u32,
}

impl Default for Rate {
    fn default() -> Self {
        Rate {
            per_second: 10.0,
            burst: 50,
        }
    }
}

/// Token buckets for state-changing requests, one per peer address.
#[derive(Debug)]
pub struct WriteLimiter {
    rate: Rate,
    buckets: HashMap<Ipv4Addr, (f64, Instant)>,
}

impl WriteLimiter {
    /// A limiter granting `rate` tokens per second per peer, up to its burst.
    pub fn new(rate: Rate) -> WriteLimiter {
        WriteLimiter {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `peer` at `now`: `Ok(())`, or `Err(wait)` — how long until a token
    /// is there again (what `Retry-After` says).
    pub fn check(&mut self, peer: Ipv4Addr, now: Instant) -> Result<(), Duration> {
        let Rate { per_second, burst } = self.rate;
        let burst = f64::from(burst.max(1));
        if self.buckets.len() >= SWEEP_AT {
            // A bucket that would be full again is the same as no bucket.
            let full_after = Duration::from_secs_f64(burst / per_second);
            self.buckets
                .retain(|_, (_, t)| now.saturating_duration_since(*t) < full_after);
        }
        let (tokens, last) = self.buckets.entry(peer).or_insert((burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * per_second;
        *tokens = (*tokens + refill).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_second))
        }
    }
}

/// Whole seconds to put in `Retry-After` for a wait (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Decides which refused privileged attempts are written to the audit trail.
#[derive(Debug)]
pub struct DeniedLog {
    window: Duration,
    /// (peer, route) → (start of the current window, attempts suppressed in it).
    seen: HashMap<(String, String), (Instant, u64)>,
}

impl DeniedLog {
    /// A log admitting one entry per peer and route per `window`.
    pub fn new(window: Duration) -> DeniedLog {
        DeniedLog {
            window,
            seen: HashMap::new(),
        }
    }

    /// A refused attempt by `peer` on `route` at `now`. `Some(n)`: write an audit entry now,
    /// mentioning `n` earlier attempts that were only counted; `None`: only count this one.
    pub fn record(&mut self, peer: &str, route: &str, now: Instant) -> Option<u64> {
        if self.seen.len() >= SWEEP_AT {
            let window = self.window;
            self.seen
                .retain(|_, (t, _)| now.saturating_duration_since(*t) < window);
        }
        match self.seen.get_mut(&(peer.to_string(), route.to_string())) {
            Some((start, suppressed)) if now.saturating_duration_since(*start) < self.window => {
                *suppressed += 1;
                None
            }
            Some((start, suppressed)) => {
                let earlier = *suppressed;
                *start = now;
                *suppressed = 0;
                Some(earlier)
            }
            None => {
                self.seen
                    .insert((peer.to_string(), route.to_string()), (now, 0));
                Some(0)
            }
        }
    }
}

/// The route of a request for [`DeniedLog`]: the method and the path with job ids (16 hex
/// digits) and peer names replaced by placeholders, so a peer probing many ids is one route.
pub fn route_key(method: &str, path: &str) -> String {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut out = String::from(method);
    out.push(' ');
    for (i, s) in segs.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        let placeholder = match (segs.get(2), segs.get(3), i) {
            (Some(&"v1"), Some(&"jobs"), 4) => "{id}",
            (Some(&"v1"), Some(&"peers"), 4) => "{name}",
            _ => s,
        };
        out.push_str(placeholder);
    }
    out
}

/// Request-body bytes held in memory, per peer and in total.
#[derive(Debug)]
pub struct BufferBudget {
    per_peer: u64,
    total: u64,
    held: Mutex<HashMap<Ipv4Addr, u64>>,
    /// Bytes reserved right now, across all peers (exported as a metric).
    pub in_use: AtomicU64,
    /// Requests refused because a budget was exhausted (exported as a metric).
    pub refused: AtomicU64,
}

/// Which budget a reservation did not fit in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The peer already holds its share.
    #[error("this peer already has {held} bytes of request bodies in flight (limit {limit}); wait for its other requests to finish")]
    Peer {
        /// Bytes the peer holds.
        held: u64,
        /// Its share.
        limit: u64,
    },
    /// The appliance as a whole holds its limit.
    #[error("the appliance is holding {held} bytes of request bodies (limit {limit}); retry in a moment")]
    Total {
        /// Bytes held by all peers.
        held: u64,
        /// The total budget.
        limit: u64,
    },
}

/// Bytes reserved by one request; released when dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a BufferBudget,
    peer: Ipv4Addr,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut held = self.budget.held.lock().unwrap();
        if let Some(n) = held.get_mut(&self.peer) {
            *n = n.saturating_sub(self.bytes);
            if *n == 0 {
                held.remove(&self.peer);
            }
        }
        self.budget.in_use.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl BufferBudget {
    /// A budget of `per_peer` bytes for each peer and `total` for all of them.
    pub fn new(per_peer: u64, total: u64) -> BufferBudget {
        BufferBudget {
            per_peer,
            total,
            held: Mutex::new(HashMap::new()),
            in_use: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Reserves `bytes` for a body from `peer`, or says which budget is full.
    pub fn reserve(&self, peer: Ipv4Addr, bytes: u64) -> Result<Reservation<'_>, BudgetError> {
        let mut held = self.held.lock().unwrap();
        let mine = held.get(&peer).copied().unwrap_or(0);
        let all = self.in_use.load(Ordering::Relaxed);
        let refused = if mine + bytes > self.per_peer {
            Some(BudgetError::Peer {
                held: mine,
                limit: self.per_peer,
            })
        } else if all + bytes > self.total {
            Some(BudgetError::Total {
                held: all,
                limit: self.total,
            })
        } else {
            None
        };
        if let Some(e) = refused {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        *held.entry(peer).or_default() += bytes;
        self.in_use.fetch_add(bytes, Ordering::Relaxed);
        Ok(Reservation {
            budget: self,
            peer,
            bytes,
        })
    }
}

/// How long a body of `len` bytes may take to arrive: `timeout` plus the time the slowest
/// accepted client (`min_rate` bytes per second) needs for it.
pub fn body_deadline(len: u64, timeout: Duration, min_rate: u64) -> Duration {
    timeout + Duration::from_secs_f64(len as f64 / min_rate.max(1) as f64)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick an arbitrary origin instant
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 88, 88, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 88, 88, 3);

    #[test]
    fn write_limiter_allows_a_burst_then_the_rate_and_says_when() {
        let t0 = Instant::now();
        let mut l = WriteLimiter::new(Rate {
            per_second: 2.0,
            burst: 3,
        });
        for _ in 0..3 {
            assert!(l.check(A, t0).is_ok());
        }
        let wait = l.check(A, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        assert!(l.check(B, t0).is_ok(), "each peer has its own bucket");
        assert!(l.check(A, t0 + Duration::from_millis(499)).is_err());
        assert!(l.check(A, t0 + Duration::from_millis(1000)).is_ok());
        // Refill never exceeds the burst.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(l.check(A, later).is_ok());
        }
        assert!(l.check(A, later).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn limiter_maps_stay_bounded() {
        let t0 = Instant::now();
        let mut l = WriteLimiter::new(Rate::default());
        let mut d = DeniedLog::new(Duration::from_secs(60));
        for i in 0..5000u32 {
            let now = t0 + Duration::from_secs(u64::from(i) * 10);
            let _ = l.check(Ipv4Addr::from(i), now);
            d.record(&format!("p{i}"), "GET /", now);
        }
        assert!(l.buckets.len() <= SWEEP_AT, "{}", l.buckets.len());
        assert!(d.seen.len() <= SWEEP_AT, "{}", d.seen.len());
    }

    #[test]
    fn denied_attempts_are_logged_once_per_window_and_counted() {
        let t0 = Instant::now();
        let mut d = DeniedLog::new(Duration::from_secs(60));
        assert_eq!(d.record("olga", "GET /api/v1/audit", t0), Some(0));
        for s in 1..=5 {
            assert_eq!(
                d.record("olga", "GET /api/v1/audit", t0 + Duration::from_secs(s)),
                None
            );
        }
        assert_eq!(
            d.record("olga", "POST /api/v1/peers", t0 + Duration::from_secs(6)),
            Some(0),
            "another route is logged"
        );
        assert_eq!(
            d.record("vic", "GET /api/v1/audit", t0 + Duration::from_secs(6)),
            Some(0),
            "another peer is logged"
        );
        assert_eq!(
            d.record("olga", "GET /api/v1/audit", t0 + Duration::from_secs(60)),
            Some(5),
            "the next window's entry carries the count"
        );
    }

    #[test]
    fn routes_fold_ids_and_names() {
        assert_eq!(
            route_key("DELETE", "/api/v1/jobs/00000000000004d2"),
            "DELETE /api/v1/jobs/{id}"
        );
        assert_eq!(
            route_key("POST", "/api/v1/jobs/00000000000004d2/run"),
            "POST /api/v1/jobs/{id}/run"
        );
        assert_eq!(
            route_key("PATCH", "/api/v1/peers/olga"),
            "PATCH /api/v1/peers/{name}"
        );
        assert_eq!(route_key("GET", "/api/v1/audit"), "GET /api/v1/audit");
        assert_eq!(route_key("POST", "/api/v1/jobs"), "POST /api/v1/jobs");
    }

    #[test]
    fn buffer_budget_bounds_each_peer_and_the_total_and_releases() {
        let b = BufferBudget::new(100, 150);
        let r1 = b.reserve(A, 60).unwrap();
        assert_eq!(
            b.reserve(A, 41).unwrap_err(),
            BudgetError::Peer {
                held: 60,
                limit: 100
            }
        );
        let r2 = b.reserve(B, 90).unwrap();
        assert_eq!(
            b.reserve(A, 1).unwrap_err(),
            BudgetError::Total {
                held: 150,
                limit: 150
            }
        );
        assert_eq!(b.in_use.load(Ordering::Relaxed), 150);
        assert_eq!(b.refused.load(Ordering::Relaxed), 2);
        drop(r2);
        let _r3 = b.reserve(A, 40).unwrap();
        drop(r1);
        assert_eq!(b.in_use.load(Ordering::Relaxed), 40);
        assert_eq!(b.held.lock().unwrap().get(&A), Some(&40));
    }

    #[test]
    fn slow_bodies_get_time_in_proportion_to_their_size() {
        let t = Duration::from_secs(10);
        assert_eq!(body_deadline(0, t, 1024), t);
        assert_eq!(body_deadline(64 * 1024, t, 1024), Duration::from_secs(74));
        assert_eq!(body_deadline(100, t, 0), Duration::from_secs(110));
    }
}
