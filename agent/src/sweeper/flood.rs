//! Flood summaries ([`agent_common::flood`]): once a sweep, the budgets' window is moved on
//! (which starts both budgets afresh and turns the program to the other half of the summary
//! slots), then every rule's per-CPU summary of the window that ended, of the blocked packets
//! dropped past the drop-record budget, is read from its `FLOOD_SLOTS` slots, and the CPUs
//! are merged (sums, first and last time, sketch registers by maximum, top sources by
//! address). Each rule with stateless drops becomes one `summarised` record; `status` keeps
//! the running totals.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use agent_common::flood::{
    first_slot, stamp, FloodConfig, FloodTotal, FloodValue, SKETCH_REGISTERS, SLOTS, TOP_SOURCES,
};
use agent_common::{names, rules::RuleId, FlowKey};
use aya::maps::{Array, MapData, PerCpuArray, PerCpuValues};
use serde::{Deserialize, Serialize};

use crate::clock::WallClock;
use crate::record::{EndReason, FlowRecord, Mac};

/// Top sources kept per rule in a summary and in `status`.
pub const TOP_KEPT: usize = 4;

/// The drop-record budgets, per second (`--drop-records-per-rule`, `--drop-records-total`),
/// spent in windows of one sweep interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloodBudget {
    /// Drop records per rule per second; 0: no limit.
    pub per_rule: u32,
    /// Drop records in all per second; 0: no limit.
    pub total: u32,
    /// The window, in ms: the sweep interval (the summaries are taken at each sweep).
    pub window_ms: u64,
}

impl Default for FloodBudget {
    fn default() -> Self {
        FloodBudget {
            per_rule: 1_000,
            total: 20_000,
            window_ms: 1_000,
        }
    }
}

impl FloodBudget {
    /// What each CPU may record per window: the rate times the window, divided among `cpus`
    /// and rounded up (so a rate is never cut to zero); 0, no limit, becomes `u32::MAX`. A flood that
    /// RSS steers to one CPU gets that CPU's share only.
    pub fn per_cpu(&self, cpus: usize) -> FloodConfig {
        let window_ms = self.window_ms;
        let share = |rate: u32| -> u32 {
            if rate == 0 {
                return u32::MAX;
            }
            let per_window = (u64::from(rate) * window_ms).div_ceil(1000).max(1);
            per_window
                .div_ceil(cpus.max(1) as u64)
                .min(u64::from(u32::MAX)) as u32
        };
        FloodConfig {
            window: 0,
            per_rule: share(self.per_rule),
            total: share(self.total),
        }
    }
}

/// One rule's stateless drops in one sweep, the CPUs merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleFlood {
    /// The rule.
    pub rule: RuleId,
    /// Blocked new flows recorded (within the budget).
    pub recorded: u64,
    /// Packets dropped statelessly past it.
    pub packets: u64,
    /// Their frame bytes.
    pub bytes: u64,
    /// Kernel time of the first of them (0 if none).
    pub first_ns: u64,
    /// Kernel time of the last of them.
    pub last_ns: u64,
    /// Distinct sources, estimated ([`estimate`]).
    pub sources: u64,
    /// The most frequent sources with their votes (lower bounds of their packets), most
    /// first.
    pub top: Vec<(IpAddr, u64)>,
}

impl RuleFlood {
    /// The `summarised` record of these drops (see [`EndReason::Summarised`]), times
    /// converted with `clock`.
    pub fn record(&self, clock: &WallClock, rule: String) -> FlowRecord {
        let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let src = self.top.first().map_or(unspecified, |t| t.0);
        FlowRecord {
            time_start_ns: clock.to_unix_ns(self.first_ns),
            time_end_ns: clock.to_unix_ns(self.last_ns),
            iface: String::new(),
            ifindex: 0,
            vlan: None,
            vlan_inner: None,
            src_mac: Mac::default(),
            dst_mac: Mac::default(),
            proto: 0,
            src_ip: src,
            src_port: 0,
            dst_ip: if src.is_ipv6() {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                unspecified
            },
            dst_port: 0,
            packets: self.packets,
            bytes: self.bytes,
            resp_packets: 0,
            resp_bytes: 0,
            tcp_flags: 0,
            dropped: self.packets,
            rule: Some(rule),
            end_reason: EndReason::Summarised,
            attr: Default::default(),
        }
    }
}

