//! The command-line edge: clap arguments -> validated config -> pipeline -> outputs and exit code.
//!
//! Exit codes: 0 success; 1 a fatal error (bad arguments after parsing, unwritable output);
//! 2 one or more inputs could not be read (or, under `--strict`, were read only in part).
//! clap's own usage errors also exit 2.

mod analysis;
mod detection;
mod interrupt;
mod output;
mod spill;

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::atomic_file::AtomicFile;
use crate::decode::filter::PacketFilter;
use crate::flow::{FlowConfig, FlowRecord};
use crate::pipeline::{FileStatus, Pipeline, PipelineConfig, RunSummary};
use crate::report;

pub use crate::flow::FLOW_COLUMNS;
pub use output::{
    csv_row_fields, flow_row_json, push_id_prefix, row_renderer, write_flows, RowFormat,
};

#[derive(Parser, Debug)]
#[command(
    name = "tunnelwatch",
    version,
    about = "Turn packet captures into VPN-surge and platform-block signals"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print one row per flow with its protocol label, confidence and evidence.
    Flows(FlowsArgs),
    /// Run the whole analysis and write flows.parquet and summary.json into --out.
    Analyze(AnalyzeArgs),
    /// Print the full reasoning behind one flow's label.
    Explain(ExplainArgs),
    /// Rebuild report.html (and figures) from an existing analyze output folder.
    Report(ReportArgs),
    /// Generate a capture of a scenario with a platform block and circumvention, plus its truth.
    Synth(crate::synth::SynthArgs),
    /// Receive NetFlow v5/v9 and IPFIX over UDP and analyse the flow records.
    Collect(CollectArgs),
    /// Capture live from a network interface (libpcap) and write the analysis window by window.
    #[cfg(feature = "live")]
    Capture(CaptureArgs),
    /// List the block-event calendar (built in, plus --events FILE).
    Events(EventsArgs),
    /// Re-run detection on an analyze output folder (its series.parquet), without the captures;
    /// rewrites alerts.json and the report.
    Detect(DetectArgs),
    /// Score the spike/shift detector on the Numenta Anomaly Benchmark.
    EvalNab(EvalNabArgs),
}

#[derive(Args, Debug)]
pub struct DetectArgs {
    /// An output folder of `tunnelwatch analyze`.
    pub dir: PathBuf,
    /// Extra block events: CSV lines `country,platform,start,end,method,source[,note]`, or TOML
    /// `[[event]]` tables with those keys.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Extra events: CSV lines `country,platform,start,end,method,source[,note[,demand_percent,
    /// demand_text,demand_by,demand_baseline,demand_source]]`, or TOML `[[event]]` tables.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EvalNabArgs {
    /// The NAB folder (holding data/ and labels/).
    #[arg(default_value = "../shared/timeseries/nab")]
    pub nab: PathBuf,
}

/// `tunnelwatch capture`: tcpdump-like capture options plus the analysis settings.
#[cfg(feature = "live")]
#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// Interface to capture on (as tcpdump -i), e.g. eth0 or lo.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interface: String,
    /// BPF filter expression (tcpdump syntax), e.g. "tcp or udp".
    #[arg(short = 'f', long = "filter", value_name = "BPF")]
    pub filter: Option<String>,
    /// Stop after this long (e.g. 30, 30s, 10m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs)]
    pub duration: Option<u32>,
    /// Stop once this file exists (open flows and the last window are written first).
    #[arg(long, value_name = "FILE")]
    pub stop_file: Option<PathBuf>,
    /// Bytes kept of each frame (as tcpdump -s).
    #[arg(short = 's', long, value_name = "N", default_value_t = 262_144)]
    pub snaplen: i32,
    /// Put the interface into promiscuous mode (off by default).
    #[arg(long)]
    pub promisc: bool,
    /// Serve Prometheus metrics on this address (GET /metrics), e.g. 127.0.0.1:9108; port 0
    /// picks a free port (printed at start).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Windows are revised for this many windows after they close (a flow counts in the window
    /// it started in) and then frozen: their host rows go to `hosts/`, their flow rows leave
    /// memory. Default: enough windows to cover the flow idle timeouts, at least 12.
    #[arg(long, value_name = "N")]
    pub revise_windows: Option<u32>,
    #[command(flatten)]
    pub flow_table: FlowTableArgs,
    /// Output directory: one `window-<unix start>` folder per window, and the whole run at the end.
    #[arg(short, long, value_name = "DIR", default_value = "tunnelwatch-out")]
    pub out: PathBuf,
    #[command(flatten)]
    pub stats: StatsArgs,
    /// No per-window lines or summary on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// An output folder of `tunnelwatch analyze` (holding report_data.json).
    pub dir: PathBuf,
    /// Also write each chart as a standalone SVG file into this folder.
    #[arg(long, value_name = "DIR")]
    pub figures: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CollectArgs {
    /// Address to listen on (UDP), e.g. 127.0.0.1:4739 (IPFIX) or 0.0.0.0:2055 (NetFlow).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4739")]
    pub listen: std::net::SocketAddr,
    /// Stop after this long (e.g. 30s, 10m, 1h); without it, run until killed.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs)]
    pub duration: Option<u32>,
    /// Output directory for flows and the per-window tables.
    #[arg(short, long, value_name = "DIR", default_value = "tunnelwatch-out")]
    pub out: PathBuf,
    #[command(flatten)]
    pub stats: StatsArgs,
    /// No summary on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Inputs and flow-table settings shared by every command that reads captures.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Capture files (pcap, pcapng, optionally .gz) or folders to walk.
    pub inputs: Vec<PathBuf>,
    /// Read this capture file (as tcpdump -r); may be repeated.
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    pub read: Vec<PathBuf>,
    /// Only packets that pass this filter go into flows, e.g. "tcp port 443 or udp": tcpdump's
    /// filter language for addresses, ports and protocols (README, "Filters").
    #[arg(short = 'f', long = "filter", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Treat warnings (truncated or corrupt captures) as failures: exit status 2.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub flow_table: FlowTableArgs,
    /// No summary on stderr (errors are still printed).
    #[arg(short, long)]
    pub quiet: bool,
    /// End-of-run summary as JSON (the summary.json document) instead of the table: on stdout
    /// for `analyze`, on stderr where stdout carries data.
    #[arg(long)]
    pub json: bool,
    /// Tor relay addresses (a network-status consensus or one address per line): flows to them
    /// are labelled `tor` with confidence `endpoint_list`.
    #[arg(long, value_name = "FILE")]
    pub tor_relays: Option<PathBuf>,
    /// VPN provider/app address ranges: lines `PREFIX,TOKEN` (e.g. `198.51.100.0/24,mullvad`).
    #[arg(long, value_name = "FILE")]
    pub endpoints: Option<PathBuf>,
    /// Do not use the built-in provider server lists (Mullvad, NordVPN, Proton VPN, Surfshark); only
    /// `--endpoints`/`--tor-relays` name peers by address.
    #[arg(long)]
    pub no_builtin_endpoints: bool,
    /// Threads (default: all cores): one reads and dispatches, the others own flow tables.
    /// Output does not depend on it.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct FlowsArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output format [default: from the `--out` file's extension (`.jsonl`, `.ndjson`, `.json`,
    /// `.csv`), else table].
    #[arg(long, value_enum)]
    pub format: Option<FlowFormat>,
    /// Write the rows to FILE instead of stdout (`-`: stdout). They go to `FILE.partial`,
    /// renamed to FILE once every row is written, so FILE is never half-written.
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Extra platform/control definitions for the `platform` column: lines
    /// `name,control,domain;domain,prefix;prefix` (as `analyze --platforms`).
    #[arg(long, value_name = "FILE")]
    pub platforms: Option<PathBuf>,
}

