//! Export record -> [`FlowRecord`]: orientation, counts, outcome and the payload-less label.

use crate::fingerprint::driver::Match;
use crate::fingerprint::registry::REGISTRY;
use crate::fingerprint::{Confidence, Label, Spec, Verdict};
use crate::flow::{EndReason, FlowRecord, Outcome, Transport};

use super::ExportRecord;

/// Ports taken as the *server* side when orienting a unidirectional record, beside every port
/// below 1024: the VPN defaults of `PORT_RULES` above 1023.
pub const SERVICE_PORTS: &[u16] = &[1194, 1701, 1723, 4500, 9001, 9030, 51820];

/// One payload-less fingerprint: a transport and server port registered or documented as the
/// protocol's default. Confidence is always [`Confidence::PortOnly`].
struct PortRule {
    transport: Transport,
    port: u16,
    spec: &'static str,
}

/// - UDP 1194: OpenVPN (IANA service name `openvpn`).
/// - UDP 51820: WireGuard (default `ListenPort` in wg-quick examples; not IANA-registered).
/// - UDP 500 / 4500: IKE (`isakmp`, `ipsec-nat-t`, RFC 7296 §2.23).
/// - UDP 1701: L2TP (`l2f`/`l2tp`, RFC 2661).
/// - TCP 1723: PPTP control (`pptp`, RFC 2637).
/// - TCP 9001 / 9030: Tor ORPort / DirPort defaults (tor(1) manual); ports only.
static PORT_RULES: &[PortRule] = &[
    PortRule {
        transport: Transport::Udp,
        port: 1194,
        spec: "openvpn",
    },
    PortRule {
        transport: Transport::Udp,
        port: 51820,
        spec: "wireguard",
    },
    PortRule {
        transport: Transport::Udp,
        port: 500,
        spec: "ipsec_ike",
    },
    PortRule {
        transport: Transport::Udp,
        port: 4500,
        spec: "ipsec_ike",
    },
    PortRule {
        transport: Transport::Udp,
        port: 1701,
        spec: "l2tp",
    },
    PortRule {
        transport: Transport::Tcp,
        port: 1723,
        spec: "pptp",
    },
    PortRule {
        transport: Transport::Tcp,
        port: 9001,
        spec: "tor",
    },
    PortRule {
        transport: Transport::Tcp,
        port: 9030,
        spec: "tor",
    },
];

fn spec_named(name: &str) -> Option<&'static Spec> {
    REGISTRY.iter().copied().find(|s| s.name == name)
}

fn is_service_port(p: u16) -> bool {
    (1..1024).contains(&p) || SERVICE_PORTS.contains(&p)
}

/// Whether the exporter's sender is the server of the connection: its port is a service port
/// and the receiver's is not (portless protocols: never).
pub fn orient(transport: Transport, src_port: u16, dst_port: u16) -> bool {
    matches!(transport, Transport::Tcp | Transport::Udp)
        && is_service_port(src_port)
        && !is_service_port(dst_port)
}

/// The label a flow record supports without payload: IP protocol 47/50/51 -> `gre`,
/// `ipsec_esp`, `ipsec_ah`; otherwise a `PORT_RULES` match on the server port. Every verdict
/// is [`Confidence::PortOnly`] with evidence `source=flow_export` and the deciding number.
/// Specs missing from the registry give no label.
pub fn label_for(transport: Transport, ip_proto: u8, server_port: u16) -> Label {
    let by_proto = match ip_proto {
        47 => Some("gre"),
        50 => Some("ipsec_esp"),
        51 => Some("ipsec_ah"),
        _ => None,
    };
    let verdict_spec = if let Some(name) = by_proto {
        spec_named(name).map(|spec| {
            (
                spec,
                Verdict::new(Confidence::PortOnly)
                    .fact("source", "flow_export")
                    .fact("ip_proto", ip_proto),
            )
        })
    } else {
        PORT_RULES
            .iter()
            .find(|r| r.transport == transport && r.port == server_port)
            .and_then(|r| spec_named(r.spec))
            .map(|spec| {
                (
                    spec,
                    Verdict::new(Confidence::PortOnly)
                        .fact("source", "flow_export")
                        .fact("server_port", server_port),
                )
            })
    };
    match verdict_spec {
        Some((spec, verdict)) => Label::merge(vec![Match { spec, verdict }]),
        None => Label::default(),
    }
}

/// Payload bytes per direction of a flow known only by its IP-layer totals (flow exports and
/// flow tables, which do not say how much of each packet was header): the bytes less a
/// typical header per packet, never below 0. The header counted is IPv4's 20 bytes or IPv6's
/// 40, plus TCP's 20 and the 12 of the timestamps option most stacks send (RFC 7323), or
/// UDP's 8. Where a flow's packets carry less header than that, its payload comes out a little
/// low, never high: a direction of bare ACKs estimates to 0, not to a transfer, so a slow
/// upload's ACKs are not taken for throttled server data ([`crate::stats::is_throttled`]
/// reads these).
pub fn estimated_payload(
    transport: Transport,
    ipv6: bool,
    packets: [u64; 2],
    bytes: [u64; 2],
) -> [u64; 2] {
    let ip = if ipv6 { 40 } else { 20 };
    let header = ip
        + match transport {
            Transport::Tcp => 32,
            Transport::Udp => 8,
            _ => 0,
        };
    [0, 1].map(|d| bytes[d].saturating_sub(packets[d].saturating_mul(header)))
}

