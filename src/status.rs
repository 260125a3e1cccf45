//! `appliance status`: the whole appliance at a glance, like `wg show` and `tailscale status`
//! together.
//!
//! Layer: storage reader plus a pure assembly. [`collect`] reads the store (peers, their saved
//! statistics, jobs, the last 24 h of runs) and folds in what only a running server knows
//! ([`Live`]: listen address, uptime, live peer statistics, and the jobs as the scheduler's
//! table knows them, so a serving status reads no job row) and what the host reports
//! ([`HostChecks`]: disk space, clock), and the store's own condition ([`StorageStatus`]:
//! whether writes succeed, damaged and quarantined rows). It reads no clock itself: `now` is
//! passed in. The same [`Report`] is built offline by the CLI and, while serving, by the
//! server for the control socket, so `status --json` has one shape either way.
//!
//! `--json` is a stable interface: fields are only ever added, never renamed or removed.
//! docs/design.md ("Status") documents every field.

use peers::Endpoint;
use serde::{Deserialize, Serialize};

use crate::model::{PeerStats, ServerRecord};
use crate::sched::JobId;
use crate::store::{Store, StoreError};

/// A peer counts as online when its last handshake is at most this old (WireGuard
/// re-handshakes every 2 minutes while traffic flows; keepalives every 25 s keep it flowing).
pub const ONLINE_WITHIN_S: u64 = 180;
/// How many upcoming fires `status` lists.
pub const NEXT_FIRES: usize = 5;
/// Free space below this fraction of the data directory's file system is a warning.
pub const DISK_LOW_FRACTION: f64 = 0.05;

/// The appliance at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Version of this shape (1); bumped only if a field ever has to change meaning.
    pub format: u32,
    /// The appliance version (`CARGO_PKG_VERSION`) that built this status.
    pub version: String,
    /// Whether `appliance serve` is running (the status came through its control socket).
    pub serving: bool,
    /// Unix seconds when the status was taken.
    pub now: u64,
    /// Its identity and where it listens.
    pub server: ServerStatus,
    /// Every stored peer, by name.
    pub peers: Vec<PeerStatus>,
    /// Jobs and their runs.
    pub jobs: JobsStatus,
    /// Handlers holding a lease right now; `null` until the handler queue exists.
    pub handlers_online: Option<u64>,
    /// The database: whether it takes writes, and its damaged rows.
    pub storage: StorageStatus,
    /// Things to look at, each with what to do.
    pub warnings: Vec<Warning>,
}

/// The server's identity and where it listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// The server's WireGuard public key (base64).
    pub public_key: String,
    /// What new client configs put in `Endpoint =`.
    pub endpoint: String,
    /// The bound UDP socket while serving (e.g. `[::]:51820`); offline, the address `serve`
    /// would bind by default.
    pub listen: String,
    /// The server's tunnel address with its prefix, e.g. `10.88.88.1/24`.
    pub tunnel_address: String,
    /// Seconds since `serve` started; `null` offline.
    pub uptime_s: Option<u64>,
    /// The flood guard in front of the UDP socket; `null` offline.
    #[serde(default)]
    pub filter: Option<FilterStatus>,
}

/// The flood guard in front of the UDP socket, while serving.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FilterStatus {
    /// Source addresses whose handshake messages are dropped now (in the kernel's socket
    /// filter; at most 16).
    pub blocked_sources: u64,
    /// Times a flooding source was added to that list since `serve` started.
    pub source_blocks: u64,
    /// Datagrams the kernel dropped on the UDP socket since `serve` started: refused by the
    /// socket filter, a full receive buffer or a bad checksum; `null` where the kernel does
    /// not say.
    pub socket_drops: Option<u64>,
}

/// One peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer's name.
    pub name: String,
    /// `admin`, `officer`, `viewer` or `handler`.
    pub role: String,
    /// Tunnel address.
    pub address: String,
    /// Whether it may connect.
    pub enabled: bool,
    /// A handshake within the last [`ONLINE_WITHIN_S`] seconds.
    pub online: bool,
    /// Unix seconds of the last handshake; `null`: never.
    pub last_handshake: Option<u64>,
    /// Bytes received from it.
    pub rx_bytes: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
    /// The peer's last UDP endpoint (`ip:port`); `null`: never seen.
    pub endpoint: Option<String>,
}

/// Jobs and their runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsStatus {
    /// Stored jobs.
    pub total: usize,
    /// Jobs paused.
    pub paused: usize,
    /// The next [`NEXT_FIRES`] scheduled fires, earliest first.
    pub next: Vec<NextFire>,
    /// Runs scheduled in the last 24 h that failed (after their retries).
    pub failed_24h: usize,
    /// Fires in the last 24 h recorded as missed (downtime beyond the grace).
    pub missed_24h: usize,
    /// Fires in the last 24 h skipped because earlier runs were still going.
    pub skipped_24h: usize,
}

