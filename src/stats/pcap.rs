//! SIP traces as classic pcap (LINKTYPE_RAW: the packet starts at the IP header), with the IP and UDP headers
//! synthesized from the message's addresses so that Wireshark and sngrep decode the payload as SIP.
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

/// LINKTYPE_RAW (101): raw IPv4 or IPv6, version read from the first nibble.
pub const LINKTYPE_RAW: u32 = 101;
const SNAPLEN: u32 = 65535;

#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("source {0} and destination {1} are not the same IP family")]
    MixedFamily(SocketAddr, SocketAddr),
    #[error("payload of {0} bytes does not fit one UDP datagram")]
    TooLarge(usize),
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub struct PcapWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header (microsecond timestamps, native byte order as the format allows).
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&SNAPLEN.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        out.write_all(&h)?;
        Ok(Self {
            out,
            buf: Vec::with_capacity(2048),
        })
    }

    /// Records one UDP datagram (a SIP message over UDP, or a TCP/TLS message shown as if it were UDP: the
    /// trace is about the SIP content, and a synthesized TCP stream would need sequence bookkeeping).
    pub fn write_udp(
        &mut self,
        ts: SystemTime,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<(), PcapError> {
        self.buf.clear();
        build_ip_udp(src, dst, payload, &mut self.buf)?;
        let d = ts.duration_since(UNIX_EPOCH).unwrap_or_default();
        let len = self.buf.len() as u32;
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&(d.as_secs() as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&d.subsec_micros().to_le_bytes());
        rec[8..12].copy_from_slice(&len.to_le_bytes());
        rec[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&rec)?;
        self.out.write_all(&self.buf)?;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Appends an IPv4 or IPv6 header, a UDP header (with checksum) and the payload to `out`.
pub fn build_ip_udp(
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), PcapError> {
    let udp_len = payload.len() + 8;
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = udp_len + 20;
            if total > 65535 {
                return Err(PcapError::TooLarge(payload.len()));
            }
            let start = out.len();
            out.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
            out[start + 2..start + 4].copy_from_slice(&(total as u16).to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let ck = fold(sum16(&out[start..start + 20], 0));
            out[start + 10..start + 12].copy_from_slice(&ck.to_be_bytes());
            let mut pseudo = sum16(&s.octets(), 0);
            pseudo = sum16(&d.octets(), pseudo);
            pseudo += 17 + udp_len as u32;
            push_udp(src.port(), dst.port(), payload, pseudo, out);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            if udp_len > 65535 {
                return Err(PcapError::TooLarge(payload.len()));
            }
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&(udp_len as u16).to_be_bytes());
            out.extend_from_slice(&[17, 64]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let mut pseudo = sum16(&s.octets(), 0);
            pseudo = sum16(&d.octets(), pseudo);
            pseudo += 17 + udp_len as u32;
            push_udp(src.port(), dst.port(), payload, pseudo, out);
        }
        _ => return Err(PcapError::MixedFamily(src, dst)),
    }
    Ok(())
}

fn push_udp(sport: u16, dport: u16, payload: &[u8], pseudo: u32, out: &mut Vec<u8>) {
    let len = (payload.len() + 8) as u16;
    let start = out.len();
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    let mut ck = fold(sum16(&out[start..], pseudo));
    if ck == 0 {
        ck = 0xffff;
    }
    out[start + 6..start + 8].copy_from_slice(&ck.to_be_bytes());
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        acc = (acc & 0xffff) + (acc >> 16);
    }
    if let [b] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*b) << 8);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const INVITE: &str = "INVITE sip:+15559876543@10.0.0.2:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: <sip:+15559876543@10.0.0.2>\r\n\
From: <sip:+15551234567@10.0.0.1>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@10.0.0.1:5060>\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn checksums_verify() {
        let mut b = Vec::new();
        build_ip_udp(
            "10.0.0.1:5060".parse().unwrap(),
            "10.0.0.2:5060".parse().unwrap(),
            b"odd",
            &mut b,
        )
        .unwrap();
        // IPv4 header sums to 0xffff when the checksum is right.
        assert_eq!(fold(sum16(&b[..20], 0)), 0);
        let mut pseudo = sum16(&b[12..20], 0) + 17 + (b.len() - 20) as u32;
        pseudo = sum16(&b[20..], pseudo);
        assert_eq!(fold(pseudo), 0);
        assert!(matches!(
            build_ip_udp(
                "10.0.0.1:1".parse().unwrap(),
                "[::1]:1".parse().unwrap(),
                b"",
                &mut b
            ),
            Err(PcapError::MixedFamily(..))
        ));
    }

    #[test]
    fn tshark_decodes_sip_over_v4_and_v6() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pcap");
        let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        w.write_udp(
            SystemTime::now(),
            "10.0.0.1:5060".parse().unwrap(),
            "10.0.0.2:5060".parse().unwrap(),
            INVITE.as_bytes(),
        )
        .unwrap();
        w.write_udp(
            SystemTime::now(),
            "[2001:db8::1]:5060".parse().unwrap(),
            "[2001:db8::2]:5060".parse().unwrap(),
            INVITE.as_bytes(),
        )
        .unwrap();
        w.flush().unwrap();
        drop(w);
        let out = match Command::new("tshark")
            .args(["-r"])
            .arg(&path)
            .args([
                "-o",
                "udp.check_checksum:TRUE",
                "-T",
                "fields",
                "-e",
                "ip.src",
                "-e",
                "ipv6.src",
                "-e",
                "sip.Method",
                "-e",
                "sip.Call-ID",
                "-e",
                "udp.checksum.status",
            ])
            .output()
        {
            Ok(o) => o,
            Err(_) => {
                eprintln!("skip: tshark not installed");
                return;
            }
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("10.0.0.1\t"), "{text}");
        assert!(lines[1].contains("2001:db8::1"), "{text}");
        for l in &lines {
            assert!(l.contains("INVITE\ta84b4c76e66710@pc33"), "{text}");
            // 1 = Good in Wireshark's checksum status enum.
            assert!(l.ends_with("\t1"), "checksum not good: {text}");
        }
    }
}
