//! The scenario: presets, the host population with its diurnal/weekly activity, the block and
//! the adoption ramp, and the time-ordered scheduler that streams packets to the pcap writer
//! and flow rows to the truth file.
//!
//! Scheduling: one binary heap of pending events ordered by (time, insertion number): host
//! wake-ups, and the next packet of every open flow. Flows are planned when their session
//! starts (never earlier than the current time), so popping the heap yields packets in time
//! order while memory holds only open flows.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::catalog::{self, PLATFORM, SITES};
use super::flow::Flow;
use super::pcap_writer::PcapWriter;
use super::rng::Rng;
use super::session::{self, Adoption, BlockMethod, Host, NewFlow, SessionCfg, Tool};
use super::time::rfc3339_us;

/// When and how the platform is blocked.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockCfg {
    /// Unix seconds.
    pub start_s: i64,
    pub end_s: Option<i64>,
    pub methods: Vec<BlockMethod>,
}

/// A network outage (not a block): the upstream is down from `start_s` to `end_s` (Unix
/// seconds), so the resolver answers SERVFAIL and every connection to every site, platform and
/// control alike, goes unanswered (SYNs dropped). Tunnels are down too, so hosts only try
/// ordinary sites.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutageCfg {
    pub start_s: i64,
    pub end_s: i64,
}

/// Everything that shapes one generated capture.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub preset: String,
    pub seed: u64,
    /// Capture start, Unix seconds.
    pub start_s: i64,
    /// Local time offset from UTC (Pakistan: +5 h), for the daily curve.
    pub utc_offset_h: f64,
    /// Relative activity per local hour (the busiest hour sets the peak session rate).
    pub hourly: [f64; 24],
    /// Relative activity per weekday, Sunday first.
    pub weekly: [f64; 7],
    pub days: f64,
    pub hosts: u32,
    pub ipv6_share: f64,
    pub cgnat_share: f64,
    pub sessions_per_day: f64,
    pub x_user_share: f64,
    /// Share of an X user's sessions that go to the platform (non-users: 1 %).
    pub x_session_share: f64,
    /// Multiplies the choice weight of control sites ([`catalog::is_control`]) among the
    /// ordinary sites: more control attempts per window for the block-vs-outage comparison.
    pub control_weight: f64,
    pub session: SessionCfg,
    pub block: Option<BlockCfg>,
    pub outage: Option<OutageCfg>,
    pub adoption_share: f64,
    pub ramp_median_h: f64,
    pub ramp_sigma: f64,
    pub baseline_share: f64,
    pub mix: [f64; 10],
    /// Share of an adopter's sessions that run through the tunnel while blocked.
    pub tunnel_use: f64,
    pub tunnel_median_s: f64,
}

impl Config {
    pub fn start_us(&self) -> u64 {
        u64::try_from(self.start_s).unwrap_or(0) * 1_000_000
    }

    pub fn end_us(&self) -> u64 {
        self.start_us() + (self.days.max(0.0) * 86_400e6) as u64
    }

    fn block_us(&self) -> Option<(u64, u64)> {
        let b = self.block.as_ref()?;
        let s = u64::try_from(b.start_s).unwrap_or(0) * 1_000_000;
        let e = b
            .end_s
            .map_or(u64::MAX, |e| u64::try_from(e).unwrap_or(0) * 1_000_000);
        Some((s, e))
    }

    fn outage_us(&self) -> Option<(u64, u64)> {
        let o = self.outage?;
        let us = |s: i64| u64::try_from(s).unwrap_or(0) * 1_000_000;
        Some((us(o.start_s), us(o.end_s)))
    }

    /// Largest hourly and weekly activity (the thinning envelope of the session process).
    fn activity_max(&self) -> (f64, f64) {
        let max = |xs: &[f64]| xs.iter().copied().fold(0.0_f64, f64::max);
        (max(&self.hourly), max(&self.weekly))
    }
}

