//! Flow logs: the CSV that `nfdump -o csv` prints (checked against nfdump 1.7.1).
//!
//! Layout: one header line naming the columns, e.g.
//! `ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,...`, one line per flow,
//! then an optional footer: the line `Summary`, a header `flows,bytes,packets,...` and its
//! values. Columns are found by name, so their order and any extra ones do not matter.
//! Required: `ts te sa da sp dp pr ipkt ibyt`; used when present: `flg` (TCP flags as
//! `CEUAPRSF` letters or dots, or a `0x..` number), `opkt`/`obyt` (reverse direction of
//! bidirectional records, e.g. NSEL).
//!
//! Times: `YYYY-MM-DD HH:MM:SS[.mmm]`, read as **UTC**. nfdump prints local time, so run it
//! with `TZ=UTC` (e.g. `TZ=UTC nfdump -R DIR -o csv`) or the flows are shifted by the offset.
//! `pr` is a number or nfdump's protocol name (TCP, UDP, ICMP, ICMP6, GRE, ESP, AH, ...).
//!
//! Each line becomes one [`FlowRecord`], oriented and labelled like a collector record
//! (see the module docs of [`super`]); with `opkt`/`obyt` > 0 the reverse counts go in the
//! other direction and the outcome is `Established`.

use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;

use super::convert::{orient, to_flow_record};
use super::{ExportRecord, FlowLogError};
use crate::flow::{FlowRecord, Outcome};

/// Counters of one flow-log read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsvStats {
    /// Flow lines read (after the header, before the summary).
    pub lines: u64,
    pub records: u64,
    /// Lines that could not be read as a flow; the first one is kept as `(line number, reason)`.
    pub bad_lines: u64,
    pub first_bad_line: Option<(u64, String)>,
    /// The footer's totals, when present (to check the read against).
    pub summary_flows: Option<u64>,
    pub summary_bytes: Option<u64>,
    pub summary_packets: Option<u64>,
}

/// Column positions of the fields used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    ts: usize,
    te: usize,
    sa: usize,
    da: usize,
    sp: usize,
    dp: usize,
    pr: usize,
    ipkt: usize,
    ibyt: usize,
    flg: Option<usize>,
    opkt: Option<usize>,
    obyt: Option<usize>,
}

impl Columns {
    /// Reads the header line; Err names the first required column missing.
    pub fn from_header(line: &str) -> Result<Columns, String> {
        let names: Vec<&str> = line.trim().split(',').map(str::trim).collect();
        let find = |n: &str| names.iter().position(|c| c.eq_ignore_ascii_case(n));
        let need =
            |n: &str| find(n).ok_or_else(|| format!("no `{n}` column in header `{}`", line.trim()));
        Ok(Columns {
            ts: need("ts")?,
            te: need("te")?,
            sa: need("sa")?,
            da: need("da")?,
            sp: need("sp")?,
            dp: need("dp")?,
            pr: need("pr")?,
            ipkt: need("ipkt")?,
            ibyt: need("ibyt")?,
            flg: find("flg"),
            opkt: find("opkt"),
            obyt: find("obyt"),
        })
    }
}

/// nfdump's `YYYY-MM-DD HH:MM:SS[.fraction]` (or with `T`) as UTC Unix nanoseconds: the
/// crate's one timestamp parser ([`crate::civil::parse_timestamp`]), without its reason.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    crate::civil::parse_timestamp(s).ok()
}

/// nfdump's protocol names (its `-o csv` `pr` column) or a number.
pub fn parse_protocol(s: &str) -> Option<u8> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u8>() {
        return Some(n);
    }
    let n = match s.to_ascii_uppercase().as_str() {
        "ICMP" => 1,
        "IGMP" => 2,
        "IPIP" => 4,
        "TCP" => 6,
        "UDP" => 17,
        "IPV6" => 41,
        "RSVP" => 46,
        "GRE" => 47,
        "ESP" => 50,
        "AH" => 51,
        "ICMP6" | "IPV6-ICMP" => 58,
        "EIGRP" => 88,
        "OSPF" => 89,
        "PIM" => 103,
        "L2TP" => 115,
        "SCTP" => 132,
        _ => return None,
    };
    Some(n)
}

