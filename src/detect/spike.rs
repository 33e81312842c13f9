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
//!    `max(|x|, |e|) >= min_value`, so "2 hosts instead of 1" never alarms. A caller whose
//!    series is a ratio gives a **per-window** minimum as well ([`DetectContext::min_abs_delta`]):
//!    a VPN host share moves by `hosts / active hosts`, so "at least two hosts" is a different
//!    share in a night window of 12 active hosts than in a day window of 60.
//! 6. **Quiet period** (`cooldown_points`, default off): after an alert, no new alert for that
//!    many windows.
//! 7. **Event count test** ([`DetectConfig::event_counts`], off by default; for series that count
//!    events, such as new VPN adopters per window): while an event found in the same data is
//!    open (a detected block), a one-sided Poisson test of the count since the event began
//!    against the rate of the day before it. A block is a known candidate change point, so
//!    whether adoption rose after it is a before/after question, which a handful of adopters
//!    against a pre-block rate of about zero answers long before the CUSUM (built for
//!    level shifts of about two scale units, i.e. several hosts a window) does. See
//!    [`EventCountConfig`].
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
    /// The event count test (module docs, step 7) for series of event counts; `None` (the
    /// default) = off. Runs only inside the events given to [`detect_with_events`] /
    /// [`detect_in_context`]; ignored in novelty mode.
    pub event_counts: Option<EventCountConfig>,
}

/// Tuning of the event count test (module docs, step 7).
///
/// Model: under "nothing changed", the counts per window after the event began are Poisson with
/// the pre-event rate `λ0`, estimated from the finite windows of the `history_nanos` before the
/// event as `(sum + 1/2) / windows` (the posterior mean under Jeffreys' prior, so a day without
/// a single adopter still gives a small positive rate instead of zero, against which any count
/// would be infinitely significant). At each window `t` inside the event the count `N` since the
/// event began is tested: `p = P(Poisson(λ0 · m) >= N)` over the `m` finite windows so far.
/// An alarm needs `p <= alpha` **and** `N - λ0 · m >= min_excess` (the minimum absolute count:
/// two adopters are never a surge, however quiet the day before).
///
/// The onset is the maximum-likelihood change point after the event's start: the `τ` that
/// maximises the Poisson log-likelihood ratio `N_τ ln(N_τ / (m_τ λ0)) - N_τ + m_τ λ0` of the
/// windows `[τ, t]` (Page's CUSUM estimator, for a Poisson rate). With `λ0` near zero this is
/// the window of the first adopter unless a lone early adopter is followed by a long silence,
/// in which case the later cluster is the better estimate of when the rise began.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventCountConfig {
    /// Pre-event history the rate `λ0` is learnt from (UTC ns; one day by default, so the
    /// daily cycle is averaged over). Windows inside other events are left out.
    pub history_nanos: i64,
    /// Fewest finite pre-event windows needed; with fewer the test is not run for that event.
    pub min_history_points: usize,
    /// One-sided p-value at or below which the count since the event began is an alarm. It is
    /// tested once per window, so the false-alarm rate over a long event is higher than this
    /// (the looks are strongly correlated: a cumulative count).
    pub alpha: f64,
    /// Fewest events above the pre-event expectation (`N - λ0 m`) for an alarm.
    pub min_excess: f64,
}

impl Default for EventCountConfig {
    fn default() -> Self {
        EventCountConfig {
            history_nanos: super::baseline::DAY_NANOS,
            min_history_points: 12,
            alpha: 1e-3,
            min_excess: 3.0,
        }
    }
}

/// What the caller knows about a series beyond its values (see [`detect_in_context`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DetectContext<'a> {
    /// Events found in the same data, `[start, end)` in UTC ns, `None`: still open. The
    /// baseline is frozen inside them ([`detect_with_events`]) and the event count test runs
    /// inside them.
    pub events: &'a [(i64, Option<i64>)],
    /// Per-window minimum `|observed - expected|`, index `i` for window `i` of the series, on
    /// top of [`DetectConfig::min_abs_delta`] (the larger of the two applies). For a share:
    /// `hosts / active hosts` of that window, so the floor is a number of hosts. `NaN` or a
    /// missing index: no extra floor for that window.
    pub min_abs_delta: Option<&'a [f64]>,
}