/// The distinct-source estimate of merged sketch registers (HyperLogLog with the
/// small-range correction; about 13% standard error at 64 registers).
pub fn estimate(registers: &[u8; SKETCH_REGISTERS]) -> u64 {
    let m = SKETCH_REGISTERS as f64;
    let sum: f64 = registers.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
    let zeros = registers.iter().filter(|&&r| r == 0).count();
    let raw = 0.709 * m * m / sum;
    if raw <= 2.5 * m && zeros > 0 {
        (m * (m / zeros as f64).ln()).round() as u64
    } else {
        raw.round() as u64
    }
}

/// An address of a flow key's words: IPv4 when only word 0 is set (an IPv6 address of the
/// form `::a.b.c.d` reads as IPv4: the sketch does not keep the family).
fn address(words: &[u32; 4]) -> IpAddr {
    let b = FlowKey::addr_bytes(words);
    if words[1..] == [0, 0, 0] {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(b))
    }
}

/// Merges one rule's per-CPU values.
pub fn merge(rule: RuleId, per_cpu: &[FloodValue]) -> RuleFlood {
    let mut out = RuleFlood {
        rule,
        ..Default::default()
    };
    let mut registers = [0u8; SKETCH_REGISTERS];
    let mut top: BTreeMap<[u32; 4], u64> = BTreeMap::new();
    for v in per_cpu {
        out.recorded += u64::from(v.recorded);
        out.packets += v.packets;
        out.bytes += v.bytes;
        if v.first_ns != 0 && (out.first_ns == 0 || v.first_ns < out.first_ns) {
            out.first_ns = v.first_ns;
        }
        out.last_ns = out.last_ns.max(v.last_ns);
        for (r, &x) in registers.iter_mut().zip(&v.sources) {
            *r = (*r).max(x);
        }
        for s in v.top.iter().filter(|s| s.packets != 0).take(TOP_SOURCES) {
            *top.entry(s.addr).or_default() += s.packets;
        }
    }
    out.sources = if out.packets == 0 {
        0
    } else {
        estimate(&registers)
    };
    let mut top: Vec<(IpAddr, u64)> = top.iter().map(|(a, &n)| (address(a), n)).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(TOP_KEPT);
    out.top = top;
    out
}

/// How long the agent waits, after moving the window on, before it reads the window that
/// ended: a program run that read the old window before the move (well under a microsecond)
/// has finished counting into it by then.
const GRACE: Duration = Duration::from_millis(1);

/// The program's flood maps.
///
/// A window's slots are cleared once its summaries are written ([`FloodMaps::forget_taken`]),
/// so slots of the window before the current one that still carry its stamp were taken by an
/// agent killed before it wrote them: the next agent writes them first
/// ([`FloodMaps::take_left`]). A kill between the write and the clear (microseconds) has
/// them written twice.
pub struct FloodMaps {
    slots: PerCpuArray<MapData, FloodValue>,
    total: PerCpuArray<MapData, FloodTotal>,
    config: Array<MapData, FloodConfig>,
    /// The budgets written into `config` (what `status` and the metrics show).
    budget: FloodBudget,
    window: u64,
    /// The window before the one in progress at the start, whose slots may hold summaries
    /// an earlier agent took but never wrote.
    left: Option<u64>,
    /// The window last read and how many slots of its half, to clear once written.
    taken: Option<(u64, u32)>,
}

