//! Sessions: what one host does when it wakes up — a DNS lookup and a TLS/HTTP connection to a
//! site (possibly the blocked platform, with the block's effect), or a circumvention tunnel
//! session with the tool it adopted. Each function plans whole flows ([`NewFlow`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::catalog::{self, Kind, Site};
use super::flow::{Ends, Flow, Lazy, LazyState, Payload, Plan, Side, Transport, SEG};
use super::proto::{dns, http, ike, openvpn, socks, ssh, tls, wireguard};
use super::rng::Rng;
use super::wire::flags;

/// How the platform is blocked.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockMethod {
    /// DNS answers NXDOMAIN for the platform's names.
    Dns,
    /// DNS answers a bogus (sinkhole) address; connections to it are reset.
    DnsBogus,
    /// A TCP reset is injected after the ClientHello carrying the platform's SNI.
    Reset,
    /// SYNs to the platform's addresses are silently dropped.
    Drop,
    /// Connections work but the platform's data trickles (long gaps between segments).
    Throttle,
}

impl BlockMethod {
    pub fn name(self) -> &'static str {
        match self {
            BlockMethod::Dns => "dns",
            BlockMethod::DnsBogus => "dns-bogus",
            BlockMethod::Reset => "reset",
            BlockMethod::Drop => "drop",
            BlockMethod::Throttle => "throttle",
        }
    }

    /// The truth-file outcome of a blocked attempt.
    fn outcome(self) -> &'static str {
        match self {
            BlockMethod::Dns => "nxdomain",
            BlockMethod::DnsBogus => "dns-bogus",
            BlockMethod::Reset => "reset",
            BlockMethod::Drop => "dropped",
            BlockMethod::Throttle => "throttled",
        }
    }
}

/// Circumvention tools a host can adopt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    WireGuard,
    NordVpn,
    OpenVpn,
    ProtonVpn,
    Ikev2,
    Ssh,
    Socks5,
    Tor,
    Shadowsocks,
    Psiphon,
}

impl Tool {
    pub const ALL: [Tool; 10] = [
        Tool::WireGuard,
        Tool::NordVpn,
        Tool::OpenVpn,
        Tool::ProtonVpn,
        Tool::Ikev2,
        Tool::Ssh,
        Tool::Socks5,
        Tool::Tor,
        Tool::Shadowsocks,
        Tool::Psiphon,
    ];

    /// Default adoption mix (weights), in [`Tool::ALL`] order.
    pub const MIX: [f64; 10] = [0.14, 0.20, 0.10, 0.10, 0.08, 0.05, 0.05, 0.07, 0.06, 0.15];

    pub fn name(self) -> &'static str {
        match self {
            Tool::WireGuard => "wireguard",
            Tool::NordVpn => "nordvpn",
            Tool::OpenVpn => "openvpn",
            Tool::ProtonVpn => "protonvpn",
            Tool::Ikev2 => "ikev2",
            Tool::Ssh => "ssh",
            Tool::Socks5 => "socks5",
            Tool::Tor => "tor",
            Tool::Shadowsocks => "shadowsocks",
            Tool::Psiphon => "psiphon",
        }
    }

    /// Protocol tokens of the flows a session of this tool produces.
    pub fn protocols(self) -> &'static [&'static str] {
        match self {
            Tool::WireGuard => &["wireguard"],
            Tool::NordVpn => &["tls", "wireguard"],
            Tool::OpenVpn => &["openvpn"],
            Tool::ProtonVpn => &["tls", "openvpn"],
            Tool::Ikev2 => &["ipsec_ike"],
            Tool::Ssh => &["ssh"],
            Tool::Socks5 => &["socks"],
            Tool::Tor => &["tor"],
            Tool::Shadowsocks => &["shadowsocks"],
            Tool::Psiphon => &["tls", "fully_encrypted"],
        }
    }

    /// Application token for provider apps (empty for generic protocols).
    pub fn application(self) -> &'static str {
        match self {
            Tool::NordVpn => "nordvpn",
            Tool::ProtonVpn => "protonvpn",
            Tool::Psiphon => "psiphon",
            _ => "",
        }
    }
}

/// A host's adoption of a tool.
#[derive(Debug, Clone, Copy)]
pub struct Adoption {
    pub at: u64,
    pub tool: Tool,
    /// A VPN user before the block.
    pub baseline: bool,
    pub server: Ipv4Addr,
    pub server_port: u16,
}

/// One subscriber.
#[derive(Debug, Clone)]
pub struct Host {
    pub idx: u32,
    pub v4: Ipv4Addr,
    pub v6: Option<Ipv6Addr>,
    pub mac: [u8; 6],
    pub ttl: u8,
    /// Sessions per hour at the evening peak.
    pub rate_peak: f64,
    /// Personal shift of the daily curve, hours.
    pub phase_h: f64,
    pub x_user: bool,
    pub resolver: IpAddr,
    /// Downstream bandwidth, bits per second.
    pub bw_bps: f64,
    pub cli_rtt: u64,
    pub port: u16,
    pub adoption: Option<Adoption>,
    pub rng: Rng,
}

impl Host {
    fn ephemeral(&mut self) -> u16 {
        let step = 1 + self.rng.below(9) as u16;
        self.port = if self.port > 60_990 {
            32_768 + self.rng.below(100) as u16
        } else {
            self.port + step
        };
        self.port
    }

    fn ends(&mut self, server: IpAddr, cport: u16, sport: u16, srv_rtt: u64) -> Ends {
        let client = match (server, self.v6) {
            (IpAddr::V6(_), Some(a)) => IpAddr::V6(a),
            _ => IpAddr::V4(self.v4),
        };
        let server = match (server, self.v6) {
            (IpAddr::V6(_), None) => IpAddr::V4(catalog::SINKHOLE),
            _ => server,
        };
        Ends {
            client,
            cport,
            server,
            sport,
            client_mac: self.mac,
            srv_rtt,
            cli_rtt: self.cli_rtt,
            client_ttl: self.ttl,
        }
    }

