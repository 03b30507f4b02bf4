//! `xdp-audit report` and `verify` with `--public-key`: the title names the key the chain's
//! head names, never the one given; a store with nothing sealed yet (no chain, so no signed
//! head) is no verdict, never BROKEN.

mod cli_common;
#[path = "store_common/mod.rs"]
mod common;
mod report_common;

use common::*;
use report_common::*;
use xdp_audit::store::FakeClock;

/// A store signed with a new key, which is written to `keys/NAME.key.pub`: an hour sealed,
/// or ten minutes left in the live journal (a new store's first hour: no chain yet).
fn signed_hour(tag: &str, keys: &std::path::Path, name: &str, seal: bool) -> TempDir {
    let dir = TempDir::new(tag);
    let (secret, public) = xdp_audit::store::manifest::generate_keypair().expect("a key pair");
    let (sk, pk) = (
        keys.join(format!("{name}.key")),
        keys.join(format!("{name}.key.pub")),
    );
    std::fs::write(&sk, secret).expect("write the secret key");
    std::fs::write(&pk, public).expect("write the public key");
    let mut cfg = config(dir.path());
    cfg.signing_key =
        Some(xdp_audit::store::manifest::load_signing_key(&sk).expect("load the key"));
    // Unsealed: ten minutes within T0's hour (T0 is 13 min 20 s past it), no hourly seal.
    let start = if seal {
        T0 - HOUR
    } else {
        T0 - 600_000_000_000
    };
    let clock = FakeClock::new(start);
    let mut store = xdp_audit::store::Store::open_with_clock(cfg, Box::new(clock.clone()))
        .expect("open the store");
    let mut g = xdp_audit::store::testgen::TrafficGen::with_rate(17, start, 0.2);
    while g.now_ns() < T0 {
        let r = g.next_record();
        clock.set(r.time_start_ns);
        store.append(&r);
    }
    if seal {
        assert!(store.seal_now(), "sealing failed");
    }
    dir
}

fn fingerprint_of(public_key: &std::path::Path) -> String {
    let k = xdp_audit::store::manifest::load_public_key(public_key).expect("load the key");
    xdp_audit::report::fingerprint(&k.to_bytes())
}

/// The title's chain signing key is the key the head names: labelled checked only when the
/// store verified with --public-key; a --public-key of another key is shown apart, never as
/// the chain's (it was, though the head was signed by another and verification failed).
#[test]
fn the_title_names_the_key_the_head_names_not_the_one_given() {
    let keys = TempDir::new("report-keys");
    let dir = signed_hour("report-signed", keys.path(), "a", true);
    let d = dir.path().to_str().expect("utf-8");
    let (a, b) = (keys.path().join("a.key.pub"), keys.path().join("b.key.pub"));
    let (_, public_b) = xdp_audit::store::manifest::generate_keypair().expect("a key pair");
    std::fs::write(&b, public_b).expect("write key B");
    let (fa, fb) = (fingerprint_of(&a), fingerprint_of(&b));
    let since = "2023-11-14T21:00:00Z";

    // Checked with another key: the head's key is shown, not checked, and B apart.
    let o = report_of(
        d,
        "json",
        since,
        UNTIL,
        &["--public-key", b.to_str().expect("utf-8")],
    );
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let t = &j["title"];
    assert_eq!(t["key_fingerprint"], fa.as_str(), "{t:#}");
    assert_eq!(t["key_checked"], false, "{t:#}");
    assert_eq!(t["given_key_fingerprint"], fb.as_str(), "{t:#}");
    let md = String::from_utf8_lossy(
        &report_of(
            d,
            "md",
            since,
            UNTIL,
            &["--public-key", b.to_str().expect("utf-8")],
        )
        .stdout,
    )
    .into_owned();
    assert!(
        md.contains(&format!(
            "| Chain signing key (SHA-256 fingerprint) | `{fa} (as the head states, not checked)` |"
        )),
        "{md}"
    );
    assert!(
        md.contains(&format!("{fb} (not the key the chain head names)")),
        "{md}"
    );

    // Without a key: the head's claim, not checked.
    let j: serde_json::Value =
        serde_json::from_str(&ok(&report_of(d, "json", since, UNTIL, &[]))).expect("json");
    assert_eq!(j["title"]["key_fingerprint"], fa.as_str());
    assert_eq!(j["title"]["key_checked"], false);
    assert!(j["title"]["given_key_fingerprint"].is_null());

    // With the head's own key: checked.
    let md = ok(&report_of(
        d,
        "md",
        since,
        UNTIL,
        &["--public-key", a.to_str().expect("utf-8")],
    ));
    assert!(
        md.contains(&format!("{fa} (checked against --public-key)")) && !md.contains("not the key"),
        "{md}"
    );
}

/// A new store given a key, before its first seal: nothing is signed yet, so `verify
/// --public-key` and a report with it reach no verdict (exit 3, NOT CHECKED), never BROKEN (a
/// `verify || alarm` job raised a false tamper alarm on every new gateway for its first
/// hour).
#[test]
fn a_key_given_before_the_first_seal_is_no_verdict_not_broken() {
    let keys = TempDir::new("report-keys-unsealed");
    let dir = signed_hour("report-unsealed", keys.path(), "a", false);
    let d = dir.path().to_str().expect("utf-8");
    let key = keys.path().join("a.key.pub");
    let key = key.to_str().expect("utf-8");

    let o = run(&["verify", "--log-dir", d, "--public-key", key]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(3), "{out}{err}");
    assert!(
        !out.contains("BROKEN") && !err.contains("BROKEN"),
        "{out}{err}"
    );
    assert!(err.contains("nothing is sealed yet"), "{err}");

    let since = "2023-11-14T21:00:00Z";
    let o = report_of(d, "json", since, UNTIL, &["--public-key", key]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let v = &j["verify"];
    assert_eq!(
        (&v["ok"], &v["unchecked"], &v["nothing_sealed"]),
        (
            &serde_json::json!(false),
            &serde_json::json!(true),
            &serde_json::json!(true)
        ),
        "{v:#}"
    );
    assert!(
        j["records"]["total"].as_u64().is_some_and(|n| n > 0),
        "the journal's records are in the report: {:#}",
        j["records"]
    );
    let md =
        String::from_utf8_lossy(&report_of(d, "md", since, UNTIL, &["--public-key", key]).stdout)
            .into_owned();
    assert!(!md.contains("BROKEN"), "{md}");
    assert!(
        md.contains("NOT CHECKED") && md.contains("no chain head yet to check it against"),
        "{md}"
    );
}
