//! What the stage carries across a restart: the DNS answers it holds, the DHCP bindings it
//! learned, and each open flow's first attribution and name.
//!
//! A pinned program goes on while no agent runs (a crash, an upgrade, `systemctl restart`),
//! and so do its flows and its clients' use of the answers they resolved before. Without
//! this, the next agent would record those flows with no domain (a DNS answer is seen once
//! per TTL, a TLS name once per connection), and a client whose DHCP server is elsewhere
//! with no host name until its next renewal.
//!
//! Saved to `STATE_DIR/`[`FILE`] (with the store's permissions: it holds who resolved what)
//! every `--state-save-interval` when something changed (the stage copies its tables, a
//! thread of its own encodes and writes them) and at a clean stop;
//! read back at start. Each save is written whole and renamed over the last, so a crash leaves
//! the one before. A file that does not read is set aside as `FILE.bad` and the agent starts
//! without it, saying so.
//!
//! A carried flow is taken up only by a record of the same key that starts no later than the
//! save (a flow that went on: its next slice starts where the last one ended); a record that
//! starts later is a new flow on the same addresses and ports, and is joined afresh.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use agent_common::FlowKey;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{DnsTcpSide, EnrichStage, FlowState, PayloadState};
use crate::enrich::leases::bindings::{Holder, Observation, Source};
use crate::enrich::leases::clean_hostname;
use crate::enrich::names::dns::Question;
use crate::enrich::names::{DomainName, FlowName, NameSource};
use crate::enrich::subscribers::parse::is_account;
use crate::enrich::Validity;
use crate::record::{Attribution, Mac};
use crate::store::fsutil;

/// The file in the state directory.
pub const FILE: &str = "enrich.json";
/// The version of its JSON; another is not read.
const FORMAT: u32 = 1;
/// Largest file read back (a full stage: 200,000 answer pairs, 262,144 flows and a million
/// bindings take some 300 MB).
const MAX_BYTES: u64 = 1 << 30;

/// Counters of the carry-over, for `status`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CarryStatus {
    /// DNS answer bindings taken back at start (those the cache holds: a smaller one than the
    /// last agent's keeps only the most recent).
    pub restored_names: u64,
    /// DHCP bindings taken back at start (those the table holds).
    pub restored_bindings: u64,
    /// Open flows' attributions taken back at start.
    pub restored_flows: u64,
    /// Of those, taken up by a record of the flow going on.
    pub continued_flows: u64,
    /// Saves written.
    pub saves: u64,
    /// Saves that failed (each said in the log).
    pub save_failures: u64,
}

/// The file's content.
#[derive(Serialize, Deserialize)]
struct Carried {
    format: u32,
    /// Unix ns of the save: a carried flow is taken up only by a record starting no later.
    written_ns: i64,
    /// The kernel's boot id: flows are carried only within one boot (pins do not outlive it,
    /// and a clock without a battery may start before the save again).
    #[serde(default)]
    boot: String,
    /// DNS answers: (client, address, name, from, to).
    names: Vec<(IpAddr, IpAddr, Arc<str>, i64, i64)>,
    bindings: Vec<CarriedSpan>,
    flows: Vec<CarriedFlow>,
    /// NAT sessions a flow record joined and not yet closed and handed out: (conntrack id,
    /// protocol, inside address and port, remote address and port). Taken back within one
    /// boot only (conntrack ids are the kernel's).
    #[serde(default)]
    nat_joined: Vec<(u32, u8, IpAddr, u16, IpAddr, u16)>,
    /// Translated sessions no flow record had joined: a kill leaves flows unwritten whose
    /// sessions conntrack may forget before the next agent's start dump. Within one boot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    nat_unjoined: Vec<crate::enrich::nat::SavedSession>,
    /// The lease files by the index a binding's `file` gives (none: the indexes stand as
    /// they are, as an older agent saved them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    lease_files: Vec<String>,
}

/// A DHCP binding ([`crate::enrich::leases::bindings::Span`]).
#[derive(Serialize, Deserialize)]
struct CarriedSpan {
    ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<Mac6>,
    /// The client id or DUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<Arc<[u8]>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<Arc<str>>,
    from: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<i64>,
    /// The lease file's index in `Carried::lease_files`, `None` for a DHCP packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<u32>,
}

type Mac6 = [u8; 6];

