//! QUIC Initial packets: header parse, Initial key derivation, header and payload protection
//! removal, CRYPTO-frame reassembly and the ClientHello's SNI/ALPN.
//!
//! Everything an on-path observer can do without secrets (RFC 9001 §5.2: Initial keys derive
//! from the client's Destination Connection ID and a published salt). Supported versions:
//! QUIC v1 (RFC 9000/9001), QUIC v2 (RFC 9369) and draft-29 (still sent by older stacks).
//!
//! # Panics
//! Never: every offset into packet bytes goes through `get(..)`; sizes are capped before any copy.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;

/// QUIC version 1 (RFC 9000 §15).
pub const VERSION_1: u32 = 0x0000_0001;
/// QUIC version 2 (RFC 9369 §3.1).
pub const VERSION_2: u32 = 0x6b33_43cf;
/// draft-ietf-quic-transport-29.
pub const VERSION_DRAFT_29: u32 = 0xff00_001d;

/// RFC 9001 §5.2 initial_salt for version 1.
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
/// RFC 9369 §3.3.1 initial_salt for version 2.
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];
/// draft-ietf-quic-tls-29 §5.2 initial_salt.
const SALT_DRAFT_29: [u8; 20] = [
    0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0,
    0x43, 0x90, 0xa8, 0x99,
];

/// Largest UDP datagram we copy for decryption (Initial datagrams are >= 1200 bytes and in
/// practice below the path MTU).
pub const MAX_DATAGRAM: usize = 2048;
/// Bound of the reassembled CRYPTO stream (the ClientHello, including post-quantum key shares).
pub const MAX_CRYPTO: usize = 8192;
/// Maximum connection-id length (RFC 9000 §17.2).
const MAX_CID: usize = 20;

/// Version-specific constants of Initial protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VersionParams {
    salt: &'static [u8; 20],
    key_label: &'static [u8],
    iv_label: &'static [u8],
    hp_label: &'static [u8],
    /// Long-header packet type bits of an Initial (RFC 9000 §17.2: 0b00; RFC 9369 §3.2: 0b01).
    initial_type: u8,
}

fn params(version: u32) -> Option<VersionParams> {
    match version {
        VERSION_1 | VERSION_DRAFT_29 => Some(VersionParams {
            salt: if version == VERSION_1 {
                &SALT_V1
            } else {
                &SALT_DRAFT_29
            },
            key_label: b"quic key",
            iv_label: b"quic iv",
            hp_label: b"quic hp",
            initial_type: 0b00,
        }),
        VERSION_2 => Some(VersionParams {
            salt: &SALT_V2,
            key_label: b"quicv2 key",
            iv_label: b"quicv2 iv",
            hp_label: b"quicv2 hp",
            initial_type: 0b01,
        }),
        _ => None,
    }
}

/// True for the versions whose Initial packets this module can open.
pub fn is_supported_version(version: u32) -> bool {
    params(version).is_some()
}

/// Short printable name of a version (`1`, `2`, `draft-29`).
pub fn version_name(version: u32) -> &'static str {
    match version {
        VERSION_1 => "1",
        VERSION_2 => "2",
        VERSION_DRAFT_29 => "draft-29",
        _ => "other",
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, as used by RFC 9001 §5.1.
fn expand_label(secret: &[u8], label: &[u8], out: &mut [u8]) -> Option<()> {
    let hk = Hkdf::<Sha256>::from_prk(secret).ok()?;
    // struct { uint16 length; opaque label<7..255> = "tls13 " + label; opaque context<0..255>; }
    let mut info = [0u8; 2 + 1 + 6 + 32 + 1];
    let full_len = 6 + label.len();
    let n = 2 + 1 + full_len + 1;
    let info = info.get_mut(..n)?;
    let out_len = u16::try_from(out.len()).ok()?;
    info.get_mut(..2)?.copy_from_slice(&out_len.to_be_bytes());
    *info.get_mut(2)? = u8::try_from(full_len).ok()?;
    info.get_mut(3..9)?.copy_from_slice(b"tls13 ");
    info.get_mut(9..9 + label.len())?.copy_from_slice(label);
    *info.get_mut(n - 1)? = 0;
    hk.expand(info, out).ok()
}

/// The client's Initial protection keys (RFC 9001 §5.2 and §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialKeys {
    pub secret: [u8; 32],
    pub key: [u8; 16],
    pub iv: [u8; 12],
    pub hp: [u8; 16],
}

