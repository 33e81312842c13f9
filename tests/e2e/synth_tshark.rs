//! An independent dissector reads `tunnelwatch synth` output: tshark (Wireshark) must decode
//! the generated QUIC flows as QUIC, remove the Initial protection itself (RFC 9001 §5: keys
//! from the client's Destination Connection ID, which tshark derives by default) and find the
//! SNI and ALPN the truth file names. Skips with a message where tshark is not installed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::util::{run, scratch, stderr};

fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One line per frame matching `filter`, tab-separated `fields`.
fn tshark(pcap: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(pcap).arg("-Y").arg(filter);
    cmd.args(["-T", "fields", "-E", "separator=/t"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark runs");
    assert!(out.status.success(), "tshark: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[test]
fn tshark_decodes_synth_quic_with_the_sni_written() {
    if !tshark_available() {
        eprintln!(
            "SKIPPED tshark_decodes_synth_quic_with_the_sni_written: tshark is not installed"
        );
        return;
    }
    let dir = scratch("synth-tshark");
    let pcap = dir.join("s.pcap");
    let out = run(&[
        "synth",
        "--preset",
        "pk-x-2024-small",
        "--seed",
        "4",
        "--hosts",
        "40",
        "--days",
        "0.5",
        "--out",
        pcap.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Truth: client endpoint -> SNI of every QUIC flow.
    let truth = std::fs::read_to_string(dir.join("s.truth.csv")).unwrap();
    let mut want: BTreeMap<(String, String), String> = BTreeMap::new();
    for line in truth.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        if c[9] == "quic" {
            assert_eq!((c[7], c[8]), ("443", "udp"));
            want.insert((c[4].to_string(), c[5].to_string()), c[13].to_string());
        }
    }
    assert!(
        want.len() >= 5,
        "too few QUIC flows to check: {}",
        want.len()
    );
    // Client Initials tshark decrypted: the ClientHello, its SNI and ALPN.
    let hellos = tshark(
        &pcap,
        "quic && tls.handshake.type == 1",
        &[
            "ip.src",
            "ipv6.src",
            "udp.srcport",
            "quic.version",
            "tls.handshake.extensions_server_name",
            "tls.handshake.extensions_alpn_str",
        ],
    );
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    for f in &hellos {
        let src = if f[0].is_empty() { &f[1] } else { &f[0] };
        assert_eq!(f[3], "0x00000001", "QUIC v1: {f:?}");
        assert_eq!(f[5], "h3", "ALPN: {f:?}");
        let prev = seen.insert((src.clone(), f[2].clone()), f[4].clone());
        assert!(prev.is_none(), "one ClientHello per flow: {f:?}");
    }
    // Normalise IPv6 text the way the truth file writes it (both are RFC 5952 from Rust and
    // Wireshark, but parse to be safe).
    let norm =
        |m: BTreeMap<(String, String), String>| -> BTreeMap<(std::net::IpAddr, u16), String> {
            m.into_iter()
                .map(|((ip, port), sni)| ((ip.parse().unwrap(), port.parse().unwrap()), sni))
                .collect()
        };
    assert_eq!(
        norm(seen),
        norm(want.clone()),
        "tshark's SNIs vs the truth file"
    );
    // Each QUIC flow's server answers with a ServerHello tshark decrypts with "server in" keys.
    let server_hellos = tshark(&pcap, "quic && tls.handshake.type == 2", &["udp.dstport"]);
    assert_eq!(server_hellos.len(), want.len(), "one ServerHello per flow");
    // Every datagram on UDP/443 is QUIC to tshark, none malformed, and the data phase uses
    // short headers (header form 0).
    let not_quic = tshark(&pcap, "udp.port == 443 && !quic", &["frame.number"]);
    assert!(
        not_quic.is_empty(),
        "non-QUIC frames on UDP/443: {not_quic:?}"
    );
    let malformed = tshark(&pcap, "quic && _ws.malformed", &["frame.number"]);
    assert!(malformed.is_empty(), "malformed QUIC frames: {malformed:?}");
    let forms: BTreeSet<String> = tshark(&pcap, "quic", &["quic.header_form"])
        .into_iter()
        .flat_map(|f| f[0].split(',').map(str::to_string).collect::<Vec<_>>())
        .collect();
    assert!(
        forms.contains("0") && forms.contains("1"),
        "long and short headers: {forms:?}"
    );
}

/// What tshark calls each protocol of the truth file (`frame.protocols` layer names).
const LAYER: &[(&str, &str)] = &[
    ("wireguard", "wg"),
    ("openvpn", "openvpn"),
    ("ipsec_ike", "isakmp"),
    ("tls", "tls"),
    ("dns", "dns"),
    ("ssh", "ssh"),
    ("socks", "socks"),
    ("http", "http"),
    ("quic", "quic"),
];

/// The shipped sample, dissected by tshark: every flow the generator completed is decoded as
/// the protocol the truth file names, TLS flows carry the SNI written, NAT-T flows on UDP/4500
/// carry ESP as well as ISAKMP. Port hint: WireGuard has no registered port in tshark 4.0, so
/// the test maps UDP/51820 to it (`-d udp.port==51820,wg`); the others are found by
/// tshark's own port registrations and heuristics.
#[test]
fn tshark_dissects_every_generated_protocol_of_the_sample() {
    if !tshark_available() {
        eprintln!("SKIPPED tshark_dissects_every_generated_protocol_of_the_sample: tshark is not installed");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let pcap = root.join("pk-x-2024-small.pcap");
    let truth = std::fs::read_to_string(root.join("pk-x-2024-small.truth.csv")).expect("truth");
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&pcap)
        .args([
            "-d",
            "udp.port==51820,wg",
            "-T",
            "fields",
            "-E",
            "separator=/t",
        ])
        .args([
            "-e",
            "frame.protocols",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "ip.dst",
        ])
        .args([
            "-e",
            "ipv6.dst",
            "-e",
            "tcp.srcport",
            "-e",
            "udp.srcport",
            "-e",
            "tcp.dstport",
        ])
        .args([
            "-e",
            "udp.dstport",
            "-e",
            "tls.handshake.extensions_server_name",
        ])
        .output()
        .expect("tshark runs");
    assert!(out.status.success(), "tshark: {}", stderr(&out));
    // Per endpoint (address, port): the layers and SNIs tshark saw in frames from or to it.
    let mut seen: BTreeMap<(String, String), (BTreeSet<String>, BTreeSet<String>)> =
        BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or_default();
        let pick = |a: &str, b: &str| {
            if a.is_empty() {
                b.to_string()
            } else {
                a.to_string()
            }
        };
        let (src, dst) = (pick(get(1), get(2)), pick(get(3), get(4)));
        let (sport, dport) = (pick(get(5), get(6)), pick(get(7), get(8)));
        for endpoint in [(src, sport), (dst, dport)] {
            let entry = seen.entry(endpoint).or_default();
            entry.0.extend(get(0).split(':').map(str::to_string));
            if !get(9).is_empty() {
                entry.1.insert(get(9).to_string());
            }
        }
    }
    let mut checked: BTreeMap<&str, usize> = BTreeMap::new();
    for line in truth.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        let (client, port, server_port, protocol, outcome, sni) =
            (c[4], c[5], c[7], c[9], c[12], c[13]);
        let Some((_, layer)) = LAYER.iter().find(|(p, _)| *p == protocol) else {
            continue;
        };
        if outcome != "ok" {
            continue;
        }
        let (layers, snis) = seen
            .get(&(client.to_string(), port.to_string()))
            .unwrap_or_else(|| panic!("tshark saw nothing of {protocol} flow {client}:{port}"));
        assert!(
            layers.contains(*layer),
            "{protocol} flow {client}:{port}: tshark layers {layers:?}"
        );
        if matches!(protocol, "tls" | "quic") && !sni.is_empty() {
            assert!(
                snis.contains(sni),
                "{protocol} flow {client}:{port}: SNI {sni} not in {snis:?}"
            );
        }
        if protocol == "ipsec_ike" && server_port == "4500" {
            assert!(
                layers.contains("esp"),
                "NAT-T flow {client}:{port} without ESP: {layers:?}"
            );
        }
        *checked.entry(protocol).or_default() += 1;
    }
    eprintln!("flows checked against tshark: {checked:?}");
    for (protocol, _) in LAYER {
        assert!(
            checked.get(protocol).copied().unwrap_or(0) > 0,
            "no {protocol} flow checked"
        );
    }
}
