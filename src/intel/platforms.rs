//! Platforms whose reachability we measure (the ones governments block) and control sites
//! (large services rarely blocked together with them), recognised by host name (DNS question,
//! TLS/QUIC SNI, HTTP Host) or destination prefix.
//!
//! Prefixes are the operators' own registered ranges (origin AS noted), or the list an operator
//! publishes itself (Telegram's `core.telegram.org/resources/cidr.txt`). Control sites get
//! prefixes only where the operator publishes ranges that serve its own services alone; shared
//! CDN and cloud space (Cloudflare, AWS) also serves blocked sites and is left out.

use std::collections::HashMap;
use std::net::IpAddr;

use super::cidr::Cidr;

/// A platform or control site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Stable token: `x`, `youtube`, `facebook`, ...
    pub name: String,
    /// Domain suffixes (label-boundary match).
    pub domains: Vec<String>,
    pub prefixes: Vec<Cidr>,
    /// A control site: used as the "is the network fine otherwise?" comparison.
    pub control: bool,
}

/// (name, control, domains, prefixes) of the built-in platforms.
const BUILT_IN: &[(&str, bool, &[&str], &[&str])] = &[
    // X Corp, AS13414.
    (
        "x",
        false,
        &[
            "x.com",
            "twitter.com",
            "twimg.com",
            "t.co",
            "twttr.com",
            "twitterstat.us",
            "pscp.tv",
            "periscope.tv",
        ],
        &[
            "104.244.40.0/21",
            "192.133.76.0/22",
            "199.16.156.0/22",
            "199.59.148.0/22",
            "69.195.160.0/19",
            "2606:1f80::/32",
        ],
    ),
    (
        "youtube",
        false,
        &[
            "youtube.com",
            "ytimg.com",
            "googlevideo.com",
            "youtu.be",
            "youtube-nocookie.com",
            "yt3.ggpht.com",
        ],
        &[],
    ),
    // Meta Platforms, AS32934 (shared by Facebook, Instagram and WhatsApp: names tell them apart).
    (
        "facebook",
        false,
        &[
            "facebook.com",
            "fbcdn.net",
            "fb.com",
            "facebook.net",
            "messenger.com",
            "fbsbx.com",
        ],
        &[
            "157.240.0.0/16",
            "31.13.64.0/18",
            "129.134.0.0/16",
            "179.60.192.0/22",
            "185.60.216.0/22",
            "66.220.144.0/20",
            "69.63.176.0/20",
            "69.171.224.0/19",
            "173.252.64.0/18",
            "2a03:2880::/29",
        ],
    ),
    (
        "instagram",
        false,
        &["instagram.com", "cdninstagram.com", "ig.me"],
        &[],
    ),
    (
        "whatsapp",
        false,
        &["whatsapp.com", "whatsapp.net", "wa.me"],
        &[],
    ),
    // Telegram publishes its ranges at core.telegram.org/resources/cidr.txt.
    (
        "telegram",
        false,
        &[
            "telegram.org",
            "t.me",
            "telegram.me",
            "telesco.pe",
            "tdesktop.com",
        ],
        &[
            "91.108.4.0/22",
            "91.108.8.0/22",
            "91.108.12.0/22",
            "91.108.16.0/22",
            "91.108.20.0/22",
            "91.108.56.0/22",
            "91.105.192.0/23",
            "149.154.160.0/20",
            "185.76.151.0/24",
            "2001:b28:f23d::/48",
            "2001:b28:f23f::/48",
            "2001:67c:4e8::/48",
            "2001:b28:f23c::/48",
            "2a0a:f280::/32",
        ],
    ),
    (
        "tiktok",
        false,
        &[
            "tiktok.com",
            "tiktokv.com",
            "tiktokcdn.com",
            "byteoversea.com",
            "ibytedtos.com",
            "musical.ly",
        ],
        &[],
    ),
    (
        "signal",
        false,
        &["signal.org", "whispersystems.org", "signal.art"],
        &[],
    ),
    // Controls: large services that blocks of social media normally leave alone. Their
    // prefixes make an attempt that never shows a name (a SYN dropped before any DNS answer or
    // ClientHello is seen) count as a failed control attempt. Only ranges the operator
    // publishes as its own and serves nothing but its own services from: a range that also
    // carries other sites would put blocked sites' failures into the control ratio.
    //
    // Wikimedia Foundation, AS14907: wikitech "IP and AS allocations"
    // (https://wikitech.wikimedia.org/wiki/IP_and_AS_allocations), the same list as the
    // `network::constants` external networks of operations/puppet, plus the eqsin PoP.
    (
        "wikipedia",
        true,
        &["wikipedia.org", "wikimedia.org", "wikidata.org"],
        &[
            "208.80.152.0/22",
            "91.198.174.0/24",
            "198.35.26.0/23",
            "185.15.56.0/22",
            "103.102.166.0/24",
            "2620:0:860::/46",
            "2a02:ec80::/32",
            "2001:df2:e500::/48",
        ],
    ),
    // Microsoft: the Exchange Online "Optimize" endpoint sets of "Microsoft 365 URLs and IP
    // address ranges" (https://learn.microsoft.com/microsoft-365/enterprise/urls-and-ip-address-ranges,
    // web service https://endpoints.office.com/endpoints/worldwide), which Microsoft operates
    // for Microsoft 365 alone. Azure's service-tag ranges are left out: they hold customers'
    // virtual machines and front doors, VPN servers and blocked sites among them.
    (
        "microsoft",
        true,
        &[
            "microsoft.com",
            "windowsupdate.com",
            "live.com",
            "office.com",
            "bing.com",
        ],
        &[
            "13.107.6.152/31",
            "13.107.18.10/31",
            "13.107.128.0/22",
            "23.103.160.0/20",
            "40.96.0.0/13",
            "40.104.0.0/15",
            "52.96.0.0/14",
            "131.253.33.215/32",
            "132.245.0.0/16",
            "150.171.32.0/22",
            "204.79.197.215/32",
            "2603:1006::/40",
            "2603:1016::/36",
            "2603:1026::/36",
            "2603:1036::/36",
            "2603:1046::/36",
            "2603:1056::/36",
        ],
    ),
    // Apple: "Use Apple products on enterprise networks" (https://support.apple.com/en-us/101555)
    // names Apple's 17.0.0.0/8 block. Its content downloads also come from Akamai and other
    // CDNs; those addresses are shared and stay out (the names still match).
    (
        "apple",
        true,
        &["apple.com", "icloud.com", "mzstatic.com"],
        &["17.0.0.0/8"],
    ),
    // Amazon and Cloudflare: no prefixes. AWS's published ip-ranges.json is EC2, CloudFront
    // and other shared cloud space, and Cloudflare's published ranges (cloudflare.com/ips)
    // front millions of customers' sites; both carry blocked sites and circumvention servers
    // too, so their addresses say nothing about the control site. Names only.
    ("amazon", true, &["amazon.com", "amazonaws.com"], &[]),
    ("cloudflare", true, &["cloudflare.com"], &[]),
];

