//! Outbound targets: resolution from DNS answers (given as data), RFC 2782 SRV ordering, per-target health fed
//! by OPTIONS pings and call outcomes, and the failover decision after each attempt.
//!
//! Time is a caller-supplied `Instant` and randomness a caller-supplied function, so every decision here is
//! reproducible in tests.

use crate::config::{Health, Host, TargetSpec, Transport, UriScheme};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// One SRV answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// DNS answers the caller looked up (on its helper thread), keyed by lower-case name.
#[derive(Debug, Clone, Default)]
pub struct DnsAnswers {
    pub srv: HashMap<String, Vec<SrvRecord>>,
    /// A and AAAA together, in the order they should be tried.
    pub hosts: HashMap<String, Vec<IpAddr>>,
}

/// A name the resolver still has to look up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DnsQuery {
    Srv(String),
    Host(String),
}

/// A concrete place to send a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub transport: Transport,
    /// Host name to verify the TLS certificate against and to put in the Request-URI host; `None` for
    /// literal IPs.
    pub host: Option<String>,
    pub scheme: UriScheme,
}

fn default_port(t: Transport) -> u16 {
    match t {
        Transport::Tls => 5061,
        _ => 5060,
    }
}

/// What still needs looking up before `resolve` can produce every target (SRV names, then the host names the
/// SRV records point at).
pub fn pending_queries(specs: &[TargetSpec], dns: &DnsAnswers) -> Vec<DnsQuery> {
    let mut out = Vec::new();
    let need_host = |name: &str, out: &mut Vec<DnsQuery>| {
        let q = DnsQuery::Host(name.to_ascii_lowercase());
        if !dns.hosts.contains_key(&name.to_ascii_lowercase()) && !out.contains(&q) {
            out.push(q);
        }
    };
    for s in specs {
        match s {
            TargetSpec::Uri {
                host: Host::Name(n),
                ..
            } => need_host(n, &mut out),
            TargetSpec::Uri { .. } => {}
            TargetSpec::Srv { name, .. } => match dns.srv.get(&name.to_ascii_lowercase()) {
                None => out.push(DnsQuery::Srv(name.to_ascii_lowercase())),
                Some(recs) => {
                    for r in recs.iter().filter(|r| r.target != ".") {
                        need_host(r.target.trim_end_matches('.'), &mut out);
                    }
                }
            },
        }
    }
    out
}

/// Orders SRV records per RFC 2782: ascending priority; within a priority, weighted random selection.
/// `rand(n)` must return a uniform value in `0..=n`. A lone `.` target means "no service" and yields nothing.
pub fn order_srv(records: &[SrvRecord], mut rand: impl FnMut(u32) -> u32) -> Vec<SrvRecord> {
    if records.len() == 1 && records.first().is_some_and(|r| r.target == ".") {
        return Vec::new();
    }
    let mut rest: Vec<&SrvRecord> = records.iter().collect();
    rest.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(rest.len());
    let mut i = 0;
    while i < rest.len() {
        let prio = rest[i].priority;
        let end = rest[i..]
            .iter()
            .position(|r| r.priority != prio)
            .map_or(rest.len(), |n| i + n);
        // Zero-weight records first, as RFC 2782 asks, so they are picked only when chance lands on 0.
        let mut group: Vec<&SrvRecord> = rest[i..end].to_vec();
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = rand(total).min(total);
            let mut running = 0u32;
            let idx = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(idx).clone());
        }
        i = end;
    }
    out
}

