//! The CLI tests' helpers, shared by `cli.rs` (the commands other than `run`) and
//! `cli_run.rs` (`run`): the real binary run, the shape of its failure checked (the error
//! first on stderr, said once, naming what is at fault), unique names, and a network
//! namespace and a child process removed on drop, and a child waited for with a deadline.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_xdp-audit");

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("spawn xdp-audit")
}

/// Checks the shape of a failure and returns its first line: non-zero exit, nothing on
/// stdout, the error first on stderr and naming each of `names`, and no part of it (an OS
/// error, a file's message) said twice anywhere on stderr.
#[track_caller]
pub fn assert_error(o: &Output, names: &[&str]) -> String {
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
pub fn assert_said_once(all: &str, message: &str) {
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
pub fn unique(tag: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// A network namespace removed on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Self {
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

    /// `xdp-audit run --iface lo --log-dir LOG_DIR --state-dir LOG_DIR-state` inside the
    /// namespace: a state directory of its own (the default is one per machine, and the
    /// second agent on it is refused); a later `--state-dir` wins.
    pub fn agent(&self, log_dir: &Path) -> Command {
        let mut state = log_dir.as_os_str().to_owned();
        state.push("-state");
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
        .arg(log_dir)
        .arg("--state-dir")
        .arg(state);
        c
    }

    pub fn has_xdp(&self) -> bool {
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
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How long a command expected to end (an agent that must refuse, one sent SIGTERM) may
/// run: a hang guard, far above the seconds it takes, so a regression that makes it keep
/// running fails the test instead of hanging it.
pub const ENDS_WITHIN: Duration = Duration::from_secs(60);

/// Waits for `child` to exit; if it is still running after `timeout`, kills and reaps it
/// and fails the test saying `what` did not end.
#[track_caller]
pub fn wait_within(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} was still running after {timeout:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// [`Command::output`] with a deadline: runs `cmd` with stdout and stderr captured and fails
/// the test, killing the child, if it has not ended within [`ENDS_WITHIN`].
#[track_caller]
pub fn output_within(cmd: &mut Command, what: &str) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut child = Reaped(child);
    // Read both pipes while waiting, so a child that writes much never blocks on a full one.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.0.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.0.stderr.take().map(|p| Box::new(p) as _));
    let status = wait_within(&mut child.0, ENDS_WITHIN, what);
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}
