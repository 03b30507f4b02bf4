//! Where a pinned agent instance keeps its program, links and maps, and what it notes beside
//! them:
//!
//! ```text
//! /sys/fs/bpf/xdp-audit/<instance>/
//!   state                symlink whose target is the state (JSON; `readlink` it)
//!   prog                 the XDP program
//!   link-<iface>         one bpf_link per interface (none for a netlink attachment)
//!   maps-<fingerprint>/  every map of the program, and the agent's REPORTED ledger
//! ```
//!
//! bpffs holds pinned objects, directories and symlinks only (no regular files, no dots in
//! names), so the state is the target of a symlink, replaced by a rename. The instance
//! directory is locked (`flock`) by the one agent that runs it and by `detach`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::AttachMode;
use crate::store::fsutil::{lock_exclusive, LOCK_PATIENCE};

mod bpffs;
mod walk;
pub use bpffs::{allow_search_to, ensure_bpffs, pins_end_with_process};
pub use walk::remove_maps_dir;

/// Where instances are pinned unless told otherwise.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/xdp-audit";
/// The instance name unless told otherwise.
pub const DEFAULT_INSTANCE: &str = "default";
/// `statfs` magic of bpffs.
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;
/// The state symlink.
const STATE: &str = "state";
/// Where a new state is made before it replaces the old.
const STATE_NEW: &str = "state-new";
/// The program's pin.
const PROGRAM: &str = "prog";
/// Where a program about to be swapped in is pinned until it has replaced the old.
const PROGRAM_NEXT: &str = "prog-next";
/// Prefix of the pin of a replaced program kept while an interrupted swap is finished.
const PROGRAM_OLD: &str = "prog-old-";
/// Prefix of a link's pin.
const LINK_PREFIX: &str = "link-";
/// Prefix of a map directory.
const MAPS_PREFIX: &str = "maps-";
/// The version of the state's JSON.
pub const STATE_FORMAT: u32 = 1;
/// Longest state (a symlink target; the kernel's limit is 4095 bytes).
const STATE_MAX: usize = 4000;

/// Errors of the pin directory, each naming the path at fault and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// An instance name that cannot be a directory name on bpffs.
    #[error(
        "instance name {0:?} is not usable: use 1 to 64 letters, digits, '-' or '_' \
         (bpffs refuses dots)"
    )]
    Instance(String),
    /// bpffs is absent and could not be mounted.
    #[error(
        "{path} is not on a BPF filesystem and mounting one failed ({cause}): mount it \
         (`mount -t bpf bpf /sys/fs/bpf`) or run with --no-pin"
    )]
    NoBpffs {
        /// The pin root.
        path: PathBuf,
        /// Why the mount failed.
        cause: std::io::Error,
    },
    /// A custom pin root outside /sys/fs/bpf that is no bpffs.
    #[error("--pin-root {0} is not on a BPF filesystem: mount one there (`mount -t bpf bpf DIR`)")]
    NotBpffs(PathBuf),
    /// Another agent (or `detach`) holds the instance.
    #[error(
        "instance {instance:?} ({path}) is in use by another xdp-audit process (its agent, or a \
         detach): to detach it, stop that agent first (SIGTERM; `xdp-audit status` names its \
         pid); a second agent, on other interfaces, needs another --instance name"
    )]
    Busy {
        /// The instance.
        instance: String,
        /// Its directory.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("{op} {path}: {cause}{}", permission_hint(cause))]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause (in the message, so not named `source`).
        cause: std::io::Error,
    },
    /// The state does not parse or is of another format.
    #[error(
        "the state of instance {path} is unreadable ({reason}); remove the instance with \
         `xdp-audit detach --instance NAME` and start afresh"
    )]
    State {
        /// The state symlink.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What to do about a refused file operation on bpffs.
fn permission_hint(cause: &std::io::Error) -> &'static str {
    if cause.kind() == std::io::ErrorKind::PermissionDenied {
        "; run as root (CAP_BPF to pin, CAP_SYS_ADMIN to mount bpffs), or with --no-pin"
    } else {
        ""
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PinError + 'a {
    move |cause| PinError::Io {
        op,
        path: path.to_owned(),
        cause,
    }
}

/// How the program is attached to one interface, as the state remembers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedIface {
    /// The interface's name.
    pub name: String,
    /// Its index when attached (an interface recreated since has another).
    pub ifindex: u32,
    /// The mode in use ([`AttachMode::Native`] or [`AttachMode::Skb`]): a change of mode
    /// cannot be made without a moment with no program, so the adopting agent must know it.
    pub mode: AttachMode,
    /// Whether a bpf_link holds the attachment (`link-<iface>`); false when the kernel
    /// attached through netlink, which leaves no link to pin.
    pub link: bool,
}

