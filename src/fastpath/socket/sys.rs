//! Thin wrappers over the socket syscalls the driver needs. Every `unsafe` block is an FFI call or a read of
//! a kernel-filled struct, each with its `SAFETY:` note.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::bpf::Insn;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn new_socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    new_socket_flags(domain, ty | libc::SOCK_NONBLOCK, proto)
}

fn new_socket_flags(
    domain: libc::c_int,
    ty: libc::c_int,
    proto: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success we own the returned descriptor.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn setsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    opt: libc::c_int,
    val: &T,
) -> io::Result<()> {
    // SAFETY: `val` points to a live `T` of the size we pass.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

pub fn set_int(
    fd: &OwnedFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    setsockopt(fd, level, opt, &v)
}

/// Receive buffer: FORCE (CAP_NET_ADMIN) goes past `net.core.rmem_max`; fall back to the capped option.
pub fn set_rcvbuf(fd: &OwnedFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v)
        .or_else(|_| set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, v))
}

pub fn set_sndbuf(fd: &OwnedFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, v)
        .or_else(|_| set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, v))
}

fn prog(insns: &[Insn]) -> io::Result<(Vec<libc::sock_filter>, u16)> {
    let v: Vec<libc::sock_filter> = insns
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let len = u16::try_from(v.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok((v, len))
}

/// An AF_PACKET `SOCK_DGRAM` socket for one ethertype (frames arrive starting at the network header) with
/// `filter` attached before it is bound, so it never queues a packet the filter would refuse.
///
/// The socket is blocking with a receive timeout of `wait`: a worker with one packet socket waits for
/// traffic inside `recvmmsg(MSG_WAITFORONE)` itself (one syscall instead of poll + recvmmsg per wake-up).
pub fn packet_socket(ethertype: u16, filter: &[Insn], wait: Duration) -> io::Result<OwnedFd> {
    let fd = new_socket_flags(libc::AF_PACKET, libc::SOCK_DGRAM, 0)?;
    let tv = libc::timeval {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(wait.subsec_micros().max(1)),
    };
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
    let (mut f, len) = prog(filter)?;
    let fprog = libc::sock_fprog {
        len,
        filter: f.as_mut_ptr(),
    };
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)?;
    set_int(&fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)?;
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ethertype.to_be();
    sll.sll_ifindex = 0; // every interface
    // SAFETY: `sll` is a valid sockaddr_ll of the length passed.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

const PACKET_FANOUT_CBPF: u32 = 6;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
const PACKET_FANOUT_DATA: libc::c_int = 22;

/// The first socket creates the fanout group with a kernel-chosen unique id (so two processes never share a
/// group) and returns that id; the rest join it with `join_fanout`.
pub fn create_fanout(fd: &OwnedFd, insns: &[Insn]) -> io::Result<u16> {
    let arg: u32 = (PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_UNIQUEID) << 16;
    setsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)?;
    let mut got: u32 = 0;
    let mut len = size_of::<u32>() as libc::socklen_t;
    // SAFETY: `got`/`len` are valid out-parameters of the size given.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            (&mut got as *mut u32).cast(),
            &mut len,
        )
    })?;
    let (mut f, flen) = prog(insns)?;
    let fprog = libc::sock_fprog {
        len: flen,
        filter: f.as_mut_ptr(),
    };
    setsockopt(fd, libc::SOL_PACKET, PACKET_FANOUT_DATA, &fprog)?;
    Ok((got & 0xffff) as u16)
}

pub fn join_fanout(fd: &OwnedFd, id: u16) -> io::Result<()> {
    let arg: u32 = u32::from(id) | (PACKET_FANOUT_CBPF << 16);
    setsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)
}

/// Packets the kernel dropped on this packet socket since the last call (the counter resets on read).
pub fn packet_drops(fd: &OwnedFd) -> u64 {
    // SAFETY: tpacket_stats is plain data.
    let mut st: libc::tpacket_stats = unsafe { zeroed() };
    let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `st`/`len` are valid out-parameters of the size given.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if r == 0 { u64::from(st.tp_drops) } else { 0 }
}

/// Raw socket that transmits complete IP packets we build (IPPROTO_RAW implies IP_HDRINCL for IPv4; IPv6
/// needs IPV6_HDRINCL). It never receives.
pub fn raw_tx_socket(v6: bool) -> io::Result<OwnedFd> {
    let fd = new_socket(
        if v6 { libc::AF_INET6 } else { libc::AF_INET },
        libc::SOCK_RAW,
        libc::IPPROTO_RAW,
    )?;
    if v6 {
        set_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_HDRINCL, 1)?;
    }
    Ok(fd)
}

