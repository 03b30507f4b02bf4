//! `xdp-audit run`: load, attach, enforce the lists, and audit until SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use tracing::{info, warn};

use crate::alert::deliver::{ChainDelivery, Delivery, LogDelivery};
use crate::alert::stage::AlertStage;
use crate::alert::webhook::Webhook;
use crate::alert::Alerts;
use crate::clock::HostClocks;
use crate::cmd::detach::PinArgs;
use crate::cmd::store_args::StoreArgs;
use crate::daemon::signals::Held;
use crate::daemon::{Daemon, DaemonError, Settings};
use crate::enrich::inputs::Enrichment;
use crate::enrich::stage::{EnrichStage, StageConfig};
use crate::loader::pin;
use crate::loader::{AttachMode, LoadOptions};
use crate::privilege::{self, Needs, RunAs};
use crate::sink::RecordSink;
use crate::span;
use crate::store::Store;
use crate::sweeper::flood::FloodBudget;
use crate::sweeper::Timeouts;
use crate::syslog::SyslogStage;

/// The largest `--list-capacity`: sixteen million entries per table, eight times the doubled
/// 1,000,000-entry lists the benchmarks load.
mod attach;

use attach::{attach_pinned, attach_unpinned, Attached};

const MAX_LIST_CAPACITY: u32 = 1 << 24;