    /// Microseconds to send one full segment at this host's bandwidth.
    fn seg_gap(&self) -> u64 {
        ((SEG as f64 * 8.0 / self.bw_bps.max(1e5)) * 1e6) as u64 + 20
    }
}

/// A planned flow with its truth.
pub struct NewFlow {
    pub flow: Flow,
    pub transport: Transport,
    pub protocol: &'static str,
    pub application: String,
    pub family: &'static str,
    pub outcome: &'static str,
    pub server_name: String,
    pub end: u64,
}

/// Scenario knobs sessions need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionCfg {
    /// Multiplies bulk transfer sizes and tunnel burst rates (small samples use < 1).
    pub volume: f64,
    /// Share of sessions that start with a DNS lookup (others hit the stub cache).
    pub dns_share: f64,
    /// Server-to-client delivery of throttled platform connections, bytes per second.
    pub throttle_rate: f64,
}

fn server_rtt(rng: &mut Rng) -> u64 {
    (rng.lognormal(70_000.0, 0.5) as u64).clamp(8_000, 400_000)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    p: Plan,
    transport: Transport,
    rng: &mut Rng,
    protocol: &'static str,
    application: &str,
    family: &'static str,
    outcome: &'static str,
    server_name: &str,
    lazy: LazyState,
) -> NewFlow {
    let end = p.steps.iter().map(|s| s.t).max().unwrap_or(p.t);
    let flow = Flow::new(p.ends, transport, p.steps, lazy, Rng::new(rng.next_u64()));
    NewFlow {
        flow,
        transport,
        protocol,
        application: application.to_string(),
        family,
        outcome,
        server_name: server_name.to_string(),
        end,
    }
}

/// A DNS lookup of `name` (A, plus AAAA for dual-stack hosts) answered with `answer`, or with
/// NXDOMAIN when `nxdomain`.
pub fn dns_lookup(
    h: &mut Host,
    t: u64,
    name: &str,
    answer: &[IpAddr],
    nxdomain: bool,
    outcome: &'static str,
) -> NewFlow {
    let rcode = if nxdomain { dns::RCODE_NXDOMAIN } else { 0 };
    dns_lookup_rcode(h, t, name, answer, rcode, outcome)
}

/// A DNS lookup answered with response code `rcode` (RFC 1035 §4.1.1).
fn dns_lookup_rcode(
    h: &mut Host,
    t: u64,
    name: &str,
    answer: &[IpAddr],
    rcode: u8,
    outcome: &'static str,
) -> NewFlow {
    let resolver = h.resolver;
    let cport = h.ephemeral();
    let rtt = if resolver.is_ipv4()
        && catalog::PUBLIC_RESOLVERS
            .iter()
            .any(|r| IpAddr::V4(*r) == resolver)
    {
        h.rng.range(20_000, 60_000)
    } else {
        h.rng.range(1_000, 8_000)
    };
    let mut ends = h.ends(resolver, cport, 53, rtt);
    if resolver.is_ipv6() {
        ends.client = h.v6.map_or(IpAddr::V4(h.v4), IpAddr::V6);
    }
    let mut p = Plan::new(ends, t);
    let mut qtypes = vec![dns::TYPE_A];
    if h.v6.is_some() {
        qtypes.push(dns::TYPE_AAAA);
    }
    let ttl = 60 + h.rng.below(240) as u32;
    let ids: Vec<u16> = qtypes.iter().map(|_| h.rng.next_u32() as u16).collect();
    for (i, (q, id)) in qtypes.iter().zip(&ids).enumerate() {
        p.dgram(
            Side::Client,
            if i == 0 { 0 } else { 80 },
            Payload::Bytes(dns::query(*id, name, *q)),
        );
    }
    p.wait(rtt);
    for (i, (q, id)) in qtypes.iter().zip(&ids).enumerate() {
        let r = dns::response(*id, name, *q, answer, ttl, rcode);
        p.dgram(
            Side::Server,
            if i == 0 { 0 } else { 150 },
            Payload::Bytes(r),
        );
    }
    finish(
        p,
        Transport::Udp,
        &mut h.rng,
        "dns",
        "",
        "other",
        outcome,
        name,
        LazyState::default(),
    )
}

/// What the path does to a TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    None,
    Reset,
    Drop,
    Throttle,
    Sinkhole,
}

