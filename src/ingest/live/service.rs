//! The live capture as a service: capture thread, tokio runtime, window writer.
//!
//! Why this shape. libpcap reads block (or, here, poll a non-blocking handle), and the hot path
//! (decode, flow table, fingerprints) is plain synchronous code that must not allocate per
//! packet, so capture stays on one dedicated std thread that owns the handle and the flow table;
//! making it async would add a wake-up per packet and buy nothing. What *is* naturally
//! asynchronous is everything that waits: the window timer, SIGINT/SIGTERM, `--duration`, the
//! `--stop-file` poll and the metrics endpoint's connections. Those run as one `select!` loop on
//! a current-thread tokio runtime on its own thread (one thread is plenty: none of it is busy).
//! Writing a closed window (Parquet, detection, report) takes seconds and is blocking, so it runs
//! on the calling thread, fed by a channel: neither the capture (the kernel buffer would fill and
//! drop packets) nor the runtime (scrapes and signals would stall) ever waits for the disk.
//!
//! The threads share atomics only: [`Control`] (stop flag, latest window edge from the timer)
//! and [`LiveMetrics`]. Windows are closed by the capture thread, at the first packet past the
//! edge or, when the interface is quiet, at the edge the timer announces; closed windows cross
//! to the writer over an unbounded channel (one message per window, so it never grows unless
//! the disk is slower than the window length).
//!
//! Stop: the first SIGINT or SIGTERM (or `--duration`, or the stop file appearing) sets the stop
//! flag; the capture thread ends every open flow and hands over the last, partial window; the
//! writer writes it; [`serve`] returns the run totals, so the process can write the whole run
//! and exit 0. A second signal exits at once (status 128 + signal number) without writing.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::{unix_now_ns, Control, LiveCapture, LiveMetrics, LiveTotals, WindowReport, NANOS};
use crate::flow::FlowRecord;
use crate::intel::cidr::Cidr;

/// How often `--stop-file` is looked for.
const STOP_FILE_POLL: Duration = Duration::from_millis(250);

/// Settings of the service around a capture.
#[derive(Debug, Clone, Default)]
pub struct ServiceOptions {
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop once this path exists.
    pub stop_file: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (port 0 picks a free port; the ready line says
    /// which).
    pub metrics_addr: Option<SocketAddr>,
    /// The monitored network, to count hosts per protocol for the metrics (as the statistics do).
    pub home_net: Vec<Cidr>,
    /// Stop on SIGINT/SIGTERM (Ctrl-C on Windows). Off in unit tests, where a handler would
    /// outlive the test in the test process.
    pub handle_signals: bool,
    /// No ready line and no per-window lines on stderr.
    pub quiet: bool,
}

/// What the window writer reports back after writing a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowWritten {
    /// Alerts still open at the end of the series so far (for `tunnelwatch_open_alerts`).
    pub open_alerts: u64,
}

