//! Message-level behaviour: compact forms, folding, bare LF, repeated and comma-joined headers, owned copies,
//! the builder, and the stream framer (split at every offset, glued messages, keepalives).

use bytes::Bytes;
use tollgate::sip::{
    ErrorKind, Frame, HeaderName, MAX_HEADERS, Message, MessageBuilder, Method, OwnedMessage,
    StreamFramer,
};

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
t: Bob <sip:bob@biloxi.example.com>\r\n\
f: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
m: <sip:alice@pc33.atlanta.example.com>\r\n\
k: 100rel, timer\r\n\
X-Custom:   keep  me  \r\n\
c: application/sdp\r\n\
l: 4\r\n\
\r\n\
v=0\n";

#[test]
fn compact_forms_resolve_to_long_names() {
    let m = Message::parse(INVITE).unwrap();
    assert_eq!(
        m.top_via().unwrap().branch(),
        Some(&b"z9hG4bK776asdhds"[..])
    );
    assert_eq!(m.top_via().unwrap().rport(), Some(None));
    assert_eq!(m.to().unwrap().display, Some(&b"Bob"[..]));
    assert_eq!(m.from().unwrap().tag(), Some(&b"1928301774"[..]));
    assert_eq!(m.call_id(), b"a84b4c76e66710@pc33.atlanta.example.com");
    assert_eq!(m.contacts().count(), 1);
    assert_eq!(
        m.tokens(HeaderName::Supported).collect::<Vec<_>>(),
        [&b"100rel"[..], b"timer"]
    );
    assert!(m.content_type().unwrap().is(b"application", b"sdp"));
    assert_eq!(m.body(), b"v=0\n");
    assert_eq!(m.header_by_name(b"x-custom"), Some(&b"keep  me"[..]));
}

#[test]
fn bare_lf_and_folding() {
    let msg = b"OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\n ;branch=z9hG4bK1\nFrom: <sip:x@y>\n\t;tag=1\nTo: <sip:a@b>\nCall-ID: 1\nCSeq: 1\n OPTIONS\nContent-Length: 0\n\n";
    let m = Message::parse(&msg[..]).unwrap();
    assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bK1"[..]));
    assert_eq!(m.from().unwrap().tag(), Some(&b"1"[..]));
    assert_eq!(m.cseq().method, Method::Options);
    let mut out = Vec::new();
    m.write_to(&mut out);
    let again = Message::parse(out.as_slice()).unwrap();
    assert_eq!(again.from().unwrap().tag(), Some(&b"1"[..]));
}

#[test]
fn repeated_and_comma_joined_vias_and_routes() {
    let msg = b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b:5070;branch=z9hG4bK2\r\nVia: SIP/2.0/TLS [2001:db8::1];branch=z9hG4bK3;received=192.0.2.1\r\nRoute: <sip:p1;lr>, <sip:p2;lr>\r\nRoute: <sip:p3;lr>\r\nRecord-Route: <sip:rr1;lr>,<sip:rr2;lr>\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    let m = Message::parse(&msg[..]).unwrap();
    let vias: Vec<_> = m
        .vias()
        .map(|v| (v.transport, v.port, v.branch().unwrap()))
        .collect();
    assert_eq!(
        vias,
        [
            (&b"UDP"[..], None, &b"z9hG4bK1"[..]),
            (b"TCP", Some(5070), b"z9hG4bK2"),
            (b"TLS", None, b"z9hG4bK3")
        ]
    );
    assert_eq!(
        m.vias().nth(2).unwrap().received(),
        Some([192, 0, 2, 1].into())
    );
    assert_eq!(m.routes().count(), 3);
    assert_eq!(m.record_routes().count(), 2);
}

#[test]
fn semantic_errors() {
    let base = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n";
    let cases: &[(&str, ErrorKind)] = &[
        (
            "Max-Forwards: 256\r\n",
            ErrorKind::OutOfRange(HeaderName::MaxForwards),
        ),
        (
            "Expires: 4294967296\r\n",
            ErrorKind::OutOfRange(HeaderName::Expires),
        ),
        ("Content-Length: 5\r\n", ErrorKind::BodyTruncated),
        (
            "Content-Type: sdp\r\n",
            ErrorKind::InvalidHeader(HeaderName::ContentType),
        ),
        (
            "To: <sip:c@d>\r\n",
            ErrorKind::DuplicateHeader(HeaderName::To),
        ),
    ];
    for (extra, want) in cases {
        let msg = format!("{base}{extra}\r\n");
        let e = Message::parse(msg.as_bytes()).unwrap_err();
        assert_eq!(e.kind, *want, "{extra}");
        assert!(e.answerable);
        assert_eq!(e.status_code(), 400);
    }
    let e = Message::parse(&b"OPTIONS sip:a@b SIP/2.0\r\nFrom: <sip:x@y>;tag=1\r\n\r\n"[..])
        .unwrap_err();
    assert!(!e.answerable, "no Via: nowhere to send an answer");
    assert_eq!(e.reason_phrase(), "Missing Via");
    let e = Message::parse(&b"SIP/2.0 99 Low\r\n\r\n"[..]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadStatusCode);
}

