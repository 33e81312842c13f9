//! QUIC: IETF QUIC v1/v2 client Initials (decrypted with the public Initial keys, RFC 9001 §5)
//! and Google QUIC (gQUIC `Q0xx`) client hellos, with the SNI and ALPN they carry.
//!
//! IETF QUIC: the client's first datagrams hold long-header Initial packets (RFC 9000 §17.2.2)
//! whose payload opens with keys derived from the Destination Connection ID; a verified AEAD tag
//! proves the protocol. The CRYPTO frames inside (possibly split over several Initials, out of
//! order, as Chrome sends them) are reassembled up to 8 KiB and the ClientHello is read with the
//! shared TLS facts parser.
//!
//! gQUIC (Q024..Q043, Chromium "QUIC Wire Layout" and "QUIC Crypto" documents): public flags
//! byte with the version bit set, 8-byte connection id, ASCII version `Qddd`, packet number,
//! 12-byte message authentication hash, then a STREAM frame on stream 1 whose data is a `CHLO`
//! handshake message: tag `CHLO`, uint16 LE entry count, 2 bytes padding, entries of
//! (tag, uint32 LE end offset), then the values. The `SNI\0` tag carries the host name.

use crate::fingerprint::facts::quic::{self as qf, CryptoStream, MAX_DATAGRAM};
use crate::fingerprint::facts::tls;
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Direction;

/// Detector registration: QUIC, a generic carrier.
pub static SPEC: Spec = Spec {
    name: "quic",
    family: Family::Web,
    transports: Transports::UDP,
    payload_budget: 6,
    rank: rank::CARRIER,
    start: || Box::new(State::default()),
    open: Some(crate::fingerprint::open_default::<State>),
};

/// A gQUIC client hello: version and the CHLO facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GquicHello<'a> {
    /// ASCII `Qddd`.
    pub version: [u8; 4],
    /// Number of tag/value entries in the CHLO.
    pub tags: u16,
    /// Value of the `SNI\0` tag when it lies within this packet.
    pub sni: Option<&'a [u8]>,
}

/// Parses a gQUIC (pre-IETF header, Q024..Q043) client packet carrying a CHLO.
///
/// Public header: flags (0x01 version present, 0x02 reset, 0x08 8-byte connection id,
/// 0x30 packet-number length 1/2/4/6, 0x80 must be 0); connection id; version `Q` + 3 digits;
/// packet number. Then an unencrypted payload: 12-byte message hash (absent in later versions,
/// both tried), a STREAM frame (type `1fdooo ss`: fin, data-length present, offset length,
/// stream-id length) on stream 1 whose data starts with `CHLO`. All integers little-endian.
pub fn parse_gquic_client_hello(b: &[u8]) -> Option<GquicHello<'_>> {
    let flags = *b.first()?;
    if flags & 0x01 == 0 || flags & 0x82 != 0 {
        return None;
    }
    let cid_len = if flags & 0x08 != 0 { 8 } else { 0 };
    let v = b.get(1 + cid_len..5 + cid_len)?;
    if v[0] != b'Q' || !v[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let version: [u8; 4] = v.try_into().ok()?;
    let pn_len = [1usize, 2, 4, 6][usize::from((flags >> 4) & 0x03)];
    let after_pn = 5 + cid_len + pn_len;
    [12usize, 0]
        .iter()
        .find_map(|hash| parse_chlo_frame(b.get(after_pn + hash..)?, version))
}

/// A STREAM frame on stream 1 carrying a CHLO message.
fn parse_chlo_frame(b: &[u8], version: [u8; 4]) -> Option<GquicHello<'_>> {
    let ft = *b.first()?;
    if ft & 0x80 == 0 {
        return None;
    }
    let has_len = ft & 0x20 != 0;
    let off_bits = usize::from((ft >> 2) & 0x07);
    let off_len = if off_bits == 0 { 0 } else { off_bits + 1 };
    let sid_len = usize::from(ft & 0x03) + 1;
    let sid = b.get(1..1 + sid_len)?;
    if sid.first() != Some(&1) || sid.iter().skip(1).any(|&x| x != 0) {
        return None;
    }
    let mut at = 1 + sid_len + off_len;
    let data = if has_len {
        let len = usize::from(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?));
        at += 2;
        let rest = b.get(at..)?;
        rest.get(..len.min(rest.len()))?
    } else {
        b.get(at..)?
    };
    if data.get(..4)? != b"CHLO" {
        return None;
    }
    let tags = u16::from_le_bytes(data.get(4..6)?.try_into().ok()?);
    if tags == 0 || tags > 128 {
        return None;
    }
    let base = 8 + 8 * usize::from(tags);
    let mut prev_end = 0usize;
    let mut sni = None;
    for i in 0..usize::from(tags) {
        let e = data.get(8 + 8 * i..16 + 8 * i)?;
        let end = usize::try_from(u32::from_le_bytes(e.get(4..8)?.try_into().ok()?)).ok()?;
        if end < prev_end {
            return None;
        }
        if e.get(..4)? == b"SNI\0" {
            sni = data.get(base + prev_end..base + end);
        }
        prev_end = end;
    }
    Some(GquicHello { version, tags, sni })
}

