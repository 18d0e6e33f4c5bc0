//! The signaling thread's I/O: one io_uring ring for every SIP socket, the timer wheel, and the DNS helper.
//!
//! This module moves bytes and time; it does not parse SIP. The B2BUA plugs in through [`SipHandler`] and
//! acts on the world through [`Io`]. Other threads reach the loop through a [`LoopHandle`] (lock-free queue
//! plus eventfd).
//!
//! - UDP: one multishot `RECVMSG` per listener into a provided-buffer ring; buffers go back to the kernel after
//!   the handler returned. Sends are SQEs queued during the batch and submitted together with the next wait.
//! - TCP/TLS: multishot accept, one receive per connection into its own buffer, writes with partial-write
//!   resubmission, outbound connects reused per `(remote address, transport)`, idle close, connection limits.
//!   A [`StreamLayer`] sits between socket bytes and SIP bytes: plain, or rustls ([`tls`]).
//! - Time: a millisecond [`TimerWheel`]; the loop sleeps in `io_uring_enter` until the next deadline.
//! - DNS: hickory on a helper thread, answers back as completions.
//!
//! Needs Linux 6.0+ (multishot recvmsg, buffer rings); uses DEFER_TASKRUN when the kernel has it (6.1+).
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//! use tollgate::signaling::*;
//!
//! struct B2bua;
//! impl SipHandler for B2bua {
//!     type Message = ();
//!     fn on_datagram(&mut self, _: Instant, l: ListenerId, src: SocketAddr, data: &[u8], io: &mut Io<'_>) {
//!         // parse, run transactions, answer:
//!         let _ = io.send_datagram(l, src, data);
//!         io.set_timer(Duration::from_millis(500), 42); // e.g. timer A of a transaction
//!     }
//!     fn on_stream_data(&mut self, _: Instant, c: ConnId, _: SocketAddr, buf: &mut StreamBuf, io: &mut Io<'_>) {
//!         let n = buf.len(); // a real handler takes whole messages with `buf.next_frame(&mut framer)`
//!         buf.consume(n);
//!         let _ = io.send_on(c, b"...");
//!     }
//!     fn on_conn_event(&mut self, _: Instant, _: ConnId, _: SocketAddr, _: ConnEvent, _: &mut Io<'_>) {}
//!     fn on_timer(&mut self, _: Instant, _: TimerToken, _data: u64, _: &mut Io<'_>) {}
//!     fn on_dns(&mut self, _: Instant, _: DnsRequestId, _: Result<DnsAnswer, DnsError>, _: &mut Io<'_>) {}
//!     fn on_message(&mut self, _: Instant, _: (), _: &mut Io<'_>) {}
//! }
//!
//! let mut sig = SigLoop::<()>::new(SigConfig::default())?;
//! sig.bind_udp("0.0.0.0:5060".parse().unwrap())?;
//! sig.bind_tcp("0.0.0.0:5060".parse().unwrap())?;
//! sig.with_dns(DnsConfig::default())?;
//! let handle = sig.handle();
//! let t = std::thread::spawn(move || sig.run(B2bua));
//! // ... later, from any thread:
//! handle.stop();
//! let (_b2bua, counters) = t.join().unwrap()?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod conn;
pub mod counters;
pub mod dns;
mod event_loop;
pub mod handler;
mod shared;
pub mod stream;
pub mod timer;
pub mod tls;
mod udp;

pub use counters::Counters;
pub use dns::{DnsAnswer, DnsConfig, DnsError, DnsQuery, DnsRequestId, SrvRecord};
pub use event_loop::{Io, SendError, SigConfig, SigLoop, UdpSendOp};
pub use handler::{CloseReason, ConnEvent, ConnId, ListenerId, SipHandler, Transport};
pub use shared::LoopHandle;
pub use stream::{
    LayerContext, LayerError, LayerFactory, PlainLayer, StreamBuf, StreamFramer, StreamLayer,
};
pub use timer::{TimerToken, TimerWheel};
pub use tls::{
    CertKeyFiles, TlsClient, TlsClientSet, TlsError, TlsFailure, TlsFailureKind, TlsLayer,
    TlsServer, TlsServerFiles, tls_layer_factory, tls_layer_factory_by_listener,
};
