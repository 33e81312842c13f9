//! Live capture from a network interface through libpcap (cargo feature `live`).
//!
//! Packets go through the same path as the offline pipeline: `decode::decode(link type, frame)`
//! and then one [`FlowTable`] with the fingerprint registry. The link type is the interface's
//! pcap datalink (DLT) value; the DLT values the decoder knows (Ethernet 1, NULL 0, raw IP 12/14,
//! Linux cooked 113/276, ...) are the same numbers as the file link types.
//!
//! Time is cut into windows aligned to multiples of the window length since the Unix epoch (as
//! the per-window statistics are). At each window edge the flows that *finished* during the
//! window (closed, idle-expired, evicted) are handed to the caller with a [`WindowReport`]
//! (packets, skips, finished flows, kernel drop counters of the window). On stop, every open flow
//! is ended and handed over with the last window.
//!
//! Threads (see [`service`] for why this shape): a capture thread owns the libpcap handle and
//! the flow table and runs the blocking read loop; a small tokio runtime on its own thread owns
//! the window timer, the signal handlers, the stop conditions and the metrics endpoint
//! ([`metrics`]); the calling thread writes each closed window. They share only atomics
//! ([`Control`], [`LiveMetrics`]) and a channel of closed windows.
//!
//! The handle is non-blocking: when no packet is waiting the capture thread pauses (default
//! 5 ms) and then checks the stop flag and the edge the timer announced, while the kernel buffer
//! (default 16 MiB) keeps packets. Flow idle expiry runs only when packets arrive (the table
//! sweeps on `process`), so on a silent interface idle flows stay open until traffic resumes or
//! the stop.

pub mod metrics;
pub mod service;

pub use metrics::LiveMetrics;
pub use service::{serve, ServiceOptions, WindowWritten};

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::decode::{self, SkipCounts};
use crate::fingerprint::registry::REGISTRY;
use crate::flow::{FlowConfig, FlowCounters, FlowRecord, FlowTable};
use crate::pipeline::RunSummary;

const NANOS: i64 = 1_000_000_000;

/// What the runtime tells the capture thread: stop, and the latest window edge on the clock.
#[derive(Debug, Default)]
pub struct Control {
    /// Set once to end the capture (signal, `--duration`, `--stop-file`, a failed writer).
    pub stop: AtomicBool,
    /// Unix nanoseconds of the latest window edge the timer saw pass (0 before the first);
    /// a quiet capture closes its window when this reaches the window's end.
    pub edge_ns: AtomicI64,
}

/// Longest a captured packet waits in a partly filled kernel block (milliseconds).
const BLOCK_TIMEOUT_MS: i32 = 50;

/// Settings of one live capture.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Interface name as `tcpdump -i` takes it (e.g. `eth0`, `lo`).
    pub interface: String,
    /// BPF filter expression (tcpdump syntax); `None` captures everything.
    pub filter: Option<String>,
    /// Bytes kept of each frame (tcpdump `-s`); fingerprints need the first payload bytes only.
    pub snaplen: i32,
    /// Put the interface in promiscuous mode (off by default, as a span port needs no more).
    pub promisc: bool,
    /// Window length in seconds (at least 1).
    pub window_secs: u32,
    /// Flow table settings (timeouts, cap).
    pub flow: FlowConfig,
    /// Pause in milliseconds when no packet is waiting (the handle is non-blocking): bounds how
    /// late a stop request or a window edge is noticed, while the kernel buffer keeps packets.
    pub idle_pause_ms: u64,
    /// Kernel capture buffer in bytes (it must hold the packets of one pause at full rate).
    pub buffer_bytes: i32,
}

impl LiveConfig {
    /// Defaults for an interface: no filter, snaplen 262144 (tcpdump's), no promiscuous mode,
    /// 5-minute windows, default flow table, 5 ms idle pause, 16 MiB kernel buffer.
    pub fn new(interface: &str) -> Self {
        LiveConfig {
            interface: interface.to_string(),
            filter: None,
            snaplen: 262_144,
            promisc: false,
            window_secs: 300,
            flow: FlowConfig::default(),
            idle_pause_ms: 5,
            buffer_bytes: 16 << 20,
        }
    }
}

/// libpcap's counters (`pcap_stats`), per window or in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Packets that passed the filter and reached the capture buffer.
    pub received: u64,
    /// Packets dropped because the buffer was full (we read too slowly).
    pub dropped: u64,
    /// Packets dropped by the interface or its driver (not supported everywhere: then 0).
    pub if_dropped: u64,
}

