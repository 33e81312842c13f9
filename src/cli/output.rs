//! Flow rows as a table, JSON lines or CSV; and the `explain` text.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::Value;

use super::FlowFormat;
use crate::flow::{FlowRecord, FLOW_COLUMNS};
use crate::intel::platforms::PlatformMatcher;
use crate::report::format_ts;

/// The `platform` field of a flow's row: the platform or control site the flow tried to reach
/// ([`crate::stats::flow_platform`]), or empty.
fn platform_of<'a>(r: &FlowRecord, platforms: &'a PlatformMatcher) -> &'a str {
    crate::stats::flow_platform(r, platforms).map_or("", |p| p.name.as_str())
}

/// One flow as serialised in `flows --format jsonl` (keys = [`FLOW_COLUMNS`], in that order).
#[derive(serde::Serialize)]
pub struct FlowRow {
    id: u64,
    first_ts: String,
    last_ts: String,
    transport: std::borrow::Cow<'static, str>,
    client_ip: std::net::IpAddr,
    client_port: u16,
    server_ip: std::net::IpAddr,
    server_port: u16,
    packets_c2s: u64,
    packets_s2c: u64,
    bytes_c2s: u64,
    bytes_s2c: u64,
    outcome: &'static str,
    protocol: &'static str,
    application: &'static str,
    provider: &'static str,
    obfuscated: bool,
    family: &'static str,
    confidence: &'static str,
    server_name: String,
    platform: String,
    evidence: String,
}

impl FlowRow {
    pub fn new(r: &FlowRecord, platforms: &PlatformMatcher) -> Self {
        FlowRow {
            id: r.id,
            first_ts: format_ts(r.first_ts),
            last_ts: format_ts(r.last_ts),
            transport: r.transport.name(),
            client_ip: r.client_ip,
            client_port: r.client_port,
            server_ip: r.server_ip,
            server_port: r.server_port,
            packets_c2s: r.packets[0],
            packets_s2c: r.packets[1],
            bytes_c2s: r.bytes[0],
            bytes_s2c: r.bytes[1],
            outcome: r.outcome.name(),
            protocol: r.label.protocol,
            application: r.label.application.unwrap_or(""),
            provider: r.label.provider.unwrap_or(""),
            obfuscated: r.label.obfuscated,
            family: r.label.family.name(),
            confidence: r.label.confidence.map_or("", |c| c.name()),
            server_name: r.label.server_name().unwrap_or("").to_string(),
            platform: platform_of(r, platforms).to_string(),
            evidence: r.label.evidence_text(),
        }
    }
}

/// One flow as a JSON value (keys = [`FLOW_COLUMNS`]).
pub fn flow_row_json(r: &FlowRecord, platforms: &PlatformMatcher) -> Value {
    serde_json::to_value(FlowRow::new(r, platforms)).unwrap_or(Value::Null)
}

fn row_strings(r: &FlowRecord, platform: &str) -> Vec<String> {
    vec![
        r.id.to_string(),
        format_ts(r.first_ts),
        format_ts(r.last_ts),
        r.transport.name().into_owned(),
        r.client_ip.to_string(),
        r.client_port.to_string(),
        r.server_ip.to_string(),
        r.server_port.to_string(),
        r.packets[0].to_string(),
        r.packets[1].to_string(),
        r.bytes[0].to_string(),
        r.bytes[1].to_string(),
        r.outcome.name().to_string(),
        r.label.protocol.to_string(),
        r.label.application.unwrap_or("").to_string(),
        r.label.provider.unwrap_or("").to_string(),
        r.label.obfuscated.to_string(),
        r.label.family.name().to_string(),
        r.label.confidence.map_or("", |c| c.name()).to_string(),
        r.label.server_name().unwrap_or("").to_string(),
        platform.to_string(),
        r.label.evidence_text(),
    ]
}

/// The reference CSV quoting that [`push_csv_field`] reproduces (the test oracle).
#[cfg(test)]
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Counts of flows per protocol token (for summaries).
pub fn protocol_counts(records: &[FlowRecord]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for r in records {
        count_protocol(&mut m, r.label.protocol);
    }
    m
}

