//! rtpengine's ng control protocol: `<cookie> <bencoded dict>` over UDP, answered with the same cookie and a
//! bencoded dict (`result: ok|error|pong`). Enough of it to set up N calls (offer/answer), ping and delete,
//! so the benchmarks can put the same generator through rtpengine.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::srtp::MasterKey;

use super::spec::StreamSpec;
use super::transform::DEFAULT_SUITE;

/// A bencode value. Dictionary keys are byte strings, kept sorted as bencode requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    #[error("input ended inside a value")]
    Truncated,
    #[error("unexpected byte {0:#04x} at {1}")]
    Unexpected(u8, usize),
    #[error("bad integer at {0}")]
    BadInt(usize),
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

const MAX_DEPTH: usize = 32;

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }
    pub fn dict<'a>(items: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(
            items
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }
    pub fn list_of_str(items: &[&str]) -> Value {
        Value::List(items.iter().map(|s| Value::str(s)).collect())
    }
    /// Looks up a key of a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }
    /// The value as UTF-8 text, if it is a byte string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Value::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Decodes exactly one value spanning all of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Value, BencodeError> {
        let (v, used) = decode_at(buf, 0, 0)?;
        if used != buf.len() {
            return Err(BencodeError::Trailing(buf.len() - used));
        }
        Ok(v)
    }
}

fn digits_until(buf: &[u8], at: usize, end: u8) -> Result<(i64, usize), BencodeError> {
    let stop = buf[at..]
        .iter()
        .position(|&b| b == end)
        .ok_or(BencodeError::Truncated)?;
    let text = std::str::from_utf8(&buf[at..at + stop]).map_err(|_| BencodeError::BadInt(at))?;
    let ok_form = !text.is_empty()
        && (text == "0" || !(text.starts_with('0') || text.starts_with("-0")))
        && text != "-";
    if !ok_form {
        return Err(BencodeError::BadInt(at));
    }
    let v = text.parse::<i64>().map_err(|_| BencodeError::BadInt(at))?;
    Ok((v, at + stop + 1))
}

