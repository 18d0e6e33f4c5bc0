//! End-to-end tests of the XDP steering program, the loader and the AF_XDP worker across network namespaces
//! and veth pairs (see `common::Topo`): carrier ns -> sbc ns (two veths, program + worker) -> cloud ns.
//! Run as root: `cargo test --test xdp_veth`; skipped with a message otherwise.

#[path = "xdpcommon/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use tollgate::fastpath::xdp::forwarder::{ForwardRule, StaticForwarder};
use tollgate::fastpath::xdp::loader::{
    AttachMode, FlowValue, ModePolicy, PROGRAM_OBJECT, XdpCounters, XdpProgram, if_index,
    tollgate_attached,
};
use tollgate::fastpath::xdp::neigh::NeighThread;
use tollgate::fastpath::xdp::rewrite::MacAddr;
use tollgate::fastpath::xdp::worker::{
    PortSpec, WorkerConfig, WorkerCounters, WorkerHandle, spawn_worker,
};

fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
}

/// Media addresses of the test flows: carrier-side local address -> cloud-side (source, destination).
fn rules() -> Vec<(SocketAddr, ForwardRule)> {
    vec![
        (
            sa(SBC_C, 30000),
            ForwardRule {
                out_port: 1,
                src: sa(SBC_K, 31000),
                dst: sa(CLOUD, 5004),
            },
        ),
        (
            sa(SBC_C6, 30000),
            ForwardRule {
                out_port: 1,
                src: sa(SBC_K6, 31000),
                dst: sa(CLOUD6, 5006),
            },
        ),
    ]
}

struct Sbc {
    // Field order = drop order: worker first, then the program (detach), then the neighbour thread.
    worker: Option<WorkerHandle<StaticForwarder>>,
    prog: XdpProgram,
    neigh: NeighThread,
    mode: AttachMode,
}

impl Sbc {
    fn start(t: &Topo, policy: ModePolicy) -> Sbc {
        in_netns(&t.s, move || {
            let mut prog = XdpProgram::load().expect("load");
            let mode = prog.attach("vs0", policy).expect("attach vs0");
            assert_eq!(prog.attach("vs1", policy).expect("attach vs1"), mode);
            let neigh = NeighThread::start().expect("neigh");
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
                frames: 8192,
                ring_size: 2048,
                ..WorkerConfig::default()
            };
            let worker = spawn_worker(cfg, StaticForwarder::new(rules()), &mut prog, neigh.table())
                .expect("worker");
            assert!(
                worker.ports().iter().all(|p| !p.zerocopy),
                "veth has no zero-copy (P5)"
            );
            Sbc {
                worker: Some(worker),
                prog,
                neigh,
                mode,
            }
        })
    }

    fn counters(&self) -> XdpCounters {
        self.prog.read_counters().expect("counters")
    }

    fn worker(&self) -> WorkerCounters {
        self.worker.as_ref().expect("worker").stats().read()
    }
}

