//! RFC 4733 telephone-event payload.

use super::{WireError, be16, byte, put16};

pub const PAYLOAD_LEN: usize = 4;

/// A view of one named telephone event (the first 4 bytes of the payload).
#[derive(Debug, Clone)]
pub struct TelephoneEvent<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TelephoneEvent<T> {
    pub fn new_unchecked(buf: T) -> Self {
        TelephoneEvent { buf }
    }

    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < PAYLOAD_LEN {
            return Err(WireError::Truncated);
        }
        Ok(TelephoneEvent { buf })
    }

    pub fn event(&self) -> u8 {
        byte(self.buf.as_ref(), 0)
    }

    pub fn end(&self) -> bool {
        byte(self.buf.as_ref(), 1) & 0x80 != 0
    }

    /// Volume in -dBm0 (0..=63).
    pub fn volume(&self) -> u8 {
        byte(self.buf.as_ref(), 1) & 0x3f
    }

    /// Duration in RTP timestamp units.
    pub fn duration(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TelephoneEvent<T> {
    pub fn set_event(&mut self, e: u8) {
        if let Some(b) = self.buf.as_mut().get_mut(0) {
            *b = e;
        }
    }

    pub fn set_end_volume(&mut self, end: bool, volume: u8) {
        if let Some(b) = self.buf.as_mut().get_mut(1) {
            *b = (u8::from(end) << 7) | (volume & 0x3f);
        }
    }

    pub fn set_duration(&mut self, d: u16) {
        put16(self.buf.as_mut(), 2, d);
    }
}

/// The DTMF character of event codes 0..=16 (RFC 4733 section 3.2): digits, `*`, `#`, `A`-`D`,
/// and `!` for flash.
pub fn dtmf_char(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => (b'0' + event) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + event - 12) as char,
        16 => '!',
        _ => return None,
    })
}
