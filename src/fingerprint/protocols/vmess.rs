//! VMess (V2Ray/Xray) carried over TLS or over WebSocket, and TLS-in-TLS in general.
//!
//! VMess itself is fully encrypted (v2fly "VMess protocol" spec): an AEAD request is
//! `auth_id(16) | encrypted header length(2+16) | nonce(8) | encrypted header(n+16) | body chunks`
//! and every body chunk is `length(2) | data` (security `none`/`zero`), `length(2) | data | tag(16)`
//! (AEAD security), or with authenticated length `length(2+16) | data | tag(16)`. It is almost
//! always wrapped in a transport; this detector recognises the two common ones:
//!
//! **VMess over TLS** — the encapsulated-handshake signature of Xue et al., "Fingerprinting
//! Obfuscated Proxy Traffic with Encapsulated TLS Handshakes" (USENIX Security 2024): after the
//! outer TLS handshake, the client's first application-data record carries the *inner* TLS
//! ClientHello (plus the proxy request), the server answers with the inner server flight, and the
//! client's next record is the inner client Finished flight. The inner Finished flight has a
//! handful of exact sizes ([`INNER_FINISHED_FLIGHTS`]); comparing it with the plaintext size of
//! the outer record (record length minus the outer AEAD overhead, RFC 8446 §5.2 / RFC 5288 §3)
//! shows the proxy's framing: VMess chunks add 2, 18 or 34 bytes ([`VMESS_CHUNK_OVERHEADS`]),
//! Trojan and VLESS add nothing after their first request. Framing 2/18/34 names `vmess`;
//! framing 0 is reported as protocol `tls` with `obfuscated` and `tls_in_tls=true` (no
//! VMess-specific evidence: Trojan's password hash travels encrypted and cannot be seen).
//!
//! **VMess over WebSocket** — an HTTP/1.1 Upgrade to `websocket` answered by `101` (RFC 6455
//! §4), after which the client's first frame is binary, masked (§5.3), at least as long as the
//! smallest VMess AEAD request ([`VMESS_AEAD_MIN_REQUEST`]) and its unmasked payload is fully
//! encrypted (no exemption of Wu et al. 2023, see [`crate::fingerprint::facts::entropy`]), and the
//! server's first frame is binary, unmasked and fully encrypted too. A WebSocket tunnel of a
//! plaintext protocol (wstunnel carrying SSH) fails the entropy test; Shadowsocks through
//! v2ray-plugin would pass it — the limit of what the bytes can tell.

use crate::fingerprint::facts::entropy::{self, ByteStats};
use crate::fingerprint::facts::tls;
use crate::fingerprint::facts::tls::content_type::{
    APPLICATION_DATA as CT_APPLICATION_DATA, CHANGE_CIPHER_SPEC as CT_CCS,
    HANDSHAKE as CT_HANDSHAKE,
};
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Direction;

