//! Hostile and broken captures (issue 9, point 4), built byte by byte in the test: each run must
//! end cleanly (or with a clear message) and account for every packet read:
//! `packets_read == packets_in_flows + packets_skipped` in `analyze`'s summary.json. Crashes found
//! by the fuzz targets (fuzz/) are kept here as regression tests with their bytes inline.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

// ---------------------------------------------------------------------------------------------
// Capture and packet builders (classic pcap, little-endian, microsecond timestamps).

const LINK_ETHERNET: u32 = 1;
const LINK_RAW: u32 = 101;

/// One pcap record: timestamp, the caplen and orig_len written in its header, and its bytes.
/// `caplen` is normally `data.len()`; hostile cases lie about it.
struct Rec {
    sec: u32,
    usec: u32,
    caplen: u32,
    orig_len: u32,
    data: Vec<u8>,
}

fn rec(sec: u32, data: Vec<u8>) -> Rec {
    let n = data.len() as u32;
    Rec {
        sec,
        usec: 0,
        caplen: n,
        orig_len: n,
        data,
    }
}

fn pcap(link_type: u32, snaplen: u32, records: &[Rec]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // thiszone, sigfigs
    out.extend_from_slice(&snaplen.to_le_bytes());
    out.extend_from_slice(&link_type.to_le_bytes());
    for r in records {
        out.extend_from_slice(&r.sec.to_le_bytes());
        out.extend_from_slice(&r.usec.to_le_bytes());
        out.extend_from_slice(&r.caplen.to_le_bytes());
        out.extend_from_slice(&r.orig_len.to_le_bytes());
        out.extend_from_slice(&r.data);
    }
    out
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 header (RFC 791) with `options` (padded to 4 bytes), then `payload`.
fn ipv4(
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    options: &[u8],
    frag: u16,
    id: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut opts = options.to_vec();
    while opts.len() % 4 != 0 {
        opts.push(0);
    }
    let ihl = 5 + opts.len() / 4;
    let total = ihl * 4 + payload.len();
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&opts);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]); // no checksum (allowed over IPv4)
    u.extend_from_slice(payload);
    u
}

fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[5 << 4, flags]);
    t.extend_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum (not verified), urgent pointer
    t.extend_from_slice(payload);
    t
}

fn ether(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut e = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    e.extend_from_slice(&ethertype.to_be_bytes());
    e.extend_from_slice(payload);
    e
}

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [192, 0, 2, 7];

fn udp4(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    ether(
        0x0800,
        &ipv4(17, CLIENT, SERVER, &[], 0, 1, &udp(sport, dport, payload)),
    )
}

