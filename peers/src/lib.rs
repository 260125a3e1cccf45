//! Peer identities for the appliance: the pure layer beneath the CLI, the store and the tunnel.
//!
//! This crate owns the checked types that describe a WireGuard peer of the appliance — its
//! [`PeerName`], its [`Role`], its keys ([`PublicKey`], [`PrivateKey`], [`PresharedKey`]), the
//! tunnel subnet and its [`AddressPool`], the [`Endpoint`] clients dial, the wg-quick
//! [`ClientConfig`] handed to a phone or laptop, and the QR codes that carry that config.
//!
//! It may touch nothing outside memory: no files, sockets, terminals, clocks or OS randomness.
//! Every function that needs randomness takes `rng: &mut impl rand_core::CryptoRngCore`, and
//! every renderer returns a `String` or bytes for a driver to write. Untrusted text enters only
//! through the `parse`/`FromStr` constructors, each with its own error enum whose `Display` is a
//! sentence a user can act on; once a value exists it is valid and callers may trust it.

#![warn(missing_docs)]

pub mod config;
pub mod key;
pub mod name;
pub mod net;
pub mod pool;
pub mod qr;
pub mod role;

pub use config::{ClientConfig, ConfigError, DEFAULT_MTU, PRIVATE_KEY_PLACEHOLDER};
pub use key::{KeyError, PresharedKey, PrivateKey, PublicKey};
pub use name::{NameError, PeerName};
pub use net::{parse_cidr_list, CidrError, Endpoint, EndpointError, Ipv4Net};
pub use pool::{AddressPool, PoolError};
pub use qr::{render_png, render_svg, render_terminal, Cells, QrError, TerminalQr};
pub use role::{Role, RoleError};
