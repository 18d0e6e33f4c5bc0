//! A fast non-cryptographic hasher for the per-packet lookups (flow rules, next hops): SipHash, the std
//! default, cost ~400 instructions per packet for two lookups in the worker profile. The keys are
//! addresses we installed ourselves (local media addresses, remotes of set-up calls), not arbitrary packet
//! fields, and the state starts from a per-map random seed, which keeps precomputed collisions out.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

const K: u64 = 0x517c_c1b7_2722_0a95;

#[derive(Clone, Copy)]
pub struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`FxHasher`]s starting from a seed drawn once per map.
#[derive(Clone, Copy)]
pub struct FxBuildHasher(u64);

impl Default for FxBuildHasher {
    fn default() -> Self {
        Self(RandomState::new().hash_one(0x7467_u64))
    }
}

impl BuildHasher for FxBuildHasher {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    #[test]
    fn distinct_addresses_spread() {
        let b = FxBuildHasher::default();
        let hashes: HashSet<u64> = (0..10_000u32)
            .map(|i| {
                b.hash_one(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i / 100)),
                    30000 + (i % 100) as u16,
                ))
            })
            .collect();
        assert_eq!(hashes.len(), 10_000);
        // Seeds differ per map.
        let a = SocketAddr::from(([10, 0, 0, 1], 30000));
        assert_ne!(
            FxBuildHasher::default().hash_one(a),
            FxBuildHasher::default().hash_one(a)
        );
    }
}
