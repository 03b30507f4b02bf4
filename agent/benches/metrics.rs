//! The metrics endpoint, each figure next to a baseline measured in the same run:
//! - a scrape of `/metrics` with 10,000 rules loaded (every one hit), through the real server
//!   over loopback, next to the same server's trivial answer (`GET /` -> 404), and the
//!   rendering alone;
//! - what the metrics cost the record path: the daemon taking 400,000 new-flow events off a
//!   full ring (reader, queue, sweeper, sweeps and status every 200 ms), with the status
//!   published to the endpoint and scraped once a second (a round of about 0.2 s holds one
//!   scrape, at its start: still far above Prometheus' default of one in 15 s) and 100 times
//!   a second (a stress: the scrapes' own work dominates), next to the same daemon without
//!   metrics. Measured as the CPU time of the
//!   record path's two threads (the reader's runtime thread, which also serves the scrapes,
//!   and the records thread) per event: on a shared machine a wall-clock rate measures the
//!   neighbours. Each round runs the three variants in a rotated order; the median of each
//!   is kept.
//!
//! Needs root (the second part loads the XDP program). Run with
//! `cargo bench -p xdp-audit --bench metrics`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/cpu.rs"]
mod cpu;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::newflows::{fill, load, start_daemon};
use xdp_audit::daemon::{Interface, Settings};
use xdp_audit::metrics::render::Static;
use xdp_audit::metrics::{http, Exporter, Latest};
use xdp_audit::status::{ListHits, RuleHits, Snapshot};

/// Rules loaded, each with hits, for the scrape.
const RULES: usize = 10_000;
/// Scrapes of each kind.
const SCRAPES: usize = 300;
/// Events per record-path round.
const EVENTS: u64 = 400_000;
/// Record-path rounds of each variant.
const ROUNDS: u64 = 7;
/// The record-path variants: no metrics, then metrics scraped at these intervals.
const VARIANTS: [Option<Duration>; 3] = [
    None,
    Some(Duration::from_secs(1)),
    Some(Duration::from_millis(10)),
];

/// A status snapshot with `RULES` rules hit, in four list files.
fn snapshot() -> Snapshot {
    let file = |i: usize| format!("/etc/xdp-audit/list-{}.list", i % 4);
    let json = serde_json::json!({
        "written_at": "2026-11-30T10:00:00Z",
        "pid": 1,
        "interfaces": ["eth1"],
        "generation": 3,
        "counters": {"parsed_tcp": 1, "dropped_by_list": 2},
        "lists": [],
        "rules": [],
    });
    let mut s: Snapshot = serde_json::from_value(json).expect("a snapshot");
    s.lists = (0..4)
        .map(|i| ListHits {
            path: file(i),
            kind: "block".into(),
            rules_hit: (RULES / 4) as u64,
            hits: 1_000_000,
        })
        .collect();
    s.rules = (0..RULES)
        .map(|i| RuleHits {
            rule: format!("{}:{}", file(i), i + 1),
            kind: "block".into(),
            hits: (RULES - i) as u64 * 7,
        })
        .collect();
    s.enrich = Some(Default::default());
    s
}

/// One request on a new connection, answered in full; returns its time and the body size.
fn get(addr: SocketAddr, path: &str, want: &str) -> (Duration, usize) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect to the endpoint");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send the request");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("read the answer");
    let took = t.elapsed();
    assert!(
        answer.starts_with(want.as_bytes()),
        "GET {path}: {:?}",
        String::from_utf8_lossy(&answer[..answer.len().min(80)])
    );
    (took, answer.len())
}

/// Serves `exporter` on a loopback port from a runtime of its own, as the agent does.
fn serve(exporter: Arc<Exporter>) -> SocketAddr {
    let listener = http::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    let addr = listener.local_addr().expect("local address");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let task = http::spawn(listener, exporter).expect("serve");
            let _ = task.await;
        });
    });
    addr
}

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q) as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn scrape() {
    let latest = Arc::new(Latest::default());
    latest.publish(snapshot());
    let fixed = Static {
        attach: vec![("eth1".into(), "native".into())],
        top_rules: xdp_audit::metrics::DEFAULT_TOP_RULES,
    };
    let exporter = Arc::new(Exporter::new(latest, fixed));
    let mut render = Vec::with_capacity(SCRAPES);
    for _ in 0..SCRAPES {
        let t = Instant::now();
        std::hint::black_box(exporter.render());
        render.push(t.elapsed());
    }
    let addr = serve(exporter);
    for _ in 0..20 {
        get(addr, "/metrics", "HTTP/1.1 200");
    }
    let (mut metrics, mut trivial) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        let (t, n) = get(addr, "/metrics", "HTTP/1.1 200");
        metrics.push(t);
        bytes = n;
        trivial.push(get(addr, "/", "HTTP/1.1 404").0);
    }
    let base = quantile(&mut trivial, 0.5);
    println!(
        "metrics scrape: {RULES} rules loaded and hit, top {} with series of their own; {SCRAPES} scrapes each, new connection each, loopback",
        xdp_audit::metrics::DEFAULT_TOP_RULES
    );
    println!(
        "{:<40} {:>10} {:>10} {:>10} {:>12}",
        "request", "median ms", "p99 ms", "max ms", "median vs 404"
    );
    for (name, v) in [
        ("GET / (404, the baseline)", &mut trivial),
        ("GET /metrics", &mut metrics),
        ("render alone (no HTTP)", &mut render),
    ] {
        let med = quantile(v, 0.5);
        println!(
            "{name:<40} {:>10.3} {:>10.3} {:>10.3} {:>11.2}x",
            ms(med),
            ms(quantile(v, 0.99)),
            ms(quantile(v, 1.0)),
            med.as_secs_f64() / base.as_secs_f64()
        );
    }
    println!("/metrics answer: {bytes} bytes");
}

