//! Call admission per trunk: concurrent-call cap and calls-per-second token bucket, both on a caller clock.
//! A refusal is a 503 with a Retry-After the caller copies into the response.

use super::TrunkId;
use crate::config::Config;
use std::time::{Duration, Instant};

/// Token bucket: `rate` tokens per second, at most `burst` banked.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// Starts full, so a restart does not refuse the first burst.
    pub fn new(rate_per_s: f64, burst: f64) -> Self {
        let burst = burst.max(1.0);
        TokenBucket {
            rate: rate_per_s,
            burst,
            tokens: burst,
            last: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.rate > 0.0 {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        } else {
            Err(Duration::MAX)
        }
    }
}

/// Why a call was refused; answer `503` with `Retry-After: retry_after_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("trunk at its concurrent call limit")]
    TooManyCalls { retry_after_s: u32 },
    #[error("trunk over its call rate")]
    TooFast { retry_after_s: u32 },
}

impl Refused {
    pub const CODE: u16 = 503;
    pub fn retry_after_s(self) -> u32 {
        match self {
            Refused::TooManyCalls { retry_after_s } | Refused::TooFast { retry_after_s } => {
                retry_after_s
            }
        }
    }
}

/// How long a caller refused for concurrency is asked to wait: calls last minutes, so a few seconds.
pub const FULL_RETRY_AFTER_S: u32 = 5;

#[derive(Debug, Clone)]
struct TrunkGate {
    name: String,
    max_calls: Option<u32>,
    active: u32,
    bucket: Option<TokenBucket>,
}

/// Admission state for every trunk (owned by the signalling thread).
#[derive(Debug, Clone)]
pub struct Admission {
    gates: Vec<TrunkGate>,
}

impl Admission {
    pub fn new(cfg: &Config) -> Self {
        Admission {
            gates: cfg
                .trunks
                .iter()
                .map(|t| TrunkGate {
                    name: t.name.clone(),
                    max_calls: t.max_calls,
                    active: 0,
                    // A burst of one second's worth: `max_cps = 10` admits 10 at once, then 10 per second.
                    bucket: t.max_cps.map(|r| TokenBucket::new(r, r)),
                })
                .collect(),
        }
    }

    /// The same limits under a reloaded config, keeping the active counts and buckets of trunks (by name)
    /// whose limits did not change.
    pub fn reloaded(&self, new: &Config) -> Self {
        let mut a = Admission::new(new);
        for g in &mut a.gates {
            if let Some(old) = self.gates.iter().find(|o| o.name == g.name) {
                g.active = old.active;
                if old.bucket.as_ref().map(|b| b.rate) == g.bucket.as_ref().map(|b| b.rate) {
                    g.bucket.clone_from(&old.bucket);
                }
            }
        }
        a
    }

    /// Admits a new call from or to `trunk` (count it on each trunk it uses), or refuses it.
    pub fn admit(&mut self, trunk: TrunkId, now: Instant) -> Result<(), Refused> {
        let Some(g) = self.gates.get_mut(usize::from(trunk.0)) else {
            return Ok(());
        };
        if g.max_calls.is_some_and(|m| g.active >= m) {
            return Err(Refused::TooManyCalls {
                retry_after_s: FULL_RETRY_AFTER_S,
            });
        }
        if let Some(b) = &mut g.bucket {
            b.try_take(now).map_err(|wait| Refused::TooFast {
                retry_after_s: u32::try_from(wait.as_secs().saturating_add(1)).unwrap_or(u32::MAX),
            })?;
        }
        g.active += 1;
        Ok(())
    }

    /// A call admitted on `trunk` ended.
    pub fn release(&mut self, trunk: TrunkId) {
        if let Some(g) = self.gates.get_mut(usize::from(trunk.0)) {
            g.active = g.active.saturating_sub(1);
        }
    }

    pub fn active(&self, trunk: TrunkId) -> u32 {
        self.gates.get(usize::from(trunk.0)).map_or(0, |g| g.active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use proptest::prelude::*;
    use std::path::Path;

    const CFG: &str = r#"
[node]
name = "t"
[[listen]]
transport = "udp"
address = "127.0.0.1:5060"
[[trunk]]
name = "a"
acl = ["10.0.0.0/8"]
max_calls = 2
max_cps = 2
[[trunk]]
name = "b"
targets = ["sip:127.0.0.1:5080"]
"#;

    #[test]
    fn concurrency_and_rate() {
        let c = load_str(CFG, Path::new("t")).unwrap();
        let mut a = Admission::new(&c);
        let t0 = Instant::now();
        let ta = TrunkId(0);
        assert_eq!(a.admit(ta, t0), Ok(()));
        assert_eq!(a.admit(ta, t0), Ok(()));
        assert_eq!(
            a.admit(ta, t0),
            Err(Refused::TooManyCalls { retry_after_s: 5 })
        );
        a.release(ta);
        // Slot free, but both tokens were used within the same instant.
        assert_eq!(a.admit(ta, t0), Err(Refused::TooFast { retry_after_s: 1 }));
        assert_eq!(a.admit(ta, t0 + Duration::from_millis(500)), Ok(()));
        assert_eq!(a.active(ta), 2);
        // Unlimited trunk.
        for _ in 0..1000 {
            assert_eq!(a.admit(TrunkId(1), t0), Ok(()));
        }
        let b = a.reloaded(&c);
        assert_eq!(b.active(ta), 2);
        assert_eq!(b.active(TrunkId(1)), 1000);
    }

    proptest! {
        /// Over any schedule, admitted calls never exceed burst + rate * elapsed.
        #[test]
        fn bucket_never_exceeds_rate(rate in 1u32..50, gaps in proptest::collection::vec(0u64..200, 1..300)) {
            let mut b = TokenBucket::new(f64::from(rate), f64::from(rate));
            let t0 = Instant::now();
            let mut t = t0;
            let mut ok = 0u64;
            for g in gaps {
                t += Duration::from_millis(g);
                if b.try_take(t).is_ok() { ok += 1; }
            }
            let elapsed = t.duration_since(t0).as_secs_f64();
            prop_assert!(ok as f64 <= f64::from(rate) * (1.0 + elapsed) + 1e-6);
        }
    }
}
