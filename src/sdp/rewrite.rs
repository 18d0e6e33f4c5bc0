//! Rewrites for media anchoring. Each changes only the lines it names; all others keep their bytes.

use super::SdpError;
use super::crypto::CryptoAttr;
use super::parse::{Direction, Level, MediaLine, Origin, Sdp};
use std::net::IpAddr;

fn addrtype(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "IP4" } else { "IP6" }
}

/// `c=IN IP4 <a>` / `c=IN IP6 <a>`.
pub fn connection_line(a: IpAddr) -> String {
    format!("c=IN {} {}", addrtype(a), a)
}

/// Attributes whose values name the peer's transport addresses or a transport we do not
/// terminate (ICE, DTLS): passing them through would leak topology and mislead the other side.
pub fn is_transport_attr(name: &str) -> bool {
    matches!(
        name,
        "candidate"
            | "remote-candidates"
            | "end-of-candidates"
            | "ice-ufrag"
            | "ice-pwd"
            | "ice-options"
            | "ice-lite"
            | "ice-mismatch"
            | "fingerprint"
            | "setup"
            | "tls-id"
            | "group"
    )
}

/// Attributes that carry a payload type as the first token of their value.
fn is_pt_attr(name: &str) -> bool {
    matches!(name, "rtpmap" | "fmtp" | "rtcp-fb")
}

impl Sdp {
    /// Replaces the `o=` line.
    pub fn set_origin(&mut self, o: &Origin) -> Result<(), SdpError> {
        let i = self
            .find(Level::Session, b'o')?
            .ok_or(SdpError::BadOrigin)?;
        let line = format!(
            "o={} {} {} {} {} {}",
            o.username, o.sess_id, o.sess_version, o.nettype, o.addrtype, o.address
        );
        self.set_line(i, &line);
        Ok(())
    }

    /// Sets the connection address at a level, inserting a `c=` line there if it has none.
    pub fn set_connection(&mut self, level: Level, addr: IpAddr) -> Result<(), SdpError> {
        let line = connection_line(addr);
        if let Some(i) = self.find(level, b'c')? {
            self.set_line(i, &line);
            return Ok(());
        }
        let r = self.range(level)?;
        // RFC 8866 line order: c= follows i= (media) or comes before b=/t= (session).
        let at = match level {
            Level::Media(_) => {
                let mut at = r.start + 1;
                while at < r.end && matches!(self.kv(at), Some((b'i', _))) {
                    at += 1;
                }
                at
            }
            Level::Session => r
                .clone()
                .find(|&i| {
                    matches!(
                        self.kv(i),
                        Some((b'b' | b't' | b'r' | b'z' | b'k' | b'a', _))
                    )
                })
                .unwrap_or(r.end),
        };
        self.insert_line(at, &line);
        Ok(())
    }

    /// Removes the `c=` line of a media section (its session-level one then applies).
    pub fn remove_connection(&mut self, i: usize) -> Result<(), SdpError> {
        if let Some(l) = self.find(Level::Media(i), b'c')? {
            self.remove_line(l);
        }
        Ok(())
    }

    pub fn set_media_line(&mut self, i: usize, m: &MediaLine) -> Result<(), SdpError> {
        let r = self.range(Level::Media(i))?;
        self.set_line(r.start, &m.to_line());
        Ok(())
    }

    pub fn set_media_port(&mut self, i: usize, port: u16) -> Result<(), SdpError> {
        let mut m = self.media(i)?;
        m.port = port;
        self.set_media_line(i, &m)
    }

    /// Removes the attributes at `level` for which `pred(name, value)` holds; returns how many.
    pub fn remove_attrs(
        &mut self,
        level: Level,
        pred: impl Fn(&str, Option<&str>) -> bool,
    ) -> Result<usize, SdpError> {
        let doomed: Vec<usize> = self
            .attributes(level)?
            .into_iter()
            .filter(|(_, n, v)| pred(n, *v))
            .map(|(i, _, _)| i)
            .collect();
        for &i in doomed.iter().rev() {
            self.remove_line(i);
        }
        Ok(doomed.len())
    }

    /// Appends `a=<attr>` at the end of a level.
    pub fn add_attr(&mut self, level: Level, attr: &str) -> Result<(), SdpError> {
        let mut end = self.range(level)?.end;
        // Keep a trailing empty line (some stacks end the body with an extra CRLF) last.
        while end > 0 && self.lines.get(end - 1).is_some_and(|l| l.text.is_empty()) {
            end -= 1;
        }
        self.insert_line(end, &format!("a={attr}"));
        Ok(())
    }

