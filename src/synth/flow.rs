//! One generated flow: a time-ordered script of packets ([`Step`]s) planned when the flow starts,
//! turned into frames one at a time when the scheduler reaches each step's time.
//!
//! Planning fixes times, directions, TCP flags and payload lengths; the bytes of bulk payloads
//! ([`Lazy`]) are drawn only at emission, so memory holds scripts, not payloads. TCP sequence
//! and acknowledgement numbers are computed at emission from the bytes each side has sent so
//! far (ISNs random), so every ACK covers exactly the data seen before it.

use std::net::IpAddr;

use super::proto::{ike, openvpn, quic, socks, ssh, tls, wireguard};
use super::rng::Rng;
use super::wire::{self, flags, IpMeta, L4};

/// Which end sends a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// Payload bytes drawn at emission time; the length is fixed at planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lazy {
    /// One TLS application_data record filling the payload.
    TlsRecord,
    /// Uniformly random bytes (stream after a fully encrypted first packet).
    Random,
    /// Random bytes whose first byte is not printable (fully encrypted first packet).
    FullyEncrypted,
    /// WireGuard handshake initiation; draws a new sender index and resets counters.
    WgInit,
    /// WireGuard handshake response echoing the latest initiator index.
    WgResp,
    /// WireGuard transport data with this side's rising counter.
    WgData,
    /// OpenVPN P_DATA_V2 with this side's rising packet id.
    OvpnData,
    /// ESP with this side's SPI and rising sequence number.
    Esp,
    /// SSH chacha20-poly1305 packet.
    SshEncrypted,
    /// QUIC short-header (1-RTT) packet to this side's peer connection id.
    QuicShort,
}

impl Lazy {
    /// The nearest valid wire length not above `len` (or the smallest valid one), so that
    /// planned and emitted lengths agree.
    pub fn normalize(self, len: usize) -> usize {
        match self {
            Lazy::TlsRecord => {
                len.clamp(tls::RECORD_HEADER + 17, tls::RECORD_HEADER + 16_384 + 256)
            }
            Lazy::Random | Lazy::FullyEncrypted => len.max(1),
            Lazy::WgInit => wireguard::INITIATION_LEN,
            Lazy::WgResp => wireguard::RESPONSE_LEN,
            Lazy::WgData => (len / 16 * 16).clamp(32, wireguard::data_len(wireguard::MAX_INNER)),
            Lazy::OvpnData => len.max(24),
            Lazy::Esp => (len.max(32) / 4) * 4,
            Lazy::SshEncrypted => 20 + (len.saturating_sub(20) / 8).max(1) * 8,
            Lazy::QuicShort => len.clamp(quic::SHORT_MIN, quic::SHORT_MAX),
        }
    }

    /// A payload of this kind with its length normalised.
    pub fn payload(self, len: usize) -> Payload {
        Payload::Lazy(self, self.normalize(len) as u32)
    }
}

#[derive(Debug, Clone)]
pub enum Payload {
    None,
    Bytes(Vec<u8>),
    Lazy(Lazy, u32),
}

