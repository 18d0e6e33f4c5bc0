//! Sign-in state of the admin console, sans-IO: sessions, CSRF tokens and lockout after failed sign-ins.
//!
//! Passwords are checked elsewhere ([`super::users`], argon2id); this module only decides who may try, remembers
//! who succeeded, and hands out the tokens. Time comes in as an argument so tests drive it directly.
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A session not used for this long is gone (the operator signs in again).
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// No session lives longer than this, used or not.
pub const SESSION_MAX: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; the oldest goes first (bounds memory against sign-in loops by a valid user).
pub const MAX_SESSIONS: usize = 256;
/// A source address is locked after this many times the per-user limit (password spraying across names).
pub const SOURCE_FACTOR: u32 = 4;

/// Name of the session cookie (HttpOnly, SameSite=Strict; Secure when served over TLS).
pub const SESSION_COOKIE: &str = "tg_session";
/// Name of the pre-sign-in cookie that makes the sign-in form itself CSRF-proof (double submit).
pub const LOGIN_COOKIE: &str = "tg_login";

/// Lockout policy (from `[forwarding] lockout_after` and `lockout_s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failed sign-ins for one user name within `window` before it is locked.
    pub after: u32,
    /// How long a lock lasts, and the window failures are counted in.
    pub window: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            after: 5,
            window: Duration::from_secs(900),
        }
    }
}

/// A signed-in operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// Every state-changing request of this session must carry this token (form field or `X-CSRF-Token`).
    pub csrf: String,
    /// The user's password hash at sign-in: when it changes (new password, user removed) the session ends.
    pub stamp: String,
    created: Instant,
    last_seen: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

/// Why a sign-in attempt is not even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key<'a> {
    User(&'a str),
    Source(IpAddr),
}

/// All sessions and failure counters of one API server.
#[derive(Debug)]
pub struct Auth {
    policy: LockoutPolicy,
    sessions: HashMap<String, Session>,
    users: HashMap<String, Failures>,
    sources: HashMap<IpAddr, Failures>,
}

