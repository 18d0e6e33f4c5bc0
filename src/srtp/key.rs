//! Master keys: SDES `inline:` parameters (RFC 4568 section 6.1), generation, zeroization.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use zeroize::Zeroize;

use super::error::SrtpError;
use super::suite::{MAX_MKI_LEN, Suite};

/// Longest master key (AES-256) and salt (AES-CM, 112 bits) of any suite.
const MAX_KEY: usize = 32;
const MAX_SALT: usize = 14;

/// Peers disagree on padding of the `inline:` value (28-byte GCM keys need one `=`), so accept either.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A master key identifier: `value` sent big-endian in `len` bytes after the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mki {
    value: u64,
    len: u8,
}

impl Mki {
    /// `len` must be 1..=8 and `value` must fit in `len` bytes.
    pub fn new(value: u64, len: usize) -> Result<Mki, SrtpError> {
        if len == 0 || len > MAX_MKI_LEN || (len < 8 && value >> (8 * len) != 0) {
            return Err(SrtpError::BadSdes);
        }
        Ok(Mki {
            value,
            len: len as u8,
        })
    }

    pub fn value(&self) -> u64 {
        self.value
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Never true: an MKI has at least one byte. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Wire form: `len()` bytes, big-endian.
    pub fn to_bytes(&self) -> ([u8; MAX_MKI_LEN], usize) {
        let all = self.value.to_be_bytes();
        let mut out = [0u8; MAX_MKI_LEN];
        let n = self.len();
        out[..n].copy_from_slice(&all[MAX_MKI_LEN - n..]);
        (out, n)
    }
}

/// A master key and salt for one suite, with the optional SDES lifetime and MKI. Zeroized on drop.
#[derive(Clone)]
pub struct MasterKey {
    suite: Suite,
    key: [u8; MAX_KEY],
    salt: [u8; MAX_SALT],
    lifetime: Option<u64>,
    mki: Option<Mki>,
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.key.zeroize();
        self.salt.zeroize();
    }
}

impl std::fmt::Debug for MasterKey {
    // Never print key material, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("suite", &self.suite)
            .field("lifetime", &self.lifetime)
            .field("mki", &self.mki)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// A key from raw master key and salt bytes of exactly the suite's lengths.
    pub fn new(suite: Suite, key: &[u8], salt: &[u8]) -> Result<MasterKey, SrtpError> {
        if key.len() != suite.master_key_len() || salt.len() != suite.master_salt_len() {
            return Err(SrtpError::BadKey);
        }
        let mut mk = MasterKey {
            suite,
            key: [0; MAX_KEY],
            salt: [0; MAX_SALT],
            lifetime: None,
            mki: None,
        };
        mk.key[..key.len()].copy_from_slice(key);
        mk.salt[..salt.len()].copy_from_slice(salt);
        Ok(mk)
    }

    /// A fresh random key from the operating system's RNG.
    pub fn generate(suite: Suite) -> Result<MasterKey, SrtpError> {
        let mut key = [0u8; MAX_KEY];
        let mut salt = [0u8; MAX_SALT];
        let res = getrandom::fill(&mut key[..suite.master_key_len()])
            .and_then(|()| getrandom::fill(&mut salt[..suite.master_salt_len()]));
        let mk = res.map_err(|_| SrtpError::Rng).and_then(|()| {
            MasterKey::new(
                suite,
                &key[..suite.master_key_len()],
                &salt[..suite.master_salt_len()],
            )
        });
        key.zeroize();
        salt.zeroize();
        mk
    }

