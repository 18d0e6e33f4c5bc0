//! PNG plots of the bench report (`plotters`, bitmap backend, fonts from the system's DejaVu Sans via
//! ab_glyph, so no fontconfig): media packets/s against offered load with loss, latency percentiles, and
//! calls/s against failed calls. Inputs are the harness's own JSON (`media.json`, `cps.jsonl`).
#![allow(dead_code)]

use plotters::prelude::*;
use std::path::Path;

/// One media point as `media_compare` writes it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct MediaPoint {
    pub relay: String,
    pub srtp: bool,
    pub calls: usize,
    pub offered_pps: f64,
    pub received: u64,
    pub sent: u64,
    pub loss_pct: f64,
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    pub latency_p999_us: f64,
}

/// One cps run as `scripts/bench_cps.sh` appends it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CpsPoint {
    pub proxy: String,
    pub offered_cps: f64,
    pub successful: u64,
    pub failed: u64,
    pub cpu_us_per_call: Option<f64>,
}

const FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a sans-serif font once; without one (no fonts-dejavu-core) plots cannot carry text.
pub fn fonts() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = FONTS
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or_else(|| {
                format!(
                    "no font found ({}): apt-get install fonts-dejavu-core",
                    FONTS.join(", ")
                )
            })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "font not usable".to_owned())
    })
    .clone()
}

fn series_name(p: &MediaPoint) -> String {
    format!(
        "{} {}",
        p.relay,
        if p.srtp { "RTP->SRTP" } else { "RTP->RTP" }
    )
}

fn groups(points: &[MediaPoint]) -> Vec<(String, Vec<&MediaPoint>)> {
    let mut out: Vec<(String, Vec<&MediaPoint>)> = Vec::new();
    for p in points {
        let n = series_name(p);
        match out.iter_mut().find(|(k, _)| *k == n) {
            Some((_, v)) => v.push(p),
            None => out.push((n, vec![p])),
        }
    }
    for (_, v) in &mut out {
        v.sort_by(|a, b| a.offered_pps.total_cmp(&b.offered_pps));
    }
    out
}

type Err = Box<dyn std::error::Error>;

/// A line with a dot on each point in series colour `i`; with a `label` it also goes into the legend.
fn line<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    i: usize,
    pts: Vec<(f64, f64)>,
    label: Option<String>,
) -> Result<(), Err>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let color = Palette99::pick(i).to_rgba();
    let s = chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
    if let Some(l) = label {
        s.label(l).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
        });
    }
    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    Ok(())
}

