//! Streaming reader for classic pcap and pcapng, over any `Read` (plain file, gzip, pipe).
//!
//! Memory is one reusable record buffer, independent of file size. The format is detected
//! from the magic bytes, never from the file name (the corpus has `.pcap` files that are
//! pcapng and the reverse).
//!
//! Wire facts:
//! - classic pcap (draft-ietf-opsawg-pcap §4): 24-byte file header; magic `A1B2C3D4`
//!   (microseconds) or `A1B23C4D` (nanoseconds), written in the writer's byte order; link type
//!   in the low 16 bits of the last header word; 16-byte record headers
//!   `ts_sec, ts_frac, caplen, origlen`.
//! - pcapng (draft-ietf-opsawg-pcapng §3–4): blocks `type, total_len, body, total_len`, padded to
//!   32 bits. Section Header (`0A0D0D0A`) fixes the byte order through its `1A2B3C4D` magic;
//!   Interface Description (1) gives link type and `if_tsresol` (option 9); Enhanced Packet (6),
//!   Simple Packet (3) and the obsolete Packet block (2) carry frames. Other blocks are skipped.

use std::io::{self, BufRead, Read};

use thiserror::Error;

use crate::prefetch::prefetch;

/// Largest record we accept. pcap's usual snap length is 262 144; jumbo and USB captures
/// go a little further. Anything bigger is corruption, not data.
pub const MAX_RECORD_LEN: u32 = 16 * 1024 * 1024;

/// One captured frame, borrowed from the reader's buffer until the next call.
#[derive(Debug, Clone, Copy)]
pub struct CapturedPacket<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_nanos: i64,
    /// LINKTYPE_* value of the interface the frame was captured on.
    pub link_type: u16,
    /// The captured bytes (may be shorter than `orig_len` when a snap length applied).
    pub data: &'a [u8],
    /// Length of the frame on the wire.
    pub orig_len: u32,
}

/// Which container format a capture uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    Pcap,
    PcapNg,
}

/// Why a capture could not be read further. Stream control (end of file) is not an error.
#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("not a capture file (starts with {}; a pcap or pcapng file starts with a1b2c3d4, a1b23c4d or 0a0d0d0a)", hex(.magic))]
    NotACapture { magic: Vec<u8> },
    #[error("file is empty")]
    Empty,
    #[error("truncated at byte offset {offset}: {what} needs {needed} bytes, only {had} present")]
    Truncated {
        offset: u64,
        what: &'static str,
        needed: u64,
        had: u64,
    },
    #[error("corrupt at byte offset {offset}: {what}")]
    Corrupt { offset: u64, what: String },
    #[error("read error at byte offset {offset}: {source}")]
    Io { offset: u64, source: io::Error },
}

impl CaptureError {
    /// True when records before the problem were delivered and the problem only ends the file
    /// early (a warning, not a failure of the input as a whole).
    pub fn is_partial(&self) -> bool {
        matches!(
            self,
            CaptureError::Truncated { .. } | CaptureError::Corrupt { .. } | CaptureError::Io { .. }
        )
    }
}

/// (timestamp ns, link type, data start in the buffer, captured length, original length).
type PacketFields = (i64, u16, usize, usize, u32);

