//! The message: start line, header spans and body span over one buffer, validated once, read lazily.
//!
//! `Message<&[u8]>` borrows the receive buffer; `Message<bytes::Bytes>` ([`OwnedMessage`]) is the same spans
//! over a refcounted copy, made with one allocation. Spans are `u16`, so a message is at most 64 KiB (a UDP
//! datagram always fits; the stream framer enforces it).

use super::error::{ErrorKind, ParseError};
use super::header::{
    self, Auth, CSEQ_MAX, CSeq, MediaType, Method, NameAddr, NumError, Reason, Replaces,
    SessionExpires, Via,
};
use super::name::HeaderName;
use super::scan::{is_token_str, push_u64, trim_lws};
use super::uri::{Scheme, Uri};
use bytes::Bytes;

/// Header lines a message may carry (folded continuations do not count).
pub const MAX_HEADERS: usize = 64;
/// Largest message the spans can address.
pub const MAX_MESSAGE: usize = u16::MAX as usize;

/// A message that outlives its receive buffer (one allocation to make, refcounted to clone).
pub type OwnedMessage = Message<Bytes>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u16,
    end: u16,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        // Callers have checked the buffer length against MAX_MESSAGE.
        Span {
            start: start as u16,
            end: end as u16,
        }
    }
    fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(usize::from(self.start)..usize::from(self.end))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: HeaderName,
    name: Span,
    value: Span,
}

const EMPTY_ENTRY: Entry = Entry {
    kind: HeaderName::Other,
    name: Span { start: 0, end: 0 },
    value: Span { start: 0, end: 0 },
};

#[derive(Debug, Clone, Copy)]
enum Start {
    Request { method: Span, uri: Span },
    Response { code: u16, reason: Span },
}

/// Whether the buffer is one datagram (trailing bytes after Content-Length are dropped, a missing
/// Content-Length means "to the end") or one framed stream message (Content-Length required).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Datagram,
    Stream,
}

/// A parsed and validated SIP message.
#[derive(Clone)]
pub struct Message<B> {
    buf: B,
    start: Start,
    headers: [Entry; MAX_HEADERS],
    count: u8,
    /// Index + 1 of the first header of each kind, 0 when absent.
    first: [u8; HeaderName::COUNT],
    body: Span,
    cseq_seq: u32,
    cseq_method: Span,
    max_forwards: Option<u8>,
    content_length: Option<u32>,
    /// Hot values found during validation, so reading them costs nothing.
    from_tag: Option<Span>,
    to_tag: Option<Span>,
    branch: Option<Span>,
}

/// The span of `sub`, a subslice of `buf`.
fn span_of(buf: &[u8], sub: &[u8]) -> Span {
    let off = (sub.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    Span::new(off, off.saturating_add(sub.len()))
}

/// One header as it appears in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'m> {
    pub name: HeaderName,
    /// The name as written (compact or long, any case).
    pub raw_name: &'m [u8],
    /// The value without leading/trailing whitespace; folds kept as written.
    pub value: &'m [u8],
}

/// The start line: request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'m> {
    Request { method: Method<'m>, uri: &'m [u8] },
    Response { code: u16, reason: &'m [u8] },
}

/// Next line: (content without CR/LF, index after the LF). `None` when no LF remains.
#[inline]
fn next_line(buf: &[u8], from: usize) -> Option<(usize, usize, usize)> {
    let rest = buf.get(from..)?;
    let lf = memchr::memchr(b'\n', rest)?;
    let mut end = from + lf;
    if end > from && buf.get(end - 1) == Some(&b'\r') {
        end -= 1;
    }
    Some((from, end, from + lf + 1))
}

fn is_sp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Checks the SIP-Version token; `Ok(true)` for SIP/2.0, `Ok(false)` for another well-formed version.
fn check_version(v: &[u8]) -> Result<bool, ()> {
    let Some((proto, ver)) = v.split_at_checked(4) else {
        return Err(());
    };
    if !proto.eq_ignore_ascii_case(b"SIP/") {
        return Err(());
    }
    let dot = memchr::memchr(b'.', ver).ok_or(())?;
    let (maj, min) = (
        ver.get(..dot).unwrap_or_default(),
        ver.get(dot + 1..).unwrap_or_default(),
    );
    if maj.is_empty()
        || min.is_empty()
        || !maj.iter().all(u8::is_ascii_digit)
        || !min.iter().all(u8::is_ascii_digit)
    {
        return Err(());
    }
    Ok(ver == b"2.0")
}

