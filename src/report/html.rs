//! The HTML report: one self-contained `report.html` (inline CSS, charts as inline SVG, no
//! script, no network fetches) built from a [`ReportData`], which is saved beside it as
//! `report_data.json` so `tunnelwatch report DIR` can rebuild the page later without the
//! captures.
//!
//! Contract: [`ReportData`] holds owned, plain data only (no types of other stages), and
//! serialises to JSON and back (non-finite numbers become `null` and read back as NaN).
//! [`render_html`] never panics on any `ReportData` (including hand-edited JSON) and escapes
//! every string that came from the data: host names from captures, evidence, file paths.
//!
//! Structure (what tests and the browser check rely on): one `<section id=...>` per part, ids in
//! [`SECTION_IDS`]; every chart is an `<svg id="chart-..." class="chart" data-series="...">`
//! (see [`figures`]); block events are `class="event-band"` rectangles; alert rows are
//! `<tr id="alert-N">` whose numeric cells carry the exact input value in `data-value`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use super::charts::{
    self, escape, fmt_utc, BarChart, Measure, Plot, PlotKind, Span, TimeChart, ValueFormat,
};
use crate::atomic_file::write_bytes_atomically;
use crate::detect::{BlockConfig, PlatformSeries, Series, VpnDemand};
use crate::fingerprint::Family;
use crate::flow::FlowRecord;
use crate::pipeline::{FileStatus, RunSummary};
use crate::stats::{
    host_of, parse_platform_column, platform_column, FlowColumns, MetricSeries, StatsConfig,
    CIRCUMVENTION_FAMILIES, FAILURE_KINDS,
};

/// Version of the `report_data.json` shape; bump on any incompatible change.
pub const REPORT_DATA_SCHEMA_VERSION: u32 = 1;

/// Section ids of the page, in order.
pub const SECTION_IDS: [&str; 8] = [
    "analysed",
    "protocol-mix",
    "vpn-use",
    "reachability",
    "adoption",
    "alerts",
    "examples",
    "top-servers",
];

/// Per-family circumvention host-count series, in [`CIRCUMVENTION_FAMILIES`] order.
pub const FAMILY_HOST_SERIES: [&str; 5] = [
    "vpn_hosts",
    "proxy_hosts",
    "tor_hosts",
    "obfuscated_hosts",
    "tunnel_hosts",
];
/// Per-family share of active hosts (derived when charting), in [`CIRCUMVENTION_FAMILIES`] order.
pub const FAMILY_SHARE_SERIES: [&str; 5] = [
    "vpn_share",
    "proxy_share",
    "tor_share",
    "obfuscated_share",
    "tunnel_share",
];
/// Platform failure kinds counted per window (flows), as in the stats `hosts` table.
pub const FAILURE_SERIES: [&str; 4] = [
    "platform_dns_failure",
    "platform_reset_after_syn",
    "platform_reset_after_client_data",
    "platform_no_reply",
];

/// Example flows kept per protocol.
pub const EXAMPLES_PER_PROTOCOL: usize = 3;
/// Protocols with examples, at most.
pub const MAX_EXAMPLE_PROTOCOLS: usize = 80;
/// Rows of the top-servers table.
pub const TOP_SERVERS: usize = 25;
/// Rows of the protocol-mix bar chart (the table lists all).
const MIX_CHART_ROWS: usize = 20;
/// More windows than this are merged (the window is widened by a whole factor).
pub const MAX_WINDOWS: usize = 200_000;

const FAMILY_COLORS: [&str; 5] = [
    charts::COLOR_VPN,
    charts::COLOR_PROXY,
    charts::COLOR_TOR,
    charts::COLOR_OBFUSCATED,
    charts::COLOR_TUNNEL,
];

/// Everything the report shows, owned and serialisable (`report_data.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportData {
    pub schema_version: u32,
    pub tool_version: String,
    /// Input files in the order read.
    pub inputs: Vec<InputFile>,
    /// First and last decoded packet (UTC ns).
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    pub packets_read: u64,
    pub packets_in_flows: u64,
    pub packets_skipped: u64,
    pub skipped: Vec<SkipRow>,
    /// Packets the run's `-f` filter left out, and the filter.
    pub packets_filtered: u64,
    pub filter: Option<String>,
    pub flows: u64,
    pub flows_evicted: u64,
    pub flows_idle_expired: u64,
    pub flows_closed: u64,
    pub peak_live_flows: u64,
    /// By flows, descending.
    pub protocol_mix: Vec<ProtocolRow>,
    pub series: WindowSeries,
    pub events: Vec<EventRow>,
    pub alerts: Vec<AlertRow>,
    pub alignments: Vec<AlignmentRow>,
    pub examples: Vec<ExampleFlow>,
    pub top_servers: Vec<ServerRow>,
}

impl Default for ReportData {
    fn default() -> Self {
        ReportData {
            schema_version: REPORT_DATA_SCHEMA_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            inputs: Vec::new(),
            first_ts: None,
            last_ts: None,
            packets_read: 0,
            packets_in_flows: 0,
            packets_skipped: 0,
            skipped: Vec::new(),
            packets_filtered: 0,
            filter: None,
            flows: 0,
            flows_evicted: 0,
            flows_idle_expired: 0,
            flows_closed: 0,
            peak_live_flows: 0,
            protocol_mix: Vec::new(),
            series: WindowSeries::default(),
            events: Vec::new(),
            alerts: Vec::new(),
            alignments: Vec::new(),
            examples: Vec::new(),
            top_servers: Vec::new(),
        }
    }
}

/// One input capture.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InputFile {
    pub path: String,
    /// `pcap`, `pcapng`, or `None` when unreadable.
    pub format: Option<String>,
    pub packets: u64,
    pub bytes: u64,
    /// `complete`, `partial` or `failed`.
    pub status: String,
    pub message: Option<String>,
}

/// Packets skipped for one reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SkipRow {
    pub reason: String,
    pub packets: u64,
}

/// Flows of one (protocol, family) pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProtocolRow {
    pub protocol: String,
    pub family: String,
    pub flows: u64,
    /// Distinct monitored hosts (see `stats::host_of`).
    pub hosts: u64,
    /// IP bytes, both directions.
    pub bytes: u64,
}

/// Per-window values on a regular grid: window `i` starts at `timestamps[i]` and lasts
/// `step_nanos`. Every column has one value per timestamp; NaN = undefined (e.g. a ratio
/// without attempts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowSeries {
    pub step_nanos: i64,
    pub timestamps: Vec<i64>,
    pub columns: Vec<NamedValues>,
}

/// One named column of [`WindowSeries`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamedValues {
    pub name: String,
    #[serde(deserialize_with = "vec_f64_or_nan")]
    pub values: Vec<f64>,
}

impl WindowSeries {
    /// The column named `name`.
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.values.as_slice())
    }

    /// The column named `name`, or NaN for every window.
    fn values_or_nan(&self, name: &str) -> Vec<f64> {
        self.get(name)
            .map(<[f64]>::to_vec)
            .unwrap_or_else(|| vec![f64::NAN; self.timestamps.len()])
    }

    fn set(&mut self, name: &str, values: Vec<f64>) {
        match self.columns.iter_mut().find(|c| c.name == name) {
            Some(c) => c.values = values,
            None => self.columns.push(NamedValues {
                name: name.to_string(),
                values,
            }),
        }
    }
}

/// A block event from the calendar (or the user's file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventRow {
    /// Short label, e.g. `PK x 2024-02-17T17:00:00Z`.
    pub name: String,
    pub country: String,
    pub platform: String,
    pub start_ts: i64,
    /// `None` when open or unknown.
    pub end_ts: Option<i64>,
    pub method: String,
    /// Source of the facts (URL or citation).
    pub source: String,
    pub note: String,
    /// The rise in VPN demand published at the time, when known.
    pub vpn_demand: Option<PublishedDemand>,
}

/// A published VPN-demand figure of an event (the calendar's `demand_*` fields), as published:
/// each measurer has its own baseline, so only the figures whose baseline matches the
/// pre-event ratio's compare with it directly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishedDemand {
    /// Largest published increase in percent (`131.0` = +131 %); `None` when not a number.
    pub peak_percent: Option<f64>,
    /// The figure as published.
    pub text: String,
    /// Who measured it.
    pub measured_by: String,
    /// What the increase is relative to, as published.
    pub baseline: String,
    /// Where it was published (URL).
    pub source: String,
}

impl From<&VpnDemand> for PublishedDemand {
    fn from(d: &VpnDemand) -> Self {
        PublishedDemand {
            peak_percent: d.peak_percent,
            text: d.text.clone(),
            measured_by: d.measured_by.clone(),
            baseline: d.baseline.clone(),
            source: d.source.clone(),
        }
    }
}

/// A detected alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertRow {
    /// e.g. `LevelShiftUp`, `Spike`, `BlockSuspected`.
    pub kind: String,
    pub metric: String,
    pub start_ts: i64,
    /// Exclusive end; `None` while open at the end of the series.
    pub end_ts: Option<i64>,
    pub peak_ts: i64,
    /// When a streaming detector could first have raised it.
    pub detected_ts: Option<i64>,
    /// Peak over baseline.
    #[serde(deserialize_with = "f64_or_nan")]
    pub magnitude: f64,
    /// Strength relative to the alarm threshold (>= 1 alarmed).
    #[serde(deserialize_with = "f64_or_nan")]
    pub score: f64,
    /// Facts behind the alert, name -> value.
    pub evidence: Vec<(String, String)>,
}

impl Default for AlertRow {
    fn default() -> Self {
        AlertRow {
            kind: String::new(),
            metric: String::new(),
            start_ts: 0,
            end_ts: None,
            peak_ts: 0,
            detected_ts: None,
            magnitude: f64::NAN,
            score: f64::NAN,
            evidence: Vec::new(),
        }
    }
}

/// An alert lined up with a calendar event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlignmentRow {
    /// Index into [`ReportData::events`], when the event is there.
    pub event_index: Option<usize>,
    /// The event's label (shown even without an index).
    pub event_name: String,
    /// Index into [`ReportData::alerts`].
    pub alert_index: Option<usize>,
    /// Alert start minus event start (negative: the alert came first).
    #[serde(deserialize_with = "f64_or_nan")]
    pub lag_seconds: f64,
    /// Alignment score in [0, 1].
    #[serde(deserialize_with = "f64_or_nan")]
    pub score: f64,
    pub magnitude: Option<f64>,
    pub pre_event_ratio: Option<f64>,
    /// The event's published VPN-demand peak as a ratio (`+131 %` is 2.31), when known.
    pub published_peak_ratio: Option<f64>,
    pub significance: Option<f64>,
}

impl Default for AlignmentRow {
    fn default() -> Self {
        AlignmentRow {
            event_index: None,
            event_name: String::new(),
            alert_index: None,
            lag_seconds: f64::NAN,
            score: f64::NAN,
            magnitude: None,
            pre_event_ratio: None,
            published_peak_ratio: None,
            significance: None,
        }
    }
}

/// One example flow of a protocol.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExampleFlow {
    pub id: u64,
    pub first_ts: i64,
    pub protocol: String,
    pub family: String,
    pub application: Option<String>,
    pub provider: Option<String>,
    pub transport: String,
    /// `ip:port` (`[ip]:port` for IPv6); monitored hosts anonymised when configured.
    pub client: String,
    pub server: String,
    pub confidence: Option<String>,
    pub outcome: String,
    pub packets: u64,
    pub bytes: u64,
    /// `spec: fact=value, ...; ...` as in the flows table.
    pub evidence: String,
}

/// A server reached with circumvention protocols.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerRow {
    pub server_ip: String,
    pub server_port: u16,
    pub protocol: String,
    pub family: String,
    /// Distinct client addresses.
    pub clients: u64,
    pub flows: u64,
    pub bytes: u64,
}

/// Detector output handed to [`ReportData::from_run`] as plain rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detections {
    pub events: Vec<EventRow>,
    pub alerts: Vec<AlertRow>,
    pub alignments: Vec<AlignmentRow>,
}

fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn vec_f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let v: Vec<Option<f64>> = Vec::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}

impl ReportData {
    /// Builds the report data of one run: totals from `summary`; protocol mix and top servers
    /// from `tallies` (of every flow); examples from `examples` (every flow, or the candidates
    /// kept of them); per-window series from `columns` (the stats stage's reduction of the same
    /// flows), with `metrics` (the stats stage's series, if any) overriding the same-named
    /// columns so charts show what the detector saw.
    pub fn from_run(
        summary: &RunSummary,
        tallies: &FlowTallies,
        examples: &[FlowRecord],
        columns: &FlowColumns,
        metrics: &[MetricSeries],
        config: &StatsConfig,
        detections: Detections,
    ) -> ReportData {
        let mut data = ReportData::from_summary(summary);
        data.protocol_mix = tallies.protocol_mix.rows();
        data.series = window_series_from_columns(columns, metrics, window_nanos(config));
        data.examples = example_flows(examples, config);
        data.top_servers = tallies.servers.rows(config);
        data.events = detections.events;
        data.alerts = detections.alerts;
        data.alignments = detections.alignments;
        data
    }

