//! Call forwarding managed at runtime.
//!
//! A [`Forward`] maps one of the appliance's numbers (as it looks after translation) to a target E.164
//! number through an outbound trunk. The pieces:
//!
//! - this module, sans-IO: the model, input validation ([`validate`]), the immutable [`ForwardIndex`] the
//!   signalling thread reads, and the fallback decision ([`after_failure`]);
//! - [`store`]: the SQLite file (WAL), the only place a forward is written; every committed change publishes a
//!   new index into the shared [`ForwardTable`];
//! - [`runtime`]: what `tollgate run` starts: opens the store, publishes the index, serves the REST API and the
//!   console;
//! - [`users`], [`auth`], [`console`]: argon2id users, sessions/CSRF/lockout (sans-IO), the console's HTML.
//!
//! The B2BUA only ever does `table.load().get(number)`: a lock-free pointer load and a hash lookup, never SQLite.

pub mod admin;
pub mod auth;
pub mod backup;
pub mod console;
pub mod http;
pub mod runtime;
pub mod store;
pub mod users;

use crate::config::Config;
use crate::routing::numbers::is_e164;
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Longest ring timeout a forward may ask for.
pub const MAX_RING_TIMEOUT_S: u32 = 600;

/// Which caller ID the forwarded leg presents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "policy", content = "number")]
pub enum CallerId {
    /// The caller's number, as the normal route would send it.
    Keep,
    /// A fixed number; must be one of the appliance's own numbers.
    Fixed(String),
}

/// One forward, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// The called number after translation (E.164), the key.
    pub number: String,
    /// Where the call goes (E.164).
    pub target: String,
    /// Outbound trunk name.
    pub trunk: String,
    /// No answer within this many seconds: give up on the target (then fall back or answer 480).
    #[serde(default)]
    pub ring_timeout_s: Option<u32>,
    #[serde(default = "keep")]
    pub caller_id: CallerId,
    /// On failure or ring timeout, try the number's normal route instead of answering the failure.
    #[serde(default)]
    pub fallback: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn keep() -> CallerId {
    CallerId::Keep
}

fn yes() -> bool {
    true
}

/// One input error: which field, and why (answered 400 by the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// What validation checks against: the configuration's trunks and the appliance's numbers.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub trunks: Vec<String>,
    /// `[forwarding] numbers`: the numbers a forward may be set on and a fixed caller ID may show.
    pub numbers: Vec<String>,
}

impl Catalog {
    pub fn from_config(cfg: &Config) -> Self {
        Catalog {
            trunks: cfg.trunks.iter().map(|t| t.name.clone()).collect(),
            numbers: cfg.forwarding.numbers.clone(),
        }
    }
}

fn e164_reason(s: &str) -> Option<String> {
    (!is_e164(s))
        .then(|| format!("`{s}` is not an E.164 number (+ then 2 to 15 digits, no leading 0)"))
}

/// Checks a forward against the catalog: every field error, in field order (empty: valid).
pub fn validate(f: &Forward, cat: &Catalog) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut err = |field: &'static str, reason: String| errs.push(FieldError { field, reason });
    if let Some(r) = e164_reason(&f.number) {
        err("number", r);
    } else if !cat.numbers.contains(&f.number) {
        err(
            "number",
            format!(
                "`{}` is not one of this appliance's numbers ([forwarding] numbers)",
                f.number
            ),
        );
    }
    if let Some(r) = e164_reason(&f.target) {
        err("target", r);
    } else if f.target == f.number {
        err("target", "a number cannot be forwarded to itself".into());
    }
    if !cat.trunks.contains(&f.trunk) {
        err("trunk", format!("unknown trunk `{}`", f.trunk));
    }
    if let Some(t) = f.ring_timeout_s
        && !(1..=MAX_RING_TIMEOUT_S).contains(&t)
    {
        err(
            "ring_timeout_s",
            format!("{t} is outside 1..={MAX_RING_TIMEOUT_S} seconds"),
        );
    }
    if let CallerId::Fixed(n) = &f.caller_id {
        if let Some(r) = e164_reason(n) {
            err("caller_id", r);
        } else if !cat.numbers.iter().any(|x| x == n) {
            err(
                "caller_id",
                format!("`{n}` is not one of this appliance's numbers, so it may not be shown"),
            );
        }
    }
    errs
}

/// The immutable lookup table: enabled forwards by number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardIndex {
    by_number: HashMap<String, Forward>,
}

impl ForwardIndex {
    /// Indexes the enabled forwards of `all`.
    pub fn build(all: &[Forward]) -> Self {
        ForwardIndex {
            by_number: all
                .iter()
                .filter(|f| f.enabled)
                .map(|f| (f.number.clone(), f.clone()))
                .collect(),
        }
    }

    /// The enabled forward of `number` (the called number after translation).
    pub fn get(&self, number: &str) -> Option<&Forward> {
        self.by_number.get(number)
    }

    pub fn len(&self) -> usize {
        self.by_number.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_number.is_empty()
    }
}

/// The index as shared between the writer (API thread) and the reader (signalling thread).
pub type ForwardTable = Arc<ArcSwap<ForwardIndex>>;

