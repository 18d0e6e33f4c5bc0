//! The signaling thread's I/O: one io_uring ring for every SIP socket, the timer wheel, and the DNS helper.
//!
//! This module moves bytes and time; it does not parse SIP. The B2BUA plugs in through [`SipHandler`] and
//! acts on the world through [`Io`]. Other threads reach the loop through a [`LoopHandle`] (lock-free queue
//! plus eventfd).

mod conn;
pub mod counters;
pub mod dns;
mod event_loop;
pub mod handler;
mod shared;
pub mod stream;
pub mod timer;
mod udp;

pub use counters::Counters;
pub use dns::{DnsAnswer, DnsConfig, DnsError, DnsQuery, DnsRequestId, SrvRecord};
pub use event_loop::{Io, SendError, SigConfig, SigLoop};
pub use handler::{CloseReason, ConnEvent, ConnId, ListenerId, SipHandler, Transport};
pub use shared::LoopHandle;
pub use stream::{LayerError, PlainLayer, StreamBuf, StreamFramer, StreamLayer};
pub use timer::{TimerToken, TimerWheel};
