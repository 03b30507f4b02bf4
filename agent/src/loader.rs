//! Loads the embedded XDP object and attaches it to interfaces, native mode first.
//!
//! Two ways to run it: [`Loaded::load`] for a program that lives as long as the agent (`run
//! --no-pin`, tests, benchmarks), and [`adopt::start`] for a pinned one: program, links and
//! maps pinned under `/sys/fs/bpf/xdp-audit/<instance>/` ([`pin`]), versioned by their layout
//! ([`layout`]), adopted by the next agent, swapped atomically by an upgrade
//! ([`upgrade`]), removed by `detach` ([`detach::detach`]). [`netlink`] handles attachments
//! the kernel made without a bpf_link.

pub mod adopt;
pub mod detach;
mod error;
pub use error::LoadError;
use error::{attach_hint, errno, load_hint, too_large_mtu};
pub(crate) mod features;
pub mod layout;
pub mod netlink;
pub mod pin;
mod recover;
pub(crate) use recover::{crash_point, crash_point_counting};
pub mod upgrade;

use std::collections::HashMap;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::path::Path;

use agent_common::payload::{PortBudget, DEFAULT_PORTS};
use agent_common::{domain::DomainKey, names};
use aya::maps::{Array, Map, MapData, ProgramArray};
use aya::programs::{xdp::XdpLinkId, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use tracing::{info, warn};

use crate::enforce::ListMaps;
use crate::flowtable::{FlowMaps, FlowTable};
use crate::sweeper::flood::{FloodBudget, FloodMaps};
use crate::sweeper::ledger::Ledger;

/// The xdp-audit program object, built by `build.rs` with aya-build.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-audit-ebpf"));
/// The benchmark's empty XDP_PASS program (test builds only: feature `testing`).
#[cfg(feature = "testing")]
pub static BASELINE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-audit-baseline"));

/// The benchmark's xdp-filter-like reference: one exact-match hash, no flow table (test builds
/// only: feature `testing`).
#[cfg(feature = "testing")]
pub static FILTER_BASELINE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-audit-filter-baseline"));

/// The benchmark's stateful reference: a 5-tuple LRU per-CPU hash with plain counters, then
/// one exact-match hash (test builds only: feature `testing`).
#[cfg(feature = "testing")]
pub static STATEFUL_BASELINE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-audit-stateful-baseline"));

/// The benchmark's ablations of xdp-audit's per-packet path, one entry point per variant
/// (`agent-ebpf/src/ablate.rs`; test builds only: feature `testing`).
#[cfg(feature = "testing")]
pub static ABLATION_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-audit-ablate"));

/// The lab benchmark's frame generator: XDP_TX of the frame as given, or from a new random
/// source each time (test builds only: feature `testing`).
#[cfg(feature = "testing")]
pub static GENERATOR_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-audit-gen"));

/// How the program is attached to an interface.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Native (driver) mode, falling back to SKB mode if the driver refuses.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic SKB mode: works on every interface, slower.
    Skb,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Auto => "auto",
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        })
    }
}

/// Sizes fixed at load time.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Flow-table entries.
    pub flow_table_size: u32,
    /// Ring-buffer bytes (a power of two, at least a page).
    pub ringbuf_bytes: u32,
    /// Sizes of the list maps (see [`crate::blocklist::Capacity::map_sizes`]); unnamed maps
    /// keep the object's defaults.
    pub list_capacity: Vec<(&'static str, u32)>,
    /// The secret the program keys domain hashes with: the list set's
    /// ([`crate::blocklist::ListSet::domain_key`]). `None` draws a fresh one.
    pub domain_key: Option<DomainKey>,
    /// The drop-record budgets (flood-proof drops); written into the program's
    /// configuration map at every load and adoption, never part of the layout.
    pub flood: FloodBudget,
}

/// New flows per second the default ring buffer is sized for: it holds one second of their
/// start events, so a reader held up for up to a second loses none. The agent drains
/// over ten times that (README, "Sizing"; `cargo bench --bench pipeline`).
pub const SIZED_FOR_NEW_FLOWS_PER_SEC: u32 = 100_000;

/// The default ring size: one second of [`SIZED_FOR_NEW_FLOWS_PER_SEC`], rounded up to the
/// power of two the kernel needs (16 MiB, 110,000 events).
pub const DEFAULT_RINGBUF_BYTES: u32 =
    (SIZED_FOR_NEW_FLOWS_PER_SEC * agent_common::RING_RECORD_BYTES as u32).next_power_of_two();

