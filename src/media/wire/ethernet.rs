//! Ethernet II frame with at most one 802.1Q tag.

use super::{WireError, be16, put16};

/// EtherType values the media path cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtherType {
    Ipv4,
    Ipv6,
    Arp,
    Vlan,
    Other(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => EtherType::Ipv4,
            0x86dd => EtherType::Ipv6,
            0x0806 => EtherType::Arp,
            0x8100 => EtherType::Vlan,
            o => EtherType::Other(o),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> u16 {
        match v {
            EtherType::Ipv4 => 0x0800,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Arp => 0x0806,
            EtherType::Vlan => 0x8100,
            EtherType::Other(o) => o,
        }
    }
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of a header with one 802.1Q tag.
pub const TAGGED_HEADER_LEN: usize = 18;

/// A view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps without checks; accessors stay panic-free but may return zeros on short buffers.
    pub fn new_unchecked(buf: T) -> Self {
        EthernetFrame { buf }
    }

    /// Wraps after checking that the (possibly tagged) header fits.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let f = EthernetFrame { buf };
        let b = f.buf.as_ref();
        if b.len() < HEADER_LEN || b.len() < f.header_len() {
            return Err(WireError::Truncated);
        }
        Ok(f)
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn dst_addr(&self) -> [u8; 6] {
        let mut m = [0u8; 6];
        if let Some(s) = self.buf.as_ref().get(0..6) {
            m.copy_from_slice(s);
        }
        m
    }

    pub fn src_addr(&self) -> [u8; 6] {
        let mut m = [0u8; 6];
        if let Some(s) = self.buf.as_ref().get(6..12) {
            m.copy_from_slice(s);
        }
        m
    }

    fn tagged(&self) -> bool {
        be16(self.buf.as_ref(), 12) == 0x8100
    }

    /// The 12-bit VLAN id of the 802.1Q tag, if any.
    pub fn vlan_id(&self) -> Option<u16> {
        self.tagged().then(|| be16(self.buf.as_ref(), 14) & 0x0fff)
    }

    /// The EtherType of the payload (after the tag when tagged).
    pub fn ethertype(&self) -> EtherType {
        let at = if self.tagged() { 16 } else { 12 };
        EtherType::from(be16(self.buf.as_ref(), at))
    }

    pub fn header_len(&self) -> usize {
        if self.tagged() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    pub fn payload(&self) -> &[u8] {
        self.buf.as_ref().get(self.header_len()..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, m: [u8; 6]) {
        if let Some(s) = self.buf.as_mut().get_mut(0..6) {
            s.copy_from_slice(&m);
        }
    }

    pub fn set_src_addr(&mut self, m: [u8; 6]) {
        if let Some(s) = self.buf.as_mut().get_mut(6..12) {
            s.copy_from_slice(&m);
        }
    }

    /// Sets the payload EtherType (after the tag when tagged).
    pub fn set_ethertype(&mut self, t: EtherType) {
        let at = if self.tagged() { 16 } else { 12 };
        put16(self.buf.as_mut(), at, t.into());
    }

    /// Writes an 802.1Q tag header (TPID, PCP 0, VLAN id, inner EtherType); the buffer must hold 18 bytes.
    pub fn set_vlan(&mut self, vlan: u16, inner: EtherType) {
        let b = self.buf.as_mut();
        put16(b, 12, 0x8100);
        put16(b, 14, vlan & 0x0fff);
        put16(b, 16, inner.into());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        self.buf.as_mut().get_mut(h..).unwrap_or(&mut [])
    }
}