    /// Only the run totals (inputs, time span, packets, skips, flow counters).
    pub fn from_summary(summary: &RunSummary) -> ReportData {
        let inputs = summary
            .files
            .iter()
            .map(|f| {
                let (status, message) = match &f.status {
                    FileStatus::Complete => ("complete", None),
                    FileStatus::Partial(m) => ("partial", Some(m.clone())),
                    FileStatus::Failed(m) => ("failed", Some(m.clone())),
                };
                InputFile {
                    path: f.path.display().to_string(),
                    format: f.format.map(|x| format!("{x:?}").to_lowercase()),
                    packets: f.packets,
                    bytes: f.bytes,
                    status: status.to_string(),
                    message,
                }
            })
            .collect();
        let c = &summary.flow_counters;
        ReportData {
            inputs,
            first_ts: summary.first_ts,
            last_ts: summary.last_ts,
            packets_read: summary.packets_read,
            packets_in_flows: c.packets,
            packets_skipped: summary.skipped.total(),
            skipped: summary
                .skipped
                .nonzero()
                .map(|(reason, packets)| SkipRow {
                    reason: reason.to_string(),
                    packets,
                })
                .collect(),
            packets_filtered: summary.packets_filtered,
            filter: summary.filter.clone(),
            flows: summary.flows,
            flows_evicted: c.evicted,
            flows_idle_expired: c.idle_expired,
            flows_closed: c.closed,
            peak_live_flows: c.peak_live,
            ..ReportData::default()
        }
    }

    /// Pretty JSON (`report_data.json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_string())
    }

    /// Parses `report_data.json`; refuses a newer schema version.
    pub fn from_json(text: &str) -> io::Result<ReportData> {
        let data: ReportData = serde_json::from_str(text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if data.schema_version > REPORT_DATA_SCHEMA_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("report data schema {} is newer than this tool's ({REPORT_DATA_SCHEMA_VERSION})", data.schema_version),
            ));
        }
        Ok(data)
    }

    /// Writes `report_data.json` (through a temporary file).
    pub fn write_json(&self, path: &Path) -> io::Result<()> {
        write_bytes_atomically(path, self.to_json().as_bytes())
    }

    /// Reads `report_data.json`.
    pub fn read_json(path: &Path) -> io::Result<ReportData> {
        ReportData::from_json(&std::fs::read_to_string(path)?)
    }
}

/// Writes `report.html` for `data` (through a temporary file).
pub fn write_html(data: &ReportData, path: &Path) -> io::Result<()> {
    write_bytes_atomically(path, render_html(data).as_bytes())
}

/// `ip:port`, with brackets for IPv6.
fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// The address as shown: anonymised when it is a monitored host and anonymisation is on.
fn shown_ip(ip: IpAddr, is_host: bool, config: &StatsConfig) -> IpAddr {
    match &config.anonymize {
        Some(a) if is_host || config.home_net.iter().any(|c| c.contains(ip)) => a.anonymize(ip),
        _ => ip,
    }
}

/// The report's running totals of a run's flows, added a flow at a time, for runs that never
/// hold all their flows at once.
#[derive(Debug, Default)]
pub struct FlowTallies {
    pub protocol_mix: ProtocolMixTally,
    pub servers: ServerTally,
}

impl FlowTallies {
    pub fn add(&mut self, r: &FlowRecord, config: &StatsConfig) {
        self.protocol_mix.add(r, config);
        self.servers.add(r);
    }

    /// The tallies of `records`.
    pub fn of(records: &[FlowRecord], config: &StatsConfig) -> FlowTallies {
        let mut tallies = FlowTallies::default();
        records.iter().for_each(|r| tallies.add(r, config));
        tallies
    }
}

/// Flows, distinct hosts and bytes per (protocol, family), by flows descending: the running
/// totals, for runs that never hold all their flows at once
/// (a live capture adds each window's flows and forgets them). Memory: one host set per
/// protocol, bounded by the hosts.
#[derive(Debug, Default)]
pub struct ProtocolMixTally {
    groups: HashMap<(&'static str, Family), (u64, HashSet<IpAddr>, u64)>,
}

impl ProtocolMixTally {
    pub fn add(&mut self, r: &FlowRecord, config: &StatsConfig) {
        let g = self
            .groups
            .entry((r.label.protocol, r.label.family))
            .or_default();
        g.0 += 1;
        g.1.insert(host_of(r, &config.home_net));
        g.2 = g.2.saturating_add(r.bytes[0].saturating_add(r.bytes[1]));
    }

    pub fn rows(&self) -> Vec<ProtocolRow> {
        let mut rows: Vec<ProtocolRow> = self
            .groups
            .iter()
            .map(|((protocol, family), (flows, hosts, bytes))| ProtocolRow {
                protocol: protocol.to_string(),
                family: family.name().to_string(),
                flows: *flows,
                hosts: hosts.len() as u64,
                bytes: *bytes,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.flows
                .cmp(&a.flows)
                .then_with(|| a.protocol.cmp(&b.protocol))
                .then_with(|| a.family.cmp(&b.family))
        });
        rows
    }
}

fn window_nanos(config: &StatsConfig) -> i64 {
    i64::from(config.window_secs.max(1)) * 1_000_000_000
}

/// Per-window series (definitions of the stats `series` table) from flows reduced to
/// [`FlowColumns`] with window `step_nanos`, with `metrics` overriding same-named columns when
/// their step matches, plus `cumulative_adopters`.
pub fn window_series_from_columns(
    cols: &FlowColumns,
    metrics: &[MetricSeries],
    step_nanos: i64,
) -> WindowSeries {
    let base_step = step_nanos.max(1);
    // Grid bounds over flows and same-step metric series.
    let mut bounds: Option<(i64, i64)> = None;
    let mut extend =
        |ts: i64| bounds = Some(bounds.map_or((ts, ts), |(a, b)| (a.min(ts), b.max(ts))));
    // The metric series cover the stretch of windows that carries the data (stats skips years of
    // nothing between merged captures); chart that stretch, and all flows only without metrics.
    let metrics_on_grid = metrics
        .iter()
        .any(|m| m.step_nanos == base_step && !m.values.is_empty());
    if !metrics_on_grid {
        for &ts in &cols.window_start {
            extend(ts);
        }
    }
    for m in metrics
        .iter()
        .filter(|m| m.step_nanos == base_step && !m.values.is_empty())
    {
        extend(m.start_ts_nanos);
        let last = i64::try_from(m.values.len() - 1).unwrap_or(i64::MAX);
        extend(
            m.start_ts_nanos
                .saturating_add(last.saturating_mul(base_step)),
        );
    }
    let Some((lo, hi)) = bounds else {
        return WindowSeries {
            step_nanos: base_step,
            ..WindowSeries::default()
        };
    };
    let span = i128::from(hi) - i128::from(lo);
    let mut step = base_step;
    let mut first = lo;
    let n_base = span / i128::from(base_step) + 1;
    if n_base > MAX_WINDOWS as i128 {
        let factor = (n_base + MAX_WINDOWS as i128 - 1) / MAX_WINDOWS as i128;
        step = i64::try_from(i128::from(base_step) * factor).unwrap_or(i64::MAX);
        first = lo.div_euclid(step).saturating_mul(step);
    }
    let n = usize::try_from((i128::from(hi) - i128::from(first)) / i128::from(step) + 1)
        .unwrap_or(1)
        .clamp(1, MAX_WINDOWS + 1);
    let index = |ts: i64| -> Option<usize> {
        let d = i128::from(ts) - i128::from(first);
        if d < 0 {
            return None;
        }
        usize::try_from(d / i128::from(step))
            .ok()
            .filter(|i| *i < n)
    };

    // Bits per (window, host): 0 active, 1 circumvention, 2.. families.
    let mut host_ids: HashMap<&str, u32> = HashMap::new();
    let mut flags: HashMap<(usize, u32), u8> = HashMap::new();
    let mut adopted: HashMap<u32, usize> = HashMap::new();
    let zeros = || vec![0.0f64; n];
    let (mut bytes, mut circ_bytes) = (zeros(), zeros());
    let (mut p_att, mut p_ok, mut c_att, mut c_ok) = (zeros(), zeros(), zeros(), zeros());
    let mut failures: [Vec<f64>; 4] = [zeros(), zeros(), zeros(), zeros()];
    // Attempts and successes of each platform (the stats `platform_<name>_*` columns).
    let mut per_platform: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for i in 0..cols.len() {
        let (Some(&ws), Some(host)) = (cols.window_start.get(i), cols.host.get(i)) else {
            continue;
        };
        let Some(w) = index(ws) else { continue };
        let next_id = host_ids.len() as u32;
        let id = *host_ids.entry(host.as_str()).or_insert(next_id);
        let circ = cols.circumvention.get(i).copied().unwrap_or(false);
        let mut bits = 1u8;
        if circ {
            bits |= 2;
            let e = adopted.entry(id).or_insert(w);
            *e = (*e).min(w);
        }
        let family = cols.family.get(i).copied().unwrap_or("");
        if let Some(f) = CIRCUMVENTION_FAMILIES
            .iter()
            .position(|f| f.name() == family)
        {
            bits |= 4 << f;
        }
        *flags.entry((w, id)).or_insert(0) |= bits;
        let b = cols.bytes.get(i).copied().unwrap_or(0) as f64;
        bytes[w] += b;
        if circ {
            circ_bytes[w] += b;
        }
        // A row may stand for several flows of one group (`stats::FlowGroups`).
        let n = cols.flows.get(i).copied().unwrap_or(1) as f64;
        if let Some(Some(platform)) = cols.platform.get(i) {
            let control = cols.control.get(i).copied().unwrap_or(false);
            let result = cols.result.get(i).copied().unwrap_or("");
            let success = result == "success";
            if control {
                c_att[w] += n;
                c_ok[w] += if success { n } else { 0.0 };
            } else {
                p_att[w] += n;
                p_ok[w] += if success { n } else { 0.0 };
                let (att, ok) = per_platform
                    .entry(platform.as_str())
                    .or_insert_with(|| (zeros(), zeros()));
                att[w] += n;
                ok[w] += if success { n } else { 0.0 };
                let kinds = [
                    "dns_failure",
                    "reset_after_syn",
                    "reset_after_client_data",
                    "no_reply",
                ];
                if let Some(k) = kinds.iter().position(|k| *k == result) {
                    failures[k][w] += n;
                }
            }
        }
    }
    let (mut active, mut circ_hosts) = (zeros(), zeros());
    let mut fam_hosts: [Vec<f64>; 5] = [zeros(), zeros(), zeros(), zeros(), zeros()];
    for (&(w, _), &bits) in &flags {
        active[w] += 1.0;
        if bits & 2 != 0 {
            circ_hosts[w] += 1.0;
        }
        for (f, col) in fam_hosts.iter_mut().enumerate() {
            if bits & (4 << f) != 0 {
                col[w] += 1.0;
            }
        }
    }
    let mut new_adopters = zeros();
    for &w in adopted.values() {
        new_adopters[w] += 1.0;
    }
    let ratio = |num: &[f64], den: &[f64]| -> Vec<f64> {
        num.iter()
            .zip(den)
            .map(|(a, b)| if *b > 0.0 { a / b } else { f64::NAN })
            .collect()
    };

    let timestamps: Vec<i64> = (0..n)
        .map(|i| first.saturating_add(step.saturating_mul(i as i64)))
        .collect();
    let mut s = WindowSeries {
        step_nanos: step,
        timestamps,
        columns: Vec::new(),
    };
    s.set("active_hosts", active.clone());
    s.set("circumvention_hosts", circ_hosts.clone());
    for (name, col) in FAMILY_HOST_SERIES.iter().zip(fam_hosts) {
        s.set(name, col);
    }
    s.set("circumvention_host_share", ratio(&circ_hosts, &active));
    s.set("new_adopters", new_adopters);
    s.set("bytes", bytes.clone());
    s.set("circumvention_bytes", circ_bytes.clone());
    s.set("circumvention_bytes_share", ratio(&circ_bytes, &bytes));
    s.set("platform_attempts", p_att.clone());
    s.set("platform_successes", p_ok.clone());
    s.set("platform_success_ratio", ratio(&p_ok, &p_att));
    for (name, col) in FAILURE_SERIES.iter().zip(failures) {
        s.set(name, col);
    }
    s.set("control_attempts", c_att.clone());
    s.set("control_successes", c_ok.clone());
    s.set("control_success_ratio", ratio(&c_ok, &c_att));
    for (platform, (att, ok)) in &per_platform {
        s.set(&platform_column(platform, "attempts"), att.clone());
        s.set(&platform_column(platform, "successes"), ok.clone());
        s.set(&platform_column(platform, "success_ratio"), ratio(ok, att));
    }

    // The stats stage's series win where they exist on the same grid.
    if step == base_step {
        for m in metrics.iter().filter(|m| m.step_nanos == step) {
            let mut col = s.values_or_nan(&m.metric);
            for (j, v) in m.values.iter().enumerate() {
                let ts = i64::try_from(j)
                    .ok()
                    .and_then(|j| j.checked_mul(step))
                    .and_then(|d| m.start_ts_nanos.checked_add(d));
                if let Some(i) = ts.and_then(index) {
                    col[i] = *v;
                }
            }
            s.set(&m.metric, col);
        }
    }
    let mut total = 0.0;
    let cumulative: Vec<f64> = s
        .values_or_nan("new_adopters")
        .iter()
        .map(|v| {
            if v.is_finite() {
                total += v;
            }
            total
        })
        .collect();
    s.set("cumulative_adopters", cumulative);
    s
}

/// Up to [`EXAMPLES_PER_PROTOCOL`] flows per labelled protocol (strongest confidence, then most
/// bytes), circumvention families first.
pub fn example_flows(records: &[FlowRecord], config: &StatsConfig) -> Vec<ExampleFlow> {
    let mut by_protocol: BTreeMap<(bool, &str), Vec<&FlowRecord>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.label.protocol != "unknown") {
        let list = by_protocol
            .entry((!r.label.family.is_circumvention(), r.label.protocol))
            .or_default();
        list.push(r);
        // Keep the best few only, so memory stays bounded by protocols x examples.
        if list.len() > EXAMPLES_PER_PROTOCOL * 4 {
            sort_examples(list);
            list.truncate(EXAMPLES_PER_PROTOCOL);
        }
    }
    let mut out = Vec::new();
    for (_, mut list) in by_protocol.into_iter().take(MAX_EXAMPLE_PROTOCOLS) {
        sort_examples(&mut list);
        for r in list.into_iter().take(EXAMPLES_PER_PROTOCOL) {
            let host = host_of(r, &config.home_net);
            out.push(ExampleFlow {
                id: r.id,
                first_ts: r.first_ts,
                protocol: r.label.protocol.to_string(),
                family: r.label.family.name().to_string(),
                application: r.label.application.map(str::to_string),
                provider: r.label.provider.map(str::to_string),
                transport: r.transport.name().into_owned(),
                client: endpoint(
                    shown_ip(r.client_ip, host == r.client_ip, config),
                    r.client_port,
                ),
                server: endpoint(
                    shown_ip(r.server_ip, host == r.server_ip, config),
                    r.server_port,
                ),
                confidence: r.label.confidence.map(|c| c.name().to_string()),
                outcome: r.outcome.name().to_string(),
                packets: r.packets[0].saturating_add(r.packets[1]),
                bytes: r.bytes[0].saturating_add(r.bytes[1]),
                evidence: r.label.evidence_text(),
            });
        }
    }
    out
}

