//! TLS over TCP (RFC 8446, RFC 5246): the generic carrier. Recognised from the record layer
//! (content type 20-23, version 0x0300-0x0304, RFC 8446 §5.1) and a ClientHello that parses
//! (§4.1.2); the ServerHello and, for TLS <= 1.2, the server's plaintext Certificate
//! (RFC 5246 §7.4.2) add the negotiated version and the certificate names.
//!
//! Evidence: `sni`, `alpn` (first offered), `version` (negotiated, else highest offered), `ja4`,
//! certificate subject CN / O when visible. When the SNI, a certificate name or the
//! certificate's organization matches a rule in [`crate::intel`], the verdict names the
//! application / provider and the family becomes VPN.

use crate::fingerprint::facts::tls::handshake_type::{CLIENT_HELLO, SERVER_HELLO};
use crate::fingerprint::facts::tls::{
    self as tlsfacts, ClientHelloFacts, HandshakeStatus, Ja4Transport, TlsHandshakeTracker,
};
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};
use crate::flow::Direction;
use crate::intel;

pub static SPEC: Spec = Spec {
    name: "tls",
    family: Family::Web,
    transports: Transports::TCP,
    payload_budget: 8,
    rank: rank::CARRIER,
    start: || Box::new(TlsState::default()),
    open: Some(crate::fingerprint::open_default::<TlsState>),
};

/// Human version name of a TLS protocol version number (`tls1.2`, ...).
pub fn version_name(v: u16) -> &'static str {
    match v {
        0x0300 => "ssl3.0",
        0x0301 => "tls1.0",
        0x0302 => "tls1.1",
        0x0303 => "tls1.2",
        0x0304 => "tls1.3",
        _ => "unknown",
    }
}

/// What intel says about a handshake: the first rule matched by the SNI, then by a server
/// certificate name (subject CN, SAN dNSName), then by the certificate subject organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntelHit {
    pub application: Option<&'static str>,
    pub provider: Option<&'static str>,
    /// Family the name gives the flow (`vpn`, or `tor` for Tor's transports).
    pub family: Family,
    /// `sni`, `cert_name` or `cert_org`.
    pub via: &'static str,
}

/// Looks the handshake's names up in [`intel`].
pub fn intel_for(tracker: &TlsHandshakeTracker) -> Option<IntelHit> {
    let hit = |r: &intel::NameRule, via| IntelHit {
        application: r.application,
        provider: r.provider,
        family: r.family,
        via,
    };
    if let Some(rule) = tracker
        .client_hello
        .as_ref()
        .and_then(|ch| ch.sni.as_deref())
        .and_then(intel::lookup_name)
    {
        return Some(hit(rule, "sni"));
    }
    let cert = tracker.server_certificate.as_ref()?;
    if let Some(rule) = cert.names().find_map(intel::lookup_name) {
        return Some(hit(rule, "cert_name"));
    }
    intel::lookup_organization(&cert.subject_o, &cert.subject_ou).map(|r| IntelHit {
        application: r.application,
        provider: r.provider,
        family: Family::Vpn,
        via: "cert_org",
    })
}

/// Per-flow state: both directions' handshake bytes.
#[derive(Debug, Default, Clone)]
pub struct TlsState {
    tracker: TlsHandshakeTracker,
    /// The client's first payload was cut by a snap length and begins a ClientHello
    /// ([`hello_prefix`]); the handshake is then judged from the hello headers alone.
    cut_client_hello: bool,
    /// The server name of a cut ClientHello, when its extension was among the kept bytes.
    cut_sni: Option<String>,
}

/// Fewest bytes of a hello judged from its start: record header (5), handshake header (4),
/// legacy_version (2).
const HELLO_PREFIX_MIN: usize = 11;

