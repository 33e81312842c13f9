//! QUIC (RFC 9000) as a browser speaks HTTP/3 over it: the client's Initial packet carrying a
//! TLS 1.3 ClientHello (SNI, ALPN `h3`, quic_transport_parameters), protected exactly as RFC
//! 9001 §5 prescribes so that any on-path observer (and tshark) can remove the protection and
//! read the SNI; the server's Initial with its ServerHello under the "server in" keys; the
//! Handshake packets whose keys an observer never has (opaque bytes behind a cleartext long
//! header); and short-header 1-RTT packets for the data exchange.
//!
//! Versions: QUIC v1 (RFC 9000/9001) and v2 (RFC 9369: other salt, labels and type bits).
//!
//! # Panics
//! Never: lengths are computed before any slice is taken, and the two operations that can fail
//! (HKDF expansion, AEAD sealing) are reported as `None`.

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};

use super::put16;
use crate::fingerprint::facts::quic::{header_protection_mask, InitialKeys};
use crate::synth::rng::Rng;

/// QUIC versions the builder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// QUIC version 1 (RFC 9000 §15: 0x00000001).
    V1,
    /// QUIC version 2 (RFC 9369 §3.1: 0x6b3343cf).
    V2,
}

impl Version {
    /// The 32-bit version field.
    pub fn wire(self) -> u32 {
        match self {
            Version::V1 => 0x0000_0001,
            Version::V2 => 0x6b33_43cf,
        }
    }

    /// Long-header type bits (RFC 9000 §17.2: Initial 0b00, Handshake 0b10; RFC 9369 §3.2:
    /// Initial 0b01, Handshake 0b11).
    fn type_bits(self, ty: PacketType) -> u8 {
        match (self, ty) {
            (Version::V1, PacketType::Initial) => 0b00,
            (Version::V1, PacketType::Handshake) => 0b10,
            (Version::V2, PacketType::Initial) => 0b01,
            (Version::V2, PacketType::Handshake) => 0b11,
        }
    }
}

/// Long-header packet types the builder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Initial,
    Handshake,
}

/// Which end's Initial secret (RFC 9001 §5.2: "client in" / "server in").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// Largest connection id (RFC 9000 §17.2).
pub const MAX_CID: usize = 20;
/// The smallest UDP payload of a datagram that carries a client Initial (RFC 9000 §14.1).
pub const MIN_INITIAL_DATAGRAM: usize = 1200;
/// AEAD_AES_128_GCM tag length (RFC 5116 §5.1).
const TAG: usize = 16;
/// Smallest short-header packet the generator writes: flags, an 8-byte connection id, and
/// the 4 bytes after the packet-number offset plus the 16-byte header-protection sample
/// (RFC 9001 §5.4.2).
pub const SHORT_MIN: usize = 1 + 8 + 4 + 16;
/// Largest short-header packet: a 1500-byte path minus IPv6 and UDP headers.
pub const SHORT_MAX: usize = 1_452;

/// A connection id of 0..=20 bytes, stored inline (so per-flow state stays `Copy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cid {
    bytes: [u8; MAX_CID],
    len: u8,
}

impl Cid {
    /// The first 20 bytes of `b`.
    pub fn new(b: &[u8]) -> Cid {
        let mut c = Cid::default();
        let n = b.len().min(MAX_CID);
        c.bytes[..n].copy_from_slice(&b[..n]);
        c.len = n as u8;
        c
    }

