//! TLS facts shared by the TLS, Tor, QUIC and TLS-in-TLS detectors: the record layer
//! (RFC 8446 §5.1, RFC 5246 §6.2), ClientHello / ServerHello facts (RFC 8446 §4.1.2-4.1.3),
//! the JA4 client fingerprint (FoxIO's published JA4 definition) and the names in a TLS 1.2
//! plaintext Certificate message (RFC 5246 §7.4.2) read from X.509 DER (RFC 5280 §4.1).
//!
//! Contract: every function takes untrusted bytes and never panics; a parse that cannot finish
//! returns `None` (or stops and says so), never a partial value that looks complete. Buffers are
//! bounded by [`MAX_BUFFER`]: a message larger than that is not reassembled.

use sha2::{Digest, Sha256};

/// Upper bound of the bytes a [`TlsRecordBuffer`] keeps (handshake stream and a partial
/// record header), per direction.
pub const MAX_BUFFER: usize = 16 * 1024;

/// TLS record content types (RFC 8446 §5.1, RFC 5246 §6.2.1).
pub mod content_type {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
}

/// Handshake message types (RFC 8446 §4, RFC 5246 §7.4).
pub mod handshake_type {
    pub const CLIENT_HELLO: u8 = 1;
    pub const SERVER_HELLO: u8 = 2;
    pub const CERTIFICATE: u8 = 11;
    pub const SERVER_HELLO_DONE: u8 = 14;
}

/// Extension code points used here (IANA "TLS ExtensionType Values").
pub mod extension {
    pub const SERVER_NAME: u16 = 0x0000;
    pub const SUPPORTED_GROUPS: u16 = 0x000a;
    pub const SIGNATURE_ALGORITHMS: u16 = 0x000d;
    pub const ALPN: u16 = 0x0010;
    pub const SUPPORTED_VERSIONS: u16 = 0x002b;
    pub const QUIC_TRANSPORT_PARAMETERS: u16 = 0x0039;
    pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
}

/// Largest record body allowed: 2^14 plaintext + 2048 expansion (RFC 5246 §6.2.3); TLS 1.3
/// allows 2^14 + 256 (RFC 8446 §5.2), so this bound covers both.
pub const MAX_RECORD_LEN: u16 = 16384 + 2048;

/// GREASE values (RFC 8701 §2): both bytes equal and of the form 0x?A.
pub fn is_grease(v: u16) -> bool {
    let [hi, lo] = v.to_be_bytes();
    hi == lo && lo & 0x0f == 0x0a
}

/// A TLS record header: `type(1) version(2) length(2)` (RFC 8446 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub content_type: u8,
    pub version: u16,
    pub length: u16,
}

/// Parses and validates a record header at the start of `b`: content type 20-23, version
/// 0x0300-0x0304 (SSL 3.0 to TLS 1.3 legacy_record_version), length 1..=[`MAX_RECORD_LEN`].
pub fn parse_record_header(b: &[u8]) -> Option<RecordHeader> {
    let h = b.get(..5)?;
    let content_type = h[0];
    let version = u16::from_be_bytes([h[1], h[2]]);
    let length = u16::from_be_bytes([h[3], h[4]]);
    let ok = (content_type::CHANGE_CIPHER_SPEC..=content_type::APPLICATION_DATA)
        .contains(&content_type)
        && (0x0300..=0x0304).contains(&version)
        && length > 0
        && length <= MAX_RECORD_LEN;
    ok.then_some(RecordHeader {
        content_type,
        version,
        length,
    })
}

/// Why a byte stream stopped being TLS records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// A record header failed [`parse_record_header`].
    BadHeader,
}

/// How many application-data record lengths a [`TlsRecordBuffer`] remembers.
pub const RECORD_LENGTHS_KEPT: usize = 24;

/// Reassembles one direction of a TLS byte stream from TCP segments: follows record
/// boundaries across segments, copies the plaintext handshake stream (up to [`MAX_BUFFER`]
/// bytes) and remembers the lengths of the first application-data records. Records after a
/// ChangeCipherSpec are encrypted and no longer copied.
#[derive(Debug, Clone, Default)]
pub struct TlsRecordBuffer {
    header: [u8; 5],
    header_len: usize,
    body_type: u8,
    body_remaining: usize,
    handshake: Vec<u8>,
    /// Handshake bytes that did not fit in [`MAX_BUFFER`].
    pub truncated: bool,
    /// A ChangeCipherSpec record was seen: later handshake records are encrypted.
    pub encrypted: bool,
    /// Complete record headers seen.
    pub records: u32,
    /// Version field of the first record.
    pub first_record_version: Option<u16>,
    /// Content type of the first record.
    pub first_content_type: Option<u8>,
    /// Content types seen, as a bit set (bit `type - 20`).
    pub content_types: u8,
    app_lengths: [u16; RECORD_LENGTHS_KEPT],
    app_count: usize,
    error: Option<RecordError>,
}

