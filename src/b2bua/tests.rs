//! Call flows through the sans-IO B2BUA: bytes in from a carrier (10.0.0.1) or the cloud (192.0.2.x), bytes
//! out asserted by destination and content. The clock is simulated.
use super::*;
use crate::config::load_str;
use std::path::Path;

const CARRIER: &str = "10.0.0.1:5060";
const CLOUD1: &str = "192.0.2.1:5060";
const CLOUD2: &str = "192.0.2.2:5060";
const LOCAL: &str = "198.51.100.1:5060";

const CFG: &str = r#"
[node]
name = "sbc"
[[listen]]
transport = "udp"
address = "198.51.100.1:5060"
[[trunk]]
name = "carrier"
acl = ["10.0.0.0/8"]
targets = ["sip:10.0.0.1:5060"]
health = { ping_interval_s = 0 }
credentials = { username = "tg", password = "secret" }
session_timer = { enabled = false }
[[trunk]]
name = "cloud"
targets = ["sip:192.0.2.1:5060", "sip:192.0.2.2:5060"]
health = { ping_interval_s = 0 }
original_to_header = "X-Original-To"
session_timer = { enabled = false }
headers = { allow = ["X-Context", "X-Drop"], rules = [{ action = "remove", name = "X-Drop" }, { action = "add", name = "X-Trunk", value = "${trunk}" }] }
[[rule]]
trunk = "carrier"
match = '^\+?1?5551234567$'
replace = "+18005551234"
[[route]]
from = "carrier"
to = "cloud"
number = '^\+1800'
[[route]]
from = "cloud"
to = "carrier"
"#;

struct H {
    b: B2bua,
    now: Instant,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn flow() -> Flow {
    Flow {
        transport: Transport::Udp,
        local: 0,
        conn: None,
    }
}

impl H {
    fn new(cfg: &str) -> H {
        let c = load_str(cfg, Path::new("t.toml")).unwrap();
        let now = Instant::now();
        let b = B2bua::new(
            Arc::new(c),
            vec![LocalAddr {
                transport: Transport::Udp,
                addr: addr(LOCAL),
            }],
            now,
        );
        H { b, now }
    }

    fn feed(&mut self, from: &str, text: &str) -> Vec<(SocketAddr, String)> {
        let text = fix_len(text);
        self.b
            .on_message(self.now, flow(), addr(from), text.as_bytes());
        self.sent()
    }

    fn sent(&mut self) -> Vec<(SocketAddr, String)> {
        let mut v = Vec::new();
        while let Some(t) = self.b.poll_transmit() {
            v.push((t.dest, String::from_utf8(t.bytes.to_vec()).unwrap()));
        }
        v
    }

    fn advance(&mut self, d: Duration) -> Vec<(SocketAddr, String)> {
        let end = self.now + d;
        let mut out = Vec::new();
        while let Some(t) = self.b.next_timeout() {
            if t > end {
                break;
            }
            self.now = t.max(self.now);
            self.b.on_timeout(self.now);
            out.extend(self.sent());
        }
        self.now = end;
        out
    }
}

/// Writes the right Content-Length and CRLF line ends into a test message written with `\n`.
fn fix_len(text: &str) -> String {
    let text = text.trim_start().replace("\r\n", "\n");
    let mut out = String::new();
    let mut lines = text.split('\n');
    for line in lines.by_ref() {
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    let body: Vec<&str> = lines.collect();
    let body = body.join("\r\n");
    let body = body.trim_matches([' ']);
    out.push_str(&format!("Content-Length: {}\r\n\r\n{}", body.len(), body));
    out
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .find(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
        .map(|l| l.split_once(':').unwrap().1.trim())
}

fn status(msg: &str) -> u16 {
    msg.strip_prefix("SIP/2.0 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn tag(v: &str) -> &str {
    v.split(";tag=")
        .nth(1)
        .map(|t| t.split(';').next().unwrap())
        .unwrap_or("")
}

const SDP: &str =
    "v=0\no=carrier 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 6000 RTP/AVP 0\n";

fn carrier_invite(branch: &str, number: &str) -> String {
    format!(
        "INVITE sip:{number}@198.51.100.1 SIP/2.0
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{branch}
        From: \"Carrier\" <sip:15557654321@10.0.0.1>;tag=ca1
        To: <sip:{number}@198.51.100.1>
        Call-ID: call-{branch}@10.0.0.1
        CSeq: 1 INVITE
        Contact: <sip:15557654321@10.0.0.1:5060>
        Max-Forwards: 70
        User-Agent: carrier-sbc/1.0
        X-Context: agent=42
        X-Drop: nope
        X-Internal-Secret: must-not-pass
        Content-Type: application/sdp

        {SDP}"
    )
}

/// A response from the cloud to a request tollgate sent, copying its dialog headers.
fn reply(
    req: &str,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &str,
    body: &str,
) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        let v = header(req, name).unwrap();
        if name == "To"
            && let Some(t) = to_tag
            && !v.contains(";tag=")
        {
            out.push_str(&format!("To: {v};tag={t}\n"));
            continue;
        }
        out.push_str(&format!("{name}: {v}\n"));
    }
    out.push_str(extra);
    if !body.is_empty() {
        out.push_str("Content-Type: application/sdp\n");
    }
    out.push('\n');
    out.push_str(body);
    out
}

fn find<'a>(sent: &'a [(SocketAddr, String)], to: &str, start: &str) -> &'a str {
    sent.iter()
        .find(|(a, m)| *a == addr(to) && m.starts_with(start))
        .map(|(_, m)| m.as_str())
        .unwrap_or_else(|| panic!("no {start:?} to {to} in {sent:#?}"))
}

/// Sets up an answered call; returns (B's INVITE as received by the cloud, A's 200).
fn answered(h: &mut H) -> (String, String) {
    let out = h.feed(CARRIER, &carrier_invite("a1", "15551234567"));
    assert_eq!(status(find(&out, CARRIER, "SIP/2.0 100")), 100);
    let inv = find(&out, CLOUD1, "INVITE ").to_owned();
    let out = h.feed(
        CLOUD1,
        &reply(
            &inv,
            180,
            "Ringing",
            Some("cl1"),
            "Contact: <sip:agent@192.0.2.1>\n",
            "",
        ),
    );
    let ringing = find(&out, CARRIER, "SIP/2.0 180");
    assert!(!tag(header(ringing, "To").unwrap()).is_empty());
    let out = h.feed(
        CLOUD1,
        &reply(
            &inv,
            200,
            "OK",
            Some("cl1"),
            "Contact: <sip:agent@192.0.2.1>\n",
            "v=0\nc=IN IP4 192.0.2.50\n",
        ),
    );
    find(&out, CLOUD1, "ACK sip:agent@192.0.2.1");
    let ok = find(&out, CARRIER, "SIP/2.0 200").to_owned();
    assert!(ok.contains("c=IN IP4 192.0.2.50"), "{ok}");
    let a_tag = tag(header(&ok, "To").unwrap()).to_owned();
    let ack = format!(
        "ACK sip:tollgate@198.51.100.1:5060 SIP/2.0
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKack1
        From: <sip:15557654321@10.0.0.1>;tag=ca1
        To: <sip:15551234567@198.51.100.1>;tag={a_tag}
        Call-ID: call-a1@10.0.0.1
        CSeq: 1 ACK
        Max-Forwards: 70

        "
    );
    assert!(h.feed(CARRIER, &ack).is_empty());
    assert_eq!(h.b.active_calls(), 1);
    (inv, ok)
}

