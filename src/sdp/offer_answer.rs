//! RFC 3264 offer/answer across the two legs of a B2BUA call, anchoring media on our addresses.
//!
//! An offer from leg X becomes an offer to leg Y: our address and ports for Y, the codecs both
//! legs' policies allow (in Y's order, PTs renumbered to Y's preference), SRTP per Y's policy with
//! our own keys. Y's answer becomes X's answer the same way. The session remembers per stream our
//! ports, our keys and what was negotiated, so re-offers (hold/resume, new ports or codecs) keep
//! what did not change, and exposes it all ([`NegotiatedStream`]) for programming media flows.

use super::SdpError;
use super::codec::{Codec, CodecPref};
use super::crypto::{CryptoAttr, CryptoKey, CryptoSuite, KeySource};
use super::parse::{Direction, Level, MediaLine, Origin, Sdp};
use super::rewrite::is_transport_attr;
use crate::media::flow::Leg;
use std::net::{IpAddr, SocketAddr};

/// SRTP (SDES) policy of a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpPolicy {
    /// Plain RTP; an offer insisting on RTP/SAVP gets that stream rejected.
    Off,
    /// Offer RTP/AVP with `a=crypto` (RFC 4568 best effort): SRTP if the answerer takes a key,
    /// plain RTP otherwise. Accept SRTP when offered.
    Optional,
    /// Offer RTP/SAVP with `a=crypto` per configured suite; plain RTP streams are rejected.
    Required,
}

/// What one leg allows and where our media lives on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegPolicy {
    /// Our media address on this leg (c= and o= toward it).
    pub media_addr: IpAddr,
    /// Allowed codecs in preference order.
    pub codecs: Vec<CodecPref>,
    pub srtp: SrtpPolicy,
    /// Suites in preference order (we offer these; we accept these).
    pub srtp_suites: Vec<CryptoSuite>,
    /// False when the leg's signaling is not TLS: SDES keys must not cross it in clear.
    pub sdes_allowed: bool,
    /// We accept RTP/RTCP multiplexing on this leg.
    pub rtcp_mux: bool,
    /// Force `a=ptime` toward this leg.
    pub ptime: Option<u32>,
    /// o= username toward this leg (topology hiding).
    pub origin_username: String,
}

/// Media ports on our addresses; the B2BUA backs this with `media::PortAllocator`.
pub trait PortSource {
    /// An even RTP port on `leg`'s media address (RTCP is the next port).
    fn allocate(&mut self, leg: Leg) -> Result<u16, SdpError>;
    fn release(&mut self, leg: Leg, rtp_port: u16);
}

/// A negotiated payload: its codec, RTP clock rate and payload type number on each leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiatedPayload {
    pub codec: Codec,
    pub clock_rate: u32,
    pub pt_a: u8,
    pub pt_b: u8,
}

impl NegotiatedPayload {
    pub fn pt(&self, leg: Leg) -> u8 {
        match leg {
            Leg::A => self.pt_a,
            Leg::B => self.pt_b,
        }
    }
}

/// One leg of one negotiated stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegMedia {
    /// Our RTP port toward this leg (0 when the stream is rejected).
    pub local_rtp_port: u16,
    /// Our RTCP port (the RTP port when rtcp-mux).
    pub local_rtcp_port: u16,
    pub local_addr: IpAddr,
    /// Where this leg receives RTP (None: unknown or c=0.0.0.0 hold).
    pub remote_rtp: Option<SocketAddr>,
    pub remote_rtcp: Option<SocketAddr>,
    pub rtcp_mux: bool,
    /// The key this leg sends with: unprotect what arrives from it.
    pub srtp_rx: Option<CryptoKey>,
    /// Our key toward this leg: protect what we send to it.
    pub srtp_tx: Option<CryptoKey>,
    /// The direction this leg declared.
    pub direction: Direction,
    /// Declared hold (sendonly/recvonly/inactive or c=0.0.0.0).
    pub hold: bool,
}

