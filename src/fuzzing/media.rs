//! SDP and RTP/RTCP wire fuzz checks.

use crate::media::flow::{
    FlowCmd, FlowEntry, FlowKey, FlowTag, LatchMode, Leg, PayloadMap, StreamKind,
};
use crate::media::pipeline::{NoSrtp, Pipeline, RxPacket, Verdict};
use crate::media::wire::{
    EthernetFrame, Ipv4Packet, Ipv6Packet, RtcpCompound, RtcpPacket, RtpPacket, TelephoneEvent,
    UdpPacket,
};
use crate::sdp::{
    Codec, CodecPref, CryptoSuite, KeySource, LegPolicy, MediaSession, PortSource, Sdp, SdpError,
    SrtpPolicy,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

struct SeqPorts(u16);
impl PortSource for SeqPorts {
    fn allocate(&mut self, _: Leg) -> Result<u16, SdpError> {
        self.0 = self.0.wrapping_add(2);
        Ok(self.0)
    }
    fn release(&mut self, _: Leg, _: u16) {}
}

struct ZeroKeys;
impl KeySource for ZeroKeys {
    fn fill(&mut self, out: &mut [u8]) {
        out.fill(7);
    }
}

fn policy(addr: [u8; 4], srtp: SrtpPolicy, tls: bool) -> LegPolicy {
    LegPolicy {
        media_addr: IpAddr::V4(Ipv4Addr::from(addr)),
        codecs: [
            Codec::Opus,
            Codec::G722,
            Codec::Pcmu,
            Codec::Pcma,
            Codec::G729,
            Codec::TelephoneEvent,
        ]
        .map(CodecPref::new)
        .to_vec(),
        srtp,
        srtp_suites: CryptoSuite::ALL.to_vec(),
        sdes_allowed: tls,
        rtcp_mux: true,
        ptime: None,
        origin_username: "fuzz".into(),
    }
}

/// Parse, check the byte-exact round trip, run every accessor and rewrite, and feed the input as
/// offer and answer through a two-leg media session.
pub fn sdp_parse(data: &[u8]) {
    let Ok(sdp) = Sdp::parse(data) else { return };
    assert_eq!(sdp.to_bytes(), data, "round trip must be byte-identical");
    let _ = sdp.origin();
    let n = sdp.media_count();
    for i in 0..n.min(16) {
        let _ = sdp.media(i);
        let _ = sdp.direction(i);
        let _ = sdp.effective_connection(i);
        let _ = sdp.crypto(i);
        let _ = sdp.rtpmap(i, "0");
        let mut w = sdp.clone();
        let _ = w.set_connection(crate::sdp::Level::Media(i), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let _ = w.map_formats(i, &[(0, 0), (101, 96)]);
        let _ = w.set_rtcp_attr(i, 9, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let _ = w.set_direction(i, crate::sdp::Direction::Inactive);
        let _ = w.reject_stream(i);
        // A rewritten description must still parse.
        assert!(Sdp::parse(&w.to_bytes()).is_ok() || w.to_bytes().len() > crate::sdp::MAX_SDP_LEN);
    }
    for (pa, pb) in [
        (
            policy([10, 0, 0, 1], SrtpPolicy::Optional, true),
            policy([10, 0, 0, 2], SrtpPolicy::Required, true),
        ),
        (
            policy([10, 0, 0, 1], SrtpPolicy::Off, false),
            policy([10, 0, 0, 2], SrtpPolicy::Optional, true),
        ),
    ] {
        let mut s = MediaSession::new(pa, pb);
        let mut ports = SeqPorts(20000);
        if let Ok(offer_b) = s.offer(Leg::A, data, &mut ports, &mut ZeroKeys) {
            assert!(Sdp::parse(&offer_b).is_ok(), "our offer must parse");
            // The peer answering with its own offer bytes or with the input exercises answers.
            let _ = s.answer(Leg::B, &offer_b, &mut ports, &mut ZeroKeys);
            let _ = s.answer(Leg::B, data, &mut ports, &mut ZeroKeys);
            let _ = s.streams();
        }
    }
}

/// Every wire view over the input at every layer, then the pipeline on it as RTP and as RTCP-mux.
pub fn rtp_rtcp_wire(data: &[u8]) {
    if let Ok(e) = EthernetFrame::new_checked(data) {
        let _ = (e.vlan_id(), e.ethertype(), e.dst_addr());
        if let Ok(ip) = Ipv4Packet::new_checked(e.payload()) {
            let _ = (ip.verify_checksum(), ip.options(), ip.is_fragment());
            if let Ok(u) = UdpPacket::new_checked(ip.payload()) {
                let _ = u.verify_checksum(ip.src_addr().into(), ip.dst_addr().into());
                assert!(u.payload().len() + 8 <= ip.payload().len());
            }
        }
        if let Ok(ip) = Ipv6Packet::new_checked(e.payload())
            && let Ok(u) = UdpPacket::new_checked(ip.payload())
        {
            let _ = u.verify_checksum(ip.src_addr().into(), ip.dst_addr().into());
        }
    }
    if let Ok(r) = RtpPacket::new_checked(data) {
        assert!(r.header_len() <= data.len());
        assert!(r.payload().len() <= data.len() - r.header_len());
        let _ = (r.extension_header(), r.csrc(0), r.ssrc(), r.padding_len());
        if let Ok(t) = TelephoneEvent::new_checked(r.payload()) {
            let _ = (t.event(), t.end(), t.duration());
        }
    }
    let _ = RtpPacket::new_checked_plain(data);
    let _ = RtcpCompound::validate(data);
    for p in RtcpCompound::new(data).take(64) {
        let Ok(p) = p else { break };
        assert!(p.as_bytes().len() <= data.len());
        let _ = (
            p.ssrc(),
            p.sender_info(),
            p.report_block(0),
            p.report_block(30),
        );
    }
    if let Ok(p) = RtcpPacket::new_checked(data) {
        let _ = p.count();
    }

    let local = SocketAddr::from(([10, 0, 0, 1], 20000));
    let mut pl = Pipeline::new(2, NoSrtp);
    let mut ev = Vec::new();
    for kind in [StreamKind::Rtp, StreamKind::RtpRtcpMux] {
        let entry = FlowEntry {
            key: FlowKey::new(local),
            kind,
            expected_remote: SocketAddr::from(([192, 0, 2, 1], 4000)),
            latch: LatchMode::LatchOnFirst,
            srtp_in: None,
            srtp_out: None,
            egress_local: SocketAddr::from(([10, 0, 0, 2], 30000)),
            egress_remote: SocketAddr::from(([192, 0, 2, 2], 5000)),
            link: None,
            payloads: vec![
                PayloadMap {
                    pt_in: 0,
                    pt_out: 8,
                    clock_rate: 8000,
                    telephone_event: false,
                },
                PayloadMap {
                    pt_in: 101,
                    pt_out: 96,
                    clock_rate: 8000,
                    telephone_event: true,
                },
            ],
            tag: FlowTag {
                call: 1,
                leg: Leg::A,
                stream: 0,
            },
            peer: None,
            timeout: 1,
            hold_timeout: 2,
            on_hold: false,
            rtcp_egress: None,
            peer_rtcp: None,
        };
        pl.apply(FlowCmd::Add(Box::new(entry)), 0, &mut ev);
        let mut buf = data.to_vec();
        let len = buf.len();
        buf.resize(len + 32, 0);
        for now in [1u64, 20_000_000] {
            let mut rx = RxPacket {
                buf: &mut buf,
                len,
                local,
                src: SocketAddr::from(([192, 0, 2, 1], 4000)),
            };
            if let Verdict::Forward(f) = pl.process(now, &mut rx, &mut ev) {
                assert!(f.len <= len + 32);
            }
        }
        pl.poll_timeouts(10, 4, &mut ev);
    }
}
