//! SRTP protect/unprotect: tollgate's engine side by side with libsrtp2 on the same packets.
//!
//! Baselines: libsrtp2 2.3.0 built from the `srtp2-sys` crate's vendored sources with
//! `--enable-openssl` (statically linked; OpenSSL is libsrtp2's fastest backend), and Debian's
//! libsrtp2 2.5.0 (NSS backend), loaded with `dlopen(RTLD_DEEPBIND)` so the two builds' identical
//! symbol names cannot collide. Cases: a G.711 packet (12-byte header + 160-byte payload) and a
//! 1200-byte packet; AES_CM_128_HMAC_SHA1_80 and AEAD_AES_128_GCM; one packet per call, and batches of
//! 32 (libsrtp2 has no batch call, so its batch is 32 single calls).
//!
//! Run: `cargo bench --bench srtp -- --warm-up-time 1 --measurement-time 3`

use std::ffi::{c_char, c_int, c_void};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
// Links the statically built OpenSSL libsrtp2 whose symbols `openssl_lib` declares.
extern crate srtp2_sys;

#[path = "../tests/support/mod.rs"]
mod support;

use support::libsrtp::{Lib, Session};
use tollgate::srtp::{Config, MasterKey, SrtpContext, Suite};

libsrtp_extern!(openssl_lib,);

