//! Features shared by several detectors: TLS/QUIC ClientHello facts, byte statistics.

pub mod entropy;
pub mod tls;
pub mod quic;
