//! The `appliance` command line: `init`, `serve`, `peer add|list|show|role|enable|disable|remove|rotate`,
//! `audit`, `doctor`, `endpoint`, `status`, `backup`, `restore`, and the hidden `man DIR` that
//! writes the manual pages at packaging time.
//!
//! Layer: CLI edge. This file only parses the arguments ([`cli::args`]) and dispatches to the
//! command modules in `cli/`, which check them into typed values, send each command to the
//! running server through its control socket or — when nothing serves — run the same
//! operation against the database directly, and print the results.
//! Only `init`, `serve` and `restore` create a data directory; every other command refuses a
//! missing one.
//! Exit codes: 0 success, 2 bad input, a refused request or no appliance data, 3 the database is
//! empty, damaged or from a newer version (restarting will not help: the systemd unit's
//! `RestartPreventExitStatus=3`), 1 anything else.
#![allow(clippy::disallowed_methods)] // CLI edge

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use appliance::paths::DataDir;
use clap::Parser;
use cli::args::{Cli, Command, LogFormat};
use cli::format::{terminal_size, wrap};

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
        } => cli::serve::init(&dir, endpoint, listen_port, &subnet),
        Command::Serve(args) => cli::serve::serve(&dir, args),
        Command::Peer(cmd) => cli::peer::run(&dir, cmd),
        Command::Audit { json, since, limit } => cli::audit::run(&dir, json, since, limit),
        Command::Doctor { json, quarantine } => cli::doctor::run(&dir, json, quarantine),
        Command::Endpoint { host, json } => cli::endpoint::run(&dir, host, json),
        Command::Status { json } => cli::status::run(&dir, json),
        Command::Backup { file } => cli::backup::cmd_backup(&dir, &file),
        Command::Restore { file, force } => cli::backup::cmd_restore(&dir, &file, force),
        Command::Man { out_dir } => cli::man::run(&out_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let line = format!("error: {}", f.message);
            // On a terminal, break the sentence at its words rather than inside them.
            match terminal_size(libc::STDERR_FILENO) {
                Some((columns, _)) => eprintln!("{}", wrap(&line, columns)),
                None => eprintln!("{line}"),
            }
            ExitCode::from(f.code)
        }
    }
}
