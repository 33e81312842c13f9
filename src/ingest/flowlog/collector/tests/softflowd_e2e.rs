//! End to end against a real exporter nobody here wrote: softflowd (Debian package `softflowd`)
//! reads a capture and exports NetFlow v5 / v9 / IPFIX to the collector on 127.0.0.1; the
//! collector's totals must equal what the pcap pipeline computes for the same capture.
//! Skipped (with a message) when `softflowd` is not on PATH.
//!
//! softflowd 1.1.0 quirks met here: the `-r` file name is cut at 16 characters (so the capture
//! is copied to `in.pcap` in a scratch directory), and in `-r` mode its loop blocks on the
//! control socket, so the test connects to it repeatedly until softflowd has read the file and
//! exited. `-a` makes flow times follow the capture's clock.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::*;
use crate::flow::FlowKey;
use crate::ingest::flowlog::read_nfdump_csv;
use crate::pipeline::{Pipeline, PipelineConfig};

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

struct Totals {
    packets: u64,
    bytes: u64,
    keys: BTreeSet<(String, String, u16, u16, u8)>,
    first_ts: Option<i64>,
}

fn totals(flows: &[FlowRecord]) -> Totals {
    let mut t = Totals {
        packets: 0,
        bytes: 0,
        keys: BTreeSet::new(),
        first_ts: None,
    };
    for f in flows {
        t.packets += f.packets[0] + f.packets[1];
        t.bytes += f.bytes[0] + f.bytes[1];
        let (k, _) = FlowKey::canonical(
            f.client_ip,
            f.client_port,
            f.server_ip,
            f.server_port,
            f.ip_proto,
        );
        t.keys.insert((
            k.lo_ip.to_string(),
            k.hi_ip.to_string(),
            k.lo_port,
            k.hi_port,
            k.ip_proto,
        ));
        t.first_ts = Some(t.first_ts.map_or(f.first_ts, |x| x.min(f.first_ts)));
    }
    t
}

fn pipeline_flows(pcap: &Path) -> Vec<FlowRecord> {
    let mut p = Pipeline::new(PipelineConfig::default());
    p.feed_file(pcap, &mut |_, _| {});
    p.finish().0
}

