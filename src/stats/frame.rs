//! Every polars call of the project (schemas in the parent module's docs).

use std::io;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use polars_io::csv::write::CsvWriter;
use polars_io::json::{JsonFormat, JsonWriter};
use polars_io::parquet::write::ParquetWriter;
use polars_io::SerWriter;

use super::{
    parse_platform_column, platform_column, write_atomically, FlowColumns, MetricSeries,
    StatsConfig, TableFormat, CIRCUMVENTION_FAMILIES, FAILURE_KINDS,
};
use crate::flow::FlowRecord;

pub(super) fn to_io(e: PolarsError) -> io::Error {
    io::Error::other(e.to_string())
}

pub(super) fn datetime(name: &str, values: Vec<i64>) -> PolarsResult<Column> {
    Column::new(name.into(), values).cast(&DataType::Datetime(TimeUnit::Nanoseconds, None))
}

/// The flows as a DataFrame (columns of `flow::FLOW_COLUMNS`), built from the records
/// directly: what the tables written from spilled rows are checked against.
#[cfg(test)]
pub fn flows_frame(
    records: &[FlowRecord],
    platforms: &crate::intel::platforms::PlatformMatcher,
) -> PolarsResult<DataFrame> {
    let strings =
        |f: &dyn Fn(&FlowRecord) -> String| -> Vec<String> { records.iter().map(f).collect() };
    let columns = vec![
        Column::new(
            "id".into(),
            records.iter().map(|r| r.id).collect::<Vec<u64>>(),
        ),
        datetime("first_ts", records.iter().map(|r| r.first_ts).collect())?,
        datetime("last_ts", records.iter().map(|r| r.last_ts).collect())?,
        Column::new(
            "transport".into(),
            strings(&|r| r.transport.name().into_owned()),
        ),
        Column::new("client_ip".into(), strings(&|r| r.client_ip.to_string())),
        Column::new(
            "client_port".into(),
            records
                .iter()
                .map(|r| u32::from(r.client_port))
                .collect::<Vec<u32>>(),
        ),
        Column::new("server_ip".into(), strings(&|r| r.server_ip.to_string())),
        Column::new(
            "server_port".into(),
            records
                .iter()
                .map(|r| u32::from(r.server_port))
                .collect::<Vec<u32>>(),
        ),
        Column::new(
            "packets_c2s".into(),
            records.iter().map(|r| r.packets[0]).collect::<Vec<u64>>(),
        ),
        Column::new(
            "packets_s2c".into(),
            records.iter().map(|r| r.packets[1]).collect::<Vec<u64>>(),
        ),
        Column::new(
            "bytes_c2s".into(),
            records.iter().map(|r| r.bytes[0]).collect::<Vec<u64>>(),
        ),
        Column::new(
            "bytes_s2c".into(),
            records.iter().map(|r| r.bytes[1]).collect::<Vec<u64>>(),
        ),
        Column::new("outcome".into(), strings(&|r| r.outcome.name().to_string())),
        Column::new(
            "protocol".into(),
            strings(&|r| r.label.protocol.to_string()),
        ),
        Column::new(
            "application".into(),
            strings(&|r| r.label.application.unwrap_or("").to_string()),
        ),
        Column::new(
            "provider".into(),
            strings(&|r| r.label.provider.unwrap_or("").to_string()),
        ),
        Column::new(
            "obfuscated".into(),
            records
                .iter()
                .map(|r| r.label.obfuscated)
                .collect::<Vec<bool>>(),
        ),
        Column::new(
            "family".into(),
            strings(&|r| r.label.family.name().to_string()),
        ),
        Column::new(
            "confidence".into(),
            strings(&|r| r.label.confidence.map_or("", |c| c.name()).to_string()),
        ),
        Column::new(
            "server_name".into(),
            strings(&|r| r.label.server_name().unwrap_or("").to_string()),
        ),
        Column::new(
            "platform".into(),
            strings(&|r| {
                super::flow_platform(r, platforms).map_or(String::new(), |p| p.name.clone())
            }),
        ),
        Column::new("evidence".into(), strings(&|r| r.label.evidence_text())),
    ];
    DataFrame::new(records.len(), columns)
}

/// A flow's row of `flows.parquet` without its id, as it waits in a sorted spill: first and
/// last time (i64 LE), ports (u16 LE), packets and bytes each way (u64 LE), obfuscated (one
/// byte), then the text columns each as a u32 LE length and UTF-8 bytes, in table order.
/// `endpoints` are the client and server addresses as shown (anonymised or not).
pub fn encode_flow_row(
    r: &FlowRecord,
    endpoints: (std::net::IpAddr, std::net::IpAddr),
    platform: &str,
    buf: &mut Vec<u8>,
    scratch: &mut String,
) {
    buf.extend_from_slice(&r.first_ts.to_le_bytes());
    buf.extend_from_slice(&r.last_ts.to_le_bytes());
    buf.extend_from_slice(&r.client_port.to_le_bytes());
    buf.extend_from_slice(&r.server_port.to_le_bytes());
    for v in [r.packets[0], r.packets[1], r.bytes[0], r.bytes[1]] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    buf.push(u8::from(r.label.obfuscated));
    let mut text = |t: &str| {
        buf.extend_from_slice(&u32::try_from(t.len()).unwrap_or(u32::MAX).to_le_bytes());
        buf.extend_from_slice(t.as_bytes());
    };
    text(&r.transport.name());
    scratch.clear();
    use std::fmt::Write as _;
    let _ = write!(scratch, "{}", endpoints.0);
    text(scratch);
    scratch.clear();
    let _ = write!(scratch, "{}", endpoints.1);
    text(scratch);
    let label = &r.label;
    text(r.outcome.name());
    text(label.protocol);
    text(label.application.unwrap_or(""));
    text(label.provider.unwrap_or(""));
    text(label.family.name());
    text(label.confidence.map_or("", |c| c.name()));
    text(label.server_name().unwrap_or(""));
    text(platform);
    scratch.clear();
    // Writing into a `String` cannot fail.
    let _ = label.write_evidence(scratch);
    text(scratch);
}

/// Columns of `flows.parquet` filled from encoded rows ([`encode_flow_row`]).
#[derive(Default)]
struct FlowTableColumns {
    id: Vec<u64>,
    first_ts: Vec<i64>,
    last_ts: Vec<i64>,
    client_port: Vec<u32>,
    server_port: Vec<u32>,
    counts: [Vec<u64>; 4],
    obfuscated: Vec<bool>,
    /// transport, client_ip, server_ip, outcome, protocol, application, provider, family,
    /// confidence, server_name, platform, evidence.
    text: [Vec<String>; 12],
}

