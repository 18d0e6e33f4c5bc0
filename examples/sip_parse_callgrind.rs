//! Parses the bench INVITE (benches/sip_parse.rs) N times and reads the hot headers, for instruction counting:
//!   valgrind --tool=callgrind target/release/examples/sip_parse_callgrind 1000
//!   valgrind --tool=callgrind target/release/examples/sip_parse_callgrind 11000
//! instructions/msg = (Ir(11000) - Ir(1000)) / 10000 (setup cancels out).

use std::hint::black_box;

#[path = "../benches/support/sip_invite.rs"]
mod sip_invite;
use sip_invite::invite;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let msg = invite();
    let mut sink = 0usize;
    for _ in 0..n {
        let m = tollgate::sip::Message::parse(black_box(&msg[..])).expect("valid");
        sink += m.branch().map_or(0, <[u8]>::len)
            + m.from_tag().map_or(0, <[u8]>::len)
            + m.to_tag().map_or(0, <[u8]>::len)
            + m.call_id().len()
            + m.cseq().seq as usize;
    }
    println!("{sink}");
}
