//! The versions in force kept for the next agent ([`ListSet::keeping`]).

use super::*;

fn kept_set(files: &[(PathBuf, ListKind)], k: DomainKey, state: &Path) -> ListSet {
    ListSet::new(files.iter().cloned(), k).keeping(state)
}

fn texts(diags: &[Diagnostic]) -> Vec<String> {
    diags.iter().map(ToString::to_string).collect()
}

/// A start on no pinned program (a reboot, a `detach`) that finds one file damaged, one
/// emptied beside others of its kind and one gone enforces the versions the last agent
/// applied, names every problem, and applies each file again once it loads.
#[test]
fn at_a_start_files_that_do_not_load_are_replaced_by_the_versions_last_applied() {
    let dir = TempDir::new("lists-kept");
    let state = dir.0.join("state");
    let (a, b, c) = (
        dir.0.join("a.list"),
        dir.0.join("b.list"),
        dir.0.join("c.list"),
    );
    write(&a, "192.0.2.1\nexample.com\n");
    write(&b, "198.51.100.7\n");
    write(&c, "203.0.113.9\n");
    let files = [
        (a.clone(), ListKind::Block),
        (b.clone(), ListKind::Block),
        (c.clone(), ListKind::Allow),
    ];
    let k = key();
    let mut first = kept_set(&files, k, &state);
    assert!(first.reload_all().1.is_empty());
    let copies = std::fs::read_dir(state.join(LISTS_KEPT))
        .expect("kept")
        .count();
    assert_eq!(copies, 3, "one copy per file");

    write(&a, "192.0.2.1\nexample.com\n10.0.0.0/33\n");
    write(&b, "");
    std::fs::remove_file(&c).expect("remove c");
    let mut next = kept_set(&files, k, &state);
    let (delta, diags) = next.reload_all();
    let text = texts(&diags);
    assert_eq!(text.len(), 3, "{text:?}");
    assert!(
        text[0].starts_with(&format!("{}:3:", a.display())),
        "{text:?}"
    );
    assert!(
        text[1].starts_with(&format!(
            "{}: is empty (0 bytes) where its last version held 1 rules",
            b.display()
        )),
        "{text:?}"
    );
    assert!(
        text[2].starts_with(&format!("{}: cannot read", c.display())),
        "{text:?}"
    );
    let (was, now) = (first.compiled(), next.compiled());
    assert_eq!(keys(&now.block), keys(&was.block), "the blocklist in force");
    assert_eq!(keys(&now.allow), keys(&was.allow), "the allowlist in force");
    assert_eq!(
        delta.block.v4_exact.upsert.len(),
        2,
        "written to the new tables: {delta:?}"
    );
    assert!(
        next.held().is_empty(),
        "named by their files, not held unnamed"
    );
    let named: Vec<(PathBuf, u32)> = (0..next.rule_id_bound())
        .filter_map(|id| next.origin(id).map(|o| (o.path.to_owned(), o.line)))
        .collect();
    for want in [
        (a.clone(), 1),
        (a.clone(), 2),
        (b.clone(), 1),
        (c.clone(), 1),
    ] {
        assert!(named.contains(&want), "{want:?} in {named:?}");
    }
    // The copies still hold the versions in force, not what failed to load.
    let kept = crate::kept::Kept::new(state.join(LISTS_KEPT), "list");
    let copy = |p: &Path| kept.read(p).expect("read").expect("a copy");
    assert_eq!(copy(&a), b"192.0.2.1\nexample.com\n");
    assert_eq!(copy(&b), b"198.51.100.7\n");

    // A later problem keeps them (as any last good version), a fix applies and is kept.
    let (_, diags) = next.reload_many(std::slice::from_ref(&b));
    assert_eq!(texts(&diags).len(), 1, "b still empty");
    write(&a, "192.0.2.2\n");
    let (delta, diags) = next.reload_many(std::slice::from_ref(&a));
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(delta.block.v4_exact.upsert.len(), 1, "{delta:?}");
    assert_eq!(copy(&a), b"192.0.2.2\n");
    let mut third = kept_set(&files, k, &state);
    assert_eq!(texts(&third.reload_all().1).len(), 2, "b and c still");
    assert_eq!(keys(&third.compiled().block), keys(&next.compiled().block));
}

