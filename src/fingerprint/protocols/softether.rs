//! SoftEther VPN: the plain-text parts of its protocol family.
//!
//! Wire facts (SoftEther VPN open-source documentation and source layout):
//! - PACK serialisation (Mayaqua "Pack"): `uint32 element_count`, then per element
//!   `uint32 name_len+1, name bytes (no NUL), uint32 type (0 int, 1 data, 2 str, 3 unistr,
//!   4 int64), uint32 value_count`, then the values: int = 4 bytes, int64 = 8 bytes,
//!   data/str/unistr = `uint32 size` + bytes. All integers big-endian; names are short ASCII
//!   identifiers (at most 63 characters).
//! - WPC ("web procedure call", used by the DDNS and NAT-traversal clients over HTTP): the POST
//!   body is a sequence of entries `NAME(4 upper-case letters) SIZE(10 decimal digits)
//!   base64(SIZE chars)`, the first one named `PACK` holding a PACK.
//! - The VPN session itself is HTTPS: the client POSTs to `/vpnsvc/connect.cgi` (or
//!   `/vpnsvc/vpn.cgi`) with `Content-Type: image/jpeg` and a watermark body; seen in clear only
//!   without TLS, but recognised when it is.
//! - UDP: the NAT-traversal/keep-alive servers answer a client probe with the text
//!   `IP=<client address>,PORT=<client port>` and exchange PACKs in single datagrams.
//!
//! Labels: on TCP the flow is HTTP carrying SoftEther (`protocol=http`), on UDP `softether`;
//! `application=softether` in both cases.

use super::http::{head_end, header_value, parse_request_line};
use super::websocket_tunnel::base64_decode_into;
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Transport;

/// Detector entry: TCP (HTTP POSTs) and UDP (PACK datagrams, NAT-T replies).
pub static SPEC: Spec = Spec {
    name: "softether",
    family: Family::Vpn,
    transports: Transports::TCP_UDP,
    payload_budget: 3,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// Most elements a PACK may declare (SoftEther caps element counts in the low thousands).
const MAX_ELEMENTS: u32 = 4096;
/// Longest element name (63 characters + 1).
const MAX_NAME: u32 = 64;
/// Most values one element may hold.
const MAX_VALUES: u32 = 65536;
/// Base64 characters of a WPC entry decoded to check the PACK inside.
const WPC_PEEK: usize = 1024;

/// What a PACK prefix showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackFacts {
    /// Declared element count.
    pub elements: u32,
    /// Elements parsed completely within the bytes available.
    pub parsed: u32,
    /// Bytes consumed by the parsed elements (with the count field).
    pub consumed: usize,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*b.get(at..)?.first_chunk::<4>()?))
}

/// Parses as many whole PACK elements as `b` holds. `None` as soon as a field breaks the format.
pub fn parse_pack(b: &[u8]) -> Option<PackFacts> {
    let elements = u32_at(b, 0)?;
    if elements == 0 || elements > MAX_ELEMENTS {
        return None;
    }
    let mut at = 4usize;
    let mut parsed = 0u32;
    while parsed < elements {
        let Some(name_len) = u32_at(b, at) else { break };
        if !(2..=MAX_NAME).contains(&name_len) {
            return None;
        }
        let name_len = name_len as usize - 1;
        let Some(name) = b.get(at + 4..at + 4 + name_len) else {
            break;
        };
        if !name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
        {
            return None;
        }
        let mut p = at + 4 + name_len;
        let (Some(kind), Some(count)) = (u32_at(b, p), u32_at(b, p + 4)) else {
            break;
        };
        if kind > 4 || count == 0 || count > MAX_VALUES {
            return None;
        }
        p += 8;
        let mut complete = true;
        for _ in 0..count {
            let size = match kind {
                0 => 4,
                4 => 8,
                _ => match u32_at(b, p) {
                    Some(n) if n <= 16 * 1024 * 1024 => 4 + n as usize,
                    Some(_) => return None,
                    None => {
                        complete = false;
                        break;
                    }
                },
            };
            if b.len() < p + size {
                complete = false;
                break;
            }
            p += size;
        }
        if !complete {
            break;
        }
        at = p;
        parsed += 1;
    }
    Some(PackFacts {
        elements,
        parsed,
        consumed: at,
    })
}