/// A non-blocking UDP socket bound to `addr` (the per-port fallback).
pub fn udp_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let fd = new_socket(
        if addr.is_ipv6() {
            libc::AF_INET6
        } else {
            libc::AF_INET
        },
        libc::SOCK_DGRAM,
        0,
    )?;
    if addr.is_ipv6() {
        set_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    let (sa, len) = sockaddr(addr);
    // SAFETY: `sa` holds a valid sockaddr of `len` bytes.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_storage).cast(),
            len,
        )
    })?;
    Ok(fd)
}

pub fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

pub fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in; storage is aligned and large enough.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                0,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Wait until one of `fds` is readable (or writable with `POLLOUT`) or the timeout passes.
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let ms = libc::c_int::try_from(timeout.as_millis())
        .unwrap_or(libc::c_int::MAX)
        .max(1);
    // SAFETY: `fds` is a valid array of pollfd of the length passed.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    match cvt(r) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

pub fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// recvmmsg without blocking; Ok(0) when nothing is queued.
pub fn recvmmsg(fd: RawFd, msgs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    recvmmsg_flags(fd, msgs, libc::MSG_DONTWAIT)
}

/// recvmmsg with explicit flags (`MSG_WAITFORONE` on a blocking socket waits up to its SO_RCVTIMEO for the
/// first datagram, then takes what is queued); Ok(0) on timeout or signal.
pub fn recvmmsg_flags(
    fd: RawFd,
    msgs: &mut [libc::mmsghdr],
    flags: libc::c_int,
) -> io::Result<usize> {
    // SAFETY: every mmsghdr points at buffers the caller keeps alive and writable for this call.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            flags,
            std::ptr::null_mut(),
        )
    };
    match cvt(r) {
        Ok(n) => Ok(n as usize),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) => Ok(0),
        Err(e) => Err(e),
    }
}

/// sendmmsg without blocking: Ok(n) messages went out (n may be short).
pub fn sendmmsg(fd: RawFd, msgs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: every mmsghdr points at buffers the caller keeps alive for this call.
    let r = unsafe {
        libc::sendmmsg(
            fd,
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    cvt(r).map(|n| n as usize)
}

/// The `tp_status` of the PACKET_AUXDATA control message, if the kernel attached one.
///
/// # Safety
/// `hdr` must be a msghdr just filled by recvmmsg, its control buffer still alive.
pub unsafe fn aux_status(hdr: &libc::msghdr) -> Option<u32> {
    // SAFETY: per the contract the control buffer and lengths are what the kernel wrote.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(hdr) };
    while !c.is_null() {
        // SAFETY: CMSG_FIRSTHDR/NXTHDR return headers inside the control buffer.
        let cm = unsafe { &*c };
        if cm.cmsg_level == libc::SOL_PACKET && cm.cmsg_type == libc::PACKET_AUXDATA {
            // SAFETY: this cmsg carries a tpacket_auxdata (maybe unaligned: read unaligned).
            let aux: libc::tpacket_auxdata = unsafe {
                std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::tpacket_auxdata>())
            };
            return Some(aux.tp_status);
        }
        // SAFETY: `c` is a header inside `hdr`'s control buffer.
        c = unsafe { libc::CMSG_NXTHDR(hdr, c) };
    }
    None
}

/// Bytes of control buffer for one PACKET_AUXDATA message.
pub const AUX_CMSG_SPACE: usize = 64;

/// Soft and hard RLIMIT_NOFILE.
pub fn nofile_limits() -> (u64, u64) {
    // SAFETY: rlimit is plain data; getrlimit fills it.
    let mut r: libc::rlimit = unsafe { zeroed() };
    // SAFETY: valid out-parameter.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        (r.rlim_cur, r.rlim_max)
    } else {
        (1024, 1024)
    }
}

/// Raise the soft RLIMIT_NOFILE up to `want` (bounded by the hard limit).
pub fn raise_nofile(want: u64) {
    let (soft, hard) = nofile_limits();
    if soft >= want {
        return;
    }
    let r = libc::rlimit {
        rlim_cur: want.min(hard),
        rlim_max: hard,
    };
    // SAFETY: valid rlimit value.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
}

/// Move the calling thread into the network namespace `ns` (an open /proc/…/ns/net or /run/netns file).
pub fn setns_net(ns: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor we hold open.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

/// The first IPv4 address of interface `name` (a media interface configured without `address`).
pub fn interface_ipv4(name: &str) -> Option<std::net::Ipv4Addr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we own until freeifaddrs; checked for failure.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let n = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: ifa_addr is non-null and points at a sockaddr of at least the family's size.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if n.to_bytes() == name.as_bytes() && family == libc::AF_INET {
            // SAFETY: the family is AF_INET, so the address is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            found = Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            break;
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found
}

#[cfg(test)]
mod ifaddr_tests {
    #[test]
    fn loopback_has_its_address_and_unknown_has_none() {
        assert_eq!(
            super::interface_ipv4("lo"),
            Some(std::net::Ipv4Addr::LOCALHOST)
        );
        assert_eq!(super::interface_ipv4("tg-no-such-if0"), None);
    }
}