impl FloodMaps {
    /// The `FLOOD_SLOTS`, `FLOOD_TOTAL` and `FLOOD_CONFIG` maps, with the budgets written.
    pub fn new(
        slots: MapData,
        total: MapData,
        config: MapData,
        budget: FloodBudget,
    ) -> io::Result<Self> {
        // Shared among the CPUs online, not the possible ones: a VM sized for CPUs it may
        // plug in later (128 possible, 4 online) would get 4/128 of each budget.
        let cpus = aya::util::online_cpus().map_err(|(_, e)| e)?.len();
        let slots = PerCpuArray::try_from(aya::maps::Map::PerCpuArray(slots))
            .map_err(|e| io::Error::other(format!("map {}: {e}", names::FLOOD_SLOTS)))?;
        let total = PerCpuArray::try_from(aya::maps::Map::PerCpuArray(total))
            .map_err(|e| io::Error::other(format!("map {}: {e}", names::FLOOD_TOTAL)))?;
        let mut config: Array<MapData, FloodConfig> =
            Array::try_from(aya::maps::Map::Array(config))
                .map_err(|e| io::Error::other(format!("map {}: {e}", names::FLOOD_CONFIG)))?;
        let window = config.get(&0, 0).map_or(0, |c| c.window);
        let mut c = budget.per_cpu(cpus);
        c.window = window;
        config
            .set(0, c, 0)
            .map_err(|e| io::Error::other(format!("writing map {}: {e}", names::FLOOD_CONFIG)))?;
        Ok(FloodMaps {
            slots,
            total,
            config,
            budget,
            window,
            left: window.checked_sub(1),
            taken: None,
        })
    }

    /// The budgets in force.
    pub fn budget(&self) -> FloodBudget {
        self.budget
    }

    /// A second handle on the same maps, as the next agent adopting the pins opens them.
    pub fn reopen(&self, budget: FloodBudget) -> io::Result<Self> {
        use aya::maps::IterableMap;
        fn dup<M: IterableMap<u32, V>, V>(m: &M) -> io::Result<MapData> {
            let fd = m.map().fd().as_fd().try_clone_to_owned()?;
            MapData::from_fd(fd).map_err(io::Error::other)
        }
        use std::os::fd::AsFd;
        FloodMaps::new(
            dup(&self.slots)?,
            dup(&self.total)?,
            dup(&self.config)?,
            budget,
        )
    }

    /// The summaries of the window before the one in progress at the start that an agent
    /// killed between its take and their write left (none after a clean stop, or when the
    /// program is new); call once, before the first [`FloodMaps::take`], then
    /// [`FloodMaps::forget_taken`] once they are written.
    pub fn take_left(&mut self) -> io::Result<Vec<RuleFlood>> {
        match self.left.take() {
            Some(w) => self.read(w),
            None => Ok(Vec::new()),
        }
    }

    /// Starts the next window and takes every rule's summary of the one that ended. The
    /// program writes the other half of the slots meanwhile, so nothing counted is lost (a
    /// slot is cleared by the program when its half comes round again, two windows on).
    pub fn take(&mut self) -> io::Result<Vec<RuleFlood>> {
        // The slots of the window before the one that ended are the program's next half.
        self.left = None;
        let ended = self.window;
        self.window = ended.wrapping_add(1);
        let mut c = self
            .config
            .get(&0, 0)
            .map_err(|e| io::Error::other(format!("reading map {}: {e}", names::FLOOD_CONFIG)))?;
        c.window = self.window;
        self.config
            .set(0, c, 0)
            .map_err(|e| io::Error::other(format!("writing map {}: {e}", names::FLOOD_CONFIG)))?;
        std::thread::sleep(GRACE);
        self.read(ended)
    }

