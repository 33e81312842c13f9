//! Templates shared by NetFlow v9 and IPFIX: field specifiers, and decoding of data records
//! against a template into [`ExportRecord`]s.
//!
//! Information elements understood (IANA IPFIX registry numbers, identical in NetFlow v9 for
//! 1..=127): octetDeltaCount 1, packetDeltaCount 2, protocolIdentifier 4, tcpControlBits 6,
//! sourceTransportPort 7, sourceIPv4Address 8, destinationTransportPort 11,
//! destinationIPv4Address 12, flowEndSysUpTime 21, flowStartSysUpTime 22, sourceIPv6Address 27,
//! destinationIPv6Address 28, octetTotalCount 85 / packetTotalCount 86 (when no delta count),
//! flowStartSeconds 150, flowEndSeconds 151, flowStartMilliseconds 152, flowEndMilliseconds 153,
//! flowStartMicroseconds 154, flowEndMicroseconds 155, flowStartNanoseconds 156,
//! flowEndNanoseconds 157 (NTP format, RFC 7011 §6.1.9), systemInitTimeMilliseconds 160.
//! Every other element (and every enterprise-specific one) is skipped by its length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{be_uint, ExportRecord};

/// IPFIX field length meaning "variable length" (RFC 7011 §7).
pub const VARIABLE_LENGTH: u16 = 0xFFFF;

/// One field specifier (RFC 7011 §3.2, RFC 3954 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// Information element id, enterprise bit removed.
    pub id: u16,
    /// Private enterprise number when the enterprise bit was set.
    pub enterprise: Option<u32>,
    /// Bytes, or [`VARIABLE_LENGTH`].
    pub length: u16,
}

/// A data or options template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub id: u16,
    /// Scope fields (options templates), 0 for data templates.
    pub scope_fields: u16,
    /// An options template: its records describe the exporter, not flows.
    pub options: bool,
    pub fields: Vec<FieldSpec>,
}

/// One record of a template set, as the collector applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateEvent {
    Define(Template),
    /// IPFIX template withdrawal (field count 0, RFC 7011 §8.1).
    Withdraw(u16),
    /// IPFIX "all templates" withdrawal (template id = set id 2 or 3, field count 0).
    WithdrawAll,
}

/// The records of one template set, and the problem that ended it early, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateSet {
    pub events: Vec<TemplateEvent>,
    pub error: Option<super::ParseError>,
}

impl Template {
    /// Smallest record this template can describe (a variable-length field counts 1 byte).
    pub fn min_record_len(&self) -> usize {
        self.fields
            .iter()
            .map(|f| {
                if f.length == VARIABLE_LENGTH {
                    1
                } else {
                    usize::from(f.length)
                }
            })
            .sum()
    }

    /// A template is usable when it has fields and its records have at least one byte.
    pub fn check(&self) -> Result<(), super::ParseError> {
        if self.fields.is_empty() {
            return Err(super::ParseError::Template("no fields"));
        }
        if self.min_record_len() == 0 {
            return Err(super::ParseError::Template("zero-length records"));
        }
        if self.id < 256 {
            return Err(super::ParseError::Template("template id below 256"));
        }
        Ok(())
    }
}

/// What the decoder needs to turn relative times into Unix time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeContext {
    /// Export time of the message, Unix milliseconds.
    pub export_ms: i64,
    /// NetFlow v9 header sysUpTime (ms since the device booted at export time).
    pub sys_uptime_ms: Option<u32>,
    /// IPFIX systemInitTimeMilliseconds learnt from an options record of this domain.
    pub system_init_ms: Option<i64>,
}

/// The values of one data record that matter here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Values {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    src_port: u16,
    dst_port: u16,
    proto: u8,
    packets: Option<u64>,
    bytes: Option<u64>,
    total_packets: Option<u64>,
    total_bytes: Option<u64>,
    flags: u8,
    start_uptime: Option<u32>,
    end_uptime: Option<u32>,
    start_ns: Option<i64>,
    end_ns: Option<i64>,
    system_init_ms: Option<i64>,
}