fn check_forwarding(tag: &str, policy: ModePolicy, expect: AttachMode) {
    let t = Topo::new(tag);
    let mut sbc = Sbc::start(&t, policy);
    assert_eq!(sbc.mode, expect);
    for (local, _) in rules() {
        sbc.prog
            .insert_flow(local, FlowValue::default())
            .expect("insert");
    }
    let csum_before = udp_snmp(&t.k);
    let cloud4 = udp_socket(&t.k, sa(CLOUD, 5004));
    let cloud6 = udp_socket(&t.k, sa(CLOUD6, 5006));
    let car4 = udp_socket(&t.c, sa(CARRIER, 4000));
    let car6 = udp_socket(&t.c, sa(CARRIER6, 4000));
    // First round: the cloud's MAC is unknown, the datagrams go through the kernel while ARP/ND resolve it.
    // Kept under the kernel's unresolved-neighbour queue (unres_qlen 101) so none may be lost.
    const N0: u32 = 50;
    const N: u32 = 1000;
    let payload = [0x80u8; 160];
    send_n(&car4, sa(SBC_C, 30000), N0, &payload);
    send_n(&car6, sa(SBC_C6, 30000), N0, &payload);
    for (sock, src) in [(&cloud4, sa(SBC_K, 31000)), (&cloud6, sa(SBC_K6, 31000))] {
        let got = recv_up_to(sock, N0 as usize, Duration::from_secs(5));
        assert_eq!(
            got.len(),
            N0 as usize,
            "all datagrams reach the cloud socket (from {src})"
        );
        let mut seen = vec![false; N0 as usize];
        for (p, from) in &got {
            assert_eq!(
                *from, src,
                "source rewritten to the SBC's cloud-side address"
            );
            assert_eq!(p.len(), payload.len() + 4);
            assert_eq!(&p[..payload.len()], &payload[..]);
            let seq = u32::from_be_bytes(p[payload.len()..].try_into().unwrap()) as usize;
            assert!(!seen[seq], "no duplicates");
            seen[seq] = true;
        }
    }
    let csum_after = udp_snmp(&t.k);
    assert_eq!(
        csum_after.0, csum_before.0,
        "UdpInCsumErrors unchanged in the cloud ns"
    );
    assert_eq!(
        csum_after.1, csum_before.1,
        "UDP InErrors unchanged in the cloud ns"
    );

    let c = sbc.counters();
    assert_eq!(c.redirected, 2 * u64::from(N0), "{c:?}");
    assert_eq!(c.no_xsk, 0);
    assert_eq!(
        c.passed,
        c.not_ip + c.not_udp + c.no_flow + c.fragment + c.malformed + c.no_xsk
    );
    // The worker saw them all; the first ones per family went through the kernel while ARP/ND resolved.
    assert!(wait_for(Duration::from_secs(2), || sbc.worker().rx
        == 2 * u64::from(N0)));
    let w = sbc.worker();
    assert_eq!(w.tx + w.to_kernel, 2 * u64::from(N0), "{w:?}");
    assert!(
        w.to_kernel >= 2,
        "unresolved next hops went through the kernel: {w:?}"
    );
    assert_eq!(w.dropped, 0);

    // Once ARP/ND resolved the cloud, every datagram leaves through the cloud-side XSK.
    let neigh = sbc.neigh.table();
    for ip in [CLOUD, CLOUD6] {
        assert!(
            neigh
                .wait_resolved(ip.parse().unwrap(), Duration::from_secs(3))
                .is_some(),
            "{ip} resolved"
        );
    }
    // Second round: everything through the cloud-side XSK, headers and checksums checked by the kernel.
    send_n(&car4, sa(SBC_C, 30000), N, &payload);
    send_n(&car6, sa(SBC_C6, 30000), N, &payload);
    for (sock, src) in [(&cloud4, sa(SBC_K, 31000)), (&cloud6, sa(SBC_K6, 31000))] {
        let got = recv_up_to(sock, N as usize, Duration::from_secs(5));
        let mut seen = vec![false; N as usize];
        for (p, from) in &got {
            assert_eq!(*from, src);
            assert_eq!(&p[..payload.len()], &payload[..]);
            let seq = u32::from_be_bytes(p[payload.len()..].try_into().unwrap()) as usize;
            assert!(!seen[seq], "no duplicates");
            seen[seq] = true;
        }
        let got = got.len();
        assert_eq!(
            got,
            N as usize,
            "worker {:?}\nsnmp {:?}\nsoftnet {}",
            sbc.worker(),
            udp_snmp(&t.k),
            sh_out("cat /proc/net/softnet_stat")
        );
    }
    assert!(wait_for(Duration::from_secs(2), || sbc.worker().rx
        == 2 * u64::from(N0 + N)));
    let w2 = sbc.worker();
    assert_eq!(
        w2.tx - w.tx,
        2 * u64::from(N),
        "all through AF_XDP TX: {w2:?}"
    );
    assert_eq!(w2.to_kernel, w.to_kernel);
    assert_eq!(udp_snmp(&t.k).0, csum_before.0, "UdpInCsumErrors unchanged");

    // Frame accounting at rest: every frame is free or in a ring, and the ledger agrees.
    let balanced = wait_for(Duration::from_secs(2), || {
        let w = sbc.worker();
        w.ledger_balanced()
            && w.rings_balanced()
            && w.frames_kernel_tx == 0
            && w.frames_backlog == 0
    });
    assert!(balanced, "frames leaked: {:?}", sbc.worker());

    let handler = sbc.worker.take().unwrap().stop().expect("handler back");
    assert_eq!(
        handler.counters.forwarded + handler.counters.via_kernel,
        2 * u64::from(N0 + N)
    );
    assert_eq!(handler.counters.no_rule, 0);
}

