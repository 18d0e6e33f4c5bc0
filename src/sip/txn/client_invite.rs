//! INVITE client transaction: RFC 3261 17.1.1 (figure 5) with the RFC 6026 Accepted state.
use std::time::Duration;

use bytes::Bytes;

use super::timers::{AUX, LIFE, RETX, TimerName};
use super::{Action, Cx, TuMsg, TxnError, TxnState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct ClientInvite {
    state: State,
    request: Bytes,
    /// ACK for the non-2xx final response, once the caller built it; resent on each retransmitted final.
    ack: Option<Bytes>,
    a_interval: Duration,
}

impl ClientInvite {
    pub fn start(cx: &mut Cx<'_>, request: Bytes) -> Self {
        cx.send(&request, false);
        let t1 = cx.cfg.t1;
        if !cx.reliable() {
            cx.arm(RETX, t1, TimerName::A);
        }
        cx.arm(LIFE, cx.cfg.t1x64(), TimerName::B);
        ClientInvite {
            state: State::Calling,
            request,
            ack: None,
            a_interval: t1,
        }
    }

    pub fn state(&self) -> TxnState {
        match self.state {
            State::Calling => TxnState::Calling,
            State::Proceeding => TxnState::Proceeding,
            State::Completed => TxnState::Completed,
            State::Accepted => TxnState::Accepted,
            State::Terminated => TxnState::Terminated,
        }
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    pub fn on_timer(&mut self, cx: &mut Cx<'_>, timer: TimerName) {
        match (self.state, timer) {
            (State::Calling, TimerName::A) => {
                cx.send(&self.request, true);
                // No T2 cap for INVITE: A doubles until B ends the transaction.
                self.a_interval = self.a_interval.saturating_mul(2);
                cx.arm(RETX, self.a_interval, TimerName::A);
            }
            (State::Calling, TimerName::B)
            | (State::Calling | State::Proceeding, TimerName::CancelGuard) => {
                cx.timeout(timer);
                self.state = State::Terminated;
            }
            (State::Completed, TimerName::D) | (State::Accepted, TimerName::M) => {
                self.state = State::Terminated;
            }
            _ => {}
        }
    }

    pub fn on_response(&mut self, cx: &mut Cx<'_>, status: u16, bytes: &Bytes) {
        match self.state {
            State::Calling | State::Proceeding => match status {
                100..=199 => {
                    self.state = State::Proceeding;
                    cx.timers.cancel(RETX);
                    // B only acts in Calling; from here the TU (CANCEL, guarded by CancelGuard) decides.
                    cx.timers.cancel(LIFE);
                    cx.pass(TuMsg::Response { status }, bytes);
                }
                200..=299 => {
                    self.state = State::Accepted;
                    cx.timers.cancel(RETX);
                    cx.timers.cancel(AUX);
                    cx.arm(LIFE, cx.cfg.t1x64(), TimerName::M);
                    cx.pass(TuMsg::Response { status }, bytes);
                }
                300..=699 => {
                    self.state = State::Completed;
                    cx.timers.cancel(RETX);
                    cx.timers.cancel(AUX);
                    let d = if cx.reliable() {
                        Duration::ZERO
                    } else {
                        cx.cfg.timer_d
                    };
                    cx.arm(LIFE, d, TimerName::D);
                    cx.pass(TuMsg::Response { status }, bytes);
                    cx.out.push(Action::NeedAck {
                        txn: cx.id,
                        status,
                        request: self.request.clone(),
                    });
                }
                _ => {}
            },
            State::Completed => {
                // A retransmitted final response: answer with the same ACK, never bother the TU again.
                if status >= 300
                    && let Some(ack) = &self.ack
                {
                    cx.send(ack, true);
                }
            }
            State::Accepted => {
                // RFC 6026 7.2: every 2xx (retransmissions, other forks) goes to the TU, which ACKs it.
                if (200..=299).contains(&status) {
                    cx.pass(TuMsg::Response { status }, bytes);
                }
            }
            State::Terminated => {}
        }
    }

    pub fn provide_ack(&mut self, cx: &mut Cx<'_>, ack: Bytes) -> Result<(), TxnError> {
        if self.state != State::Completed {
            return Err(TxnError::WrongState);
        }
        cx.send(&ack, self.ack.is_some());
        self.ack = Some(ack);
        Ok(())
    }

    /// The TU sent a CANCEL for this INVITE: without a final response in 64*T1 the transaction ends.
    pub fn cancel_sent(&mut self, cx: &mut Cx<'_>) {
        if matches!(self.state, State::Calling | State::Proceeding)
            && cx.timers.slots[AUX].is_none()
        {
            cx.arm(AUX, cx.cfg.t1x64(), TimerName::CancelGuard);
        }
    }

    pub fn on_transport_error(&mut self, cx: &mut Cx<'_>) {
        if matches!(
            self.state,
            State::Calling | State::Proceeding | State::Completed
        ) {
            cx.transport_error();
            self.state = State::Terminated;
        }
    }
}
