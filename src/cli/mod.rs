//! Subcommands kept out of `main.rs` (which still holds the older ones): each file is one
//! command family at the CLI edge — parse, validate (exit 2 before anything is written), call
//! the running server or the database, print.

pub mod backup;
