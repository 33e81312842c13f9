//! TLS 1.3 records and handshake messages (RFC 8446): a ClientHello with the extensions a
//! current browser sends (server_name RFC 6066 §3, ALPN RFC 7301, supported_groups RFC 8422,
//! signature_algorithms, key_share §4.2.8, supported_versions §4.2.1, psk_key_exchange_modes,
//! padding RFC 7685), the ServerHello that selects TLS 1.3, the middlebox-compatibility
//! ChangeCipherSpec (§D.4) and opaque application_data records (§5.2).

use super::{patch16, put16};
use crate::synth::rng::Rng;

pub const CT_CHANGE_CIPHER_SPEC: u8 = 20;
pub const CT_HANDSHAKE: u8 = 22;
pub const CT_APPLICATION_DATA: u8 = 23;
/// Record header: type(1) legacy_version(2) length(2).
pub const RECORD_HEADER: usize = 5;

/// Which client the ClientHello imitates (cipher list, extensions, padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Chromium-like: GREASE (RFC 8701), padding to 512 bytes, ALPN h2/http1.1.
    Browser,
    /// A library client (OpenVPN's OpenSSL, app SDKs): no GREASE, no padding.
    Library,
    /// Tor's link TLS: random `www.<letters>.com` SNI, no ALPN.
    Tor,
}

const GREASE: [u16; 16] = [
    0x0A0A, 0x1A1A, 0x2A2A, 0x3A3A, 0x4A4A, 0x5A5A, 0x6A6A, 0x7A7A, 0x8A8A, 0x9A9A, 0xAAAA, 0xBABA,
    0xCACA, 0xDADA, 0xEAEA, 0xFAFA,
];

fn ext(out: &mut Vec<u8>, ty: u16, body: &[u8]) {
    put16(out, ty);
    put16(out, body.len() as u16);
    out.extend_from_slice(body);
}

fn u16s(list: &[u16]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + 2 * list.len());
    put16(&mut v, (2 * list.len()) as u16);
    for x in list {
        put16(&mut v, *x);
    }
    v
}

