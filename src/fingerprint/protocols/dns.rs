//! DNS (RFC 1035): a message that parses completely — header, question, every resource
//! record — is DNS. Over TCP each message has a 2-byte length prefix (RFC 1035 §4.2.2).
//!
//! The parser here ([`parse_message`]) is shared with the DNS-tunnel detector: it reports the
//! facts of the question name (label lengths, alphabet) without allocating.

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::{Direction, Transport};

/// Detector registration: DNS, a generic carrier.
pub static SPEC: Spec = Spec {
    name: "dns",
    family: Family::Web,
    transports: Transports::TCP_UDP,
    payload_budget: 2,
    rank: rank::CARRIER,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// Header size (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;
/// Longest name in wire form (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;
/// Resource records parsed at most per message.
const MAX_RECORDS: usize = 64;

/// Facts of one domain name (RFC 1035 §3.1, §4.1.4), with compression followed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameFacts {
    /// Offset of the name in the message (where it starts, not where pointers lead).
    pub offset: usize,
    /// Bytes of the name in wire form, pointers followed (<= 255).
    pub wire_len: usize,
    pub labels: u8,
    pub max_label: u8,
    /// Bytes outside letters, digits, `-` and `_` (hostname syntax, RFC 952/1123; `_` for
    /// service labels).
    pub non_ldh: u16,
    /// True when every byte of the long labels (>= 16 bytes, where encoded data sits) is a
    /// hexadecimal digit.
    pub all_hex: bool,
    /// FNV-1a of the lowercase last two labels (the registered parent domain, roughly).
    pub parent_hash: u64,
    /// FNV-1a of the lowercase first label.
    pub first_label_hash: u64,
    /// Length of the first label.
    pub first_label_len: u8,
    /// True when the first label is 32 bytes of 'A'..='P' (NetBIOS first-level encoding,
    /// RFC 1001 §14.1).
    pub netbios_encoded: bool,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Walks a name at `at`; returns its facts and the offset just after it in the message.
/// Compression pointers (top bits 11, RFC 1035 §4.1.4) must point strictly backwards, which
/// rules out loops; at most 128 labels are read.
pub fn parse_name(msg: &[u8], at: usize) -> Option<(NameFacts, usize)> {
    let mut f = NameFacts {
        offset: at,
        all_hex: true,
        ..NameFacts::default()
    };
    let mut pos = at;
    let mut end_after: Option<usize> = None;
    // Start offsets of the last two labels, to hash the parent domain at the end.
    let mut last_two: [(usize, usize); 2] = [(0, 0); 2];
    let mut bound = at; // pointers must go below the start of the current run
    for _ in 0..128 {
        let len = *msg.get(pos)?;
        match len >> 6 {
            0b00 => {
                if len == 0 {
                    f.wire_len += 1;
                    if f.wire_len > MAX_NAME {
                        return None;
                    }
                    let h2 = if f.labels >= 2 {
                        fnv(
                            FNV_OFFSET,
                            msg.get(last_two[0].0..last_two[0].0 + last_two[0].1)?,
                        )
                    } else {
                        FNV_OFFSET
                    };
                    f.parent_hash = fnv(
                        fnv(h2, b"."),
                        msg.get(last_two[1].0..last_two[1].0 + last_two[1].1)?,
                    );
                    return Some((f, end_after.unwrap_or(pos + 1)));
                }
                let l = usize::from(len);
                let label = msg.get(pos + 1..pos + 1 + l)?;
                if f.labels == 0 {
                    f.first_label_hash = fnv(FNV_OFFSET, label);
                    f.first_label_len = len;
                    f.netbios_encoded = l == 32 && label.iter().all(|c| (b'A'..=b'P').contains(c));
                }
                for &c in label {
                    if !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
                        f.non_ldh = f.non_ldh.saturating_add(1);
                    }
                    if l >= 16 && !c.is_ascii_hexdigit() {
                        f.all_hex = false;
                    }
                }
                last_two = [last_two[1], (pos + 1, l)];
                f.labels = f.labels.saturating_add(1);
                f.max_label = f.max_label.max(len);
                f.wire_len += 1 + l;
                if f.wire_len > MAX_NAME {
                    return None;
                }
                pos += 1 + l;
            }
            0b11 => {
                let target = (usize::from(len & 0x3f) << 8) | usize::from(*msg.get(pos + 1)?);
                if target >= bound || target < HEADER_LEN {
                    return None;
                }
                end_after.get_or_insert(pos + 2);
                bound = target;
                pos = target;
            }
            // 0b01 (extended label types, RFC 6891 §5) and 0b10 are not used.
            _ => return None,
        }
    }
    None
}

