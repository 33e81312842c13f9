//! The offline pipeline: capture files -> decoded packets -> flows with labels.
//!
//! Contract: `packets_read == packets in flows + skipped (by reason)`, for every run. A file that
//! cannot be opened is reported and the run goes on; a file that breaks mid-way keeps every
//! complete record and reports where it stopped.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::decode::{self, SkipCounts};
use crate::fingerprint::registry::REGISTRY;
use crate::flow::{FlowConfig, FlowCounters, FlowRecord, FlowTable};
use crate::ingest::{self, CaptureError, CaptureFormat, CaptureReader, OpenError};

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
/// the hot path). Flows are numbered after the run in order of (first packet time, endpoints),
/// so the output is identical for any number of threads (as long as the flow cap, which is
/// split between workers, is not reached).
pub struct Pipeline {
    sink: Sink,
    summary: RunSummary,
    /// Flows created so far, for progress displays (updated every few thousand packets).
    flows_seen: Arc<AtomicU64>,
}

enum Sink {
    Local {
        table: Box<FlowTable>,
        records: Vec<FlowRecord>,
    },
    Workers(parallel::Dispatcher),
}

impl Sink {
    fn accept(&mut self, ts: i64, link_type: u16, frame: &[u8], pkt: &decode::DecodedPacket<'_>) {
        match self {
            Sink::Local { table, records } => table.process(ts, pkt, &mut |r| records.push(r)),
            Sink::Workers(d) => d.dispatch(ts, link_type, frame, pkt),
        }
    }
}

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
        let flows_seen = Arc::new(AtomicU64::new(0));
        let sink = if config.threads <= 1 {
            Sink::Local {
                table: Box::new(FlowTable::new(config.flow, REGISTRY)),
                records: Vec::new(),
            }
        } else {
            Sink::Workers(parallel::Dispatcher::start(config, Arc::clone(&flows_seen)))
        };
        Pipeline {
            sink,
            summary: RunSummary::default(),
            flows_seen,
        }
    }

    /// A counter of the flows created so far (approximate while workers run), for progress.
    pub fn flows_seen(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.flows_seen)
    }

    /// Reads one capture file. `progress` is told the bytes and packets consumed since its last
    /// call (every few thousand packets).
    pub fn feed_file(&mut self, path: &Path, progress: &mut impl FnMut(u64, u64)) -> &FileReport {
        let mut report = FileReport::new(path);
        match ingest::open_capture(path) {
            Err(OpenError::Io(e)) => report.status = FileStatus::Failed(e.to_string()),
            Err(OpenError::Capture(e)) => report.status = FileStatus::Failed(e.to_string()),
            Ok(reader) => self.feed_reader(reader, &mut report, progress),
        }
        self.summary.files.push(report);
        self.summary.files.last().expect("just pushed")
    }

    /// Reads every record of an open capture, filling in `report`.
    pub fn feed_reader<R: BufRead>(
        &mut self,
        mut reader: CaptureReader<R>,
        report: &mut FileReport,
        progress: &mut impl FnMut(u64, u64),
    ) {
        report.format = Some(reader.format());
        let (mut last_progress, mut last_packets) = (0u64, 0u64);
        loop {
            match reader.next_packet() {
                Ok(Some(packet)) => {
                    report.packets += 1;
                    self.summary.packets_read += 1;
                    let ts = packet.ts_nanos;
                    match decode::decode(packet.link_type, packet.data) {
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
                        if let Sink::Local { table, .. } = &self.sink {
                            self.flows_seen
                                .store(table.counters().flows_created, Ordering::Relaxed);
                        }
                        progress(off - last_progress, report.packets - last_packets);
                        last_progress = off;
                        last_packets = report.packets;
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
        let (mut records, counters) = match self.sink {
            Sink::Local {
                mut table,
                mut records,
            } => {
                table.finish_all(&mut |r| records.push(r));
                (records, table.counters())
            }
            Sink::Workers(d) => d.finish(),
        };
        number_flows(&mut records);
        self.summary.flow_counters = counters;
        self.summary.flows = records.len() as u64;
        (records, self.summary)
    }
}

/// Sorts flows by (first packet time, endpoints, protocol) and numbers them from 0: an order that
/// does not depend on which worker saw which flow.
pub fn number_flows(records: &mut [FlowRecord]) {
    records.sort_by(|a, b| {
        (
            a.first_ts,
            a.client_ip,
            a.client_port,
            a.server_ip,
            a.server_port,
            a.ip_proto,
            a.last_ts,
            a.id,
        )
            .cmp(&(
                b.first_ts,
                b.client_ip,
                b.client_port,
                b.server_ip,
                b.server_port,
                b.ip_proto,
                b.last_ts,
                b.id,
            ))
    });
    for (i, r) in records.iter_mut().enumerate() {
        r.id = i as u64;
    }
}

mod parallel {
    //! Dispatch of packets to worker threads by flow hash, in recycled batches.

    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
    use std::sync::Arc;
    use std::thread::JoinHandle;

    use super::PipelineConfig;
    use crate::decode::{self, DecodedPacket};
    use crate::fingerprint::registry::REGISTRY;
    use crate::flow::{FlowConfig, FlowCounters, FlowKey, FlowRecord, FlowTable};

    const BATCH_PACKETS: usize = 4096;
    /// Batches in flight per worker (bounds memory and keeps workers busy).
    const BATCHES_IN_FLIGHT: usize = 4;

    /// Frames copied back to back with their (ts, link type, start, len).
    #[derive(Default)]
    struct Batch {
        bytes: Vec<u8>,
        frames: Vec<(i64, u16, usize, usize)>,
    }

    struct Worker {
        current: Batch,
        to_worker: SyncSender<Batch>,
        recycled: Receiver<Batch>,
        handle: JoinHandle<(Vec<FlowRecord>, FlowCounters)>,
    }

    pub struct Dispatcher {
        workers: Vec<Worker>,
        hasher: foldhash::fast::FixedState,
    }

    impl Dispatcher {
        pub fn start(config: PipelineConfig, flows_seen: Arc<AtomicU64>) -> Self {
            // The calling thread reads and decodes; it counts as one of the threads.
            let n = config.threads.saturating_sub(1).max(1);
            let flow = FlowConfig {
                max_flows: (config.flow.max_flows / n).max(1),
                ..config.flow
            };
            let workers = (0..n)
                .map(|_| {
                    let (to_worker, from_reader) = sync_channel::<Batch>(BATCHES_IN_FLIGHT);
                    let (to_reader, recycled) = sync_channel::<Batch>(BATCHES_IN_FLIGHT + 1);
                    for _ in 0..BATCHES_IN_FLIGHT {
                        let _ = to_reader.send(Batch::default());
                    }
                    let flows_seen = Arc::clone(&flows_seen);
                    let handle =
                        std::thread::spawn(move || work(flow, from_reader, to_reader, &flows_seen));
                    Worker {
                        current: Batch::default(),
                        to_worker,
                        recycled,
                        handle,
                    }
                })
                .collect();
            Dispatcher {
                workers,
                hasher: foldhash::fast::FixedState::default(),
            }
        }

        pub fn dispatch(&mut self, ts: i64, link_type: u16, frame: &[u8], pkt: &DecodedPacket<'_>) {
            let (key, _) =
                FlowKey::canonical(pkt.src, pkt.src_port, pkt.dst, pkt.dst_port, pkt.ip_proto);
            let i = (self.hasher.hash_one(key) % self.workers.len() as u64) as usize;
            let w = &mut self.workers[i];
            let start = w.current.bytes.len();
            w.current.bytes.extend_from_slice(frame);
            w.current.frames.push((ts, link_type, start, frame.len()));
            if w.current.frames.len() >= BATCH_PACKETS {
                Self::send(w);
            }
        }

        fn send(w: &mut Worker) {
            let next = w.recycled.recv().unwrap_or_default();
            let full = std::mem::replace(&mut w.current, next);
            // A worker that died (panicked) is reported when it is joined.
            let _ = w.to_worker.send(full);
        }

        pub fn finish(mut self) -> (Vec<FlowRecord>, FlowCounters) {
            let mut records = Vec::new();
            let mut counters = FlowCounters::default();
            for w in &mut self.workers {
                if !w.current.frames.is_empty() {
                    Self::send(w);
                }
            }
            for w in self.workers {
                drop(w.to_worker);
                match w.handle.join() {
                    Ok((r, c)) => {
                        records.extend(r);
                        counters.merge(&c);
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            (records, counters)
        }
    }

    fn work(
        flow: FlowConfig,
        batches: Receiver<Batch>,
        recycle: SyncSender<Batch>,
        flows_seen: &AtomicU64,
    ) -> (Vec<FlowRecord>, FlowCounters) {
        let mut table = FlowTable::new(flow, REGISTRY);
        let mut records = Vec::new();
        let mut reported = 0u64;
        for mut batch in batches {
            for &(ts, link_type, start, len) in &batch.frames {
                let frame = &batch.bytes[start..start + len];
                // The reader decoded this frame successfully; decoding is deterministic.
                if let Ok(pkt) = decode::decode(link_type, frame) {
                    table.process(ts, &pkt, &mut |r| records.push(r));
                }
            }
            let created = table.counters().flows_created;
            flows_seen.fetch_add(created - reported, Ordering::Relaxed);
            reported = created;
            batch.bytes.clear();
            batch.frames.clear();
            let _ = recycle.try_send(batch);
        }
        table.finish_all(&mut |r| records.push(r));
        (records, table.counters())
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

    /// A little-endian pcap of the given (link type applies to all) frames.
    fn pcap(link: u32, frames: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0,
        ];
        v.extend_from_slice(&link.to_le_bytes());
        for (i, f) in frames.iter().enumerate() {
            v.extend_from_slice(&(i as u32).to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&(f.len() as u32).to_le_bytes());
            v.extend_from_slice(&(f.len() as u32).to_le_bytes());
            v.extend_from_slice(f);
        }
        v
    }

    fn run_threads(bytes: &[u8], threads: usize) -> (Vec<FlowRecord>, RunSummary, u64) {
        let mut p = Pipeline::new(PipelineConfig {
            threads,
            ..PipelineConfig::default()
        });
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

    fn rows(records: &[FlowRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| crate::cli::flow_row_json(r).to_string())
            .collect()
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
            prop_assert_eq!(summary.packets_read, in_flows + summary.skipped.total());
            let (three, _, _) = run_threads(&capture, 3);
            prop_assert_eq!(rows(&one), rows(&three), "output must not depend on the thread count");
        }

        /// Completely arbitrary frames under every link type.
        #[test]
        fn arbitrary_frames_are_skipped_or_attributed(
            link in prop_oneof![Just(0u32), Just(1), Just(101), Just(113), Just(276), Just(4242)],
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..30)
        ) {
            let (summary, in_flows) = run(&pcap(link, &frames));
            prop_assert_eq!(summary.packets_read, in_flows + summary.skipped.total());
        }
    }
}
