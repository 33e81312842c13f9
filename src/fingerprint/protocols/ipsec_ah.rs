//! AH: IPsec Authentication Header (RFC 4302), IP protocol 51.
//!
//! Header (RFC 4302 §2), big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | next header (IP protocol number of what follows) |
//! | 1 | payload length: AH length in 32-bit words minus 2 (§2.2) |
//! | 2..4 | reserved, zero (§2.3) |
//! | 4..8 | SPI, >= 256 for a real SA (§2.4, RFC 4303 §2.1) |
//! | 8..12 | sequence number, >= 1 (§2.5) |
//! | 12.. | ICV, a multiple of 32 bits (§2.6); 12 to 32 bytes for the RFC 8221 algorithms |
//!
//! AH does not encrypt, so what follows is checked against the next header: an ICMP checksum,
//! a UDP length, an IPv4 header checksum and length, an IPv6 payload length, a TCP data
//! offset, an ESP SPI, or nothing for "no next header" (59). The IP protocol number names AH;
//! one packet with a valid header is OneMessage, and `inner_verified` says whether the carried
//! packet checked out.

use super::gre::{ipv4_packet_ok, ipv6_packet_ok, ones_complement_ok};
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Transport;

/// Registry entry: AH flows (IP protocol 51).
pub static SPEC: Spec = Spec {
    name: "ipsec_ah",
    family: Family::Vpn,
    transports: Transports::OTHER_IP,
    payload_budget: 2,
    rank: rank::SPECIFIC,
    start: || Box::new(State),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// IANA protocol number of AH.
pub const IP_PROTO_AH: u8 = 51;

/// The facts of one AH header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AhHeader {
    pub next_header: u8,
    /// AH length in bytes ((payload length + 2) * 4).
    pub length: usize,
    pub icv_len: usize,
    pub spi: u32,
    pub sequence: u32,
    /// The protected packet after the header checked out for its protocol.
    pub inner_verified: bool,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_be_bytes)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
}

/// Checks the packet AH protects, by its protocol number (transport or tunnel mode).
fn inner_ok(next_header: u8, inner: &[u8]) -> bool {
    match next_header {
        1 => inner.len() >= 8 && ones_complement_ok(inner),
        4 => ipv4_packet_ok(inner, inner.len(), true),
        6 => inner
            .get(12)
            .is_some_and(|&off| off >> 4 >= 5 && usize::from(off >> 4) * 4 <= inner.len()),
        17 => be16(inner, 4).is_some_and(|l| usize::from(l) == inner.len() && l >= 8),
        41 => ipv6_packet_ok(inner, inner.len(), true),
        50 => be32(inner, 0).is_some_and(|spi| spi >= 256),
        58 => inner.len() >= 4,
        59 => inner.is_empty(),
        _ => false,
    }
}

/// Parses an AH header at offset 0 (see the module table).
pub fn parse_ah(b: &[u8]) -> Option<AhHeader> {
    let next_header = *b.first()?;
    let length = (usize::from(*b.get(1)?) + 2) * 4;
    let icv_len = length.checked_sub(12)?;
    if be16(b, 2)? != 0 || !(8..=64).contains(&icv_len) || length > b.len() {
        return None;
    }
    let spi = be32(b, 4).filter(|&s| s >= 256)?;
    let sequence = be32(b, 8).filter(|&s| s >= 1)?;
    let inner_verified = inner_ok(next_header, b.get(length..).unwrap_or_default());
    Some(AhHeader {
        next_header,
        length,
        icv_len,
        spi,
        sequence,
        inner_verified,
    })
}

