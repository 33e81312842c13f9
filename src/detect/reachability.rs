//! Block detection: the platform's success ratio drops while the control sites' ratio holds.
//!
//! 1. Windows where the platform saw fewer than `min_attempts` attempts are treated as missing
//!    (a ratio of 0/1 says nothing).
//! 2. [`detect`] runs on the platform success ratio; every `LevelShiftDown` and `Dip` is a
//!    candidate over `[start, end)` (open candidates run to the end of the series).
//! 3. The relative drop of each side is `1 - mean(during) / before`, where `before` is, for the
//!    platform, the detector's baseline at the onset and, for the controls, the median of the
//!    control ratio over the `trailing_points` windows before the onset. With control attempt
//!    counts, both control figures are pooled instead (successes / attempts over the windows),
//!    so a window with one control attempt weighs one attempt, not a whole window; fewer than
//!    `min_control_attempts` during the interval is too little to judge (`control = too few
//!    attempts`, stays `BlockSuspected`).
//! 4. If the controls dropped by at least `max(control_min_drop, outage_fraction x platform
//!    drop)`, both sides fell together: `Outage` (a network outage, not a block). Otherwise
//!    `BlockSuspected`. Without control data in the interval it stays `BlockSuspected` and the
//!    evidence says `control = no data`.
//! 5. Failure kinds (DNS failure, reset after SYN / ClientHello, no reply, throttled...) are
//!    summed over the interval and given as evidence, the largest named `dominant_failure`.
//! 6. A dip and a level shift that overlap describe one event: only the longer is kept.
//!
//! Per platform ([`detect_platform_blocks`]): a block of one platform is diluted in the success
//! ratio pooled over all of them (X failing while YouTube, with four times the attempts, works
//! moves the pooled ratio by a fifth of X's drop), so each platform with enough attempts (at
//! least `min_platform_windows` windows of `min_attempts`) is judged on its own ratio against
//! the same controls, and its alerts name it (`metric` = its ratio's name, evidence
//! `platform`). The pooled ratio is judged only when no platform qualifies (older series
//! without per-platform columns, or traffic spread thin over many platforms). With a platform
//! qualifying, the pooled judgement adds nothing worth an alert: a drop of a qualifying
//! platform is found on that platform undiluted, and a drop confined to non-qualifying
//! platforms (each under `min_attempts` a window) moves a pooled ratio that includes the
//! qualifying ones by less than the detector's 10-point floor unless it is a large share of
//! the attempts; what remains is a shift of the mix between platforms, which is no block.
//!
//! The success ratio of a handful of attempts moves in big steps (one failure in eleven is nine
//! points), while its baseline sits at or near 1 with no spread; so the detector on the ratio
//! gets a scale floor of 3 points and ignores moves under 10 points, and windows need
//! `min_attempts` (10) attempts. Blocks move it by tens of points (a throttled platform, whose
//! DNS lookups still succeed, by about 20).

use super::baseline::median;
use super::spike::{detect, DetectConfig};
use super::{Alert, AlertKind, Series};

/// Tuning of block detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockConfig {
    /// Detector run on the platform success ratio.
    pub detect: DetectConfig,
    /// Platform windows with fewer attempts than this are treated as missing.
    pub min_attempts: f64,
    /// Controls count as dropping when their relative drop is at least this fraction of the
    /// platform's relative drop...
    pub outage_fraction: f64,
    /// ...and at least this absolute relative drop.
    pub control_min_drop: f64,
    /// Control attempts needed in an interval to call it an outage (with attempt counts).
    pub min_control_attempts: f64,
    /// Windows with at least `min_attempts` a platform needs to be judged on its own
    /// ([`detect_platform_blocks`]); the default is the baseline's `min_residuals`, below
    /// which the detector cannot give a z-score at all.
    pub min_platform_windows: usize,
    /// Failed platform attempts (attempts that did not succeed) an interval needs before it is
    /// called a block or an outage, when attempt counts are known: two failures in a window of
    /// ten at night move the ratio by twenty points, yet say nothing.
    pub min_failures: f64,
}