    /// Every rule's summary in the slots of window `ended`, which the program no longer
    /// writes; remembered for [`FloodMaps::forget_taken`].
    fn read(&mut self, ended: u64) -> io::Result<Vec<RuleFlood>> {
        let read = |what: &str, e: aya::maps::MapError| {
            io::Error::other(format!("reading map {what}: {e}"))
        };
        // Each CPU's count of its slots in that half; a CPU idle since an older window of the
        // same parity shows that one's, whose slots the stamp then leaves out.
        let half = (ended & 1) as usize;
        let used = self
            .total
            .get(&0, 0)
            .map_err(|e| read(names::FLOOD_TOTAL, e))?
            .iter()
            .map(|t| t.used[half])
            .max()
            .unwrap_or(0)
            .min(SLOTS);
        let mark = stamp(ended);
        let mut by_rule: BTreeMap<RuleId, Vec<FloodValue>> = BTreeMap::new();
        for i in 0..used {
            let values = self
                .slots
                .get(&(first_slot(ended) + i), 0)
                .map_err(|e| read(names::FLOOD_SLOTS, e))?;
            for v in values.iter().filter(|v| v.stamp == mark) {
                by_rule.entry(v.rule).or_default().push(*v);
            }
        }
        self.taken = Some((ended, used));
        Ok(by_rule
            .into_iter()
            .map(|(rule, values)| merge(rule, &values))
            .collect())
    }

    /// Clears the slots of the window last taken, whose summaries are written: the next
    /// agent must not find them unwritten ([`FloodMaps::take_left`]). The program writes the
    /// other half until the next take.
    pub fn forget_taken(&mut self) -> io::Result<()> {
        let Some((ended, used)) = self.taken.take() else {
            return Ok(());
        };
        if (ended ^ self.window) & 1 == 0 {
            return Ok(()); // the program's half now (never after a take or take_left)
        }
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        for i in 0..used {
            let zero = PerCpuValues::try_from(vec![FloodValue::zeroed(); cpus])?;
            self.slots
                .set(first_slot(ended) + i, zero, 0)
                .map_err(|e| {
                    io::Error::other(format!("clearing map {}: {e}", names::FLOOD_SLOTS))
                })?;
        }
        Ok(())
    }
}

/// Rules' flood figures in `status`, since the agent started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloodStatus {
    /// The budgets in force, per second.
    pub budget: Option<FloodBudget>,
    /// Blocked new flows recorded within the budget, all rules.
    pub recorded: u64,
    /// Blocked packets summarised past it, all rules.
    pub summarised: u64,
    /// Summary records written.
    pub summary_records: u64,
    /// Per rule that summarised packets, most first.
    pub rules: Vec<RuleFloodStatus>,
}

/// One rule's flood figures in `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleFloodStatus {
    /// The rule (`FILE:LINE`, or `#ID` when unknown).
    pub rule: String,
    /// Blocked new flows recorded within the budget.
    pub recorded: u64,
    /// Packets summarised past it.
    pub summarised: u64,
    /// Their bytes.
    pub summarised_bytes: u64,
    /// Distinct sources in the last summary (estimate).
    pub last_sources: u64,
    /// Top sources of the last summary.
    pub last_top: Vec<String>,
}

