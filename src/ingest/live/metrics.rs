//! The capture's counters and gauges, and the Prometheus endpoint that serves them.
//!
//! [`LiveMetrics`] is written by the capture thread (counters, plain atomic stores: there is one
//! writer) and by the window writer (gauges of the last closed window), and read by the endpoint.
//! The endpoint speaks just enough HTTP/1.1 for a scraper: one request per connection, `GET` (or
//! `HEAD`) of `/metrics` answers the text exposition format 0.0.4 (`# HELP`, `# TYPE`,
//! `name{label="value"} value` lines); other paths get 404, other methods 405, anything
//! unparseable 400. The response is built by a pure function ([`respond`]) so it is tested
//! without sockets.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Largest request head read; scrapers send a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8192;

/// A slow or silent client is dropped after this long.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters and gauges of one live capture.
#[derive(Debug, Default)]
pub struct LiveMetrics {
    /// Frames read from libpcap since the start.
    pub packets: AtomicU64,
    /// Frames the kernel dropped because the capture buffer was full (`ps_drop`).
    pub kernel_dropped: AtomicU64,
    /// Frames dropped by the interface or driver (`ps_ifdrop`; 0 where unsupported).
    pub kernel_if_dropped: AtomicU64,
    /// Flows created since the start.
    pub flows: AtomicU64,
    /// Windows closed (and handed to the writer).
    pub windows: AtomicU64,
    /// Flows open now.
    pub open_flows: AtomicU64,
    /// Alerts still open at the end of the series so far (after the last window written).
    pub open_alerts: AtomicU64,
    /// Hosts per circumvention protocol among the flows of the last closed window, sorted by
    /// protocol.
    vpn_hosts: Mutex<Vec<(String, u64)>>,
}

impl LiveMetrics {
    /// Replaces the per-protocol host counts of the last closed window.
    pub fn set_vpn_hosts(&self, counts: Vec<(String, u64)>) {
        if let Ok(mut guard) = self.vpn_hosts.lock() {
            *guard = counts;
        }
    }

    /// The per-protocol host counts of the last closed window.
    pub fn vpn_hosts(&self) -> Vec<(String, u64)> {
        self.vpn_hosts.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// The metrics in the text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let scalars: [(&str, &str, &str, u64); 8] = [
            (
                "tunnelwatch_packets_total",
                "counter",
                "Frames read from the capture interface.",
                load(&self.packets),
            ),
            (
                "tunnelwatch_packets_dropped_total",
                "counter",
                "Frames the kernel dropped because the capture buffer was full (pcap ps_drop).",
                load(&self.kernel_dropped),
            ),
            (
                "tunnelwatch_interface_packets_dropped_total",
                "counter",
                "Frames dropped by the interface or its driver (pcap ps_ifdrop; 0 where unsupported).",
                load(&self.kernel_if_dropped),
            ),
            (
                "tunnelwatch_flows_total",
                "counter",
                "Flows created since the capture started.",
                load(&self.flows),
            ),
            (
                "tunnelwatch_windows_total",
                "counter",
                "Statistics windows closed and written.",
                load(&self.windows),
            ),
            (
                "tunnelwatch_open_flows",
                "gauge",
                "Flows open in the flow table.",
                load(&self.open_flows),
            ),
            (
                "tunnelwatch_open_alerts",
                "gauge",
                "Detector alerts still open at the end of the series so far.",
                load(&self.open_alerts),
            ),
            (
                "tunnelwatch_up",
                "gauge",
                "1 while the capture runs.",
                1,
            ),
        ];
        for (name, kind, help, value) in scalars {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
        let name = "tunnelwatch_vpn_hosts";
        let _ = writeln!(
            out,
            "# HELP {name} Hosts using each VPN/proxy/circumvention protocol in the last closed \
             window: flows finished in it and flows still open at its edge."
        );
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (protocol, hosts) in self.vpn_hosts() {
            let _ = writeln!(
                out,
                "{name}{{protocol=\"{}\"}} {hosts}",
                escape_label(&protocol)
            );
        }
        out
    }
}