impl Payload {
    pub fn len(&self) -> usize {
        match self {
            Payload::None => 0,
            Payload::Bytes(b) => b.len(),
            Payload::Lazy(_, n) => *n as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub t: u64,
    pub side: Side,
    /// TCP flags (ignored for UDP).
    pub flags: u8,
    pub payload: Payload,
}

/// The two endpoints of a flow and the path delays seen from the capture point.
#[derive(Debug, Clone, Copy)]
pub struct Ends {
    pub client: IpAddr,
    pub cport: u16,
    pub server: IpAddr,
    pub sport: u16,
    pub client_mac: [u8; 6],
    /// Capture point -> server -> capture point, microseconds.
    pub srv_rtt: u64,
    /// Capture point -> client -> capture point, microseconds.
    pub cli_rtt: u64,
    pub client_ttl: u8,
}

/// What the truth file says about a flow.
#[derive(Debug, Clone)]
pub struct Truth {
    pub id: u64,
    pub host: u32,
    pub start: u64,
    pub transport: Transport,
    pub protocol: &'static str,
    pub application: String,
    pub family: &'static str,
    /// `ok`, or what the block did: `nxdomain`, `dns-bogus`, `reset`, `dropped`, `throttled`.
    pub outcome: &'static str,
    pub server_name: String,
    pub packets: u64,
    pub payload_bytes: u64,
}

/// Per-flow protocol counters used by [`Lazy`] payloads.
#[derive(Debug, Clone, Default)]
pub struct LazyState {
    pub wg_client_index: u32,
    pub wg_server_index: u32,
    pub wg_counter: [u64; 2],
    pub ovpn_peer_id: u32,
    pub ovpn_packet_id: [u32; 2],
    /// ESP SPI used by packets from each side (client->server SPI is the server's inbound SA).
    pub esp_spi: [u32; 2],
    pub esp_seq: [u32; 2],
    /// QUIC destination connection id each side writes in short headers.
    pub quic_dcid: [quic::Cid; 2],
}

/// A flow being written.
pub struct Flow {
    pub ends: Ends,
    pub transport: Transport,
    steps: Vec<Step>,
    next: usize,
    isn: [u32; 2],
    sent: [u32; 2],
    ip_id: [u16; 2],
    server_ttl: u8,
    flow_label: [u32; 2],
    pub lazy: LazyState,
    rng: Rng,
}

/// The router's MAC on the subscriber side of the capture point (VRRP virtual MAC, RFC 5798 §7.3).
pub const GATEWAY_MAC: [u8; 6] = [0x00, 0x00, 0x5E, 0x00, 0x01, 0x01];

fn idx(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

impl Flow {
    /// Wraps a finished plan; steps are ordered by time (stable, so equal times keep plan order).
    pub fn new(
        ends: Ends,
        transport: Transport,
        mut steps: Vec<Step>,
        lazy: LazyState,
        mut rng: Rng,
    ) -> Flow {
        steps.sort_by_key(|s| s.t);
        let isn = [rng.next_u32(), rng.next_u32()];
        let ip_id = [rng.next_u32() as u16, rng.next_u32() as u16];
        let server_ttl = 64 - rng.range(6, 20) as u8;
        let flow_label = [rng.next_u32() & 0xF_FFFF, rng.next_u32() & 0xF_FFFF];
        Flow {
            ends,
            transport,
            steps,
            next: 0,
            isn,
            sent: [0, 0],
            ip_id,
            server_ttl,
            flow_label,
            lazy,
            rng,
        }
    }

    /// Time of the next packet, if any remain.
    pub fn next_time(&self) -> Option<u64> {
        self.steps.get(self.next).map(|s| s.t)
    }

    /// Packets and payload bytes the flow will write.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.steps.len() as u64,
            self.steps.iter().map(|s| s.payload.len() as u64).sum(),
        )
    }

    pub fn start(&self) -> u64 {
        self.steps.first().map_or(0, |s| s.t)
    }

    /// Builds the next packet into `frame`; returns its timestamp, or `None` when done.
    pub fn emit(&mut self, frame: &mut Vec<u8>, scratch: &mut Vec<u8>) -> Option<u64> {
        let step = self.steps.get(self.next)?;
        self.next += 1;
        let (t, side, fl) = (step.t, step.side, step.flags);
        let me = idx(side);
        let peer = 1 - me;
        scratch.clear();
        let payload: &[u8] = match &step.payload {
            Payload::None => &[],
            Payload::Bytes(b) => b,
            Payload::Lazy(kind, len) => {
                fill_lazy(
                    *kind,
                    *len as usize,
                    side,
                    &mut self.lazy,
                    &mut self.rng,
                    scratch,
                );
                scratch
            }
        };
        let e = &self.ends;
        let (src, dst, sport, dport, smac, dmac) = match side {
            Side::Client => (
                e.client,
                e.server,
                e.cport,
                e.sport,
                e.client_mac,
                GATEWAY_MAC,
            ),
            Side::Server => (
                e.server,
                e.client,
                e.sport,
                e.cport,
                GATEWAY_MAC,
                e.client_mac,
            ),
        };
        let l4 = match self.transport {
            Transport::Udp => L4::Udp { sport, dport },
            Transport::Tcp => {
                let syn = fl & flags::SYN != 0;
                // A repeated SYN (retransmission) reuses the ISN.
                let seq = self.isn[me].wrapping_add(if syn { 0 } else { self.sent[me] });
                let ack = self.isn[peer].wrapping_add(self.sent[peer]);
                let window = if syn {
                    64_240
                } else if side == Side::Client {
                    2_052
                } else {
                    501
                };
                L4::Tcp {
                    sport,
                    dport,
                    seq,
                    ack,
                    flags: fl,
                    window,
                }
            }
        };
        let meta = IpMeta {
            ttl: if side == Side::Client {
                e.client_ttl
            } else {
                self.server_ttl
            },
            ip_id: self.ip_id[me],
            flow_label: self.flow_label[me],
        };
        wire::build(frame, smac, dmac, src, dst, meta, &l4, payload);
        self.ip_id[me] = self.ip_id[me].wrapping_add(1);
        if self.transport == Transport::Tcp {
            let plen = payload.len() as u32;
            if fl & flags::SYN != 0 {
                self.sent[me] = 1;
            } else {
                let fin = u32::from(fl & flags::FIN != 0);
                self.sent[me] = self.sent[me].wrapping_add(plen + fin);
            }
        }
        Some(t)
    }
}

fn fill_lazy(
    kind: Lazy,
    len: usize,
    side: Side,
    st: &mut LazyState,
    rng: &mut Rng,
    out: &mut Vec<u8>,
) {
    let me = idx(side);
    match kind {
        Lazy::TlsRecord => tls::app_data(out, rng, len),
        Lazy::Random => {
            out.resize(len, 0);
            rng.fill(out);
        }
        Lazy::FullyEncrypted => socks::fully_encrypted(out, rng, len),
        _ => {}
    }
    // A random segment opening with 0x80-0x82 looks like an Apache Thrift message start to
    // heuristic dissectors; a real stream cipher does that too, but we keep samples clean.
    if matches!(kind, Lazy::Random | Lazy::FullyEncrypted) {
        if let Some(b) = out.first_mut() {
            if (0x80..=0x82).contains(b) {
                *b ^= 0x10;
            }
        }
    }
    match kind {
        Lazy::TlsRecord | Lazy::Random | Lazy::FullyEncrypted => {}
        Lazy::WgInit => {
            st.wg_client_index = rng.next_u32();
            st.wg_counter = [0, 0];
            out.extend_from_slice(&wireguard::initiation(rng, st.wg_client_index));
        }
        Lazy::WgResp => {
            st.wg_server_index = rng.next_u32();
            out.extend_from_slice(&wireguard::response(
                rng,
                st.wg_server_index,
                st.wg_client_index,
            ));
        }
        Lazy::WgData => {
            // Each side addresses the peer's index (whitepaper §5.4.6: receiver index).
            let receiver = if side == Side::Client {
                st.wg_server_index
            } else {
                st.wg_client_index
            };
            wireguard::data(out, rng, receiver, st.wg_counter[me], len);
            st.wg_counter[me] += 1;
        }
        Lazy::OvpnData => {
            st.ovpn_packet_id[me] = st.ovpn_packet_id[me].wrapping_add(1);
            openvpn::data_v2(out, rng, st.ovpn_peer_id, st.ovpn_packet_id[me], len);
        }
        Lazy::Esp => {
            st.esp_seq[me] = st.esp_seq[me].wrapping_add(1);
            ike::esp(out, rng, st.esp_spi[me], st.esp_seq[me], len);
        }
        Lazy::SshEncrypted => ssh::encrypted(out, rng, len),
        Lazy::QuicShort => quic::short_packet(out, rng, &st.quic_dcid[me], len),
    }
}

/// Plans a flow's steps with a moving clock.
pub struct Plan {
    pub steps: Vec<Step>,
    pub t: u64,
    pub ends: Ends,
}

/// Largest TCP payload per segment (MSS 1460 minus room for options some stacks add).
pub const SEG: usize = 1_448;

impl Plan {
    pub fn new(ends: Ends, t: u64) -> Plan {
        Plan {
            steps: Vec::new(),
            t,
            ends,
        }
    }

