//! SSH transport (RFC 4253): the identification strings (§4.2), the binary packet protocol
//! (§6: packet_length u32, padding_length u8, payload, random padding ≥ 4 bytes so that the
//! total is a multiple of the 8-byte block), SSH_MSG_KEXINIT (§7.1), curve25519 ECDH
//! init/reply (RFC 5656 §4 / RFC 8731), SSH_MSG_NEWKEYS, then chacha20-poly1305@openssh.com
//! packets (OpenSSH PROTOCOL.chacha20poly1305): encrypted 4-byte length, encrypted payload (a
//! multiple of the 8-byte block), 16-byte Poly1305 tag — no cleartext field at all.

use super::put32;
use crate::synth::rng::Rng;

pub const CLIENT_BANNER: &[u8] = b"SSH-2.0-OpenSSH_9.6\r\n";
pub const SERVER_BANNER: &[u8] = b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6\r\n";
const MSG_KEXINIT: u8 = 20;
const MSG_NEWKEYS: u8 = 21;
const MSG_KEX_ECDH_INIT: u8 = 30;
const MSG_KEX_ECDH_REPLY: u8 = 31;

fn string(out: &mut Vec<u8>, s: &[u8]) {
    put32(out, s.len() as u32);
    out.extend_from_slice(s);
}

/// Wraps `payload` in an unencrypted binary packet (§6).
pub fn packet(rng: &mut Rng, payload: &[u8]) -> Vec<u8> {
    let mut pad = 8 - (5 + payload.len()) % 8;
    if pad < 4 {
        pad += 8;
    }
    let mut out = Vec::with_capacity(5 + payload.len() + pad);
    put32(&mut out, (1 + payload.len() + pad) as u32);
    out.push(pad as u8);
    out.extend_from_slice(payload);
    let start = out.len();
    out.resize(start + pad, 0);
    rng.fill(&mut out[start..]);
    out
}

/// SSH_MSG_KEXINIT with a fresh cookie and OpenSSH-like name-lists.
pub fn kexinit(rng: &mut Rng, server: bool) -> Vec<u8> {
    let mut p = vec![MSG_KEXINIT];
    p.extend_from_slice(&rng.bytes::<16>());
    let kex: &[u8] = if server {
        b"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group14-sha256"
    } else {
        b"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group14-sha256,ext-info-c"
    };
    let ciphers: &[u8] =
        b"chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr";
    let macs: &[u8] = b"hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha2-256";
    let comp: &[u8] = b"none,zlib@openssh.com";
    string(&mut p, kex);
    string(
        &mut p,
        b"ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256",
    );
    string(&mut p, ciphers);
    string(&mut p, ciphers);
    string(&mut p, macs);
    string(&mut p, macs);
    string(&mut p, comp);
    string(&mut p, comp);
    string(&mut p, b"");
    string(&mut p, b"");
    p.push(0); // first_kex_packet_follows
    put32(&mut p, 0); // reserved
    packet(rng, &p)
}

/// SSH_MSG_KEX_ECDH_INIT with a 32-byte client ephemeral key.
pub fn ecdh_init(rng: &mut Rng) -> Vec<u8> {
    let mut p = vec![MSG_KEX_ECDH_INIT];
    string(&mut p, &rng.bytes::<32>());
    packet(rng, &p)
}

/// SSH_MSG_KEX_ECDH_REPLY (ed25519 host key, server ephemeral, signature) followed by
/// SSH_MSG_NEWKEYS, as OpenSSH sends them in one segment.
pub fn ecdh_reply_newkeys(rng: &mut Rng) -> Vec<u8> {
    let mut key = Vec::with_capacity(51);
    string(&mut key, b"ssh-ed25519");
    string(&mut key, &rng.bytes::<32>());
    let mut sig = Vec::with_capacity(83);
    string(&mut sig, b"ssh-ed25519");
    let s: [u8; 64] = {
        let mut b = [0u8; 64];
        rng.fill(&mut b);
        b
    };
    string(&mut sig, &s);
    let mut p = vec![MSG_KEX_ECDH_REPLY];
    string(&mut p, &key);
    string(&mut p, &rng.bytes::<32>());
    string(&mut p, &sig);
    let mut out = packet(rng, &p);
    out.extend_from_slice(&newkeys(rng));
    out
}

/// SSH_MSG_NEWKEYS.
pub fn newkeys(rng: &mut Rng) -> Vec<u8> {
    packet(rng, &[MSG_NEWKEYS])
}

/// Wire length of a chacha20-poly1305 packet carrying about `want` bytes (4 + 8k + 16, k ≥ 1).
pub fn encrypted_len(want: usize) -> usize {
    4 + want.saturating_sub(20).div_ceil(8).max(1) * 8 + 16
}

/// Appends a chacha20-poly1305@openssh.com packet of wire length `len` (normalised by
/// [`encrypted_len`]); every byte, the length included, is ciphertext.
pub fn encrypted(out: &mut Vec<u8>, rng: &mut Rng, len: usize) {
    let len = encrypted_len(len);
    let start = out.len();
    out.resize(start + len, 0);
    rng.fill(&mut out[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_packets_are_block_aligned() {
        let mut rng = Rng::new(2);
        for p in [
            kexinit(&mut rng, false),
            ecdh_init(&mut rng),
            newkeys(&mut rng),
        ] {
            let len = u32::from_be_bytes(p[..4].try_into().unwrap()) as usize;
            assert_eq!(len + 4, p.len());
            assert_eq!(p.len() % 8, 0);
            assert!(p[4] >= 4);
        }
        let k = kexinit(&mut rng, true);
        assert_eq!(k[5], 20);
        let r = ecdh_reply_newkeys(&mut rng);
        let first = u32::from_be_bytes(r[..4].try_into().unwrap()) as usize + 4;
        assert_eq!(r[5], 31);
        assert_eq!(r[first + 5], 21);
        let mut e = Vec::new();
        encrypted(&mut e, &mut rng, 100);
        assert_eq!(e.len(), encrypted_len(100));
        assert_eq!((e.len() - 20) % 8, 0);
        assert!(CLIENT_BANNER.starts_with(b"SSH-2.0-") && CLIENT_BANNER.ends_with(b"\r\n"));
    }
}
