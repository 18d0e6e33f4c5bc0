//! Anchored calls end to end (root): the real `tollgate run` in the sbc namespace with `[media] mode =
//! "socket"`, a carrier UA in the carrier namespace (this test: SIP over UDP, plain RTP sent from another
//! port than its SDP says, as behind a NAT) and, in the cloud namespace, SIPp answering with `-rtp_echo`
//! (a real peer) or a UAS of this test that speaks SRTP through libsrtp2 (the reference implementation)
//! with the SDES keys from tollgate's SDP. Checks: every RTP packet arrives both ways, payload unchanged,
//! from tollgate's media addresses only; SRTP both ways; DTMF with the payload type of the cloud's SDP; a
//! port change by re-INVITE; the media timeout ending the call with BYE and a Reason on both legs.
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "xdpcommon/mod.rs"]
mod xdpcommon;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::libsrtp::Session;
use tollgate::sdp::crypto::base64_decode;
use tollgate::srtp::Suite;
use xdpcommon::{CARRIER, CLOUD, SBC_C, SBC_K, Topo, recv_up_to, skip_unless_root, udp_socket};

libsrtp_extern!(debian_lib, #[link(name = "libsrtp2.so.1", kind = "dylib", modifiers = "+verbatim")]);

const N: u16 = 150;

fn sa(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

/// A running child killed on drop (also when the test fails).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Waits up to `t` for the exit status.
    fn wait(&mut self, t: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + t;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

fn config(mode: &str, cloud_srtp: &str, rtp_timeout_s: u32) -> String {
    let xdp_required = mode == "xdp";
    format!(
        r#"[node]
name = "e2e"
[[listen]]
transport = "udp"
address = "{SBC_C}:5060"
[[listen]]
transport = "udp"
address = "{SBC_K}:5060"
[media]
mode = "{mode}"
xdp_required = {xdp_required}
port_min = 30000
port_max = 30199
rtp_timeout_s = {rtp_timeout_s}
[[media.interface]]
name = "vs0"
role = "carrier"
address = "{SBC_C}"
[[media.interface]]
name = "vs1"
role = "cloud"
address = "{SBC_K}"
[[trunk]]
name = "carrier"
acl = ["{CARRIER}/32"]
[[trunk]]
name = "cloud"
targets = ["sip:{CLOUD}:5080"]
health = {{ ping_interval_s = 0 }}
headers = {{ allow = ["X-Context"] }}
srtp = {cloud_srtp}
[[rule]]
trunk = "carrier"
match = '^\+?1?5551234567$'
replace = "+18005551234"
[[route]]
from = "carrier"
to = "cloud"
"#
    )
}

struct Sbc {
    _proc: Proc,
    log: PathBuf,
}

impl Sbc {
    fn start(t: &Topo, dir: &Path, cfg: &str) -> Sbc {
        let path = dir.join("tollgate.toml");
        std::fs::write(&path, cfg).unwrap();
        let log = dir.join("tollgate.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &t.s,
                env!("CARGO_BIN_EXE_tollgate"),
                "run",
                "--config",
            ])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let sbc = Sbc {
            _proc: Proc(child),
            log,
        };
        // Up when it answers OPTIONS from the carrier.
        let s = udp_socket(&t.c, sa(CARRIER, 5070));
        let end = Instant::now() + Duration::from_secs(15);
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            let opt = format!(
                "OPTIONS sip:{SBC_C} SIP/2.0\r\nVia: SIP/2.0/UDP {CARRIER}:5070;branch=z9hG4bKo{}\r\n\
                 From: <sip:probe@{CARRIER}>;tag=p\r\nTo: <sip:{SBC_C}>\r\nCall-ID: probe-{}\r\nCSeq: 1 OPTIONS\r\n\
                 Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                rand_tag(),
                rand_tag()
            );
            let _ = s.send_to(opt.as_bytes(), sa(SBC_C, 5060));
            if let Ok((n, _)) = s.recv_from(&mut buf)
                && buf[..n].starts_with(b"SIP/2.0 200")
            {
                return sbc;
            }
        }
        panic!("tollgate did not come up:\n{}", sbc.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn rand_tag() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// (c= address, m=audio port) of an SDP body.
fn media_addr(sdp: &str) -> SocketAddr {
    let ip = sdp
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap()
        .trim();
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .unwrap();
    sa(ip, port.parse().unwrap())
}

/// The payload type of an SDP's telephone-event rtpmap.
fn dtmf_pt(sdp: &str) -> u8 {
    sdp.lines()
        .find_map(|l| {
            let v = l.strip_prefix("a=rtpmap:")?;
            let (pt, enc) = v.split_once(' ')?;
            enc.starts_with("telephone-event")
                .then(|| pt.parse().unwrap())
        })
        .expect("telephone-event in SDP")
}

fn with_len(head: &str, body: &str) -> String {
    format!("{head}Content-Length: {}\r\n\r\n{body}", body.len())
}

/// Waits for a message on `s` whose first line starts with `start`, answering nothing else.
fn recv_msg(s: &UdpSocket, start: &str, t: Duration) -> (String, SocketAddr) {
    let end = Instant::now() + t;
    let mut buf = [0u8; 8192];
    let mut seen = Vec::new();
    while Instant::now() < end {
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with(start) {
                return (m, from);
            }
            seen.push(m.lines().next().unwrap_or("").to_owned());
        }
    }
    panic!("no {start:?} within {t:?}; saw {seen:?}");
}

fn rtp(seq: u16, pt: u8) -> Vec<u8> {
    let mut p = vec![0u8; 172];
    p[0] = 0x80;
    p[1] = pt;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    for (i, b) in p[12..].iter_mut().enumerate() {
        *b = (i as u16 ^ seq) as u8;
    }
    p
}

/// RFC 4733 event packet: digit 5, end bit on the last one.
fn dtmf(seq: u16, pt: u8, end: bool) -> Vec<u8> {
    let mut p = rtp(seq, pt);
    p.truncate(16);
    p[12] = 5;
    p[13] = if end { 0x80 | 10 } else { 10 };
    p[14..16].copy_from_slice(&800u16.to_be_bytes());
    p
}

fn pace(i: u16) {
    if i % 8 == 7 {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The carrier side of one call: SIP socket on 5060, RTP socket on `rtp_port` (its SDP says `sdp_port`).
struct CarrierUa {
    sip: UdpSocket,
    rtp: UdpSocket,
    call_id: String,
    to_tag: String,
    sbc_media: SocketAddr,
    cseq: u32,
}

impl CarrierUa {
    fn sdp(sdp_port: u16, version: u32) -> String {
        format!(
            "v=0\r\no=carrier 1 {version} IN IP4 {CARRIER}\r\ns=-\r\nc=IN IP4 {CARRIER}\r\nt=0 0\r\n\
             m=audio {sdp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-15\r\na=ptime:20\r\n"
        )
    }

    fn call(t: &Topo, rtp_port: u16, sdp_port: u16) -> CarrierUa {
        let sip = udp_socket(&t.c, sa(CARRIER, 5060));
        let rtp = udp_socket(&t.c, sa(CARRIER, rtp_port));
        let call_id = format!("e2e-{}@{CARRIER}", rand_tag());
        let inv = with_len(
            &format!(
                "INVITE sip:15551234567@{SBC_C} SIP/2.0\r\nVia: SIP/2.0/UDP {CARRIER}:5060;branch=z9hG4bKi{}\r\n\
                 From: <sip:15557654321@{CARRIER}>;tag=car1\r\nTo: <sip:15551234567@{SBC_C}>\r\n\
                 Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:15557654321@{CARRIER}:5060>\r\n\
                 Max-Forwards: 70\r\nX-Context: agent=42;lang=en\r\nContent-Type: application/sdp\r\n",
                rand_tag()
            ),
            &Self::sdp(sdp_port, 1),
        );
        sip.send_to(inv.as_bytes(), sa(SBC_C, 5060)).unwrap();
        let (ok, _) = recv_msg(&sip, "SIP/2.0 200", Duration::from_secs(10));
        let to_tag = header(&ok, "To")
            .and_then(|v| v.split(";tag=").nth(1))
            .unwrap()
            .to_owned();
        let sbc_media = media_addr(body(&ok));
        assert_eq!(
            sbc_media.ip().to_string(),
            SBC_C,
            "anchored on tollgate: {ok}"
        );
        let mut ua = CarrierUa {
            sip,
            rtp,
            call_id,
            to_tag,
            sbc_media,
            cseq: 1,
        };
        ua.send_in_dialog("ACK", 1, "");
        ua
    }

    fn send_in_dialog(&mut self, method: &str, cseq: u32, sdp: &str) {
        let ct = if sdp.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\nContact: <sip:15557654321@10.201.1.2:5060>\r\n"
        };
        let m = with_len(
            &format!(
                "{method} sip:tollgate@{SBC_C}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CARRIER}:5060;branch=z9hG4bK{}\r\n\
                 From: <sip:15557654321@{CARRIER}>;tag=car1\r\nTo: <sip:15551234567@{SBC_C}>;tag={}\r\n\
                 Call-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n{ct}",
                rand_tag(),
                self.to_tag,
                self.call_id
            ),
            sdp,
        );
        self.sip.send_to(m.as_bytes(), sa(SBC_C, 5060)).unwrap();
    }

    fn bye(&mut self) {
        self.cseq += 1;
        self.send_in_dialog("BYE", self.cseq, "");
        recv_msg(&self.sip, "SIP/2.0 200", Duration::from_secs(5));
    }
}

#[test]
fn anchored_call_to_sipp_rtp_echo_with_latching_behind_nat() {
    sipp_echo_call("socket", "e2s");
}

/// The same call with the AF_XDP fast path (`xdp_required`: no silent fallback to sockets).
#[test]
fn anchored_call_through_the_xdp_fast_path() {
    sipp_echo_call("xdp", "e2x");
}

fn sipp_echo_call(mode: &str, tag: &str) {
    if skip_unless_root("media_e2e sipp") {
        return;
    }
    if Command::new("sipp").arg("-v").output().is_err() {
        eprintln!("SKIP media_e2e sipp: sipp (Debian sip-tester) not installed");
        return;
    }
    let t = Topo::new(tag);
    let dir = tempfile::tempdir().unwrap();
    let sbc = Sbc::start(&t, dir.path(), &config(mode, "{ policy = \"off\" }", 60));
    if mode == "xdp" {
        assert!(sbc.log().contains("mode=Xdp"), "XDP active:\n{}", sbc.log());
    }
    let scen = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/uas_answer.xml");
    let sipp = Command::new("ip")
        .args(["netns", "exec", &t.k, "sipp", "-sf"])
        .arg(&scen)
        .args([
            "-i",
            CLOUD,
            "-p",
            "5080",
            "-mi",
            CLOUD,
            "-mp",
            "6000",
            "-rtp_echo",
        ])
        .args([
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "40s",
            "-timeout_error",
            "-trace_err",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut sipp = Proc(sipp);
    std::thread::sleep(Duration::from_millis(300));

    // The carrier's SDP says 8000; it sends from 8002 (a NAT rewrote the port).
    let mut ua = CarrierUa::call(&t, 8002, 8000);
    for i in 0..N {
        ua.rtp.send_to(&rtp(i, 0), ua.sbc_media).unwrap();
        pace(i);
    }
    let got = recv_up_to(&ua.rtp, N.into(), Duration::from_secs(5));
    assert_eq!(
        got.len(),
        usize::from(N),
        "echoed by SIPp through tollgate both ways\n{}",
        sbc.log()
    );
    let mut seqs: Vec<u16> = got
        .iter()
        .map(|(p, from)| {
            assert_eq!(*from, ua.sbc_media, "symmetric: from tollgate's media port");
            let seq = u16::from_be_bytes([p[2], p[3]]);
            assert_eq!(p[12..], rtp(seq, 0)[12..], "payload unchanged");
            seq
        })
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), usize::from(N));
    ua.bye();
    let st = sipp.wait(Duration::from_secs(10)).expect("sipp ends");
    assert!(st.success(), "sipp: {st:?}\n{}", sbc.log());
}

/// The cloud side of the SRTP test: answers tollgate's INVITE with its own SDES key, then speaks SRTP.
struct CloudUa {
    sip: UdpSocket,
    rtp: UdpSocket,
    /// tollgate's key toward us (it protects with it, we unprotect).
    their_key: Vec<u8>,
    our_key: Vec<u8>,
    sbc_media: SocketAddr,
    dtmf_pt: u8,
    invite: String,
}

const CLOUD_KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

impl CloudUa {
    fn listen(t: &Topo) -> (UdpSocket, UdpSocket) {
        (
            udp_socket(&t.k, sa(CLOUD, 5080)),
            udp_socket(&t.k, sa(CLOUD, 6000)),
        )
    }

    fn reply(req: &str, code: &str, extra: &str, sdp: &str) -> String {
        let mut h = format!("SIP/2.0 {code}\r\n");
        for n in ["Via", "From", "To", "Call-ID", "CSeq"] {
            let v = header(req, n).unwrap();
            if n == "To" && !v.contains("tag=") {
                h.push_str(&format!("To: {v};tag=cloud1\r\n"));
            } else {
                h.push_str(&format!("{n}: {v}\r\n"));
            }
        }
        h.push_str(extra);
        with_len(&h, sdp)
    }

    fn answer(sip: UdpSocket, rtp: UdpSocket) -> CloudUa {
        let (inv, from) = recv_msg(&sip, "INVITE ", Duration::from_secs(10));
        let sdp = body(&inv);
        assert!(sdp.contains("RTP/SAVP"), "SRTP offered to the cloud: {inv}");
        let key = sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"))
            .expect("AES_CM_128_HMAC_SHA1_80 offered first")
            .split('|')
            .next()
            .unwrap()
            .trim();
        let their_key = base64_decode(key).unwrap();
        let answer = format!(
            "v=0\r\no=cloud 7 7 IN IP4 {CLOUD}\r\ns=-\r\nc=IN IP4 {CLOUD}\r\nt=0 0\r\n\
             m=audio 6000 RTP/SAVP 0 {pt}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:{pt} telephone-event/8000\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{CLOUD_KEY}\r\n",
            pt = dtmf_pt(sdp)
        );
        let ok = Self::reply(
            &inv,
            "200 OK",
            &format!("Contact: <sip:agent@{CLOUD}:5080>\r\nContent-Type: application/sdp\r\n"),
            &answer,
        );
        sip.send_to(ok.as_bytes(), from).unwrap();
        recv_msg(&sip, "ACK ", Duration::from_secs(5));
        CloudUa {
            sbc_media: media_addr(sdp),
            dtmf_pt: dtmf_pt(sdp),
            sip,
            rtp,
            their_key,
            our_key: base64_decode(CLOUD_KEY).unwrap(),
            invite: inv,
        }
    }
}

#[test]
fn srtp_to_cloud_with_libsrtp2_dtmf_port_change_and_media_timeout() {
    if skip_unless_root("media_e2e srtp") {
        return;
    }
    let t = Topo::new("e2k");
    let dir = tempfile::tempdir().unwrap();
    let sbc = Sbc::start(
        &t,
        dir.path(),
        &config(
            "socket",
            "{ policy = \"required\", allow_sdes_without_tls = true }",
            2,
        ),
    );
    let (csip, crtp) = CloudUa::listen(&t);
    let cloud = std::thread::spawn(move || CloudUa::answer(csip, crtp));
    let mut ua = CarrierUa::call(&t, 8000, 8000);
    let cloud = cloud.join().unwrap();
    assert_eq!(cloud.sbc_media.ip().to_string(), SBC_K);
    assert!(
        !cloud.invite.contains(CARRIER),
        "topology hidden: {}",
        cloud.invite
    );
    let lib = debian_lib();

    // Carrier -> cloud: plain in, SRTP out; libsrtp2 decrypts with tollgate's offered key.
    for i in 0..N {
        ua.rtp.send_to(&rtp(i, 0), ua.sbc_media).unwrap();
        pace(i);
    }
    for (i, end) in [(N, false), (N + 1, false), (N + 2, true)] {
        ua.rtp.send_to(&dtmf(i, 101, end), ua.sbc_media).unwrap();
    }
    let got = recv_up_to(&cloud.rtp, usize::from(N) + 3, Duration::from_secs(5));
    assert_eq!(got.len(), usize::from(N) + 3, "{}", sbc.log());
    let mut rx = Session::new(
        lib,
        Suite::AesCm128HmacSha1_80,
        &cloud.their_key,
        None,
        false,
    )
    .unwrap();
    for (mut p, from) in got {
        assert_eq!(from, cloud.sbc_media);
        let n = p.len();
        let m = rx
            .unprotect(&mut p, n)
            .expect("libsrtp2 unprotects what tollgate sent");
        let seq = u16::from_be_bytes([p[2], p[3]]);
        if seq < N {
            assert_eq!(&p[..m], &rtp(seq, 0)[..], "payload unchanged");
        } else {
            assert_eq!(
                p[1] & 0x7f,
                cloud.dtmf_pt,
                "DTMF with the cloud leg's payload type"
            );
            assert_eq!(p[12], 5, "digit 5");
        }
    }

    // Cloud -> carrier: SRTP from libsrtp2 in, plain out.
    let mut tx = Session::new(lib, Suite::AesCm128HmacSha1_80, &cloud.our_key, None, true).unwrap();
    let send_cloud = |tx: &mut Session, from_seq: u16| {
        for i in from_seq..from_seq + N {
            let mut p = rtp(i, 0);
            p.resize(256, 0);
            let n = tx.protect(&mut p, 172).unwrap();
            cloud.rtp.send_to(&p[..n], cloud.sbc_media).unwrap();
            pace(i);
        }
    };
    send_cloud(&mut tx, 0);
    let got = recv_up_to(&ua.rtp, N.into(), Duration::from_secs(5));
    assert_eq!(got.len(), usize::from(N), "{}", sbc.log());
    for (p, from) in &got {
        assert_eq!(*from, ua.sbc_media);
        let seq = u16::from_be_bytes([p[2], p[3]]);
        assert_eq!(
            &p[..],
            &rtp(seq, 0)[..],
            "tollgate decrypted the cloud's SRTP"
        );
    }

    // The carrier moves its media to port 8010 by re-INVITE: audio follows.
    let new_rtp = udp_socket(&t.c, sa(CARRIER, 8010));
    ua.cseq += 1;
    let cseq = ua.cseq;
    ua.send_in_dialog("INVITE", cseq, &CarrierUa::sdp(8010, 2));
    let (re, from) = recv_msg(&cloud.sip, "INVITE ", Duration::from_secs(5));
    assert_eq!(
        media_addr(body(&re)),
        cloud.sbc_media,
        "same port toward the cloud"
    );
    let ok = CloudUa::reply(
        &re,
        "200 OK",
        &format!("Contact: <sip:agent@{CLOUD}:5080>\r\nContent-Type: application/sdp\r\n"),
        &format!(
            "v=0\r\no=cloud 7 8 IN IP4 {CLOUD}\r\ns=-\r\nc=IN IP4 {CLOUD}\r\nt=0 0\r\n\
             m=audio 6000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{CLOUD_KEY}\r\n"
        ),
    );
    cloud.sip.send_to(ok.as_bytes(), from).unwrap();
    let (ok2, _) = recv_msg(&ua.sip, "SIP/2.0 200", Duration::from_secs(5));
    assert_eq!(
        media_addr(body(&ok2)),
        ua.sbc_media,
        "same port toward the carrier"
    );
    ua.send_in_dialog("ACK", cseq, "");
    std::thread::sleep(Duration::from_millis(200));
    send_cloud(&mut tx, N);
    let got = recv_up_to(&new_rtp, N.into(), Duration::from_secs(5));
    assert_eq!(
        got.len(),
        usize::from(N),
        "audio at the new port\n{}",
        sbc.log()
    );

    // Silence: after rtp_timeout_s (2 s) tollgate ends the call on both legs.
    let (bye_a, _) = recv_msg(&ua.sip, "BYE ", Duration::from_secs(8));
    let (bye_b, _) = recv_msg(&cloud.sip, "BYE ", Duration::from_secs(3));
    for b in [&bye_a, &bye_b] {
        assert!(
            header(b, "Reason").is_some_and(|r| r.contains("media timeout")),
            "{b}"
        );
    }
}
