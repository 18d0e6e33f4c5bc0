//! `tollgate run`: the signaling loop with the B2BUA as its handler. This is glue only: it moves bytes between
//! [`crate::signaling`] and [`crate::b2bua`], keeps one loop timer at the B2BUA's next deadline, and stops on
//! SIGINT/SIGTERM.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;

use crate::b2bua::{B2bua, Flow, LocalAddr, Transport};
use crate::config::{Config, Transport as CfgTransport};
use crate::signaling::{
    ConnEvent, ConnId, DnsAnswer, DnsError, DnsRequestId, Io, ListenerId, SigConfig, SigLoop,
    SipHandler, StreamBuf, StreamFramer, TimerToken, TlsClient, TlsClientSet, TlsServer,
    TlsServerFiles, Transport as SigTransport, tls_layer_factory_by_listener,
};

/// Frames SIP messages on a byte stream: header section up to the blank line, then Content-Length bytes
/// (RFC 3261 18.3: mandatory on streams). Leading CRLF keep-alives are skipped by the caller.
#[derive(Default)]
pub struct SipFramer;

/// A stream that can never become a SIP message (no Content-Length, or a header section too large).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameError;

const MAX_HEADER_SECTION: usize = 64 << 10;

impl StreamFramer for SipFramer {
    type Error = FrameError;

    fn frame_len(&mut self, data: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(end) = memchr::memmem::find(data, b"\r\n\r\n").map(|i| i + 4) else {
            return if data.len() > MAX_HEADER_SECTION {
                Err(FrameError)
            } else {
                Ok(None)
            };
        };
        let head = data.get(..end).unwrap_or_default();
        let mut len = None;
        for line in head.split(|&b| b == b'\n') {
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let name = line.get(..colon).unwrap_or_default().trim_ascii();
            if name.eq_ignore_ascii_case(b"Content-Length") || name.eq_ignore_ascii_case(b"l") {
                let v = line.get(colon + 1..).unwrap_or_default().trim_ascii();
                let n = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                    .ok_or(FrameError)?;
                len = Some(n);
            }
        }
        let len = len.ok_or(FrameError)?;
        let total = end.checked_add(len).ok_or(FrameError)?;
        Ok((data.len() >= total).then_some(total))
    }
}

/// The signaling thread's handler: the B2BUA plus the bookkeeping that maps its flows onto loop ids.
pub struct App {
    b2b: B2bua,
    /// Loop listener per B2BUA local index.
    listeners: Vec<ListenerId>,
    conns: HashMap<u64, ConnId>,
    conn_local: HashMap<u64, u16>,
    armed: Option<(Instant, TimerToken)>,
    framer: SipFramer,
}

fn conn_key(c: ConnId) -> u64 {
    (u64::from(c.generation) << 32) | u64::from(c.index)
}

fn sig_transport(t: Transport) -> SigTransport {
    match t {
        Transport::Udp => SigTransport::Udp,
        Transport::Tcp => SigTransport::Tcp,
        Transport::Tls => SigTransport::Tls,
    }
}

impl App {
    pub fn new(b2b: B2bua, listeners: Vec<ListenerId>) -> Self {
        App {
            b2b,
            listeners,
            conns: HashMap::new(),
            conn_local: HashMap::new(),
            armed: None,
            framer: SipFramer,
        }
    }

    pub fn b2bua(&self) -> &B2bua {
        &self.b2b
    }

    fn flush(&mut self, io: &mut Io<'_>) {
        while let Some(t) = self.b2b.poll_transmit() {
            let r = match t.flow.transport {
                Transport::Udp => {
                    let l = self
                        .listeners
                        .get(usize::from(t.flow.local))
                        .copied()
                        .unwrap_or(ListenerId(0));
                    io.send_datagram(l, t.dest, &t.bytes)
                }
                Transport::Tcp | Transport::Tls => {
                    match t.flow.conn.and_then(|c| self.conns.get(&c).copied()) {
                        Some(c) => io.send_on(c, &t.bytes),
                        None => io
                            .send_stream_to(t.dest, sig_transport(t.flow.transport), &t.bytes)
                            .map(|c| {
                                self.conns.insert(conn_key(c), c);
                                self.conn_local.insert(conn_key(c), t.flow.local);
                            }),
                    }
                }
            };
            if let Err(e) = r {
                tracing::debug!(dest = %t.dest, error = %e, "send failed");
                if t.flow.transport != Transport::Udp {
                    self.b2b
                        .on_transport_error(io.now(), t.dest, t.flow.transport);
                }
            }
        }
        let next = self.b2b.next_timeout();
        match (next, self.armed) {
            (Some(at), Some((armed, _))) if armed <= at => {}
            (Some(at), prev) => {
                if let Some((_, tok)) = prev {
                    io.cancel_timer(tok);
                }
                self.armed = Some((at, io.set_timer_at(at, 0)));
            }
            (None, _) => {}
        }
    }
}

impl SipHandler for App {
    type Message = ();

