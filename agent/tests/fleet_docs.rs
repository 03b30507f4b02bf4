//! The README's "Fleet queries" examples, run as written: the DuckDB and pyarrow blocks read a
//! Hive tree of two gateways' segments (`gateway=<id>/date=YYYY-MM-DD/<segment>`) and their
//! counts per gateway equal `xdp-audit query` on each gateway's store.
//!
//! The tree is what the agent ships: each store goes to a real S3 server (`s3s-fs`, which
//! keeps a bucket's objects as files under their keys, manifests included), and the examples
//! read that folder, as they would a bucket synced down or mounted.

mod ship_common;
mod store_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ship_common::{S3Server, BUCKET};
use store_common::{fill, query_jsonl as query, TempDir};
use xdp_audit::ship::{ship_once, ShipOptions};
use xdp_audit::store::FakeClock;

/// 2026-11-30T06:30:00Z: the stores span the examples' window, 08:00 to 09:00.
const START: i64 = 1_796_020_200_000_000_000;
const ADDRESS: &str = "10.0.0.20";
const SINCE: &str = "2026-11-30T08:00:00Z";
const UNTIL: &str = "2026-11-30T09:00:00Z";

/// The python blocks of the README marked `<!-- fleet-example: NAME -->`, by name.
fn examples() -> BTreeMap<String, String> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme)
        .unwrap_or_else(|e| panic!("read {}: {e}", readme.display()));
    let mut out = BTreeMap::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("<!-- fleet-example: ") {
        rest = &rest[at + "<!-- fleet-example: ".len()..];
        let name = rest[..rest.find(" -->").expect("marker closes")].to_owned();
        let open = rest
            .find("```python\n")
            .expect("a python block follows the marker");
        let body = &rest[open + "```python\n".len()..];
        let close = body.find("\n```").expect("the python block closes");
        out.insert(name, body[..close + 1].to_owned());
        rest = &body[close..];
    }
    out
}

/// What an example must print: `records GW N` and `address GW N DROPPED` lines.
fn expected(gateways: &[(&str, PathBuf)]) -> Vec<String> {
    let mut lines = Vec::new();
    for (id, dir) in gateways {
        lines.push(format!("records {id} {}", query(dir, &[]).len()));
    }
    for (id, dir) in gateways {
        let hits = query(dir, &["--ip", ADDRESS, "--since", SINCE, "--until", UNTIL]);
        if hits.is_empty() {
            continue;
        }
        let dropped = hits.iter().filter(|r| r["verdict"] == "drop").count();
        lines.push(format!("address {id} {} {dropped}", hits.len()));
    }
    lines
}

/// Runs every README example on the tree at `root` and compares its output with `want`.
fn check_examples(root: &Path, want: &[String]) {
    let examples = examples();
    assert_eq!(
        examples.keys().map(String::as_str).collect::<Vec<_>>(),
        ["duckdb", "pyarrow"],
        "the README has both fleet examples"
    );
    for (name, code) in &examples {
        let out = Command::new("python3")
            .arg("-c")
            .arg(code)
            .env("FLEET", root)
            .output()
            .unwrap_or_else(|e| panic!("python3 is needed (Debian package `python3`): {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("ModuleNotFoundError"),
            "the {name} example needs its Python package (`cargo xtask setup` installs duckdb and pyarrow): {stderr}"
        );
        assert!(out.status.success(), "the {name} example failed: {stderr}");
        let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(got, want, "the {name} example's counts equal query's");
    }
}

#[test]
fn readme_fleet_examples_count_what_query_counts() {
    let tmp = TempDir::new("fleet-docs");
    let mut gateways = Vec::new();
    for (i, id) in ["gw-berlin-1", "gw-paris-2"].into_iter().enumerate() {
        let dir = tmp.path().join(id);
        let clock = FakeClock::new(START);
        // Four hours at 1 flow/s, each hour sealed: segments on both sides of the window.
        fill(&dir, &clock, START, 4, 1.0, 40 + i as u64, true);
        gateways.push((id, dir));
    }
    let s3 = S3Server::start(&tmp.path().join("s3"));
    for (id, dir) in &gateways {
        ship_once(dir, &s3.config("fleet", id), &ShipOptions::default())
            .unwrap_or_else(|e| panic!("ship {id}: {e}"));
        let shipped = s3.objects(&format!("fleet/gateway={id}"), ".parquet").len();
        assert!(shipped >= 4, "{id}: an hour per segment, {shipped} shipped");
    }
    let root = s3.root.join(BUCKET).join("fleet");
    let want = expected(&gateways);
    assert!(
        want.iter().any(|l| l.starts_with("address ")),
        "the generated traffic has flows of {ADDRESS} in the window: {want:?}"
    );
    check_examples(&root, &want);
}