/// The database's condition, as `/api/v1/health` reports it, plus its damaged rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageStatus {
    /// `ok`, or `degraded` while writes fail (a full disk, an I/O error); it clears by itself
    /// once a write succeeds again. Offline always `ok`: the CLI has just opened the file.
    pub state: String,
    /// Why writes fail (the I/O error); `null` while `ok`.
    pub reason: Option<String>,
    /// The reason is a full disk or an exceeded quota.
    pub disk_full: bool,
    /// RFC 3339, UTC: when writes started failing; `null` while `ok`.
    pub since: Option<String>,
    /// Stored rows that fail to decode and are skipped (what `appliance doctor` lists).
    pub damaged_rows: u64,
    /// Rows moved aside by `appliance doctor --quarantine`, their bytes kept.
    pub quarantined_rows: u64,
}

impl StorageStatus {
    /// `damaged`: the running server's count; `None` offline, where the doctor's scan counts.
    fn read(store: &Store, damaged: Option<u64>) -> Result<StorageStatus, StoreError> {
        let health = store.health();
        Ok(StorageStatus {
            state: if health.writable { "ok" } else { "degraded" }.into(),
            reason: health.reason,
            disk_full: health.disk_full,
            since: health
                .since
                .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string()),
            damaged_rows: match damaged {
                Some(n) => n,
                None => store.damaged_rows()?.len() as u64,
            },
            quarantined_rows: store.quarantined_count()?,
        })
    }

    /// The `storage` and `damaged_rows` warnings, each saying what to do.
    fn warnings(&self) -> Vec<Warning> {
        let mut out = Vec::new();
        if self.state != "ok" {
            let since = self.since.as_deref().unwrap_or("a moment ago");
            let reason = self.reason.as_deref().unwrap_or("an I/O error");
            let what = if self.disk_full {
                "free space on the disk holding the data directory"
            } else {
                "check the disk holding the data directory and the log (`journalctl -u appliance`)"
            };
            out.push(Warning {
                code: "storage".into(),
                message: format!(
                    "the database refuses writes since {since} ({reason}), so changes are refused and fires are not recorded: {what}; it recovers by itself once a write succeeds"
                ),
            });
        }
        if self.damaged_rows > 0 {
            out.push(Warning {
                code: "damaged_rows".into(),
                message: format!(
                    "{} stored row(s) are damaged and skipped: run `appliance doctor` to list them and `appliance doctor --quarantine` to move them aside (their bytes are kept)",
                    self.damaged_rows
                ),
            });
        }
        out
    }
}

/// One upcoming fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextFire {
    /// Job id (16 hex digits, as in the API).
    pub job: String,
    /// The job's name.
    pub name: String,
    /// RFC 3339, UTC.
    pub at: String,
}

/// Something to look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    /// `endpoint`, `disk`, `clock`, `storage` (writes fail) or `damaged_rows`.
    pub code: String,
    /// One sentence saying what is wrong and what to do.
    pub message: String,
}

/// What only the running server knows.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// The bound UDP socket, e.g. `[::]:51820`.
    pub listen: String,
    /// Seconds since `serve` started.
    pub uptime_s: u64,
    /// Statistics folded from the router just now, by peer name.
    pub stats: Vec<(String, PeerStats)>,
    /// The flood guard's figures.
    pub filter: FilterStatus,
    /// Damaged rows as the server counts them (the number `/api/v1/health` shows).
    pub damaged_rows: u64,
    /// The jobs as the scheduler's table knows them; `None` reads them from the store.
    pub jobs: Option<JobsGlance>,
}

/// The jobs at a glance: how many, how many paused, and the soonest fires. While serving it
/// comes from the scheduler's job table (`scheduler::Handle::glance`, no job row read);
/// offline from every stored row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobsGlance {
    /// Jobs stored.
    pub total: usize,
    /// Of those, paused.
    pub paused: usize,
    /// The next fires of jobs that are not paused, soonest first (ties by name), at most
    /// [`NEXT_FIRES`]: (job, name, when).
    pub next: Vec<Fire>,
}

impl JobsGlance {
    /// From every stored job that decodes.
    fn read(store: &Store) -> Result<JobsGlance, StoreError> {
        let jobs = store.jobs()?.rows;
        let next = jobs
            .iter()
            .filter(|j| !j.spec.paused)
            .filter_map(|j| Some((j.id, j.spec.name.to_string(), j.next_fire_at?)));
        Ok(JobsGlance {
            total: jobs.len(),
            paused: jobs.iter().filter(|j| j.spec.paused).count(),
            next: soonest(next.collect()),
        })
    }
}

