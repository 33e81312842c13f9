//! WireGuard: the four message types of the WireGuard whitepaper (Donenfeld, NDSS 2017, §5.4).
//!
//! Every WireGuard message starts with a one-byte type (1..=4) and three reserved zero bytes;
//! indexes are 32-bit little-endian, the transport counter is 64-bit little-endian.
//!
//! | type | message | length | fields after the 4-byte type |
//! |---|---|---|---|
//! | 1 | handshake initiation (§5.4.2) | 148 | sender index, ephemeral, static, timestamp, mac1, mac2 |
//! | 2 | handshake response (§5.4.3) | 92 | sender index, receiver index (= initiator's sender), ephemeral, empty, mac1, mac2 |
//! | 3 | cookie reply (§5.4.7) | 64 | receiver index, nonce, encrypted cookie |
//! | 4 | transport data (§5.4.6) | >= 32, ≡ 0 mod 16 | receiver index, counter (u64 LE), encrypted packet |
//!
//! Verdicts: an initiation answered by a response whose receiver index echoes the initiation's
//! sender index (BothDirections); mid-flow, transport streams with a constant receiver index and
//! a rising counter (both directions: BothDirections, one direction only: OneMessage). Handshakes
//! whose lengths differ from 148/92 (vendor variants such as TunnelBear's, which appends fields)
//! are accepted only when the whole index chain holds: initiation sender = response receiver and
//! response sender = receiver of the initiator's next transport message. Size alone never decides.
//! Every payload of the flow must parse as a WireGuard message (Tailscale disco messages sharing
//! the socket are skipped); anything else excludes the flow.
//!
//! **Cloudflare WARP** runs WireGuard with the three reserved bytes set to a per-device client
//! id that Cloudflare's edge routes on (the `client_id` of the WARP registration API; third-party
//! WARP clients call it "reserved" and must copy it into every message, and a stock kernel peer
//! needs it cleared on receipt because the specification requires zeros). Messages with
//! non-zero reserved bytes are therefore accepted only when each direction keeps one value
//! throughout the flow and the flow proves itself both ways (index echo or two transport
//! streams); the verdict then names the application `warp`. Size or a one-way stream alone
//! never decides such a flow.

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Direction;

