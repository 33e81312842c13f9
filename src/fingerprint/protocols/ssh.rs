//! SSH (RFC 4253) over TCP, on any port (sslh puts it on 443, reverse SSH on odd ports).
//!
//! Wire facts:
//! - RFC 4253 §4.2: each side first sends the identification string
//!   `SSH-protoversion-softwareversion SP comments CR LF`, at most 255 bytes with the CR LF;
//!   protoversion is `2.0`, or `1.99` for a server that also speaks SSH-1 (§5.1). SSH-1 itself
//!   (draft-ylonen-ssh-protocol-00 §"Protocol version identification") sends the same line
//!   with its own version, `1.5` (or the older `1.3`), and no KEXINIT follows.
//!   softwareversion is printable US-ASCII without whitespace or `-`. A server MAY send other
//!   lines before it (not starting with `SSH-`); old implementations end it with a bare LF.
//!   Deployed servers break the `-` rule (Apache MINA SSHD sends `SSH-2.0-APACHE-SSHD-2.5.0`)
//!   and clients connect to them regardless (OpenSSH reads the peer's version with
//!   `SSH-%d.%d-%[^\n]`), so a `-` is accepted inside softwareversion.
//! - RFC 4253 §6: binary packets `uint32 packet_length, byte padding_length, payload, padding,
//!   MAC`; padding is 4..=255 bytes; §6.1 packets up to 35000 bytes must be accepted.
//! - RFC 4253 §7.1: the first packet is `SSH_MSG_KEXINIT` (20): 16 cookie bytes, then name-lists
//!   (RFC 4251 §5: `uint32 length` + comma-separated US-ASCII names).
//!
//! The verdict is given in `conclude` so that flow-level facts can be added: an SSH session that
//! lasts more than a minute and moves more than a megabyte (or many packets both ways) is flagged
//! `tunnel_like=true` (port forwarding, SOCKS over `ssh -D`, VPN over SSH).

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};

/// Detector entry: identification strings and the first KEXINIT, four payloads per direction.
pub static SPEC: Spec = Spec {
    name: "ssh",
    family: Family::Tunnel,
    transports: Transports::TCP,
    payload_budget: 4,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// RFC 4253 §4.2: the identification string is at most 255 characters including CR LF.
const MAX_IDENT: usize = 255;
/// How far into a payload pre-banner lines are tolerated.
const MAX_PREAMBLE: usize = 1024;
/// RFC 4253 §6.1: implementations must accept packets up to 35000 bytes; allow some slack.
const MAX_PACKET: u32 = 256 * 1024;
/// SSH_MSG_KEXINIT (RFC 4253 §12).
const MSG_KEXINIT: u8 = 20;
/// `tunnel_like`: sessions longer than this...
const TUNNEL_MIN_NANOS: i64 = 60_000_000_000;
/// ...that move more payload bytes than this (both ways together)...
const TUNNEL_MIN_BYTES: u64 = 1_000_000;
/// ...or at least this many payload packets in each direction.
const TUNNEL_MIN_PACKETS: u64 = 500;

/// A parsed identification string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ident<'a> {
    /// One of [`PROTO_VERSIONS`].
    pub proto: &'static str,
    /// The softwareversion field, e.g. `OpenSSH_8.2p1`.
    pub software: &'a [u8],
    /// Offset just after the line end (where the first binary packet may start).
    pub end: usize,
}

/// The protocol versions of identification strings: SSH-2 (`2.0`), a server speaking both
/// (`1.99`), and SSH-1 (`1.5`, `1.3`).
pub const PROTO_VERSIONS: [&str; 4] = ["2.0", "1.99", "1.5", "1.3"];

/// Parses an identification line that starts exactly at `b[0]` (RFC 4253 §4.2).
pub fn parse_ident_line(b: &[u8]) -> Option<Ident<'_>> {
    let rest = b.strip_prefix(b"SSH-")?;
    let (proto, rest) = PROTO_VERSIONS.iter().find_map(|&v| {
        let r = rest.strip_prefix(v.as_bytes())?.strip_prefix(b"-")?;
        Some((v, r))
    })?;
    let window = b.get(..b.len().min(MAX_IDENT))?;
    let lf = window.iter().position(|&c| c == b'\n')?;
    let line_len = lf - usize::from(window.get(lf.wrapping_sub(1)) == Some(&b'\r'));
    let prefix_len = b.len() - rest.len();
    let body = b.get(prefix_len..line_len)?;
    let sw_len = body.iter().position(|&c| c == b' ').unwrap_or(body.len());
    let software = body.get(..sw_len)?;
    if software.is_empty() || !software.iter().all(|&c| (0x21..=0x7e).contains(&c)) {
        return None;
    }
    let comments = body.get(sw_len..).unwrap_or(&[]);
    if !comments.iter().all(|&c| (0x20..=0x7e).contains(&c)) {
        return None;
    }
    Some(Ident {
        proto,
        software,
        end: lf + 1,
    })
}

