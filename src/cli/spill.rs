//! Flow rows sorted on disk: `tunnelwatch flows` writes JSONL/CSV in the same order and with the
//! same numbers as [`crate::pipeline::number_flows`] gives, and `analyze` its flows table, while
//! holding at most [`SPILL_ROWS`] finished flows in memory. The rows come without their numbers:
//! rendered by the threads that ended the flows ([`RowBatch`]), or one at a time
//! ([`FlowSpill::push_row`]). Beyond [`SPILL_ROWS`], the rows held are sorted and written to a
//! temporary run file, and the runs are merged at the end. A flood of millions of one-packet
//! flows therefore costs the flow table's cap, not a row per flow.
//!
//! A run file is a sequence of entries: the 63-byte sort key, a 4-byte big-endian row length,
//! and the row minus its leading `id` (which is only known after the merge: [`push_id_prefix`]
//! writes it for `flows`). Keys are [`crate::pipeline::flow_order_key`], the order
//! `number_flows` uses.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use super::output::{push_id_prefix, RowFormat};
use crate::intel::platforms::PlatformMatcher;
use crate::pipeline::{sort_on_threads, RowBatch, FLOW_ORDER_KEY_LEN};
use crate::stats::{AttemptTag, PlatformTally, ALL_RESULTS};

/// Finished flows kept in memory before a sorted run goes to disk (their rows, some 0.4 KB
/// each, and 90 bytes of key and place): runs of up to this many flows never touch disk.
pub const SPILL_ROWS: usize = 100_000;

const KEY_LEN: usize = FLOW_ORDER_KEY_LEN;
type Key = [u8; KEY_LEN];

/// A row waiting in memory: its sort key, then where its bytes are. Ordered by key, and among
/// equal keys by arrival, so every sort gives one order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    key: Key,
    batch: usize,
    start: usize,
    end: usize,
}

/// Collects finished flows' rows and writes them sorted and numbered.
pub struct FlowSpill {
    /// Rows held before a run is written ([`SPILL_ROWS`]; smaller in tests).
    spill_rows: usize,
    threads: usize,
    pending: Vec<Pending>,
    /// The bytes of the batches that `pending` rows point into.
    batches: Vec<Vec<u8>>,
    /// The batch [`FlowSpill::push_row`] appends to (`None`: start one).
    own_batch: Option<usize>,
    runs: Vec<PathBuf>,
    dir: Option<PathBuf>,
    protocols: BTreeMap<String, u64>,
    /// Platform attempts of the rendered rows, by platform (its place in the renderer's
    /// matcher) and result.
    attempts: BTreeMap<u32, [u64; 7]>,
    /// The first spill error; reported by [`FlowSpill::finish`].
    error: Option<io::Error>,
}

impl FlowSpill {
    pub fn new(threads: usize) -> Self {
        FlowSpill {
            spill_rows: SPILL_ROWS,
            threads: threads.max(1),
            pending: Vec::new(),
            batches: Vec::new(),
            own_batch: None,
            runs: Vec::new(),
            dir: None,
            protocols: BTreeMap::new(),
            attempts: BTreeMap::new(),
            error: None,
        }
    }

    /// Rows held in memory before a sorted run goes to disk (tests make runs small).
    #[cfg(test)]
    pub fn set_spill_rows(&mut self, rows: usize) {
        self.spill_rows = rows.max(1);
    }

    /// Sorted runs written to disk so far.
    #[cfg(test)]
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Flows per protocol seen so far (for the run summary).
    pub fn protocol_counts(&self) -> &BTreeMap<String, u64> {
        &self.protocols
    }

    /// Platform attempts of the rows pushed so far, whose tags came from `matcher`.
    pub fn platform_tally(&self, matcher: &PlatformMatcher) -> PlatformTally {
        let mut tally = PlatformTally::default();
        for (&platform, counts) in &self.attempts {
            for (result, &n) in ALL_RESULTS.into_iter().zip(counts) {
                if n > 0 {
                    tally.add_tag(matcher, AttemptTag { platform, result }, n);
                }
            }
        }
        tally
    }

    /// Takes a batch of rendered flows (in any order).
    pub fn push(&mut self, batch: RowBatch) {
        let index = self.batches.len();
        for row in &batch.rows {
            super::output::count_protocol(&mut self.protocols, row.protocol);
            if let Some(tag) = row.attempt {
                let counts = self.attempts.entry(tag.platform).or_default();
                if let Some(n) = counts.get_mut(tag.result.index()) {
                    *n += 1;
                }
            }
            self.pending.push(Pending {
                key: row.key,
                batch: index,
                start: row.start,
                end: row.end,
            });
        }
        self.batches.push(batch.bytes);
        self.spill_if_full();
    }

