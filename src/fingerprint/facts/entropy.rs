//! Byte statistics of one message and the "fully encrypted" test of Wu et al., "How the Great
//! Firewall of China Detects and Blocks Fully Encrypted Traffic" (USENIX Security 2023), §4.
//!
//! The paper found that the GFW treats the first data packet of a TCP connection as fully
//! encrypted (random-looking, no protocol structure) unless one of five exemptions holds:
//!
//! - Ex1: the average number of set bits per byte is `<= 3.4` or `>= 4.6` (uniformly random
//!   bytes average 4.0);
//! - Ex2: the first six bytes are all printable ASCII (`0x20..=0x7e`);
//! - Ex3: more than half of the bytes are printable ASCII;
//! - Ex4: more than twenty contiguous bytes are printable ASCII;
//! - Ex5: the message matches a known protocol (the paper names TLS and HTTP; HTTP is covered by
//!   Ex2, so only binary-headed protocols need a structural check here).
//!
//! Contract: pure functions over borrowed bytes, one pass, no allocation, never panic. The
//! statistics can also be computed over a WebSocket-masked payload ([`ByteStats::of_masked`]) so
//! a caller never has to copy a frame to unmask it.

/// Lower bound of Ex1: an average popcount at or below this exempts the message.
pub const POPCOUNT_LOW: f64 = 3.4;
/// Upper bound of Ex1: an average popcount at or above this exempts the message.
pub const POPCOUNT_HIGH: f64 = 4.6;
/// Ex2: length of the all-printable prefix that exempts a message.
pub const PRINTABLE_PREFIX: usize = 6;
/// Ex4: a printable run longer than this exempts a message.
pub const PRINTABLE_RUN: usize = 20;

/// Printable ASCII as the paper defines it: `0x20..=0x7e`.
pub fn is_printable(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

/// The measured statistics of one message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ByteStats {
    /// Bytes measured.
    pub len: usize,
    /// Total set bits.
    pub ones: u64,
    /// Printable bytes.
    pub printable: usize,
    /// Leading printable bytes (capped at the message length).
    pub printable_prefix: usize,
    /// Longest run of contiguous printable bytes.
    pub longest_printable_run: usize,
}

impl ByteStats {
    /// Measures `bytes` in one pass.
    pub fn of(bytes: &[u8]) -> ByteStats {
        Self::measure(bytes.iter().copied())
    }

    /// Measures `bytes` after XOR with a repeating 4-byte key (a masked WebSocket payload,
    /// RFC 6455 §5.3), without copying it.
    pub fn of_masked(bytes: &[u8], key: [u8; 4]) -> ByteStats {
        Self::measure(bytes.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k))
    }

    fn measure(bytes: impl Iterator<Item = u8>) -> ByteStats {
        let mut s = ByteStats {
            len: 0,
            ones: 0,
            printable: 0,
            printable_prefix: 0,
            longest_printable_run: 0,
        };
        let mut run = 0usize;
        let mut in_prefix = true;
        for b in bytes {
            s.len += 1;
            s.ones += u64::from(b.count_ones());
            if is_printable(b) {
                s.printable += 1;
                run += 1;
                s.longest_printable_run = s.longest_printable_run.max(run);
                if in_prefix {
                    s.printable_prefix += 1;
                }
            } else {
                run = 0;
                in_prefix = false;
            }
        }
        s
    }

    /// Average set bits per byte (0.0 for an empty message).
    pub fn popcount_avg(&self) -> f64 {
        if self.len == 0 {
            return 0.0;
        }
        self.ones as f64 / self.len as f64
    }

    /// Fraction of printable bytes (0.0 for an empty message).
    pub fn printable_frac(&self) -> f64 {
        if self.len == 0 {
            return 0.0;
        }
        self.printable as f64 / self.len as f64
    }

    /// The first of the statistical exemptions Ex1–Ex4 that applies, if any.
    pub fn exemption(&self) -> Option<Exemption> {
        let pc = self.popcount_avg();
        if self.len == 0 || pc <= POPCOUNT_LOW || pc >= POPCOUNT_HIGH {
            Some(Exemption::Popcount)
        } else if self.printable_prefix >= PRINTABLE_PREFIX {
            Some(Exemption::PrintablePrefix)
        } else if self.printable * 2 > self.len {
            Some(Exemption::MostlyPrintable)
        } else if self.longest_printable_run > PRINTABLE_RUN {
            Some(Exemption::PrintableRun)
        } else {
            None
        }
    }
}

/// Why a message is not fully encrypted (Wu et al. 2023, §4.1, exemptions Ex1–Ex5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exemption {
    /// Ex1: average popcount per byte outside (3.4, 4.6).
    Popcount,
    /// Ex2: the first six bytes are printable.
    PrintablePrefix,
    /// Ex3: more than half of the bytes are printable.
    MostlyPrintable,
    /// Ex4: more than twenty contiguous printable bytes.
    PrintableRun,
    /// Ex5: the message starts like a known binary protocol.
    KnownProtocol(KnownProtocol),
}

impl Exemption {
    /// Short name for evidence (`ex1` ... `ex5`).
    pub fn name(self) -> &'static str {
        match self {
            Exemption::Popcount => "ex1_popcount",
            Exemption::PrintablePrefix => "ex2_printable_prefix",
            Exemption::MostlyPrintable => "ex3_mostly_printable",
            Exemption::PrintableRun => "ex4_printable_run",
            Exemption::KnownProtocol(_) => "ex5_known_protocol",
        }
    }
}