/// Audit every flow through the given interfaces and enforce block and allow lists.
///
/// Loads the XDP program, attaches it to each --iface (native mode first, SKB mode if the
/// driver refuses, and says which), and writes one record per flow to the audit store in
/// LOG_DIR (journal, sealed Parquet segments, hash-chained manifest; see `xdp-audit query`,
/// `verify`, `export`): when it closes (FIN/RST, after --close-linger), when it idles for
/// --inactive-timeout, every --active-timeout while it lasts, at a flow's first dropped
/// packet, and at shutdown.
///
/// The program, its links and maps are pinned under --pin-root/--instance: a restart (also
/// after a crash) adopts them without a moment unaudited, an agent with another map layout
/// or program swaps its program in atomically, and `xdp-audit detach` removes them. SIGINT
/// or SIGTERM leaves the program attached, writes every open flow with end reason
/// `shutdown` (the next agent carries on from there), seals the journal and exits 0; with
/// --no-pin it detaches the program first, as it exits.
///
/// List files (--blocklist, --allowlist) are watched: an edit applies within a second, SIGHUP
/// re-reads them all. A file with a bad line is not applied (each problem is logged as
/// FILE:LINE: reason) and its last good version stays in force.
///
/// Every flag can also come from a TOML file (--config): its keys are the flags without the
/// dashes, and a flag on the command line wins.
///
/// Lengths of time (--inactive-timeout, --fsync-interval, ...) are written 30s, 5m, 1h30m,
/// 500ms, 2d, 1w, 2h 30m, 90 seconds, PT30S (ISO 8601) or a number of seconds; months and
/// years are refused (no fixed length).
///
/// Examples:
///   xdp-audit run --iface eth1 --log-dir /var/lib/xdp-audit
///   xdp-audit run --iface eth1:lan --iface eth0:wan --blocklist /etc/xdp-audit/block.list
///   xdp-audit run --config /etc/xdp-audit/xdp-audit.toml
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RunArgs {
    /// Read settings from this TOML file: keys are these flags without the dashes
    /// (`log-dir = "/var/lib/xdp-audit"`, `iface = ["eth1:lan", "eth0:wan"]`,
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
    /// FILE:refuse answers what its rules block instead of dropping it in silence (--refuse).
    #[arg(long = "blocklist", value_name = "FILE[:refuse]", value_parser = parse_blocklist)]
    pub blocklists: Vec<(PathBuf, bool)>,
    /// Answer blocked packets from XDP for every blocklist: a DNS query blocked by name gets
    /// NXDOMAIN, a TCP SYN blocked by address or port gets RST, so clients fail at once
    /// instead of timing out; anything else blocked is dropped. Off by default: an answer
    /// tells the client it was blocked (README, "Fast refusal").
    #[arg(long)]
    pub refuse: bool,
    /// An allowlist file (repeatable): its entries are never blocked.
    #[arg(long = "allowlist", value_name = "FILE")]
    pub allowlists: Vec<PathBuf>,
    /// Where `status.json` is kept up to date for `xdp-audit status`, and what the next agent
    /// takes over (attribution learned, the end of the chain last verified).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// How often what attribution has learned (DNS answers, DHCP bindings seen on the link,
    /// open flows' names and users) is saved to `enrich.json` in --state-dir, when it changed,
    /// for the next agent to take back: flows that go on over a restart keep their domain.
    /// Also saved at a clean stop; a crash loses what was learned since the last save.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = span::parse_positive)]
    pub state_save_interval: Duration,
    /// Smallest size of each list table; tables are sized to twice the lists at start
    /// (1 to 16,777,216: a kernel hash table of more is refused or takes gigabytes).
    #[arg(long, value_name = "N", default_value_t = 65_536,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIST_CAPACITY)))]
    pub list_capacity: u32,
    /// End a flow after this long without packets (`30s`, `2m`, `60`: seconds).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = span::parse_positive)]
    pub inactive_timeout: Duration,
    /// Write an interim record of a flow open this long (`300s`, `5m`).
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = span::parse_positive)]
    pub active_timeout: Duration,
    /// After FIN or RST, end the flow once it has been this long without packets (a
    /// half-closed connection whose other side still sends stays open while it sends).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = span::parse)]
    pub close_linger: Duration,
    /// How often the flow table is swept (ended and idle flows written, long ones' interim
    /// records, the status snapshot rewritten); the journal is fsynced every --fsync-interval.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = span::parse_positive)]
    pub sweep_interval: Duration,
    /// Flow-table entries (LRU: when full, the least recently used flow is evicted and recorded
    /// from its last snapshot: what it counted after that is lost, counted in `evicted`).
    #[arg(long, value_name = "N", default_value_t = LoadOptions::default().flow_table_size,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub flow_table_size: u32,
    /// Ring-buffer size in bytes (a power of two, at least 4096; units work: 128MiB); the default holds one
    /// second of new flows at the rate the README documents.
    #[arg(long, value_name = "BYTES", default_value_t = LoadOptions::default().ringbuf_bytes,
          value_parser = parse_ringbuf_bytes)]
    pub ringbuf_bytes: u32,
    /// Blocked flows recorded per rule per second; past it a rule's blocked packets are
    /// dropped without a flow and summed into one `summarised` record per sweep (0: no limit).
    #[arg(long, value_name = "N", default_value_t = FloodBudget::default().per_rule)]
    pub drop_records_per_rule: u32,
    /// Blocked flows recorded per second in all, every rule together (0: no limit).
    #[arg(long, value_name = "N", default_value_t = FloodBudget::default().total)]
    pub drop_records_total: u32,
    /// Attribution: --subscribers, --dhcp-leases, --dhcp-server, --nat.
    #[command(flatten)]
    pub enrich: crate::cmd::enrich_args::EnrichArgs,
    /// Syslog: --syslog, --syslog-ca, --syslog-records, --syslog-queue.
    #[command(flatten)]
    pub syslog: crate::syslog::args::SyslogArgs,
    /// Switch to this user and its group (started as root) before opening the store, keeping
    /// only the capabilities loading needs; a missing --log-dir or --state-dir is created for
    /// it. With or without it, once attached the agent keeps only the capabilities it still
    /// needs (README, "Least privilege").
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Shipping sealed segments to S3: --ship, --ship-endpoint, --ship-region,
    /// --ship-credentials, --gateway-id.
    #[command(flatten)]
    pub ship: crate::ship::config::ShipArgs,
    /// The pinned instance: --instance, --pin-root.
    #[command(flatten)]
    pub pins: PinArgs,
    /// Pin nothing: the program lives as long as the agent and is detached when it exits
    /// (and vanishes with it on a crash).
    #[arg(long)]
    pub no_pin: bool,
    /// Prometheus metrics: --metrics, --metrics-public, --metrics-top-rules.
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
    /// Alerts: --alert-webhook, --alert-window, --alert-burst-hits, ... (config file: the
    /// `[alerts]` table, keys without `alert-`).
    #[command(flatten)]
    pub alerts: Box<crate::alert::AlertConfig>,
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

