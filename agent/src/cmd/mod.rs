//! One module per `xdp-audit` subcommand: its arguments and its `main`.

/// `print!` that returns an error instead of panicking (see [`stdout`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cmd::stdout(format_args!($($arg)*))
    };
}

/// `println!` that returns an error instead of panicking (see [`stdout`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cmd::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub mod blocklist;
pub mod check;
pub mod compliance;
pub mod detach;
pub mod enrich_args;
pub mod export;
pub mod hold;
pub mod interrupt;
pub mod keygen;
pub mod query;
pub mod report;
pub mod run;
pub mod ship;
pub mod sql;
pub mod status;
pub mod store_args;
pub mod verify;

/// Exit status of `query` and `export` when the answer was written from what could be read
/// but lacks the records of live journals that could not be (each named in a warning): an
/// incomplete answer to a lawful request must not pass for a complete one.
pub const EXIT_INCOMPLETE: u8 = 3;

/// The exit status of an answer from `stats`: success, or [`EXIT_INCOMPLETE`].
pub fn answer_status(stats: &crate::store::query::ScanStats) -> std::process::ExitCode {
    if stats.journals_unreadable > 0 {
        std::process::ExitCode::from(EXIT_INCOMPLETE)
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// Exit status of `verify` when a file could not be read (no permission, an I/O error): the
/// store could not be checked, which is neither `ok` (0) nor `BROKEN` (1).
pub const EXIT_UNCHECKED: u8 = 3;

/// The cause of an error after which the store could not be checked: `main` exits
/// [`EXIT_UNCHECKED`] when it is in the error's chain.
#[derive(Debug, thiserror::Error)]
#[error("the store could not be checked (this is no verdict)")]
pub struct Unchecked;

/// The cause of an error after which `report` could build nothing from a store that does
/// not verify (the damage lies in what the window needs): `main` exits
/// [`report::EXIT_BROKEN`], as for a report written on such a store.
#[derive(Debug, thiserror::Error)]
#[error("the store does not verify")]
pub struct BrokenStore;

/// Standard output was closed by its reader (`| head -1`): the command stops there, and exits
/// quietly (`main` tells it from a failure).
#[derive(Debug, thiserror::Error)]
#[error("standard output closed by its reader")]
pub struct StdoutClosed;

/// Writes to standard output. `print!` would panic on a closed pipe or a full disk, after the
/// command's work (a hold recorded, a key or an export written) is done, and exit 101 as if it
/// had failed.
pub fn stdout(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// The exit code of a command whose exit code is its verdict (`verify`, `status`, `check`,
/// `compliance`), printed first: a reader gone before or while the verdict is printed
/// (`| grep -q ok`, `| head -1`) leaves the verdict standing, so a pipeline under `pipefail`
/// still sees BROKEN or a stopped agent, not the quiet success a closed pipe is elsewhere.
pub fn verdict(
    code: std::process::ExitCode,
    printed: anyhow::Result<()>,
) -> anyhow::Result<std::process::ExitCode> {
    match printed {
        Err(e) if !e.chain().any(|c| c.is::<StdoutClosed>()) => Err(e),
        _ => Ok(code),
    }
}

/// Standard output for a check that prints as it goes (`check`, `blocklist check`): once the
/// reader is gone, the rest is discarded and the check runs on to its verdict (see
/// [`verdict`]).
pub struct CheckOutput<W> {
    out: W,
    closed: bool,
}

impl<W: std::io::Write> CheckOutput<W> {
    /// Wraps the locked standard output.
    pub fn new(out: W) -> Self {
        CheckOutput { out, closed: false }
    }

    /// Flushes; whether everything reached the reader (else [`StdoutClosed`]).
    pub fn finish(mut self) -> anyhow::Result<()> {
        std::io::Write::flush(&mut self).map_err(stdout_error)?;
        if self.closed {
            return Err(StdoutClosed.into());
        }
        Ok(())
    }
}

impl<W: std::io::Write> std::io::Write for CheckOutput<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.out.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(buf.len())
            }
            r => r,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.out.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r,
        }
    }
}

/// An error writing standard output: [`StdoutClosed`] for a closed pipe, else the cause.
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(e).context("writing to standard output")
    }
}

pub use crate::invisible::printable;

#[cfg(test)]
mod tests {
    #[test]
    fn printable_escapes_invisible_characters_only() {
        assert_eq!(super::printable("case 4711, \"ü\""), "case 4711, \"ü\"");
        assert_eq!(
            super::printable("case 1\nFAKE\x1b[31m\t"),
            "case 1\\nFAKE\\u{1b}[31m\\t"
        );
    }
}
