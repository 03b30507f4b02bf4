//! Helpers shared by `report.rs` and `report_keys.rs`: the real binary run, its success
//! checked, and a report of a window asked for.
#![allow(dead_code)]

use std::process::Output;

pub use super::cli_common::run;

pub const UNTIL: &str = "2023-11-15T00:00:00Z";

#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `report --format FORMAT` on `d` for `[since, until)` with `extra` flags.
pub fn report_of(d: &str, format: &str, since: &str, until: &str, extra: &[&str]) -> Output {
    run(&[
        &[
            "report",
            "--format",
            format,
            "--log-dir",
            d,
            "--since",
            since,
            "--until",
            until,
        ][..],
        extra,
    ]
    .concat())
}
