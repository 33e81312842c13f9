//! The remaining VPN parsers: GRE and PPP (protocols/gre.rs), L2TP (l2tp.rs), PPTP control
//! (pptp.rs), SSTP (sstp.rs), ZeroTier (zerotier.rs), SoftEther packs and NAT-T replies
//! (softether.rs), MTProto frame headers (mtproto.rs); then their detectors and WhatsApp's
//! (whatsapp.rs). Byte 0 of the input also picks the detector flow's transport.
#![no_main]
#[path = "common/mod.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use tunnelwatch::fingerprint::protocols::{
    gre, l2tp, mtproto, pptp, softether, sstp, whatsapp, zerotier,
};

fuzz_target!(|data: &[u8]| {
    let _ = gre::parse_gre(data);
    let _ = gre::parse_ppp(data);
    // As the kept start of a packet a snap length cut (wire length from byte 0).
    let wire_len = data.len() + usize::from(data.first().copied().unwrap_or(0));
    if let Some(h) = gre::parse_gre_on_wire(data, wire_len) {
        assert!(h.header_len <= data.len());
    }
    let _ = gre::parse_ppp_on_wire(data, wire_len);
    let _ = l2tp::parse_l2tp_on_wire(data, wire_len);
    let _ = l2tp::parse_l2tp(data);
    let _ = pptp::parse_control(data);
    let _ = sstp::parse_control_packet(data);
    let _ = sstp::is_tunnel_request(data);
    let _ = zerotier::is_fragment(data);
    let _ = zerotier::parse_packet(data);
    let _ = softether::parse_pack(data);
    let _ = softether::parse_wpc_body(data);
    let _ = softether::parse_nat_t_reply(data);
    for framing in [
        mtproto::Framing::Abridged,
        mtproto::Framing::Intermediate,
        mtproto::Framing::PaddedIntermediate,
    ] {
        if let Some((header_len, _)) = framing.frame_header(data) {
            assert!(header_len <= data.len());
        }
    }
    for spec in [
        &gre::SPEC,
        &l2tp::SPEC,
        &pptp::SPEC,
        &sstp::SPEC,
        &zerotier::SPEC,
        &softether::SPEC,
        &mtproto::SPEC,
        &whatsapp::SPEC,
    ] {
        common::drive(spec, data);
    }
});
