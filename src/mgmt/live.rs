//! What the signaling thread publishes for scrapes: B2BUA counters, per-trunk views and media counters,
//! swapped in whole (`ArcSwap`) about once a second, so the mgmt thread never touches the B2BUA and the
//! signaling thread never waits for a scrape.
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::b2bua::{Counters, MediaCounters, TrunkView};
use crate::stats::{MetricSource, PromWriter};

/// One published view of the B2BUA.
#[derive(Debug, Clone, Default)]
pub struct LiveStats {
    pub counters: Counters,
    pub active_calls: usize,
    pub trunks: Vec<TrunkView>,
    pub media: Option<MediaCounters>,
}

/// Single writer (the signaling thread), any number of readers.
#[derive(Default)]
pub struct LivePublisher {
    cur: ArcSwap<LiveStats>,
}

impl LivePublisher {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn publish(&self, s: LiveStats) {
        self.cur.store(Arc::new(s));
    }

    pub fn load(&self) -> Arc<LiveStats> {
        self.cur.load_full()
    }
}

impl MetricSource for LivePublisher {
    fn write_metrics(&self, w: &mut PromWriter) {
        let s = self.load();
        let c = &s.counters;
        w.gauge(
            "tollgate_active_calls",
            "Calls in progress (setup or answered).",
            &[],
            s.active_calls as f64,
        );
        for (name, help, v) in [
            (
                "tollgate_sip_received_total",
                "SIP messages received.",
                c.received,
            ),
            (
                "tollgate_calls_started_total",
                "Calls admitted (INVITE out of dialog).",
                c.calls_started,
            ),
            (
                "tollgate_calls_answered_total",
                "Calls answered by the far end.",
                c.calls_answered,
            ),
            (
                "tollgate_calls_failed_total",
                "Calls that ended unanswered.",
                c.calls_failed,
            ),
            (
                "tollgate_acl_rejected_total",
                "Requests refused 403 by the ACLs.",
                c.acl_rejected,
            ),
            (
                "tollgate_guard_dropped_total",
                "Requests the source guard dropped (ban, scanner, rate).",
                c.guard_dropped,
            ),
            (
                "tollgate_malformed_total",
                "Malformed SIP messages (answered 400 or dropped).",
                c.malformed_answered + c.malformed_dropped,
            ),
            (
                "tollgate_no_route_total",
                "Calls with no route.",
                c.no_route,
            ),
            (
                "tollgate_failovers_total",
                "Failovers to another target.",
                c.failovers,
            ),
            (
                "tollgate_options_answered_total",
                "OPTIONS answered 200.",
                c.options_answered,
            ),
            (
                "tollgate_admission_rejected_total",
                "Calls refused by per-trunk limits.",
                c.admission_rejected,
            ),
        ] {
            w.counter(name, help, &[], v);
        }
        w.family(
            "tollgate_trunk_calls_total",
            "Finished calls per trunk.",
            crate::stats::prom::MetricType::Counter,
        );
        for t in &s.trunks {
            w.sample(
                "tollgate_trunk_calls_total",
                &[("trunk", &t.name)],
                t.totals.calls as f64,
            );
        }
        w.family(
            "tollgate_trunk_answered_total",
            "Answered calls per trunk.",
            crate::stats::prom::MetricType::Counter,
        );
        for t in &s.trunks {
            w.sample(
                "tollgate_trunk_answered_total",
                &[("trunk", &t.name)],
                t.totals.answered as f64,
            );
        }
        w.family(
            "tollgate_trunk_failed_total",
            "Unanswered calls per trunk by the final SIP status.",
            crate::stats::prom::MetricType::Counter,
        );
        for t in &s.trunks {
            for (code, n) in &t.totals.failed_by_code {
                let code = code.to_string();
                w.sample(
                    "tollgate_trunk_failed_total",
                    &[("trunk", &t.name), ("code", &code)],
                    *n as f64,
                );
            }
        }
        w.family(
            "tollgate_trunk_active_calls",
            "Calls in progress per trunk.",
            crate::stats::prom::MetricType::Gauge,
        );
        for t in &s.trunks {
            w.sample(
                "tollgate_trunk_active_calls",
                &[("trunk", &t.name)],
                f64::from(t.active_calls),
            );
        }
        w.family(
            "tollgate_target_up",
            "OPTIONS health of each trunk target (1 up, 0 down).",
            crate::stats::prom::MetricType::Gauge,
        );
        for t in &s.trunks {
            for (target, up) in &t.targets {
                w.sample(
                    "tollgate_target_up",
                    &[("trunk", &t.name), ("target", target)],
                    if *up { 1.0 } else { 0.0 },
                );
            }
        }
        if let Some(m) = &s.media {
            for (name, help, v) in [
                (
                    "tollgate_media_flows_added_total",
                    "Media flows programmed.",
                    m.flows_added,
                ),
                (
                    "tollgate_media_flows_removed_total",
                    "Media flows removed.",
                    m.flows_removed,
                ),
                (
                    "tollgate_media_ports_exhausted_total",
                    "Calls refused 503 for lack of media ports.",
                    m.ports_exhausted,
                ),
                (
                    "tollgate_media_sdp_refused_total",
                    "Offers or answers refused (488).",
                    m.sdp_refused,
                ),
                (
                    "tollgate_media_timeouts_total",
                    "Calls ended for lack of RTP.",
                    m.timeouts,
                ),
                (
                    "tollgate_media_latched_total",
                    "Streams latched to their real source.",
                    m.latched,
                ),
                (
                    "tollgate_media_dtmf_total",
                    "RFC 4733 DTMF events seen.",
                    m.dtmf_events,
                ),
                (
                    "tollgate_media_sink_errors_total",
                    "Flow commands a full worker queue refused.",
                    m.sink_errors,
                ),
            ] {
                w.counter(name, help, &[], v);
            }
        }
    }
}
