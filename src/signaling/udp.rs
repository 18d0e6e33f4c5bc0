//! UDP plumbing for the ring: the provided-buffer ring multishot receives land in, the pool of send slots whose
//! `msghdr`s stay put while the kernel reads them, and socket address conversions.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

/// Room reserved in each receive buffer for the source address (`sockaddr_in6` fits IPv4 too).
pub(crate) const NAME_LEN: u32 = std::mem::size_of::<libc::sockaddr_in6>() as u32;

/// Size of `struct io_uring_recvmsg_out` (four u32), which the kernel writes in front of each datagram.
pub(crate) const RECVMSG_OUT_HDR: usize = 16;

/// A provided-buffer ring (kernel 5.19+): the kernel picks a free buffer per datagram; the loop gives it back
/// after the handler saw the bytes.
pub(crate) struct BufRing {
    ring: *mut BufRingEntry,
    ring_bytes: usize,
    entries: u16,
    mask: u16,
    tail: u16,
    bufs: Box<[u8]>,
    buf_size: usize,
    pub(crate) bgid: u16,
}

// SAFETY: the raw ring pointer is an anonymous mapping owned by this value; it moves with it to the loop thread
// and is only touched there.
unsafe impl Send for BufRing {}

impl BufRing {
    /// Allocates `entries` (a power of two) buffers of `buf_size` bytes and a page-aligned ring, all entries
    /// filled. Registration with a ring is separate ([`BufRing::register`]).
    pub(crate) fn new(entries: u16, buf_size: usize, bgid: u16) -> std::io::Result<Self> {
        if !entries.is_power_of_two() || entries > 32768 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "buffer ring entries must be a power of two <= 32768",
            ));
        }
        let ring_bytes = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: anonymous private mapping, no file; the result is checked against MAP_FAILED. mmap gives the
        // page alignment the kernel requires for a buffer ring.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let mut ring = Self {
            ring: ptr.cast(),
            ring_bytes,
            entries,
            mask: entries - 1,
            tail: 0,
            bufs: vec![0u8; usize::from(entries) * buf_size].into_boxed_slice(),
            buf_size,
            bgid,
        };
        for bid in 0..entries {
            ring.recycle(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Registers the ring with `submitter` under `self.bgid`.
    pub(crate) fn register(&self, submitter: &io_uring::Submitter<'_>) -> std::io::Result<()> {
        // SAFETY: the ring mapping lives as long as `self`, and the loop drops the io_uring (which unregisters
        // everything) before it drops its buffer rings.
        unsafe {
            submitter.register_buf_ring_with_flags(self.ring as u64, self.entries, self.bgid, 0)
        }
    }

    /// Puts buffer `bid` back at the tail (visible to the kernel after [`BufRing::publish`]).
    pub(crate) fn recycle(&mut self, bid: u16) {
        let bid = bid & self.mask;
        let addr = self.bufs.as_ptr() as u64 + u64::from(bid) * self.buf_size as u64;
        let slot = usize::from(self.tail & self.mask);
        // SAFETY: slot < entries, inside the mapping; the kernel only reads entries between its head and our
        // published tail, and this one is past the published tail.
        let entry = unsafe { &mut *self.ring.add(slot) };
        entry.set_addr(addr);
        entry.set_len(self.buf_size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes recycled buffers visible to the kernel.
    pub(crate) fn publish(&self) {
        // SAFETY: the tail field overlays entry 0's `resv`, which the kernel reads as the ring tail; the mapping
        // is valid and aligned for u16. The release store orders the entry writes before the new tail.
        unsafe {
            let tail = BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The first `len` bytes of buffer `bid`.
    pub(crate) fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid & self.mask) * self.buf_size;
        self.bufs
            .get(start..start + len.min(self.buf_size))
            .unwrap_or(&[])
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `new`; the ring was unregistered (ring dropped) before.
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_bytes);
        }
    }
}

/// The msghdr a multishot receive was armed with; the kernel reads only its name/control lengths, and parsing a
/// completion needs the same values.
pub(crate) struct RecvHdr(pub(crate) Box<libc::msghdr>);

impl RecvHdr {
    pub(crate) fn new() -> Self {
        // SAFETY: all-zero is a valid msghdr; its pointers stay null (multishot recvmsg ignores them).
        let mut h: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        h.msg_namelen = NAME_LEN;
        Self(h)
    }
}

// SAFETY: the msghdr's pointers are all null; it is plain data.
unsafe impl Send for RecvHdr {}

/// One outgoing datagram whose `msghdr`, `iovec` and address must stay put until its completion arrives.
pub(crate) struct SendSlot {
    pub(crate) msg: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
    pub(crate) buf: Vec<u8>,
}

/// Pointers into a filled send slot, for either a SENDMSG or a SEND-with-address SQE.
pub(crate) struct PreparedSend {
    pub(crate) slot: u32,
    pub(crate) msg: *const libc::msghdr,
    pub(crate) buf: *const u8,
    pub(crate) len: u32,
    pub(crate) addr: *const libc::sockaddr,
    pub(crate) addr_len: libc::socklen_t,
}

/// Fixed pool of send slots. Boxed slice: slots never move, so the kernel's pointers stay valid.
pub(crate) struct SendPool {
    slots: Box<[SendSlot]>,
    free: Vec<u32>,
}

// SAFETY: the raw pointers inside each slot's msghdr point into the slot itself (heap, owned by the pool); the
// pool moves to the loop thread as a whole and is only used there.
unsafe impl Send for SendPool {}

impl SendPool {
    pub(crate) fn new(count: usize, initial_buf: usize) -> Self {
        let slots = (0..count)
            .map(|_| SendSlot {
                // SAFETY: msghdr, iovec and sockaddr_storage are plain C structs for which all-zero is valid.
                msg: unsafe { std::mem::zeroed() },
                // SAFETY: as above.
                iov: unsafe { std::mem::zeroed() },
                // SAFETY: as above.
                addr: unsafe { std::mem::zeroed() },
                buf: Vec::with_capacity(initial_buf),
            })
            .collect();
        Self {
            slots,
            free: (0..count as u32).rev().collect(),
        }
    }

    /// Fills a free slot with `data` for `dst` and returns its index and a pointer to its msghdr, or `None`
    /// when all slots are in flight.
    pub(crate) fn prepare(&mut self, dst: &SocketAddr, data: &[u8]) -> Option<PreparedSend> {
        let idx = self.free.pop()?;
        let slot = self.slots.get_mut(idx as usize)?;
        slot.buf.clear();
        slot.buf.extend_from_slice(data);
        let addr_len = write_sockaddr(dst, &mut slot.addr);
        slot.iov.iov_base = slot.buf.as_mut_ptr().cast();
        slot.iov.iov_len = slot.buf.len();
        slot.msg.msg_name = (&mut slot.addr as *mut libc::sockaddr_storage).cast();
        slot.msg.msg_namelen = addr_len;
        slot.msg.msg_iov = &mut slot.iov;
        slot.msg.msg_iovlen = 1;
        slot.msg.msg_control = std::ptr::null_mut();
        slot.msg.msg_controllen = 0;
        slot.msg.msg_flags = 0;
        Some(PreparedSend {
            slot: idx,
            msg: &slot.msg,
            buf: slot.buf.as_ptr(),
            len: slot.buf.len() as u32,
            addr: (&slot.addr as *const libc::sockaddr_storage).cast(),
            addr_len,
        })
    }

    /// Returns a slot after its completion; gives back the datagram length it carried.
    pub(crate) fn release(&mut self, idx: u32) -> usize {
        match self.slots.get(idx as usize) {
            Some(slot) => {
                self.free.push(idx);
                slot.buf.len()
            }
            None => 0,
        }
    }
}

/// Writes `addr` as a C socket address; returns its length.
pub(crate) fn write_sockaddr(
    addr: &SocketAddr,
    out: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    match addr {
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
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads a C socket address from raw bytes (as the kernel wrote it); `None` for other families or short data.
pub(crate) fn read_sockaddr(bytes: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]);
    if i32::from(family) == libc::AF_INET && bytes.len() >= std::mem::size_of::<libc::sockaddr_in>()
    {
        // SAFETY: length checked above; read_unaligned copes with the buffer's alignment.
        let sin: libc::sockaddr_in = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
        Some(SocketAddr::V4(SocketAddrV4::new(
            ip,
            u16::from_be(sin.sin_port),
        )))
    } else if i32::from(family) == libc::AF_INET6
        && bytes.len() >= std::mem::size_of::<libc::sockaddr_in6>()
    {
        // SAFETY: as above.
        let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(sin6.sin6_addr.s6_addr),
            u16::from_be(sin6.sin6_port),
            sin6.sin6_flowinfo,
            sin6.sin6_scope_id,
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_roundtrip_v4_v6() {
        for a in ["127.0.0.1:5060", "[::1]:5061", "[fe80::1%2]:7"] {
            let addr: SocketAddr = a.parse().unwrap();
            // SAFETY: all-zero sockaddr_storage is valid.
            let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let len = write_sockaddr(&addr, &mut st);
            // SAFETY: st is a valid object of at least `len` bytes.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&st as *const libc::sockaddr_storage).cast::<u8>(),
                    len as usize,
                )
            };
            assert_eq!(read_sockaddr(bytes), Some(addr));
        }
        assert_eq!(read_sockaddr(&[2, 0, 1]), None);
        assert_eq!(read_sockaddr(&[]), None);
    }
}
