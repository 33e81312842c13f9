//! IKE: ISAKMP/IKEv1 (RFC 2408 §3.1, RFC 2409) and IKEv2 (RFC 7296 §3.1) over UDP, including
//! NAT traversal on port 4500 behind the 4-byte non-ESP marker (RFC 3948 §2.2).
//!
//! The 28-byte header (big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | initiator SPI (cookie), never zero |
//! | 8..16 | responder SPI (zero in the first message of IKE_SA_INIT / main mode) |
//! | 16 | next payload |
//! | 17 | major/minor version: 0x10 (IKEv1) or 0x20 (IKEv2) |
//! | 18 | exchange type: IKEv1 1..=6, 32 quick mode, 33 new group; IKEv2 34..=37, 38, 43, 44 |
//! | 19 | flags: IKEv1 E/C/A (0x07); IKEv2 I/V/R (0x38); other bits zero |
//! | 20..24 | message id |
//! | 24..28 | length of the whole message |
//!
//! Then a chain of generic payload headers (next payload, reserved / critical bit, 16-bit
//! length) that must end exactly at the message length; it is walked until an encrypted part
//! (IKEv1 E flag, IKEv2 SK payload 46 or SKF 53). The length must equal the UDP payload, or
//! exceed it when the datagram was IP-fragmented (the decoder keeps first fragments only); the
//! walk then stops at the end of the bytes present. A message from the other side with the
//! same initiator SPI makes BothDirections; a lone valid message is OneMessage at the end.

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};

/// Registry entry: IKE over UDP (ports 500 and 4500 by registration; any port is parsed).
pub static SPEC: Spec = Spec {
    name: "ipsec_ike",
    family: Family::Vpn,
    transports: Transports::UDP,
    payload_budget: 6,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// ISAKMP header length.
pub const HEADER_LEN: usize = 28;
/// IKEv2 Encrypted and Encrypted Fragment payload types (RFC 7296 §3.14, RFC 7383 §2.5).
const V2_ENCRYPTED: [u8; 2] = [46, 53];
/// IKEv1 Vendor ID (RFC 2408 §3.16) and IKEv2 Vendor ID (RFC 7296 §3.12) payload types.
const VENDOR_ID: [u8; 2] = [13, 43];

/// The facts of one IKE message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeMessage {
    /// 1 or 2.
    pub version: u8,
    pub initiator_spi: u64,
    pub responder_spi: u64,
    pub exchange: u8,
    pub flags: u8,
    pub message_id: u32,
    pub length: u32,
    /// Payload headers walked before the end, the encrypted part or the end of the bytes.
    pub payloads: u8,
    pub vendor_ids: u8,
    pub encrypted: bool,
    /// The message is longer than the bytes present (first IP fragment).
    pub truncated: bool,
    /// A 4-byte non-ESP marker preceded the header (RFC 3948 §2.2).
    pub non_esp_marker: bool,
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

fn be64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
}

/// IKEv1 payload types: RFC 2408 §3.1 (1..=13), mode-config attributes 14 (draft), SAK/SAT/KD
/// 15..=17 (RFC 6407 GDOI uses 15-18), NAT-D/NAT-OA 20/21 (RFC 3947), private use 128..=255
/// (which also covers the pre-RFC NAT-T drafts' 130/131).
fn v1_payload_ok(t: u8) -> bool {
    matches!(t, 1..=18 | 20 | 21 | 128..=255)
}

/// IKEv2 payload types: RFC 7296 §3.2 (33..=48), GSPM 49 (RFC 6467), group key 50..=52
/// (RFC 9838 drafts), SKF 53 (RFC 7383), PS 54 (RFC 8019 puzzle), private use 128..=255.
fn v2_payload_ok(t: u8) -> bool {
    matches!(t, 33..=54 | 128..=255)
}

