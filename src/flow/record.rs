//! A finished flow, as every later stage sees it.

use std::net::IpAddr;

use super::Transport;
use crate::fingerprint::Label;

/// How a flow fared: the raw material of reachability measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Both sides sent packets; not reset, not closed by FIN in both directions.
    Established,
    /// TCP closed by FIN from both sides after data both ways.
    Completed,
    /// Server (or a middlebox speaking for it) reset before the client sent any data:
    /// connection refused or reset after SYN.
    ResetAfterSyn,
    /// Reset after the client's first data but before any server data: the signature of
    /// SNI/keyword blocking (reset injected after a ClientHello or HTTP request).
    ResetAfterClientData,
    /// Reset after the server had sent data.
    ResetAfterServerData,
    /// The client reset the connection.
    ResetByClient,
    /// The client sent and nothing came back (SYN without SYN-ACK, UDP without reply).
    NoReply,
    /// Only one direction was captured, mid-connection (asymmetric routing or late start).
    OneWay,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Established => "established",
            Outcome::Completed => "completed",
            Outcome::ResetAfterSyn => "reset_after_syn",
            Outcome::ResetAfterClientData => "reset_after_client_data",
            Outcome::ResetAfterServerData => "reset_after_server_data",
            Outcome::ResetByClient => "reset_by_client",
            Outcome::NoReply => "no_reply",
            Outcome::OneWay => "one_way",
        }
    }
}

/// Why the flow left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    Fin,
    Rst,
    IdleTimeout,
    /// Pushed out by the flow cap (least recently seen).
    Evicted,
    EndOfInput,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::IdleTimeout => "idle",
            EndReason::Evicted => "evicted",
            EndReason::EndOfInput => "end_of_input",
        }
    }
}

/// Columns of every flow row, in order: the CSV header, JSONL keys and table columns that
/// `flows` and `analyze` write, and the schema `analyze --flow-log` reads back.
pub const FLOW_COLUMNS: &[&str] = &[
    "id",
    "first_ts",
    "last_ts",
    "transport",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "packets_c2s",
    "packets_s2c",
    "bytes_c2s",
    "bytes_s2c",
    "outcome",
    "protocol",
    "application",
    "provider",
    "obfuscated",
    "family",
    "confidence",
    "server_name",
    "platform",
    "evidence",
];

/// One finished bidirectional flow. Per-direction arrays are `[client->server, server->client]`.
#[derive(Debug, Clone)]
pub struct FlowRecord {
    /// Sequence number in order of creation (stable across runs over the same input).
    pub id: u64,
    pub first_ts: i64,
    pub last_ts: i64,
    pub transport: Transport,
    pub ip_proto: u8,
    pub client_ip: IpAddr,
    pub client_port: u16,
    pub server_ip: IpAddr,
    pub server_port: u16,
    pub packets: [u64; 2],
    /// IP bytes (header included).
    pub bytes: [u64; 2],
    pub payload_bytes: [u64; 2],
    /// Union of TCP flags seen per direction.
    pub tcp_flags: [u8; 2],
    pub outcome: Outcome,
    pub end_reason: EndReason,
    pub label: Label,
}

impl FlowRecord {
    pub fn duration_secs(&self) -> f64 {
        (self.last_ts - self.first_ts) as f64 / 1e9
    }
}

/// A flow for tests of ordering and output: times, endpoints and ports chosen so that many
/// records tie on the first fields of the output order and differ further on.
#[cfg(test)]
pub(crate) fn interleaved_test_record(i: u64) -> FlowRecord {
    let first_ts = ((i * 7919) % 997) as i64 - 400;
    FlowRecord {
        id: i,
        first_ts,
        last_ts: first_ts + (i % 3) as i64,
        transport: Transport::Udp,
        ip_proto: 17,
        client_ip: if i % 5 == 0 {
            IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1])
        } else {
            IpAddr::from([10, 0, (i % 4) as u8, 1])
        },
        client_port: (i % 11) as u16,
        server_ip: IpAddr::from([192, 0, 2, (i % 3) as u8]),
        server_port: 443,
        packets: [1, 0],
        bytes: [60, 0],
        payload_bytes: [0, 0],
        tcp_flags: [0, 0],
        outcome: Outcome::NoReply,
        end_reason: EndReason::IdleTimeout,
        label: Label::default(),
    }
}

/// [`interleaved_test_record`] labelled `labels[i % labels.len()]` (protocol and family), with
/// a statistical confidence unless the protocol is `unknown`.
#[cfg(test)]
pub(crate) fn labelled_test_record(
    i: u64,
    labels: &[(&'static str, crate::fingerprint::Family)],
) -> FlowRecord {
    let mut r = interleaved_test_record(i);
    if let Some(&(protocol, family)) = labels.get(i as usize % labels.len().max(1)) {
        r.label.protocol = protocol;
        r.label.family = family;
        r.label.confidence =
            (protocol != "unknown").then_some(crate::fingerprint::Confidence::Statistical);
    }
    r
}