#[test]
fn forwards_flows_native_mode() {
    if skip_unless_root("forwards_flows_native_mode") {
        return;
    }
    check_forwarding("fwdn", ModePolicy::Auto, AttachMode::Driver);
}

#[test]
fn forwards_flows_generic_mode() {
    if skip_unless_root("forwards_flows_generic_mode") {
        return;
    }
    check_forwarding("fwdg", ModePolicy::GenericOnly, AttachMode::Generic);
}

#[test]
fn sip_arp_and_unknown_ports_go_to_the_kernel() {
    if skip_unless_root("sip_arp_and_unknown_ports_go_to_the_kernel") {
        return;
    }
    let t = Topo::new("pass");
    let sbc = Sbc::start(&t, ModePolicy::Auto);
    for (local, _) in rules() {
        sbc.prog
            .flows_clone()
            .expect("clone")
            .insert_flow(local, FlowValue::default())
            .expect("insert");
    }
    let sip = udp_socket(&t.s, sa(SBC_C, 5060));
    let car = udp_socket(&t.c, sa(CARRIER, 5060));
    const N: u32 = 200;
    send_n(&car, sa(SBC_C, 5060), N, b"OPTIONS sip:sbc SIP/2.0\r\n");
    assert_eq!(
        recv_up_to(&sip, N as usize, Duration::from_secs(5)).len(),
        N as usize,
        "SIP reaches the kernel"
    );
    // Unknown media port: the kernel gets it (port unreachable), the worker never sees it.
    send_n(&car, sa(SBC_C, 30002), N, b"rtp");
    assert!(wait_for(Duration::from_secs(2), || sbc.counters().no_flow
        >= 2 * u64::from(N)));
    let c = sbc.counters();
    assert_eq!(
        c.no_flow,
        2 * u64::from(N),
        "SIP + unknown port, nothing else: {c:?}"
    );
    assert_eq!(c.redirected, 0);
    // ARP resolved the SBC for the carrier through XDP_PASS.
    assert!(c.not_ip > 0, "ARP passed: {c:?}");
    let neigh = sh_out(&format!("ip -n {} neigh show {SBC_C}", t.c));
    assert!(
        neigh.contains("lladdr"),
        "carrier resolved the SBC: {neigh}"
    );
    assert_eq!(sbc.worker().rx, 0, "the worker saw nothing");

    // IPv4 fragments of a flow port are passed, never redirected half-parsed.
    let big = vec![7u8; 3000];
    car.send_to(&big, sa(SBC_C, 30000)).expect("send big");
    assert!(
        wait_for(Duration::from_secs(2), || sbc.counters().fragment >= 3),
        "{:?}",
        sbc.counters()
    );
    assert_eq!(sbc.counters().redirected, 0);
    assert_eq!(sbc.worker().rx, 0);
}

#[test]
fn removing_or_blocking_a_flow_stops_redirection() {
    if skip_unless_root("removing_or_blocking_a_flow_stops_redirection") {
        return;
    }
    let t = Topo::new("rm");
    let mut sbc = Sbc::start(&t, ModePolicy::Auto);
    let local = sa(SBC_C, 30000);
    sbc.prog
        .insert_flow(local, FlowValue::default())
        .expect("insert");
    let cloud = udp_socket(&t.k, sa(CLOUD, 5004));
    let car = udp_socket(&t.c, sa(CARRIER, 4000));
    const N: u32 = 100;
    send_n(&car, local, N, b"a");
    let got = recv_up_to(&cloud, N as usize, Duration::from_secs(5)).len();
    assert_eq!(
        got,
        N as usize,
        "worker {:?} xdp {:?}",
        sbc.worker(),
        sbc.counters()
    );
    assert!(sbc.prog.remove_flow(local).expect("remove"));
    assert!(
        !sbc.prog.remove_flow(local).expect("remove again"),
        "second removal finds nothing"
    );
    let before = sbc.counters();
    send_n(&car, local, N, b"b");
    assert!(wait_for(Duration::from_secs(2), || sbc.counters().no_flow
        >= before.no_flow + u64::from(N)));
    assert_eq!(
        sbc.counters().redirected,
        before.redirected,
        "no redirect after removal"
    );
    assert!(recv_up_to(&cloud, 1, Duration::from_millis(300)).is_empty());
    assert_eq!(sbc.worker().rx, u64::from(N));

    // A blocked flow is dropped in XDP.
    sbc.prog
        .insert_flow(
            local,
            FlowValue {
                flags: FlowValue::DROP,
                worker: 0,
            },
        )
        .expect("block");
    send_n(&car, local, N, b"c");
    assert!(wait_for(Duration::from_secs(2), || sbc
        .counters()
        .flow_drop
        == u64::from(N)));
    assert_eq!(sbc.worker().rx, u64::from(N));
}

