//! `xdp-audit detach`: an instance removed from the kernel and from bpffs, whatever state it
//! is in (also the leftovers of a start that died before writing its state).

use aya::programs::Xdp;
use aya_obj::programs::XdpAttachType;
use tracing::warn;

use super::adopt::{
    prog_id, released, remove_attachment, remove_dir_pins, remove_file, StartError, DETACH_DEADLINE,
};
use super::netlink;
use super::pin::{self, PinDir, PinError, PinState};

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
    let Some(_lock) = pins.lock()? else {
        return Ok(Detached::default());
    };
    let state = pins.read_state().ok().flatten();
    // Every program of the instance (a start killed mid-swap leaves more than one).
    let ours: Vec<u32> = pins
        .programs()?
        .into_iter()
        .filter_map(|p| pin::program_id(&p))
        .collect();
    let report = remove_pins(pins, state.as_ref())?;
    for o in state.as_ref().map_or(&[][..], |s| &s.interfaces) {
        let ifindex = super::ifindex(&o.name).unwrap_or(o.ifindex);
        if ours.iter().any(|&id| !released(ifindex, Some(id))) {
            warn!(
                iface = o.name,
                "the program is still on the interface {DETACH_DEADLINE:?} after its link was \
                 removed; the kernel removes it when the last reference goes"
            );
        }
    }
    remove_state_and_dir(pins)?;
    Ok(report)
}

/// Removes the instance's state and its directory, once nothing else is pinned in it.
pub(super) fn remove_state_and_dir(pins: &PinDir) -> Result<(), StartError> {
    pins.remove_state()?;
    match std::fs::remove_dir(pins.dir()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PinError::Io {
            op: "remove directory",
            path: pins.dir().to_owned(),
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
