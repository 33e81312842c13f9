//! NetFlow v5 (Cisco's fixed format, no RFC).
//!
//! Header, 24 bytes: version u16 (=5) @0, count u16 @2 (records, 1..=30 on Cisco devices),
//! sysUptime u32 ms @4, unix_secs u32 @8, unix_nsecs u32 @12, flow_sequence u32 @16 (flows seen
//! before this packet's first record), engine_type u8 @20, engine_id u8 @21,
//! sampling_interval u16 @22 (2-bit mode, 14-bit interval).
//!
//! Record, 48 bytes: srcaddr @0, dstaddr @4, nexthop @8, input u16 @12, output u16 @14,
//! dPkts u32 @16, dOctets u32 @20, First u32 @24 and Last u32 @28 (sysUptime ms at the first /
//! last packet), srcport u16 @32, dstport u16 @34, pad @36, tcp_flags u8 @37, prot u8 @38,
//! tos u8 @39, src_as u16 @40, dst_as u16 @42, src_mask @44, dst_mask @45, pad u16 @46.
//!
//! Counts are reported as exported (not scaled by the sampling interval).

use std::net::{IpAddr, Ipv4Addr};

use super::{be_u16, be_u32, ExportRecord, ParseError};

pub const HEADER_LEN: usize = 24;
pub const RECORD_LEN: usize = 48;

/// The v5 header fields the collector uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V5Header {
    pub count: u16,
    pub sys_uptime_ms: u32,
    pub unix_secs: u32,
    pub unix_nsecs: u32,
    pub flow_sequence: u32,
    pub engine_type: u8,
    pub engine_id: u8,
    pub sampling_interval: u16,
}

impl V5Header {
    /// Export time, Unix milliseconds.
    pub fn export_ms(&self) -> i64 {
        i64::from(self.unix_secs) * 1000 + i64::from(self.unix_nsecs / 1_000_000)
    }
}

