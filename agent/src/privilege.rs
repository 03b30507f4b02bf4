//! Least privilege: the agent can switch to a dedicated user before it opens the store
//! ([`become_user`], `run --user`), and once its program is attached it keeps only the
//! capabilities the running stages need, in every thread, and can gain none back.
//!
//! Loading and attaching need CAP_BPF (maps, BTF, the program), CAP_PERFMON (without it the
//! verifier refuses the program's pointer arithmetic: "pointer arithmetic with it prohibited
//! for !root") and CAP_NET_ADMIN (XDP is a networking program type, and attaching it changes
//! an interface). After that the stages reach the maps through descriptors they already hold,
//! and bpf(2) checks no capability for a lookup, update, delete, batched lookup or map info
//! on a descriptor; the program's bpf_link is detached by closing it. [`needed_after_attach`]
//! says, by feature, what is kept (README, "Least privilege", has the table).
//!
//! Linux keeps capabilities per thread, and the store's threads exist before the program is
//! attached, so [`drop_to`] drops them in the calling thread and has every other thread of
//! the process do the same from a signal handler, then reads each thread's sets back from
//! `/proc/self/task` and fails if any thread still holds more. Each thread also clears its
//! ambient set, its bounding set when it may (CAP_SETPCAP: the agent was started as root),
//! and sets no_new_privs, so nothing it executes later regains a capability. Switching user
//! is done the same way, thread by thread with raw system calls (the C library's setuid
//! would also signal every thread, but would clear the capabilities loading still needs).

mod user;

pub use user::{check_secret_file, AccountError, RunAs};

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A set of Linux capabilities: bit `n` is capability number `n`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CapSet(u64);

/// Capability names by number (`linux/capability.h`).
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

impl CapSet {
    /// No capability.
    pub const EMPTY: Self = Self(0);
    /// CAP_SETGID: may change its group ids.
    pub const SETGID: Self = Self(1 << 6);
    /// CAP_SETUID: may change its user ids.
    pub const SETUID: Self = Self(1 << 7);
    /// CAP_SETPCAP: may clear the bounding set.
    pub const SETPCAP: Self = Self(1 << 8);
    /// CAP_NET_ADMIN: XDP programs and attachments, conntrack over netlink, net sysctls.
    pub const NET_ADMIN: Self = Self(1 << 12);
    /// CAP_PERFMON: the verifier's rules for privileged programs.
    pub const PERFMON: Self = Self(1 << 38);
    /// CAP_BPF: creating maps, loading programs and BTF.
    pub const BPF: Self = Self(1 << 39);

    /// The set with these bits.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// Its bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Both sets together.
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The capabilities of `self` that are not in `other`.
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The capabilities in both.
    pub const fn and(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Whether every capability of `self` is in `other`.
    pub const fn is_subset(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities' numbers, lowest first.
    fn numbers(self) -> impl Iterator<Item = u32> {
        (0..64).filter(move |n| self.0 & (1 << n) != 0)
    }
}

impl fmt::Display for CapSet {
    /// `CAP_BPF CAP_NET_ADMIN`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, n) in self.numbers().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            match NAMES.get(n as usize) {
                Some(name) => f.write_str(name)?,
                None => write!(f, "cap{n}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CapSet({self})")
    }
}

/// What the stages that run after attach use, as far as capabilities go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// NAT attribution reads conntrack over netlink for as long as the agent runs.
    pub conntrack: bool,
}

/// The capabilities loading and attaching need (see the module docs); [`become_user`] keeps
/// them across the switch of user.
pub const LOAD: CapSet = CapSet::BPF.with(CapSet::PERFMON).with(CapSet::NET_ADMIN);

/// What the running agent still needs once the program is attached, by feature:
///
/// - ring buffer, flow tables, list maps, counters: nothing since Linux 5.19; bpf(2) checks
///   no capability for a lookup, update, delete or info on a map descriptor the agent holds
///   (before 5.19, `kernel.unprivileged_bpf_disabled` refused every bpf(2) command without
///   CAP_BPF, so on such a kernel CAP_BPF is kept), and list reloads write through those
///   descriptors;
/// - detaching at shutdown: nothing; a bpf_link is detached by closing its descriptor;
/// - the store, the status file, list files: ordinary file permissions (the dedicated user
///   owns the store; README, "Least privilege");
/// - NAT enrichment (conntrack events and dumps over netlink, the `nf_conntrack_*` sysctls)
///   needs CAP_NET_ADMIN for as long as it runs: nfnetlink checks it on every request, so a
///   setting that turns it on must add [`CapSet::NET_ADMIN`] here.
pub fn needed_after_attach(needs: Needs, kernel: (u32, u32)) -> CapSet {
    let mut keep = CapSet::EMPTY;
    if kernel < (5, 19) {
        keep = keep.with(CapSet::BPF);
    }
    if needs.conntrack {
        keep = keep.with(CapSet::NET_ADMIN);
    }
    keep
}