/// A TLS 1.3 connection: handshake, then `(request, response, think)` exchanges, then FIN close.
#[allow(clippy::too_many_arguments)]
fn tls_conn(
    h: &mut Host,
    t: u64,
    server: IpAddr,
    sport: u16,
    sni: Option<&str>,
    profile: tls::Profile,
    exchanges: &[(usize, usize, u64)],
    effect: Effect,
    throttle: f64,
) -> (Plan, &'static str) {
    let cport = h.ephemeral();
    let srv_rtt = if effect == Effect::Sinkhole {
        1_500
    } else {
        server_rtt(&mut h.rng)
    };
    let ends = h.ends(server, cport, sport, srv_rtt);
    let mut p = Plan::new(ends, t);
    match effect {
        Effect::Drop => {
            p.tcp_open(false);
            return (p, "dropped");
        }
        Effect::Sinkhole => {
            p.push(Side::Client, flags::SYN, Payload::None);
            p.wait(srv_rtt);
            p.push(Side::Server, flags::RST | flags::ACK, Payload::None);
            return (p, "dns-bogus");
        }
        _ => {}
    }
    p.tcp_open(true);
    let alpn: &[&str] = if profile == tls::Profile::Tor {
        &[]
    } else {
        &["h2", "http/1.1"]
    };
    let (ch, sid) = tls::client_hello(&mut h.rng, sni, alpn, profile);
    p.send_now(Side::Client, Payload::Bytes(ch));
    if effect == Effect::Reset {
        // The injector sits at the capture point: both resets follow the ClientHello at once.
        p.wait(h.rng.range(200, 900));
        p.push(Side::Server, flags::RST | flags::ACK, Payload::None);
        p.wait(40);
        p.push(Side::Client, flags::RST, Payload::None);
        return (p, "reset");
    }
    // A shaper lets the handshake through but paces the server's segments to `throttle`
    // bytes/s; the user waits a while for the page, then gives up and closes.
    let throttled_gap = (SEG as f64 / throttle.max(100.0) * 1e6) as u64;
    let mut first = tls::server_hello(&mut h.rng, &sid);
    let cert = h.rng.range(1_000, 3_200) as usize;
    let in_first = cert.min(SEG - first.len());
    tls::app_data(&mut first, &mut h.rng, in_first);
    p.send(Side::Server, Payload::Bytes(first));
    if cert > in_first {
        p.wait(if effect == Effect::Throttle {
            throttled_gap
        } else {
            h.seg_gap()
        });
        p.push(
            Side::Server,
            flags::PSH | flags::ACK,
            Lazy::TlsRecord.payload(cert - in_first),
        );
    }
    let mut fin = tls::change_cipher_spec().to_vec();
    tls::app_data(&mut fin, &mut h.rng, 58);
    p.send(Side::Client, Payload::Bytes(fin));
    if effect == Effect::Throttle {
        let patience_s = h.rng.lognormal(45.0, 0.5).clamp(25.0, 180.0);
        let req = exchanges.first().map_or(500, |e| e.0);
        p.send_now(Side::Client, Lazy::TlsRecord.payload(req));
        let delivered = (throttle.max(100.0) * patience_s) as usize;
        p.tcp_bulk(Side::Server, delivered, Lazy::TlsRecord, SEG, throttled_gap);
        p.tcp_close();
        return (p, "throttled");
    }
    let gap = h.seg_gap();
    for (req, resp, think) in exchanges {
        p.wait(*think);
        p.send_now(Side::Client, Lazy::TlsRecord.payload(*req));
        p.tcp_bulk(Side::Server, *resp, Lazy::TlsRecord, SEG, gap);
    }
    p.tcp_close();
    (p, "ok")
}

fn scaled(x: f64, volume: f64) -> usize {
    (x * volume).max(200.0) as usize
}

/// Exchanges of an ordinary site visit.
fn exchanges(kind: Kind, rng: &mut Rng, volume: f64) -> Vec<(usize, usize, u64)> {
    match kind {
        Kind::Api => (0..1 + rng.below(3))
            .map(|_| {
                (
                    rng.range(120, 700) as usize,
                    scaled(rng.lognormal(2_500.0, 0.8), volume),
                    rng.range(50_000, 3_000_000),
                )
            })
            .collect(),
        Kind::Web | Kind::Http => (0..1 + rng.below(if volume < 0.1 { 3 } else { 6 }))
            .map(|_| {
                (
                    rng.range(300, 1_100) as usize,
                    scaled(rng.lognormal(18_000.0, 1.0), volume),
                    rng.range(100_000, 8_000_000),
                )
            })
            .collect(),
        Kind::Video => {
            let chunks = ((rng.range(3, 25) as f64) * volume.min(1.0))
                .ceil()
                .max(1.0) as u64;
            (0..chunks)
                .map(|_| {
                    (
                        rng.range(400, 800) as usize,
                        scaled(rng.lognormal(700_000.0, 0.5), volume),
                        rng.range(1_500_000, 9_000_000),
                    )
                })
                .collect()
        }
    }
}

/// A cleartext HTTP/1.1 fetch on port 80.
fn http_conn(h: &mut Host, t: u64, site: &Site, server: IpAddr, volume: f64) -> NewFlow {
    let cport = h.ephemeral();
    let rtt = server_rtt(&mut h.rng);
    let ends = h.ends(server, cport, 80, rtt);
    let mut p = Plan::new(ends, t);
    p.tcp_open(true);
    let path = if site.name.contains("msftconnecttest") {
        "/connecttest.txt"
    } else {
        "/"
    };
    p.send_now(Side::Client, Payload::Bytes(http::request(site.name, path)));
    let body = if path == "/" {
        scaled(h.rng.lognormal(6_000.0, 0.6), volume)
    } else {
        22
    };
    let resp = http::response(&mut h.rng, "text/plain", body);
    let gap = h.seg_gap();
    p.wait(p.turn(Side::Server));
    let chunks: Vec<Vec<u8>> = resp.chunks(SEG).map(<[u8]>::to_vec).collect();
    let n = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        p.push(Side::Server, flags::PSH | flags::ACK, Payload::Bytes(c));
        if i % 2 == 1 || i + 1 == n {
            let at = p.t + p.ends.cli_rtt;
            p.push_at(at, Side::Client, flags::ACK, Payload::None);
        }
        p.wait(gap);
    }
    p.wait(p.ends.cli_rtt + 100);
    p.tcp_close();
    finish(
        p,
        Transport::Tcp,
        &mut h.rng,
        "http",
        site.app,
        "web",
        "ok",
        site.name,
        LazyState::default(),
    )
}

