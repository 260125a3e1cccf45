//! appliance: a private job scheduler for a small crew, reachable only over its own
//! userspace WireGuard.
//!
//! One process, one UDP port. Layers, from the wire inwards:
//! - [`tunnel`]: sans-IO WireGuard router (boringtun `Tunn` per peer, demux, allowed-IP check).
//! - [`netstack`]: sans-IO smoltcp stack owning the tunnel address (ICMP echo, TCP 8888), with
//!   byte pipes to the application and, apart, their tokio adapter ([`netstack::stream`]).
//! - [`driver`]: the sans-IO [`driver::Engine`] (router + netstack as one step, `turn(now)`)
//!   and the one task that runs it around the UDP socket and the clock.
//! - [`api`]: hyper on netstack connections; every request has a [`api::Caller`]; routes and
//!   their roles in one table ([`api::routes`]), bodies read into typed structs ([`api::body`]).
//! - [`model`]: the domain model every layer passes around (peers, jobs and runs, handlers,
//!   audit entries), pure data in checked types; [`store`] keeps it, [`api::view`] shows it.
//! - [`registry`] (pure peer decisions), [`peer_ops`] (the one path of every peer change:
//!   decision, audit, commit, what makes it live), [`store`] (redb), [`service`] (operations
//!   of the running server), [`control`] (local Unix control socket for the CLI; requests read
//!   into checked types with [`wire`]).
//! - [`sched`]: sans-IO scheduling core (job specs, triggers, [`sched::Core`]: what fires
//!   when, first fires and catch-up included); [`scheduler`]: the task that drives it ([`scheduler::runner`]), the
//!   API's [`scheduler::Handle`], run records and run stats; [`webhook`]: outbound webhook
//!   delivery; [`queue`] and [`tasks`]: handler calls; [`clock`]: the one clock both drivers
//!   read; [`directory`]: which peer a tunnel address belongs to.
//! - [`server`]: `init` and `serve` wiring; [`paths`]: the data directory; [`status`]: the
//!   `appliance status` report; [`backups`]: rotated backups and restore; [`metrics`]: counters
//!   and the Prometheus text format.
//!
//! See `docs/design.md` for the driver loop and the path a packet takes.

#![warn(missing_docs)]

/// The TCP port the API listens on inside the tunnel: its one definition. It sits here, below
/// both, because the netstack serves it by default ([`netstack::Limits::port`]) and the API
/// names it in its own URLs ([`api::PORT`]); neither layer imports the other for it.
pub const API_PORT: u16 = 8888;

pub mod api;
pub mod backups;
pub mod clock;
pub mod control;
pub mod directory;
pub mod driver;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod model;
pub mod netstack;
pub mod paths;
pub mod peer_ops;
pub mod queue;
pub mod registry;
pub mod sched;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod status;
pub mod store;
pub mod tasks;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
pub mod tunnel;
pub mod webhook;
pub mod wire;
