//! Flow tables in tunnelwatch's own schema (README, "Flows table"), so archived flows, or an
//! ISP's flow data converted to that schema, can be replayed through `analyze --flow-log`.
//!
//! Columns are found by name in the header; extra columns are ignored, so the CSV that
//! `tunnelwatch flows --format csv` or `analyze --tables csv` wrote reads back, and so does a
//! hand-made table with just the required columns:
//!
//! | required | meaning |
//! |---|---|
//! | `first_ts`, `last_ts` | RFC 3339 (`2024-02-17T17:02:00.123456Z`) or `YYYY-MM-DD hh:mm:ss[.frac]`, UTC |
//! | `transport` | `tcp`, `udp`, `icmp`, `gre`, `esp`, `ah` or `ipN` |
//! | `client_ip`, `client_port`, `server_ip`, `server_port` | endpoints (ports 0 when portless) |
//! | `packets_c2s`, `packets_s2c`, `bytes_c2s`, `bytes_s2c` | counters per direction |
//!
//! Optional: `outcome` (as written by tunnelwatch; default `established` when both directions
//! have packets, else `one_way`), and the label columns `protocol`, `application`, `provider`,
//! `obfuscated`, `family`, `confidence`, `evidence`, `server_name` (kept with a restored label,
//! so the flow's platform is told by name as when it was captured). A `protocol` that names a detector of this
//! build (or a token a detector reports) is restored with its confidence and the archived
//! evidence, from which it takes back the facts the statistics read ([`archived_fact`]: a DNS
//! `rcode`, a detector's `platform`, and the server name where the table has no column for
//! it); otherwise the flow gets what its IP protocol and server port support, marked
//! `port_only` (as flow exports are). Lines that do not parse are counted, never fatal.

use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;

use super::convert::label_for;
use super::nfdump_csv::parse_timestamp;
use super::FlowLogError;
use crate::csv_line::split_csv_line;
use crate::fingerprint::driver::{Match, PLATFORM_FACT, SERVER_NAME_FACT, UNKNOWN_PROTOCOL};
use crate::fingerprint::registry::REGISTRY;
use crate::fingerprint::{Confidence, Family, Label, Verdict};
use crate::flow::{EndReason, FlowRecord, Outcome, Transport, FLOW_COLUMNS};

/// Columns every flow table must have: [`FLOW_COLUMNS`] from `first_ts` to `bytes_s2c` (the
/// times, endpoints and counters; `id` is renumbered, the labels are optional).
pub const REQUIRED_COLUMNS: &[&str] = match FLOW_COLUMNS.split_at_checked(12) {
    Some((head, _)) => match head.split_first() {
        Some((_id, required)) => required,
        None => &[],
    },
    None => &[],
};

/// What reading a flow table found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStats {
    pub records: u64,
    pub bad_lines: u64,
    /// Line number and reason of the first line that did not parse.
    pub first_bad_line: Option<(u64, String)>,
    /// Flows whose archived `protocol` was restored (`unknown` included).
    pub labels_restored: u64,
    /// Flows labelled from IP protocol and port only (no `protocol`, or one this build has no
    /// detector for).
    pub labels_from_ports: u64,
}

impl TableStats {
    /// Counts one parsed row (numbering its flow and handing it to `each`) or one bad line.
    fn tally(
        &mut self,
        line: u64,
        row: Result<(FlowRecord, bool), &'static str>,
        each: &mut dyn FnMut(FlowRecord),
    ) {
        match row {
            Ok((mut flow, restored)) => {
                flow.id = self.records;
                each(flow);
                self.records += 1;
                if restored {
                    self.labels_restored += 1;
                } else {
                    self.labels_from_ports += 1;
                }
            }
            Err(reason) => {
                self.bad_lines += 1;
                if self.first_bad_line.is_none() {
                    self.first_bad_line = Some((line, reason.to_string()));
                }
            }
        }
    }
}

