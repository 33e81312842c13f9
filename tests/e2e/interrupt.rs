//! Issue #9 (output safety): a run killed at any point leaves each output file either complete
//! or absent (only `<name>.partial` temporaries may be left), and runs over the same input give
//! byte-identical outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{bin, run, scratch, stderr};

/// A synthetic scenario capture (a block, VPN adoption: every report section has content).
fn scenario_capture(dir: &Path) -> PathBuf {
    let pcap = dir.join("scenario.pcap");
    let out = run(&["synth", "--seed", "9", "--out", pcap.to_str().unwrap()]);
    assert!(out.status.success(), "synth failed: {}", stderr(&out));
    pcap
}

fn analyze_args<'a>(input: &'a Path, out: &'a Path, figures: &'a Path) -> Vec<&'a str> {
    let mut args = vec![
        "analyze",
        input.to_str().unwrap(),
        "-q",
        "--out",
        out.to_str().unwrap(),
        "--figures",
        figures.to_str().unwrap(),
    ];
    if cfg!(feature = "polars-out") {
        args.extend(["--tables", "parquet,csv,json"]);
    }
    args
}

fn spawn_analyze(input: &Path, out: &Path, figures: &Path) -> Child {
    Command::new(bin())
        .args(analyze_args(input, out, figures))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the tunnelwatch binary starts")
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[derive(Clone, Copy, Debug)]
enum Signal {
    Kill,
    Term,
    Int,
}

fn send(child: &mut Child, signal: Signal) {
    match signal {
        // Child::kill is SIGKILL on Unix; the process may have exited already, which is fine.
        Signal::Kill => {
            let _ = child.kill();
        }
        Signal::Term | Signal::Int => {
            let name = if matches!(signal, Signal::Term) {
                "-TERM"
            } else {
                "-INT"
            };
            let _ = Command::new("kill")
                .args([name, &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
    let _ = child.wait();
}

/// Checks that every file under a final name in `dir` is complete; returns how many there were.
fn check_outputs(dir: &Path, context: &str) -> usize {
    let mut complete = 0;
    let Ok(listing) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in listing {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            complete += check_outputs(&path, context);
            continue;
        }
        if name.ends_with(".partial") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let what = format!("{context}: {}", path.display());
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => {
                let parsed = serde_json::from_slice::<serde_json::Value>(&bytes);
                assert!(parsed.is_ok(), "{what} is not whole JSON: {parsed:?}");
            }
            Some("csv") => check_csv(&bytes, &what),
            Some("parquet") => check_parquet(&path, &bytes, &what),
            Some("html") => {
                let text = String::from_utf8(bytes).expect("HTML is UTF-8");
                assert!(text.trim_end().ends_with("</html>"), "{what} is cut short");
            }
            Some("svg") => {
                let text = String::from_utf8(bytes).expect("SVG is UTF-8");
                assert!(text.trim_end().ends_with("</svg>"), "{what} is cut short");
            }
            _ => panic!("{what}: unexpected output file"),
        }
        complete += 1;
    }
    complete
}

/// Every record of an RFC 4180 CSV has the header's number of fields, and the file ends with a
/// line break outside quotes.
fn check_csv(bytes: &[u8], what: &str) {
    let text = std::str::from_utf8(bytes).expect("CSV is UTF-8");
    assert!(
        text.ends_with('\n'),
        "{what} does not end with a line break"
    );
    let mut counts = Vec::new();
    let (mut fields, mut quoted) = (1, false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields += 1,
            '\n' if !quoted => {
                counts.push(fields);
                fields = 1;
            }
            _ => {}
        }
    }
    assert!(!quoted, "{what} ends inside a quoted field");
    let header = counts.first().copied().expect("a header line");
    assert!(
        counts.iter().all(|&n| n == header),
        "{what}: a record does not have the header's {header} fields"
    );
}

fn check_parquet(path: &Path, bytes: &[u8], what: &str) {
    assert!(
        bytes.len() >= 8 && bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
        "{what} lacks the Parquet magic at both ends"
    );
    #[cfg(feature = "polars-out")]
    {
        use polars_io::parquet::read::ParquetReader;
        use polars_io::SerReader;
        let read = ParquetReader::new(std::fs::File::open(path).unwrap()).finish();
        assert!(read.is_ok(), "{what} is not readable: {:?}", read.err());
    }
    #[cfg(not(feature = "polars-out"))]
    let _ = path;
}

/// Every file under `dir` (recursively), by relative path; none if `dir` does not exist (a run
/// killed before it created its output folder).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(listing) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in listing {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, into);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                into.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

fn analyze_to_completion(input: &Path, out: &Path) {
    let figures = out.join("figures");
    let done = run(&analyze_args(input, out, &figures));
    assert!(done.status.success(), "analyze failed: {}", stderr(&done));
}

#[test]
fn killed_analyze_leaves_only_complete_outputs() {
    let work = scratch("interrupt");
    let input = scenario_capture(&work);
    let reference = work.join("reference");
    analyze_to_completion(&input, &reference);
    let expected = snapshot(&reference);
    let total = expected.len();
    assert!(total >= 10, "a full run writes every output: {expected:?}");

    // Kill points: before anything is written, and as the 1st, 2nd, ... output appears (the
    // files are written one after another at the end of the run), with each signal.
    let signals = [Signal::Kill, Signal::Term, Signal::Int];
    let mut points = vec![0usize];
    points.extend((1..=total).step_by(2));
    let out = work.join("killed");
    let figures = out.join("figures");
    let mut saw_some_outputs = false;
    for (i, &after) in points.iter().enumerate() {
        let signal = signals[i % signals.len()];
        let _ = std::fs::remove_dir_all(&out);
        let mut child = spawn_analyze(&input, &out, &figures);
        let deadline = Instant::now() + Duration::from_secs(120);
        while entries(&out) + entries(&figures) < after
            && Instant::now() < deadline
            && child.try_wait().ok().flatten().is_none()
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        send(&mut child, signal);
        let context = format!("{signal:?} once {after} entries existed");
        let complete = check_outputs(&out, &context);
        saw_some_outputs |= complete > 0 && complete < total;
        // Every complete file under a final name is exactly what a full run writes.
        for (rel, bytes) in snapshot(&out) {
            if rel.to_string_lossy().ends_with(".partial") {
                continue;
            }
            assert!(
                expected.get(&rel) == Some(&bytes),
                "{context}: {} differs from a full run's",
                rel.display()
            );
        }
    }
    assert!(
        saw_some_outputs,
        "no kill landed between the first and the last output file (timing); the check above \
         still ran on every kill"
    );

    // Re-running over the leftovers of the last kill replaces stale temporaries and gives the
    // same files as the uninterrupted run.
    analyze_to_completion(&input, &out);
    assert_eq!(
        snapshot(&out).keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "a completed re-run leaves no .partial files"
    );
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn analyze_twice_gives_identical_outputs() {
    let work = scratch("repeat");
    let input = scenario_capture(&work);
    let (first, second) = (work.join("first"), work.join("second"));
    analyze_to_completion(&input, &first);
    analyze_to_completion(&input, &second);
    // summary.json has no wall-clock fields (see README, `summary.json`): every byte compares.
    let (a, b) = (snapshot(&first), snapshot(&second));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same files"
    );
    for (rel, bytes) in &a {
        assert!(b[rel] == *bytes, "{} differs between runs", rel.display());
    }
    assert!(a.contains_key(Path::new("summary.json")));
    assert!(a.contains_key(Path::new("report.html")));
    let _ = std::fs::remove_dir_all(&work);
}

/// True if `bytes` is a classic little-endian pcap whose last record ends exactly at the end.
fn pcap_is_whole(bytes: &[u8]) -> bool {
    if bytes.len() < 24 || bytes[..4] != [0xd4, 0xc3, 0xb2, 0xa1] {
        return false;
    }
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen =
            u32::from_le_bytes([bytes[at + 8], bytes[at + 9], bytes[at + 10], bytes[at + 11]])
                as usize;
        at += 16 + caplen;
    }
    at == bytes.len()
}

#[test]
fn killed_synth_leaves_no_half_capture() {
    let work = scratch("synth-kill");
    let pcap = work.join("week.pcap");
    let mut child = Command::new(bin())
        .args([
            "synth",
            "--preset",
            "pk-x-2024",
            "--out",
            pcap.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the tunnelwatch binary starts");
    let partial = work.join("week.pcap.partial");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !partial.exists()
        && Instant::now() < deadline
        && child.try_wait().ok().flatten().is_none()
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Let it write some packets first.
    std::thread::sleep(Duration::from_millis(300));
    send(&mut child, Signal::Kill);
    for name in ["week.pcap", "week.truth.csv", "week.events.json"] {
        let path = work.join(name);
        if !path.exists() {
            continue;
        }
        // It finished before the kill: then every file is whole.
        let bytes = std::fs::read(&path).unwrap();
        match name {
            "week.pcap" => assert!(pcap_is_whole(&bytes), "{name} is cut short"),
            "week.truth.csv" => check_csv(&bytes, name),
            _ => assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok()),
        }
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// `flows ARGS -r FIFO -o OUT` with `$TMPDIR` at `tmp`, reading a FIFO made afresh at `fifo`;
/// with the FIFO's writing end, opened once the reader opened the FIFO (after installing its
/// signal handlers).
fn flows_reading_fifo(
    fifo: &Path,
    out: &Path,
    tmp: &Path,
    args: &[&str],
) -> (Child, std::fs::File) {
    let _ = std::fs::remove_file(fifo);
    assert!(Command::new("mkfifo").arg(fifo).status().unwrap().success());
    std::fs::create_dir_all(tmp).unwrap();
    let child = Command::new(bin())
        .arg("flows")
        .args(args)
        .arg("-r")
        .arg(fifo)
        .arg("-o")
        .arg(out)
        .env("TMPDIR", tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tunnelwatch binary starts");
    let writer = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
    (child, writer)
}

/// One-packet flows past the row spill's threshold (`cli::spill::SPILL_ROWS`, 100 000 rows).
const SPILLING_FLOWS: u64 = 130_000;

/// Ctrl-C after `flows` has spilled sorted rows to disk: the spill folder goes with the run.
/// A flood of one-packet flows at a cap of 1 000 live flows ends flows as fast as it is read;
/// the signal is sent only once the spill folder is there (the capture comes through a FIFO,
/// so the reader waits for the rest meanwhile). One thread: on two, frames wait in batches
/// for the worker, so rows reach the spill later and less predictably.
#[test]
fn a_signal_after_rows_spilled_to_disk_removes_the_spill() {
    use std::io::Write;
    use tunnelwatch::synth::flood::{self, FloodConfig};
    use tunnelwatch::synth::pcap_writer::PcapWriter;
    let work = scratch("sigint-spill");
    let mut pcap = PcapWriter::new(Vec::new()).unwrap();
    flood::write(
        &FloodConfig {
            flood_flows: SPILLING_FLOWS,
            long_tcp: 1,
            long_udp: 1,
            interval: 1_000,
            seed: 5,
        },
        &mut pcap,
    )
    .unwrap();
    let capture = pcap.into_inner();
    let tmp = work.join("tmp");
    let out = work.join("flows.jsonl");
    let (mut child, mut writer) = flows_reading_fifo(
        &work.join("capture.fifo"),
        &out,
        &tmp,
        &["-q", "--threads", "1", "--max-flows", "1000"],
    );
    let spilled = || {
        std::fs::read_dir(&tmp).is_ok_and(|d| {
            d.filter_map(|e| e.ok()).any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("tunnelwatch-spill-")
            })
        })
    };
    // Rows reach the spill every few thousand packets: write a twentieth at a time from three
    // quarters of the flood on, until the folder is there, keeping the last twentieth back.
    let step = capture.len() / 20;
    let mut written = capture.len() / 4 * 3;
    writer.write_all(&capture[..written]).unwrap();
    while !spilled() && written + step < capture.len() - step {
        writer.write_all(&capture[written..written + step]).unwrap();
        written += step;
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !spilled() && Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        spilled(),
        "rows were spilled to {} before the signal",
        tmp.display()
    );
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let _ = writer.write_all(&capture[written..]);
    drop(writer);
    let stderr_pipe = child.stderr.take();
    let status = child.wait().unwrap();
    let err = stderr_pipe
        .map(|mut e| {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
        .unwrap_or_default();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted by SIGINT after "), "{err}");
    assert!(!out.exists(), "no output file");
    assert_eq!(entries(&tmp), 0, "no spill left");
    let _ = std::fs::remove_dir_all(&work);
}

/// Ctrl-C (or SIGTERM) while `flows -o FILE` reads: the run stops at its next checkpoint, says
/// so, exits as a shell reports the signal (128 + its number) and leaves nothing behind: no
/// FILE, no `FILE.partial`. The capture comes through a FIFO, so the signal
/// lands while the reader still has input to read, whatever the machine's speed.
#[test]
fn a_signal_while_reading_stops_the_run_and_leaves_nothing() {
    use std::io::Write;
    let work = scratch("sigint-reading");
    let capture = std::fs::read(scenario_capture(&work)).unwrap();
    for (signal, name, code) in [(Signal::Int, "SIGINT", 130), (Signal::Term, "SIGTERM", 143)] {
        for threads in ["1", "2"] {
            let context = format!("{name}, {threads} threads");
            let out = work.join("flows.jsonl");
            let (child, mut writer) = flows_reading_fifo(
                &work.join("capture.fifo"),
                &out,
                &work.join("tmp"),
                &["-q", "--threads", threads],
            );
            let half = capture.len() / 2;
            writer.write_all(&capture[..half]).unwrap();
            match signal {
                Signal::Int => assert!(Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status()
                    .unwrap()
                    .success()),
                _ => assert!(Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .unwrap()
                    .success()),
            }
            // The rest, until the reader stops taking it (then the pipe breaks).
            let _ = writer.write_all(&capture[half..]);
            drop(writer);
            let done = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&done.stderr);
            assert_eq!(done.status.code(), Some(code), "{context}: {err}");
            assert!(
                err.contains(&format!("interrupted by {name} after "))
                    && err.contains("no output was written"),
                "{context}: {err}"
            );
            assert!(!err.contains("warning"), "{context}: {err}");
            assert!(!out.exists(), "{context}: no output file");
            let leftovers: Vec<_> = std::fs::read_dir(&work)
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".partial"))
                .collect();
            assert!(leftovers.is_empty(), "{context}: {leftovers:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// Ctrl-C while `analyze` reads: the output folder it made for the run (to fail at once on a
/// path it cannot write) goes again, nested folders included; a folder that was already there
/// stays.
#[test]
fn a_signal_while_analyze_reads_leaves_no_folder_it_made() {
    use std::io::Write;
    let work = scratch("sigint-analyze");
    let capture = std::fs::read(scenario_capture(&work)).unwrap();
    let existing = work.join("existing");
    std::fs::create_dir_all(&existing).unwrap();
    for (out, made) in [(work.join("new/out"), true), (existing.clone(), false)] {
        let fifo = work.join("capture.fifo");
        let _ = std::fs::remove_file(&fifo);
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let mut child = Command::new(bin())
            .args(["analyze", "-q", "-r"])
            .arg(&fifo)
            .arg("-o")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the tunnelwatch binary starts");
        let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let half = capture.len() / 2;
        writer.write_all(&capture[..half]).unwrap();
        // The folder is made before reading starts.
        assert!(out.is_dir(), "{} made before the run", out.display());
        assert!(Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success());
        let _ = writer.write_all(&capture[half..]);
        drop(writer);
        assert_eq!(child.wait().unwrap().code(), Some(130));
        if made {
            assert!(!work.join("new").exists(), "{} left behind", out.display());
        } else {
            assert!(out.is_dir(), "{} was there before: it stays", out.display());
            assert_eq!(entries(&out), 0);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
}
