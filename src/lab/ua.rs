//! The lab's user agents, sans-IO: the carrier's UAC (one INVITE per call, ACK, BYE) and the cloud's UAS
//! (answers the translated number with SRTP, records what it saw on the wire). They build message text and
//! consume parsed messages; `lab::run` owns the sockets and the clock.
use std::net::SocketAddr;

use crate::sdp::{Level, Sdp};
use crate::sip::{Message, Method};
use crate::srtp::{MasterKey, Suite};

/// The corporate number the carrier dials and the E.164 number the cloud has claimed (the embedded
/// default config's rule translates one into the other).
pub const DIALED: &str = "15551234567";
pub const TRANSLATED: &str = "+18005551234";
pub const CALLER: &str = "15557654321";
/// RFC 4733 telephone-event payload type the carrier offers.
pub const DTMF_PT: u8 = 101;
/// The context header the carrier adds for the cloud's AI agent (passed through by the SBC).
pub const X_CONTEXT: &str = "X-Lab-Call";

fn with_len(head: &str, body: &str) -> String {
    if body.is_empty() {
        format!("{head}Content-Length: 0\r\n\r\n")
    } else {
        format!(
            "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

/// Where a call's media goes, from an SDP body: the first audio stream's address, its crypto (if SAVP)
/// and the telephone-event payload type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpMedia {
    pub addr: SocketAddr,
    pub savp: bool,
    /// `(suite, key params "inline:...")` of the first usable `a=crypto`.
    pub crypto: Option<(Suite, String)>,
    pub dtmf_pt: Option<u8>,
}

/// Reads [`SdpMedia`] from a body; the error says what is missing.
pub fn sdp_media(body: &[u8]) -> Result<SdpMedia, String> {
    let sdp = Sdp::parse(body).map_err(|e| format!("SDP: {e}"))?;
    let i = (0..sdp.media_count())
        .find(|&i| sdp.media(i).is_ok_and(|m| m.media == "audio"))
        .ok_or("SDP without an audio stream")?;
    let m = sdp.media(i).map_err(|e| format!("SDP: {e}"))?;
    let ip = sdp
        .effective_connection(i)
        .map_err(|e| format!("SDP: {e}"))?
        .and_then(|c| c.addr)
        .ok_or("SDP without a c= address")?;
    let mut crypto = None;
    let mut dtmf_pt = None;
    for (_, name, value) in sdp
        .attributes(Level::Media(i))
        .map_err(|e| format!("SDP: {e}"))?
    {
        let Some(v) = value else { continue };
        if name == "crypto" && crypto.is_none() {
            let mut it = v.split_whitespace();
            let (_tag, suite, params) = (it.next(), it.next(), it.next());
            if let (Some(suite), Some(params)) = (suite.and_then(Suite::from_sdes_name), params)
                && params.starts_with("inline:")
            {
                crypto = Some((suite, params.to_owned()));
            }
        }
        if name == "rtpmap"
            && let Some((pt, enc)) = v.split_once(' ')
            && enc
                .trim()
                .to_ascii_lowercase()
                .starts_with("telephone-event/")
        {
            dtmf_pt = pt.parse().ok();
        }
    }
    Ok(SdpMedia {
        addr: SocketAddr::new(ip, m.port),
        savp: m.is_savp(),
        crypto,
        dtmf_pt,
    })
}

/// The carrier side of one call.
#[derive(Debug, Clone)]
pub struct CarrierCall {
    pub index: usize,
    pub call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    cseq: u32,
    /// Our SIP address and the SBC's.
    pub local: SocketAddr,
    pub sbc: SocketAddr,
    /// Our RTP address (what our SDP offers).
    pub media: SocketAddr,
    pub state: CallState,
    /// The SBC's media address toward us, from its answer.
    pub sbc_media: Option<SdpMedia>,
    /// A response to the INVITE arrived: retransmissions stop (RFC 3261 17.1.1.2, Timer A).
    pub heard: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    Inviting,
    Ringing,
    Answered,
    Failed(u16),
    ByeSent,
    Ended,
}

/// What the carrier must do after a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UacAction {
    Nothing,
    /// Send this (ACK) to the SBC.
    Send(String),
    /// The call was answered; send the ACK.
    Answered(String),
    /// Final failure (the ACK for a non-2xx is sent too).
    Failed(u16, String),
    /// The BYE was answered.
    Ended,
}

impl CarrierCall {
    pub fn new(index: usize, local: SocketAddr, sbc: SocketAddr, media: SocketAddr) -> CarrierCall {
        CarrierCall {
            index,
            call_id: format!("lab-{index}-{:08x}@{}", rand32(), local.ip()),
            from_tag: format!("car{index}x{:x}", rand32()),
            to_tag: None,
            cseq: 1,
            local,
            sbc,
            media,
            state: CallState::Inviting,
            sbc_media: None,
            heard: false,
        }
    }

    fn offer(&self) -> String {
        let ip = self.media.ip();
        format!(
            "v=0\r\no=carrier {i} 1 IN IP4 {ip}\r\ns=lab\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 {DTMF_PT}\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:{DTMF_PT} telephone-event/8000\r\na=fmtp:{DTMF_PT} 0-15\r\na=ptime:20\r\na=sendrecv\r\n",
            i = self.index,
            port = self.media.port()
        )
    }

    fn via(&self, branch: &str) -> String {
        format!("Via: SIP/2.0/UDP {};branch=z9hG4bK{branch}\r\n", self.local)
    }

    /// The initial INVITE to the corporate number, with an `X-` context header for the agent.
    pub fn invite(&self) -> String {
        with_len(
            &format!(
                "INVITE sip:{DIALED}@{sbc} SIP/2.0\r\n{via}Max-Forwards: 70\r\n\
                 From: \"Lab caller\" <sip:{CALLER}@{ip}>;tag={ft}\r\nTo: <sip:{DIALED}@{sbc}>\r\n\
                 Call-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:{CALLER}@{local}>\r\n\
                 {X_CONTEXT}: {i}\r\nUser-Agent: tollgate-lab\r\n",
                sbc = self.sbc,
                via = self.via(&format!("inv{}", self.index)),
                ip = self.local.ip(),
                local = self.local,
                ft = self.from_tag,
                cid = self.call_id,
                i = self.index,
            ),
            &self.offer(),
        )
    }

    fn in_dialog(&self, method: &str, cseq: u32, branch: &str) -> String {
        with_len(
            &format!(
                "{method} sip:{DIALED}@{sbc} SIP/2.0\r\n{via}Max-Forwards: 70\r\n\
                 From: \"Lab caller\" <sip:{CALLER}@{ip}>;tag={ft}\r\nTo: <sip:{DIALED}@{sbc}>;tag={tt}\r\n\
                 Call-ID: {cid}\r\nCSeq: {cseq} {method}\r\n",
                sbc = self.sbc,
                via = self.via(branch),
                ip = self.local.ip(),
                ft = self.from_tag,
                tt = self.to_tag.as_deref().unwrap_or(""),
                cid = self.call_id,
            ),
            "",
        )
    }

    /// The BYE that ends the call (after it was answered).
    pub fn bye(&mut self) -> String {
        self.cseq += 1;
        self.state = CallState::ByeSent;
        self.in_dialog(
            "BYE",
            self.cseq,
            &format!("bye{}x{}", self.index, self.cseq),
        )
    }

    /// Consumes a response to our INVITE or BYE.
    pub fn on_response<B: AsRef<[u8]>>(&mut self, msg: &Message<B>) -> UacAction {
        let Some(code) = msg.status() else {
            return UacAction::Nothing;
        };
        let cseq = msg.cseq();
        match cseq.method {
            Method::Invite => {
                self.heard = true;
                if let Some(t) = msg.to_tag() {
                    self.to_tag = Some(String::from_utf8_lossy(t).into_owned());
                }
                match code {
                    100..=199 => {
                        if code > 100 && self.state == CallState::Inviting {
                            self.state = CallState::Ringing;
                        }
                        UacAction::Nothing
                    }
                    200..=299 => {
                        let ack = self.in_dialog("ACK", 1, &format!("ack{}", self.index));
                        if matches!(self.state, CallState::Inviting | CallState::Ringing) {
                            self.state = CallState::Answered;
                            match sdp_media(msg.body()) {
                                Ok(m) => self.sbc_media = Some(m),
                                Err(e) => {
                                    self.state = CallState::Failed(code);
                                    return UacAction::Failed(code, format!("answer: {e}"));
                                }
                            }
                            UacAction::Answered(ack)
                        } else {
                            // A retransmitted 200: ACK it again.
                            UacAction::Send(ack)
                        }
                    }
                    _ => {
                        let ack = self.in_dialog("ACK", 1, &format!("inv{}", self.index));
                        let first = !matches!(self.state, CallState::Failed(_));
                        self.state = CallState::Failed(code);
                        if first {
                            UacAction::Failed(code, ack)
                        } else {
                            UacAction::Send(ack)
                        }
                    }
                }
            }
            Method::Bye if code >= 200 && self.state == CallState::ByeSent => {
                self.state = CallState::Ended;
                UacAction::Ended
            }
            _ => UacAction::Nothing,
        }
    }
}

/// What the cloud UAS saw of one call.
#[derive(Debug, Clone)]
pub struct CloudCall {
    pub call_id: String,
    /// User part of the Request-URI and of To, as received.
    pub ruri_user: String,
    pub to_user: String,
    /// Value of the carrier's `X-` context header, if it arrived.
    pub x_context: Option<String>,
    /// The SBC's media toward us, with the key it protects with.
    pub sbc_media: SdpMedia,
    /// Our media address (what our answer says) and our key.
    pub media: SocketAddr,
    /// Our SRTP key (what our answer carries); `None` when the call is plain RTP.
    pub key: Option<MasterKey>,
    pub acked: bool,
    pub bye_received: bool,
}

/// The cloud side: answers every INVITE for the translated number (with SRTP when offered, and refuses
/// plain RTP when `require_srtp`); refuses anything else.
pub struct CloudUas {
    pub local: SocketAddr,
    pub require_srtp: bool,
    pub calls: Vec<CloudCall>,
    /// Media address for the next call: `media_base` port + 2 per call.
    media_base: SocketAddr,
    /// Requests refused (wrong number, no SRTP offered, bad SDP), with the reason.
    pub refused: Vec<String>,
}

impl CloudUas {
    pub fn new(local: SocketAddr, media_base: SocketAddr, require_srtp: bool) -> CloudUas {
        CloudUas {
            local,
            require_srtp,
            calls: Vec::new(),
            media_base,
            refused: Vec::new(),
        }
    }

    /// The media address the `i`th answered call uses.
    pub fn media_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.media_base.ip(), self.media_base.port() + 2 * i as u16)
    }

    fn reply<B: AsRef<[u8]>>(
        &self,
        req: &Message<B>,
        code: &str,
        to_tag: &str,
        body: &str,
    ) -> String {
        reply(req, code, to_tag, self.local, body)
    }

    /// Consumes a request; returns the responses to send back to its source, in order.
    pub fn on_request<B: AsRef<[u8]>>(&mut self, msg: &Message<B>) -> Vec<String> {
        let Some(method) = msg.method() else {
            return Vec::new();
        };
        let call_id = String::from_utf8_lossy(msg.call_id()).into_owned();
        let known = self.calls.iter().position(|c| c.call_id == call_id);
        match method {
            Method::Invite if known.is_some() => {
                // A retransmission: the call is already answered, send the same answer again.
                let i = known.unwrap_or_default();
                vec![self.reply(msg, "200 OK", &format!("cld{i}"), &self.answer(i))]
            }
            Method::Invite => {
                let user = |u: Option<crate::sip::Uri<'_>>| {
                    u.and_then(|u| u.user)
                        .map(|u| String::from_utf8_lossy(u).into_owned())
                        .unwrap_or_default()
                };
                let ruri_user = user(msg.request_uri());
                let to_user = user(msg.to().map(|n| n.uri));
                let refuse = |s: &mut Self, code: &str, why: String| {
                    s.refused.push(format!("{call_id}: {why}"));
                    vec![s.reply(msg, code, "refused", "")]
                };
                if ruri_user != TRANSLATED {
                    return refuse(
                        self,
                        "404 Not Found",
                        format!("called {ruri_user:?}, not {TRANSLATED}"),
                    );
                }
                let sbc_media = match sdp_media(msg.body()) {
                    Ok(m) => m,
                    Err(e) => return refuse(self, "488 Not Acceptable Here", e),
                };
                let key = match &sbc_media.crypto {
                    Some((suite, _)) if sbc_media.savp => match MasterKey::generate(*suite) {
                        Ok(k) => Some(k),
                        Err(e) => {
                            return refuse(self, "500 Server Internal Error", format!("key: {e}"));
                        }
                    },
                    _ if self.require_srtp => {
                        return refuse(
                            self,
                            "488 Not Acceptable Here",
                            "no SRTP offered to the cloud".to_owned(),
                        );
                    }
                    _ => None,
                };
                let i = self.calls.len();
                self.calls.push(CloudCall {
                    call_id,
                    ruri_user,
                    to_user,
                    x_context: msg
                        .header_by_name(X_CONTEXT.as_bytes())
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                    sbc_media,
                    media: self.media_addr(i),
                    key,
                    acked: false,
                    bye_received: false,
                });
                let tag = format!("cld{i}");
                vec![
                    self.reply(msg, "180 Ringing", &tag, ""),
                    self.reply(msg, "200 OK", &tag, &self.answer(i)),
                ]
            }
            Method::Ack => {
                if let Some(i) = known {
                    self.calls[i].acked = true;
                }
                Vec::new()
            }
            Method::Bye => {
                if let Some(i) = known {
                    self.calls[i].bye_received = true;
                    vec![self.reply(msg, "200 OK", "", "")]
                } else {
                    vec![self.reply(msg, "481 Call/Transaction Does Not Exist", "", "")]
                }
            }
            Method::Options => vec![self.reply(msg, "200 OK", "opt", "")],
            _ => vec![self.reply(msg, "405 Method Not Allowed", "x", "")],
        }
    }

    fn answer(&self, i: usize) -> String {
        let c = &self.calls[i];
        let ip = c.media.ip();
        let pt = c.sbc_media.dtmf_pt.unwrap_or(DTMF_PT);
        let (proto, crypto) = match &c.key {
            Some(k) => (
                "RTP/SAVP",
                format!(
                    "a=crypto:1 {} {}\r\n",
                    k.suite().sdes_name(),
                    k.to_sdes_inline()
                ),
            ),
            None => ("RTP/AVP", String::new()),
        };
        format!(
            "v=0\r\no=cloud {i} 1 IN IP4 {ip}\r\ns=agent\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} {proto} 0 {pt}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:{pt} telephone-event/8000\r\n\
             a=ptime:20\r\na=sendrecv\r\n{crypto}",
            port = c.media.port(),
        )
    }
}

