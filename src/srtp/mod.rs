//! SRTP and SRTCP (RFC 3711) for the media fast path, with the AES-CM suites of RFC 4568 / RFC 6188
//! and the AES-GCM suites of RFC 7714. Sans-IO: packets in caller buffers, transformed in place.
//!
//! One [`SrtpContext`] serves one direction of one master key; it derives the session keys once and
//! keeps per-SSRC state (ROC, highest sequence number, replay windows) in a table sized at creation,
//! so the per-packet path never allocates.
//!
//! Interop note: libsrtp2 2.x releases (2.3 to 2.8 at least) derive AES-192 session keys with an
//! AES-256 PRF (upstream issue #763, fixed only on libsrtp's main branch by PR #765), so
//! `AES_192_CM_HMAC_SHA1_*` with a libsrtp-based peer fails authentication. We follow RFC 6188 (checked against its section 7.4 vectors); the SDP layer should
//! prefer the 128- and 256-bit suites when offering.

mod cipher;
mod context;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod key;
mod replay;
mod suite;

pub use context::{Config, MAX_BATCH, MAX_SSRC_CAPACITY, SrtpContext, StreamState};
pub use error::SrtpError;
pub use key::{MasterKey, Mki};
pub use replay::{MAX_REPLAY_WINDOW, ReplayWindow};
pub use suite::{MAX_MKI_LEN, MAX_OVERHEAD, Suite};

#[cfg(test)]
pub(crate) mod test_util {
    /// Hex (any case, whitespace ignored) to bytes; test vectors only.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        clean
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }
}
