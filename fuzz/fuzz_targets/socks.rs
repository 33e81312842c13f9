//! SOCKS4/4a/5 (protocols/socks.rs): greetings, requests (IPv4, IPv6, domain), replies and the
//! inner-protocol classifier; then the `socks` detector.
#![no_main]
#[path = "common/mod.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use tunnelwatch::fingerprint::protocols::socks;

fuzz_target!(|data: &[u8]| {
    if let Some((methods, used)) = socks::parse_socks5_greeting(data) {
        assert!(used <= data.len() && methods.len() <= data.len());
    }
    let _ = socks::parse_socks5_request(data);
    if let Some((_, used)) = socks::parse_socks5_reply(data) {
        assert!(used <= data.len());
    }
    let _ = socks::parse_socks4_request(data);
    let _ = socks::parse_socks4_reply(data);
    let _ = socks::classify_inner(data);
    common::drive(&socks::SPEC, data);
});
