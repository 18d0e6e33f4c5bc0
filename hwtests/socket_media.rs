//! End-to-end tests of the kernel-socket media driver across network namespaces (root only):
//! carrier ns — sbc ns (the driver, two veths) — cloud ns, relayed by a static port-map handler.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    RelayCmd, StaticRelay, Topo, in_ns, is_root, open_fds, snmp, snmp6, thread_cpu_ticks,
};
use tollgate::fastpath::socket::{
    ActiveScheme, DropReason, PacketHandler, RuleTools, RxPacket, Scheme, SocketMedia,
    SocketMediaConfig, StatsSnapshot, Verdict, wire,
};

/// Counts heap allocations made on media worker threads. A worker thread marks itself the first time its
/// handler applies a command (`Marking`), so everything it allocates afterwards (the packet path included)
/// is counted.
struct CountingAlloc;

static WORKER_ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator unchanged; the counter is an atomic and the thread-local is a
// const-initialised Cell (no allocation, no destructor).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ON_WORKER.try_with(|w| w.get()).unwrap_or(false) {
            WORKER_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// The static relay, plus marking its worker thread for the allocation count.
struct Marking(StaticRelay);

impl PacketHandler for Marking {
    type Cmd = RelayCmd;
    fn apply_command(&mut self, cmd: RelayCmd) {
        ON_WORKER.with(|w| w.set(true));
        self.0.apply_command(cmd);
    }
    fn handle_batch(&mut self, now: Instant, pkts: &mut [RxPacket<'_>], out: &mut [Verdict]) {
        self.0.handle_batch(now, pkts, out);
    }
}

/// The tests share CPU pinning, /proc counters and the process's descriptor table: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root (network namespaces, packet sockets, iptables)");
            return;
        }
    };
}

const N: usize = 1000;
const PAYLOAD: usize = 172;

fn big_rcvbuf(s: &UdpSocket) {
    let v: libc::c_int = 8 << 20;
    // SAFETY: valid socket and option value of the size passed.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn bind_in(ns: &str, addr: SocketAddr) -> UdpSocket {
    in_ns(ns, || {
        let s = UdpSocket::bind(addr).expect("bind test socket");
        big_rcvbuf(&s);
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s
    })
}

fn payload(tag: u8, seq: u32) -> [u8; PAYLOAD] {
    let mut p = [0u8; PAYLOAD];
    p[0] = tag;
    p[1..5].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p.iter_mut().enumerate().skip(5) {
        *b = (i as u8).wrapping_mul(31) ^ tag;
    }
    p
}

