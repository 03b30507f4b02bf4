//! An upgrade: a start whose maps would have another layout than the running program's (a
//! new build with other maps, `--flow-table-size`, `--ringbuf-bytes`, lists outgrowing their
//! tables). aya would reuse the old pins without a look, so the new program gets new maps in
//! their own directory, and is swapped in on each link at once: no packet passes without a
//! program, and each is judged by the old lists or the new ones, never by none.
//!
//! Before the swap the new list maps are filled (at a generation past the old one, so every
//! inherited flow judges its next packet against them) and, when the flow tables keep their
//! key and value and the new ones have room for twice the old flows, the open flows are
//! copied in with what their records carried (the ledger): they go on as one flow. Otherwise
//! they are written out from the old tables instead, and a flow that goes on starts afresh
//! under the new program. After the swap the old ring is drained and the old tables read one
//! last time: what the old program counted after the copy is written as an interim record of
//! the flow (so nothing is lost nor counted twice), and the old maps are unpinned once those
//! records are handed to the kernel: an agent that dies before leaves them, and their layout
//! version in the state, for the next start to write out.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use agent_common::{family, names, FlowKey, FlowValue, Reported, LAYOUT_VERSION};
use aya::maps::{Map, MapData};
use aya::programs::Xdp;
use tracing::{info, warn};

use super::adopt::{load_pinned, remove_dir_pins};
use super::adopt::{Outcome, Spec, StartError, Started};
use super::layout::{program_digest, Layout};
use super::pin::{InstanceLock, NextProgram, PinState, Replaced};
use super::{LoadOptions, MapSource as _, PinnedMaps, EBPF_OBJECT};
use crate::blocklist::Capacity;
use crate::daemon::lists::read_for_new_tables;
use crate::flowtable::{FlowMaps, FlowTable};
use crate::reader::{Event, RingReader};
use crate::sweeper::flood::{FloodBudget, FloodMaps, RuleFlood};
use crate::sweeper::ledger::Ledger;
use crate::sweeper::RetiredFlow;

/// What the replaced maps held when the program was swapped, for the sweeper to write once:
/// handed to the daemon with the new maps.
#[derive(Debug, Default)]
pub struct Retired {
    /// Events the old ring held (accumulated while no agent ran, or emitted until the swap).
    pub events: Vec<Event>,
    /// What earlier records carried of the flows not moved into the new tables (the old
    /// ledger).
    pub seed: Vec<(FlowKey, Reported)>,
    /// The old tables' flows to write.
    pub flows: Vec<RetiredFlow>,
    /// The blocked packets the old program summarised past the drop-record budget since
    /// the last agent took its summaries (while no agent ran, until the swap).
    pub flood: Vec<RuleFlood>,
    /// The old program's rule ids are not this agent's (its list maps could not be read):
    /// what they hold is written with the rules as `rule #ID`, never another rule's name.
    pub rules_unknown: bool,
    /// The map directories these came from, each as the state names it: unpinned by
    /// [`Retired::unpin`] once the records are written.
    pub pins: Vec<(PathBuf, Replaced)>,
    /// Each old program's `lost_flow_start` counter, read after its table's last read, and
    /// the last agent's reading of it ([`Replaced::lost_starts_read`]).
    pub lost_starts: Vec<(u64, Option<u64>)>,
}

impl Retired {
    /// Adds what `other` holds.
    pub(super) fn merge(&mut self, other: Retired) {
        self.events.extend(other.events);
        self.seed.extend(other.seed);
        self.flows.extend(other.flows);
        self.flood.extend(other.flood);
        self.rules_unknown |= other.rules_unknown;
        self.pins.extend(other.pins);
        self.lost_starts.extend(other.lost_starts);
    }

    /// Whether map directories wait for [`Retired::unpin`].
    pub fn has_pins(&self) -> bool {
        !self.pins.is_empty()
    }

    /// Unpins the replaced maps, called once their flows are written and handed to the
    /// kernel: an agent that dies before leaves them pinned, for the next start to write
    /// out ([`retire_leftover`]).
    pub fn unpin(&mut self) {
        for (dir, _) in self.pins.drain(..) {
            match remove_dir_pins(&dir) {
                Ok(()) => info!(dir = %dir.display(), "the replaced maps are unpinned"),
                Err(e) => warn!(
                    dir = %dir.display(),
                    error = %e,
                    "the replaced maps could not be unpinned; `xdp-audit detach` removes them"
                ),
            }
        }
    }
}