/// The built-in platform and control definitions.
pub fn built_in() -> Vec<Platform> {
    BUILT_IN
        .iter()
        .map(|(name, control, domains, prefixes)| Platform {
            name: (*name).to_string(),
            domains: domains.iter().map(|d| (*d).to_string()).collect(),
            prefixes: prefixes.iter().filter_map(|p| p.parse().ok()).collect(),
            control: *control,
        })
        .collect()
}

/// Matches host names and addresses against a set of platforms.
#[derive(Debug, Clone)]
pub struct PlatformMatcher {
    platforms: Vec<Platform>,
    index: Index,
}

/// The platforms' domains and prefixes arranged for lookups: every flow of `flows` and
/// `analyze` is classified, and a scan of every domain and prefix took 340 ns a flow (25 ms for
/// the 75 k flows of the reference capture).
#[derive(Debug, Clone, Default)]
struct Index {
    /// Lower-case domain suffix -> platform (the later one where two list the same domain, as
    /// the longest-match scan picked).
    domains: HashMap<String, usize, foldhash::fast::FixedState>,
    /// IPv4 prefixes as (first, last address, platform).
    v4: Vec<(u32, u32, usize)>,
    /// IPv6 prefixes as (first, last address, platform).
    v6: Vec<(u128, u128, usize)>,
}

