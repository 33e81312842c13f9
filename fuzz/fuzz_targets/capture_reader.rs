//! The pcap/pcapng reader over arbitrary bytes (optionally gzip-wrapped): never panics, every
//! record it lends fits the limit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tunnelwatch::ingest::{capture::MAX_RECORD_LEN, CaptureReader};

fuzz_target!(|data: &[u8]| {
    if let Ok(mut reader) = CaptureReader::new(data) {
        while let Ok(Some(p)) = reader.next_packet() {
            assert!(p.data.len() <= MAX_RECORD_LEN as usize);
        }
    }
});
