//! SDP (RFC 8866) kept line by line, rewritten for media anchoring, and RFC 3264 offer/answer
//! across the two legs of a call.
//!
//! Parsing keeps every line's bytes and terminator, so an unmodified description serializes to
//! the identical bytes, and a rewrite touches only the lines it must (`c=`, `o=`, `m=`, `a=rtcp`,
//! `a=crypto`, codec and direction lines). Sans-IO: ports and key bytes come from caller traits.

pub mod codec;
pub mod crypto;
pub mod flows;
pub mod offer_answer;
pub mod parse;
pub mod rewrite;

#[cfg(test)]
mod tests;

pub use codec::{Codec, CodecPref};
pub use crypto::{CryptoAttr, CryptoKey, CryptoSuite, KeySource};
pub use flows::FlowOptions;
pub use offer_answer::{
    LegMedia, LegPolicy, MediaSession, NegotiatedPayload, NegotiatedStream, PortSource, SrtpPolicy,
};
pub use parse::{Connection, Direction, Level, MediaLine, Origin, Sdp};

use crate::media::flow::Leg;

/// Upper bound on an SDP body; larger input is refused before parsing.
pub const MAX_SDP_LEN: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP body larger than {MAX_SDP_LEN} bytes")]
    TooLarge,
    #[error("SDP must start with v=0")]
    MissingVersion,
    #[error("line {line}: not a <type>=<value> line")]
    BadLine { line: usize },
    #[error("line {line}: not UTF-8")]
    Utf8 { line: usize },
    #[error("missing or malformed o= line")]
    BadOrigin,
    #[error("line {line}: malformed c= line")]
    BadConnection { line: usize },
    #[error("line {line}: malformed m= line")]
    BadMedia { line: usize },
    #[error("line {line}: malformed a=crypto")]
    BadCrypto { line: usize },
    #[error("no media stream index {0}")]
    NoSuchStream(usize),
    #[error("SDES-SRTP keys refused on leg {leg:?}: the transport is not TLS")]
    SdesNotAllowed { leg: Leg },
    #[error("no acceptable media stream (codec or SRTP policy)")]
    NoAcceptableMedia,
    #[error("no pending offer to answer")]
    NoPendingOffer,
    #[error("answer has {got} media lines, offer had {expected}")]
    AnswerMismatch { expected: usize, got: usize },
    #[error("answer unacceptable for stream {stream}: {reason}")]
    AnswerUnacceptable { stream: usize, reason: &'static str },
    #[error("media ports exhausted")]
    PortsExhausted,
}
