//! `init` and `serve`: setting up the data directory and running the whole appliance.
//!
//! Layer: driver (process wiring). `init` writes the server key and settings once. Only `init`
//! and `serve` ([`create`]) may create a data directory and database; every other command uses
//! [`open_existing`], which refuses a missing one. `serve`
//! opens the store, loads every peer into the router, binds the one UDP socket, starts the
//! network driver, the control socket and the HTTP service, and stops cleanly on SIGINT or
//! SIGTERM. Nothing here binds a TCP socket: the API exists only on the netstack.
#![allow(clippy::disallowed_methods)] // process wiring

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use peers::{Endpoint, EndpointError, Ipv4Net, PrivateKey};
use tokio::sync::{mpsc, watch};

use crate::directory::Roster;
use crate::driver::{self, DriverParts, Metrics};
use crate::model::ServerRecord;
use crate::netstack::Limits;
use crate::paths::DataDir;
use crate::service::{unix_now, Appliance, ApplianceParts, StatsBook};
use crate::store::{OpenError, Store, StoreError};
use crate::tunnel::Router;

/// Default WireGuard UDP port.
pub const DEFAULT_LISTEN_PORT: u16 = 51820;
/// How often per-peer statistics (last handshake, bytes, endpoint) are written to the store.
pub const STATS_PERSIST_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// While the store refuses writes (a full disk), how often it is probed so that the condition
/// clears by itself once space is freed, even when nobody writes.
pub const STORAGE_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Default tunnel subnet; the server takes its first host address.
pub const DEFAULT_SUBNET: &str = "10.88.88.0/24";

/// Settings for a new appliance.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// `HOST[:PORT]` clients connect to; defaults to this machine's host name.
    pub endpoint: Option<String>,
    /// The UDP port to listen on.
    pub listen_port: u16,
    /// The tunnel subnet, e.g. `10.88.88.0/24`.
    pub subnet: Ipv4Net,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            endpoint: None,
            listen_port: DEFAULT_LISTEN_PORT,
            subnet: DEFAULT_SUBNET.parse().expect("default subnet parses"),
        }
    }
}

impl InitOptions {
    /// Checks the settings without touching the disk and returns the endpoint clients will
    /// dial (this machine's host name when none is given).
    pub fn check(&self) -> Result<Endpoint, InitError> {
        if self.subnet.prefix() > 30 {
            return Err(InitError::SubnetTooSmall(self.subnet));
        }
        if self.listen_port == 0 {
            return Err(InitError::ListenPort);
        }
        Ok(match &self.endpoint {
            Some(e) => Endpoint::parse(e, self.listen_port)?,
            None => Endpoint {
                host: crate::paths::hostname(),
                port: self.listen_port,
            },
        })
    }
}

/// What `serve` initialises a new data directory with (its flags or `APPLIANCE_ENDPOINT`,
/// `APPLIANCE_LISTEN_PORT`, `APPLIANCE_SUBNET`). Each `None` takes `init`'s default. A data
/// directory that is already initialised keeps its own settings.
#[derive(Debug, Clone, Default)]
pub struct FirstRun {
    /// `HOST[:PORT]` clients connect to.
    pub endpoint: Option<String>,
    /// The UDP port to listen on.
    pub listen_port: Option<u16>,
    /// The tunnel subnet.
    pub subnet: Option<Ipv4Net>,
}

impl FirstRun {
    /// The settings for `init`, defaults filled in.
    pub fn options(&self) -> InitOptions {
        let default = InitOptions::default();
        InitOptions {
            endpoint: self.endpoint.clone(),
            listen_port: self.listen_port.unwrap_or(default.listen_port),
            subnet: self.subnet.unwrap_or(default.subnet),
        }
    }

    /// The given settings that `stored` does not match, described for a warning: they are
    /// ignored because the server record is written once.
    pub fn ignored(&self, stored: &ServerRecord) -> Vec<String> {
        let mut ignored = Vec::new();
        if let Some(port) = self.listen_port.filter(|p| *p != stored.listen_port) {
            ignored.push(format!("listen port {port} (keeps {})", stored.listen_port));
        }
        let stored_subnet = Ipv4Net::new(stored.interface.network(), stored.interface.prefix())
            .expect("a stored prefix is at most 32");
        if let Some(subnet) = self.subnet {
            if (subnet.network(), subnet.prefix()) != (stored_subnet.addr(), stored_subnet.prefix())
            {
                ignored.push(format!("subnet {subnet} (keeps {stored_subnet})"));
            }
        }
        if let Some(endpoint) = &self.endpoint {
            if Endpoint::parse(endpoint, stored.listen_port).as_ref() != Ok(&stored.endpoint) {
                ignored.push(format!("endpoint {endpoint} (keeps {})", stored.endpoint));
            }
        }
        ignored
    }
}

