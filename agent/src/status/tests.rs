//! The status snapshot: rule hits, crash evidence, what a start hands on.

use super::*;

fn snapshot(pid: u32) -> Snapshot {
    let mut s = Snapshot::new(Vec::new(), BTreeMap::new(), &RuleBook::default(), 1, &[]);
    s.pid = pid;
    s
}

/// A range line is several prefixes, each a rule id: its hits are one line's, said once
/// (Prometheus refuses a series twice in one scrape), and the file has one line hit.
#[test]
fn the_rules_of_one_line_are_summed_as_that_line() {
    let tmp = crate::blocklist::tests::TempDir::new("status-r");
    let dir = tmp.0.clone();
    let path = dir.join("block.list");
    std::fs::write(&path, "198.51.100.1-198.51.100.6\n192.0.2.9\n").expect("write");
    let key = crate::blocklist::random_key().expect("getrandom");
    let mut set = crate::blocklist::ListSet::new([(path.clone(), ListKind::Block)], key);
    let (_, errors) = set.reload_all();
    assert!(errors.is_empty(), "{errors:?}");
    let book = RuleBook::new(&set);
    let ids: Vec<(u32, u32)> = (0..set.rule_id_bound())
        .filter_map(|id| Some((id, set.origin(id)?.line)))
        .collect();
    let range: Vec<u32> = ids.iter().filter(|i| i.1 == 1).map(|i| i.0).collect();
    assert!(range.len() >= 2, "{ids:?}");
    let hits = [(range[0], 5), (range[1], 7)];
    let s = Snapshot::new(Vec::new(), BTreeMap::new(), &book, 1, &hits);
    let name = format!("{}:1", path.display());
    assert_eq!(
        s.rules
            .iter()
            .map(|r| (r.rule.as_str(), r.hits))
            .collect::<Vec<_>>(),
        [(name.as_str(), 12)]
    );
    assert_eq!((s.lists[0].rules_hit, s.lists[0].hits), (1, 12));
}

