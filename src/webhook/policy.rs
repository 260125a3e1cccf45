//! Where a webhook may connect: the destination policy.
//!
//! Layer: pure core (no sockets, no DNS, no clock). [`NetPolicy`] decides, for one [`IpAddr`],
//! whether the executor may open a connection to it, and if not, why ([`Refusal`]). The
//! executor's connector asks it for every address it is about to dial — after DNS, on every
//! attempt — and the job API asks it about literal-IP URLs at create and patch time.
//!
//! The rules, in order:
//! 1. Addresses in a *forbidden* network (the tunnel subnet, which holds the appliance's own
//!    API address) are refused whatever else is configured: a webhook must never call the
//!    appliance itself.
//! 2. Addresses inside an *allowed* network (`serve --allow-webhook-net CIDR`) are accepted.
//! 3. Everything that is not public unicast is refused: loopback, unspecified, private,
//!    shared (CGNAT), link-local, multicast, broadcast, documentation, benchmarking and reserved
//!    ranges, IPv6 unique-local and site-local, and every IPv6 form that embeds an IPv4 address
//!    (IPv4-mapped, IPv4-compatible, 6to4, NAT64) when the embedded address is not public.
//! 4. The rest (public unicast) is accepted — as [`Permit::Public`], which tells the driver to
//!    make one more check this pure module cannot: that the address is not one of the host's
//!    own (see `webhook::GuardedConnector`).
//!
//! IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are judged as the IPv4 address they carry,
//! for all three lists. [`parse_host`] reads a URL host the way the C resolver would, so
//! `0`, `2130706433` and `0x7f.1` are recognised as the IPv4 addresses they denote.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 network in CIDR form (`192.168.1.0/24`, `fd00::/8`; a bare address is a
/// single host). Host bits are cleared on parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a text is not a network in CIDR form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpNetError {
    /// The part before the `/` is not an IPv4 or IPv6 address.
    #[error("'{0}' is not an IP address: give a network such as 192.168.1.0/24 or fd00::/8")]
    Address(String),
    /// The prefix length is not a number within the address family's width.
    #[error("'{0}' is not a valid prefix length: use 0-32 for IPv4 or 0-128 for IPv6, as in 192.168.1.0/24")]
    Prefix(String),
}

impl IpNet {
    /// The network `addr/prefix` (host bits cleared); `None` if the prefix is too long.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNet> {
        let addr = match addr {
            IpAddr::V4(a) if prefix <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) if prefix <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
            _ => return None,
        };
        Some(IpNet { addr, prefix })
    }

    /// Whether `ip` lies inside this network (an IPv4 network never contains an IPv6 address:
    /// normalise mapped addresses first).
    pub fn contains(&self, ip: IpAddr) -> bool {
        IpNet::new(ip, self.prefix).is_some_and(|n| n.addr == self.addr)
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<IpNet, IpNetError> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| IpNetError::Address(a.to_owned()))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => width,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .map_err(|_| IpNetError::Prefix(p.to_owned()))?,
            Some(p) => return Err(IpNetError::Prefix(p.to_owned())),
        };
        IpNet::new(addr, prefix).ok_or_else(|| IpNetError::Prefix(prefix.to_string()))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl From<peers::Ipv4Net> for IpNet {
    fn from(n: peers::Ipv4Net) -> IpNet {
        IpNet::new(IpAddr::V4(n.network()), n.prefix()).expect("an Ipv4Net prefix is at most 32")
    }
}

/// Why a destination address is refused. The `Display` is the sentence recorded in the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The address lies in a network no setting can open (the appliance's own tunnel subnet).
    #[error(
        "destination {ip} is inside the appliance's own network {net}; a webhook can never \
         call the appliance itself"
    )]
    Appliance {
        /// The address refused.
        ip: IpAddr,
        /// The appliance's network it lies in.
        net: IpNet,
    },
    /// The address is not public unicast and no `--allow-webhook-net` covers it.
    #[error(
        "destination {ip} is not a public address ({kind}); allow a LAN range with \
         serve --allow-webhook-net"
    )]
    NotPublic {
        /// The address refused.
        ip: IpAddr,
        /// What it is (loopback, private, link-local, …).
        kind: &'static str,
    },
    /// The address is public but belongs to the appliance's host (found by the driver, not by
    /// [`NetPolicy::check`]).
    #[error(
        "destination {ip} is an address of the appliance's own host; webhooks cannot call it \
         unless serve --allow-webhook-net names it"
    )]
    OwnHost {
        /// The address refused.
        ip: IpAddr,
    },
}

