//! Flow: bidirectional flows with bounded memory.
//!
//! Contract: every decoded packet lands in exactly one flow; every flow leaves the table exactly
//! once as a [`FlowRecord`] (FIN/RST close, idle timeout, eviction at the cap, or end of input).
//! The table holds at most `max_flows` flows; when full, the least recently seen flow is evicted
//! and counted. Two recency lists (TCP, everything else) make idle expiry exact for both timeouts
//! without scanning.

mod record;
#[cfg(test)]
pub(crate) use record::{interleaved_test_record, labelled_test_record};
mod table;

pub use record::{EndReason, FlowRecord, Outcome, FLOW_COLUMNS};
pub use table::{FlowConfig, FlowCounters, FlowTable, MovedFlow};

use std::net::IpAddr;

/// Which way a packet travels relative to the flow's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    ToServer,
    ToClient,
}

impl Direction {
    /// 0 for to-server, 1 for to-client: index of per-direction arrays.
    pub fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }
}

/// The transport of a flow. Portless IP protocols (GRE, ESP, AH, ...) keep their number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
    /// ICMP or ICMPv6.
    Icmp,
    Other(u8),
}

impl Transport {
    pub fn from_ip_proto(p: u8) -> Transport {
        match p {
            6 => Transport::Tcp,
            17 => Transport::Udp,
            1 | 58 => Transport::Icmp,
            other => Transport::Other(other),
        }
    }

    /// Output token: `tcp`, `udp`, `icmp`, or the IANA keyword for common others.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            Transport::Tcp => "tcp".into(),
            Transport::Udp => "udp".into(),
            Transport::Icmp => "icmp".into(),
            Transport::Other(47) => "gre".into(),
            Transport::Other(50) => "esp".into(),
            Transport::Other(51) => "ah".into(),
            Transport::Other(n) => format!("ip{n}").into(),
        }
    }

    fn has_ports(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Udp)
    }
}

/// Canonical bidirectional key: the lower endpoint first, so both directions hash alike.
/// Ports are zero for portless protocols (a 3-tuple).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub lo_ip: IpAddr,
    pub hi_ip: IpAddr,
    pub lo_port: u16,
    pub hi_port: u16,
    pub ip_proto: u8,
}

impl FlowKey {
    /// The canonical key and whether the packet's source is the `lo` endpoint.
    pub fn canonical(
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        ip_proto: u8,
    ) -> (FlowKey, bool) {
        let (sport, dport) = if Transport::from_ip_proto(ip_proto).has_ports() {
            (sport, dport)
        } else {
            (0, 0)
        };
        if endpoint_le(src, sport, dst, dport) {
            (
                FlowKey {
                    lo_ip: src,
                    hi_ip: dst,
                    lo_port: sport,
                    hi_port: dport,
                    ip_proto,
                },
                true,
            )
        } else {
            (
                FlowKey {
                    lo_ip: dst,
                    hi_ip: src,
                    lo_port: dport,
                    hi_port: sport,
                    ip_proto,
                },
                false,
            )
        }
    }
}

/// `(a, a_port) <= (b, b_port)` in the order of `IpAddr` (every IPv4 address before every
/// IPv6 one, each family by its octets), done on integers: the generic tuple comparison was
/// 2 % of the reading thread's time.
#[inline]
fn endpoint_le(a: IpAddr, a_port: u16, b: IpAddr, b_port: u16) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a), a_port) <= (u32::from(b), b_port),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), a_port) <= (u128::from(b), b_port),
        (IpAddr::V4(_), IpAddr::V6(_)) => true,
        (IpAddr::V6(_), IpAddr::V4(_)) => false,
    }
}

impl FlowKey {
    /// The key's hash, with one fixed seed for the whole process: the reader hashes a packet's
    /// key once to pick the table that owns it, and that table's index reuses the same value
    /// ([`FlowTable::process_keyed`]) instead of hashing again.
    pub fn flow_hash(&self) -> u64 {
        use std::hash::BuildHasher;
        foldhash::fast::FixedState::default().hash_one(self)
    }
}

/// A packet's canonical flow key, which end sent it and the key's hash: worked out once per
/// packet, by the thread that reads it, and handed to whichever table owns the flow.
#[derive(Debug, Clone, Copy)]
pub struct PacketKey {
    pub key: FlowKey,
    /// The packet's source is the key's `lo` endpoint.
    pub src_is_lo: bool,
    /// [`FlowKey::flow_hash`] of `key`.
    pub hash: u64,
}

impl PacketKey {
    /// The key of a decoded packet (ports zeroed for portless protocols, lower endpoint first).
    pub fn of(pkt: &crate::decode::DecodedPacket<'_>) -> PacketKey {
        let (key, src_is_lo) =
            FlowKey::canonical(pkt.src, pkt.src_port, pkt.dst, pkt.dst_port, pkt.ip_proto);
        PacketKey {
            key,
            src_is_lo,
            hash: key.flow_hash(),
        }
    }

    /// [`PacketKey::of`] for a packet whose key hash is already known: a worker rebuilds the
    /// key from the packet (a few comparisons) rather than have it carried in every batch.
    pub fn with_hash(pkt: &crate::decode::DecodedPacket<'_>, hash: u64) -> PacketKey {
        Self::from_endpoints(
            (pkt.src, pkt.src_port),
            (pkt.dst, pkt.dst_port),
            pkt.ip_proto,
            hash,
        )
    }

    /// The key of a packet from `src` to `dst` (address, port), whose key hash is `hash`.
    pub fn from_endpoints(
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
        ip_proto: u8,
        hash: u64,
    ) -> PacketKey {
        let (key, src_is_lo) = FlowKey::canonical(src.0, src.1, dst.0, dst.1, ip_proto);
        PacketKey {
            key,
            src_is_lo,
            hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip() -> impl Strategy<Value = IpAddr> {
        // Few distinct values, so that equal addresses (where the ports decide) come up.
        prop_oneof![
            (0u8..3, any::<u8>()).prop_map(|(a, b)| IpAddr::from([10, a, 0, b % 3])),
            (0u16..3, any::<u16>()).prop_map(|(a, b)| IpAddr::from([a, 0, 0, 0, 0, 0, 0, b % 3])),
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ]
    }

    proptest! {
        #[test]
        fn endpoint_order_is_the_tuple_order(a in ip(), ap in 0u16..3, b in ip(), bp in 0u16..3) {
            prop_assert_eq!(endpoint_le(a, ap, b, bp), (a, ap) <= (b, bp));
        }
    }
}
