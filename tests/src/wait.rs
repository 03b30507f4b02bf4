//! Waiting on a condition with a deadline: the lab and its tests never sleep in place of what
//! they wait for.

use std::time::{Duration, Instant};

use anyhow::bail;

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` until it holds or fails; after `timeout`, fails with "`what` did not happen".
pub fn poll_until(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !cond()? {
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// [`poll_until`] for tests: panics with the message if `cond` does not hold in time.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    if let Err(e) = poll_until(timeout, what, || Ok(cond())) {
        panic!("{e}");
    }
}