/// True when `b` begins a handshake record holding a hello of type `hello` (RFC 8446 §4.1.2,
/// §4.1.3, §5.1): a record header the record layer accepts
/// ([`crate::fingerprint::facts::tls::parse_record_header`]) of content type 22, the handshake
/// type, a handshake length that can hold legacy_version, random and the
/// session id length (35 bytes), legacy_version 0x0300-0x0303, and where kept, a session id of
/// at most 32 bytes. For payloads a snap length cut before the names and extensions.
pub fn hello_prefix(b: &[u8], hello: u8) -> bool {
    let record_ok = tlsfacts::parse_record_header(b)
        .is_some_and(|h| h.content_type == tlsfacts::content_type::HANDSHAKE);
    let Some(&[ty, h0, h1, h2, 3, minor]) = b.get(5..HELLO_PREFIX_MIN) else {
        return false;
    };
    let handshake_len = u32::from_be_bytes([0, h0, h1, h2]);
    let session_id_ok = b.get(43).is_none_or(|&len| len <= 32);
    record_ok && ty == hello && handshake_len >= 35 && minor <= 3 && session_id_ok
}

impl TlsState {
    fn verdict(&self) -> Option<Verdict> {
        let ch: &ClientHelloFacts = self.tracker.client_hello.as_ref()?;
        let sh = self.tracker.server_hello.as_ref();
        let confidence = if sh.is_some() {
            Confidence::BothDirections
        } else {
            Confidence::OneMessage
        };
        let mut v = Verdict::new(confidence);
        v.roles_reversed = self.tracker.roles_reversed();
        if let Some(sni) = &ch.sni {
            v.evidence.push("sni", sni.as_str());
        }
        if let Some(alpn) = ch.first_alpn() {
            v.evidence.push("alpn", alpn);
        }
        let version = sh.map(|s| s.version()).unwrap_or_else(|| ch.max_version());
        v.evidence.push("version", version_name(version));
        v.evidence.push("ja4", ch.ja4(Ja4Transport::Tcp));
        if ch.has_ech() {
            v.evidence.push("ech", true);
        }
        if let Some(cert) = &self.tracker.server_certificate {
            if let Some(cn) = cert.subject_cn.first() {
                v.evidence.push("cert_cn", cn.as_str());
            }
            if let Some(o) = cert.subject_o.first() {
                v.evidence.push("cert_o", o.as_str());
            }
            if let Some(o) = cert.issuer_o.first() {
                v.evidence.push("cert_issuer_o", o.as_str());
            }
        }
        if let Some(hit) = intel_for(&self.tracker) {
            v.application = hit.application;
            v.provider = hit.provider;
            v.family = Some(hit.family);
            v.evidence.push("intel", hit.via);
        }
        Some(v)
    }
}

impl TlsState {
    /// A handshake whose ClientHello a snap length cut: the record and hello headers are all
    /// there is to go by (no names, no JA4). A ServerHello answering it makes it both ways.
    fn observe_cut(&mut self, p: &Payload<'_>) -> Step {
        if !self.cut_client_hello {
            if p.direction != Direction::ToServer || !hello_prefix(p.bytes, CLIENT_HELLO) {
                return Step::NotThis;
            }
            self.cut_client_hello = true;
            // After the record header (5 bytes) and the handshake header (4).
            self.cut_sni = p.bytes.get(9..).and_then(tlsfacts::client_hello_sni_prefix);
            return Step::NeedMore;
        }
        if p.direction == Direction::ToServer {
            return Step::NeedMore;
        }
        if hello_prefix(p.bytes, SERVER_HELLO) {
            Step::Match(self.cut_verdict(Confidence::BothDirections))
        } else {
            Step::NotThis
        }
    }

    /// The verdict on a cut handshake: the server name when it was kept (and the app or
    /// provider it names, as for a whole ClientHello).
    fn cut_verdict(&self, confidence: Confidence) -> Verdict {
        let mut v = Verdict::new(confidence);
        if let Some(sni) = &self.cut_sni {
            v.evidence.push("sni", sni.as_str());
        }
        v.named_by_sni(self.cut_sni.as_deref())
            .fact("hello_cut_by_snaplen", true)
    }
}

impl Fingerprinter for TlsState {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        let first_from_client = p.direction == Direction::ToServer && p.nth_in_direction == 0;
        if self.cut_client_hello || (first_from_client && !p.is_whole()) {
            return self.observe_cut(p);
        }
        match self.tracker.push(p.direction.index(), p.bytes) {
            HandshakeStatus::NotTls => match self.verdict() {
                Some(v) => Step::Match(v),
                None => Step::NotThis,
            },
            HandshakeStatus::NeedMore => Step::NeedMore,
            HandshakeStatus::Complete => self.verdict().map_or(Step::NotThis, Step::Match),
        }
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        if self.cut_client_hello {
            return Some(self.cut_verdict(Confidence::OneMessage));
        }
        self.verdict()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::flow::{Direction, Transport};
    use proptest::prelude::*;