/// Why an address is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// An `--allow-webhook-net` network covers it: the operator opted it in.
    Allowed,
    /// It is public unicast: the driver must still make sure it is not the host's own.
    Public,
}

/// The destination policy: see the module documentation for the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPolicy {
    allowed: Vec<IpNet>,
    forbidden: Vec<IpNet>,
}

impl NetPolicy {
    /// Public unicast only, plus the `allowed` networks (`serve --allow-webhook-net`).
    pub fn new(allowed: Vec<IpNet>) -> NetPolicy {
        NetPolicy {
            allowed,
            forbidden: Vec::new(),
        }
    }

    /// Also refuses `net` whatever the allowed networks say (the tunnel subnet).
    pub fn forbid(mut self, net: IpNet) -> NetPolicy {
        if !self.forbidden.contains(&net) {
            self.forbidden.push(net);
        }
        self
    }

    /// The networks opted in with `--allow-webhook-net`.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }

    /// Whether a connection to `ip` is permitted (and on what grounds), and if not, why.
    pub fn check(&self, ip: IpAddr) -> Result<Permit, Refusal> {
        let ip = canonical(ip);
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        for net in &self.forbidden {
            if net.contains(ip) || embedded.is_some_and(|e| net.contains(e)) {
                return Err(Refusal::Appliance { ip, net: *net });
            }
        }
        if self.allowed.iter().any(|n| n.contains(ip)) {
            return Ok(Permit::Allowed);
        }
        match non_public(ip) {
            Some(kind) => Err(Refusal::NotPublic { ip, kind }),
            None => Ok(Permit::Public),
        }
    }
}

/// `::ffff:a.b.c.d` becomes `a.b.c.d`; everything else is returned as is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The IPv4 address a 6to4 (`2002::/16`) or NAT64 (`64:ff9b::/96`) address carries.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    None
}

/// Why `ip` is not public unicast (`None` when it is). IANA special-purpose registries.
fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn in4(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    IpNet::new(IpAddr::V4(net.into()), prefix).is_some_and(|n| n.contains(IpAddr::V4(ip)))
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u8, &str)] = &[
        ([0, 0, 0, 0], 32, "unspecified"),
        ([0, 0, 0, 0], 8, "\"this network\""),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "shared address space (CGNAT)"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "IETF protocol assignments"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([255, 255, 255, 255], 32, "broadcast"),
        ([240, 0, 0, 0], 4, "reserved"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in4(ip, *net, *prefix))
        .map(|(_, _, kind)| *kind)
}

fn in6(ip: Ipv6Addr, net: [u16; 8], prefix: u8) -> bool {
    IpNet::new(IpAddr::V6(net.into()), prefix).is_some_and(|n| n.contains(IpAddr::V6(ip)))
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // 6to4 and NAT64 reach an IPv4 address: judge that one.
    if let Some(v4) = embedded_v4(ip) {
        return non_public_v4(v4);
    }
    const RANGES: &[([u16; 8], u8, &str)] = &[
        ([0, 0, 0, 0, 0, 0, 0, 0], 96, "IPv4-compatible"),
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use NAT64"),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
        (
            [0x2001, 0, 0, 0, 0, 0, 0, 0],
            23,
            "IETF protocol assignments",
        ),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local"),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
    ];
    if let Some((_, _, kind)) = RANGES
        .iter()
        .find(|(net, prefix, _)| in6(ip, *net, *prefix))
    {
        return Some(kind);
    }
    // Only 2000::/3 is allocated as global unicast.
    (!in6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3)).then_some("reserved")
}

/// A URL host as the executor will dial it: an IP address, or a name for DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host<'a> {
    /// A literal address: checked, then dialled.
    Ip(IpAddr),
    /// A name: resolved, then each address checked.
    Name(&'a str),
}

