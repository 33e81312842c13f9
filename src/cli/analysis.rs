//! `analyze` as flows finish: each finished flow is reduced at once to what the outputs need
//! (the counts of its group in the per-window statistics, [`FlowGroups`]; the report's running
//! tallies; the few example candidates of its protocol) and its flows-table row goes to a
//! sorted spill, so the run never holds its flows. The flows are numbered when the spill is
//! merged into the flows table, in the order [`crate::pipeline::number_flows`] gives.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};

use super::spill::FlowSpill;
use super::{detection, write_summary_and_report};
use crate::detect::BlockEvent;
use crate::flow::FlowRecord;
use crate::pipeline::{flow_order_key, RunSummary, FLOW_ORDER_KEY_LEN};
use crate::report::{self, html, FlowCounts};
use crate::stats::{FlowColumns, FlowGroups, PlatformTally, StatsConfig, TableFormat};

/// An `analyze` run's reductions of the flows seen so far.
pub struct Analysis {
    config: StatsConfig,
    formats: Vec<TableFormat>,
    columns: FlowGroups,
    tallies: html::FlowTallies,
    examples: ExamplePool,
    flows: FlowSpill,
    /// Attempts on the measured platforms and control sites ([`StatsConfig::attempt`]).
    platforms: PlatformTally,
    row: Vec<u8>,
    scratch: String,
    count: u64,
}

impl Analysis {
    /// `threads` sort the flows-table rows at the end.
    pub fn new(config: StatsConfig, formats: Vec<TableFormat>, threads: usize) -> Self {
        Analysis {
            config,
            formats,
            columns: FlowGroups::default(),
            tallies: html::FlowTallies::default(),
            examples: ExamplePool::default(),
            flows: FlowSpill::new(threads),
            platforms: PlatformTally::default(),
            row: Vec::new(),
            scratch: String::new(),
            count: 0,
        }
    }

    /// Flows added so far.
    pub fn flows(&self) -> u64 {
        self.count
    }

    /// Adds one finished flow (numbered or not).
    pub fn add(&mut self, r: &FlowRecord) {
        self.count += 1;
        self.columns.add(r, &self.config);
        self.tallies.add(r, &self.config);
        self.examples.offer(r);
        if let Some((p, result)) = self.config.attempt(r) {
            self.platforms.add(p, result, 1);
        }
        self.row.clear();
        crate::stats::flow_table_row(r, &self.config, &mut self.row, &mut self.scratch);
        self.flows
            .push_row(flow_order_key(r), r.label.protocol, &self.row);
    }

    /// Writes every output of the run into `out` (and `figures`); returns the flows reduced to
    /// the stats columns (a row per group of flows) and the flows per protocol.
    pub fn finish(
        self,
        summary: &RunSummary,
        extra_events: &[BlockEvent],
        out: &Path,
        figures: Option<&Path>,
        quiet: bool,
    ) -> Result<(FlowColumns, FlowCounts)> {
        let Analysis {
            config,
            formats,
            columns,
            tallies,
            examples,
            flows,
            platforms,
            ..
        } = self;
        let columns = columns.into_columns();
        let counts = FlowCounts {
            protocols: flows.protocol_counts().clone(),
            platforms,
        };
        // The examples learn their numbers as the flows table is written.
        let mut examples = examples.into_records();
        let wanted: HashMap<[u8; FLOW_ORDER_KEY_LEN], usize> = examples
            .iter()
            .enumerate()
            .map(|(i, r)| (flow_order_key(r), i))
            .collect();
        let flows_path = crate::stats::write_flow_rows(out, |each| {
            flows.finish_with(|id, key, row| {
                if let Some(r) = wanted.get(key).and_then(|&i| examples.get_mut(i)) {
                    r.id = id;
                }
                each(id, row)
            })
        })
        .context("writing flows table")?;
        let (metrics, _tables) =
            crate::stats::write_window_tables(&columns, &config, out, &formats)
                .context("writing per-window tables")?;
        let detections =
            detection::run(&metrics, summary, extra_events, out).context("detecting events")?;
        let data = html::ReportData::from_run(
            summary, &tallies, &examples, &columns, &metrics, &config, detections,
        );
        write_summary_and_report(summary, &counts, &data, out)?;
        if let Some(dir) = figures {
            html::write_figures(&data, dir)
                .with_context(|| format!("writing figures into {}", dir.display()))?;
        }
        if !quiet {
            report::print_terminal_summary(summary, &counts);
            for line in detection::alignment_lines(&data.alignments, &data.alerts) {
                eprintln!("{line}");
            }
            eprintln!(
                "wrote {}, summary.json and report.html in {}",
                flows_path.display(),
                out.display()
            );
        }
        Ok((columns, counts))
    }
}