impl TlsRecordBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next TCP payload of this direction. Returns the error once the stream is not
    /// TLS records (and on every later call).
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), RecordError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        while !bytes.is_empty() {
            if self.body_remaining > 0 {
                let take = self.body_remaining.min(bytes.len());
                let (chunk, rest) = bytes.split_at(take);
                if self.body_type == content_type::HANDSHAKE && !self.encrypted {
                    let room = MAX_BUFFER.saturating_sub(self.handshake.len());
                    let keep = chunk.len().min(room);
                    self.handshake.extend_from_slice(&chunk[..keep]);
                    if keep < chunk.len() {
                        self.truncated = true;
                    }
                }
                self.body_remaining -= take;
                bytes = rest;
                continue;
            }
            let need = 5 - self.header_len;
            let take = need.min(bytes.len());
            let (chunk, rest) = bytes.split_at(take);
            self.header[self.header_len..self.header_len + take].copy_from_slice(chunk);
            self.header_len += take;
            bytes = rest;
            if self.header_len < 5 {
                break;
            }
            self.header_len = 0;
            let Some(h) = parse_record_header(&self.header) else {
                self.error = Some(RecordError::BadHeader);
                return Err(RecordError::BadHeader);
            };
            self.records = self.records.saturating_add(1);
            self.first_record_version.get_or_insert(h.version);
            self.first_content_type.get_or_insert(h.content_type);
            self.content_types |= 1 << (h.content_type - content_type::CHANGE_CIPHER_SPEC);
            self.body_type = h.content_type;
            self.body_remaining = usize::from(h.length);
            if h.content_type == content_type::HANDSHAKE && !self.encrypted {
                // One allocation per record instead of doubling through a certificate chain.
                let room = MAX_BUFFER.saturating_sub(self.handshake.len());
                self.handshake.reserve(self.body_remaining.min(room));
            }
            match h.content_type {
                content_type::CHANGE_CIPHER_SPEC => self.encrypted = true,
                content_type::APPLICATION_DATA => {
                    if let Some(slot) = self.app_lengths.get_mut(self.app_count) {
                        *slot = h.length;
                        self.app_count += 1;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// True once a record header failed validation.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// True when the bytes fed so far end exactly at a record boundary.
    pub fn at_record_boundary(&self) -> bool {
        self.header_len == 0 && self.body_remaining == 0
    }

    /// The plaintext handshake stream received so far.
    pub fn handshake_bytes(&self) -> &[u8] {
        &self.handshake
    }

    /// Complete handshake messages in order, as `(type, body)`.
    pub fn handshake_messages(&self) -> HandshakeMessages<'_> {
        HandshakeMessages {
            rest: &self.handshake,
        }
    }

    /// The first complete handshake message of type `ty`.
    pub fn find_handshake(&self, ty: u8) -> Option<&[u8]> {
        self.handshake_messages()
            .find(|(t, _)| *t == ty)
            .map(|(_, b)| b)
    }

    /// Lengths of the first application-data records (at most [`RECORD_LENGTHS_KEPT`]).
    pub fn app_data_lengths(&self) -> &[u16] {
        &self.app_lengths[..self.app_count]
    }
}

/// Iterator over `msg_type(1) length(3) body` handshake messages (RFC 8446 §4); stops at the
/// first incomplete one.
#[derive(Debug, Clone)]
pub struct HandshakeMessages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HandshakeMessages<'a> {
    type Item = (u8, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (ty, body, rest) = split_handshake(self.rest)?;
        self.rest = rest;
        Some((ty, body))
    }
}

/// Splits one handshake message off `b`: `(type, body, rest)`.
pub fn split_handshake(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let ty = *b.first()?;
    let len = read_u24(b.get(1..4)?)?;
    let body = b.get(4..4 + len)?;
    Some((ty, body, b.get(4 + len..)?))
}

fn read_u24(b: &[u8]) -> Option<usize> {
    match b {
        [a, c, d] => Some((usize::from(*a) << 16) | (usize::from(*c) << 8) | usize::from(*d)),
        _ => None,
    }
}

/// A cursor over bytes whose reads fail instead of panicking.
#[derive(Debug, Clone, Copy)]
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (v, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*v)
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (v, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(v)
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn u16_list(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// Room in `types` for the extensions of a hello's extension `block`: at most one per 4 bytes
/// (type and length, RFC 8446 §4.2), capped at 24 (browsers send 10 to 20). Pushed into an
/// empty list they grew by doubling, each a `realloc`, which on several threads locks an
/// allocator arena.
fn reserve_extension_types(types: &mut Vec<u16>, block: &[u8]) {
    types.reserve((block.len() / 4).min(24));
}

/// Facts of a ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHelloFacts {
    /// `legacy_version` (0x0303 for TLS 1.2 and 1.3).
    pub legacy_version: u16,
    pub session_id_len: u8,
    /// Cipher suites in order, GREASE included.
    pub cipher_suites: Vec<u16>,
    /// Extension types in order, GREASE included.
    pub extensions: Vec<u16>,
    /// server_name host_name (RFC 6066 §3), when valid ASCII.
    pub sni: Option<String>,
    /// ALPN protocol names in order (RFC 7301 §3.1), lossy UTF-8.
    pub alpn: Vec<String>,
    /// supported_versions (RFC 8446 §4.2.1), GREASE included.
    pub supported_versions: Vec<u16>,
    /// signature_algorithms in order (RFC 8446 §4.2.3).
    pub signature_algorithms: Vec<u16>,
    /// supported_groups in order (RFC 8446 §4.2.7).
    pub supported_groups: Vec<u16>,
}

/// Parses a ClientHello handshake body (after the 4-byte handshake header):
/// `legacy_version(2) random(32) session_id<0..32> cipher_suites<2..2^16-2>
/// compression_methods<1..2^8-1> extensions<8..2^16-1>`. Extensions are optional before TLS 1.3.
pub fn parse_client_hello(body: &[u8]) -> Option<ClientHelloFacts> {
    parse_hello_body(body, false)
}

/// Parses a DTLS ClientHello body (after the 12-byte DTLS handshake header, RFC 6347 §4.2.2):
/// as TLS, with a `cookie<0..2^8-1>` after the session id (RFC 6347 §4.2.1).
pub fn parse_dtls_client_hello(body: &[u8]) -> Option<ClientHelloFacts> {
    parse_hello_body(body, true)
}

fn parse_hello_body(body: &[u8], dtls: bool) -> Option<ClientHelloFacts> {
    let mut r = Reader(body);
    let legacy_version = r.u16()?;
    // DTLS 0x0100 is OpenSSL's DTLS1_BAD_VER, the pre-RFC DTLS that Cisco AnyConnect speaks.
    let dtls_ok = dtls && ((0xfefc..=0xfeff).contains(&legacy_version) || legacy_version == 0x0100);
    if !(0x0300..=0x0304).contains(&legacy_version) && !dtls_ok {
        return None;
    }
    r.take(32)?;
    let sid = r.vec8()?;
    if sid.len() > 32 {
        return None;
    }
    if dtls {
        r.vec8()?;
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return None;
    }
    let comp = r.vec8()?;
    if comp.is_empty() {
        return None;
    }
    let mut facts = ClientHelloFacts {
        legacy_version,
        session_id_len: sid.len() as u8,
        cipher_suites: u16_list(suites),
        ..ClientHelloFacts::default()
    };
    if r.is_empty() {
        return Some(facts);
    }
    let mut exts = Reader(r.vec16()?);
    reserve_extension_types(&mut facts.extensions, exts.0);
    while !exts.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        facts.extensions.push(ty);
        match ty {
            extension::SERVER_NAME => facts.sni = parse_sni(data),
            extension::ALPN => facts.alpn = parse_alpn(data).unwrap_or_default(),
            extension::SUPPORTED_VERSIONS => {
                let mut d = Reader(data);
                if let Some(list) = d.vec8() {
                    facts.supported_versions = u16_list(list);
                }
            }
            extension::SIGNATURE_ALGORITHMS => {
                if let Some(list) = Reader(data).vec16() {
                    facts.signature_algorithms = u16_list(list);
                }
            }
            extension::SUPPORTED_GROUPS => {
                if let Some(list) = Reader(data).vec16() {
                    facts.supported_groups = u16_list(list);
                }
            }
            _ => {}
        }
    }
    Some(facts)
}

/// `server_name_list<1..2^16-1>` of `name_type(1) HostName<1..2^16-1>`; the first host_name (0).
/// The server name of a ClientHello body of which only the start was captured (a snap length
/// cut it): the fixed fields and vectors are walked as [`parse_client_hello`] walks them, then
/// the extensions one by one while they are whole among the kept bytes; the server_name
/// extension (RFC 6066 §3) is read if it is one of them. `None` when the name is not among the
/// kept bytes or the fields before it do not parse.
pub fn client_hello_sni_prefix(body: &[u8]) -> Option<String> {
    let mut r = Reader(body);
    let legacy_version = r.u16()?;
    if !(0x0300..=0x0304).contains(&legacy_version) {
        return None;
    }
    r.take(32)?;
    if r.vec8()?.len() > 32 {
        return None;
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 || r.vec8()?.is_empty() {
        return None;
    }
    // The extensions' total length says how far they go on the wire; they are read as far as
    // they were kept.
    r.u16()?;
    loop {
        let ty = r.u16()?;
        let data = r.vec16()?;
        if ty == extension::SERVER_NAME {
            return parse_sni(data);
        }
    }
}

fn parse_sni(data: &[u8]) -> Option<String> {
    let mut list = Reader(Reader(data).vec16()?);
    while !list.is_empty() {
        let ty = list.u8()?;
        let name = list.vec16()?;
        if ty == 0 {
            let ok = !name.is_empty() && name.iter().all(|c| c.is_ascii_graphic());
            return ok.then(|| String::from_utf8_lossy(name).to_ascii_lowercase());
        }
    }
    None
}

/// `ProtocolNameList protocol_name_list<2..2^16-1>` of `opaque ProtocolName<1..2^8-1>`.
fn parse_alpn(data: &[u8]) -> Option<Vec<String>> {
    let mut list = Reader(Reader(data).vec16()?);
    let mut out = Vec::new();
    while !list.is_empty() {
        let name = list.vec8()?;
        out.push(String::from_utf8_lossy(name).into_owned());
    }
    Some(out)
}

/// Which carrier a JA4 string describes (first character of JA4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ja4Transport {
    /// `t`: TLS over TCP.
    Tcp,
    /// `q`: QUIC.
    Quic,
    /// `d`: DTLS.
    Dtls,
}

impl ClientHelloFacts {
    /// Highest non-GREASE supported_versions entry, else `legacy_version`.
    pub fn max_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or(self.legacy_version)
    }

    /// The first ALPN value, if any.
    pub fn first_alpn(&self) -> Option<&str> {
        self.alpn.first().map(String::as_str)
    }

    /// True when the ClientHello offers the encrypted_client_hello extension (0xfe0d).
    pub fn has_ech(&self) -> bool {
        self.extensions.contains(&extension::ENCRYPTED_CLIENT_HELLO)
    }

    /// The JA4 fingerprint `a_b_c` per FoxIO's JA4 definition:
    /// a = transport (t/q/d), 2-char version (highest supported_versions else legacy_version),
    /// `d` when SNI present else `i`, cipher count and extension count (2 digits each, GREASE
    /// ignored, capped at 99), first and last character of the first ALPN value (`00` if none);
    /// b = first 12 hex of sha256 over the sorted non-GREASE cipher suites (`%04x`, comma
    /// separated); c = first 12 hex of sha256 over the sorted non-GREASE extensions without SNI
    /// (0000) and ALPN (0010), then `_` and the signature algorithms in original order (the `_`
    /// part is left out when there are none). Empty lists hash to `000000000000`.
    pub fn ja4(&self, transport: Ja4Transport) -> String {
        let proto = match transport {
            Ja4Transport::Tcp => 't',
            Ja4Transport::Quic => 'q',
            Ja4Transport::Dtls => 'd',
        };
        let version = match self.max_version() {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            0x0002 => "s2",
            0xfeff => "d1",
            0xfefd => "d2",
            0xfefc => "d3",
            _ => "00",
        };
        let sni = if self.extensions.contains(&extension::SERVER_NAME) {
            'd'
        } else {
            'i'
        };
        // Lists sized up front (a filtered `collect` grows by `realloc`): this runs for every
        // TLS flow.
        let mut ciphers: Vec<u16> = Vec::with_capacity(self.cipher_suites.len());
        ciphers.extend(
            self.cipher_suites
                .iter()
                .copied()
                .filter(|c| !is_grease(*c)),
        );
        let ext_count = self
            .extensions
            .iter()
            .filter(|e| !is_grease(**e))
            .count()
            .min(99);
        let alpn = ja4_alpn(self.alpn.first().map(String::as_bytes));
        ciphers.sort_unstable();
        let b = truncated_sha256(&hex_list(&ciphers), ciphers.is_empty());
        let mut exts: Vec<u16> = Vec::with_capacity(self.extensions.len());
        exts.extend(
            self.extensions.iter().copied().filter(|e| {
                !is_grease(*e) && *e != extension::SERVER_NAME && *e != extension::ALPN
            }),
        );
        exts.sort_unstable();
        let mut c_input = String::with_capacity((exts.len() + self.signature_algorithms.len()) * 5);
        push_hex_list(&mut c_input, &exts);
        if !self.signature_algorithms.is_empty() {
            c_input.push('_');
            push_hex_list(&mut c_input, &self.signature_algorithms);
        }
        let c = truncated_sha256(&c_input, exts.is_empty());
        format!(
            "{proto}{version}{sni}{:02}{:02}{alpn}_{b}_{c}",
            ciphers.len().min(99),
            ext_count
        )
    }
}

