//! The adoption of a set from pinned maps, and the per-file refusal setting.

use super::*;

fn loaded(files: &[(PathBuf, ListKind)], k: agent_common::domain::DomainKey) -> ListSet {
    let mut set = ListSet::new(files.iter().cloned(), k);
    let (_, diags) = set.reload_all();
    assert!(diags.is_empty(), "{diags:?}");
    set
}

#[test]
fn an_adopted_set_with_unchanged_files_writes_nothing_and_keeps_every_id() {
    let dir = TempDir::new("adopt-same");
    let (a, b) = (dir.0.join("a.list"), dir.0.join("b.list"));
    write(
        &a,
        "192.0.2.1\n10.0.0.0/8\nexample.com\nport tcp 25\n2001:db8::1\n",
    );
    write(&b, "198.51.100.7\n");
    let files = [(a.clone(), ListKind::Block), (b.clone(), ListKind::Allow)];
    let k = key();
    let running = loaded(&files, k);
    // A restart reads the maps back: keys and ids, nothing else.
    let c = running.compiled();
    let mut next = ListSet::new(files.iter().cloned(), k);
    next.adopt(c.allow.clone(), c.block.clone(), c.generation);
    let (delta, diags) = next.reload_all();
    assert!(diags.is_empty(), "{diags:?}");
    assert!(delta.is_empty(), "nothing to write: {delta:?}");
    assert!(delta.assigned.is_empty(), "no hit counter reset");
    assert_eq!(
        delta.generation,
        c.generation + 1,
        "one generation bump: flows judge again whatever the last agent left unpublished"
    );
    assert_eq!(tables(&next.compiled().block), tables(&c.block));
    assert_eq!(tables(&next.compiled().allow), tables(&c.allow));
    for id in 0..running.rule_id_bound() {
        assert_eq!(
            next.origin(id).map(|o| (o.path.to_owned(), o.line)),
            running.origin(id).map(|o| (o.path.to_owned(), o.line)),
            "rule {id} named again from its file"
        );
    }
}

#[test]
fn an_adopted_set_writes_only_the_difference_from_the_maps() {
    let dir = TempDir::new("adopt-diff");
    let a = dir.0.join("a.list");
    let gone = dir.0.join("allow.list");
    write(&a, "192.0.2.1\n192.0.2.2\nexample.com\n");
    write(&gone, "198.51.100.7\n");
    let k = key();
    let running = loaded(
        &[
            (a.clone(), ListKind::Block),
            (gone.clone(), ListKind::Allow),
        ],
        k,
    );
    let c = running.compiled();
    let id_of = |l: &CompiledList, addr: u32| {
        l.v4_exact
            .iter()
            .find(|(x, _)| *x == addr)
            .map(|(_, id)| *id)
    };
    let kept = u32::from_be_bytes([192, 0, 2, 1]);
    let kept_id = id_of(&c.block, kept).expect("listed");
    // The file loses one address and gains one; the allowlist is no longer configured.
    write(&a, "192.0.2.1\nexample.com\n203.0.113.9\n");
    let mut next = ListSet::new([(a.clone(), ListKind::Block)], k);
    next.adopt(c.allow.clone(), c.block.clone(), c.generation);
    let (delta, diags) = next.reload_all();
    assert!(diags.is_empty(), "{diags:?}");
    let added = u32::from_be_bytes([203, 0, 113, 9]);
    let removed = u32::from_be_bytes([192, 0, 2, 2]);
    assert_eq!(delta.block.v4_exact.upsert.len(), 1, "{delta:?}");
    assert_eq!(delta.block.v4_exact.upsert[0].0, added);
    assert_eq!(delta.block.v4_exact.remove, [removed]);
    assert_eq!(
        delta.block.len(),
        2,
        "the domain stays untouched: {delta:?}"
    );
    assert_eq!(
        delta.allow.v4_exact.remove,
        [u32::from_be_bytes([198, 51, 100, 7])],
        "an unconfigured kind is emptied"
    );
    assert_eq!(delta.allow.len(), 1);
    assert_eq!(delta.generation, c.generation + 1);
    assert_eq!(id_of(&next.compiled().block, kept), Some(kept_id));
    let new_id = delta.block.v4_exact.upsert[0].1;
    assert_eq!(
        delta.assigned,
        [new_id],
        "only the new rule's counter resets"
    );
    let old_ids: Vec<RuleId> = Table::ALL
        .iter()
        .flat_map(|&t| c.block.ids(t).into_iter().chain(c.allow.ids(t)))
        .collect();
    assert!(
        !old_ids.contains(&new_id),
        "a new rule takes no id the maps held in this generation ({new_id} in {old_ids:?})"
    );
}