/// Escapes a label value as the exposition format requires (backslash, quote, line feed).
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The whole HTTP response for a request head (`METHOD SP target SP version CRLF ...`).
pub fn respond(request_head: &[u8], metrics: &LiveMetrics) -> Vec<u8> {
    let line_end = request_head
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(request_head.len());
    let line = request_head.get(..line_end).unwrap_or_default();
    let line = std::str::from_utf8(line)
        .unwrap_or("")
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let well_formed = parts.next().is_none()
        && version.is_some_and(|v| v.starts_with("HTTP/1."))
        && target.is_some_and(|t| t.starts_with('/'));
    let (Some(method), Some(target), true) = (method, target, well_formed) else {
        return response("400 Bad Request", "text/plain", b"bad request\n", true);
    };
    let path = target.split('?').next().unwrap_or(target);
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return response(
            "405 Method Not Allowed",
            "text/plain",
            b"only GET and HEAD\n",
            !head_only,
        );
    }
    if path != "/metrics" {
        return response(
            "404 Not Found",
            "text/plain",
            b"not found; try /metrics\n",
            !head_only,
        );
    }
    response(
        "200 OK",
        CONTENT_TYPE,
        metrics.render().as_bytes(),
        !head_only,
    )
}

fn response(status: &str, content_type: &str, body: &[u8], with_body: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body);
    }
    out
}

/// Serves one connection: reads the request head, writes the response, closes.
pub async fn serve_connection(mut stream: TcpStream, metrics: &LiveMetrics) {
    // Errors of one scrape (client gone, timeout) concern that client only.
    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, async {
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            head.extend_from_slice(buf.get(..n).unwrap_or_default());
            if n == 0 || head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() >= MAX_REQUEST_HEAD
            {
                break;
            }
        }
        stream.write_all(&respond(&head, metrics)).await?;
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn metrics_page_is_exposition_format() {
        let m = LiveMetrics::default();
        m.packets.store(42, Ordering::Relaxed);
        m.kernel_dropped.store(3, Ordering::Relaxed);
        m.open_alerts.store(1, Ordering::Relaxed);
        m.set_vpn_hosts(vec![("openvpn".into(), 2), ("wireguard".into(), 5)]);
        let page = text(respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &m));
        let (head, body) = page.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(CONTENT_TYPE));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        for line in [
            "# TYPE tunnelwatch_packets_total counter",
            "tunnelwatch_packets_total 42",
            "tunnelwatch_packets_dropped_total 3",
            "# TYPE tunnelwatch_vpn_hosts gauge",
            "tunnelwatch_vpn_hosts{protocol=\"openvpn\"} 2",
            "tunnelwatch_vpn_hosts{protocol=\"wireguard\"} 5",
            "tunnelwatch_open_alerts 1",
            "tunnelwatch_flows_total 0",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "missing {line:?} in\n{body}"
            );
        }
        // Every sample line is `name[{labels}] number`, and every name has HELP and TYPE.
        for l in body.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = l.rsplit_once(' ').unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "{l}");
            let bare = name.split('{').next().unwrap_or_default();
            assert!(body.contains(&format!("# HELP {bare} ")), "{l}");
            assert!(body.contains(&format!("# TYPE {bare} ")), "{l}");
        }
    }

    #[test]
    fn other_paths_methods_and_garbage() {
        let m = LiveMetrics::default();
        let status = |req: &[u8]| {
            text(respond(req, &m))
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found");
        assert_eq!(
            status(b"GET /metricsx HTTP/1.0\r\n\r\n"),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 200 OK"
        );
        assert_eq!(
            status(b"POST /metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(status(b"\x00\xff garbage"), "HTTP/1.1 400 Bad Request");
        assert_eq!(status(b""), "HTTP/1.1 400 Bad Request");
        let head = text(respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", &m));
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    proptest::proptest! {
        /// Any request bytes get a well-formed status line, never a panic.
        #[test]
        fn arbitrary_requests_get_a_status(req in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let m = LiveMetrics::default();
            let out = respond(&req, &m);
            proptest::prop_assert!(out.starts_with(b"HTTP/1.1 "));
        }
    }
}
