//! Tor's link protocol over TLS (tor-spec.txt §2 "Connections", §2.1 "Picking TLS
//! ciphersuites", §3 "Cell Packet format").
//!
//! Tor relays do not present web-PKI certificates. In the TLS handshake a relay sends a
//! short-lived link certificate whose subject is a random host name `www.<base32>.net`, signed
//! by its identity key whose certificate names a different random `www.<base32>.com`; the
//! subject and issuer carry nothing but that commonName, and the validity runs over whole days
//! (00:00:00 to 23:59:59). Clients send a random `www.<base32>.com` SNI and no ALPN. After the
//! handshake the link carries fixed-size cells: 512 bytes (link protocol <= 3) or 514 bytes
//! (v4+, 4-byte circuit ids).
//!
//! Verdicts:
//! - TLS <= 1.2: the server certificate has the shape above (subject CN only, `.net`; issuer CN
//!   only, `.com`; different names). With a Tor-shaped SNI as well: `BothDirections`, else
//!   `OneMessage`. An ordinary certificate never has an issuer that is a bare random `www`
//!   host name, which keeps this precise.
//! - TLS 1.3 (certificate encrypted): Tor-shaped SNI, no ALPN, and at least
//!   [`MIN_CELL_RECORDS`] application-data records whose length is whole 514-byte cells plus the
//!   AEAD overhead (1 content-type byte + 16-byte tag, RFC 8446 §5.2): `Statistical`.
//!
//! A user-supplied relay list (`Confidence::EndpointList`) can be added later through `intel`.

use crate::fingerprint::facts::tls::{CertificateFacts, HandshakeStatus, TlsHandshakeTracker};
use crate::fingerprint::{
    rank, Confidence, Family, Fingerprinter, FlowContext, Payload, Spec, Step, Transports, Verdict,
};

pub static SPEC: Spec = Spec {
    name: "tor",
    family: Family::Tor,
    transports: Transports::TCP,
    payload_budget: 12,
    rank: rank::SPECIFIC,
    start: || Box::new(TorState::default()),
    open: Some(crate::fingerprint::open_default::<TorState>),
};

/// Fixed cell size of link protocol v4 and later (tor-spec §3).
pub const CELL_LEN_V4: usize = 514;
/// TLS 1.3 record expansion of an AEAD record without padding: inner content type + tag.
const TLS13_OVERHEAD: usize = 17;
/// Records of whole cells needed for the TLS 1.3 verdict.
pub const MIN_CELL_RECORDS: usize = 3;

/// True for `www.<label>.<tld>` where the label is 4-32 characters of the lower-case base32
/// alphabet (`a-z`, `2-7`), the shape of Tor's random host names.
pub fn is_tor_host(name: &str, tld: &str) -> bool {
    let Some(rest) = name.strip_prefix("www.") else {
        return false;
    };
    let Some(label) = rest.strip_suffix(tld).and_then(|l| l.strip_suffix('.')) else {
        return false;
    };
    (4..=32).contains(&label.len())
        && label
            .bytes()
            .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c))
}

/// The link-certificate shape: subject is exactly one CN `www.<base32>.net`, issuer exactly one
/// CN `www.<base32>.com`, and the two differ.
pub fn is_tor_link_certificate(cert: &CertificateFacts) -> bool {
    fn one(v: &[String], attributes: usize) -> Option<&str> {
        if v.len() == 1 && attributes == 1 {
            v.first().map(String::as_str)
        } else {
            None
        }
    }
    let (Some(subject), Some(issuer)) = (
        one(&cert.subject_cn, cert.subject_attributes),
        one(&cert.issuer_cn, cert.issuer_attributes),
    ) else {
        return false;
    };
    is_tor_host(subject, "net")
        && is_tor_host(issuer, "com")
        && subject != issuer
        && cert.san_dns.is_empty()
}

/// Application-data records whose length is whole v4 cells plus TLS 1.3 AEAD overhead.
fn cell_records(lengths: &[u16]) -> usize {
    lengths
        .iter()
        .map(|&l| usize::from(l))
        .filter(|&l| l > TLS13_OVERHEAD && (l - TLS13_OVERHEAD) % CELL_LEN_V4 == 0)
        .count()
}

