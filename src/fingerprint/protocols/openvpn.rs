//! OpenVPN (TCP and UDP), recognised from its wire format as described in the OpenVPN protocol
//! documentation (`doc/doxygen/doc_protocol_overview.h`, "OpenVPN Protocol") and the
//! "openvpn-rfc" protocol draft.
//!
//! Wire facts used here:
//! - Over TCP every packet is prefixed with its length, 2 bytes big-endian; over UDP one
//!   datagram is one packet.
//! - Byte 0: `opcode` in the top 5 bits, `key_id` in the low 3 bits. Opcodes:
//!   1 HARD_RESET_CLIENT_V1, 2 HARD_RESET_SERVER_V1, 3 SOFT_RESET_V1, 4 CONTROL_V1, 5 ACK_V1,
//!   6 DATA_V1, 7 HARD_RESET_CLIENT_V2, 8 HARD_RESET_SERVER_V2, 9 DATA_V2,
//!   10 HARD_RESET_CLIENT_V3 (tls-crypt-v2), 11 CONTROL_WKC_V1. Hard resets start a key
//!   exchange and always use key id 0.
//! - Control packets (every opcode except 6 and 9): bytes 1..9 are the sender's 8-byte
//!   session id. Then, depending on the configured control-channel protection:
//!   * none: `ack_len(1) ack_pid(4 each) [remote_session_id(8) if ack_len > 0]
//!     [message_pid(4) payload]` (ACK_V1 has no message pid and no payload);
//!   * tls-auth: `hmac(16|20|32|64) replay_pid(4) net_time(4)` then the same as "none";
//!   * tls-crypt: `replay_pid(4) net_time(4) tag(32)` then the rest encrypted.
//!
//!   `ack_len` is at most 8 (OpenVPN's `RELIABLE_ACK_SIZE`). The replay packet id counts up
//!   by one for every control packet a side sends and `net_time` stays the same.
//! - The server's hard reset acknowledges the client's with an ack array whose remote
//!   session id is the client's session id: the echo proves both sides speak OpenVPN.
//! - P_CONTROL_V1 payloads are a TLS byte stream in message-pid order; in TLS 1.2 the server's
//!   Certificate message is plaintext (RFC 5246 §7.4.2).
//! - DATA_V2: bytes 1..4 are the peer id assigned by the server, constant for the session;
//!   with an AEAD cipher a 4-byte packet id counting up from 1 follows.

use crate::fingerprint::facts::tls::{self as tlsfacts, TlsRecordBuffer};
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::{Direction, Transport};

/// Detector entry: plain OpenVPN over TCP or UDP.
pub static SPEC: Spec = Spec {
    name: "openvpn",
    family: Family::Vpn,
    transports: Transports::TCP_UDP,
    payload_budget: 32,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// OpenVPN opcodes (top 5 bits of byte 0).
pub mod opcode {
    pub const HARD_RESET_CLIENT_V1: u8 = 1;
    pub const HARD_RESET_SERVER_V1: u8 = 2;
    pub const SOFT_RESET_V1: u8 = 3;
    pub const CONTROL_V1: u8 = 4;
    pub const ACK_V1: u8 = 5;
    pub const DATA_V1: u8 = 6;
    pub const HARD_RESET_CLIENT_V2: u8 = 7;
    pub const HARD_RESET_SERVER_V2: u8 = 8;
    pub const DATA_V2: u8 = 9;
    pub const HARD_RESET_CLIENT_V3: u8 = 10;
    pub const CONTROL_WKC_V1: u8 = 11;

    /// Name used in evidence.
    pub fn name(op: u8) -> &'static str {
        match op {
            HARD_RESET_CLIENT_V1 => "HARD_RESET_CLIENT_V1",
            HARD_RESET_SERVER_V1 => "HARD_RESET_SERVER_V1",
            SOFT_RESET_V1 => "SOFT_RESET_V1",
            CONTROL_V1 => "CONTROL_V1",
            ACK_V1 => "ACK_V1",
            DATA_V1 => "DATA_V1",
            HARD_RESET_CLIENT_V2 => "HARD_RESET_CLIENT_V2",
            HARD_RESET_SERVER_V2 => "HARD_RESET_SERVER_V2",
            DATA_V2 => "DATA_V2",
            HARD_RESET_CLIENT_V3 => "HARD_RESET_CLIENT_V3",
            CONTROL_WKC_V1 => "CONTROL_WKC_V1",
            _ => "INVALID",
        }
    }

    /// A client's hard reset (starts a session).
    pub fn is_client_reset(op: u8) -> bool {
        matches!(
            op,
            HARD_RESET_CLIENT_V1 | HARD_RESET_CLIENT_V2 | HARD_RESET_CLIENT_V3
        )
    }

    /// A server's hard reset (answers a client's).
    pub fn is_server_reset(op: u8) -> bool {
        matches!(op, HARD_RESET_SERVER_V1 | HARD_RESET_SERVER_V2)
    }

    /// Every opcode except the two data opcodes carries a session id.
    pub fn is_control(op: u8) -> bool {
        matches!(op, 1..=11) && op != DATA_V1 && op != DATA_V2
    }
}

/// Largest TCP frame accepted (OpenVPN packets are bounded by the link MTU; this leaves room
/// for large `tun-mtu` settings).
pub const MAX_FRAME: usize = 12 * 1024;
/// Largest `ack_len` (OpenVPN `RELIABLE_ACK_SIZE`).
pub const MAX_ACKS: u8 = 8;
/// A V1/V2 hard reset carries at most a few early-negotiation TLVs (OpenVPN 2.6
/// `EARLY_NEG_FLAGS` is 6 bytes); anything longer is not a hard reset.
pub const MAX_RESET_PAYLOAD: usize = 64;
/// `net_time` values before 2001-09-09 (1e9 s) are not a running clock.
const MIN_NET_TIME: u32 = 1_000_000_000;
/// Two sides' `net_time` may differ by clock skew; more than a day is not one session.
const MAX_TIME_SKEW: u32 = 86_400;
/// Largest step between two replay packet ids of one side (losses, reordering).
const MAX_PID_STEP: u32 = 32;
/// Length of the tls-crypt authentication tag (HMAC-SHA256).
pub const TLS_CRYPT_TAG: usize = 32;

/// Byte 0 of every OpenVPN packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub opcode: u8,
    pub key_id: u8,
}

/// Parses byte 0: opcode 1..=11, and key id 0 for hard resets.
pub fn parse_header(b: &[u8]) -> Option<Header> {
    let b0 = *b.first()?;
    let h = Header {
        opcode: b0 >> 3,
        key_id: b0 & 0x07,
    };
    let valid = matches!(h.opcode, 1..=11)
        && (h.key_id == 0
            || !(opcode::is_client_reset(h.opcode) || opcode::is_server_reset(h.opcode)));
    valid.then_some(h)
}

