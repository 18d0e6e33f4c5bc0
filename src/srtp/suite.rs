//! The crypto suites of RFC 4568 (SDES), RFC 6188 and RFC 7714 and their sizes.

/// Longest MKI this engine carries, in bytes (RFC 4568 allows 1..=128; real offers use 1..=4).
pub const MAX_MKI_LEN: usize = 8;

/// Largest trailer any suite appends to an RTCP packet: GCM tag 16 + SRTCP index 4 + MKI.
pub const MAX_OVERHEAD: usize = 16 + 4 + MAX_MKI_LEN;

/// An SRTP crypto suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    AesCm192HmacSha1_80,
    AesCm192HmacSha1_32,
    AesCm256HmacSha1_80,
    AesCm256HmacSha1_32,
    AeadAes128Gcm,
    AeadAes256Gcm,
}

impl Suite {
    /// Every suite, in SDES preference order (strongest AEAD last so that offers list common ones first).
    pub const ALL: [Suite; 8] = [
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
        Suite::AesCm192HmacSha1_80,
        Suite::AesCm192HmacSha1_32,
        Suite::AesCm256HmacSha1_80,
        Suite::AesCm256HmacSha1_32,
        Suite::AeadAes128Gcm,
        Suite::AeadAes256Gcm,
    ];

    /// The suite named in an SDP `a=crypto` line (case-sensitive, as RFC 4568 registers them).
    pub fn from_sdes_name(name: &str) -> Option<Suite> {
        Self::ALL.into_iter().find(|s| s.sdes_name() == name)
    }

    /// The SDES name of the suite.
    pub fn sdes_name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AesCm192HmacSha1_80 => "AES_192_CM_HMAC_SHA1_80",
            Suite::AesCm192HmacSha1_32 => "AES_192_CM_HMAC_SHA1_32",
            Suite::AesCm256HmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            Suite::AesCm256HmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Suite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// Master (and session) encryption key length in bytes.
    pub fn master_key_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 | Suite::AeadAes128Gcm => 16,
            Suite::AesCm192HmacSha1_80 | Suite::AesCm192HmacSha1_32 => 24,
            Suite::AesCm256HmacSha1_80 | Suite::AesCm256HmacSha1_32 | Suite::AeadAes256Gcm => 32,
        }
    }

    /// Master (and session) salt length in bytes: 112 bits for AES-CM, 96 bits for GCM.
    pub fn master_salt_len(self) -> usize {
        if self.is_aead() { 12 } else { 14 }
    }

    /// Authentication tag length appended to SRTP packets.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80
            | Suite::AesCm192HmacSha1_80
            | Suite::AesCm256HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32
            | Suite::AesCm192HmacSha1_32
            | Suite::AesCm256HmacSha1_32 => 4,
            Suite::AeadAes128Gcm | Suite::AeadAes256Gcm => 16,
        }
    }

    /// Authentication tag length appended to SRTCP packets: the `_32` suites still use 80 bits for
    /// SRTCP (RFC 4568 section 6.2.1).
    pub fn rtcp_tag_len(self) -> usize {
        if self.is_aead() { 16 } else { 10 }
    }

    /// True for the AEAD (AES-GCM) suites of RFC 7714.
    pub fn is_aead(self) -> bool {
        matches!(self, Suite::AeadAes128Gcm | Suite::AeadAes256Gcm)
    }

    /// Bytes `protect_rtp` adds to a packet with an MKI of `mki_len` bytes (0 for none).
    pub fn max_rtp_overhead(self, mki_len: usize) -> usize {
        self.rtp_tag_len() + mki_len
    }

    /// Bytes `protect_rtcp` adds: tag, 4-byte E-bit + SRTCP index, and the MKI.
    pub fn max_rtcp_overhead(self, mki_len: usize) -> usize {
        self.rtcp_tag_len() + 4 + mki_len
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.sdes_name())
    }
}