/// Column positions by name.
#[derive(Debug, Clone)]
pub struct TableColumns {
    required: [usize; REQUIRED_COLUMNS.len()],
    outcome: Option<usize>,
    protocol: Option<usize>,
    application: Option<usize>,
    provider: Option<usize>,
    obfuscated: Option<usize>,
    family: Option<usize>,
    confidence: Option<usize>,
    evidence: Option<usize>,
    server_name: Option<usize>,
}

impl TableColumns {
    /// Finds the columns in a header; `Err` names the first required column missing.
    pub fn from_header(names: &[String]) -> Result<TableColumns, String> {
        let find = |n: &str| names.iter().position(|c| c.trim().eq_ignore_ascii_case(n));
        let mut required = [0; REQUIRED_COLUMNS.len()];
        for (slot, name) in required.iter_mut().zip(REQUIRED_COLUMNS) {
            *slot = find(name).ok_or_else(|| format!("no column `{name}` in the header"))?;
        }
        Ok(TableColumns {
            required,
            outcome: find("outcome"),
            protocol: find("protocol"),
            application: find("application"),
            provider: find("provider"),
            obfuscated: find("obfuscated"),
            family: find("family"),
            confidence: find("confidence"),
            evidence: find("evidence"),
            server_name: find("server_name"),
        })
    }
}

/// True when a header line looks like a tunnelwatch flow table (all required columns).
pub fn is_flow_table_header(line: &str) -> bool {
    split_csv_line(line).is_ok_and(|names| TableColumns::from_header(&names).is_ok())
}

fn parse_ts(s: &str) -> Option<i64> {
    // RFC 3339 as tunnelwatch writes it (a trailing `Z`, UTC).
    parse_timestamp(s)
}

fn parse_transport(s: &str, ipv6: bool) -> Option<(Transport, u8)> {
    let proto = match s.trim().to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "icmp" if ipv6 => 58,
        "icmp" => 1,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        other => other.strip_prefix("ip")?.parse().ok()?,
    };
    Some((Transport::from_ip_proto(proto), proto))
}

fn parse_outcome(s: &str) -> Option<Outcome> {
    Some(match s.trim() {
        "established" => Outcome::Established,
        "completed" => Outcome::Completed,
        "reset_after_syn" => Outcome::ResetAfterSyn,
        "reset_after_client_data" => Outcome::ResetAfterClientData,
        "reset_after_server_data" => Outcome::ResetAfterServerData,
        "reset_by_client" => Outcome::ResetByClient,
        "no_reply" => Outcome::NoReply,
        "one_way" => Outcome::OneWay,
        _ => return None,
    })
}

fn parse_confidence(s: &str) -> Option<Confidence> {
    Some(match s.trim() {
        "port_only" => Confidence::PortOnly,
        "endpoint_list" => Confidence::EndpointList,
        "statistical" => Confidence::Statistical,
        "one_message" => Confidence::OneMessage,
        "both_directions" => Confidence::BothDirections,
        _ => return None,
    })
}

fn parse_family(s: &str) -> Option<Family> {
    Some(match s.trim() {
        "vpn" => Family::Vpn,
        "proxy" => Family::Proxy,
        "tor" => Family::Tor,
        "obfuscated" => Family::Obfuscated,
        "tunnel" => Family::Tunnel,
        "web" => Family::Web,
        "other" => Family::Other,
        _ => return None,
    })
}

/// Protocol tokens that detectors report under another spec's name (the spec that reports them).
const REPORTED_AS: &[(&str, &str)] = &[("shadowsocks", "fully_encrypted")];