impl KernelStats {
    /// Counters between two cumulative readings; libpcap's counters are 32-bit and wrap.
    fn since(now: &pcap::Stat, before: &pcap::Stat) -> KernelStats {
        KernelStats {
            received: u64::from(now.received.wrapping_sub(before.received)),
            dropped: u64::from(now.dropped.wrapping_sub(before.dropped)),
            if_dropped: u64::from(now.if_dropped.wrapping_sub(before.if_dropped)),
        }
    }

    fn add(&mut self, o: &KernelStats) {
        self.received += o.received;
        self.dropped += o.dropped;
        self.if_dropped += o.if_dropped;
    }
}

/// Version of the `capture.json` documents (per window and for the run).
pub const CAPTURE_JSON_SCHEMA_VERSION: u32 = 1;

/// What happened in one window.
#[derive(Debug, Clone, Default)]
pub struct WindowReport {
    /// 0 for the first window of the run, then counting up.
    pub index: u64,
    /// Window start, Unix nanoseconds (aligned to the window length, except a stop mid-window
    /// leaves `end_ns` at the stop time).
    pub start_ns: i64,
    pub end_ns: i64,
    /// Frames read from libpcap in this window.
    pub packets: u64,
    /// Frames the decoder skipped, by reason.
    pub skipped: SkipCounts,
    /// Flow table counters of this window (differences; `peak_live` is the run's so far).
    pub flow_counters: FlowCounters,
    /// Flows finished in this window (handed over with the report).
    pub flows_finished: u64,
    /// Flows still open at the window edge.
    pub open_flows: usize,
    /// Kernel counters of this window, when libpcap could give them.
    pub kernel: Option<KernelStats>,
    /// (protocol, client, server) of the flows still open at the window edge whose fingerprint
    /// so far names a circumvention family (for the live VPN-host gauge).
    pub open_circumvention: Vec<(&'static str, IpAddr, IpAddr)>,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
}

impl WindowReport {
    /// Window start in whole Unix seconds (used to name per-window output folders).
    pub fn start_secs(&self) -> i64 {
        self.start_ns.div_euclid(NANOS)
    }

    /// The window's facts for `capture.json` (times in Unix nanoseconds; `kernel` is null
    /// when libpcap gave no counters).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "schema_version": CAPTURE_JSON_SCHEMA_VERSION,
            "window_index": self.index,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "packets": self.packets,
            "skipped": self.skipped.total(),
            "flows_finished": self.flows_finished,
            "flows_created": self.flow_counters.flows_created,
            "open_flows": self.open_flows,
            "first_ts_ns": self.first_ts,
            "last_ts_ns": self.last_ts,
            "kernel": self.kernel.map(|k| serde_json::json!({
                "received": k.received,
                "dropped": k.dropped,
                "if_dropped": k.if_dropped,
            })),
        })
    }

    /// The window as a run summary (for the writers shared with `analyze`).
    pub fn run_summary(&self) -> RunSummary {
        RunSummary {
            packets_read: self.packets,
            skipped: self.skipped.clone(),
            flow_counters: self.flow_counters,
            flows: self.flows_finished,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            ..RunSummary::default()
        }
    }
}

impl std::fmt::Display for WindowReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "window {} (start {} s, {:.1} s): {} packets, {} skipped, {} flows finished, {} open",
            self.index,
            self.start_secs(),
            (self.end_ns - self.start_ns) as f64 / 1e9,
            self.packets,
            self.skipped.total(),
            self.flows_finished,
            self.open_flows
        )?;
        match &self.kernel {
            Some(k) => write!(
                f,
                "; kernel: {} received, {} dropped, {} dropped by interface",
                k.received, k.dropped, k.if_dropped
            ),
            None => write!(f, "; kernel counters unavailable"),
        }
    }
}

/// Totals of a whole live run.
#[derive(Debug, Clone, Default)]
pub struct LiveTotals {
    pub summary: RunSummary,
    /// Sum of the per-window kernel counters (windows where libpcap gave them); filled in by
    /// `LiveCapture::run`.
    pub kernel: KernelStats,
    pub windows: u64,
}

/// The capture-independent core: frames in, windows of finished flows out.
pub struct LiveCore {
    link_type: u16,
    window_ns: i64,
    table: Box<FlowTable>,
    window: WindowReport,
    finished: Vec<FlowRecord>,
    counters_at_start: FlowCounters,
    totals: LiveTotals,
}

