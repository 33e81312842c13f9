//! The offline pipeline: capture files -> decoded packets -> flows with labels.
//!
//! Contract: `packets_read == packets in flows + skipped (by reason)`, for every run. A file that
//! cannot be opened is reported and the run goes on; a file that breaks mid-way keeps every
//! complete record and reports where it stopped.

use std::io::Read;
use std::path::{Path, PathBuf};

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
        self.files.iter().filter(|f| matches!(f.status, FileStatus::Failed(_))).count()
    }
    pub fn partial_files(&self) -> usize {
        self.files.iter().filter(|f| matches!(f.status, FileStatus::Partial(_))).count()
    }
}

/// Pipeline settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct PipelineConfig {
    pub flow: FlowConfig,
}

/// Runs captures through decode and the flow table, one file after another.
pub struct Pipeline {
    table: FlowTable,
    summary: RunSummary,
}

impl FileReport {
    /// A report for an input about to be read.
    pub fn new(path: &Path) -> Self {
        FileReport { path: path.to_path_buf(), format: None, packets: 0, bytes: 0, status: FileStatus::Complete }
    }
}

impl Pipeline {
    pub fn new(config: PipelineConfig) -> Self {
        Pipeline { table: FlowTable::new(config.flow, REGISTRY), summary: RunSummary::default() }
    }

    /// Reads one capture file; finished flows go to `emit`. `progress` is told the bytes consumed.
    pub fn feed_file(&mut self, path: &Path, emit: &mut impl FnMut(FlowRecord), progress: &mut impl FnMut(u64)) -> &FileReport {
        let mut report = FileReport::new(path);
        match ingest::open_capture(path) {
            Err(OpenError::Io(e)) => report.status = FileStatus::Failed(e.to_string()),
            Err(OpenError::Capture(e)) => report.status = FileStatus::Failed(e.to_string()),
            Ok(reader) => self.feed_reader(reader, &mut report, emit, progress),
        }
        self.summary.files.push(report);
        self.summary.files.last().expect("just pushed")
    }

    /// Reads every record of an open capture into the flow table, filling in `report`.
    pub fn feed_reader<R: Read>(
        &mut self,
        mut reader: CaptureReader<R>,
        report: &mut FileReport,
        emit: &mut impl FnMut(FlowRecord),
        progress: &mut impl FnMut(u64),
    ) {
        report.format = Some(reader.format());
        let mut last_progress = 0u64;
        loop {
            match reader.next_packet() {
                Ok(Some(packet)) => {
                    report.packets += 1;
                    self.summary.packets_read += 1;
                    let ts = packet.ts_nanos;
                    match decode::decode(packet.link_type, packet.data) {
                        Ok(decoded) => {
                            self.summary.first_ts = Some(self.summary.first_ts.map_or(ts, |f| f.min(ts)));
                            self.summary.last_ts = Some(self.summary.last_ts.map_or(ts, |l| l.max(ts)));
                            self.table.process(ts, &decoded, emit);
                        }
                        Err(reason) => self.summary.skipped.add(reason),
                    }
                    if report.packets % 4096 == 0 {
                        let off = reader.offset();
                        progress(off - last_progress);
                        last_progress = off;
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
        progress(report.bytes - last_progress);
    }

    /// Ends all live flows and returns the run's totals.
    pub fn finish(mut self, emit: &mut impl FnMut(FlowRecord)) -> RunSummary {
        self.table.finish_all(emit);
        self.summary.flow_counters = self.table.counters();
        self.summary.flows = self.summary.flow_counters.flows_created;
        self.summary
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
        let mut v = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0];
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

    fn run(bytes: &[u8]) -> (RunSummary, u64) {
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut report = FileReport::new(Path::new("test"));
        let mut in_flows = 0u64;
        let reader = CaptureReader::new(bytes).expect("valid header");
        p.feed_reader(reader, &mut report, &mut |r| in_flows += r.packets[0] + r.packets[1], &mut |_| {});
        let summary = p.finish(&mut |r| in_flows += r.packets[0] + r.packets[1]);
        (summary, in_flows)
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
            let (summary, in_flows) = run(&pcap(101, &frames));
            prop_assert_eq!(summary.packets_read, frames.len() as u64);
            prop_assert_eq!(summary.packets_read, in_flows + summary.skipped.total());
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