/// Adds one flow of `protocol` to `counts`; the token is copied only the first time it is seen
/// (this runs once per finished flow, on the reading thread).
pub fn count_protocol(counts: &mut BTreeMap<String, u64>, protocol: &str) {
    match counts.get_mut(protocol) {
        Some(n) => *n += 1,
        None => {
            counts.insert(protocol.to_string(), 1);
        }
    }
}

/// Writes flows (already numbered and ordered) in the chosen format. `tunnelwatch flows`
/// renders its JSONL and CSV rows where the flows end instead ([`row_renderer`]).
pub fn write_flows<R: Borrow<FlowRecord>>(
    out: &mut impl Write,
    rows: &[R],
    format: FlowFormat,
    platforms: &PlatformMatcher,
) -> io::Result<()> {
    let render = match format {
        FlowFormat::Table => return write_table(out, rows, platforms),
        FlowFormat::Jsonl => render_jsonl,
        FlowFormat::Csv => {
            writeln!(out, "{}", FLOW_COLUMNS.join(","))?;
            render_csv
        }
    };
    let mut buf = Vec::new();
    for chunk in rows.chunks(RENDER_CHUNK) {
        buf.clear();
        render(chunk, platforms, &mut buf)?;
        out.write_all(&buf)?;
    }
    Ok(())
}

/// Rows rendered into one buffer before it is written.
const RENDER_CHUNK: usize = 1024;

/// The streamable row formats (one line per flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    Jsonl,
    Csv,
}

/// Renders rows (no CSV header) into `buf`.
#[cfg(test)]
pub fn render_rows<R: Borrow<FlowRecord>>(
    rows: &[R],
    format: RowFormat,
    platforms: &PlatformMatcher,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    match format {
        RowFormat::Jsonl => render_jsonl(rows, platforms, buf),
        RowFormat::Csv => render_csv(rows, platforms, buf),
    }
}

/// JSON lines written field by field into `buf`: byte for byte what serde_json makes of a
/// [`FlowRow`] (tested), without the row's strings. Rendering was a quarter of a one-thread
/// `flows` run while it built a `FlowRow` (seven allocations) per flow.
fn render_jsonl<R: Borrow<FlowRecord>>(
    rows: &[R],
    platforms: &PlatformMatcher,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    for r in rows {
        let r = r.borrow();
        push_id_prefix(buf, RowFormat::Jsonl, r.id);
        jsonl_fields(r, platform_of(r, platforms), buf)?;
    }
    Ok(())
}

/// The start of a row up to and including the comma after its id: `{"id":N,` or `N,`.
pub fn push_id_prefix(buf: &mut Vec<u8>, format: RowFormat, id: u64) {
    if format == RowFormat::Jsonl {
        buf.extend_from_slice(b"{\"id\":");
    }
    push_u64(buf, id);
    buf.push(b',');
}

/// The renderer of rows after their id prefix ([`push_id_prefix`]), newline included: what
/// can be rendered before a flow's number is known, on the thread that ended the flow.
pub fn row_renderer(
    format: RowFormat,
    platforms: std::sync::Arc<PlatformMatcher>,
) -> crate::pipeline::RowRenderer {
    // Writing into a `Vec` cannot fail: the `io::Result`s are those of `write!`'s signature.
    match format {
        RowFormat::Jsonl => std::sync::Arc::new(move |r, buf, _| {
            let (platform, tag) = attempt_of(r, &platforms);
            let _ = jsonl_fields(r, platform, buf);
            tag
        }),
        RowFormat::Csv => std::sync::Arc::new(move |r, buf, scratch| {
            let (platform, tag) = attempt_of(r, &platforms);
            let _ = csv_fields(r, platform, buf, scratch);
            tag
        }),
    }
}

/// The name of the platform a flow tried to reach (empty: none) and its attempt's tag.
fn attempt_of<'a>(
    r: &FlowRecord,
    platforms: &'a PlatformMatcher,
) -> (&'a str, Option<crate::stats::AttemptTag>) {
    match crate::stats::flow_attempt(r, platforms) {
        Some((p, result)) => (
            p.name.as_str(),
            crate::stats::AttemptTag::new(platforms, p, result),
        ),
        None => ("", None),
    }
}

