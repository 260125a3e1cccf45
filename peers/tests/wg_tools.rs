//! The rendered config is accepted by the real `wg-quick`: `wg-quick strip` parses it, keeps the
//! lines `wg setconf` consumes and removes the wg-quick-only ones (Address, DNS, MTU).
//!
//! A further test loads the stripped config into a real wireguard-go interface with
//! `wg setconf` and reads it back with `wg showconf`.
//!
//! Needs `wg-quick`, `wg` (wireguard-tools) and `wireguard-go` on PATH, root and /dev/net/tun
//! (wg-quick re-executes itself through sudo otherwise). When one is missing the tests fail
//! under `CI=true` and are skipped with a note elsewhere.

use std::path::{Path, PathBuf};

use std::process::Command;

use peers::{ClientConfig, Endpoint, PresharedKey, PrivateKey, DEFAULT_MTU};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

mod common;

use common::{missing, require, TempDir};

fn wg_quick_available() -> bool {
    require("wg-quick", "the wg-quick strip check")
}

fn strip(config: &ClientConfig, tag: &str) -> String {
    let dir = TempDir::new(tag);
    strip_in(config, &dir)
}

fn strip_in(config: &ClientConfig, dir: &TempDir) -> String {
    let path = dir.path().join("wgtest0.conf");
    std::fs::write(&path, config.render()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = Command::new("wg-quick")
        .arg("strip")
        .arg(&path)
        .output()
        .expect("run wg-quick strip");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "wg-quick strip failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}\nconfig:\n{}",
        out.status,
        config.render()
    );
    stdout
}

fn sample(rng: &mut ChaCha20Rng) -> ClientConfig {
    ClientConfig {
        private_key: Some(PrivateKey::generate(rng)),
        address: "10.88.88.2".parse().unwrap(),
        dns: vec!["1.1.1.1".parse().unwrap(), "9.9.9.9".parse().unwrap()],
        mtu: DEFAULT_MTU,
        server_public_key: PrivateKey::generate(rng).public_key(),
        preshared_key: Some(PresharedKey::generate(rng)),
        endpoint: Endpoint::parse("vpn.example.org:51820", 51820).unwrap(),
        allowed_ips: vec!["10.88.88.0/24".parse().unwrap()],
        persistent_keepalive: Some(25),
        name: Some("alice".into()),
    }
}

#[test]
fn wg_quick_strip_accepts_rendered_config() {
    if !wg_quick_available() {
        return;
    }
    let mut rng = ChaCha20Rng::seed_from_u64(51820);
    let config = sample(&mut rng);
    let stripped = strip(&config, "full");

    let private = config.private_key.as_ref().unwrap().to_base64();
    let psk = config.preshared_key.as_ref().unwrap().to_base64();
    for wanted in [
        "[Interface]".to_owned(),
        "[Peer]".to_owned(),
        format!("PrivateKey = {private}"),
        format!("PublicKey = {}", config.server_public_key),
        format!("PresharedKey = {psk}"),
        "Endpoint = vpn.example.org:51820".to_owned(),
        "AllowedIPs = 10.88.88.0/24".to_owned(),
        "PersistentKeepalive = 25".to_owned(),
    ] {
        assert!(
            stripped.lines().any(|l| l == wanted),
            "missing {wanted:?} in:\n{stripped}"
        );
    }
    for gone in ["Address", "MTU", "DNS"] {
        assert!(
            !stripped.lines().any(|l| l.starts_with(gone)),
            "{gone} survived strip:\n{stripped}"
        );
    }
}

#[test]
fn wg_quick_strip_accepts_placeholder_ipv6_endpoint_config() {
    if !wg_quick_available() {
        return;
    }
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let config = ClientConfig {
        private_key: None,
        dns: vec![],
        preshared_key: None,
        persistent_keepalive: None,
        endpoint: Endpoint::parse("[2001:db8::1]:443", 1).unwrap(),
        ..sample(&mut rng)
    };
    let stripped = strip(&config, "placeholder");
    assert!(stripped
        .lines()
        .any(|l| l == format!("PublicKey = {}", config.server_public_key)));
    assert!(stripped
        .lines()
        .any(|l| l == "Endpoint = [2001:db8::1]:443"));
    assert!(!stripped
        .lines()
        .any(|l| l.starts_with("Address") || l.starts_with("MTU")));
}

