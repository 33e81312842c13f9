//! Intel: endpoint knowledge as data — which host names belong to VPN apps and commercial VPN
//! providers — built in and extendable by the user.
//!
//! Names are matched on a label boundary: a rule for `nordvpn.com` matches `nordvpn.com` and
//! `api.nordvpn.com`, never `notnordvpn.com`. Sources for each entry are given beside it: the
//! provider's own documentation or published server/API names.

pub mod alpn;
pub mod cidr;
pub mod endpoints;
pub mod platforms;

use crate::fingerprint::Family;

/// True when `host` is `suffix` or ends with `.suffix` (ASCII case-insensitive, trailing dot
/// ignored): a label-boundary match.
pub fn name_has_suffix(host: &str, suffix: &str) -> bool {
    let host = host.trim_end_matches('.').as_bytes();
    let suffix = suffix.as_bytes();
    host.len() >= suffix.len()
        && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        && (host.len() == suffix.len() || host[host.len() - suffix.len() - 1] == b'.')
}

/// What a host name tells about the service behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRule {
    /// Domain suffix, lower case, without a leading dot.
    pub suffix: &'static str,
    /// App or service token (`psiphon`, `tunnelbear`, ...), if the name identifies one.
    pub application: Option<&'static str>,
    /// Commercial VPN brand token (`nordvpn`, `mullvad`, ...), if the name identifies one.
    pub provider: Option<&'static str>,
    /// Family of a flow to this name: `vpn` for VPN apps and brands, `tor` for Tor's own
    /// transports (Snowflake's broker and relays).
    pub family: Family,
}

const fn app(suffix: &'static str, application: &'static str) -> NameRule {
    NameRule {
        suffix,
        application: Some(application),
        provider: None,
        family: Family::Vpn,
    }
}

/// A name of Tor's own infrastructure for a pluggable transport.
const fn tor_transport(suffix: &'static str, application: &'static str) -> NameRule {
    NameRule {
        family: Family::Tor,
        ..app(suffix, application)
    }
}

const fn provider(suffix: &'static str, provider: &'static str) -> NameRule {
    NameRule {
        suffix,
        application: None,
        provider: Some(provider),
        family: Family::Vpn,
    }
}

