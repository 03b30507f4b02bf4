//! Rule ids: every kept entry gets an id that stays the same for as long as its key stays in
//! its list (so a reload that only moves lines rewrites no map value), and every live id
//! resolves to the file and line it came from.

use agent_common::rules::RuleId;

use super::tables::TableDelta;

/// Where a rule came from: a list file (index into the set's files) and a 1-based line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// Index of the file in the [`super::ListSet`] (or in the files given to `compile`).
    pub file: u32,
    /// 1-based line.
    pub line: u32,
}

/// Rule-id allocator. Ids of removed rules are reused, but only from the generation after
/// their removal, so a drop record the kernel wrote just before a reload still names the rule
/// it was written for.
#[derive(Clone, Debug, Default)]
pub struct IdAlloc {
    next: RuleId,
    free: Vec<RuleId>,
    released: Vec<RuleId>,
}

impl IdAlloc {
    /// Makes ids released in the previous generation available.
    pub fn begin_generation(&mut self) {
        self.free.append(&mut self.released);
    }

    pub(super) fn alloc(&mut self) -> RuleId {
        self.free.pop().unwrap_or_else(|| {
            let id = self.next;
            self.next = self.next.saturating_add(1);
            id
        })
    }

    pub(super) fn release(&mut self, id: RuleId) {
        self.released.push(id);
    }

    /// One past the highest id ever handed out: the size a per-rule counter array needs.
    pub fn high_water(&self) -> RuleId {
        self.next
    }
}

/// Where ids are recorded while compiling: the origin of every live id, and the ids newly
/// handed out (whose hit counters the loader resets).
pub struct IdContext<'a> {
    /// The allocator.
    pub ids: &'a mut IdAlloc,
    /// Origin by rule id.
    pub origins: &'a mut Vec<Origin>,
    /// Ids assigned in this compile.
    pub assigned: &'a mut Vec<RuleId>,
}

impl IdContext<'_> {
    fn set_origin(&mut self, id: RuleId, origin: Origin) {
        let i = id as usize;
        if self.origins.len() <= i {
            self.origins.resize(i + 1, origin);
        }
        self.origins[i] = origin;
    }

    /// Merge-joins the new sorted `(key, origin)` entries with the previous sorted table:
    /// keys in both keep their id (only the origin is refreshed), new keys get an id and an
    /// upsert, vanished keys a remove. Linear in the table sizes.
    pub(super) fn join<K: Ord + Copy>(
        &mut self,
        prev: &[(K, RuleId)],
        next: Vec<(K, Origin)>,
        delta: &mut TableDelta<K>,
    ) -> Vec<(K, RuleId)> {
        let mut out = Vec::with_capacity(next.len());
        // Ids stay below the high-water mark plus this table's size: reserve that once, exactly,
        // instead of letting the origin table double past it.
        let bound = self.ids.high_water() as usize + next.len();
        if self.origins.capacity() < bound {
            self.origins.reserve_exact(bound - self.origins.len());
        }
        self.diff_region(prev, &next, &mut out, delta);
        out
    }
}

impl IdContext<'_> {
    /// Diffs the old and new kept entries of one region (both sorted by key), appending the
    /// new ones with their ids to `out` and recording the delta.
    pub(super) fn diff_region<K: Ord + Copy>(
        &mut self,
        old: &[(K, RuleId)],
        new: &[(K, Origin)],
        out: &mut Vec<(K, RuleId)>,
        delta: &mut TableDelta<K>,
    ) {
        let mut p = old.iter().peekable();
        for &(key, origin) in new {
            while let Some(&&(pk, pid)) = p.peek() {
                if pk >= key {
                    break;
                }
                delta.remove.push(pk);
                self.ids.release(pid);
                p.next();
            }
            let id = match p.peek() {
                Some(&&(pk, pid)) if pk == key => {
                    p.next();
                    pid
                }
                _ => {
                    let id = self.ids.alloc();
                    delta.upsert.push((key, id));
                    self.assigned.push(id);
                    id
                }
            };
            self.set_origin(id, origin);
            out.push((key, id));
        }
        for &(pk, pid) in p {
            delta.remove.push(pk);
            self.ids.release(pid);
        }
    }
}
