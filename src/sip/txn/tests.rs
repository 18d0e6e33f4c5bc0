//! Simulated-clock tests of the four state machines through the table: exact send times and counts.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

const T1: u64 = 500;

fn dest(transport: Transport) -> Dest {
    Dest {
        transport,
        addr: SocketAddr::from(([192, 0, 2, 1], 5060)),
    }
}

/// A table driven by a fake clock; every action is logged with its time in ms since the start.
struct Sim {
    t0: Instant,
    now: Instant,
    table: TxnTable,
    out: Vec<Action>,
    log: Vec<(u64, Action)>,
}

impl Sim {
    fn new() -> Self {
        Self::with(TimerConfig::default())
    }

    fn with(cfg: TimerConfig) -> Self {
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            table: TxnTable::new(cfg),
            out: Vec::new(),
            log: Vec::new(),
        }
    }

    fn ms(&self) -> u64 {
        (self.now - self.t0).as_millis() as u64
    }

    fn drain(&mut self) {
        let t = self.ms();
        for a in self.out.drain(..) {
            self.log.push((t, a));
        }
    }

    /// Advance to `ms`, polling at every deadline on the way (exactly at it).
    fn run_until(&mut self, ms: u64) {
        let end = self.t0 + Duration::from_millis(ms);
        while let Some(d) = self.table.next_deadline() {
            if d > end {
                break;
            }
            assert!(d >= self.now, "deadline in the past");
            self.now = d;
            self.table.poll(self.now, &mut self.out);
            self.drain();
        }
        self.now = end;
    }

    fn client(&mut self, method: &str, branch: &str, transport: Transport) -> TxnId {
        let id = self
            .table
            .start_client(
                self.now,
                ClientRequest {
                    method: method.as_bytes(),
                    branch: branch.as_bytes(),
                    bytes: Bytes::from(format!("{method} request {branch}")),
                    dest: dest(transport),
                },
                &mut self.out,
            )
            .unwrap();
        self.drain();
        id
    }

    fn response(&mut self, method: &str, branch: &str, status: u16) -> ResponseMatch {
        let info = ResponseInfo {
            status,
            branch: branch.as_bytes(),
            cseq_method: method.as_bytes(),
        };
        let m = self.table.on_response(
            self.now,
            &info,
            &Bytes::from(format!("SIP/2.0 {status}")),
            &mut self.out,
        );
        self.drain();
        m
    }

    fn request(&mut self, info: &RequestInfo<'_>, transport: Transport) -> RequestMatch {
        let bytes = Bytes::copy_from_slice(info.method);
        let m = self
            .table
            .on_request(self.now, info, &bytes, dest(transport), &mut self.out);
        self.drain();
        m
    }

    fn respond(&mut self, id: TxnId, status: u16, to_tag: &str) -> Result<(), TxnError> {
        let r = self.table.send_response(
            self.now,
            id,
            status,
            Bytes::from(format!("SIP/2.0 {status}")),
            to_tag.as_bytes(),
            &mut self.out,
        );
        self.drain();
        r
    }

    fn ack(&mut self, id: TxnId) -> Result<(), TxnError> {
        let r = self
            .table
            .provide_ack(self.now, id, Bytes::from_static(b"ACK"), &mut self.out);
        self.drain();
        r
    }

    fn send_times(&self, id: TxnId) -> Vec<u64> {
        self.log
            .iter()
            .filter(|(_, a)| matches!(a, Action::Send { txn, .. } if *txn == id))
            .map(|(t, _)| *t)
            .collect()
    }

    fn sends_of(&self, id: TxnId, payload: &str) -> Vec<u64> {
        self.log
            .iter()
            .filter(|(_, a)| {
                matches!(a, Action::Send { txn, bytes, .. } if *txn == id && bytes == payload.as_bytes())
            })
            .map(|(t, _)| *t)
            .collect()
    }

    fn passed(&self, id: TxnId) -> Vec<(u64, TuMsg)> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::PassToTu { txn, msg, .. } if *txn == id => Some((*t, *msg)),
                _ => None,
            })
            .collect()
    }

    fn when(&self, pred: impl Fn(&Action) -> bool) -> Vec<u64> {
        self.log
            .iter()
            .filter(|(_, a)| pred(a))
            .map(|(t, _)| *t)
            .collect()
    }

    fn terminated_at(&self, id: TxnId) -> Vec<u64> {
        self.when(|a| matches!(a, Action::Terminated { txn } if *txn == id))
    }
}

fn req<'a>(method: &'a str, branch: &'a str) -> RequestInfo<'a> {
    RequestInfo {
        method: method.as_bytes(),
        branch: branch.as_bytes(),
        sent_by: b"198.51.100.7:5060",
        request_uri: b"sip:bob@example.com",
        from_tag: b"ftag",
        to_tag: b"",
        call_id: b"call-1",
        cseq: 1,
        top_via: b"SIP/2.0/UDP 198.51.100.7:5060",
    }
}