impl LegMedia {
    fn rejected(local_addr: IpAddr) -> Self {
        LegMedia {
            local_rtp_port: 0,
            local_rtcp_port: 0,
            local_addr,
            remote_rtp: None,
            remote_rtcp: None,
            rtcp_mux: false,
            srtp_rx: None,
            srtp_tx: None,
            direction: Direction::Inactive,
            hold: false,
        }
    }
}

/// The outcome for one m= line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedStream {
    pub index: usize,
    /// False for a rejected or disabled stream (port 0): no flows.
    pub active: bool,
    pub a: LegMedia,
    pub b: LegMedia,
    pub payloads: Vec<NegotiatedPayload>,
}

impl NegotiatedStream {
    pub fn leg(&self, l: Leg) -> &LegMedia {
        match l {
            Leg::A => &self.a,
            Leg::B => &self.b,
        }
    }

    /// `(pt arriving from `from`, pt to send to the other leg)` for the media pipeline.
    pub fn pt_map(&self, from: Leg) -> Vec<(u8, u8)> {
        self.payloads
            .iter()
            .map(|p| (p.pt(from), p.pt(from.other())))
            .collect()
    }

    /// The telephone-event payload (RFC 4733), if negotiated.
    pub fn telephone_event(&self) -> Option<&NegotiatedPayload> {
        self.payloads
            .iter()
            .find(|p| p.codec == Codec::TelephoneEvent)
    }

    /// Either leg declared hold: use the longer media timeout.
    pub fn on_hold(&self) -> bool {
        self.a.hold || self.b.hold
    }
}

fn li(l: Leg) -> usize {
    match l {
        Leg::A => 0,
        Leg::B => 1,
    }
}

#[derive(Debug, Clone)]
struct OfferedCodec {
    codec: Codec,
    clock: u32,
    pt_x: u8,
    pt_y: u8,
}

#[derive(Debug, Clone)]
struct PendingStream {
    accepted: bool,
    codecs: Vec<OfferedCodec>,
    /// X's accepted crypto line (their key).
    x_crypto: Option<CryptoAttr>,
    x_mux: bool,
    /// Crypto lines we offered to Y.
    y_crypto: Vec<CryptoAttr>,
    y_mux_offered: bool,
}

#[derive(Debug, Clone)]
struct Pending {
    from: Leg,
    offer: Sdp,
    streams: Vec<PendingStream>,
    new_ports: Vec<(Leg, u16)>,
}

#[derive(Debug, Clone, Default)]
struct StreamState {
    ports: [u16; 2],
    our_crypto: [Vec<CryptoAttr>; 2],
}

#[derive(Debug, Clone)]
struct OriginState {
    sess_id: String,
    version: u64,
    last: Vec<u8>,
}

/// The media half of a call: feeds offers and answers across legs A and B.
#[derive(Debug, Clone)]
pub struct MediaSession {
    policy: [LegPolicy; 2],
    state: Vec<StreamState>,
    negotiated: Vec<NegotiatedStream>,
    pending: Option<Pending>,
    origin: [Option<OriginState>; 2],
}

/// The direction a section effectively declares and whether it is a hold, mapping RFC 2543
/// `c=0.0.0.0` ("do not send to me") onto sendonly/inactive.
fn effective_direction(sdp: &Sdp, i: usize) -> Result<(Direction, bool, bool), SdpError> {
    let d = sdp.direction(i)?;
    let explicit = [Level::Media(i), Level::Session]
        .iter()
        .map(|l| sdp.attributes(*l))
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .flatten()
        .any(|(_, n, _)| Direction::from_attr(n).is_some());
    let conn_hold = sdp.effective_connection(i)?.is_some_and(|c| c.is_hold());
    let d = if conn_hold {
        match d {
            Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
            Direction::RecvOnly | Direction::Inactive => Direction::Inactive,
        }
    } else {
        d
    };
    Ok((d, d.is_hold(), explicit || conn_hold))
}

