//! AES in counter mode over the `aes` crate's block function (AES-NI / VAES chosen at run time),
//! and the RFC 3711 section 4.3 key derivation built on it.
//!
//! CTR is done here rather than with the `ctr` crate so that one expanded key serves every packet
//! (no per-packet key schedule or cipher clone) and so that the batch path can put counter blocks
//! of several packets through one `encrypt_blocks` call, which the `aes` crate pipelines.

use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use zeroize::Zeroize;

use super::error::SrtpError;

/// Counter blocks per `encrypt_blocks` call. The `aes` crate's VAES-512 backend pipelines exactly 64
/// blocks and runs any shorter tail one block at a time, so every pass is a full 64 blocks even for
/// a 10-block G.711 payload: measured faster than the serial tail (the spare blocks are unused).
pub(crate) const KS_BLOCKS: usize = 64;

/// An expanded AES key of any of the three sizes. The `aes` types zeroize their round keys on drop.
pub(crate) enum Aes {
    A128(aes::Aes128),
    A192(aes::Aes192),
    A256(aes::Aes256),
}

impl Aes {
    pub(crate) fn new(key: &[u8]) -> Result<Aes, SrtpError> {
        Ok(match key.len() {
            16 => Aes::A128(aes::Aes128::new_from_slice(key).map_err(|_| SrtpError::BadKey)?),
            24 => Aes::A192(aes::Aes192::new_from_slice(key).map_err(|_| SrtpError::BadKey)?),
            32 => Aes::A256(aes::Aes256::new_from_slice(key).map_err(|_| SrtpError::BadKey)?),
            _ => return Err(SrtpError::BadKey),
        })
    }

    /// Encrypts the blocks in place (the keystream for CTR).
    #[inline]
    pub(crate) fn encrypt_blocks(&self, blocks: &mut [[u8; 16]]) {
        let blocks = Array::cast_slice_from_core_mut(blocks);
        match self {
            Aes::A128(c) => c.encrypt_blocks(blocks),
            Aes::A192(c) => c.encrypt_blocks(blocks),
            Aes::A256(c) => c.encrypt_blocks(blocks),
        }
    }
}

/// Writes `n` consecutive counter blocks starting at `ctr` into `out`.
#[inline]
pub(crate) fn fill_counters(out: &mut [[u8; 16]], ctr: u128) {
    let mut c = ctr;
    for b in out {
        *b = c.to_be_bytes();
        c = c.wrapping_add(1);
    }
}

/// XORs `data` with `ks` (which is at least as long).
#[inline]
pub(crate) fn xor_in_place(data: &mut [u8], ks: &[u8]) {
    let ks = &ks[..data.len().min(ks.len())];
    let whole = ks.len() / 8 * 8;
    let (d_head, d_tail) = data.split_at_mut(whole);
    let (k_head, k_tail) = ks.split_at(whole);
    for (d, k) in d_head.chunks_exact_mut(8).zip(k_head.chunks_exact(8)) {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(d);
        b.copy_from_slice(k);
        d.copy_from_slice(&(u64::from_ne_bytes(a) ^ u64::from_ne_bytes(b)).to_ne_bytes());
    }
    for (d, k) in d_tail.iter_mut().zip(k_tail) {
        *d ^= k;
    }
}

/// AES-CTR (RFC 3711 section 4.1.1 "AES-CM") over `data` starting at counter block `iv`.
pub(crate) fn ctr_xor(aes: &Aes, iv: [u8; 16], data: &mut [u8]) {
    let mut ks = [[0u8; 16]; KS_BLOCKS];
    let mut ctr = u128::from_be_bytes(iv);
    for chunk in data.chunks_mut(KS_BLOCKS * 16) {
        let n = chunk.len().div_ceil(16);
        fill_counters(&mut ks[..n], ctr);
        aes.encrypt_blocks(&mut ks);
        xor_in_place(chunk, ks.as_flattened());
        ctr = ctr.wrapping_add(n as u128);
    }
    // The keystream is not wiped: it equals plaintext XOR ciphertext of a packet whose plaintext
    // the caller holds anyway, and says nothing about the key. Wiping it cost more than the AES.
}

/// SRTP/SRTCP key derivation labels (RFC 3711 section 4.3.1).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Label {
    RtpEncryption = 0,
    RtpAuth = 1,
    RtpSalt = 2,
    RtcpEncryption = 3,
    RtcpAuth = 4,
    RtcpSalt = 5,
}

