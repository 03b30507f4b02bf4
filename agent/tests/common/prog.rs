//! The XDP program loaded for a test and driven through BPF_PROG_TEST_RUN: run a frame, read
//! its counters, flow table and ring events, and the assertions more than one test file makes
//! (test files add their own in an `impl Prog` of their own).

use std::os::fd::AsFd;

use agent_common::{Counter, FlowKey, FlowValue};
use aya::maps::MapData;
use aya::programs::{TestRun, TestRunOptions};
use xdp_audit::blocklist::{Capacity, CompiledLists, ListSet, ListSpec};
use xdp_audit::loader::{LoadOptions, Loaded};
use xdp_audit::reader::{Event, RingReader};
use xdp_audit::sweeper::flood::FloodBudget;
use xdp_audit::sweeper::ledger::Ledger;

/// Empties the slow path's slot of the program `loaded`: every tail call to it then fails
/// (counted as `lost_payload`), as while a start swaps programs.
pub fn empty_slow_path(loaded: &mut Loaded) {
    let ids = (loaded.program_mut().expect("program").info())
        .expect("program info")
        .map_ids()
        .ok()
        .flatten()
        .unwrap_or_default();
    let slot = (ids.into_iter())
        .filter_map(|id| MapData::from_id(id).ok())
        .find(|m| {
            m.info()
                .is_ok_and(|i| i.name_as_str() == Some(agent_common::names::SLOW_PATH))
        })
        .expect("the slow path's slot");
    let mut slot = aya::maps::ProgramArray::try_from(aya::maps::Map::ProgramArray(slot))
        .expect("a program array");
    slot.clear_index(&0).expect("empty the slot");
}

/// Keeps the calling thread on CPU 0 (only this thread's affinity changes): the drop-record
/// budget is per CPU and BPF_PROG_TEST_RUN runs on the caller's CPU, so what a run spends
/// stays on one CPU's budget.
pub fn pin_to_cpu0() {
    pin_to(0);
}

/// Keeps the calling thread on CPU `cpu`.
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it; pid 0 is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            rc,
            0,
            "pinning the thread to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A second handle on a loaded program, to run it on another thread while the test drives
/// its maps (aya's `test_run` holds the whole `Loaded` borrowed).
pub struct RunHandle(std::os::fd::OwnedFd);

