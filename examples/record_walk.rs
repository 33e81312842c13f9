//! The practical floor for reading a capture: walk every record, touch nothing else.
//! `cargo run --release --no-default-features --example record_walk -- FILE` prints the record
//! count; benches/compare.sh times it beside the real pipeline.

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: record_walk CAPTURE");
        std::process::exit(1);
    };
    let mut reader = match tunnelwatch::ingest::open_capture(std::path::Path::new(&path)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "record_walk: {}: {e}",
                std::path::Path::new(&path).display()
            );
            std::process::exit(2);
        }
    };
    let (mut packets, mut bytes) = (0u64, 0u64);
    while let Ok(Some(p)) = reader.next_packet() {
        packets += 1;
        bytes += p.data.len() as u64;
    }
    println!("{packets} records, {bytes} captured bytes");
}