/// Turns configured targets into addresses, in failover order. Names not yet in `dns` are skipped (see
/// `pending_queries`); `rand` as in [`order_srv`].
pub fn resolve(
    specs: &[TargetSpec],
    dns: &DnsAnswers,
    mut rand: impl FnMut(u32) -> u32,
) -> Vec<Target> {
    let mut out = Vec::new();
    let ips = |name: &str| {
        dns.hosts
            .get(&name.to_ascii_lowercase())
            .map_or(&[][..], |v| v.as_slice())
    };
    for s in specs {
        match s {
            TargetSpec::Uri {
                scheme,
                host,
                port,
                transport,
            } => {
                let port = port.unwrap_or(default_port(*transport));
                match host {
                    Host::Ip(ip) => out.push(Target {
                        addr: SocketAddr::new(*ip, port),
                        transport: *transport,
                        host: None,
                        scheme: *scheme,
                    }),
                    Host::Name(n) => out.extend(ips(n).iter().map(|ip| Target {
                        addr: SocketAddr::new(*ip, port),
                        transport: *transport,
                        host: Some(n.clone()),
                        scheme: *scheme,
                    })),
                }
            }
            TargetSpec::Srv { name, transport } => {
                let recs = dns
                    .srv
                    .get(&name.to_ascii_lowercase())
                    .map_or(&[][..], |v| v.as_slice());
                for r in order_srv(recs, &mut rand) {
                    let host = r.target.trim_end_matches('.').to_ascii_lowercase();
                    out.extend(ips(&host).iter().map(|ip| Target {
                        addr: SocketAddr::new(*ip, r.port),
                        transport: *transport,
                        host: Some(host.clone()),
                        scheme: if *transport == Transport::Tls {
                            UriScheme::Sips
                        } else {
                            UriScheme::Sip
                        },
                    }));
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Not yet pinged enough to say; usable.
    Unknown,
    Up,
    Down,
}

/// With pings disabled nothing would bring a failed target back, so a call failure benches it only this long.
pub const NO_PING_COOL_OFF: Duration = Duration::from_secs(30);

/// One target's health: consecutive OPTIONS results move it up or down; a 503 with Retry-After benches it.
#[derive(Debug, Clone)]
pub struct TargetHealth {
    cfg: Health,
    state: HealthState,
    ok_run: u32,
    fail_run: u32,
    next_ping: Option<Instant>,
    benched_until: Option<Instant>,
}

impl TargetHealth {
    /// A new target; its first ping is due at `now`.
    pub fn new(cfg: Health, now: Instant) -> Self {
        TargetHealth {
            cfg,
            state: HealthState::Unknown,
            ok_run: 0,
            fail_run: 0,
            next_ping: (cfg.ping_interval_s > 0).then_some(now),
            benched_until: None,
        }
    }

    pub fn state(&self) -> HealthState {
        self.state
    }

    /// When the next OPTIONS ping is due; `None` with pings disabled.
    pub fn next_ping(&self) -> Option<Instant> {
        self.next_ping
    }

    /// The caller sent a ping at `now`; the next is due one interval later.
    pub fn ping_sent(&mut self, now: Instant) {
        if self.cfg.ping_interval_s > 0 {
            self.next_ping = Some(now + Duration::from_secs(u64::from(self.cfg.ping_interval_s)));
        }
    }

    /// A ping's result: any final response counts as alive (even 4xx: the peer answered), a timeout or
    /// transport error as a failure. Returns the new state when it changed.
    pub fn on_ping(&mut self, ok: bool) -> Option<HealthState> {
        let before = self.state;
        if ok {
            self.fail_run = 0;
            self.ok_run = self.ok_run.saturating_add(1);
            if self.ok_run >= self.cfg.up_after {
                self.state = HealthState::Up;
            }
        } else {
            self.ok_run = 0;
            self.fail_run = self.fail_run.saturating_add(1);
            if self.fail_run >= self.cfg.down_after {
                self.state = HealthState::Down;
            }
        }
        (self.state != before).then_some(self.state)
    }

    /// A call to this target timed out or hit a transport error.
    pub fn on_call_failure(&mut self, now: Instant) -> Option<HealthState> {
        if self.cfg.ping_interval_s == 0 {
            self.bench_until(now + NO_PING_COOL_OFF);
            return None;
        }
        self.on_ping(false)
    }

    /// Not usable until `until` whatever pings say (503 with Retry-After).
    pub fn bench_until(&mut self, until: Instant) {
        self.benched_until = Some(self.benched_until.map_or(until, |b| b.max(until)));
    }

    /// Whether new calls may be sent here.
    pub fn usable(&self, now: Instant) -> bool {
        self.state != HealthState::Down && self.benched_until.is_none_or(|b| now >= b)
    }
}

/// A trunk's resolved targets with their health, in failover order.
#[derive(Debug, Clone)]
pub struct TrunkTargets {
    cfg: Health,
    entries: Vec<(Target, TargetHealth)>,
}

impl TrunkTargets {
    pub fn new(cfg: Health, targets: Vec<Target>, now: Instant) -> Self {
        TrunkTargets {
            cfg,
            entries: targets
                .into_iter()
                .map(|t| (t, TargetHealth::new(cfg, now)))
                .collect(),
        }
    }

    /// New DNS answers or config: keeps the health of targets that are still there.
    pub fn replace_targets(&mut self, targets: Vec<Target>, now: Instant) {
        let mut old = std::mem::take(&mut self.entries);
        self.entries = targets
            .into_iter()
            .map(|t| {
                let h = old
                    .iter()
                    .position(|(o, _)| o.addr == t.addr && o.transport == t.transport)
                    .map(|i| old.swap_remove(i).1)
                    .unwrap_or_else(|| TargetHealth::new(self.cfg, now));
                (t, h)
            })
            .collect();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn target(&self, i: usize) -> Option<&Target> {
        self.entries.get(i).map(|e| &e.0)
    }

    pub fn health(&self, i: usize) -> Option<&TargetHealth> {
        self.entries.get(i).map(|e| &e.1)
    }

    pub fn health_mut(&mut self, i: usize) -> Option<&mut TargetHealth> {
        self.entries.get_mut(i).map(|e| &mut e.1)
    }

    /// The failover list for a new call: usable targets in order. Empty means answer 503.
    pub fn plan(&self, now: Instant) -> FailoverPlan {
        FailoverPlan {
            order: (0..self.entries.len())
                .filter(|&i| self.entries.get(i).is_some_and(|e| e.1.usable(now)))
                .collect(),
            pos: 0,
        }
    }

    /// Earliest ping deadline over all targets (for the caller's timer).
    pub fn next_ping_deadline(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|e| e.1.next_ping()).min()
    }

    /// Targets whose ping is due at `now`, marked as sent; the caller sends an OPTIONS to each.
    pub fn take_due_pings(&mut self, now: Instant) -> Vec<usize> {
        let mut due = Vec::new();
        for (i, e) in self.entries.iter_mut().enumerate() {
            if e.1.next_ping().is_some_and(|t| t <= now) {
                e.1.ping_sent(now);
                due.push(i);
            }
        }
        due
    }

    /// Feeds one attempt's outcome into the target's health and says what the call should do next.
    pub fn on_attempt(
        &mut self,
        i: usize,
        outcome: AttemptOutcome,
        failover_codes: &[u16],
        now: Instant,
    ) -> Decision {
        if let Some(h) = self.health_mut(i) {
            match outcome {
                AttemptOutcome::Response {
                    code: 503,
                    retry_after: Some(d),
                } => h.bench_until(now + d),
                AttemptOutcome::Response { .. } => {
                    h.on_ping(true);
                }
                AttemptOutcome::Timeout | AttemptOutcome::TransportError => {
                    h.on_call_failure(now);
                }
            }
        }
        decide(outcome, failover_codes)
    }
}

/// The order to try a trunk's targets for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverPlan {
    order: Vec<usize>,
    pos: usize,
}

impl FailoverPlan {
    /// The next target index to try, or `None` when every one has been tried.
    pub fn next_target(&mut self) -> Option<usize> {
        let t = self.order.get(self.pos).copied();
        self.pos += usize::from(t.is_some());
        t
    }

    pub fn remaining(&self) -> usize {
        self.order.len().saturating_sub(self.pos)
    }
}

/// How one attempt at a target ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A final response (>= 200).
    Response {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No provisional or final response within the trunk's per-target timeout.
    Timeout,
    /// Connection refused/reset, ICMP unreachable, TLS failure.
    TransportError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Pass the response back to the caller's leg (success, or a failure the callee meant).
    Relay,
    /// Try the next target in the plan (relay the last failure, or 503, if there is none).
    TryNext,
}

/// Failover policy: next target on a configured 5xx (503 by default; 503 with Retry-After always), on timeout
/// and on transport error; stop on everything else, in particular 6xx (the callee's definitive answer).
pub fn decide(outcome: AttemptOutcome, failover_codes: &[u16]) -> Decision {
    match outcome {
        AttemptOutcome::Timeout | AttemptOutcome::TransportError => Decision::TryNext,
        AttemptOutcome::Response {
            code: 503,
            retry_after: Some(_),
        } => Decision::TryNext,
        AttemptOutcome::Response { code, .. } if failover_codes.contains(&code) && code < 600 => {
            Decision::TryNext
        }
        AttemptOutcome::Response { .. } => Decision::Relay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Health, TargetSpec};
    use proptest::prelude::*;

    fn srv(p: u16, w: u16, port: u16, t: &str) -> SrvRecord {
        SrvRecord {
            priority: p,
            weight: w,
            port,
            target: t.into(),
        }
    }

    fn health() -> Health {
        Health {
            ping_interval_s: 30,
            up_after: 2,
            down_after: 3,
        }
    }

    #[test]
    fn srv_priority_then_weight() {
        let recs = [
            srv(20, 0, 5060, "c."),
            srv(10, 1, 5060, "a."),
            srv(10, 3, 5061, "b."),
        ];
        // rand returns its max: the running sum reaches it only at the last record of the group.
        let o = order_srv(&recs, |n| n);
        assert_eq!(
            o.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(),
            ["b.", "a.", "c."]
        );
        let o = order_srv(&recs, |_| 0);
        assert_eq!(
            o.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(),
            ["a.", "b.", "c."]
        );
        assert!(order_srv(&[srv(0, 0, 0, ".")], |_| 0).is_empty());
    }

    #[test]
    fn srv_weights_are_respected_statistically() {
        // Deterministic LCG as the caller's random source.
        let mut x: u64 = 12345;
        let mut rnd = move |n: u32| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % (u64::from(n) + 1)) as u32
        };
        let recs = [srv(10, 10, 1, "light."), srv(10, 90, 2, "heavy.")];
        let heavy_first = (0..2000)
            .filter(|_| order_srv(&recs, &mut rnd)[0].target == "heavy.")
            .count();
        assert!((1650..=1950).contains(&heavy_first), "{heavy_first}");
    }

    proptest! {
        #[test]
        fn srv_order_is_a_permutation_sorted_by_priority(
            recs in proptest::collection::vec((0u16..4, 0u16..100, 1u16..9, "[a-z]{1,3}"), 0..12),
            seed in any::<u32>(),
        ) {
            let recs: Vec<SrvRecord> = recs.into_iter().map(|(p, w, port, t)| srv(p, w, port, &t)).collect();
            let mut s = seed;
            let o = order_srv(&recs, |n| { s = s.wrapping_mul(1103515245).wrapping_add(12345); s % (n + 1) });
            prop_assert_eq!(o.len(), recs.len());
            prop_assert!(o.windows(2).all(|w| w[0].priority <= w[1].priority));
            let mut a = recs.clone(); a.sort_by(|x, y| (x.priority, x.weight, x.port, &x.target).cmp(&(y.priority, y.weight, y.port, &y.target)));
            let mut b = o.clone(); b.sort_by(|x, y| (x.priority, x.weight, x.port, &x.target).cmp(&(y.priority, y.weight, y.port, &y.target)));
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn resolution_from_dns_answers() {
        let specs = vec![
            crate::config::parse_target("sip:10.0.0.1").unwrap(),
            crate::config::parse_target("sips:vc.example.com").unwrap(),
            TargetSpec::Srv {
                name: "_sip._udp.example.com".into(),
                transport: Transport::Udp,
            },
        ];
        let mut dns = DnsAnswers::default();
        assert_eq!(
            pending_queries(&specs, &dns),
            vec![
                DnsQuery::Host("vc.example.com".into()),
                DnsQuery::Srv("_sip._udp.example.com".into())
            ]
        );
        dns.hosts.insert(
            "vc.example.com".into(),
            vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
        );
        dns.srv.insert(
            "_sip._udp.example.com".into(),
            vec![
                srv(1, 0, 5070, "b.example.com."),
                srv(0, 0, 5080, "a.example.com."),
            ],
        );
        assert_eq!(
            pending_queries(&specs, &dns),
            vec![
                DnsQuery::Host("b.example.com".into()),
                DnsQuery::Host("a.example.com".into())
            ]
        );
        dns.hosts
            .insert("a.example.com".into(), vec!["192.0.2.10".parse().unwrap()]);
        dns.hosts
            .insert("b.example.com".into(), vec!["192.0.2.11".parse().unwrap()]);
        assert!(pending_queries(&specs, &dns).is_empty());
        let t = resolve(&specs, &dns, |_| 0);
        let addrs: Vec<String> = t.iter().map(|t| t.addr.to_string()).collect();
        assert_eq!(
            addrs,
            [
                "10.0.0.1:5060",
                "192.0.2.1:5061",
                "[2001:db8::1]:5061",
                "192.0.2.10:5080",
                "192.0.2.11:5070"
            ]
        );
        assert_eq!(t[1].transport, Transport::Tls);
        assert_eq!(t[1].host.as_deref(), Some("vc.example.com"));
        assert_eq!(t[0].host, None);
    }

    #[test]
    fn health_thresholds_and_schedule() {
        let t0 = Instant::now();
        let mut h = TargetHealth::new(health(), t0);
        assert_eq!(h.next_ping(), Some(t0));
        h.ping_sent(t0);
        assert_eq!(h.next_ping(), Some(t0 + Duration::from_secs(30)));
        assert_eq!(h.on_ping(true), None);
        assert_eq!(h.on_ping(true), Some(HealthState::Up));
        assert_eq!(h.on_ping(false), None);
        assert_eq!(h.on_ping(false), None);
        assert!(h.usable(t0));
        assert_eq!(h.on_ping(false), Some(HealthState::Down));
        assert!(!h.usable(t0));
        assert_eq!(h.on_ping(true), None);
        assert_eq!(h.on_ping(true), Some(HealthState::Up));
    }

    #[test]
    fn pings_disabled_means_cool_off_after_failure() {
        let t0 = Instant::now();
        let mut h = TargetHealth::new(
            Health {
                ping_interval_s: 0,
                ..health()
            },
            t0,
        );
        assert_eq!(h.next_ping(), None);
        h.on_call_failure(t0);
        assert!(!h.usable(t0 + Duration::from_secs(29)));
        assert!(h.usable(t0 + NO_PING_COOL_OFF));
    }

    fn target(port: u16) -> Target {
        Target {
            addr: SocketAddr::from(([192, 0, 2, 1], port)),
            transport: Transport::Udp,
            host: None,
            scheme: UriScheme::Sip,
        }
    }

    #[test]
    fn failover_walks_usable_targets_and_benches_on_retry_after() {
        let t0 = Instant::now();
        let mut tt = TrunkTargets::new(health(), vec![target(1), target(2), target(3)], t0);
        for _ in 0..3 {
            tt.health_mut(1).unwrap().on_ping(false);
        }
        let mut plan = tt.plan(t0);
        assert_eq!(plan.next_target(), Some(0));
        let d = tt.on_attempt(
            0,
            AttemptOutcome::Response {
                code: 503,
                retry_after: Some(Duration::from_secs(60)),
            },
            &[503],
            t0,
        );
        assert_eq!(d, Decision::TryNext);
        assert_eq!(plan.next_target(), Some(2));
        assert_eq!(plan.next_target(), None);
        // Target 0 is benched for a minute, target 1 is down: only target 2 is left for new calls.
        let mut p2 = tt.plan(t0 + Duration::from_secs(10));
        assert_eq!((p2.next_target(), p2.next_target()), (Some(2), None));
        let mut p3 = tt.plan(t0 + Duration::from_secs(60));
        assert_eq!(p3.next_target(), Some(0));
        // Health survives re-resolution for targets that remain.
        tt.replace_targets(vec![target(2), target(4)], t0);
        assert_eq!(tt.health(0).unwrap().state(), HealthState::Down);
        assert_eq!(tt.health(1).unwrap().state(), HealthState::Unknown);
    }

    #[test]
    fn failover_decisions() {
        let codes = [503, 500];
        let r = |code| AttemptOutcome::Response {
            code,
            retry_after: None,
        };
        assert_eq!(decide(r(503), &codes), Decision::TryNext);
        assert_eq!(decide(r(500), &codes), Decision::TryNext);
        assert_eq!(decide(r(502), &codes), Decision::Relay);
        assert_eq!(decide(r(486), &codes), Decision::Relay);
        assert_eq!(decide(r(603), &codes), Decision::Relay);
        assert_eq!(decide(r(200), &codes), Decision::Relay);
        assert_eq!(decide(r(503), &[]), Decision::Relay);
        assert_eq!(
            decide(
                AttemptOutcome::Response {
                    code: 503,
                    retry_after: Some(Duration::from_secs(5))
                },
                &[]
            ),
            Decision::TryNext
        );
        assert_eq!(decide(AttemptOutcome::Timeout, &codes), Decision::TryNext);
        assert_eq!(
            decide(AttemptOutcome::TransportError, &codes),
            Decision::TryNext
        );
    }

    #[test]
    fn due_pings_are_scheduled() {
        let t0 = Instant::now();
        let mut tt = TrunkTargets::new(health(), vec![target(1), target(2)], t0);
        assert_eq!(tt.next_ping_deadline(), Some(t0));
        assert_eq!(tt.take_due_pings(t0), vec![0, 1]);
        assert!(tt.take_due_pings(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(tt.next_ping_deadline(), Some(t0 + Duration::from_secs(30)));
    }
}