/// A source's name: borrowed when saved, owned when read back.
type Text = std::borrow::Cow<'static, str>;

/// A flow's key: interface, VLANs, protocol, family, ports and address words as the flow
/// table holds them (the file never leaves the host).
type CarriedKey = (u32, u16, u16, u8, u8, u16, u16, [u32; 4], [u32; 4]);

/// An open flow.
#[derive(Serialize, Deserialize)]
struct CarriedFlow {
    key: CarriedKey,
    /// Unix ns of its last payload or record.
    last: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attr: Option<CarriedAttr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<CarriedName>,
    /// A DNS flow's question: name and type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    question: Option<(Arc<str>, u16)>,
}

/// [`Attribution`], with the domain's source as its text.
#[derive(Serialize, Deserialize)]
struct CarriedAttr {
    user: Option<String>,
    hostname: Option<String>,
    nat_ip: Option<IpAddr>,
    nat_port: Option<u16>,
    domain: Option<String>,
    domain_source: Option<Text>,
    dns_qname: Option<String>,
    dns_qtype: Option<u16>,
}

/// [`FlowName`], sources as their text.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CarriedName {
    Name {
        name: Arc<str>,
        source: Text,
    },
    Ech {
        outer: Option<Arc<str>>,
        carrier: Text,
    },
    NoName,
}

impl CarriedAttr {
    fn of(a: &Attribution) -> Self {
        CarriedAttr {
            user: a.user.clone(),
            hostname: a.hostname.clone(),
            nat_ip: a.nat_ip,
            nat_port: a.nat_port,
            domain: a.domain.clone(),
            domain_source: a.domain_source.map(|s| s.as_str().into()),
            dns_qname: a.dns_qname.clone(),
            dns_qtype: a.dns_qtype,
        }
    }

    /// The attribution, if every text passes the check its source's first read makes (an
    /// account as a subscribers file gives it, a host name as a lease gives it, names as
    /// DNS names).
    fn into_attr(self) -> Option<Attribution> {
        let domain_source = match self.domain_source {
            Some(s) => Some(NameSource::from_str_form(&s)?),
            None => None,
        };
        let name = |text: Option<String>| match text {
            Some(t) => Some(Some(domain(&t)?.as_str().to_owned())),
            None => Some(None),
        };
        if self.user.as_deref().is_some_and(|u| !is_account(u)) {
            return None;
        }
        let hostname = match self.hostname {
            Some(h) => Some(host_name(&h)?.to_string()),
            None => None,
        };
        Some(Attribution {
            user: self.user,
            hostname,
            nat_ip: self.nat_ip,
            nat_port: self.nat_port,
            domain: name(self.domain)?,
            domain_source,
            dns_qname: name(self.dns_qname)?,
            dns_qtype: self.dns_qtype,
        })
    }
}

impl CarriedName {
    fn of(n: &FlowName) -> Self {
        match n {
            FlowName::Name { name, source } => CarriedName::Name {
                name: name.shared_text(),
                source: source.as_str().into(),
            },
            FlowName::Ech { outer, carrier } => CarriedName::Ech {
                outer: outer.as_ref().map(DomainName::shared_text),
                carrier: carrier.as_str().into(),
            },
            FlowName::NoName => CarriedName::NoName,
        }
    }

    fn into_name(self) -> Option<FlowName> {
        Some(match self {
            CarriedName::Name { name, source } => FlowName::Name {
                name: domain(&name)?,
                source: NameSource::from_str_form(&source)?,
            },
            CarriedName::Ech { outer, carrier } => FlowName::Ech {
                outer: match outer {
                    Some(o) => Some(domain(&o)?),
                    None => None,
                },
                carrier: NameSource::from_str_form(&carrier)?,
            },
            CarriedName::NoName => FlowName::NoName,
        })
    }
}

impl CarriedFlow {
    /// The flow at `key` with state `s`, if there is anything to carry (an attribution, a
    /// name, a question).
    fn of(key: &FlowKey, s: &FlowState) -> Option<Self> {
        let p = s.payload.as_deref();
        let name = p.and_then(|p| p.name.as_ref()).map(CarriedName::of);
        let question = p
            .and_then(|p| p.question.as_ref())
            .map(|q| (q.name.shared_text(), q.qtype));
        let attr = s.attr.as_ref().map(CarriedAttr::of);
        (attr.is_some() || name.is_some() || question.is_some()).then(|| CarriedFlow {
            key: key_of(key),
            last: s.last_ns,
            attr,
            name,
            question,
        })
    }