/// Built-in name rules. Keep sorted by provider/application; one line per suffix.
///
/// Only names the vendor itself publishes (its site, its documented API / server host names)
/// are listed; a CDN or fronting domain that a product merely happens to use is not.
pub static NAME_RULES: &[NameRule] = &[
    // --- applications ---
    // Hotspot Shield: the vendor's site and account/API host (hotspotshield.com).
    app("hotspotshield.com", "hotspot_shield"),
    // Psiphon: official sites. psiphon.ca is Psiphon Inc.'s site; psiphon3.com is the download
    // site; psiphon3.net hosts the user guide, FAQ and privacy policy
    // (www.psiphon3.net/en/user-guide.html). Psiphon's tunnels themselves are usually fronted
    // through CDNs, so this names only connections to Psiphon's own hosts.
    app("psiphon.ca", "psiphon"),
    app("psiphon3.com", "psiphon"),
    app("psiphon3.net", "psiphon"),
    // Snowflake (Tor pluggable transport, https://snowflake.torproject.org): the rendezvous
    // broker and the bridge's WebSocket endpoint, under every name they have been deployed at.
    // - Broker: snowflake-proxy(1) "-broker ... (default https://snowflake-broker.torproject.net/)"
    //   (older packages: snowflake-broker.bamsoftware.com); the broker serves ACME certificates
    //   for snowflake-broker.{bamsoftware.com,freehaven.net,torproject.net} (broker deployment
    //   notes, `--acme-hostnames`); freehaven.net was the web proxy's default broker.
    // - Bridge relay: snowflake-proxy(1) "-relay ... (default wss://snowflake.torproject.net/)",
    //   earlier snowflake.bamsoftware.com and snowflake.freehaven.net.
    // - CDN names of the broker that appear as `url=` in Snowflake bridge lines (Tor Browser's
    //   built-in bridges, client/README "torrc"): the Fastly service
    //   snowflake-broker.torproject.net.global.prod.fastly.net, the CDN77 resource
    //   1098762253.rsc.cdn77.org and the former Azure endpoint snowflake-broker.azureedge.net.
    // A censored client normally reaches the broker domain-fronted: DNS and SNI then carry only
    // the `front=`/`fronts=` name (www.cdn77.com, app.datapacket.com, github.githubassets.com,
    // cdn.sstatic.net, ajax.aspnetcdn.com; AMP cache: www.google.com; SQS:
    // sqs.us-east-1.amazonaws.com), which are ordinary sites and deliberately NOT listed. So
    // these names mostly show volunteer proxies (which contact broker and relay directly) and
    // unfronted clients. The project's web site snowflake.torproject.org is not listed either.
    // The WebRTC flow itself (STUN binding + DTLS with a volunteer proxy) is not named: its
    // DTLS is pion/dtls's, whose ClientHello is shared by every pion-based WebRTC app
    // (getlantern/unbounded#349, net4people/bbs#603), has been changed by Snowflake more than
    // once (pion/dtls#409 and #410 in 2021, covert-dtls randomisation in 2026), and browser
    // proxies use the browser's own DTLS (Bocovich et al., "Snowflake, a censorship
    // circumvention system using temporary WebRTC proxies", USENIX Security 2024).
    tor_transport("1098762253.rsc.cdn77.org", "snowflake"),
    tor_transport("snowflake-broker.azureedge.net", "snowflake"),
    tor_transport("snowflake-broker.bamsoftware.com", "snowflake"),
    tor_transport("snowflake-broker.freehaven.net", "snowflake"),
    tor_transport("snowflake-broker.torproject.net", "snowflake"),
    tor_transport(
        "snowflake-broker.torproject.net.global.prod.fastly.net",
        "snowflake",
    ),
    tor_transport("snowflake.bamsoftware.com", "snowflake"),
    tor_transport("snowflake.freehaven.net", "snowflake"),
    tor_transport("snowflake.torproject.net", "snowflake"),
    // SoftEther VPN: built-in Dynamic DNS names <name>.softether.net and the VPN Azure relay
    // service <name>.vpnazure.net (SoftEther VPN manual, "Dynamic DNS Function" and
    // "VPN Azure Cloud Service").
    app("softether.net", "softether"),
    app("vpnazure.net", "softether"),
    // Tailscale: coordination server and login host (Tailscale KB "What firewall ports should I
    // open to use Tailscale?": controlplane.tailscale.com, login.tailscale.com).
    app("controlplane.tailscale.com", "tailscale"),
    app("login.tailscale.com", "tailscale"),
    // TunnelBear: the vendor's site and app API (api.tunnelbear.com), and its "PolarBear" VPN
    // API api.polargrizzly.com that the TunnelBear apps and browser extension call for the
    // server list and auth (PB_API_URL in the TunnelBear extension).
    app("polargrizzly.com", "tunnelbear"),
    app("tunnelbear.com", "tunnelbear"),
    // UltraSurf: the vendor's site (ultrasurf.us).
    app("ultrasurf.us", "ultrasurf"),
    // Cloudflare WARP: client API and connectivity hosts under cloudflareclient.com
    // (Cloudflare One docs, "WARP with firewall": engage.cloudflareclient.com,
    // zero-trust-client.cloudflareclient.com, connectivity.cloudflareclient.com).
    app("cloudflareclient.com", "warp"),
    // ZeroTier: ZeroTier Central web UI and API (docs.zerotier.com, "Central API":
    // my.zerotier.com / api.zerotier.com).
    app("api.zerotier.com", "zerotier"),
    app("my.zerotier.com", "zerotier"),
    // --- commercial VPN providers ---
    // CyberGhost: the vendor's site and account API (cyberghostvpn.com).
    provider("cyberghostvpn.com", "cyberghost"),
    // ExpressVPN: vendor site and its published manual-config server names
    // (<location>-ca-version-2.expressnetw.com).
    provider("expressnetw.com", "expressvpn"),
    provider("expressvpn.com", "expressvpn"),
    // Hola VPN: vendor site and client API host (client.hola.org).
    provider("hola.org", "hola"),
    // IPVanish: vendor site; OpenVPN server names <city>-<n>.ipvanish.com (IPVanish
    // configuration files).
    provider("ipvanish.com", "ipvanish"),
    // Mullvad: vendor site, app API api.mullvad.net, relay names <relay>.relays.mullvad.net
    // (mullvad.net/servers).
    provider("mullvad.net", "mullvad"),
    // NordVPN: vendor site; server names <cc><n>.nordvpn.com (nordvpn.com/servers) and the
    // app API api.nordvpn.com.
    provider("nordvpn.com", "nordvpn"),
    // Opera browser VPN: Opera's browser proxy endpoints <region>.sec-tunnel.com and the client
    // API api.sec-tunnel.com / api2.sec-tunnel.com (Opera VPN is an HTTPS proxy run by
    // SurfEasy, Opera's VPN subsidiary).
    provider("sec-tunnel.com", "opera"),
    provider("surfeasy.com", "opera"),
    // Private Internet Access: vendor site and server list / region hosts
    // (serverlist.piaservers.net, pia-foss/manual-connections README).
    provider("piaservers.net", "pia"),
    provider("privateinternetaccess.com", "pia"),
    // Proton VPN: vendor sites and app API (api.protonvpn.ch, vpn-api.proton.me in the
    // open-source Proton VPN clients).
    provider("protonvpn.ch", "protonvpn"),
    provider("protonvpn.com", "protonvpn"),
    provider("vpn-api.proton.me", "protonvpn"),
    // PureVPN: vendor site.
    provider("purevpn.com", "purevpn"),
    // Surfshark: vendor site; server names <cc>-<city>.prod.surfshark.com (Surfshark manual
    // OpenVPN configuration files).
    provider("surfshark.com", "surfshark"),
    // VyprVPN: vendor site; server names <location>.vyprvpn.com (VyprVPN server list).
    provider("vyprvpn.com", "vyprvpn"),
    // Windscribe: vendor site and app API (api.windscribe.com); see also ORG_RULES.
    provider("windscribe.com", "windscribe"),
];

