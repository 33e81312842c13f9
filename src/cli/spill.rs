//! Flow rows sorted on disk: `tunnelwatch flows` writes JSONL/CSV in the same order and with the
//! same numbers as [`crate::pipeline::number_flows`] gives, while holding at most
//! [`SPILL_ROWS`] finished flows in memory. Beyond that, each batch is sorted, rendered (on all
//! threads) and written to a temporary run file; the runs are merged at the end. A flood of
//! millions of one-packet flows therefore costs the flow table's cap, not a record per flow.
//!
//! A run file is a sequence of entries: the 63-byte sort key, a 4-byte big-endian row length,
//! and the row as it will be printed minus its leading `id` (which is only known after the
//! merge; [`push_id_prefix`] writes it then). Keys are [`crate::pipeline::flow_order_key`], the order `number_flows` uses.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use super::output::{push_id_prefix, render_row_fields, RowFormat};
use crate::flow::FlowRecord;
use crate::pipeline::{flow_order_key as sort_key, FLOW_ORDER_KEY_LEN};

/// Finished flows kept in memory before a sorted run goes to disk (about 0.5 KB each, and
/// their rendered rows while a run is written): runs of up to this many flows never touch disk.
pub const SPILL_ROWS: usize = 100_000;

const KEY_LEN: usize = FLOW_ORDER_KEY_LEN;
type Key = [u8; KEY_LEN];

/// Collects finished flows and writes them sorted and numbered.
pub struct FlowSpill {
    format: RowFormat,
    /// Flows held before a run is written ([`SPILL_ROWS`]; smaller in tests).
    spill_rows: usize,
    threads: usize,
    pending: Vec<FlowRecord>,
    runs: Vec<PathBuf>,
    dir: Option<PathBuf>,
    protocols: BTreeMap<String, u64>,
    /// The first spill error; reported by [`FlowSpill::finish`].
    error: Option<io::Error>,
}

impl FlowSpill {
    pub fn new(format: RowFormat, threads: usize) -> Self {
        FlowSpill {
            format,
            spill_rows: SPILL_ROWS,
            threads: threads.max(1),
            // Address space only: pages are touched as flows arrive, and the buffer never has
            // to be copied to grow.
            pending: Vec::with_capacity(SPILL_ROWS),
            runs: Vec::new(),
            dir: None,
            protocols: BTreeMap::new(),
            error: None,
        }
    }

    /// Flows per protocol seen so far (for the run summary).
    pub fn protocol_counts(&self) -> &BTreeMap<String, u64> {
        &self.protocols
    }

    /// Takes one finished flow (in any order).
    pub fn push(&mut self, r: FlowRecord) {
        super::output::count_protocol(&mut self.protocols, r.label.protocol);
        self.pending.push(r);
        if self.pending.len() >= self.spill_rows && self.error.is_none() {
            if let Err(e) = self.spill() {
                self.error = Some(e);
            }
        }
    }

    /// Sorted entries (key, row without id) of `records`, rendered on up to `threads` threads.
    fn sorted_entries(&self, records: &mut [FlowRecord]) -> io::Result<Vec<(Key, Vec<u8>)>> {
        records.sort_unstable_by_key(sort_key);
        let chunk = records.len().div_ceil(self.threads).max(1);
        let format = self.format;
        std::thread::scope(|scope| {
            let handles: Vec<_> = records
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || -> io::Result<Vec<(Key, Vec<u8>)>> {
                        let mut scratch = String::new();
                        part.iter()
                            .map(|r| {
                                let mut row = Vec::with_capacity(512);
                                render_row_fields(r, format, &mut row, &mut scratch)?;
                                Ok((sort_key(r), row))
                            })
                            .collect()
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(records.len());
            for h in handles {
                all.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?);
            }
            Ok(all)
        })
    }

    fn spill(&mut self) -> io::Result<()> {
        let mut records = std::mem::replace(&mut self.pending, Vec::with_capacity(self.spill_rows));
        let entries = self.sorted_entries(&mut records)?;
        drop(records);
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
        for (key, row) in &entries {
            w.write_all(key)?;
            w.write_all(&u32::try_from(row.len()).unwrap_or(u32::MAX).to_be_bytes())?;
            w.write_all(row)?;
        }
        w.flush()?;
        self.runs.push(path);
        Ok(())
    }