impl Default for BlockConfig {
    fn default() -> Self {
        let mut detect = DetectConfig::default();
        detect.baseline.abs_scale_floor = 0.03;
        detect.min_abs_delta = 0.1;
        BlockConfig {
            detect,
            min_attempts: 10.0,
            outage_fraction: 0.5,
            control_min_drop: 0.1,
            min_control_attempts: 10.0,
            min_platform_windows: detect.baseline.min_residuals,
            min_failures: 5.0,
        }
    }
}

/// What block detection reads (all series on the same or overlapping window grids).
#[derive(Debug, Clone, Copy)]
pub struct ReachabilityInput<'a> {
    /// Successes / attempts to the platform per window.
    pub platform_ratio: &'a Series,
    /// Successes / attempts to control sites per window.
    pub control_ratio: &'a Series,
    /// Platform attempts per window (for `min_attempts`); `None` = do not filter.
    pub platform_attempts: Option<&'a Series>,
    /// Control attempts per window (pooled control ratios); `None` = mean of window ratios.
    pub control_attempts: Option<&'a Series>,
    /// Failure counts per window by kind, e.g. `("reset_after_client_hello", &series)`.
    pub failures: &'a [(&'a str, &'a Series)],
}

/// Finds suspected blocks and outages; `metric` names the platform (`x_success_ratio`).
pub fn detect_blocks(input: &ReachabilityInput<'_>, metric: &str, cfg: &BlockConfig) -> Vec<Alert> {
    let mut platform = input.platform_ratio.clone();
    if let Some(attempts) = input.platform_attempts {
        for (i, v) in platform.values.iter_mut().enumerate() {
            let ts = input.platform_ratio.ts(i);
            let a = attempts
                .index_of(ts)
                .and_then(|j| attempts.values.get(j))
                .copied()
                .unwrap_or(f64::NAN);
            if a.is_nan() || a < cfg.min_attempts {
                *v = f64::NAN;
            }
        }
    }
    let det = detect(&platform, metric, &cfg.detect);
    let mut candidates: Vec<&Alert> = det
        .alerts
        .iter()
        .filter(|a| matches!(a.kind, AlertKind::LevelShiftDown | AlertKind::Dip))
        .collect();
    let span = |a: &Alert| a.end_ts.unwrap_or(i64::MAX).saturating_sub(a.start_ts);
    let overlaps = |a: &Alert, b: &Alert| {
        a.start_ts < b.end_ts.unwrap_or(i64::MAX) && b.start_ts < a.end_ts.unwrap_or(i64::MAX)
    };
    // Longest first, so a dip inside a shift is the one dropped.
    candidates.sort_by_key(|a| (std::cmp::Reverse(span(a)), a.start_ts));
    let mut kept: Vec<&Alert> = Vec::new();
    for a in candidates {
        if !kept.iter().any(|k| overlaps(k, a)) {
            kept.push(a);
        }
    }
    kept.sort_by_key(|a| (a.detected_ts, a.start_ts));
    let mut out = Vec::new();
    for alert in kept.into_iter().cloned() {
        let start = platform.index_of(alert.start_ts).unwrap_or(0);
        let stop = alert
            .end_ts
            .and_then(|t| platform.index_of(t))
            .unwrap_or(platform.values.len())
            .max(start + 1);
        let end_ts = alert
            .end_ts
            .unwrap_or_else(|| platform.ts(platform.values.len()));
        let p_before = det.expected.get(start).copied().unwrap_or(f64::NAN);
        let p_during = mean(
            platform
                .values
                .get(start..stop)
                .unwrap_or(&[])
                .iter()
                .copied(),
        );
        let p_drop = rel_drop(p_before, p_during);
        if let Some(attempts) = input.platform_attempts {
            let (ok_share, tried) = pooled(&platform, attempts, alert.start_ts, end_ts);
            if tried * (1.0 - ok_share.min(1.0)) < cfg.min_failures || !ok_share.is_finite() {
                continue;
            }
        }

        let control = input.control_ratio;
        let lookback = cfg.detect.baseline.trailing_points.max(1);
        let lookback_nanos = control
            .step_nanos
            .saturating_mul(i64::try_from(lookback).unwrap_or(i64::MAX));
        let (c_before, c_during, c_attempts) = match input.control_attempts {
            Some(attempts) => {
                let before_from = alert.start_ts.saturating_sub(lookback_nanos);
                let (b, _) = pooled(control, attempts, before_from, alert.start_ts);
                let (d, n) = pooled(control, attempts, alert.start_ts, end_ts);
                (b, d, Some(n))
            }
            None => {
                let outside = if alert.start_ts < control.start_ts_nanos {
                    0
                } else {
                    control.values.len()
                };
                let c_start = control.index_of(alert.start_ts).unwrap_or(outside);
                let mut before: Vec<f64> = control
                    .values
                    .get(c_start.saturating_sub(lookback)..c_start)
                    .unwrap_or(&[])
                    .to_vec();
                let b = median(&mut before).unwrap_or(f64::NAN);
                (
                    b,
                    mean(values_between(control, alert.start_ts, end_ts)),
                    None,
                )
            }
        };
        let c_drop = rel_drop(c_before, c_during);
        let too_few = c_attempts.is_some_and(|n| n < cfg.min_control_attempts);

        let mut evidence = alert.evidence.clone();
        evidence.push(("platform_before".into(), fmt(p_before)));
        evidence.push(("platform_mean_during".into(), fmt(p_during)));
        evidence.push(("platform_drop".into(), fmt(p_drop)));
        if let Some(n) = c_attempts {
            evidence.push(("control_attempts_during".into(), fmt(n)));
        }
        let kind = if too_few {
            evidence.push(("control".into(), "too few attempts".into()));
            AlertKind::BlockSuspected
        } else if c_drop.is_finite() {
            evidence.push(("control_before".into(), fmt(c_before)));
            evidence.push(("control_mean_during".into(), fmt(c_during)));
            evidence.push(("control_drop".into(), fmt(c_drop)));
            let threshold = cfg
                .control_min_drop
                .max(cfg.outage_fraction * p_drop.max(0.0));
            if c_drop >= threshold {
                AlertKind::Outage
            } else {
                AlertKind::BlockSuspected
            }
        } else {
            evidence.push(("control".into(), "no data".into()));
            AlertKind::BlockSuspected
        };

        let mut dominant: Option<(&str, f64)> = None;
        for (name, series) in input.failures {
            let total: f64 = values_between(series, alert.start_ts, end_ts).sum();
            evidence.push((format!("failures_{name}"), fmt(total)));
            if total > 0.0 && dominant.is_none_or(|(_, best)| total > best) {
                dominant = Some((name, total));
            }
        }
        if let Some((name, _)) = dominant {
            evidence.push(("dominant_failure".into(), name.to_string()));
        }
        out.push(Alert {
            kind,
            evidence,
            ..alert
        });
    }
    out
}