impl DetectContext<'_> {
    /// The minimum `|observed - expected|` of window `i`: the larger of the fixed and the
    /// per-window floor.
    fn min_abs_delta_at(&self, cfg: &DetectConfig, i: usize) -> f64 {
        let extra = self
            .min_abs_delta
            .and_then(|floors| floors.get(i))
            .copied()
            .filter(|f| !f.is_nan())
            .unwrap_or(f64::NEG_INFINITY);
        cfg.min_abs_delta.max(extra)
    }
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
            event_counts: None,
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
    detect_in_context(
        series,
        metric,
        cfg,
        &DetectContext {
            events,
            min_abs_delta: None,
        },
    )
}

/// [`detect_with_events`] with everything the caller knows ([`DetectContext`]): the events and
/// a per-window minimum absolute change. Then, if configured, the event count test (module
/// docs, step 7) inside each event; its alert is left out when the other detectors already
/// have a rise on this series starting inside the event no later than its onset.
pub fn detect_in_context(
    series: &Series,
    metric: &str,
    cfg: &DetectConfig,
    ctx: &DetectContext<'_>,
) -> Detection {
    if let Some(novelty) = &cfg.novelty {
        return detect_novelty(series, metric, cfg, novelty, ctx);
    }
    let mut detection = detect_shifts(series, metric, cfg, ctx);
    if let Some(counts) = &cfg.event_counts {
        for &(start, end) in ctx.events {
            let Some(found) = event_count_alert(series, metric, counts, ctx.events, start, end)
            else {
                continue;
            };
            let covered = detection.alerts.iter().any(|a| {
                matches!(a.kind, AlertKind::LevelShiftUp | AlertKind::Spike)
                    && a.start_ts >= start
                    && end.is_none_or(|e| a.start_ts < e)
                    && a.start_ts <= found.start_ts
            });
            if !covered {
                detection.alerts.push(found);
            }
        }
        detection
            .alerts
            .sort_by_key(|a| (a.detected_ts, a.start_ts));
    }
    detection
}

/// Baseline, spike and CUSUM detectors (module docs, steps 1-6).
fn detect_shifts(
    series: &Series,
    metric: &str,
    cfg: &DetectConfig,
    ctx: &DetectContext<'_>,
) -> Detection {
    let events = ctx.events;
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
            (x - e).abs() >= ctx.min_abs_delta_at(cfg, i) && x.abs().max(e.abs()) >= cfg.min_value;

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
    ctx: &DetectContext<'_>,
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
        let floor = finite_or(floor, abs_floor);
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
            (x - e).abs() >= ctx.min_abs_delta_at(cfg, i) && x.abs().max(e.abs()) >= cfg.min_value;
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
        magnitude: finite_or(magnitude, 0.0),
        score: finite_or(score / threshold, 0.0),
        evidence,
    }
}

