//! One SRTP/SRTCP crypto context: one direction, one master key, a fixed table of per-SSRC streams.

use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::array::Array;
use hmac::{KeyInit, Mac};
use zeroize::Zeroize;

use super::cipher::{self, Aes, Label, ctr_xor};
use super::error::SrtpError;
use super::key::{MasterKey, Mki};
use super::replay::{MAX_REPLAY_WINDOW, ReplayWindow};
use super::suite::{MAX_MKI_LEN, Suite};

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// Packets per call of the batch entry points that share one keystream pass.
pub const MAX_BATCH: usize = 64;

/// Largest SSRC table a context may have: lookups are a linear scan, sized for the few SSRCs of a call leg.
pub const MAX_SSRC_CAPACITY: usize = 4096;

/// Context options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Replay window in packets, 1..=1024 (RFC 3711 asks for at least 64). Default 128.
    pub replay_window: usize,
    /// SSRCs this context tracks at once, 1..=4096. Default 4. Allocated once in `new`.
    pub ssrc_capacity: usize,
    /// MKI to send and to require on received packets. `None` uses the master key's own MKI, if any.
    pub mki: Option<Mki>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            replay_window: 128,
            ssrc_capacity: 4,
            mki: None,
        }
    }
}

/// The state kept for one SSRC. For RTP, the highest index accepted (ROC << 16 | highest seq) and the
/// replay window below it; for SRTCP, the receive window and the last index sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    ssrc: u32,
    rtp: Option<ReplayWindow>,
    rtcp_rx: Option<ReplayWindow>,
    rtcp_tx_index: u32,
}

