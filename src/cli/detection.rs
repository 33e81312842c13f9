//! Detection step of `analyze`: spikes and level shifts in circumvention use, platform blocks
//! against control sites, and their alignment with the block-event calendar; writes
//! `alerts.json` and hands the results to the report.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use crate::detect::{self, Alert, BlockEvent, Series};
use crate::pipeline::RunSummary;
use crate::report::html::{AlertRow, AlignmentRow, Detections, EventRow};
use crate::stats::MetricSeries;

/// Metrics watched for surges (and drops) in circumvention use.
const SURGE_METRICS: &[&str] = &[
    "circumvention_host_share",
    "circumvention_hosts",
    "new_adopters",
];

/// Share metrics are left out (missing) in windows with fewer active hosts than this fraction of
/// the run's median active hosts (and never below [`MIN_HOSTS_FOR_SHARE`]): at night one VPN
/// user among five active hosts is a 20 % share, which says nothing about a surge.
const SHARE_HOSTS_FRACTION: f64 = 0.25;
const MIN_HOSTS_FOR_SHARE: f64 = 5.0;

/// Calendar events that began this long before the capture still count (effects linger).
const EVENT_LOOKBACK_NANOS: i64 = 7 * 86_400 * 1_000_000_000;

/// Detector settings per metric: minimum absolute changes so that a handful of hosts in a
/// quiet window does not alarm, a magnitude floor (one host, one percentage point) so ratios to
/// an empty baseline stay meaningful, and a short cool-down against alert storms.
fn metric_config(metric: &str) -> detect::DetectConfig {
    let mut cfg = detect::DetectConfig {
        cooldown_points: 6,
        ..detect::DetectConfig::default()
    };
    if metric.ends_with("_share") {
        cfg.min_abs_delta = 0.02;
        cfg.baseline.abs_scale_floor = 0.01;
    } else {
        cfg.min_abs_delta = 3.0;
        cfg.min_value = 3.0;
        cfg.baseline.abs_scale_floor = 1.0;
    }
    if metric == "new_adopters" {
        // New adopters are counts of events (a host's first circumvention flow): inside a
        // detected block they are tested against the day before it (Poisson), at least three
        // adopters above the expectation.
        cfg.event_counts = Some(detect::EventCountConfig {
            min_excess: 3.0,
            ..detect::EventCountConfig::default()
        });
    }
    cfg
}

/// Fewest hosts by which a share window must differ from the expected share to count as
/// anomalous: one VPN host among twelve active at night is 8 points of share and says nothing.
/// Two rather than the count metrics' three, so the first adopters of a slow ramp still show
/// (scenario seeds 1-10: no false alarm without a block; README "Scenario files"). Given to the
/// detector per window as `hosts / active hosts` ([`detect::DetectContext::min_abs_delta`]).
const MIN_SHARE_EXCESS_HOSTS: f64 = 2.0;

/// Per-window minimum change of a share metric: [`MIN_SHARE_EXCESS_HOSTS`] over the active hosts
/// of each of `share`'s windows (`NaN`, no floor, where the host count is unknown; infinite, so
/// nothing counts, where no host was active).
fn share_floors(share: &Series, active: &Series) -> Vec<f64> {
    (0..share.values.len())
        .map(|i| {
            let hosts = active
                .index_of(share.ts(i))
                .and_then(|j| active.values.get(j))
                .copied()
                .unwrap_or(f64::NAN);
            if hosts.is_nan() {
                f64::NAN
            } else if hosts <= 0.0 {
                f64::INFINITY
            } else {
                MIN_SHARE_EXCESS_HOSTS / hosts
            }
        })
        .collect()
}

pub use crate::detect::calendar::DETECTED_SOURCE;

