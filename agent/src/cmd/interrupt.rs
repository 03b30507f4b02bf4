//! Ctrl-C (or SIGTERM, SIGHUP) in a command that prints records (`query`, `sql`): what it
//! printed was disclosed, so the access must reach the operator log before the command ends.
//! Until the first byte reaches stdout ([`Guarded`]) a signal ends the command at once
//! (nothing was disclosed); after, a thread of its own records the access and exits 130,
//! wherever the command is (a scan between sparse matches included). A second signal ends
//! it at once. A signal the command was started ignoring (`nohup`, a background job) stays
//! ignored.

use std::io::{self, Write};
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static DISCLOSED: AtomicBool = AtomicBool::new(false);
/// The access is being (or was) recorded: by the watcher, or by the command at its end.
static RECORDED: AtomicBool = AtomicBool::new(false);
/// The write end of the pipe the handler wakes the watcher with.
static WAKE: AtomicI32 = AtomicI32::new(-1);

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
        return;
    }
    let byte = 1u8;
    // SAFETY: write(2) is async-signal-safe; the descriptor stays open for the process.
    unsafe { libc::write(WAKE.load(Ordering::SeqCst), (&raw const byte).cast(), 1) };
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP (those not ignored) and the watcher
/// thread, which on a signal after output runs `record` (the access, with what was handed
/// out so far) and exits [`EXIT_INTERRUPTED`].
pub fn catch(record: impl FnOnce() + Send + 'static) -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made and are owned here; the write end is never
    // closed (the handler may use it until the process ends).
    let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    WAKE.store(fds[1], Ordering::SeqCst);
    std::thread::Builder::new()
        .name("xdp-audit-interrupt".into())
        .spawn(move || {
            let mut pipe = std::fs::File::from(read);
            let mut byte = [0u8; 1];
            if matches!(io::Read::read(&mut pipe, &mut byte), Ok(1)) && claim() {
                record();
                std::process::exit(i32::from(stopped()));
            }
        })?;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: reading the disposition, then a zeroed sigaction with a handler that only
        // touches atomics and write(2); SA_RESTART so no other system call sees EINTR.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old);
            if old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    Ok(())
}

/// Says the command was stopped and its access recorded; its exit status.
fn stopped() -> u8 {
    let _ = writeln!(
        io::stderr(),
        "stopped by a signal; the access is recorded in the operator log"
    );
    EXIT_INTERRUPTED
}

/// For a command that took the recording ([`claim`]) itself: when a signal stopped its
/// output, it records its access as stopped with `record` and gets its exit status.
pub fn when_stopped(record: impl FnOnce()) -> Option<std::process::ExitCode> {
    INTERRUPTED.load(Ordering::SeqCst).then(|| {
        record();
        std::process::ExitCode::from(stopped())
    })
}

/// Takes the recording of the access: true for the first caller only. A command that
/// finishes records its own access only with it; without it the watcher is recording and
/// ends the process.
pub fn claim() -> bool {
    !RECORDED.swap(true, Ordering::SeqCst)
}

/// Waits for the watcher to end the process (the command lost [`claim`] to it).
pub fn wait_for_exit() -> ! {
    loop {
        std::thread::park();
    }
}

/// A writer to stdout that marks what reaches it as disclosed, and writes nothing once a
/// signal came (the watcher is recording the access).
pub struct Guarded<W>(pub W);

/// The error a write returns once a signal came: not `ErrorKind::Interrupted`, which
/// `write_all` retries.
#[derive(Debug, thiserror::Error)]
#[error("stopped by a signal")]
pub struct Stopped;

impl<W: Write> Write for Guarded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(io::Error::other(Stopped));
        }
        DISCLOSED.store(true, Ordering::SeqCst);
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(io::Error::other(Stopped));
        }
        self.0.flush()
    }
}
