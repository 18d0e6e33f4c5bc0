//! AF_XDP fast path.
//!
//! - `xdp/tollgate.bpf.c` (built by build.rs, embedded as [`loader::PROGRAM_OBJECT`]) steers UDP datagrams
//!   addressed to a local media address in the `flows` map to the AF_XDP socket of their (interface, rx
//!   queue); everything else goes to the kernel (`XDP_PASS`), with per-reason counters.
//! - [`loader`]: load, attach (driver mode, generic fallback), sweep of stale programs, flow map, counters.
//! - [`worker`]: one pinned thread per set of interface queues, one UMEM shared by their sockets, ring
//!   loop, frame ledger; calls a [`handler::FrameHandler`] (the media pipeline plugs in there).
//! - [`neigh`]: next-hop MACs from the kernel neighbour table (netlink), unresolved hops via the kernel.
//! - [`rewrite`]: egress MAC/IP/UDP header rewrite with incremental checksums.
//!
//! Needs root (or CAP_BPF + CAP_NET_ADMIN + CAP_NET_RAW); every failure to set up is an [`XdpError`] the
//! binary can log before falling back to kernel sockets.

pub mod forwarder;
pub mod fuzzing;
pub mod fxhash;
pub mod handler;
pub mod loader;
pub mod neigh;
pub mod netlink;
pub mod rewrite;
pub mod worker;

pub use handler::{BATCH, BatchCtx, FrameHandler, FrameRef, PortInfo, Verdict};
pub use loader::{AttachMode, FlowMap, FlowValue, ModePolicy, XdpCounters, XdpError, XdpProgram};
pub use neigh::{NeighSnapshot, NeighTable, NeighThread, NextHop};
pub use worker::{
    BindMode, PortSpec, WorkerConfig, WorkerCounters, WorkerHandle, WorkerStats, spawn_worker,
};
