//! `tollgate run`: the signaling loop with the B2BUA as its handler. This is glue only: it moves bytes between
//! [`crate::signaling`] and [`crate::b2bua`], keeps one loop timer at the B2BUA's next deadline, and stops on
//! SIGINT/SIGTERM.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::b2bua::{B2bua, Flow, LocalAddr, MediaAnchor, Transport};
use crate::config::{Config, MediaMode as CfgMediaMode, Transport as CfgTransport};
use crate::media::EventQueue;
use crate::mediaplane::{MediaMode, MediaPlane, MediaPlaneConfig};
use crate::mgmt::{
    CallsSnapshot, Health, LivePublisher, LiveStats, MgmtServer, MgmtState, SnapshotPublisher,
};
use crate::signaling::{
    ConnEvent, ConnId, DnsAnswer, DnsError, DnsRequestId, Io, ListenerId, SigConfig, SigLoop,
    SipHandler, StreamBuf, StreamFramer, TimerToken, TlsClient, TlsClientSet, TlsServer,
    TlsServerFiles, Transport as SigTransport, tls_layer_factory_by_listener,
};
use crate::stats::Registry;

mod control;

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
    /// Media workers' events (latched, timeout, DTMF, stats), when media is anchored.
    media_events: Option<Arc<EventQueue>>,
    /// Where the mgmt thread reads counters and live calls from, and when to publish next.
    publish: Option<(Arc<LivePublisher>, Arc<SnapshotPublisher>)>,
    next_publish: Option<Instant>,
    life: Lifecycle,
    cps: control::CpsMeter,
    /// Finished calls go here, one JSON line each (`[mgmt] cdr_file`), else to the log under target `cdr`.
    cdr: Option<crate::stats::cdr::CdrWriter<std::fs::File>>,
    /// `[mgmt] sip_trace_*`: every message in and out, with the local address of each listener by index.
    trace: Trace,
    /// systemd readiness (`Type=notify`), when started by systemd.
    notifier: Option<crate::ops::notify::Notifier>,
    /// Proves to the watchdog that the signaling thread still turns.
    heartbeat: Option<crate::ops::notify::Heartbeat>,
    /// `[security] kernel_bans`: the guard's bans mirrored into netfilter.
    kernel_bans: Option<crate::ops::kernel_bans::KernelBans>,
}

/// What other threads ask of the signaling thread: the signal thread and the control socket.
#[derive(Debug)]
pub enum AppMsg {
    /// SIGHUP: load the config file again; new calls use it, live calls keep their legs and flows.
    Reload,
    /// SIGTERM/SIGINT: refuse new calls (503), let the rest end up to `[mgmt] drain_timeout_s`, then BYE
    /// them and stop. A second one stops at once (after BYEs).
    Drain,
    /// A `tollgate ctl` request, answered on the channel inside.
    Ctl(Box<control::CtlCall>),
}

/// Lifecycle state the App keeps for reload and drain.
struct Lifecycle {
    config_path: Option<std::path::PathBuf>,
    handle: Option<crate::signaling::LoopHandle<AppMsg>>,
    drain_deadline: Option<Instant>,
    /// When the loop is stopped (a short grace after the last BYEs so they leave).
    stop_at: Option<Instant>,
}

/// Grace between hanging up the last calls and stopping the loop.
const STOP_GRACE: Duration = Duration::from_millis(300);

/// How often counters and the live-calls view are published for `/metrics`, `/calls` and `ctl`.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// How often the signaling thread looks at the media events when nothing else wakes it: RTP timeouts are
/// seconds, stats are for humans, so a few tens of milliseconds is plenty and costs nothing when idle.
const MEDIA_POLL: Duration = Duration::from_millis(20);

