//! The UDP collector: NetFlow v5, v9 and IPFIX datagrams from any number of exporters.
//!
//! State is kept per *domain*: (exporter, version, id) where the id is the v5 engine
//! (`engine_type << 8 | engine_id`), the v9 source id (exporter address only, RFC 3954 §5.1) or
//! the IPFIX observation domain (exporter address and port: the UDP transport session,
//! RFC 7011 §10.3). A domain holds its templates, the next expected sequence number and the
//! IPFIX systemInitTimeMilliseconds last seen in an options record.
//!
//! Sequence numbers: a jump forward from the expected value is a gap, and its size is counted
//! as loss in the version's unit (v5: flows, v9: export packets, IPFIX: data records); a jump
//! backwards (more than 2^31 ahead) is counted as out-of-order / exporter restart.
//!
//! Data sets whose template is unknown are kept (up to [`MAX_PENDING_BYTES`] in all) and
//! decoded when the template arrives; beyond that bound they are dropped and counted.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::convert::to_flow_record;
use super::templates::{decode_data_set, Template, TemplateEvent, TemplateSet, TimeContext};
use super::{be_u16, ipfix, netflow_v5, netflow_v9, ExportRecord, FlowLogError, ParseError};
use crate::flow::FlowRecord;

/// Domains (exporter, version, id) tracked at most; datagrams of further domains are refused.
pub const MAX_DOMAINS: usize = 4096;
/// Templates per domain at most (a v9/IPFIX template id is 16 bits; real exporters use tens).
pub const MAX_TEMPLATES_PER_DOMAIN: usize = 1024;
/// Bytes of data sets buffered while their template is unknown, over all domains.
pub const MAX_PENDING_BYTES: usize = 4 << 20;
/// How often a blocked receive wakes up to look at the stop flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Identifies an exporter's template and sequence space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DomainKey {
    pub exporter: SocketAddr,
    pub version: u16,
    pub domain: u32,
}

#[derive(Debug, Default)]
struct Domain {
    templates: HashMap<u16, Template>,
    expected_seq: Option<u32>,
    system_init_ms: Option<i64>,
}

#[derive(Debug)]
struct PendingSet {
    body: Vec<u8>,
    ctx: TimeContext,
}

/// Counters of a collector run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectorStats {
    pub datagrams: u64,
    pub datagrams_v5: u64,
    pub datagrams_v9: u64,
    pub datagrams_ipfix: u64,
    /// Datagrams refused whole: unknown version, truncated header, wrong length, or from a
    /// domain beyond [`MAX_DOMAINS`].
    pub malformed_datagrams: u64,
    /// Sets / FlowSets / template records / data records that could not be parsed (the rest of
    /// that set or datagram was skipped).
    pub malformed_sets: u64,
    /// Flow records delivered, and their packet and byte totals.
    pub records: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Data records of options templates (exporter metadata, not flows).
    pub options_records: u64,
    /// Data records without both addresses (not flows).
    pub skipped_records: u64,
    /// Templates currently known, over all domains.
    pub templates: u64,
    pub templates_received: u64,
    pub templates_withdrawn: u64,
    /// Templates refused at [`MAX_TEMPLATES_PER_DOMAIN`].
    pub templates_refused: u64,
    /// Data sets that arrived before their template (buffered).
    pub unknown_template_sets: u64,
    /// Data records decoded from buffered sets once their template arrived.
    pub unknown_template_records_decoded: u64,
    /// Data sets dropped because the buffer was full.
    pub unknown_template_sets_dropped: u64,
    /// Data sets currently buffered.
    pub pending_sets: u64,
    /// Sets with a reserved id (v9 2..=255, IPFIX 0, 1, 4..=255), skipped.
    pub reserved_sets: u64,
    /// Sequence gaps (events) and what they lost, in each version's unit.
    pub sequence_gaps: u64,
    pub lost_v5_flows: u64,
    pub lost_v9_packets: u64,
    pub lost_ipfix_records: u64,
    /// Sequence numbers that went backwards (reordering or exporter restart).
    pub sequence_out_of_order: u64,
    /// The last problem seen, with the exporter's address (for the log).
    pub last_error: Option<String>,
}

