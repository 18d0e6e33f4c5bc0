use super::*;
use crate::media::flow::Leg;
use std::net::{IpAddr, SocketAddr};

pub(crate) fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sdp");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn load(name: &str) -> Vec<u8> {
    corpus().into_iter().find(|(n, _)| n == name).unwrap().1
}

fn s(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

fn lines(b: &[u8]) -> Vec<String> {
    s(b).lines().map(str::to_string).collect()
}

fn has(b: &[u8], line: &str) -> bool {
    lines(b).iter().any(|l| l == line)
}

#[derive(Default)]
struct Ports {
    next: [u16; 2],
    live: Vec<(Leg, u16)>,
    released: Vec<(Leg, u16)>,
    fail: bool,
}

impl Ports {
    fn new() -> Self {
        Ports {
            next: [20000, 40000],
            ..Default::default()
        }
    }
}

impl PortSource for Ports {
    fn allocate(&mut self, leg: Leg) -> Result<u16, SdpError> {
        if self.fail {
            return Err(SdpError::PortsExhausted);
        }
        let i = if leg == Leg::A { 0 } else { 1 };
        let p = self.next[i];
        self.next[i] += 2;
        self.live.push((leg, p));
        Ok(p)
    }
    fn release(&mut self, leg: Leg, p: u16) {
        self.live.retain(|x| *x != (leg, p));
        self.released.push((leg, p));
    }
}

/// Deterministic "random" key bytes.
struct Keys(u8);
impl KeySource for Keys {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            self.0 = self.0.wrapping_mul(73).wrapping_add(41);
            *b = self.0;
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn carrier_policy() -> LegPolicy {
    LegPolicy {
        media_addr: ip("10.1.0.1"),
        codecs: [Codec::Pcmu, Codec::Pcma, Codec::G729, Codec::TelephoneEvent]
            .map(CodecPref::new)
            .to_vec(),
        srtp: SrtpPolicy::Off,
        srtp_suites: vec![CryptoSuite::AesCm128HmacSha1_80],
        sdes_allowed: false,
        rtcp_mux: false,
        ptime: None,
        origin_username: "tollgate".into(),
    }
}

fn cloud_policy() -> LegPolicy {
    LegPolicy {
        media_addr: ip("10.2.0.1"),
        codecs: vec![
            CodecPref::new(Codec::Pcma),
            CodecPref::new(Codec::Pcmu),
            CodecPref {
                codec: Codec::TelephoneEvent,
                pt: Some(96),
            },
        ],
        srtp: SrtpPolicy::Required,
        srtp_suites: vec![
            CryptoSuite::AesCm128HmacSha1_80,
            CryptoSuite::AesCm128HmacSha1_32,
        ],
        sdes_allowed: true,
        rtcp_mux: true,
        ptime: None,
        origin_username: "tollgate".into(),
    }
}

const B_ANSWER: &str = "v=0\r\no=cloud 77 5 IN IP4 192.0.2.200\r\ns=-\r\nc=IN IP4 192.0.2.200\r\nt=0 0\r\n\
m=audio 31000 RTP/SAVP 0 96\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\na=rtcp-mux\r\na=sendrecv\r\n";

#[test]
fn round_trip_is_byte_identical() {
    let c = corpus();
    assert!(c.len() >= 9);
    for (name, body) in c {
        let sdp = Sdp::parse(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sdp.to_bytes(), body, "{name}");
        for i in 0..sdp.media_count() {
            sdp.media(i).unwrap_or_else(|e| panic!("{name} m{i}: {e}"));
            sdp.direction(i).unwrap();
            sdp.effective_connection(i).unwrap();
        }
        sdp.origin().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn accessors() {
    let v6 = Sdp::parse(&load("ipv6_bare_lf.sdp")).unwrap();
    assert_eq!(
        v6.connection(Level::Session).unwrap().unwrap().addr,
        Some(ip("2001:db8::10"))
    );
    assert_eq!(v6.origin().unwrap().sess_version, 2890842807);
    assert_eq!(
        v6.rtpmap(0, "101").unwrap(),
        Some(("telephone-event".into(), 8000, None))
    );
    let w = Sdp::parse(&load("webrtc_ish.sdp")).unwrap();
    let m = w.media(0).unwrap();
    assert_eq!(
        (m.port, m.proto.as_str(), m.formats.len()),
        (54609, "RTP/SAVPF", 5)
    );
    assert_eq!(
        w.rtpmap(0, "111").unwrap(),
        Some(("opus".into(), 48000, Some(2)))
    );
    assert!(w.connection(Level::Session).unwrap().is_none());
    assert_eq!(
        w.effective_connection(0).unwrap().unwrap().addr,
        Some(ip("198.51.100.9"))
    );
    let acs = Sdp::parse(&load("acs_srtp.sdp")).unwrap();
    let cr = acs.crypto(0).unwrap();
    assert_eq!(cr.len(), 2);
    assert_eq!(cr[0].mki.as_deref(), Some("1:1"));
    assert_eq!(cr[0].usable_suite(), None, "MKI is refused");
    assert_eq!(cr[1].usable_suite(), Some(CryptoSuite::AesCm128HmacSha1_80));
    assert_eq!(cr[1].lifetime.as_deref(), Some("2^31"));
    let hold = Sdp::parse(&load("hold_rfc2543.sdp")).unwrap();
    assert!(hold.effective_connection(0).unwrap().unwrap().is_hold());
    let nf = Sdp::parse(&load("no_final_eol.sdp")).unwrap();
    assert_eq!(nf.direction(0).unwrap(), Direction::SendOnly);
    assert_eq!(
        nf.attribute(Level::Media(0), "x-unknown-vendor").unwrap(),
        Some(Some("  spaced   value  "))
    );
    let av = Sdp::parse(&load("audio_video_t38.sdp")).unwrap();
    assert_eq!(av.media_count(), 3);
    assert_eq!(av.media(2).unwrap().port, 0);
}

#[test]
fn rewrites_touch_only_their_lines() {
    let body = load("carrier_g711.sdp");
    let orig = lines(&body);
    let mut sdp = Sdp::parse(&body).unwrap();
    sdp.set_connection(Level::Session, ip("2001:db8::1"))
        .unwrap();
    sdp.set_media_port(0, 30000).unwrap();
    let out = sdp.to_bytes();
    let new = lines(&out);
    assert_eq!(new.len(), orig.len());
    let changed: Vec<_> = orig
        .iter()
        .zip(&new)
        .filter(|(a, b)| a != b)
        .map(|(_, b)| b.as_str())
        .collect();
    assert_eq!(
        changed,
        vec!["c=IN IP6 2001:db8::1", "m=audio 30000 RTP/AVP 0 8 18 101"]
    );
    assert!(s(&out).ends_with("a=sendrecv\r\n"));

    // Media-level c= inserted after m= (and i=), a=rtcp rewritten with address.
    let mut v6 = Sdp::parse(&load("ipv6_bare_lf.sdp")).unwrap();
    v6.set_connection(Level::Media(0), ip("10.9.9.9")).unwrap();
    assert!(v6.set_rtcp_attr(0, 20001, ip("10.9.9.9")).unwrap());
    let o = s(&v6.to_bytes());
    assert!(
        o.contains("m=audio 49170 RTP/AVP 8 0 101\nc=IN IP4 10.9.9.9\n"),
        "{o}"
    );
    assert!(o.contains("\na=rtcp:20001 IN IP4 10.9.9.9\n"));
    assert!(!o.contains('\r'), "bare LF style kept for inserted lines");

    // Crypto add / replace / remove.
    let mut c = Sdp::parse(&load("connect_srtp.sdp")).unwrap();
    let mut keys = Keys(1);
    let ours = CryptoAttr::generate(1, CryptoSuite::AeadAes128Gcm, &mut keys);
    c.set_crypto(0, std::slice::from_ref(&ours)).unwrap();
    let cr = c.crypto(0).unwrap();
    assert_eq!(cr, vec![ours.clone()]);
    assert_eq!(crypto::base64_decode(&cr[0].key_b64).unwrap().len(), 28);
    c.set_crypto(0, &[]).unwrap();
    assert!(c.crypto(0).unwrap().is_empty());

    // ptime replace, direction, codec filtering with renumbering.
    let mut p = Sdp::parse(&load("carrier_g711.sdp")).unwrap();
    p.set_ptime(0, 30).unwrap();
    p.set_direction(0, Direction::Inactive).unwrap();
    p.map_formats(0, &[(8, 8), (101, 100)]).unwrap();
    let o = p.to_bytes();
    assert!(has(&o, "a=ptime:30") && has(&o, "a=inactive") && !has(&o, "a=sendrecv"));
    assert!(has(&o, "m=audio 16384 RTP/AVP 8 100"));
    assert!(has(&o, "a=rtpmap:100 telephone-event/8000") && has(&o, "a=fmtp:100 0-15"));
    assert!(
        !s(&o).contains("G729") && !has(&o, "a=rtpmap:0 PCMU/8000") && has(&o, "a=maxptime:40")
    );

    // Origin, reject.
    let mut r = Sdp::parse(&load("audio_video_t38.sdp")).unwrap();
    r.reject_stream(1).unwrap();
    let o = r.to_bytes();
    assert!(has(&o, "m=video 0 RTP/AVP 97 98") && !s(&o).contains("H264"));
    assert!(
        s(&o).ends_with("m=image 0 udptl t38\r\n\r\n"),
        "trailing empty line kept"
    );
    let mut nf = Sdp::parse(&load("no_final_eol.sdp")).unwrap();
    nf.add_attr(Level::Media(0), "ptime:20").unwrap();
    assert!(s(&nf.to_bytes()).ends_with("a=sendonly\r\na=ptime:20"));
}

#[test]
fn garbage_is_an_error() {
    for bad in [
        &b""[..],
        b"x",
        b"v=1\r\n",
        b"hello\r\nv=0",
        b"v=0\r\nbogus line\r\n",
        b"v=0\r\n=x\r\n",
    ] {
        assert!(Sdp::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        Sdp::parse(&vec![b'a'; MAX_SDP_LEN + 1]),
        Err(SdpError::TooLarge)
    );
    let odd =
        Sdp::parse(b"v=0\r\no=x\r\nm=audio x RTP/AVP 0\r\nm=audio 1\r\nc=IN\r\na=crypto:x\r\n")
            .unwrap();
    assert_eq!(odd.origin(), Err(SdpError::BadOrigin));
    assert!(matches!(odd.media(0), Err(SdpError::BadMedia { .. })));
    assert!(matches!(odd.media(1), Err(SdpError::BadMedia { .. })));
    assert!(matches!(
        odd.connection(Level::Media(1)),
        Err(SdpError::BadConnection { .. })
    ));
    assert!(matches!(odd.crypto(1), Err(SdpError::BadCrypto { .. })));
    assert!(matches!(odd.media(5), Err(SdpError::NoSuchStream(5))));
    let mut sess = MediaSession::new(carrier_policy(), cloud_policy());
    let (mut p, mut k) = (Ports::new(), Keys(0));
    assert_eq!(
        sess.answer(Leg::B, B_ANSWER.as_bytes(), &mut p, &mut k),
        Err(SdpError::NoPendingOffer)
    );
    assert!(
        sess.offer(
            Leg::A,
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n",
            &mut p,
            &mut k
        )
        .is_err()
    );
    assert!(p.live.is_empty());
}

#[test]
fn carrier_to_cloud_offer_answer_with_codec_filter_srtp_and_dtmf_map() {
    let mut sess = MediaSession::new(carrier_policy(), cloud_policy());
    let (mut ports, mut keys) = (Ports::new(), Keys(0));
    let offer_b = sess
        .offer(Leg::A, &load("carrier_g711.sdp"), &mut ports, &mut keys)
        .unwrap();
    let ob = s(&offer_b);
    let crypto = Sdp::parse(&offer_b).unwrap().crypto(0).unwrap();
    assert_eq!(crypto.len(), 2);
    let expect = format!(
        "v=0\r\no=tollgate 1834729373 1834729373 IN IP4 10.2.0.1\r\ns=SIP Media Capabilities\r\nc=IN IP4 10.2.0.1\r\n\
         t=0 0\r\nm=audio 40000 RTP/SAVP 8 0 96\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\na=ptime:20\r\na=maxptime:40\r\na=sendrecv\r\n\
         a=rtcp-mux\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{}\r\n",
        crypto[0].key_b64, crypto[1].key_b64
    );
    assert_eq!(ob, expect);
    assert_eq!(sess.local_port(0, Leg::A), 20000);

    let ans_a = sess
        .answer(Leg::B, B_ANSWER.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    let expect_a = "v=0\r\no=tollgate 77 5 IN IP4 10.1.0.1\r\ns=-\r\nc=IN IP4 10.1.0.1\r\nt=0 0\r\n\
         m=audio 20000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\na=sendrecv\r\n";
    assert_eq!(s(&ans_a), expect_a);

    let st = &sess.streams()[0];
    assert!(st.active && !st.on_hold());
    assert_eq!(st.pt_map(Leg::A), vec![(0, 0), (101, 96)]);
    assert_eq!(st.pt_map(Leg::B), vec![(0, 0), (96, 101)]);
    assert_eq!(st.telephone_event().unwrap().clock_rate, 8000);
    assert_eq!(st.a.remote_rtp, Some(sa("203.0.113.10:16384")));
    assert_eq!(st.a.remote_rtcp, Some(sa("203.0.113.10:16385")));
    assert_eq!((st.a.local_rtp_port, st.a.local_rtcp_port), (20000, 20001));
    assert_eq!(st.a.srtp_rx, None);
    assert_eq!(st.b.remote_rtp, Some(sa("192.0.2.200:31000")));
    assert_eq!(
        st.b.remote_rtcp,
        Some(sa("192.0.2.200:31000")),
        "rtcp-mux on B"
    );
    assert!(st.b.rtcp_mux && !st.a.rtcp_mux);
    assert_eq!((st.b.local_rtp_port, st.b.local_rtcp_port), (40000, 40000));
    assert_eq!(
        st.b.srtp_rx.as_ref().unwrap().inline_key,
        "NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj"
    );
    assert_eq!(
        st.b.srtp_rx.as_ref().unwrap().suite,
        "AES_CM_128_HMAC_SHA1_32"
    );
    assert_eq!(
        st.b.srtp_tx.as_ref().unwrap(),
        &crypto[1].key(),
        "the answerer chose our tag 2"
    );

    // 183 then 200 with the same SDP: same bytes, same version.
    assert_eq!(
        sess.answer(Leg::B, B_ANSWER.as_bytes(), &mut ports, &mut keys)
            .unwrap(),
        ans_a
    );
    // A different final answer (PCMA only) bumps the version.
    let b2 = B_ANSWER
        .replace("RTP/SAVP 0 96", "RTP/SAVP 8")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000");
    let a2 = sess
        .answer(Leg::B, b2.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    assert!(has(&a2, "o=tollgate 77 6 IN IP4 10.1.0.1") && has(&a2, "m=audio 20000 RTP/AVP 8"));
    assert!(!s(&a2).contains("telephone-event"));
    sess.close(&mut ports);
    assert!(ports.live.is_empty());
}

#[test]
fn hold_and_resume_reoffers() {
    let mut sess = MediaSession::new(carrier_policy(), cloud_policy());
    let (mut ports, mut keys) = (Ports::new(), Keys(0));
    let a_offer = load("carrier_g711.sdp");
    let o1 = sess.offer(Leg::A, &a_offer, &mut ports, &mut keys).unwrap();
    sess.answer(Leg::B, B_ANSWER.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    // An unchanged re-offer (session refresh) gives identical bytes: same version, same keys.
    let a_refresh = s(&a_offer).replace("1834729373 1834729373", "1834729373 1834729374");
    assert_eq!(
        sess.offer(Leg::A, a_refresh.as_bytes(), &mut ports, &mut keys)
            .unwrap(),
        o1
    );
    sess.answer(Leg::B, B_ANSWER.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    // A holds (sendonly).
    let a_hold = a_refresh.replace("a=sendrecv", "a=sendonly");
    let o2 = sess
        .offer(Leg::A, a_hold.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    assert!(has(&o2, "a=sendonly") && has(&o2, "o=tollgate 1834729373 1834729374 IN IP4 10.2.0.1"));
    assert!(
        has(&o2, "m=audio 40000 RTP/SAVP 8 0 96"),
        "same port on re-offer"
    );
    let b_hold = B_ANSWER.replace("a=sendrecv", "a=recvonly");
    let a2 = sess
        .answer(Leg::B, b_hold.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    assert!(has(&a2, "a=recvonly"));
    assert!(sess.streams()[0].on_hold());
    assert_eq!(sess.streams()[0].a.direction, Direction::SendOnly);
    // Resume.
    let o3 = sess
        .offer(Leg::A, a_refresh.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    assert!(has(&o3, "a=sendrecv") && has(&o3, "o=tollgate 1834729373 1834729375 IN IP4 10.2.0.1"));
    sess.answer(Leg::B, B_ANSWER.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    assert!(!sess.streams()[0].on_hold());
    // RFC 2543 hold from B (B re-offers toward A with c=0.0.0.0).
    let b_offer = "v=0\r\no=cloud 77 6 IN IP4 192.0.2.200\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
        m=audio 31000 RTP/SAVP 0 96\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:96 telephone-event/8000\r\n\
        a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\na=rtcp-mux\r\n";
    let to_a = sess
        .offer(Leg::B, b_offer.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    assert!(
        has(&to_a, "c=IN IP4 10.1.0.1") && has(&to_a, "a=sendonly"),
        "{}",
        s(&to_a)
    );
    assert!(has(&to_a, "m=audio 20000 RTP/AVP 0 101"), "{}", s(&to_a));
    let a_ans = "v=0\r\no=- 1834729373 1834729380 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\n\
        m=audio 16384 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=recvonly\r\n";
    let to_b = sess
        .answer(Leg::A, a_ans.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    assert!(
        has(&to_b, "m=audio 40000 RTP/SAVP 0 96") && has(&to_b, "a=rtcp-mux"),
        "{}",
        s(&to_b)
    );
    let cr = Sdp::parse(&to_b).unwrap().crypto(0).unwrap();
    assert_eq!(
        (cr.len(), cr[0].tag),
        (1, 7),
        "answer uses the offerer's tag"
    );
    let st = &sess.streams()[0];
    assert_eq!(st.b.remote_rtp, None, "0.0.0.0: nowhere to send");
    assert!(st.b.hold && st.on_hold());
    assert_eq!(
        st.b.srtp_rx.as_ref().unwrap().inline_key,
        "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
    );
    assert_eq!(st.pt_map(Leg::B), vec![(0, 0), (96, 101)]);
    assert_eq!(ports.live.len(), 2, "no new ports for re-offers");
}

#[test]
fn srtp_optional_off_and_sdes_policy() {
    // Optional toward B: RTP/AVP with a=crypto; B may ignore it.
    let mut b = cloud_policy();
    b.srtp = SrtpPolicy::Optional;
    let mut sess = MediaSession::new(carrier_policy(), b.clone());
    let (mut ports, mut keys) = (Ports::new(), Keys(3));
    let o = sess
        .offer(Leg::A, &load("carrier_g711.sdp"), &mut ports, &mut keys)
        .unwrap();
    assert!(has(&o, "m=audio 40000 RTP/AVP 8 0 96"));
    assert_eq!(Sdp::parse(&o).unwrap().crypto(0).unwrap().len(), 2);
    let plain = B_ANSWER.replace("RTP/SAVP", "RTP/AVP").replace(
        "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n",
        "",
    );
    sess.answer(Leg::B, plain.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    assert_eq!(sess.streams()[0].b.srtp_rx, None);
    assert_eq!(sess.streams()[0].b.srtp_tx, None);
    let with = B_ANSWER.replace("RTP/SAVP", "RTP/AVP");
    sess.answer(Leg::B, with.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    assert!(sess.streams()[0].b.srtp_rx.is_some());

    // Optional but the leg is not TLS: no keys offered, plain RTP.
    b.sdes_allowed = false;
    let mut sess = MediaSession::new(carrier_policy(), b.clone());
    let o = sess
        .offer(Leg::A, &load("carrier_g711.sdp"), &mut ports, &mut keys)
        .unwrap();
    assert!(!s(&o).contains("a=crypto"));
    // Required on a non-TLS leg: typed error, ports given back.
    b.srtp = SrtpPolicy::Required;
    let before = ports.live.len();
    let mut sess = MediaSession::new(carrier_policy(), b);
    assert_eq!(
        sess.offer(Leg::A, &load("carrier_g711.sdp"), &mut ports, &mut keys),
        Err(SdpError::SdesNotAllowed { leg: Leg::B })
    );
    assert_eq!(ports.live.len(), before);
    // B required SRTP but answered plain: unacceptable.
    let mut sess = MediaSession::new(carrier_policy(), cloud_policy());
    sess.offer(Leg::A, &load("carrier_g711.sdp"), &mut ports, &mut keys)
        .unwrap();
    assert!(matches!(
        sess.answer(Leg::B, plain.as_bytes(), &mut ports, &mut keys),
        Err(SdpError::AnswerUnacceptable { stream: 0, .. })
    ));
    sess.offer_failed(&mut ports);

    // SAVP offered on a leg with SRTP off: nothing acceptable.
    let mut sess = MediaSession::new(carrier_policy(), carrier_policy());
    assert_eq!(
        sess.offer(Leg::A, &load("connect_srtp.sdp"), &mut ports, &mut keys),
        Err(SdpError::NoAcceptableMedia)
    );
    // SAVP offered on a TLS leg with SRTP optional: answered with our key under the offerer's tag.
    let mut a = cloud_policy();
    a.srtp = SrtpPolicy::Optional;
    a.codecs = [Codec::Opus, Codec::Pcmu, Codec::TelephoneEvent]
        .map(CodecPref::new)
        .to_vec();
    let mut bp = carrier_policy();
    bp.codecs = a.codecs.clone();
    let mut sess = MediaSession::new(a.clone(), bp.clone());
    let mut ports = Ports::new();
    let o = sess
        .offer(Leg::A, &load("connect_srtp.sdp"), &mut ports, &mut keys)
        .unwrap();
    assert!(has(&o, "m=audio 40000 RTP/AVP 111 0 110"), "{}", s(&o));
    assert!(has(&o, "a=rtpmap:110 telephone-event/48000") && !s(&o).contains("a=crypto"));
    assert!(!s(&o).contains("a=rtcp-mux") && has(&o, "a=rtcp:40001 IN IP4 10.1.0.1"));
    let b_ans = "v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\n\
        m=audio 16384 RTP/AVP 111 110\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:110 telephone-event/48000\r\n";
    let to_a = sess
        .answer(Leg::B, b_ans.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    assert!(
        has(&to_a, "m=audio 20000 RTP/SAVP 111 110") && has(&to_a, "a=rtcp-mux"),
        "{}",
        s(&to_a)
    );
    let cr = Sdp::parse(&to_a).unwrap().crypto(0).unwrap();
    assert_eq!(
        (cr.len(), cr[0].tag, cr[0].suite.as_str()),
        (1, 1, "AES_CM_128_HMAC_SHA1_80")
    );
    let st = &sess.streams()[0];
    assert_eq!(
        st.a.srtp_rx.as_ref().unwrap().inline_key,
        "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
    );
    assert_eq!(st.a.srtp_tx.as_ref().unwrap().inline_key, cr[0].key_b64);
    assert_eq!(st.telephone_event().unwrap().clock_rate, 48000);
    assert!(st.a.rtcp_mux);
    // The same SAVP offer on a non-TLS leg is refused with a typed error.
    a.sdes_allowed = false;
    let mut sess = MediaSession::new(a, bp);
    assert_eq!(
        sess.offer(Leg::A, &load("connect_srtp.sdp"), &mut ports, &mut keys),
        Err(SdpError::SdesNotAllowed { leg: Leg::A })
    );
}

#[test]
fn port_zero_streams_and_rejections() {
    let mut a = carrier_policy();
    a.media_addr = ip("10.1.0.1");
    let mut sess = MediaSession::new(a, carrier_policy());
    let (mut ports, mut keys) = (Ports::new(), Keys(0));
    let o = sess
        .offer(Leg::A, &load("audio_video_t38.sdp"), &mut ports, &mut keys)
        .unwrap();
    assert!(
        has(&o, "m=audio 40000 RTP/AVP 0 96")
            && has(&o, "m=video 0 RTP/AVP 97 98")
            && has(&o, "m=image 0 udptl t38")
    );
    assert!(!s(&o).contains("H264"));
    assert_eq!(ports.live.len(), 2, "ports only for the audio stream");
    // Mismatched m= count.
    assert!(matches!(
        sess.answer(Leg::B, B_ANSWER.as_bytes(), &mut ports, &mut keys),
        Err(SdpError::AnswerMismatch {
            expected: 3,
            got: 1
        })
    ));
    // B rejects audio too: ports are released, streams inactive.
    let ans = "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
        m=audio 0 RTP/AVP 0\r\nm=video 0 RTP/AVP 97\r\nm=image 0 udptl t38\r\n";
    let to_a = sess
        .answer(Leg::B, ans.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    assert!(
        has(&to_a, "m=audio 0 RTP/AVP 0 96") && has(&to_a, "m=video 0 RTP/AVP 97 98"),
        "{}",
        s(&to_a)
    );
    assert!(sess.streams().iter().all(|st| !st.active));
    assert!(ports.live.is_empty());
    // Port exhaustion is a typed error.
    let mut sess = MediaSession::new(carrier_policy(), carrier_policy());
    let mut dry = Ports {
        fail: true,
        ..Ports::new()
    };
    assert_eq!(
        sess.offer(Leg::A, &load("carrier_g711.sdp"), &mut dry, &mut keys),
        Err(SdpError::PortsExhausted)
    );
}

#[test]
fn webrtc_ish_and_ipv6_offers_lose_transport_attributes() {
    let mut a = cloud_policy();
    a.srtp = SrtpPolicy::Optional;
    a.codecs = [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::TelephoneEvent]
        .map(CodecPref::new)
        .to_vec();
    let mut b = carrier_policy();
    b.codecs = a.codecs.clone();
    b.rtcp_mux = true;
    let mut sess = MediaSession::new(a, b);
    let (mut ports, mut keys) = (Ports::new(), Keys(0));
    let o = sess
        .offer(Leg::A, &load("webrtc_ish.sdp"), &mut ports, &mut keys)
        .unwrap();
    let t = s(&o);
    for gone in [
        "candidate",
        "ice-",
        "fingerprint",
        "setup",
        "group:BUNDLE",
        "198.51.100.9",
        "crypto",
    ] {
        assert!(!t.contains(gone), "{gone} leaked: {t}");
    }
    assert!(has(&o, "m=audio 40000 RTP/AVPF 111 9 0 101"), "{t}");
    assert!(
        has(&o, "a=rtcp-fb:111 transport-cc") && has(&o, "a=rtcp-fb:* nack") && has(&o, "a=mid:0")
    );
    assert!(
        has(&o, "c=IN IP4 10.1.0.1")
            && has(&o, "a=rtcp:40001 IN IP4 10.1.0.1")
            && has(&o, "a=rtcp-mux")
    );
    assert!(
        has(&o, "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
        "unknown attributes kept"
    );
    assert!(!t.contains("PCMA"));
    // IPv6 carrier toward an IPv4 cloud leg.
    let mut sess = MediaSession::new(carrier_policy(), carrier_policy());
    let mut ports = Ports::new();
    let o = sess
        .offer(Leg::A, &load("ipv6_bare_lf.sdp"), &mut ports, &mut keys)
        .unwrap();
    let t = s(&o);
    assert!(
        t.starts_with("v=0\no=tollgate 2890844526 2890842807 IN IP4 10.1.0.1\n"),
        "{t}"
    );
    assert!(
        has(&o, "c=IN IP4 10.1.0.1") && has(&o, "a=rtcp:40001 IN IP4 10.1.0.1"),
        "{t}"
    );
    assert!(!t.contains("2001:db8"));
}

#[test]
fn negotiated_stream_to_flows_and_through_the_pipeline() {
    use crate::media::flow::{FlowCmd, FlowKey, LatchMode, MediaEvent, StreamKind};
    use crate::media::pipeline::{NoSrtp, Pipeline, RxPacket, Verdict};
    // Plain RTP both sides so NoSrtp can run it: B without mux, A with mux.
    let mut a = carrier_policy();
    a.rtcp_mux = true;
    let mut b = carrier_policy();
    b.media_addr = ip("10.2.0.1");
    b.codecs = cloud_policy().codecs;
    let mut sess = MediaSession::new(a, b);
    let (mut ports, mut keys) = (Ports::new(), Keys(0));
    let a_offer = s(&load("carrier_g711.sdp")).replace("a=sendrecv", "a=sendrecv\r\na=rtcp-mux");
    sess.offer(Leg::A, a_offer.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    let b_ans = "v=0\r\no=- 1 1 IN IP4 192.0.2.200\r\ns=-\r\nc=IN IP4 192.0.2.200\r\nt=0 0\r\n\
        m=audio 31000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=rtcp:31005\r\n";
    sess.answer(Leg::B, b_ans.as_bytes(), &mut ports, &mut keys)
        .unwrap();
    let st = &sess.streams()[0];
    assert_eq!(st.b.remote_rtcp, Some(sa("192.0.2.200:31005")));
    let opts = FlowOptions {
        call: 9,
        latch_a: LatchMode::LatchOnFirst,
        latch_b: LatchMode::Off,
        timeout: 1_000_000_000,
        hold_timeout: 10_000_000_000,
    };
    let flows = st.flow_entries(&opts);
    assert_eq!(flows.len(), 3, "A muxed: one flow; B: RTP and RTCP");
    let fa = &flows[0];
    assert_eq!(
        (fa.key.local, fa.kind),
        (sa("10.1.0.1:20000"), StreamKind::RtpRtcpMux)
    );
    assert_eq!(
        (fa.egress_local, fa.egress_remote),
        (sa("10.2.0.1:40000"), sa("192.0.2.200:31000"))
    );
    assert_eq!(
        fa.rtcp_egress,
        Some((sa("10.2.0.1:40001"), sa("192.0.2.200:31005")))
    );
    assert_eq!(
        fa.payloads
            .iter()
            .map(|p| (p.pt_in, p.pt_out))
            .collect::<Vec<_>>(),
        vec![(0, 0), (101, 96)]
    );
    assert_eq!(flows[1].key.local, sa("10.2.0.1:40000"));
    assert_eq!(flows[1].egress_remote, sa("203.0.113.10:16384"));
    assert_eq!(
        (flows[2].key.local, flows[2].kind),
        (sa("10.2.0.1:40001"), StreamKind::Rtcp)
    );
    assert_eq!(
        (flows[2].egress_local, flows[2].egress_remote),
        (sa("10.1.0.1:20000"), sa("203.0.113.10:16384"))
    );
    assert!(
        sess.streams()[0]
            .flow_entries(&opts)
            .iter()
            .all(|f| f.tag.call == 9 && !f.on_hold)
    );

    let mut p = Pipeline::new(8, NoSrtp);
    let mut ev = Vec::new();
    for f in flows {
        p.apply(FlowCmd::Add(Box::new(f)), 0, &mut ev);
    }
    let mut send = |p: &mut Pipeline<NoSrtp>, local: &str, src: &str, pkt: &[u8]| {
        let mut buf = pkt.to_vec();
        let mut rx = RxPacket {
            buf: &mut buf,
            len: pkt.len(),
            local: sa(local),
            src: sa(src),
        };
        p.process(1, &mut rx, &mut ev)
    };
    let mut rtp = vec![0x80, 101, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    rtp.extend_from_slice(&[1, 0x80, 0, 160]);
    // A's NAT changed the port: latched; RTCP muxed from A leaves on B's RTCP port.
    let v = send(&mut p, "10.1.0.1:20000", "203.0.113.10:9999", &rtp);
    assert!(matches!(v, Verdict::Forward(f) if f.dst == sa("192.0.2.200:31000")));
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
    let v = send(&mut p, "10.1.0.1:20000", "203.0.113.10:9999", &rr);
    assert!(
        matches!(v, Verdict::Forward(f) if f.src == sa("10.2.0.1:40001") && f.dst == sa("192.0.2.200:31005"))
    );
    // B's RTP and RTCP now go to A's latched address.
    let v = send(&mut p, "10.2.0.1:40000", "192.0.2.200:31000", &rtp);
    assert!(
        matches!(v, Verdict::Forward(f) if f.dst == sa("203.0.113.10:9999") && f.src == sa("10.1.0.1:20000"))
    );
    let v = send(&mut p, "10.2.0.1:40001", "192.0.2.200:31005", &rr);
    assert!(
        matches!(v, Verdict::Forward(f) if f.dst == sa("203.0.113.10:9999") && f.src == sa("10.1.0.1:20000"))
    );
    assert!(ev.iter().any(|e| matches!(e, MediaEvent::Latched { key, .. } if *key == FlowKey::new(sa("10.1.0.1:20000")))));
    assert!(ev.iter().any(|e| matches!(
        e,
        MediaEvent::Dtmf {
            call: 9,
            digit: '1',
            ..
        }
    )));
}
