//! Per-packet cost of the media pipeline: batches of 32 G.711 RTP packets spread over 1,000
//! RTP->RTP flows, against a baseline relay doing the same decisions over std's HashMap.
//! ns/packet = reported time / 32.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate::media::benchsupport::{self as bs, BATCH};
use tollgate::media::{DropReason, Verdict};

const BATCHES: usize = 64;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline_g711_1000_flows");
    g.throughput(Throughput::Elements(BATCH as u64));

    let mut bufs = bs::buffers(BATCH * BATCHES);
    let mut out = [Verdict::Drop(DropReason::NoFlow); BATCH];

    {
        let mut p = bs::pipeline();
        let mut ev = Vec::new();
        let mut rx = bs::rx_batch(&mut bufs);
        let mut seq: u16 = 0;
        let mut k = 0usize;
        g.bench_function("tollgate_pipeline_batch32", |b| {
            b.iter(|| {
                let start = (k % BATCHES) * BATCH;
                k += 1;
                seq = seq.wrapping_add(1);
                let batch = &mut rx[start..start + BATCH];
                bs::advance(batch, seq);
                let n = p.process_batch(u64::from(seq) * 20_000_000, batch, &mut out, &mut ev);
                ev.clear();
                black_box(&out);
                n
            })
        });
        assert_eq!(
            p.counters().snapshot().dropped_total(),
            0,
            "every bench packet forwards"
        );
    }
    {
        let mut p = bs::NaiveRelay::new();
        let mut rx = bs::rx_batch(&mut bufs);
        let mut seq: u16 = 0;
        let mut k = 0usize;
        g.bench_function("baseline_std_hashmap_batch32", |b| {
            b.iter(|| {
                let start = (k % BATCHES) * BATCH;
                k += 1;
                seq = seq.wrapping_add(1);
                let batch = &mut rx[start..start + BATCH];
                bs::advance(batch, seq);
                let n = p.process_batch(batch, &mut out);
                black_box(&out);
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
