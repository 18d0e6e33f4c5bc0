//! What `tollgate lab` measured, the checks it passes or fails, and how it is printed.
use serde::Serialize;

/// One media direction through the SBC.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Direction {
    pub streams: usize,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub loss_pct: f64,
    pub duplicates: u64,
    pub bad_payload: u64,
    /// Mean and worst RFC 3550 jitter over the streams, milliseconds.
    pub jitter_ms_mean: f64,
    pub jitter_ms_max: f64,
    /// Packets that arrived SRTP-protected and passed authentication (0 for a plain direction).
    pub srtp_authenticated: u64,
    pub srtp_auth_failures: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub packets: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// `--flood`: what the attacker sent and what tollgate made of it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FloodReport {
    pub flooder: String,
    pub packets: u64,
    pub send_errors: u64,
    pub seconds: f64,
    pub rate_pps: f64,
    /// The flooder's address is on tollgate's ban list (`tollgate ctl ban list`) when the flood ends.
    pub banned: bool,
    /// Requests tollgate dropped unanswered / answered 403 or 4xx, all sources (its own counters).
    pub sbc_dropped: u64,
    pub sbc_rejected: u64,
    /// tollgate's resident memory when the flood started and when it ended.
    pub rss_kb_before: u64,
    pub rss_kb_after: u64,
    pub ctl_error: Option<String>,
}

/// Memory tollgate may gain over a flood: bounded tables mean a flood costs nothing that stays.
pub const FLOOD_RSS_GROWTH_KB: u64 = 64 * 1024;

#[derive(Debug, Clone, Default, Serialize)]
pub struct LabReport {
    /// `tollgate`, or `rtpengine` for the media baseline (set up over ng, no SIP).
    pub relay: String,
    /// Calls went through SIP (tollgate); the SIP checks apply only then.
    pub sip: bool,
    /// SRTP toward the cloud (RTP <-> SRTP) or plain RTP both ways.
    pub cloud_srtp: bool,
    /// CPU the relay process used during the audio, percent of one core (all its threads).
    pub relay_cpu_pct: f64,
    /// `auto`, `xdp` or `socket` as asked, and what tollgate's media plane said it runs.
    pub mode_requested: String,
    pub media_mode: String,
    pub calls_attempted: usize,
    pub calls_answered: usize,
    pub calls_failed: usize,
    /// `code: count` of the failures (408 = no final answer in time).
    pub failures: Vec<(u16, usize)>,
    pub calls_ended_cleanly: usize,
    /// INVITEs the carrier sent again because nothing answered within T1 (Timer A).
    pub invites_retransmitted: u64,
    /// Post-dial delay, INVITE sent to 200 received, milliseconds.
    pub pdd_ms_p50: f64,
    pub pdd_ms_max: f64,
    /// The number the carrier dialed and the Request-URI users the cloud received (distinct values).
    pub dialed: String,
    pub cloud_received: Vec<String>,
    pub calls_translated: usize,
    /// Calls whose `X-` context header reached the cloud unchanged.
    pub x_header_passed: usize,
    pub dtmf_sent: usize,
    pub dtmf_received: usize,
    pub hold_s: f64,
    pub carrier_to_cloud: Direction,
    pub cloud_to_carrier: Direction,
    /// One-way latency through tollgate (two veth hops and the SBC), both directions.
    pub latency: Latency,
    pub interrupted: bool,
    pub flood: Option<FloodReport>,
    /// Checks that failed; empty means the lab passed.
    pub problems: Vec<String>,
    pub workdir: String,
}

