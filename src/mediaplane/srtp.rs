//! The SRTP engine behind the pipeline's [`SrtpTransform`]/[`SrtpFactory`] seam.
//!
//! A context is built from SDES keying when a flow is added or its keys change (one per direction per
//! flow, see `media::pipeline`), never per packet.

use crate::media::{SrtpError, SrtpFactory, SrtpKeying, SrtpTransform};
use crate::srtp::{self, MasterKey, SrtpContext, Suite};

fn map_err(e: srtp::SrtpError) -> SrtpError {
    use srtp::SrtpError as E;
    match e {
        E::AuthFailed | E::MkiMismatch => SrtpError::Auth,
        E::Replayed => SrtpError::Replay,
        E::BufferTooSmall => SrtpError::BufferTooSmall,
        E::BadKey | E::BadSdes | E::BadConfig | E::KeyExhausted | E::Rng => SrtpError::Key,
        _ => SrtpError::Malformed,
    }
}

impl SrtpTransform for SrtpContext {
    fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        SrtpContext::unprotect_rtp(self, buf, len).map_err(map_err)
    }
    fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        SrtpContext::protect_rtp(self, buf, len).map_err(map_err)
    }
    fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        SrtpContext::unprotect_rtcp(self, buf, len).map_err(map_err)
    }
    fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        SrtpContext::protect_rtcp(self, buf, len).map_err(map_err)
    }
}

/// Builds [`SrtpContext`]s from `a=crypto` suite names and `inline:` key parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct SdesFactory {
    pub config: srtp::Config,
}

impl SrtpFactory for SdesFactory {
    type Transform = SrtpContext;

    fn create(&mut self, keying: &SrtpKeying) -> Result<SrtpContext, SrtpError> {
        let suite = Suite::from_sdes_name(&keying.suite).ok_or(SrtpError::Key)?;
        // The B2BUA hands over the bare base64 key||salt (`sdp::CryptoKey`); SDES text keeps `inline:`.
        let key = match keying.inline_key.trim_start().starts_with("inline:") {
            true => MasterKey::from_sdes_inline(suite, &keying.inline_key),
            false => MasterKey::from_sdes_inline(suite, &format!("inline:{}", keying.inline_key)),
        }
        .map_err(map_err)?;
        SrtpContext::new(suite, &key, self.config).map_err(map_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keying() -> SrtpKeying {
        let key = MasterKey::generate(Suite::AesCm128HmacSha1_80).expect("rng");
        SrtpKeying {
            suite: "AES_CM_128_HMAC_SHA1_80".into(),
            inline_key: key.to_sdes_inline(),
        }
    }

    #[test]
    fn factory_contexts_round_trip_rtp() {
        let k = keying();
        let mut f = SdesFactory::default();
        let mut tx = f.create(&k).expect("context");
        let mut rx = f.create(&k).expect("context");
        let mut buf = [0u8; 200];
        buf[0] = 0x80;
        buf[1] = 0;
        buf[8..12].copy_from_slice(&7u32.to_be_bytes());
        buf[12..172].fill(0x55);
        let n = SrtpTransform::protect_rtp(&mut tx, &mut buf, 172).expect("protect");
        assert_eq!(n, 182);
        assert_ne!(&buf[12..172], &[0x55; 160][..]);
        let m = SrtpTransform::unprotect_rtp(&mut rx, &mut buf, n).expect("unprotect");
        assert_eq!(m, 172);
        assert_eq!(&buf[12..172], &[0x55; 160][..]);
        // The same index again: the replay window refuses it before authentication.
        assert_eq!(
            SrtpTransform::unprotect_rtp(&mut rx, &mut buf, 172),
            Err(SrtpError::Replay)
        );
    }

    #[test]
    fn bare_base64_from_the_b2bua_is_accepted() {
        let mut k = keying();
        k.inline_key = k.inline_key.trim_start_matches("inline:").to_owned();
        assert!(SdesFactory::default().create(&k).is_ok());
    }

    #[test]
    fn bad_keying_is_a_typed_error() {
        let mut f = SdesFactory::default();
        let bad_suite = SrtpKeying {
            suite: "NO_SUCH_SUITE".into(),
            inline_key: keying().inline_key,
        };
        assert_eq!(f.create(&bad_suite).err(), Some(SrtpError::Key));
        let bad_key = SrtpKeying {
            suite: "AES_CM_128_HMAC_SHA1_80".into(),
            inline_key: "inline:notbase64!!".into(),
        };
        assert_eq!(f.create(&bad_key).err(), Some(SrtpError::Key));
    }
}
