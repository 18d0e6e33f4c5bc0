use super::*;
use crate::srtp::test_util::hex;

const GCM_KEY_128: &str = "000102030405060708090a0b0c0d0e0f";
const GCM_KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const GCM_SALT: &str = "517569642070726f2071756f";
const RFC7714_RTP: &str = "8040f17b8041f8d35501a0b247616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573";
const RFC7714_RTCP: &str = "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";

fn gcm_ctx(suite: Suite, key: &str) -> SrtpContext {
    let (k, s) = (hex(key), hex(GCM_SALT));
    SrtpContext::from_session_keys(suite, (&k, &s, &[]), (&k, &s, &[]))
}

fn run(ctx: &mut SrtpContext, input: &str, rtcp: bool, protect: bool) -> Vec<u8> {
    let input = hex(input);
    let mut buf = vec![0u8; input.len() + 64];
    buf[..input.len()].copy_from_slice(&input);
    let n = match (rtcp, protect) {
        (false, true) => ctx.protect_rtp(&mut buf, input.len()),
        (false, false) => ctx.unprotect_rtp(&mut buf, input.len()),
        (true, true) => ctx.protect_rtcp(&mut buf, input.len()),
        (true, false) => ctx.unprotect_rtcp(&mut buf, input.len()),
    }
    .unwrap();
    buf.truncate(n);
    buf
}

/// RFC 7714 section 16.1.1 and 16.2.1: AEAD_AES_128_GCM / AEAD_AES_256_GCM SRTP, ROC 0.
#[test]
fn rfc7714_srtp_vectors() {
    for (suite, key, expect) in [
        (
            Suite::AeadAes128Gcm,
            GCM_KEY_128,
            "8040f17b8041f8d35501a0b2f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce",
        ),
        (
            Suite::AeadAes256Gcm,
            GCM_KEY_256,
            "8040f17b8041f8d35501a0b232b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3b50b2a0276ffae0f1ba63799b87b7aa3db36dfffd6b0f9bb7878d7a76c13",
        ),
    ] {
        let mut tx = gcm_ctx(suite, key);
        assert_eq!(
            run(&mut tx, RFC7714_RTP, false, true),
            hex(expect),
            "{suite}"
        );
        let mut rx = gcm_ctx(suite, key);
        assert_eq!(
            run(&mut rx, expect, false, false),
            hex(RFC7714_RTP),
            "{suite}"
        );
    }
}

/// RFC 7714 section 17.1 and 17.2: SRTCP with index 0x5d4.
#[test]
fn rfc7714_srtcp_vectors() {
    for (suite, key, expect) in [
        (
            Suite::AeadAes128Gcm,
            GCM_KEY_128,
            "81c8000d4d61727363e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275bc84aa45896cf4d2fc5abf87245d9eade800005d4",
        ),
        (
            Suite::AeadAes256Gcm,
            GCM_KEY_256,
            "81c8000d4d617273d50ae4d1f5ce5d304ba297e47d470c282c3ece5dbffe0a50a2eaa5c1110555be8415f658c61de0476f1b6fad1d1eb30c4446839f57ff6f6cb26ac3be800005d4",
        ),
    ] {
        let mut tx = gcm_ctx(suite, key);
        // Make the next SRTCP index 0x5d4, as in the RFC.
        tx.slot_mut(Slot::Free, 0x4d61_7273).rtcp_tx_index = 0x5d3;
        assert_eq!(
            run(&mut tx, RFC7714_RTCP, true, true),
            hex(expect),
            "{suite}"
        );
        let mut rx = gcm_ctx(suite, key);
        assert_eq!(
            run(&mut rx, expect, true, false),
            hex(RFC7714_RTCP),
            "{suite}"
        );
        assert_eq!(
            rx.stream(0x4d61_7273).and_then(StreamState::rtcp_rx_index),
            Some(0x5d4)
        );
    }
}

