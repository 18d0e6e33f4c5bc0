//! Fuzz target: parse a frame as Ethernet/IP/UDP and rewrite it for egress (src/fastpath/xdp/rewrite.rs).
//! Nightly: `cargo fuzz run xdp_rewrite fuzz/corpus/xdp_rewrite fuzz/seeds/xdp_rewrite` (seeds are checked in; corpus/ is libFuzzer's, ignored); stable: `cargo test --test fuzz_smoke_xdp`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tollgate::fastpath::xdp::fuzzing::check_rewrite(data);
});