    /// A random id of `len` bytes (capped at 20).
    pub fn random(rng: &mut Rng, len: usize) -> Cid {
        let mut c = Cid {
            bytes: rng.bytes(),
            len: len.min(MAX_CID) as u8,
        };
        c.bytes[usize::from(c.len)..].fill(0);
        c
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Packet protection keys of one direction (RFC 9001 §5.1).
pub type Keys = InitialKeys;

/// Initial keys of `role` for a connection whose client chose `odcid` as its first
/// Destination Connection ID (RFC 9001 §5.2; RFC 9369 §3.3 for v2): the derivation the
/// tool's own decryptor uses, checked there and here against the RFCs' test vectors.
pub fn initial_keys(version: Version, odcid: &[u8], role: Role) -> Option<Keys> {
    crate::fingerprint::facts::quic::initial_keys(version.wire(), odcid, role == Role::Server)
}

/// Appends a variable-length integer in its shortest encoding (RFC 9000 §16); values above
/// 2^62-1 are capped.
pub fn put_varint(out: &mut Vec<u8>, v: u64) {
    let v = v.min((1 << 62) - 1);
    if v < 1 << 6 {
        out.push(v as u8);
    } else if v < 1 << 14 {
        out.extend_from_slice(&(0x4000 | v as u16).to_be_bytes());
    } else if v < 1 << 30 {
        out.extend_from_slice(&(0x8000_0000 | v as u32).to_be_bytes());
    } else {
        out.extend_from_slice(&(0xc000_0000_0000_0000 | v).to_be_bytes());
    }
}

/// A CRYPTO frame (RFC 9000 §19.6): type 0x06, offset, length, data.
pub fn crypto_frame(out: &mut Vec<u8>, offset: u64, data: &[u8]) {
    out.push(0x06);
    put_varint(out, offset);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// An ACK frame (RFC 9000 §19.3) acknowledging packets `largest - first_range ..= largest`,
/// without further ranges or ECN counts.
pub fn ack_frame(out: &mut Vec<u8>, largest: u64, delay: u64, first_range: u64) {
    out.push(0x02);
    put_varint(out, largest);
    put_varint(out, delay);
    put_varint(out, 0);
    put_varint(out, first_range.min(largest));
}

/// The header fields of one long-header packet.
#[derive(Debug, Clone, Copy)]
pub struct LongHeader<'a> {
    pub version: Version,
    pub ty: PacketType,
    pub dcid: &'a [u8],
    pub scid: &'a [u8],
    /// Initial packets only (RFC 9000 §17.2.2); ignored for Handshake.
    pub token: &'a [u8],
    pub pn: u32,
    /// Bytes of the encoded packet number, 1..=4.
    pub pn_len: usize,
}

/// Appends one protected long-header packet to `out` (RFC 9000 §17.2, RFC 9001 §5.3-5.4):
/// `frames` followed by PADDING frames up to a packet of `min_len` bytes (and at least enough
/// for the header-protection sample), sealed with AEAD_AES_128_GCM under `keys` (the nonce is
/// the IV XOR the packet number; the unprotected header is the associated data), then the
/// low four bits of the first byte and the packet number masked. Returns the packet's length.
pub fn protect_long(
    out: &mut Vec<u8>,
    keys: &Keys,
    h: &LongHeader<'_>,
    frames: &[u8],
    min_len: usize,
) -> Option<usize> {
    let pn_len = h.pn_len.clamp(1, 4);
    if h.dcid.len() > MAX_CID || h.scid.len() > MAX_CID {
        return None;
    }
    let start = out.len();
    let ty = h.version.type_bits(h.ty);
    out.push(0xc0 | (ty << 4) | (pn_len as u8 - 1));
    out.extend_from_slice(&h.version.wire().to_be_bytes());
    out.push(h.dcid.len() as u8);
    out.extend_from_slice(h.dcid);
    out.push(h.scid.len() as u8);
    out.extend_from_slice(h.scid);
    if h.ty == PacketType::Initial {
        put_varint(out, h.token.len() as u64);
        out.extend_from_slice(h.token);
    }
    // Length = packet number + payload + tag, written as a 2-byte varint (4 when larger).
    let before_length = out.len() - start;
    let mut plain_len = frames.len().max(4 - pn_len);
    let two_byte = before_length + 2 + pn_len + plain_len + TAG;
    if two_byte < min_len {
        plain_len += min_len - two_byte;
    }
    let length = pn_len + plain_len + TAG;
    if length < 1 << 14 {
        out.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&(0x8000_0000 | u32::try_from(length).ok()?).to_be_bytes());
    }
    let pn_offset = out.len();
    out.extend_from_slice(&h.pn.to_be_bytes()[4 - pn_len..]);
    let header_end = out.len();
    out.extend_from_slice(frames);
    out.resize(header_end + plain_len, 0); // PADDING frames are zero bytes (RFC 9000 §19.1)
    let mut nonce = keys.iv;
    for (n, p) in nonce[4..].iter_mut().zip(u64::from(h.pn).to_be_bytes()) {
        *n ^= p;
    }
    let cipher = Aes128Gcm::new(GenericArray::from_slice(&keys.key));
    let (head, body) = out.split_at_mut(header_end);
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &head[start..], body)
        .ok()?;
    out.extend_from_slice(&tag);
    let mask = header_protection_mask(&keys.hp, out.get(pn_offset + 4..pn_offset + 20)?)?;
    out[start] ^= mask[0] & 0x0f;
    for (b, m) in out[pn_offset..header_end].iter_mut().zip(&mask[1..]) {
        *b ^= m;
    }
    Some(out.len() - start)
}

/// Appends a long-header packet of exactly `len` bytes (when `len` leaves room for the
/// header) whose protected part is opaque: what an observer sees of a Handshake packet,
/// whose keys come from the TLS key exchange (RFC 9001 §4.1.4).
pub fn opaque_long(
    out: &mut Vec<u8>,
    rng: &mut Rng,
    version: Version,
    ty: PacketType,
    dcid: &[u8],
    scid: &[u8],
    len: usize,
) {
    let start = out.len();
    let [first] = rng.bytes::<1>();
    out.push(0xc0 | (version.type_bits(ty) << 4) | (first & 0x0f));
    out.extend_from_slice(&version.wire().to_be_bytes());
    out.push(dcid.len().min(MAX_CID) as u8);
    out.extend_from_slice(&dcid[..dcid.len().min(MAX_CID)]);
    out.push(scid.len().min(MAX_CID) as u8);
    out.extend_from_slice(&scid[..scid.len().min(MAX_CID)]);
    if ty == PacketType::Initial {
        out.push(0);
    }
    let header = out.len() - start + 2;
    let length = len.saturating_sub(header).clamp(1 + 4 + TAG, (1 << 14) - 1);
    out.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
    let at = out.len();
    out.resize(at + length, 0);
    rng.fill(&mut out[at..]);
}