fn in_dialog_from_a(
    method: &str,
    cseq: u32,
    a_tag: &str,
    branch: &str,
    extra: &str,
    body: &str,
) -> String {
    format!(
        "{method} sip:tollgate@198.51.100.1:5060 SIP/2.0
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{branch}
        From: <sip:15557654321@10.0.0.1>;tag=ca1
        To: <sip:15551234567@198.51.100.1>;tag={a_tag}
        Call-ID: call-a1@10.0.0.1
        CSeq: {cseq} {method}
        Max-Forwards: 70
        {extra}
        {body}"
    )
}

/// A request from the cloud inside B's dialog (tags swapped relative to the INVITE tollgate sent).
fn in_dialog_from_b(inv: &str, method: &str, cseq: u32, branch: &str, extra: &str) -> String {
    let from = header(inv, "From").unwrap();
    let to = header(inv, "To").unwrap();
    format!(
        "{method} sip:tollgate@198.51.100.1:5060 SIP/2.0
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{branch}
        From: {to};tag=cl1
        To: {from}
        Call-ID: {}
        CSeq: {cseq} {method}
        Max-Forwards: 70
        {extra}
        ",
        header(inv, "Call-ID").unwrap()
    )
}

#[test]
fn basic_call_translation_topology_hiding_and_caller_hangup() {
    let mut h = H::new(CFG);
    let (inv, ok) = answered(&mut h);
    assert!(
        inv.starts_with("INVITE sip:+18005551234@192.0.2.1:5060 SIP/2.0"),
        "{inv}"
    );
    assert!(header(&inv, "To").unwrap().contains("+18005551234@"));
    assert_eq!(header(&inv, "X-Context"), Some("agent=42"));
    assert_eq!(header(&inv, "X-Original-To"), Some("15551234567"));
    assert_eq!(header(&inv, "X-Trunk"), Some("carrier"));
    assert!(header(&inv, "X-Drop").is_none(), "removed by rule");
    assert!(!inv.contains("must-not-pass") && !inv.contains("carrier-sbc"));
    // No carrier address in any header (the SDP passes unchanged in bypass mode).
    let (head, body) = inv.split_once("\r\n\r\n").unwrap();
    assert!(!head.contains("10.0.0.1"), "{head}");
    assert!(body.contains("c=IN IP4 10.0.0.1"));
    assert_ne!(header(&inv, "Call-ID").unwrap(), "call-a1@10.0.0.1");
    assert_eq!(header(&inv, "Max-Forwards"), Some("69"));
    // The 200 to the carrier hides the cloud: our Contact only.
    let (ok_head, _) = ok.split_once("\r\n\r\n").unwrap();
    assert!(!ok_head.contains("192.0.2"), "{ok_head}");
    assert_eq!(
        header(&ok, "Contact"),
        Some("<sip:tollgate@198.51.100.1:5060>")
    );

    let a_tag = tag(header(&ok, "To").unwrap()).to_owned();
    let out = h.feed(CARRIER, &in_dialog_from_a("BYE", 2, &a_tag, "bye1", "", ""));
    assert_eq!(status(find(&out, CARRIER, "SIP/2.0 200")), 200);
    let bye = find(&out, CLOUD1, "BYE sip:agent@192.0.2.1 SIP/2.0");
    assert_eq!(tag(header(bye, "To").unwrap()), "cl1");
    assert_eq!(h.b.active_calls(), 0);
    // The cloud's 200 for the BYE is absorbed.
    let bye = bye.to_owned();
    assert!(
        h.feed(CLOUD1, &reply(&bye, 200, "OK", None, "", ""))
            .is_empty()
    );
}

#[test]
fn callee_hangup() {
    let mut h = H::new(CFG);
    let (inv, _) = answered(&mut h);
    let out = h.feed(CLOUD1, &in_dialog_from_b(&inv, "BYE", 1, "cb1", ""));
    assert_eq!(status(find(&out, CLOUD1, "SIP/2.0 200")), 200);
    let bye = find(&out, CARRIER, "BYE sip:15557654321@10.0.0.1:5060 SIP/2.0");
    assert_eq!(tag(header(bye, "To").unwrap()), "ca1");
    assert_eq!(h.b.active_calls(), 0);
}

#[test]
fn retransmitted_2xx_until_ack_then_teardown_without_ack() {
    let mut h = H::new(CFG);
    let out = h.feed(CARRIER, &carrier_invite("r1", "15551234567"));
    let inv = find(&out, CLOUD1, "INVITE ").to_owned();
    h.feed(
        CLOUD1,
        &reply(
            &inv,
            200,
            "OK",
            Some("cl1"),
            "Contact: <sip:agent@192.0.2.1>\n",
            "v=0\n",
        ),
    );
    let out = h.advance(Duration::from_millis(600));
    find(&out, CARRIER, "SIP/2.0 200");
    // No ACK ever: after 64*T1 both legs are torn down.
    let out = h.advance(Duration::from_secs(40));
    find(&out, CLOUD1, "BYE ");
    assert_eq!(h.b.active_calls(), 0);
}

#[test]
fn cancel_before_answer() {
    let mut h = H::new(CFG);
    let out = h.feed(CARRIER, &carrier_invite("c1", "15551234567"));
    let inv = find(&out, CLOUD1, "INVITE ").to_owned();
    h.feed(
        CLOUD1,
        &reply(
            &inv,
            180,
            "Ringing",
            Some("cl1"),
            "Contact: <sip:agent@192.0.2.1>\n",
            "",
        ),
    );
    let cancel = "CANCEL sip:15551234567@198.51.100.1 SIP/2.0
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKc1
        From: \"Carrier\" <sip:15557654321@10.0.0.1>;tag=ca1
        To: <sip:15551234567@198.51.100.1>
        Call-ID: call-c1@10.0.0.1
        CSeq: 1 CANCEL
        Max-Forwards: 70

        ";
    let out = h.feed(CARRIER, cancel);
    let ok = out
        .iter()
        .find(|(_, m)| m.starts_with("SIP/2.0 200") && m.contains("CANCEL"))
        .unwrap();
    assert_eq!(ok.0, addr(CARRIER));
    find(&out, CARRIER, "SIP/2.0 487");
    let bc = find(&out, CLOUD1, "CANCEL sip:+18005551234@192.0.2.1:5060").to_owned();
    assert_eq!(header(&bc, "Via"), header(&inv, "Via"));
    h.feed(CLOUD1, &reply(&bc, 200, "OK", None, "", ""));
    let out = h.feed(
        CLOUD1,
        &reply(&inv, 487, "Request Terminated", Some("cl1"), "", ""),
    );
    find(&out, CLOUD1, "ACK sip:+18005551234@192.0.2.1:5060");
    h.advance(Duration::from_secs(40));
    assert_eq!(h.b.active_calls(), 0);
}

#[test]
fn busy_is_mapped_back_and_acked() {
    let mut h = H::new(CFG);
    let out = h.feed(CARRIER, &carrier_invite("b1", "15551234567"));
    let inv = find(&out, CLOUD1, "INVITE ").to_owned();
    let out = h.feed(CLOUD1, &reply(&inv, 486, "Busy Here", Some("cl1"), "", ""));
    find(&out, CLOUD1, "ACK ");
    let busy = find(&out, CARRIER, "SIP/2.0 486 Busy Here");
    assert!(!busy.contains("192.0.2"));
    assert_eq!(h.b.active_calls(), 0);
    assert_eq!(h.b.counters().failovers, 0);
}

