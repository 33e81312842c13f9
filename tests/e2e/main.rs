//! End-to-end tests: the `tunnelwatch` binary run as a user would run it.
//! One test crate (modules below) so the large binary links once.

mod bad_input;
mod cli;
mod corpus;
mod hostile;
mod report;
mod util;
