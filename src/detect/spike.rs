//! Point spikes and sustained shifts on the residual against a robust baseline.
//!
//! One streaming pass per series (each window is judged only on what came before it):
//! 1. The [`Baseline`] gives an expected value `e` and a robust scale `s` (1.4826 x MAD of the
//!    recent residuals, floored); `z = (x - e) / s`.
//! 2. **Spike / dip**: `|z| >= spike_z` (default 6). Consecutive spike windows in one direction
//!    make one alert. Spike windows are not learnt by the baseline.
//! 3. **Level shift**: a two-sided CUSUM (Page 1954) on the standardised residual clipped to
//!    `±cusum_clip`: `S+ = max(0, S+ + r - k)`, `S- = max(0, S- - r - k)`, alarm when either
//!    exceeds `h`. Defaults `k = 1.0` (tuned to shifts of about 2 scale units: k is half the
//!    shift to detect) and `h = 8.0`; with the clip at 4 a shift needs at least three
//!    consecutive extreme windows, and on Gaussian noise the in-control run length is far beyond
//!    10^6 windows (Siegmund's approximation), i.e. years of 5-minute windows. The onset is the
//!    window after the statistic last stood at zero.
//! 4. While a shift is **open**, the baseline is frozen (nothing is learnt), so a months-long
//!    block does not become normal. It closes when `recover_points` consecutive windows are back
//!    within `recover_z` of the frozen baseline, or, if `max_freeze_points` is set, after that
//!    many windows, when its windows are learnt as the new level.
//! 5. **Minimum counts**: a window only counts as anomalous when `|x - e| >= min_abs_delta` and
//!    `max(|x|, |e|) >= min_value`, so "2 hosts instead of 1" never alarms.
//! 6. **Quiet period** (`cooldown_points`, default off): after an alert, no new alert for that
//!    many windows.

use super::baseline::{Baseline, BaselineConfig, BaselineKind};
use super::{format_ts, Alert, AlertKind, Series};

/// Detector tuning. [`Default`] is meant for 5-minute windows of host counts and shares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectConfig {
    /// Baseline model tuning.
    pub baseline: BaselineConfig,
    /// Robust z-score at or above which a window is a spike (or dip).
    pub spike_z: f64,
    /// CUSUM reference value `k` (in scale units).
    pub cusum_k: f64,
    /// CUSUM decision threshold `h` (in scale units).
    pub cusum_h: f64,
    /// Standardised residuals are clipped to `±cusum_clip` before entering the CUSUM.
    pub cusum_clip: f64,
    /// A window is "back to normal" when its deviation in the event's direction is below this z.
    pub recover_z: f64,
    /// Consecutive normal windows that close an open shift.
    pub recover_points: usize,
    /// Minimum of `max(|observed|, |expected|)` for a window to count as anomalous.
    pub min_value: f64,
    /// Minimum `|observed - expected|` for a window to count as anomalous.
    pub min_abs_delta: f64,
    /// Release a shift after this many windows (learn the new level); `None` = stay frozen.
    pub max_freeze_points: Option<usize>,
    /// After an alert is raised, no new alert is raised for this many windows (anomalous
    /// windows are still kept out of the baseline). 0 = off.
    pub cooldown_points: usize,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            baseline: BaselineConfig::default(),
            spike_z: 6.0,
            cusum_k: 1.0,
            cusum_h: 8.0,
            cusum_clip: 4.0,
            recover_z: 2.0,
            recover_points: 3,
            min_value: 0.0,
            min_abs_delta: 0.0,
            max_freeze_points: None,
            cooldown_points: 0,
        }
    }
}

/// Result of [`detect`] on one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Alerts in order of `detected_ts`.
    pub alerts: Vec<Alert>,
    /// Expected value per window (`NaN` during warm-up or missing data).
    pub expected: Vec<f64>,
    /// Robust scale per window (`NaN` when unknown).
    pub scale: Vec<f64>,
    /// Baseline model chosen for the series.
    pub baseline_kind: BaselineKind,
}

#[derive(Debug, Clone)]
struct Open {
    kind: AlertKind,
    dir: f64,
    start: usize,
    last: usize,
    peak: usize,
    peak_dev: f64,
    detected: usize,
    score: f64,
    cusum: f64,
    recover_run: usize,
    recover_start: usize,
    model: &'static str,
}