#[test]
fn failover_on_503_and_on_silence_then_6xx_stops() {
    let mut h = H::new(CFG);
    let out = h.feed(CARRIER, &carrier_invite("f1", "15551234567"));
    let inv = find(&out, CLOUD1, "INVITE ").to_owned();
    let out = h.feed(
        CLOUD1,
        &reply(&inv, 503, "Service Unavailable", Some("x"), "", ""),
    );
    find(&out, CLOUD1, "ACK ");
    let inv2 = find(&out, CLOUD2, "INVITE sip:+18005551234@192.0.2.2:5060").to_owned();
    assert!(
        !out.iter()
            .any(|(a, m)| *a == addr(CARRIER) && status(m) >= 200)
    );
    assert_eq!(header(&inv2, "Call-ID"), header(&inv, "Call-ID"));
    assert_ne!(header(&inv2, "Via"), header(&inv, "Via"));
    // The second target answers.
    let out = h.feed(
        CLOUD2,
        &reply(
            &inv2,
            200,
            "OK",
            Some("c2"),
            "Contact: <sip:agent@192.0.2.2>\n",
            "v=0\n",
        ),
    );
    find(&out, CARRIER, "SIP/2.0 200");
    assert_eq!(h.b.counters().failovers, 1);

    // Silence from the first target: the second is tried after target_timeout_ms (2 s default).
    let mut h = H::new(CFG);
    h.feed(CARRIER, &carrier_invite("f2", "15551234567"));
    let out = h.advance(Duration::from_millis(2100));
    let inv2 = find(&out, CLOUD2, "INVITE ").to_owned();
    // 6xx: no further target, mapped back at once.
    let out = h.feed(CLOUD2, &reply(&inv2, 603, "Decline", Some("x"), "", ""));
    find(&out, CARRIER, "SIP/2.0 603 Decline");
    assert_eq!(h.b.active_calls(), 0);

    // Every target silent: 408 to the carrier.
    let mut h = H::new(CFG);
    h.feed(CARRIER, &carrier_invite("f3", "15551234567"));
    let out = h.advance(Duration::from_millis(4500));
    find(&out, CARRIER, "SIP/2.0 408");
    assert_eq!(h.b.active_calls(), 0);
}

#[test]
fn acl_reject_and_drop_keep_no_state() {
    let mut h = H::new(CFG);
    let out = h.feed("203.0.113.5:5060", &carrier_invite("x1", "15551234567"));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0].1), 403);
    assert_eq!(h.b.counters().acl_rejected, 1);
    assert_eq!(h.b.active_calls(), 0);
    assert!(h.b.next_timeout().is_none(), "no transaction was created");

    let mut h = H::new(&format!("{CFG}\n[security]\nunauthorized = \"drop\"\n"));
    assert!(
        h.feed("203.0.113.5:5060", &carrier_invite("x2", "15551234567"))
            .is_empty()
    );
    assert_eq!(h.b.counters().acl_dropped, 1);
}

#[test]
fn source_guard_scanners_bans_and_size_caps() {
    let cfg = format!(
        "{CFG}\n[security]\nban_threshold = 3\nmax_headers = 20\nscanner_user_agents = [\"friendly-scanner\"]\n"
    );
    let mut h = H::new(&cfg);
    let scan =
        carrier_invite("s1", "15551234567").replacen("carrier-sbc/1.0", "friendly-scanner", 1);
    assert!(h.feed("203.0.113.7:5060", &scan).is_empty());
    assert_eq!(h.b.counters().guard_dropped, 1);
    // The scanner probe banned the source: even a clean request is now dropped unanswered.
    assert!(
        h.feed("203.0.113.7:5060", &carrier_invite("s2", "15551234567"))
            .is_empty()
    );
    assert_eq!(h.b.counters().guard_dropped, 2);
    // Another unknown source is still answered 403 (and counts towards its own ban).
    let out = h.feed("203.0.113.8:5060", &carrier_invite("s3", "15551234567"));
    assert_eq!(status(&out[0].1), 403);
    // A trunk peer over the header cap gets 400 and no call.
    let many: String = (0..30).map(|i| format!("\n        X-Pad{i}: x")).collect();
    let fat = carrier_invite("s4", "15551234567").replacen(
        "Max-Forwards: 70",
        &format!("Max-Forwards: 70{many}"),
        1,
    );
    let out = h.feed(CARRIER, &fat);
    assert_eq!(status(&out[0].1), 400, "{}", out[0].1);
    assert_eq!(h.b.counters().guard_rejected, 1);
    assert_eq!(h.b.active_calls(), 0);
}

#[test]
fn options_unknown_method_malformed_no_route() {
    let mut h = H::new(CFG);
    let opt = "OPTIONS sip:198.51.100.1 SIP/2.0
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKo1
        From: <sip:probe@10.0.0.1>;tag=p1
        To: <sip:198.51.100.1>
        Call-ID: opt1
        CSeq: 1 OPTIONS
        Max-Forwards: 70

        ";
    let out = h.feed(CARRIER, opt);
    assert_eq!(status(&out[0].1), 200);
    assert!(header(&out[0].1, "Allow").unwrap().contains("INVITE"));
    let out = h.feed(
        CARRIER,
        &opt.replacen("OPTIONS sip:198.51.100.1", "OPTIONS urn:x-opaque:thing", 1)
            .replace("o1", "o0"),
    );
    assert_eq!(status(&out[0].1), 416, "{}", out[0].1);
    let out = h.feed(
        CARRIER,
        &opt.replace("OPTIONS", "FOOBAR").replace("o1", "o2"),
    );
    assert_eq!(status(&out[0].1), 501);
    let bad = "INVITE sip:x@198.51.100.1 SIP/2.0
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKm1
        From: <sip:a@10.0.0.1>;tag=1
        To: <sip:x@198.51.100.1>
        Call-ID: m1
        CSeq: notanumber INVITE
        Max-Forwards: 70

        ";
    let out = h.feed(CARRIER, bad);
    assert_eq!(status(&out[0].1), 400, "{}", out[0].1);
    assert_eq!(h.b.counters().malformed_answered, 1);
    assert!(h.feed(CARRIER, "garbage\r\n\r\n").is_empty());
    assert_eq!(h.b.counters().malformed_dropped, 1);
    // A number no route matches.
    let out = h.feed(CARRIER, &carrier_invite("n1", "4930123"));
    find(&out, CARRIER, "SIP/2.0 404");
    assert_eq!(h.b.counters().no_route, 1);
}

#[test]
fn admission_limits_answer_503_with_retry_after() {
    let cfg = CFG.replace("name = \"cloud\"\n", "name = \"cloud\"\nmax_calls = 1\n");
    let mut h = H::new(&cfg);
    h.feed(CARRIER, &carrier_invite("q1", "15551234567"));
    let out = h.feed(CARRIER, &carrier_invite("q2", "15551234567"));
    let r = find(&out, CARRIER, "SIP/2.0 503");
    assert!(header(r, "Retry-After").is_some());
    assert_eq!(h.b.counters().admission_rejected, 1);

    let cfg = CFG.replace("name = \"cloud\"\n", "name = \"cloud\"\nmax_cps = 1.0\n");
    let mut h = H::new(&cfg);
    h.feed(CARRIER, &carrier_invite("p1", "15551234567"));
    let out = h.feed(CARRIER, &carrier_invite("p2", "15551234567"));
    find(&out, CARRIER, "SIP/2.0 503");
    h.advance(Duration::from_millis(1100));
    let out = h.feed(CARRIER, &carrier_invite("p3", "15551234567"));
    find(&out, CLOUD1, "INVITE ");
}

