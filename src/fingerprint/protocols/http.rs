//! HTTP/1.x over TCP (RFC 9112): the request line a client sends first and the status line the
//! server answers with. A generic carrier: it ranks lowest so that a proxy, tunnel or VPN match on
//! the same flow names it.
//!
//! The pure parsers here ([`parse_request_line`], [`parse_status_line`], [`header_value`]) are
//! shared by the `http_connect`, `http_proxy`, `websocket_tunnel` and `softether` detectors.
//!
//! Wire facts (RFC 9112):
//! - §3: `request-line = method SP request-target SP HTTP-version CRLF`; `method` is a token
//!   (RFC 9110 §9.1), in practice upper-case letters (`GET`, `POST`, `M-SEARCH`).
//! - §2.3: `HTTP-version = "HTTP/" DIGIT "." DIGIT`; this detector accepts `HTTP/1.0`, `HTTP/1.1`.
//! - §4: `status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF`, status-code = 3DIGIT.
//! - §5: `field-line = field-name ":" OWS field-value OWS`, one per CRLF-terminated line, the header
//!   section ending at an empty line. A bare LF is accepted as a line end (§2.2).

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Direction;

/// Detector entry: HTTP/1.x request and status lines, two payloads per direction.
pub static SPEC: Spec = Spec {
    name: "http",
    family: Family::Web,
    transports: Transports::TCP,
    payload_budget: 2,
    rank: rank::CARRIER,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// Longest method token accepted (the registered methods are at most 17 characters).
const MAX_METHOD: usize = 24;
/// Longest request-target accepted in one segment (RFC 9112 §3 recommends supporting 8000).
const MAX_TARGET: usize = 8192;
/// Longest host name kept as evidence.
const MAX_HOST: usize = 255;

/// A parsed request line, borrowing from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// The method token, e.g. `GET`.
    pub method: &'a [u8],
    /// The request-target, e.g. `/index.html`, `http://host/`, `host:443`.
    pub target: &'a [u8],
    /// The minor version digit of `HTTP/1.x`; `None` for a line a snap length cut before it
    /// ([`parse_request_line_cut`]).
    pub minor: Option<u8>,
    /// Offset of the first byte after the request line's line end (the first header line; the
    /// payload's end for a cut line).
    pub line_end: usize,
}

/// A parsed status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusLine {
    /// The three-digit status code.
    pub code: u16,
    /// The minor version digit of `HTTP/1.x`.
    pub minor: u8,
    /// Offset of the first byte after the status line's line end.
    pub line_end: usize,
}

/// Finds the end of the first line: returns (line without CR/LF, offset after the LF).
fn first_line(b: &[u8], max: usize) -> Option<(&[u8], usize)> {
    let window = b.get(..b.len().min(max))?;
    let lf = window.iter().position(|&c| c == b'\n')?;
    let line = b.get(..lf)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, lf + 1))
}

/// Parses `HTTP/1.x` at the start of `b`, returning the minor digit.
fn parse_version(b: &[u8]) -> Option<u8> {
    match b {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d @ (b'0' | b'1')] => Some(d - b'0'),
        _ => None,
    }
}

/// Parses an HTTP/1.x request line at the start of `b` (RFC 9112 §3). The whole line must be in
/// `b`. Returns `None` for anything else.
pub fn parse_request_line(b: &[u8]) -> Option<RequestLine<'_>> {
    let (line, line_end) = first_line(b, MAX_METHOD + MAX_TARGET + 16)?;
    let sp1 = line.iter().position(|&c| c == b' ')?;
    let (method, rest) = line.split_at_checked(sp1)?;
    if method.is_empty()
        || method.len() > MAX_METHOD
        || !method
            .iter()
            .all(|&c| c.is_ascii_uppercase() || c == b'-' || c == b'_')
    {
        return None;
    }
    let rest = rest.get(1..)?;
    let sp2 = rest.iter().rposition(|&c| c == b' ')?;
    let (target, version) = rest.split_at_checked(sp2)?;
    if target.is_empty()
        || target.len() > MAX_TARGET
        || !target.iter().all(|&c| (0x21..=0x7e).contains(&c))
    {
        return None;
    }
    let minor = parse_version(version.get(1..)?)?;
    Some(RequestLine {
        method,
        target,
        minor: Some(minor),
        line_end,
    })
}

