//! Who the hosts talk to: sites with their real operators' address ranges, the platform that
//! gets blocked (X/Twitter, AS13414), and the servers circumvention tools reach.
//!
//! Ranges are the operators' registered blocks (RIR allocations / published ranges): X
//! 104.244.40.0/21 (AS13414); Google 142.250.0.0/15, 173.194.0.0/16, 2a00:1450::/32; Meta
//! 157.240.0.0/16, 2a03:2880::/32; Wikimedia 208.80.152.0/22, 2620:0:860::/46; Cloudflare
//! 104.16.0.0/13, 2606:4700::/32; Akamai 23.32.0.0/11; Microsoft 52.96.0.0/14, 13.107.4.0/24;
//! Amazon 52.0.0.0/11; Tor relays 185.220.100.0/22; VPS hosts (DigitalOcean, Hetzner, Linode,
//! Vultr, OVH) for self-hosted and commercial VPN endpoints.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Page loads: several request/response exchanges over TLS.
    Web,
    /// Small API calls over TLS.
    Api,
    /// Long video-like TLS transfer.
    Video,
    /// Cleartext HTTP on port 80.
    Http,
}

#[derive(Debug, Clone, Copy)]
pub struct Site {
    pub name: &'static str,
    pub app: &'static str,
    pub kind: Kind,
    pub v4: (Ipv4Addr, u8),
    pub v6: Option<(Ipv6Addr, u8)>,
    pub weight: f64,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> (Ipv4Addr, u8) {
    (Ipv4Addr::new(a, b, c, d), len)
}

const GOOGLE6: Option<(Ipv6Addr, u8)> = Some((Ipv6Addr::new(0x2a00, 0x1450, 0, 0, 0, 0, 0, 0), 32));
const META6: Option<(Ipv6Addr, u8)> = Some((Ipv6Addr::new(0x2a03, 0x2880, 0, 0, 0, 0, 0, 0), 32));
const CF6: Option<(Ipv6Addr, u8)> = Some((Ipv6Addr::new(0x2606, 0x4700, 0, 0, 0, 0, 0, 0), 32));
const WIKI6: Option<(Ipv6Addr, u8)> = Some((Ipv6Addr::new(0x2620, 0, 0x860, 0, 0, 0, 0, 0), 46));

/// X (Twitter) endpoints: all inside 104.244.40.0/21, registered to AS13414.
pub static PLATFORM: &[Site] = &[
    Site {
        name: "x.com",
        app: "x",
        kind: Kind::Web,
        v4: v4(104, 244, 42, 0, 24),
        v6: None,
        weight: 3.0,
    },
    Site {
        name: "api.x.com",
        app: "x",
        kind: Kind::Api,
        v4: v4(104, 244, 42, 0, 24),
        v6: None,
        weight: 4.0,
    },
    Site {
        name: "twitter.com",
        app: "x",
        kind: Kind::Web,
        v4: v4(104, 244, 42, 0, 24),
        v6: None,
        weight: 0.7,
    },
    Site {
        name: "pbs.twimg.com",
        app: "x",
        kind: Kind::Web,
        v4: v4(104, 244, 43, 0, 24),
        v6: None,
        weight: 3.0,
    },
    Site {
        name: "abs.twimg.com",
        app: "x",
        kind: Kind::Api,
        v4: v4(104, 244, 43, 0, 24),
        v6: None,
        weight: 1.0,
    },
    Site {
        name: "video.twimg.com",
        app: "x",
        kind: Kind::Video,
        v4: v4(104, 244, 43, 0, 24),
        v6: None,
        weight: 1.2,
    },
    Site {
        name: "t.co",
        app: "x",
        kind: Kind::Api,
        v4: v4(104, 244, 42, 0, 24),
        v6: None,
        weight: 1.0,
    },
];

/// The platform's domains and prefixes, as written to the events file.
pub const PLATFORM_DOMAINS: &[&str] = &["x.com", "twitter.com", "twimg.com", "t.co"];
pub const PLATFORM_PREFIXES: &[&str] = &["104.244.40.0/21"];

pub static SITES: &[Site] = &[
    Site {
        name: "www.google.com",
        app: "google",
        kind: Kind::Web,
        v4: v4(142, 250, 0, 0, 15),
        v6: GOOGLE6,
        weight: 8.0,
    },
    Site {
        name: "clients4.google.com",
        app: "google",
        kind: Kind::Api,
        v4: v4(142, 250, 0, 0, 15),
        v6: GOOGLE6,
        weight: 2.0,
    },
    Site {
        name: "www.youtube.com",
        app: "youtube",
        kind: Kind::Web,
        v4: v4(142, 250, 0, 0, 15),
        v6: GOOGLE6,
        weight: 3.0,
    },
    Site {
        name: "rr4---sn-hju7enll.googlevideo.com",
        app: "youtube",
        kind: Kind::Video,
        v4: v4(173, 194, 0, 0, 16),
        v6: GOOGLE6,
        weight: 3.0,
    },
    Site {
        name: "www.facebook.com",
        app: "facebook",
        kind: Kind::Web,
        v4: v4(157, 240, 0, 0, 16),
        v6: META6,
        weight: 5.0,
    },
    Site {
        name: "graph.facebook.com",
        app: "facebook",
        kind: Kind::Api,
        v4: v4(157, 240, 0, 0, 16),
        v6: META6,
        weight: 2.0,
    },
    Site {
        name: "g.whatsapp.net",
        app: "whatsapp",
        kind: Kind::Api,
        v4: v4(157, 240, 0, 0, 16),
        v6: META6,
        weight: 4.0,
    },
    Site {
        name: "www.instagram.com",
        app: "instagram",
        kind: Kind::Web,
        v4: v4(157, 240, 0, 0, 16),
        v6: META6,
        weight: 3.0,
    },
    Site {
        name: "www.tiktok.com",
        app: "tiktok",
        kind: Kind::Web,
        v4: v4(23, 32, 0, 0, 11),
        v6: None,
        weight: 3.0,
    },
    Site {
        name: "en.wikipedia.org",
        app: "wikipedia",
        kind: Kind::Web,
        v4: v4(208, 80, 152, 0, 22),
        v6: WIKI6,
        weight: 1.0,
    },
    Site {
        name: "www.dawn.com",
        app: "web",
        kind: Kind::Web,
        v4: v4(104, 16, 0, 0, 13),
        v6: CF6,
        weight: 1.5,
    },
    Site {
        name: "www.daraz.pk",
        app: "web",
        kind: Kind::Web,
        v4: v4(104, 16, 0, 0, 13),
        v6: CF6,
        weight: 1.0,
    },
    Site {
        name: "www.netflix.com",
        app: "netflix",
        kind: Kind::Web,
        v4: v4(52, 0, 0, 0, 11),
        v6: None,
        weight: 0.5,
    },
    Site {
        name: "outlook.office.com",
        app: "microsoft",
        kind: Kind::Web,
        v4: v4(52, 96, 0, 0, 14),
        v6: None,
        weight: 1.0,
    },
    Site {
        name: "www.msftconnecttest.com",
        app: "microsoft",
        kind: Kind::Http,
        v4: v4(13, 107, 4, 52, 32),
        v6: None,
        weight: 1.0,
    },
    Site {
        name: "neverssl.com",
        app: "web",
        kind: Kind::Http,
        v4: v4(34, 223, 124, 45, 32),
        v6: None,
        weight: 0.4,
    },
];

/// Sites the tool measures as controls (its built-in Wikipedia and Microsoft entries): the
/// "is the network fine otherwise?" comparison for the platform.
pub fn is_control(site: &Site) -> bool {
    matches!(site.app, "wikipedia" | "microsoft")
}

/// VPS ranges used for self-hosted tunnels, proxies and commercial VPN servers.
pub static VPS: &[(Ipv4Addr, u8)] = &[
    v4(159, 89, 0, 0, 16),  // DigitalOcean
    v4(167, 99, 0, 0, 16),  // DigitalOcean
    v4(95, 216, 0, 0, 16),  // Hetzner
    v4(172, 104, 0, 0, 15), // Linode
    v4(45, 76, 0, 0, 16),   // Vultr
    v4(51, 75, 0, 0, 16),   // OVH
];

/// Tor relays (185.220.100.0/22 hosts many relays).
pub const TOR_RELAYS: (Ipv4Addr, u8) = v4(185, 220, 100, 0, 22);

/// Resolvers: the ISP's own (inside the access network) and two public ones.
pub const ISP_RESOLVER: Ipv4Addr = Ipv4Addr::new(10, 254, 0, 53);
pub const ISP_RESOLVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0xff, 0, 0, 0, 0x53);
pub const PUBLIC_RESOLVERS: &[Ipv4Addr] = &[Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(1, 1, 1, 1)];

