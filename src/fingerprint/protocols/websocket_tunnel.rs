//! Generic TCP tunnels carried over WebSocket (wstunnel and the like).
//!
//! Wire facts (RFC 6455):
//! - §4.1/§4.2: the client opens with `GET <path> HTTP/1.1` carrying `Upgrade: websocket`,
//!   `Connection: Upgrade` and `Sec-WebSocket-Key` (base64 of 16 random bytes, 24 characters);
//!   the server answers `101` with `Sec-WebSocket-Accept` =
//!   base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), verified here.
//! - §5.2: frame header `FIN|RSV1-3|opcode(4)`, `MASK|len(7)`, 16-bit length if 126, 64-bit if
//!   127, then the 4-byte masking key when MASK is set (always on client frames, §5.3: octet i
//!   is XORed with key[i % 4]). Opcode 1 text, 2 binary, 0 continuation, 8-10 control.
//! - wstunnel (documented behaviour of the open-source tool, v7+): the upgrade path ends in
//!   `/events` and the client puts a JWT in `Sec-WebSocket-Protocol: v1,
//!   authorization.bearer.<jwt>` whose claims include `p` (tunnel kind, e.g. `Tcp`) and `rp`
//!   (remote port).
//!
//! A match needs the verified handshake plus either a recognised tunnelled protocol at the start
//! of the first data frame in either direction (an SSH identification string, a TLS
//! ClientHello, a SOCKS5 greeting, an HTTP request) or the wstunnel JWT. A WebSocket carrying an
//! opaque stream without those marks (VMess over WebSocket, chat apps) does not match. When the
//! tunnelled protocol is SSH, `application` is `ssh`: the carried application is observable
//! because WebSocket framing is not encryption.

use super::http::{
    evidence_text, head_end, header_lines, header_value, parse_request_line, parse_status_line,
};
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Direction;

/// Detector entry: handshake plus the first frames, four payloads per direction.
pub static SPEC: Spec = Spec {
    name: "websocket_tunnel",
    family: Family::Tunnel,
    transports: Transports::TCP,
    payload_budget: 4,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// RFC 6455 §1.3: the GUID appended to the key before hashing.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Bytes of a frame's payload unmasked and looked at.
const PEEK: usize = 64;
/// Longest JWT decoded for wstunnel claims.
const MAX_JWT: usize = 2048;

/// A parsed WebSocket frame header (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Header length: where the payload starts.
    pub header_len: usize,
}

/// Parses the frame header at the start of `b`; rejects reserved bits and opcodes.
pub fn parse_frame_header(b: &[u8]) -> Option<FrameHeader> {
    let (&b0, rest) = b.split_first()?;
    let (&b1, rest) = rest.split_first()?;
    let opcode = b0 & 0x0f;
    if b0 & 0x70 != 0 || !matches!(opcode, 0..=2 | 8..=10) {
        return None;
    }
    let (payload_len, used) = match b1 & 0x7f {
        126 => (u64::from(u16::from_be_bytes(*rest.first_chunk::<2>()?)), 2),
        127 => (u64::from_be_bytes(*rest.first_chunk::<8>()?), 8),
        n => (u64::from(n), 0),
    };
    // Control frames carry at most 125 bytes (§5.5); the top bit of a 64-bit length is 0.
    if (opcode >= 8 && payload_len > 125) || payload_len >> 63 != 0 {
        return None;
    }
    let rest = rest.get(used..)?;
    let mask = if b1 & 0x80 != 0 {
        Some(*rest.first_chunk::<4>()?)
    } else {
        None
    };
    let header_len = 2 + used + if mask.is_some() { 4 } else { 0 };
    Some(FrameHeader {
        fin: b0 & 0x80 != 0,
        opcode,
        mask,
        payload_len,
        header_len,
    })
}

/// Unmasks (§5.3) the first bytes of a frame's payload into `out`; returns how many.
pub fn peek_payload(b: &[u8], h: &FrameHeader, out: &mut [u8; PEEK]) -> usize {
    let avail = b.get(h.header_len..).unwrap_or(&[]);
    let n = avail
        .len()
        .min(PEEK)
        .min(usize::try_from(h.payload_len).unwrap_or(usize::MAX));
    for (i, (o, &c)) in out.iter_mut().zip(avail).take(n).enumerate() {
        *o = match h.mask {
            Some(k) => c ^ k[i % 4],
            None => c,
        };
    }
    n
}

