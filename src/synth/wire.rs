//! Frame building: Ethernet II + IPv4 (RFC 791) / IPv6 (RFC 8200) + TCP (RFC 9293) / UDP
//! (RFC 768), with the IPv4 header checksum and the TCP/UDP checksums over the pseudo-header
//! (RFC 9293 §3.1, RFC 768, RFC 8200 §8.1) computed as the one's-complement sum of RFC 1071.

use std::net::IpAddr;

/// TCP flag bits (RFC 9293 §3.1).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
pub const UDP_LEN: usize = 8;
pub const TCP_LEN: usize = 20;
/// SYN options: MSS(4) + NOP NOP SACK_PERMITTED(4) + NOP WSCALE(4) = 12 bytes.
pub const TCP_SYN_OPTS_LEN: usize = 12;

/// The transport header of one packet.
#[derive(Debug, Clone, Copy)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
}

/// IP-level fields that vary per packet.
#[derive(Debug, Clone, Copy)]
pub struct IpMeta {
    pub ttl: u8,
    pub ip_id: u16,
    pub flow_label: u32,
}

/// One's-complement sum of 16-bit big-endian words (RFC 1071), not yet folded.
pub fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds carries and complements: the value to store in a checksum field.
pub fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    !(acc as u16)
}

/// Sum of the pseudo-header for `proto` and an upper-layer length of `len`.
fn pseudo_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut acc = 0;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum16(acc, &s.octets());
            acc = sum16(acc, &d.octets());
            acc = acc.wrapping_add(u32::from(proto)).wrapping_add(len as u32);
        }
        _ => {
            acc = sum16(acc, &v6_octets(src));
            acc = sum16(acc, &v6_octets(dst));
            let l = len as u32;
            acc = acc
                .wrapping_add(l >> 16)
                .wrapping_add(l & 0xFFFF)
                .wrapping_add(u32::from(proto));
        }
    }
    acc
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(v) => v.octets(),
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
    }
}

/// Length of the frame [`build`] produces.
pub fn frame_len(v6: bool, l4: &L4, payload_len: usize) -> usize {
    ETH_LEN + if v6 { IPV6_LEN } else { IPV4_LEN } + l4_header_len(l4) + payload_len
}

fn l4_header_len(l4: &L4) -> usize {
    match l4 {
        L4::Tcp { flags: f, .. } if f & flags::SYN != 0 => TCP_LEN + TCP_SYN_OPTS_LEN,
        L4::Tcp { .. } => TCP_LEN,
        L4::Udp { .. } => UDP_LEN,
    }
}

/// Builds one Ethernet frame into `buf` (cleared first). `src` and `dst` must be the same
/// family; a mixed pair is written as IPv6 with the IPv4 address mapped (never produced here).
#[allow(clippy::too_many_arguments)]
pub fn build(
    buf: &mut Vec<u8>,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    meta: IpMeta,
    l4: &L4,
    payload: &[u8],
) {
    buf.clear();
    let v4 = matches!((src, dst), (IpAddr::V4(_), IpAddr::V4(_)));
    buf.extend_from_slice(&dst_mac);
    buf.extend_from_slice(&src_mac);
    buf.extend_from_slice(if v4 { &[0x08, 0x00] } else { &[0x86, 0xDD] });
    let l4_len = l4_header_len(l4) + payload.len();
    let proto = match l4 {
        L4::Tcp { .. } => 6u8,
        L4::Udp { .. } => 17u8,
    };
    let ip_start = buf.len();
    if v4 {
        let total = (IPV4_LEN + l4_len) as u16;
        buf.extend_from_slice(&[0x45, 0x00]);
        buf.extend_from_slice(&total.to_be_bytes());
        buf.extend_from_slice(&meta.ip_id.to_be_bytes());
        buf.extend_from_slice(&[0x40, 0x00, meta.ttl, proto, 0, 0]); // DF, checksum later
        buf.extend_from_slice(&match src {
            IpAddr::V4(a) => a.octets(),
            IpAddr::V6(_) => [0; 4],
        });
        buf.extend_from_slice(&match dst {
            IpAddr::V4(a) => a.octets(),
            IpAddr::V6(_) => [0; 4],
        });
        let c = fold(sum16(0, &buf[ip_start..ip_start + IPV4_LEN]));
        buf[ip_start + 10..ip_start + 12].copy_from_slice(&c.to_be_bytes());
    } else {
        let first = (6u32 << 28) | (meta.flow_label & 0x000F_FFFF);
        buf.extend_from_slice(&first.to_be_bytes());
        buf.extend_from_slice(&(l4_len as u16).to_be_bytes());
        buf.extend_from_slice(&[proto, meta.ttl]);
        buf.extend_from_slice(&v6_octets(src));
        buf.extend_from_slice(&v6_octets(dst));
    }
    let l4_start = buf.len();
    match *l4 {
        L4::Tcp {
            sport,
            dport,
            seq,
            ack,
            flags: f,
            window,
        } => {
            let hlen = l4_header_len(l4);
            buf.extend_from_slice(&sport.to_be_bytes());
            buf.extend_from_slice(&dport.to_be_bytes());
            buf.extend_from_slice(&seq.to_be_bytes());
            buf.extend_from_slice(&(if f & flags::ACK != 0 { ack } else { 0 }).to_be_bytes());
            buf.push(((hlen / 4) as u8) << 4);
            buf.push(f);
            buf.extend_from_slice(&window.to_be_bytes());
            buf.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
            if f & flags::SYN != 0 {
                // MSS 1460 (kind 2), NOP NOP SACK-permitted (kind 4), NOP window scale 7 (kind 3).
                buf.extend_from_slice(&[2, 4, 0x05, 0xB4, 1, 1, 4, 2, 1, 3, 3, 7]);
            }
        }
        L4::Udp { sport, dport } => {
            buf.extend_from_slice(&sport.to_be_bytes());
            buf.extend_from_slice(&dport.to_be_bytes());
            buf.extend_from_slice(&(l4_len as u16).to_be_bytes());
            buf.extend_from_slice(&[0, 0]);
        }
    }
    buf.extend_from_slice(payload);
    let acc = sum16(pseudo_sum(src, dst, proto, l4_len), &buf[l4_start..]);
    let mut c = fold(acc);
    let off = match l4 {
        L4::Tcp { .. } => 16,
        L4::Udp { .. } => {
            if c == 0 {
                c = 0xFFFF; // RFC 768: a computed zero is sent as all ones
            }
            6
        }
    };
    buf[l4_start + off..l4_start + off + 2].copy_from_slice(&c.to_be_bytes());
}

