//! Ultrasurf (UltraReach's circumvention client): its TCP sessions open with a fixed 8-byte
//! preamble.
//!
//! Wire fact: the first payload of an Ultrasurf TCP connection begins with the bytes
//! `cc 1c 30 41 5b a4 38 66`. This is the one documented, specific fact about Ultrasurf's own
//! protocol that we found: it is what nDPI's Ultrasurf dissector (`protocols/ultrasurf.c`,
//! 2022–23, with the sample capture `ultrasurf.pcap` in its test suite) keys on, whichever side
//! sends first. There is no specification; Ultrasurf is closed source.
//!
//! Precision: 64 fixed bits at a fixed offset. A random first payload carries them with
//! probability 2^-64, and no common protocol starts with them: TLS starts `16 03`, HTTP with a
//! method, SSH with `SSH-`, the fully-encrypted tests would only call such bytes random. Only the
//! flow's very first payload is examined, so the preamble inside a later stream (a file download
//! that happens to contain it) does not count.
//!
//! Labels: `protocol=ultrasurf`, `application=ultrasurf`, family proxy (Ultrasurf relays the
//! user's web traffic through its own proxy servers). No dev-corpus capture contains Ultrasurf;
//! the real-traffic benchmark capture (`../shared/bench/ndpi-mix.pcap.gz`, nDPI's test
//! captures) holds one session, which the tests use.

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Direction;

/// The preamble that opens an Ultrasurf TCP session.
pub const PREAMBLE: [u8; 8] = [0xcc, 0x1c, 0x30, 0x41, 0x5b, 0xa4, 0x38, 0x66];

/// Detector entry: TCP, the flow's first payload only.
pub static SPEC: Spec = Spec {
    name: "ultrasurf",
    family: Family::Proxy,
    transports: Transports::TCP,
    payload_budget: 1,
    rank: rank::SPECIFIC,
    start: || Box::new(State),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// Stateless: the decision is taken on the first payload.
#[derive(Debug, Default, Clone)]
pub struct State;

impl Fingerprinter for State {
    fn observe(&mut self, payload: &Payload<'_>) -> Step {
        if payload.nth != 0 || !payload.bytes.starts_with(&PREAMBLE) {
            return Step::NotThis;
        }
        let mut v = Verdict::new(Confidence::OneMessage)
            .fact("preamble", "cc1c30415ba43866")
            .fact("first_payload_len", payload.bytes.len() as u64);
        v.protocol = Some("ultrasurf");
        v.application = Some("ultrasurf");
        v.roles_reversed = payload.direction == Direction::ToClient;
        Step::Match(v)
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pl(direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes).nth(nth).ports(49_152, 443)
    }

    fn with_preamble(rest: &[u8]) -> Vec<u8> {
        let mut b = PREAMBLE.to_vec();
        b.extend_from_slice(rest);
        b
    }

    /// First 24 bytes of the first payload (2576 bytes, TCP 65.49.68.25:50053 ->
    /// 10.132.0.23:37898) of the Ultrasurf session in `../shared/bench/ndpi-mix.pcap.gz`.
    const REAL_FIRST_PAYLOAD: [u8; 24] = [
        0xcc, 0x1c, 0x30, 0x41, 0x5b, 0xa4, 0x38, 0x66, 0x99, 0x6f, 0xeb, 0xa3, 0xff, 0xc3, 0xdd,
        0x23, 0x91, 0xa2, 0xeb, 0xc6, 0x70, 0xb2, 0x55, 0x9e,
    ];

    #[test]
    fn real_session_opening_is_ultrasurf() {
        assert!(matches!(
            State.observe(&pl(Direction::ToServer, 0, &REAL_FIRST_PAYLOAD)),
            Step::Match(v) if v.application == Some("ultrasurf")
        ));
    }

    #[test]
    fn preamble_first_payload_names_ultrasurf() {
        let bytes = with_preamble(&[0x17, 0x42, 0x00, 0x99, 0x10]);
        match State.observe(&pl(Direction::ToServer, 0, &bytes)) {
            Step::Match(v) => {
                assert_eq!(v.protocol, Some("ultrasurf"));
                assert_eq!(v.application, Some("ultrasurf"));
                assert_eq!(v.confidence, Confidence::OneMessage);
                assert!(!v.roles_reversed);
                assert_eq!(v.evidence.get("first_payload_len"), Some(&13u64.into()));
            }
            other => panic!("{other:?}"),
        }
        // Sent first by the flow's server side (capture began mid-handshake): roles reversed.
        match State.observe(&pl(Direction::ToClient, 0, &PREAMBLE)) {
            Step::Match(v) => assert!(v.roles_reversed),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn near_misses_are_not_ultrasurf() {
        let mut one_bit_off = with_preamble(b"rest");
        one_bit_off[7] ^= 0x01;
        let tls_client_hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
        let cases: [&[u8]; 6] = [
            &PREAMBLE[..7],
            &one_bit_off,
            &tls_client_hello,
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
            &[0u8; 0],
        ];
        for bytes in cases {
            assert!(
                matches!(
                    State.observe(&pl(Direction::ToServer, 0, bytes)),
                    Step::NotThis
                ),
                "{bytes:02x?}"
            );
        }
        // The preamble later in a stream is data, not a session opening.
        let later = with_preamble(b"");
        assert!(matches!(
            State.observe(&pl(Direction::ToClient, 3, &later)),
            Step::NotThis
        ));
    }

    proptest! {
        #[test]
        fn never_panics_and_decides_at_once(bytes in proptest::collection::vec(any::<u8>(), 0..64), nth in 0u8..4) {
            let step = State.observe(&pl(Direction::ToServer, nth, &bytes));
            let expected = nth == 0 && bytes.starts_with(&PREAMBLE);
            prop_assert_eq!(matches!(step, Step::Match(_)), expected);
            prop_assert!(!matches!(step, Step::NeedMore), "budget is one payload");
        }
    }
}
