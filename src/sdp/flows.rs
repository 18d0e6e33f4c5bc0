//! From a negotiated stream to the media flows that anchor it (DESIGN.md "The flow"): one flow
//! per local address we receive on (RTP, and RTCP unless muxed) on each leg, each forwarding to
//! the other leg. The B2BUA hands these to a `media::FlowSink`.

use super::codec::Codec;
use super::crypto::CryptoKey;
use super::offer_answer::{LegMedia, NegotiatedStream};
use crate::media::flow::{
    FlowEntry, FlowKey, FlowTag, LatchMode, Leg, Nanos, PayloadMap, SrtpKeying, StreamKind,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Per-call knobs that SDP does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowOptions {
    pub call: u64,
    pub latch_a: LatchMode,
    pub latch_b: LatchMode,
    pub timeout: Nanos,
    pub hold_timeout: Nanos,
}

fn keying(k: &Option<CryptoKey>) -> Option<SrtpKeying> {
    k.as_ref().map(|k| SrtpKeying {
        suite: k.suite.clone(),
        inline_key: k.inline_key.clone(),
    })
}

fn unspecified(ip: IpAddr) -> SocketAddr {
    match ip {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
    }
}

fn rtp_local(l: &LegMedia) -> SocketAddr {
    SocketAddr::new(l.local_addr, l.local_rtp_port)
}

fn rtcp_local(l: &LegMedia) -> SocketAddr {
    SocketAddr::new(l.local_addr, l.local_rtcp_port)
}

impl NegotiatedStream {
    /// The flow entries for this stream (empty when rejected). For a leg with rtcp-mux, one
    /// `RtpRtcpMux` flow; otherwise an `Rtp` and an `Rtcp` flow. Payload types map to the other
    /// leg's numbers; SRTP unprotects with the sender's key and protects with our key toward the
    /// receiver.
    pub fn flow_entries(&self, o: &FlowOptions) -> Vec<FlowEntry> {
        if !self.active {
            return Vec::new();
        }
        let mut v = Vec::with_capacity(4);
        for from in [Leg::A, Leg::B] {
            let (src, dst) = (self.leg(from), self.leg(from.other()));
            let latch = if from == Leg::A { o.latch_a } else { o.latch_b };
            let payloads: Vec<PayloadMap> = self
                .payloads
                .iter()
                .map(|p| PayloadMap {
                    pt_in: p.pt(from),
                    pt_out: p.pt(from.other()),
                    clock_rate: p.clock_rate,
                    telephone_event: p.codec == Codec::TelephoneEvent,
                })
                .collect();
            let tag = FlowTag {
                call: o.call,
                leg: from,
                stream: self.index as u16,
            };
            let base = FlowEntry {
                key: FlowKey::new(rtp_local(src)),
                kind: if src.rtcp_mux {
                    StreamKind::RtpRtcpMux
                } else {
                    StreamKind::Rtp
                },
                expected_remote: src.remote_rtp.unwrap_or(unspecified(src.local_addr)),
                latch,
                srtp_in: keying(&src.srtp_rx),
                srtp_out: keying(&dst.srtp_tx),
                egress_local: rtp_local(dst),
                egress_remote: dst.remote_rtp.unwrap_or(unspecified(dst.local_addr)),
                link: None,
                payloads,
                tag,
                peer: Some(FlowKey::new(rtp_local(dst))),
                timeout: o.timeout,
                hold_timeout: o.hold_timeout,
                on_hold: self.on_hold(),
                rtcp_egress: None,
                peer_rtcp: None,
            };
            let mut rtp = base.clone();
            if src.rtcp_mux && !dst.rtcp_mux {
                // RTCP arrives muxed here but leaves on the other leg's separate RTCP port.
                rtp.rtcp_egress = Some((
                    rtcp_local(dst),
                    dst.remote_rtcp.unwrap_or(unspecified(dst.local_addr)),
                ));
                rtp.peer_rtcp = Some(FlowKey::new(rtcp_local(dst)));
            }
            v.push(rtp);
            if !src.rtcp_mux {
                v.push(FlowEntry {
                    key: FlowKey::new(rtcp_local(src)),
                    kind: StreamKind::Rtcp,
                    expected_remote: src.remote_rtcp.unwrap_or(unspecified(src.local_addr)),
                    egress_local: rtcp_local(dst),
                    egress_remote: dst.remote_rtcp.unwrap_or(unspecified(dst.local_addr)),
                    payloads: Vec::new(),
                    peer: Some(FlowKey::new(rtcp_local(dst))),
                    ..base
                });
            }
        }
        v
    }
}
