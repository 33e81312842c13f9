//! Stats: per-host, per-window statistics from finished flows.
//!
//! Flows are reduced here to a few plain columns (one row per flow, or per group of flows that
//! share every column but the counts, [`FlowGroups`]; attributed to the window in which the flow
//! started); `frame.rs` — the only file that calls polars — groups them once per run (never per
//! packet) into:
//!
//! - `hosts` (one row per window and host): `window_start` `datetime[ns]`; `host` string;
//!   `flows`, `packets`, `bytes` u64; `circumvention_flows`, `circumvention_bytes`;
//!   `vpn_flows`, `proxy_flows`, `tor_flows`, `obfuscated_flows`, `tunnel_flows` (by family);
//!   `platform_attempts`, `platform_successes`, and failures by kind `platform_dns_failure`,
//!   `platform_reset_after_syn`, `platform_reset_after_client_data`, `platform_no_reply`,
//!   `platform_throttled` ([`FAILURE_KINDS`], [`is_throttled`]);
//!   `control_attempts`, `control_successes`; `uses_circumvention` bool; `adopted_window` datetime
//!   (the host's first window with circumvention).
//! - `series` (one row per window): `window_start`; `active_hosts`; `circumvention_hosts` and per
//!   family `vpn_hosts`, `proxy_hosts`, `tor_hosts`, `obfuscated_hosts`, `tunnel_hosts`;
//!   `circumvention_host_share` f64; `new_adopters`; `bytes`, `circumvention_bytes`,
//!   `circumvention_bytes_share` f64; `platform_attempts`, `platform_successes`,
//!   `platform_success_ratio` f64 (null without attempts); the failure kinds summed over hosts
//!   (`platform_dns_failure` ... `platform_throttled`); `control_attempts`,
//!   `control_successes`, `control_success_ratio` f64; then per measured platform `<name>`
//!   (every non-control platform, or the `--watch` list; [`StatsConfig::measured_platforms`])
//!   `platform_<name>_attempts`, `platform_<name>_successes` u64,
//!   `platform_<name>_success_ratio` f64 (null without attempts) and its failure kinds
//!   `platform_<name>_dns_failure` ... `platform_<name>_throttled` u64 ([`platform_column`]).
//!   The pooled `platform_*` columns above sum every measured platform; a block of one of them
//!   is diluted there, so block detection reads the per-platform columns.
//! - `series_protocols` (long form): `window_start`, `protocol`, `hosts` — hosts using each
//!   circumvention protocol per window.
//!
//! Hosts are the monitored network's own addresses (`--home-net`, default: private, shared and
//! unique-local ranges); a flow with neither end inside counts for its client. Host identifiers
//! can be anonymised with a keyed, prefix-preserving permutation (see [`anon`]).

pub mod anon;
#[cfg(feature = "polars-out")]
mod frame;
#[cfg(feature = "polars-out")]
pub mod rolling;
mod tally;
pub use tally::{AttemptTag, PlatformAttempts, PlatformTally, ALL_RESULTS};

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::fingerprint::Family;
use crate::flow::{FlowRecord, Outcome};
use crate::intel::cidr::Cidr;
use crate::intel::platforms::{Platform, PlatformMatcher};

/// Default monitored network: RFC 1918, RFC 6598 shared space, RFC 4193 unique-local, link-local.
pub const DEFAULT_HOME_NET: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
    "fe80::/10",
];

/// Statistics settings.
#[derive(Debug, Clone)]
pub struct StatsConfig {
    pub window_secs: u32,
    pub home_net: Vec<Cidr>,
    pub platforms: PlatformMatcher,
    /// Anonymise host identifiers with this key.
    pub anonymize: Option<anon::Anonymizer>,
    /// Platforms whose reachability is measured (`platform_*` columns); empty: every platform.
    /// A block of one platform is diluted in the success ratio of all of them, so a study of
    /// one block names it (`--watch x`).
    pub watch: Vec<String>,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            window_secs: 300,
            home_net: DEFAULT_HOME_NET
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
            platforms: PlatformMatcher::default(),
            anonymize: None,
            watch: Vec::new(),
        }
    }
}

impl StatsConfig {
    /// The flow's attempt on a platform or control site ([`flow_attempt`]), when it is one the
    /// statistics measure: a control site, or a platform of `watch` (every one when empty).
    pub fn attempt(&self, r: &FlowRecord) -> Option<(&Platform, AttemptResult)> {
        flow_attempt(r, &self.platforms)
            .filter(|(p, _)| p.control || self.watch.is_empty() || self.watch.contains(&p.name))
    }

