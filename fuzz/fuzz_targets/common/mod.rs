//! Shared by the per-protocol targets (not a target itself): drives one detector's `SPEC` over
//! a flow cut from the fuzz input, so private parsers are reached through the public
//! `Fingerprinter::observe` / `conclude`.
//!
//! Input layout: byte 0 picks the transport (among those the spec accepts) and the server port;
//! then payloads, each a little-endian u16 length (clamped to what is left) and its bytes,
//! alternating to-server / to-client unless bit 15 of the length forces the same direction again.
#![allow(dead_code)]
use tunnelwatch::fingerprint::{FlowContext, Payload, Spec, Step};
use tunnelwatch::flow::{Direction, Transport};

const PORTS: [u16; 8] = [443, 1194, 51820, 500, 4500, 1080, 22, 53];

/// Splits `data` into (direction, payload) pairs as described above.
pub fn payloads(mut rest: &[u8]) -> impl Iterator<Item = (Direction, &[u8])> {
    let mut toggle = false;
    std::iter::from_fn(move || {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let raw = u16::from_le_bytes(*len);
        let n = usize::from(raw & 0x7fff).min(tail.len());
        let (bytes, tail) = tail.split_at(n);
        rest = tail;
        if raw & 0x8000 == 0 {
            toggle = !toggle;
        }
        let dir = if toggle {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        Some((dir, bytes))
    })
}

fn transport_for(spec: &Spec, selector: u8) -> Transport {
    let candidates = [
        Transport::Tcp,
        Transport::Udp,
        Transport::Icmp,
        Transport::Other(47),
        Transport::Other(50),
        Transport::Other(51),
    ];
    let options: Vec<Transport> = candidates
        .into_iter()
        .filter(|t| spec.transports.contains(*t))
        .collect();
    options
        .get(usize::from(selector) % options.len().max(1))
        .copied()
        .unwrap_or(Transport::Udp)
}

/// Runs `spec` over the flow encoded in `data` the way the driver would: within its budget per
/// direction, stopping at the first `NotThis` / `Match`, then `conclude`.
pub fn drive(spec: &Spec, data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let transport = transport_for(spec, selector & 0x1f);
    let server_port = PORTS[usize::from(selector >> 5)];
    let mut fp = (spec.start)();
    let mut counts = [0u8; 2];
    let mut nth = 0u8;
    let mut live = spec.payload_budget > 0;
    for (direction, bytes) in payloads(rest) {
        if !live {
            break;
        }
        let d = direction.index();
        if bytes.is_empty() || counts[d] >= spec.payload_budget {
            continue;
        }
        let step = fp.observe(&Payload {
            direction,
            nth_in_direction: counts[d],
            nth,
            transport,
            client_port: 40000,
            server_port,
            ts_nanos: i64::from(nth) * 1_000_000,
            bytes,
            // Both kinds of flow, chosen by a bit the input already sets.
            midstream: server_port % 2 == 1,
            // Payloads cut short by a snap length, chosen by bits the input already sets.
            cut: if server_port % 4 >= 2 { server_port } else { 0 },
        });
        counts[d] += 1;
        nth = nth.saturating_add(1);
        if let Step::Match(v) = &step {
            let _ = format!("{v:?}");
        }
        live = matches!(step, Step::NeedMore);
    }
    let ctx = FlowContext {
        transport,
        client_ip: std::net::IpAddr::from([10, 0, 0, 1]),
        client_port: 40000,
        server_ip: std::net::IpAddr::from([192, 0, 2, 1]),
        server_port,
        packets: [u64::from(counts[0]), u64::from(counts[1])],
        payload_bytes: [0, 0],
        payload_packets: [u64::from(counts[0]), u64::from(counts[1])],
        duration_nanos: i64::from(nth) * 1_000_000,
    };
    if let Some(v) = fp.conclude(&ctx) {
        let _ = format!("{v:?}");
    }
}
