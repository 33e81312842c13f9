//! Decode: one captured frame -> the facts the flow table needs, or a named skip reason.
//!
//! Link layers are peeled here (they are a few fixed offsets each); the IP layer, IPv4 options
//! and IPv6 extension chains go through etherparse's lax slicing so truncated packets keep what
//! parsed. Nothing here allocates: a [`DecodedPacket`] borrows the frame.

use std::net::IpAddr;

use etherparse::{Ipv6ExtensionSlice, LaxIpSlice};

/// LINKTYPE_* values we understand (tcpdump.org/linktypes.html).
pub mod filter;

pub mod link {
    pub const NULL: u16 = 0;
    pub const ETHERNET: u16 = 1;
    pub const PPP: u16 = 9;
    /// Raw IP as written by some BSDs (DLT_RAW is 12 or 14 on disk there).
    pub const RAW_BSD12: u16 = 12;
    pub const RAW_BSD14: u16 = 14;
    pub const PPP_HDLC: u16 = 50;
    pub const RAW: u16 = 101;
    pub const LOOP: u16 = 108;
    pub const LINUX_SLL: u16 = 113;
    pub const IPV4: u16 = 228;
    pub const IPV6: u16 = 229;
    pub const LINUX_SLL2: u16 = 276;
}

/// IANA IP protocol numbers that matter to flow keys and fingerprints.
pub mod ip_proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const GRE: u8 = 47;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
}

/// TCP flag bits (RFC 9293 §3.1).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Why a frame was not attributed to a flow. Every frame read is either in a flow or counted
/// under exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    UnknownLinkType,
    TruncatedLinkHeader,
    /// ARP, LLDP, STP, IPX...: valid frames that carry no IP.
    NotIp,
    BadIpHeader,
    /// A fragment other than the first: its transport header is in another packet.
    NonFirstFragment,
    TruncatedTransport,
    BadTransportHeader,
}

impl SkipReason {
    pub const ALL: [SkipReason; 7] = [
        SkipReason::UnknownLinkType,
        SkipReason::TruncatedLinkHeader,
        SkipReason::NotIp,
        SkipReason::BadIpHeader,
        SkipReason::NonFirstFragment,
        SkipReason::TruncatedTransport,
        SkipReason::BadTransportHeader,
    ];

    /// Stable snake_case name used in `summary.json` and the terminal summary.
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::UnknownLinkType => "unknown_link_type",
            SkipReason::TruncatedLinkHeader => "truncated_link_header",
            SkipReason::NotIp => "not_ip",
            SkipReason::BadIpHeader => "bad_ip_header",
            SkipReason::NonFirstFragment => "non_first_fragment",
            SkipReason::TruncatedTransport => "truncated_transport",
            SkipReason::BadTransportHeader => "bad_transport_header",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Skip counters by reason, in place (no map, no allocation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipCounts([u64; 7]);

impl SkipCounts {
    pub fn add(&mut self, reason: SkipReason) {
        self.0[reason.index()] += 1;
    }
    pub fn get(&self, reason: SkipReason) -> u64 {
        self.0[reason.index()]
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    pub fn merge(&mut self, other: &SkipCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
    /// (name, count) for every reason with a non-zero count.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        SkipReason::ALL
            .iter()
            .filter(|r| self.get(**r) > 0)
            .map(|r| (r.name(), self.get(*r)))
    }
}

/// What the flow table needs from one frame. Ports are 0 for portless protocols.
#[derive(Debug, Clone, Copy)]
pub struct DecodedPacket<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ip_proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    /// TCP sequence number (0 for other protocols); used to skip retransmitted payloads.
    pub tcp_seq: u32,
    /// Transport payload: after the TCP/UDP/ICMP header; the whole IP payload for other protocols
    /// (so GRE, ESP and AH fingerprinters see their own headers).
    pub payload: &'a [u8],
    /// Bytes of the IP packet on the wire (header included), from the IP length field.
    pub ip_len: u32,
    /// Payload bytes the capture left out: a snap length (`tcpdump -s`, MAWI's 96 bytes) cut
    /// the frame short, so the payload was `payload.len() + payload_cut` bytes on the wire
    /// (from the IP length field, or UDP's own; for the first fragment of a fragmented UDP
    /// datagram, the part the later fragments carry). 0 for a whole payload. Both lengths are
    /// 16-bit fields, so the cut always fits.
    pub payload_cut: u16,
}

/// A [`DecodedPacket`] without its borrow: the payload as a byte range of its frame. Lets the
/// reading thread hand a decoded packet to a worker with the frame's location, so the worker
/// does not parse the headers a second time.
#[derive(Debug, Clone, Copy)]
pub struct DetachedPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ip_proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u8,
    pub tcp_seq: u32,
    pub ip_len: u32,
    pub payload_cut: u16,
    payload_start: u32,
    /// An IP payload is at most 65535 bytes (jumbograms are not detached).
    payload_len: u16,
}

impl<'a> DecodedPacket<'a> {
    /// This packet with its payload as an offset into `frame`; `None` when the payload is not
    /// inside `frame` (then the frame must be decoded again where it is needed).
    pub fn detach(&self, frame: &[u8]) -> Option<DetachedPacket> {
        let frame_start = frame.as_ptr() as usize;
        let start = (self.payload.as_ptr() as usize).checked_sub(frame_start)?;
        let end = start.checked_add(self.payload.len())?;
        if end > frame.len() {
            return None;
        }
        Some(DetachedPacket {
            src: self.src,
            dst: self.dst,
            ip_proto: self.ip_proto,
            src_port: self.src_port,
            dst_port: self.dst_port,
            tcp_flags: self.tcp_flags,
            tcp_seq: self.tcp_seq,
            ip_len: self.ip_len,
            payload_cut: self.payload_cut,
            payload_start: u32::try_from(start).ok()?,
            payload_len: u16::try_from(self.payload.len()).ok()?,
        })
    }
}

impl DetachedPacket {
    /// [`crate::flow::PacketKey::with_hash`] of the packet, from this copy's fields.
    pub fn key_with_hash(&self, hash: u64) -> crate::flow::PacketKey {
        crate::flow::PacketKey::from_endpoints(
            (self.src, self.src_port),
            (self.dst, self.dst_port),
            self.ip_proto,
            hash,
        )
    }