/// Detector entry: up to eight payloads per direction (outer handshake, inner ClientHello, inner
/// server flight, inner Finished).
pub static SPEC: Spec = Spec {
    name: "vmess",
    family: Family::Obfuscated,
    transports: Transports::TCP,
    payload_budget: 8,
    rank: rank::TUNNEL_OVER_CARRIER,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// Sizes in bytes of an inner client Finished flight as the proxy client reads it from the
/// application: TLS 1.3 `[ChangeCipherSpec(6)] + record(5 + 4 + hash + 1 + 16)` with SHA-256 or
/// SHA-384 (RFC 8446 §4.4.4, §5.2, §D.4), and TLS 1.2 ECDHE `ClientKeyExchange record (5+4+1+32
/// for x25519, 5+4+1+65 for P-256) + ChangeCipherSpec(6) + Finished record (5 + 12 + 4 + 8 + 16
/// for AES-GCM, 5 + 16 + 16 for ChaCha20-Poly1305)` (RFC 5246 §7.4.7, §7.4.9; RFC 8422 §5.7).
pub const INNER_FINISHED_FLIGHTS: [usize; 8] = [58, 64, 74, 80, 93, 126, 85, 118];
/// Bytes a VMess body chunk adds to the data it carries (v2fly VMess spec, "Data section"):
/// 2-byte length (`none`/`zero`), + 16-byte tag (AEAD), + 16-byte length tag (authenticated
/// length).
pub const VMESS_CHUNK_OVERHEADS: [usize; 3] = [2, 18, 34];
/// Smallest inner ClientHello record carried in the first outer record. Browsers and OpenSSL
/// pad a ClientHello of 256..511 bytes up to 512 (RFC 7685 padding extension), and one with a
/// server name and a key share is rarely below 256 otherwise.
pub const MIN_INNER_CLIENT_HELLO: usize = 256;
/// Smallest inner server flight (ServerHello + certificate chain + Finished) between the inner
/// ClientHello and the inner client Finished; a full handshake with a certificate exceeds this.
pub const MIN_INNER_SERVER_FLIGHT: usize = 1000;
/// Smallest VMess AEAD request: auth id 16 + encrypted length 18 + nonce 8 + header + its tag
/// 16, the header being at least version 1, body IV 16, body key 16, response auth 1, option 1,
/// padding/security 1, reserved 1, command 1, port 2, address type 1, IPv4 address 4, FNV1a
/// check 4 = 49 bytes (v2fly VMess spec, "Command section").
pub const VMESS_AEAD_MIN_REQUEST: usize = 16 + 18 + 8 + 49 + 16;
/// Smallest server frame judged (VMess AEAD response header alone is 18 + 20 = 38 bytes).
const MIN_WS_REPLY: usize = 32;
/// Bytes of the first client frame that must be present to judge its entropy.
const MIN_WS_SAMPLE: usize = 48;

/// AEAD overhead of an outer TLS record: TLS 1.3 adds the inner content type and a 16-byte tag
/// (RFC 8446 §5.2, no padding); TLS 1.2 AES-GCM adds an 8-byte explicit nonce and a 16-byte tag
/// (RFC 5288 §3); ChaCha20-Poly1305 adds the tag only (RFC 7905 §2).
fn outer_overhead(tls13: bool, cipher: Option<u16>) -> Option<usize> {
    if tls13 {
        return Some(17);
    }
    match cipher? {
        0xc02b | 0xc02c | 0xc02f | 0xc030 | 0x009c | 0x009d | 0x009e | 0x009f => Some(24),
        0xcca8..=0xccaa => Some(16),
        _ => None,
    }
}

/// What framing lies between an outer record's plaintext and an inner Finished flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No framing (Trojan, VLESS, any raw relay).
    Raw,
    /// A VMess chunk header of this many bytes.
    Vmess(usize),
}

/// Classifies the plaintext size of the client's second outer data record.
pub fn finished_framing(plaintext: usize) -> Option<Framing> {
    if INNER_FINISHED_FLIGHTS.contains(&plaintext) {
        return Some(Framing::Raw);
    }
    VMESS_CHUNK_OVERHEADS.iter().find_map(|&o| {
        let inner = plaintext.checked_sub(o)?;
        INNER_FINISHED_FLIGHTS
            .contains(&inner)
            .then_some(Framing::Vmess(o))
    })
}

