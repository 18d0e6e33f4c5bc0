//! Egress header rewrite for a relayed UDP datagram: Ethernet (+ one VLAN tag), IPv4 or IPv6, UDP.
//!
//! The common case (same IP family and L2 header length in and out) edits the headers in place and patches
//! the IPv4 header checksum and the UDP checksum incrementally (RFC 1624, eqn. 3) over the 16-bit words that
//! changed. When the payload was replaced (SRTP protect/unprotect changes bytes and length) the UDP checksum
//! is recomputed over the datagram. When the header sizes differ (IPv4 <-> IPv6, VLAN tag added or removed)
//! the payload is moved and the headers are written fresh. TTL / hop limit is decremented; a packet that would
//! leave with TTL 0 is refused.
//!
//! Pure functions over byte slices: no I/O, no allocation, no panics on any input.

use std::net::{IpAddr, SocketAddr};

pub const ETH_HDR_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;
pub const IPV4_HDR_LEN: usize = 20;
pub const IPV6_HDR_LEN: usize = 40;
pub const UDP_HDR_LEN: usize = 8;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// The Ethernet header a datagram leaves with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Header {
    pub dst: MacAddr,
    pub src: MacAddr,
    /// 802.1Q TCI (PCP/DEI/VID) when the egress interface is a tagged trunk.
    pub vlan_tci: Option<u16>,
}

impl L2Header {
    /// Header length on the wire: 14, or 18 with a VLAN tag.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        ETH_HDR_LEN
            + if self.vlan_tci.is_some() {
                VLAN_TAG_LEN
            } else {
                0
            }
    }
}

/// Why a frame cannot be rewritten. The caller drops (and counts) the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("frame truncated")]
    Truncated,
    #[error("not IPv4 or IPv6")]
    NotIp,
    #[error("not UDP")]
    NotUdp,
    #[error("IP fragment")]
    Fragment,
    #[error("inconsistent IP/UDP length fields")]
    BadLength,
    #[error("TTL / hop limit exhausted")]
    TtlExpired,
    #[error("source and destination address families differ")]
    MixedFamilies,
    #[error("rewritten frame does not fit the buffer")]
    NoRoom,
}

/// Where the headers of a parsed UDP frame are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpLayout {
    /// Offset of the IP header (14, or 18 with a VLAN tag).
    pub l3_off: usize,
    /// Offset of the UDP header.
    pub l4_off: usize,
    pub v6: bool,
    /// UDP payload length (from the UDP length field; Ethernet padding excluded).
    pub payload_len: usize,
}

impl UdpLayout {
    pub fn payload_off(&self) -> usize {
        self.l4_off + UDP_HDR_LEN
    }
    pub fn frame_len(&self) -> usize {
        self.payload_off() + self.payload_len
    }
}

/// What the handler did to the payload between `parse_udp` and `rewrite_udp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Bytes untouched: checksums are patched incrementally.
    Unchanged,
    /// New payload of `len` bytes written at the old payload offset: the UDP checksum is recomputed.
    Replaced { len: usize },
}

/// The new addressing of a datagram: from our local address on the egress side to the remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub l2: L2Header,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

fn be16(b: &[u8], off: usize) -> Result<u16, RewriteError> {
    match b.get(off..off + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(RewriteError::Truncated),
    }
}

fn byte(b: &[u8], off: usize) -> Result<u8, RewriteError> {
    b.get(off).copied().ok_or(RewriteError::Truncated)
}

