use super::*;
use std::path::Path;

const EXAMPLE: &str = include_str!("../../systemd/tollgate.toml");

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_str(text, Path::new("t.toml"))
}

fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

/// A valid base every bad case below edits.
const BASE: &str = r#"[node]
name = "n"

[[listen]]
transport = "udp"
address = "127.0.0.1:5060"

[[trunk]]
name = "a"
acl = ["10.0.0.0/8"]

[[trunk]]
name = "b"
targets = ["sip:127.0.0.1:5080"]

[[route]]
from = "a"
to = "b"
"#;

#[test]
fn default_config_is_valid() {
    let c = load(DEFAULT_CONFIG).unwrap();
    assert_eq!(c.node.name, "demo");
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.media.mode, MediaMode::Bypass);
    assert_eq!(
        c.trunks[0].acl,
        vec!["127.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]
    );
    assert_eq!(c.routes[0].from, 0);
    assert_eq!(c.routes[0].to, 1);
}

#[test]
fn example_config_is_valid() {
    let c = match load(EXAMPLE) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.node.name, "sbc1");
    assert_eq!(c.listen.len(), 3);
    assert_eq!(c.listen[2].transport, Transport::Tls);
    let connect = &c.trunks[c.trunk_index("connect").unwrap()];
    assert_eq!(connect.profile, Profile::Chime);
    assert_eq!(connect.srtp.policy, SrtpPolicy::Required);
    assert!(
        connect
            .targets
            .iter()
            .all(|t| t.transport() == Transport::Tls)
    );
    assert!(connect.headers.allows("x-amzn-foo"));
    assert!(!connect.headers.allows("P-Asserted-Identity"));
    assert_eq!(c.rules.len(), 3);
    assert!(c.rules[0].pattern.regex.is_match("15551234567"));
    assert_eq!(c.media.mode, MediaMode::Xdp);
    assert_eq!(
        c.media.interfaces[1].public_address,
        Some("198.51.100.10".parse().unwrap())
    );
}

#[test]
fn defaults_fill_what_is_not_written() {
    let c = load(BASE).unwrap();
    let b = &c.trunks[1];
    assert_eq!(b.failover_codes, vec![503]);
    assert_eq!(b.health.ping_interval_s, 30);
    assert_eq!(b.session_timer.min_se_s, 90);
    assert_eq!(b.no_route_code, 404);
    assert_eq!(
        c.security.scanner_user_agents,
        vec!["friendly-scanner", "sipvicious", "sipcli"]
    );
    assert_eq!(c.media.port_min, 20000);
    assert_eq!(
        (
            c.security.tcp_max_connections,
            c.security.tcp_max_per_source,
            c.security.tcp_idle_timeout_s,
            c.security.tcp_message_timeout_ms
        ),
        (10_000, 64, 600, 10_000)
    );
    assert_eq!(c.routes[0].priority, 100);
    assert!(c.routes[0].number.is_none());
    assert_eq!(c.rules.len(), 0, "no rule was written, none should appear");
}