/// The event count test (module docs, step 7; [`EventCountConfig`]) inside the event
/// `[start, end)`: the alert of its first alarm, if any.
fn event_count_alert(
    series: &Series,
    metric: &str,
    cfg: &EventCountConfig,
    events: &[(i64, Option<i64>)],
    start: i64,
    end: Option<i64>,
) -> Option<Alert> {
    let step = series.step_nanos;
    if step <= 0 {
        return None;
    }
    let in_any_event = |ts: i64| {
        events
            .iter()
            .any(|&(s, e)| ts >= s && e.is_none_or(|e| ts < e))
    };
    // Counts are non-negative; anything else (NaN, infinite, negative) is a missing window.
    let count = |i: usize| {
        series
            .values
            .get(i)
            .copied()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    // First window whose start is at or after the event's start.
    let first = if start <= series.start_ts_nanos {
        0
    } else {
        let offset = start.saturating_sub(series.start_ts_nanos);
        usize::try_from(offset.div_euclid(step) + i64::from(offset.rem_euclid(step) != 0)).ok()?
    };
    if first >= series.values.len() {
        return None;
    }
    let history_windows = usize::try_from(cfg.history_nanos.max(0) / step).unwrap_or(0);
    let (mut history_sum, mut history_points) = (0.0f64, 0usize);
    for i in first.saturating_sub(history_windows)..first {
        if let (Some(v), false) = (count(i), in_any_event(series.ts(i))) {
            history_sum += v;
            history_points += 1;
        }
    }
    if history_points < cfg.min_history_points.max(1) {
        return None;
    }
    // Jeffreys' prior: a quiet day still gives a positive rate.
    let rate = (history_sum + 0.5) / history_points as f64;
    if !rate.is_finite() {
        return None;
    }
    let alpha = if cfg.alpha.is_finite() && cfg.alpha > 0.0 {
        cfg.alpha
    } else {
        1e-3
    };
    // Cumulative counts and finite windows since the event began, for the onset search.
    let (mut sums, mut windows) = (vec![0.0f64], vec![0usize]);
    for t in first..series.values.len() {
        if end.is_some_and(|e| series.ts(t) >= e) {
            break;
        }
        let (total, m) = (
            sums.last().copied().unwrap_or(0.0),
            windows.last().copied().unwrap_or(0),
        );
        let Some(x) = count(t) else {
            sums.push(total);
            windows.push(m);
            continue;
        };
        let (total, m) = (total + x, m + 1);
        sums.push(total);
        windows.push(m);
        let mu = rate * m as f64;
        if total - mu < cfg.min_excess {
            continue;
        }
        let p = poisson_upper_tail(total, mu);
        if p > alpha {
            continue;
        }
        // Maximum-likelihood onset: the τ in [first, t] with the largest log-likelihood ratio
        // of the windows [τ, t] (rows of `sums` are offsets from `first`).
        let offset = t - first + 1;
        let mut onset = first;
        let mut best = f64::NEG_INFINITY;
        for k in 0..offset {
            let n = total - sums.get(k).copied().unwrap_or(0.0);
            let mk = (m - windows.get(k).copied().unwrap_or(0)) as f64;
            if n <= 0.0 || mk <= 0.0 {
                continue;
            }
            let expected = rate * mk;
            let llr = n * (n / expected).ln() - n + expected;
            if llr > best {
                best = llr;
                onset = first + k;
            }
        }
        let peak = (onset..=t)
            .max_by(|&a, &b| {
                count(a)
                    .unwrap_or(0.0)
                    .total_cmp(&count(b).unwrap_or(0.0))
                    .then(b.cmp(&a))
            })
            .unwrap_or(onset);
        let since_onset = total - sums.get(onset - first).copied().unwrap_or(0.0);
        let windows_since_onset = m - windows.get(onset - first).copied().unwrap_or(0);
        let observed_rate = since_onset / windows_since_onset.max(1) as f64;
        let magnitude = ratio(observed_rate, rate, 1e-9);
        let score = if p > 0.0 {
            p.log10() / alpha.log10()
        } else {
            f64::MAX
        };
        return Some(Alert {
            kind: AlertKind::LevelShiftUp,
            metric: metric.to_string(),
            start_ts: series.ts(onset),
            end_ts: end,
            peak_ts: series.ts(peak),
            detected_ts: series.ts(t),
            magnitude: finite_or(magnitude, 0.0),
            score: finite_or(score, f64::MAX),
            evidence: vec![
                ("baseline".to_string(), "pre_event_rate".to_string()),
                ("test".to_string(), "poisson_count_since_event".to_string()),
                ("event_start".to_string(), format_ts(start)),
                ("expected_rate_per_window".to_string(), fmt(rate)),
                ("history_windows".to_string(), history_points.to_string()),
                ("count_since_event".to_string(), fmt(total)),
                ("expected_since_event".to_string(), fmt(mu)),
                ("windows_since_event".to_string(), m.to_string()),
                ("p_value".to_string(), format!("{p:.3e}")),
                ("alpha".to_string(), format!("{alpha:e}")),
                ("min_excess".to_string(), fmt(cfg.min_excess)),
                ("observed_rate_since_onset".to_string(), fmt(observed_rate)),
                ("detected_ts".to_string(), format_ts(series.ts(t))),
                ("closed_by".to_string(), "the event's end".to_string()),
            ],
        });
    }
    None
}

/// `P(X >= n)` for `X ~ Poisson(mu)` (`n` rounded down to a whole count). Summed upwards from
/// `n` in log space while the terms matter (they shrink geometrically once `k > mu`); for large
/// means the normal approximation with continuity correction, where the sum would be long and
/// the approximation is good. 1 when the inputs are not finite (never significant).
pub fn poisson_upper_tail(n: f64, mu: f64) -> f64 {
    if !n.is_finite() || !mu.is_finite() || mu < 0.0 {
        return 1.0;
    }
    let n = n.floor();
    if n <= 0.0 {
        return 1.0;
    }
    if mu == 0.0 {
        return 0.0;
    }
    if mu > 1_000.0 {
        let z = (n - 0.5 - mu) / mu.sqrt();
        return 0.5 * erfc(z / std::f64::consts::SQRT_2);
    }
    let mut log_term = -mu + n * mu.ln() - ln_factorial(n);
    let mut sum = 0.0f64;
    let mut k = n;
    for _ in 0..10_000 {
        let term = log_term.exp();
        sum += term;
        if term <= sum * 1e-16 {
            break;
        }
        k += 1.0;
        log_term += mu.ln() - k.ln();
    }
    sum.clamp(0.0, 1.0)
}

/// `ln(n!)`: exact below 30, Stirling's series (error below 1e-10 there) above.
fn ln_factorial(n: f64) -> f64 {
    if n < 30.0 {
        let mut acc = 0.0f64;
        let mut k = 2.0;
        while k <= n {
            acc += f64::ln(k);
            k += 1.0;
        }
        return acc;
    }
    let tau = std::f64::consts::TAU;
    n * n.ln() - n + 0.5 * (tau * n).ln() + 1.0 / (12.0 * n) - 1.0 / (360.0 * n.powi(3))
}

/// Complementary error function, Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7),
/// extended to negative arguments by `erfc(-x) = 2 - erfc(x)`.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let tail = poly * (-z * z).exp();
    if x >= 0.0 {
        tail
    } else {
        2.0 - tail
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
        magnitude: finite_or(magnitude, 0.0),
        score: finite_or(ev.score, 0.0),
        evidence,
    }
}

