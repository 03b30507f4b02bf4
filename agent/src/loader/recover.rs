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
//! removed.

use std::collections::HashMap;
use std::os::fd::AsFd as _;
use std::path::PathBuf;

use aya::maps::MapInfo;
use aya::programs::{loaded_programs, ProgramFd, ProgramInfo};
use tracing::warn;

use super::adopt::{Spec, StartError};
use super::netlink;
use super::pin::{self, PinDir, PinState};

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
/// when it is known (0 when not).
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
    let before = (state.layout.clone(), state.layout_version);
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
            let layout_version = if layout == state.layout {
                state.layout_version
            } else {
                0
            };
            let recovered = PinState {
                layout,
                layout_version,
                // Unknown: the start loads its own program and swaps it in.
                program: String::new(),
                program_tag,
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
            let version = if layout == before.0 { before.1 } else { 0 };
            (layout != state.layout).then_some((p, version))
        })
        .collect();
    Ok((state, leftovers))
}