/// Events handled per wake-up, so a flood of stats never starves SIP.
const MEDIA_EVENTS_PER_POLL: usize = 4096;

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
            media_events: None,
            publish: None,
            next_publish: None,
            life: Lifecycle {
                config_path: None,
                handle: None,
                drain_deadline: None,
                stop_at: None,
            },
            cps: control::CpsMeter::default(),
            cdr: None,
            trace: None,
            notifier: None,
            heartbeat: None,
            kernel_bans: None,
        }
    }

    /// Mirror the guard's bans into netfilter (`[security] kernel_bans`).
    pub fn with_kernel_bans(mut self, k: crate::ops::kernel_bans::KernelBans) -> Self {
        self.kernel_bans = Some(k);
        self
    }

    /// Traces every SIP message received and sent (`[mgmt] sip_trace_pcap` / `sip_trace_hep`).
    pub fn with_trace(mut self, t: crate::stats::trace::SipTracer) -> Self {
        let locals = self.b2b.config().listen.iter().map(|l| l.address).collect();
        self.trace = Some((t, locals));
        self
    }

    /// Where finished calls are written (`[mgmt] cdr_file`); without one they are logged.
    pub fn with_cdr(mut self, w: crate::stats::cdr::CdrWriter<std::fs::File>) -> Self {
        self.cdr = Some(w);
        self
    }

    /// systemd notifications (RELOADING/READY/STOPPING) and the signaling thread's watchdog heartbeat.
    pub fn with_systemd(
        mut self,
        notifier: Option<crate::ops::notify::Notifier>,
        heartbeat: Option<crate::ops::notify::Heartbeat>,
    ) -> Self {
        self.notifier = notifier;
        self.heartbeat = heartbeat;
        self
    }

    /// Reload from `path` on [`AppMsg::Reload`]; stop through `handle` after a drain.
    pub fn with_lifecycle(
        mut self,
        path: Option<std::path::PathBuf>,
        handle: crate::signaling::LoopHandle<AppMsg>,
    ) -> Self {
        self.life.config_path = path;
        self.life.handle = Some(handle);
        self
    }

    /// Loads the config file again and applies it to new calls. `Ok` lists what changed (and what needs a
    /// restart to take effect); `Err` lists why it was refused, and the running config stays.
    fn reload(&mut self, now: Instant) -> Result<Vec<String>, Vec<String>> {
        let Some(path) = self.life.config_path.clone() else {
            tracing::warn!("reload: running on the embedded configuration, nothing to reload");
            return Err(vec![
                "running on the embedded configuration (no --config), nothing to reload".into(),
            ]);
        };
        if let Some(n) = &self.notifier {
            let _ = n.reloading();
        }
        let r = self.reload_from(&path, now);
        if let Some(n) = &self.notifier {
            let _ = n.ready(if r.is_ok() {
                "serving, configuration reloaded"
            } else {
                "serving, reload refused"
            });
        }
        r
    }

    fn reload_from(
        &mut self,
        path: &std::path::Path,
        now: Instant,
    ) -> Result<Vec<String>, Vec<String>> {
        let cfg = match crate::config::load_file(path) {
            Ok(c) => c,
            Err(errs) => {
                let errs: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
                for e in &errs {
                    tracing::error!("{e}");
                }
                tracing::error!(file = %path.display(), "reload refused: the running configuration stays");
                return Err(errs);
            }
        };
        let d = crate::config::diff(self.b2b.config(), &cfg);
        match self.b2b.reload(Arc::new(cfg), now) {
            Ok(()) => {
                tracing::info!(
                    file = %path.display(),
                    trunks = ?d.trunks,
                    rules = ?d.rules,
                    routes = ?d.routes,
                    sections = ?d.sections,
                    "configuration reloaded for new calls"
                );
                let mut changes = Vec::new();
                for (what, c) in [
                    ("trunk", &d.trunks),
                    ("rule", &d.rules),
                    ("route", &d.routes),
                ] {
                    for (verb, names) in [
                        ("added", &c.added),
                        ("removed", &c.removed),
                        ("changed", &c.changed),
                    ] {
                        for n in names {
                            changes.push(format!("{what} {n} {verb}"));
                        }
                    }
                }
                for sct in &d.sections {
                    changes.push(format!("[{sct}] changed"));
                }
                for r in &d.restart_reasons {
                    tracing::warn!(reason = %r, "this change needs a restart to take effect");
                    changes.push(format!("needs a restart: {r}"));
                }
                if changes.is_empty() {
                    changes.push("no changes".into());
                }
                Ok(changes)
            }
            Err(e) => {
                tracing::error!(reason = %e.0, "reload refused: the running configuration stays");
                Err(vec![e.0])
            }
        }
    }

    fn drain(&mut self, now: Instant) {
        if self.b2b.is_draining() {
            tracing::info!("second stop request: hanging up every call now");
            self.finish_drain(now);
            return;
        }
        let t = Duration::from_secs(u64::from(self.b2b.config().mgmt.drain_timeout_s));
        self.start_drain(now, t);
    }

    fn start_drain(&mut self, now: Instant, t: Duration) {
        tracing::info!(calls = self.b2b.active_calls(), timeout = ?t, "draining: new calls get 503");
        if let Some(n) = &self.notifier {
            let _ = n.stopping(&format!("draining {} calls", self.b2b.active_calls()));
        }
        self.b2b.start_drain();
        self.life.drain_deadline = Some(now + t);
    }

    fn finish_drain(&mut self, now: Instant) {
        if self.b2b.active_calls() > 0 {
            self.b2b.hang_up_all(now, "drain");
        }
        self.life.drain_deadline = None;
        self.life.stop_at.get_or_insert(now + STOP_GRACE);
    }

    /// Drain progress, run on every wake-up.
    fn check_lifecycle(&mut self, now: Instant) {
        if let Some(d) = self.life.drain_deadline
            && (self.b2b.active_calls() == 0 || now >= d)
        {
            self.finish_drain(now);
        }
        if self.life.stop_at.is_some_and(|t| now >= t)
            && let Some(h) = &self.life.handle
        {
            h.stop();
        }
    }

    /// Publish counters and live calls for the mgmt thread about once a second.
    pub fn with_publishers(
        mut self,
        live: Arc<LivePublisher>,
        calls: Arc<SnapshotPublisher>,
    ) -> Self {
        self.publish = Some((live, calls));
        self
    }

    /// Finished calls leave the B2BUA here, so its record list never grows while the daemon runs.
    fn write_cdrs(&mut self) {
        for rec in self.b2b.take_records() {
            match &mut self.cdr {
                Some(w) => {
                    if let Err(e) = w.write(&rec) {
                        tracing::error!(error = %e, call = %rec.call_id, "CDR not written");
                    }
                }
                None => match serde_json::to_string(&rec) {
                    Ok(j) => tracing::info!(target: "cdr", "{j}"),
                    Err(e) => tracing::error!(error = %e, "CDR not serialized"),
                },
            }
        }
    }

    fn maybe_publish(&mut self, now: Instant) {
        self.write_cdrs();
        if self.publish.is_none() || self.next_publish.is_some_and(|t| now < t) {
            return;
        }
        self.next_publish = Some(now + PUBLISH_EVERY);
        if let Some(k) = &mut self.kernel_bans {
            let ips: Vec<std::net::IpAddr> = self.b2b.bans(now).into_iter().map(|b| b.0).collect();
            k.sync(&ips);
        }
        let trunks = self.b2b.trunk_views();
        for t in &trunks {
            self.cps.sample(&t.name, t.totals.calls, now);
        }
        let Some((live, calls)) = &self.publish else {
            return;
        };
        live.publish(LiveStats {
            counters: *self.b2b.counters(),
            active_calls: self.b2b.active_calls(),
            trunks,
            media: self.b2b.media_counters(),
        });
        calls.publish(CallsSnapshot {
            taken_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            calls: self.b2b.calls_info(),
        });
    }

    /// Feed the media plane's events to the B2BUA.
    pub fn with_media_events(mut self, events: Arc<EventQueue>) -> Self {
        self.media_events = Some(events);
        self
    }

    fn poll_media(&mut self, now: Instant) {
        let Some(q) = &self.media_events else {
            return;
        };
        for _ in 0..MEDIA_EVENTS_PER_POLL {
            let Some(ev) = q.pop() else { break };
            self.b2b.on_media_event(now, ev);
        }
    }

    pub fn b2bua(&self) -> &B2bua {
        &self.b2b
    }

    fn flush(&mut self, io: &mut Io<'_>) {
        while let Some(t) = self.b2b.poll_transmit() {
            let proto = match t.flow.transport {
                Transport::Udp => crate::stats::trace::UDP,
                Transport::Tcp | Transport::Tls => crate::stats::trace::TCP,
            };
            trace(&self.trace, proto, t.flow.local, t.dest, false, &t.bytes);
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
        self.check_lifecycle(io.now());
        self.maybe_publish(io.now());
        if let Some(h) = &self.heartbeat {
            h.beat();
        }
        let mut next = self.b2b.next_timeout();
        for t in [
            self.life.stop_at,
            self.life.drain_deadline.map(|_| io.now() + MEDIA_POLL * 5),
        ]
        .into_iter()
        .flatten()
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        if let Some(p) = self.next_publish {
            next = Some(next.map_or(p, |n| n.min(p)));
        }
        if self.media_events.is_some() {
            let poll = io.now() + MEDIA_POLL;
            next = Some(next.map_or(poll, |n| n.min(poll)));
        }
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

/// The tracer and the address of each listener by index (as configured: a wildcard listener shows 0.0.0.0).
type Trace = Option<(crate::stats::trace::SipTracer, Vec<SocketAddr>)>;

/// Records one message on listener `local` to or from `peer`; a free function so it borrows only the trace
/// (the stream path holds the framer mutably at the same time).
fn trace(t: &Trace, proto: u8, local: u16, peer: SocketAddr, inbound: bool, bytes: &[u8]) {
    if let Some((t, locals)) = t {
        let here = locals
            .get(usize::from(local))
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        if inbound {
            t.record(proto, peer, here, bytes);
        } else {
            t.record(proto, here, peer, bytes);
        }
    }
}

impl SipHandler for App {
    type Message = AppMsg;

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
        trace(
            &self.trace,
            crate::stats::trace::UDP,
            listener.0,
            src,
            true,
            data,
        );
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
                Ok(Some(frame)) => {
                    trace(
                        &self.trace,
                        crate::stats::trace::TCP,
                        local,
                        peer,
                        true,
                        frame,
                    );
                    self.b2b.on_message(now, flow, peer, frame)
                }
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
        self.poll_media(now);
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

    fn on_message(&mut self, now: Instant, msg: AppMsg, io: &mut Io<'_>) {
        match msg {
            AppMsg::Reload => {
                let _ = self.reload(now);
            }
            AppMsg::Drain => self.drain(now),
            AppMsg::Ctl(c) => {
                let r = self.control(&c.req, now);
                // The client may have given up waiting; its answer is then simply dropped.
                let _ = c.reply.send(r);
            }
        }
        self.flush(io);
    }
}

/// The signaling loop's TCP/TLS limits from `[security]` (the rest keeps the loop's defaults).
fn sig_config(sec: &crate::config::Security) -> SigConfig {
    SigConfig {
        tcp_max_connections: sec.tcp_max_connections as usize,
        tcp_max_per_source: sec.tcp_max_per_source as usize,
        tcp_idle_timeout: std::time::Duration::from_secs(u64::from(sec.tcp_idle_timeout_s)),
        tcp_message_timeout: std::time::Duration::from_millis(u64::from(
            sec.tcp_message_timeout_ms,
        )),
        ..SigConfig::default()
    }
}

/// Runs tollgate with `cfg` on the calling thread until SIGINT/SIGTERM (embedded config: no reload).
pub fn run(cfg: Config) -> anyhow::Result<()> {
    run_from(cfg, None)
}

/// Runs tollgate with `cfg`, loaded from `path` (SIGHUP reloads it), until SIGINT/SIGTERM and the drain.
pub fn run_from(cfg: Config, path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    // Forwarding first: a bad database stops the start before any socket is bound, never an empty table.
    let forwards = crate::forward::runtime::start(&cfg)?;
    let mut sig: SigLoop<AppMsg> =
        SigLoop::new(sig_config(&cfg.security)).context("signaling loop")?;
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
        signal_hook::consts::SIGHUP,
    ])
    .context("signal handlers")?;
    let sig_handle = signals.handle();
    let loop_handle = handle.clone();
    let stopper = std::thread::Builder::new()
        .name("tollgate-signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if s == signal_hook::consts::SIGHUP {
                    tracing::info!("SIGHUP: reloading the configuration");
                    handle.send(AppMsg::Reload);
                } else {
                    tracing::info!(signal = s, "stopping");
                    handle.send(AppMsg::Drain);
                }
            }
        })
        .context("signal thread")?;
    let fallback_ip = locals
        .first()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |l| l.addr.ip());
    // Every thread the watchdog and `/health` vouch for gets a slot: signaling first, then one per media core.
    let media_workers = match cfg.media.mode {
        CfgMediaMode::Bypass => 0,
        _ => media_cores(&cfg).len(),
    };
    let names = std::iter::once("signaling".to_owned())
        .chain((0..media_workers).map(|i| format!("media{i}")));
    let (board, mut beats) = crate::ops::notify::Heartbeats::new(names);
    let sig_beat = beats.remove(0);
    let media = start_media(&cfg, fallback_ip, beats)?;
    let mut b2b = B2bua::new(Arc::new(cfg), locals, Instant::now());
    if let Some(f) = &forwards {
        b2b.set_forwards(f.table());
    }
    let mut app_events = None;
    let plane = media.map(|(plane, anchor)| {
        b2b.set_media(anchor);
        app_events = Some(plane.events());
        plane
    });
    let mut app = App::new(b2b, listeners).with_lifecycle(path, loop_handle.clone());
    if let Some(q) = app_events {
        app = app.with_media_events(q);
    }
    if let Some(p) = &app.b2bua().config().mgmt.cdr_file {
        // Refused at start rather than losing every call record silently.
        let w = crate::stats::cdr::open_cdr_file(p)
            .with_context(|| format!("[mgmt] cdr_file {}", p.display()))?;
        tracing::info!(file = %p.display(), "call records appended");
        app = app.with_cdr(w);
    }
    // Refused at start too: an operator who asked for a trace and gets none finds out at 3 a.m.
    let trace_writer = match crate::stats::trace::start(&app.b2bua().config().mgmt.sip_trace)
        .context("[mgmt] sip_trace_pcap / sip_trace_hep")?
    {
        Some((tracer, writer)) => {
            let t = &app.b2bua().config().mgmt.sip_trace;
            tracing::info!(pcap = ?t.pcap, hep = ?t.hep, "SIP messages traced");
            app = app.with_trace(tracer);
            Some(writer)
        }
        None => None,
    };
    if app.b2bua().config().security.kernel_bans {
        // Without netfilter the guard still bans in userspace; a flood then costs socket queue, not calls state.
        match crate::ops::kernel_bans::KernelBans::start(&app.b2bua().config().node.name) {
            Ok(k) => {
                tracing::info!("bans are mirrored into netfilter (raw PREROUTING)");
                app = app.with_kernel_bans(k);
            }
            Err(e) => {
                tracing::error!(error = %e, "kernel_bans: netfilter not available, bans stay in userspace")
            }
        }
    }
    let notifier = crate::ops::notify::Notifier::from_env().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "NOTIFY_SOCKET unusable: no systemd notifications");
        None
    });
    let mut watchdog = None;
    if let Some(interval) = crate::ops::notify::watchdog_interval_from_env()
        && let Ok(Some(wd_notifier)) = crate::ops::notify::Notifier::from_env()
    {
        // Pinging at half the interval; a thread silent for a whole interval withholds the ping.
        match crate::ops::notify::Watchdog::spawn(wd_notifier, board.clone(), interval, interval) {
            Ok(w) => watchdog = Some(w),
            Err(e) => tracing::error!(error = %e, "watchdog thread not started"),
        }
    }
    let heartbeats = Some(board);
    app = app.with_systemd(notifier, Some(sig_beat));
    let ctl_path = app.b2bua().config().mgmt.control_socket.clone();
    if let Some(dir) = ctl_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Like the HTTP endpoint: calls matter more than the operator's socket, so a failure is loud, not fatal.
    let _ctl = match crate::mgmt::ctl::CtlServer::spawn_answering(
        &ctl_path,
        control::bridge(loop_handle),
    ) {
        Ok(s) => {
            tracing::info!(socket = %ctl_path.display(), "tollgate ctl served");
            Some(s)
        }
        Err(e) => {
            tracing::error!(socket = %ctl_path.display(), error = %e, "control socket not served");
            None
        }
    };
    let (live, calls) = (LivePublisher::new(), SnapshotPublisher::new());
    app = app.with_publishers(live.clone(), calls.clone());
    if let Some(f) = &forwards {
        f.attach_live(live.clone());
    }
    let health = Arc::new(Health::default());
    let _mgmt = match app.b2bua().config().mgmt.http {
        Some(addr) => {
            let registry = Registry::new();
            registry.register(Arc::new(crate::stats::prom::ProcessMetrics::default()));
            registry.register(live);
            let state = MgmtState {
                registry,
                calls,
                health: health.clone(),
                heartbeats: heartbeats.clone(),
                heartbeat_max_age: Duration::from_secs(10),
            };
            // Calls matter more than scrapes: a taken port is logged loudly and SIP still starts.
            match MgmtServer::spawn(addr, state) {
                Ok(server) => {
                    tracing::info!(addr = %server.local_addr(), "metrics, health and calls served");
                    Some(server)
                }
                Err(e) => {
                    tracing::error!(%addr, error = %e, "management HTTP not served ([mgmt] http)");
                    None
                }
            }
        }
        None => None,
    };
    health.set(crate::mgmt::http::Phase::Serving);
    if let Some(n) = &app.notifier {
        let _ = n.ready("serving");
    }
    let (mut app, counters) = sig.run(app).context("signaling loop")?;
    app.write_cdrs();
    drop(watchdog);
    sig_handle.close();
    let _ = stopper.join();
    drop(forwards);
    if let Some(p) = plane {
        tracing::info!(media = ?app.b2bua().media_counters(), workers = ?p.counters(), "media plane stopping");
        if let Err(e) = p.stop() {
            tracing::error!(error = %e, "stopping the media plane");
        }
    }
    tracing::info!(b2bua = ?app.b2bua().counters(), loop_counters = ?counters.fields(), "stopped");
    // The writer ends when the app's tracer is gone, so the app goes first.
    drop(app);
    drop(trace_writer);
    Ok(())
}

