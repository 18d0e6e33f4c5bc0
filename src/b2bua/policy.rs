//! The routing decisions the B2BUA takes from the configuration: which trunk a source belongs to, number
//! translation, route choice and the target list of a trunk. Pure functions of `Config` and the request's
//! fields; `crate::routing` is meant to take these over (with SRV/DNS targets) once it lands.
use std::net::{IpAddr, SocketAddr};

use crate::config::{Config, Host, NumberField, TargetSpec, Transport as CfgTransport};
use crate::sip::txn::Transport;

/// The trunk a request from `src` belongs to: the first trunk whose ACL holds the address, or whose targets
/// include it (a cloud trunk without an ACL still gets its own targets' requests: outbound calls, REFER).
pub fn trunk_of_source(cfg: &Config, src: IpAddr) -> Option<usize> {
    if let Some(i) = cfg
        .trunks
        .iter()
        .position(|t| t.acl.iter().any(|net| net.contains(&src)))
    {
        return Some(i);
    }
    cfg.trunks.iter().position(|t| {
        t.targets.iter().any(|spec| match spec {
            TargetSpec::Uri {
                host: Host::Ip(ip), ..
            } => *ip == src,
            _ => false,
        })
    })
}

/// Applies the trunk's translation rules for `field` to `number`, in order; each matching rule rewrites the
/// number (with `$1`-style captures) and the next rule sees the result.
pub fn translate(cfg: &Config, trunk: usize, field: NumberField, number: &str) -> String {
    let mut cur = number.to_owned();
    for rule in cfg
        .rules
        .iter()
        .filter(|r| r.trunk == trunk && r.applies_to(field))
    {
        if rule.pattern.regex.is_match(&cur) {
            cur = rule
                .pattern
                .regex
                .replace(&cur, rule.replace.as_str())
                .into_owned();
        }
    }
    cur
}

/// The destination trunk for a call from `from` to `number`: among the routes from that trunk whose number
/// pattern matches (or that have none), the one with the lowest priority value; config order breaks ties.
pub fn route(cfg: &Config, from: usize, number: &str) -> Option<usize> {
    cfg.routes
        .iter()
        .filter(|r| r.from == from)
        .filter(|r| r.number.as_ref().is_none_or(|p| p.regex.is_match(number)))
        .min_by_key(|r| r.priority)
        .map(|r| r.to)
}

/// One resolved target of a trunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
}

pub fn transport_of(t: CfgTransport) -> Transport {
    match t {
        CfgTransport::Udp => Transport::Udp,
        CfgTransport::Tcp => Transport::Tcp,
        CfgTransport::Tls => Transport::Tls,
    }
}

/// The targets of a trunk that are literal IP addresses, in configured order (default port 5060, 5061 for
/// TLS). Host names and SRV targets need DNS and are not resolved here.
pub fn static_targets(cfg: &Config, trunk: usize) -> Vec<Target> {
    let Some(t) = cfg.trunks.get(trunk) else {
        return Vec::new();
    };
    t.targets
        .iter()
        .filter_map(|spec| match spec {
            TargetSpec::Uri {
                host: Host::Ip(ip),
                port,
                transport,
                ..
            } => {
                let transport = transport_of(*transport);
                let default = if transport == Transport::Tls {
                    5061
                } else {
                    5060
                };
                Some(Target {
                    transport,
                    addr: SocketAddr::new(*ip, port.unwrap_or(default)),
                })
            }
            _ => None,
        })
        .collect()
}

/// E.164-ish user part: digits with an optional leading `+` (visual separators removed).
pub fn clean_number(user: &[u8]) -> String {
    user.iter()
        .filter(|b| b.is_ascii_digit() || **b == b'+' || **b == b'*' || **b == b'#')
        .map(|&b| b as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use std::path::Path;

    const CFG: &str = r#"
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
[[rule]]
trunk = "carrier"
match = '^\+?1?(555\d{7})$'
replace = "+1$1"
[[route]]
from = "carrier"
to = "cloud"
number = '^\+1555'
[[route]]
from = "cloud"
to = "carrier"
"#;

    #[test]
    fn source_translation_route_targets() {
        let c = load_str(CFG, Path::new("t.toml")).unwrap();
        assert_eq!(trunk_of_source(&c, "10.1.2.3".parse().unwrap()), Some(0));
        assert_eq!(trunk_of_source(&c, "192.0.2.2".parse().unwrap()), Some(1));
        assert_eq!(
            static_targets(&c, 0)[0].addr,
            "10.0.0.1:5060".parse().unwrap()
        );
        assert_eq!(trunk_of_source(&c, "203.0.113.9".parse().unwrap()), None);
        assert_eq!(
            translate(&c, 0, NumberField::RequestUri, "5551234567"),
            "+15551234567"
        );
        assert_eq!(
            translate(&c, 1, NumberField::RequestUri, "5551234567"),
            "5551234567"
        );
        assert_eq!(route(&c, 0, "+15551234567"), Some(1));
        assert_eq!(route(&c, 0, "+4930"), None);
        assert_eq!(route(&c, 1, "+4930"), Some(0));
        let t = static_targets(&c, 1);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].addr, "192.0.2.1:5070".parse().unwrap());
        assert_eq!(t[1].transport, Transport::Tcp);
        assert_eq!(t[1].addr.port(), 5060);
        assert_eq!(clean_number(b"+1-555-123"), "+1555123");
    }
}