#[test]
fn detached_on_drop_and_stale_programs_are_swept() {
    if skip_unless_root("detached_on_drop_and_stale_programs_are_swept") {
        return;
    }
    let t = Topo::new("stale");
    let s = t.s.clone();
    let attached = move || {
        let s = s.clone();
        in_netns(&s, || tollgate_attached(if_index("vs0").unwrap()).unwrap())
    };

    // Clean drop in-process.
    let sbc = Sbc::start(&t, ModePolicy::Auto);
    assert!(attached());
    drop(sbc);
    assert!(!attached(), "detached on drop");

    // A child process that exits cleanly, then one that is killed with SIGKILL.
    for clean in [true, false] {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_attach_and_wait",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TGX_CHILD_NS", &t.s)
            .env("TGX_CHILD_CLEAN", if clean { "1" } else { "0" })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines
            .by_ref()
            .take(50)
            .map_while(Result::ok)
            .any(|l| l.contains("TGX-ATTACHED"));
        assert!(ready, "child attached");
        if clean {
            assert!(child.wait().expect("wait").success());
        } else {
            assert!(attached(), "child's program is attached");
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
        // bpf_link attachments die with their process; nothing may keep steering packets.
        assert!(
            wait_for(Duration::from_secs(2), || !attached()),
            "no program left after child exit (clean={clean})"
        );
    }

    // A netlink-attached program (old kernel without XDP bpf_link, or `ip link set ... xdp`) survives its
    // process: the next start must sweep it.
    let obj = std::env::temp_dir().join(format!("tgx-stale-{}.o", std::process::id()));
    std::fs::write(&obj, PROGRAM_OBJECT).unwrap();
    sh(&format!(
        "ip -n {} link set dev vs0 xdpgeneric obj {} sec xdp",
        t.s,
        obj.display()
    ));
    sh(&format!(
        "ip -n {} link set dev vs1 xdpdrv obj {} sec xdp",
        t.s,
        obj.display()
    ));
    let _ = std::fs::remove_file(&obj);
    assert!(attached(), "stale program planted");
    let out = sh_out(&format!("ip -n {} link show", t.s));
    assert!(
        out.contains("xdpgeneric") && out.matches("prog/xdp").count() == 2,
        "{out}"
    );
    let sbc = Sbc::start(&t, ModePolicy::Auto);
    let out = sh_out(&format!("ip -n {} link show", t.s));
    assert!(
        !out.contains("xdpgeneric"),
        "stale generic program swept: {out}"
    );
    // Driver mode on vs1 too: the stale native program there was swept as well.
    assert_eq!(sbc.mode, AttachMode::Driver);
    drop(sbc);
    assert!(!attached());
}

/// Not a test on its own: the child process of `detached_on_drop_and_stale_programs_are_swept`, which runs
/// it with `--ignored` and TGX_CHILD_NS set.
#[test]
#[ignore = "child process of detached_on_drop_and_stale_programs_are_swept"]
fn child_attach_and_wait() {
    let Ok(ns) = std::env::var("TGX_CHILD_NS") else {
        return;
    };
    let clean = std::env::var("TGX_CHILD_CLEAN").as_deref() == Ok("1");
    let prog = in_netns(&ns, || {
        let mut p = XdpProgram::load().expect("load");
        p.attach("vs0", ModePolicy::Auto).expect("attach");
        p
    });
    println!("TGX-ATTACHED");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    if clean {
        std::thread::sleep(Duration::from_millis(100));
        drop(prog);
    } else {
        // Waits to be killed; bounded in case the parent died.
        std::thread::sleep(Duration::from_secs(30));
    }
}

