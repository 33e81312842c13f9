//! Classic libpcap file writer: microsecond timestamps, little-endian, link type Ethernet (1).
//!
//! File layout (libpcap "savefile" format, draft-ietf-opsawg-pcap): a 24-byte global header
//! (magic 0xA1B2C3D4, version 2.4, thiszone 0, sigfigs 0, snaplen, network) and, per packet, a
//! 16-byte record header (ts_sec, ts_usec, incl_len, orig_len) followed by the frame bytes.
//! Output is streamed: nothing but the caller's buffers is kept in memory.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::atomic_file::AtomicFile;

/// libpcap magic for microsecond timestamps.
pub const MAGIC_MICROS: u32 = 0xA1B2_C3D4;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Snapshot length written in the header; frames are never longer than this.
pub const SNAPLEN: u32 = 65_535;

/// Where bytes go: a plain file, a gzip stream, or nowhere (dry runs that only count). Files are
/// written under a temporary name and appear only on [`Sink::finish`].
pub enum Sink {
    Plain(BufWriter<AtomicFile>),
    Gzip(Box<GzEncoder<BufWriter<AtomicFile>>>),
    Null,
}

impl Sink {
    /// A file sink; a path ending in `.gz` is gzip-compressed.
    pub fn create(path: &Path) -> io::Result<Sink> {
        let file = BufWriter::with_capacity(1 << 20, AtomicFile::create(path)?);
        let gz = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
        Ok(if gz {
            Sink::Gzip(Box::new(GzEncoder::new(file, Compression::fast())))
        } else {
            Sink::Plain(file)
        })
    }

    /// Flush everything (and write the gzip trailer), then give the file its final name.
    pub fn finish(self) -> io::Result<()> {
        let file = match self {
            Sink::Plain(w) => w,
            Sink::Gzip(gz) => gz.finish()?,
            Sink::Null => return Ok(()),
        };
        file.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .commit()
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
            Sink::Null => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
            Sink::Null => Ok(()),
        }
    }
}

/// Streams Ethernet frames into a classic pcap.
pub struct PcapWriter<W: Write> {
    out: W,
    packets: u64,
    bytes: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&MAGIC_MICROS.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone (8..12) and sigfigs (12..16) stay 0.
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter {
            out,
            packets: 0,
            bytes: 24,
        })
    }

    /// Appends one frame captured at `ts_us` microseconds since the Unix epoch.
    pub fn write_packet(&mut self, ts_us: u64, frame: &[u8]) -> io::Result<()> {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX).min(SNAPLEN);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(
            &u32::try_from(ts_us / 1_000_000)
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        h[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&u32::try_from(frame.len()).unwrap_or(u32::MAX).to_le_bytes());
        self.out.write_all(&h)?;
        self.out
            .write_all(frame.get(..len as usize).unwrap_or(frame))?;
        self.packets += 1;
        self.bytes += 16 + u64::from(len);
        Ok(())
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Bytes of pcap written so far (before any compression).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_packet(1_700_000_000_123_456, &[1, 2, 3]).unwrap();
        let v = w.into_inner();
        assert_eq!(&v[0..4], &[0xD4, 0xC3, 0xB2, 0xA1]);
        assert_eq!(u16::from_le_bytes([v[4], v[5]]), 2);
        assert_eq!(u16::from_le_bytes([v[6], v[7]]), 4);
        assert_eq!(u32::from_le_bytes([v[20], v[21], v[22], v[23]]), 1);
        assert_eq!(
            u32::from_le_bytes([v[24], v[25], v[26], v[27]]),
            1_700_000_000
        );
        assert_eq!(u32::from_le_bytes([v[28], v[29], v[30], v[31]]), 123_456);
        assert_eq!(u32::from_le_bytes([v[32], v[33], v[34], v[35]]), 3);
        assert_eq!(&v[40..], &[1, 2, 3]);
    }
}