    /// The packet again, its payload borrowed from `frame` (the frame it was detached from).
    pub fn attach<'a>(&self, frame: &'a [u8]) -> Option<DecodedPacket<'a>> {
        let start = self.payload_start as usize;
        let payload = frame.get(start..start.checked_add(self.payload_len as usize)?)?;
        Some(DecodedPacket {
            src: self.src,
            dst: self.dst,
            ip_proto: self.ip_proto,
            src_port: self.src_port,
            dst_port: self.dst_port,
            tcp_flags: self.tcp_flags,
            tcp_seq: self.tcp_seq,
            payload,
            ip_len: self.ip_len,
            payload_cut: self.payload_cut,
        })
    }
}

/// Decodes one frame of the given link type.
pub fn decode(link_type: u16, frame: &[u8]) -> Result<DecodedPacket<'_>, SkipReason> {
    let ip = match link_type {
        link::ETHERNET => ethernet_payload(frame)?,
        link::RAW | link::RAW_BSD12 | link::RAW_BSD14 | link::IPV4 | link::IPV6 => frame,
        link::NULL | link::LOOP => {
            // 4-byte address family in the capturing host's byte order (NULL) or big-endian
            // (LOOP). AF_INET is 2 everywhere; AF_INET6 is 10, 24, 28 or 30 depending on the OS.
            // We only need the payload: the IP version nibble tells the rest.
            frame.get(4..).ok_or(SkipReason::TruncatedLinkHeader)?
        }
        link::LINUX_SLL => {
            // 16-byte header, protocol (an EtherType) at offset 14.
            let proto = be16(frame, 14).ok_or(SkipReason::TruncatedLinkHeader)?;
            ether_type_payload(proto, &frame[16..])?
        }
        link::LINUX_SLL2 => {
            // 20-byte header, protocol (EtherType) at offset 0.
            let proto = be16(frame, 0).ok_or(SkipReason::TruncatedLinkHeader)?;
            if frame.len() < 20 {
                return Err(SkipReason::TruncatedLinkHeader);
            }
            ether_type_payload(proto, &frame[20..])?
        }
        link::PPP | link::PPP_HDLC => {
            // Optional HDLC address/control 0xff 0x03, then the PPP protocol (RFC 1661 §2).
            let body = frame.strip_prefix(&[0xff, 0x03]).unwrap_or(frame);
            ppp_payload(body)?
        }
        _ => return Err(SkipReason::UnknownLinkType),
    };
    decode_ip(ip)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Ethernet II with any number of 802.1Q / 802.1ad tags, PPPoE session and MPLS.