fn ms_to_ns(ms: i64) -> Option<i64> {
    ms.checked_mul(1_000_000)
}

/// NTP timestamp (RFC 7011 §6.1.9 / RFC 5905: seconds since 1900 and a 2^-32 fraction) to Unix ns.
fn ntp_to_ns(v: u64) -> Option<i64> {
    const NTP_UNIX_OFFSET: i64 = 2_208_988_800;
    let secs = i64::try_from(v >> 32).ok()? - NTP_UNIX_OFFSET;
    let frac = ((v & 0xFFFF_FFFF) * 1_000_000_000) >> 32;
    secs.checked_mul(1_000_000_000)?
        .checked_add(i64::try_from(frac).ok()?)
}

fn addr(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => {
            let b: [u8; 4] = bytes.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        16 => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

impl Values {
    fn set(&mut self, id: u16, v: &[u8]) {
        let n = be_uint(v);
        match id {
            1 => self.bytes = n,
            2 => self.packets = n,
            4 => self.proto = n.and_then(|x| u8::try_from(x).ok()).unwrap_or(0),
            6 => self.flags = n.map_or(0, |x| (x & 0xFF) as u8),
            7 => self.src_port = n.and_then(|x| u16::try_from(x).ok()).unwrap_or(0),
            11 => self.dst_port = n.and_then(|x| u16::try_from(x).ok()).unwrap_or(0),
            8 | 27 => self.src = addr(v).or(self.src),
            12 | 28 => self.dst = addr(v).or(self.dst),
            21 => self.end_uptime = n.and_then(|x| u32::try_from(x).ok()),
            22 => self.start_uptime = n.and_then(|x| u32::try_from(x).ok()),
            85 => self.total_bytes = n,
            86 => self.total_packets = n,
            150 => {
                self.start_ns = n
                    .and_then(|s| i64::try_from(s).ok())
                    .and_then(|s| s.checked_mul(1_000_000_000))
            }
            151 => {
                self.end_ns = n
                    .and_then(|s| i64::try_from(s).ok())
                    .and_then(|s| s.checked_mul(1_000_000_000))
            }
            152 => self.start_ns = n.and_then(|s| i64::try_from(s).ok()).and_then(ms_to_ns),
            153 => self.end_ns = n.and_then(|s| i64::try_from(s).ok()).and_then(ms_to_ns),
            154 | 156 if v.len() == 8 => self.start_ns = n.and_then(ntp_to_ns),
            155 | 157 if v.len() == 8 => self.end_ns = n.and_then(ntp_to_ns),
            160 => self.system_init_ms = n.and_then(|s| i64::try_from(s).ok()),
            _ => {}
        }
    }

    fn time(
        &self,
        absolute: Option<i64>,
        uptime: Option<u32>,
        ctx: &TimeContext,
        init: Option<i64>,
    ) -> Option<i64> {
        if absolute.is_some() {
            return absolute;
        }
        let up = uptime?;
        if let Some(init) = init {
            return init.checked_add(i64::from(up)).and_then(ms_to_ns);
        }
        // v9: the device's uptime at export is in the header; the flow's is `up` (both wrap at
        // 2^32 ms, so take the wrapping difference).
        let sys = ctx.sys_uptime_ms?;
        ctx.export_ms
            .checked_sub(i64::from(sys.wrapping_sub(up)))
            .and_then(ms_to_ns)
    }

    fn finish(&self, ctx: &TimeContext) -> Option<ExportRecord> {
        let (src, dst) = (self.src?, self.dst?);
        let init = self.system_init_ms.or(ctx.system_init_ms);
        let export_ns = ms_to_ns(ctx.export_ms).unwrap_or(0);
        let first = self.time(self.start_ns, self.start_uptime, ctx, init);
        let last = self.time(self.end_ns, self.end_uptime, ctx, init);
        let (first_ns, last_ns) = match (first, last) {
            (Some(f), Some(l)) => (f.min(l), f.max(l)),
            (Some(t), None) | (None, Some(t)) => (t, t),
            (None, None) => (export_ns, export_ns),
        };
        Some(ExportRecord {
            src,
            dst,
            src_port: self.src_port,
            dst_port: self.dst_port,
            ip_proto: self.proto,
            packets: self.packets.or(self.total_packets).unwrap_or(0),
            bytes: self.bytes.or(self.total_bytes).unwrap_or(0),
            tcp_flags: self.flags,
            first_ns,
            last_ns,
        })
    }
}

/// What came of one data set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataSetTally {
    /// Data records decoded (flows and others).
    pub records: u64,
    /// Records that became [`ExportRecord`]s (had both addresses).
    pub flows: u64,
    /// Records of an options template.
    pub options_records: u64,
    /// systemInitTimeMilliseconds seen in any record of the set.
    pub system_init_ms: Option<i64>,
    /// A record ran past the end of the set (the rest of the set was skipped).
    pub malformed: bool,
}

/// Decodes one record at the start of `bytes`; returns its values and length, or None when the
/// record does not fit.
fn decode_record(t: &Template, bytes: &[u8]) -> Option<(Values, usize)> {
    let mut v = Values::default();
    let mut at = 0usize;
    for f in &t.fields {
        let len = if f.length == VARIABLE_LENGTH {
            // RFC 7011 §7: one length byte, or 255 followed by a two-byte length.
            let first = *bytes.get(at)?;
            at += 1;
            if first == 255 {
                let l = super::be_u16(bytes, at)?;
                at += 2;
                usize::from(l)
            } else {
                usize::from(first)
            }
        } else {
            usize::from(f.length)
        };
        let end = at.checked_add(len)?;
        let value = bytes.get(at..end)?;
        if f.enterprise.is_none() {
            v.set(f.id, value);
        }
        at = end;
    }
    Some((v, at))
}

/// Decodes every record of a data set body (after the 4-byte set header) with template `t`,
/// appending flows to `out`. Trailing bytes shorter than the template's smallest record are
/// padding (RFC 7011 §3.3.1, RFC 3954 §5.3).
pub fn decode_data_set(
    t: &Template,
    body: &[u8],
    ctx: &TimeContext,
    out: &mut Vec<ExportRecord>,
) -> DataSetTally {
    let mut tally = DataSetTally::default();
    let min = t.min_record_len();
    if min == 0 {
        tally.malformed = true;
        return tally;
    }
    let mut ctx = *ctx;
    let mut rest = body;
    while rest.len() >= min {
        let Some((values, used)) = decode_record(t, rest) else {
            tally.malformed = true;
            break;
        };
        tally.records += 1;
        if let Some(init) = values.system_init_ms {
            tally.system_init_ms = Some(init);
            ctx.system_init_ms = Some(init);
        }
        if t.options {
            tally.options_records += 1;
        } else if let Some(r) = values.finish(&ctx) {
            tally.flows += 1;
            out.push(r);
        }
        // `used >= min > 0`, so the loop always advances.
        rest = rest.get(used.max(1)..).unwrap_or(&[]);
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(id: u16, length: u16) -> FieldSpec {
        FieldSpec {
            id,
            enterprise: None,
            length,
        }
    }

    #[test]
    fn variable_length_and_enterprise_fields_are_skipped() {
        let t = Template {
            id: 300,
            scope_fields: 0,
            options: false,
            fields: vec![
                f(8, 4),
                FieldSpec {
                    id: 1,
                    enterprise: Some(29305),
                    length: 4,
                },
                f(82, VARIABLE_LENGTH),
                f(12, 4),
                f(96, VARIABLE_LENGTH),
                f(2, 2),
                f(1, 3),
                f(152, 8),
            ],
        };
        let mut b = vec![
            10, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 3, b'e', b't', b'h', 192, 0, 2, 1,
        ];
        // 255 then a two-byte length (RFC 7011 §7, long form).
        b.extend_from_slice(&[255, 0, 5, 1, 2, 3, 4, 5]);
        b.extend_from_slice(&[0, 7, 0, 1, 0]);
        b.extend_from_slice(&1_700_000_000_123u64.to_be_bytes());
        let mut out = Vec::new();
        let tally = decode_data_set(&t, &b, &TimeContext::default(), &mut out);
        assert_eq!((tally.records, tally.flows, tally.malformed), (1, 1, false));
        let r = out[0];
        assert_eq!(r.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(r.dst, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!((r.packets, r.bytes), (7, 256));
        assert_eq!(r.first_ns, 1_700_000_000_123_000_000);
        assert_eq!(r.last_ns, r.first_ns);
    }

    #[test]
    fn uptime_times_use_header_or_system_init() {
        let t = Template {
            id: 256,
            scope_fields: 0,
            options: false,
            fields: vec![f(8, 4), f(12, 4), f(22, 4), f(21, 4)],
        };
        let mut b = vec![1, 1, 1, 1, 2, 2, 2, 2];
        b.extend_from_slice(&1000u32.to_be_bytes());
        b.extend_from_slice(&3000u32.to_be_bytes());
        let ctx = TimeContext {
            export_ms: 1_000_000,
            sys_uptime_ms: Some(5000),
            system_init_ms: None,
        };
        let mut out = Vec::new();
        decode_data_set(&t, &b, &ctx, &mut out);
        assert_eq!(
            (out[0].first_ns, out[0].last_ns),
            (996_000 * 1_000_000, 998_000 * 1_000_000)
        );
        let ctx = TimeContext {
            export_ms: 0,
            sys_uptime_ms: None,
            system_init_ms: Some(10_000),
        };
        out.clear();
        decode_data_set(&t, &b, &ctx, &mut out);
        assert_eq!(
            (out[0].first_ns, out[0].last_ns),
            (11_000 * 1_000_000, 13_000 * 1_000_000)
        );
        // Uptime wrapped between the flow start and the export.
        let mut b2 = b.clone();
        b2[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        b2[12..16].copy_from_slice(&5u32.to_be_bytes());
        let ctx = TimeContext {
            export_ms: 1_000_000,
            sys_uptime_ms: Some(9),
            system_init_ms: None,
        };
        out.clear();
        decode_data_set(&t, &b2, &ctx, &mut out);
        assert_eq!(out[0].first_ns, (1_000_000 - 10) * 1_000_000);
        assert_eq!(out[0].last_ns, (1_000_000 - 4) * 1_000_000);
    }

    #[test]
    fn truncated_record_is_malformed_and_padding_is_not() {
        let t = Template {
            id: 256,
            scope_fields: 0,
            options: false,
            fields: vec![f(8, 4), f(12, 4), f(82, VARIABLE_LENGTH)],
        };
        let mut out = Vec::new();
        let tally = decode_data_set(
            &t,
            &[1, 1, 1, 1, 2, 2, 2, 2, 9, 0],
            &TimeContext::default(),
            &mut out,
        );
        assert!(tally.malformed);
        assert!(out.is_empty());
        let tally = decode_data_set(
            &t,
            &[1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0],
            &TimeContext::default(),
            &mut out,
        );
        assert_eq!((tally.records, tally.malformed), (1, false));
    }

    #[test]
    fn ntp_conversion() {
        assert_eq!(ntp_to_ns(2_208_988_800u64 << 32), Some(0));
        assert_eq!(
            ntp_to_ns((2_208_988_801u64 << 32) | 0x8000_0000),
            Some(1_500_000_000)
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(lens in proptest::collection::vec(prop_oneof![Just(VARIABLE_LENGTH), 0u16..20], 1..8),
                               ids in proptest::collection::vec(0u16..200, 8),
                               body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let fields = lens.iter().zip(ids.iter()).map(|(&l, &i)| f(i, l)).collect();
            let t = Template { id: 256, scope_fields: 0, options: false, fields };
            let mut out = Vec::new();
            let tally = decode_data_set(&t, &body, &TimeContext { export_ms: i64::MAX, sys_uptime_ms: Some(1), system_init_ms: Some(i64::MAX) }, &mut out);
            prop_assert!(tally.records as usize <= body.len());
        }
    }
}