/// Send `n` numbered datagrams in bursts of 100 (1 ms apart, so no queue on the way overflows).
fn send_seq(s: &UdpSocket, to: SocketAddr, tag: u8, n: usize) {
    for seq in 0..n as u32 {
        s.send_to(&payload(tag, seq), to).expect("send");
        if seq % 100 == 99 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Receive until `n` datagrams or 2 s of silence; every one must come from `from` and be intact.
fn expect_seq(s: &UdpSocket, from: SocketAddr, tag: u8, n: usize) {
    let mut seen = vec![false; n];
    let (mut got, mut buf) = (0usize, [0u8; 2048]);
    let mut last = Instant::now();
    while got < n && last.elapsed() < Duration::from_secs(2) {
        let Ok((len, src)) = s.recv_from(&mut buf) else {
            continue;
        };
        last = Instant::now();
        assert_eq!(src, from, "relayed from the wrong address");
        assert_eq!(len, PAYLOAD);
        let seq = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
        assert_eq!(buf[..len], payload(tag, seq as u32), "payload changed");
        if seq < n && !seen[seq] {
            seen[seq] = true;
            got += 1;
        }
    }
    assert_eq!(got, n, "received {got} of {n} datagrams (tag {tag})");
}

fn total(m: &SocketMedia<RelayCmd>) -> StatsSnapshot {
    StatsSnapshot::sum(&m.all_stats())
}

fn program(m: &SocketMedia<RelayCmd>, cmds: &[RelayCmd]) {
    let before: Vec<u64> = m.all_stats().iter().map(|s| s.commands).collect();
    for w in 0..m.workers() {
        for c in cmds {
            m.try_send(w, *c).expect("command queue full");
        }
    }
    let t = Instant::now();
    while m
        .all_stats()
        .iter()
        .zip(&before)
        .any(|(s, b)| s.commands < b + cmds.len() as u64)
    {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "workers did not apply their commands"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn sa(ip: std::net::IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

fn chains(t: &Topo) -> String {
    t.exec(&t.sbc, &["iptables", "-t", "raw", "-S"])
        .unwrap_or_default()
}

#[test]
fn packet_scheme_relays_across_the_full_range() {
    require_root!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topo::new("pk", 91).expect("topology");
    let cfg = SocketMediaConfig {
        addrs: vec![t.sbc_carrier_ip, t.sbc_cloud_ip],
        port_min: 30000,
        port_max: 49999,
        cores: vec![0, 1],
        scheme: Scheme::PacketSocket,
        rule_tag: "hwtest".into(),
        ..Default::default()
    };
    let fds_before = open_fds();
    let media = in_ns(&t.sbc, || {
        SocketMedia::start(&cfg, |_| Marking(StaticRelay::new(30000, 49999)))
    })
    .expect("start");
    assert_eq!(media.scheme(), ActiveScheme::PacketSocket);
    let fds_running = open_fds();
    assert!(
        fds_running - fds_before <= 8,
        "20,000 ports should cost a handful of descriptors, not {}",
        fds_running - fds_before
    );
    assert!(
        chains(&t).contains("TGMEDIA-hwtest"),
        "drop chain installed"
    );

    let carrier = bind_in(&t.carrier, sa(t.carrier_ip, 5000));
    let cloud = bind_in(&t.cloud, sa(t.cloud_ip, 6000));
    // Two calls at both ends of the range; each leg's local address relays to the other leg's remote.
    let calls = [(30000u16, 30002u16), (49998, 49996)];
    let mut cmds = Vec::new();
    for (p, q) in calls {
        cmds.push(RelayCmd::Add {
            local: sa(t.sbc_carrier_ip, p),
            from: sa(t.sbc_cloud_ip, q),
            to: sa(t.cloud_ip, 6000),
        });
        cmds.push(RelayCmd::Add {
            local: sa(t.sbc_cloud_ip, q),
            from: sa(t.sbc_carrier_ip, p),
            to: sa(t.carrier_ip, 5000),
        });
    }
    program(&media, &cmds);

    let allocs_before = WORKER_ALLOCS.load(Ordering::Relaxed);
    let csum_cloud = snmp(&t.cloud, "Udp", "InCsumErrors");
    let csum_carrier = snmp(&t.carrier, "Udp", "InCsumErrors");
    let icmp_sbc = snmp(&t.sbc, "Icmp", "OutDestUnreachs");
    for (i, (p, q)) in calls.into_iter().enumerate() {
        let tag = i as u8 * 2;
        send_seq(&carrier, sa(t.sbc_carrier_ip, p), tag, N);
        expect_seq(&cloud, sa(t.sbc_cloud_ip, q), tag, N);
        send_seq(&cloud, sa(t.sbc_cloud_ip, q), tag + 1, N);
        expect_seq(&carrier, sa(t.sbc_carrier_ip, p), tag + 1, N);
    }
    // In range but no flow: the workers see and drop them, and the kernel stays silent.
    let noflow_before = total(&media).dropped(DropReason::NoFlow);
    send_seq(&carrier, sa(t.sbc_carrier_ip, 40000), 9, 50);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        total(&media).dropped(DropReason::NoFlow) - noflow_before,
        50
    );
    assert_eq!(
        snmp(&t.cloud, "Udp", "InCsumErrors"),
        csum_cloud,
        "checksum errors at the cloud"
    );
    assert_eq!(
        snmp(&t.carrier, "Udp", "InCsumErrors"),
        csum_carrier,
        "checksum errors at the carrier"
    );
    assert_eq!(
        snmp(&t.sbc, "Icmp", "OutDestUnreachs"),
        icmp_sbc,
        "ICMP unreachable sent for in-range ports"
    );

    // Outside the range: not seen by the workers (and, with no socket, the kernel does answer ICMP: the
    // counter above is live).
    let rx_before = total(&media).rx_packets;
    send_seq(&carrier, sa(t.sbc_carrier_ip, 50000), 7, 20);
    send_seq(&carrier, sa(t.sbc_carrier_ip, 29999), 7, 20);
    send_seq(&carrier, sa(t.sbc_carrier_ip, 5060), 7, 20);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        total(&media).rx_packets,
        rx_before,
        "out-of-range packets reached a worker"
    );
    assert!(
        snmp(&t.sbc, "Icmp", "OutDestUnreachs") > icmp_sbc,
        "control: closed ports out of range do get ICMP"
    );

    assert_eq!(
        WORKER_ALLOCS.load(Ordering::Relaxed),
        allocs_before,
        "a worker allocated on the packet path"
    );
    let s = total(&media);
    assert_eq!(s.tx_packets, 4 * N as u64);
    assert_eq!(
        s.total_drops(),
        50,
        "only the no-flow packets were dropped: {s:?}"
    );
    assert!(s.rx_syscalls < s.rx_packets, "receive is batched: {s:?}");
    // Flows spread by destination port: both workers carried traffic (30000/49998 even, 30002/49996 even
    // too, so check the split is what worker_for says).
    for (p, _) in calls {
        let w = media.worker_for(sa(t.sbc_carrier_ip, p));
        assert!(media.stats(w).unwrap().tx_packets > 0);
    }

    media.stop().expect("stop");
    drop((carrier, cloud));
    assert!(
        !chains(&t).contains("TGMEDIA-hwtest"),
        "drop chain removed on stop"
    );
    assert_eq!(open_fds(), fds_before, "descriptors leaked");
}

#[test]
fn packet_scheme_relays_ipv6() {
    require_root!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topo::new("v6", 96).expect("topology");
    let cfg = SocketMediaConfig {
        addrs: vec![t.sbc_carrier_ip6, t.sbc_cloud_ip6, t.sbc_carrier_ip],
        port_min: 30000,
        port_max: 49999,
        cores: vec![0, 1],
        scheme: Scheme::PacketSocket,
        rule_tag: "hwv6".into(),
        ..Default::default()
    };
    let fds_before = open_fds();
    let media = in_ns(&t.sbc, || {
        SocketMedia::start(&cfg, |_| StaticRelay::new(30000, 49999))
    })
    .expect("start");
    assert!(
        t.exec(&t.sbc, &["ip6tables", "-t", "raw", "-S"])
            .unwrap_or_default()
            .contains("TGMEDIA-hwv6")
    );
    let carrier = bind_in(&t.carrier, sa(t.carrier_ip6, 5000));
    let cloud = bind_in(&t.cloud, sa(t.cloud_ip6, 6000));
    let (p, q) = (30001u16, 49999u16);
    program(
        &media,
        &[
            RelayCmd::Add {
                local: sa(t.sbc_carrier_ip6, p),
                from: sa(t.sbc_cloud_ip6, q),
                to: sa(t.cloud_ip6, 6000),
            },
            RelayCmd::Add {
                local: sa(t.sbc_cloud_ip6, q),
                from: sa(t.sbc_carrier_ip6, p),
                to: sa(t.carrier_ip6, 5000),
            },
        ],
    );
    let csum = (
        snmp6(&t.cloud, "Udp6InCsumErrors"),
        snmp6(&t.carrier, "Udp6InCsumErrors"),
    );
    let icmp = snmp6(&t.sbc, "Icmp6OutDestUnreachs");
    send_seq(&carrier, sa(t.sbc_carrier_ip6, p), 1, N);
    expect_seq(&cloud, sa(t.sbc_cloud_ip6, q), 1, N);
    send_seq(&cloud, sa(t.sbc_cloud_ip6, q), 2, N);
    expect_seq(&carrier, sa(t.sbc_carrier_ip6, p), 2, N);
    send_seq(&carrier, sa(t.sbc_carrier_ip6, 40000), 3, 20); // in range, no flow
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        (
            snmp6(&t.cloud, "Udp6InCsumErrors"),
            snmp6(&t.carrier, "Udp6InCsumErrors")
        ),
        csum
    );
    assert_eq!(
        snmp6(&t.sbc, "Icmp6OutDestUnreachs"),
        icmp,
        "ICMPv6 unreachable sent for in-range ports"
    );
    let s = total(&media);
    assert_eq!(
        (s.tx_packets, s.dropped(DropReason::NoFlow)),
        (2 * N as u64, 20),
        "{s:?}"
    );
    media.stop().expect("stop");
    drop((carrier, cloud));
    assert!(
        !t.exec(&t.sbc, &["ip6tables", "-t", "raw", "-S"])
            .unwrap_or_default()
            .contains("TGMEDIA")
    );
    assert_eq!(open_fds(), fds_before, "descriptors leaked");
}

#[test]
fn software_checksum_check_drops_corrupt_datagrams() {
    require_root!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topo::new("ck", 93).expect("topology");
    // Without RX checksum offload on the SBC's veth the kernel vouches for nothing: the worker checks.
    t.exec(&t.sbc, &["ethtool", "-K", "s0", "rx", "off"])
        .expect("ethtool");
    let cfg = SocketMediaConfig {
        addrs: vec![t.sbc_carrier_ip, t.sbc_cloud_ip],
        port_min: 30000,
        port_max: 49999,
        cores: vec![1],
        scheme: Scheme::PacketSocket,
        rule_tag: "hwck".into(),
        ..Default::default()
    };
    let media = in_ns(&t.sbc, || {
        SocketMedia::start(&cfg, |_| StaticRelay::new(30000, 49999))
    })
    .expect("start");
    program(
        &media,
        &[RelayCmd::Add {
            local: sa(t.sbc_carrier_ip, 31000),
            from: sa(t.sbc_cloud_ip, 31002),
            to: sa(t.cloud_ip, 6000),
        }],
    );
    let cloud = bind_in(&t.cloud, sa(t.cloud_ip, 6000));
    // Hand-built datagrams from a raw socket in the carrier ns: one intact, one with a flipped payload bit.
    let (src, dst) = (sa(t.carrier_ip, 5000), sa(t.sbc_carrier_ip, 31000));
    let frames: Vec<Vec<u8>> = [false, true]
        .iter()
        .map(|&corrupt| {
            let mut buf = vec![0u8; 512];
            buf[100..100 + PAYLOAD].copy_from_slice(&payload(3, 0));
            let start = wire::write_headers(&mut buf, 100, PAYLOAD, src, dst, 0).unwrap();
            if corrupt {
                buf[120] ^= 0x40;
            }
            buf[start..100 + PAYLOAD].to_vec()
        })
        .collect();
    in_ns(&t.carrier, || {
        // SAFETY: plain socket calls with valid buffers; the descriptor is closed at the end.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
            assert!(fd >= 0);
            let mut sin: libc::sockaddr_in = std::mem::zeroed();
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_addr.s_addr = u32::from_ne_bytes([10, 93, 1, 1]);
            for f in &frames {
                let r = libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&sin as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as u32,
                );
                assert_eq!(r, f.len() as isize);
            }
            libc::close(fd);
        }
    });
    expect_seq(&cloud, sa(t.sbc_cloud_ip, 31002), 3, 1);
    std::thread::sleep(Duration::from_millis(100));
    let s = total(&media);
    assert_eq!(s.dropped(DropReason::BadChecksum), 1, "{s:?}");
    assert_eq!(s.tx_packets, 1);
    media.stop().expect("stop");
}

