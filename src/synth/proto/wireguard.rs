//! WireGuard messages (Donenfeld, "WireGuard: Next Generation Kernel Network Tunnel", §5.4),
//! all little-endian on the wire:
//!
//! * §5.4.2 handshake initiation, 148 bytes: type=1, reserved\[3\]=0, sender_index u32,
//!   unencrypted_ephemeral\[32\], encrypted_static\[32+16\], encrypted_timestamp\[12+16\], mac1\[16\], mac2\[16\]
//! * §5.4.3 handshake response, 92 bytes: type=2, reserved\[3\], sender_index, receiver_index
//!   (= the initiator's sender_index), unencrypted_ephemeral\[32\], encrypted_nothing\[0+16\], mac1, mac2
//! * §5.4.6 transport data: type=4, reserved\[3\], receiver_index, counter u64, encrypted packet
//!   (plaintext zero-padded to a multiple of 16, plus the 16-byte Poly1305 tag); total ≡ 0 mod 16.
//!
//! mac2 is all zeros unless the responder is under load (§5.4.7); we never simulate load.

use crate::synth::rng::Rng;

pub const INITIATION_LEN: usize = 148;
pub const RESPONSE_LEN: usize = 92;
pub const DATA_HEADER_LEN: usize = 16;
/// Largest inner packet with the default 1420-byte tunnel MTU.
pub const MAX_INNER: usize = 1420;

/// Handshake initiation from `sender_index`.
pub fn initiation(rng: &mut Rng, sender_index: u32) -> [u8; INITIATION_LEN] {
    let mut m = [0u8; INITIATION_LEN];
    m[0] = 1;
    m[4..8].copy_from_slice(&sender_index.to_le_bytes());
    rng.fill(&mut m[8..132]); // ephemeral, encrypted static, encrypted timestamp, mac1
    m
}

/// Handshake response from `sender_index` to the initiator's `receiver_index`.
pub fn response(rng: &mut Rng, sender_index: u32, receiver_index: u32) -> [u8; RESPONSE_LEN] {
    let mut m = [0u8; RESPONSE_LEN];
    m[0] = 2;
    m[4..8].copy_from_slice(&sender_index.to_le_bytes());
    m[8..12].copy_from_slice(&receiver_index.to_le_bytes());
    rng.fill(&mut m[12..76]); // ephemeral, encrypted nothing, mac1
    m
}

/// Wire length of a transport-data message carrying an `inner`-byte packet (0 = keepalive).
pub fn data_len(inner: usize) -> usize {
    DATA_HEADER_LEN + inner.min(MAX_INNER).div_ceil(16) * 16 + 16
}

/// Appends a transport-data message of wire length `len` (rounded down to a valid length,
/// at least 32: the keepalive).
pub fn data(out: &mut Vec<u8>, rng: &mut Rng, receiver_index: u32, counter: u64, len: usize) {
    let len = (len / 16 * 16).clamp(32, data_len(MAX_INNER));
    out.push(4);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&receiver_index.to_le_bytes());
    out.extend_from_slice(&counter.to_le_bytes());
    let start = out.len();
    out.resize(start + len - DATA_HEADER_LEN, 0);
    rng.fill(&mut out[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitepaper_layout() {
        let mut rng = Rng::new(9);
        let i = initiation(&mut rng, 0xA1B2_C3D4);
        assert_eq!(i.len(), 148);
        assert_eq!(&i[..4], &[1, 0, 0, 0]);
        assert_eq!(u32::from_le_bytes([i[4], i[5], i[6], i[7]]), 0xA1B2_C3D4);
        assert_eq!(&i[132..], &[0u8; 16], "mac2 zero without cookie");
        let r = response(&mut rng, 0x0102_0304, 0xA1B2_C3D4);
        assert_eq!(r.len(), 92);
        assert_eq!(&r[..4], &[2, 0, 0, 0]);
        assert_eq!(
            u32::from_le_bytes([r[8], r[9], r[10], r[11]]),
            0xA1B2_C3D4,
            "index echo"
        );
        let mut d = Vec::new();
        data(&mut d, &mut rng, 0x0102_0304, 7, data_len(100));
        assert_eq!(d.len() % 16, 0);
        assert_eq!(d.len(), 16 + 112 + 16);
        assert_eq!(&d[..4], &[4, 0, 0, 0]);
        assert_eq!(u64::from_le_bytes(d[8..16].try_into().unwrap()), 7);
        assert_eq!(data_len(0), 32);
        assert_eq!(data_len(1420), 1456);
    }
}
