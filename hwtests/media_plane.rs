//! The media plane end to end (root): carrier ns (plain RTP) -- sbc ns (two veths, tollgate's media plane)
//! -- cloud ns (SRTP AES_CM_128_HMAC_SHA1_80, checked with libsrtp2). Flows are programmed directly through
//! the plane's `FlowSink`, as the B2BUA does. Socket mode and XDP mode (skipped if XDP cannot attach).
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "xdpcommon/mod.rs"]
mod xdpcommon;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use support::libsrtp::Session;
use tollgate::media::{
    FlowCmd, FlowEntry, FlowKey, FlowSink, FlowTag, LatchMode, Leg, MediaEvent, SrtpKeying,
    StreamKind,
};
use tollgate::mediaplane::{ActiveMode, MediaMode, MediaPlane, MediaPlaneConfig};
use tollgate::srtp::{MasterKey, Suite};
use xdpcommon::{in_netns, sh, udp_socket};

libsrtp_extern!(debian_lib, #[link(name = "libsrtp2.so.1", kind = "dylib", modifiers = "+verbatim")]);

const CARRIER: &str = "10.207.1.2";
const SBC_C: &str = "10.207.1.1";
const SBC_K: &str = "10.207.2.1";
const CLOUD: &str = "10.207.2.2";
const N: u16 = 200;

fn sa(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

struct Topo {
    c: String,
    s: String,
    k: String,
}

impl Topo {
    fn new(tag: &str) -> Topo {
        let t = Topo {
            c: format!("tgm-{tag}-c"),
            s: format!("tgm-{tag}-s"),
            k: format!("tgm-{tag}-k"),
        };
        t.delete();
        let (c, s, k) = (&t.c, &t.s, &t.k);
        for ns in [c, s, k] {
            sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
        }
        sh(&format!(
            "ip link add mc0 netns {c} type veth peer name ms0 netns {s}"
        ));
        sh(&format!(
            "ip link add mk0 netns {k} type veth peer name ms1 netns {s}"
        ));
        for (ns, dev, a) in [
            (c, "mc0", CARRIER),
            (s, "ms0", SBC_C),
            (s, "ms1", SBC_K),
            (k, "mk0", CLOUD),
        ] {
            sh(&format!(
                "ip -n {ns} addr add {a}/24 dev {dev} && ip -n {ns} link set {dev} up"
            ));
        }
        sh(&format!("ip -n {c} route add 10.207.2.0/24 via {SBC_C}"));
        sh(&format!("ip -n {k} route add 10.207.1.0/24 via {SBC_K}"));
        // P3: local senders on veth leave the UDP checksum to an offload AF_XDP never completes.
        sh(&format!(
            "ip netns exec {c} ethtool -K mc0 tx off >/dev/null"
        ));
        sh(&format!(
            "ip netns exec {k} ethtool -K mk0 tx off >/dev/null"
        ));
        // P4 does not apply: AF_XDP TX (not XDP_TX/redirect) into veth needs no program on the peer.
        // Next hops are not resolved up front: the first packets take the kernel path (Verdict::Kernel),
        // which resolves them, later ones the XSK.
        t
    }

    fn delete(&self) {
        for ns in [&self.c, &self.s, &self.k] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        self.delete();
    }
}

fn keys() -> (SrtpKeying, Vec<u8>) {
    let mk = MasterKey::generate(Suite::AesCm128HmacSha1_80).unwrap();
    let mut ks = mk.key().to_vec();
    ks.extend_from_slice(mk.salt());
    (
        SrtpKeying {
            suite: "AES_CM_128_HMAC_SHA1_80".into(),
            inline_key: mk.to_sdes_inline(),
        },
        ks,
    )
}

fn entry(
    local: SocketAddr,
    remote: SocketAddr,
    egress: (SocketAddr, SocketAddr),
    peer: SocketAddr,
    srtp: (Option<SrtpKeying>, Option<SrtpKeying>),
    leg: Leg,
) -> FlowCmd {
    FlowCmd::Add(Box::new(FlowEntry {
        key: FlowKey::new(local),
        kind: StreamKind::Rtp,
        expected_remote: remote,
        latch: LatchMode::LatchOnFirst,
        srtp_in: srtp.0,
        srtp_out: srtp.1,
        egress_local: egress.0,
        egress_remote: egress.1,
        link: None,
        payloads: Vec::new(),
        tag: FlowTag {
            call: 1,
            leg,
            stream: 0,
        },
        peer: Some(FlowKey::new(peer)),
        rtcp_egress: None,
        peer_rtcp: None,
        timeout: 1_500_000_000,
        hold_timeout: 1_500_000_000,
        on_hold: false,
    }))
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    for (i, b) in p[12..].iter_mut().enumerate() {
        *b = (i as u16 ^ seq) as u8;
    }
    p
}

fn recv_all(s: &UdpSocket, n: usize, t: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    let end = Instant::now() + t;
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while out.len() < n && Instant::now() < end {
        if let Ok((l, from)) = s.recv_from(&mut buf) {
            out.push((buf[..l].to_vec(), from));
        }
    }
    out
}

fn pace(i: u16) {
    if i % 16 == 15 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn run_call(tag: &str, mode: MediaMode) {
    if !xdpcommon::is_root() {
        eprintln!("skipping media_plane {tag}: needs root (network namespaces)");
        return;
    }
    let t = Topo::new(tag);
    let (board, beats) = tollgate::ops::notify::Heartbeats::new(["media0"]);
    let cfg = MediaPlaneConfig {
        mode,
        xdp_required: mode == MediaMode::Xdp,
        interfaces: vec!["ms0".into(), "ms1".into()],
        addrs: vec![SBC_C.parse().unwrap(), SBC_K.parse().unwrap()],
        cores: vec![0],
        port_min: 40000,
        port_max: 40009,
        rule_tag: format!("tgm{tag}"),
        heartbeats: beats,
        ..MediaPlaneConfig::default()
    };
    let started = in_netns(&t.s, move || {
        MediaPlane::start(&cfg).map_err(|e| e.to_string())
    });
    let (plane, mut sink) = match started {
        Ok(p) => p,
        Err(e) if mode == MediaMode::Xdp => {
            eprintln!("skipping media_plane {tag}: XDP unavailable: {e}");
            return;
        }
        Err(e) => panic!("media plane: {e}"),
    };
    assert_eq!(
        plane.mode(),
        if mode == MediaMode::Xdp {
            ActiveMode::Xdp
        } else {
            ActiveMode::Socket
        }
    );
    // The idle worker still beats (socket: the tick; XDP: the idle turn), so the watchdog and /health see it.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        board.stale(Duration::from_millis(150)).is_empty(),
        "idle media worker stopped beating"
    );
    let events = plane.events();
    let (a_local, b_local) = (sa(SBC_C, 40000), sa(SBC_K, 40002));
    // The carrier's SDP says port 5000 but it sends from 5002 (NAT): latching must find it.
    let (carrier_sdp, carrier_real, cloud) =
        (sa(CARRIER, 5000), sa(CARRIER, 5002), sa(CLOUD, 6000));
    let (to_cloud, to_cloud_ks) = keys();
    let (from_cloud, from_cloud_ks) = keys();
    sink.apply(entry(
        a_local,
        carrier_sdp,
        (b_local, cloud),
        b_local,
        (None, Some(to_cloud)),
        Leg::A,
    ))
    .unwrap();
    sink.apply(entry(
        b_local,
        cloud,
        (a_local, carrier_sdp),
        a_local,
        (Some(from_cloud), None),
        Leg::B,
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));

    let carrier = udp_socket(&t.c, carrier_real);
    let cloud_s = udp_socket(&t.k, cloud);
    let lib = debian_lib();

    // Carrier -> cloud: plain RTP in, SRTP out; libsrtp2 decrypts every packet, payload unchanged.
    for i in 0..N {
        carrier.send_to(&rtp(i), a_local).unwrap();
        pace(i);
    }
    let got = recv_all(&cloud_s, N.into(), Duration::from_secs(3));
    assert_eq!(
        got.len(),
        usize::from(N),
        "{tag}: carrier->cloud packets arrived"
    );
    let mut rx = Session::new(lib, Suite::AesCm128HmacSha1_80, &to_cloud_ks, None, false).unwrap();
    for (i, (mut p, from)) in got.into_iter().enumerate() {
        assert_eq!(from, b_local);
        assert_eq!(p.len(), 182, "SRTP tag added");
        let n = p.len();
        let m = rx.unprotect(&mut p, n).expect("libsrtp2 unprotect");
        assert_eq!(&p[..m], &rtp(i as u16)[..], "payload unchanged");
    }

    // Cloud -> carrier: SRTP (libsrtp2) in, plain RTP out, to the latched carrier port.
    let mut tx = Session::new(lib, Suite::AesCm128HmacSha1_80, &from_cloud_ks, None, true).unwrap();
    for i in 0..N {
        let mut p = rtp(i);
        p.resize(256, 0);
        let n = tx.protect(&mut p, 172).unwrap();
        cloud_s.send_to(&p[..n], b_local).unwrap();
        pace(i);
    }
    let got = recv_all(&carrier, N.into(), Duration::from_secs(3));
    assert_eq!(
        got.len(),
        usize::from(N),
        "{tag}: cloud->carrier packets arrived"
    );
    for (i, (p, from)) in got.iter().enumerate() {
        assert_eq!(*from, a_local);
        assert_eq!(&p[..], &rtp(i as u16)[..]);
    }

    let mut seen = Vec::new();
    let mut wait_event = |want: &dyn Fn(&MediaEvent) -> bool, t: Duration| {
        let end = Instant::now() + t;
        while Instant::now() < end {
            while let Some(e) = events.pop() {
                seen.push(e);
            }
            if seen.iter().any(want) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };
    assert!(wait_event(
        &|e| matches!(e, MediaEvent::Latched { key, addr, .. } if key.local == a_local && *addr == carrier_real),
        Duration::from_secs(1)
    ));
    if mode == MediaMode::Socket {
        // No RTP any more: the idle worker's tick notices the timeout.
        assert!(
            wait_event(
                &|e| matches!(e, MediaEvent::Timeout { key, .. } if key.local == a_local),
                Duration::from_secs(4)
            ),
            "media timeout event"
        );
    }

    // Remove leg A: the carrier's packets are no longer forwarded (and, in XDP mode, no longer steered).
    let before = plane.xdp_counters();
    sink.apply(FlowCmd::Remove(FlowKey::new(a_local))).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for i in N..N + 20 {
        carrier.send_to(&rtp(i), a_local).unwrap();
    }
    let got = recv_all(&cloud_s, 1, Duration::from_millis(500));
    assert!(got.is_empty(), "{tag}: removed flow still forwards");
    if let (Some(b), Some(a)) = (before, plane.xdp_counters()) {
        assert!(
            a.no_flow >= b.no_flow + 20,
            "BPF entry removed: packets pass to the kernel ({b:?} -> {a:?})"
        );
        assert_eq!(
            a.redirected, b.redirected,
            "nothing redirected after removal"
        );
    }
    let snap = plane.counters();
    eprintln!("{tag}: {snap:?}");
    plane.stop().unwrap();
}

#[test]
fn socket_mode_rtp_to_srtp_call() {
    run_call("sock", MediaMode::Socket);
}

#[test]
fn xdp_mode_rtp_to_srtp_call() {
    run_call("xdp", MediaMode::Xdp);
}