/// Reads the encoded row a field at a time; `None` when it ends early.
struct RowReader<'a>(&'a [u8]);

impl<'a> RowReader<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn text(&mut self) -> Option<&'a str> {
        let len = u32::from_le_bytes(self.take::<4>()?) as usize;
        let bytes = self.0.get(..len)?;
        self.0 = self.0.get(len..)?;
        std::str::from_utf8(bytes).ok()
    }
}

impl FlowTableColumns {
    fn len(&self) -> usize {
        self.id.len()
    }

    /// Adds the row `row` ([`encode_flow_row`]) as flow `id`.
    fn push(&mut self, id: u64, row: &[u8]) -> io::Result<()> {
        let bad = || io::Error::other("a spilled flow row is damaged");
        let mut r = RowReader(row);
        let first_ts = i64::from_le_bytes(r.take().ok_or_else(bad)?);
        let last_ts = i64::from_le_bytes(r.take().ok_or_else(bad)?);
        let client_port = u16::from_le_bytes(r.take().ok_or_else(bad)?);
        let server_port = u16::from_le_bytes(r.take().ok_or_else(bad)?);
        let mut counts = [0u64; 4];
        for c in &mut counts {
            *c = u64::from_le_bytes(r.take().ok_or_else(bad)?);
        }
        let [obfuscated] = r.take::<1>().ok_or_else(bad)?;
        let mut text: [&str; 12] = [""; 12];
        for t in &mut text {
            *t = r.text().ok_or_else(bad)?;
        }
        self.id.push(id);
        self.first_ts.push(first_ts);
        self.last_ts.push(last_ts);
        self.client_port.push(u32::from(client_port));
        self.server_port.push(u32::from(server_port));
        for (column, v) in self.counts.iter_mut().zip(counts) {
            column.push(v);
        }
        self.obfuscated.push(obfuscated != 0);
        for (column, t) in self.text.iter_mut().zip(text) {
            column.push(t.to_string());
        }
        Ok(())
    }

    /// The table's columns in `flow::FLOW_COLUMNS` order; leaves the builder empty.
    fn frame(&mut self) -> PolarsResult<DataFrame> {
        let FlowTableColumns {
            id,
            first_ts,
            last_ts,
            client_port,
            server_port,
            counts,
            obfuscated,
            text,
        } = std::mem::take(self);
        let rows = id.len();
        let [packets_c2s, packets_s2c, bytes_c2s, bytes_s2c] = counts;
        let [transport, client_ip, server_ip, outcome, protocol, application, provider, family, confidence, server_name, platform, evidence] =
            text;
        let columns = vec![
            Column::new("id".into(), id),
            datetime("first_ts", first_ts)?,
            datetime("last_ts", last_ts)?,
            Column::new("transport".into(), transport),
            Column::new("client_ip".into(), client_ip),
            Column::new("client_port".into(), client_port),
            Column::new("server_ip".into(), server_ip),
            Column::new("server_port".into(), server_port),
            Column::new("packets_c2s".into(), packets_c2s),
            Column::new("packets_s2c".into(), packets_s2c),
            Column::new("bytes_c2s".into(), bytes_c2s),
            Column::new("bytes_s2c".into(), bytes_s2c),
            Column::new("outcome".into(), outcome),
            Column::new("protocol".into(), protocol),
            Column::new("application".into(), application),
            Column::new("provider".into(), provider),
            Column::new("obfuscated".into(), obfuscated),
            Column::new("family".into(), family),
            Column::new("confidence".into(), confidence),
            Column::new("server_name".into(), server_name),
            Column::new("platform".into(), platform),
            Column::new("evidence".into(), evidence),
        ];
        DataFrame::new(rows, columns)
    }
}

/// Flows per batch of `flows.parquet` (one row group each). The table is built and written a
/// batch at a time, so a run's flows never sit in one DataFrame: for the 160 k flows of a
/// `synth --preset bench` capture that frame was the peak of an `analyze` run.
const FLOW_ROWS_PER_BATCH: usize = 65_536;

/// Writes `flows.parquet` into `dir` from encoded rows ([`encode_flow_row`]) that `rows`
/// hands, in order and numbered, to the function it is given.
pub fn write_flow_rows(
    dir: &Path,
    rows: impl FnOnce(&mut dyn FnMut(u64, &[u8]) -> io::Result<()>) -> io::Result<()>,
) -> io::Result<PathBuf> {
    let path = dir.join("flows.parquet");
    write_atomically(&path, |f| write_flow_batches(f, rows, FLOW_ROWS_PER_BATCH))?;
    Ok(path)
}

fn write_flow_batches(
    out: impl io::Write,
    rows: impl FnOnce(&mut dyn FnMut(u64, &[u8]) -> io::Result<()>) -> io::Result<()>,
    rows_per_batch: usize,
) -> io::Result<()> {
    let rows_per_batch = rows_per_batch.max(1);
    let mut out = Some(out);
    let mut writer = None;
    let mut table = FlowTableColumns::default();
    // The writer takes its schema from the first batch.
    let mut write = |table: &mut FlowTableColumns,
                     writer: &mut Option<polars_io::parquet::write::BatchedWriter<_>>|
     -> io::Result<()> {
        let df = table.frame().map_err(to_io)?;
        if writer.is_none() {
            if let Some(out) = out.take() {
                *writer = Some(
                    ParquetWriter::new(out)
                        .batched(df.schema())
                        .map_err(to_io)?,
                );
            }
        }
        match writer {
            Some(w) => w.write_batch(&df).map_err(to_io),
            None => Ok(()),
        }
    };
    rows(&mut |id, row| {
        table.push(id, row)?;
        if table.len() >= rows_per_batch {
            write(&mut table, &mut writer)?;
        }
        Ok(())
    })?;
    if table.len() > 0 || writer.is_none() {
        write(&mut table, &mut writer)?;
    }
    match writer {
        Some(w) => w.finish().map(|_| ()).map_err(to_io),
        None => Ok(()),
    }
}

pub(super) fn write_table(df: &mut DataFrame, path: &Path, format: TableFormat) -> io::Result<()> {
    write_atomically(path, |f| {
        match format {
            TableFormat::Parquet => ParquetWriter::new(f).finish(df).map(|_| ()),
            TableFormat::Csv => CsvWriter::new(f).include_header(true).finish(df),
            TableFormat::Json => JsonWriter::new(f)
                .with_json_format(JsonFormat::Json)
                .finish(df),
        }
        .map_err(to_io)
    })
}