impl LiveCore {
    /// A core for frames of `link_type`, whose first window contains `now_ns`.
    pub fn new(link_type: u16, flow: FlowConfig, window_secs: u32, now_ns: i64) -> Self {
        let window_ns = i64::from(window_secs.max(1)) * NANOS;
        let start_ns = now_ns.div_euclid(window_ns) * window_ns;
        LiveCore {
            link_type,
            window_ns,
            table: Box::new(FlowTable::new(flow, REGISTRY)),
            window: WindowReport {
                start_ns,
                end_ns: start_ns.saturating_add(window_ns),
                ..WindowReport::default()
            },
            finished: Vec::new(),
            counters_at_start: FlowCounters::default(),
            totals: LiveTotals::default(),
        }
    }

    /// Accounts one captured frame (timestamp in Unix nanoseconds).
    pub fn packet(&mut self, ts_ns: i64, frame: &[u8]) {
        let w = &mut self.window;
        w.packets += 1;
        match decode::decode(self.link_type, frame) {
            Ok(pkt) => {
                w.first_ts = Some(w.first_ts.map_or(ts_ns, |f| f.min(ts_ns)));
                w.last_ts = Some(w.last_ts.map_or(ts_ns, |l| l.max(ts_ns)));
                let finished = &mut self.finished;
                self.table.process(ts_ns, &pkt, &mut |r| finished.push(r));
            }
            Err(reason) => w.skipped.add(reason),
        }
    }

    /// Flows created since the start of the run.
    pub fn flows_created(&self) -> u64 {
        self.table.counters().flows_created
    }

    /// Flows open now.
    pub fn open_flows(&self) -> usize {
        self.table.live()
    }

    /// Start of the current window (Unix nanoseconds).
    pub fn window_start_ns(&self) -> i64 {
        self.window.start_ns
    }

    /// When `now_ns` is at or past the current window's end, closes the window and returns it
    /// with the flows finished in it; the next window is the one containing `now_ns`.
    pub fn tick(&mut self, now_ns: i64) -> Option<(WindowReport, Vec<FlowRecord>)> {
        if now_ns < self.window.end_ns {
            return None;
        }
        let end = self.window.end_ns;
        let closed = self.close(end);
        let start_ns = now_ns.div_euclid(self.window_ns) * self.window_ns;
        self.window.start_ns = start_ns;
        self.window.end_ns = start_ns.saturating_add(self.window_ns);
        Some(closed)
    }

    /// Ends every open flow and closes the last window at `now_ns` (or at the last packet, if
    /// later).
    pub fn finish(mut self, now_ns: i64) -> (WindowReport, Vec<FlowRecord>, LiveTotals) {
        let finished = &mut self.finished;
        self.table.finish_all(&mut |r| finished.push(r));
        let end = now_ns
            .max(self.window.last_ts.unwrap_or(now_ns))
            .max(self.window.start_ns);
        let (report, records) = self.close(end);
        self.totals.summary.flow_counters = self.table.counters();
        (report, records, self.totals)
    }

    fn close(&mut self, end_ns: i64) -> (WindowReport, Vec<FlowRecord>) {
        let now = self.table.counters();
        let before = self.counters_at_start;
        self.counters_at_start = now;
        let next_index = self.window.index + 1;
        let mut report = std::mem::replace(
            &mut self.window,
            WindowReport {
                index: next_index,
                ..WindowReport::default()
            },
        );
        report.end_ns = end_ns;
        report.flow_counters = FlowCounters {
            packets: now.packets - before.packets,
            flows_created: now.flows_created - before.flows_created,
            evicted: now.evicted - before.evicted,
            idle_expired: now.idle_expired - before.idle_expired,
            closed: now.closed - before.closed,
            retransmissions: now.retransmissions - before.retransmissions,
            peak_live: now.peak_live,
        };
        let records = std::mem::take(&mut self.finished);
        report.flows_finished = records.len() as u64;
        report.open_flows = self.table.live();
        let open = &mut report.open_circumvention;
        self.table.for_each_open_label(
            |client, server, protocol, family: crate::fingerprint::Family| {
                if family.is_circumvention() {
                    open.push((protocol, client, server));
                }
            },
        );

        let t = &mut self.totals;
        t.windows += 1;
        t.summary.packets_read += report.packets;
        t.summary.skipped.merge(&report.skipped);
        t.summary.flows += report.flows_finished;
        t.summary.flow_counters = now;
        if let Some(f) = report.first_ts {
            t.summary.first_ts = Some(t.summary.first_ts.map_or(f, |x| x.min(f)));
        }
        if let Some(l) = report.last_ts {
            t.summary.last_ts = Some(t.summary.last_ts.map_or(l, |x| x.max(l)));
        }
        (report, records)
    }
}

