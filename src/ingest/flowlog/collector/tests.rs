use super::*;
use crate::ingest::flowlog::ipfix::tests::{ipfix_message, template_record};
use crate::ingest::flowlog::netflow_v5::tests::v5_packet;
use crate::ingest::flowlog::netflow_v9::tests::{template_body, v9_packet};
use proptest::prelude::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const A: &str = "127.0.0.1:2055";
const B: &str = "127.0.0.2:2055";

/// A v9/IPFIX data record: src, dst, packets u32, bytes u32.
fn data4(src: [u8; 4], dst: [u8; 4], pk: u32, by: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&src);
    b.extend_from_slice(&dst);
    b.extend_from_slice(&pk.to_be_bytes());
    b.extend_from_slice(&by.to_be_bytes());
    b
}

#[test]
fn v5_records_and_flow_sequence_gaps() {
    let mut c = Collector::new();
    let mut out = Vec::new();
    let r = ([10, 0, 0, 1], [10, 0, 0, 2], 40000, 1194, 17, 2, 98);
    c.handle_datagram(addr(A), &v5_packet(0, &[r, r]), &mut out);
    c.handle_datagram(addr(A), &v5_packet(2, &[r]), &mut out);
    c.handle_datagram(addr(A), &v5_packet(6, &[r]), &mut out); // flows 3..=5 lost
    c.handle_datagram(addr(B), &v5_packet(100, &[r]), &mut out); // another exporter: own space
    let s = c.stats();
    assert_eq!(
        (s.datagrams_v5, s.records, s.packets, s.bytes),
        (4, 5, 10, 490)
    );
    assert_eq!((s.sequence_gaps, s.lost_v5_flows), (1, 3));
    let flows = c.flow_records(&out);
    assert_eq!(flows[4].id, 4);
    assert_eq!(flows[0].label.protocol, "openvpn");
}

#[test]
fn v9_templates_per_exporter_buffering_and_gaps() {
    let mut c = Collector::new();
    let mut out = Vec::new();
    let t_a = template_body(256, &[(8, 4), (12, 4), (2, 4), (1, 4)]);
    // Exporter B uses the same id with another layout (bytes before packets).
    let t_b = template_body(256, &[(8, 4), (12, 4), (1, 4), (2, 4)]);
    // Data before its template: buffered, decoded when the template comes.
    c.handle_datagram(
        addr(A),
        &v9_packet(0, 1, &[(256, data4([1, 1, 1, 1], [2, 2, 2, 2], 3, 300))]),
        &mut out,
    );
    assert_eq!(
        (
            out.len(),
            c.stats().unknown_template_sets,
            c.stats().pending_sets
        ),
        (0, 1, 1)
    );
    c.handle_datagram(addr(A), &v9_packet(1, 1, &[(0, t_a)]), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].packets, out[0].bytes), (3, 300));
    assert_eq!(
        (
            c.stats().unknown_template_records_decoded,
            c.stats().pending_sets
        ),
        (1, 0)
    );
    c.handle_datagram(
        addr(B),
        &v9_packet(0, 1, &[(0, t_b), (256, data4([3; 4], [4; 4], 500, 5))]),
        &mut out,
    );
    assert_eq!((out[1].packets, out[1].bytes), (5, 500));
    // Same address, other source id: its own template space (256 unknown there).
    c.handle_datagram(
        addr(A),
        &v9_packet(0, 2, &[(256, data4([1; 4], [2; 4], 1, 1))]),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    // Package sequence 1 -> 4: packets 2 and 3 lost.
    c.handle_datagram(
        addr(A),
        &v9_packet(
            4,
            1,
            &[
                (256, data4([1; 4], [2; 4], 1, 1)),
                (256, data4([1; 4], [2; 4], 1, 1)),
            ],
        ),
        &mut out,
    );
    let s = c.stats();
    assert_eq!((s.sequence_gaps, s.lost_v9_packets), (1, 2));
    assert_eq!((s.templates, s.templates_received), (2, 2));
    assert_eq!(out.len(), 4);
    // v9 header: unix_secs 1_700_000_010, no flow times -> export time.
    assert_eq!(out[3].first_ns, 1_700_000_010_000_000_000);
}

#[test]
fn v9_options_records_are_not_flows() {
    let mut c = Collector::new();
    let mut out = Vec::new();
    // Options template 300: scope interface (2, 4 bytes), option sampling interval (34, 4).
    let ot = vec![1, 44, 0, 4, 0, 4, 0, 2, 0, 4, 0, 34, 0, 4];
    let od = vec![0, 0, 0, 1, 0, 0, 0, 10];
    c.handle_datagram(
        addr(A),
        &v9_packet(0, 0, &[(1, ot), (300, od), (7, vec![0; 4])]),
        &mut out,
    );
    let s = c.stats();
    assert_eq!(
        (
            s.options_records,
            s.records,
            s.reserved_sets,
            s.malformed_sets
        ),
        (1, 0, 1, 0)
    );
}

