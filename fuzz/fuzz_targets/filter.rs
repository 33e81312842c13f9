//! The packet filter language (`-f/--filter`): an expression, a NUL byte, then a frame (raw IP).
//! Parsing any text gives a filter or an error, never a panic; a filter that parses evaluates
//! on any decoded packet, and `not EXPR` gives the opposite answer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tunnelwatch::decode::filter::PacketFilter;
use tunnelwatch::decode::{decode, link};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (text, frame) = data.split_at(split);
    let text = String::from_utf8_lossy(text);
    let Ok(filter) = PacketFilter::parse(&text) else {
        return;
    };
    let negated = PacketFilter::parse(&format!("not ({text})"))
        .expect("the negation of a valid filter parses");
    let frame = frame.get(1..).unwrap_or_default();
    if let Ok(packet) = decode(link::RAW, frame) {
        assert_ne!(filter.matches(&packet), negated.matches(&packet), "{text}");
    }
});