#[test]
fn permission_and_interface_errors_are_typed() {
    use tollgate::fastpath::xdp::loader::XdpError;
    if !is_root() {
        // Unprivileged: loading must fail with a Permission error, not a panic.
        match XdpProgram::load() {
            Err(XdpError::Permission(_)) => {}
            Err(e) => panic!("expected a permission error, got {e}"),
            Ok(_) => panic!("unprivileged BPF load succeeded"),
        }
        return;
    }
    let mut p = XdpProgram::load().expect("load");
    match p.attach("tgx-no-such-if", ModePolicy::Auto) {
        Err(XdpError::NoSuchInterface(n)) => assert_eq!(n, "tgx-no-such-if"),
        other => panic!("expected NoSuchInterface, got {:?}", other.map(|_| ())),
    }
}

/// Sends raw Ethernet frames out of `dev` in namespace `ns` (AF_PACKET).
fn send_raw(ns: &str, dev: &'static str, frames: Vec<Vec<u8>>) {
    in_netns(ns, move || {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: socket(2), checked, then owned.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            )
        };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fresh fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data.
        let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_ifindex = if_index(dev).unwrap() as i32;
        ll.sll_halen = 6;
        for f in frames {
            ll.sll_addr[..6].copy_from_slice(&f[..6]);
            // SAFETY: f and ll are valid for the call.
            let rc = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&ll as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(
                rc,
                f.len() as isize,
                "send raw: {}",
                std::io::Error::last_os_error()
            );
        }
    })
}

/// An IPv4/UDP frame from the carrier to the SBC with valid checksums, optional VLAN tag and IP options.
fn raw_v4(
    src: MacAddr,
    dst: MacAddr,
    vlan: Option<u16>,
    opts: &[u8],
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    use tollgate::fastpath::xdp::rewrite::{ipv4_header_checksum, udp_checksum};
    let (s, d): (IpAddr, IpAddr) = (CARRIER.parse().unwrap(), SBC_C.parse().unwrap());
    let (IpAddr::V4(s4), IpAddr::V4(d4)) = (s, d) else {
        unreachable!()
    };
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    if let Some(tci) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let ihl = 20 + opts.len();
    let udp_len = 8 + payload.len();
    let mut ip = vec![0x40 | (ihl / 4) as u8, 0];
    ip.extend_from_slice(&((ihl + udp_len) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&s4.octets());
    ip.extend_from_slice(&d4.octets());
    ip.extend_from_slice(opts);
    let c = ipv4_header_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut u = Vec::new();
    u.extend_from_slice(&4000u16.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(udp_len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = udp_checksum(s, d, &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&u);
    f
}

fn raw_v6(src: MacAddr, dst: MacAddr, next_header: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 16, next_header, 64]);
    f.extend_from_slice(&CARRIER6.parse::<std::net::Ipv6Addr>().unwrap().octets());
    f.extend_from_slice(&SBC_C6.parse::<std::net::Ipv6Addr>().unwrap().octets());
    // An 8-byte extension header (next: UDP) then an 8-byte UDP header to the flow port.
    f.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&[0x0f, 0xa0, 0x75, 0x30, 0, 8, 0, 0]);
    f
}

