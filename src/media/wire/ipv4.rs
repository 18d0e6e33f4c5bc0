//! IPv4 header (RFC 791) with options and header checksum.

use super::{WireError, be16, byte, checksum, put16};
use std::net::Ipv4Addr;

/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub fn new_unchecked(buf: T) -> Self {
        Ipv4Packet { buf }
    }

    /// Checks version 4, IHL >= 5, and that header and total length fit the buffer.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let p = Ipv4Packet { buf };
        let b = p.buf.as_ref();
        if b.len() < 20 {
            return Err(WireError::Truncated);
        }
        if p.version() != 4 || p.header_len() < 20 {
            return Err(WireError::Malformed);
        }
        let total = usize::from(p.total_len());
        if total < p.header_len() {
            return Err(WireError::Malformed);
        }
        if total > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn version(&self) -> u8 {
        byte(self.buf.as_ref(), 0) >> 4
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(byte(self.buf.as_ref(), 0) & 0x0f) * 4
    }

    pub fn dscp_ecn(&self) -> u8 {
        byte(self.buf.as_ref(), 1)
    }

    pub fn total_len(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    pub fn ident(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    pub fn dont_frag(&self) -> bool {
        be16(self.buf.as_ref(), 6) & 0x4000 != 0
    }

    pub fn more_frags(&self) -> bool {
        be16(self.buf.as_ref(), 6) & 0x2000 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buf.as_ref(), 6) & 0x1fff) << 3
    }

    /// True for any fragment; the relay only handles whole datagrams.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    pub fn ttl(&self) -> u8 {
        byte(self.buf.as_ref(), 8)
    }

    pub fn protocol(&self) -> u8 {
        byte(self.buf.as_ref(), 9)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 10)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(byte(b, 12), byte(b, 13), byte(b, 14), byte(b, 15))
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(byte(b, 16), byte(b, 17), byte(b, 18), byte(b, 19))
    }

    /// Option bytes between the fixed header and the payload.
    pub fn options(&self) -> &[u8] {
        self.buf.as_ref().get(20..self.header_len()).unwrap_or(&[])
    }

    /// True when the header checksum is valid.
    pub fn verify_checksum(&self) -> bool {
        match self.buf.as_ref().get(..self.header_len()) {
            Some(h) => checksum::fold(checksum::sum(h)) == 0xffff,
            None => false,
        }
    }

    /// The payload as bounded by the total length (link padding excluded).
    pub fn payload(&self) -> &[u8] {
        let (h, t) = (self.header_len(), usize::from(self.total_len()));
        self.buf.as_ref().get(h..t).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Writes version 4 and the header length (bytes, multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        let ihl = ((header_len / 4) & 0x0f) as u8;
        if let Some(b) = self.buf.as_mut().get_mut(0) {
            *b = 0x40 | ihl;
        }
    }

    pub fn set_dscp_ecn(&mut self, v: u8) {
        if let Some(b) = self.buf.as_mut().get_mut(1) {
            *b = v;
        }
    }

    pub fn set_total_len(&mut self, v: u16) {
        put16(self.buf.as_mut(), 2, v);
    }

    pub fn set_ident(&mut self, v: u16) {
        put16(self.buf.as_mut(), 4, v);
    }

    /// Sets DF and clears fragmentation.
    pub fn set_dont_frag_only(&mut self, df: bool) {
        put16(self.buf.as_mut(), 6, if df { 0x4000 } else { 0 });
    }

    pub fn set_ttl(&mut self, v: u8) {
        if let Some(b) = self.buf.as_mut().get_mut(8) {
            *b = v;
        }
    }

    pub fn set_protocol(&mut self, v: u8) {
        if let Some(b) = self.buf.as_mut().get_mut(9) {
            *b = v;
        }
    }

    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buf.as_mut(), 10, v);
    }

    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        if let Some(s) = self.buf.as_mut().get_mut(12..16) {
            s.copy_from_slice(&a.octets());
        }
    }

    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        if let Some(s) = self.buf.as_mut().get_mut(16..20) {
            s.copy_from_slice(&a.octets());
        }
    }

    /// Recomputes the header checksum over the header including options.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let h = self.header_len();
        let c = match self.buf.as_ref().get(..h) {
            Some(hdr) => !checksum::fold(checksum::sum(hdr)),
            None => 0,
        };
        self.set_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), usize::from(self.total_len()));
        self.buf.as_mut().get_mut(h..t).unwrap_or(&mut [])
    }
}
