//! Typed views of the header values an SBC reads. Each is parsed on demand from the raw value span and
//! borrows from it; nothing here allocates.

use super::scan::find;
use super::scan::{
    CommaSplit, is_lws, is_token, is_token_str, parse_u64, quoted_len, trim_lws, trim_lws_start,
};
use super::uri::{Host, Params, Uri, UriError, parse_hostport};
use std::net::IpAddr;

/// A header value that does not follow its grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueError;

impl From<UriError> for ValueError {
    fn from(_: UriError) -> Self {
        ValueError
    }
}

/// A request method. Methods are case-sensitive; anything unknown is an `Extension` (answer 501).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Subscribe,
    Notify,
    Publish,
    Info,
    Refer,
    Message,
    Update,
    Extension(&'a [u8]),
}

impl<'a> Method<'a> {
    /// Classifies a token. The caller has checked it is a token.
    pub fn from_bytes(b: &'a [u8]) -> Method<'a> {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"UPDATE" => Method::Update,
            other => Method::Extension(other),
        }
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Method::Invite => b"INVITE",
            Method::Ack => b"ACK",
            Method::Bye => b"BYE",
            Method::Cancel => b"CANCEL",
            Method::Options => b"OPTIONS",
            Method::Register => b"REGISTER",
            Method::Prack => b"PRACK",
            Method::Subscribe => b"SUBSCRIBE",
            Method::Notify => b"NOTIFY",
            Method::Publish => b"PUBLISH",
            Method::Info => b"INFO",
            Method::Refer => b"REFER",
            Method::Message => b"MESSAGE",
            Method::Update => b"UPDATE",
            Method::Extension(b) => b,
        }
    }
}

/// `name-addr` or `addr-spec` followed by header parameters: From, To, Contact, Route, Record-Route,
/// Refer-To, Referred-By, P-Asserted-Identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name: the inside of the quotes (escapes kept) or the bare tokens.
    pub display: Option<&'a [u8]>,
    pub uri: Uri<'a>,
    /// `true` when the URI was enclosed in `<>`.
    pub angle: bool,
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    pub fn parse(value: &'a [u8]) -> Result<NameAddr<'a>, ValueError> {
        let v = trim_lws(value);
        let (display, uri_start) = if v.first() == Some(&b'"') {
            let n = quoted_len(v).ok_or(ValueError)?;
            let inner = v.get(1..n - 1).ok_or(ValueError)?;
            let after = trim_lws_start(v.get(n..).unwrap_or_default());
            if after.first() != Some(&b'<') {
                return Err(ValueError);
            }
            (Some(inner), v.len() - after.len())
        } else {
            match find(b'<', v) {
                // A '<' after a ';' belongs to a parameter of an addr-spec.
                Some(lt) if !v.get(..lt).unwrap_or_default().contains(&b';') => {
                    let d = trim_lws(v.get(..lt).unwrap_or_default());
                    if !d.iter().all(|&b| is_token(b) || is_lws(b)) {
                        return Err(ValueError);
                    }
                    (if d.is_empty() { None } else { Some(d) }, lt)
                }
                _ => (None, usize::MAX),
            }
        };
        if uri_start == usize::MAX {
            // addr-spec: the URI ends at the first ';' or LWS; RFC 3261 20 requires <> around any URI with
            // a comma, '?' or ';', so those make it a header parameter or an error.
            let end = v
                .iter()
                .position(|&b| b == b';' || is_lws(b))
                .unwrap_or(v.len());
            let raw = v.get(..end).unwrap_or_default();
            if raw.contains(&b'?') || raw.contains(&b',') {
                return Err(ValueError);
            }
            let uri = Uri::parse(raw)?;
            let params = parse_header_params(v.get(end..).unwrap_or_default())?;
            return Ok(NameAddr {
                display: None,
                uri,
                angle: false,
                params,
            });
        }
        let inside = v.get(uri_start + 1..).unwrap_or_default();
        let gt = find(b'>', inside).ok_or(ValueError)?;
        let uri = Uri::parse(inside.get(..gt).unwrap_or_default())?;
        let params = parse_header_params(inside.get(gt + 1..).unwrap_or_default())?;
        Ok(NameAddr {
            display,
            uri,
            angle: true,
            params,
        })
    }

    pub fn tag(&self) -> Option<&'a [u8]> {
        self.params.get(b"tag").flatten()
    }

    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.params.get(name)
    }
}

