//! The `run` command's attach stage: which configured interfaces exist, and the program
//! loaded and attached there (`--no-pin`) or the pinned instance started, adopted or
//! upgraded (`loader::adopt`), with the interfaces it could not attach.

use std::time::Instant;

use anyhow::{bail, Context as _};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::{flood_budget, RunArgs};
use crate::blocklist::{ListKind, ListSet, ListSpec};
use crate::daemon::lists::read_at_start;
use crate::daemon::Interface;
use crate::loader::adopt::{self, Outcome, Target};
use crate::loader::pin::InstanceLock;
use crate::loader::{LoadOptions, Loaded, Maps, Program};

/// The configured interfaces that exist, and those that do not. An interface absent at the
/// start is watched, and the others audited: one missing device (a USB NIC, a VLAN made
/// later) must not leave them all unread. None at all is a configuration to fix.
pub(super) fn present_interfaces(args: &RunArgs) -> anyhow::Result<(Vec<Interface>, Vec<String>)> {
    let (mut interfaces, mut absent, mut first_missing) = (Vec::new(), Vec::new(), None);
    for (name, _) in &args.ifaces {
        match crate::loader::usable_interface(name) {
            Ok(ifindex) => interfaces.push(Interface {
                name: name.clone(),
                ifindex,
            }),
            Err(e @ crate::loader::LoadError::NoSuchInterface(_)) => {
                absent.push(name.clone());
                first_missing.get_or_insert(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let (true, Some(e)) = (interfaces.is_empty(), first_missing) {
        return Err(e.into());
    }
    if !absent.is_empty() {
        warn!(
            absent = absent.join(", "),
            "configured interfaces do not exist: auditing the others; the agent stops when one \
             appears, so that a restart (systemd's Restart=on-failure) attaches the program there"
        );
    }
    for i in &interfaces {
        crate::daemon::ifaces::warn_source_routing(&i.name);
    }
    Ok((interfaces, absent))
}

/// The program in place and the maps for the daemon.
pub(super) struct Attached {
    pub(super) maps: Maps,
    pub(super) lists: ListSet,
    /// The program, when it lives as long as the agent (`--no-pin`): detached at the stop.
    pub(super) program: Option<Program>,
    /// The pinned instance, held while the agent runs.
    pub(super) _instance: Option<InstanceLock>,
    /// `(interface, attach mode in use)`.
    pub(super) modes: Vec<(String, String)>,
    /// An adopted pinned program, its counters going on from the last agent's.
    pub(super) adopted: bool,
    /// The pinned flow table and ledger of the last agent were taken over (adopted, or read
    /// by an upgrade): the records a full disk kept there are written by this agent.
    pub(super) took_over: bool,
    /// Interfaces the program could not be attached to, and why: the others are audited.
    pub(super) refused: Vec<(String, String)>,
}

/// The list files, in the order given.
pub(super) fn list_files(args: &RunArgs) -> Vec<ListSpec> {
    args.blocklists
        .iter()
        .map(|(path, refuse)| ListSpec {
            path: path.clone(),
            kind: ListKind::Block,
            refuse: *refuse || args.refuse,
        })
        .chain(
            args.allowlists
                .iter()
                .map(|p| ListSpec::from((p.clone(), ListKind::Allow))),
        )
        .collect()
}

/// `--no-pin`: loads, writes the lists, attaches; the program goes with the agent.
pub(super) fn attach_unpinned(
    args: &RunArgs,
    interfaces: &[Interface],
) -> anyhow::Result<Attached> {
    let pins = args.pins.dir()?;
    if std::fs::symlink_metadata(pins.dir()).is_ok() {
        bail!(
            "instance {:?} is pinned at {} (a pinned run left it): remove it with \
             `xdp-audit detach --instance {}` before running with --no-pin",
            args.pins.instance,
            pins.dir().display(),
            args.pins.instance
        );
    }
    let key = crate::blocklist::random_key().context("drawing the key for domain hashes")?;
    let started = Instant::now();
    let (lists, delta, capacity) = read_at_start(
        list_files(args),
        key,
        args.list_capacity,
        Some(&args.state_dir),
    );
    let mut loaded = Loaded::load(LoadOptions {
        flow_table_size: args.flow_table_size,
        ringbuf_bytes: args.ringbuf_bytes,
        list_capacity: capacity.map_sizes(),
        domain_key: Some(key),
        flood: flood_budget(args),
    })?;
    loaded
        .lists
        .apply(&delta)
        .context("loading the lists into the kernel")?;
    let c = lists.compiled();
    info!(
        block = c.block.stats.kept(),
        allow = c.allow.stats.kept(),
        ms = started.elapsed().as_millis() as u64,
        "lists loaded"
    );
    let (mut modes, mut refused, mut first) = (Vec::new(), Vec::new(), None);
    for iface in interfaces {
        if wan(args, &iface.name) {
            loaded.lists.set_wan(iface.ifindex)?;
        }
        match loaded.attach(&iface.name, args.xdp_mode) {
            Ok(mode) => modes.push((iface.name.clone(), mode.to_string())),
            Err(e) if e.is_one_interface() => {
                refused.push((iface.name.clone(), e.with_causes()));
                first.get_or_insert(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let (true, Some(e)) = (modes.is_empty(), first) {
        return Err(e.into());
    }
    let (program, maps) = loaded.into_parts();
    Ok(Attached {
        maps,
        lists,
        program: Some(program),
        _instance: None,
        modes,
        adopted: false,
        took_over: false,
        refused,
    })
}

/// Whether the interface `name` was given as the WAN side (`IF:wan`).
fn wan(args: &RunArgs, name: &str) -> bool {
    args.ifaces.iter().any(|(n, wan)| n == name && *wan)
}

/// A digest of the settings that shape the program and its maps, noted beside the pins.
fn config_digest(args: &RunArgs) -> String {
    let text = format!(
        "{:?} {} {} {} {} {:?} {:?} {}",
        args.ifaces,
        args.xdp_mode,
        args.flow_table_size,
        args.ringbuf_bytes,
        args.list_capacity,
        args.blocklists,
        args.allowlists,
        args.refuse
    );
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Pinned: starts fresh, adopts the running instance, or upgrades it.
pub(super) fn attach_pinned(
    args: &RunArgs,
    interfaces: &[Interface],
    lost_starts_read: Option<u64>,
) -> anyhow::Result<Attached> {
    let started = Instant::now();
    let spec = adopt::Spec {
        pins: args.pins.dir()?,
        sizes: LoadOptions {
            flow_table_size: args.flow_table_size,
            ringbuf_bytes: args.ringbuf_bytes,
            flood: flood_budget(args),
            ..LoadOptions::default()
        },
        interfaces: interfaces
            .iter()
            .map(|i| Target {
                name: i.name.clone(),
                ifindex: i.ifindex,
                wan: wan(args, &i.name),
            })
            .collect(),
        mode: args.xdp_mode,
        files: list_files(args),
        state_dir: Some(args.state_dir.clone()),
        list_floor: args.list_capacity,
        config: config_digest(args),
        netlink: false,
        lost_starts_read,
    };
    let s = adopt::start(&spec).with_context(|| {
        format!(
            "starting pinned instance {:?} (or run with --no-pin)",
            args.pins.instance
        )
    })?;
    let ms = started.elapsed().as_millis() as u64;
    let dir = spec.pins.dir().display().to_string();
    match &s.outcome {
        Outcome::Fresh => info!(dir, ms, "program loaded, attached and pinned"),
        Outcome::Adopted { program_replaced } => info!(
            dir,
            ms,
            program_replaced,
            list_changes = s.list_changes,
            "adopted the pinned program: it never stopped"
        ),
        Outcome::Upgraded {
            from,
            migrated,
            written_out,
            ..
        } => info!(
            dir,
            ms,
            from,
            migrated,
            written_out,
            "upgraded the pinned program: swapped on its links, no packet unjudged"
        ),
    }
    // An interface configured and present but not attached was refused on its own (a
    // fresh start says why; an adopting one logged it): another program holds it, or its
    // driver refuses the mode.
    let mut refused = s.refused;
    for i in interfaces {
        let attached = s.interfaces.iter().any(|a| a.name == i.name);
        if !attached && !refused.iter().any(|(n, _)| *n == i.name) {
            let why = "another XDP program holds it, or its driver refuses the mode (the log \
                       says which)";
            refused.push((i.name.clone(), why.to_owned()));
        }
    }
    if s.interfaces.is_empty() {
        let why = refused
            .first()
            .map_or(String::new(), |(_, why)| why.clone());
        bail!("no configured interface could be attached: {why}");
    }
    Ok(Attached {
        maps: s.maps,
        lists: s.lists,
        program: None,
        _instance: Some(s.lock),
        modes: s
            .interfaces
            .iter()
            .map(|i| (i.name.clone(), i.mode.to_string()))
            .collect(),
        adopted: matches!(s.outcome, Outcome::Adopted { .. }),
        took_over: match s.outcome {
            Outcome::Fresh => false,
            Outcome::Adopted { .. } => true,
            Outcome::Upgraded { tables_read, .. } => tables_read,
        },
        refused,
    })
}
