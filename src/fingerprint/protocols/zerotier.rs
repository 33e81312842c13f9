//! ZeroTier (ZeroTierOne) peer-to-peer packets over UDP (port 9993 by default; not required).
//!
//! Packet header, from ZeroTierOne `node/Packet.hpp` (field indexes ZT_PACKET_IDX_*):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | packet id (also the cipher IV) |
//! | 8..13 | destination ZeroTier address (40 bits) |
//! | 13..18 | source address; a fragment has 0xFF at byte 13 instead (reserved address prefix) |
//! | 18 | flags FFCCCHHH: 0x80 deprecated encrypted flag, 0x40 fragmented, cipher suite (3 bits), hops (3 bits) |
//! | 19..27 | MAC |
//! | 27 | verb (low 5 bits; 0x80 = LZ4 compressed), encrypted unless cipher suite 0 |
//!
//! Packets are at least 28 bytes. Addresses are never 0 and never start with 0xFF. Two
//! checks, both structural: (1) HELLO, the one message sent in the clear (cipher suite 0,
//! verb 0x01): protocol version 4..=20 at 28, then versions, revision and timestamp, then the
//! sender's identity at 41 whose 5-byte address must equal the header's source address, and
//! identity type 0 (C25519) or 1 (P-384) at 46 -> OneMessage. (2) A packet each way whose
//! destination and source addresses are swapped (10 bytes echoed) -> BothDirections.
//! Fragments and unparseable payloads after a valid one are skipped.

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, Payload, Spec, Step, Transports, Verdict,
};

/// Registry entry: ZeroTier over UDP.
pub static SPEC: Spec = Spec {
    name: "zerotier",
    family: Family::Vpn,
    transports: Transports::UDP,
    payload_budget: 4,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// ZT_PROTO_MIN_PACKET_LENGTH.
pub const MIN_LEN: usize = 28;
/// Verb of HELLO (Packet::VERB_HELLO).
const VERB_HELLO: u8 = 0x01;
/// Offset of the identity in a HELLO (ZT_PROTO_VERB_HELLO_IDX_IDENTITY).
const HELLO_IDENTITY: usize = 41;
/// Identity address (5) + type (1) + C25519 public key (64).
const IDENTITY_MIN: usize = 70;

/// The clear-text facts of one ZeroTier packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZtHeader {
    pub destination: u64,
    pub source: u64,
    pub cipher_suite: u8,
    pub hops: u8,
    /// HELLO in the clear whose identity address equals the source: its protocol version.
    pub hello_protocol_version: Option<u8>,
}

fn address(b: &[u8], at: usize) -> Option<u64> {
    let a = b.get(at..at + 5)?;
    if a[0] == 0xFF {
        return None;
    }
    let v = a.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    (v != 0).then_some(v)
}

/// True when `b` is a ZeroTier fragment (0xFF at byte 13, ZT_PACKET_FRAGMENT_INDICATOR).
pub fn is_fragment(b: &[u8]) -> bool {
    b.len() >= 16 && b.get(13) == Some(&0xFF)
}

/// Parses a ZeroTier packet header (not a fragment); see the module table.
pub fn parse_packet(b: &[u8]) -> Option<ZtHeader> {
    if b.len() < MIN_LEN {
        return None;
    }
    let destination = address(b, 8)?;
    let source = address(b, 13)?;
    let flags = *b.get(18)?;
    let cipher_suite = (flags >> 3) & 0x07;
    // Suites 0..=3 are defined (none/Poly1305, Salsa20/12, trusted path, AES-GMAC-SIV).
    if destination == source || cipher_suite > 3 {
        return None;
    }
    let hello_protocol_version = (cipher_suite == 0 && b.get(27) == Some(&VERB_HELLO))
        .then(|| {
            let version = *b.get(28)?;
            let identity = b.get(HELLO_IDENTITY..HELLO_IDENTITY + IDENTITY_MIN)?;
            ((4..=20).contains(&version)
                && address(identity, 0) == Some(source)
                && matches!(identity[5], 0 | 1))
            .then_some(version)
        })
        .flatten();
    Some(ZtHeader {
        destination,
        source,
        cipher_suite,
        hops: flags & 0x07,
        hello_protocol_version,
    })
}

/// Per-flow state: the first header seen each way.
#[derive(Debug, Default, Clone)]
pub struct State {
    first: [Option<ZtHeader>; 2],
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let seen_any = self.first.iter().any(Option::is_some);
        if is_fragment(p.bytes) {
            return Step::NeedMore;
        }
        let Some(h) = parse_packet(p.bytes) else {
            return if seen_any {
                Step::NeedMore
            } else {
                Step::NotThis
            };
        };
        if let Some(version) = h.hello_protocol_version {
            return Step::Match(
                Verdict::new(Confidence::OneMessage)
                    .fact("verb", "hello")
                    .fact("protocol_version", version)
                    .fact("identity_matches_source", true),
            );
        }
        let dir = p.direction.index();
        let other = p.direction.reverse().index();
        if let Some(theirs) = self.first[other] {
            if theirs.destination == h.source && theirs.source == h.destination {
                return Step::Match(
                    Verdict::new(Confidence::BothDirections)
                        .fact("addresses_swapped", true)
                        .fact("cipher_suite", h.cipher_suite),
                );
            }
        }
        if self.first[dir].is_none() {
            self.first[dir] = Some(h);
        }
        Step::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::{FingerprintState, FlowContext};
    use crate::flow::{Direction, Transport};
    use proptest::prelude::*;

