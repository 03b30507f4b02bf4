//! Instruction counts of one function of a bench, by Valgrind's callgrind: the bench runs
//! itself again under callgrind with a variant named in [`ENV`], collection on only inside
//! the function named (and per thread), and reads the main thread's count. Instruction counts
//! repeat to the instruction where timed ratios on a shared 2-core machine spread by several
//! percent. They weigh every instruction alike (a cache miss or a futex wake counts as what
//! it executes), so a bench prints them beside its timed ratios, not in their place.

/// Set in the process callgrind runs: the variant to run, in the bench's own syntax.
pub const ENV: &str = "XDP_AUDIT_BENCH_CALLGRIND";

/// First thing in the process callgrind runs: large blocks from mmap, so a growing map's
/// reallocation is a remap, never a copy. Whether the heap let a vector grow in place (no
/// copy) or not (a copy of all of it) depends on what else was allocated, such as the alert
/// stage's batches; it moved the counts by up to 60 instructions a record either way.
pub fn child_setup() {
    // SAFETY: mallopt has no preconditions; called before this process starts threads.
    let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 10) };
    assert_eq!(set, 1, "mallopt(M_MMAP_THRESHOLD)");
}

/// The main thread's instructions inside functions whose symbol contains `function`, when
/// this bench runs again under callgrind with [`ENV`] set to `variant`; `None` (said why)
/// when Valgrind is not there or the run fails.
pub fn count(bench: &str, function: &str, variant: &str) -> Option<u64> {
    let dir = std::env::temp_dir().join(format!(
        "xdp-audit-bench-{bench}-callgrind-{}-{}",
        variant.replace([':', '/'], "-"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("callgrind output folder");
    let exe = std::env::current_exe().expect("the bench's own path");
    let run = std::process::Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--collect-atstart=no",
            "--separate-threads=yes",
            "--quiet",
        ])
        .arg(format!("--toggle-collect=*{function}*"))
        .arg(format!("--callgrind-out-file={}/cg.out", dir.display()))
        .arg(&exe)
        .env(ENV, variant)
        .output();
    let counted = match run {
        // Valgrind warns of every bpf(2) command it does not know: shown only on a failure.
        Ok(o) if o.status.success() => main_thread_instructions(&dir),
        Ok(o) => {
            println!(
                "{bench}: callgrind of the {variant} variant failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
            None
        }
        Err(e) => {
            println!("{bench}: no instruction counts (valgrind: {e}; `apt install valgrind`)");
            None
        }
    };
    let _ = std::fs::remove_dir_all(dir);
    counted
}

/// The count of the main thread's callgrind file (`cg.out-01`, its `summary:` or `totals:`
/// line).
fn main_thread_instructions(dir: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("cg.out-01")).ok()?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
}
