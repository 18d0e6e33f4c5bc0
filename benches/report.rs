//! Draws the bench report's PNG plots from what the harness wrote in target/bench-report (media.json from
//! `cargo bench --bench media_compare`, cps.jsonl from `scripts/bench_cps.sh`): `cargo bench --bench report`.
//! Under `cargo test` it draws sample data into a temporary directory and checks the PNGs.
#[path = "support/plot.rs"]
mod plot;

fn sample(dir: &std::path::Path) {
    let media = r#"[
 {"relay":"tollgate-xdp","srtp":false,"calls":50,"offered_pps":5000,"sent":25000,"received":25000,"loss_pct":0.0,"latency_p50_us":52,"latency_p99_us":180,"latency_p999_us":400},
 {"relay":"tollgate-xdp","srtp":false,"calls":500,"offered_pps":50000,"sent":250000,"received":249900,"loss_pct":0.04,"latency_p50_us":60,"latency_p99_us":250,"latency_p999_us":900},
 {"relay":"rtpengine","srtp":false,"calls":50,"offered_pps":5000,"sent":25000,"received":25000,"loss_pct":0.0,"latency_p50_us":88,"latency_p99_us":300,"latency_p999_us":700},
 {"relay":"rtpengine","srtp":false,"calls":500,"offered_pps":50000,"sent":250000,"received":249000,"loss_pct":0.4,"latency_p50_us":125,"latency_p99_us":600,"latency_p999_us":2000}
]"#;
    std::fs::write(dir.join("media.json"), media).unwrap();
    let cps = "{\"proxy\":\"tollgate\",\"offered_cps\":1000,\"successful\":10000,\"failed\":0,\"cpu_us_per_call\":167.0}\n\
               {\"proxy\":\"kamailio\",\"offered_cps\":1000,\"successful\":9971,\"failed\":29,\"cpu_us_per_call\":649.9}\n";
    std::fs::write(dir.join("cps.jsonl"), cps).unwrap();
}

fn main() {
    let testing = std::env::args().all(|a| a != "--bench");
    let dir = if testing {
        let d = std::env::temp_dir().join(format!("tg-report-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        sample(&d);
        d
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-report")
    };
    if let Err(e) = plot::fonts() {
        eprintln!("no plots: {e}");
        if testing {
            return;
        }
        std::process::exit(1);
    }
    let written = plot::all(&dir).unwrap_or_else(|e| panic!("plots in {}: {e}", dir.display()));
    for p in &written {
        let bytes = std::fs::read(p).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 5000,
            "{}",
            p.display()
        );
        println!("wrote {}", p.display());
    }
    if testing {
        assert_eq!(written.len(), 3, "{written:?}");
        let _ = std::fs::remove_dir_all(&dir);
    } else if written.is_empty() {
        eprintln!(
            "nothing to draw in {}: run the benches first",
            dir.display()
        );
    }
}
