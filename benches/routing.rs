//! Per-request routing costs, each beside a naive baseline in the same run:
//! ACL classification (prefix table vs linear scan over every CIDR), and the full
//! classify + translate + route path for one INVITE.
//!
//! `cargo bench --bench routing -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use tollgate::config::load_str;
use tollgate::routing::acl::AclTable;
use tollgate::routing::numbers::NumberFields;
use tollgate::routing::{Routing, Source, TrunkId};

/// 40 trunks x 25 prefixes of mixed lengths, like a carrier-heavy deployment.
fn acls() -> Vec<Vec<IpNet>> {
    let mut x: u32 = 0x1234_5678;
    (0..40)
        .map(|_| {
            (0..25)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let len = [16u8, 20, 24, 28, 32][i % 5];
                    IpNet::new(IpAddr::V4(Ipv4Addr::from(x)), len)
                        .unwrap()
                        .trunc()
                })
                .collect()
        })
        .collect()
}

fn linear(acls: &[Vec<IpNet>], ip: IpAddr) -> Option<TrunkId> {
    acls.iter()
        .enumerate()
        .flat_map(|(i, v)| v.iter().map(move |n| (i, n)))
        .filter(|(_, n)| n.contains(&ip))
        .max_by_key(|(_, n)| n.prefix_len())
        .map(|(i, _)| TrunkId(i as u16))
}

fn bench_acl(c: &mut Criterion) {
    let acls = acls();
    let table = AclTable::new(
        acls.iter()
            .enumerate()
            .map(|(i, v)| (TrunkId(i as u16), v.as_slice())),
    );
    // Half the probes hit a configured prefix, half miss.
    let probes: Vec<IpAddr> = acls
        .iter()
        .flatten()
        .take(64)
        .map(|n| n.network())
        .chain((0..64u32).map(|i| IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)))))
        .collect();
    for p in &probes {
        assert_eq!(table.classify(*p), linear(&acls, *p));
    }
    let mut g = c.benchmark_group("acl_classify_1000_prefixes");
    g.bench_function("prefix_table", |b| {
        b.iter(|| {
            for p in &probes {
                black_box(table.classify(black_box(*p)));
            }
        })
    });
    g.bench_function("linear_scan_baseline", |b| {
        b.iter(|| {
            for p in &probes {
                black_box(linear(&acls, black_box(*p)));
            }
        })
    });
    g.finish();
}

fn bench_invite_path(c: &mut Criterion) {
    let text = include_str!("../systemd/tollgate.toml");
    let cfg = load_str(text, Path::new("tollgate.toml")).unwrap();
    let routing = Routing::new(&cfg);
    let src: IpAddr = "203.0.113.7".parse().unwrap();
    let fields = NumberFields {
        ruri: "15551234567",
        to: Some("15551234567"),
        from: Some("2125550100"),
        pai: None,
    };
    let mut g = c.benchmark_group("invite_classify_translate_route");
    g.bench_function("routing", |b| {
        b.iter(|| {
            let Source::Trunk(t) = routing.classify(black_box(src), 0) else {
                unreachable!()
            };
            let tr = routing.translator.translate_request(t, black_box(&fields));
            black_box(routing.router.route(t, tr.called(fields.ruri)).ok())
        })
    });
    // Baseline: what a naive implementation does, compiling the rule regexes per request.
    g.bench_function("recompile_regex_baseline", |b| {
        b.iter(|| {
            let mut n = String::from(black_box(fields.ruri));
            for r in cfg.rules.iter().filter(|r| r.trunk == 0) {
                let re = regex::Regex::new(&r.pattern.source).unwrap();
                if re.is_match(&n) {
                    n = re.replace(&n, r.replace.as_str()).into_owned();
                    break;
                }
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_acl, bench_invite_path);
criterion_main!(benches);
