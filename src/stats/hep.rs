//! HEPv3 (Homer Encapsulation Protocol) encoder and a UDP sender for SIP traces to a Homer collector.
//!
//! A packet is `"HEP3"`, a 16-bit total length, then chunks of `vendor(16) type(16) length(16) payload`, where
//! length covers the 6-byte chunk header. Vendor 0 is the generic chunk set of the HEP3 specification.
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{SystemTime, UNIX_EPOCH};

pub mod chunk {
    pub const IP_FAMILY: u16 = 1;
    pub const IP_PROTO: u16 = 2;
    pub const SRC_IP4: u16 = 3;
    pub const DST_IP4: u16 = 4;
    pub const SRC_IP6: u16 = 5;
    pub const DST_IP6: u16 = 6;
    pub const SRC_PORT: u16 = 7;
    pub const DST_PORT: u16 = 8;
    pub const TS_SEC: u16 = 9;
    pub const TS_USEC: u16 = 10;
    pub const PROTO_TYPE: u16 = 11;
    pub const CAPTURE_ID: u16 = 12;
    pub const AUTH_KEY: u16 = 14;
    pub const PAYLOAD: u16 = 15;
    pub const CORRELATION_ID: u16 = 17;
}

/// HEP protocol type for SIP payloads.
pub const PROTO_SIP: u8 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HepError {
    #[error("source and destination are not the same IP family")]
    MixedFamily,
    #[error("HEP packet would exceed 65535 bytes")]
    TooLarge,
}

/// What a trace record carries besides the message itself.
#[derive(Debug, Clone)]
pub struct HepMeta<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// IP protocol of the original transport: 17 UDP, 6 TCP (TLS is reported as TCP).
    pub ip_proto: u8,
    pub ts: SystemTime,
    pub capture_id: u32,
    pub auth_key: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
}

fn push_chunk(out: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&((payload.len() + 6) as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Encodes one SIP message into `out` (cleared first).
pub fn encode(meta: &HepMeta<'_>, payload: &[u8], out: &mut Vec<u8>) -> Result<(), HepError> {
    out.clear();
    out.extend_from_slice(b"HEP3\0\0");
    match (meta.src.ip(), meta.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            push_chunk(out, chunk::IP_FAMILY, &[2]);
            push_chunk(out, chunk::IP_PROTO, &[meta.ip_proto]);
            push_chunk(out, chunk::SRC_IP4, &s.octets());
            push_chunk(out, chunk::DST_IP4, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            push_chunk(out, chunk::IP_FAMILY, &[10]);
            push_chunk(out, chunk::IP_PROTO, &[meta.ip_proto]);
            push_chunk(out, chunk::SRC_IP6, &s.octets());
            push_chunk(out, chunk::DST_IP6, &d.octets());
        }
        _ => return Err(HepError::MixedFamily),
    }
    push_chunk(out, chunk::SRC_PORT, &meta.src.port().to_be_bytes());
    push_chunk(out, chunk::DST_PORT, &meta.dst.port().to_be_bytes());
    let d = meta.ts.duration_since(UNIX_EPOCH).unwrap_or_default();
    push_chunk(out, chunk::TS_SEC, &(d.as_secs() as u32).to_be_bytes());
    push_chunk(out, chunk::TS_USEC, &d.subsec_micros().to_be_bytes());
    push_chunk(out, chunk::PROTO_TYPE, &[PROTO_SIP]);
    push_chunk(out, chunk::CAPTURE_ID, &meta.capture_id.to_be_bytes());
    if let Some(k) = meta.auth_key {
        push_chunk(out, chunk::AUTH_KEY, k.as_bytes());
    }
    if let Some(c) = meta.correlation_id {
        push_chunk(out, chunk::CORRELATION_ID, c.as_bytes());
    }
    if payload.len() + 6 + out.len() > 65535 {
        return Err(HepError::TooLarge);
    }
    push_chunk(out, chunk::PAYLOAD, payload);
    let total = out.len() as u16;
    out[4..6].copy_from_slice(&total.to_be_bytes());
    Ok(())
}

/// Decoded generic chunks, for tests and for tooling that reads HEP back.
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub vendor: u16,
    pub ty: u16,
    pub data: &'a [u8],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HepDecodeError {
    #[error("not a HEP3 packet")]
    BadMagic,
    #[error("length field disagrees with the packet")]
    BadLength,
    #[error("chunk at offset {0} is truncated")]
    Truncated(usize),
}

pub fn decode(pkt: &[u8]) -> Result<Vec<Chunk<'_>>, HepDecodeError> {
    if pkt.get(..4) != Some(b"HEP3") {
        return Err(HepDecodeError::BadMagic);
    }
    let total = pkt
        .get(4..6)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or(HepDecodeError::BadLength)?;
    if total != pkt.len() {
        return Err(HepDecodeError::BadLength);
    }
    let mut at = 6;
    let mut chunks = Vec::new();
    while at < pkt.len() {
        let h = pkt.get(at..at + 6).ok_or(HepDecodeError::Truncated(at))?;
        let vendor = u16::from_be_bytes([h[0], h[1]]);
        let ty = u16::from_be_bytes([h[2], h[3]]);
        let len = u16::from_be_bytes([h[4], h[5]]) as usize;
        if len < 6 {
            return Err(HepDecodeError::Truncated(at));
        }
        let data = pkt
            .get(at + 6..at + len)
            .ok_or(HepDecodeError::Truncated(at))?;
        chunks.push(Chunk { vendor, ty, data });
        at += len;
    }
    Ok(chunks)
}

