//! TLS facts (src/fingerprint/facts/tls.rs) over arbitrary bytes: record headers, the record
//! buffer, the two-direction handshake tracker, ClientHello (TLS and DTLS bodies) with JA4,
//! ServerHello, certificate lists and X.509 facts; then the `tls` and `tor` detectors.
#![no_main]
#[path = "common/mod.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use tunnelwatch::fingerprint::facts::tls::{
    self, Ja4Transport, TlsHandshakeTracker, TlsRecordBuffer,
};
use tunnelwatch::fingerprint::protocols;

fn hello_facts(body: &[u8]) {
    if let Some(ch) = tls::parse_client_hello(body) {
        let _ = (
            ch.ja4(Ja4Transport::Tcp),
            ch.max_version(),
            ch.first_alpn(),
            ch.has_ech(),
        );
    }
    // Read as far as it goes, a cut ClientHello names the server a whole one names.
    let prefix_sni = tls::client_hello_sni_prefix(body);
    if let Some(ch) = tls::parse_client_hello(body) {
        if ch.sni.is_some() && ch.extensions.first() == Some(&0) {
            assert_eq!(prefix_sni, ch.sni);
        }
    }
    if let Some(ch) = tls::parse_dtls_client_hello(body) {
        let _ = ch.ja4(Ja4Transport::Dtls);
    }
    if let Some(sh) = tls::parse_server_hello(body) {
        let _ = sh.version();
    }
    if let Some(certs) = tls::parse_certificate_list(body) {
        for der in certs {
            if let Some(c) = tls::parse_certificate(der) {
                let _ = (c.names().count(), c.validity_whole_days());
            }
        }
    }
    if let Some(c) = tls::parse_certificate(body) {
        let _ = c.names().count();
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = tls::parse_record_header(data);
    let _ = tls::der_tlv(data);
    hello_facts(data);
    let mut rest = data;
    while let Some((_, body, tail)) = tls::split_handshake(rest) {
        hello_facts(body);
        rest = tail;
    }
    // Record layer, fed payload by payload.
    let mut buf = TlsRecordBuffer::new();
    let mut tracker = TlsHandshakeTracker::new();
    if let Some((_, flow)) = data.split_first() {
        for (dir, bytes) in common::payloads(flow) {
            let _ = buf.push(bytes);
            let _ = tracker.push(dir.index(), bytes);
        }
    }
    let _ = (
        buf.failed(),
        buf.at_record_boundary(),
        buf.app_data_lengths().len(),
    );
    for (_, body) in buf.handshake_messages() {
        hello_facts(body);
    }
    let _ = buf.find_handshake(1);
    let _ = (tracker.roles_reversed(), tracker.client_buffer().is_some());
    let _ = protocols::tls::intel_for(&tracker);
    common::drive(&protocols::tls::SPEC, data);
    common::drive(&protocols::tor::SPEC, data);
});
