//! GRE: Generic Routing Encapsulation (IP protocol 47), RFC 2784 with the key and sequence
//! extensions of RFC 2890, and PPTP's enhanced GRE (RFC 2637 §4.1, version 1).
//!
//! The flow's payload is the whole IP payload, so the GRE header is at offset 0:
//!
//! | bytes | field |
//! |---|---|
//! | 0..2 | C(0x8000) R(0x4000) K(0x2000) S(0x1000) s(0x0800) Recur(0x0700) A(0x0080) Flags(0x0078) Ver(0x0007) |
//! | 2..4 | protocol type (an EtherType: 0x0800 IPv4, 0x86DD IPv6, 0x6558 Ethernet, 0x880B PPP, 0x88BE ERSPAN...) |
//! | version 0 | [checksum(2) reserved1(2)] if C, [key(4)] if K, [sequence(4)] if S (RFC 2784 §2.1, RFC 2890 §2) |
//! | version 1 | payload length(2), call id(2), [sequence(4)] if S, [acknowledgment(4)] if A (RFC 2637 §4.1) |
//!
//! Version 0 requires the RFC 2784 Reserved0 bits other than K and S to be zero (the RFC 1701
//! routing, strict-route and recursion fields are not accepted). Version 1 requires C=0, R=0,
//! K=1, s=0, Recur=0, Flags=0 and protocol 0x880B; its payload length must equal the bytes
//! after the header. Such a flow is the PPTP data channel: it is labelled protocol `gre`,
//! application `pptp`. A Cisco keepalive reply (protocol type 0, nothing after the header) is
//! accepted. The header is checked again against what it carries where that is cheap (inner
//! IPv4/IPv6 lengths and checksum, PPP framing, the GRE checksum when present): `inner_verified`.
//!
//! Also home of the PPP frame parser shared with `l2tp` (RFC 1661 §2, RFC 1662 §3.1).

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Transport;

/// Registry entry: GRE flows (IP protocol 47).
pub static SPEC: Spec = Spec {
    name: "gre",
    family: Family::Tunnel,
    transports: Transports::OTHER_IP,
    payload_budget: 2,
    rank: rank::SPECIFIC,
    start: || Box::new(State),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// IANA protocol number of GRE.
pub const IP_PROTO_GRE: u8 = 47;
/// EtherType of PPP, the only protocol of enhanced GRE (RFC 2637 §4.1).
pub const ETHERTYPE_PPP: u16 = 0x880B;

const FLAG_C: u16 = 0x8000;
const FLAG_K: u16 = 0x2000;
const FLAG_S: u16 = 0x1000;
const FLAG_A: u16 = 0x0080;
/// RFC 2784 Reserved0 bits that must be zero in version 0 (all but K and S; R, s and Recur
/// are RFC 1701 fields that RFC 2784 retired).
const V0_RESERVED: u16 = 0x4000 | 0x0800 | 0x0700 | 0x00F8;
/// Bits that must be zero in enhanced GRE (C, R, s, Recur, Flags).
const V1_RESERVED: u16 = 0x8000 | 0x4000 | 0x0800 | 0x0700 | 0x0078;

/// A parsed GRE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreHeader {
    /// 0 (RFC 2784) or 1 (PPTP enhanced GRE).
    pub version: u8,
    pub protocol: u16,
    pub key: Option<u32>,
    pub sequence: Option<u32>,
    /// Version 1 only.
    pub ack: Option<u32>,
    /// Version 1: the call id (low 16 bits of the key field).
    pub call_id: Option<u16>,
    pub checksum_present: bool,
    /// Offset of the encapsulated packet.
    pub header_len: usize,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_be_bytes)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
}

/// True when the 16-bit one's complement sum of `b` (RFC 1071) is 0xFFFF, i.e. a checksum
/// field inside `b` is correct.
pub(crate) fn ones_complement_ok(b: &[u8]) -> bool {
    let mut sum: u32 = 0;
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum == 0xFFFF
}