#[test]
fn a_snapshot_never_marked_stopped_of_a_dead_pid_is_crash_evidence() {
    let tmp = crate::blocklist::tests::TempDir::new("status");
    let dir = tmp.0.clone();
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let dead = child.id();
    child.wait().expect("reap true");
    assert_eq!(
        Snapshot::crash_evidence(&dir),
        None,
        "no snapshot, no evidence"
    );
    snapshot(dead).write(&dir).expect("write");
    let e = Snapshot::crash_evidence(&dir).expect("a dead agent that never stopped");
    assert!(e.contains(&dead.to_string()), "{e}");
    Snapshot::mark_stopped(&dir).expect("mark stopped");
    assert_eq!(Snapshot::crash_evidence(&dir), None, "it stopped cleanly");
    snapshot(std::process::id()).write(&dir).expect("write");
    assert_eq!(
        Snapshot::crash_evidence(&dir),
        None,
        "an agent still running"
    );
    // The writer's pid given to another process, this one (after a reboot): its start
    // time differs, so the writer is gone.
    let mut reused = snapshot(std::process::id());
    reused.pid_start = reused.pid_start.map(|t| t + 1);
    reused.write(&dir).expect("write");
    let e = Snapshot::crash_evidence(&dir).expect("a pid reused is not the agent");
    assert!(e.contains(&std::process::id().to_string()), "{e}");
    // What a power cut leaves of a snapshot written without an fsync (a clean stop's is
    // synced): emptied, or cut.
    let whole = std::fs::read(dir.join(FILE_NAME)).expect("the snapshot");
    for (what, bytes) in [("emptied", &whole[..0]), ("cut", &whole[..whole.len() / 2])] {
        std::fs::write(dir.join(FILE_NAME), bytes).expect("damage");
        let e = Snapshot::crash_evidence(&dir).expect(what);
        assert!(e.contains("damaged"), "{what}: {e}");
    }
    // Whole JSON of another shape (a newer agent's, after a downgrade) is no damage.
    std::fs::write(dir.join(FILE_NAME), br#"{"pid": "not a number"}"#).expect("write");
    assert_eq!(Snapshot::crash_evidence(&dir), None, "another shape");
}

/// A child killed before it wrote anything: its pid and start time, taken while it ran.
fn killed_process() -> (u32, Option<u64>) {
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    let (pid, start) = (
        child.id(),
        crate::compliance::system::process_start(child.id()),
    );
    // Killed and reaped before any check, so a failing one leaves no process behind.
    child.kill().expect("kill sleep");
    child.wait().expect("reap sleep");
    assert!(start.is_some(), "/proc shows the child's start time");
    (pid, start)
}

#[test]
fn an_agent_killed_while_starting_is_evidence_for_the_next() {
    let tmp = crate::blocklist::tests::TempDir::new("starting");
    let dir = tmp.0.clone();
    // Agent A ran and stopped cleanly.
    let (a, a_start) = killed_process();
    let mut last = snapshot(a);
    last.pid_start = a_start;
    last.write(&dir).expect("write A's snapshot");
    Snapshot::mark_stopped(&dir).expect("A stops cleanly");
    // Agent B starts: no evidence, its starting snapshot in A's place; then it is killed
    // before its first sweep (its snapshot is rewritten with its own process's identity).
    let (b, b_start) = killed_process();
    let (_, starting, evidence) = Starting::begin(&dir);
    assert_eq!(evidence, None, "A stopped cleanly");
    std::mem::forget(starting);
    let mut s = Snapshot::read(&dir).expect("the starting snapshot");
    assert!(s.starting && s.stopped_at.is_none(), "{s:?}");
    assert_eq!(
        (s.pid, s.pid_start),
        (
            std::process::id(),
            crate::compliance::system::process_start(std::process::id())
        ),
        "written with the starting process's pid and start time"
    );
    (s.pid, s.pid_start) = (b, b_start);
    s.write(&dir).expect("write B's starting snapshot");
    // Agent C sees B's death.
    let (_, c_starting, evidence) = Starting::begin(&dir);
    let e = evidence.expect("B died before a clean stop");
    assert!(
        e.contains(&format!("agent pid {b} ended while starting")),
        "{e}"
    );
    // C's start fails (an error, not a crash): its snapshot is marked stopped and still
    // carries B's crash, which C never reported, to the next agent.
    drop(c_starting);
    let s = Snapshot::read(&dir).expect("C's snapshot");
    assert!(s.starting && s.stopped_at.is_some(), "{s:?}");
    let next = Snapshot::crash_evidence(&dir).expect("B's crash is handed on");
    assert_eq!(next, e);
}

/// A crash loop while starting hands every death on: however long it runs, the evidence
/// names the newest agents whole by pid within what an alert shows uncut (600 bytes), and
/// says when older ones are left out.
#[test]
fn a_crash_loop_names_its_newest_pids_whole_in_a_bounded_text() {
    let own = |pid: u32| {
        format!("agent pid {pid} ended while starting, before its first sweep, without a clean stop (it started at 2026-12-07T05:00:00.123456789Z)")
    };
    let mut evidence = own(1000);
    for pid in 1001..1040u32 {
        evidence = super::chain_crashes(&own(pid), &evidence);
        let words: Vec<&str> = evidence.split([' ', ',', ';', '(']).collect();
        let named = |p: u32| words.windows(2).any(|w| w == ["pid", &p.to_string()]);
        let newest = (pid.saturating_sub(21).max(1000)..=pid).collect::<Vec<_>>();
        assert!(newest.iter().all(|&p| named(p)), "{pid}: {evidence}");
        assert!(evidence.len() < 600, "{} bytes: {evidence}", evidence.len());
        let left_out = pid - 1000 > 21;
        assert_eq!(
            evidence.contains("earlier ones not listed"),
            left_out,
            "{evidence}"
        );
        assert!(!named(pid - 22) || pid < 1022, "{evidence}");
    }
    // What a damaged snapshot left (no pid) is counted among the earlier ones, not lost.
    let damaged = "the last status snapshot is damaged (EOF while parsing at line 1 column 0)";
    let two = super::chain_crashes(&own(7), &super::chain_crashes(&own(6), damaged));
    assert!(two.contains("pid 7") && two.contains("pid 6"), "{two}");
    assert!(two.ends_with("none known by pid"), "{two}");
    let three = super::chain_crashes(&own(8), &two);
    assert!(
        three.ends_with("pid 6 and earlier ones not listed"),
        "{three}"
    );
}

/// The program's counters, the active alerts and a stop unable to seal, as the last agent
/// left them, reach the next start, also across starts that failed (each starting snapshot hands them on).
#[test]
fn the_last_agents_counters_and_alerts_are_handed_on_by_failed_starts() {
    let tmp = crate::blocklist::tests::TempDir::new("starting-counters");
    let dir = tmp.0.clone();
    let mut last = snapshot(std::process::id());
    last.counters.insert("lost_flow_start".into(), 5);
    let active = crate::alert::Alert {
        id: crate::alert::AlertId::StoreDegraded,
        severity: crate::alert::AlertId::StoreDegraded.severity(),
        state: crate::alert::AlertState::Raised,
        text: "the disk".into(),
        subject: Default::default(),
        first_ns: 10,
        last_ns: 20,
        count: 7,
    };
    // One listed, one past the list that a clean stop hands on.
    let carried = crate::alert::Alert {
        text: "the other disk".into(),
        ..active.clone()
    };
    last.alerts = Some(crate::alert::AlertStatus {
        active: vec![active.clone()],
        carry: vec![carried.clone()],
        ..Default::default()
    });
    last.store.lost_at_stop = 9;
    last.write(&dir).expect("write the last agent's snapshot");
    Snapshot::mark_stopped(&dir).expect("it stops cleanly");
    for start in 0..3 {
        let (previous, starting, _) = Starting::begin(&dir);
        assert_eq!(previous.lost_at_stop, 9, "start {start}");
        assert!(
            previous.stopped_unsealed,
            "start {start}: its unsealed journals are no crash"
        );
        assert_eq!(
            previous.counters.get("lost_flow_start"),
            Some(&5),
            "start {start}: {previous:?}"
        );
        assert_eq!(
            previous.alerts,
            [active.clone(), carried.clone()],
            "start {start}"
        );
        drop(starting); // the start fails
    }
}

/// An agent killed while the disk refused writes held its records in memory: the next
/// start counts those its last snapshot showed as lost (nothing said so), except those the
/// pinned flow table keeps, which it writes itself (an older agent's snapshot does not say
/// which: all of them). One killed on a healthy disk loses none (what it buffered, its
/// flows' table entries still hold).
#[test]
fn records_held_on_a_refusing_disk_by_an_agent_that_died_are_lost_at_its_stop() {
    let tmp = crate::blocklist::tests::TempDir::new("starting-held");
    let dir = tmp.0.clone();
    // The journal refusing (of its 196 records, those kept nowhere else: not said, 5, none);
    // a seal refused with the journal writing; nothing refused.
    // The kept ones are handed on apart: lost too if the next start cannot take the pins.
    for (refused, degraded, unkept, want, kept) in [
        (true, true, None, 196, 0),
        (true, true, Some(5), 5, 191),
        (true, true, Some(0), 0, 196),
        (false, true, None, 0, 0),
        (false, false, None, 0, 0),
    ] {
        let (dead, start) = killed_process();
        let mut last = snapshot(dead);
        last.pid_start = start;
        (last.store.journal_refused, last.store.degraded) = (refused, degraded);
        last.store.buffered = 196;
        last.store.buffered_unkept = unkept;
        last.write(&dir).expect("write the dead agent's snapshot");
        let (previous, starting, evidence) = Starting::begin(&dir);
        assert!(evidence.is_some(), "it died");
        assert_eq!(
            (previous.lost_at_stop, previous.kept_at_stop),
            (want, kept),
            "refused {refused}, degraded {degraded}, unkept {unkept:?}"
        );
        drop(starting);
    }
}

/// The records a full disk held at a clean stop that the pins kept are handed on as kept;
/// a start that loads its program afresh (did not take the pins over) counts them lost, and
/// its starting snapshot hands them on as lost: the next start, adopting the pins of one that
/// failed after that, must not count them kept.
#[test]
fn records_the_pins_kept_are_lost_for_a_start_that_did_not_take_them_over() {
    let tmp = crate::blocklist::tests::TempDir::new("starting-kept");
    let dir = tmp.0.clone();
    let mut last = snapshot(std::process::id());
    (last.store.journal_refused, last.store.degraded) = (true, true);
    (last.store.buffered, last.store.buffered_unkept) = (100, Some(10));
    last.store.lost_at_stop = 10;
    last.write(&dir).expect("write the last agent's snapshot");
    Snapshot::mark_stopped(&dir).expect("it stops cleanly");
    let (mut previous, starting, evidence) = Starting::begin(&dir);
    assert_eq!((previous.lost_at_stop, previous.kept_at_stop), (10, 90));
    starting.pins_not_taken(&mut previous, evidence);
    assert_eq!((previous.lost_at_stop, previous.kept_at_stop), (100, 0));
    drop(starting); // the start fails
    let (previous, starting, _) = Starting::begin(&dir);
    assert_eq!((previous.lost_at_stop, previous.kept_at_stop), (100, 0));
    drop(starting);
}

/// A record the store drops is refused to the sink too: counted once, not twice.
#[test]
fn a_dropped_record_is_one_record_lost() {
    let mut s = snapshot(1);
    (s.store.dropped, s.flows.sink_errors) = (101, 101);
    assert_eq!(s.records_lost(), 101);
    (s.store.dropped, s.flows.sink_errors) = (150, 101);
    assert_eq!(
        s.records_lost(),
        150,
        "drops of held records refuse nothing"
    );
    (s.store.dropped, s.flows.sink_errors) = (0, 3);
    assert_eq!(s.records_lost(), 3);
}

/// A process killed and not yet reaped (a zombie) is dead: a start right after a kill -9
/// found its predecessor's pid and start time still there, took it for running, and raised
/// no crash.
#[test]
fn a_zombie_is_no_running_agent() {
    use crate::compliance::system::{alive, process_start};
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn `true`");
    let pid = child.id();
    let start = process_start(pid);
    // It exits at once and stays a zombie until waited for.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let state = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.get(s.rfind(')')? + 2..)?.chars().next())
    };
    while state() != Some('Z') {
        assert!(
            std::time::Instant::now() < deadline,
            "the child never became a zombie"
        );
        std::thread::yield_now();
    }
    assert!(!alive(pid, start), "a zombie with its start time");
    assert!(!alive(pid, None), "a zombie");
    child.wait().expect("reap");
}