/// True when a PACK prefix is convincing: at least two whole elements, or all of them.
fn pack_is_convincing(f: &PackFacts) -> bool {
    f.parsed >= 2 || (f.parsed == f.elements && f.parsed >= 1)
}

/// Parses the first WPC entry of an HTTP body: `PACK` + 10 digits + base64 PACK.
pub fn parse_wpc_body(body: &[u8]) -> Option<PackFacts> {
    let rest = body.strip_prefix(b"PACK")?;
    let digits = rest.get(..10)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = digits
        .iter()
        .fold(0u64, |a, d| a * 10 + u64::from(d - b'0'));
    let text = rest.get(10..)?;
    let text = text.get(
        ..text
            .len()
            .min(WPC_PEEK)
            .min(usize::try_from(size).unwrap_or(usize::MAX)),
    )?;
    let mut buf = [0u8; WPC_PEEK];
    let n = base64_decode_into(text, &mut buf);
    let facts = parse_pack(buf.get(..n)?)?;
    pack_is_convincing(&facts).then_some(facts)
}

/// Parses the NAT-T reply `IP=<address>,PORT=<port>`; returns the port.
pub fn parse_nat_t_reply(b: &[u8]) -> Option<u16> {
    let rest = b.strip_prefix(b"IP=")?;
    let comma = rest.iter().position(|&c| c == b',')?;
    let (ip, port) = rest.split_at_checked(comma)?;
    let ip_ok = std::str::from_utf8(ip)
        .ok()?
        .parse::<std::net::IpAddr>()
        .is_ok();
    let port = port.strip_prefix(b",PORT=")?;
    let port = port.strip_suffix(b"\0").unwrap_or(port);
    if !ip_ok || port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    u16::try_from(port.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0'))).ok()
}

/// Per-flow state (stateless between payloads: every check is one message).
#[derive(Debug, Default, Clone)]
struct State {
    payloads: u8,
}

fn softether(confidence: Confidence) -> Verdict {
    let mut v = Verdict::new(confidence);
    v.application = Some("softether");
    v
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        self.payloads = self.payloads.saturating_add(1);
        match p.transport {
            Transport::Udp => {
                if let Some(port) = parse_nat_t_reply(p.bytes) {
                    let v = softether(Confidence::OneMessage)
                        .fact("nat_t_reply", true)
                        .fact("reflected_port_matches", port == p.client_port);
                    return Step::Match(v);
                }
                if let Some(f) = parse_pack(p.bytes)
                    .filter(|f| f.parsed == f.elements && f.consumed == p.bytes.len())
                {
                    return Step::Match(
                        softether(Confidence::OneMessage)
                            .fact("pack_elements", f.elements)
                            .fact("transport", "udp"),
                    );
                }
                if self.payloads >= 4 {
                    Step::NotThis
                } else {
                    Step::NeedMore
                }
            }
            _ => {
                let Some(req) = parse_request_line(p.bytes) else {
                    return Step::NotThis;
                };
                if req.method != b"POST" {
                    return Step::NotThis;
                }
                let path = req.target.split(|&c| c == b'?').next().unwrap_or(&[]);
                let mut v = softether(Confidence::OneMessage);
                v.protocol = Some("http");
                if path == b"/vpnsvc/connect.cgi" || path == b"/vpnsvc/vpn.cgi" {
                    let jpeg = header_value(p.bytes, req.line_end, "content-type")
                        .is_some_and(|c| c.eq_ignore_ascii_case(b"image/jpeg"));
                    return Step::Match(
                        v.fact("vpnsvc_path", true).fact("content_type_jpeg", jpeg),
                    );
                }
                let body = head_end(p.bytes)
                    .and_then(|e| p.bytes.get(e..))
                    .unwrap_or(&[]);
                match parse_wpc_body(body) {
                    Some(f) => Step::Match(
                        v.fact("wpc_pack", true)
                            .fact("pack_elements", f.elements)
                            .fact("pack_elements_parsed", f.parsed),
                    ),
                    None => Step::NotThis,
                }
            }
        }
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Direction;
    use proptest::prelude::*;

    fn pl(t: Transport, direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes)
            .over(t)
            .nth(nth)
            .ports(51381, 5004)
    }

    /// softether.pcap, frame 19 (HTTP headers shortened; body start as captured).
    const DDNS_POST: &[u8] = b"POST /ddns/ddns.aspx?v=9291257684825389030 HTTP/1.1\r\nContent-Length: 724\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nPACK0000000668AAAADwAAAAZidWlsZAAAAAAAAAABAAAlygAAAAlkZG5zX29zcwAAAAAAAAABAAAAAQAAABZkZG5zX3Byb3RvY29sX3ZlcnNpb24AAAAAAAAAAQAAAAEAAAAJaXNfNjRiaXQAAAAAAAAAAQAAAAAAAAAMaXNfcGFja2V0aXgAAAAA";
    /// softether.pcap, frame 2: NAT-T server reply.
    const NAT_T: &[u8] = b"IP=90.186.132.133,PORT=51381";
    /// softether.pcap, frame 8 (first 96 bytes of the 328-byte PACK datagram).
    const UDP_PACK_PREFIX: &[u8] = &[
        0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x06, 0x69, 0x73, 0x72, 0x65, 0x74, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x6d,
        0x79, 0x5f, 0x69, 0x70, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x0d, 0x31, 0x33, 0x30, 0x2e, 0x31, 0x35, 0x38, 0x2e, 0x36, 0x2e, 0x31, 0x31, 0x33, 0x00,
        0x00, 0x00, 0x08, 0x6d, 0x79, 0x5f, 0x70, 0x6f, 0x72, 0x74, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x13, 0x8c, 0x00, 0x00, 0x00, 0x03, 0x6f, 0x6b, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
    ];

    #[test]
    fn ddns_post_is_softether_over_http() {
        let mut s = State::default();
        match s.observe(&pl(Transport::Tcp, Direction::ToServer, 0, DDNS_POST)) {
            Step::Match(v) => {
                assert_eq!(v.protocol, Some("http"));
                assert_eq!(v.application, Some("softether"));
                assert_eq!(v.evidence.get("pack_elements"), Some(&15u32.into()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn udp_nat_t_and_pack() {
        assert_eq!(parse_nat_t_reply(NAT_T), Some(51381));
        let f = parse_pack(UDP_PACK_PREFIX).unwrap();
        assert_eq!((f.elements, f.parsed), (10, 4));
        let mut s = State::default();
        assert!(matches!(
            s.observe(&pl(Transport::Udp, Direction::ToClient, 0, NAT_T)),
            Step::Match(_)
        ));
        // A truncated PACK datagram is not a whole PACK.
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Transport::Udp, Direction::ToClient, 0, UDP_PACK_PREFIX)),
            Step::NeedMore
        );
    }

    #[test]
    fn near_misses_are_rejected() {
        for b in [
            &b"POST /api HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"a\":1}"[..],
            b"POST /x HTTP/1.1\r\n\r\nPACK12345",
            b"POST /x HTTP/1.1\r\n\r\nPACK0000000010AAAAAA",
            b"GET /vpnsvc/connect.cgi HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x00\xa2\x01\x00\x00\x9e\x03\x01",
        ] {
            let mut s = State::default();
            assert_eq!(
                s.observe(&pl(Transport::Tcp, Direction::ToServer, 0, b)),
                Step::NotThis,
                "{b:?}"
            );
        }
        for b in [
            // DNS query, STUN binding request, QUIC long header, 1-byte probe.
            &b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"[..],
            b"\x00\x01\x00\x00\x21\x12\xa4\x42\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c",
            b"\xc3\x00\x00\x00\x01\x08\x01\x02\x03\x04\x05\x06\x07\x08\x00\x00\x44\xd0",
            b"A",
            b"IP=1.2.3,PORT=5",
        ] {
            let mut s = State::default();
            assert_eq!(s.observe(&pl(Transport::Udp, Direction::ToServer, 0, b)), Step::NeedMore, "{b:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..6)) {
            for t in [Transport::Tcp, Transport::Udp] {
                let mut s = State::default();
                for (i, c) in chunks.iter().enumerate() {
                    let _ = parse_pack(c);
                    let _ = parse_wpc_body(c);
                    let _ = parse_nat_t_reply(c);
                    if s.observe(&pl(t, Direction::ToServer, i as u8, c)) != Step::NeedMore { break; }
                }
            }
        }

        #[test]
        fn pack_shaped_garbage_never_panics(n in 0u32..20, tail in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut b = n.to_be_bytes().to_vec();
            b.extend_from_slice(&tail);
            let _ = parse_pack(&b);
        }
    }
}
