//! STUN (RFC 5389 / RFC 8489, and classic RFC 3489): NAT traversal binding and TURN messages.
//!
//! Header (RFC 5389 §6, 20 bytes): two zero bits, 14-bit message type (method bits
//! M11..M0 interleaved with class bits C1 C0), message length (bytes after the header, a
//! multiple of 4), magic cookie 0x2112A442, 96-bit transaction id. Attributes are TLVs padded to
//! 4 bytes (§15) and must cover the message exactly. RFC 3489 messages have no cookie (the 16
//! bytes are all transaction id); they are accepted only with the classic message types and a
//! clean walk over the classic attribute types (§11.2, 0x0001..0x000b), or when a response
//! echoes the request's transaction id. Over TCP messages are sent as-is (§7.2.2).

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};

/// Detector registration: STUN, a generic carrier.
pub static SPEC: Spec = Spec {
    name: "stun",
    family: Family::Web,
    transports: Transports::TCP_UDP,
    payload_budget: 4,
    rank: rank::CARRIER,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// RFC 5389 §6 magic cookie.
pub const MAGIC_COOKIE: u32 = 0x2112_a442;
const HEADER: usize = 20;

/// Facts of one STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    pub msg_type: u16,
    /// Method (12 bits: 0x001 Binding, 0x003 Allocate, ...).
    pub method: u16,
    /// 0 request, 1 indication, 2 success response, 3 error response.
    pub class: u8,
    pub has_cookie: bool,
    pub attributes: u8,
    pub transaction: [u8; 12],
    /// Total bytes of the message (header + attributes).
    pub len: usize,
}

/// Parses a STUN message at the start of `b` (it may be followed by more bytes over TCP).
pub fn parse_message(b: &[u8]) -> Option<Message> {
    let h = b.get(..HEADER)?;
    let msg_type = u16::from_be_bytes([h[0], h[1]]);
    if msg_type & 0xc000 != 0 {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if length % 4 != 0 {
        return None;
    }
    let has_cookie = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) == MAGIC_COOKIE;
    let method = (msg_type & 0x000f) | ((msg_type & 0x00e0) >> 1) | ((msg_type & 0x3e00) >> 2);
    let class = (((msg_type >> 7) & 0x2) | ((msg_type >> 4) & 0x1)) as u8;
    if !has_cookie
        && !matches!(
            msg_type,
            0x0001 | 0x0101 | 0x0111 | 0x0002 | 0x0102 | 0x0112
        )
    {
        return None;
    }
    // Methods registered by RFC 5389 and TURN (RFC 8656 §18): 0x001, 0x003..0x00a.
    if !matches!(method, 0x001..=0x00a) {
        return None;
    }
    let attrs = b.get(HEADER..HEADER + length)?;
    let mut at = 0usize;
    let mut attributes = 0u8;
    while at < attrs.len() {
        let t = u16::from_be_bytes(attrs.get(at..at + 2)?.try_into().ok()?);
        let l = usize::from(u16::from_be_bytes(
            attrs.get(at + 2..at + 4)?.try_into().ok()?,
        ));
        if !has_cookie && !(0x0001..=0x000b).contains(&t) {
            return None;
        }
        at += 4 + l.div_ceil(4) * 4;
        attributes = attributes.saturating_add(1);
    }
    if at != attrs.len() {
        return None;
    }
    let transaction: [u8; 12] = h.get(8..20)?.try_into().ok()?;
    Some(Message {
        msg_type,
        method,
        class,
        has_cookie,
        attributes,
        transaction,
        len: HEADER + length,
    })
}

/// Per-flow state: requests seen, to match responses by transaction id.
#[derive(Debug, Default, Clone)]
struct State {
    requests: Vec<[u8; 12]>,
    first: Option<Message>,
}