/// What may follow a URI or a Via sent-by: nothing, or `;` parameters.
fn parse_header_params(s: &[u8]) -> Result<Params<'_>, ValueError> {
    let s = trim_lws(s);
    if s.is_empty() {
        return Ok(Params::default());
    }
    if s.first() != Some(&b';') {
        return Err(ValueError);
    }
    let p = Params::new(s);
    if p.is_valid() { Ok(p) } else { Err(ValueError) }
}

/// Iterates a comma-separated list of name-addrs (Contact, Route, Record-Route, P-Asserted-Identity).
/// `Contact: *` is reported as an error here; check [`is_star`] first for REGISTER.
pub fn name_addr_list(value: &[u8]) -> impl Iterator<Item = Result<NameAddr<'_>, ValueError>> {
    CommaSplit::new(value).map(NameAddr::parse)
}

/// `Contact: *` (REGISTER removal of all bindings).
pub fn is_star(value: &[u8]) -> bool {
    trim_lws(value) == b"*"
}

/// One Via value (a Via header may hold several, comma-separated: see [`via_list`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// `SIP` (any case as written).
    pub protocol_name: &'a [u8],
    /// `2.0`.
    pub protocol_version: &'a [u8],
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`, `WSS` or any other token.
    pub transport: &'a [u8],
    pub host: Host<'a>,
    pub port: Option<u16>,
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    pub fn parse(value: &'a [u8]) -> Result<Via<'a>, ValueError> {
        let mut rest = trim_lws(value);
        let take_token = |rest: &mut &'a [u8]| -> Result<&'a [u8], ValueError> {
            let n = rest.iter().take_while(|&&b| is_token(b)).count();
            let (tok, tail) = rest.split_at_checked(n).ok_or(ValueError)?;
            if tok.is_empty() {
                return Err(ValueError);
            }
            *rest = trim_lws_start(tail);
            Ok(tok)
        };
        let slash = |rest: &mut &'a [u8]| -> Result<(), ValueError> {
            match rest {
                [b'/', tail @ ..] => {
                    *rest = trim_lws_start(tail);
                    Ok(())
                }
                _ => Err(ValueError),
            }
        };
        let protocol_name = take_token(&mut rest)?;
        slash(&mut rest)?;
        let protocol_version = take_token(&mut rest)?;
        slash(&mut rest)?;
        let transport = take_token(&mut rest)?;
        let (host, port, used) = parse_hostport(rest)?;
        let params = parse_header_params(rest.get(used..).unwrap_or_default())?;
        Ok(Via {
            protocol_name,
            protocol_version,
            transport,
            host,
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&'a [u8]> {
        self.params.get(b"branch").flatten()
    }

    /// The `received` address; RFC 5118 4.5: accepted with or without brackets around IPv6.
    pub fn received(&self) -> Option<IpAddr> {
        parse_ip_literal(self.params.get(b"received").flatten()?)
    }

    /// `None`: no rport; `Some(None)`: `;rport` requested; `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        let v = self.params.get(b"rport")?;
        Some(v.and_then(|p| parse_u64(p, u64::from(u16::MAX)).map(|p| p as u16)))
    }

    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params.get(b"maddr").flatten()
    }

    pub fn ttl(&self) -> Option<u8> {
        let v = self.params.get(b"ttl").flatten()?;
        parse_u64(v, 255).map(|t| t as u8)
    }

    /// The branch starts with the RFC 3261 magic cookie.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(b"z9hG4bK"))
    }
}

/// An IPv4 address or an IPv6 address with or without brackets.
pub fn parse_ip_literal(v: &[u8]) -> Option<IpAddr> {
    match v {
        [b'[', inner @ .., b']'] => core::str::from_utf8(inner).ok()?.parse().ok(),
        _ => match super::uri::parse_ipv4(v) {
            Some(a) => Some(IpAddr::V4(a)),
            None => core::str::from_utf8(v).ok()?.parse().ok(),
        },
    }
}

pub(crate) fn is_ip_literal(v: &[u8]) -> bool {
    parse_ip_literal(v).is_some()
}