/// A `--blocklist` value: FILE, or FILE:refuse. Any other lower-case word after the last
/// colon is refused as a mistyped option, unless the whole value names an existing file.
pub fn parse_blocklist(s: &str) -> Result<(PathBuf, bool), String> {
    match s.rsplit_once(':') {
        Some(("", "refuse")) => Err(format!("{s:?}: no file before :refuse")),
        Some((path, "refuse")) => Ok((path.into(), true)),
        Some((_, opt))
            if !opt.is_empty()
                && opt.bytes().all(|b| b.is_ascii_lowercase())
                && !std::path::Path::new(s).exists() =>
        {
            Err(format!(
                "{s:?}: option {opt:?} is not known (FILE:refuse is the only one)"
            ))
        }
        _ => Ok((s.into(), false)),
    }
}

/// The drop-record budgets of the flags, in windows of one sweep.
pub(super) fn flood_budget(args: &RunArgs) -> FloodBudget {
    FloodBudget {
        per_rule: args.drop_records_per_rule,
        total: args.drop_records_total,
        window_ms: u64::try_from(args.sweep_interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1),
    }
}

/// `--ringbuf-bytes`: the kernel takes a power of two of at least a page. A parser, not a
/// check after parsing, so a config file's bad value is named at its key and line.
fn parse_ringbuf_bytes(s: &str) -> Result<u32, String> {
    match crate::bytesize::parse_u32(s)? {
        n if n >= 4096 && n.is_power_of_two() => Ok(n),
        n => Err(format!("{n} is not a power of two of at least 4096")),
    }
}