#[test]
fn iv_layouts() {
    let salt: [u8; 12] = hex(GCM_SALT).try_into().unwrap();
    assert_eq!(
        gcm_rtp_iv(&salt, 0x5501_a0b2, 0xf17b).to_vec(),
        hex("51753c6580c2726f20718414")
    );
    assert_eq!(
        gcm_rtcp_iv(&salt, 0x4d61_7273, 0x5d4).to_vec(),
        hex("517524055203726f207170bb")
    );
    assert_eq!(
        cm_iv(&[0; 14], 0x0102_0304, 0x5566_7788_99aa).to_vec(),
        hex("00000000010203045566778899aa0000")
    );
}

#[test]
fn index_estimation_follows_rfc3711_3_3_1() {
    // Around the wrap: highest 65535 (ROC 0), next 0 is ROC 1.
    assert_eq!(estimate_index(0xffff, 0), Ok(0x1_0000));
    // Late packet from before the wrap after it: ROC-1.
    assert_eq!(estimate_index(0x1_0002, 0xfffe), Ok(0xfffe));
    assert_eq!(estimate_index(0x5_1000, 0x1001), Ok(0x5_1001));
    // A packet "before" index 0 is refused, not wrapped.
    assert_eq!(estimate_index(0x10, 0xfff0), Err(SrtpError::Replayed));
    assert_eq!(
        estimate_index(0xffff_ffff_ffff, 0x0001),
        Err(SrtpError::KeyExhausted)
    );
}

fn rtp(seq: u16, ssrc: u32, payload: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&1234u32.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload).map(|i| (i as u8).wrapping_mul(7)));
    p
}

fn pair(suite: Suite, cfg: Config) -> (SrtpContext, SrtpContext) {
    let mk = MasterKey::generate(suite).unwrap();
    (
        SrtpContext::new(suite, &mk, cfg).unwrap(),
        SrtpContext::new(suite, &mk, cfg).unwrap(),
    )
}

#[test]
fn round_trip_every_suite_across_roc_wrap_with_and_without_mki() {
    for suite in Suite::ALL {
        for mki in [None, Some(Mki::new(0xab, 2).unwrap())] {
            let cfg = Config {
                mki,
                ..Config::default()
            };
            let (mut tx, mut rx) = pair(suite, cfg);
            for (k, seq) in (65530u16..=65535).chain(0..6).enumerate() {
                let p = rtp(seq, 0x1111, 20 + k * 13);
                let mut buf = p.clone();
                buf.resize(p.len() + tx.rtp_overhead(), 0);
                let n = tx.protect_rtp(&mut buf, p.len()).unwrap();
                assert_eq!(n, p.len() + tx.rtp_overhead());
                assert_ne!(&buf[12..p.len()], &p[12..]);
                assert_eq!(rx.unprotect_rtp(&mut buf, n), Ok(p.len()), "{suite} {seq}");
                assert_eq!(&buf[..p.len()], &p[..]);
            }
            assert_eq!(rx.stream(0x1111).and_then(StreamState::roc), Some(1));
            assert_eq!(
                rx.stream(0x1111).and_then(StreamState::highest_seq),
                Some(5)
            );
            for i in 0..3 {
                let p = vec![0x81, 0xc8, 0, 6, 0, 0, 0x11, 0x11, 1, 2, 3, 4, 5, 6, 7, i];
                let mut buf = p.clone();
                buf.resize(p.len() + tx.rtcp_overhead(), 0);
                let n = tx.protect_rtcp(&mut buf, p.len()).unwrap();
                assert_eq!(rx.unprotect_rtcp(&mut buf, n), Ok(p.len()), "{suite}");
                assert_eq!(&buf[..p.len()], &p[..]);
            }
            assert_eq!(
                rx.stream(0x1111).and_then(StreamState::rtcp_rx_index),
                Some(3)
            );
        }
    }
}

