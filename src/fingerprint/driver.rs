//! The driver: offers a flow's payloads to the candidate fingerprinters within their budgets,
//! collects their verdicts and merges them into one [`Label`].
//!
//! Specs first see a flow's first payload (a SYN flood never gets that far) through
//! [`Spec::open`], without a heap allocation; only those that want more become boxed
//! candidates, dropped as soon as they decide. Once no candidate wants more, the per-packet
//! cost is one branch.

use super::{Confidence, Family, FlowContext, Opening, Payload, Spec, Step, Verdict};

struct Candidate {
    spec: &'static Spec,
    detector: Box<dyn super::Fingerprinter>,
    /// Payloads offered so far, per direction.
    offered: [u8; 2],
}

/// Candidates [`FingerprintState::open`] gathers on the stack before they go to the heap.
/// Tests gather 3, so that the driver tests (10 specs) also take the way past the stack.
const GATHERED_CANDIDATES: usize = if cfg!(test) { 3 } else { 16 };

/// A spec's decision on a flow.
#[derive(Debug, Clone)]
pub struct Match {
    pub spec: &'static Spec,
    pub verdict: Verdict,
}

impl Match {
    /// What introduces this match in evidence and explanations: the wire protocol it names,
    /// or its detector's name where it names none (an address list says who the peer is, a
    /// platform's own protocol has no vocabulary token).
    pub fn name(&self) -> &'static str {
        match self.verdict.protocol {
            Some(p) if p != UNKNOWN_PROTOCOL => p,
            _ => self.spec.name,
        }
    }
}

/// Fingerprinting state of one flow.
#[derive(Default)]
pub struct FingerprintState {
    candidates: Vec<Candidate>,
    matches: Vec<Match>,
    started: bool,
    /// No candidate wants any more payloads.
    settled: bool,
}

impl std::fmt::Debug for FingerprintState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FingerprintState")
            .field("candidates", &self.candidates.len())
            .field("matches", &self.matches.len())
            .field("settled", &self.settled)
            .finish()
    }
}

impl FingerprintState {
    /// True when further payloads would not be looked at.
    pub fn is_settled(&self) -> bool {
        self.settled
    }

    /// The protocol and family the matches so far would give (as [`Label::merge`] ranks them),
    /// for a view of flows that are still open; `None` before any match. Conclude-only specs
    /// (endpoint lists) have not spoken yet.
    pub fn provisional(&self) -> Option<(&'static str, Family)> {
        if self.matches.is_empty() {
            return None;
        }
        // The merge's order, walked in place: this runs for every open flow at each window edge.
        let decided = Decision::of(InRankOrder::new(&self.matches));
        Some((decided.protocol, decided.family))
    }

    /// Puts in this state's place a copy of it in blocks allocated by the calling thread, and
    /// returns the original, to be dropped by the thread that allocated it.
    ///
    /// glibc's allocator frees a block into the arena it came from, under that arena's lock,
    /// and each thread allocates from an arena of its own. A flow that moves between threads
    /// takes its blocks along: freed by the other thread, they made each thread take the
    /// other's lock, and the two slept on each other there. A two-thread run of the reference
    /// capture switched threads about 400 times, most of them such sleeps; with moved flows
    /// rehomed, about 150 to 200 times, nearly all waits for a batch.
    pub fn rehome(&mut self) -> FingerprintState {
        let copy = FingerprintState {
            candidates: self
                .candidates
                .iter()
                .map(|c| Candidate {
                    spec: c.spec,
                    detector: c.detector.clone_box(),
                    offered: c.offered,
                })
                .collect(),
            matches: self.matches.clone(),
            started: self.started,
            settled: self.settled,
        };
        std::mem::replace(self, copy)
    }