/// The remote RTP and RTCP addresses a section announces.
fn remote_addrs(
    sdp: &Sdp,
    i: usize,
    mux: bool,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>), SdpError> {
    let m = sdp.media(i)?;
    let ip = sdp
        .effective_connection(i)?
        .and_then(|c| c.addr)
        .filter(|a| !a.is_unspecified());
    let Some(ip) = ip else {
        return Ok((None, None));
    };
    if m.port == 0 {
        return Ok((None, None));
    }
    let rtp = SocketAddr::new(ip, m.port);
    if mux {
        return Ok((Some(rtp), Some(rtp)));
    }
    let mut rtcp = SocketAddr::new(ip, m.port.saturating_add(1));
    if let Some(Some(v)) = sdp.attribute(Level::Media(i), "rtcp")? {
        let mut f = v.split_whitespace();
        if let Some(p) = f.next().and_then(|p| p.parse::<u16>().ok()) {
            let addr = match (f.next(), f.next(), f.next()) {
                (Some("IN"), Some(_), Some(a)) => a.parse().unwrap_or(ip),
                _ => ip,
            };
            rtcp = SocketAddr::new(addr, p);
        }
    }
    Ok((Some(rtp), Some(rtcp)))
}

/// The codecs of a section's format list: (codec, clock, pt) for each format we know.
fn offered_codecs(sdp: &Sdp, i: usize, m: &MediaLine) -> Result<Vec<(Codec, u32, u8)>, SdpError> {
    let mut v = Vec::new();
    for f in &m.formats {
        let Ok(pt) = f.parse::<u8>() else { continue };
        if pt > 127 {
            continue;
        }
        let c = match sdp.rtpmap(i, f)? {
            Some((name, clock, _)) => Codec::from_name(&name).map(|c| (c, clock, pt)),
            None => Codec::from_static_pt(pt).map(|c| (c, c.default_clock(), pt)),
        };
        if let Some(c) = c {
            v.push(c);
        }
    }
    Ok(v)
}

fn strip_transport(sdp: &mut Sdp, level: Level) -> Result<(), SdpError> {
    sdp.remove_attrs(level, |n, _| is_transport_attr(n))?;
    Ok(())
}

fn proto_for(srtp: bool, feedback: bool) -> String {
    format!(
        "RTP/{}AVP{}",
        if srtp { "S" } else { "" },
        if feedback { "F" } else { "" }
    )
}

impl MediaSession {
    pub fn new(policy_a: LegPolicy, policy_b: LegPolicy) -> Self {
        MediaSession {
            policy: [policy_a, policy_b],
            state: Vec::new(),
            negotiated: Vec::new(),
            pending: None,
            origin: [None, None],
        }
    }

    pub fn policy(&self, leg: Leg) -> &LegPolicy {
        &self.policy[li(leg)]
    }

    /// What the last answer negotiated, per m= line.
    pub fn streams(&self) -> &[NegotiatedStream] {
        &self.negotiated
    }

    /// Our RTP port toward `leg` for stream `i` (0 if none); available from the offer on, so early
    /// media flows can be set up before the answer.
    pub fn local_port(&self, i: usize, leg: Leg) -> u16 {
        self.state.get(i).map_or(0, |s| s.ports[li(leg)])
    }

    /// Processes an offer arriving from `from` and returns the offer to send to the other leg.
    pub fn offer(
        &mut self,
        from: Leg,
        body: &[u8],
        ports: &mut dyn PortSource,
        keys: &mut dyn KeySource,
    ) -> Result<Vec<u8>, SdpError> {
        let offer = Sdp::parse(body)?;
        let mut new_ports = Vec::new();
        let r = self.offer_inner(from, offer, ports, keys, &mut new_ports);
        if r.is_err() {
            self.release_new(&new_ports, ports);
        }
        r
    }