/// An open libpcap handle on an interface, ready to run.
pub struct LiveCapture {
    cap: pcap::Capture<pcap::Active>,
    config: LiveConfig,
    link_type: u16,
}

impl LiveCapture {
    /// Opens the interface (immediate mode, non-blocking, optional promiscuous mode) and applies
    /// the BPF filter. Fails with libpcap's message (no such device, permission, bad filter).
    pub fn open(config: &LiveConfig) -> Result<Self> {
        if config.snaplen <= 0 {
            bail!("--snaplen must be positive");
        }
        let inactive = pcap::Capture::from_device(config.interface.as_str())
            .with_context(|| format!("interface {}", config.interface))?;
        let mut cap = inactive
            .promisc(config.promisc)
            .snaplen(config.snaplen)
            // Not immediate mode: libpcap then uses TPACKET_V2 with one fixed slot of about
            // the snapshot length per packet, so a 16 MiB buffer holds only ~64 frames at the
            // default snaplen and a burst overflows it. Without it (TPACKET_V3) packets are
            // packed into blocks and the buffer holds its size in packets; a block is handed
            // over when full or after the timeout, which delays packets by at most that.
            .immediate_mode(false)
            .timeout(BLOCK_TIMEOUT_MS)
            .buffer_size(config.buffer_bytes.max(1 << 20))
            .open()
            .with_context(|| {
                format!(
                    "opening {} for capture (needs root or CAP_NET_RAW)",
                    config.interface
                )
            })?
            // Blocking reads with a timeout do not return on a silent Linux interface (libpcap
            // keeps polling), so poll without blocking and pause when nothing is waiting.
            .setnonblock()
            .context("setting the capture non-blocking")?;
        if let Some(filter) = &config.filter {
            cap.filter(filter, true)
                .with_context(|| format!("BPF filter {filter:?}"))?;
        }
        let dlt = cap.get_datalink().0;
        let link_type = u16::try_from(dlt)
            .with_context(|| format!("unsupported datalink type {dlt} on {}", config.interface))?;
        Ok(LiveCapture {
            cap,
            config: config.clone(),
            link_type,
        })
    }

    /// The interface's datalink (DLT) value, used as the decoder's link type.
    pub fn link_type(&self) -> u16 {
        self.link_type
    }

    /// The capture thread's loop: reads until `control` says stop, cutting windows at packet
    /// timestamps and, when the interface is quiet, at the edges the runtime's timer announces;
    /// hands each closed window to `on_window` and, at the stop, the last one with every flow
    /// still open. Counters for the metrics endpoint are published into `metrics` as it goes.
    /// An error from `on_window` (the receiver is gone) ends the run.
    fn run(
        mut self,
        control: &Control,
        metrics: &LiveMetrics,
        on_window: &mut dyn FnMut(WindowReport, Vec<FlowRecord>) -> Result<()>,
    ) -> Result<LiveTotals> {
        let mut core = LiveCore::new(
            self.link_type,
            self.config.flow,
            self.config.window_secs,
            unix_now_ns(),
        );
        let mut kernel = KernelCounters::new(self.cap.stats().ok());
        let pause = Duration::from_millis(self.config.idle_pause_ms.max(1));
        let mut packets = 0u64;
        let mut last_publish = Instant::now();
        while !control.stop.load(Ordering::Relaxed) {
            let closed = match self.cap.next_packet() {
                Ok(packet) => {
                    // `time_t`/`suseconds_t` are i64 on 64-bit Linux but narrower elsewhere.
                    #[allow(clippy::useless_conversion)]
                    let ts_ns = timeval_ns(
                        i64::from(packet.header.ts.tv_sec),
                        i64::from(packet.header.ts.tv_usec),
                    );
                    // A packet past the window edge closes the window before it is counted.
                    let closed = core.tick(ts_ns);
                    core.packet(ts_ns, packet.data);
                    packets += 1;
                    // One writer, so a plain store; readers (the metrics endpoint) see it late
                    // by at most the packet in hand.
                    metrics.packets.store(packets, Ordering::Relaxed);
                    if packets % PUBLISH_EVERY_PACKETS == 0 {
                        publish_now(&mut self.cap, &core, &kernel, metrics, &mut last_publish);
                    }
                    closed
                }
                Err(pcap::Error::TimeoutExpired) => {
                    std::thread::sleep(pause);
                    publish_now(&mut self.cap, &core, &kernel, metrics, &mut last_publish);
                    // The buffer is drained, so no packet older than the announced edge is
                    // still waiting: the window can close on the clock.
                    core.tick(control.edge_ns.load(Ordering::Relaxed))
                }
                Err(e) => return Err(anyhow::Error::new(e).context("reading live capture")),
            };
            if let Some((mut report, records)) = closed {
                // Read after the packet that crossed the edge: off by at most that one packet.
                report.kernel = kernel.window(&mut self.cap);
                let open = report.open_flows as u64;
                publish_window(&kernel, core.flows_created(), open, metrics);
                on_window(report, records)?;
            }
        }
        // Last window: every flow still open ends here.
        let last_kernel = kernel.window(&mut self.cap);
        let (mut report, records, mut totals) = core.finish(unix_now_ns());
        report.kernel = last_kernel;
        totals.kernel = kernel.total;
        metrics.packets.store(packets, Ordering::Relaxed);
        // Every flow has ended: none open.
        let created = totals.summary.flow_counters.flows_created;
        publish_window(&kernel, created, 0, metrics);
        on_window(report, records)?;
        Ok(totals)
    }
}