/// An upgrade in the making (see [`run`]).
pub(super) struct Upgrade {
    pub(super) state: PinState,
    pub(super) opts: LoadOptions,
    pub(super) layout: Layout,
    pub(super) capacity: Capacity,
    pub(super) key: agent_common::domain::DomainKey,
    pub(super) old: PinnedMaps,
    /// The list tables of the program replaced.
    pub(super) replaced: crate::enforce::InForce,
    /// Whether they were read: else the rule ids in what the old maps hold name no rule
    /// this agent knows (its ids are allocated afresh).
    pub(super) rules_known: bool,
    pub(super) running: Xdp,
    pub(super) lock: InstanceLock,
}

/// The old flow tables and ledger, when they can be read, and its flood summaries.
struct Old {
    flows: FlowMaps,
    events: Map,
    ledger: Option<Ledger>,
    flood: Option<(MapData, MapData, MapData)>,
    /// The old program's counters.
    stats: Option<Map>,
}

/// The old maps, read as today's types where their layout allows: an older build's flow
/// values may be shorter (fields are only ever added at the end; the added ones read as
/// zero), unless `version`, the old build's [`LAYOUT_VERSION`], says their fields changed
/// meaning.
fn take_old(old: &mut PinnedMaps, version: u32) -> Option<Old> {
    let unreadable = |why: String| {
        warn!(
            why,
            "the old flow tables cannot be read: their flows are not written, and flows that \
             go on start afresh under the new program"
        );
    };
    if version != LAYOUT_VERSION {
        unreadable(format!(
            "their fields have the meaning of layout version {version}, this build reads \
             {LAYOUT_VERSION}"
        ));
        return None;
    }
    let flows = match flow_maps(old) {
        Ok(f) => f,
        Err(e) => {
            unreadable(e);
            return None;
        }
    };
    let Some(events) = old.take_map(names::EVENTS) else {
        unreadable("the ring buffer is missing".into());
        return None;
    };
    let ledger = match old.take_map(names::REPORTED) {
        Some(Map::HashMap(data)) => Ledger::new(data).ok(),
        _ => None,
    };
    Some(Old {
        flows,
        events,
        ledger,
        flood: super::take_flood_maps(old).ok(),
        stats: old.take_map(names::STATS),
    })
}

/// The flow tables among `maps`, read as today's types ([`FlowMaps::older`]).
fn flow_maps(maps: &mut PinnedMaps) -> Result<FlowMaps, String> {
    let (Some(Map::LruHashMap(v6)), Some(Map::LruHashMap(v4))) =
        (maps.take_map(names::FLOWS), maps.take_map(names::FLOWS4))
    else {
        return Err("a flow table is missing or not an LRU hash".into());
    };
    FlowMaps::older(v6, v4).map_err(|e| e.to_string())
}

/// The keys of the flows the tables pinned in `dir` hold.
pub(super) fn flow_keys(dir: &Path) -> Result<HashSet<FlowKey>, StartError> {
    let err = |cause: String| StartError::Program {
        what: format!("reading the flow tables in {}", dir.display()),
        cause,
    };
    let flows = flow_maps(&mut PinnedMaps::open(dir, None)?).map_err(err)?;
    let entries = flows.table().entries().map_err(|e| err(e.to_string()))?;
    Ok(entries.into_iter().map(|(k, _)| k).collect())
}

/// Whether the new tables have room for twice the flows of the old ones (the program keeps
/// creating flows during the copy, and an LRU table evicts before it is full).
fn room_for(entries: &[(FlowKey, FlowValue)], layout: &Layout) -> bool {
    let v4 = entries
        .iter()
        .filter(|(k, _)| k.family == family::V4)
        .count();
    let v6 = entries.len() - v4;
    let max = |name| layout.get(name).map_or(0, |m| m.max_entries as usize);
    2 * v4 <= max(names::FLOWS4) && 2 * v6 <= max(names::FLOWS)
}

