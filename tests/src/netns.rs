//! Running code inside a network namespace. `setns` affects only the calling thread, so each
//! call runs on a dedicated thread that joins the namespace first; sockets it opens stay in
//! that namespace for their whole life.

use std::fs::File;
use std::os::fd::AsRawFd;

use anyhow::{bail, Context as _};

/// Runs `f` on a new thread inside the namespace `/run/netns/<ns>` and returns its result.
pub fn run_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let path = format!("/run/netns/{ns}");
    let handle = std::thread::spawn(move || -> anyhow::Result<T> {
        let file = File::open(&path).with_context(|| format!("open {path}"))?;
        // SAFETY: a valid namespace fd; affects only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns({path}): {}", std::io::Error::last_os_error());
        }
        f()
    });
    match handle.join() {
        Ok(r) => r,
        Err(_) => bail!("the thread running in namespace {ns} panicked"),
    }
}