/// A detected block as a calendar event (country unknown: `XX`, the ISO 3166 code for
/// user-assigned use), with the dominant failure kind as its method.
fn detected_block_event(a: &Alert) -> BlockEvent {
    let evidence = |key: &str| {
        a.evidence
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let failure = evidence("dominant_failure").unwrap_or("unknown");
    // Per-platform alerts name their platform; the pooled ratio's stand for all of them.
    let platform = evidence("platform").unwrap_or("platforms");
    BlockEvent {
        country: "XX".to_string(),
        platform: platform.to_string(),
        start_ts: a.start_ts,
        end_ts: a.end_ts,
        method: format!("detected: {platform} success ratio fell, dominant failure {failure}"),
        source: DETECTED_SOURCE.to_string(),
        note: format!("alert on {} (magnitude {:.2})", a.metric, a.magnitude),
        vpn_demand: None,
    }
}

fn series(metrics: &[MetricSeries], name: &str) -> Option<Series> {
    metrics.iter().find(|m| m.metric == name).map(|m| Series {
        start_ts_nanos: m.start_ts_nanos,
        step_nanos: m.step_nanos,
        values: m.values.clone(),
    })
}

/// Failure-count series `prefix<kind>` present in `metrics`, by kind name.
fn failure_series(metrics: &[MetricSeries], prefix: &str) -> Vec<(&'static str, Series)> {
    crate::stats::FAILURE_KINDS
        .iter()
        .filter_map(|k| series(metrics, &format!("{prefix}{}", k.name())).map(|s| (k.name(), s)))
        .collect()
}

/// Block and outage alerts: each platform with its own series (`platform_<name>_*`) judged on
/// its own ratio, the pooled `platform_success_ratio` only when none has enough attempts
/// ([`detect::detect_platform_blocks`]); all against the pooled control ratio.
fn block_alerts(metrics: &[MetricSeries]) -> Vec<Alert> {
    let Some(control) = series(metrics, "control_success_ratio") else {
        return Vec::new();
    };
    let control_attempts = series(metrics, "control_attempts");
    struct Owned {
        platform: String,
        metric: String,
        ratio: Series,
        attempts: Option<Series>,
        failures: Vec<(&'static str, Series)>,
    }
    let mut owned: Vec<Owned> = Vec::new();
    for m in metrics {
        if let Some((platform, "success_ratio")) = crate::stats::parse_platform_column(&m.metric) {
            if owned.iter().any(|o| o.platform == platform) {
                continue;
            }
            owned.push(Owned {
                platform: platform.to_string(),
                metric: m.metric.clone(),
                ratio: Series {
                    start_ts_nanos: m.start_ts_nanos,
                    step_nanos: m.step_nanos,
                    values: m.values.clone(),
                },
                attempts: series(
                    metrics,
                    &crate::stats::platform_column(platform, "attempts"),
                ),
                failures: failure_series(metrics, &format!("platform_{platform}_")),
            });
        }
    }
    let pooled = series(metrics, "platform_success_ratio").map(|ratio| Owned {
        platform: "platforms".to_string(),
        metric: "platform_success_ratio".to_string(),
        ratio,
        attempts: series(metrics, "platform_attempts"),
        failures: failure_series(metrics, "platform_"),
    });
    let failures: Vec<Vec<(&str, &Series)>> = owned
        .iter()
        .chain(pooled.as_ref())
        .map(|o| o.failures.iter().map(|(k, s)| (*k, s)).collect())
        .collect();
    let mut views: Vec<detect::PlatformSeries<'_>> = owned
        .iter()
        .chain(pooled.as_ref())
        .zip(&failures)
        .map(|(o, failures)| detect::PlatformSeries {
            platform: o.platform.as_str(),
            metric: o.metric.as_str(),
            ratio: &o.ratio,
            attempts: o.attempts.as_ref(),
            failures: failures.as_slice(),
        })
        .collect();
    let pooled_view = pooled.as_ref().and_then(|_| views.pop());
    detect::detect_platform_blocks(
        &views,
        pooled_view.as_ref(),
        &control,
        control_attempts.as_ref(),
        &detect::BlockConfig::default(),
    )
}

/// Runs the detectors over the per-window metrics and aligns alerts with calendar events
/// (built-in plus `extra_events`) that overlap the analysed time span.
pub fn run(
    metrics: &[MetricSeries],
    summary: &RunSummary,
    extra_events: &[BlockEvent],
    out: &Path,
) -> Result<Detections> {
    // Blocks first: while a block found in this data lasts, the surge metrics' baselines are
    // frozen, so a slow adoption ramp after it is measured against the level before it.
    let blocks = block_alerts(metrics);
    let block_spans: Vec<(i64, Option<i64>)> = blocks
        .iter()
        .filter(|a| a.kind == detect::AlertKind::BlockSuspected)
        .map(|a| (a.start_ts, a.end_ts))
        .collect();
    let mut alerts: Vec<Alert> = Vec::new();
    // Each surge metric's series and the detector's per-window baseline, for the alignment's
    // pre-event ratio and significance.
    let mut baselines: Vec<(&str, Series, Vec<f64>)> = Vec::new();
    let active = series(metrics, "active_hosts");
    let share_floor = active.as_ref().map_or(MIN_HOSTS_FOR_SHARE, |a| {
        let mut v: Vec<f64> = a.values.iter().copied().filter(|x| *x > 0.0).collect();
        let median = detect::baseline::median(&mut v).unwrap_or(0.0);
        (median * SHARE_HOSTS_FRACTION).max(MIN_HOSTS_FOR_SHARE)
    });
    for name in SURGE_METRICS {
        if let Some(mut s) = series(metrics, name) {
            if let (true, Some(active)) = (name.ends_with("_share"), &active) {
                let (start, step) = (s.start_ts_nanos, s.step_nanos);
                for (i, v) in s.values.iter_mut().enumerate() {
                    let ts = start.saturating_add(step.saturating_mul(i as i64));
                    let hosts = active
                        .index_of(ts)
                        .and_then(|j| active.values.get(j))
                        .copied()
                        .unwrap_or(0.0);
                    if hosts.is_nan() || hosts < share_floor {
                        *v = f64::NAN;
                    }
                }
            }
            let floors = match (name.ends_with("_share"), &active) {
                (true, Some(active)) => Some(share_floors(&s, active)),
                _ => None,
            };
            let context = detect::DetectContext {
                events: &block_spans,
                min_abs_delta: floors.as_deref(),
            };
            let detection = detect::detect_in_context(&s, name, &metric_config(name), &context);
            alerts.extend(detection.alerts);
            baselines.push((name, s, detection.expected));
        }
    }
    alerts.extend(blocks);
    alerts.sort_by_key(|a| (a.start_ts, a.metric.clone()));

    let mut events: Vec<BlockEvent> = detect::builtin_events();
    events.extend(extra_events.iter().cloned());
    if let (Some(first), Some(last)) = (
        summary
            .first_ts
            .or(metrics.first().map(|m| m.start_ts_nanos)),
        summary.last_ts,
    ) {
        // Events that began in the analysed span or shortly before it: an open-ended block that
        // began years earlier explains no change inside this capture.
        events.retain(|e| {
            e.start_ts <= last && e.start_ts >= first.saturating_sub(EVENT_LOOKBACK_NANOS)
        });
    } else {
        events.clear();
    }
    // Blocks found in this capture are events too: surges line up with them as with the
    // calendar's (a block alert is not aligned with the event it is itself).
    events.extend(
        alerts
            .iter()
            .filter(|a| a.kind == detect::AlertKind::BlockSuspected)
            .map(detected_block_event),
    );
    let mut report = detect::align(&events, &alerts, &detect::AlignConfig::default());
    report.alignments.retain(|al| {
        !(al.event.source == DETECTED_SOURCE
            && matches!(
                al.alert.kind,
                detect::AlertKind::BlockSuspected | detect::AlertKind::Outage
            ))
    });
    report.alerts_without_events = alerts
        .iter()
        .filter(|a| !report.alignments.iter().any(|al| al.alert == **a))
        .cloned()
        .collect();
    for (name, s, expected) in &baselines {
        detect::align::annotate(&mut report, name, s, expected);
    }

    let doc = json!({
        "schema_version": detect::ALERTS_SCHEMA_VERSION,
        "alerts": alerts,
        "events": events,
        "alignments": report.alignments,
        "events_without_alerts": report.events_without_alerts,
        "alerts_without_events": report.alerts_without_events,
    });
    let path = out.join("alerts.json");
    crate::atomic_file::write_bytes_atomically(
        &path,
        (serde_json::to_string_pretty(&doc)? + "\n").as_bytes(),
    )
    .with_context(|| format!("writing {}", path.display()))?;

    Ok(Detections {
        events: events
            .iter()
            .map(|e| EventRow {
                name: e.label(),
                country: e.country.clone(),
                platform: e.platform.clone(),
                start_ts: e.start_ts,
                end_ts: e.end_ts,
                method: e.method.clone(),
                source: e.source.clone(),
                note: e.note.clone(),
                vpn_demand: e.vpn_demand.as_ref().map(Into::into),
            })
            .collect(),
        alerts: alerts
            .iter()
            .map(|a| AlertRow {
                kind: format!("{:?}", a.kind),
                metric: a.metric.clone(),
                start_ts: a.start_ts,
                end_ts: a.end_ts,
                peak_ts: a.peak_ts,
                detected_ts: Some(a.detected_ts),
                magnitude: a.magnitude,
                score: a.score,
                evidence: a.evidence.clone(),
            })
            .collect(),
        alignments: report
            .alignments
            .iter()
            .map(|al| AlignmentRow {
                event_index: events.iter().position(|e| *e == al.event),
                event_name: al.event.label(),
                alert_index: alerts.iter().position(|a| *a == al.alert),
                lag_seconds: al.lag_nanos as f64 / 1e9,
                score: al.score,
                magnitude: Some(al.magnitude),
                pre_event_ratio: al.pre_event_ratio,
                published_peak_ratio: al.published_peak_ratio,
                significance: al.significance,
            })
            .collect(),
    })
}

/// Most alignment lines shown in the terminal (the rest are in alerts.json and the report).
const MAX_ALIGNMENT_LINES: usize = 12;

/// Terminal lines for the alignments that have a measured pre-event ratio or a published
/// VPN-demand peak, so the two can be read side by side (both are peak / baseline ratios; the
/// published one's measurer and baseline are in `alerts.json` under `event.vpn_demand`).
pub fn alignment_lines(rows: &[AlignmentRow], alerts: &[AlertRow]) -> Vec<String> {
    let ratio = |r: Option<f64>| r.map_or_else(|| "–".to_string(), |r| format!("{r:.2}×"));
    let metric = |r: &AlignmentRow| {
        r.alert_index
            .and_then(|i| alerts.get(i))
            .map_or("", |a| a.metric.as_str())
    };
    // One line per event and metric: the alignment closest to the event (several alerts of
    // one metric around one event say the same thing on the terminal; alerts.json has all).
    let mut shown: Vec<&AlignmentRow> = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.pre_event_ratio.is_some() || r.published_peak_ratio.is_some())
    {
        let same = shown
            .iter()
            .position(|s| s.event_name == r.event_name && metric(s) == metric(r));
        match same {
            Some(i) if r.lag_seconds.abs() < shown[i].lag_seconds.abs() => shown[i] = r,
            Some(_) => {}
            None => shown.push(r),
        }
    }
    let mut lines: Vec<String> = shown
        .iter()
        .take(MAX_ALIGNMENT_LINES)
        .map(|r| {
            let what = match metric(r) {
                "" => String::new(),
                m => format!(" {m}"),
            };
            format!(
                "  aligned    {}:{what} lag {:+.1} h, measured pre-event ratio {}, published VPN demand {}",
                r.event_name,
                r.lag_seconds / 3600.0,
                ratio(r.pre_event_ratio),
                ratio(r.published_peak_ratio)
            )
        })
        .collect();
    if shown.len() > MAX_ALIGNMENT_LINES {
        lines.push(format!(
            "             ... and {} more in alerts.json",
            shown.len() - MAX_ALIGNMENT_LINES
        ));
    }
    lines
}

#[cfg(test)]
mod alignment_line_tests {
    use super::*;

    #[test]
    fn lines_show_measured_and_published_ratios() {
        let row = |pre: Option<f64>, published: Option<f64>| AlignmentRow {
            event_name: "PK x 2024-02-17T17:00:00Z".into(),
            lag_seconds: 5400.0,
            pre_event_ratio: pre,
            published_peak_ratio: published,
            ..AlignmentRow::default()
        };
        let lines = alignment_lines(&[row(Some(3.4), Some(2.31)), row(None, None)], &[]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("PK x 2024-02-17T17:00:00Z"),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("lag +1.5 h"), "{}", lines[0]);
        assert!(lines[0].contains("pre-event ratio 3.40×"), "{}", lines[0]);
        assert!(
            lines[0].contains("published VPN demand 2.31×"),
            "{}",
            lines[0]
        );
        // Twenty alerts on twenty metrics: twelve lines and a count of the rest.
        let alerts: Vec<AlertRow> = (0..20)
            .map(|i| AlertRow {
                metric: format!("metric_{i}"),
                ..AlertRow::default()
            })
            .collect();
        let many: Vec<AlignmentRow> = (0..20)
            .map(|i| AlignmentRow {
                alert_index: Some(i),
                ..row(None, Some(2.0))
            })
            .collect();
        let lines = alignment_lines(&many, &alerts);
        assert_eq!(lines.len(), MAX_ALIGNMENT_LINES + 1);
        assert!(lines[MAX_ALIGNMENT_LINES].contains("8 more"));
        assert!(lines[0].contains("measured pre-event ratio –"));
        assert!(lines[0].contains(": metric_0 lag"), "{}", lines[0]);
        // Several alerts of one metric around one event: one line, the closest to the event.
        let same_metric: Vec<AlignmentRow> = [7200.0, -1800.0, 3600.0]
            .iter()
            .map(|&lag| AlignmentRow {
                alert_index: Some(0),
                lag_seconds: lag,
                ..row(Some(2.0), None)
            })
            .collect();
        let lines = alignment_lines(&same_metric, &alerts);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("lag -0.5 h"), "{}", lines[0]);
    }
}