/// HTTP/3 over QUIC on UDP/443 (RFC 9114) for a share of unblocked visits to Google and Meta
/// properties, as Chromium and the Meta apps use it: the client Initial (RFC 9001 keys, SNI and
/// ALPN `h3` readable by any observer), the server's Initial + Handshake flight, the client's
/// Initial ACK + Handshake Finished, then the exchanges in short-header packets. None when the
/// visit stays on TLS/TCP.
fn quic_visit(
    h: &mut Host,
    t: u64,
    site: &Site,
    server: IpAddr,
    block: Option<BlockMethod>,
    volume: f64,
) -> Option<NewFlow> {
    use super::proto::quic;
    let share = match site.app {
        "google" | "youtube" => 0.6,
        "facebook" | "instagram" => 0.5,
        _ => 0.0,
    };
    if block.is_some() || share == 0.0 || !h.rng.chance(share) {
        return None;
    }
    let ex = exchanges(site.kind, &mut h.rng, volume);
    let conn = quic::Conn::new(&mut h.rng, quic::Version::V1);
    // Client Initial datagrams: Chromium 1250 bytes, others 1252 or 1357; servers fill 1350.
    let first_len = [1_250, 1_252, 1_357][h.rng.weighted(&[0.6, 0.2, 0.2])];
    let full = if site.app == "facebook" || site.app == "instagram" {
        1_252
    } else {
        1_350
    };
    let initial = conn.client_initial(&mut h.rng, site.name, &["h3"], first_len)?;
    let handshake_bytes = h.rng.range(2_500, 5_500) as usize;
    let flight = conn.server_flight(&mut h.rng, handshake_bytes, full)?;
    let finished = conn.client_finished(&mut h.rng, first_len)?;
    let cport = h.ephemeral();
    let rtt = server_rtt(&mut h.rng);
    let ends = h.ends(server, cport, 443, rtt);
    let mut p = Plan::new(ends, t);
    let gap = h.seg_gap();
    p.dgram(Side::Client, 0, Payload::Bytes(initial));
    p.wait(rtt);
    for (i, d) in flight.into_iter().enumerate() {
        p.dgram(
            Side::Server,
            if i == 0 { 0 } else { gap },
            Payload::Bytes(d),
        );
    }
    let c = p.ends.cli_rtt;
    p.dgram(Side::Client, c, Payload::Bytes(finished));
    let short = Lazy::QuicShort;
    // Per 1-RTT packet: flags, 8-byte id, packet number, frame headers, AEAD tag.
    let overhead = 40;
    for (req, resp, think) in &ex {
        p.wait(*think);
        p.dgram(Side::Client, 30, short.payload(req + overhead));
        p.wait(p.ends.srv_rtt);
        let per = full - overhead;
        let n = resp.div_ceil(per).max(1);
        for k in 0..n {
            let len = if k + 1 == n {
                resp - k * per + overhead
            } else {
                full
            };
            p.push(Side::Server, 0, short.payload(len));
            // ACK-only packets, one per two ack-eliciting packets (RFC 9000 §13.2.2).
            if k % 2 == 1 || k + 1 == n {
                let at = p.t + p.ends.cli_rtt;
                let ack = short.payload(h.rng.range(30, 45) as usize);
                p.push_at(at, Side::Client, 0, ack);
            }
            p.wait(gap);
        }
        p.wait(p.ends.cli_rtt);
    }
    // CONNECTION_CLOSE when the page goes away.
    let close = short.payload(h.rng.range(40, 60) as usize);
    p.dgram(Side::Client, h.rng.range(1_000_000, 20_000_000), close);
    let lazy = LazyState {
        quic_dcid: conn.short_dcids(),
        ..LazyState::default()
    };
    Some(finish(
        p,
        Transport::Udp,
        &mut h.rng,
        "quic",
        site.app,
        "web",
        "ok",
        site.name,
        lazy,
    ))
}

/// An ordinary visit to `site`; `block` is the method hitting it (platform sites under block).
pub fn visit(
    h: &mut Host,
    t: u64,
    site: &Site,
    block: Option<BlockMethod>,
    cfg: &SessionCfg,
) -> Vec<NewFlow> {
    let mut out = Vec::new();
    let v6 = h.v6.is_some();
    let addr = catalog::site_addr(site, v6, &mut h.rng);
    let mut t = t;
    let outcome = block.map_or("ok", BlockMethod::outcome);
    let mut connect_to = addr;
    // Blocked-by-DNS attempts always ask (negative answers are cached only briefly).
    let ask = matches!(block, Some(BlockMethod::Dns | BlockMethod::DnsBogus))
        || h.rng.chance(cfg.dns_share);
    if ask {
        let (answer, nx, dns_outcome) = match block {
            Some(BlockMethod::Dns) => (vec![], true, "nxdomain"),
            Some(BlockMethod::DnsBogus) => {
                (vec![IpAddr::V4(catalog::SINKHOLE)], false, "dns-bogus")
            }
            _ => {
                let mut a = vec![IpAddr::V4(catalog::addr_v4(
                    site.v4,
                    site.name,
                    h.rng.below(4),
                ))];
                if let (Some(p6), true) = (site.v6, v6) {
                    a.push(IpAddr::V6(catalog::addr_v6(p6, site.name, h.rng.below(4))));
                }
                if let Some(x) = a.iter().find(|x| x.is_ipv6() == addr.is_ipv6()) {
                    connect_to = *x;
                }
                (a, false, "ok")
            }
        };
        let f = dns_lookup(h, t, site.name, &answer, nx, dns_outcome);
        t = f.end + h.rng.range(500, 5_000);
        out.push(f);
        match block {
            Some(BlockMethod::Dns) => return out,
            Some(BlockMethod::DnsBogus) => connect_to = IpAddr::V4(catalog::SINKHOLE),
            _ => {}
        }
    }
    if site.kind == Kind::Http {
        out.push(http_conn(h, t, site, connect_to, cfg.volume));
        return out;
    }
    if let Some(f) = quic_visit(h, t, site, connect_to, block, cfg.volume) {
        out.push(f);
        return out;
    }
    let effect = match block {
        None | Some(BlockMethod::Dns) => Effect::None,
        Some(BlockMethod::DnsBogus) => Effect::Sinkhole,
        Some(BlockMethod::Reset) => Effect::Reset,
        Some(BlockMethod::Drop) => Effect::Drop,
        Some(BlockMethod::Throttle) => Effect::Throttle,
    };
    let ex = exchanges(site.kind, &mut h.rng, cfg.volume);
    let attempts = if effect == Effect::Reset { 2 } else { 1 };
    for _ in 0..attempts {
        let (p, oc) = tls_conn(
            h,
            t,
            connect_to,
            443,
            Some(site.name),
            tls::Profile::Browser,
            &ex,
            effect,
            cfg.throttle_rate,
        );
        let f = finish(
            p,
            Transport::Tcp,
            &mut h.rng,
            "tls",
            site.app,
            "web",
            oc,
            site.name,
            LazyState::default(),
        );
        t = f.end + h.rng.range(300_000, 2_000_000);
        out.push(f);
    }
    debug_assert!(outcome == "ok" || block.is_some());
    out
}