fn ethernet_payload(frame: &[u8]) -> Result<&[u8], SkipReason> {
    let ether_type = be16(frame, 12).ok_or(SkipReason::TruncatedLinkHeader)?;
    ether_type_payload(ether_type, &frame[14..])
}

fn ether_type_payload(mut ether_type: u16, mut rest: &[u8]) -> Result<&[u8], SkipReason> {
    // Bounded: a hostile frame cannot make us loop beyond its length, but cap tags anyway.
    for _ in 0..8 {
        match ether_type {
            0x0800 | 0x86dd => return Ok(rest),
            // 802.1Q, 802.1ad (QinQ) and the old 0x9100 QinQ: 2 bytes TCI, 2 bytes inner type.
            0x8100 | 0x88a8 | 0x9100 => {
                ether_type = be16(rest, 2).ok_or(SkipReason::TruncatedLinkHeader)?;
                rest = &rest[4..];
            }
            // PPPoE session stage (RFC 2516 §4): 6-byte header, then a PPP protocol field.
            0x8864 => {
                let body = rest.get(6..).ok_or(SkipReason::TruncatedLinkHeader)?;
                return ppp_payload(body);
            }
            // MPLS unicast/multicast (RFC 3032): 4-byte labels until bottom-of-stack.
            0x8847 | 0x8848 => {
                let mut r = rest;
                loop {
                    let entry = r.get(..4).ok_or(SkipReason::TruncatedLinkHeader)?;
                    r = &r[4..];
                    if entry[2] & 0x01 != 0 {
                        break;
                    }
                }
                return match r.first().map(|b| b >> 4) {
                    Some(4) | Some(6) => Ok(r),
                    _ => Err(SkipReason::NotIp),
                };
            }
            _ => return Err(SkipReason::NotIp),
        }
    }
    Err(SkipReason::NotIp)
}

/// PPP protocol field (RFC 1661): 0x0021 IPv4, 0x0057 IPv6; may be compressed to one byte.
fn ppp_payload(body: &[u8]) -> Result<&[u8], SkipReason> {
    match body {
        [0x00, 0x21, rest @ ..] | [0x00, 0x57, rest @ ..] => Ok(rest),
        [0x21, rest @ ..] | [0x57, rest @ ..] => Ok(rest),
        [] | [_] => Err(SkipReason::TruncatedLinkHeader),
        _ => Err(SkipReason::NotIp),
    }
}

/// Decodes an IP packet (v4 or v6, told by the version nibble) and its transport header.
/// IP-in-IP (protocol 4, 6in4 = 41: transition tunnels, RFC 2473/4213) is followed to the
/// inner packet, at most twice, so the flow is the inner conversation.
pub fn decode_ip(ip: &[u8]) -> Result<DecodedPacket<'_>, SkipReason> {
    let mut pkt = decode_ip_layer(ip)?;
    for _ in 0..2 {
        if !matches!(pkt.ip_proto, 4 | 41) {
            break;
        }
        match decode_ip_layer(pkt.payload) {
            Ok(inner) => pkt = inner,
            Err(_) => break,
        }
    }
    Ok(pkt)
}

/// The IP layer of one packet: its addresses, length field, transport protocol and the bytes
/// after its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IpLayer<'a> {
    src: IpAddr,
    dst: IpAddr,
    ip_len: u32,
    proto: u8,
    body: &'a [u8],
    /// The first fragment of a fragmented datagram: the transport's own length, not the IP
    /// packet's, says where its payload ends.
    first_fragment: bool,
}

