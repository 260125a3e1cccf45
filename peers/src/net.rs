//! Tunnel addressing: IPv4 networks in CIDR form and the UDP endpoint clients dial.
//!
//! Layer: pure edge type. This module owns [`Ipv4Net`] (an IPv4 address with a prefix length,
//! keeping host bits as given so `10.88.88.1/24` can name the server's interface address while
//! [`Ipv4Net::network`] yields `10.88.88.0`), the comma-separated list form used by `AllowedIPs`,
//! and [`Endpoint`] (`host:port`, IPv6 in brackets). It touches nothing else; in particular
//! [`Endpoint`] never resolves names. Contract: every value printed with `Display` parses back to
//! the same value, and a parse error names the exact text that was refused.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a text could not be read as an IPv4 network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The text (or one entry of a list) was empty.
    #[error(
        "no network given: expected an IPv4 network such as 10.88.88.0/24, \
         with several separated by commas"
    )]
    Empty,
    /// The part before the `/` is not an IPv4 address.
    #[error("'{given}' is not an IPv4 address: expected four numbers 0-255 joined by dots, such as 10.88.88.0")]
    InvalidAddress {
        /// The refused address text.
        given: String,
    },
    /// The part after the `/` is not a number from 0 to 32.
    #[error(
        "'{given}' is not a valid prefix length: use a number from 0 to 32, as in 10.88.88.0/24"
    )]
    InvalidPrefix {
        /// The refused prefix text.
        given: String,
    },
    /// The text is an IPv6 address or network.
    #[error("'{given}' is IPv6; the appliance tunnel carries IPv4 only, so use an IPv4 network such as 10.88.88.0/24")]
    Ipv6NotSupported {
        /// The refused text.
        given: String,
    },
}

/// An IPv4 address together with a prefix length, such as `10.88.88.1/24`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// Pairs `addr` with `prefix`, which must be at most 32. Host bits of `addr` are kept.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        if prefix > 32 {
            return Err(CidrError::InvalidPrefix {
                given: prefix.to_string(),
            });
        }
        Ok(Ipv4Net { addr, prefix })
    }

    /// A single host: `ip/32`.
    pub fn host(ip: Ipv4Addr) -> Self {
        Ipv4Net {
            addr: ip,
            prefix: 32,
        }
    }

    /// The address as given, host bits included.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length, 0 to 32.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u32 {
        // `checked_shl` keeps /0 from overflowing the shift.
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The first address of the network (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The last address of the network (host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `ip` lies inside the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether the two networks share at least one address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// Reads `a.b.c.d/p`; a bare address means `/32`. Surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(CidrError::Empty);
        }
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        if addr_text.contains(':') {
            return Err(CidrError::Ipv6NotSupported {
                given: s.to_owned(),
            });
        }
        let addr = addr_text
            .parse::<Ipv4Addr>()
            .map_err(|_| CidrError::InvalidAddress {
                given: addr_text.to_owned(),
            })?;
        let prefix = match prefix_text {
            None => 32,
            Some(p) => {
                let bad = || CidrError::InvalidPrefix {
                    given: p.to_owned(),
                };
                if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                p.parse::<u8>().map_err(|_| bad())?
            }
        };
        Ipv4Net::new(addr, prefix).map_err(|_| CidrError::InvalidPrefix {
            given: prefix_text.unwrap_or_default().to_owned(),
        })
    }
}

