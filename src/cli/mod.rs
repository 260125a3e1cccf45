//! Commands of the `appliance` CLI that live outside `main.rs`, one file each.
//!
//! Layer: CLI edge, like `main.rs`: parse into checked types, reach the running server
//! through its control socket or the database offline (`crate::call`), print.

pub mod backup;
pub mod endpoint;
pub mod qr;
pub mod status;