/// Iterates the comma-separated values of one Via header.
pub fn via_list(value: &[u8]) -> impl Iterator<Item = Result<Via<'_>, ValueError>> {
    CommaSplit::new(value).map(Via::parse)
}

/// CSeq: sequence number and method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: Method<'a>,
}

/// Largest CSeq sequence number (RFC 3261 8.1.1.5: less than 2^31).
pub const CSEQ_MAX: u64 = (1 << 31) - 1;

/// Why a number-bearing header failed: bad syntax or a value beyond its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumError {
    Syntax,
    Range,
}

/// Digits only; `Range` when they are digits but too large.
pub fn parse_number(s: &[u8], max: u64) -> Result<u64, NumError> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return Err(NumError::Syntax);
    }
    parse_u64(s, max).ok_or(NumError::Range)
}

impl<'a> CSeq<'a> {
    pub fn parse(value: &'a [u8]) -> Result<CSeq<'a>, NumError> {
        let (seq, method) = Self::parse_raw(value)?;
        Ok(CSeq {
            seq,
            method: Method::from_bytes(method),
        })
    }

    /// The number and the method token as written.
    pub fn parse_raw(value: &'a [u8]) -> Result<(u32, &'a [u8]), NumError> {
        let v = trim_lws(value);
        let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
        let (num, rest) = v.split_at_checked(digits).ok_or(NumError::Syntax)?;
        if rest.first().is_none_or(|&b| !is_lws(b)) {
            return Err(NumError::Syntax);
        }
        let method = trim_lws(rest);
        if !is_token_str(method) {
            return Err(NumError::Syntax);
        }
        let seq = parse_number(num, CSEQ_MAX)? as u32;
        Ok((seq, method))
    }
}

/// A single number header (Max-Forwards, Content-Length, Expires, Min-SE).
pub fn parse_scalar(value: &[u8], max: u64) -> Result<u64, NumError> {
    parse_number(trim_lws(value), max)
}

/// `type/subtype;params` (Content-Type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    pub kind: &'a [u8],
    pub subtype: &'a [u8],
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    pub fn parse(value: &'a [u8]) -> Result<MediaType<'a>, ValueError> {
        let v = trim_lws(value);
        let end = find(b';', v).unwrap_or(v.len());
        let mt = v.get(..end).unwrap_or_default();
        let slash = find(b'/', mt).ok_or(ValueError)?;
        let kind = trim_lws(mt.get(..slash).unwrap_or_default());
        let subtype = trim_lws(mt.get(slash + 1..).unwrap_or_default());
        if !is_token_str(kind) || !is_token_str(subtype) {
            return Err(ValueError);
        }
        Ok(MediaType {
            kind,
            subtype,
            params: parse_header_params(v.get(end..).unwrap_or_default())?,
        })
    }

    /// `application/sdp`, case-insensitive.
    pub fn is(&self, kind: &[u8], subtype: &[u8]) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }
}

/// Session-Expires (RFC 4028): delta seconds and refresher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires<'a> {
    pub delta: u32,
    pub params: Params<'a>,
}

impl<'a> SessionExpires<'a> {
    pub fn parse(value: &'a [u8]) -> Result<SessionExpires<'a>, NumError> {
        let v = trim_lws(value);
        let end = find(b';', v).unwrap_or(v.len());
        let delta = parse_number(
            trim_lws(v.get(..end).unwrap_or_default()),
            u64::from(u32::MAX),
        )?;
        let params =
            parse_header_params(v.get(end..).unwrap_or_default()).map_err(|_| NumError::Syntax)?;
        Ok(SessionExpires {
            delta: delta as u32,
            params,
        })
    }

    /// `uac` or `uas`.
    pub fn refresher(&self) -> Option<&'a [u8]> {
        self.params.get(b"refresher").flatten()
    }
}

/// Replaces (RFC 3891): the dialog to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaces<'a> {
    pub call_id: &'a [u8],
    pub params: Params<'a>,
}