/// A CSV row after its id prefix ([`push_id_prefix`]), newline included, for a flow of
/// `platform` (empty: none); `scratch` is reused space.
pub fn csv_row_fields(r: &FlowRecord, platform: &str, buf: &mut Vec<u8>, scratch: &mut String) {
    // Writing into a `Vec` cannot fail.
    let _ = csv_fields(r, platform, buf, scratch);
}

fn jsonl_fields(r: &FlowRecord, platform: &str, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.extend_from_slice(b"\"first_ts\":\"");
    push_ts(buf, r.first_ts);
    buf.extend_from_slice(b"\",\"last_ts\":\"");
    push_ts(buf, r.last_ts);
    buf.extend_from_slice(b"\",\"transport\":\"");
    push_json_escaped(buf, &r.transport.name());
    buf.extend_from_slice(b"\",\"client_ip\":\"");
    push_ip(buf, r.client_ip);
    buf.extend_from_slice(b"\",\"client_port\":");
    push_u64(buf, u64::from(r.client_port));
    buf.extend_from_slice(b",\"server_ip\":\"");
    push_ip(buf, r.server_ip);
    buf.extend_from_slice(b"\",\"server_port\":");
    push_u64(buf, u64::from(r.server_port));
    for (key, v) in [
        (&b",\"packets_c2s\":"[..], r.packets[0]),
        (b",\"packets_s2c\":", r.packets[1]),
        (b",\"bytes_c2s\":", r.bytes[0]),
        (b",\"bytes_s2c\":", r.bytes[1]),
    ] {
        buf.extend_from_slice(key);
        push_u64(buf, v);
    }
    let label = &r.label;
    for (key, v) in [
        (&b",\"outcome\":\""[..], r.outcome.name()),
        (b"\",\"protocol\":\"", label.protocol),
        (b"\",\"application\":\"", label.application.unwrap_or("")),
        (b"\",\"provider\":\"", label.provider.unwrap_or("")),
    ] {
        buf.extend_from_slice(key);
        push_json_escaped(buf, v);
    }
    buf.extend_from_slice(if label.obfuscated {
        b"\",\"obfuscated\":true,\"family\":\""
    } else {
        b"\",\"obfuscated\":false,\"family\":\""
    });
    push_json_escaped(buf, label.family.name());
    for (key, v) in [
        (
            &b"\",\"confidence\":\""[..],
            label.confidence.map_or("", |c| c.name()),
        ),
        (b"\",\"server_name\":\"", label.server_name().unwrap_or("")),
        (b"\",\"platform\":\"", platform),
    ] {
        buf.extend_from_slice(key);
        push_json_escaped(buf, v);
    }
    buf.extend_from_slice(b"\",\"evidence\":\"");
    label
        .write_evidence(&mut JsonEscaped(buf))
        .map_err(|_| io::Error::other("formatting evidence"))?;
    buf.extend_from_slice(b"\"}\n");
    Ok(())
}

/// CSV rows written field by field (same bytes as joining [`row_strings`] through
/// [`csv_field`], tested); `evidence` goes through one scratch string reused for all rows.
fn render_csv<R: Borrow<FlowRecord>>(
    rows: &[R],
    platforms: &PlatformMatcher,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    let mut evidence = String::new();
    for r in rows {
        let r = r.borrow();
        push_id_prefix(buf, RowFormat::Csv, r.id);
        csv_fields(r, platform_of(r, platforms), buf, &mut evidence)?;
    }
    Ok(())
}

fn csv_fields(
    r: &FlowRecord,
    platform: &str,
    buf: &mut Vec<u8>,
    evidence: &mut String,
) -> io::Result<()> {
    push_ts(buf, r.first_ts);
    buf.push(b',');
    push_ts(buf, r.last_ts);
    buf.push(b',');
    push_csv_field(buf, &r.transport.name());
    buf.push(b',');
    push_ip(buf, r.client_ip);
    buf.push(b',');
    push_u64(buf, u64::from(r.client_port));
    buf.push(b',');
    push_ip(buf, r.server_ip);
    buf.push(b',');
    push_u64(buf, u64::from(r.server_port));
    for v in [r.packets[0], r.packets[1], r.bytes[0], r.bytes[1]] {
        buf.push(b',');
        push_u64(buf, v);
    }
    let label = &r.label;
    for v in [
        r.outcome.name(),
        label.protocol,
        label.application.unwrap_or(""),
        label.provider.unwrap_or(""),
        if label.obfuscated { "true" } else { "false" },
        label.family.name(),
        label.confidence.map_or("", |c| c.name()),
        label.server_name().unwrap_or(""),
        platform,
    ] {
        buf.push(b',');
        push_csv_field(buf, v);
    }
    buf.push(b',');
    evidence.clear();
    label
        .write_evidence(evidence)
        .map_err(|_| io::Error::other("formatting evidence"))?;
    push_csv_field(buf, evidence);
    buf.push(b'\n');
    Ok(())
}

