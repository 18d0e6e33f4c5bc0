//! Writing the messages the B2BUA originates: requests on a leg, responses relayed to the other leg, ACKs,
//! CANCELs. All go through the parser's [`MessageBuilder`] into a reused buffer.
use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::sip::builder::MessageBuilder;
use crate::sip::header::Method;
use crate::sip::message::Message;
use crate::sip::name::HeaderName;
use crate::sip::txn::Transport;

/// Headers the B2BUA writes itself on every message it builds; never copied from the other leg, whatever an
/// allow-list says (copying them would leak the other leg's topology or break the dialog).
pub fn is_core_header(name: HeaderName, raw: &[u8]) -> bool {
    use HeaderName::*;
    match name {
        Via | From | To | CallId | CSeq | MaxForwards | Contact | Route | RecordRoute
        | ContentLength | ContentType | Authorization | ProxyAuthorization | WwwAuthenticate
        | ProxyAuthenticate | Supported | Require | ProxyRequire | SessionExpires | MinSe
        | Allow => true,
        Other => {
            raw.eq_ignore_ascii_case(b"RSeq")
                || raw.eq_ignore_ascii_case(b"RAck")
                || raw.eq_ignore_ascii_case(b"Path")
                || raw.eq_ignore_ascii_case(b"Service-Route")
        }
        _ => false,
    }
}

pub fn transport_token(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
        Transport::Tls => "TLS",
    }
}

/// `host:port` of a socket address as it goes into a URI or Via (IPv6 in brackets).
pub fn hostport(addr: SocketAddr, out: &mut String) {
    let _ = write!(out, "{addr}");
}

/// `SIP/2.0/UDP host:port;branch=...;rport`
pub fn via_value(t: Transport, local: SocketAddr, branch: &str) -> String {
    let mut s = String::with_capacity(64);
    let _ = write!(s, "SIP/2.0/{} ", transport_token(t));
    hostport(local, &mut s);
    s.push_str(";branch=");
    s.push_str(branch);
    s.push_str(";rport");
    s
}

/// Our Contact: `<sip:tollgate@host:port;transport=tcp>`.
pub fn contact_value(t: Transport, local: SocketAddr) -> String {
    let mut s = String::with_capacity(48);
    s.push_str("<sip:tollgate@");
    hostport(local, &mut s);
    match t {
        Transport::Udp => {}
        Transport::Tcp => s.push_str(";transport=tcp"),
        Transport::Tls => s.push_str(";transport=tls"),
    }
    s.push('>');
    s
}

pub const ALLOW: &[u8] = b"INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, REFER, NOTIFY, MESSAGE";

/// A response to `req` with only the dialog headers and the given extras, no body.
pub fn simple_response<B: AsRef<[u8]>>(
    out: &mut Vec<u8>,
    req: &Message<B>,
    code: u16,
    reason: &[u8],
    to_tag: Option<&[u8]>,
    extra: &[(&[u8], &[u8])],
) {
    let mut b = MessageBuilder::reply_to(out, req, code, reason, to_tag);
    for (n, v) in extra {
        b.raw_header(n, v);
    }
    b.finish(b"");
}

/// The ACK for a 2xx (RFC 3261 13.2.2.4): a new transaction, sent by the TU, in the dialog.
#[allow(clippy::too_many_arguments)]
pub fn ack_2xx(
    out: &mut Vec<u8>,
    request_uri: &str,
    via: &str,
    from: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
    routes: &[String],
    body: Option<(&[u8], &[u8])>,
) {
    let mut b = MessageBuilder::request(out, Method::Ack, request_uri.as_bytes());
    b.header(HeaderName::Via, via.as_bytes())
        .header_u64(HeaderName::MaxForwards, 70)
        .header(HeaderName::From, from.as_bytes())
        .header(HeaderName::To, to.as_bytes())
        .header(HeaderName::CallId, call_id.as_bytes())
        .cseq(cseq, Method::Ack);
    for r in routes {
        b.header(HeaderName::Route, r.as_bytes());
    }
    match body {
        Some((ct, body)) => {
            b.header(HeaderName::ContentType, ct);
            b.finish(body);
        }
        None => {
            b.finish(b"");
        }
    }
}

/// The ACK for a non-2xx final response (RFC 3261 17.1.1.3), from the INVITE as sent and the response's To.
pub fn ack_non_2xx<B: AsRef<[u8]>>(out: &mut Vec<u8>, invite: &Message<B>, resp_to: &[u8]) {
    let uri = match invite.start_line() {
        crate::sip::message::StartLine::Request { uri, .. } => uri,
        crate::sip::message::StartLine::Response { .. } => return,
    };
    let mut b = MessageBuilder::request(out, Method::Ack, uri);
    if let Some(v) = invite.header(HeaderName::Via) {
        b.header(HeaderName::Via, v);
    }
    b.header_u64(HeaderName::MaxForwards, 70);
    if let Some(v) = invite.header(HeaderName::From) {
        b.header(HeaderName::From, v);
    }
    b.header(HeaderName::To, resp_to);
    b.header(HeaderName::CallId, invite.call_id());
    b.cseq(invite.cseq().seq, Method::Ack);
    for r in invite.header_values(HeaderName::Route) {
        b.header(HeaderName::Route, r);
    }
    b.finish(b"");
}

/// The CANCEL for an INVITE as sent (RFC 3261 9.1): same Request-URI, top Via, From, To, Call-ID, CSeq number.
pub fn cancel_for<B: AsRef<[u8]>>(out: &mut Vec<u8>, invite: &Message<B>) {
    let uri = match invite.start_line() {
        crate::sip::message::StartLine::Request { uri, .. } => uri,
        crate::sip::message::StartLine::Response { .. } => return,
    };
    let mut b = MessageBuilder::request(out, Method::Cancel, uri);
    if let Some(v) = invite.header(HeaderName::Via) {
        b.header(HeaderName::Via, v);
    }
    b.header_u64(HeaderName::MaxForwards, 70);
    for name in [HeaderName::From, HeaderName::To] {
        if let Some(v) = invite.header(name) {
            b.header(name, v);
        }
    }
    b.header(HeaderName::CallId, invite.call_id());
    b.cseq(invite.cseq().seq, Method::Cancel);
    for r in invite.header_values(HeaderName::Route) {
        b.header(HeaderName::Route, r);
    }
    b.finish(b"");
}