/// Copies `entries` into `table` and their ledger entries into `ledger`; returns what was
/// copied, by key.
fn migrate(
    entries: &[(FlowKey, FlowValue)],
    table: FlowTable<'_>,
    old_ledger: Option<&Ledger>,
    ledger: Option<&mut Ledger>,
) -> Result<HashMap<FlowKey, FlowValue>, StartError> {
    let written: HashMap<FlowKey, Reported> = old_ledger
        .map(|l| l.entries())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut copied = HashMap::with_capacity(entries.len());
    for (k, v) in entries {
        let v = settled(v, written.get(k).unwrap_or(&Reported::default()));
        let inserted = table.insert(k, &v).map_err(|e| StartError::Program {
            what: "copying the flows into the new flow table".into(),
            cause: e.to_string(),
        })?;
        if inserted {
            copied.insert(*k, v);
        }
    }
    if let Some(new) = ledger {
        for (k, r) in &written {
            if copied.contains_key(k) {
                new.set(k, r);
            }
        }
        // No record to wait for: what the old ledger held goes into the new one now, before
        // the sweeper reads it (`Sweeper::adopt`).
        new.commit();
    }
    Ok(copied)
}

/// The copy of `v`, a flow whose records carried `written`, without a drop its packets do
/// not cover: the program counts a dropped packet's drop before the packet, so a read made
/// in between holds the drop alone (see `Reported::covering`). The packet, counted in the
/// old table after the read, then goes with its drop in the flow's interim record
/// ([`retire`]), instead of a blocked packet recorded as passed there and its drop held
/// twice.
fn settled(v: &FlowValue, written: &Reported) -> FlowValue {
    FlowValue {
        drops: v.drops.min(written.covering(v).drops),
        ..*v
    }
}

/// Swaps a program with new maps in for the running one (see the module documentation).
pub(super) fn run(spec: &Spec, u: Upgrade) -> Result<Started, StartError> {
    let Upgrade {
        state,
        opts,
        layout,
        capacity,
        key,
        mut old,
        replaced,
        rules_known,
        mut running,
        lock,
    } = u;
    let fp = layout.fingerprint();
    info!(
        from = state.layout,
        to = fp,
        "the map layout changes: new maps, and the program swapped in on its links"
    );
    let (mut lists, delta, _) = read_for_new_tables(
        spec.files.clone(),
        key,
        spec.list_floor,
        Some(&replaced),
        spec.state_dir.as_deref(),
    );
    lists.set_capacity(capacity);
    let dir = spec.pins.maps(&fp);
    let mut loaded = load_pinned(&opts, &dir, &layout)?;
    // Applied also when empty: the generation must move past the replaced one.
    loaded.lists.apply(&delta)?;
    loaded.lists.set_roles(
        &spec
            .interfaces
            .iter()
            .filter(|t| t.wan)
            .map(|t| t.ifindex)
            .collect::<Vec<_>>(),
    )?;
    let (mut program, mut maps) = loaded.into_parts();

    let old_maps = take_old(&mut old, state.layout_version);
    let tables_read = old_maps.is_some();
    let mut copied = HashMap::new();
    let mut moved = false;
    if let Some(o) = &old_maps {
        let entries = o.flows.table().entries().map_err(|e| StartError::Program {
            what: "reading the old flow tables".into(),
            cause: e.to_string(),
        })?;
        moved = room_for(&entries, &layout);
        if moved {
            copied = migrate(
                &entries,
                maps.flows.table(),
                o.ledger.as_ref(),
                maps.ledger.as_mut(),
            )?;
        } else {
            warn!(
                flows = entries.len(),
                "the open flows would fill more than half the new flow tables (a full LRU \
                 would evict them at once): they are written out, and flows that go on start \
                 afresh under the new program"
            );
        }
    }

    let digest = program_digest(EBPF_OBJECT, &opts);
    let next = NextProgram {
        layout: fp.clone(),
        layout_version: LAYOUT_VERSION,
        program: digest.clone(),
        migrated: moved,
        id: 0,
    };
    let new_prog = program.program_mut()?;
    let (interfaces, tag) = super::recover::swap_in(spec, &state, &mut running, new_prog, next)?;
    let old_dir = spec.pins.maps(&state.layout);
    let old_layout = Replaced {
        layout: state.layout.clone(),
        layout_version: state.layout_version,
        migrated: moved,
        lost_starts_read: spec.lost_starts_read,
    };
    let mut new_state = PinState {
        replaced: state.replaced.clone(),
        ..PinState::of_this_build(
            fp.clone(),
            digest,
            tag,
            spec.config.clone(),
            interfaces.clone(),
        )
    };
    if old_maps.is_some() {
        new_state.add_replaced(old_layout.clone());
    }
    spec.pins.write_state(&new_state)?;
    drop(running);

    let read = old_layout.lost_starts_read;
    let retired = match old_maps {
        Some(o) => Retired {
            pins: vec![(old_dir, old_layout)],
            rules_unknown: !rules_known,
            ..retire(o, &copied, read)?
        },
        None => {
            remove_dir_pins(&old_dir)?;
            Retired::default()
        }
    };
    let written_out = retired.flows.iter().filter(|f| f.after.is_none()).count();
    info!(
        migrated = copied.len(),
        written_out,
        events = retired.events.len(),
        "upgrade done; the old maps are unpinned once their flows are written"
    );
    maps.retired = Some(retired);
    Ok(Started {
        maps,
        lists,
        outcome: Outcome::Upgraded {
            from: state.layout,
            migrated: copied.len(),
            written_out,
            tables_read,
        },
        list_changes: delta.allow.len() + delta.block.len(),
        interfaces,
        refused: Vec::new(),
        lock,
    })
}