/// Derives the client Initial keys from the client's first Destination Connection ID:
/// `initial_secret = HKDF-Extract(salt, dcid)`, `client_initial_secret =
/// HKDF-Expand-Label(initial_secret, "client in", "", 32)`, then key/iv/hp with the version's
/// labels. None for a version without published Initial salt.
pub fn client_initial_keys(version: u32, dcid: &[u8]) -> Option<InitialKeys> {
    initial_keys(version, dcid, false)
}

/// [`client_initial_keys`], or with `server` the server's (label `"server in"`); the scenario
/// generator seals its Initials with these.
pub fn initial_keys(version: u32, dcid: &[u8], server: bool) -> Option<InitialKeys> {
    let p = params(version)?;
    let (initial_secret, _) = Hkdf::<Sha256>::extract(Some(p.salt), dcid);
    let mut keys = InitialKeys {
        secret: [0; 32],
        key: [0; 16],
        iv: [0; 12],
        hp: [0; 16],
    };
    let label: &[u8] = if server { b"server in" } else { b"client in" };
    expand_label(&initial_secret, label, &mut keys.secret)?;
    expand_label(&keys.secret, p.key_label, &mut keys.key)?;
    expand_label(&keys.secret, p.iv_label, &mut keys.iv)?;
    expand_label(&keys.secret, p.hp_label, &mut keys.hp)?;
    Some(keys)
}

/// Header-protection mask (RFC 9001 §5.4.3): AES-128-ECB of the 16-byte sample.
pub fn header_protection_mask(hp: &[u8; 16], sample: &[u8]) -> Option<[u8; 16]> {
    let sample: [u8; 16] = sample.get(..16)?.try_into().ok()?;
    let cipher = Aes128::new(GenericArray::from_slice(hp));
    let mut block = GenericArray::from(sample);
    cipher.encrypt_block(&mut block);
    Some(block.into())
}

/// Reads a QUIC variable-length integer (RFC 9000 §16): value and bytes used.
pub fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for &x in bytes.get(1..)? {
        v = (v << 8) | u64::from(x);
    }
    Some((v, len))
}

/// The cleartext fields of a long-header Initial packet (RFC 9000 §17.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialHeader<'a> {
    pub version: u32,
    pub dcid: &'a [u8],
    pub scid: &'a [u8],
    pub token_len: usize,
    /// Offset of the (protected) packet number.
    pub pn_offset: usize,
    /// Value of the Length field: packet number plus protected payload.
    pub length: usize,
}

/// Parses the cleartext part of a long-header Initial of a supported version.
///
/// Layout: byte 0 = 1 (form) | 1 (fixed) | type(2) | protected(4); bytes 1..5 version;
/// DCID len (<= 20) + DCID; SCID len (<= 20) + SCID; token length (varint) + token;
/// Length (varint); packet number (protected). The packet must fit in `b`.
pub fn parse_initial_header(b: &[u8]) -> Option<InitialHeader<'_>> {
    parse_initial_header_on_wire(b, b.len())
}

/// [`parse_initial_header`] of a datagram `wire_len` bytes long on the wire, of which `b` holds
/// at least the header up to the Length field: the packet must fit in `wire_len`.
fn parse_initial_header_on_wire(b: &[u8], wire_len: usize) -> Option<InitialHeader<'_>> {
    let (version, dcid, scid) = long_header_ids(b)?;
    if (b[0] >> 4) & 0x03 != params(version)?.initial_type {
        return None;
    }
    let mut at = 7 + dcid.len() + scid.len();
    let (token_len, n) = read_varint(b.get(at..)?)?;
    let token_len = usize::try_from(token_len).ok()?;
    at = at.checked_add(n)?.checked_add(token_len)?;
    let (length, n) = read_varint(b.get(at..)?)?;
    let length = usize::try_from(length).ok()?;
    at += n;
    // Packet number (1..4) + sample (16) must fit; the whole packet must be in the datagram.
    if length < 4 + 16 || at.checked_add(length)? > wire_len {
        return None;
    }
    Some(InitialHeader {
        version,
        dcid,
        scid,
        token_len,
        pn_offset: at,
        length,
    })
}