/// The running kernel's major and minor version (`uname -r`), `(0, 0)` if unreadable (which
/// makes [`needed_after_attach`] keep CAP_BPF: the safe side).
pub fn kernel_version() -> (u32, u32) {
    // SAFETY: a zeroed utsname is a valid out-parameter.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return (0, 0);
    }
    // SAFETY: uname NUL-terminates release.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    let mut parts = release
        .to_str()
        .unwrap_or("")
        .split(|c: char| !c.is_ascii_digit());
    let mut next = || parts.next().and_then(|p| p.parse().ok());
    match (next(), next()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => (0, 0),
    }
}

/// Switches every thread to `user` (its uid and primary group, no supplementary groups),
/// keeping only what loading and attaching need ([`LOAD`], and CAP_SETPCAP if held, so that
/// [`drop_after_attach`] can still narrow the bounding set). Files the agent creates from
/// here on belong to `user`. Needs CAP_SETUID and CAP_SETGID (start as root).
pub fn become_user(user: &RunAs) -> Result<Dropped, PrivilegeError> {
    check_can_switch()?;
    let dropped = drop_to(LOAD.with(CapSet::SETPCAP), Some(user))?;
    tracing::info!(
        user = %user.name,
        uid = user.uid,
        gid = user.gid,
        kept = %dropped.kept,
        "switched user"
    );
    Ok(dropped)
}

/// Fails unless the agent may switch user (CAP_SETUID and CAP_SETGID), so that `--user`
/// without root is refused before anything is created for the user.
pub fn check_can_switch() -> Result<(), PrivilegeError> {
    let (effective, _) = capget()?;
    if !CapSet::SETUID.with(CapSet::SETGID).is_subset(effective) {
        return Err(PrivilegeError::CannotSwitch { have: effective });
    }
    Ok(())
}

/// Drops every capability the stages do not need any more ([`needed_after_attach`]) in
/// every thread, logs what was kept and dropped, and returns it.
pub fn drop_after_attach(needs: Needs) -> Result<Dropped, PrivilegeError> {
    let dropped = drop_to(needed_after_attach(needs, kernel_version()), None)?;
    tracing::info!(
        kept = %dropped.kept,
        dropped = %dropped.dropped,
        bounding_set_cleared = dropped.bounding_cleared,
        threads = dropped.threads,
        "capabilities dropped after attach"
    );
    Ok(dropped)
}

/// What [`drop_to`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The capabilities every thread still has (effective and permitted).
    pub kept: CapSet,
    /// The capabilities the process had and gave up.
    pub dropped: CapSet,
    /// Whether the bounding set was cut down to `kept` too (only with CAP_SETPCAP, that is
    /// when started as root; otherwise whoever started the agent bounds it, as systemd's
    /// `CapabilityBoundingSet=` does).
    pub bounding_cleared: bool,
    /// The threads that were checked.
    pub threads: usize,
}

/// Why capabilities could not be dropped; the agent does not run on with more than it needs.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// A system call of the drop failed.
    #[error("cannot drop capabilities: {step} failed: {cause}")]
    Syscall {
        /// What was being done.
        step: &'static str,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: std::io::Error,
    },
    /// `--user` without the capabilities to switch user.
    #[error("switching user needs root (CAP_SETUID and CAP_SETGID); the agent has {have}: start it as root, or without --user as the user it should run as")]
    CannotSwitch {
        /// The effective capabilities the agent has.
        have: CapSet,
    },
    /// `/proc` could not be read to check the threads.
    #[error("cannot check the threads' capabilities: {path}: {cause}")]
    Proc {
        /// The file or directory.
        path: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// Some threads did not drop their capabilities in time.
    #[error(
        "threads still hold capabilities after {waited:?} (a thread blocking signals?): {threads}"
    )]
    Stuck {
        /// How long the drop waited.
        waited: Duration,
        /// The threads, each as `name (tid): effective CAP_...`.
        threads: String,
    },
}

