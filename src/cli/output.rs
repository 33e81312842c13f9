//! Flow rows as a table, JSON lines or CSV; and the `explain` text.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::Value;

use super::FlowFormat;
use crate::flow::{FlowRecord, FLOW_COLUMNS};
use crate::report::format_ts;

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
    evidence: String,
}

impl From<&FlowRecord> for FlowRow {
    fn from(r: &FlowRecord) -> Self {
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
            evidence: r.label.evidence_text(),
        }
    }
}

/// One flow as a JSON value (keys = [`FLOW_COLUMNS`]).
pub fn flow_row_json(r: &FlowRecord) -> Value {
    serde_json::to_value(FlowRow::from(r)).unwrap_or(Value::Null)
}

fn row_strings(r: &FlowRecord) -> Vec<String> {
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
        r.label.evidence_text(),
    ]
}

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
        *m.entry(r.label.protocol.to_string()).or_insert(0) += 1;
    }
    m
}

/// Writes flows (already numbered and ordered) in the chosen format.
pub fn write_flows(
    out: &mut impl Write,
    rows: &[FlowRecord],
    format: FlowFormat,
) -> io::Result<()> {
    write_flows_threads(out, rows, format, 1)
}

/// Rows rendered per chunk when rendering on several threads.
const RENDER_CHUNK: usize = 4096;

/// [`write_flows`] with JSONL and CSV rows rendered on up to `threads` threads, a chunk of rows
/// each, and written in order: the bytes are identical for any `threads`. On a capture of a
/// million packets rendering is a sixth of a one-thread run, so leaving it serial would cap the
/// speed-up of `--threads 2` well below two.
pub fn write_flows_threads(
    out: &mut impl Write,
    rows: &[FlowRecord],
    format: FlowFormat,
    threads: usize,
) -> io::Result<()> {
    let render = match format {
        FlowFormat::Table => return write_table(out, rows),
        FlowFormat::Jsonl => render_jsonl,
        FlowFormat::Csv => {
            writeln!(out, "{}", FLOW_COLUMNS.join(","))?;
            render_csv
        }
    };
    let threads = threads.max(1);
    if threads == 1 || rows.len() <= RENDER_CHUNK {
        let mut buf = Vec::new();
        for chunk in rows.chunks(RENDER_CHUNK) {
            buf.clear();
            render(chunk, &mut buf)?;
            out.write_all(&buf)?;
        }
        return Ok(());
    }
    let chunks: Vec<&[FlowRecord]> = rows.chunks(RENDER_CHUNK).collect();
    for round in chunks.chunks(threads) {
        let rendered: Vec<io::Result<Vec<u8>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = round
                .iter()
                .map(|chunk| {
                    scope.spawn(move || {
                        let mut buf = Vec::new();
                        render(chunk, &mut buf).map(|()| buf)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        for buf in rendered {
            out.write_all(&buf?)?;
        }
    }
    Ok(())
}

/// The streamable row formats (one line per flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    Jsonl,
    Csv,
}

/// Renders rows (no CSV header) into `buf`.
pub fn render_rows(rows: &[FlowRecord], format: RowFormat, buf: &mut Vec<u8>) -> io::Result<()> {
    match format {
        RowFormat::Jsonl => render_jsonl(rows, buf),
        RowFormat::Csv => render_csv(rows, buf),
    }
}

fn render_jsonl(rows: &[FlowRecord], buf: &mut Vec<u8>) -> io::Result<()> {
    for r in rows {
        serde_json::to_writer(&mut *buf, &FlowRow::from(r))?;
        buf.push(b'\n');
    }
    Ok(())
}

fn render_csv(rows: &[FlowRecord], buf: &mut Vec<u8>) -> io::Result<()> {
    for r in rows {
        let fields: Vec<String> = row_strings(r).iter().map(|f| csv_field(f)).collect();
        writeln!(buf, "{}", fields.join(","))?;
    }
    Ok(())
}

fn write_table(out: &mut impl Write, rows: &[FlowRecord]) -> io::Result<()> {
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
        ("evidence", 19),
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let s = row_strings(r);
            let app = match (s[14].as_str(), s[15].as_str()) {
                ("", "") => String::new(),
                (a, "") => a.to_string(),
                ("", p) => p.to_string(),
                (a, p) => format!("{a}/{p}"),
            };
            let mut evidence = s[19].clone();
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
pub fn explain(out: &mut impl Write, r: &FlowRecord) -> io::Result<()> {
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
    if r.label.matches.is_empty() {
        writeln!(out, "  no detector matched")?;
    }
    for (i, m) in r.label.matches.iter().enumerate() {
        let role = if i == 0 { "decides" } else { "also" };
        writeln!(
            out,
            "  [{role}] {} (family {}, rank {}, confidence {}){}",
            m.verdict.protocol.unwrap_or(m.spec.name),
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