fn validate(args: &RunArgs) -> anyhow::Result<()> {
    let (rule, total) = (args.drop_records_per_rule, args.drop_records_total);
    if total != 0 && rule > total {
        bail!(
            "--drop-records-per-rule {rule} is above --drop-records-total {total} (0 is no limit): \
             lower the first or raise the second"
        );
    }
    args.metrics.addr().map_err(anyhow::Error::msg)?;
    for (i, (name, _)) in args.ifaces.iter().enumerate() {
        if args.ifaces[..i].iter().any(|(n, _)| n == name) {
            bail!(
                "--iface {name} is given twice: an interface is audited once, as one side \
                 (IF, IF:lan or IF:wan)"
            );
        }
    }
    // A list file may be missing at start (it is loaded when it appears), but its directory
    // is watched, so it must exist: checked here, before anything touches the kernel.
    let lists = (args
        .blocklists
        .iter()
        .map(|(p, _)| ("--blocklist", p.as_path())))
    .chain(args.allowlists.iter().map(|p| ("--allowlist", p.as_path())))
    .chain(args.enrich.watched());
    for (flag, path) in lists {
        // `""`, `.`, `..` or `/`: no file to read, and its directory cannot be watched for it
        // (the watcher refused every file with it).
        use std::os::unix::ffi::OsStrExt as _;
        let bytes = path.as_os_str().as_bytes();
        if path.file_name().is_none() || bytes.ends_with(b"/") || bytes.ends_with(b"/.") {
            bail!(
                "{flag} {:?}: not a file's path (write the file, e.g. /etc/xdp-audit/block.list)",
                path.display().to_string()
            );
        }
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

/// Runs the agent: reads the lists, loads and attaches the program (or adopts the pinned
/// one), runs the daemon until SIGINT or SIGTERM, and lets the daemon write what is left.
/// `held` blocks the stop signals since the process started: one sent while the agent starts
/// stops it before the store opens, or as soon as the daemon runs.
pub fn main(args: RunArgs, held: Held) -> anyhow::Result<ExitCode> {
    validate(&args)?;
    crate::blocklist::use_mmap_for_large_buffers();
    let (mut interfaces, absent) = attach::present_interfaces(&args)?;
    // Store files 0640 and directories 0750, whoever creates them.
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o027) };
    // The signing key is read before a --user switch: it may be readable by root only.
    let mut store_config = args.store.to_config()?;
    // Credentials are read before a --user switch too: the file may be readable by root only.
    let ship_config = args.ship.to_config()?;
    if let Some(cfg) = &ship_config {
        store_config.ship_gate = Some(crate::ship::retention_gate(cfg));
    }
    let retention_days = store_config.retention_days;
    let verify_key = store_config.signing_key.as_ref().map(|k| k.verifying_key());
    let syslog_config = args.syslog.to_config()?;
    for (flag, on) in [
        ("--ship", ship_config.is_some()),
        ("--syslog", syslog_config.is_some()),
        ("--alert-webhook", args.alerts.alert_webhook.is_some()),
    ] {
        if on {
            privilege::ip_sockets_allowed(flag)?;
        }
    }
    let log_dir = args.store.dir.log_dir.clone();
    if let Some(name) = &args.user {
        let user = RunAs::lookup(name)?.not_root()?;
        privilege::check_can_switch().with_context(|| format!("--user {name}"))?;
        for (flag, dir) in [("--log-dir", &log_dir), ("--state-dir", &args.state_dir)] {
            user.own_new_dir(dir).context(flag)?;
        }
        if !args.no_pin {
            // Mounting bpffs needs CAP_SYS_ADMIN and bpffs is root's (0700): done before the
            // switch, the instance's directory given to the user and made reachable.
            let pins = args.pins.dir()?;
            pin::ensure_bpffs(pins.dir()).context("--pin-root")?;
            user.own_new_dir(pins.dir()).context("--instance")?;
            pin::allow_search_to(pins.dir()).context("--pin-root")?;
        }
        privilege::become_user(&user).with_context(|| format!("--user {name}"))?;
    }
    // Listen before the kernel is touched: a port in use fails the start, not a later scrape.
    let metrics_listener = match args.metrics.addr().map_err(anyhow::Error::msg)? {
        Some(addr) => Some(crate::metrics::http::bind(addr)?),
        None => None,
    };
    if let Some(sig) = held.stop_pending() {
        info!("{sig} while starting, before the store was opened: stopping, nothing to seal");
        return Ok(ExitCode::SUCCESS);
    }
    // The last agent's crash evidence, read before this agent's starting snapshot replaces
    // its snapshot (as the user the agent runs as, in the directory made for it): from here
    // on this agent's death before a clean stop is evidence too, also one while the store
    // opens (its recovery can take a while). Another agent's state directory is refused
    // before its snapshot is touched: a second agent started beside a running one must not
    // replace the running one's snapshot and mark it stopped.
    let _state_lock = crate::status::lock_state_dir(&args.state_dir)?;
    let (mut previous, starting, crashed) = crate::status::Starting::begin(&args.state_dir);
    // Before the open recovers what is left and queues it for sealing: the last agent's
    // live journal, gone from the disk and sealed by no segment, was deleted while no agent
    // ran (the running agent's sealer says so of one deleted under it). One still there is
    // counted by the open's recovery: fewer records than made durable, it was cut short.
    let last_journal =
        (previous.live_journal.take()).filter(|j| same_dir(Path::new(&j.dir), &log_dir));
    let journal_gone =
        (last_journal.as_ref()).is_some_and(|j| crate::store::seal::journal_gone(&log_dir, j.id));
    // Looked for once: a start that fails from here must not hand it on (its open may seal
    // or remove it, and every start of a crash loop raised the loss again).
    starting.rewrite(&previous, crashed.clone());
    // Then the store: a bad --log-dir must fail before anything touches the kernel (the
    // starting snapshot, dropped with the error, is marked stopped: no crash).
    let store = Store::open(store_config)
        .with_context(|| format!("--log-dir {} is not usable", log_dir.display()))?;
    let journal_lost = last_journal.and_then(|j| journal_lost(&store, &log_dir, &j, journal_gone));
    let evidence = crashed.clone();
    let mut not_shipping = None;
    let shipper = match &ship_config {
        Some(cfg) => {
            let opts = crate::ship::ShipOptions {
                retention_days,
                ..crate::ship::ShipOptions::default()
            };
            match crate::ship::Shipper::spawn(&log_dir, cfg, opts) {
                Ok(s) => Some(s),
                Err(e) if e.is_state() => {
                    tracing::error!(
                        error = %e,
                        "--ship: not shipping: recording goes on, and retention keeps every \
                         segment not shipped; fix the file named and restart the agent"
                    );
                    not_shipping = Some(crate::ship::ShipHandle::not_shipping(
                        crate::ship::target_name(cfg),
                        &e,
                    ));
                    None
                }
                Err(e) => return Err(anyhow::Error::new(e).context("--ship")),
            }
        }
        None => None,
    };
    let left = store.left_at_open();
    let signing_began_on = store.signing_began_on();
    // The syslog sink too (a bad --syslog-ca fails here); its sender connects on its own.
    let (mut tail, syslog) = match syslog_config {
        Some(c) => {
            let stage = SyslogStage::start(store, c).context("starting the syslog sink")?;
            let handle = stage.handle();
            (Tail::Syslog(stage), Some(handle))
        }
        None => (Tail::Store(store), None),
    };
    let mut alerts = start_alerts(&args, &log_dir, syslog)?;
    // A journal an agent marked stopped left unsealed (its disk refused the last seal) is
    // no crash.
    let unsealed = (left > 0 && !previous.stopped_unsealed)
        .then(|| format!("{left} journals with records were left unsealed"));
    let crashed = crashed.or(unsealed);

    let attached = if args.no_pin {
        attach_unpinned(&args, &interfaces)?
    } else {
        // The last agent's reading of its program's lost starts, kept with that program's
        // maps should this start replace them (a restart with new sizes).
        let read = previous.counters.get("lost_flow_start").copied();
        attach_pinned(&args, &interfaces, read)?
    };
    let Attached {
        maps,
        lists,
        mut program,
        _instance,
        modes,
        adopted,
        took_over,
        refused,
    } = attached;
    if !refused.is_empty() {
        for (iface, why) in &refused {
            warn!(
                iface,
                "not audited: {why}; the other interfaces are audited"
            );
        }
        interfaces.retain(|i| !refused.iter().any(|(n, _)| *n == i.name));
    }
    // What a full disk held that the pins keep, known now the program is attached: pins in
    // a bpffs of this process's own mount namespace end with it, and keep nothing.
    tail.kept_by_pins(!args.no_pin && !pin::pins_end_with_process());
    // The records the last agent's pins kept are lost when this start did not take them
    // over (a reboot, a detach): handed on as lost from here, also by a start that fails.
    if !took_over {
        starting.pins_not_taken(&mut previous, evidence);
    }
    // An adopted program counted on while no agent ran: its losses since the last agent's
    // figures are alerted. One this agent loaded counts from its first sweep.
    if adopted && !previous.counters.is_empty() {
        alerts.handle().previous_run(&previous.counters);
    }
    // Attribution sources start once the program is in (a missing privilege is then said
    // once, by the loader) and before the first record can be written.
    let enrich = crate::enrich::inputs::EnrichOptions {
        state_dir: Some(args.state_dir.clone()),
        ..args.enrich.to_options()
    };
    let (enrichment, inputs) = Enrichment::start(enrich).context("starting attribution")?;
    // Boxed once, with the stages behind it known: a blocked record's way to the store is
    // one dynamic call, not two (issue 13's cost of the alert stage).
    let sink: Box<dyn RecordSink> = match tail {
        Tail::Store(s) => Box::new(AlertStage::new(s, alerts.handle())),
        Tail::Syslog(s) => Box::new(AlertStage::new(s, alerts.handle())),
    };
    let mut stage = EnrichStage::new(sink, inputs, stage_config(&args));
    stage.name_lease_files(
        (args.enrich.dhcp_leases.iter())
            .map(|f| f.path.display().to_string())
            .collect(),
    );
    // A pinned program outlives this agent, and its flows go on under the next one.
    stage.carry_over(&args.state_dir, args.state_save_interval, program.is_none());
    let settings = Settings {
        timeouts: Timeouts {
            inactive: args.inactive_timeout,
            active: args.active_timeout,
            close_linger: args.close_linger,
        },
        sweep_interval: args.sweep_interval,
        hand_over: program.is_none(),
        ship: shipper.as_ref().map(|s| s.handle()).or(not_shipping),
        metrics: metrics_listener.as_ref().map(|_| Arc::default()),
        alerts: Some(alerts.handle()),
        absent,
        refused,
        xdp_mode: args.xdp_mode,
        // The lost starts the count of flows lost unseen starts from: the last agent's
        // reading of an adopted program; 0 for one this start loaded (an upgrade's new
        // program under a flood loses starts while the old maps are written out, before the
        // first sweep: a re-test saw 36,525 flows so, in no count).
        lost_starts_before: if adopted {
            previous.counters.get("lost_flow_start").copied()
        } else {
            Some(0)
        },
        ..Settings::new(args.state_dir.clone(), interfaces)
    };
    let exporter = settings.metrics.clone().map(|latest| {
        let fixed = crate::metrics::render::Static {
            attach: modes,
            top_rules: args.metrics.metrics_top_rules,
        };
        Arc::new(crate::metrics::Exporter::new(latest, fixed))
    });
    // ---- Attach is done: pinned or not, nothing after this point attaches, pins or mounts
    // (a pinned agent leaves its program in place at the stop; an unpinned one closes its
    // links, which needs no capability). The stages work through descriptors they hold:
    // keep only what they need (NAT attribution keeps CAP_NET_ADMIN while the conntrack
    // listener runs). ----
    privilege::drop_after_attach(Needs {
        conntrack: enrichment.follows_conntrack(),
    })?;
    // Before the daemon: a start that fails once it runs must still go through its finish.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (mut daemon, control) =
        Daemon::start(settings, maps, lists, Box::new(stage), Arc::new(HostClocks))?;
    // What the last agent left is taken over only by a start that got this far: a start
    // that fails hands it all on (its starting snapshot), and sending it earlier would
    // have each failed start of a loop resolve, raise and alert it again. The carry goes
    // first, so a condition still holding counts on its carried alert.
    let handle = alerts.handle();
    // The last checkpoint of the active alerts with the alert log's notices since (an agent
    // killed before its next checkpoint or snapshot), else the last snapshot's list.
    let carried = crate::alert::handover::carried(&args.state_dir, &log_dir, previous.alerts);
    handle.carry(
        carried,
        Some(args.state_dir.join(crate::alert::handover::FILE)),
    );
    if previous.lost_at_stop > 0 {
        let records = previous.lost_at_stop;
        handle.event(crate::alert::Event::LostAtStop { records });
    }
    if let Some(evidence) = crashed {
        handle.event(crate::alert::Event::Crashed { evidence });
    }
    if let Some(event) = journal_lost {
        handle.event(event);
    }
    if let Some(entry) = signing_began_on {
        let file = log_dir.join(crate::store::manifest::MANIFEST);
        let file = file.display().to_string();
        handle.event(crate::alert::Event::SigningBegan { file, entry });
    }
    // After the carry: a broken chain found first would be raised anew beside the carried
    // alert of it. A thread that cannot start is said, and recording goes on without it.
    let interval = args.alerts.alert_verify_interval;
    if let Err(e) =
        alerts.verify_store(log_dir.clone(), verify_key, interval, Some(&args.state_dir))
    {
        tracing::error!(error = %e, "cannot start the store verification thread: the chain is not checked while this agent runs");
    }
    starting.handed_over();
    let ran = rt.block_on(async {
        // From here a stop signal (also one sent while starting) stops the daemon cleanly.
        let signals = match held.listen() {
            Ok(s) => tokio::spawn(s.forward(control)),
            Err(e) => return Err(DaemonError::Signals(e)),
        };
        // Audit goes on without the endpoint rather than stop over it (said loudly).
        let metrics = match (metrics_listener, exporter) {
            (Some(l), Some(e)) => crate::metrics::http::spawn(l, e)
                .map_err(|e| tracing::error!("{e}; running without metrics"))
                .ok(),
            _ => None,
        };
        let ran = daemon.run().await;
        signals.abort();
        if let Some(m) = metrics {
            // Awaited, so the listener is closed now: a scrape during the stop's flush and
            // seal is refused, not left hanging until its timeout.
            m.abort();
            let _ = m.await;
        }
        ran
    });
    // Unpinned: stop the program first, so the counters are final and no flow changes under
    // the flush. Pinned: it stays, blocking and counting, for the next agent. Then write
    // what is left (also when the reader failed) and seal the journal.
    match program.as_mut() {
        Some(p) => p.detach_all(),
        // Said as the start warned: "stays attached" would leave the operator believing the
        // gateway is still audited.
        None if pin::pins_end_with_process() => warn!(
            instance = args.pins.instance,
            "the program goes as this agent exits: its pins are in the bpffs it mounted in a \
             mount namespace of its own, which ends with it; the interfaces are not audited \
             until the next start (open flows have their interim records)"
        ),
        None => info!(
            instance = args.pins.instance,
            "the program stays attached (pinned); `xdp-audit detach` removes it"
        ),
    }
    let finished = daemon.finish();
    // A stop on an error (an interface to attach again, the ring unreadable) is said in the
    // last snapshot, which `status` shows: "stopped cleanly" would hide why it stopped.
    if let (Err(e), Ok(_)) = (&ran, &finished) {
        if let Err(w) = crate::status::Snapshot::note_stop_error(&args.state_dir, &e.to_string()) {
            tracing::warn!(error = %w, "cannot note the stop's error in the status snapshot");
        }
    }
    // After the last seal: what it sealed is shipped at the next start if not now.
    drop(shipper);
    drop(enrichment);
    alerts.stop();
    ran?;
    finished?;
    Ok(ExitCode::SUCCESS)
}