/// An IPv4 header at the start of `b` (RFC 791 §3.1): version 4, IHL >= 5, a valid header
/// checksum, and a total length that fits in `wire_len` (equals it when `exact`), the length
/// on the wire of the bytes `b` begins (`b.len()` unless a snap length cut them).
pub(crate) fn ipv4_packet_ok(b: &[u8], wire_len: usize, exact: bool) -> bool {
    let (Some(&vihl), Some(total)) = (b.first(), be16(b, 2)) else {
        return false;
    };
    let ihl = usize::from(vihl & 0x0F) * 4;
    let total = usize::from(total);
    vihl >> 4 == 4
        && ihl >= 20
        && total >= ihl
        && (if exact {
            total == wire_len
        } else {
            total <= wire_len
        })
        && b.get(..ihl).is_some_and(ones_complement_ok)
}

/// An IPv6 header at the start of `b` (RFC 8200 §3): version 6 and 40 + payload length fits
/// in `wire_len` (equals it when `exact`; see [`ipv4_packet_ok`]).
pub(crate) fn ipv6_packet_ok(b: &[u8], wire_len: usize, exact: bool) -> bool {
    let (Some(&v), Some(plen)) = (b.first(), be16(b, 4)) else {
        return false;
    };
    let total = 40 + usize::from(plen);
    v >> 4 == 6
        && b.len() >= 40
        && (if exact {
            total == wire_len
        } else {
            total <= wire_len
        })
}

/// Parses a GRE header at offset 0 (RFC 2784 §2, RFC 2890 §2, RFC 2637 §4.1). `None` when a
/// reserved bit is set, the version is not 0 or 1, the header is truncated, or (version 1) the
/// protocol is not PPP or the payload length disagrees with the bytes after the header.
pub fn parse_gre(b: &[u8]) -> Option<GreHeader> {
    parse_gre_on_wire(b, b.len())
}

/// [`parse_gre`] of a packet `wire_len` bytes long on the wire, of which `b` may hold only
/// the start (a snap length cut it): lengths are checked against `wire_len`, and the checksum
/// only on a whole packet.
pub fn parse_gre_on_wire(b: &[u8], wire_len: usize) -> Option<GreHeader> {
    let whole = wire_len == b.len();
    let flags = be16(b, 0)?;
    let protocol = be16(b, 2)?;
    let version = (flags & 0x0007) as u8;
    match version {
        0 => {
            if flags & V0_RESERVED != 0 {
                return None;
            }
            let checksum_present = flags & FLAG_C != 0;
            let mut at = 4;
            if checksum_present {
                // Reserved1 must be zero (RFC 2784 §2.4).
                if be16(b, 6)? != 0 {
                    return None;
                }
                at += 4;
            }
            let key = if flags & FLAG_K != 0 {
                at += 4;
                Some(be32(b, at - 4)?)
            } else {
                None
            };
            let sequence = if flags & FLAG_S != 0 {
                at += 4;
                Some(be32(b, at - 4)?)
            } else {
                None
            };
            // A protocol type is an EtherType (>= 0x0600); 0 only for an empty keepalive reply.
            if protocol < 0x0600 && !(protocol == 0 && wire_len == at) {
                return None;
            }
            if checksum_present && whole && !ones_complement_ok(b) {
                return None;
            }
            Some(GreHeader {
                version,
                protocol,
                key,
                sequence,
                ack: None,
                call_id: None,
                checksum_present,
                header_len: at,
            })
        }
        1 => {
            if flags & V1_RESERVED != 0 || flags & FLAG_K == 0 || protocol != ETHERTYPE_PPP {
                return None;
            }
            let payload_len = usize::from(be16(b, 4)?);
            let call_id = be16(b, 6)?;
            let mut at = 8;
            let sequence = if flags & FLAG_S != 0 {
                at += 4;
                Some(be32(b, at - 4)?)
            } else {
                None
            };
            let ack = if flags & FLAG_A != 0 {
                at += 4;
                Some(be32(b, at - 4)?)
            } else {
                None
            };
            // No sequence number means no payload (RFC 2637 §4.1: S set "if payload present").
            if wire_len.checked_sub(at) != Some(payload_len)
                || (sequence.is_none() && payload_len != 0)
            {
                return None;
            }
            Some(GreHeader {
                version,
                protocol,
                key: Some(be32(b, 4)?),
                sequence,
                ack,
                call_id: Some(call_id),
                checksum_present: false,
                header_len: at,
            })
        }
        _ => None,
    }
}

