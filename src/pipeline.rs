//! The offline pipeline: capture files -> decoded packets -> flows with labels.
//!
//! Contract: `packets_read == packets in flows + skipped (by reason) + filtered out`, for every
//! run. A file that cannot be opened is reported and the run goes on; a file that breaks mid-way
//! keeps every complete record and reports where it stopped.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::decode::filter::PacketFilter;
use crate::decode::{self, SkipCounts};
use crate::fingerprint::registry::REGISTRY;
use crate::flow::{FlowConfig, FlowCounters, FlowRecord, FlowTable};
use crate::ingest::{
    self, CaptureError, CaptureFormat, CaptureInput, CaptureReader, MappedCapture, OpenError,
};
use crate::stats::AttemptTag;

/// What became of one input file.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    pub format: Option<CaptureFormat>,
    pub packets: u64,
    /// Bytes of the (decompressed) capture stream consumed.
    pub bytes: u64,
    pub status: FileStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    Complete,
    /// Records up to the problem were used; the message names the offset.
    Partial(String),
    /// Nothing could be read.
    Failed(String),
}

/// Totals of a run, for the terminal summary and `summary.json`.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub files: Vec<FileReport>,
    pub packets_read: u64,
    pub skipped: SkipCounts,
    /// Packets that decoded but did not pass the run's filter ([`Pipeline::set_filter`]).
    pub packets_filtered: u64,
    /// The filter expression, when there was one.
    pub filter: Option<String>,
    pub flow_counters: FlowCounters,
    pub flows: u64,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
}

impl RunSummary {
    pub fn failed_files(&self) -> usize {
        self.files
            .iter()
            .filter(|f| matches!(f.status, FileStatus::Failed(_)))
            .count()
    }
    pub fn partial_files(&self) -> usize {
        self.files
            .iter()
            .filter(|f| matches!(f.status, FileStatus::Partial(_)))
            .count()
    }
}

/// Pipeline settings.
#[derive(Debug, Clone, Copy)]
pub struct PipelineConfig {
    pub flow: FlowConfig,
    /// Worker threads that own flow tables (1: everything on the calling thread).
    pub threads: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            flow: FlowConfig::default(),
            threads: 1,
        }
    }
}

/// Runs captures through decode and the flow table, one file after another.
///
/// With `threads > 1` the calling thread reads and decodes, and dispatches each packet by a hash
/// of its flow key to a worker that owns its own flow table and fingerprint state (no locks on
/// the hot path). The calling thread keeps a share of the flow hashes for a table of its own, so
/// on two cores both are busy (see `parallel::reader_share`). Flows are numbered after the run in order of (first packet time, endpoints),
/// so the output is identical for any number of threads (as long as the flow cap, which is
/// split between workers, is not reached).
pub struct Pipeline {
    sink: Sink,
    /// Where finished flows go: `None` collects them for [`Pipeline::finish`]; a callback gets
    /// them as they finish (unnumbered), so memory stays bounded by the flow cap.
    deliver: Option<Deliver>,
    collected: Vec<FlowRecord>,
    summary: RunSummary,
    /// Flows created so far, for progress displays (updated every few thousand packets).
    flows_seen: Arc<AtomicU64>,
    /// Only packets that pass it go into flows ([`Pipeline::set_filter`]).
    filter: Option<PacketFilter>,
    /// Reading stops once this is set ([`Pipeline::set_stop`]); nothing clears it.
    stop: Option<&'static AtomicBool>,
}

/// Receives finished flows, rendered as rows, as they leave the flow tables (see
/// [`Pipeline::with_rows`]).
pub type RowSink = Box<dyn FnMut(RowBatch)>;

/// Receives finished flows as they leave the flow tables (see [`Pipeline::with_records`]).
pub type RecordSink = Box<dyn FnMut(Vec<FlowRecord>)>;

enum Deliver {
    Rows(RowSink),
    Records(RecordSink),
}

/// Renders a finished flow's output row without its number, which is only known once every
/// flow is in (see `cli::output::row_renderer`); the `String` is scratch space, reused. Returns
/// the flow's attempt on a platform, if it made one, for the run's tally (the renderer
/// classifies the flow for the row's `platform` column anyway). Every thread that ends flows
/// holds a handle on it.
pub type RowRenderer =
    Arc<dyn Fn(&FlowRecord, &mut Vec<u8>, &mut String) -> Option<AttemptTag> + Send + Sync>;

/// Flows as they leave a flow table: kept as records, or rendered as rows on the spot.
///
/// Rendering where a flow ends puts that work on the thread that ended it (a worker, mostly)
/// while the reader still reads, instead of in a serial step after the run; and the record is
/// freed by the thread that allocated its label, which returning it to another thread's
/// allocator arena made several times slower (7 ms serial, 10-25 ms on two threads, for the
/// 75 k flows of the reference capture).
pub enum Finished {
    Records(Vec<FlowRecord>),
    Rows(RowBatch),
}

impl Finished {
    fn new(render: Option<RowRenderer>) -> Self {
        match render {
            None => Finished::Records(Vec::new()),
            Some(render) => Finished::Rows(RowBatch::new(render)),
        }
    }