/// Packets between two checks of whether the metrics are due a refresh under constant load.
const PUBLISH_EVERY_PACKETS: u64 = 4096;

/// How often the kernel and flow counters behind the metrics endpoint are refreshed.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// libpcap's cumulative counters, cut into per-window differences.
struct KernelCounters {
    last: Option<pcap::Stat>,
    /// Sum of the per-window differences so far.
    total: KernelStats,
}

impl KernelCounters {
    fn new(first: Option<pcap::Stat>) -> Self {
        KernelCounters {
            last: first,
            total: KernelStats::default(),
        }
    }

    /// Counters since the last window edge (None when libpcap cannot give them).
    fn window(&mut self, cap: &mut pcap::Capture<pcap::Active>) -> Option<KernelStats> {
        let now = cap.stats().ok()?;
        let delta = self
            .last
            .as_ref()
            .map(|before| KernelStats::since(&now, before));
        self.last = Some(now);
        if let Some(k) = &delta {
            self.total.add(k);
        }
        delta
    }

    /// Run totals including the open window, without cutting the window.
    fn peek(&self, cap: &mut pcap::Capture<pcap::Active>) -> KernelStats {
        let mut total = self.total;
        if let (Ok(now), Some(before)) = (cap.stats(), self.last.as_ref()) {
            total.add(&KernelStats::since(&now, before));
        }
        total
    }
}

/// Refreshes the kernel and flow counters of the metrics at most once per [`PUBLISH_INTERVAL`]
/// (`pcap_stats` is a system call).
fn publish_now(
    cap: &mut pcap::Capture<pcap::Active>,
    core: &LiveCore,
    kernel: &KernelCounters,
    metrics: &LiveMetrics,
    last: &mut Instant,
) {
    if last.elapsed() < PUBLISH_INTERVAL {
        return;
    }
    *last = Instant::now();
    let k = kernel.peek(cap);
    metrics.kernel_dropped.store(k.dropped, Ordering::Relaxed);
    metrics
        .kernel_if_dropped
        .store(k.if_dropped, Ordering::Relaxed);
    metrics.flows.store(core.flows_created(), Ordering::Relaxed);
    metrics
        .open_flows
        .store(core.open_flows() as u64, Ordering::Relaxed);
}

/// Counters behind the metrics endpoint as a window closes.
fn publish_window(
    kernel: &KernelCounters,
    flows_created: u64,
    open_flows: u64,
    metrics: &LiveMetrics,
) {
    metrics
        .kernel_dropped
        .store(kernel.total.dropped, Ordering::Relaxed);
    metrics
        .kernel_if_dropped
        .store(kernel.total.if_dropped, Ordering::Relaxed);
    metrics.flows.store(flows_created, Ordering::Relaxed);
    metrics.open_flows.store(open_flows, Ordering::Relaxed);
    metrics.windows.fetch_add(1, Ordering::Relaxed);
}

