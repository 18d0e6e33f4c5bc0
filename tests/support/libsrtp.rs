//! Test/bench-only FFI shim over libsrtp2 (the reference implementation), used to cross-check and to
//! benchmark tollgate's `srtp` module. The library itself never links libsrtp2.
//!
//! The functions come as a table of pointers so the same wrapper drives Debian's shared libsrtp2 and
//! a statically linked OpenSSL build in one process.
#![allow(dead_code)]

use std::ffi::{c_int, c_uint, c_ulong, c_void};

use tollgate::srtp::Suite;

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct CryptoPolicy {
    pub cipher_type: u32,
    pub cipher_key_len: c_int,
    pub auth_type: u32,
    pub auth_key_len: c_int,
    pub auth_tag_len: c_int,
    pub sec_serv: u32,
}

#[repr(C)]
pub struct MasterKeyC {
    pub key: *mut u8,
    pub mki_id: *mut u8,
    pub mki_size: c_uint,
}

/// `srtp_policy_t` of libsrtp 2.x (identical in 2.3 and 2.5).
#[repr(C)]
pub struct Policy {
    pub ssrc_type: u32,
    pub ssrc_value: c_uint,
    pub rtp: CryptoPolicy,
    pub rtcp: CryptoPolicy,
    pub key: *mut u8,
    pub keys: *mut *mut MasterKeyC,
    pub num_master_keys: c_ulong,
    pub deprecated_ekt: *mut c_void,
    pub window_size: c_ulong,
    pub allow_repeat_tx: c_int,
    pub enc_xtn_hdr: *mut c_int,
    pub enc_xtn_hdr_count: c_int,
    pub next: *mut Policy,
}

pub const SSRC_ANY_INBOUND: u32 = 2;
pub const SSRC_ANY_OUTBOUND: u32 = 3;

pub type Init = unsafe extern "C" fn() -> c_int;
pub type Create = unsafe extern "C" fn(*mut *mut c_void, *const Policy) -> c_int;
pub type Dealloc = unsafe extern "C" fn(*mut c_void) -> c_int;
pub type SetPolicy = unsafe extern "C" fn(*mut CryptoPolicy);
pub type Transform = unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_int) -> c_int;
pub type ProtectMki =
    unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_int, c_uint, c_uint) -> c_int;
pub type UnprotectMki = unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_int, c_uint) -> c_int;

/// The libsrtp2 entry points this shim uses.
#[derive(Clone, Copy)]
pub struct Lib {
    pub init: Init,
    pub create: Create,
    pub dealloc: Dealloc,
    pub protect: Transform,
    pub unprotect: Transform,
    pub protect_rtcp: Transform,
    pub unprotect_rtcp: Transform,
    pub protect_mki: ProtectMki,
    pub unprotect_mki: UnprotectMki,
    pub protect_rtcp_mki: ProtectMki,
    pub unprotect_rtcp_mki: UnprotectMki,
    pub aes128_80: SetPolicy,
    pub aes128_32: SetPolicy,
    pub aes192_80: SetPolicy,
    pub aes192_32: SetPolicy,
    pub aes256_80: SetPolicy,
    pub aes256_32: SetPolicy,
    pub gcm128: SetPolicy,
    pub gcm256: SetPolicy,
}

