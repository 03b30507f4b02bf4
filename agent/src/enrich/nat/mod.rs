//! NAT mappings from conntrack: which outside address and port a gateway's SNAT/MASQUERADE
//! gave each inside flow, and when.
//!
//! - [`ConntrackListener`] follows conntrack's new and destroy events over netlink on its own
//!   thread, dumps the table at start, after a loss (ENOBUFS) and periodically, and hands
//!   [`NatUpdate`]s to a sink in order.
//! - [`NatTable`] applies them and answers the two questions: the outside tuple of a flow
//!   (by inside tuple and time, [`NatTable::lookup_inside`]) and the inside flows behind an
//!   outside address and port (by time, [`NatTable::lookup_outside`]). Closed sessions are
//!   handed out once ([`NatTable::take_closed`]) so sessions without an XDP flow still get a
//!   NAT record.
//! - [`parse`] is the ctnetlink codec both use.

mod index;
mod listener;
pub mod parse;
mod socket;
mod sysctl;
mod table;

use std::path::PathBuf;

pub use listener::{ConntrackListener, ListenerConfig, ListenerCounters};
pub use table::carry::SavedSession;
pub use table::{
    Closed, DumpReason, InsideKey, Learned, NatSession, NatTable, NatUpdate, OutsideKey,
    TableConfig, TableStats,
};

/// Why the conntrack listener could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    /// The network namespace to listen in could not be joined.
    #[error(
        "conntrack listener: join network namespace {path}: {source} (does it exist? run as root)"
    )]
    Netns {
        /// The namespace file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A socket call failed.
    #[error("conntrack netlink socket: {what}: {source}")]
    Socket {
        /// The call.
        what: &'static str,
        /// What failed.
        source: std::io::Error,
    },
    /// Subscribing to a conntrack event group failed.
    #[error("conntrack netlink: subscribe to {group}: {source} (needs CAP_NET_ADMIN and the nf_conntrack_netlink module)")]
    Subscribe {
        /// The multicast group.
        group: &'static str,
        /// What failed.
        source: std::io::Error,
    },
    /// A conntrack sysctl could not be read or set.
    #[error("conntrack sysctl {path}: {source} (is nf_conntrack loaded in this namespace? run as root, or turn enable_sysctls off and set it yourself)")]
    Sysctl {
        /// The sysctl file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The capture file could not be opened.
    #[error("conntrack capture file {path}: {source}")]
    Capture {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The kernel refused the dump request.
    #[error("conntrack dump refused: {0}")]
    DumpRefused(std::io::Error),
    /// The dump could not be read.
    #[error("conntrack dump: {0}")]
    Dump(&'static str),
    /// A dump message did not parse.
    #[error(transparent)]
    Parse(#[from] parse::ParseError),
    /// The listener thread ended before reporting whether it started.
    #[error("the conntrack listener thread ended before it started")]
    ThreadDied,
}