/// `v`, or `fallback` where `v` is NaN or infinite (alert fields and thresholds stay finite).
fn finite_or(v: f64, fallback: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        fallback
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

    /// One host over twelve active is a large share but a tiny number: a per-window floor of
    /// two hosts silences it where the fixed floor (one point of share) does not; windows
    /// without a floor (`NaN`) fall back to the fixed one.
    #[test]
    fn a_per_window_minimum_change_silences_small_numbers_in_small_windows() {
        let hosts: Vec<f64> = (0..300)
            .map(|i| if i >= 200 { 12.0 } else { 60.0 })
            .collect();
        let share: Vec<f64> = (0..300)
            .map(|i| if i >= 200 { 1.0 / 12.0 } else { 0.0 })
            .collect();
        let s = series(share);
        let cfg = DetectConfig {
            min_abs_delta: 0.01,
            ..DetectConfig::default()
        };
        let two_hosts: Vec<f64> = hosts.iter().map(|h| 2.0 / h).collect();
        let with_floors = |s: &Series, cfg: &DetectConfig, floors: &[f64]| {
            detect_in_context(
                s,
                "vpn_host_share",
                cfg,
                &DetectContext {
                    events: &[],
                    min_abs_delta: Some(floors),
                },
            )
        };
        assert!(!detect(&s, "vpn_host_share", &cfg).alerts.is_empty());
        let d = with_floors(&s, &cfg, &two_hosts);
        assert!(d.alerts.is_empty(), "{:?}", d.alerts);
        // Unknown floors: the fixed minimum applies and the step alarms again.
        assert!(!with_floors(&s, &cfg, &[f64::NAN; 300]).alerts.is_empty());
        // A floor slice shorter than the series leaves the rest to the fixed minimum.
        assert!(!with_floors(&s, &cfg, &two_hosts[..150]).alerts.is_empty());
        // Windows the floor kept from counting are ordinary history: once the floor is gone
        // (from window 250) the new level is no longer news.
        assert!(with_floors(&s, &cfg, &two_hosts[..250]).alerts.is_empty());
        // Three hosts among twelve clear the two-host floor.
        let mut loud = s.clone();
        for v in loud.values.iter_mut().skip(200) {
            *v = 3.0 / 12.0;
        }
        let d = with_floors(&loud, &cfg, &two_hosts);
        assert_eq!(kinds(&d), vec![AlertKind::LevelShiftUp], "{:?}", d.alerts);
        // Novelty mode honours the per-window floor too.
        let mut spiky = vec![0.0; 300];
        spiky[250] = 1.0 / 12.0;
        let spiky = series(spiky);
        let quiet = with_floors(&spiky, &novelty_cfg(5), &two_hosts);
        assert!(quiet.alerts.is_empty(), "{:?}", quiet.alerts);
        assert!(!detect(&spiky, "vpn_host_share", &novelty_cfg(5))
            .alerts
            .is_empty());
    }

    /// New adopters per hour: a few in the first hours (everyone is new), none for the day
    /// before the block at window 48, then one or two an hour from window 54.
    fn adopters(after_block: &[(usize, f64)]) -> Series {
        let mut v = vec![0.0; 64];
        for i in [0, 1, 3, 7, 12] {
            v[i] = 1.0;
        }
        for &(i, x) in after_block {
            v[i] = x;
        }
        Series {
            start_ts_nanos: 1_700_000_000_000_000_000,
            step_nanos: 3_600_000_000_000,
            values: v,
        }
    }

    fn count_cfg() -> DetectConfig {
        DetectConfig {
            min_abs_delta: 3.0,
            min_value: 3.0,
            event_counts: Some(EventCountConfig::default()),
            ..DetectConfig::default()
        }
    }

    fn count_alerts(s: &Series, cfg: &DetectConfig, events: &[(i64, Option<i64>)]) -> Vec<Alert> {
        detect_with_events(s, "new_adopters", cfg, events).alerts
    }

    #[test]
    fn a_few_adopters_during_a_block_are_a_surge_from_the_first_of_them() {
        let s = adopters(&[(54, 1.0), (56, 1.0), (57, 2.0), (58, 1.0)]);
        let block = [(s.ts(48), None)];
        let alerts = count_alerts(&s, &count_cfg(), &block);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let a = &alerts[0];
        assert_eq!(a.kind, AlertKind::LevelShiftUp);
        assert_eq!(a.start_ts, s.ts(54), "onset at the first adopter");
        // Three adopters above a rate of 0.5/24 an hour: significant at window 57.
        assert_eq!(a.detected_ts, s.ts(57));
        assert_eq!(a.peak_ts, s.ts(57));
        assert_eq!(a.end_ts, None);
        assert!(a.magnitude > 10.0, "{}", a.magnitude);
        assert!(a.score >= 1.0, "{}", a.score);
        let fact = |k: &str| {
            a.evidence
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(fact("count_since_event").as_deref(), Some("4"));
        assert_eq!(fact("history_windows").as_deref(), Some("24"));
        // The same counts without a block: the CUSUM's minimum of three hosts a window keeps
        // them quiet, and the count test has no event to run in.
        assert!(count_alerts(&s, &count_cfg(), &[]).is_empty());
        // Without the test, the block alone does not make them an alarm either.
        let plain = DetectConfig {
            event_counts: None,
            ..count_cfg()
        };
        assert!(count_alerts(&s, &plain, &block).is_empty());
        // A block that ended before the adopters came: nothing to test.
        assert!(count_alerts(&s, &count_cfg(), &[(s.ts(48), Some(s.ts(52)))]).is_empty());
    }

    #[test]
    fn two_adopters_or_a_busy_day_before_are_not_a_surge() {
        // Two adopters: under the minimum excess of three, however quiet the day before.
        let s = adopters(&[(54, 1.0), (60, 1.0)]);
        assert!(count_alerts(&s, &count_cfg(), &[(s.ts(48), None)]).is_empty());
        // One adopter an hour all day before the block: four after it are ordinary.
        let mut busy = adopters(&[(54, 1.0), (56, 1.0), (57, 2.0)]);
        for v in busy.values.iter_mut().take(48).skip(24) {
            *v = 1.0;
        }
        assert!(count_alerts(&busy, &count_cfg(), &[(busy.ts(48), None)]).is_empty());
        // Too little history before the event: not run.
        let early = adopters(&[(9, 1.0), (10, 2.0), (11, 3.0)]);
        assert!(count_alerts(&early, &count_cfg(), &[(early.ts(8), None)]).is_empty());
    }

    #[test]
    fn a_lone_early_adopter_before_a_long_silence_does_not_set_the_onset() {
        // One adopter at 50, nothing for six hours, then a cluster from 57: the likelihood
        // puts the rise at the cluster.
        let s = adopters(&[(50, 1.0), (57, 2.0), (58, 1.0), (59, 2.0), (61, 3.0)]);
        let alerts = count_alerts(&s, &count_cfg(), &[(s.ts(48), None)]);
        let counted: Vec<&Alert> = alerts
            .iter()
            .filter(|a| a.evidence.iter().any(|(k, _)| k == "p_value"))
            .collect();
        assert_eq!(counted.len(), 1, "{alerts:?}");
        assert_eq!(counted[0].start_ts, s.ts(57));
        assert_eq!(counted[0].detected_ts, s.ts(58));
    }

    #[test]
    fn poisson_upper_tail_matches_hand_computed_values() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.max(1e-300);
        // 1 - e^-0.5 (1 + 0.5 + 0.125)
        assert!(close(
            poisson_upper_tail(3.0, 0.5),
            1.0 - (-0.5f64).exp() * 1.625
        ));
        assert!(close(poisson_upper_tail(1.0, 1.0), 1.0 - (-1.0f64).exp()));
        assert!(close(
            poisson_upper_tail(3.7, 0.5),
            poisson_upper_tail(3.0, 0.5)
        ));
        assert_eq!(poisson_upper_tail(0.0, 0.5), 1.0);
        assert!(close(
            poisson_upper_tail(2.0, 3.0),
            1.0 - (-3.0f64).exp() * 4.0
        ));
        assert_eq!(poisson_upper_tail(2.0, 0.0), 0.0);
        assert_eq!(poisson_upper_tail(f64::NAN, 1.0), 1.0);
        assert_eq!(poisson_upper_tail(5.0, f64::INFINITY), 1.0);
        // Stirling above 30 agrees with the exact sum: P(X >= 40 | 20), about 5.4e-5.
        let p = poisson_upper_tail(40.0, 20.0);
        assert!(p > 4e-5 && p < 7e-5, "{p}");
        // Normal approximation for large means: 3.1 sd above 1000.
        let p = poisson_upper_tail(1_100.0, 1_000.0);
        assert!(p > 5e-4 && p < 1.5e-3, "{p}");
        assert!(poisson_upper_tail(1e300, 1e299) < 1e-12);
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
            cooldown in 0usize..50,
            event_at in 0usize..700,
            floor_len in 0usize..700,
            floor_values in proptest::collection::vec(prop_oneof![
                Just(f64::NAN), Just(0.0), Just(f64::INFINITY), Just(-1.0), 0.0f64..1.0], 1..4)) {
            let s = Series { start_ts_nanos: start, step_nanos: step, values };
            let floors: Vec<f64> = (0..floor_len).map(|i| floor_values[i % floor_values.len()]).collect();
            let events = [(s.ts(event_at), None), (s.ts(event_at / 2), Some(s.ts(event_at)))];
            let cfg = if novelty {
                let mut c = novelty_cfg(cooldown);
                if let Some(nc) = c.novelty.as_mut() {
                    nc.window = window;
                    nc.min_points = window / 2;
                    nc.history_points = window;
                }
                c
            } else {
                DetectConfig {
                    event_counts: Some(EventCountConfig {
                        min_history_points: window,
                        ..EventCountConfig::default()
                    }),
                    ..DetectConfig::default()
                }
            };
            let context = DetectContext { events: &events, min_abs_delta: Some(&floors) };
            let d = detect_in_context(&s, "m", &cfg, &context);
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