/// The sink behind the alert stage: the store, or the syslog stage in front of it.
enum Tail {
    Store(crate::store::Store),
    Syslog(SyslogStage<crate::store::Store>),
}

impl Tail {
    /// [`RecordSink::kept_by_pins`] of the store.
    fn kept_by_pins(&mut self, kept: bool) {
        match self {
            Self::Store(s) => s.kept_by_pins(kept),
            Self::Syslog(s) => s.kept_by_pins(kept),
        }
    }
}

/// Starts the alert thread with its deliveries: the log, `alerts.jsonl` in the store, and
/// the webhook if one is configured.
fn start_alerts(
    args: &RunArgs,
    log_dir: &std::path::Path,
    syslog: Option<crate::syslog::Handle>,
) -> anyhow::Result<Alerts> {
    let a: &crate::alert::AlertConfig = &args.alerts;
    let mut deliveries: Vec<Box<dyn Delivery>> = vec![
        Box::new(LogDelivery::default()),
        Box::new(ChainDelivery::new(log_dir.to_owned())),
    ];
    if let Some(url) = &a.alert_webhook {
        let hook = Webhook::start(
            url,
            a.alert_webhook_queue as usize,
            a.alert_webhook_attempts,
        )?;
        deliveries.push(Box::new(hook));
    }
    if let Some(handle) = syslog {
        deliveries.push(Box::new(crate::alert::syslog::SyslogDelivery::new(handle)));
    }
    Alerts::start(a, args.flow_table_size, deliveries).context("cannot start the alert thread")
}