/// Appends a short-header (1-RTT) packet of `len` bytes (RFC 9000 §17.3.1): header form 0,
/// fixed bit 1, the protected bits random as header protection leaves them, the peer's
/// connection id, then random bytes standing for the protected packet number and payload.
pub fn short_packet(out: &mut Vec<u8>, rng: &mut Rng, dcid: &Cid, len: usize) {
    let at = out.len();
    out.resize(at + len.max(1), 0);
    rng.fill(&mut out[at..]);
    out[at] = 0x40 | (out[at] & 0x3f);
    let cid = dcid.as_slice();
    let n = cid.len().min(len.saturating_sub(1));
    out[at + 1..at + 1 + n].copy_from_slice(&cid[..n]);
}

/// GREASE values (RFC 8701 §2).
const GREASE: [u16; 16] = [
    0x0A0A, 0x1A1A, 0x2A2A, 0x3A3A, 0x4A4A, 0x5A5A, 0x6A6A, 0x7A7A, 0x8A8A, 0x9A9A, 0xAAAA, 0xBABA,
    0xCACA, 0xDADA, 0xEAEA, 0xFAFA,
];

fn grease(rng: &mut Rng) -> u16 {
    GREASE[rng.below(16) as usize]
}

/// One TLS extension (RFC 8446 §4.2): type, 16-bit length, body.
fn ext(out: &mut Vec<u8>, ty: u16, body: &[u8]) {
    put16(out, ty);
    put16(out, body.len() as u16);
    out.extend_from_slice(body);
}

/// A u16 list with a 16-bit byte-length prefix.
fn u16_list(list: &[u16]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + 2 * list.len());
    put16(&mut v, (2 * list.len()) as u16);
    for x in list {
        put16(&mut v, *x);
    }
    v
}

