//! Per-source protection before any parsing beyond the request line: message size and header count caps,
//! scanner User-Agents, request and INVITE rate limits, and bans after repeated violations.
//!
//! State is one small entry per source address, bounded in number; time is the caller's clock.

use super::admission::TokenBucket;
use crate::config::{Security, UnauthorizedAction};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Answer with this status (requests only; never answer a response).
    Reject(u16),
    /// Send nothing: answering floods and scanners only helps them.
    Drop,
}

/// The facts about one received request the guard needs.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub src: IpAddr,
    pub is_invite: bool,
    pub user_agent: Option<&'a str>,
    pub size: usize,
    pub header_count: usize,
}

#[derive(Debug, Clone)]
struct SourceState {
    requests: TokenBucket,
    invites: TokenBucket,
    violations: u32,
    banned_until: Option<Instant>,
    last_seen: Instant,
}

/// Sources tracked at once; beyond it idle ones are forgotten first.
pub const MAX_TRACKED_SOURCES: usize = 65_536;
/// A source with no traffic for this long is forgotten (its violation count with it).
pub const IDLE_FORGET: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct SourceGuard {
    cfg: Security,
    sources: HashMap<IpAddr, SourceState>,
}

impl SourceGuard {
    pub fn new(cfg: &Security) -> Self {
        SourceGuard {
            cfg: cfg.clone(),
            sources: HashMap::new(),
        }
    }

    /// New limits on reload; per-source history is kept.
    pub fn reconfigure(&mut self, cfg: &Security) {
        self.cfg = cfg.clone();
    }

    /// Whether the User-Agent names a known scanner (case-insensitive substring).
    pub fn is_scanner(&self, user_agent: &str) -> bool {
        self.cfg.scanner_user_agents.iter().any(|s| {
            user_agent
                .as_bytes()
                .windows(s.len())
                .any(|w| w.eq_ignore_ascii_case(s.as_bytes()))
        })
    }

    fn state(&mut self, src: IpAddr, now: Instant) -> Option<&mut SourceState> {
        if !self.sources.contains_key(&src) && self.sources.len() >= MAX_TRACKED_SOURCES {
            self.expire(now);
            if self.sources.len() >= MAX_TRACKED_SOURCES {
                return None;
            }
        }
        let cfg = &self.cfg;
        let s = self.sources.entry(src).or_insert_with(|| SourceState {
            requests: TokenBucket::new(
                f64::from(cfg.max_requests_per_s),
                f64::from(cfg.max_requests_per_s),
            ),
            invites: TokenBucket::new(
                f64::from(cfg.max_invites_per_s),
                f64::from(cfg.max_invites_per_s),
            ),
            violations: 0,
            banned_until: None,
            last_seen: now,
        });
        s.last_seen = now;
        Some(s)
    }

    fn violation(&mut self, src: IpAddr, now: Instant, weight: u32) {
        let (threshold, ban) = (
            self.cfg.ban_threshold,
            Duration::from_secs(u64::from(self.cfg.ban_duration_s)),
        );
        if let Some(s) = self.state(src, now) {
            s.violations = s.violations.saturating_add(weight);
            if s.violations >= threshold {
                s.banned_until = Some(now + ban);
                s.violations = 0;
            }
        }
    }

    /// Checks one request.
    pub fn check(&mut self, r: &RequestFacts<'_>, now: Instant) -> Verdict {
        let threshold = self.cfg.ban_threshold;
        if let Some(s) = self.state(r.src, now) {
            if s.banned_until.is_some_and(|b| now < b) {
                return Verdict::Drop;
            }
            s.banned_until = None;
        }
        if r.user_agent.is_some_and(|ua| self.is_scanner(ua)) {
            // One scanner probe is enough to know.
            self.violation(r.src, now, threshold);
            return Verdict::Drop;
        }
        if r.size > self.cfg.max_message_size as usize {
            self.violation(r.src, now, 1);
            return Verdict::Reject(513);
        }
        if r.header_count > self.cfg.max_headers as usize {
            self.violation(r.src, now, 1);
            return Verdict::Reject(400);
        }
        let limited = match self.state(r.src, now) {
            Some(s) => {
                s.requests.try_take(now).is_err()
                    || (r.is_invite && s.invites.try_take(now).is_err())
            }
            None => false,
        };
        if limited {
            self.violation(r.src, now, 1);
            return Verdict::Drop;
        }
        Verdict::Allow
    }

    /// A request from a source that belongs to no trunk (or failed authentication): counts towards a ban and
    /// answers per `security.unauthorized`.
    pub fn unauthorized(&mut self, src: IpAddr, now: Instant) -> Verdict {
        self.violation(src, now, 1);
        match self.cfg.unauthorized {
            UnauthorizedAction::Reject => Verdict::Reject(403),
            UnauthorizedAction::Drop => Verdict::Drop,
        }
    }