/// Per-flow state.
#[derive(Debug, Default, Clone)]
struct State {
    crypto: CryptoStream,
    /// DCID of the client's first Initial (keys derive from it).
    first_dcid: Option<([u8; 20], usize)>,
    version: u32,
    opened: u8,
    dcid_len: usize,
    /// A client Initial a snap length cut (so it cannot be opened): its version and Source
    /// Connection ID, which the server's packets carry back as their Destination (RFC 9000
    /// §7.2).
    cut_initial: Option<([u8; 20], usize)>,
}

impl State {
    fn ietf_verdict(&self) -> Verdict {
        let mut v = Verdict::new(Confidence::OneMessage)
            .fact("version", qf::version_name(self.version))
            .fact("initial_packets", self.opened)
            .fact("dcid_len", self.dcid_len);
        let hello = self
            .crypto
            .first_message()
            .and_then(|m| tls::parse_client_hello(m.get(4..)?));
        if let Some(ch) = &hello {
            if let Some(sni) = &ch.sni {
                v = v.fact("sni", sni.as_str());
            }
            if let Some(alpn) = ch.first_alpn() {
                v = v.fact("alpn", alpn);
            }
        }
        let mut v = v.named_by_sni(hello.as_ref().and_then(|h| h.sni.as_deref()));
        // An ALPN id only one product offers (Hysteria 1.x's default "hysteria", see
        // `intel::alpn`) names the app over QUIC; Hysteria is a proxy.
        if let Some(rule) = hello
            .as_ref()
            .and_then(|h| crate::intel::alpn::lookup_alpn(&h.alpn))
        {
            v.application = Some(rule.application);
            v.family = Some(Family::Proxy);
            v.evidence.push("intel", "alpn");
        }
        v
    }

    fn observe_ietf(&mut self, bytes: &[u8]) -> Option<Step> {
        let mut buf = [0u8; MAX_DATAGRAM];
        let stored = self.first_dcid;
        let keys_dcid = stored.as_ref().and_then(|(d, n)| d.get(..*n));
        let opened = qf::open_client_initial(bytes, keys_dcid, &mut buf)
            .or_else(|| qf::open_client_initial(bytes, None, &mut buf))?;
        if self.first_dcid.is_none() {
            let h = qf::parse_initial_header(bytes)?;
            let mut d = [0u8; 20];
            d.get_mut(..h.dcid.len())?.copy_from_slice(h.dcid);
            self.first_dcid = Some((d, h.dcid.len()));
            self.dcid_len = h.dcid.len();
            self.version = opened.version;
        }
        self.opened = self.opened.saturating_add(1);
        let crypto = &mut self.crypto;
        let ok =
            qf::for_each_crypto_frame(buf.get(..opened.len)?, |off, data| crypto.insert(off, data));
        if !ok {
            return Some(Step::NotThis);
        }
        if self.crypto.first_message().is_some() || self.crypto.is_full() {
            return Some(Step::Match(self.ietf_verdict()));
        }
        Some(Step::NeedMore)
    }
}

