//! The version in force of each list file, kept for the next agent ([`LISTS_KEPT`]): written
//! as a reload changes it, put in force at a start in place of a file that does not load.

use std::path::Path;

use tracing::warn;

use super::{Good, ListSet};
use crate::blocklist::parse::ParsedList;
use crate::kept::Kept;

/// The bytes of each list file's version in force, one file each in this directory of the
/// state directory, named by a hash of the file's path: at a start, a file found empty,
/// damaged or unreadable is replaced by them until it loads, as a reload keeps the version
/// in force. (Without them, such a file's rules were not enforced after a start on no pinned
/// program, a reboot or a `detach`, until it was fixed.)
pub const LISTS_KEPT: &str = "lists-kept";

impl ListSet {
    /// Keeps each file's version in force in `state_dir` ([`LISTS_KEPT`]) for the next
    /// agent, and at this start puts the version the last agent kept there in force in place
    /// of a file found empty, damaged or unreadable. Removes the copies of files no longer
    /// configured.
    pub fn keeping(mut self, state_dir: &Path) -> Self {
        let kept = Kept::new(state_dir.join(LISTS_KEPT), "list");
        kept.forget_others(self.files.iter().map(|f| f.path.as_path()));
        self.kept = Some(kept);
        self
    }

    /// File `i`'s version kept by the last agent, parsed; `None` (logged) if there is none
    /// or it cannot be used.
    pub(super) fn kept_version(&self, i: usize) -> Option<Good> {
        let (kept, path) = (self.kept.as_ref()?, &self.files[i].path);
        let copy = kept.path_of(path);
        let source = match kept.read(path) {
            Ok(bytes) => bytes?,
            Err(e) => {
                warn!(file = %path.display(), kept = %copy.display(), error = %e, "cannot read the version of the list file the last agent applied");
                return None;
            }
        };
        match ParsedList::parse(&source, &self.key) {
            Ok(parsed) => Some(Good { source, parsed }),
            Err(_) => {
                warn!(file = %path.display(), kept = %copy.display(), "the kept version of the list file does not parse: it is not used");
                None
            }
        }
    }

    /// Puts `good`, file `i`'s kept version, in force in place of the file, which did not
    /// load at this start.
    pub(super) fn restore(&mut self, i: usize, good: Good) {
        let file = &mut self.files[i];
        warn!(
            file = %file.path.display(),
            rules = good.parsed.entries(),
            "the list file cannot be applied at this start: the version the last agent \
             applied is in force until it loads (its rules are named by that version's lines)"
        );
        file.good = Some(good);
        self.staged.push((i, None));
        self.pending.push((i, None));
    }

    /// Keeps the version now in force of each file the reload changed, for the next agent.
    /// Before the kernel maps are written: an agent killed between the two leaves a copy of
    /// a good version the next applies, never an older one than the program enforced.
    pub(super) fn keep_staged(&self) {
        let Some(kept) = &self.kept else { return };
        for (i, _) in &self.staged {
            let file = &self.files[*i];
            let Some(good) = &file.good else { continue };
            if let Err(e) = kept.keep(&file.path, &good.source) {
                warn!(file = %file.path.display(), dir = %kept.dir().display(), error = %e, "cannot keep the list file's version in force for the next agent");
            }
        }
    }
}