    pub fn is_banned(&self, src: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&src)
            .and_then(|s| s.banned_until)
            .is_some_and(|b| now < b)
    }

    /// Sources banned now with the time left, longest first.
    pub fn bans(&self, now: Instant) -> Vec<(IpAddr, Duration)> {
        let mut v: Vec<_> = self
            .sources
            .iter()
            .filter_map(|(ip, s)| {
                let until = s.banned_until.filter(|b| now < *b)?;
                Some((*ip, until - now))
            })
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Lifts a ban (an operator's decision) and forgets the source's violations; false if it was not banned.
    pub fn unban(&mut self, ip: IpAddr, now: Instant) -> bool {
        match self.sources.get_mut(&ip) {
            Some(s) if s.banned_until.is_some_and(|b| now < b) => {
                s.banned_until = None;
                s.violations = 0;
                true
            }
            _ => false,
        }
    }

    /// Forgets idle sources whose ban is over (call from a periodic timer).
    pub fn expire(&mut self, now: Instant) {
        self.sources.retain(|_, s| {
            s.banned_until.is_some_and(|b| now < b)
                || now.saturating_duration_since(s.last_seen) < IDLE_FORGET
        });
    }

    pub fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Security {
        Security {
            max_requests_per_s: 5,
            max_invites_per_s: 2,
            ban_threshold: 3,
            ban_duration_s: 60,
            scanner_user_agents: vec!["friendly-scanner".into(), "sipvicious".into()],
            max_message_size: 4096,
            max_headers: 20,
            unauthorized: UnauthorizedAction::Drop,
            tcp_max_connections: 100,
            tcp_max_per_source: 10,
            tcp_idle_timeout_s: 600,
            tcp_message_timeout_ms: 10_000,
            kernel_bans: false,
        }
    }

    fn facts(src: &str) -> RequestFacts<'static> {
        RequestFacts {
            src: src.parse().unwrap(),
            is_invite: true,
            user_agent: Some("PBX/1.0"),
            size: 900,
            header_count: 12,
        }
    }

    #[test]
    fn rate_limit_then_ban_then_unban() {
        let mut g = SourceGuard::new(&cfg());
        let t0 = Instant::now();
        let f = facts("192.0.2.1");
        assert_eq!(g.check(&f, t0), Verdict::Allow);
        assert_eq!(g.check(&f, t0), Verdict::Allow);
        // Third INVITE in the same instant: over 2/s.
        for _ in 0..3 {
            assert_eq!(g.check(&f, t0), Verdict::Drop);
        }
        assert!(g.is_banned(f.src, t0));
        assert_eq!(g.check(&f, t0 + Duration::from_secs(30)), Verdict::Drop);
        // Other sources are unaffected.
        assert_eq!(g.check(&facts("192.0.2.2"), t0), Verdict::Allow);
        assert_eq!(g.check(&f, t0 + Duration::from_secs(61)), Verdict::Allow);
    }

    #[test]
    fn scanners_size_headers_unauthorized() {
        let mut g = SourceGuard::new(&cfg());
        let t0 = Instant::now();
        let mut f = facts("2001:db8::1");
        f.user_agent = Some("Friendly-Scanner 0.9");
        assert_eq!(g.check(&f, t0), Verdict::Drop);
        assert!(g.is_banned(f.src, t0), "one scanner probe bans");
        let mut f = facts("192.0.2.3");
        f.size = 5000;
        assert_eq!(g.check(&f, t0), Verdict::Reject(513));
        f.size = 100;
        f.header_count = 21;
        assert_eq!(g.check(&f, t0), Verdict::Reject(400));
        assert_eq!(g.unauthorized(f.src, t0), Verdict::Drop);
        assert!(g.is_banned(f.src, t0));
        g.expire(t0 + Duration::from_secs(3600));
        assert_eq!(g.tracked(), 0);
    }

    #[test]
    fn bans_are_listed_and_lifted_by_the_operator() {
        let mut g = SourceGuard::new(&cfg());
        let t0 = Instant::now();
        let bad: IpAddr = "198.51.100.7".parse().unwrap();
        for _ in 0..3 {
            g.unauthorized(bad, t0);
        }
        g.unauthorized("198.51.100.8".parse().unwrap(), t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(g.bans(later), vec![(bad, Duration::from_secs(50))]);
        assert!(!g.unban("198.51.100.8".parse().unwrap(), later));
        assert!(g.unban(bad, later));
        assert!(g.bans(later).is_empty());
        assert_eq!(g.check(&facts("198.51.100.7"), later), Verdict::Allow);
        assert!(g.bans(t0 + Duration::from_secs(61)).is_empty());
    }
}