    /// The platforms measured one by one (`platform_<name>_*` series columns), in definition
    /// order: every non-control platform, or those named by `watch`.
    pub fn measured_platforms(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for p in self.platforms.platforms() {
            let watched = self.watch.is_empty() || self.watch.contains(&p.name);
            if !p.control && watched && !names.contains(&p.name.as_str()) {
                names.push(p.name.as_str());
            }
        }
        names
    }
}

/// Per-platform series fields, after the platform name: `platform_<name>_<field>`.
pub const PLATFORM_FIELDS: [&str; 3] = ["attempts", "successes", "success_ratio"];

/// The series column of one platform's `field` (a [`PLATFORM_FIELDS`] entry or a failure
/// kind's [`AttemptResult::name`]): `platform_x_success_ratio`.
pub fn platform_column(platform: &str, field: &str) -> String {
    format!("platform_{platform}_{field}")
}

/// Splits a per-platform column name into (platform, field); `None` for every other column,
/// the pooled `platform_attempts`, `platform_success_ratio`, `platform_<kind>` included (no
/// field ends in `_` followed by another field, so the split is unique).
pub fn parse_platform_column(column: &str) -> Option<(&str, &str)> {
    let rest = column.strip_prefix("platform_")?;
    PLATFORM_FIELDS
        .into_iter()
        .chain(FAILURE_KINDS.map(AttemptResult::name))
        .find_map(|field| {
            let platform = rest.strip_suffix(field)?.strip_suffix('_')?;
            (!platform.is_empty()).then_some((platform, field))
        })
}

/// How one attempt to reach a platform (or control site) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Success,
    DnsFailure,
    ResetAfterSyn,
    ResetAfterClientData,
    NoReply,
    /// The connection worked but the server's data came at a crawl ([`is_throttled`]).
    Throttled,
    /// Neither a clear success nor a failure kind we count (e.g. reset by the client).
    Other,
}

/// Failure kinds counted per platform attempt, in column order (`platform_<kind>`).
pub const FAILURE_KINDS: [AttemptResult; 5] = [
    AttemptResult::DnsFailure,
    AttemptResult::ResetAfterSyn,
    AttemptResult::ResetAfterClientData,
    AttemptResult::NoReply,
    AttemptResult::Throttled,
];

/// Shortest flow judged for throttling: shorter transfers are dominated by round trips.
pub const THROTTLE_MIN_SECS: f64 = 20.0;
/// Fewest server payload bytes judged for throttling (about eleven full segments): below it the
/// flow is a few small exchanges or a keep-alive, not a transfer whose speed tells anything.
pub const THROTTLE_MIN_SERVER_BYTES: u64 = 16_000;
/// Server payload delivery, bytes per second over the whole flow, below which it is throttled.
pub const THROTTLE_MAX_BYTES_PER_SEC: f64 = 3_000.0;

/// Whether a TCP flow that got through its handshake was throttled: it lasted at least
/// [`THROTTLE_MIN_SECS`], the server sent at least [`THROTTLE_MIN_SERVER_BYTES`] of payload, and
/// that payload came at under [`THROTTLE_MAX_BYTES_PER_SEC`] (24 kbit/s) averaged over the flow.
///
/// Why these facts: a throttler lets the handshake and the request through and then paces or
/// polices the server's data, so the flow neither resets nor times out; what stays measurable
/// in flow totals is a transfer that is both long and slow. 3 kB/s is far below any working
/// access line (1 Mbit/s delivers 125 kB/s). The byte and duration floors keep out what
/// averages low for other reasons: keep-alive connections carrying a few hundred bytes, and
/// browsing connections with a few small responses between long pauses. On the generator's
/// traffic (`pk-x-2024` sizes) these floors leave 0-0.2 % of unthrottled TLS flows above the
/// line and find 98 % of throttled ones. What flow totals cannot tell apart: a large fast
/// download followed by minutes of idle keep-alive, and a milder throttle (Russia slowed
/// Twitter to about 130 kbit/s in 2021, Xue et al., IMC 2021) from a normal, paused connection;
/// both need per-flow gap facts (longest idle, active transfer time) from the flow stage.
/// Platform and control attempts are judged alike, so stray hits lower both ratios evenly
/// rather than faking a block.
pub fn is_throttled(r: &FlowRecord) -> bool {
    let secs = r.duration_secs();
    let server_bytes = r.payload_bytes[1];
    r.transport == crate::flow::Transport::Tcp
        && secs >= THROTTLE_MIN_SECS
        && server_bytes >= THROTTLE_MIN_SERVER_BYTES
        && (server_bytes as f64) / secs < THROTTLE_MAX_BYTES_PER_SEC
}