    /// Takes one flow's row (any bytes), to come out in the order of its `key`
    /// ([`crate::pipeline::flow_order_key`]).
    pub fn push_row(&mut self, key: Key, protocol: &str, row: &[u8]) {
        super::output::count_protocol(&mut self.protocols, protocol);
        let batch = match self.own_batch {
            Some(i) => i,
            None => {
                self.batches.push(Vec::new());
                let i = self.batches.len() - 1;
                self.own_batch = Some(i);
                i
            }
        };
        let Some(bytes) = self.batches.get_mut(batch) else {
            return;
        };
        let start = bytes.len();
        bytes.extend_from_slice(row);
        self.pending.push(Pending {
            key,
            batch,
            start,
            end: bytes.len(),
        });
        self.spill_if_full();
    }

    fn spill_if_full(&mut self) {
        if self.pending.len() >= self.spill_rows && self.error.is_none() {
            if let Err(e) = self.spill() {
                self.error = Some(e);
            }
        }
    }

    fn row(&self, p: &Pending) -> &[u8] {
        self.batches
            .get(p.batch)
            .and_then(|b| b.get(p.start..p.end))
            .unwrap_or_default()
    }

    fn spill(&mut self) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let sorted = in_order(&pending, self.threads);
        let dir = match &self.dir {
            Some(d) => d.clone(),
            None => {
                let d = std::env::temp_dir().join(format!(
                    "tunnelwatch-spill-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos())
                ));
                std::fs::create_dir_all(&d)?;
                self.dir = Some(d.clone());
                d
            }
        };
        let path = dir.join(format!("run-{}", self.runs.len()));
        let mut w = BufWriter::new(File::create(&path)?);
        for &p in &sorted {
            let row = self.row(p);
            w.write_all(&p.key)?;
            w.write_all(&u32::try_from(row.len()).unwrap_or(u32::MAX).to_be_bytes())?;
            w.write_all(row)?;
        }
        w.flush()?;
        self.batches.clear();
        self.own_batch = None;
        self.runs.push(path);
        Ok(())
    }

    /// Writes every flow, sorted and numbered from 0, to `out` as `format` rows (the rows
    /// must be rendered without their ids for that format: [`super::output::row_renderer`]).
    pub fn finish(mut self, out: &mut impl Write, format: RowFormat) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if format == RowFormat::Csv {
            writeln!(out, "{}", super::FLOW_COLUMNS.join(","))?;
        }
        if self.runs.is_empty() {
            return self.write_in_memory(out, format);
        }
        // Runs on disk are merged; rows are gathered into large writes.
        let mut buf = Vec::with_capacity(WRITE_BUFFER);
        self.finish_with(|id, _, row| {
            push_numbered_row(&mut buf, format, id, row);
            if buf.len() >= WRITE_BUFFER {
                out.write_all(&buf)?;
                buf.clear();
            }
            Ok(())
        })?;
        out.write_all(&buf)
    }

    /// [`FlowSpill::finish`] where every row is in memory, on the spill's threads. Gathering
    /// the rows (scattered over the batches, in arrival order) into writes is work at the end
    /// of the run: about 9 ms of a 12 ms write phase on the reference capture, 8 ms in all on
    /// two threads. Chunks of [`CHUNK_ROWS`] rows go round the threads, this one included (the
    /// only one on one thread), and are written in order as they come.
    fn write_in_memory(mut self, out: &mut impl Write, format: RowFormat) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let rows = in_order(&pending, self.threads);
        let chunks = rows.len().div_ceil(CHUNK_ROWS);
        let turns = self.threads;
        let this = &self;
        let rows = &rows;
        let gather = move |chunk: usize, buf: &mut Vec<u8>| {
            buf.clear();
            let first = chunk * CHUNK_ROWS;
            let end = (first + CHUNK_ROWS).min(rows.len());
            for (id, p) in rows[first..end].iter().enumerate() {
                push_numbered_row(buf, format, (first + id) as u64, this.row(p));
            }
        };
        std::thread::scope(|scope| {
            // Per helper: gathered chunks one way, emptied buffers back.
            let mut helpers = Vec::with_capacity(turns - 1);
            for turn in 1..turns {
                let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
                let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
                scope.spawn(move || {
                    for chunk in (turn..chunks).step_by(turns) {
                        let mut buf = empty_rx.try_recv().unwrap_or_default();
                        gather(chunk, &mut buf);
                        if full_tx.send(buf).is_err() {
                            return; // the writer stopped at an error
                        }
                    }
                });
                helpers.push((full_rx, empty_tx));
            }
            let mut own = Vec::new();
            for chunk in 0..chunks {
                match chunk % turns {
                    0 => {
                        gather(chunk, &mut own);
                        out.write_all(&own)?;
                    }
                    turn => {
                        let (full, empty) = &helpers[turn - 1];
                        let buf = full.recv().map_err(|_| {
                            io::Error::other("a thread gathering flow rows stopped")
                        })?;
                        out.write_all(&buf)?;
                        let _ = empty.send(buf);
                    }
                }
            }
            Ok(())
        })
    }

    /// Hands every row to `each` in order, with its number (from 0) and key.
    pub fn finish_with(
        mut self,
        mut each: impl FnMut(u64, &Key, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let pending = std::mem::take(&mut self.pending);
        let last = in_order(&pending, self.threads);
        if self.runs.is_empty() {
            for (id, &p) in last.iter().enumerate() {
                each(id as u64, &p.key, self.row(p))?;
            }
            return Ok(());
        }
        // K-way merge of the runs and the in-memory remainder.
        let mut readers: Vec<RunReader> = self
            .runs
            .iter()
            .map(|p| File::open(p).map(|f| RunReader::File(BufReader::new(f))))
            .collect::<io::Result<_>>()?;
        readers.push(RunReader::Memory(last.into_iter()));
        let mut heads: Vec<Option<(Key, Vec<u8>)>> = Vec::with_capacity(readers.len());
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            let head = r.next_entry(&self)?;
            if let Some((key, _)) = &head {
                heap.push(Reverse((*key, i)));
            }
            heads.push(head);
        }
        let mut id = 0u64;
        while let Some(Reverse((_, i))) = heap.pop() {
            if let Some((key, row)) = heads[i].take() {
                each(id, &key, &row)?;
                id += 1;
            }
            heads[i] = readers[i].next_entry(&self)?;
            if let Some((key, _)) = &heads[i] {
                heap.push(Reverse((*key, i)));
            }
        }
        Ok(())
    }
}