/// Named presets. Sizes with seed 1: `pk-x-2024-small` about 16 k packets / 6.8 MB (the
/// committed sample); `pk-x-2024` a week of 1000 hosts; `bench` is meant for
/// `--packets-target` (1 M packets in about 5 s, release build).
///
/// The shapes for checking detection against truth (80 busy hosts over two and a half days
/// from 16 February, block or outage at 20:00 PKT on the 17th): `no-block` (only the few VPN users of before),
/// `block-surge` (reset + DNS block, adopters within about an hour), `block-slow-ramp` (the
/// same block, adoption spread over days), `short-block` (three hours, then lifted),
/// `block-throttle` (the platform slowed to a crawl, not cut) and `outage` (platform and control
/// sites fail together for three hours: not a block).
pub const PRESETS: &[&str] = &[
    "pk-x-2024-small",
    "pk-x-2024",
    "bench",
    "no-block",
    "block-surge",
    "block-slow-ramp",
    "short-block",
    "block-throttle",
    "outage",
];

/// Pakistan, 17 February 2024: X became unreachable in the evening (PKT = UTC+5).
const PK_2024_02_17_PKT: i64 = 1_708_110_000; // 2024-02-17T00:00:00+05:00

pub fn preset(name: &str) -> Option<Config> {
    let base = Config {
        preset: name.to_string(),
        seed: 1,
        start_s: PK_2024_02_17_PKT,
        utc_offset_h: 5.0,
        hourly: HOURLY,
        weekly: WEEKLY,
        days: 2.0,
        hosts: 200,
        ipv6_share: 0.15,
        cgnat_share: 0.5,
        sessions_per_day: 1.0,
        x_user_share: 0.4,
        x_session_share: 0.3,
        control_weight: 1.0,
        session: SessionCfg {
            volume: 0.02,
            dns_share: 0.6,
            throttle_rate: 2_000.0,
        },
        block: Some(BlockCfg {
            start_s: PK_2024_02_17_PKT + 20 * 3600,
            end_s: None,
            methods: vec![BlockMethod::Reset, BlockMethod::Dns],
        }),
        outage: None,
        adoption_share: 0.3,
        ramp_median_h: 6.0,
        ramp_sigma: 0.9,
        baseline_share: 0.03,
        mix: Tool::MIX,
        tunnel_use: 0.7,
        tunnel_median_s: 180.0,
    };
    match name {
        "pk-x-2024-small" => Some(small_sample(base)),
        "pk-x-2024" => Some(Config {
            start_s: PK_2024_02_17_PKT - 3 * 86_400,
            days: 7.0,
            hosts: 1_000,
            sessions_per_day: 8.0,
            session: SessionCfg {
                volume: 0.08,
                ..base.session
            },
            block: Some(BlockCfg {
                start_s: PK_2024_02_17_PKT + 20 * 3600,
                end_s: None,
                methods: vec![BlockMethod::Reset, BlockMethod::Dns, BlockMethod::Drop],
            }),
            ramp_median_h: 18.0,
            tunnel_median_s: 600.0,
            ..base
        }),
        "bench" => Some(Config {
            start_s: PK_2024_02_17_PKT,
            days: 1.0,
            hosts: 2_000,
            sessions_per_day: 40.0,
            session: SessionCfg {
                volume: 0.2,
                ..base.session
            },
            block: Some(BlockCfg {
                start_s: PK_2024_02_17_PKT + 12 * 3600,
                end_s: None,
                methods: vec![BlockMethod::Reset],
            }),
            ramp_median_h: 3.0,
            tunnel_median_s: 300.0,
            ..base
        }),
        _ => detector_shape(name, base),
    }
}

/// The committed sample: a small ISP edge whose X traffic is dense enough for hourly windows.
/// Each subscriber's day is thinned to a couple of visits (the capture stays a few MB), but X
/// users keep most of theirs on X, so the evening peak sees a few dozen X attempts (lookups and
/// connections) an hour: the block detector judges a window on at least 10. It starts at 15:00
/// PKT the day before the block, so an evening and a day of such windows come before it,
/// and runs to the next afternoon for the adoption ramp. Few VPN users before the block, so
/// their hour-to-hour noise stays under the surge.
fn small_sample(base: Config) -> Config {
    let mut mix = Tool::MIX;
    if let Some(ssh) = Tool::ALL.iter().position(|t| *t == Tool::Ssh) {
        mix[ssh] = 0.08;
    }
    Config {
        start_s: PK_2024_02_17_PKT - 9 * 3600,
        days: 2.125,
        sessions_per_day: 1.7,
        x_user_share: 0.6,
        x_session_share: 0.8,
        control_weight: 3.0,
        session: SessionCfg {
            volume: 0.015,
            ..base.session
        },
        baseline_share: 0.02,
        mix,
        ..base
    }
}

