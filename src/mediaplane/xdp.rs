//! XDP mode: the media pipeline as the AF_XDP driver's [`FrameHandler`], and the BPF `flows` map behind
//! [`crate::media::FlowMap`].
//!
//! Per frame: `parse_udp`, then the UDP payload (in place in the UMEM chunk, the rest of the chunk is the
//! tailroom SRTP grows into) goes through the same `media::Pipeline` as socket mode; a `Forward` is written
//! back with `rewrite_udp` (MACs, addresses, ports, TTL, checksums; the UDP checksum is recomputed because
//! the pipeline may change the payload). The egress port is the worker port on the next hop's interface
//! (from the neighbour snapshot, or the entry's `LinkEgress`); an unresolved next hop, or one on an
//! interface this worker does not serve, goes out through the kernel (`Verdict::Kernel`), which resolves it.
//!
//! Worker choice: the NIC's RSS picks the receive queue and the XDP program redirects to that queue's
//! socket, so the signaling side cannot choose a worker; every worker gets every entry (the
//! `FanoutSink` fans out) and owns the state of the flows whose packets hash to its queue.
//!
//! The AF_XDP driver calls the handler only when frames arrive: commands are applied and timeouts polled
//! at the start of each batch, so on an entirely idle worker a media timeout is noticed with the next packet
//! (see the report; the socket mode has a ticker).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use arrayvec::ArrayVec;

use super::worker::WorkerCore;
use crate::fastpath::xdp::rewrite::{
    L2Header, MacAddr, Payload, Rewrite, UdpLayout, parse_udp, rewrite_udp,
};
use crate::fastpath::xdp::{self, BATCH, BatchCtx, FlowValue, FrameHandler, FrameRef, Verdict};
use crate::media::{
    self, CommandQueue, DropReason, EventQueue, FlowEntry, FlowKey, FlowSinkError, Forward,
};

/// Counters of the XDP handler beyond the pipeline's own (single writer, read after stop).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpHandlerCounters {
    /// Frames `parse_udp` refused (the program only redirects well-formed UDP, so this stays 0).
    pub bad_frames: u64,
    /// Forwards sent through the kernel because the next hop was not resolved (or not on our ports).
    pub via_kernel: u64,
    /// Forwards whose header rewrite failed (e.g. mixed address families).
    pub rewrite_failed: u64,
}

/// One XDP worker's handler.
pub struct XdpHandler {
    core: WorkerCore,
    pub counters: XdpHandlerCounters,
}

/// Source and destination of a parsed frame.
fn addrs(frame: &[u8], l: &UdpLayout) -> Option<(SocketAddr, SocketAddr)> {
    let sport = u16::from_be_bytes([*frame.get(l.l4_off)?, *frame.get(l.l4_off + 1)?]);
    let dport = u16::from_be_bytes([*frame.get(l.l4_off + 2)?, *frame.get(l.l4_off + 3)?]);
    let (s, d) = if l.v6 {
        let s: [u8; 16] = frame.get(l.l3_off + 8..l.l3_off + 24)?.try_into().ok()?;
        let d: [u8; 16] = frame.get(l.l3_off + 24..l.l3_off + 40)?.try_into().ok()?;
        (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d)))
    } else {
        let s: [u8; 4] = frame.get(l.l3_off + 12..l.l3_off + 16)?.try_into().ok()?;
        let d: [u8; 4] = frame.get(l.l3_off + 16..l.l3_off + 20)?.try_into().ok()?;
        (IpAddr::V4(Ipv4Addr::from(s)), IpAddr::V4(Ipv4Addr::from(d)))
    };
    Some((SocketAddr::new(s, sport), SocketAddr::new(d, dport)))
}

impl XdpHandler {
    pub fn new(
        capacity: usize,
        cmds: Arc<CommandQueue>,
        events: Arc<EventQueue>,
        base: Instant,
    ) -> Self {
        XdpHandler {
            core: WorkerCore::new(capacity, cmds, events, base),
            counters: XdpHandlerCounters::default(),
        }
    }

    /// Beaten from housekeeping (every batch and every idle turn of the worker, throttled).
    pub fn with_heartbeat(mut self, h: Option<crate::ops::notify::Heartbeat>) -> Self {
        self.core.set_heartbeat(h);
        self
    }

    /// The pipeline's counters (for the metrics thread).
    pub fn counters_handle(&self) -> Arc<media::WorkerCounters> {
        self.core.pipe.counters()
    }

