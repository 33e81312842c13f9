//! L2TP over UDP: L2TPv2 (RFC 2661) control and data messages, L2TPv3 (RFC 3931) control
//! messages.
//!
//! L2TPv2 header (RFC 2661 §3.1), big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 0..2 | T(0x8000) L(0x4000) x x S(0x0800) x O(0x0200) P(0x0100) x x x x Ver(0x000F) = 2 |
//! | \[2\] | length, if L |
//! | 2 | tunnel id, then 2 session id |
//! | [2+2] | Ns, Nr, if S |
//! | [2+pad] | offset size and padding, if O |
//!
//! Control messages (T=1) must have L=1, S=1, O=0, P=0 (§3.1), a length equal to the UDP
//! payload, and a body of AVPs (§4.1: M, H, 4 reserved bits, 10-bit length >= 6, vendor id,
//! attribute type) that exactly fills it, the first being Message Type (vendor 0, attribute 0,
//! M set, length 8, value 1..=16, §4.4.1). Data messages (T=0) carry a PPP frame; one is
//! recognised when its tunnel and session ids are non-zero and the frame is 0xFF 0x03, a PPP
//! protocol and an information field that checks out (`gre::parse_ppp`). L2TPv3 control
//! messages over UDP (RFC 3931 §3.2.1, §4.1.2.1): T=1 L=1 S=1, version 3, length, a 32-bit
//! control connection id, Ns, Nr, then AVPs as above (message types up to 27 after RFC 3931
//! and its extensions). L2TPv3 data messages carry no checkable structure and are not
//! recognised. No port is required: the structure decides.

use super::gre::parse_ppp_on_wire;
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, Payload, Spec, Step, Transports, Verdict,
};

/// Registry entry: L2TP over UDP (usually port 1701).
pub static SPEC: Spec = Spec {
    name: "l2tp",
    family: Family::Vpn,
    transports: Transports::UDP,
    payload_budget: 2,
    rank: rank::SPECIFIC,
    start: || Box::new(State),
    open: Some(crate::fingerprint::open_default::<State>),
};

const FLAG_T: u16 = 0x8000;
const FLAG_L: u16 = 0x4000;
const FLAG_S: u16 = 0x0800;
const FLAG_O: u16 = 0x0200;
const FLAG_P: u16 = 0x0100;
/// Bits marked `x` in RFC 2661 §3.1 (and RFC 3931 §3.2.1): must be zero.
const RESERVED: u16 = 0x3000 | 0x0400 | 0x00F0;

/// What one L2TP message turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2tpMessage {
    /// A control message with its Message Type AVP value and the number of AVPs walked.
    Control {
        version: u8,
        message_type: u16,
        avps: u16,
    },
    /// An L2TPv2 data message carrying a verified PPP frame.
    Data {
        tunnel_id: u16,
        session_id: u16,
        ppp_protocol: u16,
    },
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_be_bytes)
}

/// Walks the AVPs of a control message body (RFC 2661 §4.1); returns the Message Type value
/// and the AVP count when the first AVP is Message Type and the AVPs fill the body exactly.
/// `wire_len` is the body's length on the wire, of which `body` may hold only the start (a
/// snap length cut it): AVPs are walked as far as they were kept, none may run past
/// `wire_len`, and the count is of the AVPs seen.
fn walk_avps(body: &[u8], wire_len: usize, max_type: u16) -> Option<(u16, u16)> {
    // First AVP: M=1, H=0, length 8, vendor 0, attribute 0 (Message Type), value.
    let first = body.get(..8)?;
    if first[..6] != [0x80, 0x08, 0, 0, 0, 0] {
        return None;
    }
    let message_type = be16(first, 6)?;
    if !(1..=max_type).contains(&message_type) {
        return None;
    }
    let mut at = 8;
    let mut avps: u16 = 1;
    while at < wire_len {
        let Some(word) = be16(body, at) else {
            // The rest was not kept.
            return (wire_len > body.len()).then_some((message_type, avps));
        };
        let len = usize::from(word & 0x03FF);
        if word & 0x3C00 != 0 || len < 6 || at + len > wire_len {
            return None;
        }
        at += len;
        avps = avps.saturating_add(1);
    }
    Some((message_type, avps))
}

/// Parses one UDP payload as an L2TP message (see the module table). `None` for anything that
/// is not a well-formed v2 control or data message or v3 control message.
pub fn parse_l2tp(b: &[u8]) -> Option<L2tpMessage> {
    parse_l2tp_on_wire(b, b.len())
}

