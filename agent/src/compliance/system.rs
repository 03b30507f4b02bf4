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
    let c = c_path(dir)?;
    // SAFETY: zeroed plain C struct, filled by statvfs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and struct pointers.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!(
            "statvfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
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

/// Whether process `pid` exists (signal 0; EPERM means it exists under another user).
pub fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
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
        alive: alive(snapshot.pid),
        snapshot,
        written_ns,
        lists,
    })
}
