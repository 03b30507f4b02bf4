//! Every command's error paths, through the real binary: the error is the first line on
//! stderr, is said once (no OS error text twice, no header or progress before it), names the
//! file, flag or interface at fault, and the exit status is non-zero. The `run` cases that get
//! as far as a store or a list file run inside a network namespace of their own, so a missing
//! check can never attach anything to the host. Needs root.

mod common;
#[path = "store_common/mod.rs"]
mod store_common;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::wait::wait_until;
use store_common::TempDir;
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::{Store, StoreConfig};

const BIN: &str = env!("CARGO_BIN_EXE_xdp-audit");

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("spawn xdp-audit")
}

/// Checks the shape of a failure and returns its first line: non-zero exit, nothing on
/// stdout, the error first on stderr and naming each of `names`, and no part of it (an OS
/// error, a file's message) said twice anywhere on stderr.
#[track_caller]
fn assert_error(o: &Output, names: &[&str]) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "must fail, exited 0: {err}");
    assert!(
        o.stdout.is_empty(),
        "nothing may reach stdout before or instead of the error; stdout: {:?}, stderr: {err}",
        String::from_utf8_lossy(&o.stdout)
    );
    let first = err.lines().next().unwrap_or_default().to_owned();
    assert!(
        first.starts_with("xdp-audit: error: ") || first.starts_with("error: "),
        "the first line on stderr must be the error: {err}"
    );
    for name in names {
        assert!(first.contains(name), "the error must name {name:?}: {err}");
    }
    assert_said_once(&err, &first);
    first
}

/// No `: `-separated part of `message` (an OS error, a wrapped error's text) occurs twice in
/// `all`: that is what an error that both shows its cause and returns it as its source
/// prints through `{:#}`.
#[track_caller]
fn assert_said_once(all: &str, message: &str) {
    assert!(
        all.matches("(os error").count() <= 1,
        "an OS error is repeated: {all}"
    );
    let message = message
        .strip_prefix("xdp-audit: error: ")
        .or_else(|| message.strip_prefix("error: "))
        .unwrap_or(message);
    for part in message.split(": ").filter(|p| p.len() >= 8) {
        assert_eq!(
            all.matches(part).count(),
            1,
            "{part:?} is said more than once: {all}"
        );
    }
}

/// A unique name for this run: pid and a counter, so parallel tests and runs never collide.
fn unique(tag: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// A network namespace removed on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("xa-cli-{}", unique(tag));
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip");
        assert!(ok.success(), "ip netns add {name}");
        let ns = Self(name);
        let ok = Command::new("ip")
            .args(["-n", &ns.0, "link", "set", "lo", "up"])
            .status()
            .expect("ip");
        assert!(ok.success(), "ip -n {} link set lo up", ns.0);
        ns
    }

    /// `xdp-audit run --iface lo --log-dir LOG_DIR` inside the namespace.
    fn agent(&self, log_dir: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.0,
            BIN,
            "run",
            "--iface",
            "lo",
            "--log-dir",
        ])
        .arg(log_dir);
        c
    }

    fn has_xdp(&self) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.0, "link", "show", "lo"])
            .output()
            .expect("ip link show");
        String::from_utf8_lossy(&out.stdout).contains("xdp")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A child process killed and reaped on drop, so a failed assertion leaves no agent running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A store with one sealed segment whose first column chunk is overwritten; returns the
/// segment's path.
fn store_with_a_corrupt_segment(dir: &Path) -> PathBuf {
    let mut store =
        Store::open(StoreConfig::new(dir)).unwrap_or_else(|e| panic!("open store: {e}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let mut g = TrafficGen::with_rate(7, now - 60_000_000_000, 10.0);
    for _ in 0..200 {
        store.append(&g.next_record());
    }
    assert!(store.seal_now(), "sealing the test store failed");
    drop(store);
    let seg = std::fs::read_dir(dir)
        .expect("list store")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seg-") && n.ends_with(".parquet"))
        })
        .unwrap_or_else(|| panic!("no segment in {}", dir.display()));
    let mut bytes = std::fs::read(&seg).expect("read segment");
    assert!(bytes.len() > 200, "segment too small to damage");
    for b in &mut bytes[8..200] {
        *b ^= 0x5a;
    }
    std::fs::write(&seg, bytes).expect("damage segment");
    seg
}

// ---- query ----