impl FloodStatus {
    /// Adds one sweep's summaries (`name`: a rule's `FILE:LINE`).
    pub fn add(&mut self, taken: &[RuleFlood], name: impl Fn(RuleId) -> String) {
        for f in taken {
            self.recorded += f.recorded;
            self.summarised += f.packets;
            self.summary_records += u64::from(f.packets != 0);
            let rule = name(f.rule);
            let i = match self.rules.iter().position(|r| r.rule == rule) {
                Some(i) => i,
                None => {
                    self.rules.push(RuleFloodStatus {
                        rule,
                        ..Default::default()
                    });
                    self.rules.len() - 1
                }
            };
            let r = &mut self.rules[i];
            r.recorded += f.recorded;
            r.summarised += f.packets;
            r.summarised_bytes += f.bytes;
            if f.packets != 0 {
                r.last_sources = f.sources;
                r.last_top = f.top.iter().map(|(a, n)| format!("{a} {n}")).collect();
            }
        }
        self.rules.sort_by(|a, b| {
            (b.summarised, b.recorded)
                .cmp(&(a.summarised, a.recorded))
                .then_with(|| a.rule.cmp(&b.rule))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::flood::{register_of, source_hash, TopSource};

    fn value() -> FloodValue {
        FloodValue::zeroed()
    }

    #[test]
    fn the_estimate_is_within_a_third_from_ten_to_a_million_sources() {
        for n in [10u32, 100, 1_000, 10_000, 100_000, 1_000_000] {
            let mut regs = [0u8; SKETCH_REGISTERS];
            for i in 0..n {
                let addr = [u32::from_ne_bytes((0x0a00_0000 + i).to_be_bytes()), 0, 0, 0];
                let (r, rank) = register_of(source_hash(&addr));
                regs[r] = regs[r].max(rank);
            }
            let e = estimate(&regs) as f64;
            let err = (e - f64::from(n)).abs() / f64::from(n);
            assert!(
                err < 0.34,
                "{n} sources estimated as {e} ({:.0}% off)",
                err * 100.0
            );
        }
    }

    #[test]
    fn cpus_merge_into_one_summary() {
        let (mut a, mut b) = (value(), value());
        let src = |x: u8| [u32::from_ne_bytes([192, 0, 2, x]), 0, 0, 0];
        a.recorded = 3;
        (a.packets, a.bytes, a.first_ns, a.last_ns) = (10, 600, 50, 90);
        (b.packets, b.bytes, b.first_ns, b.last_ns) = (5, 300, 40, 70);
        a.top[0] = TopSource {
            addr: src(1),
            packets: 6,
        };
        b.top[0] = TopSource {
            addr: src(1),
            packets: 2,
        };
        b.top[1] = TopSource {
            addr: src(2),
            packets: 3,
        };
        let mark = |v: &mut FloodValue, x| {
            let (r, rank) = register_of(source_hash(&src(x)));
            v.sources[r] = v.sources[r].max(rank);
        };
        mark(&mut a, 1);
        mark(&mut a, 2);
        mark(&mut b, 3);
        let m = merge(7, &[a, b]);
        assert_eq!(
            (m.rule, m.recorded, m.packets, m.bytes, m.first_ns, m.last_ns),
            (7, 3, 15, 900, 40, 90)
        );
        assert_eq!(m.sources, 3, "three distinct sources");
        assert_eq!(
            m.top,
            vec![
                ("192.0.2.1".parse().expect("addr"), 8),
                ("192.0.2.2".parse().expect("addr"), 3)
            ]
        );
    }

    #[test]
    fn each_cpu_gets_its_share_of_the_rate_per_window() {
        let b = FloodBudget::default();
        let c = b.per_cpu(2);
        assert_eq!((c.per_rule, c.total), (500, 10_000));
        let c = b.per_cpu(3);
        assert_eq!((c.per_rule, c.total), (334, 6_667), "rounded up");
        let half = FloodBudget {
            window_ms: 500,
            ..b
        };
        assert_eq!(half.per_cpu(1).per_rule, 500, "half a second's worth");
        let off = FloodBudget {
            per_rule: 0,
            total: 0,
            ..b
        };
        let c = off.per_cpu(4);
        assert_eq!((c.per_rule, c.total), (u32::MAX, u32::MAX));
        let tiny = FloodBudget {
            per_rule: 1,
            total: 1,
            window_ms: 100,
        };
        assert_eq!(tiny.per_cpu(64).per_rule, 1, "never cut to zero");
    }

    #[test]
    fn status_totals_add_up_per_rule() {
        let mut s = FloodStatus::default();
        let f = |rule, recorded, packets| RuleFlood {
            rule,
            recorded,
            packets,
            bytes: packets * 60,
            sources: packets,
            ..Default::default()
        };
        s.add(&[f(1, 5, 0), f(2, 5, 100)], |r| format!("l:{r}"));
        s.add(&[f(2, 0, 50)], |r| format!("l:{r}"));
        assert_eq!((s.recorded, s.summarised, s.summary_records), (10, 150, 2));
        assert_eq!(s.rules[0].rule, "l:2");
        assert_eq!(
            (
                s.rules[0].summarised,
                s.rules[0].summarised_bytes,
                s.rules[0].last_sources
            ),
            (150, 9000, 50)
        );
        assert_eq!((s.rules[1].recorded, s.rules[1].summarised), (5, 0));
    }
}
