//! `appliance peer add|list|show|role|enable|disable|remove|rotate`.
//!
//! The CLI generates a new client's key pair itself (the private key never reaches the server
//! or its control socket), sends the change to the running server, or — when nothing serves —
//! runs the same [`PeerOps`] on the database (nothing is made live then: `serve` loads the
//! stored peers), and prints the client config (a QR code on a terminal).

use std::io::Write;
use std::path::PathBuf;

use appliance::control::{ControlFailure, PeerAdded, Request};
use appliance::model::{Actor, PeerRecord, ServerRecord};
use appliance::paths::{DataDir, PrivateFile};
use appliance::peer_ops::{client_config, ConfigOptions, PeerOps};
use appliance::registry::{AddPeer, PeerUpdate};
use appliance::server;
use appliance::service::{unix_now, unix_now_ms, PeerView};
use peers::{ClientConfig, Endpoint, PeerName, PresharedKey, PrivateKey, PublicKey, Role};

use super::args::{ConfigArgs, PeerCommand};
use super::format::{ago, bytes, date, table};
use super::{call, fatal, to_value, usage, Failure};

pub fn run(dir: &DataDir, cmd: PeerCommand) -> Result<(), Failure> {
    match cmd {
        PeerCommand::Add { name, role, config } => {
            let name = parse_name(&name)?;
            let role: Role = role.parse().map_err(usage)?;
            let keys = ClientKeys::new(&config)?;
            let prepared = config.validate()?;
            let as_image = format!("appliance peer add {name} --role {role} --qr-png {name}.png");
            let qr = super::qr::before_change(dir, &keys, &config, "nothing was added", &as_image)?;
            let add = AddPeer {
                name,
                role,
                public_key: keys.public,
                preshared_key: Some(keys.psk.clone()),
                extra_allowed_ips: vec![],
            };
            let req = Request::PeerAdd {
                name: add.name.clone(),
                role,
                public_key: add.public_key,
                preshared_key: add.preshared_key.clone(),
                extra_allowed_ips: vec![],
            };
            let v = call(dir, req, move |store, server| {
                let actor = Actor::local_cli();
                let applied = PeerOps::new(store, server, &actor, unix_now_ms()).add(add)?;
                Ok(to_value(&PeerAdded::new(&applied.record, server)))
            })?;
            let added: PeerAdded = serde_json::from_value(v).map_err(fatal)?;
            print_config(&added, keys, &config, prepared, qr)
        }
        PeerCommand::Rotate { name, config } => {
            let name = parse_name(&name)?;
            let keys = ClientKeys::new(&config)?;
            let prepared = config.validate()?;
            let as_image = format!("appliance peer rotate {name} --qr-png {name}.png");
            let qr =
                super::qr::before_change(dir, &keys, &config, "no keys were changed", &as_image)?;
            let req = Request::PeerRotate {
                name: name.clone(),
                public_key: keys.public,
                preshared_key: Some(keys.psk.clone()),
            };
            let op = PeerUpdate::Rotate {
                name,
                public_key: keys.public,
                preshared_key: Some(keys.psk.clone()),
            };
            let v = update(dir, req, op, PeerAdded::new)?;
            let added: PeerAdded = serde_json::from_value(v).map_err(fatal)?;
            eprintln!(
                "rotated the keys of {}: its old config no longer connects",
                added.name
            );
            print_config(&added, keys, &config, prepared, qr)
        }
        PeerCommand::Role { name, role } => {
            let name = parse_name(&name)?;
            let role: Role = role.parse().map_err(usage)?;
            let req = Request::PeerSetRole {
                name: name.clone(),
                role,
            };
            let view = update_view(dir, req, PeerUpdate::SetRole { name, role })?;
            println!("peer {} is now {}", view.name, view.role);
            Ok(())
        }
        PeerCommand::Enable { name } => set_enabled(dir, &name, true),
        PeerCommand::Disable { name } => set_enabled(dir, &name, false),
        PeerCommand::Remove { name } => {
            let name = parse_name(&name)?;
            let req = Request::PeerRemove { name: name.clone() };
            let view = update_view(dir, req, PeerUpdate::Remove { name })?;
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
            let name = parse_name(&name)?;
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

fn parse_name(name: &str) -> Result<PeerName, Failure> {
    PeerName::new(name).map_err(|e| usage(format!("invalid name: {e}")))
}

fn set_enabled(dir: &DataDir, name: &str, enabled: bool) -> Result<(), Failure> {
    let name = parse_name(name)?;
    let req = Request::PeerSetEnabled {
        name: name.clone(),
        enabled,
    };
    let view = update_view(dir, req, PeerUpdate::SetEnabled { name, enabled })?;
    println!(
        "peer {} is {}",
        view.name,
        if view.enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}

/// A change to an existing peer: `req` to the running server, or `op` through [`PeerOps`] on
/// the database, audited as the local CLI. `reply` shapes the offline answer like the
/// server's.
fn update<R: serde::Serialize>(
    dir: &DataDir,
    req: Request,
    op: PeerUpdate,
    reply: impl FnOnce(&PeerRecord, &ServerRecord) -> R,
) -> Result<serde_json::Value, Failure> {
    call(dir, req, move |store, server| {
        let actor = Actor::local_cli();
        let applied = PeerOps::new(store, server, &actor, unix_now_ms())
            .update(op)
            .map_err(ControlFailure::from)?;
        Ok(to_value(&reply(&applied.record, server)))
    })
}

/// [`update`] answered with the peer as it is now (as it was, for a removal).
fn update_view(dir: &DataDir, req: Request, op: PeerUpdate) -> Result<PeerView, Failure> {
    let v = update(dir, req, op, |rec, _| PeerView::new(rec, None))?;
    serde_json::from_value(v).map_err(fatal)
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

/// The client's keys: generated here unless the device registered its own public key.
pub(super) struct ClientKeys {
    pub(super) private: Option<PrivateKey>,
    pub(super) public: PublicKey,
    pub(super) psk: PresharedKey,
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
    fn validate(&self) -> Result<Prepared, Failure> {
        (self.allowed_ips.as_deref())
            .map(peers::parse_cidr_list)
            .transpose()
            .map_err(|e| usage(format!("invalid --allowed-ips: {e}")))?;
        if let Some(e) = &self.endpoint {
            Endpoint::parse(e, server::DEFAULT_LISTEN_PORT)
                .map_err(|e| usage(format!("invalid --endpoint: {e}")))?;
        }
        let prepare = |flag: &str, path: &Option<PathBuf>| {
            path.as_deref()
                .map(|p| PrivateFile::prepare(p).map_err(|e| usage(format!("invalid {flag}: {e}"))))
                .transpose()
        };
        Ok(Prepared {
            out: prepare("--out", &self.out)?,
            qr_png: prepare("--qr-png", &self.qr_png)?,
        })
    }
}

/// The checked config options and the files `add`/`rotate` will write, prepared before
/// anything changes.
struct Prepared {
    out: Option<PrivateFile>,
    qr_png: Option<PrivateFile>,
}

/// The client config for a peer the server added or rotated, with the CLI's options.
pub(super) fn config_for(
    added: &PeerAdded,
    keys: &ClientKeys,
    args: &ConfigArgs,
) -> Result<ClientConfig, Failure> {
    // Without a port, the override keeps the server's port.
    let endpoint = (args.endpoint.as_deref())
        .map(|e| Endpoint::parse(e, added.endpoint.port))
        .transpose()
        .map_err(fatal)?;
    let allowed_ips = (args.allowed_ips.as_deref())
        .map(peers::parse_cidr_list)
        .transpose()
        .map_err(fatal)?;
    let opts = ConfigOptions {
        dns: args.dns.clone(),
        allowed_ips,
        keepalive: args.keepalive,
        endpoint,
    };
    Ok(client_config(
        added,
        keys.private.clone(),
        keys.psk.clone(),
        opts,
    ))
}

fn print_config(
    added: &PeerAdded,
    keys: ClientKeys,
    args: &ConfigArgs,
    outputs: Prepared,
    qr: Option<super::qr::Plan>,
) -> Result<(), Failure> {
    let registered_own_key = keys.private.is_none();
    let config = config_for(added, &keys, args)?;
    let text = config.render();
    // QR codes carry the same settings in fewer bytes: a smaller code.
    let compact = appliance::peer_ops::qr_text(&config);
    if let Some(file) = outputs.qr_png {
        let png = peers::render_png(&compact).map_err(fatal)?;
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
            let mut out = std::io::stdout().lock();
            match qr {
                Some(plan) => super::qr::print(&text, &compact, plan, args.show_config, &mut out)?,
                None => out.write_all(text.as_bytes()).map_err(fatal)?,
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

/// The peer table for a terminal `columns` wide: traffic and creation time are in `peer show`
/// and `--json`; a long endpoint, then a long name, is cut with `…` to fit.
fn render_table(views: &[PeerView], now: u64, columns: usize) -> String {
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.role.clone(),
                v.address.to_string(),
                if v.enabled { "on" } else { "off" }.into(),
                ago(v.last_handshake, now),
                v.endpoint.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let head = ["NAME", "ROLE", "ADDRESS", "STATE", "HANDSHAKE", "ENDPOINT"];
    table(&head, &rows, &[5, 0], 0, columns)
}

fn print_table(views: &[PeerView]) {
    if views.is_empty() {
        println!("no peers yet: add one with `appliance peer add NAME --role admin`");
        return;
    }
    print!(
        "{}",
        render_table(views, unix_now(), super::format::stdout_columns())
    );
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