/// One thread's capability sets and no_new_privs flag, as `/proc/PID/task/TID/status` shows
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadCaps {
    /// The thread id.
    pub tid: i32,
    /// The thread's name (`comm`).
    pub name: String,
    /// CapEff.
    pub effective: CapSet,
    /// CapPrm.
    pub permitted: CapSet,
    /// CapInh.
    pub inheritable: CapSet,
    /// CapAmb.
    pub ambient: CapSet,
    /// CapBnd.
    pub bounding: CapSet,
    /// NoNewPrivs.
    pub no_new_privs: bool,
    /// Real, effective, saved and filesystem user ids.
    pub uids: [u32; 4],
    /// Real, effective, saved and filesystem group ids.
    pub gids: [u32; 4],
}

impl ThreadCaps {
    /// Parses the fields of a `status` file; `None` if one is missing.
    pub fn parse(tid: i32, status: &str) -> Option<Self> {
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(str::trim)
        };
        let caps = |key: &str| {
            field(key)
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .map(CapSet)
        };
        let ids = |key: &str| -> Option<[u32; 4]> {
            let mut it = field(key)?.split_whitespace().map(|v| v.parse().ok());
            Some([it.next()??, it.next()??, it.next()??, it.next()??])
        };
        Some(Self {
            tid,
            uids: ids("Uid")?,
            gids: ids("Gid")?,
            name: field("Name")?.to_owned(),
            effective: caps("CapEff")?,
            permitted: caps("CapPrm")?,
            inheritable: caps("CapInh")?,
            ambient: caps("CapAmb")?,
            bounding: caps("CapBnd")?,
            no_new_privs: field("NoNewPrivs")? == "1",
        })
    }

    /// Whether the thread holds nothing beyond `keep` (and, with `bounding`, its bounding
    /// set is within `keep` too) and can gain nothing by executing a program.
    pub fn holds_only(&self, keep: CapSet, bounding: bool) -> bool {
        self.effective.is_subset(keep)
            && self.permitted.is_subset(keep)
            && self.inheritable.is_empty()
            && self.ambient.is_empty()
            && self.no_new_privs
            && (!bounding || self.bounding.is_subset(keep))
    }

    /// Whether every user id is `uid` and every group id `gid`.
    pub fn runs_as(&self, uid: u32, gid: u32) -> bool {
        self.uids.iter().all(|&u| u == uid) && self.gids.iter().all(|&g| g == gid)
    }
}

impl fmt::Display for ThreadCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): uid {}, gid {}, effective {}, permitted {}, bounding {}, no_new_privs {}",
            self.name,
            self.tid,
            self.uids[1],
            self.gids[1],
            self.effective,
            self.permitted,
            self.bounding,
            self.no_new_privs
        )
    }
}

/// Every thread of process `pid`, read from `/proc/PID/task`. A thread that exits while the
/// directory is read is left out.
pub fn threads_of(pid: u32) -> Result<Vec<ThreadCaps>, PrivilegeError> {
    let dir = format!("/proc/{pid}/task");
    let proc_err = |path: &Path, cause| PrivilegeError::Proc {
        path: path.display().to_string(),
        cause,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| proc_err(Path::new(&dir), e))? {
        let entry = entry.map_err(|e| proc_err(Path::new(&dir), e))?;
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let path = entry.path().join("status");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // ESRCH: the thread exited between the listing and the read.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => continue,
            Err(e) => return Err(proc_err(&path, e)),
        };
        let caps = ThreadCaps::parse(tid, &text).ok_or_else(|| {
            proc_err(
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, "no capability fields"),
            )
        })?;
        out.push(caps);
    }
    Ok(out)
}

/// How long [`drop_to`] waits for every thread to drop its capabilities.
const DROP_TIMEOUT: Duration = Duration::from_secs(10);
/// A thread that has not dropped its capabilities this long after its signal gets another.
const RESIGNAL: Duration = Duration::from_millis(100);

// What the signal handler applies; set before any thread is signalled.
static TARGET: AtomicU64 = AtomicU64::new(0);
static CLEAR_BOUNDING: AtomicBool = AtomicBool::new(false);
static LAST_CAP: AtomicU32 = AtomicU32::new(0);
// The user to switch to: SWITCH_USER says whether; SWITCH_IDS is uid << 32 | gid.
static SWITCH_USER: AtomicBool = AtomicBool::new(false);
static SWITCH_IDS: AtomicU64 = AtomicU64::new(0);
// The first failure in a signalled thread: the step's index into STEPS and the errno.
static FAILED_STEP: AtomicU32 = AtomicU32::new(0);
static FAILED_ERRNO: AtomicI32 = AtomicI32::new(0);

const STEPS: [&str; 8] = [
    "PR_CAPBSET_DROP",
    "PR_CAP_AMBIENT_CLEAR_ALL",
    "PR_SET_KEEPCAPS",
    "setgroups",
    "setresgid",
    "setresuid",
    "capset",
    "PR_SET_NO_NEW_PRIVS",
];

