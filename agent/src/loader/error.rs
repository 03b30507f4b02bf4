//! The loader's errors, each naming the interface or map at fault, and the hints they carry
//! (what to do about a refused load or a native attach refused for the MTU).

use std::io;

use aya::maps::MapError;
use aya::programs::ProgramError;

use super::AttachMode;
use crate::flowtable::FlowTableError;

/// Errors of loading and attaching, each naming the interface or map at fault.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The kernel refused the program or a map.
    #[error("cannot load the XDP program: {hint}")]
    Load {
        /// What the operator should check.
        hint: &'static str,
        /// The cause: the source, not in the message, since aya's errors carry causes
        /// of their own (the OS error) that only the chain shows.
        source: aya::EbpfError,
    },
    /// A map or program the object should contain is missing (a build mismatch).
    #[error("the XDP object has no {0}; the build is inconsistent")]
    Missing(&'static str),
    /// A program the agent needs is not in the object.
    #[error("the XDP object has no program {0}; the build is inconsistent")]
    MissingProgram(&'static str),
    /// The list maps are missing or malformed.
    #[error(transparent)]
    Lists(crate::enforce::EnforceError),
    /// No random key for domain hashes.
    #[error("cannot draw the key for domain hashes from getrandom(2): {0}")]
    Random(io::Error),
    /// A flow table is not what the agent reads it as (a build mismatch).
    #[error("{0}")]
    FlowTable(FlowTableError),
    /// The drop-record budgets could not be written into the program's FLOOD_CONFIG map.
    #[error("cannot set the drop-record budgets: {0}")]
    Flood(io::Error),
    /// The payload port table could not be written.
    #[error("cannot write port {port} into the payload port table PAYLOAD_PORTS: {source}")]
    PayloadPorts {
        /// The port being written.
        port: u16,
        /// The cause.
        source: MapError,
    },
    /// The slow path could not be put into its program array.
    #[error("cannot put the slow path program into the program array SLOW_PATH: {0}")]
    SlowPath(MapError),
    /// The slow path's file descriptor could not be duplicated.
    #[error("cannot duplicate the slow path program's file descriptor: {0}")]
    SlowPathFd(io::Error),
    /// Program load (verifier) failure.
    #[error("the kernel rejected the XDP program: {0}")]
    Verifier(ProgramError),
    /// No such interface.
    #[error("interface {0:?} does not exist (see `ip link`)")]
    NoSuchInterface(String),
    /// The interface's frames have no Ethernet header.
    #[error(
        "interface {iface:?} is not an Ethernet device (link type {link_type}, see \
         `ip -d link show {iface}`): XDP there sees packets without the Ethernet header the \
         program parses; attach to the Ethernet device that carries its traffic"
    )]
    NotEthernet {
        /// The interface.
        iface: String,
        /// Its ARPHRD_* link type (65534: none, as on tun and WireGuard; 512: PPP).
        link_type: u16,
    },
    /// Native mode asked on a bond ([`features::attach_mode`]).
    #[error(
        "interface {0:?} is a bond: native XDP runs on its member links, where the program \
         sees their interface indexes, not the bond's (its side and its flows); attach it \
         with --xdp-mode skb (auto does)"
    )]
    BondNative(String),
    /// The interface already has an XDP program.
    #[error(
        "interface {0:?} already has an XDP program attached (or, a bond's member, its \
         bond has one in native mode); detach it first (`ip link set dev {0} xdp off`) or \
         stop the agent that owns it"
    )]
    Busy(String),
    /// Not root / lacking capabilities.
    #[error("attaching to interface {0:?} needs root (CAP_NET_ADMIN and CAP_BPF): {1}")]
    Permission(String, io::Error),
    /// A pinned map or the ledger could not be opened, created or pinned.
    #[error("pinned map {path}: {cause}")]
    Pin {
        /// The pin.
        path: std::path::PathBuf,
        /// The cause (in the message, so not named `source`).
        cause: String,
    },
    /// Any other attach failure.
    #[error("cannot attach XDP to interface {iface:?} in {mode} mode{}", attach_hint(*mtu))]
    Attach {
        /// The interface.
        iface: String,
        /// The mode tried.
        mode: AttachMode,
        /// Refused for the MTU ([`too_large_mtu`]): the message says what to do.
        mtu: bool,
        /// The cause: the source, not in the message, since aya's errors carry causes
        /// of their own (the OS error) that only the chain shows.
        source: ProgramError,
    },
}

impl LoadError {
    /// The error with its causes, `: `-joined (as anyhow's `{:#}`), for what is kept and
    /// shown later (the refusal in `status` and its alert): an attach error leaves its OS
    /// error to the chain, and its text alone said nothing of it.
    pub fn with_causes(&self) -> String {
        crate::causes::with_causes(self)
    }

    /// Whether it is one interface's refusal (another program holds it, its driver or a
    /// bond refuses the mode): the start audits the others and watches this one, where a
    /// refusal of the program or of privileges fails it.
    pub fn is_one_interface(&self) -> bool {
        matches!(
            self,
            LoadError::Busy(_) | LoadError::Attach { .. } | LoadError::BondNative(_)
        )
    }
}

/// The OS error under `e`, if any.
pub(super) fn errno(e: &ProgramError) -> Option<i32> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return io.raw_os_error();
        }
        src = err.source();
    }
    None
}

/// What to try when the kernel refuses the object's load.
pub(super) fn load_hint(e: &aya::EbpfError) -> &'static str {
    let text = format!("{e:?}");
    if text.contains("PermissionDenied") || text.contains("EPERM") || text.contains("os error 1)") {
        "run as root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)"
    } else if text.contains("OutOfMemory") || text.contains("os error 12)") {
        // The flow tables are preallocated (LRU), two of them, and the ring buffer too.
        "the kernel could not allocate the maps: lower --flow-table-size (two tables of that \
         many entries are allocated up front) or --ringbuf-bytes, or check the memory cgroup \
         and RLIMIT_MEMLOCK"
    } else {
        "check the kernel supports BPF ring buffers and LRU maps (5.8 or later)"
    }
}

/// Whether a refused attach was refused for the MTU: native XDP refuses one larger than a
/// page holds (frames in several buffers need a multi-buffer program); the kernel says so
/// ("Peer MTU is too large to set XDP") only in its log, and bpf_link_create returns a bare
/// ERANGE.
pub(super) fn too_large_mtu(mode: AttachMode, errno: Option<i32>) -> bool {
    mode == AttachMode::Native && errno == Some(libc::ERANGE)
}

/// What to do about an attach refused for the MTU ([`too_large_mtu`]).
pub(super) fn attach_hint(mtu: bool) -> &'static str {
    if mtu {
        ": its MTU (on a veth, its peer's) is larger than native XDP takes without \
         multi-buffer frames (3,506 bytes on a veth, about a page on most drivers); lower it, \
         or run with --xdp-mode skb (whose counts are of frames after GRO)"
    } else {
        ""
    }
}