/// Per-flow state.
#[derive(Debug, Default, Clone)]
pub struct TorState {
    tracker: TlsHandshakeTracker,
}

impl TorState {
    fn tor_sni(&self) -> Option<&str> {
        let ch = self.tracker.client_hello.as_ref()?;
        ch.sni
            .as_deref()
            .filter(|s| is_tor_host(s, "com") && ch.alpn.is_empty())
    }

    fn certificate_verdict(&self) -> Option<Verdict> {
        let cert = self
            .tracker
            .server_certificate
            .as_ref()
            .filter(|c| is_tor_link_certificate(c))?;
        let sni = self.tor_sni();
        let mut v = Verdict::new(if sni.is_some() {
            Confidence::BothDirections
        } else {
            Confidence::OneMessage
        });
        v.roles_reversed = self.tracker.roles_reversed();
        if let Some(s) = sni {
            v.evidence.push("sni", s);
        }
        v.evidence.push(
            "cert_subject_cn",
            cert.subject_cn
                .first()
                .map(String::as_str)
                .unwrap_or_default(),
        );
        v.evidence.push(
            "cert_issuer_cn",
            cert.issuer_cn
                .first()
                .map(String::as_str)
                .unwrap_or_default(),
        );
        v.evidence
            .push("validity_whole_days", cert.validity_whole_days());
        if let Some(n) = self.tracker.chain_len {
            v.evidence.push("chain_len", n);
        }
        Some(v)
    }

    fn cell_verdict(&self) -> Option<Verdict> {
        let sni = self.tor_sni()?;
        let sh = self
            .tracker
            .server_hello
            .as_ref()
            .filter(|s| s.version() == 0x0304)?;
        let records: usize = [0, 1]
            .iter()
            .filter_map(|&d| self.tracker.buffer(d))
            .map(|b| cell_records(b.app_data_lengths()))
            .sum();
        if records < MIN_CELL_RECORDS {
            return None;
        }
        let mut v = Verdict::new(Confidence::Statistical)
            .fact("sni", sni)
            .fact("version", "tls1.3")
            .fact("cipher_suite", sh.cipher_suite)
            .fact("cell_records", records);
        v.roles_reversed = self.tracker.roles_reversed();
        Some(v)
    }
}

impl Fingerprinter for TorState {
    fn observe(&mut self, p: &Payload<'_>) -> Step {
        match self.tracker.push(p.direction.index(), p.bytes) {
            HandshakeStatus::NotTls if self.tracker.client_hello.is_none() => Step::NotThis,
            HandshakeStatus::NotTls | HandshakeStatus::NeedMore => Step::NeedMore,
            HandshakeStatus::Complete => {
                if let Some(v) = self.certificate_verdict() {
                    return Step::Match(v);
                }
                let tls13 = self
                    .tracker
                    .server_hello
                    .as_ref()
                    .is_some_and(|s| s.version() >= 0x0304);
                if !tls13 || self.tor_sni().is_none() {
                    // a readable certificate that is not Tor's, or not Tor's ClientHello
                    return Step::NotThis;
                }
                self.cell_verdict().map_or(Step::NeedMore, Step::Match)
            }
        }
    }

