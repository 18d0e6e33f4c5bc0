//! Kernel-socket media driver (media mode `socket`): the per-packet pipeline on kernel sockets, for machines
//! without XDP, and the baseline the XDP fast path is measured against.
//!
//! # Socket scheme, and why
//!
//! A media port range of 20,000 ports does not fit one socket per port when the process's descriptor hard
//! limit is 20,000 (this machine; rtpengine runs out of ports at ~4,900 calls there). So:
//!
//! * **Receive: AF_PACKET.** One `SOCK_DGRAM` packet socket per worker and address family, bound to
//!   `ETH_P_IP`/`ETH_P_IPV6` on all interfaces. A classic-BPF filter (see [`bpf`]) accepts only "UDP, not a
//!   fragment, to one of our media addresses, destination port in [min, max]", so everything else (SIP, SSH,
//!   ARP, ports outside the range) never reaches us. The sockets form a `PACKET_FANOUT_CBPF` group whose
//!   program picks `worker = destination port % workers`: all packets of a flow (keyed by our local address)
//!   reach the same worker whatever their source, so per-flow state stays on one core without locks.
//!   Received with `recvmmsg` (one syscall per batch), `PACKET_AUXDATA` tells whether the kernel already
//!   trusts the UDP checksum; otherwise it is verified here.
//! * **Keep the stack quiet: one netfilter chain.** The IP stack still sees each packet after the tap and
//!   would answer ICMP port unreachable. `TGMEDIA-<tag>` in `raw PREROUTING` (see [`rules`]) drops them at the
//!   earliest hook (no route lookup, no conntrack entry); it is installed at start, removed at stop, and
//!   stale copies are removed by name.
//! * **Transmit: raw IP sockets.** One `IPPROTO_RAW` (IP_HDRINCL) socket per worker and family; the worker
//!   builds the IP and UDP headers (UDP checksum in software, see [`wire`]) so any source port can be used, and
//!   the kernel still routes, resolves neighbours and fills the IPv4 header checksum. `sendmmsg` per batch.
//!
//! Per worker that is 2–4 descriptors whatever the range. TPROXY (one transparent UDP socket per worker)
//! was the alternative: it also needs raw transmit, plus policy routing (`ip rule`, a local route table) and
//! a mangle rule, and it sends every packet through the socket lookup and the UDP queue; the packet tap
//! needs one rule and no routing change.
//!
//! If the scheme cannot be set up (no CAP_NET_RAW/CAP_NET_ADMIN, no `iptables`), `Scheme::Auto` logs why and
//! falls back to one UDP socket per address and port ([`perport`]), which only fits small ranges.
//!
//! # Workers
//!
//! One thread per configured core, pinned with `core_affinity`. Each owns its sockets, its buffers (allocated
//! once), its handler (the pipeline, with that worker's flow table) and its counters. Loop: drain up to 256
//! commands from its bounded crossbeam queue, `recvmmsg` a batch, validate, `handle_batch`, build headers,
//! `sendmmsg`. An idle worker blocks for at most `idle_wait` (2 ms by default) inside `recvmmsg`
//! (`MSG_WAITFORONE` with `SO_RCVTIMEO`, so waking for traffic costs no extra syscall) or, with both an IPv4
//! and an IPv6 socket, in `poll`: no busy spin when idle, and commands and stop are seen within a few ms.
//!
//! # Prerequisites (packet scheme)
//! CAP_NET_RAW (packet and raw sockets), CAP_NET_ADMIN (netfilter chain, `SO_RCVBUFFORCE`), the `iptables`
//! binary (and `ip6tables` for IPv6 addresses) with the `raw` table (iptables-nft works), kernel ≥ 4.2
//! (fanout CBPF). No sysctl is required. IPv4 fragments and IPv6 extension headers are left to the kernel,
//! which drops them (the chain matches the reassembled datagram); RTP is never fragmented in practice.

mod batch;
pub mod bpf;
mod driver;
pub mod handler;
mod packet;
mod perport;
pub mod rules;
pub mod stats;
mod sys;
pub mod wire;

pub use driver::{ActiveScheme, Scheme, SocketMedia, SocketMediaConfig, SocketMediaError};
pub use handler::{HandlerDrop, PacketHandler, RxPacket, Verdict};
pub use rules::RuleTools;
pub use stats::{DropReason, StatsSnapshot, WorkerStats};
pub use sys::interface_ipv4;