/// The collector's decoding state, usable without a socket (tests, benchmarks, replays).
#[derive(Debug, Default)]
pub struct Collector {
    domains: HashMap<DomainKey, Domain>,
    pending: HashMap<(DomainKey, u16), Vec<PendingSet>>,
    pending_bytes: usize,
    stats: CollectorStats,
    next_id: u64,
}

impl Collector {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> &CollectorStats {
        &self.stats
    }

    /// Converts export records to [`FlowRecord`]s numbered in order of arrival.
    pub fn flow_records(&mut self, records: &[ExportRecord]) -> Vec<FlowRecord> {
        records
            .iter()
            .map(|r| {
                let id = self.next_id;
                self.next_id += 1;
                to_flow_record(r, id)
            })
            .collect()
    }

    fn error(&mut self, from: SocketAddr, e: &ParseError) {
        self.stats.last_error = Some(format!("{from}: {e}"));
    }

    /// Decodes one datagram from `from`, appending its flows to `out`. Never fails: problems
    /// are counted in [`CollectorStats`].
    pub fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8], out: &mut Vec<ExportRecord>) {
        self.stats.datagrams += 1;
        let before = out.len();
        match be_u16(bytes, 0) {
            Some(5) => {
                self.stats.datagrams_v5 += 1;
                self.v5(from, bytes, out);
            }
            Some(9) => {
                self.stats.datagrams_v9 += 1;
                self.v9(from, bytes, out);
            }
            Some(10) => {
                self.stats.datagrams_ipfix += 1;
                self.ipfix(from, bytes, out);
            }
            Some(v) => {
                self.stats.malformed_datagrams += 1;
                self.error(from, &ParseError::Version(v));
            }
            None => {
                self.stats.malformed_datagrams += 1;
                self.error(
                    from,
                    &ParseError::Truncated {
                        what: "datagram",
                        need: 2,
                        have: bytes.len(),
                    },
                );
            }
        }
        let new = out.get(before..).unwrap_or(&[]);
        self.stats.records += new.len() as u64;
        for r in new {
            self.stats.packets = self.stats.packets.saturating_add(r.packets);
            self.stats.bytes = self.stats.bytes.saturating_add(r.bytes);
        }
        self.stats.pending_sets = self.pending.values().map(|v| v.len() as u64).sum();
    }

    /// The domain's state, created if there is room.
    fn domain(&mut self, key: DomainKey) -> Option<&mut Domain> {
        if !self.domains.contains_key(&key) && self.domains.len() >= MAX_DOMAINS {
            return None;
        }
        Some(self.domains.entry(key).or_default())
    }

    /// Compares `seq` with the expected value; returns the loss (0 when in order or unknown).
    fn check_sequence(&mut self, key: DomainKey, seq: u32) -> u64 {
        let Some(expected) = self.domains.get(&key).and_then(|d| d.expected_seq) else {
            return 0;
        };
        if seq == expected {
            return 0;
        }
        let gap = seq.wrapping_sub(expected);
        if gap < 1 << 31 {
            self.stats.sequence_gaps += 1;
            u64::from(gap)
        } else {
            self.stats.sequence_out_of_order += 1;
            0
        }
    }

    fn advance_sequence(&mut self, key: DomainKey, seq: u32, by: Option<u32>) {
        if let Some(d) = self.domains.get_mut(&key) {
            d.expected_seq = by.map(|n| seq.wrapping_add(n));
        }
    }

    fn v5(&mut self, from: SocketAddr, bytes: &[u8], out: &mut Vec<ExportRecord>) {
        let before = out.len();
        let h = match netflow_v5::parse_v5(bytes, out) {
            Ok(h) => h,
            Err(e) => {
                self.stats.malformed_datagrams += 1;
                self.error(from, &e);
                return;
            }
        };
        let key = DomainKey {
            exporter: from,
            version: 5,
            domain: u32::from(h.engine_type) << 8 | u32::from(h.engine_id),
        };
        if self.domain(key).is_none() {
            out.truncate(before);
            self.stats.malformed_datagrams += 1;
            return;
        }
        self.stats.lost_v5_flows += self.check_sequence(key, h.flow_sequence);
        self.advance_sequence(key, h.flow_sequence, Some(u32::from(h.count)));
    }

    fn v9(&mut self, from: SocketAddr, bytes: &[u8], out: &mut Vec<ExportRecord>) {
        let msg = match netflow_v9::parse_v9(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed_datagrams += 1;
                self.error(from, &e);
                return;
            }
        };
        let h = msg.header;
        let key = DomainKey {
            exporter: SocketAddr::new(from.ip(), 0),
            version: 9,
            domain: h.source_id,
        };
        if self.domain(key).is_none() {
            self.stats.malformed_datagrams += 1;
            return;
        }
        self.stats.lost_v9_packets += self.check_sequence(key, h.sequence);
        let ctx = TimeContext {
            export_ms: i64::from(h.unix_secs) * 1000,
            sys_uptime_ms: Some(h.sys_uptime_ms),
            system_init_ms: None,
        };
        for set in &msg.sets {
            match set.id {
                0 => self.apply_templates(
                    from,
                    key,
                    netflow_v9::parse_template_flowset(set.body),
                    false,
                    out,
                ),
                1 => self.apply_templates(
                    from,
                    key,
                    netflow_v9::parse_options_template_flowset(set.body),
                    true,
                    out,
                ),
                2..=255 => self.stats.reserved_sets += 1,
                id => {
                    self.data_set(from, key, id, set.body, ctx, out);
                }
            }
        }
        if let Some(e) = &msg.error {
            self.stats.malformed_sets += 1;
            self.error(from, e);
        }
        // RFC 3954 §5.1: the sequence counts export packets.
        self.advance_sequence(key, h.sequence, Some(1));
    }

    fn ipfix(&mut self, from: SocketAddr, bytes: &[u8], out: &mut Vec<ExportRecord>) {
        let msg = match ipfix::parse_ipfix(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed_datagrams += 1;
                self.error(from, &e);
                return;
            }
        };
        let h = msg.header;
        let key = DomainKey {
            exporter: from,
            version: 10,
            domain: h.domain,
        };
        if self.domain(key).is_none() {
            self.stats.malformed_datagrams += 1;
            return;
        }
        self.stats.lost_ipfix_records += self.check_sequence(key, h.sequence);
        let ctx = TimeContext {
            export_ms: i64::from(h.export_secs) * 1000,
            sys_uptime_ms: None,
            system_init_ms: None,
        };
        // RFC 7011 §3.1: the sequence counts data records; unknown when a set could not be
        // decoded (its records cannot be counted).
        let mut data_records: Option<u32> = Some(0);
        for set in &msg.sets {
            match set.id {
                2 => self.apply_templates(
                    from,
                    key,
                    ipfix::parse_template_set(set.body, false),
                    false,
                    out,
                ),
                3 => self.apply_templates(
                    from,
                    key,
                    ipfix::parse_template_set(set.body, true),
                    true,
                    out,
                ),
                0..=255 => self.stats.reserved_sets += 1,
                id => {
                    let n = self.data_set(from, key, id, set.body, ctx, out);
                    data_records = data_records.zip(n).map(|(a, b)| a.wrapping_add(b as u32));
                }
            }
        }
        if let Some(e) = &msg.error {
            self.stats.malformed_sets += 1;
            self.error(from, e);
            data_records = None;
        }
        self.advance_sequence(key, h.sequence, data_records);
    }

    /// Decodes a data set, or buffers it when its template is unknown. Returns the records
    /// decoded (None when buffered or dropped).
    fn data_set(
        &mut self,
        from: SocketAddr,
        key: DomainKey,
        id: u16,
        body: &[u8],
        ctx: TimeContext,
        out: &mut Vec<ExportRecord>,
    ) -> Option<u64> {
        let dom = self.domains.get_mut(&key)?;
        let Some(t) = dom.templates.get(&id) else {
            if self.pending_bytes + body.len() <= MAX_PENDING_BYTES {
                self.pending_bytes += body.len();
                self.pending.entry((key, id)).or_default().push(PendingSet {
                    body: body.to_vec(),
                    ctx,
                });
                self.stats.unknown_template_sets += 1;
            } else {
                self.stats.unknown_template_sets_dropped += 1;
            }
            return None;
        };
        let mut ctx = ctx;
        ctx.system_init_ms = dom.system_init_ms;
        let tally = decode_data_set(t, body, &ctx, out);
        if let Some(init) = tally.system_init_ms {
            dom.system_init_ms = Some(init);
        }
        self.stats.options_records += tally.options_records;
        self.stats.skipped_records += tally.records - tally.options_records - tally.flows;
        if tally.malformed {
            self.stats.malformed_sets += 1;
            self.stats.last_error = Some(format!(
                "{from}: data record of template {id} runs past its set"
            ));
        }
        Some(tally.records)
    }

    fn apply_templates(
        &mut self,
        from: SocketAddr,
        key: DomainKey,
        set: TemplateSet,
        options: bool,
        out: &mut Vec<ExportRecord>,
    ) {
        if let Some(e) = &set.error {
            self.stats.malformed_sets += 1;
            self.error(from, e);
        }
        for event in set.events {
            let Some(dom) = self.domains.get_mut(&key) else {
                return;
            };
            match event {
                TemplateEvent::Define(t) => {
                    let id = t.id;
                    if dom.templates.len() >= MAX_TEMPLATES_PER_DOMAIN
                        && !dom.templates.contains_key(&id)
                    {
                        self.stats.templates_refused += 1;
                        continue;
                    }
                    if dom.templates.insert(id, t).is_none() {
                        self.stats.templates += 1;
                    }
                    self.stats.templates_received += 1;
                    self.replay_pending(from, key, id, out);
                }
                TemplateEvent::Withdraw(id) => {
                    if dom.templates.remove(&id).is_some() {
                        self.stats.templates -= 1;
                        self.stats.templates_withdrawn += 1;
                    }
                }
                TemplateEvent::WithdrawAll => {
                    let before = dom.templates.len();
                    dom.templates.retain(|_, t| t.options != options);
                    let gone = (before - dom.templates.len()) as u64;
                    self.stats.templates -= gone;
                    self.stats.templates_withdrawn += gone;
                }
            }
        }
    }

    fn replay_pending(
        &mut self,
        from: SocketAddr,
        key: DomainKey,
        id: u16,
        out: &mut Vec<ExportRecord>,
    ) {
        let Some(sets) = self.pending.remove(&(key, id)) else {
            return;
        };
        for s in sets {
            self.pending_bytes = self.pending_bytes.saturating_sub(s.body.len());
            if let Some(n) = self.data_set(from, key, id, &s.body, s.ctx, out) {
                self.stats.unknown_template_records_decoded += n;
            }
        }
    }
}