/// The cipher suite of a TLS ServerHello at the start of `b` (RFC 8446 §4.1.3: record header 5,
/// handshake header 4, legacy_version 2, random 32, session id <0..32>, cipher_suite 2).
pub fn server_hello_cipher(b: &[u8]) -> Option<u16> {
    if b.first() != Some(&CT_HANDSHAKE) || b.get(5) != Some(&2) {
        return None;
    }
    let sid_len = usize::from(*b.get(5 + 4 + 2 + 32)?);
    if sid_len > 32 {
        return None;
    }
    let at = 5 + 4 + 2 + 32 + 1 + sid_len;
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Walks TLS records across TCP payloads of one direction without buffering bodies.
///
/// Payloads a snap length cut short ([`Payload::cut`]) are walked on their wire length: a
/// record body running into the cut is skipped on. Where a record header lay in the cut bytes
/// the walk is lost; it picks up again at a payload that starts with a record header
/// ([`tls::parse_record_header`]: content type 20-23, version 0x0300-0x0304, a length of
/// 1..=2^14+2048; random ciphertext at the start of a payload passes that by chance about once
/// in three million), and notes that records went unseen ([`RecordWalker::lost_some`]).
#[derive(Debug, Default, Clone)]
struct RecordWalker {
    header: [u8; 5],
    have: usize,
    skip: usize,
    broken: bool,
    lost: bool,
    /// Records went unseen at some point: counts and order are lower bounds from there on.
    lost_some: bool,
}

impl RecordWalker {
    /// Calls `f(content_type, length)` for each record header completed in `bytes`, the
    /// payload's kept bytes, `cut` more having been on the wire.
    fn push(&mut self, mut bytes: &[u8], cut: usize, mut f: impl FnMut(u8, usize)) {
        if self.lost {
            if tls::parse_record_header(bytes).is_none() {
                return;
            }
            self.lost = false;
        }
        while !bytes.is_empty() && !self.broken {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = bytes.get(n..).unwrap_or_default();
                continue;
            }
            let n = (5 - self.have).min(bytes.len());
            if let (Some(dst), Some(src)) = (
                self.header.get_mut(self.have..self.have + n),
                bytes.get(..n),
            ) {
                dst.copy_from_slice(src);
            }
            self.have += n;
            bytes = bytes.get(n..).unwrap_or_default();
            if self.have == 5 {
                self.have = 0;
                let Some(header) = tls::parse_record_header(&self.header) else {
                    self.broken = true;
                    return;
                };
                let len = usize::from(header.length);
                self.skip = len;
                f(header.content_type, len);
            }
        }
        if cut == 0 || self.broken {
            return;
        }
        if self.have == 0 && self.skip >= cut {
            self.skip -= cut;
        } else {
            // A header, or part of one, was among the bytes left out.
            self.have = 0;
            self.skip = 0;
            self.lost = true;
            self.lost_some = true;
        }
    }
}

/// Progress of the TLS-in-TLS signature.
#[derive(Debug, Default, Clone)]
struct TlsPath {
    client: RecordWalker,
    server: RecordWalker,
    /// The server sent application data before the client did: the outer TLS is 1.3.
    tls13: bool,
    cipher: Option<u16>,
    client_app_records: u8,
    /// Content type of the client's last record.
    client_last: Option<u8>,
    /// Length of the first client data record (the inner ClientHello candidate).
    first_data: Option<usize>,
    /// Server application-data bytes after `first_data`.
    server_after: usize,
    server_records_after: usize,
    /// Length of the second client data record.
    second_data: Option<usize>,
    failed: bool,
}

#[derive(Debug, Default, Clone)]
enum Mode {
    #[default]
    Start,
    Tls(Box<TlsPath>),
    /// WebSocket upgrade sent; `client_frame` is the first client frame's facts.
    WebSocket {
        upgraded: bool,
        client_frame: Option<FrameFacts>,
    },
}

/// Per-flow state.
#[derive(Debug, Default, Clone)]
pub struct State {
    mode: Mode,
}

/// The facts of one WebSocket frame start (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameFacts {
    pub opcode: u8,
    pub masked: bool,
    /// Declared payload length.
    pub payload_len: u64,
    /// Statistics of the payload bytes present in this segment (unmasked).
    pub stats: ByteStats,
    /// Exemption of those bytes (None = fully encrypted).
    pub exempt: bool,
}

/// Parses a WebSocket frame header at the start of `b` (RFC 6455 §5.2: FIN/RSV/opcode, MASK and
/// 7-bit length, 16- or 64-bit extended length, 4-byte masking key) and measures the payload
/// bytes present.
pub fn parse_ws_frame(b: &[u8]) -> Option<FrameFacts> {
    let (&b0, rest) = b.split_first()?;
    let (&b1, mut rest) = rest.split_first()?;
    let opcode = b0 & 0x0f;
    let masked = b1 & 0x80 != 0;
    let payload_len = match b1 & 0x7f {
        126 => {
            let (l, r) = rest.split_at_checked(2)?;
            rest = r;
            u64::from(u16::from_be_bytes([*l.first()?, *l.get(1)?]))
        }
        127 => {
            let (l, r) = rest.split_at_checked(8)?;
            rest = r;
            u64::from_be_bytes(l.try_into().ok()?)
        }
        n => u64::from(n),
    };
    let (stats, exempt) = if masked {
        let (k, r) = rest.split_at_checked(4)?;
        let key: [u8; 4] = k.try_into().ok()?;
        let avail = r.get(
            ..usize::try_from(payload_len)
                .unwrap_or(usize::MAX)
                .min(r.len()),
        )?;
        let s = ByteStats::of_masked(avail, key);
        (s, s.exemption().is_some())
    } else {
        let avail = rest.get(
            ..usize::try_from(payload_len)
                .unwrap_or(usize::MAX)
                .min(rest.len()),
        )?;
        let (s, ex) = entropy::classify(avail);
        (s, ex.is_some())
    };
    Some(FrameFacts {
        opcode,
        masked,
        payload_len,
        stats,
        exempt,
    })
}

