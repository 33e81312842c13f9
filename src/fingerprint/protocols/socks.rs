//! SOCKS4, SOCKS4a and SOCKS5 proxy handshakes over TCP.
//!
//! Wire facts:
//! - SOCKS4 (Koblas, "SOCKS: A protocol for TCP proxy across firewalls"): request
//!   `VN=4, CD (1 CONNECT, 2 BIND), DSTPORT(2), DSTIP(4), USERID, NUL`; SOCKS4a extension: DSTIP
//!   `0.0.0.x` (x != 0) and the host name, NUL-terminated, after the user id. Reply (8 bytes):
//!   `VN=0, CD (90 granted .. 93 rejected), DSTPORT(2), DSTIP(4)`.
//! - SOCKS5 (RFC 1928 §3-§6): greeting `05 NMETHODS METHODS[NMETHODS]`; method selection `05 M`
//!   (M one of the offered methods, or FF = none acceptable); request
//!   `05 CMD(1 CONNECT, 2 BIND, 3 UDP ASSOCIATE) 00 ATYP(1 IPv4, 3 domain, 4 IPv6) DST.ADDR DST.PORT`
//!   where a domain is one length byte then the name; reply `05 REP(0..=8) 00 ATYP BND.ADDR BND.PORT`.
//! - RFC 1929: username/password sub-negotiation after method 02: `01 ULEN UNAME PLEN PASSWD`,
//!   answered `01 STATUS` (0 = success).
//!
//! Roles: the side that sends the greeting is the SOCKS client, whichever way the flow table
//! named the flow (reverse SOCKS tools and mid-flow captures show the other side first); a
//! different first payload is tolerated only as the flow's very first payload.
//!
//! Confidence: request and reply both parsed (or SOCKS5 greeting and method selection followed
//! by a refusal) is `BothDirections`; a SOCKS5 greeting with its method selection alone is
//! `OneMessage`. A lone greeting or request never matches. After a granted CONNECT the first
//! tunnelled payload is classified (`inner=tls|http|ssh|other`).

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Direction;

/// Detector entry: six payloads per direction (greeting, authentication, request, first data).
pub static SPEC: Spec = Spec {
    name: "socks",
    family: Family::Proxy,
    transports: Transports::TCP,
    payload_budget: 6,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// Longest SOCKS4 user id / SOCKS4a host name accepted.
const MAX_SOCKS4_FIELD: usize = 255;

/// The destination named in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
    /// A domain name (SOCKS5 ATYP 3 or SOCKS4a), as printable evidence text.
    Name(String),
}

impl Addr {
    fn text(&self) -> String {
        match self {
            Addr::V4(a) => std::net::Ipv4Addr::from(*a).to_string(),
            Addr::V6(a) => std::net::Ipv6Addr::from(*a).to_string(),
            Addr::Name(n) => n.clone(),
        }
    }
}

/// A parsed SOCKS request (either version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub version: u8,
    pub cmd: u8,
    pub port: u16,
    pub addr: Addr,
    /// Bytes the request took.
    pub len: usize,
}

/// Parses a SOCKS5 greeting (RFC 1928 §3); returns the offered methods and the message length.
pub fn parse_socks5_greeting(b: &[u8]) -> Option<(&[u8], usize)> {
    let (&[5, n], rest) = b.split_first_chunk::<2>()? else {
        return None;
    };
    let methods = rest.get(..usize::from(n))?;
    if n == 0 || methods.contains(&0xff) {
        return None;
    }
    Some((methods, 2 + usize::from(n)))
}

/// Parses ATYP, address and port starting at `b[0]` (RFC 1928 §4/§5); returns (addr, port, len).
fn parse_addr_port(b: &[u8]) -> Option<(Addr, u16, usize)> {
    let (&atyp, rest) = b.split_first()?;
    let (addr, used) = match atyp {
        1 => (Addr::V4(*rest.first_chunk::<4>()?), 4),
        4 => (Addr::V6(*rest.first_chunk::<16>()?), 16),
        3 => {
            let (&n, name) = rest.split_first()?;
            let name = name.get(..usize::from(n))?;
            if n == 0 || !name.iter().all(|&c| (0x21..=0x7e).contains(&c)) {
                return None;
            }
            (
                Addr::Name(super::http::evidence_text(name, 255)),
                1 + usize::from(n),
            )
        }
        _ => return None,
    };
    let port = rest.get(used..used + 2)?;
    let port = u16::from_be_bytes([*port.first()?, *port.get(1)?]);
    Some((addr, port, 1 + used + 2))
}