/// SHA-1 (FIPS 180-4), only for the RFC 6455 accept check (input is 60 bytes).
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let bit_len = (data.len() as u64).wrapping_mul(8);
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (o, x) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&x.to_be_bytes());
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 (RFC 4648 §4) or base64url (§5), padding optional, into `out`, stopping at
/// the first character that is neither; returns the bytes written (bounded by `out`).
pub fn base64_decode_into(text: &[u8], out: &mut [u8]) -> usize {
    let mut acc = 0u32;
    let mut bits = 0u32;
    let mut n = 0usize;
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => break,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            let Some(slot) = out.get_mut(n) else { break };
            *slot = (acc >> bits) as u8;
            n += 1;
        }
    }
    n
}

/// The value RFC 6455 §4.2.2 requires in `Sec-WebSocket-Accept` for `key`.
pub fn expected_accept(key: &[u8]) -> String {
    let mut input = Vec::with_capacity(key.len() + WS_GUID.len());
    input.extend_from_slice(key);
    input.extend_from_slice(WS_GUID);
    base64_encode(&sha1(&input))
}

/// True when a comma-separated header value lists `token` (ASCII case-insensitive).
fn lists_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&c| c == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// wstunnel's JWT claims: tunnel kind (`p`) and remote port (`rp`).
fn wstunnel_claims(protocols: &[u8]) -> Option<(String, Option<u64>)> {
    let start = protocols
        .windows(21)
        .position(|w| w.eq_ignore_ascii_case(b"authorization.bearer."))?
        + 21;
    let jwt = protocols.get(start..)?;
    let jwt = jwt.get(
        ..jwt
            .iter()
            .position(|&c| c == b',' || c == b' ')
            .unwrap_or(jwt.len()),
    )?;
    let mut parts = jwt.splitn(3, |&c| c == b'.');
    let (_, claims) = (parts.next()?, parts.next()?);
    let mut buf = [0u8; MAX_JWT];
    let n = base64_decode_into(claims, &mut buf);
    let json: serde_json::Value = serde_json::from_slice(buf.get(..n)?).ok()?;
    let kind = json
        .get("p")?
        .as_str()
        .map(|s| evidence_text(s.as_bytes(), 32))?;
    Some((kind, json.get("rp").and_then(serde_json::Value::as_u64)))
}

/// Names the protocol a tunnelled stream starts with, when it is recognisable.
pub fn classify_tunnelled(b: &[u8]) -> Option<&'static str> {
    if super::ssh::parse_ident_line(b).is_some() || (b.len() >= 8 && b.starts_with(b"SSH-2.0-")) {
        return Some("ssh");
    }
    if let [0x16, 0x03, 0..=4, _, _, 1, ..] = b {
        return Some("tls");
    }
    if super::socks::parse_socks5_greeting(b).is_some_and(|(_, len)| len == b.len()) {
        return Some("socks");
    }
    if parse_request_line(b).is_some() {
        return Some("http");
    }
    None
}

#[derive(Debug, Default, PartialEq, Eq, Clone)]
enum Stage {
    #[default]
    Request,
    Response,
    Frames,
}

/// Per-flow state.
#[derive(Debug, Default, Clone)]
struct State {
    stage: Stage,
    client_dir: Option<Direction>,
    /// The expected accept value, computed from the client's key.
    accept: String,
    path_events: bool,
    wstunnel: Option<(String, Option<u64>)>,
    /// First data frame seen from each side (`Direction::index`).
    first_frame_seen: [bool; 2],
    inner: Option<&'static str>,
    opcode: u8,
}

impl State {
    fn verdict(&mut self) -> Verdict {
        let mut v = Verdict::new(Confidence::BothDirections).fact("accept_verified", true);
        v.roles_reversed = self.client_dir == Some(Direction::ToClient);
        if let Some(inner) = self.inner {
            v = v.fact("inner", inner);
            if inner == "ssh" {
                v.application = Some("ssh");
            }
        }
        v = v.fact("frame_opcode", self.opcode);
        if let Some((kind, rp)) = self.wstunnel.take() {
            v = v.fact("wstunnel_jwt", true).fact("tunnel_kind", kind);
            if let Some(rp) = rp {
                v = v.fact("remote_port", rp);
            }
        }
        if self.path_events {
            v = v.fact("path_events", true);
        }
        v
    }