/// Decimal digits of `v` without the formatting machinery.
fn push_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(crate::decimal::digits(v, &mut [0; 20]));
}

/// An address as its `Display` writes it. IPv4 digit by digit: through `write!` the two
/// addresses of a row were 6 % of a one-thread run's instructions (callgrind, nDPI mix).
fn push_ip(buf: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                push_u64(buf, u64::from(octet));
            }
        }
        std::net::IpAddr::V6(v6) => {
            // Zero-compression and embedded IPv4 forms follow RFC 5952 in `Display`.
            let _ = write!(buf, "{v6}");
        }
    }
}

/// A timestamp as [`format_ts`] writes it.
fn push_ts(buf: &mut Vec<u8>, nanos: i64) {
    match crate::civil::ts_digits(nanos) {
        Some(digits) => buf.extend_from_slice(&digits),
        None => buf.extend_from_slice(format_ts(nanos).as_bytes()),
    }
}

/// A CSV field quoted as [`csv_field`] quotes it (RFC 4180: when it holds a comma, quote or
/// line break; quotes doubled).
fn push_csv_field(buf: &mut Vec<u8>, s: &str) {
    if !s.contains([',', '"', '\n', '\r']) {
        buf.extend_from_slice(s.as_bytes());
        return;
    }
    buf.push(b'"');
    for part in s.split_inclusive('"') {
        buf.extend_from_slice(part.as_bytes());
        if part.ends_with('"') {
            buf.push(b'"');
        }
    }
    buf.push(b'"');
}

/// JSON string contents (no quotes) with serde_json's escapes (RFC 8259 §7): `\"`, `\\`,
/// `\b \f \n \r \t`, other control characters as `\u00xx`; everything else as is (UTF-8).
fn push_json_escaped(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            let hex = |n: u8| HEX[usize::from(n & 0xf)];
            buf.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(b >> 4), hex(b)]);
        } else {
            buf.extend_from_slice(short);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

/// `fmt::Write` that appends JSON-escaped text, so evidence is escaped as it is formatted.
struct JsonEscaped<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for JsonEscaped<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        push_json_escaped(self.0, s);
        Ok(())
    }
}

