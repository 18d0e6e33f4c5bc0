//! UDP request/answer throughput of the signaling loop vs a plain blocking recvmmsg/sendmmsg loop, same run,
//! same trivial handler (echo), server pinned to CPU 1, client pinned to CPU 0 on loopback.
//!
//! Variants of the loop: SENDMSG vs SEND-with-address SQEs, DEFER_TASKRUN vs COOP_TASKRUN, batched waits.
//! Besides criterion's throughput each variant prints the server thread's CPU time per datagram, which is the
//! steadier figure on a shared machine.
//!
//! One iteration = 2 000 datagrams answered, with up to 256 outstanding. Bounded: criterion's time limits, and
//! the client gives up on a datagram after 1 s (lost replies are counted and printed).
//!
//! `cargo bench --bench sig_udp -- --warm-up-time 1 --measurement-time 3`

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tollgate::signaling::{
    ConnEvent, ConnId, DnsAnswer, DnsError, DnsRequestId, Io, ListenerId, LoopHandle, SigConfig,
    SigLoop, SipHandler, StreamBuf, TimerToken, UdpSendOp,
};

const PER_ITER: usize = 2_000;
const WINDOW: usize = 256;
const BATCH: usize = 64;
const PAYLOAD: usize = 400;

static LOST: AtomicU64 = AtomicU64::new(0);

fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
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

struct Echo;

impl SipHandler for Echo {
    type Message = ();
    fn on_datagram(
        &mut self,
        _: Instant,
        listener: ListenerId,
        src: SocketAddr,
        data: &[u8],
        io: &mut Io<'_>,
    ) {
        let _ = io.send_datagram(listener, src, data);
    }
    fn on_stream_data(
        &mut self,
        _: Instant,
        _: ConnId,
        _: SocketAddr,
        _: &mut StreamBuf,
        _: &mut Io<'_>,
    ) {
    }
    fn on_conn_event(
        &mut self,
        _: Instant,
        _: ConnId,
        _: SocketAddr,
        _: ConnEvent,
        _: &mut Io<'_>,
    ) {
    }
    fn on_timer(&mut self, _: Instant, _: TimerToken, _: u64, _: &mut Io<'_>) {}
    fn on_dns(
        &mut self,
        _: Instant,
        _: DnsRequestId,
        _: Result<DnsAnswer, DnsError>,
        _: &mut Io<'_>,
    ) {
    }
    fn on_message(&mut self, _: Instant, _: (), _: &mut Io<'_>) {}
}

fn start_uring(
    op: UdpSendOp,
    defer_taskrun: bool,
    batch_wait_usec: u32,
) -> (SocketAddr, LoopHandle<()>, JoinHandle<Duration>) {
    let cfg = SigConfig {
        udp_send_op: op,
        defer_taskrun,
        batch_wait_usec,
        ..SigConfig::default()
    };
    let mut sig = SigLoop::<()>::new(cfg).unwrap();
    let id = sig.bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = sig.local_addr(id).unwrap();
    let handle = sig.handle();
    let t = std::thread::spawn(move || {
        pin(1);
        sig.run(Echo).unwrap();
        thread_cpu()
    });
    (addr, handle, t)
}

/// Scatter/gather arrays for one recvmmsg/sendmmsg batch; pointers into `bufs`/`addrs` are set per call.
struct Mmsg {
    bufs: Vec<[u8; 2048]>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Mmsg {
    fn new() -> Self {
        fn zeroed<T>() -> T {
            // SAFETY: only used for plain C structs (sockaddr_storage, iovec, mmsghdr), for which all-zero is valid.
            unsafe { std::mem::zeroed() }
        }
        Self {
            bufs: vec![[0u8; 2048]; BATCH],
            addrs: (0..BATCH).map(|_| zeroed()).collect(),
            iovs: (0..BATCH).map(|_| zeroed()).collect(),
            hdrs: (0..BATCH).map(|_| zeroed()).collect(),
        }
    }

    /// Points header i at buffer i (length `len[i]`) and address i.
    fn wire(&mut self, n: usize, lens: impl Fn(usize) -> usize) {
        for i in 0..n {
            self.iovs[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            self.iovs[i].iov_len = lens(i);
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
        }
    }

    fn recv(&mut self, fd: i32, flags: i32) -> usize {
        self.wire(BATCH, |_| 2048);
        // SAFETY: hdrs/iovs/bufs/addrs are live and sized for BATCH messages.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as u32,
                flags,
                std::ptr::null_mut(),
            )
        };
        n.max(0) as usize
    }

    /// Sends `n` PAYLOAD-byte datagrams to `dst` in one sendmmsg; returns how many went out.
    fn send_to(&mut self, fd: i32, dst: SocketAddr, n: usize) -> usize {
        self.wire(n, |_| PAYLOAD);
        let sa = socket2::SockAddr::from(dst);
        for i in 0..n {
            self.bufs[i][..PAYLOAD].fill(b'p');
            // SAFETY: sa's storage holds sa.len() valid bytes; addrs[i] is a sockaddr_storage (large enough).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    sa.as_ptr().cast::<u8>(),
                    (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast::<u8>(),
                    sa.len() as usize,
                );
            }
            self.hdrs[i].msg_hdr.msg_namelen = sa.len();
        }
        // SAFETY: headers point at live buffers/addresses; n <= BATCH.
        let r = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), n as u32, 0) };
        r.max(0) as usize
    }

    /// Sends back what `recv` got, each to its source (the trivial echo handler).
    fn echo(&mut self, fd: i32, n: usize) {
        let lens: Vec<usize> = self.hdrs[..n].iter().map(|h| h.msg_len as usize).collect();
        let names: Vec<u32> = self.hdrs[..n]
            .iter()
            .map(|h| h.msg_hdr.msg_namelen)
            .collect();
        self.wire(n, |i| lens[i]);
        for (h, l) in self.hdrs[..n].iter_mut().zip(names) {
            h.msg_hdr.msg_namelen = l;
        }
        // SAFETY: as in recv; n <= BATCH.
        unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), n as u32, 0) };
    }
}