/// The methods of RFC 9110 §9.3 and PATCH (RFC 5789). A request line cut before its end is
/// taken only with one of these, where a whole line may carry any method token.
const REGISTERED_METHODS: [&[u8]; 9] = [
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
];

/// [`parse_request_line`] for a payload a snap length cut short ([`Payload::cut`]): a whole
/// request line, or one that runs to the end of the kept bytes. A cut line must have a
/// registered method, then a space and a request-target of visible characters in one of the
/// forms of RFC 9112 §3.2 (origin `/...`, absolute `scheme://...`, `*`, or after CONNECT an
/// authority), and, if the kept bytes reach past the target, the start of `HTTP/1.x`.
///
/// [`Payload::cut`]: crate::fingerprint::Payload::cut
pub fn parse_request_line_cut(b: &[u8]) -> Option<RequestLine<'_>> {
    if let Some(whole) = parse_request_line(b) {
        return Some(whole);
    }
    if b.contains(&b'\n') {
        // The line ended among the kept bytes, and it is no request line.
        return None;
    }
    let sp = b.iter().position(|&c| c == b' ')?;
    let (method, rest) = b.split_at_checked(sp)?;
    if !REGISTERED_METHODS.contains(&method) {
        return None;
    }
    let rest = rest.get(1..)?;
    let target_len = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
    let (target, after) = rest.split_at_checked(target_len)?;
    let form_ok = target.starts_with(b"/")
        || target == b"*"
        || method == b"CONNECT"
        || split_absolute_form(target).is_some();
    if target.is_empty()
        || target.len() > MAX_TARGET
        || !form_ok
        || !target.iter().all(|&c| (0x21..=0x7e).contains(&c))
    {
        return None;
    }
    let minor = match after.get(1..) {
        None => None,
        Some(v) if v.len() < 8 => {
            if !b"HTTP/1.".starts_with(v) {
                return None;
            }
            None
        }
        Some(v) if v.len() == 8 || (v.len() == 9 && v[8] == b'\r') => {
            Some(parse_version(v.get(..8)?)?)
        }
        Some(_) => return None,
    };
    Some(RequestLine {
        method,
        target,
        minor,
        line_end: b.len(),
    })
}

/// An absolute-form request-target `scheme://...` (RFC 9112 §3.2.2) of a scheme a forward
/// proxy serves (`http`, `https`, `ftp`, any case): the scheme and what follows `://`.
pub fn split_absolute_form(target: &[u8]) -> Option<(&'static str, &[u8])> {
    const SCHEMES: [(&str, &[u8]); 3] = [
        ("http", b"http://"),
        ("https", b"https://"),
        ("ftp", b"ftp://"),
    ];
    SCHEMES.iter().find_map(|&(scheme, prefix)| {
        let head = target.get(..prefix.len())?;
        head.eq_ignore_ascii_case(prefix)
            .then(|| (scheme, target.get(prefix.len()..).unwrap_or_default()))
    })
}

/// Parses an HTTP/1.x status line at the start of `b` (RFC 9112 §4).
pub fn parse_status_line(b: &[u8]) -> Option<StatusLine> {
    let (line, line_end) = first_line(b, 512)?;
    let minor = parse_version(line.get(..8)?)?;
    if line.get(8) != Some(&b' ') {
        return None;
    }
    let digits = line.get(9..12)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&code) {
        return None;
    }
    match line.get(12) {
        None | Some(b' ') => {}
        Some(_) => return None,
    }
    let reason = line.get(13..).unwrap_or(&[]);
    if !reason
        .iter()
        .all(|&c| c == b'\t' || (0x20..=0x7e).contains(&c) || c >= 0x80)
    {
        return None;
    }
    Some(StatusLine {
        code,
        minor,
        line_end,
    })
}

/// Iterates the header lines of `b` starting at `from`, stopping at the empty line or at the end
/// of the payload (a header section cut by the segment end yields what is complete).
pub fn header_lines(b: &[u8], from: usize) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = b.get(from..).unwrap_or(&[]);
    std::iter::from_fn(move || {
        let lf = rest.iter().position(|&c| c == b'\n')?;
        let (line, tail) = rest.split_at_checked(lf)?;
        rest = tail.get(1..).unwrap_or(&[]);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            rest = &[];
            return None;
        }
        let colon = line.iter().position(|&c| c == b':')?;
        let (name, value) = line.split_at_checked(colon)?;
        let value = value.get(1..).unwrap_or(&[]).trim_ascii();
        Some((name, value))
    })
}