/// Parses an ISAKMP/IKE message at the start of `b` (after any non-ESP marker was removed by
/// the caller). See the module table for the checks.
pub fn parse_ike(b: &[u8]) -> Option<IkeMessage> {
    let initiator_spi = be64(b, 0).filter(|&s| s != 0)?;
    let responder_spi = be64(b, 8)?;
    let first_payload = *b.get(16)?;
    let version = match *b.get(17)? {
        0x10 => 1,
        0x20 => 2,
        _ => return None,
    };
    let exchange = *b.get(18)?;
    let flags = *b.get(19)?;
    let message_id = be32(b, 20)?;
    let length = be32(b, 24)?;
    let (exchange_ok, flags_ok) = match version {
        1 => (matches!(exchange, 1..=6 | 32 | 33), flags & !0x07 == 0),
        _ => (matches!(exchange, 34..=38 | 43 | 44), flags & !0x38 == 0),
    };
    let total = usize::try_from(length).ok()?;
    if !exchange_ok || !flags_ok || total < HEADER_LEN || total < b.len() || total > 0xFFFF {
        return None;
    }
    let truncated = total > b.len();
    let payload_ok = if version == 1 {
        v1_payload_ok
    } else {
        v2_payload_ok
    };
    let encrypted_v1 = version == 1 && flags & 0x01 != 0;
    let mut msg = IkeMessage {
        version,
        initiator_spi,
        responder_spi,
        exchange,
        flags,
        message_id,
        length,
        payloads: 0,
        vendor_ids: 0,
        encrypted: encrypted_v1,
        truncated,
        non_esp_marker: false,
    };
    if encrypted_v1 {
        // The body is ciphertext; still, the first payload type must be a known one, and
        // an encrypted body is a whole number of cipher blocks (at least 8 bytes).
        return (payload_ok(first_payload) && (total - HEADER_LEN) % 8 == 0 && total > HEADER_LEN)
            .then_some(msg);
    }
    let mut next = first_payload;
    let mut at = HEADER_LEN;
    while next != 0 {
        if !payload_ok(next) {
            return None;
        }
        let Some(hdr) = b.get(at..at + 4) else {
            // Out of bytes: only acceptable when the message was cut short.
            return (truncated && msg.payloads > 0).then_some(msg);
        };
        let plen = usize::from(be16(hdr, 2)?);
        // IKEv1 reserved octet is zero; IKEv2 allows only the critical bit (0x80).
        let reserved_ok = if version == 1 {
            hdr[1] == 0
        } else {
            hdr[1] & 0x7F == 0
        };
        if !reserved_ok || plen < 4 || at + plen > total {
            return None;
        }
        msg.payloads = msg.payloads.saturating_add(1);
        if VENDOR_ID.contains(&next) {
            msg.vendor_ids = msg.vendor_ids.saturating_add(1);
        }
        if version == 2 && V2_ENCRYPTED.contains(&next) {
            // The encrypted payload is the last one (RFC 7296 §3.14).
            msg.encrypted = true;
            return (at + plen == total).then_some(msg);
        }
        next = hdr[0];
        at += plen;
    }
    (at == total).then_some(msg)
}

/// Parses a UDP payload as IKE, skipping a non-ESP marker (four zero bytes, RFC 3948 §2.2).
pub fn parse_udp_payload(b: &[u8]) -> Option<IkeMessage> {
    match b {
        [0, 0, 0, 0, rest @ ..] => parse_ike(rest).map(|m| IkeMessage {
            non_esp_marker: true,
            ..m
        }),
        _ => parse_ike(b),
    }
}

/// Per-flow state: the first valid message and whether the other side echoed its SPI.
#[derive(Debug, Default, Clone)]
pub struct State {
    first: Option<(usize, IkeMessage)>,
    messages: u8,
}

