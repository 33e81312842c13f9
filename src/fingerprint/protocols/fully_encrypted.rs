//! Fully encrypted TCP traffic: connections whose very first bytes already look random, the class
//! of protocols (Shadowsocks, VMess, obfs4, ...) that the Great Firewall of China blocks by the
//! exemption rules measured in Wu et al., "How the Great Firewall of China Detects and Blocks
//! Fully Encrypted Traffic" (USENIX Security 2023), §4 — see [`crate::fingerprint::facts::entropy`].
//!
//! The GFW looks only at the client's first data packet and accepts false positives; this
//! detector adds corroboration for precision:
//!
//! - the connection was seen from its start (SYN or SYN-ACK): the test is about a connection's
//!   first data, and a capture that begins mid-connection shows some later segment first;
//! - the client speaks first (the first payload of the flow goes to the server) and its first
//!   payload is at least [`MIN_FIRST_LEN`] bytes (the popcount average of a handful of bytes is
//!   noise: the standard deviation of the mean of n random bytes is sqrt(2/n));
//! - the client's first payload passes none of the exemptions Ex1–Ex5;
//! - the server answers, with at least [`MIN_REPLY_LEN`] bytes that also pass no exemption;
//! - neither message says how long it is ([`frames_itself`]): random bytes do not start with a
//!   length field that counts exactly the bytes after it, while many binary protocols whose
//!   payload is encrypted or compressed do (Ethereum's RLPx handshake, Kerberos over TCP,
//!   Zabbix, ...);
//! - it ranks [`rank::STATISTICAL`]: any structural match (OpenVPN, WireGuard, ...) on the same
//!   flow names the protocol instead.
//!
//! Shadowsocks has no plaintext byte at all, by design, so it cannot be told apart from other
//! fully encrypted protocols by one flow's bytes. The name `shadowsocks` is given (through
//! [`Verdict::protocol`]) only when the lengths fit a Shadowsocks construction
//! ([`shadowsocks_fit`]) *and* the server port is the documented Shadowsocks default
//! [`SHADOWSOCKS_DEFAULT_PORT`] — weak extra evidence on top of the statistical test, shown in
//! the evidence. Otherwise the flow is reported as `fully_encrypted`, which is not a VPN token:
//! BitTorrent's Message Stream Encryption, for example, is fully encrypted too and is honestly
//! labelled so (family obfuscated, `obfuscated` flag left false: no known protocol is hidden).

use crate::fingerprint::facts::entropy::{self, ByteStats};
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Direction;

/// Detector entry: one payload per direction, TCP only (UDP carries many encrypted protocols
/// without plaintext headers — SRTP, QUIC short headers, game traffic — and the paper's rules
/// are for TCP).
pub static SPEC: Spec = Spec {
    name: "fully_encrypted",
    family: Family::Obfuscated,
    transports: Transports::TCP,
    payload_budget: 1,
    rank: rank::STATISTICAL,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// Smallest client first payload judged. At 48 bytes a random message falls outside the Ex1
/// band (4.0 ± 0.6 = ±2.9 standard deviations) about 0.4% of the time; every proxy handshake
/// this aims at is longer (Shadowsocks AEAD >= 57, VMess AEAD >= 108, obfs4 >= 64).
pub const MIN_FIRST_LEN: usize = 48;
/// Smallest server first payload judged.
pub const MIN_REPLY_LEN: usize = 32;
/// `server_port` of the Shadowsocks example configurations (shadowsocks-libev, shadowsocks-rust
/// README and man pages).
pub const SHADOWSOCKS_DEFAULT_PORT: u16 = 8388;

/// Shortest SOCKS5-style target address in a Shadowsocks request: ATYP 1 + IPv4 4 + port 2
/// (SIP002 / shadowsocks.org "Protocol": `[target address][payload]`).
const SS_MIN_ADDR: usize = 7;
/// IV lengths of the stream ciphers (rc4-md5/aes-*-cfb/ctr: 16, chacha20: 8, chacha20-ietf: 12).
const SS_STREAM_IVS: [usize; 3] = [8, 12, 16];
/// Salt lengths of the AEAD ciphers (SIP004: 16, 24 or 32 = the key size).
const SS_AEAD_SALTS: [usize; 3] = [16, 24, 32];
/// AEAD chunk overhead: encrypted 2-byte length + its 16-byte tag + the payload's 16-byte tag.
const SS_AEAD_CHUNK_OVERHEAD: usize = 2 + 16 + 16;

/// Which Shadowsocks constructions the first payload lengths fit (both usually do: lengths
/// alone cannot tell a stream cipher from AEAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsFit {
    /// SIP004 AEAD: `salt | [len+tag][payload+tag]...`; the first chunk holds the target
    /// address, so the request is at least salt + 34 + 7 bytes and the reply salt + 34 + 1.
    pub aead: bool,
    /// Stream cipher: `iv | target address | payload` and `iv | payload`.
    pub stream: bool,
}

