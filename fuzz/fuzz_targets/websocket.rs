//! WebSocket frames (protocols/websocket_tunnel.rs: frame headers, masked payload peek, base64,
//! Sec-WebSocket-Accept, tunnelled-protocol classifier) and VMess framing facts
//! (protocols/vmess.rs); then the `websocket_tunnel` and `vmess` detectors.
#![no_main]
#[path = "common/mod.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use tunnelwatch::fingerprint::protocols::{vmess, websocket_tunnel as ws};

fuzz_target!(|data: &[u8]| {
    if let Some(h) = ws::parse_frame_header(data) {
        let mut out = [0u8; 64]; // websocket_tunnel::PEEK (private)
        assert!(ws::peek_payload(data, &h, &mut out) <= out.len());
    }
    let mut out = [0u8; 64];
    assert!(ws::base64_decode_into(data, &mut out) <= out.len());
    let _ = ws::expected_accept(data);
    let _ = ws::classify_tunnelled(data);
    let _ = vmess::finished_framing(data.len());
    let _ = vmess::server_hello_cipher(data);
    let _ = vmess::parse_ws_frame(data);
    common::drive(&ws::SPEC, data);
    common::drive(&vmess::SPEC, data);
});