/// Parses Ethernet (+ one VLAN tag) / IPv4 or IPv6 / UDP and checks that the length fields agree with each
/// other and with the frame. IPv4 options are allowed; IPv6 extension headers are not (the XDP program
/// never redirects them).
pub fn parse_udp(frame: &[u8]) -> Result<UdpLayout, RewriteError> {
    let mut ethertype = be16(frame, 12)?;
    let mut l3_off = ETH_HDR_LEN;
    if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
        ethertype = be16(frame, 16)?;
        l3_off += VLAN_TAG_LEN;
    }
    let (l4_off, v6, ip_payload_len) = match ethertype {
        ETHERTYPE_IPV4 => {
            let vihl = byte(frame, l3_off)?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || ihl < IPV4_HDR_LEN {
                return Err(RewriteError::NotIp);
            }
            if frame.len() < l3_off + ihl {
                return Err(RewriteError::Truncated);
            }
            if byte(frame, l3_off + 9)? != IPPROTO_UDP {
                return Err(RewriteError::NotUdp);
            }
            if be16(frame, l3_off + 6)? & 0x3fff != 0 {
                return Err(RewriteError::Fragment);
            }
            let tot = usize::from(be16(frame, l3_off + 2)?);
            if tot < ihl {
                return Err(RewriteError::BadLength);
            }
            (l3_off + ihl, false, tot - ihl)
        }
        ETHERTYPE_IPV6 => {
            if byte(frame, l3_off)? >> 4 != 6 {
                return Err(RewriteError::NotIp);
            }
            if frame.len() < l3_off + IPV6_HDR_LEN {
                return Err(RewriteError::Truncated);
            }
            match byte(frame, l3_off + 6)? {
                IPPROTO_UDP => {}
                44 => return Err(RewriteError::Fragment),
                _ => return Err(RewriteError::NotUdp),
            }
            (
                l3_off + IPV6_HDR_LEN,
                true,
                usize::from(be16(frame, l3_off + 4)?),
            )
        }
        _ => return Err(RewriteError::NotIp),
    };
    let udp_len = usize::from(be16(frame, l4_off + 4)?);
    if udp_len < UDP_HDR_LEN || udp_len != ip_payload_len {
        return Err(RewriteError::BadLength);
    }
    if frame.len() < l4_off + udp_len {
        return Err(RewriteError::Truncated);
    }
    Ok(UdpLayout {
        l3_off,
        l4_off,
        v6,
        payload_len: udp_len - UDP_HDR_LEN,
    })
}

// ---- ones' complement arithmetic -------------------------------------------------------------------------

/// Adds `data` as big-endian 16-bit words (odd tail padded with zero) to a 32-bit accumulator.
pub fn csum_accumulate(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = ones_add(acc, u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = ones_add(acc, u32::from(*last) << 8);
    }
    acc
}

fn ones_add(acc: u32, v: u32) -> u32 {
    let (s, carry) = acc.overflowing_add(v);
    s + u32::from(carry)
}

/// Folds a 32-bit accumulator to 16 bits (not complemented).
pub fn csum_fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for every changed word m -> m'.
pub fn csum_update(stored: u16, old: &[u16], new: &[u16]) -> u16 {
    let mut acc = u32::from(!stored);
    for &m in old {
        acc = ones_add(acc, u32::from(!m));
    }
    for &m in new {
        acc = ones_add(acc, u32::from(m));
    }
    !csum_fold(acc)
}

/// Internet checksum of an IPv4 header (checksum field included as stored; zero it first to compute).
pub fn ipv4_header_checksum(hdr: &[u8]) -> u16 {
    !csum_fold(csum_accumulate(0, hdr))
}

/// Words of the UDP pseudo header that depend on the addresses.
fn addr_words(ip: IpAddr, out: &mut [u16; 8]) -> usize {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            out[0] = u16::from_be_bytes([o[0], o[1]]);
            out[1] = u16::from_be_bytes([o[2], o[3]]);
            2
        }
        IpAddr::V6(a) => {
            *out = a.segments();
            8
        }
    }
}