    /// Parses the key-params of an `a=crypto` line: `inline:<base64 key||salt>[|<lifetime>][|<mki>:<len>]`.
    /// The lifetime is decimal or `2^n`. Only one key is accepted (the `;`-separated multi-key form
    /// would need per-packet key selection by MKI, which no peer of ours uses).
    pub fn from_sdes_inline(suite: Suite, params: &str) -> Result<MasterKey, SrtpError> {
        let rest = params
            .trim()
            .strip_prefix("inline:")
            .ok_or(SrtpError::BadSdes)?;
        if rest.contains(';') {
            return Err(SrtpError::BadSdes);
        }
        let mut parts = rest.split('|');
        let b64 = parts.next().ok_or(SrtpError::BadSdes)?;
        let mut lifetime = None;
        let mut mki = None;
        for part in parts {
            if let Some((value, len)) = part.split_once(':') {
                if mki.is_some() {
                    return Err(SrtpError::BadSdes);
                }
                let value = parse_decimal(value)?;
                let len = usize::try_from(parse_decimal(len)?).map_err(|_| SrtpError::BadSdes)?;
                mki = Some(Mki::new(value, len)?);
            } else {
                // RFC 4568: the lifetime, when present, comes before the MKI.
                if lifetime.is_some() || mki.is_some() {
                    return Err(SrtpError::BadSdes);
                }
                lifetime = Some(parse_lifetime(part)?);
            }
        }
        let mut raw = [0u8; MAX_KEY + MAX_SALT + 3];
        let n = B64
            .decode_slice(b64.as_bytes(), &mut raw)
            .map_err(|_| SrtpError::BadKey);
        let res = n.and_then(|n| {
            let kl = suite.master_key_len();
            if n != kl + suite.master_salt_len() {
                return Err(SrtpError::BadKey);
            }
            MasterKey::new(suite, &raw[..kl], &raw[kl..n])
        });
        raw.zeroize();
        let mut mk = res?;
        mk.lifetime = lifetime;
        mk.mki = mki;
        Ok(mk)
    }

    /// The `inline:` key-params for an `a=crypto` line, the inverse of `from_sdes_inline`.
    pub fn to_sdes_inline(&self) -> String {
        let kl = self.suite.master_key_len();
        let sl = self.suite.master_salt_len();
        let mut raw = [0u8; MAX_KEY + MAX_SALT];
        raw[..kl].copy_from_slice(&self.key[..kl]);
        raw[kl..kl + sl].copy_from_slice(&self.salt[..sl]);
        let mut out = String::from("inline:");
        B64.encode_string(&raw[..kl + sl], &mut out);
        raw.zeroize();
        if let Some(l) = self.lifetime {
            if l.is_power_of_two() {
                out.push_str(&format!("|2^{}", l.trailing_zeros()));
            } else {
                out.push_str(&format!("|{l}"));
            }
        }
        if let Some(m) = self.mki {
            out.push_str(&format!("|{}:{}", m.value, m.len));
        }
        out
    }

    /// Sets the lifetime (in packets) this key may protect.
    pub fn with_lifetime(mut self, lifetime: Option<u64>) -> MasterKey {
        self.lifetime = lifetime;
        self
    }

    /// Sets the MKI sent with (and expected on) every packet.
    pub fn with_mki(mut self, mki: Option<Mki>) -> MasterKey {
        self.mki = mki;
        self
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    pub fn key(&self) -> &[u8] {
        &self.key[..self.suite.master_key_len()]
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt[..self.suite.master_salt_len()]
    }

    pub fn lifetime(&self) -> Option<u64> {
        self.lifetime
    }

    pub fn mki(&self) -> Option<Mki> {
        self.mki
    }
}

fn parse_decimal(s: &str) -> Result<u64, SrtpError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SrtpError::BadSdes);
    }
    s.parse().map_err(|_| SrtpError::BadSdes)
}