/// A fire listed by `status`: (job, name, when).
pub type Fire = (JobId, String, jiff::Timestamp);

/// The [`NEXT_FIRES`] soonest of `fires`, soonest first, ties by name.
pub fn soonest(mut fires: Vec<Fire>) -> Vec<Fire> {
    fires.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.1.cmp(&b.1)));
    fires.truncate(NEXT_FIRES);
    fires
}

/// What the host reports (probed by the caller, a driver).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostChecks {
    /// Free fraction of the file system holding the data directory, if known.
    pub disk_free: Option<f64>,
    /// Whether the kernel says the clock is synchronised (NTP), if it can tell.
    pub clock_synced: Option<bool>,
}

/// Builds the status from the store, the server record, what the running server knows
/// (`None` offline) and the host checks, as of `now` (Unix seconds).
pub fn collect(
    store: &Store,
    server: &ServerRecord,
    live: Option<Live>,
    host: HostChecks,
    now: u64,
) -> Result<Report, StoreError> {
    let serving = live.is_some();
    let live = live.unwrap_or_else(|| Live {
        listen: format!("[::]:{}", server.listen_port),
        ..Live::default()
    });
    let stats: std::collections::HashMap<String, PeerStats> = if serving {
        live.stats.into_iter().collect()
    } else {
        store.peer_stats()?.into_iter().collect()
    };
    let peers = store
        .peers()?
        .rows
        .iter()
        .map(|p| {
            let s = stats.get(p.name.as_str()).cloned().unwrap_or_default();
            PeerStatus {
                name: p.name.to_string(),
                role: p.role.to_string(),
                address: p.address.to_string(),
                enabled: p.enabled,
                online: p.enabled
                    && s.last_handshake
                        .is_some_and(|t| now.saturating_sub(t) <= ONLINE_WITHIN_S),
                last_handshake: s.last_handshake,
                rx_bytes: s.rx_bytes,
                tx_bytes: s.tx_bytes,
                endpoint: s.endpoint,
            }
        })
        .collect();

    let glance = match live.jobs {
        Some(g) => g,
        None => JobsGlance::read(store)?,
    };
    let next = glance.next.into_iter().map(|(id, name, at)| NextFire {
        job: id.to_string(),
        name,
        at: at.round(jiff::Unit::Second).unwrap_or(at).to_string(),
    });
    let since = jiff::Timestamp::from_second(now.saturating_sub(86_400) as i64)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let last_day = store.run_counts_since(since)?;
    let jobs_status = JobsStatus {
        total: glance.total,
        paused: glance.paused,
        next: next.collect(),
        failed_24h: last_day.failed,
        missed_24h: last_day.missed,
        skipped_24h: last_day.skipped,
    };

    let storage = StorageStatus::read(store, serving.then_some(live.damaged_rows))?;
    let mut warnings = warnings(&server.endpoint, host);
    warnings.extend(storage.warnings());
    Ok(Report {
        format: 1,
        version: env!("CARGO_PKG_VERSION").to_string(),
        serving,
        now,
        server: ServerStatus {
            public_key: server.private_key.public_key().to_base64(),
            endpoint: server.endpoint.to_string(),
            listen: live.listen,
            tunnel_address: server.interface.to_string(),
            uptime_s: serving.then_some(live.uptime_s),
            filter: serving.then_some(live.filter),
        },
        peers,
        jobs: jobs_status,
        handlers_online: None,
        storage,
        warnings,
    })
}

impl Report {
    /// Adds the clock warning when `synced` says the clock is not synchronised and it is not
    /// there yet (the CLI probes the clock itself for a status that came from `serve`).
    pub fn add_clock_check(&mut self, synced: Option<bool>) {
        let host = HostChecks {
            disk_free: None,
            clock_synced: synced,
        };
        for w in host_warnings(host) {
            if !self.warnings.iter().any(|x| x.code == w.code) {
                self.warnings.push(w);
            }
        }
    }
}

fn warnings(endpoint: &Endpoint, host: HostChecks) -> Vec<Warning> {
    let mut out = Vec::new();
    if let Some(message) = crate::server::endpoint_warning(endpoint) {
        out.push(Warning {
            code: "endpoint".into(),
            message,
        });
    }
    out.extend(host_warnings(host));
    out
}