/// What the Organization (and Unit) of a server certificate's subject tells: products that
/// present certificates in their own name rather than a web PKI name (self-signed or
/// factory-default certificates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgRule {
    /// Subject organizationName (2.5.4.10), compared case-insensitively and exactly.
    pub organization: &'static str,
    /// Subject organizationalUnitName (2.5.4.11) that must also be present, if any.
    pub unit: Option<&'static str>,
    pub application: Option<&'static str>,
    pub provider: Option<&'static str>,
}

/// Built-in certificate-organization rules.
pub static ORG_RULES: &[OrgRule] = &[
    // FortiGate SSL VPN (FortiClient): unless the admin installs another one, the gateway
    // presents its factory certificate "Fortinet_Factory" with subject O=Fortinet,
    // OU=FortiGate, CN=<unit serial number>, issued by O=Fortinet, OU=Certificate Authority
    // (FortiOS Administration Guide, "SSL VPN" > server certificate / "Fortinet_Factory").
    OrgRule {
        organization: "Fortinet",
        unit: Some("FortiGate"),
        application: Some("forticlient"),
        provider: None,
    },
    // Windscribe: its servers' self-signed certificates name the provider itself
    // (O=Windscribe, OU=IT Dept.), e.g. on its TCP/443 stealth endpoints.
    OrgRule {
        organization: "Windscribe",
        unit: None,
        application: None,
        provider: Some("windscribe"),
    },
];

/// The first rule whose organization (and unit, if the rule has one) appears in a certificate
/// subject's O and OU values (case-insensitive, exact).
pub fn lookup_organization<S: AsRef<str>>(
    organizations: &[S],
    units: &[S],
) -> Option<&'static OrgRule> {
    ORG_RULES.iter().find(|r| {
        organizations
            .iter()
            .any(|o| o.as_ref().trim().eq_ignore_ascii_case(r.organization))
            && r.unit.is_none_or(|u| {
                units
                    .iter()
                    .any(|x| x.as_ref().trim().eq_ignore_ascii_case(u))
            })
    })
}