/// Shrinks `pool` to the flows [`example_flows`] could still pick: the best
/// [`EXAMPLES_PER_PROTOCOL`] of each labelled protocol, by its own order. Picking from the
/// shrunk pool gives the same examples as from everything, so a live capture keeps a few flows
/// per protocol instead of all of them.
pub fn keep_example_candidates(pool: &mut Vec<FlowRecord>) {
    let mut order: Vec<usize> = (0..pool.len())
        .filter(|&i| pool[i].label.protocol != "unknown")
        .collect();
    order.sort_by(|&a, &b| example_order(&pool[a], &pool[b]));
    let mut per_protocol: HashMap<&str, usize> = HashMap::new();
    let mut keep = vec![false; pool.len()];
    for i in order {
        let n = per_protocol.entry(pool[i].label.protocol).or_insert(0);
        *n += 1;
        keep[i] = *n <= EXAMPLES_PER_PROTOCOL;
    }
    // `retain` visits every element once, in order.
    let mut next = keep.into_iter();
    pool.retain(|_| next.next().unwrap_or(false));
}

fn sort_examples(list: &mut [&FlowRecord]) {
    list.sort_by(|a, b| example_order(a, b));
}

/// Strongest confidence first, then most bytes, then the earlier in the output order (the
/// lower id once flows are numbered; also for flows not numbered yet, which an `analyze` run
/// picks from as they finish).
pub fn example_order(a: &FlowRecord, b: &FlowRecord) -> std::cmp::Ordering {
    b.label
        .confidence
        .cmp(&a.label.confidence)
        .then_with(|| {
            (b.bytes[0].saturating_add(b.bytes[1])).cmp(&a.bytes[0].saturating_add(a.bytes[1]))
        })
        .then_with(|| crate::pipeline::flow_order_key(a).cmp(&crate::pipeline::flow_order_key(b)))
}

/// Servers reached with circumvention protocols, by distinct clients (then flows), top
/// [`TOP_SERVERS`]: the running totals (see [`ProtocolMixTally`]). Memory: one client
/// set per circumvention server, bounded by the servers and hosts seen.
#[derive(Debug, Default)]
pub struct ServerTally {
    groups: HashMap<ServerKey, ServerAgg>,
}

/// Server address, port and protocol.
type ServerKey = (IpAddr, u16, &'static str);
/// Distinct clients, flows, bytes and family of one server.
type ServerAgg = (HashSet<IpAddr>, u64, u64, Family);

impl ServerTally {
    pub fn add(&mut self, r: &FlowRecord) {
        if !r.label.family.is_circumvention() {
            return;
        }
        let g = self
            .groups
            .entry((r.server_ip, r.server_port, r.label.protocol))
            .or_insert_with(|| (HashSet::new(), 0, 0, r.label.family));
        g.0.insert(r.client_ip);
        g.1 += 1;
        g.2 = g.2.saturating_add(r.bytes[0].saturating_add(r.bytes[1]));
    }

    pub fn rows(&self, config: &StatsConfig) -> Vec<ServerRow> {
        let mut rows: Vec<(IpAddr, ServerRow)> = self
            .groups
            .iter()
            .map(|((ip, port, protocol), (clients, flows, bytes, family))| {
                let row = ServerRow {
                    server_ip: shown_ip(*ip, false, config).to_string(),
                    server_port: *port,
                    protocol: protocol.to_string(),
                    family: family.name().to_string(),
                    clients: clients.len() as u64,
                    flows: *flows,
                    bytes: *bytes,
                };
                (*ip, row)
            })
            .collect();
        rows.sort_by(|(ia, a), (ib, b)| {
            b.clients
                .cmp(&a.clients)
                .then_with(|| b.flows.cmp(&a.flows))
                .then_with(|| b.bytes.cmp(&a.bytes))
                .then_with(|| ia.cmp(ib))
                .then_with(|| a.server_port.cmp(&b.server_port))
                .then_with(|| a.protocol.cmp(&b.protocol))
        });
        rows.into_iter().take(TOP_SERVERS).map(|(_, r)| r).collect()
    }
}

/// One chart of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Element id and file stem, e.g. `chart-vpn-share`.
    pub id: String,
    /// The `data-series` names.
    pub series: Vec<String>,
    /// The `<svg>` element.
    pub svg: String,
}

/// Which chart an alert belongs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlertGroup {
    Vpn,
    Reachability,
    Adoption,
}

fn alert_group(a: &AlertRow) -> AlertGroup {
    let kind: String = a
        .kind
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    let metric = a.metric.to_ascii_lowercase();
    if kind == "blocksuspected"
        || kind == "outage"
        || metric.contains("platform")
        || metric.contains("control")
    {
        AlertGroup::Reachability
    } else if metric.contains("adopt") {
        AlertGroup::Adoption
    } else {
        AlertGroup::Vpn
    }
}

fn alert_spans(data: &ReportData, group: AlertGroup) -> Vec<Span> {
    data.alerts
        .iter()
        .enumerate()
        .filter(|(_, a)| alert_group(a) == group)
        .map(|(i, a)| Span {
            start_ts: a.start_ts,
            end_ts: a.end_ts,
            label: format!(
                "alert {i}: {} on {} from {} (magnitude {})",
                a.kind,
                a.metric,
                fmt_utc(a.start_ts),
                fmt_num(a.magnitude)
            ),
        })
        .collect()
}

/// Most platforms drawn on the per-platform reachability chart (one Okabe-Ito colour each).
pub const MAX_CHART_PLATFORMS: usize = charts::OKABE_ITO.len();

/// Which platforms the per-platform reachability chart shows, by the block detector's own rule
/// ([`PlatformSeries::qualifies`] with the default [`BlockConfig`]: enough windows of enough
/// attempts to judge a platform on its own).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChartedPlatforms {
    /// Qualifying platforms, most attempts first, at most [`MAX_CHART_PLATFORMS`].
    pub shown: Vec<String>,
    /// Qualifying platforms beyond [`MAX_CHART_PLATFORMS`].
    pub omitted: Vec<String>,
    /// Platforms with attempts, too few to qualify.
    pub too_few: Vec<String>,
    /// Platforms with a column but no attempt at all.
    pub no_attempts: Vec<String>,
}

/// Sorts the series' platforms (`platform_<name>_attempts` columns) by [`ChartedPlatforms`].
pub fn charted_platforms(series: &WindowSeries) -> ChartedPlatforms {
    let cfg = BlockConfig::default();
    let mut qualifying: Vec<(f64, String)> = Vec::new();
    let mut out = ChartedPlatforms::default();
    for col in &series.columns {
        let Some((platform, "attempts")) = parse_platform_column(&col.name) else {
            continue;
        };
        let total: f64 = col.values.iter().filter(|v| v.is_finite()).sum();
        if total <= 0.0 {
            out.no_attempts.push(platform.to_string());
            continue;
        }
        let as_series = |values: Vec<f64>| Series {
            start_ts_nanos: series.timestamps.first().copied().unwrap_or(0),
            step_nanos: series.step_nanos.max(1),
            values,
        };
        let metric = platform_column(platform, "success_ratio");
        let ratio = as_series(series.values_or_nan(&metric));
        let attempts = as_series(col.values.clone());
        let judged = PlatformSeries {
            platform,
            metric: &metric,
            ratio: &ratio,
            attempts: Some(&attempts),
            failures: &[],
        };
        if judged.qualifies(&cfg) {
            qualifying.push((total, platform.to_string()));
        } else {
            out.too_few.push(platform.to_string());
        }
    }
    qualifying.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    for (i, (_, name)) in qualifying.into_iter().enumerate() {
        if i < MAX_CHART_PLATFORMS {
            out.shown.push(name);
        } else {
            out.omitted.push(name);
        }
    }
    out
}

/// The platform a reachability alert is about: its metric's (`platform_x_success_ratio`) or
/// its `platform` evidence; `None` for the pooled ratio.
fn alert_platform(a: &AlertRow) -> Option<&str> {
    parse_platform_column(&a.metric)
        .map(|(p, _)| p)
        .or_else(|| {
            a.evidence
                .iter()
                .find(|(k, _)| k == "platform")
                .map(|(_, v)| v.as_str())
        })
}

/// The per-platform reachability chart (`chart-reachability-platforms`): the shown platforms'
/// success ratios, the control sites' ratio, and the block and outage alerts per platform.
fn platform_reachability_chart(data: &ReportData, events: &[Span]) -> (Vec<String>, String) {
    let s = &data.series;
    let picked = charted_platforms(s);
    let columns: Vec<(String, Vec<f64>, Vec<f64>)> = picked
        .shown
        .iter()
        .map(|p| {
            let metric = platform_column(p, "success_ratio");
            let ratio = s.values_or_nan(&metric);
            let attempts = s.values_or_nan(&platform_column(p, "attempts"));
            (metric, ratio, attempts)
        })
        .collect();
    let platforms: Vec<charts::RatioLine<'_>> = picked
        .shown
        .iter()
        .zip(&columns)
        .zip(charts::OKABE_ITO)
        .map(
            |((name, (metric, ratio, attempts)), color)| charts::RatioLine {
                name,
                series: metric,
                ratio,
                attempts,
                color,
            },
        )
        .collect();
    let control_ratio = s.values_or_nan("control_success_ratio");
    let control_attempts = s.get("control_attempts").unwrap_or(&[]);
    let control = charts::RatioLine {
        name: "control sites",
        series: "control_success_ratio",
        ratio: &control_ratio,
        attempts: control_attempts,
        color: charts::COLOR_CONTROL,
    };
    let alerts: Vec<charts::PlatformAlert> = data
        .alerts
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            let kind = a.kind.to_ascii_lowercase();
            kind == "blocksuspected" || kind == "outage"
        })
        .filter_map(|(i, a)| {
            let platform = match alert_platform(a) {
                Some(p) => Some(picked.shown.iter().position(|s| s == p)?),
                None if a.metric == "platform_success_ratio" => None,
                None => return None,
            };
            Some(charts::PlatformAlert {
                platform,
                span: Span {
                    start_ts: a.start_ts,
                    end_ts: a.end_ts,
                    label: format!(
                        "alert {i}: {} on {} from {}",
                        a.kind,
                        a.metric,
                        fmt_utc(a.start_ts)
                    ),
                },
            })
        })
        .collect();
    let chart = charts::PlatformChart {
        id: "chart-reachability-platforms",
        title: "Reachability per platform: connection success ratio vs control sites",
        timestamps: &s.timestamps,
        step_nanos: s.step_nanos,
        platforms,
        control: Some(control),
        min_attempts: BlockConfig::default().min_attempts,
        alerts: &alerts,
        events,
    };
    let svg = charts::platform_chart(&chart);
    let mut names: Vec<String> = columns.into_iter().map(|(m, _, _)| m).collect();
    names.push("control_success_ratio".to_string());
    (names, svg)
}