/// Runs the spike and shift detectors over `series`, naming alerts after `metric`.
pub fn detect(series: &Series, metric: &str, cfg: &DetectConfig) -> Detection {
    let n = series.values.len();
    let kind = BaselineKind::for_series(n, series.step_nanos);
    let mut base = Baseline::new(kind, cfg.baseline);
    let mut expected = vec![f64::NAN; n];
    let mut scale = vec![f64::NAN; n];
    let mut alerts = Vec::new();
    let mut spike: Option<Open> = None;
    let mut shift: Option<Open> = None;
    let (mut s_up, mut s_dn, mut onset_up, mut onset_dn) = (0.0f64, 0.0f64, 0usize, 0usize);
    let mut last_detected: Option<usize> = None;
    let k = cfg.cusum_k.max(0.0);
    let h = if cfg.cusum_h.is_finite() && cfg.cusum_h > 0.0 {
        cfg.cusum_h
    } else {
        8.0
    };
    let spike_z = if cfg.spike_z.is_finite() && cfg.spike_z > 0.0 {
        cfg.spike_z
    } else {
        6.0
    };
    let clip = if cfg.cusum_clip.is_finite() && cfg.cusum_clip > 0.0 {
        cfg.cusum_clip
    } else {
        4.0
    };

    for (i, &x) in series.values.iter().enumerate() {
        if !x.is_finite() {
            continue;
        }
        let Some((e, model)) = base.expected(i, shift.is_some()) else {
            base.accept(i, x, None);
            continue;
        };
        if let Some(slot) = expected.get_mut(i) {
            *slot = e;
        }
        let Some(s) = base.scale(e) else {
            base.accept(i, x, Some(e));
            continue;
        };
        if let Some(slot) = scale.get_mut(i) {
            *slot = s;
        }
        let z = (x - e) / s;
        let significant =
            (x - e).abs() >= cfg.min_abs_delta && x.abs().max(e.abs()) >= cfg.min_value;

        // An open shift: judge against the frozen baseline, learn nothing.
        if let Some(mut ev) = shift.take() {
            let dz = z * ev.dir;
            if significant && dz > cfg.recover_z {
                ev.recover_run = 0;
                ev.last = i;
                if dz > ev.peak_dev {
                    ev.peak_dev = dz;
                    ev.peak = i;
                }
            } else {
                if ev.recover_run == 0 {
                    ev.recover_start = i;
                }
                ev.recover_run += 1;
            }
            ev.cusum = (ev.cusum + dz.clamp(-clip, clip) - k).max(0.0);
            ev.score = ev.score.max(ev.cusum / h);
            if ev.recover_run >= cfg.recover_points.max(1) {
                // Back to normal: the recovering windows are ordinary history again.
                for j in ev.recover_start..=i {
                    if let (Some(&v), Some(&ej)) = (series.values.get(j), expected.get(j)) {
                        base.accept(j, v, Some(ej));
                    }
                }
                let end = series.ts(ev.recover_start);
                alerts.push(finish(
                    series,
                    metric,
                    &ev,
                    Some(end),
                    "recovered",
                    &expected,
                    &scale,
                    cfg,
                ));
                s_up = 0.0;
                s_dn = 0.0;
            } else if cfg
                .max_freeze_points
                .is_some_and(|m| i.saturating_sub(ev.start) >= m)
            {
                // Held long enough: learn the new level (not its residuals, which would inflate
                // the scale) and start afresh.
                for j in ev.start..=i {
                    if let Some(&v) = series.values.get(j) {
                        base.accept_level_only(j, v);
                    }
                }
                let end = series.ts(i + 1);
                alerts.push(finish(
                    series,
                    metric,
                    &ev,
                    Some(end),
                    "released after max_freeze_points",
                    &expected,
                    &scale,
                    cfg,
                ));
                s_up = 0.0;
                s_dn = 0.0;
            } else {
                shift = Some(ev);
            }
            continue;
        }

        let cooling = last_detected.is_some_and(|d| i < d.saturating_add(cfg.cooldown_points));
        let is_spike = significant && z.abs() >= spike_z;
        if cooling && spike.is_none() {
            // Quiet period after an alert: learn nothing anomalous, raise nothing.
            s_up = 0.0;
            s_dn = 0.0;
            if !is_spike {
                base.accept(i, x, Some(e));
            }
            continue;
        }
        let r = if significant {
            z.clamp(-clip, clip)
        } else {
            0.0
        };
        if s_up == 0.0 {
            onset_up = i;
        }
        if s_dn == 0.0 {
            onset_dn = i;
        }
        s_up = (s_up + r - k).max(0.0);
        s_dn = (s_dn - r - k).max(0.0);

        if is_spike {
            let dir = z.signum();
            match spike.as_mut() {
                Some(sp) if sp.dir == dir && sp.last + 1 == i => {
                    sp.last = i;
                    if z.abs() > sp.peak_dev {
                        sp.peak_dev = z.abs();
                        sp.peak = i;
                        sp.score = sp.peak_dev / spike_z;
                    }
                }
                _ => {
                    if let Some(old) = spike.take() {
                        let end = series.ts(old.last + 1);
                        alerts.push(finish(
                            series,
                            metric,
                            &old,
                            Some(end),
                            "ended",
                            &expected,
                            &scale,
                            cfg,
                        ));
                    }
                    last_detected = Some(i);
                    spike = Some(Open {
                        kind: if dir > 0.0 {
                            AlertKind::Spike
                        } else {
                            AlertKind::Dip
                        },
                        dir,
                        start: i,
                        last: i,
                        peak: i,
                        peak_dev: z.abs(),
                        detected: i,
                        score: z.abs() / spike_z,
                        cusum: 0.0,
                        recover_run: 0,
                        recover_start: i,
                        model,
                    });
                }
            }
        } else if let Some(old) = spike.take() {
            let end = series.ts(old.last + 1);
            alerts.push(finish(
                series,
                metric,
                &old,
                Some(end),
                "ended",
                &expected,
                &scale,
                cfg,
            ));
        }

        if s_up > h || s_dn > h {
            let up = s_up > h;
            let (dir, onset, stat) = if up {
                (1.0, onset_up, s_up)
            } else {
                (-1.0, onset_dn, s_dn)
            };
            let mut ev = Open {
                kind: if up {
                    AlertKind::LevelShiftUp
                } else {
                    AlertKind::LevelShiftDown
                },
                dir,
                start: onset,
                last: i,
                peak: i,
                peak_dev: f64::NEG_INFINITY,
                detected: i,
                score: stat / h,
                cusum: stat,
                recover_run: 0,
                recover_start: i,
                model,
            };
            for j in onset..=i {
                if let (Some(&v), Some(&ej), Some(&sj)) =
                    (series.values.get(j), expected.get(j), scale.get(j))
                {
                    let dz = (v - ej) / sj * dir;
                    if dz.is_finite() && dz > ev.peak_dev {
                        ev.peak_dev = dz;
                        ev.peak = j;
                    }
                }
            }
            // A spike that is the start of this shift becomes part of it.
            if let Some(sp) = spike.take() {
                if sp.dir == dir && sp.start >= onset {
                    ev.detected = ev.detected.min(sp.detected);
                } else {
                    let end = series.ts(sp.last + 1);
                    alerts.push(finish(
                        series,
                        metric,
                        &sp,
                        Some(end),
                        "ended",
                        &expected,
                        &scale,
                        cfg,
                    ));
                }
            }
            last_detected = Some(ev.detected);
            shift = Some(ev);
            s_up = 0.0;
            s_dn = 0.0;
            continue;
        }
        if !is_spike {
            base.accept(i, x, Some(e));
        }
    }
    if let Some(sp) = spike.take() {
        let end = series.ts(sp.last + 1);
        alerts.push(finish(
            series,
            metric,
            &sp,
            Some(end),
            "ended",
            &expected,
            &scale,
            cfg,
        ));
    }
    if let Some(ev) = shift.take() {
        alerts.push(finish(
            series,
            metric,
            &ev,
            None,
            "open at end of series",
            &expected,
            &scale,
            cfg,
        ));
    }
    alerts.sort_by_key(|a| (a.detected_ts, a.start_ts));
    Detection {
        alerts,
        expected,
        scale,
        baseline_kind: kind,
    }
}

