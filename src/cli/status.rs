//! `appliance status [--json]`: server, peers, jobs and warnings at a glance.
//!
//! While serving, the status comes from the server through the control socket (live peer
//! statistics, the bound socket, uptime); offline it is computed from the database. Both are
//! the same [`status::Report`]; `--json` prints it as documented in docs/design.md.

use appliance::control::Request;
use appliance::paths::DataDir;
use appliance::service::unix_now;
use appliance::status::{self, Report};

use super::format::{ago, bytes};
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
        print!("{}", render(&s));
    }
    Ok(())
}

/// The human form: a header like `wg show`'s interface block, a peer table, jobs, warnings.
pub fn render(s: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let state = match s.server.uptime_s {
        Some(up) => format!("serving for {}", uptime(up)),
        None => "not serving".into(),
    };
    let _ = writeln!(o, "appliance {} ({state})", s.version);
    let _ = writeln!(o, "  public key: {}", s.server.public_key);
    let _ = writeln!(o, "  endpoint:   {}", s.server.endpoint);
    let _ = writeln!(o, "  listening:  udp {}", s.server.listen);
    let _ = writeln!(o, "  tunnel:     {}", s.server.tunnel_address);
    let online = s.peers.iter().filter(|p| p.online).count();
    let _ = writeln!(o, "\npeers: {} ({online} online)", s.peers.len());
    for p in &s.peers {
        let state = match (p.enabled, p.online) {
            (false, _) => "disabled",
            (true, true) => "online",
            (true, false) => "offline",
        };
        let _ = writeln!(
            o,
            "  {:<16} {:<8} {:<15} {:<8} handshake {:<12} rx {:<10} tx {:<10} {}",
            p.name,
            p.role,
            p.address,
            state,
            ago(p.last_handshake, s.now),
            bytes(p.rx_bytes),
            bytes(p.tx_bytes),
            p.endpoint.as_deref().unwrap_or("-")
        );
    }
    let j = &s.jobs;
    let _ = writeln!(
        o,
        "\njobs: {} ({} paused); last 24 h: {} failed, {} missed, {} skipped",
        j.total, j.paused, j.failed_24h, j.missed_24h, j.skipped_24h
    );
    for n in &j.next {
        let _ = writeln!(o, "  next {}  {} ({})", n.at, n.name, n.job);
    }
    if let Some(h) = s.handlers_online {
        let _ = writeln!(o, "handlers online: {h}");
    }
    if !s.warnings.is_empty() {
        let _ = writeln!(o, "\nwarnings:");
        for w in &s.warnings {
            let _ = writeln!(o, "  - {}", w.message);
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
