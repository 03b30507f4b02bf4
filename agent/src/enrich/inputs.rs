//! The enrich stage's sources that run beside it: the subscribers and lease files, read at
//! start and re-read when they change (on a thread of their own), and the conntrack listener
//! (on its own thread, filling the shared [`NatTable`]). The stage takes what they publish
//! through [`Inputs`] on each tick, so nothing it does per record waits on a file or socket.
//!
//! Files behave like the list files: watched by directory ([`ListWatcher`]), re-read on
//! SIGHUP, every bad line logged as `FILE:LINE: reason`, a subscribers file with a bad line
//! not applied (its last good version stays). Lease files are also re-read when their size or
//! modification time changes: dnsmasq and Kea write them in place without closing them, which
//! inotify's close and rename events do not see.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::dhcp::DhcpLearner;
use super::leases::file::{LeaseFile, LeaseProblem, Stamp};
use super::leases::{Lease, LeaseFormat};
use super::nat::{
    ConntrackListener, ListenerConfig, ListenerCounters, NatError, NatTable, TableConfig,
};
use super::stage::status::NatStatus;
use super::stage::SharedNat;
use super::subscribers::set::SubscriberSet;
use super::subscribers::SubscriberTable;
use crate::blocklist::watch::{self, ListWatcher, DEFAULT_DEBOUNCE};
use crate::blocklist::{warn_diagnostics, DIAGNOSTICS_SHOWN};

/// How often lease files are checked for an in-place rewrite.
const LEASE_POLL: Duration = Duration::from_secs(2);

/// The newest subscribers table, with a version that grows at each publication.
#[derive(Default)]
pub struct SubscriberSlot(Mutex<(u64, Arc<SubscriberTable>)>);

impl SubscriberSlot {
    /// Publishes a new table.
    pub fn publish(&self, table: Arc<SubscriberTable>) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *g = (g.0 + 1, table);
    }

    /// The table and its version, if newer than `version` (`u64::MAX`: any).
    pub fn newer_than(&self, version: u64) -> Option<(u64, Arc<SubscriberTable>)> {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (version == u64::MAX || g.0 > version).then(|| (g.0, Arc::clone(&g.1)))
    }
}

/// One lease file read, for [`super::leases::bindings::Bindings::apply_read`].
#[derive(Debug)]
pub struct LeaseUpdate {
    /// The file's index among the configured lease files.
    pub file: u32,
    /// Its leases.
    pub leases: Vec<Lease>,
    /// The format it was read in, which says whether a lease missing from it has ended;
    /// `None` for an empty file whose format was not named.
    pub format: Option<LeaseFormat>,
    /// Lines skipped (logged).
    pub skipped: u32,
}

/// The attribution files (subscribers, DHCP leases) whose last read was refused, each with
/// its first problem: the status lists them and `XA-LIST-REJECTED` holds for each while it
/// stays so (a bad file was only logged, while every record lost its user).
#[derive(Default)]
pub struct Rejected(Mutex<BTreeMap<PathBuf, String>>);

impl Rejected {
    /// Notes `path`'s last read: refused for `problem`, or (`None`) taken. Returns whether
    /// that differs from its last read's (a refusal to warn of, not one a poll repeats).
    pub fn note(&self, path: &Path, problem: Option<String>) -> bool {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let last = match problem {
            Some(p) => {
                let same = g.get(path) == Some(&p);
                (!same).then(|| g.insert(path.to_owned(), p))
            }
            None => Some(g.remove(path)),
        };
        last.is_some()
    }

    /// The refused files and their problems.
    pub fn list(&self) -> Vec<(String, String)> {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (g.iter())
            .map(|(f, p)| (f.display().to_string(), p.clone()))
            .collect()
    }
}

/// What the stage reads from the sources' threads.
#[derive(Default)]
pub struct Inputs {
    /// The subscribers table.
    pub subscribers: Arc<SubscriberSlot>,
    /// The attribution files refused at their last read.
    pub rejected: Arc<Rejected>,
    leases: Option<Receiver<LeaseUpdate>>,
    /// The NAT table, when conntrack is followed.
    pub nat: Option<SharedNat>,
    nat_counters: Option<Arc<ListenerCounters>>,
    dhcp_servers: Option<Vec<IpAddr>>,
}

