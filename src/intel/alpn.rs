//! ALPN protocol ids that name one product: a TLS/QUIC client that offers such an id in its
//! ClientHello's `application_layer_protocol_negotiation` extension (RFC 7301 §3.1) is that
//! product's client, whatever the server name.
//!
//! ALPN ids are opaque, non-empty byte strings (RFC 7301 §3.1) that the server compares with
//! its own list (§3.2), so the match here is exact and case-sensitive. Only ids that are absent
//! from the IANA "TLS Application-Layer Protocol Negotiation (ALPN) Protocol IDs" registry and
//! that one product uses as its default belong here: a registered id (`h3`, `h2`, `http/1.1`,
//! `dot`, ...) is shared by every implementation of that protocol and names nothing.

/// What one ALPN id tells about the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlpnRule {
    /// The protocol id as sent on the wire (ASCII, exact).
    pub protocol_id: &'static str,
    /// App token (see [`super::APPLICATION_TOKENS`]).
    pub application: &'static str,
}

/// Built-in ALPN rules.
pub static ALPN_RULES: &[AlpnRule] = &[
    // Hysteria 1.x (apernet/hysteria, "a TCP relay & SOCKS5/HTTP proxy tool ... powered by a
    // custom version of QUIC"): client and server fill an empty `alpn` setting with
    // `DefaultALPN = "hysteria"` (cmd/config.go of the 1.x releases, `serverConfig.Fill` and
    // `clientConfig.Fill`; the same default in the Hysteria-1 outbounds of Clash.Meta and
    // sing-box). The 1.x "Advanced Usage" docs (https://v1.hysteria.network/docs/advanced-usage/,
    // key `"alpn"`, "QUIC TLS ALPN", on both client and server) let users change it: only the
    // default is recognised, and a changed id is simply not seen.
    // Hysteria 2 (https://v2.hysteria.network/docs/developers/Protocol/) is HTTP/3 with ALPN
    // `h3` and authenticates inside the encrypted 1-RTT data (`POST /auth`, status 233): it is
    // not named here. Its optional "Salamander" obfuscation (same spec: every datagram is an
    // 8-byte random salt + the QUIC packet XORed with BLAKE2b-256(key || salt)) and the 1.x
    // `obfs` option leave no plaintext byte, and "Gecko" (same spec) also splits and pads the
    // long-header packets, so not even the >= 1200-byte Initial size (RFC 9000 §14.1) survives:
    // an obfuscated Hysteria flow is random UDP, which this tool does not name (UDP carries
    // many other headerless encrypted protocols).
    AlpnRule {
        protocol_id: "hysteria",
        application: "hysteria",
    },
];

/// The first rule whose id the client offered (any position in its list).
pub fn lookup_alpn<S: AsRef<str>>(offered: &[S]) -> Option<&'static AlpnRule> {
    ALPN_RULES
        .iter()
        .find(|r| offered.iter().any(|a| a.as_ref() == r.protocol_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hysteria_default_alpn_is_named_in_any_position() {
        assert_eq!(
            lookup_alpn(&["hysteria"]).map(|r| r.application),
            Some("hysteria")
        );
        assert_eq!(
            lookup_alpn(&["h3", "hysteria"]).map(|r| r.application),
            Some("hysteria")
        );
    }

    #[test]
    fn registered_and_lookalike_ids_name_nothing() {
        // Hysteria 2's default and ordinary HTTP/3, HTTP/2, DoT/DoQ clients.
        for list in [
            &["h3"][..],
            &["h2", "http/1.1"],
            &["dot"],
            &["doq"],
            &["h3-29", "h3-Q050"],
            &[],
        ] {
            assert!(lookup_alpn(list).is_none(), "{list:?}");
        }
        // Exact, case-sensitive comparison: no prefix, suffix or case variant.
        for id in ["Hysteria", "hysteria2", "hyster", "hysteria ", "xhysteria"] {
            assert!(lookup_alpn(&[id]).is_none(), "{id}");
        }
    }

    #[test]
    fn rules_use_known_tokens() {
        for r in ALPN_RULES {
            assert!(super::super::APPLICATION_TOKENS.contains(&r.application));
            assert!(!r.protocol_id.is_empty() && r.protocol_id.is_ascii());
        }
    }

    proptest! {
        #[test]
        fn lookup_never_panics(ids in proptest::collection::vec(".{0,12}", 0..6)) {
            let hit = lookup_alpn(&ids);
            prop_assert_eq!(hit.is_some(), ids.iter().any(|i| i == "hysteria"));
        }
    }
}