/// The Shadowsocks constructions that fit a request of `first_len` bytes and a reply of
/// `reply_len` bytes; `None` when neither does.
pub fn shadowsocks_fit(first_len: usize, reply_len: usize) -> Option<SsFit> {
    let aead = SS_AEAD_SALTS.iter().any(|s| {
        first_len >= s + SS_AEAD_CHUNK_OVERHEAD + SS_MIN_ADDR
            && reply_len > s + SS_AEAD_CHUNK_OVERHEAD
    });
    let stream = SS_STREAM_IVS
        .iter()
        .any(|iv| first_len >= iv + SS_MIN_ADDR && reply_len > *iv);
    (aead || stream).then_some(SsFit { aead, stream })
}

/// A length field at the start of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthPrefix {
    /// 2 or 4 bytes.
    pub width: usize,
    pub big_endian: bool,
    /// The length counts the field itself too (else only the bytes after it).
    pub counts_itself: bool,
}

/// The prefixes [`self_framed`] tries: 2 or 4 bytes, either byte order, counting the bytes after
/// the field or the whole message. Among them: DNS over TCP (2 bytes, big-endian, after; RFC
/// 1035 §4.2.2), Ethereum RLPx's `auth-size`/`ack-size` ahead of its ECIES-encrypted handshake
/// (the same; devp2p `rlpx.md`, "Handshake"), Kerberos over TCP (4 bytes, big-endian, after;
/// RFC 4120 §7.2.2).
pub const LENGTH_PREFIXES: [LengthPrefix; 8] = {
    let mut all = [LengthPrefix {
        width: 2,
        big_endian: true,
        counts_itself: false,
    }; 8];
    let mut i = 0;
    while i < 8 {
        all[i] = LengthPrefix {
            width: if i & 1 == 0 { 2 } else { 4 },
            big_endian: i & 2 == 0,
            counts_itself: i & 4 != 0,
        };
        i += 1;
    }
    all
};

/// Most length-prefixed messages [`self_framed`] follows in one payload.
pub const MAX_FRAMED_MESSAGES: usize = 8;

/// The length prefix by which `bytes` is a chain of whole messages (at most
/// [`MAX_FRAMED_MESSAGES`], each a length field and the bytes it counts), ending exactly at the
/// end of `bytes`; `None` if no prefix of [`LENGTH_PREFIXES`] does that.
///
/// A fully encrypted protocol's first message is indistinguishable from random bytes by design
/// (that is what the Ex1–Ex5 tests look for), and random bytes frame themselves this way rarely:
/// a 2-byte field about once in 65 536 messages per prefix, a 4-byte one about once in 4
/// billion, so all eight prefixes together pass about one random message in 16 000. Binary
/// protocols whose payload merely *is* encrypted or compressed, on the other hand, usually say
/// how long it is first: Ethereum's RLPx handshake, for one, passes every exemption of the
/// paper's test, and is a plain length-prefixed ECIES message.
pub fn self_framed(bytes: &[u8]) -> Option<LengthPrefix> {
    LENGTH_PREFIXES
        .into_iter()
        .find(|&prefix| frames_exactly(bytes, prefix))
}

