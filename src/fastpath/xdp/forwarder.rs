//! A complete [`FrameHandler`]: forwards UDP datagrams by a static table `local address -> (egress port,
//! new source, new destination)`, rewriting MAC/IP/UDP headers with [`super::rewrite`]. Used by the hwtests
//! and the forwarding benchmark; also a reference for the media pipeline's implementation of the trait.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::fxhash::FxBuildHasher;
use super::handler::{BatchCtx, FrameHandler, FrameRef, Verdict};
use super::rewrite::{L2Header, MacAddr, Payload, Rewrite, parse_udp, rewrite_udp};

/// Where datagrams arriving at one local address go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardRule {
    pub out_port: usize,
    /// Our address on the egress side.
    pub src: SocketAddr,
    /// The remote.
    pub dst: SocketAddr,
}

/// Counters of the forwarder (owned by the worker thread; read after it stops or through the worker).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwarderCounters {
    pub forwarded: u64,
    pub via_kernel: u64,
    pub no_rule: u64,
    pub bad_packet: u64,
}

pub struct StaticForwarder {
    rules: HashMap<SocketAddr, ForwardRule, FxBuildHasher>,
    pub counters: ForwarderCounters,
}

fn dst_of(frame: &[u8], l3: usize, l4: usize, v6: bool) -> Option<SocketAddr> {
    let port = u16::from_be_bytes([*frame.get(l4 + 2)?, *frame.get(l4 + 3)?]);
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(frame.get(l3 + 24..l3 + 40)?).ok()?,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(frame.get(l3 + 16..l3 + 20)?).ok()?,
        ))
    };
    Some(SocketAddr::new(ip, port))
}

impl StaticForwarder {
    pub fn new(rules: impl IntoIterator<Item = (SocketAddr, ForwardRule)>) -> Self {
        Self {
            rules: rules.into_iter().collect(),
            counters: ForwarderCounters::default(),
        }
    }

    fn one(&mut self, ctx: &BatchCtx<'_>, f: &mut FrameRef<'_>) -> Verdict {
        let Ok(layout) = parse_udp(f.packet()) else {
            self.counters.bad_packet += 1;
            return Verdict::Drop;
        };
        let Some(local) = dst_of(f.packet(), layout.l3_off, layout.l4_off, layout.v6) else {
            self.counters.bad_packet += 1;
            return Verdict::Drop;
        };
        let Some(rule) = self.rules.get(&local).copied() else {
            self.counters.no_rule += 1;
            return Verdict::Drop;
        };
        let Some(port) = ctx.ports.get(rule.out_port) else {
            self.counters.no_rule += 1;
            return Verdict::Drop;
        };
        let hop = ctx
            .neigh
            .lookup(rule.dst.ip())
            .filter(|h| h.ifindex == port.ifindex);
        let l2 = L2Header {
            dst: hop.map(|h| h.mac).unwrap_or(MacAddr([0; 6])),
            src: port.mac,
            vlan_tci: None,
        };
        let rw = Rewrite {
            l2,
            src: rule.src,
            dst: rule.dst,
        };
        match rewrite_udp(f.buffer_mut(), &layout, &rw, Payload::Unchanged) {
            Ok(len) if hop.is_some() => {
                self.counters.forwarded += 1;
                Verdict::Tx {
                    port: rule.out_port,
                    len,
                }
            }
            Ok(len) => {
                // Next hop unknown: the kernel sends it (and resolves the MAC); ask for the result.
                ctx.neigh_table.watch(rule.dst.ip());
                self.counters.via_kernel += 1;
                Verdict::Kernel { len }
            }
            Err(_) => {
                self.counters.bad_packet += 1;
                Verdict::Drop
            }
        }
    }
}

impl FrameHandler for StaticForwarder {
    fn handle_batch(
        &mut self,
        ctx: &BatchCtx<'_>,
        frames: &mut [FrameRef<'_>],
        out: &mut [Verdict],
    ) {
        for (f, v) in frames.iter_mut().zip(out.iter_mut()) {
            *v = self.one(ctx, f);
        }
    }
}