/// The IP layer as etherparse's lax slicing reads it: IPv4 options, IPv6 extension chains,
/// fragments, Authentication Headers, and packets cut short by the snap length.
fn lax_ip_layer(ip: &[u8]) -> Result<IpLayer<'_>, SkipReason> {
    let (slice, _ext_err) = LaxIpSlice::from_slice(ip).map_err(|_| SkipReason::BadIpHeader)?;
    let payload = slice.payload();
    let (src, dst, ip_len, first_fragment) = match &slice {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let first = h.fragments_offset().value() == 0;
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                u32::from(h.total_len()),
                first,
            )
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            let mut first = true;
            // etherparse 0.21's extension iterator reads past the validated bytes (unchecked)
            // when lax parsing stopped at a bad extension header: never ask it for more than
            // the headers that were validated (found by fuzzing; tests/e2e/hostile.rs).
            let exts = v6.extensions();
            let (total, mut seen) = (exts.slice().len(), 0);
            let mut iter = exts.clone().into_iter();
            while seen < total {
                let Some(ext) = iter.next() else { break };
                seen += match &ext {
                    Ipv6ExtensionSlice::HopByHop(s)
                    | Ipv6ExtensionSlice::Routing(s)
                    | Ipv6ExtensionSlice::DestinationOptions(s) => s.slice().len(),
                    Ipv6ExtensionSlice::Fragment(s) => s.slice().len(),
                    Ipv6ExtensionSlice::Authentication(s) => s.slice().len(),
                };
                if let Ipv6ExtensionSlice::Fragment(frag) = ext {
                    first = frag.fragment_offset().value() == 0;
                }
            }
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                40 + u32::from(h.payload_length()),
                first,
            )
        }
    };
    if payload.fragmented && !first_fragment {
        return Err(SkipReason::NonFirstFragment);
    }
    let (mut proto, mut body) = (payload.ip_number.0, payload.payload);
    // etherparse treats an Authentication Header (RFC 4302) as an extension header and skips it;
    // an AH flow is what we want to see, so keep protocol 51 and the bytes from the AH header on.
    let (header_proto, header_len) = match &slice {
        LaxIpSlice::Ipv4(v4) => (v4.header().protocol().0, v4.header().slice().len()),
        LaxIpSlice::Ipv6(v6) => (v6.header().next_header().0, 40),
    };
    if header_proto == ip_proto::AH {
        let end = usize::try_from(ip_len).map_or(ip.len(), |l| l.clamp(header_len, ip.len()));
        proto = ip_proto::AH;
        body = ip.get(header_len..end).unwrap_or(&[]);
    }
    Ok(IpLayer {
        src,
        dst,
        ip_len,
        proto,
        body,
        first_fragment: payload.fragmented,
    })
}

/// The IP layer of the common packet, read at fixed offsets: an IPv4 header without options
/// (first byte 0x45, RFC 791 §3.1: protocol at 9, addresses at 12 and 16) or an IPv6 header
/// followed directly by TCP, UDP or ICMPv6 (RFC 8200 §3: payload length at 4, next header at
/// 6, addresses at 8 and 24), neither fragmented nor carrying an Authentication Header, with a
/// length field that covers the header. `None` for anything else, which [`lax_ip_layer`] reads;
/// where both read a packet they agree (a proptest checks it). Nearly every packet of real
/// traffic takes this path, at a fraction of the general parser's cost, on the thread that
/// reads and decodes every packet.
fn plain_ip_layer(ip: &[u8]) -> Option<IpLayer<'_>> {
    match *ip.first()? {
        0x45 => {
            let header: &[u8; 20] = ip.get(..20)?.try_into().ok()?;
            let total_len = u16::from_be_bytes([header[2], header[3]]);
            let fragment = u16::from_be_bytes([header[6], header[7]]);
            let proto = header[9];
            // More-fragments flag or a fragment offset: the lax path tells first from later.
            if total_len < 20 || fragment & 0x3fff != 0 || proto == ip_proto::AH {
                return None;
            }
            let end = usize::from(total_len).min(ip.len());
            let addr = |at: usize| [header[at], header[at + 1], header[at + 2], header[at + 3]];
            Some(IpLayer {
                src: IpAddr::from(addr(12)),
                dst: IpAddr::from(addr(16)),
                ip_len: u32::from(total_len),
                proto,
                body: ip.get(20..end)?,
                first_fragment: false,
            })
        }
        first if first >> 4 == 6 => {
            let header: &[u8; 40] = ip.get(..40)?.try_into().ok()?;
            let payload_len = u16::from_be_bytes([header[4], header[5]]);
            let proto = header[6];
            // A payload length of 0 is a jumbogram's (RFC 2675), told in an extension header.
            if payload_len == 0
                || !matches!(proto, ip_proto::TCP | ip_proto::UDP | ip_proto::ICMPV6)
            {
                return None;
            }
            let end = (40 + usize::from(payload_len)).min(ip.len());
            let addr = |at: usize| -> [u8; 16] {
                let mut a = [0u8; 16];
                a.copy_from_slice(&header[at..at + 16]);
                a
            };
            Some(IpLayer {
                src: IpAddr::from(addr(8)),
                dst: IpAddr::from(addr(24)),
                ip_len: 40 + u32::from(payload_len),
                proto,
                body: ip.get(40..end)?,
                first_fragment: false,
            })
        }
        _ => None,
    }
}