/// What an instance notes beside its pins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// The fingerprint of the maps' layout: the maps live in `maps-<layout>`.
    pub layout: String,
    /// [`agent_common::LAYOUT_VERSION`] of the build that made the maps: an upgrade reads an
    /// older build's flow tables (values only ever grow at their end) only when the meaning
    /// of their fields has not changed since.
    pub layout_version: u32,
    /// Digest of the program's object and load-time globals ([`super::program_digest`]).
    pub program: String,
    /// The kernel's tag of the program (what `bpftool prog show` prints).
    pub program_tag: String,
    /// Digest of the settings the instance was started with (for the log, when they change).
    pub config: String,
    /// The attachments.
    pub interfaces: Vec<PinnedIface>,
    /// Layouts an upgrade replaced whose maps stay pinned until their flows are written, with
    /// the layout version their flow tables are read by (the next start writes them out if
    /// the agent died first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<Replaced>,
    /// A program being swapped in, pinned at [`PinDir::next_program`] until every interface
    /// runs it: a start that finds an interface running it finishes the swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextProgram>,
}

/// The program a swap puts in ([`PinState::next`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextProgram {
    /// The fingerprint of its maps' layout.
    pub layout: String,
    /// [`agent_common::LAYOUT_VERSION`] of its build.
    pub layout_version: u32,
    /// Its digest ([`super::program_digest`]).
    pub program: String,
    /// Whether the open flows were copied into its tables (an upgrade with room for them):
    /// if not, every flow of the replaced tables is to be written out.
    pub migrated: bool,
    /// Its kernel id, for the interfaces to be asked whether they run it.
    #[serde(default)]
    pub id: u32,
}

/// A replaced layout whose maps are still pinned ([`PinState::replaced`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    /// Its fingerprint: the maps live in `maps-<layout>`.
    pub layout: String,
    /// [`PinState::layout_version`] of its maps.
    pub layout_version: u32,
    /// Whether its open flows were copied into the tables that replaced them
    /// ([`NextProgram::migrated`]).
    #[serde(default)]
    pub migrated: bool,
    /// The last agent's reading of its program's `lost_flow_start` before the replacement
    /// (from that agent's status snapshot): the next agent counts the starts the program lost
    /// since, and its table evicted unseen, when it writes out these maps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_starts_read: Option<u64>,
}

impl PinState {
    /// The state of a program this build loaded: maps of `layout` (and of this build's
    /// [`agent_common::LAYOUT_VERSION`]), program `digest` and kernel `tag`, the settings'
    /// digest, the attachments.
    pub fn of_this_build(
        layout: String,
        program: String,
        program_tag: String,
        config: String,
        interfaces: Vec<PinnedIface>,
    ) -> Self {
        Self {
            format: STATE_FORMAT,
            layout,
            layout_version: agent_common::LAYOUT_VERSION,
            program,
            program_tag,
            config,
            interfaces,
            replaced: Vec::new(),
            next: None,
        }
    }

    /// Names `r` as a replaced layout, instead of what was said of the same layout before.
    pub fn add_replaced(&mut self, r: Replaced) {
        self.replaced.retain(|x| x.layout != r.layout);
        self.replaced.push(r);
    }