impl State {
    /// A datagram of a flow whose client Initial was cut by a snap length: a server packet
    /// of the same version addressed to the client's Source Connection ID answers it.
    fn observe_cut(&mut self, p: &Payload<'_>) -> Option<Step> {
        if p.direction == Direction::ToServer {
            if self.cut_initial.is_some() {
                // The rest of the client's flight is cut alike: nothing more to open.
                return Some(Step::NeedMore);
            }
            if p.is_whole() || self.opened > 0 {
                return None;
            }
            let h = qf::parse_cut_client_initial(p.bytes, p.wire_len())?;
            let mut scid = [0u8; 20];
            scid.get_mut(..h.scid.len())?.copy_from_slice(h.scid);
            self.cut_initial = Some((scid, h.scid.len()));
            self.dcid_len = h.dcid.len();
            self.version = h.version;
            return Some(Step::NeedMore);
        }
        let (scid, scid_len) = self.cut_initial?;
        let answered = qf::long_header_ids(p.bytes)
            .is_some_and(|(v, dcid, _)| v == self.version && Some(dcid) == scid.get(..scid_len));
        // Anything else from the server (a Version Negotiation, a short-header packet) leaves
        // the client's Initial as the evidence.
        Some(if answered {
            Step::Match(self.cut_verdict(Confidence::BothDirections))
        } else {
            Step::NeedMore
        })
    }

    fn cut_verdict(&self, confidence: Confidence) -> Verdict {
        Verdict::new(confidence)
            .fact("version", qf::version_name(self.version))
            .fact("dcid_len", self.dcid_len)
            .fact("initial_cut_by_snaplen", true)
    }
}

impl Fingerprinter for State {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        if let Some(step) = self.observe_cut(p) {
            return step;
        }
        if p.direction != Direction::ToServer {
            return if self.opened > 0 || p.nth < 4 {
                Step::NeedMore
            } else {
                Step::NotThis
            };
        }
        if let Some(step) = self.observe_ietf(p.bytes) {
            return step;
        }
        if self.opened == 0 {
            if let Some(h) = parse_gquic_client_hello(p.bytes) {
                let version = String::from_utf8_lossy(&h.version).into_owned();
                let sni = h
                    .sni
                    .filter(|s| !s.is_empty() && s.iter().all(u8::is_ascii_graphic));
                let sni = sni
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .map(str::to_ascii_lowercase);
                let mut v = Verdict::new(Confidence::OneMessage)
                    .fact("version", version)
                    .fact("chlo_tags", h.tags);
                if let Some(s) = &sni {
                    v = v.fact("sni", s.as_str());
                }
                return Step::Match(v.named_by_sni(sni.as_deref()));
            }
        }
        // A client datagram that is no Initial we can open: after a few, give up.
        if self.opened == 0 && p.nth_in_direction >= 2 {
            return Step::NotThis;
        }
        Step::NeedMore
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        if self.opened == 0 && self.cut_initial.is_some() {
            return Some(self.cut_verdict(Confidence::OneMessage));
        }
        (self.opened > 0).then(|| self.ietf_verdict())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Transport;
    use proptest::prelude::*;

