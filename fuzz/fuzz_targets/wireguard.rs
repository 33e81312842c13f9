//! WireGuard (protocols/wireguard.rs) messages and Tailscale disco (protocols/tailscale.rs);
//! then the `wireguard` and `tailscale` detectors.
#![no_main]
#[path = "common/mod.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use tunnelwatch::fingerprint::protocols::{tailscale, wireguard};

fuzz_target!(|data: &[u8]| {
    let _ = wireguard::parse_message(data);
    let _ = tailscale::parse_disco(data);
    common::drive(&wireguard::SPEC, data);
    common::drive(&tailscale::SPEC, data);
});