#[test]
fn query_of_a_missing_log_dir_prints_the_error_first_and_once() {
    let d = TempDir::new("q-missing");
    let missing = d.path().join("missing");
    for format in ["table", "csv", "jsonl"] {
        let o = run(&["query", "--log-dir", s(&missing), "--format", format]);
        assert_error(&o, &[s(&missing)]);
    }
}

#[test]
fn query_of_a_log_dir_that_is_a_file_names_it() {
    let d = TempDir::new("q-file");
    let file = d.path().join("store");
    std::fs::write(&file, b"x").expect("write");
    assert_error(&run(&["query", "--log-dir", s(&file)]), &[s(&file)]);
}

#[test]
fn query_flags_with_bad_values_are_named() {
    let d = TempDir::new("q-flags");
    let dir = s(d.path());
    let cases: [(&[&str], &[&str]); 10] = [
        (&["--since", "bogus"], &["--since", "bogus"]),
        (&["--until", "2026-13-01T00:00:00Z"], &["--until"]),
        (&["--since", "2h", "--until", "3h"], &["--since", "--until"]),
        (&["--cidr", "10.0.0.0/33"], &["--cidr"]),
        (&["--mac", "zz:zz"], &["--mac"]),
        (&["--proto", "sctpx"], &["--proto", "sctpx"]),
        (&["--port", "70000"], &["--port", "70000"]),
        (
            &["--rule", "/etc/b.list:0"],
            &["--rule", "line numbers start at 1"],
        ),
        (
            &["--since", "2026-05-03T16:00:00+25:00"],
            &["--since", "+25:00"],
        ),
        (
            &["--domain", "a*.example.com"],
            &["--domain", "a*.example.com"],
        ),
    ];
    for (args, names) in cases {
        let mut argv = vec!["query", "--log-dir", dir];
        argv.extend_from_slice(args);
        assert_error(&run(&argv), names);
    }
}

#[test]
fn query_over_a_corrupt_segment_names_the_segment_and_prints_no_header() {
    let d = TempDir::new("q-corrupt");
    let seg = store_with_a_corrupt_segment(d.path());
    let name = seg.file_name().and_then(|n| n.to_str()).expect("name");
    for format in ["table", "csv"] {
        let o = run(&["query", "--log-dir", s(d.path()), "--format", format]);
        assert_error(&o, &[name]);
    }
}

// ---- export ----

fn export(log_dir: &Path, out: &Path) -> Output {
    run(&[
        "export",
        "--log-dir",
        s(log_dir),
        "--since",
        "1d",
        "--until",
        "0s",
        "--format",
        "csv",
        "--out",
        s(out),
    ])
}

#[test]
fn export_from_a_missing_log_dir_leaves_no_output_file() {
    let d = TempDir::new("e-missing");
    let (missing, out) = (d.path().join("missing"), d.path().join("case.csv"));
    assert_error(&export(&missing, &out), &[s(&missing)]);
    assert!(!out.exists(), "a failed export must not leave {out:?}");
}

#[test]
fn export_to_a_file_that_cannot_be_created_names_it() {
    let d = TempDir::new("e-out");
    let out = d.path().join("no-such-dir/case.csv");
    assert_error(&export(d.path(), &out), &[s(&out)]);
}

#[test]
fn export_never_overwrites_a_file() {
    let d = TempDir::new("e-exists");
    let out = d.path().join("case.csv");
    std::fs::write(&out, b"evidence").expect("write");
    assert_error(&export(d.path(), &out), &[s(&out)]);
    assert_eq!(
        std::fs::read(&out).expect("read"),
        b"evidence",
        "the existing file is untouched"
    );
}

#[test]
fn export_without_a_window_names_the_flags() {
    let d = TempDir::new("e-window");
    let out = d.path().join("case.csv");
    let o = run(&[
        "export",
        "--log-dir",
        s(d.path()),
        "--since",
        "1d",
        "--format",
        "csv",
        "--out",
        s(&out),
    ]);
    assert_error(&o, &["--since", "--until"]);
    assert!(!out.exists());
}

#[test]
fn export_over_a_corrupt_segment_names_it_and_leaves_no_output_file() {
    let d = TempDir::new("e-corrupt");
    let store = d.path().join("store");
    std::fs::create_dir_all(&store).expect("mkdir");
    let seg = store_with_a_corrupt_segment(&store);
    let out = d.path().join("case.csv");
    let name = seg.file_name().and_then(|n| n.to_str()).expect("name");
    assert_error(&export(&store, &out), &[name]);
    assert!(!out.exists(), "a failed export must not leave {out:?}");
}

