//! The transaction layer's retransmission paths allocate nothing once warmed up: timer-driven
//! retransmissions (A, E, G) and answers to retransmitted requests. Counted with a wrapping allocator, on this
//! test's thread only.
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tollgate::sip::txn::{
    Action, ClientRequest, Dest, RequestInfo, RequestMatch, Transport, TxnTable,
};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.load(Ordering::Relaxed) - before)
}

#[test]
fn retransmission_paths_do_not_allocate() {
    let udp = Dest {
        transport: Transport::Udp,
        addr: SocketAddr::from(([192, 0, 2, 1], 5060)),
    };
    let t0 = Instant::now();
    let mut table = TxnTable::default();
    let mut out: Vec<Action> = Vec::with_capacity(4096);
    let branches: Vec<String> = (0..500).map(|i| format!("z9hG4bK-{i}")).collect();
    let sent_by = b"198.51.100.7:5060";
    for (i, b) in branches.iter().enumerate() {
        let method: &[u8] = if i % 2 == 0 { b"INVITE" } else { b"OPTIONS" };
        table
            .start_client(
                t0,
                ClientRequest {
                    method,
                    branch: b.as_bytes(),
                    bytes: Bytes::from_static(b"request"),
                    dest: udp,
                },
                &mut out,
            )
            .unwrap();
        let info = RequestInfo {
            method: b"INVITE",
            branch: b.as_bytes(),
            sent_by,
            ..RequestInfo::default()
        };
        let RequestMatch::New(id) =
            table.on_request(t0, &info, &Bytes::from_static(b"INVITE"), udp, &mut out)
        else {
            panic!("expected a new server transaction");
        };
        table
            .send_response(
                t0,
                id,
                486,
                Bytes::from_static(b"SIP/2.0 486"),
                b"",
                &mut out,
            )
            .unwrap();
    }
    out.clear();
    // Warm-up: the first round of retransmissions.
    table.poll(t0 + Duration::from_millis(500), &mut out);
    out.clear();

    let mut sends = 0usize;
    let (_, allocs) = counted(|| {
        let mut now = t0 + Duration::from_millis(500);
        while let Some(d) = table.next_deadline() {
            if d > t0 + Duration::from_secs(31) {
                break;
            }
            now = d;
            table.poll(now, &mut out);
            sends += out
                .iter()
                .filter(|a| matches!(a, Action::Send { .. }))
                .count();
            out.clear();
        }
        for b in &branches {
            let info = RequestInfo {
                method: b"INVITE",
                branch: b.as_bytes(),
                sent_by,
                ..RequestInfo::default()
            };
            table.on_request(now, &info, &Bytes::from_static(b"INVITE"), udp, &mut out);
            sends += out.len();
            out.clear();
        }
    });
    assert!(sends > 5000, "too few retransmissions exercised: {sends}");
    assert_eq!(
        allocs, 0,
        "{allocs} allocations during {sends} retransmissions"
    );
}