impl Index {
    fn new(platforms: &[Platform]) -> Self {
        let mut index = Index::default();
        for (i, p) in platforms.iter().enumerate() {
            for d in &p.domains {
                index.domains.insert(d.to_ascii_lowercase(), i);
            }
            for c in &p.prefixes {
                match c.network() {
                    IpAddr::V4(net) => {
                        let first = u32::from(net);
                        let host_bits = 32 - u32::from(c.prefix_len().min(32));
                        let last = first | u32::MAX.checked_shr(32 - host_bits).unwrap_or(0);
                        index.v4.push((first, last, i));
                    }
                    IpAddr::V6(net) => {
                        let first = u128::from(net);
                        let host_bits = 128 - u32::from(c.prefix_len().min(128));
                        let last = first | u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
                        index.v6.push((first, last, i));
                    }
                }
            }
        }
        index
    }

    /// The platform of the longest listed suffix of `name` (ASCII case-insensitive, trailing
    /// dot ignored, label boundaries only).
    fn by_name(&self, name: &str) -> Option<usize> {
        let name = name.trim_end_matches('.');
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        // Longest first: the whole name, then what follows each dot.
        std::iter::once(name)
            .chain(name.match_indices('.').map(|(at, _)| &name[at + 1..]))
            .find_map(|suffix| self.domains.get(suffix).copied())
    }

    /// The first platform (in list order) with a prefix holding `addr`; IPv4-mapped IPv6
    /// addresses also match IPv4 prefixes.
    fn by_address(&self, addr: IpAddr) -> Option<usize> {
        let in_v4 = |a: u32| {
            self.v4
                .iter()
                .filter(|(first, last, _)| (*first..=*last).contains(&a))
                .map(|(_, _, i)| *i)
                .min()
        };
        match addr {
            IpAddr::V4(a) => in_v4(u32::from(a)),
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let in_v6 = self
                    .v6
                    .iter()
                    .filter(|(first, last, _)| (*first..=*last).contains(&bits))
                    .map(|(_, _, i)| *i)
                    .min();
                let mapped = a.to_ipv4_mapped().and_then(|v4| in_v4(u32::from(v4)));
                match (in_v6, mapped) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                }
            }
        }
    }
}

impl Default for PlatformMatcher {
    fn default() -> Self {
        PlatformMatcher::new(built_in())
    }
}

impl PlatformMatcher {
    pub fn new(platforms: Vec<Platform>) -> Self {
        let index = Index::new(&platforms);
        PlatformMatcher { platforms, index }
    }

    pub fn platforms(&self) -> &[Platform] {
        &self.platforms
    }

    /// The platform a name belongs to (longest matching suffix wins), else the one whose
    /// prefix holds the address.
    pub fn classify(&self, name: Option<&str>, addr: Option<IpAddr>) -> Option<&Platform> {
        name.and_then(|n| self.index.by_name(n))
            .or_else(|| addr.and_then(|a| self.index.by_address(a)))
            .and_then(|i| self.platforms.get(i))
    }

    /// The platform a flow tried to reach: by its name ([`Self::classify`]); else by the
    /// platform a detector recognised by its own protocol on the wire (Telegram's MTProto,
    /// WhatsApp's framing), which needs no name and holds where the platform publishes no
    /// prefixes; else by its address.
    pub fn classify_flow(
        &self,
        name: Option<&str>,
        platform: Option<&str>,
        addr: Option<IpAddr>,
    ) -> Option<&Platform> {
        name.and_then(|n| self.classify(Some(n), None))
            .or_else(|| platform.and_then(|t| self.platforms.iter().find(|p| p.name == t)))
            .or_else(|| self.classify(None, addr))
    }