/// Why `init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The data directory already has a server key; it is never replaced.
    #[error(
        "{0} is already initialised; its server key is kept (remove the directory to start over)"
    )]
    AlreadyInitialized(String),
    /// The subnet cannot hold a server and at least one peer.
    #[error("subnet {0} is too small: use a prefix of /30 or shorter, e.g. 10.88.88.0/24")]
    SubnetTooSmall(Ipv4Net),
    /// The endpoint does not parse.
    #[error("invalid --endpoint: {0}")]
    Endpoint(#[from] EndpointError),
    /// The listen port is 0.
    #[error("--listen-port must be between 1 and 65535")]
    ListenPort,
    /// There is no database in the data directory (and nothing was created).
    #[error(
        "no appliance data at {path} (looked at {looked}); run `appliance init` or pass --data-dir"
    )]
    NoData {
        /// The data directory.
        path: String,
        /// Where that directory came from (`--data-dir`, `APPLIANCE_DATA_DIR`, the default).
        looked: String,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The database failed after opening.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the existing appliance in `dir` with its server record. Creates nothing: a missing
/// database is [`InitError::NoData`], an empty or damaged one [`OpenError::Damaged`].
pub fn open_existing(dir: &DataDir) -> Result<(Store, ServerRecord), InitError> {
    let (store, server) = match Store::open_appliance(&dir.database()) {
        Err(OpenError::Missing { .. }) => {
            return Err(InitError::NoData {
                path: dir.root().display().to_string(),
                looked: dir.source().to_string(),
            })
        }
        r => r?,
    };
    dir.protect_database()
        .map_err(|source| InitError::DataDir {
            path: dir.database().display().to_string(),
            source,
        })?;
    Ok((store, server))
}

/// Checks `opts` and makes a new server identity (nothing is written).
pub fn new_server_record(opts: &InitOptions) -> Result<ServerRecord, InitError> {
    let endpoint = opts.check()?;
    let network = u32::from(opts.subnet.network());
    let interface = Ipv4Net::new(Ipv4Addr::from(network + 1), opts.subnet.prefix())
        .expect("prefix already checked");
    Ok(ServerRecord {
        private_key: PrivateKey::generate(&mut rand_core::OsRng),
        listen_port: opts.listen_port,
        interface,
        endpoint,
        created_at: unix_now(),
    })
}

/// Creates the data directory (mode 0700) and a new database holding a new server record,
/// for `init` and a first `serve`. Input is checked before anything is created. Any existing
/// database file — healthy, empty or damaged — is left exactly as it is: a healthy one is
/// [`InitError::AlreadyInitialized`], a damaged one [`OpenError::Damaged`].
pub fn create(dir: &DataDir, opts: &InitOptions) -> Result<(Store, ServerRecord), InitError> {
    let record = new_server_record(opts)?;
    dir.ensure().map_err(|source| InitError::DataDir {
        path: dir.root().display().to_string(),
        source,
    })?;
    match Store::create(&dir.database(), Some(&record)) {
        Ok(store) => Ok((store, record)),
        Err(OpenError::Exists { .. }) => match Store::open_appliance(&dir.database()) {
            Ok(_) | Err(OpenError::Locked { .. }) => Err(InitError::AlreadyInitialized(
                dir.root().display().to_string(),
            )),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Why `serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be initialised.
    #[error(transparent)]
    Init(#[from] InitError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The UDP port is taken or not permitted.
    #[error("cannot listen on UDP {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The control socket could not be created.
    #[error("cannot create the control socket {path}: {source}")]
    Control {
        /// The socket's path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The network driver failed.
    #[error("network driver failed: {0}")]
    Driver(std::io::Error),
}

/// Options for `serve`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Overrides the UDP listen address (default `[::]:<listen_port>`, accepting IPv4 too,
    /// or `0.0.0.0:<listen_port>` where IPv6 is off).
    pub listen: Option<SocketAddr>,
    /// TCP caps and buffer sizes of the netstack.
    pub limits: Limits,
    /// The HTTP API's limits and names.
    pub api: crate::api::ApiConfig,
    /// The scheduler's settings.
    pub jobs: crate::scheduler::Config,
    /// `--backup-every` / `--backup-keep`: rotated backups in `data-dir/backups/`.
    pub backups: Option<crate::backups::Schedule>,
    /// Settings for a data directory that is not yet initialised.
    pub first_run: FirstRun,
}

/// Runs the appliance until SIGINT/SIGTERM (or `shutdown` turns true).
pub async fn serve(
    dir: &DataDir,
    opts: ServeOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let (store, server) = match open_existing(dir) {
        Err(InitError::NoData { .. }) => {
            let (store, server) = create(dir, &opts.first_run.options())?;
            tracing::info!(
                data_dir = %dir.root().display(),
                endpoint = %server.endpoint,
                "initialised a new appliance (first run)"
            );
            (store, server)
        }
        Ok((store, server)) => {
            let ignored = opts.first_run.ignored(&server);
            if !ignored.is_empty() {
                tracing::warn!(
                    data_dir = %dir.root().display(),
                    "first-run settings ignored, the data directory is already initialised: {} \
                     (they apply only to a new data directory)",
                    ignored.join(", ")
                );
            }
            (store, server)
        }
        Err(e) => return Err(e.into()),
    };
    // Damaged rows are skipped (and logged) by the loaders, counted for /api/v1/health and
    // listed by `appliance doctor`; the rest serves.
    let crate::store::Loaded {
        rows: peers,
        damaged: damaged_peers,
    } = store.peers()?;
    let stored_stats = store.peer_stats()?;
    let store = Arc::new(store);

    let mut router = Router::new(&server.private_key, Box::new(rand_core::OsRng));
    for p in peers.iter().filter(|p| p.enabled) {
        if let Err(e) = router.upsert_peer(driver::peer_config(p)) {
            tracing::warn!(peer = %p.name, error = %e, "stored peer not routed");
        }
    }
    let socket = bind_udp(opts.listen, server.listen_port)?;
    let listen = socket.local_addr().map_err(|source| ServeError::Bind {
        addr: opts
            .listen
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], server.listen_port))),
        source,
    })?;
    // Configs carry the port actually listened on: an endpoint that follows the listen port
    // (no port of its own was set) follows `--listen` too. An explicit other port (a router
    // forwarding 443 to 51820, say) is kept.
    let mut server = server;
    if server.endpoint.port == server.listen_port && listen.port() != server.listen_port {
        server.endpoint.port = listen.port();
    }
    if let Some(warning) = endpoint_warning(&server.endpoint) {
        tracing::warn!(endpoint = %server.endpoint, "{warning}");
    }
    let directory = Arc::new(RwLock::new(Roster::new(peers)));
    let metrics = Arc::new(Metrics::default());
    let (commands_tx, commands_rx) = mpsc::channel(64);
    crate::backups::remove_stale_staged(dir.root());
    let (stop_tx, stop_rx) = watch::channel(false);
    // Webhooks never reach the tunnel subnet (the API lives there), whatever is allowed.
    let mut jobs_config = opts.jobs.clone();
    jobs_config.webhook_policy = jobs_config.webhook_policy.forbid(server.interface.into());
    let (jobs, jobs_task) = crate::scheduler::start(store.clone(), jobs_config, stop_rx.clone())?;
    let damaged = damaged_peers.len() + jobs.damaged_at_start;
    if damaged > 0 {
        tracing::warn!(
            damaged_rows = damaged,
            "serving without {damaged} damaged row(s); `appliance doctor` lists them and `appliance doctor --quarantine` moves them aside"
        );
    }
    let service = Arc::new(Appliance::new(ApplianceParts {
        store,
        server: server.clone(),
        listen,
        data_dir: dir.root().to_path_buf(),
        commands: commands_tx,
        directory: directory.clone(),
        metrics: metrics.clone(),
        stats: StatsBook::new(stored_stats),
        started: Instant::now(),
        jobs,
        damaged_rows: damaged,
    }));
    let api = Arc::new(crate::api::ApiState::new(opts.api.clone()));
    // SIGTERM/SIGINT handlers before the readiness signal: a stop right after the control
    // socket appears is a clean shutdown, not the default action's abrupt exit.
    let mut signals = Signals::install();
    // Only now that every job is loaded does the CLI get an answering control socket (its
    // existence is the readiness signal scripts and tests wait for).
    let control_path = dir.control_socket();
    let control = crate::control::bind(&control_path).map_err(|source| ServeError::Control {
        path: control_path.display().to_string(),
        source,
    })?;
    let accept_service = service.clone();
    let parts = DriverParts {
        socket,
        router,
        address: server.interface.addr(),
        prefix: server.interface.prefix(),
        limits: opts.limits,
        commands: commands_rx,
        directory,
        metrics,
        on_accept: Box::new(move |conn| {
            crate::api::serve_connection(conn, accept_service.clone(), api.clone())
        }),
        shutdown: stop_rx.clone(),
    };
    let mut driver_task = tokio::spawn(driver::run(parts));
    let control_task = tokio::spawn(crate::control::serve(control, service.clone()));
    let backup_task = opts.backups.clone().map(|schedule| {
        tracing::info!(every = ?schedule.every, keep = schedule.keep, "rotated backups enabled");
        tokio::spawn(crate::backups::run_periodic(
            service.store().clone(),
            dir.clone(),
            schedule,
            service.backups().clone(),
            stop_rx.clone(),
        ))
    });
    let stats_service = service.clone();
    let stats_task = tokio::spawn(async move {
        let mut every = tokio::time::interval(STATS_PERSIST_INTERVAL);
        every.tick().await;
        loop {
            every.tick().await;
            if let Err(e) = stats_service.persist_stats().await {
                tracing::warn!(error = %e, "could not persist peer statistics");
            }
        }
    });
    let probe_store = service.store().clone();
    let probe_task = tokio::spawn(async move {
        let mut every = tokio::time::interval(STORAGE_PROBE_INTERVAL);
        loop {
            every.tick().await;
            if probe_store.health().writable {
                continue;
            }
            let store = probe_store.clone();
            // Logs "database writable again" itself when it succeeds.
            let _ = tokio::task::spawn_blocking(move || store.recover()).await;
        }
    });
    tracing::info!(
        udp = %listen,
        endpoint = %server.endpoint,
        tunnel = %server.interface,
        api = %format!("http://{}:{}/", server.interface.addr(), crate::api::PORT),
        public_key = %server.private_key.public_key(),
        "serving"
    );

    let result = tokio::select! {
        r = &mut driver_task => Some(r),
        _ = signals.wait() => None,
        _ = shutdown.changed() => None,
    };
    stats_task.abort();
    probe_task.abort();
    control_task.abort();
    if let Err(e) = service.persist_stats().await {
        tracing::warn!(error = %e, "could not persist peer statistics");
    }
    let _ = stop_tx.send(true);
    let _ = std::fs::remove_file(&control_path);
    let result = match result {
        Some(r) => r,
        None => driver_task.await,
    };
    let _ = jobs_task.await;
    if let Some(t) = backup_task {
        let _ = t.await;
    }
    tracing::info!("stopped");
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServeError::Driver(e)),
        Err(e) => Err(ServeError::Driver(std::io::Error::other(e))),
    }
}

/// Binds the WireGuard UDP socket: `listen` if given, else dual-stack `[::]:port` (IPv6 with
/// IPv4-mapped addresses, `IPV6_V6ONLY` off), falling back to `0.0.0.0:port` where the host
/// has IPv6 switched off.
fn bind_udp(listen: Option<SocketAddr>, port: u16) -> Result<tokio::net::UdpSocket, ServeError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind = |addr: SocketAddr| -> std::io::Result<tokio::net::UdpSocket> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() && listen.is_none() {
            socket.set_only_v6(false)?;
        }
        socket.set_nonblocking(true)?;
        // Room to queue a burst or a flood until the driver picks what matters.
        match crate::driver::udp::size_buffers(socket2::SockRef::from(&socket)) {
            Ok(sizes) => tracing::debug!(?sizes, "udp socket buffers"),
            Err(e) => tracing::warn!(error = %e, "udp socket buffers kept at the default"),
        }
        socket.bind(&addr.into())?;
        tokio::net::UdpSocket::from_std(socket.into())
    };
    if let Some(addr) = listen {
        return bind(addr).map_err(|source| ServeError::Bind { addr, source });
    }
    let dual = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    match bind(dual) {
        Ok(s) => Ok(s),
        Err(e) if ipv6_unavailable(&e) => {
            let v4 = SocketAddr::from(([0, 0, 0, 0], port));
            tracing::info!(error = %e, "IPv6 is off on this host; listening on IPv4 only");
            bind(v4).map_err(|source| ServeError::Bind { addr: v4, source })
        }
        Err(source) => Err(ServeError::Bind { addr: dual, source }),
    }
}

/// Whether a bind failed because the host has no IPv6 (module off, `disable_ipv6`).
fn ipv6_unavailable(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_codes::EAFNOSUPPORT | libc_codes::EADDRNOTAVAIL | libc_codes::EPROTONOSUPPORT)
    )
}

/// The errno values [`ipv6_unavailable`] recognises (Linux).
mod libc_codes {
    pub const EPROTONOSUPPORT: i32 = 93;
    pub const EAFNOSUPPORT: i32 = 97;
    pub const EADDRNOTAVAIL: i32 = 99;
}

/// Why phones outside this network may not reach `endpoint`, as one sentence that says what
/// to run (for a terminal: it names `appliance endpoint`); `None` for a public address or a
/// dotted DNS name. A warning, not an error: a LAN-only appliance or a test may want exactly
/// this.
pub fn endpoint_warning(endpoint: &Endpoint) -> Option<String> {
    let why = endpoint_unreachable_because(endpoint)?;
    Some(format!(
        "the endpoint {endpoint} {why}: run `appliance endpoint HOST[:PORT]` with this \
         server's public DNS name or address (see \"Reaching your server from outside\" in the README)"
    ))
}

/// The reason alone, in plain words for someone who has no terminal (the dashboard's reader):
/// `"The endpoint 192.168.1.20:51820 is a private address that phones outside this network
/// cannot reach."`; `None` where [`endpoint_warning`] is `None`.
pub fn endpoint_reason(endpoint: &Endpoint) -> Option<String> {
    let why = endpoint_unreachable_because(endpoint)?;
    Some(format!("The endpoint {endpoint} {why}."))
}

/// What is wrong with `endpoint` for phones outside this network, as the end of a sentence
/// starting with the endpoint.
fn endpoint_unreachable_because(endpoint: &Endpoint) -> Option<&'static str> {
    use std::net::IpAddr;
    let why = match endpoint.host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => "is a loopback address that only this machine can reach",
        Ok(ip) if ip.is_unspecified() => "is not an address anyone can dial",
        Ok(IpAddr::V4(v4)) if v4.is_private() || v4.is_link_local() || is_shared_v4(v4) => {
            "is a private address that phones outside this network cannot reach"
        }
        Ok(IpAddr::V6(v6)) if is_private_v6(v6) => {
            "is a private address that phones outside this network cannot reach"
        }
        Ok(_) => return None,
        Err(_) if endpoint.host.eq_ignore_ascii_case("localhost") => {
            "is a loopback name that only this machine can reach"
        }
        Err(_) if !endpoint.host.contains('.') => {
            "is a bare host name that phones outside this network cannot resolve"
        }
        Err(_) => return None,
    };
    Some(why)
}

/// 100.64.0.0/10, the carrier-grade NAT range (RFC 6598).
fn is_shared_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 100 && (o[1] & 0xc0) == 64
}

/// Unique local (fc00::/7) or link-local (fe80::/10) IPv6.
fn is_private_v6(ip: std::net::Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
}

/// The shutdown signals, installed once.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
        }
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = self.int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warn(s: &str) -> Option<String> {
        endpoint_warning(&Endpoint::parse(s, 51820).unwrap())
    }

    #[test]
    fn endpoint_warnings_name_the_problem_and_the_fix() {
        for (e, why) in [
            ("vm", "bare host name"),
            ("localhost", "loopback"),
            ("127.0.0.1:51821", "loopback"),
            ("[::1]", "loopback"),
            ("192.168.1.20", "private"),
            ("10.0.0.5", "private"),
            ("172.16.3.4", "private"),
            ("100.72.1.1", "private"),
            ("[fd00::1]", "private"),
        ] {
            let w = warn(e).unwrap_or_else(|| panic!("{e} should warn"));
            assert!(w.contains(why), "{e}: {w}");
            assert!(w.contains("appliance endpoint"), "{e}: {w}");
            // The dashboard's form: the same reason, no command a phone cannot run.
            let r = endpoint_reason(&Endpoint::parse(e, 51820).unwrap()).unwrap();
            assert!(
                r.contains(why) && r.starts_with("The endpoint "),
                "{e}: {r}"
            );
            assert!(!r.contains("appliance") && !r.contains('`'), "{e}: {r}");
        }
        for e in [
            "vpn.example.org",
            "203.0.113.7:443",
            "[2001:db8::1]",
            "100.128.0.1",
        ] {
            assert_eq!(warn(e), None, "{e}");
            assert_eq!(endpoint_reason(&Endpoint::parse(e, 51820).unwrap()), None);
        }
    }
}
