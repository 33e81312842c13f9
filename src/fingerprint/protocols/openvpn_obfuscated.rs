//! XOR-scrambled OpenVPN ("scramble"/"xormask" patches used by commercial "obfuscated
//! servers"), recognised by the opcode-set fingerprint of Xue et al., "OpenVPN is Open to VPN
//! Fingerprinting" (USENIX Security 2022, §4.1): the scrambling XORs byte 0 of every packet with
//! one fixed key byte, so over the first packets of a flow the set of distinct first bytes is
//! the small, fixed set of handshake opcodes, only renamed.
//!
//! What this detector requires, all at once (see [`analyse`]):
//! - the key byte `k` is read off the flow's first packet as `byte0 ^ 0x38`
//!   (P_CONTROL_HARD_RESET_CLIENT_V2, key id 0) and is not 0 (plain OpenVPN is the `openvpn`
//!   detector's);
//! - the other side's first packet decodes to P_CONTROL_HARD_RESET_SERVER_V2 (`byte0 ^ k ==
//!   0x40`) and is 12 bytes longer than the client's (its ack array: `ack_len(1)`, one packet
//!   id (4) and the client's session id (8) replace `ack_len(1)` = 0; 6 when the client's reset
//!   carries OpenVPN 2.6's 6-byte early-negotiation TLV);
//! - every later packet decodes to a reset of its own side, CONTROL_V1, ACK_V1, DATA_V1 or
//!   DATA_V2 with key id 0, with at least one CONTROL_V1 and one ACK_V1;
//! - every ACK_V1 is as long as the client's reset plus an ack array of 1..=8 ids
//!   (`len = reset_len - 4 - tlv + 1 + 4n + 8 - 1`, i.e. `4n + 4 - tlv` longer);
//! - over TCP the 2-byte length framing (not scrambled) holds across all segments.
//!
//! These packet lengths are those of the OpenVPN handshake with any control-channel
//! protection (none, tls-auth, tls-crypt): the HMAC or tag size cancels out of the differences.

use super::openvpn::{opcode, Framing, TcpFramer};
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Transport;

/// Detector entry: XOR-obfuscated OpenVPN; verdicts name the protocol `openvpn`.
pub static SPEC: Spec = Spec {
    name: "openvpn_obfuscated",
    family: Family::Obfuscated,
    transports: Transports::TCP_UDP,
    payload_budget: 12,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// Packets looked at (the handshake; the paper uses the first packets of a flow).
pub const MAX_PACKETS: usize = 16;
/// Packets needed before deciding.
pub const MIN_PACKETS: usize = 8;
/// The hard resets are small (V2: tens of bytes, at most a few hundred with TLVs).
pub const MAX_RESET_LEN: u16 = 512;

const BYTE_CLIENT_RESET: u8 = opcode::HARD_RESET_CLIENT_V2 << 3;
const BYTE_SERVER_RESET: u8 = opcode::HARD_RESET_SERVER_V2 << 3;
const BYTE_CONTROL: u8 = opcode::CONTROL_V1 << 3;
const BYTE_ACK: u8 = opcode::ACK_V1 << 3;
const BYTE_DATA_V1: u8 = opcode::DATA_V1 << 3;
const BYTE_DATA_V2: u8 = opcode::DATA_V2 << 3;

/// One packet's first byte, length and side (true: the side that sent the first packet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    pub first_side: bool,
    pub byte0: u8,
    pub len: u16,
}

/// What [`analyse`] established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    pub key: u8,
    pub client_reset_len: u16,
    pub server_reset_len: u16,
    pub distinct_first_bytes: u8,
    pub acks: u8,
    pub controls: u8,
}

/// Outcome of [`analyse`] on the packets so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analysis {
    /// Consistent so far, not enough packets yet.
    Undecided,
    /// Cannot be scrambled OpenVPN.
    No,
    Fits(Fit),
}