/// One export record as a one-way [`FlowRecord`] (see the module docs for the orientation),
/// with its payload estimated from its totals ([`estimated_payload`]).
pub fn to_flow_record(r: &ExportRecord, id: u64) -> FlowRecord {
    let transport = Transport::from_ip_proto(r.ip_proto);
    let ports = matches!(transport, Transport::Tcp | Transport::Udp);
    let (sp, dp) = if ports {
        (r.src_port, r.dst_port)
    } else {
        (0, 0)
    };
    let reversed = orient(transport, sp, dp);
    let dir = usize::from(reversed);
    let (client_ip, client_port, server_ip, server_port) = if reversed {
        (r.dst, dp, r.src, sp)
    } else {
        (r.src, sp, r.dst, dp)
    };
    let mut packets = [0u64; 2];
    let mut bytes = [0u64; 2];
    let mut tcp_flags = [0u8; 2];
    packets[dir] = r.packets;
    bytes[dir] = r.bytes;
    let flags = if transport == Transport::Tcp {
        r.tcp_flags
    } else {
        0
    };
    tcp_flags[dir] = flags;
    let end_reason = if flags & 0x04 != 0 {
        EndReason::Rst
    } else if flags & 0x01 != 0 {
        EndReason::Fin
    } else {
        EndReason::IdleTimeout
    };
    FlowRecord {
        id,
        first_ts: r.first_ns.min(r.last_ns),
        last_ts: r.last_ns.max(r.first_ns),
        transport,
        ip_proto: r.ip_proto,
        client_ip,
        client_port,
        server_ip,
        server_port,
        packets,
        bytes,
        payload_bytes: estimated_payload(transport, server_ip.is_ipv6(), packets, bytes),
        tcp_flags,
        outcome: Outcome::OneWay,
        end_reason,
        label: label_for(transport, r.ip_proto, server_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_the_bytes_less_a_typical_header_per_packet() {
        // IPv4 TCP: 52 bytes of header a packet; bare ACKs (40 or 52 bytes) estimate to 0.
        assert_eq!(
            estimated_payload(Transport::Tcp, false, [10, 100], [1000, 5200 + 67_500]),
            [480, 67_500]
        );
        assert_eq!(
            estimated_payload(Transport::Tcp, false, [1500, 2], [60_000, 104]),
            [0, 0]
        );
        // IPv6 UDP: 48 bytes; other transports: the IP header only.
        assert_eq!(
            estimated_payload(Transport::Udp, true, [2, 1], [200, 48]),
            [104, 0]
        );
        assert_eq!(
            estimated_payload(Transport::Other(47), false, [1, 0], [120, 0]),
            [100, 0]
        );
    }

    fn rec(proto: u8, sp: u16, dp: u16) -> ExportRecord {
        ExportRecord {
            src: "10.0.0.1".parse().unwrap(),
            dst: "192.0.2.9".parse().unwrap(),
            src_port: sp,
            dst_port: dp,
            ip_proto: proto,
            packets: 3,
            bytes: 300,
            tcp_flags: 0x1b,
            first_ns: 5,
            last_ns: 2,
        }
    }

    #[test]
    fn esp_gre_ah_by_protocol_port_only() {
        for (p, name) in [(50u8, "ipsec_esp"), (51, "ipsec_ah"), (47, "gre")] {
            let f = to_flow_record(&rec(p, 1234, 5678), 0);
            assert_eq!(f.label.protocol, name);
            assert_eq!(f.label.confidence, Some(Confidence::PortOnly));
            assert_eq!((f.client_port, f.server_port), (0, 0));
            assert_eq!(f.tcp_flags, [0, 0]);
        }
    }

    #[test]
    fn vpn_ports_either_direction() {
        let f = to_flow_record(&rec(17, 40000, 1194), 7);
        assert_eq!(f.label.protocol, "openvpn");
        assert_eq!(f.packets, [3, 0]);
        assert_eq!(f.id, 7);
        assert_eq!((f.first_ts, f.last_ts), (2, 5));
        // The reply half: sender on 51820 is the server, counts go to the client side.
        let f = to_flow_record(&rec(17, 51820, 40000), 0);
        assert_eq!(f.label.protocol, "wireguard");
        assert_eq!(f.server_port, 51820);
        assert_eq!(
            f.client_ip,
            "192.0.2.9".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(f.packets, [0, 3]);
        assert_eq!(f.bytes, [0, 300]);
        assert_eq!(f.outcome, Outcome::OneWay);
        assert_eq!(
            to_flow_record(&rec(6, 50000, 1723), 0).label.protocol,
            "pptp"
        );
        assert_eq!(
            to_flow_record(&rec(6, 50000, 9001), 0).label.protocol,
            "tor"
        );
        assert_eq!(
            to_flow_record(&rec(17, 4500, 4500), 0).label.protocol,
            "ipsec_ike"
        );
    }

    #[test]
    fn no_claim_on_ordinary_ports_or_wrong_transport() {
        for (p, sp, dp) in [
            (17u8, 5353, 53),
            (6, 50000, 443),
            (17, 50000, 443),
            (17, 50000, 1723),
            (6, 50000, 1194),
            (1, 0, 0),
        ] {
            let f = to_flow_record(&rec(p, sp, dp), 0);
            assert_eq!(f.label.protocol, "unknown", "{p} {sp} {dp}");
            assert!(f.label.matches.is_empty());
        }
        let f = to_flow_record(&rec(6, 443, 50000), 0);
        assert_eq!((f.server_port, f.packets), (443, [0, 3]));
        assert_eq!(f.end_reason, EndReason::Fin);
    }
}