/// Listens on `listen` (UDP) until `stop` is set, handing each datagram's flows to
/// `on_records`. Returns the run's counters. Only binding and socket failures are errors.
pub fn collect(
    listen: SocketAddr,
    stop: Arc<AtomicBool>,
    on_records: impl FnMut(Vec<FlowRecord>),
) -> Result<CollectorStats, FlowLogError> {
    let socket = UdpSocket::bind(listen).map_err(|source| FlowLogError::Bind {
        addr: listen,
        source,
    })?;
    collect_on(socket, stop, on_records)
}

/// [`collect`] on an already bound socket (e.g. bound to port 0 to learn the port first).
/// The stop flag is looked at between datagrams and at least every [`POLL_INTERVAL`].
pub fn collect_on(
    socket: UdpSocket,
    stop: Arc<AtomicBool>,
    mut on_records: impl FnMut(Vec<FlowRecord>),
) -> Result<CollectorStats, FlowLogError> {
    use std::io::ErrorKind;
    socket.set_read_timeout(Some(POLL_INTERVAL))?;
    let mut collector = Collector::new();
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                out.clear();
                collector.handle_datagram(from, buf.get(..n).unwrap_or(&[]), &mut out);
                if !out.is_empty() {
                    on_records(collector.flow_records(&out));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock
                        | ErrorKind::TimedOut
                        | ErrorKind::Interrupted
                        | ErrorKind::ConnectionRefused
                        | ErrorKind::ConnectionReset
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(collector.stats.clone())
}

#[cfg(test)]
mod tests;
