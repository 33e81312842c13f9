//! OpenVPN (protocols/openvpn.rs, openvpn_obfuscated.rs): packet headers, control packets under
//! every auth layout (plain, tls-auth HMACs, tls-crypt), the XOR-scramble shape analysis; then
//! both detectors over the flow (TCP framing included).
#![no_main]
#[path = "common/mod.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use tunnelwatch::fingerprint::protocols::openvpn::{self, AUTHS};
use tunnelwatch::fingerprint::protocols::openvpn_obfuscated::{self, Seen};

fuzz_target!(|data: &[u8]| {
    let _ = openvpn::parse_header(data);
    // As the kept start of a packet a snap length cut (wire length from byte 0): what a whole
    // parse finds, a cut parse of the same bytes on their own length finds too.
    let wire_len = data.len() + usize::from(data.first().copied().unwrap_or(0));
    for auth in AUTHS {
        let whole = openvpn::parse_control(data, auth);
        assert_eq!(
            openvpn::parse_control_on_wire(data, data.len(), auth).is_some(),
            whole.is_some()
        );
        let _ = openvpn::parse_control_on_wire(data, wire_len, auth);
        if let Some(body) = data.get(2..) {
            let _ = openvpn::parse_control(body, auth);
        }
    }
    if let Some((_, flow)) = data.split_first() {
        let seen: Vec<Seen> = common::payloads(flow)
            .take(64)
            .map(|(dir, b)| Seen {
                first_side: dir.index() == 0,
                byte0: b.first().copied().unwrap_or(0),
                len: u16::try_from(b.len()).unwrap_or(u16::MAX),
            })
            .collect();
        for n in 0..=seen.len() {
            let _ = openvpn_obfuscated::analyse(&seen[..n]);
        }
    }
    common::drive(&openvpn::SPEC, data);
    common::drive(&openvpn_obfuscated::SPEC, data);
});