/// Control-channel protection: where the session id is followed by an HMAC, a tls-crypt
/// header, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No `tls-auth`/`tls-crypt`.
    Plain,
    /// `tls-auth` with an HMAC of this many bytes (MD5 16, SHA1 20, SHA256 32, SHA512 64).
    Hmac(u8),
    /// `tls-crypt` (v1 or v2).
    Crypt,
}

/// Every layout tried, in the order of the bits of a layout mask.
pub const AUTHS: [Auth; 6] = [
    Auth::Plain,
    Auth::Hmac(16),
    Auth::Hmac(20),
    Auth::Hmac(32),
    Auth::Hmac(64),
    Auth::Crypt,
];
const ALL_AUTHS: u8 = (1 << AUTHS.len()) - 1;

/// Replay protection header of tls-auth / tls-crypt packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    pub packet_id: u32,
    pub net_time: u32,
}

/// One control packet, read under one [`Auth`] layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control<'a> {
    pub header: Header,
    pub session_id: [u8; 8],
    pub replay: Option<Replay>,
    /// Number of acknowledged packet ids (0 when encrypted by tls-crypt).
    pub ack_count: u8,
    /// The peer's session id, present when `ack_count > 0`.
    pub remote_session: Option<[u8; 8]>,
    /// Reliable-layer message packet id (absent in ACK_V1 and under tls-crypt).
    pub message_id: Option<u32>,
    /// Reliable-layer payload (a piece of the TLS stream in CONTROL_V1).
    pub payload: &'a [u8],
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (v, rest) = r.split_at_checked(n)?;
    *r = rest;
    Some(v)
}

fn take_u32(r: &mut &[u8]) -> Option<u32> {
    let b = take(r, 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn take_id(r: &mut &[u8]) -> Option<[u8; 8]> {
    take(r, 8)?.try_into().ok()
}

/// Reads one control packet (without TCP length prefix) under the layout `auth`; `None` when
/// it is not a well-formed control packet in that layout. Checks: session id present,
/// replay packet id non-zero and `net_time` a plausible clock (tls-auth/crypt), `ack_len` at
/// most 8, ACK_V1 ending exactly after its ack array, hard resets carrying at most
/// [`MAX_RESET_PAYLOAD`] bytes, V3/WKC opcodes only under tls-crypt.
pub fn parse_control(b: &[u8], auth: Auth) -> Option<Control<'_>> {
    parse_control_on_wire(b, b.len(), auth)
}

/// [`parse_control`] of a packet `wire_len` bytes long on the wire, of which `b` may hold only
/// the start (a snap length cut it). The session id and the layout's authentication fields
/// must be kept; the fields after them are read as far as they were kept, and those that
/// were not are unknown (`remote_session` and `message_id` `None`, the payload what was
/// kept). Lengths (the tls-crypt minimum, ACK_V1's end, a hard reset's payload) are checked
/// against `wire_len`.
pub fn parse_control_on_wire(b: &[u8], wire_len: usize, auth: Auth) -> Option<Control<'_>> {
    let missing = wire_len.saturating_sub(b.len());
    let header = parse_header(b)?;
    let op = header.opcode;
    if !opcode::is_control(op) {
        return None;
    }
    let mut r = b.get(1..)?;
    let session_id = take_id(&mut r)?;
    let replay = match auth {
        Auth::Plain => None,
        Auth::Hmac(n) => {
            take(&mut r, usize::from(n))?;
            Some(read_replay(&mut r)?)
        }
        Auth::Crypt => {
            let replay = read_replay(&mut r)?;
            // The tag, then encrypted: ack_len(1) + ack(4) + remote session(8) at least for
            // ACK_V1, ack_len(1) + message pid(4) at least for the others. None of it need be
            // kept, but it must have been on the wire.
            let min = if op == opcode::ACK_V1 { 13 } else { 5 };
            if r.len() + missing < TLS_CRYPT_TAG + min {
                return None;
            }
            return Some(Control {
                header,
                session_id,
                replay: Some(replay),
                ack_count: 0,
                remote_session: None,
                message_id: None,
                payload: &[],
            });
        }
    };
    if matches!(op, opcode::HARD_RESET_CLIENT_V3 | opcode::CONTROL_WKC_V1) {
        return None;
    }
    // The packet as far as its acknowledgements (ACK_V1 ends there).
    let without_message = |ack_count: u8, remote_session: Option<[u8; 8]>| Control {
        header,
        session_id,
        replay,
        ack_count,
        remote_session,
        message_id: None,
        payload: &[],
    };
    // A cut packet may end among the fields that follow: what was kept is checked, the rest
    // is unknown.
    let cut = |ack_count: u8, remote_session: Option<[u8; 8]>| {
        (missing > 0).then(|| without_message(ack_count, remote_session))
    };
    let Some((&ack_count, rest)) = r.split_first() else {
        return cut(0, None);
    };
    r = rest;
    if ack_count > MAX_ACKS {
        return None;
    }
    if take(&mut r, 4 * usize::from(ack_count)).is_none() {
        return cut(ack_count, None);
    }
    let remote_session = if ack_count > 0 {
        match take_id(&mut r) {
            Some(id) => Some(id),
            None => return cut(ack_count, None),
        }
    } else {
        None
    };
    if op == opcode::ACK_V1 {
        if ack_count == 0 || r.len() + missing != 0 {
            return None;
        }
        return Some(without_message(ack_count, remote_session));
    }
    let Some(message_id) = take_u32(&mut r) else {
        return cut(ack_count, remote_session);
    };
    if (opcode::is_client_reset(op) || opcode::is_server_reset(op))
        && r.len() + missing > MAX_RESET_PAYLOAD
    {
        return None;
    }
    Some(Control {
        header,
        session_id,
        replay,
        ack_count,
        remote_session,
        message_id: Some(message_id),
        payload: r,
    })
}

fn read_replay(r: &mut &[u8]) -> Option<Replay> {
    let packet_id = take_u32(r)?;
    let net_time = take_u32(r)?;
    (packet_id != 0 && net_time >= MIN_NET_TIME).then_some(Replay {
        packet_id,
        net_time,
    })
}

/// What a TCP payload did to the frame stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Ok,
    /// A length of 0 or above [`MAX_FRAME`]: not OpenVPN's TCP framing.
    Broken,
    /// The callback asked to stop.
    Stopped,
    /// A snap length cut the stream where a frame boundary lay out of sight: where the later
    /// frames start is unknown, so no more frames come (the ones before stand).
    Lost,
}

/// Reassembles OpenVPN's TCP framing (`length(2, big-endian) packet`) across segments,
/// copying only a frame split over segments (at most [`MAX_FRAME`] + 2 bytes).
#[derive(Debug, Default, Clone)]
pub(crate) struct TcpFramer {
    buf: Vec<u8>,
    broken: bool,
    /// See [`Framing::Lost`].
    lost: bool,
}