unsafe extern "C" {
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// Debian's shared libsrtp2, resolved with its own symbols first (RTLD_DEEPBIND).
fn debian_lib() -> Option<Lib> {
    const RTLD_NOW: c_int = 2;
    const RTLD_DEEPBIND: c_int = 8;
    // SAFETY: a NUL-terminated path; dlopen either returns a handle or null.
    let h = unsafe { dlopen(c"libsrtp2.so.1".as_ptr(), RTLD_NOW | RTLD_DEEPBIND) };
    if h.is_null() {
        return None;
    }
    let sym = |name: &std::ffi::CStr| -> Option<*mut c_void> {
        // SAFETY: h is a live handle and name is NUL-terminated.
        let p = unsafe { dlsym(h, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    };
    macro_rules! f {
        ($name:literal, $t:ty) => {
            // SAFETY: the symbol is the libsrtp2 function of that name, whose C signature the `Lib`
            // field type declares (libsrtp 2.5 headers).
            unsafe { std::mem::transmute::<*mut c_void, $t>(sym($name)?) }
        };
    }
    Some(Lib {
        init: f!(c"srtp_init", support::libsrtp::Init),
        create: f!(c"srtp_create", support::libsrtp::Create),
        dealloc: f!(c"srtp_dealloc", support::libsrtp::Dealloc),
        protect: f!(c"srtp_protect", support::libsrtp::Transform),
        unprotect: f!(c"srtp_unprotect", support::libsrtp::Transform),
        protect_rtcp: f!(c"srtp_protect_rtcp", support::libsrtp::Transform),
        unprotect_rtcp: f!(c"srtp_unprotect_rtcp", support::libsrtp::Transform),
        protect_mki: f!(c"srtp_protect_mki", support::libsrtp::ProtectMki),
        unprotect_mki: f!(c"srtp_unprotect_mki", support::libsrtp::UnprotectMki),
        protect_rtcp_mki: f!(c"srtp_protect_rtcp_mki", support::libsrtp::ProtectMki),
        unprotect_rtcp_mki: f!(c"srtp_unprotect_rtcp_mki", support::libsrtp::UnprotectMki),
        aes128_80: f!(
            c"srtp_crypto_policy_set_rtp_default",
            support::libsrtp::SetPolicy
        ),
        aes128_32: f!(
            c"srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32",
            support::libsrtp::SetPolicy
        ),
        aes192_80: f!(
            c"srtp_crypto_policy_set_aes_cm_192_hmac_sha1_80",
            support::libsrtp::SetPolicy
        ),
        aes192_32: f!(
            c"srtp_crypto_policy_set_aes_cm_192_hmac_sha1_32",
            support::libsrtp::SetPolicy
        ),
        aes256_80: f!(
            c"srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80",
            support::libsrtp::SetPolicy
        ),
        aes256_32: f!(
            c"srtp_crypto_policy_set_aes_cm_256_hmac_sha1_32",
            support::libsrtp::SetPolicy
        ),
        gcm128: f!(
            c"srtp_crypto_policy_set_aes_gcm_128_16_auth",
            support::libsrtp::SetPolicy
        ),
        gcm256: f!(
            c"srtp_crypto_policy_set_aes_gcm_256_16_auth",
            support::libsrtp::SetPolicy
        ),
    })
}

const SLOT: usize = 1400;
const BATCH: usize = 32;
/// Packets pre-protected per untimed refill of the unprotect benches.
const CHUNK: usize = 2048;

/// Either engine, behind one interface for the bench loops.
enum Engine {
    Ours {
        tx: Box<SrtpContext>,
        rx: Box<SrtpContext>,
    },
    Lib {
        tx: Box<Session>,
        rx: Box<Session>,
    },
}

impl Engine {
    fn ours(suite: Suite, mk: &MasterKey) -> Engine {
        let cfg = Config::default();
        Engine::Ours {
            tx: Box::new(SrtpContext::new(suite, mk, cfg).unwrap()),
            rx: Box::new(SrtpContext::new(suite, mk, cfg).unwrap()),
        }
    }

    fn lib(lib: Lib, suite: Suite, mk: &MasterKey) -> Engine {
        let ks = [mk.key(), mk.salt()].concat();
        Engine::Lib {
            tx: Box::new(Session::new(lib, suite, &ks, None, true).unwrap()),
            rx: Box::new(Session::new(lib, suite, &ks, None, false).unwrap()),
        }
    }

    fn protect(&mut self, buf: &mut [u8], len: usize) -> usize {
        match self {
            Engine::Ours { tx, .. } => tx.protect_rtp(buf, len).unwrap(),
            Engine::Lib { tx, .. } => tx.protect(buf, len).unwrap(),
        }
    }

    fn unprotect(&mut self, buf: &mut [u8], len: usize) -> usize {
        match self {
            Engine::Ours { rx, .. } => rx.unprotect_rtp(buf, len).unwrap(),
            Engine::Lib { rx, .. } => rx.unprotect(buf, len).unwrap(),
        }
    }

    fn protect_batch(
        &mut self,
        bufs: &mut [[u8; SLOT]],
        len: usize,
        out: &mut [Result<usize, tollgate::srtp::SrtpError>],
    ) {
        match self {
            Engine::Ours { tx, .. } => {
                let mut pk: [(&mut [u8], usize); BATCH] = bufs_as_batch(bufs, len);
                tx.protect_rtp_batch(&mut pk, out);
                for r in out.iter() {
                    assert!(r.is_ok());
                }
            }
            Engine::Lib { tx, .. } => {
                for b in bufs.iter_mut() {
                    black_box(tx.protect(b, len).unwrap());
                }
            }
        }
    }

    fn unprotect_batch(
        &mut self,
        bufs: &mut [[u8; SLOT]],
        len: usize,
        out: &mut [Result<usize, tollgate::srtp::SrtpError>],
    ) {
        match self {
            Engine::Ours { rx, .. } => {
                let mut pk: [(&mut [u8], usize); BATCH] = bufs_as_batch(bufs, len);
                rx.unprotect_rtp_batch(&mut pk, out);
                for r in out.iter() {
                    assert!(r.is_ok());
                }
            }
            Engine::Lib { rx, .. } => {
                for b in bufs.iter_mut() {
                    black_box(rx.unprotect(b, len).unwrap());
                }
            }
        }
    }
}

fn bufs_as_batch(bufs: &mut [[u8; SLOT]], len: usize) -> [(&mut [u8], usize); BATCH] {
    let mut it = bufs.iter_mut();
    std::array::from_fn(|_| (&mut it.next().expect("BATCH buffers")[..], len))
}

fn template(len: usize) -> [u8; SLOT] {
    let mut p = [0u8; SLOT];
    p[0] = 0x80;
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    for (i, b) in p[12..len].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

#[inline]
fn set_seq(buf: &mut [u8], seq: u16) {
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
}

fn bench(c: &mut Criterion) {
    let mut impls: Vec<(&str, Option<Lib>)> = vec![
        ("tollgate", None),
        ("libsrtp2-openssl", Some(openssl_lib())),
    ];
    match debian_lib() {
        Some(l) => impls.push(("libsrtp2-debian-nss", Some(l))),
        None => eprintln!("libsrtp2.so.1 not found: skipping the Debian/NSS baseline"),
    }
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm] {
        let mk = MasterKey::generate(suite).unwrap();
        for (size_name, len) in [("g711-172B", 172usize), ("1200B", 1200)] {
            let tpl = template(len);
            for batch in [false, true] {
                for op in ["protect", "unprotect"] {
                    let mut g = c.benchmark_group(format!(
                        "srtp/{}/{size_name}/{op}/{}",
                        suite.sdes_name(),
                        if batch { "batch32" } else { "single" }
                    ));
                    g.throughput(Throughput::Elements(if batch { BATCH as u64 } else { 1 }));
                    for (name, lib) in &impls {
                        let mut e = match lib {
                            None => Engine::ours(suite, &mk),
                            Some(l) => Engine::lib(*l, suite, &mk),
                        };
                        // Criterion calls the closure several times; the sequence must keep rising across them.
                        let mut seq = 0u16;
                        g.bench_function(BenchmarkId::from_parameter(name), |b| {
                            run_case(b, &mut e, &mut seq, &tpl, len, batch, op == "protect")
                        });
                    }
                    g.finish();
                }
            }
        }
    }
}

/// Protect: copy the plaintext in, set the next sequence number, protect (the copy is in both
/// engines' numbers alike). Unprotect: packets are pre-protected in untimed chunks, then each is
/// unprotected once (a second time would be a replay).
fn run_case(
    b: &mut criterion::Bencher<'_>,
    e: &mut Engine,
    seq: &mut u16,
    tpl: &[u8; SLOT],
    len: usize,
    batch: bool,
    protect: bool,
) {
    let mut out = [Ok(0); BATCH];
    if protect {
        let mut bufs = vec![*tpl; BATCH];
        if batch {
            b.iter(|| {
                for buf in bufs.iter_mut() {
                    buf[..len].copy_from_slice(&tpl[..len]);
                    set_seq(buf, *seq);
                    *seq = seq.wrapping_add(1);
                }
                e.protect_batch(&mut bufs, len, &mut out);
            });
        } else {
            let buf = &mut bufs[0];
            b.iter(|| {
                buf[..len].copy_from_slice(&tpl[..len]);
                set_seq(buf, *seq);
                *seq = seq.wrapping_add(1);
                black_box(e.protect(buf, len))
            });
        }
        return;
    }
    let mut chunk = vec![*tpl; CHUNK];
    let mut plen = 0;
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        let per_iter = if batch { BATCH } else { 1 };
        let mut left = iters as usize * per_iter;
        while left > 0 {
            let n = left.min(CHUNK) / per_iter * per_iter;
            let n = n.max(per_iter);
            for buf in chunk[..n].iter_mut() {
                buf[..len].copy_from_slice(&tpl[..len]);
                set_seq(buf, *seq);
                *seq = seq.wrapping_add(1);
                plen = e.protect(buf, len);
            }
            let start = Instant::now();
            if batch {
                for group in chunk[..n].chunks_mut(BATCH) {
                    e.unprotect_batch(group, plen, &mut out);
                }
            } else {
                for buf in chunk[..n].iter_mut() {
                    black_box(e.unprotect(buf, plen));
                }
            }
            total += start.elapsed();
            left -= n.min(left);
        }
        total
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
