//! `run`'s error paths, through the real binary: a missing interface (or one given twice,
//! deleted under the agent, absent at its start) or one without Ethernet
//! headers, an unusable log dir, bad flag values, config files, signing keys, a store held by
//! another writer, lists in a missing directory, unknown users, missing privileges, and a
//! busy XDP slot. The error is the first line on stderr, is said once, names the file, flag
//! or interface at fault, and the exit status is non-zero. The cases that get as far as a
//! store or a list file run inside a network namespace of their own, so a missing check can
//! never attach anything to the host. The other commands' error paths are in `cli.rs`.
//! Needs root.

mod cli_common;
mod common;
#[path = "store_common/mod.rs"]
mod store_common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cli_common::{
    assert_error, assert_said_once, output_within, run, s, stderr, wait_within, Netns, Reaped, BIN,
    ENDS_WITHIN,
};
use common::wait::wait_until;
use store_common::TempDir;

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
        .arg("--state-dir")
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
    // A state directory that works: it is locked, and its snapshot begun, before the store
    // opens (`LOG-state`, the helper's, would be under the same file).
    let state = d.path().join("state");
    run_fails_before_the_kernel(&bad, &["--state-dir", s(&state)], &[s(&bad), "--log-dir"]);
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
    // Empty (cut short?): named, not run on every default (it said "--iface is required").
    std::fs::write(&cfg, "").expect("an empty config");
    assert_error(
        &run(&["run", "--config", s(&cfg)]),
        &[s(&cfg), "is empty (0 bytes)"],
    );
}