/// The detector-check shapes (see [`PRESETS`]): busier hosts than the sample so that hourly
/// windows carry enough platform attempts, evening block at 20:00 PKT on the second day.
fn detector_shape(name: &str, base: Config) -> Option<Config> {
    let evening = PK_2024_02_17_PKT + 20 * 3600;
    let busy = Config {
        // Midnight PKT on the 16th: a day and a half of normal traffic before the block.
        start_s: PK_2024_02_17_PKT - 86_400,
        days: 2.5,
        hosts: 80,
        sessions_per_day: 24.0,
        x_user_share: 0.6,
        x_session_share: 0.35,
        control_weight: 4.0,
        adoption_share: 0.35,
        ramp_median_h: 1.0,
        ramp_sigma: 0.5,
        tunnel_use: 0.8,
        tunnel_median_s: 120.0,
        ..base
    };
    let block = |methods: Vec<BlockMethod>, hours: Option<i64>| BlockCfg {
        start_s: evening,
        end_s: hours.map(|h| evening + h * 3600),
        methods,
    };
    Some(match name {
        "no-block" => Config {
            block: None,
            ..busy
        },
        "block-surge" => busy,
        "block-slow-ramp" => Config {
            days: 4.0,
            ramp_median_h: 30.0,
            ramp_sigma: 0.6,
            ..busy
        },
        "short-block" => Config {
            block: Some(block(vec![BlockMethod::Reset, BlockMethod::Dns], Some(3))),
            ..busy
        },
        "block-throttle" => Config {
            block: Some(block(vec![BlockMethod::Throttle], None)),
            ..busy
        },
        "outage" => Config {
            block: None,
            outage: Some(OutageCfg {
                start_s: evening,
                end_s: evening + 3 * 3600,
            }),
            ..busy
        },
        _ => return None,
    })
}

/// Relative activity per local hour (quiet 02–06, evening peak 20–22).
pub const HOURLY: [f64; 24] = [
    0.30, 0.18, 0.10, 0.06, 0.05, 0.06, 0.12, 0.25, 0.40, 0.50, 0.55, 0.58, 0.60, 0.60, 0.58, 0.58,
    0.62, 0.70, 0.80, 0.90, 1.00, 1.00, 0.85, 0.55,
];
/// Relative activity per weekday, Sunday first (Friday midday prayers lower Friday a little).
pub const WEEKLY: [f64; 7] = [1.08, 0.97, 0.96, 0.96, 0.98, 0.93, 1.05];

/// Activity multiplier at `t_us` for a host whose curve is shifted by `phase_h`.
pub fn activity(cfg: &Config, phase_h: f64, t_us: u64) -> f64 {
    let local_s = t_us as f64 / 1e6 + cfg.utc_offset_h * 3600.0 - phase_h * 3600.0;
    let day = (local_s / 86_400.0).floor();
    let hour = (local_s - day * 86_400.0) / 3600.0;
    let h0 = (hour.floor() as usize) % 24;
    let frac = hour - hour.floor();
    let at = |i: usize| cfg.hourly.get(i % 24).copied().unwrap_or(0.0);
    let curve = at(h0) * (1.0 - frac) + at(h0 + 1) * frac;
    // 1970-01-01 was a Thursday (index 4 with Sunday = 0).
    let weekday = ((day as i64 + 4).rem_euclid(7)) as usize;
    curve * cfg.weekly.get(weekday).copied().unwrap_or(0.0)
}

/// Next session start after `t` by thinning a Poisson process with the host's rate.
fn next_wake(cfg: &Config, h: &mut Host, t: u64, end: u64) -> Option<u64> {
    let (hourly_max, weekly_max) = cfg.activity_max();
    let envelope = hourly_max * weekly_max;
    let max_rate = h.rate_peak * envelope; // per hour
    if max_rate <= 0.0 || !max_rate.is_finite() {
        return None;
    }
    let mut t = t;
    loop {
        t += (h.rng.exp(3_600e6 / max_rate) as u64).max(1);
        if t >= end {
            return None;
        }
        if h.rng.f64() * envelope < activity(cfg, h.phase_h, t) {
            return Some(t);
        }
    }
}

fn pool_addr(base: Ipv4Addr, k: u32) -> Ipv4Addr {
    // Skip .0 and .255 in every /24.
    Ipv4Addr::from(u32::from(base) + (k / 254) * 256 + k % 254 + 1)
}

