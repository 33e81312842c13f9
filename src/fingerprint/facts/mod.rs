//! Features shared by several detectors: TLS/QUIC ClientHello facts, byte statistics.

pub mod entropy;
pub mod quic;
pub mod tls;