    /// The flow's key and state here; `None` if any part does not read back. Its reassembly
    /// is over: a later snippet is mid-stream, never a start.
    fn into_state(self) -> Option<(FlowKey, FlowState)> {
        let attr = match self.attr {
            Some(a) => Some(a.into_attr()?),
            None => None,
        };
        let name = match self.name {
            Some(n) => Some(n.into_name()?),
            None => None,
        };
        let question = match self.question {
            Some((n, qtype)) => Some(Question {
                name: domain(&n)?,
                qtype,
            }),
            None => None,
        };
        let payload = (name.is_some() || question.is_some()).then(|| {
            Box::new(PayloadState {
                names_over: true,
                name,
                question,
                dns_tcp: [DnsTcpSide::Done, DnsTcpSide::Done],
                ..PayloadState::default()
            })
        });
        let state = FlowState {
            payload,
            attr,
            last_ns: self.last,
        };
        Some((flow_key_of(self.key), state))
    }
}

fn domain(text: &str) -> Option<DomainName> {
    DomainName::from_wire(text.as_bytes()).ok()
}

/// A saved host name, if a lease or a DHCP packet could have given it as it is.
fn host_name(text: &str) -> Option<Arc<str>> {
    clean_hostname(text).filter(|h| **h == *text)
}

/// Longest client id taken back: DHCPv4's option 61 holds 255 bytes (a DHCPv6 DUID 130).
const MAX_CLIENT_ID_LEN: usize = 255;

impl CarriedSpan {
    /// The binding, if its host name and client id pass the checks a first read makes and
    /// its lease file is still given (`file` maps the saved index to today's).
    fn into_observation(self, file: impl Fn(u32) -> Option<u32>) -> Option<Observation> {
        let source = match self.file {
            Some(i) => Source::LeaseFile(file(i)?),
            None => Source::Packet,
        };
        let hostname = match self.host {
            Some(h) => Some(host_name(&h)?),
            None => None,
        };
        if self
            .id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > MAX_CLIENT_ID_LEN)
        {
            return None;
        }
        Some(Observation {
            ip: self.ip,
            holder: Holder {
                mac: self.mac.map(Mac),
                client_id: self.id,
            },
            hostname,
            valid: Validity {
                from: Some(self.from),
                to: self.to,
            },
            source,
        })
    }
}

fn key_of(k: &FlowKey) -> CarriedKey {
    (
        k.ifindex,
        k.vlan,
        k.vlan_inner,
        k.proto,
        k.family,
        k.port_a,
        k.port_b,
        k.addr_a,
        k.addr_b,
    )
}

fn flow_key_of(k: CarriedKey) -> FlowKey {
    let (ifindex, vlan, vlan_inner, proto, family, port_a, port_b, addr_a, addr_b) = k;
    FlowKey {
        ifindex,
        vlan,
        vlan_inner,
        proto,
        family,
        _pad: [0; 2],
        port_a,
        port_b,
        addr_a,
        addr_b,
    }
}

/// The flows a last agent carried over, until a record takes each up or they age out.
#[derive(Default)]
pub(super) struct CarriedFlows {
    flows: std::collections::HashMap<FlowKey, FlowState, foldhash::fast::RandomState>,
    /// When the last agent saved them (Unix ns).
    written_ns: i64,
    /// Dropped whole after this (Unix ns): each flow that went on has had a record by then.
    until_ns: i64,
}

impl CarriedFlows {
    pub(super) fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The carried state of `key`'s flow if the record starting at `start_ns` goes on with it
    /// (taken out either way).
    pub(super) fn take(&mut self, key: &FlowKey, start_ns: i64) -> Option<FlowState> {
        let s = self.flows.remove(key)?;
        (start_ns <= self.written_ns).then_some(s)
    }

    /// Forgets every carried flow once they had time to be taken up.
    pub(super) fn expire(&mut self, now_ns: i64) {
        if now_ns > self.until_ns {
            self.flows = std::collections::HashMap::default();
        }
    }
}

