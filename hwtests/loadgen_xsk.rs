//! AF_XDP transmit mode of the load generator across a veth pair between two namespaces of our own
//! (`tgload-a` with the AF_XDP socket, `tgload-b` with the sink's kernel UDP sockets). Needs root; skips
//! otherwise. Cleans up the namespaces by name, also when an assertion fails.

use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tollgate::loadgen::sink::{SinkConfig, run_sink};
use tollgate::loadgen::spec::SSRC_BASE;
use tollgate::loadgen::transform::{PacketTransform, Plain};
use tollgate::loadgen::xsk::{XskGenConfig, run_xsk_gen};

const NS_A: &str = "tgload-a";
const NS_B: &str = "tgload-b";

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .status()
        .is_ok_and(|s| s.success())
}

struct Topo;
impl Drop for Topo {
    fn drop(&mut self) {
        sh(&["ip", "netns", "del", NS_A]);
        sh(&["ip", "netns", "del", NS_B]);
    }
}

fn setup() -> Topo {
    let t = Topo;
    drop(Topo);
    assert!(sh(&["ip", "netns", "add", NS_A]));
    assert!(sh(&["ip", "netns", "add", NS_B]));
    assert!(sh(&[
        "ip", "link", "add", "tgload0", "netns", NS_A, "type", "veth", "peer", "name", "tgload1",
        "netns", NS_B
    ]));
    for (ns, dev, ip) in [
        (NS_A, "tgload0", "10.213.0.1/30"),
        (NS_B, "tgload1", "10.213.0.2/30"),
    ] {
        assert!(sh(&["ip", "-n", ns, "addr", "add", ip, "dev", dev]));
        assert!(sh(&["ip", "-n", ns, "link", "set", dev, "up"]));
        assert!(sh(&["ip", "-n", ns, "link", "set", "lo", "up"]));
    }
    t
}

fn mac(ns: &str, dev: &str) -> [u8; 6] {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "cat",
            &format!("/sys/class/net/{dev}/address"),
        ])
        .output()
        .unwrap();
    let s = String::from_utf8(out.stdout).unwrap();
    let mut m = [0u8; 6];
    for (i, p) in s.trim().split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(p, 16).unwrap();
    }
    m
}

fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: setns on a valid namespace fd moves only the calling thread into that network namespace.
    assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
}

#[test]
fn xsk_tx_reaches_kernel_sink() {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIP xsk_tx_reaches_kernel_sink: needs root (sudo cargo test --test loadgen_xsk)"
        );
        return;
    }
    let _topo = setup();
    let (src_mac, dst_mac) = (mac(NS_A, "tgload0"), mac(NS_B, "tgload1"));
    let n = 8usize;
    let streams: Vec<(SocketAddrV4, SocketAddrV4)> = (0..n)
        .map(|i| {
            (
                SocketAddrV4::new([10, 213, 0, 1].into(), 30000 + i as u16),
                SocketAddrV4::new([10, 213, 0, 2].into(), 31000 + i as u16),
            )
        })
        .collect();
    let stop_sink = AtomicBool::new(false);
    let stop_gen = AtomicBool::new(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (g, k) = std::thread::scope(|sc| {
        let sink = sc.spawn(|| {
            enter(NS_B);
            let socks: Vec<UdpSocket> = streams
                .iter()
                .map(|(_, d)| UdpSocket::bind(*d).unwrap())
                .collect();
            for s in &socks {
                tollgate::loadgen::sink::set_rcvbuf(s, 1 << 20).unwrap();
            }
            let mut rxs: Vec<Box<dyn PacketTransform>> = (0..n)
                .map(|_| Box::new(Plain) as Box<dyn PacketTransform>)
                .collect();
            ready_tx.send(()).unwrap();
            let cfg = SinkConfig {
                streams: n,
                ssrc_base: SSRC_BASE,
                max_duration: Duration::from_secs(10),
                core: Some(1),
                count_only: false,
            };
            run_sink(&socks, &mut rxs, &cfg, &stop_sink)
        });
        ready_rx.recv().unwrap();
        let g = sc
            .spawn(|| {
                enter(NS_A);
                let cfg = XskGenConfig {
                    iface: "tgload0".into(),
                    queue: 0,
                    src_mac,
                    dst_mac,
                    streams: streams.clone(),
                    total_pps: 20_000,
                    duration: Duration::from_millis(500),
                    payload_len: 160,
                    ssrc_base: SSRC_BASE,
                    core: Some(0),
                    frames: 4096,
                    ring: 2048,
                };
                let mut txs: Vec<Box<dyn PacketTransform>> = (0..n)
                    .map(|_| Box::new(Plain) as Box<dyn PacketTransform>)
                    .collect();
                run_xsk_gen(&cfg, &mut txs, &stop_gen)
            })
            .join()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        stop_sink.store(true, std::sync::atomic::Ordering::Relaxed);
        (g, sink.join().unwrap())
    });
    let g = g.expect("AF_XDP generator");
    // The rate is not under test here (debug build, shared cores): delivery is.
    assert!(g.sent > 1000, "sent {}", g.sent);
    assert_eq!(k.bad_payload + k.unknown, 0, "{k:?}");
    assert_eq!(k.received, g.sent, "gen {g:?}");
    assert_eq!(k.lost, 0);
    assert!(k.latency.is_some());
}
