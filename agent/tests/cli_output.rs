//! Standard output that cannot be written, through the real binary: a full disk is an error,
//! a reader gone (`| head -1`) a quiet end, except that a command whose exit status is its
//! verdict keeps it. Needs root.

mod cli_common;
mod common;
#[path = "store_common/mod.rs"]
mod store_common;

use std::process::{Command, Output, Stdio};

use cli_common::{s, stderr, BIN};
use store_common::{empty_store, TempDir};

/// `cmd` with its standard output on `/dev/full`.
fn to_full_disk(args: &[&str]) -> Output {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    Command::new(BIN)
        .args(args)
        .stdout(full)
        .output()
        .expect("spawn xdp-audit")
}

/// A command whose work is done when it prints (a hold recorded, keys written) used to panic
/// there and exit 101 on a full disk, as if it had failed and could be retried; now it says
/// what failed and exits 1. A reader that goes away (`| head -1`) ends a command quietly.
#[test]
fn output_that_cannot_be_written_is_an_error() {
    let d = TempDir::new("stdout");
    let key = d.path().join("chain.key");
    let store = d.path().join("store");
    empty_store(&store);
    let held = [
        "hold",
        "add",
        "--log-dir",
        s(&store),
        "--since",
        "2h",
        "--until",
        "1h",
        "--reason",
        "case 1",
    ];
    for args in [
        &["keygen", "--out", s(&key)][..],
        &held[..],
        &["hold", "list", "--log-dir", s(&store)][..],
        &["verify", "--log-dir", s(&store)][..],
    ] {
        let o = to_full_disk(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("writing to standard output") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    assert!(
        key.exists(),
        "the keys were written before the output failed"
    );
}

/// `args` run with standard output a pipe whose reader is gone before anything is written.
fn to_closed_pipe(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xdp-audit");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait")
}

/// A reader that goes away ends a listing quietly (status 0); but where the status is the
/// verdict (`check`, `blocklist check`, `verify`, `status`), `| grep -q` or `| head -1` used
/// to turn a failed check or a stopped agent into success under `pipefail`.
#[test]
fn a_closed_pipe_ends_quietly_and_leaves_a_verdict_standing() {
    let d = TempDir::new("pipe-closed");
    let store = d.path().join("store");
    empty_store(&store);
    let o = to_closed_pipe(&["hold", "list", "--log-dir", s(&store)]);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "hold list: {:?} {}",
        o.status,
        stderr(&o)
    );
    // Bad lines past any pipe buffer: the check goes on to its end unprinted.
    let list = d.path().join("bad.list");
    let bad: String = (0..5000).map(|i| format!("bad line {i}\n")).collect();
    std::fs::write(&list, bad).expect("write list");
    let broken = d.path().join("broken");
    empty_store(&broken);
    std::fs::create_dir(broken.join("operator.log")).expect("a directory as the operator log");
    let state = d.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let mut snap = xdp_audit::status::Snapshot::starting(None, Default::default());
    (snap.pid, snap.pid_start) = (gone.id(), None);
    gone.wait().expect("reap true");
    snap.write(&state).expect("write snapshot");
    for (args, code) in [
        (&["blocklist", "check", s(&list)][..], 1),
        (&["check", s(&list)][..], 1),
        (&["verify", "--log-dir", s(&broken)][..], 1),
        (&["status", "--state-dir", s(&state)][..], 3),
        (&["status", "--json", "--state-dir", s(&state)][..], 3),
    ] {
        let o = to_closed_pipe(args);
        assert!(
            o.status.code() == Some(code) && o.stderr.is_empty(),
            "{args:?}: {:?} {}",
            o.status,
            stderr(&o)
        );
    }
}

/// A command whose log lines stderr refuses (a full disk, a closed pipe) still ends with its
/// own status: the log's fallback message went to that same stderr with `eprintln!`, which
/// panicked (exit 101 after the work was done).
#[test]
fn a_stderr_that_cannot_be_written_is_no_crash() {
    let d = TempDir::new("stderr");
    let store = d.path().join("store");
    empty_store(&store);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let o = Command::new(BIN)
        .args(["query", "--count", "--log-dir", s(&store)])
        .stderr(full)
        .output()
        .expect("spawn xdp-audit");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