/// The capacities the loader gives maps, by name: both flow tables, the ring (bytes), the
/// list maps. The pin layout ([`layout::Layout::of`]) applies the same, so the two cannot
/// drift.
pub(crate) fn map_sizes(opts: &LoadOptions) -> Vec<(&'static str, u32)> {
    let mut out = vec![
        (names::FLOWS, opts.flow_table_size),
        (names::FLOWS4, opts.flow_table_size),
        (names::EVENTS, opts.ringbuf_bytes),
    ];
    out.extend(opts.list_capacity.iter().copied());
    out
}

/// The globals the loader sets in the object (`.rodata`): part of the program's identity
/// ([`layout::program_digest`]), never of the pinned layout.
pub(crate) fn globals(opts: &LoadOptions) -> Vec<(&'static str, u64)> {
    vec![(names::WAKEUP_BYTES, u64::from(opts.ringbuf_bytes / 4))]
}

/// Where maps come from: a freshly loaded object, or the pins of a running one.
pub trait MapSource {
    /// Takes the map called `name` out of the source.
    fn take_map(&mut self, name: &str) -> Option<Map>;
}

impl MapSource for Ebpf {
    fn take_map(&mut self, name: &str) -> Option<Map> {
        Ebpf::take_map(self, name)
    }
}

/// Maps opened from a pin directory, by name, with their capacities.
#[derive(Default)]
pub struct PinnedMaps {
    maps: HashMap<String, Map>,
    /// Each map's capacity (`max_entries`), as the kernel reports it.
    pub sizes: HashMap<String, u32>,
}

impl MapSource for PinnedMaps {
    fn take_map(&mut self, name: &str) -> Option<Map> {
        self.maps.remove(name)
    }
}

impl PinnedMaps {
    /// Opens every map pinned in `dir` (checked against `layout` when given).
    pub fn open(dir: &Path, layout: Option<&layout::Layout>) -> Result<Self, LoadError> {
        let pin_err = |path: &Path, cause: String| LoadError::Pin {
            path: path.to_owned(),
            cause,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| pin_err(dir, e.to_string()))?;
        let mut out = Self::default();
        for e in entries {
            let path = e.map_err(|e| pin_err(dir, e.to_string()))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            let data = MapData::from_pin(&path).map_err(|e| pin_err(&path, e.to_string()))?;
            if let Some(l) = layout {
                let def = l.get(&name).ok_or_else(|| {
                    pin_err(
                        &path,
                        format!("no map {name} in layout {}", l.fingerprint()),
                    )
                })?;
                l.check(def, &data)
                    .map_err(|e| pin_err(&path, e.to_string()))?;
            }
            let size = data.info().map_or(0, |i| i.max_entries());
            let map = Map::from_map_data(data).map_err(|e| pin_err(&path, e.to_string()))?;
            out.sizes.insert(name.clone(), size);
            out.maps.insert(name, map);
        }
        // Every map of the layout: one gone (its pin removed) is named as such, not found
        // missing later as if the build were inconsistent.
        if let Some(gone) =
            layout.and_then(|l| (l.maps().iter()).find(|m| !out.maps.contains_key(m.name.as_str())))
        {
            return Err(pin_err(
                &dir.join(&gone.name),
                "is gone (its pin removed?): the instance's pins are incomplete; remove the instance with `xdp-audit detach` and start afresh (what its flow table holds is lost)".into(),
            ));
        }
        Ok(out)
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            flow_table_size: 262_144,
            ringbuf_bytes: DEFAULT_RINGBUF_BYTES,
            list_capacity: Vec::new(),
            domain_key: None,
            flood: FloodBudget::default(),
        }
    }
}

/// The loaded program and its attachments, without the maps the agent works with.
pub struct Program {
    ebpf: Ebpf,
    attached: Vec<(String, XdpLinkId)>,
}

