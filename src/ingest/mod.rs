//! Ingest: turns the user's inputs (files, folders, `.gz`) into a stream of captured frames.
//!
//! Contract: every input is either read to its end, read up to a named byte offset (a warning),
//! or refused with a one-line reason (an error); nothing is silently dropped.

pub mod capture;
pub mod flowlog;
#[cfg(feature = "live")]
pub mod live;
pub mod mapped;

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

pub use capture::{CaptureError, CaptureFormat, CaptureReader, CapturedPacket};
pub use mapped::MappedCapture;

/// File name endings that a folder walk picks up.
pub const CAPTURE_EXTENSIONS: &[&str] = &["pcap", "pcapng", "cap", "gz"];

/// Expands files and folders into the list of capture files to read, in a stable order.
/// Folders are walked recursively for [`CAPTURE_EXTENSIONS`]; named files are taken as given
/// (a missing one is kept, so opening it reports the problem beside the other inputs).
pub fn expand_inputs(inputs: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if std::fs::metadata(input).is_ok_and(|m| m.is_dir()) {
            let mut found = Vec::new();
            walk(input, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| CAPTURE_EXTENSIONS.iter().any(|c| c.eq_ignore_ascii_case(e)))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// An opened capture file: mapped into memory (plain files), or streamed (gzip, pipes, devices).
pub enum CaptureInput {
    Mapped(MappedCapture),
    Stream(CaptureReader<Box<dyn BufRead + Send>>),
}

/// Opens a capture file for reading: plain files are memory-mapped, gzip (magic `1f 8b`) and
/// anything that cannot be mapped is streamed. A mapped file's header is checked by the
/// caller's `CaptureReader::new(mapped.bytes())`.
pub fn open_input(path: &Path) -> Result<CaptureInput, OpenError> {
    let file = File::open(path).map_err(OpenError::Io)?;
    if let Some(mapped) = MappedCapture::open(&file) {
        if !mapped.bytes().starts_with(&[0x1f, 0x8b]) {
            return Ok(CaptureInput::Mapped(mapped));
        }
    }
    stream_capture(file).map(CaptureInput::Stream)
}

/// Opens a capture file as a stream, transparently decompressing gzip (detected by its magic
/// `1f 8b`).
pub fn open_capture(path: &Path) -> Result<CaptureReader<Box<dyn BufRead + Send>>, OpenError> {
    stream_capture(File::open(path).map_err(OpenError::Io)?)
}

fn stream_capture(file: File) -> Result<CaptureReader<Box<dyn BufRead + Send>>, OpenError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, file);
    let is_gzip = {
        let head = buffered.fill_buf().map_err(OpenError::Io)?;
        head.starts_with(&[0x1f, 0x8b])
    };
    let stream: Box<dyn BufRead + Send> = if is_gzip {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            flate2::read::MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    CaptureReader::new(stream).map_err(OpenError::Capture)
}

/// Why an input could not be opened at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Io(io::Error),
    #[error("{0}")]
    Capture(CaptureError),
}