fn write_table<R: Borrow<FlowRecord>>(
    out: &mut impl Write,
    rows: &[R],
    platforms: &PlatformMatcher,
) -> io::Result<()> {
    // A readable subset; the full set is in jsonl/csv.
    const COLS: &[(&str, usize)] = &[
        ("id", 0),
        ("first_ts", 1),
        ("transport", 3),
        ("client", 4),
        ("server", 6),
        ("pkts c>s/s>c", 8),
        ("outcome", 12),
        ("protocol", 13),
        ("app/provider", 14),
        ("family", 17),
        ("confidence", 18),
        ("platform", 20),
        ("evidence", 21),
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let r = r.borrow();
            let s = row_strings(r, platform_of(r, platforms));
            let app = match (s[14].as_str(), s[15].as_str()) {
                ("", "") => String::new(),
                (a, "") => a.to_string(),
                ("", p) => p.to_string(),
                (a, p) => format!("{a}/{p}"),
            };
            let mut evidence = s[21].clone();
            if evidence.chars().count() > 80 {
                evidence = evidence.chars().take(77).collect::<String>() + "...";
            }
            COLS.iter()
                .map(|(name, i)| match *name {
                    "client" => format!("{}:{}", s[4], s[5]),
                    "server" => format!("{}:{}", s[6], s[7]),
                    "pkts c>s/s>c" => format!("{}/{}", s[8], s[9]),
                    "app/provider" => app.clone(),
                    "evidence" => evidence.clone(),
                    _ => s[*i].clone(),
                })
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = COLS.iter().map(|(n, _)| n.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let last = COLS.len() - 1;
    let header: Vec<&str> = COLS.iter().map(|(n, _)| *n).collect();
    for row in
        std::iter::once(header).chain(cells.iter().map(|r| r.iter().map(String::as_str).collect()))
    {
        for (i, c) in row.iter().enumerate() {
            if i == last {
                writeln!(out, "{c}")?;
            } else {
                write!(out, "{c:<w$}  ", w = widths[i])?;
            }
        }
    }
    Ok(())
}

/// Full reasoning for one flow: its facts, each detector that matched, and why the label won.
/// `attempt` is the platform the flow tried to reach and how the attempt ended, as the
/// reachability series count it ([`crate::stats::flow_attempt`]).
pub fn explain(
    out: &mut impl Write,
    r: &FlowRecord,
    attempt: Option<(&str, crate::stats::AttemptResult)>,
) -> io::Result<()> {
    writeln!(
        out,
        "flow {}  {} {}:{} -> {}:{}",
        r.id,
        r.transport.name(),
        r.client_ip,
        r.client_port,
        r.server_ip,
        r.server_port
    )?;
    writeln!(
        out,
        "  time      {} .. {} ({:.3} s)",
        format_ts(r.first_ts),
        format_ts(r.last_ts),
        r.duration_secs()
    )?;
    writeln!(
        out,
        "  packets   {} to server, {} to client",
        r.packets[0], r.packets[1]
    )?;
    writeln!(
        out,
        "  bytes     {} to server, {} to client (payload {} / {})",
        r.bytes[0], r.bytes[1], r.payload_bytes[0], r.payload_bytes[1]
    )?;
    writeln!(
        out,
        "  outcome   {} (ended by {})",
        r.outcome.name(),
        r.end_reason.name()
    )?;
    writeln!(
        out,
        "  label     protocol={} application={} provider={} obfuscated={} family={} confidence={}",
        r.label.protocol,
        r.label.application.unwrap_or("-"),
        r.label.provider.unwrap_or("-"),
        r.label.obfuscated,
        r.label.family.name(),
        r.label.confidence.map_or("-", |c| c.name())
    )?;
    write!(
        out,
        "  target    server_name={} platform={}",
        r.label.server_name().unwrap_or("-"),
        attempt.map_or("-", |(p, _)| p)
    )?;
    match attempt {
        Some((_, result)) => writeln!(out, " attempt={}", result.name())?,
        None => writeln!(out)?,
    }
    if r.label.matches.is_empty() {
        writeln!(out, "  no detector matched")?;
    }
    for (i, m) in r.label.matches.iter().enumerate() {
        let role = if i == 0 { "decides" } else { "also" };
        writeln!(
            out,
            "  [{role}] {} (family {}, rank {}, confidence {}){}",
            m.name(),
            m.verdict.family.unwrap_or(m.spec.family).name(),
            m.spec.rank,
            m.verdict.confidence.name(),
            if m.verdict.roles_reversed {
                " roles reversed: capture began mid-flow"
            } else {
                ""
            }
        )?;
        for (k, v) in &m.verdict.evidence.0 {
            writeln!(out, "      {k} = {v}")?;
        }
    }
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::driver::Match;
    use crate::fingerprint::{Confidence, Label, Verdict};
    use crate::flow::{EndReason, Outcome, Transport};
    use proptest::prelude::*;

    fn record(id: u64, ts: i64, transport: Transport, text: &str) -> FlowRecord {
        let verdict = Verdict::new(Confidence::OneMessage)
            .fact("name", text.to_string())
            .fact("n", 7u32)
            .fact("sni", text.to_string());
        FlowRecord {
            id,
            first_ts: ts,
            last_ts: ts.saturating_add(1_500_000_123),
            transport,
            ip_proto: 6,
            client_ip: "2001:db8::1".parse().expect("v6"),
            client_port: 40_000,
            server_ip: std::net::IpAddr::from([192, 0, 2, 7]),
            server_port: 22,
            packets: [3, u64::MAX],
            bytes: [0, 1_000_000_007],
            payload_bytes: [0, 0],
            tcp_flags: [0, 0],
            outcome: Outcome::NoReply,
            end_reason: EndReason::IdleTimeout,
            label: Label {
                protocol: "ssh",
                application: Some("tinc"),
                provider: None,
                obfuscated: id % 2 == 0,
                confidence: Some(Confidence::OneMessage),
                matches: vec![
                    Match {
                        spec: &crate::fingerprint::protocols::ssh::SPEC,
                        verdict: verdict.clone(),
                    },
                    Match {
                        spec: &crate::fingerprint::protocols::ssh::SPEC,
                        verdict: Verdict::new(Confidence::PortOnly),
                    },
                ],
                ..Label::default()
            },
        }
    }

    /// Platforms where the test flows' server address makes them one (`quote "and, \\`), and
    /// where the name `plain` does (`x`).
    fn platforms() -> PlatformMatcher {
        let mut m = PlatformMatcher::default();
        m.load_user("odd \"name\" \\,false,,192.0.2.0/24\nx,false,plain,\n")
            .expect("valid definitions");
        m
    }

    /// The reference rendering: serde_json on a `FlowRow`, and the joined CSV fields.
    fn reference(rows: &[FlowRecord]) -> (Vec<u8>, Vec<u8>) {
        let (mut json, mut csv) = (Vec::new(), Vec::new());
        let platforms = platforms();
        for r in rows {
            serde_json::to_writer(&mut json, &FlowRow::new(r, &platforms)).expect("serde");
            json.push(b'\n');
            let fields: Vec<String> = row_strings(r, platform_of(r, &platforms))
                .iter()
                .map(|f| csv_field(f))
                .collect();
            csv.extend_from_slice(fields.join(",").as_bytes());
            csv.push(b'\n');
        }
        (json, csv)
    }

    fn rendered(rows: &[FlowRecord]) -> (Vec<u8>, Vec<u8>) {
        let (mut json, mut csv) = (Vec::new(), Vec::new());
        let platforms = platforms();
        render_rows(rows, RowFormat::Jsonl, &platforms, &mut json).expect("jsonl");
        render_rows(rows, RowFormat::Csv, &platforms, &mut csv).expect("csv");
        (json, csv)
    }

    #[test]
    fn direct_rows_match_serde_and_joined_fields_on_awkward_text() {
        let rows = vec![
            record(0, 0, Transport::Tcp, "plain"),
            record(
                1,
                -1_000,
                Transport::Other(99),
                "quote \" and \\ back, comma",
            ),
            record(
                2,
                i64::MAX,
                Transport::Udp,
                "line\nbreak\r\t\u{1}\u{1f}\u{7f} é 漢",
            ),
            record(u64::MAX, i64::MIN, Transport::Icmp, ""),
        ];
        let (json, csv) = rendered(&rows);
        let (want_json, want_csv) = reference(&rows);
        assert_eq!(
            String::from_utf8_lossy(&json),
            String::from_utf8_lossy(&want_json)
        );
        let json = String::from_utf8_lossy(&json);
        // The platform by name (`plain`), and by address, with characters to escape.
        assert!(
            json.contains(r#""server_name":"plain","platform":"x","#),
            "{json}"
        );
        assert!(json.contains(r#""platform":"odd \"name\" \\","#), "{json}");
        assert_eq!(
            String::from_utf8_lossy(&csv),
            String::from_utf8_lossy(&want_csv)
        );
    }

    proptest! {
        #[test]
        fn direct_rows_match_the_reference_for_any_text(
            text in any::<String>(),
            ts in any::<i64>(),
            id in any::<u64>(),
            proto in any::<u8>(),
            v4 in any::<u32>(),
            v6 in any::<u128>(),
            v4_client in any::<bool>(),
        ) {
            let mut row = record(id, ts, Transport::from_ip_proto(proto), &text);
            let (v4, v6) = (
                std::net::IpAddr::from(std::net::Ipv4Addr::from(v4)),
                std::net::IpAddr::from(std::net::Ipv6Addr::from(v6)),
            );
            (row.client_ip, row.server_ip) = if v4_client { (v4, v6) } else { (v6, v4) };
            let rows = [row];
            prop_assert_eq!(rendered(&rows), reference(&rows));
        }
    }
}