/// Farthest offset of a 4-byte length field [`length_in_header`] looks at.
pub const HEADER_FIELD_MAX_OFFSET: usize = 8;
/// How far past the end of that field the counted bytes may start (the rest of a header).
pub const HEADER_AFTER_FIELD: usize = 8;

/// A 4-byte length field within the first bytes of a one-message payload: `(offset, big
/// endian)` of a field, at most [`HEADER_FIELD_MAX_OFFSET`] bytes in, whose value is the number of
/// bytes from some point of the header (its start, up to [`HEADER_AFTER_FIELD`] bytes past the
/// field) to the end of the payload.
///
/// Binary protocols put a magic, a version or flags before the length: Zabbix's `ZBXD`, flags,
/// then the little-endian length of the data after an 8-byte length-and-reserved block (Zabbix
/// manual, "Header and data length"). A random message passes with probability about
/// 300 / 2^32 (nine offsets, two byte orders, up to 21 starts), one in 14 million.
pub fn length_in_header(bytes: &[u8]) -> Option<(usize, bool)> {
    (0..=HEADER_FIELD_MAX_OFFSET).find_map(|offset| {
        let field = bytes.get(offset..)?.first_chunk::<4>()?;
        let longest = offset + 4 + HEADER_AFTER_FIELD;
        [true, false].into_iter().find_map(|big_endian| {
            let declared = if big_endian {
                u32::from_be_bytes(*field)
            } else {
                u32::from_le_bytes(*field)
            };
            let declared = usize::try_from(declared).ok()?;
            // The counted bytes start at or before `longest` and run to the end.
            let start = bytes.len().checked_sub(declared)?;
            (start <= longest && declared > 0).then_some((offset, big_endian))
        })
    })
}

/// Offsets [`short_length_after_type`] looks at: after a type byte, or a type and a flags byte.
pub const SHORT_FIELD_OFFSETS: [usize; 2] = [1, 2];

/// A 2-byte length field after a one- or two-byte type: `(offset, big endian)` of a field at
/// [`SHORT_FIELD_OFFSETS`] whose value counts the whole message or the bytes after the field.
///
/// Device and messaging protocols often open each message with a type and a short length (on
/// nDPI's captures, a client of HP's printer cloud on TCP port 5223, which nDPI names
/// `HP_VIRTGRP`, sends `16 00 84 00` and 128 more bytes, 132 in all, and the server answers
/// `17 00 34 00` and 48 more). A random message passes with probability 8 / 65 536 (two
/// offsets, two byte orders, two starts), about one in 8 000.
pub fn short_length_after_type(bytes: &[u8]) -> Option<(usize, bool)> {
    SHORT_FIELD_OFFSETS.into_iter().find_map(|offset| {
        let field = *bytes.get(offset..)?.first_chunk::<2>()?;
        [true, false].into_iter().find_map(|big_endian| {
            let declared = usize::from(if big_endian {
                u16::from_be_bytes(field)
            } else {
                u16::from_le_bytes(field)
            });
            let after_field = bytes.len() - (offset + 2);
            (declared > 0 && (declared == bytes.len() || declared == after_field))
                .then_some((offset, big_endian))
        })
    })
}

/// True when `bytes` says how long it is: [`self_framed`], [`length_in_header`] or
/// [`short_length_after_type`].
pub fn frames_itself(bytes: &[u8]) -> bool {
    self_framed(bytes).is_some()
        || length_in_header(bytes).is_some()
        || short_length_after_type(bytes).is_some()
}

