//! Statistics of a run that does not end: a live capture's per-window tables in bounded memory.
//!
//! `analyze` groups every flow of a capture at once. A live capture runs for days, so holding a
//! row per flow (and regrouping all of them at every window edge) would grow without bound.
//! Instead windows are *frozen* once they are older than the revision horizon
//! (`revise_windows` windows before the open one): their host rows go to disk as a rotated part
//! (`hosts-<first window start>.<format>` in the hosts folder), their series and
//! series-protocol rows stay in memory (one row per window, tens of bytes a metric), and their
//! flow rows are dropped. What stays in memory is therefore bounded by the flows that started
//! within the horizon, one row per series window, and one adoption date per host that ever used
//! circumvention.
//!
//! Two facts would be lost by dropping rows, and are kept:
//! - *Adoption* (a host's first window with circumvention): each frozen adopter keeps one
//!   marker row in its adoption window, so `adopted_window` and `new_adopters` of later windows
//!   are the same as for the whole run; marker windows are always frozen, so their rows never
//!   reach an output.
//!   A frozen host row carries the adoption known when it froze: `adopted_window` is null on
//!   rows of a host that adopted only later (the whole-run table repeats the later date there).
//! - *Late flows*: a flow is counted in the window it started in; one that finishes after that
//!   window was frozen (it outlived the horizon) is counted in the oldest window still open for
//!   revision, and counted in [`RollingStats::late_flows`]. With the default horizon (at least the
//!   flow idle timeouts) only flows that stay active longer than the horizon are moved.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::frame::{
    flow_frame, full_series_frame, hosts_frame, metric_series, protocols_frame, to_io, write_table,
};
use super::{FlowColumns, MetricSeries, StatsConfig, TableFormat};

/// Per-window statistics of an open-ended run, frozen window by window (module docs).
pub struct RollingStats {
    config: StatsConfig,
    step: i64,
    revise_windows: i64,
    /// Flows of the windows still open for revision, plus one marker row per frozen adopter.
    cols: FlowColumns,
    /// First window with circumvention, per host (as shown in the outputs).
    adopters: HashMap<String, i64>,
    /// Windows before this start are frozen (`i64::MIN`: none yet).
    cutoff: i64,
    frozen_series: Option<DataFrame>,
    frozen_protocols: Option<DataFrame>,
    hosts_dir: PathBuf,
    formats: Vec<TableFormat>,
    late_flows: u64,
    host_parts: Vec<PathBuf>,
}

/// What the run's tables say so far.
#[derive(Debug, Clone, Default)]
pub struct RollingMetrics {
    /// The detector's metrics (as [`super::write_window_tables`] returns them) over every
    /// window of the run.
    pub detector: Vec<MetricSeries>,
    /// Every numeric column of the series table, for the report's charts.
    pub all_columns: Vec<MetricSeries>,
}

impl RollingStats {
    /// Statistics for windows of `config.window_secs`, revised for `revise_windows` windows
    /// (at least 1) after they close; frozen host rows are written into `hosts_dir` in each of
    /// `formats`.
    pub fn new(
        config: StatsConfig,
        revise_windows: u32,
        hosts_dir: &Path,
        formats: &[TableFormat],
    ) -> Self {
        RollingStats {
            step: i64::from(config.window_secs.max(1)) * 1_000_000_000,
            config,
            revise_windows: i64::from(revise_windows.max(1)),
            cols: FlowColumns::default(),
            adopters: HashMap::new(),
            cutoff: i64::MIN,
            frozen_series: None,
            frozen_protocols: None,
            hosts_dir: hosts_dir.to_path_buf(),
            formats: formats.to_vec(),
            late_flows: 0,
            host_parts: Vec::new(),
        }
    }

    /// Flows that finished after the window they started in was frozen (counted in the oldest
    /// open window instead).
    pub fn late_flows(&self) -> u64 {
        self.late_flows
    }