/// Finds the identification string in the first payload of one side: at the start, or after
/// printable pre-banner lines (RFC 4253 §4.2) within the first `MAX_PREAMBLE` bytes.
pub fn find_ident(b: &[u8]) -> Option<Ident<'_>> {
    let mut start = 0usize;
    while start < b.len().min(MAX_PREAMBLE) {
        let rest = b.get(start..)?;
        if let Some(id) = parse_ident_line(rest) {
            return Some(Ident {
                end: id.end + start,
                ..id
            });
        }
        let lf = rest.iter().position(|&c| c == b'\n')?;
        let line = rest.get(..lf)?;
        if !line
            .iter()
            .all(|&c| c == b'\r' || c == b'\t' || (0x20..=0x7e).contains(&c))
        {
            return None;
        }
        start += lf + 1;
    }
    None
}

/// True when `b` starts with a plausible SSH_MSG_KEXINIT binary packet (RFC 4253 §6, §7.1):
/// sane packet and padding lengths, message code 20, and a first name-list whose length fits.
pub fn is_kexinit(b: &[u8]) -> bool {
    let Some(&[l0, l1, l2, l3, pad, code]) = b.get(..6) else {
        return false;
    };
    let len = u32::from_be_bytes([l0, l1, l2, l3]);
    if code != MSG_KEXINIT
        || !(4..=255).contains(&pad)
        || len > MAX_PACKET
        || len < u32::from(pad) + 1 + 16 + 4 * 10 + 1 + 4
    {
        return false;
    }
    // First name-list (kex_algorithms) after the 16-byte cookie.
    match b.get(22..26) {
        Some(&[n0, n1, n2, n3]) => {
            let n = u32::from_be_bytes([n0, n1, n2, n3]);
            if n == 0 || n >= len {
                return false;
            }
            let names = b
                .get(26..26 + (n as usize).min(64))
                .unwrap_or_else(|| b.get(26..).unwrap_or(&[]));
            names
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || b"@.,-_+".contains(&c))
        }
        _ => true,
    }
}

/// What one side has shown.
#[derive(Debug, Default, Clone)]
struct Side {
    software: Option<String>,
    proto: &'static str,
    kexinit: bool,
    /// This side sent something other than an identification string first.
    silent: bool,
}

