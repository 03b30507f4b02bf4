//! Rule ids: every kept entry gets an id that stays the same for as long as its key stays in
//! its list (so a reload that only moves lines rewrites no map value), and every live id
//! resolves to the file and line it came from.

use agent_common::rules::{self, RuleId, REFUSE};

use super::tables::TableDelta;

/// Where a rule came from: a list file (index into the set's files) and a 1-based line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// Index of the file in the [`super::ListSet`] (or in the files given to `compile`).
    pub file: u32,
    /// 1-based line.
    pub line: u32,
}

impl Origin {
    /// The origin of a rule read back from a running program's maps, before a reload has
    /// found it in a file: it names no file.
    pub const UNKNOWN: Origin = Origin {
        file: u32::MAX,
        line: 0,
    };
}

/// Rule-id allocator. Ids of removed rules are reused, but only from the generation after
/// their removal, so a drop record the kernel wrote just before a reload still names the rule
/// it was written for; and, with a hold ([`IdAlloc::set_hold`]), only once it has passed, so
/// per-rule figures the agent reads later (a flood window's summaries) are not merged with
/// a new rule's under the same id, nor named after it.
#[derive(Clone, Debug, Default)]
pub struct IdAlloc {
    next: RuleId,
    free: Vec<RuleId>,
    /// Ids removed, with when; oldest first.
    released: Vec<(RuleId, std::time::Instant)>,
    hold: std::time::Duration,
}

impl IdAlloc {
    /// An allocator for a program whose maps already hold `used`: every other id below the
    /// highest is free.
    pub fn with_used(used: &[RuleId]) -> IdAlloc {
        let next = used.iter().max().map_or(0, |m| m.saturating_add(1));
        let mut taken = vec![false; next as usize];
        for &id in used {
            taken[id as usize] = true;
        }
        // Reversed, so the lowest free id is handed out first.
        let free = (0..next).rev().filter(|&id| !taken[id as usize]).collect();
        IdAlloc {
            next,
            free,
            released: Vec::new(),
            hold: std::time::Duration::ZERO,
        }
    }

    /// Keeps a removed rule's id from reuse for at least `hold` after the reload that
    /// removed it.
    pub fn set_hold(&mut self, hold: std::time::Duration) {
        self.hold = hold;
    }

    /// The hold in force.
    pub fn hold(&self) -> std::time::Duration {
        self.hold
    }

    /// Makes ids released in earlier generations available, those whose hold has passed.
    pub fn begin_generation(&mut self) {
        let held = self
            .released
            .iter()
            .position(|(_, at)| at.elapsed() < self.hold)
            .unwrap_or(self.released.len());
        self.free
            .extend(self.released.drain(..held).map(|(id, _)| id));
    }

    pub(super) fn alloc(&mut self) -> RuleId {
        self.free.pop().unwrap_or_else(|| {
            let id = self.next;
            self.next = self.next.saturating_add(1);
            id
        })
    }

    pub(super) fn release(&mut self, id: RuleId) {
        self.released.push((id, std::time::Instant::now()));
    }

    /// One past the highest id ever handed out: the size a per-rule counter array needs.
    pub fn high_water(&self) -> RuleId {
        self.next
    }
}

/// What a compile changed in the origin table, so a compile the kernel tables cannot hold is
/// taken back exactly, without a copy of a table as long as the lists: the origins it
/// overwrote, and the ids whose lines an edit moved.
#[derive(Debug)]
pub struct OriginLog {
    /// Length of the table before the compile; later slots are new.
    len: usize,
    /// Overwritten origins, in order.
    writes: Vec<(RuleId, Origin)>,
    /// Line moves: how many writes came before, which ids moved (a bit per id), by how much.
    moves: Vec<(usize, Vec<u64>, i64)>,
}

