//! A minimal rtnetlink client over a raw `AF_NETLINK` socket: enough to find and detach XDP programs on a
//! link, read a link's MAC, ask the kernel for the route to an address, and dump or follow the neighbour
//! table. Control path only (it allocates); the media workers never call it.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::rewrite::MacAddr;

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const IFLA_ADDRESS: u16 = 1;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const IFLA_XDP_EXPECTED_FD: u16 = 8;

const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;

pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
pub(crate) const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
const XDP_FLAGS_REPLACE: u32 = 1 << 4;

const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

/// Multicast group bit for neighbour table changes (RTMGRP_NEIGH).
pub(crate) const RTMGRP_NEIGH: u32 = 4;

/// XDP programs attached to a link, by attach mode (program ids).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpAttached {
    pub drv: Option<u32>,
    pub skb: Option<u32>,
    pub hw: Option<u32>,
}

/// Where the kernel would send a packet for an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub oif: u32,
    /// Next hop when the destination is not on link.
    pub gateway: Option<IpAddr>,
}

/// One neighbour table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neigh {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub mac: Option<MacAddr>,
    pub state: u16,
}

impl Neigh {
    /// States in which the kernel itself would transmit to the stored MAC without waiting.
    pub fn usable(&self) -> bool {
        const OK: u16 = libc::NUD_REACHABLE
            | libc::NUD_STALE
            | libc::NUD_DELAY
            | libc::NUD_PROBE
            | libc::NUD_PERMANENT
            | libc::NUD_NOARP;
        self.mac.is_some() && self.state & OK != 0
    }
}

/// A neighbour table change read from a socket subscribed to [`RTMGRP_NEIGH`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighEvent {
    New(Neigh),
    Del(Neigh),
}

pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

fn push_attr(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Iterates `(type, payload)` over a run of rtattrs; stops at the first malformed one.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
        let ty = u16::from_ne_bytes([*b.get(2)?, *b.get(3)?]);
        let data = b.get(4..len)?;
        b = b.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some((ty & NLA_TYPE_MASK, data))
    })
}

fn u32_of(d: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(d.get(..4)?.try_into().ok()?))
}

fn ip_of(d: &[u8]) -> Option<IpAddr> {
    match d.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(d).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(d).ok()?))),
        _ => None,
    }
}