/// TCP flags as nfdump prints them: 8 positions `CEUAPRSF` (a dot when unset), or `0x..`.
pub fn parse_flags(s: &str) -> u8 {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u8::from_str_radix(hex, 16).unwrap_or(0);
    }
    if s.len() != 8 {
        return 0;
    }
    s.bytes().enumerate().fold(
        0u8,
        |acc, (i, b)| if b != b'.' { acc | (0x80 >> i) } else { acc },
    )
}

fn parse_count(s: &str) -> Option<u64> {
    let s = s.trim();
    s.parse::<u64>().ok().or_else(|| {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v as u64)
    })
}

/// One flow line as a [`FlowRecord`] (id 0). Err is a one-phrase reason.
pub fn parse_line(cols: &Columns, line: &str) -> Result<FlowRecord, &'static str> {
    let f: Vec<&str> = line.split(',').collect();
    let get = |i: usize| f.get(i).copied().ok_or("too few columns");
    let first_ns = parse_timestamp(get(cols.ts)?).ok_or("bad ts")?;
    let last_ns = parse_timestamp(get(cols.te)?).ok_or("bad te")?;
    let src: IpAddr = get(cols.sa)?.trim().parse().map_err(|_| "bad sa")?;
    let dst: IpAddr = get(cols.da)?.trim().parse().map_err(|_| "bad da")?;
    // ICMP rows may print the port as `type.code`; portless rows print 0.
    let port = |s: &str| {
        s.trim()
            .parse::<u16>()
            .or_else(|_| s.trim().parse::<f64>().map(|_| 0))
            .map_err(|_| "bad port")
    };
    let src_port = port(get(cols.sp)?)?;
    let dst_port = port(get(cols.dp)?)?;
    let ip_proto = parse_protocol(get(cols.pr)?).ok_or("bad pr")?;
    let packets = parse_count(get(cols.ipkt)?).ok_or("bad ipkt")?;
    let bytes = parse_count(get(cols.ibyt)?).ok_or("bad ibyt")?;
    let tcp_flags = cols
        .flg
        .and_then(|i| f.get(i))
        .map_or(0, |s| parse_flags(s));
    let rec = ExportRecord {
        src,
        dst,
        src_port,
        dst_port,
        ip_proto,
        packets,
        bytes,
        tcp_flags,
        first_ns,
        last_ns,
    };
    let mut flow = to_flow_record(&rec, 0);
    let opkt = cols
        .opkt
        .and_then(|i| f.get(i))
        .and_then(|s| parse_count(s))
        .unwrap_or(0);
    let obyt = cols
        .obyt
        .and_then(|i| f.get(i))
        .and_then(|s| parse_count(s))
        .unwrap_or(0);
    if opkt > 0 || obyt > 0 {
        // The sender's counts sit at index 0 unless the record was turned round.
        let sender = usize::from(orient(flow.transport, src_port, dst_port));
        let other = 1 - sender;
        flow.packets[other] = opkt;
        flow.bytes[other] = obyt;
        if packets > 0 && opkt > 0 {
            flow.outcome = Outcome::Established;
        }
    }
    Ok(flow)
}

/// Reads an nfdump CSV flow log. Lines that are not flows are counted (`bad_lines`), never
/// fatal; a missing or foreign header is an error.
pub fn read_nfdump_csv<R: BufRead>(reader: R) -> Result<(Vec<FlowRecord>, CsvStats), FlowLogError> {
    super::collect_flows(|each| each_nfdump_csv_flow(reader, each))
}