impl TcpFramer {
    /// True when the bytes fed so far end on a known frame boundary.
    pub(crate) fn at_boundary(&self) -> bool {
        self.buf.is_empty() && !self.lost
    }

    /// Feeds one segment, of which the capture kept `bytes` and left out the `cut` bytes that
    /// followed on the wire (a snap length). `f` gets every complete frame (without its
    /// length) with the bytes of it that were left out (0: whole), and returns false to stop.
    ///
    /// Frames wholly kept come as they are. The frame the cut falls in comes as far as it was
    /// kept when its length field was kept and it ends exactly where the segment ended on the
    /// wire, as when OpenVPN writes one packet per segment; a cut anywhere else hides where
    /// the next frame starts ([`Framing::Lost`]).
    ///
    /// Once lost, the framing picks up again at a segment that holds exactly one frame on the
    /// wire (its length field gives the segment's wire length minus 2): OpenVPN sends each
    /// handshake packet with one write, so such segments are common, while a segment that
    /// starts inside a frame of encrypted bytes agrees with its own length by chance about
    /// once in 2^16.
    pub(crate) fn feed(
        &mut self,
        bytes: &[u8],
        cut: usize,
        mut f: impl FnMut(&[u8], usize) -> bool,
    ) -> Framing {
        if self.broken {
            return Framing::Broken;
        }
        if self.lost {
            return self.resync(bytes, cut, &mut f);
        }
        match self.feed_kept(bytes, &mut f) {
            Framing::Ok if cut > 0 => self.end_cut(cut, &mut f),
            framing => framing,
        }
    }

    /// A segment after the framing was lost: taken when it is exactly one frame on the wire.
    fn resync(
        &mut self,
        bytes: &[u8],
        cut: usize,
        f: &mut impl FnMut(&[u8], usize) -> bool,
    ) -> Framing {
        let len = bytes
            .get(..2)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])));
        match len {
            Some(len) if len != 0 && len <= MAX_FRAME && 2 + len == bytes.len() + cut => {
                self.lost = false;
                deliver(bytes.get(2..).unwrap_or_default(), cut, f)
            }
            _ => Framing::Lost,
        }
    }

    /// The frame in progress when a segment's last `cut` bytes were left out.
    fn end_cut(&mut self, cut: usize, f: &mut impl FnMut(&[u8], usize) -> bool) -> Framing {
        let frame_len = self
            .buf
            .get(..2)
            .map(|l| 2 + usize::from(u16::from_be_bytes([l[0], l[1]])));
        match frame_len {
            Some(len) if len.checked_sub(self.buf.len()) == Some(cut) => {
                let framing = deliver(self.buf.get(2..).unwrap_or_default(), cut, f);
                self.buf.clear();
                framing
            }
            _ => {
                self.buf.clear();
                self.lost = true;
                Framing::Lost
            }
        }
    }

    /// Frames of bytes the capture kept, the last one possibly left in `buf` unfinished.
    fn feed_kept(&mut self, mut bytes: &[u8], f: &mut impl FnMut(&[u8], usize) -> bool) -> Framing {
        while !self.buf.is_empty() && !bytes.is_empty() {
            if self.buf.len() < 2 {
                let take = (2 - self.buf.len()).min(bytes.len());
                let (head, rest) = bytes.split_at(take);
                self.buf.extend_from_slice(head);
                bytes = rest;
                continue;
            }
            let Some(len) = self
                .buf
                .get(..2)
                .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            else {
                break;
            };
            if len == 0 || len > MAX_FRAME {
                self.broken = true;
                return Framing::Broken;
            }
            let need = (2 + len).saturating_sub(self.buf.len());
            let take = need.min(bytes.len());
            let (head, rest) = bytes.split_at(take);
            self.buf.extend_from_slice(head);
            bytes = rest;
            if self.buf.len() == 2 + len {
                let go = f(self.buf.get(2..).unwrap_or_default(), 0);
                self.buf.clear();
                if !go {
                    return Framing::Stopped;
                }
            }
        }
        while !bytes.is_empty() {
            let Some(l) = bytes.get(..2) else {
                self.buf.extend_from_slice(bytes);
                break;
            };
            let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
            if len == 0 || len > MAX_FRAME {
                self.broken = true;
                return Framing::Broken;
            }
            match bytes.get(2..2 + len) {
                Some(frame) => {
                    bytes = bytes.get(2 + len..).unwrap_or_default();
                    if !f(frame, 0) {
                        return Framing::Stopped;
                    }
                }
                None => {
                    self.buf.extend_from_slice(bytes);
                    break;
                }
            }
        }
        Framing::Ok
    }
}

/// Hands a frame a cut fell in to `f`, unless nothing of it beyond its length was kept: a
/// frame whose every byte is unknown tells a detector nothing, so it is passed over.
fn deliver(kept: &[u8], missing: usize, f: &mut impl FnMut(&[u8], usize) -> bool) -> Framing {
    if kept.is_empty() || f(kept, missing) {
        Framing::Ok
    } else {
        Framing::Stopped
    }
}

/// Certificate names of commercial VPN providers' OpenVPN servers, consulted when
/// [`crate::intel::lookup_name`] does not know a name of the server certificate.
#[derive(Debug, Clone, Copy)]
enum CertRule {
    /// A DNS name (subject CN or SAN) under this domain, matched on a label boundary.
    Domain(&'static str, &'static str),
    /// Exact (case-insensitive) issuer or subject organizationName.
    Organisation(&'static str, &'static str),
}

static CERT_RULES: &[CertRule] = &[
    // NordVPN: the CA certificate embedded in NordVPN's published OpenVPN configuration files
    // (downloads.nordcdn.com/configs) is "CN=NordVPN Root CA, O=NordVPN".
    CertRule::Organisation("NordVPN", "nordvpn"),
    // KeepSolid VPN Unlimited: www.vpnunlimitedapp.com is the service's own site (its user
    // manuals are published there).
    CertRule::Domain("vpnunlimitedapp.com", "vpnunlimited"),
];

fn domain_matches(host: &str, suffix: &str) -> bool {
    let host = host.trim_end_matches('.');
    let Some(cut) = host.len().checked_sub(suffix.len()) else {
        return false;
    };
    host.is_char_boundary(cut)
        && host
            .get(cut..)
            .is_some_and(|t| t.eq_ignore_ascii_case(suffix))
        && (cut == 0 || host.as_bytes().get(cut - 1) == Some(&b'.'))
}

/// The provider named by a server certificate: intel name rules on its DNS names first, then
/// [`CERT_RULES`].
fn provider_of(cert: &tlsfacts::CertificateFacts) -> Option<&'static str> {
    if let Some(p) = cert
        .names()
        .find_map(|n| crate::intel::lookup_name(n).and_then(|r| r.provider))
    {
        return Some(p);
    }
    CERT_RULES.iter().find_map(|rule| match *rule {
        CertRule::Domain(d, p) => cert.names().any(|n| domain_matches(n, d)).then_some(p),
        CertRule::Organisation(o, p) => cert
            .issuer_o
            .iter()
            .chain(cert.subject_o.iter())
            .any(|v| v.eq_ignore_ascii_case(o))
            .then_some(p),
    })
}