#[test]
fn ipfix_templates_withdrawal_times_and_sequence() {
    let mut c = Collector::new();
    let mut out = Vec::new();
    let from = addr(A);
    // Data template 256: src, dst, enterprise field, variable-length name, start/end uptime,
    // packets (reduced size 2), bytes (8).
    let t = template_record(
        256,
        None,
        &[
            (8, 4, None),
            (12, 4, None),
            (1, 4, Some(29305)),
            (82, 0xFFFF, None),
            (22, 4, None),
            (21, 4, None),
            (2, 2, None),
            (1, 8, None),
            (4, 1, None),
            (11, 2, None),
        ],
    );
    // Options template 257 carrying systemInitTimeMilliseconds (160).
    let ot = template_record(257, Some(1), &[(143, 4, None), (160, 8, None)]);
    let mut od = vec![0, 0, 0, 1];
    od.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
    let rec = |name: &[u8]| {
        let mut r = vec![10, 0, 0, 1, 192, 0, 2, 1, 9, 9, 9, 9, name.len() as u8];
        r.extend_from_slice(name);
        r.extend_from_slice(&1_000u32.to_be_bytes());
        r.extend_from_slice(&4_000u32.to_be_bytes());
        r.extend_from_slice(&[0, 4]);
        r.extend_from_slice(&400u64.to_be_bytes());
        r.extend_from_slice(&[50, 0, 0]);
        r
    };
    let mut data = rec(b"eth0");
    data.extend_from_slice(&rec(b""));
    c.handle_datagram(
        from,
        &ipfix_message(0, 7, &[(2, t.clone()), (3, ot), (257, od), (256, data)]),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].ip_proto, 50);
    assert_eq!((out[0].packets, out[0].bytes), (4, 400));
    assert_eq!(out[0].first_ns, 1_700_000_001_000_000_000);
    assert_eq!(out[0].last_ns, 1_700_000_004_000_000_000);
    assert_eq!(c.stats().options_records, 1);
    // 3 data records so far (1 options + 2 flows): sequence 3 is in order, 10 is a gap of 6.
    c.handle_datagram(from, &ipfix_message(3, 7, &[(256, rec(b"x"))]), &mut out);
    c.handle_datagram(from, &ipfix_message(10, 7, &[(256, rec(b"y"))]), &mut out);
    let s = c.stats().clone();
    assert_eq!(
        (
            s.sequence_gaps,
            s.lost_ipfix_records,
            s.sequence_out_of_order
        ),
        (1, 6, 0)
    );
    assert_eq!(out.len(), 4);
    assert_eq!(to_flow_record(&out[3], 0).label.protocol, "ipsec_esp");
    // Withdraw 256: its data is now buffered, not decoded; the restart (sequence 0) is out of order.
    c.handle_datagram(
        from,
        &ipfix_message(11, 7, &[(2, vec![1, 0, 0, 0])]),
        &mut out,
    );
    c.handle_datagram(from, &ipfix_message(0, 7, &[(256, rec(b"z"))]), &mut out);
    let s = c.stats().clone();
    assert_eq!(
        (
            s.templates,
            s.templates_withdrawn,
            s.unknown_template_sets,
            s.sequence_out_of_order
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(out.len(), 4);
    // Re-announced: the buffered set decodes. Then withdraw-all options templates.
    c.handle_datagram(
        from,
        &ipfix_message(1, 7, &[(2, t), (3, vec![0, 3, 0, 0])]),
        &mut out,
    );
    assert_eq!(out.len(), 5);
    assert_eq!((c.stats().templates, c.stats().templates_withdrawn), (1, 2));
    // Same domain id from another exporter port: another transport session, no templates.
    c.handle_datagram(
        addr("127.0.0.1:9999"),
        &ipfix_message(0, 7, &[(256, rec(b"q"))]),
        &mut out,
    );
    assert_eq!(out.len(), 5);
}

#[test]
fn malformed_datagrams_are_counted() {
    let mut c = Collector::new();
    let mut out = Vec::new();
    let from = addr(A);
    for bad in [
        &[][..],
        &[0],
        &[0, 7, 1, 2],
        &[0, 5, 0, 1],
        &[0, 9, 0, 0, 0],
        &[0, 10, 0, 16],
    ] {
        c.handle_datagram(from, bad, &mut out);
    }
    assert_eq!(c.stats().malformed_datagrams, 6);
    assert!(c.stats().last_error.is_some());
    // A data record running past its set, and a set length past the message end.
    let t = template_record(
        256,
        None,
        &[(8, 4, None), (12, 4, None), (82, 0xFFFF, None)],
    );
    c.handle_datagram(
        from,
        &ipfix_message(0, 0, &[(2, t), (256, vec![1, 1, 1, 1, 2, 2, 2, 2, 200, 1])]),
        &mut out,
    );
    assert_eq!(c.stats().malformed_sets, 1);
    let mut m = ipfix_message(0, 0, &[(256, vec![0; 8])]);
    m[19] = 100;
    c.handle_datagram(from, &m, &mut out);
    assert_eq!(c.stats().malformed_sets, 2);
    assert!(out.is_empty());
    // Absurd v5 count.
    let mut p = v5_packet(0, &[]);
    p[2] = 0xFF;
    c.handle_datagram(from, &p, &mut out);
    assert_eq!(c.stats().malformed_datagrams, 7);
}

#[test]
fn pending_buffer_is_bounded() {
    let mut c = Collector::new();
    let mut out = Vec::new();
    let body = vec![0u8; 60_000];
    let n = MAX_PENDING_BYTES / body.len() + 3;
    for i in 0..n {
        c.handle_datagram(
            addr(A),
            &ipfix_message(0, i as u32 % 3, &[(300, body.clone())]),
            &mut out,
        );
    }
    let s = c.stats();
    assert_eq!(
        s.unknown_template_sets + s.unknown_template_sets_dropped,
        n as u64
    );
    assert!(s.unknown_template_sets_dropped >= 3);
    assert!(c.pending_bytes <= MAX_PENDING_BYTES);
}

#[test]
fn collect_over_loopback_until_stopped() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let handle =
        std::thread::spawn(move || collect_on(socket, stop2, move |recs| tx.send(recs).unwrap()));
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = ([10, 0, 0, 1], [10, 0, 0, 2], 40000, 53, 17, 2, 98);
    sender
        .send_to(&v5_packet(0, &[r, r, r]), ("127.0.0.1", port))
        .unwrap();
    sender.send_to(b"junk", ("127.0.0.1", port)).unwrap();
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got.iter().map(|f| f.id).collect::<Vec<_>>(), vec![0, 1, 2]);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let stats = handle.join().unwrap().unwrap();
    assert_eq!(
        (stats.datagrams, stats.records, stats.malformed_datagrams),
        (2, 3, 1)
    );
}

