//! Flow exports and flow logs: NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) over UDP,
//! and `nfdump -o csv` flow logs, turned into [`FlowRecord`](crate::flow::FlowRecord)s.
//!
//! Contract: every datagram is either decoded, or counted as malformed in
//! [`CollectorStats`]; no input bytes can make this module panic. Data sets that arrive before
//! their template are buffered (bounded) and decoded when the template arrives, or counted as
//! dropped.
//!
//! ## From export records to flows (decision)
//! Routers export **unidirectional** records (one per direction of a connection). tunnelwatch
//! keeps them unidirectional: one export record becomes one [`FlowRecord`](crate::flow::FlowRecord) with
//! [`Outcome::OneWay`](crate::flow::Outcome::OneWay). Pairing A->B with B->A is not done,
//! because the two halves may be exported minutes apart (different active/idle timeouts per
//! direction) and a collector cannot wait for them without unbounded state. The record is
//! oriented like a packet flow would be (see [`convert::orient`]): when the sender's port is a
//! service port (below 1024, or one of the VPN ports in [`convert::SERVICE_PORTS`]) and the
//! receiver's is not, the sender is the *server*, and packets/bytes go in the to-client slot
//! (index 1); otherwise the sender is the client and the counts go in index 0. So per-host
//! statistics count subscribers as clients for both halves of a connection, and totals
//! (`packets[0] + packets[1]`) equal the exported counts exactly.
//!
//! ## Fingerprints without payload
//! Only what a flow record carries: the IP protocol (GRE 47, ESP 50, AH 51) and registered /
//! documented default ports of VPN protocols. Every such verdict has
//! [`Confidence::PortOnly`](crate::fingerprint::Confidence::PortOnly) and evidence
//! `source=flow_export`; nothing more is ever claimed (see [`convert::label_for`]).

pub mod collector;
pub mod convert;
pub mod flow_table;
pub mod ipfix;
pub mod netflow_v5;
pub mod netflow_v9;
pub mod nfdump_csv;
pub mod templates;

use std::net::{IpAddr, SocketAddr};

pub use collector::{collect, collect_on, Collector, CollectorStats};
pub use convert::{label_for, to_flow_record};
pub use flow_table::{
    each_flow_table_csv_flow, read_flow_table_csv, read_flow_table_csv_file, TableStats,
};
pub use nfdump_csv::{each_nfdump_csv_flow, read_nfdump_csv, read_nfdump_csv_file, CsvStats};

/// One flow as exported (any format), before conversion to a [`FlowRecord`](crate::flow::FlowRecord).
/// Direction is the exporter's: `src` sent every counted packet to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportRecord {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub ip_proto: u8,
    pub packets: u64,
    /// IP bytes, headers included (octetDeltaCount).
    pub bytes: u64,
    /// Union of TCP flags (tcpControlBits, low 8 bits).
    pub tcp_flags: u8,
    /// Unix nanoseconds of the first and last packet (export time when the record has none).
    pub first_ns: i64,
    pub last_ns: i64,
}

/// Why a datagram (or a part of it) could not be decoded. Never fatal to the collector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("unsupported export version {0}")]
    Version(u16),
    #[error("bad length in {what}: declared {declared}, available {available}")]
    Length {
        what: &'static str,
        declared: usize,
        available: usize,
    },
    #[error("malformed template: {0}")]
    Template(&'static str),
}

/// Gathers the flows a streaming reader hands on into a vector, with what it returns (the
/// whole-log form of `each_flow_table_csv_flow`, `each_nfdump_csv_flow` and the like).
pub fn collect_flows<S>(
    read: impl FnOnce(&mut dyn FnMut(crate::flow::FlowRecord)) -> Result<S, FlowLogError>,
) -> Result<(Vec<crate::flow::FlowRecord>, S), FlowLogError> {
    let mut flows = Vec::new();
    let stats = read(&mut |flow| flows.push(flow))?;
    Ok((flows, stats))
}

/// Errors of the collector and the flow-log readers.
#[derive(Debug, thiserror::Error)]
pub enum FlowLogError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{path}: {source}")]
    Open {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("not an nfdump CSV file: {0}")]
    NotNfdumpCsv(String),
    #[error("not a tunnelwatch flow table: {0}")]
    NotFlowTable(String),
}

/// Big-endian unsigned integer of 1..=8 bytes (RFC 7011 §6.2 reduced-size encoding).
pub(crate) fn be_uint(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 8 {
        return None;
    }
    Some(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

pub(crate) fn be_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

pub(crate) fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn be_helpers() {
        assert_eq!(be_uint(&[1, 2]), Some(0x0102));
        assert_eq!(be_uint(&[]), None);
        assert_eq!(be_uint(&[0; 9]), None);
        assert_eq!(be_u16(&[0, 1, 2], 1), Some(0x0102));
        assert_eq!(be_u16(&[0, 1, 2], 2), None);
        assert_eq!(be_u32(&[0, 0, 0, 5], 0), Some(5));
        assert_eq!(be_u32(&[0, 0, 0, 5], usize::MAX), None);
    }
}
