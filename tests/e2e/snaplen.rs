//! Captures taken with a snap length (`tcpdump -s 96`, MAWI's traces, ISP taps that keep
//! headers): every frame cut after its first bytes, the original length kept in the record.
//! The dev corpus's pcap and pcapng captures are cut here as such a capture would have been
//! written, and must read packet for packet, label nothing the whole capture does not, and
//! keep the labels that rest on headers and on-wire lengths.

use std::collections::BTreeSet;
use std::path::Path;

use crate::util::{flow_rows, scored_tokens, scratch, shared};

/// The vocabulary's ordinary tokens: not what the detectors are judged on.
const ORDINARY: [&str; 8] = [
    "tls", "quic", "dns", "http", "stun", "dtls", "none", "unknown",
];

/// Captures whose every label must survive a cut to 96 bytes (MAWI's snap length): headers,
/// message types, replay fields and lengths on the wire decide them.
const KEEP_AT_96: [&str; 17] = [
    "8-trace.pcap",
    "IKEv2.pcap",
    "reverse-ssh.pcap",
    "socks4_5.pcap",
    "http_connect.pcap",
    "l2tp.pcap",
    "icmp-tunnel.pcap",
    "openvpn_udp_tls-auth.pcap",
    "openvpn_udp_hmac_256.pcap",
    "openvpn-tlscrypt.pcap",
    "ah.pcapng",
    "esp.pcapng",
    "gre.pcapng",
    "http-proxy.pcapng",
    "openvpn_nohmac_tcp.pcapng",
    // XOR-scrambled OpenVPN over UDP and TCP: first bytes and wire lengths.
    "openvpn_obfuscated.pcapng",
    // TLS-in-TLS: record headers and lengths on the wire.
    "tls_heur__vmess-tcp-tls.pcapng",
];

/// And, with a few more bytes, these too at 128.
const KEEP_AT_128_TOO: [&str; 4] = [
    "mullvad_wireguard.pcap",
    "gre-pptp.pcap",
    "pptp.pcap",
    "espudp1.pcap",
];

/// A capture cut to `snap` bytes per frame, as `editcap -s` does: classic pcap (incl_len =
/// min(incl_len, snap), orig_len kept) or pcapng ([`cut_pcapng`]); `None` for anything else.
fn cut_capture(bytes: &[u8], snap: u32) -> Option<Vec<u8>> {
    match bytes.get(..4)? {
        [0x0a, 0x0d, 0x0d, 0x0a] => cut_pcapng(bytes, snap),
        _ => cut_pcap(bytes, snap),
    }
}