impl AttemptResult {
    pub fn name(self) -> &'static str {
        match self {
            AttemptResult::Success => "success",
            AttemptResult::DnsFailure => "dns_failure",
            AttemptResult::ResetAfterSyn => "reset_after_syn",
            AttemptResult::ResetAfterClientData => "reset_after_client_data",
            AttemptResult::NoReply => "no_reply",
            AttemptResult::Throttled => "throttled",
            AttemptResult::Other => "other",
        }
    }
}

/// Flows reduced to what the statistics need (plain columns): one row per flow, or per group
/// of flows that agree on every column but the counts ([`FlowGroups`]).
#[derive(Debug, Default, Clone)]
pub struct FlowColumns {
    /// Flows the row stands for.
    pub flows: Vec<u64>,
    pub window_start: Vec<i64>,
    pub host: Vec<String>,
    pub family: Vec<&'static str>,
    pub protocol: Vec<&'static str>,
    pub circumvention: Vec<bool>,
    pub packets: Vec<u64>,
    pub bytes: Vec<u64>,
    /// Platform token when the flow is an attempt to reach a platform (or control site).
    pub platform: Vec<Option<String>>,
    pub control: Vec<bool>,
    pub result: Vec<&'static str>,
}

impl FlowColumns {
    pub fn len(&self) -> usize {
        self.host.len()
    }

    /// A row that says only "this host used circumvention in `window`" (no packets, no
    /// platform): what a frozen window keeps of an adopter so adoption counts stay right.
    pub fn push_adoption_marker(&mut self, window: i64, host: String) {
        let FlowColumns {
            flows,
            window_start,
            host: hosts,
            family,
            protocol,
            circumvention,
            packets,
            bytes,
            platform,
            control,
            result,
        } = self;
        flows.push(1);
        window_start.push(window);
        hosts.push(host);
        family.push(Family::Vpn.name());
        protocol.push("unknown");
        circumvention.push(true);
        packets.push(0);
        bytes.push(0);
        platform.push(None);
        control.push(false);
        result.push("other");
    }

    /// Keeps the rows whose window starts at or after `cutoff`. Every column is named in the
    /// destructuring below, so a new column cannot be left out of the filter.
    pub fn retain_windows_from(&mut self, cutoff: i64) {
        let keep: Vec<bool> = self.window_start.iter().map(|&w| w >= cutoff).collect();
        let FlowColumns {
            flows,
            window_start,
            host,
            family,
            protocol,
            circumvention,
            packets,
            bytes,
            platform,
            control,
            result,
        } = self;
        retain_rows(flows, &keep);
        retain_rows(window_start, &keep);
        retain_rows(host, &keep);
        retain_rows(family, &keep);
        retain_rows(protocol, &keep);
        retain_rows(circumvention, &keep);
        retain_rows(packets, &keep);
        retain_rows(bytes, &keep);
        retain_rows(platform, &keep);
        retain_rows(control, &keep);
        retain_rows(result, &keep);
    }

    pub fn is_empty(&self) -> bool {
        self.host.is_empty()
    }

    /// The columns of `records`.
    pub fn of(records: &[FlowRecord], config: &StatsConfig) -> FlowColumns {
        let mut cols = FlowColumns::default();
        for r in records {
            cols.push(r, config);
        }
        cols
    }

    /// Appends `other`'s rows. Every column is named in the destructuring below, so a new
    /// column cannot be left out.
    pub fn append(&mut self, other: &FlowColumns) {
        let FlowColumns {
            flows,
            window_start,
            host,
            family,
            protocol,
            circumvention,
            packets,
            bytes,
            platform,
            control,
            result,
        } = self;
        flows.extend_from_slice(&other.flows);
        window_start.extend_from_slice(&other.window_start);
        host.extend_from_slice(&other.host);
        family.extend_from_slice(&other.family);
        protocol.extend_from_slice(&other.protocol);
        circumvention.extend_from_slice(&other.circumvention);
        packets.extend_from_slice(&other.packets);
        bytes.extend_from_slice(&other.bytes);
        platform.extend_from_slice(&other.platform);
        control.extend_from_slice(&other.control);
        result.extend_from_slice(&other.result);
    }