/// The maps the agent works with, taken out of the `Ebpf` so they outlive the program's links
/// at shutdown and can go to the stages that use them.
pub struct Maps {
    /// The IPv4 and IPv6 flow tables.
    pub flows: FlowMaps,
    /// The event ring buffer.
    pub events: Map,
    /// The per-CPU counters.
    pub stats: Map,
    /// The list maps.
    pub lists: ListMaps,
    /// The ledger of what interim records carried, when the maps are pinned.
    pub ledger: Option<Ledger>,
    /// What a retired layout's maps held, when an upgrade replaced them.
    pub retired: Option<upgrade::Retired>,
    /// The flood summaries and the drop-record budgets.
    pub flood: Option<FloodMaps>,
}

/// The loaded object: its program and the maps the agent works with.
pub struct Loaded {
    program: Program,
    flows: FlowMaps,
    /// The event ring buffer.
    pub events: Map,
    /// The per-CPU counters.
    pub stats: Map,
    /// The list maps.
    pub lists: ListMaps,
    ledger: Option<Ledger>,
    /// The flood summaries and the drop-record budgets.
    pub flood: FloodMaps,
}

/// The object's XDP program `name`.
fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, LoadError> {
    ebpf.program_mut(name)
        .ok_or(LoadError::MissingProgram(name))?
        .try_into()
        .map_err(LoadError::Verifier)
}

/// Loads the slow path the program tail-calls (DNS name checks, payload copies) and puts it
/// in its slot.
fn load_slow_path(ebpf: &mut Ebpf) -> Result<(), LoadError> {
    let slow = xdp_program(ebpf, names::SLOW_PATH_PROGRAM)?;
    slow.load().map_err(LoadError::Verifier)?;
    let fd = slow
        .fd()
        .map_err(LoadError::Verifier)?
        .try_clone()
        .map_err(LoadError::SlowPathFd)?;
    let map = ebpf
        .map_mut(names::SLOW_PATH)
        .ok_or(LoadError::Missing("program array SLOW_PATH"))?;
    let mut slots: ProgramArray<&mut MapData> =
        ProgramArray::try_from(map).map_err(LoadError::SlowPath)?;
    slots.set(0, &fd, 0).map_err(LoadError::SlowPath)
}

/// The maps the agent works with, taken out of `src`.
pub(crate) fn take_maps(
    src: &mut impl MapSource,
) -> Result<(FlowMaps, Map, Map, ListMaps), LoadError> {
    let (flows, events, stats) = take_flow_maps(src)?;
    let lists = ListMaps::take(src).map_err(LoadError::Lists)?;
    Ok((flows, events, stats, lists))
}

/// The flood summaries and budget maps, taken out of `src`, with `budget` written.
pub(crate) fn take_flood(
    src: &mut impl MapSource,
    budget: FloodBudget,
) -> Result<FloodMaps, LoadError> {
    let (slots, total, config) = take_flood_maps(src)?;
    FloodMaps::new(slots, total, config, budget).map_err(LoadError::Flood)
}

/// The `FLOOD_SLOTS`, `FLOOD_TOTAL` and `FLOOD_CONFIG` maps, taken out of `src` untouched.
pub(crate) fn take_flood_maps(
    src: &mut impl MapSource,
) -> Result<(MapData, MapData, MapData), LoadError> {
    let slots = match src.take_map(names::FLOOD_SLOTS) {
        Some(Map::PerCpuArray(m)) => m,
        _ => return Err(LoadError::Missing("per-CPU array FLOOD_SLOTS")),
    };
    let total = match src.take_map(names::FLOOD_TOTAL) {
        Some(Map::PerCpuArray(m)) => m,
        _ => return Err(LoadError::Missing("per-CPU array FLOOD_TOTAL")),
    };
    let config = match src.take_map(names::FLOOD_CONFIG) {
        Some(Map::Array(m)) => m,
        _ => return Err(LoadError::Missing("array FLOOD_CONFIG")),
    };
    Ok((slots, total, config))
}

/// The flow tables, the ring and the counters, taken out of `src`.
pub(crate) fn take_flow_maps(src: &mut impl MapSource) -> Result<(FlowMaps, Map, Map), LoadError> {
    let flows = match src.take_map(names::FLOWS) {
        Some(Map::LruHashMap(m)) => m,
        _ => return Err(LoadError::Missing("LRU map FLOWS")),
    };
    let flows4 = match src.take_map(names::FLOWS4) {
        Some(Map::LruHashMap(m)) => m,
        _ => return Err(LoadError::Missing("LRU map FLOWS4")),
    };
    let flows = FlowMaps::new(flows, flows4).map_err(LoadError::FlowTable)?;
    let events = src
        .take_map(names::EVENTS)
        .ok_or(LoadError::Missing("ring buffer EVENTS"))?;
    let stats = src
        .take_map(names::STATS)
        .ok_or(LoadError::Missing("per-CPU array STATS"))?;
    Ok((flows, events, stats))
}