/// First and last character of the first ALPN value; when either is not ASCII alphanumeric,
/// the first hex digit of the first byte and the last hex digit of the last byte.
fn ja4_alpn(first: Option<&[u8]>) -> String {
    match first {
        Some([f, .., l]) | Some([f @ l]) => {
            if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
                format!("{}{}", char::from(*f), char::from(*l))
            } else {
                let fh = format!("{f:02x}");
                let lh = format!("{l:02x}");
                format!("{}{}", &fh[..1], &lh[1..])
            }
        }
        _ => "00".to_string(),
    }
}

/// `%04x` of each value, comma separated.
fn hex_list(v: &[u16]) -> String {
    let mut out = String::with_capacity(v.len() * 5);
    push_hex_list(&mut out, v);
    out
}

/// Appends [`hex_list`] of `v` to `out`. Written nibble by nibble: JA4 is computed for every
/// TLS flow, and one `format!` per list entry was the largest cost of a TLS verdict.
fn push_hex_list(out: &mut String, v: &[u16]) {
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for shift in [12u16, 8, 4, 0] {
            out.push(hex_digit(x >> shift));
        }
    }
}

/// The lowercase hex digit of the low nibble of `n`.
fn hex_digit(n: u16) -> char {
    char::from_digit(u32::from(n & 0xf), 16).unwrap_or('0')
}

