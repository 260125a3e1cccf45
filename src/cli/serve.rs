//! `appliance init` and `appliance serve`: the two commands that may create a data directory.
//!
//! Every flag is checked here, before anything touches the disk; then `serve` builds the tokio
//! runtime and hands the checked options to [`appliance::server::serve`].

use appliance::paths::DataDir;
use appliance::server::{self, InitOptions, ServeOptions};
use peers::{Endpoint, Ipv4Net};

use super::args::ServeArgs;
use super::{fatal, init_failure, usage, Failure};

pub fn init(
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

pub fn serve(dir: &DataDir, args: ServeArgs) -> Result<(), Failure> {
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
    // The stack arms a few connections past the API's per-peer cap (for its 429), so one peer
    // alone must fit in the total.
    let stack_per_peer = args
        .max_connections_per_peer
        .saturating_add(appliance::netstack::Limits::REFUSAL_HEADROOM);
    if args.max_connections < stack_per_peer {
        return Err(usage(format!(
            "--max-connections must be at least --max-connections-per-peer plus {} ({stack_per_peer}), so that one peer at its cap still fits",
            appliance::netstack::Limits::REFUSAL_HEADROOM
        )));
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
        jobs: appliance::scheduler::Config {
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
        limits: appliance::netstack::Limits {
            total: args.max_connections,
            ..appliance::netstack::Limits::for_api_cap(args.max_connections_per_peer)
        },
        backups,
        first_run,
    };
    rt.block_on(server::serve(dir, opts, shutdown))
        .map_err(|e| match e {
            server::ServeError::Init(e) => init_failure(e),
            e => fatal(e),
        })
}
