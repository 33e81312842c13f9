//! Fingerprint: which VPN, proxy or circumvention protocol a flow speaks, with how the verdict
//! was reached (`Confidence`) and the measured facts behind it (`Evidence`).
//!
//! Contract: one [`Spec`] per protocol in `protocols/` (one file each), listed once in
//! [`registry::REGISTRY`]. A protocol's [`Fingerprinter`] sees the flow's payloads one at a time
//! (borrowed, never stored whole) and answers with a [`Step`]; the [`driver`] owns budgets,
//! directions and the merge of several matches into one [`Label`]. Evidence is facts, never
//! payload bytes.

pub mod driver;
pub mod facts;
pub mod protocols;
pub mod registry;

use std::fmt;
use std::net::IpAddr;

pub use driver::{FingerprintState, Label};

use crate::flow::{Direction, Transport};

/// The coarse class of a protocol, as reported in every flow row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Vpn,
    Proxy,
    Tor,
    Obfuscated,
    Tunnel,
    Web,
    Other,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Vpn => "vpn",
            Family::Proxy => "proxy",
            Family::Tor => "tor",
            Family::Obfuscated => "obfuscated",
            Family::Tunnel => "tunnel",
            Family::Web => "web",
            Family::Other => "other",
        }
    }

    /// True for the families that count as circumvention (VPN use) in statistics.
    pub fn is_circumvention(self) -> bool {
        matches!(
            self,
            Family::Vpn | Family::Proxy | Family::Tor | Family::Obfuscated | Family::Tunnel
        )
    }
}

/// How a verdict was reached, weakest first. This is provenance, not a made-up probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Confidence {
    /// Only the port number matched the protocol's registration.
    PortOnly,
    /// An address matched a published endpoint list (provider ranges, Tor relays).
    EndpointList,
    /// A statistical test over sizes or byte distributions (heuristic).
    Statistical,
    /// One message parsed as the protocol's structure.
    OneMessage,
    /// Messages in both directions agreed (e.g. an echoed session id).
    BothDirections,
}

impl Confidence {
    pub fn name(self) -> &'static str {
        match self {
            Confidence::PortOnly => "port_only",
            Confidence::EndpointList => "endpoint_list",
            Confidence::Statistical => "statistical",
            Confidence::OneMessage => "one_message",
            Confidence::BothDirections => "both_directions",
        }
    }
}

/// One measured fact.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl Fact {
    /// Writes the value as `Display` does. Integers, texts and flags go out without the
    /// formatting machinery: evidence is written for every flow row.
    pub fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Fact::Int(v) => {
                if *v < 0 {
                    out.write_char('-')?;
                }
                let mut buf = [0; 20];
                let digits = crate::decimal::digits(v.unsigned_abs(), &mut buf);
                // ASCII digits only.
                out.write_str(std::str::from_utf8(digits).unwrap_or_default())
            }
            Fact::Float(v) => write!(out, "{v:.3}"),
            Fact::Bool(v) => out.write_str(if *v { "true" } else { "false" }),
            Fact::Text(v) => out.write_str(v),
        }
    }
}

impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl From<i64> for Fact {
    fn from(v: i64) -> Self {
        Fact::Int(v)
    }
}
impl From<u64> for Fact {
    fn from(v: u64) -> Self {
        Fact::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u32> for Fact {
    fn from(v: u32) -> Self {
        Fact::Int(i64::from(v))
    }
}
impl From<u16> for Fact {
    fn from(v: u16) -> Self {
        Fact::Int(i64::from(v))
    }
}
impl From<u8> for Fact {
    fn from(v: u8) -> Self {
        Fact::Int(i64::from(v))
    }
}
impl From<usize> for Fact {
    fn from(v: usize) -> Self {
        Fact::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<i32> for Fact {
    fn from(v: i32) -> Self {
        Fact::Int(i64::from(v))
    }
}
impl From<f64> for Fact {
    fn from(v: f64) -> Self {
        Fact::Float(v)
    }
}
impl From<bool> for Fact {
    fn from(v: bool) -> Self {
        Fact::Bool(v)
    }
}
impl From<&str> for Fact {
    fn from(v: &str) -> Self {
        Fact::Text(v.to_string())
    }
}
impl From<String> for Fact {
    fn from(v: String) -> Self {
        Fact::Text(v)
    }
}

/// The facts behind a verdict, in the order they were established.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence(pub Vec<(&'static str, Fact)>);

impl Evidence {
    pub fn push(&mut self, key: &'static str, value: impl Into<Fact>) {
        self.0.push((key, value.into()));
    }
    pub fn get(&self, key: &str) -> Option<&Fact> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl Evidence {
    /// Writes `key=value, key=value` as `Display` does, without the formatting machinery.
    pub fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.write_str(", ")?;
            }
            out.write_str(k)?;
            out.write_char('=')?;
            v.write_to(out)?;
        }
        Ok(())
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// A fingerprinter's decision about a flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub confidence: Confidence,
    pub evidence: Evidence,
    /// The capture began mid-flow and the first sender was really the server.
    pub roles_reversed: bool,
    /// Wire protocol token when it differs from the spec's name (e.g. `shadowsocks` named by the
    /// fully-encrypted detector).
    pub protocol: Option<&'static str>,
    /// App or service recognised (`psiphon`, `softether`, ...).
    pub application: Option<&'static str>,
    /// Commercial VPN brand (`nordvpn`, `mullvad`, ...).
    pub provider: Option<&'static str>,
    /// The flow hides a known protocol (XOR-scrambled OpenVPN, obfs4, TLS-in-TLS, ...).
    pub obfuscated: bool,
    /// Family when it differs from the spec's (e.g. TLS to a VPN provider is `vpn`).
    pub family: Option<Family>,
}

impl Verdict {
    pub fn new(confidence: Confidence) -> Self {
        Verdict {
            confidence,
            evidence: Evidence::default(),
            roles_reversed: false,
            protocol: None,
            application: None,
            provider: None,
            obfuscated: false,
            family: None,
        }
    }

    /// Adds one fact (builder style).
    pub fn fact(mut self, key: &'static str, value: impl Into<Fact>) -> Self {
        self.evidence.push(key, value);
        self
    }

    /// The app, provider and family a server name gives (a VPN app's or brand's name makes
    /// the flow theirs, [`crate::intel::lookup_name`]), with the fact `intel=sni`; unchanged
    /// when the name is unknown or absent.
    pub fn named_by_sni(mut self, sni: Option<&str>) -> Self {
        if let Some(rule) = sni.and_then(crate::intel::lookup_name) {
            self.application = rule.application;
            self.provider = rule.provider;
            self.family = Some(rule.family);
            self.evidence.push("intel", "sni");
        }
        self
    }
}

/// After each payload: keep going, give up on this flow, or decide.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    NeedMore,
    NotThis,
    Match(Verdict),
}

/// One non-empty transport payload, lent to the fingerprinter and never stored by it.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    pub direction: Direction,
    /// 0 for the first payload sent this way.
    pub nth_in_direction: u8,
    /// 0 for the first payload of the flow, either way.
    pub nth: u8,
    pub transport: Transport,
    pub client_port: u16,
    pub server_port: u16,
    pub ts_nanos: i64,
    pub bytes: &'a [u8],
    /// TCP: the flow's first packet was neither SYN nor SYN-ACK, so the capture began
    /// mid-connection and `nth` counts from there, not from the connection's first byte.
    pub midstream: bool,
    /// Bytes of this payload the capture left out (a snap length cut the frame short): on the
    /// wire it was [`Payload::wire_len`] bytes, of which `bytes` are the first. 0 when `bytes`
    /// is the whole payload. A detector that checks a message's length against the payload's
    /// (or reads its end) must use the wire length or decline a cut payload. 16 bits, as the
    /// IP and UDP length fields it comes from ([`crate::decode::DecodedPacket::payload_cut`]).
    pub cut: u16,
}

impl Payload<'_> {
    /// The payload's length on the wire: the captured bytes and the ones cut off.
    pub fn wire_len(&self) -> usize {
        self.bytes.len().saturating_add(usize::from(self.cut))
    }

    /// `bytes` is the whole payload (nothing was cut off by a snap length).
    pub fn is_whole(&self) -> bool {
        self.cut == 0
    }
}

/// What a fingerprinter may know about the whole flow when it concludes.
#[derive(Debug, Clone, Copy)]
pub struct FlowContext {
    pub transport: Transport,
    pub client_ip: IpAddr,
    pub client_port: u16,
    pub server_ip: IpAddr,
    pub server_port: u16,
    /// Indexed by [`Direction::index`]: to server, to client.
    pub packets: [u64; 2],
    pub payload_bytes: [u64; 2],
    pub payload_packets: [u64; 2],
    pub duration_nanos: i64,
}