impl OriginLog {
    /// An empty log for `origins` as they are now.
    pub fn new(origins: &[Origin]) -> OriginLog {
        OriginLog {
            len: origins.len(),
            writes: Vec::new(),
            moves: Vec::new(),
        }
    }

    /// Puts `origins` back as they were when the log began.
    pub fn undo(self, origins: &mut Vec<Origin>) {
        let mut writes = self.writes;
        for (at, moved, by) in self.moves.into_iter().rev() {
            for (id, old) in writes.drain(at..).rev() {
                origins[id as usize] = old;
            }
            for (w, &bits) in moved.iter().enumerate() {
                let mut rest = bits;
                while rest != 0 {
                    let o = &mut origins[w * 64 + rest.trailing_zeros() as usize];
                    o.line = (i64::from(o.line) - by) as u32;
                    rest &= rest - 1;
                }
            }
        }
        for (id, old) in writes.into_iter().rev() {
            origins[id as usize] = old;
        }
        origins.truncate(self.len);
    }
}

/// Where ids are recorded while compiling: the origin of every live id, and the ids newly
/// handed out (whose hit counters the loader resets).
///
/// A table's values are what the kernel map holds: the rule id, with [`REFUSE`] set when the
/// file the rule comes from refuses (`refuse`, by file index); a kept key whose file's
/// setting changed is upserted with its new value.
pub struct IdContext<'a> {
    /// Whether each file (by index) wants its blocked packets refused; files past its end
    /// do not.
    pub refuse: &'a [bool],
    /// The allocator.
    pub ids: &'a mut IdAlloc,
    /// Origin by rule id.
    pub origins: &'a mut Vec<Origin>,
    /// Ids assigned in this compile.
    pub assigned: &'a mut Vec<RuleId>,
    /// Where changes to `origins` are logged, when the compile may have to be taken back.
    pub log: Option<&'a mut OriginLog>,
}

impl IdContext<'_> {
    #[inline]
    fn set_origin(&mut self, id: RuleId, origin: Origin) {
        let i = id as usize;
        if self.origins.len() <= i {
            self.origins.resize(i + 1, origin);
        }
        let old = self.origins[i];
        // Most origins survive a reload as they were: only a change is written (and logged).
        if old == origin {
            return;
        }
        if let Some(log) = self.log.as_deref_mut() {
            if i < log.len {
                log.writes.push((id, old));
            }
        }
        self.origins[i] = origin;
    }

    /// Moves the lines of `file` from `from` on by `by`: an edit added or removed lines
    /// before them.
    pub(super) fn move_lines(&mut self, file: u32, from: u32, by: i64) {
        let mut moved = match self.log {
            Some(_) => vec![0u64; self.origins.len().div_ceil(64)],
            None => Vec::new(),
        };
        for (i, o) in self.origins.iter_mut().enumerate() {
            if o.file == file && o.line >= from {
                o.line = (i64::from(o.line) + by) as u32;
                if let Some(bits) = moved.get_mut(i / 64) {
                    *bits |= 1 << (i % 64);
                }
            }
        }
        if let Some(log) = self.log.as_deref_mut() {
            log.moves.push((log.writes.len(), moved, by));
        }
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
                self.ids.release(rules::rule_id(pid));
                p.next();
            }
            let flag = if self.refuse.get(origin.file as usize) == Some(&true) {
                REFUSE
            } else {
                0
            };
            let id = match p.peek() {
                Some(&&(pk, pid)) if pk == key => {
                    p.next();
                    let id = rules::rule_id(pid);
                    if id | flag != pid {
                        delta.upsert.push((key, id | flag));
                    }
                    id
                }
                _ => {
                    let id = self.ids.alloc();
                    delta.upsert.push((key, id | flag));
                    self.assigned.push(id);
                    id
                }
            };
            self.set_origin(id, origin);
            out.push((key, id | flag));
        }
        for &(pk, pid) in p {
            delta.remove.push(pk);
            self.ids.release(rules::rule_id(pid));
        }
    }
}
