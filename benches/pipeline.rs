//! Throughput of the offline pipeline (read -> decode -> flows -> fingerprints) and of its
//! stages, on real traffic when ../shared/bench is present, else on a generated capture.
//!
//! Run: `cargo bench --no-default-features --target-dir target/bench-no-default --bench
//! pipeline` (no polars: faster build; the measured path does not use polars; a target
//! directory of its own, since building the benches also rebuilds the `tunnelwatch` binary,
//! which would otherwise replace the default build's). Criterion prints time per iteration
//! and packets/s (its "elements" throughput). The `collector` group decodes IPFIX and NetFlow v9 datagrams
//! as an exporter sends them (30 records each, template first) and reports records/s. The
//! `synth` group generates the `bench` scenario into a byte counter (no disk) on one core and
//! reports bytes/s of capture written: 1 GB takes (1 GB / that rate) seconds.

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
    // The path `flows FILE` takes: a plain file is memory-mapped, and workers get offsets into
    // the mapping rather than copies of the frames. The file is written once, to the temp dir;
    // the page cache keeps it warm between iterations.
    let mapped_file = std::env::temp_dir().join(format!(
        "tunnelwatch-bench-{}-{name}.pcap",
        std::process::id()
    ));
    std::fs::write(&mapped_file, &bytes).expect("temp capture writes");
    for threads in [1usize, 2] {
        group.bench_function(
            format!("whole_pipeline_mapped/{threads}_threads/{name}"),
            |b| {
                b.iter(|| {
                    let mut p = Pipeline::new(PipelineConfig {
                        threads,
                        ..PipelineConfig::default()
                    });
                    p.feed_file(&mapped_file, &mut |_, _| {});
                    p.finish().0.len()
                })
            },
        );
    }
    let _ = std::fs::remove_file(&mapped_file);
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

/// An IPFIX (RFC 7011) or NetFlow v9 (RFC 3954) message: header, then the given sets.
fn export_message(version: u16, seq: u32, sets: &[(u16, Vec<u8>)], records: u16) -> Vec<u8> {
    let mut body = Vec::new();
    for (id, content) in sets {
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&((content.len() + 4) as u16).to_be_bytes());
        body.extend_from_slice(content);
    }
    let mut m = Vec::new();
    m.extend_from_slice(&version.to_be_bytes());
    if version == 10 {
        // Version, length, export time, sequence, observation domain (RFC 7011 §3.1).
        m.extend_from_slice(&((body.len() + 16) as u16).to_be_bytes());
        m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&1u32.to_be_bytes());
    } else {
        // Version, count, uptime, unix secs, sequence, source id (RFC 3954 §5.1).
        m.extend_from_slice(&records.to_be_bytes());
        m.extend_from_slice(&3_600_000u32.to_be_bytes());
        m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&1u32.to_be_bytes());
    }
    m.extend_from_slice(&body);
    m
}