fn is_single_valued(h: HeaderName) -> bool {
    use HeaderName::*;
    matches!(
        h,
        From | To | CallId | CSeq | MaxForwards | ContentLength | ContentType | Expires | Date
    )
}

impl<B: AsRef<[u8]>> Message<B> {
    /// Parses one datagram (UDP): bytes after `Content-Length` are ignored, a missing Content-Length means the
    /// body runs to the end of the datagram.
    pub fn parse(buf: B) -> Result<Message<B>, ParseError> {
        Self::parse_with(buf, Transport::Datagram)
    }

    /// Parses one message framed by [`super::framer::StreamFramer`]: Content-Length is required.
    pub fn parse_stream(buf: B) -> Result<Message<B>, ParseError> {
        Self::parse_with(buf, Transport::Stream)
    }

    pub fn parse_with(buf: B, transport: Transport) -> Result<Message<B>, ParseError> {
        let mut msg = Self::empty(buf);
        let (deferred, body_start) = msg.frame()?;
        let is_request = matches!(msg.start, Start::Request { .. });
        let answerable = is_request && msg.first[HeaderName::Via as usize] != 0;
        let fail = |kind| ParseError { kind, answerable };
        if let Some(kind) = deferred {
            return Err(fail(kind));
        }
        msg.validate(body_start, transport).map_err(fail)?;
        Ok(msg)
    }

    /// Start line and header lines split, nothing validated and no body: what an error answer is built
    /// from. Header accessors that parse values may return `None` on such a message.
    pub fn frame_only(buf: B) -> Result<Message<B>, ParseError> {
        let mut msg = Self::empty(buf);
        msg.frame()?;
        Ok(msg)
    }

    fn empty(buf: B) -> Message<B> {
        Message {
            buf,
            start: Start::Response {
                code: 0,
                reason: Span::default(),
            },
            headers: [EMPTY_ENTRY; MAX_HEADERS],
            count: 0,
            first: [0; HeaderName::COUNT],
            body: Span::default(),
            cseq_seq: 0,
            cseq_method: Span::default(),
            max_forwards: None,
            content_length: None,
            from_tag: None,
            to_tag: None,
            branch: None,
        }
    }