#[test]
fn a_refusing_file_marks_its_rules_and_a_changed_setting_rewrites_only_the_values() {
    use agent_common::rules::{refuses, rule_id};
    let dir = TempDir::new("refuse");
    let (a, b, allow) = (
        dir.0.join("a.list"),
        dir.0.join("b.list"),
        dir.0.join("allow.list"),
    );
    write(
        &a,
        "192.0.2.1\n10.0.0.0/8\nexample.com\nport tcp 25\n2001:db8::1\n",
    );
    write(&b, "198.51.100.7\n");
    write(&allow, "192.0.2.9\n");
    let spec = |refuse_a: bool| {
        [
            (a.clone(), ListKind::Block, refuse_a),
            (b.clone(), ListKind::Block, false),
            (allow.clone(), ListKind::Allow, true),
        ]
        .map(|(path, kind, refuse)| ListSpec { path, kind, refuse })
    };
    let k = key();
    let mut plain = ListSet::new(spec(false).map(|s| (s.path, s.kind)), k);
    assert!(plain.reload_all().1.is_empty());
    let mut refusing = ListSet::of_specs(spec(true), k);
    let (delta, diags) = refusing.reload_all();
    assert!(diags.is_empty(), "{diags:?}");
    let marked = |set: &ListSet, kind: ListKind| -> Vec<(RuleId, bool)> {
        let list = set.compiled().list(kind);
        let mut v: Vec<u32> = Vec::new();
        v.extend(list.v4_exact.iter().map(|e| e.1));
        v.extend(list.v4_prefix.iter().map(|e| e.1));
        v.extend(list.v6_exact.iter().map(|e| e.1));
        v.extend(list.ports.iter().map(|e| e.1));
        v.extend(list.domains.iter().map(|e| e.1));
        v.into_iter().map(|x| (rule_id(x), refuses(x))).collect()
    };
    // Only a.list's rules carry the bit; an allowlist never does; ids are as without it.
    let block = marked(&refusing, ListKind::Block);
    assert_eq!(block.iter().filter(|e| e.1).count(), 1 + 1 + 1 + 1 + 1);
    for (id, refused) in &block {
        let from = refusing.origin(*id).expect("every id has an origin").path;
        assert_eq!(*refused, from == a, "rule {id} from {}", from.display());
    }
    assert!(marked(&refusing, ListKind::Allow).iter().all(|e| !e.1));
    let ids = |s: &ListSet| {
        marked(s, ListKind::Block)
            .into_iter()
            .map(|e| e.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&refusing), ids(&plain));
    assert!(delta.block.v4_exact.upsert.iter().any(|e| refuses(e.1)));
    // A restart that turns refusal off (or on) rewrites the values of the kept keys only:
    // no removal, no new id, no hit counter reset.
    for (from, to) in [(&refusing, spec(false)), (&plain, spec(true))] {
        let c = from.compiled();
        let mut next = ListSet::of_specs(to.clone(), k);
        next.adopt(c.allow.clone(), c.block.clone(), c.generation);
        let (delta, diags) = next.reload_all();
        assert!(diags.is_empty(), "{diags:?}");
        assert!(delta.assigned.is_empty(), "no id handed out: {delta:?}");
        assert!(
            delta.allow.is_empty(),
            "the allowlist is untouched: {delta:?}"
        );
        let b = &delta.block;
        let removed = b.v4_exact.remove.len() + b.v4_prefix.remove.len() + b.domains.remove.len();
        assert_eq!(removed, 0, "{delta:?}");
        let upserts = b.v4_exact.upsert.len()
            + b.v4_prefix.upsert.len()
            + b.v6_exact.upsert.len()
            + b.ports.upsert.len()
            + b.domains.upsert.len();
        assert_eq!(upserts, 5, "a.list's five keys rewritten: {delta:?}");
        assert!(delta.generation > c.generation, "flows judge again");
        let want = to[0].refuse;
        assert!(marked(&next, ListKind::Block)
            .iter()
            .all(|(id, r)| *r == (want && next.origin(*id).expect("origin").path == a)));
    }
}

