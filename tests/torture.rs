//! RFC 4475 (SIP torture messages) and RFC 5118 (IPv6 torture messages): every valid message parses and
//! survives a serialize/parse round trip; every invalid one is refused with the error the RFC's text calls
//! for (400 with a named fault, or 505), answerable when it is a request that can be answered.
//! Verdicts follow the RFC sections (see tests/data/rfc4475/INDEX.md), not the files' _V/_I suffixes.

use tollgate::sip::fuzzing::summary;
use tollgate::sip::{
    ErrorKind, HeaderName, Host, Message, MessageBuilder, Method, Scheme, StartLine, error_response,
};

#[derive(Debug)]
enum Verdict {
    Valid,
    /// Refused; `bool` = answerable.
    Invalid(ErrorKind, bool),
}
use Verdict::*;

fn load(path: &str) -> Vec<u8> {
    let full = format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

const RFC4475: &[(&str, Verdict)] = &[
    // 3.1.1: valid messages.
    ("TC_WSINV", Valid),
    ("TC_INTMETH", Valid),
    ("TC_ESC01_V", Valid),
    ("TC_ESCNULL_V", Valid),
    ("TC_ESC02_V", Valid),
    ("TC_LWSDISP_V", Valid),
    ("TC_LONGREQ_V", Valid),
    ("TC_DBLREQ", Valid),
    ("TC_SEMIURI_V", Valid),
    ("TC_TRANSPORTS_V", Valid),
    ("TC_MPART01", Valid),
    ("TC_UNREASON_V", Valid),
    ("TC_NOREASON_V", Valid),
    // 3.1.2: invalid messages.
    (
        "TC_BADINV01_I",
        Invalid(ErrorKind::InvalidHeader(HeaderName::Via), true),
    ),
    ("TC_CLERR_I", Invalid(ErrorKind::BodyTruncated, true)),
    (
        "TC_NCL_I",
        Invalid(ErrorKind::InvalidHeader(HeaderName::ContentLength), true),
    ),
    (
        "TC_SCALAR02_V",
        Invalid(ErrorKind::OutOfRange(HeaderName::CSeq), true),
    ),
    // A response: never answered, dropped.
    (
        "TC_SCALARLG_V",
        Invalid(ErrorKind::OutOfRange(HeaderName::CSeq), false),
    ),
    (
        "TC_QUOTBAL_I",
        Invalid(ErrorKind::InvalidHeader(HeaderName::To), true),
    ),
    ("TC_LTGTRURI_I", Invalid(ErrorKind::BadRequestUri, true)),
    ("TC_LWSRURI_I", Invalid(ErrorKind::BadRequestUri, true)),
    // 3.1.2.9/3.1.2.10 allow either verdict; we refuse extra SP in the Request-Line.
    ("TC_LWSSTART_V", Invalid(ErrorKind::BadStartLine, true)),
    ("TC_TRWS_I", Invalid(ErrorKind::BadStartLine, true)),
    ("TC_ESCRURI_V", Invalid(ErrorKind::BadRequestUri, true)),
    (
        "TC_BADDATE_V",
        Invalid(ErrorKind::InvalidHeader(HeaderName::Date), true),
    ),
    (
        "TC_REGBADCT_I",
        Invalid(ErrorKind::InvalidHeader(HeaderName::Contact), true),
    ),
    (
        "TC_BADASPEC_I",
        Invalid(ErrorKind::InvalidHeader(HeaderName::To), true),
    ),
    (
        "TC_BADDN_I",
        Invalid(ErrorKind::InvalidHeader(HeaderName::From), true),
    ),
    (
        "TC_BADVERS_V",
        Invalid(ErrorKind::VersionNotSupported, true),
    ),
    (
        "TC_MISMATCH01_V",
        Invalid(ErrorKind::CSeqMethodMismatch, true),
    ),
    (
        "TC_MISMATCH02_V",
        Invalid(ErrorKind::CSeqMethodMismatch, true),
    ),
    ("TC_BIGCODE_V", Invalid(ErrorKind::BadStatusCode, false)),
    // 3.2: transaction identifier without the magic cookie: parses, the element handles it.
    ("TC_BADBRANCH_V", Valid),
    // 3.3: application-layer semantics.
    (
        "TC_INSUF_I",
        Invalid(ErrorKind::MissingHeader(HeaderName::From), true),
    ),
    ("TC_UNKSCM_V", Valid),
    ("TC_NOVELSC_V", Valid),
    ("TC_UNKSM2_V", Valid),
    ("TC_BEXT01_V", Valid),
    ("TC_INVUT_V", Valid),
    ("TC_REGAUT01_V", Valid),
    (
        "TC_MULTI01_I",
        Invalid(ErrorKind::DuplicateHeader(HeaderName::CSeq), true),
    ),
    (
        "TC_MCL01_I",
        Invalid(ErrorKind::DuplicateHeader(HeaderName::ContentLength), true),
    ),
    ("TC_BCAST_V", Valid),
    ("TC_ZEROMF_V", Valid),
    ("TC_CPARAM01_V", Valid),
    ("TC_CPARAM02_V", Valid),
    ("TC_REGESCRT_V", Valid),
    ("TC_SDP01_V", Valid),
    // 3.4.1: RFC 2543 syntax (no branch, no Max-Forwards, no Content-Length) is accepted.
    ("TC_INV2543_I", Valid),
    // Not in RFC 4475 (LibSip extra): no SIP-Version in the Request-Line, nothing to answer.
    ("TC_TEST_I", Invalid(ErrorKind::BadStartLine, false)),
];

const RFC5118: &[(&str, Verdict)] = &[
    ("4.1_ipv6-good.sip", Valid),
    (
        "4.2_ipv6-bad-INVALID.sip",
        Invalid(ErrorKind::BadRequestUri, true),
    ),
    ("4.3_port-ambiguous.sip", Valid),
    ("4.4_port-unambiguous.sip", Valid),
    ("4.5a_via-received-bracketed.sip", Valid),
    ("4.5b_via-received-bare.sip", Valid),
    ("4.6_ipv6-in-sdp.sip", Valid),
    ("4.7_mult-ip-in-header.sip", Valid),
    ("4.9_ipv4-mapped.sip", Valid),
    (
        "4.10a_3-colons.sip",
        Invalid(ErrorKind::BadRequestUri, true),
    ),
    ("4.10b_2-colons.sip", Valid),
];

fn check(path: &str, verdict: &Verdict) -> Result<(), String> {
    let data = load(path);
    match (Message::parse(data.as_slice()), verdict) {
        (Ok(m), Valid) => {
            let mut out = Vec::new();
            m.write_to(&mut out);
            let again = Message::parse(out.as_slice())
                .map_err(|e| format!("re-serialized message refused: {e}"))?;
            if summary(&m) != summary(&again) {
                return Err(format!(
                    "round trip differs:\n{}\n---\n{}",
                    summary(&m),
                    summary(&again)
                ));
            }
            if m.header_count() != again.header_count() {
                return Err("header count changed".into());
            }
            Ok(())
        }
        (Err(e), Invalid(kind, answerable)) => {
            if e.kind != *kind || e.answerable != *answerable {
                return Err(format!(
                    "refused with {e:?}, expected {kind:?} answerable={answerable}"
                ));
            }
            let mut out = Vec::new();
            let built = error_response(&data, &e, Some(b"sbc1"), &mut out);
            if built != *answerable {
                return Err(format!("error_response returned {built}"));
            }
            if built {
                // The answer echoes the request's (possibly faulty) headers, so only its framing is checked.
                let r = Message::frame_only(out.as_slice()).map_err(|e| {
                    format!(
                        "error answer does not frame ({e}): {}",
                        String::from_utf8_lossy(&out)
                    )
                })?;
                if r.headers()
                    .find(|h| h.name == HeaderName::Via)
                    .map(|h| h.value)
                    != Message::frame_only(data.as_slice())
                        .unwrap()
                        .header(HeaderName::Via)
                {
                    return Err("error answer lost the top Via".into());
                }
                if r.status() != Some(e.status_code())
                    || r.reason() != Some(e.reason_phrase().as_bytes())
                {
                    return Err("error answer has the wrong status line".into());
                }
            }
            Ok(())
        }
        (Ok(_), Invalid(kind, _)) => Err(format!("accepted, expected {kind:?}")),
        (Err(e), Valid) => Err(format!("refused: {e:?} ({e})")),
    }
}

fn run(dir: &str, table: &[(&str, Verdict)], suffix: &str) {
    let mut failures = Vec::new();
    for (name, verdict) in table {
        let path = format!("{dir}/{name}{suffix}");
        if let Err(why) = check(&path, verdict) {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "failing messages:\n{}",
        failures.join("\n")
    );
}

#[test]
fn rfc4475_every_message() {
    // Every file in the directory has a verdict.
    let listed = std::fs::read_dir(format!("{}/tests/data/rfc4475", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "dat")
        })
        .count();
    assert_eq!(listed, RFC4475.len());
    run("rfc4475", RFC4475, ".dat");
}

#[test]
fn rfc5118_every_message() {
    run("rfc5118", RFC5118, "");
}

fn parse_file(path: &str) -> Message<Vec<u8>> {
    Message::parse(load(path)).unwrap()
}

#[test]
fn wsinv_values() {
    let m = parse_file("rfc4475/TC_WSINV.dat");
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(m.to().unwrap().tag(), Some(&b"1918181833n"[..]));
    let from = m.from().unwrap();
    assert_eq!(from.tag(), Some(&b"98asjd8"[..]));
    assert_eq!(from.display, Some(&b"J Rosenberg \\\\\\\""[..]));
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.branch(), Some(&b"390skdjuw"[..]));
    assert_eq!(m.from_tag(), Some(&b"98asjd8"[..]));
    assert_eq!(m.to_tag(), Some(&b"1918181833n"[..]));
    assert_eq!(m.cseq().seq, 9);
    assert_eq!(m.cseq().method, Method::Invite);
    let branches: Vec<_> = m.vias().map(|v| v.branch().unwrap()).collect();
    assert_eq!(
        branches,
        [&b"390skdjuw"[..], b"z9hG4bK9ikj8", b"z9hG4bK30239"]
    );
    assert_eq!(m.vias().nth(1).unwrap().transport, b"TCP");
    assert_eq!(m.call_id(), b"wsinv.ndaksdj@192.0.2.1");
    assert_eq!(m.content_length(), Some(150));
    assert_eq!(m.body().len(), 150);
    assert_eq!(m.header(HeaderName::Subject), Some(&b""[..]));
    assert_eq!(
        m.header_by_name(b"newfangledheader"),
        Some(&b"newfangled value\r\n continued newfangled value"[..])
    );
    let c = m.contacts().next().unwrap();
    assert_eq!(c.display, Some(&b"Quoted string \\\"\\\""[..]));
    assert_eq!(c.param(b"q"), Some(Some(&b"0.33"[..])));
    assert_eq!(m.routes().next().unwrap().uri.param(b"lr"), Some(None));
}

