//! Bad input gets a clear error and loses nothing (issue 2, point 5).

use crate::util::*;

#[test]
fn truncated_capture_keeps_complete_records_and_warns_with_offset() {
    let f = fixture("truncated.pcap");
    let out = run(&["flows", f.to_str().unwrap(), "--format", "jsonl"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning alone does not fail the run"
    );
    let err = stderr(&out);
    assert!(
        err.contains("warning:") && err.contains("truncated.pcap"),
        "{err}"
    );
    assert!(err.contains("truncated at byte offset 198"), "{err}");
    assert!(err.contains("kept 2 complete records"), "{err}");
    assert_eq!(stdout(&out).lines().count(), 2);

    let strict = run(&["flows", f.to_str().unwrap(), "--strict", "-q"]);
    assert_eq!(
        strict.status.code(),
        Some(2),
        "--strict turns the warning into failure"
    );
    assert!(stderr(&strict).contains("error:"));
}

#[test]
fn bad_files_are_named_and_the_rest_still_processed() {
    let cases = [
        ("empty.pcap", "file is empty"),
        (
            "garbage.pcap",
            "not a capture file (starts with 54 68 69 73",
        ),
        (
            "wrong_magic.pcap",
            "not a capture file (starts with d4 c3 b2 a2",
        ),
    ];
    for (name, message) in cases {
        let bad = fixture(name);
        let good = fixture("three_udp.pcap");
        let out = run(&[
            "flows",
            bad.to_str().unwrap(),
            good.to_str().unwrap(),
            "--format",
            "jsonl",
        ]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = stderr(&out);
        let line = err
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not named: {err}"));
        assert!(
            line.starts_with("tunnelwatch: error:") && line.contains(message),
            "{line}"
        );
        assert_eq!(
            stdout(&out).lines().count(),
            2,
            "the good file was still processed"
        );
    }
}

#[test]
fn corrupt_pcapng_block_is_reported_with_offset() {
    let f = fixture("bad_block_length.pcapng");
    let out = run(&["flows", f.to_str().unwrap(), "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out)
            .contains("corrupt at byte offset 144: pcapng block of type 0x6 has invalid length 7"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        stdout(&out).lines().count(),
        2,
        "header + the one complete packet's flow"
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = run(&[
        "flows",
        "/nonexistent/capture.pcap",
        fixture("three_udp.pcap").to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("tunnelwatch: error: /nonexistent/capture.pcap: No such file"),
        "{err}"
    );
    assert_eq!(
        stdout(&out).lines().count(),
        3,
        "the readable input was still processed"
    );
}
