//! Rule ids named for records: `FILE:LINE`, or the id where the lists no longer know it.

use std::fmt::Write;

/// Resolves a rule id to `FILE:LINE` for records.
pub trait RuleNames {
    /// Appends the rule's origin to `out`; false (nothing appended) if the id is unknown.
    /// The record path names a rule per drop record, into a buffer it reuses.
    fn push_rule_name(&self, id: u32, out: &mut String) -> bool;

    /// The rule's origin, if the id is known.
    fn rule_name(&self, id: u32) -> Option<String> {
        let mut out = String::new();
        self.push_rule_name(id, &mut out).then_some(out)
    }
}

/// No lists loaded.
impl RuleNames for () {
    fn push_rule_name(&self, _: u32, _: &mut String) -> bool {
        false
    }
}

impl RuleNames for crate::blocklist::ListSet {
    fn push_rule_name(&self, id: u32, out: &mut String) -> bool {
        self.origin(id).map(|o| o.push_name(out)).is_some()
    }
}

/// A record's `rule`: the rule's `FILE:LINE`, or its id where the lists no longer know it.
pub(crate) fn rule_text(names: &dyn RuleNames, id: u32) -> String {
    let mut out = String::new();
    push_rule_text(names, id, &mut out);
    out
}

/// Appends [`rule_text`] to `out`.
pub(super) fn push_rule_text(names: &dyn RuleNames, id: u32, out: &mut String) {
    if !names.push_rule_name(id, out) {
        let _ = write!(out, "rule #{id}");
    }
}
