//! Interop: operating a headless appliance (issue #11) through the real wireguard-go tunnel.
//!
//! - A backup taken while 200 job creates run through the tunnel holds every create that was
//!   answered 201 before `appliance backup` started; restored into an empty data directory, the
//!   appliance serves them under the same server key (the same wg-quick config reconnects).
//! - A real Prometheus (Debian's `prometheus`) is just a peer with the viewer role: inside the
//!   test's namespace it scrapes `http://10.88.88.1:8888/metrics` every second through
//!   wireguard-go; its `up` is 1 and the appliance's series are in its database.
//!   `promtool check metrics` passes on a scraped body.
//! - `sudo appliance restore` into a directory owned by a service user leaves a database that
//!   user owns.
//!
//! Needs root and the packages `scripts/test.sh` installs (`prometheus` for the second test):
//! SKIP without them, FAIL under `CI=true`. Every address used is inside the test's own
//! namespace (the tunnel, and Prometheus on 127.0.0.1 there).
// A driver in STYLE.md's sense: it runs real processes against wall-clock deadlines.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

use common::cli::server_key;

/// Every job name the API lists (200 fit in one page of 500).
fn job_names(ns: &Netns) -> BTreeSet<String> {
    let (status, body) = call(ns, "GET", "/api/v1/jobs?limit=500", None, &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body["next_cursor"].is_null(), "more than one page: {body}");
    body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_backup_during_200_tunnelled_creates_holds_every_acknowledged_one_and_restores() {
    if !require_prereqs() {
        return;
    }
    const CREATES: usize = 200;
    const WORKERS: usize = 4;
    let ns = Netns::new("opsbk");
    // 200 creates as fast as 4 workers can send: well over the default write rate (10/s,
    // burst 50), whose 429s would only test the limiter, not the backup.
    let mut app = Appliance::init(&ns, &[]);
    app.serve_with(&["--write-rate", "10000", "--write-burst", "10000"]);
    let config = app.peer_add("ops", "officer");
    let key_in_config = config_value(&config, "PublicKey").expect("config names the server");
    let _client = connect(&ns, &app, &config);

    // (name, status, when curl returned): a 201 means committed before the answer left.
    let done: Arc<Mutex<Vec<(String, u16, Instant)>>> = Arc::default();
    let backup_file = unique_temp_dir("opsbk-backup").join("during.redb");
    let (started_backup_at, backup_out) = std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (ns, done) = (&ns, done.clone());
            s.spawn(move || {
                for i in (w..CREATES).step_by(WORKERS) {
                    let name = format!("job-{i:03}");
                    let body = json!({
                        "name": name,
                        // Paused: it never fires, so nothing is ever sent anywhere (and the
                        // namespace has no route out). A host name passes the create-time
                        // destination check, which only judges literal addresses.
                        "trigger": {"cron": "0 0 1 1 *"},
                        "paused": true,
                        "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/t"}},
                    });
                    let (status, _) = call(ns, "POST", "/api/v1/jobs", Some(&body), &[]);
                    done.lock().unwrap().push((name, status, Instant::now()));
                }
            });
        }
        // Back up in the middle of the stream.
        assert!(
            wait_until(Duration::from_secs(120), || done.lock().unwrap().len()
                >= CREATES / 3),
            "creates are too slow: {} done",
            done.lock().unwrap().len()
        );
        let started = Instant::now();
        (started, app.run(&["backup", backup_file.to_str().unwrap()]))
    });
    assert!(
        backup_out.status.success(),
        "backup while serving failed: {}",
        describe(&backup_out)
    );
    let backup_key = server_key(&String::from_utf8_lossy(&backup_out.stdout));
    assert_eq!(backup_key, key_in_config);
    let done = done.lock().unwrap().clone();
    assert_eq!(done.len(), CREATES);
    let failed: Vec<_> = done.iter().filter(|(_, s, _)| *s != 201).collect();
    assert!(failed.is_empty(), "creates not answered 201: {failed:?}");
    let before: BTreeSet<String> = done
        .iter()
        .filter(|(_, _, at)| *at < started_backup_at)
        .map(|(n, _, _)| n.clone())
        .collect();
    assert!(before.len() >= CREATES / 3, "{}", before.len());
    assert!(
        before.len() < CREATES,
        "the backup ran after every create; the test proves nothing"
    );
    let all: BTreeSet<String> = done.iter().map(|(n, _, _)| n.clone()).collect();
    assert_eq!(job_names(&ns), all, "the live appliance has every create");

    // Restore into an empty data directory and serve it: same key, so the same config works.
    app.stop();
    let data = app.data_dir().to_path_buf();
    let old = data.with_file_name("data.before");
    std::fs::rename(&data, &old).unwrap();
    let restore = app.run(&["restore", backup_file.to_str().unwrap()]);
    assert!(restore.status.success(), "{}", describe(&restore));
    assert_eq!(
        server_key(&String::from_utf8_lossy(&restore.stdout)),
        key_in_config
    );
    app.serve();
    wait_api(&ns, &app);
    let restored = job_names(&ns);
    let missing: Vec<_> = before.difference(&restored).collect();
    assert!(
        missing.is_empty(),
        "answered 201 before the backup started but not in it: {missing:?}"
    );
    assert!(restored.is_subset(&all), "{restored:?}");
    println!(
        "backup during creates: {} answered before it started, {} in the backup, {CREATES} in all",
        before.len(),
        restored.len()
    );
    let _ = std::fs::remove_dir_all(backup_file.parent().unwrap());
}

