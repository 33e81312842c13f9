//! Throughput of the offline pipeline (read -> decode -> flows -> fingerprints) and of its
//! stages, on real traffic when ../shared/bench is present, else on a generated capture.
//!
//! Run: `cargo bench --no-default-features --bench pipeline` (no polars: faster build; the
//! measured path does not use polars). Criterion prints time per iteration and packets/s
//! (its "elements" throughput).

use std::io::Read;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tunnelwatch::decode;
use tunnelwatch::flow::{FlowConfig, FlowTable};
use tunnelwatch::ingest::CaptureReader;
use tunnelwatch::pipeline::{FileReport, Pipeline, PipelineConfig};

/// The benchmark capture, decompressed into memory (so disk and gzip are not measured).
fn capture_bytes() -> (String, Vec<u8>) {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/ndpi-mix.pcap.gz");
    if let Ok(f) = std::fs::File::open(&shared) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(f)
            .read_to_end(&mut out)
            .expect("benchmark capture decompresses");
        return ("ndpi-mix".into(), out);
    }
    eprintln!("../shared/bench absent: benchmarking the small test fixture instead");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/three_udp.pcap");
    ("fixture".into(), std::fs::read(fixture).expect("fixture"))
}

fn count_packets(bytes: &[u8]) -> u64 {
    let mut r = CaptureReader::new(bytes).expect("valid capture");
    let mut n = 0;
    while let Ok(Some(_)) = r.next_packet() {
        n += 1;
    }
    n
}

fn benches(c: &mut Criterion) {
    let (name, bytes) = capture_bytes();
    let packets = count_packets(&bytes);
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(packets));
    group.sample_size(10);

    group.bench_function(format!("record_walk/{name}"), |b| {
        b.iter(|| count_packets(&bytes))
    });

    group.bench_function(format!("read+decode/{name}"), |b| {
        b.iter(|| {
            let mut r = CaptureReader::new(&bytes[..]).expect("valid capture");
            let mut ok = 0u64;
            while let Ok(Some(p)) = r.next_packet() {
                ok += u64::from(decode::decode(p.link_type, p.data).is_ok());
            }
            ok
        })
    });

    group.bench_function(format!("read+decode+flows(no fingerprints)/{name}"), |b| {
        b.iter(|| {
            let mut r = CaptureReader::new(&bytes[..]).expect("valid capture");
            let mut table = FlowTable::new(FlowConfig::default(), &[]);
            let mut flows = 0u64;
            while let Ok(Some(p)) = r.next_packet() {
                if let Ok(d) = decode::decode(p.link_type, p.data) {
                    table.process(p.ts_nanos, &d, &mut |_| flows += 1);
                }
            }
            table.finish_all(&mut |_| flows += 1);
            flows
        })
    });

    for threads in [1usize, 2] {
        group.bench_function(format!("whole_pipeline/{threads}_threads/{name}"), |b| {
            b.iter(|| {
                let mut p = Pipeline::new(PipelineConfig {
                    threads,
                    ..PipelineConfig::default()
                });
                let mut report = FileReport::new(Path::new(&name));
                let reader = CaptureReader::new(&bytes[..]).expect("valid capture");
                p.feed_reader(reader, &mut report, &mut |_, _| {});
                p.finish().0.len()
            })
        });
    }
    group.finish();
}

/// The fingerprint driver on real VPN/proxy traffic: every dev-corpus capture (in memory)
/// through flows with and without the detectors; the difference is the driver's cost.
fn corpus_benches(c: &mut Criterion) {
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/dev");
    let Ok(entries) = std::fs::read_dir(&dev) else {
        eprintln!("../shared/corpus/dev absent: skipping the fingerprint driver bench");
        return;
    };
    let mut captures: Vec<Vec<u8>> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x != "csv"))
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    captures.sort();
    let packets: u64 = captures.iter().map(|c| count_packets(c)).sum();
    let mut group = c.benchmark_group("fingerprint_driver");
    group.throughput(Throughput::Elements(packets));
    group.sample_size(10);
    for (name, registry) in [
        ("flows_only", &[][..]),
        (
            "all_detectors",
            tunnelwatch::fingerprint::registry::REGISTRY,
        ),
    ] {
        group.bench_function(format!("dev_corpus/{name}"), |b| {
            b.iter(|| {
                let mut flows = 0u64;
                for bytes in &captures {
                    let Ok(mut r) = CaptureReader::new(&bytes[..]) else {
                        continue;
                    };
                    let mut table = FlowTable::new(FlowConfig::default(), registry);
                    while let Ok(Some(p)) = r.next_packet() {
                        if let Ok(d) = decode::decode(p.link_type, p.data) {
                            table.process(p.ts_nanos, &d, &mut |_| flows += 1);
                        }
                    }
                    table.finish_all(&mut |_| flows += 1);
                }
                flows
            })
        });
    }
    group.finish();
}

criterion_group!(pipeline, benches, corpus_benches);
criterion_main!(pipeline);
