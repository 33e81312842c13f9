//! The NetFlow v5 / v9 / IPFIX collector (src/ingest/flowlog/collector.rs) over a sequence of
//! datagrams from two exporters (templates carry over between datagrams): never panics, the
//! stats add up, every record converts to a FlowRecord.
#![no_main]
#[path = "common/mod.rs"]
mod common;
use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use tunnelwatch::ingest::flowlog::Collector;

fuzz_target!(|data: &[u8]| {
    let exporters: [SocketAddr; 2] = [
        SocketAddr::from(([192, 0, 2, 1], 2055)),
        SocketAddr::from(([192, 0, 2, 2], 4739)),
    ];
    let mut collector = Collector::new();
    let mut out = Vec::new();
    let mut datagrams = 0u64;
    for (dir, bytes) in common::payloads(data) {
        collector.handle_datagram(exporters[dir.index()], bytes, &mut out);
        datagrams += 1;
    }
    assert_eq!(collector.stats().datagrams, datagrams);
    let records = collector.flow_records(&out);
    assert_eq!(records.len(), out.len());
});