/// Runs `capture` until a stop condition, calling `on_window` on the calling thread for each
/// closed window (and once more for the last one, holding every flow still open at the stop).
/// Returns the run totals. An error from `on_window` stops the capture and is returned after
/// the capture thread ended; a failure to bind the metrics address or install the signal
/// handlers is returned before capture starts.
pub fn serve(
    capture: LiveCapture,
    options: &ServiceOptions,
    on_window: &mut dyn FnMut(&WindowReport, Vec<FlowRecord>) -> Result<WindowWritten>,
) -> Result<LiveTotals> {
    let control = Arc::new(Control::default());
    let metrics = Arc::new(LiveMetrics::default());
    let shutdown = Arc::new(Notify::new());
    let window_ns = i64::from(capture.config.window_secs.max(1)) * NANOS;
    let (ready_tx, ready_rx) = mpsc::channel();
    let runtime = {
        let (control, metrics, shutdown) = (
            Arc::clone(&control),
            Arc::clone(&metrics),
            Arc::clone(&shutdown),
        );
        let options = options.clone();
        std::thread::Builder::new()
            .name("tunnelwatch-runtime".into())
            .spawn(move || {
                run_runtime(&control, &metrics, &shutdown, &options, window_ns, ready_tx)
            })
            .context("starting the runtime thread")?
    };
    let metrics_addr = match ready_rx.recv() {
        Ok(Ok(addr)) => addr,
        Ok(Err(e)) => {
            let _ = runtime.join();
            return Err(e);
        }
        Err(_) => {
            let _ = runtime.join();
            return Err(anyhow!("the runtime thread ended before it was ready"));
        }
    };
    if !options.quiet {
        eprintln!(
            "tunnelwatch capture: capturing on {} (link type {}), windows of {} s{}{}",
            capture.config.interface,
            capture.link_type,
            window_ns / NANOS,
            metrics_addr.map_or(String::new(), |a| format!(
                "; metrics on http://{a}/metrics"
            )),
            if options.handle_signals {
                "; Ctrl-C or SIGTERM stops and writes the last window"
            } else {
                ""
            }
        );
    }

    let (window_tx, window_rx) = mpsc::channel::<(WindowReport, Vec<FlowRecord>)>();
    let capture_thread = {
        let (control, metrics) = (Arc::clone(&control), Arc::clone(&metrics));
        std::thread::Builder::new()
            .name("tunnelwatch-capture".into())
            .spawn(move || {
                capture.run(&control, &metrics, &mut |report, records| {
                    window_tx
                        .send((report, records))
                        .map_err(|_| anyhow!("the window writer has stopped"))
                })
            })
    };
    let capture_thread = match capture_thread {
        Ok(t) => t,
        Err(e) => {
            shutdown.notify_one();
            let _ = runtime.join();
            return Err(anyhow::Error::new(e).context("starting the capture thread"));
        }
    };

    // The loop ends when the capture thread drops its sender, i.e. after the last window.
    let mut written: Result<()> = Ok(());
    for (report, records) in window_rx {
        if written.is_err() {
            continue;
        }
        if !options.quiet {
            eprintln!("tunnelwatch capture: {report}");
        }
        metrics.set_vpn_hosts(circumvention_hosts(
            &records,
            &report.open_circumvention,
            &options.home_net,
        ));
        match on_window(&report, records) {
            Ok(w) => metrics.open_alerts.store(w.open_alerts, Ordering::Relaxed),
            Err(e) => {
                control.stop.store(true, Ordering::Relaxed);
                written = Err(e.context(format!("writing window {}", report.index)));
            }
        }
    }
    let captured = capture_thread
        .join()
        .map_err(|_| anyhow!("the capture thread panicked"));
    shutdown.notify_one();
    let _ = runtime.join();
    written?;
    captured?
}