/// Application tokens of the label vocabulary that rules may name.
pub const APPLICATION_TOKENS: &[&str] = &[
    "psiphon",
    "ultrasurf",
    "hotspot_shield",
    "tunnelbear",
    "softether",
    "warp",
    "tailscale",
    "zerotier",
    "anyconnect",
    "forticlient",
    "globalprotect",
    "tinc",
    "snowflake",
    "hysteria",
];

/// The most specific rule whose suffix matches `host` on a label boundary (case-insensitive).
pub fn lookup_name(host: &str) -> Option<&'static NameRule> {
    NAME_RULES
        .iter()
        .filter(|r| name_has_suffix(host, r.suffix))
        .max_by_key(|r| r.suffix.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_matches_on_label_boundary_only() {
        for rule in NAME_RULES {
            assert_eq!(
                lookup_name(rule.suffix).map(|r| r.suffix),
                Some(rule.suffix)
            );
            let sub = format!("api.{}", rule.suffix.to_uppercase());
            assert_eq!(lookup_name(&sub).map(|r| r.suffix), Some(rule.suffix));
            let glued = format!("not{}", rule.suffix);
            assert!(lookup_name(&glued).is_none_or(|r| r.suffix != rule.suffix));
        }
        assert!(lookup_name("example.org").is_none());
    }

    #[test]
    fn rules_are_lower_case_unique_and_use_known_tokens() {
        let mut seen = std::collections::HashSet::new();
        for r in NAME_RULES {
            assert_eq!(r.suffix, r.suffix.to_ascii_lowercase());
            assert!(
                !r.suffix.starts_with('.') && r.suffix.contains('.'),
                "{}",
                r.suffix
            );
            assert!(seen.insert(r.suffix), "duplicate {}", r.suffix);
            assert!(
                r.application.is_some() != r.provider.is_some(),
                "{}",
                r.suffix
            );
            if let Some(a) = r.application {
                assert!(APPLICATION_TOKENS.contains(&a), "{a}");
            }
        }
        for r in ORG_RULES {
            if let Some(a) = r.application {
                assert!(APPLICATION_TOKENS.contains(&a), "{a}");
            }
        }
    }

    #[test]
    fn known_names_resolve() {
        let app_of = |h: &str| lookup_name(h).and_then(|r| r.application);
        let prov_of = |h: &str| lookup_name(h).and_then(|r| r.provider);
        assert_eq!(app_of("api.tunnelbear.com"), Some("tunnelbear"));
        assert_eq!(app_of("api.polargrizzly.com"), Some("tunnelbear"));
        assert_eq!(app_of("psiphon3.net"), Some("psiphon"));
        assert_eq!(prov_of("eu0.sec-tunnel.com"), Some("opera"));
        assert_eq!(prov_of("us1234.nordvpn.com."), Some("nordvpn"));
        assert_eq!(app_of("engage.cloudflareclient.com"), Some("warp"));
        // ordinary names from the negative captures resolve to nothing
        for h in [
            "www.google.com",
            "clients4.google.com",
            "zoom.us",
            "store.steampowered.com",
            "www.netflix.com",
            "dns.google",
            "cloudflare-dns.com",
            "crypto.cloudflare.com",
            "tailscale.com",
            "www.zerotier.com",
        ] {
            assert!(lookup_name(h).is_none(), "{h}");
        }
    }

    #[test]
    fn organizations_match_exactly() {
        let o = |v: &[&str], u: &[&str]| lookup_organization(v, u);
        assert_eq!(
            o(&["Windscribe"], &["IT Dept."]).and_then(|r| r.provider),
            Some("windscribe")
        );
        assert_eq!(
            o(&["Fortinet"], &["FortiGate"]).and_then(|r| r.application),
            Some("forticlient")
        );
        assert!(o(&["Fortinet"], &["Certificate Authority"]).is_none());
        assert!(o(&["Fortinet, Inc."], &["FortiGate"]).is_none());
        assert!(o(&["Cloudflare, Inc."], &[]).is_none());
        assert!(o(&[], &[]).is_none());
    }
}
