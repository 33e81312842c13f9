//! Keyed, prefix-preserving address anonymisation (the Crypto-PAn construction of Xu, Fan,
//! Ammar and Moon, "Prefix-Preserving IP Address Anonymization", ICNP 2002), on AES-128.
//!
//! Two addresses that share a k-bit prefix map to addresses that share a k-bit prefix, so
//! subnet structure survives while identities do not. Bit i of the output is bit i of the input
//! XOR the first bit of AES_K(first i input bits ‖ pad bits), with `pad = AES_K(second key half)`.
//! The same key gives the same mapping across runs; without the key it cannot be reversed.
//!
//! With [`Anonymizer::hashing`] hosts are pseudonymised instead: each address becomes the
//! unique-local IPv6 address `fd` followed by the first 15 bytes of HMAC-SHA256(key, address)
//! (RFC 2104). Nothing of the subnet structure survives, addresses keep their type (every
//! output can still hold them), and `fd00::/8` is never routed on the Internet, so a pseudonym
//! cannot be taken for a real public host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;
use sha2::{Digest, Sha256};

/// A prefix-preserving anonymiser for IPv4 and IPv6 addresses.
#[derive(Clone)]
pub struct Anonymizer {
    cipher: Aes128,
    pad: u128,
    /// HMAC key when hosts are pseudonymised by keyed hash instead.
    hash_key: Option<[u8; 32]>,
}

impl std::fmt::Debug for Anonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Anonymizer(<key>)")
    }
}

impl Anonymizer {
    /// From a secret passphrase (hashed with SHA-256 into the 32-byte Crypto-PAn key).
    pub fn from_passphrase(passphrase: &str) -> Self {
        let key: [u8; 32] = Sha256::digest(passphrase.as_bytes()).into();
        Self::from_key(&key)
    }

    /// From a 32-byte key: 16 bytes of AES key, 16 bytes that are encrypted into the pad.
    pub fn from_key(key: &[u8; 32]) -> Self {
        let cipher = Aes128::new(GenericArray::from_slice(&key[..16]));
        let mut pad = GenericArray::clone_from_slice(&key[16..]);
        cipher.encrypt_block(&mut pad);
        let pad = u128::from_be_bytes(pad.into());
        Anonymizer {
            cipher,
            pad,
            hash_key: None,
        }
    }

    /// Keyed-hash pseudonyms instead of prefix-preserving addresses (see the module notes),
    /// keyed by the same secret.
    pub fn hashing(passphrase: &str) -> Self {
        let key: [u8; 32] = Sha256::digest(passphrase.as_bytes()).into();
        Anonymizer {
            hash_key: Some(key),
            ..Self::from_key(&key)
        }
    }

    /// HMAC-SHA256 (RFC 2104: 64-byte blocks, ipad 0x36, opad 0x5c) of `message`.
    fn hmac(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(key);
        let pad = |byte: u8| block.map(|b| b ^ byte);
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .into()
    }

    fn first_bit(&self, block: u128) -> u128 {
        let mut b = GenericArray::from(block.to_be_bytes());
        self.cipher.encrypt_block(&mut b);
        u128::from(b[0] >> 7)
    }

    /// Anonymises the top `bits` bits of a left-aligned 128-bit value.
    fn permute(&self, aligned: u128, bits: u32) -> u128 {
        let mut out = 0u128;
        for i in 0..bits {
            let keep = if i == 0 { 0 } else { u128::MAX << (128 - i) };
            let input = (aligned & keep) | (self.pad & !keep);
            out |= self.first_bit(input) << (127 - i);
        }
        aligned ^ out
    }

    pub fn anonymize(&self, ip: IpAddr) -> IpAddr {
        if let Some(key) = &self.hash_key {
            let bytes = match ip {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            let mac = Self::hmac(key, &bytes);
            let mut out = [0u8; 16];
            out[0] = 0xfd;
            out[1..].copy_from_slice(&mac[..15]);
            return IpAddr::V6(Ipv6Addr::from(out));
        }
        match ip {
            IpAddr::V4(a) => {
                let aligned = u128::from(u32::from(a)) << 96;
                IpAddr::V4(Ipv4Addr::from((self.permute(aligned, 32) >> 96) as u32))
            }
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(self.permute(u128::from(a), 128))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common_prefix_v4(a: IpAddr, b: IpAddr) -> u32 {
        match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) ^ u32::from(b)).leading_zeros(),
            _ => 0,
        }
    }

    #[test]
    fn preserves_prefixes_and_is_deterministic() {
        let anon = Anonymizer::from_passphrase("test key");
        let pairs = [
            ("10.1.2.3", "10.1.2.200"),
            ("10.1.2.3", "10.9.0.1"),
            ("192.168.0.1", "8.8.8.8"),
        ];
        for (x, y) in pairs {
            let (x, y): (IpAddr, IpAddr) = (x.parse().unwrap(), y.parse().unwrap());
            assert_eq!(
                common_prefix_v4(anon.anonymize(x), anon.anonymize(y)),
                common_prefix_v4(x, y)
            );
        }
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        assert_ne!(anon.anonymize(a), a);
        assert_eq!(
            anon.anonymize(a),
            Anonymizer::from_passphrase("test key").anonymize(a)
        );
        assert_ne!(
            anon.anonymize(a),
            Anonymizer::from_passphrase("other").anonymize(a)
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(anon.anonymize(v6).is_ipv6());
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe" (zero-padded to our 32-byte key, which HMAC pads to 64
        // anyway), data "what do ya want for nothing?".
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = Anonymizer::hmac(&key, b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hashed_pseudonyms_are_keyed_unique_local_and_stable() {
        let h = Anonymizer::hashing("k1");
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        let b: IpAddr = "10.1.2.4".parse().unwrap();
        let pa = h.anonymize(a);
        assert!(matches!(pa, IpAddr::V6(v) if v.octets()[0] == 0xfd));
        assert_eq!(pa, Anonymizer::hashing("k1").anonymize(a));
        assert_ne!(pa, h.anonymize(b));
        assert_ne!(pa, Anonymizer::hashing("k2").anonymize(a));
    }
}