/// One row per flow, or per group of flows (`flows` counts them): the input of every grouping.
pub(super) fn flow_frame(cols: &FlowColumns) -> PolarsResult<DataFrame> {
    // Polars copies every column into its own arrays: columns are built from slices, not from
    // per-row `String` copies (a run's flows are all in this frame).
    DataFrame::new(
        cols.len(),
        vec![
            Column::new("flows".into(), cols.flows.as_slice()),
            datetime("window_start", cols.window_start.clone())?,
            Column::new("host".into(), cols.host.as_slice()),
            Column::new("family".into(), cols.family.as_slice()),
            Column::new("protocol".into(), cols.protocol.as_slice()),
            Column::new("circumvention".into(), cols.circumvention.as_slice()),
            Column::new("packets".into(), cols.packets.as_slice()),
            Column::new("bytes".into(), cols.bytes.as_slice()),
            Column::new("platform".into(), cols.platform.as_slice()),
            Column::new("control".into(), cols.control.as_slice()),
            Column::new("result".into(), cols.result.as_slice()),
        ],
    )
}

/// Sum of a boolean condition, as a count.
fn count_if(cond: Expr) -> Expr {
    cond.cast(DataType::UInt64).sum()
}

/// Flows of the rows where `cond` holds (rows of [`flow_frame`] may stand for several flows).
fn flows_if(cond: Expr) -> Expr {
    when(cond).then(col("flows")).otherwise(lit(0u64)).sum()
}

pub(super) fn hosts_frame(flows: &DataFrame) -> PolarsResult<DataFrame> {
    let is_platform = col("platform").is_not_null().and(col("control").not());
    let is_control = col("platform").is_not_null().and(col("control"));
    let mut aggs = vec![
        col("flows").sum().alias("flows"),
        col("packets").sum().alias("packets"),
        col("bytes").sum().alias("bytes"),
        flows_if(col("circumvention")).alias("circumvention_flows"),
        when(col("circumvention"))
            .then(col("bytes"))
            .otherwise(lit(0u64))
            .sum()
            .alias("circumvention_bytes"),
    ];
    for fam in CIRCUMVENTION_FAMILIES {
        aggs.push(
            flows_if(col("family").eq(lit(fam.name()))).alias(format!("{}_flows", fam.name())),
        );
    }
    aggs.push(flows_if(is_platform.clone()).alias("platform_attempts"));
    aggs.push(
        flows_if(is_platform.clone().and(col("result").eq(lit("success"))))
            .alias("platform_successes"),
    );
    for kind in FAILURE_KINDS.map(|k| k.name()) {
        aggs.push(
            flows_if(is_platform.clone().and(col("result").eq(lit(kind))))
                .alias(format!("platform_{kind}")),
        );
    }
    aggs.push(flows_if(is_control.clone()).alias("control_attempts"));
    aggs.push(
        flows_if(is_control.and(col("result").eq(lit("success")))).alias("control_successes"),
    );
    let hosts = flows
        .clone()
        .lazy()
        .group_by([col("window_start"), col("host")])
        .agg(aggs)
        .with_column(
            col("circumvention_flows")
                .gt(lit(0u64))
                .alias("uses_circumvention"),
        );
    let adoption = hosts
        .clone()
        .filter(col("uses_circumvention"))
        .group_by([col("host")])
        .agg([col("window_start").min().alias("adopted_window")]);
    hosts
        .join(
            adoption,
            [col("host")],
            [col("host")],
            JoinArgs::new(JoinType::Left),
        )
        .sort(["window_start", "host"], SortMultipleOptions::default())
        .collect()
}

/// Per window, each measured platform's attempts, successes and failure kinds
/// (`platform_<name>_*`), counted over the flows in one grouping.
fn platforms_window_frame(flows: &DataFrame, platforms: &[&str]) -> PolarsResult<DataFrame> {
    let mut aggs = Vec::with_capacity(platforms.len() * (2 + FAILURE_KINDS.len()));
    for name in platforms {
        let attempt = col("platform")
            .eq(lit(*name))
            .and(col("control").not())
            .fill_null(lit(false));
        aggs.push(flows_if(attempt.clone()).alias(platform_column(name, "attempts")));
        aggs.push(
            flows_if(attempt.clone().and(col("result").eq(lit("success"))))
                .alias(platform_column(name, "successes")),
        );
        for kind in FAILURE_KINDS.map(|k| k.name()) {
            aggs.push(
                flows_if(attempt.clone().and(col("result").eq(lit(kind))))
                    .alias(platform_column(name, kind)),
            );
        }
    }
    flows
        .clone()
        .lazy()
        .group_by([col("window_start")])
        .agg(aggs)
        .collect()
}

/// The `series` table of one grouping: the pooled columns from `hosts`, then the measured
/// platforms' own columns from `flows` ([`with_platform_columns`]).
pub(super) fn full_series_frame(
    flows: &DataFrame,
    hosts: &DataFrame,
    config: &StatsConfig,
) -> PolarsResult<DataFrame> {
    with_platform_columns(series_frame(hosts)?, flows, &config.measured_platforms())
}

pub(super) fn series_frame(hosts: &DataFrame) -> PolarsResult<DataFrame> {
    let mut aggs = vec![
        len().cast(DataType::UInt64).alias("active_hosts"),
        count_if(col("uses_circumvention")).alias("circumvention_hosts"),
    ];
    for fam in CIRCUMVENTION_FAMILIES {
        aggs.push(
            count_if(col(format!("{}_flows", fam.name())).gt(lit(0u64)))
                .alias(format!("{}_hosts", fam.name())),
        );
    }
    aggs.extend([
        count_if(col("adopted_window").eq(col("window_start"))).alias("new_adopters"),
        col("bytes").sum().alias("bytes"),
        col("circumvention_bytes")
            .sum()
            .alias("circumvention_bytes"),
        col("platform_attempts").sum().alias("platform_attempts"),
        col("platform_successes").sum().alias("platform_successes"),
    ]);
    for kind in FAILURE_KINDS {
        let name = format!("platform_{}", kind.name());
        aggs.push(col(name.as_str()).sum().alias(name));
    }
    aggs.extend([
        col("control_attempts").sum().alias("control_attempts"),
        col("control_successes").sum().alias("control_successes"),
    ]);
    hosts
        .clone()
        .lazy()
        .group_by([col("window_start")])
        .agg(aggs)
        .with_columns([
            ratio("circumvention_hosts", "active_hosts").alias("circumvention_host_share"),
            ratio("circumvention_bytes", "bytes").alias("circumvention_bytes_share"),
            ratio("platform_successes", "platform_attempts").alias("platform_success_ratio"),
            ratio("control_successes", "control_attempts").alias("control_success_ratio"),
        ])
        .sort(["window_start"], SortMultipleOptions::default())
        .collect()
}