/// `pending` in order.
fn in_order(pending: &[Pending], threads: usize) -> Vec<&Pending> {
    // Sorting 16-byte (time, reference) pairs is several times faster than moving the
    // 88-byte rows about; the time, the key's first 8 bytes, settles most comparisons.
    let by_time: Vec<(u64, &Pending)> = pending
        .iter()
        .map(|p| {
            let mut time = [0u8; 8];
            time.copy_from_slice(&p.key[..8]);
            (u64::from_be_bytes(time), p)
        })
        .collect();
    sort_on_threads(by_time, threads)
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// Appends `row` (rendered without its id) to `buf` as flow number `id`.
fn push_numbered_row(buf: &mut Vec<u8>, format: RowFormat, id: u64, row: &[u8]) {
    push_id_prefix(buf, format, id);
    buf.extend_from_slice(row);
}

/// Bytes of rows gathered before a write when runs on disk are merged.
const WRITE_BUFFER: usize = 1 << 18;

/// Rows per chunk when several threads gather rows (some 0.2 MB of JSONL).
const CHUNK_ROWS: usize = 512;

impl Drop for FlowSpill {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

enum RunReader<'a> {
    File(BufReader<File>),
    /// Sorted rows still in memory, of the spill's batches.
    Memory(std::vec::IntoIter<&'a Pending>),
}

impl RunReader<'_> {
    fn next_entry(&mut self, spill: &FlowSpill) -> io::Result<Option<(Key, Vec<u8>)>> {
        match self {
            RunReader::Memory(it) => Ok(it.next().map(|p| (p.key, spill.row(p).to_vec()))),
            RunReader::File(r) => {
                let mut key = [0u8; KEY_LEN];
                match r.read_exact(&mut key) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                    Err(e) => return Err(e),
                }
                let mut len = [0u8; 4];
                r.read_exact(&mut len)?;
                let mut row = vec![0u8; u32::from_be_bytes(len) as usize];
                r.read_exact(&mut row)?;
                Ok(Some((key, row)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{interleaved_test_record, FlowRecord};

    fn expected(records: &[FlowRecord], format: RowFormat) -> Vec<u8> {
        let mut sorted = records.to_vec();
        crate::pipeline::number_flows(&mut sorted);
        let mut out = Vec::new();
        if format == RowFormat::Csv {
            out.extend_from_slice(super::super::FLOW_COLUMNS.join(",").as_bytes());
            out.push(b'\n');
        }
        super::super::output::render_rows(&sorted, format, &Default::default(), &mut out)
            .expect("render");
        out
    }

    /// `records` rendered as a worker would, `per_batch` to a batch.
    fn push_all(
        spill: &mut FlowSpill,
        records: &[FlowRecord],
        per_batch: usize,
        format: RowFormat,
    ) {
        for chunk in records.chunks(per_batch) {
            let mut batch = RowBatch::new(super::super::output::row_renderer(
                format,
                Default::default(),
            ));
            chunk.iter().cloned().for_each(|r| batch.push(r));
            spill.push(batch);
        }
    }

    #[test]
    fn spilled_runs_merge_to_the_in_memory_order_and_numbers() {
        let mut records: Vec<FlowRecord> = (0..2123).map(interleaved_test_record).collect();
        records.reverse();
        for format in [RowFormat::Jsonl, RowFormat::Csv] {
            let mut spill = FlowSpill::new(2);
            spill.spill_rows = 1000;
            push_all(&mut spill, &records, 1, format);
            assert_eq!(spill.runs.len(), 2, "two runs went to disk");
            let dir = spill.dir.clone().expect("spill dir");
            let mut out = Vec::new();
            spill.finish(&mut out, format).expect("merge");
            assert!(out == expected(&records, format), "{format:?}");
            assert!(!dir.exists(), "run files are removed");
        }
    }

    #[test]
    fn rows_in_memory_come_out_in_order_on_any_thread_count() {
        // Enough rows for the sort on two threads, in batches of uneven sizes.
        let records: Vec<FlowRecord> = (0..9001).map(interleaved_test_record).collect();
        for format in [RowFormat::Jsonl, RowFormat::Csv] {
            for threads in [1, 2, 3] {
                let mut spill = FlowSpill::new(threads);
                push_all(&mut spill, &records, 777, format);
                assert!(spill.runs.is_empty());
                let mut out = Vec::new();
                spill.finish(&mut out, format).expect("write");
                assert!(
                    out == expected(&records, format),
                    "{format:?} on {threads} threads"
                );
            }
        }
    }

    #[test]
    fn a_run_that_could_not_be_written_fails_the_finish() {
        let records: Vec<FlowRecord> = (0..50).map(interleaved_test_record).collect();
        // A regular file where the run folder should be: the run file cannot be created.
        let not_a_dir = std::env::temp_dir().join(format!("tw-spill-{}", std::process::id()));
        std::fs::write(&not_a_dir, b"").expect("temp file");
        for threads in [1, 2] {
            let mut spill = FlowSpill::new(threads);
            spill.spill_rows = 20;
            spill.dir = Some(not_a_dir.clone());
            push_all(&mut spill, &records, 1, RowFormat::Jsonl);
            assert!(spill.runs.is_empty(), "no run was written");
            let mut out = Vec::new();
            assert!(spill.finish(&mut out, RowFormat::Jsonl).is_err());
            assert!(out.is_empty(), "no partial output on {threads} threads");
        }
        let _ = std::fs::remove_file(&not_a_dir);
    }

    /// Takes `room` bytes, then fails every write.
    struct FullDisk {
        room: usize,
        taken: Vec<u8>,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.taken.len() + buf.len() > self.room {
                return Err(io::Error::other("disk full"));
            }
            self.taken.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_write_stops_the_threads_gathering_rows_and_is_reported() {
        let records: Vec<FlowRecord> = (0..9001).map(interleaved_test_record).collect();
        let whole = expected(&records, RowFormat::Jsonl);
        for threads in [2, 3] {
            let mut spill = FlowSpill::new(threads);
            push_all(&mut spill, &records, 500, RowFormat::Jsonl);
            let mut out = FullDisk {
                room: whole.len() / 2,
                taken: Vec::new(),
            };
            let err = spill
                .finish(&mut out, RowFormat::Jsonl)
                .expect_err("the disk fills up half way");
            assert_eq!(err.to_string(), "disk full");
            // What went out before the failure is the start of the whole output.
            assert!(!out.taken.is_empty() && whole.starts_with(&out.taken));
        }
    }
}