/// Facts of one DNS message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsMessage {
    pub id: u16,
    pub is_response: bool,
    pub opcode: u8,
    pub rcode: u8,
    pub truncated: bool,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
    /// First question (when qdcount >= 1).
    pub qname: Option<NameFacts>,
    pub qtype: u16,
    pub qclass: u16,
    /// Largest RDATA length among the records.
    pub max_rdata: u16,
    /// Bytes parsed (== message length for a complete parse).
    pub len: usize,
}

/// Parses a whole DNS message (RFC 1035 §4.1): 12-byte header (id, flags QR|opcode(4)|AA|TC|
/// RD|RA|Z|AD|CD|rcode(4), four counts), the questions (name, type, class) and the answer,
/// authority and additional records (name, type, class, TTL, RDLENGTH, RDATA). Every section
/// must parse and the message must end exactly where the records end; the Z bit must be 0.
pub fn parse_message(msg: &[u8]) -> Option<DnsMessage> {
    parse_message_cut(msg, msg.len())
}

/// [`parse_message`] of a message of which the capture kept only the first bytes (a snap
/// length cut it): `msg` is what was kept and `wire_len` the message's length on the wire.
/// The header and every question must be among the kept bytes; records are read as far as
/// they go, none may run past `wire_len`, and where all of them were kept the message must
/// end at `wire_len`. With `wire_len == msg.len()` this is the whole-message parse.
pub fn parse_message_cut(msg: &[u8], wire_len: usize) -> Option<DnsMessage> {
    let h = msg.get(..HEADER_LEN)?;
    let flags = u16::from_be_bytes([h[2], h[3]]);
    let mut m = DnsMessage {
        id: u16::from_be_bytes([h[0], h[1]]),
        is_response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0x0f) as u8,
        rcode: (flags & 0x0f) as u8,
        truncated: flags & 0x0200 != 0,
        qdcount: u16::from_be_bytes([h[4], h[5]]),
        ancount: u16::from_be_bytes([h[6], h[7]]),
        nscount: u16::from_be_bytes([h[8], h[9]]),
        arcount: u16::from_be_bytes([h[10], h[11]]),
        ..DnsMessage::default()
    };
    // Opcodes in use: 0 QUERY, 4 NOTIFY (RFC 1996), 5 UPDATE (RFC 2136). Z must be zero.
    if !matches!(m.opcode, 0 | 4 | 5) || flags & 0x0040 != 0 || m.qdcount > 4 {
        return None;
    }
    let records = usize::from(m.ancount) + usize::from(m.nscount) + usize::from(m.arcount);
    if records > MAX_RECORDS || wire_len < msg.len() {
        return None;
    }
    let whole = wire_len == msg.len();
    let mut at = HEADER_LEN;
    for i in 0..m.qdcount {
        let (name, next) = parse_name(msg, at)?;
        let t = msg.get(next..next + 4)?;
        if i == 0 {
            m.qname = Some(name);
            m.qtype = u16::from_be_bytes([t[0], t[1]]);
            m.qclass = u16::from_be_bytes([t[2], t[3]]);
        }
        at = next + 4;
    }
    for _ in 0..records {
        let Some((_, next)) = parse_name(msg, at) else {
            // Past the kept bytes of a cut message the rest is unknown, not wrong.
            return (!whole).then(|| cut_at(m, msg.len()));
        };
        let Some(rr) = msg.get(next..next + 10) else {
            return (!whole && next + 10 > msg.len()).then(|| cut_at(m, msg.len()));
        };
        let rdlen = u16::from_be_bytes([rr[8], rr[9]]);
        m.max_rdata = m.max_rdata.max(rdlen);
        at = next + 10 + usize::from(rdlen);
        if at > wire_len {
            return None;
        }
        if at > msg.len() {
            return Some(cut_at(m, msg.len()));
        }
    }
    if at != wire_len {
        return None;
    }
    m.len = at;
    Some(m)
}