#[derive(Debug, Clone, Copy)]
struct Interface {
    link_type: u16,
    /// Timestamp units per second as (multiplier to nanoseconds) in one of two forms.
    resolution: TsResolution,
    offset_secs: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsResolution {
    /// 10^-n seconds per unit.
    Decimal(u8),
    /// 2^-n seconds per unit.
    Binary(u8),
}

impl TsResolution {
    fn to_nanos(self, units: u64) -> i64 {
        let nanos: u128 = match self {
            TsResolution::Decimal(n) if n <= 9 => u128::from(units) * 10u128.pow(u32::from(9 - n)),
            TsResolution::Decimal(n) => u128::from(units) / 10u128.pow(u32::from(n.min(38) - 9)),
            TsResolution::Binary(n) => (u128::from(units) * 1_000_000_000) >> n.min(127),
        };
        i64::try_from(nanos).unwrap_or(i64::MAX)
    }
}

enum State {
    Pcap {
        big_endian: bool,
        link_type: u16,
        nanos: bool,
    },
    PcapNg {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
}

impl State {
    /// The pcapng interfaces described so far (none for pcap).
    fn interfaces(&self) -> &[Interface] {
        match self {
            State::PcapNg { interfaces, .. } => interfaces,
            State::Pcap { .. } => &[],
        }
    }
}

/// Streaming capture reader: `next_packet` lends one frame at a time.
pub struct CaptureReader<R: BufRead> {
    inner: R,
    buf: Vec<u8>,
    /// Bytes of `inner`'s buffer lent out as the last packet, consumed at the next call.
    lent: usize,
    /// Byte offset of the next unread byte in the (decompressed) stream.
    offset: u64,
    state: State,
}

impl<R: BufRead> CaptureReader<R> {
    /// Reads the file header (pcap) or first Section Header Block (pcapng).
    pub fn new(mut inner: R) -> Result<Self, CaptureError> {
        let mut magic = [0u8; 4];
        let got = read_full(&mut inner, &mut magic)
            .map_err(|source| CaptureError::Io { offset: 0, source })?;
        if got == 0 {
            return Err(CaptureError::Empty);
        }
        if got < 4 {
            return Err(CaptureError::NotACapture {
                magic: magic[..got].to_vec(),
            });
        }
        let mut reader = CaptureReader {
            inner,
            buf: Vec::with_capacity(64 * 1024),
            lent: 0,
            offset: 4,
            state: State::Pcap {
                big_endian: false,
                link_type: 0,
                nanos: false,
            },
        };
        match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => reader.start_pcap(false, false)?,
            [0xa1, 0xb2, 0xc3, 0xd4] => reader.start_pcap(true, false)?,
            [0x4d, 0x3c, 0xb2, 0xa1] => reader.start_pcap(false, true)?,
            [0xa1, 0xb2, 0x3c, 0x4d] => reader.start_pcap(true, true)?,
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                reader.state = State::PcapNg {
                    big_endian: false,
                    interfaces: Vec::new(),
                };
                reader.read_section_header(0)?;
            }
            _ => {
                return Err(CaptureError::NotACapture {
                    magic: magic.to_vec(),
                })
            }
        }
        Ok(reader)
    }

    /// The container format detected from the magic.
    pub fn format(&self) -> CaptureFormat {
        match self.state {
            State::Pcap { .. } => CaptureFormat::Pcap,
            State::PcapNg { .. } => CaptureFormat::PcapNg,
        }
    }