/// The archived label, when its protocol is one this build knows.
fn restore_label(
    cols: &TableColumns,
    get: &dyn Fn(Option<usize>) -> Option<String>,
) -> Option<Label> {
    let protocol = get(cols.protocol)?;
    let protocol = protocol.trim();
    let evidence = get(cols.evidence).filter(|e| !e.trim().is_empty());
    let (spec, renamed) = match REGISTRY.iter().find(|s| s.name == protocol) {
        Some(spec) => (*spec, None),
        None if protocol == UNKNOWN_PROTOCOL => {
            // A detector that recognised a platform's own protocol (MTProto, WhatsApp) keeps
            // the flow `unknown` and introduces its evidence with its own name; a flow no
            // detector matched has no evidence, and is not restored.
            let decider = evidence.as_deref()?.split_once(':')?.0.trim();
            (
                *REGISTRY.iter().find(|s| s.name == decider)?,
                Some(UNKNOWN_PROTOCOL),
            )
        }
        None => {
            let (token, via) = REPORTED_AS.iter().find(|(t, _)| *t == protocol)?;
            (*REGISTRY.iter().find(|s| s.name == *via)?, Some(*token))
        }
    };
    let confidence = get(cols.confidence)
        .and_then(|c| parse_confidence(&c))
        .unwrap_or(Confidence::PortOnly);
    let mut verdict = Verdict::new(confidence).fact("source", "flow_table");
    // The name the archived flow asked for, so that its platform is told by name again: its
    // column, or in tables written before it, the name facts of the archived evidence.
    let name = match cols.server_name {
        Some(_) => get(cols.server_name)
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty()),
        None => evidence
            .as_deref()
            .and_then(archived_server_name)
            .map(str::to_string),
    };
    // What the statistics read of a live label: a DNS answer's code, which tells a platform's
    // DNS attempt a success or a failure, and the platform a detector recognised on the wire.
    let rcode = evidence
        .as_deref()
        .and_then(|e| archived_fact(e, "rcode", |c| c.is_ascii_digit()))
        .and_then(|r| r.parse::<i64>().ok());
    let platform = evidence
        .as_deref()
        .and_then(|e| {
            archived_fact(e, PLATFORM_FACT, |c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'
            })
        })
        .map(str::to_string);
    if let Some(evidence) = evidence {
        verdict = verdict.fact("archived_evidence", evidence);
    }
    if let Some(name) = name {
        verdict = verdict.fact(SERVER_NAME_FACT, name);
    }
    if let Some(rcode) = rcode {
        verdict = verdict.fact("rcode", rcode);
    }
    if let Some(platform) = platform {
        verdict = verdict.fact(PLATFORM_FACT, platform);
    }
    verdict.protocol = renamed;
    verdict.application = get(cols.application).and_then(|a| {
        crate::intel::APPLICATION_TOKENS
            .iter()
            .copied()
            .find(|t| *t == a.trim())
    });
    verdict.provider = get(cols.provider).and_then(|p| {
        let p = p.trim().to_string();
        crate::intel::NAME_RULES
            .iter()
            .filter_map(|r| r.provider)
            .chain(crate::intel::ORG_RULES.iter().filter_map(|r| r.provider))
            .find(|t| *t == p)
    });
    verdict.obfuscated = get(cols.obfuscated).is_some_and(|o| o.trim() == "true");
    verdict.family = get(cols.family)
        .and_then(|f| parse_family(&f))
        .filter(|f| *f != spec.family);
    Some(Label::merge(vec![Match { spec, verdict }]))
}

/// The server name in an archived evidence text, looked up as [`Label::server_name`] looks
/// up the facts of a live label: the first `sni`, else `host`, else `qname` ([`archived_fact`];
/// visible ASCII only, which a DNS question may use beyond a host name's letters: a wildcard
/// `*.teams.microsoft.com` was asked in the nDPI captures).
pub fn archived_server_name(evidence: &str) -> Option<&str> {
    let host_like = |c: u8| c.is_ascii_graphic() && c != b',' && c != b';';
    ["sni", "host", "qname"]
        .into_iter()
        .find_map(|key| archived_fact(evidence, key, host_like))
}

