//! Next-hop MAC addresses for the AF_XDP egress path, taken from the kernel's neighbour table.
//!
//! The AF_XDP path bypasses the kernel's ARP/ND, so the SBC builds Ethernet headers itself. A background
//! thread dumps the neighbour table, follows RTM_NEWNEIGH/RTM_DELNEIGH notifications, asks the FIB for the
//! route of every watched remote address (gateway or on-link), and publishes an immutable snapshot
//! `remote address -> (egress ifindex, next-hop MAC)`. Workers load the snapshot once per batch (a lock-free
//! pointer load). A remote that is not resolved yet is sent through the kernel (raw socket) by the worker,
//! which makes the kernel resolve it; the notification then updates the snapshot.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tracing::{debug, warn};

use super::fxhash::FxBuildHasher;
use super::netlink::{Neigh, NeighEvent, Netlink, RTMGRP_NEIGH, Route};
use super::rewrite::MacAddr;

/// Where to send a packet for a remote address at layer 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub ifindex: u32,
    pub mac: MacAddr,
}

/// An immutable view of the resolved next hops.
#[derive(Debug, Default)]
pub struct NeighSnapshot {
    hops: HashMap<IpAddr, NextHop, FxBuildHasher>,
}

impl NeighSnapshot {
    pub fn lookup(&self, remote: IpAddr) -> Option<NextHop> {
        self.hops.get(&remote).copied()
    }
    pub fn len(&self) -> usize {
        self.hops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.hops.is_empty()
    }
}

struct Shared {
    snapshot: ArcSwap<NeighSnapshot>,
    /// Remote addresses to resolve (true) or forget (false), pushed from cold paths: flow setup and
    /// teardown, a worker's unresolved packet.
    requests: Mutex<Vec<(IpAddr, bool)>>,
    stop: AtomicBool,
}

/// Handle on the next-hop table; cheap to clone, one per worker.
#[derive(Clone)]
pub struct NeighTable {
    shared: Arc<Shared>,
}

