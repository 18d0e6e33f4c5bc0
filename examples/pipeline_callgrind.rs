//! Runs N packets (argument, default 320000) through the pipeline in batches of 32 over 1,000
//! flows, for instruction counting:
//!   valgrind --tool=callgrind target/release/examples/pipeline_callgrind 32000
//!   valgrind --tool=callgrind target/release/examples/pipeline_callgrind 352000
//! instructions/packet = (Ir(352000) - Ir(32000)) / 320000 (setup cancels out).

use tollgate::media::benchsupport::{self as bs, BATCH};
use tollgate::media::{DropReason, Verdict};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(320_000);
    let mut p = bs::pipeline();
    let mut bufs = bs::buffers(BATCH * 64);
    let mut rx = bs::rx_batch(&mut bufs);
    let mut out = [Verdict::Drop(DropReason::NoFlow); BATCH];
    let mut ev = Vec::new();
    let batches = n / BATCH;
    for k in 0..batches {
        let start = (k % 64) * BATCH;
        let batch = &mut rx[start..start + BATCH];
        bs::advance(batch, k as u16);
        p.process_batch(k as u64 * 20_000_000, batch, &mut out, &mut ev);
        ev.clear();
    }
    let c = p.counters().snapshot();
    println!(
        "packets={} forwarded={} dropped={}",
        c.rx_packets,
        c.forwarded,
        c.dropped_total()
    );
}
