//! Number handling: E.164 normalisation helpers and the per-trunk translation rules.
//!
//! Everything works on user parts as strings and returns a new string only when something changed, plus the
//! index of the rule that fired (for CDRs).

use super::TrunkId;
use crate::config::{Config, NumberField, Numbering};
use std::borrow::Cow;

/// RFC 3966 visual separators (`-`, `.`, `(`, `)`) and spaces, which people paste into numbers.
pub fn strip_visual_separators(s: &str) -> Cow<'_, str> {
    let is_sep = |c: char| matches!(c, '-' | '.' | '(' | ')' | ' ');
    if s.contains(is_sep) {
        Cow::Owned(s.chars().filter(|c| !is_sep(*c)).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// `+` followed by 2 to 15 digits, not starting with 0 (ITU-T E.164).
pub fn is_e164(s: &str) -> bool {
    crate::config::is_e164(s)
}

/// Ensures a leading `+` on an all-digit international number (`4420...` -> `+4420...`).
pub fn ensure_plus(s: &str) -> Cow<'_, str> {
    if s.starts_with('+') {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("+{s}"))
    }
}

/// Rewrites a dialled number to E.164 under a trunk's numbering plan, or `None` when it cannot be read as one
/// (short codes, letters, wrong length).
///
/// In order: already `+` -> kept; international prefix (`00`, `011`) -> `+`; national prefix (`0`, `1`) ->
/// `+` country code; exactly `national_digits` digits -> `+` country code.
pub fn normalise_e164(number: &str, plan: &Numbering) -> Option<String> {
    let s = strip_visual_separators(number);
    let s = s.as_ref();
    let out = if let Some(rest) = s.strip_prefix('+') {
        format!("+{rest}")
    } else if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    } else if let Some(rest) = plan
        .international_prefix
        .as_deref()
        .and_then(|p| s.strip_prefix(p))
    {
        format!("+{rest}")
    } else if let Some(rest) = plan
        .national_prefix
        .as_deref()
        .and_then(|p| s.strip_prefix(p))
        .filter(|rest| {
            plan.national_digits
                .is_none_or(|n| rest.len() == usize::from(n))
        })
    {
        format!("+{}{rest}", plan.country_code)
    } else if plan
        .national_digits
        .is_some_and(|n| s.len() == usize::from(n))
    {
        format!("+{}{s}", plan.country_code)
    } else {
        return None;
    };
    is_e164(&out).then_some(out)
}

/// A rewritten number and the rule (index into `Config::rules`) that produced it; `rule` is `None` when only
/// E.164 normalisation changed the number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub number: String,
    pub rule: Option<usize>,
}

/// The user parts of a request that rules may rewrite.
#[derive(Debug, Clone, Copy, Default)]
pub struct NumberFields<'a> {
    pub ruri: &'a str,
    pub to: Option<&'a str>,
    pub from: Option<&'a str>,
    pub pai: Option<&'a str>,
}

/// What changed; `None` fields are to be left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translated {
    pub ruri: Option<Rewrite>,
    pub to: Option<Rewrite>,
    pub from: Option<Rewrite>,
    pub pai: Option<Rewrite>,
}

impl Translated {
    /// The called number after translation, given the one received.
    pub fn called<'a>(&'a self, received: &'a str) -> &'a str {
        self.ruri.as_ref().map_or(received, |r| r.number.as_str())
    }
}

/// Translation rules grouped by the trunk they apply to, in file order (first match wins).
#[derive(Debug, Clone)]
pub struct Translator {
    rules: Vec<crate::config::Rule>,
    by_trunk: Vec<Vec<usize>>,
    plans: Vec<Option<Numbering>>,
}

impl Translator {
    pub fn new(cfg: &Config) -> Self {
        let mut by_trunk = vec![Vec::new(); cfg.trunks.len()];
        for (i, r) in cfg.rules.iter().enumerate() {
            if let Some(v) = by_trunk.get_mut(r.trunk) {
                v.push(i);
            }
        }
        Translator {
            rules: cfg.rules.clone(),
            by_trunk,
            plans: cfg.trunks.iter().map(|t| t.numbering.clone()).collect(),
        }
    }

    /// Translates one user part of a request that arrived from `trunk`: E.164 normalisation when the trunk has a
    /// numbering plan, then the first rule for this trunk and field whose pattern matches.
    pub fn translate(&self, trunk: TrunkId, field: NumberField, user: &str) -> Option<Rewrite> {
        let t = usize::from(trunk.0);
        let normalised = self
            .plans
            .get(t)
            .and_then(|p| p.as_ref())
            .and_then(|p| normalise_e164(user, p));
        let base = normalised.as_deref().unwrap_or(user);
        for &i in self.by_trunk.get(t).map_or(&[][..], |v| v.as_slice()) {
            let Some(rule) = self.rules.get(i) else {
                continue;
            };
            if !rule.applies_to(field) || !rule.pattern.regex.is_match(base) {
                continue;
            }
            let out = rule.pattern.regex.replacen(base, 1, rule.replace.as_str());
            return Some(Rewrite {
                number: out.into_owned(),
                rule: Some(i),
            })
            .filter(|r| r.number != user);
        }
        normalised
            .filter(|n| n != user)
            .map(|number| Rewrite { number, rule: None })
    }

    /// Translates every field of a request.
    pub fn translate_request(&self, trunk: TrunkId, f: &NumberFields<'_>) -> Translated {
        Translated {
            ruri: self.translate(trunk, NumberField::RequestUri, f.ruri),
            to: f.to.and_then(|u| self.translate(trunk, NumberField::To, u)),
            from: f
                .from
                .and_then(|u| self.translate(trunk, NumberField::From, u)),
            pai: f
                .pai
                .and_then(|u| self.translate(trunk, NumberField::Pai, u)),
        }
    }

