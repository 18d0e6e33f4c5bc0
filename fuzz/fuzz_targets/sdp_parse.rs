#![no_main]
// Seed corpus: tests/data/sdp (cargo fuzz run sdp_parse ../tests/data/sdp).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tollgate::fuzzing::media::sdp_parse(data);
});
