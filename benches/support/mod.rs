//! What the harness-less benches share. Each bench is its own crate and includes this module
//! whole with `#[path = "support/mod.rs"] mod support;`, using its own share of it (hence the
//! `dead_code` allowance there). Not here: `counting_alloc.rs`, since including it installs it
//! as the process's allocator; the footprint bench and test include it on their own.

pub mod bare_commits;
pub mod history;
pub mod parts;
pub mod raid_job;
pub mod serve;
pub mod temp_dir;
pub mod webhook_sink;