/// Where DNS-bogus blocking points platform names (a sinkhole that answers SYN with RST).
pub const SINKHOLE: Ipv4Addr = Ipv4Addr::new(10, 254, 255, 254);

fn mix(name: &str, k: u64) -> u64 {
    // FNV-1a over the name, then k: a stable per-site choice of addresses.
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
    }
    (h ^ k).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// One of a few stable addresses inside `prefix` for `name` (never the network or broadcast).
pub fn addr_v4(prefix: (Ipv4Addr, u8), name: &str, k: u64) -> Ipv4Addr {
    let (base, len) = prefix;
    let size = 1u64 << (32 - u32::from(len.min(32)));
    if size <= 2 {
        return base;
    }
    let host = 1 + mix(name, k) % (size - 2);
    Ipv4Addr::from(u32::from(base).wrapping_add(host as u32))
}

/// A stable address inside a v6 prefix for `name`.
pub fn addr_v6(prefix: (Ipv6Addr, u8), name: &str, k: u64) -> Ipv6Addr {
    let (base, len) = prefix;
    let free = 128 - u32::from(len.min(128));
    let mask = if free >= 64 {
        u64::MAX
    } else {
        (1u64 << free) - 1
    };
    let host = (mix(name, k) & mask & 0xFFFF_FFFF_0000_FFFF) | 0x2;
    Ipv6Addr::from(u128::from(base) | u128::from(host))
}

