//! PPTP control connection (RFC 2637 §2), TCP (port 1723 by registration; not required).
//!
//! Every control message starts with the same 12 bytes (big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0..2 | length of the whole message |
//! | 2..4 | PPTP message type: 1 = control message |
//! | 4..8 | magic cookie 0x1A2B3C4D |
//! | 8..10 | control message type 1..=15 |
//! | 10..12 | reserved0 = 0 |
//!
//! Each control message type has a fixed length (RFC 2637 §2.1-2.15), which must match the
//! length field. The Start-Control-Connection-Request/Reply carry the protocol version
//! (offset 12) and host name (offset 28, 64 bytes, NUL padded). One such message each way is
//! BothDirections; a single one is OneMessage at the end of the flow. The data channel
//! (enhanced GRE) is recognised by `gre`.

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};

/// Registry entry: PPTP control connection over TCP.
pub static SPEC: Spec = Spec {
    name: "pptp",
    family: Family::Vpn,
    transports: Transports::TCP,
    payload_budget: 2,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// RFC 2637 §2: magic cookie of every control message.
pub const MAGIC_COOKIE: u32 = 0x1A2B_3C4D;

/// Fixed length of each control message type (index = type), RFC 2637 §2.1-2.15.
const LENGTHS: [u16; 16] = [
    0, 156, 156, 16, 16, 16, 20, 168, 32, 220, 24, 28, 16, 148, 40, 24,
];

/// The header facts of one PPTP control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlMessage {
    pub length: u16,
    pub control_type: u16,
    /// Start-Control-Connection messages: protocol version (0x0100 for 1.0).
    pub protocol_version: Option<u16>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_be_bytes)
}

/// Parses the control message header at the start of a TCP payload (only the first 12 bytes
/// and, for types 1 and 2, the version need to be present; the rest may be in later segments).
pub fn parse_control(b: &[u8]) -> Option<ControlMessage> {
    let length = be16(b, 0)?;
    let magic = b
        .get(4..8)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)?;
    let control_type = be16(b, 8)?;
    if be16(b, 2)? != 1 || magic != MAGIC_COOKIE || be16(b, 10)? != 0 {
        return None;
    }
    if LENGTHS
        .get(usize::from(control_type))
        .copied()
        .filter(|&l| l != 0)
        != Some(length)
    {
        return None;
    }
    let protocol_version = if matches!(control_type, 1 | 2) {
        be16(b, 12)
    } else {
        None
    };
    Some(ControlMessage {
        length,
        control_type,
        protocol_version,
    })
}

/// Host name of a Start-Control-Connection message (offset 28, 64 bytes), when printable.
fn host_name(b: &[u8]) -> Option<String> {
    let field = b.get(28..92)?;
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    let name = field.get(..end)?;
    (!name.is_empty() && name.iter().all(|c| c.is_ascii_graphic() || *c == b' '))
        .then(|| String::from_utf8_lossy(name).into_owned())
}

/// Per-flow state: the first valid message each way.
#[derive(Debug, Default, Clone)]
pub struct State {
    first: [Option<u16>; 2],
    version: Option<u16>,
    host: Option<String>,
}