/// Facts of one direction of the flow.
#[derive(Debug, Default, Clone)]
struct Side {
    framer: TcpFramer,
    session: Option<[u8; 8]>,
    controls: u8,
    /// Layouts (bits of [`AUTHS`]) under which every control packet so far parsed.
    ok: u8,
    /// Per layout: first net_time and last replay packet id.
    replay: [Option<Replay>; 6],
    /// Per layout: the peer session id claimed by this side's acks.
    remote: [Option<[u8; 8]>; 6],
    /// Per layout: a CONTROL_V1 payload began with a TLS record header.
    tls_seen: u8,
    sent_client_reset: bool,
    sent_server_reset: bool,
    /// DATA_V2: first 4 bytes, packets, last AEAD packet id, packet ids counting up.
    data_head: Option<[u8; 4]>,
    data_count: u8,
    data_last_pid: Option<u32>,
    data_consistent: bool,
    /// TLS stream of CONTROL_V1 payloads under the chosen layout.
    tls: Option<TlsRecordBuffer>,
    next_message: Option<u32>,
    tls_broken: bool,
}

/// Per-flow state of the OpenVPN detector.
#[derive(Debug, Default, Clone)]
pub struct State {
    sides: [Side; 2],
    /// Opcodes seen (bit per opcode).
    opcodes: u16,
    packets: u16,
    /// Layout index under which a session id echo was seen.
    echo: Option<usize>,
    roles_reversed: bool,
    transport: Option<Transport>,
    /// TLS inside the control channel is finished with (certificate read, TLS 1.3, or no
    /// hope of reading it).
    tls_done: bool,
    cert_name: Option<String>,
    tls_version: Option<u16>,
    provider: Option<&'static str>,
    failed: bool,
    /// A packet was cut by a snap length (so a session id echo may be out of sight).
    cut_seen: bool,
}

impl State {
    /// Looks at one OpenVPN packet (TCP frame or UDP datagram). False: not OpenVPN.
    /// `missing`: bytes of the packet a snap length cut off (0 for a whole packet).
    fn packet(&mut self, dir: Direction, b: &[u8], missing: usize) -> bool {
        self.cut_seen |= missing > 0;
        let Some(h) = parse_header(b) else {
            return false;
        };
        self.packets = self.packets.saturating_add(1);
        self.opcodes |= 1 << h.opcode;
        let d = dir.index();
        if opcode::is_server_reset(h.opcode) && dir == Direction::ToServer
            || opcode::is_client_reset(h.opcode) && dir == Direction::ToClient
        {
            self.roles_reversed = true;
        }
        match h.opcode {
            opcode::DATA_V2 => {
                self.data_v2(d, b, missing);
                true
            }
            opcode::DATA_V1 => true,
            _ => self.control(d, h, b, missing),
        }
    }

    fn data_v2(&mut self, d: usize, b: &[u8], missing: usize) {
        let side = &mut self.sides[d];
        let (Some(head), Some(pid)) = (b.get(..4), b.get(4..8)) else {
            side.data_consistent = false;
            return;
        };
        let head: [u8; 4] = [head[0], head[1], head[2], head[3]];
        let pid = u32::from_be_bytes([pid[0], pid[1], pid[2], pid[3]]);
        // AEAD: opcode/peer id(4) packet id(4) tag(16) ciphertext; CBC: HMAC and IV. 20 bytes
        // is below both.
        let long_enough = b.len() + missing >= 24;
        match side.data_head {
            None => {
                side.data_head = Some(head);
                side.data_consistent = long_enough;
            }
            Some(h0) => {
                let step_ok = side
                    .data_last_pid
                    .is_some_and(|p| pid > p && pid - p <= MAX_PID_STEP);
                side.data_consistent &= h0 == head && long_enough && step_ok;
            }
        }
        side.data_last_pid = Some(pid);
        side.data_count = side.data_count.saturating_add(1);
    }

    fn control(&mut self, d: usize, h: Header, b: &[u8], missing: usize) -> bool {
        let Some(sid) = b.get(1..9).and_then(|s| <[u8; 8]>::try_from(s).ok()) else {
            return false;
        };
        {
            let side = &mut self.sides[d];
            match side.session {
                Some(s) if s != sid => {
                    if !opcode::is_client_reset(h.opcode) {
                        return false;
                    }
                    // A client restarting its session: forget this side's control facts.
                    let keep_framer = std::mem::take(&mut side.framer);
                    *side = Side {
                        framer: keep_framer,
                        ..Side::default()
                    };
                    side.session = Some(sid);
                    side.ok = ALL_AUTHS;
                    self.echo = None;
                }
                Some(_) => {}
                None => {
                    side.session = Some(sid);
                    side.ok = ALL_AUTHS;
                }
            }
            side.controls = side.controls.saturating_add(1);
            side.sent_client_reset |= opcode::is_client_reset(h.opcode);
            side.sent_server_reset |= opcode::is_server_reset(h.opcode);
        }
        let other = 1 - d;
        let other_session = self.sides[other].session;
        for (i, &auth) in AUTHS.iter().enumerate() {
            let bit = 1u8 << i;
            let side = &mut self.sides[d];
            if side.ok & bit == 0 {
                continue;
            }
            let Some(c) = parse_control_on_wire(b, b.len() + missing, auth) else {
                side.ok &= !bit;
                continue;
            };
            if let Some(r) = c.replay {
                match side.replay[i] {
                    None => side.replay[i] = Some(r),
                    Some(prev) => {
                        let step = r.packet_id.wrapping_sub(prev.packet_id);
                        let back = prev.packet_id.wrapping_sub(r.packet_id);
                        if r.net_time != prev.net_time
                            || step == 0
                            || (step > MAX_PID_STEP && back > MAX_PID_STEP)
                        {
                            side.ok &= !bit;
                            continue;
                        }
                        side.replay[i] = Some(Replay {
                            packet_id: r.packet_id.max(prev.packet_id),
                            net_time: r.net_time,
                        });
                    }
                }
            }
            if let Some(remote) = c.remote_session {
                match side.remote[i] {
                    Some(prev) if prev != remote => {
                        side.ok &= !bit;
                        continue;
                    }
                    _ => side.remote[i] = Some(remote),
                }
                if other_session == Some(remote) && self.echo.is_none() {
                    self.echo = Some(i);
                }
            }
            if h.opcode == opcode::CONTROL_V1 && tlsfacts::parse_record_header(c.payload).is_some()
            {
                side.tls_seen |= bit;
            }
        }
        // The other side may have claimed this side's session id before it was known.
        if self.echo.is_none() {
            let other_side = &self.sides[other];
            self.echo = (0..AUTHS.len())
                .find(|&i| other_side.ok & (1 << i) != 0 && other_side.remote[i] == Some(sid));
        }
        if self.sides[d].ok == 0 {
            return false;
        }
        // An echo under a layout one side has since ruled out is no echo.
        if let Some(i) = self.echo {
            if self
                .sides
                .iter()
                .any(|s| s.controls > 0 && s.ok & (1 << i) == 0)
            {
                self.echo = None;
            }
        }
        if let Some(i) = self.echo {
            if missing == 0 {
                self.feed_tls(d, b, AUTHS[i]);
            } else {
                // The TLS stream inside lost bytes here: its certificate cannot be read.
                self.sides[d].tls_broken = true;
            }
        }
        true
    }