impl FromStr for Ipv4Net {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ipv4Net::parse(s)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Reads a comma-separated list of networks, as in `AllowedIPs = 10.88.88.0/24, 10.9.0.0/16`.
/// Whitespace around entries is ignored; the list and every entry must be non-empty.
pub fn parse_cidr_list(s: &str) -> Result<Vec<Ipv4Net>, CidrError> {
    if s.trim().is_empty() {
        return Err(CidrError::Empty);
    }
    s.split(',').map(Ipv4Net::parse).collect()
}

/// Why a text could not be read as an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The text was empty or only whitespace.
    #[error("no endpoint given: expected host or host:port, such as vpn.example.org:51820")]
    Empty,
    /// The port is missing after a `:` or is not a number from 1 to 65535.
    #[error(
        "'{given}' is not a valid port: use a number from 1 to 65535, as in vpn.example.org:51820"
    )]
    InvalidPort {
        /// The refused port text.
        given: String,
    },
    /// The host is not a DNS name, IPv4 address or bracketed IPv6 address.
    #[error(
        "'{given}' is not a valid host: use a DNS name such as vpn.example.org, an IPv4 address, \
         or an IPv6 address in brackets such as [2001:db8::1]:51820"
    )]
    InvalidHost {
        /// The refused host text.
        given: String,
    },
    /// A URL (`scheme://…`, as pasted from a browser) was given instead of a host.
    #[error(
        "'{given}' is a web address: give only the host name or IP address, optionally with \
         :port, such as vpn.example.org or vpn.example.org:51820 (no https://, no path)"
    )]
    Url {
        /// The refused text.
        given: String,
    },
}

/// Where a client sends its WireGuard packets: a host (DNS name, IPv4 or IPv6 address, IPv6
/// stored without brackets) and a UDP port.
///
/// Build it with [`Endpoint::parse`]; the fields are public for reading and pattern matching, and
/// a hand-built value must keep to the same rules or its `Display` will not parse back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// DNS name or IP address, without brackets.
    pub host: String,
    /// UDP port, 1 to 65535.
    pub port: u16,
}

const MAX_HOST_LEN: usize = 253;

impl Endpoint {
    /// Reads `host`, `host:port`, `[v6]` or `[v6]:port`; a missing port means `default_port`.
    /// A bare IPv6 address without brackets is accepted only as a whole (no port).
    pub fn parse(s: &str, default_port: u16) -> Result<Self, EndpointError> {
        let (host, port) = Self::parse_parts(s)?;
        let port = match port {
            Some(p) => p,
            None if default_port == 0 => {
                return Err(EndpointError::InvalidPort {
                    given: default_port.to_string(),
                })
            }
            None => default_port,
        };
        Ok(Endpoint { host, port })
    }

    /// Splits and checks the text, returning the port only if one was written.
    pub(crate) fn parse_parts(s: &str) -> Result<(String, Option<u16>), EndpointError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(EndpointError::Empty);
        }
        if s.contains("://") {
            return Err(EndpointError::Url {
                given: s.to_owned(),
            });
        }
        let invalid_host = |h: &str| EndpointError::InvalidHost {
            given: h.to_owned(),
        };
        let (host, port_text) = if let Some(rest) = s.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(|| invalid_host(s))?;
            if inside.parse::<Ipv6Addr>().is_err() {
                return Err(invalid_host(inside));
            }
            let port_text = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| invalid_host(s))?),
            };
            (inside, port_text)
        } else if s.parse::<Ipv6Addr>().is_ok() {
            (s, None)
        } else {
            let (host, port_text) = match s.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            };
            if !valid_host_name(host) {
                return Err(invalid_host(host));
            }
            (host, port_text)
        };
        let port = match port_text {
            None => None,
            Some(p) => Some(parse_port(p)?),
        };
        Ok((host.to_owned(), port))
    }
}

