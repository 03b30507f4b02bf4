//! The BPF filesystem the pins live on: mounted at /sys/fs/bpf when absent (and said when
//! that mount ends with this process's mount namespace), and made searchable for a dedicated
//! user.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{info, warn};

use super::{io, walk, PinError, BPF_FS_MAGIC};

/// Where bpffs is mounted when it is not.
const BPFFS: &str = "/sys/fs/bpf";

fn statfs_magic(path: &Path) -> std::io::Result<u32> {
    walk::fstatfs_magic(&File::open(path)?)
}

/// The nearest existing directory at or above `path`.
fn existing_ancestor(path: &Path) -> &Path {
    let mut p = path;
    while !p.exists() {
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    p
}

/// Whether this process runs in another mount namespace than init's (`ip netns exec`, a
/// container): a bpffs it mounts there vanishes with the namespace, and the pins with it.
/// Init's namespace cannot be read from some of those (EACCES under `ip netns exec`): that
/// counts as another.
fn in_private_mount_namespace() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link("/proc/1/ns/mnt"),
    ) {
        (Ok(a), Ok(b)) => a != b,
        (Ok(_), Err(_)) => true,
        (Err(_), _) => false,
    }
}

/// Lets a dedicated user reach the instance directory `dir`: every directory above it on
/// bpffs that others cannot search (bpffs is mounted 0700, by systemd and by
/// [`ensure_bpffs`]) gets the search bit for others (`o+x`: a known name can be reached, no
/// directory listed); the pins keep their own modes (0600, the user's). Done as root before
/// `run --user` switches; the unit's `ExecStartPre` does the same.
pub fn allow_search_to(dir: &Path) -> Result<(), PinError> {
    use std::os::unix::fs::PermissionsExt as _;
    for above in dir.ancestors().skip(1) {
        if statfs_magic(above).ok() != Some(BPF_FS_MAGIC) {
            break;
        }
        let mode = std::fs::metadata(above)
            .map_err(io("stat", above))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(
                above,
                std::fs::Permissions::from_mode((mode & 0o7777) | 0o001),
            )
            .map_err(io("make searchable (o+x)", above))?;
            info!(dir = %above.display(), "made searchable by others (o+x) for the agent's user");
        }
    }
    Ok(())
}

/// Set once this process mounted bpffs in a mount namespace of its own: its pins, and the
/// program with them, end with the namespace as the process exits.
static PINS_END_WITH_PROCESS: AtomicBool = AtomicBool::new(false);

/// Whether the pins this process made end as it exits (see [`ensure_bpffs`]).
pub fn pins_end_with_process() -> bool {
    PINS_END_WITH_PROCESS.load(Ordering::Relaxed)
}

/// Makes sure `root` is on bpffs: mounts bpffs at /sys/fs/bpf when the root is under it and
/// nothing is mounted there. Two agents starting at once mount it once (a lock file in /run
/// orders them).
pub fn ensure_bpffs(root: &Path) -> Result<(), PinError> {
    if statfs_magic(existing_ancestor(root)).ok() == Some(BPF_FS_MAGIC) {
        return Ok(());
    }
    if !root.starts_with(BPFFS) {
        return Err(PinError::NotBpffs(root.to_owned()));
    }
    let lock_path = Path::new("/run/xdp-audit-bpffs.lock");
    let lock = File::create(lock_path).map_err(io("create", lock_path))?;
    // SAFETY: flock on a descriptor we own; blocking until the other mounter is done.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    if statfs_magic(Path::new(BPFFS)).ok() == Some(BPF_FS_MAGIC) {
        return Ok(());
    }
    let no_bpffs = |cause| PinError::NoBpffs {
        path: root.to_owned(),
        cause,
    };
    std::fs::create_dir_all(BPFFS).map_err(no_bpffs)?;
    let (src, target, fstype) = (c"bpf", c"/sys/fs/bpf", c"bpf");
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(no_bpffs(std::io::Error::last_os_error()));
    }
    info!("mounted bpffs at {BPFFS}");
    if in_private_mount_namespace() {
        PINS_END_WITH_PROCESS.store(true, Ordering::Relaxed);
        warn!(
            "this process runs in a mount namespace of its own (ip netns exec, a container): the \
             bpffs it mounted, and every pin in it, vanishes with the namespace, so a restart \
             cannot adopt them; mount bpffs in the host namespace, or enter only the network \
             namespace (nsenter --net)"
        );
    }
    Ok(())
}
