//! Records the audit store drops (its memory buffer full while the disk refuses writes) come
//! back to the sweeper as errors, so `status` counts them (`flows.sink_errors`) as the store
//! does (`store.dropped`), instead of counting them as written.

#[path = "store_common/mod.rs"]
mod common;

use std::collections::HashMap;

use agent_common::{family, FlowKey, FlowValue, NO_RULE};
use common::{TempDir, T0};
use xdp_audit::clock::{Timeline, WallClock};
use xdp_audit::reader::Event;
use xdp_audit::store::{FakeClock, Store, StoreConfig};
use xdp_audit::sweeper::{Sweeper, Timeouts};

/// Makes every file write of this process past `bytes` fail (EFBIG), as a full disk makes
/// them fail. Only in the child process [`records_the_store_drops_are_counted_as_sink_errors`]
/// starts, whose output is a pipe: the harness's own output may be a file already past the
/// limit (CI appends the suite's output to its log).
fn limit_file_size(bytes: u64) {
    // SAFETY: plain system calls; SIGXFSZ would otherwise end the process at the limit.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit),
            0,
            "setrlimit: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The first dropped packet of flow `i`: a drop record is written at once.
fn first_drop(i: u32) -> Event {
    // SAFETY: plain old data, valid all-zero.
    let mut key: FlowKey = unsafe { std::mem::zeroed() };
    key.ifindex = 1;
    key.proto = 17;
    key.family = family::V4;
    key.addr_a = [i.to_be(), 0, 0, 0];
    key.addr_b = [u32::from_ne_bytes([192, 0, 2, 1]), 0, 0, 0];
    // SAFETY: as above.
    let mut value: FlowValue = unsafe { std::mem::zeroed() };
    value.first_seen_ns = u64::from(i) * 1_000;
    value.last_seen_ns = value.first_seen_ns;
    value.packets = [1, 0];
    value.bytes = [60, 0];
    value.drops = 1;
    value.rule = NO_RULE;
    Event::FlowDrop(key, value, 7)
}

/// Set in the child process that runs the test under the file size limit.
const CHILD: &str = "XDP_AUDIT_SINK_ERRORS_CHILD";

#[test]
fn records_the_store_drops_are_counted_as_sink_errors() {
    if std::env::var_os(CHILD).is_none() {
        let name = "records_the_store_drops_are_counted_as_sink_errors";
        let out = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args([name, "--exact", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .expect("run the test in a child process");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "the child run failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let dir = TempDir::new("sink-errors");
    let clock = FakeClock::new(T0);
    let mut cfg = StoreConfig::new(dir.path().join("log"));
    cfg.buffer_records = 500;
    cfg.segment_max_bytes = 1 << 30;
    let mut store = Store::open_with_clock(cfg, Box::new(clock.clone())).expect("open the store");
    limit_file_size(64 << 10);
    let mut sweeper = Sweeper::new(
        Timeouts::default(),
        Timeline::fixed(WallClock::from_offset(T0)),
        HashMap::new(),
    );
    let mut sent = 0u32;
    while store.status().dropped < 1_000 {
        sent += 1;
        assert!(
            sent < 100_000,
            "writes past 64 KiB never failed: {:?}",
            store.status()
        );
        clock.advance(1_000_000);
        sweeper.on_event(first_drop(sent), &mut store, &());
    }
    let s = store.status();
    assert!(s.degraded, "the disk is full: {s:?}");
    assert_eq!(
        sweeper.stats.sink_errors, s.dropped,
        "every record the store dropped is a sink error: {s:?}"
    );
    assert_eq!(
        sweeper.stats.records + sweeper.stats.sink_errors,
        u64::from(sent),
        "and only those: {:?}",
        sweeper.stats
    );
}

/// A sink that logs the calls the sweeper makes, in front of the store.
struct Order {
    inner: Store,
    /// `flush`, or `write` with whether the store would write its buffer first.
    calls: Vec<(&'static str, bool)>,
}

impl xdp_audit::sink::RecordSink for Order {
    fn write(
        &mut self,
        r: &xdp_audit::record::FlowRecord,
    ) -> Result<(), xdp_audit::sink::SinkError> {
        let ahead = self.inner.writes_before(r);
        self.calls.push(("write", ahead));
        self.inner.write(r)
    }
    fn sync(&mut self) -> Result<(), xdp_audit::sink::SinkError> {
        self.inner.sync()
    }
    fn flush(&mut self) -> Result<(), xdp_audit::sink::SinkError> {
        self.calls.push(("flush", false));
        xdp_audit::sink::RecordSink::flush(&mut self.inner)
    }
    fn writes_before(&self, r: &xdp_audit::record::FlowRecord) -> bool {
        self.inner.writes_before(r)
    }
}

/// The first record of a new hour rotates the journal, which writes the records buffered
/// before it: the sweeper settles first (its ledger follows that write), so no record reaches
/// the file ahead of the ledger, where a kill would have the next agent write it again.
#[test]
fn the_sweeper_settles_before_a_record_that_rotates_the_journal() {
    use xdp_audit::sink::RecordSink as _;
    const HOUR: u64 = 3_600_000_000_000;
    let dir = TempDir::new("settle-rotate");
    let clock = FakeClock::new(T0);
    let store = Store::open_with_clock(StoreConfig::new(dir.path()), Box::new(clock.clone()))
        .expect("open the store");
    let mut sink = Order {
        inner: store,
        calls: Vec::new(),
    };
    let mut sweeper = Sweeper::new(
        Timeouts::default(),
        Timeline::fixed(WallClock::from_offset(T0)),
        HashMap::new(),
    );
    for i in 1..=50 {
        sweeper.on_event(first_drop(i), &mut sink, &());
    }
    let Event::FlowDrop(key, mut value, rule) = first_drop(51) else {
        unreachable!()
    };
    value.first_seen_ns += HOUR;
    value.last_seen_ns += HOUR;
    clock.advance(HOUR as i64);
    sweeper.on_event(Event::FlowDrop(key, value, rule), &mut sink, &());
    assert!(
        !sink.calls.contains(&("write", true)),
        "no write made the store write its buffer ahead of the ledger: {:?}",
        sink.calls
    );
    assert_eq!(
        sink.calls[sink.calls.len() - 2..],
        [("flush", false), ("write", false)],
        "the sweeper settled right before the record that rotates the journal"
    );
    assert!(sink.sync().is_ok());
}
