//! Memory per established call: 10,000 calls set up through the sans-IO B2BUA (INVITE, 200, ACK), the
//! transactions left to expire, then the heap still held is divided by the number of calls. Target < 8 KB.
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use tollgate::b2bua::{B2bua, Flow, LocalAddr, Transport};
use tollgate::sip::{HeaderName, Message};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const CFG: &str = r#"
[node]
name = "mem"
[[listen]]
transport = "udp"
address = "198.51.100.1:5060"
[[trunk]]
name = "carrier"
acl = ["10.0.0.0/8"]
[[trunk]]
name = "cloud"
targets = ["sip:192.0.2.1:5060"]
health = { ping_interval_s = 0 }
[[rule]]
trunk = "carrier"
match = '^\+?1?5551234567$'
replace = "+18005551234"
[[route]]
from = "carrier"
to = "cloud"
"#;

const SDP: &str = "v=0\r\no=carrier 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";

fn flow() -> Flow {
    Flow {
        transport: Transport::Udp,
        local: 0,
        conn: None,
    }
}

#[test]
fn memory_per_established_call_is_under_8k() {
    const N: usize = 10_000;
    let cfg = tollgate::config::load_str(CFG, Path::new("m.toml")).unwrap();
    let mut now = Instant::now();
    let locals = vec![LocalAddr {
        transport: Transport::Udp,
        addr: "198.51.100.1:5060".parse().unwrap(),
    }];
    let mut b = B2bua::new(Arc::new(cfg), locals, now);
    let carrier: SocketAddr = "10.0.0.1:5060".parse().unwrap();
    let cloud: SocketAddr = "192.0.2.1:5060".parse().unwrap();
    // Warm up the tables so their growth is not charged to the first calls only.
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..N {
        let invite = format!(
            "INVITE sip:15551234567@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKm{i}\r\nFrom: <sip:15557654321@10.0.0.1>;tag=f{i}\r\nTo: <sip:15551234567@198.51.100.1>\r\nCall-ID: mem-{i}@10.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:15557654321@10.0.0.1:5060>\r\nMax-Forwards: 70\r\nX-Context: agent={i}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        );
        b.on_message(now, flow(), carrier, invite.as_bytes());
        let mut b_invite = None;
        while let Some(t) = b.poll_transmit() {
            if t.bytes.starts_with(b"INVITE") {
                b_invite = Some(t.bytes);
            }
        }
        let inv = Message::parse(b_invite.expect("B-leg INVITE")).unwrap();
        let h = |n| String::from_utf8_lossy(inv.header(n).unwrap()).into_owned();
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=c{i}\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\nContact: <sip:agent@192.0.2.1>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            h(HeaderName::Via),
            h(HeaderName::From),
            h(HeaderName::To),
            h(HeaderName::CallId),
            SDP.len()
        );
        b.on_message(now, flow(), cloud, ok.as_bytes());
        let mut a_tag = String::new();
        while let Some(t) = b.poll_transmit() {
            if t.bytes.starts_with(b"SIP/2.0 200") {
                let m = Message::parse(t.bytes).unwrap();
                a_tag = String::from_utf8_lossy(m.to().unwrap().tag().unwrap()).into_owned();
            }
        }
        let ack = format!(
            "ACK sip:tollgate@198.51.100.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa{i}\r\nFrom: <sip:15557654321@10.0.0.1>;tag=f{i}\r\nTo: <sip:15551234567@198.51.100.1>;tag={a_tag}\r\nCall-ID: mem-{i}@10.0.0.1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        b.on_message(now, flow(), carrier, ack.as_bytes());
        while b.poll_transmit().is_some() {}
    }
    assert_eq!(b.active_calls(), N);
    assert_eq!(b.counters().calls_answered as usize, N);
    // Let every transaction finish (Timer L/D/K...), as in a long-held call.
    let end = now + Duration::from_secs(40);
    while let Some(t) = b.next_timeout() {
        if t > end {
            break;
        }
        now = t.max(now);
        b.on_timeout(now);
        while b.poll_transmit().is_some() {}
    }
    assert_eq!(b.active_calls(), N, "no call may drop while held");
    let held = LIVE.load(Ordering::Relaxed) - before;
    let per_call = held as f64 / N as f64;
    eprintln!("memory per established call: {per_call:.0} bytes ({N} calls, {held} bytes held)");
    assert!(per_call < 8192.0, "{per_call} bytes per call");
}