// ---- verify ----

#[test]
fn verify_of_a_missing_log_dir_is_an_error_not_a_verdict() {
    let d = TempDir::new("v-missing");
    let missing = d.path().join("missing");
    assert_error(
        &run(&["verify", "--log-dir", s(&missing)]),
        &["--log-dir", s(&missing)],
    );
}

#[test]
fn verify_with_a_missing_or_bad_public_key_names_it() {
    let d = TempDir::new("v-key");
    let key = d.path().join("chain.key.pub");
    let o = run(&["verify", "--log-dir", s(d.path()), "--public-key", s(&key)]);
    assert_error(&o, &["--public-key", s(&key)]);
    std::fs::write(&key, "not a key\n").expect("write");
    let o = run(&["verify", "--log-dir", s(d.path()), "--public-key", s(&key)]);
    assert_error(&o, &["--public-key", s(&key)]);
    // All zeros decodes as a point, of small order: any signature "verifies" under it.
    let zeros = format!(
        "{} {}\n",
        xdp_audit::store::manifest::PUBLIC_KEY_TAG,
        "0".repeat(64)
    );
    std::fs::write(&key, zeros).expect("write");
    let o = run(&["verify", "--log-dir", s(d.path()), "--public-key", s(&key)]);
    assert_error(&o, &["--public-key", s(&key), "weak"]);
}

// ---- status ----

#[test]
fn status_without_a_snapshot_or_with_a_bad_one_names_the_file() {
    let d = TempDir::new("s-missing");
    let file = d.path().join("status.json");
    let o = run(&["status", "--state-dir", s(d.path())]);
    assert_error(&o, &[s(&file)]);
    std::fs::write(&file, "{ not json").expect("write");
    let o = run(&["status", "--state-dir", s(d.path())]);
    assert_error(&o, &[s(&file)]);
    let o = run(&["status", "--state-dir", s(d.path()), "--top", "many"]);
    assert_error(&o, &["--top", "many"]);
    // A snapshot whose time does not parse was shown as "0s old", its agent running.
    let mut snap = xdp_audit::status::Snapshot::new(
        Vec::new(),
        Default::default(),
        &xdp_audit::daemon::lists::RuleBook::default(),
        1,
        &[],
    );
    snap.written_at = "yesterday".into();
    snap.write(d.path()).expect("write snapshot");
    let o = run(&["status", "--state-dir", s(d.path())]);
    assert_error(&o, &[s(&file), "written_at", "yesterday"]);
}