impl Inputs {
    /// Sources with a fixed subscribers table, NAT table and lease channel (tests, benches).
    pub fn fixed(
        subscribers: Arc<SubscriberTable>,
        nat: Option<SharedNat>,
        leases: Option<Receiver<LeaseUpdate>>,
    ) -> Self {
        let slot = SubscriberSlot::default();
        slot.publish(subscribers);
        Self {
            subscribers: Arc::new(slot),
            leases,
            nat,
            ..Self::default()
        }
    }

    /// A DHCP learner that trusts the configured servers (see [`dhcp_trust`]).
    pub(super) fn dhcp_learner(&self) -> DhcpLearner {
        match &self.dhcp_servers {
            Some(s) => DhcpLearner::trusting(s.clone()),
            None => DhcpLearner::new(),
        }
    }

    /// The next lease file read waiting, if any.
    pub(super) fn next_lease_read(&mut self) -> Option<LeaseUpdate> {
        self.leases.as_ref()?.try_recv().ok()
    }

    /// Fills the conntrack part of the status.
    pub(super) fn nat_status(&self, s: &mut NatStatus) {
        if let Some(c) = &self.nat_counters {
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            s.listening = true;
            s.new_events = get(&c.new_events);
            s.destroy_events = get(&c.destroy_events);
            s.enobufs = get(&c.enobufs);
            s.rereads = get(&c.dumps);
            s.reread_failures = get(&c.dump_failures);
            s.parse_errors = get(&c.parse_errors);
            s.foreign = get(&c.foreign);
            s.rcvbuf_bytes = get(&c.rcvbuf_granted);
        }
        if let Some(nat) = &self.nat {
            let t = nat.lock().unwrap_or_else(|p| p.into_inner());
            let stats = t.stats();
            s.recovered = stats.recovered;
            s.read_late = stats.dump_before_new;
            s.lost_unwritten = stats.evicted_unwritten;
            s.refused_full = stats.refused_full;
            s.open_sessions = t.open_len() as u64;
            s.sessions = t.len() as u64;
        }
    }
}

/// Whether to follow conntrack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NatMode {
    /// Follow it; the agent does not start without it.
    On,
    /// Do not.
    Off,
    /// Follow it if the kernel lets us (nf_conntrack_netlink loaded, CAP_NET_ADMIN); say so
    /// and go on without otherwise.
    #[default]
    Auto,
}

/// What to start.
#[derive(Clone, Debug, Default)]
pub struct EnrichOptions {
    /// Subscribers files, in precedence order.
    pub subscribers: Vec<PathBuf>,
    /// Lease files.
    pub leases: Vec<LeaseFile>,
    /// DHCP servers whose replies are trusted (any when empty).
    pub dhcp_servers: Vec<IpAddr>,
    /// Conntrack.
    pub nat: NatMode,
    /// The conntrack listener's settings.
    pub listener: ListenerConfig,
    /// The agent's state directory: the subscribers files' rows in force are kept there
    /// ([`crate::enrich::subscribers::set::SUBSCRIBERS_SEEN`]).
    pub state_dir: Option<PathBuf>,
}

/// Why the sources could not start.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// `--nat on` and the listener could not start.
    #[error("--nat on: {0}")]
    Nat(#[from] NatError),
    /// The file thread could not start.
    #[error("cannot start the attribution file thread: {0}")]
    Thread(std::io::Error),
}

/// The running sources; dropping it stops their threads.
pub struct Enrichment {
    stop: Option<oneshot::Sender<()>>,
    files: Option<JoinHandle<()>>,
    _listener: Option<ConntrackListener>,
}

impl Drop for Enrichment {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.files.take() {
            if t.join().is_err() {
                error!("the attribution file thread panicked");
            }
        }
    }
}

impl Enrichment {
    /// Whether the conntrack listener runs (it needs CAP_NET_ADMIN for as long as it does).
    pub fn follows_conntrack(&self) -> bool {
        self._listener.is_some()
    }