/// Saving: the stage's side of the writing thread.
pub(super) struct Saver {
    dir: PathBuf,
    every_ns: i64,
    next_ns: i64,
    /// What had changed at the last save (records, answers, bindings, NAT sessions): the same
    /// means nothing to save.
    last_mark: (u64, u64, u64, u64),
    tx: Option<SyncSender<Carried>>,
    thread: Option<JoinHandle<()>>,
    counts: Arc<Counts>,
    /// Whether the stage carries open flows: only when they go on in a pinned program.
    flows_go_on: bool,
}

#[derive(Default)]
struct Counts {
    saves: AtomicU64,
    failures: AtomicU64,
    /// A copy handed over and not yet written: the next is not made (the copy is the records
    /// thread's cost).
    busy: AtomicBool,
}

impl Counts {
    fn done(&self, dir: &Path, written: std::io::Result<usize>) {
        match written {
            Ok(_) => {
                self.saves.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let n = self.failures.fetch_add(1, Ordering::Relaxed);
                // Said at the first failure and then every 100th: a full disk must not flood
                // the log every interval.
                if n.is_multiple_of(100) {
                    warn!(
                        path = %dir.join(FILE).display(),
                        failures = n + 1,
                        "cannot save the attribution state for the next agent: {e}"
                    );
                }
            }
        }
    }
}

/// The line after the JSON that holds its SHA-256: a flipped bit that leaves the JSON valid
/// (a letter of a user or a domain) would otherwise be taken back and written into records.
const SUM: &[u8] = b"\n# sha256 ";

fn write(dir: &Path, c: &Carried) -> std::io::Result<usize> {
    let mut bytes = serde_json::to_vec(c).map_err(std::io::Error::other)?;
    let seal = fsutil::seal_line(SUM, &bytes);
    bytes.extend_from_slice(&seal);
    fsutil::write_atomic(dir, FILE, &bytes)?;
    Ok(bytes.len())
}

/// The JSON of a saved file, its SHA-256 checked (a file an earlier build wrote has none).
pub(super) fn checked(bytes: &[u8]) -> Result<&[u8], String> {
    fsutil::sealed_body(bytes, SUM).unwrap_or(Ok(bytes))
}

