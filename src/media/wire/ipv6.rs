//! IPv6 fixed header (RFC 8200). Extension headers are not walked: the relay only accepts UDP
//! directly after the fixed header (`next_header == 17`) and passes anything else to the kernel.

use super::{WireError, be16, be32, byte, put16, put32};
use std::net::Ipv6Addr;

pub const HEADER_LEN: usize = 40;

/// A view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub fn new_unchecked(buf: T) -> Self {
        Ipv6Packet { buf }
    }

    /// Checks version 6 and that the declared payload fits the buffer.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let p = Ipv6Packet { buf };
        let b = p.buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if p.version() != 6 {
            return Err(WireError::Malformed);
        }
        if HEADER_LEN + usize::from(p.payload_len()) > b.len() {
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

    pub fn traffic_class(&self) -> u8 {
        ((be16(self.buf.as_ref(), 0) >> 4) & 0xff) as u8
    }

    pub fn flow_label(&self) -> u32 {
        be32(self.buf.as_ref(), 0) & 0x000f_ffff
    }

    pub fn payload_len(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    pub fn next_header(&self) -> u8 {
        byte(self.buf.as_ref(), 6)
    }

    pub fn hop_limit(&self) -> u8 {
        byte(self.buf.as_ref(), 7)
    }

    fn addr_at(&self, at: usize) -> Ipv6Addr {
        let mut o = [0u8; 16];
        if let Some(s) = self.buf.as_ref().get(at..at + 16) {
            o.copy_from_slice(s);
        }
        Ipv6Addr::from(o)
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        self.addr_at(8)
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        self.addr_at(24)
    }

    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        self.buf.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Writes version 6, traffic class and flow label.
    pub fn set_version_tc_flow(&mut self, tc: u8, flow: u32) {
        let v = (6u32 << 28) | (u32::from(tc) << 20) | (flow & 0x000f_ffff);
        put32(self.buf.as_mut(), 0, v);
    }

    pub fn set_payload_len(&mut self, v: u16) {
        put16(self.buf.as_mut(), 4, v);
    }

    pub fn set_next_header(&mut self, v: u8) {
        if let Some(b) = self.buf.as_mut().get_mut(6) {
            *b = v;
        }
    }

    pub fn set_hop_limit(&mut self, v: u8) {
        if let Some(b) = self.buf.as_mut().get_mut(7) {
            *b = v;
        }
    }

    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        if let Some(s) = self.buf.as_mut().get_mut(8..24) {
            s.copy_from_slice(&a.octets());
        }
    }

    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        if let Some(s) = self.buf.as_mut().get_mut(24..40) {
            s.copy_from_slice(&a.octets());
        }
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        self.buf
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or(&mut [])
    }
}