/// Keeps only `keep` (less whatever the process does not have) in every thread of the
/// process: effective and permitted sets, nothing inheritable or ambient, the bounding set
/// too when the process has CAP_SETPCAP, and no_new_privs; with `user`, every thread also
/// switches to its uid and gid (keeping `keep` across the switch). Returns once `/proc`
/// shows every thread so; fails if a thread does not get there within 10 seconds.
pub fn drop_to(keep: CapSet, user: Option<&RunAs>) -> Result<Dropped, PrivilegeError> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (effective, permitted) = capget()?;
    let keep = keep.and(permitted);
    let bounding = CapSet::SETPCAP.is_subset(effective);
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .map_err(|cause| PrivilegeError::Proc {
            path: "/proc/sys/kernel/cap_last_cap".into(),
            cause,
        })?
        .trim()
        .parse::<u32>()
        .unwrap_or(NAMES.len() as u32 - 1);
    TARGET.store(keep.bits(), Ordering::SeqCst);
    CLEAR_BOUNDING.store(bounding, Ordering::SeqCst);
    LAST_CAP.store(last_cap.min(63), Ordering::SeqCst);
    FAILED_ERRNO.store(0, Ordering::SeqCst);
    let ids = user.map(|u| (u.uid, u.gid));
    SWITCH_USER.store(ids.is_some(), Ordering::SeqCst);
    if let Some((uid, gid)) = ids {
        SWITCH_IDS.store(u64::from(uid) << 32 | u64::from(gid), Ordering::SeqCst);
    }

    let signal = libc::SIGRTMIN();
    set_handler(signal, on_signal as *const () as libc::sighandler_t)?;
    let result = drop_everywhere(keep, bounding, ids, signal);
    // SIG_IGN also discards a signal still queued for a thread that got there by itself.
    let _ = set_handler(signal, libc::SIG_IGN);
    let threads = result?;
    Ok(Dropped {
        kept: keep,
        dropped: effective.with(permitted).without(keep),
        bounding_cleared: bounding,
        threads,
    })
}