fn truncated_sha256(s: &str, empty: bool) -> String {
    if empty {
        return "000000000000".to_string();
    }
    let digest = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(12);
    for b in digest.iter().take(6) {
        out.push(hex_digit(u16::from(*b >> 4)));
        out.push(hex_digit(u16::from(*b)));
    }
    out
}

/// Facts of a ServerHello (RFC 8446 §4.1.3, RFC 5246 §7.4.1.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerHelloFacts {
    pub legacy_version: u16,
    pub session_id_len: u8,
    pub cipher_suite: u16,
    pub extensions: Vec<u16>,
    /// selected_version from supported_versions (RFC 8446 §4.2.1).
    pub selected_version: Option<u16>,
    /// The ALPN protocol the server chose.
    pub alpn: Option<String>,
}

impl ServerHelloFacts {
    /// The negotiated version: selected_version, else legacy_version.
    pub fn version(&self) -> u16 {
        self.selected_version.unwrap_or(self.legacy_version)
    }
}

/// Parses a ServerHello body: `legacy_version(2) random(32) session_id<0..32>
/// cipher_suite(2) compression(1) extensions<0..2^16-1>` (extensions optional before TLS 1.3).
pub fn parse_server_hello(body: &[u8]) -> Option<ServerHelloFacts> {
    let mut r = Reader(body);
    let legacy_version = r.u16()?;
    if !(0x0300..=0x0304).contains(&legacy_version) && !(0xfefc..=0xfeff).contains(&legacy_version)
    {
        return None;
    }
    r.take(32)?;
    let sid = r.vec8()?;
    if sid.len() > 32 {
        return None;
    }
    let cipher_suite = r.u16()?;
    r.u8()?;
    let mut facts = ServerHelloFacts {
        legacy_version,
        session_id_len: sid.len() as u8,
        cipher_suite,
        ..ServerHelloFacts::default()
    };
    if r.is_empty() {
        return Some(facts);
    }
    let mut exts = Reader(r.vec16()?);
    reserve_extension_types(&mut facts.extensions, exts.0);
    while !exts.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        facts.extensions.push(ty);
        match ty {
            extension::SUPPORTED_VERSIONS => {
                facts.selected_version = Reader(data).u16();
            }
            extension::ALPN => facts.alpn = parse_alpn(data).and_then(|v| v.into_iter().next()),
            _ => {}
        }
    }
    Some(facts)
}