/// A handshake message: type, 24-bit length, body (RFC 8446 §4).
fn handshake(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(4 + body.len());
    m.push(ty);
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

/// One transport parameter (RFC 9000 §18): id, length, value (all varint-prefixed).
fn param(out: &mut Vec<u8>, id: u64, value: &[u8]) {
    put_varint(out, id);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn param_int(out: &mut Vec<u8>, id: u64, v: u64) {
    let mut b = Vec::with_capacity(8);
    put_varint(&mut b, v);
    param(out, id, &b);
}

/// A browser's client transport parameters (RFC 9000 §18.2): idle timeout, UDP payload size,
/// flow-control limits, stream limits, the initial_source_connection_id that must equal the
/// Initial's SCID (§7.3), max_datagram_frame_size (RFC 9221) and a GREASE parameter
/// (id 31*N+27, §18.1).
fn transport_parameters(rng: &mut Rng, scid: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(96);
    param_int(&mut p, 0x01, 30_000); // max_idle_timeout, ms
    param_int(&mut p, 0x03, 1_472); // max_udp_payload_size
    param_int(&mut p, 0x04, 15_728_640); // initial_max_data
    param_int(&mut p, 0x05, 6_291_456); // initial_max_stream_data_bidi_local
    param_int(&mut p, 0x06, 6_291_456); // initial_max_stream_data_bidi_remote
    param_int(&mut p, 0x07, 6_291_456); // initial_max_stream_data_uni
    param_int(&mut p, 0x08, 100); // initial_max_streams_bidi
    param_int(&mut p, 0x09, 103); // initial_max_streams_uni
    param(&mut p, 0x0f, scid); // initial_source_connection_id
    param_int(&mut p, 0x20, 65_536); // max_datagram_frame_size
    let grease_id = 31 * rng.range(1, 1 << 20) + 27;
    let mut g = vec![0u8; rng.below(17) as usize];
    rng.fill(&mut g);
    param(&mut p, grease_id, &g);
    p
}

/// A QUIC ClientHello handshake message (RFC 9001 §4, §8): TLS 1.3 only, empty
/// legacy_session_id (§8.4), no padding extension (QUIC pads with frames), ALPN, the
/// quic_transport_parameters extension 0x39 (§8.2) and, like Chromium, GREASE and a random
/// extension order.
pub fn client_hello(rng: &mut Rng, sni: &str, alpn: &[&str], scid: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(512);
    put16(&mut body, 0x0303);
    body.extend_from_slice(&rng.bytes::<32>());
    body.push(0); // legacy_session_id
    let g = grease(rng);
    body.extend_from_slice(&u16_list(&[g, 0x1301, 0x1302, 0x1303]));
    body.extend_from_slice(&[1, 0]); // compression_methods: null
    let mut middle: Vec<Vec<u8>> = Vec::with_capacity(12);
    let mut e = Vec::new();
    let name = sni.as_bytes();
    let name = &name[..name.len().min(250)];
    let mut sn = Vec::with_capacity(name.len() + 5);
    put16(&mut sn, (name.len() + 3) as u16);
    sn.push(0); // host_name
    put16(&mut sn, name.len() as u16);
    sn.extend_from_slice(name);
    ext(&mut e, 0, &sn);
    middle.push(std::mem::take(&mut e));
    let g = grease(rng);
    ext(&mut e, 10, &u16_list(&[g, 0x001D, 0x0017, 0x0018]));
    middle.push(std::mem::take(&mut e));
    if !alpn.is_empty() {
        let mut b = vec![0, 0];
        for p in alpn {
            let p = &p.as_bytes()[..p.len().min(255)];
            b.push(p.len() as u8);
            b.extend_from_slice(p);
        }
        let l = (b.len() - 2) as u16;
        b[..2].copy_from_slice(&l.to_be_bytes());
        ext(&mut e, 16, &b);
        middle.push(std::mem::take(&mut e));
        // application_settings (ALPS, draft-vvv-tls-alps) for the first protocol, as Chromium.
        let first = &alpn[0].as_bytes()[..alpn[0].len().min(255)];
        let mut a = Vec::with_capacity(first.len() + 3);
        put16(&mut a, (first.len() + 1) as u16);
        a.push(first.len() as u8);
        a.extend_from_slice(first);
        ext(&mut e, 0x4469, &a);
        middle.push(std::mem::take(&mut e));
    }
    ext(&mut e, 5, &[1, 0, 0, 0, 0]); // status_request: ocsp
    middle.push(std::mem::take(&mut e));
    ext(
        &mut e,
        13,
        &u16_list(&[
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ]),
    );
    middle.push(std::mem::take(&mut e));
    ext(&mut e, 18, &[]); // signed_certificate_timestamp
    middle.push(std::mem::take(&mut e));
    let mut ks = Vec::with_capacity(48);
    put16(&mut ks, 5 + 36);
    put16(&mut ks, grease(rng));
    put16(&mut ks, 1);
    ks.push(0);
    put16(&mut ks, 0x001D); // x25519
    put16(&mut ks, 32);
    ks.extend_from_slice(&rng.bytes::<32>());
    ext(&mut e, 51, &ks);
    middle.push(std::mem::take(&mut e));
    ext(&mut e, 45, &[1, 1]); // psk_key_exchange_modes: psk_dhe_ke
    middle.push(std::mem::take(&mut e));
    let mut sv = vec![4u8];
    put16(&mut sv, grease(rng));
    put16(&mut sv, 0x0304); // TLS 1.3 only (RFC 9001 §4.2)
    ext(&mut e, 43, &sv);
    middle.push(std::mem::take(&mut e));
    ext(&mut e, 27, &[2, 0, 2]); // compress_certificate: brotli
    middle.push(std::mem::take(&mut e));
    ext(&mut e, 0x39, &transport_parameters(rng, scid));
    middle.push(std::mem::take(&mut e));
    // Chromium permutes its extensions (since M110); GREASE stays first and last.
    for i in (1..middle.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        middle.swap(i, j);
    }
    let mut exts = Vec::with_capacity(512);
    ext(&mut exts, grease(rng), &[]);
    for m in &middle {
        exts.extend_from_slice(m);
    }
    ext(&mut exts, grease(rng), &[0]);
    put16(&mut body, exts.len() as u16);
    body.extend_from_slice(&exts);
    handshake(1, &body)
}

/// A QUIC ServerHello handshake message: TLS 1.3, TLS_AES_128_GCM_SHA256, x25519, empty
/// legacy_session_id_echo (the client sent none, RFC 9001 §8.4).
pub fn server_hello(rng: &mut Rng) -> Vec<u8> {
    let mut body = Vec::with_capacity(96);
    put16(&mut body, 0x0303);
    body.extend_from_slice(&rng.bytes::<32>());
    body.push(0);
    put16(&mut body, 0x1301);
    body.push(0);
    let mut exts = Vec::with_capacity(48);
    let mut ks = Vec::with_capacity(36);
    put16(&mut ks, 0x001D);
    put16(&mut ks, 32);
    ks.extend_from_slice(&rng.bytes::<32>());
    ext(&mut exts, 51, &ks);
    ext(&mut exts, 43, &[0x03, 0x04]);
    put16(&mut body, exts.len() as u16);
    body.extend_from_slice(&exts);
    handshake(2, &body)
}

/// One QUIC connection's identities: the client's original Destination Connection ID (from
/// which both sides' Initial keys derive), the client's and the server's own connection ids.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub version: Version,
    pub odcid: Cid,
    pub client_cid: Cid,
    pub server_cid: Cid,
}

impl Conn {
    /// Fresh ids as browsers pick them: an 8-byte original DCID (sometimes longer, up to 20:
    /// RFC 9000 §7.2 asks for at least 8 unpredictable bytes), a client id of 0 (Chromium) or
    /// 8 bytes, an 8-byte server id.
    pub fn new(rng: &mut Rng, version: Version) -> Conn {
        let dlen = if rng.chance(0.8) {
            8
        } else {
            rng.range(9, 21) as usize
        };
        let clen = if rng.chance(0.6) { 0 } else { 8 };
        Conn {
            version,
            odcid: Cid::random(rng, dlen),
            client_cid: Cid::random(rng, clen),
            server_cid: Cid::random(rng, 8),
        }
    }

    /// The client's first datagram: one Initial (packet number 0) carrying the whole
    /// ClientHello in a CRYPTO frame, padded to `datagram_len` (at least 1200) bytes.
    pub fn client_initial(
        &self,
        rng: &mut Rng,
        sni: &str,
        alpn: &[&str],
        datagram_len: usize,
    ) -> Option<Vec<u8>> {
        let ch = client_hello(rng, sni, alpn, self.client_cid.as_slice());
        let mut frames = Vec::with_capacity(ch.len() + 8);
        crypto_frame(&mut frames, 0, &ch);
        let keys = initial_keys(self.version, self.odcid.as_slice(), Role::Client)?;
        let h = LongHeader {
            version: self.version,
            ty: PacketType::Initial,
            dcid: self.odcid.as_slice(),
            scid: self.client_cid.as_slice(),
            token: &[],
            pn: 0,
            pn_len: 1 + rng.below(4) as usize,
        };
        let mut out = Vec::with_capacity(datagram_len.max(MIN_INITIAL_DATAGRAM));
        protect_long(
            &mut out,
            &keys,
            &h,
            &frames,
            datagram_len.max(MIN_INITIAL_DATAGRAM),
        )?;
        Some(out)
    }

    /// The server's first flight: a datagram of `full` bytes holding its Initial (ACK of the
    /// client's packet 0 and the ServerHello) coalesced with a Handshake packet, then further
    /// Handshake datagrams until `handshake_bytes` (EncryptedExtensions, Certificate,
    /// CertificateVerify, Finished) are sent.
    pub fn server_flight(
        &self,
        rng: &mut Rng,
        handshake_bytes: usize,
        full: usize,
    ) -> Option<Vec<Vec<u8>>> {
        let full = full.clamp(MIN_INITIAL_DATAGRAM, SHORT_MAX);
        let keys = initial_keys(self.version, self.odcid.as_slice(), Role::Server)?;
        let mut frames = Vec::with_capacity(140);
        ack_frame(&mut frames, 0, rng.range(0, 200), 0);
        crypto_frame(&mut frames, 0, &server_hello(rng));
        let h = LongHeader {
            version: self.version,
            ty: PacketType::Initial,
            dcid: self.client_cid.as_slice(),
            scid: self.server_cid.as_slice(),
            token: &[],
            pn: 0,
            pn_len: 1 + rng.below(2) as usize,
        };
        let mut first = Vec::with_capacity(full);
        let initial_len = protect_long(&mut first, &keys, &h, &frames, 0)?;
        // RFC 9000 §14.1: a server datagram with an ack-eliciting Initial is at least 1200.
        let hs_room = full.saturating_sub(initial_len);
        let (dcid, scid) = (self.client_cid.as_slice(), self.server_cid.as_slice());
        opaque_long(
            &mut first,
            rng,
            self.version,
            PacketType::Handshake,
            dcid,
            scid,
            hs_room,
        );
        let mut out = vec![first];
        let mut left = handshake_bytes.saturating_sub(hs_room);
        while left > 0 {
            let len = left.clamp(80, full);
            let mut d = Vec::with_capacity(len);
            opaque_long(
                &mut d,
                rng,
                self.version,
                PacketType::Handshake,
                dcid,
                scid,
                len,
            );
            left = left.saturating_sub(len);
            out.push(d);
        }
        Some(out)
    }

    /// The client's second datagram: an Initial acknowledging the server's (padded so the
    /// datagram reaches `datagram_len`, RFC 9000 §14.1) coalesced with a Handshake packet
    /// (ACK and Finished).
    pub fn client_finished(&self, rng: &mut Rng, datagram_len: usize) -> Option<Vec<u8>> {
        let keys = initial_keys(self.version, self.odcid.as_slice(), Role::Client)?;
        let mut frames = Vec::with_capacity(8);
        ack_frame(&mut frames, 0, rng.range(0, 50), 0);
        let hs_len = rng.range(70, 110) as usize;
        let h = LongHeader {
            version: self.version,
            ty: PacketType::Initial,
            dcid: self.server_cid.as_slice(),
            scid: self.client_cid.as_slice(),
            token: &[],
            pn: 1,
            pn_len: 1,
        };
        let total = datagram_len.max(MIN_INITIAL_DATAGRAM);
        let mut out = Vec::with_capacity(total);
        protect_long(&mut out, &keys, &h, &frames, total - hs_len)?;
        opaque_long(
            &mut out,
            rng,
            self.version,
            PacketType::Handshake,
            self.server_cid.as_slice(),
            self.client_cid.as_slice(),
            hs_len,
        );
        Some(out)
    }

    /// Destination connection ids of short-header packets, indexed client then server: the
    /// client writes the server's id and the server the client's.
    pub fn short_dcids(&self) -> [Cid; 2] {
        [self.server_cid, self.client_cid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::facts::quic as facts;
    use crate::fingerprint::facts::tls::parse_client_hello;
    use crate::synth::rng::Rng;
    use proptest::prelude::*;

    use crate::fingerprint::test_support::hex;

    const RFC_DCID: &str = "8394c8f03e515708";

    /// RFC 9001 Appendix A.2: the CRYPTO frame of the client Initial (a 241-byte ClientHello).
    const A2_CRYPTO: &str = "
        060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868
        04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578
        616d706c652e636f6dff01000100000a00080006001d00170018001000070005
        04616c706e000500050100000000003300260024001d00209370b2c9caa47fba
        baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400
        0d0010000e0403050306030203080408050806002d00020101001c0002400100
        3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000
        75300901100f088394c8f03e51570806048000ffff";

    /// RFC 9001 Appendix A.2: the resulting protected 1200-byte packet.
    const A2_PACKET: &str = "
        c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11
        d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399
        1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c
        8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212
        30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5
        457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208
        4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec
        4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3
        485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db
        059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c
        7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8
        9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556
        be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74
        68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a
        c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00
        f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632
        291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964
        25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd
        14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff
        ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198
        e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd
        c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73
        203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f
        cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e
        fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade
        a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047
        90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2
        162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4
        40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0
        6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e
        8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0
        be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400
        54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab
        760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9
        f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4
        056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064
        7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241
        e221af44860018ab0856972e194cd934";

    /// RFC 9001 Appendix A.3: the server Initial's payload (ACK + CRYPTO with a ServerHello)
    /// and the protected packet (SCID f067a5502a4262b5, packet number 1 in two bytes).
    const A3_PAYLOAD: &str = "
        02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf739
        88cfc79825df566dc5430b9a045a1200130100002e00330024001d00209d3c94
        0d89690b84d08a60993c144eca684d1081287c834d5311bcf32bb9da1a002b00
        020304";
    const A3_PACKET: &str = "
        cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a
        5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3
        dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84
        022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4
        2158407dd074ee";

    #[test]
    fn rfc9001_a1_keys() {
        let c = initial_keys(Version::V1, &hex(RFC_DCID), Role::Client).unwrap();
        assert_eq!(
            c.secret.to_vec(),
            hex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea")
        );
        assert_eq!(c.key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(c.iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(c.hp.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
        let s = initial_keys(Version::V1, &hex(RFC_DCID), Role::Server).unwrap();
        assert_eq!(
            s.secret.to_vec(),
            hex("3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b")
        );
        assert_eq!(s.key.to_vec(), hex("cf3a5331653c364c88f0f379b6067e37"));
        assert_eq!(s.iv.to_vec(), hex("0ac1493ca1905853b0bba03e"));
        assert_eq!(s.hp.to_vec(), hex("c206b8d9b9f0f37644430b490eeaa314"));
    }

    /// RFC 9369 Appendix A.1: the same DCID under QUIC v2.
    #[test]
    fn rfc9369_a1_keys() {
        let c = initial_keys(Version::V2, &hex(RFC_DCID), Role::Client).unwrap();
        assert_eq!(c.key.to_vec(), hex("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(c.iv.to_vec(), hex("91f73e2351d8fa91660e909f"));
        assert_eq!(c.hp.to_vec(), hex("45b95e15235d6f45a6b19cbcb0294ba9"));
    }

    /// RFC 9001 Appendix A.2, byte for byte: packet number 2 in four bytes, no SCID, no
    /// token, the CRYPTO frame padded to a 1200-byte packet.
    #[test]
    fn rfc9001_a2_client_initial_bytes() {
        let dcid = hex(RFC_DCID);
        let keys = initial_keys(Version::V1, &dcid, Role::Client).unwrap();
        let h = LongHeader {
            version: Version::V1,
            ty: PacketType::Initial,
            dcid: &dcid,
            scid: &[],
            token: &[],
            pn: 2,
            pn_len: 4,
        };
        let mut out = Vec::new();
        let n = protect_long(&mut out, &keys, &h, &hex(A2_CRYPTO), 1200).unwrap();
        assert_eq!(n, 1200);
        assert_eq!(out, hex(A2_PACKET));
    }

    /// RFC 9001 Appendix A.3, byte for byte: the server Initial under the "server in" keys.
    #[test]
    fn rfc9001_a3_server_initial_bytes() {
        let keys = initial_keys(Version::V1, &hex(RFC_DCID), Role::Server).unwrap();
        let scid = hex("f067a5502a4262b5");
        let h = LongHeader {
            version: Version::V1,
            ty: PacketType::Initial,
            dcid: &[],
            scid: &scid,
            token: &[],
            pn: 1,
            pn_len: 2,
        };
        let mut out = vec![0xAA]; // appends after what is already there
        protect_long(&mut out, &keys, &h, &hex(A3_PAYLOAD), 0).unwrap();
        assert_eq!(out[1..], hex(A3_PACKET)[..]);
    }

    /// The crate's own decryptor opens our client Initial and reads back the SNI and ALPN.
    fn sni_through_decryptor(pkt: &[u8]) -> (Option<String>, Option<String>, u32) {
        let mut buf = [0u8; facts::MAX_DATAGRAM];
        let o = facts::open_client_initial(pkt, None, &mut buf).expect("our Initial opens");
        let mut s = facts::CryptoStream::default();
        assert!(facts::for_each_crypto_frame(&buf[..o.len], |off, d| s.insert(off, d)));
        let msg = s.first_message().expect("whole ClientHello");
        let ch = parse_client_hello(&msg[4..]).expect("ClientHello parses");
        (
            ch.sni.clone(),
            ch.first_alpn().map(str::to_string),
            o.version,
        )
    }

    #[test]
    fn client_initial_opens_in_the_crate_decryptor() {
        let mut rng = Rng::new(9);
        for (i, v) in [Version::V1, Version::V2].into_iter().enumerate() {
            let c = Conn::new(&mut rng, v);
            let want = 1200 + 50 * i;
            let pkt = c
                .client_initial(&mut rng, "rr4---sn-hju7enll.googlevideo.com", &["h3"], want)
                .unwrap();
            assert_eq!(pkt.len(), want);
            let (sni, alpn, version) = sni_through_decryptor(&pkt);
            assert_eq!(sni.as_deref(), Some("rr4---sn-hju7enll.googlevideo.com"));
            assert_eq!(alpn.as_deref(), Some("h3"));
            assert_eq!(version, v.wire());
            let h = facts::parse_initial_header(&pkt).unwrap();
            assert_eq!(h.dcid, c.odcid.as_slice());
            assert_eq!(h.scid, c.client_cid.as_slice());
        }
    }

    #[test]
    fn client_hello_carries_transport_parameters_and_no_session_id() {
        let mut rng = Rng::new(5);
        let scid = [7u8; 8];
        let ch = client_hello(&mut rng, "www.google.com", &["h3"], &scid);
        assert_eq!(ch[0], 1);
        assert_eq!(
            u32::from_be_bytes([0, ch[1], ch[2], ch[3]]) as usize,
            ch.len() - 4
        );
        assert_eq!(ch[4 + 2 + 32], 0, "empty legacy_session_id (RFC 9001 §8.4)");
        // Walk the extensions and find 0x39 with initial_source_connection_id = scid.
        let mut p = 4 + 2 + 32 + 1;
        p += 2 + u16::from_be_bytes([ch[p], ch[p + 1]]) as usize;
        p += 1 + ch[p] as usize;
        let end = p + 2 + u16::from_be_bytes([ch[p], ch[p + 1]]) as usize;
        assert_eq!(end, ch.len());
        p += 2;
        let mut tp = None;
        while p < end {
            let t = u16::from_be_bytes([ch[p], ch[p + 1]]);
            let l = u16::from_be_bytes([ch[p + 2], ch[p + 3]]) as usize;
            if t == 0x39 {
                tp = Some(ch[p + 4..p + 4 + l].to_vec());
            }
            p += 4 + l;
        }
        let tp = tp.expect("quic_transport_parameters");
        let mut q = 0;
        let mut found = false;
        while q < tp.len() {
            let (id, n) = facts::read_varint(&tp[q..]).unwrap();
            let (len, m) = facts::read_varint(&tp[q + n..]).unwrap();
            let v = &tp[q + n + m..q + n + m + len as usize];
            if id == 0x0f {
                assert_eq!(v, scid);
                found = true;
            }
            q += n + m + len as usize;
        }
        assert_eq!(q, tp.len());
        assert!(found);
    }

    #[test]
    fn server_flight_opens_with_server_keys_and_fills_datagrams() {
        let mut rng = Rng::new(11);
        let c = Conn::new(&mut rng, Version::V1);
        let flight = c.server_flight(&mut rng, 4_000, 1_350).unwrap();
        assert!(flight.len() >= 3);
        assert_eq!(flight[0].len(), 1_350, "first datagram is full size");
        assert!(flight.iter().map(Vec::len).sum::<usize>() >= 4_000);
        // Undo our own server protection with the RFC 9001 steps to read the ServerHello.
        let d = &flight[0];
        let keys = initial_keys(Version::V1, c.odcid.as_slice(), Role::Server).unwrap();
        let h = facts::parse_initial_header(d).unwrap();
        assert_eq!(h.dcid, c.client_cid.as_slice());
        assert_eq!(h.scid, c.server_cid.as_slice());
        let mask = header_protection_mask(&keys.hp, &d[h.pn_offset + 4..h.pn_offset + 20]).unwrap();
        let first = d[0] ^ (mask[0] & 0x0f);
        let pn_len = usize::from(first & 3) + 1;
        let mut pkt = d[..h.pn_offset + h.length].to_vec();
        pkt[0] = first;
        for i in 0..pn_len {
            pkt[h.pn_offset + i] ^= mask[1 + i];
        }
        let hdr_end = h.pn_offset + pn_len;
        let (aad, rest) = pkt.split_at_mut(hdr_end);
        let (ct, tag) = rest.split_at_mut(rest.len() - 16);
        Aes128Gcm::new(GenericArray::from_slice(&keys.key))
            .decrypt_in_place_detached(
                Nonce::from_slice(&keys.iv),
                aad,
                ct,
                aes_gcm::Tag::from_slice(tag),
            )
            .unwrap();
        assert_eq!(ct[0], 0x02, "ACK first");
        let mut sh = None;
        assert!(facts::for_each_crypto_frame(ct, |_, data| sh = Some(data.to_vec())));
        let sh = sh.unwrap();
        assert_eq!(sh[0], 2, "ServerHello");
        assert_eq!(&sh[4 + 2 + 32..4 + 2 + 32 + 3], &[0, 0x13, 0x01]);
        // The coalesced Handshake packet follows with the same ids.
        let hs = &d[h.pn_offset + h.length..];
        assert_eq!(hs[0] & 0xf0, 0xe0, "long header, Handshake");
        assert_eq!(&hs[1..5], &1u32.to_be_bytes());
        // The client's second datagram is a padded Initial plus a Handshake packet.
        let fin = c.client_finished(&mut rng, 1_250).unwrap();
        assert_eq!(fin.len(), 1_250);
        let mut buf = [0u8; facts::MAX_DATAGRAM];
        let o = facts::open_client_initial(&fin, Some(c.odcid.as_slice()), &mut buf).unwrap();
        assert_eq!(o.packet_number, 1);
        assert_eq!(buf[0], 0x02);
    }

    #[test]
    fn short_packets_carry_the_peer_id() {
        let mut rng = Rng::new(1);
        let c = Conn::new(&mut rng, Version::V1);
        let [to_server, _] = c.short_dcids();
        let mut out = Vec::new();
        short_packet(&mut out, &mut rng, &to_server, 1_350);
        assert_eq!(out.len(), 1_350);
        assert_eq!(out[0] & 0xc0, 0x40);
        assert_eq!(&out[1..9], c.server_cid.as_slice());
        let mut tiny = Vec::new();
        short_packet(&mut tiny, &mut rng, &to_server, 3);
        assert_eq!(tiny.len(), 3);
    }

    #[test]
    fn varints_use_the_shortest_form() {
        for (v, want) in [
            (37u64, "25"),
            (15_293, "7bbd"),
            (494_878_333, "9d7f3e7d"),
            (151_288_809_941_952_652, "c2197c5eff14e88c"),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, hex(want), "RFC 9000 §A.1 example {v}");
            assert_eq!(facts::read_varint(&out), Some((v, out.len())));
        }
    }

    proptest! {
        #[test]
        fn any_sni_alpn_dcid_round_trips(
            sni in "[a-z0-9][a-z0-9.-]{0,120}",
            alpn in "[a-z0-9/.]{1,20}",
            dlen in 8usize..=20,
            clen in 0usize..=20,
            dgram in 1200usize..1452,
            seed in any::<u64>(),
        ) {
            let mut rng = Rng::new(seed);
            let c = Conn {
                version: if seed % 2 == 0 { Version::V1 } else { Version::V2 },
                odcid: Cid::random(&mut rng, dlen),
                client_cid: Cid::random(&mut rng, clen),
                server_cid: Cid::random(&mut rng, 8),
            };
            let pkt = c.client_initial(&mut rng, &sni, &[alpn.as_str()], dgram).unwrap();
            prop_assert!(pkt.len() >= 1200);
            prop_assert_eq!(pkt.len(), dgram);
            let (got_sni, got_alpn, _) = sni_through_decryptor(&pkt);
            prop_assert_eq!(got_sni.as_deref(), Some(sni.as_str()));
            prop_assert_eq!(got_alpn.as_deref(), Some(alpn.as_str()));
            let flight = c.server_flight(&mut rng, (seed % 6_000) as usize, dgram).unwrap();
            prop_assert!(flight.iter().all(|d| !d.is_empty() && d.len() <= SHORT_MAX));
            let fin = c.client_finished(&mut rng, dgram).unwrap();
            prop_assert_eq!(fin.len(), dgram);
        }
    }
}