    /// The rule at `index` in `Config::rules` (its name for CDRs).
    pub fn rule(&self, index: usize) -> Option<&crate::config::Rule> {
        self.rules.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use proptest::prelude::*;
    use std::path::Path;

    fn nanp() -> Numbering {
        Numbering {
            country_code: "1".into(),
            national_prefix: Some("1".into()),
            international_prefix: Some("011".into()),
            national_digits: Some(10),
        }
    }

    fn europe() -> Numbering {
        Numbering {
            country_code: "44".into(),
            national_prefix: Some("0".into()),
            international_prefix: Some("00".into()),
            national_digits: None,
        }
    }

    #[test]
    fn e164_normalisation() {
        let n = nanp();
        assert_eq!(
            normalise_e164("15551234567", &n).as_deref(),
            Some("+15551234567")
        );
        assert_eq!(
            normalise_e164("(555) 123-4567", &n).as_deref(),
            Some("+15551234567")
        );
        assert_eq!(
            normalise_e164("011 44 20 7946 0000", &n).as_deref(),
            Some("+442079460000")
        );
        assert_eq!(
            normalise_e164("+1 555.123.4567", &n).as_deref(),
            Some("+15551234567")
        );
        assert_eq!(normalise_e164("911", &n), None);
        assert_eq!(normalise_e164("alice", &n), None);
        let e = europe();
        assert_eq!(
            normalise_e164("020 7946 0000", &e).as_deref(),
            Some("+442079460000")
        );
        assert_eq!(
            normalise_e164("0049301234567", &e).as_deref(),
            Some("+49301234567")
        );
        assert_eq!(normalise_e164("+0123", &e), None);
        assert_eq!(ensure_plus("4420"), "+4420");
        assert_eq!(ensure_plus("+4420"), "+4420");
        assert_eq!(strip_visual_separators("1-800.FLOWERS"), "1800FLOWERS");
    }

    const CFG: &str = r#"
[node]
name = "t"
[[listen]]
transport = "udp"
address = "127.0.0.1:5060"
[[trunk]]
name = "carrier"
acl = ["10.0.0.0/8"]
[[trunk]]
name = "cloud"
targets = ["sip:127.0.0.1:5080"]
numbering = { country_code = "1", national_prefix = "1", national_digits = 10 }
[[rule]]
name = "corp"
trunk = "carrier"
match = '^\+?1?5551234567$'
replace = "+18005551234"
[[rule]]
name = "e164-caller"
trunk = "carrier"
match = '^1?(?P<n>\d{10})$'
replace = "+1${n}"
apply_to = ["from", "pai"]
[[rule]]
name = "never-reached"
trunk = "carrier"
match = '5551234567'
replace = "X"
[[rule]]
trunk = "cloud"
match = '^\+1(\d{10})$'
replace = "1$1"
"#;

    #[test]
    fn rules_first_match_per_field() {
        let c = load_str(CFG, Path::new("t")).unwrap();
        let t = Translator::new(&c);
        let carrier = TrunkId(0);
        let got = t.translate_request(
            carrier,
            &NumberFields {
                ruri: "15551234567",
                to: Some("5551234567"),
                from: Some("12125550100"),
                pai: None,
            },
        );
        assert_eq!(
            got.ruri,
            Some(Rewrite {
                number: "+18005551234".into(),
                rule: Some(0)
            })
        );
        assert_eq!(
            got.to,
            Some(Rewrite {
                number: "+18005551234".into(),
                rule: Some(0)
            })
        );
        assert_eq!(
            got.from,
            Some(Rewrite {
                number: "+12125550100".into(),
                rule: Some(1)
            })
        );
        assert_eq!(got.pai, None);
        assert_eq!(got.called("15551234567"), "+18005551234");
        assert_eq!(
            t.rule(1).and_then(|r| r.name.as_deref()),
            Some("e164-caller")
        );
        // Unmatched numbers are untouched and nothing is allocated for them.
        assert_eq!(t.translate(carrier, NumberField::RequestUri, "4711"), None);
    }

    #[test]
    fn normalisation_runs_before_rules() {
        let c = load_str(CFG, Path::new("t")).unwrap();
        let t = Translator::new(&c);
        // "(212) 555-0100" normalises to +12125550100, then the cloud rule makes it national again.
        assert_eq!(
            t.translate(TrunkId(1), NumberField::RequestUri, "(212) 555-0100"),
            Some(Rewrite {
                number: "12125550100".into(),
                rule: Some(3)
            })
        );
        // Normalisation alone, no rule for From on this trunk.
        assert_eq!(
            t.translate(TrunkId(1), NumberField::From, "2125550100"),
            Some(Rewrite {
                number: "+12125550100".into(),
                rule: None
            })
        );
    }

    proptest! {
        #[test]
        fn normalised_numbers_are_e164(s in "[0-9+() .-]{0,20}") {
            if let Some(n) = normalise_e164(&s, &nanp()) { prop_assert!(is_e164(&n)); }
            if let Some(n) = normalise_e164(&s, &europe()) { prop_assert!(is_e164(&n)); }
        }

        #[test]
        fn national_and_international_agree(n in "[2-9][0-9]{9}") {
            let plan = nanp();
            let a = normalise_e164(&format!("1{n}"), &plan);
            let b = normalise_e164(&format!("0111{n}"), &plan);
            let c = normalise_e164(&n, &plan);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(&a, &c);
        }
    }
}
