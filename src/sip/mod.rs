//! SIP message layer (RFC 3261), sans-IO and zero-copy: a message is a buffer plus `u16` spans for its start
//! line, headers and body; the headers an SBC reads have typed views parsed on demand, every other header
//! is carried byte for byte. See `message::Message` for the entry point. Transactions (`txn`) and dialog
//! state (`dialog`) sit on top.

pub mod builder;
pub mod dialog;
pub mod error;
pub mod framer;
#[doc(hidden)]
pub mod fuzzing;
pub mod header;
pub mod message;
pub mod name;
mod scan;
pub mod txn;
pub mod uri;

pub use builder::{MessageBuilder, error_response};
pub use error::{ErrorKind, ParseError};
pub use framer::{Frame, FrameKind, StreamFramer, frame_at};
pub use header::{Auth, CSeq, MediaType, Method, NameAddr, Reason, Replaces, SessionExpires, Via};
pub use message::{
    HeaderRef, MAX_HEADERS, MAX_MESSAGE, Message, OwnedMessage, StartLine, Transport,
};
pub use name::HeaderName;
pub use uri::{Host, Param, Params, Scheme, Uri};