/// (edit: replace `from` with `to` in BASE, expected line, column, message fragment)
const BAD: &[(&str, &str, usize, usize, &str)] = &[
    (
        "name = \"n\"",
        "name = \"n\"\nbogus = 1",
        3,
        1,
        "unknown field `bogus`",
    ),
    (
        "address = \"127.0.0.1:5060\"",
        "address = \"127.0.0.1\"",
        6,
        11,
        "not an ip:port",
    ),
    (
        "transport = \"udp\"",
        "transport = \"sctp\"",
        5,
        13,
        "unknown transport `sctp`",
    ),
    (
        "acl = [\"10.0.0.0/8\"]",
        "acl = [\"10.0.0.0/33\"]",
        10,
        8,
        "not a CIDR",
    ),
    (
        "acl = [\"10.0.0.0/8\"]",
        "acl = [\"10.1.0.0/8\"]",
        10,
        8,
        "host bits set; did you mean 10.0.0.0/8",
    ),
    (
        "acl = [\"10.0.0.0/8\"]",
        "acl = [\"2001:db8::/129\"]",
        10,
        8,
        "not a CIDR",
    ),
    (
        "to = \"b\"",
        "to = \"c\"",
        18,
        6,
        "route `to` refers to unknown trunk `c`",
    ),
    (
        "to = \"b\"",
        "to = \"a\"",
        18,
        6,
        "trunk `a`, which has no targets",
    ),
    (
        "name = \"b\"",
        "name = \"a\"",
        13,
        8,
        "duplicate trunk name `a`",
    ),
    (
        "targets = [\"sip:127.0.0.1:5080\"]",
        "targets = [\"sip:bob@h:5080\"]",
        14,
        12,
        "not a user",
    ),
    (
        "targets = [\"sip:127.0.0.1:5080\"]",
        "targets = [\"sip:h:99999\"]",
        14,
        12,
        "bad port",
    ),
    (
        "targets = [\"sip:127.0.0.1:5080\"]",
        "targets = [\"sips:h;transport=udp\"]",
        14,
        12,
        "sips: needs TLS",
    ),
    (
        "targets = [\"sip:127.0.0.1:5080\"]",
        "targets = [\"sip:h\"]\nsrv = \"_sip._sctp.h\"",
        15,
        7,
        "srv",
    ),
    (
        "targets = [\"sip:127.0.0.1:5080\"]",
        "targets = [\"sip:h\"]\nsrtp = { policy = \"required\" }",
        14,
        12,
        "non-TLS target",
    ),
    (
        "targets = [\"sip:127.0.0.1:5080\"]",
        "targets = [\"sip:h\"]\ncodecs = [\"PCMU\", \"AMR\"]",
        15,
        19,
        "unknown codec `AMR`",
    ),
    (
        "targets = [\"sip:127.0.0.1:5080\"]",
        "targets = [\"sip:h\"]\nptime = 25",
        15,
        9,
        "multiple of 10",
    ),
    (
        "targets = [\"sip:127.0.0.1:5080\"]",
        "targets = [\"sip:h\"]\nfailover_codes = [503, 302]",
        15,
        24,
        "failover code must be between 400 and 599",
    ),
    (
        "targets = [\"sip:127.0.0.1:5080\"]",
        "targets = [\"sip:h\"]\ncaller_id_override = \"5551234\"",
        15,
        22,
        "not an E.164",
    ),
    (
        "targets = [\"sip:127.0.0.1:5080\"]",
        "targets = [\"sip:h\"]\nheaders = { rules = [{ action = \"add\", name = \"X-A\", value = \"${nope}\" }] }",
        15,
        63,
        "unknown variable `${nope}`",
    ),
    (
        "targets = [\"sip:127.0.0.1:5080\"]",
        "targets = [\"sip:h\"]\nsession_timer = { expires_s = 100, min_se_s = 120 }",
        15,
        31,
        "below min_se_s",
    ),
    (
        "targets = [\"sip:127.0.0.1:5080\"]",
        "targets = [\"sip:h\"]\nno_route_code = 500",
        15,
        17,
        "no_route_code 500",
    ),
    (
        "to = \"b\"",
        "to = \"b\"\n[[rule]]\ntrunk = \"zz\"\nmatch = \"x\"\nreplace = \"y\"",
        20,
        9,
        "rule refers to unknown trunk `zz`",
    ),
    (
        "to = \"b\"",
        "to = \"b\"\n[[rule]]\ntrunk = \"a\"\nmatch = '^(\\d+'\nreplace = \"y\"",
        21,
        11,
        "invalid match regex: unclosed group",
    ),
    (
        "to = \"b\"",
        "to = \"b\"\n[[rule]]\ntrunk = \"a\"\nmatch = \"^\\\\d+[\"\nreplace = \"y\"",
        21,
        15,
        "invalid match regex: unclosed character class",
    ),
    (
        "to = \"b\"",
        "to = \"b\"\n[[rule]]\ntrunk = \"a\"\nmatch = '^(\\d+)$'\nreplace = \"+$2\"",
        22,
        13,
        "group `2`",
    ),
    (
        "to = \"b\"",
        "to = \"b\"\n[[rule]]\ntrunk = \"a\"\nmatch = 'x'\nreplace = \"y\"\napply_to = [\"ruri\", \"cc\"]",
        23,
        21,
        "unknown apply_to field `cc`",
    ),
    (
        "to = \"b\"",
        "to = \"b\"\nnumber = '+1'",
        19,
        11,
        "invalid number regex",
    ),
    (
        "name = \"n\"",
        "name = \"n\"\n[media]\nport_min = 20001",
        4,
        12,
        "port_min must be even",
    ),
    (
        "name = \"n\"",
        "name = \"n\"\n[media]\nport_min = 20000\nport_max = 20099\nworker_cores = [1, 2]",
        5,
        12,
        "holds 50 RTP/RTCP pairs; 2 worker(s) need at least 128",
    ),
    (
        "name = \"n\"",
        "name = \"n\"\n[media]\nworker_cores = [1, 1]",
        4,
        20,
        "core 1 listed twice",
    ),
    (
        "name = \"n\"",
        "name = \"n\"\n[media]\nmode = \"xdp\"",
        4,
        8,
        "needs at least one [[media.interface]]",
    ),
    (
        "name = \"n\"",
        "name = \"n\"\n[media]\nxdp_required = true",
        4,
        16,
        "needs media mode \"xdp\"",
    ),
    (
        "name = \"n\"",
        "name = \"n\"\n[security]\ntcp_message_timeout_ms = 5",
        4,
        26,
        "tcp_message_timeout_ms",
    ),
    (
        "name = \"n\"",
        "name = \"n\"\n[security]\nunauthorized = \"ignore\"",
        4,
        16,
        "unknown unauthorized action",
    ),
    (
        "name = \"n\"",
        "name = \"n\"\n[mgmt]\ncontrol_socket = \"rel.sock\"",
        4,
        18,
        "absolute path",
    ),
    (
        "transport = \"udp\"",
        "transport = \"tls\"",
        5,
        13,
        "needs tls_cert and tls_key",
    ),
    (
        "address = \"127.0.0.1:5060\"",
        "address = \"127.0.0.1:5060\"\ntrunk = \"nope\"",
        7,
        9,
        "listener refers to unknown trunk `nope`",
    ),
    (
        "name = \"n\"",
        "name = \"n\"\n[media]\nport_min = \"x\"",
        4,
        12,
        "invalid type",
    ),
];