/// The value of the first header field named `name` (ASCII case-insensitive), trimmed of OWS.
pub fn header_value<'a>(b: &'a [u8], from: usize, name: &str) -> Option<&'a [u8]> {
    header_lines(b, from)
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v)
}

/// Offset just after the empty line that ends the header section, if it is in `b`.
pub fn head_end(b: &[u8]) -> Option<usize> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Bounded, printable text for evidence (names, methods), never raw bytes.
pub fn evidence_text(b: &[u8], max: usize) -> String {
    b.iter()
        .take(max)
        .map(|&c| {
            if (0x21..=0x7e).contains(&c) {
                char::from(c)
            } else {
                '?'
            }
        })
        .collect()
}

/// Per-flow state: the request seen (method, host) waiting for the status line.
#[derive(Debug, Default, Clone)]
struct State {
    /// Direction the request came from (the HTTP client's side).
    request_dir: Option<Direction>,
    method: String,
    host: Option<String>,
    minor: Option<u8>,
}

impl State {
    fn verdict(&mut self, confidence: Confidence) -> Verdict {
        let mut v = Verdict::new(confidence).fact("method", std::mem::take(&mut self.method));
        if let Some(minor) = self.minor {
            v = v.fact("version_minor", minor);
        }
        if let Some(h) = self.host.take() {
            v = v.fact("host", h);
        }
        v.roles_reversed = self.request_dir == Some(Direction::ToClient);
        v
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        match self.request_dir {
            None => {
                let request = if p.is_whole() {
                    parse_request_line(p.bytes)
                } else {
                    parse_request_line_cut(p.bytes)
                };
                if let Some(req) = request {
                    self.request_dir = Some(p.direction);
                    self.method = evidence_text(req.method, MAX_METHOD);
                    self.minor = req.minor;
                    self.host = header_value(p.bytes, req.line_end, "host")
                        .map(|h| evidence_text(h, MAX_HOST));
                    Step::NeedMore
                } else {
                    // A status line first means the capture missed the request: still HTTP.
                    match parse_status_line(p.bytes) {
                        Some(st) => Step::Match(
                            Verdict::new(Confidence::OneMessage)
                                .fact("status", st.code)
                                .fact("version_minor", st.minor),
                        ),
                        None => Step::NotThis,
                    }
                }
            }
            Some(dir) if p.direction == dir => Step::NeedMore,
            Some(_) => match parse_status_line(p.bytes) {
                Some(st) => {
                    let v = self
                        .verdict(Confidence::BothDirections)
                        .fact("status", st.code);
                    Step::Match(v)
                }
                None => Step::Match(self.verdict(Confidence::OneMessage)),
            },
        }
    }

    fn conclude(&mut self, _flow: &crate::fingerprint::FlowContext) -> Option<Verdict> {
        self.request_dir
            .is_some()
            .then(|| self.verdict(Confidence::OneMessage))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn pl(direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes).nth(nth).ports(40000, 80)
    }

    /// windowsupdate_over_http.pcap, frame 4 (start of the GET, target shortened).
    const WU_GET: &[u8] = b"GET /filestreamingservice/files/d1d060c0 HTTP/1.1\r\nConnection: Keep-Alive\r\nAccept: */*\r\nHost: msedge.b.tlu.dl.delivery.mp.microsoft.com\r\n\r\n";
    /// http-proxy.pcapng, frame 6 (status line and first headers of the reply).
    const PROXY_200: &[u8] = b"HTTP/1.1 200 OK\r\nDate: Sat, 11 Sep 2021 23:39:10 GMT\r\nServer: Apache/2.4.41 (Ubuntu)\r\nVia: 1.1 192.168.1.146:8080\r\n";

    #[test]
    fn request_and_status_lines_parse() {
        let r = parse_request_line(WU_GET).unwrap();
        assert_eq!(r.method, b"GET");
        assert_eq!(r.target, b"/filestreamingservice/files/d1d060c0");
        assert_eq!(r.minor, Some(1));
        assert_eq!(
            header_value(WU_GET, r.line_end, "HOST"),
            Some(&b"msedge.b.tlu.dl.delivery.mp.microsoft.com"[..])
        );
        let s = parse_status_line(PROXY_200).unwrap();
        assert_eq!((s.code, s.minor), (200, 1));
        assert_eq!(
            header_value(PROXY_200, s.line_end, "via"),
            Some(&b"1.1 192.168.1.146:8080"[..])
        );
        assert!(parse_status_line(b"HTTP/1.1 101 Switching Protocols\r\n").is_some());
        assert!(parse_status_line(b"HTTP/1.0 200\r\n").is_some());
    }