/// The DER certificates of a TLS 1.2 Certificate body (RFC 5246 §7.4.2):
/// `certificate_list<0..2^24-1>` of `ASN.1Cert<1..2^24-1>`. Returns the complete ones in order
/// (the sender's own certificate first).
pub fn parse_certificate_list(body: &[u8]) -> Option<Vec<&[u8]>> {
    let total = read_u24(body.get(..3)?)?;
    let mut rest = body.get(3..3 + total)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = read_u24(rest.get(..3)?)?;
        let cert = rest.get(3..3 + len)?;
        out.push(cert);
        rest = rest.get(3 + len..)?;
    }
    Some(out)
}

/// Names and validity of one X.509 certificate (RFC 5280 §4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Subject commonName values (2.5.4.3).
    pub subject_cn: Vec<String>,
    /// Subject organizationName values (2.5.4.10).
    pub subject_o: Vec<String>,
    /// Subject organizationalUnitName values (2.5.4.11).
    pub subject_ou: Vec<String>,
    pub issuer_cn: Vec<String>,
    pub issuer_o: Vec<String>,
    pub issuer_ou: Vec<String>,
    /// Attribute count of subject and issuer (all RDNs).
    pub subject_attributes: usize,
    pub issuer_attributes: usize,
    /// subjectAltName dNSName entries (2.5.29.17, GeneralName `[2]`).
    pub san_dns: Vec<String>,
    /// Subject and issuer Names are byte-identical (self-issued, RFC 5280 §3.2).
    pub self_issued: bool,
    /// Validity times as written (`YYMMDDHHMMSSZ` or `YYYYMMDDHHMMSSZ`).
    pub not_before: String,
    pub not_after: String,
    /// Number of extensions.
    pub extension_count: usize,
}

impl CertificateFacts {
    /// Every DNS-like name: subject CNs then SAN dNSNames.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.subject_cn
            .iter()
            .chain(self.san_dns.iter())
            .map(String::as_str)
    }

    /// Validity starts at 00:00:00 and ends at 23:59:59 (whole days), as Tor's link
    /// certificates do.
    pub fn validity_whole_days(&self) -> bool {
        time_of_day(&self.not_before) == Some("000000")
            && time_of_day(&self.not_after) == Some("235959")
    }
}

/// `HHMMSS` of a UTCTime / GeneralizedTime string ending in `Z`.
fn time_of_day(t: &str) -> Option<&str> {
    let t = t.strip_suffix('Z')?;
    let start = t.len().checked_sub(6)?;
    t.get(start..)
}

/// One DER TLV (X.690 §8.1): single-byte tags, definite lengths up to 4 length bytes.
/// Returns `(tag, content, rest)`.
pub fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // multi-byte tag numbers do not occur in the fields read here
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, r) = rest.split_at_checked(n)?;
        rest = r;
        bytes
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x))
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// Iterates the TLVs inside a constructed value; stops at the first malformed one.
fn der_children(mut b: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, content, rest) = der_tlv(b)?;
        b = rest;
        Some((tag, content))
    })
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];
const OID_OU: &[u8] = &[0x55, 0x04, 0x0b];
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

#[derive(Default)]
struct NameParts {
    cn: Vec<String>,
    o: Vec<String>,
    ou: Vec<String>,
    count: usize,
}

/// `Name ::= SEQUENCE OF RelativeDistinguishedName`, `RDN ::= SET OF AttributeTypeAndValue`,
/// `AttributeTypeAndValue ::= SEQUENCE { type OID, value ANY }` (RFC 5280 §4.1.2.4).
fn parse_name(content: &[u8]) -> NameParts {
    let mut parts = NameParts::default();
    for (tag, rdn) in der_children(content) {
        if tag != TAG_SET {
            continue;
        }
        for (tag, atv) in der_children(rdn) {
            if tag != TAG_SEQUENCE {
                continue;
            }
            let mut it = der_children(atv);
            let (Some((TAG_OID, oid)), Some((_, value))) = (it.next(), it.next()) else {
                continue;
            };
            parts.count += 1;
            let text = || String::from_utf8_lossy(value).into_owned();
            match oid {
                OID_CN => parts.cn.push(text()),
                OID_O => parts.o.push(text()),
                OID_OU => parts.ou.push(text()),
                _ => {}
            }
        }
    }
    parts
}

