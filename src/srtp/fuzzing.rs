//! The check behind the `srtp_unprotect` fuzz target and its stable smoke test.

use super::{Config, MasterKey, Mki, SrtpContext, SrtpError, Suite};

/// Feeds `data` to the receive side of every suite, as SRTP and as SRTCP, and checks the invariants
/// that must hold for any input: no panic; a refused packet leaves the stream state unchanged; an
/// accepted packet's length is within the input. Then it protects `data` (as RTP and as RTCP, when it
/// parses as such) and checks that unprotecting gives the original bytes back.
///
/// The first byte picks the suite and whether an MKI is configured; the rest is the packet.
pub fn check_unprotect(data: &[u8]) {
    let Some((&sel, pkt)) = data.split_first() else {
        return;
    };
    let suite = Suite::ALL[usize::from(sel) % Suite::ALL.len()];
    let mki = if sel & 0x80 != 0 {
        Mki::new(u64::from(sel), 1).ok()
    } else {
        None
    };
    let key = fixed_key(suite);
    let cfg = Config {
        replay_window: 64 + usize::from(sel & 0x40) * 4,
        ssrc_capacity: 2,
        mki,
    };
    let (Ok(mut rx), Ok(mut tx), Ok(mut rx2)) = (
        SrtpContext::new(suite, &key, cfg),
        SrtpContext::new(suite, &key, cfg),
        SrtpContext::new(suite, &key, cfg),
    ) else {
        panic!("fixed key and config must be valid");
    };

    let mut buf = [0u8; 2048];
    let n = pkt.len().min(buf.len() - super::MAX_OVERHEAD);
    let pkt = &pkt[..n];

    for rtcp in [false, true] {
        buf[..n].copy_from_slice(pkt);
        let ssrc = ssrc_of(pkt, rtcp);
        let before = ssrc.and_then(|s| rx.stream(s).cloned());
        let res = if rtcp {
            rx.unprotect_rtcp(&mut buf, n)
        } else {
            rx.unprotect_rtp(&mut buf, n)
        };
        match res {
            Ok(len) => assert!(len <= n),
            Err(_) => assert_eq!(
                ssrc.and_then(|s| rx.stream(s).cloned()),
                before,
                "state changed by a refused packet"
            ),
        }
    }

    // Round trip through protect.
    for rtcp in [false, true] {
        buf[..n].copy_from_slice(pkt);
        let res = if rtcp {
            tx.protect_rtcp(&mut buf, n)
        } else {
            tx.protect_rtp(&mut buf, n)
        };
        let Ok(len) = res else { continue };
        assert!(len > n && len <= n + super::MAX_OVERHEAD);
        let back = if rtcp {
            rx2.unprotect_rtcp(&mut buf, len)
        } else {
            rx2.unprotect_rtp(&mut buf, len)
        };
        assert_eq!(back, Ok(n), "round trip of a protected packet");
        assert_eq!(&buf[..n], pkt);
        // The same packet again is a replay.
        buf[..n].copy_from_slice(pkt);
        if !rtcp {
            assert_eq!(tx.protect_rtp(&mut buf, n), Err(SrtpError::Replayed));
        }
    }
}

/// A valid input for `check_unprotect`: selector byte `sel`, then an SRTP (or, if `rtcp`, SRTCP)
/// packet protected with the key `check_unprotect` uses. Seeds the corpus and the smoke test's mutations.
pub fn seed(sel: u8, rtcp: bool, seq: u16, payload: &[u8]) -> Vec<u8> {
    let suite = Suite::ALL[usize::from(sel) % Suite::ALL.len()];
    let mki = if sel & 0x80 != 0 {
        Mki::new(u64::from(sel), 1).ok()
    } else {
        None
    };
    let cfg = Config {
        replay_window: 64 + usize::from(sel & 0x40) * 4,
        ssrc_capacity: 2,
        mki,
    };
    let Ok(mut tx) = SrtpContext::new(suite, &fixed_key(suite), cfg) else {
        return vec![sel];
    };
    let mut pkt = if rtcp {
        vec![0x81, 0xc8, 0, 0, 0, 0, 0, 7]
    } else {
        vec![0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 7]
    };
    if !rtcp {
        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
    }
    pkt.extend_from_slice(payload);
    let n = pkt.len();
    pkt.resize(n + super::MAX_OVERHEAD, 0);
    let res = if rtcp {
        tx.protect_rtcp(&mut pkt, n)
    } else {
        tx.protect_rtp(&mut pkt, n)
    };
    let len = res.unwrap_or(n);
    pkt.truncate(len);
    pkt.insert(0, sel);
    pkt
}

fn ssrc_of(pkt: &[u8], rtcp: bool) -> Option<u32> {
    let at = if rtcp { 4 } else { 8 };
    pkt.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn fixed_key(suite: Suite) -> MasterKey {
    let key: Vec<u8> = (0..suite.master_key_len() as u8).collect();
    let salt: Vec<u8> = (0..suite.master_salt_len() as u8)
        .map(|b| b ^ 0xa5)
        .collect();
    match MasterKey::new(suite, &key, &salt) {
        Ok(k) => k,
        Err(e) => panic!("fixed key lengths follow the suite: {e}"),
    }
}
