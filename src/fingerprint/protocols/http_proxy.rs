//! Forward HTTP proxy use (plain-text requests a client sends to a proxy) over TCP.
//!
//! Wire facts:
//! - RFC 9112 §3.2.2: a client sending a request to a proxy (other than CONNECT or a
//!   server-wide OPTIONS) MUST use the absolute-form request-target, e.g.
//!   `GET http://example.com/ HTTP/1.1`; requests to an origin server use the origin-form
//!   (`/path`). So an absolute-form target is the mark of a forward proxy.
//! - RFC 9110 §11.7.2: `Proxy-Authorization` carries credentials for the proxy; the non-standard
//!   `Proxy-Connection` header is only sent by clients configured to use a proxy.
//! - RFC 9110 §7.6.3: a proxy adds a `Via` header to the responses it forwards (extra evidence).
//!
//! CONNECT is left to `http_connect`. Confidence: request with a status line back is
//! `BothDirections`, the request alone `OneMessage` at flow end.

use super::http::{
    evidence_text, header_value, parse_request_line, parse_request_line_cut, parse_status_line,
    split_absolute_form,
};
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Direction;

/// Detector entry: the first request and the reply.
pub static SPEC: Spec = Spec {
    name: "http_proxy",
    family: Family::Proxy,
    transports: Transports::TCP,
    payload_budget: 2,
    rank: rank::TUNNEL_OVER_CARRIER,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// The host of an absolute-form target `scheme://host[:port]/...` (RFC 9112 §3.2.2), with the
/// scheme. Only the schemes a forward proxy serves are accepted.
pub fn absolute_form_host(target: &[u8]) -> Option<(&'static str, &[u8])> {
    let (scheme, rest) = split_absolute_form(target)?;
    let end = rest
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    // Drop userinfo and port.
    let host_port = authority.rsplit(|&c| c == b'@').next()?;
    let host = match host_port.iter().rposition(|&c| c == b':') {
        Some(i)
            if !host_port.starts_with(b"[") || host_port.get(i.wrapping_sub(1)) == Some(&b']') =>
        {
            host_port.get(..i)?
        }
        _ => host_port,
    };
    let valid = !host.is_empty()
        && host
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b".-_[]:".contains(&c));
    valid.then_some((scheme, host))
}

/// Per-flow state.
#[derive(Debug, Default, Clone)]
struct State {
    client_dir: Option<Direction>,
    verdict: Option<Verdict>,
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let Some(client_dir) = self.client_dir else {
            let request = if p.is_whole() {
                parse_request_line(p.bytes)
            } else {
                parse_request_line_cut(p.bytes)
            };
            let Some(req) = request else {
                return Step::NotThis;
            };
            if req.method == b"CONNECT" {
                return Step::NotThis;
            }
            // A target cut inside its authority would name a host that is only the start of
            // the real one.
            let authority_whole = req.minor.is_some()
                || split_absolute_form(req.target)
                    .is_some_and(|(_, rest)| rest.iter().any(|c| matches!(c, b'/' | b'?' | b'#')));
            let absolute = absolute_form_host(req.target).filter(|_| authority_whole);
            let proxy_auth = header_value(p.bytes, req.line_end, "proxy-authorization").is_some();
            let proxy_conn = header_value(p.bytes, req.line_end, "proxy-connection").is_some();
            if absolute.is_none() && !proxy_auth && !proxy_conn {
                return Step::NotThis;
            }
            let mut v =
                Verdict::new(Confidence::OneMessage).fact("method", evidence_text(req.method, 24));
            if let Some((scheme, host)) = absolute {
                v = v
                    .fact("absolute_form", true)
                    .fact("scheme", scheme)
                    .fact("target_host", evidence_text(host, 255));
            }
            if proxy_auth {
                v = v.fact("proxy_authorization", true);
            }
            if proxy_conn {
                v = v.fact("proxy_connection", true);
            }
            v.roles_reversed = p.direction == Direction::ToClient;
            self.client_dir = Some(p.direction);
            self.verdict = Some(v);
            return Step::NeedMore;
        };
        if p.direction == client_dir {
            return Step::NeedMore;
        }
        let Some(mut v) = self.verdict.take() else {
            return Step::NotThis;
        };
        if let Some(st) = parse_status_line(p.bytes) {
            v.confidence = Confidence::BothDirections;
            v = v.fact("status", st.code);
            if header_value(p.bytes, st.line_end, "via").is_some() {
                v = v.fact("via", true);
            }
        }
        Step::Match(v)
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        self.verdict.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::protocols::http::tests::pl;
    use crate::flow::Transport;
    use proptest::prelude::*;
    use Direction::{ToClient as C, ToServer as S};