impl StreamState {
    fn new(ssrc: u32) -> StreamState {
        StreamState {
            ssrc,
            rtp: None,
            rtcp_rx: None,
            rtcp_tx_index: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Rollover counter of the highest RTP packet accepted.
    pub fn roc(&self) -> Option<u32> {
        self.rtp.as_ref().map(|w| (w.top() >> 16) as u32)
    }

    /// Highest RTP sequence number accepted (`s_l` of RFC 3711).
    pub fn highest_seq(&self) -> Option<u16> {
        self.rtp.as_ref().map(|w| w.top() as u16)
    }

    /// Highest 48-bit RTP packet index accepted.
    pub fn rtp_index(&self) -> Option<u64> {
        self.rtp.as_ref().map(ReplayWindow::top)
    }

    /// Highest SRTCP index received.
    pub fn rtcp_rx_index(&self) -> Option<u32> {
        self.rtcp_rx.as_ref().map(|w| w.top() as u32)
    }

    /// Last SRTCP index sent (0 before the first).
    pub fn rtcp_tx_index(&self) -> u32 {
        self.rtcp_tx_index
    }
}

enum Gcm {
    A128(aes_gcm::Aes128Gcm),
    A256(aes_gcm::Aes256Gcm),
}

/// Session keys of one of SRTP or SRTCP.
enum Transform {
    Cm {
        aes: Aes,
        salt: [u8; 14],
        auth: HmacSha1,
        tag_len: usize,
    },
    Gcm {
        aead: Gcm,
        salt: [u8; 12],
    },
}

impl Drop for Transform {
    fn drop(&mut self) {
        // The AES, GCM and HMAC states zeroize themselves (crate `zeroize` features).
        match self {
            Transform::Cm { salt, .. } => salt.zeroize(),
            Transform::Gcm { salt, .. } => salt.zeroize(),
        }
    }
}

impl Transform {
    fn derive(suite: Suite, mk: &MasterKey, rtcp: bool) -> Result<Transform, SrtpError> {
        let (l_enc, l_auth, l_salt) = if rtcp {
            (Label::RtcpEncryption, Label::RtcpAuth, Label::RtcpSalt)
        } else {
            (Label::RtpEncryption, Label::RtpAuth, Label::RtpSalt)
        };
        let mut key = [0u8; 32];
        let kl = suite.master_key_len();
        cipher::derive(mk.key(), mk.salt(), l_enc, &mut key[..kl])?;
        let t = if suite.is_aead() {
            let mut salt = [0u8; 12];
            cipher::derive(mk.key(), mk.salt(), l_salt, &mut salt)?;
            let aead = match kl {
                16 => Gcm::A128(
                    aes_gcm::Aes128Gcm::new_from_slice(&key[..kl])
                        .map_err(|_| SrtpError::BadKey)?,
                ),
                _ => Gcm::A256(
                    aes_gcm::Aes256Gcm::new_from_slice(&key[..kl])
                        .map_err(|_| SrtpError::BadKey)?,
                ),
            };
            Transform::Gcm { aead, salt }
        } else {
            let mut salt = [0u8; 14];
            cipher::derive(mk.key(), mk.salt(), l_salt, &mut salt)?;
            let mut auth_key = [0u8; 20];
            cipher::derive(mk.key(), mk.salt(), l_auth, &mut auth_key)?;
            // Keyed once: each packet clones the precomputed inner/outer SHA-1 states.
            let auth = HmacSha1::new_from_slice(&auth_key).map_err(|_| SrtpError::BadKey)?;
            auth_key.zeroize();
            let tag_len = if rtcp {
                suite.rtcp_tag_len()
            } else {
                suite.rtp_tag_len()
            };
            Transform::Cm {
                aes: Aes::new(&key[..kl])?,
                salt,
                auth,
                tag_len,
            }
        };
        key.zeroize();
        Ok(t)
    }

    /// Session keys given directly (test vectors of RFC 7714 skip the KDF).
    #[cfg(test)]
    fn from_session(suite: Suite, key: &[u8], salt: &[u8], auth: &[u8], rtcp: bool) -> Transform {
        if suite.is_aead() {
            let aead = match key.len() {
                16 => Gcm::A128(aes_gcm::Aes128Gcm::new_from_slice(key).unwrap()),
                _ => Gcm::A256(aes_gcm::Aes256Gcm::new_from_slice(key).unwrap()),
            };
            Transform::Gcm {
                aead,
                salt: salt.try_into().unwrap(),
            }
        } else {
            let tag_len = if rtcp {
                suite.rtcp_tag_len()
            } else {
                suite.rtp_tag_len()
            };
            Transform::Cm {
                aes: Aes::new(key).unwrap(),
                salt: salt.try_into().unwrap(),
                auth: HmacSha1::new_from_slice(auth).unwrap(),
                tag_len,
            }
        }
    }
}

/// RFC 3711 section 4.1.1: IV = (k_s << 16) XOR (SSRC << 64) XOR (i << 16).
#[inline]
fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    let s = ssrc.to_be_bytes();
    let i = index.to_be_bytes();
    for k in 0..4 {
        iv[4 + k] ^= s[k];
    }
    for k in 0..6 {
        iv[8 + k] ^= i[2 + k];
    }
    iv
}

/// RFC 7714 section 8.1: IV = (00 00 || SSRC || ROC || SEQ) XOR salt.
#[inline]
fn gcm_rtp_iv(salt: &[u8; 12], ssrc: u32, index: u64) -> [u8; 12] {
    let mut iv = *salt;
    let s = ssrc.to_be_bytes();
    let i = index.to_be_bytes();
    for k in 0..4 {
        iv[2 + k] ^= s[k];
    }
    for k in 0..6 {
        iv[6 + k] ^= i[2 + k];
    }
    iv
}

/// RFC 7714 section 9.1: IV = (00 00 || SSRC || 00 00 || 0 || SRTCP index) XOR salt.
#[inline]
fn gcm_rtcp_iv(salt: &[u8; 12], ssrc: u32, index: u32) -> [u8; 12] {
    let mut iv = *salt;
    let s = ssrc.to_be_bytes();
    let i = index.to_be_bytes();
    for k in 0..4 {
        iv[2 + k] ^= s[k];
        iv[8 + k] ^= i[k];
    }
    iv
}

impl Gcm {
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> Result<[u8; 16], SrtpError> {
        let nonce = Array::from(*nonce);
        let tag = match self {
            Gcm::A128(c) => c.encrypt_inout_detached(&nonce, aad, data.into()),
            Gcm::A256(c) => c.encrypt_inout_detached(&nonce, aad, data.into()),
        }
        .map_err(|_| SrtpError::Malformed)?;
        Ok(tag.into())
    }

    /// Checks the tag before decrypting, so a forged packet leaves `data` untouched.
    fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8],
    ) -> Result<(), SrtpError> {
        let nonce = Array::from(*nonce);
        let tag: [u8; 16] = tag.try_into().map_err(|_| SrtpError::TooShort)?;
        let tag = Array::from(tag);
        match self {
            Gcm::A128(c) => c.decrypt_inout_detached(&nonce, aad, data.into(), &tag),
            Gcm::A256(c) => c.decrypt_inout_detached(&nonce, aad, data.into(), &tag),
        }
        .map_err(|_| SrtpError::AuthFailed)
    }
}