    fn release_new(&mut self, new_ports: &[(Leg, u16)], ports: &mut dyn PortSource) {
        for &(leg, p) in new_ports {
            ports.release(leg, p);
            for s in &mut self.state {
                if s.ports[li(leg)] == p {
                    s.ports[li(leg)] = 0;
                }
            }
        }
    }

    fn offer_inner(
        &mut self,
        x: Leg,
        offer: Sdp,
        ports: &mut dyn PortSource,
        keys: &mut dyn KeySource,
        new_ports: &mut Vec<(Leg, u16)>,
    ) -> Result<Vec<u8>, SdpError> {
        let y = x.other();
        let n = offer.media_count();
        if n == 0 {
            return Err(SdpError::NoAcceptableMedia);
        }
        let src_origin = offer.origin()?;
        let mut out = offer.clone();
        let mut streams = Vec::with_capacity(n);
        let py = self.policy[li(y)].clone();
        for i in 0..n {
            let m = offer.media(i)?;
            let Some(mut ps) = self.decide_offer_stream(&offer, i, &m, x, y)? else {
                out.reject_stream(i)?;
                streams.push(PendingStream {
                    accepted: false,
                    codecs: Vec::new(),
                    x_crypto: None,
                    x_mux: false,
                    y_crypto: Vec::new(),
                    y_mux_offered: false,
                });
                continue;
            };
            if self.state.len() <= i {
                self.state.resize_with(i + 1, StreamState::default);
            }
            for leg in [x, y] {
                if self.state[i].ports[li(leg)] == 0 {
                    let p = ports.allocate(leg)?;
                    self.state[i].ports[li(leg)] = p;
                    new_ports.push((leg, p));
                }
            }
            let y_port = self.state[i].ports[li(y)];
            // Our keys toward Y: reuse the previous ones when the suites are the same, so a
            // re-offer that changes nothing else sends the same SDP (same o= version).
            let y_srtp = match py.srtp {
                SrtpPolicy::Off => false,
                SrtpPolicy::Optional => py.sdes_allowed,
                SrtpPolicy::Required => true,
            };
            if y_srtp {
                let prev = &self.state[i].our_crypto[li(y)];
                let same = prev.len() == py.srtp_suites.len()
                    && prev
                        .iter()
                        .zip(&py.srtp_suites)
                        .all(|(a, s)| a.suite == s.sdes_name());
                ps.y_crypto = if same {
                    prev.clone()
                } else {
                    py.srtp_suites
                        .iter()
                        .enumerate()
                        .map(|(t, s)| CryptoAttr::generate(t as u32 + 1, *s, keys))
                        .collect()
                };
            }
            let feedback = m.proto.ends_with('F');
            let ym = MediaLine {
                media: m.media.clone(),
                port: y_port,
                num_ports: None,
                proto: proto_for(py.srtp == SrtpPolicy::Required, feedback),
                formats: Vec::new(),
            };
            let map: Vec<(u8, u8)> = ps.codecs.iter().map(|c| (c.pt_x, c.pt_y)).collect();
            out.map_formats(i, &map)?;
            let mut mline = out.media(i)?;
            mline.port = ym.port;
            mline.num_ports = None;
            mline.proto = ym.proto;
            out.set_media_line(i, &mline)?;
            for c in &ps.codecs {
                if c.codec.static_pt() != Some(c.pt_y) {
                    out.ensure_rtpmap(i, c.pt_y, &c.codec.rtpmap(c.pt_y, c.clock))?;
                }
            }
            if out.find(Level::Media(i), b'c')?.is_some()
                || out.find(Level::Session, b'c')?.is_none()
            {
                out.set_connection(Level::Media(i), py.media_addr)?;
            }
            out.set_rtcp_attr(i, y_port.saturating_add(1), py.media_addr)?;
            out.remove_attrs(Level::Media(i), |n, _| n == "rtcp-mux")?;
            if py.rtcp_mux {
                out.add_attr(Level::Media(i), "rtcp-mux")?;
                ps.y_mux_offered = true;
            }
            out.set_crypto(i, &ps.y_crypto)?;
            strip_transport(&mut out, Level::Media(i))?;
            let (dir, _, explicit) = effective_direction(&offer, i)?;
            if explicit {
                out.set_direction(i, dir)?;
            }
            if let Some(p) = py.ptime {
                out.set_ptime(i, p)?;
            }
            streams.push(ps);
        }
        if !streams.iter().any(|s| s.accepted) {
            return Err(SdpError::NoAcceptableMedia);
        }
        self.finish_session_level(&mut out, y, &src_origin)?;
        self.pending = Some(Pending {
            from: x,
            offer,
            streams,
            new_ports: new_ports.clone(),
        });
        Ok(out.to_bytes())
    }