/// The value of the first fact named `key` in an archived evidence text (`tls: sni=api.x.com,
/// version=1.3; dns: ...`, as [`Label`]'s evidence is written: `spec: key=value, key=value;
/// spec: ...`), when every byte of it passes `allowed` and it is followed by the end of the
/// text or by the next fact or detector. A text value may hold the separators itself, and a
/// value cut at one would be another value: then there is none.
pub fn archived_fact<'a>(
    evidence: &'a str,
    key: &str,
    allowed: impl Fn(u8) -> bool,
) -> Option<&'a str> {
    let is_key = |text: &str, end: char| {
        text.find(end).is_some_and(|i| {
            i > 0
                && text[..i]
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        })
    };
    let mut from = 0;
    while let Some(at) = evidence.get(from..)?.find(key).map(|i| i + from) {
        from = at + key.len();
        let before = evidence.get(..at)?;
        let at_fact_start = before.ends_with(": ") || before.ends_with(", ");
        let Some(rest) = evidence.get(from..).and_then(|r| r.strip_prefix('=')) else {
            continue;
        };
        if !at_fact_start {
            continue;
        }
        let end = rest.find([',', ';']).unwrap_or(rest.len());
        let (value, after) = rest.split_at(end);
        let well_ended = after.is_empty()
            || after
                .strip_prefix(", ")
                .is_some_and(|next| is_key(next, '='))
            || after
                .strip_prefix("; ")
                .is_some_and(|next| is_key(next, ':'));
        let well_formed = !value.is_empty() && value.bytes().all(&allowed);
        // The first fact of this name decides, as for a live label.
        return (well_ended && well_formed).then_some(value);
    }
    None
}

/// One row as a [`FlowRecord`] (id 0) and whether its label was restored. Err is a short reason.
pub fn parse_row(
    cols: &TableColumns,
    fields: &[String],
) -> Result<(FlowRecord, bool), &'static str> {
    let get = |i: Option<usize>| i.and_then(|i| fields.get(i)).cloned();
    let req = |k: usize| {
        fields
            .get(cols.required[k])
            .map(String::as_str)
            .ok_or("too few columns")
    };
    let first_ts = parse_ts(req(0)?).ok_or("bad first_ts")?;
    let last_ts = parse_ts(req(1)?).ok_or("bad last_ts")?;
    let client_ip: IpAddr = req(3)?.trim().parse().map_err(|_| "bad client_ip")?;
    let server_ip: IpAddr = req(5)?.trim().parse().map_err(|_| "bad server_ip")?;
    let (transport, ip_proto) =
        parse_transport(req(2)?, client_ip.is_ipv6()).ok_or("bad transport")?;
    let port = |k: usize| req(k)?.trim().parse::<u16>().map_err(|_| "bad port");
    let count = |k: usize| req(k)?.trim().parse::<u64>().map_err(|_| "bad counter");
    let packets = [count(7)?, count(8)?];
    let bytes = [count(9)?, count(10)?];
    let outcome = get(cols.outcome).and_then(|o| parse_outcome(&o)).unwrap_or(
        if packets[0] > 0 && packets[1] > 0 {
            Outcome::Established
        } else {
            Outcome::OneWay
        },
    );
    let server_port = port(6)?;
    // An archived `unknown` is a verdict too (the detectors saw the flow and none matched),
    // kept as it was rather than guessed again from the port; an empty or missing `protocol`
    // gets the port's label, as a flow export does.
    let restored = restore_label(cols, &get).or_else(|| {
        get(cols.protocol)
            .is_some_and(|p| p.trim() == UNKNOWN_PROTOCOL)
            .then(Label::default)
    });
    let was_restored = restored.is_some();
    let label = restored.unwrap_or_else(|| label_for(transport, ip_proto, server_port));
    Ok((
        FlowRecord {
            id: 0,
            first_ts: first_ts.min(last_ts),
            last_ts: last_ts.max(first_ts),
            transport,
            ip_proto,
            client_ip,
            client_port: port(4)?,
            server_ip,
            server_port,
            packets,
            bytes,
            payload_bytes: super::convert::estimated_payload(
                transport,
                server_ip.is_ipv6(),
                packets,
                bytes,
            ),
            tcp_flags: [0, 0],
            outcome,
            end_reason: EndReason::EndOfInput,
            label,
        },
        was_restored,
    ))
}

