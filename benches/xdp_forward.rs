//! System benchmark: UDP relay packets/s on one pinned core, AF_XDP worker (`StaticForwarder`) vs a kernel
//! socket relay (`recvmmsg`/`sendmmsg`, batch 64), same topology, generator and sink, same run.
//!
//!   carrier ns: AF_XDP TX generator on vc0, pinned to CPU 0
//!   sbc ns:     relay pinned to CPU 1 (vs0 -> vs1)
//!   cloud ns:   vk0 with the tollgate XDP program in native mode and a DROP flow for the relayed
//!               destination: the sink count is its `flow_drop` counter.
//!
//! Run as root: `cargo bench --bench xdp_forward` (TOLLGATE_BENCH_SECS=seconds per point, default 4).
//! Writes the table to stdout and to target/bench-reports/xdp_forward.md.

#[path = "../hwtests/xdpcommon/mod.rs"]
mod common;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tollgate::fastpath::xdp::forwarder::{ForwardRule, StaticForwarder};
use tollgate::fastpath::xdp::loader::{FlowValue, ModePolicy, XdpProgram, if_index};
use tollgate::fastpath::xdp::neigh::NeighThread;
use tollgate::fastpath::xdp::netlink::Netlink;
use tollgate::fastpath::xdp::rewrite::{MacAddr, ipv4_header_checksum, udp_checksum};
use tollgate::fastpath::xdp::worker::{PortSpec, WorkerConfig, spawn_worker};
use xdpilone::xdp::XdpDesc;
use xdpilone::{IfInfo, Socket, SocketConfig, Umem, UmemConfig};

const PAYLOAD: usize = 172; // 200-byte IP packets, as in notes/xdp-on-this-machine.md section 6
const GEN_CORE: usize = 0;
const RELAY_CORE: usize = 1;

fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
}

fn mac_in(ns: &str, dev: &'static str) -> MacAddr {
    in_netns(ns, move || {
        Netlink::open(0)
            .unwrap()
            .link_mac(if_index(dev).unwrap())
            .unwrap()
    })
}

/// The carrier's datagram to the SBC's media port, with valid checksums.
fn frame(src_mac: MacAddr, dst_mac: MacAddr) -> Vec<u8> {
    let (s, d): (IpAddr, IpAddr) = (CARRIER.parse().unwrap(), SBC_C.parse().unwrap());
    let (IpAddr::V4(s4), IpAddr::V4(d4)) = (s, d) else {
        unreachable!()
    };
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let tot = (20 + 8 + PAYLOAD) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&tot.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&s4.octets());
    ip.extend_from_slice(&d4.octets());
    let c = ipv4_header_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut u = Vec::new();
    u.extend_from_slice(&4000u16.to_be_bytes());
    u.extend_from_slice(&30000u16.to_be_bytes());
    u.extend_from_slice(&((8 + PAYLOAD) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend((0..PAYLOAD).map(|i| i as u8));
    let c = udp_checksum(s, d, &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&u);
    f
}

fn pin(core: usize) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        eprintln!("warning: could not pin to CPU {core}");
    }
}