/// 32 random bytes from the OS as hex: session ids and CSRF tokens.
pub fn token() -> String {
    let mut b = [0u8; 32];
    // The OS RNG failing is not something a sign-in can work around; a fixed token would be worse.
    getrandom::fill(&mut b).expect("OS random number generator");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Equal without an early exit, so a CSRF comparison leaks no prefix length through timing.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Auth {
    pub fn new(policy: LockoutPolicy) -> Self {
        Auth {
            policy,
            sessions: HashMap::new(),
            users: HashMap::new(),
            sources: HashMap::new(),
        }
    }

    fn entry(&mut self, k: Key) -> Option<&mut Failures> {
        match k {
            Key::User(u) => self.users.get_mut(u),
            Key::Source(ip) => self.sources.get_mut(&ip),
        }
    }

    fn limit(&self, k: Key) -> u32 {
        match k {
            Key::User(_) => self.policy.after,
            Key::Source(_) => self.policy.after.saturating_mul(SOURCE_FACTOR),
        }
    }

    /// `Err` when `user` or `from` is locked: the password is then not even checked.
    pub fn may_try(&mut self, user: &str, from: IpAddr, now: Instant) -> Result<(), Locked> {
        let mut worst: Option<Duration> = None;
        for k in [Key::User(user), Key::Source(from)] {
            if let Some(f) = self.entry(k)
                && let Some(until) = f.locked_until
            {
                if until > now {
                    let left = until - now;
                    worst = Some(worst.map_or(left, |w| w.max(left)));
                } else {
                    *f = Failures {
                        count: 0,
                        first: now,
                        locked_until: None,
                    };
                }
            }
        }
        match worst {
            Some(retry_after) => Err(Locked { retry_after }),
            None => Ok(()),
        }
    }

    /// Counts a failed sign-in; returns the lock when this failure set one.
    pub fn failed(&mut self, user: &str, from: IpAddr, now: Instant) -> Option<Locked> {
        let window = self.policy.window;
        let mut locked = None;
        for k in [Key::User(user), Key::Source(from)] {
            let limit = self.limit(k);
            let fresh = Failures {
                count: 0,
                first: now,
                locked_until: None,
            };
            // Unknown names are counted too (so guessing names is locked as well), but bounded in number.
            if self.users.len() + self.sources.len() > 4096 {
                self.users
                    .retain(|_, f| f.locked_until.is_some_and(|t| t > now));
                self.sources
                    .retain(|_, f| f.locked_until.is_some_and(|t| t > now));
            }
            let f = match k {
                Key::User(u) => self.users.entry(u.to_owned()).or_insert(fresh),
                Key::Source(ip) => self.sources.entry(ip).or_insert(fresh),
            };
            if now.duration_since(f.first) > window {
                *f = fresh;
            }
            f.count += 1;
            if f.count >= limit && f.locked_until.is_none() {
                f.locked_until = Some(now + window);
                locked = Some(Locked {
                    retry_after: window,
                });
            }
        }
        locked
    }

    /// A successful sign-in: clears the user's failures and opens a session. Returns (session id, session).
    pub fn signed_in(
        &mut self,
        user: &str,
        stamp: String,
        from: IpAddr,
        now: Instant,
    ) -> (String, Session) {
        self.users.remove(user);
        if let Some(f) = self.sources.get_mut(&from) {
            f.count = f.count.saturating_sub(1);
        }
        self.expire(now);
        if self.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            self.sessions.remove(&oldest);
        }
        let s = Session {
            user: user.to_owned(),
            csrf: token(),
            stamp,
            created: now,
            last_seen: now,
        };
        let id = token();
        self.sessions.insert(id.clone(), s.clone());
        (id, s)
    }

    /// The live session `id` names, its idle clock restarted; `None` when unknown or expired.
    pub fn session(&mut self, id: &str, now: Instant) -> Option<Session> {
        let s = self.sessions.get_mut(id)?;
        if now.duration_since(s.last_seen) > SESSION_IDLE
            || now.duration_since(s.created) > SESSION_MAX
        {
            self.sessions.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    pub fn sign_out(&mut self, id: &str) {
        self.sessions.remove(id);
    }

    fn expire(&mut self, now: Instant) {
        self.sessions.retain(|_, s| {
            now.duration_since(s.last_seen) <= SESSION_IDLE
                && now.duration_since(s.created) <= SESSION_MAX
        });
    }
}

/// The value of cookie `name` in a `Cookie:` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A `Set-Cookie` value: always HttpOnly and SameSite=Strict, Secure when the console is served over TLS.
pub fn set_cookie(name: &str, value: &str, max_age: Option<Duration>, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={}", a.as_secs()));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn lockout_after_repeated_failures_then_expires() {
        let mut a = Auth::new(LockoutPolicy {
            after: 3,
            window: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        assert!(a.may_try("alice", ip(1), t0).is_ok());
        assert_eq!(a.failed("alice", ip(1), t0), None);
        assert_eq!(a.failed("alice", ip(1), t0), None);
        let l = a.failed("alice", ip(1), t0).expect("third failure locks");
        assert_eq!(l.retry_after, Duration::from_secs(60));
        // Locked for every source, even with the right password.
        let e = a
            .may_try("alice", ip(2), t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(e.retry_after, Duration::from_secs(50));
        // Another user from another address is not affected.
        assert!(a.may_try("bob", ip(3), t0).is_ok());
        // The lock ends after the window, and the counter starts over.
        let t1 = t0 + Duration::from_secs(61);
        assert!(a.may_try("alice", ip(1), t1).is_ok());
        assert_eq!(a.failed("alice", ip(1), t1), None);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let mut a = Auth::new(LockoutPolicy {
            after: 2,
            window: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        assert_eq!(a.failed("alice", ip(1), t0), None);
        assert_eq!(
            a.failed("alice", ip(1), t0 + Duration::from_secs(120)),
            None
        );
        assert!(
            a.may_try("alice", ip(1), t0 + Duration::from_secs(121))
                .is_ok()
        );
    }

    #[test]
    fn spraying_names_from_one_source_locks_the_source() {
        let mut a = Auth::new(LockoutPolicy {
            after: 2,
            window: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        // 2 * SOURCE_FACTOR failures, each on a different name: no name reaches its limit.
        for i in 0..(2 * SOURCE_FACTOR) {
            a.failed(&format!("u{i}"), ip(9), t0);
        }
        assert!(a.may_try("fresh", ip(9), t0).is_err());
        assert!(a.may_try("fresh", ip(8), t0).is_ok());
    }

    #[test]
    fn success_clears_the_user_and_sessions_expire() {
        let mut a = Auth::new(LockoutPolicy::default());
        let t0 = Instant::now();
        a.failed("alice", ip(1), t0);
        let (id, s) = a.signed_in("alice", String::new(), ip(1), t0);
        assert_eq!(s.user, "alice");
        assert_eq!(s.csrf.len(), 64);
        assert_ne!(id, s.csrf);
        assert_eq!(
            a.session(&id, t0 + Duration::from_secs(60)).unwrap().user,
            "alice"
        );
        // Used within the idle limit again and again: stays until the absolute limit.
        let mut t = t0;
        while t < t0 + SESSION_MAX - SESSION_IDLE {
            t += SESSION_IDLE / 2;
            assert!(a.session(&id, t).is_some());
        }
        assert!(
            a.session(&id, t0 + SESSION_MAX + Duration::from_secs(1))
                .is_none()
        );
        let (id2, _) = a.signed_in("alice", String::new(), ip(1), t0);
        assert!(
            a.session(&id2, t0 + SESSION_IDLE + Duration::from_secs(1))
                .is_none()
        );
        let (id3, _) = a.signed_in("alice", String::new(), ip(1), t0);
        a.sign_out(&id3);
        assert!(a.session(&id3, t0).is_none());
        assert!(a.session("not-a-session", t0).is_none());
    }

    #[test]
    fn sessions_are_bounded() {
        let mut a = Auth::new(LockoutPolicy::default());
        let t0 = Instant::now();
        let (first, _) = a.signed_in("alice", String::new(), ip(1), t0);
        for i in 0..MAX_SESSIONS {
            a.signed_in(
                "alice",
                String::new(),
                ip(1),
                t0 + Duration::from_millis(i as u64 + 1),
            );
        }
        assert!(a.sessions.len() <= MAX_SESSIONS);
        assert!(a.session(&first, t0 + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn cookies_and_comparison() {
        assert_eq!(
            cookie("a=1; tg_session=abc; b=2", "tg_session"),
            Some("abc")
        );
        assert_eq!(cookie("tg_sessionx=abc", "tg_session"), None);
        assert_eq!(cookie("", "tg_session"), None);
        let c = set_cookie("tg_session", "v", None, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie("tg_session", "v", None, false).contains("Secure"));
        assert!(set_cookie("x", "", Some(Duration::ZERO), false).contains("Max-Age=0"));
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert_ne!(token(), token());
    }
}
