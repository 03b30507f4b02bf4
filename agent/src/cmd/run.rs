//! `xdp-audit run`: load, attach, enforce the lists, and audit until SIGINT/SIGTERM.

use std::collections::HashMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aya::maps::RingBuf;
use clap::Args;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::blocklist::watch::{self, ListWatcher};
use crate::blocklist::{warn_diagnostics, Capacity, Delta, Diagnostic, ListKind, ListSet};
use crate::clock::WallClock;
use crate::cmd::store_args::StoreArgs;
use crate::enforce;
use crate::flowtable::FlowTable;
use crate::loader::{AttachMode, LoadOptions, Loaded};
use crate::reader::decode;
use crate::sink::RecordSink;
use crate::store::Store;
use crate::sweeper::{Sweeper, Timeouts};

/// Audit every flow through the given interfaces and enforce block and allow lists.
///
/// Loads the XDP program, attaches it to each --iface (native mode first, SKB mode if the
/// driver refuses, and says which), and writes one record per flow to the audit store in
/// LOG_DIR (journal, sealed Parquet segments, hash-chained manifest; see `xdp-audit query`,
/// `verify`, `export`): when it closes (FIN/RST, after --close-linger), when it idles for
/// --inactive-timeout, every --active-timeout while it lasts, at a flow's first dropped
/// packet, and at shutdown. SIGINT or SIGTERM detaches the program, writes every open flow
/// with end reason `shutdown`, and exits 0.
///
/// List files (--blocklist, --allowlist) are watched: an edit applies within a second, SIGHUP
/// re-reads them all. A file with a bad line is not applied (each problem is logged as
/// FILE:LINE: reason) and its last good version stays in force.
///
/// Every flag can also come from a TOML file (--config): its keys are the flags without the
/// dashes, and a flag on the command line wins.
///
/// Examples:
///   xdp-audit run --iface eth1 --log-dir /var/log/xdp-audit
///   xdp-audit run --iface eth1:lan --iface eth0:wan --blocklist /etc/xdp-audit/block.list
///   xdp-audit run --config /etc/xdp-audit/xdp-audit.toml
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RunArgs {
    /// Read settings from this TOML file: keys are these flags without the dashes
    /// (`log-dir = "/var/log/xdp-audit"`, `iface = ["eth1:lan", "eth0:wan"]`,
    /// `blocklist = ["/etc/xdp-audit/block.list"]`). Flags on the command line win.
    #[arg(long, value_name = "FILE", env = crate::config::CONFIG_ENV)]
    pub config: Option<PathBuf>,
    /// Interface to audit, optionally with its side: IF or IF:lan (rules match destinations)
    /// or IF:wan (rules match sources). Repeat for several.
    #[arg(long = "iface", value_name = "IF[:lan|wan]", required = true, value_parser = parse_iface)]
    pub ifaces: Vec<(String, bool)>,
    /// XDP attach mode: auto tries native then SKB.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub xdp_mode: AttachMode,
    /// The audit store: --log-dir, --fsync-interval, --segment-max-bytes, --retention-days,
    /// --signing-key, --buffer-records.
    #[command(flatten)]
    pub store: StoreArgs,
    /// A blocklist file (repeatable); see `xdp-audit blocklist check --help` for the format.
    #[arg(long = "blocklist", value_name = "FILE")]
    pub blocklists: Vec<PathBuf>,
    /// An allowlist file (repeatable): its entries are never blocked.
    #[arg(long = "allowlist", value_name = "FILE")]
    pub allowlists: Vec<PathBuf>,
    /// Where `status.json` is kept up to date for `xdp-audit status`.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Smallest size of each list table; tables are sized to twice the lists at start.
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    pub list_capacity: u32,
    /// End a flow after this long without packets (`30s`, `2m`, or seconds).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub inactive_timeout: Duration,
    /// Write an interim record of a flow open this long (`300s`, `5m`).
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
    pub active_timeout: Duration,
    /// After FIN or RST, wait this long for the closing packets before ending the flow.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub close_linger: Duration,
    /// How often the flow table is swept and the log synced to disk.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub sweep_interval: Duration,
    /// Flow-table entries (LRU: when full, the oldest idle flow is evicted and recorded).
    #[arg(long, value_name = "N", default_value_t = LoadOptions::default().flow_table_size)]
    pub flow_table_size: u32,
    /// Ring-buffer size in bytes (a power of two, at least 4096).
    #[arg(long, value_name = "BYTES", default_value_t = LoadOptions::default().ringbuf_bytes)]
    pub ringbuf_bytes: u32,
}

