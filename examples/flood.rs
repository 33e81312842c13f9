//! Writes a flood capture for the memory benchmark (`benches/flood.sh`): N distinct one-packet
//! flows (TCP SYNs and UDP datagrams) interleaved with a few long legitimate flows; see
//! `tunnelwatch::synth::flood`.
//!
//! `cargo run --release --no-default-features --example flood -- OUT.pcap [FLOOD_FLOWS] [SEED]`
//! prints the packet count and, per long flow, its endpoints and packets each way.

use std::path::PathBuf;

use tunnelwatch::synth::flood::{self, FloodConfig};
use tunnelwatch::synth::pcap_writer::{PcapWriter, Sink};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: flood OUT.pcap [FLOOD_FLOWS] [SEED]");
        std::process::exit(1);
    };
    let number = |arg: Option<std::ffi::OsString>, default: u64| -> u64 {
        match arg.map(|a| a.to_string_lossy().replace('_', "").parse()) {
            None => default,
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                eprintln!("flood: not a number: {e}");
                std::process::exit(1);
            }
        }
    };
    let cfg = FloodConfig {
        flood_flows: number(args.next(), 1_000_000),
        seed: number(args.next(), 1),
        ..FloodConfig::default()
    };
    if let Err(e) = run(&out, &cfg) {
        eprintln!("flood: {}: {e}", out.display());
        std::process::exit(1);
    }
}

fn run(out: &std::path::Path, cfg: &FloodConfig) -> std::io::Result<()> {
    let mut pcap = PcapWriter::new(Sink::create(out)?)?;
    let summary = flood::write(cfg, &mut pcap)?;
    pcap.into_inner().finish()?;
    println!(
        "{} packets, {} flood flows, {} long flows",
        summary.packets,
        summary.flood_flows,
        summary.long_flows.len()
    );
    for l in &summary.long_flows {
        println!(
            "long {} {} -> {}: {} + {} packets",
            l.transport, l.client, l.server, l.packets_c2s, l.packets_s2c
        );
    }
    Ok(())
}