    /// Reads the files once (so the first records are attributed), then starts the file
    /// thread and, as `opts.nat` says, the conntrack listener.
    pub fn start(opts: EnrichOptions) -> Result<(Enrichment, Inputs), EnrichError> {
        let slot = Arc::new(SubscriberSlot::default());
        let rejected = Arc::new(Rejected::default());
        let mut subs = SubscriberSet::new(opts.subscribers.clone());
        if let Some(dir) = &opts.state_dir {
            subs = subs.remembering(dir);
        }
        reload_subscribers(&mut subs, &slot, &rejected, &opts.subscribers, true);
        let (tx, rx) = mpsc::channel();
        let mut stamps: Vec<Option<Stamp>> = vec![None; opts.leases.len()];
        for (i, f) in opts.leases.iter().enumerate() {
            read_lease(i, f, &tx, &rejected, &mut stamps[i], true);
        }
        let (nat, counters, listener) = start_nat(&opts)?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let files = if opts.subscribers.is_empty() && opts.leases.is_empty() {
            None
        } else {
            let (s, r, l) = (slot.clone(), rejected.clone(), opts.leases.clone());
            let spawned = std::thread::Builder::new()
                .name("xdp-audit-attr-files".into())
                .spawn(move || files_thread(subs, s, r, l, tx, stamps, stop_rx))
                .map_err(EnrichError::Thread)?;
            Some(spawned)
        };
        let inputs = Inputs {
            subscribers: slot,
            rejected,
            leases: Some(rx),
            nat,
            nat_counters: counters,
            dhcp_servers: dhcp_trust(&opts.dhcp_servers, !opts.leases.is_empty()),
        };
        let running = Enrichment {
            stop: Some(stop_tx),
            files,
            _listener: listener,
        };
        Ok((running, inputs))
    }
}

type NatParts = (
    Option<SharedNat>,
    Option<Arc<ListenerCounters>>,
    Option<ConntrackListener>,
);

fn start_nat(opts: &EnrichOptions) -> Result<NatParts, EnrichError> {
    if opts.nat == NatMode::Off {
        return Ok((None, None, None));
    }
    let table: SharedNat = Arc::new(Mutex::new(NatTable::new(TableConfig::default())));
    let t = table.clone();
    let sink = move |u| {
        t.lock().unwrap_or_else(|p| p.into_inner()).apply(u);
        true
    };
    match ConntrackListener::spawn(opts.listener.clone(), sink) {
        Ok(l) => {
            info!(
                rcvbuf_bytes = l.counters().rcvbuf_granted.load(Ordering::Relaxed),
                "following conntrack: NAT outside addresses and ports go on the records"
            );
            Ok((Some(table), Some(l.counters()), Some(l)))
        }
        Err(e) if opts.nat == NatMode::Auto => {
            warn!(error = %e, "--nat auto: not following conntrack, records carry no NAT outside tuple (use --nat off to silence this, --nat on to require it)");
            Ok((None, None, None))
        }
        Err(e) => Err(e.into()),
    }
}

/// Re-reads the subscribers files among `paths`; logs every problem, publishes a changed
/// table.
fn reload_subscribers(
    set: &mut SubscriberSet,
    slot: &SubscriberSlot,
    rejected: &Rejected,
    paths: &[PathBuf],
    first: bool,
) {
    let r = set.reload(paths);
    warn_diagnostics(&r.diagnostics, DIAGNOSTICS_SHOWN);
    for p in set.paths().filter(|p| paths.iter().any(|q| q == p)) {
        let first_problem = r.diagnostics.iter().find(|d| d.path == p);
        rejected.note(p, first_problem.map(|d| format!("subscribers file {d}")));
    }
    if r.changed || first {
        let table = set.table();
        if !paths.is_empty() {
            info!(
                rows = table.rows(),
                subscribers = table.subscribers(),
                "subscribers table in force"
            );
        }
        slot.publish(table);
    }
}

/// Reads lease file `i` unless (`force` false) it looks unchanged; sends what it holds.
fn read_lease(
    i: usize,
    f: &LeaseFile,
    tx: &Sender<LeaseUpdate>,
    rejected: &Rejected,
    last: &mut Option<Stamp>,
    force: bool,
) {
    let now = Stamp::of(&f.path).ok();
    if !force && now == *last {
        return;
    }
    *last = now;
    match f.read() {
        Ok(read) => {
            rejected.note(&f.path, None);
            warn_diagnostics(&read.skipped, DIAGNOSTICS_SHOWN);
            let update = LeaseUpdate {
                file: u32::try_from(i).unwrap_or(u32::MAX),
                skipped: u32::try_from(read.skipped.len()).unwrap_or(u32::MAX),
                leases: read.leases,
                format: read.format,
            };
            // The stage gone means the agent is stopping.
            let _ = tx.send(update);
        }
        Err(d) => {
            // Not applied. Refused for what it holds: read again when it changes (a file of
            // another format was read whole and warned about every poll). Not read, or
            // changing while read: the next poll reads it again even if it looks the same.
            if !matches!(d.error, LeaseProblem::File(_)) {
                *last = None;
            }
            // Once per problem: a file that stays unreadable is read again every poll (2 s).
            if rejected.note(&f.path, Some(format!("DHCP lease file {d}"))) {
                warn!("{d}");
            }
        }
    }
}

