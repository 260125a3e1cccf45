//! The command line's shape: clap derive structs, parsed in `main` and handed to the commands
//! in this module's siblings. Values stay strings here where the command checks them into
//! their types itself (with a message naming the flag).

use std::path::PathBuf;

use appliance::server;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "appliance",
    version,
    about = "A private job scheduler reachable only over its own WireGuard",
    after_help = "Exit codes: 0 success; 2 bad input, a refused request, or no appliance data \
(only `init`, `serve` and `restore` create it); 3 the database is empty, damaged or from a newer version \
(restore a backup or move it aside); 1 anything else."
)]
pub struct Cli {
    /// Data directory [default: $APPLIANCE_DATA_DIR, else /var/lib/appliance as root,
    /// else ~/.local/share/appliance]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log lines as text, or as one JSON object per line for log shippers
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "APPLIANCE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
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
        /// Print JSON, for scripts
        #[arg(long)]
        json: bool,
        /// Only entries at or after this time: an RFC 3339 time, a date (2026-11-30), a time
        /// ago (30m, 1h, 2d), today or yesterday
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
        /// Print JSON, for scripts
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
        /// Print JSON, for scripts
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
    /// Write the manual pages (appliance.1, appliance-serve.1, ...) into DIR, created if
    /// missing. For packaging (scripts/test-deb.sh), hence hidden from --help
    #[command(hide = true)]
    Man {
        /// Where to write them, e.g. target/man
        #[arg(value_name = "DIR")]
        out_dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum PeerCommand {
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
        /// Print JSON, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Show one peer
    Show {
        name: String,
        /// Print JSON, for scripts
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
pub struct ServeArgs {
    /// UDP address to listen on [default: [::]:<listen port>, IPv6 and IPv4; 0.0.0.0 where
    /// IPv6 is off]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// Another name the API answers to in the Host header (repeatable), e.g. a local DNS name
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// Largest request body accepted, in bytes
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_body: usize,
    /// Seconds a client may take to send a request's headers
    #[arg(long, default_value_t = 30)]
    pub header_timeout: u64,
    /// Concurrent HTTP connections per peer
    #[arg(long, default_value_t = 32)]
    pub max_connections_per_peer: usize,
    /// TCP connections all peers together may hold (at least --max-connections-per-peer + 4);
    /// at the cap, the heaviest peer's oldest idle connection makes room for a lighter peer
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes; more gets a 431 (at least 8192)
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_head: usize,
    /// Seconds a request body may take, on top of its length at --min-body-rate
    #[arg(long, default_value_t = 10)]
    pub body_timeout: u64,
    /// Slowest request body transfer accepted, in bytes per second
    #[arg(long, default_value_t = 1024)]
    pub min_body_rate: u64,
    /// State-changing requests (POST, PATCH, DELETE) per second and peer; more get a 429
    #[arg(long, default_value_t = 10)]
    pub write_rate: u32,
    /// State-changing requests a peer may send at once after an idle spell
    #[arg(long, default_value_t = 50)]
    pub write_burst: u32,
    /// Request-body bytes one peer may have in memory at once (at least --max-body)
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_buffered_per_peer: u64,
    /// Request-body bytes all peers together may have in memory at once
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_buffered_total: u64,
    /// How long run history is kept (e.g. 30d, 12h)
    #[arg(long, default_value = "30d")]
    pub run_retention: String,
    /// How long audit entries are kept (e.g. 365d)
    #[arg(long, default_value = "365d")]
    pub audit_retention: String,
    /// Most space the audit trail may take, in MiB; the oldest entries go first
    #[arg(long, default_value_t = 64)]
    pub audit_max_mib: u64,
    /// Write a backup into DATA_DIR/backups/ this often (e.g. 1d, 6h); none by default
    #[arg(long, value_name = "DURATION")]
    pub backup_every: Option<String>,
    /// How many backups --backup-every keeps (the oldest are deleted)
    #[arg(long, default_value_t = 7, value_name = "N")]
    pub backup_keep: usize,
    /// Let webhooks reach this non-public network (repeatable), e.g. 192.168.1.0/24 for a
    /// self-hosted bot; by default they reach public addresses only. The tunnel subnet stays
    /// closed whatever is given
    #[arg(long = "allow-webhook-net", value_name = "CIDR")]
    pub allow_webhook_nets: Vec<appliance::webhook::IpNet>,
    /// First run only: HOST[:PORT] that clients dial [default: this machine's host name]
    #[arg(long, env = "APPLIANCE_ENDPOINT", value_name = "HOST[:PORT]")]
    pub endpoint: Option<String>,
    /// First run only: UDP port for WireGuard [default: 51820]
    #[arg(long, env = "APPLIANCE_LISTEN_PORT", value_name = "PORT")]
    pub listen_port: Option<u16>,
    /// First run only: tunnel subnet; the server takes its first address [default: 10.88.88.0/24]
    #[arg(long, env = "APPLIANCE_SUBNET", value_name = "CIDR")]
    pub subnet: Option<String>,
}

/// Options for the client config that `add` and `rotate` print.
#[derive(Args)]
pub struct ConfigArgs {
    /// Register a key the device generated itself (its private key never leaves it)
    #[arg(long)]
    pub public_key: Option<String>,
    /// DNS servers for the client config, comma separated
    #[arg(long, value_delimiter = ',')]
    pub dns: Vec<std::net::IpAddr>,
    /// AllowedIPs of the client config, comma separated [default: the tunnel subnet]
    #[arg(long)]
    pub allowed_ips: Option<String>,
    /// PersistentKeepalive of the client config, in seconds (0 turns it off)
    #[arg(long, default_value_t = appliance::peer_ops::DEFAULT_KEEPALIVE)]
    pub keepalive: u16,
    /// Override the Endpoint (HOST[:PORT]) written into this config
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Write the config to this file (mode 0600) instead of stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also write the QR code of the config as a PNG image
    #[arg(long, value_name = "FILE")]
    pub qr_png: Option<PathBuf>,
    /// On a terminal, print the config text after the QR code (piped, it is always printed)
    #[arg(long)]
    pub show_config: bool,
    /// Draw the terminal QR code with Unicode sextants (2x3 modules a cell): 22 rows instead
    /// of 33, fits 80x24; needs a terminal font that has them
    #[arg(long)]
    pub qr_sextants: bool,
}