    fn payload(direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes)
            .over(Transport::Udp)
            .nth(nth)
            .ports(50000, 443)
    }

    use crate::fingerprint::test_support::hex;

    /// youtube_quic.pcap, frame 1 (192.168.1.7:54997 -> 216.58.205.66:443): the first 561 bytes
    /// of the UDP payload (the datagram is 1350), up to the end of the CHLO's SNI value. gQUIC
    /// Q035, 29 tags, SNI pagead2.googlesyndication.com.
    fn youtube_frame1() -> Vec<u8> {
        hex("\
        0d9370e15e7c446d085130333501c4c7f61ab7c2b6949c7fc5f0a001000443484c4f1d0000005041440006010000534e\
        49002301000053544b005d010000564552006101000043435300710100004e4f4e43910100004d535043950100004145\
        41449901000055414944c801000053434944d801000054434944dc01000050444d44e001000053524246e4010000534d\
        484ce80100004943534cec0100004354494df40100004e4f4e501402000050554253340200004d494453380200005343\
        4c533c0200004b45585340020000584c4354480200004353435448020000434f50544802000043435254600200004952\
        5454640200004345545608030000434643570c03000053464357100300002d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d\
        2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d\
        2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d\
        2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d\
        2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d\
        2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d\
        2d2d2d2d706167656164322e676f6f676c6573796e6469636174696f6e2e636f6d")
    }

    #[test]
    fn gquic_q035_chlo_from_capture() {
        let pkt = youtube_frame1();
        let h = parse_gquic_client_hello(&pkt).unwrap();
        assert_eq!(&h.version, b"Q035");
        assert_eq!(h.tags, 29);
        assert_eq!(h.sni, Some(&b"pagead2.googlesyndication.com"[..]));
        let mut s = State::default();
        match s.observe(&payload(Direction::ToServer, 0, &pkt)) {
            Step::Match(v) => {
                assert_eq!(
                    v.evidence.get("sni").map(|f| f.to_string()).as_deref(),
                    Some("pagead2.googlesyndication.com")
                );
                assert_eq!(
                    v.evidence.get("version").map(|f| f.to_string()).as_deref(),
                    Some("Q035")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// A client Initial built with the RFC 9001 Appendix A keys, split over two packets with
    /// the CRYPTO frames out of order.
    #[test]
    fn ietf_initial_split_and_reordered() {
        let ch = qf::tests_support::client_hello("www.example.com", "h3");
        let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
        let (a, b) = ch.split_at(50);
        let f2 = qf::tests_support::crypto_frame(50, b);
        let f1 = qf::tests_support::crypto_frame(0, a);
        let p1 = qf::tests_support::protect_client_initial(qf::VERSION_1, &dcid, 0, &f2);
        let p2 = qf::tests_support::protect_client_initial(qf::VERSION_1, &dcid, 1, &f1);
        let mut s = State::default();
        assert_eq!(
            s.observe(&payload(Direction::ToServer, 0, &p1)),
            Step::NeedMore
        );
        match s.observe(&payload(Direction::ToServer, 1, &p2)) {
            Step::Match(v) => {
                assert_eq!(
                    v.evidence.get("sni").map(|f| f.to_string()).as_deref(),
                    Some("www.example.com")
                );
                assert_eq!(
                    v.evidence.get("alpn").map(|f| f.to_string()).as_deref(),
                    Some("h3")
                );
                assert_eq!(
                    v.evidence.get("version").map(|f| f.to_string()).as_deref(),
                    Some("1")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// A client Initial sealed by the synth QUIC builder (RFC 9001 §5 keys, ClientHello with
    /// GREASE, transport parameters and random extension order), as a Hysteria 1.x client
    /// with the default ALPN "hysteria" sends it; QUIC v1 and v2 headers, ALPN alone or after h3.
    fn synth_initial(
        seed: u64,
        version: crate::synth::proto::quic::Version,
        alpn: &[&str],
    ) -> Vec<u8> {
        use crate::synth::proto::quic::Conn;
        let mut rng = crate::synth::rng::Rng::new(seed);
        let conn = Conn::new(&mut rng, version);
        conn.client_initial(&mut rng, "proxy.example.net", alpn, 1252)
            .unwrap()
    }

    fn first_verdict(pkt: &[u8]) -> Verdict {
        let mut s = State::default();
        match s.observe(&payload(Direction::ToServer, 0, pkt)) {
            Step::Match(v) => v,
            other => panic!("{other:?}"),
        }
    }

    /// A client Initial cut by a snap length cannot be opened; its header, version and
    /// padded size still say QUIC, and a server packet addressed to the client's Source
    /// Connection ID makes it both ways. A short datagram, or an Initial kept whole, is not
    /// read this way.
    #[test]
    fn initials_cut_by_a_snap_length() {
        use crate::synth::proto::quic::Version;
        let pkt = synth_initial(7, Version::V1, &["h3"]);
        let (version, dcid, scid) = qf::long_header_ids(&pkt).unwrap();
        assert!(dcid.len() >= 8);
        let kept = 70;
        let cut = |b: &[u8]| (b.len() - kept) as u16;
        let mut s = State::default();
        let first = payload(Direction::ToServer, 0, &pkt[..kept]).cut(cut(&pkt));
        assert_eq!(s.observe(&first), Step::NeedMore);
        let again = payload(Direction::ToServer, 1, &pkt[..kept]).cut(cut(&pkt));
        assert_eq!(s.observe(&again), Step::NeedMore);
        let mut server = vec![0xc0, 0, 0, 0, 0];
        server[1..5].copy_from_slice(&version.to_be_bytes());
        server.push(scid.len() as u8);
        server.extend_from_slice(scid);
        server.push(8);
        server.extend_from_slice(&[9; 8]);
        server.resize(60, 0xaa);
        match s.observe(&payload(Direction::ToClient, 0, &server).cut(1100)) {
            Step::Match(v) => {
                assert_eq!(v.confidence, Confidence::BothDirections);
                assert_eq!(v.evidence.get("initial_cut_by_snaplen"), Some(&true.into()));
            }
            other => panic!("{other:?}"),
        }
        // Below the 1200 bytes a client Initial is padded to, it is no Initial.
        assert!(qf::parse_cut_client_initial(&pkt[..kept], 1199).is_none());
        assert!(qf::parse_cut_client_initial(&pkt[..kept], pkt.len()).is_some());
        // The header must be kept as far as the Length field.
        assert!(qf::parse_cut_client_initial(&pkt[..12], pkt.len()).is_none());
        // Only the client's Initial: one message at the flow's end.
        let mut s = State::default();
        s.observe(&first);
        let v = s
            .conclude(&FlowContext::test(Transport::Udp, 50000, 443))
            .unwrap();
        assert_eq!(v.confidence, Confidence::OneMessage);
    }

    #[test]
    fn hysteria_default_alpn_names_the_application() {
        use crate::synth::proto::quic::Version;
        for (seed, version, alpn) in [
            (1, Version::V1, &["hysteria"][..]),
            (2, Version::V2, &["hysteria"][..]),
            (3, Version::V1, &["h3", "hysteria"][..]),
        ] {
            let v = first_verdict(&synth_initial(seed, version, alpn));
            assert_eq!(v.application, Some("hysteria"), "{alpn:?}");
            assert_eq!(v.family, Some(Family::Proxy));
            assert_eq!(
                v.evidence.get("intel").map(|f| f.to_string()).as_deref(),
                Some("alpn")
            );
            assert_eq!(
                v.evidence.get("sni").map(|f| f.to_string()).as_deref(),
                Some("proxy.example.net")
            );
        }
        // The same through the driver's merge: protocol quic, application hysteria, proxy.
        let pkt = synth_initial(4, Version::V1, &["hysteria"]);
        let m = crate::fingerprint::driver::Match {
            spec: &SPEC,
            verdict: first_verdict(&pkt),
        };
        let label = crate::fingerprint::Label::merge(vec![m]);
        assert_eq!(label.protocol, "quic");
        assert_eq!(label.application, Some("hysteria"));
        assert_eq!(label.family, Family::Proxy);
    }

    #[test]
    fn http3_and_hysteria2_defaults_name_no_application() {
        use crate::synth::proto::quic::Version;
        // Ordinary HTTP/3 (and Hysteria 2, whose default ALPN is h3: not distinguishable from
        // the Initial), old draft ids, DoQ, and a lookalike id.
        for (seed, alpn) in [
            (10, &["h3"][..]),
            (11, &["h3-29", "h3"][..]),
            (12, &["doq"][..]),
            (13, &["hysteria2"][..]),
        ] {
            let v = first_verdict(&synth_initial(seed, Version::V1, alpn));
            assert_eq!(v.application, None, "{alpn:?}");
            assert_eq!(v.family, None, "{alpn:?}");
            assert!(v.evidence.get("intel").is_none());
        }
    }

    #[test]
    fn near_misses_are_not_quic() {
        // A DNS query, a STUN binding request, a DTLS ClientHello header, random bytes.
        let dns = hex("abcd01000001000000000000076578616d706c6503636f6d0000010001");
        let stun = hex("000100002112a442000102030405060708090a0b");
        let dtls = hex("16fefd000000000000000000560100004a000000000000004a");
        let rand: Vec<u8> = (0..1200u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0xc0)
            .collect();
        for bytes in [&dns, &stun, &dtls, &rand] {
            let mut s = State::default();
            let mut last = Step::NeedMore;
            for i in 0..3 {
                last = s.observe(&payload(Direction::ToServer, i, bytes));
                if last != Step::NeedMore {
                    break;
                }
            }
            assert_eq!(last, Step::NotThis);
        }
        // A long header claiming v1 with garbage payload does not open.
        let mut fake = vec![
            0xc3, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x44, 0x9e,
        ];
        fake.resize(1200, 0x55);
        let mut s = State::default();
        assert!(!matches!(
            s.observe(&payload(Direction::ToServer, 0, &fake)),
            Step::Match(_)
        ));
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(pkts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1300), 0..12)) {
            let mut s = State::default();
            let mut offered = [0u8; 2];
            for (i, b) in pkts.iter().enumerate() {
                let dir = if i % 3 == 2 { Direction::ToClient } else { Direction::ToServer };
                if offered[dir.index()] >= SPEC.payload_budget { continue; }
                offered[dir.index()] += 1;
                match s.observe(&payload(dir, offered[dir.index()] - 1, b)) {
                    Step::NeedMore => {}
                    _ => break,
                }
            }
            let _ = parse_gquic_client_hello(pkts.first().map(Vec::as_slice).unwrap_or(&[]));
        }
    }
}