    /// Offers one payload to every candidate that still wants one from this direction.
    pub fn observe(&mut self, registry: &'static [&'static Spec], payload: &Payload<'_>) {
        if self.settled {
            return;
        }
        if self.started {
            self.offer(payload);
        } else {
            self.started = true;
            self.open(registry, payload);
        }
        self.settled = self
            .candidates
            .iter()
            .all(|c| c.offered.iter().all(|&n| n >= c.spec.payload_budget));
    }

    /// The flow's first payload: every eligible spec looks at it, and only those that want
    /// more become (boxed) candidates.
    ///
    /// The visiting order is that of a candidate list built in registry order and walked with
    /// `swap_remove` (as [`Self::offer`] does): after a spec keeps its place the next one comes
    /// from the front of the unvisited specs, after one drops out the last unvisited spec takes
    /// its slot. Matches are pushed in that order and the merge keeps it among equal ranks, so
    /// labels and evidence do not depend on which specs were allocated.
    ///
    /// Candidates gather on the stack and go to the heap in one block of their exact number
    /// (4 to 8 for most flows of the reference capture, at most 10). Pushed one by one, the
    /// list grew by `realloc` (0.4 per flow there); on two threads `realloc` always locks the
    /// block's allocator arena, and this list's `realloc` and `free` were where a two-thread
    /// run most often slept on such a lock.
    fn open(&mut self, registry: &'static [&'static Spec], payload: &Payload<'_>) {
        let eligible = |s: &Spec| s.transports.contains(payload.transport) && s.payload_budget > 0;
        let dir = payload.direction.index();
        let mut gathered: [Option<Candidate>; GATHERED_CANDIDATES] =
            [const { None }; GATHERED_CANDIDATES];
        let mut count = 0;
        // Past the stack's room (more specs wanting more than any capture has shown).
        let mut beyond = Vec::new();
        // Unvisited specs are the eligible ones in registry[front..back].
        let mut front = 0;
        let mut back = registry.len();
        let mut take_front = true;
        loop {
            let unvisited = registry.get(front..back).unwrap_or_default();
            let next = if take_front {
                unvisited.iter().position(|s| eligible(s)).map(|k| {
                    front += k + 1;
                    front - 1
                })
            } else {
                unvisited.iter().rposition(|s| eligible(s)).map(|k| {
                    back = front + k;
                    back
                })
            };
            let Some(&spec) = next.and_then(|i| registry.get(i)) else {
                break;
            };
            let opening = match spec.open {
                Some(open) => open(payload),
                None => Opening::boxed((spec.start)(), payload),
            };
            take_front = match opening {
                Opening::NeedMore(detector) => {
                    let mut offered = [0, 0];
                    offered[dir] = 1;
                    let candidate = Candidate {
                        spec,
                        detector,
                        offered,
                    };
                    match gathered.get_mut(count) {
                        Some(slot) => {
                            *slot = Some(candidate);
                            count += 1;
                        }
                        None => beyond.push(candidate),
                    }
                    true
                }
                Opening::NotThis => false,
                Opening::Match(verdict) => {
                    self.matches.push(Match { spec, verdict });
                    false
                }
            };
        }
        if count > 0 {
            let mut candidates = Vec::with_capacity(count + beyond.len());
            candidates.extend(gathered.iter_mut().filter_map(Option::take));
            candidates.append(&mut beyond);
            self.candidates = candidates;
        }
    }

    /// A later payload: offered to the candidates still within their budget this way.
    fn offer(&mut self, payload: &Payload<'_>) {
        let dir = payload.direction.index();
        let mut i = 0;
        while i < self.candidates.len() {
            let c = &mut self.candidates[i];
            if c.offered[dir] >= c.spec.payload_budget {
                i += 1;
                continue;
            }
            c.offered[dir] += 1;
            match c.detector.observe(payload) {
                Step::NeedMore => i += 1,
                Step::NotThis => {
                    self.candidates.swap_remove(i);
                }
                Step::Match(verdict) => {
                    let spec = c.spec;
                    self.candidates.swap_remove(i);
                    self.matches.push(Match { spec, verdict });
                }
            }
        }
    }

    /// Ends the flow: undecided candidates and conclude-only specs get their last word, and
    /// all matches are merged.
    pub fn finish(mut self, registry: &'static [&'static Spec], flow: &FlowContext) -> Label {
        for c in &mut self.candidates {
            if let Some(verdict) = c.detector.conclude(flow) {
                self.matches.push(Match {
                    spec: c.spec,
                    verdict,
                });
            }
        }
        for spec in registry
            .iter()
            .filter(|s| s.payload_budget == 0 && s.transports.contains(flow.transport))
        {
            if let Some(verdict) = (spec.start)().conclude(flow) {
                self.matches.push(Match { spec, verdict });
            }
        }
        Label::merge(self.matches)
    }
}

