//! The start of a pinned agent (its removal: [`super::detach`]).
//!
//! [`start`] finds one of three situations in the instance's pin directory ([`super::pin`]):
//! - nothing: a fresh start. The program is loaded with its maps pinned in
//!   `maps-<fingerprint>/`, the lists written, each interface attached and its link pinned,
//!   the program pinned, the state written.
//! - a running program of the same layout: an adoption. Nothing is detached, nothing
//!   reloaded that is not different: the list files are compared with what the list maps
//!   hold and only the difference is written (with the domain-hash key read back from
//!   `DOMAIN_KEY`); a different program (a new build, other globals) is loaded on the same
//!   pinned maps and swapped in on each link at once; interfaces added, removed or
//!   re-created are attached or detached. The ring buffer and the flow tables are the same
//!   maps: the daemon drains what accumulated and takes the flows over.
//! - a running program of another layout: an upgrade ([`super::upgrade`]).
//!
//! A change of XDP mode on an interface cannot be made without a moment with no program (a
//! link is bound to its mode): it is done as a detach and an attach, with a warning. An
//! attachment the kernel made through netlink (no bpf_link) is said so, leaves no link pin,
//! and is replaced or removed through netlink with the program it is expected to hold.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::Xdp;
use aya_obj::programs::XdpAttachType;
use tracing::{info, warn};

use super::detach::remove_pins;
pub use super::detach::{detach, Detached};
use super::layout::{program_digest, Layout, LayoutError};
use super::pin::{self, InstanceLock, NextProgram, PinDir, PinError, PinState, PinnedIface};
use super::recover;

mod reconcile;
use super::{
    attach_xdp, netlink, take_flow_maps, AttachMode, LoadError, LoadOptions, Loaded, Maps,
    PinnedMaps, EBPF_OBJECT,
};
use crate::blocklist::{Capacity, Delta, ListSet, ListSpec};
use crate::daemon::lists::{read_adopting, read_at_start, read_for_new_tables};
use crate::enforce::{EnforceError, ListMaps};
pub(super) use reconcile::reconcile;

/// An interface to audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its name.
    pub name: String,
    /// Its index in this thread's network namespace.
    pub ifindex: u32,
    /// Whether it is internet-facing (list rules match sources there).
    pub wan: bool,
}

/// What a pinned agent starts with.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The instance's pin directory.
    pub pins: PinDir,
    /// Flow-table and ring sizes (the list capacities and the domain key are decided here).
    pub sizes: LoadOptions,
    /// The interfaces.
    pub interfaces: Vec<Target>,
    /// The attach mode asked for.
    pub mode: AttachMode,
    /// The list files.
    pub files: Vec<ListSpec>,
    /// The state directory, where the lists' versions in force are kept
    /// ([`crate::blocklist::ListSet::keeping`]); `None` keeps none.
    pub state_dir: Option<PathBuf>,
    /// Smallest size of each list table (`--list-capacity`).
    pub list_floor: u32,
    /// Digest of the settings, for the state.
    pub config: String,
    /// Attach new interfaces through netlink, as the kernel does where it has no XDP links
    /// (tests of that path; the agent itself always asks for a link first).
    pub netlink: bool,
    /// The last agent's reading of the running program's `lost_flow_start` (its status
    /// snapshot), kept with that program's maps if this start replaces them
    /// ([`super::pin::Replaced::lost_starts_read`]).
    pub lost_starts_read: Option<u64>,
}

/// What the start found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was pinned: loaded and attached afresh.
    Fresh,
    /// The running program of the same layout was adopted.
    Adopted {
        /// Whether a different program was swapped in on its links.
        program_replaced: bool,
    },
    /// The layout changed: a new program with new maps was swapped in on the links.
    Upgraded {
        /// The layout replaced.
        from: String,
        /// Flows moved into the new flow tables.
        migrated: usize,
        /// Flows written out from the old tables instead.
        written_out: usize,
        /// Whether the old tables and ledger could be read (their layout's fields have the
        /// meaning this build reads): if not, their flows are not written.
        tables_read: bool,
    },
}

