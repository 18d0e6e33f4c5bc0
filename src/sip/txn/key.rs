//! The fields a transaction needs from a message, and the matching keys built from them
//! (RFC 3261 17.1.3 for responses, 17.2.3 for requests including the RFC 2543 fallback).
//!
//! Keys are length-prefixed byte strings built into a reused scratch buffer, so a lookup allocates nothing;
//! only a new transaction boxes its key.
use bytes::Bytes;

use super::{Dest, MethodClass};

/// Branch prefix of RFC 3261 compliant Via headers; without it, requests are matched the RFC 2543 way.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// What the table needs from a received request (spans into the parsed message are fine).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestInfo<'a> {
    /// Request method, case-sensitive (`INVITE`, `ACK`, `CANCEL`, ...).
    pub method: &'a [u8],
    /// `branch` parameter of the top Via (empty if absent).
    pub branch: &'a [u8],
    /// sent-by (`host[:port]`) of the top Via; compared case-insensitively.
    pub sent_by: &'a [u8],
    /// RFC 2543 fallback only (branch without [`MAGIC_COOKIE`]): Request-URI as received.
    pub request_uri: &'a [u8],
    /// RFC 2543 fallback only: From tag.
    pub from_tag: &'a [u8],
    /// RFC 2543 fallback only: To tag (empty if none).
    pub to_tag: &'a [u8],
    /// RFC 2543 fallback only: Call-ID.
    pub call_id: &'a [u8],
    /// RFC 2543 fallback only: CSeq number.
    pub cseq: u32,
    /// RFC 2543 fallback only: the whole top Via header value.
    pub top_via: &'a [u8],
}

/// What the table needs from a received response.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseInfo<'a> {
    pub status: u16,
    /// `branch` parameter of the top Via.
    pub branch: &'a [u8],
    /// Method of the CSeq header.
    pub cseq_method: &'a [u8],
}

/// A request the TU wants sent as a new client transaction.
#[derive(Clone, Debug)]
pub struct ClientRequest<'a> {
    pub method: &'a [u8],
    /// Branch of the Via the TU put on top (should start with [`MAGIC_COOKIE`] and be unique).
    pub branch: &'a [u8],
    /// The complete request as it goes on the wire.
    pub bytes: Bytes,
    pub dest: Dest,
}

fn put(buf: &mut Vec<u8>, field: &[u8]) {
    buf.extend_from_slice(&(field.len() as u32).to_le_bytes());
    buf.extend_from_slice(field);
}

fn put_lower(buf: &mut Vec<u8>, field: &[u8]) {
    buf.extend_from_slice(&(field.len() as u32).to_le_bytes());
    buf.extend(field.iter().map(u8::to_ascii_lowercase));
}

/// Client transactions: branch + CSeq method (17.1.3).
pub(crate) fn client_key(buf: &mut Vec<u8>, method: &[u8], branch: &[u8]) {
    buf.clear();
    buf.push(b'C');
    put(buf, method);
    put(buf, branch);
}

pub(crate) fn is_rfc3261(branch: &[u8]) -> bool {
    branch.starts_with(MAGIC_COOKIE)
}

/// Server transactions: branch + sent-by + method (ACK and CANCEL-target lookups pass `INVITE` as
/// `method`), or for an RFC 2543 branch, Request-URI + From tag + Call-ID + CSeq number + top Via + method.
/// The To tag is compared after the lookup because an ACK carries the tag of the response, not the request's.
pub(crate) fn server_key(buf: &mut Vec<u8>, info: &RequestInfo<'_>, method: &[u8]) {
    buf.clear();
    if is_rfc3261(info.branch) {
        buf.push(b'S');
        put(buf, method);
        put(buf, info.branch);
        put_lower(buf, info.sent_by);
    } else {
        buf.push(b'L');
        put(buf, method);
        put(buf, info.request_uri);
        put(buf, info.from_tag);
        put(buf, info.call_id);
        buf.extend_from_slice(&info.cseq.to_le_bytes());
        put(buf, info.top_via);
    }
}

/// The method a request is matched under: an ACK belongs to the INVITE transaction.
pub(crate) fn match_method(method: &[u8]) -> &[u8] {
    match MethodClass::of(method) {
        MethodClass::Ack => b"INVITE",
        _ => method,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unambiguous_and_sent_by_case_insensitive() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        // Moving bytes between fields must not produce the same key.
        client_key(&mut a, b"INV", b"ITEz9hG4bK1");
        client_key(&mut b, b"INVITE", b"z9hG4bK1");
        assert_ne!(a, b);
        let i1 = RequestInfo {
            method: b"INVITE",
            branch: b"z9hG4bKx",
            sent_by: b"Host.Example:5060",
            ..Default::default()
        };
        let i2 = RequestInfo {
            sent_by: b"host.example:5060",
            ..i1
        };
        server_key(&mut a, &i1, b"INVITE");
        server_key(&mut b, &i2, b"INVITE");
        assert_eq!(a, b);
        server_key(&mut b, &i2, b"BYE");
        assert_ne!(a, b);
    }

    #[test]
    fn legacy_key_ignores_sent_by_and_uses_dialog_fields() {
        let base = RequestInfo {
            method: b"INVITE",
            branch: b"",
            sent_by: b"a",
            request_uri: b"sip:bob@b",
            from_tag: b"f",
            to_tag: b"",
            call_id: b"c",
            cseq: 1,
            top_via: b"SIP/2.0/UDP a",
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        server_key(&mut a, &base, b"INVITE");
        server_key(
            &mut b,
            &RequestInfo {
                sent_by: b"zzz",
                ..base
            },
            b"INVITE",
        );
        assert_eq!(a, b);
        server_key(&mut b, &RequestInfo { cseq: 2, ..base }, b"INVITE");
        assert_ne!(a, b);
        assert_eq!(match_method(b"ACK"), b"INVITE");
        assert_eq!(match_method(b"CANCEL"), b"CANCEL");
    }
}