/// One platform's series for [`detect_platform_blocks`].
#[derive(Debug, Clone, Copy)]
pub struct PlatformSeries<'a> {
    /// The platform's name (`x`), given as the alerts' `platform` evidence.
    pub platform: &'a str,
    /// The ratio's metric name (`platform_x_success_ratio`), given as the alerts' `metric`.
    pub metric: &'a str,
    /// Successes / attempts per window.
    pub ratio: &'a Series,
    /// Attempts per window; `None`: the platform cannot be judged on its own.
    pub attempts: Option<&'a Series>,
    /// Failure counts per window by kind.
    pub failures: &'a [(&'a str, &'a Series)],
}

impl PlatformSeries<'_> {
    /// Whether the platform has at least `min_platform_windows` windows of `min_attempts`.
    pub fn qualifies(&self, cfg: &BlockConfig) -> bool {
        self.attempts.is_some_and(|a| {
            a.values.iter().filter(|v| **v >= cfg.min_attempts).count()
                >= cfg.min_platform_windows.max(1)
        })
    }
}

/// Block detection per platform (module docs): every qualifying platform of `platforms` on its
/// own ratio, each alert carrying `("platform", name)` evidence; `pooled` (all platforms
/// together, alerts unchanged from [`detect_blocks`]) only when none qualifies. Alerts are in
/// order of onset.
pub fn detect_platform_blocks(
    platforms: &[PlatformSeries<'_>],
    pooled: Option<&PlatformSeries<'_>>,
    control_ratio: &Series,
    control_attempts: Option<&Series>,
    cfg: &BlockConfig,
) -> Vec<Alert> {
    let input = |p: &PlatformSeries<'_>| {
        detect_blocks(
            &ReachabilityInput {
                platform_ratio: p.ratio,
                control_ratio,
                platform_attempts: p.attempts,
                control_attempts,
                failures: p.failures,
            },
            p.metric,
            cfg,
        )
    };
    let qualifying: Vec<&PlatformSeries<'_>> =
        platforms.iter().filter(|p| p.qualifies(cfg)).collect();
    let mut alerts = Vec::new();
    if qualifying.is_empty() {
        if let Some(pooled) = pooled {
            alerts = input(pooled);
        }
    }
    for p in qualifying {
        alerts.extend(input(p).into_iter().map(|mut a| {
            a.evidence.push(("platform".into(), p.platform.to_string()));
            a
        }));
    }
    alerts.sort_by(|a, b| (a.start_ts, &a.metric).cmp(&(b.start_ts, &b.metric)));
    alerts
}