#[test]
fn a_pid_is_the_agent_only_while_its_start_time_matches() {
    use crate::compliance::system::{alive, process_start};
    let me = std::process::id();
    let start = process_start(me).expect("/proc/self/stat");
    assert!(alive(me, Some(start)) && alive(me, None));
    assert!(
        !alive(me, Some(start + 1)),
        "a pid given to another process"
    );
    assert!(
        !alive(0, None),
        "pid 0 is no process (kill(0) asks about our group)"
    );
    assert_eq!(
        snapshot(me).pid_start,
        Some(start),
        "written with the snapshot"
    );
}

/// The last agent's live journal reaches the next start, also across starts that failed
/// (each starting snapshot hands it on), so the start after them can look for it.
#[test]
fn the_last_agents_live_journal_is_handed_on_by_failed_starts() {
    let tmp = crate::blocklist::tests::TempDir::new("starting-journal");
    let dir = tmp.0.clone();
    let (pid, start) = killed_process();
    let mut last = snapshot(pid);
    last.pid_start = start;
    let journal = crate::store::LiveJournal {
        dir: dir.join("log").display().to_string(),
        id: 9,
        durable: 5,
    };
    last.store.live_journal = Some(journal.clone());
    last.write(&dir).expect("write the last snapshot");
    let (previous, starting, _) = Starting::begin(&dir);
    assert_eq!(previous.live_journal.as_ref(), Some(&journal));
    drop(starting); // a failed start
    let (mut previous, starting, _) = Starting::begin(&dir);
    assert_eq!(previous.live_journal, Some(journal), "handed on");
    // Looked for by a start (`run` takes it and writes the starting snapshot again): a
    // start failing after that hands it on no more.
    previous.live_journal = None;
    starting.rewrite(&previous, None);
    drop(starting);
    let (previous, starting, _) = Starting::begin(&dir);
    assert_eq!(previous.live_journal, None, "looked for once");
    drop(starting);
}
