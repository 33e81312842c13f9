//! Labels from endpoint lists (`intel::endpoints`: the built-in provider server lists and the
//! user's `--tor-relays`, `--endpoints`): the server address is a known Tor relay, or belongs to
//! a VPN provider or app. Confidence is `endpoint_list`: the address says who the peer is, not what was spoken.
//!
//! Two specs: a relay names the protocol (`tor`, ranked above generic carriers, below any
//! protocol-structure match); a provider range only adds `provider`/`application` (ranked
//! below everything, so the wire protocol comes from the other detectors).

use crate::fingerprint::driver::UNKNOWN_PROTOCOL;
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::intel::endpoints::{self, Endpoint};
use crate::intel::APPLICATION_TOKENS;

pub static TOR_RELAY_SPEC: Spec = Spec {
    name: "tor_relay",
    family: Family::Tor,
    transports: Transports::ALL,
    payload_budget: 0,
    rank: rank::STATISTICAL,
    start: || Box::new(TorRelay),
    open: None,
};

pub static VPN_ENDPOINT_SPEC: Spec = Spec {
    name: "vpn_endpoint",
    family: Family::Vpn,
    transports: Transports::ALL,
    payload_budget: 0,
    rank: 0,
    start: || Box::new(VpnEndpoint),
    open: None,
};

#[derive(Clone)]
struct TorRelay;
#[derive(Clone)]
struct VpnEndpoint;

impl Fingerprinter for TorRelay {
    fn observe(&mut self, _payload: &Payload<'_>) -> Step {
        Step::NotThis
    }

    fn conclude(&mut self, flow: &FlowContext) -> Option<Verdict> {
        match endpoints::lookup(flow.server_ip)? {
            Endpoint::TorRelay => {
                let mut v = Verdict::new(Confidence::EndpointList)
                    .fact("tor_relay", flow.server_ip.to_string());
                v.protocol = Some("tor");
                Some(v)
            }
            Endpoint::Service(_) => None,
        }
    }
}

impl Fingerprinter for VpnEndpoint {
    fn observe(&mut self, _payload: &Payload<'_>) -> Step {
        Step::NotThis
    }

    fn conclude(&mut self, flow: &FlowContext) -> Option<Verdict> {
        match endpoints::lookup(flow.server_ip)? {
            Endpoint::Service(token) => {
                let mut v = Verdict::new(Confidence::EndpointList).fact("endpoint_list", token);
                v.protocol = Some(UNKNOWN_PROTOCOL);
                v.family = Some(Family::Vpn);
                // Anything that is not an application of the vocabulary is taken as a provider.
                if APPLICATION_TOKENS.contains(&token) {
                    v.application = Some(token);
                } else {
                    v.provider = Some(token);
                }
                Some(v)
            }
            Endpoint::TorRelay => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::driver::{Label, Match};
    use crate::flow::Transport;

    fn ctx(server: &str) -> FlowContext {
        FlowContext {
            server_ip: server.parse().unwrap(),
            packets: [3, 3],
            payload_bytes: [100, 100],
            duration_nanos: 1,
            ..FlowContext::test(Transport::Tcp, 40000, 443)
        }
    }

    #[test]
    fn relay_and_provider_labels_merge_with_wire_protocols() {
        let mut list = endpoints::EndpointList::default();
        list.load_endpoints("203.0.113.0/24,mullvad\n203.0.114.9,tor\n")
            .unwrap();
        endpoints::install(list);
        assert!(
            (TOR_RELAY_SPEC.start)()
                .conclude(&ctx("198.18.0.1"))
                .is_none(),
            "unlisted address"
        );
        let relay = (TOR_RELAY_SPEC.start)()
            .conclude(&ctx("203.0.114.9"))
            .unwrap();
        assert_eq!(relay.protocol, Some("tor"));
        let vpn = (VPN_ENDPOINT_SPEC.start)()
            .conclude(&ctx("203.0.113.5"))
            .unwrap();
        assert_eq!(vpn.provider, Some("mullvad"));
        // With a wire-protocol match beside it, the provider joins the label and the
        // protocol stays the detector's.
        static WG: Spec = Spec {
            name: "wireguard",
            family: Family::Vpn,
            transports: Transports::UDP,
            payload_budget: 1,
            rank: rank::SPECIFIC,
            start: || Box::new(VpnEndpoint),
            open: None,
        };
        let label = Label::merge(vec![
            Match {
                spec: &VPN_ENDPOINT_SPEC,
                verdict: vpn.clone(),
            },
            Match {
                spec: &WG,
                verdict: Verdict::new(Confidence::BothDirections),
            },
        ]);
        assert_eq!(
            (label.protocol, label.provider, label.family),
            ("wireguard", Some("mullvad"), Family::Vpn)
        );
        // The address match names no protocol, so its evidence goes under the detector's name.
        assert_eq!(
            label.evidence_text(),
            "wireguard; vpn_endpoint: endpoint_list=mullvad"
        );
        let alone = Label::merge(vec![Match {
            spec: &VPN_ENDPOINT_SPEC,
            verdict: vpn,
        }]);
        assert_eq!(
            (alone.protocol, alone.family, alone.confidence),
            ("unknown", Family::Vpn, Some(Confidence::EndpointList))
        );
    }
}