/// [`parse_l2tp`] of a message `wire_len` bytes long on the wire, of which `b` may hold only
/// the start (a snap length cut it): the length field and the AVPs are checked against
/// `wire_len`; a data message's PPP frame on the wire too.
pub fn parse_l2tp_on_wire(b: &[u8], wire_len: usize) -> Option<L2tpMessage> {
    let wire_len = wire_len.max(b.len());
    let flags = be16(b, 0)?;
    if flags & RESERVED != 0 {
        return None;
    }
    let version = (flags & 0x000F) as u8;
    let control = flags & FLAG_T != 0;
    if control {
        // T=1 requires L=1, S=1, O=0, P=0.
        if flags & (FLAG_L | FLAG_S | FLAG_O | FLAG_P) != FLAG_L | FLAG_S {
            return None;
        }
        if usize::from(be16(b, 2)?) != wire_len {
            return None;
        }
        // v2: length, tunnel, session, Ns, Nr = 12 bytes; v3: length, ccid(4), Ns, Nr = 12.
        let body = b.get(12..)?;
        let body_wire = wire_len - 12;
        let max_type = match version {
            2 => 16,
            3 => 27,
            _ => return None,
        };
        let (message_type, avps) = walk_avps(body, body_wire, max_type)?;
        return Some(L2tpMessage::Control {
            version,
            message_type,
            avps,
        });
    }
    if version != 2 {
        return None;
    }
    let mut at = 2;
    if flags & FLAG_L != 0 {
        if usize::from(be16(b, at)?) != wire_len {
            return None;
        }
        at += 2;
    }
    let tunnel_id = be16(b, at)?;
    let session_id = be16(b, at + 2)?;
    at += 4;
    if tunnel_id == 0 || session_id == 0 {
        return None;
    }
    if flags & FLAG_S != 0 {
        at += 4;
    }
    if flags & FLAG_O != 0 {
        at += 2 + usize::from(be16(b, at)?);
    }
    let ppp = parse_ppp_on_wire(b.get(at..)?, wire_len - at)?;
    (ppp.address_control && ppp.inner_verified).then_some(L2tpMessage::Data {
        tunnel_id,
        session_id,
        ppp_protocol: ppp.protocol,
    })
}

