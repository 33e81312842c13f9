//! tinc VPN meta-connections over TCP (tinc protocol documentation, "The meta-protocol").
//!
//! Wire facts:
//! - Every meta request is one text line `<request number> <arguments...>\n`.
//! - Both sides open with ID (request 0): `0 <node name> <protocol major>[.<minor>]\n`; the
//!   protocol major is 17 in tinc 1.0 and 1.1 (1.1 adds `.minor`, e.g. `17.7`). Node names are
//!   `[A-Za-z0-9_]+`; a 1.1 invitation uses `?` followed by a base64 cookie as the name.
//! - tinc 1.0 then sends METAKEY (request 1): `1 <cipher> <digest> <maclength> <compression>
//!   <hex key>`; tinc 1.1 switches to binary SPTPS records after the ID lines.
//!
//! Conservative by design: ID lines from both sides with the same major (`BothDirections`), or
//! one ID line followed on the same side by a well-formed METAKEY line (`OneMessage`). A single
//! ID line never matches.

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};

/// Detector entry: two payloads per direction.
pub static SPEC: Spec = Spec {
    name: "tinc",
    family: Family::Vpn,
    transports: Transports::TCP,
    payload_budget: 2,
    rank: rank::SPECIFIC,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// The tinc meta-protocol major version.
const PROTOCOL_MAJOR: u32 = 17;
/// Longest node name accepted.
const MAX_NAME: usize = 64;

/// A parsed ID line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdLine {
    pub major: u32,
    pub minor: Option<u32>,
    pub invitation: bool,
    /// Offset after the LF.
    pub end: usize,
}

fn small_number(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 4 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0')))
}

/// Parses `0 <name> 17[.minor]\n` at the start of `b`.
pub fn parse_id_line(b: &[u8]) -> Option<IdLine> {
    let lf = b.iter().take(MAX_NAME + 32).position(|&c| c == b'\n')?;
    let line = b.get(..lf)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut fields = line.split(|&c| c == b' ');
    let (Some(b"0"), Some(name), Some(version), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return None;
    };
    let (invitation, body) = match name.strip_prefix(b"?") {
        Some(cookie) => (true, cookie),
        None => (false, name),
    };
    let name_ok = !body.is_empty()
        && body.len() <= MAX_NAME
        && body.iter().all(|&c| {
            c.is_ascii_alphanumeric()
                || c == b'_'
                || (invitation && matches!(c, b'+' | b'/' | b'-' | b'='))
        });
    if !name_ok {
        return None;
    }
    let mut v = version.splitn(2, |&c| c == b'.');
    let major = small_number(v.next()?)?;
    let minor = match v.next() {
        Some(m) => Some(small_number(m)?),
        None => None,
    };
    (major == PROTOCOL_MAJOR).then_some(IdLine {
        major,
        minor,
        invitation,
        end: lf + 1,
    })
}

/// True when `b` starts with a METAKEY line: `1` and four numbers, then a hex key.
pub fn is_metakey_line(b: &[u8]) -> bool {
    let Some(lf) = b.iter().take(4096).position(|&c| c == b'\n') else {
        return false;
    };
    let line = b.get(..lf).unwrap_or(&[]);
    let mut f = line.split(|&c| c == b' ');
    let (Some(b"1"), Some(a), Some(bb), Some(c), Some(d), Some(key), None) = (
        f.next(),
        f.next(),
        f.next(),
        f.next(),
        f.next(),
        f.next(),
        f.next(),
    ) else {
        return false;
    };
    [a, bb, c, d]
        .iter()
        .all(|f| f.iter().all(u8::is_ascii_digit) && !f.is_empty() && f.len() <= 6)
        && key.len() >= 32
        && key.len() % 2 == 0
        && key.iter().all(u8::is_ascii_hexdigit)
}

/// Per-flow state.
#[derive(Debug, Default, Clone)]
struct State {
    /// ID line seen from each side (`Direction::index`).
    ids: [Option<IdLine>; 2],
    metakey: bool,
}