fn decode_at(buf: &[u8], at: usize, depth: usize) -> Result<(Value, usize), BencodeError> {
    if depth > MAX_DEPTH {
        return Err(BencodeError::TooDeep);
    }
    let &c = buf.get(at).ok_or(BencodeError::Truncated)?;
    match c {
        b'i' => {
            let (v, next) = digits_until(buf, at + 1, b'e')?;
            Ok((Value::Int(v), next))
        }
        b'0'..=b'9' => {
            let (len, start) = digits_until(buf, at, b':')?;
            let len = usize::try_from(len).map_err(|_| BencodeError::BadInt(at))?;
            let end = start.checked_add(len).ok_or(BencodeError::Truncated)?;
            let b = buf.get(start..end).ok_or(BencodeError::Truncated)?;
            Ok((Value::Bytes(b.to_vec()), end))
        }
        b'l' => {
            let mut items = Vec::new();
            let mut p = at + 1;
            loop {
                match buf.get(p) {
                    None => return Err(BencodeError::Truncated),
                    Some(b'e') => return Ok((Value::List(items), p + 1)),
                    Some(_) => {
                        let (v, n) = decode_at(buf, p, depth + 1)?;
                        items.push(v);
                        p = n;
                    }
                }
            }
        }
        b'd' => {
            let mut d = BTreeMap::new();
            let mut p = at + 1;
            loop {
                match buf.get(p) {
                    None => return Err(BencodeError::Truncated),
                    Some(b'e') => return Ok((Value::Dict(d), p + 1)),
                    Some(_) => {
                        let (k, n) = decode_at(buf, p, depth + 1)?;
                        let Value::Bytes(k) = k else {
                            return Err(BencodeError::Unexpected(buf[p], p));
                        };
                        let (v, n2) = decode_at(buf, n, depth + 1)?;
                        d.insert(k, v);
                        p = n2;
                    }
                }
            }
        }
        other => Err(BencodeError::Unexpected(other, at)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NgError {
    #[error("ng socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("ng reply: {0}")]
    Bencode(#[from] BencodeError),
    #[error("ng reply malformed: {0}")]
    Malformed(&'static str),
    #[error("rtpengine refused: {0}")]
    Refused(String),
    #[error("no reply from rtpengine after {0} tries")]
    Timeout(u32),
}

/// A blocking ng client (control plane of a benchmark: not on any hot path).
pub struct NgClient {
    sock: UdpSocket,
    cookie: u64,
    tries: u32,
}

impl NgClient {
    pub fn connect(server: SocketAddr, timeout: Duration) -> Result<NgClient, NgError> {
        let bind: SocketAddr = if server.is_ipv4() {
            ([127, 0, 0, 1], 0).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, 0).into()
        };
        let sock = UdpSocket::bind(bind)?;
        sock.connect(server)?;
        sock.set_read_timeout(Some(timeout))?;
        Ok(NgClient {
            sock,
            cookie: u64::from(std::process::id()) << 32,
            tries: 3,
        })
    }

    /// Sends one command, returns the reply dict (`result` = `ok` or `pong`), retrying a lost datagram.
    pub fn request(&mut self, cmd: Value) -> Result<Value, NgError> {
        self.cookie += 1;
        let cookie = format!("{:x}", self.cookie);
        let mut msg = format!("{cookie} ").into_bytes();
        cmd.encode(&mut msg);
        let mut buf = vec![0u8; 65536];
        for _ in 0..self.tries {
            self.sock.send(&msg)?;
            // Bounded: skip at most a few stale replies (other cookies) per try.
            for _ in 0..8 {
                let n = match self.sock.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    Err(e) => return Err(e.into()),
                };
                let reply = &buf[..n];
                let sp = reply
                    .iter()
                    .position(|&b| b == b' ')
                    .ok_or(NgError::Malformed("no cookie"))?;
                if &reply[..sp] != cookie.as_bytes() {
                    continue;
                }
                let v = Value::decode(&reply[sp + 1..])?;
                return match v.get("result").and_then(Value::as_str) {
                    Some("ok") | Some("pong") => Ok(v),
                    Some(_) => Err(NgError::Refused(
                        v.get("error-reason")
                            .and_then(Value::as_str)
                            .unwrap_or("unknown")
                            .to_string(),
                    )),
                    None => Err(NgError::Malformed("no result")),
                };
            }
        }
        Err(NgError::Timeout(self.tries))
    }

    pub fn ping(&mut self) -> Result<(), NgError> {
        let v = self.request(Value::dict([("command", Value::str("ping"))]))?;
        match v.get("result").and_then(Value::as_str) {
            Some("pong") => Ok(()),
            _ => Err(NgError::Malformed("ping not answered with pong")),
        }
    }

    fn sdp_exchange(
        &mut self,
        command: &str,
        call_id: &str,
        tags: [(&str, &str); 2],
        sdp: &str,
        extra: Vec<(&str, Value)>,
    ) -> Result<String, NgError> {
        let mut items = vec![
            ("command", Value::str(command)),
            ("call-id", Value::str(call_id)),
            ("sdp", Value::str(sdp)),
            (
                "replace",
                Value::list_of_str(&["origin", "session-connection"]),
            ),
            ("ICE", Value::str("remove")),
        ];
        for (k, v) in tags {
            if !v.is_empty() {
                items.push((k, Value::str(v)));
            }
        }
        items.extend(extra);
        let v = self.request(Value::dict(items))?;
        v.get("sdp")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or(NgError::Malformed("reply has no sdp"))
    }

    /// `offer` from the caller (from-tag); returns the SDP rtpengine wants sent to the callee.
    /// `transport` (e.g. "RTP/AVP") asks rtpengine to bridge to another profile on the callee side.
    pub fn offer(
        &mut self,
        call_id: &str,
        from_tag: &str,
        sdp: &str,
        transport: Option<&str>,
    ) -> Result<String, NgError> {
        let extra = transport
            .map(|t| vec![("transport-protocol", Value::str(t))])
            .unwrap_or_default();
        self.sdp_exchange(
            "offer",
            call_id,
            [("from-tag", from_tag), ("to-tag", "")],
            sdp,
            extra,
        )
    }

    /// `offer` with extra keys (e.g. `direction` between named interfaces).
    pub fn offer_with(
        &mut self,
        call_id: &str,
        from_tag: &str,
        sdp: &str,
        extra: Vec<(&str, Value)>,
    ) -> Result<String, NgError> {
        self.sdp_exchange(
            "offer",
            call_id,
            [("from-tag", from_tag), ("to-tag", "")],
            sdp,
            extra,
        )
    }

    /// `answer` from the callee; returns the SDP rtpengine wants sent to the caller.
    pub fn answer(
        &mut self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sdp: &str,
    ) -> Result<String, NgError> {
        self.sdp_exchange(
            "answer",
            call_id,
            [("from-tag", from_tag), ("to-tag", to_tag)],
            sdp,
            Vec::new(),
        )
    }

    pub fn delete(&mut self, call_id: &str) -> Result<(), NgError> {
        self.request(Value::dict([
            ("command", Value::str("delete")),
            ("call-id", Value::str(call_id)),
        ]))
        .map(|_| ())
    }
}

/// The audio port of the first `m=audio` line.
pub fn sdp_audio_port(sdp: &str) -> Option<u16> {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
}

/// The first `a=crypto` line's (suite name, key params).
pub fn sdp_crypto(sdp: &str) -> Option<(String, String)> {
    sdp.lines().find_map(|l| {
        let r = l.trim_end().strip_prefix("a=crypto:")?;
        let mut f = r.split_whitespace();
        let _tag = f.next()?;
        Some((f.next()?.to_string(), f.next()?.to_string()))
    })
}

fn make_sdp(port: u16, crypto: Option<&MasterKey>) -> String {
    let (proto, line) = match crypto {
        Some(k) => (
            "RTP/SAVP",
            format!(
                "a=crypto:1 {} {}\r\n",
                DEFAULT_SUITE.sdes_name(),
                k.to_sdes_inline()
            ),
        ),
        None => ("RTP/AVP", String::new()),
    };
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=tollgate-load\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n{line}"
    )
}

/// Sets up `calls` calls on rtpengine. Call `i` (call-id `<prefix>-<i>`) has leg A on 127.0.0.1:`base+4i` and leg
/// B on `base+4i+2`. With `srtp`, leg A offers RTP/SAVP with its own key and B sees plain RTP/AVP (rtpengine
/// bridges); the returned specs carry A's key for sending and rtpengine's key for receiving. Returns two
/// `StreamSpec`s per call (A then B), ready for the generator.
pub fn setup_calls(
    client: &mut NgClient,
    calls: usize,
    prefix: &str,
    base: u16,
    srtp: bool,
) -> Result<Vec<StreamSpec>, NgError> {
    let mut out = Vec::with_capacity(calls * 2);
    for i in 0..calls {
        let call_id = format!("{prefix}-{i}");
        let pa = base.wrapping_add((4 * i) as u16);
        let pb = pa.wrapping_add(2);
        let key_a = if srtp {
            Some(
                MasterKey::generate(DEFAULT_SUITE)
                    .map_err(|_| NgError::Malformed("no randomness"))?,
            )
        } else {
            None
        };
        let sdp_to_b = client.offer(
            &call_id,
            "a",
            &make_sdp(pa, key_a.as_ref()),
            srtp.then_some("RTP/AVP"),
        )?;
        let rtpe_for_b =
            sdp_audio_port(&sdp_to_b).ok_or(NgError::Malformed("offer sdp has no m=audio port"))?;
        let sdp_to_a = client.answer(&call_id, "a", "b", &make_sdp(pb, None))?;
        let rtpe_for_a = sdp_audio_port(&sdp_to_a)
            .ok_or(NgError::Malformed("answer sdp has no m=audio port"))?;
        let rx_a = if srtp {
            let (_, params) =
                sdp_crypto(&sdp_to_a).ok_or(NgError::Malformed("answer sdp has no a=crypto"))?;
            Some(
                MasterKey::from_sdes_inline(DEFAULT_SUITE, &params)
                    .map_err(|_| NgError::Malformed("answer a=crypto key"))?,
            )
        } else {
            None
        };
        let lo = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        // A sends to the port rtpengine gave B's side (in the answer to A); B to the one in the offer to B.
        out.push(StreamSpec {
            bind: lo(pa),
            dest: lo(rtpe_for_a),
            tx_key: key_a,
            rx_key: rx_a,
            label: format!("{call_id}/A"),
        });
        out.push(StreamSpec {
            bind: lo(pb),
            dest: lo(rtpe_for_b),
            tx_key: None,
            rx_key: None,
            label: format!("{call_id}/B"),
        });
    }
    Ok(out)
}

/// Deletes calls `<prefix>-0 .. <prefix>-(calls-1)`; returns how many rtpengine refused.
pub fn delete_calls(client: &mut NgClient, calls: usize, prefix: &str) -> usize {
    (0..calls)
        .filter(|i| client.delete(&format!("{prefix}-{i}")).is_err())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencode_roundtrip() {
        let v = Value::dict([
            ("command", Value::str("offer")),
            ("n", Value::Int(-42)),
            (
                "replace",
                Value::list_of_str(&["origin", "session-connection"]),
            ),
            ("z", Value::dict([("a", Value::Int(0))])),
        ]);
        let b = v.to_bytes();
        assert_eq!(
            b,
            b"d7:command5:offer1:ni-42e7:replacel6:origin18:session-connectione1:zd1:ai0eee"
                .to_vec()
        );
        assert_eq!(Value::decode(&b), Ok(v));
    }

    #[test]
    fn bencode_rejects_bad_input() {
        assert_eq!(Value::decode(b"i03e"), Err(BencodeError::BadInt(1)));
        assert_eq!(Value::decode(b"i-0e"), Err(BencodeError::BadInt(1)));
        assert_eq!(Value::decode(b"ie"), Err(BencodeError::BadInt(1)));
        assert_eq!(Value::decode(b"5:abc"), Err(BencodeError::Truncated));
        assert_eq!(Value::decode(b"l"), Err(BencodeError::Truncated));
        assert_eq!(
            Value::decode(b"di1ei2ee"),
            Err(BencodeError::Unexpected(b'i', 1))
        );
        assert_eq!(Value::decode(b"i1ei2e"), Err(BencodeError::Trailing(3)));
        assert_eq!(Value::decode(b"x"), Err(BencodeError::Unexpected(b'x', 0)));
        assert_eq!(
            Value::decode(b"99999999999999999999:a"),
            Err(BencodeError::BadInt(0))
        );
        let deep = vec![b'l'; 100];
        assert_eq!(Value::decode(&deep), Err(BencodeError::TooDeep));
        // Random bytes never panic.
        let mut x = 0x1234_5678_u32;
        for _ in 0..2000 {
            let mut buf = Vec::new();
            for _ in 0..(x % 24) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                buf.push(b"ild0123:e-x"[(x % 11) as usize]);
            }
            let _ = Value::decode(&buf);
        }
    }

    #[test]
    fn sdp_helpers() {
        let k = MasterKey::generate(DEFAULT_SUITE).unwrap();
        let sdp = make_sdp(40000, Some(&k));
        assert_eq!(sdp_audio_port(&sdp), Some(40000));
        let (suite, params) = sdp_crypto(&sdp).unwrap();
        assert_eq!(suite, "AES_CM_128_HMAC_SHA1_80");
        assert_eq!(
            MasterKey::from_sdes_inline(DEFAULT_SUITE, &params)
                .unwrap()
                .key(),
            k.key()
        );
    }
}