/// A full record (`22 03 01 len`) holding one ClientHello. The 32-byte legacy_session_id is
/// returned so the ServerHello can echo it (RFC 8446 §4.1.3).
pub fn client_hello(
    rng: &mut Rng,
    sni: Option<&str>,
    alpn: &[&str],
    profile: Profile,
) -> (Vec<u8>, [u8; 32]) {
    let session_id: [u8; 32] = rng.bytes();
    let grease = profile == Profile::Browser;
    let g = |rng: &mut Rng| GREASE[rng.below(16) as usize];
    let mut body = Vec::with_capacity(512);
    put16(&mut body, 0x0303); // legacy_version
    body.extend_from_slice(&rng.bytes::<32>()); // random
    body.push(32);
    body.extend_from_slice(&session_id);
    let mut suites: Vec<u16> = Vec::new();
    if grease {
        suites.push(g(rng));
    }
    suites.extend_from_slice(&[
        0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,
    ]);
    if profile != Profile::Tor {
        suites.extend_from_slice(&[0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]);
    }
    body.extend_from_slice(&u16s(&suites));
    body.extend_from_slice(&[1, 0]); // compression_methods: null
    let mut exts = Vec::with_capacity(400);
    if grease {
        ext(&mut exts, g(rng), &[]);
    }
    if let Some(name) = sni {
        let n = name.as_bytes();
        let mut b = Vec::with_capacity(n.len() + 5);
        put16(&mut b, (n.len() + 3) as u16); // server_name_list length
        b.push(0); // name_type host_name
        put16(&mut b, n.len() as u16);
        b.extend_from_slice(n);
        ext(&mut exts, 0, &b);
    }
    ext(&mut exts, 23, &[]); // extended_master_secret
    ext(&mut exts, 0xFF01, &[0]); // renegotiation_info
    let mut groups = Vec::new();
    if grease {
        groups.push(g(rng));
    }
    groups.extend_from_slice(&[0x001D, 0x0017, 0x0018]);
    ext(&mut exts, 10, &u16s(&groups)); // supported_groups
    ext(&mut exts, 11, &[1, 0]); // ec_point_formats: uncompressed
    ext(&mut exts, 35, &[]); // session_ticket
    if !alpn.is_empty() {
        let mut b = vec![0, 0];
        for p in alpn {
            b.push(p.len() as u8);
            b.extend_from_slice(p.as_bytes());
        }
        let l = b.len() - 2;
        patch16(&mut b, 0, l);
        ext(&mut exts, 16, &b);
    }
    if profile == Profile::Browser {
        ext(&mut exts, 5, &[1, 0, 0, 0, 0]); // status_request: ocsp
    }
    ext(
        &mut exts,
        13,
        &u16s(&[
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ]),
    );
    if profile == Profile::Browser {
        ext(&mut exts, 18, &[]); // signed_certificate_timestamp
    }
    let mut ks = Vec::with_capacity(48);
    put16(&mut ks, 0); // client_shares length, patched
    if grease {
        put16(&mut ks, g(rng));
        put16(&mut ks, 1);
        ks.push(0);
    }
    put16(&mut ks, 0x001D); // x25519
    put16(&mut ks, 32);
    ks.extend_from_slice(&rng.bytes::<32>());
    let l = ks.len() - 2;
    patch16(&mut ks, 0, l);
    ext(&mut exts, 51, &ks); // key_share
    ext(&mut exts, 45, &[1, 1]); // psk_key_exchange_modes: psk_dhe_ke
    let mut sv = vec![0u8];
    if grease {
        put16(&mut sv, g(rng));
    }
    put16(&mut sv, 0x0304);
    put16(&mut sv, 0x0303);
    sv[0] = (sv.len() - 1) as u8;
    ext(&mut exts, 43, &sv); // supported_versions
    if profile == Profile::Browser {
        ext(&mut exts, 27, &[2, 0, 2]); // compress_certificate: brotli
                                        // RFC 7685: pad the ClientHello message (4-byte header + body) to 512 bytes.
        let unpadded = 4 + body.len() + 2 + exts.len();
        if unpadded + 4 < 512 {
            let pad = vec![0u8; 512 - unpadded - 4];
            ext(&mut exts, 21, &pad);
        }
    }
    put16(&mut body, exts.len() as u16);
    body.extend_from_slice(&exts);
    let mut rec = Vec::with_capacity(body.len() + 9);
    rec.extend_from_slice(&[CT_HANDSHAKE, 3, 1]);
    put16(&mut rec, (body.len() + 4) as u16);
    rec.push(1); // HandshakeType client_hello
    rec.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    rec.extend_from_slice(&body);
    (rec, session_id)
}

/// A ServerHello record selecting TLS 1.3 / TLS_AES_128_GCM_SHA256 / x25519, echoing
/// `session_id`, followed by the ChangeCipherSpec record `14 03 03 00 01 01`.
pub fn server_hello(rng: &mut Rng, session_id: &[u8; 32]) -> Vec<u8> {
    let mut body = Vec::with_capacity(124);
    put16(&mut body, 0x0303);
    body.extend_from_slice(&rng.bytes::<32>());
    body.push(32);
    body.extend_from_slice(session_id);
    put16(&mut body, 0x1301);
    body.push(0);
    let mut exts = Vec::with_capacity(46);
    ext(&mut exts, 43, &[0x03, 0x04]); // supported_versions: selected TLS 1.3
    let mut ks = Vec::with_capacity(36);
    put16(&mut ks, 0x001D);
    put16(&mut ks, 32);
    ks.extend_from_slice(&rng.bytes::<32>());
    ext(&mut exts, 51, &ks);
    put16(&mut body, exts.len() as u16);
    body.extend_from_slice(&exts);
    let mut rec = Vec::with_capacity(body.len() + 15);
    rec.extend_from_slice(&[CT_HANDSHAKE, 3, 3]);
    put16(&mut rec, (body.len() + 4) as u16);
    rec.push(2); // server_hello
    rec.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    rec.extend_from_slice(&body);
    rec.extend_from_slice(&change_cipher_spec());
    rec
}