    /// Adds one finished flow.
    pub fn push(&mut self, r: &FlowRecord, config: &StatsConfig) {
        self.push_row(
            FlowRow::of(r, config),
            1,
            r.packets[0] + r.packets[1],
            r.bytes[0] + r.bytes[1],
        );
    }

    /// Adds a row standing for `flows` flows.
    fn push_row(&mut self, row: FlowRow, flows: u64, packets: u64, bytes: u64) {
        self.flows.push(flows);
        self.window_start.push(row.window_start);
        self.host.push(row.host);
        self.family.push(row.family);
        self.protocol.push(row.protocol);
        self.circumvention.push(row.circumvention);
        self.packets.push(packets);
        self.bytes.push(bytes);
        self.platform.push(row.platform);
        self.control.push(row.control);
        self.result.push(row.result);
    }
}

/// A flow's values in [`FlowColumns`] other than its counts: what flows of one group share.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FlowRow {
    window_start: i64,
    host: String,
    family: &'static str,
    protocol: &'static str,
    circumvention: bool,
    platform: Option<String>,
    control: bool,
    result: &'static str,
}

impl FlowRow {
    fn of(r: &FlowRecord, config: &StatsConfig) -> FlowRow {
        let window = i64::from(config.window_secs.max(1)) * 1_000_000_000;
        let host_ip = host_of(r, &config.home_net);
        let family = r.label.family;
        let (platform, result) = match config.attempt(r) {
            Some((p, result)) => (Some((p.name.clone(), p.control)), result),
            None => (None, AttemptResult::Other),
        };
        FlowRow {
            window_start: r.first_ts.div_euclid(window) * window,
            host: match &config.anonymize {
                Some(a) => a.anonymize(host_ip).to_string(),
                None => host_ip.to_string(),
            },
            family: family.name(),
            protocol: r.label.protocol,
            circumvention: family.is_circumvention(),
            control: platform.as_ref().is_some_and(|(_, c)| *c),
            platform: platform.map(|(n, _)| n),
            result: result.name(),
        }
    }
}

/// Flows reduced as they finish to one [`FlowColumns`] row per group of flows that agree on
/// everything but their counts (window, host, family, protocol, platform attempt and result).
/// Every statistic is a sum or a distinct count over these, so the tables come out as from one
/// row per flow, while memory follows the groups (hosts x windows x protocols), not the flows.
#[derive(Debug, Default)]
pub struct FlowGroups {
    cols: FlowColumns,
    /// A group's hash to its latest row with that hash; `next` chains the earlier ones. The
    /// index keeps no copy of a row's strings: a run of millions of one-flow groups (a flood
    /// from as many addresses) spent half its time allocating and freeing such copies.
    heads: std::collections::HashMap<u64, usize>,
    next: Vec<usize>,
    hasher: std::hash::RandomState,
}

impl FlowGroups {
    pub fn add(&mut self, r: &FlowRecord, config: &StatsConfig) {
        let row = FlowRow::of(r, config);
        let (packets, bytes) = (r.packets[0] + r.packets[1], r.bytes[0] + r.bytes[1]);
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, &row);
        let mut at = self.heads.get(&hash).copied();
        while let Some(i) = at {
            if self.holds(i, &row) {
                let cols = &mut self.cols;
                if let (Some(f), Some(p), Some(b)) = (
                    cols.flows.get_mut(i),
                    cols.packets.get_mut(i),
                    cols.bytes.get_mut(i),
                ) {
                    *f += 1;
                    *p = p.saturating_add(packets);
                    *b = b.saturating_add(bytes);
                }
                return;
            }
            at = self.next.get(i).copied().filter(|&n| n != usize::MAX);
        }
        let i = self.cols.len();
        self.next
            .push(self.heads.insert(hash, i).unwrap_or(usize::MAX));
        self.cols.push_row(row, 1, packets, bytes);
    }

    /// Whether row `i` is `row`'s group.
    fn holds(&self, i: usize, row: &FlowRow) -> bool {
        let c = &self.cols;
        c.window_start.get(i) == Some(&row.window_start)
            && c.host.get(i) == Some(&row.host)
            && c.family.get(i) == Some(&row.family)
            && c.protocol.get(i) == Some(&row.protocol)
            && c.circumvention.get(i) == Some(&row.circumvention)
            && c.platform.get(i) == Some(&row.platform)
            && c.control.get(i) == Some(&row.control)
            && c.result.get(i) == Some(&row.result)
    }

    /// The rows, one per group, in the order the groups first appeared.
    pub fn into_columns(self) -> FlowColumns {
        self.cols
    }
}

