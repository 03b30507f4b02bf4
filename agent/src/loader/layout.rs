//! The layout of the maps a pinned program keeps, read from the object itself, and its
//! fingerprint: the name of the directory the maps are pinned in.
//!
//! aya reuses a map pinned under the name it would create, without checking its type, key
//! and value sizes or capacity; a program built for another layout would then read its maps
//! wrongly. So the pins live in a directory named by a fingerprint of every map's definition
//! (from the object's own map sections, after the load-time sizes are applied, so a map a
//! later build adds is covered without a list to keep up to date), plus the agent's own
//! [`names::REPORTED`] ledger and [`LAYOUT_VERSION`]. Any change of a definition (a new map,
//! a changed key, `--flow-table-size`, `--ringbuf-bytes`, a list table's capacity) names
//! another directory: such a start is an upgrade, never an adoption.

use std::fmt::Write as _;
use std::mem::size_of;

use agent_common::{names, FlowKey, Reported, LAYOUT_VERSION};
use aya::maps::MapData;
use aya_obj::EbpfSectionKind;
use sha2::{Digest, Sha256};

use super::LoadOptions;

/// `BPF_MAP_TYPE_HASH`.
const HASH: u32 = 1;
/// `BPF_F_NO_PREALLOC`: memory only for the entries present.
pub(crate) const NO_PREALLOC: u32 = 1;

/// One map's definition, as created in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapDef {
    /// Its name in the object (and its pin's name).
    pub name: String,
    /// `bpf_map_type`.
    pub map_type: u32,
    /// Key bytes.
    pub key_size: u32,
    /// Value bytes.
    pub value_size: u32,
    /// Capacity (bytes for a ring buffer).
    pub max_entries: u32,
    /// `map_flags`.
    pub flags: u32,
}

/// The maps of a program as it would be loaded with given options, in name order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    maps: Vec<MapDef>,
}

/// The object's map sections do not parse (a build defect).
#[derive(Debug, thiserror::Error)]
#[error("the embedded XDP object does not parse ({0}); the build is inconsistent")]
pub struct LayoutError(String);

/// A pinned map that is not what its layout says.
#[derive(Debug, thiserror::Error)]
#[error(
    "pinned map {name} is a type {kind} map with {key}-byte keys, {value}-byte values and {max} \
     entries, not what layout {layout} defines (type {want_kind}, {want_key}, {want_value}, \
     {want_max}); the pins were changed by something else than xdp-audit: remove them with \
     `xdp-audit detach`"
)]
pub struct MapMismatch {
    name: String,
    layout: String,
    kind: String,
    key: u32,
    value: u32,
    max: u32,
    want_kind: u32,
    want_key: u32,
    want_value: u32,
    want_max: u32,
}