/// A started pinned agent: the maps for the daemon, the list set in force.
pub struct Started {
    /// The maps (with the ledger, and what a retired layout held).
    pub maps: Maps,
    /// The lists, as the list maps hold them.
    pub lists: ListSet,
    /// What happened.
    pub outcome: Outcome,
    /// List map entries written at the start (upserts and removals).
    pub list_changes: usize,
    /// The attachments now.
    pub interfaces: Vec<PinnedIface>,
    /// Configured interfaces the program could not be attached to, and why (another
    /// program holds one, its driver refuses the mode): the others are audited.
    pub refused: Vec<(String, String)>,
    /// Holds the instance until the agent exits.
    pub lock: InstanceLock,
}

/// Why a pinned start or a detach failed; each names what is at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The pin directory.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// Loading, attaching, the pinned maps.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The object.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The list maps.
    #[error(transparent)]
    Lists(#[from] EnforceError),
    /// An interface's XDP attachment through netlink.
    #[error("interface {iface:?}: XDP through netlink: {cause}")]
    Netlink {
        /// The interface.
        iface: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// The pinned program or a link could not be opened or swapped.
    #[error("{what}: {cause}")]
    Program {
        /// What was being done.
        what: String,
        /// The cause.
        cause: String,
    },
    /// The pins disagree with the state.
    #[error(
        "instance {dir}: {what}; remove the instance with `xdp-audit detach` and start afresh"
    )]
    Inconsistent {
        /// The instance directory.
        dir: PathBuf,
        /// What is wrong.
        what: String,
    },
}

impl StartError {
    /// The error with paths under a held directory shown under `real` ([`PinError::shown_as`]).
    pub(super) fn shown_as(self, held: &Path, real: &Path) -> Self {
        match self {
            Self::Pin(e) => Self::Pin(e.shown_as(held, real)),
            other => other,
        }
    }
}

fn program_err(what: impl Into<String>) -> impl FnOnce(String) -> StartError {
    let what = what.into();
    move |cause| StartError::Program { what, cause }
}

/// Starts a pinned agent (see the module documentation).
pub fn start(spec: &Spec) -> Result<Started, StartError> {
    pin::ensure_bpffs(spec.pins.dir())?;
    spec.pins.create()?;
    let lock = spec.pins.lock()?.ok_or_else(|| StartError::Inconsistent {
        dir: spec.pins.dir().to_owned(),
        what: "the directory vanished while starting".into(),
    })?;
    match spec.pins.read_state()? {
        None => {
            // Pins without a state: a first start that died before writing it.
            super::detach::through(&spec.pins, &lock, |held| remove_pins(held, None))?;
            fresh(spec, lock)
        }
        Some(state) => {
            let (state, leftovers) = recover::finish_interrupted(spec, state)?;
            // Read before an upgrade may make maps afresh under one of their names.
            let leftovers = recover::retire_leftovers(spec, &state, leftovers)?;
            let mut started = adopt(spec, state, lock)?;
            recover::finish(spec, &mut started, leftovers)?;
            Ok(started)
        }
    }
}