/// The merged labels of one flow, as written in every output row.
#[derive(Debug, Clone)]
pub struct Label {
    pub protocol: &'static str,
    pub application: Option<&'static str>,
    pub provider: Option<&'static str>,
    pub obfuscated: bool,
    pub family: Family,
    /// Confidence of the match that named the protocol (None when unknown).
    pub confidence: Option<Confidence>,
    pub roles_reversed: bool,
    /// Every match, the deciding one first, with its evidence.
    pub matches: Vec<Match>,
}

/// Precedence of a match: higher rank, then higher confidence.
fn rank_key(m: &Match) -> (u8, Confidence) {
    (m.spec.rank, m.verdict.confidence)
}

/// Matches in [`Label::merge`]'s order (rank key descending, earlier first among equals)
/// without sorting or allocating: each step scans for the next one (a flow has a handful).
#[derive(Clone)]
struct InRankOrder<'a> {
    matches: &'a [Match],
    last: Option<((u8, Confidence), usize)>,
}

impl<'a> InRankOrder<'a> {
    fn new(matches: &'a [Match]) -> Self {
        InRankOrder {
            matches,
            last: None,
        }
    }
}

impl<'a> Iterator for InRankOrder<'a> {
    type Item = &'a Match;

    fn next(&mut self) -> Option<&'a Match> {
        // "Comes after `last`": lower key, or equal key and later index.
        let after = |key: (u8, Confidence), i: usize| match self.last {
            None => true,
            Some((lk, li)) => key < lk || (key == lk && i > li),
        };
        let mut best: Option<((u8, Confidence), usize)> = None;
        for (i, m) in self.matches.iter().enumerate() {
            let key = rank_key(m);
            if after(key, i) && best.is_none_or(|(bk, _)| key > bk) {
                best = Some((key, i));
            }
        }
        self.last = best;
        best.and_then(|(_, i)| self.matches.get(i))
    }
}

/// The label fields that [`Label::merge`] derives from matches in rank order.
struct Decision {
    protocol: &'static str,
    application: Option<&'static str>,
    provider: Option<&'static str>,
    obfuscated: bool,
    family: Family,
    confidence: Option<Confidence>,
    roles_reversed: bool,
}

impl Decision {
    /// `ranked` must yield the matches in rank order (deciding match first) and be non-empty
    /// for a protocol to be named.
    fn of<'a>(ranked: impl Iterator<Item = &'a Match> + Clone) -> Decision {
        let Some(top) = ranked.clone().next() else {
            let d = Label::default();
            return Decision {
                protocol: d.protocol,
                application: None,
                provider: None,
                obfuscated: false,
                family: d.family,
                confidence: None,
                roles_reversed: false,
            };
        };
        let application = ranked.clone().find_map(|m| m.verdict.application);
        let provider = ranked.clone().find_map(|m| m.verdict.provider);
        let obfuscated = ranked.clone().any(|m| m.verdict.obfuscated);
        let mut family = top.verdict.family.unwrap_or(top.spec.family);
        // A generic carrier to a VPN app or provider is VPN use.
        if matches!(family, Family::Web | Family::Other) {
            if let Some(f) = ranked
                .clone()
                .find_map(|m| m.verdict.family.filter(|f| f.is_circumvention()))
            {
                family = f;
            } else if provider.is_some()
                || ranked
                    .clone()
                    .any(|m| m.verdict.application.is_some() && m.spec.family.is_circumvention())
            {
                family = Family::Vpn;
            }
        }
        if obfuscated && family == Family::Web {
            family = Family::Obfuscated;
        }
        Decision {
            protocol: top.verdict.protocol.unwrap_or(top.spec.name),
            application,
            provider,
            obfuscated,
            family,
            confidence: Some(top.verdict.confidence),
            roles_reversed: top.verdict.roles_reversed,
        }
    }
}