    /// Splits start line and header lines. Returns a start-line fault that is only reported once the header
    /// section is known to be framed (so the request can still be answered), and where the body starts.
    fn frame(&mut self) -> Result<(Option<ErrorKind>, usize), ParseError> {
        let buf = self.buf.as_ref();
        if buf.len() > MAX_MESSAGE {
            return Err(ErrorKind::TooLarge.into());
        }
        // RFC 3261 7.5: CRLFs before the start line are ignored.
        let mut pos = buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if pos == buf.len() {
            return Err(ErrorKind::Empty.into());
        }
        let (ls, le, next) = next_line(buf, pos).ok_or(ErrorKind::Incomplete)?;
        let line = buf.get(ls..le).unwrap_or_default();
        let mut deferred = None;
        if line.len() >= 4
            && line
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
        {
            let sp = memchr::memchr(b' ', line).ok_or(ErrorKind::BadStartLine)?;
            match check_version(line.get(..sp).unwrap_or_default()) {
                Ok(true) => {}
                Ok(false) => return Err(ErrorKind::VersionNotSupported.into()),
                Err(()) => return Err(ErrorKind::BadStartLine.into()),
            }
            let rest = line.get(sp + 1..).unwrap_or_default();
            let code = match rest {
                [a, b, c] | [a, b, c, b' ', ..]
                    if a.is_ascii_digit()
                        && b.is_ascii_digit()
                        && c.is_ascii_digit()
                        && *a != b'0' =>
                {
                    u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
                }
                _ => return Err(ErrorKind::BadStatusCode.into()),
            };
            let reason_start = (ls + sp + 5).min(le);
            self.start = Start::Response {
                code,
                reason: Span::new(reason_start, le),
            };
        } else {
            let sp1 = memchr::memchr(b' ', line).ok_or(ErrorKind::BadStartLine)?;
            let sp2 = memchr::memrchr(b' ', line).ok_or(ErrorKind::BadStartLine)?;
            let method = line.get(..sp1).unwrap_or_default();
            if !is_token_str(method) {
                return Err(ErrorKind::BadMethod.into());
            }
            if sp2 == sp1 {
                return Err(ErrorKind::BadStartLine.into());
            }
            let uri = line.get(sp1 + 1..sp2).unwrap_or_default();
            let version = line.get(sp2 + 1..).unwrap_or_default();
            deferred = match check_version(version) {
                Ok(true) => None,
                Ok(false) => Some(ErrorKind::VersionNotSupported),
                // Trailing SP or a garbled version: still recognisably a request.
                Err(()) => Some(ErrorKind::BadStartLine),
            };
            if deferred.is_none() {
                if uri.is_empty()
                    || uri.first().copied().is_some_and(is_sp)
                    || uri.last().copied().is_some_and(is_sp)
                {
                    deferred = Some(ErrorKind::BadStartLine);
                } else {
                    match Uri::parse(uri) {
                        // RFC 3261 19.1.1: no headers in a Request-URI.
                        Ok(u) if u.is_sip() && u.headers.is_some() => {
                            deferred = Some(ErrorKind::BadRequestUri)
                        }
                        Ok(_) => {}
                        Err(_) => deferred = Some(ErrorKind::BadRequestUri),
                    }
                }
            }
            self.start = Start::Request {
                method: Span::new(ls, ls + sp1),
                uri: Span::new(ls + sp1 + 1, ls + sp2),
            };
        }
        pos = next;
        let mut count = 0usize;
        loop {
            let Some((ls, le, next)) = next_line(buf, pos) else {
                if pos == buf.len() {
                    // A datagram that ends right after a header line: no empty line, no body.
                    break;
                }
                return Err(ErrorKind::Incomplete.into());
            };
            pos = next;
            if ls == le {
                break;
            }
            let line = buf.get(ls..le).unwrap_or_default();
            if line.first().copied().is_some_and(is_sp) {
                // Continuation of the previous header (folding).
                let Some(prev) = count.checked_sub(1).and_then(|i| self.headers.get_mut(i)) else {
                    return Err(ErrorKind::BadHeaderLine.into());
                };
                let lead = line.iter().take_while(|&&b| is_sp(b)).count();
                let trail = line.iter().rev().take_while(|&&b| is_sp(b)).count();
                if lead < line.len() {
                    if prev.value.start == prev.value.end {
                        prev.value.start = (ls + lead) as u16;
                    }
                    prev.value.end = (le - trail) as u16;
                }
                continue;
            }
            // One pass over the name: token bytes, optional SP/HTAB, then the colon (neither a token byte
            // nor SP, so this is the first colon of the line).
            let name_len = super::scan::skip(line, 0, super::scan::TOKEN);
            let colon = name_len
                + line
                    .get(name_len..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|&&b| is_sp(b))
                    .count();
            if name_len == 0 || line.get(colon) != Some(&b':') {
                return Err(ErrorKind::BadHeaderLine.into());
            }
            let name = line.get(..name_len).unwrap_or_default();
            let value = line.get(colon + 1..).unwrap_or_default();
            let lead = value.iter().take_while(|&&b| is_sp(b)).count();
            let trail = value.iter().rev().take_while(|&&b| is_sp(b)).count();
            let vstart = ls + colon + 1 + lead;
            let vend = (le - trail).max(vstart);
            let kind = HeaderName::classify(name);
            let slot = self
                .headers
                .get_mut(count)
                .ok_or(ErrorKind::TooManyHeaders)?;
            *slot = Entry {
                kind,
                name: Span::new(ls, ls + name_len),
                value: Span::new(vstart, vend),
            };
            count += 1;
            if let Some(f) = self.first.get_mut(kind as usize)
                && *f == 0
            {
                *f = count as u8;
            }
        }
        self.count = count as u8;
        Ok((deferred, pos))
    }

