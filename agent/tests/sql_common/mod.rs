//! Helpers shared by the `sql` integration tests: a generated store and the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::store_common::{fill, live, TempDir, T0};
use xdp_audit::record::FlowRecord;
use xdp_audit::store::FakeClock;

pub const BIN: &str = env!("CARGO_BIN_EXE_xdp-audit");

/// Three hours of generated traffic at 1 flow/s; the last hour sealed or left live.
pub fn store(name: &str, seal_last: bool) -> (TempDir, Vec<FlowRecord>) {
    let dir = TempDir::new(name);
    let clock = FakeClock::new(T0);
    let recs = fill(dir.path(), &clock, T0, 3, 1.0, 15, seal_last);
    (dir, recs)
}

pub fn sql(dir: &Path, statement: &str, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["sql", "--log-dir"])
        .arg(dir)
        .arg(statement)
        .args(extra)
        .output()
        .expect("spawn xdp-audit sql")
}

/// The rows of our CSV answer (header left out), each as its fields.
#[track_caller]
pub fn ours(dir: &Path, statement: &str) -> Vec<Vec<String>> {
    ours_with(dir, statement, &[])
}

/// [`ours`] with more arguments.
#[track_caller]
pub fn ours_with(dir: &Path, statement: &str, extra: &[&str]) -> Vec<Vec<String>> {
    let out = sql(dir, statement, &[&["--format", "csv"], extra].concat());
    assert!(
        out.status.success(),
        "sql {statement:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 answer");
    assert!(
        !text.contains('"'),
        "quoted CSV in a test answer: split would break it"
    );
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

/// The live segments' files, in chain order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    live(dir).iter().map(|s| dir.join(&s.file)).collect()
}