/// One stacked area per circumvention family plus the total as a line on top.
fn stacked_families<'a>(
    names: &'a [&'static str],
    values: &'a [Vec<f64>],
    total_name: &'static str,
    total: &'a [f64],
) -> Vec<Plot<'a>> {
    let mut plots: Vec<Plot<'a>> = names
        .iter()
        .zip(values)
        .zip(FAMILY_COLORS)
        .map(|((name, values), color)| Plot {
            name,
            values,
            color,
            kind: PlotKind::StackedArea,
        })
        .collect();
    plots.push(Plot {
        name: total_name,
        values: total,
        color: charts::COLOR_TOTAL,
        kind: PlotKind::Line,
    });
    plots
}

/// Every chart of the report, in page order: `chart-protocol-mix`, `chart-vpn-share`,
/// `chart-vpn-hosts`, `chart-reachability`, `chart-reachability-platforms`, `chart-failures`,
/// `chart-adoption`.
pub fn figures(data: &ReportData) -> Vec<Figure> {
    let mut out = Vec::new();
    let mut push = |id: &str, series: &[&str], svg: String| {
        out.push(Figure {
            id: id.to_string(),
            series: series.iter().map(|s| s.to_string()).collect(),
            svg,
        });
    };

    // Protocol mix.
    let rows: Vec<&ProtocolRow> = data.protocol_mix.iter().take(MIX_CHART_ROWS).collect();
    let categories: Vec<String> = rows
        .iter()
        .map(|r| {
            if r.family.is_empty() {
                r.protocol.clone()
            } else {
                format!("{} ({})", r.protocol, r.family)
            }
        })
        .collect();
    let flows: Vec<f64> = rows.iter().map(|r| r.flows as f64).collect();
    let hosts: Vec<f64> = rows.iter().map(|r| r.hosts as f64).collect();
    let bytes: Vec<f64> = rows.iter().map(|r| r.bytes as f64).collect();
    let mix_series = ["flows", "hosts", "bytes"];
    push(
        "chart-protocol-mix",
        &mix_series,
        charts::bar_chart(&BarChart {
            id: "chart-protocol-mix",
            title: "Protocol mix: flows, hosts and bytes",
            categories: &categories,
            measures: vec![
                Measure {
                    name: "flows",
                    values: &flows,
                    format: ValueFormat::Count,
                    color: "#4c78a8",
                },
                Measure {
                    name: "hosts",
                    values: &hosts,
                    format: ValueFormat::Count,
                    color: "#f58518",
                },
                Measure {
                    name: "bytes",
                    values: &bytes,
                    format: ValueFormat::Bytes,
                    color: "#54a24b",
                },
            ],
        }),
    );

    let s = &data.series;
    let events: Vec<Span> = data
        .events
        .iter()
        .map(|e| Span {
            start_ts: e.start_ts,
            end_ts: e.end_ts,
            label: if e.name.is_empty() {
                format!("{} {}", e.country, e.platform)
            } else {
                e.name.clone()
            },
        })
        .collect();
    let events: &[Span] = &events;
    let base = move |id: &'static str,
                     title: &'static str,
                     y_label: &'static str,
                     y_format: ValueFormat| TimeChart {
        id,
        title,
        y_label,
        y_format,
        timestamps: &s.timestamps,
        step_nanos: s.step_nanos,
        plots: Vec::new(),
        events,
        alerts: &[],
    };

    // VPN use: per-family share of active hosts, stacked, and the total share.
    let active = s.values_or_nan("active_hosts");
    let fam_shares: Vec<Vec<f64>> = FAMILY_HOST_SERIES
        .iter()
        .map(|name| {
            s.values_or_nan(name)
                .iter()
                .zip(&active)
                .map(|(h, a)| if *a > 0.0 { h / a } else { f64::NAN })
                .collect()
        })
        .collect();
    let total_share = s.values_or_nan("circumvention_host_share");
    let vpn_alerts = alert_spans(data, AlertGroup::Vpn);
    let plots = stacked_families(
        &FAMILY_SHARE_SERIES,
        &fam_shares,
        "circumvention_host_share",
        &total_share,
    );
    let names: Vec<&str> = plots.iter().map(|p| p.name).collect();
    let chart = TimeChart {
        plots,
        alerts: &vpn_alerts,
        ..base(
            "chart-vpn-share",
            "VPN use: share of active hosts, by family",
            "share of active hosts",
            ValueFormat::Ratio,
        )
    };
    push("chart-vpn-share", &names, charts::time_chart(&chart));

    let fam_hosts: Vec<Vec<f64>> = FAMILY_HOST_SERIES
        .iter()
        .map(|n| s.values_or_nan(n))
        .collect();
    let circ_hosts = s.values_or_nan("circumvention_hosts");
    let plots = stacked_families(
        &FAMILY_HOST_SERIES,
        &fam_hosts,
        "circumvention_hosts",
        &circ_hosts,
    );
    let names: Vec<&str> = plots.iter().map(|p| p.name).collect();
    let chart = TimeChart {
        plots,
        alerts: &vpn_alerts,
        ..base(
            "chart-vpn-hosts",
            "VPN use: hosts per family",
            "hosts",
            ValueFormat::Count,
        )
    };
    push("chart-vpn-hosts", &names, charts::time_chart(&chart));

    // Reachability.
    let reach_alerts = alert_spans(data, AlertGroup::Reachability);
    let platform = s.values_or_nan("platform_success_ratio");
    let control = s.values_or_nan("control_success_ratio");
    let plots = vec![
        Plot {
            name: "platform_success_ratio",
            values: &platform,
            color: charts::COLOR_PLATFORM,
            kind: PlotKind::Line,
        },
        Plot {
            name: "control_success_ratio",
            values: &control,
            color: charts::COLOR_CONTROL,
            kind: PlotKind::Line,
        },
    ];
    let names: Vec<&str> = plots.iter().map(|p| p.name).collect();
    let chart = TimeChart {
        plots,
        alerts: &reach_alerts,
        ..base(
            "chart-reachability",
            "Platform reachability: success ratio vs control sites",
            "success ratio",
            ValueFormat::Ratio,
        )
    };
    push("chart-reachability", &names, charts::time_chart(&chart));

    let (names, svg) = platform_reachability_chart(data, events);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    push("chart-reachability-platforms", &names, svg);

    let failure_values: Vec<Vec<f64>> = FAILURE_SERIES.iter().map(|n| s.values_or_nan(n)).collect();
    let failure_colors = ["#8c564b", "#e377c2", "#d62728", "#7f7f7f"];
    let plots: Vec<Plot<'_>> = FAILURE_SERIES
        .iter()
        .zip(&failure_values)
        .zip(failure_colors)
        .map(|((name, values), color)| Plot {
            name,
            values,
            color,
            kind: PlotKind::StackedBar,
        })
        .collect();
    let names: Vec<&str> = plots.iter().map(|p| p.name).collect();
    let chart = TimeChart {
        plots,
        alerts: &reach_alerts,
        ..base(
            "chart-failures",
            "Platform failures by kind",
            "failed attempts",
            ValueFormat::Count,
        )
    };
    push("chart-failures", &names, charts::time_chart(&chart));

    // Adoption.
    let adoption_alerts = alert_spans(data, AlertGroup::Adoption);
    let cumulative = s.values_or_nan("cumulative_adopters");
    let new = s.values_or_nan("new_adopters");
    let plots = vec![
        Plot {
            name: "cumulative_adopters",
            values: &cumulative,
            color: charts::COLOR_VPN,
            kind: PlotKind::StackedArea,
        },
        Plot {
            name: "new_adopters",
            values: &new,
            color: charts::COLOR_PROXY,
            kind: PlotKind::StackedBar,
        },
    ];
    let names: Vec<&str> = plots.iter().map(|p| p.name).collect();
    let chart = TimeChart {
        plots,
        alerts: &adoption_alerts,
        ..base(
            "chart-adoption",
            "Adoption: hosts that started using circumvention",
            "hosts",
            ValueFormat::Count,
        )
    };
    push("chart-adoption", &names, charts::time_chart(&chart));
    out
}

/// Writes each chart as `<id>.svg` into `dir` (created if missing); returns the paths. PNG is
/// not produced (no rasteriser is available); convert the SVGs if needed.
pub fn write_figures(data: &ReportData, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut paths = Vec::new();
    for fig in figures(data) {
        let path = dir.join(format!("{}.svg", fig.id));
        let doc = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}\n", fig.svg);
        write_bytes_atomically(&path, doc.as_bytes())?;
        paths.push(path);
    }
    Ok(paths)
}

/// A number for display: integers as such, others with 3 significant decimals; `–` if not finite.
fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "–".to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// `1234567` -> `1,234,567`.
fn fmt_int(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seconds as `+2h 05m`, `-45s`, `3d 4h`.
fn fmt_duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "–".to_string();
    }
    let sign = if secs < 0.0 { "-" } else { "" };
    let s = secs.abs().min(1e15) as u64;
    let (d, h, m, sec) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60, s % 60);
    if d > 0 {
        format!("{sign}{d}d {h}h")
    } else if h > 0 {
        format!("{sign}{h}h {m:02}m")
    } else if m > 0 {
        format!("{sign}{m}m {sec:02}s")
    } else {
        format!("{sign}{sec}s")
    }
}

/// A numeric table cell with the exact value in `data-value`.
fn num_cell(v: f64, shown: &str) -> String {
    format!(
        r#"<td class="num" data-value="{}">{}</td>"#,
        escape(&v.to_string()),
        escape(shown)
    )
}

fn ts_cell(ts: Option<i64>) -> String {
    match ts {
        Some(t) => format!(
            r#"<td class="ts" data-ts="{t}">{}</td>"#,
            escape(&fmt_utc(t))
        ),
        None => r#"<td class="ts">open</td>"#.to_string(),
    }
}

