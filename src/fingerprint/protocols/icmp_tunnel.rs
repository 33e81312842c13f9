//! ICMP tunnels (icmptunnel, ptunnel, hans and alike): data carried in ICMP echo payloads.
//!
//! An ordinary ping (RFC 792 echo) sends a fixed filler — Linux/BSD `ping`: a 8- or 16-byte
//! timestamp then bytes equal to their offset (0x08.. or 0x10..); Windows: the alphabet
//! `abcdefghijklmnopqrstuvw` repeated — and the reply echoes the request's payload byte for
//! byte. A tunnel carries data: whole IP packets (icmptunnel puts the tunnelled IPv4 packet,
//! header checksum valid, as the payload), protocol banners such as `SSH-2.0`, or encrypted
//! high-entropy bytes; its payload sizes vary and the replies carry the other side's data
//! instead of the echo.
//!
//! Payload here is what follows the 8-byte ICMP header (type, code, checksum, id, seq), for
//! every ICMP type. ICMP errors also quote an IP header (RFC 792: the original datagram's
//! header + 64 bits); those quote the flow's own endpoints, so embedded packets whose addresses
//! are the flow's are not counted (checked in `conclude`, which knows the addresses).
//!
//! Decision (statistical, at flow end): at least [`MIN_DATA`] data-carrying payloads with some
//! in each direction, at least two replies that are not an echo of a request, several sizes,
//! and hardly any ping filler.

use std::net::IpAddr;

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Direction;

/// Detector registration: ICMP tunnel.
pub static SPEC: Spec = Spec {
    name: "icmp_tunnel",
    family: Family::Tunnel,
    transports: Transports::ICMP,
    payload_budget: 16,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// Data-carrying payloads needed.
pub const MIN_DATA: u8 = 4;

/// What one echo payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A ping utility's filler (or another short repeating pattern).
    PingFiller,
    /// A whole IPv4/IPv6 packet with these addresses (IPv4 header checksum verified).
    IpPacket {
        src: IpAddr,
        dst: IpAddr,
    },
    /// An application banner (`SSH-`, `HTTP/`).
    Banner,
    /// High-entropy bytes (>= 80% of the maximum possible for the length, >= 48 bytes).
    HighEntropy,
    Other,
}

/// Linux/BSD filler: bytes equal to their offset after an 8- or 16-byte timestamp; Windows
/// filler: `abcdefghijklmnopqrstuvw` repeated; any payload with a period <= 32 after byte 16.
fn is_filler(b: &[u8]) -> bool {
    if b.len() < 4 {
        return true;
    }
    let offset_fill =
        |k: usize| b.len() > k && b.iter().enumerate().skip(k).all(|(i, &x)| x == i as u8);
    if offset_fill(8) || offset_fill(16) {
        return true;
    }
    const WIN: &[u8] = b"abcdefghijklmnopqrstuvw";
    if b.iter()
        .enumerate()
        .all(|(i, &x)| WIN.get(i % WIN.len()) == Some(&x))
    {
        return true;
    }
    let tail = b.get(16..).unwrap_or(&[]);
    tail.len() >= 16 && (1..=32).any(|p| tail.iter().skip(p).zip(tail).all(|(a, c)| a == c))
}

