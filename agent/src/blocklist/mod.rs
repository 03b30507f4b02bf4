//! Blocklists and allowlists: list files -> kernel-ready tables, and reloads that change
//! only what an edit changed.
//!
//! The data path: [`mod@line`] turns each line into entries or a typed [`LineError`] (addresses
//! and prefixes through [`crate::net`], names through [`domain`]), [`parse`] does a whole file
//! on all cores and [`reparse`] only the lines an edit changed, [`compile`] folds each list
//! kind into [`tables`] keyed as the kernel maps are keyed ([`agent_common::rules`]) with
//! stable rule ids ([`ids`]), [`ListSet`] keeps the last good version of every file, refuses
//! a reload the kernel tables cannot hold, and hands the run loop a [`Delta`] per reload, and
//! [`watch`] tells the run loop when to reload. [`check`] is `blocklist check`; [`error`]
//! holds what is reported.
//!
//! Semantics (the full reference is `docs/list-format.md`):
//! - A domain rule (`example.com`, `*.example.com`, `||example.com^`, a hosts-file name)
//!   matches the name itself and every name under it. `*.example.com` therefore also covers
//!   `example.com`: the kernel looks suffixes up by hash, one probe per label, and has no
//!   "strictly below" bit to test.
//! - `port N` means TCP and UDP; ports are the remote side's.
//! - A CIDR with host bits set is an error, not silently masked.
//! - A file with any bad line is not applied; its last good version stays in force. A file
//!   that cannot be read (missing, unreadable), or a reload that would outgrow a kernel table,
//!   is treated the same way.
//! - Domain names are matched by hashes keyed with the program's secret
//!   ([`agent_common::domain`]): a [`ListSet`] hashes with the key the program holds.
//!
//! Running it: call [`use_mmap_for_large_buffers`] once at start-up; make the [`ListSet`]
//! with the program's key ([`random_key`] for a program about to be loaded, or the key read
//! back from a running one); [`ListSet::reload_all`]; size the tables
//! ([`Capacity::for_lists`]), tell the set ([`ListSet::set_capacity`]) and load the program
//! with those sizes and that key; then [`ListSet::reload_all`] on SIGHUP and
//! [`ListSet::reload_many`] with each [`watch::ListWatcher`] report. Reloads are synchronous and CPU-bound (a 1M-entry list costs ~0.1 s for an edit,
//! ~0.5 s for a full load), so call them from `tokio::task::spawn_blocking` or a dedicated
//! thread. Apply each [`Delta`] in the order its documentation gives.

pub mod check;
pub mod compile;
pub mod domain;
pub mod error;
pub mod ids;
pub mod line;
pub mod parse;
pub mod reparse;
pub mod set;
pub mod tables;
pub mod watch;

use std::fmt;

pub use check::{check_files, FileCheck};
pub use domain::random_key;
pub(crate) use error::clipped;
pub use error::{warn_diagnostics, Diagnostic, LineError, Problem, DIAGNOSTICS_SHOWN};
pub use ids::Origin;
pub use parse::{LineStats, ParsedList};
pub use set::{CompiledLists, Delta, ListSet, ListSpec, RuleOrigin};
pub use tables::{Capacity, CompileStats, CompiledList, ListDelta, PortSlot, Table, TableDelta};

/// Which verdict a list gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// Matches pass, whatever the blocklists say.
    Allow,
    /// Matches are dropped.
    Block,
}

impl fmt::Display for ListKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListKind::Allow => "allowlist",
            ListKind::Block => "blocklist",
        })
    }
}

/// Hands the heap freed by a compile back to the kernel. A million-entry compile frees
/// hundreds of MiB of scratch vectors that glibc would otherwise keep mapped, so the agent's
/// RSS would stay at the compile's peak for its whole life.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes glibc give every allocation of 1 MiB or more its own mapping, unmapped when freed.
/// Call once at agent start-up, before loading lists.
///
/// Without it glibc raises its mmap threshold after the first large free, so a compile's
/// large scratch vectors land in the heap, interleave with long-lived allocations and stay
/// resident. The blocklist bench measures this: with 1,000,000 entries loaded, RSS grows by
/// about half as much with the setting as without.
pub fn use_mmap_for_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; M_MMAP_THRESHOLD takes a byte count.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "xdp-audit-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).expect("create temp dir");
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A fresh random domain key.
    pub(crate) fn key() -> agent_common::domain::DomainKey {
        crate::blocklist::domain::random_key().expect("getrandom")
    }

    /// Writes a list file.
    pub(crate) fn write(p: &Path, s: &str) {
        std::fs::write(p, s).expect("write list");
    }

    /// A tiny deterministic generator, so the fuzz-style tests need no dependency.
    pub(crate) struct XorShift(pub u64);

    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }
}
