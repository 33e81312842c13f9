//! SOCKS5 (RFC 1928): method negotiation (§3), CONNECT request with a domain name (§4,
//! ATYP 3) and the reply with the bound IPv4 address (§6); plus the "fully encrypted"
//! Shadowsocks-style first packet (salt, encrypted length chunk, encrypted payload chunk).

use std::net::Ipv4Addr;

use super::put16;
use crate::synth::rng::Rng;

/// VER 5, one method: 0 (no authentication).
pub const GREETING: [u8; 3] = [5, 1, 0];
/// VER 5, chosen method 0.
pub const CHOICE: [u8; 2] = [5, 0];

/// CONNECT to `host:port` by name.
pub fn connect(host: &str, port: u16) -> Vec<u8> {
    let h = &host.as_bytes()[..host.len().min(255)];
    let mut out = vec![5, 1, 0, 3, h.len() as u8];
    out.extend_from_slice(h);
    put16(&mut out, port);
    out
}

/// Success reply with the proxy's bound address.
pub fn reply(bound: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut out = vec![5, 0, 0, 1];
    out.extend_from_slice(&bound.octets());
    put16(&mut out, port);
    out
}

/// Wire length of a Shadowsocks AEAD-2022-like first packet with `inner` payload bytes:
/// 32-byte salt + (2-byte length + 16-byte tag) + (payload + 16-byte tag).
pub fn shadowsocks_first_len(inner: usize) -> usize {
    32 + 18 + inner + 16
}

/// Appends uniformly random bytes whose first byte is not printable ASCII, so no
/// printable-prefix exemption (Wu et al., USENIX Security 2023, §4) applies: a fully
/// encrypted first packet.
pub fn fully_encrypted(out: &mut Vec<u8>, rng: &mut Rng, len: usize) {
    let start = out.len();
    out.resize(start + len, 0);
    rng.fill(&mut out[start..]);
    if let Some(b) = out.get_mut(start) {
        if (0x20..0x7F).contains(b) {
            *b |= 0x80;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks5_messages() {
        assert_eq!(connect("x.com", 443), b"\x05\x01\x00\x03\x05x.com\x01\xbb");
        assert_eq!(
            reply(Ipv4Addr::new(1, 2, 3, 4), 1080),
            [5, 0, 0, 1, 1, 2, 3, 4, 4, 0x38]
        );
        let mut rng = Rng::new(1);
        for _ in 0..50 {
            let mut v = Vec::new();
            fully_encrypted(&mut v, &mut rng, shadowsocks_first_len(100));
            assert_eq!(v.len(), 166);
            assert!(!(0x20..0x7F).contains(&v[0]));
        }
    }
}