#[test]
fn rejections_have_their_own_error_and_leave_state_unchanged() {
    for suite in Suite::ALL {
        let (mut tx, mut rx) = pair(suite, Config::default());
        let mut protected = Vec::new();
        for seq in [100u16, 101, 102] {
            let p = rtp(seq, 7, 160);
            let mut buf = p.clone();
            buf.resize(p.len() + tx.rtp_overhead(), 0);
            let n = tx.protect_rtp(&mut buf, p.len()).unwrap();
            buf.truncate(n);
            protected.push(buf);
        }
        let mut b = protected[0].clone();
        let bl = b.len();
        assert_eq!(rx.unprotect_rtp(&mut b, bl), Ok(172));
        let snapshot = rx.stream(7).cloned();

        let mut tampered = protected[1].clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            rx.unprotect_rtp(&mut tampered, last + 1),
            Err(SrtpError::AuthFailed),
            "{suite}"
        );
        let mut tampered = protected[1].clone();
        tampered[20] ^= 0x80;
        assert_eq!(
            rx.unprotect_rtp(&mut tampered, last + 1),
            Err(SrtpError::AuthFailed),
            "{suite}"
        );
        assert_eq!(rx.stream(7).cloned(), snapshot);

        let mut replay = protected[0].clone();
        let rl = replay.len();
        assert_eq!(rx.unprotect_rtp(&mut replay, rl), Err(SrtpError::Replayed));
        assert_eq!(rx.stream(7).cloned(), snapshot);

        let mut short = protected[1].clone();
        let overhead = rx.rtp_overhead();
        assert_eq!(
            rx.unprotect_rtp(&mut short, 11 + overhead),
            Err(SrtpError::TooShort)
        );
        assert_eq!(rx.stream(7).cloned(), snapshot);

        // A forged packet with a far-ahead sequence number must not move the ROC.
        let mut forged = protected[1].clone();
        forged[2] = 0x70;
        assert_eq!(
            rx.unprotect_rtp(&mut forged, last + 1),
            Err(SrtpError::AuthFailed)
        );
        assert_eq!(rx.stream(7).cloned(), snapshot);

        // The next valid packet is accepted and moves the state as usual.
        let mut next = protected[1].clone();
        assert_eq!(rx.unprotect_rtp(&mut next, last + 1), Ok(172));
        let s = rx.stream(7).unwrap();
        assert_eq!((s.roc(), s.highest_seq()), (Some(0), Some(101)));
        let mut next = protected[2].clone();
        assert_eq!(rx.unprotect_rtp(&mut next, last + 1), Ok(172));
    }
}

#[test]
fn ssrc_table_is_bounded_and_slots_are_reusable() {
    let (mut tx, mut rx) = pair(
        Suite::AesCm128HmacSha1_80,
        Config {
            ssrc_capacity: 2,
            ..Config::default()
        },
    );
    let send = |tx: &mut SrtpContext, ssrc| {
        let p = rtp(1, ssrc, 10);
        let mut buf = p.clone();
        buf.resize(64, 0);
        let n = tx.protect_rtp(&mut buf, p.len());
        (buf, n)
    };
    let (mut a, na) = send(&mut tx, 1);
    let (mut b, nb) = send(&mut tx, 2);
    assert_eq!(send(&mut tx, 3).1, Err(SrtpError::UnknownSsrc));
    assert_eq!(rx.unprotect_rtp(&mut a, na.unwrap()), Ok(22));
    assert_eq!(rx.unprotect_rtp(&mut b, nb.unwrap()), Ok(22));
    assert!(tx.remove_ssrc(1));
    let (mut c, nc) = send(&mut tx, 3);
    assert_eq!(
        rx.unprotect_rtp(&mut c.clone(), nc.unwrap()),
        Err(SrtpError::UnknownSsrc)
    );
    assert!(rx.remove_ssrc(1));
    assert_eq!(rx.unprotect_rtp(&mut c, nc.unwrap()), Ok(22));
}

