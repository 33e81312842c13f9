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
            alerts.extend(detect::detect(&s, name, &metric_config(name)).alerts);
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
    let report = detect::align(&events, &alerts, &detect::AlignConfig::default());

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