/// Where the agent keeps its status snapshot unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/xdp-audit";

/// Parses `IF`, `IF:lan` or `IF:wan` into the name and whether it is internet-facing.
pub fn parse_iface(s: &str) -> Result<(String, bool), String> {
    match s.rsplit_once(':') {
        None => Ok((s.to_owned(), false)),
        Some((name, "lan")) => Ok((name.to_owned(), false)),
        Some((name, "wan")) => Ok((name.to_owned(), true)),
        Some((_, side)) => Err(format!("{s:?}: side {side:?} is neither lan nor wan")),
    }
}

/// Parses `30s`, `2m`, `1h`, `500ms` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 30s, 5m or 1h: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("{s:?} is negative"))
}

fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

fn validate(args: &RunArgs) -> anyhow::Result<()> {
    let rb = args.ringbuf_bytes;
    if rb < 4096 || !rb.is_power_of_two() {
        bail!("--ringbuf-bytes {rb} must be a power of two of at least 4096");
    }
    if args.flow_table_size == 0 {
        bail!("--flow-table-size must be at least 1");
    }
    if args.inactive_timeout.is_zero() || args.active_timeout.is_zero() {
        bail!("--inactive-timeout and --active-timeout must be above zero");
    }
    if args.sweep_interval.is_zero() {
        bail!("--sweep-interval must be above zero");
    }
    // A list file may be missing at start (it is loaded when it appears), but its directory
    // is watched, so it must exist: checked here, before anything touches the kernel.
    let lists = (args.blocklists.iter().map(|p| ("--blocklist", p)))
        .chain(args.allowlists.iter().map(|p| ("--allowlist", p)));
    for (flag, path) in lists {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        if !dir.is_dir() {
            bail!(
                "{flag} {}: directory {} does not exist (the directory of a list is watched for its changes)",
                path.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// Everything the event loop works on.
struct Agent {
    state_dir: PathBuf,
    interfaces: Vec<String>,
    loaded: Loaded,
    sweeper: Sweeper,
    sink: Store,
    lists: Lists,
}

/// The list files and whether the kernel still has what they say.
struct Lists {
    set: ListSet,
    /// Set when a reload could not be applied; later reloads would build on a state the
    /// kernel does not have, so they are refused until a restart.
    stale: bool,
}

/// Runs the agent.
pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    validate(&args)?;
    crate::blocklist::use_mmap_for_large_buffers();
    let mut ifnames = HashMap::new();
    for (name, _) in &args.ifaces {
        let idx = ifindex(name)
            .with_context(|| format!("interface {name:?} does not exist (see `ip link`)"))?;
        ifnames.insert(idx, name.clone());
    }
    // Open the store first: a bad --log-dir must fail before anything touches the kernel.
    let log_dir = args.store.dir.log_dir.clone();
    let sink = Store::open(args.store.to_config()?)
        .with_context(|| format!("--log-dir {} is not usable", log_dir.display()))?;

    let files = args
        .blocklists
        .iter()
        .map(|p| (p.clone(), ListKind::Block))
        .chain(args.allowlists.iter().map(|p| (p.clone(), ListKind::Allow)));
    let key = crate::blocklist::random_key().context("drawing the key for domain hashes")?;
    let mut lists = ListSet::new(files, key);
    let started = Instant::now();
    let (delta, problems) = lists.reload_all();
    if !problems.is_empty() {
        warn_diagnostics(&problems, 50);
        warn!("list files with problems are not enforced until fixed");
    }

    let capacity = Capacity::for_lists(lists.compiled(), args.list_capacity);
    lists.set_capacity(capacity);
    let mut loaded = Loaded::load(LoadOptions {
        flow_table_size: args.flow_table_size,
        ringbuf_bytes: args.ringbuf_bytes,
        list_capacity: capacity.map_sizes(),
        domain_key: Some(key),
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
    for (name, wan) in &args.ifaces {
        if *wan {
            let idx = ifindex(name).with_context(|| format!("interface {name:?} vanished"))?;
            loaded.lists.set_wan(idx)?;
        }
        loaded.attach(name, args.xdp_mode)?;
    }
    let timeouts = Timeouts {
        inactive: args.inactive_timeout,
        active: args.active_timeout,
        close_linger: args.close_linger,
    };
    let mut agent = Agent {
        state_dir: args.state_dir.clone(),
        interfaces: args.ifaces.iter().map(|(n, _)| n.clone()).collect(),
        loaded,
        sweeper: Sweeper::new(timeouts, WallClock::measure(), ifnames),
        sink,
        lists: Lists {
            set: lists,
            stale: false,
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(event_loop(&mut agent, args.sweep_interval))?;
    shutdown(agent)
}

/// Stops the program first so the counters are final, then writes every flow.
fn shutdown(mut a: Agent) -> anyhow::Result<ExitCode> {
    a.loaded.detach_all();
    let flows = a.loaded.flow_table();
    a.sweeper
        .flush(flows, &mut a.sink, &a.lists.set)
        .context("reading the flow table at shutdown")?;
    a.sink
        .close()
        .context("closing the audit store at shutdown")?;
    match crate::stats::read(&a.loaded.stats) {
        Ok(counters) => {
            let nonzero: Vec<String> = counters
                .iter()
                .filter(|(_, n)| *n != 0)
                .map(|(c, n)| format!("{}={n}", c.name()))
                .collect();
            info!(counters = %nonzero.join(" "), "program counters at shutdown");
        }
        Err(e) => warn!(error = %e, "cannot read the program counters"),
    }
    // A stopped agent has no status: `xdp-audit status` then says so instead of showing stale
    // figures.
    let _ = std::fs::remove_file(a.state_dir.join(crate::status::FILE_NAME));
    let s = a.sweeper.stats;
    info!(
        records = s.records,
        lost_starts = s.lost_starts,
        evicted = s.evicted,
        sink_errors = s.sink_errors,
        "stopped"
    );
    Ok(ExitCode::SUCCESS)
}

impl Lists {
    /// Applies what a reload produced; files with `problems` kept their last good version.
    fn apply(
        &mut self,
        maps: &mut enforce::ListMaps,
        what: &str,
        delta: Delta,
        problems: &[Diagnostic],
    ) {
        let started = Instant::now();
        if !problems.is_empty() {
            warn_diagnostics(problems, 50);
            warn!(
                "{what}: files with problems not applied; their last good version stays in force"
            );
        }
        if self.stale {
            error!("{what}: not applied; an earlier list change could not be applied, restart the agent");
            return;
        }
        if delta.is_empty() {
            info!("{what}: no change");
            return;
        }
        match maps.apply(&delta) {
            Ok(()) => info!(
                changes = delta.allow.len() + delta.block.len(),
                ms = started.elapsed().as_millis() as u64,
                generation = delta.generation,
                "{what}: applied"
            ),
            Err(e) => {
                self.stale = true;
                let e = anyhow::Error::from(e);
                error!("{what}: failed part way, the kernel may hold part of it; restart the agent: {e:#}");
            }
        }
    }
}

/// Rewrites the status snapshot; a failure is logged, never fatal.
fn write_status(
    dir: &std::path::Path,
    interfaces: &[String],
    stats: &aya::maps::Map,
    maps: &enforce::ListMaps,
    lists: &ListSet,
    flows: crate::sweeper::SweepStats,
    store: crate::store::StoreStatus,
) {
    let counters = match crate::stats::read(stats) {
        Ok(c) => c
            .into_iter()
            .map(|(c, n)| (c.name().to_owned(), n))
            .collect(),
        Err(e) => {
            warn!(error = %e, "cannot read the program counters");
            return;
        }
    };
    let mut snap =
        crate::status::Snapshot::new(interfaces.to_vec(), counters, lists, &maps.all_hits());
    snap.flows = flows;
    snap.store = store;
    if let Err(e) = snap.write(dir) {
        warn!(error = %e, dir = %dir.display(), "cannot write the status snapshot");
    }
}

/// Hands every queued event to the sweeper.
fn drain(
    ring: &mut RingBuf<&mut aya::maps::MapData>,
    sweeper: &mut Sweeper,
    sink: &mut Store,
    lists: &ListSet,
) {
    while let Some(item) = ring.next() {
        match decode(&item) {
            Ok(ev) => sweeper.on_event(ev, sink, lists),
            Err(e) => error!(error = %e, "undecodable ring-buffer record"),
        }
    }
}

/// How often the ring buffer is drained when the program has not woken us.
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);

async fn event_loop(a: &mut Agent, sweep_interval: Duration) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sighup = watch::sighup().context("cannot watch SIGHUP")?;
    let paths: Vec<PathBuf> = a.lists.set.paths().into_iter().map(PathBuf::from).collect();
    let mut watcher = if paths.is_empty() {
        None
    } else {
        Some(
            ListWatcher::new(&paths, watch::DEFAULT_DEBOUNCE)
                .context("cannot watch the list files")?,
        )
    };
    let ring = RingBuf::try_from(&mut a.loaded.events).context("EVENTS is not a ring buffer")?;
    // SAFETY: the RingBuf owns its map fd for its whole life and always returns the same one.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)
        .context("cannot poll the ring buffer")?;
    let mut tick = tokio::time::interval(sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The program wakes us only when a quarter of the ring is pending; drain it regularly
    // so events reach the sweeper promptly under light load.
    let mut drain_tick = tokio::time::interval(DRAIN_INTERVAL);
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!("xdp-audit running");
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("polling the ring buffer")?;
                drain(guard.get_inner_mut(), &mut a.sweeper, &mut a.sink, &a.lists.set);
                guard.clear_ready();
            }
            _ = drain_tick.tick() => drain(ring.get_mut(), &mut a.sweeper, &mut a.sink, &a.lists.set),
            _ = tick.tick() => {
                // Announcements first: after a stall (a large list reload), a flow's start
                // event may still be queued when its end is due, and the sweeper must know the
                // flow before it writes it, or the late start would reopen it.
                drain(ring.get_mut(), &mut a.sweeper, &mut a.sink, &a.lists.set);
                let flows = FlowTable::new(a.loaded.flows.fd(), a.loaded.flows4.fd());
                if let Err(e) = a.sweeper.sweep(flows, &mut a.sink, &a.lists.set, WallClock::ktime_now()) {
                    error!(error = %e, "sweeping the flow table failed");
                }
                if let Err(e) = a.sink.tick() {
                    error!(error = %e, "audit store upkeep failed");
                }
                write_status(
                    &a.state_dir,
                    &a.interfaces,
                    &a.loaded.stats,
                    &a.loaded.lists,
                    &a.lists.set,
                    a.sweeper.stats,
                    a.sink.status(),
                );
            }
            changed = async { match watcher.as_mut() { Some(w) => w.changed().await, None => std::future::pending().await } } => {
                match changed {
                    Ok(paths) => {
                        let what = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
                        let (delta, problems) = a.lists.set.reload_many(&paths);
                        a.lists.apply(&mut a.loaded.lists, &format!("list {what}"), delta, &problems);
                    }
                    Err(e) => { error!(error = %e, "list watcher stopped; SIGHUP still reloads"); watcher = None; }
                }
            }
            _ = sighup.recv() => {
                let (delta, problems) = a.lists.set.reload_all();
                a.lists.apply(&mut a.loaded.lists, "SIGHUP reload", delta, &problems);
            }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
        }
    }
    // Events still queued carry starts the sweeper should know of before the final flush.
    drain(ring.get_mut(), &mut a.sweeper, &mut a.sink, &a.lists.set);
    Ok(())
}