/// The monitored host of a flow: the end inside the home network (client first), else the client.
pub fn host_of(r: &FlowRecord, home_net: &[Cidr]) -> IpAddr {
    host_of_endpoints(r.client_ip, r.server_ip, home_net)
}

/// [`host_of`] for a flow known by its two ends (e.g. one still open).
pub fn host_of_endpoints(client: IpAddr, server: IpAddr, home_net: &[Cidr]) -> IpAddr {
    let inside = |ip: IpAddr| home_net.iter().any(|c| c.contains(ip));
    if inside(client) || !inside(server) {
        client
    } else {
        server
    }
}

/// A flow's client and server addresses as the flows table shows them: with anonymisation on
/// (in `config`), every monitored-host address (the flow's host, and any endpoint inside
/// `home_net`) is replaced by its anonymised form, so the table carries no real subscriber
/// address either.
pub fn shown_endpoints(r: &FlowRecord, config: &StatsConfig) -> (IpAddr, IpAddr) {
    let Some(anon) = &config.anonymize else {
        return (r.client_ip, r.server_ip);
    };
    let host = host_of(r, &config.home_net);
    let shown = |ip: IpAddr| {
        if ip == host || config.home_net.iter().any(|c| c.contains(ip)) {
            anon.anonymize(ip)
        } else {
            ip
        }
    };
    (shown(r.client_ip), shown(r.server_ip))
}

/// A flow's row of the flows table without its id, to wait in a sorted spill until
/// [`write_flow_rows`] numbers and writes it.
pub fn flow_table_row(
    r: &FlowRecord,
    config: &StatsConfig,
    buf: &mut Vec<u8>,
    scratch: &mut String,
) {
    let endpoints = shown_endpoints(r, config);
    #[cfg(feature = "polars-out")]
    {
        let platform = flow_platform(r, &config.platforms).map_or("", |p| p.name.as_str());
        frame::encode_flow_row(r, endpoints, platform, buf, scratch);
    }
    #[cfg(not(feature = "polars-out"))]
    {
        // The platform is told from the flow's real server address, before anonymising.
        let platform = flow_platform(r, &config.platforms).map_or("", |p| p.name.as_str());
        let shown = FlowRecord {
            client_ip: endpoints.0,
            server_ip: endpoints.1,
            ..r.clone()
        };
        crate::cli::csv_row_fields(&shown, platform, buf, scratch);
    }
}

/// Writes the flows table (`flows.parquet`, or `flows.csv` without polars) into `dir` from rows
/// of [`flow_table_row`], which `rows` hands, in order and numbered, to the function it is
/// given. Returns the path written.
pub fn write_flow_rows(
    dir: &Path,
    rows: impl FnOnce(&mut dyn FnMut(u64, &[u8]) -> io::Result<()>) -> io::Result<()>,
) -> io::Result<PathBuf> {
    #[cfg(feature = "polars-out")]
    {
        frame::write_flow_rows(dir, rows)
    }
    #[cfg(not(feature = "polars-out"))]
    {
        use std::io::Write;
        let path = dir.join("flows.csv");
        write_atomically(&path, |f| {
            writeln!(f, "{}", crate::flow::FLOW_COLUMNS.join(","))?;
            let mut prefix = Vec::new();
            rows(&mut |id, row| {
                prefix.clear();
                crate::cli::push_id_prefix(&mut prefix, crate::cli::RowFormat::Csv, id);
                f.write_all(&prefix)?;
                f.write_all(row)
            })?;
            f.flush()
        })?;
        Ok(path)
    }
}

/// The platform or control site a flow tried to reach: by its name (SNI, HTTP Host, DNS
/// question), else by the platform a detector recognised by its own protocol, else by its
/// server address ([`PlatformMatcher::classify_flow`]). A DNS flow's server is a resolver,
/// whose address says nothing of the platform asked for.
pub fn flow_platform<'a>(r: &FlowRecord, platforms: &'a PlatformMatcher) -> Option<&'a Platform> {
    let addr = (r.label.protocol != "dns").then_some(r.server_ip);
    platforms.classify_flow(r.label.server_name(), r.label.platform(), addr)
}