#[test]
fn bad_configs_point_at_the_problem() {
    for (from, to, line, col, msg) in BAD {
        assert!(BASE.contains(from), "{from}");
        let text = BASE.replacen(from, to, 1);
        let errs = errors(&text);
        let want = format!("t.toml:{line}:{col}: ");
        assert!(
            errs.iter().any(|e| e.starts_with(&want) && e.contains(msg)),
            "edit {to:?}: wanted {want}..{msg}, got {errs:#?}"
        );
    }
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = BASE
        .replace("name = \"n\"", "name = \"n\"\nfoo = 1\nbar = 2")
        .replace("to = \"b\"", "to = \"c\"")
        .replace(
            "acl = [\"10.0.0.0/8\"]",
            "acl = [\"10.0.0.0/8\", \"nonsense\"]",
        );
    let errs = errors(&text);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(errs[0].starts_with("t.toml:3:1: unknown field `foo`"));
    assert!(errs[1].starts_with("t.toml:4:1: unknown field `bar`"));
    assert!(errs[2].contains("`nonsense`"));
    assert!(errs[3].contains("unknown trunk `c`"));
}

#[test]
fn syntax_errors_have_positions() {
    let errs = errors("[node]\nname = \"x\nfoo");
    assert!(errs[0].starts_with("t.toml:2:"), "{errs:?}");
}

#[test]
fn missing_node_is_an_error() {
    let errs = errors("[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n");
    assert!(errs[0].contains("missing field `node`"), "{errs:?}");
}

#[test]
fn profile_defaults_apply_and_explicit_values_win() {
    let text = BASE.replace(
        "targets = [\"sip:127.0.0.1:5080\"]",
        "targets = [\"sips:vc.example.com\"]\nprofile = \"acs\"",
    );
    let c = load(&text).unwrap();
    assert_eq!(c.trunks[1].srtp.policy, SrtpPolicy::Required);
    assert_eq!(c.trunks[1].health.ping_interval_s, 60);
    assert_eq!(c.trunks[1].codecs[0], Codec::Opus);
    let text = text.replace(
        "profile = \"acs\"",
        "profile = \"acs\"\nsrtp = { policy = \"off\" }",
    );
    assert_eq!(load(&text).unwrap().trunks[1].srtp.policy, SrtpPolicy::Off);
}

#[test]
fn targets_parse() {
    use validate::parse_target_str as p;
    assert_eq!(
        p("sip:[2001:db8::1]:5070;transport=tcp").unwrap(),
        TargetSpec::Uri {
            scheme: UriScheme::Sip,
            host: Host::Ip("2001:db8::1".parse().unwrap()),
            port: Some(5070),
            transport: Transport::Tcp
        }
    );
    assert_eq!(
        p("Carrier.Example.COM").unwrap(),
        TargetSpec::Uri {
            scheme: UriScheme::Sip,
            host: Host::Name("carrier.example.com".into()),
            port: None,
            transport: Transport::Udp
        }
    );
    assert!(p("sips:h.example.com").unwrap().transport() == Transport::Tls);
    assert!(p("2001:db8::1").is_err());
    assert!(p("sip:h;maddr=x").is_err());
    assert!(p("999.1.1.1").is_err());
}

#[test]
fn globs() {
    assert!(glob_match_ci("X-*", "x-foo"));
    assert!(glob_match_ci("*", "Anything"));
    assert!(glob_match_ci("X-*-Id", "X-Call-Id"));
    assert!(!glob_match_ci("X-*-Id", "X-Call-Ix"));
    assert!(!glob_match_ci("X-*", "Y-foo"));
    assert!(glob_match_ci("User-to-User", "user-to-user"));
}