/// Successes / attempts, null without attempts.
fn ratio(num: &str, den: &str) -> Expr {
    when(col(den).gt(lit(0u64)))
        .then(col(num).cast(DataType::Float64) / col(den).cast(DataType::Float64))
        .otherwise(lit(NULL).cast(DataType::Float64))
}

/// `series` with the per-platform columns of `platforms` appended (after every other column, so
/// the older columns keep their places), each platform's together: attempts, successes,
/// success_ratio, failure kinds. `flows` are the flow rows the series was grouped from.
pub(super) fn with_platform_columns(
    series: DataFrame,
    flows: &DataFrame,
    platforms: &[&str],
) -> PolarsResult<DataFrame> {
    if platforms.is_empty() {
        return Ok(series);
    }
    let per_platform = platforms_window_frame(flows, platforms)?;
    let ratios: Vec<Expr> = platforms
        .iter()
        .map(|name| {
            ratio(
                &platform_column(name, "successes"),
                &platform_column(name, "attempts"),
            )
            .alias(platform_column(name, "success_ratio"))
        })
        .collect();
    // Every series window has flows, so the left join finds each one.
    let joined = series
        .lazy()
        .join(
            per_platform.lazy(),
            [col("window_start")],
            [col("window_start")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns(ratios)
        .sort(["window_start"], SortMultipleOptions::default())
        .collect()?;
    let columns: Vec<String> = platforms
        .iter()
        .flat_map(|name| {
            super::PLATFORM_FIELDS
                .into_iter()
                .chain(FAILURE_KINDS.map(|k| k.name()))
                .map(move |field| platform_column(name, field))
        })
        .collect();
    let order: Vec<String> = joined
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .filter(|n| !columns.contains(n))
        .chain(columns.iter().cloned())
        .collect();
    joined.select(order)
}

pub(super) fn protocols_frame(flows: &DataFrame) -> PolarsResult<DataFrame> {
    flows
        .clone()
        .lazy()
        .filter(col("circumvention"))
        .group_by([col("window_start"), col("protocol")])
        .agg([col("host").n_unique().cast(DataType::UInt64).alias("hosts")])
        .sort(["window_start", "protocol"], SortMultipleOptions::default())
        .collect()
}

/// The metrics handed to the detector, one value per window (gaps filled with NaN).
const DETECTOR_METRICS: &[&str] = &[
    "active_hosts",
    "circumvention_hosts",
    "circumvention_host_share",
    "new_adopters",
    "circumvention_bytes_share",
    "platform_attempts",
    "platform_success_ratio",
    "control_success_ratio",
];

/// Control attempts (pooled control ratios) and per-kind failure counts (`platform_<kind>`,
/// evidence) for block detection; optional so that an older `series.parquet` still loads.
fn optional_metrics() -> impl Iterator<Item = String> {
    std::iter::once("control_attempts".to_string()).chain(
        FAILURE_KINDS
            .into_iter()
            .map(|k| format!("platform_{}", k.name())),
    )
}

/// The per-platform columns block detection reads (attempts, success ratio, failure kinds),
/// found by name, so a `series.parquet` read back brings whichever platforms it was written with.
fn per_platform_metrics(series: &DataFrame) -> Vec<String> {
    series
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .filter(|n| parse_platform_column(n).is_some_and(|(_, field)| field != "successes"))
        .collect()
}

/// Gaps longer than this (no flow at all) split a run into separate segments.
const SEGMENT_GAP_NANOS: i64 = 7 * 86_400 * 1_000_000_000;

/// The (first, last) window of the contiguous stretch with the most windows. Captures merged
/// from different years would otherwise make one dense series of millions of empty windows;
/// detection runs on the stretch that carries the data.
fn busiest_segment(windows: &[i64], step: i64) -> Option<(i64, i64)> {
    let mut best: Option<(usize, i64, i64)> = None;
    let mut start = 0;
    for i in 0..windows.len() {
        let ends =
            i + 1 == windows.len() || windows[i + 1] - windows[i] > SEGMENT_GAP_NANOS.max(step);
        if ends {
            let count = i + 1 - start;
            if best.is_none_or(|(c, _, _)| count > c) {
                best = Some((count, windows[start], windows[i]));
            }
            start = i + 1;
        }
    }
    best.map(|(_, a, b)| (a, b))
}

pub(super) fn metric_series(
    series: &DataFrame,
    window_secs: u32,
) -> PolarsResult<Vec<MetricSeries>> {
    let step = i64::from(window_secs.max(1)) * 1_000_000_000;
    let windows_col = series.column("window_start")?.cast(&DataType::Int64)?;
    let windows_ca = windows_col.i64()?;
    let windows: Vec<i64> = (0..windows_ca.len())
        .map(|i| windows_ca.get(i).unwrap_or(0))
        .collect();
    let Some((first, last)) = busiest_segment(&windows, step) else {
        return Ok(Vec::new());
    };
    let n = usize::try_from((last - first) / step + 1).unwrap_or(0);
    let mut out = Vec::new();
    let optional: Vec<String> = optional_metrics()
        .filter(|m| series.column(m).is_ok())
        .chain(per_platform_metrics(series))
        .collect();
    let names = DETECTOR_METRICS
        .iter()
        .copied()
        .chain(optional.iter().map(String::as_str));
    for metric in names {
        let col = series.column(metric)?.cast(&DataType::Float64)?;
        let mut values = vec![f64::NAN; n];
        let ca = col.f64()?;
        for (w, v) in windows.iter().zip((0..ca.len()).map(|i| ca.get(i))) {
            if *w < first || *w > last {
                continue;
            }
            let i = usize::try_from((w - first) / step).unwrap_or(usize::MAX);
            if let (Some(slot), Some(v)) = (values.get_mut(i), v) {
                *slot = v;
            }
        }
        // Windows with no traffic at all: zero hosts rather than unknown.
        if matches!(
            metric,
            "active_hosts"
                | "circumvention_hosts"
                | "new_adopters"
                | "platform_attempts"
                | "control_attempts"
        ) || metric.starts_with("platform_") && !metric.ends_with("_ratio")
        {
            for v in values.iter_mut().filter(|v| v.is_nan()) {
                *v = 0.0;
            }
        }
        out.push(MetricSeries {
            metric: metric.to_string(),
            start_ts_nanos: first,
            step_nanos: step,
            values,
        });
    }
    Ok(out)
}

/// The detector's metric series from a `series` table written earlier (the window length is
/// the smallest spacing of its windows, or `default_window_secs` for a single window): Parquet,
/// or by the file's extension the CSV or JSON of `analyze --tables csv|json`.
pub fn read_metric_series(path: &Path, default_window_secs: u32) -> io::Result<Vec<MetricSeries>> {
    let df = read_series_table(path)?;
    let windows_col = df
        .column("window_start")
        .map_err(to_io)?
        .cast(&DataType::Int64)
        .map_err(to_io)?;
    let ca = windows_col.i64().map_err(to_io)?;
    let mut windows: Vec<i64> = (0..ca.len()).filter_map(|i| ca.get(i)).collect();
    windows.sort_unstable();
    let step = windows
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 0)
        .min();
    let window_secs = step.map_or(default_window_secs, |s| {
        u32::try_from(s / 1_000_000_000).unwrap_or(u32::MAX).max(1)
    });
    metric_series(&df, window_secs).map_err(to_io)
}

/// A `series` table as written by [`write_table`], chosen by extension (`.csv`, `.json`, else
/// Parquet). CSV and JSON carry `window_start` as UTC text without an offset
/// (`2024-02-15T19:00:00.000000000`, `2024-02-15 19:00:00`); it is turned back into Unix
/// nanoseconds (Int64, as the Parquet datetime casts to), and an unreadable time is an error.
fn read_series_table(path: &Path) -> io::Result<DataFrame> {
    use polars_io::json::JsonReader;
    use polars_io::parquet::read::ParquetReader;
    use polars_io::SerReader;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let mut df = match extension.as_deref() {
        Some("csv") => CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish()),
        Some("json") => JsonReader::new(std::fs::File::open(path)?)
            .with_json_format(JsonFormat::Json)
            .finish(),
        _ => ParquetReader::new(std::fs::File::open(path)?).finish(),
    }
    .map_err(to_io)?;
    let column = df.column("window_start").map_err(to_io)?;
    if let Ok(text) = column.str() {
        let nanos = (0..text.len())
            .map(|i| text.get(i))
            .map(|s| {
                s.and_then(|s| crate::civil::parse_timestamp(s).ok())
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{}: window_start {s:?} is not a UTC time", path.display()),
                        )
                    })
            })
            .collect::<io::Result<Vec<i64>>>()?;
        df.with_column(Column::new("window_start".into(), nanos))
            .map_err(to_io)?;
    } else if let DataType::Datetime(unit, _) = column.dtype() {
        if *unit != TimeUnit::Nanoseconds {
            let ns = column
                .cast(&DataType::Datetime(TimeUnit::Nanoseconds, None))
                .map_err(to_io)?;
            df.with_column(ns).map_err(to_io)?;
        }
    }
    Ok(df)
}