/// The platform or control site a flow tried to reach ([`flow_platform`]) and how the attempt
/// ended: a DNS flow by its answer, any other by its outcome ([`Outcome`], [`is_throttled`]).
pub fn flow_attempt<'a>(
    r: &FlowRecord,
    platforms: &'a PlatformMatcher,
) -> Option<(&'a Platform, AttemptResult)> {
    let p = flow_platform(r, platforms)?;
    let result = if r.label.protocol == "dns" {
        match r.label.dns_rcode() {
            // NOERROR, with records or without: a name without AAAA records gets an empty
            // NOERROR to its AAAA question (NODATA, RFC 2308 §2.2), unblocked.
            Some(0) => AttemptResult::Success,
            // SERVFAIL, NXDOMAIN, REFUSED (RFC 1035 §4.1.1): what DNS blocking answers.
            Some(2 | 3 | 5) => AttemptResult::DnsFailure,
            Some(_) => AttemptResult::Other,
            None if r.outcome == Outcome::NoReply => AttemptResult::DnsFailure,
            None => AttemptResult::Other,
        }
    } else {
        match r.outcome {
            Outcome::Established | Outcome::Completed | Outcome::ResetAfterServerData
                if is_throttled(r) =>
            {
                AttemptResult::Throttled
            }
            Outcome::Established | Outcome::Completed | Outcome::ResetAfterServerData => {
                AttemptResult::Success
            }
            Outcome::ResetAfterSyn => AttemptResult::ResetAfterSyn,
            Outcome::ResetAfterClientData => AttemptResult::ResetAfterClientData,
            Outcome::NoReply => AttemptResult::NoReply,
            Outcome::ResetByClient | Outcome::OneWay => AttemptResult::Other,
        }
    };
    Some((p, result))
}

/// Output table formats for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Parquet,
    Csv,
    Json,
}

impl TableFormat {
    pub fn extension(self) -> &'static str {
        match self {
            TableFormat::Parquet => "parquet",
            TableFormat::Csv => "csv",
            TableFormat::Json => "json",
        }
    }
}

/// One per-window metric across hosts, ready for the detector.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSeries {
    pub metric: String,
    pub start_ts_nanos: i64,
    pub step_nanos: i64,
    /// One value per window from the first to the last; NaN where undefined.
    pub values: Vec<f64>,
}

/// Builds the hosts/series tables, writes them in each format into `dir`, and returns the
/// per-window metric series (for detection) and the paths written.
pub fn write_window_tables(
    cols: &FlowColumns,
    config: &StatsConfig,
    dir: &Path,
    formats: &[TableFormat],
) -> io::Result<(Vec<MetricSeries>, Vec<PathBuf>)> {
    #[cfg(feature = "polars-out")]
    {
        frame::write_window_tables(cols, config, dir, formats)
    }
    #[cfg(not(feature = "polars-out"))]
    {
        let _ = (cols, config, dir, formats);
        Ok((Vec::new(), Vec::new()))
    }
}

/// Reads the per-window metrics back from a `series.parquet` (or the `series.csv` / `series.json`
/// of `--tables csv|json`, by extension) for re-running detection.
pub fn read_metric_series(path: &Path, default_window_secs: u32) -> io::Result<Vec<MetricSeries>> {
    #[cfg(feature = "polars-out")]
    {
        frame::read_metric_series(path, default_window_secs)
    }
    #[cfg(not(feature = "polars-out"))]
    {
        let _ = default_window_secs;
        Err(io::Error::other(format!(
            "{}: reading Parquet needs the polars-out feature (the default build)",
            path.display()
        )))
    }
}

/// Reads a Parquet table as text: column names and rows, datetimes as RFC 3339 (for readers of
/// documented schemas outside this module, e.g. archived flow tables).
pub fn read_parquet_as_text(path: &Path) -> io::Result<(Vec<String>, Vec<Vec<String>>)> {
    #[cfg(feature = "polars-out")]
    {
        frame::read_parquet_as_text(path)
    }
    #[cfg(not(feature = "polars-out"))]
    {
        Err(parquet_needs_polars(path))
    }
}

/// Takes a Parquet table as text a slice of rows at a time: (column names, rows).
pub type TextSliceSink<'a> = dyn FnMut(&[String], &[Vec<String>]) -> io::Result<()> + 'a;

/// [`read_parquet_as_text`] handed on `rows_per_chunk` rows at a time, with the column names
/// (an empty table: one empty slice).
pub fn each_parquet_text_chunk(
    path: &Path,
    rows_per_chunk: usize,
    each: &mut TextSliceSink<'_>,
) -> io::Result<()> {
    #[cfg(feature = "polars-out")]
    {
        frame::each_parquet_text_chunk(path, rows_per_chunk, each)
    }
    #[cfg(not(feature = "polars-out"))]
    {
        let _ = (rows_per_chunk, each);
        Err(parquet_needs_polars(path))
    }
}

