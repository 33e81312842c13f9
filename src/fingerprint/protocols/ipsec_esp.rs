//! ESP: IPsec Encapsulating Security Payload (RFC 4303) as IP protocol 50, and ESP in UDP on
//! port 4500 (RFC 3948).
//!
//! The only clear-text fields are the first eight bytes (RFC 4303 §2):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | SPI: never 0; 1..=255 are reserved by IANA (§2.1), so a real SA has SPI >= 256 |
//! | 4..8 | sequence number: the first packet of an SA carries 1 and it rises by one (§2.2, §3.3.3) |
//!
//! For IP protocol 50 the protocol number names ESP; a packet with a plausible SPI and sequence
//! is OneMessage (at the end of the flow), two SAs one each way are BothDirections, and a
//! rising sequence under one SPI decides at once. On UDP the flow must use port 4500 (the NAT-T
//! port, RFC 3948 §2.1), where a payload starting with four zero bytes is IKE (non-ESP marker,
//! §2.2) and a single 0xFF byte is a NAT keepalive (§2.3); the remaining payloads are ESP, but
//! one is accepted only with corroboration: a rising sequence under one SPI, an SA each way,
//! or IKE seen earlier in the same flow.

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Transport;

/// Registry entry: ESP (IP protocol 50) and ESP in UDP (port 4500).
pub static SPEC: Spec = Spec {
    name: "ipsec_esp",
    family: Family::Vpn,
    transports: Transports::UDP.or(Transports::OTHER_IP),
    payload_budget: 4,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// IANA protocol number of ESP.
pub const IP_PROTO_ESP: u8 = 50;
/// UDP port of IKE/ESP NAT traversal (RFC 3948 §2.1).
pub const NAT_T_PORT: u16 = 4500;
/// SPI, sequence, at least 4 bytes of encrypted payload and trailer (RFC 4303 §2).
pub const MIN_LEN: usize = 16;
/// Largest sequence step still taken as the same SA (loss, reordering).
const SEQ_STEP_MAX: u32 = 1024;

/// The clear-text header of one ESP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspHeader {
    pub spi: u32,
    pub sequence: u32,
}

/// Parses the ESP header at offset 0: SPI >= 256, sequence >= 1, length >= [`MIN_LEN`].
pub fn parse_esp(b: &[u8]) -> Option<EspHeader> {
    if b.len() < MIN_LEN {
        return None;
    }
    let word = |at: usize| {
        b.get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_be_bytes)
    };
    let spi = word(0).filter(|&s| s >= 256)?;
    let sequence = word(4).filter(|&s| s >= 1)?;
    Some(EspHeader { spi, sequence })
}

/// Per-flow state: the last ESP header seen each way.
#[derive(Debug, Default, Clone)]
pub struct State {
    last: [Option<EspHeader>; 2],
    ike_seen: bool,
    udp: bool,
}