#[test]
fn status_of_a_starting_agent_says_so_and_of_one_that_died_starting_says_that() {
    let d = TempDir::new("s-starting");
    // This test process stands for the agent: alive, and its snapshot just written.
    let snap = xdp_audit::status::Snapshot::starting(None);
    snap.write(d.path()).expect("write snapshot");
    let o = run(&["status", "--state-dir", s(d.path())]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(5), "{out}");
    assert!(
        out.contains(&format!("agent pid {} starting since", std::process::id()))
            && out.contains("no sweep yet")
            && !out.contains("program counters"),
        "{out}"
    );
    // A process that is gone: it ended while starting.
    let mut child = Command::new("true").spawn().expect("spawn true");
    let dead = child.id();
    child.wait().expect("reap true");
    let mut snap = xdp_audit::status::Snapshot::starting(Some("agent pid 7 ended".into()));
    (snap.pid, snap.pid_start) = (dead, None);
    snap.write(d.path()).expect("write snapshot");
    let o = run(&["status", "--state-dir", s(d.path())]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains(&format!(
            "AGENT NOT RUNNING: pid {dead} ended while starting"
        )) && out.contains("last seen starting at")
            && out.contains("agent pid 7 ended"),
        "{out}"
    );
    let o = run(&["status", "--json", "--state-dir", s(d.path())]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status --json");
    assert_eq!(
        (v["starting"].as_bool(), v["agent"]["state"].as_str()),
        (Some(true), Some("down"))
    );
}

// ---- keygen ----

#[test]
fn keygen_into_a_missing_directory_names_the_file() {
    let d = TempDir::new("k-missing");
    let key = d.path().join("no-such-dir/chain.key");
    assert_error(&run(&["keygen", "--out", s(&key)]), &[s(&key)]);
}

#[test]
fn keygen_refuses_existing_files_and_creates_nothing_then() {
    let d = TempDir::new("k-exists");
    let key = d.path().join("chain.key");
    let public = d.path().join("chain.key.pub");
    std::fs::write(&public, b"old public key").expect("write");
    assert_error(&run(&["keygen", "--out", s(&key)]), &[s(&public)]);
    assert!(
        !key.exists(),
        "a secret key without its public half must not be left behind"
    );
    std::fs::remove_file(&public).expect("rm");
    std::fs::write(&key, b"old secret").expect("write");
    assert_error(&run(&["keygen", "--out", s(&key)]), &[s(&key)]);
    assert_eq!(std::fs::read(&key).expect("read"), b"old secret");
    assert!(!public.exists());
}

// ---- blocklist check ----

#[test]
fn blocklist_check_of_a_missing_file_names_it_once() {
    let d = TempDir::new("b-missing");
    let list = d.path().join("block.list");
    let o = run(&["blocklist", "check", s(&list)]);
    assert!(!o.status.success());
    // A check reports on stdout, file by file (several files may be checked at once).
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let first = out.lines().next().unwrap_or_default();
    assert!(first.starts_with(s(&list)), "{out}");
    assert_said_once(&out, first);
}

/// `check` of a FIFO with no writer, or of an endless device, as every kind of file: it used
/// to block at the open, or read until memory ran out; now it ends at once, naming the file
/// and what it is.
#[test]
fn check_of_a_fifo_or_a_device_names_it_and_ends() {
    use std::io::Read as _;
    let d = TempDir::new("c-special");
    let fifo = d.path().join("block.list");
    let c = std::ffi::CString::new(s(&fifo)).expect("no NUL");
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    for (path, what) in [
        (s(&fifo), "is a FIFO, not a regular file"),
        ("/dev/zero", "is a character device, not a regular file"),
    ] {
        for kind in ["auto", "list", "subscribers", "kea", "dnsmasq"] {
            let child = Command::new(BIN)
                .args(["check", "--kind", kind, path])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn xdp-audit");
            let mut child = Reaped(child);
            let mut status = None;
            wait_until(
                Duration::from_secs(20),
                &format!("check --kind {kind} {path} ended"),
                || {
                    status = child.0.try_wait().expect("wait");
                    status.is_some()
                },
            );
            let mut out = String::new();
            child
                .0
                .stdout
                .take()
                .expect("stdout")
                .read_to_string(&mut out)
                .expect("read stdout");
            assert_eq!(status.and_then(|s| s.code()), Some(1), "{kind}: {out}");
            let first = out.lines().next().unwrap_or_default();
            assert!(
                first.starts_with(&format!("{path}: cannot read: {what}")),
                "{kind}: {out}"
            );
        }
    }
}

// ---- standard output ----

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
fn output_that_cannot_be_written_is_an_error_and_a_closed_pipe_a_quiet_end() {
    let d = TempDir::new("stdout");
    let key = d.path().join("chain.key");
    let store = d.path().join("store");
    std::fs::create_dir(&store).expect("mkdir");
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
    // The reader closes the pipe before the report is through: no error, status 0.
    let list = d.path().join("bad.list");
    let bad: String = (0..5000).map(|i| format!("bad line {i}\n")).collect();
    std::fs::write(&list, bad).expect("write list");
    for args in [
        &["blocklist", "check", s(&list)][..],
        &["check", s(&list)][..],
        &["hold", "list", "--log-dir", s(&store)][..],
    ] {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn xdp-audit");
        drop(child.stdout.take());
        let o = child.wait_with_output().expect("wait");
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{args:?}: {:?} {}",
            o.status,
            stderr(&o)
        );
    }
}

// ---- run ----

#[test]
fn a_missing_interface_is_named() {
    let d = TempDir::new("iface");
    let o = run(&["run", "--iface", "nosuchif0", "--log-dir", s(d.path())]);
    let first = assert_error(&o, &["\"nosuchif0\""]);
    assert!(first.contains("does not exist"), "{first}");
}

/// A device whose frames carry no Ethernet header (tun, WireGuard, PPP) is refused by name
/// before anything is attached: the program would misread every packet on it.
#[test]
fn an_interface_without_ethernet_headers_is_refused_by_name() {
    let ns = Netns::new("tun");
    let ok = Command::new("ip")
        .args(["-n", &ns.0, "tuntap", "add", "dev", "xatun0", "mode", "tun"])
        .status()
        .expect("ip");
    assert!(ok.success(), "ip tuntap add");
    let d = TempDir::new("tun");
    let o = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, BIN, "run", "--no-pin", "--iface", "xatun0",
        ])
        .arg("--log-dir")
        .arg(d.path())
        .output()
        .expect("spawn xdp-audit");
    let first = assert_error(&o, &["\"xatun0\""]);
    assert!(first.contains("not an Ethernet device"), "{first}");
    let out = Command::new("ip")
        .args(["-n", &ns.0, "link", "show", "xatun0"])
        .output()
        .expect("ip link show");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("xdp"),
        "nothing attached"
    );
}