/// IPv4 header checksum (RFC 791 §3.1): ones' complement sum over the header is 0xffff.
fn ipv4_checksum_ok(h: &[u8]) -> bool {
    let mut sum: u32 = 0;
    for c in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// A whole IP packet: IPv4 (version 4, IHL >= 5, total length == payload length, checksum
/// valid) or IPv6 (version 6, payload length + 40 == payload length).
fn embedded_ip(b: &[u8]) -> Option<(IpAddr, IpAddr)> {
    let v = *b.first()? >> 4;
    match v {
        4 => {
            let ihl = usize::from(b[0] & 0x0f) * 4;
            let h = b.get(..ihl.max(20))?;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if ihl < 20 || total != b.len() || !ipv4_checksum_ok(h) {
                return None;
            }
            let src: [u8; 4] = h.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = h.get(16..20)?.try_into().ok()?;
            Some((IpAddr::from(src), IpAddr::from(dst)))
        }
        6 => {
            let h = b.get(..40)?;
            if usize::from(u16::from_be_bytes([h[4], h[5]])) + 40 != b.len() {
                return None;
            }
            let src: [u8; 16] = h.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = h.get(24..40)?.try_into().ok()?;
            Some((IpAddr::from(src), IpAddr::from(dst)))
        }
        _ => None,
    }
}

fn entropy_bits(b: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &x in b {
        counts[usize::from(x)] += 1;
    }
    let n = b.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Classifies one ICMP payload (bytes after the 8-byte ICMP header).
pub fn classify(b: &[u8]) -> Content {
    if let Some((src, dst)) = embedded_ip(b) {
        return Content::IpPacket { src, dst };
    }
    if is_filler(b) {
        return Content::PingFiller;
    }
    if contains(b, b"SSH-1.") || contains(b, b"SSH-2.0") || contains(b, b"HTTP/1.") {
        return Content::Banner;
    }
    if b.len() >= 48 {
        let max = (b.len().min(256) as f64).log2();
        if entropy_bits(b) >= 0.8 * max {
            return Content::HighEntropy;
        }
    }
    Content::Other
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Per-flow counters.
#[derive(Debug, Default, Clone)]
struct State {
    payloads: u8,
    filler: u8,
    /// Data-carrying payloads per direction (banner / entropy / foreign IP packet).
    data: [u8; 2],
    banners: u8,
    high_entropy: u8,
    /// Embedded IP packets, with their addresses (at most 16 kept).
    embedded: Vec<(Direction, IpAddr, IpAddr)>,
    request_hashes: Vec<u64>,
    non_echo_replies: u8,
    sizes: Vec<u16>,
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let b = p.bytes;
        self.payloads = self.payloads.saturating_add(1);
        let size = u16::try_from(b.len()).unwrap_or(u16::MAX);
        if !self.sizes.contains(&size) && self.sizes.len() < 16 {
            self.sizes.push(size);
        }
        let h = fnv(b);
        match p.direction {
            Direction::ToServer => {
                if self.request_hashes.len() < 32 {
                    self.request_hashes.push(h);
                }
            }
            Direction::ToClient => {
                if !self.request_hashes.contains(&h) {
                    self.non_echo_replies = self.non_echo_replies.saturating_add(1);
                }
            }
        }
        let dir = p.direction.index();
        match classify(b) {
            Content::PingFiller => self.filler = self.filler.saturating_add(1),
            Content::IpPacket { src, dst } => {
                if self.embedded.len() < 16 {
                    self.embedded.push((p.direction, src, dst));
                }
            }
            Content::Banner => {
                self.banners = self.banners.saturating_add(1);
                self.data[dir] = self.data[dir].saturating_add(1);
            }
            Content::HighEntropy => {
                self.high_entropy = self.high_entropy.saturating_add(1);
                self.data[dir] = self.data[dir].saturating_add(1);
            }
            Content::Other => {}
        }
        // Plain pings: give up early.
        if self.payloads >= 4 && self.filler * 2 > self.payloads {
            return Step::NotThis;
        }
        Step::NeedMore
    }

    fn conclude(&mut self, flow: &FlowContext) -> Option<Verdict> {
        let outer = [flow.client_ip, flow.server_ip];
        let mut data = self.data;
        let mut foreign_ip = 0u8;
        for (d, src, dst) in &self.embedded {
            // An ICMP error quotes a datagram of the flow's own endpoints; a tunnel carries
            // packets of the tunnel's addresses.
            if !outer.contains(src) && !outer.contains(dst) {
                foreign_ip += 1;
                data[d.index()] = data[d.index()].saturating_add(1);
            }
        }
        let total = data[0].saturating_add(data[1]);
        let ok = total >= MIN_DATA
            && data[0] >= 1
            && data[1] >= 1
            && self.non_echo_replies >= 2
            && self.sizes.len() >= 2
            && u16::from(self.filler) * 4 <= u16::from(self.payloads);
        ok.then(|| {
            Verdict::new(Confidence::Statistical)
                .fact("payloads", self.payloads)
                .fact("data_payloads", total)
                .fact("embedded_ip_packets", foreign_ip)
                .fact("banners", self.banners)
                .fact("high_entropy", self.high_entropy)
                .fact("non_echo_replies", self.non_echo_replies)
                .fact("distinct_sizes", self.sizes.len())
                .fact("ping_filler", self.filler)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Transport;
    use proptest::prelude::*;

    use crate::fingerprint::test_support::hex;

    fn payload(direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes)
            .over(Transport::Icmp)
            .nth(nth)
            .ports(0, 0)
    }

    fn ctx(client: &str, server: &str) -> FlowContext {
        FlowContext {
            client_ip: client.parse().unwrap(),
            server_ip: server.parse().unwrap(),
            packets: [8, 8],
            payload_packets: [8, 8],
            ..FlowContext::test(Transport::Icmp, 0, 0)
        }
    }

    /// icmp-tunnel.pcap frame 3 (192.168.154.131 -> .132, echo request): payload is a whole
    /// tunnelled IPv4 packet 10.95.1.1 -> 10.95.1.2 (itself a Linux ping).
    const TUNNEL_PING: &str =
        "4500005400004000400123e90a5f01010a5f010208005beb3d0800012d6e13512d49060008090a0b0c0d0e0f\
        101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637";
    /// icmp-tunnel.pcap (echo reply carrying 10.95.1.2:22 -> 10.95.1.1, TCP with the OpenSSH
    /// banner `SSH-2.0-OpenSSH_5.3`).
    const TUNNEL_SSH: &str =
        "45000049398140004006ea6d0a5f01020a5f01010016c88b0e1bbfb6317d53b5801801c58fd000000101080a\
        006d8643006d6ade5353482d322e302d4f70656e5353485f352e330d0a";
    /// The client's banner, echo request.
    const TUNNEL_SSH_C: &str =
        "45000049396b40004006ea830a5f01010a5f0102c88b0016317d53b50e1bbfcb801801c98fab0000010108\
        0a006d6aea006d86435353482d322e302d4f70656e5353485f352e330d0a";

    #[test]
    fn tunnel_from_capture() {
        let ping = hex(TUNNEL_PING);
        assert!(matches!(classify(&ping), Content::IpPacket { .. }));
        let ssh_s = hex(TUNNEL_SSH);
        let ssh_c = hex(TUNNEL_SSH_C);
        let mut reply = ping.clone();
        // The tunnelled reply: addresses swapped (checksum unchanged by the swap).
        reply[12..16].copy_from_slice(&[10, 95, 1, 2]);
        reply[16..20].copy_from_slice(&[10, 95, 1, 1]);
        let mut s = State::default();
        let seq = [
            (Direction::ToServer, &ping),
            (Direction::ToClient, &reply),
            (Direction::ToServer, &ssh_c),
            (Direction::ToClient, &ssh_s),
            (Direction::ToServer, &ping),
            (Direction::ToClient, &reply),
        ];
        for (i, (d, b)) in seq.iter().enumerate() {
            assert_eq!(s.observe(&payload(*d, i as u8, b)), Step::NeedMore);
        }
        let v = s
            .conclude(&ctx("192.168.154.131", "192.168.154.132"))
            .expect("tunnel");
        assert_eq!(
            v.evidence
                .get("embedded_ip_packets")
                .map(|f| f.to_string())
                .as_deref(),
            Some("6")
        );
    }

    #[test]
    fn plain_pings_stay_unlabelled() {
        // Linux ping payload: 8-byte timestamp then 0x08..0x37; replies echo it.
        let mut linux = vec![0x2d, 0x6e, 0x13, 0x51, 0x2d, 0x49, 0x06, 0x00];
        linux.extend(8u8..0x38);
        let windows = b"abcdefghijklmnopqrstuvwabcdefghi".to_vec();
        for pkt in [linux, windows] {
            assert_eq!(classify(&pkt), Content::PingFiller);
            let mut s = State::default();
            let mut last = Step::NeedMore;
            for i in 0..8u8 {
                let mut p = pkt.clone();
                p[0] = i; // timestamps differ
                let d = if i % 2 == 0 {
                    Direction::ToServer
                } else {
                    Direction::ToClient
                };
                last = s.observe(&payload(d, i / 2, &p));
                if last != Step::NeedMore {
                    break;
                }
            }
            assert_eq!(last, Step::NotThis);
        }
        // ICMP errors quoting the flow's own datagrams (port unreachable for DNS queries).
        let mut s = State::default();
        let mut quoted = hex(TUNNEL_PING);
        quoted[12..16].copy_from_slice(&[192, 168, 154, 131]);
        quoted[16..20].copy_from_slice(&[192, 168, 154, 132]);
        quoted[10..12].copy_from_slice(&[0, 0]);
        let ck = {
            let mut sum: u32 = quoted[..20]
                .chunks(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .sum();
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            !(sum as u16)
        };
        quoted[10..12].copy_from_slice(&ck.to_be_bytes());
        assert!(matches!(classify(&quoted), Content::IpPacket { .. }));
        for i in 0..8u8 {
            let d = if i % 2 == 0 {
                Direction::ToServer
            } else {
                Direction::ToClient
            };
            let mut q = quoted.clone();
            q.truncate(40 + usize::from(i));
            let _ = s.observe(&payload(d, i / 2, &q));
        }
        assert!(s
            .conclude(&ctx("192.168.154.131", "192.168.154.132"))
            .is_none());
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(pkts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..40)) {
            let mut s = State::default();
            let mut offered = [0u8; 2];
            for (i, b) in pkts.iter().enumerate() {
                let dir = if i % 2 == 1 { Direction::ToClient } else { Direction::ToServer };
                if offered[dir.index()] >= SPEC.payload_budget { continue; }
                offered[dir.index()] += 1;
                if s.observe(&payload(dir, offered[dir.index()] - 1, b)) != Step::NeedMore { break; }
            }
            let _ = s.conclude(&ctx("10.0.0.1", "10.0.0.2"));
        }
    }
}