#[test]
fn too_many_headers_is_typed() {
    let mut msg = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        msg.extend_from_slice(format!("X-H{i}: {i}\r\n").as_bytes());
    }
    msg.extend_from_slice(b"\r\n");
    assert_eq!(
        Message::parse(msg.as_slice()).unwrap_err().kind,
        ErrorKind::TooManyHeaders
    );
}

#[test]
fn owned_message_outlives_buffer() {
    let owned: OwnedMessage = {
        let buf = INVITE.to_vec();
        Message::parse(buf.as_slice()).unwrap().to_owned_message()
    };
    assert_eq!(owned.call_id(), b"a84b4c76e66710@pc33.atlanta.example.com");
    let from_bytes = Message::parse(Bytes::from_static(INVITE)).unwrap();
    assert_eq!(from_bytes.cseq(), owned.cseq());
}

#[test]
fn builder_request_with_computed_length() {
    let mut out = Vec::new();
    let mut b = MessageBuilder::request(&mut out, Method::Invite, b"sip:bob@example.com");
    b.header(HeaderName::Via, b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc")
        .header_u64(HeaderName::MaxForwards, 70)
        .header(HeaderName::From, b"<sip:sbc@example.net>;tag=x1")
        .header(HeaderName::To, b"<sip:bob@example.com>")
        .header(HeaderName::CallId, b"call-1")
        .cseq(1, Method::Invite)
        .header(HeaderName::ContentType, b"application/sdp");
    let msg = b.finish(b"v=0\r\n").to_vec();
    let m = Message::parse(msg.as_slice()).unwrap();
    assert_eq!(m.content_length(), Some(5));
    assert_eq!(m.body(), b"v=0\r\n");
    assert_eq!(m.max_forwards(), Some(70));
}

fn collect(data: &[u8], split: &[usize]) -> Vec<String> {
    let mut f = StreamFramer::new();
    let mut out = Vec::new();
    let mut prev = 0;
    for &cut in split.iter().chain(std::iter::once(&data.len())) {
        f.push(&data[prev..cut]);
        prev = cut;
        while let Some(frame) = f.next_frame().unwrap() {
            out.push(match frame {
                Frame::Ping => "ping".to_string(),
                Frame::Pong => "pong".to_string(),
                Frame::Message(m) => {
                    let msg = Message::parse_stream(m).unwrap();
                    format!("{:?}", msg.cseq())
                }
            });
        }
    }
    out
}

#[test]
fn framer_glued_split_everywhere_and_keepalives() {
    let mut stream = Vec::new();
    stream.extend_from_slice(b"\r\n\r\n");
    stream.extend_from_slice(INVITE);
    stream.extend_from_slice(INVITE);
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(&INVITE.replace_all_lf());
    let want = collect(&stream, &[]);
    assert_eq!(
        want,
        [
            "ping",
            "CSeq { seq: 314159, method: Invite }",
            "CSeq { seq: 314159, method: Invite }",
            "pong",
            "CSeq { seq: 314159, method: Invite }"
        ]
    );
    for cut in 1..stream.len() {
        assert_eq!(collect(&stream, &[cut]), want, "split at {cut}");
    }
    // Byte by byte.
    let all: Vec<usize> = (1..stream.len()).collect();
    assert_eq!(collect(&stream, &all), want);
}

trait BareLf {
    fn replace_all_lf(&self) -> Vec<u8>;
}
impl BareLf for [u8] {
    fn replace_all_lf(&self) -> Vec<u8> {
        let head_end = self.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut v: Vec<u8> = self[..head_end]
            .iter()
            .copied()
            .filter(|&b| b != b'\r')
            .collect();
        v.extend_from_slice(&self[head_end..]);
        v
    }
}

#[test]
fn framer_requires_content_length() {
    let mut f = StreamFramer::new();
    f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n");
    assert_eq!(
        f.next_frame().unwrap_err().kind,
        ErrorKind::MissingContentLength
    );
    let mut f = StreamFramer::new();
    f.push(b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\nxy");
    assert_eq!(
        f.next_frame().unwrap_err().kind,
        ErrorKind::DuplicateHeader(HeaderName::ContentLength)
    );
    // Parsing a stream message also insists.
    let e = Message::parse_stream(&b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n\r\n"[..]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::MissingContentLength);
}

#[test]
fn framer_bounds_an_endless_header() {
    let mut f = StreamFramer::new();
    f.push(b"OPTIONS sip:a@b SIP/2.0\r\n");
    let line = [b'x'; 1024];
    let mut err = None;
    for _ in 0..80 {
        f.push(&line);
        match f.next_frame() {
            Ok(None) => {}
            Ok(Some(_)) => panic!("no frame expected"),
            Err(e) => {
                err = Some(e.kind);
                break;
            }
        }
    }
    assert_eq!(err, Some(ErrorKind::TooLarge));
}