#[test]
fn parser_edge_cases_on_the_wire() {
    use tollgate::fastpath::xdp::netlink::Netlink;
    if skip_unless_root("parser_edge_cases_on_the_wire") {
        return;
    }
    let t = Topo::new("edge");
    let sbc = Sbc::start(&t, ModePolicy::Auto);
    sbc.prog
        .flows_clone()
        .unwrap()
        .insert_flow(sa(SBC_C, 30000), FlowValue::default())
        .unwrap();
    sbc.prog
        .flows_clone()
        .unwrap()
        .insert_flow(sa(SBC_C6, 30000), FlowValue::default())
        .unwrap();
    let mac = |ns: &str, dev: &'static str| {
        in_netns(ns, move || {
            Netlink::open(0)
                .unwrap()
                .link_mac(if_index(dev).unwrap())
                .unwrap()
        })
    };
    let (vc0, vs0, vk0) = (mac(&t.c, "vc0"), mac(&t.s, "vs0"), mac(&t.k, "vk0"));
    sh(&format!(
        "ip -n {} neigh replace {CLOUD} lladdr {vk0} dev vs1 nud permanent",
        t.s
    ));
    let cloud = udp_socket(&t.k, sa(CLOUD, 5004));
    let before = sbc.counters();

    let nops = [1u8, 1, 1, 1, 1, 1, 1, 0]; // NOP x7, EOL
    let good_opts = raw_v4(vc0, vs0, None, &nops, 30000, b"with-options");
    let vlan = raw_v4(vc0, vs0, Some(100), &[], 30000, b"vlan-tagged");
    let mut ihl4 = raw_v4(vc0, vs0, None, &[], 30000, b"x");
    ihl4[14] = 0x44;
    let mut truncated = raw_v4(vc0, vs0, None, &[], 30000, &[0u8; 100]);
    truncated.truncate(14 + 20 + 4);
    let mut udp_len_lies = raw_v4(vc0, vs0, None, &[], 30000, &[0u8; 10]);
    udp_len_lies[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&200u16.to_be_bytes());
    let mut short_payload = raw_v4(vc0, vs0, None, &[], 30000, &[0u8; 100]);
    short_payload.truncate(short_payload.len() - 10);
    let hop_by_hop = raw_v6(vc0, vs0, 0);
    let fragment = raw_v6(vc0, vs0, 44);
    send_raw(
        &t.c,
        "vc0",
        vec![
            good_opts,
            vlan,
            ihl4,
            truncated,
            udp_len_lies,
            short_payload,
            hop_by_hop,
            fragment,
        ],
    );

    let mut got: Vec<Vec<u8>> = recv_up_to(&cloud, 2, Duration::from_secs(5))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![b"vlan-tagged".to_vec(), b"with-options".to_vec()],
        "options kept, VLAN tag removed"
    );
    let malformed = || sbc.counters().malformed - before.malformed;
    assert!(
        wait_for(Duration::from_secs(2), || malformed() == 4),
        "ihl 4, cut UDP header, UDP length lies, cut payload: {}",
        malformed()
    );
    let c = sbc.counters();
    assert_eq!(c.redirected - before.redirected, 2, "{c:?}");
    assert_eq!(c.fragment - before.fragment, 1, "{c:?}");
    assert!(c.not_udp > before.not_udp, "{c:?}");
    assert_eq!(sbc.worker().rx, 2);
}

