//! A start that dies between swapping its program in on an interface and pinning it leaves
//! the interface running a program the instance's `prog` pin does not name; an upgrade that
//! dies there also leaves the state naming the maps that program no longer reads. Left so,
//! every later start found the interface held by a foreign program and gave up (Busy).
//!
//! Such a program is still the instance's own: it reads maps pinned under the instance's
//! directory, and no other instance's program does. [`finish_interrupted`] finds it, pins
//! it as the instance's program and names its maps in the state, so the start goes on as an
//! adoption of what really runs; a map directory no longer named by the state is handed
//! back, for its flows to be written out ([`super::upgrade::retire_leftover`]) and its pins
//! removed. The same holds for a replaced layout whose flows an upgrade had not written yet
//! when its agent died: the state names it, with its layout version, until they are
//! ([`note_replaced`]).

use std::collections::HashMap;
use std::os::fd::AsFd as _;
use std::path::PathBuf;

use aya::maps::MapInfo;
use aya::programs::{loaded_programs, ProgramFd, ProgramInfo};
use tracing::warn;

use super::adopt::{Spec, StartError, Started};
use super::netlink;
use super::pin::{self, PinDir, PinState, Replaced};

/// Where a crash test asks the agent to stop as a kill would: a process whose
/// `XDP_AUDIT_CRASH_AT` names `point` aborts there (no destructor runs, no pin is removed).
pub(crate) fn crash_point(point: &str) {
    if std::env::var_os("XDP_AUDIT_CRASH_AT").is_some_and(|v| v == point) {
        eprintln!("XDP_AUDIT_CRASH_AT={point}: aborting here");
        std::process::abort();
    }
}

/// The maps pinned under an instance's directory, by kernel map id, with the layout (the
/// map directory's fingerprint) each belongs to.
pub(super) struct Ours {
    layouts: HashMap<u32, String>,
}

impl Ours {
    /// Reads the ids of every map pinned under `pins` (a pin that cannot be opened is no map
    /// of ours).
    pub(super) fn of(pins: &PinDir) -> Self {
        let mut layouts = HashMap::new();
        for dir in pins.contents().unwrap_or_default() {
            let Some(layout) = pin::maps_layout(&dir) else {
                continue;
            };
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if let Ok(info) = MapInfo::from_pin(e.path()) {
                    layouts.insert(info.id(), layout.to_owned());
                }
            }
        }
        Self { layouts }
    }

    /// The instance's program of kernel id `id`, and the layout whose maps it reads; `None`
    /// for a program that reads none of the instance's maps.
    pub(super) fn program(&self, id: u32) -> Option<(ProgramInfo, String)> {
        let info = loaded_programs().flatten().find(|p| p.id() == id)?;
        let layout = info
            .map_ids()
            .ok()
            .flatten()?
            .iter()
            .find_map(|m| self.layouts.get(m))?
            .clone();
        Some((info, layout))
    }
}

/// The descriptor of a program found by [`Ours::program`].
pub(super) fn program_fd(info: &ProgramInfo) -> Result<ProgramFd, StartError> {
    info.fd().map_err(|e| StartError::Program {
        what: format!("opening program {}", info.id()),
        cause: e.to_string(),
    })
}

/// Makes the state name what really runs (see the module documentation); returns it, and
/// the map directories it does not name, each with the layout version their maps have
/// when the state knows it (0 when not: they are then unpinned unread).
pub(super) fn finish_interrupted(
    spec: &Spec,
    state: PinState,
) -> Result<(PinState, Vec<(PathBuf, u32)>), StartError> {
    let pinned = ProgramInfo::from_pin(spec.pins.program())
        .map(|i| i.id())
        .ok();
    let ours = Ours::of(&spec.pins);
    let found = state.interfaces.iter().find_map(|o| {
        let attached = netlink::query(o.ifindex).ok().flatten()?;
        if Some(attached.prog_id) == pinned {
            return None;
        }
        let (info, layout) = ours.program(attached.prog_id)?;
        Some((o.name.clone(), info, layout))
    });
    let state = match found {
        None => state,
        Some((iface, info, layout)) => {
            warn!(
                iface,
                layout,
                "an earlier start stopped between swapping its program in and pinning it: \
                 the program on the interface reads this instance's maps, so it is taken as \
                 the running one"
            );
            let fd = program_fd(&info)?;
            let program_tag = spec.pins.pin_program(fd.as_fd())?;
            let layout_version = state.version_of(&layout);
            let mut replaced = state.replaced.clone();
            if layout != state.layout {
                // Still pinned, and its flows not yet written: a crash before they are
                // leaves the next start what it needs to read them.
                replaced.push(Replaced {
                    layout: state.layout.clone(),
                    layout_version: state.layout_version,
                });
            }
            let recovered = PinState {
                layout,
                layout_version,
                // Unknown: the start loads its own program and swaps it in.
                program: String::new(),
                program_tag,
                replaced,
                ..state
            };
            spec.pins.write_state(&recovered)?;
            recovered
        }
    };
    let leftovers = spec
        .pins
        .contents()?
        .into_iter()
        .filter_map(|p| {
            let layout = pin::maps_layout(&p)?;
            let version = state.version_of(layout);
            (layout != state.layout).then_some((p, version))
        })
        .collect();
    Ok((state, leftovers))
}

/// Names in the state every replaced layout whose maps stay pinned until the records stage
/// writes their flows, with its version, so that an agent dying first leaves the next start
/// able to read them.
pub(super) fn note_replaced(spec: &Spec, started: &Started) -> Result<(), StartError> {
    let Some(r) = started.maps.retired.as_ref().filter(|r| !r.pins.is_empty()) else {
        return Ok(());
    };
    let Some(mut state) = spec.pins.read_state()? else {
        return Ok(());
    };
    let replaced: Vec<Replaced> = r
        .pins
        .iter()
        .filter_map(|(dir, version)| {
            Some(Replaced {
                layout: pin::maps_layout(dir)?.to_owned(),
                layout_version: *version,
            })
        })
        .collect();
    if replaced != state.replaced {
        state.replaced = replaced;
        spec.pins.write_state(&state)?;
    }
    Ok(())
}
