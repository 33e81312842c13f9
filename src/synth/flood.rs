//! A flood capture for memory tests: millions of distinct one-packet flows (TCP SYNs and
//! one-datagram UDP, as in a SYN flood or a UDP port scan with spoofed sources) interleaved with
//! a few long legitimate TCP and UDP flows that keep sending throughout.
//!
//! The flood flows never repeat a 5-tuple (source addresses are a bijection of the flow number),
//! so every flood packet creates a flow and, past `--max-flows`, evicts one. The long flows send
//! one packet every `interval` flood packets: as long as fewer flows than the cap are created
//! between two of their packets they stay recent and the least-recently-used eviction spares
//! them. Packets are 1 µs apart, far below any idle timeout, so the cap alone bounds the table.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::pcap_writer::PcapWriter;
use super::rng::Rng;
use super::wire::{self, flags, IpMeta, L4};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct FloodConfig {
    /// Distinct one-packet flows (half TCP SYN, half UDP).
    pub flood_flows: u64,
    /// Long legitimate TCP connections (handshake, data both ways, FIN close).
    pub long_tcp: u32,
    /// Long legitimate UDP flows (datagrams both ways).
    pub long_udp: u32,
    /// Flood packets between two rounds of long-flow packets (each long flow sends one per round).
    pub interval: u64,
    pub seed: u64,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            flood_flows: 1_000_000,
            long_tcp: 4,
            long_udp: 4,
            interval: 100,
            seed: 1,
        }
    }
}

/// A long flow as generated, for checking what the flow table made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongFlow {
    /// `tcp` or `udp`.
    pub transport: &'static str,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub packets_c2s: u64,
    pub packets_s2c: u64,
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct FloodSummary {
    pub packets: u64,
    pub flood_flows: u64,
    pub long_flows: Vec<LongFlow>,
}

/// The flood's target (TEST-NET-3, RFC 5737).
const VICTIM: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// 2024-01-01T00:00:00Z in microseconds.
const START_US: u64 = 1_704_067_200_000_000;
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const LONG_PAYLOAD: [u8; 100] = [0x5A; 100];
const FLOOD_UDP_PAYLOAD: [u8; 8] = [0; 8];

struct Long {
    flow: LongFlow,
    /// Next sequence number per direction (client, server); TCP only.
    seq: [u32; 2],
    /// Which side sends next.
    server_turn: bool,
}

/// Writes the flood into `out`; frames are Ethernet + IPv4.
pub fn write<W: Write>(cfg: &FloodConfig, out: &mut PcapWriter<W>) -> io::Result<FloodSummary> {
    let mut rng = Rng::new(cfg.seed);
    let mut buf = Vec::with_capacity(128);
    let mut ts = START_US;
    let mut packets = 0u64;
    let mut emit = |out: &mut PcapWriter<W>, buf: &[u8]| -> io::Result<()> {
        out.write_packet(ts, buf)?;
        ts += 1;
        packets += 1;
        Ok(())
    };

    let mut longs: Vec<Long> = (0..cfg.long_tcp + cfg.long_udp)
        .map(|n| {
            let tcp = n < cfg.long_tcp;
            let octet = u8::try_from(n % 250).unwrap_or(0) + 1;
            Long {
                flow: LongFlow {
                    transport: if tcp { "tcp" } else { "udp" },
                    // TEST-NET-1 clients, TEST-NET-2 servers (RFC 5737).
                    client: SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::new(192, 0, 2, octet)),
                        40_000 + u16::try_from(n % 20_000).unwrap_or(0),
                    ),
                    server: SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::new(198, 51, 100, octet)),
                        if tcp { 443 } else { 4500 },
                    ),
                    packets_c2s: 0,
                    packets_s2c: 0,
                },
                seq: [rng.next_u32(), rng.next_u32()],
                server_turn: false,
            }
        })
        .collect();

    // Three-way handshakes before the flood starts.
    for l in longs.iter_mut().filter(|l| l.flow.transport == "tcp") {
        for (from_server, f) in [
            (false, flags::SYN),
            (true, flags::SYN | flags::ACK),
            (false, flags::ACK),
        ] {
            tcp_packet(&mut buf, l, from_server, f, &[]);
            emit(out, &buf)?;
        }
    }

    let interval = cfg.interval.max(1);
    for i in 0..cfg.flood_flows {
        if i % interval == 0 {
            for l in &mut longs {
                let from_server = l.server_turn;
                l.server_turn = !l.server_turn;
                if l.flow.transport == "tcp" {
                    tcp_packet(
                        &mut buf,
                        l,
                        from_server,
                        flags::ACK | flags::PSH,
                        &LONG_PAYLOAD,
                    );
                } else {
                    udp_packet(&mut buf, l, from_server);
                }
                emit(out, &buf)?;
            }
        }
        flood_packet(&mut buf, i, &mut rng);
        emit(out, &buf)?;
    }

    // Orderly close: FIN each way, last ACK.
    for l in longs.iter_mut().filter(|l| l.flow.transport == "tcp") {
        for (from_server, f) in [
            (false, flags::FIN | flags::ACK),
            (true, flags::FIN | flags::ACK),
            (false, flags::ACK),
        ] {
            tcp_packet(&mut buf, l, from_server, f, &[]);
            emit(out, &buf)?;
        }
    }

    Ok(FloodSummary {
        packets,
        flood_flows: cfg.flood_flows,
        long_flows: longs.into_iter().map(|l| l.flow).collect(),
    })
}

