//! Synth: the scenario generator behind `tunnelwatch synth`. It writes a wire-accurate capture
//! of an ISP edge where a platform (X/Twitter by default) gets blocked and subscribers turn to
//! VPNs and proxies, plus the ground truth needed to score tunnelwatch against it.
//!
//! Outputs, for `--out NAME.pcap[.gz]`:
//! * `NAME.pcap[.gz]` — classic pcap, Ethernet, microsecond timestamps, in time order;
//! * `NAME.truth.csv` — one row per flow ([`scenario::TRUTH_HEADER`]): generated protocol,
//!   application, family, block outcome, endpoints, start, packets and payload bytes;
//! * `NAME.events.json` — capture window, the block (start, end, methods), the platform's
//!   domains/prefixes, and per host when it adopted which tool.
//!
//! Same preset, overrides and seed give byte-identical files. Memory is bounded by the flows
//! open at one time, not by the output size. Scenarios are built-in presets or TOML scenario
//! files ([`scenario_file`], `--scenario FILE`; `--print-preset NAME` writes a template), plus
//! command-line overrides, which win over both.

pub mod catalog;
pub mod flood;
pub mod flow;
pub mod pcap_writer;
pub mod proto;
pub mod rng;
pub mod scenario;
pub mod scenario_file;
pub mod session;
pub mod time;
pub mod wire;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use scenario::{Config, PRESETS};
pub use session::BlockMethod;

use crate::atomic_file::{write_bytes_atomically, AtomicFile};
use pcap_writer::{PcapWriter, Sink};

/// `tunnelwatch synth`: write a synthetic capture with its truth files.
#[derive(clap::Args, Debug, Clone)]
pub struct SynthArgs {
    /// Scenario preset (default pk-x-2024-small, the committed sample): pk-x-2024 (a week,
    /// 1000 hosts), bench (throughput runs), and the detector-check shapes no-block,
    /// block-surge, block-slow-ramp, short-block, block-throttle, outage.
    #[arg(long, value_name = "NAME", conflicts_with = "scenario")]
    pub preset: Option<String>,
    /// Scenario file (TOML, see samples/scenario.toml); command-line options override it.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Print the preset NAME (or the --scenario file, fully expanded) as a commented TOML
    /// scenario on stdout and exit.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    pub print_preset: Option<String>,
    /// Output capture; a `.gz` suffix gzips it. Truth files go beside it.
    #[arg(long, value_name = "PATH", required_unless_present = "print_preset")]
    pub out: Option<PathBuf>,
    /// Random seed (default: the scenario's, 1 for presets): the same seed gives
    /// byte-identical output.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of client hosts (overrides the preset).
    #[arg(long, value_name = "N")]
    pub hosts: Option<u32>,
    /// Capture length in days (overrides the preset).
    #[arg(long, value_name = "F")]
    pub days: Option<f64>,
    /// Block start: hours after the capture start (`20`, `20.5h`) or a date-time
    /// (`2024-02-17T20:00:00+05:00`; no zone = UTC). `none` disables the block.
    #[arg(long, value_name = "WHEN")]
    pub block_start: Option<String>,
    /// Block end (same syntax); default: the block is not lifted.
    #[arg(long, value_name = "WHEN")]
    pub block_end: Option<String>,
    /// Block method(s), comma-separated; each blocked attempt meets one of them.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "METHOD")]
    pub block_method: Vec<BlockMethod>,
    /// Share of hosts (0..1) that adopt circumvention after the block.
    #[arg(long, value_name = "F")]
    pub adoption_share: Option<f64>,
    /// Approximate number of packets wanted: scales the host count to reach it.
    #[arg(long, value_name = "N")]
    pub packets_target: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("unknown preset {0:?} (known: {known})", known = PRESETS.join(", "))]
    UnknownPreset(String),
    #[error("{}: {source}", path.display())]
    Scenario {
        path: PathBuf,
        source: scenario_file::ScenarioError,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("invalid --{arg} {value:?}: {why}")]
    BadArg {
        arg: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// What a run wrote.
#[derive(Debug, Clone)]
pub struct SynthSummary {
    pub preset: String,
    pub seed: u64,
    pub hosts: u32,
    pub adopters: usize,
    pub packets: u64,
    pub flows: u64,
    /// Bytes of pcap data (before gzip, if any).
    pub bytes: u64,
    pub pcap: PathBuf,
    pub truth: PathBuf,
    pub events: PathBuf,
}

impl fmt::Display for SynthSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "preset {} (seed {}): {} hosts, {} adopters",
            self.preset, self.seed, self.hosts, self.adopters
        )?;
        writeln!(
            f,
            "wrote {} packets in {} flows, {} bytes of pcap",
            self.packets, self.flows, self.bytes
        )?;
        writeln!(f, "  capture: {}", self.pcap.display())?;
        writeln!(f, "  truth:   {}", self.truth.display())?;
        write!(f, "  events:  {}", self.events.display())
    }
}

