//! HTTP CONNECT tunnels (RFC 9110 §9.3.6) over TCP.
//!
//! Wire facts:
//! - The client's first request is `CONNECT host:port HTTP/1.x` with the request-target in
//!   authority-form (RFC 9112 §3.2.3: `uri-host ":" port`, port required).
//! - Any 2xx reply means the proxy switched to tunnel mode right after the header section
//!   (RFC 9110 §9.3.6); the first bytes the client then sends belong to the tunnelled protocol
//!   (usually a TLS ClientHello), classified here as `inner=...` evidence.
//!
//! Confidence: CONNECT request and a status line (any code: a refusal such as 407 is still a
//! proxy conversation) is `BothDirections`; the request alone is `OneMessage` at flow end.

use super::http::{evidence_text, head_end, header_value, parse_request_line, parse_status_line};
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Direction;

/// Detector entry: request, reply and the first tunnelled payload.
pub static SPEC: Spec = Spec {
    name: "http_connect",
    family: Family::Proxy,
    transports: Transports::TCP,
    payload_budget: 3,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// A parsed authority-form target `host:port` (RFC 9112 §3.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authority<'a> {
    pub host: &'a [u8],
    pub port: u16,
}

/// Parses `host:port` or `[v6]:port`; the port is required and non-zero.
pub fn parse_authority(t: &[u8]) -> Option<Authority<'_>> {
    let colon = t.iter().rposition(|&c| c == b':')?;
    let (host, port) = t.split_at_checked(colon)?;
    let port = port.get(1..)?;
    if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let port = port.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0'));
    let port = u16::try_from(port).ok().filter(|&p| p != 0)?;
    let ok_host = match host {
        [b'[', inner @ .., b']'] => {
            !inner.is_empty()
                && inner
                    .iter()
                    .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        }
        _ => {
            !host.is_empty()
                && host
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || b".-_".contains(&c))
        }
    };
    ok_host.then_some(Authority { host, port })
}

/// Per-flow state.
#[derive(Debug, Default, Clone)]
struct State {
    client_dir: Option<Direction>,
    host: String,
    port: u16,
    status: Option<u16>,
    proxy_auth: bool,
}

impl State {
    fn verdict(&mut self, inner: Option<&'static str>) -> Verdict {
        let confidence = if self.status.is_some() {
            Confidence::BothDirections
        } else {
            Confidence::OneMessage
        };
        let mut v = Verdict::new(confidence)
            .fact("target_host", std::mem::take(&mut self.host))
            .fact("target_port", self.port);
        v.roles_reversed = self.client_dir == Some(Direction::ToClient);
        if self.proxy_auth {
            v = v.fact("proxy_authorization", true);
        }
        if let Some(s) = self.status {
            v = v.fact("status", s);
        }
        if let Some(i) = inner {
            v = v.fact("inner", i);
        }
        v
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let Some(client_dir) = self.client_dir else {
            let Some(req) = parse_request_line(p.bytes) else {
                return Step::NotThis;
            };
            if req.method != b"CONNECT" {
                return Step::NotThis;
            }
            let Some(auth) = parse_authority(req.target) else {
                return Step::NotThis;
            };
            self.client_dir = Some(p.direction);
            self.host = evidence_text(auth.host, 255);
            self.port = auth.port;
            self.proxy_auth = header_value(p.bytes, req.line_end, "proxy-authorization").is_some();
            return Step::NeedMore;
        };
        if p.direction != client_dir {
            if self.status.is_some() {
                return Step::NeedMore;
            }
            let Some(st) = parse_status_line(p.bytes) else {
                return Step::Match(self.verdict(None));
            };
            self.status = Some(st.code);
            if !(200..300).contains(&st.code) {
                return Step::Match(self.verdict(None));
            }
            // Tunnelled bytes in the same segment as the reply (server speaks first, e.g. SSH).
            let tail = head_end(p.bytes)
                .and_then(|e| p.bytes.get(e..))
                .unwrap_or(&[]);
            if !tail.is_empty() {
                return Step::Match(self.verdict(Some(super::socks::classify_inner(tail))));
            }
            return Step::NeedMore;
        }
        if self.status.is_some() {
            return Step::Match(self.verdict(Some(super::socks::classify_inner(p.bytes))));
        }
        Step::NeedMore
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        self.client_dir.is_some().then(|| self.verdict(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::protocols::http::tests::pl;
    use proptest::prelude::*;
    use Direction::{ToClient as C, ToServer as S};

    /// http_connect.pcap, frame 4.
    const CONNECT: &[u8] = b"CONNECT apache.org:443 HTTP/1.1\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:92.0) Gecko/20100101 Firefox/92.0\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive\r\nHost: apache.org:443\r\n\r\n";
    /// http_connect.pcap, frame 11.
    const ESTABLISHED: &[u8] =
        b"HTTP/1.0 200 Connection Established\r\nProxy-agent: Apache/2.4.41 (Ubuntu)\r\n\r\n";

    #[test]
    fn connect_then_tls() {
        let mut s = State::default();
        assert_eq!(s.observe(&pl(S, 0, CONNECT)), Step::NeedMore);
        assert_eq!(s.observe(&pl(C, 0, ESTABLISHED)), Step::NeedMore);
        match s.observe(&pl(S, 1, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")) {
            Step::Match(v) => {
                assert_eq!(v.confidence, Confidence::BothDirections);
                assert_eq!(v.evidence.get("target_host"), Some(&"apache.org".into()));
                assert_eq!(v.evidence.get("target_port"), Some(&443u16.into()));
                assert_eq!(v.evidence.get("inner"), Some(&"tls_client_hello".into()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn authority_form() {
        assert_eq!(parse_authority(b"[::1]:8443").map(|a| a.port), Some(8443));
        assert!(parse_authority(b"host").is_none());
        assert!(parse_authority(b"host:0").is_none());
        assert!(parse_authority(b"host:99999").is_none());
        assert!(parse_authority(b"/path:80").is_none());
    }

    #[test]
    fn near_misses_are_rejected() {
        for b in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"CONNECT / HTTP/1.1\r\n\r\n",
            b"CONNECT x:443 HTTP/2.0\r\n\r\n",
            b"\x16\x03\x01\x00\xa2\x01\x00\x00\x9e\x03\x01",
            b"SSH-2.0-x\r\n",
        ] {
            let mut s = State::default();
            assert_eq!(s.observe(&pl(S, 0, b)), Step::NotThis, "{b:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(first in proptest::collection::vec(any::<u8>(), 0..600), chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..6)) {
            let mut s = State::default();
            let mut n = [0u8; 2];
            let mut bytes = CONNECT.to_vec();
            bytes.extend_from_slice(&first);
            let _ = s.observe(&pl(S, 0, &bytes));
            n[0] = 1;
            for (i, c) in chunks.iter().enumerate() {
                let dir = if i % 2 == 0 { C } else { S };
                if n[dir.index()] >= SPEC.payload_budget { break; }
                n[dir.index()] += 1;
                if s.observe(&pl(dir, i as u8, c)) != Step::NeedMore { break; }
            }
            let _ = parse_authority(&first);
        }
    }
}