    #[test]
    fn flow_matches_both_directions() {
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Direction::ToServer, 0, WU_GET)),
            Step::NeedMore
        );
        match s.observe(&pl(Direction::ToClient, 0, PROXY_200)) {
            Step::Match(v) => {
                assert_eq!(v.confidence, Confidence::BothDirections);
                assert_eq!(v.evidence.get("status"), Some(&200u16.into()));
                assert_eq!(v.evidence.get("method"), Some(&"GET".into()));
            }
            other => panic!("{other:?}"),
        }
    }

    /// A request line cut by a snap length is read as far as it goes, with a registered
    /// method and a request-target form; anything else, or a line that ended and did not
    /// parse, is not one.
    #[test]
    fn request_lines_cut_by_a_snap_length() {
        for (kept, target, minor) in [
            (&b"GET /very/long/pa"[..], &b"/very/long/pa"[..], None),
            (b"POST http://example.com/x", b"http://example.com/x", None),
            (b"GET / HTTP/1", b"/", None),
            (b"GET / HTTP/1.1", b"/", Some(1)),
            (b"HEAD /a HTTP/1.0\r", b"/a", Some(0)),
            (b"GET / HTTP/1.1\r\nHost: a\r\n", b"/", Some(1)),
        ] {
            let r = parse_request_line_cut(kept).unwrap();
            assert_eq!((r.target, r.minor), (target, minor), "{kept:?}");
            assert!(parse_request_line(kept).is_none() || minor.is_some());
        }
        for kept in [
            &b"FETCH /x"[..],
            b"GET x/y",
            b"GET /x\r\nHost: a",
            b"GET / HTTX",
            b"GET / HTTP/1.1 extra",
            b"GET",
            b"GET ",
        ] {
            assert!(parse_request_line_cut(kept).is_none(), "{kept:?}");
        }

        // The flow: a cut request, then the status line.
        let mut s = State::default();
        let cut = pl(Direction::ToServer, 0, b"GET /assets/app-4f2a9b").cut(400);
        assert_eq!(s.observe(&cut), Step::NeedMore);
        match s.observe(&pl(Direction::ToClient, 0, PROXY_200)) {
            Step::Match(v) => {
                assert_eq!(v.confidence, Confidence::BothDirections);
                assert_eq!(v.evidence.get("version_minor"), None);
            }
            other => panic!("{other:?}"),
        }
        // Whole payloads get no such leniency.
        let mut s = State::default();
        let whole = pl(Direction::ToServer, 0, b"GET /assets/app-4f2a9b");
        assert_eq!(s.observe(&whole), Step::NotThis);
    }

    #[test]
    fn near_misses_are_rejected() {
        for b in [
            &b"SSH-2.0-OpenSSH_8.2\r\n"[..],
            b"get / HTTP/1.1\r\n",
            b"GET / HTTP/2.0\r\n",
            b"GET /\r\n",
            b"GET  HTTP/1.1\r\n",
            b"\x16\x03\x01\x00\xa2\x01\x00\x00\x9e\x03\x01",
            b"\x05\x01\x00",
            b"GET / HTTP/1.1",
            b"HTTP/1.1 20 OK\r\n",
        ] {
            assert!(parse_request_line(b).is_none(), "{b:?}");
            let mut s = State::default();
            assert_eq!(
                s.observe(&pl(Direction::ToServer, 0, b)),
                Step::NotThis,
                "{b:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..6)) {
            let mut s = State::default();
            for (i, c) in chunks.iter().enumerate() {
                let dir = if i % 2 == 0 { Direction::ToServer } else { Direction::ToClient };
                match s.observe(&pl(dir, (i / 2) as u8, c)) {
                    Step::NeedMore => prop_assert!(i < 2 * usize::from(SPEC.payload_budget)),
                    _ => break,
                }
            }
            let _ = parse_status_line(chunks.first().map(Vec::as_slice).unwrap_or(&[]));
            let _ = head_end(chunks.first().map(Vec::as_slice).unwrap_or(&[]));
        }
    }
}