impl<'a> Replaces<'a> {
    pub fn parse(value: &'a [u8]) -> Result<Replaces<'a>, ValueError> {
        let v = trim_lws(value);
        let end = find(b';', v).unwrap_or(v.len());
        let call_id = trim_lws(v.get(..end).unwrap_or_default());
        if call_id.is_empty() {
            return Err(ValueError);
        }
        Ok(Replaces {
            call_id,
            params: parse_header_params(v.get(end..).unwrap_or_default())?,
        })
    }
    pub fn to_tag(&self) -> Option<&'a [u8]> {
        self.params.get(b"to-tag").flatten()
    }
    pub fn from_tag(&self) -> Option<&'a [u8]> {
        self.params.get(b"from-tag").flatten()
    }
    pub fn early_only(&self) -> bool {
        self.params.contains(b"early-only")
    }
}

/// Authorization, Proxy-Authorization, WWW-Authenticate, Proxy-Authenticate: a scheme and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auth<'a> {
    /// `Digest`, or any other scheme as written.
    pub scheme: &'a [u8],
    /// The comma-separated `name=value` list after the scheme (raw).
    pub params_raw: &'a [u8],
}

impl<'a> Auth<'a> {
    pub fn parse(value: &'a [u8]) -> Result<Auth<'a>, ValueError> {
        let v = trim_lws(value);
        let n = v.iter().take_while(|&&b| is_token(b)).count();
        let (scheme, rest) = v.split_at_checked(n).ok_or(ValueError)?;
        if scheme.is_empty() || rest.first().is_some_and(|&b| !is_lws(b)) {
            return Err(ValueError);
        }
        Ok(Auth {
            scheme,
            params_raw: trim_lws(rest),
        })
    }

    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(b"Digest")
    }

    /// Iterates `name=value` pairs; quoted values come without quotes (escapes kept).
    pub fn params(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        CommaSplit::new(self.params_raw).filter_map(|item| {
            let eq = find(b'=', item)?;
            let name = trim_lws(item.get(..eq)?);
            let v = trim_lws(item.get(eq + 1..)?);
            let v = match v {
                [b'"', inner @ .., b'"'] => inner,
                _ => v,
            };
            Some((name, v))
        })
    }