impl State {
    fn verdict(&self, confidence: Confidence, h: EspHeader) -> Verdict {
        let mut v = Verdict::new(confidence)
            .fact("spi", h.spi)
            .fact("sequence", h.sequence);
        if self.udp {
            v = v.fact("udp_encapsulated", true);
        }
        if self.ike_seen {
            v = v.fact("ike_in_flow", true);
        }
        v
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        match p.transport {
            Transport::Other(IP_PROTO_ESP) => {}
            Transport::Udp if p.client_port == NAT_T_PORT || p.server_port == NAT_T_PORT => {
                self.udp = true;
                if p.bytes == [0xFF] {
                    return Step::NeedMore;
                }
                if p.bytes.starts_with(&[0, 0, 0, 0]) {
                    self.ike_seen = true;
                    return Step::NeedMore;
                }
            }
            _ => return Step::NotThis,
        }
        let seen_any = self.ike_seen || self.last.iter().any(Option::is_some);
        let Some(h) = parse_esp(p.bytes) else {
            return if seen_any {
                Step::NeedMore
            } else {
                Step::NotThis
            };
        };
        let dir = p.direction.index();
        let other = p.direction.reverse().index();
        if let Some(prev) = self.last[dir] {
            if prev.spi == h.spi
                && h.sequence > prev.sequence
                && h.sequence - prev.sequence <= SEQ_STEP_MAX
            {
                return Step::Match(
                    self.verdict(Confidence::OneMessage, h)
                        .fact("rising_sequence", true),
                );
            }
        }
        if let Some(theirs) = self.last[other] {
            if theirs.spi != h.spi {
                return Step::Match(
                    self.verdict(Confidence::BothDirections, h)
                        .fact("sa_each_way", true),
                );
            }
        }
        if self.ike_seen {
            return Step::Match(self.verdict(Confidence::OneMessage, h));
        }
        self.last[dir] = Some(h);
        Step::NeedMore
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        if self.udp {
            return None;
        }
        let h = self.last.iter().flatten().next().copied()?;
        Some(self.verdict(Confidence::OneMessage, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::FingerprintState;
    use crate::flow::Direction;
    use proptest::prelude::*;

    const RAW: Transport = Transport::Other(IP_PROTO_ESP);

    fn pl(direction: Direction, transport: Transport, port: u16, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes)
            .over(transport)
            .ports(port, port)
    }

    fn ctx(transport: Transport) -> FlowContext {
        FlowContext::test(transport, 0, 0)
    }

    fn run(t: Transport, port: u16, seq: &[(Direction, &[u8])]) -> Option<Verdict> {
        let mut s = State::default();
        for (d, b) in seq {
            match s.observe(&pl(*d, t, port, b)) {
                Step::Match(v) => return Some(v),
                Step::NotThis => return None,
                Step::NeedMore => {}
            }
        }
        s.conclude(&ctx(t))
    }

    const C: Direction = Direction::ToServer;
    const S: Direction = Direction::ToClient;

    /// 02-sunrise-sunset-esp.pcap frame 1 (bytes 34.., 116 bytes).
    const ESP_SEQ1: [u8; 116] = [
        0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x01, 0x4c, 0x20, 0x45, 0x2f, 0x3c, 0xb0, 0x92,
        0x11, 0xd3, 0xa7, 0x48, 0xcd, 0xe5, 0xc8, 0x11, 0xe3, 0x9c, 0x4e, 0xe8, 0x3c, 0xfe, 0x96,
        0xa1, 0xe4, 0x2a, 0xcf, 0xd2, 0xb8, 0x7a, 0xab, 0x05, 0xd1, 0x64, 0x2b, 0xa3, 0xaf, 0x9c,
        0x1b, 0xc3, 0x42, 0x10, 0x2c, 0x40, 0xad, 0x15, 0xdf, 0x4d, 0xe0, 0x20, 0x0a, 0x63, 0x63,
        0x87, 0x34, 0x71, 0x11, 0x87, 0xd4, 0x12, 0x09, 0x3b, 0x83, 0xbf, 0xaa, 0x43, 0x19, 0x1c,
        0xbd, 0x84, 0xa4, 0x5b, 0x02, 0x76, 0x33, 0x83, 0x99, 0xb1, 0xf5, 0xca, 0x17, 0xcc, 0x92,
        0x54, 0x45, 0x7e, 0x59, 0x06, 0x55, 0x1a, 0x70, 0x41, 0xe3, 0xdc, 0x91, 0x76, 0xe8, 0x6f,
        0xd3, 0xff, 0xdd, 0x00, 0xb0, 0xbc, 0x11, 0xf8, 0x10, 0x30, 0x97,
    ];
    /// 02-sunrise-sunset-esp.pcap frame 2 (bytes 34.., 116 bytes).
    const ESP_SEQ2: [u8; 116] = [
        0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x02, 0x1a, 0x70, 0x41, 0xe3, 0xdc, 0x91, 0x76,
        0xe8, 0x73, 0x12, 0xaf, 0x1b, 0x62, 0x82, 0x3b, 0x9f, 0x1c, 0x2f, 0xa7, 0xa9, 0xc7, 0x5a,
        0x90, 0xd4, 0x00, 0x2c, 0xed, 0xbe, 0xa8, 0x74, 0xa1, 0xac, 0x93, 0x87, 0xe3, 0x1f, 0xe2,
        0x0a, 0x26, 0x1a, 0xec, 0x58, 0x7f, 0x2e, 0xbe, 0xd6, 0xaf, 0x34, 0x87, 0xe3, 0x2e, 0xf5,
        0xb8, 0x03, 0x32, 0x0a, 0x2a, 0xb0, 0x7f, 0xef, 0x4e, 0xea, 0xd0, 0xcf, 0xec, 0x42, 0x43,
        0x45, 0x7f, 0x81, 0x90, 0x26, 0x3f, 0xee, 0x2e, 0x9e, 0x9f, 0x55, 0x3a, 0x28, 0x45, 0xe9,
        0x0a, 0xe1, 0x35, 0x29, 0xea, 0x94, 0x5d, 0xf8, 0xcd, 0x51, 0xba, 0x5e, 0x0c, 0x01, 0x56,
        0x2c, 0x34, 0x05, 0xf6, 0x45, 0xd5, 0xe6, 0x31, 0xfd, 0x2b, 0xaf,
    ];
    /// esp.pcapng frame 5 (bytes 34.., 132 bytes).
    const ESP_C: [u8; 132] = [
        0x23, 0x60, 0xb0, 0xe3, 0x00, 0x00, 0x00, 0x01, 0x79, 0xcb, 0x5f, 0x81, 0x65, 0x25, 0xd3,
        0x86, 0x14, 0x6f, 0x35, 0x9c, 0x0b, 0xee, 0x31, 0x77, 0x55, 0x0e, 0x57, 0x74, 0x94, 0x96,
        0xe3, 0x15, 0x49, 0xcd, 0x4e, 0xfa, 0xe1, 0x8a, 0xce, 0x39, 0x56, 0x1b, 0x72, 0x95, 0xf6,
        0xbd, 0x12, 0xeb, 0x59, 0x74, 0xec, 0x50, 0x0c, 0x0a, 0xdb, 0xc3, 0x96, 0x98, 0x05, 0xcd,
        0x4e, 0x58, 0x75, 0x50, 0x13, 0x66, 0x0b, 0xab, 0xee, 0xc3, 0x1b, 0xae, 0x40, 0xbb, 0xa3,
        0x79, 0x7f, 0xba, 0x93, 0xdd, 0x37, 0x73, 0x36, 0xd0, 0x43, 0x47, 0x18, 0x98, 0x3b, 0x4b,
        0x25, 0x60, 0x10, 0x8f, 0x10, 0xad, 0xd4, 0xc0, 0x56, 0x99, 0x75, 0x55, 0x70, 0x2e, 0xee,
        0xdf, 0x92, 0x08, 0xb5, 0x45, 0x67, 0x06, 0x82, 0x41, 0x85, 0x16, 0x9c, 0x51, 0x59, 0xbc,
        0xa4, 0x83, 0x64, 0x5a, 0x85, 0xe9, 0x20, 0x02, 0xa5, 0x33, 0x01, 0x64,
    ];
    /// esp.pcapng frame 6 (bytes 34.., 132 bytes).
    const ESP_S: [u8; 132] = [
        0xf0, 0x09, 0x2c, 0xb5, 0x00, 0x00, 0x00, 0x01, 0x2d, 0x7f, 0x96, 0x8d, 0x54, 0x2c, 0xc1,
        0x1a, 0x58, 0x6c, 0x57, 0xa2, 0x69, 0x97, 0x50, 0x5b, 0xa7, 0x96, 0x26, 0xcc, 0x3a, 0x05,
        0x2d, 0x9e, 0x07, 0xb3, 0x8f, 0xf7, 0xfe, 0x5e, 0x1f, 0x08, 0xb6, 0x99, 0x8a, 0x54, 0x67,
        0xa1, 0xb7, 0xb7, 0xbe, 0x79, 0x5c, 0x6c, 0x2e, 0x60, 0xb6, 0xa7, 0x32, 0x4d, 0xb9, 0x2b,
        0xa8, 0x4c, 0x07, 0x00, 0x52, 0xc5, 0xc6, 0x7f, 0xc9, 0xd3, 0x59, 0x3e, 0xba, 0xf1, 0x06,
        0xbc, 0x92, 0x02, 0x57, 0x01, 0x00, 0x55, 0x78, 0xbf, 0xab, 0x43, 0x4e, 0xe1, 0xe9, 0x9e,
        0x7b, 0xfc, 0xf4, 0x14, 0x8e, 0x9e, 0x82, 0xba, 0x80, 0x5d, 0x12, 0x1b, 0x79, 0xd2, 0x08,
        0x03, 0x08, 0xc7, 0x2c, 0x4a, 0x41, 0x5e, 0x14, 0xf9, 0xe7, 0x08, 0x9c, 0xd3, 0xb9, 0x77,
        0xf1, 0x27, 0xae, 0x00, 0x96, 0xec, 0xe5, 0x88, 0xec, 0xdb, 0x97, 0x66,
    ];
    /// espudp1.pcap frame 1 (udp.payload, 116 bytes).
    const UDP_SEQ1: [u8; 116] = [
        0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x01, 0xa7, 0x1a, 0x51, 0xde, 0x1c, 0xb9, 0x29,
        0x23, 0x8c, 0x4c, 0xab, 0x9e, 0xf2, 0x55, 0x0d, 0xb7, 0x64, 0x02, 0xc5, 0x01, 0xa2, 0x67,
        0x29, 0xfc, 0x8e, 0x8f, 0x7a, 0x7e, 0x63, 0xaa, 0x4b, 0x54, 0xaa, 0x59, 0xf6, 0x42, 0x17,
        0x7a, 0x29, 0x24, 0xcc, 0x23, 0x8d, 0x43, 0xb4, 0xc2, 0x8d, 0x51, 0x91, 0x23, 0x2b, 0xd1,
        0x60, 0x8e, 0x4f, 0x49, 0xc0, 0x47, 0x26, 0xb6, 0x12, 0x55, 0xc7, 0x9a, 0x5e, 0xfd, 0xc2,
        0x71, 0x51, 0x0f, 0xc0, 0x47, 0xbd, 0xd4, 0x5b, 0x64, 0x2c, 0x3b, 0x0f, 0x12, 0xb5, 0x6e,
        0x4d, 0x51, 0x49, 0xc6, 0x62, 0xbc, 0x46, 0x8f, 0x22, 0x1a, 0x52, 0xcc, 0xa3, 0x22, 0xad,
        0x5a, 0x3f, 0xe7, 0x6a, 0xe3, 0x33, 0xda, 0xc7, 0x83, 0xbe, 0x7e,
    ];
    /// espudp1.pcap frame 2 (udp.payload, 116 bytes).
    const UDP_SEQ2: [u8; 116] = [
        0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x02, 0x29, 0x31, 0x28, 0x24, 0xaf, 0xab, 0x9d,
        0x65, 0x41, 0x65, 0xfd, 0x7e, 0xee, 0xf7, 0x89, 0x3c, 0xa9, 0x11, 0x08, 0x6d, 0xee, 0xd6,
        0xe8, 0x1d, 0x8a, 0x7a, 0xba, 0xd8, 0x46, 0xe5, 0x45, 0x27, 0x04, 0xa8, 0x4c, 0xe7, 0xbe,
        0x19, 0xaa, 0x05, 0xc5, 0x49, 0xbc, 0x57, 0x6e, 0xe5, 0xaa, 0x39, 0xf2, 0x21, 0x13, 0x04,
        0xac, 0x4e, 0xb8, 0xd3, 0x75, 0x3d, 0xaf, 0xe6, 0xf9, 0xbb, 0x0d, 0xa1, 0x07, 0xbb, 0x11,
        0x98, 0x75, 0x43, 0xcc, 0x70, 0x08, 0x09, 0x95, 0xaa, 0x46, 0x27, 0xe5, 0x34, 0x17, 0xf3,
        0x39, 0x24, 0x55, 0xde, 0x7c, 0x9e, 0x01, 0x48, 0x1d, 0x75, 0xb2, 0x56, 0xf0, 0x27, 0x84,
        0xf4, 0x80, 0x74, 0xc1, 0x36, 0xde, 0x6f, 0x50, 0xee, 0xcf, 0x0a,
    ];

    #[test]
    fn raw_esp_rising_sequence_and_sa_each_way() {
        assert_eq!(
            parse_esp(&ESP_SEQ1),
            Some(EspHeader {
                spi: 0x1234_5678,
                sequence: 1
            })
        );
        let v = run(RAW, 0, &[(C, &ESP_SEQ1), (C, &ESP_SEQ2)]).expect("match");
        assert_eq!(
            v.evidence.get("rising_sequence"),
            Some(&crate::fingerprint::Fact::Bool(true))
        );
        let v = run(RAW, 0, &[(C, &ESP_C), (S, &ESP_S)]).expect("match");
        assert_eq!(v.confidence, Confidence::BothDirections);
        let v = run(RAW, 0, &[(C, &ESP_C)]).expect("conclude");
        assert_eq!(v.confidence, Confidence::OneMessage);
    }

    #[test]
    fn esp_in_udp_needs_port_4500_and_corroboration() {
        assert!(run(
            Transport::Udp,
            NAT_T_PORT,
            &[(C, &UDP_SEQ1), (C, &UDP_SEQ2)]
        )
        .is_some());
        assert!(run(Transport::Udp, NAT_T_PORT, &[(C, &UDP_SEQ1)]).is_none());
        assert!(run(Transport::Udp, 4501, &[(C, &UDP_SEQ1), (C, &UDP_SEQ2)]).is_none());
        // After an IKE message (non-ESP marker) one ESP packet is enough.
        let ike = [0u8, 0, 0, 0, 0x23, 0x86, 0x71, 0xc8, 0x03, 0x75, 0xa0, 0xfb];
        assert!(run(
            Transport::Udp,
            NAT_T_PORT,
            &[(C, &ike), (C, &[0xff]), (S, &UDP_SEQ1)]
        )
        .is_some());
    }

    #[test]
    fn near_misses_are_rejected() {
        let mut bad = ESP_SEQ1;
        bad[..4].copy_from_slice(&[0, 0, 0, 0x20]);
        assert!(parse_esp(&bad).is_none(), "reserved SPI");
        let mut bad = ESP_SEQ1;
        bad[4..8].copy_from_slice(&[0; 4]);
        assert!(parse_esp(&bad).is_none(), "sequence 0");
        // Same SPI both ways, falling sequence, unrelated UDP on 4500 (DNS, STUN, QUIC).
        assert!(run(
            Transport::Udp,
            NAT_T_PORT,
            &[(C, &UDP_SEQ2), (C, &UDP_SEQ1), (S, &UDP_SEQ1)]
        )
        .is_none());
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
        let dns2 = b"\x12\x35\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03org\x00\x00\x01\x00\x01";
        assert!(run(Transport::Udp, NAT_T_PORT, &[(C, dns), (C, dns2)]).is_none());
        let stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl";
        assert!(run(Transport::Udp, NAT_T_PORT, &[(C, stun)]).is_none());
        assert_eq!(
            State::default().observe(&pl(C, Transport::Tcp, NAT_T_PORT, &ESP_SEQ1)),
            Step::NotThis
        );
    }

    static REG: [&Spec; 1] = [&SPEC];

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(packets in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..600)), 0..16)) {
            for t in [RAW, Transport::Udp] {
                let mut fs = FingerprintState::default();
                for (to_server, bytes) in &packets {
                    let d = if *to_server { C } else { S };
                    let _ = parse_esp(bytes);
                    fs.observe(&REG, &pl(d, t, NAT_T_PORT, bytes));
                }
                prop_assert!(fs.finish(&REG, &ctx(t)).matches.len() <= 1);
            }
        }
    }
}