/// Bytes of an IP packet `ip_len` long on the wire that come after the captured `body` (a
/// slice of `ip`): what a snap length cut off.
#[cold]
fn cut_before(ip: &[u8], body: &[u8], ip_len: u32) -> u16 {
    let body_end = (body.as_ptr() as usize)
        .saturating_sub(ip.as_ptr() as usize)
        .saturating_add(body.len());
    let cut = u32::try_from(body_end).map_or(0, |end| ip_len.saturating_sub(end));
    u16::try_from(cut).unwrap_or(u16::MAX)
}

fn decode_ip_layer(ip: &[u8]) -> Result<DecodedPacket<'_>, SkipReason> {
    let IpLayer {
        src,
        dst,
        ip_len,
        proto,
        body,
        first_fragment,
    } = match plain_ip_layer(ip) {
        Some(layer) => layer,
        None => lax_ip_layer(ip)?,
    };
    // The IP length field says where the packet ended on the wire; what the capture holds of
    // the body ends `body_cut` bytes before that. Nearly every packet is whole: one comparison.
    let body_cut = if ip.len() >= ip_len as usize {
        0
    } else {
        cut_before(ip, body, ip_len)
    };
    let mut pkt = DecodedPacket {
        src,
        dst,
        ip_proto: proto,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        tcp_seq: 0,
        payload: body,
        ip_len,
        payload_cut: body_cut,
    };
    match proto {
        ip_proto::TCP => {
            // RFC 9293 §3.1: ports 0..4, data offset in the high nibble of byte 12, flags byte 13.
            if body.len() < 20 {
                return Err(SkipReason::TruncatedTransport);
            }
            let header_len = usize::from(body[12] >> 4) * 4;
            if header_len < 20 {
                return Err(SkipReason::BadTransportHeader);
            }
            pkt.src_port = u16::from_be_bytes([body[0], body[1]]);
            pkt.dst_port = u16::from_be_bytes([body[2], body[3]]);
            pkt.tcp_flags = body[13];
            pkt.tcp_seq = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
            // Options cut off by the snap length: keep the header facts, no payload.
            pkt.payload = body.get(header_len..).unwrap_or(&[]);
            if body_cut > 0 {
                let header_missing =
                    u16::try_from(header_len.saturating_sub(body.len())).unwrap_or(0);
                pkt.payload_cut = body_cut.saturating_sub(header_missing);
            }
        }
        ip_proto::UDP => {
            // RFC 768: 8-byte header; the length field bounds the payload (trailing padding).
            if body.len() < 8 {
                return Err(SkipReason::TruncatedTransport);
            }
            pkt.src_port = u16::from_be_bytes([body[0], body[1]]);
            pkt.dst_port = u16::from_be_bytes([body[2], body[3]]);
            let udp_len = usize::from(u16::from_be_bytes([body[4], body[5]]));
            let end = if udp_len >= 8 {
                udp_len.min(body.len())
            } else {
                body.len()
            };
            pkt.payload = &body[8..end];
            // UDP's own length says where the datagram ended, within what the IP header
            // allows (the later fragments of a fragmented datagram hold the rest of it). A
            // whole packet that is no fragment has nothing cut, whatever its UDP length says.
            if udp_len >= 8 {
                pkt.payload_cut = if body_cut == 0 && !first_fragment {
                    0
                } else {
                    let wire_end = if first_fragment {
                        udp_len
                    } else {
                        udp_len.min(body.len().saturating_add(usize::from(body_cut)))
                    };
                    u16::try_from(wire_end.saturating_sub(end)).unwrap_or(u16::MAX)
                };
            }
        }
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            // Type, code, checksum, 4 bytes of rest-of-header (id/seq for echo).
            if body.len() < 8 {
                return Err(SkipReason::TruncatedTransport);
            }
            pkt.payload = &body[8..];
        }
        _ => {}
    }
    Ok(pkt)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Detaching and re-attaching to the same frame gives the packet back; a frame that does
    /// not hold the payload cannot take it.
    #[test]
    fn detached_packet_attaches_to_its_frame_only() {
        let frame = ipv4_udp([10, 0, 0, 1], [192, 0, 2, 9], 40_000, 53, b"payload bytes");
        let pkt = decode(link::RAW, &frame).expect("decodes");
        let detached = pkt.detach(&frame).expect("payload inside the frame");
        let again = detached.attach(&frame).expect("attaches");
        assert_eq!(format!("{pkt:?}"), format!("{again:?}"));
        assert_eq!(again.payload, b"payload bytes");
        let other = vec![0u8; 8];
        assert!(pkt.detach(&other).is_none(), "payload outside this frame");
        assert!(
            detached.attach(&other).is_none(),
            "frame too short for the payload"
        );
        // The detached copy gives the packet's own key (either direction of the flow).
        for (frame, hash) in [
            (frame.clone(), 7),
            (ipv4_udp([192, 0, 2, 9], [10, 0, 0, 1], 53, 40_000, b"x"), 9),
        ] {
            let pkt = decode(link::RAW, &frame).expect("decodes");
            let from_copy = pkt.detach(&frame).expect("detaches").key_with_hash(hash);
            let from_packet = crate::flow::PacketKey::with_hash(&pkt, hash);
            assert_eq!(
                (from_copy.key, from_copy.src_is_lo, from_copy.hash),
                (from_packet.key, from_packet.src_is_lo, from_packet.hash)
            );
        }
    }

    /// IPv4 header + UDP header + payload, checksums zero (decode does not check them).
    pub fn ipv4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let total = 20 + 8 + payload.len();
        let mut v = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
        ];
        v.extend_from_slice(&src);
        v.extend_from_slice(&dst);
        v.extend_from_slice(&sport.to_be_bytes());
        v.extend_from_slice(&dport.to_be_bytes());
        v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(payload);
        v
    }

    /// IPv4 header + 20-byte TCP header with the given flags + payload.
    pub fn ipv4_tcp(
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let total = 20 + 20 + payload.len();
        let mut v = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            6,
            0,
            0,
        ];
        v.extend_from_slice(&src);
        v.extend_from_slice(&dst);
        v.extend_from_slice(&sport.to_be_bytes());
        v.extend_from_slice(&dport.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        v.extend_from_slice(payload);
        v
    }

    fn ether(ether_type: u16, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 12];
        v.extend_from_slice(&ether_type.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn ethernet_ipv4_udp() {
        let f = ether(
            0x0800,
            &ipv4_udp([10, 0, 0, 1], [8, 8, 8, 8], 5353, 53, b"hi"),
        );
        let p = decode(link::ETHERNET, &f).unwrap();
        assert_eq!(
            (p.src_port, p.dst_port, p.ip_proto, p.payload),
            (5353, 53, 17, &b"hi"[..])
        );
        assert_eq!(p.dst, "8.8.8.8".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn vlan_qinq_and_pppoe() {
        let ip = ipv4_tcp([1, 1, 1, 1], [2, 2, 2, 2], 1000, 443, tcp_flags::SYN, b"");
        let mut tagged = vec![0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00];
        tagged.extend_from_slice(&ip);
        let f = ether(0x88a8, &tagged);
        let p = decode(link::ETHERNET, &f).unwrap();
        assert_eq!((p.dst_port, p.tcp_flags), (443, tcp_flags::SYN));

        let mut pppoe = vec![0x11, 0, 0, 1, 0, 0, 0x00, 0x21];
        pppoe.extend_from_slice(&ip);
        assert!(decode(link::ETHERNET, &ether(0x8864, &pppoe)).is_ok());
    }

    #[test]
    fn sll_sll2_null_raw() {
        let ip = ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, b"x");
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        assert!(decode(link::LINUX_SLL, &sll).is_ok());
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip);
        assert!(decode(link::LINUX_SLL2, &sll2).is_ok());
        let mut null = vec![2, 0, 0, 0];
        null.extend_from_slice(&ip);
        assert!(decode(link::NULL, &null).is_ok());
        assert!(decode(link::RAW, &ip).is_ok());
        assert!(decode(link::IPV4, &ip).is_ok());
    }

    #[test]
    fn skip_reasons() {
        assert_eq!(
            decode(999, &[0; 40]).unwrap_err(),
            SkipReason::UnknownLinkType
        );
        assert_eq!(
            decode(link::ETHERNET, &[0; 10]).unwrap_err(),
            SkipReason::TruncatedLinkHeader
        );
        assert_eq!(
            decode(link::ETHERNET, &ether(0x0806, &[0; 28])).unwrap_err(),
            SkipReason::NotIp
        );
        assert_eq!(
            decode(link::RAW, &[0x45, 0, 0]).unwrap_err(),
            SkipReason::BadIpHeader
        );
        let mut ip = ipv4_tcp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, 0, b"");
        ip.truncate(30);
        assert_eq!(
            decode(link::RAW, &ip).unwrap_err(),
            SkipReason::TruncatedTransport
        );
    }

    #[test]
    fn fragments_first_kept_rest_counted() {
        let mut first = ipv4_udp([1, 1, 1, 1], [2, 2, 2, 2], 500, 500, &[0; 16]);
        first[6] = 0x20; // MF, offset 0
        assert_eq!(decode(link::RAW, &first).unwrap().dst_port, 500);
        let mut later = first.clone();
        later[6] = 0x00;
        later[7] = 0x10; // offset 16*8
        assert_eq!(
            decode(link::RAW, &later).unwrap_err(),
            SkipReason::NonFirstFragment
        );
    }

    #[test]
    fn authentication_header_is_kept_as_protocol_51() {
        // AH (RFC 4302 §2): next header ICMP, payload len 4 (= 24 bytes), reserved, SPI, seq, ICV.
        let mut ah = vec![1, 4, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 1];
        ah.extend_from_slice(&[0xaa; 12]);
        ah.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]); // ICMP echo request
        let total = 20 + ah.len();
        let mut ip = vec![
            0x45,
            0,
            0,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            51,
            0,
            0,
            10,
            0,
            0,
            1,
            10,
            0,
            0,
            2,
        ];
        ip.extend_from_slice(&ah);
        let p = decode(link::RAW, &ip).unwrap();
        assert_eq!(p.ip_proto, ip_proto::AH);
        assert_eq!(p.payload, &ah[..]);
    }

    /// A snap length cuts the frame's end off: the payload keeps what was captured and
    /// `payload_cut` says how much more there was on the wire, by the IP length (TCP) or
    /// UDP's own length; a whole packet, or one with link-layer padding after it, has none.
    #[test]
    fn payload_cut_counts_what_the_snap_length_left_out() {
        let payload = [7u8; 100];
        let udp = ipv4_udp([10, 0, 0, 1], [192, 0, 2, 9], 40_000, 53, &payload);
        let p = decode(link::RAW, &udp[..28 + 40]).unwrap();
        assert_eq!((p.payload.len(), p.payload_cut, p.ip_len), (40, 60, 128));
        let p = decode(link::RAW, &udp).unwrap();
        assert_eq!((p.payload.len(), p.payload_cut), (100, 0));
        let mut padded = udp.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(decode(link::RAW, &padded).unwrap().payload_cut, 0);

        let tcp = ipv4_tcp([10, 0, 0, 1], [192, 0, 2, 9], 40_000, 443, 0x18, &payload);
        let p = decode(link::RAW, &tcp[..40 + 10]).unwrap();
        assert_eq!((p.payload.len(), p.payload_cut), (10, 90));
        // Cut inside the TCP header (options): no payload, and the header's missing bytes are
        // not payload.
        let mut with_options = tcp.clone();
        with_options[32] = 0x70; // data offset 7 words: 8 bytes of options
        let p = decode(link::RAW, &with_options[..40 + 4]).unwrap();
        assert_eq!((p.payload.len(), p.payload_cut), (0, 92));

        // A UDP length beyond the IP packet is believed only as far as the IP length goes.
        let mut lying = udp.clone();
        lying[24..26].copy_from_slice(&5000u16.to_be_bytes());
        let p = decode(link::RAW, &lying[..28 + 40]).unwrap();
        assert_eq!(p.payload_cut, 60);

        // An IP length far past the captured packet while UDP's own length ends within it (a
        // corrupt IP length, seen in nDPI's captures): the datagram is whole.
        let mut bogus_ip_len = udp.clone();
        bogus_ip_len[2..4].copy_from_slice(&26696u16.to_be_bytes());
        let p = decode(link::RAW, &bogus_ip_len).unwrap();
        assert_eq!((p.payload.len(), p.payload_cut), (100, 0));

        // The first fragment of a datagram (more-fragments flag, offset 0) holds its start:
        // the UDP length counts the rest, which the later fragments carry.
        let mut fragment = udp.clone();
        fragment[6] = 0x20;
        fragment[24..26].copy_from_slice(&1008u16.to_be_bytes());
        let p = decode(link::RAW, &fragment).unwrap();
        assert_eq!((p.payload.len(), p.payload_cut), (100, 900));

        // IPv6 takes the same reading.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 108, 17, 64];
        v6.extend_from_slice(&[0u8; 32]);
        v6.extend_from_slice(&[0, 53, 0x13, 0x88, 0, 108, 0, 0]);
        v6.extend_from_slice(&payload);
        let p = decode(link::IPV6, &v6[..40 + 8 + 30]).unwrap();
        assert_eq!((p.payload.len(), p.payload_cut), (30, 70));
    }

    #[test]
    fn ipv6_udp_via_raw() {
        let mut v = vec![0x60, 0, 0, 0, 0, 10, 17, 64];
        v.extend_from_slice(&[0u8; 15]);
        v.push(1);
        v.extend_from_slice(&[0u8; 15]);
        v.push(2);
        v.extend_from_slice(&[0, 53, 0x13, 0x88, 0, 10, 0, 0, b'o', b'k']);
        let p = decode(link::IPV6, &v).unwrap();
        assert_eq!((p.src_port, p.dst_port, p.payload), (53, 5000, &b"ok"[..]));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_frame_of_any_link_type_decodes_or_skips(
                link in prop_oneof![Just(0u16), Just(1), Just(9), Just(101), Just(108), Just(113), Just(228), Just(229), Just(276), any::<u16>()],
                frame in proptest::collection::vec(any::<u8>(), 0..200),
            ) {
                if let Ok(p) = decode(link, &frame) {
                    prop_assert!(p.payload.len() <= frame.len());
                }
            }

            #[test]
            fn ip_packets_with_random_tails(head in proptest::collection::vec(any::<u8>(), 0..80), v6 in any::<bool>()) {
                let mut ip = if v6 { vec![0x60, 0, 0, 0, 0, 40, 0, 64] } else { vec![0x45, 0, 0, 60, 0, 0, 0x20, 0, 64, 6, 0, 0] };
                ip.extend_from_slice(&head);
                let _ = decode_ip(&ip);
            }

            /// Where the fixed-offset reading takes a packet, the general parser reads it the
            /// same. Headers are random but for the fields that choose the path (version and
            /// header length, length field near the bytes there are, fragment bits, protocol).
            #[test]
            fn plain_ip_layer_agrees_with_the_lax_parser(
                v6 in any::<bool>(),
                mut header in proptest::collection::vec(any::<u8>(), 40),
                tail in proptest::collection::vec(any::<u8>(), 0..60),
                proto in prop_oneof![Just(6u8), Just(17), Just(1), Just(58), Just(51), Just(4), Just(0), Just(43), Just(44), any::<u8>()],
                len_delta in -25i32..25,
                fragment in prop_oneof![Just(0u16), Just(0x4000), Just(0x2000), Just(0x0001), any::<u16>()],
                cut in 0usize..30,
            ) {
                let total = if v6 { 40 + tail.len() } else { 20 + tail.len() };
                let len_field = (total as i32 + len_delta).clamp(0, 0xffff) as u16;
                if v6 {
                    header[0] = 0x60 | (header[0] & 0x0f);
                    header[4..6].copy_from_slice(&(len_field.saturating_sub(40)).to_be_bytes());
                    header[6] = proto;
                } else {
                    header.truncate(20);
                    header[0] = 0x45;
                    header[2..4].copy_from_slice(&len_field.to_be_bytes());
                    header[6..8].copy_from_slice(&fragment.to_be_bytes());
                    header[9] = proto;
                }
                let mut ip = header;
                ip.extend_from_slice(&tail);
                // Cut short, as a snap length does.
                ip.truncate(ip.len().saturating_sub(cut));
                if let Some(plain) = plain_ip_layer(&ip) {
                    prop_assert_eq!(Ok(plain), lax_ip_layer(&ip));
                }
            }
        }
    }

    /// The fixed-offset path takes the common packets (else it would save nothing).
    #[test]
    fn common_packets_take_the_plain_path() {
        let udp = ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], 5353, 53, b"query");
        let tcp = ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443, 0x18, b"hello");
        let mut v6 = vec![0x60, 0, 0, 0, 0, 12, 17, 64];
        v6.extend_from_slice(&[0x20; 32]);
        v6.extend_from_slice(&[0x12, 0x34, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
        for ip in [&udp, &tcp, &v6] {
            let plain = plain_ip_layer(ip).expect("a plain packet");
            assert_eq!(Ok(plain), lax_ip_layer(ip));
        }
    }
}