/// The host population; deterministic per (seed, host index).
pub fn population(cfg: &Config) -> Vec<Host> {
    // Sessions per day stay `sessions_per_day` (times the weekday factor) whatever the scale
    // of the hourly curve.
    let hourly_sum: f64 = cfg.hourly.iter().sum();
    let (mut n10, mut n100) = (0u32, 0u32);
    let block = cfg.block_us();
    let (start, end) = (cfg.start_us(), cfg.end_us());
    let a = cfg.x_user_share.clamp(0.0, 1.0);
    let p_adopt_x = (cfg.adoption_share / (a + (1.0 - a) * 0.3).max(1e-9)).min(1.0);
    let mut baseline_mix = cfg.mix;
    for (w, t) in baseline_mix.iter_mut().zip(Tool::ALL) {
        if matches!(t, Tool::NordVpn | Tool::ProtonVpn | Tool::Ikev2) {
            *w *= 3.0;
        }
    }
    (0..cfg.hosts)
        .map(|i| {
            let mut rng = Rng::stream(cfg.seed, 1, u64::from(i));
            let v4 = if rng.chance(cfg.cgnat_share) && n100 < 4_000_000 {
                n100 += 1;
                pool_addr(Ipv4Addr::new(100, 64, 0, 0), n100 - 1)
            } else {
                n10 += 1;
                pool_addr(Ipv4Addr::new(10, 0, 0, 0), n10 - 1)
            };
            let v6 = rng.chance(cfg.ipv6_share).then(|| {
                let r = rng.next_u64();
                Ipv6Addr::new(
                    0xfd00,
                    0x5c1a,
                    (i >> 16) as u16,
                    i as u16,
                    (r >> 48) as u16,
                    (r >> 32) as u16,
                    (r >> 16) as u16,
                    r as u16 | 1,
                )
            });
            let resolver = match v6 {
                Some(_) if rng.chance(0.5) => IpAddr::V6(catalog::ISP_RESOLVER6),
                _ if rng.chance(0.8) => IpAddr::V4(catalog::ISP_RESOLVER),
                _ => IpAddr::V4(catalog::PUBLIC_RESOLVERS[rng.below(2) as usize]),
            };
            let x_user = rng.chance(a);
            let mut host = Host {
                idx: i,
                v4,
                v6,
                mac: [
                    0x02,
                    0x1A,
                    (i >> 24) as u8,
                    (i >> 16) as u8,
                    (i >> 8) as u8,
                    i as u8,
                ],
                ttl: if rng.chance(0.6) { 128 } else { 64 },
                rate_peak: cfg.sessions_per_day / hourly_sum * rng.lognormal(1.0, 0.6),
                phase_h: rng.normal().clamp(-3.0, 3.0),
                x_user,
                resolver,
                bw_bps: rng.lognormal(15e6, 0.7),
                cli_rtt: rng.range(1_000, 15_000),
                port: rng.range(32_768, 60_000) as u16,
                adoption: None,
                rng: Rng::new(0),
            };
            let baseline = rng.chance(cfg.baseline_share);
            let adopt_p = if x_user { p_adopt_x } else { p_adopt_x * 0.3 };
            let when = if baseline {
                Some(start)
            } else if let (Some((bs, be)), true) = (block, rng.chance(adopt_p)) {
                let delay = rng.lognormal(cfg.ramp_median_h, cfg.ramp_sigma) * 3_600e6;
                let at = bs + delay as u64;
                (at < end && at < be).then_some(at)
            } else {
                None
            };
            if let Some(at) = when {
                let tool = Tool::ALL[rng.weighted(if baseline { &baseline_mix } else { &cfg.mix })];
                let server = session::tool_server(tool, i, &mut rng);
                let server_port = session::tool_port(tool, &mut rng);
                host.adoption = Some(Adoption {
                    at,
                    tool,
                    baseline,
                    server,
                    server_port,
                });
            }
            host.rng = Rng::new(rng.next_u64());
            host
        })
        .collect()
}

/// Share of a host's sessions that use its tunnel at `t`.
fn tunnel_share(cfg: &Config, a: &Adoption, t: u64) -> f64 {
    let base: f64 = if a.baseline { 0.25 } else { 0.0 };
    match cfg.block_us() {
        Some((bs, be)) if t >= bs && t < be => cfg.tunnel_use,
        Some((_, be)) if t >= be => {
            base.max(cfg.tunnel_use * (-((t - be) as f64) / 172_800e6).exp())
        }
        _ => base,
    }
}