impl FlowsArgs {
    /// `--out`, unless it is `-` (stdout).
    fn out_file(&self) -> Option<&std::path::Path> {
        self.out.as_deref().filter(|p| p.as_os_str() != "-")
    }

    /// `--format`, or the one the `--out` file's extension names, or a table.
    pub fn format(&self) -> FlowFormat {
        let from_extension = || {
            let extension = self.out_file()?.extension()?.to_str()?.to_ascii_lowercase();
            match extension.as_str() {
                "jsonl" | "ndjson" | "json" => Some(FlowFormat::Jsonl),
                "csv" => Some(FlowFormat::Csv),
                _ => None,
            }
        };
        self.format
            .or_else(from_extension)
            .unwrap_or(FlowFormat::Table)
    }
}

/// Where `flows` writes: stdout, or a file that appears only once it is complete
/// ([`AtomicFile`], as every other output).
enum FlowsOutput {
    Stdout(io::BufWriter<io::StdoutLock<'static>>),
    File(AtomicFile),
}

impl FlowsOutput {
    /// Opens the output before the run, so a path that cannot be written fails at once.
    fn open(path: Option<&std::path::Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(FlowsOutput::Stdout(io::BufWriter::new(io::stdout().lock())));
        };
        if path.is_dir() {
            bail!("--out {}: is a folder; name a file in it", path.display());
        }
        AtomicFile::create(path)
            .map(FlowsOutput::File)
            .with_context(|| format!("--out {}: cannot write there", path.display()))
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            FlowsOutput::Stdout(w) => w,
            FlowsOutput::File(f) => f,
        }
    }

    /// Flushes, and puts a file in its place. Dropped without this, a file's partial copy is
    /// removed.
    fn finish(self) -> Result<()> {
        match self {
            FlowsOutput::Stdout(mut w) => Ok(w.flush()?),
            FlowsOutput::File(f) => {
                let path = f.path().display().to_string();
                f.commit().with_context(|| format!("writing {path}"))
            }
        }
    }
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output directory (created if missing).
    #[arg(short, long, value_name = "DIR", default_value = "tunnelwatch-out")]
    pub out: PathBuf,
    #[command(flatten)]
    pub stats: StatsArgs,
    /// Also read flow records: nfdump CSV (`TZ=UTC nfdump -r FILE -o csv`), or a flow table in
    /// tunnelwatch's schema as CSV or Parquet (README, "Flow logs"); the format is detected.
    #[arg(long, value_name = "FILE")]
    pub flow_log: Vec<PathBuf>,
    /// Also write each chart of report.html as a standalone SVG file into this folder.
    #[arg(long, value_name = "DIR")]
    pub figures: Option<PathBuf>,
}

/// Flow-table limits, shared by the commands that build flows from packets.
#[derive(Args, Debug, Clone, Copy)]
pub struct FlowTableArgs {
    /// Hard cap on live flows; the least recently seen flow is evicted beyond it.
    #[arg(long, default_value_t = FlowConfig::default().max_flows, value_name = "N")]
    pub max_flows: usize,
    /// Idle timeout of TCP flows, in seconds.
    #[arg(long, default_value_t = FlowConfig::default().tcp_idle_secs, value_name = "SECS")]
    pub tcp_timeout: u32,
    /// Idle timeout of UDP and other flows, in seconds.
    #[arg(long, default_value_t = FlowConfig::default().udp_idle_secs, value_name = "SECS")]
    pub udp_timeout: u32,
}

impl FlowTableArgs {
    pub fn flow_config(&self) -> FlowConfig {
        FlowConfig {
            tcp_idle_secs: self.tcp_timeout,
            udp_idle_secs: self.udp_timeout,
            max_flows: self.max_flows,
            ..FlowConfig::default()
        }
    }
}

