//! The link/IP/transport decoder: first byte picks the link type, the rest is the frame.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tunnelwatch::decode::{decode, link};

const LINKS: [u16; 10] = [
    link::NULL,
    link::ETHERNET,
    link::PPP,
    link::RAW,
    link::LOOP,
    link::LINUX_SLL,
    link::IPV4,
    link::IPV6,
    link::LINUX_SLL2,
    link::PPP_HDLC,
];

fuzz_target!(|data: &[u8]| {
    if let Some((first, frame)) = data.split_first() {
        let link_type = LINKS[usize::from(*first) % LINKS.len()];
        if let Ok(p) = decode(link_type, frame) {
            assert!(p.payload.len() <= frame.len());
        }
    }
});