fn files_thread(
    mut subs: SubscriberSet,
    slot: Arc<SubscriberSlot>,
    rejected: Arc<Rejected>,
    leases: Vec<LeaseFile>,
    tx: Sender<LeaseUpdate>,
    mut stamps: Vec<Option<Stamp>>,
    mut stop: oneshot::Receiver<()>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "attribution files: cannot start a runtime; files will not be re-read");
            return;
        }
    };
    let sub_paths: Vec<PathBuf> = subs.paths().map(|p| p.to_owned()).collect();
    let watched: Vec<PathBuf> = sub_paths
        .iter()
        .cloned()
        .chain(leases.iter().map(|f| f.path.clone()))
        .collect();
    rt.block_on(async {
        let mut watcher = match ListWatcher::new(&watched, DEFAULT_DEBOUNCE) {
            Ok(w) => Some(w),
            Err(e) => {
                error!(error = %e, "attribution files: not watched (re-read on SIGHUP only)");
                None
            }
        };
        let mut hup = watch::sighup().ok();
        let mut poll = tokio::time::interval(LEASE_POLL);
        loop {
            let changed = async {
                match watcher.as_mut() {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            };
            let hupped = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stop => break,
                c = changed => match c {
                    Ok(paths) => {
                        reload_subscribers(&mut subs, &slot, &rejected, &paths, false);
                        for (i, f) in leases.iter().enumerate() {
                            if paths.contains(&f.path) {
                                read_lease(i, f, &tx, &rejected, &mut stamps[i], true);
                            }
                        }
                    }
                    Err(e) => {
                        error!(error = %e, "attribution files: watch failed (re-read on SIGHUP only)");
                        watcher = None;
                    }
                },
                _ = hupped => {
                    info!("SIGHUP: re-reading subscribers and lease files");
                    reload_subscribers(&mut subs, &slot, &rejected, &sub_paths, false);
                    for (i, f) in leases.iter().enumerate() {
                        read_lease(i, f, &tx, &rejected, &mut stamps[i], true);
                    }
                }
                _ = poll.tick() => {
                    for (i, f) in leases.iter().enumerate() {
                        read_lease(i, f, &tx, &rejected, &mut stamps[i], false);
                    }
                }
            }
        }
    });
}

