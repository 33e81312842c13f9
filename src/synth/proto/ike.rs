//! IKEv2 (RFC 7296) and ESP in UDP (RFC 3948).
//!
//! * IKE header (§3.1), 28 bytes: initiator SPI (8), responder SPI (8, zero in the first
//!   request), next payload (1), version 0x20 (1), exchange type (1: 34 IKE_SA_INIT, 35
//!   IKE_AUTH), flags (1: 0x08 Initiator, 0x20 Response), message id (4), length (4, whole message).
//! * Generic payload header (§3.2): next payload, critical bit/reserved, payload length (2).
//! * SA (33) > proposal (§3.3.1) > transforms (§3.3.2, key-length attribute 14 in TV form),
//!   KE (34, §3.4), Nonce (40, §3.9), Notify (41, §3.10) NAT_DETECTION_*_IP (16388/16389),
//!   Encrypted SK (46, §3.14): IV, ciphertext, ICV.
//! * On UDP 4500 IKE is preceded by the 4-byte non-ESP marker (RFC 3948 §2.2); ESP (RFC 4303
//!   §2) is SPI (4, non-zero) + sequence number (4) + IV + ciphertext + ICV.

use super::{put16, put32};
use crate::synth::rng::Rng;

pub const IKE_SA_INIT: u8 = 34;
pub const IKE_AUTH: u8 = 35;
const PL_NONE: u8 = 0;
const PL_SA: u8 = 33;
const PL_KE: u8 = 34;
const PL_IDI: u8 = 35;
const PL_IDR: u8 = 36;
const PL_NONCE: u8 = 40;
const PL_NOTIFY: u8 = 41;
const PL_SK: u8 = 46;
pub const FLAG_INITIATOR: u8 = 0x08;
pub const FLAG_RESPONSE: u8 = 0x20;
pub const HEADER_LEN: usize = 28;

fn header(
    out: &mut Vec<u8>,
    spi_i: u64,
    spi_r: u64,
    next: u8,
    exchange: u8,
    flags: u8,
    msg_id: u32,
) {
    out.extend_from_slice(&spi_i.to_be_bytes());
    out.extend_from_slice(&spi_r.to_be_bytes());
    out.extend_from_slice(&[next, 0x20, exchange, flags]);
    put32(out, msg_id);
    put32(out, 0); // length, patched by `finish`
}

fn finish(out: &mut [u8], ike_start: usize) {
    let len = (out.len() - ike_start) as u32;
    if let Some(s) = out.get_mut(ike_start + 24..ike_start + 28) {
        s.copy_from_slice(&len.to_be_bytes());
    }
}

fn payload(out: &mut Vec<u8>, next: u8, body: &[u8]) {
    out.push(next);
    out.push(0);
    put16(out, (body.len() + 4) as u16);
    out.extend_from_slice(body);
}

fn transform(out: &mut Vec<u8>, last: bool, ty: u8, id: u16, key_len: Option<u16>) {
    out.push(if last { 0 } else { 3 });
    out.push(0);
    put16(out, if key_len.is_some() { 12 } else { 8 });
    out.push(ty);
    out.push(0);
    put16(out, id);
    if let Some(k) = key_len {
        put16(out, 0x8000 | 14); // AF=1 (TV), attribute type 14 Key Length
        put16(out, k);
    }
}

/// SA payload body: one IKE proposal, ENCR_AES_GCM_16 (20) 256-bit, PRF_HMAC_SHA2_256 (5),
/// DH Curve25519 (31).
fn sa_body() -> Vec<u8> {
    let mut t = Vec::with_capacity(32);
    transform(&mut t, false, 1, 20, Some(256));
    transform(&mut t, false, 2, 5, None);
    transform(&mut t, true, 4, 31, None);
    let mut p = Vec::with_capacity(40);
    p.push(0); // last proposal
    p.push(0);
    put16(&mut p, (8 + t.len()) as u16);
    p.extend_from_slice(&[1, 1, 0, 3]); // proposal 1, protocol IKE, SPI size 0, 3 transforms
    p.extend_from_slice(&t);
    p
}

fn sa_init(rng: &mut Rng, spi_i: u64, spi_r: u64, flags: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    header(&mut out, spi_i, spi_r, PL_SA, IKE_SA_INIT, flags, 0);
    payload(&mut out, PL_KE, &sa_body());
    let mut ke = Vec::with_capacity(36);
    put16(&mut ke, 31);
    put16(&mut ke, 0);
    ke.extend_from_slice(&rng.bytes::<32>());
    payload(&mut out, PL_NONCE, &ke);
    payload(&mut out, PL_NOTIFY, &rng.bytes::<32>());
    for (i, ty) in [16388u16, 16389].into_iter().enumerate() {
        let mut n = vec![0, 0]; // protocol id 0, SPI size 0
        put16(&mut n, ty);
        n.extend_from_slice(&rng.bytes::<20>()); // SHA-1 of SPIs, address, port
        payload(&mut out, if i == 0 { PL_NOTIFY } else { PL_NONE }, &n);
    }
    finish(&mut out, 0);
    out
}

