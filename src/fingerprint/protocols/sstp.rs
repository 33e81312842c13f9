//! SSTP, Microsoft's Secure Socket Tunneling Protocol ([MS-SSTP]), where its HTTP layer and
//! packets are visible (captures taken behind a TLS terminator, or decrypted).
//!
//! Wire facts ([MS-SSTP] §2.2):
//! - §2.2.1/§3.2.4.1: the client opens the tunnel with the HTTP request
//!   `SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1`; the method and
//!   the URI (with this fixed GUID) are defined by the protocol, the server answers
//!   `HTTP/1.1 200`.
//! - §2.2.3 packet header, 4 bytes: version `0x10` (1.0), then 7 reserved bits and the C bit
//!   (1 = control, 0 = data), then 4 reserved bits and a 12-bit length of the whole packet.
//! - §2.2.4 control packet: message type (u16, 1..=9: CALL_CONNECT_REQUEST, _ACK, _NAK,
//!   CALL_CONNECTED, CALL_ABORT, CALL_DISCONNECT, _ACK, ECHO_REQUEST, ECHO_RESPONSE), number
//!   of attributes (u16), then attributes of 1 reserved byte, an id (1..=4), and a 12-bit length
//!   that includes their 4-byte header (§2.2.5).
//!
//! Verdicts: the request line is one message; a control packet whose attributes fill its
//! length exactly, seen with the request line or in both directions, is both directions.
//! Nothing here looks at ports.

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};

/// Registry entry: SSTP over TCP.
pub static SPEC: Spec = Spec {
    name: "sstp",
    family: Family::Vpn,
    transports: Transports::TCP,
    payload_budget: 4,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// [MS-SSTP] §2.2.1: method and request URI of the tunnel request (GUID compared ignoring case).
const REQUEST_PREFIX: &[u8] = b"SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/";
/// §2.2.3: protocol version 1.0.
const VERSION_1_0: u8 = 0x10;
/// §2.2.4: highest control message type (SSTP_MSG_ECHO_RESPONSE).
const MAX_MESSAGE_TYPE: u16 = 9;
/// §2.2.5: highest attribute id (SSTP_ATTRIB_CRYPTO_BINDING_REQ).
const MAX_ATTRIBUTE_ID: u8 = 4;

/// True when `b` starts with the SSTP tunnel request line.
pub fn is_tunnel_request(b: &[u8]) -> bool {
    b.get(..REQUEST_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(REQUEST_PREFIX))
}

/// A parsed SSTP control packet: (message type, number of attributes).
pub fn parse_control_packet(b: &[u8]) -> Option<(u16, u16)> {
    let (&version, rest) = b.split_first()?;
    let (&flags, _) = rest.split_first()?;
    if version != VERSION_1_0 || flags != 0x01 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) & 0x0fff);
    // One packet per segment is the norm for control messages; a longer payload would hold a
    // second packet, which we do not need.
    if len < 8 || b.len() < len {
        return None;
    }
    let message_type = u16::from_be_bytes([*b.get(4)?, *b.get(5)?]);
    let attributes = u16::from_be_bytes([*b.get(6)?, *b.get(7)?]);
    if !(1..=MAX_MESSAGE_TYPE).contains(&message_type) {
        return None;
    }
    // The attributes must tile the rest of the packet exactly.
    let mut at = 8;
    for _ in 0..attributes {
        let reserved = *b.get(at)?;
        let id = *b.get(at + 1)?;
        let alen = usize::from(u16::from_be_bytes([*b.get(at + 2)?, *b.get(at + 3)?]) & 0x0fff);
        if reserved != 0 || !(1..=MAX_ATTRIBUTE_ID).contains(&id) || alen < 4 {
            return None;
        }
        at += alen;
        if at > len {
            return None;
        }
    }
    (at == len).then_some((message_type, attributes))
}

/// Per-flow state, indexed by direction.
#[derive(Debug, Default, Clone)]
pub struct State {
    request_line: bool,
    server_ok: bool,
    control: [Option<u16>; 2],
}