/// A cut message read up to the end of the kept bytes.
fn cut_at(mut m: DnsMessage, kept: usize) -> DnsMessage {
    m.len = kept;
    m
}

/// The DNS message in one transport payload and its length on the wire: the whole UDP
/// payload, or over TCP the first message after its 2-byte length prefix when the segment
/// holds all of it (or held it on the wire, for a payload a snap length cut short).
pub fn message_in(transport: Transport, bytes: &[u8], wire_len: usize) -> Option<(&[u8], usize)> {
    match transport {
        Transport::Tcp => {
            let len = usize::from(u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?));
            if 2 + len > wire_len {
                return None;
            }
            let kept = bytes.get(2..)?;
            Some((kept.get(..len).unwrap_or(kept), len))
        }
        _ => Some((bytes, wire_len)),
    }
}

/// True when the message looks like ordinary DNS usage as a carrier: a question of a known
/// class (IN, CH, HS, NONE, ANY; mDNS sets the top bit, RFC 6762 §5.4), or an mDNS-style
/// answer-only response; not a NetBIOS name-service packet (RFC 1002, which borrows the format).
pub fn is_plausible(m: &DnsMessage) -> bool {
    let class_ok = matches!(m.qclass & 0x7fff, 1 | 3 | 4 | 254 | 255);
    let netbios = m.qname.is_some_and(|q| q.netbios_encoded) && matches!(m.qtype, 0x20 | 0x21);
    if netbios {
        return false;
    }
    match m.qname {
        Some(_) => class_ok && (m.is_response || m.rcode == 0),
        None => m.is_response && m.ancount > 0 && m.opcode == 0,
    }
}

/// Renders a name as text (for evidence), lowercase, non-printable bytes as `?`.
pub fn name_text(msg: &[u8], at: usize) -> Option<String> {
    // Most names fit: pushed into an empty string they grew by `realloc` (which on several
    // threads locks an allocator arena) for every DNS flow.
    let mut out = String::with_capacity(32);
    let mut pos = at;
    let mut bound = at;
    for _ in 0..128 {
        let len = *msg.get(pos)?;
        if len == 0 {
            return Some(if out.is_empty() { ".".to_string() } else { out });
        }
        if len >> 6 == 0b11 {
            let target = (usize::from(len & 0x3f) << 8) | usize::from(*msg.get(pos + 1)?);
            if target >= bound {
                return None;
            }
            bound = target;
            pos = target;
            continue;
        }
        let label = msg.get(pos + 1..pos + 1 + usize::from(len))?;
        if !out.is_empty() {
            out.push('.');
        }
        out.extend(label.iter().map(|&c| {
            if c.is_ascii_graphic() {
                char::from(c.to_ascii_lowercase())
            } else {
                '?'
            }
        }));
        if out.len() > 300 {
            return None;
        }
        pos += 1 + usize::from(len);
    }
    None
}

/// Per-flow state: the query seen, waiting for its response.
#[derive(Debug, Default, Clone)]
struct State {
    query: Option<(u16, String, u16)>,
}