impl Layout {
    /// The maps `object` creates when loaded with `opts`, and the agent's ledger. Globals
    /// (`.rodata`, `.data`, `.bss`) are no part of it: they belong to one load of the program
    /// and are never pinned.
    pub fn of(object: &[u8], opts: &LoadOptions) -> Result<Self, LayoutError> {
        let obj = aya_obj::Object::parse(object).map_err(|e| LayoutError(e.to_string()))?;
        let sizes = super::map_sizes(opts);
        let mut maps: Vec<MapDef> = obj
            .maps
            .iter()
            .filter(|(_, m)| {
                !matches!(
                    m.section_kind(),
                    EbpfSectionKind::Rodata | EbpfSectionKind::Data | EbpfSectionKind::Bss
                )
            })
            .map(|(name, m)| MapDef {
                name: name.clone(),
                map_type: m.map_type(),
                key_size: m.key_size(),
                value_size: m.value_size(),
                max_entries: sizes
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(m.max_entries(), |&(_, size)| size),
                flags: m.map_flags(),
            })
            .collect();
        maps.push(ledger_def(opts.flow_table_size));
        maps.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self { maps })
    }

    /// Every map, in name order.
    pub fn maps(&self) -> &[MapDef] {
        &self.maps
    }

    /// The map called `name`.
    pub fn get(&self, name: &str) -> Option<&MapDef> {
        self.maps.iter().find(|m| m.name == name)
    }

    /// Sixteen hex digits naming this layout: a SHA-256 of [`LAYOUT_VERSION`] and every
    /// definition.
    pub fn fingerprint(&self) -> String {
        let mut text = format!("xdp-audit map layout v{LAYOUT_VERSION}\n");
        for m in &self.maps {
            let _ = writeln!(
                text,
                "{} type={} key={} value={} max={} flags={}",
                m.name, m.map_type, m.key_size, m.value_size, m.max_entries, m.flags
            );
        }
        let digest = Sha256::digest(text.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks that `map`, opened from the pin of map `def`, is what the definition says:
    /// a pin directory whose name matches but whose maps do not is refused, never read.
    pub fn check(&self, def: &MapDef, map: &MapData) -> Result<(), MapMismatch> {
        let mismatch = |kind: String, key, value, max| MapMismatch {
            name: def.name.clone(),
            layout: self.fingerprint(),
            kind,
            key,
            value,
            max,
            want_kind: def.map_type,
            want_key: def.key_size,
            want_value: def.value_size,
            want_max: def.max_entries,
        };
        let info = map
            .info()
            .map_err(|e| mismatch(format!("unreadable ({e})"), 0, 0, 0))?;
        let kind = info.map_type().map_or(u32::MAX, |t| t as u32);
        let same = kind == def.map_type
            && info.key_size() == def.key_size
            && info.value_size() == def.value_size
            && info.max_entries() == def.max_entries;
        if same {
            Ok(())
        } else {
            Err(mismatch(
                kind.to_string(),
                info.key_size(),
                info.value_size(),
                info.max_entries(),
            ))
        }
    }
}

/// The ledger: a hash of flow keys to [`Reported`], room for every flow of both tables,
/// memory only for the flows that have had an interim record or are being ended, and for
/// ended flows for two seconds after (a churn of ended flows past that room makes updates
/// fail, counted).
pub(crate) fn ledger_def(flow_table_size: u32) -> MapDef {
    MapDef {
        name: names::REPORTED.to_owned(),
        map_type: HASH,
        key_size: size_of::<FlowKey>() as u32,
        value_size: size_of::<Reported>() as u32,
        max_entries: flow_table_size.saturating_mul(2),
        flags: NO_PREALLOC,
    }
}

/// A SHA-256 of the object and its load-time globals, as hex: two loads with equal digests
/// put the same program in the kernel, so an adopting agent with an equal digest keeps the
/// running one instead of swapping in a copy.
pub fn program_digest(object: &[u8], opts: &LoadOptions) -> String {
    let mut h = Sha256::new();
    h.update(object);
    for (name, value) in super::globals(opts) {
        h.update(name.as_bytes());
        h.update(value.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::EBPF_OBJECT;

    fn layout(opts: &LoadOptions) -> Layout {
        Layout::of(EBPF_OBJECT, opts).expect("the embedded object parses")
    }

    #[test]
    fn the_layout_comes_from_the_object_and_holds_every_map_but_globals() {
        let l = layout(&LoadOptions::default());
        for name in [
            names::FLOWS,
            names::FLOWS4,
            names::EVENTS,
            names::STATS,
            names::BLOCK_V4,
            names::ALLOW_DOMAINS,
            names::GENERATION,
            names::DOMAIN_KEY,
            names::REPORTED,
            // Pinned with the others: a program array's slots are emptied when its last
            // user reference goes, and the port budgets are the program's configuration.
            names::SLOW_PATH,
            names::PAYLOAD_PORTS,
        ] {
            assert!(l.get(name).is_some(), "{name} missing from {l:?}");
        }
        assert!(
            l.maps().iter().all(|m| !m.name.starts_with('.')),
            "no global section is part of the layout: {l:?}"
        );
        let flows4 = l.get(names::FLOWS4).expect("FLOWS4");
        // From the wire types: a change of their size (a field added) is a layout change.
        assert_eq!(
            flows4.key_size as usize,
            size_of::<agent_common::FlowKey4>()
        );
        assert_eq!(
            flows4.value_size as usize,
            size_of::<agent_common::FlowValue>()
        );
        let flows = l.get(names::FLOWS).expect("FLOWS");
        assert_eq!(flows.key_size as usize, size_of::<FlowKey>());
        assert_eq!(
            flows.value_size as usize,
            size_of::<agent_common::FlowValue>()
        );
        assert_eq!(flows4.max_entries, LoadOptions::default().flow_table_size);
        let names: Vec<&str> = l.maps().iter().map(|m| m.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "maps in name order");
    }

    #[test]
    fn equal_options_give_equal_fingerprints_and_every_size_change_another() {
        let base = LoadOptions::default();
        let fp = layout(&base).fingerprint();
        assert_eq!(fp.len(), 16);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(layout(&base.clone()).fingerprint(), fp, "deterministic");
        let changed = [
            LoadOptions {
                flow_table_size: base.flow_table_size / 2,
                ..base.clone()
            },
            LoadOptions {
                ringbuf_bytes: base.ringbuf_bytes * 2,
                ..base.clone()
            },
            LoadOptions {
                list_capacity: vec![(names::BLOCK_V4, 1 << 20)],
                ..base.clone()
            },
        ];
        let mut seen = vec![fp];
        for opts in changed {
            let other = layout(&opts).fingerprint();
            assert!(!seen.contains(&other), "{opts:?} changes the layout");
            seen.push(other);
        }
        // The domain key is a map's content, not its layout.
        let keyed = LoadOptions {
            domain_key: Some(crate::blocklist::random_key().expect("getrandom")),
            ..base.clone()
        };
        assert_eq!(layout(&keyed).fingerprint(), seen[0]);
    }

    #[test]
    fn the_ledger_follows_the_flow_table_size() {
        let opts = LoadOptions {
            flow_table_size: 1000,
            ..LoadOptions::default()
        };
        let ledger = layout(&opts).get(names::REPORTED).cloned().expect("ledger");
        assert_eq!(ledger, ledger_def(1000));
        assert_eq!(ledger.max_entries, 2000);
        assert_eq!(ledger.key_size, 48);
        assert_eq!(ledger.value_size, 48);
    }

    #[test]
    fn the_program_digest_covers_the_object_and_its_globals() {
        let base = LoadOptions::default();
        let d = program_digest(EBPF_OBJECT, &base);
        assert_eq!(d, program_digest(EBPF_OBJECT, &base.clone()));
        let bigger_ring = LoadOptions {
            ringbuf_bytes: base.ringbuf_bytes * 2,
            ..base.clone()
        };
        assert_ne!(
            d,
            program_digest(EBPF_OBJECT, &bigger_ring),
            "wake-up bytes"
        );
        let mut other = EBPF_OBJECT.to_vec();
        if let Some(last) = other.last_mut() {
            *last ^= 1;
        }
        assert_ne!(d, program_digest(&other, &base), "object bytes");
    }
}
