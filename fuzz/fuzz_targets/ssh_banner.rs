//! SSH identification lines and KEXINIT (protocols/ssh.rs), tinc ID/METAKEY lines
//! (protocols/tinc.rs); then the `ssh` and `tinc` detectors.
#![no_main]
#[path = "common/mod.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use tunnelwatch::fingerprint::protocols::{ssh, tinc};

fuzz_target!(|data: &[u8]| {
    if let Some(id) = ssh::parse_ident_line(data) {
        let _ = format!("{id:?}");
    }
    let _ = ssh::find_ident(data);
    let _ = ssh::is_kexinit(data);
    let _ = tinc::parse_id_line(data);
    let _ = tinc::is_metakey_line(data);
    common::drive(&ssh::SPEC, data);
    common::drive(&tinc::SPEC, data);
});