/// Per-flow state; the verdict is made in `conclude`.
#[derive(Debug, Default, Clone)]
struct State {
    /// Indexed by `Direction::index`: to server (client side), to client (server side).
    sides: [Side; 2],
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let side = &mut self.sides[p.direction.index()];
        if side.silent {
            // Nothing more to learn from this side.
        } else if side.software.is_none() {
            match find_ident(p.bytes) {
                Some(id) => {
                    side.software = Some(super::http::evidence_text(id.software, 64));
                    side.proto = id.proto;
                    side.kexinit = p.bytes.get(id.end..).is_some_and(is_kexinit);
                }
                None => {
                    // Anything but an identification string (or pre-banner text) first: this
                    // side does not speak SSH.
                    let texty = p
                        .bytes
                        .iter()
                        .take(MAX_PREAMBLE)
                        .all(|&c| c == b'\r' || c == b'\n' || (0x20..=0x7e).contains(&c));
                    side.silent = !texty || p.nth_in_direction >= 1;
                }
            }
        } else if !side.kexinit {
            side.kexinit = is_kexinit(p.bytes);
        }
        // One side's identification string is proof enough of an SSH speaker, and the other
        // side not answering in kind (an error text, a server rejecting the client) does not
        // take it back. A side that fails before the other has identified ends the matter.
        let [client, server] = &self.sides;
        if (client.silent && server.software.is_none())
            || (server.silent && client.software.is_none())
        {
            return Step::NotThis;
        }
        Step::NeedMore
    }

    fn conclude(&mut self, flow: &FlowContext) -> Option<Verdict> {
        let [client, server] = &mut self.sides;
        let confidence = match (&client.software, &server.software) {
            (Some(_), Some(_)) => Confidence::BothDirections,
            (Some(_), None) | (None, Some(_)) => Confidence::OneMessage,
            (None, None) => return None,
        };
        let proto = if server.software.is_some() {
            server.proto
        } else {
            client.proto
        };
        let mut v = Verdict::new(confidence).fact("proto_version", proto);
        if let Some(s) = client.software.take() {
            v = v.fact("client_software", s);
        }
        if let Some(s) = server.software.take() {
            v = v.fact("server_software", s);
        }
        v = v.fact("kexinit", client.kexinit || server.kexinit);
        let bytes = flow.payload_bytes[0].saturating_add(flow.payload_bytes[1]);
        let many_packets = flow
            .payload_packets
            .iter()
            .all(|&n| n >= TUNNEL_MIN_PACKETS);
        let tunnel_like =
            flow.duration_nanos > TUNNEL_MIN_NANOS && (bytes > TUNNEL_MIN_BYTES || many_packets);
        v = v
            .fact("duration_s", flow.duration_nanos / 1_000_000_000)
            .fact("payload_bytes", bytes)
            .fact("tunnel_like", tunnel_like);
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Direction, Transport};
    use proptest::prelude::*;

    fn pl(direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes).nth(nth).ports(48020, 22)
    }

    fn ctx(duration_s: i64, bytes: u64, packets: u64) -> FlowContext {
        FlowContext {
            packets: [packets, packets],
            payload_bytes: [bytes / 2, bytes / 2],
            payload_packets: [packets, packets],
            duration_nanos: duration_s * 1_000_000_000,
            ..FlowContext::test(Transport::Tcp, 48020, 22)
        }
    }

    /// reverse-ssh.pcap, frame 4 (server identification, 24 bytes).
    const REVERSE_SERVER: &[u8] = b"SSH-2.0-AsyncSSH_2.8.1\r\n";
    /// reverse-ssh.pcap, frame 6: client identification followed by the start of its KEXINIT.
    const REVERSE_CLIENT: &[u8] = &[
        0x53, 0x53, 0x48, 0x2d, 0x32, 0x2e, 0x30, 0x2d, 0x64, 0x72, 0x6f, 0x70, 0x62, 0x65, 0x61,
        0x72, 0x5f, 0x32, 0x30, 0x31, 0x38, 0x2e, 0x37, 0x36, 0x0d, 0x0a, 0x00, 0x00, 0x01, 0xf4,
        0x07, 0x14, 0x2f, 0x93, 0x3f, 0xf8, 0x79, 0xca, 0xa5, 0x31, 0x9b, 0x90, 0xa4, 0xe9, 0x6d,
        0x2b, 0x10, 0x3f, 0x00, 0x00, 0x00, 0xbb, 0x63, 0x75, 0x72, 0x76, 0x65, 0x32, 0x35, 0x35,
        0x31, 0x39, 0x2d, 0x73, 0x68, 0x61, 0x32, 0x35, 0x36, 0x2c,
    ];
    /// single-conn.pcap, frame 4: SSH-1.99 server ending with a bare LF.
    const SINGLE_SERVER: &[u8] = b"SSH-1.99-OpenSSH_3.9p1\n";

    #[test]
    fn idents_parse() {
        let id = parse_ident_line(REVERSE_SERVER).unwrap();
        assert_eq!(
            (id.proto, id.software, id.end),
            ("2.0", &b"AsyncSSH_2.8.1"[..], 24)
        );
        let id = parse_ident_line(SINGLE_SERVER).unwrap();
        assert_eq!(id.proto, "1.99");
        // An SSH-1 server (ssh 1.2.26, protocol 1.5), as in nDPI's test captures.
        let id = parse_ident_line(b"SSH-1.5-1.2.26\n").unwrap();
        assert_eq!((id.proto, id.software, id.end), ("1.5", &b"1.2.26"[..], 15));
        // Versions that never existed, and a missing dash, are not identification strings.
        for line in [
            &b"SSH-1.6-x\n"[..],
            b"SSH-3.0-x\n",
            b"SSH-2.0x\n",
            b"SSH-1.-x\n",
        ] {
            assert!(parse_ident_line(line).is_none(), "{line:?}");
        }
        let id = find_ident(REVERSE_CLIENT).unwrap();
        assert_eq!(id.software, b"dropbear_2018.76");
        let id = find_ident(b"SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.5\r\n").unwrap();
        assert_eq!(id.software, b"OpenSSH_8.2p1");
        assert!(find_ident(b"Welcome\r\nSSH-2.0-x\r\n").is_some());
    }

    #[test]
    fn flow_with_both_banners_and_kexinit() {
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Direction::ToClient, 0, REVERSE_SERVER)),
            Step::NeedMore
        );
        assert_eq!(
            s.observe(&pl(Direction::ToServer, 0, REVERSE_CLIENT)),
            Step::NeedMore
        );
        let v = s.conclude(&ctx(1, 10_000, 30)).unwrap();
        assert_eq!(v.confidence, Confidence::BothDirections);
        assert_eq!(v.evidence.get("kexinit"), Some(&true.into()));
        assert_eq!(v.evidence.get("tunnel_like"), Some(&false.into()));
        assert_eq!(
            v.evidence.get("client_software"),
            Some(&"dropbear_2018.76".into())
        );
    }

    /// Apache MINA SSHD's identification string has `-` inside softwareversion, against RFC
    /// 4253 §4.2; OpenSSH clients connect to it all the same. Both lines are from a loopback
    /// session in nDPI's test captures (client port 58496, server port 8000).
    #[test]
    fn dashes_in_software_version_are_tolerated() {
        let id = parse_ident_line(b"SSH-2.0-APACHE-SSHD-2.5.0\r\n").unwrap();
        assert_eq!((id.proto, id.software), ("2.0", &b"APACHE-SSHD-2.5.0"[..]));
        let mut s = State::default();
        let client = b"SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.11\r\n";
        assert_eq!(
            s.observe(&pl(Direction::ToServer, 0, client)),
            Step::NeedMore
        );
        let server = b"SSH-2.0-APACHE-SSHD-2.5.0\r\n";
        assert_eq!(
            s.observe(&pl(Direction::ToClient, 0, server)),
            Step::NeedMore
        );
        let v = s.conclude(&ctx(2, 7_000, 37)).unwrap();
        assert_eq!(v.confidence, Confidence::BothDirections);
        assert_eq!(
            v.evidence.get("server_software"),
            Some(&"APACHE-SSHD-2.5.0".into())
        );
    }

    /// A client that identified itself stays an SSH client when the server answers with
    /// something else; a side that fails before the other identified still rules SSH out.
    #[test]
    fn one_identified_side_survives_the_other_failing() {
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Direction::ToServer, 0, REVERSE_CLIENT)),
            Step::NeedMore
        );
        assert_eq!(
            s.observe(&pl(Direction::ToClient, 0, b"\x00\x01binary")),
            Step::NeedMore
        );
        assert_eq!(
            s.observe(&pl(Direction::ToClient, 1, REVERSE_SERVER)),
            Step::NeedMore
        );
        let v = s.conclude(&ctx(1, 1_000, 4)).unwrap();
        assert_eq!(v.confidence, Confidence::OneMessage);
        assert_eq!(v.evidence.get("server_software"), None);

        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Direction::ToClient, 0, b"\x00\x01binary")),
            Step::NotThis
        );
    }

    #[test]
    fn long_heavy_session_is_tunnel_like() {
        let mut s = State::default();
        s.observe(&pl(Direction::ToClient, 0, REVERSE_SERVER));
        let v = s.conclude(&ctx(600, 50_000_000, 40_000)).unwrap();
        assert_eq!(v.evidence.get("tunnel_like"), Some(&true.into()));
        assert_eq!(v.confidence, Confidence::OneMessage);
    }

    #[test]
    fn near_misses_are_rejected() {
        for b in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"SSH-3.0-foo\r\n",
            b"SSH-2.0-\r\n",
            b"SSH-2.0-foo",
            b"\x16\x03\x01\x00\xa2\x01\x00\x00\x9e\x03\x01",
            b"\x00\x00\x01\xf4\x07\x14",
            b"\x05\x01\x00",
        ] {
            let mut s = State::default();
            let first = s.observe(&pl(Direction::ToServer, 0, b));
            let second = s.observe(&pl(Direction::ToServer, 1, b"\x00\x01binary"));
            assert!(first == Step::NotThis || second == Step::NotThis, "{b:?}");
            assert!(s.conclude(&ctx(1, 100, 2)).is_none(), "{b:?}");
        }
        assert!(!is_kexinit(
            b"\x00\x00\x01\xf4\x07\x15aaaaaaaaaaaaaaaaaaaaaaa"
        ));
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..10)) {
            let mut s = State::default();
            for (i, c) in chunks.iter().enumerate() {
                let dir = if i % 2 == 0 { Direction::ToServer } else { Direction::ToClient };
                let nth = (i / 2) as u8;
                if nth >= SPEC.payload_budget { break; }
                if s.observe(&pl(dir, nth, c)) != Step::NeedMore { break; }
                let _ = is_kexinit(c);
            }
            let _ = s.conclude(&ctx(100, 1, 1));
        }
    }
}