/// End of an HTTP header block (`\r\n\r\n`), as the offset after it.
fn header_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// True when an HTTP/1.1 request asks for a WebSocket upgrade (RFC 6455 §4.1: `GET`, an
/// `Upgrade` header containing `websocket`).
fn is_ws_upgrade_request(b: &[u8]) -> bool {
    b.starts_with(b"GET ")
        && contains_ci(
            b.get(..header_end(b).unwrap_or(b.len()))
                .unwrap_or_default(),
            b"upgrade: websocket",
        )
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Step when the first client frame is fully encrypted and VMess-sized.
fn client_frame_ok(f: &FrameFacts) -> bool {
    f.opcode == 2
        && f.masked
        && f.payload_len >= VMESS_AEAD_MIN_REQUEST as u64
        && f.stats.len >= MIN_WS_SAMPLE
        && !f.exempt
}

impl State {
    fn observe_tls(t: &mut TlsPath, p: &Payload<'_>) -> Step {
        match p.direction {
            Direction::ToServer => {
                let mut records: [(u8, usize); 8] = [(0, 0); 8];
                let mut n = 0;
                t.client.push(p.bytes, usize::from(p.cut), |ct, len| {
                    if let Some(slot) = records.get_mut(n) {
                        *slot = (ct, len);
                        n += 1;
                    }
                });
                if t.client.lost_some && t.second_data.is_none() {
                    // Which client record is which is what the signature rests on.
                    t.failed = true;
                    return Step::NotThis;
                }
                for &(ct, len) in records.iter().take(n) {
                    let after_ccs = t.client_last == Some(CT_CCS);
                    t.client_last = Some(ct);
                    if ct != CT_APPLICATION_DATA {
                        continue;
                    }
                    // A protected record right after the client's ChangeCipherSpec: TLS 1.3,
                    // where every protected record is application data, the client's Finished
                    // included (RFC 8446 §5, D.4), while TLS 1.2 sends its Finished as a
                    // handshake record (RFC 5246 §7.4.9). This tells the version when a
                    // snap length hid the server's first records.
                    if after_ccs && t.client_app_records == 0 {
                        t.tls13 = true;
                    }
                    t.client_app_records = t.client_app_records.saturating_add(1);
                    // In TLS 1.3 the client's first protected record is its own Finished.
                    if t.tls13 && t.client_app_records == 1 {
                        continue;
                    }
                    if t.first_data.is_none() {
                        t.first_data = Some(len);
                    } else if t.second_data.is_none() {
                        t.second_data = Some(len);
                    }
                }
            }
            Direction::ToClient => {
                if p.nth_in_direction == 0 {
                    t.cipher = server_hello_cipher(p.bytes);
                }
                let mut app = 0usize;
                let mut recs = 0usize;
                t.server.push(p.bytes, usize::from(p.cut), |ct, len| {
                    if ct == CT_APPLICATION_DATA {
                        app += len;
                        recs += 1;
                    }
                });
                if app > 0 && t.client_app_records == 0 {
                    t.tls13 = true;
                }
                if t.first_data.is_some() && t.second_data.is_none() {
                    t.server_after += app;
                    t.server_records_after += recs;
                }
            }
        }
        if t.client.broken || t.server.broken {
            t.failed = true;
            return Step::NotThis;
        }
        let (Some(first), Some(second)) = (t.first_data, t.second_data) else {
            return Step::NeedMore;
        };
        let Some(overhead) = outer_overhead(t.tls13, t.cipher) else {
            return Step::NotThis;
        };
        let (Some(inner_hello), Some(inner_fin)) =
            (first.checked_sub(overhead), second.checked_sub(overhead))
        else {
            return Step::NotThis;
        };
        if inner_hello < MIN_INNER_CLIENT_HELLO || t.server_after < MIN_INNER_SERVER_FLIGHT {
            return Step::NotThis;
        }
        let Some(framing) = finished_framing(inner_fin) else {
            return Step::NotThis;
        };
        let mut v = Verdict::new(Confidence::Statistical)
            .fact("tls_in_tls", true)
            .fact("outer_tls13", t.tls13)
            .fact("first_data_record", first)
            .fact("inner_server_flight", t.server_after)
            .fact("server_records", t.server_records_after)
            .fact("finished_record", second)
            .fact("inner_finished_flight", inner_fin);
        if t.server.lost_some {
            // A snap length hid some server records: the flight is at least this long.
            v.evidence.push("server_records_unseen", true);
        }
        v.obfuscated = true;
        match framing {
            Framing::Vmess(o) => v = v.fact("vmess_chunk_overhead", o),
            Framing::Raw => {
                v.protocol = Some("tls");
            }
        }
        Step::Match(v)
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        match &mut self.mode {
            Mode::Start => {
                if p.direction != Direction::ToServer {
                    return Step::NotThis;
                }
                if matches!(p.bytes, [CT_HANDSHAKE, 3, _, _, _, 1, ..]) {
                    let mut t = Box::<TlsPath>::default();
                    let step = Self::observe_tls(&mut t, p);
                    self.mode = Mode::Tls(t);
                    step
                } else if is_ws_upgrade_request(p.bytes) {
                    // A frame may follow the request in the same segment only after the 101;
                    // clients wait for it (RFC 6455 §4.1), so nothing else to read here.
                    self.mode = Mode::WebSocket {
                        upgraded: false,
                        client_frame: None,
                    };
                    Step::NeedMore
                } else {
                    Step::NotThis
                }
            }
            Mode::Tls(t) => Self::observe_tls(t, p),
            Mode::WebSocket {
                upgraded,
                client_frame,
            } => match p.direction {
                Direction::ToClient if !*upgraded => {
                    if !p.bytes.starts_with(b"HTTP/1.1 101") {
                        return Step::NotThis;
                    }
                    *upgraded = true;
                    // The server's first frame may share the segment with the 101 response.
                    match header_end(p.bytes)
                        .and_then(|e| p.bytes.get(e..))
                        .filter(|r| !r.is_empty())
                    {
                        Some(rest) => ws_server_frame(client_frame, rest),
                        None => Step::NeedMore,
                    }
                }
                Direction::ToClient => ws_server_frame(client_frame, p.bytes),
                Direction::ToServer if !*upgraded => Step::NotThis,
                Direction::ToServer => {
                    if client_frame.is_some() {
                        return Step::NeedMore;
                    }
                    match parse_ws_frame(p.bytes) {
                        Some(f) if client_frame_ok(&f) => {
                            *client_frame = Some(f);
                            Step::NeedMore
                        }
                        _ => Step::NotThis,
                    }
                }
            },
        }
    }
}

/// Judges the server's first frame once the client's first frame passed.
fn ws_server_frame(client_frame: &Option<FrameFacts>, b: &[u8]) -> Step {
    let Some(c) = client_frame else {
        // The server spoke first after the upgrade: not a VMess exchange.
        return Step::NotThis;
    };
    match parse_ws_frame(b) {
        Some(s) if s.opcode == 2 && !s.masked && s.stats.len >= MIN_WS_REPLY && !s.exempt => {
            let mut v = Verdict::new(Confidence::Statistical)
                .fact("websocket_upgrade", true)
                .fact("first_frame_len", c.payload_len)
                .fact("popcount_avg", c.stats.popcount_avg())
                .fact("printable_prefix", c.stats.printable_prefix)
                .fact("printable_frac", c.stats.printable_frac())
                .fact("longest_printable_run", c.stats.longest_printable_run)
                .fact("reply_frame_len", s.payload_len)
                .fact("reply_popcount_avg", s.stats.popcount_avg());
            v.obfuscated = true;
            Step::Match(v)
        }
        _ => Step::NotThis,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// tls_heur__vmess-websocket.pcapng frame 23: the first 72 bytes of the client's first
    /// WebSocket frame (binary, masked, 691-byte payload = VMess AEAD request).
    const WS_CLIENT_FRAME: [u8; 72] = [
        0x82, 0xfe, 0x02, 0xb3, 0x09, 0x50, 0x56, 0xf6, 0x0f, 0x51, 0x45, 0x52, 0xeb, 0xec, 0x06,
        0x59, 0x62, 0x4d, 0x57, 0xc4, 0x42, 0x31, 0xab, 0x20, 0x89, 0xaf, 0x65, 0xa5, 0x9f, 0x34,
        0xe0, 0x38, 0x6c, 0x40, 0xb0, 0x59, 0x9b, 0x4a, 0xb9, 0xad, 0x15, 0xf5, 0x7b, 0x08, 0xa6,
        0x29, 0xf2, 0x8e, 0x0c, 0x79, 0xf3, 0xcf, 0xd6, 0x22, 0xf5, 0x90, 0x74, 0xfb, 0x15, 0xa9,
        0x12, 0x30, 0xc6, 0x60, 0x8f, 0xc5, 0xd1, 0x7d, 0x08, 0x69, 0xdf, 0x41,
    ];
    /// Same file, frame 31: the first 72 bytes of the server's first frame (binary, 2048 bytes).
    const WS_SERVER_FRAME: [u8; 72] = [
        0x82, 0x7e, 0x08, 0x00, 0x2a, 0x51, 0x8d, 0xfb, 0x07, 0x3e, 0x27, 0x1b, 0x17, 0x64, 0x7b,
        0x21, 0x16, 0x64, 0xa8, 0xa5, 0xc8, 0x76, 0xf6, 0xe6, 0x50, 0x70, 0x49, 0x0b, 0x1d, 0x24,
        0xe6, 0xbc, 0xc5, 0x26, 0x0b, 0xd2, 0x5d, 0x7e, 0xe4, 0x12, 0xed, 0xf2, 0xe1, 0x38, 0xc4,
        0xa8, 0x0a, 0xc0, 0xf2, 0x66, 0x38, 0xc2, 0x24, 0xdc, 0x4f, 0x0c, 0x79, 0xe5, 0x1d, 0xd5,
        0x2e, 0x99, 0xa1, 0xbc, 0x12, 0xd6, 0x45, 0x9a, 0x71, 0x2b, 0xd2, 0xff,
    ];
    /// Same file, frame 17 (Sec-WebSocket-Key shortened) and frame 19.
    const WS_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1234\r\nUser-Agent: Go-http-client/1.1\r\nConnection: Upgrade\r\nSec-WebSocket-Key: kZZIwDrnHmWYxjh7a/vl8w==\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n\r\n";
    const WS_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: CD1U0JDcEhm/1Rbp3PwxoCiQ9IU=\r\n\r\n";

    fn pl(direction: Direction, nth_in_direction: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes)
            .nth_in_direction(nth_in_direction)
            .ports(33702, 1234)
    }

    fn run(seq: &[(Direction, Vec<u8>)]) -> Step {
        let mut s = State::default();
        let mut n = [0u8; 2];
        for (d, b) in seq {
            let i = d.index();
            let step = s.observe(&pl(*d, n[i], b));
            n[i] += 1;
            if step != Step::NeedMore {
                return step;
            }
        }
        Step::NeedMore
    }

    /// A TLS record with the given header and a zero-filled body.
    fn record(ct: u8, len: usize) -> Vec<u8> {
        let mut r = vec![ct, 3, 3, (len >> 8) as u8, len as u8];
        r.resize(5 + len, 0);
        r
    }

    /// The record sequence of tls_heur__vmess-tcp-tls.pcapng (port 1234): frames 29, 31, 34,
    /// 36, 45-52, 61 — real record types and lengths, bodies zeroed.
    fn vmess_tls_sequence(second_client: usize) -> Vec<(Direction, Vec<u8>)> {
        let mut ch = record(22, 273);
        ch[5] = 1;
        let mut sh = record(22, 122);
        sh[5] = 2;
        sh.extend(record(20, 1));
        sh.extend(record(23, 32));
        sh.extend(record(23, 754));
        sh.extend(record(23, 128));
        sh.extend(record(23, 53));
        let mut fin = record(20, 1);
        fin.extend(record(23, 53));
        vec![
            (Direction::ToServer, ch),
            (Direction::ToClient, sh),
            (Direction::ToServer, fin),
            (Direction::ToServer, record(23, 658)),
            (Direction::ToClient, record(23, 1203)),
            (Direction::ToClient, record(23, 879)),
            (Direction::ToClient, record(23, 2065)),
            (Direction::ToServer, record(23, second_client)),
        ]
    }

    #[test]
    fn vmess_over_tls_signature() {
        let Step::Match(v) = run(&vmess_tls_sequence(99)) else {
            panic!("no match")
        };
        assert_eq!(v.protocol, None);
        assert!(v.obfuscated);
        assert_eq!(
            v.evidence
                .get("vmess_chunk_overhead")
                .map(|f| f.to_string()),
            Some("2".into())
        );
    }

    #[test]
    fn raw_tls_in_tls_is_tls_obfuscated() {
        // 97 - 17 = 80: an unframed inner Finished flight (Trojan, VLESS).
        let Step::Match(v) = run(&vmess_tls_sequence(97)) else {
            panic!("no match")
        };
        assert_eq!(v.protocol, Some("tls"));
        assert!(v.obfuscated);
    }

    /// `seq` as a capture with a snap length keeps it: each payload cut to its first `keep`
    /// bytes.
    fn run_cut(keep: usize, seq: &[(Direction, Vec<u8>)]) -> Step {
        let mut s = State::default();
        let mut n = [0u8; 2];
        for (d, b) in seq {
            let i = d.index();
            let kept = keep.min(b.len());
            let p = pl(*d, n[i], &b[..kept]).cut((b.len() - kept) as u16);
            let step = s.observe(&p);
            n[i] += 1;
            if step != Step::NeedMore {
                return step;
            }
        }
        Step::NeedMore
    }

    #[test]
    fn signature_holds_in_a_capture_cut_to_a_snap_length() {
        // 30 bytes kept of each payload (96-byte frames): the server's first flight hides its
        // later record headers, the version comes from the client's CCS and Finished, and
        // the walk picks up again at the next server payload.
        let Step::Match(v) = run_cut(30, &vmess_tls_sequence(99)) else {
            panic!("no match")
        };
        let fact = |k: &str| v.evidence.get(k).map(|f| f.to_string());
        assert_eq!(fact("outer_tls13"), Some("true".into()));
        assert_eq!(fact("first_data_record"), Some("658".into()));
        assert_eq!(fact("inner_server_flight"), Some("4147".into()));
        assert_eq!(fact("server_records_unseen"), Some("true".into()));
        assert_eq!(fact("vmess_chunk_overhead"), Some("2".into()));
        // Whole, nothing went unseen.
        let Step::Match(v) = run(&vmess_tls_sequence(99)) else {
            panic!("no match")
        };
        assert_eq!(v.evidence.get("server_records_unseen"), None);
    }

    #[test]
    fn client_records_unseen_by_a_cut_end_the_signature() {
        // The client's CCS and Finished and its first data record in one payload, cut inside
        // the Finished: where the data record starts is not known, so neither which is which.
        let mut seq = vmess_tls_sequence(99);
        let data = seq.remove(3).1;
        seq[2].1.extend(data);
        assert_eq!(run_cut(30, &seq), Step::NotThis);
    }

    #[test]
    fn record_walker_on_the_wire() {
        let walk = |payloads: &[(Vec<u8>, usize)]| {
            let mut w = RecordWalker::default();
            let mut seen = Vec::new();
            for (b, cut) in payloads {
                w.push(b, *cut, |ct, len| seen.push((ct, len)));
            }
            (seen, w.lost, w.lost_some)
        };
        let two = [record(23, 10), record(23, 4)].concat();
        // Both headers kept, the second body cut: in step.
        assert_eq!(
            walk(&[(two[..21].to_vec(), 3)]),
            (vec![(23, 10), (23, 4)], false, false)
        );
        // The second header cut: lost until a payload starts with a header.
        let (seen, lost, _) = walk(&[(two[..12].to_vec(), 12)]);
        assert_eq!((seen, lost), (vec![(23, 10)], true));
        let (seen, lost, lost_some) = walk(&[
            (two[..12].to_vec(), 12),
            (vec![0; 9], 0),
            (record(22, 3), 0),
        ]);
        assert_eq!(
            (seen, lost, lost_some),
            (vec![(23, 10), (22, 3)], false, true)
        );
        // A body running on past the cut into the next payload.
        let (seen, lost, _) = walk(&[(record(23, 100)[..20].to_vec(), 50), (vec![0; 35], 0)]);
        assert_eq!((seen, lost), (vec![(23, 100)], false));
    }

    #[test]
    fn ordinary_tls_is_not_this() {
        // An HTTP/2 client's next record after the response (e.g. SETTINGS ack 9 + 17).
        assert_eq!(run(&vmess_tls_sequence(26)), Step::NotThis);
        assert_eq!(run(&vmess_tls_sequence(200)), Step::NotThis);
        // The right size, but sent before any server data (an HTTP/2 client's second write).
        let mut seq = vmess_tls_sequence(99);
        let last = seq.pop().unwrap();
        seq.insert(4, last);
        assert_eq!(run(&seq), Step::NotThis);
    }

    #[test]
    fn framing_sets_are_disjoint() {
        for &b in &INNER_FINISHED_FLIGHTS {
            for &o in &VMESS_CHUNK_OVERHEADS {
                assert!(!INNER_FINISHED_FLIGHTS.contains(&(b + o)), "{b}+{o}");
            }
        }
    }

    #[test]
    fn vmess_over_websocket() {
        let seq = vec![
            (Direction::ToServer, WS_REQUEST.to_vec()),
            (Direction::ToClient, WS_101.to_vec()),
            (Direction::ToServer, WS_CLIENT_FRAME.to_vec()),
            (Direction::ToClient, WS_SERVER_FRAME.to_vec()),
        ];
        let Step::Match(v) = run(&seq) else {
            panic!("no match")
        };
        assert!(v.obfuscated);
        assert_eq!(v.protocol, None);
        assert_eq!(
            v.evidence.get("first_frame_len").map(|f| f.to_string()),
            Some("691".into())
        );
    }

    #[test]
    fn websocket_carrying_ssh_is_not_vmess() {
        // wstunnel: the first frame carries the SSH banner (masked with a zero key here).
        let banner = b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.1\r\n";
        let mut frame = vec![0x82, 0x80 | banner.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(banner);
        let seq = vec![
            (Direction::ToServer, WS_REQUEST.to_vec()),
            (Direction::ToClient, WS_101.to_vec()),
            (Direction::ToServer, frame),
        ];
        assert_eq!(run(&seq), Step::NotThis);
        // A plain HTTP GET without upgrade.
        assert_eq!(
            run(&[(
                Direction::ToServer,
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()
            )]),
            Step::NotThis
        );
    }

    #[test]
    fn ws_frame_header_lengths() {
        let f = parse_ws_frame(&WS_CLIENT_FRAME).unwrap();
        assert_eq!((f.opcode, f.masked, f.payload_len), (2, true, 691));
        assert!(!f.exempt);
        let f = parse_ws_frame(&WS_SERVER_FRAME).unwrap();
        assert_eq!((f.opcode, f.masked, f.payload_len), (2, false, 2048));
        assert_eq!(parse_ws_frame(&[0x82]), None);
    }

    proptest! {
        #[test]
        fn never_panics_within_budget(chunks in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..600)), 0..16)) {
            let mut s = State::default();
            let mut n = [0u8; 2];
            for (to_server, b) in &chunks {
                let d = if *to_server { Direction::ToServer } else { Direction::ToClient };
                if n[d.index()] >= SPEC.payload_budget { continue; }
                let step = s.observe(&pl(d, n[d.index()], b));
                n[d.index()] += 1;
                if step != Step::NeedMore { break; }
            }
            let _ = parse_ws_frame(chunks.first().map(|c| c.1.as_slice()).unwrap_or_default());
            let _ = server_hello_cipher(chunks.first().map(|c| c.1.as_slice()).unwrap_or_default());
        }
    }
}