fn frames_exactly(bytes: &[u8], prefix: LengthPrefix) -> bool {
    let mut rest = bytes;
    for _ in 0..MAX_FRAMED_MESSAGES {
        let declared = match (prefix.width, prefix.big_endian) {
            (2, true) => rest
                .first_chunk()
                .map(|f| u32::from(u16::from_be_bytes(*f))),
            (2, false) => rest
                .first_chunk()
                .map(|f| u32::from(u16::from_le_bytes(*f))),
            (_, true) => rest.first_chunk().map(|f| u32::from_be_bytes(*f)),
            (_, false) => rest.first_chunk().map(|f| u32::from_le_bytes(*f)),
        };
        let Some(declared) = declared.and_then(|n| usize::try_from(n).ok()) else {
            return false;
        };
        let message_len = if prefix.counts_itself {
            declared
        } else {
            declared.saturating_add(prefix.width)
        };
        // A message must hold something past its field: zero bytes would pass as a chain of
        // empty messages.
        if message_len <= prefix.width {
            return false;
        }
        let Some(next) = rest.get(message_len..) else {
            return false;
        };
        if next.is_empty() {
            return true;
        }
        rest = next;
    }
    false
}

/// The statistics of the client's first payload, kept until the server answers.
#[derive(Debug, Clone, Copy)]
struct First {
    stats: ByteStats,
    len: usize,
}

/// Per-flow state.
#[derive(Debug, Default, Clone)]
pub struct State {
    first: Option<First>,
}

