//! IPsec (protocols/ipsec_ike.rs, ipsec_esp.rs, ipsec_ah.rs): IKEv1/IKEv2 messages (plain and
//! behind the NAT-T non-ESP marker), ESP and AH headers; then the three detectors.
#![no_main]
#[path = "common/mod.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use tunnelwatch::fingerprint::protocols::{ipsec_ah, ipsec_esp, ipsec_ike};

fuzz_target!(|data: &[u8]| {
    let _ = ipsec_ike::parse_ike(data);
    let _ = ipsec_ike::parse_udp_payload(data);
    let _ = ipsec_esp::parse_esp(data);
    let _ = ipsec_ah::parse_ah(data);
    common::drive(&ipsec_ike::SPEC, data);
    common::drive(&ipsec_esp::SPEC, data);
    common::drive(&ipsec_ah::SPEC, data);
});