#[cfg(not(feature = "polars-out"))]
fn parquet_needs_polars(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{}: reading Parquet needs the polars-out feature (the default build)",
        path.display()
    ))
}

/// Writes to `path` through a temporary name, so an interrupted run leaves no half file.
pub(crate) use crate::atomic_file::write_atomically;

/// Families counted as circumvention, in column order.
pub const CIRCUMVENTION_FAMILIES: [Family; 5] = [
    Family::Vpn,
    Family::Proxy,
    Family::Tor,
    Family::Obfuscated,
    Family::Tunnel,
];

/// Keeps `column[i]` where `keep[i]` (rows past `keep`'s end are dropped).
fn retain_rows<T>(column: &mut Vec<T>, keep: &[bool]) {
    let mut row = 0;
    column.retain(|_| {
        let kept = keep.get(row).copied().unwrap_or(false);
        row += 1;
        kept
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`flow_attempt`] with the platform's name and control flag.
    fn platform_attempt(
        r: &FlowRecord,
        platforms: &PlatformMatcher,
    ) -> Option<(String, bool, AttemptResult)> {
        flow_attempt(r, platforms).map(|(p, result)| (p.name.clone(), p.control, result))
    }
    use crate::flow::{EndReason, Transport};

    /// A completed TCP flow to X's prefix lasting `secs` with `server_bytes` of server payload.
    fn flow(secs: f64, server_bytes: u64) -> FlowRecord {
        FlowRecord {
            id: 0,
            first_ts: 1_708_182_000_000_000_000,
            last_ts: 1_708_182_000_000_000_000 + (secs * 1e9) as i64,
            transport: Transport::Tcp,
            ip_proto: 6,
            client_ip: "10.0.0.1".parse().unwrap(),
            client_port: 40_000,
            server_ip: "104.244.42.1".parse().unwrap(),
            server_port: 443,
            packets: [20, 40],
            bytes: [2_000, server_bytes + 2_000],
            payload_bytes: [900, server_bytes],
            tcp_flags: [0x1b, 0x1b],
            outcome: Outcome::Completed,
            end_reason: EndReason::Fin,
            label: Default::default(),
        }
    }

    #[test]
    fn throttled_means_long_slow_and_a_real_transfer() {
        // 45 s at 1.5 kB/s: the generator's throttled connection.
        assert!(is_throttled(&flow(45.0, 67_500)));
        // Fast: 100 kB in 2 s; short: 16 kB in 10 s; a keep-alive: 2 kB over 5 minutes.
        assert!(!is_throttled(&flow(2.0, 100_000)));
        assert!(!is_throttled(&flow(10.0, 16_000)));
        assert!(!is_throttled(&flow(300.0, 2_000)));
        // Right at the rate line is not below it.
        assert!(!is_throttled(&flow(20.0, 60_000)));
        let mut udp = flow(45.0, 67_500);
        udp.transport = Transport::Udp;
        assert!(!is_throttled(&udp));
    }

    #[test]
    fn a_throttled_platform_attempt_is_a_failure_of_its_own_kind() {
        let platforms = PlatformMatcher::default();
        let (name, control, result) = platform_attempt(&flow(45.0, 67_500), &platforms).unwrap();
        assert_eq!((name.as_str(), control), ("x", false));
        assert_eq!(result, AttemptResult::Throttled);
        assert!(FAILURE_KINDS.contains(&result));
        let (_, _, ok) = platform_attempt(&flow(2.0, 100_000), &platforms).unwrap();
        assert_eq!(ok, AttemptResult::Success);
        let mut reset = flow(45.0, 67_500);
        reset.outcome = Outcome::ResetAfterClientData;
        let (_, _, r) = platform_attempt(&reset, &platforms).unwrap();
        assert_eq!(r, AttemptResult::ResetAfterClientData);
    }

    #[test]
    fn per_platform_column_names_round_trip_and_pooled_ones_do_not_parse() {
        for field in PLATFORM_FIELDS
            .into_iter()
            .chain(FAILURE_KINDS.map(AttemptResult::name))
        {
            let column = platform_column("x", field);
            assert_eq!(parse_platform_column(&column), Some(("x", field)));
        }
        assert_eq!(
            parse_platform_column("platform_my_site_no_reply"),
            Some(("my_site", "no_reply"))
        );
        for pooled in [
            "platform_attempts",
            "platform_successes",
            "platform_success_ratio",
            "platform_dns_failure",
            "platform_reset_after_client_data",
            "platform_no_reply",
            "platform_throttled",
            "control_success_ratio",
            "platform__attempts",
        ] {
            assert_eq!(parse_platform_column(pooled), None, "{pooled}");
        }
    }

    #[test]
    fn measured_platforms_are_the_non_controls_or_the_watched() {
        let config = StatsConfig::default();
        let all = config.measured_platforms();
        assert!(all.contains(&"x") && all.contains(&"youtube"));
        assert!(!all.contains(&"wikipedia"), "controls are not measured");
        let config = StatsConfig {
            watch: vec!["x".into(), "wikipedia".into()],
            ..StatsConfig::default()
        };
        assert_eq!(config.measured_platforms(), vec!["x"]);
    }

    #[test]
    fn an_unanswered_syn_to_a_control_prefix_is_a_failed_control_attempt() {
        // No name at all (no DNS, no ClientHello): only the address tells it is Wikimedia.
        let mut syn = flow(3.0, 0);
        syn.server_ip = "208.80.154.224".parse().unwrap();
        syn.outcome = Outcome::NoReply;
        syn.packets = [3, 0];
        syn.payload_bytes = [0, 0];
        let platforms = PlatformMatcher::default();
        let (name, control, result) = platform_attempt(&syn, &platforms).unwrap();
        assert_eq!((name.as_str(), control), ("wikipedia", true));
        assert_eq!(result, AttemptResult::NoReply);
        let mut cols = FlowColumns::default();
        cols.push(&syn, &StatsConfig::default());
        assert_eq!(cols.control, [true]);
        assert_eq!(cols.result, ["no_reply"]);
        // Apple's own 17.0.0.0/8 likewise; a shared CDN address is no control.
        syn.server_ip = "17.253.144.10".parse().unwrap();
        assert!(platform_attempt(&syn, &platforms).is_some_and(|(n, c, _)| n == "apple" && c));
        syn.server_ip = "104.16.132.229".parse().unwrap();
        assert_eq!(platform_attempt(&syn, &platforms), None);
    }

    #[test]
    fn a_platform_protocol_on_the_wire_attributes_a_nameless_flow() {
        use crate::fingerprint::driver::{Match, PLATFORM_FACT};
        use crate::fingerprint::{protocols, Confidence, Verdict};
        // WhatsApp's framing to an address outside every built-in prefix, with no name: the
        // detector's platform fact says which platform the flow reached.
        let mut chat = flow(30.0, 5_000);
        chat.server_ip = "192.0.2.80".parse().unwrap();
        let platforms = PlatformMatcher::default();
        assert_eq!(platform_attempt(&chat, &platforms), None);
        let recognised = |platform: &str| Match {
            spec: &protocols::whatsapp::SPEC,
            verdict: Verdict::new(Confidence::OneMessage).fact(PLATFORM_FACT, platform),
        };
        chat.label.matches.push(recognised("whatsapp"));
        chat.outcome = Outcome::ResetAfterClientData;
        let (name, control, result) = platform_attempt(&chat, &platforms).unwrap();
        assert_eq!((name.as_str(), control), ("whatsapp", false));
        assert_eq!(result, AttemptResult::ResetAfterClientData);
        // A token no platform has counts nothing; a name still decides before the platform
        // fact.
        chat.label.matches = vec![recognised("not-a-platform")];
        assert_eq!(platform_attempt(&chat, &platforms), None);
        chat.label.matches = vec![
            Match {
                spec: &protocols::tls::SPEC,
                verdict: Verdict::new(Confidence::OneMessage).fact("sni", "www.youtube.com"),
            },
            recognised("whatsapp"),
        ];
        assert!(platform_attempt(&chat, &platforms).is_some_and(|(n, _, _)| n == "youtube"));
    }

    #[test]
    fn only_watched_platforms_count_as_platform_attempts() {
        let x_flow = flow(2.0, 100_000);
        for (watch, counted) in [
            (vec![], true),
            (vec!["x".to_string()], true),
            (vec!["youtube".to_string()], false),
        ] {
            let config = StatsConfig {
                watch,
                ..StatsConfig::default()
            };
            let mut cols = FlowColumns::default();
            cols.push(&x_flow, &config);
            assert_eq!(cols.platform[0].is_some(), counted, "{:?}", config.watch);
        }
    }
}