/// Parses one v5 datagram, appending its `count` records to `out`. The datagram must hold the
/// header and `count` full records (extra trailing bytes are ignored).
pub fn parse_v5(bytes: &[u8], out: &mut Vec<ExportRecord>) -> Result<V5Header, ParseError> {
    let trunc = |need| ParseError::Truncated {
        what: "netflow v5 header",
        need,
        have: bytes.len(),
    };
    let version = be_u16(bytes, 0).ok_or(trunc(HEADER_LEN))?;
    if version != 5 {
        return Err(ParseError::Version(version));
    }
    if bytes.len() < HEADER_LEN {
        return Err(trunc(HEADER_LEN));
    }
    let h = V5Header {
        count: be_u16(bytes, 2).ok_or(trunc(HEADER_LEN))?,
        sys_uptime_ms: be_u32(bytes, 4).ok_or(trunc(HEADER_LEN))?,
        unix_secs: be_u32(bytes, 8).ok_or(trunc(HEADER_LEN))?,
        unix_nsecs: be_u32(bytes, 12).ok_or(trunc(HEADER_LEN))?,
        flow_sequence: be_u32(bytes, 16).ok_or(trunc(HEADER_LEN))?,
        engine_type: bytes.get(20).copied().unwrap_or(0),
        engine_id: bytes.get(21).copied().unwrap_or(0),
        sampling_interval: be_u16(bytes, 22).ok_or(trunc(HEADER_LEN))?,
    };
    let need = HEADER_LEN + usize::from(h.count) * RECORD_LEN;
    if bytes.len() < need {
        return Err(ParseError::Length {
            what: "netflow v5 record count",
            declared: need,
            available: bytes.len(),
        });
    }
    let export_ms = h.export_ms();
    let time = |uptime: u32| -> i64 {
        (export_ms - i64::from(h.sys_uptime_ms.wrapping_sub(uptime))).saturating_mul(1_000_000)
    };
    let records = bytes.get(HEADER_LEN..need).unwrap_or(&[]);
    for r in records.chunks_exact(RECORD_LEN) {
        let ip = |at: usize| IpAddr::V4(Ipv4Addr::from(be_u32(r, at).unwrap_or(0)));
        let first = time(be_u32(r, 24).unwrap_or(0));
        let last = time(be_u32(r, 28).unwrap_or(0));
        out.push(ExportRecord {
            src: ip(0),
            dst: ip(4),
            src_port: be_u16(r, 32).unwrap_or(0),
            dst_port: be_u16(r, 34).unwrap_or(0),
            ip_proto: r.get(38).copied().unwrap_or(0),
            packets: u64::from(be_u32(r, 16).unwrap_or(0)),
            bytes: u64::from(be_u32(r, 20).unwrap_or(0)),
            tcp_flags: r.get(37).copied().unwrap_or(0),
            first_ns: first.min(last),
            last_ns: last.max(first),
        });
    }
    Ok(h)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A v5 datagram laid out per the Cisco format (see the module docs).
    /// src, dst, src port, dst port, protocol, packets, bytes.
    pub(crate) type V5Rec = ([u8; 4], [u8; 4], u16, u16, u8, u32, u32);

    pub(crate) fn v5_packet(seq: u32, records: &[V5Rec]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&5u16.to_be_bytes());
        b.extend_from_slice(&(records.len() as u16).to_be_bytes());
        b.extend_from_slice(&10_000u32.to_be_bytes()); // sysUptime
        b.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        b.extend_from_slice(&500_000_000u32.to_be_bytes());
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&[0, 1, 0, 0]);
        for &(s, d, sp, dp, proto, pk, by) in records {
            b.extend_from_slice(&s);
            b.extend_from_slice(&d);
            b.extend_from_slice(&[0; 8]);
            b.extend_from_slice(&pk.to_be_bytes());
            b.extend_from_slice(&by.to_be_bytes());
            b.extend_from_slice(&7_000u32.to_be_bytes()); // First
            b.extend_from_slice(&9_000u32.to_be_bytes()); // Last
            b.extend_from_slice(&sp.to_be_bytes());
            b.extend_from_slice(&dp.to_be_bytes());
            b.extend_from_slice(&[0, 0x12, proto, 0]);
            b.extend_from_slice(&[0; 8]);
        }
        b
    }

    #[test]
    fn parses_records_and_times() {
        let p = v5_packet(
            41,
            &[
                ([10, 0, 0, 1], [10, 0, 0, 2], 40000, 53, 17, 2, 98),
                ([10, 0, 0, 3], [192, 0, 2, 1], 1, 50, 50, 9, 900),
            ],
        );
        let mut out = Vec::new();
        let h = parse_v5(&p, &mut out).unwrap();
        assert_eq!((h.count, h.flow_sequence, h.engine_id), (2, 41, 1));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (out[0].src_port, out[0].dst_port, out[0].ip_proto),
            (40000, 53, 17)
        );
        assert_eq!(
            (out[0].packets, out[0].bytes, out[0].tcp_flags),
            (2, 98, 0x12)
        );
        // export 1700000000.5 s, uptime 10 s, First 7 s -> 3 s before export.
        assert_eq!(out[0].first_ns, 1_699_999_997_500_000_000);
        assert_eq!(out[0].last_ns, 1_699_999_999_500_000_000);
        assert_eq!(out[1].ip_proto, 50);
    }

    #[test]
    fn refuses_truncated_and_other_versions() {
        let mut p = v5_packet(0, &[([1; 4], [2; 4], 1, 2, 6, 1, 40)]);
        let mut out = Vec::new();
        assert!(matches!(
            parse_v5(&p[..p.len() - 1], &mut out),
            Err(ParseError::Length { .. })
        ));
        assert!(matches!(
            parse_v5(&p[..10], &mut out),
            Err(ParseError::Truncated { .. })
        ));
        assert!(matches!(
            parse_v5(&[0], &mut out),
            Err(ParseError::Truncated { .. })
        ));
        p[1] = 9;
        assert_eq!(parse_v5(&p, &mut out), Err(ParseError::Version(9)));
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), count in 0u16..20) {
            let mut b = bytes.clone();
            if b.len() >= 4 { b[0] = 0; b[1] = 5; b[2..4].copy_from_slice(&count.to_be_bytes()); }
            let mut out = Vec::new();
            let _ = parse_v5(&b, &mut out);
            prop_assert!(out.len() <= b.len() / RECORD_LEN);
        }
    }
}