/// The protocol token of a flow no detector named.
pub const UNKNOWN_PROTOCOL: &str = "unknown";

/// Evidence key naming the platform (a `intel::platforms` token) whose own protocol a
/// detector recognised. Such flows keep the protocol token [`UNKNOWN_PROTOCOL`]: the label
/// vocabulary names circumvention protocols and their carriers, and a platform's app talking to
/// its own servers is neither.
pub const PLATFORM_FACT: &str = "platform";

/// Evidence fact of a flow read back from a flow table: the `server_name` column as archived
/// (the SNI, HTTP Host or DNS question the flow had when it was captured).
pub const SERVER_NAME_FACT: &str = "server_name";

impl Default for Label {
    fn default() -> Self {
        Label {
            protocol: UNKNOWN_PROTOCOL,
            application: None,
            provider: None,
            obfuscated: false,
            family: Family::Other,
            confidence: None,
            roles_reversed: false,
            matches: Vec::new(),
        }
    }
}

impl Label {
    /// Orders matches by rank (most specific first), then confidence; the first names the
    /// protocol; application and provider come from the first match that has one.
    pub fn merge(mut matches: Vec<Match>) -> Label {
        if matches.is_empty() {
            return Label::default();
        }
        // Stable: among equal rank and confidence the earlier match decides.
        matches.sort_by_key(|m| std::cmp::Reverse(rank_key(m)));
        let d = Decision::of(matches.iter());
        Label {
            protocol: d.protocol,
            application: d.application,
            provider: d.provider,
            obfuscated: d.obfuscated,
            family: d.family,
            confidence: d.confidence,
            roles_reversed: d.roles_reversed,
            matches,
        }
    }

    /// Gives back the growth room the pushes left (room for 4 of each) in the matches and
    /// their evidence, for a label kept as long as its record (every flow of an `analyze`
    /// run). Shrinking a small block is done in place by the allocator, but it is a `realloc`,
    /// which on several threads always locks an allocator arena: labels of flows that are
    /// written out and dropped at once are left as they are.
    pub fn shrink_to_fit(&mut self) {
        self.matches.shrink_to_fit();
        for m in &mut self.matches {
            m.verdict.evidence.0.shrink_to_fit();
        }
    }

    /// The first evidence fact named `key` among the matches, deciding match first.
    pub fn fact(&self, key: &str) -> Option<&super::Fact> {
        self.matches
            .iter()
            .find_map(|m| m.verdict.evidence.get(key))
    }

    /// The server name the client asked for: TLS/QUIC SNI, HTTP Host, or DNS question (or, for
    /// a flow read back from a flow table, its archived [`SERVER_NAME_FACT`]).
    pub fn server_name(&self) -> Option<&str> {
        ["sni", "host", "qname", SERVER_NAME_FACT]
            .iter()
            .find_map(|k| self.text_fact(k))
    }

    /// The first evidence fact named `key` when it is non-empty text.
    fn text_fact(&self, key: &str) -> Option<&str> {
        match self.fact(key) {
            Some(super::Fact::Text(t)) if !t.is_empty() => Some(t.as_str()),
            _ => None,
        }
    }

