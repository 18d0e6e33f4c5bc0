//! Routing, sans-IO: which trunk a request comes from, how its numbers are rewritten, where it goes, which
//! target of that trunk to try, digest authentication, call admission, and per-source protection.
//!
//! [`Routing`] is immutable and built once per config (regexes compiled at load); swap it whole on reload.
//! Mutable per-trunk state ([`targets::TrunkTargets`], [`admission::Admission`], [`digest::DigestServer`])
//! is owned by the signalling thread.

pub mod acl;
pub mod admission;
pub mod digest;
pub mod guard;
pub mod numbers;
pub mod route;
pub mod targets;

use crate::config::{Config, Host, TargetSpec};
use std::net::IpAddr;

/// Index of a trunk in `Config::trunks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrunkId(pub u16);

impl TrunkId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Where a request's source puts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The source address is in this trunk's ACL.
    Trunk(TrunkId),
    /// Not in any ACL, but the listener names a trunk with inbound digest auth: challenge, then treat the
    /// request as this trunk's.
    NeedsAuth(TrunkId),
    /// Nobody we know: apply `security.unauthorized`.
    Unknown,
}

/// The immutable routing tables of one configuration.
#[derive(Debug, Clone)]
pub struct Routing {
    pub acl: acl::AclTable,
    pub translator: numbers::Translator,
    pub router: route::Router,
    /// Per trunk: has inbound digest auth.
    auth: Vec<bool>,
    /// Per listener (index into `Config::listen`): its trunk hint.
    listener_trunk: Vec<Option<TrunkId>>,
    /// Literal IP targets of every trunk, in trunk order: a trunk without an ACL (a cloud trunk) still owns the
    /// requests its own targets send (outbound calls, REFER, BYE from a new address).
    target_ips: Vec<(IpAddr, TrunkId)>,
}

impl Routing {
    pub fn new(cfg: &Config) -> Self {
        let id = |i: usize| u16::try_from(i).ok().map(TrunkId);
        Routing {
            acl: acl::AclTable::new(
                cfg.trunks
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| Some((id(i)?, t.acl.as_slice()))),
            ),
            translator: numbers::Translator::new(cfg),
            router: route::Router::new(cfg),
            auth: cfg
                .trunks
                .iter()
                .map(|t| t.inbound_auth.is_some())
                .collect(),
            listener_trunk: cfg.listen.iter().map(|l| l.trunk.and_then(id)).collect(),
            target_ips: cfg
                .trunks
                .iter()
                .enumerate()
                .filter_map(|(i, t)| Some((id(i)?, t)))
                .flat_map(|(tid, t)| {
                    t.targets.iter().filter_map(move |spec| match spec {
                        TargetSpec::Uri {
                            host: Host::Ip(ip), ..
                        } => Some((acl::normalise(*ip), tid)),
                        _ => None,
                    })
                })
                .collect(),
        }
    }

    /// The trunk a request from `src` belongs to: the ACL's answer, else the first trunk that has `src` as
    /// a literal target address.
    pub fn trunk_of_source(&self, src: IpAddr) -> Option<TrunkId> {
        if let Some(t) = self.acl.classify(src) {
            return Some(t);
        }
        let src = acl::normalise(src);
        self.target_ips
            .iter()
            .find(|(ip, _)| *ip == src)
            .map(|(_, t)| *t)
    }

    /// Classifies a request from `src` that arrived on listener `listener` (index into `Config::listen`).
    /// ACLs decide first; a listener's trunk hint only admits sources that then pass digest auth.
    pub fn classify(&self, src: IpAddr, listener: usize) -> Source {
        if let Some(t) = self.acl.classify(src) {
            return Source::Trunk(t);
        }
        match self.listener_trunk.get(listener).copied().flatten() {
            Some(t) if self.auth.get(t.index()).copied().unwrap_or(false) => Source::NeedsAuth(t),
            _ => Source::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_CONFIG, load_str};
    use std::path::Path;

    #[test]
    fn demo_config_end_to_end() {
        let c = load_str(DEFAULT_CONFIG, Path::new("demo")).unwrap();
        let r = Routing::new(&c);
        let src = r.classify("127.0.0.1".parse().unwrap(), 0);
        assert_eq!(src, Source::Trunk(TrunkId(0)));
        assert_eq!(r.classify("192.0.2.1".parse().unwrap(), 0), Source::Unknown);
        let Source::Trunk(from) = src else {
            unreachable!()
        };
        let tr = r.translator.translate_request(
            from,
            &numbers::NumberFields {
                ruri: "15551234567",
                ..Default::default()
            },
        );
        let hit = r.router.route(from, tr.called("15551234567")).unwrap();
        assert_eq!(c.trunks[hit.to.index()].name, "cloud");
        assert_eq!(tr.called("15551234567"), "+18005551234");
    }

    #[test]
    fn source_by_acl_or_target_ip() {
        let text = r#"
[node]
name = "t"
[[listen]]
transport = "udp"
address = "127.0.0.1:5060"
[[trunk]]
name = "carrier"
acl = ["10.0.0.0/8"]
targets = ["sip:10.0.0.1"]
[[trunk]]
name = "cloud"
targets = ["sip:192.0.2.1:5070", "sip:cloud.example.com", "sip:192.0.2.2;transport=tcp"]
"#;
        let c = load_str(text, Path::new("t")).unwrap();
        let r = Routing::new(&c);
        assert_eq!(
            r.trunk_of_source("10.1.2.3".parse().unwrap()),
            Some(TrunkId(0))
        );
        assert_eq!(
            r.trunk_of_source("192.0.2.2".parse().unwrap()),
            Some(TrunkId(1))
        );
        assert_eq!(
            r.trunk_of_source("::ffff:192.0.2.1".parse().unwrap()),
            Some(TrunkId(1))
        );
        assert_eq!(r.trunk_of_source("203.0.113.9".parse().unwrap()), None);
    }

    #[test]
    fn listener_hint_needs_auth() {
        let text = r#"
[node]
name = "t"
[[listen]]
transport = "udp"
address = "127.0.0.1:5060"
trunk = "pbx"
[[listen]]
transport = "tcp"
address = "127.0.0.1:5060"
trunk = "open"
[[trunk]]
name = "pbx"
auth = { realm = "sbc", users = [{ username = "u", password = "p" }] }
[[trunk]]
name = "open"
"#;
        let c = load_str(text, Path::new("t")).unwrap();
        let r = Routing::new(&c);
        assert_eq!(
            r.classify("192.0.2.1".parse().unwrap(), 0),
            Source::NeedsAuth(TrunkId(0))
        );
        assert_eq!(r.classify("192.0.2.1".parse().unwrap(), 1), Source::Unknown);
    }
}