/// `[media]` with every interface's address filled in: the configured one, else the interface's first
/// IPv4 address (an interface without one is an error at start).
fn media_addrs(cfg: &Config) -> anyhow::Result<Config> {
    let mut cfg = cfg.clone();
    for i in &mut cfg.media.interfaces {
        if i.address.is_none() {
            let a = crate::fastpath::socket::interface_ipv4(&i.name)
                .with_context(|| format!("media interface {}: no IPv4 address", i.name))?;
            i.address = Some(a.into());
        }
    }
    Ok(cfg)
}

/// Starts the media plane for `[media] mode = "socket"` / `"xdp"` and the B2BUA's anchor wired to it.
/// `None` in bypass mode.
/// The media worker cores: `[media] worker_cores`, else one unpinned-default worker on the last core, away
/// from the signaling thread on core 0.
fn media_cores(cfg: &Config) -> Vec<usize> {
    if cfg.media.worker_cores.is_empty() {
        vec![core_affinity::get_core_ids().map_or(0, |c| c.last().map_or(0, |c| c.id))]
    } else {
        cfg.media.worker_cores.clone()
    }
}

/// Starts the media plane for `[media] mode = "socket"` / `"xdp"` and the B2BUA's anchor wired to it; worker
/// `i` beats `heartbeats[i]`. `None` in bypass mode.
pub fn start_media(
    cfg: &Config,
    fallback: std::net::IpAddr,
    heartbeats: Vec<crate::ops::notify::Heartbeat>,
) -> anyhow::Result<Option<(MediaPlane, MediaAnchor)>> {
    let mode = match cfg.media.mode {
        CfgMediaMode::Bypass => return Ok(None),
        CfgMediaMode::Socket => MediaMode::Socket,
        CfgMediaMode::Xdp => MediaMode::Xdp,
    };
    let resolved = media_addrs(cfg)?;
    let m = &resolved.media;
    let (carrier, cloud) = MediaAnchor::addrs_from_config(m, fallback);
    let mut addrs = vec![carrier.local];
    if cloud.local != carrier.local {
        addrs.push(cloud.local);
    }
    let cores = media_cores(&resolved);
    let pcfg = MediaPlaneConfig {
        mode,
        xdp_required: m.xdp_required,
        interfaces: m.interfaces.iter().map(|i| i.name.clone()).collect(),
        addrs,
        cores,
        port_min: m.port_min,
        port_max: m.port_max,
        heartbeats,
        ..MediaPlaneConfig::default()
    };
    let (plane, sink) = MediaPlane::start(&pcfg).context("media plane")?;
    tracing::info!(
        mode = ?plane.mode(),
        workers = plane.workers(),
        carrier = %carrier.local,
        cloud = %cloud.local,
        ports = %format!("{}-{}", m.port_min, m.port_max),
        "media anchored"
    );
    let anchor = MediaAnchor::new(
        Box::new(sink),
        carrier,
        cloud,
        m.port_min,
        m.port_max,
        Duration::from_secs(u64::from(m.port_quarantine_s)),
        Instant::now(),
    )
    .context("media ports")?;
    Ok(Some((plane, anchor)))
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
