//! Timer wheel vs a binary heap with lazy cancellation (the usual alternative), same workload in the same run:
//! 10 000 transaction-like timers (0.5 s .. 64 s), two thirds cancelled before they fire (a transaction that
//! completes cancels its retransmit/timeout timers), then every remaining timer fired in order (the wheel jumps
//! from deadline to deadline as the loop does).
//!
//! `cargo bench --bench sig_timer -- --warm-up-time 1 --measurement-time 3`

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tollgate::signaling::TimerWheel;

const N: usize = 10_000;

fn deadlines() -> Vec<u64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..N)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            500 + x % 63_500
        })
        .collect()
}

fn wheel(ds: &[u64]) -> u64 {
    let mut w = TimerWheel::new();
    let tokens: Vec<_> = ds
        .iter()
        .enumerate()
        .map(|(i, d)| w.insert(*d, i as u64))
        .collect();
    for (i, t) in tokens.iter().enumerate() {
        if i % 3 != 0 {
            w.cancel(*t);
        }
    }
    let mut sum = 0u64;
    while let Some(next) = w.next_deadline() {
        w.advance(next, |_, d| sum += d);
    }
    sum
}

fn heap(ds: &[u64]) -> u64 {
    let mut h = BinaryHeap::with_capacity(N);
    let mut cancelled = HashSet::with_capacity(N);
    for (i, d) in ds.iter().enumerate() {
        h.push(Reverse((*d, i as u64)));
    }
    for i in 0..ds.len() {
        if i % 3 != 0 {
            cancelled.insert(i as u64);
        }
    }
    let mut sum = 0u64;
    while let Some(Reverse((_, id))) = h.pop() {
        if !cancelled.remove(&id) {
            sum += id;
        }
    }
    sum
}

fn bench(c: &mut Criterion) {
    let ds = deadlines();
    assert_eq!(wheel(&ds), heap(&ds), "both fire the same timers");
    let mut g = c.benchmark_group("timers_10k_two_thirds_cancelled");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("timer_wheel", |b| {
        b.iter(|| black_box(wheel(black_box(&ds))))
    });
    g.bench_function("binary_heap_lazy_cancel", |b| {
        b.iter(|| black_box(heap(black_box(&ds))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