/// `(seconds, microseconds)` -> Unix nanoseconds, saturating.
fn timeval_ns(sec: i64, usec: i64) -> i64 {
    sec.saturating_mul(NANOS)
        .saturating_add(usec.saturating_mul(1000))
}

fn unix_now_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::link;

    const W: i64 = 60 * NANOS;

    fn udp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
        crate::decode::tests::ipv4_udp(src, dst, sp, dp, payload)
    }

    #[test]
    fn windows_hand_over_finished_flows_and_the_rest_at_the_end() {
        let t0 = 1_700_000_000 * NANOS;
        let flow = FlowConfig {
            udp_idle_secs: 30,
            ..FlowConfig::default()
        };
        let mut core = LiveCore::new(link::RAW, flow, 60, t0);
        let start = core.window_start_ns();
        assert_eq!(start % W, 0);
        let (a, b) = ([127, 0, 0, 1], [127, 0, 0, 1]);
        core.packet(start + NANOS, &udp(a, b, 40000, 9999, b"hello"));
        core.packet(start + 2 * NANOS, &udp(b, a, 9999, 40000, b"hi"));
        core.packet(start + 3 * NANOS, &[0u8; 3]); // undecodable
        assert!(core.tick(start + W - 1).is_none());
        // Next window: a second flow; the first one expires idle during it.
        let (w0, r0) = core.tick(start + W).expect("edge reached");
        assert_eq!((w0.index, w0.packets, w0.skipped.total()), (0, 3, 1));
        assert_eq!((w0.start_ns, w0.end_ns), (start, start + W));
        assert!(r0.is_empty());
        assert_eq!(w0.open_flows, 1);
        core.packet(start + W + 40 * NANOS, &udp(a, b, 40001, 9999, b"x"));
        let (w1, r1) = core.tick(start + 2 * W + 5).expect("edge reached");
        assert_eq!((w1.index, w1.packets, w1.flows_finished), (1, 1, 1));
        assert_eq!(r1.len(), 1);
        assert_eq!(r1[0].packets, [1, 1]);
        assert_eq!(r1[0].bytes, [20 + 8 + 5, 20 + 8 + 2]);
        let (w2, r2, totals) = core.finish(start + 2 * W + 10 * NANOS);
        assert_eq!((w2.index, r2.len()), (2, 1));
        assert_eq!(r2[0].client_port, 40001);
        assert_eq!(totals.windows, 3);
        assert_eq!(totals.summary.packets_read, 4);
        assert_eq!(totals.summary.flows, 2);
        assert_eq!(totals.summary.skipped.total(), 1);
        assert_eq!(totals.summary.flow_counters.flows_created, 2);
    }

    /// A VPN session still running at the window edge is reported with its provisional label
    /// (for the live gauge), not only once it ends.
    #[test]
    fn open_circumvention_flows_are_reported_at_the_edge() {
        let t0 = 1_700_000_000 * NANOS;
        let mut core = LiveCore::new(link::RAW, FlowConfig::default(), 60, t0);
        let start = core.window_start_ns();
        let (client, server) = ([10, 0, 0, 5], [203, 0, 113, 9]);
        // WireGuard handshake (type 1, 148 bytes; type 2, 92 bytes echoing the sender index).
        let mut init = vec![0u8; 148];
        init[0] = 1;
        init[4..8].copy_from_slice(&0x1122_3344u32.to_le_bytes());
        for (i, b) in init.iter_mut().enumerate().skip(8) {
            *b = (i as u8).wrapping_mul(31).wrapping_add(7);
        }
        let mut resp = vec![0u8; 92];
        resp[0] = 2;
        resp[4..8].copy_from_slice(&0x5566_7788u32.to_le_bytes());
        resp[8..12].copy_from_slice(&0x1122_3344u32.to_le_bytes());
        for (i, b) in resp.iter_mut().enumerate().skip(12) {
            *b = (i as u8).wrapping_mul(17).wrapping_add(3);
        }
        core.packet(start + NANOS, &udp(client, server, 40000, 51820, &init));
        core.packet(start + 2 * NANOS, &udp(server, client, 51820, 40000, &resp));
        let (w0, finished) = core.tick(start + W).expect("edge reached");
        assert!(finished.is_empty());
        assert_eq!(
            w0.open_circumvention,
            vec![("wireguard", IpAddr::from(client), IpAddr::from(server))]
        );
    }

    #[test]
    fn a_long_silence_starts_the_window_of_now() {
        let t0 = 1_700_000_000 * NANOS;
        let mut core = LiveCore::new(link::RAW, FlowConfig::default(), 60, t0);
        let start = core.window_start_ns();
        let (w, _) = core.tick(start + 10 * W + 7).expect("edge reached");
        assert_eq!(w.end_ns, start + W);
        assert_eq!(core.window_start_ns(), start + 10 * W);
    }

    #[test]
    fn kernel_counters_wrap() {
        let before = pcap::Stat {
            received: u32::MAX - 1,
            dropped: 5,
            if_dropped: 0,
        };
        let now = pcap::Stat {
            received: 3,
            dropped: 7,
            if_dropped: 0,
        };
        let k = KernelStats::since(&now, &before);
        assert_eq!((k.received, k.dropped, k.if_dropped), (5, 2, 0));
    }

    proptest::proptest! {
        /// Arbitrary frames and times never panic, and every frame is counted once.
        #[test]
        fn arbitrary_frames_never_panic(
            frames in proptest::collection::vec(
                (0i64..400, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)),
                0..40
            )
        ) {
            let t0 = 1_700_000_000 * NANOS;
            let mut core = LiveCore::new(link::ETHERNET, FlowConfig::default(), 60, t0);
            let mut windows = 0u64;
            let mut flows = 0u64;
            let mut packets = 0u64;
            for (secs, frame) in &frames {
                let ts = t0 + secs * NANOS;
                if let Some((w, r)) = core.tick(ts) {
                    windows += 1;
                    flows += r.len() as u64;
                    packets += w.packets;
                }
                core.packet(ts, frame);
            }
            let (w, r, totals) = core.finish(t0 + 500 * NANOS);
            flows += r.len() as u64;
            packets += w.packets;
            proptest::prop_assert_eq!(totals.windows, windows + 1);
            proptest::prop_assert_eq!(totals.summary.flows, flows);
            proptest::prop_assert_eq!(packets, frames.len() as u64);
            let in_flows = totals.summary.flow_counters.packets;
            proptest::prop_assert_eq!(packets, in_flows + totals.summary.skipped.total());
        }
    }

    // ---- Loopback tests: need root (or CAP_NET_RAW) and libpcap; they skip otherwise. ----

    /// Opens `lo` with `filter`, or explains why the test is skipped.
    fn open_lo(filter: &str) -> Option<LiveCapture> {
        open_lo_windows(filter, 3600)
    }

    /// [`open_lo`] with windows of `window_secs`.
    pub(super) fn open_lo_windows(filter: &str, window_secs: u32) -> Option<LiveCapture> {
        let config = LiveConfig {
            filter: Some(filter.to_string()),
            window_secs,
            ..LiveConfig::new("lo")
        };
        match LiveCapture::open(&config) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("SKIPPED: cannot capture on lo (not root / no libpcap?): {e:#}");
                None
            }
        }
    }

    /// Runs an open capture through the service for `millis` and returns every flow
    /// (numbered) and the windows seen.
    fn run_for(cap: LiveCapture, millis: u64) -> Vec<FlowRecord> {
        let options = ServiceOptions {
            duration: Some(Duration::from_millis(millis)),
            quiet: true,
            ..ServiceOptions::default()
        };
        let mut all = Vec::new();
        let totals = serve(cap, &options, &mut |_, records| {
            all.extend(records);
            Ok(WindowWritten::default())
        });
        assert!(totals.is_ok(), "capture failed: {totals:?}");
        crate::pipeline::number_flows(&mut all);
        all
    }

    #[test]
    fn loopback_udp_flows_match_what_was_sent() {
        use std::net::UdpSocket;
        let (Ok(a), Ok(b), Ok(c)) = (
            UdpSocket::bind("127.0.0.1:0"),
            UdpSocket::bind("127.0.0.1:0"),
            UdpSocket::bind("127.0.0.1:0"),
        ) else {
            eprintln!("SKIPPED: cannot bind UDP sockets on 127.0.0.1");
            return;
        };
        let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
        let (pa, pb, pc) = (port(&a), port(&b), port(&c));
        let filter = format!(
            "udp and src host 127.0.0.1 and dst host 127.0.0.1 and (port {pa} or port {pc})"
        );
        let Some(cap) = open_lo(&filter) else { return };
        assert_eq!(
            cap.link_type(),
            link::ETHERNET,
            "lo is Ethernet-framed on Linux"
        );
        // Flow 1: a -> b three datagrams, b -> a two. Flow 2: c -> b one datagram.
        let ab: [&[u8]; 3] = [b"one", &[7u8; 100], &[9u8; 1000]];
        let ba: [&[u8]; 2] = [b"reply", &[1u8; 300]];
        let b_addr = b.local_addr().ok();
        let a_addr = a.local_addr().ok();
        let (Some(b_addr), Some(a_addr)) = (b_addr, a_addr) else {
            panic!("no local address")
        };
        for p in ab {
            assert!(a.send_to(p, b_addr).is_ok());
            std::thread::sleep(Duration::from_millis(2));
        }
        for p in ba {
            assert!(b.send_to(p, a_addr).is_ok());
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(c.send_to(b"third party", b_addr).is_ok());
        let flows = run_for(cap, 600);
        assert_eq!(flows.len(), 2, "flows: {flows:?}");
        let f1 = flows.iter().find(|f| f.client_port == pa);
        let f2 = flows.iter().find(|f| f.client_port == pc);
        let (Some(f1), Some(f2)) = (f1, f2) else {
            panic!("flows not found: {flows:?}")
        };
        let ip_bytes = |ps: &[&[u8]]| ps.iter().map(|p| 28 + p.len() as u64).sum::<u64>();
        assert_eq!(f1.server_port, pb);
        assert_eq!(f1.packets, [3, 2]);
        assert_eq!(f1.bytes, [ip_bytes(&ab), ip_bytes(&ba)]);
        assert_eq!(f1.payload_bytes, [1103, 305]);
        assert_eq!(f2.packets, [1, 0]);
        assert_eq!(f2.bytes, [28 + 11, 0]);
    }

    /// Replays tests/fixtures/three_udp.pcap onto `lo` with tcpreplay, its addresses first
    /// rewritten to 127.0.0.1 with tcprewrite (so nothing but loopback traffic is made), and
    /// checks the live flows equal the offline pipeline's for the same rewritten file.
    #[test]
    fn tcpreplay_onto_lo_matches_offline() {
        use std::process::Command;
        let have = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
        if !have("tcpreplay") || !have("tcprewrite") {
            eprintln!("SKIPPED: tcpreplay/tcprewrite not installed (apt-get install tcpreplay)");
            return;
        }
        let fixture =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/three_udp.pcap");
        let rewritten =
            std::env::temp_dir().join(format!("tw-live-three-udp-{}.pcap", std::process::id()));
        let status = Command::new("tcprewrite")
            .arg(format!("--infile={}", fixture.display()))
            .arg(format!("--outfile={}", rewritten.display()))
            .args([
                "--srcipmap=0.0.0.0/0:127.0.0.1/32",
                "--dstipmap=0.0.0.0/0:127.0.0.1/32",
                "--enet-smac=00:00:00:00:00:00",
                "--enet-dmac=00:00:00:00:00:00",
                "--fixcsum",
            ])
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "tcprewrite: {status:?}"
        );
        // Offline result for the same (rewritten) packets.
        let mut pipeline = crate::pipeline::Pipeline::new(Default::default());
        let report = pipeline.feed_file(&rewritten, &mut |_, _| {});
        assert_eq!(report.status, crate::pipeline::FileStatus::Complete);
        let (offline, _) = pipeline.finish();
        assert!(!offline.is_empty());
        let ports: Vec<String> = offline
            .iter()
            .map(|f| format!("port {}", f.client_port))
            .collect();
        let filter = format!(
            "udp and src host 127.0.0.1 and dst host 127.0.0.1 and ({})",
            ports.join(" or ")
        );
        let Some(cap) = open_lo(&filter) else {
            let _ = std::fs::remove_file(&rewritten);
            return;
        };
        let replay = Command::new("tcpreplay")
            .args(["-i", "lo", "--topspeed", "-q"])
            .arg(&rewritten)
            .output();
        let _ = std::fs::remove_file(&rewritten);
        assert!(
            replay.as_ref().is_ok_and(|o| o.status.success()),
            "tcpreplay: {replay:?}"
        );
        let live = run_for(cap, 600);
        let facts = |fs: &[FlowRecord]| {
            let mut v: Vec<_> = fs
                .iter()
                .map(|f| {
                    (
                        f.client_port,
                        f.server_port,
                        f.packets,
                        f.bytes,
                        f.payload_bytes,
                        f.label.protocol.to_string(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(facts(&live), facts(&offline));
    }
}