#[test]
fn an_unusable_log_dir_is_named_before_the_kernel_is_touched() {
    let d = TempDir::new("logdir");
    let file = d.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let bad = file.join("log");
    let o = run(&["run", "--iface", "lo", "--log-dir", s(&bad)]);
    assert_error(&o, &[s(&bad), "--log-dir"]);
}

#[test]
fn bad_flag_values_are_named() {
    let cases: [(&[&str], &[&str]); 12] = [
        (&["--list-capacity", "0"], &["--list-capacity", "0"]),
        (
            &["--list-capacity", "4294967295"],
            &["--list-capacity", "4294967295"],
        ),
        (
            &["--sweep-interval", "18446744073709551615"],
            &["--sweep-interval", "too long"],
        ),
        (
            &["--fsync-interval", "106752d"],
            &["--fsync-interval", "too long"],
        ),
        (
            &["--sweep-interval", "0s"],
            &["--sweep-interval", "above zero"],
        ),
        (&["--flow-table-size", "0"], &["--flow-table-size", "0"]),
        (
            &["--ringbuf-bytes", "1000"],
            &["--ringbuf-bytes", "1000", "power of two"],
        ),
        (
            &["--inactive-timeout", "soon"],
            &["--inactive-timeout", "soon"],
        ),
        (
            &["--fsync-interval", "often"],
            &["--fsync-interval", "often"],
        ),
        (&["--retention-days", "30"], &["--retention-days", "90"]),
        (&["--xdp-mode", "fast"], &["--xdp-mode", "fast"]),
        (&["--log", "xdp_audit=[bogus"], &["--log"]),
    ];
    let d = TempDir::new("run-flags");
    for (args, names) in cases {
        // An interface that does not exist: a flag check that is missing fails the test
        // without ever starting an agent.
        let mut argv = vec!["run", "--iface", "nosuchif0", "--log-dir", s(d.path())];
        argv.extend_from_slice(args);
        assert_error(&run(&argv), names);
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let d = TempDir::new("cfg-missing");
    let cfg = d.path().join("agent.toml");
    assert_error(&run(&["run", "--config", s(&cfg)]), &[s(&cfg)]);
}

/// `run --iface lo --log-dir LOG ARGS` in a namespace of its own must fail as
/// [`assert_error`] says, naming `names`, with nothing attached; returns the error line.
#[track_caller]
fn run_fails_before_the_kernel(log: &Path, args: &[&str], names: &[&str]) -> String {
    let ns = Netns::new("run");
    let o = ns.agent(log).args(args).output().expect("spawn agent");
    let first = assert_error(&o, names);
    assert!(!ns.has_xdp(), "nothing may be attached: {first}");
    first
}

#[test]
fn a_missing_signing_key_is_named_before_the_kernel_is_touched() {
    let d = TempDir::new("run-key");
    let key = d.path().join("chain.key");
    let (log, key) = (d.path().join("log"), s(&key));
    run_fails_before_the_kernel(&log, &["--signing-key", key], &["--signing-key", key]);
}

#[test]
fn a_store_held_by_another_writer_is_named_before_the_kernel_is_touched() {
    let d = TempDir::new("run-lock");
    let log = d.path().join("log");
    std::fs::create_dir_all(&log).expect("mkdir");
    let lock = std::fs::File::create(log.join(".lock")).expect("create lock file");
    // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
    let held = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(held, 0, "take the store's lock");
    let first = run_fails_before_the_kernel(&log, &[], &["--log-dir", s(&log)]);
    assert!(first.contains("another xdp-audit process"), "{first}");
}

#[test]
fn a_list_in_a_missing_directory_is_named_before_the_kernel_is_touched() {
    let d = TempDir::new("run-listdir");
    let list = d.path().join("no-such-dir/block.list");
    let (log, list) = (d.path().join("log"), s(&list));
    run_fails_before_the_kernel(&log, &["--blocklist", list], &["--blocklist", list]);
}

/// `setpriv` that runs what follows as nobody, with no capability.
fn as_nobody() -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ]);
    c
}