/// The flows [`html::example_flows`] could still pick: per labelled protocol (and circumvention
/// or not, as it groups them), the best [`html::EXAMPLES_PER_PROTOCOL`] so far by
/// [`html::example_order`]. A flow is copied only when it enters a list.
#[derive(Default)]
struct ExamplePool {
    lists: HashMap<(bool, &'static str), Vec<FlowRecord>>,
}

impl ExamplePool {
    fn offer(&mut self, r: &FlowRecord) {
        if r.label.protocol == "unknown" {
            return;
        }
        let list = self
            .lists
            .entry((r.label.family.is_circumvention(), r.label.protocol))
            .or_default();
        let at = list.partition_point(|kept| html::example_order(kept, r).is_lt());
        if at < html::EXAMPLES_PER_PROTOCOL {
            list.insert(at, r.clone());
            list.truncate(html::EXAMPLES_PER_PROTOCOL);
        }
    }

    /// The kept flows, in no particular order.
    fn into_records(self) -> Vec<FlowRecord> {
        self.lists.into_values().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Family;
    use crate::flow::labelled_test_record;

    /// Flows spread over hours, labelled with a few protocols whose examples tie on
    /// confidence and bytes (so the output order settles which are picked).
    fn labelled_record(i: u64) -> FlowRecord {
        let mut r = labelled_test_record(
            i,
            &[
                ("openvpn", Family::Vpn),
                ("tls", Family::Web),
                ("unknown", Family::Other),
                ("wireguard", Family::Vpn),
            ],
        );
        r.first_ts = ((i * 7919) % 997) as i64 * 30_000_000_000;
        r.last_ts = r.first_ts + 1_000_000;
        r.bytes = [60 + (i % 3) * 40, 0];
        r
    }

    /// Everything an analysis writes, file name to bytes.
    fn outputs(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .expect("output dir")
            .map(|e| {
                let e = e.expect("entry");
                let bytes = std::fs::read(e.path()).expect("read output");
                (e.file_name().to_string_lossy().into_owned(), bytes)
            })
            .collect()
    }

    /// Flows given unnumbered, in any order, and spilled to disk give the same files as the
    /// same flows numbered and in order, all in memory: the flows table, the per-window tables
    /// and the report (whose examples name flows by their numbers).
    #[test]
    fn flows_as_they_finish_give_the_outputs_of_flows_in_order() {
        let root = std::env::temp_dir().join(format!("tw-analysis-{}", std::process::id()));
        let mut records: Vec<FlowRecord> = (0..2500u64).map(labelled_record).collect();
        // Later flows first, as a flow table ends them, with their table-local numbers.
        records.reverse();
        let summary = RunSummary {
            flows: records.len() as u64,
            ..RunSummary::default()
        };
        let run = |name: &str, records: &[FlowRecord], spill_rows: Option<usize>| {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).expect("temp dir");
            let mut a = Analysis::new(StatsConfig::default(), vec![TableFormat::Parquet], 2);
            if let Some(rows) = spill_rows {
                a.flows.set_spill_rows(rows);
            }
            records.iter().for_each(|r| a.add(r));
            let spilled = a.flows.runs();
            let (_, counts) = a.finish(&summary, &[], &dir, None, true).expect("analysis");
            assert_eq!(counts.protocols.values().sum::<u64>(), records.len() as u64);
            (outputs(&dir), spilled)
        };
        let mut in_order = records.clone();
        crate::pipeline::number_flows(&mut in_order);
        let (expected, _) = run("in-order", &in_order, None);
        // Without polars the flows table is CSV.
        let table = if cfg!(feature = "polars-out") {
            "flows.parquet"
        } else {
            "flows.csv"
        };
        assert!(expected.contains_key(table), "{table}");
        assert!(expected.contains_key("report_data.json"));
        let (streamed, spilled) = run("streamed", &records, Some(700));
        assert_eq!(spilled, 3, "runs went to disk");
        for (name, bytes) in &expected {
            assert!(streamed.get(name) == Some(bytes), "{name} differs");
        }
        let report: serde_json::Value =
            serde_json::from_slice(&expected["report_data.json"]).expect("report json");
        let examples = report["examples"].as_array().map_or(0, Vec::len);
        assert_eq!(
            examples,
            3 * html::EXAMPLES_PER_PROTOCOL,
            "{}",
            report["examples"]
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
