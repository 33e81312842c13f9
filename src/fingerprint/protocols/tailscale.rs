//! Tailscale disco messages (peer discovery and NAT traversal), sent over UDP on the same
//! socket as Tailscale's WireGuard traffic.
//!
//! Layout, from Tailscale's `disco` package documentation (also restated by iroh's
//! `protos/disco.rs`):
//!
//! | bytes | field |
//! |---|---|
//! | 0..6 | magic "TS💬" = 54 53 F0 9F 92 AC |
//! | 6..38 | sender's disco public key (Curve25519) |
//! | 38..62 | nonce |
//! | 62.. | NaCl box: 16-byte Poly1305 tag + message type (1) + version (1) + payload |
//!
//! A payload with the magic, a non-zero key and room for the sealed header (>= 80 bytes) is a
//! disco message. One each way is BothDirections; a single one is OneMessage at the end.
//! Other payloads (the WireGuard packets sharing the socket) are skipped, not held against the
//! flow. The verdict names the application `tailscale`, so a flow that `wireguard` names keeps
//! the Tailscale label too. DERP relaying over TLS is not recognised here.

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};

/// Registry entry: Tailscale disco over UDP (any port; 41641 by default).
pub static SPEC: Spec = Spec {
    name: "tailscale",
    family: Family::Vpn,
    transports: Transports::UDP,
    payload_budget: 4,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// "TS💬": ASCII "TS" and the UTF-8 speech-balloon emoji U+1F4AC.
pub const MAGIC: [u8; 6] = [0x54, 0x53, 0xF0, 0x9F, 0x92, 0xAC];
/// Magic + public key + nonce.
pub const HEADER_LEN: usize = 6 + 32 + 24;
/// Header + Poly1305 tag + message type and version.
pub const MIN_LEN: usize = HEADER_LEN + 16 + 2;

/// Returns the sealed-box length of a disco message, or `None` when `b` is not one.
pub fn parse_disco(b: &[u8]) -> Option<usize> {
    let key = b.get(6..38)?;
    (b.starts_with(&MAGIC) && b.len() >= MIN_LEN && key.iter().any(|&x| x != 0))
        .then(|| b.len() - HEADER_LEN)
}

/// Per-flow state: disco messages seen each way.
#[derive(Debug, Default, Clone)]
pub struct State {
    seen: [u8; 2],
    sealed_len: usize,
}

impl State {
    fn verdict(&self, confidence: Confidence) -> Verdict {
        let mut v = Verdict::new(confidence)
            .fact("disco_magic", true)
            .fact(
                "disco_messages",
                u32::from(self.seen[0]) + u32::from(self.seen[1]),
            )
            .fact("sealed_len", self.sealed_len);
        v.application = Some("tailscale");
        v
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let Some(sealed) = parse_disco(p.bytes) else {
            return Step::NeedMore;
        };
        let dir = p.direction.index();
        self.seen[dir] = self.seen[dir].saturating_add(1);
        if self.sealed_len == 0 {
            self.sealed_len = sealed;
        }
        if self.seen.iter().all(|&n| n > 0) {
            Step::Match(self.verdict(Confidence::BothDirections))
        } else {
            Step::NeedMore
        }
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        self.seen
            .iter()
            .any(|&n| n > 0)
            .then(|| self.verdict(Confidence::OneMessage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::FingerprintState;
    use crate::flow::{Direction, Transport};
    use proptest::prelude::*;

    fn pl(direction: Direction, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes)
            .over(Transport::Udp)
            .ports(41641, 41641)
    }

    fn ctx() -> FlowContext {
        FlowContext::test(Transport::Udp, 41641, 41641)
    }

    /// No Tailscale capture is in the dev corpus: a ping-sized disco message built from the
    /// documented layout (magic, key, nonce, 16-byte tag + 46-byte ping).
    fn disco_ping(key_byte: u8) -> Vec<u8> {
        let mut m = MAGIC.to_vec();
        m.extend(std::iter::repeat_n(key_byte, 32));
        m.extend((0u8..24).map(|i| i.wrapping_mul(37)));
        m.extend((0u8..62).map(|i| i.wrapping_mul(91) ^ 0x5a));
        m
    }

    #[test]
    fn disco_each_way_is_both_directions() {
        let (a, b) = (disco_ping(0x11), disco_ping(0x22));
        assert_eq!(parse_disco(&a), Some(62));
        let mut s = State::default();
        assert_eq!(s.observe(&pl(Direction::ToServer, &a)), Step::NeedMore);
        let Step::Match(v) = s.observe(&pl(Direction::ToClient, &b)) else {
            panic!("no match")
        };
        assert_eq!(
            (v.confidence, v.application),
            (Confidence::BothDirections, Some("tailscale"))
        );
    }

    #[test]
    fn one_disco_message_concludes_and_wireguard_is_skipped() {
        let wg_keepalive = [
            4u8, 0, 0, 0, 0x02, 0xca, 0x1a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xd1, 0x20, 0x23, 0xbd,
            0xc5, 0xc9, 0x8e, 0x1e, 0x1d, 0x42, 0x71, 0xf5, 0x4d, 0x54, 0x13, 0x9c,
        ];
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Direction::ToServer, &wg_keepalive)),
            Step::NeedMore
        );
        assert_eq!(
            s.observe(&pl(Direction::ToServer, &disco_ping(1))),
            Step::NeedMore
        );
        assert_eq!(
            s.conclude(&ctx()).map(|v| v.confidence),
            Some(Confidence::OneMessage)
        );
    }

    #[test]
    fn near_misses_are_rejected() {
        let ping = disco_ping(0x11);
        assert!(parse_disco(&ping[..MIN_LEN - 1]).is_none(), "too short");
        assert!(parse_disco(&disco_ping(0)).is_none(), "zero key");
        let mut bad = ping.clone();
        bad[5] = 0xad;
        assert!(parse_disco(&bad).is_none(), "magic");
        // "TS" followed by text, DNS, STUN: nothing.
        let mut s = State::default();
        for b in [&b"TS: hello world, this is not a disco message at all, just some text....................."[..], b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", b"\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl"] {
            assert_eq!(s.observe(&pl(Direction::ToServer, b)), Step::NeedMore);
        }
        assert!(s.conclude(&ctx()).is_none());
    }

    static REG: [&Spec; 1] = [&SPEC];

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_disco(&bytes);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = parse_disco(&with_magic);
            let mut fs = FingerprintState::default();
            for _ in 0..6 {
                fs.observe(&REG, &pl(Direction::ToServer, &bytes));
                fs.observe(&REG, &pl(Direction::ToClient, &with_magic));
            }
            prop_assert!(fs.finish(&REG, &ctx()).matches.len() <= 1);
        }
    }
}