/// Wall seconds and record-path CPU seconds (reader runtime thread and records thread) for
/// `EVENTS` events through the daemon, with the metrics published and scraped every
/// `scrape` (the first scrape at once), or without them (`None`).
fn daemon_rate(scrape: Option<Duration>, round: u64) -> (f64, f64) {
    let metrics = scrape.is_some();
    let (mut program, maps) = load(1 << 20).into_parts();
    fill(&mut program, round * EVENTS, EVENTS);
    let latest = metrics.then(|| Arc::new(Latest::default()));
    let settings = Settings {
        sweep_interval: Duration::from_millis(200),
        watch_lists: false,
        metrics: latest.clone(),
        ..Settings::new(
            std::env::temp_dir().join(format!("xdp-audit-bench-metrics-{}", std::process::id())),
            vec![Interface {
                name: "lo".into(),
                ifindex: 1,
            }],
        )
    };
    let (mut daemon, control) = start_daemon(settings, maps);
    let endpoint = latest.map(|l| {
        let listener = http::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let addr = listener.local_addr().expect("local address");
        (
            listener,
            Arc::new(Exporter::new(l, Static::default())),
            addr,
        )
    });
    let addr = endpoint.as_ref().map(|e| e.2);
    let (t, records0) = (Instant::now(), cpu::threads_named("xdp-audit-recor"));
    let thread = std::thread::spawn(move || {
        let reader0 = cpu::thread();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let server = endpoint.map(|(l, e, _)| http::spawn(l, e).expect("serve"));
            daemon.run().await.expect("run");
            if let Some(s) = server {
                s.abort();
            }
        });
        drop(rt);
        let reader = cpu::thread() - reader0;
        (daemon.finish().expect("finish"), reader)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = addr.zip(scrape).map(|(addr, every)| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    get(addr, "/metrics", "HTTP/1.1 200");
                    n += 1;
                    next += every;
                }
                // Short naps, so a round's end is not held up by a long interval.
                std::thread::sleep(every.min(Duration::from_millis(10)));
            }
            n
        })
    });
    while control.pipeline().processed < EVENTS {
        std::thread::sleep(Duration::from_micros(200));
    }
    let wall = t.elapsed().as_secs_f64();
    let records = cpu::threads_named("xdp-audit-recor") - records0;
    stop.store(true, Ordering::Relaxed);
    let scrapes = scraper.map(|s| s.join().expect("scraper"));
    control.stop();
    let (summary, reader) = thread.join().expect("daemon thread");
    assert_eq!(
        summary.flows.starts, EVENTS,
        "every start reached the sweeper"
    );
    if let Some(n) = scrapes {
        assert!(n > 0, "the endpoint was scraped during the round");
    }
    drop(program);
    (wall, (records + reader).as_secs_f64())
}

fn record_path() {
    let mut runs: [Vec<(f64, f64)>; VARIANTS.len()] = Default::default();
    for round in 0..ROUNDS {
        // Each variant takes each place in the order in turn.
        for k in 0..VARIANTS.len() {
            let v = (round as usize + k) % VARIANTS.len();
            let seed = round * VARIANTS.len() as u64 + k as u64;
            runs[v].push(daemon_rate(VARIANTS[v], seed));
        }
    }
    let med = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
        cpu::median(&v.iter().map(f).collect::<Vec<_>>())
    };
    let (off_wall, off_cpu) = (med(&runs[0], |r| r.0), med(&runs[0], |r| r.1));
    let per = |s: f64| s * 1e9 / EVENTS as f64;
    println!(
        "record path: {EVENTS} new-flow events through the daemon, median of {ROUNDS} rotated rounds, load average {}",
        cpu::load()
    );
    println!(
        "{:<44} {:>16} {:>10} {:>12} {:>10}",
        "daemon", "CPU ns/event", "vs off", "wall ev/s", "vs off"
    );
    for (v, scrape) in VARIANTS.iter().enumerate() {
        let (wall, cpu) = (med(&runs[v], |r| r.0), med(&runs[v], |r| r.1));
        let (name, target) = match scrape {
            None => ("without metrics (the baseline)".to_string(), String::new()),
            Some(every) => (
                format!("with metrics, scraped every {every:?}"),
                format!(
                    "   (CPU cost {:+.1}%, target <= 3%)",
                    (cpu / off_cpu - 1.0) * 100.0
                ),
            ),
        };
        println!(
            "{name:<44} {:>16.1} {:>9.3}x {:>12.0} {:>9.3}x{target}",
            per(cpu),
            cpu / off_cpu,
            EVENTS as f64 / wall,
            off_wall / wall,
        );
    }
}

fn main() {
    scrape();
    record_path();
}
