//! RTCP packets (RFC 3550 section 6) and compound packet iteration.

use super::{WireError, be16, be32, byte};

pub const HEADER_LEN: usize = 4;

/// RTCP packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpType {
    SenderReport,
    ReceiverReport,
    SourceDescription,
    Goodbye,
    App,
    TransportFeedback,
    PayloadFeedback,
    ExtendedReport,
    Other(u8),
}

impl From<u8> for RtcpType {
    fn from(v: u8) -> Self {
        match v {
            200 => RtcpType::SenderReport,
            201 => RtcpType::ReceiverReport,
            202 => RtcpType::SourceDescription,
            203 => RtcpType::Goodbye,
            204 => RtcpType::App,
            205 => RtcpType::TransportFeedback,
            206 => RtcpType::PayloadFeedback,
            207 => RtcpType::ExtendedReport,
            o => RtcpType::Other(o),
        }
    }
}

/// A view of one RTCP packet within a compound packet.
#[derive(Debug, Clone)]
pub struct RtcpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> RtcpPacket<T> {
    pub fn new_unchecked(buf: T) -> Self {
        RtcpPacket { buf }
    }

    /// Checks version 2 and that the declared length fits the buffer.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let p = RtcpPacket { buf };
        let b = p.buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if p.version() != 2 {
            return Err(WireError::Malformed);
        }
        if p.packet_len() > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    pub fn version(&self) -> u8 {
        byte(self.buf.as_ref(), 0) >> 6
    }

    pub fn padding(&self) -> bool {
        byte(self.buf.as_ref(), 0) & 0x20 != 0
    }

    /// RC (report count), SC (source count) or subtype, by packet type.
    pub fn count(&self) -> u8 {
        byte(self.buf.as_ref(), 0) & 0x1f
    }

    pub fn packet_type(&self) -> RtcpType {
        RtcpType::from(byte(self.buf.as_ref(), 1))
    }

    /// The length field: 32-bit words minus one.
    pub fn length_words(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    /// Length of this packet in bytes, header included.
    pub fn packet_len(&self) -> usize {
        (usize::from(self.length_words()) + 1) * 4
    }

    /// SSRC of the sender (SR, RR, APP, feedback, XR), the first chunk (SDES) or first source (BYE).
    pub fn ssrc(&self) -> Option<u32> {
        let b = self.buf.as_ref();
        if self.packet_len() < 8 || b.len() < 8 {
            return None;
        }
        match self.packet_type() {
            RtcpType::SourceDescription | RtcpType::Goodbye if self.count() == 0 => None,
            _ => Some(be32(b, 4)),
        }
    }

    /// Sender info of an SR: (NTP timestamp, RTP timestamp, packet count, octet count).
    pub fn sender_info(&self) -> Option<(u64, u32, u32, u32)> {
        let b = self.buf.as_ref();
        if self.packet_type() != RtcpType::SenderReport || self.packet_len() < 28 || b.len() < 28 {
            return None;
        }
        let ntp = (u64::from(be32(b, 8)) << 32) | u64::from(be32(b, 12));
        Some((ntp, be32(b, 16), be32(b, 20), be32(b, 24)))
    }

    /// The i-th report block of an SR or RR.
    pub fn report_block(&self, i: usize) -> Option<ReportBlock<'_>> {
        let start = match self.packet_type() {
            RtcpType::SenderReport => 28,
            RtcpType::ReceiverReport => 8,
            _ => return None,
        };
        if i >= usize::from(self.count()) {
            return None;
        }
        let at = start + 24 * i;
        let end = at + 24;
        if end > self.packet_len() {
            return None;
        }
        self.buf.as_ref().get(at..end).map(|b| ReportBlock { b })
    }

    /// The packet bytes (header included), bounded by its length field.
    pub fn as_bytes(&self) -> &[u8] {
        let b = self.buf.as_ref();
        b.get(..self.packet_len()).unwrap_or(b)
    }
}

/// A 24-byte reception report block.
#[derive(Debug, Clone, Copy)]
pub struct ReportBlock<'a> {
    b: &'a [u8],
}

impl ReportBlock<'_> {
    pub fn ssrc(&self) -> u32 {
        be32(self.b, 0)
    }
    pub fn fraction_lost(&self) -> u8 {
        byte(self.b, 4)
    }
    /// Cumulative number of packets lost (24-bit signed).
    pub fn cumulative_lost(&self) -> i32 {
        let raw = be32(self.b, 4) & 0x00ff_ffff;
        ((raw << 8) as i32) >> 8
    }
    pub fn extended_highest_seq(&self) -> u32 {
        be32(self.b, 8)
    }
    pub fn jitter(&self) -> u32 {
        be32(self.b, 12)
    }
    pub fn last_sr(&self) -> u32 {
        be32(self.b, 16)
    }
    pub fn delay_since_last_sr(&self) -> u32 {
        be32(self.b, 20)
    }
}

/// Iterates the packets of a compound RTCP packet; yields an error once (then stops) on a bad packet.
#[derive(Debug, Clone)]
pub struct RtcpCompound<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> RtcpCompound<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        RtcpCompound {
            rest: buf,
            failed: false,
        }
    }

    /// RFC 3550 A.2 validity: non-empty, every packet version 2 and lengths adding up exactly,
    /// first packet SR or RR without padding. Returns the number of packets.
    pub fn validate(buf: &'a [u8]) -> Result<usize, WireError> {
        let mut n = 0usize;
        for (i, p) in RtcpCompound::new(buf).enumerate() {
            let p = p?;
            if i == 0
                && (p.padding()
                    || !matches!(
                        p.packet_type(),
                        RtcpType::SenderReport | RtcpType::ReceiverReport
                    ))
            {
                return Err(WireError::Malformed);
            }
            n += 1;
        }
        if n == 0 {
            return Err(WireError::Truncated);
        }
        Ok(n)
    }
}

impl<'a> Iterator for RtcpCompound<'a> {
    type Item = Result<RtcpPacket<&'a [u8]>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match RtcpPacket::new_checked(self.rest) {
            Ok(p) => {
                let len = p.packet_len();
                let (this, rest) = self.rest.split_at(len.min(self.rest.len()));
                self.rest = rest;
                Some(Ok(RtcpPacket::new_unchecked(this)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