    fn finish_session_level(
        &mut self,
        out: &mut Sdp,
        to: Leg,
        src: &Origin,
    ) -> Result<(), SdpError> {
        let addr = self.policy[li(to)].media_addr;
        if out.find(Level::Session, b'c')?.is_some() {
            out.set_connection(Level::Session, addr)?;
        }
        strip_transport(out, Level::Session)?;
        // Every section now carries its direction explicitly where one was declared.
        out.remove_attrs(Level::Session, |n, _| Direction::from_attr(n).is_some())?;
        self.stamp_origin(to, out, src)
    }

    /// Writes our o= line toward `to`: the first source's sess-id, our username and address, and a
    /// version that increments only when the rest of the body changed (RFC 3264 section 8).
    fn stamp_origin(&mut self, to: Leg, sdp: &mut Sdp, src: &Origin) -> Result<(), SdpError> {
        let pol = &self.policy[li(to)];
        let mut o = Origin {
            username: pol.origin_username.clone(),
            sess_id: "0".into(),
            sess_version: 0,
            nettype: "IN".into(),
            addrtype: if pol.media_addr.is_ipv4() {
                "IP4"
            } else {
                "IP6"
            }
            .into(),
            address: pol.media_addr.to_string(),
        };
        sdp.set_origin(&o)?;
        let body = sdp.to_bytes();
        let st = self.origin[li(to)].get_or_insert_with(|| OriginState {
            sess_id: src.sess_id.clone(),
            version: src.sess_version,
            last: body.clone(),
        });
        if st.last != body {
            st.version = st.version.wrapping_add(1);
            st.last = body;
        }
        o.sess_id = st.sess_id.clone();
        o.sess_version = st.version;
        sdp.set_origin(&o)
    }

