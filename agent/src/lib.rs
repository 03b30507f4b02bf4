//! xdp-audit: the userspace agent of an XDP packet-audit tool for Linux gateways.
//!
//! Modules follow the data path: `loader` -> `reader` -> `sweeper` -> `record` -> `sink`;
//! `daemon` runs them as stages.
#![deny(missing_docs)]

pub mod alert;
pub mod blocklist;
pub mod bytesize;
pub mod causes;
pub mod clock;
pub mod cmd;
pub mod compliance;
pub mod config;
pub mod daemon;
pub mod enforce;
pub mod enrich;
pub mod flowtable;
pub mod invisible;
pub mod kept;
pub mod loader;
pub mod metrics;
pub mod net;
pub mod pod;
pub mod privilege;
pub mod reader;
pub mod record;
pub mod report;
pub mod ship;
pub mod sink;
pub mod span;
pub mod sql;
pub mod stats;
pub mod status;
pub mod store;
pub mod sweeper;
pub mod syslog;
#[doc(hidden)]
pub mod testlog;
pub mod throttle;