/// Per-flow state: the first AH packet decides.
#[derive(Debug, Default, Clone)]
pub struct State;

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        if p.transport != Transport::Other(IP_PROTO_AH) {
            return Step::NotThis;
        }
        match parse_ah(p.bytes) {
            Some(h) => Step::Match(
                Verdict::new(Confidence::OneMessage)
                    .fact("spi", h.spi)
                    .fact("sequence", h.sequence)
                    .fact("icv_len", h.icv_len)
                    .fact("next_header", h.next_header)
                    .fact("inner_verified", h.inner_verified),
            ),
            None => Step::NotThis,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::{FingerprintState, FlowContext};
    use crate::flow::Direction;
    use proptest::prelude::*;

    fn pl(transport: Transport, bytes: &[u8]) -> Payload<'_> {
        Payload::test(Direction::ToServer, bytes)
            .over(transport)
            .ports(0, 0)
    }

    /// ah.pcapng frame 5 (bytes 34.., 104 bytes).
    const AH_ICMP_REQUEST: [u8; 104] = [
        0x01, 0x04, 0x00, 0x00, 0x60, 0x48, 0x16, 0xf6, 0x00, 0x00, 0x00, 0x01, 0xe7, 0x32, 0xab,
        0xac, 0xe1, 0xc6, 0x00, 0x46, 0xee, 0xc6, 0x41, 0xed, 0x08, 0x00, 0x67, 0x04, 0x00, 0x05,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x17, 0x2c, 0xab, 0xcd, 0xab, 0xcd, 0xab,
        0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd,
        0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab,
        0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd,
        0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd,
    ];
    /// ah.pcapng frame 6 (bytes 34.., 104 bytes).
    const AH_ICMP_REPLY: [u8; 104] = [
        0x01, 0x04, 0x00, 0x00, 0xaf, 0x86, 0x83, 0xef, 0x00, 0x00, 0x00, 0x01, 0x02, 0xee, 0x2d,
        0xd7, 0xfb, 0x68, 0x54, 0xf1, 0xcb, 0xe8, 0x10, 0x9c, 0x00, 0x00, 0x6f, 0x04, 0x00, 0x05,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x17, 0x2c, 0xab, 0xcd, 0xab, 0xcd, 0xab,
        0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd,
        0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab,
        0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd,
        0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd,
    ];

    #[test]
    fn ah_transport_mode_icmp() {
        let h = parse_ah(&AH_ICMP_REQUEST).expect("ah");
        assert_eq!(
            (
                h.next_header,
                h.length,
                h.icv_len,
                h.spi,
                h.sequence,
                h.inner_verified
            ),
            (1, 24, 12, 0x6048_16f6, 1, true)
        );
        assert!(parse_ah(&AH_ICMP_REPLY).is_some_and(|h| h.inner_verified));
        assert!(matches!(
            State.observe(&pl(Transport::Other(IP_PROTO_AH), &AH_ICMP_REQUEST)),
            Step::Match(_)
        ));
    }

    #[test]
    fn near_misses_are_rejected() {
        let mut bad = AH_ICMP_REQUEST;
        bad[2] = 1;
        assert!(parse_ah(&bad).is_none(), "reserved");
        let mut bad = AH_ICMP_REQUEST;
        bad[1] = 0xff;
        assert!(parse_ah(&bad).is_none(), "length beyond the packet");
        let mut bad = AH_ICMP_REQUEST;
        bad[4..8].copy_from_slice(&[0, 0, 0, 9]);
        assert!(parse_ah(&bad).is_none(), "reserved SPI");
        // A damaged ICMP message still parses but is not verified.
        let mut bad = AH_ICMP_REQUEST;
        bad[40] ^= 0xff;
        assert!(parse_ah(&bad).is_some_and(|h| !h.inner_verified));
        // Offered under another protocol.
        assert_eq!(
            State.observe(&pl(Transport::Other(50), &AH_ICMP_REQUEST)),
            Step::NotThis
        );
        assert!(parse_ah(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00").is_none());
    }

    static REG: [&Spec; 1] = [&SPEC];

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_ah(&bytes);
            let mut fs = FingerprintState::default();
            for _ in 0..4 {
                fs.observe(&REG, &pl(Transport::Other(IP_PROTO_AH), &bytes));
            }
            let ctx = FlowContext {
                packets: [4, 0],
                payload_bytes: [0, 0],
                payload_packets: [4, 0],
                ..FlowContext::test(Transport::Other(IP_PROTO_AH), 0, 0)
            };
            prop_assert!(fs.finish(&REG, &ctx).matches.len() <= 1);
        }
    }
}