/// Flood flow `i`: a source address that no other `i` below 2^32 shares (multiplication by an
/// odd constant is a bijection modulo 2^32), a random source port; even `i` a TCP SYN to a
/// random port, odd `i` one UDP datagram.
fn flood_packet(buf: &mut Vec<u8>, i: u64, rng: &mut Rng) {
    let src = Ipv4Addr::from((i as u32).wrapping_mul(0x9E37_79B1));
    let sport = 1024 + u16::try_from(rng.below(64_512)).unwrap_or(0);
    let dport = 1 + u16::try_from(rng.below(65_535)).unwrap_or(0);
    let meta = IpMeta {
        ttl: 64,
        ip_id: rng.next_u32() as u16,
        flow_label: 0,
    };
    let (l4, payload): (L4, &[u8]) = if i % 2 == 0 {
        let l4 = L4::Tcp {
            sport,
            dport,
            seq: rng.next_u32(),
            ack: 0,
            flags: flags::SYN,
            window: 64_240,
        };
        (l4, &[])
    } else {
        (L4::Udp { sport, dport }, &FLOOD_UDP_PAYLOAD)
    };
    wire::build(
        buf,
        CLIENT_MAC,
        SERVER_MAC,
        IpAddr::V4(src),
        IpAddr::V4(VICTIM),
        meta,
        &l4,
        payload,
    );
}

fn tcp_packet(buf: &mut Vec<u8>, l: &mut Long, from_server: bool, f: u8, payload: &[u8]) {
    let (me, peer) = if from_server { (1, 0) } else { (0, 1) };
    let (src, dst) = endpoints(&l.flow, from_server);
    let l4 = L4::Tcp {
        sport: src.port(),
        dport: dst.port(),
        seq: l.seq[me],
        ack: l.seq[peer],
        flags: f,
        window: 64_240,
    };
    build(buf, src, dst, from_server, &l4, payload);
    // SYN and FIN take one sequence number each (RFC 9293 §3.4).
    let consumed = payload.len() as u32 + u32::from(f & (flags::SYN | flags::FIN) != 0);
    l.seq[me] = l.seq[me].wrapping_add(consumed);
    count(&mut l.flow, from_server);
}

fn udp_packet(buf: &mut Vec<u8>, l: &mut Long, from_server: bool) {
    let (src, dst) = endpoints(&l.flow, from_server);
    let l4 = L4::Udp {
        sport: src.port(),
        dport: dst.port(),
    };
    build(buf, src, dst, from_server, &l4, &LONG_PAYLOAD[..60]);
    count(&mut l.flow, from_server);
}

fn endpoints(flow: &LongFlow, from_server: bool) -> (SocketAddr, SocketAddr) {
    if from_server {
        (flow.server, flow.client)
    } else {
        (flow.client, flow.server)
    }
}

fn count(flow: &mut LongFlow, from_server: bool) {
    if from_server {
        flow.packets_s2c += 1;
    } else {
        flow.packets_c2s += 1;
    }
}

fn build(
    buf: &mut Vec<u8>,
    src: SocketAddr,
    dst: SocketAddr,
    from_server: bool,
    l4: &L4,
    payload: &[u8],
) {
    let (smac, dmac) = if from_server {
        (SERVER_MAC, CLIENT_MAC)
    } else {
        (CLIENT_MAC, SERVER_MAC)
    };
    let meta = IpMeta {
        ttl: 64,
        ip_id: 0,
        flow_label: 0,
    };
    wire::build(buf, smac, dmac, src.ip(), dst.ip(), meta, l4, payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::pcap_writer::Sink;

    fn generate(cfg: &FloodConfig) -> (FloodSummary, u64) {
        let mut w = PcapWriter::new(Sink::Null).unwrap();
        let summary = write(cfg, &mut w).unwrap();
        (summary, w.packets())
    }

    #[test]
    fn packet_count_is_flood_plus_long_flows() {
        let cfg = FloodConfig {
            flood_flows: 1_000,
            long_tcp: 2,
            long_udp: 3,
            interval: 100,
            seed: 7,
        };
        let (s, written) = generate(&cfg);
        assert_eq!(s.packets, written);
        let rounds = 10;
        // TCP: 3 handshake + one per round + 3 closing; UDP: one per round.
        assert_eq!(written, 1_000 + 2 * (6 + rounds) + 3 * rounds);
        let tcp = &s.long_flows[0];
        assert_eq!(tcp.packets_c2s + tcp.packets_s2c, 6 + rounds);
        let udp = &s.long_flows[4];
        assert_eq!((udp.packets_c2s, udp.packets_s2c), (5, 5));
    }

    #[test]
    fn flood_sources_never_repeat() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200_000u64 {
            assert!(seen.insert((i as u32).wrapping_mul(0x9E37_79B1)));
        }
    }

    #[test]
    fn frames_have_valid_checksums() {
        let mut rng = Rng::new(1);
        let mut buf = Vec::new();
        for i in 0..10 {
            flood_packet(&mut buf, i, &mut rng);
            assert_eq!(wire::verify(&buf), Some(true));
        }
        let (s, _) = generate(&FloodConfig {
            flood_flows: 10,
            ..FloodConfig::default()
        });
        assert_eq!(s.long_flows.len(), 8);
    }

    #[test]
    fn same_seed_same_bytes() {
        let run = || {
            let mut w = PcapWriter::new(Vec::new()).unwrap();
            write(
                &FloodConfig {
                    flood_flows: 500,
                    ..FloodConfig::default()
                },
                &mut w,
            )
            .unwrap();
            w.into_inner()
        };
        assert_eq!(run(), run());
    }
}