#[test]
fn a_kind_with_a_bad_file_keeps_the_adopted_tables_until_every_file_loads() {
    let dir = TempDir::new("adopt-bad");
    let (a, b, allow) = (
        dir.0.join("a.list"),
        dir.0.join("b.list"),
        dir.0.join("allow.list"),
    );
    write(&a, "192.0.2.1\nexample.com\n");
    write(&b, "198.51.100.7\n");
    write(&allow, "192.0.2.9\n");
    let files = [
        (a.clone(), ListKind::Block),
        (b.clone(), ListKind::Block),
        (allow.clone(), ListKind::Allow),
    ];
    let k = key();
    let running = loaded(&files, k);
    let c = running.compiled();
    // While the agent was down, a.list got a bad line and b.list a new address, and the
    // allowlist lost its address; then the agent starts again on the pinned maps.
    write(&a, "192.0.2.1\nexample.com\nnot-an-address/33\n");
    write(&b, "198.51.100.7\n203.0.113.5\n");
    write(&allow, "# nothing allowed for now\n");
    let mut next = ListSet::new(files.iter().cloned(), k);
    next.adopt(c.allow.clone(), c.block.clone(), c.generation);
    let (delta, diags) = next.reload_all();
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(
        (diags[0].path.as_path(), diags[0].line),
        (a.as_path(), Some(3))
    );
    assert!(
        delta.block.is_empty(),
        "the blocklists stay as the maps hold them, a.list's rules included: {delta:?}"
    );
    assert_eq!(tables(&next.compiled().block), tables(&c.block));
    assert_eq!(next.held(), [ListKind::Block]);
    assert_eq!(
        delta.allow.v4_exact.remove,
        [u32::from_be_bytes([192, 0, 2, 9])],
        "a kind whose files all load is written as they say"
    );
    assert!(delta.generation > c.generation);
    // Fixing b.list alone changes nothing yet; a.list loading writes both files' changes.
    write(&b, "203.0.113.5\n");
    let (delta, diags) = next.reload_many(std::slice::from_ref(&b));
    assert!(diags.is_empty(), "{diags:?}");
    assert!(delta.block.is_empty(), "{delta:?}");
    assert_eq!(next.held(), [ListKind::Block]);
    write(&a, "192.0.2.1\n");
    let (delta, diags) = next.reload_many(std::slice::from_ref(&a));
    assert!(diags.is_empty(), "{diags:?}");
    assert!(next.held().is_empty());
    let v4 = |d: &TableDelta<u32>| {
        let mut up: Vec<u32> = d.upsert.iter().map(|e| e.0).collect();
        up.sort_unstable();
        (up, d.remove.clone())
    };
    assert_eq!(
        v4(&delta.block.v4_exact),
        (
            vec![u32::from_be_bytes([203, 0, 113, 5])],
            vec![u32::from_be_bytes([198, 51, 100, 7])]
        )
    );
    assert_eq!(delta.block.domains.remove.len(), 1, "example.com gone");
    assert_eq!(
        next.origin(delta.block.v4_exact.upsert[0].1)
            .map(|o| (o.path.to_owned(), o.line)),
        Some((b.clone(), 1))
    );
}

