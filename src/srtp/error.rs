//! The one error type of the SRTP engine.

/// Why a packet or a key was refused. Every refusal leaves the context as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SrtpError {
    /// The authentication tag (HMAC-SHA1 or GCM tag) does not match.
    #[error("SRTP authentication failed")]
    AuthFailed,
    /// The packet index was already received, or is older than the replay window.
    #[error("SRTP packet replayed or too old for the replay window")]
    Replayed,
    /// The packet is shorter than its header, tag, MKI or SRTCP index need.
    #[error("SRTP packet too short")]
    TooShort,
    /// A new SSRC arrived while every slot of the stream table is taken.
    #[error("unknown SSRC and the stream table is full")]
    UnknownSsrc,
    /// Master key or salt of the wrong length or encoding for the suite.
    #[error("bad SRTP master key")]
    BadKey,
    /// An SDES `inline:` key parameter that does not parse.
    #[error("bad SDES key parameter")]
    BadSdes,
    /// The packet's header is not RTP version 2, or its CSRC/extension lengths overrun the packet.
    #[error("malformed RTP/RTCP header")]
    Malformed,
    /// The caller's buffer has no room for the tag (and MKI, SRTCP index).
    #[error("buffer too small for the SRTP trailer")]
    BufferTooSmall,
    /// The packet carries an MKI other than the context's.
    #[error("MKI does not match the context's master key")]
    MkiMismatch,
    /// The master key reached its lifetime, or the ROC / SRTCP index would wrap: rekey.
    #[error("SRTP master key exhausted (lifetime or index space)")]
    KeyExhausted,
    /// A `Config` value out of range (replay window, SSRC capacity).
    #[error("bad SRTP context configuration")]
    BadConfig,
    /// The operating system's random number generator failed.
    #[error("OS random number generator failed")]
    Rng,
}
