//! Non-INVITE client transaction: RFC 3261 17.1.2 (figure 6).
use std::time::Duration;

use bytes::Bytes;

use super::timers::{LIFE, RETX, TimerName};
use super::{Cx, TuMsg, TxnState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct ClientNonInvite {
    state: State,
    request: Bytes,
    e_interval: Duration,
}

impl ClientNonInvite {
    pub fn start(cx: &mut Cx<'_>, request: Bytes) -> Self {
        cx.send(&request, false);
        let t1 = cx.cfg.t1;
        if !cx.reliable() {
            cx.arm(RETX, t1, TimerName::E);
        }
        cx.arm(LIFE, cx.cfg.t1x64(), TimerName::F);
        ClientNonInvite {
            state: State::Trying,
            request,
            e_interval: t1,
        }
    }

    pub fn state(&self) -> TxnState {
        match self.state {
            State::Trying => TxnState::Trying,
            State::Proceeding => TxnState::Proceeding,
            State::Completed => TxnState::Completed,
            State::Terminated => TxnState::Terminated,
        }
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    pub fn on_timer(&mut self, cx: &mut Cx<'_>, timer: TimerName) {
        match (self.state, timer) {
            (State::Trying, TimerName::E) => {
                cx.send(&self.request, true);
                self.e_interval = self.e_interval.saturating_mul(2).min(cx.cfg.t2);
                cx.arm(RETX, self.e_interval, TimerName::E);
            }
            (State::Proceeding, TimerName::E) => {
                cx.send(&self.request, true);
                cx.arm(RETX, cx.cfg.t2, TimerName::E);
            }
            (State::Trying | State::Proceeding, TimerName::F) => {
                cx.timeout(timer);
                self.state = State::Terminated;
            }
            (State::Completed, TimerName::K) => self.state = State::Terminated,
            _ => {}
        }
    }

    pub fn on_response(&mut self, cx: &mut Cx<'_>, status: u16, bytes: &Bytes) {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            // Completed absorbs retransmitted finals; nothing reaches a terminated machine.
            return;
        }
        match status {
            100..=199 => {
                self.state = State::Proceeding;
                cx.pass(TuMsg::Response { status }, bytes);
            }
            200..=699 => {
                self.state = State::Completed;
                cx.timers.cancel(RETX);
                let k = if cx.reliable() {
                    Duration::ZERO
                } else {
                    cx.cfg.t4
                };
                cx.arm(LIFE, k, TimerName::K);
                cx.pass(TuMsg::Response { status }, bytes);
            }
            _ => {}
        }
    }

    pub fn on_transport_error(&mut self, cx: &mut Cx<'_>) {
        if matches!(self.state, State::Trying | State::Proceeding) {
            cx.transport_error();
            self.state = State::Terminated;
        }
    }
}