/// Checks the opcode-set and length shape of the packets (in arrival order).
pub fn analyse(seen: &[Seen]) -> Analysis {
    let Some(p0) = seen.first() else {
        return Analysis::Undecided;
    };
    let key = p0.byte0 ^ BYTE_CLIENT_RESET;
    if key == 0 || p0.len > MAX_RESET_LEN {
        return Analysis::No;
    }
    let Some(s0) = seen.iter().find(|s| !s.first_side) else {
        return Analysis::Undecided;
    };
    if s0.byte0 ^ key != BYTE_SERVER_RESET || s0.len > MAX_RESET_LEN + 12 {
        return Analysis::No;
    }
    let tlv = match s0.len.checked_sub(p0.len) {
        Some(12) => 0,
        Some(6) => 6,
        _ => return Analysis::No,
    };
    let mut distinct = [false; 256];
    let (mut acks, mut controls) = (0u8, 0u8);
    for s in seen {
        distinct[usize::from(s.byte0)] = true;
        let op = s.byte0 ^ key;
        let own_reset = if s.first_side {
            BYTE_CLIENT_RESET
        } else {
            BYTE_SERVER_RESET
        };
        match op {
            _ if op == own_reset => {}
            BYTE_CONTROL => controls = controls.saturating_add(1),
            BYTE_ACK => {
                // len - p0.len = 4n + 4 - tlv, n in 1..=8.
                let grown = i32::from(s.len) - i32::from(p0.len) + tlv - 4;
                if !(4..=32).contains(&grown) || grown % 4 != 0 {
                    return Analysis::No;
                }
                acks = acks.saturating_add(1);
            }
            BYTE_DATA_V1 | BYTE_DATA_V2 => {}
            _ => return Analysis::No,
        }
    }
    if seen.len() < MIN_PACKETS || acks == 0 || controls == 0 {
        return Analysis::Undecided;
    }
    Analysis::Fits(Fit {
        key,
        client_reset_len: p0.len,
        server_reset_len: s0.len,
        distinct_first_bytes: distinct.iter().filter(|&&b| b).count() as u8,
        acks,
        controls,
    })
}

/// Per-flow state.
#[derive(Debug, Default, Clone)]
pub struct State {
    framers: [TcpFramer; 2],
    seen: [Seen; MAX_PACKETS],
    count: usize,
    first_dir: Option<usize>,
    /// Packets per side (index = direction).
    per_side: [usize; 2],
    tcp: bool,
}

impl State {
    /// Notes a packet of direction `d`: its first byte, if kept, and its length on the wire.
    fn push(&mut self, d: usize, byte0: Option<&u8>, wire_len: usize) -> bool {
        let first = *self.first_dir.get_or_insert(d);
        let (Some(&byte0), Ok(len)) = (byte0, u16::try_from(wire_len)) else {
            return false;
        };
        if let Some(slot) = self.seen.get_mut(self.count) {
            *slot = Seen {
                first_side: d == first,
                byte0,
                len,
            };
            self.count += 1;
            self.per_side[d] += 1;
        }
        true
    }

    fn packets(&self) -> &[Seen] {
        self.seen.get(..self.count).unwrap_or_default()
    }

    fn verdict(&self, fit: Fit) -> Verdict {
        let mut v = Verdict::new(Confidence::Statistical)
            .fact("opcode_xor_key", fit.key)
            .fact("distinct_first_bytes", fit.distinct_first_bytes)
            .fact("client_reset_len", fit.client_reset_len)
            .fact("server_reset_len", fit.server_reset_len)
            .fact("controls", fit.controls)
            .fact("acks", fit.acks)
            .fact("packets", self.count);
        if self.tcp {
            v.evidence.push("tcp_framing", true);
        }
        v.protocol = Some("openvpn");
        v.obfuscated = true;
        v.family = Some(Family::Obfuscated);
        v
    }

