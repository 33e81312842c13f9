//! QUIC (src/fingerprint/facts/quic.rs, protocols/quic.rs): Initial header parsing, header
//! protection removal and AEAD opening, CRYPTO frame walking and reassembly into a ClientHello,
//! varints, gQUIC CHLO; then the `quic` detector over the flow.
#![no_main]
#[path = "common/mod.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use tunnelwatch::fingerprint::facts::quic::{self, CryptoStream, MAX_DATAGRAM};
use tunnelwatch::fingerprint::facts::tls;
use tunnelwatch::fingerprint::protocols;

fuzz_target!(|data: &[u8]| {
    let _ = quic::read_varint(data);
    let _ = protocols::quic::parse_gquic_client_hello(data);
    if let Some(h) = quic::parse_initial_header(data) {
        let _ = (
            quic::is_supported_version(h.version),
            quic::version_name(h.version),
        );
    }
    // Frames as if already decrypted.
    let mut stream = CryptoStream::default();
    let _ = quic::for_each_crypto_frame(data, |off, bytes| stream.insert(off, bytes));
    let _ = (stream.contiguous(), stream.is_full());
    if let Some(msg) = stream.first_message() {
        if let Some((_, body, _)) = tls::split_handshake(msg) {
            let _ = tls::parse_client_hello(body);
        }
    }
    // Real decryption path (almost never authenticates, but exercises the header arithmetic).
    let mut buf = [0u8; MAX_DATAGRAM];
    if let Some(opened) = quic::open_client_initial(data, None, &mut buf) {
        let plain = buf.get(..opened.len).unwrap_or(&[]);
        let _ = quic::for_each_crypto_frame(plain, |_, _| {});
    }
    if let Some(keys) = quic::client_initial_keys(quic::VERSION_1, data.get(..8).unwrap_or(data)) {
        let _ = quic::header_protection_mask(&keys.hp, data);
    }
    common::drive(&protocols::quic::SPEC, data);
});
