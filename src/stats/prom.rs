//! Prometheus text exposition format 0.0.4, written by hand: it is a few rules (HELP/TYPE lines, escaped label
//! values, `_bucket`/`_sum`/`_count` for histograms) and the mgmt thread renders it into one reused `String`.
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

/// The content type a scraper expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// Accumulates one exposition. Each metric family is announced once (`family`), then its samples follow.
#[derive(Default)]
pub struct PromWriter {
    out: String,
    last_family: String,
}

impl PromWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a metric family with its HELP and TYPE lines. Calling it again for the family just written is a
    /// no-op, so several sources (one per worker) may each announce the family they add samples to, as long as
    /// they are written consecutively.
    pub fn family(&mut self, name: &str, help: &str, ty: MetricType) {
        if self.last_family == name {
            return;
        }
        self.last_family.clear();
        self.last_family.push_str(name);
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(help, &mut self.out);
        self.out.push('\n');
        let _ = writeln!(self.out, "# TYPE {name} {}", ty.as_str());
    }

    /// One sample line: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        write_labels(labels, None, &mut self.out);
        self.out.push(' ');
        write_value(value, &mut self.out);
        self.out.push('\n');
    }

    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.family(name, help, MetricType::Counter);
        self.sample(name, labels, value as f64);
    }

    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.family(name, help, MetricType::Gauge);
        self.sample(name, labels, value);
    }

    /// A histogram from per-bucket (non-cumulative) counts: `bounds[i]` is the upper bound of `counts[i]`, and
    /// `counts` has one more element than `bounds` for the `+Inf` bucket. Cumulation happens here so that
    /// workers can keep plain per-bucket counters.
    pub fn histogram(&mut self, h: HistogramSample<'_>) {
        self.family(h.name, h.help, MetricType::Histogram);
        let bucket_name = format!("{}_bucket", h.name);
        let mut cum: u64 = 0;
        let mut le = String::new();
        for (i, &c) in h.counts.iter().enumerate() {
            cum = cum.saturating_add(c);
            le.clear();
            match h.bounds.get(i) {
                Some(b) => write_value(*b, &mut le),
                None => le.push_str("+Inf"),
            }
            self.out.push_str(&bucket_name);
            write_labels(h.labels, Some(&le), &mut self.out);
            let _ = writeln!(self.out, " {cum}");
            if h.bounds.get(i).is_none() {
                break;
            }
        }
        if h.counts.len() <= h.bounds.len() {
            // Caller gave no +Inf count: the +Inf bucket equals the total so far.
            self.out.push_str(&bucket_name);
            write_labels(h.labels, Some("+Inf"), &mut self.out);
            let _ = writeln!(self.out, " {cum}");
        }
        self.out.push_str(h.name);
        self.out.push_str("_sum");
        write_labels(h.labels, None, &mut self.out);
        self.out.push(' ');
        write_value(h.sum, &mut self.out);
        self.out.push('\n');
        self.out.push_str(h.name);
        self.out.push_str("_count");
        write_labels(h.labels, None, &mut self.out);
        let _ = writeln!(self.out, " {cum}");
    }

    pub fn as_str(&self) -> &str {
        &self.out
    }

    /// Empties the writer and keeps its capacity for the next scrape.
    pub fn clear(&mut self) {
        self.out.clear();
        self.last_family.clear();
    }

    pub fn into_string(self) -> String {
        self.out
    }
}

/// Arguments of [`PromWriter::histogram`].
pub struct HistogramSample<'a> {
    pub name: &'a str,
    pub help: &'a str,
    pub labels: &'a [(&'a str, &'a str)],
    pub bounds: &'a [f64],
    pub counts: &'a [u64],
    pub sum: f64,
}

fn write_value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

fn write_labels(labels: &[(&str, &str)], le: Option<&str>, out: &mut String) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|l| ("le", l))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_label(v, out);
        out.push('"');
    }
    out.push('}');
}

/// Label values escape backslash, double quote and line feed (text format spec).
fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes only backslash and line feed.
fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Something that contributes metrics to a scrape: the B2BUA (per trunk), each media worker, the XDP counters.
/// Called on the mgmt thread; implementations read relaxed atomics or a published snapshot, never take a lock
/// the signaling or media threads hold.
pub trait MetricSource: Send + Sync {
    fn write_metrics(&self, w: &mut PromWriter);
}

/// The set of sources a scrape renders, in registration order.
#[derive(Default, Clone)]
pub struct Registry {
    sources: Arc<RwLock<Vec<Arc<dyn MetricSource>>>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&self, source: Arc<dyn MetricSource>) {
        if let Ok(mut s) = self.sources.write() {
            s.push(source);
        }
    }

    /// Renders every source into `w` (cleared first).
    pub fn render_into(&self, w: &mut PromWriter) {
        w.clear();
        if let Ok(s) = self.sources.read() {
            for src in s.iter() {
                src.write_metrics(w);
            }
        }
    }

    pub fn render(&self) -> String {
        let mut w = PromWriter::new();
        self.render_into(&mut w);
        w.into_string()
    }
}

/// Process-level metrics from /proc/self (resident memory, open fds, threads, start time), the usual
/// `process_*` names a Prometheus user expects.
pub struct ProcessMetrics {
    started: std::time::Instant,
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        Self {
            started: std::time::Instant::now(),
        }
    }
}