/// RFC 9000 §14.1: a client pads every datagram carrying an Initial to at least 1200 bytes.
pub const MIN_CLIENT_INITIAL_DATAGRAM: usize = 1200;

/// The version and connection ids of a long-header packet of a supported version (RFC 9000
/// §17.2: byte 0 with the form and fixed bits set, version at 1..5, DCID length (<= 20) and
/// DCID, SCID length (<= 20) and SCID); the packet type is not checked.
pub fn long_header_ids(b: &[u8]) -> Option<(u32, &[u8], &[u8])> {
    if *b.first()? & 0xc0 != 0xc0 {
        return None;
    }
    let version = u32::from_be_bytes(b.get(1..5)?.try_into().ok()?);
    params(version)?;
    let dcid_len = usize::from(*b.get(5)?);
    let dcid = b.get(6..6 + dcid_len).filter(|_| dcid_len <= MAX_CID)?;
    let at = 6 + dcid_len;
    let scid_len = usize::from(*b.get(at)?);
    let scid = b
        .get(at + 1..at + 1 + scid_len)
        .filter(|_| scid_len <= MAX_CID)?;
    Some((version, dcid, scid))
}

/// [`parse_initial_header`] of a datagram a snap length cut: `b` holds its first bytes and
/// `wire_len` is its length on the wire. The header up to the Length field must be kept, the
/// packet must fit in `wire_len`, and the datagram must have a client Initial's padded size
/// ([`MIN_CLIENT_INITIAL_DATAGRAM`]) and a first Destination Connection ID of at least 8
/// bytes (RFC 9000 §7.2). Nothing is decrypted: the header's shape, a supported version and
/// the size are the evidence.
pub fn parse_cut_client_initial(b: &[u8], wire_len: usize) -> Option<InitialHeader<'_>> {
    if wire_len < MIN_CLIENT_INITIAL_DATAGRAM || wire_len < b.len() {
        return None;
    }
    parse_initial_header_on_wire(b, wire_len).filter(|h| h.dcid.len() >= 8)
}

/// A decrypted client Initial: its header facts and the plaintext frames in `buf[..len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedInitial {
    pub version: u32,
    pub packet_number: u32,
    pub dcid_len: usize,
    pub scid_len: usize,
    pub token_len: usize,
    /// Plaintext length in the caller's buffer.
    pub len: usize,
}

/// Removes header protection and decrypts the first (client) Initial packet of `datagram`
/// into `buf` (RFC 9001 §5.3, §5.4). `dcid` is the connection id the keys derive from: the
/// packet's own DCID for the client's first flight. Returns None unless the AEAD tag
/// verifies, so a success is cryptographic proof that the datagram is a QUIC Initial.
pub fn open_client_initial(
    datagram: &[u8],
    keys_dcid: Option<&[u8]>,
    buf: &mut [u8; MAX_DATAGRAM],
) -> Option<OpenedInitial> {
    let h = parse_initial_header(datagram)?;
    let keys = client_initial_keys(h.version, keys_dcid.unwrap_or(h.dcid))?;
    let sample = datagram.get(h.pn_offset + 4..h.pn_offset + 20)?;
    let mask = header_protection_mask(&keys.hp, sample)?;
    let first = *datagram.first()? ^ (mask[0] & 0x0f);
    let pn_len = usize::from(first & 0x03) + 1;
    let header_len = h.pn_offset + pn_len;
    let end = h.pn_offset + h.length;
    if header_len + 16 > end || end > MAX_DATAGRAM {
        return None;
    }
    // Unprotected header = AAD, then the ciphertext, in one bounded copy.
    let packet = datagram.get(..end)?;
    let out = buf.get_mut(..end)?;
    out.copy_from_slice(packet);
    *out.first_mut()? = first;
    let mut pn: u32 = 0;
    for i in 0..pn_len {
        let byte = out.get_mut(h.pn_offset + i)?;
        *byte ^= *mask.get(1 + i)?;
        pn = (pn << 8) | u32::from(*byte);
    }
    let mut nonce = keys.iv;
    for (i, b) in pn.to_be_bytes().iter().enumerate() {
        nonce[8 + i] ^= b;
    }
    let (aad, rest) = out.split_at_mut(header_len);
    let ct_len = rest.len().checked_sub(16)?;
    let (ct, tag) = rest.split_at_mut(ct_len);
    let cipher = Aes128Gcm::new(GenericArray::from_slice(&keys.key));
    cipher
        .decrypt_in_place_detached(Nonce::from_slice(&nonce), aad, ct, Tag::from_slice(tag))
        .ok()?;
    // Move the plaintext to the start of the buffer.
    buf.copy_within(header_len..header_len + ct_len, 0);
    Some(OpenedInitial {
        version: h.version,
        packet_number: pn,
        dcid_len: h.dcid.len(),
        scid_len: h.scid.len(),
        token_len: h.token_len,
        len: ct_len,
    })
}