/// Parses a SOCKS5 request (RFC 1928 §4).
pub fn parse_socks5_request(b: &[u8]) -> Option<Request> {
    let (&[5, cmd @ 1..=3, 0], rest) = b.split_first_chunk::<3>()? else {
        return None;
    };
    let (addr, port, used) = parse_addr_port(rest)?;
    Some(Request {
        version: 5,
        cmd,
        port,
        addr,
        len: 3 + used,
    })
}

/// Parses a SOCKS5 reply (RFC 1928 §6); returns (REP, length).
pub fn parse_socks5_reply(b: &[u8]) -> Option<(u8, usize)> {
    let (&[5, rep @ 0..=8, 0], rest) = b.split_first_chunk::<3>()? else {
        return None;
    };
    let (_, _, used) = parse_addr_port(rest)?;
    Some((rep, 3 + used))
}

/// Parses a SOCKS4/4a request: exact length, NUL-terminated user id (and 4a host name).
pub fn parse_socks4_request(b: &[u8]) -> Option<Request> {
    let (&[4, cmd @ 1..=2, p0, p1, a, bb, c, d], rest) = b.split_first_chunk::<8>()? else {
        return None;
    };
    let uid_len = rest
        .iter()
        .take(MAX_SOCKS4_FIELD + 1)
        .position(|&x| x == 0)?;
    let uid = rest.get(..uid_len)?;
    if !uid.iter().all(|&x| (0x20..=0x7e).contains(&x)) {
        return None;
    }
    let mut len = 8 + uid_len + 1;
    let addr = if a == 0 && bb == 0 && c == 0 && d != 0 {
        let host_field = rest.get(uid_len + 1..)?;
        let host_len = host_field
            .iter()
            .take(MAX_SOCKS4_FIELD + 1)
            .position(|&x| x == 0)?;
        let host = host_field.get(..host_len)?;
        if host.is_empty() || !host.iter().all(|&x| (0x21..=0x7e).contains(&x)) {
            return None;
        }
        len += host_len + 1;
        Addr::Name(super::http::evidence_text(host, 255))
    } else {
        if a == 0 {
            return None;
        }
        Addr::V4([a, bb, c, d])
    };
    // Nothing but tunnelled data may follow, and a SOCKS4 client waits for the reply first.
    if b.len() != len {
        return None;
    }
    Some(Request {
        version: 4,
        cmd,
        port: u16::from_be_bytes([p0, p1]),
        addr,
        len,
    })
}

/// Parses a SOCKS4 reply (8 bytes, VN 0, CD 90..=93); returns CD.
pub fn parse_socks4_reply(b: &[u8]) -> Option<u8> {
    match b.get(..8)? {
        [0, cd @ 90..=93, ..] => Some(*cd),
        _ => None,
    }
}

/// Names the protocol that a tunnelled payload starts with, for evidence.
pub fn classify_inner(b: &[u8]) -> &'static str {
    match b {
        [0x16, 0x03, 0..=4, _, _, 1, ..] => "tls_client_hello",
        [0x16, 0x03, 0..=4, _, _, 2, ..] => "tls_server_hello",
        [0x14..=0x17, 0x03, 0..=4, ..] => "tls",
        _ if b.starts_with(b"SSH-") => "ssh",
        _ if super::http::parse_request_line(b).is_some() => "http_request",
        _ if super::http::parse_status_line(b).is_some() => "http_response",
        _ => "other",
    }
}

fn method_name(m: u8) -> &'static str {
    match m {
        0 => "no_auth",
        1 => "gssapi",
        2 => "userpass",
        0xff => "none_acceptable",
        3..=0x7f => "iana",
        _ => "private",
    }
}

fn cmd_name(c: u8) -> &'static str {
    match c {
        1 => "connect",
        2 => "bind",
        _ => "udp_associate",
    }
}