impl Loaded {
    /// Loads the object into the kernel (not yet attached anywhere).
    pub fn load(opts: LoadOptions) -> Result<Self, LoadError> {
        Self::load_with(opts, None)
    }

    /// Loads the object; with `pins`, every map of `layout` is pinned in (or, if pinned
    /// there already, reused from) the directory, and the ledger beside them.
    pub(crate) fn load_with(
        opts: LoadOptions,
        pins: Option<(&Path, &layout::Layout)>,
    ) -> Result<Self, LoadError> {
        let pin_paths: Vec<(String, std::path::PathBuf)> = match pins {
            Some((dir, layout)) => layout
                .maps()
                .iter()
                .filter(|m| m.name != names::REPORTED)
                .map(|m| (m.name.clone(), dir.join(&m.name)))
                .collect(),
            None => Vec::new(),
        };
        let globals = globals(&opts);
        let mut loader = EbpfLoader::new();
        for (name, value) in &globals {
            loader.override_global(name, value, true);
        }
        for (name, size) in map_sizes(&opts) {
            loader.map_max_entries(name, size);
        }
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(EBPF_OBJECT).map_err(|source| LoadError::Load {
            hint: load_hint(&source),
            source,
        })?;
        xdp_program(&mut ebpf, names::PROGRAM)?
            .load()
            .map_err(LoadError::Verifier)?;
        load_slow_path(&mut ebpf)?;
        let (flows, events, stats, mut lists) = take_maps(&mut ebpf)?;
        let flood = take_flood(&mut ebpf, opts.flood)?;
        let key = match opts.domain_key {
            Some(key) => key,
            None => crate::blocklist::random_key().map_err(LoadError::Random)?,
        };
        lists.set_domain_key(&key).map_err(LoadError::Lists)?;
        let mut program = Program {
            ebpf,
            attached: Vec::new(),
        };
        // Also on reused pins: the table is the program's configuration, not its state.
        program.set_payload_ports(&DEFAULT_PORTS)?;
        let ledger = match pins {
            Some((dir, _)) => Some(open_ledger(dir, opts.flow_table_size)?),
            None => None,
        };
        Ok(Self {
            program,
            flows,
            events,
            stats,
            lists,
            ledger,
            flood,
        })
    }

    /// Sets the payload budget of each `(port, budget)` (see [`Program::set_payload_ports`]).
    pub fn set_payload_ports(&mut self, ports: &[(u16, PortBudget)]) -> Result<(), LoadError> {
        self.program.set_payload_ports(ports)
    }

    /// Both flow tables.
    pub fn flow_table(&self) -> FlowTable<'_> {
        self.flows.table()
    }

    /// Both flow tables, as maps (for a second handle: [`FlowMaps::try_clone`]).
    pub fn flow_maps(&self) -> &FlowMaps {
        &self.flows
    }

    /// The loaded XDP program, for attaching or for BPF_PROG_TEST_RUN.
    pub fn program_mut(&mut self) -> Result<&mut Xdp, LoadError> {
        self.program.program_mut()
    }

    /// Attaches to `iface`; returns the mode actually in use.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<AttachMode, LoadError> {
        self.program.attach(iface, mode)
    }

    /// Detaches from every interface; the maps stay readable for the final flush.
    pub fn detach_all(&mut self) {
        self.program.detach_all();
    }

    /// The program and the maps apart, so the maps can go to the daemon's stages while the
    /// program stays with whoever attaches and detaches it.
    pub fn into_parts(self) -> (Program, Maps) {
        let Self {
            program,
            flows,
            events,
            stats,
            lists,
            ledger,
            flood,
        } = self;
        let maps = Maps {
            flows,
            events,
            stats,
            lists,
            ledger,
            retired: None,
            flood: Some(flood),
        };
        (program, maps)
    }
}