/// Calls `f(offset, data)` for each CRYPTO frame (type 0x06, RFC 9000 §19.6) of a decrypted
/// Initial payload. PADDING, PING, ACK and CONNECTION_CLOSE are skipped; any other frame type
/// is not allowed in Initial packets (RFC 9000 §12.4) and stops the walk. Returns false when
/// the frames do not parse.
pub fn for_each_crypto_frame(mut p: &[u8], mut f: impl FnMut(u64, &[u8])) -> bool {
    while let Some(&ty) = p.first() {
        match ty {
            0x00 | 0x01 => p = &p[1..],
            0x02 | 0x03 => {
                // ACK: largest, delay, range count, first range, ranges (gap, len), [ECN x3].
                let mut at = 1;
                let mut fields = [0u64; 4];
                for v in &mut fields {
                    let Some((x, n)) = p.get(at..).and_then(read_varint) else {
                        return false;
                    };
                    *v = x;
                    at += n;
                }
                let ranges = fields[2].saturating_mul(2) + if ty == 0x03 { 3 } else { 0 };
                for _ in 0..ranges.min(512) {
                    let Some((_, n)) = p.get(at..).and_then(read_varint) else {
                        return false;
                    };
                    at += n;
                }
                if ranges > 512 {
                    return false;
                }
                let Some(rest) = p.get(at..) else {
                    return false;
                };
                p = rest;
            }
            0x06 => {
                let Some((off, n1)) = p.get(1..).and_then(read_varint) else {
                    return false;
                };
                let Some((len, n2)) = p.get(1 + n1..).and_then(read_varint) else {
                    return false;
                };
                let start = 1 + n1 + n2;
                let Ok(len) = usize::try_from(len) else {
                    return false;
                };
                let Some(data) = p.get(start..start.saturating_add(len)) else {
                    return false;
                };
                f(off, data);
                p = &p[start + len..];
            }
            0x1c => {
                // CONNECTION_CLOSE: error code, frame type, reason length, reason.
                let mut at = 1;
                let mut reason = 0u64;
                for _ in 0..3 {
                    let Some((x, n)) = p.get(at..).and_then(read_varint) else {
                        return false;
                    };
                    reason = x;
                    at += n;
                }
                let Ok(reason) = usize::try_from(reason) else {
                    return false;
                };
                let Some(rest) = p.get(at.saturating_add(reason)..) else {
                    return false;
                };
                p = rest;
            }
            _ => return false,
        }
    }
    true
}

/// Bounded reassembly of the client's Initial CRYPTO stream: frames may arrive split over
/// several packets and out of order. Bytes beyond [`MAX_CRYPTO`] are dropped.
#[derive(Debug, Default, Clone)]
pub struct CryptoStream {
    buf: Vec<u8>,
    /// Received byte ranges, [start, end), at most 32 kept.
    ranges: Vec<(usize, usize)>,
}

impl CryptoStream {
    /// Stores `data` at stream offset `off` (bounded).
    pub fn insert(&mut self, off: u64, data: &[u8]) {
        let Ok(start) = usize::try_from(off) else {
            return;
        };
        if start >= MAX_CRYPTO || data.is_empty() {
            return;
        }
        let end = start.saturating_add(data.len()).min(MAX_CRYPTO);
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        if let (Some(dst), Some(src)) = (self.buf.get_mut(start..end), data.get(..end - start)) {
            dst.copy_from_slice(src);
        }
        if self.ranges.len() < 32 {
            self.ranges.push((start, end));
        }
    }

