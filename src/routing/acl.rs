//! Source address -> trunk, by longest-prefix match over every trunk's ACL.
//!
//! Prefixes are grouped by length, each group a sorted array searched by binary search, longest length first.
//! A lookup touches at most one array per distinct prefix length in use (a handful in practice) and allocates
//! nothing. Overlapping prefixes are allowed (a /32 inside a /24 of another trunk wins); identical prefixes in
//! two trunks are rejected at config load.

use super::TrunkId;
use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Clone, Default)]
struct Family<T> {
    /// `(prefix length, sorted (masked network, trunk))`, longest length first.
    groups: Vec<(u8, Vec<(T, TrunkId)>)>,
}

trait Bits: Copy + Ord {
    const WIDTH: u8;
    fn mask(self, len: u8) -> Self;
}

impl Bits for u32 {
    const WIDTH: u8 = 32;
    fn mask(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (32 - u32::from(len)))
        }
    }
}

impl Bits for u128 {
    const WIDTH: u8 = 128;
    fn mask(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (128 - u32::from(len)))
        }
    }
}

impl<T: Bits> Family<T> {
    fn insert(&mut self, net: T, len: u8, trunk: TrunkId) {
        let len = len.min(T::WIDTH);
        let net = net.mask(len);
        match self.groups.iter_mut().find(|(l, _)| *l == len) {
            Some((_, v)) => v.push((net, trunk)),
            None => self.groups.push((len, vec![(net, trunk)])),
        }
    }

    fn finish(&mut self) {
        self.groups.sort_by_key(|g| std::cmp::Reverse(g.0));
        for (_, v) in &mut self.groups {
            v.sort_by_key(|a| a.0);
            // Equal prefixes in two trunks are a config error; if one slips through, the first trunk keeps it.
            v.dedup_by(|b, a| a.0 == b.0);
        }
    }

    fn lookup(&self, addr: T) -> Option<TrunkId> {
        for (len, v) in &self.groups {
            let key = addr.mask(*len);
            if let Ok(i) = v.binary_search_by(|e| e.0.cmp(&key)) {
                return v.get(i).map(|e| e.1);
            }
        }
        None
    }
}

/// Which trunk a source address belongs to.
#[derive(Debug, Clone, Default)]
pub struct AclTable {
    v4: Family<u32>,
    v6: Family<u128>,
}

impl AclTable {
    /// Builds from `(trunk, its ACL)` pairs.
    pub fn new<'a>(entries: impl IntoIterator<Item = (TrunkId, &'a [IpNet])>) -> Self {
        let mut t = AclTable::default();
        for (trunk, nets) in entries {
            for net in nets {
                match net {
                    IpNet::V4(n) => t.v4.insert(u32::from(n.network()), n.prefix_len(), trunk),
                    IpNet::V6(n) => t.v6.insert(u128::from(n.network()), n.prefix_len(), trunk),
                }
            }
        }
        t.v4.finish();
        t.v6.finish();
        t
    }

    /// The trunk whose most specific prefix holds `addr`. IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack
    /// socket reports for IPv4 peers) is matched as IPv4.
    pub fn classify(&self, addr: IpAddr) -> Option<TrunkId> {
        match normalise(addr) {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }
}

/// IPv4-mapped IPv6 to IPv4; everything else unchanged.
pub fn normalise(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(a),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|x| x.parse().unwrap()).collect()
    }

    #[test]
    fn longest_prefix_wins_across_trunks() {
        let a = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        let b = nets(&["10.1.2.3/32", "2001:db8:1::/48"]);
        let t = AclTable::new([(TrunkId(0), a.as_slice()), (TrunkId(1), b.as_slice())]);
        assert_eq!(t.classify("10.9.9.9".parse().unwrap()), Some(TrunkId(0)));
        assert_eq!(t.classify("10.1.2.3".parse().unwrap()), Some(TrunkId(1)));
        assert_eq!(t.classify("11.0.0.1".parse().unwrap()), None);
        assert_eq!(
            t.classify("2001:db8:1::5".parse().unwrap()),
            Some(TrunkId(1))
        );
        assert_eq!(
            t.classify("2001:db8:2::5".parse().unwrap()),
            Some(TrunkId(0))
        );
        assert_eq!(t.classify("2001:db9::".parse().unwrap()), None);
    }

    #[test]
    fn ipv4_mapped_is_matched_as_ipv4() {
        let a = nets(&["192.0.2.0/24"]);
        let t = AclTable::new([(TrunkId(3), a.as_slice())]);
        assert_eq!(
            t.classify("::ffff:192.0.2.7".parse().unwrap()),
            Some(TrunkId(3))
        );
        assert_eq!(t.classify("::ffff:192.0.3.7".parse().unwrap()), None);
    }

    #[test]
    fn default_route_prefix() {
        let a = nets(&["0.0.0.0/0"]);
        let b = nets(&["192.0.2.0/24"]);
        let t = AclTable::new([(TrunkId(0), a.as_slice()), (TrunkId(1), b.as_slice())]);
        assert_eq!(t.classify("8.8.8.8".parse().unwrap()), Some(TrunkId(0)));
        assert_eq!(t.classify("192.0.2.1".parse().unwrap()), Some(TrunkId(1)));
        assert_eq!(t.classify("::1".parse().unwrap()), None);
    }

    proptest! {
        /// The table agrees with a linear scan that picks the longest containing prefix.
        #[test]
        fn agrees_with_linear_scan(
            prefixes in proptest::collection::vec((any::<u32>(), 0u8..=32, 0u16..4), 1..40),
            probes in proptest::collection::vec(any::<u32>(), 1..50),
        ) {
            let mut per_trunk: Vec<Vec<IpNet>> = vec![Vec::new(); 4];
            let mut seen = std::collections::HashSet::new();
            for (a, len, t) in &prefixes {
                let net = IpNet::new(IpAddr::V4((*a).into()), *len).unwrap().trunc();
                if seen.insert(net) {
                    per_trunk[*t as usize].push(net);
                }
            }
            let table = AclTable::new(per_trunk.iter().enumerate().map(|(i, v)| (TrunkId(i as u16), v.as_slice())));
            for p in probes {
                // Probe both random addresses and addresses inside configured prefixes.
                for addr in [p, u32::from(match per_trunk.iter().flatten().nth(p as usize % seen.len()) { Some(IpNet::V4(n)) => n.network(), _ => 0.into() }) | (p & 0xff)] {
                    let ip = IpAddr::V4(addr.into());
                    let want = per_trunk.iter().enumerate()
                        .flat_map(|(i, v)| v.iter().map(move |n| (i, n)))
                        .filter(|(_, n)| n.contains(&ip))
                        .max_by_key(|(_, n)| n.prefix_len())
                        .map(|(i, _)| TrunkId(i as u16));
                    prop_assert_eq!(table.classify(ip), want);
                }
            }
        }
    }
}