/// HMAC-SHA1 over `parts`, truncated to the tag length by the caller.
#[inline]
fn hmac_tag(auth: &HmacSha1, data: &[u8], trailer: &[u8]) -> [u8; 20] {
    let mut m = auth.clone();
    m.update(data);
    m.update(trailer);
    m.finalize().into_bytes().into()
}

#[inline]
fn hmac_verify(auth: &HmacSha1, data: &[u8], trailer: &[u8], tag: &[u8]) -> Result<(), SrtpError> {
    let mut m = auth.clone();
    m.update(data);
    m.update(trailer);
    m.verify_truncated_left(tag)
        .map_err(|_| SrtpError::AuthFailed)
}

/// Length of the RTP header (fixed part, CSRCs, extension) of `pkt`, and its SSRC and sequence number.
#[inline]
fn parse_rtp(pkt: &[u8]) -> Result<(usize, u32, u16), SrtpError> {
    let fixed: &[u8; 12] = pkt
        .get(..12)
        .and_then(|h| h.try_into().ok())
        .ok_or(SrtpError::TooShort)?;
    if fixed[0] >> 6 != 2 {
        return Err(SrtpError::Malformed);
    }
    let seq = u16::from_be_bytes([fixed[2], fixed[3]]);
    let ssrc = u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
    let mut hl = 12 + 4 * usize::from(fixed[0] & 0x0f);
    if fixed[0] & 0x10 != 0 {
        let ext = pkt.get(hl..hl + 4).ok_or(SrtpError::Malformed)?;
        hl += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    if hl > pkt.len() {
        return Err(SrtpError::Malformed);
    }
    Ok((hl, ssrc, seq))
}

#[inline]
fn parse_rtcp(pkt: &[u8]) -> Result<u32, SrtpError> {
    let h: &[u8; 8] = pkt
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or(SrtpError::TooShort)?;
    if h[0] >> 6 != 2 {
        return Err(SrtpError::Malformed);
    }
    Ok(u32::from_be_bytes([h[4], h[5], h[6], h[7]]))
}

/// RFC 3711 section 3.3.1: the index of `seq` given the highest index `top` seen so far.
/// `None` if it would fall before index 0 (a packet from before the stream) or past ROC 2^32.
#[inline]
fn estimate_index(top: u64, seq: u16) -> Result<u64, SrtpError> {
    let roc = (top >> 16) as i64;
    let s_l = i64::from(top as u16);
    let s = i64::from(seq);
    let v = if s_l < 0x8000 {
        if s - s_l > 0x8000 { roc - 1 } else { roc }
    } else if s_l - 0x8000 > s {
        roc + 1
    } else {
        roc
    };
    if v < 0 {
        return Err(SrtpError::Replayed);
    }
    if v > i64::from(u32::MAX) {
        return Err(SrtpError::KeyExhausted);
    }
    Ok(((v as u64) << 16) | u64::from(seq))
}

/// Where a packet's stream lives in the table: found, or the free slot it would take.
#[derive(Clone, Copy)]
enum Slot {
    Existing(usize),
    Free,
}

/// A packet queued for the shared keystream pass of a batch.
#[derive(Clone, Copy, Default)]
struct Pending {
    pkt: usize,
    start: usize,
    end: usize,
    ks_block: usize,
    roc: u32,
}

/// The SRTP/SRTCP engine for one direction of one master key.
pub struct SrtpContext {
    suite: Suite,
    rtp: Transform,
    rtcp: Transform,
    mki: Option<([u8; MAX_MKI_LEN], usize)>,
    window: usize,
    capacity: usize,
    streams: Vec<StreamState>,
    last: usize,
    lifetime: Option<u64>,
    sent: u64,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("suite", &self.suite)
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// Derives the session keys once (RFC 3711 section 4.3, key derivation rate 0).
    pub fn new(suite: Suite, key: &MasterKey, config: Config) -> Result<SrtpContext, SrtpError> {
        if key.suite() != suite {
            return Err(SrtpError::BadKey);
        }
        if !(1..=MAX_REPLAY_WINDOW).contains(&config.replay_window)
            || !(1..=MAX_SSRC_CAPACITY).contains(&config.ssrc_capacity)
        {
            return Err(SrtpError::BadConfig);
        }
        Ok(SrtpContext {
            suite,
            rtp: Transform::derive(suite, key, false)?,
            rtcp: Transform::derive(suite, key, true)?,
            mki: config.mki.or(key.mki()).map(|m| m.to_bytes()),
            window: config.replay_window,
            capacity: config.ssrc_capacity,
            streams: Vec::with_capacity(config.ssrc_capacity),
            last: 0,
            lifetime: key.lifetime(),
            sent: 0,
        })
    }

    #[cfg(test)]
    fn from_session_keys(
        suite: Suite,
        rtp: (&[u8], &[u8], &[u8]),
        rtcp: (&[u8], &[u8], &[u8]),
    ) -> SrtpContext {
        SrtpContext {
            suite,
            rtp: Transform::from_session(suite, rtp.0, rtp.1, rtp.2, false),
            rtcp: Transform::from_session(suite, rtcp.0, rtcp.1, rtcp.2, true),
            mki: None,
            window: 128,
            capacity: 4,
            streams: Vec::with_capacity(4),
            last: 0,
            lifetime: None,
            sent: 0,
        }
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Bytes `protect_rtp` appends (tag and MKI).
    pub fn rtp_overhead(&self) -> usize {
        self.suite.max_rtp_overhead(self.mki_len())
    }

    /// Bytes `protect_rtcp` appends (tag, E-bit + SRTCP index, MKI).
    pub fn rtcp_overhead(&self) -> usize {
        self.suite.max_rtcp_overhead(self.mki_len())
    }

    /// The state of one SSRC, if this context has seen it.
    pub fn stream(&self, ssrc: u32) -> Option<&StreamState> {
        self.streams.iter().find(|s| s.ssrc == ssrc)
    }

    /// Forgets an SSRC (e.g. after a BYE), freeing its slot. Returns whether it was there.
    pub fn remove_ssrc(&mut self, ssrc: u32) -> bool {
        match self.streams.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => {
                self.streams.swap_remove(i);
                self.last = 0;
                true
            }
            None => false,
        }
    }

    fn mki_len(&self) -> usize {
        self.mki.map_or(0, |(_, n)| n)
    }

    #[inline]
    fn mki_bytes(&self) -> &[u8] {
        match &self.mki {
            Some((b, n)) => b.get(..*n).unwrap_or(&[]),
            None => &[],
        }
    }

    #[inline]
    fn find(&self, ssrc: u32) -> Result<Slot, SrtpError> {
        if let Some(s) = self.streams.get(self.last)
            && s.ssrc == ssrc
        {
            return Ok(Slot::Existing(self.last));
        }
        match self.streams.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => Ok(Slot::Existing(i)),
            None if self.streams.len() < self.capacity => Ok(Slot::Free),
            None => Err(SrtpError::UnknownSsrc),
        }
    }

    /// The stream for `slot`, creating it in the preallocated table (no allocation: len < capacity).
    #[inline]
    fn slot_mut(&mut self, slot: Slot, ssrc: u32) -> &mut StreamState {
        let i = match slot {
            Slot::Existing(i) if i < self.streams.len() => i,
            _ => {
                self.streams.push(StreamState::new(ssrc));
                self.streams.len() - 1
            }
        };
        self.last = i;
        &mut self.streams[i]
    }

    #[inline]
    fn rtp_window(&self, slot: Slot) -> Option<&ReplayWindow> {
        match slot {
            Slot::Existing(i) => self.streams.get(i).and_then(|s| s.rtp.as_ref()),
            Slot::Free => None,
        }
    }

    /// Index of an RTP packet and whether it passes the replay window; reads state only.
    #[inline]
    fn rtp_index(&self, slot: Slot, seq: u16) -> Result<u64, SrtpError> {
        match self.rtp_window(slot) {
            Some(w) => {
                let idx = estimate_index(w.top(), seq)?;
                if w.check(idx, self.window) {
                    Ok(idx)
                } else {
                    Err(SrtpError::Replayed)
                }
            }
            None => Ok(u64::from(seq)),
        }
    }

    #[inline]
    fn commit_rtp(&mut self, slot: Slot, ssrc: u32, index: u64) {
        let window = self.window;
        let s = self.slot_mut(slot, ssrc);
        match &mut s.rtp {
            Some(w) => w.accept(index, window),
            None => s.rtp = Some(ReplayWindow::starting_at(index)),
        }
    }

    /// Validates an outgoing RTP packet and reserves its index; returns (header len, ssrc, index).
    #[inline]
    fn prepare_protect_rtp(&mut self, buf: &[u8], len: usize) -> Result<(usize, u64), SrtpError> {
        let pkt = buf.get(..len).ok_or(SrtpError::BufferTooSmall)?;
        let (hl, ssrc, seq) = parse_rtp(pkt)?;
        if len + self.rtp_overhead() > buf.len() {
            return Err(SrtpError::BufferTooSmall);
        }
        if self.lifetime.is_some_and(|l| self.sent >= l) {
            return Err(SrtpError::KeyExhausted);
        }
        let slot = self.find(ssrc)?;
        let index = self.rtp_index(slot, seq)?;
        // Nothing after this point can fail: commit now so later packets of a batch see this one.
        self.commit_rtp(slot, ssrc, index);
        self.sent += 1;
        Ok((hl, index))
    }

    /// Encrypts and authenticates `buf[..len]` (an RTP packet) in place, appending MKI and tag;
    /// `buf` must have `rtp_overhead()` spare bytes after `len`. Returns the SRTP length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let (hl, index) = self.prepare_protect_rtp(buf, len)?;
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let mki_len = self.mki_len();
        let (mki, n) = self.mki.unwrap_or(([0; MAX_MKI_LEN], 0));
        match &self.rtp {
            Transform::Cm {
                aes,
                salt,
                auth,
                tag_len,
            } => {
                ctr_xor(aes, cm_iv(salt, ssrc, index), &mut buf[hl..len]);
                let tag = hmac_tag(auth, &buf[..len], &((index >> 16) as u32).to_be_bytes());
                buf[len..len + n].copy_from_slice(&mki[..n]);
                buf[len + n..len + n + tag_len].copy_from_slice(&tag[..*tag_len]);
                Ok(len + n + tag_len)
            }
            Transform::Gcm { aead, salt } => {
                let (aad, rest) = buf.split_at_mut(hl);
                let tag = aead.seal(&gcm_rtp_iv(salt, ssrc, index), aad, &mut rest[..len - hl])?;
                buf[len..len + 16].copy_from_slice(&tag);
                buf[len + 16..len + 16 + mki_len].copy_from_slice(&mki[..n]);
                Ok(len + 16 + mki_len)
            }
        }
    }

    /// Validates the framing of a received SRTP packet: (header len, ssrc, seq, end of encrypted payload).
    #[inline]
    fn parse_srtp(&self, buf: &[u8], len: usize) -> Result<(usize, u32, u16, usize), SrtpError> {
        let pkt = buf.get(..len).ok_or(SrtpError::TooShort)?;
        let trailer = self.rtp_overhead();
        if len < 12 + trailer {
            return Err(SrtpError::TooShort);
        }
        let (hl, ssrc, seq) = parse_rtp(&pkt[..len - trailer])?;
        let mki = self.mki_bytes();
        let mki_at = match &self.rtp {
            Transform::Cm { tag_len, .. } => len - tag_len - mki.len(),
            Transform::Gcm { .. } => len - mki.len(),
        };
        if pkt.get(mki_at..mki_at + mki.len()) != Some(mki) {
            return Err(SrtpError::MkiMismatch);
        }
        Ok((hl, ssrc, seq, len - trailer))
    }

    /// Verifies and decrypts `buf[..len]` (an SRTP packet) in place. Returns the RTP length.
    /// A packet that fails any check leaves the context unchanged.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let (hl, ssrc, seq, end) = self.parse_srtp(buf, len)?;
        let slot = self.find(ssrc)?;
        let index = self.rtp_index(slot, seq)?;
        match &self.rtp {
            Transform::Cm {
                aes,
                salt,
                auth,
                tag_len,
            } => {
                let roc = ((index >> 16) as u32).to_be_bytes();
                hmac_verify(auth, &buf[..end], &roc, &buf[len - tag_len..len])?;
                ctr_xor(aes, cm_iv(salt, ssrc, index), &mut buf[hl..end]);
            }
            Transform::Gcm { aead, salt } => {
                let (aad, rest) = buf.split_at_mut(hl);
                let (ct, tag) = rest[..end + 16 - hl].split_at_mut(end - hl);
                aead.open(&gcm_rtp_iv(salt, ssrc, index), aad, ct, tag)?;
            }
        }
        self.commit_rtp(slot, ssrc, index);
        Ok(end)
    }

    /// Encrypts and authenticates an RTCP compound packet in place with the next SRTCP index (E=1).
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let pkt = buf.get(..len).ok_or(SrtpError::BufferTooSmall)?;
        let ssrc = parse_rtcp(pkt)?;
        if len + self.rtcp_overhead() > buf.len() {
            return Err(SrtpError::BufferTooSmall);
        }
        if self.lifetime.is_some_and(|l| self.sent >= l) {
            return Err(SrtpError::KeyExhausted);
        }
        let slot = self.find(ssrc)?;
        let last = match slot {
            Slot::Existing(i) => self.streams.get(i).map_or(0, |s| s.rtcp_tx_index),
            Slot::Free => 0,
        };
        // SRTCP indices are 31 bits; libsrtp, like us, sends 1 first.
        if last >= 0x7fff_ffff {
            return Err(SrtpError::KeyExhausted);
        }
        let index = last + 1;
        let e_index = (index | 0x8000_0000).to_be_bytes();
        let (mki, n) = self.mki.unwrap_or(([0; MAX_MKI_LEN], 0));
        let out = match &self.rtcp {
            Transform::Cm {
                aes,
                salt,
                auth,
                tag_len,
            } => {
                ctr_xor(aes, cm_iv(salt, ssrc, u64::from(index)), &mut buf[8..len]);
                buf[len..len + 4].copy_from_slice(&e_index);
                let tag = hmac_tag(auth, &buf[..len + 4], &[]);
                buf[len + 4..len + 4 + n].copy_from_slice(&mki[..n]);
                buf[len + 4 + n..len + 4 + n + tag_len].copy_from_slice(&tag[..*tag_len]);
                len + 4 + n + tag_len
            }
            Transform::Gcm { aead, salt } => {
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&e_index);
                let tag = aead.seal(&gcm_rtcp_iv(salt, ssrc, index), &aad, &mut buf[8..len])?;
                buf[len..len + 16].copy_from_slice(&tag);
                buf[len + 16..len + 20].copy_from_slice(&e_index);
                buf[len + 20..len + 20 + n].copy_from_slice(&mki[..n]);
                len + 20 + n
            }
        };
        self.slot_mut(slot, ssrc).rtcp_tx_index = index;
        self.sent += 1;
        Ok(out)
    }

    /// Verifies and (if the E-bit is set) decrypts an SRTCP packet in place. Returns the RTCP length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let pkt = buf.get(..len).ok_or(SrtpError::TooShort)?;
        let trailer = self.rtcp_overhead();
        if len < 8 + trailer {
            return Err(SrtpError::TooShort);
        }
        let ssrc = parse_rtcp(pkt)?;
        let mki = self.mki_bytes();
        // Layout after the RTCP packet: AES-CM `E|index MKI tag`, GCM `tag E|index MKI`.
        let (end, idx_at, mki_at) = match &self.rtcp {
            Transform::Cm { tag_len, .. } => (
                len - trailer,
                len - tag_len - mki.len() - 4,
                len - tag_len - mki.len(),
            ),
            Transform::Gcm { .. } => (len - trailer, len - mki.len() - 4, len - mki.len()),
        };
        if pkt.get(mki_at..mki_at + mki.len()) != Some(mki) {
            return Err(SrtpError::MkiMismatch);
        }
        let e_index: [u8; 4] = pkt[idx_at..idx_at + 4]
            .try_into()
            .map_err(|_| SrtpError::TooShort)?;
        let word = u32::from_be_bytes(e_index);
        let (encrypted, index) = (word & 0x8000_0000 != 0, word & 0x7fff_ffff);
        let slot = self.find(ssrc)?;
        let window = match slot {
            Slot::Existing(i) => self.streams.get(i).and_then(|s| s.rtcp_rx.as_ref()),
            Slot::Free => None,
        };
        if let Some(w) = window
            && !w.check(u64::from(index), self.window)
        {
            return Err(SrtpError::Replayed);
        }
        match &self.rtcp {
            Transform::Cm {
                aes,
                salt,
                auth,
                tag_len,
            } => {
                hmac_verify(auth, &buf[..mki_at], &[], &buf[len - tag_len..len])?;
                if encrypted {
                    ctr_xor(aes, cm_iv(salt, ssrc, u64::from(index)), &mut buf[8..end]);
                }
            }
            Transform::Gcm { aead, salt } => {
                let nonce = gcm_rtcp_iv(salt, ssrc, index);
                if encrypted {
                    let mut aad = [0u8; 12];
                    aad[..8].copy_from_slice(&buf[..8]);
                    aad[8..].copy_from_slice(&e_index);
                    let (ct, tag) = buf[8..end + 16].split_at_mut(end - 8);
                    aead.open(&nonce, &aad, ct, tag)?;
                } else {
                    // RFC 7714 section 9.2: unencrypted SRTCP authenticates the whole packet and the
                    // E|index word as AAD. It must be contiguous, so copy it (bounded: one MTU).
                    let mut aad = [0u8; 1504];
                    let a = aad.get_mut(..end + 4).ok_or(SrtpError::Malformed)?;
                    a[..end].copy_from_slice(&buf[..end]);
                    a[end..].copy_from_slice(&e_index);
                    aead.open(&nonce, a, &mut [], &buf[end..end + 16])?;
                }
            }
        }
        let window = self.window;
        let s = self.slot_mut(slot, ssrc);
        match &mut s.rtcp_rx {
            Some(w) => w.accept(u64::from(index), window),
            None => s.rtcp_rx = Some(ReplayWindow::starting_at(u64::from(index))),
        }
        Ok(end)
    }

    /// Protects many RTP packets; `results[i]` gets what `protect_rtp` would return for `pkts[i]`.
    /// For AES-CM the counter blocks of all packets go through AES together, which keeps the
    /// pipelined AES-NI/VAES units busy across the short packets of voice. Handles
    /// `min(pkts.len(), results.len())` packets and returns that count.
    pub fn protect_rtp_batch(
        &mut self,
        pkts: &mut [(&mut [u8], usize)],
        results: &mut [Result<usize, SrtpError>],
    ) -> usize {
        let n = pkts.len().min(results.len());
        if !matches!(self.rtp, Transform::Cm { .. }) {
            for (p, r) in pkts.iter_mut().zip(results.iter_mut()).take(n) {
                *r = self.protect_rtp(p.0, p.1);
            }
            return n;
        }
        let mut ks = [[0u8; 16]; BATCH_KS_BLOCKS];
        let mut pending = [Pending::default(); MAX_BATCH];
        let mut np = 0;
        let mut used = 0;
        for i in 0..n {
            let (buf, len): (&[u8], usize) = (&pkts[i].0[..], pkts[i].1);
            let (hl, index) = match self.prepare_protect_rtp(buf, len) {
                Ok(v) => v,
                Err(e) => {
                    results[i] = Err(e);
                    continue;
                }
            };
            let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
            let blocks = (len - hl).div_ceil(16);
            if used + blocks > BATCH_KS_BLOCKS || np == MAX_BATCH {
                self.finish_protect(pkts, results, &mut ks, &pending[..np]);
                np = 0;
                used = 0;
            }
            if blocks > BATCH_KS_BLOCKS {
                // Too long to share the buffer: its own keystream pass.
                results[i] = self.protect_cm_alone(&mut pkts[i], hl, index);
                continue;
            }
            if let Transform::Cm { salt, .. } = &self.rtp {
                cipher::fill_counters(
                    &mut ks[used..used + blocks],
                    u128::from_be_bytes(cm_iv(salt, ssrc, index)),
                );
            }
            pending[np] = Pending {
                pkt: i,
                start: hl,
                end: len,
                ks_block: used,
                roc: (index >> 16) as u32,
            };
            np += 1;
            used += blocks;
        }
        self.finish_protect(pkts, results, &mut ks, &pending[..np]);
        n
    }

    fn protect_cm_alone(
        &self,
        pkt: &mut (&mut [u8], usize),
        hl: usize,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let (buf, len) = (&mut *pkt.0, pkt.1);
        let Transform::Cm {
            aes,
            salt,
            auth,
            tag_len,
        } = &self.rtp
        else {
            return Err(SrtpError::BadConfig);
        };
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        ctr_xor(aes, cm_iv(salt, ssrc, index), &mut buf[hl..len]);
        let tag = hmac_tag(auth, &buf[..len], &((index >> 16) as u32).to_be_bytes());
        let mki = self.mki_bytes();
        buf[len..len + mki.len()].copy_from_slice(mki);
        buf[len + mki.len()..len + mki.len() + tag_len].copy_from_slice(&tag[..*tag_len]);
        Ok(len + mki.len() + tag_len)
    }

    fn finish_protect(
        &self,
        pkts: &mut [(&mut [u8], usize)],
        results: &mut [Result<usize, SrtpError>],
        ks: &mut [[u8; 16]],
        pending: &[Pending],
    ) {
        let Transform::Cm {
            aes, auth, tag_len, ..
        } = &self.rtp
        else {
            return;
        };
        let total: usize = pending.iter().map(|p| (p.end - p.start).div_ceil(16)).sum();
        aes.encrypt_blocks(padded(ks, total));
        let flat = ks.as_flattened();
        let mki = self.mki_bytes();
        for p in pending {
            let buf = &mut *pkts[p.pkt].0;
            cipher::xor_in_place(&mut buf[p.start..p.end], &flat[p.ks_block * 16..]);
            let tag = hmac_tag(auth, &buf[..p.end], &p.roc.to_be_bytes());
            let e = p.end;
            buf[e..e + mki.len()].copy_from_slice(mki);
            buf[e + mki.len()..e + mki.len() + tag_len].copy_from_slice(&tag[..*tag_len]);
            results[p.pkt] = Ok(e + mki.len() + tag_len);
        }
    }

    /// Unprotects many SRTP packets; `results[i]` gets what `unprotect_rtp` would return for
    /// `pkts[i]`, packets being taken in order (so replay checks see earlier packets of the batch).
    /// Tags are verified packet by packet; decryption keystreams are generated together.
    pub fn unprotect_rtp_batch(
        &mut self,
        pkts: &mut [(&mut [u8], usize)],
        results: &mut [Result<usize, SrtpError>],
    ) -> usize {
        let n = pkts.len().min(results.len());
        if !matches!(self.rtp, Transform::Cm { .. }) {
            for (p, r) in pkts.iter_mut().zip(results.iter_mut()).take(n) {
                *r = self.unprotect_rtp(p.0, p.1);
            }
            return n;
        }
        let mut ks = [[0u8; 16]; BATCH_KS_BLOCKS];
        let mut pending = [Pending::default(); MAX_BATCH];
        let mut np = 0;
        let mut used = 0;
        for i in 0..n {
            let (buf, len) = (&*pkts[i].0, pkts[i].1);
            let checked = self.parse_srtp(buf, len).and_then(|(hl, ssrc, seq, end)| {
                let slot = self.find(ssrc)?;
                let index = self.rtp_index(slot, seq)?;
                if let Transform::Cm { auth, tag_len, .. } = &self.rtp {
                    let roc = ((index >> 16) as u32).to_be_bytes();
                    hmac_verify(auth, &buf[..end], &roc, &buf[len - tag_len..len])?;
                }
                Ok((hl, ssrc, end, slot, index))
            });
            let (hl, ssrc, end, slot, index) = match checked {
                Ok(v) => v,
                Err(e) => {
                    results[i] = Err(e);
                    continue;
                }
            };
            // Authentic: decryption cannot fail, so the state moves now for the next packets.
            self.commit_rtp(slot, ssrc, index);
            results[i] = Ok(end);
            let blocks = (end - hl).div_ceil(16);
            if used + blocks > BATCH_KS_BLOCKS || np == MAX_BATCH {
                self.finish_decrypt(pkts, &mut ks, &pending[..np]);
                np = 0;
                used = 0;
            }
            let Transform::Cm { aes, salt, .. } = &self.rtp else {
                continue;
            };
            let iv = cm_iv(salt, ssrc, index);
            if blocks > BATCH_KS_BLOCKS {
                ctr_xor(aes, iv, &mut pkts[i].0[hl..end]);
                continue;
            }
            cipher::fill_counters(&mut ks[used..used + blocks], u128::from_be_bytes(iv));
            pending[np] = Pending {
                pkt: i,
                start: hl,
                end,
                ks_block: used,
                roc: 0,
            };
            np += 1;
            used += blocks;
        }
        self.finish_decrypt(pkts, &mut ks, &pending[..np]);
        n
    }

    fn finish_decrypt(
        &self,
        pkts: &mut [(&mut [u8], usize)],
        ks: &mut [[u8; 16]],
        pending: &[Pending],
    ) {
        let Transform::Cm { aes, .. } = &self.rtp else {
            return;
        };
        let total: usize = pending.iter().map(|p| (p.end - p.start).div_ceil(16)).sum();
        aes.encrypt_blocks(padded(ks, total));
        let flat = ks.as_flattened();
        for p in pending {
            cipher::xor_in_place(&mut pkts[p.pkt].0[p.start..p.end], &flat[p.ks_block * 16..]);
        }
    }
}

/// Keystream blocks a batch shares: 4 KiB, enough for 23 G.711 packets or three 1200-byte ones.
const BATCH_KS_BLOCKS: usize = 256;

/// The `aes` crate's VAES-512 backend pipelines exactly 64 blocks at a time and runs anything
/// shorter one block after another, so a batch's keystream pass is rounded up to whole groups of
/// 64 (the extra blocks are unused; BATCH_KS_BLOCKS is a multiple of 64).
fn padded(ks: &mut [[u8; 16]], used: usize) -> &mut [[u8; 16]] {
    let n = used.div_ceil(64) * 64;
    let n = n.min(ks.len());
    &mut ks[..n]
}

impl Drop for SrtpContext {
    fn drop(&mut self) {
        if let Some((b, _)) = &mut self.mki {
            b.zeroize();
        }
    }
}

#[cfg(test)]
mod tests;