fn tcp4(from_client: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sport, dport) = if from_client {
        (CLIENT, SERVER, 40000, 443)
    } else {
        (SERVER, CLIENT, 443, 40000)
    };
    ether(
        0x0800,
        &ipv4(
            6,
            src,
            dst,
            &[],
            0,
            1,
            &tcp(sport, dport, seq, ack, flags, payload),
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Running and checking.

struct Run {
    code: Option<i32>,
    stderr: String,
    summary: Value,
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("scratch capture written");
    p
}

/// `analyze FILE --out DIR`; asserts the run ended by itself (no signal, no panic) and that
/// every packet read is accounted for.
fn analyze(name: &str, bytes: &[u8]) -> Run {
    let dir = scratch(&format!("hostile-{name}"));
    let file = write(&dir, name, bytes);
    let out_dir = dir.join("out");
    let o = run(&[
        "analyze",
        file.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "-q",
    ]);
    let err = stderr(&o);
    assert!(
        o.status.code().is_some(),
        "{name}: killed by a signal: {err}"
    );
    assert!(!err.contains("panicked"), "{name}: panic: {err}");
    let text = std::fs::read_to_string(out_dir.join("summary.json"))
        .unwrap_or_else(|e| panic!("{name}: no summary.json ({e}): {err}"));
    let summary: Value = serde_json::from_str(&text).expect("summary.json is JSON");
    let n = |k: &str| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {k} in {summary}"))
    };
    assert_eq!(
        n("packets_read"),
        n("packets_in_flows") + n("packets_skipped"),
        "{name}: packets not accounted for: {summary}"
    );
    let by_reason: u64 = summary["skipped_by_reason"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    assert_eq!(
        by_reason,
        n("packets_skipped"),
        "{name}: skip reasons do not add up: {summary}"
    );
    Run {
        code: o.status.code(),
        stderr: err,
        summary,
    }
}

/// `flows FILE --format jsonl -q`: exit 0 and the JSON lines.
fn flows(name: &str, bytes: &[u8]) -> Vec<Value> {
    let dir = scratch(&format!("hostile-flows-{name}"));
    let file = write(&dir, name, bytes);
    let o = run(&["flows", file.to_str().unwrap(), "--format", "jsonl", "-q"]);
    assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn count(s: &Value, k: &str) -> u64 {
    s[k].as_u64().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The hostile inputs.

fn snaplen_and_zero_length() -> Vec<u8> {
    let good = udp4(
        40000,
        53,
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
    );
    let long = udp4(40001, 9999, &[0xab; 300]); // 342 bytes under a 64-byte snap length
    let mut short = udp4(40002, 9999, &[0xcd; 100]);
    short.truncate(30); // snapped inside the IPv4 header: orig_len says 142
    let records = [
        rec(1_700_000_000, good),
        rec(1_700_000_001, long),
        Rec {
            sec: 1_700_000_002,
            usec: 0,
            caplen: 30,
            orig_len: 142,
            data: short,
        },
        Rec {
            sec: 1_700_000_003,
            usec: 0,
            caplen: 0,
            orig_len: 0,
            data: Vec::new(),
        },
        Rec {
            sec: 1_700_000_004,
            usec: 0,
            caplen: 0,
            orig_len: 1500,
            data: Vec::new(),
        },
    ];
    pcap(LINK_ETHERNET, 64, &records)
}

#[test]
fn records_longer_than_snaplen_and_zero_length_are_accounted() {
    let r = analyze("snaplen.pcap", &snaplen_and_zero_length());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(count(&r.summary, "packets_read"), 5, "{}", r.summary);
    assert_eq!(count(&r.summary, "packets_in_flows"), 2, "{}", r.summary);
    assert_eq!(count(&r.summary, "packets_skipped"), 3, "{}", r.summary);
}

#[test]
fn huge_caplen_is_reported_as_corrupt_and_earlier_records_kept() {
    let good = rec(1_700_000_000, udp4(40000, 9999, b"hello"));
    let huge = Rec {
        sec: 1_700_000_001,
        usec: 0,
        caplen: 0x0200_0000,
        orig_len: 0x0200_0000,
        data: vec![0; 64],
    };
    let bytes = pcap(LINK_ETHERNET, 65535, &[good, huge]);
    let r = analyze("huge_caplen.pcap", &bytes);
    assert!(r.stderr.contains("huge_caplen.pcap"), "{}", r.stderr);
    assert!(
        r.stderr.contains("corrupt at byte offset 87")
            && r.stderr
                .contains("record claims 33554432 captured bytes (limit 16777216)"),
        "{}",
        r.stderr
    );
    assert_eq!(count(&r.summary, "packets_read"), 1, "{}", r.summary);
    assert_eq!(count(&r.summary, "packets_in_flows"), 1, "{}", r.summary);
    assert_eq!(r.summary["files"][0]["status"], "partial", "{}", r.summary);
}

#[test]
fn unknown_link_type_is_counted_not_fatal() {
    // 147 = LINKTYPE_USER0: nothing we can decode.
    let records: Vec<Rec> = (0..4)
        .map(|i| rec(1_700_000_000 + i, vec![0x45; 60]))
        .collect();
    let r = analyze("user0.pcap", &pcap(147, 65535, &records));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(count(&r.summary, "packets_read"), 4, "{}", r.summary);
    assert_eq!(
        r.summary["skipped_by_reason"]["unknown_link_type"], 4,
        "{}",
        r.summary
    );
    assert_eq!(count(&r.summary, "flows"), 0, "{}", r.summary);
}

fn absurd_timestamps() -> Vec<u8> {
    let p = |i: u8| udp4(40000, 9999, &[i; 20]);
    let records = [
        rec(1_700_000_100, p(0)),
        rec(1_700_000_000, p(1)), // backwards by 100 s
        rec(0, p(2)),             // 1970-01-01
        rec(4_102_444_800, p(3)), // 2100-01-01
        Rec {
            sec: 1_700_000_050,
            usec: 999_999_999,
            caplen: 62,
            orig_len: 62,
            data: p(4),
        }, // usec out of range
        rec(u32::MAX, p(5)),      // 2106-02-07
    ];
    pcap(LINK_ETHERNET, 65535, &records)
}

#[test]
fn timestamps_backwards_and_absurd_are_handled() {
    let r = analyze("timestamps.pcap", &absurd_timestamps());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(count(&r.summary, "packets_read"), 6, "{}", r.summary);
    assert_eq!(count(&r.summary, "packets_in_flows"), 6, "{}", r.summary);
    let first = r.summary["first_ts"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let last = r.summary["last_ts"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        !first.is_empty() && !last.is_empty() && first <= last,
        "{first} .. {last}"
    );
    let fl = flows("timestamps.pcap", &absurd_timestamps());
    let packets: u64 = fl
        .iter()
        .map(|f| count(f, "packets_c2s") + count(f, "packets_s2c"))
        .sum();
    assert_eq!(packets, 6, "{fl:?}");
}

fn ip_options_and_ipv6_chain() -> Vec<u8> {
    // IPv4 with 40 bytes of options (the maximum, IHL 15): record route (7), NOPs, end of list.
    let mut opts = vec![7, 39, 4];
    opts.resize(39, 0);
    opts.push(0); // end of option list
    let v4 = ether(
        0x0800,
        &ipv4(
            17,
            CLIENT,
            SERVER,
            &opts,
            0,
            7,
            &udp(40000, 7777, b"options"),
        ),
    );
    // A 2-byte IPv4 option that claims 200 bytes (malformed, but the header length is right).
    let v4_bad_opt = ether(
        0x0800,
        &ipv4(
            17,
            CLIENT,
            SERVER,
            &[0x44, 200, 5, 0],
            0,
            8,
            &udp(40000, 7777, b"bad option"),
        ),
    );
    // IPv6 with hop-by-hop, destination options, routing (type 0, segments left 0) and eight
    // more destination-options headers, then UDP (RFC 8200 §4).
    let udp6 = udp(40001, 7778, b"ipv6 chain");
    let mut exts: Vec<(u8, Vec<u8>)> = vec![
        (0, vec![1, 4, 0, 0, 0, 0]),  // hop-by-hop: PadN
        (60, vec![1, 4, 0, 0, 0, 0]), // destination options
        (43, vec![0, 0, 0, 0, 0, 0]), // routing type 0, segments left 0
    ];
    for _ in 0..8 {
        exts.push((60, vec![1, 4, 0, 0, 0, 0]));
    }
    let mut chain = Vec::new();
    for (i, (_, body)) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(17, |(t, _)| *t);
        chain.push(next);
        chain.push(0); // header length in 8-byte units, minus one
        chain.extend_from_slice(body);
    }
    chain.extend_from_slice(&udp6);
    let mut v6 = vec![0x60, 0, 0, 0];
    v6.extend_from_slice(&(chain.len() as u16).to_be_bytes());
    v6.push(exts[0].0);
    v6.push(64);
    v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    v6.extend_from_slice(&chain);
    let v6 = ether(0x86dd, &v6);
    // The same chain cut in the middle of an extension header.
    let mut v6_cut = v6.clone();
    v6_cut.truncate(14 + 40 + 20);
    pcap(
        LINK_ETHERNET,
        65535,
        &[
            rec(1_700_000_000, v4),
            rec(1_700_000_001, v4_bad_opt),
            rec(1_700_000_002, v6),
            rec(1_700_000_003, v6_cut),
        ],
    )
}

#[test]
fn ipv4_options_and_long_ipv6_extension_chain_reach_the_transport() {
    let bytes = ip_options_and_ipv6_chain();
    let r = analyze("ip_options.pcap", &bytes);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(count(&r.summary, "packets_read"), 4, "{}", r.summary);
    let fl = flows("ip_options.pcap", &bytes);
    let ports: Vec<u64> = fl.iter().map(|f| count(f, "server_port")).collect();
    assert!(ports.contains(&7777), "IPv4 with options decoded: {fl:?}");
    assert!(
        ports.contains(&7778),
        "IPv6 after 11 extension headers decoded: {fl:?}"
    );
}

fn overlapping_fragments() -> Vec<u8> {
    let frag = |off_units: u16, more: bool, payload: &[u8]| {
        let flags = if more { 0x2000 } else { 0 };
        ether(
            0x0800,
            &ipv4(17, CLIENT, SERVER, &[], flags | off_units, 0x4242, payload),
        )
    };
    let first = udp(40000, 5353, &[0x11; 24]); // 32 bytes: offsets 0..4 in 8-byte units
    let records = [
        rec(1_700_000_000, frag(0, true, &first)),
        rec(1_700_000_000, frag(2, true, &[0x22; 32])), // overlaps the first fragment
        rec(1_700_000_000, frag(0, true, &udp(40000, 9, &[0x33; 8]))), // rewrites the UDP header
        rec(1_700_000_000, frag(3, false, &[0x44; 16])), // overlaps both, last fragment
        rec(1_700_000_000, frag(8191, false, &[0x55; 16])), // offset at the 65 528-byte limit
        rec(1_700_000_000, frag(0, false, &[0x66; 3])), // "unfragmented" but shorter than UDP
    ];
    pcap(LINK_ETHERNET, 65535, &records)
}

#[test]
fn overlapping_ipv4_fragments_are_accounted() {
    let r = analyze("fragments.pcap", &overlapping_fragments());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(count(&r.summary, "packets_read"), 6, "{}", r.summary);
    assert_eq!(
        r.summary["skipped_by_reason"]["non_first_fragment"], 3,
        "{}",
        r.summary
    );
}

fn tcp_every_flag() -> Vec<u8> {
    let records: Vec<Rec> = (0..=255u8)
        .map(|flags| {
            let from_client = flags % 3 != 0;
            let payload: &[u8] = if flags % 5 == 0 {
                b""
            } else {
                b"\x16\x03\x01\x00\x05hello"
            };
            let mut r = rec(
                1_700_000_000,
                tcp4(from_client, u32::from(flags) * 100, 1, flags, payload),
            );
            r.usec = u32::from(flags) * 1000;
            r
        })
        .collect();
    pcap(LINK_ETHERNET, 65535, &records)
}

#[test]
fn tcp_with_every_flag_combination_on_one_five_tuple() {
    let r = analyze("tcp_flags.pcap", &tcp_every_flag());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(count(&r.summary, "packets_read"), 256, "{}", r.summary);
    assert_eq!(count(&r.summary, "packets_skipped"), 0, "{}", r.summary);
    assert!(count(&r.summary, "flows") >= 1, "{}", r.summary);
}

fn dns_compression_loops() -> Vec<u8> {
    let header = |id: u8, qd: u8, an: u8| vec![0x10, id, 0x81, 0x80, 0, qd, 0, an, 0, 0, 0, 0];
    // A question whose name is a pointer to itself (offset 12).
    let mut self_loop = header(1, 1, 0);
    self_loop.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    // Two names pointing at each other: 12 -> 20 -> 12.
    let mut two_loop = header(2, 2, 0);
    two_loop.extend_from_slice(&[1, b'a', 0xc0, 0x14, 0, 1, 0, 1]); // offset 12: "a" then -> 20
    two_loop.extend_from_slice(&[1, b'b', 0xc0, 0x0c, 0, 1, 0, 1]); // offset 20: "b" then -> 12
                                                                    // An answer whose name points past the end, and one with a 63-byte label chain of pointers.
    let mut past_end = header(3, 0, 1);
    past_end.extend_from_slice(&[0xc3, 0xff, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
    let mut chain = header(4, 1, 0);
    for i in 0..60u8 {
        // each pointer goes to the previous pointer
        let to = 12 + 2 * u16::from(i.saturating_sub(1));
        chain.extend_from_slice(&(0xc000 | to).to_be_bytes());
    }
    chain.extend_from_slice(&[0, 1, 0, 1]);
    let records: Vec<Rec> = [self_loop, two_loop, past_end, chain]
        .iter()
        .enumerate()
        .flat_map(|(i, m)| {
            let q = udp4(40000 + i as u16, 53, m);
            let mut resp_ip = ipv4(17, SERVER, CLIENT, &[], 0, 2, &udp(53, 40000 + i as u16, m));
            resp_ip.truncate(resp_ip.len());
            [
                rec(1_700_000_000, q),
                rec(1_700_000_001, ether(0x0800, &resp_ip)),
            ]
        })
        .collect();
    pcap(LINK_ETHERNET, 65535, &records)
}

#[test]
fn dns_compression_loops_do_not_hang_or_crash() {
    let r = analyze("dns_loops.pcap", &dns_compression_loops());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(count(&r.summary, "packets_read"), 8, "{}", r.summary);
    assert_eq!(count(&r.summary, "packets_in_flows"), 8, "{}", r.summary);
    for f in flows("dns_loops.pcap", &dns_compression_loops()) {
        let p = f["protocol"].as_str().unwrap_or_default();
        assert!(
            matches!(p, "dns" | "unknown" | ""),
            "a looping DNS message got {p}: {f}"
        );
    }
}

/// A TLS 1.3-style ClientHello record for `sni` (RFC 8446 §4.1.2, RFC 6066 §3).
fn client_hello(sni: &str) -> Vec<u8> {
    let mut ext = Vec::new();
    let name = sni.as_bytes();
    let mut sni_ext = Vec::new();
    sni_ext.extend_from_slice(&(name.len() as u16 + 3).to_be_bytes());
    sni_ext.push(0);
    sni_ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni_ext.extend_from_slice(name);
    ext.extend_from_slice(&[0, 0]);
    ext.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni_ext);
    ext.extend_from_slice(&[0x00, 0x2b, 0, 3, 2, 0x03, 0x04]); // supported_versions: TLS 1.3
    ext.extend_from_slice(&[0x00, 0x0d, 0, 4, 0, 2, 0x04, 0x03]); // signature_algorithms
    ext.extend_from_slice(&[0x00, 0x15, 0, 200]); // padding so the record spans segments
    ext.extend_from_slice(&[0; 200]);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x5a; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

fn tls_split() -> Vec<u8> {
    let hello = client_hello("split.example.com");
    // Cut inside the record header, then inside the SNI extension.
    let cuts = [3, 60, hello.len()];
    let mut records = vec![
        rec(1_700_000_000, tcp4(true, 1000, 0, 0x02, b"")),
        rec(1_700_000_000, tcp4(false, 5000, 1001, 0x12, b"")),
        rec(1_700_000_000, tcp4(true, 1001, 5001, 0x10, b"")),
    ];
    let mut start = 0;
    for end in cuts {
        let seq = 1001 + start as u32;
        records.push(rec(
            1_700_000_001,
            tcp4(true, seq, 5001, 0x18, &hello[start..end]),
        ));
        start = end;
    }
    pcap(LINK_ETHERNET, 65535, &records)
}

#[test]
fn tls_client_hello_split_across_three_segments_is_recognised() {
    let r = analyze("tls_split.pcap", &tls_split());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(count(&r.summary, "packets_read"), 6, "{}", r.summary);
    let fl = flows("tls_split.pcap", &tls_split());
    assert_eq!(fl.len(), 1, "{fl:?}");
    assert_eq!(fl[0]["protocol"], "tls", "{}", fl[0]);
    let evidence = fl[0]["evidence"].as_str().unwrap_or_default();
    assert!(evidence.contains("sni=split.example.com"), "{evidence}");
}

fn quic_bogus_lengths() -> Vec<u8> {
    let long = |dcid_len: u8, rest: &[u8]| {
        let mut p = vec![0xc3, 0, 0, 0, 1, dcid_len];
        p.extend_from_slice(rest);
        p
    };
    let mut big = long(8, &[0xaa; 8]);
    big.extend_from_slice(&[0, 0x00, 0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]); // scid 0, token 0, Length 2^62-1
    big.resize(1200, 0);
    let mut token = long(8, &[0xaa; 8]);
    token.extend_from_slice(&[0, 0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]); // token length 2^62-1
    token.resize(1200, 0);
    let packets = [
        long(255, &[0xbb; 40]), // DCID length 255 (> 20, > datagram)
        long(20, &[0xcc; 10]),  // DCID cut short
        big,
        token,
        long(0, &[0, 0x40]),                   // a varint cut in half
        vec![0xc0, 0xff, 0, 0, 0x1d, 4, 1, 2], // draft-29 header ending mid-DCID
        vec![0x80],                            // a lone long-header byte
    ];
    let records: Vec<Rec> = packets
        .iter()
        .map(|p| rec(1_700_000_000, udp4(40000, 443, p)))
        .collect();
    pcap(LINK_ETHERNET, 65535, &records)
}

#[test]
fn quic_long_headers_with_bogus_lengths_are_not_quic_and_do_not_crash() {
    let r = analyze("quic_bogus.pcap", &quic_bogus_lengths());
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(count(&r.summary, "packets_read"), 7, "{}", r.summary);
    assert_eq!(count(&r.summary, "packets_in_flows"), 7, "{}", r.summary);
    let fl = flows("quic_bogus.pcap", &quic_bogus_lengths());
    assert_eq!(fl.len(), 1, "{fl:?}");
    let family = fl[0]["family"].as_str().unwrap_or_default();
    assert!(
        !matches!(family, "vpn" | "proxy" | "tunnel"),
        "bogus QUIC labelled {}",
        fl[0]
    );
}

#[test]
fn raw_ip_link_with_garbage_is_accounted() {
    // LINKTYPE_RAW records: an IPv4 header claiming IHL 15 in 20 bytes, an IPv6 header with a
    // payload length beyond the record, a version-7 packet, one byte.
    let mut v6 = vec![0x60, 0, 0, 0, 0xff, 0xff, 17, 64];
    v6.extend_from_slice(&[0; 32]);
    let records = [
        rec(
            1_700_000_000,
            vec![
                0x4f, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ],
        ),
        rec(1_700_000_000, v6),
        rec(1_700_000_000, vec![0x70; 40]),
        rec(1_700_000_000, vec![0x45]),
    ];
    let r = analyze("raw_garbage.pcap", &pcap(LINK_RAW, 65535, &records));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(count(&r.summary, "packets_read"), 4, "{}", r.summary);
}

#[test]
fn same_inputs_twice_give_byte_identical_flows() {
    let dir = scratch("hostile-twice");
    let inputs = [
        write(&dir, "a_snaplen.pcap", &snaplen_and_zero_length()),
        write(&dir, "b_timestamps.pcap", &absurd_timestamps()),
        write(&dir, "c_ip_options.pcap", &ip_options_and_ipv6_chain()),
        write(&dir, "d_fragments.pcap", &overlapping_fragments()),
        write(&dir, "e_tcp_flags.pcap", &tcp_every_flag()),
        write(&dir, "f_dns_loops.pcap", &dns_compression_loops()),
        write(&dir, "g_tls_split.pcap", &tls_split()),
        write(&dir, "h_quic_bogus.pcap", &quic_bogus_lengths()),
    ];
    let once = || {
        let mut args = vec!["flows", "--format", "jsonl", "-q"];
        args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        o.stdout
    };
    let first = once();
    let second = once();
    assert!(!first.is_empty());
    assert!(first == second, "two runs over the same inputs differ");
    // And the folder form (walked in name order) gives the same bytes again.
    let o = run(&["flows", dir.to_str().unwrap(), "--format", "jsonl", "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        o.stdout == first,
        "the folder walk differs from the file list"
    );
}

// ---------------------------------------------------------------------------------------------
// Regressions found by the fuzz targets (fuzz/run.sh).

/// fuzz target `decode`, crash-4ef22b29: an IPv6 hop-by-hop header followed by a second
/// hop-by-hop header (not allowed after the first, RFC 8200 §4.3). etherparse's lax parse stops
/// there, but its extension iterator then read past the end of the packet (heap overflow under
/// AddressSanitizer). Fixed in src/decode/mod.rs (bounded walk over validated headers).
const FUZZ_DECODE_IPV6_HBH_TWICE: [u8; 55] = [
    0x60, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x80, 0xff, 0x25, 0x60,
    0xff, 0x11, 0xff, 0xff, 0xff, 0xff, 0xb2, 0xff, 0xff, 0xff, 0x34, 0xff, 0xff, 0xff, 0xff, 0xf6,
    0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0x00, 0x00, 0x00, 0x00, 0x2e, 0x2e, 0x00, 0x00, 0x00, 0x00,
    0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
];

#[test]
fn fuzz_regression_ipv6_extension_chain_stopping_at_a_bad_header() {
    // The fuzzer's bytes, and a clean minimal form: hop-by-hop -> hop-by-hop, then a
    // destination-options header cut short, and a fragment header cut short.
    let mut minimal = vec![0x60, 0, 0, 0, 0, 8, 0, 64];
    minimal.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    minimal.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    let mut cut_dest = minimal.clone();
    minimal.extend_from_slice(&[0, 0, 1, 4, 0, 0, 0, 0]); // next header 0 again
    cut_dest.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0, 17, 5, 0]); // dest opts claims 48 bytes
    let mut cut_frag = cut_dest.clone();
    cut_frag[40] = 44; // hop-by-hop -> fragment header, 3 of its 8 bytes present
    let records = [
        rec(1_700_000_000, FUZZ_DECODE_IPV6_HBH_TWICE.to_vec()),
        rec(1_700_000_001, minimal.clone()),
        rec(1_700_000_002, cut_dest),
        rec(1_700_000_003, cut_frag),
    ];
    let r = analyze("fuzz_ipv6_hbh.pcap", &pcap(LINK_RAW, 65535, &records));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(count(&r.summary, "packets_read"), 4, "{}", r.summary);
    // Over Ethernet too.
    let eth = [
        rec(1_700_000_000, ether(0x86dd, &FUZZ_DECODE_IPV6_HBH_TWICE)),
        rec(1_700_000_001, ether(0x86dd, &minimal)),
    ];
    let r = analyze("fuzz_ipv6_hbh_eth.pcap", &pcap(LINK_ETHERNET, 65535, &eth));
    assert_eq!(count(&r.summary, "packets_read"), 2, "{}", r.summary);
}