/// Per-flow state of the handshake.
#[derive(Debug, Default, Clone)]
struct State {
    /// Direction of the SOCKS client's messages.
    client_dir: Option<Direction>,
    version: u8,
    /// SOCKS5 offered methods, as a 256-bit set.
    offered: [u64; 4],
    method: Option<u8>,
    auth_sent: bool,
    auth_status: Option<u8>,
    request: Option<Request>,
    reply: Option<u8>,
    /// Reply granted a CONNECT: the next payload is tunnelled data, classified for evidence.
    awaiting_inner: bool,
}

impl State {
    fn offers(&self, m: u8) -> bool {
        self.offered
            .get(usize::from(m / 64))
            .is_some_and(|w| w & (1u64 << (m % 64)) != 0)
    }

    fn verdict(&self, confidence: Confidence, inner: Option<&'static str>) -> Verdict {
        let mut v = Verdict::new(confidence).fact("version", self.version);
        v.roles_reversed = self.client_dir == Some(Direction::ToClient);
        if let Some(m) = self.method {
            v = v.fact("method", method_name(m));
        }
        if let Some(st) = self.auth_status {
            v = v.fact("auth_ok", st == 0);
        }
        if let Some(r) = &self.request {
            v = v
                .fact("cmd", cmd_name(r.cmd))
                .fact("dst", r.addr.text())
                .fact("dst_port", r.port);
        }
        if let Some(rep) = self.reply {
            v = v.fact("reply", rep);
        }
        if let Some(i) = inner {
            v = v.fact("inner", i);
        }
        v
    }

    fn granted(&self) -> bool {
        match (self.version, self.reply) {
            (5, Some(0)) | (4, Some(90)) => self.request.as_ref().is_some_and(|r| r.cmd == 1),
            _ => false,
        }
    }

    /// Client-side messages in `b`, in order. `None` when they break the protocol.
    fn client_bytes(&mut self, b: &[u8]) -> Option<()> {
        let mut rest = b;
        while !rest.is_empty() {
            if self.request.is_some() {
                // Optimistic data after the request (RFC 1928 allows none, but clients do).
                return Some(());
            }
            if self.version == 5 && rest.first() == Some(&1) && !self.auth_sent && self.offers(2) {
                // RFC 1929: 01 ULEN UNAME PLEN PASSWD.
                let ulen = usize::from(*rest.get(1)?);
                let plen = usize::from(*rest.get(2 + ulen)?);
                let len = 3 + ulen + plen;
                rest.get(..len)?;
                self.auth_sent = true;
                rest = rest.get(len..)?;
            } else if self.version == 5 {
                let r = parse_socks5_request(rest)?;
                rest = rest.get(r.len..)?;
                self.request = Some(r);
            } else {
                return None;
            }
        }
        Some(())
    }

    /// Server-side messages in `b`. Returns whether a reply is now known.
    fn server_bytes(&mut self, b: &[u8]) -> Option<()> {
        let mut rest = b;
        while !rest.is_empty() {
            if self.reply.is_some() {
                return Some(());
            }
            if self.version == 4 {
                self.reply = Some(parse_socks4_reply(rest)?);
                rest = rest.get(8..)?;
            } else if self.method.is_none() {
                match rest {
                    [5, m, ..] if *m == 0xff || self.offers(*m) => self.method = Some(*m),
                    _ => return None,
                }
                rest = rest.get(2..)?;
            } else if self.method == Some(2) && self.auth_status.is_none() {
                match rest {
                    [1, st, ..] => self.auth_status = Some(*st),
                    _ => return None,
                }
                rest = rest.get(2..)?;
            } else {
                let (rep, len) = parse_socks5_reply(rest)?;
                self.reply = Some(rep);
                rest = rest.get(len..)?;
            }
        }
        Some(())
    }