#[test]
fn per_port_fallback_relays_a_small_range() {
    require_root!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topo::new("pp", 92).expect("topology");
    let cfg = SocketMediaConfig {
        addrs: vec![t.sbc_carrier_ip, t.sbc_cloud_ip],
        port_min: 31000,
        port_max: 31099,
        cores: vec![0, 1],
        scheme: Scheme::PerPortSockets,
        ..Default::default()
    };
    let fds_before = open_fds();
    let media = in_ns(&t.sbc, || {
        SocketMedia::start(&cfg, |_| StaticRelay::new(31000, 31099))
    })
    .expect("start");
    assert_eq!(media.scheme(), ActiveScheme::PerPortSockets);
    assert!(
        open_fds() - fds_before >= 200,
        "one socket per address and port"
    );
    let carrier = bind_in(&t.carrier, sa(t.carrier_ip, 5000));
    let cloud = bind_in(&t.cloud, sa(t.cloud_ip, 6000));
    program(
        &media,
        &[
            RelayCmd::Add {
                local: sa(t.sbc_carrier_ip, 31001),
                from: sa(t.sbc_cloud_ip, 31098),
                to: sa(t.cloud_ip, 6000),
            },
            RelayCmd::Add {
                local: sa(t.sbc_cloud_ip, 31098),
                from: sa(t.sbc_carrier_ip, 31001),
                to: sa(t.carrier_ip, 5000),
            },
        ],
    );
    send_seq(&carrier, sa(t.sbc_carrier_ip, 31001), 1, N);
    expect_seq(&cloud, sa(t.sbc_cloud_ip, 31098), 1, N);
    send_seq(&cloud, sa(t.sbc_cloud_ip, 31098), 2, N);
    expect_seq(&carrier, sa(t.sbc_carrier_ip, 31001), 2, N);
    assert_eq!(total(&media).tx_packets, 2 * N as u64);
    // A range that cannot fit the descriptor limit is refused, not half-opened.
    let huge = SocketMediaConfig {
        port_min: 1024,
        port_max: 65535,
        ..cfg.clone()
    };
    let err = in_ns(&t.sbc, || {
        SocketMedia::<RelayCmd>::start(&huge, |_| StaticRelay::new(1024, 65535)).err()
    });
    assert!(
        err.is_some(),
        "per-port sockets over 64k ports x 2 addresses must not start"
    );
    media.stop().expect("stop");
    drop((carrier, cloud));
    assert_eq!(open_fds(), fds_before, "descriptors leaked");
}