fn valid_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= MAX_HOST_LEN
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn parse_port(p: &str) -> Result<u16, EndpointError> {
    let bad = || EndpointError::InvalidPort {
        given: p.to_owned(),
    };
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(port),
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parse_and_display() {
        let n = net("10.88.88.1/24");
        assert_eq!(n.addr(), ip("10.88.88.1"));
        assert_eq!(n.prefix(), 24);
        assert_eq!(n.network(), ip("10.88.88.0"));
        assert_eq!(n.broadcast(), ip("10.88.88.255"));
        assert_eq!(n.to_string(), "10.88.88.1/24");
        assert_eq!(net(" 10.88.88.0/24 ").to_string(), "10.88.88.0/24");
        assert_eq!(net("192.168.1.7"), Ipv4Net::host(ip("192.168.1.7")));
        assert_eq!(net("0.0.0.0/0").network(), ip("0.0.0.0"));
        assert_eq!(net("0.0.0.0/0").broadcast(), ip("255.255.255.255"));
        assert_eq!(net("10.1.2.3/32").broadcast(), ip("10.1.2.3"));
        assert_eq!(net("10.1.2.3/31").network(), ip("10.1.2.2"));
    }

    #[test]
    fn cidr_contains_and_overlaps() {
        let n = net("10.88.88.0/24");
        assert!(n.contains(ip("10.88.88.0")));
        assert!(n.contains(ip("10.88.88.255")));
        assert!(!n.contains(ip("10.88.89.0")));
        assert!(!n.contains(ip("10.88.87.255")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(Ipv4Net::host(ip("1.2.3.4")).contains(ip("1.2.3.4")));
        assert!(!Ipv4Net::host(ip("1.2.3.4")).contains(ip("1.2.3.5")));

        assert!(n.overlaps(&net("10.88.0.0/16")));
        assert!(net("10.88.0.0/16").overlaps(&n));
        assert!(n.overlaps(&net("10.88.88.77/32")));
        assert!(n.overlaps(&net("10.88.88.200/25")));
        assert!(!n.overlaps(&net("10.88.89.0/24")));
        assert!(!net("10.0.0.0/25").overlaps(&net("10.0.0.128/25")));
        assert!(net("0.0.0.0/0").overlaps(&n));
    }

    #[test]
    fn cidr_errors() {
        assert_eq!(Ipv4Net::parse(""), Err(CidrError::Empty));
        assert_eq!(
            Ipv4Net::parse("10.88.88.300/24"),
            Err(CidrError::InvalidAddress {
                given: "10.88.88.300".into()
            })
        );
        assert_eq!(
            Ipv4Net::parse("vpn.example.org"),
            Err(CidrError::InvalidAddress {
                given: "vpn.example.org".into()
            })
        );
        for bad in ["33", "", "-1", "+8", "024", "x", "2 4"] {
            assert_eq!(
                Ipv4Net::parse(&format!("10.0.0.0/{bad}")),
                Err(CidrError::InvalidPrefix { given: bad.into() }),
                "prefix {bad:?}"
            );
        }
        assert_eq!(
            Ipv4Net::parse("fd00::/64"),
            Err(CidrError::Ipv6NotSupported {
                given: "fd00::/64".into()
            })
        );
        assert_eq!(
            Ipv4Net::new(ip("10.0.0.0"), 40),
            Err(CidrError::InvalidPrefix { given: "40".into() })
        );
        assert_eq!(
            CidrError::InvalidAddress { given: "10.1".into() }.to_string(),
            "'10.1' is not an IPv4 address: expected four numbers 0-255 joined by dots, such as 10.88.88.0"
        );
        assert!(CidrError::Ipv6NotSupported {
            given: "::/0".into()
        }
        .to_string()
        .contains("'::/0'"));
    }

    #[test]
    fn cidr_lists() {
        assert_eq!(
            parse_cidr_list("10.88.88.0/24").unwrap(),
            vec![net("10.88.88.0/24")]
        );
        assert_eq!(
            parse_cidr_list(" 10.88.88.0/24 ,10.9.0.0/16,  1.2.3.4 ").unwrap(),
            vec![net("10.88.88.0/24"), net("10.9.0.0/16"), net("1.2.3.4/32")]
        );
        assert_eq!(parse_cidr_list(""), Err(CidrError::Empty));
        assert_eq!(parse_cidr_list("  "), Err(CidrError::Empty));
        assert_eq!(parse_cidr_list("10.0.0.0/8,"), Err(CidrError::Empty));
        assert_eq!(
            parse_cidr_list("10.0.0.0/8, ::/0"),
            Err(CidrError::Ipv6NotSupported {
                given: "::/0".into()
            })
        );
    }

    #[test]
    fn endpoint_forms() {
        let e = |h: &str, p| Endpoint {
            host: h.into(),
            port: p,
        };
        assert_eq!(
            Endpoint::parse("vpn.example.org", 51820),
            Ok(e("vpn.example.org", 51820))
        );
        assert_eq!(
            Endpoint::parse("vpn.example.org:443", 51820),
            Ok(e("vpn.example.org", 443))
        );
        assert_eq!(Endpoint::parse("1.2.3.4:5", 51820), Ok(e("1.2.3.4", 5)));
        assert_eq!(Endpoint::parse("[::1]:51820", 1), Ok(e("::1", 51820)));
        assert_eq!(Endpoint::parse("[::1]", 51821), Ok(e("::1", 51821)));
        assert_eq!(
            Endpoint::parse("2001:db8::1", 51820),
            Ok(e("2001:db8::1", 51820))
        );
        assert_eq!(Endpoint::parse(" host:65535 ", 1), Ok(e("host", 65535)));
    }

    #[test]
    fn endpoint_display_round_trips() {
        for text in [
            "vpn.example.org:51820",
            "1.2.3.4:5",
            "[2001:db8::1]:443",
            "[::1]:1",
        ] {
            let ep = Endpoint::parse(text, 9).unwrap();
            assert_eq!(ep.to_string(), text);
            assert_eq!(Endpoint::parse(&ep.to_string(), 9).unwrap(), ep);
        }
    }

    #[test]
    fn endpoint_errors() {
        let port = |g: &str| Err(EndpointError::InvalidPort { given: g.into() });
        let host = |g: &str| Err(EndpointError::InvalidHost { given: g.into() });
        assert_eq!(Endpoint::parse("", 51820), Err(EndpointError::Empty));
        assert_eq!(Endpoint::parse("   ", 51820), Err(EndpointError::Empty));
        assert_eq!(Endpoint::parse("host:0", 51820), port("0"));
        assert_eq!(Endpoint::parse("host:65536", 51820), port("65536"));
        assert_eq!(Endpoint::parse("host:", 51820), port(""));
        assert_eq!(Endpoint::parse("host:http", 51820), port("http"));
        assert_eq!(Endpoint::parse("host:-1", 51820), port("-1"));
        assert_eq!(Endpoint::parse("host:1:2", 51820), port("1:2"));
        assert_eq!(Endpoint::parse("[::1]:0", 51820), port("0"));
        assert_eq!(Endpoint::parse("host", 0), port("0"));
        assert_eq!(Endpoint::parse(":51820", 51820), host(""));
        assert_eq!(Endpoint::parse("my host:1", 51820), host("my host"));
        assert_eq!(Endpoint::parse("[::1", 51820), host("[::1"));
        assert_eq!(Endpoint::parse("[nope]:1", 51820), host("nope"));
        assert_eq!(Endpoint::parse("[::1]x", 51820), host("[::1]x"));
        assert_eq!(Endpoint::parse("a#b", 51820), host("a#b"));
        assert_eq!(Endpoint::parse("a\nb:1", 51820), host("a\nb"));
        // Pasted from a browser: said to be a web address, not a bad port.
        let url = |g: &str| Err(EndpointError::Url { given: g.into() });
        assert_eq!(
            Endpoint::parse("https://vpn.example.org", 51820),
            url("https://vpn.example.org")
        );
        assert_eq!(
            Endpoint::parse(" http://x:1/y ", 51820),
            url("http://x:1/y")
        );
        assert!(EndpointError::Url {
            given: "http://x".into()
        }
        .to_string()
        .contains("give only the host name or IP address"));
        assert_eq!(
            EndpointError::InvalidPort { given: "0".into() }.to_string(),
            "'0' is not a valid port: use a number from 1 to 65535, as in vpn.example.org:51820"
        );
    }
}