impl MetricSource for ProcessMetrics {
    fn write_metrics(&self, w: &mut PromWriter) {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            for line in status.lines() {
                if let Some(rest) = line.strip_prefix("VmRSS:") {
                    let kb: f64 = rest
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse()
                        .unwrap_or(0.0);
                    w.gauge(
                        "process_resident_memory_bytes",
                        "Resident memory size in bytes.",
                        &[],
                        kb * 1024.0,
                    );
                } else if let Some(rest) = line.strip_prefix("Threads:") {
                    let n: f64 = rest.trim().parse().unwrap_or(0.0);
                    w.gauge("process_threads", "Number of OS threads.", &[], n);
                }
            }
        }
        if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
            w.gauge(
                "process_open_fds",
                "Number of open file descriptors.",
                &[],
                d.count() as f64,
            );
        }
        w.gauge(
            "tollgate_uptime_seconds",
            "Seconds since the process started.",
            &[],
            self.started.elapsed().as_secs_f64(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_parse::{Scrape, Value};

    fn parse(text: &str) -> Scrape {
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parse")
    }

    struct Trunks;
    impl MetricSource for Trunks {
        fn write_metrics(&self, w: &mut PromWriter) {
            w.counter(
                "tollgate_calls_total",
                "Calls by trunk.",
                &[("trunk", "carrier")],
                7,
            );
            w.counter(
                "tollgate_calls_total",
                "Calls by trunk.",
                &[("trunk", "we\"ird\\na\nme")],
                3,
            );
            w.gauge(
                "tollgate_target_up",
                "1 when the target answers OPTIONS.",
                &[("target", "10.0.0.1:5060")],
                1.0,
            );
        }
    }
    struct Worker(u64);
    impl MetricSource for Worker {
        fn write_metrics(&self, w: &mut PromWriter) {
            w.histogram(HistogramSample {
                name: "tollgate_media_latency_seconds",
                help: "Per-packet latency.",
                labels: &[("worker", "0")],
                bounds: &[0.00001, 0.0001, 0.001],
                counts: &[5, 3, self.0, 1],
                sum: 0.0123,
            });
        }
    }

    #[test]
    fn registry_output_parses_and_values_match() {
        let r = Registry::new();
        r.register(Arc::new(Trunks));
        r.register(Arc::new(Worker(2)));
        let text = r.render();
        let s = parse(&text);
        let mut seen = 0;
        for smp in &s.samples {
            match (smp.metric.as_str(), &smp.value) {
                ("tollgate_calls_total", Value::Counter(v)) => {
                    let t = smp.labels.get("trunk").expect("trunk label");
                    if t == "carrier" {
                        assert_eq!(*v, 7.0);
                    } else {
                        // the parser returns the raw escaped text; check the escapes are the spec's
                        assert_eq!(t, "we\\\"ird\\\\na\\nme");
                        assert_eq!(*v, 3.0);
                    }
                    seen += 1;
                }
                ("tollgate_target_up", Value::Gauge(v)) => {
                    assert_eq!(*v, 1.0);
                    seen += 1;
                }
                ("tollgate_media_latency_seconds", Value::Histogram(h)) => {
                    let cum: Vec<(f64, f64)> = h.iter().map(|b| (b.less_than, b.count)).collect();
                    assert_eq!(cum[0], (0.00001, 5.0));
                    assert_eq!(cum[1], (0.0001, 8.0));
                    assert_eq!(cum[2], (0.001, 10.0));
                    assert!(cum[3].0.is_infinite() && cum[3].1 == 11.0);
                    seen += 1;
                }
                _ => {}
            }
        }
        assert_eq!(seen, 4, "{text}");
        assert_eq!(
            text.matches("# TYPE tollgate_calls_total counter").count(),
            1
        );
        assert!(text.contains("tollgate_media_latency_seconds_count{worker=\"0\"} 11"));
        assert!(text.contains("tollgate_media_latency_seconds_sum{worker=\"0\"} 0.0123"));
    }

    #[test]
    fn label_escaping_round_trips_through_python_parser_when_available() {
        let mut w = PromWriter::new();
        w.counter(
            "x_total",
            "help with \\ and\nnewline",
            &[("v", "a\"b\\c\nd")],
            1,
        );
        let py = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        print(repr((s.name, s.labels, s.value)))
    print(repr(f.documentation))
"#;
        let child = std::process::Command::new("python3")
            .args(["-c", py])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("skip: python3 not available");
            return;
        };
        use std::io::Write;
        child
            .stdin
            .take()
            .map(|mut s| s.write_all(w.as_str().as_bytes()));
        let out = child.wait_with_output().expect("python");
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("No module named") {
                eprintln!("skip: prometheus_client not installed");
                return;
            }
            panic!("python parser rejected output: {err}\n{}", w.as_str());
        }
        let so = String::from_utf8_lossy(&out.stdout);
        assert!(so.contains(r#"{'v': 'a"b\\c\nd'}"#), "{so}");
        assert!(so.contains(r#"'help with \\ and\nnewline'"#), "{so}");
    }

    #[test]
    fn histogram_without_inf_count_adds_inf_bucket() {
        let mut w = PromWriter::new();
        w.histogram(HistogramSample {
            name: "rtt_seconds",
            help: "h",
            labels: &[],
            bounds: &[1.0, 2.0],
            counts: &[1, 2],
            sum: 4.0,
        });
        let s = parse(w.as_str());
        let smp = s
            .samples
            .iter()
            .find(|x| x.metric == "rtt_seconds")
            .expect("sample");
        let Value::Histogram(h) = &smp.value else {
            panic!("not a histogram: {:?}", smp.value)
        };
        assert_eq!(h.len(), 3);
        assert_eq!(h[2].count, 3.0);
    }

    #[test]
    fn process_metrics_report_open_fds() {
        let mut w = PromWriter::new();
        ProcessMetrics::default().write_metrics(&mut w);
        let s = parse(w.as_str());
        let fds = s
            .samples
            .iter()
            .find(|x| x.metric == "process_open_fds")
            .expect("fds");
        let Value::Gauge(v) = fds.value else { panic!() };
        assert!(v >= 3.0);
    }
}