#[test]
fn bind_error_is_reported() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = collect(addr, Arc::new(AtomicBool::new(true)), |_| {}).unwrap_err();
    assert!(matches!(err, FlowLogError::Bind { .. }), "{err}");
}

proptest! {
    #[test]
    fn never_panics_on_any_datagram(version in prop_oneof![Just(5u16), Just(9), Just(10), any::<u16>()],
                                    body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut c = Collector::new();
        let mut out = Vec::new();
        let mut d = version.to_be_bytes().to_vec();
        d.extend_from_slice(&body);
        if version == 10 && d.len() >= 4 {
            let l = d.len() as u16;
            d[2..4].copy_from_slice(&l.to_be_bytes());
        }
        // Twice: the second pass sees any templates the first one defined.
        c.handle_datagram(addr(A), &d, &mut out);
        c.handle_datagram(addr(A), &d, &mut out);
        let _ = c.flow_records(&out);
        prop_assert_eq!(c.stats().datagrams, 2);
    }

    #[test]
    fn templates_then_random_data(fields in proptest::collection::vec((0u16..200, prop_oneof![Just(0xFFFFu16), 0u16..20]), 1..10),
                                  data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut c = Collector::new();
        let mut out = Vec::new();
        let spec: Vec<(u16, u16, Option<u32>)> = fields.iter().map(|&(i, l)| (i, l, None)).collect();
        let t = template_record(256, None, &spec);
        c.handle_datagram(addr(A), &ipfix_message(0, 0, &[(2, t), (256, data.clone())]), &mut out);
        let v9t: Vec<(u16, u16)> = fields.iter().map(|&(i, l)| (i, l)).collect();
        c.handle_datagram(addr(A), &v9_packet(0, 0, &[(0, template_body(256, &v9t)), (256, data)]), &mut out);
        prop_assert_eq!(c.stats().malformed_datagrams, 0);
    }
}

mod softflowd_e2e;
