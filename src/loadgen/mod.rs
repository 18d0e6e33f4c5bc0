//! The load generator and sink of `tollgate-load`: paced or unpaced RTP/SRTP streams sent with `sendmmsg`
//! from one socket per stream, a sink that checks every packet (sequence, payload, SRTP tag) and records
//! one-way latency, a bounded search for the highest loss-free rate, and an rtpengine ng-protocol client so
//! the same streams can run through rtpengine and tollgate side by side.
//!
//! This is a test tool, not the product: it does I/O directly. Its per-packet loops still allocate nothing.

pub mod generator;
pub mod ng;
pub mod run;
pub mod search;
pub mod sink;
pub mod spec;
pub mod transform;
pub mod wire;
pub mod xsk;

/// CLOCK_MONOTONIC in nanoseconds: the generator stamps it into each payload and the sink, on the same host,
/// subtracts it from its own reading.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer we pass; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Pins the calling thread to `core`; returns whether that worked.
pub fn pin_to(core: Option<usize>) -> bool {
    match core {
        Some(id) => core_affinity::set_for_current(core_affinity::CoreId { id }),
        None => false,
    }
}
