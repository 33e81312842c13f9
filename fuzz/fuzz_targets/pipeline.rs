//! The whole pipeline from capture bytes: reader -> decoder -> flow table -> every
//! fingerprinter -> labels. Packets read must equal packets in flows plus packets skipped.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tunnelwatch::ingest::CaptureReader;
use tunnelwatch::pipeline::{FileReport, Pipeline, PipelineConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = CaptureReader::new(data) else {
        return;
    };
    let mut pipeline = Pipeline::new(PipelineConfig::default());
    let mut report = FileReport::new(Path::new("fuzz"));
    pipeline.feed_reader(reader, &mut report, &mut |_, _| {});
    let (records, summary) = pipeline.finish();
    let flow_packets: u64 = records.iter().map(|r| r.packets[0] + r.packets[1]).sum();
    assert_eq!(summary.packets_read, flow_packets + summary.skipped.total());
});