#[test]
fn new_tables_of_an_upgrade_are_filled_whole_with_a_held_kind_included() {
    let dir = TempDir::new("adopt-new");
    let (a, allow) = (dir.0.join("a.list"), dir.0.join("allow.list"));
    write(&a, "192.0.2.1\n10.0.0.0/8\nexample.com\n");
    write(&allow, "192.0.2.9\n");
    let files = [
        (a.clone(), ListKind::Block),
        (allow.clone(), ListKind::Allow),
    ];
    let k = key();
    let running = loaded(&files, k);
    let c = running.compiled();
    write(&a, "192.0.2.1\n10.0.0.0/8\nexample.com\nbad line here\n");
    write(&allow, "192.0.2.9\n192.0.2.10\n");
    let mut next = ListSet::new(files.iter().cloned(), k);
    next.adopt_into_new(c.allow.clone(), c.block.clone(), c.generation);
    let (delta, diags) = next.reload_all();
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(next.held(), [ListKind::Block]);
    assert_eq!(
        delta.block,
        ListDelta::filling(&c.block),
        "the held kind, whole"
    );
    assert_eq!(delta.allow, ListDelta::filling(&next.compiled().allow));
    assert_eq!(delta.allow.v4_exact.upsert.len(), 2, "{delta:?}");
    assert!(delta.allow.v4_exact.remove.is_empty());
    assert!(delta.generation > c.generation);
    assert!(delta.cover4.is_some(), "the new cover map is written");
}

/// A list file found empty (0 bytes) at a restart is judged as one emptied during a run: the
/// running program's tables of its kind stay, as a truncation caught mid-write would have
/// unblocked every rule. A comment line empties the list on purpose.
#[test]
fn a_list_emptied_while_no_agent_ran_leaves_the_running_tables() {
    let dir = TempDir::new("adopt-emptied");
    let (block, allow) = (dir.0.join("block.list"), dir.0.join("allow.list"));
    write(&block, "192.0.2.1\nexample.com\nport tcp 25\n");
    write(&allow, "");
    let files = [
        (block.clone(), ListKind::Block),
        (allow.clone(), ListKind::Allow),
    ];
    let k = key();
    let running = loaded(&files, k);
    let c = running.compiled();
    write(&block, "");
    let mut next = ListSet::new(files.iter().cloned(), k);
    next.adopt(c.allow.clone(), c.block.clone(), c.generation);
    let (delta, diags) = next.reload_all();
    let shown: Vec<String> = diags.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [format!(
            "{}: is empty (0 bytes) where the running program enforces 3 blocklist rules: not \
             applied, the blocklist tables stay as they are (to empty a list on purpose, leave a \
             comment line in it)",
            block.display()
        )],
        "an empty allowlist beside an empty allow table is no problem"
    );
    assert!(delta.block.is_empty(), "nothing unblocked: {delta:?}");
    assert_eq!(tables(&next.compiled().block), tables(&c.block));
    assert_eq!(next.held(), [ListKind::Block]);
    // Beside another file of its kind, an empty file may be a placeholder that never held
    // a rule: it applies, and the other file's edits with it.
    let other = dir.0.join("other.list");
    write(&other, "192.0.2.1\n");
    let two = [
        (block.clone(), ListKind::Block),
        (other.clone(), ListKind::Block),
    ];
    let mut beside = ListSet::new(two.iter().cloned(), k);
    beside.adopt(c.allow.clone(), c.block.clone(), c.generation);
    let (delta, diags) = beside.reload_all();
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(delta.block.domains.remove.len(), 1, "{delta:?}");
    assert!(beside.held().is_empty());
    // Still held, the 0-byte file is refused again; a comment line empties the list.
    assert!(next.reload(&block).is_err());
    write(&block, "# nothing blocked for now\n");
    let delta = next.reload(&block).expect("a comment-only file applies");
    assert_eq!(
        delta.block.v4_exact.remove,
        [u32::from_be_bytes([192, 0, 2, 1])]
    );
    assert!(next.held().is_empty());
    assert_eq!(next.compiled().block.entries(), 0);
}