impl State {
    fn verdict(&self, confidence: Confidence) -> Verdict {
        let id = self.ids.iter().flatten().next();
        let mut v = Verdict::new(confidence).fact("protocol_major", PROTOCOL_MAJOR);
        if let Some(minor) = id.and_then(|i| i.minor) {
            v = v.fact("protocol_minor", minor);
        }
        if self.ids.iter().flatten().any(|i| i.invitation) {
            v = v.fact("invitation", true);
        }
        v.fact("metakey", self.metakey)
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let i = p.direction.index();
        let this = self.ids.get(i).copied().flatten();
        match this {
            None => {
                let Some(id) = parse_id_line(p.bytes) else {
                    return Step::NotThis;
                };
                if let Some(slot) = self.ids.get_mut(i) {
                    *slot = Some(id);
                }
                if p.bytes.get(id.end..).is_some_and(is_metakey_line) {
                    self.metakey = true;
                }
            }
            Some(_) => {
                if is_metakey_line(p.bytes) {
                    self.metakey = true;
                }
            }
        }
        if self.ids.iter().all(Option::is_some) {
            return Step::Match(self.verdict(Confidence::BothDirections));
        }
        if self.metakey {
            return Step::Match(self.verdict(Confidence::OneMessage));
        }
        Step::NeedMore
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Direction;
    use proptest::prelude::*;

    fn pl(direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes).nth(nth).ports(40000, 655)
    }

    // No tinc capture exists in the dev corpus: these lines follow the protocol documentation's
    // examples ("0 <name> 17.7" in tinc 1.1, "0 <name> 17" in tinc 1.0).
    #[test]
    fn id_exchange_both_ways() {
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Direction::ToServer, 0, b"0 alpha 17.7\n")),
            Step::NeedMore
        );
        match s.observe(&pl(Direction::ToClient, 0, b"0 beta 17.7\n")) {
            Step::Match(v) => {
                assert_eq!(v.confidence, Confidence::BothDirections);
                assert_eq!(v.evidence.get("protocol_minor"), Some(&7u32.into()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tinc10_id_and_metakey() {
        let mut s = State::default();
        let msg = b"0 home_gw 17\n1 94 64 0 0 9A3B5C7D9A3B5C7D9A3B5C7D9A3B5C7D9A3B5C7D9A3B5C7D9A3B5C7D9A3B5C7D\n";
        assert!(
            matches!(s.observe(&pl(Direction::ToServer, 0, msg)), Step::Match(v) if v.confidence == Confidence::OneMessage)
        );
        assert!(
            parse_id_line(b"0 ?ZmFrZWNvb2tpZQ 17.7\n")
                .unwrap()
                .invitation
        );
    }

    #[test]
    fn near_misses_are_rejected() {
        for b in [
            &b"0 alpha 16\n"[..],
            b"0 alpha\n",
            b"0 al-pha 17\n",
            b"0 alpha 17 extra\n",
            b"1 alpha 17\n",
            b"GET / HTTP/1.1\r\n",
            b"SSH-2.0-OpenSSH_9.4\r\n",
            b"\x16\x03\x01\x00\xa2\x01\x00",
        ] {
            let mut s = State::default();
            assert_eq!(
                s.observe(&pl(Direction::ToServer, 0, b)),
                Step::NotThis,
                "{b:?}"
            );
        }
        let mut s = State::default();
        assert_eq!(
            s.observe(&pl(Direction::ToServer, 0, b"0 alpha 17\n")),
            Step::NeedMore
        );
        assert_eq!(
            s.observe(&pl(Direction::ToClient, 0, b"HTTP/1.1 400 Bad Request\r\n")),
            Step::NotThis
        );
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..4)) {
            let mut s = State::default();
            for (i, c) in chunks.iter().enumerate() {
                let dir = if i % 2 == 0 { Direction::ToServer } else { Direction::ToClient };
                let _ = is_metakey_line(c);
                if s.observe(&pl(dir, (i / 2) as u8, c)) != Step::NeedMore { break; }
            }
        }
    }
}
