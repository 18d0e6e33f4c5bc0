//! RTP fixed header (RFC 3550 section 5.1) with CSRCs, header extension and padding.

use super::{WireError, be16, be32, byte, put16, put32};

pub const FIXED_HEADER_LEN: usize = 12;

/// A view of an RTP packet (plain or SRTP: the header is never encrypted).
#[derive(Debug, Clone)]
pub struct RtpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> RtpPacket<T> {
    pub fn new_unchecked(buf: T) -> Self {
        RtpPacket { buf }
    }

    /// Checks version 2 and that the header (CSRCs and extension included) fits. Padding is not
    /// checked because it is encrypted in SRTP; see [`RtpPacket::new_checked_plain`].
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let p = RtpPacket { buf };
        let b = p.buf.as_ref();
        if b.len() < FIXED_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if p.version() != 2 {
            return Err(WireError::Malformed);
        }
        if p.csrc_count() > 0 && b.len() < FIXED_HEADER_LEN + 4 * usize::from(p.csrc_count()) {
            return Err(WireError::Truncated);
        }
        if p.header_len() > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    /// Like `new_checked`, and also checks the padding count of a plaintext packet.
    pub fn new_checked_plain(buf: T) -> Result<Self, WireError> {
        let p = Self::new_checked(buf)?;
        if p.padding() {
            let pad = usize::from(p.padding_len());
            if pad == 0 || p.header_len() + pad > p.buf.as_ref().len() {
                return Err(WireError::Malformed);
            }
        }
        Ok(p)
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }

    pub fn version(&self) -> u8 {
        byte(self.buf.as_ref(), 0) >> 6
    }

    pub fn padding(&self) -> bool {
        byte(self.buf.as_ref(), 0) & 0x20 != 0
    }

    pub fn extension(&self) -> bool {
        byte(self.buf.as_ref(), 0) & 0x10 != 0
    }

    pub fn csrc_count(&self) -> u8 {
        byte(self.buf.as_ref(), 0) & 0x0f
    }

    pub fn marker(&self) -> bool {
        byte(self.buf.as_ref(), 1) & 0x80 != 0
    }

    pub fn payload_type(&self) -> u8 {
        byte(self.buf.as_ref(), 1) & 0x7f
    }

    pub fn sequence_number(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    pub fn timestamp(&self) -> u32 {
        be32(self.buf.as_ref(), 4)
    }

    pub fn ssrc(&self) -> u32 {
        be32(self.buf.as_ref(), 8)
    }

    /// The i-th contributing source, if present.
    pub fn csrc(&self, i: usize) -> Option<u32> {
        (i < usize::from(self.csrc_count()))
            .then(|| be32(self.buf.as_ref(), FIXED_HEADER_LEN + 4 * i))
    }

    fn ext_at(&self) -> usize {
        FIXED_HEADER_LEN + 4 * usize::from(self.csrc_count())
    }

    /// Header extension `(profile, body)` (RFC 3550 5.3.1), if the X bit is set and it fits.
    pub fn extension_header(&self) -> Option<(u16, &[u8])> {
        if !self.extension() {
            return None;
        }
        let at = self.ext_at();
        let b = self.buf.as_ref();
        let words = usize::from(be16(b, at + 2));
        b.get(at + 4..at + 4 + 4 * words)
            .map(|body| (be16(b, at), body))
    }

    /// Header length in bytes: fixed part, CSRCs and extension (whose length is read from the
    /// packet; a truncated extension yields a length beyond the buffer, which `new_checked` refuses).
    pub fn header_len(&self) -> usize {
        let at = self.ext_at();
        if self.extension() {
            at + 4 + 4 * usize::from(be16(self.buf.as_ref(), at + 2))
        } else {
            at
        }
    }

    /// Count of padding bytes declared by the last byte (0 when the P bit is clear).
    pub fn padding_len(&self) -> u8 {
        if !self.padding() {
            return 0;
        }
        self.buf.as_ref().last().copied().unwrap_or(0)
    }

    /// The payload without padding (an inconsistent padding count yields an empty payload).
    pub fn payload(&self) -> &[u8] {
        let b = self.buf.as_ref();
        let h = self.header_len();
        let end = b.len().saturating_sub(usize::from(self.padding_len()));
        b.get(h..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RtpPacket<T> {
    /// Writes V=2 and the given flags and CSRC count into the first byte.
    pub fn set_first_byte(&mut self, padding: bool, extension: bool, csrc_count: u8) {
        let v = 0x80 | (u8::from(padding) << 5) | (u8::from(extension) << 4) | (csrc_count & 0x0f);
        if let Some(b) = self.buf.as_mut().get_mut(0) {
            *b = v;
        }
    }

    pub fn set_marker(&mut self, m: bool) {
        if let Some(b) = self.buf.as_mut().get_mut(1) {
            *b = (*b & 0x7f) | (u8::from(m) << 7);
        }
    }

    pub fn set_payload_type(&mut self, pt: u8) {
        if let Some(b) = self.buf.as_mut().get_mut(1) {
            *b = (*b & 0x80) | (pt & 0x7f);
        }
    }

    pub fn set_sequence_number(&mut self, v: u16) {
        put16(self.buf.as_mut(), 2, v);
    }

    pub fn set_timestamp(&mut self, v: u32) {
        put32(self.buf.as_mut(), 4, v);
    }

    pub fn set_ssrc(&mut self, v: u32) {
        put32(self.buf.as_mut(), 8, v);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        let pad = usize::from(self.padding_len());
        let b = self.buf.as_mut();
        let end = b.len().saturating_sub(pad);
        b.get_mut(h..end).unwrap_or(&mut [])
    }
}

/// RFC 5761 section 4: with rtcp-mux, a second byte in 192..=223 (payload type 64..95 with the
/// marker bit) is RTCP.
pub fn is_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(192..=223))
}
