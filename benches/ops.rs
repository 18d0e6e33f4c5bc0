//! Cost of the operational hooks that touch hot threads: a watchdog heartbeat per media batch (against a bare
//! relaxed store, the floor), and a full /metrics render for a realistic number of series (mgmt thread only).
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use std::sync::atomic::{AtomicU64, Ordering};
use tollgate::ops::notify::Heartbeats;
use tollgate::stats::prom::HistogramSample;
use tollgate::stats::{MetricSource, PromWriter, Registry};

fn heartbeat(c: &mut Criterion) {
    let (_board, hb) = Heartbeats::new(["sig", "media0"]);
    let mut g = c.benchmark_group("heartbeat");
    g.bench_function("beat (clock read + relaxed store)", |b| {
        b.iter(|| hb[1].beat())
    });
    let plain = AtomicU64::new(0);
    let mut n = 0u64;
    g.bench_function("baseline: relaxed store only", |b| {
        b.iter(|| {
            n += 1;
            plain.store(black_box(n), Ordering::Relaxed)
        })
    });
    g.finish();
}

struct Worker(u32);
impl MetricSource for Worker {
    fn write_metrics(&self, w: &mut PromWriter) {
        let id = self.0.to_string();
        for (name, v) in [
            ("tollgate_media_packets_in_total", 123_456_789u64),
            ("tollgate_media_packets_out_total", 123_456_000),
        ] {
            w.counter(name, "Packets.", &[("worker", &id)], v);
        }
        for reason in ["no_flow", "srtp_auth", "bad_source", "ring_full"] {
            w.counter(
                "tollgate_media_drops_total",
                "Drops by reason.",
                &[("worker", &id), ("reason", reason)],
                42,
            );
        }
        w.histogram(HistogramSample {
            name: "tollgate_media_latency_seconds",
            help: "Per-packet latency.",
            labels: &[("worker", &id)],
            bounds: &[1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 1e-3],
            counts: &[1, 2, 3, 4, 5, 6, 7, 8, 9],
            sum: 0.5,
        });
    }
}

fn render(c: &mut Criterion) {
    let r = Registry::new();
    for i in 0..8 {
        r.register(std::sync::Arc::new(Worker(i)));
    }
    let mut w = PromWriter::new();
    c.bench_function("metrics render, 8 workers (~130 series)", |b| {
        b.iter(|| {
            r.render_into(&mut w);
            black_box(w.as_str().len())
        })
    });
}

criterion_group!(benches, heartbeat, render);
criterion_main!(benches);