    /// Adds user definitions from text lines `name,control(true|false),domain;domain,prefix;prefix`
    /// (`#` starts a comment). A name that exists is replaced.
    pub fn load_user(&mut self, text: &str) -> Result<(), String> {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [name, control, domains, prefixes] = fields[..] else {
                return Err(format!(
                    "line {}: expected name,control,domains,prefixes",
                    i + 1
                ));
            };
            let control = match control {
                "true" | "yes" | "1" => true,
                "false" | "no" | "0" | "" => false,
                other => {
                    return Err(format!(
                        "line {}: control must be true or false, got {other:?}",
                        i + 1
                    ))
                }
            };
            let prefixes = prefixes
                .split(';')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<Cidr>()
                        .map_err(|e| format!("line {}: {e}", i + 1))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let platform = Platform {
                name: name.to_lowercase(),
                domains: domains
                    .split(';')
                    .filter(|d| !d.is_empty())
                    .map(|d| d.to_lowercase())
                    .collect(),
                prefixes,
                control,
            };
            self.platforms.retain(|p| p.name != platform.name);
            self.platforms.push(platform);
        }
        self.index = Index::new(&self.platforms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_prefixes_classify() {
        let m = PlatformMatcher::default();
        assert_eq!(
            m.classify(Some("abs.twimg.com"), None)
                .map(|p| p.name.as_str()),
            Some("x")
        );
        assert_eq!(
            m.classify(Some("X.COM."), None).map(|p| p.name.as_str()),
            Some("x")
        );
        assert_eq!(m.classify(Some("notx.com"), None), None);
        assert_eq!(
            m.classify(None, Some("104.244.42.1".parse().unwrap()))
                .map(|p| p.name.as_str()),
            Some("x")
        );
        assert_eq!(
            m.classify(
                Some("scontent.cdninstagram.com"),
                Some("157.240.1.1".parse().unwrap())
            )
            .map(|p| p.name.as_str()),
            Some("instagram")
        );
        assert!(m
            .classify(Some("en.wikipedia.org"), None)
            .is_some_and(|p| p.control));
        assert_eq!(
            m.classify(Some("example.org"), Some("192.0.2.1".parse().unwrap())),
            None
        );
    }

    #[test]
    fn control_sites_match_their_own_published_prefixes_only() {
        let m = PlatformMatcher::default();
        let control_at = |addr: &str| {
            m.classify(None, Some(addr.parse().unwrap()))
                .filter(|p| p.control)
                .map(|p| p.name.as_str())
        };
        assert_eq!(control_at("208.80.154.224"), Some("wikipedia"));
        assert_eq!(control_at("2620:0:862:ed1a::1"), Some("wikipedia"));
        assert_eq!(control_at("::ffff:91.198.174.192"), Some("wikipedia"));
        assert_eq!(control_at("17.253.144.10"), Some("apple"));
        assert_eq!(control_at("52.97.1.1"), Some("microsoft"));
        assert_eq!(control_at("2603:1026:c0b::2"), Some("microsoft"));
        // Shared CDN / cloud space is no control: Cloudflare's anycast, an EC2 address.
        assert_eq!(control_at("104.16.132.229"), None);
        assert_eq!(control_at("3.5.140.2"), None);
        assert_eq!(control_at("18.0.0.1"), None, "the /8 ends where it ends");
        // Every built-in prefix parses (a typo would silently drop it).
        for (name, _, _, prefixes) in BUILT_IN {
            for p in *prefixes {
                assert!(p.parse::<Cidr>().is_ok(), "{name}: {p}");
            }
        }
    }

    /// The scan the index replaced: longest matching suffix (the last platform among equals),
    /// else the first platform with a prefix holding the address.
    fn classify_by_scan<'a>(
        m: &'a PlatformMatcher,
        name: Option<&str>,
        addr: Option<IpAddr>,
    ) -> Option<&'a Platform> {
        if let Some(name) = name {
            let best = m
                .platforms()
                .iter()
                .flat_map(|p| p.domains.iter().map(move |d| (p, d)))
                .filter(|(_, d)| super::super::name_has_suffix(name, d))
                .max_by_key(|(_, d)| d.len());
            if let Some((p, _)) = best {
                return Some(p);
            }
        }
        let addr = addr?;
        m.platforms()
            .iter()
            .find(|p| p.prefixes.iter().any(|c| c.contains(addr)))
    }

    proptest::proptest! {
        /// Names built from the listed domains (with extra labels, odd case, a trailing dot,
        /// or near misses) and addresses near the listed prefixes' edges classify as the scan
        /// of every domain and prefix does.
        #[test]
        fn the_index_agrees_with_a_scan_of_every_domain_and_prefix(
            pick in 0usize..10_000,
            shape in 0u8..6,
            address_pick in 0usize..10_000,
            offset in -2i64..3,
            v6_mapped in proptest::bool::ANY,
            user in proptest::bool::ANY,
        ) {
            let mut m = PlatformMatcher::default();
            if user {
                m.load_user("x,false,x.com;example.org,10.9.0.0/16\nmine,false,com,104.244.40.0/24\n")
                    .expect("valid definitions");
            }
            let domains: Vec<&str> =
                m.platforms().iter().flat_map(|p| p.domains.iter().map(String::as_str)).collect();
            let d = domains[pick % domains.len()];
            let name = match shape {
                0 => d.to_string(),
                1 => format!("a.b.{d}"),
                2 => format!("{}.", d.to_uppercase()),
                3 => format!("not{d}"),
                4 => format!("{d}.evil.example"),
                _ => String::new(),
            };
            let prefixes: Vec<Cidr> =
                m.platforms().iter().flat_map(|p| p.prefixes.iter().copied()).collect();
            let c = prefixes[address_pick % prefixes.len()];
            let addr = match c.network() {
                IpAddr::V4(net) => {
                    let size = 1u64 << (32 - u32::from(c.prefix_len()));
                    let edge = if offset < 0 { u64::from(u32::from(net)) } else { u64::from(u32::from(net)) + size };
                    let v4 = std::net::Ipv4Addr::from((edge as i64 + offset).clamp(0, u32::MAX.into()) as u32);
                    if v6_mapped { IpAddr::V6(v4.to_ipv6_mapped()) } else { IpAddr::V4(v4) }
                }
                IpAddr::V6(net) => {
                    let bits = u128::from(net);
                    IpAddr::V6(std::net::Ipv6Addr::from(if offset < 0 { bits.wrapping_sub(1) } else { bits.wrapping_add(offset as u128) }))
                }
            };
            let name = (!name.is_empty()).then_some(name.as_str());
            proptest::prop_assert_eq!(
                m.classify(name, Some(addr)).map(|p| &p.name),
                classify_by_scan(&m, name, Some(addr)).map(|p| &p.name)
            );
        }
    }

    #[test]
    fn user_definitions_replace_and_report_errors() {
        let mut m = PlatformMatcher::default();
        m.load_user("# mine\nbluesky,false,bsky.app;bsky.social,\nx,false,x.com,10.9.0.0/16\n")
            .unwrap();
        assert_eq!(
            m.classify(Some("bsky.app"), None).map(|p| p.name.as_str()),
            Some("bluesky")
        );
        assert_eq!(
            m.classify(None, Some("10.9.1.1".parse().unwrap()))
                .map(|p| p.name.as_str()),
            Some("x")
        );
        assert_eq!(
            m.classify(Some("twitter.com"), None),
            None,
            "replaced definition"
        );
        assert!(m.load_user("bad line").unwrap_err().contains("line 1"));
        assert!(m
            .load_user("a,maybe,a.com,")
            .unwrap_err()
            .contains("control must be"));
        assert!(m
            .load_user("a,true,a.com,300.0.0.0/8")
            .unwrap_err()
            .contains("line 1"));
    }
}