/// Hosts per circumvention protocol among the flows finished in a window (`records`) and the
/// flows still open at its edge (`open`: protocol, client, server), the host as the statistics
/// define it; sorted by protocol.
pub fn circumvention_hosts(
    records: &[FlowRecord],
    open: &[(&'static str, IpAddr, IpAddr)],
    home_net: &[Cidr],
) -> Vec<(String, u64)> {
    let mut hosts: BTreeMap<&str, HashSet<IpAddr>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.label.family.is_circumvention()) {
        hosts
            .entry(r.label.protocol)
            .or_default()
            .insert(crate::stats::host_of(r, home_net));
    }
    for &(protocol, client, server) in open {
        hosts
            .entry(protocol)
            .or_default()
            .insert(crate::stats::host_of_endpoints(client, server, home_net));
    }
    hosts
        .into_iter()
        .map(|(protocol, set)| (protocol.to_string(), set.len() as u64))
        .collect()
}

/// The runtime thread: binds the metrics endpoint and installs the signal handlers, says it is
/// ready (or why not), then waits on every event source until `shutdown`.
fn run_runtime(
    control: &Control,
    metrics: &Arc<LiveMetrics>,
    shutdown: &Notify,
    options: &ServiceOptions,
    window_ns: i64,
    ready: mpsc::Sender<Result<Option<SocketAddr>>>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(
                anyhow::Error::new(e).context("starting the tokio runtime")
            ));
            return;
        }
    };
    runtime.block_on(async {
        let listener = match options.metrics_addr {
            Some(addr) => match TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => {
                    let _ = ready.send(Err(anyhow::Error::new(e)
                        .context(format!("binding the metrics endpoint on {addr}"))));
                    return;
                }
            },
            None => None,
        };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let mut signals = if options.handle_signals {
            match Signals::install() {
                Ok(s) => Some(s),
                Err(e) => {
                    let _ = ready.send(Err(e.context("installing signal handlers")));
                    return;
                }
            }
        } else {
            None
        };
        if ready.send(Ok(local_addr)).is_err() {
            return;
        }

        let deadline = options
            .duration
            .and_then(|d| tokio::time::Instant::now().checked_add(d));
        let mut stop_file_poll = tokio::time::interval(STOP_FILE_POLL);
        let stop = |why: &str| {
            if !control.stop.swap(true, Ordering::Relaxed) && !options.quiet {
                eprintln!(
                    "tunnelwatch capture: {why}: stopping; writing open flows and the last window"
                );
            }
        };
        loop {
            let stopping = control.stop.load(Ordering::Relaxed);
            tokio::select! {
                biased;
                () = shutdown.notified() => break,
                (name, number) = next_signal(&mut signals) => {
                    if stopping {
                        eprintln!("tunnelwatch capture: second {name}: exiting without writing");
                        std::process::exit(128 + number);
                    }
                    stop(name);
                }
                () = tokio::time::sleep(until_next_edge(window_ns)) => {
                    control.edge_ns.store(unix_now_ns(), Ordering::Relaxed);
                }
                () = sleep_until(deadline), if !stopping => stop("--duration reached"),
                _ = stop_file_poll.tick(), if !stopping && options.stop_file.is_some() => {
                    if options.stop_file.as_ref().is_some_and(|p| p.exists()) {
                        stop("stop file found");
                    }
                }
                accepted = accept(listener.as_ref()) => {
                    if let Ok((stream, _)) = accepted {
                        let metrics = Arc::clone(metrics);
                        tokio::spawn(async move {
                            super::metrics::serve_connection(stream, &metrics).await;
                        });
                    }
                }
            }
        }
    });
}

