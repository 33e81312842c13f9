//! Fully encrypted TCP traffic: connections whose very first bytes already look random, the class
//! of protocols (Shadowsocks, VMess, obfs4, ...) that the Great Firewall of China blocks by the
//! exemption rules measured in Wu et al., "How the Great Firewall of China Detects and Blocks
//! Fully Encrypted Traffic" (USENIX Security 2023), §4 — see [`crate::fingerprint::facts::entropy`].
//!
//! The GFW looks only at the client's first data packet and accepts false positives; this
//! detector adds corroboration for precision:
//!
//! - the client speaks first (the first payload of the flow goes to the server) and its first
//!   payload is at least [`MIN_FIRST_LEN`] bytes (the popcount average of a handful of bytes is
//!   noise: the standard deviation of the mean of n random bytes is sqrt(2/n));
//! - the client's first payload passes none of the exemptions Ex1–Ex5;
//! - the server answers, with at least [`MIN_REPLY_LEN`] bytes that also pass no exemption;
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
                if p.nth != 0 {
                    // The server spoke first: a banner protocol, not a fully encrypted proxy.
                    return Step::NotThis;
                }
                match fully_encrypted(p.bytes, MIN_FIRST_LEN) {
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
                let Some(reply) = fully_encrypted(p.bytes, MIN_REPLY_LEN) else {
                    return Step::NotThis;
                };
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
    fn server_first_is_not_this() {
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Direction::ToClient, 0, 22, &random(100, 1))),
            Step::NotThis
        );
    }

    proptest! {
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
