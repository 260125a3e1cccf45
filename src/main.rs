//! The `appliance` command line: `init`, `serve`, `peer add`.
//!
//! Layer: CLI edge. Parses arguments into checked types, picks the path to the state (the
//! control socket of a running server, or the database opened directly) and prints results.
//! Exit codes: 0 success, 2 bad input or a refused request, 1 anything else.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use appliance::control::{self, ClientError, PeerAdded, Request};
use appliance::paths::DataDir;
use appliance::registry::AddPeerError;
use appliance::server::{self, InitOptions, ServeOptions};
use clap::{Args, Parser, Subcommand};
use peers::{ClientConfig, Endpoint, Ipv4Net, PresharedKey, PrivateKey, PublicKey, Role};

#[derive(Parser)]
#[command(name = "appliance", version, about = "A private job scheduler reachable only over its own WireGuard")]
struct Cli {
    /// Data directory [default: $APPLIANCE_DATA_DIR, else /var/lib/appliance as root,
    /// else ~/.local/share/appliance]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
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
    Serve {
        /// UDP address to listen on [default: 0.0.0.0:<listen port>]
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Manage WireGuard peers
    #[command(subcommand)]
    Peer(PeerCommand),
}

#[derive(Subcommand)]
enum PeerCommand {
    /// Add a peer and print its wg-quick config (and a QR code on a terminal)
    Add(AddArgs),
}

#[derive(Args)]
struct AddArgs {
    /// 1-32 characters of a-z, 0-9, '_' and '-'
    name: String,
    /// admin, officer, viewer or handler
    #[arg(long, default_value = "viewer")]
    role: String,
    /// Register a key the device generated itself (its private key never leaves it)
    #[arg(long)]
    public_key: Option<String>,
    /// DNS servers for the client config, comma separated
    #[arg(long, value_delimiter = ',')]
    dns: Vec<std::net::IpAddr>,
    /// AllowedIPs of the client config [default: the tunnel subnet, a split tunnel]
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
    /// Also write the QR code as a PNG image
    #[arg(long)]
    qr_png: Option<PathBuf>,
}

/// A CLI failure: a sentence for the user and the exit code.
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl ToString) -> Failure {
    Failure {
        code: 2,
        message: message.to_string(),
    }
}