    pub fn wait(&mut self, us: u64) {
        self.t += us;
    }

    pub fn push(&mut self, side: Side, flags: u8, payload: Payload) {
        self.steps.push(Step {
            t: self.t,
            side,
            flags,
            payload,
        });
    }

    pub fn push_at(&mut self, t: u64, side: Side, flags: u8, payload: Payload) {
        self.steps.push(Step {
            t,
            side,
            flags,
            payload,
        });
    }

    /// After the peer's packet passes the capture point, the time until `side` answers.
    pub fn turn(&self, side: Side) -> u64 {
        match side {
            Side::Client => self.ends.cli_rtt,
            Side::Server => self.ends.srv_rtt,
        }
    }

    /// SYN, SYN/ACK, ACK. `syn_answered = false` models a silent drop: the SYN is retransmitted
    /// after 1, 2 and 4 s (RFC 6298 §5 backoff) and never answered.
    pub fn tcp_open(&mut self, syn_answered: bool) -> bool {
        self.push(Side::Client, flags::SYN, Payload::None);
        if !syn_answered {
            for backoff in [1_000_000, 2_000_000, 4_000_000] {
                self.wait(backoff);
                self.push(Side::Client, flags::SYN, Payload::None);
            }
            return false;
        }
        self.wait(self.ends.srv_rtt);
        self.push(Side::Server, flags::SYN | flags::ACK, Payload::None);
        self.wait(self.ends.cli_rtt);
        self.push(Side::Client, flags::ACK, Payload::None);
        true
    }