impl NeighTable {
    /// The current snapshot; hold it for one batch.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<NeighSnapshot>> {
        self.shared.snapshot.load()
    }

    /// Asks for `remote` to be resolved and kept up to date. Cold path: takes a mutex.
    pub fn watch(&self, remote: IpAddr) {
        self.request(remote, true);
    }

    /// Stops keeping `remote` resolved (its last flow is gone). Cold path: takes a mutex.
    pub fn unwatch(&self, remote: IpAddr) {
        self.request(remote, false);
    }

    fn request(&self, remote: IpAddr, watch: bool) {
        let mut q = self
            .shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        q.push((remote, watch));
    }

    /// Waits until `remote` resolves or `timeout` passes (control path and tests).
    pub fn wait_resolved(&self, remote: IpAddr, timeout: Duration) -> Option<NextHop> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(h) = self.snapshot().lookup(remote) {
                return Some(h);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The background thread; stops and joins on drop.
pub struct NeighThread {
    table: NeighTable,
    handle: Option<JoinHandle<()>>,
}

impl NeighThread {
    /// Starts following the neighbour table of the calling thread's network namespace.
    pub fn start() -> io::Result<Self> {
        let mut monitor = Netlink::open(RTMGRP_NEIGH)?;
        let mut query = Netlink::open(0)?;
        let mut state = State::default();
        // Subscribe before the dump so no change falls between them.
        state.reload(&mut query)?;
        let _ = monitor.neigh_events(&mut Vec::new());
        let table = NeighTable {
            shared: Arc::new(Shared {
                snapshot: ArcSwap::from_pointee(NeighSnapshot::default()),
                requests: Mutex::new(Vec::new()),
                stop: AtomicBool::new(false),
            }),
        };
        let shared = table.shared.clone();
        let handle = std::thread::Builder::new()
            .name("tg-neigh".into())
            .spawn(move || run(shared, monitor, query, state))?;
        Ok(Self {
            table,
            handle: Some(handle),
        })
    }

    pub fn table(&self) -> NeighTable {
        self.table.clone()
    }
}

impl Drop for NeighThread {
    fn drop(&mut self) {
        self.table.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[derive(Default)]
struct State {
    neigh: HashMap<(u32, IpAddr), MacAddr>,
    watched: HashMap<IpAddr, Option<Route>>,
}

impl State {
    fn reload(&mut self, nl: &mut Netlink) -> io::Result<()> {
        self.neigh = nl
            .neigh_dump()?
            .into_iter()
            .filter(Neigh::usable)
            .filter_map(key_mac)
            .collect();
        Ok(())
    }

    fn apply(&mut self, ev: NeighEvent) -> bool {
        match ev {
            NeighEvent::New(n) if n.usable() => {
                key_mac(n).is_some_and(|(k, m)| self.neigh.insert(k, m) != Some(m))
            }
            NeighEvent::New(n) | NeighEvent::Del(n) => {
                self.neigh.remove(&(n.ifindex, n.ip)).is_some()
            }
        }
    }

    fn reroute(&mut self, nl: &mut Netlink) -> bool {
        let mut changed = false;
        for (dst, route) in self.watched.iter_mut() {
            let r = nl.route_get(*dst).unwrap_or_else(|e| {
                debug!(%dst, error = %e, "route lookup failed");
                None
            });
            changed |= *route != r;
            *route = r;
        }
        changed
    }

    fn snapshot(&self) -> NeighSnapshot {
        let hops = self
            .watched
            .iter()
            .filter_map(|(dst, route)| {
                let r = (*route)?;
                let via = r.gateway.unwrap_or(*dst);
                let mac = *self.neigh.get(&(r.oif, via))?;
                Some((
                    *dst,
                    NextHop {
                        ifindex: r.oif,
                        mac,
                    },
                ))
            })
            .collect();
        NeighSnapshot { hops }
    }
}

fn key_mac(n: Neigh) -> Option<((u32, IpAddr), MacAddr)> {
    Some(((n.ifindex, n.ip), n.mac?))
}

const POLL_MS: i32 = 20;
const REROUTE_EVERY: Duration = Duration::from_secs(1);

fn run(shared: Arc<Shared>, mut monitor: Netlink, mut query: Netlink, mut state: State) {
    let mut events = Vec::new();
    let mut last_reroute = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        let mut changed = false;
        let new = std::mem::take(
            &mut *shared
                .requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (ip, watch) in new {
            if !watch {
                changed |= state.watched.remove(&ip).is_some();
            } else if let std::collections::hash_map::Entry::Vacant(v) = state.watched.entry(ip) {
                v.insert(query.route_get(ip).ok().flatten());
                changed = true;
            }
        }
        if last_reroute.elapsed() >= REROUTE_EVERY {
            changed |= state.reroute(&mut query);
            last_reroute = Instant::now();
        }
        let mut pfd = libc::pollfd {
            fd: monitor.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a valid pollfd for the duration of the call; nfds is 1.
        let n = unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
        if n > 0 {
            // Bounded drain: at most 1000 datagrams before the next request/stop check.
            for _ in 0..1000 {
                events.clear();
                match monitor.neigh_events(&mut events) {
                    Ok(true) => {
                        for ev in events.drain(..) {
                            changed |= state.apply(ev);
                        }
                    }
                    Ok(false) => break,
                    Err(e) => {
                        // ENOBUFS: notifications were lost; resynchronise with a dump.
                        warn!(error = %e, "neighbour notifications lost, reloading the table");
                        if let Err(e) = state.reload(&mut query) {
                            warn!(error = %e, "neighbour table dump failed");
                        }
                        changed = true;
                        break;
                    }
                }
            }
        }
        if changed {
            shared.snapshot.store(Arc::new(state.snapshot()));
        }
    }
}
