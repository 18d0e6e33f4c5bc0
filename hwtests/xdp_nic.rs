//! Tests that need real NICs: native XDP, zero-copy AF_XDP bind and one worker per RSS queue.
//!
//! Set `TOLLGATE_HW_IFACES=<carrier-iface>,<cloud-iface>` (two interfaces of a NIC with XDP and AF_XDP
//! zero-copy support, e.g. ice, i40e, mlx5; they may carry other traffic: only UDP to flow addresses is
//! steered, and no flow is installed here) and run as root: `cargo test --test xdp_nic`.
//! `TOLLGATE_HW_EXPECT_ZC=0` accepts copy mode (drivers without zero-copy). Skipped with a message otherwise.

#[path = "xdpcommon/mod.rs"]
mod common;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use common::*;
use tollgate::fastpath::xdp::forwarder::StaticForwarder;
use tollgate::fastpath::xdp::loader::{AttachMode, ModePolicy, XdpProgram};
use tollgate::fastpath::xdp::neigh::NeighThread;
use tollgate::fastpath::xdp::worker::{BindMode, PortSpec, WorkerConfig, spawn_worker};

/// The interfaces are shared by the tests of this binary: one test at a time (a second attach would be
/// refused as `XdpError::Busy`, by design).
static HW: Mutex<()> = Mutex::new(());

fn hw_ifaces(test: &str) -> Option<(String, String, MutexGuard<'static, ()>)> {
    if skip_unless_root(test) {
        return None;
    }
    let Ok(v) = std::env::var("TOLLGATE_HW_IFACES") else {
        eprintln!(
            "SKIP {test}: set TOLLGATE_HW_IFACES=<carrier-iface>,<cloud-iface> to run the real-NIC tests"
        );
        return None;
    };
    let mut it = v.split(',').map(str::trim).filter(|s| !s.is_empty());
    match (it.next(), it.next()) {
        (Some(a), Some(b)) => Some((
            a.to_owned(),
            b.to_owned(),
            HW.lock().unwrap_or_else(PoisonError::into_inner),
        )),
        _ => panic!("TOLLGATE_HW_IFACES must name two interfaces, got {v:?}"),
    }
}

fn rx_queues(iface: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{iface}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1)
}

#[test]
fn native_attach_and_zero_copy_bind() {
    let Some((a, b, _hw)) = hw_ifaces("native_attach_and_zero_copy_bind") else {
        return;
    };
    let expect_zc = std::env::var("TOLLGATE_HW_EXPECT_ZC").as_deref() != Ok("0");
    let mut prog = XdpProgram::load().expect("load");
    assert_eq!(
        prog.attach(&a, ModePolicy::Auto).expect("attach"),
        AttachMode::Driver,
        "{a}: native XDP"
    );
    assert_eq!(
        prog.attach(&b, ModePolicy::Auto).expect("attach"),
        AttachMode::Driver,
        "{b}: native XDP"
    );
    let neigh = NeighThread::start().expect("neigh");
    let cfg = WorkerConfig {
        ports: vec![
            PortSpec {
                iface: a.clone(),
                queue: 0,
            },
            PortSpec {
                iface: b.clone(),
                queue: 0,
            },
        ],
        bind: if expect_zc {
            BindMode::ZeroCopy
        } else {
            BindMode::Auto
        },
        ..WorkerConfig::default()
    };
    let w = spawn_worker(cfg, StaticForwarder::new([]), &mut prog, neigh.table()).expect("bind");
    if expect_zc {
        assert!(
            w.ports().iter().all(|p| p.zerocopy),
            "zero-copy on both ports: {:?}",
            w.ports()
        );
    }
    eprintln!("ports: {:?}", w.ports());
    std::thread::sleep(Duration::from_millis(200));
    let s = w.stats().read();
    assert!(s.ledger_balanced(), "{s:?}");
    assert_eq!(s.rx, 0, "no flow installed, nothing may reach the worker");
}

#[test]
fn one_worker_per_rss_queue() {
    let Some((a, b, _hw)) = hw_ifaces("one_worker_per_rss_queue") else {
        return;
    };
    let queues = rx_queues(&a).min(rx_queues(&b)).min(8);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut prog = XdpProgram::load().expect("load");
    prog.attach(&a, ModePolicy::Auto).expect("attach");
    prog.attach(&b, ModePolicy::Auto).expect("attach");
    let neigh = NeighThread::start().expect("neigh");
    let mut workers = Vec::new();
    for q in 0..queues {
        let cfg = WorkerConfig {
            ports: vec![
                PortSpec {
                    iface: a.clone(),
                    queue: q,
                },
                PortSpec {
                    iface: b.clone(),
                    queue: q,
                },
            ],
            core: cores.get(q as usize % cores.len().max(1)).map(|c| c.id),
            frames: 4096,
            ring_size: 1024,
            ..WorkerConfig::default()
        };
        workers.push(
            spawn_worker(cfg, StaticForwarder::new([]), &mut prog, neigh.table()).expect("worker"),
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    for w in &workers {
        let s = w.stats().read();
        assert!(s.ledger_balanced(), "{s:?}");
        assert_eq!(s.xsk_fill_ring_empty, 0, "fill rings primed: {s:?}");
    }
    for (q, w) in workers.into_iter().enumerate() {
        prog.unregister_xsk(w.ports()[0].ifindex, q as u32)
            .expect("unregister");
        prog.unregister_xsk(w.ports()[1].ifindex, q as u32)
            .expect("unregister");
        assert!(w.stop().is_some());
    }
}
