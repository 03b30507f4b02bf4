//! Kills at random moments: a pinned agent is killed (SIGKILL; now and then SIGTERM, or SIGTERM
//! and a SIGKILL in the middle of the clean stop) at moments a seeded generator picks, in the
//! middle of its work or of its start, while datagrams of random sizes go from a few hundred
//! source ports to the server, to an address the blocklist names, and to one that an edit of
//! the list file blocks and unblocks at random moments too. Every datagram sent must be in
//! the store exactly once, in packets and in frame bytes; what the records say passed must be
//! what each server received; the store must verify. First starts are killed as well. A
//! failure prints the seed; `XDP_AUDIT_CHAOS_SEED=N` replays its moments. Needs root.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xdp_audit_lab::agent::{binary, Agent};
use xdp_audit_lab::lab::{self, sh, Lab, TempDir};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::pins::Bpffs;
use xdp_audit_lab::wait::poll_until;

/// Where the datagrams go.
const PORT: u16 = 7171;
/// An address of the internet side the blocklist names: one datagram in ten goes there.
const BLOCKED: &str = "203.0.113.66";
/// An address of the internet side the list file names now and then: one in ten goes there.
const TOGGLED: &str = "203.0.113.77";
/// The client's source ports: each is a flow, idle now and then past the inactive timeout.
const SPORTS: std::ops::Range<u16> = 45000..45300;
/// Frame bytes around a datagram's payload: Ethernet 14, IPv4 20, UDP 8.
const UDP_OVERHEAD: u64 = 42;
/// Agents killed before the last one, which is stopped.
const KILLS: usize = 7;

/// A flow: (destination, source port).
type Flow = (String, u16);

/// What a flow carried, as the client sent it (`passed`: as its server received it), or as
/// its records say (`passed`: packets less those dropped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Count {
    packets: u64,
    bytes: u64,
    passed: u64,
}

/// A small deterministic generator (xorshift64*), so a seed replays a run's moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `range`.
    fn within(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next() % (range.end - range.start)
    }

    fn millis(&mut self, range: std::ops::Range<u64>) -> Duration {
        Duration::from_millis(self.within(range))
    }
}