/// The ledger pinned in `dir`, created (empty) if it is not there yet.
pub(crate) fn open_ledger(dir: &Path, flow_table_size: u32) -> Result<Ledger, LoadError> {
    let path = dir.join(names::REPORTED);
    let err = |cause: String| LoadError::Pin {
        path: path.clone(),
        cause,
    };
    let data = if path.exists() {
        MapData::from_pin(&path).map_err(|e| err(e.to_string()))?
    } else {
        let def = layout::ledger_def(flow_table_size);
        let obj = aya_obj::Map::new_from_params(
            def.map_type,
            def.key_size,
            def.value_size,
            def.max_entries,
            def.flags,
        );
        let data = MapData::create(obj, names::REPORTED, None).map_err(|e| err(e.to_string()))?;
        data.pin(&path).map_err(|e| err(e.to_string()))?;
        data
    };
    Ledger::new(data).map_err(|e| err(e.to_string()))
}

impl Program {
    /// The loaded XDP program, for attaching or for BPF_PROG_TEST_RUN.
    pub fn program_mut(&mut self) -> Result<&mut Xdp, LoadError> {
        xdp_program(&mut self.ebpf, names::PROGRAM)
    }

    /// Sets the payload budget of each `(port, budget)`: flows created from now on whose
    /// destination (or else source) port it is get their payloads copied to the ring
    /// ([`agent_common::payload`]); an all-zero budget stops copying on the port. The loader
    /// writes [`DEFAULT_PORTS`].
    pub fn set_payload_ports(&mut self, ports: &[(u16, PortBudget)]) -> Result<(), LoadError> {
        let map = self
            .ebpf
            .map_mut(names::PAYLOAD_PORTS)
            .ok_or(LoadError::Missing("array PAYLOAD_PORTS"))?;
        let mut table: Array<&mut MapData, PortBudget> =
            Array::try_from(map).map_err(|source| LoadError::PayloadPorts { port: 0, source })?;
        for &(port, budget) in ports {
            table
                .set(u32::from(port), budget, 0)
                .map_err(|source| LoadError::PayloadPorts { port, source })?;
        }
        Ok(())
    }

    /// Attaches to `iface`; returns the mode actually in use.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<AttachMode, LoadError> {
        let (label, link) = attach_xdp(self.program_mut()?, iface, mode)?;
        self.attached.push((iface.to_owned(), link));
        Ok(label)
    }

    /// Detaches from every interface; the maps stay readable for the final flush.
    pub fn detach_all(&mut self) {
        let attached = std::mem::take(&mut self.attached);
        let Ok(prog) = self.program_mut() else { return };
        for (iface, link) in attached {
            match prog.detach(link) {
                Ok(()) => info!(iface, "XDP program detached"),
                Err(e) => warn!(iface, error = %e, "detaching the XDP program failed"),
            }
        }
    }
}

/// The index of interface `name` in this thread's network namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// The index of `name` if the program can be attached there: it exists in this thread's
/// network namespace and its frames carry an Ethernet header (an Ethernet device or the
/// loopback one).
pub fn usable_interface(name: &str) -> Result<u32, LoadError> {
    let index = ifindex(name).ok_or_else(|| LoadError::NoSuchInterface(name.into()))?;
    match link_type(name) {
        Some(libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK) | None => Ok(index),
        Some(link_type) => Err(LoadError::NotEthernet {
            iface: name.into(),
            link_type,
        }),
    }
}

/// The ARPHRD_* link type of `name` in this thread's network namespace (an ioctl on a
/// socket, which, unlike `/sys/class/net`, is always this namespace's); `None` if it cannot
/// be read, and the attach goes on.
fn link_type(name: &str) -> Option<u16> {
    // SAFETY: plain socket and ioctl calls on a zeroed `ifreq` holding a NUL-terminated
    // name shorter than IFNAMSIZ; the descriptor is closed on every path.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        if name.len() >= req.ifr_name.len() {
            return None;
        }
        for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req);
        libc::close(fd);
        (rc == 0).then_some(req.ifr_ifru.ifru_hwaddr.sa_family)
    }
}