impl RunHandle {
    /// BPF_PROG_TEST_RUN of `frame`, `repeat` times; the program's return value.
    pub fn run(&self, frame: &[u8], repeat: u32) -> u32 {
        use std::os::fd::AsRawFd;
        let frame = &super::sealed(frame)[..];
        // union bpf_attr, its `test` member: prog_fd, retval, data_size_in, data_size_out,
        // data_in, data_out, repeat, duration (and more, left zero).
        let mut attr = [0u64; 10];
        let p = attr.as_mut_ptr().cast::<u8>();
        // SAFETY: every write is inside `attr`; the kernel reads `frame` while it lives.
        let rc = unsafe {
            p.cast::<u32>().write(self.0.as_raw_fd() as u32);
            p.add(8).cast::<u32>().write(frame.len() as u32);
            p.add(16).cast::<u64>().write(frame.as_ptr() as u64);
            p.add(32).cast::<u32>().write(repeat);
            libc::syscall(libc::SYS_bpf, 10, p, std::mem::size_of_val(&attr))
        };
        assert_eq!(
            rc,
            0,
            "BPF_PROG_TEST_RUN: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: inside `attr`.
        unsafe { p.add(4).cast::<u32>().read() }
    }
}

/// A pinned agent's ledger, made as the loader makes it, and a second handle on its map (the
/// pin's, for the next agent to adopt).
pub fn ledger() -> (Ledger, MapData) {
    ledger_sized(1 << 20)
}

/// [`ledger`], of `entries` entries at most.
pub fn ledger_sized(entries: u32) -> (Ledger, MapData) {
    let def = aya_obj::Map::new_from_params(
        1, // BPF_MAP_TYPE_HASH
        size_of::<FlowKey>() as u32,
        size_of::<agent_common::Reported>() as u32,
        entries,
        1, // BPF_F_NO_PREALLOC
    );
    let map = MapData::create(def, "REPORTED", None).expect("create the ledger (root?)");
    let pin = MapData::from_fd(map.fd().as_fd().try_clone_to_owned().expect("dup")).expect("map");
    (Ledger::new(map).expect("ledger"), pin)
}

/// Every event the ring `events` holds, read by the agent's reader and given back; panics on
/// one that does not decode.
pub fn drain_ring(events: &aya::maps::Map) -> Vec<Event> {
    let mut reader = RingReader::new(events).expect("map the ring buffer");
    let mut out = Vec::new();
    loop {
        let d = reader.drain_released(&mut out, usize::MAX);
        assert_eq!(d.undecodable, 0, "every ring record decodes");
        if !d.more {
            return out;
        }
    }
}

/// XDP_PASS, the verdict every test frame must get.
pub const XDP_PASS: u32 = 2;
/// `XDP_DROP`.
pub const XDP_DROP: u32 = 1;

/// A loaded program with a small flow table.
pub struct Prog {
    /// The loaded program and its maps.
    pub loaded: Loaded,
}

impl Prog {
    /// Loads the program with a ring of `ringbuf_bytes`; panics (naming root) if it cannot.
    pub fn load(ringbuf_bytes: u32) -> Self {
        let loaded = Loaded::load(LoadOptions {
            flow_table_size: 1024,
            ringbuf_bytes,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("loading the XDP program (are we root?): {e}"));
        Self { loaded }
    }

    /// Loads the program with `flow_table_size` flows and the list files `specs` (tables
    /// of 1,024 entries, domains hashed under the program's own key) applied; the list set
    /// comes back with it.
    pub fn with_lists(
        flow_table_size: u32,
        specs: impl IntoIterator<Item = ListSpec>,
    ) -> (Self, ListSet) {
        Self::with_lists_budget(flow_table_size, FloodBudget::default(), specs)
    }

    /// As [`Prog::with_lists`], with the drop-record budgets `flood`.
    pub fn with_lists_budget(
        flow_table_size: u32,
        flood: FloodBudget,
        specs: impl IntoIterator<Item = ListSpec>,
    ) -> (Self, ListSet) {
        let capacity = Capacity::for_lists(&CompiledLists::default(), 1024);
        let mut loaded = Loaded::load(LoadOptions {
            flow_table_size,
            ringbuf_bytes: 1 << 16,
            list_capacity: capacity.map_sizes(),
            domain_key: None,
            flood,
        })
        .unwrap_or_else(|e| panic!("loading the XDP program (are we root?): {e}"));
        let key = loaded.lists.domain_key().expect("read the program's key");
        let mut lists = ListSet::of_specs(specs, key);
        lists.set_capacity(capacity);
        let (delta, problems) = lists.reload_all();
        assert!(problems.is_empty(), "{problems:?}");
        loaded.lists.apply(&delta).expect("apply the lists");
        (Self { loaded }, lists)
    }

    /// A handle that runs the program from another thread.
    pub fn run_handle(&mut self) -> RunHandle {
        let prog = self.loaded.program_mut().expect("program");
        let fd = prog.fd().expect("the program's fd");
        RunHandle(
            fd.as_fd()
                .try_clone_to_owned()
                .expect("dup the program's fd"),
        )
    }

    /// Runs one frame; the program's return value.
    pub fn run(&mut self, frame: &[u8]) -> u32 {
        self.run_out(frame).0
    }

    /// Runs one frame, its IPv4 header checksum written ([`super::seal`]): the program's
    /// return value, the frame as the program left it (an answer sent with XDP_TX) and the
    /// run's time as the kernel measured it, in ns.
    pub fn run_out(&mut self, frame: &[u8]) -> (u32, Vec<u8>, u64) {
        self.run_as_is(&super::sealed(frame))
    }

    /// As [`Prog::run_out`], the frame's checksum left as it is.
    pub fn run_as_is(&mut self, frame: &[u8]) -> (u32, Vec<u8>, u64) {
        let prog = self.loaded.program_mut().expect("program");
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat: 1,
            ..Default::default()
        };
        let r = prog
            .test_run(opts)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on a {}-byte frame: {e}", frame.len()));
        out.truncate(r.data_size_out as usize);
        (r.return_value, out, r.duration.as_nanos() as u64)
    }

    /// Every counter, summed over CPUs.
    pub fn counters(&self) -> Vec<(Counter, u64)> {
        xdp_audit::stats::read(&self.loaded.stats).expect("read STATS")
    }

    /// One counter, summed over CPUs.
    pub fn counter(&self, c: Counter) -> u64 {
        self.counters()
            .into_iter()
            .find(|(k, _)| *k == c)
            .map_or(0, |(_, n)| n)
    }

    /// The flow table's entries.
    pub fn flows(&self) -> Vec<(FlowKey, FlowValue)> {
        let t = self.loaded.flow_table();
        t.keys()
            .expect("walk FLOWS")
            .into_iter()
            .filter_map(|k| t.get(&k).expect("lookup").map(|v| (k, v)))
            .collect()
    }

    /// The ring's events, drained.
    pub fn events(&mut self) -> Vec<Event> {
        drain_ring(&self.loaded.events)
    }
}

/// Assertions the program tests share.
impl Prog {
    /// Runs one frame and asserts it was passed and counted under exactly `outcome`.
    pub fn expect_outcome(&mut self, frame: &[u8], outcome: Counter, what: &str) {
        let before = self.counter(outcome);
        let total_before: u64 = self.outcome_total();
        assert_eq!(
            self.run(frame),
            XDP_PASS,
            "{what}: the program must pass every packet"
        );
        assert_eq!(
            self.counter(outcome),
            before + 1,
            "{what}: expected outcome {outcome:?}; counters {:?}",
            self.counters()
        );
        assert_eq!(
            self.outcome_total(),
            total_before + 1,
            "{what}: exactly one outcome per packet"
        );
    }

    /// Packets counted under an outcome so far (exactly one each).
    pub fn outcome_total(&self) -> u64 {
        self.counters()
            .iter()
            .filter(|(c, _)| c.is_outcome())
            .map(|(_, n)| n)
            .sum()
    }
}