fn host_warnings(host: HostChecks) -> Vec<Warning> {
    let mut out = Vec::new();
    if let Some(free) = host.disk_free.filter(|f| *f < DISK_LOW_FRACTION) {
        out.push(Warning {
            code: "disk".into(),
            message: format!(
                "the disk holding the data directory is {:.0}% free: free some space, or the database cannot record runs",
                free * 100.0
            ),
        });
    }
    if host.clock_synced == Some(false) {
        out.push(Warning {
            code: "clock".into(),
            message: "the system clock is not synchronised, so jobs may fire at the wrong time: enable NTP (`timedatectl set-ntp true`)".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_cover_disk_and_clock_only_when_known_bad() {
        let ep = Endpoint::parse("vpn.example.org", 51820).unwrap();
        assert!(warnings(&ep, HostChecks::default()).is_empty());
        let ok = HostChecks {
            disk_free: Some(0.5),
            clock_synced: Some(true),
        };
        assert!(warnings(&ep, ok).is_empty());
        let bad = HostChecks {
            disk_free: Some(0.01),
            clock_synced: Some(false),
        };
        let codes: Vec<String> = warnings(&ep, bad).into_iter().map(|w| w.code).collect();
        assert_eq!(codes, ["disk", "clock"]);
        let lan = Endpoint::parse("192.168.1.2", 51820).unwrap();
        assert_eq!(warnings(&lan, HostChecks::default())[0].code, "endpoint");
    }

    fn server() -> ServerRecord {
        ServerRecord {
            private_key: peers::PrivateKey::from_bytes([7; 32]),
            listen_port: 51820,
            interface: peers::Ipv4Net::parse("10.88.88.1/24").unwrap(),
            endpoint: Endpoint::parse("vpn.example.org", 51820).unwrap(),
            created_at: 0,
        }
    }

    fn codes(r: &Report) -> Vec<&str> {
        r.warnings.iter().map(|w| w.code.as_str()).collect()
    }

    #[test]
    fn damaged_rows_are_counted_with_a_warning_naming_doctor_until_quarantined() {
        let disk = crate::store::testing::Disk::default();
        let store = disk.store();
        let now = 1_800_000_000;
        let clean = collect(&store, &server(), None, HostChecks::default(), now).unwrap();
        assert_eq!(clean.storage.damaged_rows, 0);
        assert!(codes(&clean).is_empty(), "{:?}", clean.warnings);

        let bad = crate::sched::JobId::from_u64(0xbad).to_string();
        store
            .write_raw_row_for_tests("jobs", &bad, b"\x00{\"spec\": truncated")
            .unwrap();
        let r = collect(&store, &server(), None, HostChecks::default(), now).unwrap();
        assert_eq!(r.storage.state, "ok");
        assert_eq!((r.storage.damaged_rows, r.storage.quarantined_rows), (1, 0));
        assert_eq!(codes(&r), ["damaged_rows"]);
        let message = &r.warnings[0].message;
        assert!(
            message.starts_with("1 stored row(s) are damaged"),
            "{message}"
        );
        assert!(message.contains("`appliance doctor`"), "{message}");
        assert!(
            message.contains("`appliance doctor --quarantine`"),
            "{message}"
        );

        store
            .quarantine_damaged(&crate::model::Actor::local_cli(), 0)
            .unwrap();
        let r = collect(&store, &server(), None, HostChecks::default(), now).unwrap();
        assert_eq!((r.storage.damaged_rows, r.storage.quarantined_rows), (0, 1));
        assert!(codes(&r).is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn a_store_refusing_writes_is_degraded_with_its_reason_until_a_write_succeeds() {
        let disk = crate::store::testing::Disk::default();
        let store = disk.store();
        let now = 1_800_000_000;
        disk.set_failing(true);
        assert!(store.write_raw_row_for_tests("peers", "x", b"{}").is_err());
        // Reads still work, so the status is built, and it says why writes fail.
        let r = collect(&store, &server(), None, HostChecks::default(), now).unwrap();
        assert_eq!(r.storage.state, "degraded");
        assert!(r.storage.disk_full);
        assert!(r.storage.since.is_some());
        let reason = r.storage.reason.as_deref().unwrap();
        assert!(reason.contains("No space left"), "{reason}");
        assert_eq!(codes(&r), ["storage"]);
        let message = &r.warnings[0].message;
        assert!(
            message.starts_with("the database refuses writes since"),
            "{message}"
        );
        assert!(message.contains(reason), "{message}");
        assert!(message.contains("free space on the disk"), "{message}");

        disk.set_failing(false);
        store.recover().unwrap();
        let r = collect(&store, &server(), None, HostChecks::default(), now).unwrap();
        assert_eq!(r.storage.state, "ok");
        assert_eq!(
            (r.storage.reason.as_deref(), r.storage.since.as_deref()),
            (None, None)
        );
        assert!(codes(&r).is_empty(), "{:?}", r.warnings);
    }
}