/// The AES-CM PRF with key derivation rate 0: `out = AES-CM(master_key, (master_salt XOR label<<48) << 16)`.
/// A 96-bit GCM master salt is taken as the high bits of the 112-bit salt field, the rest zero, as
/// RFC 7714 section 11 and libsrtp do.
pub(crate) fn derive(
    master_key: &[u8],
    master_salt: &[u8],
    label: Label,
    out: &mut [u8],
) -> Result<(), SrtpError> {
    if master_salt.len() > 14 || out.len() > 32 {
        return Err(SrtpError::BadKey);
    }
    let aes = Aes::new(master_key)?;
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label as u8;
    // At most 32 bytes (an AES-256 key): two counter blocks, wiped after since they are key material.
    let mut blocks = [[0u8; 16]; 2];
    fill_counters(&mut blocks, u128::from_be_bytes(iv));
    aes.encrypt_blocks(&mut blocks);
    out.copy_from_slice(&blocks.as_flattened()[..out.len()]);
    blocks.as_flattened_mut().zeroize();
    iv.zeroize();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::test_util::hex;

    fn kdf_check(mk: &str, ms: &str, enc: &str, salt: &str, auth: &str) {
        let (mk, ms) = (hex(mk), hex(ms));
        let mut out = vec![0u8; enc.len() / 2];
        derive(&mk, &ms, Label::RtpEncryption, &mut out).unwrap();
        assert_eq!(out, hex(enc));
        let mut out = vec![0u8; 14];
        derive(&mk, &ms, Label::RtpSalt, &mut out).unwrap();
        assert_eq!(out, hex(salt));
        let mut out = vec![0u8; 20];
        derive(&mk, &ms, Label::RtpAuth, &mut out).unwrap();
        assert_eq!(out, hex(auth));
    }

    /// RFC 3711 appendix B.3.
    #[test]
    fn rfc3711_b3_key_derivation() {
        kdf_check(
            "E1F97A0D3E018BE0D64FA32C06DE4139",
            "0EC675AD498AFEEBB6960B3AABE6",
            "C61E7A93744F39EE10734AFE3FF7A087",
            "30CBBC08863D8C85D49DB34A9AE1",
            "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4",
        );
    }

    /// RFC 6188 section 7.2 (AES-256 KDF).
    #[test]
    fn rfc6188_aes256_key_derivation() {
        kdf_check(
            "f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6",
            "3b04803de51ee7c96423ab5b78d2",
            "5ba1064e30ec51613cad926c5a28ef731ec7fb397f70a960653caf06554cd8c4",
            "fa31791685ca444a9e07c6c64e93",
            "fd9c32d39ed5fbb5a9dc96b30818454d1313dc05",
        );
    }

    /// RFC 6188 section 7.4 (AES-192 KDF).
    #[test]
    fn rfc6188_aes192_key_derivation() {
        kdf_check(
            "73edc66c4fa15776fb57f9505c17136550ffda71f3e8e5f1",
            "c8522f3acd4ce86d5add78edbb11",
            "31874736a8f1143870c26e4857d8a5b2c4a354407faadabb",
            "2372b82d639b6d8503a47adc0a6c",
            "355b10973cd95b9eacf4061c7e1a7151e7cfbfcb",
        );
    }

    /// Keystream of the session key and salt with SSRC 0 and index 0: the IV is salt<<16.
    fn keystream(key: &str, salt: &str, blocks: usize) -> Vec<u8> {
        let aes = Aes::new(&hex(key)).unwrap();
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&hex(salt));
        let mut out = vec![0u8; blocks * 16];
        ctr_xor(&aes, iv, &mut out);
        out
    }

    /// RFC 3711 appendix B.2: the first blocks of the AES-CM keystream.
    #[test]
    fn rfc3711_b2_keystream() {
        let ks = keystream(
            "2B7E151628AED2A6ABF7158809CF4F3C",
            "F0F1F2F3F4F5F6F7F8F9FAFBFCFD",
            3,
        );
        assert_eq!(
            ks,
            hex(
                "E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB 41E95B3BB0A2E8DD477901E4FCA894C0"
            )
        );
    }

    /// RFC 6188 sections 7.1 and 7.3: first keystream blocks for AES-256 and AES-192.
    #[test]
    fn rfc6188_keystreams() {
        let ks = keystream(
            "57f82fe3613fd170a85ec93c40b1f0922ec4cb0dc025b58272147cc438944a98",
            "f0f1f2f3f4f5f6f7f8f9fafbfcfd",
            2,
        );
        assert_eq!(
            ks,
            hex("92bdd28a93c3f52511c677d08b5515a49da71b2378a854f67050756ded165bac")
        );
        let ks = keystream(
            "eab234764e517b2d3d160d587d8c86219740f65f99b6bcf7",
            "f0f1f2f3f4f5f6f7f8f9fafbfcfd",
            2,
        );
        assert_eq!(
            ks,
            hex("35096cba4610028dc1b57503804ce37c5de986291dcce161d5165ec4568f5c9a")
        );
    }

    #[test]
    fn long_input_crosses_keystream_chunks_consistently() {
        let aes = Aes::new(&[9u8; 16]).unwrap();
        let iv = [3u8; 16];
        let mut whole = vec![0u8; KS_BLOCKS * 16 * 2 + 7];
        ctr_xor(&aes, iv, &mut whole);
        // Same stream computed block by block.
        for (ctr, chunk) in (u128::from_be_bytes(iv)..).zip(whole.chunks(16)) {
            let mut b = [ctr.to_be_bytes()];
            aes.encrypt_blocks(&mut b);
            assert_eq!(chunk, &b[0][..chunk.len()]);
        }
    }
}