fn start_baseline() -> (SocketAddr, Arc<AtomicBool>, JoinHandle<(Duration, u64)>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sref = socket2::SockRef::from(&sock);
    let _ = sref.set_recv_buffer_size(8 << 20);
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let t = std::thread::spawn(move || {
        pin(1);
        let mut m = Mmsg::new();
        let fd = sock.as_raw_fd();
        let mut count = 0u64;
        while !s2.load(Ordering::Relaxed) {
            let n = m.recv(fd, libc::MSG_WAITFORONE);
            if n > 0 {
                m.echo(fd, n);
                count += n as u64;
            }
        }
        (thread_cpu(), count)
    });
    (addr, stop, t)
}

/// Sends `total` datagrams keeping up to WINDOW outstanding; returns when all are answered or lost.
fn client_run(sock: &UdpSocket, server: SocketAddr, total: usize, m: &mut Mmsg) {
    let fd = sock.as_raw_fd();
    let (mut sent, mut got) = (0usize, 0usize);
    while got < total {
        while sent < total && sent - got < WINDOW {
            let n = (total - sent).min(WINDOW - (sent - got)).min(BATCH);
            let k = m.send_to(fd, server, n);
            if k == 0 {
                break;
            }
            sent += k;
        }
        let n = m.recv(fd, libc::MSG_WAITFORONE);
        if n == 0 {
            // 1 s without a reply: count the outstanding ones as lost and move on.
            LOST.fetch_add((sent - got) as u64, Ordering::Relaxed);
            got = sent;
        }
        got += n;
    }
}

fn client() -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(8 << 20);
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    sock
}

fn bench(c: &mut Criterion) {
    pin(0);
    let mut g = c.benchmark_group("sig_udp_echo");
    g.throughput(Throughput::Elements(PER_ITER as u64));
    g.sample_size(10);
    let mut m = Mmsg::new();

    for (name, op, defer, wait) in [
        ("io_uring_loop_sendmsg", UdpSendOp::SendMsg, true, 0),
        ("io_uring_loop_send_addr", UdpSendOp::SendTo, true, 0),
        (
            "io_uring_loop_sendmsg_coop_taskrun",
            UdpSendOp::SendMsg,
            false,
            0,
        ),
        (
            "io_uring_loop_sendmsg_batch_wait_50us",
            UdpSendOp::SendMsg,
            true,
            50,
        ),
    ] {
        let (addr, handle, t) = start_uring(op, defer, wait);
        let sock = client();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    client_run(&sock, addr, PER_ITER, &mut m);
                }
                start.elapsed()
            })
        });
        handle.stop();
        let cpu = t.join().unwrap();
        let counters = handle.counters();
        eprintln!(
            "{name}: server thread CPU {:.0} ns/datagram; {} datagrams in, {} out, {} loop iterations, {} \
             no-buffer re-arms, {} lost at client",
            cpu.as_nanos() as f64 / counters.udp_datagrams_in.max(1) as f64,
            counters.udp_datagrams_in,
            counters.udp_datagrams_out,
            counters.loop_iterations,
            counters.udp_no_buffers,
            LOST.swap(0, Ordering::Relaxed)
        );
    }

    let (addr, stop, t) = start_baseline();
    let sock = client();
    g.bench_function("recvmmsg_sendmmsg_baseline", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                client_run(&sock, addr, PER_ITER, &mut m);
            }
            start.elapsed()
        })
    });
    stop.store(true, Ordering::Relaxed);
    let (cpu, count) = t.join().unwrap();
    eprintln!(
        "recvmmsg_sendmmsg_baseline: server thread CPU {:.0} ns/datagram; {count} datagrams, {} lost at client",
        cpu.as_nanos() as f64 / count.max(1) as f64,
        LOST.swap(0, Ordering::Relaxed)
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