/// Datagrams of 30 flow records each (5-tuple, packets, bytes, start/end), the first carrying
/// the template, as softflowd and routers send them.
fn export_datagrams(version: u16, datagrams: u32) -> Vec<Vec<u8>> {
    const PER_DATAGRAM: u16 = 30;
    // (element id, length): src/dst IPv4, src/dst port, protocol, packets, octets, start, end.
    let ipfix_fields: [(u16, u16); 9] = [
        (8, 4),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (2, 8),
        (1, 8),
        (152, 8),
        (153, 8),
    ];
    // NetFlow v9 times are sysUptime milliseconds (FIRST_SWITCHED 22, LAST_SWITCHED 21).
    let v9_fields: [(u16, u16); 9] = [
        (8, 4),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (2, 8),
        (1, 8),
        (22, 4),
        (21, 4),
    ];
    let fields: &[(u16, u16)] = if version == 10 {
        &ipfix_fields
    } else {
        &v9_fields
    };
    let mut template = Vec::new();
    template.extend_from_slice(&256u16.to_be_bytes());
    template.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for (id, len) in fields {
        template.extend_from_slice(&id.to_be_bytes());
        template.extend_from_slice(&len.to_be_bytes());
    }
    let template_set_id = if version == 10 { 2 } else { 0 };
    (0..datagrams)
        .map(|d| {
            let mut data = Vec::new();
            for i in 0..u32::from(PER_DATAGRAM) {
                let n = d * u32::from(PER_DATAGRAM) + i;
                data.extend_from_slice(&(0x0a00_0000 | (n % 5000)).to_be_bytes());
                data.extend_from_slice(&(0xc000_0200 | (n % 200)).to_be_bytes());
                data.extend_from_slice(&(40000 + (n % 20000) as u16).to_be_bytes());
                data.extend_from_slice(&[0x01, 0xbb, 17]);
                data.extend_from_slice(&u64::from(n % 90 + 1).to_be_bytes());
                data.extend_from_slice(&u64::from(n % 9000 + 60).to_be_bytes());
                if version == 10 {
                    let start = 1_700_000_000_000u64 + u64::from(n);
                    data.extend_from_slice(&start.to_be_bytes());
                    data.extend_from_slice(&(start + 500).to_be_bytes());
                } else {
                    data.extend_from_slice(&(3_000_000 + n % 500_000).to_be_bytes());
                    data.extend_from_slice(&(3_000_500 + n % 500_000).to_be_bytes());
                }
            }
            let mut sets = Vec::new();
            if d == 0 {
                sets.push((template_set_id, template.clone()));
            }
            sets.push((256, data));
            let records = PER_DATAGRAM + u16::from(d == 0);
            export_message(
                version,
                if version == 10 {
                    d * u32::from(PER_DATAGRAM)
                } else {
                    d
                },
                &sets,
                records,
            )
        })
        .collect()
}

fn collector_benches(c: &mut Criterion) {
    use tunnelwatch::ingest::flowlog::collector::Collector;
    let from: std::net::SocketAddr = "127.0.0.1:9995".parse().expect("address");
    let mut group = c.benchmark_group("collector");
    group.sample_size(10);
    for (name, version) in [("ipfix", 10u16), ("netflow_v9", 9)] {
        let datagrams = export_datagrams(version, 2000);
        let mut probe = Collector::new();
        let mut out = Vec::new();
        for d in &datagrams {
            probe.handle_datagram(from, d, &mut out);
        }
        assert_eq!(out.len(), 60_000, "{name}: every generated record decodes");
        group.throughput(Throughput::Elements(out.len() as u64));
        let decode = || {
            let mut collector = Collector::new();
            let mut out = Vec::with_capacity(60_000);
            for d in &datagrams {
                collector.handle_datagram(from, d, &mut out);
            }
            (collector, out)
        };
        group.bench_function(format!("decode/{name}"), |b| b.iter(|| decode().1.len()));
        group.bench_function(format!("decode+flow_records/{name}"), |b| {
            b.iter(|| {
                let (mut collector, out) = decode();
                collector.flow_records(&out).len()
            })
        });
    }
    group.finish();
}

/// A writer that only counts bytes (generation speed without the disk).
#[derive(Default)]
struct CountingSink(u64);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn synth_benches(c: &mut Criterion) {
    use tunnelwatch::synth::pcap_writer::PcapWriter;
    use tunnelwatch::synth::scenario;
    let mut cfg = scenario::preset("bench").expect("bench preset");
    cfg.hosts = 60;
    let generate = |cfg: &scenario::Config| {
        let mut hosts = scenario::population(cfg);
        let mut pcap = PcapWriter::new(CountingSink::default()).expect("header");
        let mut truth = CountingSink::default();
        scenario::generate(cfg, &mut hosts, &mut pcap, &mut truth).expect("generate");
        pcap.bytes()
    };
    let bytes = generate(&cfg);
    let mut group = c.benchmark_group("synth");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function(format!("bench_preset/{}_hosts", cfg.hosts), |b| {
        b.iter(|| generate(&cfg))
    });
    group.finish();
}

criterion_group!(
    pipeline,
    benches,
    corpus_benches,
    collector_benches,
    synth_benches
);
criterion_main!(pipeline);
