//! A swap that a kill can interrupt anywhere. A start that swaps a program in (a new build on
//! the pinned maps, or an upgrade's program with new maps) first pins it at `prog-next` and
//! names it in the state ([`PinState::next`]), then swaps it in on each interface, then
//! renames it to `prog` ([`swap_in`]). Left without this, a start killed between a swap and
//! the pin made every later start find the interface held by a program it did not know and
//! give up (Busy).
//!
//! The next start ([`finish_interrupted`]) asks the interfaces: one that runs the named
//! program means the swap happened, so that program becomes the instance's (the one it
//! replaced is kept at `prog-old-<id>` for an interface still running it) and the state names its
//! maps; none means it did not, and the pin is dropped. Only pins and the state are read, so
//! this works with the unit's capabilities (no CAP_SYS_ADMIN to list the kernel's programs).
//!
//! Map directories the state no longer names are read before anything may reuse their names
//! ([`retire_leftovers`]): a replaced layout whose flows were not yet written (its agent died
//! first) has them written out by the new agent, and the maps of an upgrade that never ran
//! are unpinned.

use std::path::PathBuf;

use aya::programs::Xdp;
use aya_obj::programs::XdpAttachType;
use tracing::warn;

use super::adopt::{pin_next, prog_id, reconcile, remove_file, Spec, StartError, Started};
use super::netlink;
use super::pin::{self, NextProgram, PinState, PinnedIface, Replaced};
use super::upgrade::{self, Retired};

/// Where a crash test asks the agent to stop as a kill would: a process whose
/// `XDP_AUDIT_CRASH_AT` names `point` aborts there (no destructor runs, no pin is removed).
pub(crate) fn crash_point(point: &str) {
    crash_point_counting(point, 0);
}

/// [`crash_point`], where `XDP_AUDIT_CRASH_AT=point:N` aborts only once `count` (what the
/// caller counts there) reaches N. The variable is read once.
pub(crate) fn crash_point_counting(point: &str, count: u64) {
    static AT: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| {
        let v = std::env::var("XDP_AUDIT_CRASH_AT").ok()?;
        Some(match v.split_once(':') {
            Some((p, n)) => match n.parse() {
                Ok(n) => (p.to_owned(), n),
                Err(_) => panic!("XDP_AUDIT_CRASH_AT={v}: the count after ':' is not a number"),
            },
            None => (v, 0),
        })
    });
    if let Some((p, n)) = at {
        if p == point && count >= *n {
            eprintln!("XDP_AUDIT_CRASH_AT={point}: aborting here ({count} counted)");
            std::process::abort();
        }
    }
}

/// Swaps `new` in for `running` on every interface of `state` (see the module
/// documentation); returns the attachments and the new program's tag.
pub(super) fn swap_in(
    spec: &Spec,
    state: &PinState,
    running: &mut Xdp,
    new: &mut Xdp,
    next: NextProgram,
) -> Result<(Vec<PinnedIface>, String), StartError> {
    pin_next(new, &spec.pins)?;
    let id = prog_id(new)?;
    spec.pins.write_state(&PinState {
        next: Some(NextProgram { id, ..next }),
        ..state.clone()
    })?;
    let interfaces = reconcile(spec, state, running, Some(new))?;
    let tag = spec.pins.promote_next()?;
    Ok((interfaces, tag))
}

/// The program of kernel id `id` an interrupted swap replaced, if it is kept
/// ([`PinDir::old_program`](super::pin::PinDir::old_program)).
pub(super) fn replaced_program(spec: &Spec, id: u32) -> Option<Xdp> {
    Xdp::from_pin(spec.pins.old_program(id), XdpAttachType::Interface).ok()
}

