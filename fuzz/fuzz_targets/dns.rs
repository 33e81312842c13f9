//! DNS (src/fingerprint/protocols/dns.rs): messages, names with compression pointers (loops,
//! forward pointers, overlong labels), TCP length framing; then the `dns` and `dns_tunnel`
//! detectors.
#![no_main]
#[path = "common/mod.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use tunnelwatch::fingerprint::protocols::{dns, dns_tunnel};
use tunnelwatch::flow::Transport;

fuzz_target!(|data: &[u8]| {
    for t in [Transport::Udp, Transport::Tcp] {
        if let Some(msg) = dns::message_in(t, data) {
            if let Some(m) = dns::parse_message(msg) {
                let _ = dns::is_plausible(&m);
            }
        }
    }
    let at = usize::from(data.first().copied().unwrap_or(0));
    let _ = dns::parse_name(data, at);
    let _ = dns::parse_name(data, 12);
    if let Some(name) = dns::name_text(data, 12) {
        assert!(name.len() <= 1024, "name text {} bytes", name.len());
    }
    common::drive(&dns::SPEC, data);
    common::drive(&dns_tunnel::SPEC, data);
});