#[test]
fn config_and_buffer_errors() {
    let mk = MasterKey::generate(Suite::AesCm128HmacSha1_80).unwrap();
    for cfg in [
        Config {
            replay_window: 0,
            ..Config::default()
        },
        Config {
            replay_window: 1025,
            ..Config::default()
        },
        Config {
            ssrc_capacity: 0,
            ..Config::default()
        },
    ] {
        assert_eq!(
            SrtpContext::new(Suite::AesCm128HmacSha1_80, &mk, cfg).unwrap_err(),
            SrtpError::BadConfig
        );
    }
    assert_eq!(
        SrtpContext::new(Suite::AesCm256HmacSha1_80, &mk, Config::default()).unwrap_err(),
        SrtpError::BadKey
    );
    let mut tx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &mk, Config::default()).unwrap();
    let p = rtp(1, 1, 10);
    let mut exact = p.clone();
    assert_eq!(
        tx.protect_rtp(&mut exact, p.len()),
        Err(SrtpError::BufferTooSmall)
    );
    let mut bad = p.clone();
    bad[0] = 0x40;
    bad.resize(64, 0);
    assert_eq!(tx.protect_rtp(&mut bad, p.len()), Err(SrtpError::Malformed));
    // CSRC count claims more header than there is.
    let mut bad = p.clone();
    bad[0] = 0x8f;
    bad.resize(64, 0);
    assert_eq!(tx.protect_rtp(&mut bad, p.len()), Err(SrtpError::Malformed));
    assert_eq!(tx.stream(1), None, "refused packets create no stream");
}

#[test]
fn mki_is_sent_and_checked() {
    let mk = MasterKey::generate(Suite::AesCm128HmacSha1_32)
        .unwrap()
        .with_mki(Some(Mki::new(0x0102, 2).unwrap()));
    let mut tx = SrtpContext::new(Suite::AesCm128HmacSha1_32, &mk, Config::default()).unwrap();
    let other = Config {
        mki: Some(Mki::new(9, 2).unwrap()),
        ..Config::default()
    };
    let mut rx_other = SrtpContext::new(Suite::AesCm128HmacSha1_32, &mk, other).unwrap();
    let mut rx = SrtpContext::new(Suite::AesCm128HmacSha1_32, &mk, Config::default()).unwrap();
    let p = rtp(5, 5, 30);
    let mut buf = p.clone();
    buf.resize(100, 0);
    let n = tx.protect_rtp(&mut buf, p.len()).unwrap();
    assert_eq!(n, p.len() + 2 + 4);
    assert_eq!(&buf[p.len()..p.len() + 2], &[1, 2]);
    assert_eq!(
        rx_other.unprotect_rtp(&mut buf.clone(), n),
        Err(SrtpError::MkiMismatch)
    );
    assert_eq!(rx.unprotect_rtp(&mut buf, n), Ok(p.len()));
}

#[test]
fn lifetime_limits_protection() {
    let mk = MasterKey::generate(Suite::AesCm128HmacSha1_80)
        .unwrap()
        .with_lifetime(Some(2));
    let mut tx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &mk, Config::default()).unwrap();
    for (seq, expect_ok) in [(1u16, true), (2, true), (3, false)] {
        let p = rtp(seq, 1, 10);
        let mut buf = p.clone();
        buf.resize(64, 0);
        assert_eq!(tx.protect_rtp(&mut buf, p.len()).is_ok(), expect_ok);
    }
}