    /// The platform a detector recognised by its own protocol on the wire (evidence
    /// [`PLATFORM_FACT`]): `telegram` from MTProto, `whatsapp` from WhatsApp's framing.
    pub fn platform(&self) -> Option<&str> {
        self.text_fact(PLATFORM_FACT)
    }

    /// DNS response code (RFC 1035 §4.1.1 RCODE), when a DNS detector saw a response.
    pub fn dns_rcode(&self) -> Option<i64> {
        match self.fact("rcode") {
            Some(super::Fact::Int(v)) => Some(*v),
            _ => None,
        }
    }

    /// `spec: fact=value, ...; spec: ...`, deciding match first.
    pub fn evidence_text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_evidence(&mut out);
        out
    }

    /// [`Label::evidence_text`] written into `out` (flow output renders it in place).
    pub fn write_evidence(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        for (i, m) in self.matches.iter().enumerate() {
            if i > 0 {
                out.write_str("; ")?;
            }
            out.write_str(m.name())?;
            if !m.verdict.evidence.0.is_empty() {
                out.write_str(": ")?;
                m.verdict.evidence.write_to(out)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::{rank, Fingerprinter, Transports};
    use crate::flow::{Direction, Transport};

    #[derive(Clone)]
    struct MagicAt0;
    impl Fingerprinter for MagicAt0 {
        fn observe(&mut self, p: &Payload<'_>) -> Step {
            match p.bytes.first() {
                Some(0x42) => {
                    Step::Match(Verdict::new(Confidence::OneMessage).fact("magic", 0x42u8))
                }
                Some(_) if p.nth >= 1 => Step::NotThis,
                _ => Step::NeedMore,
            }
        }
    }
    #[derive(Default, Clone)]
    struct Generic;
    impl Fingerprinter for Generic {
        fn observe(&mut self, _p: &Payload<'_>) -> Step {
            Step::Match(Verdict::new(Confidence::OneMessage))
        }
    }
    #[derive(Clone)]
    struct Counter(u8);
    impl Fingerprinter for Counter {
        fn observe(&mut self, _p: &Payload<'_>) -> Step {
            self.0 += 1;
            assert!(self.0 <= 2, "driver exceeded the budget");
            Step::NeedMore
        }
        fn conclude(&mut self, _f: &FlowContext) -> Option<Verdict> {
            Some(Verdict::new(Confidence::Statistical).fact("seen", self.0))
        }
    }

    static MAGIC: Spec = Spec {
        name: "magic",
        family: Family::Vpn,
        transports: Transports::UDP,
        payload_budget: 4,
        rank: rank::SPECIFIC,
        start: || Box::new(MagicAt0),
        open: None,
    };
    static GENERIC: Spec = Spec {
        name: "generic",
        family: Family::Web,
        transports: Transports::UDP,
        payload_budget: 1,
        rank: rank::CARRIER,
        start: || Box::new(Generic),
        open: Some(crate::fingerprint::open_default::<Generic>),
    };
    static COUNTER: Spec = Spec {
        name: "counter",
        family: Family::Obfuscated,
        transports: Transports::TCP,
        payload_budget: 1,
        rank: rank::STATISTICAL,
        start: || Box::new(Counter(0)),
        open: Some(|p| Opening::with(Counter(0), p)),
    };
    static REG: [&Spec; 3] = [&MAGIC, &GENERIC, &COUNTER];

    fn payload(dir: Direction, nth: u8, t: Transport, bytes: &[u8]) -> Payload<'_> {
        Payload::test(dir, bytes).over(t).nth(nth).ports(1, 2)
    }

    fn ctx(t: Transport) -> FlowContext {
        FlowContext::test(t, 1, 2)
    }

    #[test]
    fn specific_match_outranks_carrier() {
        let mut s = FingerprintState::default();
        s.observe(&REG, &payload(Direction::ToServer, 0, Transport::Udp, &[1]));
        s.observe(
            &REG,
            &payload(Direction::ToClient, 0, Transport::Udp, &[0x42]),
        );
        assert!(s.is_settled());
        let label = s.finish(&REG, &ctx(Transport::Udp));
        assert_eq!(label.protocol, "magic");
        assert_eq!(label.family, Family::Vpn);
        assert_eq!(label.matches.len(), 2);
        assert_eq!(label.evidence_text(), "magic: magic=66; generic");
    }

    #[test]
    fn budget_is_enforced_per_direction_and_conclude_runs() {
        let mut s = FingerprintState::default();
        for i in 0..5 {
            s.observe(&REG, &payload(Direction::ToServer, i, Transport::Tcp, &[0]));
            s.observe(&REG, &payload(Direction::ToClient, i, Transport::Tcp, &[0]));
        }
        let label = s.finish(&REG, &ctx(Transport::Tcp));
        assert_eq!(label.protocol, "counter");
        assert_eq!(label.confidence, Some(Confidence::Statistical));
    }

    #[test]
    fn no_payload_means_unknown() {
        let s = FingerprintState::default();
        assert_eq!(s.finish(&REG, &ctx(Transport::Udp)).protocol, "unknown");
    }
    /// A detector whose answers are read off the payload bytes, so that random payloads give
    /// random interleavings of NeedMore / NotThis / Match across specs.
    #[derive(Default, Clone)]
    struct Scripted<const K: u8> {
        seen: u8,
    }
    impl<const K: u8> Fingerprinter for Scripted<K> {
        fn observe(&mut self, p: &Payload<'_>) -> Step {
            self.seen += 1;
            let pick = p.bytes.get(usize::from(K) % p.bytes.len().max(1)).copied();
            match pick.map(|b| b.wrapping_add(K) % 5) {
                Some(0) | None => Step::NotThis,
                Some(1) => Step::Match(Verdict::new(Confidence::OneMessage).fact("k", K)),
                Some(2) => Step::Match(
                    Verdict::new(Confidence::BothDirections)
                        .fact("k", K)
                        .fact("seen", self.seen),
                ),
                _ => Step::NeedMore,
            }
        }
        fn conclude(&mut self, _f: &FlowContext) -> Option<Verdict> {
            (K % 2 == 0).then(|| Verdict::new(Confidence::Statistical).fact("concluded", K))
        }
    }

    macro_rules! scripted_spec {
        ($name:ident, $k:literal, $t:expr, $budget:literal, $rank:expr, $inline:literal) => {
            static $name: Spec = Spec {
                name: stringify!($name),
                family: Family::Vpn,
                transports: $t,
                payload_budget: $budget,
                rank: $rank,
                start: || Box::new(Scripted::<$k>::default()),
                open: if $inline {
                    Some(crate::fingerprint::open_default::<Scripted<$k>>)
                } else {
                    None
                },
            };
        };
    }
    scripted_spec!(S0, 0, Transports::TCP_UDP, 3, rank::SPECIFIC, true);
    scripted_spec!(S1, 1, Transports::UDP, 1, rank::SPECIFIC, false);
    scripted_spec!(S2, 2, Transports::TCP, 2, rank::SPECIFIC, true);
    scripted_spec!(S3, 3, Transports::TCP_UDP, 4, rank::CARRIER, true);
    scripted_spec!(S4, 4, Transports::TCP_UDP, 0, rank::SPECIFIC, true);
    scripted_spec!(S5, 5, Transports::TCP_UDP, 2, rank::SPECIFIC, false);
    scripted_spec!(S6, 6, Transports::ALL, 1, rank::CARRIER, true);
    scripted_spec!(S7, 7, Transports::TCP_UDP, 5, rank::SPECIFIC, true);
    scripted_spec!(S8, 8, Transports::TCP, 3, rank::SPECIFIC, true);
    scripted_spec!(S9, 9, Transports::TCP_UDP, 2, rank::SPECIFIC, true);
    static SCRIPTED: [&Spec; 10] = [&S0, &S1, &S2, &S3, &S4, &S5, &S6, &S7, &S8, &S9];

    /// The driver as it was before `Spec::open`: every eligible spec boxed at the first payload,
    /// one candidate list walked with `swap_remove`. The new driver must label exactly as this.
    fn all_boxed_label(
        registry: &'static [&'static Spec],
        payloads: &[Payload<'_>],
        flow: &FlowContext,
    ) -> Label {
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut matches = Vec::new();
        let mut started = false;
        for p in payloads {
            if !started {
                started = true;
                candidates = registry
                    .iter()
                    .filter(|s| s.transports.contains(p.transport) && s.payload_budget > 0)
                    .map(|s| Candidate {
                        spec: s,
                        detector: (s.start)(),
                        offered: [0, 0],
                    })
                    .collect();
            }
            let dir = p.direction.index();
            let mut i = 0;
            while i < candidates.len() {
                let c = &mut candidates[i];
                if c.offered[dir] >= c.spec.payload_budget {
                    i += 1;
                    continue;
                }
                c.offered[dir] += 1;
                match c.detector.observe(p) {
                    Step::NeedMore => i += 1,
                    Step::NotThis => {
                        candidates.swap_remove(i);
                    }
                    Step::Match(verdict) => {
                        let spec = c.spec;
                        candidates.swap_remove(i);
                        matches.push(Match { spec, verdict });
                    }
                }
            }
        }
        for c in &mut candidates {
            if let Some(verdict) = c.detector.conclude(flow) {
                matches.push(Match {
                    spec: c.spec,
                    verdict,
                });
            }
        }
        for spec in registry
            .iter()
            .filter(|s| s.payload_budget == 0 && s.transports.contains(flow.transport))
        {
            if let Some(verdict) = (spec.start)().conclude(flow) {
                matches.push(Match { spec, verdict });
            }
        }
        Label::merge(matches)
    }

    #[test]
    fn first_payload_visits_specs_in_the_swap_remove_order() {
        // On UDP (S2, S8 are TCP only, S4 conclude-only) S0 drops out first, so the all-boxed
        // driver visits the last spec, S9, before S1: both match with equal rank and
        // confidence, and the merge keeps that order.
        let bytes = [0u8, 0, 0, 0, 0, 3, 2, 1, 0, 2];
        let payloads = [payload(Direction::ToServer, 0, Transport::Udp, &bytes)];
        let flow = ctx(Transport::Udp);
        let mut s = FingerprintState::default();
        s.observe(&SCRIPTED, &payloads[0]);
        let expected = all_boxed_label(&SCRIPTED, &payloads, &flow);
        let got = s.finish(&SCRIPTED, &flow);
        assert!(
            got.evidence_text().starts_with("S9: k=9; S1: k=1"),
            "{}",
            got.evidence_text()
        );
        assert_eq!(got.evidence_text(), expected.evidence_text());
    }

    proptest::proptest! {
        /// The open-flow view (`provisional`, walked in place) names what `Label::merge` would.
        #[test]
        fn provisional_agrees_with_merge(
            picks in proptest::collection::vec(
                (0usize..64, 0usize..5, proptest::option::of(0usize..4), proptest::bool::ANY, proptest::bool::ANY),
                0..8,
            ),
        ) {
            use crate::fingerprint::registry::REGISTRY;
            const CONFIDENCES: [Confidence; 5] = [
                Confidence::PortOnly,
                Confidence::EndpointList,
                Confidence::Statistical,
                Confidence::OneMessage,
                Confidence::BothDirections,
            ];
            const FAMILIES: [Family; 4] = [Family::Web, Family::Vpn, Family::Tor, Family::Other];
            let matches: Vec<Match> = picks
                .iter()
                .map(|&(spec, conf, family, provider, obfuscated)| {
                    let mut verdict = Verdict::new(CONFIDENCES[conf]);
                    verdict.family = family.map(|f| FAMILIES[f]);
                    verdict.provider = provider.then_some("mullvad");
                    verdict.obfuscated = obfuscated;
                    Match { spec: REGISTRY[spec % REGISTRY.len()], verdict }
                })
                .collect();
            let state = FingerprintState { matches: matches.clone(), ..FingerprintState::default() };
            let merged = Label::merge(matches);
            let expected = (!merged.matches.is_empty()).then_some((merged.protocol, merged.family));
            proptest::prop_assert_eq!(state.provisional(), expected);
        }
    }

    proptest::proptest! {
        /// A state copied part way through a flow ([`FingerprintState::rehome`]) labels the
        /// flow as the state would have, and so does the original it hands back.
        #[test]
        fn a_rehomed_state_labels_as_the_original(
            udp in proptest::bool::ANY,
            at in 0usize..12,
            packets in proptest::collection::vec(
                (proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..12)),
                0..12,
            ),
        ) {
            let t = if udp { Transport::Udp } else { Transport::Tcp };
            let payloads: Vec<Payload<'_>> = packets
                .iter()
                .enumerate()
                .map(|(i, (to_server, bytes))| {
                    let dir = if *to_server { Direction::ToServer } else { Direction::ToClient };
                    Payload::test(dir, bytes)
                        .over(t)
                        .ports(1, 2)
                        .nth_in_flow(u8::try_from(i).unwrap_or(u8::MAX))
                })
                .collect();
            let flow = ctx(t);
            let (mut kept, mut moved) = (FingerprintState::default(), FingerprintState::default());
            let mut original = None;
            for (i, p) in payloads.iter().enumerate() {
                if i == at {
                    original = Some(moved.rehome());
                }
                kept.observe(&SCRIPTED, p);
                moved.observe(&SCRIPTED, p);
                if let Some(o) = original.as_mut() {
                    o.observe(&SCRIPTED, p);
                }
            }
            let expected = kept.finish(&SCRIPTED, &flow).evidence_text();
            proptest::prop_assert_eq!(moved.finish(&SCRIPTED, &flow).evidence_text(), expected.clone());
            if let Some(o) = original {
                proptest::prop_assert_eq!(o.finish(&SCRIPTED, &flow).evidence_text(), expected);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn labels_match_the_all_boxed_driver(
            udp in proptest::bool::ANY,
            packets in proptest::collection::vec(
                (proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..12)),
                0..12,
            ),
        ) {
            let t = if udp { Transport::Udp } else { Transport::Tcp };
            let mut nth = [0u8; 2];
            let payloads: Vec<Payload<'_>> = packets
                .iter()
                .enumerate()
                .map(|(i, (to_server, bytes))| {
                    let dir = if *to_server { Direction::ToServer } else { Direction::ToClient };
                    let k = dir.index();
                    nth[k] = nth[k].saturating_add(1);
                    Payload::test(dir, bytes)
                        .over(t)
                        .ports(1, 2)
                        .nth_in_flow(u8::try_from(i).unwrap_or(u8::MAX))
                        .nth_in_direction(nth[k] - 1)
                })
                .collect();
            let flow = ctx(t);
            let mut s = FingerprintState::default();
            for p in &payloads {
                s.observe(&SCRIPTED, p);
            }
            let got = s.finish(&SCRIPTED, &flow);
            let expected = all_boxed_label(&SCRIPTED, &payloads, &flow);
            proptest::prop_assert_eq!(got.evidence_text(), expected.evidence_text());
            proptest::prop_assert_eq!(got.protocol, expected.protocol);
            proptest::prop_assert_eq!(got.confidence, expected.confidence);
        }
    }
}
