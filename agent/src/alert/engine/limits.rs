//! The limits on traffic alerts (first hits, bursts): each raised alert is a line of the
//! agent's log and of `alerts.jsonl` in the store, and a flood of spoofed sources would
//! raise one per source. Past a limit, the clients kept out are counted in one alert per
//! (id, rule) with no client.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::{Engine, Now, SubjectRef, MAX_OVERFLOW};
use crate::alert::{Alert, AlertId, Subject};

/// The counts the limits hold, borrowed apart from the active alerts (a sweep releases
/// while it walks them).
pub(super) struct Slots<'a> {
    pub(super) traffic: &'a mut [usize; 2],
    pub(super) overflow: &'a mut usize,
    pub(super) rules: &'a mut HashMap<String, usize, RandomState>,
}

impl Slots<'_> {
    /// Frees the slot the active alert `(id, s)` held against its limits.
    pub(super) fn release(&mut self, id: AlertId, s: &Subject) {
        if Engine::is_overflow(id, SubjectRef::of(s)) {
            *self.overflow -= 1;
        } else if id.is_traffic() {
            self.traffic[Engine::traffic_slot(id)] -= 1;
            if let Some(r) = s.rule.as_deref().filter(|_| id == AlertId::BlockFirst) {
                if let Some(n) = self.rules.get_mut(r) {
                    *n -= 1;
                    if *n == 0 {
                        self.rules.remove(r);
                    }
                }
            }
        }
    }
}

impl Engine {
    /// Raises the alert `(id, subject)` or adds `n` to the active one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn touch(
        &mut self,
        id: AlertId,
        subject: SubjectRef<'_>,
        text: impl FnOnce() -> String,
        n: u64,
        hold_ns: i64,
        now: Now,
        out: &mut Vec<Alert>,
    ) {
        if self.bump(id, subject, n, now) {
            return;
        }
        if id.is_traffic() {
            if !self.room(id, subject) {
                self.suppressed += 1;
                self.overflow(id, subject.rule, n, hold_ns, now, out);
                return;
            }
            self.take_slot(id, subject);
        }
        self.raise(id, subject.owned(), text(), n, hold_ns, now, out);
    }

    /// Whether the alert `(id, subject)` may be raised (or carried) within the limits.
    pub(super) fn room(&self, id: AlertId, subject: SubjectRef<'_>) -> bool {
        if Self::is_overflow(id, subject) {
            self.overflow_active < MAX_OVERFLOW
        } else if id.is_traffic() {
            self.traffic_active[Self::traffic_slot(id)] < self.max_active
                && !self.rule_full(id, subject)
        } else {
            true
        }
    }

    /// Whether the first-hit alerts of `subject`'s rule are at their own limit.
    fn rule_full(&self, id: AlertId, subject: SubjectRef<'_>) -> bool {
        id == AlertId::BlockFirst
            && (subject.rule)
                .and_then(|r| self.rule_active.get(r))
                .is_some_and(|&n| n >= self.max_per_rule)
    }

    /// Takes the slots the alert `(id, subject)` holds against the limits.
    pub(super) fn take_slot(&mut self, id: AlertId, subject: SubjectRef<'_>) {
        if Self::is_overflow(id, subject) {
            self.overflow_active += 1;
        } else if id.is_traffic() {
            self.traffic_active[Self::traffic_slot(id)] += 1;
            if let Some(r) = subject.rule.filter(|_| id == AlertId::BlockFirst) {
                match self.rule_active.get_mut(r) {
                    Some(n) => *n += 1,
                    None => {
                        self.rule_active.insert(r.to_owned(), 1);
                    }
                }
            }
        }
    }

    /// A traffic condition a limit keeps out is still said, in one alert per (id, rule)
    /// with no client that counts the blocked records of every client kept out: a flood of
    /// spoofed sources fills the limit with its own alerts, but a real host blocked by
    /// another rule during it still shows. Bounded by [`MAX_OVERFLOW`]; past it, only
    /// `suppressed` counts.
    #[allow(clippy::too_many_arguments)]
    fn overflow(
        &mut self,
        id: AlertId,
        rule: Option<&str>,
        n: u64,
        hold_ns: i64,
        now: Now,
        out: &mut Vec<Alert>,
    ) {
        let subject = SubjectRef {
            rule,
            ..SubjectRef::default()
        };
        if self.bump(id, subject, n, now) {
            return;
        }
        if self.overflow_active >= MAX_OVERFLOW {
            return;
        }
        self.overflow_active += 1;
        let (limit, per_rule) = (self.max_active, self.max_per_rule);
        let full = self.traffic_active[Self::traffic_slot(id)] >= limit;
        let text = match (id, rule) {
            (AlertId::BlockBurst, _) => format!(
                "blocked records of clients over the burst threshold while {limit} burst alerts are active (--alert-max-active): counted here, not alerted one by one"
            ),
            (_, Some(r)) if !full => format!(
                "blocked records of clients blocked by {r} while {per_rule} first-hit alerts of that rule are active (--alert-max-per-rule): counted here, not alerted one by one"
            ),
            (_, Some(r)) => format!(
                "blocked records of clients blocked by {r} while {limit} first-hit alerts are active (--alert-max-active): counted here, not alerted one by one"
            ),
            (_, None) => format!(
                "blocked records of clients blocked while {limit} first-hit alerts are active (--alert-max-active): counted here, not alerted one by one"
            ),
        };
        self.raise(id, subject.owned(), text, n, hold_ns, now, out);
    }

    /// Which of `traffic_active` counts the traffic alert `id`.
    pub(super) fn traffic_slot(id: AlertId) -> usize {
        usize::from(id == AlertId::BlockBurst)
    }

    /// Whether the active alert `(id, s)` is an [`Engine::overflow`] one.
    pub(super) fn is_overflow(id: AlertId, s: SubjectRef<'_>) -> bool {
        id.is_traffic() && s.client.is_none() && s.user.is_none()
    }
}