#[test]
fn one_worker_per_queue_shares_the_load() {
    if skip_unless_root("one_worker_per_queue_shares_the_load") {
        return;
    }
    const QUEUES: u32 = 2;
    let t = Topo::with_queues("mq", QUEUES);
    let vk0 = in_netns(&t.k, || {
        tollgate::fastpath::xdp::netlink::Netlink::open(0)
            .unwrap()
            .link_mac(if_index("vk0").unwrap())
            .unwrap()
    });
    sh(&format!(
        "ip -n {} neigh replace {CLOUD} lladdr {vk0} dev vs1 nud permanent",
        t.s
    ));
    let (mut prog, workers, _neigh) = in_netns(&t.s, || {
        let mut prog = XdpProgram::load().expect("load");
        prog.attach("vs0", ModePolicy::Auto).expect("attach");
        prog.attach("vs1", ModePolicy::Auto).expect("attach");
        let neigh = NeighThread::start().expect("neigh");
        neigh.table().watch(CLOUD.parse().unwrap());
        assert!(
            neigh
                .table()
                .wait_resolved(CLOUD.parse().unwrap(), Duration::from_secs(3))
                .is_some()
        );
        let workers: Vec<_> = (0..QUEUES)
            .map(|q| {
                let cfg = WorkerConfig {
                    ports: vec![
                        PortSpec {
                            iface: "vs0".into(),
                            queue: q,
                        },
                        PortSpec {
                            iface: "vs1".into(),
                            queue: q,
                        },
                    ],
                    frames: 4096,
                    ring_size: 1024,
                    ..WorkerConfig::default()
                };
                spawn_worker(cfg, StaticForwarder::new(rules()), &mut prog, neigh.table())
                    .expect("worker")
            })
            .collect();
        (prog, workers, neigh)
    });
    prog.insert_flow(sa(SBC_C, 30000), FlowValue::default())
        .expect("insert");
    let cloud = udp_socket(&t.k, sa(CLOUD, 5004));
    const SOCKS: u16 = 16;
    const PER: u32 = 50;
    let senders: Vec<_> = (0..SOCKS)
        .map(|i| udp_socket(&t.c, sa(CARRIER, 4100 + i)))
        .collect();
    for s in &senders {
        send_n(s, sa(SBC_C, 30000), PER, b"mq");
    }
    let got = recv_up_to(
        &cloud,
        usize::from(SOCKS) * PER as usize,
        Duration::from_secs(5),
    )
    .len();
    assert_eq!(got, usize::from(SOCKS) * PER as usize);
    let per_worker: Vec<u64> = workers.iter().map(|w| w.stats().read().rx).collect();
    assert_eq!(
        per_worker.iter().sum::<u64>(),
        u64::from(SOCKS) * u64::from(PER)
    );
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "every queue's worker got traffic: {per_worker:?}"
    );
    assert_eq!(prog.read_counters().unwrap().no_xsk, 0);
    for w in workers {
        assert!(w.stats().read().ledger_balanced());
        w.stop();
    }
}

#[test]
fn next_hops_follow_the_neighbour_table_and_routes() {
    if skip_unless_root("next_hops_follow_the_neighbour_table_and_routes") {
        return;
    }
    let t = Topo::new("nh");
    let s = t.s.clone();
    let (neigh, vs1) = in_netns(&t.s, || {
        (
            NeighThread::start().expect("neigh"),
            if_index("vs1").unwrap(),
        )
    });
    let table = neigh.table();
    let cloud: IpAddr = CLOUD.parse().unwrap();
    let far: IpAddr = "10.99.1.1".parse().unwrap();
    let m1 = MacAddr([2, 0, 0, 0, 0x11, 0x11]);
    let m2 = MacAddr([2, 0, 0, 0, 0x22, 0x22]);
    sh(&format!(
        "ip -n {s} neigh replace {CLOUD} lladdr {m1} dev vs1 nud permanent"
    ));
    table.watch(cloud);
    let hop = table
        .wait_resolved(cloud, Duration::from_secs(3))
        .expect("resolved from the table");
    assert_eq!((hop.ifindex, hop.mac), (vs1, m1));

    // A changed MAC is picked up from the RTM_NEWNEIGH notification.
    sh(&format!(
        "ip -n {s} neigh replace {CLOUD} lladdr {m2} dev vs1 nud permanent"
    ));
    assert!(wait_for(Duration::from_secs(3), || table
        .snapshot()
        .lookup(cloud)
        .map(|h| h.mac)
        == Some(m2)));

    // An off-link remote resolves to its gateway's MAC; a new route is picked up by the periodic re-route.
    table.watch(far);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(table.snapshot().lookup(far), None, "no route yet");
    sh(&format!("ip -n {s} route add 10.99.0.0/16 via {CLOUD}"));
    let hop = table
        .wait_resolved(far, Duration::from_secs(3))
        .expect("routed via the cloud host");
    assert_eq!((hop.ifindex, hop.mac), (vs1, m2));

    // Unwatched remotes leave the snapshot.
    table.unwatch(far);
    assert!(wait_for(Duration::from_secs(3), || table
        .snapshot()
        .lookup(far)
        .is_none()));
    table.watch(far);
    assert!(table.wait_resolved(far, Duration::from_secs(3)).is_some());

    // Deleting the neighbour entry removes both next hops.
    sh(&format!("ip -n {s} neigh del {CLOUD} dev vs1"));
    assert!(
        wait_for(Duration::from_secs(3), || table.snapshot().is_empty()),
        "{:?}",
        table.snapshot()
    );
}