/// Relayed packets/s against offered packets/s (top) and loss against offered load (bottom).
pub fn media_throughput(points: &[MediaPoint], out: &Path) -> Result<(), Err> {
    fonts()?;
    let root = BitMapBackend::new(out, (1000, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(480);
    let max_x = points.iter().map(|p| p.offered_pps).fold(1.0, f64::max) * 1.05;
    let mut c = ChartBuilder::on(&top)
        .caption(
            "Media relayed vs offered (same run, same generator)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x, 0.0..max_x)?;
    c.configure_mesh()
        .x_desc("offered packets/s (both directions)")
        .y_desc("received packets/s")
        .draw()?;
    let gs = groups(points);
    for (i, (name, ps)) in gs.iter().enumerate() {
        let pts: Vec<(f64, f64)> = ps
            .iter()
            .map(|p| (p.offered_pps, p.offered_pps * (1.0 - p.loss_pct / 100.0)))
            .collect();
        line(&mut c, i, pts, Some(name.clone()))?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    let max_loss = points.iter().map(|p| p.loss_pct).fold(0.1, f64::max) * 1.2;
    let mut l = ChartBuilder::on(&bottom)
        .caption("Loss", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x, 0.0..max_loss)?;
    l.configure_mesh()
        .x_desc("offered packets/s")
        .y_desc("loss %")
        .draw()?;
    for (i, (_, ps)) in gs.iter().enumerate() {
        let pts: Vec<(f64, f64)> = ps.iter().map(|p| (p.offered_pps, p.loss_pct)).collect();
        line(&mut l, i, pts, None)?;
    }
    root.present()?;
    Ok(())
}

/// One-way latency at p50, p99 and p99.9 per relay at the highest load it ran (the points of its CDF the
/// histogram summary keeps), log-scaled latency.
pub fn media_latency(points: &[MediaPoint], out: &Path) -> Result<(), Err> {
    fonts()?;
    let root = BitMapBackend::new(out, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let gs = groups(points);
    let max_us = points
        .iter()
        .map(|p| p.latency_p999_us)
        .fold(10.0, f64::max)
        * 1.5;
    let mut c = ChartBuilder::on(&root)
        .caption(
            "One-way latency through the relay (highest load of each)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        // "Nines" scale: -log10(1 - q), so p50, p99 and p99.9 are spread out instead of crowding at the top.
        .build_cartesian_2d((1.0..max_us).log_scale(), 0.0..3.3)?;
    c.configure_mesh()
        .x_desc("latency µs (log)")
        .y_desc("share of packets at or below")
        .y_label_formatter(&|y: &f64| {
            let q = 1.0 - 10f64.powf(-*y);
            format!("{:.2} %", q * 100.0)
        })
        .draw()?;
    for (i, (name, ps)) in gs.iter().enumerate() {
        let Some(p) = ps.last() else { continue };
        let nines = |q: f64| -(1.0f64 - q).log10();
        let pts = vec![
            (p.latency_p50_us.max(1.0), nines(0.5)),
            (p.latency_p99_us.max(1.0), nines(0.99)),
            (p.latency_p999_us.max(1.0), nines(0.999)),
        ];
        line(&mut c, i, pts, Some(format!("{name} ({} calls)", p.calls)))?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Failed calls (top) and CPU per call (bottom) against offered calls/s, one series per proxy.
pub fn cps(points: &[CpsPoint], out: &Path) -> Result<(), Err> {
    fonts()?;
    let root = BitMapBackend::new(out, (1000, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(400);
    let mut proxies: Vec<&str> = points.iter().map(|p| p.proxy.as_str()).collect();
    proxies.sort();
    proxies.dedup();
    let max_x = points.iter().map(|p| p.offered_cps).fold(1.0, f64::max) * 1.1;
    let max_fail = points.iter().map(|p| p.failed as f64).fold(1.0, f64::max) * 1.2;
    let max_cpu = points
        .iter()
        .filter_map(|p| p.cpu_us_per_call)
        .fold(1.0, f64::max)
        * 1.2;
    let mut f = ChartBuilder::on(&top)
        .caption(
            "Calls/s: failed calls (SIPp, same scenarios, one run per rate)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x, 0.0..max_fail)?;
    f.configure_mesh()
        .x_desc("offered calls/s")
        .y_desc("failed calls")
        .draw()?;
    let mut u = ChartBuilder::on(&bottom)
        .caption("CPU per completed call", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x, 0.0..max_cpu)?;
    u.configure_mesh()
        .x_desc("offered calls/s")
        .y_desc("CPU µs per call")
        .draw()?;
    for (i, name) in proxies.iter().enumerate() {
        let mut ps: Vec<&CpsPoint> = points.iter().filter(|p| p.proxy == *name).collect();
        ps.sort_by(|a, b| a.offered_cps.total_cmp(&b.offered_cps));
        let fails: Vec<(f64, f64)> = ps
            .iter()
            .map(|p| (p.offered_cps, p.failed as f64))
            .collect();
        line(&mut f, i, fails, Some(name.to_string()))?;
        let cpu: Vec<(f64, f64)> = ps
            .iter()
            .filter_map(|p| p.cpu_us_per_call.map(|c| (p.offered_cps, c)))
            .collect();
        line(&mut u, i, cpu, None)?;
    }
    f.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Every plot whose input exists in `dir` (the bench report directory); returns the files written.
pub fn all(dir: &Path) -> Result<Vec<std::path::PathBuf>, Err> {
    let mut written = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("media.json")) {
        let points: Vec<MediaPoint> = serde_json::from_str(&text)?;
        if !points.is_empty() {
            for (name, f) in [
                (
                    "media_throughput.png",
                    media_throughput as fn(&[MediaPoint], &Path) -> Result<(), Err>,
                ),
                ("media_latency.png", media_latency),
            ] {
                let p = dir.join(name);
                f(&points, &p)?;
                written.push(p);
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("cps.jsonl")) {
        let points: Vec<CpsPoint> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        if !points.is_empty() {
            let p = dir.join("cps.png");
            cps(&points, &p)?;
            written.push(p);
        }
    }
    Ok(written)
}