/// [`read_nfdump_csv`] handing each flow to `each` as it is read (numbered from 0 in log
/// order), so a log of any length costs one flow at a time.
pub fn each_nfdump_csv_flow<R: BufRead>(
    reader: R,
    each: &mut dyn FnMut(FlowRecord),
) -> Result<CsvStats, FlowLogError> {
    let mut stats = CsvStats::default();
    let mut cols: Option<Columns> = None;
    let mut in_summary = false;
    let mut summary_cols: Option<Vec<String>> = None;
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        let line_no = n as u64 + 1;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let Some(c) = &cols else {
            cols = Some(Columns::from_header(t).map_err(FlowLogError::NotNfdumpCsv)?);
            continue;
        };
        if in_summary {
            match &summary_cols {
                None => {
                    summary_cols = Some(
                        t.split(',')
                            .map(|s| s.trim().to_ascii_lowercase())
                            .collect(),
                    )
                }
                Some(names) => {
                    for (name, v) in names.iter().zip(t.split(',')) {
                        let v = parse_count(v);
                        match name.as_str() {
                            "flows" => stats.summary_flows = v,
                            "bytes" => stats.summary_bytes = v,
                            "packets" => stats.summary_packets = v,
                            _ => {}
                        }
                    }
                    summary_cols = Some(Vec::new());
                }
            }
            continue;
        }
        if t.eq_ignore_ascii_case("summary") {
            in_summary = true;
            continue;
        }
        stats.lines += 1;
        match parse_line(c, t) {
            Ok(mut flow) => {
                flow.id = stats.records;
                each(flow);
                stats.records += 1;
            }
            Err(reason) => {
                stats.bad_lines += 1;
                if stats.first_bad_line.is_none() {
                    stats.first_bad_line = Some((line_no, reason.to_string()));
                }
            }
        }
    }
    if cols.is_none() {
        return Err(FlowLogError::NotNfdumpCsv("empty input".into()));
    }
    Ok(stats)
}