    fn egress(
        &mut self,
        ctx: &BatchCtx<'_>,
        f: &mut FrameRef<'_>,
        layout: &UdpLayout,
        fwd: &Forward,
    ) -> Verdict {
        let arrival_mac = ctx.ports.get(f.port()).map(|p| p.mac);
        // The entry's link (if signaling pinned one) wins; else the kernel's neighbour table decides.
        let hop = match fwd.link {
            Some(l) => ctx
                .port_of_ifindex(l.ifindex)
                .map(|p| (p, MacAddr(l.dst_mac), l.vlan)),
            None => ctx
                .neigh
                .lookup(fwd.dst.ip())
                .and_then(|h| ctx.port_of_ifindex(h.ifindex).map(|p| (p, h.mac, None))),
        };
        let (src_mac, dst_mac, vlan) = match hop {
            Some((p, mac, vlan)) => (ctx.ports.get(p).map(|i| i.mac), mac, vlan),
            None => (arrival_mac, MacAddr([0; 6]), None),
        };
        let rw = Rewrite {
            l2: L2Header {
                dst: dst_mac,
                src: src_mac.unwrap_or(MacAddr([0; 6])),
                vlan_tci: vlan,
            },
            src: fwd.src,
            dst: fwd.dst,
        };
        match rewrite_udp(
            f.buffer_mut(),
            layout,
            &rw,
            Payload::Replaced { len: fwd.len },
        ) {
            Ok(len) => match hop {
                Some((port, _, _)) => Verdict::Tx { port, len },
                None => {
                    ctx.neigh_table.watch(fwd.dst.ip());
                    self.counters.via_kernel += 1;
                    Verdict::Kernel { len }
                }
            },
            Err(_) => {
                self.counters.rewrite_failed += 1;
                Verdict::Drop
            }
        }
    }
}

impl FrameHandler for XdpHandler {
    fn idle(&mut self) {
        let now = self.core.nanos(Instant::now());
        self.core.drain(now);
        self.core.housekeeping(now);
    }

    fn handle_batch(
        &mut self,
        ctx: &BatchCtx<'_>,
        frames: &mut [FrameRef<'_>],
        out: &mut [Verdict],
    ) {
        let now = self.core.nanos(Instant::now());
        self.core.drain(now);
        let mut layouts: [Option<UdpLayout>; BATCH] = [None; BATCH];
        let mut verdicts = [media::Verdict::Drop(DropReason::NoFlow); BATCH];
        let mut idx: ArrayVec<usize, BATCH> = ArrayVec::new();
        {
            let mut rx: ArrayVec<media::RxPacket<'_>, BATCH> = ArrayVec::new();
            for (i, f) in frames.iter_mut().enumerate().take(BATCH) {
                let parsed = parse_udp(f.packet())
                    .ok()
                    .and_then(|l| addrs(f.packet(), &l).map(|a| (l, a)));
                let Some((l, (src, local))) = parsed else {
                    self.counters.bad_frames += 1;
                    continue;
                };
                let off = l.payload_off();
                let Some(buf) = f.buffer_mut().get_mut(off..) else {
                    self.counters.bad_frames += 1;
                    continue;
                };
                if let Some(slot) = layouts.get_mut(i) {
                    *slot = Some(l);
                }
                idx.push(i);
                rx.push(media::RxPacket {
                    buf,
                    len: l.payload_len,
                    local,
                    src,
                });
            }
            let core = &mut self.core;
            core.pipe
                .process_batch(now, &mut rx, &mut verdicts, &mut core.events);
        }
        for (&i, v) in idx.iter().zip(verdicts.iter()) {
            let (Some(f), Some(Some(l)), Some(o)) =
                (frames.get_mut(i), layouts.get(i), out.get_mut(i))
            else {
                continue;
            };
            *o = match v {
                media::Verdict::Forward(fwd) => {
                    let l = *l;
                    self.egress(ctx, f, &l, fwd)
                }
                media::Verdict::Drop(_) => Verdict::Drop,
            };
        }
        self.core.housekeeping(now);
    }
}

/// The XDP program's `flows` map as the `FanoutSink`'s [`media::FlowMap`]: an entry steers the local
/// address's packets to the XSKs.
pub struct BpfFlowMap {
    map: xdp::FlowMap,
}

impl BpfFlowMap {
    pub fn new(map: xdp::FlowMap) -> Self {
        BpfFlowMap { map }
    }

    /// Whether the map has an entry for `local` (tests, diagnostics).
    pub fn contains(&self, local: SocketAddr) -> bool {
        matches!(self.map.get_flow(local), Ok(Some(_)))
    }
}

impl media::FlowMap for BpfFlowMap {
    fn insert(&mut self, entry: &FlowEntry) -> Result<(), FlowSinkError> {
        // Every worker holds every entry (see the module doc), so `worker` is only bookkeeping.
        self.map
            .insert_flow(entry.key.local, FlowValue::default())
            .map_err(|e| {
                tracing::warn!(local = %entry.key.local, error = %e, "BPF flow insert failed");
                FlowSinkError::Map("bpf flows insert")
            })
    }

    fn remove(&mut self, key: &FlowKey) -> Result<(), FlowSinkError> {
        self.map.remove_flow(key.local).map(|_| ()).map_err(|e| {
            tracing::warn!(local = %key.local, error = %e, "BPF flow remove failed");
            FlowSinkError::Map("bpf flows remove")
        })
    }
}