/// `NAME` for `NAME.pcap`, `NAME.pcap.gz`, `NAME.gz` or `NAME`.
fn stem_path(out: &Path) -> PathBuf {
    let s = out.to_string_lossy();
    let mut stem: &str = &s;
    for suffix in [".gz", ".pcap"] {
        if stem.len() > suffix.len() && stem.to_ascii_lowercase().ends_with(suffix) {
            stem = &stem[..stem.len() - suffix.len()];
        }
    }
    PathBuf::from(stem)
}

fn with_suffix(stem: &Path, suffix: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The scenario of `--scenario FILE`.
pub fn read_scenario(path: &Path) -> Result<Config, SynthError> {
    let text = std::fs::read_to_string(path).map_err(|source| SynthError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    scenario_file::parse(&text).map_err(|source| SynthError::Scenario {
        path: path.to_path_buf(),
        source,
    })
}

/// The scenario for `args`: the preset or scenario file with the command-line overrides applied.
pub fn config(args: &SynthArgs) -> Result<Config, SynthError> {
    let mut cfg = match (&args.scenario, &args.preset) {
        (Some(path), _) => read_scenario(path)?,
        (None, name) => {
            let name = name.as_deref().unwrap_or("pk-x-2024-small");
            scenario::preset(name).ok_or_else(|| SynthError::UnknownPreset(name.to_string()))?
        }
    };
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    if let Some(n) = args.hosts {
        if n == 0 {
            return Err(SynthError::BadArg {
                arg: "hosts",
                value: n.to_string(),
                why: "must be at least 1",
            });
        }
        cfg.hosts = n;
    }
    if let Some(d) = args.days {
        if !(d.is_finite() && d > 0.0 && d <= 366.0) {
            return Err(SynthError::BadArg {
                arg: "days",
                value: d.to_string(),
                why: "must be in (0, 366]",
            });
        }
        cfg.days = d;
    }
    if let Some(s) = &args.adoption_share {
        if !(0.0..=1.0).contains(s) {
            return Err(SynthError::BadArg {
                arg: "adoption-share",
                value: s.to_string(),
                why: "must be in [0, 1]",
            });
        }
        cfg.adoption_share = *s;
    }
    if let Some(b) = &args.block_start {
        if b.eq_ignore_ascii_case("none") {
            cfg.block = None;
        } else {
            let start = time::parse_moment(b, cfg.start_s).ok_or(SynthError::BadArg {
                arg: "block-start",
                value: b.clone(),
                why: "expected hours after the start or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM]",
            })?;
            let methods = cfg
                .block
                .as_ref()
                .map_or_else(|| vec![BlockMethod::Reset], |x| x.methods.clone());
            cfg.block = Some(scenario::BlockCfg {
                start_s: start,
                end_s: None,
                methods,
            });
        }
    }
    if let Some(e) = &args.block_end {
        let end = time::parse_moment(e, cfg.start_s).ok_or(SynthError::BadArg {
            arg: "block-end",
            value: e.clone(),
            why: "expected hours after the start or a date-time",
        })?;
        match cfg.block.as_mut() {
            Some(b) if end > b.start_s => b.end_s = Some(end),
            _ => {
                return Err(SynthError::BadArg {
                    arg: "block-end",
                    value: e.clone(),
                    why: "must follow the block start",
                })
            }
        }
    }
    if !args.block_method.is_empty() {
        if let Some(b) = cfg.block.as_mut() {
            b.methods = args.block_method.clone();
        }
    }
    Ok(cfg)
}

/// Packets a dry run of `hosts` hosts produces (nothing is written).
fn dry_run(cfg: &Config, hosts: u32) -> u64 {
    let mut c = cfg.clone();
    c.hosts = hosts;
    let mut pop = scenario::population(&c);
    let Ok(mut w) = PcapWriter::new(Sink::Null) else {
        return 0;
    };
    scenario::generate(&c, &mut pop, &mut w, &mut io::sink()).map_or(0, |n| n.packets)
}

/// `--print-preset [NAME]`: the preset NAME, or (without a name) the scenario `args` describe,
/// as a TOML scenario file.
pub fn print_preset(args: &SynthArgs) -> Result<String, SynthError> {
    let cfg = match args.print_preset.as_deref() {
        Some(name) if !name.is_empty() => {
            scenario::preset(name).ok_or_else(|| SynthError::UnknownPreset(name.to_string()))?
        }
        _ => config(args)?,
    };
    Ok(scenario_file::to_toml(&cfg))
}

/// Generates the capture and truth files described by `args`.
pub fn run(args: &SynthArgs) -> Result<SynthSummary, SynthError> {
    let Some(out) = args.out.as_deref() else {
        return Err(SynthError::BadArg {
            arg: "out",
            value: String::new(),
            why: "name the capture to write",
        });
    };
    let mut cfg = config(args)?;
    if let Some(target) = args.packets_target {
        let pilot = cfg.hosts.clamp(1, 100);
        let got = dry_run(&cfg, pilot).max(1);
        let scaled = (target as f64 * f64::from(pilot) / got as f64).round();
        cfg.hosts = scaled.clamp(1.0, 4_000_000.0) as u32;
    }
    let stem = stem_path(out);
    let truth_path = with_suffix(&stem, ".truth.csv");
    let events_path = with_suffix(&stem, ".events.json");
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SynthError::Io { path, source }
    };
    let mut hosts = scenario::population(&cfg);
    let sink = Sink::create(out).map_err(io_err(out))?;
    let mut pcap = PcapWriter::new(sink).map_err(io_err(out))?;
    let mut truth = AtomicFile::create(&truth_path).map_err(io_err(&truth_path))?;
    let counts = scenario::generate(&cfg, &mut hosts, &mut pcap, &mut truth).map_err(|e| {
        // Tell which file failed: try flushing the truth file to see if it is the culprit.
        match truth.flush() {
            Err(t) => SynthError::Io {
                path: truth_path.clone(),
                source: t,
            },
            Ok(()) => SynthError::Io {
                path: out.to_path_buf(),
                source: e,
            },
        }
    })?;
    let bytes = pcap.bytes();
    pcap.into_inner().finish().map_err(io_err(out))?;
    truth.commit().map_err(io_err(&truth_path))?;
    let events = scenario::events_json(&cfg, &hosts);
    let text = serde_json::to_string_pretty(&events).unwrap_or_default();
    write_bytes_atomically(&events_path, (text + "\n").as_bytes()).map_err(io_err(&events_path))?;
    Ok(SynthSummary {
        preset: cfg.preset.clone(),
        seed: cfg.seed,
        hosts: cfg.hosts,
        adopters: hosts.iter().filter(|h| h.adoption.is_some()).count(),
        packets: counts.packets,
        flows: counts.flows,
        bytes,
        pcap: out.to_path_buf(),
        truth: truth_path,
        events: events_path,
    })
}

#[cfg(test)]
mod tests;
