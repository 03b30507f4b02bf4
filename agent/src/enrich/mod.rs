//! Attribution: who and what behind a flow record. Each source (subscribers file, DHCP
//! leases and packets, conntrack NAT mappings, names from payloads and DNS) keeps its own
//! time-windowed view; the join asks each for what was true at the flow's start, never at
//! query time.
//!
//! Every source keeps bindings with a [`Validity`] window in Unix nanoseconds, the unit of
//! [`crate::record::FlowRecord::time_start_ns`].

pub mod dhcp;
pub mod identity;
pub mod inputs;
pub mod leases;
pub mod names;
pub mod nat;
pub mod prefetch;
pub mod source;
pub mod stage;
pub mod subscribers;

/// When a binding holds: `[from, to)` in Unix nanoseconds; `None` is unbounded on that side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Validity {
    /// First instant the binding holds, inclusive; `None`: since forever.
    pub from: Option<i64>,
    /// First instant it no longer holds, exclusive; `None`: still holds.
    pub to: Option<i64>,
}

impl Validity {
    /// Holds at every instant.
    pub const ALWAYS: Validity = Validity {
        from: None,
        to: None,
    };

    /// Whether the binding holds at `t_ns`.
    pub fn contains(&self, t_ns: i64) -> bool {
        self.from.is_none_or(|f| t_ns >= f) && self.to.is_none_or(|e| t_ns < e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_half_open() {
        let v = Validity {
            from: Some(10),
            to: Some(20),
        };
        assert!(!v.contains(9));
        assert!(v.contains(10));
        assert!(v.contains(19));
        assert!(!v.contains(20));
        assert!(Validity::ALWAYS.contains(i64::MIN));
        assert!(Validity {
            from: Some(5),
            to: None
        }
        .contains(i64::MAX));
    }
}
