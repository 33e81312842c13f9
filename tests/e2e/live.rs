//! `tunnelwatch capture` run as a service on loopback (cargo feature `live`): SIGTERM and SIGINT
//! write the last window and exit 0, the metrics endpoint speaks Prometheus text, windows close
//! on the clock with `alerts.json` kept current, and the live result equals `analyze` on the
//! same packets. Needs root (libpcap on `lo`) and tcpreplay/tcprewrite; skips otherwise.
//!
//! Packets are the sample capture's IPv4 frames, rewritten into 127.0.0.0/8 (host bits kept, so
//! host counts survive) and addressed to a made-up unicast MAC: lo's own MAC is all zeros, so
//! the kernel marks them "for another host" and drops them right after the capture taps — no
//! RST or ICMP replies join the capture and nothing is routed anywhere. Each test uses its own
//! MAC and filters on it, so the tests can run in parallel.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util;

/// Why these tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Some("not root (libpcap needs it to capture on lo)".into());
    }
    for tool in ["tcpreplay", "tcprewrite"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!(
                "{tool} is not installed (apt-get install tcpreplay)"
            ));
        }
    }
    None
}

macro_rules! skip_unless_capable {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

fn mac(tag: u8) -> String {
    format!("02:00:00:00:00:{tag:02x}")
}

/// Writes the first `limit` IPv4 frames of the sample capture, rewritten for loopback (see the
/// module comment), into `dir`; returns the file and its packet count.
fn replay_file(dir: &Path, tag: u8, limit: usize) -> (PathBuf, usize) {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/pk-x-2024-small.pcap");
    let bytes = std::fs::read(&sample).expect("sample capture readable");
    assert_eq!(
        bytes.get(..4),
        Some(&[0xd4, 0xc3, 0xb2, 0xa1][..]),
        "sample is little-endian pcap"
    );
    let mut kept = bytes[..24].to_vec();
    let mut n = 0;
    let mut at = 24;
    while at + 16 <= bytes.len() && n < limit {
        let caplen =
            u32::from_le_bytes([bytes[at + 8], bytes[at + 9], bytes[at + 10], bytes[at + 11]])
                as usize;
        let Some(frame) = bytes.get(at + 16..at + 16 + caplen) else {
            break;
        };
        // tcprewrite maps IPv4 addresses only; IPv6 frames are left out.
        if frame.get(12..14) == Some(&[0x08, 0x00][..]) {
            kept.extend_from_slice(&bytes[at..at + 16 + caplen]);
            n += 1;
        }
        at += 16 + caplen;
    }
    let ipv4 = dir.join("ipv4.pcap");
    std::fs::write(&ipv4, &kept).expect("write ipv4.pcap");
    let out = dir.join("replay.pcap");
    let status = Command::new("tcprewrite")
        .arg(format!("--infile={}", ipv4.display()))
        .arg(format!("--outfile={}", out.display()))
        .arg("--pnat=0.0.0.0/0:127.0.0.0/8")
        .arg(format!("--enet-dmac={}", mac(tag)))
        .arg("--enet-smac=02:00:00:00:01:00")
        .arg("--fixcsum")
        .status();
    assert!(status.is_ok_and(|s| s.success()), "tcprewrite failed");
    (out, n)
}

fn replay(file: &Path, rate: &[&str]) {
    let out = Command::new("tcpreplay")
        .args(["-i", "lo", "-q"])
        .args(rate)
        .arg(file)
        .output()
        .expect("tcpreplay runs");
    assert!(
        out.status.success(),
        "tcpreplay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `tunnelwatch capture`; killed (and reaped) on drop, so a failing test leaves
/// nothing running.
struct CaptureProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
    metrics: String,
}

impl CaptureProcess {
    /// Starts a capture of this test's packets on lo with a metrics endpoint on a free port and
    /// waits until it is ready (signal handlers installed, endpoint bound).
    fn start(out: &Path, tag: u8, extra: &[&str]) -> CaptureProcess {
        let mut child = Command::new(util::bin())
            .args(["capture", "-i", "lo", "--metrics", "127.0.0.1:0", "--out"])
            .arg(out)
            .args(["-f", &format!("ether dst {}", mac(tag))])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tunnelwatch capture starts");
        let (tx, lines) = mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut p = CaptureProcess {
            child,
            lines,
            log: Vec::new(),
            metrics: String::new(),
        };
        let ready = p.wait_for_line("metrics on http://", Duration::from_secs(30));
        let ready = ready.unwrap_or_else(|| panic!("capture not ready:\n{}", p.log.join("\n")));
        p.metrics = ready
            .split("metrics on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
            .to_string();
        p
    }

    fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let until = Instant::now() + timeout;
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            self.log.push(line.clone());
            if line.contains(needle) {
                return Some(line);
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name}");
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let until = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.log.push(line);
                }
                return status;
            }
            assert!(
                Instant::now() < until,
                "capture did not exit:\n{}",
                self.log.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn scrape(&self) -> String {
        http_get(&self.metrics, "/metrics")
    }

    /// Waits until the capture has read `packets` frames (per its metrics).
    fn wait_for_packets(&mut self, packets: usize) {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let seen = metric(&self.scrape(), "tunnelwatch_packets_total");
            if seen == Some(packets as f64) {
                return;
            }
            assert!(
                Instant::now() < until,
                "capture saw {seen:?} of {packets} packets"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for CaptureProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Plain HTTP/1.1 GET; returns the whole response (head and body).
fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response
}

/// The value of an unlabelled sample `name` in an exposition page.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} unreadable: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `window-<start>` folders, oldest first.
fn window_dirs(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<(i64, PathBuf)> = std::fs::read_dir(out)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let start = name.strip_prefix("window-")?.parse().ok()?;
                    Some((start, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter().map(|(_, p)| p).collect()
}

/// Every window folder and the run folder are complete: each output file exists (no
/// temporaries left), the JSON documents parse, and the windows' packets add up to `packets`.
fn check_outputs(out: &Path, packets: usize) {
    let windows = window_dirs(out);
    assert!(
        !windows.is_empty(),
        "no window folders in {}",
        out.display()
    );
    let mut sum = 0;
    for dir in &windows {
        for file in [
            "summary.json",
            "alerts.json",
            "capture.json",
            "report.html",
            "flows.parquet",
        ] {
            assert!(
                dir.join(file).is_file(),
                "{} missing",
                dir.join(file).display()
            );
        }
        let capture = json(&dir.join("capture.json"));
        sum += capture["packets"].as_u64().expect("packets");
        let summary = json(&dir.join("summary.json"));
        assert_eq!(
            summary["packets_read"],
            capture["packets"],
            "{}",
            dir.display()
        );
        assert!(json(&dir.join("alerts.json"))["alerts"].is_array());
    }
    assert_eq!(sum, packets as u64, "packets over all windows");
    let last = json(&windows[windows.len() - 1].join("capture.json"));
    assert!(
        last["kernel"].is_object(),
        "kernel counters per window: {last}"
    );
    let run = json(&out.join("capture.json"));
    assert_eq!(run["packets"], packets as u64);
    assert_eq!(run["kernel"]["dropped"], 0, "kernel drops: {run}");
    assert_eq!(run["windows"], windows.len() as u64);
    assert_eq!(
        json(&out.join("summary.json"))["packets_read"],
        packets as u64
    );
    assert!(json(&out.join("alerts.json"))["alerts"].is_array());
    let partial = walk(out)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".partial"))
        .collect::<Vec<_>>();
    assert!(partial.is_empty(), "temporaries left: {partial:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.extend(walk(&path));
        } else {
            all.push(path);
        }
    }
    all
}

/// SIGTERM mid-window: open flows and the partial window are written, exit status 0.
#[test]
fn capture_sigterm_writes_the_last_window_and_exits_0() {
    skip_unless_capable!();
    let dir = util::scratch("live-sigterm");
    let (file, packets) = replay_file(&dir, 0x11, 2000);
    let out = dir.join("out");
    let mut capture = CaptureProcess::start(&out, 0x11, &["--window", "1h"]);
    replay(&file, &["--topspeed"]);
    capture.wait_for_packets(packets);
    capture.signal("TERM");
    let status = capture.wait_exit(Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "{}", capture.log.join("\n"));
    assert!(
        capture.log.iter().any(|l| l.contains("SIGTERM: stopping")),
        "{}",
        capture.log.join("\n")
    );
    check_outputs(&out, packets);
    // Every flow was open at the stop (no timeouts within a second), so the last window holds
    // all of them.
    let windows = window_dirs(&out);
    let last = json(&windows[windows.len() - 1].join("summary.json"));
    assert_eq!(last["flows"], json(&out.join("summary.json"))["flows"]);
}

/// SIGINT (Ctrl-C) with 1-second windows: windows close on the clock while the interface is
/// quiet, `alerts.json` is kept current in the output folder before the stop, and the interrupt
/// still writes everything and exits 0.
#[test]
fn capture_sigint_with_clock_windows_and_incremental_alerts() {
    skip_unless_capable!();
    let dir = util::scratch("live-sigint");
    let (file, packets) = replay_file(&dir, 0x12, 500);
    let out = dir.join("out");
    let mut capture = CaptureProcess::start(&out, 0x12, &["--window", "1s"]);
    replay(&file, &["--topspeed"]);
    capture.wait_for_packets(packets);
    // Quiet from here on: only the runtime's timer can close windows now.
    let until = Instant::now() + Duration::from_secs(60);
    while window_dirs(&out).len() < 3 || !out.join("alerts.json").is_file() {
        assert!(Instant::now() < until, "windows did not close on the clock");
        std::thread::sleep(Duration::from_millis(100));
    }
    let alerts = json(&out.join("alerts.json"));
    assert!(alerts["alerts"].is_array(), "{alerts}");
    let page = capture.scrape();
    assert!(
        metric(&page, "tunnelwatch_windows_total").is_some_and(|w| w >= 3.0),
        "{page}"
    );
    capture.signal("INT");
    let status = capture.wait_exit(Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "{}", capture.log.join("\n"));
    check_outputs(&out, packets);
}

/// GET /metrics answers the Prometheus text format; other paths 404; packets_total grows with a
/// replay.
#[test]
fn capture_metrics_endpoint_speaks_prometheus_text() {
    skip_unless_capable!();
    let dir = util::scratch("live-metrics");
    let (file, packets) = replay_file(&dir, 0x13, 1000);
    let out = dir.join("out");
    let mut capture = CaptureProcess::start(&out, 0x13, &["--window", "1h"]);

    let response = capture.scrape();
    let (head, page) = response.split_once("\r\n\r\n").unwrap_or_default();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    for (name, kind) in [
        ("tunnelwatch_packets_total", "counter"),
        ("tunnelwatch_packets_dropped_total", "counter"),
        ("tunnelwatch_flows_total", "counter"),
        ("tunnelwatch_vpn_hosts", "gauge"),
        ("tunnelwatch_open_alerts", "gauge"),
    ] {
        assert!(
            page.contains(&format!("\n# HELP {name} "))
                || page.starts_with(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{page}"
        );
        assert!(
            page.lines().any(|l| l == format!("# TYPE {name} {kind}")),
            "no TYPE for {name}:\n{page}"
        );
    }
    for line in page
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, value) = line.rsplit_once(' ').unwrap_or_default();
        assert!(name.starts_with("tunnelwatch_"), "{line}");
        assert!(value.parse::<f64>().is_ok_and(f64::is_finite), "{line}");
    }
    let before = metric(page, "tunnelwatch_packets_total").expect("packets_total");
    assert_eq!(before, 0.0, "nothing replayed yet");

    let missing = http_get(&capture.metrics, "/nope");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    replay(&file, &["--topspeed"]);
    capture.wait_for_packets(packets);
    // Flow and kernel counters are refreshed once a second (packets_total at every packet).
    let until = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = capture.scrape();
        if metric(&page, "tunnelwatch_flows_total").is_some_and(|f| f > 0.0) {
            break page;
        }
        assert!(Instant::now() < until, "flows_total stayed 0:\n{page}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        metric(&page, "tunnelwatch_packets_dropped_total"),
        Some(0.0),
        "{page}"
    );
    capture.signal("TERM");
    assert_eq!(capture.wait_exit(Duration::from_secs(120)).code(), Some(0));
}

/// The live result for the replayed packets equals `analyze` on the same file: packets, flows,
/// flows per protocol, and the hosts (all, and those using circumvention). Timeouts are set
/// beyond the sample's two days, as the replay squeezes them into a second or two.
#[test]
fn capture_matches_analyze_on_the_same_packets() {
    skip_unless_capable!();
    let dir = util::scratch("live-offline");
    let (file, packets) = replay_file(&dir, 0x14, usize::MAX);
    let timeouts = ["--tcp-timeout", "10000000", "--udp-timeout", "10000000"];
    let offline = dir.join("offline");
    let o = std::process::Command::new(util::bin())
        .arg("analyze")
        .arg(&file)
        .arg("--out")
        .arg(&offline)
        .args(["--tables", "json", "-q"])
        .args(timeouts)
        .output()
        .expect("analyze runs");
    assert!(o.status.success(), "{}", util::stderr(&o));

    let out = dir.join("live");
    let mut args = vec!["--window", "1h", "--tables", "json"];
    args.extend(timeouts);
    let mut capture = CaptureProcess::start(&out, 0x14, &args);
    // A steady rate rather than top speed: the comparison needs every packet captured.
    replay(&file, &["--pps=4000"]);
    capture.wait_for_packets(packets);
    capture.signal("TERM");
    assert_eq!(capture.wait_exit(Duration::from_secs(180)).code(), Some(0));
    check_outputs(&out, packets);

    let live = json(&out.join("summary.json"));
    let off = json(&offline.join("summary.json"));
    for key in [
        "packets_read",
        "packets_in_flows",
        "flows",
        "flows_closed",
        "protocols",
    ] {
        assert_eq!(
            live[key], off[key],
            "{key}: live {} vs offline {}",
            live[key], off[key]
        );
    }
    // The offline run has one hosts table; the live run writes its host rows as rotated parts
    // (`hosts/hosts-<first window>.json`) as windows are frozen.
    let hosts = |dir: &Path, circumvention_only: bool| {
        let parts: Vec<PathBuf> = if dir.join("hosts.json").is_file() {
            vec![dir.join("hosts.json")]
        } else {
            walk(&dir.join("hosts"))
        };
        assert!(!parts.is_empty(), "no host rows in {}", dir.display());
        let rows: Vec<serde_json::Value> = parts
            .iter()
            .flat_map(|p| json(p).as_array().cloned().unwrap_or_default())
            .collect();
        let mut set: Vec<String> = rows
            .iter()
            .filter(|r| !circumvention_only || r["circumvention_flows"].as_u64() > Some(0))
            .filter_map(|r| r["host"].as_str().map(str::to_string))
            .collect();
        set.sort();
        set.dedup();
        set
    };
    assert!(hosts(&offline, false).len() > 10);
    assert_eq!(hosts(&out, false), hosts(&offline, false), "hosts");
    assert!(!hosts(&offline, true).is_empty());
    assert_eq!(
        hosts(&out, true),
        hosts(&offline, true),
        "circumvention hosts"
    );
}
