//! The line-preserving SDP model and typed accessors for the lines an SBC interprets.

use super::{MAX_SDP_LEN, SdpError};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) text: Vec<u8>,
    /// `\r\n`, `\n` or nothing (last line without terminator).
    pub(crate) eol: &'static [u8],
}

/// A session description as a list of lines. Serializing an unmodified `Sdp` gives back the
/// exact input bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    pub(crate) lines: Vec<Line>,
}

/// An attribute line: (line index, name, value; `None` for a flag attribute).
pub type Attr<'a> = (usize, &'a str, Option<&'a str>);

/// Session level or the i-th media section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Session,
    Media(usize),
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub sess_id: String,
    pub sess_version: u64,
    pub nettype: String,
    pub addrtype: String,
    pub address: String,
}

/// `c=IN IP4|IP6 <address>[/ttl[/n]]`; `addr` is `None` for an FQDN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub addrtype: String,
    pub address: String,
    pub addr: Option<IpAddr>,
}

impl Connection {
    /// RFC 2543 hold: `c=IN IP4 0.0.0.0`.
    pub fn is_hold(&self) -> bool {
        self.addr.is_some_and(|a| a.is_unspecified())
    }
}

/// `m=<media> <port>[/<n>] <proto> <fmt> ...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine {
    pub media: String,
    pub port: u16,
    pub num_ports: Option<u16>,
    pub proto: String,
    pub formats: Vec<String>,
}

impl MediaLine {
    pub fn to_line(&self) -> String {
        let mut s = format!("m={} {}", self.media, self.port);
        if let Some(n) = self.num_ports {
            s.push_str(&format!("/{n}"));
        }
        s.push(' ');
        s.push_str(&self.proto);
        for f in &self.formats {
            s.push(' ');
            s.push_str(f);
        }
        s
    }

    /// RTP profiles we relay: AVP/SAVP with or without feedback.
    pub fn is_rtp(&self) -> bool {
        matches!(
            self.proto.as_str(),
            "RTP/AVP" | "RTP/SAVP" | "RTP/AVPF" | "RTP/SAVPF"
        )
    }

    pub fn is_savp(&self) -> bool {
        self.proto.starts_with("RTP/SAVP")
    }
}

