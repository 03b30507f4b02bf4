//! What the running system says, for [`super::Inputs`]: the kernel clock's synchronisation,
//! the store's file system, and the agent's status snapshot with its list files.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{Agent, ClockSync, Disk};
use crate::status::Snapshot;
use crate::store::oplog;

/// The kernel clock's synchronisation as `adjtimex` reports it (read only: `modes` 0).
pub fn clock_sync() -> ClockSync {
    // SAFETY: a zeroed timex with modes 0 only reads.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a timex.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return ClockSync::Unknown(format!("adjtimex: {}", std::io::Error::last_os_error()));
    }
    if state == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0 {
        ClockSync::Unsynced
    } else {
        ClockSync::Synced {
            max_error_us: tx.maxerror as i64,
        }
    }
}

fn c_path(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| format!("{}: a NUL in the path", p.display()))
}

/// Free space of the store's file system, and whether the store can be written (what an
/// access line needs: the operator log, or the directory where it does not exist yet).
pub fn disk(dir: &Path) -> Result<Disk, String> {
    let st = crate::store::fsutil::statvfs(dir)
        .map_err(|e| format!("statvfs {}: {e}", dir.display()))?;
    let free_bytes = st.f_bavail.saturating_mul(st.f_frsize);
    let log = dir.join(oplog::LOG);
    let target = if log.exists() { log } else { dir.to_owned() };
    let writable = if st.f_flag & libc::ST_RDONLY != 0 {
        Err(format!("{} is on a read-only mount", dir.display()))
    } else {
        let t = c_path(&target)?;
        // SAFETY: a valid path.
        match unsafe { libc::access(t.as_ptr(), libc::W_OK) } {
            0 => Ok(()),
            _ => Err(format!(
                "{}: {}",
                target.display(),
                std::io::Error::last_os_error()
            )),
        }
    };
    Ok(Disk {
        free_bytes,
        writable,
    })
}

/// Whether the process that wrote a snapshot runs: `pid` exists and, when the snapshot
/// recorded it, started when it did (an ended process's pid is given to others).
pub fn alive(pid: u32, start: Option<u64>) -> bool {
    // kill(0, 0) would ask about our own process group.
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid_t <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks.
    let rc = unsafe { libc::kill(pid_t, 0) };
    let exists = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    let stat = process_stat(pid);
    // A process killed and not yet reaped (a zombie, state Z; X while it goes) still has its
    // pid and start time: dead all the same (an agent killed with -9 and started again at
    // once took its predecessor for a live one, and raised no crash).
    if stat.is_some_and(|(state, _)| matches!(state, 'Z' | 'X' | 'x')) {
        return false;
    }
    match (start, stat.map(|(_, got)| got)) {
        (Some(want), Some(got)) => exists && want == got,
        _ => exists,
    }
}

/// The start time of process `pid` in clock ticks after boot (`/proc/PID/stat`, field 22);
/// `None` where `/proc` does not show it.
pub fn process_start(pid: u32) -> Option<u64> {
    process_stat(pid).map(|(_, start)| start)
}

/// Process `pid`'s state letter (field 3) and start time (field 22) in `/proc/PID/stat`.
fn process_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name, is in parentheses and may hold spaces and parentheses.
    let mut rest = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.nth(18)?.parse().ok()?))
}

/// The agent's status snapshot in `state_dir`, with its list files' modification times.
pub fn agent(state_dir: &Path) -> Result<Agent, String> {
    let snapshot = Snapshot::read(state_dir).map_err(|e| format!("{e:#}"))?;
    let written_ns = snapshot
        .written_at
        .parse::<jiff::Timestamp>()
        .map_err(|e| format!("status written_at {:?}: {e}", snapshot.written_at))?
        .as_nanosecond() as i64;
    let lists = snapshot
        .lists
        .iter()
        .map(|l| {
            let modified = std::fs::metadata(&l.path)
                .and_then(|m| m.modified())
                .ok()
                .map(|t| jiff::Timestamp::try_from(t).map_or(0, |t| t.as_nanosecond() as i64));
            (l.path.clone(), modified)
        })
        .collect();
    Ok(Agent {
        alive: alive(snapshot.pid, snapshot.pid_start),
        snapshot,
        written_ns,
        lists,
    })
}