    /// Bytes consumed so far (of the decompressed stream).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn start_pcap(&mut self, big_endian: bool, nanos: bool) -> Result<(), CaptureError> {
        let mut rest = [0u8; 20];
        self.fill(&mut rest, "pcap file header")?;
        let link = read_u32(&rest[16..20], big_endian);
        // Upper bits of the link-type word carry FCS information (pcap draft §4, LinkType).
        let link_type = (link & 0xffff) as u16;
        self.state = State::Pcap {
            big_endian,
            link_type,
            nanos,
        };
        Ok(())
    }

    /// Reads exactly `dst.len()` bytes or reports a truncation at the current offset.
    fn fill(&mut self, dst: &mut [u8], what: &'static str) -> Result<(), CaptureError> {
        let start = self.offset;
        let got = read_full(&mut self.inner, dst).map_err(|source| CaptureError::Io {
            offset: start,
            source,
        })?;
        self.offset += got as u64;
        if got < dst.len() {
            return Err(CaptureError::Truncated {
                offset: start,
                what,
                needed: dst.len() as u64,
                had: got as u64,
            });
        }
        Ok(())
    }

    /// Like `fill` but a clean end of stream (zero bytes) is `Ok(false)`.
    fn fill_or_eof(&mut self, dst: &mut [u8], what: &'static str) -> Result<bool, CaptureError> {
        let start = self.offset;
        let got = read_full(&mut self.inner, dst).map_err(|source| CaptureError::Io {
            offset: start,
            source,
        })?;
        self.offset += got as u64;
        if got == 0 {
            return Ok(false);
        }
        if got < dst.len() {
            return Err(CaptureError::Truncated {
                offset: start,
                what,
                needed: dst.len() as u64,
                had: got as u64,
            });
        }
        Ok(true)
    }

    /// Reads `len` bytes into the reusable buffer (grows it, never shrinks it).
    fn fill_buf(&mut self, len: usize, what: &'static str) -> Result<(), CaptureError> {
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let start = self.offset;
        let got = read_full(&mut self.inner, &mut self.buf[..len]).map_err(|source| {
            CaptureError::Io {
                offset: start,
                source,
            }
        })?;
        self.offset += got as u64;
        if got < len {
            return Err(CaptureError::Truncated {
                offset: start,
                what,
                needed: len as u64,
                had: got as u64,
            });
        }
        Ok(())
    }

    /// The next frame, `Ok(None)` at a clean end of file.
    pub fn next_packet(&mut self) -> Result<Option<CapturedPacket<'_>>, CaptureError> {
        self.inner.consume(std::mem::take(&mut self.lent));
        match self.state {
            State::Pcap {
                big_endian,
                link_type,
                nanos,
            } => self.next_pcap(big_endian, link_type, nanos),
            State::PcapNg { .. } => self.next_pcapng(),
        }
    }

    fn next_pcap(
        &mut self,
        be: bool,
        link_type: u16,
        nanos: bool,
    ) -> Result<Option<CapturedPacket<'_>>, CaptureError> {
        let record_start = self.offset;
        let mut hdr = [0u8; 16];
        // The record header is taken straight from the buffer when it is there (a fixed-size
        // copy the compiler inlines; `Read::read` costs a call per record).
        let peeked = match self.inner.fill_buf() {
            Ok(buffered) => match buffered.get(..16) {
                Some(head) => {
                    hdr.copy_from_slice(head);
                    true
                }
                None => false,
            },
            Err(_) => false,
        };
        if peeked {
            self.inner.consume(16);
            self.offset += 16;
        } else if !self.fill_or_eof(&mut hdr, "pcap record header")? {
            return Ok(None);
        }
        let ts_sec = read_u32(&hdr[0..4], be);
        let ts_frac = read_u32(&hdr[4..8], be);
        let caplen = read_u32(&hdr[8..12], be);
        let orig_len = read_u32(&hdr[12..16], be);
        if caplen > MAX_RECORD_LEN {
            return Err(CaptureError::Corrupt {
                offset: record_start,
                what: format!("record claims {caplen} captured bytes (limit {MAX_RECORD_LEN})"),
            });
        }
        let caplen = caplen as usize;
        let frac_nanos = if nanos {
            i64::from(ts_frac)
        } else {
            i64::from(ts_frac) * 1000
        };
        let ts_nanos = i64::from(ts_sec) * 1_000_000_000 + frac_nanos;
        // The hot path: a record that sits whole in the buffered reader is lent from there
        // (no copy) and consumed at the next call; one that straddles the buffer is copied.
        let buffered = unconsumed(&mut self.inner, self.offset)?.len();
        if buffered >= caplen {
            self.lent = caplen;
            self.offset += caplen as u64;
            let buffered = unconsumed(&mut self.inner, self.offset)?;
            // Where the next record starts is known only from this one's header, so walking
            // a mapped file is a chain of dependent loads: each header missed the cache (over
            // a quarter of the reading thread's samples on large packets). The next header was
            // asked for one record ago; the one after it, and the packet headers that follow
            // it, are asked for now, two packets' decoding ahead of their use.
            prefetch(buffered.get(caplen));
            if let Some(next) = buffered.get(caplen + 8..caplen + 12) {
                let after = (read_u32(next, be) as usize).saturating_add(caplen + 16);
                prefetch(buffered.get(after));
                prefetch(buffered.get(after + 64));
            }
            let data = &buffered[..caplen];
            return Ok(Some(CapturedPacket {
                ts_nanos,
                link_type,
                data,
                orig_len,
            }));
        }
        self.fill_buf(caplen, "pcap record data")?;
        Ok(Some(CapturedPacket {
            ts_nanos,
            link_type,
            data: &self.buf[..caplen],
            orig_len,
        }))
    }

    fn be(&self) -> bool {
        match self.state {
            State::PcapNg { big_endian, .. } | State::Pcap { big_endian, .. } => big_endian,
        }
    }

    /// Parses a Section Header Block whose type word (at `block_start`) was already read.
    fn read_section_header(&mut self, block_start: u64) -> Result<(), CaptureError> {
        let mut len_and_bom = [0u8; 8];
        self.fill(&mut len_and_bom, "pcapng section header")?;
        let big_endian = match len_and_bom[4..8] {
            [0x1a, 0x2b, 0x3c, 0x4d] => true,
            [0x4d, 0x3c, 0x2b, 0x1a] => false,
            _ => {
                return Err(CaptureError::Corrupt {
                    offset: block_start,
                    what: "pcapng section header has no valid byte-order magic".into(),
                })
            }
        };
        let total_len = read_u32(&len_and_bom[0..4], big_endian);
        if !(28..=MAX_RECORD_LEN).contains(&total_len) || total_len % 4 != 0 {
            return Err(CaptureError::Corrupt {
                offset: block_start,
                what: format!("pcapng section header length {total_len} is invalid"),
            });
        }
        // Rest of the block: version, section length, options, trailing length.
        self.fill_buf(total_len as usize - 12, "pcapng section header body")?;
        self.state = State::PcapNg {
            big_endian,
            interfaces: Vec::new(),
        };
        Ok(())
    }

    fn next_pcapng(&mut self) -> Result<Option<CapturedPacket<'_>>, CaptureError> {
        loop {
            let block_start = self.offset;
            let mut type_word = [0u8; 4];
            if !self.fill_or_eof(&mut type_word, "pcapng block header")? {
                return Ok(None);
            }
            if type_word == [0x0a, 0x0d, 0x0d, 0x0a] {
                self.read_section_header(block_start)?;
                continue;
            }
            let be = self.be();
            let block_type = read_u32(&type_word, be);
            let mut len_word = [0u8; 4];
            self.fill(&mut len_word, "pcapng block length")?;
            let total_len = read_u32(&len_word, be);
            if total_len < 12 || total_len % 4 != 0 || total_len > MAX_RECORD_LEN {
                return Err(CaptureError::Corrupt {
                    offset: block_start,
                    what: format!(
                        "pcapng block of type {block_type:#x} has invalid length {total_len}"
                    ),
                });
            }
            let body_len = total_len as usize - 12;
            // The hot path, as for pcap records: a packet block that sits whole in the
            // buffered reader (always, for a mapped file) is lent from there, not copied.
            if matches!(block_type, 6 | 2 | 3) {
                let interfaces = self.state.interfaces();
                let buffered = unconsumed(&mut self.inner, self.offset)?;
                let fields = match buffered.get(..body_len + 4) {
                    Some(block) => {
                        check_trailer(&block[body_len..], total_len, be, block_start)?;
                        Some(packet_fields(
                            interfaces,
                            block_type,
                            &block[..body_len],
                            be,
                            block_start,
                        )?)
                    }
                    None => None,
                };
                if let Some((ts_nanos, link_type, start, caplen, orig_len)) = fields {
                    self.lent = body_len + 4;
                    self.offset += self.lent as u64;
                    // The same bytes again (`fill_buf` without `consume` returns them).
                    let buffered = unconsumed(&mut self.inner, self.offset)?;
                    let data =
                        buffered
                            .get(start..start + caplen)
                            .ok_or_else(|| CaptureError::Io {
                                offset: block_start,
                                source: std::io::Error::other("the reader's buffer changed"),
                            })?;
                    return Ok(Some(CapturedPacket {
                        ts_nanos,
                        link_type,
                        data,
                        orig_len,
                    }));
                }
            }
            // Body plus the trailing copy of the length.
            self.fill_buf(body_len + 4, "pcapng block body")?;
            check_trailer(
                &self.buf[body_len..body_len + 4],
                total_len,
                be,
                block_start,
            )?;
            match block_type {
                1 => self.add_interface(body_len, be, block_start)?,
                6 | 2 | 3 => {
                    let (ts_nanos, link_type, start, caplen, orig_len) = packet_fields(
                        self.state.interfaces(),
                        block_type,
                        &self.buf[..body_len],
                        be,
                        block_start,
                    )?;
                    return Ok(Some(CapturedPacket {
                        ts_nanos,
                        link_type,
                        data: &self.buf[start..start + caplen],
                        orig_len,
                    }));
                }
                _ => {} // name resolution, statistics, custom, decryption secrets: not needed
            }
        }
    }

    fn add_interface(
        &mut self,
        body_len: usize,
        be: bool,
        block_start: u64,
    ) -> Result<(), CaptureError> {
        if body_len < 8 {
            return Err(CaptureError::Corrupt {
                offset: block_start,
                what: "pcapng interface block too short".into(),
            });
        }
        let link_type = read_u16(&self.buf[0..2], be);
        let mut iface = Interface {
            link_type,
            resolution: TsResolution::Decimal(6),
            offset_secs: 0,
        };
        // Options: code u16, length u16, value padded to 32 bits (pcapng §3.5).
        let mut pos = 8;
        while pos + 4 <= body_len {
            let code = read_u16(&self.buf[pos..pos + 2], be);
            let len = usize::from(read_u16(&self.buf[pos + 2..pos + 4], be));
            let value_start = pos + 4;
            if code == 0 || value_start + len > body_len {
                break;
            }
            let value = &self.buf[value_start..value_start + len];
            match (code, len) {
                (9, 1) => {
                    let v = value[0];
                    iface.resolution = if v & 0x80 == 0 {
                        TsResolution::Decimal(v & 0x7f)
                    } else {
                        TsResolution::Binary(v & 0x7f)
                    };
                }
                (14, 8) => {
                    iface.offset_secs = if be {
                        i64::from_be_bytes(value.try_into().unwrap_or([0; 8]))
                    } else {
                        i64::from_le_bytes(value.try_into().unwrap_or([0; 8]))
                    };
                }
                _ => {}
            }
            pos = value_start + len.div_ceil(4) * 4;
        }
        if let State::PcapNg { interfaces, .. } = &mut self.state {
            interfaces.push(iface);
        }
        Ok(())
    }
}