#[test]
fn batch_matches_single_packet_path() {
    for suite in [
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm256HmacSha1_32,
        Suite::AeadAes128Gcm,
    ] {
        let mk = MasterKey::generate(suite).unwrap();
        let new = || SrtpContext::new(suite, &mk, Config::default()).unwrap();
        let (mut single, mut batch, mut rx_single, mut rx_batch) = (new(), new(), new(), new());
        // Mixed sizes incl. one too big for the shared keystream buffer, a bad packet and a duplicate.
        let sizes = [160usize, 1200, 20, 5000, 0, 160, 160, 33];
        let mut plain: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| rtp(900 + i as u16, 42, s))
            .collect();
        plain[4][0] = 0; // version 0: Malformed
        plain.push(plain[1].clone()); // replayed seq
        let bufs = |v: &Vec<Vec<u8>>| {
            v.iter()
                .map(|p| {
                    let mut b = p.clone();
                    b.resize(p.len() + 32, 0);
                    b
                })
                .collect::<Vec<_>>()
        };
        let mut a = bufs(&plain);
        let mut b = bufs(&plain);
        let single_res: Vec<_> = a
            .iter_mut()
            .zip(&plain)
            .map(|(buf, p)| single.protect_rtp(buf, p.len()))
            .collect();
        let mut pk: Vec<(&mut [u8], usize)> = b
            .iter_mut()
            .zip(&plain)
            .map(|(buf, p)| (&mut buf[..], p.len()))
            .collect();
        let mut res = vec![Ok(0); pk.len()];
        assert_eq!(batch.protect_rtp_batch(&mut pk, &mut res), plain.len());
        assert_eq!(res, single_res, "{suite}");
        assert_eq!(a, b);
        assert_eq!(res[4], Err(SrtpError::Malformed));
        assert_eq!(res[8], Err(SrtpError::Replayed));

        // Now unprotect the batch output, with one tampered packet.
        let lens: Vec<usize> = res.iter().map(|r| r.unwrap_or(0)).collect();
        b[2][14] ^= 1;
        a[2][14] ^= 1;
        let single_res: Vec<_> = a
            .iter_mut()
            .zip(&lens)
            .map(|(buf, &l)| rx_single.unprotect_rtp(buf, l))
            .collect();
        let mut pk: Vec<(&mut [u8], usize)> = b
            .iter_mut()
            .zip(&lens)
            .map(|(buf, &l)| (&mut buf[..], l))
            .collect();
        let mut res = vec![Ok(0); pk.len()];
        rx_batch.unprotect_rtp_batch(&mut pk, &mut res);
        assert_eq!(res, single_res, "{suite}");
        assert_eq!(res[2], Err(SrtpError::AuthFailed));
        for (i, p) in plain.iter().enumerate() {
            if let Ok(n) = res[i] {
                assert_eq!(&b[i][..n], &p[..], "{suite} packet {i}");
            }
        }
        assert_eq!(rx_batch.stream(42), rx_single.stream(42));
    }
}

/// SRTCP with the E-bit clear (authenticated, not encrypted) is accepted as is, for both families.
#[test]
fn unencrypted_srtcp_is_authenticated_and_accepted() {
    let rtcp = hex(RFC7714_RTCP);
    let e_index = 7u32.to_be_bytes(); // E = 0, index 7
    for suite in [Suite::AesCm128HmacSha1_32, Suite::AeadAes256Gcm] {
        let mk = MasterKey::generate(suite).unwrap();
        let mut rx = SrtpContext::new(suite, &mk, Config::default()).unwrap();
        let mut pkt = rtcp.clone();
        match &rx.rtcp {
            Transform::Cm { auth, tag_len, .. } => {
                pkt.extend_from_slice(&e_index);
                let tag = hmac_tag(auth, &pkt, &[]);
                pkt.extend_from_slice(&tag[..*tag_len]);
            }
            Transform::Gcm { aead, salt } => {
                let mut aad = rtcp.clone();
                aad.extend_from_slice(&e_index);
                let tag = aead
                    .seal(&gcm_rtcp_iv(salt, 0x4d61_7273, 7), &aad, &mut [])
                    .unwrap();
                pkt.extend_from_slice(&tag);
                pkt.extend_from_slice(&e_index);
            }
        }
        let n = pkt.len();
        let mut forged = pkt.clone();
        forged[10] ^= 1;
        assert_eq!(
            rx.unprotect_rtcp(&mut forged, n),
            Err(SrtpError::AuthFailed),
            "{suite}"
        );
        assert_eq!(rx.unprotect_rtcp(&mut pkt, n), Ok(rtcp.len()), "{suite}");
        assert_eq!(&pkt[..rtcp.len()], &rtcp[..]);
        assert_eq!(
            rx.unprotect_rtcp(&mut pkt.clone(), n),
            Err(SrtpError::Replayed)
        );
    }
}
