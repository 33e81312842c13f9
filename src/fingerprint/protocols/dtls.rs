//! DTLS (RFC 6347 §4.1, RFC 9147 §4): datagrams that are a whole number of DTLS records, and
//! the handshake's ClientHello; Cisco AnyConnect's pre-standard DTLS as application.
//!
//! Record header (13 bytes): content type (20 change_cipher_spec, 21 alert, 22 handshake,
//! 23 application_data, 24 heartbeat), version (0xfeff DTLS 1.0, 0xfefd DTLS 1.2 — also the
//! legacy version of DTLS 1.3 plaintext records), epoch (2), sequence number (6), length (2),
//! fragment. A datagram may carry several records; their lengths must add up to the datagram.
//!
//! Cisco AnyConnect's DTLS data channel historically uses the pre-RFC "DTLS 0.9" protocol with
//! version number 0x0100 (OpenSSL's `DTLS1_BAD_VER`, kept only for AnyConnect compatibility:
//! OpenSSL `SSL_OP_CISCO_ANYCONNECT`, test `bad_dtls_test.c`; GnuTLS `GNUTLS_DTLS0_9` "used by
//! openconnect for compatibility with Cisco's AnyConnect"). Its client never does a full
//! handshake: it resumes the session negotiated over the HTTPS CONNECT (X-DTLS-Session-ID,
//! X-DTLS-Master-Secret), so its ClientHello carries a 32-byte session id and no cookie. Version
//! 0x0100 is therefore the AnyConnect fact, the resumed session id its corroboration.
//!
//! WebRTC multiplexes STUN, DTLS and SRTP on one port (RFC 7983 §7: first byte 20..63 is
//! DTLS), so non-DTLS datagrams before the handshake are skipped, not fatal. DTLS ranks just
//! above the carriers: on such a flow the DTLS session, not the STUN keep-alive, names it.

use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};

/// Detector registration: DTLS.
pub static SPEC: Spec = Spec {
    name: "dtls",
    family: Family::Web,
    transports: Transports::UDP,
    payload_budget: 12,
    rank: rank::CARRIER + 1,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// Cisco's pre-standard DTLS version (OpenSSL `DTLS1_BAD_VER`).
pub const VERSION_CISCO: u16 = 0x0100;
const RECORD_HEADER: usize = 13;

/// One record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub content_type: u8,
    pub version: u16,
    pub epoch: u16,
    pub seq: u64,
    pub length: u16,
}

/// Facts of a datagram made of DTLS records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    pub first: Record,
    pub records: u8,
    /// Handshake type of the first record when it is an epoch-0 handshake record.
    pub handshake_type: Option<u8>,
    /// ClientHello facts when the first record holds one.
    pub client_hello: Option<ClientHello>,
}

/// Facts of a DTLS ClientHello (RFC 6347 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHello {
    pub version: u16,
    pub session_id_len: u8,
    pub cookie_len: u8,
    pub cipher_suites: u16,
    pub has_extensions: bool,
}

fn known_version(v: u16) -> bool {
    matches!(v, 0xfeff | 0xfefd | VERSION_CISCO)
}

/// Parses a record header at the start of `b` (RFC 6347 §4.1).
pub fn parse_record(b: &[u8]) -> Option<Record> {
    let h = b.get(..RECORD_HEADER)?;
    let content_type = h[0];
    let version = u16::from_be_bytes([h[1], h[2]]);
    if !(20..=24).contains(&content_type) || !known_version(version) {
        return None;
    }
    let mut seq = 0u64;
    for &x in &h[5..11] {
        seq = (seq << 8) | u64::from(x);
    }
    Some(Record {
        content_type,
        version,
        epoch: u16::from_be_bytes([h[3], h[4]]),
        seq,
        length: u16::from_be_bytes([h[11], h[12]]),
    })
}