/// A response to `req` (its Via, From, To, Call-ID and CSeq), adding `to_tag` when To has none.
pub fn reply<B: AsRef<[u8]>>(
    req: &Message<B>,
    code: &str,
    to_tag: &str,
    contact: SocketAddr,
    body: &str,
) -> String {
    use crate::sip::HeaderName as H;
    let mut h = format!("SIP/2.0 {code}\r\n");
    for v in req.header_values(H::Via) {
        h.push_str(&format!("Via: {}\r\n", String::from_utf8_lossy(v)));
    }
    let hv = |n| String::from_utf8_lossy(req.header(n).unwrap_or_default()).into_owned();
    let to = hv(H::To);
    if req.to_tag().is_some() || to_tag.is_empty() {
        h.push_str(&format!("To: {to}\r\n"));
    } else {
        h.push_str(&format!("To: {to};tag={to_tag}\r\n"));
    }
    h.push_str(&format!(
        "From: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:agent@{contact}>\r\nServer: tollgate-lab\r\n",
        hv(H::From),
        hv(H::CallId),
        hv(H::CSeq),
    ));
    with_len(&h, body)
}

fn rand32() -> u32 {
    let mut b = [0u8; 4];
    // The ids only need to differ between runs; a failing getrandom leaves zeros and the index keeps them
    // apart within one run.
    let _ = getrandom::fill(&mut b);
    u32::from_le_bytes(b)
}