/// Attaches `prog` to `iface` (native first in `Auto` mode, SKB on the driver's refusal, and
/// says which); returns the mode in use and the link.
pub(crate) fn attach_xdp(
    prog: &mut Xdp,
    iface: &str,
    mode: AttachMode,
) -> Result<(AttachMode, XdpLinkId), LoadError> {
    usable_interface(iface)?;
    let tries: &[(AttachMode, XdpMode)] = match features::attach_mode(iface, mode)? {
        AttachMode::Auto => &[
            (AttachMode::Native, XdpMode::Driver),
            (AttachMode::Skb, XdpMode::Skb),
        ],
        AttachMode::Native => &[(AttachMode::Native, XdpMode::Driver)],
        AttachMode::Skb => &[(AttachMode::Skb, XdpMode::Skb)],
    };
    let mut last = None;
    for (i, &(label, xdp_mode)) in tries.iter().enumerate() {
        match prog.attach(iface, xdp_mode) {
            Ok(link) => {
                info!(iface, mode = %label, "XDP program attached");
                features::warn_vlan_stripping(iface);
                return Ok((label, link));
            }
            Err(e) => {
                match errno(&e) {
                    Some(libc::EBUSY) | Some(libc::EEXIST) => {
                        return Err(LoadError::Busy(iface.into()))
                    }
                    Some(libc::EPERM) | Some(libc::EACCES) => {
                        return Err(LoadError::Permission(
                            iface.into(),
                            io::Error::from_raw_os_error(libc::EPERM),
                        ))
                    }
                    _ => {}
                }
                if i + 1 < tries.len() {
                    // With the kernel's reason (the source: "Peer MTU is too large", say),
                    // which the top error alone does not say.
                    let reason = std::error::Error::source(&e)
                        .map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
                    let reason =
                        format!("{reason}{}", attach_hint(too_large_mtu(label, errno(&e))));
                    warn!(iface, error = reason, "native XDP refused by the driver; falling back to SKB (generic) mode, which costs more per packet; `--xdp-mode native` retries native at the next start");
                }
                last = Some(LoadError::Attach {
                    iface: iface.into(),
                    mode: label,
                    mtu: too_large_mtu(label, errno(&e)),
                    source: e,
                });
            }
        }
    }
    Err(last.unwrap_or(LoadError::Missing("attach mode")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya::programs::ProgramError;

    /// A map the kernel cannot allocate (a `--flow-table-size` too large for memory) is said
    /// as that, not as a kernel too old.
    #[test]
    fn a_map_out_of_memory_names_the_sizes() {
        let err = |errno| {
            aya::EbpfError::MapError(aya::maps::MapError::CreateError {
                name: "FLOWS4".into(),
                io_error: io::Error::from_raw_os_error(errno),
            })
        };
        assert!(load_hint(&err(libc::ENOMEM)).contains("--flow-table-size"));
        assert!(load_hint(&err(libc::EPERM)).contains("root"));
        assert!(load_hint(&err(libc::EINVAL)).contains("5.8"));
    }

    /// A native attach refused for the MTU says so and what to do, with the OS error: kept
    /// for `status` and the alert as its text alone, it said neither.
    #[test]
    fn a_refused_native_attach_names_the_mtu_and_keeps_its_os_error() {
        let refused = |mode, errno| LoadError::Attach {
            iface: "eth1".into(),
            mode,
            mtu: too_large_mtu(mode, Some(errno)),
            source: ProgramError::SyscallError(aya::sys::SyscallError {
                call: "bpf_link_create",
                io_error: io::Error::from_raw_os_error(errno),
            }),
        };
        let text = refused(AttachMode::Native, libc::ERANGE).with_causes();
        assert!(
            text.contains("MTU") && text.contains("--xdp-mode skb"),
            "{text}"
        );
        assert!(text.contains("bpf_link_create"), "{text}");
        assert!(
            text.ends_with(&io::Error::from_raw_os_error(libc::ERANGE).to_string()),
            "{text}"
        );
        let other = refused(AttachMode::Skb, libc::EINVAL).with_causes();
        assert!(!other.contains("MTU"), "{other}");
        assert!(other.contains("bpf_link_create"), "{other}");
    }

    #[test]
    fn the_default_ring_holds_a_second_of_new_flows_at_the_documented_rate() {
        let events = DEFAULT_RINGBUF_BYTES as usize / agent_common::RING_RECORD_BYTES;
        assert!(DEFAULT_RINGBUF_BYTES.is_power_of_two());
        assert!(
            events >= SIZED_FOR_NEW_FLOWS_PER_SEC as usize,
            "{events} events"
        );
        assert!(
            events < 2 * SIZED_FOR_NEW_FLOWS_PER_SEC as usize,
            "not far over"
        );
        assert_eq!(DEFAULT_RINGBUF_BYTES, 16 << 20);
    }
}
