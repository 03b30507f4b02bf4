//! xdp-audit: the userspace agent of an XDP packet-audit tool for Linux gateways.
//!
//! Modules follow the data path: `loader` -> `reader` -> `sweeper` -> `record` -> `sink`.
#![deny(missing_docs)]

pub mod clock;
pub mod cmd;
pub mod record;
pub mod sink;
pub mod store;