fn site_weights(cfg: &Config, sites: &[catalog::Site]) -> Vec<f64> {
    sites
        .iter()
        .map(|s| {
            if catalog::is_control(s) {
                s.weight * cfg.control_weight
            } else {
                s.weight
            }
        })
        .collect()
}

/// Plans what host `h` does in a session starting at `t`.
fn session(cfg: &Config, h: &mut Host, t: u64) -> Vec<NewFlow> {
    let block = cfg.block_us().filter(|(bs, be)| t >= *bs && t < *be);
    if cfg.outage_us().is_some_and(|(os, oe)| t >= os && t < oe) {
        // The upstream is down: lookups fail and SYNs to any site go unanswered.
        let p_x = if h.x_user { cfg.x_session_share } else { 0.01 };
        let sites = if h.rng.chance(p_x) { PLATFORM } else { SITES };
        let w = site_weights(cfg, sites);
        let site = &sites[h.rng.weighted(&w)];
        return session::outage_visit(h, t, site, &cfg.session);
    }
    if let Some(a) = h.adoption {
        if t >= a.at && h.rng.chance(tunnel_share(cfg, &a, t)) {
            let dur = (h.rng.lognormal(cfg.tunnel_median_s, 0.8) * 1e6).clamp(20e6, 7_200e6) as u64;
            return session::tunnel(h, t, &a, dur, cfg.session.volume);
        }
    }
    let mut p_x = if h.x_user { cfg.x_session_share } else { 0.01 };
    if let Some((bs, _)) = block {
        let adopted = h.adoption.is_some_and(|a| t >= a.at);
        // Blocked users try less and less; adopters use X through the tunnel instead.
        p_x *= if adopted {
            0.15
        } else {
            (-((t - bs) as f64) / 129_600e6).exp().max(0.2)
        };
    }
    if h.rng.chance(p_x) {
        let w: Vec<f64> = PLATFORM.iter().map(|s| s.weight).collect();
        let site = &PLATFORM[h.rng.weighted(&w)];
        let method = cfg
            .block
            .as_ref()
            .filter(|_| block.is_some())
            .and_then(|b| {
                b.methods
                    .get(h.rng.below(b.methods.len() as u64) as usize)
                    .copied()
            });
        session::visit(h, t, site, method, &cfg.session)
    } else {
        let w = site_weights(cfg, SITES);
        let site = &SITES[h.rng.weighted(&w)];
        session::visit(h, t, site, None, &cfg.session)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Wake(u32),
    Packet(u32),
}

/// Counts from one generation run.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub packets: u64,
    pub flows: u64,
}

pub const TRUTH_HEADER: &str =
    "flow_id,start_us,start_utc,host,client_ip,client_port,server_ip,server_port,\
transport,protocol,application,family,outcome,server_name,packets,payload_bytes";

fn truth_row<W: Write>(out: &mut W, id: u64, host: u32, nf: &NewFlow) -> io::Result<()> {
    let e = &nf.flow.ends;
    let (packets, bytes) = nf.flow.totals();
    let start = nf.flow.start();
    writeln!(
        out,
        "{id},{start},{},{host},{},{},{},{},{},{},{},{},{},{},{packets},{bytes}",
        rfc3339_us(start),
        e.client,
        e.cport,
        e.server,
        e.sport,
        nf.transport.name(),
        nf.protocol,
        nf.application,
        nf.family,
        nf.outcome,
        nf.server_name
    )
}