/// Media direction attribute (RFC 3264 section 5.1); `sendrecv` when none is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn from_attr(name: &str) -> Option<Direction> {
        Some(match name {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answerer mirrors (RFC 3264 6.1).
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// True unless both ways flow: a stream in this state sends little or nothing.
    pub fn is_hold(self) -> bool {
        self != Direction::SendRecv
    }
}

fn ws(s: &str) -> impl Iterator<Item = &str> {
    s.split([' ', '\t']).filter(|t| !t.is_empty())
}

impl Sdp {
    /// Parses a body; tolerant of bare LF and of a missing final terminator, strict about the
    /// `<letter>=` line form (empty lines are kept as they are).
    pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
        if body.len() > MAX_SDP_LEN {
            return Err(SdpError::TooLarge);
        }
        let mut lines = Vec::with_capacity(body.len() / 20 + 1);
        let mut rest = body;
        while !rest.is_empty() {
            let (text, eol, next): (&[u8], &'static [u8], &[u8]) = match memchr::memchr(b'\n', rest)
            {
                Some(i) => {
                    let (t, eol): (&[u8], &'static [u8]) = match rest[..i].last() {
                        Some(b'\r') => (&rest[..i - 1], b"\r\n"),
                        _ => (&rest[..i], b"\n"),
                    };
                    (t, eol, &rest[i + 1..])
                }
                None => (rest, b"", &[][..]),
            };
            let n = lines.len();
            let ok = text.is_empty()
                || (text.len() >= 2 && text[0].is_ascii_alphabetic() && text[1] == b'=');
            if !ok {
                return Err(SdpError::BadLine { line: n + 1 });
            }
            lines.push(Line {
                text: text.to_vec(),
                eol,
            });
            rest = next;
        }
        let sdp = Sdp { lines };
        if sdp.lines.first().map(|l| l.text.as_slice()) != Some(b"v=0") {
            return Err(SdpError::MissingVersion);
        }
        Ok(sdp)
    }

    /// The exact bytes (input bytes when unmodified).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.lines.iter().map(|l| l.text.len() + 2).sum());
        for l in &self.lines {
            out.extend_from_slice(&l.text);
            out.extend_from_slice(l.eol);
        }
        out
    }

    pub(crate) fn line_str(&self, i: usize) -> Result<&str, SdpError> {
        let l = self.lines.get(i).ok_or(SdpError::BadLine { line: i + 1 })?;
        std::str::from_utf8(&l.text).map_err(|_| SdpError::Utf8 { line: i + 1 })
    }

    /// The type letter and value of line `i` (`None` for an empty line).
    pub(crate) fn kv(&self, i: usize) -> Option<(u8, &[u8])> {
        let t = &self.lines.get(i)?.text;
        Some((*t.first()?, t.get(2..)?))
    }

    fn media_starts(&self) -> Vec<usize> {
        (0..self.lines.len())
            .filter(|&i| matches!(self.kv(i), Some((b'm', _))))
            .collect()
    }

    pub fn media_count(&self) -> usize {
        self.media_starts().len()
    }

    /// Line index range of a level (the media range starts at its m= line).
    pub fn range(&self, level: Level) -> Result<std::ops::Range<usize>, SdpError> {
        let starts = self.media_starts();
        let end = self.lines.len();
        Ok(match level {
            Level::Session => 0..starts.first().copied().unwrap_or(end),
            Level::Media(i) => {
                let s = *starts.get(i).ok_or(SdpError::NoSuchStream(i))?;
                s..starts.get(i + 1).copied().unwrap_or(end)
            }
        })
    }

    /// First line of type `t` at a level.
    pub(crate) fn find(&self, level: Level, t: u8) -> Result<Option<usize>, SdpError> {
        Ok(self
            .range(level)?
            .find(|&i| matches!(self.kv(i), Some((c, _)) if c == t)))
    }

    pub fn origin(&self) -> Result<Origin, SdpError> {
        let i = self
            .find(Level::Session, b'o')?
            .ok_or(SdpError::BadOrigin)?;
        let s = self.line_str(i).map_err(|_| SdpError::BadOrigin)?;
        let f: Vec<&str> = ws(s.get(2..).unwrap_or("")).collect();
        let [u, id, ver, nt, at, addr] = f.as_slice() else {
            return Err(SdpError::BadOrigin);
        };
        Ok(Origin {
            username: (*u).to_string(),
            sess_id: (*id).to_string(),
            sess_version: ver.parse().map_err(|_| SdpError::BadOrigin)?,
            nettype: (*nt).to_string(),
            addrtype: (*at).to_string(),
            address: (*addr).to_string(),
        })
    }

    /// The `c=` line at exactly this level.
    pub fn connection(&self, level: Level) -> Result<Option<Connection>, SdpError> {
        let Some(i) = self.find(level, b'c')? else {
            return Ok(None);
        };
        let s = self.line_str(i)?;
        let f: Vec<&str> = ws(s.get(2..).unwrap_or("")).collect();
        let [nt, at, addr] = f.as_slice() else {
            return Err(SdpError::BadConnection { line: i + 1 });
        };
        if *nt != "IN" {
            return Err(SdpError::BadConnection { line: i + 1 });
        }
        let host = addr.split('/').next().unwrap_or("");
        Ok(Some(Connection {
            addrtype: (*at).to_string(),
            address: (*addr).to_string(),
            addr: host.parse().ok(),
        }))
    }

    /// The connection that applies to a media section (its own, else the session's).
    pub fn effective_connection(&self, i: usize) -> Result<Option<Connection>, SdpError> {
        match self.connection(Level::Media(i))? {
            Some(c) => Ok(Some(c)),
            None => self.connection(Level::Session),
        }
    }

    pub fn media(&self, i: usize) -> Result<MediaLine, SdpError> {
        let r = self.range(Level::Media(i))?;
        let s = self.line_str(r.start)?;
        let bad = SdpError::BadMedia { line: r.start + 1 };
        let mut f = ws(s.get(2..).unwrap_or(""));
        let media = f.next().ok_or(bad.clone())?.to_string();
        let port_s = f.next().ok_or(bad.clone())?;
        let (port, num_ports) = match port_s.split_once('/') {
            Some((p, n)) => (
                p.parse().map_err(|_| bad.clone())?,
                Some(n.parse().map_err(|_| bad.clone())?),
            ),
            None => (port_s.parse().map_err(|_| bad.clone())?, None),
        };
        let proto = f.next().ok_or(bad.clone())?.to_string();
        let formats: Vec<String> = f.map(str::to_string).collect();
        if formats.is_empty() {
            return Err(bad);
        }
        Ok(MediaLine {
            media,
            port,
            num_ports,
            proto,
            formats,
        })
    }

    /// `(line index, name, value)` of every `a=` line at exactly this level.
    pub fn attributes(&self, level: Level) -> Result<Vec<Attr<'_>>, SdpError> {
        let mut v = Vec::new();
        for i in self.range(level)? {
            if let Some((b'a', _)) = self.kv(i) {
                let s = self.line_str(i)?;
                let a = s.get(2..).unwrap_or("");
                match a.split_once(':') {
                    Some((n, val)) => v.push((i, n, Some(val))),
                    None => v.push((i, a, None)),
                }
            }
        }
        Ok(v)
    }

    /// Value of the first attribute `name` at this level: `Some(None)` for a flag attribute.
    pub fn attribute(&self, level: Level, name: &str) -> Result<Option<Option<&str>>, SdpError> {
        Ok(self
            .attributes(level)?
            .into_iter()
            .find(|(_, n, _)| *n == name)
            .map(|(_, _, v)| v))
    }

    /// Direction of a media section: its own attribute, else the session's, else sendrecv.
    pub fn direction(&self, i: usize) -> Result<Direction, SdpError> {
        for level in [Level::Media(i), Level::Session] {
            if let Some(d) = self
                .attributes(level)?
                .iter()
                .find_map(|(_, n, _)| Direction::from_attr(n))
            {
                return Ok(d);
            }
        }
        Ok(Direction::SendRecv)
    }

    /// `rtpmap` of a payload type in a media section: (encoding name, clock rate, channels).
    pub fn rtpmap(
        &self,
        i: usize,
        pt: &str,
    ) -> Result<Option<(String, u32, Option<u8>)>, SdpError> {
        for (_, n, v) in self.attributes(Level::Media(i))? {
            if n != "rtpmap" {
                continue;
            }
            let Some(v) = v else { continue };
            let Some((p, enc)) = v.split_once(' ') else {
                continue;
            };
            if p != pt {
                continue;
            }
            let mut parts = enc.trim().split('/');
            let name = parts.next().unwrap_or("").to_string();
            let Some(rate) = parts.next().and_then(|r| r.parse().ok()) else {
                continue;
            };
            let ch = parts.next().and_then(|c| c.parse().ok());
            return Ok(Some((name, rate, ch)));
        }
        Ok(None)
    }

    // --- line editing primitives (keep every other line's bytes) ---

    /// The document's line terminator (the first line's), for inserted lines.
    pub(crate) fn eol(&self) -> &'static [u8] {
        match self.lines.first().map(|l| l.eol) {
            Some(b"\n") => b"\n",
            _ => b"\r\n",
        }
    }

    pub(crate) fn set_line(&mut self, i: usize, text: &str) {
        if let Some(l) = self.lines.get_mut(i) {
            l.text = text.as_bytes().to_vec();
        }
    }

    /// Inserts a line before index `i` (`i == len` appends).
    pub(crate) fn insert_line(&mut self, i: usize, text: &str) {
        let eol = self.eol();
        let i = i.min(self.lines.len());
        if i == self.lines.len() {
            // Keep "no terminator on the last line" if that was the input's style.
            if let Some(last) = self.lines.last_mut()
                && last.eol.is_empty()
            {
                last.eol = eol;
                self.lines.push(Line {
                    text: text.as_bytes().to_vec(),
                    eol: b"",
                });
                return;
            }
        }
        self.lines.insert(
            i,
            Line {
                text: text.as_bytes().to_vec(),
                eol,
            },
        );
    }

    pub(crate) fn remove_line(&mut self, i: usize) {
        if i < self.lines.len() {
            let removed = self.lines.remove(i);
            if removed.eol.is_empty()
                && i == self.lines.len()
                && let Some(last) = self.lines.last_mut()
            {
                last.eol = b"";
            }
        }
    }
}
