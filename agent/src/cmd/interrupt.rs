//! Ctrl-C (or SIGTERM, SIGHUP) in a command that prints records (`query`, `sql`): what it
//! printed was disclosed, so the access must reach the operator log before the command ends.
//! Until the first byte reaches stdout a signal ends the command at once (nothing was
//! disclosed); after, it stops the output at the next write ([`Guarded`]) and the command
//! records the access, then exits 130. A second signal ends it at once.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static DISCLOSED: AtomicBool = AtomicBool::new(false);

/// The exit status of a command stopped by a signal (as a shell reports SIGINT's).
pub const EXIT_INTERRUPTED: u8 = 130;

extern "C" fn on_signal(sig: libc::c_int) {
    // Only atomics and async-signal-safe calls here.
    if !DISCLOSED.load(Ordering::SeqCst) || INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: restoring the default disposition and raising are async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP.
pub fn catch() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with a handler that only touches atomics; SA_RESTART so
        // that no other system call sees EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether a signal stopped the output.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The error a write returns once a signal came: not `ErrorKind::Interrupted`, which
/// `write_all` retries.
#[derive(Debug, thiserror::Error)]
#[error("stopped by a signal")]
pub struct Stopped;

/// A writer to stdout that marks what reaches it as disclosed and refuses writes once a
/// signal came.
pub struct Guarded<W>(pub W);

impl<W: Write> Write for Guarded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if interrupted() {
            return Err(io::Error::other(Stopped));
        }
        DISCLOSED.store(true, Ordering::SeqCst);
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        if interrupted() {
            return Err(io::Error::other(Stopped));
        }
        self.0.flush()
    }
}