fn verdict(confidence: Confidence, m: &Message, matched: bool) -> Verdict {
    Verdict::new(confidence)
        .fact("message_type", format!("0x{:04x}", m.msg_type))
        .fact("method", m.method)
        .fact("class", m.class)
        .fact("magic_cookie", m.has_cookie)
        .fact("attributes", m.attributes)
        .fact("transaction_echoed", matched)
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let Some(m) = parse_message(p.bytes) else {
            // WebRTC multiplexes DTLS/RTP on the same port (RFC 7983); tolerate them after STUN.
            return if self.first.is_some() {
                Step::NeedMore
            } else {
                Step::NotThis
            };
        };
        if m.class >= 2 && self.requests.contains(&m.transaction) {
            return Step::Match(verdict(
                Confidence::BothDirections,
                self.first.as_ref().unwrap_or(&m),
                true,
            ));
        }
        if m.class == 0 && self.requests.len() < 8 {
            self.requests.push(m.transaction);
        }
        self.first.get_or_insert(m);
        Step::NeedMore
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        // One message alone: with the magic cookie it is RFC 5389 STUN; a classic message
        // needs the echoed transaction id (handled in observe).
        self.first
            .filter(|m| m.has_cookie)
            .map(|m| verdict(Confidence::OneMessage, &m, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Direction, Transport};
    use proptest::prelude::*;

    use crate::fingerprint::test_support::hex;

    fn payload(direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes)
            .over(Transport::Udp)
            .nth(nth)
            .ports(43016, 3478)
    }

    fn ctx() -> FlowContext {
        FlowContext::test(Transport::Udp, 1, 3478)
    }

    /// stun.pcap frame 16 (192.168.12.169:43016 -> 74.125.247.128:3478): Binding request,
    /// no attributes.
    const STUN_REQ: &str = "000100002112a44253486b6846386f6477677956";
    /// stun.pcap frame 18: the Binding success response, XOR-MAPPED-ADDRESS, same transaction.
    const STUN_RESP: &str = "0101000c2112a44253486b6846386f64776779560020000800017d527c3d45a3";

    #[test]
    fn binding_request_and_response_from_capture() {
        let req = hex(STUN_REQ);
        let resp = hex(STUN_RESP);
        let m = parse_message(&req).unwrap();
        assert!(m.has_cookie);
        assert_eq!((m.method, m.class), (1, 0));
        let mut s = State::default();
        assert_eq!(
            s.observe(&payload(Direction::ToServer, 0, &req)),
            Step::NeedMore
        );
        match s.observe(&payload(Direction::ToClient, 0, &resp)) {
            Step::Match(v) => assert_eq!(v.confidence, Confidence::BothDirections),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn near_misses() {
        let dns =
            hex("a7f4010000010000000000000675706c6f61640977696b696d65646961036f726700001c0001");
        let dtls = hex("16fefd00000000000000000000");
        let quic = hex("c30000000108839400000000000000000000000000");
        // Cookie-less message with a non-classic type, and a length that does not fit.
        let bogus = hex("0003000400000000000000000000000000000000");
        let mut short = hex(STUN_REQ);
        short.pop();
        for b in [&dns, &dtls, &quic, &bogus, &short] {
            assert!(parse_message(b).is_none(), "{b:02x?}");
            let mut s = State::default();
            assert_eq!(
                s.observe(&payload(Direction::ToServer, 0, b)),
                Step::NotThis
            );
        }
        // Classic RFC 3489 request alone is not enough.
        let classic = hex("00010000a1b2c3d4e5f60718293a4b5c6d7e8f90");
        let mut s = State::default();
        assert_eq!(
            s.observe(&payload(Direction::ToServer, 0, &classic)),
            Step::NeedMore
        );
        assert!(s.conclude(&ctx()).is_none());
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(pkts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..12)) {
            let mut s = State::default();
            let mut offered = [0u8; 2];
            for (i, b) in pkts.iter().enumerate() {
                let dir = if i % 2 == 1 { Direction::ToClient } else { Direction::ToServer };
                if offered[dir.index()] >= SPEC.payload_budget { continue; }
                offered[dir.index()] += 1;
                if s.observe(&payload(dir, offered[dir.index()] - 1, b)) != Step::NeedMore { break; }
            }
            let _ = s.conclude(&ctx());
        }
    }
}
