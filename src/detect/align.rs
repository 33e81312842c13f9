//! Alignment: how detected alerts line up with calendar events.
//!
//! Every alert whose onset lies in `[event start - before, event start + after]` (defaults
//! −24 h … +72 h) is paired with the event. Each pair gets a score in `[0, 1]`:
//! `score = lag_factor x magnitude_factor`, where
//! - `lag = alert.start_ts - event.start_ts`; `lag_factor` is 1 at lag 0, falls linearly to 0.5
//!   at `good_lag` (48 h), then to 0 at `after`; an alert *before* the reported start gets half
//!   credit at most, falling to 0 at `-before` (a surge cannot precede its cause, but published
//!   start times are often only a date);
//! - `magnitude_factor = c / (1 + c)` with `c = |ln(magnitude)|`, symmetric for rises (3.4x:
//!   0.55) and drops (0.05x: 0.75); 0.5 when the magnitude is not positive.
//!
//! Events with no alert and alerts with no event are both reported. [`annotate`] adds, from the
//! series, the ratio of the peak to the mean of the 28 days before the event (the convention of
//! published VPN-demand figures) and how often a deviation that large occurs elsewhere; each
//! pair also carries the event's published VPN-demand peak as a ratio, to set beside it.

use serde::{Deserialize, Serialize};

use super::calendar::BlockEvent;
use super::{Alert, AlertKind, Series, ALERTS_SCHEMA_VERSION};

const HOUR: i64 = 3_600_000_000_000;

/// Alignment window and lag scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlignConfig {
    /// How long before an event's start an alert onset may lie (ns).
    pub before_nanos: i64,
    /// How long after an event's start an alert onset may lie (ns).
    pub after_nanos: i64,
    /// Lags in `0..=good_lag` score highest (ns).
    pub good_lag_nanos: i64,
}

impl Default for AlignConfig {
    fn default() -> Self {
        AlignConfig {
            before_nanos: 24 * HOUR,
            after_nanos: 72 * HOUR,
            good_lag_nanos: 48 * HOUR,
        }
    }
}

/// One event paired with one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alignment {
    /// The calendar event.
    pub event: BlockEvent,
    /// The alert.
    pub alert: Alert,
    /// `alert.start_ts - event.start_ts` (ns; negative = alert first).
    pub lag_nanos: i64,
    /// The alert's magnitude (peak ratio to its baseline).
    pub magnitude: f64,
    /// Alert duration (ns), `None` while open.
    pub duration_nanos: Option<i64>,
    /// Peak over the mean of the 28 days (or what exists) before the event ([`annotate`]).
    pub pre_event_ratio: Option<f64>,
    /// The VPN-demand peak published for the event, as a ratio (`+131 %` is 2.31; its
    /// measurer and baseline are in `event.vpn_demand`).
    #[serde(default)]
    pub published_peak_ratio: Option<f64>,
    /// Share of other windows whose ratio to baseline is at least as extreme ([`annotate`]).
    pub significance: Option<f64>,
    /// `lag_factor x magnitude_factor` in `[0, 1]` (module docs).
    pub score: f64,
}

/// Everything [`align`] found, ready for `alerts.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignmentReport {
    /// [`ALERTS_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Pairs, by event start then descending score.
    pub alignments: Vec<Alignment>,
    /// Events no alert lined up with.
    pub events_without_alerts: Vec<BlockEvent>,
    /// Alerts that lined up with no event.
    pub alerts_without_events: Vec<Alert>,
}

/// Pairs alerts with events (module docs).
pub fn align(events: &[BlockEvent], alerts: &[Alert], cfg: &AlignConfig) -> AlignmentReport {
    let mut alignments = Vec::new();
    let mut alert_used = vec![false; alerts.len()];
    let mut events_without_alerts = Vec::new();
    for event in events {
        let mut any = false;
        for (j, alert) in alerts.iter().enumerate() {
            let lag = alert.start_ts.saturating_sub(event.start_ts);
            if lag < cfg.before_nanos.saturating_neg() || lag > cfg.after_nanos {
                continue;
            }
            any = true;
            if let Some(u) = alert_used.get_mut(j) {
                *u = true;
            }
            let score = lag_factor(lag, cfg) * magnitude_factor(alert.magnitude);
            alignments.push(Alignment {
                event: event.clone(),
                alert: alert.clone(),
                lag_nanos: lag,
                magnitude: alert.magnitude,
                duration_nanos: alert.end_ts.map(|e| e.saturating_sub(alert.start_ts)),
                pre_event_ratio: None,
                published_peak_ratio: event.vpn_demand.as_ref().and_then(|d| d.peak_ratio()),
                significance: None,
                score,
            });
        }
        if !any {
            events_without_alerts.push(event.clone());
        }
    }
    alignments.sort_by(|a, b| {
        a.event
            .start_ts
            .cmp(&b.event.start_ts)
            .then(b.score.total_cmp(&a.score))
    });
    let alerts_without_events = alerts
        .iter()
        .zip(&alert_used)
        .filter(|(_, used)| !**used)
        .map(|(a, _)| a.clone())
        .collect();
    AlignmentReport {
        schema_version: ALERTS_SCHEMA_VERSION,
        alignments,
        events_without_alerts,
        alerts_without_events,
    }
}