    fn validate(&mut self, body_start: usize, transport: Transport) -> Result<(), ErrorKind> {
        let buf = self.buf.as_ref();
        let mut seen = [false; HeaderName::COUNT];
        let mut cseq_method = Span::default();
        let mut top_via_seen = false;
        for e in self
            .headers
            .get(..usize::from(self.count))
            .unwrap_or_default()
        {
            let k = e.kind;
            if k == HeaderName::Other {
                continue;
            }
            if let Some(s) = seen.get_mut(k as usize) {
                if *s && is_single_valued(k) {
                    return Err(ErrorKind::DuplicateHeader(k));
                }
                *s = true;
            }
            let v = e.value.get(buf);
            let bad = ErrorKind::InvalidHeader(k);
            let num = |r: NumError| match r {
                NumError::Syntax => ErrorKind::InvalidHeader(k),
                NumError::Range => ErrorKind::OutOfRange(k),
            };
            match k {
                HeaderName::Via => {
                    for via in header::via_list(v) {
                        let via = via.map_err(|_| bad)?;
                        for p in via.params.iter() {
                            if p.name.eq_ignore_ascii_case(b"branch") {
                                if !top_via_seen
                                    && self.branch.is_none()
                                    && let Some(b) = p.value
                                {
                                    self.branch = Some(span_of(buf, b));
                                }
                            } else if p.name.eq_ignore_ascii_case(b"received")
                                && !p.value.is_some_and(header::is_ip_literal)
                            {
                                // RFC 3261 20.42: received is an address (RFC 5118 4.5: bracketed or not).
                                return Err(bad);
                            }
                        }
                        top_via_seen = true;
                    }
                }
                HeaderName::From | HeaderName::To => {
                    let n = NameAddr::parse(v).map_err(|_| bad)?;
                    let tag = n.tag().map(|t| span_of(buf, t));
                    if k == HeaderName::From {
                        self.from_tag = tag;
                    } else {
                        self.to_tag = tag;
                    }
                }
                HeaderName::CallId if v.is_empty() || v.iter().any(|&b| super::scan::is_lws(b)) => {
                    return Err(bad);
                }
                HeaderName::CSeq => {
                    let (seq, m) = CSeq::parse_raw(v).map_err(num)?;
                    self.cseq_seq = seq;
                    cseq_method = span_of(buf, m);
                }
                HeaderName::MaxForwards => {
                    self.max_forwards = Some(header::parse_scalar(v, 255).map_err(num)? as u8);
                }
                HeaderName::ContentLength => {
                    self.content_length =
                        Some(header::parse_scalar(v, MAX_MESSAGE as u64).map_err(num)? as u32);
                }
                HeaderName::Expires => {
                    header::parse_scalar(v, u64::from(u32::MAX)).map_err(num)?;
                }
                HeaderName::Contact if !header::is_star(v) => {
                    for c in header::name_addr_list(v) {
                        let c = c.map_err(|_| bad)?;
                        if let Some(Some(exp)) = c.param(b"expires") {
                            header::parse_number(exp, u64::from(u32::MAX)).map_err(num)?;
                        }
                    }
                }
                HeaderName::Route | HeaderName::RecordRoute => {
                    for r in header::name_addr_list(v) {
                        r.map_err(|_| bad)?;
                    }
                }
                HeaderName::ContentType => {
                    MediaType::parse(v).map_err(|_| bad)?;
                }
                HeaderName::Date if !header::is_valid_date(v) => return Err(bad),
                _ => {}
            }
        }
        for h in [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            if !seen.get(h as usize).copied().unwrap_or(false) {
                return Err(ErrorKind::MissingHeader(h));
            }
        }
        self.cseq_method = cseq_method;
        if let Start::Request { method, .. } = self.start
            && method.get(buf) != cseq_method.get(buf)
        {
            return Err(ErrorKind::CSeqMethodMismatch);
        }
        let avail = buf.len().saturating_sub(body_start);
        let body_len = match (self.content_length, transport) {
            (Some(cl), _) if cl as usize > avail => return Err(ErrorKind::BodyTruncated),
            (Some(cl), _) => cl as usize,
            (None, Transport::Datagram) => avail,
            (None, Transport::Stream) => return Err(ErrorKind::MissingContentLength),
        };
        self.body = Span::new(body_start, body_start + body_len);
        Ok(())
    }

    /// The whole buffer the message was parsed from (a datagram may hold trailing bytes after the message).
    pub fn buffer(&self) -> &B {
        &self.buf
    }