/// A parsed PPP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PppFrame {
    /// Address 0xFF and control 0x03 present (RFC 1662 §3.1); absent after ACFC.
    pub address_control: bool,
    pub protocol: u16,
    /// The information field checked out for the protocol (IP header, control-protocol length).
    pub inner_verified: bool,
}

/// PPP protocols whose packets are code(1) identifier(1) length(2) (RFC 1661 §5): LCP
/// 0xC021, PAP 0xC023 (RFC 1334), CHAP 0xC223 (RFC 1994), IPCP 0x8021 (RFC 1332), IPv6CP
/// 0x8057 (RFC 5072), CCP 0x80FD (RFC 1962), ECP 0x8053 (RFC 1968).
const PPP_CONTROL_PROTOCOLS: [u16; 7] = [0xC021, 0xC023, 0xC223, 0x8021, 0x8057, 0x80FD, 0x8053];

/// Parses a PPP frame: optional 0xFF 0x03, a protocol field (1 byte if compressed, RFC 1661
/// §6.5; numbers are odd with an even high octet, §2), then checks the information field:
/// IPv4 (0x0021) and IPv6 (0x0057) headers, or a control packet (code 1..=15, length >= 4 and
/// within the frame). `None` for a malformed protocol field or a failed check of a known
/// protocol; unknown protocols parse with `inner_verified: false`.
pub fn parse_ppp(b: &[u8]) -> Option<PppFrame> {
    parse_ppp_on_wire(b, b.len())
}

/// [`parse_ppp`] of a frame `wire_len` bytes long on the wire (see [`parse_gre_on_wire`]).
pub fn parse_ppp_on_wire(b: &[u8], wire_len: usize) -> Option<PppFrame> {
    let info_wire = |info: &[u8]| wire_len.saturating_sub(b.len() - info.len());
    let (address_control, rest) = match b {
        [0xFF, 0x03, rest @ ..] => (true, rest),
        _ => (false, b),
    };
    let first = *rest.first()?;
    let (protocol, info) = if first & 1 == 1 {
        (u16::from(first), rest.get(1..)?)
    } else {
        (be16(rest, 0)?, rest.get(2..)?)
    };
    if protocol & 0x0001 == 0 || protocol & 0x0100 != 0 {
        return None;
    }
    let inner_verified = match protocol {
        0x0021 => ipv4_packet_ok(info, info_wire(info), false),
        0x0057 => ipv6_packet_ok(info, info_wire(info), false),
        p if PPP_CONTROL_PROTOCOLS.contains(&p) => {
            let code = *info.first()?;
            let len = usize::from(be16(info, 2)?);
            (1..=15).contains(&code) && len >= 4 && len <= info_wire(info)
        }
        _ => {
            return Some(PppFrame {
                address_control,
                protocol,
                inner_verified: false,
            })
        }
    };
    inner_verified.then_some(PppFrame {
        address_control,
        protocol,
        inner_verified,
    })
}

/// Checks what a version-0 GRE header says it carries, where that is cheap; `inner_wire` is
/// the inner packet's length on the wire.
fn inner_verified(h: &GreHeader, inner: &[u8], inner_wire: usize) -> bool {
    match h.protocol {
        0x0800 => ipv4_packet_ok(inner, inner_wire, true),
        0x86DD => ipv6_packet_ok(inner, inner_wire, true),
        // Transparent Ethernet bridging: at least an Ethernet header.
        0x6558 => inner.len() >= 14,
        // ERSPAN type II / III (version field in the top nibble: 1 / 2).
        0x88BE => inner.first().is_some_and(|b| b >> 4 == 1),
        0x22EB => inner.first().is_some_and(|b| b >> 4 == 2),
        0x0000 => inner_wire == 0,
        _ => false,
    }
}

