//! The conntrack sysctls the listener needs, turned on if they are off. They are per network
//! namespace: this runs on the listener's thread, after it joined its namespace.

use std::path::Path;

use super::NatError;

/// Each sysctl with the value the listener needs and why.
const NEEDED: [(&str, &str, &str); 3] = [
    (
        "/proc/sys/net/netfilter/nf_conntrack_events",
        "1",
        // 2 (the default since 5.19) gives entries an event cache only while a listener is
        // subscribed, so entries created while the agent restarts would never report their end.
        "events for every entry, also those created while the agent is down",
    ),
    (
        "/proc/sys/net/netfilter/nf_conntrack_timestamp",
        "1",
        "exact start and stop times",
    ),
    (
        "/proc/sys/net/netfilter/nf_conntrack_acct",
        "1",
        "packet and byte counters per direction",
    ),
];

/// Sets each conntrack sysctl to what the listener needs, logging every change with the old
/// value. Only entries created afterwards get timestamps and counters.
pub(crate) fn enable_conntrack_events() -> Result<(), NatError> {
    for (path, want, why) in NEEDED {
        let path = Path::new(path);
        let old = std::fs::read_to_string(path).map_err(|source| NatError::Sysctl {
            path: path.to_owned(),
            source,
        })?;
        let old = old.trim();
        if old == want {
            continue;
        }
        std::fs::write(path, want).map_err(|source| NatError::Sysctl {
            path: path.to_owned(),
            source,
        })?;
        tracing::warn!(sysctl = %path.display(), old, new = want, why, "conntrack sysctl changed");
    }
    Ok(())
}
