//! SIP transactions (RFC 3261 section 17, with the RFC 6026 "Accepted" states), sans-IO.
//!
//! The layer never sees a parsed message: the caller extracts the handful of fields a transaction needs
//! ([`RequestInfo`], [`ResponseInfo`], [`ClientRequest`]) and hands over the wire bytes, which are kept as
//! [`bytes::Bytes`] for retransmission. Everything the layer wants done comes back as [`Action`]s pushed into a
//! caller-provided `Vec`, and time only moves when the caller says so (`now: Instant` on every call, plus
//! [`TxnTable::poll`] at [`TxnTable::next_deadline`]).
//!
//! Two messages are sent by a transaction without the TU asking for them, and the layer cannot build them without
//! a parser, so it asks the caller:
//! * the ACK for a non-2xx final response (INVITE client): the table emits [`Action::NeedAck`]; the caller builds
//!   the ACK (RFC 3261 17.1.1.3) and hands it to [`TxnTable::provide_ack`], which sends it and keeps it to answer
//!   retransmissions of that final response by itself;
//! * the 100 Trying (INVITE server): after [`TimerConfig::trying_delay`] (default 200 ms, RFC 3261 17.2.1;
//!   zero = at once) without a response from the TU, the table emits [`Action::NeedTrying`]; the caller builds
//!   the 100 and sends it through [`TxnTable::send_response`] like any other response.
//!
//! Both requests are answered synchronously while handling the actions; on a reliable transport the Completed
//! state of an INVITE client transaction lasts until the next [`TxnTable::poll`] (Timer D = 0), so the ACK must
//! be provided before that poll.
//!
//! The driving loop, in short:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use tollgate::sip::txn::*;
//!
//! let mut table = TxnTable::new(TimerConfig::default());
//! let mut actions = Vec::new();
//! let t0 = Instant::now();
//! let peer = Dest { transport: Transport::Udp, addr: "192.0.2.1:5060".parse().unwrap() };
//!
//! // A request came in: the parser gave us these fields (spans into the datagram).
//! let invite = Bytes::from_static(b"INVITE sip:bob@example.com SIP/2.0\r\n...");
//! let info = RequestInfo { method: b"INVITE", branch: b"z9hG4bK776", sent_by: b"192.0.2.1", ..Default::default() };
//! let RequestMatch::New(id) = table.on_request(t0, &info, &invite, peer, &mut actions) else { unreachable!() };
//! assert!(matches!(actions[0], Action::PassToTu { msg: TuMsg::Request, .. }));
//! actions.clear();
//!
//! // The TU rejects it; the transaction sends and will retransmit the 486 until the ACK (Timer G).
//! let busy = Bytes::from_static(b"SIP/2.0 486 Busy Here\r\n...");
//! table.send_response(t0, id, 486, busy, b"totag", &mut actions).unwrap();
//! assert!(matches!(actions[0], Action::Send { retransmission: false, .. }));
//! actions.clear();
//!
//! // The I/O loop sleeps until the next deadline, then polls.
//! let wake = table.next_deadline().unwrap();
//! assert_eq!(wake, t0 + Duration::from_millis(500));
//! table.poll(wake, &mut actions);
//! assert!(matches!(actions[0], Action::Send { retransmission: true, .. }));
//! ```
mod client_invite;
mod client_non_invite;
mod key;
mod server_invite;
mod server_non_invite;
mod table;
mod timers;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

pub use key::{ClientRequest, MAGIC_COOKIE, RequestInfo, ResponseInfo};
pub use table::{RequestMatch, ResponseMatch, TxnStats, TxnTable};
pub use timers::{TimerConfig, TimerName};

/// Transport a transaction's messages travel on; decides whether retransmission timers run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// Reliable transports get no retransmissions and zero-length wait states (RFC 3261 17.1.1.2, 17.1.2.2).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// Where a transaction sends: the request target for a client, the response address (RFC 3261 18.2.2) for a
/// server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dest {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Handle of a transaction in a [`TxnTable`]; stale handles (of terminated transactions) never alias new ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnId {
    pub(crate) idx: u32,
    pub(crate) generation: u32,
}

impl TxnId {
    /// A number unique among live transactions of one table (slab index and generation), for logs and for
    /// keying TU state outside the table.
    pub fn as_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.idx)
    }
}

/// What a [`Action::PassToTu`] carries up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuMsg {
    /// The request that created a server transaction.
    Request,
    /// An ACK that matched an INVITE server transaction in the Accepted state (the ACK for its 2xx when the
    /// peer reuses the branch, or RFC 2543 matching).
    Ack,
    /// A response for a client transaction.
    Response { status: u16 },
}