    /// Looks at the first frame of one side's data.
    fn frames(&mut self, dir: Direction, b: &[u8]) -> Step {
        let i = dir.index();
        if b.is_empty() {
            return Step::NeedMore;
        }
        if !self.first_frame_seen[i] {
            let Some(h) = parse_frame_header(b) else {
                return Step::NotThis;
            };
            // §5.1: client frames are masked, server frames are not.
            if h.mask.is_some() != (Some(dir) == self.client_dir) {
                return Step::NotThis;
            }
            if matches!(h.opcode, 1 | 2) {
                self.first_frame_seen[i] = true;
                self.opcode = h.opcode;
                let mut buf = [0u8; PEEK];
                let n = peek_payload(b, &h, &mut buf);
                if let Some(inner) = buf.get(..n).and_then(classify_tunnelled) {
                    self.inner = Some(inner);
                    return Step::Match(self.verdict());
                }
            }
        }
        if self.first_frame_seen.iter().all(|&s| s) {
            if self.wstunnel.is_some() {
                return Step::Match(self.verdict());
            }
            return Step::NotThis;
        }
        Step::NeedMore
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        match self.stage {
            Stage::Request => {
                let Some(req) = parse_request_line(p.bytes) else {
                    return Step::NotThis;
                };
                let upgrade = header_value(p.bytes, req.line_end, "upgrade")
                    .is_some_and(|v| lists_token(v, b"websocket"));
                let key = header_value(p.bytes, req.line_end, "sec-websocket-key")
                    .filter(|k| k.len() == 24);
                let (true, Some(key), b"GET") = (upgrade, key, req.method) else {
                    return Step::NotThis;
                };
                self.accept = expected_accept(key);
                self.path_events = req
                    .target
                    .split(|&c| c == b'?')
                    .next()
                    .is_some_and(|path| path.ends_with(b"/events"));
                self.wstunnel = header_lines(p.bytes, req.line_end)
                    .filter(|(n, _)| n.eq_ignore_ascii_case(b"sec-websocket-protocol"))
                    .find_map(|(_, v)| {
                        wstunnel_claims(v.get(..v.len().min(MAX_JWT * 2)).unwrap_or(v))
                    });
                self.client_dir = Some(p.direction);
                self.stage = Stage::Response;
                Step::NeedMore
            }
            Stage::Response => {
                if Some(p.direction) == self.client_dir {
                    return Step::NeedMore;
                }
                let Some(st) = parse_status_line(p.bytes) else {
                    return Step::NotThis;
                };
                let accept = header_value(p.bytes, st.line_end, "sec-websocket-accept");
                if st.code != 101 || accept != Some(self.accept.as_bytes()) {
                    return Step::NotThis;
                }
                self.stage = Stage::Frames;
                let tail = head_end(p.bytes)
                    .and_then(|e| p.bytes.get(e..))
                    .unwrap_or(&[]);
                self.frames(p.direction, tail)
            }
            Stage::Frames => self.frames(p.direction, p.bytes),
        }
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        (self.stage == Stage::Frames && self.wstunnel.is_some()).then(|| self.verdict())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::protocols::http::tests::pl;
    use proptest::prelude::*;
    use Direction::{ToClient as C, ToServer as S};

    /// wstunnel-ssh.pcap, frame 4 (the upgrade request; JWT kept whole: it is the tool's header).
    const WS_GET: &[u8] = b"GET /v1/events HTTP/1.1\r\nhost: localhost:8888\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: h3O8u2T2ddfJaexKyok0Pw==\r\nsec-websocket-version: 13\r\nsec-websocket-protocol: v1, authorization.bearer.eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpZCI6IjAxOGQwNTVkLTQ5OTgtNzI5Zi04Yjg2LTMwZTBiZWEyZGE4ZiIsInAiOiJUY3AiLCJyIjoiMTk1LjIwMS4xNDguMjA5IiwicnAiOjIyfQ.jjTNJL12tQbAuhTB9p_geFXRkEHkxcvOS6zf76qDklQ\r\n\r\n";
    /// wstunnel-ssh.pcap, frame 6.
    const WS_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: RMj+HZNL5jRTQtDQs2hISOJs0JQ=\r\nsec-websocket-protocol: v1\r\ndate: Sun, 14 Jan 2024 00:26:56 GMT\r\n\r\n";
    /// wstunnel-ssh.pcap, frame 10: server binary frame carrying the SSH identification string.
    const WS_SSH_SERVER: &[u8] = b"\x82\x29SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.5\r\n";
    /// tls_heur__vmess-websocket.pcapng, frames 17 and 19 (no wstunnel marks).
    const VMESS_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1234\r\nUser-Agent: Go-http-client/1.1\r\nConnection: Upgrade\r\nSec-WebSocket-Key: kZZIwDrnHmWYxjh7a/vl8w==\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n\r\n";
    const VMESS_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: CD1U0JDcEhm/1Rbp3PwxoCiQ9IU=\r\n\r\n";
    /// tls_heur__vmess-websocket.pcapng, frame 23 (first 24 bytes: masked opaque VMess frame).
    const VMESS_FRAME: &[u8] = b"\x82\xfe\x02\xb3\x09\x50\x56\xf6\x0f\x51\x45\x52\xeb\xec\x06\x59\x62\x4d\x57\xc4\x42\x31\xab\x20";

    #[test]
    fn accept_is_rfc6455() {
        // RFC 6455 §1.3 example.
        assert_eq!(
            expected_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            expected_accept(b"h3O8u2T2ddfJaexKyok0Pw=="),
            "RMj+HZNL5jRTQtDQs2hISOJs0JQ="
        );
    }

    #[test]
    fn wstunnel_ssh_matches_with_inner_ssh() {
        let mut s = State::default();
        assert_eq!(s.observe(&pl(S, 0, WS_GET)), Step::NeedMore);
        assert_eq!(s.observe(&pl(C, 0, WS_101)), Step::NeedMore);
        match s.observe(&pl(C, 1, WS_SSH_SERVER)) {
            Step::Match(v) => {
                assert_eq!(v.application, Some("ssh"));
                assert_eq!(v.evidence.get("tunnel_kind"), Some(&"Tcp".into()));
                assert_eq!(v.evidence.get("remote_port"), Some(&22u64.into()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn masked_client_frame_is_unmasked() {
        let mut frame = vec![0x82, 0x80 | 21, 1, 2, 3, 4];
        frame.extend(
            b"SSH-2.0-OpenSSH_9.4\r\n"
                .iter()
                .enumerate()
                .map(|(i, c)| c ^ [1, 2, 3, 4][i % 4]),
        );
        let h = parse_frame_header(&frame).unwrap();
        let mut buf = [0u8; PEEK];
        let n = peek_payload(&frame, &h, &mut buf);
        assert_eq!(classify_tunnelled(&buf[..n]), Some("ssh"));
    }

    #[test]
    fn vmess_over_websocket_is_not_a_generic_tunnel() {
        let mut s = State::default();
        assert_eq!(s.observe(&pl(S, 0, VMESS_GET)), Step::NeedMore);
        assert_eq!(s.observe(&pl(C, 0, VMESS_101)), Step::NeedMore);
        assert_eq!(s.observe(&pl(S, 1, VMESS_FRAME)), Step::NeedMore);
        assert_eq!(
            s.observe(&pl(C, 1, b"\x82\x7e\x08\x00\x2a\x51\x8d\xfb")),
            Step::NotThis
        );
    }

    #[test]
    fn near_misses_are_rejected() {
        // Wrong accept value.
        let mut s = State::default();
        s.observe(&pl(S, 0, VMESS_GET));
        assert_eq!(s.observe(&pl(C, 0, WS_101)), Step::NotThis);
        for b in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"SSH-2.0-x\r\n",
            b"\x16\x03\x01\x00\xa2\x01\x00",
            b"\x05\x01\x00",
        ] {
            let mut s = State::default();
            assert_eq!(s.observe(&pl(S, 0, b)), Step::NotThis, "{b:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..6)) {
            let mut s = State::default();
            let _ = s.observe(&pl(S, 0, WS_GET));
            let _ = s.observe(&pl(C, 0, WS_101));
            for (i, c) in chunks.iter().enumerate() {
                if i >= 6 { break; }
                let dir = if i % 2 == 0 { S } else { C };
                let _ = parse_frame_header(c);
                let mut out = [0u8; 16];
                let _ = base64_decode_into(c, &mut out);
                let _ = wstunnel_claims(c);
                if s.observe(&pl(dir, (i / 2 + 1) as u8, c)) != Step::NeedMore { break; }
            }
        }
    }
}
