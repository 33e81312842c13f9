//! Flow-log text: `nfdump -o csv` (src/ingest/flowlog/nfdump_csv.rs: header detection,
//! timestamps, protocols, TCP flag strings) and tunnelwatch flow tables
//! (src/ingest/flowlog/flow_table.rs: quoting, required columns, label restoring, archived server
//! names and the platform they name), every line: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tunnelwatch::ingest::flowlog::nfdump_csv;
use tunnelwatch::ingest::flowlog::{flow_table, read_flow_table_csv, read_nfdump_csv};

fuzz_target!(|data: &[u8]| {
    let _ = read_nfdump_csv(data);
    let _ = read_flow_table_csv(data);
    // The same lines under a valid flow-table header, so rows are reached.
    let mut table = flow_table::REQUIRED_COLUMNS.join(",").into_bytes();
    table.extend_from_slice(b",protocol,confidence,evidence,outcome,server_name\n");
    table.extend_from_slice(data);
    if let Ok((flows, _)) = read_flow_table_csv(&table[..]) {
        // Archived server names are any text: the platform matcher takes them as they come.
        let platforms = tunnelwatch::intel::platforms::PlatformMatcher::default();
        for flow in &flows {
            let _ = tunnelwatch::stats::flow_platform(flow, &platforms);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nfdump_csv::parse_timestamp(text);
        let _ = nfdump_csv::parse_protocol(text);
        let _ = nfdump_csv::parse_flags(text);
        let _ = tunnelwatch::csv_line::split_csv_line(text);
    }
});