#[test]
fn auto_falls_back_to_per_port_sockets_when_iptables_is_missing() {
    require_root!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topo::new("fb", 97).expect("topology");
    let missing = RuleTools {
        iptables: "/nonexistent/iptables".into(),
        ip6tables: "/nonexistent/ip6tables".into(),
    };
    let small = SocketMediaConfig {
        addrs: vec![t.sbc_carrier_ip, t.sbc_cloud_ip],
        port_min: 32000,
        port_max: 32049,
        cores: vec![1],
        scheme: Scheme::Auto,
        rule_tools: missing,
        rule_tag: "hwfb".into(),
        ..Default::default()
    };
    let fds_before = open_fds();
    let media = in_ns(&t.sbc, || {
        SocketMedia::start(&small, |_| StaticRelay::new(32000, 32049))
    })
    .expect("start");
    assert_eq!(media.scheme(), ActiveScheme::PerPortSockets);
    assert!(
        media
            .fallback_reason()
            .unwrap_or_default()
            .contains("/nonexistent/iptables"),
        "{:?}",
        media.fallback_reason()
    );
    let carrier = bind_in(&t.carrier, sa(t.carrier_ip, 5000));
    let cloud = bind_in(&t.cloud, sa(t.cloud_ip, 6000));
    program(
        &media,
        &[RelayCmd::Add {
            local: sa(t.sbc_carrier_ip, 32010),
            from: sa(t.sbc_cloud_ip, 32011),
            to: sa(t.cloud_ip, 6000),
        }],
    );
    send_seq(&carrier, sa(t.sbc_carrier_ip, 32010), 4, 100);
    expect_seq(&cloud, sa(t.sbc_cloud_ip, 32011), 4, 100);
    media.stop().expect("stop");
    drop((carrier, cloud));
    assert_eq!(open_fds(), fds_before, "descriptors leaked");
    // The full range cannot fall back (2 x 20,000 sockets > the descriptor limit): a clear error, no leak.
    let full = SocketMediaConfig {
        port_min: 30000,
        port_max: 49999,
        ..small
    };
    let err = in_ns(&t.sbc, || {
        SocketMedia::<RelayCmd>::start(&full, |_| StaticRelay::new(30000, 49999)).err()
    });
    assert!(
        matches!(
            err,
            Some(tollgate::fastpath::socket::SocketMediaError::NoScheme { .. })
        ),
        "{err:?}"
    );
    assert_eq!(
        open_fds(),
        fds_before,
        "descriptors leaked by the failed start"
    );
    assert!(!chains(&t).contains("TGMEDIA"), "no chain left behind");
}