fn parse_lifetime(s: &str) -> Result<u64, SrtpError> {
    match s.strip_prefix("2^") {
        Some(exp) => {
            let e = parse_decimal(exp)?;
            // RFC 3711 caps SRTP at 2^48 packets; anything larger is nonsense from the peer.
            if e > 48 {
                return Err(SrtpError::BadSdes);
            }
            Ok(1u64 << e)
        }
        None => {
            let v = parse_decimal(s)?;
            if v == 0 {
                Err(SrtpError::BadSdes)
            } else {
                Ok(v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4568_example_parses_with_lifetime_and_mki() {
        // The key-params of RFC 4568 section 9.1's offer.
        let mk = MasterKey::from_sdes_inline(
            Suite::AesCm128HmacSha1_80,
            "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32",
        );
        assert_eq!(
            mk.unwrap_err(),
            SrtpError::BadSdes,
            "MKI length 32 exceeds what we carry"
        );
        let mk = MasterKey::from_sdes_inline(
            Suite::AesCm128HmacSha1_80,
            "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
        )
        .unwrap();
        assert_eq!(mk.lifetime(), Some(1 << 20));
        assert_eq!(mk.mki(), Some(Mki::new(1, 4).unwrap()));
        assert_eq!(mk.key().len(), 16);
        assert_eq!(mk.salt().len(), 14);
        assert_eq!(
            mk.to_sdes_inline(),
            "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"
        );
    }

    #[test]
    fn forms_without_lifetime_or_mki_and_decimal_lifetime() {
        let s = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        let mk = MasterKey::from_sdes_inline(Suite::AesCm128HmacSha1_32, s).unwrap();
        assert_eq!((mk.lifetime(), mk.mki()), (None, None));
        assert_eq!(mk.to_sdes_inline(), s);
        let mk =
            MasterKey::from_sdes_inline(Suite::AesCm128HmacSha1_32, &format!("{s}|1000")).unwrap();
        assert_eq!(mk.lifetime(), Some(1000));
        let mk =
            MasterKey::from_sdes_inline(Suite::AesCm128HmacSha1_32, &format!("{s}|7:1")).unwrap();
        assert_eq!(
            (mk.lifetime(), mk.mki().map(|m| (m.value(), m.len()))),
            (None, Some((7, 1)))
        );
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let s = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        let suite = Suite::AesCm128HmacSha1_80;
        assert_eq!(
            MasterKey::from_sdes_inline(suite, "PS1uQ").unwrap_err(),
            SrtpError::BadSdes
        );
        assert_eq!(
            MasterKey::from_sdes_inline(suite, "inline:!!!!").unwrap_err(),
            SrtpError::BadKey
        );
        // 30 bytes is the wrong length for AES-256.
        assert_eq!(
            MasterKey::from_sdes_inline(Suite::AesCm256HmacSha1_80, s).unwrap_err(),
            SrtpError::BadKey
        );
        for bad in [
            "|2^49",
            "|0",
            "|x",
            "|1:0",
            "|256:1",
            "|1:4|2^20",
            "|2^20|2^20",
            "|:4",
            ";inline:abc",
        ] {
            assert!(
                MasterKey::from_sdes_inline(suite, &format!("{s}{bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn generated_keys_round_trip_through_sdes_for_every_suite() {
        for suite in Suite::ALL {
            let mk = MasterKey::generate(suite)
                .unwrap()
                .with_lifetime(Some(1 << 31))
                .with_mki(Some(Mki::new(3, 2).unwrap()));
            let text = mk.to_sdes_inline();
            let back = MasterKey::from_sdes_inline(suite, &text).unwrap();
            assert_eq!((back.key(), back.salt()), (mk.key(), mk.salt()), "{suite}");
            assert_eq!((back.lifetime(), back.mki()), (mk.lifetime(), mk.mki()));
            assert_ne!(mk.key(), &[0u8; 32][..suite.master_key_len()]);
        }
        // GCM keys (28 / 44 bytes) need padding; unpadded input is accepted too.
        let mk = MasterKey::generate(Suite::AeadAes128Gcm).unwrap();
        let text = mk.to_sdes_inline();
        assert!(text.ends_with('='));
        assert!(
            MasterKey::from_sdes_inline(Suite::AeadAes128Gcm, text.trim_end_matches('=')).is_ok()
        );
    }

    #[test]
    fn mki_wire_form_is_big_endian_in_len_bytes() {
        let (b, n) = Mki::new(0x0102, 4).unwrap().to_bytes();
        assert_eq!(&b[..n], &[0, 0, 1, 2]);
        assert!(Mki::new(0x100, 1).is_err());
        assert!(Mki::new(u64::MAX, 8).is_ok());
    }
}