    fn conclude(&mut self, _flow: &FlowContext) -> Option<Verdict> {
        self.certificate_verdict().or_else(|| self.cell_verdict())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::facts::tls::parse_certificate;
    use crate::fingerprint::protocols::tls::tests::run;
    use crate::fingerprint::test_support::hex;
    use crate::flow::Direction;
    use proptest::prelude::*;

    /// tor.pcap, frame 7: Tor client's ClientHello, SNI www.ct7ctrgb6cr7.com, no ALPN.
    const TOR_CLIENT_HELLO: &str = concat!(
        "16030100d2010000ce0301527b7f66e54871e4b59a121cbf5521fb1813ee7b4c67430bed769b66cb288175000048c00a",
        "c0140088008700390038c00fc00500840035c007c009c011c0130045004400330032c00cc00ec002c004009600410004",
        "0005002fc008c01200160013c00dc003feff000a00ff0100005d0000001900170000147777772e637437637472676236",
        "6372372e636f6d000b000403000102000a00340032000100020003000400050006000700080009000a000b000c000d00",
        "0e000f0010001100120013001400150016001700180019",
    );
    /// tor.pcap, frame 9: the relay's ServerHello, link Certificate (subject
    /// www.g6ghvisevf3ibuu5.net, issuer www.xkgk7fdx362yyyxib.com), ServerKeyExchange, Done.
    const TOR_SERVER_FLIGHT: &str = concat!(
        "1603010039020000350301527b71616e527eaa773f5f3aeffd8f030dc045841bd33f20ec10ab1cb1dd247100c0130000",
        "0dff01000100000b00040300010216030101d00b0001cc0001c90001c6308201c23082012ba00302010202084d1e6775",
        "ed963184300d06092a864886f70d0101050500302431223020060355040313197777772e786b676b3766647833363279",
        "79797869622e636f6d301e170d3133313030333030303030305a170d3133313131383233353935395a30233121301f06",
        "0355040313187777772e673667687669736576663369627575352e6e657430819f300d06092a864886f70d0101010500",
        "03818d0030818902818100c767c1ecac377787740737099e426b1985a9e82d0ae001d38678da6a3e737c11e11f5877c0",
        "844470d8fd97ffae67b47df43f5fa93b7e3581f9833e256758aaca6dd7a63a159ce7e8702e5ac53011d1c1984a7cb576",
        "d3d8eff740dd3e21f62040028a4c9ea48c3a3ce7ae7a47059aa4ce9a80842536cd0528fef0b535d2c859cf0203010001",
        "300d06092a864886f70d010105050003818100095dd2f03ade4fac2413f401264f7e8c118327fe28ede49fdbb755f9fb",
        "8f6586baedb913e86edf52efab2198f29ed80e12ed09f90b416d645507d57586628316b65b85d9cc726325842b278177",
        "24062b0c7209092905a2db23f8c1c6bcaf1132dc2058dfc39939b41fe125a2975e67a03562e7faf0cd5ebbec5cc14d89",
        "d1cbd716030100cb0c0000c70300174104af95f49d4e8c15ec85b2d61101da5ac29df0f31ad06a4ff3bca00b66aefd89",
        "2dda9d5c5f5355e15669d1d6aa758f1aee91faae366cae3ec632f4e3141f177a490080bfc50ea687eb4d5681a252bd0d",
        "35c19397fa2296258779543f26eff32f4f147c710d46a1706d230a56ac1ed404c9106c230f6a38b975f115aed3b8e3aa",
        "17603b352735b41d4438cc9a4b14a3d84ae930c7ab8992ed2640b601322a853852880d99ca193a5598419add3741b2c4",
        "e73dc1bb2d5f69a26571306c0d718f7fe9473b16030100040e000000",
    );

    #[test]
    fn tor_link_handshake_from_tor_pcap() {
        let v = run(
            &SPEC,
            &[
                (Direction::ToServer, hex(TOR_CLIENT_HELLO)),
                (Direction::ToClient, hex(TOR_SERVER_FLIGHT)),
            ],
        )
        .expect("tor");
        assert_eq!(v.confidence, Confidence::BothDirections);
        let get = |k: &str| v.evidence.get(k).map(|f| f.to_string());
        assert_eq!(get("sni").as_deref(), Some("www.ct7ctrgb6cr7.com"));
        assert_eq!(
            get("cert_subject_cn").as_deref(),
            Some("www.g6ghvisevf3ibuu5.net")
        );
        assert_eq!(
            get("cert_issuer_cn").as_deref(),
            Some("www.xkgk7fdx362yyyxib.com")
        );
        assert_eq!(get("validity_whole_days").as_deref(), Some("true"));
    }

    #[test]
    fn certificate_without_tor_sni_is_one_message() {
        // A ClientHello with an ordinary shape (windscribe.pcapng frame 4, no SNI) followed by a
        // Tor link certificate: the certificate decides, with less confidence.
        use crate::fingerprint::protocols::tls::tests::WINDSCRIBE_CLIENT_HELLO;
        let v = run(
            &SPEC,
            &[
                (Direction::ToServer, hex(WINDSCRIBE_CLIENT_HELLO)),
                (Direction::ToClient, hex(TOR_SERVER_FLIGHT)),
            ],
        )
        .expect("tor");
        assert_eq!(v.confidence, Confidence::OneMessage);
        assert_eq!(
            v.evidence
                .get("chain_len")
                .map(|f| f.to_string())
                .as_deref(),
            Some("1")
        );
    }

    #[test]
    fn host_shapes() {
        assert!(is_tor_host("www.ct7ctrgb6cr7.com", "com"));
        assert!(is_tor_host("www.g6ghvisevf3ibuu5.net", "net"));
        assert!(!is_tor_host("www.g6ghvisevf3ibuu5.net", "com"));
        assert!(!is_tor_host("www.example-site.com", "com"));
        assert!(!is_tor_host("www.abc.com", "com"));
        assert!(!is_tor_host("api.ct7ctrgb6cr7.com", "com"));
        assert!(!is_tor_host("www.CT7CTRGB.com", "com"));
        assert!(!is_tor_host("www.ab18cdef.com", "com")); // 1 and 8 are not base32
    }

    #[test]
    fn ordinary_tls_is_not_tor() {
        // windscribe.pcapng: self-signed certificate with O/OU/CN, no SNI.
        use crate::fingerprint::protocols::tls::tests::{
            WINDSCRIBE_CLIENT_HELLO, WINDSCRIBE_SERVER_FLIGHT,
        };
        let v = run(
            &SPEC,
            &[
                (Direction::ToServer, hex(WINDSCRIBE_CLIENT_HELLO)),
                (Direction::ToClient, hex(WINDSCRIBE_SERVER_FLIGHT)),
            ],
        );
        assert!(v.is_none());
        // opera-vpn.pcapng ClientHello: SNI eu0.sec-tunnel.com with ALPN; no server side.
        use crate::fingerprint::protocols::tls::tests::OPERA_CLIENT_HELLO;
        assert!(run(&SPEC, &[(Direction::ToServer, hex(OPERA_CLIENT_HELLO))]).is_none());
        // random bytes, HTTP
        assert!(run(
            &SPEC,
            &[(Direction::ToServer, b"GET / HTTP/1.1\r\n\r\n".to_vec())]
        )
        .is_none());
    }

    #[test]
    fn certificate_shape_requires_bare_cn_names() {
        let flight = hex(TOR_SERVER_FLIGHT);
        // frame 9: ServerHello record (5 + 57), then Certificate record header (5) and
        // handshake header (4) and list length (3) and cert length (3).
        let der = &flight[5 + 57 + 5 + 4 + 3 + 3..];
        let cert = parse_certificate(der).expect("certificate");
        assert!(is_tor_link_certificate(&cert));
        let mut other = cert.clone();
        other.issuer_o.push("Let's Encrypt".into());
        other.issuer_attributes += 1;
        assert!(!is_tor_link_certificate(&other));
        let mut same = cert.clone();
        same.issuer_cn = vec!["www.g6ghvisevf3ibuu5.com".into()];
        assert!(is_tor_link_certificate(&same));
        same.subject_cn = vec!["www.g6ghvisevf3ibuu5.com".into()];
        assert!(!is_tor_link_certificate(&same));
    }

    #[test]
    fn cell_record_lengths() {
        assert_eq!(cell_records(&[531, 1045, 532, 17, 0, 2073]), 3);
    }

    proptest! {
        #[test]
        fn never_panics_never_exceeds_budget(
            a in proptest::collection::vec(any::<u8>(), 0..600),
            b in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut first = hex(TOR_CLIENT_HELLO);
            first.extend_from_slice(&a);
            let payloads: Vec<(Direction, Vec<u8>)> = (0..30)
                .map(|i| if i % 2 == 0 { (Direction::ToServer, first.clone()) } else { (Direction::ToClient, b.clone()) })
                .collect();
            let _ = run(&SPEC, &payloads);
        }
    }
}
