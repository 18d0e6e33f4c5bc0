//! A bounded search for the highest rate with loss under a threshold: step the rate up geometrically until a
//! point fails (or the ceiling is reached), then bisect between the last pass and the first fail. The trial
//! is a closure, so the same search drives loopback runs, rtpengine and tollgate (each trial should use
//! fresh calls where the target degrades permanently under overload, as rtpengine does).

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct SearchConfig {
    /// First rate tried (packets/s).
    pub start: u64,
    /// Never try above this.
    pub max: u64,
    /// Step-up factor (> 1).
    pub factor: f64,
    /// Bisection steps after the first failure.
    pub bisect_steps: u32,
    /// A point passes when its loss is below this fraction (0.001 = 0.1 %).
    pub max_loss: f64,
    /// Hard caps on the whole search.
    pub max_points: u32,
    pub max_total: Duration,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            start: 10_000,
            max: 2_000_000,
            factor: 1.5,
            bisect_steps: 4,
            max_loss: 0.001,
            max_points: 16,
            max_total: Duration::from_secs(120),
        }
    }
}

/// One trial's outcome.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Point {
    /// Rate asked for.
    pub offered_pps: u64,
    /// Rate the generator achieved.
    pub sent_pps: f64,
    /// Rate received.
    pub received_pps: f64,
    pub loss: f64,
    pub pass: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchResult {
    /// Highest passing point.
    pub best: Option<Point>,
    pub points: Vec<Point>,
    /// Why the search stopped.
    pub stop: &'static str,
}

/// Runs the search. `trial(rate)` returns (sent_pps, received_pps, loss) or an error that ends the search.
pub fn search<E>(
    cfg: &SearchConfig,
    mut trial: impl FnMut(u64) -> Result<(f64, f64, f64), E>,
) -> Result<SearchResult, E> {
    let t0 = Instant::now();
    let mut points = Vec::new();
    let mut best: Option<Point> = None;
    let mut fail: Option<u64> = None;
    let mut rate = cfg.start.max(1);
    let factor = if cfg.factor > 1.0 { cfg.factor } else { 1.5 };
    let mut bisects = 0;
    let mut run = |rate: u64, points: &mut Vec<Point>| -> Result<Point, E> {
        let (sent, recv, loss) = trial(rate)?;
        // A generator that cannot reach the offered rate (within 5 %) has found its own limit, not the target's.
        let pass = loss < cfg.max_loss && sent >= rate as f64 * 0.95;
        let p = Point {
            offered_pps: rate,
            sent_pps: sent,
            received_pps: recv,
            loss,
            pass,
        };
        points.push(p);
        Ok(p)
    };
    let stop = loop {
        if points.len() as u32 >= cfg.max_points {
            break "max points";
        }
        if t0.elapsed() >= cfg.max_total {
            break "max time";
        }
        let p = run(rate, &mut points)?;
        if p.pass {
            best = Some(p);
        } else {
            fail = Some(rate);
        }
        match (best.map(|b| b.offered_pps), fail) {
            (lo, None) => {
                if lo == Some(cfg.max) {
                    break "reached max";
                }
                rate = ((rate as f64 * factor) as u64).clamp(rate + 1, cfg.max);
            }
            (lo, Some(hi)) => {
                let lo = lo.unwrap_or(0);
                if bisects >= cfg.bisect_steps || hi <= lo + 1 || (hi - lo) * 100 < hi {
                    break "bisected";
                }
                bisects += 1;
                rate = lo + (hi - lo) / 2;
                if rate == 0 {
                    break "nothing passes";
                }
            }
        }
    };
    Ok(SearchResult { best, points, stop })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_knee_in_bounded_points() {
        let cfg = SearchConfig {
            start: 1000,
            max: 10_000_000,
            factor: 2.0,
            bisect_steps: 6,
            ..SearchConfig::default()
        };
        let knee = 123_456u64;
        let r = search::<()>(&cfg, |rate| {
            let loss = if rate <= knee { 0.0 } else { 0.05 };
            Ok((rate as f64, rate as f64 * (1.0 - loss), loss))
        })
        .unwrap();
        let best = r.best.unwrap().offered_pps;
        assert!(best <= knee && best > knee * 9 / 10, "best {best}");
        assert!(r.points.len() <= 16);
    }

    #[test]
    fn generator_limit_is_a_fail() {
        let cfg = SearchConfig {
            start: 1000,
            max: 100_000,
            ..SearchConfig::default()
        };
        let r = search::<()>(&cfg, |rate| {
            let sent = (rate as f64).min(20_000.0);
            Ok((sent, sent, 0.0))
        })
        .unwrap();
        // Within the 5 % tolerance of the generator's 20 k ceiling.
        assert!(r.best.unwrap().offered_pps <= 21_053);
    }

    #[test]
    fn reaches_max() {
        let cfg = SearchConfig {
            start: 1000,
            max: 5000,
            ..SearchConfig::default()
        };
        let r = search::<()>(&cfg, |rate| Ok((rate as f64, rate as f64, 0.0))).unwrap();
        assert_eq!(r.best.unwrap().offered_pps, 5000);
        assert_eq!(r.stop, "reached max");
    }
}