/// An RFC 4733 telephone-event packet for `digit`; `end` sets the E bit.
pub fn dtmf_packet(
    ssrc: u32,
    seq: u16,
    ts: u32,
    pt: u8,
    digit: u8,
    end: bool,
    duration: u16,
) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = 0x80;
    // Marker on the first packet of the event.
    p[1] = pt | if seq == 0 { 0x80 } else { 0 };
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p[12] = digit;
    p[13] = if end { 0x80 | 10 } else { 10 };
    p[14..16].copy_from_slice(&duration.to_be_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn parse(s: &str) -> Message<Vec<u8>> {
        Message::parse(s.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e:?}\n{s}"))
    }

    /// What an SBC would send to the cloud for the carrier's INVITE: the translated number and SRTP.
    fn translated_invite(carrier: &CarrierCall, key: &MasterKey) -> String {
        let inv = carrier.invite();
        let body = format!(
            "v=0\r\no=tg 1 1 IN IP4 10.9.2.1\r\ns=-\r\nc=IN IP4 10.9.2.1\r\nt=0 0\r\n\
             m=audio 30002 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 {}\r\n",
            key.to_sdes_inline()
        );
        let head = inv
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .replace(
                &format!("sip:{DIALED}@10.9.1.1:5060 SIP"),
                &format!("sip:{TRANSLATED}@10.9.2.2:5080 SIP"),
            )
            .lines()
            .filter(|l| !l.starts_with("Content-Length"))
            .map(|l| format!("{l}\r\n"))
            .collect::<String>();
        format!("{head}Content-Length: {}\r\n\r\n{body}", body.len())
    }

    #[test]
    fn a_call_is_invited_answered_with_srtp_acked_and_hung_up() {
        let mut car = CarrierCall::new(
            3,
            sa("10.9.1.2:5060"),
            sa("10.9.1.1:5060"),
            sa("10.9.1.2:20006"),
        );
        let inv = parse(&car.invite());
        assert_eq!(inv.request_uri().unwrap().user, Some(DIALED.as_bytes()));
        let offer = sdp_media(inv.body()).unwrap();
        assert_eq!(offer.addr, sa("10.9.1.2:20006"));
        assert_eq!((offer.savp, offer.dtmf_pt), (false, Some(DTMF_PT)));

        let tg_key = MasterKey::generate(Suite::AesCm128HmacSha1_80).unwrap();
        let mut uas = CloudUas::new(sa("10.9.2.2:5080"), sa("10.9.2.2:20000"), true);
        let replies = uas.on_request(&parse(&translated_invite(&car, &tg_key)));
        assert_eq!(replies.len(), 2);
        assert!(replies[0].starts_with("SIP/2.0 180"));
        let c = &uas.calls[0];
        assert_eq!(
            (c.ruri_user.as_str(), c.x_context.as_deref()),
            (TRANSLATED, Some("3"))
        );
        assert_eq!(
            c.sbc_media.crypto.as_ref().unwrap().1,
            tg_key.to_sdes_inline()
        );

        // The carrier sees the answer (here straight from the UAS: same headers the SBC would relay).
        assert_eq!(car.on_response(&parse(&replies[0])), UacAction::Nothing);
        assert_eq!(car.state, CallState::Ringing);
        let ok = parse(&replies[1]);
        let UacAction::Answered(ack) = car.on_response(&ok) else {
            panic!("not answered")
        };
        let m = car.sbc_media.clone().unwrap();
        assert!(
            m.savp && m.crypto.is_some(),
            "the answer carries the cloud's key: {m:?}"
        );
        let ack = parse(&ack);
        assert_eq!(ack.to_tag(), Some(&b"cld0"[..]));
        assert_eq!(ack.cseq().seq, 1);
        assert!(uas.on_request(&ack).is_empty());
        assert!(uas.calls[0].acked);
        // A retransmitted 200 is ACKed again, not answered twice.
        assert!(matches!(car.on_response(&ok), UacAction::Send(_)));

        let bye = parse(&car.bye());
        assert_eq!(bye.cseq().seq, 2);
        let r = uas.on_request(&bye);
        assert!(r[0].starts_with("SIP/2.0 200"), "{r:?}");
        assert!(uas.calls[0].bye_received);
        assert_eq!(car.on_response(&parse(&r[0])), UacAction::Ended);
        assert_eq!(car.state, CallState::Ended);
    }

    #[test]
    fn the_cloud_refuses_an_untranslated_number_and_plain_rtp() {
        let car = CarrierCall::new(
            0,
            sa("10.9.1.2:5060"),
            sa("10.9.1.1:5060"),
            sa("10.9.1.2:20000"),
        );
        let mut uas = CloudUas::new(sa("10.9.2.2:5080"), sa("10.9.2.2:20000"), true);
        // Untranslated: the carrier's INVITE as it is.
        let r = uas.on_request(&parse(&car.invite()));
        assert!(r[0].starts_with("SIP/2.0 404"), "{r:?}");
        // Translated but plain RTP.
        let key = MasterKey::generate(Suite::AesCm128HmacSha1_80).unwrap();
        let plain = translated_invite(&car, &key)
            .replace("RTP/SAVP", "RTP/AVP")
            .replace(
                &format!(
                    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 {}\r\n",
                    key.to_sdes_inline()
                ),
                "",
            );
        let plain = parse(&plain.replace(
            &plain[plain.find("Content-Length").unwrap()..plain.find("\r\n\r\n").unwrap()],
            &format!(
                "Content-Length: {}",
                plain.split("\r\n\r\n").nth(1).unwrap().len()
            ),
        ));
        let r = uas.on_request(&plain);
        assert!(r[0].starts_with("SIP/2.0 488"), "{r:?}");
        assert_eq!(uas.refused.len(), 2);
        assert!(uas.calls.is_empty());
    }

    #[test]
    fn a_failed_invite_is_acked_once_and_reported() {
        let mut car = CarrierCall::new(
            0,
            sa("10.9.1.2:5060"),
            sa("10.9.1.1:5060"),
            sa("10.9.1.2:20000"),
        );
        let inv = parse(&car.invite());
        let mut uas = CloudUas::new(sa("10.9.2.2:5080"), sa("10.9.2.2:20000"), true);
        let r = uas.on_request(&inv);
        let UacAction::Failed(404, ack) = car.on_response(&parse(&r[0])) else {
            panic!("not failed")
        };
        assert!(ack.starts_with("ACK "));
        assert!(matches!(car.on_response(&parse(&r[0])), UacAction::Send(_)));
        assert_eq!(car.state, CallState::Failed(404));
    }

    #[test]
    fn dtmf_packet_is_rfc4733() {
        let p = dtmf_packet(7, 0, 160, 101, 5, false, 160);
        assert_eq!(p[1], 0x80 | 101);
        assert_eq!((p[12], p[13] & 0x80), (5, 0));
        let p = dtmf_packet(7, 2, 160, 101, 5, true, 800);
        assert_eq!(
            (p[1], p[13] & 0x80, u16::from_be_bytes([p[14], p[15]])),
            (101, 0x80, 800)
        );
    }
}