/// IKE_SA_INIT request (UDP 500): responder SPI zero, Initiator flag.
pub fn sa_init_request(rng: &mut Rng, spi_i: u64) -> Vec<u8> {
    sa_init(rng, spi_i, 0, FLAG_INITIATOR)
}

/// IKE_SA_INIT response: both SPIs, Response flag.
pub fn sa_init_response(rng: &mut Rng, spi_i: u64, spi_r: u64) -> Vec<u8> {
    sa_init(rng, spi_i, spi_r, FLAG_RESPONSE)
}

/// IKE_AUTH on UDP 4500 (non-ESP marker first) with an SK payload holding `enc_len` bytes of
/// ciphertext: request (IDi first inside) or response (IDr first inside), message id 1.
pub fn auth(rng: &mut Rng, spi_i: u64, spi_r: u64, response: bool, enc_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 32 + enc_len);
    out.extend_from_slice(&[0, 0, 0, 0]);
    let flags = if response {
        FLAG_RESPONSE
    } else {
        FLAG_INITIATOR
    };
    header(&mut out, spi_i, spi_r, PL_SK, IKE_AUTH, flags, 1);
    let mut sk = vec![0u8; 8 + enc_len + 16]; // IV, ciphertext, ICV
    rng.fill(&mut sk);
    payload(&mut out, if response { PL_IDR } else { PL_IDI }, &sk);
    finish(&mut out, 4);
    out
}

/// Appends an ESP packet of `len` bytes (at least 32): SPI, sequence, 8-byte IV, ciphertext
/// (a multiple of 4 as ESP alignment requires), 16-byte ICV.
pub fn esp(out: &mut Vec<u8>, rng: &mut Rng, spi: u32, seq: u32, len: usize) {
    let len = (len.max(32) / 4) * 4;
    put32(out, spi);
    put32(out, seq);
    let start = out.len();
    out.resize(start + len - 8, 0);
    rng.fill(&mut out[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the payload chain; returns the payload types and checks that lengths add up.
    fn chain(msg: &[u8]) -> Vec<u8> {
        let mut types = Vec::new();
        let mut next = msg[16];
        let mut p = HEADER_LEN;
        while next != PL_NONE {
            types.push(next);
            let l = u16::from_be_bytes([msg[p + 2], msg[p + 3]]) as usize;
            next = msg[p];
            p += l;
            if next == PL_NONE || types.last() == Some(&PL_SK) {
                break;
            }
        }
        assert_eq!(p, msg.len(), "payload lengths sum to the message");
        types
    }

    #[test]
    fn sa_init_structure() {
        let mut rng = Rng::new(11);
        let req = sa_init_request(&mut rng, 0x0102_0304_0506_0708);
        assert_eq!(
            u32::from_be_bytes(req[24..28].try_into().unwrap()) as usize,
            req.len()
        );
        assert_eq!(&req[8..16], &[0; 8]);
        assert_eq!(&req[17..20], &[0x20, 34, 0x08]);
        assert_eq!(
            chain(&req),
            vec![PL_SA, PL_KE, PL_NONCE, PL_NOTIFY, PL_NOTIFY]
        );
        // SA payload: proposal length covers its transforms.
        let sa_len = u16::from_be_bytes([req[30], req[31]]) as usize;
        let prop_len = u16::from_be_bytes([req[34], req[35]]) as usize;
        assert_eq!(sa_len, prop_len + 4);
        let resp = sa_init_response(&mut rng, 0x0102_0304_0506_0708, 0xAA);
        assert_eq!(&resp[..8], &req[..8], "initiator SPI echoed");
        assert_eq!(resp[19], FLAG_RESPONSE);
        let a = auth(&mut rng, 1, 2, false, 300);
        assert_eq!(&a[..4], &[0; 4]);
        assert_eq!(chain(&a[4..]), vec![PL_SK]);
        let mut e = Vec::new();
        esp(&mut e, &mut rng, 0xC0FF_EE01, 1, 121);
        assert_eq!(e.len(), 120);
        assert_eq!(&e[..8], &[0xC0, 0xFF, 0xEE, 0x01, 0, 0, 0, 1]);
    }
}