/// Reads the names of a DER certificate:
/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }`,
/// `TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
/// validity, subject, subjectPublicKeyInfo, [1] [2] unique ids OPTIONAL, [3] extensions
/// OPTIONAL }` (RFC 5280 §4.1).
pub fn parse_certificate(der: &[u8]) -> Option<CertificateFacts> {
    let (TAG_SEQUENCE, cert, _) = der_tlv(der)? else {
        return None;
    };
    let (TAG_SEQUENCE, tbs, _) = der_tlv(cert)? else {
        return None;
    };
    let mut fields = der_children(tbs).peekable();
    if fields.peek().map(|(t, _)| *t) == Some(0xa0) {
        fields.next();
    }
    let (0x02, _serial) = fields.next()? else {
        return None;
    };
    let (TAG_SEQUENCE, _sig) = fields.next()? else {
        return None;
    };
    let (TAG_SEQUENCE, issuer) = fields.next()? else {
        return None;
    };
    let (TAG_SEQUENCE, validity) = fields.next()? else {
        return None;
    };
    let (TAG_SEQUENCE, subject) = fields.next()? else {
        return None;
    };
    let (TAG_SEQUENCE, _spki) = fields.next()? else {
        return None;
    };
    let mut times = der_children(validity).map(|(_, t)| String::from_utf8_lossy(t).into_owned());
    let not_before = times.next().unwrap_or_default();
    let not_after = times.next().unwrap_or_default();
    let s = parse_name(subject);
    let i = parse_name(issuer);
    let mut facts = CertificateFacts {
        subject_cn: s.cn,
        subject_o: s.o,
        subject_ou: s.ou,
        issuer_cn: i.cn,
        issuer_o: i.o,
        issuer_ou: i.ou,
        subject_attributes: s.count,
        issuer_attributes: i.count,
        self_issued: subject == issuer,
        not_before,
        not_after,
        ..CertificateFacts::default()
    };
    for (tag, content) in fields {
        if tag != 0xa3 {
            continue;
        }
        let Some((TAG_SEQUENCE, exts, _)) = der_tlv(content) else {
            continue;
        };
        for (tag, ext) in der_children(exts) {
            if tag != TAG_SEQUENCE {
                continue;
            }
            facts.extension_count += 1;
            let mut it = der_children(ext);
            let Some((TAG_OID, oid)) = it.next() else {
                continue;
            };
            if oid != OID_SAN {
                continue;
            }
            // Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
            let Some((_, value)) = it.find(|(t, _)| *t == 0x04) else {
                continue;
            };
            let Some((TAG_SEQUENCE, names, _)) = der_tlv(value) else {
                continue;
            };
            for (tag, name) in der_children(names) {
                if tag == 0x82 && facts.san_dns.len() < 64 {
                    facts
                        .san_dns
                        .push(String::from_utf8_lossy(name).to_ascii_lowercase());
                }
            }
        }
    }
    Some(facts)
}

/// What a [`TlsHandshakeTracker`] makes of the flow so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// The bytes are not a TLS handshake.
    NotTls,
    /// Still waiting for hello or certificate bytes.
    NeedMore,
    /// ClientHello and ServerHello are known, and the server's plaintext flight is read as far
    /// as it goes (its Certificate for TLS <= 1.2; TLS 1.3 encrypts the rest).
    Complete,
}

/// Follows both directions of a TLS-over-TCP handshake: record reassembly per direction,
/// ClientHello, ServerHello and the server's leaf certificate. Directions are indexes:
/// 0 = to server, 1 = to client (`Direction::index`). The side that sends the ClientHello is
/// the TLS client even when it is index 1 (capture began after the SYN).
#[derive(Debug, Clone, Default)]
pub struct TlsHandshakeTracker {
    bufs: [TlsRecordBuffer; 2],
    client_dir: Option<usize>,
    pub client_hello: Option<ClientHelloFacts>,
    pub server_hello: Option<ServerHelloFacts>,
    /// Number of certificates in the server's Certificate message.
    pub chain_len: Option<usize>,
    /// The server's own (first) certificate.
    pub server_certificate: Option<CertificateFacts>,
}