/// A map directory the state no longer names ([`super::recover`]): a replaced layout whose
/// agent died before it wrote out its flows, or the maps of an upgrade that never swapped in.
/// The first has its flows read as [`run`] would have (`running` holds the keys of the
/// running tables: when the flows were moved, a flow they hold is taken as moved at its old
/// value), and stays pinned until they are written ([`Retired::unpin`]); the second never
/// ran (its counters are all zero), or is of a layout the state does not know: it is only
/// unpinned.
pub(super) fn retire_leftover(
    dir: &Path,
    replaced: Option<&Replaced>,
    running: &HashSet<FlowKey>,
) -> Result<Option<Retired>, StartError> {
    let mut old = PinnedMaps::open(dir, None)?;
    let stats = old.take_map(names::STATS);
    let ran = (stats.as_ref())
        .and_then(|m| crate::stats::read(m).ok())
        .is_some_and(|counts| counts.iter().any(|&(_, n)| n > 0));
    let old_maps = match replaced {
        Some(r) if ran => take_old(&mut old, r.layout_version).map(|o| (Old { stats, ..o }, r)),
        None if ran => {
            warn!(
                dir = %dir.display(),
                "maps of a layout the state does not name were left pinned: unpinned unread"
            );
            None
        }
        _ => None,
    };
    let Some((o, r)) = old_maps else {
        drop(old);
        remove_dir_pins(dir)?;
        return Ok(None);
    };
    let entries = o.flows.table().entries().map_err(|e| StartError::Program {
        what: format!("reading the flow tables left in {}", dir.display()),
        cause: e.to_string(),
    })?;
    // The old value stands for the copy: what the old program counted between the copy
    // and the swap is lost with the crash.
    let copied = if r.migrated {
        entries
            .into_iter()
            .filter(|(k, _)| running.contains(k))
            .collect()
    } else {
        HashMap::new()
    };
    let mut retired = retire(o, &copied, r.lost_starts_read)?;
    info!(
        dir = %dir.display(),
        flows = retired.flows.len(),
        events = retired.events.len(),
        "the maps of a replaced layout were left pinned: their flows are written out"
    );
    retired.pins.push((dir.to_owned(), r.clone()));
    Ok(Some(retired))
}