/// A wireguard-go process serving one interface, stopped (by its own pid) on drop.
struct WireguardGo {
    child: std::process::Child,
    socket: PathBuf,
}

impl WireguardGo {
    /// Starts wireguard-go for `iface`; `None` (with a note) if it cannot run here.
    fn start(iface: &str) -> Option<WireguardGo> {
        let socket = Path::new("/var/run/wireguard").join(format!("{iface}.sock"));
        let child = Command::new("wireguard-go")
            .arg("-f")
            .arg(iface)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn wireguard-go");
        let mut wg = WireguardGo { child, socket };
        for _ in 0..100 {
            if wg.socket.exists() {
                return Some(wg);
            }
            if let Ok(Some(status)) = wg.child.try_wait() {
                missing(
                    &format!(
                        "wireguard-go could not create {iface} ({status}); it needs root and \
                         /dev/net/tun"
                    ),
                    "the wg setconf check",
                );
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "wireguard-go is running but its control socket {:?} never appeared",
            wg.socket
        );
    }
}

impl Drop for WireguardGo {
    fn drop(&mut self) {
        // SIGTERM lets wireguard-go remove its socket and TUN device; fall back to SIGKILL.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..40 {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.socket);
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn wg(args: &[&str]) -> String {
    let out = Command::new("wg").args(args).output().expect("run wg");
    assert!(
        out.status.success(),
        "wg {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn wg_setconf_loads_stripped_config_into_wireguard_go() {
    if !wg_quick_available() {
        return;
    }
    if !require("wireguard-go", "the wg setconf check") || !require("wg", "the wg setconf check") {
        return;
    }
    let iface = format!("pt{}", std::process::id() % 100_000);
    let Some(_daemon) = WireguardGo::start(&iface) else {
        return;
    };

    let mut rng = ChaCha20Rng::seed_from_u64(1);
    // An IP endpoint, so that `wg setconf` need not resolve a name offline.
    let config = ClientConfig {
        endpoint: Endpoint::parse("[2001:db8::1]:51820", 1).unwrap(),
        allowed_ips: vec![
            "10.88.88.0/24".parse().unwrap(),
            "192.168.0.0/16".parse().unwrap(),
        ],
        ..sample(&mut rng)
    };
    let dir = TempDir::new("setconf");
    let stripped = strip_in(&config, &dir);
    let stripped_path = dir.path().join("stripped.conf");
    std::fs::write(&stripped_path, &stripped).unwrap();
    wg(&["setconf", &iface, stripped_path.to_str().unwrap()]);

    let private = config.private_key.as_ref().unwrap();
    // wireguard-go reports the key clamped; `generate` already clamps, so it comes back intact.
    let shown = wg(&["showconf", &iface]);
    for wanted in [
        format!("PrivateKey = {}", private.to_base64()),
        format!("PublicKey = {}", config.server_public_key),
        format!(
            "PresharedKey = {}",
            config.preshared_key.as_ref().unwrap().to_base64()
        ),
        "Endpoint = [2001:db8::1]:51820".to_owned(),
        "AllowedIPs = 10.88.88.0/24, 192.168.0.0/16".to_owned(),
        "PersistentKeepalive = 25".to_owned(),
    ] {
        assert!(
            shown.lines().any(|l| l == wanted),
            "missing {wanted:?} in wg showconf:\n{shown}"
        );
    }
    // wireguard-go derives the same public key as `PrivateKey::public_key`.
    assert_eq!(
        wg(&["show", &iface, "public-key"]).trim(),
        private.public_key().to_base64()
    );
}