    /// Whether and how stream `i` of an offer from X can be anchored toward Y.
    fn decide_offer_stream(
        &self,
        offer: &Sdp,
        i: usize,
        m: &MediaLine,
        x: Leg,
        y: Leg,
    ) -> Result<Option<PendingStream>, SdpError> {
        let (px, py) = (&self.policy[li(x)], &self.policy[li(y)]);
        if m.port == 0 || m.media != "audio" || !m.is_rtp() {
            return Ok(None);
        }
        let cryptos = offer.crypto(i)?;
        let x_crypto = if (m.is_savp() || !cryptos.is_empty()) && px.srtp != SrtpPolicy::Off {
            if !px.sdes_allowed {
                if m.is_savp() {
                    return Err(SdpError::SdesNotAllowed { leg: x });
                }
                None // best-effort a=crypto on plain RTP/AVP: answer without it
            } else {
                cryptos
                    .iter()
                    .find(|c| {
                        c.usable_suite()
                            .is_some_and(|s| px.srtp_suites.contains(&s))
                    })
                    .cloned()
            }
        } else {
            None
        };
        if (m.is_savp() || px.srtp == SrtpPolicy::Required) && x_crypto.is_none() {
            return Ok(None);
        }
        if py.srtp == SrtpPolicy::Required && !py.sdes_allowed {
            return Err(SdpError::SdesNotAllowed { leg: y });
        }
        let offered = offered_codecs(offer, i, m)?;
        let mut kept: Vec<(Codec, u32, u8, Option<u8>)> = Vec::new();
        for pref in &py.codecs {
            if !px.codecs.iter().any(|p| p.codec == pref.codec) {
                continue;
            }
            for &(c, clock, pt) in offered.iter().filter(|(c, _, _)| *c == pref.codec) {
                if !kept.iter().any(|k| k.2 == pt) {
                    kept.push((c, clock, pt, pref.pt));
                }
            }
        }
        // telephone-event must share the clock of a kept audio codec (RFC 4733 2.1).
        let audio_clocks: Vec<u32> = kept
            .iter()
            .filter(|k| k.0 != Codec::TelephoneEvent)
            .map(|k| k.1)
            .collect();
        if audio_clocks.is_empty() {
            return Ok(None);
        }
        kept.retain(|k| k.0 != Codec::TelephoneEvent || audio_clocks.contains(&k.1));
        let mut used: Vec<u8> = kept.iter().filter_map(|k| k.0.static_pt()).collect();
        let mut codecs = Vec::with_capacity(kept.len());
        for (c, clock, pt_x, pref) in kept {
            // RFC 3264 8.3.2: a codec keeps its PT on a leg for the whole session.
            let previous = self
                .negotiated
                .get(i)
                .and_then(|n| {
                    n.payloads
                        .iter()
                        .find(|p| p.codec == c && p.clock_rate == clock)
                })
                .map(|p| p.pt(y));
            let pt_y = match c.static_pt() {
                Some(s) if s == pt_x => Some(s),
                _ => [previous, pref, Some(pt_x)]
                    .into_iter()
                    .flatten()
                    .find(|p| (96..=127).contains(p) && !used.contains(p))
                    .or_else(|| (96..=127u8).find(|p| !used.contains(p))),
            };
            let Some(pt_y) = pt_y else { continue };
            if !used.contains(&pt_y) {
                used.push(pt_y);
            }
            codecs.push(OfferedCodec {
                codec: c,
                clock,
                pt_x,
                pt_y,
            });
        }
        let x_mux = px.rtcp_mux && offer.attribute(Level::Media(i), "rtcp-mux")?.is_some();
        Ok(Some(PendingStream {
            accepted: true,
            codecs,
            x_crypto,
            x_mux,
            y_crypto: Vec::new(),
            y_mux_offered: false,
        }))
    }