/// Settings of the per-window statistics.
#[derive(Args, Debug, Clone)]
pub struct StatsArgs {
    /// Statistics window, e.g. 300s, 5m, 1h.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration_secs)]
    pub window: u32,
    /// The monitored network's prefixes (as Suricata's HOME_NET), comma-separated; hosts are
    /// addresses inside it. Default: private, shared and unique-local ranges.
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    pub home_net: Vec<String>,
    /// Anonymise host addresses in every output (prefix-preserving Crypto-PAn, keyed): a key
    /// file (`file:PATH`, or a path to an existing file), `env:NAME` for an environment
    /// variable, or the key itself.
    #[arg(long, visible_alias = "anonymise", value_name = "KEYFILE|env:NAME|KEY")]
    pub anonymize: Option<String>,
    /// With --anonymize: replace host addresses by keyed-hash pseudonyms (unique-local IPv6
    /// `fd..`) instead of prefix-preserving ones.
    #[arg(long, requires = "anonymize")]
    pub hash_hosts: bool,
    /// Platforms whose reachability is measured and checked for blocks, comma-separated
    /// (`x`, `youtube`, `facebook`, `instagram`, `whatsapp`, `telegram`, `tiktok`, `signal`, or
    /// your own); default every platform (one platform's block is then diluted by the others).
    #[arg(long, value_name = "PLATFORM,...", value_delimiter = ',')]
    pub watch: Vec<String>,
    /// Extra platform/control definitions: lines `name,control,domain;domain,prefix;prefix`.
    #[arg(long, value_name = "FILE")]
    pub platforms: Option<PathBuf>,
    /// Extra block events (added to the built-in calendar): CSV lines
    /// `country,platform,start,end,method,source[,note]`, or TOML `[[event]]` tables with those keys.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Formats of the per-window tables (hosts, series, series_protocols), comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "parquet")]
    pub tables: Vec<TableFormatArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableFormatArg {
    Parquet,
    Csv,
    Json,
}

impl From<TableFormatArg> for crate::stats::TableFormat {
    fn from(f: TableFormatArg) -> Self {
        match f {
            TableFormatArg::Parquet => crate::stats::TableFormat::Parquet,
            TableFormatArg::Csv => crate::stats::TableFormat::Csv,
            TableFormatArg::Json => crate::stats::TableFormat::Json,
        }
    }
}

/// `300`, `300s`, `5m`, `1h`, `1d` -> seconds (at least 1).
pub fn parse_duration_secs(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u32 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with an optional unit s, m, h or d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("{s:?}: unknown unit {other:?} (use s, m, h or d)")),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?}: must be between 1 s and about 136 years"))
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Flow id as printed by `flows` (column id).
    #[arg(long, value_name = "N")]
    pub flow: Option<u64>,
    /// Only flows whose protocol, application, provider or platform (the `platform` column of
    /// `flows`: `x`, `telegram`, ...) equals this token.
    #[arg(long, value_name = "TOKEN")]
    pub protocol: Option<String>,
    /// Only flows that tried to reach a platform or control site and whose attempt ended so:
    /// `failed` (any failure kind: `dns_failure`, `reset_after_syn`, `reset_after_client_data`,
    /// `no_reply`, `throttled`), or one result as the reachability series name it.
    #[arg(long, value_name = "RESULT", value_parser = attempt_filter_values())]
    pub attempt: Option<String>,
    /// Extra platform/control definitions: lines `name,control,domain;domain,prefix;prefix`
    /// (as `analyze --platforms`).
    #[arg(long, value_name = "FILE")]
    pub platforms: Option<PathBuf>,
}

/// `explain --attempt` values: `failed` (any failure kind) or one [`AttemptResult`] name.
///
/// [`AttemptResult`]: crate::stats::AttemptResult
fn attempt_filter_values() -> clap::builder::PossibleValuesParser {
    std::iter::once("failed")
        .chain(crate::stats::ALL_RESULTS.map(crate::stats::AttemptResult::name))
        .collect::<Vec<_>>()
        .into()
}

/// Whether an attempt that ended in `result` is one `explain --attempt filter` shows.
fn attempt_admitted(filter: &str, result: crate::stats::AttemptResult) -> bool {
    match filter {
        "failed" => crate::stats::FAILURE_KINDS.contains(&result),
        name => result.name() == name,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlowFormat {
    Table,
    Jsonl,
    Csv,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return 0;
            }
            if let Some(stop) = e.downcast_ref::<interrupt::Interrupted>() {
                eprintln!("tunnelwatch: {stop}");
                return stop.exit_code();
            }
            eprintln!("tunnelwatch: error: {e:#}");
            1
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Flows(args) => run_flows(args),
        Command::Analyze(args) => run_analyze(args),
        Command::Explain(args) => run_explain(args),
        Command::Report(args) => run_report(args),
        Command::Synth(args) if args.print_preset.is_some() => {
            let text = crate::synth::print_preset(&args).context("synth")?;
            io::stdout().write_all(text.as_bytes())?;
            Ok(0)
        }
        Command::Synth(args) => {
            let summary = crate::synth::run(&args).context("synth")?;
            eprintln!("{summary}");
            Ok(0)
        }
        Command::Collect(args) => run_collect(args),
        Command::Events(args) => run_events(args),
        Command::Detect(args) => run_detect(args),
        Command::EvalNab(args) => run_eval_nab(args),
        #[cfg(feature = "live")]
        Command::Capture(args) => run_capture(args),
    }
}

impl InputArgs {
    fn files(&self) -> Result<Vec<PathBuf>> {
        let mut all = self.read.clone();
        all.extend(self.inputs.iter().cloned());
        if all.is_empty() {
            bail!("no input: name capture files or folders (or -r FILE)");
        }
        crate::ingest::expand_inputs(&all).context("reading inputs")
    }

    fn checked_files(&self) -> Result<Vec<PathBuf>> {
        let files = self.files()?;
        if files.is_empty() {
            bail!("no capture files found in the given folders (looked for *.pcap, *.pcapng, *.cap, *.gz)");
        }
        Ok(files)
    }

    fn config(&self) -> PipelineConfig {
        PipelineConfig {
            flow: self.flow_table.flow_config(),
            threads: self.threads.unwrap_or_else(default_threads).max(1),
        }
    }

    /// Exit code for a finished run: 2 when inputs failed (or were partial under --strict).
    fn exit_code(&self, summary: &RunSummary) -> i32 {
        if summary.failed_files() > 0 || (self.strict && summary.partial_files() > 0) {
            2
        } else {
            0
        }
    }
}

/// All cores (the calling thread reads and owns a share of the flows; the others own the rest).
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs every input through the pipeline and returns every flow (numbered) and the totals;
/// reports file problems on stderr as they happen.
pub fn run_pipeline(input: &InputArgs) -> Result<(Vec<FlowRecord>, RunSummary)> {
    run_pipeline_into(input, Pipeline::new)
}

