//! The `appliance` command line: `init`, `serve`, `peer add|list|show|enable|disable|remove|rotate`,
//! `audit`, `doctor`, and (in `cli/`) `endpoint`, `status`, `backup`, `restore`.
//!
//! Layer: CLI edge. Parses arguments into checked types, then sends each peer command to the
//! running server through its control socket, or — when nothing serves — runs the same pure
//! decision against the database directly. Prints results.
//! Only `init`, `serve` and `restore` create a data directory; every other command refuses a
//! missing one.
//! Exit codes: 0 success, 2 bad input, a refused request or no appliance data, 3 the database is
//! empty, damaged or from a newer version (restarting will not help: the systemd unit's
//! `RestartPreventExitStatus=3`), 1 anything else.
#![allow(clippy::disallowed_methods)] // CLI edge

mod cli;

use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use appliance::control::{self, ClientError, ControlFailure, PeerAdded, Request};
use appliance::model::{Actor, PeerChange, PeerRecord, ServerRecord};
use appliance::paths::DataDir;
use appliance::registry::{self, PeerUpdateError};
use appliance::server::{self, InitOptions, ServeOptions};
use appliance::service::{unix_now, unix_now_ms, PeerView};
use appliance::store::Store;
use clap::{Args, Parser, Subcommand};
use peers::{ClientConfig, Endpoint, Ipv4Net, PeerName, PresharedKey, PrivateKey, PublicKey, Role};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "appliance",
    version,
    about = "A private job scheduler reachable only over its own WireGuard",
    after_help = "Exit codes: 0 success; 2 bad input, a refused request, or no appliance data \
(only `init`, `serve` and `restore` create it); 3 the database is empty, damaged or from a newer version \
(restore a backup or move it aside); 1 anything else."
)]
struct Cli {
    /// Data directory [default: $APPLIANCE_DATA_DIR, else /var/lib/appliance as root,
    /// else ~/.local/share/appliance]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log lines as text, or as one JSON object per line for log shippers
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "APPLIANCE_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create the data directory and the server key (refuses to replace an existing key)
    Init {
        /// HOST[:PORT] that clients dial [default: this machine's host name]
        #[arg(long)]
        endpoint: Option<String>,
        /// UDP port for WireGuard
        #[arg(long, default_value_t = server::DEFAULT_LISTEN_PORT)]
        listen_port: u16,
        /// Tunnel subnet; the server takes its first address
        #[arg(long, default_value = server::DEFAULT_SUBNET)]
        subnet: String,
    },
    /// Run the appliance (initialising the data directory on first run)
    Serve(ServeArgs),
    /// Show the audit trail (who changed what, when, from where), newest first
    Audit {
        #[arg(long)]
        json: bool,
        /// Only entries at or after this time (RFC 3339, or Unix seconds)
        #[arg(long)]
        since: Option<String>,
        /// At most this many entries
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show or change the endpoint (HOST[:PORT]) new client configs carry; live while serving
    Endpoint {
        /// The server's public DNS name or address; without a port, the port listened on
        #[arg(value_name = "HOST[:PORT]")]
        host: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Server, peers, jobs and warnings at a glance (while serving or not)
    Status {
        /// The stable JSON form (fields documented in docs/design.md)
        #[arg(long)]
        json: bool,
    },
    /// Manage WireGuard peers (live: no restart needed)
    #[command(subcommand)]
    Peer(PeerCommand),
    /// List stored rows that are damaged (skipped while serving); exits 1 if there are any
    Doctor {
        #[arg(long)]
        json: bool,
        /// Move the damaged rows into the quarantine table (their bytes are kept) so they no
        /// longer appear; works while serving
        #[arg(long)]
        quarantine: bool,
    },
    /// Write a consistent snapshot of the database to FILE (works while serving). The file
    /// holds the server's private key: it is created with mode 0600
    Backup {
        /// Where to write it; must not exist
        file: PathBuf,
    },
    /// Fill an empty data directory from a backup (refused while a server uses it). A backup
    /// from an older version is upgraded
    Restore {
        /// A file written by `appliance backup` or `serve --backup-every`
        file: PathBuf,
        /// Restore into a directory that holds data: the current database is first moved
        /// aside to appliance.redb.before-restore-TIME (never deleted)
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum PeerCommand {
    /// Add a peer and print its wg-quick config (and a QR code on a terminal)
    Add {
        /// 1-32 characters of a-z, 0-9, '_' and '-'
        name: String,
        /// admin, officer, viewer or handler
        #[arg(long, default_value = "viewer")]
        role: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List peers with their state and traffic
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one peer
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a peer's role (effective from its next request; the tunnel stays up)
    Role {
        name: String,
        /// admin, officer, viewer or handler
        role: String,
    },
    /// Let a disabled peer connect again
    Enable { name: String },
    /// Stop a peer from connecting (ends its sessions at once; keeps its address)
    Disable { name: String },
    /// Delete a peer (ends its sessions at once; its address can be reused)
    Remove { name: String },
    /// Issue a new key pair and preshared key and print the new config; the old key stops working
    Rotate {
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// UDP address to listen on [default: 0.0.0.0:<listen port>]
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<std::net::SocketAddr>,
    /// Another name the API answers to in the Host header (repeatable), e.g. a local DNS name
    #[arg(long = "host", value_name = "NAME")]
    hosts: Vec<String>,
    /// Largest request body accepted, in bytes
    #[arg(long, default_value_t = 64 * 1024)]
    max_body: usize,
    /// Seconds a client may take to send a request's headers
    #[arg(long, default_value_t = 30)]
    header_timeout: u64,
    /// Concurrent HTTP connections per peer
    #[arg(long, default_value_t = 32)]
    max_connections_per_peer: usize,
    /// Largest request head (request line and headers), in bytes; more gets a 431 (at least 8192)
    #[arg(long, default_value_t = 16 * 1024)]
    max_head: usize,
    /// Seconds a request body may take, on top of its length at --min-body-rate
    #[arg(long, default_value_t = 10)]
    body_timeout: u64,
    /// Slowest request body transfer accepted, in bytes per second
    #[arg(long, default_value_t = 1024)]
    min_body_rate: u64,
    /// State-changing requests (POST, PATCH, DELETE) per second and peer; more get a 429
    #[arg(long, default_value_t = 10)]
    write_rate: u32,
    /// State-changing requests a peer may send at once after an idle spell
    #[arg(long, default_value_t = 50)]
    write_burst: u32,
    /// Request-body bytes one peer may have in memory at once (at least --max-body)
    #[arg(long, default_value_t = 1024 * 1024)]
    max_buffered_per_peer: u64,
    /// Request-body bytes all peers together may have in memory at once
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_buffered_total: u64,
    /// How long run history is kept (e.g. 30d, 12h)
    #[arg(long, default_value = "30d")]
    run_retention: String,
    /// How long audit entries are kept (e.g. 365d)
    #[arg(long, default_value = "365d")]
    audit_retention: String,
    /// Most space the audit trail may take, in MiB; the oldest entries go first
    #[arg(long, default_value_t = 64)]
    audit_max_mib: u64,
    /// Write a backup into DATA_DIR/backups/ this often (e.g. 1d, 6h); none by default
    #[arg(long, value_name = "DURATION")]
    backup_every: Option<String>,
    /// How many backups --backup-every keeps (the oldest are deleted)
    #[arg(long, default_value_t = 7, value_name = "N")]
    backup_keep: usize,
    /// Let webhooks reach this non-public network (repeatable), e.g. 192.168.1.0/24 for a
    /// self-hosted bot; by default they reach public addresses only. The tunnel subnet stays
    /// closed whatever is given
    #[arg(long = "allow-webhook-net", value_name = "CIDR")]
    allow_webhook_nets: Vec<appliance::webhook::IpNet>,
    /// First run only: HOST[:PORT] that clients dial [default: this machine's host name]
    #[arg(long, env = "APPLIANCE_ENDPOINT", value_name = "HOST[:PORT]")]
    endpoint: Option<String>,
    /// First run only: UDP port for WireGuard [default: 51820]
    #[arg(long, env = "APPLIANCE_LISTEN_PORT", value_name = "PORT")]
    listen_port: Option<u16>,
    /// First run only: tunnel subnet; the server takes its first address [default: 10.88.88.0/24]
    #[arg(long, env = "APPLIANCE_SUBNET", value_name = "CIDR")]
    subnet: Option<String>,
}

/// Options for the client config that `add` and `rotate` print.
#[derive(Args)]
struct ConfigArgs {
    /// Register a key the device generated itself (its private key never leaves it)
    #[arg(long)]
    public_key: Option<String>,
    /// DNS servers for the client config, comma separated
    #[arg(long, value_delimiter = ',')]
    dns: Vec<std::net::IpAddr>,
    /// AllowedIPs of the client config, comma separated [default: the tunnel subnet]
    #[arg(long)]
    allowed_ips: Option<String>,
    /// PersistentKeepalive of the client config, in seconds (0 turns it off)
    #[arg(long, default_value_t = 25)]
    keepalive: u16,
    /// Override the Endpoint (HOST[:PORT]) written into this config
    #[arg(long)]
    endpoint: Option<String>,
    /// Write the config to this file (mode 0600) instead of stdout
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the QR code of the config as a PNG image
    #[arg(long)]
    qr_png: Option<PathBuf>,
    /// On a terminal, print the config text after the QR code (piped, it is always printed)
    #[arg(long)]
    show_config: bool,
}

/// A CLI failure: a sentence for the user and the exit code.
pub(crate) struct Failure {
    code: u8,
    message: String,
}

pub(crate) fn usage(message: impl ToString) -> Failure {
    Failure {
        code: 2,
        message: message.to_string(),
    }
}

pub(crate) fn fatal(message: impl ToString) -> Failure {
    Failure {
        code: 1,
        message: message.to_string(),
    }
}

impl From<ControlFailure> for Failure {
    fn from(f: ControlFailure) -> Self {
        Failure {
            // 2 is for what the caller got wrong; a full disk or a failure is the server's.
            code: match f.kind.as_str() {
                "internal" | "insufficient_storage" | "unavailable" => 1,
                _ => 2,
            },
            message: f.message,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let dir = DataDir::resolve(cli.data_dir);
    let result = match cli.command {
        Command::Init {
            endpoint,
            listen_port,
            subnet,
        } => cmd_init(&dir, endpoint, listen_port, &subnet),
        Command::Serve(args) => cmd_serve(&dir, args),
        Command::Peer(cmd) => cmd_peer(&dir, cmd),
        Command::Audit { json, since, limit } => cmd_audit(&dir, json, since, limit),
        Command::Doctor { json, quarantine } => cmd_doctor(&dir, json, quarantine),
        Command::Endpoint { host, json } => cli::endpoint::run(&dir, host, json),
        Command::Status { json } => cli::status::run(&dir, json),
        Command::Backup { file } => cli::backup::cmd_backup(&dir, &file),
        Command::Restore { file, force } => cli::backup::cmd_restore(&dir, &file, force),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Exit code for a database that cannot be used as it is: restarting will not help.
const EXIT_DAMAGED: u8 = 3;

fn init_failure(e: server::InitError) -> Failure {
    use appliance::store::OpenError;
    use server::InitError::*;
    match e {
        AlreadyInitialized(_) | SubnetTooSmall(_) | Endpoint(_) | ListenPort | NoData { .. } => {
            usage(e)
        }
        Open(
            OpenError::Damaged { .. }
            | OpenError::SchemaTooNew { .. }
            | OpenError::Migration { .. },
        ) => Failure {
            code: EXIT_DAMAGED,
            message: e.to_string(),
        },
        _ => fatal(e),
    }
}

fn cmd_init(
    dir: &DataDir,
    endpoint: Option<String>,
    listen_port: u16,
    subnet: &str,
) -> Result<(), Failure> {
    let subnet = Ipv4Net::parse(subnet).map_err(|e| usage(format!("invalid --subnet: {e}")))?;
    let opts = InitOptions {
        endpoint,
        listen_port,
        subnet,
    };
    if let Some(e) = &opts.endpoint {
        Endpoint::parse(e, listen_port).map_err(|e| usage(format!("invalid --endpoint: {e}")))?;
    }
    let (_store, rec) = server::create(dir, &opts).map_err(init_failure)?;
    println!("initialised {}", dir.root().display());
    println!("server public key: {}", rec.private_key.public_key());
    println!("tunnel address:    {}", rec.interface);
    println!("clients dial:      {}", rec.endpoint);
    if let Some(w) = server::endpoint_warning(&rec.endpoint) {
        eprintln!("warning: {w}");
    }
    Ok(())
}

fn cmd_serve(dir: &DataDir, args: ServeArgs) -> Result<(), Failure> {
    if args.max_body == 0
        || args.header_timeout == 0
        || args.max_connections_per_peer == 0
        || args.body_timeout == 0
        || args.min_body_rate == 0
        || args.write_rate == 0
        || args.write_burst == 0
        || args.audit_max_mib == 0
    {
        return Err(usage(
            "--max-body, --header-timeout, --max-connections-per-peer, --body-timeout, --min-body-rate, --write-rate, --write-burst and --audit-max-mib must be greater than 0",
        ));
    }
    if args.max_head < appliance::api::MIN_HEAD {
        return Err(usage(format!(
            "--max-head must be at least {} bytes",
            appliance::api::MIN_HEAD
        )));
    }
    if args.max_buffered_per_peer < args.max_body as u64
        || args.max_buffered_total < args.max_buffered_per_peer
    {
        return Err(usage(
            "--max-buffered-per-peer must be at least --max-body, and --max-buffered-total at least --max-buffered-per-peer",
        ));
    }
    let audit_retention = appliance::sched::parse_duration(&args.audit_retention)
        .map_err(|e| usage(format!("invalid --audit-retention: {e}")))?;
    if audit_retention < std::time::Duration::from_secs(86_400) {
        return Err(usage("--audit-retention must be at least 1d"));
    }
    for h in &args.hosts {
        if h.is_empty() || h.contains(['/', ' ', ':']) {
            return Err(usage(format!(
                "invalid --host '{h}': give a bare host name such as appliance.lan"
            )));
        }
    }
    let run_retention = appliance::sched::parse_duration(&args.run_retention)
        .map_err(|e| usage(format!("invalid --run-retention: {e}")))?;
    if run_retention < std::time::Duration::from_secs(3600) {
        return Err(usage("--run-retention must be at least 1h"));
    }
    let backups = match &args.backup_every {
        None => None,
        Some(every) => {
            let every = appliance::sched::parse_duration(every)
                .map_err(|e| usage(format!("invalid --backup-every: {e}")))?;
            if every < std::time::Duration::from_secs(1) {
                return Err(usage("--backup-every must be at least 1s"));
            }
            if args.backup_keep == 0 {
                return Err(usage("--backup-keep must be at least 1"));
            }
            Some(appliance::backups::Schedule {
                every,
                keep: args.backup_keep,
            })
        }
    };
    // Checked before anything touches the disk, though they matter only on the first run.
    let first_run = server::FirstRun {
        subnet: (args.subnet.as_deref().map(Ipv4Net::parse).transpose())
            .map_err(|e| usage(format!("invalid --subnet (or APPLIANCE_SUBNET): {e}")))?,
        endpoint: args.endpoint,
        listen_port: args.listen_port,
    };
    first_run.options().check().map_err(|e| {
        usage(format!(
            "{e} (given as a flag, or as APPLIANCE_ENDPOINT, APPLIANCE_LISTEN_PORT or APPLIANCE_SUBNET)"
        ))
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(fatal)?;
    let (_keep, shutdown) = tokio::sync::watch::channel(false);
    let opts = ServeOptions {
        jobs: appliance::jobs::JobsConfig {
            run_retention,
            audit_retention,
            audit_max_bytes: args.audit_max_mib.saturating_mul(1024 * 1024),
            webhook_policy: appliance::webhook::NetPolicy::new(args.allow_webhook_nets),
        },
        listen: args.listen,
        api: appliance::api::ApiConfig {
            extra_hosts: args.hosts,
            max_body: args.max_body,
            header_read_timeout: std::time::Duration::from_secs(args.header_timeout),
            max_connections_per_peer: args.max_connections_per_peer,
            max_head: args.max_head,
            body_timeout: std::time::Duration::from_secs(args.body_timeout),
            min_body_rate: args.min_body_rate,
            write_rate: appliance::api::limits::Rate {
                per_second: f64::from(args.write_rate),
                burst: args.write_burst,
            },
            max_buffered_per_peer: args.max_buffered_per_peer,
            max_buffered_total: args.max_buffered_total,
        },
        // The stack drops SYNs a little past the API's cap, before allocating anything.
        limits: appliance::netstack::Limits::for_api_cap(args.max_connections_per_peer),
        backups,
        first_run,
    };
    rt.block_on(server::serve(dir, opts, shutdown))
        .map_err(|e| match e {
            server::ServeError::Init(e) => init_failure(e),
            e => fatal(e),
        })
}

/// Sends `req` to the running server, or runs `offline` on the database when none runs. Never
/// creates anything: a missing data directory or database exits 2 saying where it looked.
pub(crate) fn call(
    dir: &DataDir,
    req: Request,
    offline: impl FnOnce(&Store, &ServerRecord) -> Result<Value, ControlFailure>,
) -> Result<Value, Failure> {
    match control::request(&dir.control_socket(), &req) {
        Ok(v) => return Ok(v),
        Err(ClientError::NotServing(_)) => {}
        Err(ClientError::Refused(f)) => return Err(f.into()),
        Err(e) => return Err(fatal(e)),
    }
    let (store, server_rec) = server::open_existing(dir).map_err(|e| match e {
        server::InitError::Open(appliance::store::OpenError::Locked { .. }) => fatal(format!(
            "{e}; its control socket {} did not answer",
            dir.control_socket().display()
        )),
        e => init_failure(e),
    })?;
    Ok(offline(&store, &server_rec)?)
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

pub(crate) fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("plain data serialises")
}

fn cmd_peer(dir: &DataDir, cmd: PeerCommand) -> Result<(), Failure> {
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

fn cmd_audit(
    dir: &DataDir,
    json: bool,
    since: Option<String>,
    limit: usize,
) -> Result<(), Failure> {
    let since_ms = since
        .as_deref()
        .map(appliance::api::parse_since)
        .transpose()
        .map_err(|e| usage(format!("invalid --since: {e}")))?;
    if limit == 0 {
        return Err(usage("--limit must be at least 1"));
    }
    let req = Request::AuditList {
        before: None,
        since_ms,
        limit,
    };
    let v = call(dir, req, move |store, _| {
        Ok(to_value(&appliance::api::view::audit_views(
            store.audit_page(None, since_ms, limit)?,
        )))
    })?;
    let entries: Vec<appliance::api::view::AuditView> = serde_json::from_value(v).map_err(fatal)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries).unwrap());
        return Ok(());
    }
    if entries.is_empty() {
        println!("no audit entries");
    }
    for e in &entries {
        let who = match (&e.actor.fingerprint, &e.actor.endpoint) {
            (Some(fp), Some(ep)) => format!("{} [{fp}] from {ep}", e.actor.peer),
            (Some(fp), None) => format!("{} [{fp}]", e.actor.peer),
            _ => format!("{} ({})", e.actor.peer, e.actor.via),
        };
        println!(
            "{}  #{:<5} {:<14} {:<20} by {}  {}",
            date(e.at_ms / 1000),
            e.seq,
            e.action,
            e.target.as_deref().unwrap_or("-"),
            who,
            e.summary
        );
    }
    Ok(())
}

fn cmd_doctor(dir: &DataDir, json: bool, quarantine: bool) -> Result<(), Failure> {
    let req = Request::Doctor { quarantine };
    let v = call(dir, req, move |store, _| {
        Ok(to_value(&store.doctor(
            quarantine,
            &Actor::local_cli(),
            unix_now_ms(),
        )?))
    })?;
    let report: appliance::store::DoctorReport = serde_json::from_value(v).map_err(fatal)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
    } else if report.damaged.is_empty() {
        println!(
            "no damaged rows ({} kept in quarantine)",
            report.in_quarantine
        );
    } else {
        let verb = if report.quarantined {
            "moved into quarantine"
        } else {
            "damaged"
        };
        println!("{} row(s) {verb}:", report.damaged.len());
        for d in &report.damaged {
            println!("  {d}");
        }
        println!("{} row(s) kept in quarantine", report.in_quarantine);
    }
    if !report.quarantined && !report.damaged.is_empty() {
        return Err(fatal(format!(
            "{} damaged row(s) are skipped while serving; run `appliance doctor --quarantine` to move them aside (their bytes are kept)",
            report.damaged.len()
        )));
    }
    Ok(())
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

/// A file holding secrets: written to a fresh 0600 temporary file beside its destination and
/// renamed over it, so an existing file's looser mode never applies and a failure leaves
/// nothing half-written. Dropped unfinished, the temporary file is removed.
struct PrivateFile {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<std::fs::File>,
}

impl PrivateFile {
    fn prepare(dest: &std::path::Path) -> Result<PrivateFile, String> {
        if dest.is_dir() {
            return Err(format!("{} is a directory", dest.display()));
        }
        let name = dest
            .file_name()
            .ok_or_else(|| format!("{} does not name a file", dest.display()))?;
        let dir = dest
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            return Err(format!("directory {} does not exist", dir.display()));
        }
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
        Ok(PrivateFile {
            dest: dest.to_path_buf(),
            tmp,
            file: Some(file),
        })
    }

    fn finish(mut self, data: &[u8]) -> std::io::Result<()> {
        let mut f = self.file.take().expect("finished once");
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&self.tmp, &self.dest)
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
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
        let path = file.dest.clone();
        file.finish(&png)
            .map_err(|e| fatal(format!("cannot write {}: {e}", path.display())))?;
    }
    match outputs.out {
        Some(file) => {
            let path = file.dest.clone();
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
                cli::qr::print(&text, args.show_config, &mut out)?;
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

/// "2 min ago", "never".
fn ago(unix: Option<u64>, now: u64) -> String {
    let Some(t) = unix else {
        return "never".into();
    };
    let s = now.saturating_sub(t);
    match s {
        0..=9 => "just now".into(),
        10..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `YYYY-MM-DD HH:MM UTC` from Unix seconds (civil-from-days, proleptic Gregorian).
fn date(unix: u64) -> String {
    let days = (unix / 86400) as i64;
    let secs = unix % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations_read_well() {
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
        assert_eq!(date(1_709_208_000), "2024-02-29 12:00 UTC");
        assert_eq!(ago(None, 100), "never");
        assert_eq!(ago(Some(100), 105), "just now");
        assert_eq!(ago(Some(0), 150), "2 min ago");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
