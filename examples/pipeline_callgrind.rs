//! Runs N packets (argument, default 320000) through the pipeline in batches of 32 over 1,000
//! flows, for instruction counting:
//!   valgrind --tool=callgrind target/release/examples/pipeline_callgrind 32000
//!   valgrind --tool=callgrind target/release/examples/pipeline_callgrind 352000
//! instructions/packet = (Ir(352000) - Ir(32000)) / 320000 (setup cancels out).
//! A second argument `baseline` runs the std-HashMap baseline relay instead.

use tollgate::media::benchsupport::{self as bs, BATCH};
use tollgate::media::{DropReason, Verdict};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(320_000);
    let baseline = args.get(2).map(String::as_str) == Some("baseline");
    let mut bufs = bs::buffers(BATCH * 64);
    let mut rx = bs::rx_batch(&mut bufs);
    let mut out = [Verdict::Drop(DropReason::NoFlow); BATCH];
    let batches = n / BATCH;
    if baseline {
        let mut p = bs::NaiveRelay::new();
        let mut fwd = 0usize;
        for k in 0..batches {
            let start = (k % 64) * BATCH;
            let batch = &mut rx[start..start + BATCH];
            bs::advance(batch, k as u16);
            p.process_batch(batch, &mut out);
            fwd += out
                .iter()
                .filter(|v| matches!(v, Verdict::Forward(_)))
                .count();
        }
        println!("baseline packets={} forwarded={fwd}", batches * BATCH);
        return;
    }
    let mut p = bs::pipeline();
    let mut ev = Vec::new();
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