/// [`run_pipeline`]; with a sink, finished flows go there as they finish (unnumbered) and the
/// returned list is empty.
fn run_pipeline_into(
    input: &InputArgs,
    build: impl FnOnce(PipelineConfig) -> Pipeline,
) -> Result<(Vec<FlowRecord>, RunSummary)> {
    let filter = input
        .filter
        .as_deref()
        .map(PacketFilter::parse)
        .transpose()?;
    let files = input.checked_files()?;
    install_endpoint_lists(input)?;
    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let mut progress =
        report::Progress::new(total_bytes, !input.quiet && io::stderr().is_terminal());
    let mut pipeline = build(input.config());
    pipeline.set_filter(filter);
    let (interrupt_guard, stop) = interrupt::Guard::install();
    pipeline.set_stop(Some(stop));
    let flows = pipeline.flows_seen();
    for file in &files {
        if pipeline.stopped() {
            break;
        }
        let report = pipeline.feed_file(file, &mut |bytes, packets| {
            progress.advance(
                bytes,
                packets,
                flows.load(std::sync::atomic::Ordering::Relaxed),
            )
        });
        let label = if input.strict { "error" } else { "warning" };
        match &report.status {
            FileStatus::Complete => {}
            // Said once, by the run's error.
            FileStatus::Partial(_) if stop.load(std::sync::atomic::Ordering::Relaxed) => {}
            FileStatus::Partial(msg) => {
                progress.clear();
                eprintln!(
                    "tunnelwatch: {label}: {}: {msg} (kept {} complete records)",
                    file.display(),
                    report.packets
                );
            }
            FileStatus::Failed(msg) => {
                progress.clear();
                eprintln!("tunnelwatch: error: {}: {msg}", file.display());
            }
        }
    }
    // Workers are joined and the flows read so far ended either way; on a stop they are
    // dropped with every temporary. A signal up to here counts as a stop.
    let result = pipeline.finish();
    let stopped = stop.load(std::sync::atomic::Ordering::Relaxed);
    drop(interrupt_guard);
    progress.clear();
    if stopped {
        return Err(interrupt::Interrupted::now(result.1.packets_read).into());
    }
    Ok(result)
}