pub fn write_window_tables(
    cols: &FlowColumns,
    config: &StatsConfig,
    dir: &Path,
    formats: &[TableFormat],
) -> io::Result<(Vec<MetricSeries>, Vec<PathBuf>)> {
    let flows = flow_frame(cols).map_err(to_io)?;
    let mut hosts = hosts_frame(&flows).map_err(to_io)?;
    let mut series = full_series_frame(&flows, &hosts, config).map_err(to_io)?;
    let mut protocols = protocols_frame(&flows).map_err(to_io)?;
    let metrics = metric_series(&series, config.window_secs).map_err(to_io)?;
    let mut written = Vec::new();
    for format in formats {
        for (name, df) in [
            ("hosts", &mut hosts),
            ("series", &mut series),
            ("series_protocols", &mut protocols),
        ] {
            let path = dir.join(format!("{name}.{}", format.extension()));
            write_table(df, &path, *format)?;
            written.push(path);
        }
    }
    Ok((metrics, written))
}

/// Every column of a Parquet file as text, row by row; datetime columns as RFC 3339 UTC.
pub fn read_parquet_as_text(path: &Path) -> io::Result<(Vec<String>, Vec<Vec<String>>)> {
    let df = read_parquet(path)?;
    Ok((column_names(&df), text_rows(&df)?))
}

/// [`read_parquet_as_text`] a slice of `rows_per_chunk` rows at a time: the table is read
/// whole (columnar, compact) but only one slice at a time is turned into text, which takes
/// several times the room. An empty table gives one empty slice.
pub fn each_parquet_text_chunk(
    path: &Path,
    rows_per_chunk: usize,
    each: &mut super::TextSliceSink<'_>,
) -> io::Result<()> {
    let df = read_parquet(path)?;
    let names = column_names(&df);
    if df.height() == 0 {
        return each(&names, &[]);
    }
    let step = rows_per_chunk.max(1);
    for offset in (0..df.height()).step_by(step) {
        let chunk = df.slice(offset as i64, step);
        each(&names, &text_rows(&chunk)?)?;
    }
    Ok(())
}

fn read_parquet(path: &Path) -> io::Result<DataFrame> {
    use polars_io::parquet::read::ParquetReader;
    use polars_io::SerReader;
    let file = std::fs::File::open(path)?;
    ParquetReader::new(file).finish().map_err(to_io)
}

fn column_names(df: &DataFrame) -> Vec<String> {
    df.get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect()
}

