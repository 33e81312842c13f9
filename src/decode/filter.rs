//! Packet filters for capture files: the part of tcpdump's filter language (pcap-filter(7)) that
//! speaks of IP addresses, ports and protocols, evaluated on decoded packets. Live capture hands
//! its `-f` expression to libpcap instead; files are read without it, so that a default build
//! needs no system library.
//!
//! Supported, as in pcap-filter(7):
//! - primitives `host ADDR`, `net ADDR/LEN` (or a bare address: one host), `port N`,
//!   `portrange N-M`, `proto N` (or a name: `tcp`, `udp`, `icmp`, `icmp6`, `gre`, `esp`, `ah`),
//!   each optionally after `src` or `dst`;
//! - protocol qualifiers `ip`, `ip6`, `tcp`, `udp`, `icmp`, `icmp6`, alone (`tcp`) or in front
//!   of a primitive (`tcp port 443`, `ip6 net 2001:db8::/32`, `ip proto 47`);
//! - `not`/`!`, `and`/`&&`, `or`/`||` and parentheses. As in pcap-filter, negation binds
//!   tightest and `and`/`or` have equal precedence, associating to the left: `a or b and c` is
//!   `(a or b) and c`;
//! - a bare value after `and`/`or` repeats the qualifiers before it: `host a or b` is
//!   `host a or host b`, `port 80 or 443` is `port 80 or port 443`.
//!
//! Anything else (link-layer primitives, `len`, byte offsets like `tcp[13]`, service names) is
//! refused with a message that says so. `port` matches TCP and UDP ports only, as tcpdump does
//! for packets other than SCTP.

use std::fmt;
use std::net::IpAddr;

use super::DecodedPacket;

/// A filter expression that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter {expression:?}: {message}")]
pub struct FilterError {
    pub expression: String,
    pub message: String,
}

