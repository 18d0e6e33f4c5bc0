//! What the daemon needs from a running B2BUA beyond SIP: config reload for new calls, drain (refuse new
//! INVITEs, hang up the rest), a view of live calls and per-trunk results, and a record per finished call.
//! Kept apart from the call logic in `mod.rs`; the hooks there are one line each.
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::{B2bua, Call, CallRef, Health, Phase, Role, TimerEv, TrunkState, static_targets};
use crate::config::Config;
use crate::mgmt::snapshot::{CallInfo, LegInfo};
use crate::stats::cdr::CallRecord;

/// Unix epoch milliseconds (0 if the clock is before 1970).
pub(crate) fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn transport_name(t: super::Transport) -> &'static str {
    match t {
        super::Transport::Udp => "udp",
        super::Transport::Tcp => "tcp",
        super::Transport::Tls => "tls",
    }
}

/// Per-call bookkeeping for CDRs and the calls view.
#[derive(Debug, Clone)]
pub(super) struct CallMeta {
    pub start_ms: u64,
    pub answered_ms: Option<u64>,
    /// Final status sent to A for a call that failed (0 until then).
    pub result_code: u16,
}

impl CallMeta {
    pub(crate) fn now() -> Self {
        CallMeta {
            start_ms: epoch_ms(),
            answered_ms: None,
            result_code: 0,
        }
    }
}

/// Finished-call results of one trunk (inbound or outbound side of the call), by trunk name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrunkTotals {
    /// Calls that ended having used this trunk.
    pub calls: u64,
    pub answered: u64,
    /// Unanswered calls by the final SIP status sent to the caller.
    pub failed_by_code: BTreeMap<u16, u64>,
}

/// A live trunk's view: counters plus health of each target.
#[derive(Debug, Clone, PartialEq)]
pub struct TrunkView {
    pub name: String,
    pub active_calls: u32,
    pub max_calls: Option<u32>,
    pub totals: TrunkTotals,
    /// `(target address, up)` per static target.
    pub targets: Vec<(String, bool)>,
}

/// Drain and record state owned by the B2BUA.
#[derive(Debug, Default)]
pub(super) struct OpsState {
    pub draining: bool,
    pub ending_reason: Option<&'static str>,
    pub records: Vec<CallRecord>,
    pub totals: BTreeMap<String, TrunkTotals>,
}

/// Why a reload was refused by the B2BUA (the config itself was valid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRefused(pub String);

impl B2bua {
    /// Uses `cfg` for new calls: routing, rules, admission limits (active counts kept by trunk name), security
    /// and target health pings. Established and ringing calls keep their legs and dialogs; their trunk indices
    /// are moved to the new positions of the same trunk names. Refused, with nothing changed, when a trunk a
    /// live call uses is gone.
    pub fn reload(&mut self, cfg: Arc<Config>, now: Instant) -> Result<(), ReloadRefused> {
        let index_of = |name: &str| cfg.trunks.iter().position(|t| t.name == name);
        let mut remap: Vec<Option<usize>> = Vec::with_capacity(self.cfg.trunks.len());
        for t in &self.cfg.trunks {
            remap.push(index_of(&t.name));
        }
        for call in self.calls.iter().flatten() {
            for t in [call.in_trunk, call.out_trunk] {
                if remap.get(t).copied().flatten().is_none() {
                    let name = self.cfg.trunks.get(t).map_or("?", |t| t.name.as_str());
                    return Err(ReloadRefused(format!(
                        "trunk `{name}` is removed but live calls use it; drain them first"
                    )));
                }
            }
        }
        for call in self.calls.iter_mut().flatten() {
            call.in_trunk = remap[call.in_trunk].unwrap_or(call.in_trunk);
            call.out_trunk = remap[call.out_trunk].unwrap_or(call.out_trunk);
        }
        self.routing = crate::routing::Routing::new(&cfg);
        self.admission = self.admission.reloaded(&cfg);
        self.guard.reconfigure(&cfg.security);
        // Target health: kept for targets that survive (same trunk name and address), fresh for the rest.
        let old_trunks = std::mem::take(&mut self.trunks);
        let old_cfg = std::mem::replace(&mut self.cfg, cfg);
        self.trunks = (0..self.cfg.trunks.len())
            .map(|i| {
                let targets = static_targets(&self.cfg, i);
                let old = old_cfg
                    .trunks
                    .iter()
                    .position(|t| t.name == self.cfg.trunks[i].name)
                    .and_then(|j| old_trunks.get(j));
                let health = targets
                    .iter()
                    .map(|t| {
                        let kept = old.and_then(|o| {
                            o.targets
                                .iter()
                                .position(|ot| ot == t)
                                .and_then(|k| o.health.get(k))
                        });
                        Health {
                            up: kept.is_none_or(|h| h.up),
                            ok_streak: kept.map_or(0, |h| h.ok_streak),
                            fail_streak: kept.map_or(0, |h| h.fail_streak),
                            in_flight: false,
                        }
                    })
                    .collect();
                TrunkState { targets, health }
            })
            .collect();
        // Pings in flight and queued refer to old indices: forget them and start over.
        for u in self.uses.values_mut() {
            if matches!(u.role, Role::Ping { .. }) {
                u.role = Role::Own;
            }
        }
        self.timers
            .retain(|Reverse((_, ev))| !matches!(ev, TimerEv::Ping { .. }));
        for (i, t) in self.cfg.trunks.iter().enumerate() {
            if t.health.ping_interval_s > 0 {
                for target in 0..self.trunks[i].targets.len() {
                    self.timers
                        .push(Reverse((now, TimerEv::Ping { trunk: i, target })));
                }
            }
        }
        Ok(())
    }