impl State {
    fn verdict(&self, confidence: Confidence) -> Verdict {
        let mut v = Verdict::new(confidence).fact("magic_cookie", true);
        for (key, t) in [
            ("client_message_type", self.first[0]),
            ("server_message_type", self.first[1]),
        ] {
            if let Some(t) = t {
                v = v.fact(key, t);
            }
        }
        if let Some(ver) = self.version {
            v = v.fact("protocol_version", ver);
        }
        if let Some(h) = &self.host {
            v = v.fact("host_name", h.as_str());
        }
        v
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let dir = p.direction.index();
        match parse_control(p.bytes) {
            Some(m) => {
                if self.first[dir].is_none() {
                    self.first[dir] = Some(m.control_type);
                }
                if self.version.is_none() {
                    self.version = m.protocol_version;
                }
                if self.host.is_none() && matches!(m.control_type, 1 | 2) {
                    self.host = host_name(p.bytes);
                }
                if self.first.iter().all(Option::is_some) {
                    Step::Match(self.verdict(Confidence::BothDirections))
                } else {
                    Step::NeedMore
                }
            }
            // A later segment may start mid-message; the first one each way may not.
            None if self.first.iter().all(Option::is_none) => Step::NotThis,
            None => Step::NeedMore,
        }
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        self.first
            .iter()
            .any(Option::is_some)
            .then(|| self.verdict(Confidence::OneMessage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::FingerprintState;
    use crate::flow::{Direction, Transport};
    use proptest::prelude::*;

    fn pl(direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes).nth(nth).ports(41366, 1723)
    }

    fn ctx() -> FlowContext {
        FlowContext::test(Transport::Tcp, 41366, 1723)
    }

    /// pptp.pcap frame 4 (tcp.payload, 156 bytes).
    const SCCRQ: [u8; 156] = [
        0x00, 0x9c, 0x00, 0x01, 0x1a, 0x2b, 0x3c, 0x4d, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x03, 0xff, 0xff, 0x00, 0x01, 0x6c, 0x6f,
        0x63, 0x61, 0x6c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x63, 0x61, 0x6e, 0x61, 0x6e, 0x69, 0x61, 0x6e, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    /// pptp.pcap frame 6 (tcp.payload, 156 bytes).
    const SCCRP: [u8; 156] = [
        0x00, 0x9c, 0x00, 0x01, 0x1a, 0x2b, 0x3c, 0x4d, 0x00, 0x02, 0x00, 0x00, 0x01, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x4d, 0x69, 0x63, 0x72, 0x6f, 0x73, 0x6f, 0x66, 0x74, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    /// pptp.pcap frame 10 (tcp.payload, 32 bytes).
    const OCRP: [u8; 32] = [
        0x00, 0x20, 0x00, 0x01, 0x1a, 0x2b, 0x3c, 0x4d, 0x00, 0x08, 0x00, 0x00, 0x2d, 0xeb, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0xe4, 0x0b, 0x54, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ];

    #[test]
    fn start_control_connection_both_ways() {
        let m = parse_control(&SCCRQ).expect("sccrq");
        assert_eq!(
            (m.length, m.control_type, m.protocol_version),
            (156, 1, Some(0x0100))
        );
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Direction::ToServer, 0, &SCCRQ)),
            Step::NeedMore
        );
        let Step::Match(v) = s.observe(&pl(Direction::ToClient, 0, &SCCRP)) else {
            panic!("no match")
        };
        assert_eq!(v.confidence, Confidence::BothDirections);
        assert_eq!(
            v.evidence.get("server_message_type"),
            Some(&crate::fingerprint::Fact::Int(2))
        );
    }

    #[test]
    fn one_side_concludes_one_message() {
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Direction::ToClient, 0, &OCRP)),
            Step::NeedMore
        );
        assert_eq!(
            s.conclude(&ctx()).map(|v| v.confidence),
            Some(Confidence::OneMessage)
        );
    }

    #[test]
    fn near_misses_are_rejected() {
        // Wrong cookie, wrong length for the type, reserved0 set, an unknown type.
        for (at, val) in [(7usize, 0x4cu8), (1, 0x9d), (11, 1), (9, 16)] {
            let mut bad = SCCRQ;
            bad[at] = val;
            assert!(parse_control(&bad).is_none(), "byte {at}");
        }
        // TLS ClientHello start, HTTP, SSH banner: excluded at the first payload.
        for b in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefgh"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n",
        ] {
            assert_eq!(
                State::default().observe(&pl(Direction::ToServer, 0, b)),
                Step::NotThis
            );
        }
    }

    static REG: [&Spec; 1] = [&SPEC];

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_control(&bytes);
            let _ = host_name(&bytes);
            let mut fs = FingerprintState::default();
            for i in 0..4 {
                fs.observe(&REG, &pl(Direction::ToServer, i, &bytes));
                fs.observe(&REG, &pl(Direction::ToClient, i, &bytes));
            }
            prop_assert!(fs.finish(&REG, &ctx()).matches.len() <= 1);
        }
    }
}
