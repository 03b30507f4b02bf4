//! Flows whose start event the ring buffer lost: those a walk of the table finds (written
//! from it), and those the LRU evicted before any walk found them (lost unseen, counted
//! against the program's `lost_flow_start`).

use tracing::warn;

use super::{tally, Sweeper};

impl Sweeper {
    /// The program's `lost_flow_start` counter as the last agent read it, for an agent that
    /// adopted its program (0 for one it loaded): flows whose start was lost while no agent
    /// ran (or before this one's first sweep), and the LRU evicted before that sweep, are
    /// counted unseen from there instead of vanishing into the first sweep's base.
    pub fn lost_starts_before(&mut self, kernel_total: u64) {
        self.lost_starts_base = Some((kernel_total, 0));
    }

    /// The program's `lost_flow_start` counter, read before a sweep: after it, the sweep
    /// works out how many of those flows it never found ([`SweepStats::lost_unseen`]).
    pub fn note_lost_starts(&mut self, kernel_total: u64) {
        self.kernel_lost_starts = Some(kernel_total);
    }

    /// Counts one flow whose start event was lost, found by a later event of it (a first
    /// drop, a closed flow's last snapshot) rather than a walk: not among those unseen.
    pub(super) fn found_lost_start(&mut self) {
        tally(
            &mut self.stats.lost_starts,
            &mut self.warnings.lost_starts,
            1,
            "the ring buffer lost these flows' start events; later events of them were recorded",
        );
    }

    /// Counts the `found` flows a retired table held that no agent knew (their start events
    /// lost), and, against `lost` (each old program's `lost_flow_start` and the last agent's
    /// reading of it), those its table evicted unseen. `known` more such flows are counted
    /// elsewhere: moved into the new table (whose walk counts them) or revealed by the old
    /// ring's events. A program without a reading (none, or one above its counter: another
    /// program's) is not counted: what it lost before is not known.
    pub(super) fn count_retired_lost_starts(
        &mut self,
        found: u64,
        known: u64,
        lost: &[(u64, Option<u64>)],
    ) {
        // Not the new program's: out of the base its own losses are counted against (moved
        // flows are counted found by its walk).
        if let Some((_, found0)) = self.lost_starts_base.as_mut() {
            *found0 += found + known;
        }
        if found > 0 {
            tally(
                &mut self.stats.lost_starts,
                &mut self.warnings.lost_starts,
                found,
                "the replaced program's ring lost these flows' start events; the sweeper records them from its table",
            );
        }
        let since: u64 = (lost.iter())
            .filter_map(|&(total, read)| read.filter(|&r| r <= total).map(|r| total - r))
            .sum();
        let unseen = since.saturating_sub(found + known);
        if unseen > 0 {
            self.unseen_retired += unseen;
            self.stats.lost_unseen += unseen;
            warn!(
                flows = unseen,
                total = self.stats.lost_unseen,
                "flows whose start event the replaced program's ring lost (it filled while no agent read it) were evicted from its table: they have no record"
            );
        }
    }

    /// Counts the `found` flows a walk of the table met without their start event, and
    /// works out how many more the LRU evicted unseen ([`Sweeper::count_unseen`]).
    pub(super) fn count_lost_starts(&mut self, found: u64) {
        tally(
            &mut self.stats.lost_starts,
            &mut self.warnings.lost_starts,
            found,
            "the ring buffer lost these flows' start events; the sweeper records them from the table",
        );
        self.count_unseen();
    }

    /// Every start the program lost before its counter was read is a flow this sweep found
    /// in the table, or one the LRU evicted unseen: the difference since the first sweep
    /// is a lower bound of those (a start lost after the read and found by the walk only
    /// makes it smaller until the next sweep's read counts it).
    fn count_unseen(&mut self) {
        let Some(kernel) = self.kernel_lost_starts.take() else {
            return;
        };
        let found = self.stats.lost_starts;
        // A last agent's reading above the program's counter was another program's (a
        // detach since): this agent's first reading is the base then.
        if self.lost_starts_base.is_some_and(|(k0, _)| k0 > kernel) {
            self.lost_starts_base = None;
        }
        let (kernel0, found0) = *self.lost_starts_base.get_or_insert((kernel, found));
        let unseen = kernel
            .saturating_sub(kernel0)
            .saturating_sub(found.saturating_sub(found0))
            + self.unseen_retired;
        if unseen > self.stats.lost_unseen {
            let n = unseen - self.stats.lost_unseen;
            self.stats.lost_unseen = unseen;
            if let Some(n) = self.warnings.lost_unseen.hit(n) {
                warn!(
                    flows = n,
                    total = unseen,
                    "flows whose start event the ring lost were evicted from the full table before a sweep found them: they have no record; raise --ringbuf-bytes and --flow-table-size (logged at most every 10 s)"
                );
            }
        }
    }
}
