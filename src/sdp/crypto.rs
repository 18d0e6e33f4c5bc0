//! SDES `a=crypto` (RFC 4568): parse, format, generate keys from a caller-supplied source.

use super::SdpError;

/// SRTP crypto suites by their SDES names (RFC 4568, RFC 6188, RFC 7714).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CryptoSuite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    Aes256CmHmacSha1_80,
    Aes256CmHmacSha1_32,
    AeadAes128Gcm,
    AeadAes256Gcm,
}

impl CryptoSuite {
    pub const ALL: [CryptoSuite; 6] = [
        CryptoSuite::AesCm128HmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32,
        CryptoSuite::Aes256CmHmacSha1_80,
        CryptoSuite::Aes256CmHmacSha1_32,
        CryptoSuite::AeadAes128Gcm,
        CryptoSuite::AeadAes256Gcm,
    ];

    pub fn sdes_name(self) -> &'static str {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            CryptoSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            CryptoSuite::Aes256CmHmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            CryptoSuite::Aes256CmHmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            CryptoSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            CryptoSuite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    pub fn from_sdes_name(s: &str) -> Option<CryptoSuite> {
        CryptoSuite::ALL.into_iter().find(|c| c.sdes_name() == s)
    }

    /// Master key + master salt length in bytes (the `inline:` key decodes to this many).
    pub fn key_salt_len(self) -> usize {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 | CryptoSuite::AesCm128HmacSha1_32 => 30,
            CryptoSuite::Aes256CmHmacSha1_80 | CryptoSuite::Aes256CmHmacSha1_32 => 46,
            CryptoSuite::AeadAes128Gcm => 28,
            CryptoSuite::AeadAes256Gcm => 44,
        }
    }
}

/// Random bytes for keys; the caller supplies a CSPRNG so this code stays pure.
pub trait KeySource {
    fn fill(&mut self, out: &mut [u8]);
}

/// One direction's keying as our output: the suite name and the base64 key||salt. This is what
/// `srtp::Suite::from_sdes_name` and `srtp::MasterKey::from_sdes_inline` take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoKey {
    pub suite: String,
    pub inline_key: String,
}

/// `a=crypto:<tag> <suite> inline:<key||salt>[|<lifetime>][|<mki>:<len>][;inline:...] [<session params>]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttr {
    pub tag: u32,
    pub suite: String,
    /// Base64 key||salt of the first key parameter.
    pub key_b64: String,
    pub lifetime: Option<String>,
    pub mki: Option<String>,
    /// More than one key parameter (we use only the first and so refuse those with MKI).
    pub more_keys: bool,
    pub session_params: Vec<String>,
}

impl CryptoAttr {
    /// Parses the value after `a=crypto:`.
    pub fn parse(value: &str, line: usize) -> Result<CryptoAttr, SdpError> {
        let bad = SdpError::BadCrypto { line };
        let mut f = value.split([' ', '\t']).filter(|s| !s.is_empty());
        let tag: u32 = f.next().and_then(|t| t.parse().ok()).ok_or(bad.clone())?;
        if tag > 999_999_999 {
            return Err(bad);
        }
        let suite = f.next().ok_or(bad.clone())?.to_string();
        let keyp = f.next().ok_or(bad.clone())?;
        let session_params = f.map(str::to_string).collect();
        let mut keys = keyp.split(';');
        let first = keys.next().ok_or(bad.clone())?;
        let more_keys = keys.next().is_some();
        let inline = first.strip_prefix("inline:").ok_or(bad.clone())?;
        let mut parts = inline.split('|');
        let key_b64 = parts.next().unwrap_or("").to_string();
        if key_b64.is_empty() || base64_decode(&key_b64).is_none() {
            return Err(bad);
        }
        let mut lifetime = None;
        let mut mki = None;
        for p in parts {
            if p.contains(':') {
                mki = Some(p.to_string());
            } else {
                lifetime = Some(p.to_string());
            }
        }
        Ok(CryptoAttr {
            tag,
            suite,
            key_b64,
            lifetime,
            mki,
            more_keys,
            session_params,
        })
    }

    /// The attribute line without `a=`.
    pub fn to_attr(&self) -> String {
        let mut s = format!("crypto:{} {} inline:{}", self.tag, self.suite, self.key_b64);
        if let Some(l) = &self.lifetime {
            s.push('|');
            s.push_str(l);
        }
        if let Some(m) = &self.mki {
            s.push('|');
            s.push_str(m);
        }
        for p in &self.session_params {
            s.push(' ');
            s.push_str(p);
        }
        s
    }

    /// A known suite whose key decodes to the right length, single key, no MKI, no session
    /// parameters we would have to honour (UNENCRYPTED_SRTP etc. are refused).
    pub fn usable_suite(&self) -> Option<CryptoSuite> {
        let s = CryptoSuite::from_sdes_name(&self.suite)?;
        let key = base64_decode(&self.key_b64)?;
        (key.len() == s.key_salt_len()
            && self.mki.is_none()
            && !self.more_keys
            && self.session_params.is_empty())
        .then_some(s)
    }

    pub fn key(&self) -> CryptoKey {
        CryptoKey {
            suite: self.suite.clone(),
            inline_key: self.key_b64.clone(),
        }
    }

    /// A fresh attribute with a key from `keys`.
    pub fn generate(tag: u32, suite: CryptoSuite, keys: &mut dyn KeySource) -> CryptoAttr {
        let mut k = vec![0u8; suite.key_salt_len()];
        keys.fill(&mut k);
        CryptoAttr {
            tag,
            suite: suite.sdes_name().to_string(),
            key_b64: base64_encode(&k),
            lifetime: None,
            mki: None,
            more_keys: false,
            session_params: Vec::new(),
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [
            c[0],
            c.get(1).copied().unwrap_or(0),
            c.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(B64[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on any invalid character.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 6).then_some(out)
}
