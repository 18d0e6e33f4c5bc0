//! Per-packet cost of the media pipeline: batches of 32 G.711 RTP packets spread over 1,000
//! RTP->RTP flows, against a baseline relay doing the same decisions over std's HashMap.
//! ns/packet = reported time / 32.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate::media::benchsupport::{self as bs, BATCH};
use tollgate::media::pipeline::BuildFlowHasher;
use tollgate::media::{DropReason, FlowKey, Verdict};

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

    // The flow lookup alone: our index (hashbrown + FlowHasher on FlowKey) vs std HashMap<SocketAddr>.
    let mut g = c.benchmark_group("flow_lookup_1000_flows");
    g.throughput(Throughput::Elements(BATCH as u64));
    let keys: Vec<std::net::SocketAddr> = (0..BATCH * BATCHES)
        .map(|k| bs::local((k * 617) % bs::FLOWS))
        .collect();
    let mut ours: hashbrown::HashMap<FlowKey, u32, BuildFlowHasher> =
        hashbrown::HashMap::with_capacity_and_hasher(bs::FLOWS * 2, BuildFlowHasher);
    let mut std_map: std::collections::HashMap<std::net::SocketAddr, u32> =
        std::collections::HashMap::with_capacity(bs::FLOWS * 2);
    for i in 0..bs::FLOWS {
        ours.insert(FlowKey::new(bs::local(i)), i as u32);
        std_map.insert(bs::local(i), i as u32);
    }
    let mut k = 0usize;
    g.bench_function("flowhasher_hashbrown_batch32", |b| {
        b.iter(|| {
            let start = (k % BATCHES) * BATCH;
            k += 1;
            let mut sum = 0u32;
            for a in &keys[start..start + BATCH] {
                sum =
                    sum.wrapping_add(ours.get(&FlowKey::new(*black_box(a))).copied().unwrap_or(0));
            }
            sum
        })
    });
    let mut k = 0usize;
    g.bench_function("std_hashmap_siphash_batch32", |b| {
        b.iter(|| {
            let start = (k % BATCHES) * BATCH;
            k += 1;
            let mut sum = 0u32;
            for a in &keys[start..start + BATCH] {
                sum = sum.wrapping_add(std_map.get(black_box(a)).copied().unwrap_or(0));
            }
            sum
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
