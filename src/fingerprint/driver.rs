//! The driver: offers a flow's payloads to the candidate fingerprinters within their budgets,
//! collects their verdicts and merges them into one [`Label`].
//!
//! Candidates are created at a flow's first payload (a SYN flood never allocates them) and
//! dropped as soon as they decide. Once no candidate wants more, the per-packet cost is one
//! branch.

use super::{Confidence, Family, FlowContext, Payload, Spec, Step, Verdict};

struct Candidate {
    spec: &'static Spec,
    detector: Box<dyn super::Fingerprinter>,
    /// Payloads offered so far, per direction.
    offered: [u8; 2],
}

/// A spec's decision on a flow.
#[derive(Debug, Clone)]
pub struct Match {
    pub spec: &'static Spec,
    pub verdict: Verdict,
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

    /// Offers one payload to every candidate that still wants one from this direction.
    pub fn observe(&mut self, registry: &'static [&'static Spec], payload: &Payload<'_>) {
        if self.settled {
            return;
        }
        if !self.started {
            self.started = true;
            self.candidates = registry
                .iter()
                .filter(|s| s.transports.contains(payload.transport) && s.payload_budget > 0)
                .map(|s| Candidate {
                    spec: s,
                    detector: (s.start)(),
                    offered: [0, 0],
                })
                .collect();
        }
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
        self.settled = self
            .candidates
            .iter()
            .all(|c| c.offered.iter().all(|&n| n >= c.spec.payload_budget));
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

impl Default for Label {
    fn default() -> Self {
        Label {
            protocol: "unknown",
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
        matches.sort_by(|a, b| {
            b.spec
                .rank
                .cmp(&a.spec.rank)
                .then(b.verdict.confidence.cmp(&a.verdict.confidence))
        });
        let top = &matches[0];
        let application = matches.iter().find_map(|m| m.verdict.application);
        let provider = matches.iter().find_map(|m| m.verdict.provider);
        let obfuscated = matches.iter().any(|m| m.verdict.obfuscated);
        let mut family = top.verdict.family.unwrap_or(top.spec.family);
        // A generic carrier to a VPN app or provider is VPN use.
        if matches!(family, Family::Web | Family::Other) {
            if let Some(f) = matches
                .iter()
                .find_map(|m| m.verdict.family.filter(|f| f.is_circumvention()))
            {
                family = f;
            } else if provider.is_some()
                || matches
                    .iter()
                    .any(|m| m.verdict.application.is_some() && m.spec.family.is_circumvention())
            {
                family = Family::Vpn;
            }
        }
        if obfuscated && family == Family::Web {
            family = Family::Obfuscated;
        }
        Label {
            protocol: top.verdict.protocol.unwrap_or(top.spec.name),
            application,
            provider,
            obfuscated,
            family,
            confidence: Some(top.verdict.confidence),
            roles_reversed: top.verdict.roles_reversed,
            matches,
        }
    }

    /// The first evidence fact named `key` among the matches, deciding match first.
    pub fn fact(&self, key: &str) -> Option<&super::Fact> {
        self.matches
            .iter()
            .find_map(|m| m.verdict.evidence.get(key))
    }

    /// The server name the client asked for: TLS/QUIC SNI, HTTP Host, or DNS question.
    pub fn server_name(&self) -> Option<&str> {
        ["sni", "host", "qname"]
            .iter()
            .find_map(|k| match self.fact(k) {
                Some(super::Fact::Text(t)) if !t.is_empty() => Some(t.as_str()),
                _ => None,
            })
    }

    /// DNS response code (RFC 1035 §4.1.1 RCODE), when a DNS detector saw a response.
    pub fn dns_rcode(&self) -> Option<i64> {
        match self.fact("rcode") {
            Some(super::Fact::Int(v)) => Some(*v),
            _ => None,
        }
    }

    /// Whether a DNS response carried answers (None when unknown).
    pub fn dns_answered(&self) -> Option<bool> {
        match self.fact("answers") {
            Some(super::Fact::Int(v)) => Some(*v > 0),
            _ => None,
        }
    }

    /// `spec: fact=value, ...; spec: ...`, deciding match first.
    pub fn evidence_text(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.matches.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            out.push_str(m.verdict.protocol.unwrap_or(m.spec.name));
            if !m.verdict.evidence.0.is_empty() {
                out.push_str(": ");
                out.push_str(&m.verdict.evidence.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::{rank, Fingerprinter, Transports};
    use crate::flow::{Direction, Transport};

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
    struct Generic;
    impl Fingerprinter for Generic {
        fn observe(&mut self, _p: &Payload<'_>) -> Step {
            Step::Match(Verdict::new(Confidence::OneMessage))
        }
    }
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
    };
    static GENERIC: Spec = Spec {
        name: "generic",
        family: Family::Web,
        transports: Transports::UDP,
        payload_budget: 1,
        rank: rank::CARRIER,
        start: || Box::new(Generic),
    };
    static COUNTER: Spec = Spec {
        name: "counter",
        family: Family::Obfuscated,
        transports: Transports::TCP,
        payload_budget: 1,
        rank: rank::STATISTICAL,
        start: || Box::new(Counter(0)),
    };
    static REG: [&Spec; 3] = [&MAGIC, &GENERIC, &COUNTER];

    fn payload(dir: Direction, nth: u8, t: Transport, bytes: &[u8]) -> Payload<'_> {
        Payload {
            direction: dir,
            nth_in_direction: nth,
            nth,
            transport: t,
            client_port: 1,
            server_port: 2,
            ts_nanos: 0,
            bytes,
        }
    }

    fn ctx(t: Transport) -> FlowContext {
        FlowContext {
            transport: t,
            client_ip: "10.0.0.1".parse().unwrap(),
            client_port: 1,
            server_ip: "10.0.0.2".parse().unwrap(),
            server_port: 2,
            packets: [1, 1],
            payload_bytes: [1, 1],
            payload_packets: [1, 1],
            duration_nanos: 0,
        }
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
}
