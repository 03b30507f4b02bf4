//! A SIGTERM at any moment of the agent's start ends in a clean stop: exit status 0, a log
//! line saying how it stopped, no journal left unsealed, and the audit store verifies.
//!
//! The agent is signalled as soon as its `main` has blocked SIGTERM (its first instruction;
//! seen in `/proc/PID/status`), after each line it logs while starting, and once it runs. It
//! is spawned straight into the gateway namespace from a thread that joined it: under `ip
//! netns exec` an early signal would hit `ip` before it execs the agent. (A signal while the
//! dynamic loader runs, before `main`, ends the agent as it ends any process: it has opened
//! nothing yet.) Needs root.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use xdp_audit_lab::agent::{binary, wait_until_sigterm_handled};
use xdp_audit_lab::lab::{self, Lab, TempDir};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::pins::Bpffs;

/// How long a start or a stop may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(60);
/// A journal's header (magic, id): the size of a journal with no record.
const JOURNAL_HEADER: u64 = 16;
/// Log lines at most before "xdp-audit running" (a bound on the loop, not an expectation).
const MAX_LINES: usize = 40;

/// One test's lab, pins and store.
struct Setup {
    // Dropped in this order: the pins first (releasing the program), then the lab.
    pins: Bpffs,
    lab: Lab,
    dir: TempDir,
    bin: PathBuf,
    instance: String,
}

/// A spawned agent: killed and reaped on drop, whatever the test's outcome.
struct Spawned {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    seen: Vec<String>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Spawned {
    /// Reads stderr lines until `n` were read in all (or the agent closed stderr).
    fn read_lines(&mut self, n: usize) {
        let deadline = Instant::now() + DEADLINE;
        while self.seen.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "the agent logged {} lines within {DEADLINE:?}, waiting for {n}: {:#?}",
                    self.seen.len(),
                    self.seen
                ),
            }
        }
    }

    /// Waits until the agent blocks SIGTERM (the first thing its `main` does) or, started,
    /// catches it: from then on a SIGTERM is the agent's to handle.
    fn wait_until_sigterm_handled(&self) {
        if let Err(e) = wait_until_sigterm_handled(self.child.id(), DEADLINE) {
            panic!("{e:#}");
        }
    }

    /// Sends SIGTERM, waits for the exit (within the deadline) and for the end of stderr.
    fn terminate(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(
            rc,
            0,
            "SIGTERM to the agent: {}",
            std::io::Error::last_os_error()
        );
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for the agent") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit within {DEADLINE:?} of SIGTERM; it logged {:#?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread ends at the end of stderr, which the exit closed.
        while let Ok(line) = self.lines.recv_timeout(DEADLINE) {
            self.seen.push(line);
        }
        status
    }
}

impl Setup {
    fn new(tag: &str) -> Self {
        let lab = Lab::new(tag).expect("build the netns lab");
        let pins = Bpffs::mount(&lab.id).expect("mount a bpffs for the test's pins");
        let dir = lab.temp_dir(tag).expect("temp dir");
        Self {
            instance: format!("t{}", lab.id),
            pins,
            lab,
            dir,
            bin: binary().expect("agent binary"),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// Starts the agent on the gateway's LAN interface, without waiting for anything.
    fn spawn(&self, extra: &[&str]) -> Spawned {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["run", "--iface", lab::GW_LAN_IF, "--log-dir"])
            .arg(self.log())
            .arg("--state-dir")
            .arg(self.log().join("state"))
            .args(["--pin-root", self.pins.arg(), "--instance", &self.instance])
            .args(["--sweep-interval", "200ms", "--fsync-interval", "200ms"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = run_in(&self.lab.gateway, move || Ok(cmd.spawn()?))
            .expect("spawn the agent in the gateway namespace");
        let stderr = child.stderr.take().expect("the agent's stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  [agent] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// `xdp-audit verify` passes on the store.
    fn verify(&self, moment: &str) {
        let out = Command::new(&self.bin)
            .args(["verify", "--log-dir"])
            .arg(self.log())
            .output()
            .expect("xdp-audit verify");
        assert!(
            out.status.success(),
            "{moment}: the store verifies: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The live journals in the store that hold more than their header, with their sizes: a
    /// clean stop seals every record and leaves at most a fresh, empty journal.
    fn unsealed(&self) -> Vec<(String, u64)> {
        match std::fs::read_dir(self.log()) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let size = e.metadata().map_or(u64::MAX, |m| m.len());
                    (e.file_name().to_string_lossy().into_owned(), size)
                })
                .filter(|(n, size)| {
                    n.starts_with("journal-") && n.ends_with(".wal") && *size > JOURNAL_HEADER
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Removes the pinned instance a run left, so that the next run starts fresh.
    fn detach(&self) {
        if !self.pins.path().join(&self.instance).exists() {
            return;
        }
        let out = self
            .lab
            .cmd(&self.lab.gateway, self.bin.to_str().expect("UTF-8 path"))
            .args(["detach", "--pin-root", self.pins.arg(), "--instance"])
            .arg(&self.instance)
            .output()
            .expect("xdp-audit detach");
        assert!(
            out.status.success(),
            "detach after the run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Signals fresh agents at every moment of their start, one agent per moment: after 0, 1, 2
/// ... stderr lines, until the agent had said it runs before the signal.
fn stop_at_every_moment(tag: &str, extra: &[&str]) {
    let s = Setup::new(tag);
    let mut n = 0;
    loop {
        let mut agent = s.spawn(extra);
        agent.wait_until_sigterm_handled();
        agent.read_lines(n);
        let moment = match agent.seen.last() {
            None => "as soon as main blocked it".to_owned(),
            Some(l) => format!("after line {n} ({l:?})"),
        };
        let running = agent.seen.iter().any(|l| l.contains("xdp-audit running"));
        let status = agent.terminate();
        assert_eq!(
            status.code(),
            Some(0),
            "SIGTERM {moment}: the clean-stop exit status (not {status}); the agent logged {:#?}",
            agent.seen
        );
        let said = agent.seen.iter().any(|l| {
            l.contains("SIGTERM while starting, before the store was opened")
                || l.contains("SIGTERM: shutting down")
        });
        assert!(
            said,
            "SIGTERM {moment}: the agent says it stopped on SIGTERM: {:#?}",
            agent.seen
        );
        assert_eq!(
            s.unsealed(),
            Vec::<(String, u64)>::new(),
            "SIGTERM {moment}: every journal sealed"
        );
        if s.log().join("manifest.jsonl").exists() {
            s.verify(&moment);
        }
        drop(agent);
        s.detach();
        if running {
            break;
        }
        n += 1;
        assert!(
            n <= MAX_LINES,
            "no \"xdp-audit running\" within {MAX_LINES} lines"
        );
    }
    assert!(n >= 2, "the start logs lines before it runs, each a moment");
}

#[test]
fn sigterm_at_any_moment_of_a_pinned_start_stops_cleanly() {
    stop_at_every_moment("stop", &[]);
}

#[test]
fn sigterm_at_any_moment_of_an_unpinned_start_stops_cleanly() {
    stop_at_every_moment("stopn", &["--no-pin"]);
}