    /// What the state knows of the maps of a layout other than its own (a replaced one); `None`
    /// when nothing: they are then unpinned unread.
    pub fn replaced(&self, layout: &str) -> Option<&Replaced> {
        self.replaced.iter().find(|r| r.layout == layout)
    }
}

/// The pin directory of one instance.
#[derive(Clone, Debug)]
pub struct PinDir {
    instance: String,
    dir: PathBuf,
}

/// A path component for `name` that bpffs accepts: letters, digits, '-' and '_' as they are,
/// every other byte as `%XX` (interface names may hold dots, as VLAN ones do).
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

impl PinDir {
    /// The directory of `instance` under `root` (not created yet).
    pub fn new(root: &Path, instance: &str) -> Result<Self, PinError> {
        let ok = !instance.is_empty()
            && instance.len() <= 64
            && instance
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(PinError::Instance(instance.to_owned()));
        }
        Ok(Self {
            instance: instance.to_owned(),
            dir: root.join(instance),
        })
    }

    /// The instance's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The instance's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The program's pin.
    pub fn program(&self) -> PathBuf {
        self.dir.join(PROGRAM)
    }

    /// Where a program about to be swapped in is pinned before the first swap
    /// ([`PinState::next`]).
    pub fn next_program(&self) -> PathBuf {
        self.dir.join(PROGRAM_NEXT)
    }

    /// Where the program of kernel id `id` a swap replaced is kept while a start finishes an
    /// interrupted swap (an interface may still run it).
    pub fn old_program(&self, id: u32) -> PathBuf {
        self.dir.join(format!("{PROGRAM_OLD}{id}"))
    }

    /// The pins of the replaced programs kept ([`PinDir::old_program`]).
    pub fn old_programs(&self) -> Result<Vec<PathBuf>, PinError> {
        let mut out = self.contents()?;
        out.retain(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PROGRAM_OLD))
        });
        Ok(out)
    }

    /// Every program pin of the instance: `prog`, `prog-next` and each replaced one kept.
    pub fn programs(&self) -> Result<Vec<PathBuf>, PinError> {
        let mut out = vec![self.program(), self.next_program()];
        out.extend(self.old_programs()?);
        Ok(out)
    }

    /// Makes the program pinned at [`PinDir::next_program`] the instance's program, replacing
    /// the pin of the one before at once (a rename); returns its kernel tag.
    pub fn promote_next(&self) -> Result<String, PinError> {
        let (next, path) = (self.next_program(), self.program());
        rename(&next, &path)?;
        self.program_tag()
    }

    /// The kernel tag of the pinned program (what `bpftool prog show` prints).
    pub fn program_tag(&self) -> Result<String, PinError> {
        let path = self.program();
        let info = aya::programs::ProgramInfo::from_pin(&path)
            .map_err(|e| io("read", &path)(std::io::Error::other(e)))?;
        Ok(format!("{:016x}", info.tag()))
    }

    /// The pin of the link on `iface`.
    pub fn link(&self, iface: &str) -> PathBuf {
        self.dir.join(format!("{LINK_PREFIX}{}", escape(iface)))
    }

    /// The directory of the maps of layout `fingerprint`.
    pub fn maps(&self, fingerprint: &str) -> PathBuf {
        self.dir.join(format!("{MAPS_PREFIX}{fingerprint}"))
    }

    /// Every link pin and every map directory there is, whatever the state says (for
    /// `detach`, which removes what it finds).
    pub fn contents(&self) -> Result<Vec<PathBuf>, PinError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", &self.dir)(e)),
        };
        let mut out = Vec::new();
        for e in entries {
            out.push(e.map_err(io("list", &self.dir))?.path());
        }
        out.sort();
        Ok(out)
    }

    /// Creates the directory (and bpffs under it, if needed).
    pub fn create(&self) -> Result<(), PinError> {
        std::fs::create_dir_all(&self.dir).map_err(io("create directory", &self.dir))
    }

    /// Takes the instance for this process: another agent of the same instance, or a
    /// `detach` of it, is refused while the lock is held. `None` when there is no
    /// directory (nothing pinned).
    pub fn lock(&self) -> Result<Option<InstanceLock>, PinError> {
        // Not through a symbolic link: the root's `detach` would empty the directory it names.
        let Some(file) = walk::open_dir(&self.dir, "open")? else {
            return Ok(None);
        };
        // A lock another process is letting go of is asked again for a short while.
        if !lock_exclusive(&file, LOCK_PATIENCE).map_err(io("lock", &self.dir))? {
            return Err(PinError::Busy {
                instance: self.instance.clone(),
                path: self.dir.clone(),
            });
        }
        Ok(Some(InstanceLock { file }))
    }

    /// The state, if the instance has one.
    pub fn read_state(&self) -> Result<Option<PinState>, PinError> {
        let path = self.dir.join(STATE);
        let target = match std::fs::read_link(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &path)(e)),
        };
        let bad = |reason: String| PinError::State {
            path: path.clone(),
            reason,
        };
        let text = target
            .to_str()
            .ok_or_else(|| bad("not UTF-8".into()))?
            .to_owned();
        let state: PinState = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if state.format != STATE_FORMAT {
            return Err(bad(format!(
                "format {} (this agent reads {STATE_FORMAT})",
                state.format
            )));
        }
        Ok(Some(state))
    }

    /// Replaces the state at once (a new symlink renamed over the old).
    pub fn write_state(&self, state: &PinState) -> Result<(), PinError> {
        let path = self.dir.join(STATE);
        let text = serde_json::to_string(state).map_err(|e| PinError::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if text.len() > STATE_MAX {
            return Err(PinError::State {
                path,
                reason: format!(
                    "{} bytes, more than a symlink holds ({STATE_MAX}); use fewer interfaces",
                    text.len()
                ),
            });
        }
        let new = self.dir.join(STATE_NEW);
        remove(&new)?;
        std::os::unix::fs::symlink(&text, &new).map_err(io("create", &new))?;
        std::fs::rename(&new, &path).map_err(io("replace", &path))
    }

    /// Removes the state (last step of `detach`, so an interrupted detach can be repeated).
    pub fn remove_state(&self) -> Result<(), PinError> {
        [STATE_NEW, STATE]
            .into_iter()
            .try_for_each(|name| remove(&self.dir.join(name)))
    }
}