#[test]
fn without_privileges_the_error_says_root() {
    let d = TempDir::new("nopriv");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let o = as_nobody()
        .args([BIN, "run", "--iface", "lo", "--log-dir"])
        .arg(d.path().join("log"))
        .output()
        .expect("spawn setpriv");
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("run as root"), "{e}");
    assert_said_once(&e, e.lines().last().unwrap_or_default());
}

#[test]
fn a_busy_xdp_slot_is_reported_and_the_first_agent_keeps_running() {
    let ns = Netns::new("busy");
    let d = TempDir::new("busy");
    let mut first = Reaped(
        ns.agent(&d.path().join("a"))
            .stderr(Stdio::null())
            .spawn()
            .expect("first agent"),
    );
    wait_until(Duration::from_secs(20), "the first agent attaches", || {
        assert!(
            first.0.try_wait().expect("wait").is_none(),
            "first agent exited early"
        );
        ns.has_xdp()
    });
    let second = ns
        .agent(&d.path().join("b"))
        .output()
        .expect("second agent");
    assert!(!second.status.success());
    let e = stderr(&second);
    let line = e
        .lines()
        .find(|l| l.starts_with("xdp-audit: error: "))
        .unwrap_or_else(|| panic!("no error line: {e}"));
    assert!(
        line.contains("\"lo\"") && line.contains("already has an XDP program"),
        "{e}"
    );
    assert_said_once(&e, line);
    assert!(
        first.0.try_wait().expect("wait").is_none(),
        "the first agent must keep running"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(first.0.id() as i32, libc::SIGTERM) };
    let status = first.0.wait().expect("wait first");
    assert!(status.success(), "first agent exits 0 on SIGTERM");
}

#[test]
fn a_config_file_supplies_the_settings_and_the_command_line_wins() {
    let d = TempDir::new("config");
    let cfg = d.path().join("agent.toml");
    let cfg_s = s(&cfg);
    let log = d.path().join("log");
    let write = |retention: u32| {
        std::fs::write(
            &cfg,
            format!("iface = [\"nosuchif0\"]\nlog-dir = {log:?}\nretention-days = {retention}\n"),
        )
        .expect("write config")
    };
    write(30);
    let o = run(&["run", "--config", cfg_s]);
    let first = assert_error(&o, &[&format!("{cfg_s}:3: retention-days")]);
    assert!(first.contains("90"), "the legal floor: {first}");

    write(120);
    let o = run(&["run", "--config", cfg_s]);
    assert_error(&o, &["\"nosuchif0\""]);
    let o = Command::new(BIN)
        .env("XDP_AUDIT_CONFIG", &cfg)
        .arg("run")
        .output()
        .expect("spawn xdp-audit");
    assert_error(&o, &["\"nosuchif0\""]);
    let o = run(&["run", "--config", cfg_s, "--retention-days", "30"]);
    assert_error(&o, &["--retention-days", "90"]);
}

#[test]
fn a_signing_key_others_can_read_is_refused_with_the_chmod_to_run() {
    use std::os::unix::fs::PermissionsExt;
    let d = TempDir::new("run-keymode");
    let key = d.path().join("chain.key");
    let made = run(&["keygen", "--out", s(&key)]);
    assert!(made.status.success(), "keygen: {}", stderr(&made));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let (log, key) = (d.path().join("log"), s(&key));
    let names = ["--signing-key", key, "mode 0640", "`chmod 600`"];
    let first = run_fails_before_the_kernel(&log, &["--signing-key", key], &names);
    let secret = std::fs::read_to_string(key).expect("read the key");
    let hex = secret.split_whitespace().nth(1).expect("the key's hex");
    assert!(!first.contains(hex), "the error shows the secret: {first}");
}

#[test]
fn an_unknown_user_is_named_before_the_kernel_is_touched() {
    let d = TempDir::new("run-user");
    let log = d.path().join("log");
    run_fails_before_the_kernel(
        &log,
        &["--user", "no-such-user-xa"],
        &["--user no-such-user-xa"],
    );
    assert!(!log.exists(), "nothing is created for an unknown user");
}

#[test]
fn user_without_root_says_what_it_needs() {
    let o = as_nobody()
        .args([
            BIN,
            "run",
            "--iface",
            "lo",
            "--user",
            "nobody",
            "--log-dir",
            "/nonexistent/log",
        ])
        .output()
        .expect("spawn setpriv");
    assert_error(&o, &["--user nobody", "needs root", "CAP_SETUID"]);
}