/// Loads the user's endpoint lists (if any) for the endpoint-list detectors.
fn install_endpoint_lists(input: &InputArgs) -> Result<()> {
    if input.no_builtin_endpoints {
        crate::intel::endpoints::disable_builtin();
    }
    let mut list = crate::intel::endpoints::EndpointList::default();
    if let Some(path) = &input.tor_relays {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        list.load_tor_relays(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &input.endpoints {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        list.load_endpoints(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    if !list.is_empty() {
        crate::intel::endpoints::install(list);
    }
    Ok(())
}

fn run_flows(args: FlowsArgs) -> Result<i32> {
    let mut out = FlowsOutput::open(args.out_file())?;
    // On an error `out` is dropped, which removes a file's partial copy.
    let (summary, counts) = write_flows_to(&args, out.writer())?;
    out.finish()?;
    if args.input.json {
        eprintln!("{}", report::summary_json(&summary, &counts));
    } else if !args.input.quiet {
        report::print_terminal_summary(&summary, &counts);
    }
    Ok(args.input.exit_code(&summary))
}

/// Runs `flows` into `writer`; returns the run's totals and its flows per protocol and
/// platform.
fn write_flows_to(
    args: &FlowsArgs,
    mut writer: &mut dyn Write,
) -> Result<(RunSummary, report::FlowCounts)> {
    let threads = args.input.config().threads;
    let format = args.format();
    let platforms = std::sync::Arc::new(platforms_with(args.platforms.as_deref())?);
    let row_format = match format {
        FlowFormat::Jsonl => Some(output::RowFormat::Jsonl),
        FlowFormat::Csv => Some(output::RowFormat::Csv),
        FlowFormat::Table => None,
    };
    match row_format {
        // Line formats stream through a sorted spill: memory stays bounded by the flow cap.
        Some(format) => {
            let spill = std::rc::Rc::new(std::cell::RefCell::new(spill::FlowSpill::new(threads)));
            let sink = std::rc::Rc::clone(&spill);
            let (_, summary) = run_pipeline_into(&args.input, |config| {
                Pipeline::with_rows(
                    config,
                    output::row_renderer(format, std::sync::Arc::clone(&platforms)),
                    Box::new(move |rows| sink.borrow_mut().push(rows)),
                )
            })?;
            let spill = std::rc::Rc::into_inner(spill)
                .context("flow spill still shared after the run")?
                .into_inner();
            let counts = report::FlowCounts {
                protocols: spill.protocol_counts().clone(),
                platforms: spill.platform_tally(&platforms),
            };
            spill.finish(&mut writer, format)?;
            Ok((summary, counts))
        }
        None => {
            let (records, summary) = run_pipeline(&args.input)?;
            output::write_flows(&mut writer, &records, format, &platforms)?;
            let mut counts = report::FlowCounts {
                protocols: output::protocol_counts(&records),
                ..Default::default()
            };
            for r in &records {
                if let Some((p, result)) = crate::stats::flow_attempt(r, &platforms) {
                    counts.platforms.add(p, result, 1);
                }
            }
            Ok((summary, counts))
        }
    }
}

/// An output folder made before a run, so that a path that cannot be written fails at once and
/// not after the run. Folders this made are removed again, while still empty, unless the run
/// [`kept`](OutputFolder::keep) them: a run stopped by Ctrl-C or failing before its first output
/// leaves no empty folder behind. A folder that was already there is left alone.
struct OutputFolder<'a> {
    path: &'a std::path::Path,
    /// The outermost folder of `path` this made (`None`: it made none, or the run kept them).
    made_from: Option<PathBuf>,
}

impl<'a> OutputFolder<'a> {
    fn create(path: &'a std::path::Path) -> Result<Self> {
        let made_from = path
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
            .last()
            .map(std::path::Path::to_path_buf);
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating output folder {}", path.display()))?;
        Ok(OutputFolder { path, made_from })
    }

    fn keep(mut self) {
        self.made_from = None;
    }
}

impl Drop for OutputFolder<'_> {
    fn drop(&mut self) {
        let Some(outermost) = &self.made_from else {
            return;
        };
        // `remove_dir` removes empty folders only: anything written into them stays.
        for folder in self.path.ancestors() {
            if std::fs::remove_dir(folder).is_err() || folder == outermost.as_path() {
                break;
            }
        }
    }
}

fn run_analyze(args: AnalyzeArgs) -> Result<i32> {
    let out_folder = OutputFolder::create(&args.out)?;
    // Read before the captures, so a bad events file fails at once, not after the run.
    let extra_events = read_user_events(args.stats.events.as_deref())?;
    let have_captures = !args.input.inputs.is_empty() || !args.input.read.is_empty();
    // Flows are reduced as they finish (`analysis`): the run never holds them all.
    let analysis = std::rc::Rc::new(std::cell::RefCell::new(new_analysis(
        &args.stats,
        args.input.config().threads,
    )?));
    let mut summary = if have_captures || args.flow_log.is_empty() {
        let sink = std::rc::Rc::clone(&analysis);
        run_pipeline_into(&args.input, |config| {
            Pipeline::with_records(
                config,
                Box::new(move |records| {
                    let mut analysis = sink.borrow_mut();
                    records.iter().for_each(|r| analysis.add(r));
                }),
            )
        })?
        .1
    } else {
        RunSummary::default()
    };
    let mut analysis = std::rc::Rc::into_inner(analysis)
        .context("analysis still shared after the run")?
        .into_inner();
    for log in &args.flow_log {
        let note = each_flow_log_flow(log, &mut |r| {
            summary.first_ts = Some(summary.first_ts.map_or(r.first_ts, |t| t.min(r.first_ts)));
            summary.last_ts = Some(summary.last_ts.map_or(r.last_ts, |t| t.max(r.last_ts)));
            analysis.add(&r);
        })
        .with_context(|| format!("reading flow log {}", log.display()))?;
        if !args.input.quiet {
            eprintln!("flow log {}: {note}", log.display());
        }
    }
    summary.flows = analysis.flows();
    let (_, counts) = analysis.finish(
        &summary,
        &extra_events,
        &args.out,
        args.figures.as_deref(),
        args.input.quiet || args.input.json,
    )?;
    out_folder.keep();
    if args.input.json {
        println!("{}", report::summary_json(&summary, &counts));
    }
    Ok(args.input.exit_code(&summary))
}

/// Reads one flow log, detecting its format: Parquet (magic `PAR1`) or CSV with tunnelwatch's
/// flow-table header (both [`crate::ingest::flowlog::flow_table`]), else nfdump CSV. Hands each
/// flow to `each` as it is read (a Parquet table is read whole first, in its columnar form, and
/// turned into text and flows a slice of rows at a time) and returns a one-line account of what
/// was read.
/// Rows of a Parquet flow log turned into text at a time ([`each_flow_log_flow`]).
const PARQUET_ROWS_PER_SLICE: usize = 16_384;

fn each_flow_log_flow(path: &std::path::Path, each: &mut dyn FnMut(FlowRecord)) -> Result<String> {
    use crate::ingest::flowlog::{self, flow_table};
    use std::io::BufRead;
    let table = |stats: flowlog::TableStats| {
        format!(
            "{} flows ({} with archived labels, {} labelled by port), {} rows unreadable",
            stats.records, stats.labels_restored, stats.labels_from_ports, stats.bad_lines
        )
    };
    let mut reader = io::BufReader::new(std::fs::File::open(path)?);
    // The format from the first bytes: Parquet's magic, or the header line of a CSV.
    let head = reader.fill_buf()?;
    if head.starts_with(b"PAR1") {
        // The columns are checked at the first slice; a table that is not a flow table
        // stops the reading there.
        let mut rows: Option<Result<flow_table::FlowTableRows, flowlog::FlowLogError>> = None;
        let read = crate::stats::each_parquet_text_chunk(
            path,
            PARQUET_ROWS_PER_SLICE,
            &mut |names, slice| match rows
                .get_or_insert_with(|| flow_table::FlowTableRows::new(names))
            {
                Ok(reader) => {
                    reader.read(slice, each);
                    Ok(())
                }
                Err(_) => Err(io::Error::other("not a flow table")),
            },
        );
        let stats = match rows {
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(reader)) => reader.stats,
            None => flowlog::TableStats::default(),
        };
        read?;
        return Ok(table(stats));
    }
    let first_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    if flow_table::is_flow_table_header(String::from_utf8_lossy(first_line).trim_end()) {
        return Ok(table(flowlog::each_flow_table_csv_flow(reader, each)?));
    }
    let stats = flowlog::each_nfdump_csv_flow(reader, each)?;
    Ok(format!(
        "{} records ({} lines unreadable)",
        stats.records, stats.bad_lines
    ))
}

/// Everything `analyze` writes from finished flows: flows table, per-window tables, detection,
/// summary.json, report.html (+ report_data.json, figures).
/// `extra_events` are the user's `--events`, read once per run by the caller. Returns the
/// flows reduced to the stats columns (live capture adds a window's to its rolling statistics
/// instead of reducing the flows again).
fn write_analysis(
    records: &[FlowRecord],
    summary: &RunSummary,
    stats_args: &StatsArgs,
    extra_events: &[crate::detect::BlockEvent],
    out: &std::path::Path,
    figures: Option<&std::path::Path>,
    quiet: bool,
) -> Result<crate::stats::FlowColumns> {
    let mut analysis = new_analysis(stats_args, 1)?;
    for r in records {
        analysis.add(r);
    }
    let (columns, _) = analysis.finish(summary, extra_events, out, figures, quiet)?;
    Ok(columns)
}

fn new_analysis(stats_args: &StatsArgs, threads: usize) -> Result<analysis::Analysis> {
    let formats = stats_args.tables.iter().map(|f| (*f).into()).collect();
    Ok(analysis::Analysis::new(
        stats_config(stats_args)?,
        formats,
        threads,
    ))
}

/// Writes `summary.json`, `report_data.json` and `report.html` of a run into `out`.
fn write_summary_and_report(
    summary: &RunSummary,
    counts: &report::FlowCounts,
    data: &report::html::ReportData,
    out: &std::path::Path,
) -> Result<()> {
    let summary_path = out.join("summary.json");
    report::write_summary_json(summary, counts, &summary_path)
        .with_context(|| format!("writing {}", summary_path.display()))?;
    data.write_json(&out.join("report_data.json"))
        .context("writing report_data.json")?;
    report::html::write_html(data, &out.join("report.html")).context("writing report.html")
}

fn read_user_events(path: Option<&std::path::Path>) -> Result<Vec<crate::detect::BlockEvent>> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            crate::detect::parse_events(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
        None => Ok(Vec::new()),
    }
}