/// Whose DHCP replies seen on an audited interface are believed: the `--dhcp-server`s given;
/// with none given, no one's when lease files are (the gateway is the server: XDP never
/// sees the replies it sends, so one seen there is another host's, and any LAN host can send
/// an ACK binding its own address to a victim's MAC and host name); else anyone's (`None`).
fn dhcp_trust(servers: &[IpAddr], lease_files: bool) -> Option<Vec<IpAddr>> {
    if !servers.is_empty() {
        Some(servers.to_vec())
    } else if lease_files {
        Some(Vec::new())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::tests::TempDir;

    /// With lease files and no `--dhcp-server`, no snooped reply is believed (a forged ACK
    /// from a LAN host bound its own address to a victim's MAC and host name): see
    /// `dhcp::tests::a_learner_trusting_no_one_believes_no_reply`.
    #[test]
    fn with_lease_files_a_snooped_reply_needs_a_named_server() {
        let server: IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(dhcp_trust(&[], false), None, "no lease files: anyone");
        assert_eq!(
            dhcp_trust(&[], true),
            Some(Vec::new()),
            "lease files: no one"
        );
        assert_eq!(dhcp_trust(&[server], true), Some(vec![server]));
    }

    /// What `f` logs through `tracing`, as text.
    fn logged(f: impl FnOnce()) -> String {
        crate::testlog::logged(f).1
    }

    /// A reload's log lines: at most [`DIAGNOSTICS_SHOWN`] problems and a count of the rest,
    /// none of them a whole megabyte field.
    #[track_caller]
    fn assert_capped(log: &str, first_line: &str, more: usize) {
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(
            lines.len(),
            DIAGNOSTICS_SHOWN + 1,
            "{}",
            &log[..log.len().min(4000)]
        );
        assert!(
            lines[0].contains(first_line) && lines[0].contains("bytes left out"),
            "the long field is clipped: {}",
            &lines[0][..lines[0].len().min(2000)]
        );
        assert!(
            lines.iter().all(|l| l.len() < 1000),
            "a line is not clipped"
        );
        let last = lines[DIAGNOSTICS_SHOWN];
        assert!(
            last.contains(&format!("... and {more} more problems")),
            "{last}"
        );
    }

    /// 10,000 bad rows and a 1 MB field used to log 10,001 warnings at every reload, one of
    /// them a megabyte long.
    #[test]
    fn subscribers_problems_are_capped_and_clipped() {
        let dir = TempDir::new("inputs-subs");
        let path = dir.0.join("subs.csv");
        let mut text = format!("match,account\n{},a\n", "x".repeat(1 << 20));
        for i in 0..10_000 {
            text.push_str(&format!("bad-{i},b\n"));
        }
        std::fs::write(&path, text).expect("write");
        let mut set = SubscriberSet::new([path.clone()]);
        let slot = SubscriberSlot::default();
        let rejected = Rejected::default();
        let one = std::slice::from_ref(&path);
        let log = logged(|| reload_subscribers(&mut set, &slot, &rejected, one, false));
        assert_capped(
            &log,
            &format!("{}:2: ", path.display()),
            10_001 - DIAGNOSTICS_SHOWN,
        );
        // Refused, and listed so with its first problem; taken once mended, and unlisted.
        let listed = rejected.list();
        assert_eq!(listed.len(), 1, "{listed:?}");
        let (file, problem) = &listed[0];
        assert_eq!(file, &path.display().to_string());
        let first = format!("subscribers file {}:2: ", path.display());
        assert!(problem.starts_with(&first), "{problem}");
        std::fs::write(
            &path,
            "match,account
10.0.0.1,a
",
        )
        .expect("mend");
        reload_subscribers(&mut set, &slot, &rejected, one, false);
        assert_eq!(rejected.list(), [], "taken");
    }

    #[test]
    fn lease_problems_are_capped_and_clipped() {
        let dir = TempDir::new("inputs-leases");
        let path = dir.0.join("dnsmasq.leases");
        let mut text = format!(
            "100 aa:bb:cc:dd:ee:01 10.0.0.1 h *\n100 aa:bb:cc:dd:ee:01 {} h *\n",
            "9".repeat(1 << 20)
        );
        for _ in 0..10_000 {
            text.push_str("100 aa:bb:cc:dd:ee:01 10.0.0.x h *\n");
        }
        std::fs::write(&path, text).expect("write");
        let file = LeaseFile {
            path: path.clone(),
            format: None,
        };
        let (tx, rx) = mpsc::channel();
        let rejected = Rejected::default();
        let log = logged(|| read_lease(0, &file, &tx, &rejected, &mut None, true));
        assert_capped(
            &log,
            &format!("{}:2: ", path.display()),
            10_001 - DIAGNOSTICS_SHOWN,
        );
        let update = rx.try_recv().expect("the good lease is sent");
        assert_eq!((update.leases.len(), update.skipped), (1, 10_001));
    }

    /// A lease file that stays unreadable is read again every poll: warned of once per
    /// problem, not every 2 s (its `XA-LIST-REJECTED` holds meanwhile); a new problem, or one
    /// after it was read, is warned of again.
    #[test]
    fn an_unreadable_lease_file_is_warned_of_once_per_problem() {
        let dir = TempDir::new("inputs-leases-unreadable");
        let path = dir.0.join("dnsmasq.leases");
        std::fs::create_dir(&path).expect("a directory in the file's place");
        let file = LeaseFile {
            path: path.clone(),
            format: None,
        };
        let (tx, _rx) = mpsc::channel();
        let rejected = Rejected::default();
        let mut last = None;
        let mut poll = || logged(|| read_lease(0, &file, &tx, &rejected, &mut last, false));
        assert!(poll().contains("cannot read"), "the first read warns");
        for _ in 0..3 {
            assert_eq!(poll(), "", "the same problem again");
        }
        assert_eq!(rejected.list().len(), 1, "still refused");
        std::fs::remove_dir(&path).expect("remove");
        std::fs::write(&path, "100 aa:bb:cc:dd:ee:01 10.0.0.1 h *\n").expect("write");
        poll();
        assert_eq!(rejected.list(), [], "taken");
        std::fs::remove_file(&path).expect("remove");
        std::fs::create_dir(&path).expect("a directory again");
        assert!(
            poll().contains("cannot read"),
            "refused again after a read: warned"
        );
    }
}