// ---------------------------------------------------------------------------------------------
// Prometheus

/// `prometheus` and `promtool` on PATH, with the same SKIP / CI rules as the other tools.
fn prometheus_present() -> bool {
    require_tools(
        &["prometheus", "promtool"],
        "Debian package prometheus; scripts/test.sh installs it",
    )
}

/// A Prometheus server inside a namespace, on 127.0.0.1:PORT there. Killed on drop.
struct Prometheus {
    dir: PathBuf,
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(ns: &Netns, port: u16) -> Prometheus {
        let dir = unique_temp_dir("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: appliance\n    static_configs:\n      \
                 - targets: ['{APPLIANCE_IP}:{API_PORT}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = ns
            .cmd("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        Prometheus { dir, child, port }
    }

    /// Runs an instant query through Prometheus's HTTP API (inside the namespace).
    fn query(&self, ns: &Netns, q: &str) -> Vec<Value> {
        let out = output_of(
            ns.bounded(15, "curl")
                .args(["-sS", "--max-time", "5", "-G", "--data-urlencode"])
                .arg(format!("query={q}"))
                .arg(format!("http://127.0.0.1:{}/api/v1/query", self.port)),
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    fn log(&self) -> String {
        tail(
            &std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default(),
            30,
        )
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn value_of(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn a_real_prometheus_peer_scrapes_metrics_through_wireguard_go() {
    if !require_prereqs() || !prometheus_present() {
        return;
    }
    let ns = Netns::new("opsprom");
    let app = Appliance::start(&ns);
    let config = app.peer_add("prom", "viewer");
    let _client = connect(&ns, &app, &config);
    // Some traffic for the HTTP series: a 404 and a 200. And one backup while serving.
    assert_eq!(call(&ns, "GET", "/api/v1/nope", None, &[]).0, 404);
    let backup = unique_temp_dir("opsprom-backup").join("b.redb");
    let out = app.run(&["backup", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let _ = std::fs::remove_dir_all(backup.parent().unwrap());

    // The body itself: the right content type, and promtool's linter is happy.
    let r = curl_full(&ns, &api_url("/metrics"), &["-i"]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        r.body
    );
    let (_, body) = curl(&ns, &api_url("/metrics"), &[]);
    for series in [
        "appliance_build_info{version=\"",
        "appliance_peers_online 1",
        "appliance_peer_receive_bytes_total{peer=\"prom\"}",
        "appliance_packets_dropped_total{cause=\"spoofed_source\"} 0",
        "appliance_wireguard_blocked_sources 0",
        "appliance_wireguard_source_blocks_total 0",
        "appliance_udp_socket_drops_total ",
        "appliance_http_requests_total{route=\"other\",method=\"GET\",status=\"404\"} 1",
        "appliance_run_lateness_seconds_bucket{le=\"+Inf\"} 0",
        "appliance_store_commit_duration_seconds_count ",
        "appliance_store_group_commits_total ",
        "appliance_store_group_commit_changes_total ",
        "appliance_webhook_attempts_total{result=\"success\"} 0",
        "appliance_backups_total{result=\"ok\"} 1",
        "appliance_backups_total{result=\"failed\"} 0",
        "appliance_tcp_socket_buffer_resident_bytes ",
        "appliance_tcp_connections_evicted_total 0",
    ] {
        assert!(body.contains(series), "missing {series} in:\n{body}");
    }
    let last_backup: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("appliance_backup_last_success_timestamp_seconds "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(last_backup > 1.0e9, "last backup time: {last_backup}");
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}",
        checked.status,
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A real Prometheus, as a peer: up == 1 and the series are stored.
    let prom = Prometheus::start(&ns, 19090);
    let up = wait_until(Duration::from_secs(40), || {
        prom.query(&ns, "up{job=\"appliance\"}")
            .first()
            .is_some_and(|s| value_of(s) == 1.0)
    });
    assert!(
        up,
        "Prometheus never saw the target up: {:?}\nprometheus log:\n{}\nserve log:\n{}",
        prom.query(&ns, "up"),
        prom.log(),
        app.log_tail(30)
    );
    let scraped = wait_until(Duration::from_secs(15), || {
        prom.query(
            &ns,
            "appliance_http_requests_total{route=\"/metrics\",status=\"200\"}",
        )
        .first()
        .is_some_and(|s| value_of(s) >= 2.0)
    });
    assert!(scraped, "Prometheus's own scrapes are not counted");
    for (q, check) in [
        ("appliance_peers_online", 1.0),
        ("appliance_peers", 1.0),
        ("appliance_build_info", 1.0),
    ] {
        let got = prom.query(&ns, q);
        assert_eq!(
            got.first().map(value_of),
            Some(check),
            "{q}: {got:?}\n{}",
            prom.log()
        );
    }
    let rx = prom.query(&ns, "appliance_peer_receive_bytes_total{peer=\"prom\"}");
    assert!(
        rx.first().is_some_and(|s| value_of(s) > 0.0),
        "per-peer bytes: {rx:?}"
    );
    let lat = prom.query(
        &ns,
        "appliance_http_request_duration_seconds_count{route=\"/metrics\"}",
    );
    assert!(lat.first().is_some_and(|s| value_of(s) >= 1.0), "{lat:?}");

    // Viewers and up only: the same peer demoted to handler is refused, naming the roles.
    let demoted = app.run(&["peer", "role", "prom", "handler"]);
    assert!(demoted.status.success(), "{}", describe(&demoted));
    let (status, err) = call(&ns, "GET", "/metrics", None, &[]);
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["error"]["code"], "forbidden_role", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("viewer, officer or admin"),
        "{err}"
    );
}

/// `sudo appliance restore` into the data directory of a service running as its own user
/// (systemd's `DynamicUser=`): the restored database belongs to the directory's owner, or the
/// service could not open it. Needs root (only root can give a file away).
#[test]
fn a_restore_as_root_gives_the_database_the_data_directory_owner() {
    use std::os::unix::fs::MetadataExt as _;
    if !require_prereqs() {
        return;
    }
    let base = unique_temp_dir("opsown");
    let run = |data: &std::path::Path, args: &[&str]| {
        output_of(
            bounded(CMD_TIMEOUT_S, appliance_bin())
                .arg("--data-dir")
                .arg(data)
                .args(args),
        )
    };
    let src = base.join("src");
    let out = run(&src, &["init"]);
    assert!(out.status.success(), "{}", describe(&out));
    let backup = base.join("b.redb");
    let out = run(&src, &["backup", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));

    let data = base.join("service-data");
    std::fs::create_dir(&data).unwrap();
    // The service's user: any unprivileged id will do.
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let out = run(&data, &["restore", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let db = std::fs::metadata(data.join("appliance.redb")).unwrap();
    assert_eq!((db.uid(), db.gid()), (65534, 65534));
    assert_eq!(db.mode() & 0o777, 0o600);
    let _ = std::fs::remove_dir_all(&base);
}
