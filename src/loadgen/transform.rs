//! The protect/unprotect step between the packet builder and the socket. Plain RTP is the identity; SRTP is
//! tollgate's own `srtp::SrtpContext`. The generator and sink only see this trait.

use crate::srtp::{Config, MasterKey, SrtpContext, SrtpError, Suite};

/// One direction of one stream's media protection.
pub trait PacketTransform: Send {
    /// Bytes `protect` may append.
    fn overhead(&self) -> usize;
    /// Transforms `buf[..len]` in place for sending; returns the new length.
    fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError>;
    /// Reverses `protect` on a received packet in place; returns the plain length.
    fn unprotect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError>;
}

/// Plain RTP: nothing to do.
#[derive(Debug, Default, Clone, Copy)]
pub struct Plain;

impl PacketTransform for Plain {
    fn overhead(&self) -> usize {
        0
    }
    fn protect(&mut self, _buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        Ok(len)
    }
    fn unprotect(&mut self, _buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        Ok(len)
    }
}

impl PacketTransform for SrtpContext {
    fn overhead(&self) -> usize {
        self.rtp_overhead()
    }
    fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        self.protect_rtp(buf, len)
    }
    fn unprotect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        self.unprotect_rtp(buf, len)
    }
}

/// A transform for an optional SDES key: SRTP (AES_CM_128_HMAC_SHA1_80 or whatever the key's suite is) when
/// present, plain otherwise. `ssrcs` is how many SSRCs the receiving side may see on this socket.
pub fn for_key(
    key: Option<&MasterKey>,
    ssrcs: usize,
) -> Result<Box<dyn PacketTransform>, SrtpError> {
    match key {
        None => Ok(Box::new(Plain)),
        Some(k) => {
            let cfg = Config {
                ssrc_capacity: ssrcs.clamp(1, crate::srtp::MAX_SSRC_CAPACITY),
                ..Config::default()
            };
            Ok(Box::new(SrtpContext::new(k.suite(), k, cfg)?))
        }
    }
}

/// The suite the load generator offers.
pub const DEFAULT_SUITE: Suite = Suite::AesCm128HmacSha1_80;
