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
//!
//! **Novelty mode** ([`DetectConfig::novelty`], off by default; used for the NAB evaluation,
//! see [`super::nab::nab_config`]) replaces steps 1-4 with a cheaper streaming scorer for
//! series whose "normal" is unknown and whose anomalies are episodes: each point's score is the
//! larger of two robust z-scores, of its level against the median/MAD of the last `window`
//! values and of its first difference against the median/MAD of the last `window` differences
//! (so both a jump and an unusual level count); an alert is the onset of an episode, raised when
//! the score reaches an **adaptive threshold**, `max(min_z, factor x quantile of the series' own
//! recent scores)`, i.e. only what is rarer than this series' usual bursts; then the quiet
//! period suppresses repeats. Each step is O(log w) (sorted trailing windows,
//! [`super::baseline::TrailingWindow`]).

use super::baseline::{Baseline, BaselineConfig, BaselineKind, TrailingWindow};
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
    /// Novelty mode (module docs) instead of the baseline + spike + CUSUM detectors; `None`
    /// (the default) keeps those. `spike_z`, the CUSUM settings and `baseline` are then unused;
    /// `min_value`, `min_abs_delta` and `cooldown_points` still apply.
    pub novelty: Option<NoveltyConfig>,
}

/// Tuning of novelty mode (module docs). All counts are in windows (rows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoveltyConfig {
    /// Trailing window of the level and first-difference medians and MADs.
    pub window: usize,
    /// Values needed in a trailing window before its z-score is given.
    pub min_points: usize,
    /// Weight of the first-difference z-score against the level z-score (0 = levels only).
    pub diff_weight: f64,
    /// Scale floor as a fraction of the range (max - min) seen so far, so a flat stretch does
    /// not turn every wiggle into an infinite z-score.
    pub range_floor: f64,
    /// The threshold never falls below this score.
    pub min_z: f64,
    /// Past scores (trailing) that the adaptive threshold is learnt from; 0 = fixed `min_z`.
    pub history_points: usize,
    /// Quantile of those past scores...
    pub history_quantile: f64,
    /// ...times this factor is the adaptive threshold.
    pub history_factor: f64,
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
            novelty: None,
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
    detect_with_events(series, metric, cfg, &[])
}

