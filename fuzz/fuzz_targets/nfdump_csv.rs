//! `nfdump -o csv` text (src/ingest/flowlog/nfdump_csv.rs): header detection, timestamps,
//! protocols, TCP flag strings, every line: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tunnelwatch::ingest::flowlog::nfdump_csv;
use tunnelwatch::ingest::flowlog::read_nfdump_csv;

fuzz_target!(|data: &[u8]| {
    let _ = read_nfdump_csv(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nfdump_csv::parse_timestamp(text);
        let _ = nfdump_csv::parse_protocol(text);
        let _ = nfdump_csv::parse_flags(text);
    }
});