    /// Processes the answer from `from` (the leg the offer went to) and returns the answer for the
    /// offerer. May be called again for the same offer (183 early media, then 200): an identical
    /// answer yields identical bytes.
    pub fn answer(
        &mut self,
        from: Leg,
        body: &[u8],
        ports: &mut dyn PortSource,
        keys: &mut dyn KeySource,
    ) -> Result<Vec<u8>, SdpError> {
        let pend = match &self.pending {
            Some(p) if p.from == from.other() => p.clone(),
            _ => return Err(SdpError::NoPendingOffer),
        };
        let ans = Sdp::parse(body)?;
        if ans.media_count() != pend.streams.len() {
            return Err(SdpError::AnswerMismatch {
                expected: pend.streams.len(),
                got: ans.media_count(),
            });
        }
        let (x, y) = (pend.from, from);
        let (px, py) = (self.policy[li(x)].clone(), self.policy[li(y)].clone());
        let mut out = ans.clone();
        let mut negotiated = Vec::with_capacity(pend.streams.len());
        let mut release = Vec::new();
        for (i, ps) in pend.streams.iter().enumerate() {
            let am = ans.media(i)?;
            let xm = pend.offer.media(i)?;
            if !ps.accepted || am.port == 0 {
                out.reject_stream(i)?;
                out.set_media_line(
                    i,
                    &MediaLine {
                        port: 0,
                        num_ports: None,
                        ..xm
                    },
                )?;
                if let Some(s) = self.state.get_mut(i) {
                    for leg in [x, y] {
                        if s.ports[li(leg)] != 0 {
                            release.push((leg, s.ports[li(leg)]));
                            s.ports[li(leg)] = 0;
                        }
                    }
                    s.our_crypto = [Vec::new(), Vec::new()];
                }
                negotiated.push(NegotiatedStream {
                    index: i,
                    active: false,
                    a: LegMedia::rejected(self.policy[0].media_addr),
                    b: LegMedia::rejected(self.policy[1].media_addr),
                    payloads: Vec::new(),
                });
                continue;
            }
            // Codecs Y chose, in Y's order, matched to what we offered.
            let mut chosen: Vec<OfferedCodec> = Vec::new();
            for f in &am.formats {
                let Ok(pt) = f.parse::<u8>() else { continue };
                let by_map = ans
                    .rtpmap(i, f)?
                    .and_then(|(n, clock, _)| Codec::from_name(&n).map(|c| (c, clock)));
                let hit = match by_map {
                    Some((c, clock)) => ps.codecs.iter().find(|o| o.codec == c && o.clock == clock),
                    None => ps.codecs.iter().find(|o| o.pt_y == pt),
                };
                if let Some(o) = hit
                    && !chosen.iter().any(|c| c.pt_x == o.pt_x)
                {
                    chosen.push(OfferedCodec {
                        pt_y: pt,
                        ..o.clone()
                    });
                }
            }
            if !chosen.iter().any(|c| c.codec != Codec::TelephoneEvent) {
                return Err(SdpError::AnswerUnacceptable {
                    stream: i,
                    reason: "no offered codec in answer",
                });
            }
            // SRTP toward Y: the answerer picks one of our tags and gives its own key.
            let y_answer_crypto = ans.crypto(i)?;
            let y_pick = y_answer_crypto.iter().find_map(|a| {
                let ours = ps
                    .y_crypto
                    .iter()
                    .find(|o| o.tag == a.tag && o.suite == a.suite)?;
                a.usable_suite().map(|_| (a.clone(), ours.clone()))
            });
            if y_pick.is_none() && (am.is_savp() || py.srtp == SrtpPolicy::Required) {
                return Err(SdpError::AnswerUnacceptable {
                    stream: i,
                    reason: "SRTP required but no usable a=crypto",
                });
            }
            let y_mux = ps.y_mux_offered && ans.attribute(Level::Media(i), "rtcp-mux")?.is_some();
            let (y_rtp, y_rtcp) = remote_addrs(&ans, i, y_mux)?;
            let (y_dir, y_hold, y_explicit) = effective_direction(&ans, i)?;
            let (x_rtp, x_rtcp) = remote_addrs(&pend.offer, i, ps.x_mux)?;
            let (x_dir, x_hold, _) = effective_direction(&pend.offer, i)?;

            let st = self.state.get(i).cloned().unwrap_or_default();
            let (x_port, y_port) = (st.ports[li(x)], st.ports[li(y)]);
            // Our answer key toward X: same tag and suite as X's accepted line; reuse on repeats.
            let x_ours = ps
                .x_crypto
                .as_ref()
                .map(|xc| match st.our_crypto[li(x)].first() {
                    Some(prev) if prev.tag == xc.tag && prev.suite == xc.suite => prev.clone(),
                    _ => {
                        let suite = xc
                            .usable_suite()
                            .unwrap_or(CryptoSuite::AesCm128HmacSha1_80);
                        CryptoAttr::generate(xc.tag, suite, keys)
                    }
                });

            let map: Vec<(u8, u8)> = chosen.iter().map(|c| (c.pt_y, c.pt_x)).collect();
            out.map_formats(i, &map)?;
            let mut mline = out.media(i)?;
            mline.media = xm.media.clone();
            mline.port = x_port;
            mline.num_ports = None;
            mline.proto = xm.proto.clone();
            out.set_media_line(i, &mline)?;
            for c in &chosen {
                if c.codec.static_pt() != Some(c.pt_x) {
                    out.ensure_rtpmap(i, c.pt_x, &c.codec.rtpmap(c.pt_x, c.clock))?;
                }
            }
            if out.find(Level::Media(i), b'c')?.is_some()
                || out.find(Level::Session, b'c')?.is_none()
            {
                out.set_connection(Level::Media(i), px.media_addr)?;
            }
            out.set_rtcp_attr(i, x_port.saturating_add(1), px.media_addr)?;
            out.remove_attrs(Level::Media(i), |n, _| n == "rtcp-mux")?;
            if ps.x_mux {
                out.add_attr(Level::Media(i), "rtcp-mux")?;
            }
            out.set_crypto(i, x_ours.as_slice())?;
            strip_transport(&mut out, Level::Media(i))?;
            if y_explicit {
                out.set_direction(i, y_dir)?;
            }
            if let Some(p) = px.ptime {
                out.set_ptime(i, p)?;
            }

            if let Some(s) = self.state.get_mut(i) {
                s.our_crypto[li(x)] = x_ours.iter().cloned().collect();
                s.our_crypto[li(y)] = ps.y_crypto.clone();
            }
            let leg_x = LegMedia {
                local_rtp_port: x_port,
                local_rtcp_port: if ps.x_mux {
                    x_port
                } else {
                    x_port.saturating_add(1)
                },
                local_addr: px.media_addr,
                remote_rtp: x_rtp,
                remote_rtcp: x_rtcp,
                rtcp_mux: ps.x_mux,
                srtp_rx: ps.x_crypto.as_ref().map(CryptoAttr::key),
                srtp_tx: x_ours.as_ref().map(CryptoAttr::key),
                direction: x_dir,
                hold: x_hold,
            };
            let leg_y = LegMedia {
                local_rtp_port: y_port,
                local_rtcp_port: if y_mux {
                    y_port
                } else {
                    y_port.saturating_add(1)
                },
                local_addr: py.media_addr,
                remote_rtp: y_rtp,
                remote_rtcp: y_rtcp,
                rtcp_mux: y_mux,
                srtp_rx: y_pick.as_ref().map(|(theirs, _)| theirs.key()),
                srtp_tx: y_pick.as_ref().map(|(_, ours)| ours.key()),
                direction: y_dir,
                hold: y_hold,
            };
            let payloads = chosen
                .iter()
                .map(|c| {
                    let (pt_a, pt_b) = if x == Leg::A {
                        (c.pt_x, c.pt_y)
                    } else {
                        (c.pt_y, c.pt_x)
                    };
                    NegotiatedPayload {
                        codec: c.codec,
                        clock_rate: c.clock,
                        pt_a,
                        pt_b,
                    }
                })
                .collect();
            let (a, b) = if x == Leg::A {
                (leg_x, leg_y)
            } else {
                (leg_y, leg_x)
            };
            negotiated.push(NegotiatedStream {
                index: i,
                active: true,
                a,
                b,
                payloads,
            });
        }
        let src_origin = ans.origin()?;
        self.finish_session_level(&mut out, x, &src_origin)?;
        for (leg, p) in release {
            ports.release(leg, p);
        }
        self.negotiated = negotiated;
        Ok(out.to_bytes())
    }

    /// The offer we forwarded was refused (4xx/5xx): release the ports it allocated.
    pub fn offer_failed(&mut self, ports: &mut dyn PortSource) {
        if let Some(p) = self.pending.take() {
            self.release_new(&p.new_ports, ports);
        }
    }

    /// Call teardown: release every port.
    pub fn close(&mut self, ports: &mut dyn PortSource) {
        for s in &mut self.state {
            for leg in [Leg::A, Leg::B] {
                let p = s.ports[li(leg)];
                if p != 0 {
                    ports.release(leg, p);
                    s.ports[li(leg)] = 0;
                }
            }
        }
        self.pending = None;
    }
}
