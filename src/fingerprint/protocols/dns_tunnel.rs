//! DNS tunnels (iodine, dnscat2 and alike): data carried in the query names and answers of one
//! long-lived DNS flow.
//!
//! Tunnels share a shape that ordinary DNS does not have: a single client socket sends many
//! queries, each for a different, never-repeated subdomain under one parent domain (the
//! tunnel's delegated zone), with encoded data in long labels (iodine uses labels up to 63
//! bytes with Base32/Base64/Base128 — raw 8-bit bytes — encodings; dnscat2 hex), and asks for
//! record types that can return bulk data: NULL (type 10, RFC 1035 §3.3.10, iodine's default),
//! PRIVATE (65399, iodine), TXT, CNAME, MX, SRV. Ordinary stub resolvers use a new source port
//! per query, so such a run of queries in one 5-tuple is itself unusual.
//!
//! Decision (statistical, over the first [`MIN_QUERIES`]..budget queries of the flow): nearly
//! all queries under one parent domain, almost all with a distinct first label, and either
//! bulk-type queries (NULL/PRIVATE) or encoded-data labels in most of them. NetBIOS and mDNS
//! names fail the "distinct subdomains under one parent" test or the encoding test.

use super::dns::{message_in, parse_message_cut};
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Direction;

/// Detector registration: DNS tunnel.
pub static SPEC: Spec = Spec {
    name: "dns_tunnel",
    family: Family::Tunnel,
    transports: Transports::TCP_UDP,
    payload_budget: 24,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// Queries needed before deciding.
pub const MIN_QUERIES: u8 = 6;
/// Distinct first labels remembered.
const MAX_DISTINCT: usize = 24;

/// DNS types able to carry bulk data in answers.
fn bulk_type(qtype: u16) -> bool {
    matches!(qtype, 10 | 65399)
}
fn data_type(qtype: u16) -> bool {
    matches!(qtype, 5 | 10 | 15 | 16 | 33 | 65399)
}

/// Per-flow counters over the queries.
#[derive(Debug, Default, Clone)]
struct State {
    queries: u8,
    responses: u8,
    non_dns: u8,
    /// Parent-domain hash of the first query and how many queries share it.
    parent: Option<u64>,
    same_parent: u8,
    distinct: Vec<u64>,
    bulk_queries: u8,
    /// Queries with an encoded-data label (see [`encoded`]).
    encoded_queries: u8,
    max_label: u8,
    max_answer: usize,
    qtype: u16,
}

/// A query name that carries encoded data: bytes outside hostname syntax (Base128 / raw), or
/// a long label (>= 40 bytes) that is not pure hex on an address query (hex digests on A/AAAA
/// lookups are reputation services, not tunnels).
fn encoded(q: &super::dns::NameFacts, qtype: u16) -> bool {
    if q.non_ldh > 0 {
        return true;
    }
    q.max_label >= 40 && (data_type(qtype) || !q.all_hex)
}

impl State {
    fn decide(&self) -> Option<Verdict> {
        let n = self.queries;
        if n < MIN_QUERIES || self.non_dns > 0 {
            return None;
        }
        // >= 80% under one parent, >= 60% distinct subdomains.
        let one_parent = u16::from(self.same_parent) * 5 >= u16::from(n) * 4;
        let distinct = self.distinct.len() * 5 >= usize::from(n) * 3;
        let bulk = u16::from(self.bulk_queries) * 3 >= u16::from(n) * 2;
        let enc = u16::from(self.encoded_queries) * 2 >= u16::from(n);
        if !(one_parent && distinct && (bulk || enc)) {
            return None;
        }
        Some(
            Verdict::new(Confidence::Statistical)
                .fact("queries", n)
                .fact("distinct_subdomains", self.distinct.len())
                .fact("bulk_type_queries", self.bulk_queries)
                .fact("encoded_queries", self.encoded_queries)
                .fact("max_label_len", self.max_label)
                .fact("qtype", self.qtype)
                .fact("max_answer_len", self.max_answer),
        )
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        // A message's length on the wire (a snap length may have kept only its start).
        let Some((m, wire_len)) = message_in(p.transport, p.bytes, p.wire_len())
            .and_then(|(msg, wire_len)| Some((parse_message_cut(msg, wire_len)?, wire_len)))
        else {
            self.non_dns = self.non_dns.saturating_add(1);
            return Step::NotThis;
        };
        if m.is_response {
            self.responses = self.responses.saturating_add(1);
            self.max_answer = self.max_answer.max(wire_len);
            return Step::NeedMore;
        }
        if p.direction != Direction::ToServer {
            return Step::NeedMore;
        }
        let Some(q) = m.qname else {
            return Step::NotThis;
        };
        if q.labels < 2 {
            return Step::NotThis;
        }
        self.queries = self.queries.saturating_add(1);
        self.qtype = m.qtype;
        match self.parent {
            None => {
                self.parent = Some(q.parent_hash);
                self.same_parent = 1;
            }
            Some(h) if h == q.parent_hash => self.same_parent = self.same_parent.saturating_add(1),
            Some(_) => {}
        }
        if !self.distinct.contains(&q.first_label_hash) && self.distinct.len() < MAX_DISTINCT {
            self.distinct.push(q.first_label_hash);
        }
        if bulk_type(m.qtype) {
            self.bulk_queries = self.bulk_queries.saturating_add(1);
        }
        if encoded(&q, m.qtype) {
            self.encoded_queries = self.encoded_queries.saturating_add(1);
        }
        self.max_label = self.max_label.max(q.max_label);
        // Early exits: a flow whose first queries are plainly ordinary.
        if self.queries >= 3 && self.bulk_queries == 0 && self.encoded_queries == 0 {
            return Step::NotThis;
        }
        if self.queries >= 12 {
            if let Some(v) = self.decide() {
                return Step::Match(v);
            }
            return Step::NotThis;
        }
        Step::NeedMore
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        self.decide()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Transport;
    use proptest::prelude::*;

    use crate::fingerprint::test_support::hex;

    fn payload(direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes)
            .over(Transport::Udp)
            .nth(nth)
            .ports(44639, 53)
    }

    fn ctx() -> FlowContext {
        FlowContext::test(Transport::Udp, 1, 53)
    }

    /// A query for `first.pirate.sea` with the given type (the shape of the capture's queries).
    fn query(id: u16, first: &[u8], qtype: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&hex("01000001000000000000"));
        for chunk in first.chunks(63) {
            q.push(chunk.len() as u8);
            q.extend_from_slice(chunk);
        }
        q.extend_from_slice(b"\x06pirate\x03sea\x00");
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    /// dns-tunnel-iodine.pcap, frames 1, 3, 5, 17, 19, 21 (client 44639 -> 53): iodine's
    /// version, login, IP and option handshakes, all NULL queries under pirate.sea.
    const IODINE_QUERIES: [&str; 6] = [
        "12b0010000010000000000000b76616161616b6172646c69067069726174650373656100000a0001",
        "30df01000001000000000000206c61656770756d69706c6868707a3132796e643165666c6a776c6b6a63677779\
         067069726174650373656100000a0001",
        "4f0e0100000100000000000106797262693032067069726174650373656100000a00010000291000000080000000",
        "04280100000100000000000106736268693163067069726174650373656100000a00010000291000000080000000",
        "225701000001000000000001066f6273693164067069726174650373656100000a00010000291000000080000000",
        "408601000001000000000001066f626c693165067069726174650373656100000a00010000291000000080000000",
    ];

    fn iodine_frames() -> Vec<Vec<u8>> {
        IODINE_QUERIES.iter().map(|s| hex(s)).collect()
    }

    #[test]
    fn iodine_handshake_from_capture() {
        let frames = iodine_frames();
        let mut s = State::default();
        let mut last = Step::NeedMore;
        for (i, f) in frames.iter().enumerate() {
            last = s.observe(&payload(Direction::ToServer, i as u8, f));
        }
        assert_ne!(last, Step::NotThis);
        let v = match last {
            Step::Match(v) => v,
            _ => s.conclude(&ctx()).expect("iodine recognised"),
        };
        assert_eq!(
            v.evidence
                .get("bulk_type_queries")
                .map(|f| f.to_string())
                .as_deref(),
            Some("6")
        );
    }

    #[test]
    fn base128_data_queries() {
        let mut s = State::default();
        let mut label = vec![0u8; 180];
        for i in 0..8u8 {
            for (j, b) in label.iter_mut().enumerate() {
                *b = 0x80 | (j as u8).wrapping_mul(37).wrapping_add(i * 11);
            }
            label[0] = b'r';
            label[1] = b'a' + i;
            let _ = s.observe(&payload(
                Direction::ToServer,
                i,
                &query(i as u16, &label, 16),
            ));
        }
        assert!(s.conclude(&ctx()).is_some());
    }

    #[test]
    fn ordinary_dns_is_not_a_tunnel() {
        // Same name repeated (a resolver retrying), different parents, short names.
        let names: [&[u8]; 6] = [b"www", b"mail", b"www", b"api", b"cdn", b"img"];
        let mut s = State::default();
        let mut last = Step::NeedMore;
        for (i, n) in names.iter().enumerate() {
            last = s.observe(&payload(
                Direction::ToServer,
                i as u8,
                &query(i as u16, n, 1),
            ));
            if last != Step::NeedMore {
                break;
            }
        }
        assert_eq!(last, Step::NotThis);
        // Hex digests on A lookups (reputation services) do not count as encoded.
        let mut s = State::default();
        for i in 0..8u8 {
            let h: Vec<u8> = format!("{:064x}", u128::from(i) * 0x1234_5678_9abc_def1).into_bytes();
            let _ = s.observe(&payload(Direction::ToServer, i, &query(i as u16, &h, 1)));
        }
        assert!(s.conclude(&ctx()).is_none());
        // Non-DNS payloads end it.
        let mut s = State::default();
        assert_eq!(
            s.observe(&payload(
                Direction::ToServer,
                0,
                &hex("000100002112a442000102030405060708090a0b")
            )),
            Step::NotThis
        );
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(pkts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..40)) {
            let mut s = State::default();
            let mut offered = [0u8; 2];
            for (i, b) in pkts.iter().enumerate() {
                let dir = if i % 2 == 1 { Direction::ToClient } else { Direction::ToServer };
                if offered[dir.index()] >= SPEC.payload_budget { continue; }
                offered[dir.index()] += 1;
                if s.observe(&payload(dir, offered[dir.index()] - 1, b)) != Step::NeedMore { break; }
            }
            let _ = s.conclude(&ctx());
        }
    }
}