    fn pl(direction: Direction, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes)
            .over(Transport::Udp)
            .ports(9993, 9993)
    }

    fn ctx() -> FlowContext {
        FlowContext::test(Transport::Udp, 9993, 9993)
    }

    const A: [u8; 5] = [0x8e, 0x4d, 0xf2, 0x8b, 0x72];
    const B: [u8; 5] = [0x77, 0x8c, 0xde, 0x71, 0x90];

    /// No ZeroTier capture is in the dev corpus: packets built from the Packet.hpp layout.
    fn packet(dest: [u8; 5], src: [u8; 5], flags: u8, verb: u8, body: &[u8]) -> Vec<u8> {
        let mut p = vec![0x3c, 0x11, 0x9a, 0x02, 0xe5, 0x70, 0x1b, 0x44];
        p.extend_from_slice(&dest);
        p.extend_from_slice(&src);
        p.push(flags);
        p.extend_from_slice(&[0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18]);
        p.push(verb);
        p.extend_from_slice(body);
        p
    }

    fn hello(src: [u8; 5], identity_addr: [u8; 5]) -> Vec<u8> {
        let mut body = vec![12, 1, 14, 0, 2];
        body.extend_from_slice(&0x0000_0190_1234_5678u64.to_be_bytes());
        body.extend_from_slice(&identity_addr);
        body.push(0);
        body.extend((0u8..64).map(|i| i.wrapping_mul(53)));
        body.push(0);
        packet(B, src, 0x00, VERB_HELLO, &body)
    }

    #[test]
    fn hello_identity_matches_source() {
        let h = parse_packet(&hello(A, A)).expect("packet");
        assert_eq!(h.hello_protocol_version, Some(12));
        assert!(matches!(
            State::default().observe(&pl(Direction::ToServer, &hello(A, A))),
            Step::Match(_)
        ));
        assert_eq!(
            parse_packet(&hello(A, B)).and_then(|h| h.hello_protocol_version),
            None
        );
    }

    #[test]
    fn swapped_addresses_each_way() {
        let out = packet(B, A, 0x08, 0x5e, &[0x99; 40]);
        let back = packet(A, B, 0x08, 0x13, &[0x42; 60]);
        let mut s = State::default();
        assert_eq!(s.observe(&pl(Direction::ToServer, &out)), Step::NeedMore);
        let Step::Match(v) = s.observe(&pl(Direction::ToClient, &back)) else {
            panic!("no match")
        };
        assert_eq!(v.confidence, Confidence::BothDirections);
    }

    #[test]
    fn near_misses_are_rejected() {
        // Reserved address prefix, zero address, same source and destination, cipher suite 5.
        assert!(parse_packet(&packet(B, [0xff, 1, 2, 3, 4], 0, 1, &[0; 8])).is_none());
        assert!(parse_packet(&packet(B, [0; 5], 0, 1, &[0; 8])).is_none());
        assert!(parse_packet(&packet(A, A, 0, 1, &[0; 8])).is_none());
        assert!(parse_packet(&packet(B, A, 0x28, 1, &[0; 8])).is_none());
        // Same direction twice, or unrelated addresses back: no decision.
        let out = packet(B, A, 0x08, 0x5e, &[0x99; 40]);
        let other = packet(A, [1, 2, 3, 4, 5], 0x08, 0x5e, &[0x99; 40]);
        let mut s = State::default();
        assert_eq!(s.observe(&pl(Direction::ToServer, &out)), Step::NeedMore);
        assert_eq!(s.observe(&pl(Direction::ToServer, &out)), Step::NeedMore);
        assert_eq!(s.observe(&pl(Direction::ToClient, &other)), Step::NeedMore);
        assert!(s.conclude(&ctx()).is_none());
        // Short DNS query: excluded.
        assert_eq!(
            State::default().observe(&pl(
                Direction::ToServer,
                b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
            )),
            Step::NotThis
        );
    }

    static REG: [&Spec; 1] = [&SPEC];

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_packet(&bytes);
            let _ = is_fragment(&bytes);
            let mut fs = FingerprintState::default();
            for _ in 0..6 {
                fs.observe(&REG, &pl(Direction::ToServer, &bytes));
                fs.observe(&REG, &pl(Direction::ToClient, &bytes));
            }
            prop_assert!(fs.finish(&REG, &ctx()).matches.len() <= 1);
        }
    }
}
