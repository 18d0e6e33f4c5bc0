//! SIP parse (+ hot-header extraction) and parse + serialize of a carrier INVITE with SDP and of a 200 OK:
//! tollgate's zero-copy parser side by side with `ezk-sip-types` and `rsip`, plus allocations per message
//! counted by a wrapping global allocator.
//!
//! `cargo bench --bench sip_parse -- --warm-up-time 1 --measurement-time 3`

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[path = "support/sip_invite.rs"]
mod sip_invite;
use sip_invite::{SDP, invite};

fn ok200() -> Vec<u8> {
    format!(
        "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK-524287-1---c8a6e5f2b3d7a9e1;rport=5060;received=198.51.100.10\r\n\
Via: SIP/2.0/UDP 198.51.100.20:5060;received=198.51.100.20;branch=z9hG4bK2f1a.0a9c6b1e2d3f4a5b6c7d8e9f\r\n\
Record-Route: <sip:198.51.100.10;lr;ftag=as4b2c1d9e>\r\n\
Record-Route: <sip:198.51.100.20;lr;r2=on>\r\n\
To: <sip:+14155550123@sbc.example.net;user=phone>;tag=8a7b6c5d\r\n\
From: \"ACME CORP\" <sip:+12125550199@carrier.example.com;user=phone>;tag=as4b2c1d9e\r\n\
Call-ID: 3c26700d52f1-1a7e5c0f9b8d@198.51.100.20\r\n\
CSeq: 102 INVITE\r\n\
Contact: <sip:+14155550123@192.0.2.50:5060>\r\n\
Supported: timer\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Require: timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\
\r\n\
{SDP}",
        SDP.len()
    )
    .into_bytes()
}

/// tollgate: parse, then read the headers a transaction/dialog needs.
fn tollgate_parse(data: &[u8]) -> usize {
    let m = tollgate::sip::Message::parse(data).expect("valid");
    let v = m.branch().map_or(0, <[u8]>::len);
    let f = m.from_tag().map_or(0, <[u8]>::len);
    let t = m.to_tag().map_or(0, <[u8]>::len);
    v + f + t + m.call_id().len() + m.cseq().seq as usize
}

fn tollgate_roundtrip(data: &[u8], out: &mut Vec<u8>) -> usize {
    let m = tollgate::sip::Message::parse(data).expect("valid");
    let n = m.branch().map_or(0, <[u8]>::len) + m.call_id().len();
    out.clear();
    m.write_to(out);
    n + out.len()
}

mod ezk {
    use bytes::Bytes;
    use ezk_sip_types::Headers;
    use ezk_sip_types::header::typed::{CSeq, CallID, Via};
    use ezk_sip_types::msg::{Line, MessageLine, PullParser};
    use ezk_sip_types::parse::Parse;
    use ezk_sip_types::print::AppendCtx;
    use std::fmt::Write;

    pub fn parse(data: &Bytes) -> (MessageLine, Headers, usize) {
        let mut lines = PullParser::new(data, 0);
        let first = std::str::from_utf8(lines.next().unwrap().unwrap()).unwrap();
        let (_, start) = MessageLine::parse(data)(first).unwrap();
        let mut headers = Headers::new();
        for line in lines.by_ref() {
            let line = std::str::from_utf8(line.unwrap()).unwrap();
            let (_, line) = Line::parse(data, line).unwrap();
            headers.insert(line.name, line.value);
        }
        let head_end = lines.head_end();
        (start, headers, head_end)
    }

    pub fn parse_hot(data: &Bytes) -> usize {
        let (_, headers, _) = parse(data);
        let call_id: CallID = headers.get_named().unwrap();
        let cseq: CSeq = headers.get_named().unwrap();
        let via: Via = headers.get_named().unwrap();
        call_id.0.len() + cseq.cseq as usize + via.params.get_val("branch").map_or(0, |b| b.len())
    }

