//! Handshake admission: which handshake messages get their X25519 work, in what order, and
//! which are answered with a cookie, dropped or blocked — the load policy of the
//! [`tunnel`](super) module docs.
//!
//! Layer: sans-IO core, owned by the [`Router`](super::Router); no socket, no clock (the router
//! hands it `now` in [`Admission::handle_timeout`]). It owns the bounded handshake queue (two
//! lanes: messages with a valid cookie first), this second's count per source address, the
//! blocked sources and the per-second work budget. The router owns the peers: it does the
//! work of the messages [`Admission::next_work`] hands out and sends the cookie replies
//! [`Admission::handle_message`] returns.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::TunnResult;
use boringtun::x25519::PublicKey as XPublic;

use super::{RouterStats, HANDSHAKE_COOKIE, HANDSHAKE_INIT};

/// How often the per-second handshake budgets and per-source counters start over.
pub const RATE_LIMIT_RESET: Duration = Duration::from_secs(1);
/// Handshake messages (initiations, responses, cookie replies) that may wait for their X25519
/// work; beyond it they are dropped (wireguard-go's queue size).
pub const HANDSHAKE_QUEUE: usize = 1024;
/// Waiting handshake messages from which the router is under load (wireguard-go: 1/8).
pub const UNDER_LOAD_QUEUE: usize = HANDSHAKE_QUEUE / 8;
/// How long the router stays under load after the queue was last that long.
pub const UNDER_LOAD_FOR: Duration = Duration::from_secs(1);
/// Handshake messages handled per [`Router::handle_timeout`](super::Router::handle_timeout)
/// (one driver turn): data that arrived meanwhile never waits behind more than this much
/// X25519 work.
pub const HANDSHAKES_PER_TURN: u32 = 8;
/// Handshake messages handled per second at most. A handshake costs a few X25519 operations
/// (tens of microseconds each), so this bounds handshake work to a few percent of one core.
pub const HANDSHAKES_PER_SECOND: u32 = 200;
/// Under load: handshake messages per second a source address may send without a cookie.
pub const QUIET_PER_SOURCE: u32 = 2;
/// Under load: initiations with a valid cookie a source address may send per second, on top of
/// its quiet ones (wireguard-go's per-address limit).
pub const COOKIE_HANDSHAKES_PER_SOURCE: u32 = 20;
/// Under load: cookie replies a source address gets per second; a flood gets no more.
pub const COOKIE_REPLIES_PER_SOURCE: u32 = 4;
/// Under load: handshake messages per second after which a source address is flooding; the
/// rest of its messages that second are dropped on a table lookup, before mac1 or any copy.
pub const FLOODING_PER_SOURCE: u32 =
    2 * (QUIET_PER_SOURCE + COOKIE_HANDSHAKES_PER_SOURCE + COOKIE_REPLIES_PER_SOURCE);
/// Handshake messages with a bad mac1 a source address may send per second, load or not;
/// the rest of its handshake messages that second are dropped on a table lookup, before mac1.
/// A peer configured with a wrong server key retries every few seconds, far below this; a
/// bad-mac1 flood never fills the queue (it fails before it), so it must be counted here.
pub const BAD_MACS_PER_SOURCE: u32 = 8;
/// Source addresses counted per second; further new ones share one counter.
pub const TRACKED_SOURCES: usize = 16_384;
/// Source addresses blocked at a time (the driver's kernel filter holds as many); a further
/// flooding source is still dropped by its count, in userspace.
pub const BLOCKED_SOURCES: usize = 16;
/// How long a flooding source's handshake messages stay blocked after it was last flagged.
/// Once the kernel drops them the router no longer sees the flood, so the block lapses after
/// this and a source that still floods is flagged again within its next few messages.
pub const BLOCK_FOR: Duration = Duration::from_secs(1);

/// Length of a WireGuard cookie reply.
const COOKIE_REPLY_LEN: usize = 64;

/// A handshake message that passed the cheap checks and waits for its X25519 work.
pub(super) struct Pending {
    /// Where it came from.
    pub(super) from: SocketAddr,
    /// The whole message.
    pub(super) datagram: Vec<u8>,
}

/// A cookie reply the router must send back to the message's source.
pub(super) struct CookieReply {
    bytes: [u8; COOKIE_REPLY_LEN],
    len: usize,
}