/// The rows of `df` as text.
fn text_rows(df: &DataFrame) -> io::Result<Vec<Vec<String>>> {
    let mut rows = vec![Vec::with_capacity(df.width()); df.height()];
    for column in df.columns() {
        let text: Vec<String> = if let DataType::Datetime(unit, _) = column.dtype() {
            let per_unit = match unit {
                TimeUnit::Nanoseconds => 1,
                TimeUnit::Microseconds => 1_000,
                TimeUnit::Milliseconds => 1_000_000,
            };
            let ints = column.cast(&DataType::Int64).map_err(to_io)?;
            let ca = ints.i64().map_err(to_io)?;
            (0..ca.len())
                .map(|i| {
                    ca.get(i)
                        .and_then(|v| v.checked_mul(per_unit))
                        .map_or_else(String::new, crate::civil::format_ts)
                })
                .collect()
        } else {
            let strings = column.cast(&DataType::String).map_err(to_io)?;
            let ca = strings.str().map_err(to_io)?;
            (0..ca.len())
                .map(|i| ca.get(i).unwrap_or_default().to_string())
                .collect()
        };
        for (row, value) in rows.iter_mut().zip(text) {
            row.push(value);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::AttemptResult;

    /// The flows table written a few rows per batch reads back as written in one batch, with
    /// the numbers it was given, and as the frame of the records themselves.
    #[test]
    fn flows_table_in_batches_reads_back_whole() {
        let dir = std::env::temp_dir().join(format!("tw-flow-batches-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let records: Vec<FlowRecord> = (0..10u64)
            .map(crate::flow::interleaved_test_record)
            .collect();
        // The test flows' servers (192.0.2.0/24) are a platform of their own here.
        let mut platforms = crate::intel::platforms::PlatformMatcher::default();
        platforms
            .load_user("test,false,,192.0.2.0/24\n")
            .expect("valid definitions");
        let write = |name: &str, rows_per_batch: usize, first_id: u64| {
            let path = dir.join(name);
            let file = std::fs::File::create(&path).expect("create");
            let (mut row, mut scratch) = (Vec::new(), String::new());
            write_flow_batches(
                file,
                |each| {
                    for (i, r) in records.iter().enumerate() {
                        row.clear();
                        let platform = super::super::flow_platform(r, &platforms)
                            .map_or("", |p| p.name.as_str());
                        encode_flow_row(
                            r,
                            (r.client_ip, r.server_ip),
                            platform,
                            &mut row,
                            &mut scratch,
                        );
                        each(first_id + i as u64, &row)?;
                    }
                    Ok(())
                },
                rows_per_batch,
            )
            .expect("write");
            read_parquet_as_text(&path).expect("read back")
        };
        let whole = write("whole.parquet", 1000, 0);
        assert_eq!(whole.1.len(), 10);
        let platform = whole
            .0
            .iter()
            .position(|n| n == "platform")
            .expect("platform");
        assert!(
            whole.1.iter().all(|row| row[platform] == "test"),
            "{whole:?}"
        );
        assert_eq!(write("threes.parquet", 3, 0), whole);
        let (names, rows) = write("renumbered.parquet", 4, 100);
        let id = names.iter().position(|n| n == "id").expect("id column");
        let ids: Vec<&str> = rows.iter().map(|r| r[id].as_str()).collect();
        let expected: Vec<String> = (100..110).map(|i: u64| i.to_string()).collect();
        assert_eq!(ids, expected);
        // And the same as the frame of the records (numbered 0..10).
        let mut numbered = records.clone();
        numbered
            .iter_mut()
            .enumerate()
            .for_each(|(i, r)| r.id = i as u64);
        let mut df = flows_frame(&numbered, &platforms).expect("frame");
        let path = dir.join("frame.parquet");
        ParquetWriter::new(std::fs::File::create(&path).expect("create"))
            .finish(&mut df)
            .expect("write");
        assert_eq!(read_parquet_as_text(&path).expect("read back"), whole);

        // Read back a slice at a time: the same rows, and the same flows numbered across the
        // slices as read whole.
        let mut sliced = Vec::new();
        let mut sizes = Vec::new();
        let mut reader = None;
        let mut flows = Vec::new();
        each_parquet_text_chunk(&path, 4, &mut |names, rows| {
            assert_eq!(names, whole.0.as_slice());
            sizes.push(rows.len());
            sliced.extend_from_slice(rows);
            reader
                .get_or_insert_with(|| {
                    crate::ingest::flowlog::flow_table::FlowTableRows::new(names).expect("table")
                })
                .read(rows, &mut |f| flows.push(f));
            Ok(())
        })
        .expect("slices");
        assert_eq!(sizes, [4, 4, 2]);
        assert_eq!(sliced, whole.1);
        let (all_at_once, stats) =
            crate::ingest::flowlog::flow_table::read_flow_table_rows(&whole.0, &whole.1)
                .expect("table");
        let reader = reader.expect("rows were read");
        assert_eq!(reader.stats.records, stats.records);
        let ids = |f: &[FlowRecord]| f.iter().map(|r| (r.id, r.client_port)).collect::<Vec<_>>();
        assert_eq!(ids(&flows), ids(&all_at_once));
        assert_eq!(ids(&flows).last().map(|p| p.0), Some(9));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Flows merged into groups ([`super::super::FlowGroups`]) give the window tables and the
    /// detector's series of one row per flow.
    #[test]
    fn grouped_flows_give_the_tables_of_single_flows() {
        use crate::fingerprint::Family;
        let labels = [
            ("openvpn", Family::Vpn),
            ("tor", Family::Tor),
            ("dns", Family::Other),
        ];
        let records: Vec<FlowRecord> = (0..3000u64)
            .map(|i| {
                let mut r = crate::flow::labelled_test_record(i, &labels);
                r.first_ts = (i % 7) as i64 * 300_000_000_000 + i as i64;
                r.packets = [1 + i % 5, i % 3];
                r.bytes = [100 * (i % 9), 7 * i];
                r
            })
            .collect();
        let config = StatsConfig::default();
        let single = FlowColumns::of(&records, &config);
        let mut groups = super::super::FlowGroups::default();
        records.iter().for_each(|r| groups.add(r, &config));
        let grouped = groups.into_columns();
        assert!(
            grouped.len() * 10 < single.len(),
            "{} groups",
            grouped.len()
        );
        assert_eq!(grouped.flows.iter().sum::<u64>(), records.len() as u64);
        let root = std::env::temp_dir().join(format!("tw-groups-{}", std::process::id()));
        let tables = |name: &str, cols: &FlowColumns| {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).expect("temp dir");
            let (metrics, paths) =
                write_window_tables(cols, &config, &dir, &[TableFormat::Csv]).expect("tables");
            let files: Vec<String> = paths
                .iter()
                .map(|p| std::fs::read_to_string(p).expect("table"))
                .collect();
            (format!("{metrics:?}"), files)
        };
        let (single_metrics, single_files) = tables("single", &single);
        let (grouped_metrics, grouped_files) = tables("grouped", &grouped);
        assert!(single_files.iter().any(|f| f.lines().count() > 7));
        assert!(single_files == grouped_files, "tables differ");
        assert!(single_metrics == grouped_metrics, "metrics differ");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// `cols` with equal rows (all but the counts) merged into one, as `FlowGroups` makes them.
    fn merged(cols: &FlowColumns) -> FlowColumns {
        let mut out = FlowColumns::default();
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for i in 0..cols.len() {
            let key = format!(
                "{} {} {} {} {} {:?} {} {}",
                cols.window_start[i],
                cols.host[i],
                cols.family[i],
                cols.protocol[i],
                cols.circumvention[i],
                cols.platform[i],
                cols.control[i],
                cols.result[i]
            );
            if let Some(&j) = seen.get(&key) {
                out.flows[j] += cols.flows[i];
                out.packets[j] += cols.packets[i];
                out.bytes[j] += cols.bytes[i];
                continue;
            }
            seen.insert(key, out.len());
            out.flows.push(cols.flows[i]);
            out.window_start.push(cols.window_start[i]);
            out.host.push(cols.host[i].clone());
            out.family.push(cols.family[i]);
            out.protocol.push(cols.protocol[i]);
            out.circumvention.push(cols.circumvention[i]);
            out.packets.push(cols.packets[i]);
            out.bytes.push(cols.bytes[i]);
            out.platform.push(cols.platform[i].clone());
            out.control.push(cols.control[i]);
            out.result.push(cols.result[i]);
        }
        out
    }

    /// Platform attempts of merged rows count once per flow, in the tables and in the report's
    /// series.
    #[test]
    fn merged_platform_attempts_count_per_flow() {
        let single = cols_with_youtube();
        let grouped = merged(&single);
        assert!(grouped.len() < single.len());
        let config = StatsConfig {
            window_secs: 300,
            ..StatsConfig::default()
        };
        let frames = |cols: &FlowColumns| {
            let flows = flow_frame(cols).expect("flows");
            let hosts = hosts_frame(&flows).expect("hosts");
            let series = full_series_frame(&flows, &hosts, &config).expect("series");
            (hosts, series)
        };
        let (single_hosts, single_series) = frames(&single);
        let (grouped_hosts, grouped_series) = frames(&grouped);
        assert!(single_hosts.equals_missing(&grouped_hosts));
        assert!(single_series.equals_missing(&grouped_series));
        let step = 300_000_000_000;
        // Compared as text: NaN (a ratio without attempts) is not equal to itself.
        let series = |cols: &FlowColumns| {
            format!(
                "{:?}",
                crate::report::html::window_series_from_columns(cols, &[], step)
            )
        };
        assert_eq!(series(&single), series(&grouped));
    }

    /// A damaged spilled row is an error, not a panic or a wrong row.
    #[test]
    fn damaged_rows_are_refused() {
        let r = crate::flow::interleaved_test_record(3);
        let (mut row, mut scratch) = (Vec::new(), String::new());
        encode_flow_row(&r, (r.client_ip, r.server_ip), "x", &mut row, &mut scratch);
        let mut table = FlowTableColumns::default();
        table.push(0, &row).expect("whole row");
        for cut in [0, 1, 17, row.len() - 1] {
            assert!(table.push(1, &row[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(table.len(), 1);
    }

    fn cols() -> FlowColumns {
        let w = 300_000_000_000i64;
        let mut c = FlowColumns::default();
        /// (window, host, family, protocol, platform, result)
        type Row<'a> = (
            i64,
            &'a str,
            &'static str,
            &'static str,
            Option<&'a str>,
            AttemptResult,
        );
        let rows: [Row; 6] = [
            (
                0,
                "10.0.0.1",
                "web",
                "tls",
                Some("x"),
                AttemptResult::Success,
            ),
            (
                0,
                "10.0.0.2",
                "vpn",
                "wireguard",
                None,
                AttemptResult::Other,
            ),
            (
                w,
                "10.0.0.1",
                "web",
                "tls",
                Some("x"),
                AttemptResult::ResetAfterClientData,
            ),
            (w, "10.0.0.1", "vpn", "openvpn", None, AttemptResult::Other),
            (
                w,
                "10.0.0.2",
                "vpn",
                "wireguard",
                None,
                AttemptResult::Other,
            ),
            (
                w,
                "10.0.0.3",
                "web",
                "tls",
                Some("wikipedia"),
                AttemptResult::Success,
            ),
        ];
        for (win, host, fam, proto, platform, result) in rows {
            c.flows.push(1);
            c.window_start.push(win);
            c.host.push(host.into());
            c.family.push(fam);
            c.protocol.push(proto);
            c.circumvention.push(fam == "vpn");
            c.packets.push(10);
            c.bytes.push(1000);
            c.control.push(platform == Some("wikipedia"));
            c.platform.push(platform.map(str::to_string));
            c.result.push(result.name());
        }
        c
    }

    #[test]
    fn hosts_series_and_adoption() {
        let flows = flow_frame(&cols()).unwrap();
        let hosts = hosts_frame(&flows).unwrap();
        assert_eq!(hosts.height(), 5);
        let series = series_frame(&hosts).unwrap();
        assert_eq!(series.height(), 2);
        let get = |name: &str| -> Vec<Option<f64>> {
            let c = series
                .column(name)
                .unwrap()
                .cast(&DataType::Float64)
                .unwrap();
            let ca = c.f64().unwrap().clone();
            (0..ca.len()).map(|i| ca.get(i)).collect()
        };
        assert_eq!(get("active_hosts"), vec![Some(2.0), Some(3.0)]);
        assert_eq!(get("circumvention_hosts"), vec![Some(1.0), Some(2.0)]);
        assert_eq!(
            get("new_adopters"),
            vec![Some(1.0), Some(1.0)],
            "host .2 adopts in window 0, host .1 in window 1"
        );
        assert_eq!(get("platform_success_ratio"), vec![Some(1.0), Some(0.0)]);
        // Failure kinds are summed per window, the new throttled kind among them.
        assert_eq!(
            get("platform_reset_after_client_data"),
            vec![Some(0.0), Some(1.0)]
        );
        assert_eq!(get("platform_throttled"), vec![Some(0.0), Some(0.0)]);
        assert!(hosts.column("platform_throttled").is_ok());
        assert_eq!(get("control_success_ratio"), vec![None, Some(1.0)]);
        let protocols = protocols_frame(&flows).unwrap();
        assert_eq!(
            protocols.height(),
            3,
            "w0 wireguard, w1 openvpn, w1 wireguard"
        );
        let metrics = metric_series(&series, 300).unwrap();
        assert!(metrics.iter().any(|m| m.metric == "platform_throttled"));
        assert!(metrics.iter().any(|m| m.metric == "control_attempts"));
        let share = metrics
            .iter()
            .find(|m| m.metric == "circumvention_host_share")
            .unwrap();
        assert_eq!(share.values.len(), 2);
        assert!((share.values[1] - 2.0 / 3.0).abs() < 1e-9);
    }

    /// Values of a column as f64 (None for null).
    fn values(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
        let c = df.column(name).unwrap().cast(&DataType::Float64).unwrap();
        let ca = c.f64().unwrap().clone();
        (0..ca.len()).map(|i| ca.get(i)).collect()
    }

    /// `cols()` plus YouTube attempts that all succeed in both windows.
    fn cols_with_youtube() -> FlowColumns {
        let mut c = cols();
        for (win, result) in [
            (0, AttemptResult::Success),
            (300_000_000_000, AttemptResult::Success),
            (300_000_000_000, AttemptResult::Success),
            (300_000_000_000, AttemptResult::Success),
        ] {
            c.flows.push(1);
            c.window_start.push(win);
            c.host.push("10.0.0.4".into());
            c.family.push("web");
            c.protocol.push("tls");
            c.circumvention.push(false);
            c.packets.push(10);
            c.bytes.push(1000);
            c.control.push(false);
            c.platform.push(Some("youtube".into()));
            c.result.push(result.name());
        }
        c
    }

    #[test]
    fn per_platform_columns_follow_the_pooled_ones() {
        let flows = flow_frame(&cols_with_youtube()).unwrap();
        let hosts = hosts_frame(&flows).unwrap();
        let pooled = series_frame(&hosts).unwrap();
        let pooled_names = pooled.get_column_names_owned();
        let series =
            with_platform_columns(pooled.clone(), &flows, &["x", "youtube", "tiktok"]).unwrap();
        // The pooled columns are untouched, in their places; then each platform's block.
        let names: Vec<String> = series
            .get_column_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            names[..pooled_names.len()],
            pooled_names
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()[..]
        );
        assert_eq!(names[pooled_names.len()], "platform_x_attempts");
        assert_eq!(names[pooled_names.len() + 2], "platform_x_success_ratio");
        assert_eq!(names.len(), pooled_names.len() + 3 * 8);
        for name in pooled_names.iter() {
            assert_eq!(values(&series, name), values(&pooled, name), "{name}");
        }
        // X: one success, then one reset; YouTube fine throughout; the pooled ratio of the
        // second window (3 of 4) hides X's 0 of 1.
        assert_eq!(
            values(&series, "platform_x_attempts"),
            [Some(1.0), Some(1.0)]
        );
        assert_eq!(
            values(&series, "platform_x_success_ratio"),
            [Some(1.0), Some(0.0)]
        );
        assert_eq!(
            values(&series, "platform_x_reset_after_client_data"),
            [Some(0.0), Some(1.0)]
        );
        assert_eq!(
            values(&series, "platform_youtube_successes"),
            [Some(1.0), Some(3.0)]
        );
        assert_eq!(
            values(&series, "platform_youtube_success_ratio"),
            [Some(1.0), Some(1.0)]
        );
        assert_eq!(
            values(&series, "platform_success_ratio"),
            [Some(1.0), Some(0.75)]
        );
        // A platform never tried: zero attempts, no ratio.
        assert_eq!(
            values(&series, "platform_tiktok_attempts"),
            [Some(0.0), Some(0.0)]
        );
        assert_eq!(
            values(&series, "platform_tiktok_success_ratio"),
            [None, None]
        );
        // Controls never count for a platform of the same name.
        assert!(series.column("platform_wikipedia_attempts").is_err());

        let metrics = metric_series(&series, 300).unwrap();
        let metric = |name: &str| {
            metrics
                .iter()
                .find(|m| m.metric == name)
                .map(|m| m.values.clone())
        };
        assert_eq!(metric("platform_x_success_ratio"), Some(vec![1.0, 0.0]));
        assert_eq!(metric("platform_x_attempts"), Some(vec![1.0, 1.0]));
        assert_eq!(metric("platform_x_throttled"), Some(vec![0.0, 0.0]));
        assert!(
            metric("platform_tiktok_success_ratio").is_some_and(|v| v.iter().all(|x| x.is_nan()))
        );
        assert_eq!(
            metric("platform_x_successes"),
            None,
            "detection needs no success counts"
        );
        assert_eq!(metric("platform_success_ratio"), Some(vec![1.0, 0.75]));
    }

    #[test]
    fn per_platform_metrics_come_back_from_series_parquet() {
        let dir = std::env::temp_dir().join(format!(
            "tunnelwatch-frame-per-platform-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = StatsConfig::default();
        let (metrics, written) = write_window_tables(
            &cols_with_youtube(),
            &config,
            &dir,
            &[TableFormat::Parquet, TableFormat::Csv],
        )
        .unwrap();
        assert!(written.iter().any(|p| p.ends_with("series.csv")));
        let back = read_metric_series(&dir.join("series.parquet"), 300).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let names = |m: &[MetricSeries]| m.iter().map(|m| m.metric.clone()).collect::<Vec<_>>();
        assert_eq!(names(&back), names(&metrics));
        for name in [
            "platform_x_success_ratio",
            "platform_youtube_attempts",
            "platform_signal_no_reply",
        ] {
            assert!(names(&back).iter().any(|n| n == name), "{name}");
        }
        let ratio = |m: &[MetricSeries]| {
            m.iter()
                .find(|m| m.metric == "platform_x_success_ratio")
                .map(|m| m.values.clone())
        };
        assert_eq!(ratio(&back), Some(vec![1.0, 0.0]));
    }

    #[test]
    fn busiest_segment_skips_years_of_nothing() {
        let day = 86_400_000_000_000i64;
        let step = 300_000_000_000;
        let windows = [
            0,
            step,
            3000 * day,
            3000 * day + step,
            3000 * day + 2 * step,
            9000 * day,
        ];
        assert_eq!(
            busiest_segment(&windows, step),
            Some((3000 * day, 3000 * day + 2 * step))
        );
        assert_eq!(busiest_segment(&[], step), None);
    }

    #[test]
    fn empty_flow_table_has_every_column() {
        let df = flows_frame(&[], &Default::default()).unwrap();
        assert_eq!(df.width(), crate::cli::FLOW_COLUMNS.len());
        assert_eq!(df.height(), 0);
    }
}
