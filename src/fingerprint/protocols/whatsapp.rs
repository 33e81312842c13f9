//! WhatsApp's own chat protocol over TCP (ports 443 and 5222 in practice, any port here).
//!
//! There is no published specification; these wire facts are the ones the open-source clients
//! that talk to WhatsApp's servers are built on (whatsmeow's `socket` package, yowsup), and
//! every WhatsApp chat connection in nDPI's test captures follows them:
//! - The client opens with a 4-byte header: `W`, `A`, then two small version numbers (`1 5`
//!   for the XMPP-based protocol of old clients; the Noise-based one of today's sends, for
//!   example, `2 1`, `5 2`, and whatsmeow `6 3`).
//! - Clients of today may put an edge-routing prefix first: `E`, `D`, `0`, `1`, a 3-byte
//!   big-endian length, and that many bytes of routing data.
//! - After the header each direction is a sequence of frames, each a 3-byte big-endian length
//!   and that many bytes. In the Noise-based protocol all 24 bits are the length (whatsmeow:
//!   `FrameLengthSize = 3`, frames up to 2^24); in the XMPP-based one the top 4 bits are flags
//!   (8: encrypted) before a 20-bit length.
//! - The server sends no header: its reply is frames from its first byte.
//!
//! Precision: the header gives 16 fixed bits and two small numbers (32 more fixed bits with
//! the edge-routing prefix). On top, a payload must end exactly where a frame ends, which a
//! random stream does about once per frame length: the client's frames and, for
//! `BothDirections`, the server's first reply. A header whose frames never line up with a
//! payload's end is not WhatsApp.
//!
//! Labels: the platform's own protocol to its own servers, no circumvention. The flow keeps the
//! protocol token `unknown` and family other (the label vocabulary names circumvention
//! protocols and their carriers; it files WhatsApp's protocol under `none`), with the evidence
//! `whatsapp: platform=whatsapp, ...`. The statistics count it as an attempt to reach
//! WhatsApp ([`crate::stats::flow_attempt`]): a connection reset right after the client's
//! header is a failed one. The fully-encrypted test labelled the old protocol's sessions
//! (family obfuscated) before this detector: their frames are encrypted and the header alone is
//! too short for its exemptions.

use crate::fingerprint::driver::{PLATFORM_FACT, UNKNOWN_PROTOCOL};
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Direction;

/// Detector entry: the client's first payloads, the server's first reply.
pub static SPEC: Spec = Spec {
    name: "whatsapp",
    family: Family::Other,
    transports: Transports::TCP,
    payload_budget: CLIENT_PAYLOADS,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// Client payloads looked at. Clients write the prefix, the routing data, the header, a
/// frame's length and its body in separate segments at times (on nDPI's captures the first
/// frame ends in the fourth); more than 5 were not seen.
pub const CLIENT_PAYLOADS: u8 = 6;

/// The edge-routing prefix's first 4 bytes.
pub const EDGE_ROUTING: [u8; 4] = *b"ED\x00\x01";
/// Most routing bytes accepted after the prefix (clients send a few).
pub const MAX_ROUTING_LEN: usize = 255;
/// Largest version number accepted in the header.
pub const MAX_VERSION: u8 = 15;

/// How a frame's 3-byte length field is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthField {
    /// All 24 bits (the Noise-based protocol).
    Full,
    /// 4 flag bits, then 20 bits of length (the XMPP-based protocol, version 1).
    Flagged,
}

impl LengthField {
    fn length(self, field: u32) -> usize {
        let bits = match self {
            LengthField::Full => field & 0x00ff_ffff,
            LengthField::Flagged => field & 0x000f_ffff,
        };
        // 24 bits always fit.
        bits as usize
    }
}

/// Where a stream walk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the client's opening bytes into `head` (prefix and header).
    Opening,
    /// Skipping `left` bytes of routing data.
    Routing { left: usize },
    /// Reading the `WA` header after the routing data into `head`.
    Header,
    /// Reading a frame's length field: `have` of its 3 bytes so far.
    FrameLength { have: u8, field: u32 },
    /// Inside a frame's body, `left` bytes to go.
    FrameBody { left: usize },
    /// Not WhatsApp's framing.
    Broken,
}

