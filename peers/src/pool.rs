//! The address pool: which tunnel address a new peer gets.
//!
//! Layer: pure core logic. This module owns the rule for handing out host addresses inside the
//! tunnel subnet; it keeps no record of what is taken — the caller passes the addresses already
//! in use (from the store) on every call, so the pool can never drift from the stored truth.
//! Contract: [`AddressPool::allocate`] returns the lowest address for which
//! [`AddressPool::contains`] is true and that is not in `used`, or [`PoolError::Full`].
//!
//! Usable hosts: for a prefix of /30 or shorter, every address except the network and broadcast
//! addresses; for /31, both addresses (RFC 3021 point-to-point); for /32, the single address.
//! The server's own address is never handed out.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use crate::net::Ipv4Net;

/// Why no address could be allocated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every usable address of the subnet is the server's or already used by a peer.
    #[error(
        "every address in {subnet} is taken ({capacity} peers); \
         remove a peer or choose a larger subnet"
    )]
    Full {
        /// The tunnel subnet, in network form (`10.88.88.0/24`).
        subnet: Ipv4Net,
        /// How many peers the subnet can hold besides the server.
        capacity: usize,
    },
}

/// Hands out peer addresses inside the tunnel subnet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AddressPool {
    subnet: Ipv4Net,
    server: Ipv4Addr,
}

impl AddressPool {
    /// A pool over `subnet` (host bits are ignored) that never hands out `server`. The server
    /// address normally lies inside the subnet, but need not.
    pub fn new(subnet: Ipv4Net, server: Ipv4Addr) -> Self {
        // The prefix is already valid, so `new` cannot fail here.
        let subnet = Ipv4Net::new(subnet.network(), subnet.prefix()).unwrap_or(subnet);
        AddressPool { subnet, server }
    }

    /// The subnet in network form, such as `10.88.88.0/24`.
    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// The server's address, which is never allocated.
    pub fn server(&self) -> Ipv4Addr {
        self.server
    }

    /// First and last usable host, as integers.
    fn host_range(&self) -> (u32, u32) {
        let first = u32::from(self.subnet.network());
        let last = u32::from(self.subnet.broadcast());
        if self.subnet.prefix() <= 30 {
            (first + 1, last - 1)
        } else {
            (first, last)
        }
    }

    /// How many peers the subnet can hold: the usable hosts minus the server.
    pub fn capacity(&self) -> usize {
        let (first, last) = self.host_range();
        let hosts = u64::from(last - first) + 1;
        let server = u64::from(self.in_range(self.server));
        usize::try_from(hosts - server).unwrap_or(usize::MAX)
    }

    fn in_range(&self, ip: Ipv4Addr) -> bool {
        let (first, last) = self.host_range();
        (first..=last).contains(&u32::from(ip))
    }