    /// Writes every flow, sorted and numbered from 0, to `out`.
    pub fn finish(mut self, out: &mut impl Write) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut records = std::mem::take(&mut self.pending);
        if self.runs.is_empty() {
            // Everything fit in memory: number in place and render in order on all threads,
            // through references (moving the records into order would copy them twice).
            let order = crate::pipeline::flow_order(&records, self.threads);
            for (id, &i) in order.iter().enumerate() {
                if let Some(r) = records.get_mut(i) {
                    r.id = id as u64;
                }
            }
            let ordered: Vec<&FlowRecord> = order.iter().filter_map(|&i| records.get(i)).collect();
            let format = match self.format {
                RowFormat::Jsonl => super::FlowFormat::Jsonl,
                RowFormat::Csv => super::FlowFormat::Csv,
            };
            let written = super::output::write_flows_threads(out, &ordered, format, self.threads);
            drop(ordered);
            free_labels_in_parallel(&mut records, self.threads);
            return written;
        }
        if self.format == RowFormat::Csv {
            writeln!(out, "{}", super::FLOW_COLUMNS.join(","))?;
        }
        let last = self.sorted_entries(&mut records)?;
        drop(records);
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
            let head = r.next_entry()?;
            if let Some((key, _)) = &head {
                heap.push(Reverse((*key, i)));
            }
            heads.push(head);
        }
        let mut id = 0u64;
        while let Some(Reverse((_, i))) = heap.pop() {
            if let Some((_, row)) = heads[i].take() {
                write_row(out, self.format, id, &row)?;
                id += 1;
            }
            heads[i] = readers[i].next_entry()?;
            if let Some((key, _)) = &heads[i] {
                heap.push(Reverse((*key, i)));
            }
        }
        Ok(())
    }
}

/// Frees the records' labels, their only heap parts, on `threads` threads (the records
/// themselves then go with their buffer). Freeing some 75 k labels one by one was the last
/// serial step of a run: 20-40 ms of a 0.45 s two-thread run on the reference capture.
fn free_labels_in_parallel(records: &mut [FlowRecord], threads: usize) {
    if threads <= 1 {
        return;
    }
    let chunk = records.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for part in records.chunks_mut(chunk) {
            scope.spawn(move || {
                for r in part {
                    drop(std::mem::take(&mut r.label));
                }
            });
        }
    });
}

impl Drop for FlowSpill {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

enum RunReader {
    File(BufReader<File>),
    Memory(std::vec::IntoIter<(Key, Vec<u8>)>),
}

impl RunReader {
    fn next_entry(&mut self) -> io::Result<Option<(Key, Vec<u8>)>> {
        match self {
            RunReader::Memory(it) => Ok(it.next()),
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

fn write_row(out: &mut impl Write, format: RowFormat, id: u64, rest: &[u8]) -> io::Result<()> {
    let mut prefix = Vec::with_capacity(24);
    push_id_prefix(&mut prefix, format, id);
    out.write_all(&prefix)?;
    out.write_all(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::interleaved_test_record;

    fn expected(records: &[FlowRecord], format: RowFormat) -> Vec<u8> {
        let mut sorted = records.to_vec();
        crate::pipeline::number_flows(&mut sorted);
        let mut out = Vec::new();
        if format == RowFormat::Csv {
            out.extend_from_slice(super::super::FLOW_COLUMNS.join(",").as_bytes());
            out.push(b'\n');
        }
        super::super::output::render_rows(&sorted, format, &mut out).expect("render");
        out
    }

    #[test]
    fn spilled_runs_merge_to_the_in_memory_order_and_numbers() {
        let records: Vec<FlowRecord> = (0..2123).map(interleaved_test_record).collect();
        for format in [RowFormat::Jsonl, RowFormat::Csv] {
            let mut spill = FlowSpill::new(format, 2);
            spill.spill_rows = 1000;
            for r in records.iter().rev().cloned() {
                spill.push(r);
            }
            assert_eq!(spill.runs.len(), 2, "two runs went to disk");
            let dir = spill.dir.clone().expect("spill dir");
            let mut out = Vec::new();
            spill.finish(&mut out).expect("merge");
            assert!(out == expected(&records, format), "{format:?}");
            assert!(!dir.exists(), "run files are removed");
        }
    }

    #[test]
    fn small_runs_stay_in_memory() {
        let records: Vec<FlowRecord> = (0..500).map(interleaved_test_record).collect();
        let mut spill = FlowSpill::new(RowFormat::Jsonl, 1);
        records.iter().cloned().for_each(|r| spill.push(r));
        assert!(spill.runs.is_empty());
        let mut out = Vec::new();
        spill.finish(&mut out).expect("write");
        assert!(out == expected(&records, RowFormat::Jsonl));
    }
}