/// Successes / attempts pooled over windows starting in `[from, to)`, and the attempts.
fn pooled(ratio: &Series, attempts: &Series, from: i64, to: i64) -> (f64, f64) {
    let (mut ok, mut n) = (0.0, 0.0);
    for (i, r) in ratio.values.iter().enumerate() {
        let ts = ratio.ts(i);
        if !(from..to).contains(&ts) || !r.is_finite() {
            continue;
        }
        let a = attempts
            .index_of(ts)
            .and_then(|j| attempts.values.get(j))
            .copied()
            .filter(|a| a.is_finite() && *a > 0.0)
            .unwrap_or(0.0);
        ok += r * a;
        n += a;
    }
    (if n > 0.0 { ok / n } else { f64::NAN }, n)
}

/// Finite values of `s` in windows starting in `[from, to)`.
fn values_between(s: &Series, from: i64, to: i64) -> impl Iterator<Item = f64> + '_ {
    s.values
        .iter()
        .enumerate()
        .filter(move |(i, _)| (from..to).contains(&s.ts(*i)))
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
}

fn mean(it: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = it
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

fn rel_drop(before: f64, during: f64) -> f64 {
    if before.is_finite() && during.is_finite() && before.abs() > 1e-12 {
        1.0 - during / before
    } else {
        f64::NAN
    }
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "NaN".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STEP: i64 = 300_000_000_000;

    fn series(values: Vec<f64>) -> Series {
        Series {
            start_ts_nanos: 1_708_000_000_000_000_000,
            step_nanos: STEP,
            values,
        }
    }

    /// Ratio around `level` with a small deterministic wobble.
    fn ratio(n: usize, level: f64) -> Vec<f64> {
        (0..n)
            .map(|i| level + 0.01 * ((i * 7919 % 13) as f64 / 13.0 - 0.5))
            .collect()
    }

    fn ev<'a>(a: &'a Alert, key: &str) -> Option<&'a str> {
        a.evidence
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn platform_drop_with_healthy_controls_is_a_block_with_failure_evidence() {
        let mut p = ratio(600, 0.97);
        for v in p.iter_mut().skip(400) {
            *v = 0.05;
        }
        let platform = series(p);
        let control = series(ratio(600, 0.98));
        let mut resets = vec![0.0; 600];
        let mut dns = vec![0.0; 600];
        for i in 400..600 {
            resets[i] = 40.0;
            dns[i] = 2.0;
        }
        let (resets, dns) = (series(resets), series(dns));
        let failures = [("dns_failure", &dns), ("reset_after_client_hello", &resets)];
        let input = ReachabilityInput {
            platform_ratio: &platform,
            control_ratio: &control,
            platform_attempts: None,
            control_attempts: None,
            failures: &failures,
        };
        let alerts = detect_blocks(&input, "x_success_ratio", &BlockConfig::default());
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let a = &alerts[0];
        assert_eq!(a.kind, AlertKind::BlockSuspected);
        assert!(
            (a.start_ts - platform.ts(400)).abs() <= STEP,
            "onset within one window"
        );
        assert_eq!(a.end_ts, None);
        assert_eq!(ev(a, "dominant_failure"), Some("reset_after_client_hello"));
        assert_eq!(
            ev(a, "failures_reset_after_client_hello"),
            Some("8000.0000")
        );
        assert!(a.magnitude < 0.1);
    }

    /// Two failed attempts of ten in one window move the ratio by twenty points: too few
    /// failures to call a block; ten of ten are enough.
    #[test]
    fn a_dip_of_a_few_failed_attempts_is_not_a_block() {
        for (ok_in_dip, expect_alert) in [(8.0, false), (0.0, true)] {
            let mut p = vec![1.0; 300];
            p[200] = ok_in_dip / 10.0;
            let platform = series(p);
            let attempts = series(vec![10.0; 300]);
            let control = series(ratio(300, 0.98));
            let input = ReachabilityInput {
                platform_ratio: &platform,
                control_ratio: &control,
                platform_attempts: Some(&attempts),
                control_attempts: None,
                failures: &[],
            };
            let alerts = detect_blocks(&input, "x_success_ratio", &BlockConfig::default());
            assert_eq!(!alerts.is_empty(), expect_alert, "{ok_in_dip}: {alerts:?}");
        }
    }

    #[test]
    fn drop_in_both_is_an_outage() {
        let mut p = ratio(600, 0.97);
        let mut c = ratio(600, 0.98);
        for i in 400..450 {
            p[i] = 0.1;
            c[i] = 0.2;
        }
        let (platform, control) = (series(p), series(c));
        let input = ReachabilityInput {
            platform_ratio: &platform,
            control_ratio: &control,
            platform_attempts: None,
            control_attempts: None,
            failures: &[],
        };
        let alerts = detect_blocks(&input, "x_success_ratio", &BlockConfig::default());
        assert_eq!(
            alerts.iter().map(|a| a.kind).collect::<Vec<_>>(),
            vec![AlertKind::Outage],
            "{alerts:?}"
        );
        assert!(alerts[0].end_ts.is_some());
    }

    #[test]
    fn few_attempts_do_not_alarm_and_missing_controls_are_said() {
        let mut p = ratio(600, 0.97);
        let mut attempts = vec![50.0; 600];
        for i in 400..600 {
            p[i] = 0.0;
            attempts[i] = 1.0;
        }
        let (platform, attempts) = (series(p), series(attempts));
        let control = series(vec![f64::NAN; 600]);
        let input = ReachabilityInput {
            platform_ratio: &platform,
            control_ratio: &control,
            platform_attempts: Some(&attempts),
            control_attempts: None,
            failures: &[],
        };
        assert!(detect_blocks(&input, "x", &BlockConfig::default()).is_empty());
        let input = ReachabilityInput {
            platform_attempts: None,
            ..input
        };
        let alerts = detect_blocks(&input, "x", &BlockConfig::default());
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind, AlertKind::BlockSuspected);
        assert_eq!(ev(&alerts[0], "control"), Some("no data"));
    }

    #[test]
    fn single_failures_among_few_attempts_are_not_a_block() {
        // A ratio stuck at 1 with, now and then, one failure among eleven attempts.
        let p: Vec<f64> = (0..300)
            .map(|i| if i % 17 == 5 { 10.0 / 11.0 } else { 1.0 })
            .collect();
        let (platform, control) = (series(p), series(vec![1.0; 300]));
        let attempts = series(vec![11.0; 300]);
        let input = ReachabilityInput {
            platform_ratio: &platform,
            control_ratio: &control,
            platform_attempts: Some(&attempts),
            control_attempts: Some(&attempts),
            failures: &[],
        };
        assert!(detect_blocks(&input, "x", &BlockConfig::default()).is_empty());
    }

    #[test]
    fn pooled_controls_and_too_few_of_them() {
        let mut p = ratio(300, 0.97);
        let mut c = vec![0.98; 300];
        let mut c_attempts = vec![20.0; 300];
        for i in 200..260 {
            p[i] = 0.1;
            // Controls fail too, but in windows with a single attempt each.
            c[i] = 0.0;
            c_attempts[i] = if i % 10 == 0 { 1.0 } else { f64::NAN };
        }
        let (platform, control, c_attempts) = (series(p), series(c), series(c_attempts));
        let input = ReachabilityInput {
            platform_ratio: &platform,
            control_ratio: &control,
            platform_attempts: None,
            control_attempts: Some(&c_attempts),
            failures: &[],
        };
        let alerts = detect_blocks(&input, "x", &BlockConfig::default());
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].kind, AlertKind::BlockSuspected);
        assert_eq!(ev(&alerts[0], "control"), Some("too few attempts"));
        assert_eq!(ev(&alerts[0], "control_attempts_during"), Some("6.0000"));
    }

    #[test]
    fn a_rise_is_not_a_block() {
        let mut p = ratio(600, 0.5);
        for v in p.iter_mut().skip(400) {
            *v = 0.99;
        }
        let (platform, control) = (series(p), series(ratio(600, 0.98)));
        let input = ReachabilityInput {
            platform_ratio: &platform,
            control_ratio: &control,
            platform_attempts: None,
            control_attempts: None,
            failures: &[],
        };
        assert!(detect_blocks(&input, "x", &BlockConfig::default()).is_empty());
    }

    /// Ratio series from attempts and successes per window.
    fn ratio_of(ok: &[f64], attempts: &[f64]) -> Series {
        series(
            ok.iter()
                .zip(attempts)
                .map(|(o, a)| if *a > 0.0 { o / a } else { f64::NAN })
                .collect(),
        )
    }

    /// Per platform (attempts, successes, resets after client data) per window, and their sums.
    struct Traffic {
        x: [Vec<f64>; 3],
        youtube: [Vec<f64>; 3],
        tiktok: [Vec<f64>; 3],
        pooled: [Vec<f64>; 3],
    }

    /// X (12 attempts a window) blocked from window `block_from` by resets after the
    /// ClientHello; YouTube (48 a window) fine throughout; TikTok too thin (3) to be judged alone.
    fn traffic(n: usize, block_from: usize) -> Traffic {
        let mut t = Traffic {
            x: [vec![12.0; n], vec![0.0; n], vec![0.0; n]],
            youtube: [vec![48.0; n], vec![0.0; n], vec![0.0; n]],
            tiktok: [vec![3.0; n], vec![3.0; n], vec![0.0; n]],
            pooled: [vec![0.0; n], vec![0.0; n], vec![0.0; n]],
        };
        for i in 0..n {
            // An occasional failure keeps the ratios off a flat line.
            t.x[1][i] = if i % 23 == 7 { 11.0 } else { 12.0 };
            t.youtube[1][i] = if i % 19 == 3 { 47.0 } else { 48.0 };
            if i >= block_from {
                t.x[1][i] = 1.0;
                t.x[2][i] = 11.0;
            }
            for k in 0..3 {
                t.pooled[k][i] = t.x[k][i] + t.youtube[k][i] + t.tiktok[k][i];
            }
        }
        t
    }

    #[test]
    fn a_block_of_one_platform_is_found_and_named_not_diluted() {
        let t = traffic(600, 400);
        let (x_ratio, yt_ratio, tt_ratio) = (
            ratio_of(&t.x[1], &t.x[0]),
            ratio_of(&t.youtube[1], &t.youtube[0]),
            ratio_of(&t.tiktok[1], &t.tiktok[0]),
        );
        let pooled_ratio = ratio_of(&t.pooled[1], &t.pooled[0]);
        let (x_att, yt_att, tt_att, pooled_att) = (
            series(t.x[0].clone()),
            series(t.youtube[0].clone()),
            series(t.tiktok[0].clone()),
            series(t.pooled[0].clone()),
        );
        let (x_resets, pooled_resets) = (series(t.x[2].clone()), series(t.pooled[2].clone()));
        let x_failures = [("reset_after_client_data", &x_resets)];
        let pooled_failures = [("reset_after_client_data", &pooled_resets)];
        let control = series(vec![0.98; 600]);
        let control_att = series(vec![20.0; 600]);
        let cfg = BlockConfig::default();

        // The pooled ratio falls by 11 of 63 attempts (17 points): with its wobble this is a
        // diluted block that a pooled-only run reads at a fraction of its size.
        let pooled = PlatformSeries {
            platform: "platforms",
            metric: "platform_success_ratio",
            ratio: &pooled_ratio,
            attempts: Some(&pooled_att),
            failures: &pooled_failures,
        };
        let platforms = [
            PlatformSeries {
                platform: "x",
                metric: "platform_x_success_ratio",
                ratio: &x_ratio,
                attempts: Some(&x_att),
                failures: &x_failures,
            },
            PlatformSeries {
                platform: "youtube",
                metric: "platform_youtube_success_ratio",
                ratio: &yt_ratio,
                attempts: Some(&yt_att),
                failures: &[],
            },
            PlatformSeries {
                platform: "tiktok",
                metric: "platform_tiktok_success_ratio",
                ratio: &tt_ratio,
                attempts: Some(&tt_att),
                failures: &[],
            },
        ];
        assert!(platforms[0].qualifies(&cfg) && platforms[1].qualifies(&cfg));
        assert!(
            !platforms[2].qualifies(&cfg),
            "3 attempts a window is too thin"
        );
        let alerts = detect_platform_blocks(
            &platforms,
            Some(&pooled),
            &control,
            Some(&control_att),
            &cfg,
        );
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let a = &alerts[0];
        assert_eq!(a.kind, AlertKind::BlockSuspected);
        assert_eq!(a.metric, "platform_x_success_ratio");
        assert_eq!(ev(a, "platform"), Some("x"));
        assert_eq!(ev(a, "dominant_failure"), Some("reset_after_client_data"));
        assert!(
            (a.start_ts - x_ratio.ts(400)).abs() <= STEP,
            "onset within a window"
        );
        // Undiluted: X's own ratio fell by about nine tenths, the pooled one by under a fifth.
        let drop: f64 = ev(a, "platform_drop").unwrap().parse().unwrap();
        assert!(drop > 0.85, "{drop}");
        let pooled_alone = detect_blocks(
            &ReachabilityInput {
                platform_ratio: &pooled_ratio,
                control_ratio: &control,
                platform_attempts: Some(&pooled_att),
                control_attempts: Some(&control_att),
                failures: &pooled_failures,
            },
            "platform_success_ratio",
            &cfg,
        );
        let pooled_drop = pooled_alone
            .first()
            .and_then(|a| ev(a, "platform_drop"))
            .map_or(0.0, |d| d.parse().unwrap());
        assert!(pooled_drop < 0.2, "{pooled_drop}");
    }

    #[test]
    fn without_a_qualifying_platform_the_pooled_ratio_is_judged_as_before() {
        let t = traffic(600, 400);
        let pooled_ratio = ratio_of(&t.pooled[1], &t.pooled[0]);
        let pooled_att = series(t.pooled[0].clone());
        let control = series(vec![0.98; 600]);
        let cfg = BlockConfig::default();
        let pooled = PlatformSeries {
            platform: "platforms",
            metric: "platform_success_ratio",
            ratio: &pooled_ratio,
            attempts: Some(&pooled_att),
            failures: &[],
        };
        let before = detect_blocks(
            &ReachabilityInput {
                platform_ratio: &pooled_ratio,
                control_ratio: &control,
                platform_attempts: Some(&pooled_att),
                control_attempts: None,
                failures: &[],
            },
            "platform_success_ratio",
            &cfg,
        );
        assert!(!before.is_empty());
        // No per-platform series (an older series file), or none with enough attempts.
        let thin = series(vec![3.0; 600]);
        let thin_platform = PlatformSeries {
            platform: "tiktok",
            metric: "platform_tiktok_success_ratio",
            ratio: &pooled_ratio,
            attempts: Some(&thin),
            failures: &[],
        };
        for platforms in [&[][..], &[thin_platform][..]] {
            let alerts = detect_platform_blocks(platforms, Some(&pooled), &control, None, &cfg);
            assert_eq!(alerts, before);
        }
        assert!(detect_platform_blocks(&[], None, &control, None, &cfg).is_empty());
    }

    #[test]
    fn every_platform_failing_with_the_controls_is_an_outage_per_platform() {
        let n = 600;
        let mut x = ratio(n, 0.97);
        let mut yt = ratio(n, 0.96);
        let mut c = ratio(n, 0.98);
        for i in 400..450 {
            x[i] = 0.05;
            yt[i] = 0.1;
            c[i] = 0.1;
        }
        let (x, yt, c) = (series(x), series(yt), series(c));
        let attempts = series(vec![30.0; n]);
        let platforms = [
            PlatformSeries {
                platform: "x",
                metric: "platform_x_success_ratio",
                ratio: &x,
                attempts: Some(&attempts),
                failures: &[],
            },
            PlatformSeries {
                platform: "youtube",
                metric: "platform_youtube_success_ratio",
                ratio: &yt,
                attempts: Some(&attempts),
                failures: &[],
            },
        ];
        let alerts = detect_platform_blocks(
            &platforms,
            None,
            &c,
            Some(&attempts),
            &BlockConfig::default(),
        );
        assert_eq!(alerts.len(), 2, "{alerts:?}");
        assert!(alerts.iter().all(|a| a.kind == AlertKind::Outage));
        let named: Vec<_> = alerts.iter().filter_map(|a| ev(a, "platform")).collect();
        assert!(named.contains(&"x") && named.contains(&"youtube"));
    }

    proptest! {
        #[test]
        fn never_panics(p in proptest::collection::vec(prop_oneof![Just(f64::NAN), 0.0f64..1.0], 0..400),
                        c in proptest::collection::vec(prop_oneof![Just(f64::NAN), 0.0f64..1.0], 0..400),
                        shift in -500i64..500) {
            let platform = series(p);
            let control = Series { start_ts_nanos: platform.start_ts_nanos + shift * STEP, ..series(c) };
            let fail = control.clone();
            let failures = [("f", &fail)];
            let input = ReachabilityInput { platform_ratio: &platform, control_ratio: &control, platform_attempts: Some(&control), control_attempts: Some(&fail), failures: &failures };
            let _ = detect_blocks(&input, "x", &BlockConfig::default());
        }
    }
}