const CSS: &str = r#"
:root { color-scheme: light; }
body { font-family: Helvetica, Arial, sans-serif; color: #1a1a1a; margin: 0 auto; max-width: 960px; padding: 0 16px 48px; line-height: 1.45; }
h1 { font-size: 1.6em; margin: 24px 0 4px; }
h2 { font-size: 1.25em; border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 36px; }
h3 { font-size: 1.05em; margin: 18px 0 6px; }
nav ul { list-style: none; padding: 0; margin: 8px 0; display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 0.92em; }
a { color: #1f5fa8; }
table { border-collapse: collapse; width: 100%; font-size: 0.86em; margin: 8px 0 14px; }
th, td { border-bottom: 1px solid #e2e2e2; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.ts { white-space: nowrap; font-variant-numeric: tabular-nums; }
td.published { min-width: 13em; }
td.published .figure { white-space: nowrap; font-variant-numeric: tabular-nums; font-weight: 600; }
td.evidence, td.wrap { word-break: break-word; overflow-wrap: anywhere; }
td.evidence { min-width: 12em; font-size: 0.92em; }
td.evidence li { display: inline; }
td.evidence li + li::before { content: "; "; }
#alerts-table td.ts { white-space: normal; min-width: 6.5em; }
th.head-wrap { white-space: normal; }
a.event-name { white-space: nowrap; }
td.evidence ul { margin: 0; padding-left: 0; list-style: none; }
.muted { color: #666; }
.note { color: #555; font-size: 0.9em; }
.status-failed { color: #b00020; font-weight: 600; }
.status-partial { color: #a15c00; font-weight: 600; }
figure { margin: 12px 0 20px; }
figcaption { color: #555; font-size: 0.88em; margin-top: 4px; }
svg.chart { max-width: 100%; height: auto; display: block; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  nav { display: none; }
  section { break-inside: auto; }
  figure, tr { break-inside: avoid; page-break-inside: avoid; }
  h2 { break-after: avoid; page-break-after: avoid; }
  a { color: inherit; text-decoration: none; }
}
"#;

/// Renders the whole report as one self-contained HTML document.
pub fn render_html(data: &ReportData) -> String {
    let figures = figures(data);
    let fig = |id: &str| {
        figures
            .iter()
            .find(|f| f.id == id)
            .map_or(String::new(), |f| f.svg.clone())
    };
    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(
        h,
        "<meta name=\"generator\" content=\"tunnelwatch {}\">",
        escape(&data.tool_version)
    );
    h.push_str("<title>tunnelwatch report</title><style>");
    h.push_str(CSS);
    h.push_str("</style></head><body>\n<header><h1>tunnelwatch report</h1>");
    let span = match (data.first_ts, data.last_ts) {
        (Some(a), Some(b)) => format!("{} to {}", fmt_utc(a), fmt_utc(b)),
        _ => "no decoded packets".to_string(),
    };
    let _ = write!(
        h,
        "<p class=\"muted\">{} input file(s), {}; tunnelwatch {}, report data schema {}.</p>",
        data.inputs.len(),
        escape(&span),
        escape(&data.tool_version),
        data.schema_version
    );
    h.push_str("<nav><ul>");
    let titles = [
        "What was analysed",
        "Protocol mix",
        "VPN use over time",
        "Platform reachability",
        "Adoption",
        "Alerts and alignments",
        "Example flows",
        "Top servers",
    ];
    for (id, title) in SECTION_IDS.iter().zip(titles) {
        let _ = write!(h, "<li><a href=\"#{id}\">{title}</a></li>");
    }
    h.push_str("</ul></nav></header>\n<main>\n");

    section_analysed(&mut h, data);
    section_protocol_mix(&mut h, data, &fig("chart-protocol-mix"));
    section_vpn_use(
        &mut h,
        data,
        &fig("chart-vpn-share"),
        &fig("chart-vpn-hosts"),
    );
    section_reachability(
        &mut h,
        data,
        &fig("chart-reachability"),
        &fig("chart-reachability-platforms"),
        &fig("chart-failures"),
    );
    section_adoption(&mut h, data, &fig("chart-adoption"));
    section_alerts(&mut h, data);
    section_examples(&mut h, data);
    section_top_servers(&mut h, data);

    h.push_str("</main>\n<footer><p class=\"note\">Times are UTC. Hosts are the monitored network's own addresses. Generated offline by tunnelwatch; this file loads nothing from the network.</p></footer>\n</body></html>\n");
    h
}

fn figure(h: &mut String, svg: &str, caption: &str) {
    let _ = writeln!(
        h,
        "<figure>{svg}<figcaption>{}</figcaption></figure>",
        escape(caption)
    );
}

fn section_analysed(h: &mut String, d: &ReportData) {
    h.push_str("<section id=\"analysed\"><h2>What was analysed</h2><dl class=\"facts\">");
    let span = match (d.first_ts, d.last_ts) {
        (Some(a), Some(b)) => format!(
            "{} to {} ({})",
            fmt_utc(a),
            fmt_utc(b),
            fmt_duration((i128::from(b) - i128::from(a)) as f64 / 1e9)
        ),
        _ => "no decoded packets".to_string(),
    };
    let window = if d.series.step_nanos > 0 {
        fmt_duration(d.series.step_nanos as f64 / 1e9)
    } else {
        "–".to_string()
    };
    // With a filter, read = in flows + skipped + left out: the numbers only add up with it.
    let filter = d.filter.as_ref().map(|f| {
        (
            "Filter",
            format!("{f} ({} packets left out)", fmt_int(d.packets_filtered)),
        )
    });
    let facts = [
        ("Time span", span),
        ("Packets read", fmt_int(d.packets_read)),
        ("Packets in flows", fmt_int(d.packets_in_flows)),
        ("Packets skipped", fmt_int(d.packets_skipped)),
        (
            "Flows",
            format!(
                "{} ({} evicted at the cap, {} idle-expired, {} closed; peak {} live)",
                fmt_int(d.flows),
                fmt_int(d.flows_evicted),
                fmt_int(d.flows_idle_expired),
                fmt_int(d.flows_closed),
                fmt_int(d.peak_live_flows)
            ),
        ),
        (
            "Statistics window",
            format!("{window} ({} windows)", d.series.timestamps.len()),
        ),
    ];
    for (k, v) in facts.into_iter().chain(filter) {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(&v));
    }
    h.push_str("</dl><h3>Inputs</h3><table id=\"inputs\"><thead><tr><th>file</th><th>format</th><th>status</th><th class=\"num\">packets</th><th class=\"num\">bytes</th><th>message</th></tr></thead><tbody>");
    for f in &d.inputs {
        let class = match f.status.as_str() {
            "failed" => "status-failed",
            "partial" => "status-partial",
            _ => "status-ok",
        };
        let _ = write!(
            h,
            "<tr><td class=\"wrap\">{}</td><td>{}</td><td class=\"{class}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"wrap\">{}</td></tr>",
            escape(&f.path),
            escape(f.format.as_deref().unwrap_or("–")),
            escape(&f.status),
            fmt_int(f.packets),
            fmt_int(f.bytes),
            escape(f.message.as_deref().unwrap_or(""))
        );
    }
    if d.inputs.is_empty() {
        h.push_str("<tr><td colspan=\"6\" class=\"muted\">no inputs recorded</td></tr>");
    }
    h.push_str("</tbody></table><h3>Skipped packets by reason</h3>");
    if d.skipped.is_empty() {
        h.push_str("<p class=\"muted\">No packet was skipped.</p>");
    } else {
        h.push_str("<table id=\"skipped\"><thead><tr><th>reason</th><th class=\"num\">packets</th></tr></thead><tbody>");
        for s in &d.skipped {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
                escape(&s.reason),
                fmt_int(s.packets)
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>\n");
}

fn section_protocol_mix(h: &mut String, d: &ReportData, svg: &str) {
    h.push_str("<section id=\"protocol-mix\"><h2>Protocol mix</h2>");
    figure(h, svg, &format!("Flows, distinct hosts and bytes per protocol (top {MIX_CHART_ROWS} by flows; each panel has its own scale)."));
    h.push_str("<table id=\"protocol-table\"><thead><tr><th>protocol</th><th>family</th><th class=\"num\">flows</th><th class=\"num\">hosts</th><th class=\"num\">bytes</th></tr></thead><tbody>");
    for r in &d.protocol_mix {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&r.protocol),
            escape(&r.family),
            fmt_int(r.flows),
            fmt_int(r.hosts),
            fmt_int(r.bytes)
        );
    }
    if d.protocol_mix.is_empty() {
        h.push_str("<tr><td colspan=\"5\" class=\"muted\">no flows</td></tr>");
    }
    h.push_str("</tbody></table></section>\n");
}

fn event_note(d: &ReportData) -> String {
    if d.events.is_empty() {
        String::new()
    } else {
        " Shaded blue bands: block events from the calendar; shaded red spans: detected alerts."
            .to_string()
    }
}

fn section_vpn_use(h: &mut String, d: &ReportData, share: &str, hosts: &str) {
    h.push_str("<section id=\"vpn-use\"><h2>VPN use over time</h2>");
    figure(
        h,
        share,
        &format!(
            "Share of active hosts using each circumvention family per window (stacked areas; a host using two families counts in both) and the share using any (line).{}",
            event_note(d)
        ),
    );
    figure(h, hosts, &format!("Hosts using each circumvention family per window (stacked) and hosts using any (line).{}", event_note(d)));
    h.push_str("</section>\n");
}

fn section_reachability(
    h: &mut String,
    d: &ReportData,
    ratio: &str,
    per_platform: &str,
    failures: &str,
) {
    h.push_str("<section id=\"reachability\"><h2>Platform reachability</h2>");
    figure(
        h,
        ratio,
        &format!(
            "Share of attempts to reach the watched platforms that succeeded (all platforms pooled), against the same ratio for control sites. A platform drop while controls hold suggests a block; both dropping, an outage.{}",
            event_note(d)
        ),
    );
    figure(h, per_platform, &platform_chart_caption(d));
    figure(h, failures, "Failed platform attempts per window, by kind (DNS failure, reset after SYN, reset after client data, no reply).");
    platform_totals_table(h, d);
    h.push_str("</section>\n");
}

/// Attempts over the whole run per measured platform (most first), for all of them pooled and
/// for the control sites: successes, success ratio and failures by kind, the sums of the
/// per-window series (control sites have no failure series: `–`).
fn platform_totals_table(h: &mut String, d: &ReportData) {
    let sum = |name: &str| {
        d.series
            .get(name)
            .map(|v| v.iter().filter(|x| x.is_finite()).sum::<f64>())
    };
    let mut platforms: Vec<(f64, &str)> = d
        .series
        .columns
        .iter()
        .filter_map(|c| match parse_platform_column(&c.name) {
            Some((platform, "attempts")) => Some((sum(&c.name).unwrap_or(0.0), platform)),
            _ => None,
        })
        .filter(|(attempts, _)| *attempts > 0.0)
        .collect();
    platforms.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    h.push_str("<table id=\"platform-totals\"><thead><tr><th>attempts on</th><th class=\"num\">attempts</th><th class=\"num\">succeeded</th><th class=\"num\">success ratio</th>");
    for kind in FAILURE_KINDS {
        let _ = write!(h, "<th class=\"num\">{}</th>", escape(kind.name()));
    }
    h.push_str("</tr></thead><tbody>");
    let mut row = |label: String, prefix: &str, failures: bool| {
        let column = |field: &str| sum(&format!("{prefix}_{field}"));
        let attempts = column("attempts").unwrap_or(0.0);
        let successes = column("successes").unwrap_or(0.0);
        let ratio = if attempts > 0.0 {
            format!("{:.1} %", successes * 100.0 / attempts)
        } else {
            "–".to_string()
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{ratio}</td>",
            escape(&label),
            fmt_num(attempts),
            fmt_num(successes),
        );
        for kind in FAILURE_KINDS {
            let value = if failures {
                column(kind.name()).map_or("–".to_string(), fmt_num)
            } else {
                "–".to_string()
            };
            let _ = write!(h, "<td class=\"num\">{value}</td>");
        }
        h.push_str("</tr>");
    };
    for (_, platform) in &platforms {
        row(platform.to_string(), &format!("platform_{platform}"), true);
    }
    row("all measured platforms".to_string(), "platform", true);
    row("control sites".to_string(), "control", false);
    h.push_str("</tbody></table>");
}

/// The per-platform chart's caption: what is drawn and which platforms are not.
fn platform_chart_caption(d: &ReportData) -> String {
    let cfg = BlockConfig::default();
    let picked = charted_platforms(&d.series);
    let mut text = format!(
        "Success ratio of connection attempts per platform, one line each, for the platforms with enough attempts for the block detector to judge them on their own (at least {} attempts in at least {} windows); dashed grey: the control sites. Dotted: windows with fewer than {} attempts, which the detector leaves out. Shaded, and as a bar in the platform's lane above the plot: block and outage alerts, in the platform's colour (grey: all platforms pooled). Dashed blue lines: starts of calendar events.",
        fmt_num(cfg.min_attempts),
        cfg.min_platform_windows,
        fmt_num(cfg.min_attempts),
    );
    if picked.shown.is_empty() {
        text.push_str(" No platform had enough attempts; the pooled ratio is in the chart above.");
    }
    let lists = [
        (&picked.omitted, "beyond the first eight"),
        (&picked.too_few, "too few attempts"),
        (&picked.no_attempts, "no attempts"),
    ];
    let parts: Vec<String> = lists
        .iter()
        .filter(|(names, _)| !names.is_empty())
        .map(|(names, why)| format!("{} ({why})", names.join(", ")))
        .collect();
    if !parts.is_empty() {
        let _ = write!(text, " Not drawn: {}.", parts.join("; "));
    }
    text
}

fn section_adoption(h: &mut String, d: &ReportData, svg: &str) {
    h.push_str("<section id=\"adoption\"><h2>Adoption</h2>");
    let total = d
        .series
        .get("cumulative_adopters")
        .and_then(|v| v.iter().rev().find(|x| x.is_finite()).copied())
        .unwrap_or(0.0);
    let _ = write!(
        h,
        "<p>{} host(s) used circumvention at least once.</p>",
        escape(&fmt_num(total))
    );
    figure(h, svg, &format!("Cumulative hosts that started using circumvention (area) and new adopters per window (bars).{}", event_note(d)));
    h.push_str("</section>\n");
}

fn evidence_list(items: &[(String, String)]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut s = String::from("<ul>");
    for (k, v) in items {
        let _ = write!(s, "<li><b>{}</b>: {}</li>", escape(k), escape(v));
    }
    s.push_str("</ul>");
    s
}

fn source_cell(source: &str) -> String {
    let t = source.trim();
    if (t.starts_with("https://") || t.starts_with("http://")) && !t.contains(char::is_whitespace) {
        format!(
            "<td class=\"wrap\"><a href=\"{}\" rel=\"noreferrer noopener\">{}</a></td>",
            escape(t),
            escape(t)
        )
    } else {
        format!("<td class=\"wrap\">{}</td>", escape(source))
    }
}

fn section_alerts(h: &mut String, d: &ReportData) {
    h.push_str("<section id=\"alerts\"><h2>Alerts and alignments</h2><h3>Alerts</h3>");
    if d.alerts.is_empty() {
        h.push_str("<p class=\"muted\">No alerts were raised.</p>");
    } else {
        h.push_str("<table id=\"alerts-table\"><thead><tr><th>#</th><th>kind</th><th>metric</th><th>start</th><th>end</th><th>peak</th><th class=\"num\">magnitude</th><th class=\"num\">score</th><th>evidence</th></tr></thead><tbody>");
        for (i, a) in d.alerts.iter().enumerate() {
            let _ = write!(
                h,
                "<tr id=\"alert-{i}\" class=\"alert\"><td class=\"num\">{i}</td><td>{}</td><td>{}</td>{}{}{}{}{}<td class=\"evidence\">{}</td></tr>",
                escape(&a.kind),
                escape(&a.metric),
                ts_cell(Some(a.start_ts)),
                ts_cell(a.end_ts),
                ts_cell(Some(a.peak_ts)),
                num_cell(a.magnitude, &format!("{}×", fmt_num(a.magnitude))),
                num_cell(a.score, &fmt_num(a.score)),
                evidence_list(&a.evidence)
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("<h3>Block events</h3>");
    if d.events.is_empty() {
        h.push_str("<p class=\"muted\">No block events were given.</p>");
    } else {
        let span = match (
            d.series.timestamps.iter().min(),
            d.series.timestamps.iter().max(),
        ) {
            (Some(a), Some(b)) => Some((
                i128::from(*a),
                i128::from(*b) + i128::from(d.series.step_nanos.max(0)),
            )),
            _ => None,
        };
        h.push_str("<table id=\"events-table\"><thead><tr><th>#</th><th>event</th><th>country</th><th>platform</th><th>start</th><th>end</th><th>method</th><th>source</th></tr></thead><tbody>");
        for (i, e) in d.events.iter().enumerate() {
            let inside = span.is_some_and(|(a, b)| {
                i128::from(e.start_ts) < b && e.end_ts.is_none_or(|x| i128::from(x) >= a)
            });
            let name = if inside {
                escape(&e.name)
            } else {
                format!(
                    "{} <span class=\"muted\">(outside the analysed time span)</span>",
                    escape(&e.name)
                )
            };
            let _ = write!(
                h,
                "<tr id=\"event-{i}\"><td class=\"num\">{i}</td><td>{name}</td><td>{}</td><td>{}</td>{}{}<td>{}</td>{}</tr>",
                escape(&e.country),
                escape(&e.platform),
                ts_cell(Some(e.start_ts)),
                ts_cell(e.end_ts),
                escape(&e.method),
                source_cell(&e.source)
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("<h3>Alignments</h3>");
    if d.alignments.is_empty() {
        h.push_str("<p class=\"muted\">No alert lined up with a block event.</p>");
    } else {
        h.push_str("<table id=\"alignments-table\"><thead><tr><th>event</th><th>alert</th><th class=\"num\">lag</th><th class=\"num\">score</th><th class=\"num\">magnitude</th><th class=\"num head-wrap\">measured peak / pre-event mean</th><th>published VPN demand</th><th class=\"num\">significance</th></tr></thead><tbody>");
        for a in &d.alignments {
            let event = match a.event_index.filter(|i| *i < d.events.len()) {
                Some(i) => format!(
                    "<a class=\"event-name\" href=\"#event-{i}\">{}</a>",
                    escape(&a.event_name)
                ),
                None => escape(&a.event_name),
            };
            let alert = match a
                .alert_index
                .and_then(|i| d.alerts.get(i).map(|al| (i, al)))
            {
                Some((i, al)) => format!(
                    "<a href=\"#alert-{i}\">#{i} {} on {}</a>",
                    escape(&al.kind),
                    escape(&al.metric)
                ),
                None => "–".to_string(),
            };
            let opt = |v: Option<f64>, suffix: &str| match v {
                Some(x) => num_cell(x, &format!("{}{suffix}", fmt_num(x))),
                None => "<td class=\"num\">–</td>".to_string(),
            };
            let demand = a
                .event_index
                .and_then(|i| d.events.get(i))
                .and_then(|e| e.vpn_demand.as_ref());
            let _ = write!(
                h,
                "<tr class=\"alignment\"><td>{event}</td><td>{alert}</td>{}{}{}{}{}{}</tr>",
                num_cell(a.lag_seconds, &fmt_duration(a.lag_seconds)),
                num_cell(a.score, &fmt_num(a.score)),
                opt(a.magnitude, "×"),
                ratio_cell(a.pre_event_ratio),
                published_cell(demand, a.published_peak_ratio),
                opt(a.significance, "")
            );
        }
        h.push_str("</tbody></table>");
        h.push_str("<p class=\"note\" id=\"alignments-caption\">Measured: the aligned metric's peak over its mean in the 28 days before the event (or the part of them that was captured). Published: the measurer's own figure against its own baseline; baselines differ, and only Top10VPN's (daily demand against the average of the preceding 28 days) matches ours, so only those compare directly.</p>");
    }
    h.push_str("</section>\n");
}

/// The alignments table's published VPN-demand cell: `+131% (2.31×)` over the measurer, its
/// baseline and a link to the source; the figure as published in the tooltip. An em dash
/// when the event has no published figure.
fn published_cell(demand: Option<&PublishedDemand>, ratio: Option<f64>) -> String {
    let percent = demand
        .and_then(|x| x.peak_percent)
        .filter(|p| p.is_finite())
        .or_else(|| ratio.filter(|r| r.is_finite()).map(|r| (r - 1.0) * 100.0));
    let value = percent.map(|p| 1.0 + p / 100.0);
    let headline = match (percent, demand) {
        (Some(p), _) => format!("{}% ({})", fmt_signed(p), fmt_ratio(1.0 + p / 100.0)),
        (None, Some(x)) if !x.text.trim().is_empty() => x.text.clone(),
        _ => return "<td class=\"published\">\u{2014}</td>".to_string(),
    };
    let data_value = value.map_or(String::new(), |v| {
        format!(" data-value=\"{}\"", escape(&v.to_string()))
    });
    let Some(x) = demand else {
        return format!(
            "<td class=\"published\"{data_value}>{}</td>",
            escape(&headline)
        );
    };
    let mut who = x.measured_by.trim().to_string();
    if !x.baseline.trim().is_empty() {
        if !who.is_empty() {
            who.push_str(", ");
        }
        let _ = write!(who, "vs {}", x.baseline.trim());
    }
    let source = x.source.trim();
    let link = if (source.starts_with("https://") || source.starts_with("http://"))
        && !source.contains(char::is_whitespace)
    {
        format!(
            " <a href=\"{}\" rel=\"noreferrer noopener\">[source]</a>",
            escape(source)
        )
    } else if source.is_empty() {
        String::new()
    } else {
        format!(" [{}]", escape(source))
    };
    let detail = escape(&who);
    format!(
        "<td class=\"published\"{data_value} title=\"{}\"><span class=\"figure\">{}</span><br><span class=\"muted\">{detail}{link}</span></td>",
        escape(&x.text),
        escape(&headline)
    )
}

/// A peak-over-baseline ratio as `2.31×`, `44.4×`, `232×` (three significant figures or so).
fn fmt_ratio(r: f64) -> String {
    if !r.is_finite() {
        "–".to_string()
    } else if r.abs() >= 100.0 {
        format!("{r:.0}×")
    } else if r.abs() >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

/// A ratio cell ([`fmt_ratio`]) with the exact value in `data-value`; `–` when unknown.
fn ratio_cell(r: Option<f64>) -> String {
    match r {
        Some(x) => num_cell(x, &fmt_ratio(x)),
        None => "<td class=\"num\">–</td>".to_string(),
    }
}

/// `+131`, `-12.5`: a percentage with its sign, decimals only when needed.
fn fmt_signed(p: f64) -> String {
    let shown = if p.fract() == 0.0 && p.abs() < 1e15 {
        let digits = fmt_int(p.abs() as u64);
        if p < 0.0 {
            format!("-{digits}")
        } else {
            digits
        }
    } else {
        fmt_num(p)
    };
    if p >= 0.0 {
        format!("+{shown}")
    } else {
        shown
    }
}

fn section_examples(h: &mut String, d: &ReportData) {
    h.push_str("<section id=\"examples\"><h2>Example flows per protocol</h2>");
    if d.examples.is_empty() {
        h.push_str("<p class=\"muted\">No labelled flows.</p></section>\n");
        return;
    }
    let _ = write!(h, "<p class=\"note\">Up to {EXAMPLES_PER_PROTOCOL} flows per protocol, strongest evidence first.</p>");
    h.push_str("<table id=\"examples-table\"><thead><tr><th>protocol</th><th>family</th><th>app / provider</th><th>client</th><th>server</th><th>first seen</th><th>confidence</th><th>outcome</th><th class=\"num\">bytes</th><th>evidence</th></tr></thead><tbody>");
    for e in &d.examples {
        let app: Vec<&str> = [e.application.as_deref(), e.provider.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let _ = write!(
            h,
            "<tr class=\"example\" data-protocol=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"wrap\">{}</td><td class=\"wrap\">{} <span class=\"muted\">{}</span></td>{}<td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"evidence\">{}</td></tr>",
            escape(&e.protocol),
            escape(&e.protocol),
            escape(&e.family),
            escape(&app.join(" / ")),
            escape(&e.client),
            escape(&e.server),
            escape(&e.transport),
            ts_cell(Some(e.first_ts)),
            escape(e.confidence.as_deref().unwrap_or("–")),
            escape(&e.outcome),
            fmt_int(e.bytes),
            escape(&e.evidence)
        );
    }
    h.push_str("</tbody></table></section>\n");
}

fn section_top_servers(h: &mut String, d: &ReportData) {
    h.push_str(
        "<section id=\"top-servers\"><h2>Top servers reached with circumvention protocols</h2>",
    );
    if d.top_servers.is_empty() {
        h.push_str("<p class=\"muted\">No circumvention flows.</p></section>\n");
        return;
    }
    h.push_str("<table id=\"servers-table\"><thead><tr><th>server</th><th class=\"num\">port</th><th>protocol</th><th>family</th><th class=\"num\">clients</th><th class=\"num\">flows</th><th class=\"num\">bytes</th></tr></thead><tbody>");
    for s in &d.top_servers {
        let _ = write!(
            h,
            "<tr><td class=\"wrap\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&s.server_ip),
            s.server_port,
            escape(&s.protocol),
            escape(&s.family),
            fmt_int(s.clients),
            fmt_int(s.flows),
            fmt_int(s.bytes)
        );
    }
    h.push_str("</tbody></table></section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::driver::{Label, Match};
    use crate::fingerprint::registry::REGISTRY;
    use crate::fingerprint::{Confidence, Evidence, Verdict};
    use crate::flow::{EndReason, Outcome, Transport};
    use crate::report::charts::tests::check_balanced;
    use proptest::prelude::*;

    const T0: i64 = 1_708_189_200_000_000_000; // 2024-02-17T17:00:00Z
    const MIN: i64 = 60_000_000_000;
    const HOSTILE: &str = "<script>alert(1)</script>.evil\"'&";

    fn spec(name: &str) -> &'static crate::fingerprint::Spec {
        REGISTRY
            .iter()
            .copied()
            .find(|s| s.name == name)
            .or_else(|| REGISTRY.first().copied())
            .expect("registry is not empty")
    }

    /// A flow `client -> server` labelled `protocol` / `family`, with an SNI fact when given.
    #[allow(clippy::too_many_arguments)]
    fn flow(
        id: u64,
        ts: i64,
        client: [u8; 4],
        server: [u8; 4],
        protocol: &'static str,
        family: Family,
        sni: Option<&str>,
        outcome: Outcome,
    ) -> FlowRecord {
        let mut evidence = Evidence::default();
        if let Some(name) = sni {
            evidence.push("sni", name);
        }
        evidence.push("len", 148u64);
        let verdict = Verdict {
            confidence: Confidence::BothDirections,
            evidence,
            roles_reversed: false,
            protocol: Some(protocol),
            application: None,
            provider: None,
            obfuscated: false,
            family: Some(family),
        };
        let label = Label {
            protocol,
            family,
            confidence: Some(Confidence::BothDirections),
            matches: vec![Match {
                spec: spec(protocol),
                verdict,
            }],
            ..Label::default()
        };
        FlowRecord {
            id,
            first_ts: ts,
            last_ts: ts + 1_000_000_000,
            transport: Transport::Udp,
            ip_proto: 17,
            client_ip: IpAddr::from(client),
            client_port: 40_000,
            server_ip: IpAddr::from(server),
            server_port: 51820,
            packets: [3, 2],
            bytes: [300, 200],
            payload_bytes: [200, 100],
            tcp_flags: [0, 0],
            outcome,
            end_reason: EndReason::EndOfInput,
            label,
        }
    }

    /// 12 five-minute windows; 4 hosts browse throughout; from window 6 hosts 1-3 use
    /// WireGuard to one server and host 4 uses Tor; x.com fails from window 6, wikipedia works.
    fn records() -> Vec<FlowRecord> {
        let mut out = Vec::new();
        let mut id = 0;
        let mut add = |r: FlowRecord| {
            out.push(r);
        };
        for w in 0..12i64 {
            let ts = T0 + w * 5 * MIN + MIN;
            for h in 1..=4u8 {
                id += 1;
                add(flow(
                    id,
                    ts,
                    [10, 0, 0, h],
                    [93, 184, 216, 34],
                    "tls",
                    Family::Web,
                    Some("example.org"),
                    Outcome::Completed,
                ));
            }
            let x_outcome = if w >= 6 {
                Outcome::ResetAfterClientData
            } else {
                Outcome::Completed
            };
            id += 1;
            add(flow(
                id,
                ts,
                [10, 0, 0, 1],
                [104, 244, 42, 1],
                "tls",
                Family::Web,
                Some("x.com"),
                x_outcome,
            ));
            id += 1;
            add(flow(
                id,
                ts,
                [10, 0, 0, 2],
                [208, 80, 154, 224],
                "tls",
                Family::Web,
                Some("en.wikipedia.org"),
                Outcome::Completed,
            ));
            if w >= 6 {
                for h in 1..=3u8 {
                    id += 1;
                    add(flow(
                        id,
                        ts,
                        [10, 0, 0, h],
                        [198, 51, 100, 7],
                        "wireguard",
                        Family::Vpn,
                        None,
                        Outcome::Established,
                    ));
                }
                id += 1;
                add(flow(
                    id,
                    ts,
                    [10, 0, 0, 4],
                    [192, 0, 2, 9],
                    "tor",
                    Family::Tor,
                    Some(HOSTILE),
                    Outcome::Established,
                ));
            }
        }
        out
    }

    fn detections() -> Detections {
        Detections {
            events: vec![EventRow {
                name: "PK x 2024-02-17T17:30:00Z".into(),
                country: "PK".into(),
                platform: "x".into(),
                start_ts: T0 + 30 * MIN,
                end_ts: None,
                method: "SNI <reset>".into(),
                source: "https://example.org/report?a=1&b=2".into(),
                note: String::new(),
                vpn_demand: None,
            }],
            alerts: vec![
                AlertRow {
                    kind: "LevelShiftUp".into(),
                    metric: "circumvention_host_share".into(),
                    start_ts: T0 + 30 * MIN,
                    end_ts: None,
                    peak_ts: T0 + 40 * MIN,
                    detected_ts: Some(T0 + 35 * MIN),
                    magnitude: 3.412_345_678_9,
                    score: 2.25,
                    evidence: vec![
                        ("baseline".into(), "0.0".into()),
                        ("note".into(), HOSTILE.into()),
                    ],
                },
                AlertRow {
                    kind: "BlockSuspected".into(),
                    metric: "platform_success_ratio".into(),
                    start_ts: T0 + 30 * MIN,
                    end_ts: Some(T0 + 60 * MIN),
                    peak_ts: T0 + 30 * MIN,
                    detected_ts: None,
                    magnitude: 0.0,
                    score: 17.5,
                    evidence: vec![],
                },
            ],
            alignments: vec![AlignmentRow {
                event_index: Some(0),
                event_name: "PK x 2024-02-17T17:30:00Z".into(),
                alert_index: Some(0),
                lag_seconds: 0.0,
                score: 0.875,
                magnitude: Some(3.4),
                pre_event_ratio: None,
                published_peak_ratio: None,
                significance: Some(0.01),
            }],
        }
    }

    fn summary() -> RunSummary {
        let mut s = RunSummary::default();
        let mut f = crate::pipeline::FileReport::new(Path::new("/captures/<script>.pcap"));
        f.packets = 1234;
        f.status = FileStatus::Partial("truncated at offset 99".into());
        s.files.push(f);
        s.packets_read = 1234;
        s.flows = 123;
        s.first_ts = Some(T0);
        s.last_ts = Some(T0 + 60 * MIN);
        s.skipped.add(crate::decode::SkipReason::ALL[0]);
        s
    }

    fn window_series(
        records: &[FlowRecord],
        metrics: &[MetricSeries],
        config: &StatsConfig,
    ) -> WindowSeries {
        window_series_from_columns(
            &FlowColumns::of(records, config),
            metrics,
            window_nanos(config),
        )
    }

    fn sample() -> ReportData {
        let config = StatsConfig::default();
        let records = records();
        ReportData::from_run(
            &summary(),
            &FlowTallies::of(&records, &config),
            &records,
            &FlowColumns::of(&records, &config),
            &[],
            &config,
            detections(),
        )
    }

    /// The `<svg ...>` start tag with the given id.
    fn svg_tag<'a>(html: &'a str, id: &str) -> &'a str {
        let needle = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{id}\"");
        let start = html.find(&needle).unwrap_or_else(|| panic!("no svg {id}"));
        let end = html[start..].find('>').expect("tag ends");
        &html[start..start + end]
    }

    /// The whole `<svg>...</svg>` element with the given id.
    fn svg_element<'a>(html: &'a str, id: &str) -> &'a str {
        let tag = svg_tag(html, id);
        let start = html.find(tag).expect("found");
        let end = html[start..].find("</svg>").expect("closed");
        &html[start..start + end + 6]
    }

    #[test]
    fn series_follow_the_stats_definitions() {
        let s = window_series(&records(), &[], &StatsConfig::default());
        assert_eq!(s.timestamps.len(), 12);
        assert_eq!(s.step_nanos, 300_000_000_000);
        assert_eq!(s.timestamps[0], T0);
        let get = |n: &str| s.get(n).unwrap_or_else(|| panic!("{n}")).to_vec();
        assert_eq!(get("active_hosts"), vec![4.0; 12]);
        assert_eq!(get("vpn_hosts")[5..7], [0.0, 3.0]);
        assert_eq!(get("tor_hosts")[11], 1.0);
        assert_eq!(get("circumvention_host_share")[6], 1.0);
        assert_eq!(get("circumvention_host_share")[0], 0.0);
        assert_eq!(get("new_adopters")[6], 4.0);
        assert_eq!(
            get("cumulative_adopters"),
            [vec![0.0; 6], vec![4.0; 6]].concat()
        );
        assert_eq!(get("platform_success_ratio")[5..7], [1.0, 0.0]);
        assert_eq!(get("platform_reset_after_client_data")[6], 1.0);
        assert_eq!(get("control_success_ratio")[6], 1.0);
        assert!(
            get("circumvention_bytes_share")[0] == 0.0 && get("circumvention_bytes_share")[6] > 0.0
        );
    }

    #[test]
    fn stats_metrics_override_same_named_columns() {
        let m = MetricSeries {
            metric: "circumvention_host_share".into(),
            start_ts_nanos: T0 + 5 * 5 * MIN,
            step_nanos: 5 * MIN,
            values: vec![0.5, f64::NAN],
        };
        let extra = MetricSeries {
            metric: "something_new".into(),
            start_ts_nanos: T0,
            step_nanos: 5 * MIN,
            values: vec![7.0],
        };
        let s = window_series(&records(), &[m, extra], &StatsConfig::default());
        let share = s.get("circumvention_host_share").expect("column");
        assert_eq!(share[5], 0.5);
        assert!(share[6].is_nan());
        assert_eq!(share[0], 0.0);
        assert_eq!(s.get("something_new").expect("added")[0], 7.0);
    }

    #[test]
    fn mix_examples_and_servers() {
        let d = sample();
        let tls = d.protocol_mix.first().expect("rows");
        assert_eq!(
            (tls.protocol.as_str(), tls.flows, tls.hosts),
            ("tls", 72, 4)
        );
        let wg = d
            .protocol_mix
            .iter()
            .find(|r| r.protocol == "wireguard")
            .expect("wg");
        assert_eq!(
            (wg.flows, wg.hosts, wg.bytes, wg.family.as_str()),
            (18, 3, 18 * 500, "vpn")
        );
        assert_eq!(
            d.examples.iter().filter(|e| e.protocol == "tls").count(),
            EXAMPLES_PER_PROTOCOL
        );
        assert_eq!(
            d.examples.first().map(|e| e.family.as_str()),
            Some("tor"),
            "circumvention first"
        );
        assert!(d
            .examples
            .iter()
            .any(|e| e.protocol == "tor" && e.evidence.contains(HOSTILE)));
        let top = d.top_servers.first().expect("servers");
        assert_eq!(
            (
                top.server_ip.as_str(),
                top.server_port,
                top.protocol.as_str(),
                top.clients,
                top.flows
            ),
            ("198.51.100.7", 51820, "wireguard", 3, 18)
        );
        assert!(d.top_servers.iter().all(|s| s.family != "web"));
    }

    #[test]
    fn report_has_every_section_chart_band_and_alert_number() {
        let d = sample();
        let html = render_html(&d);
        check_balanced(&html).unwrap();
        for id in SECTION_IDS {
            assert!(
                html.contains(&format!("<section id=\"{id}\">")),
                "section {id}"
            );
        }
        let expected: [(&str, &[&str]); 7] = [
            ("chart-protocol-mix", &["flows", "hosts", "bytes"]),
            (
                "chart-vpn-share",
                &[
                    "vpn_share",
                    "proxy_share",
                    "tor_share",
                    "obfuscated_share",
                    "tunnel_share",
                    "circumvention_host_share",
                ],
            ),
            (
                "chart-vpn-hosts",
                &[
                    "vpn_hosts",
                    "proxy_hosts",
                    "tor_hosts",
                    "obfuscated_hosts",
                    "tunnel_hosts",
                    "circumvention_hosts",
                ],
            ),
            (
                "chart-reachability",
                &["platform_success_ratio", "control_success_ratio"],
            ),
            // x has one attempt a window in the sample: too few to be judged on its own.
            ("chart-reachability-platforms", &["control_success_ratio"]),
            ("chart-failures", &FAILURE_SERIES),
            ("chart-adoption", &["cumulative_adopters", "new_adopters"]),
        ];
        let figs = figures(&d);
        assert_eq!(figs.len(), expected.len());
        for ((id, series), fig) in expected.iter().zip(&figs) {
            assert_eq!(fig.id, *id);
            assert_eq!(
                fig.series,
                series.iter().map(|s| s.to_string()).collect::<Vec<_>>()
            );
            let tag = svg_tag(&html, id);
            assert!(
                tag.contains(&format!("data-series=\"{}\"", series.join(" "))),
                "{id}: {tag}"
            );
            check_balanced(svg_element(&html, id)).unwrap();
            if *id == "chart-reachability-platforms" {
                assert!(svg_element(&html, id).contains("class=\"event-marker\""));
            } else if *id != "chart-protocol-mix" {
                assert!(
                    svg_element(&html, id).contains("class=\"event-band\""),
                    "{id} has the event band"
                );
            }
        }
        assert!(svg_element(&html, "chart-vpn-share").contains("class=\"alert-span\""));
        assert!(svg_element(&html, "chart-reachability").contains("class=\"alert-span\""));
        // Alert numbers: exact in data-value.
        for (i, a) in d.alerts.iter().enumerate() {
            let start = html
                .find(&format!("<tr id=\"alert-{i}\""))
                .expect("alert row");
            let row = &html[start..start + html[start..].find("</tr>").expect("row ends")];
            for v in [a.magnitude, a.score] {
                let cell = format!("data-value=\"{v}\"");
                assert!(row.contains(&cell), "{cell} in {row}");
                let parsed: f64 = v.to_string().parse().expect("number");
                assert_eq!(parsed, v);
            }
            assert!(row.contains(&format!("data-ts=\"{}\"", a.start_ts)));
            assert!(row.contains(&escape(&a.kind)) && row.contains(&escape(&a.metric)));
        }
        assert!(
            html.contains("href=\"#alert-0\""),
            "alignment links its alert"
        );
        assert!(html.contains("href=\"https://example.org/report?a=1&amp;b=2\""));
        assert!(
            !html.contains("http://www.w3.org/2000/svg\" href") && !html.contains("<script"),
            "no script, no fetch"
        );
        assert!(
            !html.contains("src=\"http") && !html.contains("@import") && !html.contains("url(")
        );
    }

    /// The published VPN-demand figure of the PK X 2024 event as the built-in calendar has it.
    fn pk_x_demand() -> PublishedDemand {
        PublishedDemand {
            peak_percent: Some(131.0),
            text: "+131% on Sun 18 Feb 2024".into(),
            measured_by: "Top10VPN".into(),
            baseline: "average demand (as reported)".into(),
            source: "https://example.org/vpn?a=1&b=2".into(),
        }
    }

    /// The `<td class="published"...>` cells of the alignments table, in row order.
    fn published_cells(html: &str) -> Vec<&str> {
        html.split("<td class=\"published\"")
            .skip(1)
            .map(|rest| &rest[..rest.find("</td>").expect("cell ends")])
            .collect()
    }

    #[test]
    fn alignments_show_the_published_figure_or_a_dash() {
        let mut d = sample();
        d.events[0].vpn_demand = Some(pk_x_demand());
        d.events.push(EventRow {
            name: "XX x detected".into(),
            ..EventRow::default()
        });
        let first = d.alignments[0].clone();
        d.alignments[0].published_peak_ratio = Some(2.31);
        d.alignments[0].pre_event_ratio = Some(44.375);
        d.alignments.push(AlignmentRow {
            event_index: Some(1),
            event_name: "XX x detected".into(),
            ..first
        });
        let html = render_html(&d);
        check_balanced(&html).unwrap();
        let cells = published_cells(&html);
        assert_eq!(cells.len(), 2, "{cells:?}");
        assert!(cells[0].contains("+131% (2.31×)"), "{}", cells[0]);
        assert!(cells[0].contains("Top10VPN, vs average demand (as reported)"));
        assert!(cells[0].contains("href=\"https://example.org/vpn?a=1&amp;b=2\""));
        assert!(cells[0].contains("data-value=\"2.31\""));
        assert!(cells[0].contains("title=\"+131% on Sun 18 Feb 2024\""));
        assert_eq!(cells[1], ">\u{2014}", "no figure: an em dash");
        assert!(html.contains("data-value=\"44.375\">44.4×</td>"));
        assert!(html.contains("<th>published VPN demand</th>"));
        assert!(html.contains("id=\"alignments-caption\""));
        assert!(html.contains("only Top10VPN's"));
        // Without the event's text, the alignment's own ratio is shown as a percentage.
        let mut bare = d.clone();
        bare.events[0].vpn_demand = None;
        let cells_html = render_html(&bare);
        let cells = published_cells(&cells_html);
        assert!(cells[0].contains("+131% (2.31×)"), "{}", cells[0]);
        // A figure that is words, not a number, is shown as published.
        let mut words = d.clone();
        words.alignments[0].published_peak_ratio = None;
        words.events[0].vpn_demand = Some(PublishedDemand {
            peak_percent: None,
            text: "doubled <overnight>".into(),
            ..pk_x_demand()
        });
        let words_html = render_html(&words);
        assert!(published_cells(&words_html)[0].contains("doubled &lt;overnight&gt;"));
    }

    /// 24 hourly windows: x has 20 attempts a window (blocked from window 12), youtube 2 (too
    /// few for the detector), signal none; the control sites work throughout.
    fn platform_series() -> ReportData {
        let n = 24usize;
        let mut d = ReportData::default();
        d.series.step_nanos = 60 * MIN;
        d.series.timestamps = (0..n as i64).map(|i| T0 + i * 60 * MIN).collect();
        let mut col = |name: &str, values: Vec<f64>| d.series.set(name, values);
        col("platform_x_attempts", vec![20.0; n]);
        col(
            "platform_x_success_ratio",
            (0..n).map(|i| if i < 12 { 0.95 } else { 0.05 }).collect(),
        );
        col("platform_youtube_attempts", vec![2.0; n]);
        col("platform_youtube_success_ratio", vec![1.0; n]);
        col("platform_signal_attempts", vec![0.0; n]);
        col("platform_signal_success_ratio", vec![f64::NAN; n]);
        col("control_attempts", vec![12.0; n]);
        col("control_success_ratio", vec![1.0; n]);
        d.alerts.push(AlertRow {
            kind: "BlockSuspected".into(),
            metric: "platform_x_success_ratio".into(),
            start_ts: T0 + 12 * 60 * MIN,
            peak_ts: T0 + 12 * 60 * MIN,
            evidence: vec![("platform".into(), "x".into())],
            ..AlertRow::default()
        });
        d
    }

    #[test]
    fn per_platform_chart_draws_the_platforms_the_detector_would_judge() {
        let d = platform_series();
        let picked = charted_platforms(&d.series);
        assert_eq!(picked.shown, vec!["x"]);
        assert_eq!(picked.too_few, vec!["youtube"]);
        assert_eq!(picked.no_attempts, vec!["signal"]);
        let html = render_html(&d);
        check_balanced(&html).unwrap();
        let svg = svg_element(&html, "chart-reachability-platforms");
        assert!(svg_tag(&html, "chart-reachability-platforms")
            .contains("data-series=\"platform_x_success_ratio control_success_ratio\""));
        assert_eq!(svg.matches("<path class=\"platform-ratio\" ").count(), 1);
        assert!(svg.contains("<path class=\"platform-ratio\" data-platform=\"x\""));
        assert!(
            !svg.contains("data-platform=\"youtube\"") && !svg.contains("data-platform=\"signal\"")
        );
        assert_eq!(svg.matches("<path class=\"control-ratio\"").count(), 1);
        assert!(svg.contains("<rect class=\"alert-span\" data-platform=\"x\""));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(html.contains("youtube (too few attempts); signal (no attempts)"));
        // The pooled fallback: with no qualifying platform, the caption says so.
        let mut none = platform_series();
        none.series.set("platform_x_attempts", vec![3.0; 24]);
        let html = render_html(&none);
        let svg = svg_element(&html, "chart-reachability-platforms");
        assert_eq!(svg.matches("class=\"platform-ratio\"").count(), 0);
        assert!(html.contains("No platform had enough attempts"));
    }

    #[test]
    fn more_than_eight_qualifying_platforms_keep_the_busiest_eight() {
        let mut d = platform_series();
        for i in 0..10 {
            d.series.set(
                &format!("platform_p{i}_attempts"),
                vec![10.0 + f64::from(i); 24],
            );
            d.series
                .set(&format!("platform_p{i}_success_ratio"), vec![0.9; 24]);
        }
        let picked = charted_platforms(&d.series);
        assert_eq!(picked.shown.len(), MAX_CHART_PLATFORMS);
        assert_eq!(picked.shown.first().map(String::as_str), Some("x"));
        assert_eq!(
            picked.omitted,
            vec!["p2", "p1", "p0"],
            "x and p9..p3 are busier"
        );
        let svg = figures(&d)
            .into_iter()
            .find(|f| f.id == "chart-reachability-platforms")
            .expect("chart")
            .svg;
        assert_eq!(
            svg.matches("<path class=\"platform-ratio\" ").count(),
            MAX_CHART_PLATFORMS
        );
        for color in charts::OKABE_ITO {
            assert!(svg.contains(&format!("stroke=\"{color}\"")), "{color}");
        }
    }

    #[test]
    fn per_platform_columns_come_from_the_flows() {
        let s = window_series(&records(), &[], &StatsConfig::default());
        let get = |n: &str| s.get(n).unwrap_or_else(|| panic!("{n}")).to_vec();
        assert_eq!(get("platform_x_attempts"), vec![1.0; 12]);
        assert_eq!(get("platform_x_success_ratio")[5..7], [1.0, 0.0]);
        assert_eq!(get("platform_x_successes")[6], 0.0);
        assert!(
            s.get("platform_wikipedia_attempts").is_none(),
            "controls are not platforms"
        );
    }

    #[test]
    fn hostile_strings_are_escaped() {
        let mut d = sample();
        d.protocol_mix.push(ProtocolRow {
            protocol: HOSTILE.into(),
            family: "<i onclick=x>".into(),
            flows: 1,
            hosts: 1,
            bytes: 1,
        });
        d.top_servers.push(ServerRow {
            server_ip: HOSTILE.into(),
            ..ServerRow::default()
        });
        d.series.columns.push(NamedValues {
            name: HOSTILE.into(),
            values: vec![1.0],
        });
        d.tool_version = HOSTILE.into();
        let html = render_html(&d);
        assert!(!html.contains("<script"), "raw script tag injected");
        assert!(!html.contains("<i onclick"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;.evil&quot;&#39;&amp;"));
        check_balanced(&html).unwrap();
    }

    #[test]
    fn empty_report_renders() {
        let d = ReportData::default();
        let html = render_html(&d);
        check_balanced(&html).unwrap();
        for id in SECTION_IDS {
            assert!(html.contains(&format!("<section id=\"{id}\">")));
        }
        assert_eq!(figures(&d).len(), 7);
        let of_summary = |summary: &RunSummary| {
            ReportData::from_run(
                summary,
                &FlowTallies::default(),
                &[],
                &FlowColumns::default(),
                &[],
                &StatsConfig::default(),
                Detections::default(),
            )
        };
        let only_totals = of_summary(&summary());
        check_balanced(&render_html(&only_totals)).unwrap();
        assert!(!render_html(&only_totals).contains("<dt>Filter</dt>"));
        let mut filtered = summary();
        filtered.packets_filtered = 77;
        filtered.filter = Some("tcp & <x>".into());
        let html = render_html(&of_summary(&filtered));
        assert!(
            html.contains("<dt>Filter</dt><dd>tcp &amp; &lt;x&gt; (77 packets left out)</dd>"),
            "{html}"
        );
    }

    #[test]
    fn json_round_trip_keeps_everything() {
        let d = sample();
        let back = ReportData::from_json(&d.to_json()).expect("parses");
        // NaN != NaN: compare the serialised forms, then the finite parts directly.
        assert_eq!(back.to_json(), d.to_json());
        assert_eq!(back.alerts, d.alerts);
        assert_eq!(back.examples, d.examples);
        let ratio = back.series.get("platform_success_ratio").expect("column");
        assert_eq!(ratio.len(), 12);
        assert_eq!(render_html(&back), render_html(&d));
        let newer = d
            .to_json()
            .replacen("\"schema_version\": 1", "\"schema_version\": 999", 1);
        assert!(ReportData::from_json(&newer).is_err());
        assert!(
            ReportData::from_json("{}").is_ok(),
            "missing fields default"
        );
        let nan =
            ReportData::from_json(r#"{"alerts":[{"kind":"Spike","magnitude":null,"score":null}]}"#)
                .expect("null numbers");
        assert!(nan.alerts[0].magnitude.is_nan());
    }

    #[test]
    fn figures_are_written_as_standalone_svg() {
        let dir = std::env::temp_dir().join(format!("tunnelwatch-figures-{}", std::process::id()));
        let paths = write_figures(&sample(), &dir).expect("written");
        assert_eq!(paths.len(), 7);
        for p in &paths {
            let text = std::fs::read_to_string(p).expect("readable");
            assert!(text.starts_with("<?xml"));
            assert!(text.contains("xmlns=\"http://www.w3.org/2000/svg\""));
            check_balanced(&text).unwrap();
        }
        let html_path = dir.join("report.html");
        write_html(&sample(), &html_path).expect("html written");
        let json_path = dir.join("report_data.json");
        sample().write_json(&json_path).expect("json written");
        assert_eq!(
            ReportData::read_json(&json_path).expect("read").to_json(),
            sample().to_json()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(0.0),
            0.0f64..1.0,
            any::<f64>()
        ]
    }

    proptest! {
        #[test]
        fn any_report_data_renders_well_formed(
            start in any::<i64>(),
            step in any::<i64>(),
            n in 0usize..30,
            cols in proptest::collection::vec(("[a-z_]{1,24}", proptest::collection::vec(value(), 0..35)), 0..8),
            alerts in proptest::collection::vec((any::<i64>(), proptest::option::of(any::<i64>()), value(), value(), ".{0,20}"), 0..4),
            events in proptest::collection::vec((any::<i64>(), proptest::option::of(any::<i64>()), ".{0,20}"), 0..3),
            lag in value(),
            idx in proptest::option::of(0usize..6),
        ) {
            let mut d = ReportData::default();
            d.series.step_nanos = step;
            d.series.timestamps = (0..n).map(|i| start.saturating_add(step.saturating_mul(i as i64))).collect();
            let fixed = ["active_hosts", "vpn_hosts", "circumvention_host_share", "platform_success_ratio", "new_adopters", "platform_no_reply"];
            for (i, (name, values)) in cols.into_iter().enumerate() {
                let name = fixed.get(i).map_or(name, |f| f.to_string());
                d.series.columns.push(NamedValues { name, values });
            }
            for (s, e, m, sc, text) in alerts {
                d.alerts.push(AlertRow { kind: text.clone(), metric: text.clone(), start_ts: s, end_ts: e, peak_ts: s, magnitude: m, score: sc, evidence: vec![(text.clone(), text)], ..AlertRow::default() });
            }
            for (s, e, name) in events {
                d.events.push(EventRow { name, start_ts: s, end_ts: e, ..EventRow::default() });
            }
            d.alignments.push(AlignmentRow { event_index: idx, alert_index: idx, lag_seconds: lag, score: lag, magnitude: Some(lag), ..AlignmentRow::default() });
            d.first_ts = Some(start);
            d.last_ts = Some(start.wrapping_add(step));
            let html = render_html(&d);
            prop_assert!(check_balanced(&html).is_ok(), "{:?}", check_balanced(&html));
            let back = ReportData::from_json(&d.to_json());
            prop_assert!(back.is_ok());
        }
    }
}