    /// The named parameter (case-insensitive name), e.g. `realm`, `nonce`, `response`.
    pub fn param(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Reason (RFC 3326): `SIP ;cause=200 ;text="Call completed elsewhere"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason<'a> {
    pub protocol: &'a [u8],
    pub params: Params<'a>,
}

impl<'a> Reason<'a> {
    pub fn parse(value: &'a [u8]) -> Result<Reason<'a>, ValueError> {
        let v = trim_lws(value);
        let end = find(b';', v).unwrap_or(v.len());
        let protocol = trim_lws(v.get(..end).unwrap_or_default());
        if !is_token_str(protocol) {
            return Err(ValueError);
        }
        Ok(Reason {
            protocol,
            params: parse_header_params(v.get(end..).unwrap_or_default())?,
        })
    }
    pub fn cause(&self) -> Option<u16> {
        let c = self.params.get(b"cause").flatten()?;
        parse_u64(c, u64::from(u16::MAX)).map(|c| c as u16)
    }
    pub fn text(&self) -> Option<&'a [u8]> {
        self.params.get(b"text").flatten()
    }
}

/// Comma-separated tokens (Supported, Require, Proxy-Require, Allow, Allow-Events); empty items skipped.
pub fn token_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    CommaSplit::new(value).filter(|t| !t.is_empty())
}

/// An rfc1123-date as RFC 3261 25.1 requires: it must end in `GMT`.
pub fn is_valid_date(value: &[u8]) -> bool {
    let v = trim_lws(value);
    v.len() > 4
        && v.ends_with(b" GMT")
        && v.get(..3)
            .is_some_and(|d| d.iter().all(u8::is_ascii_alphabetic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(
            b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(n.display, Some(&b"J Rosenberg \\\\\\\""[..]));
        assert_eq!(n.tag(), Some(&b"98asjd8"[..]));
        let n = NameAddr::parse(b"\r\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
            .unwrap();
        assert!(!n.angle);
        assert_eq!(n.tag(), Some(&b"1918181833n"[..]));
        let n = NameAddr::parse(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display, Some(&b"caller"[..]));
        assert!(NameAddr::parse(b"\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(NameAddr::parse(b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(NameAddr::parse(b"\"Watson, Thomas\" < sip:t.watson@example.org >").is_err());
        assert!(NameAddr::parse(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(NameAddr::parse(b"\"Joe\" <sip:joe@example.org>;;;;").is_err());
        let n = NameAddr::parse(b"<sip:user@example.com?Route=%3Csip:sip.example.com%3E>").unwrap();
        assert_eq!(n.uri.headers, Some(&b"Route=%3Csip:sip.example.com%3E"[..]));
    }

    #[test]
    fn via_folded_and_multi() {
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        let all: Vec<_> = via_list(
            b"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239",
        )
        .collect::<Result<_, _>>()
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].branch(), Some(&b"z9hG4bK9ikj8"[..]));
        assert_eq!(all[1].host, Host::V4("192.168.255.111".parse().unwrap()));
        assert_eq!(all[1].branch(), Some(&b"z9hG4bK30239"[..]));
        assert!(via_list(b"SIP/2.0/UDP 192.0.2.15;;,;,,").any(|v| v.is_err()));
    }

    #[test]
    fn via_received_rport() {
        let v = Via::parse(
            b"SIP/2.0/UDP [2001:db8::9:1]:6050;received=[2001:db8::9:255];rport=5;branch=z9hG4bKx",
        )
        .unwrap();
        assert_eq!(v.port, Some(6050));
        assert_eq!(v.received(), Some("2001:db8::9:255".parse().unwrap()));
        assert_eq!(v.rport(), Some(Some(5)));
        let v = Via::parse(b"SIP/2.0/UDP h;received=2001:db8::9:255;rport").unwrap();
        assert_eq!(v.received(), Some("2001:db8::9:255".parse().unwrap()));
        assert_eq!(v.rport(), Some(None));
        assert!(v.branch().is_none());
    }

    #[test]
    fn cseq_and_scalars() {
        let c = CSeq::parse(b"0009\r\n  INVITE").unwrap();
        assert_eq!((c.seq, c.method), (9, Method::Invite));
        assert_eq!(
            CSeq::parse(b"36893488147419103232 REGISTER"),
            Err(NumError::Range)
        );
        assert_eq!(CSeq::parse(b"2147483648 INVITE"), Err(NumError::Range));
        assert_eq!(CSeq::parse(b"INVITE"), Err(NumError::Syntax));
        assert_eq!(CSeq::parse(b"1INVITE"), Err(NumError::Syntax));
        assert_eq!(parse_scalar(b" -999", 100), Err(NumError::Syntax));
    }

    #[test]
    fn auth_reason_replaces() {
        let a = Auth::parse(b"Digest username=\"bob\", realm=\"atlanta.com\",\r\n nonce=\"ea9c\", response=\"d41d\"").unwrap();
        assert!(a.is_digest());
        assert_eq!(a.param(b"realm"), Some(&b"atlanta.com"[..]));
        assert_eq!(a.param(b"Response"), Some(&b"d41d"[..]));
        let a = Auth::parse(b"NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert_eq!(a.param(b"opaque-data"), Some(&b"here"[..]));
        let r = Reason::parse(b"SIP ;cause=200 ;text=\"Call completed elsewhere\"").unwrap();
        assert_eq!(r.cause(), Some(200));
        assert_eq!(r.text(), Some(&b"Call completed elsewhere"[..]));
        let r =
            Replaces::parse(b"98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only")
                .unwrap();
        assert_eq!(r.call_id, b"98732@sip.example.com");
        assert_eq!(r.to_tag(), Some(&b"ff87ff"[..]));
        assert!(r.early_only());
        let s = SessionExpires::parse(b"1800;refresher=uac").unwrap();
        assert_eq!((s.delta, s.refresher()), (1800, Some(&b"uac"[..])));
        let m = MediaType::parse(b"multipart/mixed;boundary=unique-boundary-1").unwrap();
        assert!(m.is(b"Multipart", b"MIXED"));
        assert_eq!(token_list(b"100rel, timer,,replaces").count(), 3);
        assert!(!is_valid_date(b"Fri, 01 Jan 2010 16:00:00 EST"));
        assert!(is_valid_date(b"Sat, 13 Nov 2010 23:29:00 GMT"));
    }
}
