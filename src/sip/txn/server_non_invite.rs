//! Non-INVITE server transaction: RFC 3261 17.2.2 (figure 8).
use std::time::Duration;

use bytes::Bytes;

use super::timers::{LIFE, TimerName};
use super::{Cx, TxnError, TxnState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct ServerNonInvite {
    state: State,
    last_response: Option<Bytes>,
}

impl ServerNonInvite {
    /// The table has already passed the request to the TU.
    pub fn start() -> Self {
        ServerNonInvite {
            state: State::Trying,
            last_response: None,
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

    /// A retransmission of the request: answered with the last response, absorbed in Trying.
    pub fn on_request(&mut self, cx: &mut Cx<'_>) {
        if matches!(self.state, State::Proceeding | State::Completed)
            && let Some(r) = &self.last_response
        {
            cx.send(r, true);
        }
    }

    pub fn send_response(
        &mut self,
        cx: &mut Cx<'_>,
        status: u16,
        bytes: Bytes,
    ) -> Result<(), TxnError> {
        match (self.state, status) {
            (State::Trying | State::Proceeding, 100..=199) => {
                cx.send(&bytes, false);
                self.last_response = Some(bytes);
                self.state = State::Proceeding;
            }
            (State::Trying | State::Proceeding, 200..=699) => {
                cx.send(&bytes, false);
                self.last_response = Some(bytes);
                self.state = State::Completed;
                let j = if cx.reliable() {
                    Duration::ZERO
                } else {
                    cx.cfg.t1x64()
                };
                cx.arm(LIFE, j, TimerName::J);
            }
            (_, 100..=699) => return Err(TxnError::WrongState),
            _ => return Err(TxnError::InvalidStatus(status)),
        }
        Ok(())
    }

    pub fn on_timer(&mut self, _cx: &mut Cx<'_>, timer: TimerName) {
        if (self.state, timer) == (State::Completed, TimerName::J) {
            self.state = State::Terminated;
        }
    }

    pub fn on_transport_error(&mut self, cx: &mut Cx<'_>) {
        if self.state != State::Terminated {
            cx.transport_error();
            self.state = State::Terminated;
        }
    }
}