    /// The config new calls use.
    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    /// From now on every new INVITE is answered 503 with `Retry-After`; calls in progress go on.
    pub fn start_drain(&mut self) {
        self.ops.draining = true;
    }

    pub fn is_draining(&self) -> bool {
        self.ops.draining
    }

    /// Ends every call: BYE to answered legs, an error to unanswered callers, CANCEL to ringing callees.
    /// Their records say `reason`.
    pub fn hang_up_all(&mut self, now: Instant, reason: &'static str) {
        let refs: Vec<CallRef> = self
            .calls
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.as_ref().map(|c| CallRef {
                    idx: i as u32,
                    generation: c.generation,
                })
            })
            .collect();
        self.ops.ending_reason = Some(reason);
        for r in refs {
            self.teardown(now, r);
            self.drain(now, None);
        }
        self.ops.ending_reason = None;
    }

    /// Sources the guard bans now, with the time left.
    pub fn bans(&self, now: Instant) -> Vec<(std::net::IpAddr, std::time::Duration)> {
        self.guard.bans(now)
    }

    /// Lifts a ban; false if `ip` was not banned.
    pub fn unban(&mut self, ip: std::net::IpAddr, now: Instant) -> bool {
        self.guard.unban(ip, now)
    }

    /// Records of calls that ended since the last call, oldest first.
    pub fn take_records(&mut self) -> Vec<CallRecord> {
        std::mem::take(&mut self.ops.records)
    }

    /// Live calls for `/calls` and `tollgate ctl calls`.
    pub fn calls_info(&self) -> Vec<CallInfo> {
        self.calls
            .iter()
            .flatten()
            .map(|c| self.call_info(c))
            .collect()
    }

    /// Trunks in config order with their counters and target health.
    pub fn trunk_views(&self) -> Vec<TrunkView> {
        self.cfg
            .trunks
            .iter()
            .enumerate()
            .map(|(i, t)| TrunkView {
                name: t.name.clone(),
                active_calls: self.admission.active(super::trunk_id(i)),
                max_calls: t.max_calls,
                totals: self.ops.totals.get(&t.name).cloned().unwrap_or_default(),
                targets: self
                    .trunks
                    .get(i)
                    .map(|ts| {
                        ts.targets
                            .iter()
                            .zip(&ts.health)
                            .map(|(t, h)| {
                                (format!("{}:{}", transport_name(t.transport), t.addr), h.up)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }

    fn trunk_name(&self, i: usize) -> String {
        self.cfg
            .trunks
            .get(i)
            .map_or_else(String::new, |t| t.name.clone())
    }

    fn call_info(&self, c: &Call) -> CallInfo {
        let state = if c.cancelled {
            "terminating"
        } else if c.phase == Phase::Answered {
            "answered"
        } else if c.b_provisional {
            "ringing"
        } else {
            "trying"
        };
        let leg = |side: &str, l: &super::Leg, trunk: usize, s: super::Side| {
            let (codec, srtp, streams) = Self::media_leg_info(c, s);
            LegInfo {
                side: side.into(),
                sip_call_id: l.call_id.clone(),
                trunk: self.trunk_name(trunk),
                remote: l.dest.to_string(),
                codec,
                srtp,
                streams,
            }
        };
        CallInfo {
            id: c.b.call_id.clone(),
            state: state.into(),
            start_ms: c.meta.start_ms,
            answered_ms: c.meta.answered_ms,
            inbound_trunk: self.trunk_name(c.in_trunk),
            outbound_trunk: Some(self.trunk_name(c.out_trunk)),
            from_in: c.original_from.clone(),
            to_in: c.original_to.clone(),
            from_out: c.calling.clone(),
            to_out: c.called.clone(),
            legs: vec![
                leg("inbound", &c.a, c.in_trunk, super::Side::A),
                leg("outbound", &c.b, c.out_trunk, super::Side::B),
            ],
        }
    }

    /// Hook from `free_call`: the call is gone; count it and keep its record.
    pub(super) fn record_end(&mut self, c: &Call) {
        let answered = c.meta.answered_ms.is_some();
        let result_code = if answered {
            200
        } else if c.meta.result_code != 0 {
            c.meta.result_code
        } else if c.cancelled {
            487
        } else {
            500
        };
        let end_reason = match self.ops.ending_reason {
            Some(r) => r.to_owned(),
            None if answered => "bye".to_owned(),
            None if c.cancelled => "cancelled".to_owned(),
            None => "failed".to_owned(),
        };
        let (in_name, out_name) = (self.trunk_name(c.in_trunk), self.trunk_name(c.out_trunk));
        for name in [&in_name, &out_name] {
            let t = self.ops.totals.entry(name.clone()).or_default();
            t.calls += 1;
            if answered {
                t.answered += 1;
            } else {
                *t.failed_by_code.entry(result_code).or_default() += 1;
            }
            if in_name == out_name {
                break;
            }
        }
        // Bounded: a stalled consumer must not grow this without limit.
        if self.ops.records.len() < 100_000 {
            self.ops.records.push(CallRecord {
                call_id: c.b.call_id.clone(),
                node: self.cfg.node.name.clone(),
                start_ms: c.meta.start_ms,
                answered_ms: c.meta.answered_ms,
                end_ms: epoch_ms(),
                inbound_trunk: in_name,
                outbound_trunk: Some(out_name),
                from_in: c.original_from.clone(),
                to_in: c.original_to.clone(),
                from_out: c.calling.clone(),
                to_out: c.called.clone(),
                result_code,
                end_reason,
                streams: Self::media_streams(c),
            });
        }
    }
}
