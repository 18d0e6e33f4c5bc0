//! The signaling loop on loopback: UDP echo through the provided-buffer ring, TCP framing/connect/reuse/idle/
//! limits, timers and idle CPU, stop. Every wait is bounded.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tollgate::signaling::{
    CloseReason, ConnEvent, ConnId, Counters, DnsAnswer, DnsError, DnsRequestId, Io, ListenerId,
    LoopHandle, SigConfig, SigLoop, SipHandler, StreamBuf, StreamFramer, TimerToken, Transport,
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
    let cfg = SigConfig {
        udp_buf_count: 64,
        udp_send_slots: 128,
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