/// A server at `addr`: counts the datagrams it receives per source port until stopped.
fn receive(
    lab: &Lab,
    addr: &'static str,
    stop: Arc<AtomicBool>,
) -> JoinHandle<anyhow::Result<HashMap<Flow, u64>>> {
    let socket =
        run_in(&lab.internet, move || Ok(UdpSocket::bind((addr, PORT))?)).expect("bind a server");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    std::thread::spawn(move || {
        let mut tally = HashMap::new();
        let mut buf = [0u8; 2048];
        loop {
            match socket.recv_from(&mut buf) {
                Ok((_, from)) => *tally.entry((addr.to_owned(), from.port())).or_default() += 1,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(tally);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    })
}

/// The client: a datagram every 2 ms from a random port of [`SPORTS`], 1 to 400 payload
/// bytes, to the server, [`BLOCKED`] or [`TOGGLED`], until stopped; returns the packets and
/// frame bytes it sent per flow.
fn send(
    lab: &Lab,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> JoinHandle<anyhow::Result<HashMap<Flow, Count>>> {
    let sockets = run_in(&lab.client, || {
        SPORTS
            .map(|p| Ok((p, UdpSocket::bind((lab::CLIENT_V4, p))?)))
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .expect("bind the client's ports");
    std::thread::spawn(move || {
        let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
        let mut tally = HashMap::<Flow, Count>::new();
        let payload = [0xa5u8; 400];
        while !stop.load(Ordering::Relaxed) {
            let (port, socket) = &sockets[rng.within(0..sockets.len() as u64) as usize];
            let len = rng.within(1..401) as usize;
            let to = [BLOCKED, TOGGLED][..]
                .get(rng.within(0..10) as usize)
                .copied()
                .unwrap_or(lab::SERVER_V4);
            socket.send_to(&payload[..len], (to, PORT))?;
            let t = tally.entry((to.to_owned(), *port)).or_default();
            t.packets += 1;
            t.bytes += len as u64 + UDP_OVERHEAD;
            // The traffic's pace, not a wait for a condition.
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(tally)
    })
}

/// What the store's UDP records to [`PORT`] carry, per flow.
fn recorded(records: &[serde_json::Value]) -> HashMap<Flow, Count> {
    let mut tally = HashMap::<Flow, Count>::new();
    for r in records
        .iter()
        .filter(|r| r["proto"] == "udp" && r["dst_port"] == PORT)
    {
        let port = r["src_port"].as_u64().expect("a source port") as u16;
        let to = r["dst_ip"].as_str().expect("a destination").to_owned();
        let t = tally.entry((to, port)).or_default();
        let packets = r["packets"].as_u64().expect("packets");
        t.packets += packets;
        t.bytes += r["bytes"].as_u64().expect("bytes");
        t.passed += packets - r["dropped"].as_u64().expect("dropped");
    }
    tally
}

/// One test's lab, pins, store, list file and seeded moments.
struct Chaos {
    // Dropped in this order: the pins first (releasing the program), then the lab.
    pins: Bpffs,
    lab: Lab,
    dir: TempDir,
    bin: PathBuf,
    instance: String,
    seed: u64,
}

impl Chaos {
    fn new(tag: &str) -> (Self, Rng) {
        let seed = std::env::var("XDP_AUDIT_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64 | 1)
            });
        eprintln!("chaos seed {seed} (XDP_AUDIT_CHAOS_SEED={seed} replays it)");
        let lab = Lab::new(tag).expect("build the netns lab");
        let pins = Bpffs::mount(&lab.id).expect("mount a bpffs for the test's pins");
        let dir = lab.temp_dir(tag).expect("temp dir");
        std::fs::write(dir.path().join("block.list"), format!("{BLOCKED}\n"))
            .expect("write the list");
        let c = Self {
            instance: format!("t{}", lab.id),
            pins,
            lab,
            dir,
            bin: binary().expect("agent binary"),
            seed,
        };
        (c, Rng(seed))
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// The pinned agent's arguments.
    fn args(&self) -> Vec<String> {
        let list = self.dir.path().join("block.list");
        [
            "--blocklist",
            list.to_str().expect("UTF-8 path"),
            "--iface",
            lab::GW_LAN_IF,
            "--pin-root",
            self.pins.arg(),
            "--instance",
            &self.instance,
            "--inactive-timeout",
            "1s",
            "--sweep-interval",
            "200ms",
            "--fsync-interval",
            "200ms",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// An agent, started without waiting for it to attach.
    fn spawn(&self) -> Agent {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Agent::spawn(&self.lab, &self.lab.gateway, &self.bin, &self.log(), &args)
            .expect("spawn the agent")
    }

    /// An agent, once it runs.
    fn start(&self) -> Agent {
        let mut agent = self.spawn();
        agent
            .wait_for("xdp-audit running", Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("seed {}: the agent starts: {e:#}", self.seed));
        agent
    }

    /// Kills `agent` after a random while, checking it did not end by itself before.
    fn kill_later(&self, rng: &mut Rng, agent: &mut Agent, within: std::ops::Range<u64>, n: usize) {
        let seed = self.seed;
        // The scenario: the agent runs for a random while, then dies.
        let run = rng.millis(within);
        std::thread::sleep(run);
        if let Some(status) = agent.exited().expect("poll the agent") {
            panic!("seed {seed}: agent {n} ended by itself ({status}) before its kill");
        }
        eprintln!("seed {seed}: agent {n} killed after {run:?}");
        agent.crash().expect("SIGKILL");
    }

    /// Gives the internet namespace `addr` as well.
    fn add_address(&self, addr: &str) {
        sh(Command::new("ip").args([
            "-n",
            &self.lab.internet,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]))
        .expect("add an address to the internet namespace");
    }

    /// Replaces the list file's text at once (a rename, as an editor saves).
    fn write_list(&self, text: &str) {
        let tmp = self.dir.path().join("block.list.new");
        std::fs::write(&tmp, text).expect("write the new list");
        std::fs::rename(&tmp, self.dir.path().join("block.list")).expect("replace the list");
    }

    /// Checks `xdp-audit verify` passes on the store.
    fn verify(&self) {
        let verify = std::process::Command::new(&self.bin)
            .args(["verify", "--log-dir"])
            .arg(self.log())
            .output()
            .expect("xdp-audit verify");
        assert!(
            verify.status.success(),
            "seed {}: the store verifies: {}{}",
            self.seed,
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }

    /// Detaches the instance; checks nothing of it is left.
    fn detach(&self) {
        let out = self
            .lab
            .cmd(&self.lab.gateway, self.bin.to_str().expect("UTF-8 path"))
            .args([
                "detach",
                "--pin-root",
                self.pins.arg(),
                "--instance",
                &self.instance,
            ])
            .output()
            .expect("xdp-audit detach");
        assert!(
            out.status.success(),
            "seed {}: detach: {}",
            self.seed,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !self.pins.path().join(&self.instance).exists(),
            "seed {}: detach leaves no pin of the instance",
            self.seed
        );
    }
}

#[test]
fn kills_at_random_moments_lose_and_double_count_no_datagram() {
    kills_at_random_moments(false);
}

/// As above, with the list file edited at random moments too. It found the late-first-drop
/// double count fixed in the sweeper; the loss of the flows a sweep had taken out of the
/// table when a kill came before their records reached the file (two timeouts in some fifty
/// runs; the sweeper now writes them first); a first drop that could still be in the ring
/// when a kill followed its flow's take (the ledger now keeps such a flow until it is
/// forgotten); and a blocked datagram recorded as passed (the sweeper's copy of the entry
/// made between the packet's count and its drop: the program now counts the drop first).
#[test]
fn kills_and_list_edits_at_random_moments_lose_and_double_count_no_datagram() {
    kills_at_random_moments(true);
}

/// Kills (and, with `edits`, list edits) at random moments under the datagrams of [`send`];
/// checks every flow's records against what was sent and received.
fn kills_at_random_moments(edits: bool) {
    let (c, mut rng) = Chaos::new(if edits { "chaose" } else { "chaos" });
    let (lab, seed) = (&c.lab, c.seed);
    c.add_address(TOGGLED);
    // The first start pins the program; from then on one is attached whatever is killed.
    let mut agent = c.start();
    let stop = Arc::new(AtomicBool::new(false));
    let servers = [lab::SERVER_V4, TOGGLED].map(|a| receive(lab, a, stop.clone()));
    let client = send(lab, seed, stop.clone());

    let began = Instant::now();
    let mut toggled = false;
    for kill in 0..KILLS {
        // The scenario: the agent runs for a random while (often less than its start takes),
        // then dies; the gateway has no agent for a random while; the list file is edited
        // now and then, while an agent runs or while none does.
        let run = rng.millis(50..3000);
        let edit_at =
            (edits && rng.within(0..2) == 0).then(|| rng.millis(0..run.as_millis() as u64 + 1000));
        let mut edit = || {
            toggled = !toggled;
            eprintln!(
                "seed {seed}: at {:?}, {TOGGLED} blocked: {toggled}",
                began.elapsed()
            );
            let text = if toggled {
                format!("{BLOCKED}\n{TOGGLED}\n")
            } else {
                format!("{BLOCKED}\n")
            };
            c.write_list(&text);
        };
        match edit_at {
            Some(at) if at < run => {
                std::thread::sleep(at);
                edit();
                std::thread::sleep(run - at);
            }
            _ => std::thread::sleep(run),
        }
        if let Some(status) = agent.exited().expect("poll the agent") {
            panic!("seed {seed}: agent {kill} ended by itself ({status}) before its kill");
        }
        let how = rng.within(0..5);
        eprintln!(
            "seed {seed}: at {:?}, agent {kill} after {run:?}: {}",
            began.elapsed(),
            [
                "SIGTERM",
                "SIGTERM then SIGKILL",
                "SIGKILL",
                "SIGKILL",
                "SIGKILL"
            ][how as usize]
        );
        match how {
            0 => {
                // A SIGTERM before the agent's `main` blocked it (in `ip netns exec` or the
                // dynamic loader) would end the process as it ends any: no clean stop to
                // expect of it.
                agent
                    .wait_until_sigterm_handled(Duration::from_secs(60))
                    .unwrap_or_else(|e| panic!("seed {seed}: {e:#}"));
                assert_eq!(
                    agent.stop().expect("SIGTERM"),
                    0,
                    "seed {seed}: a clean stop"
                );
            }
            1 => {
                agent.terminate().expect("SIGTERM");
                // The scenario: killed somewhere in its clean stop (or just after it).
                std::thread::sleep(rng.millis(0..400));
                agent.crash().expect("SIGKILL");
            }
            _ => agent.crash().expect("SIGKILL"),
        }
        let down = rng.millis(0..1000);
        match edit_at {
            Some(at) if at >= run => {
                let at = (at - run).min(down);
                std::thread::sleep(at);
                edit();
                std::thread::sleep(down - at);
            }
            _ => std::thread::sleep(down),
        }
        agent = c.spawn();
    }
    agent
        .wait_for("xdp-audit running", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("seed {seed}: the last agent starts: {e:#}"));

    stop.store(true, Ordering::Relaxed);
    let sent = client.join().expect("client thread").expect("send");
    let mut received = HashMap::new();
    for s in servers {
        received.extend(s.join().expect("server thread").expect("receive"));
    }
    let want: HashMap<Flow, Count> = sent
        .into_iter()
        .map(|(flow, c)| {
            let passed = received.get(&flow).copied().unwrap_or(0);
            (flow, Count { passed, ..c })
        })
        .collect();
    for to in [BLOCKED, TOGGLED] {
        assert!(
            want.keys().any(|(t, _)| t == to),
            "premise: some datagrams went to {to}"
        );
    }
    let to_server = |f: &Flow, c: &Count| f.0 == lab::SERVER_V4 && c.passed != c.packets;
    assert!(
        !want.iter().any(|(f, c)| to_server(f, c)),
        "premise: the server received every datagram the client sent it"
    );
    let total: u64 = want.values().map(|t| t.packets).sum();
    // Past the deadline the comparison below says which flows are short.
    let _ = poll_until(
        Duration::from_secs(30),
        "every datagram's flow has idled out and is written",
        || {
            let r = agent.records().unwrap_or_default();
            Ok(recorded(&r).values().map(|t| t.packets).sum::<u64>() >= total)
        },
    );
    assert_eq!(agent.stop().expect("SIGTERM"), 0);

    let records = agent.records().expect("query");
    let got = recorded(&records);
    let mut wrong: Vec<_> = want
        .iter()
        .filter(|(f, c)| got.get(*f) != Some(*c))
        .map(|(f, c)| (f.clone(), *c, got.get(f).copied()))
        .collect();
    wrong.extend(
        got.iter()
            .filter(|(f, _)| !want.contains_key(*f))
            .map(|(f, c)| (f.clone(), Count::default(), Some(*c))),
    );
    wrong.sort_unstable();
    let first: Vec<_> = wrong
        .iter()
        .take(3)
        .flat_map(|((to, port), ..)| {
            records
                .iter()
                .filter(move |r| r["dst_ip"] == to.as_str() && r["src_port"] == *port)
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "seed {seed}: {} of {} flows' records do not add up to what was sent and received \
         (flow, sent and received, recorded): {:?}; the records of the first three: {first:#?}",
        wrong.len(),
        want.len(),
        &wrong[..wrong.len().min(20)]
    );

    c.verify();
    c.detach();
}

/// A first start (nothing pinned yet) killed at random moments of loading, pinning and
/// attaching, again and again: the start after them runs, blocks the list's address, stops
/// cleanly, and detach leaves nothing behind.
#[test]
fn first_starts_killed_at_random_moments_leave_the_next_able_to_guard_and_detach() {
    let (c, mut rng) = Chaos::new("chaos1");
    c.add_address(BLOCKED);
    let reachable = || {
        c.lab
            .cmd(&c.lab.client, "ping")
            .args(["-n", "-q", "-c", "1", "-W", "1", BLOCKED])
            .output()
            .expect("ping (Debian package iputils-ping)")
            .status
            .success()
    };
    assert!(
        reachable(),
        "premise: {BLOCKED} answers before any agent runs"
    );
    for n in 0..6 {
        let fresh = !c.pins.path().join(&c.instance).join("prog").exists();
        let mut agent = c.spawn();
        if fresh && n % 2 == 1 {
            // Aimed at the narrow window between the first attach and the pins (the
            // verifier's load before it takes seconds and is hit by the other kills).
            agent
                .wait_for("XDP program attached", Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("seed {}: the first start attaches: {e:#}", c.seed));
            c.kill_later(&mut rng, &mut agent, 0..60, n);
        } else {
            c.kill_later(&mut rng, &mut agent, 0..5000, n);
        }
    }
    let mut agent = c.start();
    assert!(!reachable(), "seed {}: the list is enforced", c.seed);
    assert_eq!(
        agent.stop().expect("SIGTERM"),
        0,
        "seed {}: a clean stop",
        c.seed
    );
    assert!(
        !reachable(),
        "seed {}: the pinned program stays attached after a clean stop",
        c.seed
    );
    c.verify();
    c.detach();
    assert!(reachable(), "seed {}: detach unblocks", c.seed);
}
