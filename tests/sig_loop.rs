//! The signaling loop on loopback: UDP echo through the provided-buffer ring, TCP framing/connect/reuse/idle/
//! limits, timers and idle CPU, stop. Every wait is bounded.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tollgate::signaling::{
    CloseReason, ConnEvent, ConnId, Counters, DnsAnswer, DnsError, DnsRequestId, Io, LayerContext,
    LayerError, ListenerId, LoopHandle, SigConfig, SigLoop, SipHandler, StreamBuf, StreamFramer,
    StreamLayer, TimerToken, Transport, UdpSendOp,
};

const WAIT: Duration = Duration::from_secs(5);

/// Messages the tests send into the loop.
enum Msg {
    /// Arm timers: (delay ms, data); data of cancelled ones listed separately.
    Timers {
        delays: Vec<u64>,
        cancel_every: usize,
    },
    /// Start a periodic timer.
    Tick(u64),
    /// Reply with the loop thread's CPU time.
    Cpu(mpsc::Sender<Duration>),
    /// Send bytes to (addr, tcp), reporting the connection id used.
    StreamTo(SocketAddr, Vec<u8>, mpsc::Sender<Result<ConnId, String>>),
    /// Block the loop thread (test only), so traffic piles up in the socket meanwhile.
    Sleep(Duration, mpsc::Sender<()>),
    /// Send several chunks to (addr, tcp) within one handler call; report each result.
    StreamChunks(
        SocketAddr,
        Vec<Vec<u8>>,
        mpsc::Sender<Vec<Result<ConnId, String>>>,
    ),
}

/// What the handler saw, sent out to the test thread.
#[derive(Debug)]
enum Seen {
    Frame(ConnId, SocketAddr, Vec<u8>),
    Conn(ConnId, SocketAddr, ConnEvent),
    Timer(u64, u64),
}

/// Length-delimited framer: "<len>:<payload>".
struct LenFramer;
impl StreamFramer for LenFramer {
    type Error = ();
    fn frame_len(&mut self, data: &[u8]) -> Result<Option<usize>, ()> {
        let Some(colon) = data.iter().position(|b| *b == b':') else {
            return if data.len() > 8 { Err(()) } else { Ok(None) };
        };
        let len: usize = std::str::from_utf8(&data[..colon])
            .map_err(|_| ())?
            .parse()
            .map_err(|_| ())?;
        let total = colon + 1 + len;
        Ok((data.len() >= total).then_some(total))
    }
}

