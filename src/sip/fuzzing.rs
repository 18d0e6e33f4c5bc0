//! Checks shared by the `fuzz/` targets and the stable smoke test (`tests/fuzz_smoke.rs`). They panic on a
//! property violation, which is how a fuzzer learns of it; the parser itself never panics.

use super::builder::error_response;
use super::framer::{Frame, StreamFramer};
use super::message::Message;

/// What must survive a serialize/parse round trip, rendered for comparison.
pub fn summary<B: AsRef<[u8]>>(m: &Message<B>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{:?}", m.start_line());
    for h in m.headers() {
        let _ = writeln!(
            s,
            "{:?} {:?} {:?}",
            h.name,
            String::from_utf8_lossy(h.raw_name),
            String::from_utf8_lossy(h.value)
        );
    }
    let vias: Vec<_> = m
        .vias()
        .map(|v| (v.transport, v.host, v.port, v.branch()))
        .collect();
    let _ = write!(
        s,
        "vias={vias:?}\nfrom={:?}\nto={:?}\nhot={:?}\ncall-id={:?}\ncseq={:?}\nmf={:?}\ncl={:?}\nbody={:?}\n",
        m.from().map(|f| (f.uri.raw, f.tag())),
        m.to().map(|t| (t.uri.raw, t.tag())),
        (m.branch(), m.from_tag(), m.to_tag()),
        String::from_utf8_lossy(m.call_id()),
        m.cseq(),
        m.max_forwards(),
        m.content_length(),
        String::from_utf8_lossy(m.body()),
    );
    s
}

/// Parse; if accepted, serialize and parse again: the result must be accepted and equal. If refused as
/// answerable, the error answer must build and parse as a response.
pub fn check_parse(data: &[u8]) {
    match Message::parse(data) {
        Ok(m) => {
            // The values cached at parse time agree with the lazy parsers.
            assert_eq!(m.branch(), m.top_via().and_then(|v| v.branch()));
            assert_eq!(m.from_tag(), m.from().and_then(|f| f.tag()));
            assert_eq!(m.to_tag(), m.to().and_then(|t| t.tag()));
            let mut out = Vec::with_capacity(data.len() + 64);
            m.write_to(&mut out);
            let again = match Message::parse(out.as_slice()) {
                Ok(a) => a,
                Err(e) => panic!(
                    "re-serialized message refused: {e}\n{}",
                    String::from_utf8_lossy(&out)
                ),
            };
            assert_eq!(
                summary(&m),
                summary(&again),
                "round trip changed the message"
            );
            let owned = m.to_owned_message();
            assert_eq!(summary(&m), summary(&owned), "owned copy differs");
        }
        Err(e) => {
            let mut out = Vec::new();
            if error_response(data, &e, Some(b"fuzz"), &mut out) {
                let r = Message::frame_only(out.as_slice());
                assert!(
                    r.is_ok(),
                    "error answer does not frame: {:?}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }
}

/// Feed the same bytes whole and in chunks (sizes taken from the data): the frames must be the same.
pub fn check_framer(data: &[u8]) {
    let whole = frames(data, &[data.len().max(1)]);
    let sizes: Vec<usize> = data
        .iter()
        .take(16)
        .map(|&b| usize::from(b % 17) + 1)
        .collect();
    let chunked = frames(data, if sizes.is_empty() { &[1] } else { &sizes });
    assert_eq!(
        whole, chunked,
        "framing depends on how the stream was split"
    );
}

/// Frames found in `data` delivered in chunks of the given sizes (cycled), with each message parsed.
pub fn frames(data: &[u8], sizes: &[usize]) -> Vec<String> {
    let mut f = StreamFramer::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = sizes.get(i % sizes.len()).copied().unwrap_or(1).max(1);
        i += 1;
        let end = (pos + n).min(data.len());
        f.push(data.get(pos..end).unwrap_or_default());
        pos = end;
        loop {
            match f.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Ping)) => out.push("ping".to_string()),
                Ok(Some(Frame::Pong)) => out.push("pong".to_string()),
                Ok(Some(Frame::Message(m))) => out.push(match Message::parse_stream(m) {
                    Ok(msg) => format!("msg {}", summary(&msg)),
                    Err(e) => format!("bad {e} {}", m.len()),
                }),
                Err(e) => {
                    out.push(format!("error {e}"));
                    return out;
                }
            }
        }
    }
    out.push(format!("left {}", f.buffered()));
    out
}

/// Call-ID, CSeq number, CSeq method, top Via branch.
pub type HotFields = (Vec<u8>, u32, Vec<u8>, Option<Vec<u8>>);

/// The fields the differential target compares against another parser: Call-ID, CSeq number and method,
/// top Via branch.
pub fn hot_fields(data: &[u8]) -> Option<HotFields> {
    let m = Message::parse(data).ok()?;
    let cseq = m.cseq();
    Some((
        m.call_id().to_vec(),
        cseq.seq,
        cseq.method.as_bytes().to_vec(),
        m.branch().map(<[u8]>::to_vec),
    ))
}
