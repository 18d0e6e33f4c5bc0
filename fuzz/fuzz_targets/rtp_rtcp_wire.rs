#![no_main]
// Seed corpus: tests/data/wire (cargo fuzz run rtp_rtcp_wire ../tests/data/wire).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tollgate::fuzzing::media::rtp_rtcp_wire(data);
});
