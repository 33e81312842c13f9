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
    // The input whole, and as the kept start of a message a snap length cut (the wire length
    // from the first byte): a cut parse never reads past the kept bytes, and a message that
    // parses whole also parses as its own cut-free self.
    let wire_extra = usize::from(data.first().copied().unwrap_or(0));
    for t in [Transport::Udp, Transport::Tcp] {
        for wire_len in [data.len(), data.len() + wire_extra] {
            if let Some((msg, msg_wire)) = dns::message_in(t, data, wire_len) {
                assert!(msg.len() <= msg_wire);
                if let Some(m) = dns::parse_message_cut(msg, msg_wire) {
                    let _ = dns::is_plausible(&m);
                    assert!(m.len <= msg.len());
                }
            }
        }
        if let Some((msg, _)) = dns::message_in(t, data, data.len()) {
            if let Some(m) = dns::parse_message(msg) {
                assert_eq!(dns::parse_message_cut(msg, msg.len()).map(|c| c.len), Some(m.len));
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
