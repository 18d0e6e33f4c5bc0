//! `tollgate ctl` against the running daemon. The control thread hands each request to the signaling
//! thread, which owns every call, trunk and ban, and waits for its answer: nothing is shared or locked, and an
//! answer is always consistent with what the B2BUA is doing at that moment.
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{App, AppMsg};
use crate::mgmt::ctl::{Answer, BanInfo, CtlReply, CtlRequest, FlowInfo, TargetInfo, TrunkInfo};
use crate::signaling::LoopHandle;

/// A request travelling to the signaling thread with the channel its reply goes back on.
#[derive(Debug)]
pub struct CtlCall {
    pub req: CtlRequest,
    pub reply: mpsc::SyncSender<CtlReply>,
}

/// How long a control client waits for the signaling thread (a loop that does not answer in this long is
/// stuck, and the watchdog will say so too).
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// The answer function for [`crate::mgmt::ctl::CtlServer::spawn_answering`].
pub fn bridge(handle: LoopHandle<AppMsg>) -> Answer {
    std::sync::Arc::new(move |req: &CtlRequest| {
        let (tx, rx) = mpsc::sync_channel(1);
        handle.send(AppMsg::Ctl(Box::new(CtlCall {
            req: req.clone(),
            reply: tx,
        })));
        rx.recv_timeout(ANSWER_WAIT).unwrap_or_else(|_| {
            CtlReply::Error(format!(
                "the signaling thread did not answer within {} s",
                ANSWER_WAIT.as_secs()
            ))
        })
    })
}

/// Calls per second per trunk between two looks at the finished-call totals.
#[derive(Debug, Default)]
pub(super) struct CpsMeter {
    last: HashMap<String, (u64, Instant)>,
    rate: HashMap<String, f64>,
}

impl CpsMeter {
    /// Called about once a second with each trunk's finished-call total.
    pub fn sample(&mut self, trunk: &str, calls: u64, now: Instant) {
        if let Some((prev, at)) = self.last.get(trunk) {
            let dt = now.saturating_duration_since(*at).as_secs_f64();
            if dt > 0.0 {
                self.rate
                    .insert(trunk.to_owned(), calls.saturating_sub(*prev) as f64 / dt);
            }
        }
        self.last.insert(trunk.to_owned(), (calls, now));
    }

    pub fn cps(&self, trunk: &str) -> f64 {
        self.rate.get(trunk).copied().unwrap_or(0.0)
    }
}

/// Numeric fields of a serializable counters struct, prefixed, for `ctl stats`.
fn flatten(prefix: &str, v: &impl serde::Serialize, out: &mut BTreeMap<String, f64>) {
    if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(v) {
        for (k, v) in m {
            if let Some(n) = v.as_f64() {
                out.insert(format!("{prefix}.{k}"), n);
            }
        }
    }
}