#[cfg(test)]
impl<'a> Payload<'a> {
    /// First TCP payload of a flow 40000 -> 443 at time 0; the methods below change one aspect.
    pub(crate) fn test(direction: Direction, bytes: &'a [u8]) -> Self {
        Payload {
            direction,
            nth_in_direction: 0,
            nth: 0,
            transport: Transport::Tcp,
            client_port: 40000,
            server_port: 443,
            ts_nanos: 0,
            bytes,
            midstream: false,
            cut: 0,
        }
    }

    /// Marks `cut` more bytes of the payload as left out by the capture.
    pub(crate) fn cut(self, cut: u16) -> Self {
        Payload { cut, ..self }
    }

    /// Marks the flow as picked up mid-connection.
    pub(crate) fn midstream(self) -> Self {
        Payload {
            midstream: true,
            ..self
        }
    }

    /// Sets both `nth` and `nth_in_direction` to `n`.
    pub(crate) fn nth(self, n: u8) -> Self {
        Payload {
            nth: n,
            nth_in_direction: n,
            ..self
        }
    }

    /// Sets only `nth` (position in the flow), keeping `nth_in_direction`.
    pub(crate) fn nth_in_flow(self, n: u8) -> Self {
        Payload { nth: n, ..self }
    }

    /// Sets only `nth_in_direction`, keeping `nth`.
    pub(crate) fn nth_in_direction(self, n: u8) -> Self {
        Payload {
            nth_in_direction: n,
            ..self
        }
    }

    /// Sets the transport.
    pub(crate) fn over(self, transport: Transport) -> Self {
        Payload { transport, ..self }
    }

    /// Sets the client and server ports.
    pub(crate) fn ports(self, client_port: u16, server_port: u16) -> Self {
        Payload {
            client_port,
            server_port,
            ..self
        }
    }
}

#[cfg(test)]
impl FlowContext {
    /// Flow 10.0.0.1 -> 10.0.0.2 with one one-byte payload packet each way, duration 0.
    pub(crate) fn test(transport: Transport, client_port: u16, server_port: u16) -> Self {
        FlowContext {
            transport,
            client_ip: IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
            client_port,
            server_ip: IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)),
            server_port,
            packets: [1, 1],
            payload_bytes: [1, 1],
            payload_packets: [1, 1],
            duration_nanos: 0,
        }
    }
}

/// Per-flow state of one protocol's detector.
pub trait Fingerprinter: Send + CloneFingerprinter {
    /// Looks at one payload (within the spec's budget) and says what it makes of the flow so far.
    fn observe(&mut self, payload: &Payload<'_>) -> Step;

    /// Budget spent or flow closed without a decision: statistical and endpoint-list detectors
    /// decide here. Called once.
    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        None
    }
}

/// A boxed copy of a detector's state, in blocks allocated by the calling thread: a flow that
/// moves between threads gets copies of its state there ([`FingerprintState::rehome`]).
/// Every `Clone` detector has it; a new protocol's state derives `Clone`.
pub trait CloneFingerprinter {
    fn clone_box(&self) -> Box<dyn Fingerprinter>;
}

impl<T: Fingerprinter + Clone + 'static> CloneFingerprinter for T {
    fn clone_box(&self) -> Box<dyn Fingerprinter> {
        Box::new(self.clone())
    }
}

/// Which transports a spec is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports(u8);

impl Transports {
    pub const TCP: Transports = Transports(1);
    pub const UDP: Transports = Transports(2);
    pub const ICMP: Transports = Transports(4);
    /// Any other IP protocol (GRE, ESP, AH, ...), payload = the IP payload.
    pub const OTHER_IP: Transports = Transports(8);
    pub const TCP_UDP: Transports = Transports(3);
    pub const ALL: Transports = Transports(15);

    pub const fn or(self, other: Transports) -> Transports {
        Transports(self.0 | other.0)
    }

    pub fn contains(self, t: Transport) -> bool {
        let bit = match t {
            Transport::Tcp => 1,
            Transport::Udp => 2,
            Transport::Icmp => 4,
            Transport::Other(_) => 8,
        };
        self.0 & bit != 0
    }
}