impl TlsHandshakeTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The record buffer of direction `dir` (0 to server, 1 to client).
    pub fn buffer(&self, dir: usize) -> Option<&TlsRecordBuffer> {
        self.bufs.get(dir)
    }

    /// The record buffer of the TLS server's direction, once the client is known.
    pub fn server_buffer(&self) -> Option<&TlsRecordBuffer> {
        self.bufs.get(1 - self.client_dir?)
    }

    /// The record buffer of the TLS client's direction, once the client is known.
    pub fn client_buffer(&self) -> Option<&TlsRecordBuffer> {
        self.bufs.get(self.client_dir?)
    }

    /// The ClientHello came from the flow's server side (index 1).
    pub fn roles_reversed(&self) -> bool {
        self.client_dir == Some(1)
    }

    /// Feeds one TCP payload of direction `dir` and says where the handshake stands.
    pub fn push(&mut self, dir: usize, bytes: &[u8]) -> HandshakeStatus {
        let Some(buf) = self.bufs.get_mut(dir) else {
            return HandshakeStatus::NotTls;
        };
        let pushed = buf.push(bytes);
        if self.client_hello.is_none() {
            if pushed.is_err()
                || buf
                    .first_content_type
                    .is_some_and(|t| t != content_type::HANDSHAKE)
            {
                return HandshakeStatus::NotTls;
            }
            match buf.handshake_messages().next() {
                Some((handshake_type::CLIENT_HELLO, body)) => match parse_client_hello(body) {
                    Some(ch) => {
                        self.client_hello = Some(ch);
                        self.client_dir = Some(dir);
                    }
                    None => return HandshakeStatus::NotTls,
                },
                Some((handshake_type::SERVER_HELLO, _)) => {}
                Some(_) => return HandshakeStatus::NotTls,
                None if buf.truncated => return HandshakeStatus::NotTls,
                None => {}
            }
        }
        self.update_server_side();
        if self.is_complete() {
            HandshakeStatus::Complete
        } else {
            HandshakeStatus::NeedMore
        }
    }

    fn update_server_side(&mut self) {
        let Some(client_dir) = self.client_dir else {
            return;
        };
        let Some(server) = self.bufs.get(1 - client_dir) else {
            return;
        };
        if self.server_hello.is_none() {
            self.server_hello = server
                .find_handshake(handshake_type::SERVER_HELLO)
                .and_then(parse_server_hello);
        }
        let tls13 = self
            .server_hello
            .as_ref()
            .is_some_and(|sh| sh.version() >= 0x0304);
        if self.server_hello.is_some() && !tls13 && self.chain_len.is_none() {
            if let Some(list) = server
                .find_handshake(handshake_type::CERTIFICATE)
                .and_then(parse_certificate_list)
            {
                self.chain_len = Some(list.len());
                self.server_certificate = list.first().and_then(|der| parse_certificate(der));
            }
        }
    }

    fn is_complete(&self) -> bool {
        let (Some(_), Some(sh)) = (&self.client_hello, &self.server_hello) else {
            return false;
        };
        let Some(server) = self.server_buffer() else {
            return false;
        };
        sh.version() >= 0x0304
            || self.chain_len.is_some()
            || server.encrypted
            || server.truncated
            || server.failed()
            || server
                .find_handshake(handshake_type::SERVER_HELLO_DONE)
                .is_some()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds a ClientHello body from parts (helper for tests of the extension walker).
    pub(crate) fn client_hello(ciphers: &[u16], exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![0x03, 0x03];
        b.extend_from_slice(&[0u8; 32]);
        b.push(0);
        b.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
        for c in ciphers {
            b.extend_from_slice(&c.to_be_bytes());
        }
        b.extend_from_slice(&[1, 0]);
        let mut e = Vec::new();
        for (ty, data) in exts {
            e.extend_from_slice(&ty.to_be_bytes());
            e.extend_from_slice(&(data.len() as u16).to_be_bytes());
            e.extend_from_slice(data);
        }
        b.extend_from_slice(&(e.len() as u16).to_be_bytes());
        b.extend_from_slice(&e);
        b
    }

    fn sni_ext(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        v.push(0);
        v.extend_from_slice(&(name.len() as u16).to_be_bytes());
        v.extend_from_slice(name.as_bytes());
        v
    }

    fn u16s(list: &[u16], len_bytes: usize) -> Vec<u8> {
        let mut v = Vec::new();
        let n = list.len() * 2;
        if len_bytes == 1 {
            v.push(n as u8);
        } else {
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        for x in list {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v
    }

    /// The worked example of the JA4 definition (FoxIO, technical_details/JA4.md):
    /// JA4 = t13d1516h2_8daaf6152771_e5627efa2ab1.
    #[test]
    fn ja4_matches_the_published_example() {
        let ciphers = [
            0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let order = [
            0x1a1a, 0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023,
            0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
        ];
        let sigs = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        let exts: Vec<(u16, Vec<u8>)> = order
            .iter()
            .map(|&t| {
                let data = match t {
                    0x0000 => sni_ext("example.com"),
                    0x0010 => vec![
                        0, 12, 2, b'h', b'2', 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
                    ],
                    0x000d => u16s(&sigs, 2),
                    0x002b => u16s(&[0x2a2a, 0x0304, 0x0303], 1),
                    _ => Vec::new(),
                };
                (t, data)
            })
            .collect();
        let body = client_hello(&ciphers, &exts);
        let ch = parse_client_hello(&body).unwrap();
        assert_eq!(ch.sni.as_deref(), Some("example.com"));
        assert_eq!(ch.alpn, vec!["h2".to_string(), "http/1.1".to_string()]);
        assert_eq!(ch.max_version(), 0x0304);
        assert_eq!(
            ch.ja4(Ja4Transport::Tcp),
            "t13d1516h2_8daaf6152771_e5627efa2ab1"
        );
        assert_eq!(ch.ja4(Ja4Transport::Quic).chars().next(), Some('q'));
    }

    #[test]
    fn ja4_alpn_and_empty_lists() {
        assert_eq!(ja4_alpn(None), "00");
        assert_eq!(ja4_alpn(Some(b"http/1.1")), "h1");
        assert_eq!(ja4_alpn(Some(b"h")), "hh");
        assert_eq!(ja4_alpn(Some(&[0xab, 0x2f])), "af");
        let body = client_hello(&[0x002f], &[]);
        let ch = parse_client_hello(&body).unwrap();
        assert!(ch.ja4(Ja4Transport::Tcp).ends_with("_000000000000"));
        assert!(ch.ja4(Ja4Transport::Tcp).starts_with("t12i010000_"));
    }

    /// anyconnect-vpn.pcap, frame 413 (UDP payload): Cisco AnyConnect's DTLS ClientHello with
    /// the pre-RFC version 0x0100, a session id, an empty cookie and one cipher suite (0x0039).
    const ANYCONNECT_DTLS_CLIENT_HELLO: &str = concat!(
        "160100000000000000000000560100004a000000000000004a0100ed89c4699ea16489a68421ebd0951f08172d595bf2",
        "c2507bd49467c65ee6238a209bb071c8a80440614f8347a2ce2efe01540c7af53be22e1eac07398729e026ef00000200",
        "390100",
    );

    #[test]
    fn dtls_client_hello_from_anyconnect() {
        let s = ANYCONNECT_DTLS_CLIENT_HELLO;
        let bytes: Vec<u8> = (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        // 13-byte DTLS record header, 12-byte DTLS handshake header
        let body = &bytes[13 + 12..];
        let ch = parse_dtls_client_hello(body).expect("DTLS ClientHello");
        assert_eq!(ch.legacy_version, 0x0100);
        assert_eq!(ch.session_id_len, 32);
        assert_eq!(ch.cipher_suites, vec![0x0039]);
        assert!(ch.extensions.is_empty());
        assert!(parse_client_hello(body).is_none());
    }

    #[test]
    fn grease_values() {
        assert!(is_grease(0x0a0a));
        assert!(is_grease(0xfafa));
        assert!(!is_grease(0x0a1a));
        assert!(!is_grease(0x1301));
    }

    #[test]
    fn record_buffer_reassembles_across_segments() {
        let body = client_hello(&[0x1301], &[(0, sni_ext("a.example"))]);
        let mut hs = vec![1, 0, 0, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1, 0, hs.len() as u8];
        rec.extend_from_slice(&hs);
        let mut buf = TlsRecordBuffer::new();
        for chunk in rec.chunks(3) {
            buf.push(chunk).unwrap();
        }
        assert!(buf.at_record_boundary());
        let ch =
            parse_client_hello(buf.find_handshake(handshake_type::CLIENT_HELLO).unwrap()).unwrap();
        assert_eq!(ch.sni.as_deref(), Some("a.example"));
        // then an application-data record header, body spread over two pushes
        buf.push(&[23, 3, 3, 0, 4, 1, 2]).unwrap();
        buf.push(&[3, 4]).unwrap();
        assert_eq!(buf.app_data_lengths(), &[4]);
        assert!(buf.push(b"GET / HTTP/1.1").is_err());
        assert!(buf.failed());
    }

    #[test]
    fn record_header_validation() {
        assert!(parse_record_header(&[22, 3, 1, 0, 5]).is_some());
        assert!(parse_record_header(&[22, 3, 5, 0, 5]).is_none());
        assert!(parse_record_header(&[24, 3, 3, 0, 5]).is_none());
        assert!(parse_record_header(&[23, 3, 3, 0, 0]).is_none());
        assert!(parse_record_header(&[23, 3, 3, 0xff, 0xff]).is_none());
        assert!(parse_record_header(b"SSH-2.0").is_none());
    }

    #[test]
    fn der_walker_is_bounds_checked() {
        assert_eq!(
            der_tlv(&[0x30, 0x02, 1, 2, 9]),
            Some((0x30, &[1u8, 2][..], &[9u8][..]))
        );
        assert_eq!(
            der_tlv(&[0x30, 0x82, 0x00, 0x01, 7]),
            Some((0x30, &[7u8][..], &[][..]))
        );
        assert!(der_tlv(&[0x30, 0x03, 1]).is_none());
        assert!(der_tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(der_tlv(&[0x1f, 0x01, 0]).is_none());
        assert!(parse_certificate(&[0x30, 0x00]).is_none());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_client_hello(&bytes);
            let _ = parse_dtls_client_hello(&bytes);
            let _ = parse_server_hello(&bytes);
            let _ = parse_certificate_list(&bytes);
            let _ = parse_certificate(&bytes);
            let _ = split_handshake(&bytes);
            let mut buf = TlsRecordBuffer::new();
            for chunk in bytes.chunks(7) {
                let _ = buf.push(chunk);
            }
            prop_assert!(buf.handshake_bytes().len() <= MAX_BUFFER);
            if let Some(ch) = parse_client_hello(&bytes) {
                let _ = ch.ja4(Ja4Transport::Tcp);
            }
        }

        #[test]
        fn hex_list_is_each_value_as_04x_comma_separated(v in proptest::collection::vec(any::<u16>(), 0..40)) {
            let expected: Vec<String> = v.iter().map(|x| format!("{x:04x}")).collect();
            prop_assert_eq!(hex_list(&v), expected.join(","));
        }

        #[test]
        fn record_stream_with_valid_headers_is_followed(lens in proptest::collection::vec(1u16..2000, 1..10)) {
            let mut stream = Vec::new();
            for l in &lens {
                stream.extend_from_slice(&[23, 3, 3]);
                stream.extend_from_slice(&l.to_be_bytes());
                stream.extend(std::iter::repeat_n(0u8, usize::from(*l)));
            }
            let mut buf = TlsRecordBuffer::new();
            for chunk in stream.chunks(500) {
                prop_assert!(buf.push(chunk).is_ok());
            }
            prop_assert_eq!(buf.app_data_lengths(), &lens[..lens.len().min(RECORD_LENGTHS_KEPT)]);
        }
    }
}
