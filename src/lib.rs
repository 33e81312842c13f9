//! tunnelwatch turns packet captures into the two signals of a platform block: the platform
//! becomes unreachable, and VPN/proxy use surges.
//!
//! The pipeline, one stage a module:
//! ```text
//! ingest       capture files (pcap, pcapng, .gz) -> CapturedPacket (borrowed frame)
//! decode       link + IP + transport headers     -> DecodedPacket | SkipReason counted
//! flow         bounded bidirectional FlowTable   -> FlowRecord on FIN/RST/idle/eviction/end
//! fingerprint  per-flow protocol detectors        -> Label { protocol, application, provider, .. }
//! stats        per-window columns (polars)        -> flows.parquet, hosts/series tables
//! report       terminal summary, summary.json
//! ```
//! [`pipeline`] wires the first four together; [`cli`] is the command-line edge.

pub mod atomic_file;
pub mod civil;
pub mod cli;
pub mod csv_line;
pub mod decimal;
pub mod decode;
pub mod detect;
pub mod fingerprint;
pub mod flow;
pub mod ingest;
pub mod intel;
pub mod pipeline;
mod prefetch;
pub mod report;
pub mod stats;
pub mod synth;