/// One direction's stream: where it is and what it showed.
#[derive(Debug, Clone, Copy)]
struct Walk {
    phase: Phase,
    head: [u8; 7],
    head_len: u8,
    length_field: LengthField,
    /// Frames read to their end.
    frames: u32,
    /// Some payload ended exactly where a frame did.
    aligned: bool,
    edge_routing: bool,
    version: Option<(u8, u8)>,
}

impl Walk {
    fn client() -> Walk {
        Walk {
            phase: Phase::Opening,
            head: [0; 7],
            head_len: 0,
            length_field: LengthField::Full,
            frames: 0,
            aligned: false,
            edge_routing: false,
            version: None,
        }
    }

    fn server(length_field: LengthField) -> Walk {
        Walk {
            phase: Phase::FrameLength { have: 0, field: 0 },
            length_field,
            ..Walk::client()
        }
    }

    /// Reads one payload; a payload cut by a snap length ends the walk's evidence where the
    /// kept bytes end (bodies are skipped on their wire length).
    fn feed(&mut self, bytes: &[u8], cut: usize) {
        let mut rest = bytes;
        while !rest.is_empty() {
            rest = self.step(rest);
            if self.phase == Phase::Broken {
                return;
            }
        }
        if cut > 0 {
            // What was cut cannot be walked: only a body is skipped on trust.
            match self.phase {
                Phase::FrameBody { left } if left >= cut => {
                    self.phase = if left == cut {
                        self.frames += 1;
                        Phase::FrameLength { have: 0, field: 0 }
                    } else {
                        Phase::FrameBody { left: left - cut }
                    };
                }
                _ => {
                    self.phase = Phase::Broken;
                    return;
                }
            }
        }
        if self.frames > 0 && self.phase == (Phase::FrameLength { have: 0, field: 0 }) {
            self.aligned = true;
        }
    }

    /// Consumes some of `bytes` and returns the rest.
    fn step<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        match self.phase {
            Phase::Opening | Phase::Header => {
                let Some((&byte, rest)) = bytes.split_first() else {
                    return bytes;
                };
                self.push_head(byte);
                rest
            }
            Phase::Routing { left } => {
                let take = left.min(bytes.len());
                self.phase = if take == left {
                    self.head_len = 0;
                    Phase::Header
                } else {
                    Phase::Routing { left: left - take }
                };
                bytes.get(take..).unwrap_or_default()
            }
            Phase::FrameLength { have, field } => {
                let Some((&byte, rest)) = bytes.split_first() else {
                    return bytes;
                };
                let field = field << 8 | u32::from(byte);
                self.phase = if have == 2 {
                    match self.length_field.length(field) {
                        // An empty frame is no message.
                        0 => Phase::Broken,
                        left => Phase::FrameBody { left },
                    }
                } else {
                    Phase::FrameLength {
                        have: have + 1,
                        field,
                    }
                };
                rest
            }
            Phase::FrameBody { left } => {
                let take = left.min(bytes.len());
                self.phase = if take == left {
                    self.frames += 1;
                    Phase::FrameLength { have: 0, field: 0 }
                } else {
                    Phase::FrameBody { left: left - take }
                };
                bytes.get(take..).unwrap_or_default()
            }
            Phase::Broken => &[],
        }
    }

    /// One more opening byte: checks the prefix or header as far as it goes.
    fn push_head(&mut self, byte: u8) {
        let at = usize::from(self.head_len);
        self.head_len += 1;
        if let Some(slot) = self.head.get_mut(at) {
            *slot = byte;
        }
        if self.phase == Phase::Opening && self.head[0] == b'E' {
            // The edge-routing prefix, then its routing length.
            if at < 4 {
                if EDGE_ROUTING.get(at) != Some(&byte) {
                    self.phase = Phase::Broken;
                }
            } else if at == 6 {
                let len = usize::from(self.head[4]) << 16
                    | usize::from(self.head[5]) << 8
                    | usize::from(byte);
                self.edge_routing = true;
                self.phase = if len > MAX_ROUTING_LEN {
                    Phase::Broken
                } else if len == 0 {
                    self.head_len = 0;
                    Phase::Header
                } else {
                    Phase::Routing { left: len }
                };
            }
            return;
        }
        // The `WA` header: `W`, `A`, two small version numbers.
        let ok = match at {
            0 => byte == b'W',
            1 => byte == b'A',
            2 | 3 => byte <= MAX_VERSION,
            _ => false,
        };
        if !ok {
            self.phase = Phase::Broken;
        } else if at == 3 {
            let major = self.head[2];
            self.version = Some((major, byte));
            self.length_field = if major == 1 {
                LengthField::Flagged
            } else {
                LengthField::Full
            };
            self.phase = Phase::FrameLength { have: 0, field: 0 };
        }
    }
}