/// Judges one message: `Some(stats)` when it is long enough and passes no exemption.
fn fully_encrypted(bytes: &[u8], min_len: usize) -> Option<ByteStats> {
    if bytes.len() < min_len {
        return None;
    }
    let (stats, exemption) = entropy::classify(bytes);
    exemption.is_none().then_some(stats)
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        match p.direction {
            Direction::ToServer => {
                if p.midstream {
                    // Whatever comes first here is some later segment of the connection.
                    return Step::NotThis;
                }
                if p.nth != 0 {
                    // The server spoke first: a banner protocol, not a fully encrypted proxy.
                    return Step::NotThis;
                }
                if !p.is_whole() {
                    // Cut short by a snap length: the exemptions for messages that frame
                    // themselves need the message's end, and without them the protocols that
                    // merely look random (length-prefixed ciphertext) are taken for it.
                    return Step::NotThis;
                }
                match fully_encrypted(p.bytes, MIN_FIRST_LEN) {
                    Some(_) if frames_itself(p.bytes) => Step::NotThis,
                    Some(stats) => {
                        self.first = Some(First {
                            stats,
                            len: p.bytes.len(),
                        });
                        Step::NeedMore
                    }
                    None => Step::NotThis,
                }
            }
            Direction::ToClient => {
                let Some(first) = self.first else {
                    return Step::NotThis;
                };
                if !p.is_whole() {
                    return Step::NotThis;
                }
                let Some(reply) = fully_encrypted(p.bytes, MIN_REPLY_LEN) else {
                    return Step::NotThis;
                };
                if frames_itself(p.bytes) {
                    return Step::NotThis;
                }
                let mut v = Verdict::new(Confidence::Statistical)
                    .fact("first_len", first.len)
                    .fact("popcount_avg", first.stats.popcount_avg())
                    .fact("printable_prefix", first.stats.printable_prefix)
                    .fact("printable_frac", first.stats.printable_frac())
                    .fact("longest_printable_run", first.stats.longest_printable_run)
                    .fact("reply_len", p.bytes.len())
                    .fact("reply_popcount_avg", reply.popcount_avg());
                if p.server_port == SHADOWSOCKS_DEFAULT_PORT {
                    if let Some(c) = shadowsocks_fit(first.len, p.bytes.len()) {
                        v = v
                            .fact("ss_aead_fit", c.aead)
                            .fact("ss_stream_fit", c.stream)
                            .fact("default_port", p.server_port);
                        v.protocol = Some("shadowsocks");
                    }
                }
                Step::Match(v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// shadowsocks.pcap frame 15: ss-local -> ss-server:8388, the whole 105-byte first payload
    /// (16-byte IV + 7-byte target address + 82 bytes of the proxied request, all encrypted).
    const SS_FIRST: [u8; 105] = [
        0xf4, 0x9c, 0xfb, 0x0b, 0x87, 0x96, 0xba, 0x87, 0x14, 0x26, 0x3d, 0x68, 0xfc, 0x34, 0xad,
        0x9c, 0xeb, 0x53, 0xef, 0x21, 0xeb, 0x49, 0x96, 0xf0, 0x1b, 0x3a, 0xd9, 0x74, 0x40, 0xc4,
        0x8f, 0xc7, 0x0b, 0x44, 0x9c, 0xad, 0x9f, 0x5d, 0xf5, 0x8c, 0x0b, 0xf6, 0x65, 0x80, 0x4d,
        0x5a, 0x15, 0x7c, 0x17, 0x51, 0x4c, 0x96, 0xcc, 0x23, 0x8b, 0x13, 0xea, 0xd3, 0x00, 0xc9,
        0xc5, 0x33, 0xf6, 0x37, 0xa3, 0xd2, 0xa3, 0xf0, 0x34, 0xb8, 0xf2, 0x67, 0xd6, 0x55, 0x49,
        0xfc, 0x05, 0xd5, 0xe6, 0x6d, 0x5d, 0xdf, 0x13, 0xd3, 0x08, 0x9f, 0x9a, 0xd5, 0x9e, 0x3b,
        0x2a, 0xe1, 0x44, 0x26, 0x7f, 0xb1, 0xdc, 0x6a, 0x73, 0x56, 0x66, 0xda, 0x13, 0x58, 0xc6,
    ];

    /// `../shared/bench/ndpi-mix.pcap` (nDPI's test captures) frames 8538 and 8577: an
    /// Ethereum node's RLPx `auth` message to a peer on port 30303 and the peer's `ack` (EIP-8:
    /// a 2-byte big-endian size, then the ECIES-encrypted body starting with the ephemeral
    /// public key's 0x04). Both pass every exemption of the paper's test.
    const RLPX_AUTH: &str = concat!(
        "01ed043456d131b0e847cabbfe5055a522ddbd0d2cb3f2b2b180d3ddc81eb81b117a99e14de9a910bc530c3cf203edad",
        "9d24b7febb81da6a446d612e49e7652288fc43efc6fb5d974716a560c2402c617f12bd41b9f511939035610f5dd85b9d",
        "0bf880cbfd3f49080a483cdacd633177b9b52f3c1bb759e4c3c6634cce853c1d8c7325f0487ed68dcd675108604a7e4b",
        "59338356a450f97e0fbb0be489f251f57b01921dd5220c8475a1c55fc62bdcacde2ce7a42c4c12234c8a8c7e192dda63",
        "0cce4a2a7061839e3c6d8e83df46b2fc169a3327f9f22a324a10a62cd48c4ac158c9041f555633bedbeb65b97a2c1b00",
        "682a75433b430820c8e4d97633e6e3302b2ab7aee485177221f66bfb8e7c986d3ca8a4f28cef283268d84d99cb4a6b52",
        "fd5371fd0209e402f5c5472407e472dd6e26f857d43425e687133c8c9ed0e1e108437a340b7c013a6e2ae4e321cbbef3",
        "1cb57553c9fed4fde5cce973d6ac15701499ddcea37262a39fbc00504e7a090de6f16ea7d0814a3dddc2ea5a8c029ea4",
        "e3d782c6310c6cf0aadc66ee2ce8672cbd37dbba8ecbd4ad753b3093329a3a0edadd61c366bae216f112c1b382de5a1d",
        "11c2ff27c54e0c8cd3624ee23213f7a9a6c4fa39148baff552b92490b1ea050edc7d9e1aa07e48aabdf94a3af6601ec7",
        "3ba5a8d8b071abdee5039b886a2d2b",
    );
    const RLPX_ACK: &str = concat!(
        "01be04317cd977fb94bcbce65bd640579673395140ee977c6d4933defb3da4e9a34a81280a3f58802f132e1b39564b27",
        "6fe148dcf55e12f90651ab71cfe58db7399f201c2771189a855b6e4fb99f77b20e46439d946901f0d02b43198ecf27ab",
        "15514f0bf6c7a170b3ef18adf291caf31069d8962a9aee162bb9a48e99ebb30022b2962bb709f28f7a6ac5559b048fb6",
        "725b9eb73ea075d6a9b6124d0d777bda05c997976356aa7258c0983d8171d9bd354c51b857bf8ff84034b4049e8b3af5",
        "728d94475a6d570fc329f9bcca4249a1c620fb66e31e8c6e172758b7ed274e33008a5d4e6ba7f7af0dce51669e35bb1e",
        "d534a233bc248983618fda36018b0ba6dfc8bc709c4fe2d5b6e37d77ffacc497810282f44b7c734e39ab5fb854f21701",
        "c6b5ecd853bb3000f6cfa42a6d7a6a5db597ef5febadba03338d5a5aeba97911217de8bbab1b0fbe44b0475b476cac0e",
        "6a0fda37e4f53dde254c7672e3047f3a38df61a0cbadbd133b62be79cc27953919d61e21bd46f56cc20311077b5c1c4e",
        "cf51bb0815cdc78a7f1d8c38ff5449f905bc0c5fe630489ca21a77a05641b2093dc86c52fcd1a393b23331c264b02bea",
        "c86509f07e11343ab5d71246b6d2f321",
    );

    fn pl(direction: Direction, nth: u8, server_port: u16, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes)
            .nth_in_flow(nth)
            .ports(44276, server_port)
    }

    fn random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn run(first: &[u8], reply: &[u8], port: u16) -> Step {
        let mut s = State::default();
        match s.observe(&pl(Direction::ToServer, 0, port, first)) {
            Step::NeedMore => s.observe(&pl(Direction::ToClient, 1, port, reply)),
            other => other,
        }
    }

    #[test]
    fn shadowsocks_capture_bytes_are_fully_encrypted() {
        let (s, ex) = entropy::classify(&SS_FIRST);
        assert_eq!(ex, None, "{s:?}");
    }

    #[test]
    fn shadowsocks_named_on_default_port_only() {
        let reply = random(1400, 9);
        let Step::Match(v) = run(&SS_FIRST, &reply, 8388) else {
            panic!("no match")
        };
        assert_eq!(v.protocol, Some("shadowsocks"));
        assert_eq!(v.confidence, Confidence::Statistical);
        assert!(v.evidence.get("popcount_avg").is_some());
        let Step::Match(v) = run(&SS_FIRST, &reply, 9000) else {
            panic!("no match")
        };
        assert_eq!(v.protocol, None);
        assert!(!v.obfuscated);
    }

    #[test]
    fn construction_fit() {
        assert_eq!(
            shadowsocks_fit(105, 14496),
            Some(SsFit {
                aead: true,
                stream: true
            })
        );
        assert_eq!(
            shadowsocks_fit(30, 40),
            Some(SsFit {
                aead: false,
                stream: true
            })
        );
        assert_eq!(shadowsocks_fit(10, 40), None);
    }

    #[test]
    fn short_or_plaintext_or_tls_is_not_labelled() {
        let reply = random(200, 3);
        assert_eq!(run(&random(20, 4), &reply, 8388), Step::NotThis);
        assert_eq!(
            run(
                b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\n\r\n",
                &reply,
                80
            ),
            Step::NotThis
        );
        let mut tls = random(300, 5);
        tls[..5].copy_from_slice(&[0x16, 0x03, 0x01, 0x01, 0x27]);
        assert_eq!(run(&tls, &reply, 443), Step::NotThis);
        // BitTorrent handshake (bittorrent.pcap frame 4 starts like this).
        let mut bt = vec![19u8];
        bt.extend_from_slice(b"BitTorrent protocol");
        bt.extend_from_slice(&random(48, 6));
        assert_eq!(run(&bt, &reply, 51413), Step::NotThis);
        // A plaintext reply (e.g. an HTTP error page) vetoes.
        assert_eq!(
            run(
                &random(100, 8),
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
                80
            ),
            Step::NotThis
        );
    }

    #[test]
    fn length_framed_encrypted_handshakes_are_not_fully_encrypted() {
        use crate::fingerprint::test_support::hex;
        let (auth, ack) = (hex(RLPX_AUTH), hex(RLPX_ACK));
        assert_eq!((auth.len(), ack.len()), (495, 448));
        // Random-looking by the paper's measures...
        assert_eq!(entropy::classify(&auth).1, None);
        assert_eq!(entropy::classify(&ack).1, None);
        let rlpx = Some(LengthPrefix {
            width: 2,
            big_endian: true,
            counts_itself: false,
        });
        // ... but each says how long it is, which random bytes do not.
        assert_eq!((self_framed(&auth), self_framed(&ack)), (rlpx, rlpx));
        assert_eq!(run(&auth, &ack, 30303), Step::NotThis);
        // Either message framing itself is enough.
        assert_eq!(run(&auth, &random(448, 11), 30303), Step::NotThis);
        assert_eq!(run(&random(495, 12), &ack, 30303), Step::NotThis);
        assert!(matches!(
            run(&random(495, 12), &random(448, 11), 30303),
            Step::Match(_)
        ));
    }

    #[test]
    fn framing_chains_and_limits() {
        // Kerberos over TCP (RFC 4120 §7.2.2): 4-byte big-endian length, then the message.
        let mut kerberos = vec![0, 0, 0, 60];
        kerberos.extend(random(60, 1));
        assert_eq!(
            self_framed(&kerberos),
            Some(LengthPrefix {
                width: 4,
                big_endian: true,
                counts_itself: false
            })
        );
        // Little-endian lengths that count themselves, two messages back to back.
        let mut two = vec![10, 0];
        two.extend(random(8, 2));
        two.extend([6, 0]);
        two.extend(random(4, 3));
        assert!(self_framed(&two).is_some_and(|p| !p.big_endian && p.counts_itself));
        // One byte short or over, or an empty message, is no framing.
        assert_eq!(self_framed(&kerberos[..63]), None);
        kerberos.push(0);
        assert_eq!(self_framed(&kerberos), None);
        assert_eq!(self_framed(&[0u8; 64]), None);
        assert_eq!(self_framed(&[]), None);
        // More messages than followed.
        let many: Vec<u8> = (0..=MAX_FRAMED_MESSAGES)
            .flat_map(|_| [0, 1, 0xaa])
            .collect();
        assert_eq!(self_framed(&many), None);
        assert!(self_framed(&many[..3 * MAX_FRAMED_MESSAGES]).is_some());
    }

    #[test]
    fn a_short_length_after_a_type_byte_counts_too() {
        // HP's printer-cloud protocol on TCP 5223 in nDPI's captures: type 0x16, then 132 as
        // a big-endian 2-byte length of the whole message; the reply, type 0x17 and 52.
        let mut request = vec![0x16, 0x00, 0x84, 0x00];
        request.extend(random(128, 11));
        let mut reply = vec![0x17, 0x00, 0x34, 0x00];
        reply.extend(random(48, 12));
        assert_eq!(short_length_after_type(&request), Some((1, true)));
        assert_eq!(short_length_after_type(&reply), Some((1, true)));
        assert!(frames_itself(&request) && frames_itself(&reply));
        // Counting the bytes after the field, little-endian after a type and a flags byte.
        let mut after = vec![0x05, 0x80, 60, 0];
        after.extend(random(60, 13));
        assert_eq!(short_length_after_type(&after), Some((2, false)));
        // One byte more than declared, a zero length, too short a message.
        request.push(0);
        assert_eq!(short_length_after_type(&request), None);
        assert_eq!(short_length_after_type(&[0x16, 0, 0, 0, 1, 2]), None);
        assert_eq!(short_length_after_type(&[0x16, 0x00]), None);
    }

    #[test]
    fn a_length_after_a_header_counts_too() {
        // Zabbix (manual, "Header and data length"): "ZBXD", flags 0x03 (compressed), the
        // little-endian data length, 4 reserved bytes (the uncompressed length), the data.
        let data = random(244, 7);
        let mut zabbix = b"ZBXD\x03".to_vec();
        zabbix.extend(244u32.to_le_bytes());
        zabbix.extend(768u32.to_le_bytes());
        zabbix.extend(&data);
        assert_eq!(length_in_header(&zabbix), Some((5, false)));
        assert!(frames_itself(&zabbix));
        // The counted bytes must start within the header (at most 8 bytes past the field)
        // and run to the end: 4 more bytes still pass, 5 do not.
        zabbix.extend([0; 4]);
        assert_eq!(length_in_header(&zabbix), Some((5, false)));
        zabbix.push(0);
        assert_eq!(length_in_header(&zabbix), None);
        let mut late = vec![0u8; 4];
        late.extend(random(20, 8));
        late.extend((100u32 - 4 - 20).to_be_bytes());
        late.extend(random(100 - 28, 9));
        assert_eq!(
            length_in_header(&late),
            None,
            "a field past the header's reach"
        );
    }

    #[test]
    fn random_messages_rarely_frame_themselves() {
        // About one in 16 000 by the arithmetic in `self_framed`'s and `length_in_header`'s
        // docs; 20 000 random messages of proxy-handshake sizes should give a handful at most.
        let framed = (0..20_000u64)
            .filter(|&i| frames_itself(&random(48 + (i as usize % 600), i + 1)))
            .count();
        assert!(
            framed <= 8,
            "{framed} of 20000 random messages framed themselves"
        );
    }

    #[test]
    fn a_connection_picked_up_mid_way_is_not_judged() {
        let (first, reply) = (random(300, 21), random(300, 22));
        assert!(matches!(run(&first, &reply, 9000), Step::Match(_)));
        let mut s = State::default();
        let midway = pl(Direction::ToServer, 0, 9000, &first).midstream();
        assert_eq!(s.observe(&midway), Step::NotThis);
    }

    /// A snap length that cut the first message or the reply short leaves it unjudged: the
    /// self-framing exemptions need the message's end.
    #[test]
    fn payloads_cut_by_a_snap_length_are_not_judged() {
        let (first, reply) = (random(300, 23), random(300, 24));
        let mut s = State::default();
        let cut = pl(Direction::ToServer, 0, 9000, &first[..80]).cut(220);
        assert_eq!(s.observe(&cut), Step::NotThis);
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Direction::ToServer, 0, 9000, &first)),
            Step::NeedMore
        );
        let cut_reply = pl(Direction::ToClient, 0, 9000, &reply[..80]).cut(220);
        assert_eq!(s.observe(&cut_reply), Step::NotThis);
    }

    #[test]
    fn server_first_is_not_this() {
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Direction::ToClient, 0, 22, &random(100, 1))),
            Step::NotThis
        );
    }

    proptest! {
        /// Any chain of messages framed by one prefix is found framed (perhaps by another
        /// prefix that reads it the same way), and any bytes at all can be asked.
        #[test]
        fn built_chains_are_framed(which in 0usize..8, sizes in proptest::collection::vec(1usize..300, 1..=MAX_FRAMED_MESSAGES), junk in proptest::collection::vec(any::<u8>(), 0..700)) {
            let prefix = LENGTH_PREFIXES[which];
            let mut chain = Vec::new();
            for (i, &size) in sizes.iter().enumerate() {
                let declared = if prefix.counts_itself { size + prefix.width } else { size };
                let field = match (prefix.width, prefix.big_endian) {
                    (2, true) => (declared as u16).to_be_bytes().to_vec(),
                    (2, false) => (declared as u16).to_le_bytes().to_vec(),
                    (_, true) => (declared as u32).to_be_bytes().to_vec(),
                    (_, false) => (declared as u32).to_le_bytes().to_vec(),
                };
                chain.extend(field);
                chain.extend(random(size, i as u64 + 1));
            }
            prop_assert!(self_framed(&chain).is_some());
            prop_assert!(frames_itself(&chain));
            let _ = frames_itself(&junk);
        }

        #[test]
        fn never_panics_within_budget(a in proptest::collection::vec(any::<u8>(), 0..600),
                                      b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut s = State::default();
            let first = s.observe(&pl(Direction::ToServer, 0, 8388, &a));
            if first == Step::NeedMore {
                let second = s.observe(&pl(Direction::ToClient, 1, 8388, &b));
                prop_assert!(second != Step::NeedMore);
            }
        }
    }
}