impl CookieReply {
    /// The message to send.
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// What one source address sent this second (see the module docs).
#[derive(Default, Clone, Copy)]
struct SourceCount {
    /// Handshake messages seen (before any check).
    seen: u32,
    /// Handshake messages whose mac1 was wrong.
    bad_macs: u32,
    handshakes: u32,
    cookie_replies: u32,
}

/// This second's count of a source address (the shared one beyond [`TRACKED_SOURCES`]).
fn source_count<'a>(
    sources: &'a mut HashMap<IpAddr, SourceCount>,
    others: &'a mut SourceCount,
    ip: IpAddr,
) -> &'a mut SourceCount {
    if sources.len() < TRACKED_SOURCES || sources.contains_key(&ip) {
        sources.entry(ip).or_default()
    } else {
        others
    }
}

/// The handshake queue and the load policy; see the module docs.
pub(super) struct Admission {
    /// Always under load: checks mac2 and makes cookie replies.
    cookies: RateLimiter,
    /// Handshake messages with a valid cookie: served first.
    cookie_lane: VecDeque<Pending>,
    /// The other handshake messages, first come first served.
    lane: VecDeque<Pending>,
    sources: HashMap<IpAddr, SourceCount>,
    /// The shared count of sources beyond [`TRACKED_SOURCES`].
    other_sources: SourceCount,
    /// Blocked sources and until when (at most [`BLOCKED_SOURCES`]).
    blocked: Vec<(IpAddr, Instant)>,
    /// Whether `blocked` changed since [`Admission::poll_blocked_sources`] last said.
    blocked_changed: bool,
    /// Handshake messages still allowed this second.
    work_left: u32,
    /// The time of the last [`Admission::handle_timeout`].
    now: Option<Instant>,
    under_load_until: Option<Instant>,
    next_reset: Option<Instant>,
}

impl Admission {
    /// An empty queue for the server's public key (mac2 cookies are keyed by it).
    pub(super) fn new(public: &XPublic) -> Admission {
        Admission {
            cookies: RateLimiter::new(public, 0),
            cookie_lane: VecDeque::new(),
            lane: VecDeque::new(),
            sources: HashMap::new(),
            other_sources: SourceCount::default(),
            blocked: Vec::new(),
            blocked_changed: false,
            work_left: HANDSHAKES_PER_SECOND,
            now: None,
            under_load_until: None,
            next_reset: None,
        }
    }

    /// Screens a handshake message from `from` whose type and length were checked (a
    /// response or cookie reply also names a live peer): drops it on a table lookup (blocked or
    /// flooding source), checks mac1 with the router's `mac1`, then queues it, drops it, or
    /// returns the cookie reply to send. Counts what it did in `stats`.
    pub(super) fn handle_message(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        mac1: &RateLimiter,
        stats: &mut RouterStats,
    ) -> Option<CookieReply> {
        // A blocked or flooding source costs a short scan or one table lookup per message.
        let ip = from.ip();
        if self.blocked.iter().any(|(b, _)| *b == ip) {
            stats.dropped_rate_limited += 1;
            return None;
        }
        let kind = datagram[0];
        let under_load = self.under_load();
        let tracked = self.sources.len() < TRACKED_SOURCES || self.sources.contains_key(&ip);
        let source = source_count(&mut self.sources, &mut self.other_sources, ip);
        source.seen = source.seen.saturating_add(1);
        if (under_load && source.seen > FLOODING_PER_SOURCE)
            || source.bad_macs >= BAD_MACS_PER_SOURCE
        {
            stats.dropped_rate_limited += 1;
            // The shared count of untracked sources is no one address's doing.
            if tracked {
                self.block(ip, stats);
            }
            return None;
        }
        // mac1 (one keyed BLAKE2s) before anything else: only senders that know our public key
        // get further. Cookie replies carry no mac1.
        let mut reply = [0u8; 64];
        if kind != HANDSHAKE_COOKIE && mac1.verify_packet(None, datagram, &mut reply).is_err() {
            source.bad_macs += 1;
            stats.dropped_bad_mac += 1;
            return None;
        }
        self.admit(from, datagram, kind == HANDSHAKE_INIT, stats)
    }

    /// Blocks `ip`'s handshake messages for [`BLOCK_FOR`] from now (the last
    /// [`Admission::handle_timeout`]), if the list has room.
    fn block(&mut self, ip: IpAddr, stats: &mut RouterStats) {
        let Some(now) = self.now else {
            return; // no time yet: the count alone drops it until the first timeout
        };
        if self.blocked.len() < BLOCKED_SOURCES {
            self.blocked.push((ip, now + BLOCK_FOR));
            self.blocked_changed = true;
            stats.source_blocks += 1;
            stats.blocked_sources = self.blocked.len() as u64;
        }
    }

    /// Whether the handshake queue is (or was within [`UNDER_LOAD_FOR`]) long.
    fn under_load(&self) -> bool {
        self.queued() >= UNDER_LOAD_QUEUE
            || matches!((self.now, self.under_load_until), (Some(n), Some(u)) if n < u)
    }