/// Makes the state name what really runs (see the module documentation); returns it, and
/// the map directories it does not name.
pub(super) fn finish_interrupted(
    spec: &Spec,
    state: PinState,
) -> Result<(PinState, Vec<PathBuf>), StartError> {
    let pins = &spec.pins;
    let state = match state.next.clone() {
        None => {
            // Pinned by a start that died before naming it: it never ran.
            remove_file(&pins.next_program())?;
            state
        }
        Some(next) => {
            // Asked of every interface the state or the configuration names: a swap puts
            // the program on a newly configured one too.
            let mut ifaces: Vec<(&str, u32)> = state
                .interfaces
                .iter()
                .map(|o| (o.name.as_str(), o.ifindex))
                .collect();
            ifaces.extend(spec.interfaces.iter().map(|t| (t.name.as_str(), t.ifindex)));
            let mut runs = None;
            for (name, ifindex) in ifaces {
                let attached = match netlink::query(ifindex) {
                    Ok(a) => a,
                    // Gone since (re-created, or removed): it runs nothing of ours.
                    Err(e) if e.raw_os_error() == Some(libc::ENODEV) => None,
                    Err(cause) => {
                        return Err(StartError::Netlink {
                            iface: name.to_owned(),
                            cause,
                        })
                    }
                };
                if next.id != 0 && attached.is_some_and(|a| a.prog_id == next.id) {
                    runs = Some(name.to_owned());
                    break;
                }
            }
            match runs {
                Some(iface) => {
                    warn!(
                        iface,
                        layout = next.layout,
                        "an earlier start stopped in the middle of swapping its program in: \
                         the interface runs it, so it is taken as the running one"
                    );
                    if pin::program_id(&pins.next_program()) == Some(next.id) {
                        // Kept for an interface that still runs it (gone already if a
                        // recovery stopped between these two renames).
                        if let Some(old) =
                            pin::program_id(&pins.program()).filter(|&i| i != next.id)
                        {
                            pin::rename(&pins.program(), &pins.old_program(old))?;
                            crash_point("promote");
                        }
                        pins.promote_next()?;
                    } else if pin::program_id(&pins.program()) != Some(next.id) {
                        return Err(StartError::Inconsistent {
                            dir: pins.dir().to_owned(),
                            what: format!(
                                "{iface} runs the program being swapped in, which no pin \
                                 holds; remove the instance with `xdp-audit detach`"
                            ),
                        });
                    }
                    let mut recovered = PinState {
                        layout: next.layout.clone(),
                        layout_version: next.layout_version,
                        program: next.program.clone(),
                        program_tag: pins.program_tag()?,
                        next: None,
                        ..state.clone()
                    };
                    if next.layout != state.layout {
                        // Its flows not yet written: a crash before they are leaves the
                        // next start what it needs to read them.
                        recovered.add_replaced(Replaced {
                            layout: state.layout.clone(),
                            layout_version: state.layout_version,
                            migrated: next.migrated,
                            lost_starts_read: spec.lost_starts_read,
                        });
                    }
                    pins.write_state(&recovered)?;
                    recovered
                }
                None => {
                    // The swap never happened: the state first, so that a kill between the
                    // two leaves a pin no state names (dropped by the next start).
                    let s = PinState {
                        next: None,
                        ..state
                    };
                    pins.write_state(&s)?;
                    remove_file(&pins.next_program())?;
                    s
                }
            }
        }
    };
    let leftovers = pins
        .contents()?
        .into_iter()
        .filter(|p| pin::maps_layout(p).is_some_and(|l| l != state.layout))
        .collect();
    Ok((state, leftovers))
}

/// Reads the map directories of `leftovers` (see the module documentation): what their
/// tables hold that was not moved into the running ones, to be written by the records stage.
pub(super) fn retire_leftovers(
    spec: &Spec,
    state: &PinState,
    leftovers: Vec<PathBuf>,
) -> Result<Option<Retired>, StartError> {
    if leftovers.is_empty() {
        return Ok(None);
    }
    let running = upgrade::flow_keys(&spec.pins.maps(&state.layout))?;
    let mut all: Option<Retired> = None;
    for dir in leftovers {
        let replaced = pin::maps_layout(&dir).and_then(|l| state.replaced(l));
        if let Some(r) = upgrade::retire_leftover(&dir, replaced, &running)? {
            all.get_or_insert_with(Retired::default).merge(r);
        }
    }
    Ok(all)
}

/// Ends a start that found leftovers: hands what they held to the records stage (but for a
/// directory an upgrade has just made afresh under the same name), names them in the state
/// until they are written, and drops the replaced program an interrupted swap kept.
pub(super) fn finish(
    spec: &Spec,
    started: &mut Started,
    leftovers: Option<Retired>,
) -> Result<(), StartError> {
    if let Some(mut l) = leftovers {
        let now = spec.pins.read_state()?.map(|s| spec.pins.maps(&s.layout));
        l.pins.retain(|(dir, _)| Some(dir) != now.as_ref());
        started
            .maps
            .retired
            .get_or_insert_with(Retired::default)
            .merge(l);
    }
    note_replaced(spec, started)?;
    // Every interface runs the new program now: the replaced ones kept are of no use.
    for p in spec.pins.old_programs()? {
        remove_file(&p)?;
    }
    Ok(())
}

/// Names in the state every replaced layout whose maps stay pinned until the records stage
/// writes their flows, so that an agent dying first leaves the next start able to read them.
fn note_replaced(spec: &Spec, started: &Started) -> Result<(), StartError> {
    let Some(r) = started.maps.retired.as_ref().filter(|r| !r.pins.is_empty()) else {
        return Ok(());
    };
    let Some(mut state) = spec.pins.read_state()? else {
        return Ok(());
    };
    let replaced: Vec<Replaced> = r.pins.iter().map(|(_, r)| r.clone()).collect();
    if replaced != state.replaced {
        state.replaced = replaced;
        spec.pins.write_state(&state)?;
    }
    Ok(())
}
