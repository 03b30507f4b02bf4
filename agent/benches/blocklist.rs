//! Blocklist figures: parse + compile of 1,000,000 mixed entries, re-apply of a 10,000-line
//! edit, and peak RSS, each next to a baseline measured in the same run.
//!
//! Run: `cargo bench -p xdp-audit --bench blocklist`. The kernel map load is not included.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use xdp_audit::blocklist::{random_key, Capacity, ListKind, ListSet};
use xdp_audit::store::testgen::Rng;

const TOTAL: usize = 1_000_000;
const EDIT: usize = 10_000;

/// One entry line; `i` picks the kind so kinds are interleaved through the file:
/// 45% v4 exact, 15% v4 prefixes, 15% v6 exact, 15% v6 prefixes, 10% domains.
fn entry(rng: &mut Rng, i: usize) -> String {
    let r = rng.next_u64();
    match i % 20 {
        0..=8 => std::net::Ipv4Addr::from(r as u32).to_string(),
        9..=11 => {
            let len = 20 + (r >> 32) as u32 % 12;
            let addr = (r as u32) & !(u32::MAX >> len);
            format!("{}/{len}", std::net::Ipv4Addr::from(addr))
        }
        12..=14 => {
            std::net::Ipv6Addr::from((u128::from(r) << 64) | u128::from(rng.next_u64())).to_string()
        }
        15..=17 => {
            let len = 32 + (r >> 40) as u32 % 96;
            let addr = ((u128::from(r) << 64) | u128::from(rng.next_u64())) & !(u128::MAX >> len);
            format!("{}/{len}", std::net::Ipv6Addr::from(addr))
        }
        _ => {
            let tld = ["com", "net", "org", "io", "example"][(r % 5) as usize];
            let labels = 1 + (r >> 8) % 3;
            let mut name = String::new();
            for _ in 0..labels {
                name.push_str(&format!("{:x}.", rng.next_u64() & 0xff_ffff_ffff));
            }
            name.push_str(tld);
            name
        }
    }
}

fn write_file(path: &Path, lines: &[String]) {
    let f = std::fs::File::create(path).expect("create bench list");
    let mut w = BufWriter::new(f);
    for l in lines {
        w.write_all(l.as_bytes()).expect("write");
        w.write_all(b"\n").expect("write");
    }
    w.flush().expect("flush");
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The floor any parser pays: read the file and find its lines.
fn baseline_read(path: &Path) -> Duration {
    let t = Instant::now();
    let bytes = std::fs::read(path).expect("read");
    let n = bytes.split(|&b| b == b'\n').count();
    std::hint::black_box(n);
    t.elapsed()
}

/// CPU time of the whole process (all threads): on a shared machine wall time varies with
/// other load, CPU time much less.
fn cpu_time() -> Duration {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage into the pointer it is given.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) };
    if r != 0 {
        return Duration::ZERO;
    }
    // SAFETY: initialised by the successful call above.
    let u = unsafe { u.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Runs `f`, returning its result, wall time and CPU time.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (t, c) = (Instant::now(), cpu_time());
    let r = f();
    (r, t.elapsed(), cpu_time().saturating_sub(c))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Minimum and median of a set of timings: the minimum is the figure least disturbed by other
/// load on the machine, the median shows the spread.
fn summary(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2])
}

fn report(what: &str, times: &mut [(Duration, Duration)], bases: &mut [Duration], ops: usize) {
    let mut wall: Vec<Duration> = times.iter().map(|t| t.0).collect();
    let mut cpu: Vec<Duration> = times.iter().map(|t| t.1).collect();
    let (min, med) = summary(&mut wall);
    let (cmin, _) = summary(&mut cpu);
    let (bmin, _) = summary(bases);
    println!(
        "{what}: wall min {:.1} ms, median {:.1} ms; CPU min {:.1} ms; baseline read+split min {:.1} ms; \
         ratio {:.1}x (wall min / baseline); delta {ops} map ops",
        ms(min),
        ms(med),
        ms(cmin),
        ms(bmin),
        min.as_secs_f64() / bmin.as_secs_f64()
    );
}

