//! UDP header (RFC 768) with pseudo-header checksum and incremental updates.

use super::{WireError, be16, checksum, put16};
use std::net::IpAddr;

pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram (header + payload).
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub fn new_unchecked(buf: T) -> Self {
        UdpPacket { buf }
    }

    /// Checks that the length field is at least 8 and fits the buffer.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let p = UdpPacket { buf };
        let b = p.buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let l = usize::from(p.len());
        if l < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if l > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    /// The length field (header + payload).
    pub fn len(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }

    pub fn payload(&self) -> &[u8] {
        self.buf
            .as_ref()
            .get(HEADER_LEN..usize::from(self.len()))
            .unwrap_or(&[])
    }

    fn datagram(&self) -> &[u8] {
        self.buf
            .as_ref()
            .get(..usize::from(self.len()))
            .unwrap_or(&[])
    }

    /// Full checksum computation over pseudo-header and datagram (checksum field as stored).
    fn raw_sum(&self, src: IpAddr, dst: IpAddr) -> u16 {
        let d = self.datagram();
        let ph = checksum::pseudo_header(src, dst, super::ipv4::PROTO_UDP, d.len() as u32);
        checksum::combine(&[ph, checksum::sum(d)])
    }

    /// True when the checksum is valid; a zero checksum over IPv4 means "not computed" and passes.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if self.checksum() == 0 && src.is_ipv4() {
            return true;
        }
        self.raw_sum(src, dst) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buf.as_mut(), 0, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buf.as_mut(), 2, v);
    }

    pub fn set_len(&mut self, v: u16) {
        put16(self.buf.as_mut(), 4, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buf.as_mut(), 6, v);
    }

    /// Computes and stores the checksum (0 is transmitted as 0xffff, RFC 768).
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let c = !self.raw_sum(src, dst);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Rewrites ports and addresses and updates the checksum incrementally (RFC 1624) instead of
    /// summing the payload again. A zero (absent) IPv4 checksum stays zero.
    pub fn rewrite_incremental(
        &mut self,
        old: (IpAddr, IpAddr),
        new: (IpAddr, IpAddr),
        src_port: u16,
        dst_port: u16,
    ) {
        let mut c = self.checksum();
        let skip = c == 0 && old.0.is_ipv4();
        if !skip {
            c = update_addr(c, old.0, new.0);
            c = update_addr(c, old.1, new.1);
            c = checksum::update16(c, self.src_port(), src_port);
            c = checksum::update16(c, self.dst_port(), dst_port);
            if c == 0 {
                c = 0xffff;
            }
        }
        self.set_src_port(src_port);
        self.set_dst_port(dst_port);
        if !skip {
            self.set_checksum(c);
        }
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let l = usize::from(self.len());
        self.buf.as_mut().get_mut(HEADER_LEN..l).unwrap_or(&mut [])
    }
}

fn update_addr(c: u16, old: IpAddr, new: IpAddr) -> u16 {
    match (old, new) {
        (IpAddr::V4(o), IpAddr::V4(n)) => checksum::update_bytes(c, &o.octets(), &n.octets()),
        (IpAddr::V6(o), IpAddr::V6(n)) => checksum::update_bytes(c, &o.octets(), &n.octets()),
        (o, n) => {
            let (o, n) = (v6(o), v6(n));
            checksum::update_bytes(c, &o, &n)
        }
    }
}

fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}