impl LabReport {
    /// Fills `problems` from the figures: what a healthy SBC must show in the lab.
    pub fn check(&mut self, max_loss_pct: f64) {
        let mut p = Vec::new();
        if self.interrupted {
            p.push("interrupted".to_owned());
        }
        if self.calls_answered != self.calls_attempted {
            p.push(format!(
                "{} of {} calls answered ({:?})",
                self.calls_answered, self.calls_attempted, self.failures
            ));
        }
        if self.calls_ended_cleanly != self.calls_answered {
            p.push(format!(
                "{} of {} answered calls ended with BYE/200",
                self.calls_ended_cleanly, self.calls_answered
            ));
        }
        if self.sip && self.calls_translated != self.calls_answered {
            p.push(format!(
                "{} of {} calls reached the cloud as {}",
                self.calls_translated,
                self.calls_answered,
                super::ua::TRANSLATED
            ));
        }
        if self.sip && self.x_header_passed != self.calls_answered {
            p.push(format!(
                "{} of {} calls kept their X- header",
                self.x_header_passed, self.calls_answered
            ));
        }
        if self.dtmf_received != self.dtmf_sent {
            p.push(format!(
                "{} of {} DTMF digits arrived",
                self.dtmf_received, self.dtmf_sent
            ));
        }
        for (name, d, srtp) in [
            ("carrier->cloud", &self.carrier_to_cloud, self.cloud_srtp),
            ("cloud->carrier", &self.cloud_to_carrier, false),
        ] {
            if self.calls_answered == 0 {
                break;
            }
            if d.received == 0 {
                p.push(format!("{name}: no media arrived"));
            }
            if d.loss_pct > max_loss_pct {
                p.push(format!(
                    "{name}: {:.3} % loss (limit {max_loss_pct} %)",
                    d.loss_pct
                ));
            }
            if d.bad_payload > 0 || d.srtp_auth_failures > 0 {
                p.push(format!(
                    "{name}: {} damaged packets, {} SRTP authentication failures",
                    d.bad_payload, d.srtp_auth_failures
                ));
            }
            if srtp && d.srtp_authenticated == 0 {
                p.push(format!("{name}: no SRTP packet authenticated"));
            }
        }
        if let Some(f) = &self.flood {
            if let Some(e) = &f.ctl_error {
                p.push(format!("flood: could not ask tollgate: {e}"));
            } else if !f.banned {
                p.push(format!("flood: {} is not on the ban list", f.flooder));
            }
            if f.packets == 0 {
                p.push("flood: the flooder sent nothing".to_owned());
            }
            let growth = f.rss_kb_after.saturating_sub(f.rss_kb_before);
            if growth > FLOOD_RSS_GROWTH_KB {
                p.push(format!(
                    "flood: tollgate grew {growth} KiB (limit {FLOOD_RSS_GROWTH_KB} KiB)"
                ));
            }
        }
        self.problems = p;
    }

    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// The human report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let dir = |name: &str, d: &Direction| {
            format!(
                "  {name:<15} {:>8} sent {:>8} received {:>6} lost ({:.3} %)  jitter {:.3} ms mean, {:.3} ms max{}\n",
                d.sent,
                d.received,
                d.lost,
                d.loss_pct,
                d.jitter_ms_mean,
                d.jitter_ms_max,
                if d.srtp_authenticated > 0 || d.srtp_auth_failures > 0 {
                    format!(
                        "  SRTP {} authenticated, {} failed",
                        d.srtp_authenticated, d.srtp_auth_failures
                    )
                } else {
                    "  plain RTP".to_owned()
                }
            )
        };
        s.push_str(&format!(
            "tollgate lab: relay {}, media mode {} (asked: {}), {} to the cloud\n",
            self.relay,
            self.media_mode,
            self.mode_requested,
            if self.cloud_srtp { "SRTP" } else { "plain RTP" }
        ));
        s.push_str(&format!(
            "calls      {} attempted, {} answered, {} failed{}, {} ended with BYE/200, {} INVITE retransmissions\n",
            self.calls_attempted,
            self.calls_answered,
            self.calls_failed,
            if self.failures.is_empty() {
                String::new()
            } else {
                format!(" {:?}", self.failures)
            },
            self.calls_ended_cleanly,
            self.invites_retransmitted
        ));
        if self.sip {
            s.push_str(&format!(
                "post-dial  {:.1} ms median, {:.1} ms max (INVITE -> 200 OK)\n",
                self.pdd_ms_p50, self.pdd_ms_max
            ));
            s.push_str(&format!(
                "translate  carrier dialed {} -> cloud received {:?} ({} calls), X- header kept on {}\n",
                self.dialed, self.cloud_received, self.calls_translated, self.x_header_passed
            ));
        } else {
            s.push_str("sip        none: calls set up over rtpengine's ng protocol\n");
        }
        s.push_str(&format!(
            "dtmf       {} of {} RFC 4733 digits arrived at the cloud\n",
            self.dtmf_received, self.dtmf_sent
        ));
        s.push_str(&format!(
            "media      {:.1} s per call, 50 packets/s each way\n",
            self.hold_s
        ));
        s.push_str(&dir("carrier->cloud", &self.carrier_to_cloud));
        s.push_str(&dir("cloud->carrier", &self.cloud_to_carrier));
        let l = &self.latency;
        s.push_str(&format!(
            "latency    one-way through the relay: p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us ({} packets)\n",
            l.p50_us, l.p99_us, l.p999_us, l.max_us, l.packets
        ));
        s.push_str(&format!(
            "relay cpu  {:.1} % of one core during the audio\n",
            self.relay_cpu_pct
        ));
        if let Some(f) = &self.flood {
            s.push_str(&format!(
                "flood      {} packets from {} in {:.1} s ({:.0} pps); tollgate dropped {}, rejected {}; flooder {}; RSS {} -> {} KiB\n",
                f.packets,
                f.flooder,
                f.seconds,
                f.rate_pps,
                f.sbc_dropped,
                f.sbc_rejected,
                if f.banned { "banned" } else { "NOT banned" },
                f.rss_kb_before,
                f.rss_kb_after
            ));
        }
        if self.problems.is_empty() {
            s.push_str("result     PASS\n");
        } else {
            s.push_str("result     FAIL\n");
            for p in &self.problems {
                s.push_str(&format!("  - {p}\n"));
            }
        }
        s.push_str(&format!("logs       {}\n", self.workdir));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> LabReport {
        let d = Direction {
            streams: 2,
            sent: 100,
            received: 100,
            ..Direction::default()
        };
        LabReport {
            sip: true,
            cloud_srtp: true,
            calls_attempted: 2,
            calls_answered: 2,
            calls_ended_cleanly: 2,
            calls_translated: 2,
            x_header_passed: 2,
            dtmf_sent: 2,
            dtmf_received: 2,
            carrier_to_cloud: Direction {
                srtp_authenticated: 100,
                ..d.clone()
            },
            cloud_to_carrier: d,
            ..LabReport::default()
        }
    }

    #[test]
    fn a_healthy_run_passes_and_each_fault_is_named() {
        let mut r = healthy();
        r.check(0.0);
        assert!(r.passed(), "{:?}", r.problems);
        assert!(r.render().contains("PASS"));

        let mut r = healthy();
        r.calls_answered = 1;
        r.calls_failed = 1;
        r.failures = vec![(503, 1)];
        r.carrier_to_cloud.loss_pct = 0.5;
        r.carrier_to_cloud.srtp_authenticated = 0;
        r.dtmf_received = 1;
        r.check(0.1);
        let text = r.problems.join("\n");
        for want in [
            "1 of 2 calls answered",
            "0.500 % loss",
            "no SRTP packet authenticated",
            "1 of 2 DTMF",
        ] {
            assert!(text.contains(want), "{want} missing in {text}");
        }
        assert!(r.render().contains("FAIL"));
    }
}
