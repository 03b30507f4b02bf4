//! Records the audit store drops (its memory buffer full while the disk refuses writes) come
//! back to the sweeper as errors, so `status` counts them (`flows.sink_errors`) as the store
//! does (`store.dropped`), instead of counting them as written. Needs root (it mounts a small
//! tmpfs).

#[path = "store_common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use agent_common::{family, FlowKey, FlowValue, NO_RULE};
use common::{TempDir, T0};
use xdp_audit::clock::{Timeline, WallClock};
use xdp_audit::reader::Event;
use xdp_audit::store::{FakeClock, Store, StoreConfig};
use xdp_audit::sweeper::{Sweeper, Timeouts};

/// A tmpfs of `size` mounted on a fresh directory, unmounted and removed on drop (also when
/// the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = TempDir::new("sink-errors-tmpfs");
        let p = dir.0.clone();
        std::mem::forget(dir); // the guard below owns the directory
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&p)
            .output()
            .unwrap_or_else(|e| panic!("mount: {e}"));
        assert!(
            out.status.success(),
            "mounting a tmpfs failed (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
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

#[test]
fn records_the_store_drops_are_counted_as_sink_errors() {
    let fs = Tmpfs::mount("256k");
    let clock = FakeClock::new(T0);
    let mut cfg = StoreConfig::new(fs.path().join("log"));
    cfg.buffer_records = 500;
    cfg.segment_max_bytes = 1 << 30;
    let mut store =
        Store::open_with_clock(cfg, Box::new(clock.clone())).expect("open the store on tmpfs");
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
            "the 256 KiB disk never filled: {:?}",
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