#[cfg(test)]
mod share_tests {
    use super::*;

    /// Two hosts over the window's active hosts; no floor where the count is unknown and
    /// nothing counts where nobody was active.
    #[test]
    fn share_floors_are_two_hosts_of_each_window() {
        let step = 3_600_000_000_000;
        let active = Series {
            start_ts_nanos: step,
            step_nanos: step,
            values: vec![12.0, 40.0, f64::NAN, 0.0],
        };
        let share = Series {
            start_ts_nanos: 0,
            step_nanos: step,
            values: vec![0.0; 6],
        };
        let floors = share_floors(&share, &active);
        assert_eq!(floors.len(), 6);
        assert!(floors[0].is_nan(), "before the host counts: {floors:?}");
        assert!((floors[1] - 2.0 / 12.0).abs() < 1e-12);
        assert!((floors[2] - 0.05).abs() < 1e-12);
        assert!(floors[3].is_nan());
        assert!(floors[4].is_infinite());
        assert!(floors[5].is_nan(), "after the host counts: {floors:?}");
    }

    /// One VPN host among twelve at night (8 points of share) does not alarm a share series;
    /// the same night with five VPN hosts does.
    #[test]
    fn a_share_alarm_needs_two_hosts_in_its_windows() {
        let step = 3_600_000_000_000;
        let n = 60;
        let active = Series {
            start_ts_nanos: 0,
            step_nanos: step,
            values: (0..n).map(|i| if i >= 40 { 12.0 } else { 50.0 }).collect(),
        };
        let share = |vpn_at_night: f64| Series {
            start_ts_nanos: 0,
            step_nanos: step,
            values: (0..n)
                .map(|i| if i >= 40 { vpn_at_night / 12.0 } else { 0.0 })
                .collect(),
        };
        let name = "circumvention_host_share";
        let run = |s: &Series| {
            let floors = share_floors(s, &active);
            let context = detect::DetectContext {
                events: &[],
                min_abs_delta: Some(&floors),
            };
            detect::detect_in_context(s, name, &metric_config(name), &context).alerts
        };
        assert!(run(&share(1.0)).is_empty(), "{:?}", run(&share(1.0)));
        assert!(!run(&share(5.0)).is_empty());
        // Without the per-window floor one host among twelve alarms: the floor is what
        // silences it.
        let plain = detect::detect(&share(1.0), name, &metric_config(name));
        assert!(!plain.alerts.is_empty());
    }
}