    /// The message's own bytes: start line to end of body.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf
            .as_ref()
            .get(..usize::from(self.body.end))
            .unwrap_or_default()
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, Start::Request { .. })
    }

    pub fn start_line(&self) -> StartLine<'_> {
        let buf = self.buf.as_ref();
        match self.start {
            Start::Request { method, uri } => StartLine::Request {
                method: Method::from_bytes(method.get(buf)),
                uri: uri.get(buf),
            },
            Start::Response { code, reason } => StartLine::Response {
                code,
                reason: reason.get(buf),
            },
        }
    }

    /// The request method; `None` for a response.
    pub fn method(&self) -> Option<Method<'_>> {
        match self.start {
            Start::Request { method, .. } => {
                Some(Method::from_bytes(method.get(self.buf.as_ref())))
            }
            Start::Response { .. } => None,
        }
    }

    /// The Request-URI (already validated); `None` for a response.
    pub fn request_uri(&self) -> Option<Uri<'_>> {
        match self.start {
            Start::Request { uri, .. } => Uri::parse(uri.get(self.buf.as_ref())).ok(),
            Start::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self.start {
            Start::Response { code, .. } => Some(code),
            Start::Request { .. } => None,
        }
    }

    pub fn reason(&self) -> Option<&[u8]> {
        match self.start {
            Start::Response { reason, .. } => Some(reason.get(self.buf.as_ref())),
            Start::Request { .. } => None,
        }
    }

    /// Every header in order.
    pub fn headers(&self) -> impl Iterator<Item = HeaderRef<'_>> + '_ {
        let buf = self.buf.as_ref();
        self.headers
            .get(..usize::from(self.count))
            .unwrap_or_default()
            .iter()
            .map(move |e| HeaderRef {
                name: e.kind,
                raw_name: e.name.get(buf),
                value: e.value.get(buf),
            })
    }

    pub fn header_count(&self) -> usize {
        usize::from(self.count)
    }

    /// The first value of a known header.
    pub fn header(&self, name: HeaderName) -> Option<&[u8]> {
        let idx = usize::from(*self.first.get(name as usize)?).checked_sub(1)?;
        Some(self.headers.get(idx)?.value.get(self.buf.as_ref()))
    }

    /// Every value of a known header, in order (each may still be comma-joined).
    pub fn header_values(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        self.headers()
            .filter(move |h| h.name == name)
            .map(|h| h.value)
    }

    /// The first header with this exact name, case-insensitive (for `X-` and other unknown headers).
    pub fn header_by_name(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers()
            .find(|h| h.raw_name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// All Via values, top first, comma-joined ones split.
    pub fn vias(&self) -> impl Iterator<Item = Via<'_>> + '_ {
        self.header_values(HeaderName::Via)
            .flat_map(header::via_list)
            .filter_map(Result::ok)
    }

    pub fn top_via(&self) -> Option<Via<'_>> {
        self.vias().next()
    }

    /// The top Via's branch (found at parse time: no parsing here).
    pub fn branch(&self) -> Option<&[u8]> {
        self.branch.map(|s| s.get(self.buf.as_ref()))
    }

    /// The From tag (found at parse time).
    pub fn from_tag(&self) -> Option<&[u8]> {
        self.from_tag.map(|s| s.get(self.buf.as_ref()))
    }

    /// The To tag (found at parse time).
    pub fn to_tag(&self) -> Option<&[u8]> {
        self.to_tag.map(|s| s.get(self.buf.as_ref()))
    }

    pub fn from(&self) -> Option<NameAddr<'_>> {
        NameAddr::parse(self.header(HeaderName::From)?).ok()
    }

    pub fn to(&self) -> Option<NameAddr<'_>> {
        NameAddr::parse(self.header(HeaderName::To)?).ok()
    }

    pub fn call_id(&self) -> &[u8] {
        self.header(HeaderName::CallId).unwrap_or_default()
    }

    pub fn cseq(&self) -> CSeq<'_> {
        CSeq {
            seq: self.cseq_seq,
            method: Method::from_bytes(self.cseq_method.get(self.buf.as_ref())),
        }
    }

    pub fn max_forwards(&self) -> Option<u8> {
        self.max_forwards
    }

    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    pub fn contacts(&self) -> impl Iterator<Item = NameAddr<'_>> + '_ {
        self.header_values(HeaderName::Contact)
            .flat_map(header::name_addr_list)
            .filter_map(Result::ok)
    }

    /// `Contact: *`.
    pub fn contact_is_star(&self) -> bool {
        self.header(HeaderName::Contact)
            .is_some_and(header::is_star)
    }

    pub fn routes(&self) -> impl Iterator<Item = NameAddr<'_>> + '_ {
        self.header_values(HeaderName::Route)
            .flat_map(header::name_addr_list)
            .filter_map(Result::ok)
    }

    pub fn record_routes(&self) -> impl Iterator<Item = NameAddr<'_>> + '_ {
        self.header_values(HeaderName::RecordRoute)
            .flat_map(header::name_addr_list)
            .filter_map(Result::ok)
    }

    pub fn content_type(&self) -> Option<MediaType<'_>> {
        MediaType::parse(self.header(HeaderName::ContentType)?).ok()
    }

    pub fn expires(&self) -> Option<u32> {
        header::parse_scalar(self.header(HeaderName::Expires)?, u64::from(u32::MAX))
            .ok()
            .map(|e| e as u32)
    }

    pub fn session_expires(&self) -> Option<Result<SessionExpires<'_>, NumError>> {
        self.header(HeaderName::SessionExpires)
            .map(SessionExpires::parse)
    }

    pub fn min_se(&self) -> Option<Result<u32, NumError>> {
        self.header(HeaderName::MinSe).map(|v| {
            let v = trim_lws(v);
            let end = memchr::memchr(b';', v).unwrap_or(v.len());
            header::parse_scalar(v.get(..end).unwrap_or_default(), u64::from(u32::MAX))
                .map(|n| n as u32)
        })
    }

    pub fn refer_to(&self) -> Option<Result<NameAddr<'_>, header::ValueError>> {
        self.header(HeaderName::ReferTo).map(NameAddr::parse)
    }

    pub fn referred_by(&self) -> Option<Result<NameAddr<'_>, header::ValueError>> {
        self.header(HeaderName::ReferredBy).map(NameAddr::parse)
    }

    pub fn replaces(&self) -> Option<Result<Replaces<'_>, header::ValueError>> {
        self.header(HeaderName::Replaces).map(Replaces::parse)
    }

    /// Authorization, Proxy-Authorization, WWW-Authenticate or Proxy-Authenticate (first of each).
    pub fn auth(&self, which: HeaderName) -> Option<Result<Auth<'_>, header::ValueError>> {
        self.header(which).map(Auth::parse)
    }

    pub fn user_agent(&self) -> Option<&[u8]> {
        self.header(HeaderName::UserAgent)
    }

    /// Tokens of Supported, Require, Proxy-Require, Allow or Allow-Events across all their headers.
    pub fn tokens(&self, which: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        self.header_values(which).flat_map(header::token_list)
    }

    pub fn p_asserted_identities(&self) -> impl Iterator<Item = NameAddr<'_>> + '_ {
        self.header_values(HeaderName::PAssertedIdentity)
            .flat_map(header::name_addr_list)
            .filter_map(Result::ok)
    }

    pub fn reason_header(&self) -> Option<Result<Reason<'_>, header::ValueError>> {
        self.header(HeaderName::Reason).map(Reason::parse)
    }

    pub fn body(&self) -> &[u8] {
        self.body.get(self.buf.as_ref())
    }

    /// The Request-URI scheme, when it is a request.
    pub fn request_scheme(&self) -> Option<Scheme> {
        self.request_uri().map(|u| u.scheme)
    }

    /// Serializes the message: canonical start line, every header as `name: value` with the name and value
    /// bytes as received (unknown headers pass through untouched), the body.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let buf = self.buf.as_ref();
        match self.start {
            Start::Request { method, uri } => {
                out.extend_from_slice(method.get(buf));
                out.push(b' ');
                out.extend_from_slice(uri.get(buf));
                out.extend_from_slice(b" SIP/2.0\r\n");
            }
            Start::Response { code, reason } => {
                out.extend_from_slice(b"SIP/2.0 ");
                push_u64(out, u64::from(code));
                out.push(b' ');
                out.extend_from_slice(reason.get(buf));
                out.extend_from_slice(b"\r\n");
            }
        }
        for e in self
            .headers
            .get(..usize::from(self.count))
            .unwrap_or_default()
        {
            out.extend_from_slice(e.name.get(buf));
            out.extend_from_slice(b": ");
            out.extend_from_slice(e.value.get(buf));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body.get(buf));
    }

    /// A copy that owns its bytes (one allocation: the message bytes; spans are reused as they are).
    pub fn to_owned_message(&self) -> OwnedMessage {
        Message {
            buf: Bytes::copy_from_slice(self.as_bytes()),
            start: self.start,
            headers: self.headers,
            count: self.count,
            first: self.first,
            body: self.body,
            cseq_seq: self.cseq_seq,
            cseq_method: self.cseq_method,
            max_forwards: self.max_forwards,
            content_length: self.content_length,
            from_tag: self.from_tag,
            to_tag: self.to_tag,
            branch: self.branch,
        }
    }
}

impl<B: AsRef<[u8]>> core::fmt::Debug for Message<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Message")
            .field("start", &self.start_line())
            .field("headers", &self.header_count())
            .field("body_len", &self.body().len())
            .finish()
    }
}

/// Largest valid CSeq sequence number (RFC 3261 8.1.1.5: below 2^31), for the transaction layer.
pub const MAX_CSEQ: u32 = CSEQ_MAX as u32;