/// Which of the four state machines a transaction runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnKind {
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
}

/// State of a transaction, as named in RFC 3261 17 and RFC 6026.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnState {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// Output of the transaction layer; the caller executes these in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Put these bytes on the wire. `retransmission` is false for the first copy of a message.
    Send {
        txn: TxnId,
        bytes: Bytes,
        dest: Dest,
        retransmission: bool,
    },
    /// Deliver the message (whose bytes the caller also holds) to the transaction user.
    PassToTu {
        txn: TxnId,
        msg: TuMsg,
        bytes: Bytes,
    },
    /// Build the ACK for the non-2xx final response `status` (which was just passed to the TU) and give it to
    /// [`TxnTable::provide_ack`]. `request` is the INVITE as sent: the ACK copies its Request-URI, Call-ID,
    /// From, CSeq number, top Via and Route, and takes To from the response (RFC 3261 17.1.1.3).
    NeedAck {
        txn: TxnId,
        status: u16,
        request: Bytes,
    },
    /// Build a 100 Trying for this INVITE server transaction and send it with [`TxnTable::send_response`].
    /// `request` is the INVITE as received (the 100 copies its Via, From, To, Call-ID and CSeq).
    NeedTrying { txn: TxnId, request: Bytes },
    /// A timer that means failure fired (B, F, H, or the CANCEL guard of an INVITE client transaction).
    Timeout { txn: TxnId, timer: TimerName },
    /// The transport reported a fatal error for this transaction (see [`TxnTable::transport_error`]).
    TransportError { txn: TxnId },
    /// The transaction is gone; its id is now stale.
    Terminated { txn: TxnId },
}

/// Misuse of a transaction by its user (never caused by network input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("no such transaction (terminated or never existed)")]
    NotFound,
    #[error("operation not allowed in the transaction's current state")]
    WrongState,
    #[error("operation does not apply to this kind of transaction")]
    WrongKind,
    #[error("status code {0} is not a SIP response code (100..=699)")]
    InvalidStatus(u16),
    #[error("a client transaction with this branch and method already exists")]
    Duplicate,
    #[error(
        "ACK never creates a client transaction (2xx ACKs are sent by the TU, non-2xx ACKs by the INVITE transaction)"
    )]
    InvalidMethod,
}

/// Method classes the state machines care about; every other method is "non-INVITE".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MethodClass {
    Invite,
    Ack,
    Cancel,
    Other,
}

impl MethodClass {
    /// Methods are case-sensitive (RFC 3261 7.1).
    pub(crate) fn of(method: &[u8]) -> Self {
        match method {
            b"INVITE" => MethodClass::Invite,
            b"ACK" => MethodClass::Ack,
            b"CANCEL" => MethodClass::Cancel,
            _ => MethodClass::Other,
        }
    }
}

/// What a state machine works with during one call: its identity, the clock, and where its output goes.
pub(crate) struct Cx<'a> {
    pub id: TxnId,
    pub now: Instant,
    pub cfg: &'a TimerConfig,
    pub dest: Dest,
    pub timers: &'a mut timers::Timers,
    pub out: &'a mut Vec<Action>,
    pub stats: &'a mut TxnStats,
}

impl Cx<'_> {
    pub fn reliable(&self) -> bool {
        self.dest.transport.is_reliable()
    }

    pub fn send(&mut self, bytes: &Bytes, retransmission: bool) {
        if retransmission {
            self.stats.retransmissions += 1;
        }
        self.out.push(Action::Send {
            txn: self.id,
            bytes: bytes.clone(),
            dest: self.dest,
            retransmission,
        });
    }

    pub fn pass(&mut self, msg: TuMsg, bytes: &Bytes) {
        self.out.push(Action::PassToTu {
            txn: self.id,
            msg,
            bytes: bytes.clone(),
        });
    }

    pub fn timeout(&mut self, timer: TimerName) {
        self.stats.timed_out += 1;
        self.out.push(Action::Timeout {
            txn: self.id,
            timer,
        });
    }

    pub fn transport_error(&mut self) {
        self.stats.transport_errors += 1;
        self.out.push(Action::TransportError { txn: self.id });
    }

    /// Arm `slot` at `now + after`.
    pub fn arm(&mut self, slot: usize, after: std::time::Duration, name: TimerName) {
        self.timers.arm(slot, self.now + after, name);
    }
}
