//! `xdp-audit detach`: an instance removed from the kernel and from bpffs, whatever state it
//! is in (also the leftovers of a start that died before writing its state).

use std::path::Path;

use aya::programs::Xdp;
use aya_obj::programs::XdpAttachType;
use tracing::warn;

use super::adopt::{
    prog_id, released, remove_attachment, remove_dir_pins, remove_file, StartError, DETACH_DEADLINE,
};
use super::netlink;
use super::pin::{self, InstanceLock, PinDir, PinError, PinState};

/// What `detach` removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detached {
    /// Link pins removed (each detaches its interface).
    pub links: usize,
    /// Netlink attachments removed.
    pub netlink: usize,
    /// Map directories removed.
    pub map_dirs: usize,
    /// Whether a program pin was removed.
    pub program: bool,
}

/// Removes an instance: every attachment, the program, the maps, the state, the directory.
/// Idempotent (nothing there is success); refused while an agent runs the instance.
pub fn detach(pins: &PinDir) -> Result<Detached, StartError> {
    let Some(lock) = pins.lock()? else {
        return Ok(Detached::default());
    };
    through(pins, &lock, |held| {
        let state = held.read_state().ok().flatten();
        // Every program of the instance (a start killed mid-swap leaves more than one).
        let ours: Vec<u32> = held
            .programs()?
            .into_iter()
            .filter_map(|p| pin::program_id(&p))
            .collect();
        let report = remove_pins(held, state.as_ref())?;
        for o in state.as_ref().map_or(&[][..], |s| &s.interfaces) {
            let ifindex = super::ifindex(&o.name).unwrap_or(o.ifindex);
            if ours.iter().any(|&id| !released(ifindex, Some(id))) {
                warn!(
                    iface = o.name,
                    "the program is still on the interface {DETACH_DEADLINE:?} after its link \
                     was removed; the kernel removes it when the last reference goes"
                );
            }
        }
        remove_state_and_dir(held, pins.dir())?;
        Ok(report)
    })
}

/// Runs `f` on the instance's directory as `lock` holds it ([`InstanceLock::held`]: root's
/// removals never follow a link the agent's user put in its place), its errors naming the
/// instance's own path.
pub(super) fn through<T>(
    pins: &PinDir,
    lock: &InstanceLock,
    f: impl FnOnce(&PinDir) -> Result<T, StartError>,
) -> Result<T, StartError> {
    let held = lock.held(pins)?;
    f(&held).map_err(|e| e.shown_as(held.dir(), pins.dir()))
}

/// Removes the instance's state (in the directory `held`) and its directory `real`, once
/// nothing else is pinned in it. The directory goes by path: `rmdir` removes only an empty
/// directory and refuses a link.
pub(super) fn remove_state_and_dir(held: &PinDir, real: &Path) -> Result<(), StartError> {
    held.remove_state()?;
    match std::fs::remove_dir(real) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PinError::Io {
            op: "remove directory",
            path: real.to_owned(),
            cause: e,
        }
        .into()),
        _ => Ok(()),
    }
}

/// Removes the attachments, program and maps of an instance (whatever is there; `state`
/// tells which interfaces hold netlink attachments).
pub(super) fn remove_pins(pins: &PinDir, state: Option<&PinState>) -> Result<Detached, StartError> {
    let mut report = Detached::default();
    // A start killed mid-swap may have left an interface running the program at `prog-next`
    // or a replaced one: each netlink attachment is removed naming the program it holds.
    let programs: Vec<(u32, Xdp)> = pins
        .programs()?
        .into_iter()
        .filter_map(|p| Xdp::from_pin(p, XdpAttachType::Interface).ok())
        .filter_map(|x| Some((prog_id(&x).ok()?, x)))
        .collect();
    for o in state.map_or(&[][..], |s| &s.interfaces) {
        if o.link {
            continue;
        }
        let Some(ifindex) = super::ifindex(&o.name) else {
            continue;
        };
        let attached = netlink::query(ifindex).ok().flatten();
        let held = attached.and_then(|a| programs.iter().find(|(id, _)| *id == a.prog_id));
        if let Some((_, p)) = held {
            remove_attachment(pins, o, ifindex, p)?;
            report.netlink += 1;
        }
    }
    for path in pins.contents()? {
        if pin::is_link_pin(&path) {
            remove_file(&path)?;
            report.links += 1;
        } else if pin::is_maps_dir(&path) {
            remove_dir_pins(&path)?;
            report.map_dirs += 1;
        }
    }
    drop(programs);
    for p in pins.programs()? {
        if p.exists() {
            remove_file(&p)?;
            report.program = true;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The instance's directory swapped for a link to another directory once `detach` holds
    /// the lock: the files removed are the instance's, wherever it was moved, never those the
    /// link names (root unlinked `state`, `prog` and `link-*` there).
    #[test]
    fn a_directory_swapped_for_a_link_after_the_lock_is_not_followed() {
        let t = crate::blocklist::tests::TempDir::new("detach-swap");
        let (root, victim) = (t.0.join("root"), t.0.join("victim"));
        let pins = PinDir::new(&root, "inst").expect("instance");
        for dir in [pins.dir(), victim.as_path()] {
            std::fs::create_dir_all(dir).expect("dir");
            std::fs::write(dir.join("prog"), "p").expect("prog");
            std::fs::write(dir.join("link-eth0"), "l").expect("link pin");
            std::os::unix::fs::symlink("{}", dir.join("state")).expect("state");
        }
        let lock = pins.lock().expect("lock").expect("a directory");
        let moved = root.join("moved");
        std::fs::rename(pins.dir(), &moved).expect("move away");
        std::os::unix::fs::symlink(&victim, pins.dir()).expect("link in its place");
        let done = through(&pins, &lock, |held| {
            let report = remove_pins(held, None)?;
            remove_state_and_dir(held, pins.dir()).map(|()| report)
        });
        // The directory's path is now a link: `rmdir` refuses it, naming the instance's path.
        let e = done.expect_err("the link is not removed as a directory");
        assert!(
            e.to_string().contains(&pins.dir().display().to_string()),
            "{e}"
        );
        for name in ["prog", "link-eth0", "state"] {
            assert!(
                std::fs::symlink_metadata(victim.join(name)).is_ok(),
                "{name} kept where the link points"
            );
            assert!(
                std::fs::symlink_metadata(moved.join(name)).is_err(),
                "{name} removed from the instance's own directory"
            );
        }
    }
}