/// Full UDP checksum over pseudo header + UDP header (checksum field treated as zero) + payload.
/// `udp` is the UDP header and payload, exactly `udp length` bytes. Returns the value to store (0 -> 0xffff).
pub fn udp_checksum(src: IpAddr, dst: IpAddr, udp: &[u8]) -> u16 {
    let mut acc = 0u32;
    let mut w = [0u16; 8];
    for ip in [src, dst] {
        let n = addr_words(ip, &mut w);
        for &x in &w[..n] {
            acc = ones_add(acc, u32::from(x));
        }
    }
    let len = udp.len() as u32;
    acc = ones_add(acc, len >> 16);
    acc = ones_add(acc, len & 0xffff);
    acc = ones_add(acc, u32::from(IPPROTO_UDP));
    acc = csum_accumulate(acc, udp.get(..6).unwrap_or(udp));
    acc = csum_accumulate(acc, udp.get(8..).unwrap_or(&[]));
    match !csum_fold(acc) {
        0 => 0xffff,
        c => c,
    }
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    if let Some(s) = b.get_mut(off..off + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn write_l2(buf: &mut [u8], l2: &L2Header, ethertype: u16) {
    buf[0..6].copy_from_slice(&l2.dst.0);
    buf[6..12].copy_from_slice(&l2.src.0);
    match l2.vlan_tci {
        Some(tci) => {
            put16(buf, 12, ETHERTYPE_VLAN);
            put16(buf, 14, tci);
            put16(buf, 16, ethertype);
        }
        None => put16(buf, 12, ethertype),
    }
}

/// Rewrites a frame parsed by [`parse_udp`] for egress and returns its new length.
///
/// `buf` is the whole frame buffer (it may be longer than the frame: a growing packet uses the room after it).
pub fn rewrite_udp(
    buf: &mut [u8],
    layout: &UdpLayout,
    rw: &Rewrite,
    payload: Payload,
) -> Result<usize, RewriteError> {
    let v6_out = match (rw.src, rw.dst) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => false,
        (SocketAddr::V6(_), SocketAddr::V6(_)) => true,
        _ => return Err(RewriteError::MixedFamilies),
    };
    // The layout is a public struct: refuse one that parse_udp could not have produced.
    let l3_ok = layout.l3_off == ETH_HDR_LEN || layout.l3_off == ETH_HDR_LEN + VLAN_TAG_LEN;
    let ip_len = layout.l4_off.saturating_sub(layout.l3_off);
    let l4_ok = if layout.v6 {
        ip_len == IPV6_HDR_LEN
    } else {
        (IPV4_HDR_LEN..=60).contains(&ip_len)
    };
    if !l3_ok || !l4_ok {
        return Err(RewriteError::BadLength);
    }
    let payload_len = match payload {
        Payload::Unchanged => layout.payload_len,
        Payload::Replaced { len } => len,
    };
    if buf.len() < layout.payload_off() + payload_len {
        return Err(RewriteError::NoRoom);
    }
    // TTL or hop limit of the datagram as it arrived.
    let ttl_off = layout.l3_off + if layout.v6 { 7 } else { 8 };
    let ttl = byte(buf, ttl_off)?;
    if ttl <= 1 {
        return Err(RewriteError::TtlExpired);
    }
    let l2_in = layout.l3_off;
    if v6_out == layout.v6 && rw.l2.len() == l2_in {
        rewrite_in_place(buf, layout, rw, payload, payload_len)
    } else {
        rebuild(buf, layout, rw, payload_len, v6_out, ttl - 1)
    }
}

fn rewrite_in_place(
    buf: &mut [u8],
    layout: &UdpLayout,
    rw: &Rewrite,
    payload: Payload,
    payload_len: usize,
) -> Result<usize, RewriteError> {
    let l3 = layout.l3_off;
    let l4 = layout.l4_off;
    let ethertype = if layout.v6 {
        ETHERTYPE_IPV6
    } else {
        ETHERTYPE_IPV4
    };
    write_l2(buf, &rw.l2, ethertype);

    let udp_len = u16::try_from(UDP_HDR_LEN + payload_len).map_err(|_| RewriteError::BadLength)?;
    let udp_end = l4 + usize::from(udp_len);
    let (src_off, dst_off, addr_len) = if layout.v6 {
        (l3 + 8, l3 + 24, 16)
    } else {
        (l3 + 12, l3 + 16, 4)
    };
    let (new_src, _) = ip_octets(rw.src.ip());
    let (new_dst, _) = ip_octets(rw.dst.ip());
    let udp_hdr: [u8; 8] = buf
        .get(l4..l4 + UDP_HDR_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(RewriteError::Truncated)?;
    let old_udp_len = u16::from_be_bytes([udp_hdr[4], udp_hdr[5]]);
    let old_udp_csum = u16::from_be_bytes([udp_hdr[6], udp_hdr[7]]);

    // Ones' complement sums of the changed words, old and new. The addresses are in the IPv4 header
    // checksum and in the UDP pseudo header; ports and the UDP length (twice: pseudo header and header) in
    // the UDP checksum only.
    let ip = buf.get_mut(l3..l4).ok_or(RewriteError::Truncated)?;
    let (s_rel, d_rel) = (src_off - l3, dst_off - l3);
    let addr_old = csum_accumulate(
        csum_accumulate(0, &ip[s_rel..s_rel + addr_len]),
        &ip[d_rel..d_rel + addr_len],
    );
    let addr_new = csum_accumulate(
        csum_accumulate(0, &new_src[..addr_len]),
        &new_dst[..addr_len],
    );
    ip[s_rel..s_rel + addr_len].copy_from_slice(&new_src[..addr_len]);
    ip[d_rel..d_rel + addr_len].copy_from_slice(&new_dst[..addr_len]);
    if layout.v6 {
        ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
        ip[7] -= 1;
    } else {
        let tot =
            u16::try_from(ip.len() + usize::from(udp_len)).map_err(|_| RewriteError::BadLength)?;
        let old_tot = u16::from_be_bytes([ip[2], ip[3]]);
        let old_ttl_proto = u16::from_be_bytes([ip[8], ip[9]]);
        let old = ones_add(addr_old, u32::from(old_tot) + u32::from(old_ttl_proto));
        let new = ones_add(addr_new, u32::from(tot) + u32::from(old_ttl_proto - 0x0100));
        let csum = csum_replace(u16::from_be_bytes([ip[10], ip[11]]), old, new);
        ip[2..4].copy_from_slice(&tot.to_be_bytes());
        ip[8] -= 1;
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
    }

    let udp_old = csum_accumulate(addr_old, &udp_hdr[..4]);
    let udp_old = ones_add(udp_old, 2 * u32::from(old_udp_len));
    let mut ports = [0u8; 4];
    ports[..2].copy_from_slice(&rw.src.port().to_be_bytes());
    ports[2..].copy_from_slice(&rw.dst.port().to_be_bytes());
    let udp_new = ones_add(csum_accumulate(addr_new, &ports), 2 * u32::from(udp_len));
    let u = buf
        .get_mut(l4..l4 + UDP_HDR_LEN)
        .ok_or(RewriteError::Truncated)?;
    u[..4].copy_from_slice(&ports);
    u[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let csum = match payload {
        // IPv4 UDP without checksum stays without one.
        Payload::Unchanged if !layout.v6 && old_udp_csum == 0 => 0,
        Payload::Unchanged => match csum_replace(old_udp_csum, udp_old, udp_new) {
            0 => 0xffff,
            c => c,
        },
        Payload::Replaced { .. } => {
            let udp = buf.get(l4..udp_end).ok_or(RewriteError::Truncated)?;
            udp_checksum(rw.src.ip(), rw.dst.ip(), udp)
        }
    };
    put16(buf, l4 + 6, csum);
    Ok(udp_end)
}

/// Address bytes (IPv4 in the first 4) and their length.
fn ip_octets(ip: IpAddr) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(a) => {
            b[..4].copy_from_slice(&a.octets());
            (b, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}

/// RFC 1624 eqn. 3 with the changed words already summed: HC' = ~(~HC + ~sum(m) + sum(m')).
fn csum_replace(stored: u16, old_sum: u32, new_sum: u32) -> u16 {
    let acc = ones_add(u32::from(!stored), u32::from(!csum_fold(old_sum)));
    !csum_fold(ones_add(acc, u32::from(csum_fold(new_sum))))
}

/// Header sizes differ: move the payload, then write every header fresh.
fn rebuild(
    buf: &mut [u8],
    layout: &UdpLayout,
    rw: &Rewrite,
    payload_len: usize,
    v6_out: bool,
    ttl: u8,
) -> Result<usize, RewriteError> {
    let l3 = rw.l2.len();
    let l4 = l3 + if v6_out { IPV6_HDR_LEN } else { IPV4_HDR_LEN };
    let new_payload_off = l4 + UDP_HDR_LEN;
    let end = new_payload_off + payload_len;
    if buf.len() < end {
        return Err(RewriteError::NoRoom);
    }
    let udp_len = u16::try_from(UDP_HDR_LEN + payload_len).map_err(|_| RewriteError::BadLength)?;
    // Traffic class / DSCP survives the family change.
    let tos = if layout.v6 {
        let b0 = byte(buf, layout.l3_off)?;
        let b1 = byte(buf, layout.l3_off + 1)?;
        (b0 << 4) | (b1 >> 4)
    } else {
        byte(buf, layout.l3_off + 1)?
    };
    let old = layout.payload_off();
    buf.copy_within(old..old + payload_len, new_payload_off);

    write_l2(
        buf,
        &rw.l2,
        if v6_out {
            ETHERTYPE_IPV6
        } else {
            ETHERTYPE_IPV4
        },
    );
    match (rw.src.ip(), rw.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let tot = u16::try_from(IPV4_HDR_LEN + usize::from(udp_len))
                .map_err(|_| RewriteError::BadLength)?;
            let h = &mut buf[l3..l4];
            h[0] = 0x45;
            h[1] = tos;
            h[2..4].copy_from_slice(&tot.to_be_bytes());
            h[4..6].copy_from_slice(&[0, 0]);
            h[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF: media is never fragmented by us
            h[8] = ttl;
            h[9] = IPPROTO_UDP;
            h[10..12].copy_from_slice(&[0, 0]);
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = ipv4_header_checksum(h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let h = &mut buf[l3..l4];
            h[0] = 0x60 | (tos >> 4);
            h[1] = tos << 4;
            h[2..4].copy_from_slice(&[0, 0]);
            h[4..6].copy_from_slice(&udp_len.to_be_bytes());
            h[6] = IPPROTO_UDP;
            h[7] = ttl;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
        }
        _ => return Err(RewriteError::MixedFamilies),
    }
    put16(buf, l4, rw.src.port());
    put16(buf, l4 + 2, rw.dst.port());
    put16(buf, l4 + 4, udp_len);
    put16(buf, l4 + 6, 0);
    let c = udp_checksum(rw.src.ip(), rw.dst.ip(), &buf[l4..end]);
    put16(buf, l4 + 6, c);
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);

    /// Builds a frame the way a sender's kernel would (full checksums), independent of the code under test
    /// except for the checksum primitives, which are checked against RFC 1071 vectors below.
    fn frame(
        src: SocketAddr,
        dst: SocketAddr,
        vlan: Option<u16>,
        ipv4_opts: &[u8],
        ttl: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = vec![0u8; 0];
        f.extend_from_slice(&MAC_B.0);
        f.extend_from_slice(&MAC_A.0);
        if let Some(t) = vlan {
            f.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            f.extend_from_slice(&t.to_be_bytes());
        }
        let udp_len = (8 + payload.len()) as u16;
        match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                let ihl = 20 + ipv4_opts.len();
                let mut h = vec![0x40 | (ihl / 4) as u8, 0xb8];
                h.extend_from_slice(&((ihl as u16) + udp_len).to_be_bytes());
                h.extend_from_slice(&[0x12, 0x34, 0x40, 0, ttl, 17, 0, 0]);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                h.extend_from_slice(ipv4_opts);
                let c = ipv4_header_checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
                f.extend_from_slice(&[0x6b, 0x80, 0, 0]);
                f.extend_from_slice(&udp_len.to_be_bytes());
                f.extend_from_slice(&[17, ttl]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            _ => unreachable!(),
        }
        let mut u = Vec::new();
        u.extend_from_slice(&src.port().to_be_bytes());
        u.extend_from_slice(&dst.port().to_be_bytes());
        u.extend_from_slice(&udp_len.to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        let c = udp_checksum(src.ip(), dst.ip(), &u);
        u[6..8].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&u);
        f
    }

    /// Asserts that `f` is a well-formed frame with valid checksums carrying the given addressing.
    fn check(f: &[u8], l2: &L2Header, src: SocketAddr, dst: SocketAddr, ttl: u8, payload: &[u8]) {
        let l = parse_udp(f).expect("rewritten frame parses");
        assert_eq!(l.frame_len(), f.len());
        assert_eq!(&f[0..6], &l2.dst.0);
        assert_eq!(&f[6..12], &l2.src.0);
        assert_eq!(l.l3_off, l2.len());
        if let Some(t) = l2.vlan_tci {
            assert_eq!(be16(f, 14).unwrap(), t);
        }
        let ip = &f[l.l3_off..l.l4_off];
        match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                assert!(!l.v6);
                assert_eq!(ipv4_header_checksum(ip), 0, "IPv4 header checksum verifies");
                assert_eq!(ip[8], ttl);
                assert_eq!(&ip[12..16], &s.octets());
                assert_eq!(&ip[16..20], &d.octets());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                assert!(l.v6);
                assert_eq!(ip[7], ttl);
                assert_eq!(&ip[8..24], &s.octets());
                assert_eq!(&ip[24..40], &d.octets());
            }
            _ => unreachable!(),
        }
        let udp = &f[l.l4_off..];
        assert_eq!(be16(udp, 0).unwrap(), src.port());
        assert_eq!(be16(udp, 2).unwrap(), dst.port());
        assert_eq!(
            be16(udp, 6).unwrap(),
            udp_checksum(src.ip(), dst.ip(), udp),
            "UDP checksum verifies"
        );
        assert_eq!(&udp[8..], payload);
    }

    fn v4(a: [u8; 4], p: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::from(a), p))
    }
    fn v6(a: &str, p: u16) -> SocketAddr {
        SocketAddr::from((a.parse::<Ipv6Addr>().unwrap(), p))
    }
    fn out_l2(vlan: Option<u16>) -> L2Header {
        L2Header {
            dst: MacAddr([2, 0, 0, 0, 1, 1]),
            src: MacAddr([2, 0, 0, 0, 2, 2]),
            vlan_tci: vlan,
        }
    }

    /// Tiny deterministic generator for property-style loops.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 11
        }
    }

    #[test]
    fn checksum_primitives_match_rfc1071_example() {
        // RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2 (before complement).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(csum_fold(csum_accumulate(0, &data)), 0xddf2);
        // Odd length pads with a zero byte.
        assert_eq!(csum_fold(csum_accumulate(0, &[0x01])), 0x0100);
        // RFC 1624 section 4 example: HC = 0xDD2F, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
        assert_eq!(csum_update(0xdd2f, &[0x5555], &[0x3285]), 0x0000);
    }

    #[test]
    fn ipv4_same_family_is_patched_incrementally_and_verifies() {
        let payload = b"rtp payload of some length.";
        let (s, d) = (v4([203, 0, 113, 9], 40000), v4([192, 0, 2, 1], 30000));
        let mut f = frame(s, d, None, &[], 64, payload);
        let l = parse_udp(&f).unwrap();
        assert_eq!(
            (l.l3_off, l.l4_off, l.v6, l.payload_len),
            (14, 34, false, payload.len())
        );
        let rw = Rewrite {
            l2: out_l2(None),
            src: v4([198, 51, 100, 1], 31000),
            dst: v4([198, 51, 100, 77], 5004),
        };
        let n = rewrite_udp(&mut f, &l, &rw, Payload::Unchanged).unwrap();
        assert_eq!(n, f.len());
        check(&f, &rw.l2, rw.src, rw.dst, 63, payload);
    }

    #[test]
    fn ipv4_options_are_kept() {
        let opts = [0x94, 0x04, 0, 0, 0x01, 0x01, 0x01, 0x00]; // router alert + NOPs + EOL
        let (s, d) = (v4([10, 9, 8, 7], 1234), v4([10, 1, 1, 1], 30002));
        let mut f = frame(s, d, None, &opts, 9, b"x");
        let l = parse_udp(&f).unwrap();
        assert_eq!(l.l4_off, 14 + 28);
        let rw = Rewrite {
            l2: out_l2(None),
            src: v4([10, 2, 2, 2], 30004),
            dst: v4([10, 3, 3, 3], 9),
        };
        let n = rewrite_udp(&mut f, &l, &rw, Payload::Unchanged).unwrap();
        check(&f[..n], &rw.l2, rw.src, rw.dst, 8, b"x");
        assert_eq!(&f[34..42], &opts);
    }

    #[test]
    fn ipv6_same_family_is_patched_incrementally_and_verifies() {
        let payload = [0x80u8; 160];
        let (s, d) = (v6("2001:db8::9", 40000), v6("2001:db8:1::1", 30000));
        let mut f = frame(s, d, Some(0x2064), &[], 2, &payload);
        let l = parse_udp(&f).unwrap();
        assert_eq!((l.l3_off, l.l4_off, l.v6), (18, 58, true));
        let rw = Rewrite {
            l2: out_l2(Some(0x0007)),
            src: v6("2001:db8:2::1", 31000),
            dst: v6("2001:db8:ffff::abcd", 5004),
        };
        let n = rewrite_udp(&mut f, &l, &rw, Payload::Unchanged).unwrap();
        check(&f[..n], &rw.l2, rw.src, rw.dst, 1, &payload);
    }

    #[test]
    fn replaced_payload_recomputes_lengths_and_checksum() {
        for (s, d, rs, rd) in [
            (
                v4([1, 2, 3, 4], 1),
                v4([5, 6, 7, 8], 2),
                v4([9, 9, 9, 9], 3),
                v4([8, 8, 8, 8], 4),
            ),
            (
                v6("fe80::1", 1),
                v6("fe80::2", 2),
                v6("2001:db8::3", 3),
                v6("2001:db8::4", 4),
            ),
        ] {
            let mut f = frame(s, d, None, &[], 64, &[7u8; 100]);
            let l = parse_udp(&f).unwrap();
            // SRTP protect: payload grows by a 10-byte auth tag, bytes change.
            f.resize(f.len() + 64, 0);
            let new_payload: Vec<u8> = (0..110u8).collect();
            f[l.payload_off()..l.payload_off() + 110].copy_from_slice(&new_payload);
            let rw = Rewrite {
                l2: out_l2(None),
                src: rs,
                dst: rd,
            };
            let n = rewrite_udp(&mut f, &l, &rw, Payload::Replaced { len: 110 }).unwrap();
            check(&f[..n], &rw.l2, rs, rd, 63, &new_payload);
            // And shrinking (SRTP unprotect).
            let l = parse_udp(&f[..n]).unwrap();
            let rw2 = Rewrite {
                l2: out_l2(None),
                src: s,
                dst: d,
            };
            let n = rewrite_udp(&mut f, &l, &rw2, Payload::Replaced { len: 100 }).unwrap();
            check(&f[..n], &rw2.l2, s, d, 62, &new_payload[..100]);
        }
    }

    #[test]
    fn family_and_vlan_changes_rebuild_the_headers() {
        let payload: Vec<u8> = (0..=255u8).collect();
        let cases = [
            (
                v4([1, 1, 1, 1], 10),
                v4([2, 2, 2, 2], 20),
                v6("2001:db8::1", 30),
                v6("2001:db8::2", 40),
                None,
                None,
            ),
            (
                v6("2001:db8::1", 30),
                v6("2001:db8::2", 40),
                v4([1, 1, 1, 1], 10),
                v4([2, 2, 2, 2], 20),
                None,
                None,
            ),
            (
                v4([1, 1, 1, 1], 10),
                v4([2, 2, 2, 2], 20),
                v4([3, 3, 3, 3], 1),
                v4([4, 4, 4, 4], 2),
                None,
                Some(5),
            ),
            (
                v4([1, 1, 1, 1], 10),
                v4([2, 2, 2, 2], 20),
                v4([3, 3, 3, 3], 1),
                v4([4, 4, 4, 4], 2),
                Some(5),
                None,
            ),
            (
                v6("::1", 10),
                v6("::2", 20),
                v6("::3", 1),
                v6("::4", 2),
                Some(9),
                None,
            ),
        ];
        for (s, d, rs, rd, vin, vout) in cases {
            let mut f = frame(s, d, vin, &[], 64, &payload);
            let l = parse_udp(&f).unwrap();
            f.resize(f.len() + 24, 0);
            let rw = Rewrite {
                l2: out_l2(vout),
                src: rs,
                dst: rd,
            };
            let n = rewrite_udp(&mut f, &l, &rw, Payload::Unchanged).unwrap();
            check(&f[..n], &rw.l2, rs, rd, 63, &payload);
        }
    }

    #[test]
    fn incremental_update_equals_full_recompute_over_random_addresses() {
        let mut r = Lcg(42);
        for _ in 0..2000 {
            let v6mode = r.next().is_multiple_of(2);
            let rnd4 = |r: &mut Lcg| v4((r.next() as u32).to_be_bytes(), r.next() as u16);
            let rnd6 = |r: &mut Lcg| {
                SocketAddr::from((
                    Ipv6Addr::from(((r.next() as u128) << 64) | r.next() as u128),
                    r.next() as u16,
                ))
            };
            let pick = |r: &mut Lcg| if v6mode { rnd6(r) } else { rnd4(r) };
            let (s, d, rs, rd) = (pick(&mut r), pick(&mut r), pick(&mut r), pick(&mut r));
            let len = (r.next() % 300) as usize;
            let payload: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
            let mut f = frame(s, d, None, &[], 2 + (r.next() % 250) as u8, &payload);
            let ttl_in = f[if v6mode { 14 + 7 } else { 14 + 8 }];
            let l = parse_udp(&f).unwrap();
            let rw = Rewrite {
                l2: out_l2(None),
                src: rs,
                dst: rd,
            };
            let n = rewrite_udp(&mut f, &l, &rw, Payload::Unchanged).unwrap();
            check(&f[..n], &rw.l2, rs, rd, ttl_in - 1, &payload);
        }
    }

    #[test]
    fn ipv4_zero_udp_checksum_stays_zero_but_ipv6_gets_one() {
        let (s, d) = (v4([1, 1, 1, 1], 10), v4([2, 2, 2, 2], 20));
        let mut f = frame(s, d, None, &[], 64, b"abc");
        f[40..42].copy_from_slice(&[0, 0]);
        let l = parse_udp(&f).unwrap();
        let rw = Rewrite {
            l2: out_l2(None),
            src: v4([3, 3, 3, 3], 1),
            dst: v4([4, 4, 4, 4], 2),
        };
        let n = rewrite_udp(&mut f, &l, &rw, Payload::Unchanged).unwrap();
        assert_eq!(&f[40..42], &[0, 0]);
        assert_eq!(ipv4_header_checksum(&f[14..34]), 0);
        // Crossing to IPv6, where a UDP checksum is mandatory.
        let l = parse_udp(&f[..n]).unwrap();
        f.resize(n + 20, 0);
        let rw6 = Rewrite {
            l2: out_l2(None),
            src: v6("::3", 1),
            dst: v6("::4", 2),
        };
        let n = rewrite_udp(&mut f, &l, &rw6, Payload::Unchanged).unwrap();
        check(&f[..n], &rw6.l2, rw6.src, rw6.dst, 62, b"abc");
    }

    #[test]
    fn refusals_are_typed() {
        let (s, d) = (v4([1, 1, 1, 1], 10), v4([2, 2, 2, 2], 20));
        let good = frame(s, d, None, &[], 1, b"abc");
        let l = parse_udp(&good).unwrap();
        let rw = Rewrite {
            l2: out_l2(None),
            src: v4([3, 3, 3, 3], 1),
            dst: v4([4, 4, 4, 4], 2),
        };
        assert_eq!(
            rewrite_udp(&mut good.clone(), &l, &rw, Payload::Unchanged),
            Err(RewriteError::TtlExpired)
        );
        let mixed = Rewrite {
            src: v6("::1", 1),
            ..rw
        };
        let good = frame(s, d, None, &[], 5, b"abc");
        assert_eq!(
            rewrite_udp(&mut good.clone(), &l, &mixed, Payload::Unchanged),
            Err(RewriteError::MixedFamilies)
        );
        assert_eq!(
            rewrite_udp(&mut good.clone(), &l, &rw, Payload::Replaced { len: 5000 }),
            Err(RewriteError::NoRoom)
        );
        let bogus = UdpLayout {
            l3_off: 14,
            l4_off: 20,
            v6: false,
            payload_len: 0,
        };
        assert_eq!(
            rewrite_udp(&mut good.clone(), &bogus, &rw, Payload::Unchanged),
            Err(RewriteError::BadLength)
        );

        let mut frag = good.clone();
        frag[14 + 6] = 0x20; // MF
        assert_eq!(parse_udp(&frag), Err(RewriteError::Fragment));
        let mut tcp = good.clone();
        tcp[14 + 9] = 6;
        assert_eq!(parse_udp(&tcp), Err(RewriteError::NotUdp));
        let mut arp = good.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse_udp(&arp), Err(RewriteError::NotIp));
        let mut badlen = good.clone();
        badlen[14 + 20 + 5] += 1;
        assert_eq!(parse_udp(&badlen), Err(RewriteError::BadLength));
        assert_eq!(
            parse_udp(&good[..good.len() - 1]),
            Err(RewriteError::Truncated)
        );
        let f6 = frame(v6("::1", 1), v6("::2", 2), None, &[], 5, b"abc");
        let mut frag6 = f6.clone();
        frag6[14 + 6] = 44;
        assert_eq!(parse_udp(&frag6), Err(RewriteError::Fragment));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut r = Lcg(7);
        let base = frame(
            v4([1, 1, 1, 1], 10),
            v4([2, 2, 2, 2], 20),
            Some(3),
            &[1, 1, 1, 1],
            64,
            &[9; 40],
        );
        let rw = Rewrite {
            l2: out_l2(None),
            src: v4([3, 3, 3, 3], 1),
            dst: v4([4, 4, 4, 4], 2),
        };
        for i in 0..20_000u32 {
            let mut f = if i.is_multiple_of(2) {
                let mut f = base.clone();
                for _ in 0..1 + r.next() % 4 {
                    let k = (r.next() as usize) % f.len();
                    f[k] = r.next() as u8;
                }
                f.truncate((r.next() as usize) % (f.len() + 1));
                f
            } else {
                (0..r.next() % 120).map(|_| r.next() as u8).collect()
            };
            if let Ok(l) = parse_udp(&f) {
                assert!(l.frame_len() <= f.len());
                let _ = rewrite_udp(&mut f, &l, &rw, Payload::Unchanged);
            }
        }
    }
}