/// RCODE 2 (RFC 1035 §4.1.1): the resolver could not answer (here: it cannot reach upstream).
const RCODE_SERVFAIL: u8 = 2;

/// A visit while the access network's upstream is down (an outage, not a block): the resolver
/// cannot recurse and answers SERVFAIL, and the SYNs to the site go unanswered.
pub fn outage_visit(h: &mut Host, t: u64, site: &Site, cfg: &SessionCfg) -> Vec<NewFlow> {
    let mut out = Vec::new();
    let mut t = t;
    if h.rng.chance(cfg.dns_share) {
        let f = dns_lookup_rcode(h, t, site.name, &[], RCODE_SERVFAIL, "servfail");
        t = f.end + h.rng.range(500, 5_000);
        out.push(f);
    }
    let addr = catalog::site_addr(site, h.v6.is_some(), &mut h.rng);
    let (port, protocol) = if site.kind == Kind::Http {
        (80, "http")
    } else {
        (443, "tls")
    };
    let (p, oc) = tls_conn(
        h,
        t,
        addr,
        port,
        Some(site.name),
        tls::Profile::Browser,
        &[],
        Effect::Drop,
        1.0,
    );
    out.push(finish(
        p,
        Transport::Tcp,
        &mut h.rng,
        protocol,
        site.app,
        "web",
        oc,
        site.name,
        LazyState::default(),
    ));
    out
}

/// Longest silence inside a tunnel session, µs: below common NAT/flow-table UDP timeouts
/// (120 s), as apps keep tunnels alive.
const MAX_IDLE: u64 = 90_000_000;

/// Mean gap between bursts: `base` µs at full volume, sparser (up to 40 s) in small samples.
fn burst_gap(base: f64, volume: f64) -> f64 {
    (base / volume.max(1e-4).sqrt()).min(40e6)
}

/// Bursts of tunnelled traffic over UDP until `until`: a few client packets, then a run of
/// full-size server packets with a small client packet (inner TCP ACK) for every second one.
#[allow(clippy::too_many_arguments)]
fn udp_bursts(
    p: &mut Plan,
    rng: &mut Rng,
    until: u64,
    volume: f64,
    kind: Lazy,
    full: usize,
    ack: usize,
    wg_rekey: bool,
) {
    let mean_gap = burst_gap(8e6, volume);
    let mut last_hs = p.t;
    loop {
        p.wait((rng.exp(mean_gap) as u64 + 1_000).min(MAX_IDLE));
        if p.t > until {
            break;
        }
        if wg_rekey && p.t.saturating_sub(last_hs) > 120_000_000 {
            // REKEY_AFTER_TIME (whitepaper §6.1): a fresh handshake with new indices.
            p.dgram(Side::Client, 0, Lazy::WgInit.payload(0));
            let rtt = p.ends.srv_rtt;
            p.dgram(Side::Server, rtt, Lazy::WgResp.payload(0));
            let c = p.ends.cli_rtt;
            p.dgram(Side::Client, c, Lazy::WgData.payload(32));
            last_hs = p.t;
        }
        for _ in 0..1 + rng.below(2) {
            p.dgram(
                Side::Client,
                rng.range(30, 3_000),
                kind.payload(rng.range(ack as u64, 700) as usize),
            );
        }
        p.wait(p.ends.srv_rtt);
        let n = 1 + rng.below((8.0 * volume.sqrt()).clamp(1.0, 8.0) as u64);
        for i in 0..n {
            p.dgram(
                Side::Server,
                rng.range(200, 1_500),
                kind.payload(full - rng.below(3) as usize * 16),
            );
            if i % 2 == 1 {
                let at = p.t + p.ends.cli_rtt;
                p.push_at(at, Side::Client, 0, kind.payload(ack));
            }
        }
        p.wait(p.ends.cli_rtt);
    }
}

/// Bursts of tunnelled traffic over an open TCP connection until `until`.
fn tcp_bursts(
    p: &mut Plan,
    rng: &mut Rng,
    until: u64,
    volume: f64,
    kind: Lazy,
    seg_len: usize,
    gap: u64,
) {
    let mean_gap = burst_gap(10e6, volume);
    loop {
        p.wait((rng.exp(mean_gap) as u64 + 1_000).min(MAX_IDLE));
        if p.t > until {
            break;
        }
        p.send_now(Side::Client, kind.payload(rng.range(100, 700) as usize));
        let total = (rng.lognormal(12_000.0, 1.0) * volume.sqrt()).max(200.0) as usize;
        p.tcp_bulk(Side::Server, total, kind, seg_len, gap);
    }
}

/// A small TLS API call to a VPN provider's API (recognisable by SNI).
fn provider_api(h: &mut Host, t: u64, sni: &str, app: &str, volume: f64) -> NewFlow {
    let server = IpAddr::V4(catalog::addr_v4(
        (Ipv4Addr::new(104, 16, 0, 0), 13),
        sni,
        h.rng.below(4),
    ));
    let ex = vec![(300, scaled(3_000.0, volume.max(0.5)), 50_000)];
    let (p, oc) = tls_conn(
        h,
        t,
        server,
        443,
        Some(sni),
        tls::Profile::Library,
        &ex,
        Effect::None,
        1.0,
    );
    finish(
        p,
        Transport::Tcp,
        &mut h.rng,
        "tls",
        app,
        "vpn",
        oc,
        sni,
        LazyState::default(),
    )
}