    pub(crate) fn payload(direction: Direction, nth: u8, bytes: &[u8]) -> Payload<'_> {
        Payload::test(direction, bytes).nth(nth).ports(50000, 443)
    }

    use crate::fingerprint::test_support::hex;

    /// Runs a detector over `(direction, bytes)` payloads within the spec budget, then concludes.
    pub(crate) fn run(spec: &Spec, payloads: &[(Direction, Vec<u8>)]) -> Option<Verdict> {
        let mut d = (spec.start)();
        let mut offered = [0u8; 2];
        for (dir, bytes) in payloads {
            let i = dir.index();
            if offered[i] >= spec.payload_budget {
                continue;
            }
            let p = payload(*dir, offered[i], bytes);
            offered[i] += 1;
            match d.observe(&p) {
                Step::NeedMore => {}
                Step::NotThis => return None,
                Step::Match(v) => return Some(v),
            }
        }
        d.conclude(&FlowContext::test(Transport::Tcp, 50000, 443))
    }

    /// opera-vpn.pcapng, frame 29: ClientHello to an Opera browser-VPN proxy, SNI
    /// eu0.sec-tunnel.com (TCP payload).
    pub(crate) const OPERA_CLIENT_HELLO: &str = concat!(
        "1603010200010001fc0303834d0fb1d0008d3ce1eda0a6a2e32099436d2edab0df528110c28814c1d9e731207cc84604",
        "d6a02d6db48625589792fb1be986794b6063692bcfe49ee7d550e63200202a2a130113021303c02bc02fc02cc030cca9",
        "cca8c013c014009c009d002f003501000193eaea0000001200004469000500030268320033002b00295a5a000100001d",
        "00202f774f76d90698836b443122b0afa5cc8accce1c492b372fff3267d9786920670010000e000c0268320868747470",
        "2f312e31002b0007060a0a03040303000d0012001004030804040105030805050108060601000500050100000000000b",
        "00020100002d00020101001700000000001700150000126575302e7365632d74756e6e656c2e636f6d00230000001b00",
        "03020002ff01000100000a000a00085a5a001d001700182a2a000100001500c500000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000",    );
    /// windscribe.pcapng, frame 6: ServerHello + self-signed Certificate (O=Windscribe) +
    /// ServerHelloDone (TCP payload).
    pub(crate) const WINDSCRIBE_SERVER_FLIGHT: &str = concat!(
        "1603030034020000300303c78b9543d1cf06759fef47759e2a18972931a3834f3e0b05444f574e4752440100009c0000",
        "08002300000017000016030303c50b0003c10003be0003bb308203b73082029fa003020102020900f3052e639ed8b6cb",
        "300d06092a864886f70d01010b05003072310b3009060355040613025553310b300906035504080c0243413116301406",
        "035504070c0d53616e204672616e636973636f31133011060355040a0c0a57696e647363726962653111300f06035504",
        "0b0c08495420446570742e3116301406035504030c0d35342e3135332e39302e323330301e170d313530323234303032",
        "3635395a170d3331303733303030323635395a3072310b3009060355040613025553310b300906035504080c02434131",
        "16301406035504070c0d53616e204672616e636973636f31133011060355040a0c0a57696e647363726962653111300f",
        "060355040b0c08495420446570742e3116301406035504030c0d35342e3135332e39302e32333030820122300d06092a",
        "864886f70d01010105000382010f003082010a0282010100a9be392cfbbffbf2903d82235cd502c952b618464bd2edc1",
        "127e694063d2326fece4592f88b78b56208314f30ca25450fa3f1ea2bababe7a5b062988bfe1b23907f9ca2d57b9af51",
        "e4527844f415d866b103fa7b10260335822ab8266f61918bc342d1aaccc50756ddb9dd7deedcc89b368256ec8e71ca56",
        "326740eee459167a337870f731075ac5d5dc1170382ac6d9d49d4aaa1430499b42a7f5d6d4b17342f6dcfe6af50aad78",
        "236215d969b7638040e7299300a3315acf09feda10319293fe3c1c039071e34b2550592c4e2164a3dc3ab46d604fade7",
        "ae0cfc0a4e4c5a37ce0ee448aaee4d103335b67b46483d0e9604df7f9637f1ff139453586f784dd30203010001a35030",
        "4e301d0603551d0e0416041429627fd9ecbfb35d76d656b5d96e27330d68ad5c301f0603551d2304183016801429627f",
        "d9ecbfb35d76d656b5d96e27330d68ad5c300c0603551d13040530030101ff300d06092a864886f70d01010b05000382",
        "0101005f3d02b550d5ed570f0cfb987e7f812cde086725234278a0f984f3e3d69754b7fc1ecf1ee6f8a12f536fbe65eb",
        "e9ed5b2c579efb7bc5370a1176aa9d9b9248ebf452c7a52178bff10e286176d86f77e13875b2d2abf090fc01db717848",
        "e6fb8b3fa7934090762a74a18d2cd65e2be118fc92c1c1fe175f1dd93155e84f09daa838442e280a2d89f7c4cad99537",
        "e31e19aaa9b990278efeb5859cc96e7f6a7103e8f9491b9830cfd22c8ceab64c6b505eb93b656d67ceb3d863bebac659",
        "f58844d10b183ef1f4ec5383b6ae0a080f2333d7f24e7434aea22be8bd88045cfcf88398c5b9af70dcdfaedcb45edc19",
        "49cb56b40be6b2228fb817a8846653e5d6ddca16030300040e000000",    );
    /// windscribe.pcapng, frame 4: the ClientHello (no SNI).
    pub(crate) const WINDSCRIBE_CLIENT_HELLO: &str = concat!(
        "16030100b1010000ad0303eb0e127e281134dea1e7239e2b8001ea8f7f6aebe6ec75c488f6183d36ed9cdb20b9a53ee5",
        "ede544833933991598e90fcaebbd7c857dd2648359ab18c5f7045e8b0024cca9009c003cc030c02f009dc027c02bc02c",
        "c023c00ac0130005c007002fc0090035c011010000400010000e000c02683208687474702f312e31000d0010000e0201",
        "04030401050306010203050100170000000a00080006001d0017001800230000000b00020100",    );

    /// A snap length that cut the ClientHello (62 bytes kept: 128 minus Ethernet, IPv4 and a
    /// TCP header with timestamps) leaves the record and hello headers: still TLS, both ways
    /// with the ServerHello's headers, without names. Other bytes cut alike are not TLS.
    #[test]
    fn hellos_cut_by_a_snap_length() {
        let ch = hex(OPERA_CLIENT_HELLO);
        let sh = hex(WINDSCRIBE_SERVER_FLIGHT);
        assert!(hello_prefix(&ch, CLIENT_HELLO) && hello_prefix(&sh, SERVER_HELLO));
        assert!(!hello_prefix(&ch, SERVER_HELLO) && !hello_prefix(&sh, CLIENT_HELLO));
        let mut s = TlsState::default();
        fn cut(d: Direction, b: &[u8]) -> Payload<'_> {
            payload(d, 0, &b[..62]).cut((b.len() - 62) as u16)
        }
        assert_eq!(s.observe(&cut(Direction::ToServer, &ch)), Step::NeedMore);
        match s.observe(&cut(Direction::ToClient, &sh)) {
            Step::Match(v) => {
                assert_eq!(v.confidence, Confidence::BothDirections);
                assert_eq!(v.evidence.get("hello_cut_by_snaplen"), Some(&true.into()));
                assert_eq!(v.evidence.get("sni"), None);
            }
            other => panic!("{other:?}"),
        }
        // Only the ClientHello seen: one message.
        let mut s = TlsState::default();
        assert_eq!(s.observe(&cut(Direction::ToServer, &ch)), Step::NeedMore);
        let v = s
            .conclude(&FlowContext::test(Transport::Tcp, 50000, 443))
            .unwrap();
        assert_eq!(v.confidence, Confidence::OneMessage);
        // Not a hello, or a record too long for TLS.
        let mut http = b"GET / HTTP/1.1\r\nHost: example.com\r\n".to_vec();
        http.resize(62, b'a');
        let mut s = TlsState::default();
        assert_eq!(
            s.observe(&payload(Direction::ToServer, 0, &http).cut(500)),
            Step::NotThis
        );
        let mut long = ch.clone();
        long[3..5]
            .copy_from_slice(&(crate::fingerprint::facts::tls::MAX_RECORD_LEN + 1).to_be_bytes());
        assert!(!hello_prefix(&long, CLIENT_HELLO));
        let mut no_session = ch.clone();
        no_session[43] = 33;
        assert!(!hello_prefix(&no_session, CLIENT_HELLO));
    }

    /// A ClientHello cut after its server_name extension still names the server (and the
    /// provider it belongs to); cut inside the extension, it names nothing.
    #[test]
    fn a_cut_client_hello_keeps_a_server_name_it_holds() {
        let ch = hex(OPERA_CLIENT_HELLO);
        let name = b"eu0.sec-tunnel.com";
        let end = ch.windows(name.len()).position(|w| w == name).unwrap() + name.len();
        for (kept, sni) in [(end, Some("eu0.sec-tunnel.com")), (end - 1, None)] {
            let mut s = TlsState::default();
            let p = payload(Direction::ToServer, 0, &ch[..kept]).cut((ch.len() - kept) as u16);
            assert_eq!(s.observe(&p), Step::NeedMore);
            let v = s
                .conclude(&FlowContext::test(Transport::Tcp, 50000, 443))
                .unwrap();
            assert_eq!(
                v.evidence.get("sni").map(|f| f.to_string()).as_deref(),
                sni,
                "kept {kept}"
            );
            assert_eq!(v.provider, sni.map(|_| "opera"));
        }
        // Whole, the prefix reading finds the same name as the full parse.
        assert_eq!(
            crate::fingerprint::facts::tls::client_hello_sni_prefix(&ch[9..]).as_deref(),
            Some("eu0.sec-tunnel.com")
        );
    }

    #[test]
    fn opera_sni_names_the_provider() {
        let v = run(&SPEC, &[(Direction::ToServer, hex(OPERA_CLIENT_HELLO))]).expect("tls");
        assert_eq!(v.provider, Some("opera"));
        assert_eq!(v.family, Some(Family::Vpn));
        assert_eq!(
            v.evidence.get("sni").map(|f| f.to_string()).as_deref(),
            Some("eu0.sec-tunnel.com")
        );
        assert_eq!(
            v.evidence.get("alpn").map(|f| f.to_string()).as_deref(),
            Some("h2")
        );
        assert_eq!(v.confidence, Confidence::OneMessage);
    }

    #[test]
    fn windscribe_certificate_organization_names_the_provider() {
        let ch = hex(WINDSCRIBE_CLIENT_HELLO);
        let flight = hex(WINDSCRIBE_SERVER_FLIGHT);
        // the server flight split over three segments, as TCP may deliver it
        let (a, rest) = flight.split_at(100);
        let (b, c) = rest.split_at(rest.len() / 2);
        let v = run(
            &SPEC,
            &[
                (Direction::ToServer, ch),
                (Direction::ToClient, a.to_vec()),
                (Direction::ToClient, b.to_vec()),
                (Direction::ToClient, c.to_vec()),
            ],
        )
        .expect("tls");
        assert_eq!(v.provider, Some("windscribe"));
        assert_eq!(v.confidence, Confidence::BothDirections);
        assert!(v.evidence.get("sni").is_none());
        assert_eq!(
            v.evidence.get("cert_o").map(|f| f.to_string()).as_deref(),
            Some("Windscribe")
        );
        assert_eq!(
            v.evidence.get("intel").map(|f| f.to_string()).as_deref(),
            Some("cert_org")
        );
    }

    #[test]
    fn windscribe_certificate_names() {
        use crate::fingerprint::facts::tls::{
            parse_certificate, parse_certificate_list, TlsRecordBuffer,
        };
        let mut buf = TlsRecordBuffer::new();
        buf.push(&hex(WINDSCRIBE_SERVER_FLIGHT)).unwrap();
        let body = buf.find_handshake(11).expect("Certificate message");
        let list = parse_certificate_list(body).expect("list");
        assert_eq!(list.len(), 1);
        let cert = parse_certificate(list[0]).expect("X.509");
        assert_eq!(cert.subject_o, vec!["Windscribe".to_string()]);
        assert_eq!(cert.subject_ou, vec!["IT Dept.".to_string()]);
        assert_eq!(cert.subject_cn, vec!["54.153.90.230".to_string()]);
        assert!(cert.self_issued);
        assert!(cert.san_dns.is_empty());
    }

    #[test]
    fn ordinary_clienthello_is_plain_tls() {
        let body = crate::fingerprint::facts::tls::tests::client_hello(&[0x1301, 0x1302], &[]);
        let mut rec = vec![
            22,
            3,
            1,
            0,
            (body.len() + 4) as u8,
            1,
            0,
            0,
            body.len() as u8,
        ];
        rec.extend_from_slice(&body);
        let v = run(&SPEC, &[(Direction::ToServer, rec)]).expect("tls");
        assert!(v.application.is_none() && v.provider.is_none() && v.family.is_none());
    }

    /// Snowflake's rendezvous broker and bridge relay names (see `intel::NAME_RULES`) name the
    /// app; the domain fronts, AMP cache and SQS endpoints Snowflake clients put in DNS/SNI are
    /// ordinary sites and name nothing, nor do the Tor Project's own web sites or public STUN.
    #[test]
    fn snowflake_broker_names_the_app_and_its_fronts_do_not() {
        use crate::synth::proto::tls::{client_hello, Profile};
        let mut rng = crate::synth::rng::Rng::new(7);
        let mut app_for = |sni: &str| {
            let (rec, _) = client_hello(&mut rng, Some(sni), &["http/1.1"], Profile::Library);
            run(&SPEC, &[(Direction::ToServer, rec)]).map(|v| (v.application, v.family))
        };
        for sni in [
            "snowflake-broker.torproject.net",
            "snowflake-broker.freehaven.net",
            "snowflake-broker.bamsoftware.com",
            "snowflake.torproject.net",
            "snowflake-broker.torproject.net.global.prod.fastly.net",
            "1098762253.rsc.cdn77.org",
            "snowflake-broker.azureedge.net",
        ] {
            assert_eq!(
                app_for(sni),
                Some((Some("snowflake"), Some(Family::Tor))),
                "{sni}"
            );
        }
        for sni in [
            "www.cdn77.com",
            "app.datapacket.com",
            "www.phpmyadmin.net",
            "github.githubassets.com",
            "cdn.sstatic.net",
            "foursquare.com",
            "ajax.aspnetcdn.com",
            "www.google.com",
            "cdn.ampproject.org",
            "sqs.us-east-1.amazonaws.com",
            "global.prod.fastly.net",
            "rsc.cdn77.org",
            "1098762254.rsc.cdn77.org",
            "torproject.org",
            "www.torproject.org",
            "snowflake.torproject.org",
            "bridges.torproject.org",
            "stun.l.google.com",
            "notsnowflake-broker.torproject.net",
        ] {
            assert_eq!(app_for(sni), Some((None, None)), "{sni}");
        }
    }

    #[test]
    fn near_misses_are_not_tls() {
        let cases: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec(),
            b"SSH-2.0-OpenSSH_8.9\r\n".to_vec(),
            vec![0x16, 0x03, 0x01, 0x00, 0x05, 2, 0, 0, 1, 0], // handshake record, not a ClientHello
            vec![0x17, 0x03, 0x03, 0x00, 0x10],                // application data first
            vec![0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10], // DTLS
            vec![0x05, 0x01, 0x00],                            // SOCKS5 greeting
        ];
        for c in cases {
            assert!(
                run(&SPEC, &[(Direction::ToServer, c.clone())]).is_none(),
                "{c:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(
            a in proptest::collection::vec(any::<u8>(), 0..600),
            b in proptest::collection::vec(any::<u8>(), 0..600),
            tls_prefix in any::<bool>(),
        ) {
            let mut first = if tls_prefix { vec![22, 3, 1, 2, 0, 1, 0, 1, 0xfc, 3, 3] } else { Vec::new() };
            first.extend_from_slice(&a);
            let payloads: Vec<(Direction, Vec<u8>)> = (0..20)
                .map(|i| if i % 2 == 0 { (Direction::ToServer, first.clone()) } else { (Direction::ToClient, b.clone()) })
                .collect();
            let _ = run(&SPEC, &payloads);
        }
    }
}