#[test]
fn reinvite_and_info_relayed_both_ways() {
    let mut h = H::new(CFG);
    let (inv, ok) = answered(&mut h);
    let a_tag = tag(header(&ok, "To").unwrap()).to_owned();
    // Hold from the carrier: re-INVITE relayed to the cloud with the new SDP.
    let out = h.feed(
        CARRIER,
        &in_dialog_from_a(
            "INVITE",
            2,
            &a_tag,
            "ri1",
            "Contact: <sip:15557654321@10.0.0.1:5060>\nContent-Type: application/sdp\n",
            "\nv=0\na=sendonly\n",
        ),
    );
    let re = find(&out, CLOUD1, "INVITE sip:agent@192.0.2.1 SIP/2.0").to_owned();
    assert!(re.contains("a=sendonly"));
    assert_eq!(header(&re, "CSeq"), Some("2 INVITE"));
    let out = h.feed(
        CLOUD1,
        &reply(
            &re,
            200,
            "OK",
            None,
            "Contact: <sip:agent@192.0.2.1>\n",
            "v=0\na=recvonly\n",
        ),
    );
    find(&out, CLOUD1, "ACK sip:agent@192.0.2.1");
    let ok2 = find(&out, CARRIER, "SIP/2.0 200");
    assert!(ok2.contains("a=recvonly"));
    // INFO from the cloud relayed to the carrier, answer relayed back.
    let info = in_dialog_from_b(
        &inv,
        "INFO",
        1,
        "inf1",
        "Content-Type: application/dtmf-relay\n",
    );
    let out = h.feed(CLOUD1, &info);
    let i = find(&out, CARRIER, "INFO sip:15557654321@10.0.0.1:5060").to_owned();
    assert_eq!(header(&i, "Content-Type"), None, "no body, no type");
    let out = h.feed(CARRIER, &reply(&i, 200, "OK", None, "", ""));
    find(&out, CLOUD1, "SIP/2.0 200");
}

#[test]
fn refer_from_cloud_is_relayed_to_carrier_with_notify_back() {
    let mut h = H::new(CFG);
    let (inv, _) = answered(&mut h);
    let refer = in_dialog_from_b(
        &inv,
        "REFER",
        1,
        "rf1",
        "Refer-To: <sip:+15550001111@carrier.example>\nReferred-By: <sip:agent@cloud>\nContact: <sip:agent@192.0.2.1>\n",
    );
    let out = h.feed(CLOUD1, &refer);
    let r = find(&out, CARRIER, "REFER sip:15557654321@10.0.0.1:5060").to_owned();
    assert_eq!(
        header(&r, "Refer-To"),
        Some("<sip:+15550001111@carrier.example>")
    );
    assert_eq!(
        header(&r, "Contact"),
        Some("<sip:tollgate@198.51.100.1:5060>")
    );
    let out = h.feed(CARRIER, &reply(&r, 202, "Accepted", None, "", ""));
    find(&out, CLOUD1, "SIP/2.0 202");
    let ok = {
        let a_tag = tag(header(&r, "From").unwrap()).to_owned();
        in_dialog_from_a(
            "NOTIFY",
            2,
            &a_tag,
            "nt1",
            "Event: refer\nSubscription-State: terminated;reason=noresource\nContact: <sip:15557654321@10.0.0.1:5060>\nContent-Type: message/sipfrag\n",
            "\nSIP/2.0 200 OK\n",
        )
    };
    let out = h.feed(CARRIER, &ok);
    let n = find(&out, CLOUD1, "NOTIFY sip:agent@192.0.2.1");
    assert_eq!(header(n, "Event"), Some("refer"));
    assert!(n.ends_with("SIP/2.0 200 OK\r\n"));
}

#[test]
fn outbound_call_answers_digest_challenge_with_trunk_credentials() {
    let mut h = H::new(CFG);
    let invite = format!(
        "INVITE sip:+15557654321@198.51.100.1 SIP/2.0
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKout1
        From: <sip:+18005551234@192.0.2.1>;tag=cl9
        To: <sip:+15557654321@198.51.100.1>
        Call-ID: out1@cloud
        CSeq: 1 INVITE
        Contact: <sip:agent@192.0.2.1>
        Max-Forwards: 70
        Content-Type: application/sdp

        {SDP}"
    );
    let out = h.feed(CLOUD1, &invite);
    let inv = find(&out, CARRIER, "INVITE sip:+15557654321@10.0.0.1:5060").to_owned();
    let ch = "Proxy-Authenticate: Digest realm=\"carrier\", nonce=\"abc\", qop=\"auth\"\n";
    let out = h.feed(
        CARRIER,
        &reply(
            &inv,
            407,
            "Proxy Authentication Required",
            Some("z"),
            ch,
            "",
        ),
    );
    find(&out, CARRIER, "ACK ");
    let inv2 = find(&out, CARRIER, "INVITE ").to_owned();
    let auth = header(&inv2, "Proxy-Authorization").unwrap();
    assert!(
        auth.starts_with("Digest username=\"tg\", realm=\"carrier\", nonce=\"abc\""),
        "{auth}"
    );
    assert_eq!(header(&inv2, "CSeq"), Some("2 INVITE"));
    assert!(
        !out.iter().any(|(a, _)| *a == addr(CLOUD1)),
        "the cloud sees nothing of the challenge"
    );
    let out = h.feed(
        CARRIER,
        &reply(
            &inv2,
            200,
            "OK",
            Some("k"),
            "Contact: <sip:x@10.0.0.1>\n",
            "v=0\n",
        ),
    );
    find(&out, CLOUD1, "SIP/2.0 200");
    assert_eq!(h.b.counters().auth_retries, 1);
}

#[test]
fn options_keepalive_marks_targets_down_and_up_and_down_targets_are_skipped() {
    let cfg = CFG.replace(
        "targets = [\"sip:192.0.2.1:5060\", \"sip:192.0.2.2:5060\"]\nhealth = { ping_interval_s = 0 }",
        "targets = [\"sip:192.0.2.1:5060\", \"sip:192.0.2.2:5060\"]\nhealth = { ping_interval_s = 5, down_after = 1, up_after = 1 }",
    );
    let mut h = H::new(&cfg);
    let out = h.advance(Duration::from_millis(10));
    let ping1 = find(&out, CLOUD1, "OPTIONS sip:192.0.2.1:5060").to_owned();
    let ping2 = find(&out, CLOUD2, "OPTIONS sip:192.0.2.2:5060").to_owned();
    h.feed(CLOUD2, &reply(&ping2, 200, "OK", Some("o"), "", ""));
    // Target 1 never answers: down after its transaction times out (64*T1).
    h.advance(Duration::from_secs(33));
    assert_eq!(h.b.target_up(1, 0), Some(false));
    assert_eq!(h.b.target_up(1, 1), Some(true));
    let out = h.feed(CARRIER, &carrier_invite("h1", "15551234567"));
    find(&out, CLOUD2, "INVITE ");
    assert!(
        !out.iter()
            .any(|(a, m)| *a == addr(CLOUD1) && m.starts_with("INVITE"))
    );
    // It answers the next ping: up again.
    let _ = ping1;
    let out = h.advance(Duration::from_secs(5));
    let p = out
        .iter()
        .rev()
        .find(|(a, m)| *a == addr(CLOUD1) && m.starts_with("OPTIONS"))
        .map(|(_, m)| m.clone())
        .expect("a new ping");
    h.feed(CLOUD1, &reply(&p, 200, "OK", Some("o"), "", ""));
    assert_eq!(h.b.target_up(1, 0), Some(true));
}

#[test]
fn session_refresh_failure_tears_down_both_legs() {
    let cfg = CFG.replace(
        "original_to_header = \"X-Original-To\"\nsession_timer = { enabled = false }",
        "original_to_header = \"X-Original-To\"\nsession_timer = { enabled = true, expires_s = 90, min_se_s = 90 }",
    );
    let mut h = H::new(&cfg);
    let (inv, _) = answered(&mut h);
    assert_eq!(header(&inv, "Session-Expires"), Some("90;refresher=uac"));
    let out = h.advance(Duration::from_secs(46));
    let up_b = find(&out, CLOUD1, "UPDATE sip:agent@192.0.2.1").to_owned();
    let up_a = find(&out, CARRIER, "UPDATE ").to_owned();
    h.feed(CARRIER, &reply(&up_a, 200, "OK", None, "", ""));
    // The cloud does not know the dialog any more.
    let out = h.feed(
        CLOUD1,
        &reply(&up_b, 481, "Call/Transaction Does Not Exist", None, "", ""),
    );
    find(&out, CARRIER, "BYE ");
    find(&out, CLOUD1, "BYE ");
    assert_eq!(h.b.active_calls(), 0);
    assert_eq!(h.b.counters().session_refresh_failed, 1);
}