/// Binary-headed protocols recognised by Ex5. Text protocols (HTTP, SSH banners, SMTP, the
/// BitTorrent handshake string) are already exempt by Ex2–Ex4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownProtocol {
    /// A TLS record header: content type 20–23, major version 3, minor 0–4, length at most
    /// 2^14 + 2048 (RFC 8446 §5.1, RFC 5246 §6.2).
    Tls,
    /// An SSLv2-compatible ClientHello: two-byte header with the high bit set, message type 1
    /// (RFC 6101 Appendix E.2, RFC 5246 Appendix E.2).
    Sslv2Hello,
    /// The BitTorrent peer handshake: byte 19 then `BitTorrent protocol` (BEP 3).
    BitTorrent,
    /// A SOCKS5 greeting `05 n methods…` of exact length 2 + n (RFC 1928 §3) or a SOCKS4
    /// request `04 01|02 port ip … 00` (SOCKS4 protocol description).
    Socks,
}

/// Ex5: the first bytes match a known binary protocol.
pub fn known_protocol(b: &[u8]) -> Option<KnownProtocol> {
    match b {
        [20..=23, 3, 0..=4, hi, lo, ..] if u16::from_be_bytes([*hi, *lo]) <= 16384 + 2048 => {
            Some(KnownProtocol::Tls)
        }
        [h, _, 1, 3 | 0, ..] if h & 0x80 != 0 => Some(KnownProtocol::Sslv2Hello),
        [19, rest @ ..] if rest.starts_with(b"BitTorrent protocol") => {
            Some(KnownProtocol::BitTorrent)
        }
        [5, n, methods @ ..] if *n >= 1 && methods.len() == usize::from(*n) => {
            Some(KnownProtocol::Socks)
        }
        [4, 1 | 2, _, _, _, _, _, _, ..] if b.last() == Some(&0) => Some(KnownProtocol::Socks),
        _ => None,
    }
}

/// The full test on one message: its statistics and the exemption (Ex1–Ex5) that applies, if
/// any. `None` exemption means the message looks fully encrypted.
pub fn classify(bytes: &[u8]) -> (ByteStats, Option<Exemption>) {
    let stats = ByteStats::of(bytes);
    let ex = stats
        .exemption()
        .or_else(|| known_protocol(bytes).map(Exemption::KnownProtocol));
    (stats, ex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A deterministic pseudo-random message (xorshift), statistically like ciphertext.
    pub(crate) fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn random_bytes_are_not_exempt() {
        let b = random_bytes(512, 7);
        let (s, ex) = classify(&b);
        assert_eq!(ex, None, "{s:?}");
        assert!((s.popcount_avg() - 4.0).abs() < 0.3);
    }

    #[test]
    fn exemptions_in_order() {
        assert_eq!(classify(&[0u8; 64]).1, Some(Exemption::Popcount));
        assert_eq!(classify(&[0xffu8; 64]).1, Some(Exemption::Popcount));
        // ASCII text is usually exempt by Ex1 already (letters have 3-4 bits set).
        assert!(classify(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").1.is_some());
        let mut p = random_bytes(200, 9);
        p[..6].copy_from_slice(b"~w~w~w");
        p[6] = 0x81;
        assert_eq!(classify(&p).1, Some(Exemption::PrintablePrefix));
        // A 21-byte printable run inside ciphertext-like bytes: only Ex4 applies.
        let mut c = random_bytes(400, 3);
        c[0] = 0x90;
        c[40..61].copy_from_slice(b"abcdefghijklmnopqrstu");
        c[39] = 0x80;
        c[61] = 0x80;
        let s = ByteStats::of(&c);
        assert!(s.longest_printable_run >= 21);
        assert_eq!(classify(&c).1, Some(Exemption::PrintableRun), "{s:?}");
        // 20 printable bytes are not enough for Ex4.
        c[60] = 0x80;
        assert_eq!(classify(&c).1, None);
    }

    #[test]
    fn tls_and_bittorrent_are_known() {
        // First bytes of the ClientHello in tls_heur__vmess-tcp-tls.pcapng, frame 29.
        assert_eq!(
            known_protocol(&[0x16, 0x03, 0x01, 0x01, 0x11, 0x01]),
            Some(KnownProtocol::Tls)
        );
        let mut bt = vec![19u8];
        bt.extend_from_slice(b"BitTorrent protocol");
        bt.extend_from_slice(&[0; 48]);
        assert_eq!(known_protocol(&bt), Some(KnownProtocol::BitTorrent));
        assert_eq!(known_protocol(&[5, 1, 0]), Some(KnownProtocol::Socks));
        assert_eq!(known_protocol(&random_bytes(64, 11)), None);
    }

    #[test]
    fn masked_stats_equal_unmasked() {
        let plain = random_bytes(77, 5);
        let key = [0x12, 0x34, 0x56, 0x78];
        let masked: Vec<u8> = plain
            .iter()
            .zip(key.iter().cycle())
            .map(|(b, k)| b ^ k)
            .collect();
        assert_eq!(ByteStats::of_masked(&masked, key), ByteStats::of(&plain));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let (s, _) = classify(&bytes);
            prop_assert_eq!(s.len, bytes.len());
            prop_assert!(s.printable_prefix <= s.longest_printable_run.max(s.printable_prefix));
            prop_assert!(s.longest_printable_run <= s.printable);
            let _ = ByteStats::of_masked(&bytes, [1, 2, 3, 4]);
        }
    }
}