// ---------------------------------------------------------------- non-INVITE client

#[test]
fn non_invite_client_timer_e_doubles_to_t2_then_f_times_out() {
    let mut s = Sim::new();
    let id = s.client("OPTIONS", "z9hG4bK1", Transport::Udp);
    s.run_until(40_000);
    assert_eq!(
        s.send_times(id),
        [
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert_eq!(
        s.when(|a| matches!(
            a,
            Action::Timeout {
                timer: TimerName::F,
                ..
            }
        )),
        [64 * T1]
    );
    assert_eq!(s.terminated_at(id), [64 * T1]);
    let st = s.table.stats();
    assert_eq!(
        (st.retransmissions, st.timed_out, st.client_created),
        (10, 1, 1)
    );
    assert!(s.table.is_empty());
    assert_eq!(s.table.next_deadline(), None);
}

#[test]
fn non_invite_client_proceeding_retransmits_every_t2_and_k_absorbs() {
    let mut s = Sim::new();
    let id = s.client("BYE", "z9hG4bK2", Transport::Udp);
    s.run_until(700);
    assert!(matches!(
        s.response("BYE", "z9hG4bK2", 100),
        ResponseMatch::Matched(_)
    ));
    assert_eq!(s.table.state(id), Some(TxnState::Proceeding));
    s.run_until(10_000);
    s.response("BYE", "z9hG4bK2", 200);
    assert_eq!(s.table.state(id), Some(TxnState::Completed));
    s.run_until(12_000);
    s.response("BYE", "z9hG4bK2", 200); // retransmission: absorbed
    s.run_until(40_000);
    // The E armed in Trying (1500) fires, then every T2.
    assert_eq!(s.send_times(id), [0, 500, 1500, 5500, 9500]);
    assert_eq!(
        s.passed(id),
        [
            (700, TuMsg::Response { status: 100 }),
            (10_000, TuMsg::Response { status: 200 })
        ]
    );
    assert_eq!(s.terminated_at(id), [15_000]); // K = T4
    assert!(s.when(|a| matches!(a, Action::Timeout { .. })).is_empty());
    // Late response after termination: stray.
    assert_eq!(s.response("BYE", "z9hG4bK2", 200), ResponseMatch::Unmatched);
    assert_eq!(s.table.stats().stray_responses, 1);
}

#[test]
fn non_invite_client_reliable_sends_once_and_k_is_zero() {
    let mut s = Sim::new();
    let a = s.client("OPTIONS", "z9hG4bKa", Transport::Tcp);
    let b = s.client("OPTIONS", "z9hG4bKb", Transport::Tls);
    s.run_until(1000);
    s.response("OPTIONS", "z9hG4bKa", 200);
    assert_eq!(s.table.state(a), Some(TxnState::Completed));
    s.run_until(1000);
    assert_eq!(s.terminated_at(a), [1000]);
    s.run_until(40_000);
    assert_eq!(s.send_times(a), [0]);
    assert_eq!(s.send_times(b), [0]);
    assert_eq!(s.terminated_at(b), [32_000]);
    assert_eq!(s.table.stats().retransmissions, 0);
}

// ---------------------------------------------------------------- INVITE client

#[test]
fn invite_client_timer_a_doubles_uncapped_until_b() {
    let mut s = Sim::new();
    let id = s.client("INVITE", "z9hG4bK3", Transport::Udp);
    s.run_until(40_000);
    assert_eq!(s.send_times(id), [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(
        s.when(|a| matches!(
            a,
            Action::Timeout {
                timer: TimerName::B,
                ..
            }
        )),
        [32_000]
    );
    assert_eq!(s.terminated_at(id), [32_000]);
    assert_eq!(s.table.stats().retransmissions, 6);
}

#[test]
fn invite_client_non_2xx_generates_ack_and_absorbs_retransmissions_until_d() {
    let mut s = Sim::new();
    let id = s.client("INVITE", "z9hG4bK4", Transport::Udp);
    s.run_until(600);
    s.response("INVITE", "z9hG4bK4", 180);
    s.run_until(2000);
    s.response("INVITE", "z9hG4bK4", 486);
    assert_eq!(
        s.log.last().map(|x| &x.1),
        Some(&Action::NeedAck {
            txn: id,
            status: 486,
            request: Bytes::from_static(b"INVITE request z9hG4bK4"),
        })
    );
    s.ack(id).unwrap();
    s.run_until(2500);
    s.response("INVITE", "z9hG4bK4", 486);
    s.response("INVITE", "z9hG4bK4", 486);
    s.run_until(60_000);
    assert_eq!(s.sends_of(id, "INVITE request z9hG4bK4"), [0, 500]);
    assert_eq!(s.sends_of(id, "ACK"), [2000, 2500, 2500]);
    assert_eq!(
        s.passed(id),
        [
            (600, TuMsg::Response { status: 180 }),
            (2000, TuMsg::Response { status: 486 })
        ]
    );
    assert_eq!(s.terminated_at(id), [2000 + 32_000]);
    assert!(s.when(|a| matches!(a, Action::Timeout { .. })).is_empty());
    assert_eq!(
        s.response("INVITE", "z9hG4bK4", 486),
        ResponseMatch::Unmatched
    );
    assert_eq!(s.ack(id), Err(TxnError::NotFound));
}

#[test]
fn invite_client_2xx_goes_accepted_passes_retransmissions_until_m() {
    let mut s = Sim::new();
    let id = s.client("INVITE", "z9hG4bK5", Transport::Udp);
    s.run_until(1000);
    s.response("INVITE", "z9hG4bK5", 200);
    assert_eq!(s.table.state(id), Some(TxnState::Accepted));
    s.run_until(5000);
    s.response("INVITE", "z9hG4bK5", 200);
    s.response("INVITE", "z9hG4bK5", 183); // ignored in Accepted
    assert_eq!(s.ack(id), Err(TxnError::WrongState));
    s.run_until(40_000);
    assert_eq!(s.send_times(id), [0, 500]);
    assert_eq!(
        s.passed(id),
        [
            (1000, TuMsg::Response { status: 200 }),
            (5000, TuMsg::Response { status: 200 })
        ]
    );
    assert!(s.when(|a| matches!(a, Action::NeedAck { .. })).is_empty());
    assert_eq!(s.terminated_at(id), [1000 + 32_000]);
    assert_eq!(
        s.response("INVITE", "z9hG4bK5", 200),
        ResponseMatch::Unmatched
    );
}

#[test]
fn invite_client_reliable_non_2xx_terminates_at_next_poll_after_ack() {
    let mut s = Sim::new();
    let id = s.client("INVITE", "z9hG4bK6", Transport::Tcp);
    s.run_until(3000);
    s.response("INVITE", "z9hG4bK6", 503);
    s.ack(id).unwrap();
    s.run_until(3000);
    assert_eq!(s.terminated_at(id), [3000]);
    assert_eq!(s.send_times(id), [0, 3000]);
    assert_eq!(s.table.stats().retransmissions, 0);
}

#[test]
fn invite_client_proceeding_waits_for_tu_without_b() {
    let mut s = Sim::new();
    let id = s.client("INVITE", "z9hG4bK7", Transport::Udp);
    s.run_until(100);
    s.response("INVITE", "z9hG4bK7", 100);
    s.run_until(300_000);
    assert_eq!(s.table.state(id), Some(TxnState::Proceeding));
    assert_eq!(s.send_times(id), [0]);
    assert_eq!(s.table.next_deadline(), None);
}

// ---------------------------------------------------------------- INVITE server

#[test]
fn invite_server_trying_after_200ms_then_g_until_h() {
    let mut s = Sim::new();
    let RequestMatch::New(id) = s.request(&req("INVITE", "z9hG4bKs1"), Transport::Udp) else {
        panic!("not new")
    };
    assert_eq!(s.passed(id), [(0, TuMsg::Request)]);
    s.run_until(200);
    assert_eq!(
        s.log.last().map(|x| &x.1),
        Some(&Action::NeedTrying {
            txn: id,
            request: Bytes::from_static(b"INVITE"),
        })
    );
    s.respond(id, 100, "").unwrap();
    s.run_until(500);
    assert!(matches!(
        s.request(&req("INVITE", "z9hG4bKs1"), Transport::Udp),
        RequestMatch::Existing(_)
    ));
    s.run_until(1000);
    s.respond(id, 486, "totag").unwrap();
    s.run_until(40_000);
    assert_eq!(s.sends_of(id, "SIP/2.0 100"), [200, 500]);
    assert_eq!(
        s.sends_of(id, "SIP/2.0 486"),
        [
            1000, 1500, 2500, 4500, 8500, 12500, 16500, 20500, 24500, 28500, 32500
        ]
    );
    assert_eq!(
        s.when(|a| matches!(
            a,
            Action::Timeout {
                timer: TimerName::H,
                ..
            }
        )),
        [33_000]
    );
    assert_eq!(s.terminated_at(id), [33_000]);
    assert_eq!(s.passed(id).len(), 1, "retransmitted INVITE reached the TU");
    assert_eq!(s.table.stats().retransmissions, 11);
}

#[test]
fn invite_server_ack_stops_g_and_i_waits_t4() {
    let mut s = Sim::new();
    let RequestMatch::New(id) = s.request(&req("INVITE", "z9hG4bKs2"), Transport::Udp) else {
        panic!()
    };
    s.respond(id, 404, "t").unwrap();
    s.run_until(2000);
    assert!(matches!(
        s.request(&req("ACK", "z9hG4bKs2"), Transport::Udp),
        RequestMatch::Existing(_)
    ));
    assert_eq!(s.table.state(id), Some(TxnState::Confirmed));
    s.run_until(3000);
    s.request(&req("ACK", "z9hG4bKs2"), Transport::Udp); // absorbed
    s.request(&req("INVITE", "z9hG4bKs2"), Transport::Udp); // absorbed in Confirmed
    s.run_until(40_000);
    assert_eq!(s.send_times(id), [0, 500, 1500]);
    assert_eq!(s.terminated_at(id), [2000 + 5000]);
    assert_eq!(s.passed(id), [(0, TuMsg::Request)]);
    // The TU answered before 200 ms: no 100 Trying was asked for.
    assert!(
        s.when(|a| matches!(a, Action::NeedTrying { .. }))
            .is_empty()
    );
}

#[test]
fn invite_server_2xx_accepted_absorbs_invites_passes_ack_until_l() {
    let mut s = Sim::new();
    let RequestMatch::New(id) = s.request(&req("INVITE", "z9hG4bKs3"), Transport::Udp) else {
        panic!()
    };
    s.run_until(100);
    s.respond(id, 200, "t").unwrap();
    assert_eq!(s.table.state(id), Some(TxnState::Accepted));
    s.run_until(600);
    s.request(&req("INVITE", "z9hG4bKs3"), Transport::Udp);
    s.respond(id, 200, "t").unwrap(); // the TU's own 2xx retransmission
    assert_eq!(s.respond(id, 486, "t"), Err(TxnError::WrongState));
    s.run_until(700);
    s.request(&req("ACK", "z9hG4bKs3"), Transport::Udp);
    s.run_until(40_000);
    assert_eq!(s.send_times(id), [100, 600]);
    assert_eq!(s.passed(id), [(0, TuMsg::Request), (700, TuMsg::Ack)]);
    assert_eq!(s.terminated_at(id), [100 + 32_000]);
    assert!(
        s.when(|a| matches!(a, Action::NeedTrying { .. }))
            .is_empty()
    );
}

#[test]
fn invite_server_reliable_no_g_h_still_runs_i_zero() {
    let mut s = Sim::new();
    let RequestMatch::New(a) = s.request(&req("INVITE", "z9hG4bKr1"), Transport::Tcp) else {
        panic!()
    };
    let RequestMatch::New(b) = s.request(&req("INVITE", "z9hG4bKr2"), Transport::Tcp) else {
        panic!()
    };
    s.respond(a, 480, "t").unwrap();
    s.respond(b, 480, "t").unwrap();
    s.run_until(1000);
    s.request(&req("ACK", "z9hG4bKr1"), Transport::Tcp);
    s.run_until(40_000);
    assert_eq!(s.send_times(a), [0]);
    assert_eq!(s.send_times(b), [0]);
    assert_eq!(s.terminated_at(a), [1000]);
    assert_eq!(s.terminated_at(b), [32_000]);
    assert_eq!(
        s.when(|x| matches!(x, Action::Timeout { timer: TimerName::H, txn } if *txn == b)),
        [32_000]
    );
}

#[test]
fn invite_server_immediate_trying_when_delay_zero() {
    let mut s = Sim::with(TimerConfig {
        trying_delay: Duration::ZERO,
        ..TimerConfig::default()
    });
    let RequestMatch::New(id) = s.request(&req("INVITE", "z9hG4bKt"), Transport::Udp) else {
        panic!()
    };
    assert_eq!(
        s.log.iter().map(|x| x.1.clone()).collect::<Vec<_>>()[1..],
        [Action::NeedTrying {
            txn: id,
            request: Bytes::from_static(b"INVITE"),
        }]
    );
}

// ---------------------------------------------------------------- non-INVITE server

#[test]
fn non_invite_server_absorbs_then_replays_last_response_until_j() {
    let mut s = Sim::new();
    let r = req("REGISTER", "z9hG4bKn1");
    let RequestMatch::New(id) = s.request(&r, Transport::Udp) else {
        panic!()
    };
    s.run_until(500);
    s.request(&r, Transport::Udp); // Trying: absorbed
    s.respond(id, 183, "").unwrap();
    s.run_until(1500);
    s.request(&r, Transport::Udp); // Proceeding: replays 183
    s.run_until(2000);
    s.respond(id, 200, "t").unwrap();
    s.run_until(3500);
    s.request(&r, Transport::Udp); // Completed: replays 200
    assert_eq!(s.respond(id, 200, "t"), Err(TxnError::WrongState));
    s.run_until(60_000);
    assert_eq!(s.sends_of(id, "SIP/2.0 183"), [500, 1500]);
    assert_eq!(s.sends_of(id, "SIP/2.0 200"), [2000, 3500]);
    assert_eq!(s.terminated_at(id), [2000 + 32_000]);
    assert_eq!(s.passed(id), [(0, TuMsg::Request)]);
    // After termination the same request is a new transaction.
    assert!(matches!(
        s.request(&r, Transport::Udp),
        RequestMatch::New(_)
    ));
}

#[test]
fn non_invite_server_reliable_j_zero() {
    let mut s = Sim::new();
    let RequestMatch::New(id) = s.request(&req("BYE", "z9hG4bKn2"), Transport::Tls) else {
        panic!()
    };
    s.run_until(10);
    s.respond(id, 200, "t").unwrap();
    s.run_until(10);
    assert_eq!(s.terminated_at(id), [10]);
}

// ---------------------------------------------------------------- matching, CANCEL, errors

#[test]
fn server_matching_uses_branch_sent_by_and_method() {
    let mut s = Sim::new();
    let a = s.request(&req("INVITE", "z9hG4bKm"), Transport::Udp);
    let other_host = RequestInfo {
        sent_by: b"203.0.113.9",
        ..req("INVITE", "z9hG4bKm")
    };
    let b = s.request(&other_host, Transport::Udp);
    let c = s.request(&req("BYE", "z9hG4bKm"), Transport::Udp);
    let upper = RequestInfo {
        sent_by: b"198.51.100.7:5060",
        ..req("INVITE", "z9hG4bKm")
    };
    assert!(matches!(a, RequestMatch::New(_)));
    assert!(matches!(b, RequestMatch::New(_)));
    assert!(matches!(c, RequestMatch::New(_)));
    assert_eq!(
        s.request(&upper, Transport::Udp),
        match a {
            RequestMatch::New(id) => RequestMatch::Existing(id),
            x => x,
        }
    );
    assert_eq!(s.table.len(), 3);
    assert_eq!(
        s.request(&req("ACK", "z9hG4bKother"), Transport::Udp),
        RequestMatch::UnmatchedAck
    );
    assert_eq!(s.table.stats().unmatched_acks, 1);
}

#[test]
fn cancel_server_flow_finds_the_invite_and_completes_both() {
    let mut s = Sim::new();
    let RequestMatch::New(inv) = s.request(&req("INVITE", "z9hG4bKc1"), Transport::Udp) else {
        panic!()
    };
    s.respond(inv, 180, "tt").unwrap();
    s.run_until(3000);
    let cancel = req("CANCEL", "z9hG4bKc1");
    let RequestMatch::New(can) = s.request(&cancel, Transport::Udp) else {
        panic!("CANCEL gets its own transaction")
    };
    assert_ne!(can, inv);
    assert_eq!(s.table.kind(can), Some(TxnKind::ServerNonInvite));
    assert_eq!(s.table.find_cancel_target(&cancel), Some(inv));
    assert_eq!(
        s.table.find_cancel_target(&req("CANCEL", "z9hG4bKzz")),
        None
    );
    s.respond(can, 200, "tt").unwrap();
    s.respond(inv, 487, "tt").unwrap();
    s.run_until(3100);
    s.request(&req("ACK", "z9hG4bKc1"), Transport::Udp);
    assert_eq!(s.table.state(inv), Some(TxnState::Confirmed));
    s.run_until(60_000);
    assert_eq!(s.terminated_at(inv), [3100 + 5000]);
    assert_eq!(s.terminated_at(can), [3000 + 32_000]);
    assert_eq!(s.sends_of(inv, "SIP/2.0 487"), [3000]);
}

#[test]
fn cancel_client_flow_487_or_cancel_guard() {
    let mut s = Sim::new();
    // 1: the 487 arrives.
    let inv = s.client("INVITE", "z9hG4bKk1", Transport::Udp);
    s.run_until(200);
    s.response("INVITE", "z9hG4bKk1", 180);
    s.run_until(1000);
    let can = s.client("CANCEL", "z9hG4bKk1", Transport::Udp);
    assert_eq!(s.table.kind(can), Some(TxnKind::ClientNonInvite));
    s.run_until(1100);
    // The CANCEL's 200 goes to the CANCEL transaction, not the INVITE.
    assert_eq!(
        s.response("CANCEL", "z9hG4bKk1", 200),
        ResponseMatch::Matched(can)
    );
    assert_eq!(s.table.state(inv), Some(TxnState::Proceeding));
    s.response("INVITE", "z9hG4bKk1", 487);
    s.ack(inv).unwrap();
    // 2: the peer never answers the INVITE after our CANCEL.
    let inv2 = s.client("INVITE", "z9hG4bKk2", Transport::Udp);
    s.run_until(1200);
    s.response("INVITE", "z9hG4bKk2", 100);
    s.run_until(2000);
    s.client("CANCEL", "z9hG4bKk2", Transport::Udp);
    s.response("CANCEL", "z9hG4bKk2", 200);
    s.run_until(100_000);
    assert_eq!(s.terminated_at(inv), [1100 + 32_000]);
    assert_eq!(
        s.when(
            |a| matches!(a, Action::Timeout { txn, timer: TimerName::CancelGuard } if *txn == inv2)
        ),
        [2000 + 32_000]
    );
    assert_eq!(s.terminated_at(inv2), [2000 + 32_000]);
    assert_eq!(s.sends_of(can, "CANCEL request z9hG4bKk1"), [1000]);
    assert!(s.table.is_empty());
}

#[test]
fn transport_errors_end_transactions_and_reach_the_tu() {
    let mut s = Sim::new();
    let ci = s.client("INVITE", "z9hG4bKe1", Transport::Udp);
    let cn = s.client("MESSAGE", "z9hG4bKe2", Transport::Tcp);
    let RequestMatch::New(si) = s.request(&req("INVITE", "z9hG4bKe3"), Transport::Udp) else {
        panic!()
    };
    let RequestMatch::New(sn) = s.request(&req("INFO", "z9hG4bKe4"), Transport::Udp) else {
        panic!()
    };
    s.run_until(100);
    s.respond(si, 500, "t").unwrap();
    s.run_until(700);
    for id in [ci, cn, si, sn] {
        s.table.transport_error(s.now, id, &mut s.out).unwrap();
        s.drain();
        assert_eq!(s.terminated_at(id), [700]);
        assert_eq!(
            s.when(|a| matches!(a, Action::TransportError { txn } if *txn == id)),
            [700]
        );
    }
    assert_eq!(
        s.table.transport_error(s.now, ci, &mut s.out),
        Err(TxnError::NotFound)
    );
    assert_eq!(s.table.stats().transport_errors, 4);
    s.run_until(100_000);
    assert_eq!(s.send_times(ci), [0, 500]);
    assert_eq!(s.send_times(si), [100, 600]);
    assert!(s.table.is_empty());
}

#[test]
fn rfc2543_fallback_matching() {
    let mut s = Sim::new();
    let old = req("INVITE", ""); // no branch at all
    let RequestMatch::New(id) = s.request(&old, Transport::Udp) else {
        panic!()
    };
    // A retransmission with the same dialog fields matches (sent-by is not part of the RFC 2543 key).
    let retrans = RequestInfo {
        sent_by: b"elsewhere",
        ..old
    };
    assert_eq!(
        s.request(&retrans, Transport::Udp),
        RequestMatch::Existing(id)
    );
    // Different CSeq or Call-ID: a different transaction.
    assert!(matches!(
        s.request(&RequestInfo { cseq: 2, ..old }, Transport::Udp),
        RequestMatch::New(_)
    ));
    // Same fields but a To tag the INVITE did not have: conflict, no transaction.
    assert_eq!(
        s.request(
            &RequestInfo {
                to_tag: b"x",
                ..old
            },
            Transport::Udp
        ),
        RequestMatch::Conflict
    );
    // CANCEL targets by the same fields.
    assert_eq!(s.table.find_cancel_target(&req("CANCEL", "")), Some(id));
    s.respond(id, 486, "srv-tag").unwrap();
    // The ACK carries the response's To tag; a wrong tag does not match.
    let bad_ack = RequestInfo {
        to_tag: b"other",
        ..req("ACK", "")
    };
    assert_eq!(
        s.request(&bad_ack, Transport::Udp),
        RequestMatch::UnmatchedAck
    );
    let ack = RequestInfo {
        to_tag: b"srv-tag",
        ..req("ACK", "")
    };
    assert_eq!(s.request(&ack, Transport::Udp), RequestMatch::Existing(id));
    assert_eq!(s.table.state(id), Some(TxnState::Confirmed));
    // A branch without the cookie also uses the fallback.
    let odd = RequestInfo {
        branch: b"1234",
        ..req("OPTIONS", "")
    };
    let RequestMatch::New(o) = s.request(&odd, Transport::Udp) else {
        panic!()
    };
    let odd2 = RequestInfo {
        branch: b"5678",
        ..odd
    };
    assert_eq!(s.request(&odd2, Transport::Udp), RequestMatch::Existing(o));
}

#[test]
fn misuse_gives_typed_errors() {
    let mut s = Sim::new();
    let id = s.client("INVITE", "z9hG4bKu", Transport::Udp);
    let dup = s.table.start_client(
        s.now,
        ClientRequest {
            method: b"INVITE",
            branch: b"z9hG4bKu",
            bytes: Bytes::new(),
            dest: dest(Transport::Udp),
        },
        &mut s.out,
    );
    assert_eq!(dup, Err(TxnError::Duplicate));
    let ack = s.table.start_client(
        s.now,
        ClientRequest {
            method: b"ACK",
            branch: b"z9hG4bKv",
            bytes: Bytes::new(),
            dest: dest(Transport::Udp),
        },
        &mut s.out,
    );
    assert_eq!(ack, Err(TxnError::InvalidMethod));
    assert_eq!(s.respond(id, 200, ""), Err(TxnError::WrongKind));
    let RequestMatch::New(srv) = s.request(&req("INVITE", "z9hG4bKw"), Transport::Udp) else {
        panic!()
    };
    assert_eq!(s.respond(srv, 99, ""), Err(TxnError::InvalidStatus(99)));
    assert_eq!(s.respond(srv, 700, ""), Err(TxnError::InvalidStatus(700)));
    assert_eq!(s.ack(srv), Err(TxnError::WrongKind));
    // A response with an out-of-range status is ignored by the machine.
    s.response("INVITE", "z9hG4bKu", 42);
    assert_eq!(s.table.state(id), Some(TxnState::Calling));
}

// ---------------------------------------------------------------- property test: random event sequences

/// splitmix64: a tiny deterministic generator so failures reproduce from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const STATUSES: &[u16] = &[
    0, 99, 100, 180, 183, 200, 202, 299, 300, 404, 486, 487, 503, 603, 699, 700, 999,
];

/// Everything one random run created, to drive the TU's closing moves.
struct Run {
    servers: Vec<(TxnId, bool)>, // (id, is INVITE)
    client: Option<TxnId>,
    client_invite: Option<TxnId>,
}

fn random_step(s: &mut Sim, rng: &mut Rng, kind: TxnKind, transport: Transport, run: &mut Run) {
    let branch = "z9hG4bKprop";
    let method = match kind {
        TxnKind::ClientInvite | TxnKind::ServerInvite => "INVITE",
        _ => "NOTIFY",
    };
    // Serve pending NeedAck/NeedTrying sometimes, as a caller would (or fail to).
    let pending: Vec<Action> = s
        .log
        .iter()
        .filter(|(t, a)| {
            *t == s.ms() && matches!(a, Action::NeedAck { .. } | Action::NeedTrying { .. })
        })
        .map(|(_, a)| a.clone())
        .collect();
    for a in pending {
        if rng.below(2) == 0 {
            match a {
                Action::NeedAck { txn, .. } => {
                    let _ = s.ack(txn);
                }
                Action::NeedTrying { txn, .. } => {
                    let _ = s.respond(txn, 100, "");
                }
                _ => {}
            }
        }
    }
    match kind {
        TxnKind::ClientInvite | TxnKind::ClientNonInvite => match rng.below(6) {
            0..=2 => {
                let status = rng.pick(STATUSES);
                s.response(method, branch, status);
            }
            3 => {
                if let Some(id) = run.client_invite {
                    let _ = s.ack(id);
                }
            }
            4 => {
                if let Some(id) = run.client {
                    let _ = s.table.transport_error(s.now, id, &mut s.out);
                    s.drain();
                }
            }
            _ => {
                if kind == TxnKind::ClientInvite {
                    start_cancel(s, transport);
                } else {
                    s.response("CANCEL", branch, rng.pick(STATUSES));
                }
            }
        },
        TxnKind::ServerInvite | TxnKind::ServerNonInvite => {
            let id = match run.servers.len() as u64 {
                0 => None,
                n => run.servers.get(rng.below(n) as usize).map(|x| x.0),
            };
            match rng.below(6) {
                0 => {
                    // After the transaction ended, a late retransmission starts a new one the TU must answer.
                    if let RequestMatch::New(n) = s.request(&req(method, branch), transport) {
                        run.servers.push((n, kind == TxnKind::ServerInvite));
                    }
                }
                1 => {
                    s.request(&req("ACK", branch), transport);
                }
                2 | 3 => {
                    if let Some(id) = id {
                        let _ = s.respond(id, rng.pick(STATUSES), "tag");
                    }
                }
                4 => {
                    if let Some(id) = id {
                        let _ = s.table.transport_error(s.now, id, &mut s.out);
                        s.drain();
                    }
                }
                _ => {
                    if let RequestMatch::New(c) = s.request(&req("CANCEL", branch), transport) {
                        run.servers.push((c, false));
                    }
                }
            }
        }
    }
}

fn start_cancel(s: &mut Sim, transport: Transport) {
    let _ = s.table.start_client(
        s.now,
        ClientRequest {
            method: b"CANCEL",
            branch: b"z9hG4bKprop",
            bytes: Bytes::from_static(b"CANCEL"),
            dest: dest(transport),
        },
        &mut s.out,
    );
    s.drain();
}

#[test]
fn random_event_sequences_never_panic_and_always_terminate() {
    for seed in 0..10_000u64 {
        let mut rng = Rng(seed);
        let t1 = rng.pick(&[100u64, 500]);
        let cfg = TimerConfig {
            t1: Duration::from_millis(t1),
            t2: Duration::from_millis(t1 * 8),
            t4: Duration::from_millis(t1 * 10),
            timer_d: Duration::from_millis(t1 * 64),
            trying_delay: Duration::from_millis(rng.pick(&[0u64, 200])),
        };
        let bound = 64 * t1 + 10 * t1;
        let mut s = Sim::with(cfg);
        let kind = rng.pick(&[
            TxnKind::ClientInvite,
            TxnKind::ClientNonInvite,
            TxnKind::ServerInvite,
            TxnKind::ServerNonInvite,
        ]);
        let transport = rng.pick(&[Transport::Udp, Transport::Tcp]);
        let mut run = Run {
            servers: Vec::new(),
            client: None,
            client_invite: None,
        };
        match kind {
            TxnKind::ClientInvite => {
                run.client = Some(s.client("INVITE", "z9hG4bKprop", transport));
                run.client_invite = run.client;
            }
            TxnKind::ClientNonInvite => {
                run.client = Some(s.client("NOTIFY", "z9hG4bKprop", transport));
            }
            TxnKind::ServerInvite | TxnKind::ServerNonInvite => {
                let m = if kind == TxnKind::ServerInvite {
                    "INVITE"
                } else {
                    "NOTIFY"
                };
                if let RequestMatch::New(id) = s.request(&req(m, "z9hG4bKprop"), transport) {
                    run.servers.push((id, kind == TxnKind::ServerInvite));
                }
            }
        }
        for _ in 0..rng.below(20) {
            let t = s.ms() + rng.below(4 * t1 * 2);
            s.run_until(t);
            random_step(&mut s, &mut rng, kind, transport, &mut run);
        }
        // The TU's closing moves: answer every server transaction still waiting for it, CANCEL a pending INVITE.
        for &(id, _) in &run.servers {
            if matches!(
                s.table.state(id),
                Some(TxnState::Trying | TxnState::Proceeding)
            ) {
                let status = rng.pick(&[200u16, 486]);
                s.respond(id, status, "tag").unwrap();
            }
        }
        if let Some(id) = run.client_invite
            && matches!(
                s.table.state(id),
                Some(TxnState::Calling | TxnState::Proceeding)
            )
        {
            start_cancel(&mut s, transport);
        }
        let quiet_from = s.ms();
        let log_len = s.log.len();
        s.run_until(quiet_from + bound);
        assert!(s.table.is_empty(), "seed {seed}: {:?} still live", kind);
        assert_eq!(s.table.next_deadline(), None, "seed {seed}");
        if transport.is_reliable() {
            assert!(
                !s.log[log_len..]
                    .iter()
                    .any(|(_, a)| matches!(a, Action::Send { .. })),
                "seed {seed}: timer-driven send on a reliable transport"
            );
        }
        // Nothing mentions a transaction after its Terminated, and each terminates once.
        let mut dead: Vec<TxnId> = Vec::new();
        for (_, a) in &s.log {
            let id = match a {
                Action::Send { txn, .. }
                | Action::PassToTu { txn, .. }
                | Action::NeedAck { txn, .. }
                | Action::NeedTrying { txn, .. }
                | Action::Timeout { txn, .. }
                | Action::TransportError { txn }
                | Action::Terminated { txn } => *txn,
            };
            assert!(
                !dead.contains(&id),
                "seed {seed}: action after termination: {a:?}"
            );
            if matches!(a, Action::Terminated { .. }) {
                dead.push(id);
            }
        }
        let st = s.table.stats();
        assert_eq!(
            st.client_created + st.server_created,
            st.terminated,
            "seed {seed}"
        );
    }
}

#[test]
fn out_of_range_timer_config_is_clamped() {
    let mut s = Sim::with(TimerConfig {
        t1: Duration::MAX,
        t2: Duration::ZERO,
        t4: Duration::MAX,
        timer_d: Duration::MAX,
        trying_delay: Duration::MAX,
    });
    assert_eq!(s.table.config().t1, Duration::from_secs(3600));
    assert_eq!(s.table.config().t2, Duration::from_secs(3600));
    let id = s.client("INVITE", "z9hG4bKbig", Transport::Udp);
    assert_eq!(
        s.table.next_deadline(),
        Some(s.t0 + Duration::from_secs(3600))
    );
    s.run_until(64 * 3600 * 1000);
    assert_eq!(s.terminated_at(id), [64 * 3600 * 1000]);
    let mut z = Sim::with(TimerConfig {
        t1: Duration::ZERO,
        ..TimerConfig::default()
    });
    let id = z.client("OPTIONS", "z9hG4bKzero", Transport::Udp);
    z.run_until(1000);
    assert_eq!(z.terminated_at(id), [64]);
}

#[test]
fn stale_heap_entries_are_compacted_when_they_dominate() {
    let mut s = Sim::new();
    let n = 1000;
    for i in 0..n {
        let b = format!("z9hG4bKh{i}");
        s.client("OPTIONS", &b, Transport::Tcp);
        s.response("OPTIONS", &b, 200);
    }
    // Each left a stale Timer F entry; the K = 0 entries fire at the next poll.
    assert_eq!(s.table.heap_len(), 2 * n);
    s.run_until(1);
    assert!(s.table.is_empty());
    assert!(
        s.table.heap_len() <= 64,
        "heap kept {} stale entries",
        s.table.heap_len()
    );
    assert_eq!(s.table.next_deadline(), None);
}
