//! The store's alerts: a broken or unreadable chain, signing begun on an unsigned head,
//! damage, records lost at a stop, a state directory refusing writes.

use super::*;

#[test]
fn a_broken_chain_stays_active_between_verifications() {
    let mut e = engine();
    let mut out = Vec::new();
    let broken = || Event::ChainBroken {
        file: "/var/lib/xdp-audit/manifest".into(),
        reason: "entry 3 changed".into(),
    };
    e.event(broken(), 0, &mut out);
    e.tick(3600 * S, &mut out);
    e.event(broken(), 3600 * S, &mut out);
    assert_eq!(
        ids(&out),
        [(AlertId::ChainBroken, AlertState::Raised)],
        "{out:?}"
    );
}

/// Signing that began on an unsigned head is raised as the chain's alert, naming the entry
/// the signature vouches from: the only evidence of a head stripped of its signature.
#[test]
fn signing_begun_on_an_unsigned_head_is_raised_with_its_entry() {
    let mut e = engine();
    let mut out = Vec::new();
    let began = Event::SigningBegan {
        file: "/var/lib/xdp-audit/manifest.jsonl".into(),
        entry: 41,
    };
    e.event(began, 0, &mut out);
    assert_eq!(
        ids(&out),
        [(AlertId::ChainBroken, AlertState::Raised)],
        "{out:?}"
    );
    assert!(
        out[0].text.contains("entries 0 to 41") && out[0].text.contains("stripped"),
        "{}",
        out[0].text
    );
}

#[test]
fn an_unreadable_store_file_raises_its_own_alert_not_a_broken_chain() {
    let mut e = engine();
    let mut out = Vec::new();
    let unreadable = || Event::StoreUnreadable {
        file: "/var/lib/xdp-audit/seg-1.parquet".into(),
        reason: "Input/output error".into(),
    };
    e.event(unreadable(), 0, &mut out);
    e.tick(3600 * S, &mut out);
    e.event(unreadable(), 3600 * S, &mut out);
    assert_eq!(
        ids(&out),
        [(AlertId::StoreUnreadable, AlertState::Raised)],
        "{out:?}"
    );
    assert_eq!(out[0].severity, crate::alert::Severity::Warning);
    assert!(out[0].text.contains("could not be verified"), "{out:?}");
}

/// Journal damage the store skipped (a damaged header too, which holds no frame), journals
/// it cannot seal and a manifest it could not read raise `XA-STORE-DAMAGED` (only logs and
/// status counters said so); found at the start (the first snapshot), the damage is this
/// agent's to say, not history.
#[test]
fn damage_in_the_store_raises_its_alert() {
    for (g, says) in [
        (
            Gauges {
                store_skipped_frames: 4,
                ..Gauges::default()
            },
            "at least 4 records",
        ),
        (
            // A damaged journal header: bytes skipped, no frame in them.
            Gauges {
                store_skipped_bytes: 16,
                ..Gauges::default()
            },
            "(16 bytes, at least 0 records",
        ),
        (
            Gauges {
                store_unsealable: 1,
                ..Gauges::default()
            },
            "1 journals cannot be read or sealed",
        ),
        (
            Gauges {
                store_journals_gone: 2,
                ..Gauges::default()
            },
            "2 journals deleted by someone else",
        ),
        (
            Gauges {
                manifest_unreadable: true,
                ..Gauges::default()
            },
            "the manifest cannot be read",
        ),
        (
            Gauges {
                store_set_aside: 1,
                ..Gauges::default()
            },
            "1 files set aside into quarantine/",
        ),
    ] {
        let mut e = engine();
        let mut out = Vec::new();
        e.observe(g, 0, &mut out);
        assert_eq!(ids(&out), [(AlertId::StoreDamaged, AlertState::Raised)]);
        assert!(out[0].text.contains(says), "{}", out[0].text);
    }
}

/// Records the last agent could not write at its stop (after its own last alert) are
/// alerted by the next one, counted.
#[test]
fn records_lost_at_the_last_stop_are_a_store_refused_alert() {
    let mut e = engine();
    let mut out = Vec::new();
    e.event(Event::LostAtStop { records: 2000 }, 0, &mut out);
    assert_eq!(ids(&out), [(AlertId::StoreRefused, AlertState::Raised)]);
    assert_eq!(out[0].count, 2000);
    assert!(out[0].text.contains("2000 records"), "{}", out[0].text);
}

/// A state directory that refuses the status snapshot is its own `XA-STORE-DEGRADED` (by
/// file): the agent ran on without a word but its log's, its status, rollback check and
/// hand-over not kept. Not beside the store's own, while its disk refuses writes too (one
/// full disk is one condition).
#[test]
fn a_state_directory_refusing_writes_is_its_own_degraded_alert() {
    let mut e = engine();
    let mut out = Vec::new();
    let state = Gauges {
        state_unwritable: true,
        ..Gauges::default()
    };
    e.observe(state, 0, &mut out);
    let file = Some(crate::status::FILE_NAME.to_owned());
    let got: Vec<_> = (out.iter())
        .map(|a| (a.id, a.subject.file.clone()))
        .collect();
    assert_eq!(got, [(AlertId::StoreDegraded, file)], "{out:?}");
    assert!(
        out[0].text.contains("state directory refuses writes"),
        "{}",
        out[0].text
    );
    out.clear();
    e.observe(Gauges::default(), S, &mut out);
    e.tick(62 * S, &mut out);
    assert_eq!(ids(&out), [(AlertId::StoreDegraded, AlertState::Resolved)]);
    // Both on one full disk: the store's alert alone.
    out.clear();
    let both = Gauges {
        store_degraded: true,
        ..state
    };
    e.observe(both, 70 * S, &mut out);
    let got: Vec<_> = (out.iter())
        .map(|a| (a.id, a.subject.file.clone()))
        .collect();
    assert_eq!(got, [(AlertId::StoreDegraded, None)], "{out:?}");
}

/// A damaged file of open flows (the last agent killed) is raised once, by file, at the
/// start that found it: the flows it held may have no record. Not again at later sweeps.
#[test]
fn a_damaged_file_of_open_flows_is_raised_once_by_file() {
    let mut e = engine();
    let mut out = Vec::new();
    let found = Gauges {
        open_flows_damaged: 200,
        ..Gauges::default()
    };
    e.observe(found, 0, &mut out);
    let file = Some(crate::sweeper::spill::FILE_NAME.to_owned());
    let got: Vec<_> = (out.iter())
        .map(|a| (a.id, a.state, a.subject.file.clone()))
        .collect();
    assert_eq!(
        got,
        [(AlertId::StoreDamaged, AlertState::Raised, file)],
        "{out:?}"
    );
    assert!(out[0].text.contains("200 bytes"), "{}", out[0].text);
    out.clear();
    e.observe(found, S, &mut out);
    assert!(out.is_empty(), "the same count is no news: {out:?}");
}