/// Reads a flow table in CSV. A missing required column is an error; bad lines are counted.
pub fn read_flow_table_csv<R: BufRead>(
    reader: R,
) -> Result<(Vec<FlowRecord>, TableStats), FlowLogError> {
    super::collect_flows(|each| each_flow_table_csv_flow(reader, each))
}

/// [`read_flow_table_csv`] handing each flow to `each` as it is read (numbered from 0 in table
/// order), so a table of any length costs one flow at a time.
pub fn each_flow_table_csv_flow<R: BufRead>(
    reader: R,
    each: &mut dyn FnMut(FlowRecord),
) -> Result<TableStats, FlowLogError> {
    let mut stats = TableStats::default();
    let mut cols: Option<TableColumns> = None;
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = split_csv_line(line.trim_end_matches('\r')).ok();
        let Some(c) = &cols else {
            let names =
                parsed.ok_or_else(|| FlowLogError::NotFlowTable("unreadable header".into()))?;
            cols = Some(TableColumns::from_header(&names).map_err(FlowLogError::NotFlowTable)?);
            continue;
        };
        let row = parsed
            .ok_or("bad CSV quoting")
            .and_then(|f| parse_row(c, &f));
        stats.tally(n as u64 + 1, row, each);
    }
    if cols.is_none() {
        return Err(FlowLogError::NotFlowTable("empty input".into()));
    }
    Ok(stats)
}

/// A flow table already split into a header and rows (e.g. read from Parquet).
pub fn read_flow_table_rows(
    names: &[String],
    rows: &[Vec<String>],
) -> Result<(Vec<FlowRecord>, TableStats), FlowLogError> {
    let mut reader = FlowTableRows::new(names)?;
    super::collect_flows(|each| {
        reader.read(rows, each);
        Ok(reader.stats)
    })
}

/// Rows of a flow table already split into fields (a Parquet table read as text), taken a
/// slice at a time: flows are numbered, and bad rows counted, across the slices.
pub struct FlowTableRows {
    cols: TableColumns,
    rows_seen: u64,
    pub stats: TableStats,
}

impl FlowTableRows {
    /// Checks the column names (`names`) for a flow table's.
    pub fn new(names: &[String]) -> Result<Self, FlowLogError> {
        Ok(FlowTableRows {
            cols: TableColumns::from_header(names).map_err(FlowLogError::NotFlowTable)?,
            rows_seen: 0,
            stats: TableStats::default(),
        })
    }

    /// Parses the next rows, handing each flow to `each`.
    pub fn read(&mut self, rows: &[Vec<String>], each: &mut dyn FnMut(FlowRecord)) {
        for fields in rows {
            self.rows_seen += 1;
            self.stats
                .tally(self.rows_seen, parse_row(&self.cols, fields), each);
        }
    }
}