fn fatal(message: impl ToString) -> Failure {
    Failure {
        code: 1,
        message: message.to_string(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let dir = DataDir::resolve(cli.data_dir);
    let result = match cli.command {
        Command::Init {
            endpoint,
            listen_port,
            subnet,
        } => cmd_init(&dir, endpoint, listen_port, &subnet),
        Command::Serve { listen } => cmd_serve(&dir, listen),
        Command::Peer(PeerCommand::Add(args)) => cmd_peer_add(&dir, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn init_failure(e: server::InitError) -> Failure {
    use server::InitError::*;
    match e {
        AlreadyInitialized(_) | SubnetTooSmall(_) | Endpoint(_) | ListenPort => usage(e),
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
    let store = server::open_store(dir).map_err(init_failure)?;
    let (rec, _) = server::init(&store, dir, &opts, true).map_err(init_failure)?;
    println!("initialised {}", dir.root().display());
    println!("server public key: {}", rec.private_key.public_key());
    println!("tunnel address:    {}", rec.interface);
    println!("clients dial:      {}", rec.endpoint);
    Ok(())
}

fn cmd_serve(dir: &DataDir, listen: Option<std::net::SocketAddr>) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(fatal)?;
    let (_keep, shutdown) = tokio::sync::watch::channel(false);
    let opts = ServeOptions {
        listen,
        ..ServeOptions::default()
    };
    rt.block_on(server::serve(dir, opts, shutdown))
        .map_err(|e| match e {
            server::ServeError::Init(e) => init_failure(e),
            e => fatal(e),
        })
}

fn cmd_peer_add(dir: &DataDir, args: AddArgs) -> Result<(), Failure> {
    // Check everything the user typed before touching any state.
    let name = peers::PeerName::new(&args.name).map_err(|e| usage(format!("invalid name: {e}")))?;
    let role: Role = args.role.parse().map_err(usage)?;
    let (private_key, public_key) = match &args.public_key {
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
    let client_allowed = args
        .allowed_ips
        .as_deref()
        .map(peers::parse_cidr_list)
        .transpose()
        .map_err(|e| usage(format!("invalid --allowed-ips: {e}")))?;
    if let Some(e) = &args.endpoint {
        Endpoint::parse(e, server::DEFAULT_LISTEN_PORT)
            .map_err(|e| usage(format!("invalid --endpoint: {e}")))?;
    }
    let psk = PresharedKey::generate(&mut rand_core::OsRng);

    let added = add_peer(dir, &name, role, &public_key, &psk)?;

    let server_key = PublicKey::parse(&added.server_public_key).map_err(fatal)?;
    let mut endpoint =
        Endpoint::parse(&added.endpoint, server::DEFAULT_LISTEN_PORT).map_err(fatal)?;
    if let Some(e) = &args.endpoint {
        // Without a port, the override keeps the server's port.
        endpoint = Endpoint::parse(e, endpoint.port).map_err(fatal)?;
    }
    let config = ClientConfig {
        private_key,
        address: added.address,
        dns: args.dns.clone(),
        mtu: peers::DEFAULT_MTU,
        server_public_key: server_key,
        preshared_key: Some(psk),
        endpoint,
        allowed_ips: client_allowed
            .unwrap_or_else(|| vec![Ipv4Net::parse(&added.subnet).expect("server sent a subnet")]),
        persistent_keepalive: (args.keepalive > 0).then_some(args.keepalive),
        name: Some(added.name.clone()),
    };
    let text = config.render();
    if let Some(path) = &args.qr_png {
        let png = peers::render_png(&text).map_err(fatal)?;
        write_private(path, &png)
            .map_err(|e| fatal(format!("cannot write {}: {e}", path.display())))?;
    }
    match &args.out {
        Some(path) => {
            write_private(path, text.as_bytes())
                .map_err(|e| fatal(format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "added peer {} ({}) at {}; config written to {}",
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
            let _ = out.write_all(text.as_bytes());
            if tty {
                let qr = peers::render_terminal(&text).map_err(fatal)?;
                let _ = writeln!(out, "\nScan with the WireGuard app (+ → Scan from QR code):\n{qr}");
            }
        }
    }
    if args.public_key.is_some() {
        eprintln!("note: the config has no private key; paste the device's own key into PrivateKey.");
    }
    Ok(())
}

/// Registers the peer through the running server, or directly in the database when no
/// server runs.
fn add_peer(
    dir: &DataDir,
    name: &peers::PeerName,
    role: Role,
    public_key: &PublicKey,
    psk: &PresharedKey,
) -> Result<PeerAdded, Failure> {
    let req = Request::PeerAdd {
        name: name.to_string(),
        role: role.to_string(),
        public_key: public_key.to_base64(),
        preshared_key: Some(psk.to_base64()),
        extra_allowed_ips: vec![],
    };
    match control::request(&dir.control_socket(), &req) {
        Ok(v) => return serde_json::from_value(v).map_err(fatal),
        Err(ClientError::NotServing(_)) => {}
        Err(ClientError::Refused(f)) if f.kind != "internal" => return Err(usage(f.message)),
        Err(e) => return Err(fatal(e)),
    }
    let store = server::open_store(dir).map_err(|e| match e {
        server::InitError::Open(appliance::store::OpenError::Locked { .. }) => fatal(format!(
            "{e}; its control socket {} did not answer",
            dir.control_socket().display()
        )),
        e => init_failure(e),
    })?;
    let (server_rec, created) =
        server::init(&store, dir, &InitOptions::default(), false).map_err(init_failure)?;
    if created {
        eprintln!(
            "initialised {} (clients dial {}; run `appliance init --endpoint` first to choose)",
            dir.root().display(),
            server_rec.endpoint
        );
    }
    let req = control::parse_add(
        name.as_str(),
        role.as_str(),
        &public_key.to_base64(),
        Some(&psk.to_base64()),
        &[],
    )
    .map_err(usage)?;
    let now = appliance::service::unix_now();
    let rec = store
        .update_peers(|existing| appliance::registry::plan_add(existing, &server_rec, req, now))
        .map_err(|e| match e {
            AddPeerError::Store(_) | AddPeerError::ShuttingDown => fatal(e),
            e => usage(e),
        })?;
    Ok(PeerAdded::new(&rec, &server_rec))
}

fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}