fn wireguard_flow(
    h: &mut Host,
    t: u64,
    a: &Adoption,
    until: u64,
    volume: f64,
    app: &str,
) -> NewFlow {
    let cport = h.ephemeral();
    let rtt = server_rtt(&mut h.rng);
    let ends = h.ends(IpAddr::V4(a.server), cport, a.server_port, rtt);
    let mut p = Plan::new(ends, t);
    p.dgram(Side::Client, 0, Lazy::WgInit.payload(0));
    p.dgram(Side::Server, rtt, Lazy::WgResp.payload(0));
    let c = p.ends.cli_rtt;
    p.dgram(Side::Client, c, Lazy::WgData.payload(32));
    let full = wireguard::data_len(wireguard::MAX_INNER);
    let ack = wireguard::data_len(52);
    udp_bursts(
        &mut p,
        &mut h.rng,
        until,
        volume,
        Lazy::WgData,
        full,
        ack,
        true,
    );
    finish(
        p,
        Transport::Udp,
        &mut h.rng,
        "wireguard",
        app,
        "vpn",
        "ok",
        "",
        LazyState::default(),
    )
}

/// OpenVPN over UDP: hard resets with echoed session ids, a TLS handshake in P_CONTROL_V1
/// packets with piggy-backed acks, then P_DATA_V2.
fn openvpn_flow(h: &mut Host, t: u64, a: &Adoption, until: u64, volume: f64, app: &str) -> NewFlow {
    let cport = h.ephemeral();
    let rtt = server_rtt(&mut h.rng);
    let ends = h.ends(IpAddr::V4(a.server), cport, a.server_port, rtt);
    let mut p = Plan::new(ends, t);
    let r = &mut h.rng;
    let (cs, ss) = (r.next_u64(), r.next_u64());
    let now = (t / 1_000_000) as u32;
    let ctl =
        |r: &mut Rng, opcode, sid, pid, acks: &[u32], rsid, msg: Option<u32>, payload: &[u8]| {
            let c = openvpn::Control {
                opcode,
                key_id: 0,
                session_id: sid,
                packet_id: pid,
                net_time: now,
                acks,
                remote_session_id: rsid,
                message_id: msg,
                payload,
            };
            Payload::Bytes(openvpn::control(r, &c))
        };
    use openvpn::{
        P_ACK_V1, P_CONTROL_HARD_RESET_CLIENT_V2 as HRC, P_CONTROL_HARD_RESET_SERVER_V2 as HRS,
        P_CONTROL_V1,
    };
    let c = p.ends.cli_rtt;
    p.dgram(Side::Client, 0, ctl(r, HRC, cs, 1, &[], 0, Some(0), &[]));
    p.dgram(
        Side::Server,
        rtt,
        ctl(r, HRS, ss, 1, &[0], cs, Some(0), &[]),
    );
    let (ch, sid) = tls::client_hello(r, None, &[], tls::Profile::Library);
    p.dgram(
        Side::Client,
        c,
        ctl(r, P_CONTROL_V1, cs, 2, &[0], ss, Some(1), &ch),
    );
    let sh = tls::server_hello(r, &sid);
    p.dgram(
        Side::Server,
        rtt,
        ctl(r, P_CONTROL_V1, ss, 2, &[1], cs, Some(1), &sh),
    );
    let mut certs = Vec::new();
    tls::app_data(&mut certs, r, 1_050);
    p.dgram(
        Side::Server,
        200,
        ctl(r, P_CONTROL_V1, ss, 3, &[], cs, Some(2), &certs),
    );
    p.dgram(
        Side::Client,
        c,
        ctl(r, P_ACK_V1, cs, 3, &[1, 2], ss, None, &[]),
    );
    let mut fin = tls::change_cipher_spec().to_vec();
    tls::app_data(&mut fin, r, 58);
    p.dgram(
        Side::Client,
        100,
        ctl(r, P_CONTROL_V1, cs, 4, &[], ss, Some(2), &fin),
    );
    let mut push = Vec::new();
    tls::app_data(&mut push, r, 350);
    p.dgram(
        Side::Server,
        rtt,
        ctl(r, P_CONTROL_V1, ss, 4, &[2], cs, Some(3), &push),
    );
    p.dgram(
        Side::Client,
        c,
        ctl(r, P_ACK_V1, cs, 5, &[3], ss, None, &[]),
    );
    let lazy = LazyState {
        ovpn_peer_id: r.below(64) as u32,
        ..LazyState::default()
    };
    udp_bursts(
        &mut p,
        &mut h.rng,
        until,
        volume,
        Lazy::OvpnData,
        1_424,
        100,
        false,
    );
    finish(
        p,
        Transport::Udp,
        &mut h.rng,
        "openvpn",
        app,
        "vpn",
        "ok",
        "",
        lazy,
    )
}