fn run_detect(args: DetectArgs) -> Result<i32> {
    // analyze writes the series table as Parquet by default, CSV or JSON with --tables.
    let series = ["parquet", "csv", "json"]
        .iter()
        .map(|ext| args.dir.join(format!("series.{ext}")))
        .find(|p| p.is_file())
        .unwrap_or_else(|| args.dir.join("series.parquet"));
    let metrics = crate::stats::read_metric_series(&series, 300)
        .with_context(|| format!("reading {}", series.display()))?;
    let data_path = args.dir.join("report_data.json");
    let mut data = report::html::ReportData::read_json(&data_path)
        .with_context(|| format!("reading {}", data_path.display()))?;
    let summary = RunSummary {
        first_ts: data.first_ts,
        last_ts: data.last_ts,
        ..RunSummary::default()
    };
    let extra = read_user_events(args.events.as_deref())?;
    let detections =
        detection::run(&metrics, &summary, &extra, &args.dir).context("detecting events")?;
    eprintln!(
        "{} alerts, {} calendar events, {} alignments; wrote alerts.json and report.html in {}",
        detections.alerts.len(),
        detections.events.len(),
        detections.alignments.len(),
        args.dir.display()
    );
    for line in detection::alignment_lines(&detections.alignments, &detections.alerts) {
        eprintln!("{line}");
    }
    data.events = detections.events;
    data.alerts = detections.alerts;
    data.alignments = detections.alignments;
    data.write_json(&data_path)
        .context("writing report_data.json")?;
    report::html::write_html(&data, &args.dir.join("report.html"))
        .context("writing report.html")?;
    Ok(0)
}

fn run_events(args: EventsArgs) -> Result<i32> {
    let mut events = crate::detect::builtin_events();
    if let Some(path) = &args.events {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        events.extend(
            crate::detect::parse_events(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        );
    }
    events.sort_by_key(|e| e.start_ts);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if args.json {
        serde_json::to_writer_pretty(&mut out, &events)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{:<8} {:<22} {:<21} {:<21} {:<12} {:<24} source",
            "country", "platform", "start (UTC)", "end (UTC)", "method", "VPN demand (published)"
        )?;
        for e in &events {
            writeln!(
                out,
                "{:<8} {:<22} {:<21} {:<21} {:<12} {:<24} {}",
                e.country,
                e.platform,
                crate::detect::format_ts(e.start_ts),
                e.end_ts
                    .map_or_else(|| "open".to_string(), crate::detect::format_ts),
                e.method,
                e.vpn_demand
                    .as_ref()
                    .map_or_else(|| "–".to_string(), |d| d.short()),
                e.source
            )?;
        }
    }
    out.flush()?;
    Ok(0)
}

fn run_eval_nab(args: EvalNabArgs) -> Result<i32> {
    use crate::detect::nab;
    let files =
        nab::load_corpus(&args.nab).map_err(|e| anyhow::anyhow!("{}: {e}", args.nab.display()))?;
    // NAB's own profiles.json when the folder has one; the published cost matrices otherwise.
    let profiles = std::fs::read_to_string(args.nab.join("profiles.json"))
        .ok()
        .and_then(|t| nab::parse_profiles(&t).ok())
        .unwrap_or_else(nab::builtin_profiles);
    let summaries = nab::evaluate(&files, &nab::nab_config(), &profiles);
    println!(
        "NAB: {} series, {} windows, detector config nab_config() (see src/detect/nab.rs)",
        files.len(),
        summaries.first().map_or(0, |s| s.labelled_windows)
    );
    print!(
        "{:<20} {:>8} {:>8} {:>10}",
        "profile", "score", "recall", "precision"
    );
    for (name, _) in nab::PUBLISHED {
        print!(" {:>18}", name);
    }
    println!();
    let order = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];
    let rank = |name: &str| order.iter().position(|o| *o == name).unwrap_or(order.len());
    let mut summaries = summaries;
    summaries.sort_by_key(|s| rank(&s.profile));
    for s in &summaries {
        print!(
            "{:<20} {:>8.1} {:>8.3} {:>10.3}",
            s.profile,
            s.score,
            s.recall(),
            s.precision()
        );
        if let Some(col) = order.iter().position(|o| *o == s.profile) {
            for (_, scores) in nab::PUBLISHED {
                print!(" {:>18.1}", scores.get(col).copied().unwrap_or(f64::NAN));
            }
        }
        println!();
    }
    println!("published: numenta/NAB results/final_results.json (NAB v1.1)");
    Ok(0)
}

fn run_report(args: ReportArgs) -> Result<i32> {
    let data_path = args.dir.join("report_data.json");
    let data = report::html::ReportData::read_json(&data_path)
        .with_context(|| format!("reading {}", data_path.display()))?;
    let html = args.dir.join("report.html");
    report::html::write_html(&data, &html)
        .with_context(|| format!("writing {}", html.display()))?;
    if let Some(dir) = &args.figures {
        report::html::write_figures(&data, dir)
            .with_context(|| format!("writing figures into {}", dir.display()))?;
    }
    eprintln!("wrote {}", html.display());
    Ok(0)
}