    /// `side` sends one segment (PSH|ACK) after its turn time.
    pub fn send(&mut self, side: Side, payload: Payload) {
        self.wait(self.turn(side));
        self.push(side, flags::PSH | flags::ACK, payload);
    }

    /// `side` sends one segment immediately after the previous packet (same flight).
    pub fn send_now(&mut self, side: Side, payload: Payload) {
        self.wait(30);
        self.push(side, flags::PSH | flags::ACK, payload);
    }

    /// A bulk transfer of `total` bytes from `side` in TLS-record segments spaced `gap` µs,
    /// each acknowledged (every second segment) by the receiver one turn later.
    pub fn tcp_bulk(&mut self, side: Side, total: usize, kind: Lazy, seg_len: usize, gap: u64) {
        let other = if side == Side::Client {
            Side::Server
        } else {
            Side::Client
        };
        self.wait(self.turn(side));
        let mut left = total;
        let mut n = 0u32;
        while left > 0 {
            let seg = kind.normalize(left.min(seg_len.min(SEG)));
            left = left.saturating_sub(seg);
            self.push(
                side,
                flags::PSH | flags::ACK,
                Payload::Lazy(kind, seg as u32),
            );
            n += 1;
            if n % 2 == 0 || left == 0 {
                let t = self.t + self.turn(other);
                self.push_at(t, other, flags::ACK, Payload::None);
            }
            if left > 0 {
                self.wait(gap);
            }
        }
        // The clock moves past the last acknowledgement.
        self.wait(self.turn(other) + 50);
    }

    /// Client FIN, server FIN, client ACK.
    pub fn tcp_close(&mut self) {
        self.wait(200);
        self.push(Side::Client, flags::FIN | flags::ACK, Payload::None);
        self.wait(self.ends.srv_rtt);
        self.push(Side::Server, flags::FIN | flags::ACK, Payload::None);
        self.wait(self.ends.cli_rtt);
        self.push(Side::Client, flags::ACK, Payload::None);
    }

    /// A datagram from `side` after `gap` µs.
    pub fn dgram(&mut self, side: Side, gap: u64, payload: Payload) {
        self.wait(gap);
        self.push(side, 0, payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    pub(crate) fn ends() -> Ends {
        Ends {
            client: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            cport: 50_000,
            server: IpAddr::V4(Ipv4Addr::new(104, 244, 42, 1)),
            sport: 443,
            client_mac: [2, 0, 0, 0, 0, 1],
            srv_rtt: 40_000,
            cli_rtt: 5_000,
            client_ttl: 64,
        }
    }

    #[test]
    fn seq_and_ack_follow_the_bytes() {
        let mut p = Plan::new(ends(), 1_000_000);
        p.tcp_open(true);
        p.send(Side::Client, Payload::Bytes(vec![1; 100]));
        p.tcp_bulk(Side::Server, 3_000, Lazy::TlsRecord, SEG, 500);
        p.tcp_close();
        let mut f = Flow::new(
            ends(),
            Transport::Tcp,
            p.steps,
            LazyState::default(),
            Rng::new(1),
        );
        let (mut frame, mut scratch) = (Vec::new(), Vec::new());
        let mut last_t = 0;
        let mut seen: Vec<(bool, u32, u32, u8, usize)> = Vec::new();
        while let Some(t) = f.emit(&mut frame, &mut scratch) {
            assert!(t >= last_t);
            last_t = t;
            assert_eq!(wire::verify(&frame), Some(true));
            let p = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
            if let Some(etherparse::TransportSlice::Tcp(t)) = p.transport {
                let fl = frame[14 + 20 + 13];
                seen.push((
                    t.source_port() == 50_000,
                    t.sequence_number(),
                    t.acknowledgment_number(),
                    fl,
                    t.payload().len(),
                ));
            }
        }
        let c_isn = seen[0].1;
        let s_isn = seen[1].1;
        assert_eq!(seen[1].2, c_isn.wrapping_add(1), "SYN/ACK acks the SYN");
        assert_eq!(seen[3].1, c_isn.wrapping_add(1));
        // The server's data totals 3000 bytes; the last client ACK before FIN covers it.
        let fin = seen
            .iter()
            .position(|s| s.0 && s.3 & flags::FIN != 0)
            .unwrap();
        assert_eq!(seen[fin].2, s_isn.wrapping_add(1 + 3_000));
        assert_eq!(seen[fin].1, c_isn.wrapping_add(1 + 100));
        let last = seen.last().unwrap();
        assert_eq!(
            last.2,
            s_isn.wrapping_add(1 + 3_000 + 1),
            "final ACK covers the server FIN"
        );
    }
}