    /// Flow rows held now (the bounded part of the state).
    pub fn rows_held(&self) -> usize {
        self.cols.len()
    }

    /// The host-row parts written so far.
    pub fn host_parts(&self) -> &[PathBuf] {
        &self.host_parts
    }

    /// Adds finished flows as `cols`, reduced with this run's [`StatsConfig`] (a window's
    /// columns, already built for its own tables).
    pub fn push_columns(&mut self, cols: &FlowColumns) {
        let first = self.cols.len();
        self.cols.append(cols);
        self.account_rows_from(first);
    }

    /// Moves late rows (from `first` on) into the first open window and records adoptions.
    fn account_rows_from(&mut self, first: usize) {
        for row in first..self.cols.len() {
            if let Some(w) = self.cols.window_start.get_mut(row) {
                if *w < self.cutoff {
                    *w = self.cutoff;
                    self.late_flows += self.cols.flows.get(row).copied().unwrap_or(1);
                }
            }
            if !self.cols.circumvention.get(row).copied().unwrap_or(false) {
                continue;
            }
            let (Some(&w), Some(host)) = (self.cols.window_start.get(row), self.cols.host.get(row))
            else {
                continue;
            };
            match self.adopters.get_mut(host) {
                Some(first) => *first = (*first).min(w),
                None => {
                    self.adopters.insert(host.clone(), w);
                }
            }
        }
    }

    /// Closes the revision of windows older than `revise_windows` before `open_window_start`
    /// (the window now being captured) and returns the run's metrics so far.
    pub fn roll(&mut self, open_window_start: i64) -> io::Result<RollingMetrics> {
        let cutoff =
            open_window_start.saturating_sub(self.revise_windows.saturating_mul(self.step));
        self.advance(cutoff)
    }

    /// Freezes every window (the run ended): writes the last host parts and the run's `series`
    /// and `series_protocols` tables into `dir` in every format; returns the metrics and the
    /// table paths written.
    pub fn finish(mut self, dir: &Path) -> io::Result<(RollingMetrics, Vec<PathBuf>)> {
        let metrics = self.advance(i64::MAX)?;
        let mut written = Vec::new();
        let formats = self.formats.clone();
        for format in formats {
            for (name, df) in [
                ("series", &mut self.frozen_series),
                ("series_protocols", &mut self.frozen_protocols),
            ] {
                let Some(df) = df else { continue };
                let path = dir.join(format!("{name}.{}", format.extension()));
                write_table(df, &path, format)?;
                written.push(path);
            }
        }
        Ok((metrics, written))
    }

    fn advance(&mut self, cutoff: i64) -> io::Result<RollingMetrics> {
        let flows = flow_frame(&self.cols).map_err(to_io)?;
        let hosts = hosts_frame(&flows).map_err(to_io)?;
        let series = full_series_frame(&flows, &hosts, &self.config).map_err(to_io)?;
        let protocols = protocols_frame(&flows).map_err(to_io)?;
        // Rows of windows before the old cutoff are adoption markers (already frozen).
        let old = self.cutoff;
        let cutoff = cutoff.max(old);
        if cutoff > old {
            let mut newly_frozen_hosts = between(&hosts, old, cutoff).map_err(to_io)?;
            if newly_frozen_hosts.height() > 0 {
                self.write_host_part(&mut newly_frozen_hosts)?;
            }
            let s = between(&series, old, cutoff).map_err(to_io)?;
            let p = between(&protocols, old, cutoff).map_err(to_io)?;
            stack(&mut self.frozen_series, s).map_err(to_io)?;
            stack(&mut self.frozen_protocols, p).map_err(to_io)?;
            self.cutoff = cutoff;
            self.compact();
        }
        // The run so far: frozen rows, then the windows still open for revision.
        let mut full = self.frozen_series.clone();
        if cutoff < i64::MAX {
            let open = between(&series, cutoff, i64::MAX).map_err(to_io)?;
            stack(&mut full, open).map_err(to_io)?;
        }
        let Some(full) = full else {
            return Ok(RollingMetrics::default());
        };
        Ok(RollingMetrics {
            detector: metric_series(&full, self.config.window_secs).map_err(to_io)?,
            all_columns: all_columns(&full, self.step).map_err(to_io)?,
        })
    }