/// Whether a path (or the part of it that exists) is a link or a map directory of an
/// instance, by its name.
pub fn is_link_pin(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(LINK_PREFIX))
}

/// Renames a pin (replacing what `to` named).
pub fn rename(from: &Path, to: &Path) -> Result<(), PinError> {
    std::fs::rename(from, to).map_err(io("rename", from))
}

/// The kernel id of the program pinned at `path`, if one is.
pub fn program_id(path: &Path) -> Option<u32> {
    aya::programs::ProgramInfo::from_pin(path)
        .ok()
        .map(|i| i.id())
}

/// Removes a pin (or the state's symlink); one already gone is no error.
pub fn remove(path: &Path) -> Result<(), PinError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Whether `path` is a map directory of an instance, by its name.
pub fn is_maps_dir(path: &Path) -> bool {
    maps_layout(path).is_some()
}

/// The layout fingerprint a map directory is named for (the inverse of [`PinDir::maps`]).
pub fn maps_layout(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()?.strip_prefix(MAPS_PREFIX)
}

/// Holds an instance for this process; released on drop.
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
}

impl InstanceLock {
    /// The instance's directory as this lock holds it, for removals run as root: its paths
    /// (under `/proc/self/fd/N`) name the directory locked whatever its path leads to now.
    /// The agent's user owns the pin root and could swap the directory for a link to `/etc`
    /// once the lock is taken; removals by path would then unlink `/etc/state`.
    /// Refused when that path does not lead to the locked directory (no /proc mounted: every
    /// removal would then find nothing, and say nothing).
    pub fn held(&self, pins: &PinDir) -> Result<PinDir, PinError> {
        use std::os::unix::fs::MetadataExt as _;
        let held = PinDir {
            instance: pins.instance.clone(),
            dir: Path::new("/proc/self/fd").join(self.file.as_raw_fd().to_string()),
        };
        let locked = self.file.metadata().map_err(io("stat", &pins.dir))?;
        match std::fs::metadata(&held.dir) {
            Ok(m) if (m.dev(), m.ino()) == (locked.dev(), locked.ino()) => Ok(held),
            _ => Err(io("reach through /proc/self/fd", &pins.dir)(
                std::io::Error::other(
                    "the descriptor's path does not lead to the locked directory (is /proc \
                 mounted?); nothing removed",
                ),
            )),
        }
    }
}