#[cfg(test)]
mod block_event_tests {
    use super::*;

    const STEP: i64 = 3_600_000_000_000;

    fn metric(name: &str, values: Vec<f64>) -> MetricSeries {
        MetricSeries {
            metric: name.to_string(),
            start_ts_nanos: 1_708_000_000 * 1_000_000_000,
            step_nanos: STEP,
            values,
        }
    }

    /// Pooled series of X (15 attempts a window, blocked from window 200) and YouTube (60, fine),
    /// controls fine; with `per_platform`, their own columns too.
    fn metrics(per_platform: bool) -> Vec<MetricSeries> {
        let n = 300;
        let x_ok: Vec<f64> = (0..n).map(|i| if i >= 200 { 0.0 } else { 15.0 }).collect();
        let x_nxdomain: Vec<f64> = x_ok.iter().map(|ok| 15.0 - ok).collect();
        let mut m = vec![
            metric("platform_attempts", vec![75.0; n]),
            metric(
                "platform_success_ratio",
                x_ok.iter().map(|ok| (ok + 60.0) / 75.0).collect(),
            ),
            metric("platform_dns_failure", x_nxdomain.clone()),
            metric("control_attempts", vec![20.0; n]),
            metric("control_success_ratio", vec![1.0; n]),
        ];
        if per_platform {
            m.extend([
                metric("platform_x_attempts", vec![15.0; n]),
                metric(
                    "platform_x_success_ratio",
                    x_ok.iter().map(|ok| ok / 15.0).collect(),
                ),
                metric("platform_x_dns_failure", x_nxdomain),
                metric("platform_youtube_attempts", vec![60.0; n]),
                metric("platform_youtube_success_ratio", vec![1.0; n]),
            ]);
        }
        m
    }

    #[test]
    fn a_detected_block_names_its_platform_in_the_alert_and_the_event() {
        let alerts = block_alerts(&metrics(true));
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].kind, detect::AlertKind::BlockSuspected);
        assert_eq!(alerts[0].metric, "platform_x_success_ratio");
        let event = detected_block_event(&alerts[0]);
        assert_eq!(event.platform, "x");
        assert_eq!(event.country, "XX");
        assert_eq!(event.source, DETECTED_SOURCE);
        // Its label says it was detected rather than showing the unknown country's code.
        assert!(
            event.label().starts_with("detected x "),
            "{}",
            event.label()
        );
        assert!(
            event.method.contains("x success ratio fell"),
            "{}",
            event.method
        );
        assert!(event.method.contains("dns_failure"), "{}", event.method);
    }

    #[test]
    fn series_without_per_platform_columns_are_judged_pooled_as_before() {
        let alerts = block_alerts(&metrics(false));
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].metric, "platform_success_ratio");
        assert_eq!(detected_block_event(&alerts[0]).platform, "platforms");
        assert!(block_alerts(&[]).is_empty());
    }
}
