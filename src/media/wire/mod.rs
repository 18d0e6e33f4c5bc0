//! Typed zero-copy views over packet bytes, in the style of smoltcp's `wire`.
//!
//! Every view wraps a buffer `T: AsRef<[u8]>`; `new_checked` validates once so that the accessors
//! can index without re-checking, and setters exist when `T: AsMut<[u8]>`. Nothing here allocates
//! and no input can make an accessor panic after `new_checked` succeeded.

pub mod checksum;
pub mod dtmf;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
pub mod rtcp;
pub mod rtp;
pub mod udp;

pub use dtmf::TelephoneEvent;
pub use ethernet::{EtherType, EthernetFrame};
pub use ipv4::Ipv4Packet;
pub use ipv6::Ipv6Packet;
pub use rtcp::{ReportBlock, RtcpCompound, RtcpPacket, RtcpType};
pub use rtp::RtpPacket;
pub use udp::UdpPacket;

/// Why a buffer was refused by a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("buffer too short for the header or the length it declares")]
    Truncated,
    #[error("malformed header field")]
    Malformed,
}

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_be_bytes([s[0], s[1]]),
        None => 0,
    }
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

pub(crate) fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests;