impl PinError {
    /// The error with paths under a [`InstanceLock::held`] directory shown under `real`, the
    /// instance's path an operator knows.
    pub fn shown_as(self, held: &Path, real: &Path) -> Self {
        let shown = |p: PathBuf| match p.strip_prefix(held) {
            Ok(rest) => real.join(rest),
            Err(_) => p,
        };
        match self {
            Self::Io { op, path, cause } => Self::Io {
                op,
                path: shown(path),
                cause,
            },
            Self::State { path, reason } => Self::State {
                path: shown(path),
                reason,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> PinState {
        PinState {
            format: STATE_FORMAT,
            layout: "0123456789abcdef".into(),
            layout_version: agent_common::LAYOUT_VERSION,
            program: "ab".repeat(32),
            program_tag: "0011223344556677".into(),
            config: "cd".repeat(32),
            interfaces: vec![
                PinnedIface {
                    name: "eth1".into(),
                    ifindex: 3,
                    mode: AttachMode::Native,
                    link: true,
                },
                PinnedIface {
                    name: "eth0.100".into(),
                    ifindex: 9,
                    mode: AttachMode::Skb,
                    link: false,
                },
            ],
            replaced: vec![Replaced {
                layout: "ef".repeat(32),
                layout_version: 3,
                migrated: true,
                lost_starts_read: Some(7),
            }],
            next: Some(NextProgram {
                layout: "12".repeat(32),
                layout_version: 3,
                program: "34".repeat(32),
                migrated: false,
                id: 42,
            }),
        }
    }

    fn temp(tag: &str) -> crate::blocklist::tests::TempDir {
        crate::blocklist::tests::TempDir::new(tag)
    }

    #[test]
    fn a_state_knows_its_replaced_layouts_and_an_older_one_without_them_reads() {
        let mut s = state();
        assert_eq!(
            s.replaced(&"ef".repeat(32)).map(|r| r.layout_version),
            Some(3)
        );
        assert_eq!(s.replaced("00"), None, "unknown: read by no build");
        s.replaced.clear();
        s.next = None;
        let text = serde_json::to_string(&s).expect("encode");
        assert!(
            !text.contains("replaced") && !text.contains("next"),
            "none, not written: {text}"
        );
        assert_eq!(serde_json::from_str::<PinState>(&text).expect("decode"), s);
    }

    #[test]
    fn the_state_round_trips_through_its_symlink_and_is_replaced_whole() {
        let t = temp("pinstate");
        let pins = PinDir::new(&t.0, "gw1").expect("name");
        assert_eq!(pins.read_state().expect("read"), None, "no state yet");
        pins.create().expect("create");
        let mut s = state();
        pins.write_state(&s).expect("write");
        assert_eq!(pins.read_state().expect("read"), Some(s.clone()));
        s.layout = "fedcba9876543210".into();
        s.interfaces.pop();
        pins.write_state(&s).expect("rewrite");
        assert_eq!(pins.read_state().expect("read"), Some(s));
        let names: Vec<String> = std::fs::read_dir(pins.dir())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["state"], "no temporary left, no dots");
        pins.remove_state().expect("remove");
        assert_eq!(pins.read_state().expect("read"), None);
    }

    #[test]
    fn a_state_of_another_format_or_garbage_is_refused_with_the_way_out() {
        let t = temp("pinstate-bad");
        let pins = PinDir::new(&t.0, "gw1").expect("name");
        pins.create().expect("create");
        std::os::unix::fs::symlink("{not json", pins.dir().join(STATE)).expect("symlink");
        let e = pins.read_state().expect_err("garbage");
        assert!(e.to_string().contains("xdp-audit detach"), "{e}");
        let mut s = state();
        s.format = STATE_FORMAT + 1;
        let text = serde_json::to_string(&s).expect("json");
        std::fs::remove_file(pins.dir().join(STATE)).expect("rm");
        std::os::unix::fs::symlink(text, pins.dir().join(STATE)).expect("symlink");
        let e = pins.read_state().expect_err("future format");
        assert!(e.to_string().contains("format 2"), "{e}");
    }

    #[test]
    fn a_state_too_long_for_a_symlink_is_refused_before_anything_is_written() {
        let t = temp("pinstate-long");
        let pins = PinDir::new(&t.0, "gw1").expect("name");
        pins.create().expect("create");
        let mut s = state();
        s.interfaces = (0..200)
            .map(|i| PinnedIface {
                name: format!("veth{i}"),
                ifindex: i,
                mode: AttachMode::Skb,
                link: true,
            })
            .collect();
        let e = pins.write_state(&s).expect_err("too long");
        assert!(e.to_string().contains("fewer interfaces"), "{e}");
        assert_eq!(pins.read_state().expect("read"), None);
    }

    #[test]
    fn names_become_paths_bpffs_accepts() {
        for bad in ["", "a.b", "a/b", "..", &"x".repeat(65), "gw 1"] {
            assert!(PinDir::new(Path::new("/r"), bad).is_err(), "{bad:?}");
        }
        let pins = PinDir::new(Path::new("/r"), "gw-1_a").expect("name");
        assert_eq!(pins.dir(), Path::new("/r/gw-1_a"));
        assert_eq!(
            pins.link("eth0.100"),
            Path::new("/r/gw-1_a/link-eth0%2e100")
        );
        assert_eq!(pins.link("lan0"), Path::new("/r/gw-1_a/link-lan0"));
        assert_eq!(pins.maps("00ff"), Path::new("/r/gw-1_a/maps-00ff"));
        assert!(is_link_pin(&pins.link("lan0")));
        assert!(is_maps_dir(&pins.maps("00ff")));
        assert!(!is_maps_dir(&pins.program()));
        assert_eq!(maps_layout(&pins.maps("00ff")), Some("00ff"));
        assert_eq!(maps_layout(&pins.link("lan0")), None);
    }

    #[test]
    fn a_second_lock_on_an_instance_is_refused_until_the_first_is_dropped() {
        let t = temp("pinlock");
        let pins = PinDir::new(&t.0, "gw1").expect("name");
        assert!(pins.lock().expect("no dir").is_none());
        pins.create().expect("create");
        let first = pins.lock().expect("lock").expect("dir exists");
        let e = pins.lock().expect_err("busy");
        let e = e.to_string();
        assert!(
            e.contains("stop that agent first") && e.contains("another --instance"),
            "{e}"
        );
        drop(first);
        assert!(pins.lock().expect("free again").is_some());
    }

    /// An instance directory that is a link is not locked, so not detached through.
    #[test]
    fn an_instance_directory_that_is_a_link_is_refused() {
        let t = temp("pinlock-link");
        let elsewhere = t.0.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).expect("dir");
        std::os::unix::fs::symlink(&elsewhere, t.0.join("gw1")).expect("link");
        let pins = PinDir::new(&t.0, "gw1").expect("name");
        let e = pins.lock().expect_err("a link");
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }
}