    fn on_datagram(
        &mut self,
        now: Instant,
        listener: ListenerId,
        src: SocketAddr,
        data: &[u8],
        io: &mut Io<'_>,
    ) {
        // CRLF keep-alives (RFC 5626) carry no message.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let flow = Flow {
            transport: Transport::Udp,
            local: listener.0,
            conn: None,
        };
        self.b2b.on_message(now, flow, src, data);
        self.flush(io);
    }

    fn on_stream_data(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        buf: &mut StreamBuf,
        io: &mut Io<'_>,
    ) {
        let key = conn_key(conn);
        let local = self.conn_local.get(&key).copied().unwrap_or(0);
        let flow = Flow {
            transport: Transport::Tcp,
            local,
            conn: Some(key),
        };
        loop {
            let skip = buf
                .data()
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            if skip > 0 {
                buf.consume(skip);
            }
            match buf.next_frame(&mut self.framer) {
                Ok(Some(frame)) => self.b2b.on_message(now, flow, peer, frame),
                Ok(None) => break,
                Err(FrameError) => {
                    tracing::debug!(%peer, "unframeable stream, closing");
                    io.close(conn);
                    break;
                }
            }
        }
        self.flush(io);
    }

    fn on_conn_event(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        event: ConnEvent,
        io: &mut Io<'_>,
    ) {
        let key = conn_key(conn);
        match event {
            ConnEvent::Accepted { listener } => {
                self.conns.insert(key, conn);
                self.conn_local.insert(key, listener.0);
            }
            ConnEvent::Connected => {
                self.conns.insert(key, conn);
            }
            ConnEvent::Closed(reason) => {
                self.conns.remove(&key);
                self.conn_local.remove(&key);
                if matches!(reason, crate::signaling::CloseReason::ConnectFailed(_)) {
                    self.b2b.on_transport_error(now, peer, Transport::Tcp);
                    self.flush(io);
                }
            }
        }
    }

    fn on_timer(&mut self, now: Instant, _token: TimerToken, _data: u64, io: &mut Io<'_>) {
        self.armed = None;
        self.b2b.on_timeout(now);
        self.flush(io);
    }

    fn on_dns(
        &mut self,
        _now: Instant,
        _req: DnsRequestId,
        _result: Result<DnsAnswer, DnsError>,
        _io: &mut Io<'_>,
    ) {
    }

    fn on_message(&mut self, _now: Instant, _msg: (), _io: &mut Io<'_>) {}
}

/// Runs tollgate with `cfg` on the calling thread until SIGINT/SIGTERM.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    // Forwarding first: a bad database stops the start before any socket is bound, never an empty table.
    let forwards = crate::forward::runtime::start(&cfg)?;
    let mut sig: SigLoop<()> = SigLoop::new(SigConfig::default()).context("signaling loop")?;
    let mut listeners = Vec::new();
    let mut locals = Vec::new();
    let mut tls_servers = Vec::new();
    for l in &cfg.listen {
        let (id, transport) = match l.transport {
            CfgTransport::Udp => (sig.bind_udp(l.address), Transport::Udp),
            CfgTransport::Tcp => (sig.bind_tcp(l.address), Transport::Tcp),
            CfgTransport::Tls => (sig.bind_tls(l.address), Transport::Tls),
        };
        let id = id.with_context(|| format!("bind {} {}", l.transport.as_str(), l.address))?;
        if let Some(files) = &l.tls {
            // A listener CA means "clients must present a certificate signed by it" (mutual TLS).
            let mut f = TlsServerFiles::single(&files.cert, &files.key);
            f.client_ca = files.ca.clone();
            let server =
                TlsServer::from_files(f).with_context(|| format!("TLS listener {}", l.address))?;
            tls_servers.push((id, server));
        }
        let addr = sig.local_addr(id).unwrap_or(l.address);
        tracing::info!(transport = l.transport.as_str(), %addr, "listening");
        listeners.push(id);
        locals.push(LocalAddr { transport, addr });
    }
    // Outbound TLS (sips: targets) verifies the peer against the system roots until trunks carry their own CA.
    let clients = TlsClientSet::new();
    match TlsClient::new(None, None) {
        Ok(c) => clients.set_default(Some(&c)),
        Err(e) => tracing::warn!(error = %e, "no system CA roots: outbound TLS will be refused"),
    }
    sig.set_tls_layer(tls_layer_factory_by_listener(tls_servers, None, clients));
    let handle = sig.handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("signal handlers")?;
    let sig_handle = signals.handle();
    let stopper = std::thread::Builder::new()
        .name("tollgate-signals".into())
        .spawn(move || {
            if let Some(s) = signals.forever().next() {
                tracing::info!(signal = s, "stopping");
                handle.stop();
            }
        })
        .context("signal thread")?;
    let mut b2b = B2bua::new(Arc::new(cfg), locals, Instant::now());
    if let Some(f) = &forwards {
        b2b.set_forwards(f.table());
    }
    let app = App::new(b2b, listeners);
    let (app, counters) = sig.run(app).context("signaling loop")?;
    sig_handle.close();
    let _ = stopper.join();
    drop(forwards);
    tracing::info!(b2bua = ?app.b2bua().counters(), loop_counters = ?counters.fields(), "stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_splits_and_waits() {
        let mut f = SipFramer;
        let m = b"OPTIONS sip:x SIP/2.0\r\nl: 3\r\n\r\nabcINVITE";
        assert_eq!(f.frame_len(m), Ok(Some(m.len() - 6)));
        assert_eq!(
            f.frame_len(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 3\r\n\r\nab"),
            Ok(None)
        );
        assert_eq!(f.frame_len(b"OPTIONS sip:x SIP/2.0\r\n"), Ok(None));
        assert_eq!(
            f.frame_len(b"OPTIONS sip:x SIP/2.0\r\n\r\n"),
            Err(FrameError)
        );
        assert_eq!(
            f.frame_len(b"X\r\nContent-Length: x\r\n\r\n"),
            Err(FrameError)
        );
    }
}