/// Checks the IPv4 header checksum and the TCP/UDP checksum of a frame built by [`build`].
/// Returns `None` if the frame is not Ethernet + IPv4/IPv6 + TCP/UDP.
pub fn verify(frame: &[u8]) -> Option<bool> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(ETH_LEN..)?;
    let (src, dst, proto, l4) = match ethertype {
        0x0800 => {
            let ihl = usize::from(ip.first()? & 0x0F) * 4;
            if fold(sum16(0, ip.get(..ihl)?)) != 0 {
                return Some(false);
            }
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                IpAddr::from(s),
                IpAddr::from(d),
                *ip.get(9)?,
                ip.get(ihl..total)?,
            )
        }
        0x86DD => {
            let plen = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                IpAddr::from(s),
                IpAddr::from(d),
                *ip.get(6)?,
                ip.get(IPV6_LEN..IPV6_LEN + plen)?,
            )
        }
        _ => return None,
    };
    if proto != 6 && proto != 17 {
        return None;
    }
    Some(fold(sum16(pseudo_sum(src, dst, proto, l4.len()), l4)) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const META: IpMeta = IpMeta {
        ttl: 64,
        ip_id: 0x1234,
        flow_label: 0xABCDE,
    };

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 worked example: the sum of 0001 f203 f4f5 f6f7 is ddf2 (folded).
        let acc = sum16(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(fold(acc), !0xddf2);
    }

    #[test]
    fn checksums_verify_v4_and_v6() {
        let mut buf = Vec::new();
        let a4 = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        let b4 = IpAddr::V4(Ipv4Addr::new(104, 244, 42, 1));
        let a6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2));
        let b6 = IpAddr::V6(Ipv6Addr::new(0x2a00, 0x1450, 0, 0, 0, 0, 0, 0x200e));
        let tcp = L4::Tcp {
            sport: 40000,
            dport: 443,
            seq: 1,
            ack: 2,
            flags: flags::SYN,
            window: 64240,
        };
        let udp = L4::Udp {
            sport: 5353,
            dport: 53,
        };
        for (s, d) in [(a4, b4), (a6, b6)] {
            for l4 in [tcp, udp] {
                for payload in [&b""[..], b"odd", b"even"] {
                    build(&mut buf, [2; 6], [4; 6], s, d, META, &l4, payload);
                    assert_eq!(buf.len(), frame_len(s.is_ipv6(), &l4, payload.len()));
                    assert_eq!(verify(&buf), Some(true));
                    let n = buf.len();
                    buf[n - 1] ^= 0x40;
                    assert_eq!(verify(&buf), Some(false));
                }
            }
        }
    }

    #[test]
    fn etherparse_agrees() {
        let mut buf = Vec::new();
        let l4 = L4::Tcp {
            sport: 1,
            dport: 2,
            seq: 3,
            ack: 4,
            flags: flags::SYN | flags::ACK,
            window: 5,
        };
        let s = IpAddr::V4(Ipv4Addr::new(100, 64, 0, 9));
        let d = IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8));
        build(&mut buf, [2; 6], [4; 6], s, d, META, &l4, b"hello");
        let p = etherparse::SlicedPacket::from_ethernet(&buf).unwrap();
        match p.transport {
            Some(etherparse::TransportSlice::Tcp(t)) => {
                assert!(t.syn() && t.ack());
                assert_eq!(t.payload(), b"hello");
                assert_eq!(t.options().len(), TCP_SYN_OPTS_LEN);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