struct TestHandler {
    out: mpsc::Sender<Seen>,
    start: Instant,
    tick: Option<u64>,
    echo_tcp: bool,
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl SipHandler for TestHandler {
    type Message = Msg;

    fn on_datagram(
        &mut self,
        _now: Instant,
        listener: ListenerId,
        src: SocketAddr,
        data: &[u8],
        io: &mut Io<'_>,
    ) {
        let mut reply = Vec::with_capacity(data.len() + 32);
        reply.extend_from_slice(data);
        reply.extend_from_slice(format!("|{src}").as_bytes());
        io.send_datagram(listener, src, &reply).expect("send");
    }

    fn on_stream_data(
        &mut self,
        _now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        buf: &mut StreamBuf,
        io: &mut Io<'_>,
    ) {
        loop {
            match buf.next_frame(&mut LenFramer) {
                Ok(Some(frame)) => {
                    let frame = frame.to_vec();
                    if self.echo_tcp {
                        io.send_on(conn, &frame).expect("echo");
                    }
                    let _ = self.out.send(Seen::Frame(conn, peer, frame));
                }
                Ok(None) => break,
                Err(()) => {
                    io.close(conn);
                    break;
                }
            }
        }
    }

    fn on_conn_event(
        &mut self,
        _now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        event: ConnEvent,
        _io: &mut Io<'_>,
    ) {
        let _ = self.out.send(Seen::Conn(conn, peer, event));
    }

    fn on_timer(&mut self, now: Instant, _token: TimerToken, data: u64, io: &mut Io<'_>) {
        let at = now.duration_since(self.start).as_millis() as u64;
        if Some(data) == self.tick {
            io.set_timer(Duration::from_millis(data), data);
            return;
        }
        let _ = self.out.send(Seen::Timer(data, at));
    }

    fn on_dns(
        &mut self,
        _now: Instant,
        _req: DnsRequestId,
        _r: Result<DnsAnswer, DnsError>,
        _io: &mut Io<'_>,
    ) {
    }

    fn on_message(&mut self, now: Instant, msg: Msg, io: &mut Io<'_>) {
        match msg {
            Msg::Timers {
                delays,
                cancel_every,
            } => {
                let base = now.duration_since(self.start).as_millis() as u64;
                for (i, d) in delays.iter().enumerate() {
                    // data = absolute deadline (ms since start) * 10 + cancelled flag, to check order and timing.
                    let t = io.set_timer(
                        Duration::from_millis(*d),
                        (base + d) * 10 + u64::from(i % cancel_every == 0),
                    );
                    if i % cancel_every == 0 {
                        assert!(io.cancel_timer(t));
                    }
                }
            }
            Msg::Tick(ms) => {
                self.tick = Some(ms);
                io.set_timer(Duration::from_millis(ms), ms);
            }
            Msg::Cpu(tx) => {
                let _ = tx.send(thread_cpu());
            }
            Msg::StreamTo(addr, bytes, tx) => {
                let _ = tx.send(
                    io.send_stream_to(addr, Transport::Tcp, &bytes)
                        .map_err(|e| e.to_string()),
                );
            }
            Msg::Sleep(d, tx) => {
                let _ = tx.send(());
                std::thread::sleep(d);
            }
            Msg::StreamChunks(addr, chunks, tx) => {
                let r = chunks
                    .iter()
                    .map(|c| {
                        io.send_stream_to(addr, Transport::Tcp, c)
                            .map_err(|e| e.to_string())
                    })
                    .collect();
                let _ = tx.send(r);
            }
        }
    }
}

struct Running {
    handle: LoopHandle<Msg>,
    thread: JoinHandle<std::io::Result<(TestHandler, Counters)>>,
    seen: mpsc::Receiver<Seen>,
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
}

impl Running {
    fn stop(self) -> Counters {
        self.handle.stop();
        let deadline = Instant::now() + WAIT;
        while !self.thread.is_finished() {
            assert!(Instant::now() < deadline, "loop did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.thread
            .join()
            .expect("loop thread")
            .expect("loop result")
            .1
    }

    fn next(&self) -> Seen {
        self.seen.recv_timeout(WAIT).expect("handler event in time")
    }
}

fn start(cfg: SigConfig, udp: bool, tcp: bool, echo_tcp: bool) -> Running {
    let mut sig = SigLoop::<Msg>::new(cfg).expect("loop");
    let udp_id = udp.then(|| sig.bind_udp("127.0.0.1:0".parse().unwrap()).expect("udp"));
    let tcp_id = tcp.then(|| sig.bind_tcp("127.0.0.1:0".parse().unwrap()).expect("tcp"));
    let udp = udp_id.and_then(|id| sig.local_addr(id));
    let tcp = tcp_id.and_then(|id| sig.local_addr(id));
    let handle = sig.handle();
    let (tx, seen) = mpsc::channel();
    let handler = TestHandler {
        out: tx,
        start: Instant::now(),
        tick: None,
        echo_tcp,
    };
    let thread = std::thread::spawn(move || sig.run(handler));
    Running {
        handle,
        thread,
        seen,
        udp,
        tcp,
    }
}

#[test]
fn udp_bursts_are_all_answered_with_right_addresses_and_buffers_recycle() {
    udp_bursts(UdpSendOp::SendMsg);
}

#[test]
fn udp_bursts_on_a_coop_taskrun_ring() {
    udp_echo_500(SigConfig {
        defer_taskrun: false,
        ..SigConfig::default()
    });
}

#[test]
fn udp_echo_and_timers_with_batched_waits() {
    let run = start(
        SigConfig {
            batch_wait_usec: 200,
            ..SigConfig::default()
        },
        false,
        false,
        false,
    );
    // Timers still fire on time: the deadline bounds the batched wait.
    run.handle.send(Msg::Timers {
        delays: vec![30, 10, 20],
        cancel_every: 100,
    });
    let mut fired = Vec::new();
    for _ in 0..2 {
        match run.next() {
            Seen::Timer(d, at) => fired.push((d / 10, at)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(fired[0].0 <= fired[1].0);
    run.stop();
    udp_echo_500(SigConfig {
        batch_wait_usec: 200,
        ..SigConfig::default()
    });
}

fn udp_echo_500(cfg: SigConfig) {
    let run = start(cfg, true, true, false);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 256];
    for i in 0..500 {
        client
            .send_to(format!("d{i}").as_bytes(), run.udp.unwrap())
            .unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert!(buf[..n].starts_with(format!("d{i}|").as_bytes()));
    }
    let c = run.stop();
    assert_eq!(c.udp_datagrams_out, 500);
}

#[test]
fn udp_bursts_with_send_to_sqes() {
    udp_bursts(UdpSendOp::SendTo);
}

#[test]
fn udp_bursts_with_exhausted_send_slots_fall_back_to_direct_send() {
    udp_bursts_with(UdpSendOp::SendMsg, 2);
}

fn udp_bursts(op: UdpSendOp) {
    udp_bursts_with(op, 128);
}

fn udp_bursts_with(op: UdpSendOp, send_slots: usize) {
    let cfg = SigConfig {
        udp_buf_count: 64,
        udp_send_slots: send_slots,
        udp_send_op: op,
        ..SigConfig::default()
    };
    let run = start(cfg, true, false, false);
    let server = run.udp.unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let me = client.local_addr().unwrap();
    const BURSTS: usize = 40;
    const PER_BURST: usize = 100;
    let mut got = HashSet::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(20);
    for b in 0..BURSTS {
        for i in 0..PER_BURST {
            let msg = format!("b{b}-m{i}-{}", "x".repeat(i % 200));
            client.send_to(msg.as_bytes(), server).unwrap();
        }
        for _ in 0..PER_BURST {
            assert!(Instant::now() < deadline, "took too long");
            let (n, from) = client.recv_from(&mut buf).expect("reply within timeout");
            assert_eq!(from, server, "reply must come from the listener's address");
            let text = std::str::from_utf8(&buf[..n]).unwrap();
            let (payload, src) = text.rsplit_once('|').unwrap();
            assert_eq!(
                src.parse::<SocketAddr>().unwrap(),
                me,
                "handler saw the client's address"
            );
            assert!(got.insert(payload.to_string()), "duplicate reply {payload}");
        }
    }
    assert_eq!(got.len(), BURSTS * PER_BURST);
    let c = run.stop();
    assert_eq!(c.udp_datagrams_in, (BURSTS * PER_BURST) as u64);
    assert_eq!(c.udp_datagrams_out, (BURSTS * PER_BURST) as u64);
    assert_eq!(c.udp_recv_errors, 0);
    assert_eq!(c.udp_send_errors, 0);
    // 4000 datagrams through 64 buffers: only possible if buffers were recycled.
    assert!(c.udp_datagrams_in > 64);
}

#[test]
fn timers_fire_in_order_cancelled_ones_never() {
    let run = start(SigConfig::default(), false, false, false);
    let mut delays = Vec::new();
    let mut x: u64 = 12345;
    for _ in 0..3000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        delays.push((x >> 33) % 250);
    }
    let expected = delays
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .count();
    run.handle.send(Msg::Timers {
        delays,
        cancel_every: 3,
    });
    let mut fired = Vec::new();
    while fired.len() < expected {
        match run.next() {
            Seen::Timer(data, at) => fired.push((data, at)),
            other => panic!("unexpected {other:?}"),
        }
    }
    // Nothing else fires: the cancelled ones stay quiet.
    assert!(run.seen.recv_timeout(Duration::from_millis(300)).is_err());
    for w in fired.windows(2) {
        assert!(
            w[0].0 / 10 <= w[1].0 / 10,
            "out of order: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    for (data, at) in &fired {
        assert_eq!(data % 10, 0, "a cancelled timer fired");
        assert!(
            *at >= data / 10,
            "fired early: deadline {} at {at}",
            data / 10
        );
    }
    let c = run.stop();
    assert_eq!(c.timers_fired, expected as u64);
}

#[test]
fn idle_loop_sleeps_until_next_deadline() {
    let run = start(SigConfig::default(), true, true, false);
    let (tx, rx) = mpsc::channel();
    // A 20 ms periodic timer: the loop must wake ~10 times in 200 ms and sleep in between.
    run.handle.send(Msg::Tick(20));
    std::thread::sleep(Duration::from_millis(50));
    run.handle.send(Msg::Cpu(tx.clone()));
    let cpu0 = rx.recv_timeout(WAIT).unwrap();
    let iter0 = run.handle.counters().loop_iterations;
    std::thread::sleep(Duration::from_millis(200));
    run.handle.send(Msg::Cpu(tx));
    let cpu1 = rx.recv_timeout(WAIT).unwrap();
    let iters = run.handle.counters().loop_iterations - iter0;
    let used = cpu1 - cpu0;
    assert!(
        used < Duration::from_millis(30),
        "loop thread used {used:?} CPU while idle"
    );
    assert!(
        (5..=60).contains(&iters),
        "{iters} loop iterations in 200 ms"
    );
    let c = run.stop();
    assert!(
        c.timers_fired >= 8,
        "periodic timer fired {} times",
        c.timers_fired
    );
}

#[test]
fn stop_request_ends_run_promptly() {
    let run = start(SigConfig::default(), true, true, false);
    let t = Instant::now();
    let c = run.stop();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(c.loop_iterations >= 1);
}

fn conn_event(run: &Running) -> (ConnId, SocketAddr, ConnEvent) {
    loop {
        match run.next() {
            Seen::Conn(id, peer, ev) => return (id, peer, ev),
            Seen::Timer(..) => continue,
            other => panic!("expected a connection event, got {other:?}"),
        }
    }
}

fn frame(run: &Running) -> (ConnId, SocketAddr, Vec<u8>) {
    loop {
        match run.next() {
            Seen::Frame(id, peer, f) => return (id, peer, f),
            Seen::Timer(..) => continue,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

#[test]
fn tcp_split_and_glued_messages_arrive_whole_and_peer_close_is_reported() {
    let run = start(SigConfig::default(), false, true, true);
    let mut s = TcpStream::connect(run.tcp.unwrap()).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let me = s.local_addr().unwrap();
    let (id, peer, ev) = conn_event(&run);
    assert_eq!(peer, me);
    assert!(matches!(ev, ConnEvent::Accepted { .. }));
    // One message in three writes, then two messages in one write.
    for part in [&b"11:hel"[..], b"lo ", b"world"] {
        s.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    s.write_all(b"3:abc4:defg").unwrap();
    let mut frames = Vec::new();
    for _ in 0..3 {
        let (fid, _, f) = frame(&run);
        assert_eq!(fid, id);
        frames.push(f);
    }
    assert_eq!(
        frames,
        vec![
            b"11:hello world".to_vec(),
            b"3:abc".to_vec(),
            b"4:defg".to_vec()
        ]
    );
    // Echoed back whole, in order.
    let want = b"11:hello world3:abc4:defg";
    let mut back = vec![0u8; want.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, want);
    drop(s);
    let (cid, _, ev) = conn_event(&run);
    assert_eq!(cid, id);
    assert_eq!(ev, ConnEvent::Closed(CloseReason::PeerClosed));
    let c = run.stop();
    assert_eq!(c.tcp_accepted, 1);
    assert_eq!(c.tcp_peer_closed, 1);
    assert_eq!(c.tcp_open, 0);
}

#[test]
fn tcp_outbound_connect_is_reused_for_second_send() {
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let run = start(SigConfig::default(), false, false, false);
    let (tx, rx) = mpsc::channel();
    run.handle
        .send(Msg::StreamTo(peer_addr, b"5:first".to_vec(), tx.clone()));
    let id1 = rx.recv_timeout(WAIT).unwrap().unwrap();
    let (mut s, _) = peer.accept().unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let (cid, caddr, ev) = conn_event(&run);
    assert_eq!((cid, caddr, ev), (id1, peer_addr, ConnEvent::Connected));
    run.handle
        .send(Msg::StreamTo(peer_addr, b"6:second".to_vec(), tx));
    let id2 = rx.recv_timeout(WAIT).unwrap().unwrap();
    assert_eq!(id1, id2, "second send must reuse the connection");
    let want = b"5:first6:second";
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, want);
    // Only one connection was made.
    peer.set_nonblocking(true).unwrap();
    assert!(peer.accept().is_err());
    // Bytes from the peer come back on the same connection id.
    s.write_all(b"4:pong").unwrap();
    let (fid, _, f) = frame(&run);
    assert_eq!((fid, f), (id1, b"4:pong".to_vec()));
    let c = run.stop();
    assert_eq!(c.tcp_connected, 1);
}

#[test]
fn tcp_connect_failure_is_reported() {
    // A port with no listener: bind then drop to get one that refuses.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let run = start(SigConfig::default(), false, false, false);
    let (tx, rx) = mpsc::channel();
    run.handle.send(Msg::StreamTo(addr, b"1:x".to_vec(), tx));
    let id = rx.recv_timeout(WAIT).unwrap().unwrap();
    let (cid, _, ev) = conn_event(&run);
    assert_eq!(cid, id);
    assert_eq!(
        ev,
        ConnEvent::Closed(CloseReason::ConnectFailed(libc::ECONNREFUSED))
    );
    let c = run.stop();
    assert_eq!(c.tcp_connect_failed, 1);
}

#[test]
fn tcp_idle_connection_is_closed() {
    let cfg = SigConfig {
        tcp_idle_timeout: Duration::from_millis(150),
        ..SigConfig::default()
    };
    let run = start(cfg, false, true, false);
    let mut s = TcpStream::connect(run.tcp.unwrap()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let t0 = Instant::now();
    let (id, _, _) = conn_event(&run);
    // Activity at 100 ms pushes the idle close out.
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"2:hi").unwrap();
    frame(&run);
    let (cid, _, ev) = conn_event(&run);
    let after = t0.elapsed();
    assert_eq!((cid, ev), (id, ConnEvent::Closed(CloseReason::Idle)));
    assert!(
        after >= Duration::from_millis(240),
        "closed after {after:?}, activity should have extended it"
    );
    let mut b = [0u8; 4];
    assert_eq!(
        s.read(&mut b).unwrap(),
        0,
        "the socket is closed from the SBC side"
    );
    let c = run.stop();
    assert_eq!(c.tcp_idle_closed, 1);
}

#[test]
fn tcp_per_source_limit_refuses_extra_connection() {
    let cfg = SigConfig {
        tcp_max_per_source: 2,
        ..SigConfig::default()
    };
    let run = start(cfg, false, true, false);
    let addr = run.tcp.unwrap();
    let a = TcpStream::connect(addr).unwrap();
    let b = TcpStream::connect(addr).unwrap();
    conn_event(&run);
    conn_event(&run);
    let mut c3 = TcpStream::connect(addr).unwrap();
    c3.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4];
    // Refused after accept: the SBC closes it at once.
    let r = c3.read(&mut buf);
    assert!(
        matches!(r, Ok(0)) || r.is_err(),
        "third connection must be closed, got {r:?}"
    );
    assert!(
        run.seen.recv_timeout(Duration::from_millis(100)).is_err(),
        "no event for a refused connection"
    );
    drop((a, b));
    conn_event(&run);
    conn_event(&run);
    // Slots are free again.
    let _d = TcpStream::connect(addr).unwrap();
    assert!(matches!(conn_event(&run).2, ConnEvent::Accepted { .. }));
    let c = run.stop();
    assert_eq!(c.tcp_refused, 1);
    assert_eq!(c.tcp_accepted, 3);
}

#[test]
fn tcp_unconsumed_bytes_over_limit_close_the_connection() {
    let cfg = SigConfig {
        tcp_max_buffered: 1024,
        tcp_read_buf: 512,
        ..SigConfig::default()
    };
    let run = start(cfg, false, true, false);
    let mut s = TcpStream::connect(run.tcp.unwrap()).unwrap();
    let (id, _, _) = conn_event(&run);
    // A frame that announces 5000 bytes can never complete within 1024 buffered bytes.
    s.write_all(b"5000:").unwrap();
    let _ = s.write_all(&[b'z'; 3000]);
    let (cid, _, ev) = conn_event(&run);
    assert_eq!((cid, ev), (id, ConnEvent::Closed(CloseReason::BufferLimit)));
    let c = run.stop();
    assert_eq!(c.tcp_overflow_closed, 1);
}

#[test]
fn oversized_datagram_is_counted_and_dropped_and_loop_goes_on() {
    let cfg = SigConfig {
        udp_max_datagram: 1000,
        udp_buf_count: 8,
        ..SigConfig::default()
    };
    let run = start(cfg, true, false, false);
    let server = run.udp.unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.send_to(&[b'a'; 3000], server).unwrap();
    // More than the 8 buffers, to see the ring keeps working after a truncated datagram.
    let mut buf = [0u8; 2048];
    for i in 0..20 {
        client.send_to(format!("ok{i}").as_bytes(), server).unwrap();
        let (n, _) = client.recv_from(&mut buf).expect("small datagram answered");
        assert!(buf[..n].starts_with(format!("ok{i}|").as_bytes()));
    }
    let c = run.stop();
    assert_eq!(c.udp_recv_errors, 1);
    assert_eq!(c.udp_datagrams_in, 20);
}

#[test]
fn tcp_max_connections_refuses_extra_connection() {
    let cfg = SigConfig {
        tcp_max_connections: 1,
        ..SigConfig::default()
    };
    let run = start(cfg, false, true, false);
    let addr = run.tcp.unwrap();
    let _a = TcpStream::connect(addr).unwrap();
    assert!(matches!(conn_event(&run).2, ConnEvent::Accepted { .. }));
    let mut b = TcpStream::connect(addr).unwrap();
    b.set_read_timeout(Some(WAIT)).unwrap();
    let r = b.read(&mut [0u8; 4]);
    assert!(
        matches!(r, Ok(0)) || r.is_err(),
        "second connection must be closed, got {r:?}"
    );
    let c = run.stop();
    assert_eq!((c.tcp_accepted, c.tcp_refused), (1, 1));
}

#[test]
fn tcp_large_writes_to_slow_reader_arrive_complete_and_in_order() {
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let cfg = SigConfig {
        tcp_max_buffered: 16 << 20,
        ..SigConfig::default()
    };
    let run = start(cfg, false, false, false);
    const TOTAL: usize = 4 << 20;
    let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<Vec<u8>> = data.chunks(64 << 10).map(|c| c.to_vec()).collect();
    let (tx, rx) = mpsc::channel();
    run.handle.send(Msg::StreamChunks(peer_addr, chunks, tx));
    let results = rx.recv_timeout(WAIT).unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let (mut s, _) = peer.accept().unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::with_capacity(TOTAL);
    let mut buf = vec![0u8; 100_000];
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < TOTAL {
        assert!(
            Instant::now() < deadline,
            "only {} bytes arrived",
            got.len()
        );
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed early");
        got.extend_from_slice(&buf[..n]);
        if got.len() < TOTAL / 4 {
            // Slow at first so the kernel's send buffer fills and writes complete partially.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert!(got == data, "stream corrupted");
    let c = run.stop();
    assert_eq!(c.tcp_bytes_out, TOTAL as u64);
    eprintln!("partial writes: {}", c.tcp_partial_writes);
}

#[test]
fn tcp_unsent_bytes_over_limit_close_the_connection() {
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let cfg = SigConfig {
        tcp_max_buffered: 64 << 10,
        ..SigConfig::default()
    };
    let run = start(cfg, false, false, false);
    // Three 32 KiB sends within one handler call: no write can complete in between, the third passes 64 KiB.
    let (tx, rx) = mpsc::channel();
    run.handle.send(Msg::StreamChunks(
        peer_addr,
        vec![vec![b'q'; 32 << 10]; 3],
        tx,
    ));
    let results = rx.recv_timeout(WAIT).unwrap();
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert!(results[2].is_err(), "{results:?}");
    let (id, _, ev) = conn_event(&run);
    assert_eq!(Ok(id), results[0].clone());
    assert_eq!(ev, ConnEvent::Closed(CloseReason::BufferLimit));
    let c = run.stop();
    assert_eq!(c.tcp_overflow_closed, 1);
}

/// A stand-in for TLS: greets on connect (like a handshake flight) and XORs every byte both ways.
struct XorLayer;

impl StreamLayer for XorLayer {
    fn on_connected(&mut self, wire_out: &mut Vec<u8>) -> Result<(), LayerError> {
        wire_out.extend_from_slice(b"HELLO\n");
        Ok(())
    }
    fn read_wire(
        &mut self,
        wire: &[u8],
        app_in: &mut StreamBuf,
        _wire_out: &mut Vec<u8>,
    ) -> Result<(), LayerError> {
        if wire.contains(&0) {
            return Err(LayerError("bad record".into()));
        }
        let plain: Vec<u8> = wire.iter().map(|b| b ^ 0x5a).collect();
        app_in.extend_from_slice(&plain);
        Ok(())
    }
    fn write_app(&mut self, app: &[u8], wire_out: &mut Vec<u8>) -> Result<(), LayerError> {
        wire_out.extend(app.iter().map(|b| b ^ 0x5a));
        Ok(())
    }
}

#[test]
fn tls_listener_runs_bytes_through_the_layer_both_ways() {
    let mut sig = SigLoop::<Msg>::new(SigConfig::default()).unwrap();
    let id = sig.bind_tls("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = sig.local_addr(id).unwrap();
    sig.set_tls_layer(Box::new(|ctx: &LayerContext| {
        assert!(!ctx.outbound);
        Ok(Box::new(XorLayer) as Box<dyn StreamLayer>)
    }));
    let handle = sig.handle();
    let (tx, seen) = mpsc::channel();
    let handler = TestHandler {
        out: tx,
        start: Instant::now(),
        tick: None,
        echo_tcp: true,
    };
    let thread = std::thread::spawn(move || sig.run(handler));
    let run = Running {
        handle,
        thread,
        seen,
        udp: None,
        tcp: Some(addr),
    };
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut hello = [0u8; 6];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"HELLO\n", "the layer speaks first");
    let (cid, _, ev) = conn_event(&run);
    assert!(matches!(ev, ConnEvent::Accepted { .. }));
    let enc: Vec<u8> = b"5:hello".iter().map(|b| b ^ 0x5a).collect();
    s.write_all(&enc).unwrap();
    let (fid, _, f) = frame(&run);
    assert_eq!(
        (fid, f),
        (cid, b"5:hello".to_vec()),
        "the handler sees decoded bytes"
    );
    let mut back = vec![0u8; enc.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, enc, "the echo went out encoded");
    // A layer error closes the connection.
    s.write_all(&[0u8]).unwrap();
    let (_, _, ev) = conn_event(&run);
    assert_eq!(ev, ConnEvent::Closed(CloseReason::LayerError));
    run.stop();
}

#[test]
fn several_listeners_answer_from_their_own_address() {
    let mut sig = SigLoop::<Msg>::new(SigConfig::default()).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let u1 = sig.bind_udp(any).unwrap();
    let t = sig.bind_tcp(any).unwrap();
    let u2 = sig.bind_udp(any).unwrap();
    let (a1, at, a2) = (
        sig.local_addr(u1).unwrap(),
        sig.local_addr(t).unwrap(),
        sig.local_addr(u2).unwrap(),
    );
    let handle = sig.handle();
    let (tx, seen) = mpsc::channel();
    let handler = TestHandler {
        out: tx,
        start: Instant::now(),
        tick: None,
        echo_tcp: false,
    };
    let thread = std::thread::spawn(move || sig.run(handler));
    let run = Running {
        handle,
        thread,
        seen,
        udp: Some(a1),
        tcp: Some(at),
    };
    let client = UdpSocket::bind(any).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 256];
    for _ in 0..3 {
        for server in [a2, a1] {
            client.send_to(b"ping", server).unwrap();
            let (_, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, server);
        }
    }
    let _s = TcpStream::connect(at).unwrap();
    assert_eq!(conn_event(&run).2, ConnEvent::Accepted { listener: t });
    let c = run.stop();
    assert_eq!(c.udp_datagrams_in, 6);
}

#[test]
fn many_connections_come_and_go_and_ids_are_never_reused_while_alive() {
    let run = start(SigConfig::default(), false, true, false);
    let addr = run.tcp.unwrap();
    let mut all_ids = HashSet::new();
    for round in 0..2 {
        let mut socks: Vec<TcpStream> =
            (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut ids = HashSet::new();
        for _ in 0..socks.len() {
            let (id, _, ev) = conn_event(&run);
            assert!(matches!(ev, ConnEvent::Accepted { .. }));
            assert!(ids.insert(id));
        }
        for (i, s) in socks.iter_mut().enumerate() {
            let mut bytes = Vec::new();
            for m in 0..10 {
                let body = format!("r{round}c{i}m{m}");
                bytes.extend_from_slice(format!("{}:{body}", body.len()).as_bytes());
            }
            // Uneven splits so frames straddle reads.
            for chunk in bytes.chunks(7 + i % 5) {
                s.write_all(chunk).unwrap();
            }
        }
        let mut frames = HashSet::new();
        while frames.len() < 400 {
            let (id, _, f) = frame(&run);
            assert!(ids.contains(&id));
            assert!(frames.insert(f));
        }
        drop(socks);
        let mut closed = 0;
        while closed < 40 {
            let (id, _, ev) = conn_event(&run);
            assert_eq!(ev, ConnEvent::Closed(CloseReason::PeerClosed));
            assert!(ids.contains(&id));
            closed += 1;
        }
        for id in ids {
            assert!(all_ids.insert(id), "a connection id was handed out twice");
        }
        // The snapshot is published at the end of the loop iteration that delivered the events.
        let deadline = Instant::now() + WAIT;
        while run.handle.counters().tcp_open != 0 {
            assert!(
                Instant::now() < deadline,
                "tcp_open stays {}",
                run.handle.counters().tcp_open
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let c = run.stop();
    assert_eq!(c.tcp_accepted, 80);
    assert_eq!(c.tcp_peer_closed, 80);
}

#[test]
fn tcp_connect_that_hangs_times_out() {
    // A listener with a full accept queue drops further SYNs, so a connect to it hangs.
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    std::thread::sleep(Duration::from_millis(50));
    let cfg = SigConfig {
        tcp_connect_timeout: Duration::from_millis(300),
        ..SigConfig::default()
    };
    let run = start(cfg, false, false, false);
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    run.handle.send(Msg::StreamTo(addr, b"1:x".to_vec(), tx));
    let id = rx.recv_timeout(WAIT).unwrap().unwrap();
    let (cid, _, ev) = conn_event(&run);
    assert_eq!(cid, id);
    assert_eq!(
        ev,
        ConnEvent::Closed(CloseReason::ConnectFailed(libc::ETIMEDOUT))
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(290),
        "{:?}",
        t0.elapsed()
    );
    drop(fillers);
    let c = run.stop();
    assert_eq!(c.tcp_connect_failed, 1);
}

#[test]
fn udp_ring_exhaustion_rearms_and_loses_nothing() {
    let cfg = SigConfig {
        udp_buf_count: 4,
        ..SigConfig::default()
    };
    let run = start(cfg, true, false, false);
    let server = run.udp.unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    // The answers to the whole backlog come in one burst: room for all of them.
    socket2::SockRef::from(&client)
        .set_recv_buffer_size(4 << 20)
        .unwrap();
    let (tx, rx) = mpsc::channel();
    run.handle.send(Msg::Sleep(Duration::from_millis(100), tx));
    rx.recv_timeout(WAIT).unwrap();
    // 300 datagrams arrive while the loop sleeps: far more than the 4 buffers.
    for i in 0..300 {
        client.send_to(format!("q{i}").as_bytes(), server).unwrap();
    }
    let mut got = HashSet::new();
    let mut buf = [0u8; 256];
    while got.len() < 300 {
        let (n, _) = client.recv_from(&mut buf).expect("every datagram answered");
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        got.insert(text.split('|').next().unwrap().to_string());
    }
    let c = run.stop();
    assert_eq!(c.udp_datagrams_in, 300);
    assert!(
        c.udp_no_buffers > 0,
        "the multishot receive should have run out of buffers and been re-armed"
    );
}

#[test]
fn tcp_message_trickled_in_is_cut_by_the_message_timeout() {
    let cfg = SigConfig {
        tcp_idle_timeout: Duration::from_secs(30),
        tcp_message_timeout: Duration::from_millis(300),
        ..SigConfig::default()
    };
    let run = start(cfg, false, true, false);
    let mut s = TcpStream::connect(run.tcp.unwrap()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let (id, _, _) = conn_event(&run);
    // Complete messages leave nothing half-read: the connection outlives the message timeout.
    s.write_all(b"2:hi").unwrap();
    frame(&run);
    std::thread::sleep(Duration::from_millis(450));
    s.write_all(b"2:ok").unwrap();
    frame(&run);
    // One byte every 40 ms is never idle, but the 10-byte message is not done within 300 ms.
    let t0 = Instant::now();
    let mut cut = false;
    for b in b"10:abcdefghij" {
        if s.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    let (cid, _, ev) = conn_event(&run);
    let after = t0.elapsed();
    assert_eq!(
        (cid, ev),
        (id, ConnEvent::Closed(CloseReason::MessageTimeout))
    );
    assert!(
        after >= Duration::from_millis(280) && after < Duration::from_millis(2000),
        "cut after {after:?}"
    );
    let mut b = [0u8; 4];
    assert!(
        cut || matches!(s.read(&mut b), Ok(0) | Err(_)),
        "closed from the SBC side"
    );
    let c = run.stop();
    assert_eq!((c.tcp_message_timeout_closed, c.tcp_idle_closed), (1, 0));
}

#[test]
fn tcp_messages_straddling_reads_restart_the_message_deadline() {
    let cfg = SigConfig {
        tcp_idle_timeout: Duration::from_secs(30),
        tcp_message_timeout: Duration::from_millis(300),
        ..SigConfig::default()
    };
    let run = start(cfg, false, true, false);
    let mut s = TcpStream::connect(run.tcp.unwrap()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let (id, _, _) = conn_event(&run);
    // Every write ends one message and begins the next, so a part is always pending for 900 ms; each
    // message is done within 100 ms of its first byte, and the connection must stay up.
    s.write_all(b"2:h").unwrap();
    for _ in 0..9 {
        std::thread::sleep(Duration::from_millis(100));
        s.write_all(b"i2:h").unwrap();
        // A close would come first and fail here: frame() takes only a frame.
        assert_eq!(frame(&run).2, b"2:hi");
    }
    s.write_all(b"i").unwrap();
    let (fid, _, f) = frame(&run);
    assert_eq!((fid, f.as_slice()), (id, &b"2:hi"[..]));
    let c = run.stop();
    assert_eq!((c.tcp_message_timeout_closed, c.tcp_idle_closed), (0, 0));
}
