//! The list of protocol detectors. Adding a protocol: one file in `protocols/`, one line here.

use super::Spec;
#[allow(unused_imports)]
use super::protocols::*;

/// Every detector the driver offers flows to, in registry order (ties in rank go to the
/// earlier entry).
pub static REGISTRY: &[&Spec] = &[
];