    /// Length of the contiguous prefix received from offset 0.
    pub fn contiguous(&self) -> usize {
        let mut have = 0;
        loop {
            let next = self
                .ranges
                .iter()
                .filter(|(s, e)| *s <= have && *e > have)
                .map(|(_, e)| *e)
                .max();
            match next {
                Some(e) => have = e,
                None => return have,
            }
        }
    }

    /// The complete first handshake message (type byte, 24-bit length, body), once received.
    pub fn first_message(&self) -> Option<&[u8]> {
        let have = self.contiguous();
        let hdr = self.buf.get(..4)?;
        let len = (usize::from(hdr[1]) << 16) | (usize::from(hdr[2]) << 8) | usize::from(hdr[3]);
        if 4 + len > have {
            return None;
        }
        self.buf.get(..4 + len)
    }

    /// True once nothing more can be stored.
    pub fn is_full(&self) -> bool {
        self.contiguous() >= MAX_CRYPTO
    }
}

/// Builders of protected client Initials for tests (the inverse of [`open_client_initial`]).
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use aes_gcm::aead::AeadInPlace;

    /// A ClientHello (handshake message) with SNI and ALPN.
    pub(crate) fn client_hello(sni: &str, alpn: &str) -> Vec<u8> {
        let mut ext = Vec::new();
        let name = sni.as_bytes();
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        ext.extend_from_slice(&[0, 16]);
        ext.extend_from_slice(&((alpn.len() + 3) as u16).to_be_bytes());
        ext.extend_from_slice(&((alpn.len() + 1) as u16).to_be_bytes());
        ext.push(alpn.len() as u8);
        ext.extend_from_slice(alpn.as_bytes());
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0x11; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 6, 0x13, 1, 0x13, 2, 0x13, 3]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut msg = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        msg.extend_from_slice(&body);
        msg
    }

    /// Test-only inverse of [`open_client_initial`] (RFC 9001 §5.3/§5.4), padded to 1200 bytes.
    pub(crate) fn protect_client_initial(
        version: u32,
        dcid: &[u8],
        pn: u32,
        frames: &[u8],
    ) -> Vec<u8> {
        let k = client_initial_keys(version, dcid).unwrap();
        let ty = if version == VERSION_2 { 0b01 } else { 0b00 };
        let mut hdr = vec![0xc0 | (ty << 4) | 0x03];
        hdr.extend_from_slice(&version.to_be_bytes());
        hdr.push(dcid.len() as u8);
        hdr.extend_from_slice(dcid);
        hdr.push(0); // SCID len
        hdr.push(0); // token len
        let pn_offset_rel = hdr.len() + 2;
        let mut plain = frames.to_vec();
        let payload_len = 1200 - pn_offset_rel - 4 - 16;
        plain.resize(payload_len, 0); // PADDING
        let length = (4 + plain.len() + 16) as u16;
        hdr.extend_from_slice(&(0x4000 | length).to_be_bytes());
        let pn_offset = hdr.len();
        hdr.extend_from_slice(&pn.to_be_bytes());
        let mut nonce = k.iv;
        for (i, b) in pn.to_be_bytes().iter().enumerate() {
            nonce[8 + i] ^= b;
        }
        let cipher = Aes128Gcm::new(GenericArray::from_slice(&k.key));
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &hdr, &mut plain)
            .unwrap();
        let mut pkt = hdr;
        pkt.extend_from_slice(&plain);
        pkt.extend_from_slice(&tag);
        let mask = header_protection_mask(&k.hp, &pkt[pn_offset + 4..pn_offset + 20]).unwrap();
        pkt[0] ^= mask[0] & 0x0f;
        for i in 0..4 {
            pkt[pn_offset + i] ^= mask[1 + i];
        }
        pkt
    }

    pub(crate) fn crypto_frame(off: u64, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06];
        f.extend_from_slice(&(0x8000_0000u32 | off as u32).to_be_bytes());
        f.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
        f.extend_from_slice(data);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;
    use proptest::prelude::*;

    use crate::fingerprint::test_support::hex;

    const RFC_DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

    /// RFC 9001 Appendix A.1: client initial keys for DCID 0x8394c8f03e515708.
    #[test]
    fn rfc9001_a1_client_keys() {
        let k = client_initial_keys(VERSION_1, &RFC_DCID).unwrap();
        assert_eq!(
            k.secret.to_vec(),
            hex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea")
        );
        assert_eq!(k.key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(k.iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(k.hp.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
    }

    /// RFC 9369 Appendix A.1: the same DCID under QUIC v2.
    #[test]
    fn rfc9369_a1_client_keys() {
        let k = client_initial_keys(VERSION_2, &RFC_DCID).unwrap();
        assert_eq!(
            k.secret.to_vec(),
            hex("14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b")
        );
        assert_eq!(k.key.to_vec(), hex("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(k.iv.to_vec(), hex("91f73e2351d8fa91660e909f"));
        assert_eq!(k.hp.to_vec(), hex("45b95e15235d6f45a6b19cbcb0294ba9"));
    }

    /// RFC 9001 Appendix A.2: sample d1b1c98d... gives mask 437b9aec36, which turns the
    /// unprotected header c3 ... 00000002 into c0 ... 7b9aec34.
    #[test]
    fn rfc9001_a2_header_protection() {
        let k = client_initial_keys(VERSION_1, &RFC_DCID).unwrap();
        let mask = header_protection_mask(&k.hp, &hex("d1b1c98dd7689fb8ec11d242b123dc9b")).unwrap();
        assert_eq!(mask[..5].to_vec(), hex("437b9aec36"));
        assert_eq!(0xc3 ^ (mask[0] & 0x0f), 0xc0);
        let pn: Vec<u8> = [0u8, 0, 0, 2]
            .iter()
            .zip(&mask[1..5])
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(pn, hex("7b9aec34"));
    }

    #[test]
    fn roundtrip_v1_and_v2_and_sni() {
        for v in [VERSION_1, VERSION_2, VERSION_DRAFT_29] {
            let ch = client_hello("www.example.com", "h3");
            let pkt = protect_client_initial(v, &RFC_DCID, 2, &crypto_frame(0, &ch));
            let mut buf = [0u8; MAX_DATAGRAM];
            let o = open_client_initial(&pkt, None, &mut buf).unwrap();
            assert_eq!(o.version, v);
            assert_eq!(o.packet_number, 2);
            let mut s = CryptoStream::default();
            assert!(for_each_crypto_frame(&buf[..o.len], |off, d| s.insert(off, d)));
            let msg = s.first_message().unwrap();
            let facts = crate::fingerprint::facts::tls::parse_client_hello(&msg[4..]).unwrap();
            assert_eq!(facts.sni.as_deref(), Some("www.example.com"));
            assert_eq!(facts.first_alpn(), Some("h3"));
        }
    }

    #[test]
    fn tampered_packet_does_not_open() {
        let ch = client_hello("a.example", "h3");
        let mut pkt = protect_client_initial(VERSION_1, &RFC_DCID, 0, &crypto_frame(0, &ch));
        let last = pkt.len() - 1;
        pkt[last] ^= 1;
        let mut buf = [0u8; MAX_DATAGRAM];
        assert!(open_client_initial(&pkt, None, &mut buf).is_none());
        // v1 keys do not open a packet claiming v2 (wrong type bits and salt).
        let mut pkt = protect_client_initial(VERSION_1, &RFC_DCID, 0, &crypto_frame(0, &ch));
        pkt[1..5].copy_from_slice(&VERSION_2.to_be_bytes());
        assert!(open_client_initial(&pkt, None, &mut buf).is_none());
    }

    #[test]
    fn out_of_order_crypto_reassembles() {
        let ch = client_hello("split.example.org", "h3");
        let (a, b) = ch.split_at(40);
        let mut s = CryptoStream::default();
        s.insert(40, b);
        assert!(s.first_message().is_none());
        s.insert(0, a);
        assert_eq!(s.first_message().unwrap(), &ch[..]);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let mut buf = [0u8; MAX_DATAGRAM];
            let _ = open_client_initial(&bytes, None, &mut buf);
            let _ = parse_initial_header(&bytes);
            let _ = for_each_crypto_frame(&bytes, |_, _| {});
            let mut s = CryptoStream::default();
            s.insert(u64::from(bytes.first().copied().unwrap_or(0)) * 64, &bytes);
            let _ = s.first_message();
        }
    }
}
