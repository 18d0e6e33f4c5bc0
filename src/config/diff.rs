//! What a reload changes, and whether it can be applied without a restart.
//!
//! Trunks, rules, routes, security and log settings are swapped atomically on SIGHUP. Sockets and the media
//! plane (listen addresses, media mode, cores, interfaces, port range, management endpoints) are fixed at start.

use super::types::*;

/// Names (or, for unnamed routes and rules, a description) of what changed in one section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl NamedChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    pub listeners: NamedChanges,
    pub trunks: NamedChanges,
    pub rules: NamedChanges,
    pub routes: NamedChanges,
    /// Other sections whose values changed (`node`, `media`, `security`, `mgmt`, `log`).
    pub sections: Vec<&'static str>,
    /// Why the new config cannot be applied live; empty means hot-reloadable.
    pub restart_reasons: Vec<String>,
}

impl ConfigDiff {
    pub fn needs_restart(&self) -> bool {
        !self.restart_reasons.is_empty()
    }
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
            && self.trunks.is_empty()
            && self.rules.is_empty()
            && self.routes.is_empty()
            && self.sections.is_empty()
    }
}

fn keyed<T, K: Fn(&T) -> String, E: Fn(&T, &T) -> bool>(
    old: &[T],
    new: &[T],
    key: K,
    same: E,
) -> NamedChanges {
    let mut out = NamedChanges::default();
    for o in old {
        match new.iter().find(|n| key(n) == key(o)) {
            None => out.removed.push(key(o)),
            Some(n) if !same(o, n) => out.changed.push(key(o)),
            Some(_) => {}
        }
    }
    for n in new {
        if !old.iter().any(|o| key(o) == key(n)) {
            out.added.push(key(n));
        }
    }
    out
}

fn trunk_name(c: &Config, i: usize) -> &str {
    c.trunks.get(i).map_or("?", |t| t.name.as_str())
}

fn rule_key(c: &Config, r: &Rule) -> String {
    match &r.name {
        Some(n) => n.clone(),
        None => format!(
            "{}: {} -> {}",
            trunk_name(c, r.trunk),
            r.pattern.source,
            r.replace
        ),
    }
}

fn route_key(c: &Config, r: &Route) -> String {
    match &r.name {
        Some(n) => n.clone(),
        None => format!(
            "{} [{}] -> {}",
            trunk_name(c, r.from),
            r.number.as_ref().map_or(".*", |p| p.source.as_str()),
            trunk_name(c, r.to)
        ),
    }
}

/// Compares two validated configurations. Rules and routes refer to trunks by name for the comparison, so
/// reordering trunks is not a change of every rule.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut d = ConfigDiff {
        listeners: keyed(&old.listen, &new.listen, Listener::key, |a, b| {
            a.tls == b.tls && trunk_opt(old, a.trunk) == trunk_opt(new, b.trunk)
        }),
        trunks: keyed(&old.trunks, &new.trunks, |t| t.name.clone(), |a, b| a == b),
        ..Default::default()
    };
    // Rules and routes: one set of keys over both configs, each describing itself in its own config.
    let rk_old: Vec<(String, &Rule)> = old.rules.iter().map(|r| (rule_key(old, r), r)).collect();
    let rk_new: Vec<(String, &Rule)> = new.rules.iter().map(|r| (rule_key(new, r), r)).collect();
    d.rules = keyed(
        &rk_old,
        &rk_new,
        |x| x.0.clone(),
        |a, b| {
            trunk_name(old, a.1.trunk) == trunk_name(new, b.1.trunk)
                && a.1.pattern == b.1.pattern
                && a.1.replace == b.1.replace
                && a.1.apply_to == b.1.apply_to
        },
    );
    // Rule order matters (first match wins), so a reorder is a change too.
    let order_old: Vec<&String> = rk_old.iter().map(|x| &x.0).collect();
    let order_new: Vec<&String> = rk_new.iter().map(|x| &x.0).collect();
    if d.rules.is_empty() && order_old != order_new {
        d.rules.changed.push("order".into());
    }
    let ro_old: Vec<(String, &Route)> = old.routes.iter().map(|r| (route_key(old, r), r)).collect();
    let ro_new: Vec<(String, &Route)> = new.routes.iter().map(|r| (route_key(new, r), r)).collect();
    d.routes = keyed(
        &ro_old,
        &ro_new,
        |x| x.0.clone(),
        |a, b| {
            trunk_name(old, a.1.from) == trunk_name(new, b.1.from)
                && trunk_name(old, a.1.to) == trunk_name(new, b.1.to)
                && a.1.number == b.1.number
                && a.1.priority == b.1.priority
        },
    );

    if old.node != new.node {
        d.sections.push("node");
    }
    if old.media != new.media {
        d.sections.push("media");
    }
    if old.security != new.security {
        d.sections.push("security");
        let (os, ns) = (&old.security, &new.security);
        if (
            os.tcp_max_connections,
            os.tcp_max_per_source,
            os.tcp_idle_timeout_s,
            os.tcp_message_timeout_ms,
            os.kernel_bans,
        ) != (
            ns.tcp_max_connections,
            ns.tcp_max_per_source,
            ns.tcp_idle_timeout_s,
            ns.tcp_message_timeout_ms,
            ns.kernel_bans,
        ) {
            d.restart_reasons
                .push("TCP connection limits, timeouts or kernel_bans changed".into());
        }
    }
    if old.mgmt != new.mgmt {
        d.sections.push("mgmt");
        d.restart_reasons
            .push("management endpoints, CDR file or SIP trace changed".into());
    }
    if old.forwarding != new.forwarding {
        d.sections.push("forwarding");
        d.restart_reasons.push(
            "forwarding settings changed (database, API address, TLS files or lockout)".into(),
        );
    }
    if old.log != new.log {
        d.sections.push("log");
    }

    if !d.listeners.added.is_empty() || !d.listeners.removed.is_empty() {
        d.restart_reasons.push("listen addresses changed".into());
    }
    if !d.listeners.changed.is_empty() {
        d.restart_reasons.push(format!(
            "listener settings changed: {}",
            d.listeners.changed.join(", ")
        ));
    }
    let (om, nm) = (&old.media, &new.media);
    if om.mode != nm.mode || om.xdp_required != nm.xdp_required {
        d.restart_reasons.push("media mode changed".into());
    }
    if om.worker_cores != nm.worker_cores {
        d.restart_reasons.push("media worker cores changed".into());
    }
    if om.interfaces != nm.interfaces {
        d.restart_reasons.push("media interfaces changed".into());
    }
    if (om.port_min, om.port_max) != (nm.port_min, nm.port_max) {
        d.restart_reasons.push("media port range changed".into());
    }
    d
}

fn trunk_opt(c: &Config, i: Option<usize>) -> Option<&str> {
    i.map(|i| trunk_name(c, i))
}