/// IKEv2: IKE_SA_INIT on UDP 500, then IKE_AUTH and ESP-in-UDP on 4500.
fn ikev2_flows(h: &mut Host, t: u64, a: &Adoption, until: u64, volume: f64) -> Vec<NewFlow> {
    let rtt = server_rtt(&mut h.rng);
    let server = IpAddr::V4(a.server);
    let ends = h.ends(server, 500, 500, rtt);
    let mut p = Plan::new(ends, t);
    let (spi_i, spi_r) = (h.rng.next_u64() | 1, h.rng.next_u64() | 1);
    p.dgram(
        Side::Client,
        0,
        Payload::Bytes(ike::sa_init_request(&mut h.rng, spi_i)),
    );
    p.dgram(
        Side::Server,
        rtt,
        Payload::Bytes(ike::sa_init_response(&mut h.rng, spi_i, spi_r)),
    );
    let init = finish(
        p,
        Transport::Udp,
        &mut h.rng,
        "ipsec_ike",
        "",
        "vpn",
        "ok",
        "",
        LazyState::default(),
    );
    let t2 = init.end + h.cli_rtt + 2_000;
    let ends = h.ends(server, 4500, 4500, rtt);
    let mut p = Plan::new(ends, t2);
    let enc_i = h.rng.range(300, 700) as usize;
    let enc_r = h.rng.range(900, 1_300) as usize;
    p.dgram(
        Side::Client,
        0,
        Payload::Bytes(ike::auth(&mut h.rng, spi_i, spi_r, false, enc_i)),
    );
    p.dgram(
        Side::Server,
        rtt,
        Payload::Bytes(ike::auth(&mut h.rng, spi_i, spi_r, true, enc_r)),
    );
    let spi = |r: &mut Rng| 0x100 + (r.next_u32() % 0xFFFF_FE00);
    let lazy = LazyState {
        esp_spi: [spi(&mut h.rng), spi(&mut h.rng)],
        ..LazyState::default()
    };
    udp_bursts(
        &mut p,
        &mut h.rng,
        until,
        volume,
        Lazy::Esp,
        1_436,
        92,
        false,
    );
    // The 4500 flow opens with IKE_AUTH both ways, then carries ESP: like the tool, the truth
    // names it by the exchange that identifies it (ipsec_ike; ESP alone would be ipsec_esp).
    let auth = finish(
        p,
        Transport::Udp,
        &mut h.rng,
        "ipsec_ike",
        "",
        "vpn",
        "ok",
        "",
        lazy,
    );
    vec![init, auth]
}

fn ssh_flow(h: &mut Host, t: u64, a: &Adoption, until: u64, volume: f64) -> NewFlow {
    let cport = h.ephemeral();
    let rtt = server_rtt(&mut h.rng);
    let ends = h.ends(IpAddr::V4(a.server), cport, a.server_port, rtt);
    let mut p = Plan::new(ends, t);
    p.tcp_open(true);
    p.send(Side::Server, Payload::Bytes(ssh::SERVER_BANNER.to_vec()));
    p.send_now(Side::Client, Payload::Bytes(ssh::CLIENT_BANNER.to_vec()));
    p.send_now(
        Side::Client,
        Payload::Bytes(ssh::kexinit(&mut h.rng, false)),
    );
    p.send(Side::Server, Payload::Bytes(ssh::kexinit(&mut h.rng, true)));
    p.send(Side::Client, Payload::Bytes(ssh::ecdh_init(&mut h.rng)));
    p.send(
        Side::Server,
        Payload::Bytes(ssh::ecdh_reply_newkeys(&mut h.rng)),
    );
    p.send(Side::Client, Payload::Bytes(ssh::newkeys(&mut h.rng)));
    p.send_now(Side::Client, Lazy::SshEncrypted.payload(52));
    p.send(Side::Server, Lazy::SshEncrypted.payload(52));
    let gap = h.seg_gap();
    tcp_bursts(
        &mut p,
        &mut h.rng,
        until,
        volume,
        Lazy::SshEncrypted,
        1_444,
        gap,
    );
    p.tcp_close();
    finish(
        p,
        Transport::Tcp,
        &mut h.rng,
        "ssh",
        "",
        "tunnel",
        "ok",
        "",
        LazyState::default(),
    )
}

fn socks_flow(h: &mut Host, t: u64, a: &Adoption, until: u64, volume: f64) -> NewFlow {
    let cport = h.ephemeral();
    let rtt = server_rtt(&mut h.rng);
    let ends = h.ends(IpAddr::V4(a.server), cport, a.server_port, rtt);
    let mut p = Plan::new(ends, t);
    p.tcp_open(true);
    p.send_now(Side::Client, Payload::Bytes(socks::GREETING.to_vec()));
    p.send(Side::Server, Payload::Bytes(socks::CHOICE.to_vec()));
    p.send(Side::Client, Payload::Bytes(socks::connect("x.com", 443)));
    p.send(
        Side::Server,
        Payload::Bytes(socks::reply(a.server, h.rng.range(30_000, 60_000) as u16)),
    );
    let (ch, sid) = tls::client_hello(
        &mut h.rng,
        Some("x.com"),
        &["h2", "http/1.1"],
        tls::Profile::Browser,
    );
    p.send(Side::Client, Payload::Bytes(ch));
    let mut first = tls::server_hello(&mut h.rng, &sid);
    tls::app_data(&mut first, &mut h.rng, 1_200);
    p.send(Side::Server, Payload::Bytes(first));
    let mut fin = tls::change_cipher_spec().to_vec();
    tls::app_data(&mut fin, &mut h.rng, 58);
    p.send(Side::Client, Payload::Bytes(fin));
    let gap = h.seg_gap();
    tcp_bursts(&mut p, &mut h.rng, until, volume, Lazy::TlsRecord, SEG, gap);
    p.tcp_close();
    finish(
        p,
        Transport::Tcp,
        &mut h.rng,
        "socks",
        "x",
        "proxy",
        "ok",
        "x.com",
        LazyState::default(),
    )
}