impl State {
    fn verdict(&self, confidence: Confidence, echo: bool) -> Option<Verdict> {
        let (_, m) = self.first?;
        let mut v = Verdict::new(confidence)
            .fact("ike_version", m.version)
            .fact("exchange_type", m.exchange)
            .fact("length_matches", !m.truncated)
            .fact("payloads", m.payloads)
            .fact("messages", self.messages);
        if m.vendor_ids > 0 {
            v = v.fact("vendor_ids", m.vendor_ids);
        }
        if m.non_esp_marker {
            v = v.fact("non_esp_marker", true);
        }
        if echo {
            v = v.fact("initiator_spi_echoed", true);
        }
        Some(v)
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let dir = p.direction.index();
        // NAT-T keepalive (RFC 3948 §2.3) carries nothing.
        if p.bytes == [0xFF] {
            return Step::NeedMore;
        }
        let Some(m) = parse_udp_payload(p.bytes) else {
            // ESP-in-UDP shares the 4500 flow; once IKE was seen, other payloads are ignored.
            return if self.first.is_some() {
                Step::NeedMore
            } else {
                Step::NotThis
            };
        };
        self.messages = self.messages.saturating_add(1);
        match self.first {
            None => {
                self.first = Some((dir, m));
                Step::NeedMore
            }
            Some((first_dir, first))
                if first_dir != dir && first.initiator_spi == m.initiator_spi =>
            {
                self.verdict(Confidence::BothDirections, true)
                    .map_or(Step::NeedMore, Step::Match)
            }
            Some(_) => Step::NeedMore,
        }
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        self.verdict(Confidence::OneMessage, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::FingerprintState;
    use crate::flow::{Direction, Transport};
    use proptest::prelude::*;

    fn pl(direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes)
            .over(Transport::Udp)
            .nth(nth)
            .ports(500, 500)
    }

    fn ctx() -> FlowContext {
        FlowContext::test(Transport::Udp, 500, 500)
    }

    /// ikev2four.pcap frame 1 (udp.payload, 376 bytes).
    const V2_INIT_REQ: [u8; 376] = [
        0xa8, 0x88, 0x75, 0xa8, 0x19, 0x89, 0x92, 0xa6, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x21, 0x20, 0x22, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x78, 0x22, 0x00,
        0x00, 0x78, 0x00, 0x00, 0x00, 0x74, 0x01, 0x01, 0x00, 0x0c, 0x03, 0x00, 0x00, 0x0c, 0x01,
        0x00, 0x00, 0x0c, 0x80, 0x0e, 0x00, 0x80, 0x03, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x0c,
        0x80, 0x0e, 0x01, 0x00, 0x03, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x0c, 0x80, 0x0e, 0x00,
        0xc0, 0x03, 0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x03, 0x03, 0x00, 0x00, 0x08, 0x02, 0x00,
        0x00, 0x02, 0x03, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x08, 0x02,
        0x00, 0x00, 0x04, 0x03, 0x00, 0x00, 0x08, 0x03, 0x00, 0x00, 0x02, 0x03, 0x00, 0x00, 0x08,
        0x03, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x08, 0x03, 0x00, 0x00, 0x05, 0x03, 0x00, 0x00,
        0x08, 0x04, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x08, 0x04, 0x00, 0x00, 0x0e, 0x28, 0x00,
        0x00, 0x88, 0x00, 0x02, 0x00, 0x00, 0xb5, 0x44, 0x5b, 0xd6, 0x0c, 0xec, 0xe6, 0xfd, 0xcd,
        0x3c, 0x96, 0xa5, 0x2c, 0xbb, 0x7b, 0xb4, 0x26, 0xa8, 0xc7, 0xa0, 0xf5, 0x6a, 0x9c, 0x38,
        0xd1, 0xb1, 0xc4, 0xf0, 0xc3, 0xa6, 0xe8, 0xe7, 0xdb, 0xa5, 0xc7, 0x33, 0x9b, 0x6e, 0xd0,
        0x2e, 0x75, 0x71, 0x19, 0xdf, 0xb5, 0xb6, 0x93, 0x3c, 0xe9, 0x3b, 0x60, 0x49, 0x87, 0xfb,
        0xbc, 0x77, 0x22, 0x1b, 0x2a, 0x0c, 0x7c, 0xdd, 0x32, 0x78, 0x7e, 0xff, 0x10, 0x57, 0x2b,
        0xef, 0x54, 0x6c, 0x36, 0x14, 0x62, 0xf9, 0xda, 0x34, 0x84, 0x79, 0x69, 0xa4, 0x2e, 0x51,
        0xc7, 0x55, 0x99, 0x6b, 0xea, 0xc4, 0x2e, 0x6f, 0xba, 0x96, 0x1a, 0x75, 0xde, 0x0f, 0xc1,
        0xb2, 0x3f, 0x09, 0x93, 0x80, 0x89, 0x6e, 0xe8, 0x92, 0x02, 0x12, 0x2d, 0xed, 0xac, 0x1b,
        0xd5, 0x4a, 0xa8, 0x49, 0x4a, 0xc3, 0xd7, 0x40, 0xbe, 0x4d, 0x2a, 0x4c, 0xf3, 0x9d, 0x29,
        0x00, 0x00, 0x24, 0x61, 0x28, 0xeb, 0xd0, 0x23, 0xa8, 0x64, 0xe9, 0x4a, 0x7f, 0xfb, 0x74,
        0xbf, 0x7c, 0xce, 0x2f, 0xd4, 0x36, 0x73, 0x22, 0xb8, 0xb0, 0x73, 0xf9, 0x42, 0x28, 0x2b,
        0xd5, 0x2e, 0xbf, 0xe3, 0xe6, 0x29, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x40, 0x04, 0x44, 0x2f,
        0xfe, 0x5a, 0xea, 0x0c, 0xee, 0x4d, 0xba, 0xcc, 0x75, 0x8e, 0x80, 0x12, 0x33, 0xbd, 0xc0,
        0x9a, 0x0a, 0xbf, 0x00, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x40, 0x05, 0xba, 0x04, 0x1b, 0x5d,
        0xe5, 0x99, 0x55, 0x90, 0x0d, 0x81, 0x8a, 0xc5, 0x4e, 0x18, 0xb2, 0x36, 0x73, 0x9d, 0x9e,
        0x8b,
    ];
    /// ikev2four.pcap frame 2 (udp.payload, 60 bytes).
    const V2_INIT_RESP: [u8; 60] = [
        0xa8, 0x88, 0x75, 0xa8, 0x19, 0x89, 0x92, 0xa6, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x29, 0x20, 0x22, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x00,
        0x00, 0x20, 0x00, 0x00, 0x40, 0x06, 0x00, 0x00, 0x00, 0x01, 0xc2, 0x22, 0x1e, 0x50, 0xc1,
        0x6e, 0x12, 0x3f, 0x2b, 0x0c, 0x71, 0xae, 0xfc, 0xf0, 0xcb, 0x3b, 0x79, 0x87, 0x82, 0xc6,
    ];
    /// ipsec-ikev1-isakmp-main-mode.pcap frame 1 (udp.payload, 168 bytes).
    const V1_MAIN_1: [u8; 168] = [
        0xe4, 0x7a, 0x59, 0x1f, 0xd0, 0x57, 0x58, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x10, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa8, 0x0d, 0x00,
        0x00, 0x3c, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x30, 0x01,
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x28, 0x01, 0x01, 0x00, 0x00, 0x80, 0x01, 0x00, 0x07,
        0x80, 0x0e, 0x00, 0x80, 0x80, 0x02, 0x00, 0x02, 0x80, 0x04, 0x00, 0x02, 0x80, 0x03, 0x00,
        0x01, 0x80, 0x0b, 0x00, 0x01, 0x00, 0x0c, 0x00, 0x04, 0x00, 0x01, 0x51, 0x80, 0x0d, 0x00,
        0x00, 0x14, 0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e,
        0x95, 0x45, 0x2f, 0x0d, 0x00, 0x00, 0x14, 0x43, 0x9b, 0x59, 0xf8, 0xba, 0x67, 0x6c, 0x4c,
        0x77, 0x37, 0xae, 0x22, 0xea, 0xb8, 0xf5, 0x82, 0x0d, 0x00, 0x00, 0x14, 0x7d, 0x94, 0x19,
        0xa6, 0x53, 0x10, 0xca, 0x6f, 0x2c, 0x17, 0x9d, 0x92, 0x15, 0x52, 0x9d, 0x56, 0x00, 0x00,
        0x00, 0x14, 0x90, 0xcb, 0x80, 0x91, 0x3e, 0xbb, 0x69, 0x6e, 0x08, 0x63, 0x81, 0xb5, 0xec,
        0x42, 0x7b, 0x1f,
    ];
    /// ipsec-ikev1-isakmp-main-mode.pcap frame 2 (udp.payload, 108 bytes).
    const V1_MAIN_2: [u8; 108] = [
        0xe4, 0x7a, 0x59, 0x1f, 0xd0, 0x57, 0x58, 0x7f, 0xa0, 0x0b, 0x8e, 0xf0, 0x90, 0x2b, 0xb8,
        0xec, 0x01, 0x10, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x6c, 0x0d, 0x00,
        0x00, 0x3c, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x30, 0x01,
        0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x28, 0x01, 0x01, 0x00, 0x00, 0x80, 0x01, 0x00, 0x07,
        0x80, 0x0e, 0x00, 0x80, 0x80, 0x02, 0x00, 0x02, 0x80, 0x04, 0x00, 0x02, 0x80, 0x03, 0x00,
        0x01, 0x80, 0x0b, 0x00, 0x01, 0x00, 0x0c, 0x00, 0x04, 0x00, 0x01, 0x51, 0x80, 0x00, 0x00,
        0x00, 0x14, 0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e,
        0x95, 0x45, 0x2f,
    ];
    /// ipsec.cap frame 7 (udp.payload, 68 bytes).
    const V1_ENCRYPTED: [u8; 68] = [
        0xc6, 0xd1, 0x45, 0x92, 0x85, 0x15, 0x0c, 0x7e, 0x6e, 0x96, 0x1f, 0x01, 0xbf, 0x17, 0x9b,
        0x35, 0x05, 0x10, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x44, 0xbe, 0x02,
        0x70, 0x0f, 0x1d, 0xb3, 0xd6, 0x2c, 0xd7, 0x67, 0x6c, 0x70, 0x7e, 0x6b, 0x9b, 0xe9, 0xbc,
        0x0a, 0xd1, 0x6e, 0x12, 0x48, 0xa5, 0xf8, 0x3b, 0x7d, 0xee, 0xc8, 0x2d, 0x79, 0xcb, 0xcc,
        0xc7, 0x2d, 0x1e, 0x20, 0xd5, 0xaf, 0x89, 0xdd,
    ];
    /// ipsec_client.pcap frame 6 (bytes 42.., 96 bytes).
    const NATT_FIRST_FRAGMENT: [u8; 96] = [
        0x00, 0x00, 0x00, 0x00, 0x23, 0x86, 0x71, 0xc8, 0x03, 0x75, 0xa0, 0xfb, 0x73, 0xd1, 0x6a,
        0x42, 0xf6, 0x0e, 0xf7, 0xf0, 0x2e, 0x20, 0x23, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x0d, 0x8c, 0x23, 0x00, 0x0d, 0x70, 0x55, 0x1c, 0x1b, 0xb9, 0x79, 0x41, 0x54, 0xd4, 0xda,
        0x65, 0x9d, 0x91, 0x91, 0x56, 0xb3, 0x18, 0xbb, 0x5f, 0xeb, 0xd1, 0xcb, 0xbe, 0xab, 0xeb,
        0x09, 0x4a, 0xed, 0x68, 0x20, 0x90, 0x75, 0x97, 0xdf, 0x3d, 0xf4, 0x9d, 0xb7, 0xc7, 0x8a,
        0x98, 0x44, 0x48, 0x10, 0x4d, 0x05, 0x96, 0xf3, 0xe3, 0xd1, 0xe8, 0xa2, 0x17, 0xf9, 0xec,
        0xb8, 0x1d, 0x04, 0x8a, 0x9c, 0x6d,
    ];

    #[test]
    fn ikev2_sa_init_and_cookie_response() {
        let req = parse_ike(&V2_INIT_REQ).expect("request");
        assert_eq!(
            (req.version, req.exchange, req.responder_spi, req.truncated),
            (2, 34, 0, false)
        );
        let resp = parse_ike(&V2_INIT_RESP).expect("response");
        assert_eq!(resp.initiator_spi, req.initiator_spi);
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Direction::ToServer, 0, &V2_INIT_REQ)),
            Step::NeedMore
        );
        let Step::Match(v) = s.observe(&pl(Direction::ToClient, 0, &V2_INIT_RESP)) else {
            panic!("no match")
        };
        assert_eq!(v.confidence, Confidence::BothDirections);
    }

    #[test]
    fn ikev1_main_mode_and_encrypted_message() {
        let m1 = parse_ike(&V1_MAIN_1).expect("main mode 1");
        assert_eq!((m1.version, m1.exchange), (1, 2));
        assert!(m1.vendor_ids > 0);
        assert!(parse_ike(&V1_MAIN_2).is_some());
        let enc = parse_ike(&V1_ENCRYPTED).expect("encrypted");
        assert!(enc.encrypted);
    }

    #[test]
    fn nat_t_marker_and_first_fragment() {
        let m = parse_udp_payload(&NATT_FIRST_FRAGMENT).expect("IKE_AUTH");
        assert!(m.non_esp_marker && m.truncated && m.encrypted);
        assert_eq!(m.exchange, 35);
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Direction::ToServer, 0, &NATT_FIRST_FRAGMENT)),
            Step::NeedMore
        );
        assert_eq!(
            s.conclude(&ctx()).map(|v| v.confidence),
            Some(Confidence::OneMessage)
        );
    }

    #[test]
    fn near_misses_are_rejected() {
        // Length one byte off, a payload chain overrunning, version 3, zero initiator SPI.
        let mut bad = V1_MAIN_1;
        bad[27] -= 1;
        assert!(parse_ike(&bad).is_none());
        let mut bad = V2_INIT_REQ;
        bad[31] = 0xff;
        assert!(parse_ike(&bad).is_none());
        let mut bad = V2_INIT_REQ;
        bad[17] = 0x30;
        assert!(parse_ike(&bad).is_none());
        let mut bad = V2_INIT_REQ;
        bad[..8].copy_from_slice(&[0; 8]);
        assert!(parse_ike(&bad).is_none());
        // ESP-in-UDP, DNS, STUN, QUIC: excluded.
        let esp = [
            0x12, 0x34, 0x56, 0x78, 0, 0, 0, 1, 0xa7, 0x1a, 0x51, 0xde, 0x1c, 0xb9, 0x29, 0x23,
            0x8c, 0x4c, 0xab, 0x9e, 0xf2, 0x55, 0x0d, 0xb7, 0x64, 0x02, 0xc5, 0x01, 0xa2,
        ];
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
        let stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijklmnopqrstuvwxyz";
        let mut quic = vec![0xc3, 0, 0, 0, 1, 8];
        quic.resize(1200, 0);
        for b in [&esp[..], &dns[..], &stun[..], &quic[..]] {
            assert_eq!(
                State::default().observe(&pl(Direction::ToServer, 0, b)),
                Step::NotThis
            );
        }
    }

    static REG: [&Spec; 1] = [&SPEC];

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_udp_payload(&bytes);
            let mut header = V2_INIT_REQ[..28].to_vec();
            header.extend_from_slice(&bytes);
            let _ = parse_ike(&header);
            let mut fs = FingerprintState::default();
            for i in 0..8 {
                fs.observe(&REG, &pl(Direction::ToServer, i, &header));
                fs.observe(&REG, &pl(Direction::ToClient, i, &bytes));
            }
            prop_assert!(fs.finish(&REG, &ctx()).matches.len() <= 1);
        }
    }
}