/// Runs the scenario: packets go to `pcap` in time order, one row per flow to `truth`.
pub fn generate<W: Write, T: Write>(
    cfg: &Config,
    hosts: &mut [Host],
    pcap: &mut PcapWriter<W>,
    truth: &mut T,
) -> io::Result<Counts> {
    let (start, end) = (cfg.start_us(), cfg.end_us());
    writeln!(truth, "{TRUTH_HEADER}")?;
    let mut heap: BinaryHeap<Reverse<(u64, u64, Ev)>> = BinaryHeap::new();
    let mut seq = 0u64;
    for h in hosts.iter_mut() {
        if let Some(t) = next_wake(cfg, h, start, end) {
            heap.push(Reverse((t, seq, Ev::Wake(h.idx))));
            seq += 1;
        }
    }
    let mut slab: Vec<Option<Flow>> = Vec::new();
    let mut free: Vec<u32> = Vec::new();
    let (mut frame, mut scratch) = (Vec::with_capacity(2048), Vec::with_capacity(2048));
    let mut counts = Counts::default();
    while let Some(Reverse((t, _, ev))) = heap.pop() {
        match ev {
            Ev::Wake(i) => {
                let Some(h) = hosts.get_mut(i as usize) else {
                    continue;
                };
                for nf in session(cfg, h, t) {
                    truth_row(truth, counts.flows, i, &nf)?;
                    counts.flows += 1;
                    let Some(first) = nf.flow.next_time() else {
                        continue;
                    };
                    let slot = match free.pop() {
                        Some(s) => {
                            if let Some(x) = slab.get_mut(s as usize) {
                                *x = Some(nf.flow);
                            }
                            s
                        }
                        None => {
                            slab.push(Some(nf.flow));
                            (slab.len() - 1) as u32
                        }
                    };
                    heap.push(Reverse((first.max(t), seq, Ev::Packet(slot))));
                    seq += 1;
                }
                if let Some(next) = next_wake(cfg, h, t, end) {
                    heap.push(Reverse((next, seq, Ev::Wake(i))));
                    seq += 1;
                }
            }
            Ev::Packet(slot) => {
                let Some(Some(flow)) = slab.get_mut(slot as usize) else {
                    continue;
                };
                if let Some(ts) = flow.emit(&mut frame, &mut scratch) {
                    pcap.write_packet(ts, &frame)?;
                    counts.packets += 1;
                }
                match flow.next_time() {
                    Some(n) => {
                        heap.push(Reverse((n, seq, Ev::Packet(slot))));
                        seq += 1;
                    }
                    None => {
                        if let Some(x) = slab.get_mut(slot as usize) {
                            *x = None;
                        }
                        free.push(slot);
                    }
                }
            }
        }
    }
    Ok(counts)
}

/// The events file: capture window, block, platform, and every host's adoption.
pub fn events_json(cfg: &Config, hosts: &[Host]) -> serde_json::Value {
    use serde_json::json;
    let block = cfg.block.as_ref().map(|b| {
        json!({
            "start": super::time::rfc3339_s(b.start_s),
            "end": b.end_s.map(super::time::rfc3339_s),
            "start_unix": b.start_s,
            "end_unix": b.end_s,
            "methods": b.methods.iter().map(|m| m.name()).collect::<Vec<_>>(),
        })
    });
    let adoptions: Vec<serde_json::Value> = hosts
        .iter()
        .filter_map(|h| {
            let a = h.adoption?;
            Some(json!({
                "host": h.idx,
                "client_ip": h.v4.to_string(),
                "client_ipv6": h.v6.map(|v| v.to_string()),
                "at": rfc3339_us(a.at),
                "at_us": a.at,
                "tool": a.tool.name(),
                "protocols": a.tool.protocols(),
                "application": a.tool.application(),
                "server_ip": a.server.to_string(),
                "server_port": a.server_port,
                "baseline": a.baseline,
            }))
        })
        .collect();
    let mut doc = json!({
        "schema": "tunnelwatch.synth.events/1",
        "preset": cfg.preset,
        "seed": cfg.seed,
        "capture": {
            "start": rfc3339_us(cfg.start_us()),
            "end": rfc3339_us(cfg.end_us()),
            "utc_offset_hours": cfg.utc_offset_h,
        },
        "hosts": cfg.hosts,
        "x_users": hosts.iter().filter(|h| h.x_user).count(),
        "platform": {
            "name": "x",
            "domains": catalog::PLATFORM_DOMAINS,
            "prefixes": catalog::PLATFORM_PREFIXES,
            "asn": 13414,
        },
        "block": block,
        "adoptions": adoptions,
    });
    // Only scenarios with an outage carry the key, so other event files keep their shape.
    if let (Some(o), Some(map)) = (cfg.outage, doc.as_object_mut()) {
        map.insert(
            "outage".into(),
            json!({
                "start": super::time::rfc3339_s(o.start_s),
                "end": super::time::rfc3339_s(o.end_s),
                "start_unix": o.start_s,
                "end_unix": o.end_s,
            }),
        );
    }
    doc
}
