//! Route choice: (source trunk, called number after translation) -> destination trunk.
//!
//! Only configured routes exist: a request that matches none gets the source trunk's `no_route_code`, so the
//! SBC is never an open relay.

use super::TrunkId;
use crate::config::Config;

/// A route that matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteHit {
    pub to: TrunkId,
    /// Index into `Config::routes`.
    pub route: usize,
}

/// No route for this request; answer with `code` (404 unless the trunk says 403/480/484/603/604).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no route (answer {code})")]
pub struct NoRoute {
    pub code: u16,
}

#[derive(Debug, Clone)]
struct Entry {
    number: Option<regex::Regex>,
    to: TrunkId,
    route: usize,
}

/// Routes per source trunk, sorted by priority (ties in file order).
#[derive(Debug, Clone)]
pub struct Router {
    by_trunk: Vec<Vec<Entry>>,
    no_route_code: Vec<u16>,
}

impl Router {
    pub fn new(cfg: &Config) -> Self {
        let mut by_trunk: Vec<Vec<(u32, Entry)>> = vec![Vec::new(); cfg.trunks.len()];
        for (i, r) in cfg.routes.iter().enumerate() {
            let (Some(v), Ok(to)) = (by_trunk.get_mut(r.from), u16::try_from(r.to)) else {
                continue;
            };
            v.push((
                r.priority,
                Entry {
                    number: r.number.as_ref().map(|p| p.regex.clone()),
                    to: TrunkId(to),
                    route: i,
                },
            ));
        }
        Router {
            by_trunk: by_trunk
                .into_iter()
                .map(|mut v| {
                    // Stable: equal priorities keep file order.
                    v.sort_by_key(|(p, _)| *p);
                    v.into_iter().map(|(_, e)| e).collect()
                })
                .collect(),
            no_route_code: cfg.trunks.iter().map(|t| t.no_route_code).collect(),
        }
    }

    /// Every route that matches, best first (the B2BUA may advance to the next when a whole trunk fails).
    pub fn candidates<'a>(
        &'a self,
        from: TrunkId,
        called: &'a str,
    ) -> impl Iterator<Item = RouteHit> + 'a {
        self.by_trunk
            .get(usize::from(from.0))
            .map_or(&[][..], |v| v.as_slice())
            .iter()
            .filter(move |e| e.number.as_ref().is_none_or(|re| re.is_match(called)))
            .map(|e| RouteHit {
                to: e.to,
                route: e.route,
            })
    }

    /// The best route, or the trunk's no-route answer.
    pub fn route(&self, from: TrunkId, called: &str) -> Result<RouteHit, NoRoute> {
        self.candidates(from, called).next().ok_or(NoRoute {
            code: self
                .no_route_code
                .get(usize::from(from.0))
                .copied()
                .unwrap_or(404),
        })
    }
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
no_route_code = 484
[[trunk]]
name = "connect"
targets = ["sip:127.0.0.1:5080"]
[[trunk]]
name = "backup"
targets = ["sip:127.0.0.1:5090"]
[[route]]
from = "carrier"
number = '^\+1800'
to = "backup"
priority = 20
[[route]]
from = "carrier"
number = '^\+1800'
to = "connect"
priority = 10
[[route]]
from = "connect"
to = "carrier"
"#;

    #[test]
    fn priority_then_file_order_and_no_open_relay() {
        let c = load_str(CFG, Path::new("t")).unwrap();
        let r = Router::new(&c);
        assert_eq!(
            r.route(TrunkId(0), "+18005551234"),
            Ok(RouteHit {
                to: TrunkId(1),
                route: 1
            })
        );
        let all: Vec<_> = r
            .candidates(TrunkId(0), "+18005551234")
            .map(|h| h.to)
            .collect();
        assert_eq!(all, vec![TrunkId(1), TrunkId(2)]);
        assert_eq!(r.route(TrunkId(0), "+4420"), Err(NoRoute { code: 484 }));
        assert_eq!(
            r.route(TrunkId(1), "anything"),
            Ok(RouteHit {
                to: TrunkId(0),
                route: 2
            })
        );
        // A trunk with no routes, and an id beyond the table, relay nothing.
        assert_eq!(
            r.route(TrunkId(2), "+18005551234"),
            Err(NoRoute { code: 404 })
        );
        assert_eq!(r.route(TrunkId(99), "+1"), Err(NoRoute { code: 404 }));
    }
}