    fn push(&mut self, mut r: FlowRecord) {
        match self {
            Finished::Records(records) => {
                // Kept until the run ends.
                r.label.shrink_to_fit();
                records.push(r);
            }
            Finished::Rows(rows) => rows.push(r),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Finished::Records(records) => records.len(),
            Finished::Rows(rows) => rows.rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the flows out, leaving an empty collection of the same kind.
    fn take(&mut self) -> Finished {
        match self {
            Finished::Records(records) => Finished::Records(std::mem::take(records)),
            Finished::Rows(rows) => Finished::Rows(rows.take()),
        }
    }
}

/// Finished flows rendered as rows: their bytes back to back, and where each row is.
pub struct RowBatch {
    render: RowRenderer,
    scratch: String,
    pub bytes: Vec<u8>,
    pub rows: Vec<RenderedRow>,
}

/// One rendered flow: its place in the output order and where its row is in
/// [`RowBatch::bytes`].
#[derive(Debug, Clone, Copy)]
pub struct RenderedRow {
    pub key: [u8; FLOW_ORDER_KEY_LEN],
    /// The flow's protocol label, for the run's counts.
    pub protocol: &'static str,
    /// The flow's attempt on a platform, for the run's counts.
    pub attempt: Option<AttemptTag>,
    pub start: usize,
    pub end: usize,
}

impl RowBatch {
    pub fn new(render: RowRenderer) -> Self {
        RowBatch {
            render,
            scratch: String::new(),
            bytes: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Renders `r` and drops it.
    pub fn push(&mut self, r: FlowRecord) {
        let start = self.bytes.len();
        let attempt = (self.render)(&r, &mut self.bytes, &mut self.scratch);
        self.rows.push(RenderedRow {
            key: flow_order_key(&r),
            protocol: r.label.protocol,
            attempt,
            start,
            end: self.bytes.len(),
        });
    }

    /// The row of `row` (one of this batch's).
    pub fn row(&self, row: &RenderedRow) -> &[u8] {
        self.bytes.get(row.start..row.end).unwrap_or_default()
    }

    /// Takes the rows out, keeping the scratch space.
    fn take(&mut self) -> RowBatch {
        // Up to half the buffer is growth room. Shrinking it here, on the thread that
        // allocated it, keeps that thread's allocator arena to itself: glibc locks the arena a
        // block came from, and the two threads then wait for each other.
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.shrink_to_fit();
        RowBatch {
            render: Arc::clone(&self.render),
            scratch: String::new(),
            bytes,
            rows: std::mem::take(&mut self.rows),
        }
    }
}

enum Sink {
    Local {
        table: Box<FlowTable>,
        finished: Finished,
        /// Most live flows at a sample point ([`Sink::sample_live`]).
        peak_live: u64,
    },
    Workers(Box<parallel::Dispatcher>),
}

impl Sink {
    /// Frames of a mapped file are about to come (workers then get offsets, not copies).
    fn begin_mapping(&mut self, mapped: &MappedCapture) {
        if let Sink::Workers(d) = self {
            d.set_mapping(Some(mapped));
        }
    }

    fn end_mapping(&mut self) {
        if let Sink::Workers(d) = self {
            d.set_mapping(None);
        }
    }

    /// The lowest offset of a mapped file that may still be read, given the reader is at
    /// `reader_offset`.
    fn low_water(&mut self, reader_offset: usize) -> usize {
        match self {
            Sink::Local { .. } => reader_offset,
            Sink::Workers(d) => d.low_water(reader_offset),
        }
    }

    /// Hands every flow finished so far to `out` (the workers' ones that have arrived).
    fn drain_finished(&mut self, out: &mut dyn FnMut(Finished)) {
        match self {
            Sink::Local { finished, .. } => {
                if !finished.is_empty() {
                    out(finished.take());
                }
            }
            Sink::Workers(d) => d.drain_finished(out),
        }
    }

    fn accept(&mut self, ts: i64, link_type: u16, frame: &[u8], pkt: &decode::DecodedPacket<'_>) {
        match self {
            Sink::Local {
                table, finished, ..
            } => table.process(ts, pkt, &mut |r| finished.push(r)),
            Sink::Workers(d) => d.dispatch(ts, link_type, frame, pkt),
        }
    }

    /// Counts the flows live in all tables together at this point of the run, after each
    /// table has swept at the run's clock, and keeps the most for the summary.
    ///
    /// A table sweeps only at its own packets, so on several threads one holding flows that
    /// timed out by the run's clock still counts them, until its next packet; swept first,
    /// the tables hold between them exactly the flows one table would. The count is taken
    /// every [`LIVE_SAMPLE_PACKETS`] packets read and at the end of the run, so the peak is
    /// the same for any number of threads and from run to run (short of the flow cap).
    fn sample_live(&mut self) {
        match self {
            Sink::Local {
                table,
                finished,
                peak_live,
            } => {
                table.sweep(&mut |r| finished.push(r));
                *peak_live = (*peak_live).max(table.live() as u64);
            }
            Sink::Workers(d) => d.sample_live(),
        }
    }
}

/// Packets read between two counts of the live flows ([`Sink::sample_live`]).
const LIVE_SAMPLE_PACKETS: u64 = 4096;

impl FileReport {
    /// A report for an input about to be read.
    pub fn new(path: &Path) -> Self {
        FileReport {
            path: path.to_path_buf(),
            format: None,
            packets: 0,
            bytes: 0,
            status: FileStatus::Complete,
        }
    }
}

impl Pipeline {
    pub fn new(config: PipelineConfig) -> Self {
        Self::build(config, None)
    }

    /// A pipeline that renders each finished flow with `render` on the thread that ended it
    /// and hands the rows to `sink` in batches, instead of keeping records for
    /// [`Pipeline::finish`] (which then returns none; the summary still counts them). The rows
    /// come unnumbered and in no particular order: the consumer sorts them by their keys
    /// (e.g. `cli::FlowSpill`).
    pub fn with_rows(config: PipelineConfig, render: RowRenderer, sink: RowSink) -> Self {
        Pipeline {
            deliver: Some(Deliver::Rows(sink)),
            ..Self::build(config, Some(render))
        }
    }

    /// A pipeline that hands finished flows to `sink` in batches as they leave their flow
    /// tables, unnumbered and in no particular order, instead of keeping them for
    /// [`Pipeline::finish`] (which then returns none; the summary still counts them).
    pub fn with_records(config: PipelineConfig, sink: RecordSink) -> Self {
        Pipeline {
            deliver: Some(Deliver::Records(sink)),
            ..Self::build(config, None)
        }
    }

    fn build(config: PipelineConfig, render: Option<RowRenderer>) -> Self {
        let flows_seen = Arc::new(AtomicU64::new(0));
        let sink = if config.threads <= 1 {
            Sink::Local {
                table: Box::new(FlowTable::new(config.flow, REGISTRY)),
                finished: Finished::new(render),
                peak_live: 0,
            }
        } else {
            Sink::Workers(Box::new(parallel::Dispatcher::start(
                config,
                render,
                Arc::clone(&flows_seen),
            )))
        };
        Pipeline {
            sink,
            deliver: None,
            collected: Vec::new(),
            summary: RunSummary::default(),
            flows_seen,
            filter: None,
            stop: None,
        }
    }

    /// Lets only packets that pass `filter` into flows; the others are counted as filtered
    /// out (`RunSummary::packets_filtered`). Set before the first file.
    pub fn set_filter(&mut self, filter: Option<PacketFilter>) {
        self.summary.filter = filter.as_ref().map(|f| f.expression().to_string());
        self.filter = filter;
    }

    /// Stops reading once `stop` is set (by a signal handler, say): the file being read is
    /// left at the next checkpoint (every 4096 packets), and later files are not opened.
    /// [`Pipeline::stopped`] then says so; the flows read so far can still be finished.
    pub fn set_stop(&mut self, stop: Option<&'static AtomicBool>) {
        self.stop = stop;
    }

    /// The flag of [`Pipeline::set_stop`] is set: reading stops (or stopped) at the next
    /// checkpoint.
    pub fn stopped(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// Moves finished flows to the sink (or the collection).
    fn deliver_finished(&mut self) {
        let Pipeline {
            sink,
            deliver,
            collected,
            summary,
            ..
        } = self;
        sink.drain_finished(&mut |finished| {
            summary.flows += finished.len() as u64;
            match (finished, deliver.as_mut()) {
                (Finished::Rows(rows), Some(Deliver::Rows(f))) => f(rows),
                (Finished::Records(records), Some(Deliver::Records(f))) => f(records),
                (Finished::Records(mut records), None) => collected.append(&mut records),
                // `build` makes rows exactly when the sink takes rows.
                (Finished::Rows(_), _) | (Finished::Records(_), Some(Deliver::Rows(_))) => {
                    debug_assert!(false, "finished flows of the wrong kind for the sink");
                }
            }
        });
    }

    /// A counter of the flows created so far (approximate while workers run), for progress.
    pub fn flows_seen(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.flows_seen)
    }

    /// Reads one capture file. `progress` is told the bytes and packets consumed since its last
    /// call (every few thousand packets).
    pub fn feed_file(&mut self, path: &Path, progress: &mut impl FnMut(u64, u64)) -> &FileReport {
        let mut report = FileReport::new(path);
        if self.stopped() {
            report.status = FileStatus::Failed("not read: the run was stopped".into());
            self.summary.files.push(report);
            return self.summary.files.last().expect("just pushed");
        }
        match ingest::open_input(path) {
            Err(OpenError::Io(e)) => report.status = FileStatus::Failed(e.to_string()),
            Err(OpenError::Capture(e)) => report.status = FileStatus::Failed(e.to_string()),
            Ok(CaptureInput::Stream(reader)) => self.feed_reader(reader, &mut report, progress),
            Ok(CaptureInput::Mapped(mapped)) => match CaptureReader::new(mapped.bytes()) {
                Err(e) => report.status = FileStatus::Failed(e.to_string()),
                Ok(reader) => {
                    self.sink.begin_mapping(&mapped);
                    self.feed_records(reader, &mut report, progress, Some(&mapped));
                    self.sink.end_mapping();
                }
            },
        }
        self.summary.files.push(report);
        self.summary.files.last().expect("just pushed")
    }

    /// Reads every record of an open capture, filling in `report`.
    pub fn feed_reader<R: BufRead>(
        &mut self,
        reader: CaptureReader<R>,
        report: &mut FileReport,
        progress: &mut impl FnMut(u64, u64),
    ) {
        self.feed_records(reader, report, progress, None);
    }

    /// [`Pipeline::feed_reader`]; with `mapped` (the file `reader` reads), pages already
    /// processed are released from the resident set as the reader advances.
    fn feed_records<R: BufRead>(
        &mut self,
        mut reader: CaptureReader<R>,
        report: &mut FileReport,
        progress: &mut impl FnMut(u64, u64),
        mapped: Option<&MappedCapture>,
    ) {
        report.format = Some(reader.format());
        let (mut last_progress, mut last_packets) = (0u64, 0u64);
        loop {
            match reader.next_packet() {
                Ok(Some(packet)) => {
                    report.packets += 1;
                    self.summary.packets_read += 1;
                    if self.summary.packets_read % LIVE_SAMPLE_PACKETS == 0 {
                        self.sink.sample_live();
                    }
                    let ts = packet.ts_nanos;
                    match decode::decode(packet.link_type, packet.data) {
                        Ok(decoded)
                            if self.filter.as_ref().is_some_and(|f| !f.matches(&decoded)) =>
                        {
                            self.summary.packets_filtered += 1;
                        }
                        Ok(decoded) => {
                            self.summary.first_ts =
                                Some(self.summary.first_ts.map_or(ts, |f| f.min(ts)));
                            self.summary.last_ts =
                                Some(self.summary.last_ts.map_or(ts, |l| l.max(ts)));
                            self.sink
                                .accept(ts, packet.link_type, packet.data, &decoded);
                        }
                        Err(reason) => self.summary.skipped.add(reason),
                    }
                    if report.packets % 4096 == 0 {
                        let off = reader.offset();
                        match &mut self.sink {
                            Sink::Local { table, .. } => self
                                .flows_seen
                                .store(table.counters().flows_created, Ordering::Relaxed),
                            Sink::Workers(d) => d.report_flows(&self.flows_seen),
                        }
                        self.deliver_finished();
                        if let Some(mapped) = mapped {
                            let low = self.sink.low_water(off as usize);
                            // SAFETY: below `low` no frame is borrowed: this thread's packet
                            // is done, and every batch holding such offsets was processed and
                            // returned by its worker (`Dispatcher::low_water`).
                            unsafe { mapped.release_before(low) };
                        }
                        progress(off - last_progress, report.packets - last_packets);
                        last_progress = off;
                        last_packets = report.packets;
                        if self.stopped() {
                            report.status = FileStatus::Partial(format!(
                                "stopped after {} packets",
                                report.packets
                            ));
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    report.status = partial_status(&e);
                    break;
                }
            }
        }
        report.bytes = reader.offset();
        progress(report.bytes - last_progress, report.packets - last_packets);
    }

    /// Ends all live flows; returns every flow, numbered in order of (first packet time,
    /// endpoints), and the run's totals.
    pub fn finish(mut self) -> (Vec<FlowRecord>, RunSummary) {
        if matches!(self.sink, Sink::Local { .. }) {
            // The dispatcher's `finish` takes its own last count.
            self.sink.sample_live();
        }
        let counters = match &mut self.sink {
            Sink::Local {
                table,
                finished,
                peak_live,
            } => {
                table.finish_all(&mut |r| finished.push(r));
                FlowCounters {
                    peak_live: *peak_live,
                    ..table.counters()
                }
            }
            Sink::Workers(d) => d.finish(),
        };
        self.deliver_finished();
        let mut records = std::mem::take(&mut self.collected);
        // Up to half the buffer is growth room; the caller keeps every record to the end.
        records.shrink_to_fit();
        number_flows(&mut records);
        self.summary.flow_counters = counters;
        (records, self.summary)
    }
}

/// Bytes of a [`flow_order_key`].
pub const FLOW_ORDER_KEY_LEN: usize = 63;

fn ip_order_bytes(ip: std::net::IpAddr) -> [u8; 17] {
    // `IpAddr` orders every V4 before every V6, then by octets.
    let mut k = [0u8; 17];
    match ip {
        std::net::IpAddr::V4(a) => k[1..5].copy_from_slice(&a.octets()),
        std::net::IpAddr::V6(a) => {
            k[0] = 1;
            k[1..].copy_from_slice(&a.octets());
        }
    }
    k
}

/// The output order of flows as bytes: comparing keys compares
/// `(first_ts, client_ip, client_port, server_ip, server_port, ip_proto, last_ts, id)`. One
/// definition for [`number_flows`] and for the on-disk sort of `tunnelwatch flows`.
pub fn flow_order_key(r: &FlowRecord) -> [u8; FLOW_ORDER_KEY_LEN] {
    let signed = |v: i64| ((v as u64) ^ (1 << 63)).to_be_bytes();
    let mut k = [0u8; FLOW_ORDER_KEY_LEN];
    k[0..8].copy_from_slice(&signed(r.first_ts));
    k[8..25].copy_from_slice(&ip_order_bytes(r.client_ip));
    k[25..27].copy_from_slice(&r.client_port.to_be_bytes());
    k[27..44].copy_from_slice(&ip_order_bytes(r.server_ip));
    k[44..46].copy_from_slice(&r.server_port.to_be_bytes());
    k[46] = r.ip_proto;
    k[47..55].copy_from_slice(&signed(r.last_ts));
    k[55..63].copy_from_slice(&r.id.to_be_bytes());
    k
}

/// Indexes of `records` in [`flow_order_key`] order (first packet time, endpoints, protocol):
/// an order that does not depend on which worker saw which flow.
pub fn flow_order(records: &[FlowRecord]) -> Vec<usize> {
    // Sorting small keys is several times faster than sorting the records themselves
    // (hundreds of bytes each). The time prefix as an integer settles most comparisons without
    // a byte compare of the whole key; the index makes every key unique, so an unstable sort
    // gives one order.
    type Keyed = (u64, [u8; FLOW_ORDER_KEY_LEN - 8], usize);
    let keyed = |(i, r): (usize, &FlowRecord)| -> Keyed {
        let k = flow_order_key(r);
        let (time, rest) = k.split_at(8);
        let mut tail = [0u8; FLOW_ORDER_KEY_LEN - 8];
        tail.copy_from_slice(rest);
        let mut head = [0u8; 8];
        head.copy_from_slice(time);
        (u64::from_be_bytes(head), tail, i)
    };
    let mut keys: Vec<Keyed> = records.iter().enumerate().map(keyed).collect();
    keys.sort_unstable();
    keys.into_iter().map(|(_, _, i)| i).collect()
}

/// `items` sorted, on two threads when `threads > 1` and there are enough of them (halves
/// sorted apart, then merged): sorting the rows of `tunnelwatch flows` is a serial step
/// between the flow tables and the output.
pub fn sort_on_threads<T: Ord + Send>(mut items: Vec<T>, threads: usize) -> Vec<T> {
    if threads < 2 || items.len() < 8192 {
        items.sort_unstable();
        return items;
    }
    let right_half = items.split_off(items.len() / 2);
    let mut left = items;
    let mut right = right_half;
    std::thread::scope(|scope| {
        scope.spawn(|| left.sort_unstable());
        right.sort_unstable();
    });
    let mut sorted = Vec::with_capacity(left.len() + right.len());
    let (mut a, mut b) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x <= y => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(item) => sorted.push(item),
            None => break,
        }
    }
    sorted
}

/// Sorts flows by [`flow_order`] and numbers them from 0. The records are moved into order
/// in place: a second buffer of every record was the largest allocation of an `analyze` run.
pub fn number_flows(records: &mut [FlowRecord]) {
    let order = flow_order(records);
    put_in_order(records, order);
    for (i, r) in records.iter_mut().enumerate() {
        r.id = i as u64;
    }
}

/// Rearranges `items` so that position `i` holds what was at `order[i]` (`order` must be a
/// permutation of the positions), swapping along each cycle of the permutation.
fn put_in_order<T>(items: &mut [T], mut order: Vec<usize>) {
    debug_assert_eq!(items.len(), order.len());
    for start in 0..items.len().min(order.len()) {
        let mut at = start;
        loop {
            let from = order[at];
            // Marks `at` as holding its final item.
            order[at] = at;
            if from == start || from == at || from >= items.len() {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

mod parallel {
    //! Dispatch of packets to worker threads by flow hash, in recycled batches.
    //!
    //! Frames of a memory-mapped file travel as offsets into the mapping; others (gzip,
    //! pipes, pcapng blocks assembled by the reader) are copied into the batch. Batches go back
    //! to the reader when processed, which tells it how far the mapping may be released.

    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use memmap2::Mmap;

    use super::{Finished, PipelineConfig, RowRenderer};
    use crate::decode::{self, DecodedPacket, DetachedPacket};
    use crate::fingerprint::registry::REGISTRY;
    use crate::fingerprint::FingerprintState;
    use crate::flow::{FlowConfig, FlowCounters, FlowRecord, FlowTable, MovedFlow, PacketKey};
    use crate::ingest::MappedCapture;

    const BATCH_PACKETS: usize = 4096;
    /// How many frames ahead a worker prefetches frame descriptors ([`run_frame_list`]).
    const FRAME_PREFETCH_AHEAD: usize = 8;
    /// Batches in flight per worker (bounds memory and keeps workers busy).
    const BATCHES_IN_FLIGHT: usize = 4;
    /// The last bytes of a mapped file (at most a sixteenth of it) go out in batches
    /// `TAIL_SHRINK` times smaller ([`batch_limit`]).
    const TAIL_BYTES: usize = 8 << 20;
    const TAIL_SHRINK: usize = 8;

    /// Frames per batch with `left` bytes of a `len`-byte mapped file still to read, where
    /// batches are `full` frames. Workers run up to [`BATCHES_IN_FLIGHT`] batches behind the
    /// reader, and when reading ends the reader waits for them (12 ms, median of 12 runs on
    /// the reference capture); with batches an eighth of the size over the last 8 MB, 2.6 ms.
    fn batch_limit(full: usize, left: usize, len: usize) -> usize {
        if left < (len / 16).min(TAIL_BYTES) {
            (full / TAIL_SHRINK).max(1)
        } else {
            full
        }
    }

    /// Where a frame's bytes are (in the batch's mapping or in its own byte buffer), with
    /// what the reader learnt of it.
    ///
    /// Every frame's `FrameRef` is written by the reader's core and read by a worker's, a cache
    /// line at a time, so it is kept small (96 bytes): the flow key is not carried (the worker
    /// rebuilds it from the packet with [`PacketKey::with_hash`]), only its hash.
    #[derive(Clone, Copy)]
    struct FrameRef {
        ts: i64,
        /// The run's clock when the reader read the frame: the latest timestamp so far, ahead
        /// of `ts` where the capture's time steps back ([`FlowTable::advance_clock`]).
        now: i64,
        start: usize,
        /// [`crate::flow::FlowKey::flow_hash`] of the packet's flow key.
        hash: u64,
        len: u32,
        link_type: u16,
        in_mapping: bool,
        /// The reader's decoding of the frame (`None`: decode it again).
        packet: Option<DetachedPacket>,
    }

    struct Batch {
        /// The mapped file that `in_mapping` frames point into.
        mapping: Option<Arc<Mmap>>,
        /// Copied frames, back to back.
        bytes: Vec<u8>,
        frames: Vec<FrameRef>,
        /// Lowest mapping offset of any frame (`usize::MAX`: none).
        lowest_offset: usize,
        /// Sent to a worker since it was last recycled.
        sent: bool,
        /// Flows handed over by the reader, taken in before any frame of this batch.
        adopted: Vec<MovedFlow>,
        /// Fingerprint states of moved flows, for the thread that allocated them to drop
        /// ([`FingerprintState::rehome`]): the worker's, of flows it gave back, on the way to
        /// it; the reader's, of flows it handed over, on the way back.
        originals: Vec<FingerprintState>,
        /// The worker table's new cap on live flows, set before `adopted` is taken in.
        cap_before: Option<usize>,
        /// The worker table's new cap on live flows, set after `give_back`: the batch's
        /// frames were staged while the worker still owned the buckets.
        cap_after: Option<usize>,
        /// Buckets `lo..hi` the reader takes back: after this batch's frames, the worker sends
        /// their live flows back and holds none of them any more.
        give_back: Option<(u64, u64)>,
        /// The run's clock at its end, sent with the last batch: flows timed out by then end
        /// as timed out, as in a table that saw every packet.
        final_clock: Option<i64>,
        /// Counts of live flows among the frames ([`Dispatcher::sample_live`]), in order.
        live_marks: Vec<LiveMark>,
    }

    /// A count of live flows taken before frame `at` of a batch: the table sweeps at the run's
    /// clock `now` as it was then, and reports its live flows for count `seq`.
    #[derive(Clone, Copy)]
    struct LiveMark {
        at: usize,
        seq: u64,
        now: i64,
    }

    impl Default for Batch {
        fn default() -> Self {
            Batch {
                mapping: None,
                bytes: Vec::new(),
                frames: Vec::new(),
                lowest_offset: usize::MAX,
                sent: false,
                adopted: Vec::new(),
                originals: Vec::new(),
                cap_before: None,
                cap_after: None,
                give_back: None,
                final_clock: None,
                live_marks: Vec::new(),
            }
        }
    }

    impl Batch {
        fn is_empty(&self) -> bool {
            self.frames.is_empty()
                && self.adopted.is_empty()
                && self.cap_before.is_none()
                && self.cap_after.is_none()
                && self.give_back.is_none()
                && self.final_clock.is_none()
                && self.live_marks.is_empty()
        }

        fn frame(&self, f: &FrameRef) -> Option<&[u8]> {
            let source: &[u8] = if f.in_mapping {
                self.mapping.as_deref()?
            } else {
                &self.bytes
            };
            source.get(f.start..f.start.checked_add(f.len as usize)?)
        }

        /// Adds a frame: as its offset when it lies in `mapping` (the mapped file being read:
        /// mapping, start address, length), else as a copy.
        fn stage(
            &mut self,
            mapping: Option<&(Arc<Mmap>, usize, usize)>,
            frame: &[u8],
            mut frame_ref: FrameRef,
        ) {
            let addr = frame.as_ptr() as usize;
            let in_mapping = match mapping {
                Some((map, base, len)) if addr >= *base && addr + frame.len() <= base + len => {
                    if self.mapping.is_none() {
                        self.mapping = Some(Arc::clone(map));
                    }
                    let offset = addr - base;
                    self.lowest_offset = self.lowest_offset.min(offset);
                    Some(offset)
                }
                _ => None,
            };
            frame_ref.start = in_mapping.unwrap_or_else(|| {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(frame);
                start
            });
            frame_ref.in_mapping = in_mapping.is_some();
            self.frames.push(frame_ref);
        }

        /// Empties the batch for reuse.
        fn clear(&mut self) {
            self.bytes.clear();
            self.frames.clear();
            self.live_marks.clear();
            self.mapping = None;
            self.lowest_offset = usize::MAX;
        }
    }

    /// Runs a batch's frames through `table`, as the reader dispatched them, and tells `count`
    /// the table's live flows at each of the batch's [`LiveMark`]s.
    fn run_frames(
        table: &mut FlowTable,
        batch: &Batch,
        emit: &mut impl FnMut(FlowRecord),
        count: &mut impl FnMut(u64, u64),
    ) {
        let mut from = 0;
        for mark in &batch.live_marks {
            let frames = batch.frames.get(from..mark.at).unwrap_or_default();
            run_frame_list(table, batch, frames, emit);
            table.advance_clock(mark.now);
            table.sweep(emit);
            count(mark.seq, table.live() as u64);
            from = mark.at;
        }
        let frames = batch.frames.get(from..).unwrap_or_default();
        run_frame_list(table, batch, frames, emit);
    }

    fn run_frame_list(
        table: &mut FlowTable,
        batch: &Batch,
        frames: &[FrameRef],
        emit: &mut impl FnMut(FlowRecord),
    ) {
        for (i, f) in frames.iter().enumerate() {
            // The reading thread's core wrote these descriptors, so each one's first read
            // here waited for its cache lines to come across (over a quarter of this loop's
            // own samples on the synth capture): ask for them a few frames ahead.
            crate::prefetch::prefetch_all(frames.get(i + FRAME_PREFETCH_AHEAD));
            let Some(frame) = batch.frame(f) else {
                continue;
            };
            // The reader decoded this frame successfully (decoding is deterministic) and
            // usually passes its result along. The key is read from that copy, not from the
            // packet rebuilt on the stack just before: loading addresses that narrower stores
            // had just written stalled (a fifth of this loop's own samples on the synth
            // capture).
            let (pkt, packet_key) = match f
                .packet
                .as_ref()
                .and_then(|detached| Some((detached.attach(frame)?, detached)))
            {
                Some((pkt, detached)) => (pkt, detached.key_with_hash(f.hash)),
                None => match decode::decode(f.link_type, frame) {
                    Ok(pkt) => (pkt, PacketKey::with_hash(&pkt, f.hash)),
                    Err(_) => continue,
                },
            };
            table.advance_clock(f.now);
            table.process_keyed(f.ts, &pkt, packet_key, emit);
        }
    }

    struct Worker {
        current: Batch,
        /// Flows the worker finished, sent after each batch and at the end.
        finished: Receiver<Finished>,
        /// Live flows of buckets the reader took back ([`Batch::give_back`]).
        given_back: Receiver<Vec<MovedFlow>>,
        /// The worker's live flows at each count ([`Batch::live_marks`]): (count, flows).
        live_samples: Receiver<(u64, u64)>,
        /// Processed batches ready for reuse.
        free: Vec<Batch>,
        /// `lowest_offset` of each batch sent and not yet returned, oldest first.
        in_flight: VecDeque<usize>,
        to_worker: SyncSender<Batch>,
        recycled: Receiver<Batch>,
        /// What the worker reports to the balance.
        gauges: Arc<Gauges>,
        /// Nanoseconds the reader has waited for this worker to return a batch.
        reader_waited_nanos: u64,
        handle: JoinHandle<FlowCounters>,
    }

    impl Worker {
        fn take_returned(&mut self, mut batch: Batch) {
            if batch.sent {
                // Batches come back in the order they were sent (one worker, one queue).
                self.in_flight.pop_front();
            }
            // States of flows this thread handed over, allocated here.
            batch.originals.clear();
            self.free.push(Batch {
                sent: false,
                lowest_offset: usize::MAX,
                ..batch
            });
        }

        fn drain_returned(&mut self) {
            while let Ok(batch) = self.recycled.try_recv() {
                self.take_returned(batch);
            }
        }

        /// Sends the current batch. Returns whether the worker had processed every earlier
        /// batch already, that is, whether it was waiting for the reader.
        fn send(&mut self) -> bool {
            self.drain_returned();
            let caught_up = self.in_flight.is_empty();
            if self.free.is_empty() {
                let waiting = Instant::now();
                match self.recycled.recv() {
                    Ok(batch) => self.take_returned(batch),
                    // The worker died; it is reported when joined.
                    Err(_) => self.free.push(Batch::default()),
                }
                self.reader_waited_nanos += nanos_since(waiting);
            }
            let next = self.free.pop().unwrap_or_default();
            let mut full = std::mem::replace(&mut self.current, next);
            full.sent = true;
            self.in_flight.push_back(full.lowest_offset);
            // A worker that died (panicked) is reported when it is joined.
            let _ = self.to_worker.send(full);
            caught_up
        }

        /// Lowest mapping offset this worker may still read.
        fn low_water(&mut self) -> usize {
            self.drain_returned();
            let queued = self.in_flight.iter().copied().min().unwrap_or(usize::MAX);
            queued.min(self.current.lowest_offset)
        }
    }

    /// Counts of live flows ([`Dispatcher::sample_live`]) waiting for the tables' answers.
    #[derive(Default)]
    struct LiveSamples {
        /// Counts not yet complete, oldest first: (live flows so far, answers still to come).
        pending: VecDeque<(u64, usize)>,
        /// Number of the oldest pending count.
        first_seq: u64,
        /// Most live flows of a complete count.
        peak: u64,
        /// Every complete count, in order, for the tests to compare with one table's.
        #[cfg(test)]
        counts: Vec<u64>,
    }

    impl LiveSamples {
        /// Starts count number `first_seq + pending.len()` with the reader's `live` flows;
        /// `answers` tables still have to add theirs.
        fn start(&mut self, live: u64, answers: usize) -> u64 {
            self.pending.push_back((live, answers));
            self.complete();
            self.first_seq + self.pending.len() as u64 - 1
        }

        fn answer(&mut self, seq: u64, live: u64) {
            let at = seq.wrapping_sub(self.first_seq);
            if let Some(count) = usize::try_from(at)
                .ok()
                .and_then(|i| self.pending.get_mut(i))
            {
                count.0 += live;
                count.1 = count.1.saturating_sub(1);
            }
            self.complete();
        }

        fn complete(&mut self) {
            while let Some(&(live, 0)) = self.pending.front() {
                self.peak = self.peak.max(live);
                #[cfg(test)]
                self.counts.push(live);
                self.pending.pop_front();
                self.first_seq += 1;
            }
        }
    }

    /// What a worker tells the reader's balance, updated after every batch.
    #[derive(Default)]
    struct Gauges {
        /// Nanoseconds the worker has waited for batches.
        idle_nanos: AtomicU64,
        /// Flows live in the worker's table.
        live_flows: AtomicU64,
    }

    fn nanos_since(start: Instant) -> u64 {
        u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Buckets the reader is taking back from the workers: their packets wait in `held` until
    /// every worker has sent the buckets' live flows.
    struct Reclaim {
        /// The reader owns buckets below this once the flows are in.
        to: u64,
        /// Per worker, its flows once they came (in recency order; none from a worker that
        /// died).
        answers: Vec<Option<Vec<MovedFlow>>>,
        /// Packets of the buckets read since the reader asked for them, in order.
        held: Batch,
    }

    pub struct Dispatcher {
        workers: Vec<Worker>,
        /// The reading thread's own table, for flows whose hash falls below `local_buckets`.
        local: Box<FlowTable>,
        /// Settings of the tables, for the table in which flows taken back catch up.
        flow: FlowConfig,
        /// What the catch-up tables counted ([`Dispatcher::poll_reclaim`]).
        catch_up_counters: FlowCounters,
        /// Counts of live flows under way ([`Dispatcher::sample_live`]).
        samples: LiveSamples,
        /// Flows the reader's table ended, and after [`Dispatcher::finish`] the workers' last.
        local_finished: Finished,
        from_workers: Vec<Finished>,
        local_buckets: u64,
        /// Flows of the local tables already added to the shared progress counter.
        local_reported: u64,
        /// The run's cap on live flows, split between the tables by bucket count.
        max_flows: usize,
        balance: Balance,
        reclaim: Option<Reclaim>,
        /// Live flows handed to the workers so far, and taken back from them.
        handed_over: u64,
        taken_back: u64,
        /// The run's clock: the latest timestamp dispatched so far.
        now: i64,
        /// The file being read, when mapped: (mapping, its start address, its length).
        mapping: Option<(Arc<Mmap>, usize, usize)>,
    }

    /// Packets held for buckets being taken back, in batches, beyond which the reader waits
    /// for the buckets' flows. A worker answers once it has run its queue (at most
    /// `BATCHES_IN_FLIGHT` batches of all buckets), and the buckets taken back get a part of
    /// the packets read meanwhile, so the bound is met only when a worker stalls; it keeps
    /// copied frames (gzip, pipes) within what the queues hold.
    const MAX_HELD_BATCHES: usize = BATCHES_IN_FLIGHT;

    /// Flow hashes are split into this many buckets between the reader and the workers.
    const BUCKETS: u64 = 1024;

    /// How the reader keeps itself and the workers equally busy: it moves hash buckets, with
    /// their live flows, between its own table and the workers'.
    ///
    /// The reader's starting share ([`reader_share`]) is right for one mix of traffic only:
    /// reading and decoding cost more per packet, next to flow and fingerprint work, on large
    /// packets of long bulk flows than on short flows, and a capture's mix changes as it goes
    /// (per-thread timelines of the reference capture show the reader waiting for the worker
    /// through most of some runs, and the worker for the reader in others). So over windows
    /// of at least `min_window` (looked at every `sends_per_check` batches) the reader compares
    /// the time it waited for full workers with the time the workers waited for batches
    /// ([`buckets_to_move`]), and hands buckets to the workers or takes them back. Windows are
    /// timed, not counted in batches: the fewer buckets the workers have, the fewer batches
    /// they get, and a window of 8 batches grew to 68 ms on the reference capture. They grow
    /// with the live flows (`window_per_live_flow`): a move walks the flows of the tables
    /// involved, and with 10 ms windows a 2 M-flow flood at the default cap took 23 s, not 5.
    pub struct Balance {
        batch_packets: usize,
        sends_per_check: u32,
        min_window: Duration,
        /// Windows last at least this long per live flow of the run.
        window_per_live_flow: Duration,
        /// Tests: at every check, move this many buckets, by turns to the workers and back.
        test_step: Option<u64>,
        sends: u32,
        /// Where the current window started: when, the reader's waiting so far, the workers'.
        window: Option<(Instant, u64, u64)>,
        /// The last test move went to the workers.
        last_to_workers: bool,
    }

    impl Default for Balance {
        fn default() -> Self {
            Balance {
                batch_packets: BATCH_PACKETS,
                sends_per_check: 2,
                min_window: Duration::from_millis(10),
                window_per_live_flow: Duration::from_micros(1),
                test_step: None,
                sends: 0,
                window: None,
                last_to_workers: false,
            }
        }
    }

    /// Buckets to move after a window of `window` nanoseconds in which the reader waited
    /// `reader_waited` for full workers and the workers waited `workers_idle` (per worker) for
    /// batches: positive hands buckets to the workers, negative takes them back.
    ///
    /// Whoever waits is ahead. Moving half the difference of the waiting shares of the work
    /// evens the two out: a share `w` of the window's work moves with `w` of the buckets of
    /// the side that gives them, up to `w` times what it owns. Differences under 5 % of the
    /// window are noise.
    fn buckets_to_move(
        window: u64,
        reader_waited: u64,
        workers_idle: u64,
        local_buckets: u64,
        workers: usize,
    ) -> i64 {
        if window == 0 {
            return 0;
        }
        let ahead = (workers_idle as f64 - reader_waited as f64) / window as f64;
        if ahead.abs() < 0.05 {
            return 0;
        }
        let worker_buckets = BUCKETS - local_buckets;
        if ahead > 0.0 {
            let n = (ahead / 2.0 * worker_buckets as f64 / workers.max(1) as f64).round() as u64;
            n.min(local_buckets) as i64
        } else {
            let n = (-ahead / 2.0 * worker_buckets as f64).round() as u64;
            -(n.min(BUCKETS * 3 / 4 - local_buckets.min(BUCKETS * 3 / 4)) as i64)
        }
    }

    /// Caps on live flows of the reader's table and of each worker's, for `local_buckets` of
    /// [`BUCKETS`] kept by the reader: together they stay within `max_flows`.
    fn table_caps(max_flows: usize, local_buckets: u64, workers: usize) -> (usize, usize) {
        let local = cap_share(max_flows, local_buckets);
        let local = local.min(max_flows.saturating_sub(workers));
        let each = (max_flows - local) / workers.max(1);
        (local.max(1), each.max(1))
    }

    /// The part of the run's cap on live flows that goes with `buckets` of [`BUCKETS`].
    fn cap_share(max_flows: usize, buckets: u64) -> usize {
        (max_flows as u128 * u128::from(buckets) / u128::from(BUCKETS)) as usize
    }

    /// A new table holding the flows workers gave back (each worker's in recency order), with
    /// the least recent evicted beyond `cap` once all are in, as in one table holding them all.
    /// A new table each time: a table keeps the room its most flows took.
    fn take_in(
        flow: FlowConfig,
        given_back: impl Iterator<Item = Vec<MovedFlow>>,
        cap: usize,
        taken_back: &mut u64,
        emit: &mut impl FnMut(FlowRecord),
    ) -> FlowTable {
        let mut table = FlowTable::new(flow, REGISTRY);
        for flows in given_back {
            *taken_back += flows.len() as u64;
            table.adopt(flows, emit);
        }
        table.set_max_flows(cap, emit);
        table
    }

    /// Share of the flows (0..=1) the reading thread processes itself when `threads` threads run
    /// (`threads - 1` workers), at the start of a run.
    ///
    /// The reader also reads, decodes and dispatches every packet: per packet it spends `r`
    /// times what a worker spends on flow-table and fingerprint work. Equal finishing times
    /// need `r + f = (1 - f) / W` for `W` workers, so `f = (1/W - r) / (1 + 1/W)`. `r` is about
    /// a third since the reader works out every packet's key and hash for its owner
    /// (`PacketKey`): on the 983 k-packet reference capture, per-thread `perf` timelines at a
    /// share of 0.40 had the worker idle 10-30 % of the flow phase in three runs of three, and at
    /// 0.33 either thread waited a little, by turns; fifteen interleaved rounds gave medians of
    /// 0.49 s at 0.28, 0.47 s at 0.33, 0.50 s at 0.36 and 0.49 s at 0.40 (noise about ±20 %).
    /// That is a third on two threads, a tenth on three and none from four up. It is where a
    /// run starts: [`Balance`] moves buckets either way while it runs.
    pub fn reader_share(threads: usize) -> f64 {
        const READ_DECODE_RATIO: f64 = 1.0 / 3.0;
        let w = threads.saturating_sub(1).max(1) as f64;
        ((1.0 / w - READ_DECODE_RATIO) / (1.0 + 1.0 / w)).max(0.0)
    }

    impl Dispatcher {
        /// Starts the workers; with `render`, every thread renders the flows it ends as rows.
        pub fn start(
            config: PipelineConfig,
            render: Option<RowRenderer>,
            flows_seen: Arc<AtomicU64>,
        ) -> Self {
            Self::start_balanced(config, render, flows_seen, Balance::default())
        }

        pub fn start_balanced(
            config: PipelineConfig,
            render: Option<RowRenderer>,
            flows_seen: Arc<AtomicU64>,
            balance: Balance,
        ) -> Self {
            // The calling thread reads and decodes; it counts as one of the threads.
            let n = config.threads.saturating_sub(1).max(1);
            let share = reader_share(config.threads);
            let local_buckets = (share * BUCKETS as f64).round() as u64;
            let (local_cap, worker_cap) = table_caps(config.flow.max_flows, local_buckets, n);
            let local = Box::new(FlowTable::new(
                FlowConfig {
                    max_flows: local_cap,
                    ..config.flow
                },
                REGISTRY,
            ));
            let flow = FlowConfig {
                max_flows: worker_cap,
                ..config.flow
            };
            let workers = (0..n)
                .map(|i| {
                    let (to_worker, from_reader) = sync_channel::<Batch>(BATCHES_IN_FLIGHT);
                    // Room for every batch there is, so returning one never blocks.
                    let (to_reader, recycled) = sync_channel::<Batch>(BATCHES_IN_FLIGHT + 1);
                    let flows_seen = Arc::clone(&flows_seen);
                    let (finished_tx, finished) = std::sync::mpsc::channel();
                    let (give_back_tx, given_back) = std::sync::mpsc::channel();
                    let (live_samples_tx, live_samples) = std::sync::mpsc::channel();
                    let gauges = Arc::new(Gauges::default());
                    let worker_gauges = Arc::clone(&gauges);
                    let render = render.clone();
                    // Named, so that `top -H`, `perf` and debuggers tell the workers from the
                    // reader (the main thread).
                    let handle = std::thread::Builder::new()
                        .name(format!("tw-worker-{}", i + 1))
                        .spawn(move || {
                            work(
                                flow,
                                (from_reader, to_reader, &worker_gauges),
                                (Finished::new(render), &finished_tx),
                                (&give_back_tx, &live_samples_tx),
                                &flows_seen,
                            )
                        })
                        // As `std::thread::spawn` does: the system is out of threads or memory.
                        .unwrap_or_else(|e| panic!("cannot start a flow worker thread: {e}"));
                    Worker {
                        current: Batch::default(),
                        finished,
                        given_back,
                        live_samples,
                        free: (0..BATCHES_IN_FLIGHT).map(|_| Batch::default()).collect(),
                        in_flight: VecDeque::new(),
                        to_worker,
                        recycled,
                        gauges,
                        reader_waited_nanos: 0,
                        handle,
                    }
                })
                .collect();
            Dispatcher {
                workers,
                local,
                flow: config.flow,
                catch_up_counters: FlowCounters::default(),
                samples: LiveSamples::default(),
                local_finished: Finished::new(render.clone()),
                from_workers: Vec::new(),
                local_buckets,
                local_reported: 0,
                max_flows: config.flow.max_flows,
                balance,
                reclaim: None,
                handed_over: 0,
                taken_back: 0,
                now: i64::MIN,
                mapping: None,
            }
        }

        /// Sends every worker the frames staged so far: what goes into the next batches
        /// (flows handed over, a new cap) then takes effect after them, at its place among the
        /// packets, as in one table.
        fn flush(&mut self) {
            for w in &mut self.workers {
                // A batch with a count of live flows but no frames yet goes too: flows taken
                // in with the next batch come before its frames and would join the count.
                if !w.current.frames.is_empty() || !w.current.live_marks.is_empty() {
                    w.send();
                }
            }
        }

        /// Sets the tables' caps on live flows for the reader's `local_buckets`.
        fn set_caps(&mut self) {
            let (local_cap, worker_cap) =
                table_caps(self.max_flows, self.local_buckets, self.workers.len());
            let finished = &mut self.local_finished;
            self.local
                .set_max_flows(local_cap, &mut |r| finished.push(r));
            for w in &mut self.workers {
                w.current.cap_before = Some(worker_cap);
            }
        }

        /// Hands the reader's top `count` buckets, and their live flows, to the workers.
        fn hand_over(&mut self, count: u64) {
            let keep = self.local_buckets.saturating_sub(count);
            if keep == self.local_buckets {
                return;
            }
            self.flush();
            // The reader's table sweeps only at its own packets, so its clock may lag the
            // run's. A worker may already have swept at the run's clock (at the frames just
            // flushed) and would not sweep the flows it takes in until the next second: they
            // leave swept at that clock, as one table would have at its last packet.
            self.sweep_local();
            let moved = self.local.take_flows(|hash| hash % BUCKETS >= keep);
            self.local_buckets = keep;
            self.set_caps();
            let n = self.workers.len();
            self.handed_over += moved.len() as u64;
            for flow in moved {
                let i = ((flow.hash() / BUCKETS) % n as u64) as usize;
                self.workers[i].current.adopted.push(flow);
            }
        }

        /// Starts taking back the `count` buckets above the reader's: every worker is asked
        /// for their flows after the packets it has been sent, and the buckets' packets from
        /// now on are held until the flows are in ([`Dispatcher::poll_reclaim`]).
        fn take_back(&mut self, count: u64) {
            let to = (self.local_buckets + count).min(BUCKETS);
            if to == self.local_buckets || self.reclaim.is_some() {
                return;
            }
            // The workers' caps shrink as they give the buckets back, and the reader's grows
            // when their flows arrive: the tables never hold more than the run's cap between
            // them.
            let worker_cap = table_caps(self.max_flows, to, self.workers.len()).1;
            for w in &mut self.workers {
                if !w.current.adopted.is_empty() || w.current.cap_before.is_some() {
                    // Those hold from before the frames staged so far, and the new cap only
                    // after them: they go in a batch of their own.
                    w.send();
                }
                w.current.give_back = Some((self.local_buckets, to));
                w.current.cap_after = Some(worker_cap);
                w.send();
            }
            self.reclaim = Some(Reclaim {
                to,
                answers: (0..self.workers.len()).map(|_| None).collect(),
                held: Batch::default(),
            });
        }

        /// Collects the flows the workers gave back; once all are in (with `wait`, after
        /// waiting for them), catches them up with the held packets and makes the buckets the
        /// reader's.
        fn poll_reclaim(&mut self, wait: bool) {
            let Some(reclaim) = self.reclaim.as_mut() else {
                return;
            };
            for (w, answer) in self.workers.iter().zip(&mut reclaim.answers) {
                if answer.is_some() {
                    continue;
                }
                *answer = if wait {
                    Some(w.given_back.recv().unwrap_or_default())
                } else {
                    match w.given_back.try_recv() {
                        Ok(flows) => Some(flows),
                        Err(std::sync::mpsc::TryRecvError::Empty) => continue,
                        // The worker died; it is reported when joined.
                        Err(std::sync::mpsc::TryRecvError::Disconnected) => Some(Vec::new()),
                    }
                };
            }
            if reclaim.answers.iter().any(Option::is_none) {
                return;
            }
            let Some(Reclaim {
                to,
                mut answers,
                held,
            }) = self.reclaim.take()
            else {
                return;
            };
            for (w, flows) in self.workers.iter_mut().zip(&mut answers) {
                let flows = flows.iter_mut().flatten();
                w.current.originals.extend(flows.map(MovedFlow::rehome));
            }
            let finished = &mut self.local_finished;
            let mut emit = |r| finished.push(r);
            // Flows taken back catch up with the packets held for them in a table of their
            // own, on the run's clock as it was when each packet was read (the reader's table
            // is ahead), before they join the reader's. The table gets the buckets' share of
            // the run's cap, as the workers held them.
            let catch_up = &mut take_in(
                self.flow,
                answers.into_iter().flatten(),
                cap_share(self.max_flows, to - self.local_buckets),
                &mut self.taken_back,
                &mut emit,
            );
            let samples = &mut self.samples;
            run_frames(catch_up, &held, &mut emit, &mut |seq, live| {
                samples.answer(seq, live);
            });
            catch_up.advance_clock(self.now);
            catch_up.sweep(&mut emit);
            let caught_up = catch_up.take_flows(|_| true);
            self.catch_up_counters.merge(&catch_up.counters());
            // The reader's cap grows with its buckets before their flows count against it.
            self.local.set_max_flows(
                table_caps(self.max_flows, to, self.workers.len()).0,
                &mut emit,
            );
            self.local.adopt(caught_up, &mut emit);
            self.local_buckets = to;
            self.flush();
            self.set_caps();
            // The next window starts now: the last one measured the move under way.
            self.balance.window = None;
        }

        /// After each send: at the end of a window, moves buckets as [`buckets_to_move`] says.
        fn rebalance(&mut self) {
            let b = &mut self.balance;
            b.sends += 1;
            if b.sends < b.sends_per_check || self.reclaim.is_some() {
                return;
            }
            b.sends = 0;
            let reader_waited: u64 = self.workers.iter().map(|w| w.reader_waited_nanos).sum();
            let workers_idle: u64 = self
                .workers
                .iter()
                .map(|w| w.gauges.idle_nanos.load(Ordering::Relaxed))
                .sum::<u64>()
                / self.workers.len().max(1) as u64;
            let now = Instant::now();
            let Some((start, waited_before, idle_before)) = b.window else {
                b.window = Some((now, reader_waited, workers_idle));
                return;
            };
            // A move walks the live flows of the tables that give and take: with many live,
            // windows lengthen so that moves stay a small part of the work.
            let live = self.local.live() as u64
                + self
                    .workers
                    .iter()
                    .map(|w| w.gauges.live_flows.load(Ordering::Relaxed))
                    .sum::<u64>();
            let long_enough = b.min_window.max(
                b.window_per_live_flow
                    .saturating_mul(live.min(u64::from(u32::MAX)) as u32),
            );
            if now.duration_since(start) < long_enough {
                return;
            }
            b.window = Some((now, reader_waited, workers_idle));
            let moves = match b.test_step {
                Some(step) => {
                    b.last_to_workers = !b.last_to_workers;
                    if b.last_to_workers {
                        step as i64
                    } else {
                        -(step as i64)
                    }
                }
                None => buckets_to_move(
                    u64::try_from((now - start).as_nanos()).unwrap_or(u64::MAX),
                    reader_waited - waited_before,
                    workers_idle.saturating_sub(idle_before),
                    self.local_buckets,
                    self.workers.len(),
                ),
            };
            if moves > 0 {
                self.hand_over(moves as u64);
            } else if moves < 0 {
                self.take_back(moves.unsigned_abs());
            }
        }

        /// Starts (or, with `None`, ends) a mapped file. Pending batches are sent first, so a
        /// batch never mixes two files' mappings, and buckets being taken back are taken.
        pub fn set_mapping(&mut self, mapped: Option<&MappedCapture>) {
            self.poll_reclaim(true);
            for w in &mut self.workers {
                if !w.current.is_empty() {
                    w.send();
                }
            }
            self.mapping = mapped.map(|m| {
                let bytes = m.bytes();
                (m.shared(), bytes.as_ptr() as usize, bytes.len())
            });
        }

        /// The lowest offset of the mapped file that a worker may still read: the reader is at
        /// `reader_offset`, and every batch not yet returned, or held, may hold frames from its
        /// `lowest_offset` on.
        pub fn low_water(&mut self, reader_offset: usize) -> usize {
            let held = self
                .reclaim
                .as_ref()
                .map_or(usize::MAX, |r| r.held.lowest_offset);
            self.workers
                .iter_mut()
                .map(Worker::low_water)
                .fold(reader_offset.min(held), usize::min)
        }

        pub fn dispatch(&mut self, ts: i64, link_type: u16, frame: &[u8], pkt: &DecodedPacket<'_>) {
            let packet_key = PacketKey::of(pkt);
            let hash = packet_key.hash;
            self.now = self.now.max(ts);
            let bucket = hash % BUCKETS;
            if bucket < self.local_buckets {
                let finished = &mut self.local_finished;
                self.local.advance_clock(self.now);
                self.local
                    .process_keyed(ts, pkt, packet_key, &mut |r| finished.push(r));
                return;
            }
            let frame_ref = FrameRef {
                ts,
                now: self.now,
                start: 0,
                hash,
                // pcap and pcapng record lengths are 32-bit: every frame fits.
                len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
                link_type,
                in_mapping: false,
                packet: pkt.detach(frame),
            };
            if let Some(reclaim) = self.reclaim.as_mut().filter(|r| bucket < r.to) {
                reclaim.held.stage(self.mapping.as_ref(), frame, frame_ref);
                let held = reclaim.held.frames.len();
                if held % self.balance.batch_packets == 0 {
                    // Packets of the other buckets may be few: look for the flows here too,
                    // and past a bound on held packets, wait for them.
                    self.poll_reclaim(held >= MAX_HELD_BATCHES * self.balance.batch_packets);
                }
                return;
            }
            let i = ((hash / BUCKETS) % self.workers.len() as u64) as usize;
            let limit = self.batch_limit_at(frame);
            let w = &mut self.workers[i];
            w.current.stage(self.mapping.as_ref(), frame, frame_ref);
            if w.current.frames.len() >= limit {
                w.send();
                self.poll_reclaim(false);
                self.rebalance();
            }
        }

        /// Frames per batch at `frame`: fewer near the end of a mapped file ([`batch_limit`]).
        fn batch_limit_at(&self, frame: &[u8]) -> usize {
            let full = self.balance.batch_packets;
            match &self.mapping {
                Some((_, start, len)) => {
                    let left = (start + len).saturating_sub(frame.as_ptr() as usize);
                    batch_limit(full, left, *len)
                }
                None => full,
            }
        }

        /// Adds the flows the reading thread created since the last call to `flows_seen`.
        pub fn report_flows(&mut self, flows_seen: &AtomicU64) {
            let created =
                self.local.counters().flows_created + self.catch_up_counters.flows_created;
            flows_seen.fetch_add(created - self.local_reported, Ordering::Relaxed);
            self.local_reported = created;
        }

        /// Hands over the flows finished so far: the reader's own, and those workers have sent.
        pub fn drain_finished(&mut self, out: &mut dyn FnMut(Finished)) {
            if !self.local_finished.is_empty() {
                out(self.local_finished.take());
            }
            self.from_workers.drain(..).for_each(&mut *out);
            for w in &self.workers {
                w.finished.try_iter().for_each(&mut *out);
            }
        }

        /// Counts the live flows of all tables at this point of the run (`Sink::sample_live`),
        /// each swept at the run's clock: the reader's table at once, each worker's after the
        /// frames staged for it so far, and the flows of buckets being taken back in their
        /// catch-up table, after the packets held for them so far. The answers add up as they
        /// come in, so nobody waits.
        pub fn sample_live(&mut self) {
            self.sweep_local();
            let answers = self.workers.len() + usize::from(self.reclaim.is_some());
            let seq = self.samples.start(self.local.live() as u64, answers);
            let mark = |batch: &Batch| LiveMark {
                at: batch.frames.len(),
                seq,
                now: self.now,
            };
            for w in &mut self.workers {
                w.current.live_marks.push(mark(&w.current));
            }
            if let Some(reclaim) = &mut self.reclaim {
                reclaim.held.live_marks.push(mark(&reclaim.held));
            }
            self.collect_samples();
        }

        /// Sweeps the reader's table at the run's clock: it moves only with the reader's own
        /// packets, and lags where the latest packets went to workers.
        fn sweep_local(&mut self) {
            let finished = &mut self.local_finished;
            self.local.advance_clock(self.now);
            self.local.sweep(&mut |r| finished.push(r));
        }

        fn collect_samples(&mut self) {
            for w in &self.workers {
                for (seq, live) in w.live_samples.try_iter() {
                    self.samples.answer(seq, live);
                }
            }
        }

        /// Ends every flow; their records are then ready for [`Dispatcher::drain_finished`].
        ///
        /// Ending a live flow (its fingerprint verdicts and its row) costs far more than moving
        /// it, and a run ends with many flows live: the reader takes back buckets until it owns
        /// its equal share of them, and ends those flows while the workers end theirs.
        pub fn finish(&mut self) -> FlowCounters {
            self.poll_reclaim(true);
            self.sample_live();
            let from = self.local_buckets;
            let to = (BUCKETS / (self.workers.len() as u64 + 1)).max(from);
            for w in &mut self.workers {
                w.current.final_clock = Some(self.now);
                if to > from {
                    w.current.give_back = Some((from, to));
                }
                w.send();
            }
            let mut running = Vec::new();
            for w in std::mem::take(&mut self.workers) {
                let Worker {
                    to_worker,
                    finished,
                    given_back,
                    live_samples,
                    handle,
                    ..
                } = w;
                // The worker ends its flows as soon as it has run its last batch.
                drop(to_worker);
                running.push((finished, given_back, live_samples, handle));
            }
            let finished = &mut self.local_finished;
            let mut emit = |r| finished.push(r);
            self.local.advance_clock(self.now);
            self.local.finish_all(&mut emit);
            let mut counters = self.local.counters();
            if to > from {
                // A worker that died sends nothing; it is reported when joined.
                // Not rehomed: they end at once, and there is no later batch to take the
                // originals back to their worker.
                let given_back = running
                    .iter()
                    .filter_map(|(_, back, _, _)| back.recv().ok());
                let catch_up = &mut take_in(
                    self.flow,
                    given_back,
                    self.max_flows,
                    &mut self.taken_back,
                    &mut emit,
                );
                catch_up.advance_clock(self.now);
                catch_up.finish_all(&mut emit);
                self.catch_up_counters.merge(&catch_up.counters());
                self.local_buckets = to;
            }
            counters.merge(&self.catch_up_counters);
            for (finished, _, live_samples, handle) in running {
                match handle.join() {
                    Ok(c) => counters.merge(&c),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
                // Everything the worker sent is queued now; keep it for `drain_finished`.
                self.from_workers.extend(finished.try_iter());
                for (seq, live) in live_samples.try_iter() {
                    self.samples.answer(seq, live);
                }
            }
            // Each table's own peak is only its share of the run's.
            counters.peak_live = self.samples.peak;
            counters
        }
    }

    /// A worker: runs batches through its table; flows it ends go to `records`, and from
    /// there to `finished` after each batch. Its waiting and its live flows go to `gauges`.
    fn work(
        flow: FlowConfig,
        (batches, recycle, gauges): (Receiver<Batch>, SyncSender<Batch>, &Gauges),
        (mut records, finished): (Finished, &std::sync::mpsc::Sender<Finished>),
        (give_back, live_samples): (
            &std::sync::mpsc::Sender<Vec<MovedFlow>>,
            &std::sync::mpsc::Sender<(u64, u64)>,
        ),
        flows_seen: &AtomicU64,
    ) -> FlowCounters {
        let mut table = FlowTable::new(flow, REGISTRY);
        let mut reported = 0u64;
        loop {
            let mut batch = match batches.try_recv() {
                Ok(batch) => batch,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    let waiting = Instant::now();
                    let Ok(batch) = batches.recv() else {
                        break;
                    };
                    gauges
                        .idle_nanos
                        .fetch_add(nanos_since(waiting), Ordering::Relaxed);
                    batch
                }
            };
            if let Some(max_flows) = batch.cap_before.take() {
                table.set_max_flows(max_flows, &mut |r| records.push(r));
            }
            // States of flows this worker gave back, allocated here.
            batch.originals.clear();
            if !batch.adopted.is_empty() {
                let rehomed = batch.adopted.iter_mut().map(MovedFlow::rehome);
                batch.originals.extend(rehomed);
                table.adopt(batch.adopted.drain(..), &mut |r| records.push(r));
            }
            run_frames(
                &mut table,
                &batch,
                &mut |r| records.push(r),
                &mut |seq, live| {
                    // The reader is gone only when the run is being torn down.
                    let _ = live_samples.send((seq, live));
                },
            );
            if let Some((lo, hi)) = batch.give_back.take() {
                let flows = table.take_flows(|hash| (lo..hi).contains(&(hash % BUCKETS)));
                // The reader is gone only when the run is being torn down.
                let _ = give_back.send(flows);
            }
            if let Some(max_flows) = batch.cap_after.take() {
                table.set_max_flows(max_flows, &mut |r| records.push(r));
            }
            let created = table.counters().flows_created;
            flows_seen.fetch_add(created - reported, Ordering::Relaxed);
            reported = created;
            gauges
                .live_flows
                .store(table.live() as u64, Ordering::Relaxed);
            if let Some(now) = batch.final_clock.take() {
                table.advance_clock(now);
            }
            if !records.is_empty() {
                // The reader is gone only when the run is being torn down.
                let _ = finished.send(records.take());
            }
            batch.clear();
            // Never full: the channel has room for every batch of this worker.
            let _ = recycle.try_send(batch);
        }
        table.finish_all(&mut |r| records.push(r));
        let _ = finished.send(records);
        table.counters()
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::decode::tests::{ipv4_tcp, ipv4_udp};
        use crate::flow::FlowRecord;

        /// Packets of many interleaved TCP and UDP flows (handshakes, payloads that wake the
        /// fingerprinters, FIN closes, a pause long enough for UDP flows to time out and start
        /// again), one every 10 ms, then time stepping back again and again.
        fn interleaved_packets() -> Vec<(i64, Vec<u8>)> {
            let mut packets = Vec::new();
            let mut ts = 1_700_000_000_000_000_000i64;
            for round in 0..24u32 {
                if round == 12 {
                    ts += 200 * 1_000_000_000;
                }
                for flow in 0..300u32 {
                    let client = [10, 1, (flow / 200) as u8, (flow % 200) as u8];
                    let server = [192, 0, 2, (flow % 7) as u8];
                    let port = 30_000 + flow as u16;
                    let payload =
                        vec![(flow ^ round) as u8; (flow as usize * 13 + round as usize) % 200];
                    let frame = if flow % 3 == 0 {
                        ipv4_udp(client, server, port, 443, &payload)
                    } else {
                        let (flags, body): (u8, &[u8]) = match round {
                            0 => (0x02, &[]),
                            23 if flow % 2 == 0 => (0x11, &[]),
                            _ => (0x18, &payload),
                        };
                        if round % 2 == 1 {
                            ipv4_tcp(server, client, 443, port, flags | 0x10, body)
                        } else {
                            ipv4_tcp(client, server, port, 443, flags, body)
                        }
                    };
                    packets.push((ts, frame));
                    ts += 10_000_000;
                }
            }
            // Time steps back: each packet far ahead moves the clock past every flow's
            // timeout, and the flows' next packets come from before it. A sweep at the packet
            // ahead ends the flows first, so those packets start new ones, in every table.
            for step in 1..=6i64 {
                let client = [10, 9, 9, step as u8];
                let ahead = ts + step * 1000 * 1_000_000_000;
                packets.push((ahead, ipv4_udp(client, [192, 0, 2, 9], 1, 53, b"clock")));
                for flow in 0..300u32 {
                    let client = [10, 1, (flow / 200) as u8, (flow % 200) as u8];
                    let server = [192, 0, 2, (flow % 7) as u8];
                    let port = 30_000 + flow as u16;
                    packets.push((ts, ipv4_udp(client, server, port, 443, b"late")));
                    ts += 1_000_000;
                }
            }
            packets
        }

        fn numbered_rows(mut records: Vec<FlowRecord>) -> Vec<String> {
            crate::pipeline::number_flows(&mut records);
            records
                .iter()
                .map(|r| crate::cli::flow_row_json(r, &Default::default()).to_string())
                .collect()
        }

        /// A dispatcher on `threads` threads that moves `step` buckets at every check (every
        /// other batch of 64 packets), by turns to the workers and back.
        fn moving_at_every_check(threads: usize, step: u64, max_flows: usize) -> Dispatcher {
            let mut config = PipelineConfig {
                threads,
                ..PipelineConfig::default()
            };
            config.flow.max_flows = max_flows;
            let balance = Balance {
                batch_packets: 64,
                sends_per_check: 2,
                min_window: Duration::ZERO,
                window_per_live_flow: Duration::ZERO,
                test_step: Some(step),
                ..Balance::default()
            };
            Dispatcher::start_balanced(config, None, Arc::new(AtomicU64::new(0)), balance)
        }

        /// A dispatcher on `threads` threads whose batches never fill (and so never end a
        /// balance window): buckets move only when the test calls for it.
        fn moving_only_when_told(threads: usize) -> Dispatcher {
            let config = PipelineConfig {
                threads,
                ..PipelineConfig::default()
            };
            let balance = Balance {
                batch_packets: 1 << 20,
                ..Balance::default()
            };
            Dispatcher::start_balanced(config, None, Arc::new(AtomicU64::new(0)), balance)
        }

        #[test]
        fn batches_shrink_over_the_last_part_of_a_mapped_file() {
            const MB: usize = 1 << 20;
            // A large file: the last 8 MB.
            assert_eq!(batch_limit(4096, 9 * MB, 300 * MB), 4096);
            assert_eq!(batch_limit(4096, 8 * MB, 300 * MB), 4096);
            assert_eq!(batch_limit(4096, 8 * MB - 1, 300 * MB), 4096 / TAIL_SHRINK);
            assert_eq!(batch_limit(4096, 0, 300 * MB), 4096 / TAIL_SHRINK);
            // A small file: its last sixteenth.
            assert_eq!(batch_limit(4096, MB, 16 * MB), 4096);
            assert_eq!(batch_limit(4096, MB - 1, 16 * MB), 4096 / TAIL_SHRINK);
            // Never below one frame.
            assert_eq!(batch_limit(4, 0, MB), 1);
        }

        /// (threads, buckets a move) of the tests that move buckets at every check: small and
        /// large moves, on one worker and on two.
        const MOVES: [(usize, u64); 4] = [(2, 16), (3, 16), (2, 400), (3, 1024)];

        /// Dispatches one test frame (raw IP) as the reader would.
        fn dispatch_one(d: &mut Dispatcher, ts: i64, frame: &[u8]) {
            let pkt = decode::decode(101, frame).expect("test frames decode");
            d.dispatch(ts, 101, frame, &pkt);
        }

        /// Dispatches test frames in order; with `count_every`, counts the live flows before
        /// every `count_every`-th frame, as the reader counts every few thousand packets.
        fn dispatch_all(
            d: &mut Dispatcher,
            packets: &[(i64, Vec<u8>)],
            count_every: Option<usize>,
        ) {
            for (i, (ts, frame)) in packets.iter().enumerate() {
                if count_every.is_some_and(|every| i % every == 0) {
                    d.sample_live();
                }
                dispatch_one(d, *ts, frame);
            }
        }

        /// Buckets handed over mid-flow and taken back, with their live flows, change
        /// nothing: the same rows as one table that saw every packet.
        #[test]
        fn moving_buckets_either_way_keeps_every_flow_as_one_table_sees_it() {
            let packets = interleaved_packets();
            let mut one = FlowTable::new(FlowConfig::default(), REGISTRY);
            let mut expected = Vec::new();
            for (ts, frame) in &packets {
                let pkt = decode::decode(101, frame).expect("test frames decode");
                one.process(*ts, &pkt, &mut |r| expected.push(r));
            }
            one.finish_all(&mut |r| expected.push(r));
            let expected = numbered_rows(expected);

            for (threads, step) in MOVES {
                let mut d = moving_at_every_check(threads, step, FlowConfig::default().max_flows);
                dispatch_all(&mut d, &packets, None);
                let taken_back = d.taken_back;
                let counters = d.finish();
                let mut records = Vec::new();
                d.drain_finished(&mut |finished| {
                    if let Finished::Records(mut r) = finished {
                        records.append(&mut r);
                    }
                });
                let what = format!("{threads} threads, {step} buckets a move");
                assert!(d.handed_over > 10, "{what}: {} handed over", d.handed_over);
                assert!(taken_back > 10, "{what}: {taken_back} taken back");
                assert_eq!(counters.packets, packets.len() as u64, "{what}");
                assert_eq!(numbered_rows(records), expected, "{what}");
            }
        }

        /// A new cap and flows handed over go to a worker in a batch of their own, after the
        /// frames staged before them: a worker that took them in first would evict flows that
        /// those frames keep fresh in one table (on a 2 M-flow flood at a cap of 10 000, long
        /// sessions came out split in up to ten flows).
        #[test]
        fn moves_take_effect_after_the_frames_staged_before_them() {
            let mut d = moving_only_when_told(3);
            let packets = interleaved_packets();
            let staged_nowhere = |d: &Dispatcher| {
                d.workers
                    .iter()
                    .all(|w| w.current.frames.is_empty() && w.current.cap_before.is_some())
            };
            let (first, rest) = packets.split_at(packets.len() / 2);
            dispatch_all(&mut d, first, None);
            assert!(d.workers.iter().all(|w| !w.current.frames.is_empty()));
            d.hand_over(64);
            assert!(d.handed_over > 0);
            assert!(staged_nowhere(&d), "after handing over");
            d.take_back(128);
            dispatch_all(&mut d, rest, None);
            assert!(d.workers.iter().all(|w| !w.current.frames.is_empty()));
            d.poll_reclaim(true);
            assert!(d.taken_back > 0);
            assert!(staged_nowhere(&d), "after taking back");
            d.finish();
        }

        /// Counts of live flows taken while buckets move either way (and while packets wait
        /// for buckets being taken back) give the peak one table gives, counted at the same
        /// packets: the summary's peak does not depend on threads or timing. This holds where
        /// time steps back too: a flow whose packet comes from before the run's clock is
        /// timed out by it at once, and one table ends it at the next second's sweep; a table
        /// that takes it in before then and sweeps the current second again must not end it
        /// (before `seen_at_clock`, counts after a step back came out up to 3 flows short).
        #[test]
        fn live_flow_counts_are_those_of_one_table_however_buckets_move() {
            let packets = interleaved_packets();
            // 3601: a count right after the 200 s pause, where only the table that got the
            // packet after it has swept.
            for every in [97, 1000, 3601] {
                let mut one = FlowTable::new(FlowConfig::default(), REGISTRY);
                let mut counts = Vec::new();
                for (i, (ts, frame)) in packets.iter().enumerate() {
                    if i % every == 0 {
                        one.sweep(&mut |_| {});
                        counts.push(one.live() as u64);
                    }
                    let pkt = decode::decode(101, frame).expect("test frames decode");
                    one.process(*ts, &pkt, &mut |_| {});
                }
                one.sweep(&mut |_| {});
                counts.push(one.live() as u64);
                let peak = counts.iter().copied().max();

                for (threads, step) in MOVES {
                    let mut d =
                        moving_at_every_check(threads, step, FlowConfig::default().max_flows);
                    dispatch_all(&mut d, &packets, Some(every));
                    let taken_back = d.taken_back;
                    let counters = d.finish();
                    let what = format!("{threads} threads, {step} buckets a move, every {every}");
                    assert!(d.handed_over > 10 && taken_back > 10, "{what}: no moves");
                    assert_eq!(d.samples.counts, counts, "{what}");
                    assert_eq!(Some(counters.peak_live), peak, "{what}");
                }
            }
        }

        /// A flow the reader hands over has been swept at the run's clock. Here a worker sweeps
        /// at a packet 1000 s ahead, then takes in a flow the reader last swept before that
        /// packet; the flow's next packet, from before the clock (time stepped back), comes in
        /// the same second of the clock and sweeps nothing. One table ended the flow at the
        /// packet ahead, so the late packet starts a second flow. (`moving_buckets_either_way…`
        /// caught this about one run in ten, by the timing of its moves.)
        #[test]
        fn flows_handed_over_leave_swept_at_the_run_clock() {
            let mut d = moving_only_when_told(2);
            let local_buckets = d.local_buckets;
            let is_local = |frame: &[u8]| {
                let pkt = decode::decode(101, frame).expect("test frames decode");
                PacketKey::of(&pkt).hash % BUCKETS < local_buckets
            };
            let flow = (1000..2000)
                .map(|port| ipv4_udp([10, 0, 0, 1], [192, 0, 2, 1], port, 53, b"flow"))
                .find(|f| is_local(f))
                .expect("a flow among 1000 in the reader's buckets");
            let clock = (1000..2000)
                .map(|port| ipv4_udp([10, 9, 9, 9], [192, 0, 2, 9], port, 53, b"clock"))
                .find(|f| !is_local(f))
                .expect("a flow among 1000 in a worker's buckets");
            let t0 = 1_700_000_000 * 1_000_000_000i64;
            dispatch_one(&mut d, t0, &flow);
            dispatch_one(&mut d, t0 + 1000 * 1_000_000_000, &clock);
            // The sweep ends the flow before it could move (without it, the flow moves and
            // comes out as one flow of two packets).
            d.hand_over(local_buckets);
            dispatch_one(&mut d, t0 + 1_000_000_000, &flow);
            d.finish();
            let mut records = Vec::new();
            d.drain_finished(&mut |finished| {
                if let Finished::Records(mut r) = finished {
                    records.append(&mut r);
                }
            });
            let packets: Vec<u64> = records.iter().map(|r| r.packets[0]).collect();
            assert_eq!(packets, [1, 1, 1], "the flow twice and the clock flow");
        }

        /// Buckets moving either way under a flood never leave the tables holding more live
        /// flows than the run's cap between them: a flood of one-packet flows then ends all
        /// but at most the cap by eviction, however the buckets moved. (A worker that kept
        /// the room of a cap it had been lowered from ended up to a sixth more flows at the
        /// end of the run than the cap allows, on a 50 000-flow flood at a cap of 1 000.)
        #[test]
        fn moving_buckets_under_a_flood_keeps_the_tables_within_the_cap() {
            let flood: Vec<(i64, Vec<u8>)> = (0..20_000u32)
                .map(|i| {
                    let client = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
                    let frame = ipv4_udp(client, [192, 0, 2, 1], 1024 + (i % 7) as u16, 53, b"q");
                    (1_700_000_000_000_000_000 + i64::from(i) * 1_000, frame)
                })
                .collect();
            let cap = 500u64;
            for (threads, step) in MOVES {
                let mut d = moving_at_every_check(threads, step, cap as usize);
                dispatch_all(&mut d, &flood, None);
                let taken_back = d.taken_back;
                let c = d.finish();
                let what = format!("{threads} threads, {step} buckets a move");
                assert!(d.handed_over > 10 && taken_back > 10, "{what}: no moves");
                assert_eq!(c.flows_created, flood.len() as u64, "{what}");
                assert!(
                    c.evicted >= c.flows_created - cap,
                    "{what}: {} of {} flows evicted at a cap of {cap}",
                    c.evicted,
                    c.flows_created
                );
            }
        }

        #[test]
        fn table_caps_stay_within_the_run_cap() {
            for (cap, local, workers) in [(500_000, 341, 1), (1000, 1024, 1), (7, 3, 3), (1, 0, 2)]
            {
                let (l, w) = table_caps(cap, local, workers);
                assert!(l >= 1 && w >= 1);
                assert!(
                    l + w * workers <= cap.max(1 + workers),
                    "{cap} {local} {workers}"
                );
            }
        }

        #[test]
        fn buckets_move_towards_the_side_that_waits_less() {
            let ms = 1_000_000;
            // Workers idle a fifth of a 20 ms window: the reader hands over a tenth of theirs.
            assert_eq!(buckets_to_move(20 * ms, 0, 4 * ms, 324, 1), 70);
            // The reader waited a quarter: it takes back an eighth of the workers' buckets.
            assert_eq!(buckets_to_move(20 * ms, 5 * ms, 0, 324, 1), -88);
            // Both waited alike, or too little to tell: nothing moves.
            assert_eq!(buckets_to_move(20 * ms, 3 * ms, 3 * ms, 324, 1), 0);
            assert_eq!(buckets_to_move(20 * ms, ms / 2, 0, 324, 1), 0);
            assert_eq!(buckets_to_move(0, ms, 0, 324, 1), 0);
            // Never more than the reader has, nor more than three quarters of all.
            assert_eq!(buckets_to_move(20 * ms, 0, 20 * ms, 10, 1), 10);
            assert_eq!(buckets_to_move(20 * ms, 20 * ms, 0, 700, 1), -68);
            assert_eq!(buckets_to_move(20 * ms, 20 * ms, 0, 900, 1), 0);
        }
    }
}

fn partial_status(e: &CaptureError) -> FileStatus {
    if e.is_partial() {
        FileStatus::Partial(e.to_string())
    } else {
        FileStatus::Failed(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn put_in_order_applies_any_permutation() {
        let orders: [&[usize]; 5] = [&[], &[0], &[1, 0], &[2, 0, 1, 3], &[3, 4, 0, 1, 2, 6, 5]];
        for order in orders {
            let mut items: Vec<usize> = (100..100 + order.len()).collect();
            put_in_order(&mut items, order.to_vec());
            let expected: Vec<usize> = order.iter().map(|&i| 100 + i).collect();
            assert_eq!(items, expected, "{order:?}");
        }
    }

    proptest! {
        #[test]
        fn put_in_order_matches_indexing(keys in proptest::collection::vec(any::<u16>(), 0..300)) {
            let mut order: Vec<usize> = (0..keys.len()).collect();
            order.sort_by_key(|&i| keys[i]);
            let expected: Vec<u16> = order.iter().map(|&i| keys[i]).collect();
            let mut items = keys.clone();
            put_in_order(&mut items, order);
            prop_assert_eq!(items, expected);
        }
    }

    /// The two-thread sort (halves, then merge) sorts as one thread does, duplicates included.
    #[test]
    fn sorting_on_two_threads_sorts() {
        for len in [0usize, 1, 8191, 8192, 20_011] {
            // Few distinct values, so that both halves hold many equal ones.
            let items: Vec<(u8, u32)> = (0..len as u32)
                .map(|i| ((i.wrapping_mul(2_654_435_761) >> 24) as u8 % 7, i % 5))
                .collect();
            let mut expected = items.clone();
            expected.sort_unstable();
            assert_eq!(sort_on_threads(items.clone(), 2), expected, "{len} items");
            assert_eq!(sort_on_threads(items, 1), expected, "{len} items");
        }
    }

    #[test]
    fn flow_order_is_a_permutation_in_key_order() {
        let records: Vec<FlowRecord> = (0..20_011u64)
            .map(crate::flow::interleaved_test_record)
            .collect();
        let one = flow_order(&records);
        assert!(one
            .windows(2)
            .all(|w| flow_order_key(&records[w[0]]) <= flow_order_key(&records[w[1]])));
        let mut seen = one.clone();
        seen.sort_unstable();
        assert!(seen.iter().copied().eq(0..records.len()), "a permutation");
    }

    /// A stop request ends reading at the next 4096-packet checkpoint; the flows read until
    /// then still finish, on any thread count, and no later file is opened.
    #[test]
    fn a_stop_request_ends_reading_at_the_next_checkpoint() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let frames: Vec<Vec<u8>> = (0..10_000u32)
            .map(|i| {
                let [_, _, hi, lo] = i.to_be_bytes();
                crate::decode::tests::ipv4_udp([10, 0, hi, lo], [192, 0, 2, 7], 40_000, 53, b"q")
            })
            .collect();
        let bytes = pcap(101, &frames);
        for threads in [1, 2] {
            STOP.store(false, Ordering::Relaxed);
            let mut p = Pipeline::new(PipelineConfig {
                threads,
                ..PipelineConfig::default()
            });
            p.set_stop(Some(&STOP));
            let mut report = FileReport::new(Path::new("test"));
            let reader = CaptureReader::new(&bytes[..]).expect("valid header");
            // The first checkpoint's progress call asks for the stop.
            p.feed_reader(reader, &mut report, &mut |_, _| {
                STOP.store(true, Ordering::Relaxed)
            });
            assert_eq!(report.packets, 4096, "{threads} threads");
            assert!(matches!(report.status, FileStatus::Partial(_)));
            assert!(p.stopped());
            let later = p.feed_file(Path::new("/nonexistent/never-opened.pcap"), &mut |_, _| {});
            assert_eq!(
                later.status,
                FileStatus::Failed("not read: the run was stopped".into())
            );
            let (records, summary) = p.finish();
            assert_eq!(summary.packets_read, 4096);
            assert_eq!(records.len(), 4096, "{threads} threads");
        }
    }

    /// A little-endian pcap of the given (link type applies to all) frames, one a second.
    fn pcap(link: u32, frames: &[Vec<u8>]) -> Vec<u8> {
        let timed: Vec<(u32, Vec<u8>)> = (0u32..).zip(frames.iter().cloned()).collect();
        pcap_at(link, &timed)
    }

    /// A little-endian pcap of `(seconds, frame)` pairs.
    fn pcap_at(link: u32, frames: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut v = vec![
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0,
        ];
        v.extend_from_slice(&link.to_le_bytes());
        for (secs, f) in frames {
            v.extend_from_slice(&secs.to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&(f.len() as u32).to_le_bytes());
            v.extend_from_slice(&(f.len() as u32).to_le_bytes());
            v.extend_from_slice(f);
        }
        v
    }

    /// Captures whose time steps back (merged captures, clock jumps; the corpus has one): every
    /// table's sweeps go by the run's clock, so a flow ends when that clock passes its timeout
    /// whichever table holds it, and every thread count gives the flows of one table. Here 60 UDP flows send at 1000 s, a clock
    /// packet at 5000 s, then the 60 flows again at 1010 s: by the run's clock they timed out,
    /// so each is two flows, though only the table that holds the clock packet saw 5000 s, and
    /// at the end the second 60 count as timed out too.
    #[test]
    fn time_stepping_back_gives_the_same_flows_on_any_thread_count() {
        let flow = |i: u8| {
            crate::decode::tests::ipv4_udp([10, 0, 1, i], [192, 0, 2, 7], 40_000, 53, b"query")
        };
        let mut frames: Vec<(u32, Vec<u8>)> = (0..60).map(|i| (1000, flow(i))).collect();
        frames.push((
            5000,
            crate::decode::tests::ipv4_udp([10, 9, 9, 9], [192, 0, 2, 8], 1, 2, b"clock"),
        ));
        frames.extend((0..60).map(|i| (1010, flow(i))));
        let v = pcap_at(101, &frames);
        let (one, summary, _) = run_threads(&v, 1);
        assert_eq!(
            one.len(),
            121,
            "each of the 60 flows twice, and the clock packet"
        );
        // All 120 timed out by the run's clock (the last 60 at the end); the clock flow did not.
        assert_eq!(summary.flow_counters.idle_expired, 120);
        for threads in [2, 3] {
            let (many, s, _) = run_threads(&v, threads);
            assert_eq!(rows(&many), rows(&one), "{threads} threads");
            assert_eq!(s.flow_counters.idle_expired, 120, "{threads} threads");
        }
    }

    /// Where time steps back twice, a sweep must end the same flows in every table: here one
    /// flow far ahead in time heads the single table's recency list, 40 flows from a step back
    /// sit behind it, the clock moves on (a sweep that walks the list from its head stops at
    /// the first flow that has not timed out) and the 40 send again, 50 s after their first
    /// packet. One table keeps them; a table without the flow ahead in time must too.
    #[test]
    fn sweeps_after_a_step_back_end_the_same_flows_in_every_table() {
        let udp = |client: [u8; 4], server: u8| {
            crate::decode::tests::ipv4_udp(client, [192, 0, 2, server], 1000, 53, b"q")
        };
        let mut frames = vec![(10_000, udp([10, 0, 0, 1], 1))];
        frames.extend((0..40).map(|i| (1000, udp([10, 1, 0, i], 2))));
        frames.push((10_002, udp([10, 2, 0, 1], 3)));
        frames.extend((0..40).map(|i| (1050, udp([10, 1, 0, i], 2))));
        let capture = pcap_at(101, &frames);
        let (one, _, _) = run_threads(&capture, 1);
        for threads in [2, 3] {
            let (many, _, _) = run_threads(&capture, threads);
            assert!(
                rows(&many) == rows(&one),
                "{threads} threads: {} flows, one thread {}",
                many.len(),
                one.len()
            );
        }
    }

    /// Rows rendered where flows end, sorted by their keys, are the collected records rendered
    /// in their numbered order: on one thread and on workers.
    #[test]
    fn rows_rendered_where_flows_end_are_the_records_in_order() {
        /// The row, and the client port as the attempt's platform (to check that the tag
        /// travels with its row).
        fn render(r: &FlowRecord, buf: &mut Vec<u8>, _: &mut String) -> Option<AttemptTag> {
            let row = format!(
                "{}:{} {:?} {}\n",
                r.client_ip, r.client_port, r.packets, r.label.protocol
            );
            buf.extend_from_slice(row.as_bytes());
            Some(AttemptTag {
                platform: u32::from(r.client_port),
                result: crate::stats::AttemptResult::NoReply,
            })
        }
        let frames: Vec<Vec<u8>> = (0..4000u32)
            .map(|i| {
                let client = [10, 1, (i % 11) as u8, 7];
                let payload = vec![i as u8; (i % 70) as usize];
                let port = 30000 + (i % 97) as u16;
                crate::decode::tests::ipv4_udp(client, [198, 51, 100, 3], port, 53, &payload)
            })
            .collect();
        let bytes = pcap(101, &frames);
        for threads in [1, 2, 3] {
            let (records, _, _) = run_threads(&bytes, threads);
            let mut scratch = String::new();
            let expected: Vec<Vec<u8>> = records
                .iter()
                .map(|r| {
                    let mut row = Vec::new();
                    render(r, &mut row, &mut scratch);
                    row
                })
                .collect();

            let batches = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let sink = std::rc::Rc::clone(&batches);
            let config = PipelineConfig {
                threads,
                ..PipelineConfig::default()
            };
            let mut p = Pipeline::with_rows(
                config,
                Arc::new(render),
                Box::new(move |b| sink.borrow_mut().push(b)),
            );
            let mut report = FileReport::new(Path::new("test"));
            p.feed_reader(
                CaptureReader::new(&bytes[..]).expect("header"),
                &mut report,
                &mut |_, _| {},
            );
            let (none, summary) = p.finish();
            assert!(none.is_empty(), "rows, not records");
            let batches = batches.borrow();
            let mut rows: Vec<(&RenderedRow, &RowBatch)> = batches
                .iter()
                .flat_map(|b| b.rows.iter().map(move |r| (r, b)))
                .collect();
            rows.sort_by_key(|(r, _)| r.key);
            let got: Vec<Vec<u8>> = rows.iter().map(|(r, b)| b.row(r).to_vec()).collect();
            for (row, batch) in &rows {
                let port = row.attempt.map(|a| a.platform.to_string());
                let text = String::from_utf8_lossy(batch.row(row)).into_owned();
                assert!(
                    port.is_some_and(|p| text.contains(&format!(":{p} "))),
                    "{text}"
                );
            }
            assert_eq!(summary.flows, expected.len() as u64);
            assert!(expected.len() > 500, "{} flows", expected.len());
            assert!(got == expected, "{threads} threads");
        }
    }

    /// Collected records keep their labels for the whole run, without the growth room the
    /// pushes left (`Label::merge` no longer shrinks: rows are rendered and dropped at once).
    #[test]
    fn collected_labels_hold_no_growth_room() {
        let frames: Vec<Vec<u8>> = (0..600u32)
            .map(|i| {
                let client = [10, 2, (i % 5) as u8, 9];
                // A DNS query for a.example: the DNS detector matches with evidence.
                let mut query = vec![(i >> 8) as u8, i as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
                query.extend_from_slice(b"\x01a\x07example\x00\x00\x01\x00\x01");
                let port = 20000 + (i % 40) as u16;
                crate::decode::tests::ipv4_udp(client, [192, 0, 2, 53], port, 53, &query)
            })
            .collect();
        let bytes = pcap(101, &frames);
        for threads in [1, 2] {
            let (records, _, _) = run_threads(&bytes, threads);
            let with_evidence = records
                .iter()
                .filter(|r| {
                    r.label
                        .matches
                        .iter()
                        .any(|m| !m.verdict.evidence.0.is_empty())
                })
                .count();
            assert!(
                with_evidence > 0,
                "no flow has evidence: the test checks nothing"
            );
            for r in &records {
                let matches = &r.label.matches;
                assert_eq!(matches.capacity(), matches.len(), "{threads} threads");
                for m in matches {
                    let facts = &m.verdict.evidence.0;
                    assert_eq!(facts.capacity(), facts.len(), "{threads} threads");
                }
            }
        }
    }

    fn run_threads(bytes: &[u8], threads: usize) -> (Vec<FlowRecord>, RunSummary, u64) {
        run_filtered(bytes, threads, None)
    }

    fn run_filtered(
        bytes: &[u8],
        threads: usize,
        filter: Option<&str>,
    ) -> (Vec<FlowRecord>, RunSummary, u64) {
        let mut p = Pipeline::new(PipelineConfig {
            threads,
            ..PipelineConfig::default()
        });
        p.set_filter(filter.map(|f| PacketFilter::parse(f).expect("a valid filter")));
        let mut report = FileReport::new(Path::new("test"));
        let reader = CaptureReader::new(bytes).expect("valid header");
        p.feed_reader(reader, &mut report, &mut |_, _| {});
        let (records, summary) = p.finish();
        let in_flows = records.iter().map(|r| r.packets[0] + r.packets[1]).sum();
        (records, summary, in_flows)
    }

    fn run(bytes: &[u8]) -> (RunSummary, u64) {
        let (_, summary, in_flows) = run_threads(bytes, 1);
        (summary, in_flows)
    }

    /// Frames (raw IP) that are UDP or have port 443 on either side, read from their headers.
    fn frames_kept(frames: &[Vec<u8>]) -> u64 {
        frames
            .iter()
            .filter(|f| {
                let ports = [f[20..22].to_vec(), f[22..24].to_vec()];
                f[9] == 17 || ports.iter().any(|p| p[..] == 443u16.to_be_bytes())
            })
            .count() as u64
    }

    fn rows(records: &[FlowRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| crate::cli::flow_row_json(r, &Default::default()).to_string())
            .collect()
    }

    /// Mapped files (workers get offsets) and streamed ones (workers get copies), several files
    /// in one run: the same flows for any thread count, and packets add up.
    #[test]
    fn mapped_and_streamed_files_give_the_same_flows_for_any_thread_count() {
        let frames = |seed: u8| -> Vec<Vec<u8>> {
            (0..3000u32)
                .map(|i| {
                    let client = [10, 0, (i % 7) as u8, seed];
                    let port = 40000 + (i % 50) as u16;
                    let payload = vec![seed ^ (i as u8); (i % 90) as usize];
                    crate::decode::tests::ipv4_udp(client, [192, 0, 2, 9], port, 443, &payload)
                })
                .collect()
        };
        let dir = std::env::temp_dir().join(format!("tw-pipeline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let plain_a = dir.join("a.pcap");
        let plain_b = dir.join("b.pcap");
        let gzipped = dir.join("c.pcap.gz");
        std::fs::write(&plain_a, pcap(101, &frames(1))).expect("write");
        std::fs::write(&plain_b, pcap(101, &frames(2))).expect("write");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &pcap(101, &frames(3))).expect("gzip");
        std::fs::write(&gzipped, gz.finish().expect("gzip")).expect("write");

        let run = |threads: usize| {
            let mut p = Pipeline::new(PipelineConfig {
                threads,
                ..PipelineConfig::default()
            });
            for path in [&plain_a, &gzipped, &plain_b] {
                p.feed_file(path, &mut |_, _| {});
            }
            let (records, summary) = p.finish();
            let in_flows: u64 = records.iter().map(|r| r.packets[0] + r.packets[1]).sum();
            assert_eq!(summary.packets_read, 9000);
            assert_eq!(
                summary.packets_read,
                in_flows + summary.skipped.total() + summary.packets_filtered
            );
            rows(&records)
        };
        let one = run(1);
        assert_eq!(one, run(2), "two threads");
        assert_eq!(one, run(4), "four threads");
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest! {
        /// Raw IP frames with a valid-looking IPv4/TCP or UDP header and arbitrary payloads reach
        /// every fingerprinter; nothing panics and packets add up.
        #[test]
        fn whole_pipeline_never_panics_and_counts_add_up(
            frames in proptest::collection::vec((any::<bool>(), 0u16..4, proptest::collection::vec(any::<u8>(), 0..300)), 1..40)
        ) {
            let ports = [443u16, 1194, 51820, 500];
            let frames: Vec<Vec<u8>> = frames
                .into_iter()
                .enumerate()
                .map(|(i, (tcp, port, payload))| {
                    let (a, b) = ([10, 0, 0, 1], [192, 0, 2, 1]);
                    let (src, dst, sp, dp) = if i % 2 == 0 { (a, b, 40000, ports[port as usize]) } else { (b, a, ports[port as usize], 40000) };
                    if tcp {
                        crate::decode::tests::ipv4_tcp(src, dst, sp, dp, 0x18, &payload)
                    } else {
                        crate::decode::tests::ipv4_udp(src, dst, sp, dp, &payload)
                    }
                })
                .collect();
            let capture = pcap(101, &frames);
            let (one, summary, in_flows) = run_threads(&capture, 1);
            prop_assert_eq!(summary.packets_read, frames.len() as u64);
            prop_assert_eq!(summary.packets_read, in_flows + summary.skipped.total() + summary.packets_filtered);
            let (three, _, _) = run_threads(&capture, 3);
            prop_assert_eq!(rows(&one), rows(&three), "output must not depend on the thread count");
            // With a filter: the packets it passes, and only those, make flows, on any thread count.
            let passing = frames_kept(&frames);
            let (one, summary, in_flows) = run_filtered(&capture, 1, Some("udp or port 443"));
            prop_assert_eq!(in_flows, passing);
            prop_assert_eq!(summary.packets_filtered, frames.len() as u64 - passing);
            let (three, _, _) = run_filtered(&capture, 3, Some("udp or port 443"));
            prop_assert_eq!(rows(&one), rows(&three));
        }

        /// Completely arbitrary frames under every link type.
        #[test]
        fn arbitrary_frames_are_skipped_or_attributed(
            link in prop_oneof![Just(0u32), Just(1), Just(101), Just(113), Just(276), Just(4242)],
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..30)
        ) {
            let (summary, in_flows) = run(&pcap(link, &frames));
            prop_assert_eq!(summary.packets_read, in_flows + summary.skipped.total() + summary.packets_filtered);
        }
    }
}