/// The address a site's name resolves to for one lookup (one of four per family).
pub fn site_addr(site: &Site, v6: bool, rng: &mut Rng) -> IpAddr {
    let k = rng.below(4);
    match (v6, site.v6) {
        (true, Some(p)) => IpAddr::V6(addr_v6(p, site.name, k)),
        _ => IpAddr::V4(addr_v4(site.v4, site.name, k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_stay_in_their_prefix() {
        let mut rng = Rng::new(1);
        for s in PLATFORM.iter().chain(SITES) {
            for _ in 0..20 {
                match site_addr(s, true, &mut rng) {
                    IpAddr::V4(a) => {
                        let mask = u32::MAX.checked_shl(32 - u32::from(s.v4.1)).unwrap_or(0);
                        assert_eq!(u32::from(a) & mask, u32::from(s.v4.0) & mask, "{}", s.name);
                    }
                    IpAddr::V6(a) => {
                        let (p, l) = s.v6.unwrap();
                        let mask = u128::MAX << (128 - u32::from(l));
                        assert_eq!(u128::from(a) & mask, u128::from(p) & mask);
                    }
                }
            }
        }
        for s in PLATFORM {
            let a = u32::from(addr_v4(s.v4, s.name, 3));
            assert_eq!(a & 0xFFFF_F800, u32::from(Ipv4Addr::new(104, 244, 40, 0)));
        }
    }
}
