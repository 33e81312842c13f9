//! The whole pipeline from capture bytes: reader -> decoder -> flow table -> every
//! fingerprinter -> labels. Packets read must equal packets in flows plus packets skipped.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tunnelwatch::ingest::CaptureReader;
use tunnelwatch::pipeline::{FileReport, Pipeline, PipelineConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = CaptureReader::new(data) else { return };
    let mut pipeline = Pipeline::new(PipelineConfig::default());
    let mut report = FileReport::new(Path::new("fuzz"));
    let mut flow_packets = 0u64;
    pipeline.feed_reader(reader, &mut report, &mut |r| flow_packets += r.packets[0] + r.packets[1], &mut |_| {});
    let summary = pipeline.finish(&mut |r| flow_packets += r.packets[0] + r.packets[1]);
    assert_eq!(summary.packets_read, flow_packets + summary.skipped.total());
});
