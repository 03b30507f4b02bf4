//! Running the `xdp-audit` binary inside a lab namespace and reading its audit log.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::lab::Lab;

/// The agent binary: `XDP_AUDIT_BIN`, or the one cargo built next to this test binary.
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("XDP_AUDIT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("current_exe")?;
    // target/<profile>/deps/<test> -> target/<profile>/xdp-audit
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary has no target directory")?;
    let bin = dir.join("xdp-audit");
    if !bin.exists() {
        bail!(
            "{} not built; run `cargo build -p xdp-audit` or set XDP_AUDIT_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

/// Waits until process `pid` handles SIGTERM, as `/proc/PID/status` shows: blocked (the first
/// thing the agent's `main` does; a SIGTERM then waits for its handler) or caught (once the
/// started agent installed its handler and unblocked it). Before that (in `ip netns exec`, which
/// execs the agent in place under the same pid, or in the dynamic loader) a SIGTERM ends the
/// process as it ends any. Fails if that did not happen within `timeout`.
pub fn wait_until_sigterm_handled(pid: u32, timeout: Duration) -> anyhow::Result<()> {
    let path = format!("/proc/{pid}/status");
    let deadline = Instant::now() + timeout;
    loop {
        let status = std::fs::read_to_string(&path).unwrap_or_default();
        let has_sigterm = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
                .is_some_and(|m| m & (1 << (libc::SIGTERM - 1)) != 0)
        };
        if has_sigterm("SigBlk:") || has_sigterm("SigCgt:") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the agent did not handle SIGTERM within {timeout:?} of its start ({path}: {status})");
        }
        // Polled often: a test may mean to signal as early as the agent can handle it.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A running agent; its stderr is forwarded to ours, and watched for "xdp-audit running".
pub struct Agent {
    child: Option<Child>,
    bin: PathBuf,
    /// The log directory.
    pub log_dir: PathBuf,
    lines: mpsc::Receiver<String>,
    /// Every stderr line read so far, for what was logged before a wait.
    seen: Vec<String>,
}

impl Agent {
    /// Starts `bin run` in namespace `ns` with `args` and waits until it is attached.
    pub fn start(
        lab: &Lab,
        ns: &str,
        bin: &Path,
        log_dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut agent = Self::spawn(lab, ns, bin, log_dir, args)?;
        // A start loads the program (seconds of verifier) on a machine that may be loaded.
        agent.wait_for("xdp-audit running", Duration::from_secs(60))?;
        Ok(agent)
    }

    /// Starts `bin run` as [`Agent::start`] does, without waiting for it to attach: for a
    /// test that kills it at any moment of its start.
    pub fn spawn(
        lab: &Lab,
        ns: &str,
        bin: &Path,
        log_dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::spawn_command(Self::command(lab, ns, bin, log_dir, args)?, bin, log_dir)
    }

    /// Starts `bin run` as [`Agent::start`] does, told to abort at the crash point `point`
    /// (`XDP_AUDIT_CRASH_AT`, which may say `point:N`: once N events are counted there):
    /// for a test that drives traffic until it dies as a kill there would stop it.
    pub fn start_crashing_at(
        lab: &Lab,
        ns: &str,
        bin: &Path,
        log_dir: &Path,
        args: &[&str],
        point: &str,
    ) -> anyhow::Result<Self> {
        let mut c = Self::command(lab, ns, bin, log_dir, args)?;
        c.env("XDP_AUDIT_CRASH_AT", point);
        let mut agent = Self::spawn_command(c, bin, log_dir)?;
        agent.wait_for("xdp-audit running", Duration::from_secs(60))?;
        Ok(agent)
    }

    fn spawn_command(
        mut command: std::process::Command,
        bin: &Path,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn xdp-audit")?;
        let stderr = child.stderr.take().context("agent stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  [agent] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child: Some(child),
            bin: bin.to_owned(),
            log_dir: log_dir.to_owned(),
            lines: rx,
            seen: Vec::new(),
        })
    }

    /// The command line [`Agent::start`] runs.
    fn command(
        lab: &Lab,
        ns: &str,
        bin: &Path,
        log_dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<std::process::Command> {
        let mut c = lab.cmd(ns, bin.to_str().context("binary path is not UTF-8")?);
        c.arg("run")
            .args(["--log-dir", log_dir.to_str().context("log dir not UTF-8")?])
            .arg("--state-dir")
            .arg(log_dir.join("state"))
            .args(args);
        Ok(c)
    }

    /// Runs the agent as [`Agent::start`] would, told to abort at the crash point `point`
    /// (`XDP_AUDIT_CRASH_AT`, as a kill there would stop it); fails unless it died of
    /// SIGABRT within `timeout`. Returns its stderr.
    pub fn crash_at(
        lab: &Lab,
        ns: &str,
        bin: &Path,
        log_dir: &Path,
        args: &[&str],
        point: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        use std::io::Read as _;
        use std::os::unix::process::ExitStatusExt as _;
        let mut child = Self::command(lab, ns, bin, log_dir, args)?
            .env("XDP_AUDIT_CRASH_AT", point)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn xdp-audit")?;
        let mut stderr = child.stderr.take().context("agent stderr")?;
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let waited = crate::wait::poll_until(timeout, "the agent aborts", || {
            Ok(child.try_wait()?.is_some())
        });
        if waited.is_err() {
            let _ = child.kill();
        }
        let status = child.wait().context("wait for the agent")?;
        let text = reader.join().unwrap_or_default();
        for line in text.lines() {
            eprintln!("  [agent] {line}");
        }
        waited?;
        if status.signal() != Some(libc::SIGABRT) {
            bail!("the agent told to abort at {point:?} ended with {status} instead");
        }
        Ok(text)
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return Ok(line);
                    }
                }
                Err(_) => bail!("agent did not log {needle:?} within {timeout:?}"),
            }
        }
    }

    /// Runs `status` and `query` with `bin` instead of the binary the agent was started with:
    /// a test that starts the agent through a wrapper (a unit's `ExecStartPre`, run as root
    /// in the namespace's own mount namespace) reads the store as an operator would, with the
    /// plain binary in the host namespace, where the wrapper's mounts must not happen.
    pub fn read_with(&mut self, bin: &Path) {
        self.bin = bin.to_owned();
    }

    /// The agent's process id (`ip netns exec` execs it in place), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The first stderr line read so far (by the waits) that contains `needle`.
    pub fn logged(&self, needle: &str) -> Option<&str> {
        self.seen
            .iter()
            .map(String::as_str)
            .find(|l| l.contains(needle))
    }

    /// How the agent ended, if it has (without waiting).
    pub fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait().context("poll the agent"),
            None => bail!("agent already stopped"),
        }
    }

    /// Kills the agent with SIGKILL, as a crash would, and waits for it.
    pub fn crash(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("agent already stopped")?;
        child.kill().context("SIGKILL the agent")?;
        child.wait().context("wait for the agent")?;
        Ok(())
    }

    /// Waits until the agent handles SIGTERM ([`wait_until_sigterm_handled`]): a SIGTERM sent
    /// after this stops it cleanly, at whatever moment of its start or of its run.
    pub fn wait_until_sigterm_handled(&self, timeout: Duration) -> anyhow::Result<()> {
        let pid = self.pid().context("agent already stopped")?;
        wait_until_sigterm_handled(pid, timeout)
    }

    /// Sends SIGTERM without waiting: the agent begins its clean stop.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("agent already stopped")?;
        // SAFETY: kill(2) on our own child (`ip netns exec` execs the agent in place).
        if unsafe { libc::kill(child.id() as i32, libc::SIGTERM) } != 0 {
            bail!("SIGTERM the agent: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends SIGTERM and waits, two minutes at most (an agent that hangs at its stop is
    /// killed and fails the test rather than hang it); returns the exit code.
    pub fn stop(&mut self) -> anyhow::Result<i32> {
        self.terminate()?;
        let mut child = self.child.take().context("agent already stopped")?;
        let mut status = None;
        let waited = crate::wait::poll_until(
            Duration::from_secs(120),
            "the agent stopped after SIGTERM",
            || {
                status = child.try_wait().context("wait for the agent")?;
                Ok(status.is_some())
            },
        );
        if let Err(e) = waited {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e.context("killed it"));
        }
        status
            .and_then(|s| s.code())
            .context("agent killed by a signal")
    }

    /// `xdp-audit status --json` for this agent.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let out = std::process::Command::new(&self.bin)
            .args(["status", "--json", "--state-dir"])
            .arg(self.log_dir.join("state"))
            .output()
            .context("run xdp-audit status")?;
        if !out.status.success() {
            bail!(
                "xdp-audit status failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("status --json output")
    }

    /// Every record in the audit store, through `xdp-audit query --format jsonl`.
    pub fn records(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        self.query(&[])
    }

    /// The records `xdp-audit query --format jsonl ARGS` finds in the audit store.
    pub fn query(&self, args: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
        let text = self.query_text(&["--format", "jsonl"], args)?;
        text.lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("bad record {l}")))
            .collect()
    }

    /// What `xdp-audit query ARGS` prints (the table unless ARGS name a format).
    pub fn query_table(&self, args: &[&str]) -> anyhow::Result<String> {
        self.query_text(&[], args)
    }

    fn query_text(&self, format: &[&str], args: &[&str]) -> anyhow::Result<String> {
        let out = std::process::Command::new(&self.bin)
            .arg("query")
            .args(format)
            .arg("--log-dir")
            .arg(&self.log_dir)
            .args(args)
            .output()
            .context("run xdp-audit query")?;
        if !out.status.success() {
            bail!(
                "xdp-audit query {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8(out.stdout).context("query output is not UTF-8")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
