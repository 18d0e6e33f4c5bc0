//! Writing new messages into a reusable `Vec<u8>`: start line, headers, then the body with its
//! Content-Length computed. Nothing here allocates beyond the growth of the caller's buffer.

use super::error::ParseError;
use super::header::Method;
use super::message::Message;
use super::name::HeaderName;
use super::scan::push_u64;

/// Writes one message. Create with [`MessageBuilder::request`] or [`MessageBuilder::response`], add headers,
/// end with [`MessageBuilder::finish`] (which appends Content-Length and the body).
pub struct MessageBuilder<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> MessageBuilder<'o> {
    /// Clears `out` and writes `METHOD uri SIP/2.0`.
    pub fn request(out: &'o mut Vec<u8>, method: Method<'_>, uri: &[u8]) -> Self {
        out.clear();
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(uri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        MessageBuilder { out }
    }

    /// Clears `out` and writes `SIP/2.0 code reason`.
    pub fn response(out: &'o mut Vec<u8>, code: u16, reason: &[u8]) -> Self {
        out.clear();
        out.extend_from_slice(b"SIP/2.0 ");
        push_u64(out, u64::from(code));
        out.push(b' ');
        out.extend_from_slice(reason);
        out.extend_from_slice(b"\r\n");
        MessageBuilder { out }
    }

    /// A response to `req` (RFC 3261 8.2.6.2): every Via in order, From, To (with `to_tag` added when the
    /// request's To has none), Call-ID and CSeq copied byte for byte.
    pub fn reply_to<B: AsRef<[u8]>>(
        out: &'o mut Vec<u8>,
        req: &Message<B>,
        code: u16,
        reason: &[u8],
        to_tag: Option<&[u8]>,
    ) -> Self {
        let mut b = Self::response(out, code, reason);
        b.copy_dialog_headers(req.headers().map(|h| (h.name, h.value)), to_tag);
        b
    }

    fn copy_dialog_headers<'a>(
        &mut self,
        headers: impl Iterator<Item = (HeaderName, &'a [u8])>,
        to_tag: Option<&[u8]>,
    ) {
        // Every Via in order as met, then the first From, To, Call-ID and CSeq.
        let mut ids: [Option<&[u8]>; 4] = [None; 4];
        for (name, value) in headers {
            let slot = match name {
                HeaderName::Via => {
                    self.header(HeaderName::Via, value);
                    continue;
                }
                HeaderName::From => 0,
                HeaderName::To => 1,
                HeaderName::CallId => 2,
                HeaderName::CSeq => 3,
                _ => continue,
            };
            if let Some(s) = ids.get_mut(slot)
                && s.is_none()
            {
                *s = Some(value);
            }
        }
        let [from, to, call_id, cseq] = ids;
        if let Some(v) = from {
            self.header(HeaderName::From, v);
        }
        if let Some(v) = to {
            self.write_to_with_tag(v, to_tag);
        }
        if let Some(v) = call_id {
            self.header(HeaderName::CallId, v);
        }
        if let Some(v) = cseq {
            self.header(HeaderName::CSeq, v);
        }
    }

    fn write_to_with_tag(&mut self, value: &[u8], to_tag: Option<&[u8]>) {
        let has_tag = super::header::NameAddr::parse(value).is_ok_and(|n| n.tag().is_some());
        self.out.extend_from_slice(b"To: ");
        self.out.extend_from_slice(value);
        if let (false, Some(tag)) = (has_tag, to_tag) {
            self.out.extend_from_slice(b";tag=");
            self.out.extend_from_slice(tag);
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// `Name: value` with the canonical long name.
    pub fn header(&mut self, name: HeaderName, value: &[u8]) -> &mut Self {
        self.out.extend_from_slice(name.as_str().as_bytes());
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// `name: value` with any name (extension headers, passing through a header as received).
    pub fn raw_header(&mut self, name: &[u8], value: &[u8]) -> &mut Self {
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// A header whose value is a number (Max-Forwards, Expires, ...).
    pub fn header_u64(&mut self, name: HeaderName, value: u64) -> &mut Self {
        self.out.extend_from_slice(name.as_str().as_bytes());
        self.out.extend_from_slice(b": ");
        push_u64(self.out, value);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// `CSeq: seq METHOD`.
    pub fn cseq(&mut self, seq: u32, method: Method<'_>) -> &mut Self {
        self.out.extend_from_slice(b"CSeq: ");
        push_u64(self.out, u64::from(seq));
        self.out.push(b' ');
        self.out.extend_from_slice(method.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Appends a header value piecewise: call with the name, then write parts through the returned buffer,
    /// then [`MessageBuilder::end_header`].
    pub fn begin_header(&mut self, name: &[u8]) -> &mut Vec<u8> {
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(b": ");
        self.out
    }

    pub fn end_header(&mut self) -> &mut Self {
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Writes Content-Length (computed), the empty line and the body. Returns the whole message.
    pub fn finish(self, body: &[u8]) -> &'o [u8] {
        self.out.extend_from_slice(b"Content-Length: ");
        push_u64(self.out, body.len() as u64);
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(body);
        self.out
    }
}

/// Writes the answer to a request that failed to parse (`err.answerable` must be true): status and reason
/// phrase from the error, Via/From/To/Call-ID/CSeq copied from whatever the header section holds, `to_tag`
/// added to To. Returns `false` (and writes nothing) when the message cannot be answered.
pub fn error_response(
    buf: &[u8],
    err: &ParseError,
    to_tag: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> bool {
    if !err.answerable {
        return false;
    }
    let Ok(framed) = Message::frame_only(buf) else {
        return false;
    };
    let mut b = MessageBuilder::response(out, err.status_code(), err.reason_phrase().as_bytes());
    b.copy_dialog_headers(framed.headers().map(|h| (h.name, h.value)), to_tag);
    b.finish(b"");
    true
}