impl EnrichStage {
    /// Takes back what the last agent saved in `dir` (if anything), then saves there every
    /// `every` (see the module documentation); open flows are carried when `flows_go_on` (the
    /// program is pinned: a shutdown record is not the flow's last). Returns the counts taken
    /// back.
    pub fn carry_over(
        &mut self,
        dir: &Path,
        every: std::time::Duration,
        flows_go_on: bool,
    ) -> CarryStatus {
        let now = self.now_ns();
        let path = dir.join(FILE);
        match fsutil::read_input(&path, MAX_BYTES) {
            Ok(bytes) => match checked(&bytes)
                .and_then(|json| serde_json::from_slice::<Carried>(json).map_err(|e| e.to_string()))
            {
                Ok(c) if c.format == FORMAT => self.restore(c, now),
                Ok(c) => set_aside(&path, &format!("format {}, not {FORMAT}", c.format)),
                Err(e) => set_aside(&path, &e),
            },
            Err(fsutil::InputError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => set_aside(&path, &e.to_string()),
        }
        let (tx, rx) = sync_channel::<Carried>(1);
        let counts = Arc::new(Counts::default());
        let thread = {
            let (dir, counts) = (dir.to_owned(), counts.clone());
            std::thread::Builder::new()
                .name("state-save".into())
                .spawn(move || {
                    for c in rx {
                        counts.done(&dir, write(&dir, &c));
                        drop(c);
                        counts.busy.store(false, Ordering::Release);
                    }
                })
        };
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                warn!("cannot start the attribution state saver, saving at the stop only: {e}");
                None
            }
        };
        let every_ns = i64::try_from(every.as_nanos()).unwrap_or(i64::MAX);
        self.saver = Some(Saver {
            dir: dir.to_owned(),
            every_ns,
            next_ns: now.saturating_add(every_ns),
            last_mark: self.change_mark(),
            tx: thread.is_some().then_some(tx),
            thread,
            counts,
            flows_go_on,
        });
        self.status.carry
    }

    /// What changes when there is something new to save (a NAT session too: a kill may
    /// leave its flow unwritten).
    fn change_mark(&self) -> (u64, u64, u64, u64) {
        let nat = self.inputs.nat.as_ref().map_or(0, |nat| {
            nat.lock()
                .unwrap_or_else(|p| p.into_inner())
                .stats()
                .inserted
        });
        (
            self.status.records,
            self.dns.stats().inserted,
            self.bindings.counters().observed + self.bindings.counters().ended,
            nat,
        )
    }

    /// On a tick: hands a copy of the state to the saving thread when due and changed (a
    /// save still being written skips this one).
    pub(super) fn save_if_due(&mut self, now_ns: i64) {
        let Some(s) = self.saver.as_ref() else { return };
        if now_ns < s.next_ns || s.tx.is_none() || s.counts.busy.load(Ordering::Acquire) {
            return;
        }
        let mark = self.change_mark();
        let c = (mark != s.last_mark).then(|| self.carried(now_ns));
        let Some(s) = self.saver.as_mut() else { return };
        s.next_ns = now_ns.saturating_add(s.every_ns);
        let (Some(c), Some(tx)) = (c, &s.tx) else {
            return;
        };
        s.counts.busy.store(true, Ordering::Release);
        match tx.try_send(c) {
            Ok(()) => s.last_mark = mark,
            Err(e) => {
                s.counts.busy.store(false, Ordering::Release);
                if matches!(e, TrySendError::Disconnected(_)) {
                    s.tx = None;
                }
            }
        }
    }

    /// At the stop: the last save, written before this returns.
    pub(super) fn save_at_stop(&mut self, now_ns: i64) {
        let Some(s) = self.saver.as_mut() else {
            return;
        };
        drop(s.tx.take());
        if let Some(t) = s.thread.take() {
            let _ = t.join();
        }
        let c = self.carried(now_ns);
        if let Some(s) = &self.saver {
            s.counts.done(&s.dir, write(&s.dir, &c));
        }
    }

    /// Whether open flows are carried over (see [`EnrichStage::carry_over`]).
    pub(super) fn carries_flows(&self) -> bool {
        self.saver.as_ref().is_some_and(|s| s.flows_go_on)
    }

    /// The counts for `status`.
    pub(super) fn carry_status(&self) -> CarryStatus {
        let mut c = self.status.carry;
        if let Some(s) = &self.saver {
            c.saves = s.counts.saves.load(Ordering::Relaxed);
            c.save_failures = s.counts.failures.load(Ordering::Relaxed);
        }
        c
    }

    /// A copy of what is carried over.
    fn carried(&self, now_ns: i64) -> Carried {
        let names = self
            .dns
            .bindings()
            .filter(|&(.., to)| to > now_ns)
            .map(|(c, a, n, from, to)| (c, a, n.shared_text(), from, to))
            .collect();
        let bindings = self
            .bindings
            .spans()
            .map(|(ip, s)| CarriedSpan {
                ip,
                mac: s.holder.mac.map(|m| m.0),
                id: s.holder.client_id.clone(),
                host: s.hostname.clone(),
                from: s.valid.from.unwrap_or(i64::MIN),
                to: s.valid.to,
                file: match s.source {
                    Source::LeaseFile(i) => Some(i),
                    Source::Packet => None,
                },
            })
            .collect();
        let flows = if self.carries_flows() {
            self.flows
                .iter()
                .filter_map(|(k, s)| CarriedFlow::of(k, s))
                .collect()
        } else {
            Vec::new()
        };
        let (nat_joined, nat_unjoined) =
            self.inputs
                .nat
                .as_ref()
                .map_or_else(Default::default, |nat| {
                    let table = nat.lock().unwrap_or_else(|p| p.into_inner());
                    let joined = (table.joined_sessions())
                        .map(|(id, k)| (id, k.proto, k.src, k.src_port, k.dst, k.dst_port))
                        .collect();
                    (joined, table.unjoined_sessions())
                });
        Carried {
            format: FORMAT,
            written_ns: now_ns,
            boot: boot_id(),
            names,
            bindings,
            flows,
            nat_joined,
            nat_unjoined,
            lease_files: self.lease_files.clone(),
        }
    }

    /// Names the lease files, in the order `--dhcp-leases` gave them: the index a binding
    /// learned from one carries is saved with its path.
    pub fn name_lease_files(&mut self, files: Vec<String>) {
        self.lease_files = files;
    }

    /// Takes `c` back: answers and bindings still of use, flows for their records to take up.
    fn restore(&mut self, c: Carried, now_ns: i64) {
        let mut skipped = 0u64;
        let mut carry = self.status.carry;
        // What the tables hold afterwards, not what was offered: a smaller cache or table
        // than the last agent's keeps only part of it.
        let (names_before, spans_before) =
            (self.dns.bindings().count(), self.bindings.spans().count());
        let mut offered = 0usize;
        for (client, addr, name, from, to) in c.names {
            match domain(&name) {
                Some(n) if to > now_ns => {
                    self.dns.restore(client, addr, &n, (from, to), now_ns);
                    offered += 1;
                }
                Some(_) => {}
                None => skipped += 1,
            }
        }
        // A saved lease file's index, as this agent numbers its files: by path; a file no
        // longer given takes its bindings with it (its reads would never end them).
        let (files, mine) = (c.lease_files, self.lease_files.clone());
        let file = |i: u32| -> Option<u32> {
            if files.is_empty() {
                // An older save: its indexes as they stand, within today's files.
                return ((i as usize) < mine.len()).then_some(i);
            }
            let path = files.get(i as usize)?;
            let now = mine.iter().position(|p| p == path)?;
            u32::try_from(now).ok()
        };
        for b in c.bindings {
            let Some(obs) = b.into_observation(file) else {
                skipped += 1;
                continue;
            };
            offered += 1;
            self.bindings.restore(obs, now_ns);
        }
        let names = self.dns.bindings().count().saturating_sub(names_before);
        let spans = self.bindings.spans().count().saturating_sub(spans_before);
        carry.restored_names += names as u64;
        carry.restored_bindings += spans as u64;
        let mut not_kept = offered.saturating_sub(names + spans);
        // A save from the future (a clock stepped back since) must not let every later flow
        // on a carried key go on.
        let mut flows = CarriedFlows {
            written_ns: c.written_ns.min(now_ns),
            until_ns: now_ns.saturating_add(self.config.flow_state_idle_ns),
            ..CarriedFlows::default()
        };
        let this_boot = boot_id();
        let same_boot = !this_boot.is_empty() && c.boot == this_boot;
        if let (true, Some(nat)) = (same_boot, self.inputs.nat.as_ref()) {
            let joined = c
                .nat_joined
                .into_iter()
                .map(|(id, proto, src, sp, dst, dp)| {
                    let key = crate::enrich::nat::InsideKey {
                        proto,
                        src,
                        src_port: sp,
                        dst,
                        dst_port: dp,
                    };
                    (id, key)
                });
            let mut table = nat.lock().unwrap_or_else(|p| p.into_inner());
            table.expect_joined(joined);
            table.restore_unjoined(c.nat_unjoined, now_ns);
        }
        let carried = if same_boot { c.flows } else { Vec::new() };
        for f in carried {
            let Some((key, state)) = f.into_state() else {
                skipped += 1;
                continue;
            };
            if flows.flows.len() < self.config.max_flow_states {
                flows.flows.insert(key, state);
                carry.restored_flows += 1;
            } else {
                not_kept += 1;
            }
        }
        info!(
            names = carry.restored_names,
            bindings = carry.restored_bindings,
            flows = carry.restored_flows,
            skipped,
            not_kept,
            saved_s_ago = now_ns.saturating_sub(c.written_ns) / 1_000_000_000,
            same_boot,
            "took back the attribution state the last agent saved"
        );
        self.status.carry = carry;
        self.carried_flows = flows;
    }
}

#[cfg(feature = "testing")]
impl EnrichStage {
    /// For the benchmark: one save's two halves, timed (the copy the records thread makes,
    /// then the encoding and write the saving thread does), and the bytes written to `dir`.
    pub fn time_save(&self, dir: &Path) -> (std::time::Duration, std::time::Duration, usize) {
        let t = std::time::Instant::now();
        let c = self.carried(self.now_ns());
        let copied = t.elapsed();
        let t = std::time::Instant::now();
        let bytes = write(dir, &c).unwrap_or(0);
        (copied, t.elapsed(), bytes)
    }
}

/// The kernel's boot id, empty if unreadable (read once).
fn boot_id() -> String {
    static BOOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
    .clone()
}

/// A saved state that does not read: moved aside (kept for a look), the start goes on without.
fn set_aside(path: &Path, why: &str) {
    let bad = path.with_extension("json.bad");
    let moved = std::fs::rename(path, &bad);
    warn!(
        path = %path.display(),
        kept_as = %bad.display(),
        moved = moved.is_ok(),
        "the attribution state the last agent saved does not read ({why}): starting without it"
    );
}
