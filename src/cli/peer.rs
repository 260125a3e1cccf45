//! `appliance peer add|list|show|role|enable|disable|remove|rotate`.
//!
//! The CLI generates a new client's key pair itself (the private key never reaches the server
//! or its control socket), sends the change to the running server, or applies it to the
//! database when nothing serves, and prints the client config (a QR code on a terminal).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use appliance::control::{ControlFailure, PeerAdded, Request};
use appliance::paths::{DataDir, PrivateFile};
use appliance::registry::{self, PeerUpdateError};
use appliance::server;
use appliance::service::{unix_now, unix_now_ms, PeerView};
use appliance::store::{Actor, PeerChange, PeerRecord, ServerRecord, Store};
use peers::{ClientConfig, Endpoint, Ipv4Net, PeerName, PresharedKey, PrivateKey, PublicKey, Role};

use super::args::{ConfigArgs, PeerCommand};
use super::format::{ago, bytes, date};
use super::{call, fatal, to_value, usage, Failure};

pub fn run(dir: &DataDir, cmd: PeerCommand) -> Result<(), Failure> {
    match cmd {
        PeerCommand::Add { name, role, config } => {
            let name = PeerName::new(&name).map_err(|e| usage(format!("invalid name: {e}")))?;
            let role: Role = role.parse().map_err(usage)?;
            let keys = ClientKeys::new(&config)?;
            let outputs = config.validate()?;
            let req = Request::PeerAdd {
                name: name.to_string(),
                role: role.to_string(),
                public_key: keys.public.to_base64(),
                preshared_key: Some(keys.psk.to_base64()),
                extra_allowed_ips: vec![],
            };
            let add = registry::AddPeer {
                name,
                role,
                public_key: keys.public,
                preshared_key: Some(keys.psk.clone()),
                extra_allowed_ips: vec![],
            };
            let v = call(dir, req, move |store, server| {
                let now = unix_now_ms();
                let rec = store
                    .update_peers(|existing| {
                        let planned = registry::plan_add(existing, server, add, now / 1000);
                        registry::audited(planned, "peer.add", &Actor::local_cli(), now)
                    })
                    .map_err(ControlFailure::from)?;
                Ok(to_value(&PeerAdded::new(&rec, server)))
            })?;
            let added: PeerAdded = serde_json::from_value(v).map_err(fatal)?;
            print_config(&added, keys, &config, outputs)
        }
        PeerCommand::Rotate { name, config } => {
            let name = PeerName::new(&name).map_err(|e| usage(format!("invalid name: {e}")))?;
            let keys = ClientKeys::new(&config)?;
            let outputs = config.validate()?;
            let req = Request::PeerRotate {
                name: name.to_string(),
                public_key: keys.public.to_base64(),
                preshared_key: Some(keys.psk.to_base64()),
            };
            let (public, psk) = (keys.public, keys.psk.clone());
            let v = call(dir, req, move |store, server| {
                let rec = offline_update(store, server, "peer.rotate", |existing, server| {
                    registry::plan_rotate(existing, server, &name, public, Some(psk))
                })?;
                Ok(to_value(&PeerAdded::new(&rec, server)))
            })?;
            let added: PeerAdded = serde_json::from_value(v).map_err(fatal)?;
            eprintln!(
                "rotated the keys of {}: its old config no longer connects",
                added.name
            );
            print_config(&added, keys, &config, outputs)
        }
        PeerCommand::Role { name, role } => {
            let name = PeerName::new(&name).map_err(|e| usage(format!("invalid name: {e}")))?;
            let role: Role = role.parse().map_err(usage)?;
            let req = Request::PeerSetRole {
                name: name.to_string(),
                role: role.to_string(),
            };
            let v = call(dir, req, move |store, server| {
                let rec = offline_update(store, server, "peer.role", |existing, _| {
                    registry::plan_set_role(existing, &name, role)
                })?;
                Ok(to_value(&PeerView::new(&rec, None)))
            })?;
            let view: PeerView = serde_json::from_value(v).map_err(fatal)?;
            println!("peer {} is now {}", view.name, view.role);
            Ok(())
        }
        PeerCommand::Enable { name } => set_enabled(dir, &name, true),
        PeerCommand::Disable { name } => set_enabled(dir, &name, false),
        PeerCommand::Remove { name } => {
            let name = PeerName::new(&name).map_err(|e| usage(format!("invalid name: {e}")))?;
            let req = Request::PeerRemove {
                name: name.to_string(),
            };
            let v = call(dir, req, move |store, server| {
                let rec = offline_update(store, server, "peer.remove", |existing, _| {
                    registry::plan_remove(existing, &name)
                })?;
                Ok(to_value(&PeerView::new(&rec, None)))
            })?;
            let view: PeerView = serde_json::from_value(v).map_err(fatal)?;
            println!(
                "removed peer {} ({}); address {} is free again",
                view.name, view.role, view.address
            );
            Ok(())
        }
        PeerCommand::List { json } => {
            let views = list(dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&views).unwrap());
            } else {
                print_table(&views);
            }
            Ok(())
        }
        PeerCommand::Show { name, json } => {
            let name = PeerName::new(&name).map_err(|e| usage(format!("invalid name: {e}")))?;
            let views = list(dir)?;
            let Some(v) = views.into_iter().find(|v| v.name == name.as_str()) else {
                return Err(usage(format!(
                    "no peer named '{name}' (see `appliance peer list`)"
                )));
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap());
            } else {
                print_one(&v);
            }
            Ok(())
        }
    }
}

