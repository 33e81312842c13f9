//! Report: the terminal summary, `summary.json` (versioned schema) and progress on stderr.

pub mod charts;
pub mod html;

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use serde_json::json;

use crate::pipeline::{FileStatus, RunSummary};
use crate::stats::PlatformTally;

pub use crate::civil::{civil_from_days, format_ts};

/// Version of the `summary.json` schema; bumped on any incompatible change.
pub const SUMMARY_SCHEMA_VERSION: u32 = 1;

/// What a run counted of its flows, for its summary: flows per protocol token, and attempts
/// per platform and control site by result.
#[derive(Debug, Default, Clone)]
pub struct FlowCounts {
    pub protocols: BTreeMap<String, u64>,
    pub platforms: PlatformTally,
}

/// Platforms, and control sites, listed on the terminal summary, a line each (most attempts
/// first).
const SUMMARY_PLATFORMS: usize = 5;

/// The run summary as the `summary.json` document: inputs, packets, skips by reason, flows,
/// evictions, protocol counts, platform attempts.
pub fn summary_json(summary: &RunSummary, counts: &FlowCounts) -> serde_json::Value {
    let files: Vec<_> = summary
        .files
        .iter()
        .map(|f| {
            let (status, message) = match &f.status {
                FileStatus::Complete => ("complete", None),
                FileStatus::Partial(m) => ("partial", Some(m.clone())),
                FileStatus::Failed(m) => ("failed", Some(m.clone())),
            };
            json!({
                "path": f.path.display().to_string(),
                "format": f.format.map(|x| format!("{x:?}").to_lowercase()),
                "packets": f.packets,
                "bytes": f.bytes,
                "status": status,
                "message": message,
            })
        })
        .collect();
    let skipped: BTreeMap<&str, u64> = summary.skipped.nonzero().collect();
    let c = &summary.flow_counters;
    json!({
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "tool_version": env!("CARGO_PKG_VERSION"),
        "files": files,
        "files_failed": summary.failed_files(),
        "files_partial": summary.partial_files(),
        "packets_read": summary.packets_read,
        "packets_in_flows": c.packets,
        "packets_skipped": summary.skipped.total(),
        "skipped_by_reason": skipped,
        "packets_filtered": summary.packets_filtered,
        "filter": summary.filter,
        "flows": summary.flows,
        "flows_evicted": c.evicted,
        "flows_idle_expired": c.idle_expired,
        "flows_closed": c.closed,
        "peak_live_flows": c.peak_live,
        "retransmitted_payloads": c.retransmissions,
        "first_ts": summary.first_ts.map(format_ts),
        "last_ts": summary.last_ts.map(format_ts),
        "protocols": counts.protocols,
        "platforms": counts.platforms.to_json(),
    })
}

/// Writes `summary.json` (see [`summary_json`]).
pub fn write_summary_json(
    summary: &RunSummary,
    counts: &FlowCounts,
    path: &Path,
) -> io::Result<()> {
    let doc = summary_json(summary, counts);
    crate::atomic_file::write_atomically(path, |f| {
        serde_json::to_writer_pretty(&mut *f, &doc)?;
        f.write_all(b"\n")
    })
}

/// The one-screen summary printed on stderr at the end of every run.
pub fn print_terminal_summary(summary: &RunSummary, counts: &FlowCounts) {
    let protocols = &counts.protocols;
    let color = io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let bold = |s: &str| {
        if color {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let mut e = io::stderr().lock();
    let _ = writeln!(e, "{}", bold("── tunnelwatch summary ──"));
    let _ = writeln!(
        e,
        "  inputs     {} file(s): {} complete, {} partial, {} failed",
        summary.files.len(),
        summary.files.len() - summary.failed_files() - summary.partial_files(),
        summary.partial_files(),
        summary.failed_files()
    );
    if let (Some(a), Some(b)) = (summary.first_ts, summary.last_ts) {
        let _ = writeln!(e, "  time span  {} .. {}", format_ts(a), format_ts(b));
    }
    let _ = writeln!(
        e,
        "  packets    {} read, {} in flows, {} skipped",
        summary.packets_read,
        summary.flow_counters.packets,
        summary.skipped.total()
    );
    for (reason, n) in summary.skipped.nonzero() {
        let _ = writeln!(e, "               {reason:<22} {n}");
    }
    if let Some(filter) = &summary.filter {
        let _ = writeln!(
            e,
            "  filter     {} left out by {filter:?}",
            summary.packets_filtered
        );
    }
    let c = &summary.flow_counters;
    let _ = writeln!(
        e,
        "  flows      {} ({} evicted at the cap, peak {} live)",
        summary.flows, c.evicted, c.peak_live
    );
    if !protocols.is_empty() {
        let mut by_count: Vec<_> = protocols.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let line: Vec<String> = by_count
            .iter()
            .take(12)
            .map(|(p, n)| format!("{p} {n}"))
            .collect();
        let _ = writeln!(e, "  protocols  {}", line.join(", "));
    }
    let (platforms, controls) = counts.platforms.summary_lines(SUMMARY_PLATFORMS);
    for (title, lines) in [("platforms", platforms), ("controls", controls)] {
        for (i, line) in lines.iter().enumerate() {
            let title = if i == 0 { title } else { "" };
            let _ = writeln!(e, "  {title:<9}  {line}");
        }
    }
}

/// A progress line on stderr (bytes read of total, rate, ETA), drawn only on a terminal.
pub struct Progress {
    total: u64,
    done: u64,
    packets: u64,
    flows: u64,
    enabled: bool,
    started: Instant,
    last_draw: Instant,
    drawn: bool,
}

impl Progress {
    pub fn new(total: u64, enabled: bool) -> Self {
        let now = Instant::now();
        Progress {
            total,
            done: 0,
            packets: 0,
            flows: 0,
            enabled,
            started: now,
            last_draw: now,
            drawn: false,
        }
    }

    pub fn advance(&mut self, bytes: u64, packets: u64, flows: u64) {
        self.done += bytes;
        self.packets += packets;
        self.flows = flows;
        if !self.enabled || self.last_draw.elapsed().as_millis() < 200 {
            return;
        }
        self.last_draw = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done as f64 / secs;
        let frac = if self.total > 0 {
            (self.done as f64 / self.total as f64).min(1.0)
        } else {
            0.0
        };
        let eta = if rate > 0.0 && self.total > self.done {
            (self.total - self.done) as f64 / rate
        } else {
            0.0
        };
        let width = 30;
        let filled = (frac * width as f64) as usize;
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        eprint!(
            "\r[{bar}] {:5.1}%  {:.1}/{:.1} MB  {:.1} MB/s  {} packets ({:.0} k/s)  {} flows  ETA {:.0}s ",
            frac * 100.0,
            self.done as f64 / 1e6,
            self.total as f64 / 1e6,
            rate / 1e6,
            self.packets,
            self.packets as f64 / secs / 1e3,
            self.flows,
            eta
        );
        self.drawn = true;
    }

    /// Erases the progress line (before other stderr output and at the end).
    pub fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(format_ts(0), "1970-01-01T00:00:00.000000Z");
        // 2024-02-17T17:00:00Z = 1708189200
        assert_eq!(
            format_ts(1_708_189_200_123_456_789),
            "2024-02-17T17:00:00.123456Z"
        );
        assert_eq!(format_ts(-1_000), "1969-12-31T23:59:59.999999Z");
    }
}