/// Parses a DTLS ClientHello handshake message: msg_type 1, length(3), message_seq(2),
/// fragment_offset(3), fragment_length(3), then client_version(2), random(32),
/// session_id<0..32>, cookie<0..255>, cipher_suites<2..2^16-2>, compression_methods<1..>,
/// optional extensions. Only an unfragmented first fragment is read.
pub fn parse_client_hello(hs: &[u8]) -> Option<ClientHello> {
    if *hs.first()? != 1 {
        return None;
    }
    let h = hs.get(..12)?;
    let len = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
    let frag_off = (usize::from(h[6]) << 16) | (usize::from(h[7]) << 8) | usize::from(h[8]);
    let frag_len = (usize::from(h[9]) << 16) | (usize::from(h[10]) << 8) | usize::from(h[11]);
    if frag_off != 0 || frag_len > len {
        return None;
    }
    let body = hs.get(12..12 + frag_len)?;
    let version = u16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    if !known_version(version) {
        return None;
    }
    let mut at = 34;
    let session_id_len = *body.get(at)?;
    if session_id_len > 32 {
        return None;
    }
    at += 1 + usize::from(session_id_len);
    let cookie_len = *body.get(at)?;
    at += 1 + usize::from(cookie_len);
    let cs = u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?);
    if cs < 2 || cs % 2 != 0 {
        return None;
    }
    at += 2 + usize::from(cs);
    let comp = usize::from(*body.get(at)?);
    if comp == 0 {
        return None;
    }
    at += 1 + comp;
    if at > body.len() {
        return None;
    }
    let has_extensions = at < body.len();
    if has_extensions {
        let ext_len = usize::from(u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?));
        if at + 2 + ext_len != body.len() {
            return None;
        }
    }
    Some(ClientHello {
        version,
        session_id_len,
        cookie_len,
        cipher_suites: cs / 2,
        has_extensions,
    })
}

/// Walks a datagram as DTLS records: every record must have a valid header of the same
/// version and the lengths must cover the datagram exactly (at most 16 records).
pub fn parse_datagram(b: &[u8]) -> Option<Datagram> {
    let first = parse_record(b)?;
    let mut at = 0usize;
    let mut records = 0u8;
    while at < b.len() {
        let r = parse_record(b.get(at..)?)?;
        if r.version != first.version || records >= 16 {
            return None;
        }
        at += RECORD_HEADER + usize::from(r.length);
        records += 1;
    }
    if at != b.len() {
        return None;
    }
    let frag = b.get(RECORD_HEADER..RECORD_HEADER + usize::from(first.length))?;
    let (handshake_type, client_hello) = if first.content_type == 22 && first.epoch == 0 {
        (frag.first().copied(), parse_client_hello(frag))
    } else {
        (None, None)
    };
    Some(Datagram {
        first,
        records,
        handshake_type,
        client_hello,
    })
}

/// Per-flow state.
#[derive(Debug, Default, Clone)]
struct State {
    hello: Option<(ClientHello, u16)>,
    /// Datagrams that parsed as records, per direction.
    record_datagrams: [u8; 2],
    /// Server handshake reply (ServerHello 2 or HelloVerifyRequest 3) seen.
    server_reply: Option<u8>,
    version: u16,
    last_seq: [Option<u64>; 2],
    seq_ok: bool,
}