/// An empty shared table.
pub fn empty_table() -> ForwardTable {
    Arc::new(ArcSwap::from_pointee(ForwardIndex::default()))
}

/// What a forwarded call does when its forwarded attempt fails or rings out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure<T> {
    /// Call the number's normal route (through this trunk).
    Fallback(T),
    /// Answer the caller with this code.
    Reject(u16),
}

/// The fallback decision: the forward asks for a fallback and the number has a normal route -> that route;
/// otherwise the caller hears the failure (`code`, or 480 when the forward rang out without a final answer).
/// A call the caller cancelled never falls back.
pub fn after_failure<T>(
    wants_fallback: bool,
    normal_route: Option<T>,
    caller_cancelled: bool,
    rang_out: bool,
    code: u16,
) -> AfterFailure<T> {
    match normal_route {
        Some(t) if wants_fallback && !caller_cancelled => AfterFailure::Fallback(t),
        _ if rang_out => AfterFailure::Reject(480),
        _ => AfterFailure::Reject(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat() -> Catalog {
        Catalog {
            trunks: vec!["carrier".into(), "cloud".into()],
            numbers: vec!["+18005551234".into(), "+18005550000".into()],
        }
    }

    fn fwd() -> Forward {
        Forward {
            number: "+18005551234".into(),
            target: "+15557654321".into(),
            trunk: "carrier".into(),
            ring_timeout_s: Some(20),
            caller_id: CallerId::Keep,
            fallback: true,
            enabled: true,
        }
    }

    #[test]
    fn valid_forward_has_no_errors() {
        assert!(validate(&fwd(), &cat()).is_empty());
        let f = Forward {
            caller_id: CallerId::Fixed("+18005550000".into()),
            ring_timeout_s: None,
            ..fwd()
        };
        assert!(validate(&f, &cat()).is_empty());
    }

    #[test]
    fn every_field_error_is_reported() {
        let f = Forward {
            number: "1800".into(),
            target: "abc".into(),
            trunk: "nope".into(),
            ring_timeout_s: Some(0),
            caller_id: CallerId::Fixed("+15550001111".into()),
            fallback: false,
            enabled: true,
        };
        let e = validate(&f, &cat());
        let fields: Vec<_> = e.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["number", "target", "trunk", "ring_timeout_s", "caller_id"]
        );
        assert!(e[0].reason.contains("E.164"), "{}", e[0]);
        assert!(e[2].reason.contains("unknown trunk `nope`"));
        assert!(e[4].reason.contains("not one of this appliance's numbers"));
    }

    #[test]
    fn number_must_be_ours_and_not_forwarded_to_itself() {
        let f = Forward {
            number: "+15550001111".into(),
            ..fwd()
        };
        assert_eq!(validate(&f, &cat())[0].field, "number");
        let f = Forward {
            target: "+18005551234".into(),
            ..fwd()
        };
        let e = validate(&f, &cat());
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "target");
        let f = Forward {
            ring_timeout_s: Some(MAX_RING_TIMEOUT_S + 1),
            ..fwd()
        };
        assert_eq!(validate(&f, &cat())[0].field, "ring_timeout_s");
    }

    #[test]
    fn index_holds_enabled_forwards_only() {
        let off = Forward {
            number: "+18005550000".into(),
            enabled: false,
            ..fwd()
        };
        let idx = ForwardIndex::build(&[fwd(), off]);
        assert_eq!(idx.len(), 1);
        assert_eq!(
            idx.get("+18005551234").map(|f| f.trunk.as_str()),
            Some("carrier")
        );
        assert!(idx.get("+18005550000").is_none());
        let table = empty_table();
        assert!(table.load().is_empty());
        table.store(Arc::new(idx));
        assert!(table.load().get("+18005551234").is_some());
    }

    #[test]
    fn fallback_decision() {
        assert_eq!(
            after_failure(true, Some(1), false, false, 486),
            AfterFailure::Fallback(1)
        );
        assert_eq!(
            after_failure(true, Some(1), false, true, 487),
            AfterFailure::Fallback(1)
        );
        assert_eq!(
            after_failure(false, Some(1), false, false, 486),
            AfterFailure::Reject(486)
        );
        assert_eq!(
            after_failure::<u8>(true, None, false, false, 503),
            AfterFailure::Reject(503)
        );
        assert_eq!(
            after_failure(false, Some(1), false, true, 487),
            AfterFailure::Reject(480)
        );
        assert_eq!(
            after_failure(true, Some(1), true, false, 487),
            AfterFailure::Reject(487)
        );
    }

    #[test]
    fn json_shape() {
        let j = serde_json::to_value(fwd()).unwrap();
        assert_eq!(j["caller_id"]["policy"], "keep");
        let f: Forward = serde_json::from_str(
            r#"{"number":"+18005551234","target":"+15557654321","trunk":"cloud",
                "caller_id":{"policy":"fixed","number":"+18005550000"}}"#,
        )
        .unwrap();
        assert!(f.enabled && !f.fallback && f.ring_timeout_s.is_none());
        assert_eq!(f.caller_id, CallerId::Fixed("+18005550000".into()));
        assert!(
            serde_json::from_str::<Forward>(
                r#"{"number":"+1","target":"+1","trunk":"x","bogus":1}"#
            )
            .is_err()
        );
    }
}