    /// Appends an in-order CONTROL_V1 payload to this side's TLS stream and reads the server
    /// certificate once it is complete.
    fn feed_tls(&mut self, d: usize, b: &[u8], auth: Auth) {
        if self.tls_done || auth == Auth::Crypt {
            return;
        }
        let Some(c) = parse_control(b, auth) else {
            return;
        };
        let (Some(m), opcode::CONTROL_V1) = (c.message_id, c.header.opcode) else {
            return;
        };
        let side = &mut self.sides[d];
        if side.tls_broken {
            return;
        }
        let expected = *side.next_message.get_or_insert(m);
        if m < expected {
            return; // retransmission
        }
        if m > expected {
            side.tls_broken = true; // a gap: the stream cannot be followed
            return;
        }
        side.next_message = Some(m.wrapping_add(1));
        let tls = side.tls.get_or_insert_with(TlsRecordBuffer::new);
        if tls.push(c.payload).is_err() {
            side.tls_broken = true;
            return;
        }
        let Some(hello) = tls.find_handshake(tlsfacts::handshake_type::SERVER_HELLO) else {
            return;
        };
        let version = tlsfacts::parse_server_hello(hello).map(|s| s.version());
        self.tls_version = version;
        if version == Some(0x0304) {
            self.tls_done = true; // TLS 1.3: the certificate is encrypted
            return;
        }
        let Some(certs) = tls.find_handshake(tlsfacts::handshake_type::CERTIFICATE) else {
            if tls.encrypted || tls.truncated {
                self.tls_done = true;
            }
            return;
        };
        if let Some(facts) = tlsfacts::parse_certificate_list(certs)
            .and_then(|l| l.first().copied())
            .and_then(tlsfacts::parse_certificate)
        {
            self.provider = provider_of(&facts);
            self.cert_name = facts
                .subject_cn
                .first()
                .map(|s| s.chars().take(64).collect());
        }
        self.tls_done = true;
    }

    /// The layout whose replay fields (packet id, `net_time`) carry the handshake: both hard
    /// resets, each side consistent over at least two control packets under it, and the two
    /// clocks within a day. tls-crypt always needs this (its session ids are encrypted, so no
    /// echo is visible); an HMAC layout only where a snap length cut the packets before the
    /// echoed session id.
    fn replay_handshake(&self) -> Option<usize> {
        let candidates = if self.cut_seen {
            1..AUTHS.len()
        } else {
            AUTHS.len() - 1..AUTHS.len()
        };
        candidates.rev().find(|&i| {
            let bit = 1 << i;
            let [a, b] = &self.sides;
            let both_ok = a.ok & bit != 0 && b.ok & bit != 0 && a.controls >= 2 && b.controls >= 2;
            let resets = (a.sent_client_reset && b.sent_server_reset)
                || (b.sent_client_reset && a.sent_server_reset);
            let times = match (a.replay[i], b.replay[i]) {
                (Some(x), Some(y)) => x.net_time.abs_diff(y.net_time) <= MAX_TIME_SKEW,
                _ => false,
            };
            both_ok && resets && times
        })
    }

    /// Only one direction was seen: at least three control packets with one session id,
    /// consistent under a layout, and TLS records in CONTROL_V1 (or tls-crypt replay
    /// counters, whose payload is encrypted).
    fn one_side_layout(&self) -> Option<(usize, usize)> {
        for (d, s) in self.sides.iter().enumerate() {
            if s.controls < 3 || self.sides[1 - d].controls > 0 {
                continue;
            }
            for (i, auth) in AUTHS.iter().enumerate() {
                let bit = 1 << i;
                if s.ok & bit == 0 {
                    continue;
                }
                let strong = match auth {
                    Auth::Crypt => s.controls >= 4,
                    _ => s.tls_seen & bit != 0,
                };
                if strong {
                    return Some((d, i));
                }
            }
        }
        None
    }

    /// Mid-session data: DATA_V2 with one peer id and counting packet ids, at least four
    /// packets in a direction, the same header both ways when both are seen.
    fn data_only(&self) -> Option<[u8; 4]> {
        if self.sides.iter().any(|s| s.controls > 0) {
            return None;
        }
        let [a, b] = &self.sides;
        let good = |s: &Side| s.data_head.is_some() && s.data_consistent && s.data_count >= 4;
        let clean = |s: &Side| s.data_count == 0 || s.data_consistent;
        match (a.data_head, b.data_head) {
            (Some(x), Some(y)) if x != y => None,
            _ if (good(a) || good(b))
                && clean(a)
                && clean(b)
                && self.opcodes & !(1 << opcode::DATA_V2) == 0 =>
            {
                a.data_head.or(b.data_head)
            }
            _ => None,
        }
    }

    fn opcode_list(&self) -> String {
        let mut out = String::new();
        for op in 1..=11u8 {
            if self.opcodes & (1 << op) != 0 {
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(opcode::name(op));
            }
        }
        out
    }

    fn base_verdict(&self, confidence: Confidence) -> Verdict {
        let mut v = Verdict::new(confidence);
        v.roles_reversed = self.roles_reversed;
        v.provider = self.provider;
        v
    }

    fn add_auth(v: &mut Verdict, i: usize) {
        match AUTHS.get(i) {
            Some(Auth::Plain) => v.evidence.push("hmac", 0u8),
            Some(Auth::Hmac(n)) => v.evidence.push("hmac", *n),
            Some(Auth::Crypt) => v.evidence.push("tls_crypt", true),
            None => {}
        }
    }

    fn add_common(&self, v: &mut Verdict) {
        v.evidence.push("opcodes", self.opcode_list());
        v.evidence.push("packets", self.packets);
        if self.transport == Some(Transport::Tcp) {
            v.evidence.push("tcp_framing", true);
        }
        if let Some(ver) = self.tls_version {
            v.evidence.push("tls_version", format!("0x{ver:04x}"));
        }
        if let Some(cn) = &self.cert_name {
            v.evidence.push("cert_cn", cn.clone());
        }
        let peer = self.sides.iter().find_map(|s| s.data_head);
        if let Some([_, a, b, c]) = peer {
            if self.opcodes & (1 << opcode::DATA_V2) != 0 {
                v.evidence.push("peer_id", u32::from_be_bytes([0, a, b, c]));
            }
        }
    }