/// Per-flow state: the client's stream, then the server's.
#[derive(Debug, Clone, Default)]
pub struct State {
    walks: Option<Walks>,
}

#[derive(Debug, Clone, Copy)]
struct Walks {
    client_dir: Direction,
    client: Walk,
    server: Option<Walk>,
}

impl Walks {
    fn verdict(&self) -> Option<Verdict> {
        let (major, minor) = self.client.version?;
        let server_aligned = self.server.is_some_and(|s| s.aligned);
        if !self.client.aligned && !server_aligned {
            return None;
        }
        let confidence = if self.client.aligned && server_aligned {
            Confidence::BothDirections
        } else {
            Confidence::OneMessage
        };
        let mut v = Verdict::new(confidence)
            .fact(PLATFORM_FACT, "whatsapp")
            .fact("version", format!("{major}.{minor}"))
            .fact("client_frames", self.client.frames);
        if self.client.edge_routing {
            v = v.fact("edge_routing", true);
        }
        if let Some(server) = self.server.filter(|s| s.aligned) {
            v = v.fact("server_frames", server.frames);
        }
        v.protocol = Some(UNKNOWN_PROTOCOL);
        v.roles_reversed = self.client_dir == Direction::ToClient;
        Some(v)
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let cut = usize::from(p.cut);
        let walks = match &mut self.walks {
            Some(w) => w,
            None => {
                // Only a connection's first bytes are the opening.
                if p.nth != 0 {
                    return Step::NotThis;
                }
                self.walks.insert(Walks {
                    client_dir: p.direction,
                    client: Walk::client(),
                    server: None,
                })
            }
        };
        if p.direction == walks.client_dir {
            walks.client.feed(p.bytes, cut);
            if walks.client.version.is_none() && walks.client.phase == Phase::Broken {
                return Step::NotThis;
            }
            if walks.client.version.is_none() && p.nth_in_direction + 1 >= CLIENT_PAYLOADS {
                // The budget ends before the header does.
                return Step::NotThis;
            }
            return Step::NeedMore;
        }
        if walks.client.version.is_none() {
            // The server spoke before the client's header was whole.
            return Step::NotThis;
        }
        let mut server = Walk::server(walks.client.length_field);
        server.feed(p.bytes, cut);
        walks.server = Some(server);
        match walks.verdict() {
            Some(v) => Step::Match(v),
            None => Step::NotThis,
        }
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        self.walks.take().and_then(|w| w.verdict())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::test_support::hex;
    use crate::flow::Direction::{ToClient as C, ToServer as S};
    use proptest::prelude::*;

    fn run(payloads: &[(Direction, Vec<u8>)]) -> Option<Verdict> {
        let mut s = State::default();
        let mut counts = [0u8; 2];
        for (nth, (d, b)) in payloads.iter().enumerate() {
            let p = Payload::test(*d, b)
                .nth_in_flow(nth as u8)
                .nth_in_direction(counts[d.index()]);
            counts[d.index()] += 1;
            match s.observe(&p) {
                Step::NeedMore => {}
                Step::NotThis => return None,
                Step::Match(v) => return Some(v),
            }
        }
        s.conclude(&FlowContext::test(crate::flow::Transport::Tcp, 40000, 443))
    }

    /// `len` bytes of frame body.
    fn body(len: usize, fill: u8) -> Vec<u8> {
        vec![fill; len]
    }

    fn frame(field: u32, len: usize) -> Vec<u8> {
        let mut f = field.to_be_bytes()[1..].to_vec();
        f.extend(body(len, 0x5a));
        f
    }

    /// The old protocol's opening in nDPI's captures (TCP 192.168.2.4:49206 ->
    /// 158.85.58.15:5222, 166 bytes): `WA 1 5`, then three frames of 26, 92 and 36 bytes (the
    /// first shown in full: a stream start naming `iPhone-2.12.2-5222`), and the server's
    /// reply of 78 bytes, frames of 5, 3 and (flag 8, encrypted) 61 bytes.
    fn old_protocol_session() -> Vec<(Direction, Vec<u8>)> {
        let mut client = hex("5741010500001af80501a59189fc126950686f6e652d322e31322e322d35323232");
        client.extend(frame(0x00005c, 92));
        client.extend(frame(0x000024, 36));
        let mut server = hex("000005f803013a91000003f8019c");
        server.extend(frame(0x80003d, 61));
        vec![(S, client), (C, server)]
    }

    /// A Noise-era opening from the same captures (TCP 192.168.2.100:50484 ->
    /// 179.60.195.49:5222): the edge-routing prefix alone, then routing data (4 bytes),
    /// `WA 5 2` and a 270-byte frame, then a 3-byte length and its 37-byte frame apart.
    fn noise_session() -> Vec<(Direction, Vec<u8>)> {
        let mut second = hex("0000040809080257410502");
        second.extend(frame(0x00010e, 270));
        vec![
            (S, EDGE_ROUTING.to_vec()),
            (S, second),
            (S, hex("000025")),
            (C, frame(0x000036, 54)),
        ]
    }

    #[test]
    fn real_openings_of_both_protocols_are_whatsapp() {
        let v = run(&old_protocol_session()).expect("old protocol");
        assert_eq!(v.evidence.get("platform"), Some(&"whatsapp".into()));
        assert_eq!((v.protocol, v.application), (Some(UNKNOWN_PROTOCOL), None));
        assert_eq!(v.confidence, Confidence::BothDirections);
        assert_eq!(v.evidence.get("version"), Some(&"1.5".into()));
        assert_eq!(v.evidence.get("client_frames"), Some(&3u32.into()));
        assert_eq!(v.evidence.get("server_frames"), Some(&3u32.into()));
        assert_eq!(v.evidence.get("edge_routing"), None);
        let v = run(&noise_session()).expect("noise");
        assert_eq!(v.confidence, Confidence::BothDirections);
        assert_eq!(v.evidence.get("version"), Some(&"5.2".into()));
        assert_eq!(v.evidence.get("edge_routing"), Some(&true.into()));
        assert!(!v.obfuscated && !v.roles_reversed);
    }

    /// An opening written in four segments (TCP 192.168.2.100:40178 -> 179.60.195.49:5222 in
    /// the same captures): the prefix, routing data and header, the first frame's length, and
    /// its 276-byte body (its first 12 bytes shown).
    #[test]
    fn an_opening_in_four_segments_is_told() {
        let mut body = hex("1291020a209eb1220b609462");
        body.resize(276, 0x5a);
        let segments = vec![
            (S, EDGE_ROUTING.to_vec()),
            (S, hex("000004080b080957410502")),
            (S, hex("000114")),
            (S, body),
        ];
        let v = run(&segments).expect("frame ends in the fourth payload");
        assert_eq!(v.evidence.get("client_frames"), Some(&1u32.into()));
        // Within the budget the header may come byte by byte.
        let stream: Vec<u8> = segments.iter().flat_map(|(_, b)| b.clone()).collect();
        let mut split: Vec<(Direction, Vec<u8>)> =
            stream[..5].iter().map(|&b| (S, vec![b])).collect();
        split.push((S, stream[5..].to_vec()));
        assert_eq!(split.len(), usize::from(CLIENT_PAYLOADS));
        assert!(run(&split).is_some());
    }

    #[test]
    fn a_reset_after_the_opening_is_still_whatsapp() {
        // No reply: the client's frames line up, one message.
        let session = old_protocol_session();
        let v = run(&session[..1]).expect("client only");
        assert_eq!(v.confidence, Confidence::OneMessage);
        let noise = noise_session();
        let v = run(&noise[..2]).expect("client only");
        assert_eq!(v.confidence, Confidence::OneMessage);
        // The prefix alone says too little.
        assert!(run(&noise[..1]).is_none());
    }

    #[test]
    fn frames_must_line_up_with_a_payload_end() {
        // The header, then a frame that runs past the payload and never ends in one.
        let mut client = b"WA\x05\x02".to_vec();
        client.extend(frame(0x000100, 100));
        assert!(run(&[(S, client.clone())]).is_none());
        // ... unless the server's reply lines up.
        let v = run(&[(S, client), (C, frame(0x000010, 16))]).expect("server frames");
        assert_eq!(v.confidence, Confidence::OneMessage);
        // The XMPP-era flag bits are not a length in the Noise-based protocol.
        let mut flagged = b"WA\x05\x02".to_vec();
        flagged.extend(frame(0x800010, 16));
        assert!(run(&[(S, flagged)]).is_none());
    }

    #[test]
    fn near_misses_are_not_whatsapp() {
        for opening in [
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            b"WA\x20\x01\x00\x00\x01\x00".to_vec(),
            b"EX\x00\x01\x00\x00\x00WA\x05\x02\x00\x00\x01\x00".to_vec(),
            // Routing data longer than clients send.
            b"ED\x00\x01\x00\x10\x00".to_vec(),
            // An empty frame.
            b"WA\x05\x02\x00\x00\x00".to_vec(),
            hex("160301020001000200030300000000000000000000"),
        ] {
            assert!(run(&[(S, opening.clone())]).is_none(), "{opening:02x?}");
        }
        // Not the flow's first payload.
        let mut s = State::default();
        let session = old_protocol_session();
        assert!(matches!(
            s.observe(&Payload::test(S, &session[0].1).nth_in_flow(1)),
            Step::NotThis
        ));
    }

    #[test]
    fn cut_payloads_skip_bodies_on_their_wire_length() {
        // The old opening cut to its first 40 bytes: the first frame was kept whole, the
        // second frame's body is cut inside it; the third's length field is unseen.
        let session = old_protocol_session();
        let client = &session[0].1;
        let kept = &client[..40];
        let mut s = State::default();
        let p = Payload::test(S, kept).cut((client.len() - 40) as u16);
        assert!(matches!(s.observe(&p), Step::NeedMore));
        assert!(s
            .conclude(&FlowContext::test(crate::flow::Transport::Tcp, 40000, 443))
            .is_none());
        // Cut inside the second frame, which ends where the payload ended on the wire: the
        // body is skipped on trust and the payload lines up.
        let mut s = State::default();
        let first_frame_end = 4 + 3 + 26;
        let p = Payload::test(S, &client[..first_frame_end + 3 + 10]).cut(92 - 10);
        assert!(matches!(s.observe(&p), Step::NeedMore));
        let v = s.conclude(&FlowContext::test(crate::flow::Transport::Tcp, 40000, 443));
        assert!(v.is_some_and(|v| v.evidence.get("client_frames") == Some(&2u32.into())));
    }

    proptest! {
        #[test]
        fn never_panics_on_any_payloads(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 1..5),
            starts_with_wa in any::<bool>(),
        ) {
            let mut flow: Vec<(Direction, Vec<u8>)> = payloads
                .into_iter()
                .enumerate()
                .map(|(i, b)| (if i % 3 == 2 { C } else { S }, b))
                .collect();
            if starts_with_wa {
                flow[0].1.splice(0..0, *b"WA\x05\x02");
            }
            let _ = run(&flow);
        }

        #[test]
        fn any_framed_opening_is_told(
            lens in proptest::collection::vec(1usize..300, 1..5),
            routing in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            split in any::<prop::sample::Index>(),
        ) {
            let mut stream = Vec::new();
            if let Some(r) = &routing {
                stream.extend_from_slice(&EDGE_ROUTING);
                stream.extend_from_slice(&(r.len() as u32).to_be_bytes()[1..]);
                stream.extend_from_slice(r);
            }
            stream.extend_from_slice(b"WA\x06\x03");
            for len in &lens {
                stream.extend(frame(*len as u32, *len));
            }
            // Split anywhere: the second payload still ends where the last frame does.
            let at = split.index(stream.len());
            let flow = vec![(S, stream[..at].to_vec()), (S, stream[at..].to_vec())];
            let v = run(&flow);
            prop_assert!(v.is_some_and(|v| v.evidence.get("client_frames") == Some(&(lens.len() as u32).into())));
        }
    }
}
