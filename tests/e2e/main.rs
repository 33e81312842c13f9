//! End-to-end tests: the `tunnelwatch` binary run as a user would run it.
//! One test crate (modules below) so the large binary links once.

mod bad_input;
mod cli;
mod corpus;
mod filter;
mod flood;
mod flow_logs;
mod hostile;
mod interrupt;
#[cfg(feature = "live")]
mod live;
mod privacy;
mod report;
mod scenarios;
mod snaplen;
mod synth_tshark;
mod util;