#[test]
fn templates_render() {
    let c = load(EXAMPLE).unwrap();
    let connect = &c.trunks[1];
    let HeaderAction::Replace(t) = &connect.headers.rules[0].action else {
        panic!("expected replace")
    };
    let mut out = String::new();
    t.render(
        |v| match v {
            TemplateVar::Trunk => "carrier",
            _ => "?",
        },
        &mut out,
    );
    assert_eq!(out, "carrier");
}

#[test]
fn diff_classifies_changes() {
    let old = load(EXAMPLE).unwrap();
    assert!(diff(&old, &old).is_empty());
    let new_text = EXAMPLE
        .replace("max_calls = 200", "max_calls = 300")
        .replace("name = \"out\"", "name = \"outbound\"")
        .replace("replace = \"1$1\"", "replace = \"$1\"");
    let new = load(&new_text).unwrap();
    let d = diff(&old, &new);
    assert_eq!(d.trunks.changed, vec!["carrier"]);
    assert_eq!(d.routes.removed, vec!["out"]);
    assert_eq!(d.routes.added, vec!["outbound"]);
    assert_eq!(d.rules.changed, vec!["cloud-to-national"]);
    assert!(!d.needs_restart(), "{:?}", d.restart_reasons);

    let restart = load(
        &EXAMPLE
            .replace("worker_cores = [1]", "worker_cores = [1, 2]")
            .replacen("192.0.2.10:5060", "192.0.2.11:5060", 1),
    )
    .unwrap();
    let d = diff(&old, &restart);
    assert!(d.needs_restart());
    assert_eq!(d.listeners.added, vec!["udp:192.0.2.11:5060"]);
    assert_eq!(d.listeners.removed, vec!["udp:192.0.2.10:5060"]);
    assert!(d.restart_reasons.iter().any(|r| r.contains("cores")));
}

#[test]
fn line_col_counts_characters() {
    assert_eq!(line_col("ab\ncé d", 7), (2, 4));
    assert_eq!(line_col("", 10), (1, 1));
}

#[test]
fn forwarding_console_keys() {
    let base = format!(
        "{BASE}\n[forwarding]\ndb = \"/var/lib/t/f.db\"\napi = \"10.0.0.1:8443\"\nnumbers = [\"+18005551234\"]\n"
    );
    let c = load(&base).unwrap();
    assert_eq!(
        (c.forwarding.lockout_after, c.forwarding.lockout.as_secs()),
        (5, 900)
    );
    assert!(c.forwarding.tls.is_none());
    let c = load(&format!(
        "{base}tls_cert = \"/etc/t/c.pem\"\ntls_key = \"/etc/t/k.pem\"\nlockout_after = 3\nlockout_s = 60\n"
    ))
    .unwrap();
    let tls = c.forwarding.tls.unwrap();
    assert_eq!(tls.key, Path::new("/etc/t/k.pem"));
    assert_eq!(c.forwarding.lockout_after, 3);
    let e = errors(&format!("{base}tls_cert = \"/etc/t/c.pem\"\n"));
    assert!(
        e.iter()
            .any(|e| e.contains("tls_cert and forwarding.tls_key go together")),
        "{e:?}"
    );
    let e = errors(&format!("{base}lockout_after = 0\nlockout_s = 100000\n"));
    assert!(
        e.iter()
            .any(|e| e.contains("forwarding.lockout_after must be between 1 and 1000"))
    );
    assert!(
        e.iter()
            .any(|e| e.contains("forwarding.lockout_s must be between 1 and 86400"))
    );
    assert!(e.iter().all(|e| e.starts_with("t.toml:")), "{e:?}");
}

#[test]
fn sip_trace_keys() {
    let c = load(&format!(
        "{BASE}\n[mgmt]\nsip_trace_pcap = \"/var/log/t/sip.pcap\"\nsip_trace_hep = \"10.0.0.9:9060\"\nhep_capture_id = 7\n"
    ))
    .unwrap();
    let t = &c.mgmt.sip_trace;
    assert!(t.enabled());
    assert_eq!((t.max_bytes, t.hep_capture_id), (100 << 20, 7));
    assert!(!load(BASE).unwrap().mgmt.sip_trace.enabled());
    let e = errors(&format!(
        "{BASE}\n[mgmt]\nsip_trace_pcap = \"sip.pcap\"\nsip_trace_max_mb = 0\n"
    ));
    assert!(
        e.iter()
            .any(|e| e.contains("sip_trace_pcap must be an absolute path")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("sip_trace_max_mb must be between")),
        "{e:?}"
    );
}