/// [`read_flow_table_csv`] on a file.
pub fn read_flow_table_csv_file(
    path: &Path,
) -> Result<(Vec<FlowRecord>, TableStats), FlowLogError> {
    let file = std::fs::File::open(path).map_err(|source| FlowLogError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    read_flow_table_csv(std::io::BufReader::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Two rows as `tunnelwatch flows --format csv` wrote them before the `server_name` and
    /// `platform` columns (evidence quoted: it has commas): older archives read back too.
    const TABLE: &str = "id,first_ts,last_ts,transport,client_ip,client_port,server_ip,server_port,packets_c2s,packets_s2c,bytes_c2s,bytes_s2c,outcome,protocol,application,provider,obfuscated,family,confidence,evidence
0,2024-02-17T17:02:00.000001Z,2024-02-17T17:05:00.5Z,udp,10.0.0.7,51820,198.51.100.4,2408,40,38,9000,8000,established,wireguard,warp,,false,vpn,both_directions,\"wireguard: handshake=initiation+response, reserved_bytes=nonzero_constant\"
1,2024-02-17T17:03:00Z,2024-02-17T17:03:01Z,tcp,10.0.0.8,40000,203.0.113.9,443,3,0,180,0,no_reply,unknown,,,false,other,,
";

    #[test]
    fn reads_back_what_tunnelwatch_writes() {
        let (flows, stats) = read_flow_table_csv(TABLE.as_bytes()).expect("table");
        assert_eq!(stats.records, 2);
        assert_eq!(stats.bad_lines, 0);
        // The WireGuard label, and the `unknown` one.
        assert_eq!(stats.labels_restored, 2);
        let wg = &flows[0];
        assert_eq!(wg.label.protocol, "wireguard");
        assert_eq!(wg.label.application, Some("warp"));
        assert_eq!(wg.label.family, Family::Vpn);
        assert_eq!(wg.label.confidence, Some(Confidence::BothDirections));
        assert_eq!(wg.transport, Transport::Udp);
        assert_eq!(wg.packets, [40, 38]);
        assert_eq!(wg.last_ts - wg.first_ts, 180_499_999_000);
        assert_eq!(flows[1].outcome, Outcome::NoReply);
        assert_eq!(flows[1].label.protocol, "unknown");
    }

    /// A table of this version's columns: the archived server name comes back, and with it the
    /// platform by name (the server address is in no platform's prefixes).
    #[test]
    fn an_archived_server_name_tells_the_platform_again() {
        let table = "first_ts,last_ts,transport,client_ip,client_port,server_ip,server_port,packets_c2s,packets_s2c,bytes_c2s,bytes_s2c,outcome,protocol,confidence,server_name,platform,evidence
2024-02-17T17:02:00Z,2024-02-17T17:02:09Z,tcp,10.0.0.7,50000,198.51.100.4,443,9,8,900,8000,established,tls,one_message, api.x.com ,x,\"tls: sni=api.x.com, version=1.3\"
2024-02-17T17:02:00Z,2024-02-17T17:02:09Z,tcp,10.0.0.7,50001,198.51.100.4,443,9,8,900,8000,established,tls,one_message,,,
";
        let (flows, stats) = read_flow_table_csv(table.as_bytes()).expect("table");
        assert_eq!(stats.labels_restored, 2);
        assert_eq!(flows[0].label.server_name(), Some("api.x.com"));
        assert_eq!(flows[1].label.server_name(), None);
        let platforms = crate::intel::platforms::PlatformMatcher::default();
        let platform =
            |i: usize| crate::stats::flow_platform(&flows[i], &platforms).map(|p| p.name.as_str());
        assert_eq!(platform(0), Some("x"));
        assert_eq!(platform(1), None);
    }

    /// Tables written before the `server_name` column: the name comes from the archived
    /// evidence, as a live label gives it (SNI first, then Host, then the DNS question), and
    /// only where the text leaves no doubt where it ends. So do a DNS answer's code and a
    /// detector's platform, in any table.
    #[test]
    fn archived_evidence_gives_back_the_facts_the_statistics_read() {
        let cases = [
            ("tls: sni=api.x.com, version=1.3", Some("api.x.com")),
            ("http: method=GET, host=x.com:8080", Some("x.com:8080")),
            (
                "http_proxy: method=GET, target_host=a.example; http: host=b.example",
                Some("b.example"),
            ),
            ("dns: qname=twitter.com, rcode=0", Some("twitter.com")),
            (
                "dns: qname=*.teams.microsoft.com, qtype=1, rcode=3",
                Some("*.teams.microsoft.com"),
            ),
            // SNI before Host whatever their order, as `Label::server_name`.
            (
                "http: host=h.example; tls: sni=s.example",
                Some("s.example"),
            ),
            // Text that holds a separator of its own: no name rather than a cut one.
            ("tls: sni=x.com, evil, version=1.3", None),
            ("tls: sni=x.com; not a detector", None),
            ("tls: sni=a b.example", None),
            ("tls: sni=, version=1.3", None),
            ("tls: xsni=x.com", None),
            ("wireguard: handshake=initiation", None),
            ("", None),
        ];
        for (evidence, name) in cases {
            assert_eq!(archived_server_name(evidence), name, "{evidence}");
        }
        // The DNS answer's code and a detector's platform come back as the facts they were.
        let (flows, _) = read_flow_table_csv(
            "first_ts,last_ts,transport,client_ip,client_port,server_ip,server_port,packets_c2s,packets_s2c,bytes_c2s,bytes_s2c,outcome,protocol,confidence,evidence
2024-02-17T17:02:00Z,2024-02-17T17:02:01Z,udp,10.0.0.7,50000,198.51.100.53,53,1,1,40,80,established,dns,both_directions,\"dns: qname=x.com, qtype=1, rcode=3\"
2024-02-17T17:02:00Z,2024-02-17T17:02:09Z,tcp,10.0.0.7,50001,198.51.100.4,443,9,8,900,8000,established,mtproto,both_directions,\"mtproto: transport=abridged, platform=telegram\"
"
            .as_bytes(),
        )
        .expect("table");
        assert_eq!(flows[0].label.dns_rcode(), Some(3));
        assert_eq!(flows[0].label.server_name(), Some("x.com"));
        assert_eq!(flows[1].label.platform(), Some("telegram"));
    }

    /// A flow a platform's detector recognised stays `unknown` (the vocabulary has no token for
    /// a platform's own protocol) with that detector's evidence: it is restored, as the
    /// evidence's first detector, and keeps its platform. Any other `unknown` flow stays
    /// `unknown`, on a VPN's port too: the archive says the detectors saw it and none matched.
    #[test]
    fn unknown_flows_a_platform_detector_recognised_keep_their_platform() {
        let head = "first_ts,last_ts,transport,client_ip,client_port,server_ip,server_port,packets_c2s,packets_s2c,bytes_c2s,bytes_s2c,outcome,protocol,family,confidence,evidence\n";
        let rows = [
            "2022-06-12T10:46:41Z,2022-06-12T10:46:42Z,tcp,192.168.2.100,44804,179.60.195.49,5222,9,0,2013,0,no_reply,unknown,other,one_message,\"whatsapp: platform=whatsapp, version=5.2, client_frames=3\"",
            "2022-06-12T10:46:41Z,2022-06-12T10:46:42Z,tcp,192.168.2.100,44805,198.51.100.9,1723,1,0,60,0,no_reply,unknown,other,,",
            "2022-06-12T10:46:41Z,2022-06-12T10:46:42Z,tcp,192.168.2.100,44806,198.51.100.9,443,3,3,300,300,established,unknown,other,one_message,\"no_such_detector: platform=x\"",
        ];
        let table = head.to_string() + &rows.join("\n") + "\n";
        let (flows, stats) = read_flow_table_csv(table.as_bytes()).expect("table");
        assert_eq!(stats.labels_restored, 3);
        let whatsapp = &flows[0].label;
        assert_eq!(whatsapp.protocol, "unknown");
        assert_eq!(whatsapp.platform(), Some("whatsapp"));
        assert_eq!(
            whatsapp.matches.first().map(|m| m.spec.name),
            Some("whatsapp")
        );
        // PPTP's control port, but no detector matched the flow when it was captured.
        assert_eq!(flows[1].label.protocol, "unknown");
        assert_eq!(flows[2].label.protocol, "unknown");
        assert_eq!(flows[2].label.platform(), None);
        let (flows, _) = read_flow_table_csv(
            "first_ts,last_ts,transport,client_ip,client_port,server_ip,server_port,packets_c2s,packets_s2c,bytes_c2s,bytes_s2c,outcome,protocol,confidence,evidence
2024-02-17T17:02:00Z,2024-02-17T17:02:09Z,tcp,10.0.0.7,50000,198.51.100.4,443,9,8,900,8000,established,tls,one_message,\"tls: sni=api.x.com, version=1.3\"
"
            .as_bytes(),
        )
        .expect("table");
        assert_eq!(flows[0].label.server_name(), Some("api.x.com"));
        let platforms = crate::intel::platforms::PlatformMatcher::default();
        assert_eq!(
            crate::stats::flow_platform(&flows[0], &platforms).map(|p| p.name.as_str()),
            Some("x")
        );
    }

    proptest! {
        /// Any text: no panic, and a name found is host-like and in the text.
        #[test]
        fn archived_names_are_found_anywhere_safely(text in ".{0,80}") {
            if let Some(name) = archived_server_name(&text) {
                prop_assert!(text.contains(name));
                prop_assert!(!name.is_empty() && !name.contains([',', ';', ' ']));
            }
        }
    }

    #[test]
    fn minimal_isp_table_gets_port_and_protocol_labels() {
        let table = "first_ts,last_ts,transport,client_ip,client_port,server_ip,server_port,packets_c2s,packets_s2c,bytes_c2s,bytes_s2c
2024-02-17 17:00:00,2024-02-17 17:10:00,esp,10.1.1.1,0,192.0.2.1,0,500,480,600000,550000
2024-02-17 17:00:00,2024-02-17 17:10:00,udp,10.1.1.2,50000,192.0.2.2,1194,50,40,6000,5000
not,a,row
";
        let (flows, stats) = read_flow_table_csv(table.as_bytes()).expect("table");
        assert_eq!(stats.records, 2);
        assert_eq!(stats.bad_lines, 1);
        assert_eq!(stats.labels_from_ports, 2);
        assert_eq!(flows[0].label.protocol, "ipsec_esp");
        assert_eq!(flows[0].outcome, Outcome::Established);
        assert_eq!(flows[0].label.confidence, Some(Confidence::PortOnly));
    }

    #[test]
    fn headers_without_required_columns_are_refused_by_name() {
        let err = read_flow_table_csv("first_ts,last_ts,transport\n".as_bytes()).unwrap_err();
        assert!(err.to_string().contains("client_ip"), "{err}");
        assert!(read_flow_table_csv("".as_bytes()).is_err());
        assert!(!is_flow_table_header("ts,te,td,sa,da,sp,dp,pr"));
        assert!(is_flow_table_header(
            TABLE.lines().next().unwrap_or_default()
        ));
    }

    #[test]
    fn required_columns_are_the_times_endpoints_and_counters() {
        assert_eq!(REQUIRED_COLUMNS.first(), Some(&"first_ts"));
        assert_eq!(REQUIRED_COLUMNS.last(), Some(&"bytes_s2c"));
        assert_eq!(REQUIRED_COLUMNS.len(), 11);
    }

    proptest! {
        #[test]
        fn arbitrary_lines_never_panic(lines in proptest::collection::vec("[ -~]{0,120}", 0..20)) {
            let mut text = TABLE.lines().next().unwrap_or_default().to_string();
            for l in &lines {
                text.push('\n');
                text.push_str(l);
            }
            let (flows, stats) = read_flow_table_csv(text.as_bytes()).expect("header is valid");
            prop_assert_eq!(flows.len() as u64, stats.records);
            prop_assert_eq!(stats.records + stats.bad_lines, lines.iter().filter(|l| !l.trim().is_empty()).count() as u64);
        }
    }
}