/// Loads, attaches and pins a program where nothing was pinned.
fn fresh(spec: &Spec, lock: InstanceLock) -> Result<Started, StartError> {
    let key = crate::blocklist::random_key().map_err(LoadError::Random)?;
    let (lists, delta, capacity) = read_at_start(
        spec.files.clone(),
        key,
        spec.list_floor,
        spec.state_dir.as_deref(),
    );
    let opts = LoadOptions {
        list_capacity: capacity.map_sizes(),
        domain_key: Some(key),
        ..spec.sizes.clone()
    };
    let layout = Layout::of(EBPF_OBJECT, &opts)?;
    let dir = spec.pins.maps(&layout.fingerprint());
    let mut loaded = load_pinned(&opts, &dir, &layout)?;
    loaded.lists.apply(&delta)?;
    loaded.lists.set_roles(&wan(spec))?;
    let (mut program, maps) = loaded.into_parts();
    let prog = program.program_mut()?;
    // The program pinned and the state written before the first attach: a start killed
    // after attaching leaves an instance the next start adopts (taking the interfaces it
    // finds running the program over), not pins without a state, which it would remove
    // with the maps and every packet counted meanwhile.
    let tag = pin_program(prog, &spec.pins)?;
    let state = |interfaces: Vec<PinnedIface>| {
        PinState::of_this_build(
            layout.fingerprint(),
            program_digest(EBPF_OBJECT, &opts),
            tag.clone(),
            spec.config.clone(),
            interfaces,
        )
    };
    spec.pins.write_state(&state(Vec::new()))?;
    let (mut interfaces, mut refused, mut first) = (Vec::new(), Vec::new(), None);
    for t in &spec.interfaces {
        match attach_new(prog, t, spec, None) {
            Ok(i) => interfaces.push(i),
            Err(StartError::Load(e)) if e.is_one_interface() => {
                refused.push((t.name.clone(), e.with_causes()));
                first.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    if let (true, Some(e)) = (interfaces.is_empty(), first) {
        // Attached nowhere: the pins would hold the maps' memory until a detach.
        drop(program);
        let removed = super::detach::through(&spec.pins, &lock, |held| {
            remove_pins(held, None)?;
            super::detach::remove_state_and_dir(held, spec.pins.dir())
        });
        if let Err(r) = removed {
            warn!(dir = %spec.pins.dir().display(), error = %r, "the pins of a start that attached nowhere could not be removed; `xdp-audit detach` removes them");
        }
        return Err(e.into());
    }
    spec.pins.write_state(&state(interfaces.clone()))?;
    Ok(Started {
        maps,
        lists,
        outcome: Outcome::Fresh,
        list_changes: delta.allow.len() + delta.block.len(),
        interfaces,
        refused,
        lock,
    })
}

/// Loads the program with its maps pinned in `dir` (created; a leftover of an interrupted
/// start is removed first, it belongs to no running program).
pub(super) fn load_pinned(
    opts: &LoadOptions,
    dir: &Path,
    layout: &Layout,
) -> Result<Loaded, StartError> {
    remove_dir_pins(dir)?;
    std::fs::create_dir_all(dir).map_err(|cause| PinError::Io {
        op: "create directory",
        path: dir.to_owned(),
        cause,
    })?;
    Ok(Loaded::load_with(opts.clone(), Some((dir, layout)))?)
}

fn wan(spec: &Spec) -> Vec<u32> {
    spec.interfaces
        .iter()
        .filter(|t| t.wan)
        .map(|t| t.ifindex)
        .collect()
}

/// Adopts the running program: the same layout keeps every map, another is an upgrade.
fn adopt(spec: &Spec, state: PinState, lock: InstanceLock) -> Result<Started, StartError> {
    let old_dir = spec.pins.maps(&state.layout);
    if !old_dir.is_dir() {
        return Err(StartError::Inconsistent {
            dir: spec.pins.dir().to_owned(),
            what: format!(
                "the state names layout {} but its maps are gone",
                state.layout
            ),
        });
    }
    let mut old = PinnedMaps::open(&old_dir, None)?;
    let pinned_capacity = Capacity::of_maps(|name| old.sizes.get(name).copied());
    let read_lists = ListMaps::take(&mut old).and_then(|l| Ok((l.domain_key()?, l.in_force()?, l)));
    // A build whose list maps differ (one added since, another size) is upgraded all the
    // same, its lists replaced whole under a new key; unless the layout is this build's,
    // where a missing map is damage (checked once the layout is known).
    let (key, in_force, old_lists) = match read_lists {
        Ok((key, in_force, lists)) => (key, in_force, Ok(lists)),
        Err(e) => {
            let key = crate::blocklist::random_key().map_err(LoadError::Random)?;
            // The generation goes on past the old one, so every flow copied over is judged
            // again by the new tables (a verdict cached under an equal number would stand).
            // Unreadable too, it starts far past any a program reaches by reloads.
            let generation = PinnedMaps::open(&old_dir, None)
                .ok()
                .and_then(|mut m| crate::enforce::generation_of(&mut m).ok())
                .unwrap_or(u64::from(u32::MAX / 2));
            let in_force = crate::enforce::InForce {
                generation,
                ..Default::default()
            };
            (key, in_force, Err(e))
        }
    };
    // The list tables keep their size while the lists fit them and --list-capacity does not
    // ask for more; otherwise they are sized afresh, which is a layout change.
    let adopted_lists = pinned_capacity
        .filter(|c| c.at_least(spec.list_floor) && old_lists.is_ok())
        .and_then(|c| {
            Some((
                c,
                read_adopting(
                    spec.files.clone(),
                    key,
                    &in_force,
                    c,
                    spec.state_dir.as_deref(),
                )?,
            ))
        });
    let capacity = match &adopted_lists {
        Some((c, _)) => *c,
        None => {
            read_for_new_tables(
                spec.files.clone(),
                key,
                spec.list_floor,
                Some(&in_force),
                spec.state_dir.as_deref(),
            )
            .2
        }
    };
    let opts = LoadOptions {
        list_capacity: capacity.map_sizes(),
        domain_key: Some(key),
        ..spec.sizes.clone()
    };
    let layout = Layout::of(EBPF_OBJECT, &opts)?;
    let old_lists = match old_lists {
        Err(e) if layout.fingerprint() == state.layout => return Err(e.into()),
        Err(e) => {
            warn!(error = %e, "the pinned program's list maps are not this build's: its lists are replaced whole, and a drop record it left may not name its rule");
            None
        }
        Ok(lists) => Some(lists),
    };
    if state.config != spec.config {
        info!("the settings changed since the pins were made");
    }
    let running = Xdp::from_pin(spec.pins.program(), XdpAttachType::Interface).map_err(|e| {
        StartError::Inconsistent {
            dir: spec.pins.dir().to_owned(),
            what: format!(
                "its pinned program {} cannot be opened ({})",
                spec.pins.program().display(),
                crate::causes::with_causes(&e)
            ),
        }
    })?;
    let rules_known = old_lists.is_some();
    match (adopted_lists, old_lists) {
        (Some((_, (lists, delta))), Some(old_lists)) if layout.fingerprint() == state.layout => {
            same_layout(
                spec,
                SameLayout {
                    state,
                    opts,
                    layout,
                    old,
                    old_lists,
                    lists,
                    delta,
                    running,
                    lock,
                },
            )
        }
        _ => super::upgrade::run(
            spec,
            super::upgrade::Upgrade {
                state,
                opts,
                layout,
                capacity,
                key,
                old,
                replaced: in_force,
                rules_known,
                running,
                lock,
            },
        ),
    }
}

/// An adoption of a program whose maps keep their layout.
struct SameLayout {
    state: PinState,
    opts: LoadOptions,
    layout: Layout,
    old: PinnedMaps,
    old_lists: ListMaps,
    lists: ListSet,
    delta: Delta,
    running: Xdp,
    lock: InstanceLock,
}

fn same_layout(spec: &Spec, a: SameLayout) -> Result<Started, StartError> {
    let SameLayout {
        state,
        opts,
        layout,
        mut old,
        old_lists,
        lists,
        delta,
        mut running,
        lock,
    } = a;
    let dir = spec.pins.maps(&state.layout);
    // Every map the layout names must be pinned and be what it says.
    PinnedMaps::open(&dir, Some(&layout))?;
    let digest = program_digest(EBPF_OBJECT, &opts);
    let (mut maps, mut new_program) = if digest == state.program {
        let (flows, events, stats) = take_flow_maps(&mut old)?;
        let flood = super::take_flood(&mut old, opts.flood)?;
        let ledger = super::open_ledger(&dir, opts.flow_table_size)?;
        let maps = Maps {
            flows,
            events,
            stats,
            lists: old_lists,
            ledger: Some(ledger),
            retired: None,
            flood: Some(flood),
        };
        (maps, None)
    } else {
        info!("the program differs from the running one: loading it on the pinned maps");
        // aya reuses every pinned map; the layout check above makes that safe.
        let loaded = Loaded::load_with(opts.clone(), Some((&dir, &layout)))?;
        let (program, maps) = loaded.into_parts();
        drop(old_lists);
        (maps, Some(program))
    };
    // Applied also when empty: the adoption publishes a new generation.
    maps.lists.apply(&delta)?;
    maps.lists.set_roles(&wan(spec))?;
    let list_changes = delta.allow.len() + delta.block.len();
    info!(
        changes = list_changes,
        generation = delta.generation,
        "lists compared with the pinned maps; only the difference written"
    );
    let new_prog = match new_program.as_mut() {
        Some(p) => Some(p.program_mut()?),
        None => None,
    };
    let replaced = new_prog.is_some();
    let (interfaces, tag) = match new_prog {
        Some(p) => {
            let next = NextProgram {
                layout: state.layout.clone(),
                layout_version: agent_common::LAYOUT_VERSION,
                program: digest.clone(),
                migrated: true,
                id: 0,
            };
            recover::swap_in(spec, &state, &mut running, p, next)?
        }
        None => (
            reconcile(spec, &state, &mut running, None)?,
            state.program_tag.clone(),
        ),
    };
    // The same layout, so also the same layout version; replaced ones stay named until
    // their flows are written.
    spec.pins.write_state(&PinState {
        replaced: state.replaced.clone(),
        ..PinState::of_this_build(
            state.layout.clone(),
            digest,
            tag,
            spec.config.clone(),
            interfaces.clone(),
        )
    })?;
    Ok(Started {
        maps,
        lists,
        outcome: Outcome::Adopted {
            program_replaced: replaced,
        },
        list_changes,
        interfaces,
        refused: Vec::new(),
        lock,
    })
}

/// The running program's id.
pub(super) fn prog_id(p: &Xdp) -> Result<u32, StartError> {
    p.info()
        .map(|i| i.id())
        .map_err(|e| program_err("reading the program's info")(e.to_string()))
}

/// Whether `actual` is what `wanted` asks for.
fn mode_fits(wanted: AttachMode, actual: Option<AttachMode>) -> bool {
    match (wanted, actual) {
        (AttachMode::Auto, Some(AttachMode::Native | AttachMode::Skb)) => true,
        (w, Some(a)) => w == a,
        (_, None) => false,
    }
}

fn query(t: &Target) -> Result<Option<netlink::Attached>, StartError> {
    netlink::query(t.ifindex).map_err(|cause| StartError::Netlink {
        iface: t.name.clone(),
        cause,
    })
}

/// How long a link whose pin was removed may take to let go of its interface.
pub(super) const DETACH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits until interface `ifindex` holds no XDP program (with `ours`: none of that id), for
/// [`DETACH_DEADLINE`] at most; returns whether it came to pass. The kernel releases a link
/// whose last pin was removed a moment later (the pin's inode goes after an RCU grace
/// period): an attach before that finds the interface busy, and a `detach` that returned
/// would leave the program on it for that moment.
pub(super) fn released(ifindex: u32, ours: Option<u32>) -> bool {
    let deadline = std::time::Instant::now() + DETACH_DEADLINE;
    loop {
        let holds = match netlink::query(ifindex) {
            Ok(Some(a)) => ours.is_none_or(|id| id == a.prog_id),
            Ok(None) => false,
            // Gone with its interface, or unreadable: nothing to wait for.
            Err(_) => false,
        };
        if !holds {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// [`released`] before an attach to `t`: a program still there makes the interface busy.
fn wait_detached(t: &Target) -> Result<(), StartError> {
    if released(t.ifindex, None) {
        Ok(())
    } else {
        Err(LoadError::Busy(t.name.clone()).into())
    }
}

/// The program to attach: the new one, if there is one, else the running one.
fn pick<'a>(new: &'a mut Option<&mut Xdp>, running: &'a mut Xdp) -> &'a mut Xdp {
    match new {
        Some(n) => n,
        None => running,
    }
}

/// Swaps `new` in for `running` on the attachment `o` of interface `t`, atomically: on its
/// bpf_link (`BPF_LINK_UPDATE`), or through netlink naming the program it replaces.
fn swap(
    spec: &Spec,
    o: &PinnedIface,
    t: &Target,
    replaced: BorrowedFd<'_>,
    new: &mut Xdp,
) -> Result<(), StartError> {
    if o.link {
        let path = spec.pins.link(&t.name);
        let what = format!("replacing the program on link {}", path.display());
        let pinned = PinnedLink::from_pin(&path).map_err(|e| program_err(&what)(e.to_string()))?;
        let link = XdpLink::try_from(FdLink::from(pinned))
            .map_err(|e| program_err(&what)(e.to_string()))?;
        let id = new
            .attach_to_link(link)
            .map_err(|e| program_err(&what)(e.to_string()))?;
        // The link stays pinned; this process lets go of its descriptor.
        drop(
            new.take_link(id)
                .map_err(|e| program_err(&what)(e.to_string()))?,
        );
    } else {
        netlink::set(t.ifindex, Some(program_fd(new)?), Some(replaced), o.mode).map_err(
            |cause| StartError::Netlink {
                iface: t.name.clone(),
                cause,
            },
        )?;
    }
    info!(
        iface = t.name,
        "program replaced on its attachment, atomically"
    );
    recover::crash_point("swap");
    Ok(())
}

fn program_fd(p: &Xdp) -> Result<std::os::fd::BorrowedFd<'_>, StartError> {
    p.fd()
        .map(|fd| fd.as_fd())
        .map_err(|e| program_err("the program's descriptor")(e.to_string()))
}

/// Attaches `prog` to `t` and pins its link; says so when the kernel gave no link.
fn attach_new(
    prog: &mut Xdp,
    t: &Target,
    spec: &Spec,
    mode: Option<AttachMode>,
) -> Result<PinnedIface, StartError> {
    let mode = mode.unwrap_or(spec.mode);
    if spec.netlink {
        return attach_netlink(prog, t, mode);
    }
    let (used, id) = attach_xdp(prog, &t.name, mode)?;
    let what = format!("pinning the link of {}", t.name);
    let link = prog
        .take_link(id)
        .map_err(|e| program_err(&what)(e.to_string()))?;
    let link = match FdLink::try_from(link) {
        Ok(fd) => {
            let path = spec.pins.link(&t.name);
            fd.pin(&path)
                .map_err(|e| program_err(&what)(e.to_string()))?;
            true
        }
        Err(_) => {
            warn_netlink(&t.name);
            false
        }
    };
    recover::crash_point("attached");
    Ok(PinnedIface {
        name: t.name.clone(),
        ifindex: t.ifindex,
        mode: used,
        link,
    })
}

fn warn_netlink(iface: &str) {
    warn!(
        iface,
        "the kernel attached XDP through netlink, not with a bpf_link: there is no link to pin; \
         the attachment outlives the agent all the same, and the next agent replaces or \
         removes it through netlink"
    );
}

/// Attaches through netlink (native first in `Auto` mode).
fn attach_netlink(prog: &Xdp, t: &Target, mode: AttachMode) -> Result<PinnedIface, StartError> {
    let tries: &[AttachMode] = match super::features::attach_mode(&t.name, mode)? {
        AttachMode::Auto => &[AttachMode::Native, AttachMode::Skb],
        m => std::slice::from_ref(match m {
            AttachMode::Native => &AttachMode::Native,
            _ => &AttachMode::Skb,
        }),
    };
    let fd = program_fd(prog)?;
    let mut last = None;
    for &m in tries {
        match netlink::set(t.ifindex, Some(fd), None, m) {
            Ok(()) => {
                warn_netlink(&t.name);
                return Ok(PinnedIface {
                    name: t.name.clone(),
                    ifindex: t.ifindex,
                    mode: m,
                    link: false,
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(LoadError::Busy(t.name.clone()).into())
            }
            Err(e) => last = Some(e),
        }
    }
    Err(StartError::Netlink {
        iface: t.name.clone(),
        cause: last.unwrap_or_else(|| std::io::Error::other("no mode to try")),
    })
}

/// Removes one attachment: its link pin (the kernel detaches the link with its last
/// reference), or the netlink attachment when it still holds `running`.
pub(super) fn remove_attachment(
    pins: &PinDir,
    o: &PinnedIface,
    ifindex: u32,
    running: &Xdp,
) -> Result<(), StartError> {
    if o.link {
        return remove_file(&pins.link(&o.name));
    }
    let ours = netlink::query(ifindex)
        .ok()
        .flatten()
        .is_some_and(|a| prog_id(running).is_ok_and(|id| id == a.prog_id));
    if ours {
        netlink::set(ifindex, None, Some(program_fd(running)?), o.mode).map_err(|cause| {
            StartError::Netlink {
                iface: o.name.clone(),
                cause,
            }
        })?;
    }
    Ok(())
}

pub(super) fn remove_file(path: &Path) -> Result<(), StartError> {
    Ok(pin::remove(path)?)
}

/// Removes every pin in a map directory, and the directory ([`pin::remove_maps_dir`]).
pub(super) fn remove_dir_pins(dir: &Path) -> Result<(), StartError> {
    Ok(pin::remove_maps_dir(dir)?)
}

/// Pins `prog` as the instance's program, replacing the pin of the one before at once (a
/// new pin renamed over the old); returns its kernel tag.
pub(super) fn pin_program(prog: &mut Xdp, pins: &PinDir) -> Result<String, StartError> {
    pin_next(prog, pins)?;
    Ok(pins.promote_next()?)
}

/// Pins `prog` at [`PinDir::next_program`].
pub(super) fn pin_next(prog: &mut Xdp, pins: &PinDir) -> Result<(), StartError> {
    let next = pins.next_program();
    remove_file(&next)?;
    prog.pin(&next).map_err(|e| {
        program_err(format!("pinning the program at {}", next.display()))(e.to_string())
    })
}