/// Applies the target in this thread, signals every other thread until `/proc` shows all of
/// them holding only `keep` (and running as `ids`), and returns how many threads there are.
fn drop_everywhere(
    keep: CapSet,
    bounding: bool,
    ids: Option<(u32, u32)>,
    signal: i32,
) -> Result<usize, PrivilegeError> {
    apply().map_err(|(step, errno)| PrivilegeError::Syscall {
        step: STEPS[step as usize],
        cause: std::io::Error::from_raw_os_error(errno),
    })?;
    let pid = std::process::id();
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    let started = Instant::now();
    let mut signalled: HashMap<i32, Instant> = HashMap::new();
    loop {
        let threads = threads_of(pid)?;
        let behind: Vec<&ThreadCaps> = threads
            .iter()
            .filter(|t| {
                !t.holds_only(keep, bounding) || ids.is_some_and(|(uid, gid)| !t.runs_as(uid, gid))
            })
            .collect();
        if behind.is_empty() {
            return Ok(threads.len());
        }
        let errno = FAILED_ERRNO.load(Ordering::SeqCst);
        if errno != 0 {
            return Err(PrivilegeError::Syscall {
                step: STEPS[FAILED_STEP.load(Ordering::SeqCst) as usize],
                cause: std::io::Error::from_raw_os_error(errno),
            });
        }
        if started.elapsed() >= DROP_TIMEOUT || behind.iter().any(|t| t.tid == me) {
            let threads = behind.iter().map(|t| t.to_string()).collect::<Vec<_>>();
            return Err(PrivilegeError::Stuck {
                waited: started.elapsed(),
                threads: threads.join("; "),
            });
        }
        for t in behind {
            if signalled
                .get(&t.tid)
                .is_some_and(|at| at.elapsed() < RESIGNAL)
            {
                continue;
            }
            // SAFETY: tgkill to a thread of our own process; one that has exited is ESRCH.
            unsafe { libc::syscall(libc::SYS_tgkill, pid, t.tid, signal) };
            signalled.insert(t.tid, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn set_handler(signal: i32, handler: libc::sighandler_t) -> Result<(), PrivilegeError> {
    // SAFETY: a zeroed sigaction is valid; the handler only makes async-signal-safe system
    // calls and touches atomics.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(PrivilegeError::Syscall {
                step: "sigaction",
                cause: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

extern "C" fn on_signal(_signal: libc::c_int) {
    // SAFETY: errno is thread-local; it is restored so the interrupted code sees its own.
    let errno = unsafe { *libc::__errno_location() };
    if let Err((step, e)) = apply() {
        FAILED_STEP.store(step, Ordering::SeqCst);
        FAILED_ERRNO.store(e, Ordering::SeqCst);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two `CapData`, capabilities 0-31 and 32-63.
const CAP_VERSION_3: u32 = 0x2008_0522;

/// The calling thread's effective and permitted sets.
fn capget() -> Result<(CapSet, CapSet), PrivilegeError> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: a version-3 header and room for its two data structs.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(PrivilegeError::Syscall {
            step: "capget",
            cause: std::io::Error::last_os_error(),
        });
    }
    let join = |lo: u32, hi: u32| CapSet(u64::from(lo) | u64::from(hi) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
    ))
}

/// Applies the target to the calling thread; async-signal-safe (system calls and atomics
/// only). On failure returns the step's index into [`STEPS`] and the errno.
fn apply() -> Result<(), (u32, i32)> {
    let keep = TARGET.load(Ordering::SeqCst);
    let errno = || {
        // SAFETY: reading the thread's own errno.
        unsafe { *libc::__errno_location() }
    };
    // SAFETY (all calls below): prctl and capset with valid arguments; they change only the
    // calling thread.
    if CLEAR_BOUNDING.load(Ordering::SeqCst) {
        for cap in 0..=LAST_CAP.load(Ordering::SeqCst) {
            if keep & (1 << cap) == 0
                && unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0
            {
                return Err((0, errno()));
            }
        }
    }
    let clear = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
    // EINVAL: a kernel before 4.3 has no ambient set to clear.
    if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, clear, 0, 0, 0) } != 0 && errno() != libc::EINVAL
    {
        return Err((1, errno()));
    }
    if SWITCH_USER.load(Ordering::SeqCst) {
        let ids = SWITCH_IDS.load(Ordering::SeqCst);
        let (uid, gid) = ((ids >> 32) as libc::uid_t, ids as libc::gid_t);
        // Keep the permitted set across the change of uid; capset below sets the rest.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1 as libc::c_ulong, 0, 0, 0) } != 0 {
            return Err((2, errno()));
        }
        // Raw system calls change the calling thread only (see the module docs).
        if unsafe { libc::syscall(libc::SYS_setgroups, 1usize, &gid as *const libc::gid_t) } != 0 {
            return Err((3, errno()));
        }
        if unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) } != 0 {
            return Err((4, errno()));
        }
        if unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) } != 0 {
            return Err((5, errno()));
        }
    }
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let half = |bits: u64| CapData {
        effective: bits as u32,
        permitted: bits as u32,
        inheritable: 0,
    };
    let data = [half(keep), half(keep >> 32)];
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err((6, errno()));
    }
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err((7, errno()));
    }
    Ok(())
}

/// Refuses the start when a sandbox forbids IP sockets (the packaged unit's
/// `RestrictAddressFamilies=`) and `flag` needs one: otherwise the agent starts and every
/// connection fails, which only the status would say. Either family will do (a server may
/// be reached over IPv6 alone). An `IPAddressDeny=` is not seen here: connections say it.
pub fn ip_sockets_allowed(flag: &str) -> anyhow::Result<()> {
    let probe = |family| {
        // SAFETY: a plain socket(2); the descriptor is closed at once.
        let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Some(std::io::Error::last_os_error());
        }
        // SAFETY: a descriptor this function owns.
        unsafe { libc::close(fd) };
        None
    };
    match sandboxed([probe(libc::AF_INET), probe(libc::AF_INET6)]) {
        Some(cause) => anyhow::bail!(
            "{flag}: a sandbox forbids IP sockets ({cause}): under the packaged unit add \
             AF_INET AF_INET6 to RestrictAddressFamilies= and an IPAddressAllow= for the \
             server in a drop-in (`systemctl edit xdp-audit`)"
        ),
        None => Ok(()),
    }
}

/// The IPv4 probe's error when both families were refused as a sandbox refuses them;
/// `None` when either opened, or failed otherwise (out of descriptors: the connection
/// attempts will say so themselves).
fn sandboxed(probes: [Option<std::io::Error>; 2]) -> Option<std::io::Error> {
    let refused = |p: &Option<std::io::Error>| {
        p.as_ref().is_some_and(|e| {
            matches!(
                e.raw_os_error(),
                Some(libc::EAFNOSUPPORT | libc::EPERM | libc::EACCES)
            )
        })
    };
    if probes.iter().all(refused) {
        let [v4, _] = probes;
        v4
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
