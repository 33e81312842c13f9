//! The whole pipeline from capture bytes: reader -> decoder -> flow table -> every
//! fingerprinter -> labels. Packets read must equal packets in flows plus packets skipped, and
//! three threads (the reader's table and two workers) must give the flows of one, whatever the
//! timestamps do.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tunnelwatch::flow::FlowRecord;
use tunnelwatch::ingest::CaptureReader;
use tunnelwatch::pipeline::{FileReport, Pipeline, PipelineConfig, RunSummary};

fn run(data: &[u8], threads: usize) -> Option<(Vec<FlowRecord>, RunSummary)> {
    let reader = CaptureReader::new(data).ok()?;
    let mut pipeline = Pipeline::new(PipelineConfig {
        threads,
        ..PipelineConfig::default()
    });
    let mut report = FileReport::new(Path::new("fuzz"));
    pipeline.feed_reader(reader, &mut report, &mut |_, _| {});
    Some(pipeline.finish())
}

fuzz_target!(|data: &[u8]| {
    let Some((records, summary)) = run(data, 1) else {
        return;
    };
    let flow_packets: u64 = records.iter().map(|r| r.packets[0] + r.packets[1]).sum();
    assert_eq!(summary.packets_read, flow_packets + summary.skipped.total());
    let Some((threaded, _)) = run(data, 3) else {
        return;
    };
    let platforms = tunnelwatch::intel::platforms::PlatformMatcher::default();
    let rows = |rs: &[FlowRecord]| -> Vec<String> {
        rs.iter()
            .map(|r| tunnelwatch::cli::flow_row_json(r, &platforms).to_string())
            .collect()
    };
    assert_eq!(rows(&records), rows(&threaded), "three threads differ from one");
});