#[test]
fn in_dialog_request_for_unknown_dialog_gets_481_and_retransmissions_are_absorbed() {
    let mut h = H::new(CFG);
    let out = h.feed(
        CARRIER,
        &in_dialog_from_a("BYE", 2, "nosuchtag", "u1", "", ""),
    );
    assert_eq!(status(&out[0].1), 481);
    let out = h.feed(CARRIER, &carrier_invite("d1", "15551234567"));
    assert_eq!(
        out.iter().filter(|(_, m)| m.starts_with("INVITE")).count(),
        1
    );
    let out = h.feed(CARRIER, &carrier_invite("d1", "15551234567"));
    assert!(
        out.iter().all(|(_, m)| !m.starts_with("INVITE")),
        "{out:#?}"
    );
    assert_eq!(h.b.counters().calls_started, 1);
}

#[test]
fn reload_keeps_live_call_and_refuses_removing_its_trunk() {
    let mut h = H::new(CFG);
    answered(&mut h);
    // Trunks swapped in order: the live call's indices follow the names.
    let c = load_str(CFG, Path::new("t.toml")).unwrap();
    let mut swapped = c.clone();
    swapped.trunks.reverse();
    assert!(h.b.reload(Arc::new(swapped), h.now).is_ok());
    let info = h.b.calls_info();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].inbound_trunk, "carrier");
    assert_eq!(info[0].outbound_trunk.as_deref(), Some("cloud"));
    assert_eq!(info[0].state, "answered");
    // Removing a trunk the call uses is refused and changes nothing.
    let mut fewer = c.clone();
    fewer.trunks.retain(|t| t.name != "cloud");
    assert!(h.b.reload(Arc::new(fewer), h.now).is_err());
    assert_eq!(h.b.config().trunks.len(), c.trunks.len());
    assert_eq!(h.b.active_calls(), 1);
}

#[test]
fn drain_refuses_new_invites_and_hang_up_all_byes_both_legs_with_records() {
    let mut h = H::new(CFG);
    answered(&mut h);
    h.b.start_drain();
    assert!(h.b.is_draining());
    let out = h.feed(CARRIER, &carrier_invite("d2", "15551234567"));
    let r = find(&out, CARRIER, "SIP/2.0 503");
    assert_eq!(header(r, "Retry-After"), Some("60"));
    assert_eq!(h.b.active_calls(), 1);
    h.b.hang_up_all(h.now, "drain");
    let out = h.sent();
    find(&out, CARRIER, "BYE ");
    find(&out, CLOUD1, "BYE ");
    assert_eq!(h.b.active_calls(), 0);
    let recs = h.b.take_records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].result_code, 200);
    assert_eq!(recs[0].end_reason, "drain");
    assert!(recs[0].answered_ms.is_some());
    let views = h.b.trunk_views();
    let cloud = views.iter().find(|v| v.name == "cloud").unwrap();
    assert_eq!((cloud.totals.calls, cloud.totals.answered), (1, 1));
}

// ---- runtime forwards (crate::forward) ----

fn forward(target: &str, ring: Option<u32>, fallback: bool) -> crate::forward::Forward {
    crate::forward::Forward {
        number: "+18005551234".into(),
        target: target.into(),
        trunk: "carrier".into(),
        ring_timeout_s: ring,
        caller_id: crate::forward::CallerId::Fixed("+18005550000".into()),
        fallback,
        enabled: true,
    }
}

fn with_forward(f: crate::forward::Forward) -> (H, crate::forward::ForwardTable) {
    let mut h = H::new(CFG);
    let table = crate::forward::empty_table();
    table.store(Arc::new(crate::forward::ForwardIndex::build(&[f])));
    h.b.set_forwards(table.clone());
    (h, table)
}

#[test]
fn forward_goes_to_target_through_its_trunk_and_removal_restores_the_route() {
    let (mut h, table) = with_forward(forward("+15550009999", None, false));
    let out = h.feed(CARRIER, &carrier_invite("w1", "15551234567"));
    let inv = find(&out, CARRIER, "INVITE sip:+15550009999@10.0.0.1:5060").to_owned();
    assert!(
        header(&inv, "From").unwrap().contains("+18005550000@"),
        "fixed caller ID: {inv}"
    );
    assert!(!out.iter().any(|(a, _)| *a == addr(CLOUD1)));
    let out = h.feed(
        CARRIER,
        &reply(
            &inv,
            200,
            "OK",
            Some("fw1"),
            "Contact: <sip:fwd@10.0.0.1>\n",
            "v=0\n",
        ),
    );
    find(&out, CARRIER, "ACK sip:fwd@10.0.0.1");
    let ok = out
        .iter()
        .find(|(_, m)| m.starts_with("SIP/2.0 200") && m.contains("call-w1@"))
        .expect("A answered");
    assert_eq!(ok.0, addr(CARRIER));
    assert_eq!(h.b.counters().forwarded, 1);

    // Removed: the next call takes the static route.
    table.store(Arc::new(crate::forward::ForwardIndex::default()));
    let out = h.feed(CARRIER, &carrier_invite("w2", "15551234567"));
    find(&out, CLOUD1, "INVITE sip:+18005551234@192.0.2.1:5060");
    assert_eq!(h.b.counters().forwarded, 1);
}

#[test]
fn forward_failure_falls_back_to_normal_route_or_is_answered() {
    let (mut h, _t) = with_forward(forward("+15550009999", None, true));
    let out = h.feed(CARRIER, &carrier_invite("x1", "15551234567"));
    let inv = find(&out, CARRIER, "INVITE sip:+15550009999@").to_owned();
    let out = h.feed(CARRIER, &reply(&inv, 486, "Busy Here", Some("fw"), "", ""));
    find(&out, CARRIER, "ACK sip:+15550009999@");
    let inv2 = find(&out, CLOUD1, "INVITE sip:+18005551234@192.0.2.1:5060").to_owned();
    assert_ne!(header(&inv2, "Call-ID"), header(&inv, "Call-ID"));
    assert!(
        !header(&inv2, "From").unwrap().contains("+18005550000"),
        "the normal route keeps the caller's number: {inv2}"
    );
    assert!(
        !out.iter()
            .any(|(a, m)| *a == addr(CARRIER) && m.starts_with("SIP/2.0 486"))
    );
    let out = h.feed(
        CLOUD1,
        &reply(
            &inv2,
            200,
            "OK",
            Some("c1"),
            "Contact: <sip:agent@192.0.2.1>\n",
            "v=0\n",
        ),
    );
    find(&out, CARRIER, "SIP/2.0 200");
    assert_eq!(h.b.counters().forward_fallbacks, 1);
    assert_eq!(h.b.active_calls(), 1);

    // No fallback configured: the caller hears the failure.
    let (mut h, _t) = with_forward(forward("+15550009999", None, false));
    let out = h.feed(CARRIER, &carrier_invite("x2", "15551234567"));
    let inv = find(&out, CARRIER, "INVITE sip:+15550009999@").to_owned();
    let out = h.feed(CARRIER, &reply(&inv, 486, "Busy Here", Some("fw"), "", ""));
    find(&out, CARRIER, "SIP/2.0 486 Busy Here");
    assert!(!out.iter().any(|(a, _)| *a == addr(CLOUD1)));
    assert_eq!(h.b.active_calls(), 0);
    assert_eq!(h.b.counters().forward_fallbacks, 0);
}

