//! STUN (protocols/stun.rs), DTLS records / datagrams / ClientHello (dtls.rs), ICMP tunnel
//! content classes (icmp_tunnel.rs), the fully-encrypted heuristics (fully_encrypted.rs,
//! facts/entropy.rs); then their detectors.
#![no_main]
#[path = "common/mod.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use tunnelwatch::fingerprint::facts::entropy;
use tunnelwatch::fingerprint::protocols::{dtls, fully_encrypted, icmp_tunnel, stun};

fuzz_target!(|data: &[u8]| {
    let _ = stun::parse_message(data);
    let _ = dtls::parse_record(data);
    let _ = dtls::parse_datagram(data);
    let _ = dtls::parse_client_hello(data);
    let _ = icmp_tunnel::classify(data);
    let (stats, _) = entropy::classify(data);
    let _ = (
        stats.popcount_avg(),
        stats.printable_frac(),
        entropy::known_protocol(data),
    );
    if let [a, b, ..] = data {
        let _ = fully_encrypted::shadowsocks_fit(usize::from(*a) * 7, usize::from(*b) * 5);
    }
    for spec in [
        &stun::SPEC,
        &dtls::SPEC,
        &icmp_tunnel::SPEC,
        &fully_encrypted::SPEC,
    ] {
        common::drive(spec, data);
    }
});