    pub fn roundtrip(data: &Bytes, out: &mut String) -> usize {
        let (start, headers, head_end) = parse(data);
        let via: Via = headers.get_named().unwrap();
        out.clear();
        let _ = write!(out, "{}\r\n", start.default_print_ctx());
        for (name, value) in headers.iter() {
            let _ = write!(out, "{}: {value}\r\n", name.as_print_str());
        }
        out.push_str("\r\n");
        out.push_str(std::str::from_utf8(&data[head_end..]).unwrap());
        out.len() + via.params.get_val("branch").map_or(0, |b| b.len())
    }
}

mod rsip_impl {
    use rsip::prelude::*;

    pub fn parse_hot(data: &[u8]) -> usize {
        let m = rsip::SipMessage::try_from(data).unwrap();
        let via = m.via_header().unwrap().typed().unwrap();
        let f = m
            .from_header()
            .unwrap()
            .tag()
            .unwrap()
            .map_or(0, |t| t.value().len());
        let t = m
            .to_header()
            .unwrap()
            .tag()
            .unwrap()
            .map_or(0, |t| t.value().len());
        let c = m.call_id_header().unwrap().value().len();
        let s = m.cseq_header().unwrap().typed().unwrap().seq as usize;
        via.branch().map_or(0, |b| b.value().len()) + f + t + c + s
    }

    pub fn roundtrip(data: &[u8]) -> usize {
        let m = rsip::SipMessage::try_from(data).unwrap();
        let b = m
            .via_header()
            .unwrap()
            .typed()
            .unwrap()
            .branch()
            .map_or(0, |b| b.value().len());
        m.to_string().len() + b
    }
}

fn allocs_per_msg(f: &mut dyn FnMut() -> usize) -> f64 {
    const N: usize = 2000;
    let mut sink = 0;
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..N {
        sink += f();
    }
    black_box(sink);
    (ALLOCS.load(Ordering::Relaxed) - before) as f64 / N as f64
}

fn bench(c: &mut Criterion) {
    for (label, msg) in [("invite", invite()), ("200ok", ok200())] {
        let bytes = bytes::Bytes::from(msg.clone());
        let mut out = Vec::with_capacity(4096);
        let mut sout = String::with_capacity(4096);
        eprintln!("{label}: {} bytes", msg.len());
        let rows: [(&str, f64); 6] = [
            (
                "tollgate parse+hot",
                allocs_per_msg(&mut || tollgate_parse(&msg)),
            ),
            (
                "tollgate parse+serialize",
                allocs_per_msg(&mut || tollgate_roundtrip(&msg, &mut out)),
            ),
            (
                "ezk-sip-types parse+hot",
                allocs_per_msg(&mut || ezk::parse_hot(&bytes)),
            ),
            (
                "ezk-sip-types parse+serialize",
                allocs_per_msg(&mut || ezk::roundtrip(&bytes, &mut sout)),
            ),
            (
                "rsip parse+hot",
                allocs_per_msg(&mut || rsip_impl::parse_hot(&msg)),
            ),
            (
                "rsip parse+serialize",
                allocs_per_msg(&mut || rsip_impl::roundtrip(&msg)),
            ),
        ];
        for (name, a) in rows {
            eprintln!("allocs/msg {label} {name}: {a:.1}");
        }

        let mut g = c.benchmark_group(format!("sip_{label}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("tollgate", "parse+hot"), |b| {
            b.iter(|| tollgate_parse(black_box(&msg)))
        });
        g.bench_function(BenchmarkId::new("tollgate", "parse+serialize"), |b| {
            b.iter(|| tollgate_roundtrip(black_box(&msg), &mut out))
        });
        g.bench_function(BenchmarkId::new("ezk-sip-types", "parse+hot"), |b| {
            b.iter(|| ezk::parse_hot(black_box(&bytes)))
        });
        g.bench_function(BenchmarkId::new("ezk-sip-types", "parse+serialize"), |b| {
            b.iter(|| ezk::roundtrip(black_box(&bytes), &mut sout))
        });
        g.bench_function(BenchmarkId::new("rsip", "parse+hot"), |b| {
            b.iter(|| rsip_impl::parse_hot(black_box(&msg)))
        });
        g.bench_function(BenchmarkId::new("rsip", "parse+serialize"), |b| {
            b.iter(|| rsip_impl::roundtrip(black_box(&msg)))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