    fn write_host_part(&mut self, hosts: &mut DataFrame) -> io::Result<()> {
        let first = window_starts(hosts)
            .map_err(to_io)?
            .into_iter()
            .min()
            .unwrap_or(0);
        std::fs::create_dir_all(&self.hosts_dir)?;
        for format in self.formats.clone() {
            let path = self.hosts_dir.join(format!(
                "hosts-{}.{}",
                first.div_euclid(1_000_000_000),
                format.extension()
            ));
            write_table(hosts, &path, format)?;
            self.host_parts.push(path);
        }
        Ok(())
    }

    /// Drops the rows of frozen windows and puts one adoption marker per frozen adopter.
    fn compact(&mut self) {
        let mut kept = std::mem::take(&mut self.cols);
        kept.retain_windows_from(self.cutoff);
        for (host, &w) in self.adopters.iter().filter(|(_, &w)| w < self.cutoff) {
            kept.push_adoption_marker(w, host.clone());
        }
        self.cols = kept;
    }
}

fn window_starts(df: &DataFrame) -> PolarsResult<Vec<i64>> {
    let c = df.column("window_start")?.cast(&DataType::Int64)?;
    let ca = c.i64()?;
    Ok((0..ca.len()).filter_map(|i| ca.get(i)).collect())
}

/// Rows whose `window_start` is in `[from, to)` (Unix nanoseconds).
fn between(df: &DataFrame, from: i64, to: i64) -> PolarsResult<DataFrame> {
    let w = col("window_start").cast(DataType::Int64);
    df.clone()
        .lazy()
        .filter(w.clone().gt_eq(lit(from)).and(w.lt(lit(to))))
        .collect()
}

/// Appends `rows` below `acc`; columns only one side has are filled with nulls on the other
/// (the set of columns can grow as the run meets new failure kinds or platforms).
fn stack(acc: &mut Option<DataFrame>, rows: DataFrame) -> PolarsResult<()> {
    if rows.height() == 0 && acc.is_some() {
        return Ok(());
    }
    let Some(top) = acc.as_mut() else {
        *acc = Some(rows);
        return Ok(());
    };
    let mut bottom = rows;
    for c in top.columns().to_vec() {
        if bottom.column(c.name()).is_err() {
            bottom.with_column(Column::full_null(
                c.name().clone(),
                bottom.height(),
                c.dtype(),
            ))?;
        }
    }
    for c in bottom.columns().to_vec() {
        if top.column(c.name()).is_err() {
            top.with_column(Column::full_null(c.name().clone(), top.height(), c.dtype()))?;
        }
    }
    let names: Vec<PlSmallStr> = top.get_column_names().into_iter().cloned().collect();
    let bottom = bottom.select(names)?;
    top.vstack_mut(&bottom)?;
    Ok(())
}