    /// The handshake has ended without a tunnel (refused method or failed authentication).
    fn refused(&self) -> bool {
        self.method == Some(0xff) || self.auth_status.is_some_and(|s| s != 0)
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        if self.awaiting_inner {
            return Step::Match(
                self.verdict(Confidence::BothDirections, Some(classify_inner(p.bytes))),
            );
        }
        let Some(client_dir) = self.client_dir else {
            if let Some((methods, len)) = parse_socks5_greeting(p.bytes) {
                for &m in methods {
                    if let Some(w) = self.offered.get_mut(usize::from(m / 64)) {
                        *w |= 1u64 << (m % 64);
                    }
                }
                self.client_dir = Some(p.direction);
                self.version = 5;
                return match p.bytes.get(len..).map(|rest| self.client_bytes(rest)) {
                    Some(Some(())) => Step::NeedMore,
                    _ => Step::NotThis,
                };
            }
            if let Some(r) = parse_socks4_request(p.bytes) {
                self.client_dir = Some(p.direction);
                self.version = 4;
                self.request = Some(r);
                return Step::NeedMore;
            }
            // Only the flow's first payload may precede the handshake (reverse tools' preamble).
            return if p.nth == 0 {
                Step::NeedMore
            } else {
                Step::NotThis
            };
        };
        let ok = if p.direction == client_dir {
            if self.request.is_some() && self.reply.is_none() && self.version == 4 {
                // A SOCKS4 client waits for the reply before sending anything else.
                None
            } else {
                self.client_bytes(p.bytes)
            }
        } else {
            self.server_bytes(p.bytes)
        };
        if ok.is_none() {
            return Step::NotThis;
        }
        if self.refused() {
            return Step::Match(self.verdict(Confidence::BothDirections, None));
        }
        if self.reply.is_some() && self.request.is_some() {
            if self.granted() {
                self.awaiting_inner = true;
                return Step::NeedMore;
            }
            return Step::Match(self.verdict(Confidence::BothDirections, None));
        }
        Step::NeedMore
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        if self.request.is_some() && self.reply.is_some() {
            return Some(self.verdict(Confidence::BothDirections, None));
        }
        // SOCKS5 greeting answered by a valid method selection.
        self.method
            .map(|_| self.verdict(Confidence::OneMessage, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Transport;
    use proptest::prelude::*;

    fn pl(direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes).nth(nth).ports(53535, 1080)
    }

    fn run(msgs: &[(Direction, &[u8])]) -> Option<Verdict> {
        let mut s = State::default();
        for (i, (d, b)) in msgs.iter().enumerate() {
            match s.observe(&pl(*d, i as u8, b)) {
                Step::NeedMore => {}
                Step::NotThis => return None,
                Step::Match(v) => return Some(v),
            }
        }
        let ctx = FlowContext::test(Transport::Tcp, 1, 2);
        s.conclude(&ctx)
    }

    use Direction::{ToClient as C, ToServer as S};

    #[test]
    fn socks5_with_domain_carrying_tls() {
        // socks-with-ssl.pcap, frames 4, 5, 7, 8 and the start of frame 10.
        let v = run(&[
            (S, b"\x05\x01\x00"),
            (C, b"\x05\x00"),
            (S, b"\x05\x01\x00\x03\x0ewww.google.com\x01\xbb"),
            (C, b"\x05\x00\x00\x01\x00\x00\x00\x00\x01\xbb"),
            (S, b"\x16\x03\x01\x00\xa2\x01\x00\x00\x9e\x03\x01"),
        ])
        .unwrap();
        assert_eq!(v.confidence, Confidence::BothDirections);
        assert_eq!(v.evidence.get("dst"), Some(&"www.google.com".into()));
        assert_eq!(v.evidence.get("dst_port"), Some(&443u16.into()));
        assert_eq!(v.evidence.get("inner"), Some(&"tls_client_hello".into()));
        assert!(!v.roles_reversed);
    }

    #[test]
    fn socks4_and_4a() {
        // socks4_5.pcap, frames 4 and 6 (SOCKS4), then frames 18 and 20 (SOCKS4a).
        let v = run(&[
            (S, b"\x04\x01\x00\x50\x5d\xb8\xd8\x77\x00"),
            (C, b"\x00\x5a\xdf\xb2\x0a\xb4\x9c\xf9"),
            (S, b"GET / HTTP/1.1\r\n\r\n"),
        ])
        .unwrap();
        assert_eq!(v.evidence.get("dst"), Some(&"93.184.216.119".into()));
        assert_eq!(v.evidence.get("inner"), Some(&"http_request".into()));
        let v = run(&[
            (
                S,
                b"\x04\x01\x00\x50\x00\x00\x00\x01\x00www.example.com\x00",
            ),
            (C, b"\x00\x5a\xdf\xb3\x0a\xb4\x9c\xf9"),
        ])
        .unwrap();
        assert_eq!(v.evidence.get("dst"), Some(&"www.example.com".into()));
        assert_eq!(v.evidence.get("version"), Some(&4u8.into()));
    }

    #[test]
    fn socks5_reverse_direction() {
        // socks5-reverse.pcap, frames 4, 5, 6, 8, 10: the SOCKS client is the flow's "server".
        let v = run(&[
            (S, b"\x4e\x5a\x8d\x08\x87\x4e"),
            (C, b"\x05\x01\x00"),
            (C, b"\x05\x01\x00\x01\x4a\x7d\x83\x67\x00\x50"),
            (S, b"\x05\x00"),
            (S, b"\x05\x00\x00\x01\x4a\x7d\x83\x67\x00\x50"),
        ])
        .unwrap();
        assert!(v.roles_reversed);
        assert_eq!(v.evidence.get("dst_port"), Some(&80u16.into()));
    }

    #[test]
    fn socks5_userpass_and_refusal() {
        // socks4_5.pcap, frames 61-66: user/pass offered, chosen, credentials refused.
        let v = run(&[
            (S, b"\x05\x03\x00\x01\x02"),
            (C, b"\x05\x02"),
            (S, b"\x01\x08testuser\x08testpass"),
            (C, b"\x01\xff"),
        ])
        .unwrap();
        assert_eq!(v.evidence.get("auth_ok"), Some(&false.into()));
        // socks4_5.pcap, frames 50, 52: no acceptable method.
        let v = run(&[(S, b"\x05\x02\x00\x01"), (C, b"\x05\xff")]).unwrap();
        assert_eq!(v.evidence.get("method"), Some(&"none_acceptable".into()));
    }

    #[test]
    fn near_misses_are_rejected() {
        assert!(run(&[(S, b"\x05\x01\x00")]).is_none(), "lone greeting");
        assert!(
            run(&[(S, b"\x05\x01\x00"), (C, b"\x05\x02")]).is_none(),
            "method not offered"
        );
        assert!(
            run(&[(S, b"\x04\x01\x00\x50\x5d\xb8\xd8\x77\x00")]).is_none(),
            "lone socks4 request"
        );
        assert!(run(&[
            (S, b"\x16\x03\x01\x00\xa2\x01\x00\x00\x9e\x03\x01"),
            (C, b"\x16\x03\x03\x00\x7a\x02")
        ])
        .is_none());
        assert!(run(&[
            (S, b"GET / HTTP/1.1\r\n\r\n"),
            (C, b"HTTP/1.1 200 OK\r\n\r\n")
        ])
        .is_none());
        assert!(run(&[
            (S, b"SSH-2.0-OpenSSH_9.4\r\n"),
            (C, b"SSH-2.0-OpenSSH_8.9\r\n")
        ])
        .is_none());
        // DNS over TCP and random bytes.
        assert!(run(&[(S, b"\x00\x1d\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"), (C, b"\x00\x05\x12\x34\x81\x80\x00")]).is_none());
        assert!(run(&[
            (S, b"\x05\x01\x00"),
            (C, b"\x05\x00"),
            (S, b"\x05\x01\x00\x07\x00\x00"),
            (C, b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        ])
        .is_none());
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..12)) {
            let mut s = State::default();
            for (i, c) in chunks.iter().enumerate() {
                let dir = if i % 3 == 0 { Direction::ToClient } else { Direction::ToServer };
                if s.observe(&pl(dir, i as u8, c)) != Step::NeedMore { break; }
                let _ = classify_inner(c);
            }
        }

        #[test]
        fn greetings_with_garbage_never_panic(n in 0u8..=255, tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = vec![5, n];
            b.extend_from_slice(&tail);
            let _ = parse_socks5_greeting(&b);
            let _ = parse_socks5_request(&b);
            let _ = parse_socks5_reply(&b);
            b[0] = 4;
            let _ = parse_socks4_request(&b);
        }
    }
}