/// The enrich stage's delays from the record timing: a NAT session's record waits until a
/// flow through it has certainly had its record written (inactive timeout, close linger,
/// two sweeps).
fn stage_config(args: &RunArgs) -> StageConfig {
    let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    let wait = args.inactive_timeout + args.close_linger + args.sweep_interval * 2;
    // A flow's next record comes at most an active timeout after its last (and a sweep):
    // its state (the first record's attribution, a carried flow's) must outlive that gap.
    let slice = args.active_timeout + args.inactive_timeout + args.sweep_interval * 2;
    let default = StageConfig::default();
    StageConfig {
        nat_record_delay_ns: ns(wait),
        flow_state_idle_ns: default.flow_state_idle_ns.max(ns(slice)),
        ..default
    }
}

/// The loss of records the last agent made durable in its live journal `j` on this store,
/// said here and returned as the alert's event: the journal is `gone` (neither on disk nor
/// sealed), or the open's recovery found it holding fewer records than that (cut at a
/// frame's end, which no frame check sees, or damaged at its end).
fn journal_lost(
    store: &Store,
    log_dir: &Path,
    j: &crate::store::LiveJournal,
    gone: bool,
) -> Option<crate::alert::Event> {
    let file = log_dir.join(crate::store::seal::journal_name(j.id));
    let file = file.display().to_string();
    let durable = j.durable;
    if gone {
        warn!(file, records = durable, "the last agent's live journal is gone and no segment holds it: deleted while no agent ran; its records are lost");
        return Some(crate::alert::Event::JournalGone {
            file,
            records: durable,
        });
    }
    let held = store.recovered_records(j.id).filter(|&n| n < durable)?;
    warn!(file, durable, held, "the last agent's live journal holds fewer records than it made durable there: cut short while no agent ran; the rest are lost");
    Some(crate::alert::Event::JournalShort {
        file,
        durable,
        held,
    })
}