fn run_collect(args: CollectArgs) -> Result<i32> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating output folder {}", args.out.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(secs) = args.duration {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(u64::from(secs)));
            stop.store(true, Ordering::Relaxed);
        });
    }
    if !args.quiet {
        eprintln!(
            "collecting NetFlow/IPFIX on udp {}{}",
            args.listen,
            args.duration
                .map_or(String::new(), |d| format!(" for {d} s"))
        );
    }
    let mut records = Vec::new();
    let stats = crate::ingest::flowlog::collect(args.listen, stop, |batch| records.extend(batch))
        .with_context(|| format!("collector on {}", args.listen))?;
    crate::pipeline::number_flows(&mut records);
    if !args.quiet {
        eprintln!("collector: {stats:?}");
    }
    let summary = RunSummary {
        flows: records.len() as u64,
        ..RunSummary::default()
    };
    let extra_events = read_user_events(args.stats.events.as_deref())?;
    write_analysis(
        &records,
        &summary,
        &args.stats,
        &extra_events,
        &args.out,
        None,
        args.quiet,
    )?;
    Ok(0)
}

/// Live capture: each window's finished flows go to `OUT/window-<unix start>/` (the same files as
/// `analyze`, plus `capture.json` with the window's packet and kernel drop counters); after each
/// window the detectors re-run over the series so far and replace `OUT/alerts.json`; at the stop
/// (SIGINT, SIGTERM, `--duration`, `--stop-file`) every flow of the run goes to `OUT/`.
#[cfg(feature = "live")]
fn run_capture(args: CaptureArgs) -> Result<i32> {
    use crate::ingest::live;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating output folder {}", args.out.display()))?;
    let stats_config = stats_config(&args.stats)?;
    let extra_events = read_user_events(args.stats.events.as_deref())?;
    let config = live::LiveConfig {
        filter: args.filter.clone(),
        snaplen: args.snaplen,
        promisc: args.promisc,
        window_secs: args.stats.window,
        flow: args.flow_table.flow_config(),
        ..live::LiveConfig::new(&args.interface)
    };
    let capture = live::LiveCapture::open(&config)?;
    let options = live::ServiceOptions {
        duration: args
            .duration
            .map(|d| std::time::Duration::from_secs(u64::from(d))),
        stop_file: args.stop_file.clone(),
        metrics_addr: args.metrics,
        home_net: stats_config.home_net.clone(),
        handle_signals: true,
        quiet: args.quiet,
    };
    // The run in bounded memory: windows frozen after the revision horizon (host rows to
    // `hosts/`, series rows kept), running tallies for the report, a few example flows per
    // protocol; finished flows are written per window and then dropped.
    let formats: Vec<crate::stats::TableFormat> =
        args.stats.tables.iter().map(|f| (*f).into()).collect();
    let revise_windows = args
        .revise_windows
        .unwrap_or_else(|| default_revise_windows(&config.flow, config.window_secs));
    let mut rolling = crate::stats::rolling::RollingStats::new(
        stats_config.clone(),
        revise_windows,
        &args.out.join("hosts"),
        &formats,
    );
    let mut tallies = report::html::FlowTallies::default();
    let mut examples = Vec::new();
    let mut counts = report::FlowCounts::default();
    let mut so_far = RunSummary::default();
    let totals = live::serve(capture, &options, &mut |window, mut records| {
        crate::pipeline::number_flows(&mut records);
        let dir = args.out.join(format!("window-{}", window.start_secs()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating output folder {}", dir.display()))?;
        // Same arguments, so the same stats config as `rolling`'s: the window's columns are the
        // rows the run's statistics need.
        let columns = write_analysis(
            &records,
            &window.run_summary(),
            &args.stats,
            &extra_events,
            &dir,
            None,
            true,
        )?;
        write_json_atomically(&dir.join("capture.json"), &window.to_json())?;
        rolling.push_columns(&columns);
        for r in &records {
            tallies.add(r, &stats_config);
            output::count_protocol(&mut counts.protocols, r.label.protocol);
            if let Some((p, result)) = stats_config.attempt(r) {
                counts.platforms.add(p, result, 1);
            }
        }
        examples.extend(records);
        report::html::keep_example_candidates(&mut examples);
        so_far.first_ts = so_far.first_ts.or(window.first_ts);
        so_far.last_ts = window.last_ts.or(so_far.last_ts);
        let metrics = rolling
            .roll(window.end_ns)
            .context("per-window statistics of the run so far")?;
        let detections = detection::run(&metrics.detector, &so_far, &extra_events, &args.out)
            .context("detecting events over the run so far")?;
        Ok(live::WindowWritten {
            open_alerts: detections
                .alerts
                .iter()
                .filter(|a| a.end_ts.is_none())
                .count() as u64,
        })
    })?;
    if !args.quiet {
        eprintln!(
            "capture: {} windows; kernel: {} received, {} dropped, {} dropped by interface",
            totals.windows, totals.kernel.received, totals.kernel.dropped, totals.kernel.if_dropped
        );
    }
    let late_flows = rolling.late_flows();
    let (metrics, _tables) = rolling
        .finish(&args.out)
        .context("writing the run's statistics")?;
    let detections = detection::run(&metrics.detector, &totals.summary, &extra_events, &args.out)
        .context("detecting events")?;
    // Every series comes from the run's statistics (`all_columns`); the examples are a sample
    // of the flows, not a base for counting.
    let data = report::html::ReportData::from_run(
        &totals.summary,
        &tallies,
        &examples,
        &crate::stats::FlowColumns::default(),
        &metrics.all_columns,
        &stats_config,
        detections,
    );
    write_summary_and_report(&totals.summary, &counts, &data, &args.out)?;
    if !args.quiet {
        report::print_terminal_summary(&totals.summary, &counts);
    }
    let run_doc = serde_json::json!({
        "schema_version": live::CAPTURE_JSON_SCHEMA_VERSION,
        "interface": args.interface,
        "filter": args.filter,
        "windows": totals.windows,
        "packets": totals.summary.packets_read,
        "flows": totals.summary.flows,
        "late_flows": late_flows,
        "revise_windows": revise_windows,
        "kernel": {
            "received": totals.kernel.received,
            "dropped": totals.kernel.dropped,
            "if_dropped": totals.kernel.if_dropped,
        },
    });
    write_json_atomically(&args.out.join("capture.json"), &run_doc)?;
    Ok(0)
}

/// Windows a live capture keeps open for revision: at least [`MIN_REVISE_WINDOWS`], and enough
/// to see a flow that starts at the end of a window, runs for a window and then goes quiet end
/// by the idle timeout (it is swept when the next packets arrive, up to a window later), so it
/// is still counted in the window it started in.
#[cfg(feature = "live")]
fn default_revise_windows(flow: &crate::flow::FlowConfig, window_secs: u32) -> u32 {
    let longest = flow.tcp_idle_secs.max(flow.udp_idle_secs);
    longest
        .div_ceil(window_secs.max(1))
        .saturating_add(3)
        .max(MIN_REVISE_WINDOWS)
}

/// Default revision horizon floor: an hour of 5-minute windows, so flows of up to about an hour
/// are counted where `analyze` counts them, at the cost of holding an hour of flow rows.
#[cfg(feature = "live")]
const MIN_REVISE_WINDOWS: u32 = 12;

/// Writes `doc` to `path` through a temporary name, so a reader never sees half a file.
#[cfg(feature = "live")]
fn write_json_atomically(path: &std::path::Path, doc: &serde_json::Value) -> Result<()> {
    crate::atomic_file::write_bytes_atomically(
        path,
        (serde_json::to_string_pretty(doc)? + "\n").as_bytes(),
    )
    .with_context(|| format!("writing {}", path.display()))
}

fn stats_config(args: &StatsArgs) -> Result<crate::stats::StatsConfig> {
    let mut config = crate::stats::StatsConfig {
        window_secs: args.window,
        watch: args.watch.iter().map(|w| w.trim().to_lowercase()).collect(),
        ..Default::default()
    };
    if !args.home_net.is_empty() {
        config.home_net = args
            .home_net
            .iter()
            .map(|c| {
                c.parse()
                    .map_err(|e: String| anyhow::anyhow!("--home-net: {e}"))
            })
            .collect::<Result<_>>()?;
    }
    if let Some(key) = &args.anonymize {
        let key_file = key
            .strip_prefix("file:")
            .map(std::path::Path::new)
            .or_else(|| Some(std::path::Path::new(key)).filter(|p| p.is_file()));
        let key = match (key.strip_prefix("env:"), key_file) {
            (Some(var), _) => std::env::var(var)
                .with_context(|| format!("--anonymize: environment variable {var} is not set"))?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("--anonymize: reading key file {}", path.display()))?
                .trim()
                .to_string(),
            (None, None) => key.clone(),
        };
        if key.is_empty() {
            bail!("--anonymize: the key is empty");
        }
        config.anonymize = Some(if args.hash_hosts {
            crate::stats::anon::Anonymizer::hashing(&key)
        } else {
            crate::stats::anon::Anonymizer::from_passphrase(&key)
        });
    }
    config.platforms = platforms_with(args.platforms.as_deref())?;
    Ok(config)
}

/// The built-in platforms and control sites, with the user's definitions from `path` added.
fn platforms_with(
    path: Option<&std::path::Path>,
) -> Result<crate::intel::platforms::PlatformMatcher> {
    let mut platforms = crate::intel::platforms::PlatformMatcher::default();
    if let Some(path) = path {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        platforms
            .load_user(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(platforms)
}

fn run_explain(args: ExplainArgs) -> Result<i32> {
    if args.flow.is_none() && args.protocol.is_none() && args.attempt.is_none() {
        bail!("say which flows to explain: --flow N, --protocol TOKEN or --attempt RESULT");
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut shown = 0usize;
    let platforms = platforms_with(args.platforms.as_deref())?;
    let (records, summary) = run_pipeline(&args.input)?;
    for r in &records {
        let attempt = crate::stats::flow_attempt(r, &platforms);
        let platform = attempt.map(|(p, _)| p.name.as_str());
        let wanted = args.flow.is_none_or(|id| id == r.id)
            && args.protocol.as_deref().is_none_or(|p| {
                r.label.protocol == p
                    || r.label.application == Some(p)
                    || r.label.provider == Some(p)
                    || platform == Some(p)
            })
            && args.attempt.as_deref().is_none_or(|filter| {
                attempt.is_some_and(|(_, result)| attempt_admitted(filter, result))
            });
        if wanted {
            shown += 1;
            output::explain(
                &mut out,
                r,
                attempt.map(|(p, result)| (p.name.as_str(), result)),
            )?;
        }
    }
    out.flush()?;
    if shown == 0 {
        eprintln!(
            "tunnelwatch: no flow matched (the run had {} flows)",
            summary.flows
        );
    }
    Ok(args.input.exit_code(&summary))
}

#[cfg(test)]
mod tests {
    use super::OutputFolder;

    #[test]
    fn output_folders_made_for_a_run_go_unless_kept_or_written_into() {
        let root = std::env::temp_dir().join(format!("tw-out-folder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();

        // Made three levels deep and left empty: all three go, the folder above stays.
        let nested = root.join("a/b/c");
        drop(OutputFolder::create(&nested).unwrap());
        assert!(!root.join("a").exists());
        assert!(root.exists());

        // Kept by the run: stays, even empty.
        OutputFolder::create(&nested).unwrap().keep();
        assert!(nested.is_dir());

        // Already there: left alone.
        drop(OutputFolder::create(&nested).unwrap());
        assert!(nested.is_dir());

        // Written into before the run failed: the file and its folders stay; only the empty
        // folder made beside them goes.
        std::fs::remove_dir_all(root.join("a")).unwrap();
        let folder = OutputFolder::create(&nested).unwrap();
        std::fs::write(root.join("a/b/written.txt"), b"x").unwrap();
        drop(folder);
        assert!(!nested.exists());
        assert!(root.join("a/b/written.txt").is_file());

        // A path that cannot be a folder fails at once.
        std::fs::write(root.join("file"), b"x").unwrap();
        assert!(OutputFolder::create(&root.join("file/sub")).is_err());

        std::fs::remove_dir_all(&root).unwrap();
    }
}