/// Every numeric column of a series table as a metric on the window grid (NaN where a window
/// has no row or the value is null).
fn all_columns(series: &DataFrame, step: i64) -> PolarsResult<Vec<MetricSeries>> {
    let windows = window_starts(series)?;
    let (Some(&first), Some(&last)) = (windows.iter().min(), windows.iter().max()) else {
        return Ok(Vec::new());
    };
    let n = usize::try_from((last - first) / step + 1).unwrap_or(0);
    let mut out = Vec::new();
    for c in series.columns() {
        if c.name().as_str() == "window_start" || !c.dtype().is_primitive_numeric() {
            continue;
        }
        let values = c.cast(&DataType::Float64)?;
        let ca = values.f64()?;
        let mut grid = vec![f64::NAN; n];
        for (w, v) in windows.iter().zip((0..ca.len()).map(|i| ca.get(i))) {
            let i = usize::try_from((w - first) / step).unwrap_or(usize::MAX);
            if let (Some(slot), Some(v)) = (grid.get_mut(i), v) {
                *slot = v;
            }
        }
        out.push(MetricSeries {
            metric: c.name().to_string(),
            start_ts_nanos: first,
            step_nanos: step,
            values: grid,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowRecord;

    fn sample_records() -> Vec<FlowRecord> {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/pk-x-2024-small.pcap");
        let mut pipeline = crate::pipeline::Pipeline::new(Default::default());
        let report = pipeline.feed_file(&sample, &mut |_, _| {});
        assert_eq!(report.status, crate::pipeline::FileStatus::Complete);
        pipeline.finish().0
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tw-rolling-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn rows(paths: &[PathBuf]) -> Vec<serde_json::Value> {
        let mut out: Vec<serde_json::Value> = paths
            .iter()
            .flat_map(|p| {
                let text = std::fs::read_to_string(p).expect("table written");
                let v: serde_json::Value = serde_json::from_str(&text).expect("JSON table");
                v.as_array().cloned().unwrap_or_default()
            })
            .collect();
        out.sort_by_key(|v| v.to_string());
        out
    }

    /// Feeds `records` as a live capture would: each window's flows when they finish, then a
    /// roll at the window's end.
    fn replay(records: &[FlowRecord], rolling: &mut RollingStats, step: i64) -> usize {
        let mut by_end: Vec<&FlowRecord> = records.iter().collect();
        by_end.sort_by_key(|r| r.last_ts);
        let mut rolls = 0;
        let mut i = 0;
        while i < by_end.len() {
            let window = by_end[i].last_ts.div_euclid(step) * step;
            // As live capture hands them over: a window's flows at once, as columns.
            let mut cols = FlowColumns::default();
            while i < by_end.len() && by_end[i].last_ts.div_euclid(step) * step == window {
                cols.push(by_end[i], &rolling.config);
                i += 1;
            }
            rolling.push_columns(&cols);
            rolling.roll(window + step).expect("roll");
            rolls += 1;
        }
        rolls
    }

    fn same(a: &[MetricSeries], b: &[MetricSeries]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.metric == y.metric
                    && x.start_ts_nanos == y.start_ts_nanos
                    && x.values.len() == y.values.len()
                    && x.values
                        .iter()
                        .zip(&y.values)
                        .all(|(p, q)| (p.is_nan() && q.is_nan()) || (p - q).abs() < 1e-9)
            })
    }

    /// With a horizon longer than any flow, freezing window by window gives the same host rows,
    /// series and detector metrics as grouping the whole run at once, while holding fewer rows.
    #[test]
    fn frozen_windows_match_the_whole_run() {
        let records = sample_records();
        let config = StatsConfig {
            window_secs: 3600,
            ..StatsConfig::default()
        };
        let step = 3600 * 1_000_000_000_i64;
        let longest = records
            .iter()
            .map(|r| r.last_ts.div_euclid(step) - r.first_ts.div_euclid(step))
            .max()
            .unwrap_or(0);
        let revise = u32::try_from(longest + 1).expect("small");
        let whole_dir = scratch("whole");
        let mut cols = FlowColumns::default();
        for r in &records {
            cols.push(r, &config);
        }
        let (whole_metrics, _) =
            super::super::write_window_tables(&cols, &config, &whole_dir, &[TableFormat::Json])
                .expect("whole-run tables");

        let live_dir = scratch("live");
        let mut rolling = RollingStats::new(
            config.clone(),
            revise,
            &live_dir.join("hosts"),
            &[TableFormat::Json],
        );
        let rolls = replay(&records, &mut rolling, step);
        assert!(
            rolls > revise as usize + 2,
            "the run must outlast the horizon ({rolls} windows, horizon {revise})"
        );
        assert!(
            rolling.rows_held() < records.len() / 2,
            "frozen rows are dropped"
        );
        assert!(rolling.host_parts().len() > 1, "host rows rotate");
        assert_eq!(rolling.late_flows(), 0);
        let (metrics, written) = rolling.finish(&live_dir).expect("finish");
        assert_eq!(written.len(), 2);
        for (x, y) in metrics.detector.iter().zip(&whole_metrics) {
            assert!(
                same(std::slice::from_ref(x), std::slice::from_ref(y)),
                "{x:?}\n{y:?}"
            );
        }
        let names = |m: &[MetricSeries]| m.iter().map(|s| s.metric.clone()).collect::<Vec<_>>();
        assert_eq!(names(&metrics.detector), names(&whole_metrics));
        assert!(
            same(&metrics.detector, &whole_metrics),
            "detector metrics differ"
        );
        for table in ["series", "series_protocols"] {
            assert_eq!(
                rows(&[live_dir.join(format!("{table}.json"))]),
                rows(&[whole_dir.join(format!("{table}.json"))]),
                "{table}"
            );
        }
        let parts: Vec<PathBuf> = std::fs::read_dir(live_dir.join("hosts"))
            .expect("hosts folder")
            .flatten()
            .map(|e| e.path())
            .collect();
        // A frozen row cannot know a later adoption: compare adoption dates up to the row's own
        // window (the rest is null live and in the future in the whole run).
        let known = |mut rows: Vec<serde_json::Value>| {
            for r in &mut rows {
                if r["adopted_window"].as_str() > r["window_start"].as_str() {
                    r["adopted_window"] = serde_json::Value::Null;
                }
            }
            rows.sort_by_key(|v| v.to_string());
            rows
        };
        assert_eq!(
            known(rows(&parts)),
            known(rows(&[whole_dir.join("hosts.json")])),
            "hosts"
        );
        let _ = std::fs::remove_dir_all(&whole_dir);
        let _ = std::fs::remove_dir_all(&live_dir);
    }

    /// A horizon shorter than the flows: flows that outlive it are counted late, none is lost.
    #[test]
    fn late_flows_are_counted_not_lost() {
        // The first twelve hours of the sample, in windows of a quarter of its longest flow:
        // that flow outlives a one-window horizon, and there are few enough windows to be quick.
        let records = sample_records();
        let start = records.iter().map(|r| r.first_ts).min().unwrap_or(0);
        let records: Vec<FlowRecord> = records
            .into_iter()
            .filter(|r| r.first_ts < start + 12 * 3600 * 1_000_000_000)
            .collect();
        let longest = records
            .iter()
            .map(|r| r.last_ts - r.first_ts)
            .max()
            .unwrap_or(0);
        let window_secs = u32::try_from(longest / 4_000_000_000)
            .unwrap_or(u32::MAX)
            .max(1);
        assert!(
            window_secs >= 10,
            "the sample has flows of a minute or more: {longest} ns"
        );
        let config = StatsConfig {
            window_secs,
            ..StatsConfig::default()
        };
        let step = i64::from(window_secs) * 1_000_000_000;
        let dir = scratch("late");
        let mut rolling = RollingStats::new(config, 1, &dir.join("hosts"), &[TableFormat::Json]);
        replay(&records, &mut rolling, step);
        assert!(
            rolling.late_flows() > 0,
            "flows longer than the horizon are counted late"
        );
        rolling.finish(&dir).expect("finish");
        let parts: Vec<PathBuf> = std::fs::read_dir(dir.join("hosts"))
            .expect("hosts folder")
            .flatten()
            .map(|e| e.path())
            .collect();
        let flows: u64 = rows(&parts)
            .iter()
            .map(|r| r["flows"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(flows, records.len() as u64);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