    /// Replaces the value of every `a=rtcp` in a section (RFC 3605) with our port and address.
    pub fn set_rtcp_attr(&mut self, i: usize, port: u16, addr: IpAddr) -> Result<bool, SdpError> {
        let lines: Vec<usize> = self
            .attributes(Level::Media(i))?
            .into_iter()
            .filter(|(_, n, _)| *n == "rtcp")
            .map(|(l, _, _)| l)
            .collect();
        for &l in &lines {
            self.set_line(l, &format!("a=rtcp:{port} IN {} {addr}", addrtype(addr)));
        }
        Ok(!lines.is_empty())
    }

    /// Sets a section's direction explicitly (session-level direction lines are removed by the
    /// caller when it writes every section explicitly).
    pub fn set_direction(&mut self, i: usize, d: Direction) -> Result<(), SdpError> {
        let existing: Vec<usize> = self
            .attributes(Level::Media(i))?
            .into_iter()
            .filter(|(_, n, _)| Direction::from_attr(n).is_some())
            .map(|(l, _, _)| l)
            .collect();
        match existing.split_first() {
            Some((&first, rest)) => {
                for &l in rest.iter().rev() {
                    self.remove_line(l);
                }
                self.set_line(first, &format!("a={}", d.as_str()));
                Ok(())
            }
            None => self.add_attr(Level::Media(i), d.as_str()),
        }
    }

    pub fn set_ptime(&mut self, i: usize, ms: u32) -> Result<(), SdpError> {
        let lines: Vec<usize> = self
            .attributes(Level::Media(i))?
            .into_iter()
            .filter(|(_, n, _)| *n == "ptime")
            .map(|(l, _, _)| l)
            .collect();
        match lines.first() {
            Some(&l) => self.set_line(l, &format!("a=ptime:{ms}")),
            None => self.add_attr(Level::Media(i), &format!("ptime:{ms}"))?,
        }
        Ok(())
    }

    /// Replaces all `a=crypto` of a section with `attrs` (an empty slice removes them).
    pub fn set_crypto(&mut self, i: usize, attrs: &[CryptoAttr]) -> Result<(), SdpError> {
        self.remove_attrs(Level::Media(i), |n, _| n == "crypto")?;
        for a in attrs {
            self.add_attr(Level::Media(i), &a.to_attr())?;
        }
        Ok(())
    }

    /// The `a=crypto` attributes of a section.
    pub fn crypto(&self, i: usize) -> Result<Vec<CryptoAttr>, SdpError> {
        let mut v = Vec::new();
        for (l, n, val) in self.attributes(Level::Media(i))? {
            if n == "crypto" {
                v.push(CryptoAttr::parse(val.unwrap_or(""), l + 1)?);
            }
        }
        Ok(v)
    }

    /// Keeps only the payload types in `map` (old PT -> new PT, in the new order): rewrites the
    /// m= format list, drops `rtpmap`/`fmtp`/`rtcp-fb` of other PTs and renumbers the kept ones.
    /// `rtcp-fb:*` lines stay.
    pub fn map_formats(&mut self, i: usize, map: &[(u8, u8)]) -> Result<(), SdpError> {
        let mut m = self.media(i)?;
        m.formats = map.iter().map(|(_, n)| n.to_string()).collect();
        self.set_media_line(i, &m)?;
        let attrs: Vec<(usize, String, String)> = self
            .attributes(Level::Media(i))?
            .into_iter()
            .filter(|(_, n, _)| is_pt_attr(n))
            .map(|(l, n, v)| (l, n.to_string(), v.unwrap_or("").to_string()))
            .collect();
        let mut doomed = Vec::new();
        for (l, n, v) in attrs {
            let (pt, rest) = v.split_once([' ', '\t']).unwrap_or((v.as_str(), ""));
            if pt == "*" {
                continue;
            }
            match pt
                .parse::<u8>()
                .ok()
                .and_then(|p| map.iter().find(|(o, _)| *o == p))
            {
                Some((o, nw)) if o != nw => self.set_line(l, &format!("a={n}:{nw} {rest}")),
                Some(_) => {}
                None => doomed.push(l),
            }
        }
        for &l in doomed.iter().rev() {
            self.remove_line(l);
        }
        Ok(())
    }

    /// Adds `a=rtpmap` for a kept dynamic PT that has none (e.g. after renumbering a static one).
    pub fn ensure_rtpmap(&mut self, i: usize, pt: u8, rtpmap: &str) -> Result<(), SdpError> {
        if self.rtpmap(i, &pt.to_string())?.is_none() {
            self.add_attr(Level::Media(i), rtpmap)?;
        }
        Ok(())
    }

    /// Reduces a section to its m= line with port 0 (a rejected or disabled stream).
    pub fn reject_stream(&mut self, i: usize) -> Result<(), SdpError> {
        let r = self.range(Level::Media(i))?;
        let mut m = self.media(i)?;
        m.port = 0;
        m.num_ports = None;
        for l in (r.start + 1..r.end).rev() {
            if self.lines.get(l).is_some_and(|x| !x.text.is_empty()) {
                self.remove_line(l);
            }
        }
        self.set_media_line(i, &m)
    }
}
