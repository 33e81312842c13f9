//! "The hot path never allocates per packet" (developers' guide), counted: once a flow's
//! detectors have decided or spent their payload budgets, further packets of that flow, decoded
//! and accounted by the flow table with every registered detector, allocate nothing. A flow's
//! first packets may allocate (its table slot, detector state, facts worth keeping); those are
//! per flow. Allocations are counted per thread by a counting global allocator, so other tests
//! running at the same time do not disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tunnelwatch::decode::decode_ip;
use tunnelwatch::fingerprint::registry::REGISTRY;
use tunnelwatch::flow::{FlowConfig, FlowRecord, FlowTable};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the thread-local may already be gone while a thread is being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is passed on unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Bytes that look encrypted (a 64-bit LCG's high bytes), different for every packet.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

/// An IPv4 packet: 20-byte header, then a TCP header (with `seq` and `flags`) or a UDP header.
fn ipv4(
    tcp: Option<(u32, u8)>,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    payload: &[u8],
) -> Vec<u8> {
    let l4 = if tcp.is_some() { 20 } else { 8 };
    let total = 20 + l4 + payload.len();
    let mut v = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64];
    v.push(if tcp.is_some() { 6 } else { 17 });
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&src.0);
    v.extend_from_slice(&dst.0);
    v.extend_from_slice(&src.1.to_be_bytes());
    v.extend_from_slice(&dst.1.to_be_bytes());
    match tcp {
        Some((seq, flags)) => {
            v.extend_from_slice(&seq.to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        }
        None => {
            let len = (8 + payload.len()) as u16;
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(&[0, 0]);
        }
    }
    v.extend_from_slice(payload);
    v
}

const CLIENT: ([u8; 4], u16) = ([10, 0, 0, 2], 50_123);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

/// One long TCP connection: handshake, then `n` data packets alternating direction, with
/// sequence numbers advancing (so none is taken for a retransmission).
fn tcp_connection(server: ([u8; 4], u16), n: usize) -> Vec<Vec<u8>> {
    let (mut c_seq, mut s_seq) = (1_000u32, 9_000u32);
    let mut packets = vec![
        ipv4(Some((c_seq, SYN)), CLIENT, server, &[]),
        ipv4(Some((s_seq, SYN | ACK)), server, CLIENT, &[]),
    ];
    c_seq += 1;
    s_seq += 1;
    packets.push(ipv4(Some((c_seq, ACK)), CLIENT, server, &[]));
    for i in 0..n {
        if i % 2 == 0 {
            let payload = noise(i as u64, 180);
            packets.push(ipv4(Some((c_seq, PSH_ACK)), CLIENT, server, &payload));
            c_seq = c_seq.wrapping_add(payload.len() as u32);
        } else {
            let payload = noise(i as u64, 1_200);
            packets.push(ipv4(Some((s_seq, PSH_ACK)), server, CLIENT, &payload));
            s_seq = s_seq.wrapping_add(payload.len() as u32);
        }
    }
    packets
}

/// One long UDP exchange of `n` datagrams alternating direction.
fn udp_exchange(server: ([u8; 4], u16), n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let payload = noise(i as u64, if i % 2 == 0 { 148 } else { 92 });
            if i % 2 == 0 {
                ipv4(None, CLIENT, server, &payload)
            } else {
                ipv4(None, server, CLIENT, &payload)
            }
        })
        .collect()
}

/// Allocations made while the table accounts `packets[warm_up..]` (one packet per millisecond,
/// so expiry sweeps run along the way).
fn allocations_after_warm_up(packets: &[Vec<u8>], warm_up: usize) -> u64 {
    let mut table = FlowTable::new(FlowConfig::default(), REGISTRY);
    let mut finished: Vec<FlowRecord> = Vec::with_capacity(16);
    let mut before = 0;
    for (i, ip) in packets.iter().enumerate() {
        if i == warm_up {
            before = allocations();
        }
        let Ok(pkt) = decode_ip(ip) else {
            panic!("packet {i} does not decode");
        };
        table.process(
            1_700_000_000_000_000_000 + i as i64 * 1_000_000,
            &pkt,
            &mut |r| finished.push(r),
        );
    }
    let during = allocations() - before;
    assert!(finished.is_empty(), "the flow must still be open");
    assert_eq!(table.counters().flows_created, 1);
    during
}

#[test]
fn steady_tcp_and_udp_flows_allocate_nothing_per_packet() {
    // Ports that wake the port-corroborated detectors too (HTTPS, OpenVPN, WireGuard, IKE NAT-T).
    for (name, packets) in [
        ("tcp 443", tcp_connection(([93, 184, 216, 34], 443), 3_000)),
        ("tcp 1194", tcp_connection(([198, 51, 100, 7], 1194), 3_000)),
        (
            "udp 51820",
            udp_exchange(([198, 51, 100, 9], 51_820), 3_000),
        ),
        ("udp 4500", udp_exchange(([198, 51, 100, 11], 4_500), 3_000)),
        ("udp 443", udp_exchange(([142, 250, 0, 1], 443), 3_000)),
    ] {
        let during = allocations_after_warm_up(&packets, 200);
        assert_eq!(
            during,
            0,
            "{name}: {during} allocations over {} packets after the first 200",
            packets.len() - 200
        );
    }
}

/// The counter sees allocations at all (the test above cannot pass by counting nothing).
#[test]
fn the_counter_counts() {
    let before = allocations();
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(64));
    drop(v);
    assert!(allocations() > before);
}