fn set_enabled(dir: &DataDir, name: &str, enabled: bool) -> Result<(), Failure> {
    let name = PeerName::new(name).map_err(|e| usage(format!("invalid name: {e}")))?;
    let req = Request::PeerSetEnabled {
        name: name.to_string(),
        enabled,
    };
    let v = call(dir, req, move |store, server| {
        let action = if enabled {
            "peer.enable"
        } else {
            "peer.disable"
        };
        let rec = offline_update(store, server, action, |existing, _| {
            registry::plan_set_enabled(existing, &name, enabled)
        })?;
        Ok(to_value(&PeerView::new(&rec, None)))
    })?;
    let view: PeerView = serde_json::from_value(v).map_err(fatal)?;
    println!(
        "peer {} is {}",
        view.name,
        if view.enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}

fn list(dir: &DataDir) -> Result<Vec<PeerView>, Failure> {
    let v = call(dir, Request::PeerList, |store, _| {
        let stats: std::collections::HashMap<_, _> = store.peer_stats()?.into_iter().collect();
        let views: Vec<PeerView> = store
            .peers()?
            .rows
            .iter()
            .map(|p| PeerView::new(p, stats.get(p.name.as_str())))
            .collect();
        Ok(to_value(&views))
    })?;
    serde_json::from_value(v).map_err(fatal)
}

/// Runs a change to an existing peer directly on the database, audited as the local CLI.
fn offline_update(
    store: &Store,
    server: &ServerRecord,
    action: &str,
    plan: impl FnOnce(&[PeerRecord], &ServerRecord) -> Result<(PeerChange, PeerRecord), PeerUpdateError>,
) -> Result<PeerRecord, ControlFailure> {
    store
        .update_peers(|existing| {
            registry::audited(
                plan(existing, server),
                action,
                &Actor::local_cli(),
                unix_now_ms(),
            )
        })
        .map_err(ControlFailure::from)
}

/// The client's keys: generated here unless the device registered its own public key.
struct ClientKeys {
    private: Option<PrivateKey>,
    public: PublicKey,
    psk: PresharedKey,
}

impl ClientKeys {
    fn new(config: &ConfigArgs) -> Result<ClientKeys, Failure> {
        let (private, public) = match &config.public_key {
            Some(k) => (
                None,
                PublicKey::parse(k).map_err(|e| usage(format!("invalid --public-key: {e}")))?,
            ),
            None => {
                let k = PrivateKey::generate(&mut rand_core::OsRng);
                let p = k.public_key();
                (Some(k), p)
            }
        };
        Ok(ClientKeys {
            private,
            public,
            psk: PresharedKey::generate(&mut rand_core::OsRng),
        })
    }
}

impl ConfigArgs {
    /// Checks every option before any state changes, and prepares the output files (so an
    /// unwritable path fails before the peer exists).
    fn validate(&self) -> Result<Outputs, Failure> {
        if let Some(a) = &self.allowed_ips {
            peers::parse_cidr_list(a).map_err(|e| usage(format!("invalid --allowed-ips: {e}")))?;
        }
        if let Some(e) = &self.endpoint {
            Endpoint::parse(e, server::DEFAULT_LISTEN_PORT)
                .map_err(|e| usage(format!("invalid --endpoint: {e}")))?;
        }
        let prepare = |flag: &str, path: &Option<PathBuf>| {
            path.as_deref()
                .map(|p| PrivateFile::prepare(p).map_err(|e| usage(format!("invalid {flag}: {e}"))))
                .transpose()
        };
        Ok(Outputs {
            out: prepare("--out", &self.out)?,
            qr_png: prepare("--qr-png", &self.qr_png)?,
        })
    }
}

/// Files `add`/`rotate` will write, prepared before anything changes.
struct Outputs {
    out: Option<PrivateFile>,
    qr_png: Option<PrivateFile>,
}

fn print_config(
    added: &PeerAdded,
    keys: ClientKeys,
    args: &ConfigArgs,
    outputs: Outputs,
) -> Result<(), Failure> {
    let server_key = PublicKey::parse(&added.server_public_key).map_err(fatal)?;
    let mut endpoint =
        Endpoint::parse(&added.endpoint, server::DEFAULT_LISTEN_PORT).map_err(fatal)?;
    if let Some(e) = &args.endpoint {
        // Without a port, the override keeps the server's port.
        endpoint = Endpoint::parse(e, endpoint.port).map_err(fatal)?;
    }
    let allowed_ips = match &args.allowed_ips {
        Some(a) => peers::parse_cidr_list(a).map_err(fatal)?,
        None => vec![Ipv4Net::parse(&added.subnet).map_err(fatal)?],
    };
    let registered_own_key = keys.private.is_none();
    let config = ClientConfig {
        private_key: keys.private,
        address: added.address,
        dns: args.dns.clone(),
        mtu: peers::DEFAULT_MTU,
        server_public_key: server_key,
        preshared_key: Some(keys.psk),
        endpoint,
        allowed_ips,
        persistent_keepalive: (args.keepalive > 0).then_some(args.keepalive),
        name: Some(added.name.clone()),
    };
    let text = config.render();
    if let Some(file) = outputs.qr_png {
        let png = peers::render_png(&text).map_err(fatal)?;
        let path = file.dest().to_path_buf();
        file.finish(&png)
            .map_err(|e| fatal(format!("cannot write {}: {e}", path.display())))?;
    }
    match outputs.out {
        Some(file) => {
            let path = file.dest().to_path_buf();
            file.finish(text.as_bytes())
                .map_err(|e| fatal(format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "peer {} ({}) at {}: config written to {}",
                added.name,
                added.role,
                added.address,
                path.display()
            );
        }
        None => {
            let stdout = std::io::stdout();
            let tty = stdout.is_terminal();
            let mut out = stdout.lock();
            if tty {
                super::qr::print(&text, args.show_config, &mut out)?;
            } else {
                out.write_all(text.as_bytes()).map_err(fatal)?;
            }
        }
    }
    if registered_own_key {
        eprintln!(
            "note: the config has no private key; fill in PrivateKey with the device's own key."
        );
    }
    Ok(())
}

fn print_table(views: &[PeerView]) {
    if views.is_empty() {
        println!("no peers yet: add one with `appliance peer add NAME --role admin`");
        return;
    }
    let now = unix_now();
    let rows: Vec<[String; 9]> = views
        .iter()
        .map(|v| {
            [
                v.name.clone(),
                v.role.clone(),
                v.address.to_string(),
                if v.enabled { "yes" } else { "no" }.into(),
                date(v.created_at),
                ago(v.last_handshake, now),
                bytes(v.rx_bytes),
                bytes(v.tx_bytes),
                v.endpoint.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let head = [
        "NAME",
        "ROLE",
        "ADDRESS",
        "ENABLED",
        "CREATED",
        "HANDSHAKE",
        "RX",
        "TX",
        "ENDPOINT",
    ];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(head.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn print_one(v: &PeerView) {
    let now = unix_now();
    println!("name:           {}", v.name);
    println!("role:           {}", v.role);
    println!("address:        {}", v.address);
    println!("allowed IPs:    {}", v.allowed_ips.join(", "));
    println!("public key:     {}", v.public_key);
    println!("enabled:        {}", if v.enabled { "yes" } else { "no" });
    println!("created:        {}", date(v.created_at));
    println!("last handshake: {}", ago(v.last_handshake, now));
    println!("received:       {}", bytes(v.rx_bytes));
    println!("sent:           {}", bytes(v.tx_bytes));
    println!("endpoint:       {}", v.endpoint.as_deref().unwrap_or("-"));
}
