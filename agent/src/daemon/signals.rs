//! The agent's signals from its first instruction: SIGINT and SIGTERM stop it cleanly, SIGHUP
//! reloads every list.
//!
//! A handler installed only when the daemon starts leaves a window (loading the program, opening
//! the store) in which SIGTERM still has its default action and kills the agent without
//! sealing what it journaled. So `main` blocks the three signals before it does anything else
//! ([`Held::hold`]); every thread started later inherits the mask, and a signal sent meanwhile
//! stays pending instead of acting. `run` checks for a pending stop before it opens the store
//! ([`Held::stop_pending`]: exit at once, nothing to seal), and once the daemon's stages exist
//! it installs the handlers and unblocks the signals on the runtime's thread
//! ([`Held::listen`]): a pending one is delivered there and then, and stops the daemon through
//! its [`Control`] as any later one does. Commands other than `run` give the signals their
//! default action back ([`Held::release`]).

use std::fmt;
use std::io;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::info;

use super::lists::Reload;
use super::Control;

/// The signals held until the daemon listens.
const HELD: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// A signal that stops the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Int,
    /// SIGTERM (systemd's stop).
    Term,
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopSignal::Int => "SIGINT",
            StopSignal::Term => "SIGTERM",
        })
    }
}

/// Proof that SIGINT, SIGTERM and SIGHUP are blocked on this thread (and on every thread it
/// starts from now on): one sent now waits, pending, until [`Held::listen`] or
/// [`Held::release`].
#[must_use = "the signals stay blocked until listen() or release()"]
pub struct Held {
    set: libc::sigset_t,
}

impl Held {
    /// Blocks the signals on the calling thread. Call it first thing in `main`, before any
    /// thread exists: threads inherit the mask of the thread that starts them.
    pub fn hold() -> io::Result<Held> {
        // SAFETY: sigemptyset/sigaddset initialise and fill a set we own; the signal numbers
        // are valid.
        let set = unsafe {
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut set);
            for s in HELD {
                libc::sigaddset(&mut set, s);
            }
            set
        };
        mask(libc::SIG_BLOCK, &set)?;
        Ok(Held { set })
    }

    /// A stop signal sent since [`Held::hold`] and not yet delivered, if any.
    pub fn stop_pending(&self) -> Option<StopSignal> {
        // SAFETY: sigpending fills a set we own; sigismember reads it.
        unsafe {
            let mut pending = std::mem::zeroed::<libc::sigset_t>();
            if libc::sigpending(&mut pending) != 0 {
                return None;
            }
            if libc::sigismember(&pending, libc::SIGTERM) == 1 {
                Some(StopSignal::Term)
            } else if libc::sigismember(&pending, libc::SIGINT) == 1 {
                Some(StopSignal::Int)
            } else {
                None
            }
        }
    }

    /// Installs the handlers, then unblocks the signals on this thread (a pending one is
    /// delivered now). Call it inside the tokio runtime that will poll [`Signals::forward`].
    pub fn listen(self) -> io::Result<Signals> {
        let signals = Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: crate::blocklist::watch::sighup()?,
        };
        self.release()?;
        Ok(signals)
    }

    /// Unblocks the signals on this thread without handlers: their default action is back (a
    /// pending SIGTERM ends the process now), as for commands that do not handle them.
    pub fn release(self) -> io::Result<()> {
        mask(libc::SIG_UNBLOCK, &self.set)
    }
}

fn mask(how: libc::c_int, set: &libc::sigset_t) -> io::Result<()> {
    // SAFETY: `set` is an initialised signal set; the old mask is not asked for.
    let rc = unsafe { libc::pthread_sigmask(how, set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// The installed handlers of [`Held::listen`].
pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// Stops the daemon at the first SIGINT or SIGTERM (also one sent before the handlers
    /// were installed); every SIGHUP re-reads the lists.
    pub async fn forward(mut self, control: Control) {
        loop {
            tokio::select! {
                _ = self.int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = self.term.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = self.hup.recv() => drop(control.reload(Reload::All)),
            }
        }
        control.stop();
    }
}