fn verdict(confidence: Confidence, qname: Option<&str>, qtype: u16, rcode: Option<u8>) -> Verdict {
    let mut v = Verdict::new(confidence);
    if let Some(q) = qname {
        v = v.fact("qname", q);
    }
    v = v.fact("qtype", qtype);
    if let Some(r) = rcode {
        v = v.fact("rcode", r);
    }
    v
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let Some((msg, wire_len)) = message_in(p.transport, p.bytes, p.wire_len()) else {
            return Step::NotThis;
        };
        let Some(m) = parse_message_cut(msg, wire_len).filter(is_plausible) else {
            return Step::NotThis;
        };
        let text = m.qname.and_then(|q| name_text(msg, q.offset));
        if !m.is_response && p.direction == Direction::ToServer && self.query.is_none() {
            self.query = Some((m.id, text.unwrap_or_default(), m.qtype));
            return Step::NeedMore;
        }
        if m.is_response {
            if let Some((id, q, t)) = &self.query {
                if *id == m.id {
                    return Step::Match(verdict(
                        Confidence::BothDirections,
                        Some(q),
                        *t,
                        Some(m.rcode),
                    ));
                }
            }
            return Step::Match(verdict(
                Confidence::OneMessage,
                text.as_deref(),
                m.qtype,
                Some(m.rcode),
            ));
        }
        // A second query without an answer to the first.
        Step::Match(verdict(
            Confidence::OneMessage,
            text.as_deref(),
            m.qtype,
            None,
        ))
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        let (_, q, t) = self.query.as_ref()?;
        Some(verdict(Confidence::OneMessage, Some(q), *t, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::fingerprint::test_support::hex;

    fn payload(direction: Direction, nth: u8, transport: Transport, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes)
            .over(transport)
            .nth(nth)
            .ports(40000, 53)
    }

    /// wikipedia.pcap, frame 16: AAAA? upload.wikimedia.org.
    fn wikipedia_query() -> Vec<u8> {
        hex("a7f4010000010000000000000675706c6f61640977696b696d65646961036f726700001c0001")
    }

    /// wikipedia.pcap, frame 17: the answer, NOERROR with one SOA in the authority section
    /// (compression pointers to offset 0x13).
    fn wikipedia_response() -> Vec<u8> {
        hex(
            "a7f4818000010000000100000675706c6f61640977696b696d65646961036f726700001c0001c0130006\
             000100000db70027036e7330c0130a686f73746d6173746572c01377dde9080000a8c000001c200012\
             750000000258",
        )
    }

    #[test]
    fn query_then_response() {
        let q = wikipedia_query();
        let m = parse_message(&q).unwrap();
        assert_eq!((m.qdcount, m.qtype, m.is_response), (1, 28, false));
        assert_eq!(name_text(&q, 12).as_deref(), Some("upload.wikimedia.org"));
        let r = wikipedia_response();
        let mr = parse_message(&r).unwrap();
        assert_eq!((mr.nscount, mr.rcode), (1, 0));
        let mut s = State::default();
        assert_eq!(
            s.observe(&payload(Direction::ToServer, 0, Transport::Udp, &q)),
            Step::NeedMore
        );
        match s.observe(&payload(Direction::ToClient, 0, Transport::Udp, &r)) {
            Step::Match(v) => {
                assert_eq!(v.confidence, Confidence::BothDirections);
                assert_eq!(
                    v.evidence.to_string(),
                    "qname=upload.wikimedia.org, qtype=28, rcode=0"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// A response a snap length cut inside its records still answers the query; cut inside
    /// the question, or claiming records past its length on the wire, it is not read.
    #[test]
    fn responses_cut_by_a_snap_length() {
        let r = wikipedia_response();
        let qend = 12 + 22 + 4;
        for kept in [qend, qend + 5, qend + 12, r.len() - 1] {
            let m = parse_message_cut(&r[..kept], r.len()).unwrap();
            assert_eq!((m.qtype, m.nscount, m.len), (28, 1, kept), "kept {kept}");
        }
        assert!(parse_message_cut(&r[..qend - 1], r.len()).is_none());
        // The authority record's RDATA ends at r.len(): a shorter wire length contradicts it.
        assert!(parse_message_cut(&r[..qend + 12], r.len() - 1).is_none());
        // Whole, the message must end where its records do.
        assert!(parse_message_cut(&r, r.len() + 1).is_none());

        let q = wikipedia_query();
        let mut s = State::default();
        s.observe(&payload(Direction::ToServer, 0, Transport::Udp, &q));
        let cut = payload(Direction::ToClient, 0, Transport::Udp, &r[..qend + 5])
            .cut((r.len() - qend - 5) as u16);
        match s.observe(&cut) {
            Step::Match(v) => assert_eq!(v.confidence, Confidence::BothDirections),
            other => panic!("{other:?}"),
        }
        // Over TCP the length prefix gives the message's length on the wire.
        let mut framed = (r.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&r);
        let (msg, wire) = message_in(Transport::Tcp, &framed[..50], framed.len()).unwrap();
        assert_eq!((msg.len(), wire), (48, r.len()));
        assert!(message_in(Transport::Tcp, &framed[..50], framed.len() - 1).is_none());
    }

    #[test]
    fn tcp_length_prefix() {
        let q = wikipedia_query();
        let mut t = (q.len() as u16).to_be_bytes().to_vec();
        t.extend_from_slice(&q);
        let mut s = State::default();
        assert_eq!(
            s.observe(&payload(Direction::ToServer, 0, Transport::Tcp, &t)),
            Step::NeedMore
        );
        assert!(s.conclude(&ctx()).is_some());
    }

    fn ctx() -> FlowContext {
        FlowContext::test(Transport::Udp, 1, 53)
    }

    #[test]
    fn pointer_loops_and_near_misses_rejected() {
        // Name that points to itself.
        let mut q = hex("000101000001000000000000c00c00010001");
        assert!(parse_message(&q).is_none());
        // Trailing garbage after a valid message.
        q = wikipedia_query();
        q.push(0);
        assert!(parse_message(&q).is_none());
        // STUN binding request, QUIC long header, TLS record.
        for b in [
            hex("000100002112a442000102030405060708090a0b"),
            hex("c30000000108839400000000000000000000"),
            hex("160301020001000200030300000000000000000000"),
        ] {
            let mut s = State::default();
            assert_eq!(
                s.observe(&payload(Direction::ToServer, 0, Transport::Udp, &b)),
                Step::NotThis
            );
        }
        // NetBIOS name query (RFC 1002 §4.2.12): 32-byte encoded name, NB type.
        let mut nb = hex("8a1b01100001000000000000");
        nb.push(32);
        nb.extend_from_slice(b"FHEPFCELEHFCEPFFFACACACACACACAAA");
        nb.extend_from_slice(&hex("0000200001"));
        let m = parse_message(&nb).unwrap();
        assert!(!is_plausible(&m));
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(pkts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..6)) {
            let mut s = State::default();
            let mut offered = [0u8; 2];
            for (i, b) in pkts.iter().enumerate() {
                let dir = if i % 2 == 1 { Direction::ToClient } else { Direction::ToServer };
                if offered[dir.index()] >= SPEC.payload_budget { continue; }
                offered[dir.index()] += 1;
                let t = if i % 3 == 0 { Transport::Tcp } else { Transport::Udp };
                if s.observe(&payload(dir, offered[dir.index()] - 1, t, b)) != Step::NeedMore { break; }
            }
            let _ = s.conclude(&ctx());
            for b in &pkts {
                let _ = parse_message(b);
                let _ = name_text(b, 12);
                let _ = parse_name(b, 0);
            }
        }
    }
}