/// Per-flow state: the first well-formed message decides; up to two payloads each way.
#[derive(Debug, Default, Clone)]
pub struct State;

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        match parse_l2tp_on_wire(p.bytes, p.wire_len()) {
            Some(L2tpMessage::Control {
                version,
                message_type,
                avps,
            }) => Step::Match(
                Verdict::new(Confidence::OneMessage)
                    .fact("version", version)
                    .fact("message_type", message_type)
                    .fact("avps", avps),
            ),
            Some(L2tpMessage::Data {
                tunnel_id,
                session_id,
                ppp_protocol,
            }) => Step::Match(
                Verdict::new(Confidence::OneMessage)
                    .fact("version", 2u8)
                    .fact("tunnel_id", tunnel_id)
                    .fact("session_id", session_id)
                    .fact("ppp_protocol", ppp_protocol),
            ),
            None if p.nth >= 1 => Step::NotThis,
            None => Step::NeedMore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::{FingerprintState, FlowContext};
    use crate::flow::{Direction, Transport};
    use proptest::prelude::*;

    fn pl(nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(Direction::ToServer, bytes)
            .over(Transport::Udp)
            .nth(nth)
            .ports(1701, 1701)
    }

    /// l2tp.pcap frame 1 (bytes 50.., 24 bytes).
    const DATA_LCP_ECHO: [u8; 24] = [
        0x03, 0x02, 0x4a, 0x32, 0xd3, 0x5e, 0x00, 0x00, 0xff, 0x03, 0xc0, 0x21, 0x09, 0x48, 0x00,
        0x0c, 0xc1, 0x34, 0x39, 0x22, 0xe7, 0xe1, 0x8f, 0xf6,
    ];

    /// A Start-Control-Connection-Request built per RFC 2661 §6.1: Message Type (1), Protocol
    /// Version (2: 1.0), Host Name (7: "lac"), Assigned Tunnel ID (9: 1), Framing Caps (3).
    fn sccrq() -> Vec<u8> {
        let mut avps: Vec<u8> = Vec::new();
        avps.extend_from_slice(&[0x80, 0x08, 0, 0, 0, 0, 0, 1]);
        avps.extend_from_slice(&[0x80, 0x08, 0, 0, 0, 2, 1, 0]);
        avps.extend_from_slice(&[0x80, 0x09, 0, 0, 0, 7, b'l', b'a', b'c']);
        avps.extend_from_slice(&[0x80, 0x08, 0, 0, 0, 9, 0, 1]);
        avps.extend_from_slice(&[0x80, 0x0a, 0, 0, 0, 3, 0, 0, 0, 3]);
        let len = (12 + avps.len()) as u16;
        let mut m = vec![0xc8, 0x02];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(&avps);
        m
    }

    #[test]
    fn single_data_packet_with_ppp_lcp() {
        assert_eq!(
            parse_l2tp(&DATA_LCP_ECHO),
            Some(L2tpMessage::Data {
                tunnel_id: 0x4a32,
                session_id: 0xd35e,
                ppp_protocol: 0xc021
            })
        );
        assert!(
            matches!(State.observe(&pl(0, &DATA_LCP_ECHO)), Step::Match(v) if v.confidence == Confidence::OneMessage)
        );
    }

    #[test]
    fn control_message_avps() {
        let m = sccrq();
        assert_eq!(
            parse_l2tp(&m),
            Some(L2tpMessage::Control {
                version: 2,
                message_type: 1,
                avps: 5
            })
        );
        let mut v3 = m.clone();
        v3[1] = 0x03;
        assert!(matches!(
            parse_l2tp(&v3),
            Some(L2tpMessage::Control { version: 3, .. })
        ));
        // Length field off by one, an AVP overrunning, a non-Message-Type first AVP.
        let mut bad = m.clone();
        bad[3] += 1;
        assert!(parse_l2tp(&bad).is_none());
        let mut bad = m.clone();
        bad[21] = 0x0c;
        assert!(parse_l2tp(&bad).is_none());
        let mut bad = m;
        bad[17] = 2;
        assert!(parse_l2tp(&bad).is_none());
    }

    /// A control message cut by a snap length: the length field and the AVPs are checked on
    /// the wire length, AVPs counted as far as they were kept; an AVP claiming to run past
    /// the message's end still fails.
    #[test]
    fn control_message_cut_by_a_snap_length() {
        let m = sccrq();
        let wire = m.len();
        for kept in [20, 25, 33, wire - 1] {
            assert!(
                matches!(
                    parse_l2tp_on_wire(&m[..kept], wire),
                    Some(L2tpMessage::Control {
                        message_type: 1,
                        ..
                    })
                ),
                "kept {kept}"
            );
        }
        assert!(parse_l2tp(&m[..33]).is_none());
        assert!(parse_l2tp_on_wire(&m[..33], wire + 1).is_none());
        // The Host Name AVP (at 28) claiming 1023 bytes, past the message's end.
        let mut overrun = m.clone();
        overrun[28..30].copy_from_slice(&[0x83, 0xff]);
        assert!(parse_l2tp_on_wire(&overrun[..33], wire).is_none());
        let cut = pl(0, &m[..25]).cut((wire - 25) as u16);
        assert!(matches!(State.observe(&cut), Step::Match(_)));
    }

    #[test]
    fn near_misses_are_rejected() {
        // Data message with a zero session id, with a truncated LCP length, version 3 data.
        let mut bad = DATA_LCP_ECHO;
        bad[4..6].copy_from_slice(&[0, 0]);
        assert!(parse_l2tp(&bad).is_none());
        let mut bad = DATA_LCP_ECHO;
        bad[15] = 0x20;
        assert!(parse_l2tp(&bad).is_none());
        let mut bad = DATA_LCP_ECHO;
        bad[1] = 0x03;
        assert!(parse_l2tp(&bad).is_none());
        // DNS query, STUN binding request, a QUIC long header.
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
        let stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl";
        let quic = [0xc3u8, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0x44, 0xd0];
        for b in [&dns[..], &stun[..], &quic[..]] {
            assert!(parse_l2tp(b).is_none());
            let mut s = State;
            assert_eq!(s.observe(&pl(0, b)), Step::NeedMore);
            assert_eq!(s.observe(&pl(1, b)), Step::NotThis);
        }
    }

    static REG: [&Spec; 1] = [&SPEC];

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_l2tp(&bytes);
            let mut fs = FingerprintState::default();
            for i in 0..4 {
                fs.observe(&REG, &pl(i, &bytes));
            }
            let ctx = FlowContext {
                packets: [4, 0],
                payload_bytes: [0, 0],
                payload_packets: [4, 0],
                ..FlowContext::test(Transport::Udp, 1701, 1701)
            };
            prop_assert!(fs.finish(&REG, &ctx).matches.len() <= 1);
        }
    }
}