/// Reads a URL host (`uri.host()`, IPv6 in brackets). Besides dotted quads and IPv6, it knows
/// the numeric forms the C resolver accepts (`inet_aton`): `0`, `2130706433`, `127.1`,
/// `0x7f.0.0.1`, `0177.0.0.1` — so they are judged as the addresses they denote instead of
/// going to DNS, which would turn them into those addresses anyway. `localhost` and names
/// under `.localhost` are loopback (RFC 6761).
pub fn parse_host(host: &str) -> Host<'_> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Host::Ip(ip);
    }
    if let Some(v4) = inet_aton(bare) {
        return Host::Ip(IpAddr::V4(v4));
    }
    let lower = bare.trim_end_matches('.').to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    Host::Name(host)
}

/// The BSD `inet_aton` forms: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the
/// last part fills the remaining bytes.
fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() {
        return None;
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or(p.strip_prefix("0X")) {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        nums.push(u32::from_str_radix(digits, radix).ok()?);
    }
    let (last, head) = nums.split_last()?;
    let mut value: u32 = 0;
    for (i, n) in head.iter().enumerate() {
        if *n > 255 {
            return None;
        }
        value |= n << (24 - 8 * i);
    }
    let room = 32 - 8 * head.len() as u32;
    if room < 32 && *last >= 1 << room {
        return None;
    }
    Some(Ipv4Addr::from(value | last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        match parse_host(s) {
            Host::Ip(ip) => ip,
            Host::Name(n) => panic!("{n} did not parse as an address"),
        }
    }

    /// The appliance's production policy with the default tunnel subnet.
    fn default_policy() -> NetPolicy {
        NetPolicy::new(vec![]).forbid(net("10.88.88.0/24"))
    }

    fn kind(p: &NetPolicy, host: &str) -> &'static str {
        match p.check(ip(host)) {
            Err(Refusal::NotPublic { kind, .. }) => kind,
            other => panic!("{host}: expected a NotPublic refusal, got {other:?}"),
        }
    }

    /// Every form named in the issue is refused by default, with the reason in the sentence.
    #[test]
    fn the_issue_s_destinations_are_refused_by_default() {
        let p = default_policy();
        for (host, want) in [
            ("127.0.0.1", "loopback"),
            ("localhost", "loopback"),
            ("LocalHost.", "loopback"),
            ("api.localhost", "loopback"),
            ("[::1]", "loopback"),
            ("0", "unspecified"),
            ("0.0.0.0", "unspecified"),
            ("[::]", "unspecified"),
            ("2130706433", "loopback"),
            ("0x7f.1", "loopback"),
            ("0177.0.0.1", "loopback"),
            ("127.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("[::ffff:127.0.0.1]", "loopback"),
            ("[::ffff:169.254.169.254]", "link-local"),
            ("[::127.0.0.1]", "IPv4-compatible"),
            ("192.168.1.10", "private"),
            ("10.0.0.1", "private"),
            ("172.16.5.4", "private"),
            ("172.31.255.255", "private"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            ("192.0.2.7", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.7", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("[fe80::1]", "link-local"),
            ("[fd00::1]", "unique-local"),
            ("[fc00::1]", "unique-local"),
            ("[ff02::1]", "multicast"),
            ("[2001:db8::1]", "documentation"),
            ("[2002:7f00:1::]", "loopback"),   // 6to4 of 127.0.0.1
            ("[2002:c0a8:101::]", "private"),  // 6to4 of 192.168.1.1
            ("[64:ff9b::7f00:1]", "loopback"), // NAT64 of 127.0.0.1
            ("[64:ff9b::a9fe:a9fe]", "link-local"), // NAT64 of 169.254.169.254
            ("[2001::1]", "IETF protocol assignments"), // Teredo
            ("[4000::1]", "reserved"),
        ] {
            assert_eq!(kind(&p, host), want, "{host}");
        }
        let e = p.check(ip("127.0.0.1")).unwrap_err().to_string();
        assert_eq!(
            e,
            "destination 127.0.0.1 is not a public address (loopback); allow a LAN range with \
             serve --allow-webhook-net"
        );
        // A mapped address is reported as the IPv4 address it is.
        let e = p.check(ip("[::ffff:127.0.0.1]")).unwrap_err().to_string();
        assert!(e.starts_with("destination 127.0.0.1 "), "{e}");
    }

    #[test]
    fn public_unicast_is_accepted() {
        let p = default_policy();
        for host in [
            "162.159.135.232",
            "1.1.1.1",
            "8.8.8.8",
            "100.128.0.1", // just past CGNAT
            "172.32.0.1",  // just past 172.16/12
            "[2606:4700::6810:84e5]",
            "[2002:a29f:87e8::]", // 6to4 of a public address
            "[64:ff9b::808:808]", // NAT64 of 8.8.8.8
            "[::ffff:1.1.1.1]",
        ] {
            assert_eq!(p.check(ip(host)), Ok(Permit::Public), "{host}");
        }
    }

    /// The tunnel subnet stays closed even when an allowed network covers it, in every form.
    #[test]
    fn the_tunnel_subnet_is_refused_even_when_allowed() {
        let p = NetPolicy::new(vec![net("10.0.0.0/8"), net("::/0"), net("0.0.0.0/0")])
            .forbid(net("10.88.88.0/24"));
        for host in [
            "10.88.88.1",
            "10.88.88.7",
            "[::ffff:10.88.88.1]",
            "[2002:a58:5801::]",
            "[64:ff9b::a58:5801]",
            "0x0a.0x58.0x58.1",
            "173561857", // 10.88.88.1 as one number
        ] {
            match p.check(ip(host)) {
                Err(Refusal::Appliance { net: n, .. }) => assert_eq!(n, net("10.88.88.0/24")),
                other => panic!("{host}: {other:?}"),
            }
        }
        let e = p.check(ip("10.88.88.1")).unwrap_err().to_string();
        assert_eq!(
            e,
            "destination 10.88.88.1 is inside the appliance's own network 10.88.88.0/24; a \
             webhook can never call the appliance itself"
        );
        // Next door is allowed by the allow-list.
        assert_eq!(p.check(ip("10.88.89.1")), Ok(Permit::Allowed));
    }

    #[test]
    fn allowed_networks_open_only_themselves() {
        let p = NetPolicy::new(vec![
            net("127.0.0.0/8"),
            net("192.168.1.0/24"),
            net("fd00::/8"),
        ])
        .forbid(net("10.88.88.0/24"));
        for host in [
            "127.0.0.1",
            "localhost",
            "2130706433",
            "[::ffff:127.0.0.1]",
            "192.168.1.200",
            "[fd12::1]",
        ] {
            assert_eq!(p.check(ip(host)), Ok(Permit::Allowed), "{host}");
        }
        assert_eq!(p.check(ip("1.1.1.1")), Ok(Permit::Public));
        for host in ["192.168.2.1", "[::1]", "169.254.169.254", "0", "10.0.0.1"] {
            assert!(p.check(ip(host)).is_err(), "{host}");
        }
    }

    #[test]
    fn networks_parse_and_refuse_nonsense() {
        assert_eq!(net("192.168.1.77/24").to_string(), "192.168.1.0/24");
        assert_eq!(net("10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(net("fd00::1/8").to_string(), "fd00::/8");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert!(net("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        assert!(!net("0.0.0.0/0").contains("::1".parse().unwrap()));
        for (bad, err) in [
            ("10.0.0.0/33", IpNetError::Prefix("33".into())),
            ("fd00::/129", IpNetError::Prefix("129".into())),
            ("10.0.0.0/", IpNetError::Prefix("".into())),
            ("10.0.0.0/+8", IpNetError::Prefix("+8".into())),
            ("lan/24", IpNetError::Address("lan".into())),
            ("", IpNetError::Address("".into())),
        ] {
            assert_eq!(bad.parse::<IpNet>(), Err(err), "{bad}");
        }
    }

    #[test]
    fn hosts_are_read_like_the_c_resolver_reads_them() {
        assert_eq!(parse_host("0"), Host::Ip("0.0.0.0".parse().unwrap()));
        assert_eq!(
            parse_host("2130706433"),
            Host::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(parse_host("127.1"), Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(
            parse_host("10.1.258"),
            Host::Ip("10.1.1.2".parse().unwrap())
        );
        assert_eq!(
            parse_host("0x7f000001"),
            Host::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(parse_host("[::1]"), Host::Ip("::1".parse().unwrap()));
        for name in [
            "discord.com",
            "1.2.3.4.5",
            "256.1.1.1",
            "0x",
            "08.1.1.1",
            "1e3",
            "4294967296",
        ] {
            assert_eq!(parse_host(name), Host::Name(name), "{name}");
        }
    }
}