#[test]
fn intmeth_and_escapes() {
    let m = parse_file("rfc4475/TC_INTMETH.dat");
    assert_eq!(
        m.method(),
        Some(Method::Extension(
            b"!interesting-Method0123456789_*+`.%indeed'~"
        ))
    );
    let uri = m.request_uri().unwrap();
    assert_eq!(
        uri.user,
        Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
    );
    assert_eq!(
        uri.password,
        Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
    );
    assert_eq!(m.call_id(), b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert_eq!(
        m.top_via().unwrap().branch(),
        Some(&b"z9hG4bK-.!%66*_+`'~"[..])
    );

    let m = parse_file("rfc4475/TC_ESC02_V.dat");
    assert_eq!(m.method(), Some(Method::Extension(b"RE%47IST%45R")));
    // C%6Fntact is not Contact: it is an unknown header, carried as is.
    assert_eq!(m.contacts().count(), 2);
    assert_eq!(
        m.header_by_name(b"C%6Fntact"),
        Some(&b"<sip:alias2@host2.example.com>"[..])
    );
}

#[test]
fn dblreq_ignores_trailing_message() {
    let data = load("rfc4475/TC_DBLREQ.dat");
    let m = Message::parse(data.as_slice()).unwrap();
    assert_eq!(m.method(), Some(Method::Register));
    assert!(m.body().is_empty());
    assert!(m.as_bytes().len() < data.len());
}

#[test]
fn unknown_schemes_and_reason_phrases() {
    let m = parse_file("rfc4475/TC_UNKSCM_V.dat");
    assert_eq!(m.request_uri().unwrap().scheme, Scheme::Other);
    let m = parse_file("rfc4475/TC_UNKSM2_V.dat");
    assert_eq!(m.to().unwrap().uri.scheme_raw, b"isbn");
    assert_eq!(m.from().unwrap().uri.scheme_raw, b"http");
    let m = parse_file("rfc4475/TC_NOREASON_V.dat");
    assert!(matches!(
        m.start_line(),
        StartLine::Response {
            code: 100,
            reason: b""
        }
    ));
    let m = parse_file("rfc4475/TC_BCAST_V.dat");
    assert_eq!(
        m.vias().nth(1).unwrap().host,
        Host::V4([255, 255, 255, 255].into())
    );
    let m = parse_file("rfc4475/TC_INV2543_I.dat");
    assert!(m.top_via().unwrap().branch().is_none());
    assert_eq!(m.max_forwards(), None);
    assert_eq!(
        m.body().len(),
        load("rfc4475/TC_INV2543_I.dat").len() - m.body_offset_for_test()
    );
}

trait BodyOffset {
    fn body_offset_for_test(&self) -> usize;
}
impl BodyOffset for Message<Vec<u8>> {
    fn body_offset_for_test(&self) -> usize {
        self.as_bytes().len() - self.body().len()
    }
}

#[test]
fn ipv6_values() {
    let m = parse_file("rfc5118/4.5a_via-received-bracketed.sip");
    assert_eq!(
        m.top_via().unwrap().received(),
        Some("2001:db8::9:255".parse().unwrap())
    );
    let m = parse_file("rfc5118/4.5b_via-received-bare.sip");
    assert_eq!(
        m.top_via().unwrap().received(),
        Some("2001:db8::9:255".parse().unwrap())
    );
    let m = parse_file("rfc5118/4.7_mult-ip-in-header.sip");
    let v: Vec<_> = m.vias().map(|v| (v.host, v.port)).collect();
    assert_eq!(
        v[0],
        (Host::V6("2001:db8::9:1".parse().unwrap()), Some(6050))
    );
    assert_eq!(v[1], (Host::V4([192, 0, 2, 1].into()), None));
    let m = parse_file("rfc5118/4.3_port-ambiguous.sip");
    let u = m.request_uri().unwrap();
    assert_eq!(u.host, Some(Host::V6("2001:db8::10:5070".parse().unwrap())));
    assert_eq!(u.port, None);
    let m = parse_file("rfc5118/4.4_port-unambiguous.sip");
    assert_eq!(m.request_uri().unwrap().port, Some(5070));
}

#[test]
fn reply_builder_copies_dialog_headers() {
    let m = parse_file("rfc4475/TC_TRANSPORTS_V.dat");
    let mut out = Vec::new();
    let mut b = MessageBuilder::reply_to(&mut out, &m, 200, b"OK", Some(b"xyz"));
    b.raw_header(b"X-Trace", b"1");
    let bytes = b.finish(b"").to_vec();
    let r = Message::parse(bytes.as_slice()).unwrap();
    assert_eq!(r.status(), Some(200));
    assert_eq!(r.vias().count(), 5);
    assert_eq!(r.to().unwrap().tag(), Some(&b"xyz"[..]));
    assert_eq!(r.from().unwrap().tag(), m.from().unwrap().tag());
    assert_eq!(r.call_id(), m.call_id());
    assert_eq!(r.cseq(), m.cseq());
    assert_eq!(r.header_by_name(b"x-trace"), Some(&b"1"[..]));
    assert_eq!(r.content_length(), Some(0));
}
