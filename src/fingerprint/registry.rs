//! The list of protocol detectors. Adding a protocol: one file in `protocols/` (its per-flow
//! state derives `Clone`, see [`super::CloneFingerprinter`]), one line here.

#[allow(unused_imports)]
use super::protocols::*;
use super::Spec;

/// Every detector the driver offers flows to, in registry order (ties in rank go to the
/// earlier entry).
pub static REGISTRY: &[&Spec] = &[
    &vmess::SPEC,
    &fully_encrypted::SPEC,
    &tor::SPEC,
    &ssh::SPEC,
    &socks::SPEC,
    &http::SPEC,
    &http_connect::SPEC,
    &http_proxy::SPEC,
    &websocket_tunnel::SPEC,
    &softether::SPEC,
    &tinc::SPEC,
    &ultrasurf::SPEC,
    &mtproto::SPEC,
    &whatsapp::SPEC,
    &openvpn::SPEC,
    &openvpn_obfuscated::SPEC,
    &tls::SPEC,
    &wireguard::SPEC,
    &gre::SPEC,
    &l2tp::SPEC,
    &pptp::SPEC,
    &sstp::SPEC,
    &ipsec_ike::SPEC,
    &ipsec_esp::SPEC,
    &ipsec_ah::SPEC,
    &tailscale::SPEC,
    &zerotier::SPEC,
    &quic::SPEC,
    &dtls::SPEC,
    &stun::SPEC,
    &dns::SPEC,
    &dns_tunnel::SPEC,
    &icmp_tunnel::SPEC,
    &endpoint_list::TOR_RELAY_SPEC,
    &endpoint_list::VPN_ENDPOINT_SPEC,
];