    /// Queues a handshake message that passed mac1, applying the load policy of the module
    /// docs. Only initiations are ever answered with a cookie reply.
    fn admit(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        initiation: bool,
        stats: &mut RouterStats,
    ) -> Option<CookieReply> {
        let under_load = self.under_load();
        let source = source_count(&mut self.sources, &mut self.other_sources, from.ip());
        let lane = if !under_load || source.handshakes < QUIET_PER_SOURCE {
            &mut self.lane
        } else if !initiation {
            stats.dropped_rate_limited += 1;
            return None;
        } else {
            let mut bytes = [0u8; COOKIE_REPLY_LEN];
            let cookie = match self
                .cookies
                .verify_packet(Some(from.ip()), datagram, &mut bytes)
            {
                Ok(_) => None,
                Err(TunnResult::WriteToNetwork(cookie)) => Some(cookie.len()),
                Err(_) => {
                    stats.dropped_rate_limited += 1;
                    return None;
                }
            };
            match cookie {
                None if source.handshakes < QUIET_PER_SOURCE + COOKIE_HANDSHAKES_PER_SOURCE => {
                    &mut self.cookie_lane
                }
                Some(len) if source.cookie_replies < COOKIE_REPLIES_PER_SOURCE => {
                    source.cookie_replies += 1;
                    stats.cookie_replies += 1;
                    return Some(CookieReply { bytes, len });
                }
                _ => {
                    stats.dropped_rate_limited += 1;
                    return None;
                }
            }
        };
        if lane.len() >= HANDSHAKE_QUEUE {
            stats.dropped_handshake_overload += 1;
            return None;
        }
        source.handshakes += 1;
        lane.push_back(Pending {
            from,
            datagram: datagram.to_vec(),
        });
        self.note_queue(stats);
        None
    }

    /// Records load when the queue is long (see [`UNDER_LOAD_QUEUE`]).
    fn note_queue(&mut self, stats: &mut RouterStats) {
        let queued = self.queued();
        stats.handshake_queue = queued as u64;
        if queued >= UNDER_LOAD_QUEUE {
            if let Some(now) = self.now {
                self.under_load_until = Some(now + UNDER_LOAD_FOR);
            }
        }
    }

    /// Advances time: starts the per-second budget and per-source counts over each
    /// [`RATE_LIMIT_RESET`], lets blocks lapse and records load.
    pub(super) fn handle_timeout(&mut self, now: Instant, stats: &mut RouterStats) {
        self.now = Some(now);
        match self.next_reset {
            // The first second began with the router; what came before counts in it.
            None => self.next_reset = Some(now + RATE_LIMIT_RESET),
            Some(t) if now >= t => {
                self.sources.clear();
                self.other_sources = SourceCount::default();
                self.work_left = HANDSHAKES_PER_SECOND;
                self.next_reset = Some(now + RATE_LIMIT_RESET);
            }
            Some(_) => {}
        }
        let before = self.blocked.len();
        self.blocked.retain(|(_, until)| now < *until);
        self.blocked_changed |= self.blocked.len() != before;
        stats.blocked_sources = self.blocked.len() as u64;
        self.note_queue(stats);
    }

    /// The next queued message to do the work of (those with a cookie first), while this
    /// second's budget of [`HANDSHAKES_PER_SECOND`] lasts.
    pub(super) fn next_work(&mut self) -> Option<Pending> {
        if self.work_left == 0 {
            return None;
        }
        let p = self
            .cookie_lane
            .pop_front()
            .or_else(|| self.lane.pop_front())?;
        self.work_left -= 1;
        Some(p)
    }

    /// Handshake messages waiting.
    pub(super) fn queued(&self) -> usize {
        self.cookie_lane.len() + self.lane.len()
    }

    /// The last `now` when messages wait and this second's budget allows more: the router
    /// must call again at once.
    pub(super) fn work_due(&self) -> Option<Instant> {
        if self.queued() > 0 && self.work_left > 0 {
            self.now
        } else {
            None
        }
    }

    /// The next budget reset or lapse of a block.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.next_reset,
            self.blocked.iter().map(|(_, until)| *until).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The blocked sources when the list changed since the last call; see
    /// [`Router::poll_blocked_sources`](super::Router::poll_blocked_sources).
    pub(super) fn poll_blocked_sources(&mut self) -> Option<Vec<IpAddr>> {
        if !std::mem::take(&mut self.blocked_changed) {
            return None;
        }
        Some(self.blocked.iter().map(|(ip, _)| *ip).collect())
    }
}