/// Lag credit in `[0, 1]` (module docs).
pub fn lag_factor(lag: i64, cfg: &AlignConfig) -> f64 {
    let good = cfg.good_lag_nanos.max(1) as f64;
    let after = (cfg.after_nanos as f64).max(good);
    let before = cfg.before_nanos.max(1) as f64;
    let lag = lag as f64;
    let f = if lag < 0.0 {
        0.5 * (1.0 + lag / before)
    } else if lag <= good {
        1.0 - 0.5 * lag / good
    } else if after > good {
        0.5 * (after - lag) / (after - good)
    } else {
        0.0
    };
    f.clamp(0.0, 1.0)
}

/// Magnitude credit in `[0, 1)` (module docs).
pub fn magnitude_factor(magnitude: f64) -> f64 {
    if !(magnitude.is_finite() && magnitude > 0.0) {
        return 0.5;
    }
    let c = magnitude.ln().abs();
    c / (1.0 + c)
}

/// Fills `pre_event_ratio` and `significance` for the alignments of `metric`, from its series
/// and the per-window baseline the detector returned (`Detection::expected`).
pub fn annotate(report: &mut AlignmentReport, metric: &str, series: &Series, expected: &[f64]) {
    const LOOKBACK: i64 = 28 * 24 * HOUR;
    for al in report
        .alignments
        .iter_mut()
        .filter(|a| a.alert.metric == metric)
    {
        let peak = series
            .index_of(al.alert.peak_ts)
            .and_then(|i| series.values.get(i))
            .copied();
        let from = al.event.start_ts.saturating_sub(LOOKBACK);
        let (sum, n) = series
            .values
            .iter()
            .enumerate()
            .filter(|(i, v)| v.is_finite() && (from..al.event.start_ts).contains(&series.ts(*i)))
            .fold((0.0, 0usize), |(s, n), (_, v)| (s + v, n + 1));
        al.pre_event_ratio = match peak {
            Some(p) if n > 0 && p.is_finite() && (sum / n as f64).abs() > 1e-12 => {
                Some(p / (sum / n as f64))
            }
            _ => None,
        };
        // How often is a window elsewhere (outside this alert) at least as far from its baseline?
        let up = !matches!(
            al.alert.kind,
            AlertKind::Dip
                | AlertKind::LevelShiftDown
                | AlertKind::BlockSuspected
                | AlertKind::Outage
        );
        let (start, end) = (al.alert.start_ts, al.alert.end_ts.unwrap_or(i64::MAX));
        let (mut hits, mut total) = (0usize, 0usize);
        for (i, (&v, &e)) in series.values.iter().zip(expected).enumerate() {
            let ts = series.ts(i);
            if !(v.is_finite() && e.is_finite()) || (start..end).contains(&ts) || e.abs() < 1e-12 {
                continue;
            }
            total += 1;
            let r = v / e;
            if (up && r >= al.magnitude) || (!up && r <= al.magnitude) {
                hits += 1;
            }
        }
        al.significance = (total > 0).then(|| hits as f64 / total as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::calendar::parse_timestamp;

    fn event(start: &str) -> BlockEvent {
        BlockEvent {
            country: "PK".into(),
            platform: "x".into(),
            start_ts: parse_timestamp(start).unwrap(),
            end_ts: None,
            method: "block".into(),
            source: "https://example.org".into(),
            note: String::new(),
            vpn_demand: None,
        }
    }

    fn alert(start: &str, magnitude: f64) -> Alert {
        let ts = parse_timestamp(start).unwrap();
        Alert {
            kind: AlertKind::LevelShiftUp,
            metric: "vpn_host_share".into(),
            start_ts: ts,
            end_ts: None,
            peak_ts: ts,
            detected_ts: ts,
            magnitude,
            score: 2.0,
            evidence: vec![],
        }
    }

    #[test]
    fn pairs_unmatched_and_scores() {
        let events = [event("2024-02-17T17:00Z"), event("2023-05-09T15:00Z")];
        let alerts = [
            alert("2024-02-17T23:00Z", 3.4),  // 6 h after: good
            alert("2024-02-19T17:00Z", 3.4),  // 48 h after: half lag credit
            alert("2024-02-17T11:00Z", 3.4),  // 6 h before: small credit
            alert("2024-03-01T00:00Z", 10.0), // unrelated
        ];
        let r = align(&events, &alerts, &AlignConfig::default());
        assert_eq!(r.alignments.len(), 3);
        assert_eq!(r.events_without_alerts, vec![events[1].clone()]);
        assert_eq!(r.alerts_without_events, vec![alerts[3].clone()]);
        // Ordered by score: 6 h after > 48 h after ~ 6 h before.
        assert_eq!(r.alignments[0].lag_nanos, 6 * HOUR);
        assert!(r.alignments[0].score > r.alignments[1].score);
        let m = magnitude_factor(3.4);
        assert!((r.alignments[0].score - m * (1.0 - 0.5 * 6.0 / 48.0)).abs() < 1e-9);
        let behind = r.alignments.iter().find(|a| a.lag_nanos < 0).unwrap();
        assert!((behind.score - m * 0.5 * 0.75).abs() < 1e-9);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"schema_version\":1"));
    }

    #[test]
    fn factors() {
        let cfg = AlignConfig::default();
        assert_eq!(lag_factor(0, &cfg), 1.0);
        assert_eq!(lag_factor(48 * HOUR, &cfg), 0.5);
        assert_eq!(lag_factor(72 * HOUR, &cfg), 0.0);
        assert_eq!(lag_factor(-24 * HOUR, &cfg), 0.0);
        assert_eq!(lag_factor(i64::MIN, &cfg), 0.0);
        assert_eq!(lag_factor(i64::MAX, &cfg), 0.0);
        assert_eq!(magnitude_factor(1.0), 0.0);
        assert!((magnitude_factor(0.5) - magnitude_factor(2.0)).abs() < 1e-12);
        assert!(magnitude_factor(10.0) > magnitude_factor(3.0));
        assert_eq!(magnitude_factor(0.0), 0.5);
        assert_eq!(magnitude_factor(f64::NAN), 0.5);
        // Bigger is better at equal lag.
        let e = [event("2024-02-17T17:00Z")];
        let r = align(
            &e,
            &[
                alert("2024-02-18T00:00Z", 1.5),
                alert("2024-02-18T00:00Z", 4.0),
            ],
            &cfg,
        );
        assert_eq!(r.alignments[0].magnitude, 4.0);
    }

    #[test]
    fn annotate_uses_pre_event_mean_and_counts_rarity() {
        let step = HOUR;
        let start = parse_timestamp("2024-02-10").unwrap();
        let mut values = vec![10.0; 24 * 10];
        for v in values.iter_mut().skip(24 * 7 + 17) {
            *v = 34.0;
        }
        let series = Series {
            start_ts_nanos: start,
            step_nanos: step,
            values,
        };
        let expected = vec![10.0; series.values.len()];
        let mut a = alert("2024-02-17T17:00Z", 3.4);
        a.peak_ts = series.ts(24 * 7 + 20);
        let mut r = align(&[event("2024-02-17T17:00Z")], &[a], &AlignConfig::default());
        annotate(&mut r, "vpn_host_share", &series, &expected);
        let al = &r.alignments[0];
        assert!((al.pre_event_ratio.unwrap() - 3.4).abs() < 1e-9);
        assert_eq!(
            al.significance,
            Some(0.0),
            "nothing outside the (open) alert is that large"
        );
        annotate(&mut r, "other_metric", &series, &[]);
    }

    #[test]
    fn alignments_carry_the_published_demand_ratio() {
        let mut e = event("2024-02-17T17:00Z");
        let a = [alert("2024-02-18T00:00Z", 2.0)];
        let r = align(std::slice::from_ref(&e), &a, &AlignConfig::default());
        assert_eq!(r.alignments[0].published_peak_ratio, None);
        e.vpn_demand = Some(crate::detect::VpnDemand {
            peak_percent: Some(131.0),
            text: "+131% on 18 Feb".into(),
            measured_by: "Top10VPN".into(),
            baseline: "average".into(),
            source: "https://example.org/d".into(),
        });
        let r = align(&[e], &a, &AlignConfig::default());
        let ratio = r.alignments[0].published_peak_ratio.unwrap();
        assert!((ratio - 2.31).abs() < 1e-12, "{ratio}");
        let json = serde_json::to_value(&r.alignments[0]).unwrap();
        assert_eq!(json["published_peak_ratio"].as_f64(), Some(ratio));
        assert_eq!(json["event"]["vpn_demand"]["measured_by"], "Top10VPN");
    }
}