/// Generic carriers (TLS, HTTP, DNS...) rank lowest so that a more specific match on the same
/// flow names it; VPN protocols rank highest.
pub mod rank {
    pub const CARRIER: u8 = 10;
    pub const STATISTICAL: u8 = 20;
    pub const TUNNEL_OVER_CARRIER: u8 = 40;
    pub const SPECIFIC: u8 = 60;
}

/// A protocol's entry in the registry.
pub struct Spec {
    /// Stable id: CLI, JSON, labels.csv vocabulary.
    pub name: &'static str,
    pub family: Family,
    pub transports: Transports,
    /// Payloads per direction the driver offers at most. 0: only `conclude` is called (endpoint
    /// lists and flow-shape detectors).
    pub payload_budget: u8,
    /// Precedence when several specs match one flow (see [`rank`]).
    pub rank: u8,
    pub start: fn() -> Box<dyn Fingerprinter>,
    /// Looks at a flow's first offered payload before any per-flow state is allocated, so that
    /// the many specs that turn a flow down at once cost no heap allocation. Must answer
    /// exactly as `start()` followed by `observe` would; [`open_default`] does that for a
    /// `Default` state. `None`: the driver boxes `start()` first (always correct, just slower).
    pub open: Option<fn(&Payload<'_>) -> Opening>,
}

/// A detector's answer to a flow's first offered payload (see [`Spec::open`]).
pub enum Opening {
    /// Wants more payloads: the per-flow state, now on the heap.
    NeedMore(Box<dyn Fingerprinter>),
    NotThis,
    Match(Verdict),
}

impl Opening {
    /// Offers the first payload to an already built state, boxing it only if it wants more.
    pub fn with<F: Fingerprinter + 'static>(mut state: F, payload: &Payload<'_>) -> Opening {
        match state.observe(payload) {
            Step::NeedMore => Opening::NeedMore(Box::new(state)),
            Step::NotThis => Opening::NotThis,
            Step::Match(verdict) => Opening::Match(verdict),
        }
    }

    /// As [`Opening::with`], for a state that was already boxed (specs without `open`).
    pub fn boxed(mut state: Box<dyn Fingerprinter>, payload: &Payload<'_>) -> Opening {
        match state.observe(payload) {
            Step::NeedMore => Opening::NeedMore(state),
            Step::NotThis => Opening::NotThis,
            Step::Match(verdict) => Opening::Match(verdict),
        }
    }
}

/// [`Spec::open`] for a detector whose `start` is `Box::new(F::default())`: the state lives on
/// the stack for the first payload and moves to the heap only if it wants more.
pub fn open_default<F: Fingerprinter + Default + 'static>(payload: &Payload<'_>) -> Opening {
    Opening::with(F::default(), payload)
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spec")
            .field("name", &self.name)
            .field("family", &self.family)
            .finish()
    }
}

/// Helpers for the detectors' tests.
#[cfg(test)]
pub(crate) mod test_support {
    /// Bytes from hex text; anything but hex digits (spaces, line breaks) is skipped.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks_exact(2)
            .map(|pair| {
                let text = std::str::from_utf8(pair).expect("ASCII digits");
                u8::from_str_radix(text, 16).expect("hex digits")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hex_skips_what_is_not_a_digit() {
        assert_eq!(test_support::hex("16 03\n01 0a"), [0x16, 0x03, 0x01, 0x0a]);
        assert_eq!(test_support::hex("FFff"), [0xff, 0xff]);
    }

    proptest! {
        /// Facts written without the formatting machinery read as their values' `Display`.
        #[test]
        fn facts_write_as_their_values_display(i in any::<i64>(), x in any::<f64>(), b in any::<bool>(), t in any::<String>()) {
            let mut evidence = Evidence::default();
            evidence.push("i", i);
            evidence.push("x", x);
            evidence.push("b", b);
            evidence.push("t", t.clone());
            let mut written = String::new();
            evidence.write_to(&mut written).expect("String never fails");
            prop_assert_eq!(written, format!("i={i}, x={x:.3}, b={b}, t={t}"));
        }
    }

    #[test]
    fn integer_facts_at_the_ends_of_the_range() {
        for v in [i64::MIN, i64::MIN + 1, -10, -1, 0, 9, 10, i64::MAX] {
            assert_eq!(Fact::Int(v).to_string(), v.to_string());
        }
    }
}