#[test]
fn forward_ring_timeout_cancels_then_falls_back_or_answers_480() {
    // Ringing target: CANCEL at the ring timeout, its 487 sends the call down the normal route.
    let (mut h, _t) = with_forward(forward("+15550009999", Some(1), true));
    let out = h.feed(CARRIER, &carrier_invite("r1", "15551234567"));
    let inv = find(&out, CARRIER, "INVITE sip:+15550009999@").to_owned();
    let out = h.feed(
        CARRIER,
        &reply(
            &inv,
            180,
            "Ringing",
            Some("fw"),
            "Contact: <sip:fwd@10.0.0.1>\n",
            "",
        ),
    );
    assert!(out.iter().any(|(_, m)| m.starts_with("SIP/2.0 180")));
    let out = h.advance(Duration::from_millis(1100));
    let cancel = find(&out, CARRIER, "CANCEL sip:+15550009999@").to_owned();
    h.feed(CARRIER, &reply(&cancel, 200, "OK", None, "", ""));
    let out = h.feed(
        CARRIER,
        &reply(&inv, 487, "Request Terminated", Some("fw"), "", ""),
    );
    find(&out, CLOUD1, "INVITE sip:+18005551234@192.0.2.1:5060");
    assert!(
        !out.iter()
            .any(|(a, m)| *a == addr(CARRIER) && m.starts_with("SIP/2.0 487"))
    );
    assert_eq!(h.b.counters().forward_fallbacks, 1);

    // Silent target, no fallback: 480 at the ring timeout (before the 2 s target timeout).
    let (mut h, _t) = with_forward(forward("+15550009999", Some(1), false));
    h.feed(CARRIER, &carrier_invite("r2", "15551234567"));
    let out = h.advance(Duration::from_millis(1100));
    find(&out, CARRIER, "SIP/2.0 480");
    assert_eq!(h.b.active_calls(), 0);

    // Ringing target, no fallback: CANCEL, then the caller hears 480 (not 487).
    let (mut h, _t) = with_forward(forward("+15550009999", Some(1), false));
    let out = h.feed(CARRIER, &carrier_invite("r3", "15551234567"));
    let inv = find(&out, CARRIER, "INVITE sip:+15550009999@").to_owned();
    h.feed(CARRIER, &reply(&inv, 180, "Ringing", Some("fw"), "", ""));
    let out = h.advance(Duration::from_millis(1100));
    find(&out, CARRIER, "CANCEL sip:+15550009999@");
    let out = h.feed(
        CARRIER,
        &reply(&inv, 487, "Request Terminated", Some("fw"), "", ""),
    );
    find(&out, CARRIER, "SIP/2.0 480");
    assert_eq!(h.b.active_calls(), 0);
}

#[test]
fn forward_with_unknown_trunk_or_disabled_is_ignored() {
    let mut f = forward("+15550009999", None, false);
    f.trunk = "gone".into();
    let (mut h, table) = with_forward(f);
    let out = h.feed(CARRIER, &carrier_invite("u1", "15551234567"));
    find(&out, CLOUD1, "INVITE sip:+18005551234@");
    let mut f = forward("+15550009999", None, false);
    f.enabled = false;
    table.store(Arc::new(crate::forward::ForwardIndex::build(&[f])));
    let out = h.feed(CARRIER, &carrier_invite("u2", "15551234567"));
    find(&out, CLOUD1, "INVITE sip:+18005551234@");
    assert_eq!(h.b.counters().forwarded, 0);
}

// ---- anchored media (media.rs) ----

use crate::media::flow::{FlowCmd, FlowEntry, FlowSink, FlowSinkError, FlowTag, MediaEvent};
use std::sync::Mutex;

/// Collects the flow commands the B2BUA programs.
#[derive(Clone, Default)]
struct Flows(Arc<Mutex<Vec<FlowCmd>>>);

impl FlowSink for Flows {
    fn apply(&mut self, cmd: FlowCmd) -> Result<(), FlowSinkError> {
        self.0.lock().unwrap().push(cmd);
        Ok(())
    }
}