/// Time until just past the next window edge on the wall clock (the millisecond of margin
/// keeps a timer that fires a hair early from announcing the edge before it).
fn until_next_edge(window_ns: i64) -> Duration {
    let now = unix_now_ns();
    let next = (now.div_euclid(window_ns) + 1).saturating_mul(window_ns);
    let wait = u64::try_from(next.saturating_sub(now)).unwrap_or(0);
    Duration::from_nanos(wait) + Duration::from_millis(1)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn accept(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// The stop signals: SIGINT and SIGTERM on Unix, Ctrl-C elsewhere.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt()).context("SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }
}

/// The next stop signal's name and number; never resolves without handlers.
async fn next_signal(signals: &mut Option<Signals>) -> (&'static str, i32) {
    let Some(signals) = signals else {
        return std::future::pending().await;
    };
    #[cfg(unix)]
    {
        tokio::select! {
            Some(()) = signals.interrupt.recv() => ("SIGINT", 2),
            Some(()) = signals.terminate.recv() => ("SIGTERM", 15),
            else => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = signals;
        match tokio::signal::ctrl_c().await {
            Ok(()) => ("Ctrl-C", 2),
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_edge_is_within_one_window() {
        for window_ns in [NANOS, 60 * NANOS, 300 * NANOS] {
            let wait = until_next_edge(window_ns);
            assert!(wait > Duration::ZERO);
            assert!(wait <= Duration::from_nanos(window_ns as u64) + Duration::from_millis(1));
        }
    }

    /// Host counts per protocol agree with the statistics' own columns for the sample capture.
    #[test]
    fn circumvention_hosts_match_the_statistics_columns() {
        let sample =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/pk-x-2024-small.pcap");
        let mut pipeline = crate::pipeline::Pipeline::new(Default::default());
        let report = pipeline.feed_file(&sample, &mut |_, _| {});
        assert_eq!(report.status, crate::pipeline::FileStatus::Complete);
        let (records, _) = pipeline.finish();
        let config = crate::stats::StatsConfig::default();
        let counts = circumvention_hosts(&records, &[], &config.home_net);
        let mut columns = crate::stats::FlowColumns::default();
        for r in &records {
            columns.push(r, &config);
        }
        let mut expected: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
        for i in 0..columns.len() {
            if columns.circumvention[i] {
                expected
                    .entry(columns.protocol[i])
                    .or_default()
                    .insert(columns.host[i].as_str());
            }
        }
        let expected: Vec<(String, u64)> = expected
            .into_iter()
            .map(|(p, h)| (p.to_string(), h.len() as u64))
            .collect();
        assert!(expected.iter().any(|(p, n)| p == "wireguard" && *n > 1));
        assert_eq!(counts, expected);
    }

    fn open_lo() -> Option<LiveCapture> {
        // Nothing on lo matches: the service runs on the clock alone.
        super::super::tests::open_lo_windows("ether dst 02:00:00:00:00:fe", 1)
    }

    /// The stop file ends the service; quiet 1-second windows close on the timer meanwhile.
    #[test]
    fn stop_file_ends_the_service_and_the_timer_closes_windows() {
        let Some(cap) = open_lo() else { return };
        let stop_file =
            std::env::temp_dir().join(format!("tw-live-service-stop-{}", std::process::id()));
        let _ = std::fs::remove_file(&stop_file);
        let options = ServiceOptions {
            stop_file: Some(stop_file.clone()),
            // A safety net: the test fails on the window count rather than hanging.
            duration: Some(Duration::from_secs(30)),
            quiet: true,
            ..ServiceOptions::default()
        };
        let writer = {
            let stop_file = stop_file.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2500));
                std::fs::write(&stop_file, b"")
            })
        };
        let started = std::time::Instant::now();
        let mut windows = Vec::new();
        let totals = serve(cap, &options, &mut |w, _| {
            windows.push((w.index, w.start_ns, w.end_ns));
            Ok(WindowWritten::default())
        });
        let _ = std::fs::remove_file(&stop_file);
        assert!(writer.join().is_ok_and(|r| r.is_ok()));
        let totals = totals.expect("service ran");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "stop file ignored"
        );
        assert!(windows.len() >= 3, "windows: {windows:?}");
        assert_eq!(totals.windows, windows.len() as u64);
        for pair in windows.windows(2) {
            let ((i0, _, end0), (i1, start1, _)) = (pair[0], pair[1]);
            assert_eq!(i1, i0 + 1);
            assert_eq!(start1, end0, "windows follow each other: {windows:?}");
        }
    }

    /// A metrics address that cannot be bound fails the run before capture starts.
    #[test]
    fn metrics_bind_failure_is_an_error() {
        let Ok(taken) = std::net::TcpListener::bind("127.0.0.1:0") else {
            eprintln!("SKIPPED: cannot bind on 127.0.0.1");
            return;
        };
        let Some(cap) = open_lo() else { return };
        let options = ServiceOptions {
            metrics_addr: taken.local_addr().ok(),
            duration: Some(Duration::from_secs(30)),
            quiet: true,
            ..ServiceOptions::default()
        };
        let mut called = false;
        let result = serve(cap, &options, &mut |_, _| {
            called = true;
            Ok(WindowWritten::default())
        });
        let err = result.expect_err("port in use");
        assert!(format!("{err:#}").contains("metrics endpoint"), "{err:#}");
        assert!(!called);
    }
}
