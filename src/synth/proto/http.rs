//! Cleartext HTTP/1.1 (RFC 9112): a GET request and a response whose Content-Length equals the
//! body that follows, so a reassembling dissector sees complete messages.

use crate::synth::rng::Rng;

/// `GET path HTTP/1.1` with Host, User-Agent, Accept and Connection headers.
pub fn request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) \
         AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36\r\nAccept: */*\r\n\
         Accept-Encoding: identity\r\nConnection: keep-alive\r\n\r\n"
    )
    .into_bytes()
}

/// A `200 OK` response with a `body_len`-byte printable body.
pub fn response(rng: &mut Rng, content_type: &str, body_len: usize) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {body_len}\r\n\
         Cache-Control: max-age=300\r\nConnection: keep-alive\r\n\r\n"
    )
    .into_bytes();
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,\n";
    out.extend((0..body_len).map(|_| ALPHA[rng.below(ALPHA.len() as u64) as usize]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_matches_body() {
        let mut rng = Rng::new(1);
        let r = response(&mut rng, "text/plain", 123);
        let text = String::from_utf8(r).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("Content-Length: 123"));
        assert_eq!(body.len(), 123);
        assert!(request("a.example", "/").starts_with(b"GET / HTTP/1.1\r\nHost: a.example\r\n"));
    }
}