/// Declares the libsrtp2 symbols in an `extern` block with the given attributes and builds a `Lib`
/// from them, e.g. `libsrtp_extern!(debian_lib, #[link(name = "libsrtp2.so.1", kind = "dylib", modifiers = "+verbatim")]);`
#[macro_export]
macro_rules! libsrtp_extern {
    ($fname:ident, $(#[$attr:meta])*) => {
        pub fn $fname() -> support::libsrtp::Lib {
            use std::ffi::{c_int, c_uint, c_void};
            use support::libsrtp::{CryptoPolicy, Lib, Policy};
            $(#[$attr])*
            unsafe extern "C" {
                fn srtp_init() -> c_int;
                fn srtp_create(s: *mut *mut c_void, p: *const Policy) -> c_int;
                fn srtp_dealloc(s: *mut c_void) -> c_int;
                fn srtp_protect(s: *mut c_void, h: *mut c_void, l: *mut c_int) -> c_int;
                fn srtp_unprotect(s: *mut c_void, h: *mut c_void, l: *mut c_int) -> c_int;
                fn srtp_protect_rtcp(s: *mut c_void, h: *mut c_void, l: *mut c_int) -> c_int;
                fn srtp_unprotect_rtcp(s: *mut c_void, h: *mut c_void, l: *mut c_int) -> c_int;
                fn srtp_protect_mki(s: *mut c_void, h: *mut c_void, l: *mut c_int, u: c_uint, i: c_uint) -> c_int;
                fn srtp_unprotect_mki(s: *mut c_void, h: *mut c_void, l: *mut c_int, u: c_uint) -> c_int;
                fn srtp_protect_rtcp_mki(s: *mut c_void, h: *mut c_void, l: *mut c_int, u: c_uint, i: c_uint) -> c_int;
                fn srtp_unprotect_rtcp_mki(s: *mut c_void, h: *mut c_void, l: *mut c_int, u: c_uint) -> c_int;
                fn srtp_crypto_policy_set_rtp_default(p: *mut CryptoPolicy);
                fn srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(p: *mut CryptoPolicy);
                fn srtp_crypto_policy_set_aes_cm_192_hmac_sha1_80(p: *mut CryptoPolicy);
                fn srtp_crypto_policy_set_aes_cm_192_hmac_sha1_32(p: *mut CryptoPolicy);
                fn srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(p: *mut CryptoPolicy);
                fn srtp_crypto_policy_set_aes_cm_256_hmac_sha1_32(p: *mut CryptoPolicy);
                fn srtp_crypto_policy_set_aes_gcm_128_16_auth(p: *mut CryptoPolicy);
                fn srtp_crypto_policy_set_aes_gcm_256_16_auth(p: *mut CryptoPolicy);
            }
            Lib {
                init: srtp_init,
                create: srtp_create,
                dealloc: srtp_dealloc,
                protect: srtp_protect,
                unprotect: srtp_unprotect,
                protect_rtcp: srtp_protect_rtcp,
                unprotect_rtcp: srtp_unprotect_rtcp,
                protect_mki: srtp_protect_mki,
                unprotect_mki: srtp_unprotect_mki,
                protect_rtcp_mki: srtp_protect_rtcp_mki,
                unprotect_rtcp_mki: srtp_unprotect_rtcp_mki,
                aes128_80: srtp_crypto_policy_set_rtp_default,
                aes128_32: srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32,
                aes192_80: srtp_crypto_policy_set_aes_cm_192_hmac_sha1_80,
                aes192_32: srtp_crypto_policy_set_aes_cm_192_hmac_sha1_32,
                aes256_80: srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80,
                aes256_32: srtp_crypto_policy_set_aes_cm_256_hmac_sha1_32,
                gcm128: srtp_crypto_policy_set_aes_gcm_128_16_auth,
                gcm256: srtp_crypto_policy_set_aes_gcm_256_16_auth,
            }
        }
    };
}

impl Lib {
    /// (RTP policy, RTCP policy) for a suite; the `_32` suites use 80-bit SRTCP tags (RFC 4568).
    fn policies(&self, suite: Suite) -> (SetPolicy, SetPolicy) {
        match suite {
            Suite::AesCm128HmacSha1_80 => (self.aes128_80, self.aes128_80),
            Suite::AesCm128HmacSha1_32 => (self.aes128_32, self.aes128_80),
            Suite::AesCm192HmacSha1_80 => (self.aes192_80, self.aes192_80),
            Suite::AesCm192HmacSha1_32 => (self.aes192_32, self.aes192_80),
            Suite::AesCm256HmacSha1_80 => (self.aes256_80, self.aes256_80),
            Suite::AesCm256HmacSha1_32 => (self.aes256_32, self.aes256_80),
            Suite::AeadAes128Gcm => (self.gcm128, self.gcm128),
            Suite::AeadAes256Gcm => (self.gcm256, self.gcm256),
        }
    }
}

/// One libsrtp2 session for one direction with one master key (and optionally one MKI).
pub struct Session {
    lib: Lib,
    ctx: *mut c_void,
    use_mki: bool,
    // libsrtp keeps pointers into these until `srtp_create` returns; kept alive for the session anyway.
    _key: Box<[u8; 64]>,
    _mki: Box<[u8; 16]>,
}

impl Session {
    /// `outbound` selects the sender (any outbound SSRC) or receiver (any inbound SSRC) side.
    pub fn new(
        lib: Lib,
        suite: Suite,
        key_and_salt: &[u8],
        mki: Option<&[u8]>,
        outbound: bool,
    ) -> Result<Session, i32> {
        // srtp_init and srtp_create touch libsrtp's global crypto kernel: never from two threads at once.
        static GLOBAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: srtp_init takes no arguments and may be called more than once.
        unsafe { (lib.init)() };
        let mut key = Box::new([0u8; 64]);
        key[..key_and_salt.len()].copy_from_slice(key_and_salt);
        let mut mki_buf = Box::new([0u8; 16]);
        let (rtp_set, rtcp_set) = lib.policies(suite);
        let mut policy = Policy {
            ssrc_type: if outbound {
                SSRC_ANY_OUTBOUND
            } else {
                SSRC_ANY_INBOUND
            },
            ssrc_value: 0,
            rtp: CryptoPolicy::default(),
            rtcp: CryptoPolicy::default(),
            key: key.as_mut_ptr(),
            keys: std::ptr::null_mut(),
            num_master_keys: 0,
            deprecated_ekt: std::ptr::null_mut(),
            window_size: 128,
            allow_repeat_tx: 0,
            enc_xtn_hdr: std::ptr::null_mut(),
            enc_xtn_hdr_count: 0,
            next: std::ptr::null_mut(),
        };
        // SAFETY: the setters write a plain struct we own.
        unsafe {
            rtp_set(&mut policy.rtp);
            rtcp_set(&mut policy.rtcp);
        }
        if let Some(m) = mki {
            mki_buf[..m.len()].copy_from_slice(m);
        }
        let mut mk = MasterKeyC {
            key: key.as_mut_ptr(),
            mki_id: mki_buf.as_mut_ptr(),
            mki_size: mki.map_or(0, |m| m.len() as c_uint),
        };
        let mut mk_ptr: *mut MasterKeyC = &mut mk;
        if mki.is_some() {
            policy.key = std::ptr::null_mut();
            policy.keys = &mut mk_ptr;
            policy.num_master_keys = 1;
        }
        let mut ctx = std::ptr::null_mut();
        // SAFETY: policy and every pointer in it are valid for the call; libsrtp copies what it keeps.
        let rc = unsafe { (lib.create)(&mut ctx, &policy) };
        if rc != 0 {
            return Err(rc);
        }
        Ok(Session {
            lib,
            ctx,
            use_mki: mki.is_some(),
            _key: key,
            _mki: mki_buf,
        })
    }

    fn call(
        &mut self,
        f: Transform,
        fm: Option<ProtectMki>,
        fu: Option<UnprotectMki>,
        buf: &mut [u8],
        len: usize,
    ) -> Result<usize, i32> {
        // libsrtp writes up to its maximum trailer past `len` when protecting; demand generous room.
        let room = if fm.is_some() { 16 + 4 + 16 + 16 } else { 0 };
        assert!(
            buf.len() >= len + room,
            "caller buffer too small for libsrtp"
        );
        let mut l = len as c_int;
        let p = buf.as_mut_ptr().cast::<c_void>();
        // SAFETY: `buf` holds `len` packet bytes plus room for the trailer, as asserted above; ctx is live.
        let rc = unsafe {
            match (self.use_mki, fm, fu) {
                (true, Some(fm), _) => fm(self.ctx, p, &mut l, 1, 0),
                (true, None, Some(fu)) => fu(self.ctx, p, &mut l, 1),
                _ => f(self.ctx, p, &mut l),
            }
        };
        if rc == 0 { Ok(l as usize) } else { Err(rc) }
    }

    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, i32> {
        self.call(self.lib.protect, Some(self.lib.protect_mki), None, buf, len)
    }

    pub fn unprotect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, i32> {
        self.call(
            self.lib.unprotect,
            None,
            Some(self.lib.unprotect_mki),
            buf,
            len,
        )
    }

    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, i32> {
        self.call(
            self.lib.protect_rtcp,
            Some(self.lib.protect_rtcp_mki),
            None,
            buf,
            len,
        )
    }

    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, i32> {
        self.call(
            self.lib.unprotect_rtcp,
            None,
            Some(self.lib.unprotect_rtcp_mki),
            buf,
            len,
        )
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: ctx came from srtp_create and is freed once.
        unsafe { (self.lib.dealloc)(self.ctx) };
    }
}