impl App {
    /// Answers one control request on the signaling thread.
    pub(super) fn control(&mut self, req: &CtlRequest, now: Instant) -> CtlReply {
        match req {
            CtlRequest::Calls => CtlReply::Calls(self.b2b.calls_info()),
            CtlRequest::ShowCall { id } => {
                // The SBC's own id, or either leg's SIP Call-ID (what an operator has from a trace).
                match self
                    .b2b
                    .calls_info()
                    .into_iter()
                    .find(|c| c.id == *id || c.legs.iter().any(|l| l.sip_call_id == *id))
                {
                    Some(c) => CtlReply::Call(Box::new(c)),
                    None => CtlReply::Error(format!("no call {id}")),
                }
            }
            CtlRequest::Trunks => CtlReply::Trunks(self.trunk_infos()),
            CtlRequest::Flows => CtlReply::Flows(self.flow_infos()),
            CtlRequest::Stats => {
                let mut m = BTreeMap::new();
                flatten("b2bua", self.b2b.counters(), &mut m);
                if let Some(mc) = self.b2b.media_counters() {
                    flatten("media", &mc, &mut m);
                }
                m.insert("calls.active".into(), self.b2b.active_calls() as f64);
                CtlReply::Stats(m)
            }
            CtlRequest::Reload => match self.reload(now) {
                Ok(changes) => CtlReply::Reloaded(changes),
                Err(errs) => CtlReply::Error(format!(
                    "config refused, running config kept:\n{}",
                    errs.join("\n")
                )),
            },
            CtlRequest::Drain { timeout_s } => {
                let t = timeout_s.unwrap_or(self.b2b.config().mgmt.drain_timeout_s);
                if !self.b2b.is_draining() {
                    self.start_drain(now, Duration::from_secs(u64::from(t)));
                }
                CtlReply::Draining {
                    active_calls: self.b2b.active_calls(),
                    timeout_s: t,
                }
            }
            CtlRequest::BanList => CtlReply::Bans(
                self.b2b
                    .bans(now)
                    .into_iter()
                    .map(|(ip, left)| BanInfo {
                        addr: ip.to_string(),
                        reason: "security violations over ban_threshold".into(),
                        expires_in_s: left.as_secs(),
                    })
                    .collect(),
            ),
            CtlRequest::BanDel { addr } => match addr.parse() {
                Ok(ip) if self.b2b.unban(ip, now) => {
                    tracing::info!(%ip, "ban lifted by the operator");
                    CtlReply::Ok(format!("{addr} unbanned"))
                }
                Ok(_) => CtlReply::Error(format!("{addr} is not banned")),
                Err(_) => CtlReply::Error(format!("{addr} is not an IP address")),
            },
        }
    }

    fn trunk_infos(&self) -> Vec<TrunkInfo> {
        self.b2b
            .trunk_views()
            .into_iter()
            .map(|t| TrunkInfo {
                cps: self.cps.cps(&t.name),
                asr: if t.totals.calls == 0 {
                    0.0
                } else {
                    100.0 * t.totals.answered as f64 / t.totals.calls as f64
                },
                active_calls: t.active_calls,
                max_calls: t.max_calls,
                calls_total: t.totals.calls,
                targets: t
                    .targets
                    .into_iter()
                    .map(|(uri, up)| TargetInfo { uri, up })
                    .collect(),
                name: t.name,
            })
            .collect()
    }

    /// One flow per anchored stream: packets arriving at a leg's SBC address go out of the other leg's.
    fn flow_infos(&self) -> Vec<FlowInfo> {
        let mut out = Vec::new();
        for c in self.b2b.calls_info() {
            let [a, b] = match c.legs.as_slice() {
                [a, b] => [a, b],
                _ => continue,
            };
            for (from, to) in [(a, b), (b, a)] {
                for (i, s) in from.streams.iter().enumerate() {
                    let Some(peer) = to.streams.get(i) else {
                        continue;
                    };
                    out.push(FlowInfo {
                        worker: 0,
                        local: s.local.clone(),
                        forward_to: peer.remote.clone(),
                        latched: Some(s.remote.clone()).filter(|r| !r.is_empty()),
                        srtp: match (&from.srtp, &to.srtp) {
                            (None, None) => "rtp".into(),
                            (f, t) => format!(
                                "{}->{}",
                                f.as_deref().unwrap_or("rtp"),
                                t.as_deref().unwrap_or("rtp")
                            ),
                        },
                        packets: s.packets_in,
                        bytes: s.bytes_in,
                        call_id: Some(c.id.clone()),
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cps_is_the_rate_between_samples() {
        let mut m = CpsMeter::default();
        let t0 = Instant::now();
        m.sample("cloud", 10, t0);
        assert_eq!(m.cps("cloud"), 0.0);
        m.sample("cloud", 30, t0 + Duration::from_secs(2));
        assert!((m.cps("cloud") - 10.0).abs() < 1e-9);
        assert_eq!(m.cps("carrier"), 0.0);
    }

    #[test]
    fn counters_flatten_to_named_numbers() {
        let mut m = BTreeMap::new();
        let c = crate::b2bua::Counters {
            received: 7,
            ..Default::default()
        };
        flatten("b2bua", &c, &mut m);
        assert_eq!(m.get("b2bua.received"), Some(&7.0));
        assert!(m.len() > 5);
    }
}