/// A pcapng file with the packet data of every Enhanced Packet Block (type 6) cut to `snap`
/// bytes (captured length lowered, original length, options and every other block kept;
/// pcapng draft, section 4.3). Byte order from each Section Header Block's magic.
fn cut_pcapng(bytes: &[u8], snap: u32) -> Option<Vec<u8>> {
    let mut little = true;
    let u32_at = |little: bool, at: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let put = |little: bool, v: u32| {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at + 12 <= bytes.len() {
        if bytes.get(at..at + 4)? == [0x0a, 0x0d, 0x0d, 0x0a] {
            little = bytes.get(at + 8..at + 12)? == [0x4d, 0x3c, 0x2b, 0x1a];
        }
        let block_type = u32_at(little, at)?;
        let total = u32_at(little, at + 4)? as usize;
        let block = bytes.get(at..at + total)?;
        if block_type != 6 {
            out.extend_from_slice(block);
            at += total;
            continue;
        }
        // type, length, interface, timestamp (2), captured length, original length, data.
        let captured = u32_at(little, at + 20)?;
        let padded = (captured as usize).div_ceil(4) * 4;
        let data = block.get(28..28 + captured as usize)?;
        let options = block.get(28 + padded..total - 4)?;
        let kept = captured.min(snap);
        let kept_padded = (kept as usize).div_ceil(4) * 4;
        let new_total = (28 + kept_padded + options.len() + 4) as u32;
        let start = out.len();
        out.extend_from_slice(&block[..4]);
        out.extend_from_slice(&put(little, new_total));
        out.extend_from_slice(&block[8..20]);
        out.extend_from_slice(&put(little, kept));
        out.extend_from_slice(&block[24..28]);
        out.extend_from_slice(&data[..kept as usize]);
        out.resize(start + 28 + kept_padded, 0);
        out.extend_from_slice(options);
        out.extend_from_slice(&put(little, new_total));
        at += total;
    }
    Some(out)
}

/// A classic pcap cut to `snap` bytes per frame; `None` for any other format.
fn cut_pcap(bytes: &[u8], snap: u32) -> Option<Vec<u8>> {
    let little = match bytes.get(..4)? {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return None,
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let put = |v: u32| {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let mut out = bytes.get(..24)?.to_vec();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let incl = u32_at(at + 8)?;
        let data = bytes.get(at + 16..at + 16 + incl as usize)?;
        let kept = incl.min(snap);
        out.extend_from_slice(&bytes[at..at + 8]);
        out.extend_from_slice(&put(kept));
        out.extend_from_slice(&bytes[at + 12..at + 16]);
        out.extend_from_slice(&data[..kept as usize]);
        at += 16 + incl as usize;
    }
    Some(out)
}

/// The target tokens of a run's rows, as the corpus scorer counts them.
fn target_tokens(rows: &[serde_json::Value]) -> BTreeSet<String> {
    let mut tokens = scored_tokens(rows);
    tokens.retain(|t| !ORDINARY.contains(&t.as_str()));
    tokens
}

fn packets(rows: &[serde_json::Value]) -> u64 {
    rows.iter()
        .map(|r| r["packets_c2s"].as_u64().unwrap() + r["packets_s2c"].as_u64().unwrap())
        .sum()
}

#[test]
fn captures_cut_to_a_snap_length_gain_no_labels_and_keep_the_header_ones() {
    let Some(shared) = shared("snap-length captures") else {
        return;
    };
    let dev = shared.join("corpus/dev");
    let work = scratch("snaplen");
    let mut cut_files = 0;
    let mut kept_checked = 0;
    let mut names: Vec<_> = std::fs::read_dir(&dev)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let Some(whole_bytes) = std::fs::read(&path).ok() else {
            continue;
        };
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let whole = flow_rows_if_capture(&path);
        let Some(whole) = whole else { continue };
        let whole_tokens = target_tokens(&whole);
        for snap in [96u32, 128] {
            let Some(cut) = cut_capture(&whole_bytes, snap) else {
                continue;
            };
            let cut_path = work.join(format!("{snap}-{name}"));
            std::fs::write(&cut_path, cut).unwrap();
            let rows = flow_rows(&cut_path, &[]);
            let context = format!("{name} cut to {snap} bytes");
            assert_eq!(packets(&rows), packets(&whole), "{context}: packets");
            assert_eq!(rows.len(), whole.len(), "{context}: flows");
            let tokens = target_tokens(&rows);
            let gained: Vec<_> = tokens.difference(&whole_tokens).collect();
            assert!(
                gained.is_empty(),
                "{context}: labels only the cut capture has: {gained:?}"
            );
            let keep = KEEP_AT_96.contains(&name.as_str())
                || (snap == 128 && KEEP_AT_128_TOO.contains(&name.as_str()));
            if keep {
                assert_eq!(tokens, whole_tokens, "{context}: header labels lost");
                kept_checked += 1;
            }
            cut_files += 1;
        }
    }
    assert!(cut_files >= 60, "only {cut_files} cut captures");
    assert_eq!(
        kept_checked,
        2 * KEEP_AT_96.len() + KEEP_AT_128_TOO.len(),
        "every listed capture was checked"
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// The rows of a capture file of the corpus (not `labels.csv`).
fn flow_rows_if_capture(path: &Path) -> Option<Vec<serde_json::Value>> {
    let ext = path.extension()?.to_str()?;
    matches!(ext, "pcap" | "pcapng" | "cap").then(|| flow_rows(path, &[]))
}