impl State {
    fn verdict(&self, confidence: Confidence) -> Verdict {
        let mut v = Verdict::new(confidence);
        if self.request_line {
            v = v.fact("request", "SSTP_DUPLEX_POST");
        }
        if self.server_ok {
            v = v.fact("reply", 200u16);
        }
        for (dir, msg) in ["control_to_server", "control_to_client"]
            .iter()
            .zip(self.control)
        {
            if let Some(t) = msg {
                v = v.fact(dir, t);
            }
        }
        v
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let dir = p.direction.index();
        if is_tunnel_request(p.bytes) {
            self.request_line = true;
        } else if self.request_line && p.bytes.starts_with(b"HTTP/1.1 200") {
            self.server_ok = true;
        } else if let Some((message_type, _)) = parse_control_packet(p.bytes) {
            self.control[dir].get_or_insert(message_type);
        }
        let control_both = self.control.iter().all(Option::is_some);
        let control_any = self.control.iter().any(Option::is_some);
        if control_both || (self.request_line && (control_any || self.server_ok)) {
            return Step::Match(self.verdict(Confidence::BothDirections));
        }
        Step::NeedMore
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        // A lone control packet is too small a structure to call; the request line is not.
        self.request_line
            .then(|| self.verdict(Confidence::OneMessage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Direction, Transport};
    use proptest::prelude::*;

    fn pl(direction: Direction, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes).ports(50000, 443)
    }

    fn ctx() -> FlowContext {
        FlowContext {
            packets: [4, 4],
            payload_bytes: [100, 100],
            payload_packets: [2, 2],
            ..FlowContext::test(Transport::Tcp, 50000, 443)
        }
    }

    fn run(seq: &[(Direction, &[u8])]) -> Option<Verdict> {
        let mut s = State::default();
        for (d, b) in seq {
            match s.observe(&pl(*d, b)) {
                Step::Match(v) => return Some(v),
                Step::NotThis => return None,
                Step::NeedMore => {}
            }
        }
        s.conclude(&ctx())
    }

    const C: Direction = Direction::ToServer;
    const S: Direction = Direction::ToClient;

    /// The client's tunnel request as §2.2.1 and §3.2.4.1 define it (no SSTP capture is in the
    /// dev corpus; these messages are built from the field definitions).
    const REQUEST: &[u8] = b"SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\nHost: vpn.example.com\r\nSSTPCORRELATIONID: {62DFA5C0-E2E0-4F5A-9D28-6B00C1A2B3C4}\r\nContent-Length: 18446744073709551615\r\n\r\n";
    const REPLY: &[u8] = b"HTTP/1.1 200\r\nContent-Length: 18446744073709551615\r\nServer: Microsoft-HTTPAPI/2.0\r\n\r\n";
    /// §2.2.9 SSTP_MSG_CALL_CONNECT_REQUEST: header (14 bytes long), type 1, one attribute:
    /// Encapsulated Protocol Id (id 1, length 6) = 1 (PPP).
    const CONNECT_REQUEST: [u8; 14] = [
        0x10, 0x01, 0x00, 0x0e, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x06, 0x00, 0x01,
    ];
    /// §2.2.10 SSTP_MSG_CALL_CONNECT_ACK: type 2, one Crypto Binding Request attribute
    /// (id 4, length 40: 3 reserved bytes, hash bitmask, 32-byte nonce).
    fn connect_ack() -> Vec<u8> {
        let mut v = vec![
            0x10, 0x01, 0x00, 0x30, 0x00, 0x02, 0x00, 0x01, 0x00, 0x04, 0x00, 0x28,
        ];
        v.extend_from_slice(&[0, 0, 0, 0x03]);
        v.extend((0..32).map(|i| (i * 37 + 11) as u8));
        v
    }

    #[test]
    fn request_and_reply_or_control_packets_are_both_directions() {
        let v = run(&[(C, REQUEST), (S, REPLY)]).expect("match");
        assert_eq!(v.confidence, Confidence::BothDirections);
        let ack = connect_ack();
        let v = run(&[(C, &CONNECT_REQUEST), (S, &ack)]).expect("match");
        assert_eq!(v.confidence, Confidence::BothDirections);
        assert_eq!(parse_control_packet(&ack), Some((2, 1)));
    }

    #[test]
    fn lone_request_line_is_one_message() {
        let v = run(&[(C, REQUEST)]).expect("match");
        assert_eq!(v.confidence, Confidence::OneMessage);
        let lower =
            String::from_utf8_lossy(REQUEST).replace("BA195980-CD49-458b", "ba195980-cd49-458B");
        assert!(is_tunnel_request(lower.as_bytes()));
    }

    #[test]
    fn near_misses_are_rejected() {
        // A lone control-looking packet is not enough.
        assert!(run(&[(C, &CONNECT_REQUEST)]).is_none());
        // Ordinary HTTP, a POST to another path, TLS, SSH.
        assert!(run(&[(C, b"POST /sra_x/ HTTP/1.1\r\n\r\n"), (S, REPLY)]).is_none());
        assert!(run(&[(C, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), (S, REPLY)]).is_none());
        assert!(run(&[
            (C, b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00"),
            (S, b"SSH-2.0-x\r\n")
        ])
        .is_none());
        // Attributes that do not fill the length, bad attribute id, bad type, data packet.
        let mut short = CONNECT_REQUEST;
        short[3] = 0x10;
        assert!(parse_control_packet(&short).is_none());
        let mut bad_id = CONNECT_REQUEST;
        bad_id[9] = 9;
        assert!(parse_control_packet(&bad_id).is_none());
        let mut bad_type = CONNECT_REQUEST;
        bad_type[5] = 0x20;
        assert!(parse_control_packet(&bad_type).is_none());
        let mut data = CONNECT_REQUEST;
        data[1] = 0;
        assert!(parse_control_packet(&data).is_none());
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(packets in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200)), 0..12)) {
            let mut fs = crate::fingerprint::FingerprintState::default();
            static REG: [&Spec; 1] = [&SPEC];
            let mut s = State::default();
            for (to_server, bytes) in &packets {
                let d = if *to_server { C } else { S };
                let _ = parse_control_packet(bytes);
                let _ = s.observe(&pl(d, bytes));
                fs.observe(&REG, &pl(d, bytes));
            }
            let _ = s.conclude(&ctx());
            let _ = fs.finish(&REG, &ctx());
        }
    }
}