fn ip_bytes(ip: &IpAddr) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(a) => {
            b[..4].copy_from_slice(&a.octets());
            (b, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}

fn family_of(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

/// Parses an RTM_NEWNEIGH/RTM_DELNEIGH payload (ndmsg + attributes).
fn parse_neigh(p: &[u8]) -> Option<Neigh> {
    // struct ndmsg { u8 family, pad1; u16 pad2; s32 ifindex; u16 state; u8 flags, type }
    let ifindex = u32::try_from(i32::from_ne_bytes(p.get(4..8)?.try_into().ok()?)).ok()?;
    let state = u16::from_ne_bytes(p.get(8..10)?.try_into().ok()?);
    let mut ip = None;
    let mut mac = None;
    for (ty, d) in attrs(p.get(12..)?) {
        match ty {
            NDA_DST => ip = ip_of(d),
            NDA_LLADDR => mac = <[u8; 6]>::try_from(d).ok().map(MacAddr),
            _ => {}
        }
    }
    Some(Neigh {
        ifindex,
        ip: ip?,
        mac,
        state,
    })
}

impl Netlink {
    /// Opens a NETLINK_ROUTE socket, subscribed to the given multicast groups (0 for request/response only).
    pub fn open(groups: u32) -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the returned fd is checked and then owned.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a freshly created, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = groups;
        // SAFETY: sa is a valid sockaddr_nl and the length matches it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            seq: 1,
            buf: vec![0u8; 64 * 1024],
        })
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn send(&mut self, ty: u16, flags: u16, body: &[u8]) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let len = NLMSG_HDR + body.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: msg is a valid buffer of msg.len() bytes; the kernel is the default destination.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self.seq)
    }

    /// Receives one datagram (blocking unless `nonblock`) and calls `f(type, payload)` for each message in it.
    /// Returns Ok(false) when nothing was there (non-blocking), Ok(true) otherwise.
    fn recv_each(
        &mut self,
        nonblock: bool,
        mut f: impl FnMut(u32, u16, &[u8]),
    ) -> io::Result<bool> {
        let flags = if nonblock { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: self.buf is a valid writable buffer of its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                flags,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if nonblock && e.kind() == io::ErrorKind::WouldBlock {
                return Ok(false);
            }
            return Err(e);
        }
        let mut b = self.buf.get(..n as usize).unwrap_or(&[]);
        while b.len() >= NLMSG_HDR {
            let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
            if len < NLMSG_HDR || len > b.len() {
                break;
            }
            let ty = u16::from_ne_bytes([b[4], b[5]]);
            let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
            f(seq, ty, &b[NLMSG_HDR..len]);
            b = b.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        }
        Ok(true)
    }

    /// Sends a request and collects `(type, payload)` of every reply until DONE or the ACK/error.
    fn transact(&mut self, ty: u16, flags: u16, body: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
        let seq = self.send(ty, flags | libc::NLM_F_ACK as u16, body)?;
        let mut out = Vec::new();
        let mut result: Option<io::Result<()>> = None;
        // Bounded: a dump of a big neighbour table is some hundreds of datagrams at most.
        for _ in 0..100_000 {
            self.recv_each(false, |s, t, p| {
                if s != seq || result.is_some() {
                    return; // a notification or a stale reply
                }
                match t {
                    NLMSG_ERROR => {
                        let errno = p
                            .get(..4)
                            .map(|e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
                            .unwrap_or(0);
                        result = Some(if errno == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::from_raw_os_error(-errno))
                        });
                    }
                    NLMSG_DONE => result = Some(Ok(())),
                    // A single reply is followed by the ACK we asked for: keep reading until it comes.
                    _ => out.push((t, p.to_vec())),
                }
            })?;
            if let Some(r) = result.take() {
                return r.map(|()| out);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "netlink reply never finished",
        ))
    }

    fn ifinfomsg(ifindex: u32) -> Vec<u8> {
        // struct ifinfomsg { u8 family, pad; u16 type; s32 index; u32 flags, change }
        let mut b = vec![0u8; 16];
        b[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
        b
    }

    fn getlink(&mut self, ifindex: u32) -> io::Result<Vec<u8>> {
        let replies = self.transact(libc::RTM_GETLINK, 0, &Self::ifinfomsg(ifindex))?;
        replies
            .into_iter()
            .find(|(t, _)| *t == libc::RTM_NEWLINK)
            .map(|(_, p)| p)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no RTM_NEWLINK reply"))
    }

    /// The XDP programs attached to a link.
    pub fn xdp_attached(&mut self, ifindex: u32) -> io::Result<XdpAttached> {
        let p = self.getlink(ifindex)?;
        let mut out = XdpAttached::default();
        let mut single: Option<(u8, u32)> = None;
        let mut mode = 0u8;
        for (ty, d) in attrs(p.get(16..).unwrap_or(&[])) {
            if ty != IFLA_XDP {
                continue;
            }
            for (t, v) in attrs(d) {
                match t {
                    IFLA_XDP_ATTACHED => mode = v.first().copied().unwrap_or(0),
                    IFLA_XDP_PROG_ID => single = u32_of(v).map(|id| (0, id)),
                    IFLA_XDP_DRV_PROG_ID => out.drv = u32_of(v),
                    IFLA_XDP_SKB_PROG_ID => out.skb = u32_of(v),
                    IFLA_XDP_HW_PROG_ID => out.hw = u32_of(v),
                    _ => {}
                }
            }
        }
        // With one program attached the kernel reports only IFLA_XDP_PROG_ID plus the mode.
        if let Some((_, id)) = single {
            match mode {
                XDP_ATTACHED_DRV if out.drv.is_none() => out.drv = Some(id),
                XDP_ATTACHED_SKB if out.skb.is_none() => out.skb = Some(id),
                XDP_ATTACHED_HW if out.hw.is_none() => out.hw = Some(id),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Detaches the netlink-attached XDP program `expected_fd` refers to, in the given mode
    /// (`XDP_FLAGS_*_MODE`). Fails with EBUSY if a bpf_link owns the attachment, EEXIST if the program
    /// changed meanwhile.
    pub fn xdp_detach(&mut self, ifindex: u32, mode: u32, expected_fd: RawFd) -> io::Result<()> {
        let mut body = Self::ifinfomsg(ifindex);
        let mut nested = Vec::new();
        push_attr(&mut nested, IFLA_XDP_FD, &(-1i32).to_ne_bytes());
        push_attr(
            &mut nested,
            IFLA_XDP_FLAGS,
            &(mode | XDP_FLAGS_REPLACE).to_ne_bytes(),
        );
        push_attr(
            &mut nested,
            IFLA_XDP_EXPECTED_FD,
            &expected_fd.to_ne_bytes(),
        );
        push_attr(&mut body, IFLA_XDP | NLA_F_NESTED, &nested);
        self.transact(libc::RTM_SETLINK, 0, &body).map(|_| ())
    }

    /// The link's hardware address.
    pub fn link_mac(&mut self, ifindex: u32) -> io::Result<MacAddr> {
        let p = self.getlink(ifindex)?;
        attrs(p.get(16..).unwrap_or(&[]))
            .find(|(t, _)| *t == IFLA_ADDRESS)
            .and_then(|(_, d)| <[u8; 6]>::try_from(d).ok())
            .map(MacAddr)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "link has no 6-byte hardware address",
                )
            })
    }

    /// Asks the kernel's FIB where it would send a packet to `dst` (RTM_GETROUTE, like `ip route get`).
    pub fn route_get(&mut self, dst: IpAddr) -> io::Result<Option<Route>> {
        // struct rtmsg { u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags }
        let (bytes, n) = ip_bytes(&dst);
        let mut body = vec![0u8; 12];
        body[0] = family_of(&dst);
        body[1] = (n * 8) as u8;
        push_attr(&mut body, RTA_DST, &bytes[..n]);
        let replies = match self.transact(libc::RTM_GETROUTE, 0, &body) {
            Ok(r) => r,
            // No route (ENETUNREACH/EHOSTUNREACH) is an answer, not a failure.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH)
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        for (t, p) in replies {
            if t != libc::RTM_NEWROUTE {
                continue;
            }
            let mut oif = None;
            let mut gateway = None;
            for (ty, d) in attrs(p.get(12..).unwrap_or(&[])) {
                match ty {
                    RTA_OIF => oif = u32_of(d),
                    RTA_GATEWAY => gateway = ip_of(d),
                    _ => {}
                }
            }
            return Ok(oif.map(|oif| Route { oif, gateway }));
        }
        Ok(None)
    }

    /// Dumps the IPv4 and IPv6 neighbour tables.
    pub fn neigh_dump(&mut self) -> io::Result<Vec<Neigh>> {
        let mut out = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            let mut body = vec![0u8; 12];
            body[0] = family as u8;
            for (t, p) in self.transact(libc::RTM_GETNEIGH, libc::NLM_F_DUMP as u16, &body)? {
                if t == libc::RTM_NEWNEIGH
                    && let Some(n) = parse_neigh(&p)
                {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }

    /// Reads pending neighbour notifications without blocking (socket opened with [`RTMGRP_NEIGH`]).
    /// Returns false when the socket had nothing.
    pub fn neigh_events(&mut self, out: &mut Vec<NeighEvent>) -> io::Result<bool> {
        self.recv_each(true, |_, t, p| match t {
            libc::RTM_NEWNEIGH => out.extend(parse_neigh(p).map(NeighEvent::New)),
            libc::RTM_DELNEIGH => out.extend(parse_neigh(p).map(NeighEvent::Del)),
            _ => {}
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_walk_stops_at_garbage() {
        let mut b = Vec::new();
        push_attr(&mut b, 1, &[1, 2, 3]);
        push_attr(&mut b, 2, &[9, 9, 9, 9]);
        let got: Vec<_> = attrs(&b).collect();
        assert_eq!(got, vec![(1, &[1u8, 2, 3][..]), (2, &[9u8, 9, 9, 9][..])]);
        // Declared length beyond the buffer: no attribute, no panic.
        let bad = [200u8, 0, 1, 0, 5];
        assert_eq!(attrs(&bad).count(), 0);
        assert_eq!(attrs(&[4, 0]).count(), 0);
    }

    #[test]
    fn neigh_message_parses() {
        let mut p = vec![0u8; 12];
        p[0] = libc::AF_INET as u8;
        p[4..8].copy_from_slice(&7i32.to_ne_bytes());
        p[8..10].copy_from_slice(&(libc::NUD_REACHABLE).to_ne_bytes());
        push_attr(&mut p, NDA_DST, &[10, 0, 0, 1]);
        push_attr(&mut p, NDA_LLADDR, &[2, 0, 0, 0, 0, 1]);
        let n = parse_neigh(&p).unwrap();
        assert_eq!(n.ifindex, 7);
        assert_eq!(n.ip, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(n.mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert!(n.usable());
        let incomplete = Neigh {
            state: libc::NUD_INCOMPLETE,
            ..n
        };
        assert!(!incomplete.usable());
        assert_eq!(parse_neigh(&p[..10]), None);
    }

    #[test]
    fn loopback_has_a_route_and_no_xdp() {
        // Works unprivileged: RTM_GETLINK / RTM_GETROUTE are readable by anyone.
        let mut nl = Netlink::open(0).unwrap();
        let r = nl
            .route_get(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .unwrap()
            .expect("route to 127.0.0.1");
        assert_eq!(r.gateway, None);
        let lo = r.oif;
        assert_eq!(nl.link_mac(lo).ok(), Some(MacAddr([0; 6])));
        let _ = nl.xdp_attached(lo).unwrap();
    }
}