/// A parsed filter, ready to test packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketFilter {
    expression: String,
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Prim(Prim),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Ip,
    Ip6,
    Tcp,
    Udp,
    Icmp,
    Icmp6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Either,
    Src,
    Dst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Host,
    Net,
    Port,
    PortRange,
    Proto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    /// A protocol qualifier alone (`tcp`, `ip6`).
    Any,
    Net(IpAddr, u8),
    Ports(u16, u16),
    IpProto(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Prim {
    proto: Option<Proto>,
    dir: Dir,
    test: Test,
}

impl PacketFilter {
    /// Parses `expression`.
    pub fn parse(expression: &str) -> Result<PacketFilter, FilterError> {
        let tokens = tokenize(expression);
        let mut parser = Parser {
            tokens: &tokens,
            at: 0,
            last: None,
        };
        let fail = |message: String| FilterError {
            expression: expression.to_string(),
            message,
        };
        if tokens.is_empty() {
            return Err(fail("empty expression".into()));
        }
        let expr = parser.expr().map_err(fail)?;
        if let Some(extra) = parser.peek() {
            return Err(fail(format!("unexpected `{extra}`")));
        }
        Ok(PacketFilter {
            expression: expression.to_string(),
            expr,
        })
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Whether `packet` passes the filter.
    pub fn matches(&self, packet: &DecodedPacket<'_>) -> bool {
        self.expr.matches(packet)
    }
}

impl fmt::Display for PacketFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

impl Expr {
    fn matches(&self, p: &DecodedPacket<'_>) -> bool {
        match self {
            Expr::And(a, b) => a.matches(p) && b.matches(p),
            Expr::Or(a, b) => a.matches(p) || b.matches(p),
            Expr::Not(a) => !a.matches(p),
            Expr::Prim(prim) => prim.matches(p),
        }
    }
}

const TCP: u8 = 6;
const UDP: u8 = 17;

impl Prim {
    fn matches(&self, p: &DecodedPacket<'_>) -> bool {
        let proto_ok = match self.proto {
            None => true,
            Some(Proto::Ip) => p.src.is_ipv4(),
            Some(Proto::Ip6) => p.src.is_ipv6(),
            Some(Proto::Tcp) => p.ip_proto == TCP,
            Some(Proto::Udp) => p.ip_proto == UDP,
            Some(Proto::Icmp) => p.ip_proto == 1,
            Some(Proto::Icmp6) => p.ip_proto == 58,
        };
        if !proto_ok {
            return false;
        }
        let either = |test: &dyn Fn(IpAddr, u16) -> bool| match self.dir {
            Dir::Either => test(p.src, p.src_port) || test(p.dst, p.dst_port),
            Dir::Src => test(p.src, p.src_port),
            Dir::Dst => test(p.dst, p.dst_port),
        };
        match self.test {
            Test::Any => true,
            Test::IpProto(n) => p.ip_proto == n,
            Test::Net(net, len) => either(&|addr, _| in_net(addr, net, len)),
            Test::Ports(lo, hi) => {
                (p.ip_proto == TCP || p.ip_proto == UDP)
                    && either(&|_, port| (lo..=hi).contains(&port))
            }
        }
    }
}

/// Whether `addr` is in `net/len` (same address family).
fn in_net(addr: IpAddr, net: IpAddr, len: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Splits on whitespace, with `(`, `)` and `!` (not followed by `=`) as tokens of their own.
fn tokenize(s: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let single = c == '(' || c == ')' || (c == '!' && chars.peek() != Some(&'='));
        if c.is_whitespace() || single {
            if !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            if single {
                tokens.push(c.to_string());
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

const SUPPORTED: &str = "supported: host, net, port, portrange, proto, src, dst, ip, ip6, tcp, \
                         udp, icmp, icmp6, and/or/not, parentheses";

struct Parser<'a> {
    tokens: &'a [String],
    at: usize,
    /// The qualifiers of the last primitive, for a bare value after `and`/`or`.
    last: Option<(Option<Proto>, Dir, Kind)>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn next(&mut self) -> Option<&str> {
        let t = self.tokens.get(self.at).map(String::as_str);
        self.at += 1;
        t
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut left = self.term()?;
        loop {
            let and = match self.peek() {
                Some("and" | "&&") => true,
                Some("or" | "||") => false,
                _ => return Ok(left),
            };
            self.at += 1;
            let right = self.term()?;
            left = if and {
                Expr::And(Box::new(left), Box::new(right))
            } else {
                Expr::Or(Box::new(left), Box::new(right))
            };
        }
    }

    fn term(&mut self) -> Result<Expr, String> {
        match self.peek() {
            None => Err("the expression ends where a primitive was expected".into()),
            Some("not" | "!") => {
                self.at += 1;
                Ok(Expr::Not(Box::new(self.term()?)))
            }
            Some("(") => {
                self.at += 1;
                let inner = self.expr()?;
                match self.next() {
                    Some(")") => Ok(inner),
                    Some(other) => Err(format!("expected `)`, found `{other}`")),
                    None => Err("a `(` is not closed".into()),
                }
            }
            Some(_) => self.primitive().map(Expr::Prim),
        }
    }

    fn primitive(&mut self) -> Result<Prim, String> {
        let first = self.peek().unwrap_or_default().to_string();
        // A bare value repeats the last primitive's qualifiers (`host a or b`).
        if let Some((proto, dir, kind)) = self.last {
            if is_value(&first) {
                self.at += 1;
                return Ok(Prim {
                    proto,
                    dir,
                    test: value(kind, &first)?,
                });
            }
        }
        let proto = match first.as_str() {
            "ip" => Some(Proto::Ip),
            "ip6" => Some(Proto::Ip6),
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "icmp" => Some(Proto::Icmp),
            "icmp6" => Some(Proto::Icmp6),
            _ => None,
        };
        if proto.is_some() {
            self.at += 1;
        }
        let dir = match self.peek() {
            Some("src") => Dir::Src,
            Some("dst") => Dir::Dst,
            _ => Dir::Either,
        };
        if dir != Dir::Either {
            self.at += 1;
        }
        let kind = match self.peek() {
            Some("host") => Some(Kind::Host),
            Some("net") => Some(Kind::Net),
            Some("port") => Some(Kind::Port),
            Some("portrange") => Some(Kind::PortRange),
            Some("proto") => Some(Kind::Proto),
            _ => None,
        };
        let Some(kind) = kind else {
            return match (proto, dir, self.peek()) {
                // A protocol alone: `tcp`, `ip6 and ...`.
                (Some(_), Dir::Either, None | Some("and" | "&&" | "or" | "||" | ")")) => Ok(Prim {
                    proto,
                    dir,
                    test: Test::Any,
                }),
                (_, _, Some(word)) if is_value(word) => Err(format!(
                    "`{word}` needs a keyword before it (`host`, `net`, `port`, ...)"
                )),
                (_, _, Some(word)) => Err(format!("`{word}` is not supported; {SUPPORTED}")),
                (_, _, None) => Err("the expression ends where a keyword was expected".into()),
            };
        };
        self.at += 1;
        if kind == Kind::Proto && dir != Dir::Either {
            return Err("`proto` takes no `src` or `dst`".into());
        }
        let Some(word) = self.next().map(str::to_string) else {
            return Err("the expression ends where a value was expected".into());
        };
        let test = value(kind, &word)?;
        self.last = Some((proto, dir, kind));
        Ok(Prim { proto, dir, test })
    }
}

/// A token that can only be a value: an address, a number, a range or a prefix.
fn is_value(word: &str) -> bool {
    word.parse::<IpAddr>().is_ok()
        || word
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == ':')
}

fn value(kind: Kind, word: &str) -> Result<Test, String> {
    let port = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("`{s}` is not a port number (0-65535; names are not supported)"))
    };
    match kind {
        Kind::Host => word
            .parse::<IpAddr>()
            .map(|a| Test::Net(a, full_len(a)))
            .map_err(|_| format!("`{word}` is not an IP address (host names are not supported)")),
        Kind::Net => {
            let (addr, len) = match word.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (word, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("`{word}` is not a network (ADDR/LEN)"))?;
            let len = match len {
                None => full_len(addr),
                Some(l) => l
                    .parse::<u8>()
                    .ok()
                    .filter(|&l| l <= full_len(addr))
                    .ok_or_else(|| format!("`{word}`: the prefix length is out of range"))?,
            };
            Ok(Test::Net(addr, len))
        }
        Kind::Port => port(word).map(|p| Test::Ports(p, p)),
        Kind::PortRange => {
            let (lo, hi) = word
                .split_once('-')
                .ok_or_else(|| format!("`{word}` is not a port range (N-M)"))?;
            let (lo, hi) = (port(lo)?, port(hi)?);
            if lo > hi {
                return Err(format!("`{word}`: the range is backwards"));
            }
            Ok(Test::Ports(lo, hi))
        }
        Kind::Proto => {
            let number = match word {
                "tcp" => TCP,
                "udp" => UDP,
                "icmp" => 1,
                "icmp6" => 58,
                "gre" => 47,
                "esp" => 50,
                "ah" => 51,
                n => n.parse::<u8>().map_err(|_| {
                    format!("`{n}` is not an IP protocol (a number 0-255 or tcp, udp, icmp, icmp6, gre, esp, ah)")
                })?,
            };
            Ok(Test::IpProto(number))
        }
    }
}

fn full_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet(src: &str, sport: u16, dst: &str, dport: u16, proto: u8) -> DecodedPacket<'static> {
        DecodedPacket {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            ip_proto: proto,
            src_port: sport,
            dst_port: dport,
            tcp_flags: 0,
            tcp_seq: 0,
            payload: &[],
            ip_len: 40,
            payload_cut: 0,
        }
    }

    fn passes(expression: &str, p: &DecodedPacket<'_>) -> bool {
        PacketFilter::parse(expression)
            .unwrap_or_else(|e| panic!("{e}"))
            .matches(p)
    }

    #[test]
    fn primitives_and_qualifiers() {
        let dns = packet("10.0.0.1", 40000, "8.8.8.8", 53, UDP);
        let https = packet("10.0.0.1", 40001, "1.1.1.1", 443, TCP);
        let v6 = packet("2001:db8::1", 5000, "2001:db8::2", 443, UDP);
        let gre = packet("10.0.0.1", 0, "10.0.0.9", 0, 47);
        for (expression, expected) in [
            ("udp", [true, false, true, false]),
            ("tcp", [false, true, false, false]),
            ("ip", [true, true, false, true]),
            ("ip6", [false, false, true, false]),
            ("port 53", [true, false, false, false]),
            ("udp port 443", [false, false, true, false]),
            ("tcp dst port 443", [false, true, false, false]),
            ("src port 443", [false, false, false, false]),
            ("portrange 400-500", [false, true, true, false]),
            ("host 8.8.8.8", [true, false, false, false]),
            ("src host 10.0.0.1", [true, true, false, true]),
            ("dst net 10.0.0.0/8", [false, false, false, true]),
            ("net 2001:db8::/32", [false, false, true, false]),
            ("proto gre", [false, false, false, true]),
            ("ip proto 47", [false, false, false, true]),
            ("ip6 proto udp", [false, false, true, false]),
            // No ports on GRE: a port test never matches it.
            ("port 0", [false, false, false, false]),
        ] {
            let got = [&dns, &https, &v6, &gre].map(|p| passes(expression, p));
            assert_eq!(got, expected, "{expression}");
        }
    }

    #[test]
    fn operators_precedence_and_repeated_qualifiers() {
        let dns = packet("10.0.0.1", 40000, "8.8.8.8", 53, UDP);
        let https = packet("10.0.0.1", 40001, "1.1.1.1", 443, TCP);
        assert!(passes("not tcp", &dns) && !passes("! tcp", &https));
        assert!(passes("tcp or udp", &dns) && passes("tcp || udp", &https));
        assert!(!passes("tcp and udp", &dns) && !passes("tcp && udp", &https));
        // pcap-filter: `and` and `or` have equal precedence, left to right.
        assert!(!passes("udp or tcp and port 443", &dns));
        assert!(passes("udp or (tcp and port 443)", &dns));
        assert!(passes("!(port 53 or port 80)", &https));
        assert!(passes("not port 53 and not port 80", &https));
        // A bare value repeats the qualifiers before it.
        assert!(passes("host 9.9.9.9 or 8.8.8.8", &dns));
        assert!(passes("port 80 or 443", &https));
        assert!(
            !passes("dst port 1 or 40001", &https),
            "dst is repeated too"
        );
        assert!(passes("tcp port 80 or 443", &https));
    }

    #[test]
    fn unsupported_and_malformed_expressions_say_why() {
        for (expression, says) in [
            ("", "empty"),
            ("ether host 00:11:22:33:44:55", "not supported"),
            ("tcp[13] & 2 != 0", "not supported"),
            ("greater 100", "not supported"),
            ("host example.com", "host names are not supported"),
            ("port https", "names are not supported"),
            ("port 70000", "not a port number"),
            ("portrange 10-5", "backwards"),
            ("net 10.0.0.0/33", "out of range"),
            ("(tcp", "not closed"),
            ("tcp)", "unexpected `)`"),
            ("tcp and", "ends where a primitive"),
            ("host", "ends where a value"),
            ("src", "ends where a keyword"),
            ("10.0.0.1", "needs a keyword"),
            ("src proto 6", "no `src` or `dst`"),
            ("proto foo", "not an IP protocol"),
        ] {
            let err = PacketFilter::parse(expression)
                .expect_err(expression)
                .to_string();
            assert!(err.contains(says), "{expression}: {err}");
            assert!(err.contains(&format!("{expression:?}")), "{err}");
        }
    }

    fn arb_packet() -> impl Strategy<Value = DecodedPacket<'static>> {
        (
            prop_oneof![Just("10.0.0.1"), Just("10.0.0.2"), Just("2001:db8::1")],
            prop_oneof![Just("8.8.8.8"), Just("10.1.2.3"), Just("2001:db8::2")],
            prop_oneof![Just(53u16), Just(443), Just(40000)],
            prop_oneof![Just(53u16), Just(443), Just(40000)],
            prop_oneof![Just(TCP), Just(UDP), Just(1u8), Just(47)],
        )
            .prop_map(|(s, d, sp, dp, pr)| packet(s, sp, d, dp, pr))
    }

    fn arb_primitive() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("tcp"),
            Just("udp"),
            Just("ip6"),
            Just("port 53"),
            Just("src port 443"),
            Just("host 8.8.8.8"),
            Just("net 10.0.0.0/8"),
            Just("proto 47"),
            Just("portrange 1-1000"),
        ]
    }

    proptest! {
        /// `not`, `and` and `or` mean what they say, whatever the primitives.
        #[test]
        fn operators_follow_boolean_logic(p in arb_packet(), a in arb_primitive(), b in arb_primitive()) {
            let (x, y) = (passes(a, &p), passes(b, &p));
            prop_assert_eq!(passes(&format!("not {a}"), &p), !x);
            prop_assert_eq!(passes(&format!("{a} and {b}"), &p), x && y);
            prop_assert_eq!(passes(&format!("({a}) or ({b})"), &p), x || y);
            prop_assert_eq!(passes(&format!("!({a}) && !({b})"), &p), !(x || y));
        }

        /// Any text is parsed or refused, never a panic.
        #[test]
        fn any_text_parses_or_is_refused(s in "[a-z0-9 ().:/!&|-]{0,40}") {
            let _ = PacketFilter::parse(&s);
        }
    }
}