    /// The verdict the facts so far support, strongest rule first.
    fn verdict(&self) -> Option<Verdict> {
        if self.failed {
            return None;
        }
        if let Some(i) = self.echo {
            let mut v = self
                .base_verdict(Confidence::BothDirections)
                .fact("session_id_echo", true);
            Self::add_auth(&mut v, i);
            self.add_common(&mut v);
            return Some(v);
        }
        if let Some(i) = self.replay_handshake() {
            let mut v = self
                .base_verdict(Confidence::BothDirections)
                .fact("session_id_echo", false);
            Self::add_auth(&mut v, i);
            v.evidence.push("net_time_agrees", true);
            self.add_common(&mut v);
            return Some(v);
        }
        if let Some((_, i)) = self.one_side_layout() {
            let mut v = self
                .base_verdict(Confidence::OneMessage)
                .fact("session_id_echo", false);
            Self::add_auth(&mut v, i);
            v.evidence.push("one_direction", true);
            self.add_common(&mut v);
            return Some(v);
        }
        if self.data_only().is_some() {
            let mut v = self
                .base_verdict(Confidence::Statistical)
                .fact("data_only", true);
            self.add_common(&mut v);
            return Some(v);
        }
        None
    }

    /// Whether to keep reading for the certificate after the echo.
    fn waiting_for_tls(&self) -> bool {
        let Some(i) = self.echo else { return false };
        AUTHS[i] != Auth::Crypt && !self.tls_done && !self.sides.iter().all(|s| s.tls_broken)
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        if self.failed {
            return Step::NotThis;
        }
        self.transport = Some(p.transport);
        let dir = p.direction;
        let ok = match p.transport {
            Transport::Udp => self.packet(dir, p.bytes, usize::from(p.cut)),
            Transport::Tcp => {
                let d = dir.index();
                // Cheap rejection: a frame starting here must have a valid opcode byte.
                if self.sides[d].framer.at_boundary()
                    && p.bytes.len() >= 3
                    && parse_header(p.bytes.get(2..).unwrap_or_default()).is_none()
                {
                    false
                } else {
                    let mut framer = std::mem::take(&mut self.sides[d].framer);
                    let mut good = true;
                    let framing = framer.feed(p.bytes, usize::from(p.cut), |frame, missing| {
                        good = self.packet(dir, frame, missing);
                        good
                    });
                    self.sides[d].framer = framer;
                    good && framing != Framing::Broken
                }
            }
            _ => false,
        };
        if !ok {
            // A matched session later sending garbage is still the session that matched.
            if self.echo.is_some() {
                self.tls_done = true;
                return self.verdict().map_or(Step::NotThis, Step::Match);
            }
            self.failed = true;
            return Step::NotThis;
        }
        if self.echo.is_some() {
            if self.waiting_for_tls() {
                return Step::NeedMore;
            }
            return self.verdict().map_or(Step::NeedMore, Step::Match);
        }
        if self.replay_handshake().is_some() {
            return self.verdict().map_or(Step::NeedMore, Step::Match);
        }
        Step::NeedMore
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        self.verdict()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::fingerprint::test_support::hex;

    fn pl(dir: Direction, t: Transport, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(dir, bytes)
            .over(t)
            .nth(nth)
            .ports(40000, 1194)
    }

    fn ctx(t: Transport) -> FlowContext {
        FlowContext::test(t, 40000, 1194)
    }

    /// Runs payloads through a fresh detector like the driver does (budget per direction).
    fn run(t: Transport, payloads: &[(Direction, Vec<u8>)]) -> Option<Verdict> {
        let mut s = State::default();
        let mut offered = [0u8; 2];
        for (dir, b) in payloads {
            let d = dir.index();
            if offered[d] >= SPEC.payload_budget {
                continue;
            }
            let n = offered[d];
            offered[d] += 1;
            match s.observe(&pl(*dir, t, n, b)) {
                Step::Match(v) => return Some(v),
                Step::NotThis => return None,
                Step::NeedMore => {}
            }
        }
        s.conclude(&ctx(t))
    }

    use Direction::{ToClient as S, ToServer as C};

    // openvpn_udp_tls-auth.pcap, frames 1, 2, 3 (tls-auth, HMAC-SHA1).
    const TLSAUTH_1: &str =
        "38813814621d67462dde86734d2cbff151b2b1231b61e42308a272818e0000000150ff262c0000000000";
    const TLSAUTH_2: &str = "40573714a917f36048885887cdb6dd77785d00d15edbbe9aa6203a45570000000150ff262b0100000000813814621d67462d00000000";
    const TLSAUTH_3: &str = "28813814621d67462d0e2e72320f65f7cfec66502795cef7316df017340000000250ff262c0100000000573714a917f36048";

    #[test]
    fn udp_tls_auth_echo() {
        let v = run(
            Transport::Udp,
            &[
                (C, hex(TLSAUTH_1)),
                (S, hex(TLSAUTH_2)),
                (C, hex(TLSAUTH_3)),
            ],
        )
        .unwrap();
        assert_eq!(v.confidence, Confidence::BothDirections);
        assert_eq!(v.evidence.get("session_id_echo"), Some(&Fact::Bool(true)));
        assert_eq!(v.evidence.get("hmac"), Some(&Fact::Int(20)));
        assert!(!v.roles_reversed);
    }

    #[test]
    fn parse_control_layouts() {
        let b = hex(TLSAUTH_2);
        let c = parse_control(&b, Auth::Hmac(20)).unwrap();
        assert_eq!(c.header.opcode, opcode::HARD_RESET_SERVER_V2);
        assert_eq!(c.ack_count, 1);
        assert_eq!(
            c.remote_session,
            Some([0x81, 0x38, 0x14, 0x62, 0x1d, 0x67, 0x46, 0x2d])
        );
        assert_eq!(c.message_id, Some(0));
        assert_eq!(
            c.replay,
            Some(Replay {
                packet_id: 1,
                net_time: 0x50ff262b
            })
        );
        assert!(parse_control(&b, Auth::Plain).is_none());
        assert!(parse_control(&b, Auth::Hmac(16)).is_none());
    }

    // openvpn.pcap, frames 25, 27 (TCP, no tls-auth; 2-byte length prefix).
    const TCP_1: &str = "000e38507a28a78275788d0000000000";
    const TCP_2: &str = "001a409ad747beb24d8a1b0100000000507a28a78275788d00000000";

    #[test]
    fn tcp_plain_echo_split_segments() {
        let one = hex(TCP_1);
        let (a, b) = one.split_at(5);
        let v = run(
            Transport::Tcp,
            &[(C, a.to_vec()), (C, b.to_vec()), (S, hex(TCP_2))],
        )
        .unwrap();
        assert_eq!(v.evidence.get("hmac"), Some(&Fact::Int(0)));
        assert_eq!(v.evidence.get("tcp_framing"), Some(&Fact::Bool(true)));
    }

    /// Frames a framer hands out for segments `(kept bytes, cut)`: (frame bytes, missing).
    fn framed(segments: &[(&[u8], usize)]) -> (Vec<(Vec<u8>, usize)>, Framing) {
        let mut framer = TcpFramer::default();
        let mut frames = Vec::new();
        let mut last = Framing::Ok;
        for (bytes, cut) in segments {
            last = framer.feed(bytes, *cut, |f, missing| {
                frames.push((f.to_vec(), missing));
                true
            });
        }
        (frames, last)
    }

    #[test]
    fn tcp_framer_reads_cut_segments_as_far_as_the_frame_boundaries_show() {
        // One 10-byte frame per segment, cut after 6 bytes: each comes with 6 missing.
        let seg = [0, 10, 1, 2, 3, 4];
        let (frames, last) = framed(&[(&seg, 6), (&seg, 6)]);
        assert_eq!(last, Framing::Ok);
        assert_eq!(frames, vec![(vec![1, 2, 3, 4], 6), (vec![1, 2, 3, 4], 6)]);

        // A whole frame, then one the cut falls in, ending where the segment ends.
        let (frames, _) = framed(&[(&[0, 2, 7, 7, 0, 5, 1, 2], 3)]);
        assert_eq!(frames, vec![(vec![7, 7], 0), (vec![1, 2], 3)]);

        // A frame begun in one segment and ended, cut, in the next.
        let (frames, _) = framed(&[(&[0, 6, 1], 0), (&[2, 3], 3)]);
        assert_eq!(frames, vec![(vec![1, 2, 3], 3)]);

        // Only the length of the frame kept: passed over, in step.
        let (frames, last) = framed(&[(&[0, 3], 3), (&[0, 1, 8], 0)]);
        assert_eq!((frames, last), (vec![(vec![8], 0)], Framing::Ok));

        // The cut goes past the frame's end: the next frame starts out of sight.
        let (frames, last) = framed(&[(&[0, 2, 1], 3)]);
        assert_eq!(last, Framing::Lost);
        assert!(frames.is_empty());
        // The cut falls inside the length field, or right at a frame boundary.
        assert_eq!(framed(&[(&[0], 5)]).1, Framing::Lost);
        assert_eq!(framed(&[(&[0, 1, 9], 4)]).1, Framing::Lost);
        // Or the frame goes on in the next segment past bytes nobody saw.
        assert_eq!(framed(&[(&[0, 20, 1, 2], 4)]).1, Framing::Lost);
    }

    #[test]
    fn tcp_framer_picks_up_again_at_a_segment_of_exactly_one_frame() {
        let lost: &[u8] = &[0, 2, 1];
        // Segments that are not one frame on the wire stay unread; one that is, is read.
        let (frames, last) = framed(&[(lost, 3), (&[9, 9, 9], 40), (&[0, 4, 5], 3)]);
        assert_eq!(last, Framing::Ok);
        assert_eq!(frames, vec![(vec![5], 3)]);
        // And the framing goes on from there, whole segments included.
        let (frames, _) = framed(&[(lost, 3), (&[0, 1, 5], 0), (&[0, 1, 6, 0, 1, 7], 0)]);
        assert_eq!(frames, vec![(vec![5], 0), (vec![6], 0), (vec![7], 0)]);
        // A lost side is not at a boundary (the opcode check of a segment start is skipped).
        let mut framer = TcpFramer::default();
        framer.feed(lost, 3, |_, _| true);
        assert!(!framer.at_boundary());
    }

    #[test]
    fn server_first_sets_roles_reversed() {
        // The server's reset arrives as the flow's to-server direction.
        let v = run(Transport::Tcp, &[(C, hex(TCP_2)), (S, hex(TCP_1))]).unwrap();
        assert!(v.roles_reversed);
    }

    // openvpn-tlscrypt.pcap, frames 2, 4, 7 (server) and 3 (client), first bytes each: tls-crypt
    // header and the start of the encrypted part (lengths kept above the tls-crypt minimum).
    const CRYPT_S1: &str = "4053c96dd083724fd200000001625a9e9721ea783a859f9c2d8edd04f1e1c9f78f4493a69dfacd5c0000000000000000000000000000000000";
    const CRYPT_C1: &str = "50aae06512392a3d710a010001625a9e9785ead7700d5d18dac8f1eb9b317b46a2fc3519cab585d10000000000000000000000000000000000";
    const CRYPT_C2: &str = "58aae06512392a3d710a010002625a9e9733a77c623a5967f6d3bbddc4cb8da6e5a500df9d95afd00000000000000000000000000000000000";
    const CRYPT_S2: &str = "2053c96dd083724fd200000002625a9e97f242867d2ea2472101e3caec9638d664d0dd87ab7540cb0000000000000000000000000000000000";

    #[test]
    fn tls_crypt_v2_handshake() {
        let v = run(
            Transport::Udp,
            &[
                (C, hex(CRYPT_C1)),
                (S, hex(CRYPT_S1)),
                (C, hex(CRYPT_C2)),
                (S, hex(CRYPT_S2)),
            ],
        )
        .unwrap();
        assert_eq!(v.evidence.get("tls_crypt"), Some(&Fact::Bool(true)));
        assert_eq!(v.confidence, Confidence::BothDirections);
    }

    /// Cut by a snap length (44 bytes kept, as 96 bytes keep behind loopback, IPv6 and UDP
    /// headers), the tls-crypt handshake still shows its replay fields, and its tag and
    /// encrypted part count on the wire. A tls-auth (HMAC-SHA1) handshake cut before the
    /// echoed session id is told by the same replay evidence, which on whole packets only
    /// tls-crypt is judged by; a cut packet too short on the wire for tls-crypt is not one.
    #[test]
    fn handshakes_cut_by_a_snap_length() {
        fn run_cut(kept: usize, wire: usize, payloads: &[(Direction, Vec<u8>)]) -> Option<Verdict> {
            let mut s = State::default();
            let mut offered = [0u8; 2];
            for (dir, b) in payloads {
                let n = offered[dir.index()];
                offered[dir.index()] += 1;
                let keep = kept.min(b.len());
                let p = pl(*dir, Transport::Udp, n, &b[..keep]).cut((wire - keep) as u16);
                match s.observe(&p) {
                    Step::Match(v) => return Some(v),
                    Step::NotThis => return None,
                    Step::NeedMore => {}
                }
            }
            s.conclude(&ctx(Transport::Udp))
        }
        let crypt = [
            (C, hex(CRYPT_C1)),
            (S, hex(CRYPT_S1)),
            (C, hex(CRYPT_C2)),
            (S, hex(CRYPT_S2)),
        ];
        let v = run_cut(44, 300, &crypt).expect("tls-crypt, cut");
        assert_eq!(v.evidence.get("tls_crypt"), Some(&Fact::Bool(true)));
        assert_eq!(v.confidence, Confidence::BothDirections);
        // 17 bytes of replay, then too little on the wire for the tag and a packet id.
        assert!(parse_control_on_wire(&hex(CRYPT_C1)[..44], 17 + 32 + 4, Auth::Crypt).is_none());
        assert!(parse_control_on_wire(&hex(CRYPT_C1)[..44], 17 + 32 + 5, Auth::Crypt).is_some());

        // tls-auth: 1 + 8 + 20 + 8 = 37 bytes hold the replay fields; cut there, no echo.
        // The server's next control packet: its replay packet id (after opcode, session id
        // and HMAC, at 29..33) one higher.
        let mut server_next = hex(TLSAUTH_2);
        server_next[32] = 2;
        let auth = [
            (C, hex(TLSAUTH_1)),
            (S, hex(TLSAUTH_2)),
            (C, hex(TLSAUTH_3)),
            (S, server_next),
        ];
        let v = run_cut(38, 200, &auth).expect("tls-auth, cut");
        assert_eq!(v.evidence.get("session_id_echo"), Some(&Fact::Bool(false)));
        assert_eq!(v.evidence.get("hmac"), Some(&Fact::Int(20)));
    }

    // openvpn_udp_hmac_256.pcap frames 25-28: DATA_V2 with peer id 0x000370 (payload cut to 32 bytes).
    #[test]
    fn data_v2_mid_session() {
        let pk = |n: u8| {
            hex(&format!(
                "48000370000000{n:02x}160f142a1c49874cb8758d72c79f87c391a1c8b2333d31"
            ))
        };
        let flows: Vec<_> = (1..=5).map(|n| (C, pk(n))).collect();
        let v = run(Transport::Udp, &flows).unwrap();
        assert_eq!(v.confidence, Confidence::Statistical);
        assert_eq!(v.evidence.get("peer_id"), Some(&Fact::Int(0x370)));
    }

    #[test]
    fn near_misses_are_rejected() {
        // DNS query (wikipedia.pcap style), STUN binding request, QUIC Initial, RTP, TLS ClientHello.
        let dns = hex("4a3b0100000100000000000003777777096578616d706c6503636f6d0000010001");
        let stun = hex("000100002112a442b7e7a701bc34d686fa87dfae");
        let quic = hex("c30000000108a1b2c3d4e5f60718000044d0aabbccddeeff00112233445566778899");
        let rtp = hex("80e0000100000064deadbeef0102030405060708090a0b0c");
        let tls = hex("16030100c4010000c00303aabbccddeeff");
        for b in [&dns, &stun, &quic, &rtp] {
            let flow = vec![
                (C, b.clone()),
                (S, b.clone()),
                (C, b.clone()),
                (S, b.clone()),
            ];
            assert!(run(Transport::Udp, &flow).is_none());
        }
        assert!(run(Transport::Tcp, &[(C, tls.clone()), (S, tls)]).is_none());
        // A plausible client reset that the "server" never echoes, repeated with a changing
        // session id: not enough.
        let r1 = hex("3839fded2daa10a4370000000000");
        let r2 = hex("40aaaaaaaaaaaaaaaa0100000000bbbbbbbbbbbbbbbb00000000");
        assert!(run(Transport::Udp, &[(C, r1), (S, r2)]).is_none());
    }

    #[test]
    fn cert_rules() {
        let mut f = tlsfacts::CertificateFacts::default();
        f.subject_cn.push("server.vpnunlimitedapp.com".into());
        assert_eq!(provider_of(&f), Some("vpnunlimited"));
        let mut g = tlsfacts::CertificateFacts::default();
        g.issuer_o.push("NordVPN".into());
        assert_eq!(provider_of(&g), Some("nordvpn"));
        let mut h = tlsfacts::CertificateFacts::default();
        h.subject_cn.push("notvpnunlimitedapp.com".into());
        h.issuer_o.push("NordVPN Fans".into());
        assert_eq!(provider_of(&h), None);
    }

    use crate::fingerprint::Fact;

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(
            packets in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..600)), 0..40),
            tcp in any::<bool>(),
        ) {
            let t = if tcp { Transport::Tcp } else { Transport::Udp };
            let mut s = State::default();
            let mut offered = [0u8; 2];
            for (to_server, bytes) in &packets {
                let dir = if *to_server { C } else { S };
                let d = dir.index();
                prop_assert!(offered[d] <= SPEC.payload_budget);
                if offered[d] == SPEC.payload_budget { continue; }
                offered[d] += 1;
                if !matches!(s.observe(&pl(dir, t, offered[d] - 1, bytes)), Step::NeedMore) { break; }
            }
            let _ = s.conclude(&ctx(t));
            for side in &s.sides {
                prop_assert!(side.framer.buf.len() <= MAX_FRAME + 2);
            }
        }

        /// A stream of frames cut into segments at random, each kept only so far: every frame
        /// handed out is the start of a true frame with the rest counted as missing, a frame
        /// wholly kept comes whole, and frames come in order. Frame bodies are 0xff bytes, so
        /// no segment that starts inside one can pass for a frame (0xffff > MAX_FRAME).
        #[test]
        fn cut_segments_give_true_frames_only(
            lens in proptest::collection::vec(1usize..300, 1..30),
            splits in proptest::collection::vec((1usize..400, 0usize..100), 1..60),
        ) {
            let mut stream = Vec::new();
            for &len in &lens {
                stream.extend_from_slice(&(len as u16).to_be_bytes());
                stream.resize(stream.len() + len, 0xff);
            }
            let mut framer = TcpFramer::default();
            let mut got: Vec<(usize, usize)> = Vec::new();
            let mut bodies_only = true;
            let mut at = 0;
            for &(size, keep_pct) in &splits {
                if at >= stream.len() { break; }
                let end = (at + size).min(stream.len());
                let kept = ((end - at) * keep_pct / 100).max(1);
                let framing = framer.feed(&stream[at..at + kept], end - at - kept, |f, missing| {
                    bodies_only &= f.iter().all(|&b| b == 0xff);
                    got.push((f.len(), missing));
                    true
                });
                prop_assert!(bodies_only);
                prop_assert!(framing != Framing::Broken);
                at = end;
            }
            // Each frame handed out is one of the stream's, in order.
            let mut next = 0;
            for (len, missing) in got {
                let i = lens[next..].iter().position(|&l| l == len + missing);
                prop_assert!(i.is_some(), "frame of {} + {} bytes", len, missing);
                next += i.unwrap_or(0) + 1;
            }
        }

        #[test]
        fn random_control_like_packets_do_not_match(
            sid in any::<[u8; 8]>(), rest in proptest::collection::vec(any::<u8>(), 0..80), op in 1u8..12,
        ) {
            let mut b = vec![op << 3];
            b.extend_from_slice(&sid);
            b.extend_from_slice(&rest);
            let flow = vec![(C, b.clone()), (S, b.clone())];
            prop_assert!(run(Transport::Udp, &flow).is_none());
        }
    }
}
