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
    cfg
}

/// `source` of the events made from blocks detected in the capture itself.
pub const DETECTED_SOURCE: &str = "tunnelwatch: detected in this capture";

/// A detected block as a calendar event (country unknown: `XX`, the ISO 3166 code for
/// user-assigned use), with the dominant failure kind as its method.
fn detected_block_event(a: &Alert) -> BlockEvent {
    let failure = a
        .evidence
        .iter()
        .find(|(k, _)| k == "dominant_failure")
        .map_or("unknown", |(_, v)| v.as_str());
    BlockEvent {
        country: "XX".to_string(),
        platform: "platforms".to_string(),
        start_ts: a.start_ts,
        end_ts: a.end_ts,
        method: format!("detected: platform success ratio fell, dominant failure {failure}"),
        source: DETECTED_SOURCE.to_string(),
        note: format!("alert on {} (magnitude {:.2})", a.metric, a.magnitude),
    }
}

fn series(metrics: &[MetricSeries], name: &str) -> Option<Series> {
    metrics.iter().find(|m| m.metric == name).map(|m| Series {
        start_ts_nanos: m.start_ts_nanos,
        step_nanos: m.step_nanos,
        values: m.values.clone(),
    })
}

/// Runs the detectors over the per-window metrics and aligns alerts with calendar events
/// (built-in plus `extra_events`) that overlap the analysed time span.
pub fn run(
    metrics: &[MetricSeries],
    summary: &RunSummary,
    extra_events: &[BlockEvent],
    out: &Path,
) -> Result<Detections> {
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
            let detection = detect::detect(&s, name, &metric_config(name));
            alerts.extend(detection.alerts);
            baselines.push((name, s, detection.expected));
        }
    }
    if let (Some(platform), Some(control)) = (
        series(metrics, "platform_success_ratio"),
        series(metrics, "control_success_ratio"),
    ) {
        let attempts = series(metrics, "platform_attempts");
        let control_attempts = series(metrics, "control_attempts");
        let failure_series: Vec<(&str, Series)> = crate::stats::FAILURE_KINDS
            .iter()
            .filter_map(|k| {
                series(metrics, &format!("platform_{}", k.name())).map(|s| (k.name(), s))
            })
            .collect();
        let failures: Vec<(&str, &Series)> = failure_series.iter().map(|(n, s)| (*n, s)).collect();
        let input = detect::reachability::ReachabilityInput {
            platform_ratio: &platform,
            control_ratio: &control,
            platform_attempts: attempts.as_ref(),
            control_attempts: control_attempts.as_ref(),
            failures: &failures,
        };
        alerts.extend(detect::detect_blocks(
            &input,
            "platform_success_ratio",
            &detect::BlockConfig::default(),
        ));
    }
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
                significance: al.significance,
            })
            .collect(),
    })
}