/// Whether `a` and `b` name the same directory (made absolute, as text, as the status
/// names it).
fn same_dir(a: &Path, b: &Path) -> bool {
    let abs = |p: &Path| {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        p.to_string_lossy().into_owned()
    };
    abs(a) == abs(b)
}

#[cfg(test)]
mod tests {
    use super::{parse_blocklist, same_dir, stage_config, RunArgs};

    use clap::{Args as _, FromArgMatches as _};

    /// The last agent's live journal is looked for only in its own store: a relative and an
    /// absolute name of one directory are the same store, another directory is not.
    #[test]
    fn a_store_is_the_same_by_its_absolute_name() {
        let here = std::env::current_dir().expect("cwd");
        let p = std::path::Path::new;
        assert!(same_dir(p("log"), &here.join("log")));
        assert!(same_dir(p("./log"), &here.join("log")));
        assert!(!same_dir(p("log"), &here.join("other")));
    }

    fn run_args(argv: &[&str]) -> RunArgs {
        let cmd = RunArgs::augment_args(clap::Command::new("run")).no_binary_name(true);
        let m = cmd.try_get_matches_from(argv).expect("run flags parse");
        RunArgs::from_arg_matches(&m).expect("run flags")
    }

    /// A flow's state outlives the gap between two of its records: with an active timeout of
    /// an hour, its later slices keep its first record's attribution.
    #[test]
    fn a_flows_state_outlives_the_active_timeout() {
        let s = 1_000_000_000i64;
        let default = stage_config(&run_args(&["--iface", "lan0"]));
        assert_eq!(default.flow_state_idle_ns, 900 * s);
        let hour = stage_config(&run_args(&["--iface", "lan0", "--active-timeout", "1h"]));
        assert!(hour.flow_state_idle_ns > 3600 * s, "{hour:?}");
    }

    #[test]
    fn a_blocklist_takes_refuse_after_a_colon_and_nothing_else_that_looks_like_an_option() {
        assert_eq!(
            parse_blocklist("/etc/xdp-audit/ads.list:refuse"),
            Ok(("/etc/xdp-audit/ads.list".into(), true))
        );
        assert_eq!(
            parse_blocklist("/etc/xdp-audit/ads.list"),
            Ok(("/etc/xdp-audit/ads.list".into(), false))
        );
        let err = parse_blocklist("/etc/xdp-audit/ads.list:refuze").expect_err("a typo");
        assert!(err.contains("\"refuze\" is not known"), "{err}");
        // A colon that is part of the name (not a lower-case word) stays in the path.
        assert_eq!(
            parse_blocklist("/lists/v2:2026.list"),
            Ok(("/lists/v2:2026.list".into(), false))
        );
        assert!(parse_blocklist(":refuse").is_err());
    }
}