impl State {
    fn verdict(&self, confidence: Confidence) -> Verdict {
        let mut v =
            Verdict::new(confidence).fact("record_version", format!("0x{:04x}", self.version));
        if let Some((ch, _)) = &self.hello {
            v = v
                .fact("client_hello_version", format!("0x{:04x}", ch.version))
                .fact("session_id_len", ch.session_id_len)
                .fact("cookie_len", ch.cookie_len)
                .fact("cipher_suites", ch.cipher_suites);
        }
        if let Some(t) = self.server_reply {
            v = v.fact("server_handshake_type", t);
        }
        if self.version == VERSION_CISCO {
            v.application = Some("anyconnect");
            v.family = Some(Family::Vpn);
            if let Some((ch, _)) = &self.hello {
                v = v.fact(
                    "resumed_session",
                    ch.session_id_len == 32 && ch.cookie_len == 0,
                );
            }
        }
        v
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let dir = p.direction.index();
        let Some(d) = parse_datagram(p.bytes) else {
            // RFC 7983 demultiplexing: STUN/RTP may share the flow, so skip; give up after a
            // run of datagrams without any DTLS.
            let seen = self.record_datagrams.iter().any(|&n| n > 0);
            return if !seen && p.nth >= 10 {
                Step::NotThis
            } else {
                Step::NeedMore
            };
        };
        if self.version != 0 && d.first.version != self.version && self.hello.is_none() {
            return Step::NotThis;
        }
        self.version = d.first.version;
        self.record_datagrams[dir] = self.record_datagrams[dir].saturating_add(1);
        if let Some(prev) = self.last_seq[dir] {
            self.seq_ok = d.first.seq > prev || d.first.epoch > 0;
        }
        self.last_seq[dir] = Some(d.first.seq);
        if let Some(ch) = d.client_hello {
            self.hello.get_or_insert((ch, d.first.version));
            return Step::NeedMore;
        }
        if let (Some(t @ (2 | 3)), Some(_)) = (d.handshake_type, &self.hello) {
            self.server_reply = Some(t);
            return Step::Match(self.verdict(Confidence::BothDirections));
        }
        // Mid-session capture: a run of record datagrams in both directions.
        if self.hello.is_none()
            && self.record_datagrams[0] >= 2
            && self.record_datagrams[1] >= 2
            && self.seq_ok
        {
            return Step::Match(self.verdict(Confidence::Statistical));
        }
        Step::NeedMore
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        self.hello
            .is_some()
            .then(|| self.verdict(Confidence::OneMessage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Direction, Transport};
    use proptest::prelude::*;

    use crate::fingerprint::test_support::hex;

    fn payload(direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes)
            .over(Transport::Udp)
            .nth(nth)
            .ports(54107, 443)
    }

    /// anyconnect-vpn.pcap frame 413 (10.0.0.227:54107 -> 8.37.102.91:443): Cisco DTLS 0x0100
    /// ClientHello resuming a 32-byte session, one cipher suite (0x0039), no extensions.
    const ANYCONNECT_CH: &str = "160100000000000000000000560100004a000000000000004a0100ed89c4699ea16489a68421ebd0951f08172d595bf2c2507bd49467c65ee6238a209bb071c8a80440614f8347a2ce2efe01540c7af53be22e1eac07398729e026ef00000200390100";
    /// anyconnect-vpn.pcap frame 439: the server's HelloVerifyRequest (handshake type 3).
    const ANYCONNECT_HVR: &str = "160100000000000000000000230300001700000000000000170100146291bcf11a76eec56236218cac4cd4c37c12411d";

    #[test]
    fn anyconnect_from_capture() {
        let ch = hex(ANYCONNECT_CH);
        let d = parse_datagram(&ch).unwrap();
        let h = d.client_hello.unwrap();
        assert_eq!(
            (
                h.version,
                h.session_id_len,
                h.cookie_len,
                h.cipher_suites,
                h.has_extensions
            ),
            (0x0100, 32, 0, 1, false)
        );
        let mut s = State::default();
        assert_eq!(
            s.observe(&payload(Direction::ToServer, 0, &ch)),
            Step::NeedMore
        );
        match s.observe(&payload(Direction::ToClient, 0, &hex(ANYCONNECT_HVR))) {
            Step::Match(v) => {
                assert_eq!(v.application, Some("anyconnect"));
                assert_eq!(v.confidence, Confidence::BothDirections);
                assert_eq!(
                    v.evidence.get("resumed_session"),
                    Some(&crate::fingerprint::Fact::Bool(true))
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn standard_dtls12_is_not_anyconnect() {
        let mut ch = hex(ANYCONNECT_CH);
        ch[1..3].copy_from_slice(&[0xfe, 0xfd]);
        ch[25..27].copy_from_slice(&[0xfe, 0xfd]);
        let mut hvr = hex(ANYCONNECT_HVR);
        hvr[1..3].copy_from_slice(&[0xfe, 0xfd]);
        let mut s = State::default();
        assert_eq!(
            s.observe(&payload(Direction::ToServer, 0, &ch)),
            Step::NeedMore
        );
        match s.observe(&payload(Direction::ToClient, 0, &hvr)) {
            Step::Match(v) => assert_eq!(v.application, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn near_misses() {
        // STUN binding request, DNS query, TLS record, record length not matching.
        let stun = hex("000100002112a442000102030405060708090a0b");
        let dns =
            hex("a7f4010000010000000000000675706c6f61640977696b696d65646961036f726700001c0001");
        let tls = hex("1603010005010000010000");
        let mut short = hex(ANYCONNECT_CH);
        short.pop();
        for b in [&stun, &dns, &tls, &short] {
            assert!(parse_datagram(b).is_none());
        }
        let mut s = State::default();
        for i in 0..12 {
            if s.observe(&payload(Direction::ToServer, i, &stun)) == Step::NotThis {
                return;
            }
        }
        panic!("STUN-only flow kept as DTLS candidate");
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(pkts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..30)) {
            let mut s = State::default();
            let mut offered = [0u8; 2];
            for (i, b) in pkts.iter().enumerate() {
                let dir = if i % 2 == 1 { Direction::ToClient } else { Direction::ToServer };
                if offered[dir.index()] >= SPEC.payload_budget { continue; }
                offered[dir.index()] += 1;
                if s.observe(&payload(dir, offered[dir.index()] - 1, b)) != Step::NeedMore { break; }
            }
            let _ = parse_datagram(pkts.first().map(Vec::as_slice).unwrap_or(&[]));
        }
    }
}
