//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use xdp_audit::record::FlowRecord;
use xdp_audit::store::manifest::{self, SegmentInfo};
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::{FakeClock, Store, StoreConfig};

/// 2023-11-14T22:13:20Z, on an hour boundary minus 1,280 s.
pub const T0: i64 = 1_700_000_000_000_000_000;
pub const HOUR: i64 = 3_600_000_000_000;
pub const DAY: i64 = 24 * HOUR;

/// An empty store in `dir`: what an agent that started and recorded nothing leaves.
pub fn empty_store(dir: &Path) {
    let store = Store::open(StoreConfig::new(dir))
        .unwrap_or_else(|e| panic!("open a store in {}: {e}", dir.display()));
    drop(store);
}

/// A fresh directory under the system temp dir, removed on drop, also when the test fails;
/// with `XDP_AUDIT_KEEP_TMP=1` in the environment a failing test keeps it and names it on
/// stderr.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "xdp-audit-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let keep = std::thread::panicking()
            && std::env::var_os("XDP_AUDIT_KEEP_TMP").is_some_and(|v| v == "1");
        if keep {
            eprintln!(
                "kept {} for inspection (XDP_AUDIT_KEEP_TMP=1)",
                self.0.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Store settings for tests: the defaults with compaction off, so a test's segment counts
/// do not depend on when the sealer thread merges closed days (`store_compact` turns it on).
pub fn config(dir: &Path) -> StoreConfig {
    let mut cfg = StoreConfig::new(dir);
    cfg.compact_max_rows = 0;
    cfg
}

/// Opens a store on `dir` with a fake clock (compaction off, see [`config`]).
pub fn open(dir: &Path, clock: &FakeClock) -> Store {
    Store::open_with_clock(config(dir), Box::new(clock.clone()))
        .unwrap_or_else(|e| panic!("open store {}: {e}", dir.display()))
}

/// Writes `hours` hours of generated traffic at `rate` flows/s starting at `start`, the fake
/// clock following the records; every hour is sealed by the hourly rotation and the last
/// hour stays in the live journal unless `seal_last`. Returns the records written.
pub fn fill(
    dir: &Path,
    clock: &FakeClock,
    start: i64,
    hours: i64,
    rate: f64,
    seed: u64,
    seal_last: bool,
) -> Vec<FlowRecord> {
    let mut store = open(dir, clock);
    let mut g = TrafficGen::with_rate(seed, start, rate);
    let mut out = Vec::new();
    while g.now_ns() < start + hours * HOUR {
        let r = g.next_record();
        clock.set(r.time_start_ns);
        store.append(&r);
        out.push(r);
    }
    if seal_last {
        assert!(store.seal_now(), "sealing the last journal failed");
    } else {
        assert!(store.sync_now(), "sync failed");
    }
    out
}

/// Copies every file of `from` into a new temp dir.
pub fn copy_dir(from: &Path, name: &str) -> TempDir {
    let to = TempDir::new(name);
    for e in std::fs::read_dir(from).expect("list store") {
        let e = e.expect("dir entry");
        if e.file_type().expect("file type").is_file() {
            std::fs::copy(e.path(), to.path().join(e.file_name())).expect("copy file");
        }
    }
    to
}

/// Sorted canonical form of records, for set comparisons.
pub fn canon(mut v: Vec<FlowRecord>) -> Vec<FlowRecord> {
    v.sort_by_cached_key(|r| format!("{r:?}"));
    v
}

/// The live segments of the store in `dir`, as its manifest lists them.
pub fn live(dir: &Path) -> Vec<SegmentInfo> {
    let entries = manifest::read_entries(dir)
        .unwrap_or_else(|e| panic!("read the manifest of {}: {e}", dir.display()));
    manifest::live_segments(&entries)
        .into_iter()
        .cloned()
        .collect()
}

/// What `xdp-audit query --format jsonl ARGS` prints for the store in `dir`, one JSON value per
/// record.
pub fn query_jsonl(dir: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xdp-audit"))
        .args(["query", "--format", "jsonl", "--log-dir"])
        .arg(dir)
        .args(args)
        .output()
        .expect("run xdp-audit query");
    assert!(
        out.status.success(),
        "query failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("query printed {l}: {e}")))
        .collect()
}

/// Makes the store under `dir` nobody's (uid 65534) but for `file`, root's alone (0600): a
/// command run as nobody ([`as_nobody`]) reads all of it but that file.
pub fn nobodys_but(dir: &Path, file: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let chown = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(dir)
        .status()
        .expect("spawn chown");
    assert!(chown.success(), "chown -R the store");
    std::os::unix::fs::chown(file, Some(0), Some(0)).expect("chown the file");
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// `bin` to be run as nobody (`setpriv`, util-linux).
pub fn as_nobody(bin: &str) -> std::process::Command {
    let mut c = std::process::Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        bin,
    ]);
    c
}