/// After the swap: the old ring drained, the old tables read a last time, then the old
/// program's `lost_flow_start` (it counts until the swap; `read`: the last agent's reading).
fn retire(
    o: Old,
    copied: &HashMap<FlowKey, FlowValue>,
    read: Option<u64>,
) -> Result<Retired, StartError> {
    let mut events = Vec::new();
    // All of it (a drain stops at a batch's payload bytes), and nothing given back: the map
    // is unpinned once its events are written, and a kill before leaves them in it for the
    // next start, which writes out a replaced layout's maps left pinned.
    match RingReader::new(&o.events) {
        Ok(mut ring) => while ring.drain_into(&mut events, usize::MAX).more {},
        Err(e) => {
            warn!(error = %e, "cannot read the replaced layout's ring buffer: the events it holds are not written (its flows still are, from its table)")
        }
    }
    let last = o.flows.table().entries().map_err(|e| StartError::Program {
        what: "reading the old flow tables after the swap".into(),
        cause: e.to_string(),
    })?;
    let mut flows = Vec::new();
    for (key, value) in last {
        match copied.get(&key) {
            // Counted by the old program after the copy: an interim slice of the flow (none
            // if it counted nothing since; listed all the same, its start may have been lost
            // with the old ring: see `Sweeper::write_retired`).
            Some(c) => flows.push(RetiredFlow {
                key,
                value,
                after: Some(Reported::of(c)),
            }),
            None => flows.push(RetiredFlow {
                key,
                value,
                after: None,
            }),
        }
    }
    // Copied flows the old table evicted after the copy (new flows took their place before
    // the swap): nothing more to write, but listed as the copy, for the count of their lost
    // starts (a re-test counted 45,073 such flows unseen that the new table held).
    let listed: HashSet<FlowKey> = flows.iter().map(|f| f.key).collect();
    for (key, c) in copied.iter().filter(|(k, _)| !listed.contains(*k)) {
        flows.push(RetiredFlow {
            key: *key,
            value: *c,
            after: Some(Reported::of(c)),
        });
    }
    let seed = o
        .ledger
        .map(|l| l.entries())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !copied.contains_key(k))
        .collect();
    Ok(Retired {
        events,
        seed,
        flows,
        flood: o.flood.map(retired_flood).unwrap_or_default(),
        rules_unknown: false,
        pins: Vec::new(),
        lost_starts: (o.stats.as_ref())
            .and_then(|m| crate::stats::read_one(m, agent_common::Counter::LostFlowStart).ok())
            .map(|total| (total, read))
            .into_iter()
            .collect(),
    })
}

/// Every summary the old program's flood slots hold: the window its last agent left
/// untaken and the one it counted in since (it no longer runs, so the budget written here
/// changes nothing).
fn retired_flood((slots, total, config): (MapData, MapData, MapData)) -> Vec<RuleFlood> {
    let taken = FloodMaps::new(slots, total, config, FloodBudget::default()).and_then(|mut f| {
        let mut all = f.take_left()?;
        all.extend(f.take()?);
        Ok(all)
    });
    taken.unwrap_or_else(|e| {
        warn!(error = %e, "the old program's flood summaries cannot be read: the blocked packets it summarised since the last agent's take are not recorded");
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blocked flow read between its third packet's drop and its count: the copy keeps two
    /// drops, and the third goes with the packet the old table counts after the read.
    #[test]
    fn a_drop_read_before_its_packet_is_left_to_the_interim_record() {
        let v = FlowValue {
            first_seen_ns: 1,
            last_seen_ns: 2,
            end_seen_ns: 0,
            packets: [2, 0],
            bytes: [120, 0],
            drops: 3,
            src_mac: [0; 6],
            dst_mac: [0; 6],
            tcp_flags: [0; 2],
            flags: 0,
            verdict: agent_common::verdict::DROP,
            verdict_gen: 1,
            rule: 7,
            isn: 0,
            snippets_left: [0; 2],
            last_tick: 0,
        };
        let c = settled(&v, &Reported::default());
        assert_eq!((c.packets, c.drops), ([2, 0], 2));
        // What the old table holds at the swap, less the copy: the packet and its drop.
        let last = FlowValue {
            packets: [3, 0],
            bytes: [180, 0],
            ..v
        };
        let after = Reported::of(&c);
        assert_eq!(
            (last.packets[0] - after.packets[0], last.drops - after.drops),
            (1, 1)
        );
        // Records already carried the first packet and its drop: two new packets cover two.
        let written = Reported {
            packets: [1, 0],
            bytes: [60, 0],
            drops: 1,
            last_seen_ns: 0,
        };
        assert_eq!(settled(&v, &written).drops, 2);
        // A copy that is not torn is copied whole.
        let whole = FlowValue { drops: 2, ..v };
        assert_eq!(settled(&whole, &written), whole);
    }
}