    fn decide(&self, last_chance: bool) -> Step {
        match analyse(self.packets()) {
            Analysis::No => Step::NotThis,
            Analysis::Fits(fit) if last_chance || self.count >= MAX_PACKETS => {
                Step::Match(self.verdict(fit))
            }
            Analysis::Fits(_) | Analysis::Undecided if self.count >= MAX_PACKETS => Step::NotThis,
            _ => Step::NeedMore,
        }
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let d = p.direction.index();
        let ok = match p.transport {
            // A snap length may have cut the packet: only its first byte and length count.
            Transport::Udp => self.push(d, p.bytes.first(), p.wire_len()),
            Transport::Tcp => {
                self.tcp = true;
                // The first frame of each side is a hard reset: small.
                let first_of_side = self.per_side[d] == 0;
                let head = p.bytes.get(..2).map(|l| u16::from_be_bytes([l[0], l[1]]));
                if first_of_side
                    && self.framers[d].at_boundary()
                    && head.is_some_and(|l| l > MAX_RESET_LEN + 12)
                {
                    false
                } else {
                    let mut framer = std::mem::take(&mut self.framers[d]);
                    let mut good = true;
                    let framing = framer.feed(p.bytes, usize::from(p.cut), |frame, missing| {
                        good = self.push(d, frame.first(), frame.len() + missing);
                        good
                    });
                    self.framers[d] = framer;
                    good && framing != Framing::Broken
                }
            }
            _ => false,
        };
        if !ok {
            return Step::NotThis;
        }
        if self.count >= MIN_PACKETS {
            // Decide as soon as the shape holds over MIN_PACKETS; more packets only add cost.
            return self.decide(true);
        }
        self.decide(false)
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        match self.decide(true) {
            Step::Match(v) => Some(v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Fact;
    use crate::flow::Direction;
    use proptest::prelude::*;

    use Direction::{ToClient as S, ToServer as C};

    fn pl(dir: Direction, t: Transport, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(dir, bytes)
            .over(t)
            .nth(nth)
            .ports(40000, 1214)
    }

    fn ctx(t: Transport) -> FlowContext {
        FlowContext::test(t, 40000, 1214)
    }

    fn run(t: Transport, payloads: &[(Direction, Vec<u8>)]) -> Option<Verdict> {
        let mut s = State::default();
        let mut offered = [0u8; 2];
        for (dir, b) in payloads {
            let d = dir.index();
            if offered[d] >= SPEC.payload_budget {
                continue;
            }
            offered[d] += 1;
            match s.observe(&pl(*dir, t, offered[d] - 1, b)) {
                Step::Match(v) => return Some(v),
                Step::NotThis => return None,
                Step::NeedMore => {}
            }
        }
        s.conclude(&ctx(t))
    }

    /// A packet of `len` bytes starting with `b0` (the rest filler: only byte 0 and the length
    /// matter to this detector).
    fn pkt(b0: u8, len: usize) -> Vec<u8> {
        let mut v = vec![0x5a; len];
        v[0] = b0;
        v
    }

    /// openvpn_obfuscated.pcapng, UDP/1214 flow, frames 61-72: first byte and length of each
    /// datagram (client 0x4c/86, server 0x34/98, ...). Frame 61 begins
    /// `4c3d3333393c3d15894c20292d7d33b6`.
    fn udp_1214() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C, pkt(0x4c, 86)),
            (S, pkt(0x34, 98)),
            (C, pkt(0x54, 375)),
            (S, pkt(0x5c, 94)),
            (S, pkt(0x54, 1116)),
            (S, pkt(0x54, 1116)),
            (S, pkt(0x54, 1116)),
            (S, pkt(0x54, 1116)),
            (C, pkt(0x5c, 98)),
            (C, pkt(0x5c, 102)),
            (C, pkt(0x5c, 106)),
            (C, pkt(0x5c, 110)),
        ]
    }

    #[test]
    fn udp_scrambled_handshake_fits() {
        let v = run(Transport::Udp, &udp_1214()).unwrap();
        assert_eq!(v.protocol, Some("openvpn"));
        assert!(v.obfuscated);
        assert_eq!(v.family, Some(Family::Obfuscated));
        assert_eq!(v.evidence.get("opcode_xor_key"), Some(&Fact::Int(0x74)));
    }

    /// openvpn_obfuscated.pcapng, TCP/465 flow, frames 4, 6, 8, 9, 10 and on: the length
    /// prefix is not scrambled (`0056 4c...`, `0062 34...`), first bytes as in the UDP flow; a
    /// burst of three server frames comes in two segments.
    fn tcp_465() -> Vec<(Direction, Vec<u8>)> {
        let frame = |b0: u8, len: usize| {
            let mut v = (len as u16).to_be_bytes().to_vec();
            v.extend(pkt(b0, len));
            v
        };
        let mut server_burst = frame(0x5c, 94);
        server_burst.extend(frame(0x54, 1124));
        server_burst.extend(frame(0x54, 1112));
        let (a, b) = server_burst.split_at(700);
        vec![
            (C, frame(0x4c, 86)),
            (S, frame(0x34, 98)),
            (C, frame(0x54, 375)),
            (S, a.to_vec()),
            (S, b.to_vec()),
            (C, frame(0x5c, 98)),
            (S, frame(0x54, 821)),
            (C, frame(0x54, 747)),
            (S, frame(0x54, 256)),
            (C, frame(0x5c, 102)),
        ]
    }