fn main() {
    // As the agent runs (see `use_mmap_for_large_buffers`); XDP_AUDIT_BENCH_GLIBC_DEFAULT=1
    // measures glibc's default allocator tuning instead.
    let tuned = std::env::var_os("XDP_AUDIT_BENCH_GLIBC_DEFAULT").is_none();
    if tuned {
        xdp_audit::blocklist::use_mmap_for_large_buffers();
    }
    let rounds: usize = std::env::var("XDP_AUDIT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let dir = std::env::temp_dir().join(format!("xdp-audit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("block.txt");
    let mut rng = Rng::new(0x5eed);
    let mut lines: Vec<String> = (0..TOTAL).map(|i| entry(&mut rng, i)).collect();
    write_file(&path, &lines);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "list: {TOTAL} lines, {:.1} MiB; {rounds} rounds; allocator: {}",
        size as f64 / 1048576.0,
        if tuned {
            "mmap threshold 1 MiB (use_mmap_for_large_buffers)"
        } else {
            "glibc default"
        }
    );

    let mut bases = Vec::new();
    let (mut loads, mut edits, mut scattered) = (Vec::new(), Vec::new(), Vec::new());
    let (mut load_ops, mut edit_ops, mut scattered_ops) = (0, 0, 0);
    let rss_before = status_kib("VmRSS:");
    let mut rss_loaded = 0;
    for round in 0..rounds {
        bases.push(baseline_read(&path));
        let key = random_key().expect("getrandom");
        let ((mut set, (delta, diags)), wall, cpu) = timed(|| {
            let mut set = ListSet::new([(path.clone(), ListKind::Block)], key);
            let r = set.reload_all();
            (set, r)
        });
        // As the agent runs: edits are checked against the tables sized at start.
        set.set_capacity(Capacity::for_lists(set.compiled(), 65_536));
        loads.push((wall, cpu));
        assert!(
            diags.is_empty(),
            "generated list must be good: {}",
            diags[0]
        );
        load_ops = delta.block.len();
        drop(delta);
        if round == 0 {
            rss_loaded = status_kib("VmRSS:");
            let s = set.compiled().block.stats;
            println!(
                "compiled: v4 exact {}, v4 prefixes {}, v6 exact {}, v6 prefixes {}, domains {}, folded {}",
                s.v4_exact, s.v4_prefix, s.v6_exact, s.v6_prefix, s.domains, s.folded()
            );
        }

        // A contiguous 10,000-line edit in the middle (a feed update replacing a block).
        let at = TOTAL / 2;
        for (k, line) in lines[at..at + EDIT].iter_mut().enumerate() {
            *line = entry(&mut rng, k);
        }
        write_file(&path, &lines);
        bases.push(baseline_read(&path));
        let (delta, wall, cpu) = timed(|| set.reload(&path).expect("edit is good"));
        edits.push((wall, cpu));
        edit_ops = delta.block.len();

        // The worst case for the incremental parse: 10,000 lines changed all over the file.
        let step = TOTAL / EDIT;
        for k in 0..EDIT {
            lines[k * step + round] = entry(&mut rng, k);
        }
        write_file(&path, &lines);
        let (delta, wall, cpu) = timed(|| set.reload(&path).expect("edit is good"));
        scattered.push((wall, cpu));
        scattered_ops = delta.block.len();
    }
    report("parse+compile 1M", &mut loads, &mut bases, load_ops);
    report(
        "10k-line contiguous edit re-applied",
        &mut edits,
        &mut bases,
        edit_ops,
    );
    report(
        "10k lines scattered edit re-applied",
        &mut scattered,
        &mut bases,
        scattered_ops,
    );
    println!(
        "RSS with the lists loaded (first round, delta dropped): {:.1} MiB; baseline before loading {:.1} MiB \
         (the generator's strings); ratio {:.2}x; +{:.1} MiB",
        rss_loaded as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        rss_loaded as f64 / rss_before.max(1) as f64,
        rss_loaded.saturating_sub(rss_before) as f64 / 1024.0
    );
    println!(
        "peak RSS (VmHWM) over all rounds: {:.1} MiB (two versions of the list exist during a reload)",
        status_kib("VmHWM:") as f64 / 1024.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
