//! DNS messages in RFC 1035 wire format (§4.1): a 12-byte header, the question, answer RRs
//! with a compression pointer to the question name (§4.1.4), and an EDNS(0) OPT RR (RFC 6891 §6).

use std::net::IpAddr;

use super::{patch16, put16, put32};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// RCODE 3 (RFC 1035 §4.1.1): the name does not exist.
pub const RCODE_NXDOMAIN: u8 = 3;

fn put_name(out: &mut Vec<u8>, name: &str) {
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let l = &label.as_bytes()[..label.len().min(63)];
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out.push(0);
}

fn put_opt(out: &mut Vec<u8>, udp_size: u16) {
    out.push(0); // root name
    put16(out, TYPE_OPT);
    put16(out, udp_size); // CLASS carries the requestor's UDP payload size
    put32(out, 0); // extended RCODE, version 0, flags
    put16(out, 0); // RDLEN
}

/// A recursive query (RD set) for `name`/`qtype` with an EDNS(0) OPT record.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + name.len());
    put16(&mut out, id);
    put16(&mut out, 0x0100); // QR=0 OPCODE=0 RD=1
    put16(&mut out, 1); // QDCOUNT
    put16(&mut out, 0);
    put16(&mut out, 0);
    put16(&mut out, 1); // ARCOUNT: OPT
    put_name(&mut out, name);
    put16(&mut out, qtype);
    put16(&mut out, CLASS_IN);
    put_opt(&mut out, 1232);
    out
}

/// The answer to [`query`]: the question echoed, one RR per address of the asked family
/// (`0xC00C` points at the question name), RA set, and `rcode` in the low 4 flag bits.
pub fn response(id: u16, name: &str, qtype: u16, addrs: &[IpAddr], ttl: u32, rcode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + name.len());
    put16(&mut out, id);
    put16(&mut out, 0x8180 | u16::from(rcode & 0x0F)); // QR=1 RD=1 RA=1
    put16(&mut out, 1);
    put16(&mut out, 0); // ANCOUNT, patched below
    put16(&mut out, 0);
    put16(&mut out, 1);
    put_name(&mut out, name);
    put16(&mut out, qtype);
    put16(&mut out, CLASS_IN);
    let mut n = 0;
    if rcode == 0 {
        for a in addrs {
            let (t, data): (u16, Vec<u8>) = match a {
                IpAddr::V4(v) => (TYPE_A, v.octets().to_vec()),
                IpAddr::V6(v) => (TYPE_AAAA, v.octets().to_vec()),
            };
            if t != qtype {
                continue;
            }
            put16(&mut out, 0xC00C);
            put16(&mut out, t);
            put16(&mut out, CLASS_IN);
            put32(&mut out, ttl);
            put16(&mut out, data.len() as u16);
            out.extend_from_slice(&data);
            n += 1;
        }
    }
    patch16(&mut out, 6, n);
    put_opt(&mut out, 1232);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn query_layout() {
        let q = query(0xBEEF, "x.com", TYPE_A);
        assert_eq!(&q[..12], &[0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&q[12..19], b"\x01x\x03com\x00");
        assert_eq!(&q[19..23], &[0, 1, 0, 1]);
        assert_eq!(q.len(), 23 + 11);
    }

    #[test]
    fn response_counts_and_pointer() {
        let a = [IpAddr::V4(Ipv4Addr::new(104, 244, 42, 1))];
        let r = response(7, "x.com", TYPE_A, &a, 300, 0);
        assert_eq!(u16::from_be_bytes([r[2], r[3]]), 0x8180);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[23..25], &[0xC0, 0x0C]);
        assert_eq!(&r[33..35], &[0, 4]);
        assert_eq!(&r[35..39], &[104, 244, 42, 1]);
        let nx = response(7, "x.com", TYPE_A, &a, 300, RCODE_NXDOMAIN);
        assert_eq!(u16::from_be_bytes([nx[2], nx[3]]) & 0x000F, 3);
        assert_eq!(u16::from_be_bytes([nx[6], nx[7]]), 0);
        // AAAA asked, only an A known: no answer, NOERROR ("NODATA").
        let nodata = response(7, "x.com", TYPE_AAAA, &a, 300, 0);
        assert_eq!(u16::from_be_bytes([nodata[6], nodata[7]]), 0);
    }
}