/// [`read_nfdump_csv`] on a file.
pub fn read_nfdump_csv_file(path: &Path) -> Result<(Vec<FlowRecord>, CsvStats), FlowLogError> {
    let file = std::fs::File::open(path).map_err(|source| FlowLogError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    read_nfdump_csv(std::io::BufReader::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Output of `TZ=UTC nfdump -R DIR -o csv` (nfdump 1.7.1) after softflowd exported
    /// tests/fixtures/three_udp.pcap as NetFlow v9 to nfcapd (trailing columns shortened).
    const SAMPLE: &str = "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,svln,dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,cl,sl,al,ra,eng,exid,tr
2023-11-14 22:13:20,2023-11-14 22:13:20,0.000,10.0.0.1,10.0.0.2,40001,53,UDP,........,0,0,1,49,0,0,0,0,0,0,0,0,0,0,0.0.0.0,0.0.0.0,0,0,00:00:00:00:00:00,00:00:00:00:00:00,00:00:00:00:00:00,00:00:00:00:00:00,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,    0.000,    0.000,    0.000,127.0.0.1,0/0,1,2026-11-29 07:33:06.389
2023-11-14 22:13:19,2023-11-14 22:13:22,2.002,10.0.0.1,10.0.0.2,40000,53,UDP,........,0,0,2,98,0,0,0,0,0,0,0,0,0,0,0.0.0.0,0.0.0.0,0,0,00:00:00:00:00:00,00:00:00:00:00:00,00:00:00:00:00:00,00:00:00:00:00:00,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,    0.000,    0.000,    0.000,127.0.0.1,0/0,1,2026-11-29 07:33:06.389
Summary
flows,bytes,packets,avg_bps,avg_pps,avg_bpp
2,147,3,587,1,49
";

    #[test]
    fn reads_real_nfdump_output() {
        let (flows, st) = read_nfdump_csv(SAMPLE.as_bytes()).unwrap();
        assert_eq!((st.lines, st.records, st.bad_lines), (2, 2, 0));
        assert_eq!(
            (st.summary_flows, st.summary_bytes, st.summary_packets),
            (Some(2), Some(147), Some(3))
        );
        assert_eq!(flows[1].packets, [2, 0]);
        assert_eq!(flows[1].bytes, [98, 0]);
        assert_eq!((flows[1].client_port, flows[1].server_port), (40000, 53));
        assert_eq!(flows[1].first_ts, 1_699_999_999_000_000_000);
        assert_eq!(flows[1].last_ts, 1_700_000_002_000_000_000);
        assert_eq!(flows[1].outcome, Outcome::OneWay);
        assert_eq!(flows[0].id, 0);
        assert_eq!(flows[1].id, 1);
    }

    #[test]
    fn columns_by_name_flags_bidirectional_and_bad_lines() {
        let csv = "sa,da,sp,dp,pr,ts,te,ipkt,ibyt,opkt,obyt,flg\n\
                   10.0.0.1,192.0.2.1,50000,1723,TCP,2024-02-29 23:59:59.5,2024-03-01 00:00:01,10,1000,8,800,...AP.SF\n\
                   2001:db8::1,2001:db8::2,0,0,50,2024-01-01 00:00:00,2024-01-01 00:00:00,1,100,0,0,........\n\
                   10.0.0.1,not-an-ip,1,2,TCP,2024-01-01 00:00:00,2024-01-01 00:00:00,1,1,0,0,........\n";
        let (flows, st) = read_nfdump_csv(csv.as_bytes()).unwrap();
        assert_eq!((st.records, st.bad_lines), (2, 1));
        assert_eq!(st.first_bad_line, Some((4, "bad da".to_string())));
        let f = &flows[0];
        assert_eq!(f.label.protocol, "pptp");
        assert_eq!((f.packets, f.bytes), ([10, 8], [1000, 800]));
        assert_eq!(f.tcp_flags[0], 0x1b);
        assert_eq!(f.outcome, Outcome::Established);
        assert_eq!(f.first_ts, 1_709_251_199_500_000_000);
        assert_eq!(flows[1].label.protocol, "ipsec_esp");
    }

    #[test]
    fn refuses_foreign_files() {
        assert!(matches!(
            read_nfdump_csv("a,b,c\n1,2,3\n".as_bytes()),
            Err(FlowLogError::NotNfdumpCsv(_))
        ));
        assert!(matches!(
            read_nfdump_csv("".as_bytes()),
            Err(FlowLogError::NotNfdumpCsv(_))
        ));
    }

    #[test]
    fn timestamps_and_fields() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(
            parse_timestamp("2000-03-01T00:00:00.001"),
            Some(951_868_800_001_000_000)
        );
        assert_eq!(parse_timestamp("2023-13-01 00:00:00"), None);
        assert_eq!(parse_timestamp("2023-01-01 00:00:00.x"), None);
        assert_eq!(parse_timestamp("garbage"), None);
        assert_eq!(parse_protocol("ICMP6"), Some(58));
        assert_eq!(parse_protocol("132"), Some(132));
        assert_eq!(parse_protocol("FOO"), None);
        assert_eq!(parse_flags("C.....S."), 0x82);
        assert_eq!(parse_flags("0x12"), 0x12);
        assert_eq!(parse_flags("???"), 0);
    }

    proptest! {
        #[test]
        fn never_panics(line in "[0-9a-zA-Z:.,\\- ]{0,200}") {
            let cols = Columns::from_header("ts,te,sa,da,sp,dp,pr,ipkt,ibyt,flg,opkt,obyt").unwrap();
            let _ = parse_line(&cols, &line);
            let text = format!("ts,te,sa,da,sp,dp,pr,ipkt,ibyt\n{line}\nSummary\n{line}\n{line}\n");
            let _ = read_nfdump_csv(text.as_bytes());
        }
    }
}