impl Flows {
    fn take(&self) -> Vec<FlowCmd> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

const CARRIER_MEDIA: &str = "198.51.100.10";
const CLOUD_MEDIA: &str = "203.0.113.10";

fn media_cfg(cloud_srtp: &str) -> String {
    let cfg = CFG.replace(
        "[[trunk]]\nname = \"cloud\"\n",
        &format!("[[trunk]]\nname = \"cloud\"\nsrtp = {cloud_srtp}\n"),
    );
    format!(
        "{cfg}\n[media]\nmode = \"socket\"\nport_min = 40000\nport_max = 40999\nrtp_timeout_s = 30\n\
         [[media.interface]]\nname = \"eth0\"\nrole = \"carrier\"\naddress = \"{CARRIER_MEDIA}\"\n\
         [[media.interface]]\nname = \"eth1\"\nrole = \"cloud\"\naddress = \"{CLOUD_MEDIA}\"\n"
    )
}

fn anchored(cloud_srtp: &str, ports: (u16, u16)) -> (H, Flows) {
    let mut h = H::new(&media_cfg(cloud_srtp));
    let flows = Flows::default();
    let (carrier, cloud) = MediaAnchor::addrs_from_config(&h.b.config().media, addr(LOCAL).ip());
    let anchor = MediaAnchor::new(
        Box::new(flows.clone()),
        carrier,
        cloud,
        ports.0,
        ports.1,
        Duration::from_secs(30),
        h.now,
    )
    .unwrap();
    h.b.set_media(anchor);
    (h, flows)
}

const PLAIN: &str = "{ policy = \"off\" }";

/// The m=audio port of an SDP body.
fn audio_port(msg: &str) -> u16 {
    let m = msg.lines().find(|l| l.starts_with("m=audio ")).unwrap();
    m.split(' ').nth(1).unwrap().parse().unwrap()
}

fn added(cmds: &[FlowCmd]) -> Vec<FlowEntry> {
    cmds.iter()
        .filter_map(|c| match c {
            FlowCmd::Add(e) | FlowCmd::Update(e) => Some((**e).clone()),
            FlowCmd::Remove(_) => None,
        })
        .collect()
}

const CLOUD_SDP: &str =
    "v=0\no=cloud 7 7 IN IP4 192.0.2.50\ns=-\nc=IN IP4 192.0.2.50\nt=0 0\nm=audio 7000 RTP/AVP 0\n";

/// An anchored call up to A's ACK; returns (B's INVITE, A's 200).
fn anchored_call(h: &mut H, cloud_sdp: &str) -> (String, String) {
    let out = h.feed(CARRIER, &carrier_invite("a1", "15551234567"));
    let inv = find(&out, CLOUD1, "INVITE ").to_owned();
    let out = h.feed(
        CLOUD1,
        &reply(
            &inv,
            200,
            "OK",
            Some("cl1"),
            "Contact: <sip:agent@192.0.2.1>\n",
            cloud_sdp,
        ),
    );
    find(&out, CLOUD1, "ACK sip:agent@192.0.2.1");
    let ok = find(&out, CARRIER, "SIP/2.0 200").to_owned();
    (inv, ok)
}

#[test]
fn anchored_call_rewrites_both_sdps_programs_flows_and_removes_them_at_bye() {
    let (mut h, flows) = anchored(PLAIN, (40000, 40999));
    let (inv, ok) = anchored_call(&mut h, CLOUD_SDP);
    // B sees only our cloud-side media address; A only our carrier-side one.
    let (_, b_body) = inv.split_once("\r\n\r\n").unwrap();
    assert!(
        b_body.contains(&format!("c=IN IP4 {CLOUD_MEDIA}")),
        "{b_body}"
    );
    assert!(
        !inv.contains("10.0.0.1:") && !b_body.contains("10.0.0.1"),
        "{inv}"
    );
    let (_, a_body) = ok.split_once("\r\n\r\n").unwrap();
    assert!(
        a_body.contains(&format!("c=IN IP4 {CARRIER_MEDIA}")),
        "{a_body}"
    );
    assert!(!a_body.contains("192.0.2.50"), "{a_body}");
    let (pa, pb) = (audio_port(a_body), audio_port(b_body));
    assert!((40000..=40999).contains(&pa) && pa % 2 == 0);
    assert!((40000..=40999).contains(&pb) && pb % 2 == 0);

    let cmds = flows.take();
    let entries = added(&cmds);
    assert!(
        cmds.iter().all(|c| matches!(c, FlowCmd::Add(_))),
        "{cmds:?}"
    );
    let from_a = entries
        .iter()
        .find(|e| e.key.local == addr(&format!("{CARRIER_MEDIA}:{pa}")))
        .expect("flow receiving from the carrier");
    assert_eq!(from_a.expected_remote, addr("10.0.0.1:6000"));
    assert_eq!(from_a.egress_local, addr(&format!("{CLOUD_MEDIA}:{pb}")));
    assert_eq!(from_a.egress_remote, addr("192.0.2.50:7000"));
    assert_eq!(from_a.timeout, 30_000_000_000);
    let from_b = entries
        .iter()
        .find(|e| e.key.local == addr(&format!("{CLOUD_MEDIA}:{pb}")))
        .expect("flow receiving from the cloud");
    assert_eq!(from_b.egress_remote, addr("10.0.0.1:6000"));
    assert_eq!(from_b.tag.call, from_a.tag.call);
    // RTP and RTCP on each leg (neither side offered rtcp-mux).
    assert_eq!(entries.len(), 4);
    assert!(h.b.calls_info()[0].legs[0].codec.as_deref() == Some("PCMU"));

    let a_tag = tag(header(&ok, "To").unwrap()).to_owned();
    let out = h.feed(CARRIER, &in_dialog_from_a("BYE", 2, &a_tag, "bye1", "", ""));
    find(&out, CLOUD1, "BYE ");
    let removed: Vec<_> = flows
        .take()
        .into_iter()
        .filter(|c| matches!(c, FlowCmd::Remove(_)))
        .collect();
    assert_eq!(removed.len(), 4);
    let anchor = h.b.media.as_ref().unwrap();
    assert_eq!(anchor.ports_in_use(), 0, "ports released (into quarantine)");
    assert_eq!(h.b.media_counters().unwrap().flows_removed, 4);
}

#[test]
fn media_timeout_byes_both_legs_with_reason_and_records_it() {
    let (mut h, flows) = anchored(PLAIN, (40000, 40999));
    let (_, ok) = anchored_call(&mut h, CLOUD_SDP);
    let a_tag = tag(header(&ok, "To").unwrap()).to_owned();
    let ack = in_dialog_from_a("ACK", 1, &a_tag, "ack1", "", "");
    h.feed(CARRIER, &ack);
    let e = added(&flows.take())[0].clone();
    // Stats first (they go into the CDR), then the timeout.
    let stats = crate::media::flow::StreamStats {
        packets: 500,
        bytes: 86000,
        lost: 5,
        jitter_us: 2000,
        ..Default::default()
    };
    h.b.on_media_event(
        h.now,
        MediaEvent::Stats {
            key: e.key,
            tag: e.tag,
            stats,
        },
    );
    let info = h.b.calls_info();
    assert_eq!(info[0].legs[0].streams[0].packets_in, 500);
    h.b.on_media_event(
        h.now,
        MediaEvent::Timeout {
            key: e.key,
            tag: e.tag,
        },
    );
    let out = h.sent();
    let bye_a = find(&out, CARRIER, "BYE ");
    let bye_b = find(&out, CLOUD1, "BYE ");
    for b in [bye_a, bye_b] {
        assert!(
            header(b, "Reason").unwrap().contains("media timeout"),
            "{b}"
        );
    }
    assert_eq!(h.b.active_calls(), 0);
    let recs = h.b.take_records();
    assert_eq!(recs[0].end_reason, "media timeout");
    let s = &recs[0].streams[0];
    assert_eq!((s.packets, s.lost, s.codec.as_str()), (500, 5, "PCMU"));
    assert!(s.mos > 3.5 && s.mos < 4.41, "{}", s.mos);
    // A late event for the freed call is ignored.
    let stale = FlowTag { ..e.tag };
    h.b.on_media_event(
        h.now,
        MediaEvent::Timeout {
            key: e.key,
            tag: stale,
        },
    );
    assert!(h.sent().is_empty());
    assert_eq!(h.b.media_counters().unwrap().timeouts, 1);
}

#[test]
fn srtp_required_on_cloud_offers_sdes_and_keys_the_flows() {
    let (mut h, flows) = anchored(
        "{ policy = \"required\", allow_sdes_without_tls = true }",
        (40000, 40999),
    );
    let out = h.feed(CARRIER, &carrier_invite("a1", "15551234567"));
    let inv = find(&out, CLOUD1, "INVITE ").to_owned();
    assert!(inv.contains("RTP/SAVP"), "{inv}");
    let crypto = inv
        .lines()
        .find(|l| l.starts_with("a=crypto:"))
        .expect("a=crypto offered");
    assert!(
        crypto.contains("AES_CM_128_HMAC_SHA1_80 inline:"),
        "{crypto}"
    );
    let cloud_key =
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let sdp = format!(
        "v=0\no=cloud 7 7 IN IP4 192.0.2.50\ns=-\nc=IN IP4 192.0.2.50\nt=0 0\nm=audio 7000 RTP/SAVP 0\n{cloud_key}\n"
    );
    let out = h.feed(
        CLOUD1,
        &reply(
            &inv,
            200,
            "OK",
            Some("cl1"),
            "Contact: <sip:agent@192.0.2.1>\n",
            &sdp,
        ),
    );
    let ok = find(&out, CARRIER, "SIP/2.0 200");
    assert!(ok.contains("RTP/AVP") && !ok.contains("a=crypto"), "{ok}");
    let entries = added(&flows.take());
    let from_a = entries
        .iter()
        .find(|e| e.key.local.ip() == addr(&format!("{CARRIER_MEDIA}:1")).ip())
        .unwrap();
    assert!(from_a.srtp_in.is_none());
    let out_key = from_a.srtp_out.as_ref().expect("protect toward the cloud");
    assert!(
        crypto.contains(&out_key.inline_key),
        "our offered key protects"
    );
    let from_b = entries
        .iter()
        .find(|e| e.key.local.ip() == addr(&format!("{CLOUD_MEDIA}:1")).ip())
        .unwrap();
    assert_eq!(
        from_b.srtp_in.as_ref().unwrap().inline_key,
        "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
    );
    assert!(from_b.srtp_out.is_none());
}

#[test]
fn unacceptable_offer_is_refused_488_and_port_exhaustion_is_503() {
    // The carrier trunk is plain RTP: an SRTP-only offer from it has no acceptable stream.
    let (mut h, _) = anchored(PLAIN, (40000, 40999));
    let savp = carrier_invite("a1", "15551234567").replace("RTP/AVP 0", "RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz");
    let out = h.feed(CARRIER, &savp);
    assert_eq!(status(find(&out, CARRIER, "SIP/2.0 488")), 488);
    assert!(!out.iter().any(|(a, _)| *a == addr(CLOUD1)));
    assert_eq!(h.b.active_calls(), 0);
    assert_eq!(h.b.media_counters().unwrap().sdp_refused, 1);
    assert_eq!(
        h.b.media.as_ref().unwrap().ports_in_use(),
        0,
        "nothing leaked"
    );

    // One RTP/RTCP pair per media address: the second call finds no port.
    let (mut h, _) = anchored(PLAIN, (40000, 40001));
    let out = h.feed(CARRIER, &carrier_invite("p1", "15551234567"));
    find(&out, CLOUD1, "INVITE ");
    let out = h.feed(CARRIER, &carrier_invite("p2", "15551234567"));
    assert_eq!(status(find(&out, CARRIER, "SIP/2.0 503")), 503);
    assert_eq!(h.b.media_counters().unwrap().ports_exhausted, 1);
    assert_eq!(h.b.active_calls(), 1);
}

#[test]
fn hold_by_reinvite_is_anchored_and_updates_the_flows() {
    let (mut h, flows) = anchored(PLAIN, (40000, 40999));
    let (_, ok) = anchored_call(&mut h, CLOUD_SDP);
    let first = added(&flows.take());
    let a_tag = tag(header(&ok, "To").unwrap()).to_owned();
    let hold = format!("{}a=sendonly\n", SDP.replace("1 1 IN", "1 2 IN"));
    let out = h.feed(
        CARRIER,
        &in_dialog_from_a(
            "INVITE",
            2,
            &a_tag,
            "ri1",
            "Contact: <sip:15557654321@10.0.0.1:5060>\nContent-Type: application/sdp\n",
            &hold,
        ),
    );
    let re = find(&out, CLOUD1, "INVITE sip:agent@192.0.2.1 SIP/2.0").to_owned();
    assert!(
        re.contains("a=sendonly") && re.contains(CLOUD_MEDIA),
        "{re}"
    );
    assert!(!re.contains("10.0.0.1 "), "{re}");
    let held = format!("{}a=recvonly\n", CLOUD_SDP.replace("7 7 IN", "7 8 IN"));
    let out = h.feed(
        CLOUD1,
        &reply(
            &re,
            200,
            "OK",
            None,
            "Contact: <sip:agent@192.0.2.1>\n",
            &held,
        ),
    );
    let ok2 = find(&out, CARRIER, "SIP/2.0 200");
    assert!(
        ok2.contains("a=recvonly") && ok2.contains(CARRIER_MEDIA),
        "{ok2}"
    );
    let cmds = flows.take();
    assert!(!cmds.is_empty());
    assert!(
        cmds.iter().all(|c| matches!(c, FlowCmd::Update(_))),
        "{cmds:?}"
    );
    let after = added(&cmds);
    assert_eq!(after.len(), first.len(), "same ports, same flows");
    assert!(after.iter().all(|e| e.on_hold));
}

#[test]
fn offerless_reinvite_offer_in_the_2xx_answer_in_the_ack_is_anchored() {
    let (mut h, flows) = anchored(PLAIN, (40000, 40999));
    let (_, ok) = anchored_call(&mut h, CLOUD_SDP);
    flows.take();
    let a_tag = tag(header(&ok, "To").unwrap()).to_owned();
    // A re-INVITE without SDP (a PBX about to transfer): B makes the offer, on a new port.
    let out = h.feed(
        CARRIER,
        &in_dialog_from_a(
            "INVITE",
            2,
            &a_tag,
            "ro1",
            "Contact: <sip:15557654321@10.0.0.1:5060>\n",
            "",
        ),
    );
    let re = find(&out, CLOUD1, "INVITE sip:agent@192.0.2.1 SIP/2.0").to_owned();
    assert!(!re.contains("m=audio"), "{re}");
    let offer = CLOUD_SDP
        .replace("7 7 IN", "7 8 IN")
        .replace("audio 7000", "audio 7100");
    let out = h.feed(
        CLOUD1,
        &reply(
            &re,
            200,
            "OK",
            None,
            "Contact: <sip:agent@192.0.2.1>\n",
            &offer,
        ),
    );
    // A gets the offer on our carrier-side address; B gets no ACK until A answers.
    let ok2 = find(&out, CARRIER, "SIP/2.0 200").to_owned();
    assert!(
        ok2.contains(&format!("c=IN IP4 {CARRIER_MEDIA}")) && !ok2.contains("192.0.2.50"),
        "{ok2}"
    );
    assert!(
        !out.iter()
            .any(|(a, m)| *a == addr(CLOUD1) && m.starts_with("ACK ")),
        "{out:?}"
    );
    // A's ACK answers from a new port: B's ACK carries it on our cloud-side address.
    let answer = SDP
        .replace("1 1 IN", "1 2 IN")
        .replace("audio 6000", "audio 6100");
    let out = h.feed(
        CARRIER,
        &in_dialog_from_a(
            "ACK",
            2,
            &a_tag,
            "ro2",
            "Content-Type: application/sdp\n",
            &answer,
        ),
    );
    let ack = find(&out, CLOUD1, "ACK sip:agent@192.0.2.1 SIP/2.0");
    assert!(
        ack.contains("CSeq: 2 ACK") && ack.contains(&format!("c=IN IP4 {CLOUD_MEDIA}")),
        "{ack}"
    );
    assert!(!ack.contains("10.0.0.1 "), "{ack}");
    // Both new ports reach the flows: toward A 6100, toward B 7100.
    let entries = added(&flows.take());
    let remotes: Vec<u16> = entries.iter().map(|e| e.egress_remote.port()).collect();
    assert!(
        remotes.contains(&6100) && remotes.contains(&7100),
        "{remotes:?}"
    );
    assert_eq!(h.b.active_calls(), 1);
}

#[test]
fn bypass_mode_passes_sdp_unchanged() {
    let mut h = H::new(CFG);
    let out = h.feed(CARRIER, &carrier_invite("a1", "15551234567"));
    let inv = find(&out, CLOUD1, "INVITE ");
    assert!(
        inv.contains("c=IN IP4 10.0.0.1\r\n") && inv.contains("m=audio 6000 RTP/AVP 0"),
        "{inv}"
    );
    assert!(h.b.media_counters().is_none());
}

#[test]
fn each_leg_leaves_from_the_listener_on_its_peers_side() {
    let c = load_str(CFG, Path::new("t.toml")).unwrap();
    let now = Instant::now();
    let locals = vec![
        LocalAddr {
            transport: Transport::Udp,
            addr: addr("10.0.0.254:5060"),
        },
        LocalAddr {
            transport: Transport::Udp,
            addr: addr("192.0.2.254:5060"),
        },
    ];
    let mut h = H {
        b: B2bua::new(Arc::new(c), locals, now),
        now,
    };
    let text = fix_len(&carrier_invite("z9hG4bKside1", "15551234567"));
    h.b.on_message(now, flow(), addr(CARRIER), text.as_bytes());
    let mut to_cloud = None;
    let mut to_carrier = None;
    while let Some(t) = h.b.poll_transmit() {
        if t.dest == addr(CLOUD1) {
            to_cloud = Some(t);
        } else if t.dest == addr(CARRIER) {
            to_carrier = Some(t);
        }
    }
    let inv = to_cloud.expect("INVITE to the cloud");
    assert_eq!(inv.flow.local, 1, "cloud leg from the cloud-side listener");
    let text = String::from_utf8(inv.bytes.to_vec()).unwrap();
    assert!(
        header(&text, "Via").unwrap().contains("192.0.2.254:5060"),
        "{text}"
    );
    assert!(!text.contains("10.0.0.254"), "{text}");
    // The 100 Trying goes back on the flow the INVITE came in on.
    assert_eq!(to_carrier.expect("100 to the carrier").flow.local, 0);
}