/// Per-flow state: the first GRE payload decides.
#[derive(Debug, Default, Clone)]
pub struct State;

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        if p.transport != Transport::Other(IP_PROTO_GRE) {
            return Step::NotThis;
        }
        let Some(h) = parse_gre_on_wire(p.bytes, p.wire_len()) else {
            return Step::NotThis;
        };
        let inner = p.bytes.get(h.header_len..).unwrap_or_default();
        let inner_wire = p.wire_len().saturating_sub(h.header_len);
        let mut v = Verdict::new(Confidence::OneMessage)
            .fact("version", h.version)
            .fact("protocol_type", h.protocol);
        if let Some(k) = h.key.filter(|_| h.version == 0) {
            v = v.fact("key", k);
        }
        if h.checksum_present && p.is_whole() {
            v = v.fact("checksum_ok", true);
        }
        if h.version == 1 {
            // RFC 2637 §4.1: enhanced GRE is PPTP's data channel.
            v.application = Some("pptp");
            if let Some(call_id) = h.call_id {
                v = v.fact("call_id", call_id);
            }
            v = v.fact("payload_len", inner_wire);
            if !inner.is_empty() {
                match parse_ppp_on_wire(inner, inner_wire) {
                    Some(ppp) => {
                        v = v
                            .fact("ppp_protocol", ppp.protocol)
                            .fact("inner_verified", ppp.inner_verified);
                    }
                    None => return Step::NotThis,
                }
            }
        } else {
            v = v.fact("inner_verified", inner_verified(&h, inner, inner_wire));
        }
        Step::Match(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::{FingerprintState, FlowContext};
    use crate::flow::Direction;
    use proptest::prelude::*;

    fn pl(transport: Transport, bytes: &[u8]) -> Payload<'_> {
        Payload::test(Direction::ToServer, bytes)
            .over(transport)
            .ports(0, 0)
    }

    fn decide(bytes: &[u8]) -> Option<Verdict> {
        match State.observe(&pl(Transport::Other(IP_PROTO_GRE), bytes)) {
            Step::Match(v) => Some(v),
            _ => None,
        }
    }

    /// gre.pcapng frame 1 (bytes 38.., 346 bytes).
    const GRE_PPTP_SIP: [u8; 346] = [
        0x30, 0x81, 0x88, 0x0b, 0x01, 0x4a, 0x98, 0x50, 0x00, 0x00, 0x00, 0x6a, 0x00, 0x00, 0x00,
        0x8c, 0xff, 0x03, 0x00, 0x21, 0x45, 0xa0, 0x01, 0x46, 0x38, 0xc1, 0x00, 0x00, 0x3f, 0x11,
        0x4d, 0xfb, 0xc0, 0xa8, 0x0a, 0xd2, 0xc0, 0xa8, 0x67, 0x28, 0x13, 0xc4, 0x13, 0xc4, 0x01,
        0x32, 0x57, 0xd5, 0x53, 0x49, 0x50, 0x2f, 0x32, 0x2e, 0x30, 0x20, 0x31, 0x30, 0x30, 0x20,
        0x54, 0x72, 0x79, 0x69, 0x6e, 0x67, 0x0d, 0x0a, 0x56, 0x69, 0x61, 0x3a, 0x20, 0x53, 0x49,
        0x50, 0x2f, 0x32, 0x2e, 0x30, 0x2f, 0x55, 0x44, 0x50, 0x20, 0x31, 0x39, 0x32, 0x2e, 0x31,
        0x36, 0x38, 0x2e, 0x31, 0x30, 0x33, 0x2e, 0x34, 0x30, 0x3a, 0x35, 0x30, 0x36, 0x30, 0x3b,
        0x72, 0x70, 0x6f, 0x72, 0x74, 0x3d, 0x35, 0x30, 0x36, 0x30, 0x3b, 0x72, 0x65, 0x63, 0x65,
        0x69, 0x76, 0x65, 0x64, 0x3d, 0x31, 0x39, 0x32, 0x2e, 0x31, 0x36, 0x38, 0x2e, 0x31, 0x30,
        0x33, 0x2e, 0x34, 0x30, 0x3b, 0x62, 0x72, 0x61, 0x6e, 0x63, 0x68, 0x3d, 0x7a, 0x39, 0x68,
        0x47, 0x34, 0x62, 0x4b, 0x5f, 0x41, 0x49, 0x32, 0x30, 0x30, 0x30, 0x41, 0x75, 0x67, 0x30,
        0x36, 0x34, 0x39, 0x31, 0x33, 0x36, 0x37, 0x32, 0x32, 0x37, 0x31, 0x31, 0x30, 0x0d, 0x0a,
        0x54, 0x6f, 0x3a, 0x20, 0x3c, 0x73, 0x69, 0x70, 0x3a, 0x32, 0x37, 0x31, 0x40, 0x31, 0x39,
        0x32, 0x2e, 0x31, 0x36, 0x38, 0x2e, 0x31, 0x30, 0x2e, 0x32, 0x31, 0x30, 0x3e, 0x0d, 0x0a,
        0x46, 0x72, 0x6f, 0x6d, 0x3a, 0x20, 0x3c, 0x73, 0x69, 0x70, 0x3a, 0x32, 0x38, 0x31, 0x40,
        0x31, 0x39, 0x32, 0x2e, 0x31, 0x36, 0x38, 0x2e, 0x31, 0x30, 0x33, 0x2e, 0x34, 0x30, 0x3e,
        0x3b, 0x74, 0x61, 0x67, 0x3d, 0x41, 0x49, 0x43, 0x43, 0x46, 0x38, 0x30, 0x35, 0x45, 0x35,
        0x37, 0x38, 0x43, 0x45, 0x36, 0x34, 0x30, 0x33, 0x0d, 0x0a, 0x43, 0x61, 0x6c, 0x6c, 0x2d,
        0x49, 0x44, 0x3a, 0x20, 0x41, 0x49, 0x31, 0x37, 0x33, 0x37, 0x41, 0x42, 0x35, 0x34, 0x39,
        0x31, 0x41, 0x44, 0x43, 0x33, 0x39, 0x32, 0x40, 0x31, 0x39, 0x32, 0x2e, 0x31, 0x36, 0x38,
        0x2e, 0x31, 0x30, 0x33, 0x2e, 0x34, 0x30, 0x0d, 0x0a, 0x43, 0x53, 0x65, 0x71, 0x3a, 0x20,
        0x31, 0x20, 0x49, 0x4e, 0x56, 0x49, 0x54, 0x45, 0x0d, 0x0a, 0x43, 0x6f, 0x6e, 0x74, 0x65,
        0x6e, 0x74, 0x2d, 0x4c, 0x65, 0x6e, 0x67, 0x74, 0x68, 0x3a, 0x20, 0x30, 0x0d, 0x0a, 0x0d,
        0x0a,
    ];
    /// gre-pptp.pcap frame 2 (bytes 78.., 190 bytes).
    const GRE_PPTP_NO_ACK: [u8; 190] = [
        0x30, 0x01, 0x88, 0x0b, 0x00, 0xb2, 0x00, 0x11, 0x00, 0x08, 0x3a, 0xb8, 0xff, 0x03, 0x00,
        0x21, 0x45, 0x00, 0x00, 0xae, 0x03, 0x06, 0x00, 0x00, 0x32, 0x11, 0x9d, 0x16, 0x08, 0x08,
        0x08, 0x08, 0xac, 0x10, 0x2c, 0x03, 0x00, 0x35, 0x9f, 0x40, 0x00, 0x9a, 0xbb, 0xda, 0xa6,
        0x2c, 0x81, 0x83, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x35, 0x78, 0x71, 0x74,
        0x2d, 0x64, 0x65, 0x74, 0x65, 0x63, 0x74, 0x2d, 0x6d, 0x6f, 0x64, 0x65, 0x32, 0x2d, 0x39,
        0x37, 0x37, 0x31, 0x32, 0x65, 0x38, 0x38, 0x2d, 0x31, 0x36, 0x37, 0x61, 0x2d, 0x34, 0x35,
        0x62, 0x39, 0x2d, 0x39, 0x33, 0x65, 0x65, 0x2d, 0x39, 0x31, 0x33, 0x31, 0x34, 0x30, 0x65,
        0x37, 0x36, 0x36, 0x37, 0x38, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x06, 0x00, 0x01,
        0x00, 0x00, 0x02, 0xf5, 0x00, 0x40, 0x01, 0x61, 0x0c, 0x72, 0x6f, 0x6f, 0x74, 0x2d, 0x73,
        0x65, 0x72, 0x76, 0x65, 0x72, 0x73, 0x03, 0x6e, 0x65, 0x74, 0x00, 0x05, 0x6e, 0x73, 0x74,
        0x6c, 0x64, 0x0c, 0x76, 0x65, 0x72, 0x69, 0x73, 0x69, 0x67, 0x6e, 0x2d, 0x67, 0x72, 0x73,
        0x03, 0x63, 0x6f, 0x6d, 0x00, 0x78, 0x0d, 0x09, 0x09, 0x00, 0x00, 0x07, 0x08, 0x00, 0x00,
        0x03, 0x84, 0x00, 0x09, 0x3a, 0x80, 0x00, 0x01, 0x51, 0x80,
    ];
    /// various_gre.pcap frame 12 (bytes 38.., 8 bytes).
    const GRE_KEEPALIVE_REPLY: [u8; 8] = [0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28];
    /// various_gre.pcap frame 25 (bytes 38.., 116 bytes).
    const GRE_CMD_ICMP: [u8; 116] = [
        0x20, 0x00, 0x89, 0x09, 0x00, 0x00, 0x00, 0x28, 0x08, 0x00, 0x01, 0x01, 0x00, 0x01, 0x00,
        0x00, 0x45, 0x00, 0x00, 0x64, 0x00, 0x05, 0x00, 0x00, 0xff, 0x01, 0x61, 0x04, 0xac, 0x11,
        0x01, 0x36, 0xac, 0x11, 0x01, 0x37, 0x08, 0x00, 0x64, 0xfe, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x0c, 0x19, 0x3f, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd,
        0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab,
        0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd,
        0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab,
        0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd,
    ];

    /// PPTP's enhanced GRE cut by a snap length (the inner IPv4 header kept, the rest not):
    /// the payload length is checked on the wire, so it still parses, the inner header still
    /// verifies, and a length that disagrees with the wire still fails.
    #[test]
    fn gre_cut_by_a_snap_length_is_read_on_wire_lengths() {
        let kept = 16 + 4 + 20;
        let wire = GRE_PPTP_SIP.len();
        assert!(parse_gre(&GRE_PPTP_SIP[..kept]).is_none());
        let h = parse_gre_on_wire(&GRE_PPTP_SIP[..kept], wire).expect("parses on the wire length");
        assert_eq!(h.header_len, 16);
        assert!(parse_gre_on_wire(&GRE_PPTP_SIP[..kept], wire - 1).is_none());
        let cut =
            pl(Transport::Other(IP_PROTO_GRE), &GRE_PPTP_SIP[..kept]).cut((wire - kept) as u16);
        match State.observe(&cut) {
            Step::Match(v) => {
                assert_eq!(v.application, Some("pptp"));
                assert_eq!(v.evidence.get("inner_verified"), Some(&true.into()));
                assert_eq!(v.evidence.get("payload_len"), Some(&(wire - 16).into()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn enhanced_gre_is_pptp_data_channel() {
        let h = parse_gre(&GRE_PPTP_SIP).expect("gre");
        assert_eq!(
            (h.version, h.protocol, h.call_id, h.header_len),
            (1, ETHERTYPE_PPP, Some(0x9850), 16)
        );
        let v = decide(&GRE_PPTP_SIP).expect("match");
        assert_eq!(v.application, Some("pptp"));
        assert_eq!(
            v.evidence.get("ppp_protocol"),
            Some(&crate::fingerprint::Fact::Int(0x21))
        );
        assert_eq!(
            v.evidence.get("inner_verified"),
            Some(&crate::fingerprint::Fact::Bool(true))
        );
        let v = decide(&GRE_PPTP_NO_ACK).expect("match");
        assert_eq!(v.application, Some("pptp"));
    }

    #[test]
    fn version_0_keepalive_and_cisco_metadata() {
        let v = decide(&GRE_KEEPALIVE_REPLY).expect("match");
        assert_eq!(v.application, None);
        assert_eq!(
            v.evidence.get("key"),
            Some(&crate::fingerprint::Fact::Int(0x28))
        );
        assert!(decide(&GRE_CMD_ICMP).is_some());
    }

    #[test]
    fn ipv4_in_gre_with_checksum() {
        // GRE with C bit over a 20-byte IPv4 header (built from the fixture's inner IPv4 header).
        assert!(ipv4_packet_ok(
            &GRE_PPTP_SIP[20..],
            GRE_PPTP_SIP.len() - 20,
            true
        ));
        let inner = &GRE_PPTP_SIP[20..40];
        let mut pkt = vec![0x80, 0x00, 0x08, 0x00, 0, 0, 0, 0];
        pkt.extend_from_slice(inner);
        pkt[10..12].copy_from_slice(&20u16.to_be_bytes());
        pkt[18..20].copy_from_slice(&[0, 0]);
        // Recompute the inner IPv4 header checksum, then the GRE checksum.
        let fix = |b: &mut [u8], at: usize| {
            let mut sum: u32 = b
                .chunks(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
                .sum();
            while sum > 0xFFFF {
                sum = (sum & 0xFFFF) + (sum >> 16);
            }
            b[at..at + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        };
        fix(&mut pkt[8..], 10);
        fix(&mut pkt, 4);
        let v = decide(&pkt).expect("match");
        assert_eq!(
            v.evidence.get("inner_verified"),
            Some(&crate::fingerprint::Fact::Bool(true))
        );
        pkt[20] ^= 1;
        assert!(decide(&pkt).is_none(), "bad checksum");
    }

    #[test]
    fn near_misses_are_rejected() {
        // RFC 1701 routing bit, version 2, a bad PPTP payload length, a non-PPP v1.
        assert!(parse_gre(&[0x40, 0x00, 0x08, 0x00]).is_none());
        assert!(parse_gre(&[0x00, 0x02, 0x08, 0x00]).is_none());
        let mut bad = GRE_PPTP_SIP;
        bad[5] ^= 1;
        assert!(parse_gre(&bad).is_none());
        let mut bad = GRE_PPTP_SIP;
        bad[3] = 0x00;
        assert!(parse_gre(&bad).is_none());
        // Protocol type below 0x0600 with a payload.
        assert!(parse_gre(&[0x00, 0x00, 0x00, 0x21, 1, 2, 3, 4]).is_none());
        // Not GRE at all: offered under another IP protocol, or DNS bytes.
        assert_eq!(
            State.observe(&pl(Transport::Other(50), &GRE_KEEPALIVE_REPLY)),
            Step::NotThis
        );
        assert!(decide(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00").is_none());
    }

    #[test]
    fn ppp_frames() {
        // L2TP fixture's PPP LCP Echo-Request (l2tp.pcap frame 1).
        let lcp = [
            0xff, 0x03, 0xc0, 0x21, 0x09, 0x48, 0x00, 0x0c, 0xc1, 0x34, 0x39, 0x22, 0xe7, 0xe1,
            0x8f, 0xf6,
        ];
        assert_eq!(
            parse_ppp(&lcp),
            Some(PppFrame {
                address_control: true,
                protocol: 0xC021,
                inner_verified: true
            })
        );
        let mut long = lcp;
        long[7] = 0x40;
        assert!(parse_ppp(&long).is_none());
        assert!(
            parse_ppp(&[0xff, 0x03, 0xc0, 0x20]).is_none(),
            "even protocol"
        );
        assert!(parse_ppp(&[]).is_none());
    }

    static REG: [&Spec; 1] = [&SPEC];

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_gre(&bytes);
            let _ = parse_ppp(&bytes);
            let _ = State.observe(&pl(Transport::Other(IP_PROTO_GRE), &bytes));
            let mut fs = FingerprintState::default();
            for _ in 0..4 {
                fs.observe(&REG, &pl(Transport::Other(IP_PROTO_GRE), &bytes));
            }
            let ctx = FlowContext {
                packets: [4, 0],
                payload_bytes: [0, 0],
                payload_packets: [4, 0],
                ..FlowContext::test(Transport::Other(IP_PROTO_GRE), 0, 0)
            };
            prop_assert!(fs.finish(&REG, &ctx).matches.len() <= 1);
        }
    }
}