    /// http-proxy.pcapng, frame 4 (first header lines).
    const PROXY_GET: &[u8] = b"GET http://http.com/ HTTP/1.1\r\nHost: http.com\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:91.0) Gecko/20100101 Firefox/91.0\r\nAccept: */*\r\n\r\n";
    /// http-proxy.pcapng, frame 6 (first header lines).
    const PROXY_200: &[u8] = b"HTTP/1.1 200 OK\r\nDate: Sat, 11 Sep 2021 23:39:10 GMT\r\nServer: Apache/2.4.41 (Ubuntu)\r\nVia: 1.1 192.168.1.146:8080\r\n\r\n";

    /// A request cut by a snap length is a proxy request when its absolute-form target
    /// shows the whole host (a `/`, `?` or `#` after it among the kept bytes).
    #[test]
    fn cut_absolute_form_requests() {
        let mut s = State::default();
        let cut = pl(S, 0, b"GET http://example.com/index.html?q=1&lo").cut(300);
        assert_eq!(s.observe(&cut), Step::NeedMore);
        let v = s
            .conclude(&FlowContext::test(Transport::Tcp, 40000, 80))
            .unwrap();
        assert_eq!(v.evidence.get("target_host"), Some(&"example.com".into()));
        let mut s = State::default();
        let host_cut = pl(S, 0, b"GET http://exam").cut(300);
        assert_eq!(s.observe(&host_cut), Step::NotThis);
    }

    #[test]
    fn absolute_form_request_and_via() {
        let mut s = State::default();
        assert_eq!(s.observe(&pl(S, 0, PROXY_GET)), Step::NeedMore);
        match s.observe(&pl(C, 0, PROXY_200)) {
            Step::Match(v) => {
                assert_eq!(v.confidence, Confidence::BothDirections);
                assert_eq!(v.evidence.get("target_host"), Some(&"http.com".into()));
                assert_eq!(v.evidence.get("via"), Some(&true.into()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            absolute_form_host(b"http://user@h.example:8080/x"),
            Some(("http", &b"h.example"[..]))
        );
        assert_eq!(
            absolute_form_host(b"HTTP://[::1]:80/"),
            Some(("http", &b"[::1]"[..]))
        );
    }

    #[test]
    fn origin_form_and_connect_are_not_proxy() {
        for b in [
            // windowsupdate_over_http.pcap, frame 4 (shortened).
            &b"GET /filestreamingservice/files/d1d060c0?P1=1652084683 HTTP/1.1\r\nHost: msedge.b.tlu.dl.delivery.mp.microsoft.com\r\n\r\n"[..],
            b"GET /wiki/http://example.com HTTP/1.1\r\nHost: en.wikipedia.org\r\n\r\n",
            b"CONNECT apache.org:443 HTTP/1.1\r\nProxy-Connection: keep-alive\r\n\r\n",
            b"GET http:// HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x00\xa2\x01\x00\x00\x9e\x03\x01",
            b"\x05\x01\x00",
        ] {
            let mut s = State::default();
            assert_eq!(s.observe(&pl(S, 0, b)), Step::NotThis, "{b:?}");
        }
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(
                S,
                0,
                b"GET / HTTP/1.1\r\nProxy-Authorization: Basic eDp5\r\n\r\n"
            )),
            Step::NeedMore
        );
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(target in proptest::collection::vec(any::<u8>(), 0..300), chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..4)) {
            let _ = absolute_form_host(&target);
            let mut req = b"GET http://".to_vec();
            req.extend_from_slice(&target);
            req.extend_from_slice(b" HTTP/1.1\r\n\r\n");
            let mut s = State::default();
            let mut steps = vec![s.observe(&pl(S, 0, &req))];
            for (i, c) in chunks.iter().enumerate() {
                if steps.last() != Some(&Step::NeedMore) || i >= 2 { break; }
                steps.push(s.observe(&pl(if i == 0 { C } else { S }, i as u8, c)));
            }
        }
    }
}