/// `value / expected`, with the denominator floored away from zero (keeps its sign).
pub fn ratio(value: f64, expected: f64, floor: f64) -> f64 {
    let floor = if floor.is_finite() && floor > 0.0 {
        floor
    } else {
        1e-9
    };
    let denom = if expected.abs() >= floor {
        expected
    } else {
        floor
    };
    value / denom
}

#[allow(clippy::too_many_arguments)]
fn finish(
    series: &Series,
    metric: &str,
    ev: &Open,
    end_ts: Option<i64>,
    closed_by: &str,
    expected: &[f64],
    scale: &[f64],
    cfg: &DetectConfig,
) -> Alert {
    let get = |v: &[f64], j: usize| v.get(j).copied().unwrap_or(f64::NAN);
    let peak_x = get(&series.values, ev.peak);
    let peak_e = get(expected, ev.peak);
    let floor = cfg.baseline.abs_scale_floor.max(1e-9);
    let magnitude = ratio(peak_x, peak_e, floor);
    let mut evidence = vec![
        ("baseline".to_string(), ev.model.to_string()),
        ("expected_at_peak".to_string(), fmt(peak_e)),
        ("observed_at_peak".to_string(), fmt(peak_x)),
        ("scale_at_peak".to_string(), fmt(get(scale, ev.peak))),
        ("z_at_peak".to_string(), fmt(ev.peak_dev * ev.dir)),
        ("detected_ts".to_string(), format_ts(series.ts(ev.detected))),
        ("closed_by".to_string(), closed_by.to_string()),
    ];
    match ev.kind {
        AlertKind::LevelShiftUp | AlertKind::LevelShiftDown => {
            let stop = end_ts
                .and_then(|t| series.index_of(t))
                .unwrap_or(series.values.len());
            let during: Vec<f64> = series
                .values
                .get(ev.start..stop)
                .unwrap_or(&[])
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            let before = get(expected, ev.start);
            if !during.is_empty() {
                let mean = during.iter().sum::<f64>() / during.len() as f64;
                evidence.push(("mean_during".to_string(), fmt(mean)));
                evidence.push((
                    "mean_ratio_to_baseline".to_string(),
                    fmt(ratio(mean, before, floor)),
                ));
            }
            evidence.push(("expected_at_onset".to_string(), fmt(before)));
            evidence.push(("cusum_k".to_string(), fmt(cfg.cusum_k)));
            evidence.push(("cusum_h".to_string(), fmt(cfg.cusum_h)));
            evidence.push(("baseline_frozen".to_string(), "while open".to_string()));
        }
        _ => evidence.push(("spike_z".to_string(), fmt(cfg.spike_z))),
    }
    Alert {
        kind: ev.kind,
        metric: metric.to_string(),
        start_ts: series.ts(ev.start),
        end_ts,
        peak_ts: series.ts(ev.peak),
        detected_ts: series.ts(ev.detected),
        magnitude: if magnitude.is_finite() {
            magnitude
        } else {
            0.0
        },
        score: if ev.score.is_finite() { ev.score } else { 0.0 },
        evidence,
    }
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        "NaN".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STEP: i64 = 300_000_000_000;
    const DAY: usize = 288;

    /// Deterministic pseudo-noise in [-1, 1) (xorshift), so tests need no RNG crate.
    fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 20_000) as f64 / 10_000.0 - 1.0
            })
            .collect()
    }

    /// A daily cycle around `level` with noise of amplitude `amp`.
    fn daily(n: usize, level: f64, amp: f64, seed: u64) -> Vec<f64> {
        let nz = noise(n, seed);
        (0..n)
            .map(|i| {
                let phase = (i % DAY) as f64 / DAY as f64 * std::f64::consts::TAU;
                level * (1.0 + 0.3 * phase.sin()) + amp * nz[i]
            })
            .collect()
    }

    fn series(values: Vec<f64>) -> Series {
        Series {
            start_ts_nanos: 1_700_000_000_000_000_000,
            step_nanos: STEP,
            values,
        }
    }

    fn kinds(d: &Detection) -> Vec<AlertKind> {
        d.alerts.iter().map(|a| a.kind).collect()
    }

    #[test]
    fn noise_only_does_not_alarm() {
        for seed in 1..6 {
            let s = series(daily(DAY * 6, 100.0, 5.0, seed));
            let d = detect(&s, "vpn_hosts", &DetectConfig::default());
            assert!(d.alerts.is_empty(), "seed {seed}: {:?}", d.alerts);
            assert!(matches!(
                d.baseline_kind,
                BaselineKind::Seasonal { period: 288 }
            ));
        }
        // Short series: trailing baseline.
        let s = series(noise(200, 9).into_iter().map(|v| 50.0 + 3.0 * v).collect());
        let d = detect(&s, "x", &DetectConfig::default());
        assert!(d.alerts.is_empty(), "{:?}", d.alerts);
        assert_eq!(d.baseline_kind, BaselineKind::Trailing);
    }

    #[test]
    fn a_spike_is_found_at_its_window() {
        let mut v = daily(DAY * 5, 100.0, 5.0, 3);
        let at = DAY * 4 + 100;
        v[at] += 200.0;
        let s = series(v);
        let d = detect(&s, "vpn_hosts", &DetectConfig::default());
        assert_eq!(kinds(&d), vec![AlertKind::Spike], "{:?}", d.alerts);
        let a = &d.alerts[0];
        assert_eq!(a.start_ts, s.ts(at));
        assert_eq!(a.peak_ts, s.ts(at));
        assert_eq!(a.end_ts, Some(s.ts(at + 1)));
        assert!(a.magnitude > 2.0, "{}", a.magnitude);
        assert!(a.score >= 1.0);
        // The spike is not learnt: the next day's baseline at that time is unchanged.
        let json = serde_json::to_string(a).unwrap();
        assert!(json.contains("\"kind\":\"Spike\""), "{json}");
    }

    #[test]
    fn a_dip_is_a_dip() {
        let mut v = daily(DAY * 4, 100.0, 2.0, 4);
        v[DAY * 3 + 10] = 5.0;
        let d = detect(&series(v), "m", &DetectConfig::default());
        assert_eq!(kinds(&d), vec![AlertKind::Dip]);
        assert!(d.alerts[0].magnitude < 0.2);
    }

    #[test]
    fn a_step_up_is_a_level_shift_with_onset_within_a_window_and_frozen_baseline() {
        // A block: from day 4, VPN hosts triple and stay so for 3 days (longer than the trailing
        // window and half the seasonal memory): one open shift, no re-alarms.
        let mut v = daily(DAY * 7, 100.0, 5.0, 5);
        let at = DAY * 4 + 17;
        for x in v.iter_mut().skip(at) {
            *x *= 3.0;
        }
        let s = series(v);
        let d = detect(&s, "vpn_hosts", &DetectConfig::default());
        assert_eq!(kinds(&d), vec![AlertKind::LevelShiftUp], "{:?}", d.alerts);
        let a = &d.alerts[0];
        assert!(
            (a.start_ts - s.ts(at)).abs() <= STEP,
            "onset {} vs {}",
            a.start_ts,
            s.ts(at)
        );
        assert!(a.detected_ts <= s.ts(at + 2));
        assert_eq!(a.end_ts, None, "still open: the baseline is frozen");
        assert!(a.magnitude > 2.5 && a.magnitude < 4.0, "{}", a.magnitude);
        // Expectation after 2 days of the block still is the pre-block level (about 100).
        let e = d.expected[DAY * 6 + 17];
        assert!(e < 150.0, "baseline learnt the block: {e}");
    }

    #[test]
    fn a_step_that_ends_closes_the_alert() {
        let mut v = daily(DAY * 5, 100.0, 3.0, 6);
        for x in v.iter_mut().skip(DAY * 3).take(48) {
            *x += 60.0;
        }
        let s = series(v);
        let d = detect(&s, "m", &DetectConfig::default());
        assert_eq!(kinds(&d), vec![AlertKind::LevelShiftUp], "{:?}", d.alerts);
        let end = d.alerts[0].end_ts.unwrap();
        assert!((end - s.ts(DAY * 3 + 48)).abs() <= STEP, "end {end}");
    }

    #[test]
    fn a_step_down_is_a_level_shift_down() {
        let mut v: Vec<f64> = noise(400, 7).into_iter().map(|n| 0.95 + 0.01 * n).collect();
        for x in v.iter_mut().skip(300) {
            *x = 0.40;
        }
        let s = series(v);
        let d = detect(&s, "platform_success_ratio", &DetectConfig::default());
        assert_eq!(kinds(&d), vec![AlertKind::LevelShiftDown], "{:?}", d.alerts);
        assert!((d.alerts[0].start_ts - s.ts(300)).abs() <= STEP);
    }

    #[test]
    fn a_slow_ramp_is_found_by_cusum_against_the_seasonal_baseline() {
        // From day 4 the level rises by 0.25 % of the base a window (+72 % after a day): no
        // single window is a spike, but against the same time on earlier days it accumulates.
        let mut v = daily(DAY * 6, 100.0, 5.0, 8);
        let at = DAY * 4;
        for (i, x) in v.iter_mut().enumerate().skip(at) {
            *x += (i - at) as f64 * 0.25;
        }
        let s = series(v);
        let d = detect(&s, "vpn_hosts", &DetectConfig::default());
        let first = d.alerts.first().expect("ramp found");
        assert_eq!(first.kind, AlertKind::LevelShiftUp, "{:?}", d.alerts);
        assert!(
            first.start_ts >= s.ts(at - 12) && first.detected_ts <= s.ts(at + 72),
            "{first:?}"
        );
        assert!(
            d.alerts
                .iter()
                .all(|a| a.kind == AlertKind::LevelShiftUp || a.kind == AlertKind::Spike),
            "{:?}",
            d.alerts
        );
    }

    #[test]
    fn minimum_counts_silence_tiny_numbers() {
        // 0/1 hosts, then 3: relatively huge, absolutely tiny.
        let mut v: Vec<f64> = (0..300).map(|i| (i % 7 == 0) as u8 as f64).collect();
        v[250] = 3.0;
        v[251] = 3.0;
        v[252] = 3.0;
        let s = series(v);
        let cfg = DetectConfig {
            min_value: 5.0,
            min_abs_delta: 3.0,
            ..DetectConfig::default()
        };
        assert!(detect(&s, "new_adopters", &cfg).alerts.is_empty());
        let loud = detect(&s, "new_adopters", &DetectConfig::default());
        assert!(!loud.alerts.is_empty(), "without floors it alarms");
    }

    #[test]
    fn max_freeze_releases_and_learns_new_level() {
        let mut v: Vec<f64> = noise(800, 11).into_iter().map(|n| 10.0 + n).collect();
        for x in v.iter_mut().skip(200) {
            *x += 20.0;
        }
        let s = series(v);
        let cfg = DetectConfig {
            max_freeze_points: Some(100),
            ..DetectConfig::default()
        };
        let d = detect(&s, "m", &cfg);
        assert_eq!(kinds(&d), vec![AlertKind::LevelShiftUp], "{:?}", d.alerts);
        assert!(d.alerts[0].end_ts.is_some());
    }

    #[test]
    fn gaps_constant_and_empty_series_are_fine() {
        assert!(detect(&series(vec![]), "m", &DetectConfig::default())
            .alerts
            .is_empty());
        assert!(
            detect(&series(vec![5.0; 1000]), "m", &DetectConfig::default())
                .alerts
                .is_empty()
        );
        let mut v = daily(DAY * 4, 100.0, 3.0, 12);
        for x in v.iter_mut().skip(300).take(200) {
            *x = f64::NAN;
        }
        assert!(detect(&series(v), "m", &DetectConfig::default())
            .alerts
            .is_empty());
        let weird = Series {
            start_ts_nanos: i64::MAX - 5,
            step_nanos: -1,
            values: vec![1.0, f64::INFINITY, 1e308, -1e308, 0.0],
        };
        let _ = detect(&weird, "m", &DetectConfig::default());
    }

    proptest! {
        #[test]
        fn never_panics(values in proptest::collection::vec(prop_oneof![
                Just(f64::NAN), Just(0.0), Just(f64::MAX), Just(f64::MIN), -1e6f64..1e6], 0..700),
            step in prop_oneof![Just(0i64), Just(-1), Just(STEP), 1i64..i64::MAX],
            start in any::<i64>()) {
            let s = Series { start_ts_nanos: start, step_nanos: step, values };
            let d = detect(&s, "m", &DetectConfig::default());
            prop_assert_eq!(d.expected.len(), s.values.len());
            for a in &d.alerts {
                prop_assert!(a.magnitude.is_finite() && a.score.is_finite());
                prop_assert!(serde_json::to_string(a).is_ok());
            }
        }
    }
}