/// The bytes `inner` holds unconsumed (filling it if empty), with a read error reported at
/// `offset`.
fn unconsumed<R: BufRead>(inner: &mut R, offset: u64) -> Result<&[u8], CaptureError> {
    inner
        .fill_buf()
        .map_err(|source| CaptureError::Io { offset, source })
}

/// A pcapng block ends with a copy of its total length (`trailer`, 4 bytes), which must
/// match the one at its start.
fn check_trailer(
    trailer: &[u8],
    total_len: u32,
    be: bool,
    block_start: u64,
) -> Result<(), CaptureError> {
    let trailer = read_u32(trailer, be);
    if trailer != total_len {
        return Err(CaptureError::Corrupt {
            offset: block_start,
            what: format!("pcapng block lengths disagree ({total_len} at start, {trailer} at end)"),
        });
    }
    Ok(())
}

/// The timestamp, link type, data offset, captured and original length of a pcapng packet
/// block (Enhanced = 6, obsolete Packet = 2, Simple = 3; RFC draft-ietf-opsawg-pcapng §4.3-4.5)
/// whose body (after type and length) is `b`.
fn packet_fields(
    interfaces: &[Interface],
    block_type: u32,
    b: &[u8],
    be: bool,
    block_start: u64,
) -> Result<PacketFields, CaptureError> {
    let body_len = b.len();
    let corrupt = |what: String| CaptureError::Corrupt {
        offset: block_start,
        what,
    };
    let (iface_id, ts_units, data_start, caplen, orig_len) = match block_type {
        6 => {
            if body_len < 20 {
                return Err(corrupt("enhanced packet block too short".into()));
            }
            let ts = (u64::from(read_u32(&b[4..8], be)) << 32) | u64::from(read_u32(&b[8..12], be));
            (
                read_u32(&b[0..4], be) as usize,
                Some(ts),
                20,
                read_u32(&b[12..16], be) as usize,
                read_u32(&b[16..20], be),
            )
        }
        2 => {
            if body_len < 20 {
                return Err(corrupt("packet block too short".into()));
            }
            let ts = (u64::from(read_u32(&b[4..8], be)) << 32) | u64::from(read_u32(&b[8..12], be));
            (
                usize::from(read_u16(&b[0..2], be)),
                Some(ts),
                20,
                read_u32(&b[12..16], be) as usize,
                read_u32(&b[16..20], be),
            )
        }
        _ => {
            // Simple Packet Block: no timestamp, interface 0; captured length is what fits.
            if body_len < 4 {
                return Err(corrupt("simple packet block too short".into()));
            }
            let orig = read_u32(&b[0..4], be);
            (0, None, 4, (orig as usize).min(body_len - 4), orig)
        }
    };
    let Some(iface) = interfaces.get(iface_id) else {
        return Err(corrupt(format!(
            "packet names interface {iface_id}, but only {} are described",
            interfaces.len()
        )));
    };
    if data_start + caplen > body_len {
        return Err(corrupt(format!(
            "packet claims {caplen} captured bytes, block holds {}",
            body_len - data_start
        )));
    }
    let ts = ts_units.map_or(0, |u| {
        iface
            .resolution
            .to_nanos(u)
            .saturating_add(iface.offset_secs.saturating_mul(1_000_000_000))
    });
    Ok((ts, iface.link_type, data_start, caplen, orig_len))
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_u32(b: &[u8], be: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if be {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn read_u16(b: &[u8], be: bool) -> u16 {
    let a = [b[0], b[1]];
    if be {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

/// Reads until `dst` is full or the stream ends; returns how many bytes were read.
fn read_full<R: Read>(r: &mut R, dst: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < dst.len() {
        match r.read(&mut dst[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian microsecond pcap with the given records (ts_sec, data).
    pub(crate) fn pcap_le(link: u32, records: &[(u32, &[u8])]) -> Vec<u8> {
        let mut v = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&link.to_le_bytes());
        for (ts, data) in records {
            v.extend_from_slice(&ts.to_le_bytes());
            v.extend_from_slice(&7u32.to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(data);
        }
        v
    }

    #[test]
    fn reads_classic_pcap_both_byte_orders() {
        let le = pcap_le(1, &[(10, b"abcd"), (11, b"ef")]);
        let mut r = CaptureReader::new(&le[..]).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.ts_nanos, p.link_type, p.data),
            (10_000_007_000, 1, &b"abcd"[..])
        );
        assert_eq!(r.next_packet().unwrap().unwrap().data, b"ef");
        assert!(r.next_packet().unwrap().is_none());

        // Big-endian nanosecond variant of one record.
        let mut be = vec![
            0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0,
            101,
        ];
        be.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 1, 0x45]);
        let mut r = CaptureReader::new(&be[..]).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.ts_nanos, p.link_type, p.data),
            (1_000_000_005, 101, &[0x45u8][..])
        );
    }

    #[test]
    fn truncated_record_reports_offset() {
        let mut f = pcap_le(1, &[(1, b"abcd"), (2, b"efgh")]);
        f.truncate(f.len() - 2);
        let mut r = CaptureReader::new(&f[..]).unwrap();
        assert!(r.next_packet().unwrap().is_some());
        match r.next_packet() {
            Err(CaptureError::Truncated {
                offset,
                needed: 4,
                had: 2,
                ..
            }) => assert_eq!(offset, 24 + 20 + 16),
            other => panic!("expected truncation, got {other:?}"),
        }
    }

    #[test]
    fn rejects_garbage_and_empty() {
        assert!(matches!(
            CaptureReader::new(&b"hello world"[..]),
            Err(CaptureError::NotACapture { .. })
        ));
        assert!(matches!(
            CaptureReader::new(&b""[..]),
            Err(CaptureError::Empty)
        ));
    }

    fn ng_block(block_type: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        while body.len() % 4 != 0 {
            body.push(0);
        }
        let total = (body.len() + 12) as u32;
        let mut v = block_type.to_le_bytes().to_vec();
        v.extend_from_slice(&total.to_le_bytes());
        v.extend_from_slice(&body);
        v.extend_from_slice(&total.to_le_bytes());
        v
    }

    /// A pcapng capture: an Ethernet interface (microseconds) and a raw-IP one (nanoseconds),
    /// a packet on each with a statistics block between them, then `more` packets on the first.
    fn two_interface_pcapng(more: &[&[u8]]) -> Vec<u8> {
        let mut f = ng_block(
            0x0a0d0d0a,
            &[
                0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        );
        // Interface 0: Ethernet, default microseconds.
        f.extend(ng_block(1, &[1, 0, 0, 0, 0, 0, 0, 0]));
        // Interface 1: raw IP with if_tsresol = 9 (nanoseconds).
        f.extend(ng_block(
            1,
            &[101, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0],
        ));
        let epb = |iface: u32, ts: u64, data: &[u8]| {
            let mut b = iface.to_le_bytes().to_vec();
            b.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
            b.extend_from_slice(&(ts as u32).to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(data);
            ng_block(6, &b)
        };
        f.extend(epb(0, 1_500_000, b"abc"));
        f.extend(ng_block(5, &[0; 8])); // statistics block: skipped
        f.extend(epb(1, 2_000_000_001, b"de"));
        for (i, data) in more.iter().enumerate() {
            f.extend(epb(0, 3_000_000 + i as u64, data));
        }
        f
    }

    #[test]
    fn reads_pcapng_with_two_interfaces_and_resolutions() {
        let f = two_interface_pcapng(&[]);
        let mut r = CaptureReader::new(&f[..]).unwrap();
        assert_eq!(r.format(), CaptureFormat::PcapNg);
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.ts_nanos, p.link_type, p.data),
            (1_500_000_000, 1, &b"abc"[..])
        );
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.ts_nanos, p.link_type, p.data),
            (2_000_000_001, 101, &b"de"[..])
        );
        assert!(r.next_packet().unwrap().is_none());
    }

    #[test]
    fn pcapng_bad_block_length_is_corrupt() {
        let mut f = ng_block(
            0x0a0d0d0a,
            &[
                0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        );
        f.extend_from_slice(&6u32.to_le_bytes());
        f.extend_from_slice(&7u32.to_le_bytes());
        let mut r = CaptureReader::new(&f[..]).unwrap();
        assert!(matches!(
            r.next_packet(),
            Err(CaptureError::Corrupt { offset: 28, .. })
        ));
    }

    #[test]
    fn packet_naming_missing_interface_is_corrupt_not_panic() {
        let mut f = ng_block(
            0x0a0d0d0a,
            &[
                0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        );
        f.extend(ng_block(
            6,
            &[
                3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0xaa,
            ],
        ));
        let mut r = CaptureReader::new(&f[..]).unwrap();
        assert!(matches!(r.next_packet(), Err(CaptureError::Corrupt { .. })));
    }

    #[test]
    fn binary_timestamp_resolution() {
        assert_eq!(TsResolution::Binary(10).to_nanos(1024), 1_000_000_000);
        assert_eq!(TsResolution::Decimal(3).to_nanos(5), 5_000_000);
        assert_eq!(TsResolution::Decimal(12).to_nanos(5_000), 5);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn drain(bytes: &[u8]) -> usize {
            read_all(bytes).0.len()
        }

        /// Every packet as (time, link type, bytes, original length), then the error that
        /// ended the reading, if any.
        type Reading = (Vec<(i64, u16, Vec<u8>, u32)>, Option<String>);

        fn read_all<R: BufRead>(inner: R) -> Reading {
            let mut packets = Vec::new();
            let mut r = match CaptureReader::new(inner) {
                Ok(r) => r,
                Err(e) => return (packets, Some(e.to_string())),
            };
            loop {
                match r.next_packet() {
                    Ok(Some(p)) => {
                        assert!(p.data.len() <= MAX_RECORD_LEN as usize);
                        packets.push((p.ts_nanos, p.link_type, p.data.to_vec(), p.orig_len));
                    }
                    Ok(None) => return (packets, None),
                    Err(e) => return (packets, Some(e.to_string())),
                }
            }
        }

        proptest! {
            /// Records lent from the reader's buffer (the whole file, when mapped) and records
            /// copied because they straddle a small buffer read the same, errors included.
            #[test]
            fn lent_and_copied_records_read_the_same(
                flips in proptest::collection::vec((0usize..260, any::<u8>()), 0..4),
                cut in 0usize..120,
                capacity in 1usize..48,
                ng in any::<bool>(),
            ) {
                let mut f = if ng {
                    two_interface_pcapng(&[b"fghij", b"klmnopqrstuvwxyz"])
                } else {
                    pcap_le(1, &[(1, b"abcdefgh"), (2, b"ijklmnopqrst"), (3, b"uvwx")])
                };
                for (at, v) in flips {
                    if at < f.len() { f[at] = v; }
                }
                f.truncate(f.len().saturating_sub(cut));
                let lent = read_all(&f[..]);
                let copied = read_all(std::io::BufReader::with_capacity(capacity, &f[..]));
                prop_assert_eq!(lent, copied);
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                drain(&bytes);
            }

            #[test]
            fn mutated_captures_never_panic(flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..8), cut in 0usize..200) {
                let mut f = pcap_le(1, &[(1, b"abcdefgh"), (2, b"ijklmnop"), (3, b"qrstuvwx")]);
                for (at, v) in flips {
                    if at < f.len() { f[at] = v; }
                }
                f.truncate(f.len().saturating_sub(cut % 40));
                drain(&f);
                // pcapng framing too: the same bytes behind a section header.
                let mut ng = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0];
                ng.extend_from_slice(&f);
                drain(&ng);
            }

            #[test]
            fn truncating_a_capture_keeps_every_complete_record(cut in 0usize..90) {
                let f = pcap_le(1, &[(1, b"abcdefgh"), (2, b"ijklmnop"), (3, b"qrstuvwx")]);
                let kept = f.len() - cut;
                let complete = (kept.saturating_sub(24)) / 24; // 16-byte header + 8 bytes each
                prop_assert_eq!(drain(&f[..kept]), complete.min(3));
            }
        }
    }
}
