//! OpenVPN over UDP (OpenVPN protocol, `ssl_pkt.h`/`reliable.c` as documented in the
//! openvpn-rfc draft "The OpenVPN Protocol" §2–3), with `tls-auth` (HMAC-SHA1, 20 bytes).
//!
//! Control packet: `opcode<<3 | key_id` (1), session_id (8), HMAC (20), replay packet_id (4),
//! net_time (4), ack array length (1), acked message ids (4 each), remote session_id (8, only
//! when acks are present), message packet_id (4, absent in P_ACK_V1), TLS payload.
//! So P_CONTROL_HARD_RESET_CLIENT_V2 is 42 bytes and the server's reply with one ack is 54.
//! P_DATA_V2: `opcode<<3 | key_id` then a 3-byte peer_id, then (AEAD) packet_id (4), tag (16)
//! and ciphertext.

use super::put32;
use crate::synth::rng::Rng;

pub const P_CONTROL_HARD_RESET_CLIENT_V2: u8 = 7;
pub const P_CONTROL_HARD_RESET_SERVER_V2: u8 = 8;
pub const P_CONTROL_V1: u8 = 4;
pub const P_ACK_V1: u8 = 5;
pub const P_DATA_V2: u8 = 9;
pub const HMAC_LEN: usize = 20;

/// One control-channel packet's fields.
#[derive(Debug, Clone)]
pub struct Control<'a> {
    pub opcode: u8,
    pub key_id: u8,
    pub session_id: u64,
    pub packet_id: u32,
    pub net_time: u32,
    pub acks: &'a [u32],
    pub remote_session_id: u64,
    /// `None` for P_ACK_V1.
    pub message_id: Option<u32>,
    pub payload: &'a [u8],
}

/// Serialises a control packet; the HMAC bytes are random (no key to compute them with).
pub fn control(rng: &mut Rng, c: &Control<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + c.payload.len());
    out.push((c.opcode << 3) | (c.key_id & 7));
    out.extend_from_slice(&c.session_id.to_be_bytes());
    out.extend_from_slice(&rng.bytes::<HMAC_LEN>());
    put32(&mut out, c.packet_id);
    put32(&mut out, c.net_time);
    out.push(c.acks.len() as u8);
    for a in c.acks {
        put32(&mut out, *a);
    }
    if !c.acks.is_empty() {
        out.extend_from_slice(&c.remote_session_id.to_be_bytes());
    }
    if let Some(m) = c.message_id {
        put32(&mut out, m);
    }
    out.extend_from_slice(c.payload);
    out
}

/// Appends a P_DATA_V2 packet of `len` bytes (at least 24: header, packet id, tag).
pub fn data_v2(out: &mut Vec<u8>, rng: &mut Rng, peer_id: u32, packet_id: u32, len: usize) {
    let len = len.max(24);
    out.push(P_DATA_V2 << 3);
    out.extend_from_slice(&peer_id.to_be_bytes()[1..]);
    put32(out, packet_id);
    let start = out.len();
    out.resize(start + len - 8, 0);
    rng.fill(&mut out[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_reset_sizes_and_echo() {
        let mut rng = Rng::new(5);
        let c = control(
            &mut rng,
            &Control {
                opcode: P_CONTROL_HARD_RESET_CLIENT_V2,
                key_id: 0,
                session_id: 0x1122_3344_5566_7788,
                packet_id: 1,
                net_time: 1_708_000_000,
                acks: &[],
                remote_session_id: 0,
                message_id: Some(0),
                payload: &[],
            },
        );
        assert_eq!(c.len(), 42);
        assert_eq!(c[0], 0x38);
        let s = control(
            &mut rng,
            &Control {
                opcode: P_CONTROL_HARD_RESET_SERVER_V2,
                key_id: 0,
                session_id: 0x99,
                packet_id: 1,
                net_time: 1_708_000_000,
                acks: &[0],
                remote_session_id: 0x1122_3344_5566_7788,
                message_id: Some(0),
                payload: &[],
            },
        );
        assert_eq!(s.len(), 54);
        assert_eq!(s[0], 0x40);
        assert_eq!(s[37], 1, "one ack");
        assert_eq!(
            &s[42..50],
            &c[1..9],
            "remote session id echoes the client's"
        );
        let mut d = Vec::new();
        data_v2(&mut d, &mut rng, 0x00AB_CDEF, 5, 100);
        assert_eq!(d.len(), 100);
        assert_eq!(&d[..4], &[0x48, 0xAB, 0xCD, 0xEF]);
        assert_eq!(&d[4..8], &[0, 0, 0, 5]);
    }
}
