//! The `xdp-audit run` error paths: each exits non-zero with a message that names the
//! interface, directory or flag at fault. Needs root (it attaches XDP inside a namespace).

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// A network namespace removed on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("xa-cli-{tag}-{}", std::process::id());
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
        assert!(ok.success());
        ns
    }

    fn agent(&self, log_dir: &std::path::Path) -> Command {
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
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn tmp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("xdp-audit-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn a_missing_interface_is_named() {
    let o = run(&["run", "--iface", "nosuchif0", "--log-dir", "/tmp"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("\"nosuchif0\"") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn an_unusable_log_dir_is_named_before_the_kernel_is_touched() {
    let d = tmp("logdir");
    let file = d.join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let bad = file.join("log");
    let o = run(&[
        "run",
        "--iface",
        "lo",
        "--log-dir",
        bad.to_str().expect("utf8"),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(bad.to_str().expect("utf8")) && e.contains("--log-dir"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_sizes_name_the_flag() {
    let o = run(&[
        "run",
        "--iface",
        "lo",
        "--log-dir",
        "/tmp",
        "--ringbuf-bytes",
        "1000",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--ringbuf-bytes 1000"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "run",
        "--iface",
        "lo",
        "--log-dir",
        "/tmp",
        "--inactive-timeout",
        "soon",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("soon"), "{}", stderr(&o));
}

#[test]
fn without_privileges_the_error_says_root() {
    let d = tmp("nopriv");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            BIN,
            "run",
            "--iface",
            "lo",
            "--log-dir",
        ])
        .arg(d.join("log"))
        .output()
        .expect("spawn setpriv");
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("run as root"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_busy_xdp_slot_is_reported_and_the_first_agent_keeps_running() {
    let ns = Netns::new("busy");
    let d = tmp("busy");
    let mut first = ns
        .agent(&d.join("a"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("first agent");
    // Wait until the first agent holds the slot.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("ip")
            .args(["-n", &ns.0, "link", "show", "lo"])
            .output()
            .expect("ip");
        if String::from_utf8_lossy(&out.stdout).contains("xdp") {
            break;
        }
        assert!(Instant::now() < deadline, "first agent never attached");
        assert!(
            first.try_wait().expect("wait").is_none(),
            "first agent exited early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = ns.agent(&d.join("b")).output().expect("second agent");
    assert!(!second.status.success());
    let e = stderr(&second);
    assert!(
        e.contains("\"lo\"") && e.contains("already has an XDP program"),
        "{e}"
    );
    assert!(
        first.try_wait().expect("wait").is_none(),
        "the first agent must keep running"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    let status = first.wait().expect("wait first");
    assert!(status.success(), "first agent exits 0 on SIGTERM");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_config_file_supplies_the_settings_and_the_command_line_wins() {
    let d = tmp("config");
    let cfg = d.join("agent.toml");
    let cfg_s = cfg.to_str().expect("utf8");
    let log = d.join("log");
    let write = |retention: u32| {
        std::fs::write(
            &cfg,
            format!("iface = [\"nosuchif0\"]\nlog-dir = {log:?}\nretention-days = {retention}\n"),
        )
        .expect("write config")
    };
    write(30);
    let o = run(&["run", "--config", cfg_s]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&format!("{cfg_s}:3: retention-days")) && e.contains("90"),
        "the file's mistake by file, line and key: {e}"
    );

    write(120);
    let o = run(&["run", "--config", cfg_s]);
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("\"nosuchif0\""),
        "the interface comes from the file: {e}"
    );
    let o = Command::new(BIN)
        .env("XDP_AUDIT_CONFIG", &cfg)
        .arg("run")
        .output()
        .expect("spawn xdp-audit");
    assert!(
        stderr(&o).contains("\"nosuchif0\""),
        "XDP_AUDIT_CONFIG names the file too: {}",
        stderr(&o)
    );
    let o = run(&["run", "--config", cfg_s, "--retention-days", "30"]);
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("--retention-days") && e.contains("90"),
        "a flag on the command line wins over the file: {e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