/// Tor link TLS to a relay: random `www.<letters>.com` SNI, then 514-byte cells in records.
fn tor_flow(h: &mut Host, t: u64, a: &Adoption, until: u64, volume: f64) -> NewFlow {
    let n = h.rng.range(8, 20) as usize;
    let sni = format!("www.{}.com", h.rng.label(n));
    let (mut p, _) = tls_conn(
        h,
        t,
        IpAddr::V4(a.server),
        a.server_port,
        Some(&sni),
        tls::Profile::Tor,
        &[],
        Effect::None,
        1.0,
    );
    // Drop the FIN close planned by tls_conn; the circuit stays open for the session.
    p.steps.truncate(p.steps.len() - 3);
    p.t = p.steps.last().map_or(t, |s| s.t);
    // The circuit is built first (tor-spec §5.1, §5.3): the client's NETINFO and CREATE2, then
    // one RELAY_EARLY(EXTEND2) per further hop, each a single 514-byte cell in its own TLS record
    // (5-byte header + 514 + 17 bytes of TLS 1.3 overhead), each answered by one cell (CREATED2,
    // RELAY(EXTENDED2)) after a round trip.
    p.send(Side::Client, Lazy::TlsRecord.payload(514 + 22));
    for _hop in 0..3 {
        p.send_now(Side::Client, Lazy::TlsRecord.payload(514 + 22));
        p.send(Side::Server, Lazy::TlsRecord.payload(514 + 22));
    }
    // Three cells in one record: 3 * 514 + 22 bytes of record overhead.
    let cell_rec = 3 * 514 + 22;
    let gap = h.seg_gap();
    let mean_gap = burst_gap(10e6, volume);
    loop {
        p.wait((h.rng.exp(mean_gap) as u64 + 1_000).min(MAX_IDLE));
        if p.t > until {
            break;
        }
        p.send_now(Side::Client, Lazy::TlsRecord.payload(514 + 22));
        let cells = 1 + h.rng.below((20.0 * volume.sqrt()).max(1.0) as u64) as usize;
        p.tcp_bulk(
            Side::Server,
            cells * 1_264,
            Lazy::TlsRecord,
            cell_rec.min(SEG),
            gap,
        );
    }
    p.tcp_close();
    finish(
        p,
        Transport::Tcp,
        &mut h.rng,
        "tor",
        "tor",
        "tor",
        "ok",
        &sni,
        LazyState::default(),
    )
}

/// A fully encrypted stream (Shadowsocks, Psiphon OSSH): no plaintext at any offset.
fn encrypted_stream(
    h: &mut Host,
    t: u64,
    a: &Adoption,
    until: u64,
    volume: f64,
    protocol: &'static str,
    app: &str,
) -> NewFlow {
    let cport = h.ephemeral();
    let rtt = server_rtt(&mut h.rng);
    let ends = h.ends(IpAddr::V4(a.server), cport, a.server_port, rtt);
    let mut p = Plan::new(ends, t);
    p.tcp_open(true);
    let inner = h.rng.range(100, 500) as usize;
    p.send_now(
        Side::Client,
        Lazy::FullyEncrypted.payload(socks::shadowsocks_first_len(inner)),
    );
    // The reply is judged by the same exemption rules as the first payload (the tool wants
    // both sides random), so it is drawn like the first payload, not as arbitrary bytes.
    p.send(
        Side::Server,
        Lazy::FullyEncrypted.payload(h.rng.range(80, 1_400) as usize),
    );
    let gap = h.seg_gap();
    tcp_bursts(&mut p, &mut h.rng, until, volume, Lazy::Random, SEG, gap);
    p.tcp_close();
    finish(
        p,
        Transport::Tcp,
        &mut h.rng,
        protocol,
        app,
        "obfuscated",
        "ok",
        "",
        LazyState::default(),
    )
}

/// One tunnel session of the host's adopted tool, lasting about `duration` µs.
pub fn tunnel(h: &mut Host, t: u64, a: &Adoption, duration: u64, volume: f64) -> Vec<NewFlow> {
    let until = t + duration;
    match a.tool {
        Tool::WireGuard => vec![wireguard_flow(h, t, a, until, volume, "")],
        Tool::NordVpn => {
            let api = provider_api(h, t, "api.nordvpn.com", "nordvpn", volume);
            let start = api.end + 50_000;
            vec![api, wireguard_flow(h, start, a, until, volume, "nordvpn")]
        }
        Tool::OpenVpn => vec![openvpn_flow(h, t, a, until, volume, "")],
        Tool::ProtonVpn => {
            let api = provider_api(h, t, "vpn-api.proton.me", "protonvpn", volume);
            let start = api.end + 50_000;
            vec![api, openvpn_flow(h, start, a, until, volume, "protonvpn")]
        }
        Tool::Ikev2 => ikev2_flows(h, t, a, until, volume),
        Tool::Ssh => vec![ssh_flow(h, t, a, until, volume)],
        Tool::Socks5 => vec![socks_flow(h, t, a, until, volume)],
        Tool::Tor => vec![tor_flow(h, t, a, until, volume)],
        Tool::Shadowsocks => vec![encrypted_stream(h, t, a, until, volume, "shadowsocks", "")],
        Tool::Psiphon => {
            let api = provider_api(h, t, "psiphon.ca", "psiphon", volume);
            let start = api.end + 50_000;
            vec![
                api,
                // The tool's token for a stream with no plaintext at any offset; the app is
                // in the application column.
                encrypted_stream(h, start, a, until, volume, "fully_encrypted", "psiphon"),
            ]
        }
    }
}

/// The server port a tool's server listens on.
pub fn tool_port(tool: Tool, rng: &mut Rng) -> u16 {
    match tool {
        Tool::WireGuard | Tool::NordVpn => 51_820,
        Tool::OpenVpn | Tool::ProtonVpn => 1_194,
        Tool::Ikev2 => 500,
        Tool::Ssh => 22,
        Tool::Socks5 => 1_080,
        Tool::Tor => 443,
        Tool::Shadowsocks => 8_388,
        Tool::Psiphon => rng.range(20_000, 40_000) as u16,
    }
}

/// The server a tool connects to.
pub fn tool_server(tool: Tool, host: u32, rng: &mut Rng) -> Ipv4Addr {
    let key = format!("{}-{}", tool.name(), host % 7);
    if tool == Tool::Tor {
        return catalog::addr_v4(catalog::TOR_RELAYS, &key, rng.below(64));
    }
    let pool = catalog::VPS[rng.below(catalog::VPS.len() as u64) as usize];
    catalog::addr_v4(pool, &key, rng.below(8))
}
