//! The test packet: a 12-byte RTP header (PCMU, SSRC = stream's SSRC) and a G.711-sized payload that starts
//! with a 24-byte load header (magic, stream id, extended sequence, CLOCK_MONOTONIC send time) followed by
//! filler derived from (stream, sequence) so the sink can check every byte.

/// RTP header length (no CSRC, no extension).
pub const RTP_HEADER: usize = 12;
/// Default payload: 20 ms of G.711.
pub const G711_PAYLOAD: usize = 160;
/// Bytes of the load header at the start of the payload.
pub const LOAD_HEADER: usize = 24;
/// "TGLD".
pub const MAGIC: u32 = 0x5447_4c44;
/// PCMU.
pub const PAYLOAD_TYPE: u8 = 0;

/// What the generator puts in one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub stream: u32,
    pub ssrc: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

/// Why a received packet is not one of ours, or was damaged on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("packet shorter than RTP header + load header")]
    TooShort,
    #[error("not RTP version 2")]
    NotRtp,
    #[error("load header magic missing")]
    BadMagic,
    #[error("RTP sequence does not match the load header")]
    SeqMismatch,
    #[error("payload filler damaged")]
    BadFiller,
}

#[inline]
fn filler(stream: u32, seq: u64, i: usize) -> u8 {
    (stream as u8) ^ (seq as u8).wrapping_mul(31) ^ (i as u8).wrapping_mul(7)
}

/// Writes the RTP packet for `stamp` into `buf` (payload of `payload_len` bytes, at least `LOAD_HEADER`).
/// Returns the packet length, or `None` if `buf` is too small.
pub fn write_packet(buf: &mut [u8], stamp: &Stamp, payload_len: usize) -> Option<usize> {
    let payload_len = payload_len.max(LOAD_HEADER);
    let len = RTP_HEADER + payload_len;
    let pkt = buf.get_mut(..len)?;
    let (hdr, payload) = pkt.split_at_mut(RTP_HEADER);
    hdr[0] = 0x80;
    hdr[1] = PAYLOAD_TYPE;
    hdr[2..4].copy_from_slice(&(stamp.seq as u16).to_be_bytes());
    // 8 kHz clock, 160 samples per packet.
    hdr[4..8].copy_from_slice(&((stamp.seq as u32).wrapping_mul(160)).to_be_bytes());
    hdr[8..12].copy_from_slice(&stamp.ssrc.to_be_bytes());
    let (lh, rest) = payload.split_at_mut(LOAD_HEADER);
    lh[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    lh[4..8].copy_from_slice(&stamp.stream.to_be_bytes());
    lh[8..16].copy_from_slice(&stamp.seq.to_be_bytes());
    lh[16..24].copy_from_slice(&stamp.sent_ns.to_be_bytes());
    for (i, b) in rest.iter_mut().enumerate() {
        *b = filler(stamp.stream, stamp.seq, i);
    }
    Some(len)
}

/// The SSRC of an RTP packet, without checking anything else (the sink needs it before SRTP unprotect).
pub fn ssrc_of(pkt: &[u8]) -> Option<u32> {
    let b = pkt.get(8..12)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses and checks a (decrypted) packet made by `write_packet`.
pub fn read_packet(pkt: &[u8]) -> Result<Stamp, WireError> {
    if pkt.len() < RTP_HEADER + LOAD_HEADER {
        return Err(WireError::TooShort);
    }
    let (hdr, payload) = pkt.split_at(RTP_HEADER);
    if hdr[0] >> 6 != 2 {
        return Err(WireError::NotRtp);
    }
    let u32_at = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let u64_at = |b: &[u8], at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_be_bytes(a)
    };
    if u32_at(payload, 0) != MAGIC {
        return Err(WireError::BadMagic);
    }
    let stamp = Stamp {
        ssrc: u32_at(hdr, 8),
        stream: u32_at(payload, 4),
        seq: u64_at(payload, 8),
        sent_ns: u64_at(payload, 16),
    };
    if u16::from_be_bytes([hdr[2], hdr[3]]) != stamp.seq as u16 {
        return Err(WireError::SeqMismatch);
    }
    let rest = &payload[LOAD_HEADER..];
    if rest
        .iter()
        .enumerate()
        .any(|(i, &b)| b != filler(stamp.stream, stamp.seq, i))
    {
        return Err(WireError::BadFiller);
    }
    Ok(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_tamper() {
        let mut buf = [0u8; 256];
        let s = Stamp {
            stream: 7,
            ssrc: 0x1000_0007,
            seq: 70_000,
            sent_ns: 123_456_789,
        };
        let n = write_packet(&mut buf, &s, G711_PAYLOAD).unwrap();
        assert_eq!(n, 172);
        assert_eq!(read_packet(&buf[..n]), Ok(s));
        assert_eq!(ssrc_of(&buf[..n]), Some(0x1000_0007));
        buf[100] ^= 1;
        assert_eq!(read_packet(&buf[..n]), Err(WireError::BadFiller));
        buf[100] ^= 1;
        buf[3] ^= 1;
        assert_eq!(read_packet(&buf[..n]), Err(WireError::SeqMismatch));
        assert_eq!(read_packet(&buf[..20]), Err(WireError::TooShort));
        assert!(write_packet(&mut buf[..100], &s, G711_PAYLOAD).is_none());
    }
}
