//! Every registered fingerprinter through the driver over arbitrary flows: the input is split
//! into payloads (length-prefixed), alternating directions, on TCP, UDP, ICMP, GRE and ESP.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tunnelwatch::fingerprint::registry::REGISTRY;
use tunnelwatch::fingerprint::{FingerprintState, FlowContext, Payload};
use tunnelwatch::flow::{Direction, Transport};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let transport = match selector % 5 {
        0 => Transport::Tcp,
        1 => Transport::Udp,
        2 => Transport::Icmp,
        3 => Transport::Other(47),
        _ => Transport::Other(50),
    };
    let server_port = [443u16, 1194, 51820, 500, 4500, 1080, 22, 53][usize::from(selector >> 5)];
    let mut state = FingerprintState::default();
    let mut counts = [0u8; 2];
    let mut nth = 0u8;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        let direction = if nth % 2 == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        let d = direction.index();
        if !bytes.is_empty() {
            state.observe(
                REGISTRY,
                &Payload {
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
                },
            );
            counts[d] = counts[d].saturating_add(1);
            nth = nth.saturating_add(1);
        }
    }
    let ctx = FlowContext {
        transport,
        client_ip: "10.0.0.1".parse().unwrap(),
        client_port: 40000,
        server_ip: "192.0.2.1".parse().unwrap(),
        server_port,
        packets: [u64::from(counts[0]), u64::from(counts[1])],
        payload_bytes: [0, 0],
        payload_packets: [u64::from(counts[0]), u64::from(counts[1])],
        duration_nanos: i64::from(nth) * 1_000_000,
    };
    let _ = state.finish(REGISTRY, &ctx).evidence_text();
});