#[test]
fn idle_worker_blocks_and_wakes_for_commands_within_milliseconds() {
    require_root!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topo::new("id", 94).expect("topology");
    let cfg = SocketMediaConfig {
        addrs: vec![t.sbc_carrier_ip],
        port_min: 30000,
        port_max: 49999,
        cores: vec![1],
        scheme: Scheme::PacketSocket,
        rule_tag: "hwidle".into(),
        ..Default::default()
    };
    let media = in_ns(&t.sbc, || {
        SocketMedia::start(&cfg, |_| StaticRelay::new(30000, 49999))
    })
    .expect("start");
    std::thread::sleep(Duration::from_millis(50));
    let cpu0 = thread_cpu_ticks("tg-media-0").expect("worker thread");
    let waits0 = media.stats(0).unwrap().idle_waits;
    std::thread::sleep(Duration::from_millis(1000));
    let cpu = thread_cpu_ticks("tg-media-0").unwrap() - cpu0;
    let waits = media.stats(0).unwrap().idle_waits - waits0;
    assert!(
        cpu <= 10,
        "idle worker used {cpu} ticks of CPU in 1 s (busy spin?)"
    );
    assert!(
        (100..=1000).contains(&waits),
        "{waits} idle waits in 1 s with a 2 ms wait"
    );
    for _ in 0..5 {
        let t0 = Instant::now();
        let before = media.stats(0).unwrap().commands;
        media
            .try_send(
                0,
                RelayCmd::Remove {
                    local: sa(t.sbc_carrier_ip, 30000),
                },
            )
            .unwrap();
        while media.stats(0).unwrap().commands == before {
            assert!(
                t0.elapsed() < Duration::from_millis(50),
                "command not applied within 50 ms"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(
            t0.elapsed() < Duration::from_millis(20),
            "command applied after {:?}",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(7));
    }
    media.stop().expect("stop");
}
