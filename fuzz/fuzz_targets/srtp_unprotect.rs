//! Untrusted SRTP/SRTCP bytes into every suite's receive path, plus protect/unprotect round trips.
//! The check itself lives in `tollgate::srtp::fuzzing` so the stable smoke test runs the same code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tollgate::srtp::fuzzing::check_unprotect(data);
});
