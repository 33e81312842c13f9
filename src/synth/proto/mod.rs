//! Wire-format builders, one file per protocol. Each function returns the exact bytes of one
//! message (transport payload) as its specification lays them out; the doc comment of each
//! builder cites the section it follows. Randomness stands in for keys, nonces and ciphertext.

pub mod dns;
pub mod http;
pub mod ike;
pub mod openvpn;
pub mod quic;
pub mod socks;
pub mod ssh;
pub mod tls;
pub mod wireguard;

/// Appends a big-endian u16.
pub(crate) fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a big-endian u32.
pub(crate) fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian u16 length at `at`, saturating (lengths here are always far below 64 KiB).
pub(crate) fn patch16(out: &mut [u8], at: usize, v: usize) {
    let b = u16::try_from(v).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(s) = out.get_mut(at..at + 2) {
        s.copy_from_slice(&b);
    }
}