    /// The lowest usable address that is not the server's and not in `used`.
    pub fn allocate<'a>(
        &self,
        used: impl IntoIterator<Item = &'a Ipv4Addr>,
    ) -> Result<Ipv4Addr, PoolError> {
        let (first, last) = self.host_range();
        let taken: HashSet<u32> = used
            .into_iter()
            .map(|ip| u32::from(*ip))
            .chain([u32::from(self.server)])
            .filter(|ip| (first..=last).contains(ip))
            .collect();
        // At most `taken.len() + 1` candidates are examined.
        (first..=last)
            .find(|ip| !taken.contains(ip))
            .map(Ipv4Addr::from)
            .ok_or(PoolError::Full {
                subnet: self.subnet,
                capacity: self.capacity(),
            })
    }

    /// Whether `ip` is an address this pool could hand out: a usable host of the subnet that
    /// is not the server's.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.in_range(ip) && ip != self.server
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn pool(subnet: &str, server: &str) -> AddressPool {
        AddressPool::new(subnet.parse().unwrap(), ip(server))
    }

    #[test]
    fn first_allocation_skips_network_and_server() {
        let p = pool("10.88.88.0/24", "10.88.88.1");
        assert_eq!(p.allocate([]), Ok(ip("10.88.88.2")));
        assert_eq!(p.capacity(), 253);
    }

    #[test]
    fn interface_form_subnet_is_normalised() {
        let p = pool("10.88.88.1/24", "10.88.88.1");
        assert_eq!(p.subnet().to_string(), "10.88.88.0/24");
        assert_eq!(p.allocate([]), Ok(ip("10.88.88.2")));
    }

    #[test]
    fn returns_lowest_free() {
        let p = pool("10.88.88.0/24", "10.88.88.1");
        let used = [ip("10.88.88.2"), ip("10.88.88.3"), ip("10.88.88.5")];
        assert_eq!(p.allocate(&used), Ok(ip("10.88.88.4")));
        // Addresses outside the subnet in `used` are harmless.
        let used = [ip("192.168.0.2"), ip("10.88.88.2")];
        assert_eq!(p.allocate(&used), Ok(ip("10.88.88.3")));
    }

    #[test]
    fn never_hands_out_broadcast() {
        let p = pool("10.88.88.0/24", "10.88.88.1");
        let used: Vec<Ipv4Addr> = (2..=253).map(|i| Ipv4Addr::new(10, 88, 88, i)).collect();
        assert_eq!(p.allocate(&used), Ok(ip("10.88.88.254")));
        let mut all = used.clone();
        all.push(ip("10.88.88.254"));
        let err = p.allocate(&all).unwrap_err();
        assert_eq!(
            err,
            PoolError::Full {
                subnet: "10.88.88.0/24".parse().unwrap(),
                capacity: 253
            }
        );
        assert_eq!(
            err.to_string(),
            "every address in 10.88.88.0/24 is taken (253 peers); remove a peer or choose a larger subnet"
        );
    }

    #[test]
    fn server_in_the_middle_is_skipped() {
        let p = pool("10.0.0.0/29", "10.0.0.3");
        let used = [ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(p.allocate(&used), Ok(ip("10.0.0.4")));
        assert_eq!(p.capacity(), 5);
    }

    #[test]
    fn slash_30_holds_one_peer() {
        let p = pool("10.0.0.0/30", "10.0.0.1");
        assert_eq!(p.capacity(), 1);
        let a = p.allocate([]).unwrap();
        assert_eq!(a, ip("10.0.0.2"));
        assert_eq!(
            p.allocate([&a]),
            Err(PoolError::Full {
                subnet: "10.0.0.0/30".parse().unwrap(),
                capacity: 1
            })
        );
    }

    #[test]
    fn slash_31_uses_both_addresses() {
        let p = pool("10.0.0.0/31", "10.0.0.0");
        assert_eq!(p.capacity(), 1);
        assert_eq!(p.allocate([]), Ok(ip("10.0.0.1")));
        assert!(p.contains(ip("10.0.0.1")));
        assert!(!p.contains(ip("10.0.0.0")));
        assert!(p.allocate([&ip("10.0.0.1")]).is_err());
    }

    #[test]
    fn slash_32_has_room_only_without_the_server() {
        let p = pool("10.0.0.7/32", "10.0.0.7");
        assert_eq!(p.capacity(), 0);
        assert_eq!(
            p.allocate([]),
            Err(PoolError::Full {
                subnet: "10.0.0.7/32".parse().unwrap(),
                capacity: 0
            })
        );
        let p = pool("10.0.0.7/32", "10.0.0.1");
        assert_eq!(p.capacity(), 1);
        assert_eq!(p.allocate([]), Ok(ip("10.0.0.7")));
    }

    #[test]
    fn server_outside_subnet_takes_nothing() {
        let p = pool("10.0.0.0/30", "192.168.1.1");
        assert_eq!(p.capacity(), 2);
        assert_eq!(p.allocate([]), Ok(ip("10.0.0.1")));
    }

    #[test]
    fn contains_means_allocatable() {
        let p = pool("10.88.88.0/24", "10.88.88.1");
        assert!(p.contains(ip("10.88.88.2")));
        assert!(p.contains(ip("10.88.88.254")));
        assert!(!p.contains(ip("10.88.88.0")));
        assert!(!p.contains(ip("10.88.88.1")));
        assert!(!p.contains(ip("10.88.88.255")));
        assert!(!p.contains(ip("10.88.89.2")));
    }

    #[test]
    fn huge_subnet_is_cheap() {
        let p = pool("10.0.0.0/8", "10.0.0.1");
        assert_eq!(p.capacity(), (1 << 24) - 3);
        assert_eq!(p.allocate([]), Ok(ip("10.0.0.2")));
        let p = pool("0.0.0.0/0", "0.0.0.1");
        assert_eq!(p.allocate([]), Ok(ip("0.0.0.2")));
    }
}