    #[test]
    fn tcp_scrambled_handshake_with_split_segments() {
        let v = run(Transport::Tcp, &tcp_465()).unwrap();
        assert_eq!(v.evidence.get("tcp_framing"), Some(&Fact::Bool(true)));
    }

    /// `payloads` as a capture with a snap length keeps them: each cut to its first `keep`
    /// bytes, the rest counted as cut.
    fn cut_to(t: Transport, keep: usize, payloads: &[(Direction, Vec<u8>)]) -> Option<Verdict> {
        let mut s = State::default();
        for (nth, (dir, b)) in payloads.iter().enumerate() {
            let kept = keep.min(b.len());
            let p = pl(*dir, t, nth as u8, &b[..kept]).cut((b.len() - kept) as u16);
            match s.observe(&p) {
                Step::Match(v) => return Some(v),
                Step::NotThis => return None,
                Step::NeedMore => {}
            }
        }
        s.conclude(&ctx(t))
    }

    #[test]
    fn cut_packets_count_at_their_length_on_the_wire() {
        // UDP: one byte of each datagram kept is enough.
        let v = cut_to(Transport::Udp, 1, &udp_1214()).unwrap();
        assert_eq!(v.evidence.get("client_reset_len"), Some(&Fact::Int(86)));
        assert_eq!(v.evidence.get("server_reset_len"), Some(&Fact::Int(98)));
        // Read at the captured length instead, the lengths would not fit.
        let kept_only: Vec<_> = udp_1214()
            .into_iter()
            .map(|(d, b)| (d, b[..30.min(b.len())].to_vec()))
            .collect();
        assert!(run(Transport::Udp, &kept_only).is_none());
    }

    #[test]
    fn tcp_segments_cut_by_a_snap_length() {
        // Cut, the server's burst hides where its frames start; its side is read again from
        // its next segment that is one frame.
        let v = cut_to(Transport::Tcp, 30, &tcp_465()).expect("fits");
        assert_eq!(v.evidence.get("tcp_framing"), Some(&Fact::Bool(true)));
        assert_eq!(v.evidence.get("packets"), Some(&Fact::Int(8)));
    }

    #[test]
    fn plain_openvpn_is_not_obfuscated() {
        let flow: Vec<_> = udp_1214()
            .into_iter()
            .map(|(d, mut b)| {
                b[0] ^= 0x74;
                (d, b)
            })
            .collect();
        assert!(run(Transport::Udp, &flow).is_none());
    }

    #[test]
    fn near_misses() {
        // TLS on 443: ClientHello / ServerHello records; QUIC long headers; DNS; random lengths.
        let tls = vec![
            (
                C,
                [&[0x16, 0x03, 0x01, 0x02, 0x00][..], &[0x01; 512]].concat(),
            ),
            (
                S,
                [&[0x16, 0x03, 0x03, 0x00, 0x7a][..], &[0x02; 122]].concat(),
            ),
        ];
        assert!(run(Transport::Tcp, &tls).is_none());
        let quic: Vec<_> = (0..12)
            .map(|i| {
                (
                    if i % 2 == 0 { C } else { S },
                    pkt(0xc3 ^ (i as u8 & 1), 1200),
                )
            })
            .collect();
        assert!(run(Transport::Udp, &quic).is_none());
        // Right first two bytes and lengths, but a later byte outside the opcode set.
        let mut f = udp_1214();
        f[4].1[0] = 0x99;
        assert!(run(Transport::Udp, &f).is_none());
        // Right bytes, wrong server reset length.
        let mut g = udp_1214();
        g[1].1.push(0);
        assert!(run(Transport::Udp, &g).is_none());
    }

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
            prop_assert!(s.count <= MAX_PACKETS);
        }
    }
}
