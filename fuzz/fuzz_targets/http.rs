//! HTTP/1 (protocols/http.rs, http_connect.rs, http_proxy.rs): request and status lines, header
//! iteration and lookup, head end, evidence text, CONNECT authorities, absolute-form targets;
//! then the `http`, `http_connect` and `http_proxy` detectors.
#![no_main]
#[path = "common/mod.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use tunnelwatch::fingerprint::protocols::{http, http_connect, http_proxy};

fuzz_target!(|data: &[u8]| {
    if let Some(rl) = http::parse_request_line(data) {
        let _ = format!("{rl:?}");
        // A whole line reads the same as the kept start of a cut payload.
        assert_eq!(http::parse_request_line_cut(data), Some(rl));
    }
    if let Some(rl) = http::parse_request_line_cut(data) {
        assert!(rl.line_end <= data.len() && rl.target.len() < data.len());
    }
    let _ = http::parse_status_line(data);
    let from = data.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    for (name, value) in http::header_lines(data, from).take(256) {
        assert!(name.len() + value.len() <= data.len());
    }
    let _ = http::header_value(data, from, "host");
    if let Some(end) = http::head_end(data) {
        assert!(end <= data.len());
    }
    assert!(http::evidence_text(data, 64).chars().count() <= 64 + 3);
    let _ = http_connect::parse_authority(data);
    let _ = http_proxy::absolute_form_host(data);
    common::drive(&http::SPEC, data);
    common::drive(&http_connect::SPEC, data);
    common::drive(&http_proxy::SPEC, data);
});