/// AF_XDP copy-mode TX flood on vc0 (P13: no pktgen/xdp-trafficgen here). `pps` 0 = as fast as possible.
/// Returns packets the kernel completed.
fn generate(ns: &str, pkt: Vec<u8>, secs: f64, pps: u64) -> u64 {
    in_netns(ns, move || {
        pin(GEN_CORE);
        const FRAMES: u32 = 4096;
        const FS: u32 = 2048;
        let len = (FRAMES * FS) as usize;
        // SAFETY: anonymous private mapping, checked below, unmapped at the end of this closure after the
        // Umem and socket are dropped.
        let area = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        assert_ne!(area, libc::MAP_FAILED);
        let base = NonNull::new(area.cast::<u8>()).unwrap();
        for i in 0..FRAMES as usize {
            // SAFETY: frame i lies inside the mapping; nothing else uses it yet.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    pkt.as_ptr(),
                    base.as_ptr().add(i * FS as usize),
                    pkt.len(),
                )
            };
        }
        let sent = {
            let cfg = UmemConfig {
                fill_size: 2048,
                complete_size: 2048,
                frame_size: FS,
                headroom: 0,
                flags: 0,
            };
            // SAFETY: page-aligned mapping of `len` bytes that outlives the Umem (dropped at block end).
            let umem = unsafe { Umem::new(cfg, NonNull::slice_from_raw_parts(base, len)) }.unwrap();
            let mut info = IfInfo::invalid();
            info.from_name(c"vc0").unwrap();
            info.set_queue(0);
            let sock = Socket::with_shared(&info, &umem).unwrap();
            let mut dev = umem.fq_cq(&sock).unwrap();
            let sc = SocketConfig {
                rx_size: None,
                tx_size: NonZeroU32::new(2048),
                bind_flags: SocketConfig::XDP_BIND_COPY | SocketConfig::XDP_BIND_NEED_WAKEUP,
            };
            let user = umem.rx_tx(&sock, &sc).unwrap();
            let mut tx = user.map_tx().unwrap();
            umem.bind(&user).unwrap();
            let mut free: Vec<u64> = (0..u64::from(FRAMES)).map(|i| i * u64::from(FS)).collect();
            let start = Instant::now();
            let end = start + Duration::from_secs_f64(secs);
            let (mut submitted, mut completed) = (0u64, 0u64);
            let plen = pkt.len() as u32;
            while Instant::now() < end {
                {
                    let mut c = dev.complete(2048);
                    while let Some(a) = c.read() {
                        free.push(a);
                        completed += 1;
                    }
                    c.release();
                }
                let mut budget = free.len().min(64);
                if pps > 0 {
                    let due = (start.elapsed().as_secs_f64() * pps as f64) as u64;
                    budget = budget.min(due.saturating_sub(submitted) as usize);
                }
                if budget > 0 {
                    let mut w = tx.transmit(budget as u32);
                    let mut n = 0;
                    while n < budget {
                        let Some(&a) = free.last() else { break };
                        if !w.insert_once(XdpDesc {
                            addr: a,
                            len: plen,
                            options: 0,
                        }) {
                            break;
                        }
                        free.pop();
                        n += 1;
                    }
                    w.commit();
                    drop(w);
                    submitted += n as u64;
                }
                for _ in 0..4 {
                    if tx.pending() == 0 {
                        break;
                    }
                    // SAFETY: the AF_XDP TX kick: sendto with no buffer.
                    let rc = unsafe {
                        libc::sendto(
                            tx.as_raw_fd(),
                            std::ptr::null(),
                            0,
                            libc::MSG_DONTWAIT,
                            std::ptr::null(),
                            0,
                        )
                    };
                    if rc < 0 {
                        std::thread::yield_now();
                        break;
                    }
                }
            }
            let _ = submitted;
            completed
        };
        // SAFETY: the mapping created above; the Umem and socket using it are gone.
        unsafe { libc::munmap(area, len) };
        sent
    })
}

