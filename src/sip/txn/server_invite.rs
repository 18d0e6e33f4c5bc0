//! INVITE server transaction: RFC 3261 17.2.1 (figure 7) with the RFC 6026 Accepted state.
use std::time::Duration;

use bytes::Bytes;

use super::timers::{AUX, LIFE, RETX, TimerName};
use super::{Action, Cx, TuMsg, TxnError, TxnState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct ServerInvite {
    state: State,
    /// The INVITE, handed back with [`Action::NeedTrying`].
    request: Bytes,
    /// Most recent provisional (Proceeding) or the final non-2xx response (Completed).
    last_response: Option<Bytes>,
    g_interval: Duration,
}

impl ServerInvite {
    /// The table has already passed the INVITE to the TU.
    pub fn start(cx: &mut Cx<'_>, request: Bytes) -> Self {
        let delay = cx.cfg.trying_delay;
        if delay.is_zero() {
            cx.out.push(Action::NeedTrying {
                txn: cx.id,
                request: request.clone(),
            });
        } else {
            cx.arm(AUX, delay, TimerName::Trying);
        }
        ServerInvite {
            state: State::Proceeding,
            request,
            last_response: None,
            g_interval: cx.cfg.t1,
        }
    }

    pub fn state(&self) -> TxnState {
        match self.state {
            State::Proceeding => TxnState::Proceeding,
            State::Completed => TxnState::Completed,
            State::Confirmed => TxnState::Confirmed,
            State::Accepted => TxnState::Accepted,
            State::Terminated => TxnState::Terminated,
        }
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// A request that matched this transaction: a retransmitted INVITE or an ACK.
    pub fn on_request(&mut self, cx: &mut Cx<'_>, is_ack: bool, bytes: &Bytes) {
        match (self.state, is_ack) {
            (State::Proceeding | State::Completed, false) => {
                if let Some(r) = &self.last_response {
                    cx.send(r, true);
                }
            }
            (State::Completed, true) => {
                self.state = State::Confirmed;
                cx.timers.cancel(RETX);
                let i = if cx.reliable() {
                    Duration::ZERO
                } else {
                    cx.cfg.t4
                };
                cx.arm(LIFE, i, TimerName::I);
            }
            // RFC 6026 8.7: an ACK matching an Accepted transaction goes to the TU (it ends 2xx retransmission).
            (State::Accepted, true) => cx.pass(TuMsg::Ack, bytes),
            // Retransmitted INVITEs in Accepted (RFC 6026 8.5), ACKs in Proceeding/Confirmed: absorbed.
            _ => {}
        }
    }

    pub fn send_response(
        &mut self,
        cx: &mut Cx<'_>,
        status: u16,
        bytes: Bytes,
    ) -> Result<(), TxnError> {
        match (self.state, status) {
            (State::Proceeding, 100..=199) => {
                cx.timers.cancel(AUX);
                cx.send(&bytes, false);
                self.last_response = Some(bytes);
            }
            (State::Proceeding, 200..=299) => {
                cx.timers.cancel(AUX);
                cx.send(&bytes, false);
                self.last_response = None;
                self.state = State::Accepted;
                cx.arm(LIFE, cx.cfg.t1x64(), TimerName::L);
            }
            (State::Proceeding, 300..=699) => {
                cx.timers.cancel(AUX);
                cx.send(&bytes, false);
                self.last_response = Some(bytes);
                self.state = State::Completed;
                if !cx.reliable() {
                    self.g_interval = cx.cfg.t1;
                    cx.arm(RETX, self.g_interval, TimerName::G);
                }
                cx.arm(LIFE, cx.cfg.t1x64(), TimerName::H);
            }
            // The TU retransmits its 2xx (RFC 3261 13.3.1.4) through the Accepted transaction.
            (State::Accepted, 200..=299) => cx.send(&bytes, true),
            (_, 100..=699) => return Err(TxnError::WrongState),
            _ => return Err(TxnError::InvalidStatus(status)),
        }
        Ok(())
    }

    pub fn on_timer(&mut self, cx: &mut Cx<'_>, timer: TimerName) {
        match (self.state, timer) {
            (State::Proceeding, TimerName::Trying) if self.last_response.is_none() => {
                cx.out.push(Action::NeedTrying {
                    txn: cx.id,
                    request: self.request.clone(),
                });
            }
            (State::Completed, TimerName::G) => {
                if let Some(r) = &self.last_response {
                    cx.send(r, true);
                }
                self.g_interval = self.g_interval.saturating_mul(2).min(cx.cfg.t2);
                cx.arm(RETX, self.g_interval, TimerName::G);
            }
            (State::Completed, TimerName::H) => {
                cx.timeout(timer);
                self.state = State::Terminated;
            }
            (State::Confirmed, TimerName::I) | (State::Accepted, TimerName::L) => {
                self.state = State::Terminated;
            }
            _ => {}
        }
    }

    pub fn on_transport_error(&mut self, cx: &mut Cx<'_>) {
        match self.state {
            State::Proceeding | State::Completed => {
                cx.transport_error();
                self.state = State::Terminated;
            }
            // The failed send was a TU 2xx retransmission; Timer L still ends the transaction.
            State::Accepted => cx.transport_error(),
            State::Confirmed | State::Terminated => {}
        }
    }
}