/// Registry entry: WireGuard over UDP, any port.
pub static SPEC: Spec = Spec {
    name: "wireguard",
    family: Family::Vpn,
    transports: Transports::UDP,
    payload_budget: 8,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// Handshake initiation length (§5.4.2): 4 + 4 + 32 + 48 + 28 + 16 + 16.
pub const INITIATION_LEN: usize = 148;
/// Handshake response length (§5.4.3): 4 + 4 + 4 + 32 + 16 + 16 + 16.
pub const RESPONSE_LEN: usize = 92;
/// Cookie reply length (§5.4.7): 4 + 4 + 24 + 32.
pub const COOKIE_REPLY_LEN: usize = 64;
/// Smallest transport message (§5.4.6): 16-byte header + 16-byte Poly1305 tag (a keepalive).
pub const TRANSPORT_MIN_LEN: usize = 32;
/// Counters stop at REJECT_AFTER_MESSAGES = 2^60 (§6.1, table of constants).
const COUNTER_LIMIT: u64 = 1 << 60;
/// Largest extra length tolerated on a handshake variant (fields appended by vendors).
const VARIANT_EXTRA_MAX: usize = 128;
/// Largest counter step still counted as the same stream (loss and reordering tolerance).
const COUNTER_STEP_MAX: u64 = 1 << 16;
/// Tailscale disco magic "TS💬" (shares the WireGuard socket; skipped, see `tailscale`).
const DISCO_MAGIC: &[u8; 6] = b"TS\xf0\x9f\x92\xac";

/// One parsed WireGuard message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// Type 1; `standard` is false for a vendor variant longer than 148 bytes.
    Initiation { sender: u32, standard: bool },
    /// Type 2; `standard` is false for a vendor variant longer than 92 bytes.
    Response {
        sender: u32,
        receiver: u32,
        standard: bool,
    },
    /// Type 3, exactly 64 bytes.
    CookieReply { receiver: u32 },
    /// Type 4; `len` is the whole message length.
    Transport {
        receiver: u32,
        counter: u64,
        len: usize,
    },
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

/// Parses one UDP payload as a WireGuard message: type byte 1..=4 at offset 0, zero bytes at
/// 1..4, lengths as in the module table, non-zero indexes (they are random, §5.4.2), counter
/// below 2^60. Returns `None` for anything else.
pub fn parse_message(b: &[u8]) -> Option<Message> {
    parse_with_reserved(b, b.len()).and_then(|(m, reserved)| (reserved == [0, 0, 0]).then_some(m))
}

/// [`parse_message`] that accepts any value in the reserved bytes 1..4 and returns it (WARP
/// puts its client id there; see the module notes). `wire_len` is the message's length on the
/// wire, of which `b` may hold only the start (a snap length cut it): lengths are checked on
/// `wire_len`, and every field read lies within the first 16 bytes.
pub fn parse_with_reserved(b: &[u8], wire_len: usize) -> Option<(Message, [u8; 3])> {
    let head = b.get(..4)?;
    let reserved = [head[1], head[2], head[3]];
    parse_fields(b, wire_len.max(b.len())).map(|m| (m, reserved))
}

fn parse_fields(b: &[u8], len: usize) -> Option<Message> {
    let head = b.get(..4)?;
    let variant_ok =
        |std_len: usize| len == std_len || (len > std_len && len <= std_len + VARIANT_EXTRA_MAX);
    match head[0] {
        1 if variant_ok(INITIATION_LEN) => {
            let sender = le32(b, 4).filter(|&i| i != 0)?;
            Some(Message::Initiation {
                sender,
                standard: len == INITIATION_LEN,
            })
        }
        2 if variant_ok(RESPONSE_LEN) => {
            let sender = le32(b, 4).filter(|&i| i != 0)?;
            let receiver = le32(b, 8).filter(|&i| i != 0)?;
            Some(Message::Response {
                sender,
                receiver,
                standard: len == RESPONSE_LEN,
            })
        }
        3 if len == COOKIE_REPLY_LEN => {
            let receiver = le32(b, 4).filter(|&i| i != 0)?;
            Some(Message::CookieReply { receiver })
        }
        4 if len >= TRANSPORT_MIN_LEN && len % 16 == 0 => {
            let receiver = le32(b, 4).filter(|&i| i != 0)?;
            let counter = le64(b, 8).filter(|&c| c < COUNTER_LIMIT)?;
            Some(Message::Transport {
                receiver,
                counter,
                len,
            })
        }
        _ => None,
    }
}

/// A run of transport messages one way with one receiver index and a rising counter.
#[derive(Debug, Default, Clone, Copy)]
struct Stream {
    receiver: u32,
    last_counter: u64,
    run: u8,
}

impl Stream {
    fn push(&mut self, receiver: u32, counter: u64) {
        let rising = counter > self.last_counter && counter - self.last_counter <= COUNTER_STEP_MAX;
        if self.run > 0 && receiver == self.receiver && rising {
            self.run = self.run.saturating_add(1);
        } else {
            *self = Stream {
                receiver,
                last_counter: counter,
                run: 1,
            };
        }
        self.last_counter = counter;
    }
}

/// Per-flow state, indexed by [`Direction::index`] where per direction.
#[derive(Debug, Default, Clone)]
pub struct State {
    /// Latest initiation sent each way: (sender index, standard length).
    initiation: [Option<(u32, bool)>; 2],
    /// A response that echoed an initiation: (direction of the initiator, response sender index).
    echoed: Option<(Direction, u32)>,
    streams: [Stream; 2],
    standard_initiations: u8,
    /// Reserved bytes seen in each direction (each must keep one value).
    reserved: [Option<[u8; 3]>; 2],
}

impl State {
    fn handshake_verdict(initiator: Direction, variant: bool) -> Verdict {
        let mut v = Verdict::new(Confidence::BothDirections)
            .fact("handshake", "initiation+response")
            .fact("receiver_echoes_sender", true);
        if variant {
            v = v
                .fact("variant_lengths", true)
                .fact("data_uses_response_index", true);
        } else {
            v = v
                .fact("initiation_len", INITIATION_LEN)
                .fact("response_len", RESPONSE_LEN);
        }
        v.roles_reversed = initiator == Direction::ToClient;
        v
    }
}

impl State {
    /// True when either direction carries non-zero reserved bytes (WARP's client id).
    fn client_id_in_reserved(&self) -> bool {
        self.reserved.iter().flatten().any(|r| *r != [0, 0, 0])
    }

    /// Names WARP on a both-ways verdict whose messages carry a client id.
    fn warp(&self, mut v: Verdict) -> Verdict {
        if self.client_id_in_reserved() {
            v = v.fact("reserved_bytes", "nonzero_constant");
            v.application = Some("warp");
        }
        v
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        match self.observe_message(p) {
            Step::Match(v) if v.confidence == Confidence::BothDirections => {
                Step::Match(self.warp(v))
            }
            // One-way evidence with non-zero reserved bytes is too weak to call.
            Step::Match(_) if self.client_id_in_reserved() => Step::NotThis,
            step => step,
        }
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        if self.client_id_in_reserved() {
            return None;
        }
        self.conclude_standard()
    }
}

impl State {
    fn observe_message(&mut self, p: &Payload<'_>) -> Step {
        if p.bytes.starts_with(DISCO_MAGIC) {
            return Step::NeedMore;
        }
        let Some((msg, reserved)) = parse_with_reserved(p.bytes, p.wire_len()) else {
            return Step::NotThis;
        };
        let dir = p.direction.index();
        match self.reserved[dir] {
            Some(seen) if seen != reserved => return Step::NotThis,
            Some(_) => {}
            None => self.reserved[dir] = Some(reserved),
        }
        let other = p.direction.reverse().index();
        match msg {
            Message::Initiation { sender, standard } => {
                self.initiation[dir] = Some((sender, standard));
                if standard {
                    self.standard_initiations = self.standard_initiations.saturating_add(1);
                }
            }
            Message::Response {
                sender,
                receiver,
                standard,
            } => {
                if let Some((init_sender, init_standard)) = self.initiation[other] {
                    if init_sender == receiver {
                        if standard && init_standard {
                            return Step::Match(Self::handshake_verdict(
                                p.direction.reverse(),
                                false,
                            ));
                        }
                        self.echoed = Some((p.direction.reverse(), sender));
                    }
                }
            }
            Message::CookieReply { .. } => {}
            Message::Transport {
                receiver, counter, ..
            } => {
                if let Some((initiator, resp_sender)) = self.echoed {
                    if initiator == p.direction && receiver == resp_sender {
                        return Step::Match(Self::handshake_verdict(initiator, true));
                    }
                }
                self.streams[dir].push(receiver, counter);
                let (mine, theirs) = (self.streams[dir], self.streams[other]);
                if mine.run >= 2 && theirs.run >= 2 && mine.receiver != theirs.receiver {
                    return Step::Match(
                        Verdict::new(Confidence::BothDirections)
                            .fact("transport_streams", 2u8)
                            .fact("rising_counters", true)
                            .fact("last_counter", mine.last_counter),
                    );
                }
                if mine.run >= 4 {
                    return Step::Match(
                        Verdict::new(Confidence::OneMessage)
                            .fact("transport_streams", 1u8)
                            .fact("rising_counters", u64::from(mine.run))
                            .fact("last_counter", mine.last_counter),
                    );
                }
            }
        }
        Step::NeedMore
    }

    fn conclude_standard(&self) -> Option<Verdict> {
        let best_run = self.streams.iter().map(|s| s.run).max().unwrap_or(0);
        if best_run >= 3 {
            return Some(
                Verdict::new(Confidence::OneMessage)
                    .fact("transport_streams", 1u8)
                    .fact("rising_counters", best_run),
            );
        }
        if self.standard_initiations > 0 {
            return Some(
                Verdict::new(Confidence::OneMessage)
                    .fact("initiation_len", INITIATION_LEN)
                    .fact("initiations", self.standard_initiations),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::FingerprintState;
    use crate::flow::Transport;
    use proptest::prelude::*;

    fn pl(direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes)
            .over(Transport::Udp)
            .nth(nth)
            .ports(47278, 51820)
    }

    fn ctx() -> FlowContext {
        FlowContext::test(Transport::Udp, 47278, 51820)
    }

    /// Runs a sequence of (direction, bytes) through one detector; returns the final verdict.
    fn run(seq: &[(Direction, &[u8])]) -> Option<Verdict> {
        let mut s = State::default();
        let mut n = [0u8; 2];
        for (d, b) in seq {
            let i = d.index();
            match s.observe(&pl(*d, n[i], b)) {
                Step::Match(v) => return Some(v),
                Step::NotThis => return None,
                Step::NeedMore => {}
            }
            n[i] += 1;
        }
        s.conclude(&ctx())
    }

    /// 8-trace.pcap frame 1 (udp.payload, 148 bytes).
    const INITIATION: [u8; 148] = [
        0x01, 0x00, 0x00, 0x00, 0x16, 0xd0, 0x8b, 0x76, 0xe0, 0x22, 0xcc, 0xeb, 0x15, 0xe8, 0xac,
        0x30, 0xc7, 0x25, 0x68, 0x50, 0xd5, 0x0f, 0x08, 0x0b, 0x4c, 0x4e, 0xbf, 0xef, 0x4b, 0xb2,
        0x78, 0x6b, 0x96, 0x9c, 0x5d, 0xea, 0x14, 0xe2, 0xcb, 0x27, 0xaf, 0x07, 0x9c, 0xd0, 0x61,
        0x5c, 0xa5, 0x43, 0x95, 0x5f, 0x1b, 0xc6, 0x74, 0x34, 0x21, 0x53, 0x0e, 0x85, 0xfd, 0x5b,
        0x71, 0x11, 0xc0, 0x67, 0x51, 0x3f, 0x0b, 0xf5, 0xe7, 0xd7, 0x84, 0x9c, 0x7e, 0x7a, 0xe0,
        0x32, 0xbe, 0x82, 0x96, 0xd9, 0xb8, 0x0a, 0xf4, 0xa3, 0x17, 0x78, 0xf1, 0x61, 0x04, 0x4c,
        0xcd, 0x66, 0xd5, 0x7b, 0x9d, 0x0a, 0xb4, 0xc3, 0x5a, 0xcd, 0x4a, 0x4d, 0xad, 0x4a, 0x38,
        0x98, 0x38, 0xe3, 0x78, 0xef, 0xbf, 0xf4, 0x46, 0xfa, 0x83, 0xc0, 0xc2, 0xbd, 0xbb, 0xae,
        0x7e, 0x86, 0xf0, 0xde, 0xe5, 0xb1, 0xdb, 0x24, 0x08, 0xd7, 0xa6, 0xdb, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    /// 8-trace.pcap frame 2 (udp.payload, 92 bytes).
    const RESPONSE: [u8; 92] = [
        0x02, 0x00, 0x00, 0x00, 0x05, 0x33, 0x6e, 0x8e, 0x16, 0xd0, 0x8b, 0x76, 0x92, 0x58, 0x04,
        0x95, 0x77, 0x1f, 0xac, 0x5d, 0x3b, 0x66, 0xe1, 0x1b, 0x7b, 0x92, 0x9f, 0x06, 0x4d, 0x9a,
        0x7c, 0x99, 0x1a, 0xe2, 0xe9, 0x32, 0xa5, 0x7a, 0x63, 0x05, 0xb6, 0x43, 0xe8, 0x2d, 0x5e,
        0x03, 0x14, 0x9f, 0xfd, 0x36, 0xd5, 0xfc, 0xe4, 0xc3, 0x30, 0xea, 0xb1, 0x79, 0x04, 0x13,
        0x75, 0xfc, 0x7f, 0xac, 0x93, 0x1a, 0xf3, 0xcf, 0x05, 0x82, 0x06, 0xb5, 0x93, 0x58, 0xb2,
        0xde, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ];
    /// tunnelbear.pcap frame 1 (udp.payload, 204 bytes).
    const TB_INITIATION: [u8; 204] = [
        0x01, 0x00, 0x00, 0x00, 0x31, 0x66, 0x18, 0xac, 0x09, 0xad, 0x0e, 0x1c, 0xcd, 0xa1, 0x96,
        0xd9, 0xf8, 0xaf, 0x66, 0x27, 0xc3, 0x03, 0xd6, 0xd9, 0x81, 0x1f, 0xa0, 0xa0, 0x60, 0xb5,
        0x2f, 0x55, 0xd3, 0xe5, 0x36, 0xf8, 0x7d, 0xf3, 0x8d, 0x4c, 0x48, 0x88, 0x9e, 0x8e, 0xc0,
        0x0c, 0x25, 0xe0, 0xbf, 0xa8, 0xaf, 0x86, 0x33, 0x9a, 0xcc, 0xc8, 0xc2, 0xfe, 0xdd, 0xdf,
        0x35, 0x8f, 0x85, 0xea, 0xc5, 0x25, 0x98, 0xbb, 0x09, 0x28, 0x90, 0xc2, 0x83, 0x21, 0x8f,
        0x52, 0x7b, 0x7f, 0xfe, 0xb2, 0x4f, 0x02, 0x2b, 0xb4, 0x00, 0xd7, 0xfc, 0x14, 0x5f, 0x00,
        0xec, 0x9d, 0xf5, 0xde, 0x39, 0xf2, 0x14, 0x90, 0x2d, 0x46, 0xae, 0x83, 0xbd, 0x55, 0x37,
        0x58, 0x2f, 0x1b, 0x20, 0xad, 0x93, 0xbf, 0x01, 0x67, 0xdd, 0xb2, 0x54, 0x45, 0xd4, 0x7b,
        0x24, 0xe3, 0x96, 0xf1, 0xae, 0x22, 0x82, 0xa8, 0xa0, 0x78, 0x50, 0x39, 0x72, 0x48, 0x48,
        0xe7, 0xe1, 0x75, 0x5c, 0x73, 0xd2, 0x99, 0x8f, 0x00, 0x4b, 0x42, 0xbe, 0xb0, 0xab, 0x95,
        0xc6, 0x1d, 0x3c, 0xa7, 0x18, 0x71, 0x2c, 0xfb, 0x1d, 0xb7, 0x08, 0x8e, 0x4e, 0x40, 0x91,
        0xd3, 0x16, 0xeb, 0x35, 0xf6, 0x20, 0xdb, 0x50, 0x28, 0x81, 0xa4, 0x4c, 0x8d, 0xb7, 0xd0,
        0x3e, 0xc4, 0x8b, 0x0d, 0x83, 0x9a, 0x31, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    /// tunnelbear.pcap frame 2 (udp.payload, 100 bytes).
    const TB_RESPONSE: [u8; 100] = [
        0x02, 0x00, 0x00, 0x00, 0x02, 0xca, 0x1a, 0x00, 0x31, 0x66, 0x18, 0xac, 0x0a, 0x00, 0x05,
        0x33, 0xac, 0x11, 0x03, 0x01, 0x13, 0x13, 0x65, 0x56, 0x9c, 0x1e, 0xd8, 0x66, 0x08, 0x41,
        0x8d, 0x59, 0xe9, 0x35, 0x0d, 0xca, 0x4c, 0x94, 0xce, 0x10, 0x3d, 0x92, 0x8c, 0x55, 0x8e,
        0xf2, 0xcd, 0x5d, 0x20, 0x2a, 0x10, 0x77, 0x27, 0xd5, 0xf0, 0x01, 0x34, 0xb8, 0x1a, 0x06,
        0xd0, 0xe4, 0xa2, 0x69, 0x7f, 0x8f, 0xd0, 0xc4, 0x46, 0x4d, 0x87, 0xc0, 0x01, 0x32, 0x40,
        0x2f, 0xa4, 0x41, 0x1b, 0x1e, 0x60, 0xa5, 0xdf, 0xe2, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    /// tunnelbear.pcap frame 3 (udp.payload, 32 bytes).
    const TB_KEEPALIVE: [u8; 32] = [
        0x04, 0x00, 0x00, 0x00, 0x02, 0xca, 0x1a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0xd1, 0x20, 0x23, 0xbd, 0xc5, 0xc9, 0x8e, 0x1e, 0x1d, 0x42, 0x71, 0xf5, 0x4d, 0x54,
        0x13, 0x9c,
    ];
    /// mullvad_wireguard.pcap frame 1 (udp.payload, 96 bytes).
    const MV_C1: [u8; 96] = [
        0x04, 0x00, 0x00, 0x00, 0x15, 0x76, 0x49, 0x79, 0x13, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x3b, 0xc8, 0x53, 0x95, 0xc8, 0x1a, 0xa1, 0x44, 0xb1, 0x9f, 0x96, 0xe6, 0x39, 0xfb,
        0x04, 0xb8, 0x9c, 0x88, 0x80, 0x76, 0x7c, 0xf1, 0x14, 0x2a, 0x03, 0xa1, 0xec, 0x92, 0x7c,
        0x93, 0xf1, 0x44, 0x71, 0xf0, 0x15, 0xac, 0xa7, 0xfa, 0xb9, 0x4e, 0xc2, 0x1d, 0x63, 0x2e,
        0x0e, 0x94, 0xaf, 0x5a, 0x3b, 0x50, 0x60, 0x4b, 0xd5, 0xf5, 0xc3, 0x28, 0x0c, 0xfe, 0x33,
        0x23, 0x3e, 0x6e, 0x04, 0xdc, 0xc6, 0x4c, 0xd1, 0x00, 0x07, 0xc4, 0x0f, 0xf9, 0x4e, 0x1d,
        0xbb, 0x0d, 0x31, 0xb6, 0x19, 0xbf,
    ];
    /// mullvad_wireguard.pcap frame 2 (udp.payload, 96 bytes).
    const MV_S1: [u8; 96] = [
        0x04, 0x00, 0x00, 0x00, 0xb0, 0x48, 0x10, 0x1c, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x0b, 0x08, 0x4e, 0x9c, 0xec, 0xdc, 0xda, 0xa3, 0xfe, 0x69, 0xe0, 0x05, 0xcc, 0x0b,
        0xb9, 0xcb, 0x40, 0xd0, 0x96, 0xd1, 0xd3, 0x5e, 0x31, 0x4b, 0xf0, 0xe8, 0x15, 0x35, 0xc3,
        0xae, 0x4f, 0x30, 0xd6, 0xc7, 0x1f, 0x7f, 0x03, 0xc6, 0x5d, 0x54, 0x21, 0x93, 0xcf, 0x4f,
        0x59, 0xbf, 0x2f, 0xb7, 0x0f, 0xa9, 0x38, 0xfa, 0xd9, 0x37, 0x2a, 0x28, 0x5a, 0xee, 0x6d,
        0x1e, 0x6f, 0x4a, 0x71, 0x75, 0x6a, 0xe2, 0x18, 0x9e, 0xaf, 0x5e, 0x04, 0x2a, 0x71, 0x29,
        0x3e, 0xda, 0xea, 0xd2, 0x9c, 0xbe,
    ];
    /// mullvad_wireguard.pcap frame 3 (udp.payload, 80 bytes).
    const MV_C2: [u8; 80] = [
        0x04, 0x00, 0x00, 0x00, 0x15, 0x76, 0x49, 0x79, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0xbf, 0x0c, 0x8c, 0xa1, 0x56, 0x3f, 0xbb, 0x8f, 0xea, 0x9c, 0xb2, 0x6b, 0x4d, 0xd7,
        0x23, 0x5a, 0x88, 0x8d, 0xb6, 0x4d, 0x4a, 0xc4, 0x5e, 0x1e, 0x7a, 0xa1, 0x42, 0x1a, 0x5b,
        0x52, 0x63, 0x99, 0x37, 0x9a, 0xb4, 0x88, 0x70, 0x53, 0x3e, 0x68, 0xa7, 0xca, 0x6f, 0x4e,
        0x85, 0xf5, 0xff, 0x22, 0x64, 0x2f, 0x68, 0xaf, 0xed, 0x78, 0x08, 0xa0, 0x88, 0x82, 0xcf,
        0xae, 0x97, 0xc6, 0x05, 0x50,
    ];
    /// mullvad_wireguard.pcap frame 5 (udp.payload, 80 bytes).
    const MV_S2: [u8; 80] = [
        0x04, 0x00, 0x00, 0x00, 0xb0, 0x48, 0x10, 0x1c, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0xe9, 0xae, 0x80, 0x02, 0xc4, 0x7d, 0x20, 0xed, 0x3f, 0x21, 0x27, 0x51, 0xae, 0x06,
        0x54, 0xfe, 0x16, 0x0f, 0xab, 0xf1, 0xea, 0xf9, 0x9c, 0x76, 0xae, 0xf8, 0xa7, 0x9b, 0x96,
        0x23, 0xcc, 0x19, 0x9d, 0xdc, 0x1e, 0x4e, 0x0d, 0x9a, 0x20, 0xbe, 0x84, 0xd8, 0x04, 0x04,
        0x8b, 0xbe, 0x0a, 0xa1, 0x19, 0xb3, 0xfa, 0xfc, 0x7f, 0x06, 0x65, 0x88, 0xd8, 0xee, 0xad,
        0xa0, 0xce, 0xbe, 0x46, 0x4d,
    ];

    const C: Direction = Direction::ToServer;
    const S: Direction = Direction::ToClient;

    /// Cut by a snap length (54 bytes of UDP payload kept, as a 96-byte snap length keeps
    /// behind Ethernet, IPv4 and UDP headers), the handshake of 8-trace.pcap is still told by
    /// its lengths on the wire and its index echo; a cut message is never longer than its
    /// wire length says.
    #[test]
    fn a_handshake_cut_by_a_snap_length_still_matches() {
        let mut s = State::default();
        let init = pl(Direction::ToServer, 0, &INITIATION[..54]).cut(148 - 54);
        assert_eq!(s.observe(&init), Step::NeedMore);
        let resp = pl(Direction::ToClient, 0, &RESPONSE[..54]).cut(92 - 54);
        match s.observe(&resp) {
            Step::Match(v) => assert_eq!(v.confidence, Confidence::BothDirections),
            other => panic!("{other:?}"),
        }
        // Without the wire length the cut initiation is no WireGuard message.
        assert!(parse_message(&INITIATION[..54]).is_none());
        assert!(parse_with_reserved(&INITIATION[..54], 148).is_some());
        assert!(parse_with_reserved(&INITIATION[..54], 149 + VARIANT_EXTRA_MAX).is_none());
    }

    #[test]
    fn parses_standard_handshake_messages() {
        assert_eq!(
            parse_message(&INITIATION),
            Some(Message::Initiation {
                sender: 0x768b_d016,
                standard: true
            })
        );
        match parse_message(&RESPONSE) {
            Some(Message::Response {
                receiver,
                standard: true,
                ..
            }) => assert_eq!(receiver, 0x768b_d016),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn handshake_echo_is_both_directions() {
        let v = run(&[(C, &INITIATION), (S, &RESPONSE)]).expect("match");
        assert_eq!(v.confidence, Confidence::BothDirections);
        assert!(!v.roles_reversed);
        let v = run(&[(S, &INITIATION), (C, &RESPONSE)]).expect("match");
        assert!(v.roles_reversed);
    }

    #[test]
    fn lone_standard_initiation_is_one_message_at_conclude() {
        let v = run(&[(C, &INITIATION)]).expect("match");
        assert_eq!(v.confidence, Confidence::OneMessage);
    }

    #[test]
    fn tunnelbear_variant_needs_the_whole_index_chain() {
        assert_eq!(
            parse_message(&TB_INITIATION),
            Some(Message::Initiation {
                sender: 0xac18_6631,
                standard: false
            })
        );
        // Variant handshake alone: no decision on sizes.
        assert!(run(&[(C, &TB_INITIATION), (S, &TB_RESPONSE)]).is_none());
        let v = run(&[(C, &TB_INITIATION), (S, &TB_RESPONSE), (C, &TB_KEEPALIVE)]).expect("match");
        assert_eq!(v.confidence, Confidence::BothDirections);
        assert_eq!(
            v.evidence.get("variant_lengths"),
            Some(&crate::fingerprint::Fact::Bool(true))
        );
    }

    #[test]
    fn mid_flow_transport_streams_both_ways() {
        let v = run(&[(C, &MV_C1), (S, &MV_S1), (C, &MV_C2), (S, &MV_S2)]).expect("match");
        assert_eq!(v.confidence, Confidence::BothDirections);
    }

    #[test]
    fn two_transport_messages_one_way_are_not_enough() {
        assert!(run(&[(C, &MV_C1), (C, &MV_C2)]).is_none());
    }

    #[test]
    fn falling_counter_restarts_the_stream() {
        assert!(run(&[(C, &MV_C2), (C, &MV_C1), (S, &MV_S2), (S, &MV_S1)]).is_none());
    }

    #[test]
    fn near_misses_are_rejected() {
        // DNS query for example.com.
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
        assert!(run(&[(C, dns)]).is_none());
        // STUN binding request (RFC 5389 magic cookie).
        let stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl";
        assert!(run(&[(C, stun)]).is_none());
        // QUIC long header (Initial, version 1) padded to 1200 bytes.
        let mut quic = vec![0xc3, 0, 0, 0, 1, 8];
        quic.resize(1200, 0x5a);
        assert!(run(&[(C, &quic)]).is_none());
        // 148 bytes of type 1 with a non-zero reserved byte, and the right type with a wrong size.
        let mut bad = INITIATION;
        bad[2] = 1;
        assert!(parse_message(&bad).is_none());
        assert!(parse_message(&INITIATION[..100]).is_none());
        // Transport length not a multiple of 16.
        assert!(parse_message(&MV_C1[..90]).is_none());
        // A non-WireGuard payload after a handshake message excludes the flow.
        assert!(run(&[(C, &INITIATION), (S, dns)]).is_none());
    }

    /// A message with WARP's client id written into the reserved bytes.
    fn with_client_id(msg: &[u8]) -> Vec<u8> {
        let mut v = msg.to_vec();
        v[1..4].copy_from_slice(&[0x5c, 0x1e, 0x93]);
        v
    }

    #[test]
    fn warp_client_id_in_reserved_bytes_names_warp_on_a_full_handshake() {
        let (init, resp) = (with_client_id(&INITIATION), with_client_id(&RESPONSE));
        let v = run(&[(C, &init), (S, &resp)]).expect("match");
        assert_eq!(v.confidence, Confidence::BothDirections);
        assert_eq!(v.application, Some("warp"));
        // Also when only the client's messages carry it.
        let v = run(&[(C, &init), (S, &RESPONSE)]).expect("match");
        assert_eq!(v.application, Some("warp"));
        // Transport streams both ways, mid-flow.
        let seq = [MV_C1.as_slice(), &MV_S1, &MV_C2, &MV_S2].map(with_client_id);
        let v = run(&[(C, &seq[0]), (S, &seq[1]), (C, &seq[2]), (S, &seq[3])]).expect("match");
        assert_eq!(v.application, Some("warp"));
        // Standard WireGuard names no application.
        let v = run(&[(C, &INITIATION), (S, &RESPONSE)]).expect("match");
        assert_eq!(v.application, None);
    }

    #[test]
    fn nonzero_reserved_bytes_need_both_directions_and_one_value() {
        let init = with_client_id(&INITIATION);
        // A lone initiation (or a one-way stream) with non-zero reserved bytes: no verdict.
        assert!(run(&[(C, &init)]).is_none());
        let c = [MV_C1.as_slice(), &MV_C2].map(with_client_id);
        assert!(run(&[(C, &c[0]), (C, &c[1]), (C, &c[0]), (C, &c[1])]).is_none());
        // The value changes within a direction: not WireGuard.
        let mut other = with_client_id(&MV_C2);
        other[3] ^= 0xff;
        let s = [MV_S1.as_slice(), &MV_S2].map(with_client_id);
        assert!(run(&[(C, &c[0]), (S, &s[0]), (C, &other), (S, &s[1])]).is_none());
    }

    #[test]
    fn disco_messages_are_skipped() {
        let mut disco = b"TS\xf0\x9f\x92\xac".to_vec();
        disco.resize(120, 7);
        let v = run(&[(C, &disco), (C, &INITIATION), (S, &RESPONSE)]).expect("match");
        assert_eq!(v.confidence, Confidence::BothDirections);
    }

    static REG: [&Spec; 1] = [&SPEC];

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(packets in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..600)), 0..24)) {
            let mut s = State::default();
            let mut fs = FingerprintState::default();
            let mut n = [0u8; 2];
            for (to_server, bytes) in &packets {
                let d = if *to_server { C } else { S };
                let p = pl(d, n[d.index()], bytes);
                fs.observe(&REG, &p);
                if n[d.index()] < SPEC.payload_budget {
                    let _ = s.observe(&p);
                    n[d.index()] += 1;
                }
                let _ = parse_message(bytes);
            }
            let _ = s.conclude(&ctx());
            let _ = fs.finish(&REG, &ctx());
        }
    }
}