/// The TLS 1.3 compatibility ChangeCipherSpec record (RFC 8446 §D.4).
pub fn change_cipher_spec() -> [u8; 6] {
    [CT_CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1]
}

/// Appends one application_data record of `total` bytes (header included; at least 22 so the
/// ciphertext holds the 16-byte AEAD tag and the inner content type).
pub fn app_data(out: &mut Vec<u8>, rng: &mut Rng, total: usize) {
    let total = total.clamp(RECORD_HEADER + 17, RECORD_HEADER + 16_384 + 256);
    out.extend_from_slice(&[CT_APPLICATION_DATA, 3, 3]);
    put16(out, (total - RECORD_HEADER) as u16);
    let start = out.len();
    out.resize(start + total - RECORD_HEADER, 0);
    rng.fill(&mut out[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find_ext(ch: &[u8], ty: u16) -> Option<Vec<u8>> {
        // record(5) + hs header(4) + version(2) + random(32) = 43
        let mut p = 43;
        p += 1 + ch[p] as usize;
        p += 2 + u16::from_be_bytes([ch[p], ch[p + 1]]) as usize;
        p += 1 + ch[p] as usize;
        let end = p + 2 + u16::from_be_bytes([ch[p], ch[p + 1]]) as usize;
        p += 2;
        assert_eq!(end, ch.len(), "extensions end at the record end");
        while p + 4 <= end {
            let t = u16::from_be_bytes([ch[p], ch[p + 1]]);
            let l = u16::from_be_bytes([ch[p + 2], ch[p + 3]]) as usize;
            if t == ty {
                return Some(ch[p + 4..p + 4 + l].to_vec());
            }
            p += 4 + l;
        }
        None
    }

    #[test]
    fn client_hello_lengths_and_extensions() {
        let mut rng = Rng::new(3);
        let (ch, sid) = client_hello(
            &mut rng,
            Some("x.com"),
            &["h2", "http/1.1"],
            Profile::Browser,
        );
        assert_eq!(&ch[..3], &[22, 3, 1]);
        assert_eq!(u16::from_be_bytes([ch[3], ch[4]]) as usize, ch.len() - 5);
        assert_eq!(ch[5], 1);
        let hs_len = u32::from_be_bytes([0, ch[6], ch[7], ch[8]]) as usize;
        assert_eq!(hs_len, ch.len() - 9);
        assert_eq!(hs_len + 4, 512, "padded to 512 (RFC 7685)");
        assert_eq!(&ch[44..76], &sid);
        assert_eq!(find_ext(&ch, 0).unwrap(), b"\x00\x08\x00\x00\x05x.com");
        assert_eq!(find_ext(&ch, 16).unwrap(), b"\x00\x0c\x02h2\x08http/1.1");
        let sv = find_ext(&ch, 43).unwrap();
        assert!(sv.windows(2).any(|w| w == [3, 4]));
        assert!(find_ext(&ch, 51).is_some());
        let (lib, _) = client_hello(&mut rng, None, &[], Profile::Library);
        assert!(find_ext(&lib, 0).is_none());
    }

    #[test]
    fn server_hello_echoes_session_id() {
        let mut rng = Rng::new(4);
        let sid = [7u8; 32];
        let sh = server_hello(&mut rng, &sid);
        let rec_len = u16::from_be_bytes([sh[3], sh[4]]) as usize;
        assert_eq!(sh[5], 2);
        assert_eq!(&sh[44..76], &sid);
        assert_eq!(&sh[5 + rec_len..], &change_cipher_spec());
        let mut out = Vec::new();
        app_data(&mut out, &mut rng, 100);
        assert_eq!(out.len(), 100);
        assert_eq!(u16::from_be_bytes([out[3], out[4]]), 95);
    }
}