/// Runs softflowd over `pcap`, exporting `version` to a collector on 127.0.0.1; returns the
/// collected flows and the collector's stats.
fn export(pcap: &Path, version: &str) -> (Vec<FlowRecord>, CollectorStats) {
    let name = pcap.file_stem().and_then(|s| s.to_str()).unwrap_or("cap");
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "tw-flowlog-{}-{name}-v{version}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(pcap, dir.join("in.pcap")).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let collector =
        std::thread::spawn(move || collect_on(socket, stop2, move |r| tx.send(r).unwrap()));
    let finished = run_softflowd(&dir, port, version);
    if !finished {
        stop.store(true, Ordering::Relaxed);
        panic!("softflowd did not finish reading {}", pcap.display());
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let stats = collector.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (rx.try_iter().flatten().collect(), stats)
}

/// Runs softflowd over `dir/in.pcap`, exporting `version` to 127.0.0.1:`port`, until it has
/// read the file and exited (false after 60 s: it was killed).
fn run_softflowd(dir: &Path, port: u16, version: &str) -> bool {
    let mut child = Command::new("softflowd")
        .current_dir(dir)
        .args([
            "-d",
            "-r",
            "in.pcap",
            "-n",
            &format!("127.0.0.1:{port}"),
            "-v",
            version,
            "-T",
            "full",
            "-a",
            "-p",
            "sf.pid",
            "-c",
            "sf.ctl",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start softflowd");
    let deadline = Instant::now() + Duration::from_secs(60);
    let ctl = dir.join("sf.ctl");
    loop {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        if let Ok(mut s) = UnixStream::connect(&ctl) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = s.write_all(b"statistics\n");
            let _ = s.read_to_end(&mut Vec::new());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// softflowd -> nfcapd -> `TZ=UTC nfdump -o csv` -> [`read_nfdump_csv`]: the flow log's totals
/// equal the pipeline's. Skipped when softflowd, nfcapd or nfdump is missing.
#[test]
fn nfdump_csv_of_softflowd_export_matches_the_pcap_pipeline() {
    if let Some(missing) = ["softflowd", "nfcapd", "nfdump"]
        .into_iter()
        .find(|b| !on_path(b))
    {
        eprintln!("SKIPPED nfdump_csv_of_softflowd_export_matches_the_pcap_pipeline: `{missing}` is not on PATH (apt-get install softflowd nfdump)");
        return;
    }
    let pcap = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/three_udp.pcap");
    let dir: PathBuf =
        std::env::temp_dir().join(format!("tw-flowlog-{}-nfdump", std::process::id()));
    let flows_dir = dir.join("flows");
    std::fs::create_dir_all(&flows_dir).unwrap();
    std::fs::copy(&pcap, dir.join("in.pcap")).unwrap();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut nfcapd = Command::new("nfcapd")
        .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-w"])
        .arg(&flows_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nfcapd");
    std::thread::sleep(Duration::from_millis(500));
    let finished = run_softflowd(&dir, port, "9");
    std::thread::sleep(Duration::from_millis(500));
    // SIGTERM lets nfcapd write out its file.
    let _ = Command::new("kill").arg(nfcapd.id().to_string()).status();
    let _ = nfcapd.wait();
    assert!(finished, "softflowd did not finish");
    let out = Command::new("nfdump")
        .env("TZ", "UTC")
        .arg("-R")
        .arg(&flows_dir)
        .args(["-o", "csv"])
        .output()
        .expect("run nfdump");
    let _ = std::fs::remove_dir_all(&dir);
    let (flows, stats) = read_nfdump_csv(out.stdout.as_slice()).unwrap();
    let want = totals(&pipeline_flows(&pcap));
    let got = totals(&flows);
    assert_eq!(stats.bad_lines, 0, "{stats:?}");
    assert_eq!(
        (got.packets, got.bytes),
        (want.packets, want.bytes),
        "{stats:?}"
    );
    assert_eq!(stats.summary_packets, Some(want.packets));
    assert_eq!(got.keys, want.keys);
    let (g, w) = (got.first_ts.unwrap(), want.first_ts.unwrap());
    assert!((g - w).abs() <= 1_000_000_000, "first_ts {g} vs {w}");
}

fn check(pcap: &Path, version: &str) {
    let (flows, stats) = export(pcap, version);
    let want = totals(&pipeline_flows(pcap));
    let got = totals(&flows);
    let what = format!("{} v{version}: {stats:?}", pcap.display());
    assert_eq!(
        stats.malformed_datagrams + stats.malformed_sets,
        0,
        "{what}"
    );
    assert_eq!(stats.sequence_gaps, 0, "{what}");
    assert_eq!(stats.records, flows.len() as u64, "{what}");
    assert!(!flows.is_empty(), "{what}");
    assert_eq!(got.packets, want.packets, "packets, {what}");
    assert_eq!(got.bytes, want.bytes, "bytes, {what}");
    // softflowd's flows are bidirectional inside and exported one record per direction: the
    // distinct connections must be the pipeline's flows.
    assert_eq!(got.keys, want.keys, "flows, {what}");
    // v9 headers carry whole seconds, v5 milliseconds, IPFIX (here) ms: within 1 s.
    let (g, w) = (got.first_ts.unwrap(), want.first_ts.unwrap());
    assert!(
        (g - w).abs() <= 1_000_000_000,
        "first_ts {g} vs {w}, {what}"
    );
}

/// Dev-corpus captures compared (override with `TW_E2E_CAPS=a.pcap,b.pcap`). Left out, with
/// the reason found: ipsec_client.pcap (IP fragments: softflowd counts non-first fragments,
/// the pipeline skips them), wireguard.pcap (spans more than 2^32 ms, so sysUptime-relative
/// times wrap), socks.pcap (softflowd reports 43 bytes more than the sum of `ip.len` that
/// tshark and the pipeline agree on), gre-pptp.pcap / l2tp.pcap (link types softflowd does
/// not read: it exports nothing).
const DEV_CAPTURES: &[&str] = &[
    "pptp.pcap",
    "openvpn_tcp_nontlsauth.pcap",
    "02-sunrise-sunset-esp.pcap",
    "openvpn_udp_hmac_256.pcap",
    "mullvad_wireguard.pcap",
];

fn captures() -> Vec<PathBuf> {
    let mut v =
        vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/three_udp.pcap")];
    // Dev-corpus captures with TCP, UDP and portless flows, when the corpus is present.
    for f in std::env::var("TW_E2E_CAPS")
        .map(|v| v.split(',').map(String::from).collect::<Vec<_>>())
        .unwrap_or_else(|_| DEV_CAPTURES.iter().map(|s| s.to_string()).collect())
    {
        let p = Path::new("/work/shared/corpus/dev").join(&f);
        if p.is_file() {
            v.push(p);
        }
    }
    v
}

#[test]
fn softflowd_exports_match_the_pcap_pipeline() {
    if !on_path("softflowd") {
        eprintln!("SKIPPED softflowd_exports_match_the_pcap_pipeline: `softflowd` is not on PATH (apt-get install softflowd)");
        return;
    }
    for pcap in captures() {
        for version in ["5", "9", "10"] {
            check(&pcap, version);
        }
    }
}
