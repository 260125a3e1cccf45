//! `appliance status [--json]`: server, peers, jobs and warnings at a glance.
//!
//! While serving, the status comes from the server through the control socket (live peer
//! statistics, the bound socket, uptime); offline it is computed from the database. Both are
//! the same [`status::Report`]; `--json` prints it as documented in docs/design.md.

use appliance::control::Request;
use appliance::paths::DataDir;
use appliance::service::unix_now;
use appliance::status::{self, Report};

use super::format::{ago, cut, hang, table, wrap};
use super::{call, fatal, to_value, Failure};

pub fn run(dir: &DataDir, json: bool) -> Result<(), Failure> {
    let root = dir.root().to_path_buf();
    let v = call(dir, Request::Status, move |store, server| {
        let host = appliance::paths::host_checks(&root);
        Ok(to_value(&status::collect(
            store,
            server,
            None,
            host,
            unix_now(),
        )?))
    })?;
    let mut s: Report = serde_json::from_value(v).map_err(fatal)?;
    if s.serving {
        s.add_clock_check(appliance::paths::clock_synced());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap());
    } else {
        print!("{}", render(&s, super::format::stdout_columns()));
    }
    Ok(())
}

/// The human form for a terminal `columns` wide: a header like `wg show`'s interface block, a
/// peer table, jobs, warnings (wrapped).
pub fn render(s: &Report, columns: usize) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let state = match s.server.uptime_s {
        Some(up) => format!("serving for {}", uptime(up)),
        None => "not serving".into(),
    };
    let _ = writeln!(o, "appliance {} ({state})", s.version);
    let field = |o: &mut String, label: &str, value: &str| o.push_str(&hang(label, value, columns));
    field(&mut o, "  public key: ", &s.server.public_key);
    field(&mut o, "  endpoint:   ", &s.server.endpoint);
    field(
        &mut o,
        "  listening:  ",
        &format!("udp {}", s.server.listen),
    );
    field(&mut o, "  tunnel:     ", &s.server.tunnel_address);
    if let Some(f) = &s.server.filter {
        let dropped = match f.socket_drops {
            Some(n) => format!("; {n} datagrams dropped in the kernel"),
            None => String::new(),
        };
        let guard = format!(
            "{} sources blocked now, {} blocks since start{dropped}",
            f.blocked_sources, f.source_blocks
        );
        field(&mut o, "  flood guard: ", &guard);
    }
    let st = &s.storage;
    let since = match (&st.since, &st.reason) {
        (Some(t), Some(r)) => format!(" since {t}: {r}"),
        _ => String::new(),
    };
    let storage = format!(
        "{}{since}; {} damaged row(s), {} in quarantine",
        st.state, st.damaged_rows, st.quarantined_rows
    );
    field(&mut o, "  storage:    ", &storage);
    let online = s.peers.iter().filter(|p| p.online).count();
    let _ = writeln!(o, "\npeers: {} ({online} online)", s.peers.len());
    if !s.peers.is_empty() {
        // Addresses and traffic: `appliance peer list` and `peer show`.
        let rows: Vec<Vec<String>> = (s.peers.iter())
            .map(|p| {
                let state = match (p.enabled, p.online) {
                    (false, _) => "disabled",
                    (true, true) => "online",
                    (true, false) => "offline",
                };
                vec![
                    p.name.clone(),
                    p.role.clone(),
                    state.into(),
                    ago(p.last_handshake, s.now),
                    p.endpoint.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let head = ["NAME", "ROLE", "STATE", "HANDSHAKE", "ENDPOINT"];
        o.push_str(&table(&head, &rows, &[4, 0], 2, columns));
    }
    let j = &s.jobs;
    let _ = writeln!(
        o,
        "\njobs: {} ({} paused); last 24 h: {} failed, {} missed, {} skipped",
        j.total, j.paused, j.failed_24h, j.missed_24h, j.skipped_24h
    );
    for n in &j.next {
        let next = format!("  next {}  {} ({})", n.at, n.name, n.job);
        let _ = writeln!(o, "{}", cut(&next, columns));
    }
    if let Some(h) = s.handlers_online {
        let _ = writeln!(o, "handlers online: {h}");
    }
    if !s.warnings.is_empty() {
        let _ = writeln!(o, "\nwarnings:");
        for w in &s.warnings {
            let text = wrap(&w.message, columns.saturating_sub(4).max(20));
            let _ = writeln!(o, "  - {}", text.replace('\n', "\n    "));
        }
    }
    o
}

fn uptime(s: u64) -> String {
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} days {} h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appliance::status::{
        FilterStatus, JobsStatus, NextFire, PeerStatus, ServerStatus, StorageStatus, Warning,
    };

    fn report(filter: Option<FilterStatus>) -> Report {
        Report {
            format: 1,
            version: "1.0.0".into(),
            serving: filter.is_some(),
            now: 1_700_000_000,
            server: ServerStatus {
                public_key: "KEY".into(),
                endpoint: "vpn.example.org:51820".into(),
                listen: "[::]:51820".into(),
                tunnel_address: "10.88.88.1/24".into(),
                uptime_s: filter.map(|_| 90),
                filter,
            },
            peers: vec![],
            jobs: JobsStatus {
                total: 0,
                paused: 0,
                next: vec![],
                failed_24h: 0,
                missed_24h: 0,
                skipped_24h: 0,
            },
            handlers_online: None,
            storage: StorageStatus {
                state: "ok".into(),
                reason: None,
                disk_full: false,
                since: None,
                damaged_rows: 0,
                quarantined_rows: 0,
            },
            warnings: vec![],
        }
    }

    #[test]
    fn a_degraded_store_shows_why_and_since_when() {
        let mut r = report(None);
        assert!(render(&r, 80).contains("  storage:    ok; 0 damaged row(s), 0 in quarantine\n"));
        r.storage = StorageStatus {
            state: "degraded".into(),
            reason: Some("No space left on device (os error 28)".into()),
            disk_full: true,
            since: Some("2026-12-02T08:00:00Z".into()),
            damaged_rows: 2,
            quarantined_rows: 1,
        };
        let shown = render(&r, 80);
        assert!(
            shown.contains(
                "  storage:    degraded since 2026-12-02T08:00:00Z: No space left on device (os\n              error 28); 2 damaged row(s), 1 in quarantine\n"
            ),
            "{shown}"
        );
    }

    #[test]
    fn the_flood_guard_shows_under_the_tunnel_while_serving() {
        let serving = render(
            &report(Some(FilterStatus {
                blocked_sources: 3,
                source_blocks: 41,
                socket_drops: Some(120_000),
            })),
            80,
        );
        assert!(
            serving.contains(
                "  tunnel:     10.88.88.1/24\n  flood guard: 3 sources blocked now, 41 blocks since start; 120000 datagrams\n               dropped in the kernel\n"
            ),
            "{serving}"
        );
        let unknown_drops = render(
            &report(Some(FilterStatus {
                socket_drops: None,
                ..FilterStatus::default()
            })),
            80,
        );
        assert!(
            unknown_drops.contains("  flood guard: 0 sources blocked now, 0 blocks since start\n"),
            "{unknown_drops}"
        );
        assert!(!render(&report(None), 80).contains("flood guard"));
    }

    /// A serving appliance with everything shown (peers, the flood guard's kernel drops, a
    /// degraded store, next fires, warnings) fits an 80-column terminal.
    #[test]
    fn a_busy_status_fits_80_columns() {
        let mut r = report(Some(FilterStatus {
            blocked_sources: 12,
            source_blocks: 3_456,
            socket_drops: Some(1_234_567),
        }));
        r.peers = (0..4u64)
            .map(|i| PeerStatus {
                name: format!("guild-member-{i:03}"),
                role: "officer".into(),
                address: format!("10.88.88.{}", 100 + i),
                enabled: i != 3,
                online: i == 0,
                last_handshake: Some(r.now - 3_000 * i),
                rx_bytes: 1 << 30,
                tx_bytes: 1 << 29,
                endpoint: Some(format!("203.113.{}.200:5182{i}", 100 + i)),
            })
            .collect();
        r.jobs.next = vec![NextFire {
            job: "1234567890abcdef".into(),
            name: "raid-reminder-thursday".into(),
            at: "2026-12-03T18:45:00Z".into(),
        }];
        r.storage.state = "degraded".into();
        r.storage.since = Some("2026-12-02T08:00:00Z".into());
        r.storage.reason = Some("No space left on device (os error 28)".into());
        r.warnings = vec![Warning {
            code: "endpoint".into(),
            message: appliance::server::endpoint_warning(
                &peers::Endpoint::parse("192.168.1.20", 51820).unwrap(),
            )
            .unwrap(),
        }];
        let shown = render(&r, 80);
        for line in shown.lines() {
            assert!(line.chars().count() <= 80, "{line:?}\n{shown}");
        }
        for needle in [
            "guild-member-002  officer  offline   1h ago     203.113.102.200:51822",
            "guild-member-003  officer  disabled",
            "1234567",
            "raid-reminder-thursday",
            "run `appliance endpoint",
        ] {
            assert!(shown.contains(needle), "{needle}\n{shown}");
        }
    }
}
