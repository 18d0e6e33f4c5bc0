//! Message boundaries on a byte stream (TCP, TLS): messages split across reads or glued together, and the
//! RFC 5626 keepalives (`CRLFCRLF` ping, `CRLF` pong) between them.

use super::error::{ErrorKind, ParseError};
use super::header::parse_scalar;
use super::message::MAX_MESSAGE;
use super::name::HeaderName;

/// What the next bytes of the stream are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// One whole message (start line to end of body); parse it with `Message::parse_stream`.
    Message(&'a [u8]),
    /// `CRLFCRLF`: the peer asks for a pong (answer with `CRLF`).
    Ping,
    /// A lone `CRLF`: the answer to our ping.
    Pong,
}

/// The kind and length of a complete frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Message,
    Ping,
    Pong,
}

/// Looks for one complete frame at the start of `buf`. `Ok(None)`: more bytes are needed. `scan_from` is a
/// hint: the header terminator is known not to start before it (lets a trickled header be scanned once).
/// An error means the stream cannot be resynchronised and should be closed.
pub fn frame_at(buf: &[u8], scan_from: usize) -> Result<Option<(FrameKind, usize)>, ParseError> {
    Ok(match step(buf, scan_from)? {
        Step::Frame(kind, len) => Some((kind, len)),
        Step::NeedHeader | Step::NeedBody => None,
    })
}

enum Step {
    Frame(FrameKind, usize),
    /// The header terminator is not in the buffer yet.
    NeedHeader,
    /// The header section is complete, the body is not.
    NeedBody,
}

fn step(buf: &[u8], scan_from: usize) -> Result<Step, ParseError> {
    match buf {
        [] => return Ok(Step::NeedHeader),
        [b'\r', b'\n', b'\r', b'\n', ..] => return Ok(Step::Frame(FrameKind::Ping, 4)),
        [b'\r', b'\n', b'\r'] | [b'\r', b'\n'] | [b'\r'] => return Ok(Step::NeedHeader),
        [b'\r', b'\n', ..] => return Ok(Step::Frame(FrameKind::Pong, 2)),
        [b'\n', ..] => return Ok(Step::Frame(FrameKind::Pong, 1)),
        [b'\r', ..] => return Err(ErrorKind::BadStartLine.into()),
        _ => {}
    }
    let Some(head_end) = find_header_end(buf, scan_from) else {
        if buf.len() > MAX_MESSAGE {
            return Err(ErrorKind::TooLarge.into());
        }
        return Ok(Step::NeedHeader);
    };
    let cl = content_length(buf.get(..head_end).unwrap_or_default())?;
    let total = head_end + cl;
    if total > MAX_MESSAGE {
        return Err(ErrorKind::TooLarge.into());
    }
    if buf.len() < total {
        return Ok(Step::NeedBody);
    }
    Ok(Step::Frame(FrameKind::Message, total))
}

/// Index just after the empty line that ends the header section (CRLF or bare LF line ends).
fn find_header_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.min(buf.len());
    for lf in memchr::memchr_iter(b'\n', buf.get(start..)?) {
        let p = start + lf;
        match (buf.get(p + 1), buf.get(p + 2)) {
            (Some(b'\n'), _) => return Some(p + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(p + 3),
            _ => {}
        }
    }
    None
}

/// The Content-Length of a header section; required on a stream, and must not be given twice.
fn content_length(head: &[u8]) -> Result<usize, ParseError> {
    let mut found = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default();
        let name = super::scan::trim_lws(name);
        if HeaderName::classify(name) != HeaderName::ContentLength {
            continue;
        }
        let value = line.get(colon + 1..).unwrap_or_default();
        let n = parse_scalar(value, MAX_MESSAGE as u64)
            .map_err(|_| ParseError::new(ErrorKind::InvalidHeader(HeaderName::ContentLength)))?;
        if found.replace(n).is_some() {
            return Err(ErrorKind::DuplicateHeader(HeaderName::ContentLength).into());
        }
    }
    found
        .map(|n| n as usize)
        .ok_or_else(|| ErrorKind::MissingContentLength.into())
}

/// Accumulates reads and hands out frames. Keeps one buffer, compacted lazily.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    start: usize,
    /// Bytes after `start` already known not to hold the header terminator.
    scanned: usize,
}

impl StreamFramer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(cap: usize) -> Self {
        StreamFramer {
            buf: Vec::with_capacity(cap),
            start: 0,
            scanned: 0,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that are not yet part of a returned frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed. After an error the stream is
    /// unusable and should be closed.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ParseError> {
        let pending = self.buf.get(self.start..).unwrap_or_default();
        // The terminator is 2-3 bytes long; back off so a partially received one is rescanned.
        let hint = self.scanned.saturating_sub(3);
        match step(pending, hint)? {
            Step::NeedHeader => {
                self.scanned = pending.len();
                Ok(None)
            }
            Step::NeedBody => Ok(None),
            Step::Frame(kind, len) => {
                let at = self.start;
                self.start += len;
                self.scanned = 0;
                Ok(Some(match kind {
                    FrameKind::Ping => Frame::Ping,
                    FrameKind::Pong => Frame::Pong,
                    FrameKind::Message => {
                        Frame::Message(self.buf.get(at..at + len).unwrap_or_default())
                    }
                }))
            }
        }
    }
}