/// [`detect`] with the baseline frozen during `events` (`[start, end)` in Unix nanoseconds,
/// `None`: still open): nothing inside an event is learnt, so a change that builds up slowly
/// after a block began (users adopting a VPN over days) is judged against the level before the
/// block instead of being followed by the trailing baseline. Meant for blocks found in the same
/// data; a calendar date alone is no evidence that this network was affected. Ignored in
/// novelty mode.
pub fn detect_with_events(
    series: &Series,
    metric: &str,
    cfg: &DetectConfig,
    events: &[(i64, Option<i64>)],
) -> Detection {
    if let Some(novelty) = &cfg.novelty {
        return detect_novelty(series, metric, cfg, novelty);
    }
    let in_event = |i: usize| {
        let ts = series.ts(i);
        events
            .iter()
            .any(|&(start, end)| ts >= start && end.is_none_or(|e| ts < e))
    };
    let n = series.values.len();
    let kind = BaselineKind::for_series(n, series.step_nanos);
    let mut base = Baseline::new(kind, cfg.baseline);
    let mut expected = vec![f64::NAN; n];
    let mut scale = vec![f64::NAN; n];
    let mut alerts = Vec::new();
    let mut spike: Option<Open> = None;
    let mut shift: Option<Open> = None;
    let (mut s_up, mut s_dn, mut onset_up, mut onset_dn) = (0.0f64, 0.0f64, 0usize, 0usize);
    let (mut strict_up, mut strict_dn) = (0.0f64, 0.0f64);
    let (mut strict_onset_up, mut strict_onset_dn) = (0usize, 0usize);
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
        let frozen = in_event(i);
        let expectation = if frozen {
            base.expected_during_event(i)
        } else {
            base.expected(i, shift.is_some())
        };
        let Some((e, model)) = expectation else {
            if !frozen {
                base.accept(i, x, None);
            }
            continue;
        };
        if let Some(slot) = expected.get_mut(i) {
            *slot = e;
        }
        let Some(s) = base.scale(e) else {
            if !frozen {
                base.accept(i, x, Some(e));
            }
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
                for j in (ev.recover_start..=i).filter(|&j| !in_event(j)) {
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
            if !is_spike && !frozen {
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
        // Against a baseline frozen by an event the level does not follow the daily cycle, so
        // small deviations add up for hours before the real change; the onset is then taken
        // from a stricter CUSUM (reference 2k): where the deviation became clear.
        if frozen {
            if strict_up == 0.0 {
                strict_onset_up = i;
            }
            if strict_dn == 0.0 {
                strict_onset_dn = i;
            }
            strict_up = (strict_up + r - 2.0 * k).max(0.0);
            strict_dn = (strict_dn - r - 2.0 * k).max(0.0);
        } else {
            // Outside events the ordinary onset stands.
            (strict_up, strict_dn) = (0.0, 0.0);
            (strict_onset_up, strict_onset_dn) = (0, 0);
        }

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
                (1.0, onset_up.max(strict_onset_up.min(i)), s_up)
            } else {
                (-1.0, onset_dn.max(strict_onset_dn.min(i)), s_dn)
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
        if !is_spike && !frozen {
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

/// Novelty mode (module docs): one pass, each point scored on the values before it only.
fn detect_novelty(
    series: &Series,
    metric: &str,
    cfg: &DetectConfig,
    nc: &NoveltyConfig,
) -> Detection {
    let n = series.values.len();
    let mut expected = vec![f64::NAN; n];
    let mut scale = vec![f64::NAN; n];
    let mut alerts = Vec::new();
    let mut levels = TrailingWindow::new(nc.window);
    let mut diffs = TrailingWindow::new(nc.window);
    let mut past_scores = TrailingWindow::new(nc.history_points);
    let min_points = nc.min_points.max(2);
    let min_z = if nc.min_z.is_finite() && nc.min_z > 0.0 {
        nc.min_z
    } else {
        6.0
    };
    let diff_weight = if nc.diff_weight.is_finite() {
        nc.diff_weight.max(0.0)
    } else {
        0.0
    };
    let abs_floor = if cfg.baseline.abs_scale_floor.is_finite() {
        cfg.baseline.abs_scale_floor.max(1e-12)
    } else {
        1e-9
    };
    let (mut lowest, mut highest) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut previous: Option<f64> = None;
    let mut last_alert: Option<usize> = None;
    for (i, &x) in series.values.iter().enumerate() {
        if !x.is_finite() {
            continue;
        }
        let range = if highest >= lowest {
            highest - lowest
        } else {
            0.0
        };
        let floor = (nc.range_floor * range).max(abs_floor);
        let floor = if floor.is_finite() { floor } else { abs_floor };
        let robust_z = |w: &TrailingWindow, v: f64| -> Option<(f64, f64, f64)> {
            if w.len() < min_points {
                return None;
            }
            let (m, mad) = (w.median()?, w.mad()?);
            let s = (1.4826 * mad).max(floor);
            let z = (v - m) / s;
            z.is_finite().then_some((z, m, s))
        };
        let level = robust_z(&levels, x);
        let diff = previous.map(|p| x - p).filter(|d| d.is_finite());
        let jump = diff.and_then(|d| robust_z(&diffs, d));
        let mut score = 0.0f64;
        let mut sign = 1.0;
        if let Some((z, m, s)) = level {
            score = z.abs();
            sign = z.signum();
            if let (Some(e), Some(sc)) = (expected.get_mut(i), scale.get_mut(i)) {
                *e = m;
                *sc = s;
            }
        }
        if let Some((z, _, _)) = jump {
            if diff_weight * z.abs() > score {
                score = diff_weight * z.abs();
                sign = z.signum();
            }
        }
        let e = level.map_or(x, |(_, m, _)| m);
        let significant =
            (x - e).abs() >= cfg.min_abs_delta && x.abs().max(e.abs()) >= cfg.min_value;
        if !significant {
            score = 0.0;
        }
        let adaptive = if nc.history_points > 0 {
            past_scores
                .quantile(nc.history_quantile)
                .map_or(0.0, |q| nc.history_factor * q)
        } else {
            0.0
        };
        let threshold = if adaptive.is_finite() {
            min_z.max(adaptive)
        } else {
            min_z
        };
        let cooling = last_alert.is_some_and(|l| i < l.saturating_add(cfg.cooldown_points));
        if score >= threshold && !cooling {
            last_alert = Some(i);
            alerts.push(novelty_alert(
                series, metric, i, sign, score, threshold, level, jump, nc,
            ));
        }
        levels.push(x);
        if let Some(d) = diff {
            diffs.push(d);
        }
        past_scores.push(score);
        previous = Some(x);
        lowest = lowest.min(x);
        highest = highest.max(x);
    }
    Detection {
        alerts,
        expected,
        scale,
        baseline_kind: BaselineKind::Trailing,
    }
}

/// The alert of a novelty-mode onset at window `i`.
#[allow(clippy::too_many_arguments)]
fn novelty_alert(
    series: &Series,
    metric: &str,
    i: usize,
    sign: f64,
    score: f64,
    threshold: f64,
    level: Option<(f64, f64, f64)>,
    jump: Option<(f64, f64, f64)>,
    nc: &NoveltyConfig,
) -> Alert {
    let x = series.values.get(i).copied().unwrap_or(f64::NAN);
    let e = level.map_or(f64::NAN, |(_, m, _)| m);
    let magnitude = ratio(x, e, 1e-9);
    let at = format_ts(series.ts(i));
    let evidence = vec![
        ("baseline".to_string(), "trailing_median".to_string()),
        ("expected_at_peak".to_string(), fmt(e)),
        ("observed_at_peak".to_string(), fmt(x)),
        (
            "scale_at_peak".to_string(),
            fmt(level.map_or(f64::NAN, |(_, _, s)| s)),
        ),
        (
            "z_level".to_string(),
            fmt(level.map_or(f64::NAN, |(z, _, _)| z)),
        ),
        (
            "z_first_difference".to_string(),
            fmt(jump.map_or(f64::NAN, |(z, _, _)| z)),
        ),
        ("threshold".to_string(), fmt(threshold)),
        ("window".to_string(), nc.window.to_string()),
        ("detected_ts".to_string(), at),
        (
            "closed_by".to_string(),
            "onset only (novelty mode)".to_string(),
        ),
    ];
    Alert {
        kind: if sign < 0.0 {
            AlertKind::Dip
        } else {
            AlertKind::Spike
        },
        metric: metric.to_string(),
        start_ts: series.ts(i),
        end_ts: Some(series.ts(i.saturating_add(1))),
        peak_ts: series.ts(i),
        detected_ts: series.ts(i),
        magnitude: if magnitude.is_finite() {
            magnitude
        } else {
            0.0
        },
        score: if (score / threshold).is_finite() {
            score / threshold
        } else {
            0.0
        },
        evidence,
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

    /// A slow ramp that begins after a block: the trailing baseline follows it, a baseline
    /// frozen from the block's start measures it against the level before, with the onset at
    /// the ramp's start (not at the block's).
    #[test]
    fn a_frozen_event_baseline_finds_a_slow_ramp_at_its_start() {
        let n = 200;
        let (block, ramp) = (120usize, 140usize);
        let values: Vec<f64> = noise(n, 5)
            .into_iter()
            .enumerate()
            .map(|(i, v)| 50.0 + 2.0 * v + 0.4 * i.saturating_sub(ramp) as f64)
            .collect();
        let s = series(values);
        let cfg = DetectConfig::default();
        let events = [(s.ts(block), None)];
        let d = detect_with_events(&s, "vpn_hosts", &cfg, &events);
        let up: Vec<&Alert> = d
            .alerts
            .iter()
            .filter(|a| a.kind == AlertKind::LevelShiftUp)
            .collect();
        assert_eq!(up.len(), 1, "{:?}", d.alerts);
        let onset = ((up[0].start_ts - s.start_ts_nanos) / STEP) as usize;
        assert!(
            (ramp..=ramp + 12).contains(&onset),
            "onset {onset}, ramp starts at {ramp}"
        );
        // Without the event the same ramp starts no earlier.
        let plain = detect(&s, "vpn_hosts", &cfg);
        let plain_onset = plain
            .alerts
            .iter()
            .filter(|a| a.kind == AlertKind::LevelShiftUp)
            .map(|a| ((a.start_ts - s.start_ts_nanos) / STEP) as usize)
            .min();
        assert!(plain_onset.is_none_or(|p| p >= onset), "{plain_onset:?}");
        // An event with no change after it raises nothing.
        let flat = series(noise(n, 5).into_iter().map(|v| 50.0 + 2.0 * v).collect());
        let d = detect_with_events(&flat, "vpn_hosts", &cfg, &events);
        assert!(d.alerts.is_empty(), "{:?}", d.alerts);
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

    /// Novelty mode with small windows, so hand-made series of a few hundred points suffice.
    fn novelty_cfg(cooldown: usize) -> DetectConfig {
        DetectConfig {
            cooldown_points: cooldown,
            novelty: Some(NoveltyConfig {
                window: 50,
                min_points: 20,
                diff_weight: 1.0,
                range_floor: 0.01,
                min_z: 6.0,
                history_points: 100,
                history_quantile: 0.99,
                history_factor: 1.1,
            }),
            ..DetectConfig::default()
        }
    }

    fn onsets(d: &Detection, s: &Series) -> Vec<usize> {
        d.alerts
            .iter()
            .filter_map(|a| s.index_of(a.detected_ts))
            .collect()
    }

    #[test]
    fn novelty_finds_a_spike_and_a_dip_at_their_rows() {
        let mut v: Vec<f64> = noise(400, 21).into_iter().map(|n| 50.0 + n).collect();
        v[200] = 90.0;
        v[320] = 10.0;
        let s = series(v);
        // The quiet period swallows the jump back (a first difference as large as the spike).
        let d = detect(&s, "m", &novelty_cfg(5));
        assert_eq!(onsets(&d, &s), vec![200, 320], "{:?}", d.alerts);
        assert_eq!(kinds(&d), vec![AlertKind::Spike, AlertKind::Dip]);
        assert!(d
            .alerts
            .iter()
            .all(|a| a.score >= 1.0 && a.end_ts.is_some()));
        // Nothing is judged before the trailing window holds min_points values.
        assert!(d.expected[..20].iter().all(|e| e.is_nan()));
        assert!((d.expected[100] - 50.0).abs() < 1.0, "{}", d.expected[100]);
    }

    #[test]
    fn novelty_reports_the_onset_of_an_episode_once() {
        // A step that stays: the first row of the new level alarms, the following rows fall in
        // the quiet period and, once it is over, the new level is no longer novel.
        let mut v: Vec<f64> = noise(600, 22).into_iter().map(|n| 10.0 + n).collect();
        for x in v.iter_mut().skip(300) {
            *x += 30.0;
        }
        let s = series(v.clone());
        let d = detect(&s, "m", &novelty_cfg(60));
        assert_eq!(onsets(&d, &s), vec![300], "{:?}", d.alerts);
        // Without the quiet period the episode keeps alarming while the window still holds the
        // old level: the quiet period is what makes it one alert.
        let loud = detect(&s, "m", &novelty_cfg(0));
        assert!(loud.alerts.len() > 1, "{:?}", loud.alerts);
    }

    #[test]
    fn novelty_first_differences_catch_a_jump_inside_the_usual_range() {
        // A slow wave between 0 and 100 (period 200 rows): a sudden 30-unit jump at mid-level
        // is not unusual as a level against a window spanning much of the wave, but its first
        // difference (about 20x the wave's steepest step) is.
        let nz = noise(400, 26);
        let mut v: Vec<f64> = (0..400)
            .map(|i| 50.0 + 50.0 * (i as f64 / 200.0 * std::f64::consts::TAU).sin() + 0.3 * nz[i])
            .collect();
        for x in v.iter_mut().skip(300).take(3) {
            *x += 30.0;
        }
        let s = series(v);
        let mut cfg = novelty_cfg(10);
        if let Some(nc) = cfg.novelty.as_mut() {
            nc.window = 120;
        }
        let with_diffs = detect(&s, "m", &cfg);
        assert_eq!(
            onsets(&with_diffs, &s),
            vec![300],
            "{:?}",
            with_diffs.alerts
        );
        assert_eq!(kinds(&with_diffs), vec![AlertKind::Spike]);
        if let Some(nc) = cfg.novelty.as_mut() {
            nc.diff_weight = 0.0;
        }
        let levels_only = detect(&s, "m", &cfg);
        assert!(levels_only.alerts.is_empty(), "{:?}", levels_only.alerts);
    }

    #[test]
    fn novelty_adaptive_threshold_ignores_routine_bursts() {
        // A burst every 40 rows is this series' normal: once a few are in the score history,
        // only a burst well above the usual ones alarms. With a fixed threshold every burst
        // would.
        let mut v: Vec<f64> = noise(600, 23).into_iter().map(|n| 20.0 + n).collect();
        for i in (45..600).step_by(40) {
            v[i] = 40.0;
        }
        v[505] = 120.0;
        let s = series(v);
        let mut cfg = novelty_cfg(5);
        if let Some(nc) = cfg.novelty.as_mut() {
            nc.history_factor = 1.5;
        }
        let adaptive = detect(&s, "m", &cfg);
        let late: Vec<usize> = onsets(&adaptive, &s)
            .into_iter()
            .filter(|&i| i > 300)
            .collect();
        assert_eq!(late, vec![505], "{:?}", adaptive.alerts);
        if let Some(nc) = cfg.novelty.as_mut() {
            nc.history_points = 0;
        }
        let every = detect(&s, "m", &cfg);
        assert!(every.alerts.len() > 10, "{}", every.alerts.len());
    }

    #[test]
    fn novelty_is_quiet_on_noise_constant_and_gappy_series() {
        let cfg = novelty_cfg(10);
        let noisy = series(noise(2000, 24).into_iter().map(|n| 5.0 + n).collect());
        assert!(detect(&noisy, "m", &cfg).alerts.is_empty());
        assert!(detect(&series(vec![7.0; 500]), "m", &cfg).alerts.is_empty());
        assert!(detect(&series(vec![]), "m", &cfg).alerts.is_empty());
        let mut gappy: Vec<f64> = noise(500, 25).into_iter().map(|n| 5.0 + n).collect();
        for x in gappy.iter_mut().skip(100).take(150) {
            *x = f64::NAN;
        }
        let d = detect(&series(gappy), "m", &cfg);
        assert!(d.alerts.is_empty(), "{:?}", d.alerts);
        assert!(d.expected[150].is_nan());
        // The product default is unaffected by the new field.
        assert_eq!(DetectConfig::default().novelty, None);
    }

    proptest! {
        #[test]
        fn never_panics(values in proptest::collection::vec(prop_oneof![
                Just(f64::NAN), Just(0.0), Just(f64::MAX), Just(f64::MIN), Just(f64::INFINITY),
                Just(1e-300), -1e6f64..1e6], 0..700),
            step in prop_oneof![Just(0i64), Just(-1), Just(STEP), 1i64..i64::MAX],
            start in any::<i64>(),
            novelty in any::<bool>(),
            window in 0usize..80,
            cooldown in 0usize..50) {
            let s = Series { start_ts_nanos: start, step_nanos: step, values };
            let cfg = if novelty {
                let mut c = novelty_cfg(cooldown);
                if let Some(nc) = c.novelty.as_mut() {
                    nc.window = window;
                    nc.min_points = window / 2;
                    nc.history_points = window;
                }
                c
            } else {
                DetectConfig::default()
            };
            let d = detect(&s, "m", &cfg);
            prop_assert_eq!(d.expected.len(), s.values.len());
            prop_assert_eq!(d.scale.len(), s.values.len());
            for a in &d.alerts {
                prop_assert!(a.magnitude.is_finite() && a.score.is_finite());
                prop_assert!(serde_json::to_string(a).is_ok());
            }
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn never_panics_on_constant_runs(level in prop_oneof![Just(0.0), Just(f64::MAX),
                Just(-1e300), -1e9f64..1e9], len in 0usize..600, novelty in any::<bool>()) {
            let cfg = if novelty { novelty_cfg(5) } else { DetectConfig::default() };
            let d = detect(&series(vec![level; len]), "m", &cfg);
            prop_assert!(d.alerts.is_empty(), "{:?}", d.alerts);
        }
    }
}