/// Kernel-socket relay: recvmmsg(64) on SBC_C:30000, sendmmsg to the cloud from SBC_K:31000.
fn kernel_relay(
    ns: &str,
    stop: Arc<AtomicBool>,
    relayed: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let rx = udp_socket(ns, sa(SBC_C, 30000));
    let tx = udp_socket(ns, sa(SBC_K, 31000));
    rx.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    std::thread::spawn(move || {
        pin(RELAY_CORE);
        const B: usize = 64;
        let mut bufs = vec![[0u8; 2048]; B];
        let mut iov: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: zeroed mmsghdr/sockaddr are valid initial values.
        let mut msgs: Vec<libc::mmsghdr> = (0..B).map(|_| unsafe { std::mem::zeroed() }).collect();
        let mut dst: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        dst.sin_family = libc::AF_INET as u16;
        dst.sin_port = 5004u16.to_be();
        dst.sin_addr.s_addr =
            u32::from_ne_bytes(CLOUD.parse::<std::net::Ipv4Addr>().unwrap().octets());
        let mut out: Vec<libc::mmsghdr> = (0..B).map(|_| unsafe { std::mem::zeroed() }).collect();
        let mut oiov = iov.clone();
        let mut total = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: msgs holds B valid headers pointing at live buffers.
            let n = unsafe {
                libc::recvmmsg(
                    rx.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    B as u32,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n <= 0 {
                continue;
            }
            let n = n as usize;
            for i in 0..n {
                oiov[i] = libc::iovec {
                    iov_base: iov[i].iov_base,
                    iov_len: msgs[i].msg_len as usize,
                };
                out[i].msg_hdr.msg_iov = &mut oiov[i];
                out[i].msg_hdr.msg_iovlen = 1;
                out[i].msg_hdr.msg_name = (&mut dst as *mut libc::sockaddr_in).cast();
                out[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
            }
            let mut done = 0;
            while done < n {
                // SAFETY: out[done..n] are valid headers pointing at live buffers and dst.
                let s = unsafe {
                    libc::sendmmsg(
                        tx.as_raw_fd(),
                        out[done..].as_mut_ptr(),
                        (n - done) as u32,
                        0,
                    )
                };
                if s <= 0 {
                    break;
                }
                done += s as usize;
            }
            total += done as u64;
            relayed.store(total, Ordering::Relaxed);
        }
    })
}

struct Point {
    relay: &'static str,
    /// Generator target in packets/s; 0 = as fast as it can.
    target: u64,
    offered: f64,
    forwarded: f64,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !is_root() {
        eprintln!("SKIP xdp_forward: needs root (namespaces, XDP, AF_XDP)");
        return;
    }
    let secs: f64 = std::env::var("TOLLGATE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    let t = Topo::new("bench");
    let vs0 = mac_in(&t.s, "vs0");
    let vc0 = mac_in(&t.c, "vc0");
    let vk0 = mac_in(&t.k, "vk0");
    sh(&format!(
        "ip -n {} neigh replace {CLOUD} lladdr {vk0} dev vs1 nud permanent",
        t.s
    ));
    sh(&format!(
        "ip -n {} neigh replace {SBC_C} lladdr {vs0} dev vc0 nud permanent",
        t.c
    ));
    // Sink: the tollgate program itself, native on vk0, dropping the relayed destination in XDP.
    let mut sink = in_netns(&t.k, || {
        let mut p = XdpProgram::load().unwrap();
        p.attach("vk0", ModePolicy::DriverOnly).unwrap();
        p
    });
    sink.insert_flow(
        sa(CLOUD, 5004),
        FlowValue {
            flags: FlowValue::DROP,
            worker: 0,
        },
    )
    .unwrap();
    let sunk = |p: &XdpProgram| p.read_counters().unwrap().flow_drop;
    let pkt = frame(vc0, vs0);
    let mut points = Vec::new();
    // TOLLGATE_BENCH_CALLGRIND=1: only the AF_XDP worker at a low fixed rate, for
    //   valgrind --tool=callgrind --toggle-collect='*Worker*' target/release/deps/xdp_forward-*
    // (instructions per packet of the worker loop = collected Ir / worker rx).
    let callgrind = std::env::var("TOLLGATE_BENCH_CALLGRIND").as_deref() == Ok("1");
    let rates: Vec<u64> = if callgrind {
        vec![5_000]
    } else {
        vec![200_000, 400_000, 0]
    };

    // Baseline: kernel sockets.
    for &pps in rates.iter().filter(|_| !callgrind) {
        let stop = Arc::new(AtomicBool::new(false));
        let relayed = Arc::new(AtomicU64::new(0));
        let h = kernel_relay(&t.s, stop.clone(), relayed.clone());
        std::thread::sleep(Duration::from_millis(100));
        let before = sunk(&sink);
        let sent = generate(&t.c, pkt.clone(), secs, pps);
        std::thread::sleep(Duration::from_millis(200));
        let got = sunk(&sink) - before;
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        points.push(Point {
            relay: "kernel recvmmsg/sendmmsg",
            target: pps,
            offered: sent as f64 / secs,
            forwarded: got as f64 / secs,
        });
    }

    // AF_XDP worker.
    let (mut prog, worker, _neigh) = in_netns(&t.s, move || {
        let mut prog = XdpProgram::load().unwrap();
        prog.attach("vs0", ModePolicy::Auto).unwrap();
        prog.attach("vs1", ModePolicy::Auto).unwrap();
        let neigh = NeighThread::start().unwrap();
        neigh.table().watch(CLOUD.parse().unwrap());
        let rules = [(
            sa(SBC_C, 30000),
            ForwardRule {
                out_port: 1,
                src: sa(SBC_K, 31000),
                dst: sa(CLOUD, 5004),
            },
        )];
        let cfg = WorkerConfig {
            ports: vec![
                PortSpec {
                    iface: "vs0".into(),
                    queue: 0,
                },
                PortSpec {
                    iface: "vs1".into(),
                    queue: 0,
                },
            ],
            core: Some(RELAY_CORE),
            busy_poll: !callgrind,
            ..WorkerConfig::default()
        };
        let w = spawn_worker(cfg, StaticForwarder::new(rules), &mut prog, neigh.table()).unwrap();
        assert!(
            neigh
                .table()
                .wait_resolved(CLOUD.parse().unwrap(), Duration::from_secs(3))
                .is_some()
        );
        (prog, w, neigh)
    });
    prog.insert_flow(sa(SBC_C, 30000), FlowValue::default())
        .unwrap();
    for &pps in &rates {
        let before = sunk(&sink);
        let sent = generate(&t.c, pkt.clone(), secs, pps);
        std::thread::sleep(Duration::from_millis(200));
        let got = sunk(&sink) - before;
        points.push(Point {
            relay: "AF_XDP worker (native XDP, copy mode)",
            target: pps,
            offered: sent as f64 / secs,
            forwarded: got as f64 / secs,
        });
    }
    let w = worker.stats().read();
    drop(worker);
    drop(prog);

    let mut report = String::new();
    report.push_str(&format!(
        "# xdp_forward: UDP relay on one pinned core (CPU {RELAY_CORE}), generator on CPU {GEN_CORE}\n\n\
         200-byte IPv4 packets over veth in namespaces; {secs} s per point; sink = native XDP drop on the far veth.\n\n\
         | relay | generator target | offered pps | forwarded pps | loss |\n|---|---|---|---|---|\n"
    ));
    for p in &points {
        let loss = if p.offered > 0.0 {
            100.0 * (1.0 - p.forwarded / p.offered)
        } else {
            0.0
        };
        report.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.2} % |\n",
            p.relay,
            if p.target == 0 {
                "max".to_owned()
            } else {
                p.target.to_string()
            },
            p.offered,
            p.forwarded,
            loss.max(0.0)
        ));
    }
    report.push_str(&format!(
        "\nAF_XDP worker totals: rx {} tx {} dropped {} tx_kick_eagain {} xsk_rx_ring_full {} fill_ring_empty {}\n\
         \nCommand: `cargo bench --bench xdp_forward` (as root; TOLLGATE_BENCH_SECS={secs})\n",
        w.rx, w.tx, w.dropped, w.tx_kick_eagain, w.xsk_rx_ring_full, w.xsk_fill_ring_empty
    ));
    println!("{report}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-reports");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("xdp_forward.md"), &report);
}