/// An empty file whose kept version had no rules (a placeholder) applies; a copy that does
/// not parse stands in for nothing; without a state directory nothing stands in; copies of
/// files no longer configured are removed.
#[test]
fn placeholders_apply_and_nothing_stands_in_without_a_usable_copy() {
    let dir = TempDir::new("lists-kept-none");
    let state = dir.0.join("state");
    let (a, b) = (dir.0.join("a.list"), dir.0.join("b.list"));
    write(&a, "192.0.2.1\n");
    write(&b, "# a placeholder\n");
    let files = [(a.clone(), ListKind::Block), (b.clone(), ListKind::Block)];
    let k = key();
    assert!(kept_set(&files, k, &state).reload_all().1.is_empty());

    write(&b, "");
    let mut next = kept_set(&files, k, &state);
    assert!(
        next.reload_all().1.is_empty(),
        "the placeholder emptied applies"
    );

    write(&a, "192.0.2.1/33\n");
    let mut bare = ListSet::new(files.iter().cloned(), k);
    assert_eq!(texts(&bare.reload_all().1).len(), 1);
    assert_eq!(
        bare.compiled().block.entries(),
        0,
        "no state directory, no copy"
    );

    let kept = crate::kept::Kept::new(state.join(LISTS_KEPT), "list");
    std::fs::write(kept.path_of(&a), "192.0.2.1/33\n").expect("damage the copy");
    let mut damaged = kept_set(&files, k, &state);
    assert_eq!(texts(&damaged.reload_all().1).len(), 1);
    assert_eq!(
        damaged.compiled().block.entries(),
        0,
        "a damaged copy is not used"
    );

    // Only a reload of every file (a start, SIGHUP) puts a kept version in force: a reload of
    // some files applies what they hold, and nothing else with them.
    kept.keep(&a, b"192.0.2.9\n").expect("a usable copy");
    let mut some = kept_set(&files, k, &state);
    assert_eq!(
        texts(&some.reload_many(std::slice::from_ref(&a)).1).len(),
        1
    );
    write(&b, "198.51.100.1\n");
    let (_, diags) = some.reload_many(std::slice::from_ref(&b));
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(some.compiled().block.entries(), 1, "b's rule alone");

    let _ = kept_set(&[(b.clone(), ListKind::Block)], k, &state);
    assert!(kept.read(&a).expect("read").is_none(), "a's copy removed");
    assert!(kept.read(&b).expect("read").is_some(), "b's copy stays");
}

/// On a running program's tables (adopted), a file found empty at a start whose kept version
/// has no rules keeps the tables: such a copy restores nothing. (It was put in force, and the
/// kind's rules left the program.)
#[test]
fn a_kept_version_without_rules_does_not_let_a_held_kinds_rules_go() {
    let dir = TempDir::new("lists-kept-zero");
    let state = dir.0.join("state");
    let a = dir.0.join("a.list");
    write(&a, "192.0.2.1\n198.51.100.0/24\n");
    let files = [(a.clone(), ListKind::Block)];
    let k = key();
    let mut first = kept_set(&files, k, &state);
    assert!(first.reload_all().1.is_empty());
    let kept = crate::kept::Kept::new(state.join(LISTS_KEPT), "list");
    kept.keep(&a, b"# nothing\n").expect("a copy without rules");
    write(&a, "");
    let mut next = kept_set(&files, k, &state);
    let was = first.compiled();
    next.adopt(was.allow.clone(), was.block.clone(), was.generation);
    let (delta, diags) = next.reload_all();
    let text = texts(&diags);
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(text[0].contains("is empty"), "{text:?}");
    assert_eq!(keys(&next.compiled().block), keys(&was.block), "held");
    assert!(delta.block.v4_exact.remove.is_empty(), "{delta:?}");
}
