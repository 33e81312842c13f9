//! Features shared by several detectors: TLS/QUIC ClientHello facts, byte statistics.