/// Sends encoded traces to a collector over UDP from an unconnected-at-bind, connected socket. Runs on whoever
/// produces the trace; a send error is returned for the caller to count, never retried (traces are best effort).
pub struct HepSender {
    sock: UdpSocket,
    buf: Vec<u8>,
    pub capture_id: u32,
    pub auth_key: Option<String>,
}

impl HepSender {
    pub fn connect(
        collector: SocketAddr,
        capture_id: u32,
        auth_key: Option<String>,
    ) -> std::io::Result<Self> {
        let bind: SocketAddr = if collector.is_ipv4() {
            "0.0.0.0:0".parse()
        } else {
            "[::]:0".parse()
        }
        .map_err(std::io::Error::other)?;
        let sock = UdpSocket::bind(bind)?;
        sock.connect(collector)?;
        sock.set_nonblocking(true)?;
        Ok(Self {
            sock,
            buf: Vec::with_capacity(2048),
            capture_id,
            auth_key,
        })
    }

    pub fn send(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        ip_proto: u8,
        correlation_id: Option<&str>,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let meta = HepMeta {
            src,
            dst,
            ip_proto,
            ts: SystemTime::now(),
            capture_id: self.capture_id,
            auth_key: self.auth_key.as_deref(),
            correlation_id,
        };
        encode(&meta, payload, &mut self.buf).map_err(std::io::Error::other)?;
        self.sock.send(&self.buf).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn encode_decode_v4() {
        let meta = HepMeta {
            src: "10.0.0.1:5060".parse().unwrap(),
            dst: "10.0.0.2:5080".parse().unwrap(),
            ip_proto: 17,
            ts: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_000),
            capture_id: 2001,
            auth_key: Some("secret"),
            correlation_id: Some("cid@x"),
        };
        let mut out = Vec::new();
        encode(&meta, b"OPTIONS sip:x SIP/2.0\r\n\r\n", &mut out).unwrap();
        assert_eq!(&out[..4], b"HEP3");
        let ch = decode(&out).unwrap();
        let get = |t: u16| ch.iter().find(|c| c.ty == t).map(|c| c.data).unwrap();
        assert!(ch.iter().all(|c| c.vendor == 0));
        assert_eq!(get(chunk::IP_FAMILY), &[2]);
        assert_eq!(get(chunk::IP_PROTO), &[17]);
        assert_eq!(get(chunk::SRC_IP4), &[10, 0, 0, 1]);
        assert_eq!(get(chunk::DST_IP4), &[10, 0, 0, 2]);
        assert_eq!(get(chunk::SRC_PORT), &5060u16.to_be_bytes());
        assert_eq!(get(chunk::DST_PORT), &5080u16.to_be_bytes());
        assert_eq!(get(chunk::TS_SEC), &1_700_000_000u32.to_be_bytes());
        assert_eq!(get(chunk::TS_USEC), &123_456u32.to_be_bytes());
        assert_eq!(get(chunk::PROTO_TYPE), &[1]);
        assert_eq!(get(chunk::CAPTURE_ID), &2001u32.to_be_bytes());
        assert_eq!(get(chunk::AUTH_KEY), b"secret");
        assert_eq!(get(chunk::CORRELATION_ID), b"cid@x");
        assert_eq!(get(chunk::PAYLOAD), b"OPTIONS sip:x SIP/2.0\r\n\r\n");
        // Byte-level check of the first chunk against the spec layout.
        assert_eq!(&out[6..13], &[0, 0, 0, 1, 0, 7, 2]);
    }

    #[test]
    fn v6_and_errors() {
        let mut out = Vec::new();
        let mut meta = HepMeta {
            src: "[2001:db8::1]:5060".parse().unwrap(),
            dst: "[2001:db8::2]:5060".parse().unwrap(),
            ip_proto: 6,
            ts: SystemTime::now(),
            capture_id: 1,
            auth_key: None,
            correlation_id: None,
        };
        encode(&meta, b"x", &mut out).unwrap();
        let ch = decode(&out).unwrap();
        assert_eq!(
            ch.iter().find(|c| c.ty == chunk::IP_FAMILY).unwrap().data,
            &[10]
        );
        assert_eq!(
            ch.iter()
                .find(|c| c.ty == chunk::SRC_IP6)
                .unwrap()
                .data
                .len(),
            16
        );
        meta.dst = "1.2.3.4:5".parse().unwrap();
        assert_eq!(encode(&meta, b"x", &mut out), Err(HepError::MixedFamily));
        assert_eq!(decode(b"HEP2\0\x06"), Err(HepDecodeError::BadMagic));
        assert_eq!(decode(b"HEP3\0\x08\0"), Err(HepDecodeError::BadLength));
        assert_eq!(
            decode(b"HEP3\0\x09\0\0\0"),
            Err(HepDecodeError::Truncated(6))
        );
    }

    #[test]
    fn sender_reaches_a_collector_on_loopback() {
        let coll = UdpSocket::bind("127.0.0.1:0").unwrap();
        coll.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut s = HepSender::connect(coll.local_addr().unwrap(), 7, None).unwrap();
        s.send(
            "10.0.0.1:5060".parse().unwrap(),
            "10.0.0.2:5060".parse().unwrap(),
            17,
            Some("abc"),
            b"BYE sip:x SIP/2.0\r\n\r\n",
        )
        .unwrap();
        let mut buf = [0u8; 2048];
        let n = coll.recv(&mut buf).unwrap();
        let ch = decode(&buf[..n]).unwrap();
        assert_eq!(
            ch.iter().find(|c| c.ty == chunk::PAYLOAD).unwrap().data,
            b"BYE sip:x SIP/2.0\r\n\r\n"
        );
        assert_eq!(
            ch.iter().find(|c| c.ty == chunk::CAPTURE_ID).unwrap().data,
            &7u32.to_be_bytes()
        );
    }
}