/// `run --iface lo --log-dir LOG ARGS` in a namespace of its own must fail as
/// [`assert_error`] says, naming `names`, with nothing attached; returns the error line.
#[track_caller]
fn run_fails_before_the_kernel(log: &Path, args: &[&str], names: &[&str]) -> String {
    let ns = Netns::new("run");
    let o = output_within(ns.agent(log).args(args), "an agent that must refuse");
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

/// A path that names no file (a TOML `dhcp-leases = [""]`, `--subscribers .`) is refused by
/// its flag: taken, it turned off the watching of every list and attribution file.
#[test]
fn a_path_that_names_no_file_is_refused_before_the_kernel_is_touched() {
    let d = TempDir::new("run-nofile");
    let log = d.path().join("log");
    for (flag, path) in [
        ("--dhcp-leases", ""),
        ("--subscribers", "."),
        ("--blocklist", ".."),
        ("--allowlist", "allow.list/"),
    ] {
        let arg = format!("{flag}={path}");
        let first = run_fails_before_the_kernel(&log, &[&arg], &[flag]);
        assert!(first.contains("not a file's path"), "{arg}: {first}");
    }
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
    wait_attached(&ns, &mut first);
    // Its pins on a bpffs of the test's own, which outlives the agent's mount namespace.
    let bpffs = d.path().join("bpffs");
    std::fs::create_dir(&bpffs).expect("mkdir bpffs");
    let mounted = Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(&bpffs)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount a bpffs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(bpffs.clone());
    let second = output_within(
        ns.agent(&d.path().join("b"))
            .arg("--pin-root")
            .arg(&bpffs)
            .args(["--instance", "second"]),
        "a second agent on a busy XDP slot",
    );
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
        !bpffs.join("second").exists(),
        "a start that attached nowhere left its pins (the maps' memory held until a detach)"
    );
    assert!(
        first.0.try_wait().expect("wait").is_none(),
        "the first agent must keep running"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(first.0.id() as i32, libc::SIGTERM) };
    let status = wait_within(&mut first.0, ENDS_WITHIN, "the first agent after SIGTERM");
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

/// The commands that read the store (and `status`, the state) take their directories from
/// the agent's config file, by `--config` or `XDP_AUDIT_CONFIG`, as `run` does; a flag wins.
/// They took only the flags and their defaults, so an operator had to repeat the config's
/// directories on every command (and `status` blamed a stopped agent).
#[test]
fn the_store_commands_take_their_directories_from_the_config_file() {
    let d = TempDir::new("config-tools");
    let (log, state) = (d.path().join("log"), d.path().join("state"));
    store_common::empty_store(&log);
    let cfg = d.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!("iface = [\"eth9\"]\nlog-dir = {log:?}\nstate-dir = {state:?}\n"),
    )
    .expect("write config");
    let accesses = || {
        std::fs::read_to_string(log.join("operator.log")).map_or(0, |t| {
            t.lines().filter(|l| l.contains("\"access\"")).count()
        })
    };
    let o = run(&["query", "--config", s(&cfg), "--count"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "0");
    assert_eq!(
        accesses(),
        1,
        "the query was recorded in the config's store"
    );
    let o = Command::new(BIN)
        .env("XDP_AUDIT_CONFIG", &cfg)
        .arg("verify")
        .output()
        .expect("spawn xdp-audit");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok:"));
    // A flag wins over the file.
    let other = d.path().join("other");
    let o = run(&[
        "query",
        "--config",
        s(&cfg),
        "--log-dir",
        s(&other),
        "--count",
    ]);
    assert_error(&o, &[s(&other)]);
    let o = run(&["status", "--config", s(&cfg)]);
    assert_error(&o, &[s(&state)]);
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

/// A second agent on the same state directory is refused at that directory's lock, before
/// its snapshot is touched (it once wrote its own starting snapshot and marked it stopped
/// as it failed, so `status` said the running agent was down). One on the same store with
/// a state directory of its own is refused at the store's lock: its starting snapshot,
/// written before the store opens (so that a kill while it opens is a crash the next start
/// names), is marked stopped there.
#[test]
fn a_second_agent_on_the_same_store_leaves_the_running_ones_status_alone() {
    let ns = Netns::new("second");
    let d = TempDir::new("second");
    let (log, state) = (d.path().join("log"), d.path().join("state"));
    let mut first = Reaped(
        ns.agent(&log)
            .arg("--state-dir")
            .arg(&state)
            .arg("--no-pin")
            .stderr(Stdio::null())
            .spawn()
            .expect("first agent"),
    );
    let pid = first.0.id();
    let snapshot = || xdp_audit::status::Snapshot::read(&state).ok();
    wait_until(
        Duration::from_secs(20),
        "the first agent's snapshot",
        || {
            assert!(
                first.0.try_wait().expect("wait").is_none(),
                "first agent exited"
            );
            snapshot().is_some_and(|s| s.pid == pid && !s.starting)
        },
    );
    let second = output_within(
        ns.agent(&log)
            .arg("--state-dir")
            .arg(&state)
            .arg("--no-pin"),
        "a second agent on a locked store",
    );
    assert!(!second.status.success(), "the state directory is locked");
    let state2 = d.path().join("state2");
    let third = output_within(
        ns.agent(&log)
            .arg("--state-dir")
            .arg(&state2)
            .arg("--no-pin"),
        "a second agent on a locked store",
    );
    assert_error(
        &third,
        &["--log-dir", "another xdp-audit process holds the lock"],
    );
    let own = xdp_audit::status::Snapshot::read(&state2).expect("its own snapshot");
    assert!(
        own.pid != pid && own.starting && own.stopped_at.is_some(),
        "written before the store opened, marked stopped: {}",
        stderr(&third)
    );
    let s = snapshot().expect("a snapshot");
    assert_eq!(
        (s.pid, s.stopped_at.is_none()),
        (pid, true),
        "{}",
        stderr(&second)
    );
    // Another store, the same state directory: refused at the directory's lock, before
    // its snapshot is touched.
    let other = output_within(
        ns.agent(&d.path().join("log2"))
            .arg("--state-dir")
            .arg(&state)
            .arg("--no-pin"),
        "a second agent on the same state directory",
    );
    assert_error(&other, &["--state-dir", "another xdp-audit agent uses it"]);
    let s = snapshot().expect("a snapshot");
    assert_eq!(
        (s.pid, s.stopped_at.is_none()),
        (pid, true),
        "{}",
        stderr(&other)
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert!(wait_within(&mut first.0, ENDS_WITHIN, "the first agent after SIGTERM").success());
}

/// `ip -n NS ARGS...`, which must succeed.
fn ip_in(ns: &Netns, args: &[&str]) {
    let ok = Command::new("ip")
        .args(["-n", &ns.0])
        .args(args)
        .status()
        .expect("ip");
    assert!(ok.success(), "ip {args:?}");
}

/// A veth pair `a`, `b` in `ns`, both up.
fn veth(ns: &Netns, a: &str, b: &str) {
    ip_in(ns, &["link", "add", a, "type", "veth", "peer", "name", b]);
    ip_in(ns, &["link", "set", a, "up"]);
    ip_in(ns, &["link", "set", b, "up"]);
}

/// Waits until `agent`'s program is on `lo` in `ns`, the agent still running.
fn wait_attached(ns: &Netns, agent: &mut Reaped) {
    wait_until(Duration::from_secs(20), "the agent attaches", || {
        assert!(
            agent.0.try_wait().expect("wait").is_none(),
            "agent exited early"
        );
        ns.has_xdp()
    });
}

/// An agent in `ns` on `lo` and `iface`, unpinned, sweeping every 200 ms, its store and
/// state in `log`.
fn agent_on(ns: &Netns, log: &Path, iface: &str, stderr: Stdio) -> Reaped {
    Reaped(
        ns.agent(log)
            .args(["--iface", iface, "--no-pin", "--sweep-interval", "200ms"])
            .arg("--state-dir")
            .arg(log)
            .stderr(stderr)
            .spawn()
            .expect("agent"),
    )
}

/// Waits until the agent's snapshot in `log` (its state dir) names `iface` as not audited
/// for a reason containing `why`, the agent still running.
fn wait_unaudited(agent: &mut Reaped, log: &Path, iface: &str, why: &str) {
    wait_until(
        Duration::from_secs(20),
        "the interface named as not audited",
        || {
            assert!(
                agent.0.try_wait().expect("wait").is_none(),
                "the agent exited instead of auditing the others"
            );
            xdp_audit::status::Snapshot::read(log).is_ok_and(|s| {
                (s.unaudited.iter()).any(|u| u.name == iface && u.reason.contains(why))
            })
        },
    );
}

/// The agent's exit status and stderr, once it stops.
fn exit_and_stderr(agent: &mut Reaped) -> (Option<i32>, String) {
    wait_until(Duration::from_secs(20), "the agent stops", || {
        agent.0.try_wait().expect("wait").is_some()
    });
    let status = agent.0.wait().expect("wait");
    let mut err = String::new();
    std::io::Read::read_to_string(agent.0.stderr.as_mut().expect("stderr"), &mut err)
        .expect("read stderr");
    (status.code(), err)
}

/// An audited interface deleted while the agent runs: the kernel took the program with it.
/// The agent goes on auditing its other interface (`lo`), names the deleted one in its
/// status, and once it is created again stops with an error naming it (systemd's
/// Restart=on-failure then attaches the program there) instead of running on blind there.
#[test]
fn an_interface_deleted_under_the_agent_stops_it_with_an_error_naming_it() {
    let ns = Netns::new("ifgone");
    let d = TempDir::new("ifgone");
    let log = d.path().join("log");
    veth(&ns, "xav0", "xav1");
    let mut agent = agent_on(&ns, &log, "xav0", Stdio::piped());
    wait_attached(&ns, &mut agent);
    ip_in(&ns, &["link", "del", "xav0"]);
    wait_unaudited(&mut agent, &log, "xav0", "gone");
    veth(&ns, "xav0", "xav1");
    let (code, err) = exit_and_stderr(&mut agent);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("\"xav0\" now names another device"), "{err}");
    // `status` says why it stopped, not "stopped cleanly".
    let shown = run(&["status", "--state-dir", s(&log)]);
    let out = String::from_utf8_lossy(&shown.stdout);
    assert!(
        out.contains("on an error") && out.contains("now names another device"),
        "{out}"
    );
}

/// A configured interface that does not exist at the start: the agent audits the others,
/// names it in its status and raises `XA-IFACE-UNAUDITED`, and stops when it appears, for
/// the restart that attaches it; not for a device under its name the program cannot run on.
#[test]
fn an_interface_absent_at_the_start_is_watched_and_the_others_audited() {
    let ns = Netns::new("ifabsent");
    let d = TempDir::new("ifabsent");
    let log = d.path().join("log");
    let mut agent = agent_on(&ns, &log, "xaw0", Stdio::piped());
    wait_unaudited(&mut agent, &log, "xaw0", "absent");
    assert!(ns.has_xdp(), "the interface that exists is audited");
    wait_until(Duration::from_secs(20), "the alert in alerts.jsonl", || {
        std::fs::read_to_string(log.join("alerts.jsonl")).is_ok_and(|t| {
            t.lines()
                .any(|l| l.contains("\"XA-IFACE-UNAUDITED\"") && l.contains("\"xaw0\""))
        })
    });
    // A device under that name the program cannot run on (no Ethernet headers): a restart
    // would fail on it, so the agent goes on and says why.
    ip_in(&ns, &["tuntap", "add", "dev", "xaw0", "mode", "tun"]);
    wait_unaudited(&mut agent, &log, "xaw0", "cannot be attached");
    ip_in(&ns, &["link", "del", "xaw0"]);
    veth(&ns, "xaw0", "xaw1");
    let (code, err) = exit_and_stderr(&mut agent);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("\"xaw0\" exists now"), "{err}");
}

/// One interface held by another XDP program (another agent's): the start audits the others
/// and reports it, where it refused to start at all.
#[test]
fn an_interface_held_by_another_program_is_reported_and_the_others_audited() {
    let ns = Netns::new("busy2");
    let d = TempDir::new("busy2");
    let mut first = Reaped(
        ns.agent(&d.path().join("a"))
            .arg("--no-pin")
            .stderr(Stdio::null())
            .spawn()
            .expect("first agent"),
    );
    wait_attached(&ns, &mut first);
    veth(&ns, "xab0", "xab1");
    let log = d.path().join("b");
    let mut second = agent_on(&ns, &log, "xab0", Stdio::null());
    wait_unaudited(&mut second, &log, "lo", "already has an XDP program");
    let shown = Command::new("ip")
        .args(["-n", &ns.0, "link", "show", "xab0"])
        .output()
        .expect("ip link show");
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("xdp"),
        "the free interface is audited"
    );
    for agent in [&mut second, &mut first] {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
        let status = wait_within(&mut agent.0, ENDS_WITHIN, "an agent after SIGTERM");
        assert!(status.success(), "exits 0 on SIGTERM");
    }
}

/// The same interface given twice is refused before anything is attached.
#[test]
fn an_interface_given_twice_is_refused() {
    let d = TempDir::new("iface2");
    let o = run(&[
        "run",
        "--iface",
        "lo",
        "--iface",
        "lo:wan",
        "--log-dir",
        s(d.path()),
    ]);
    assert_error(&o, &["--iface lo", "twice"]);
}
