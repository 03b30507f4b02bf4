//! What the shipping tests share over a store and a bucket: fast pass options, the keys the
//! chain's live segments must have, what the bucket holds. Uses the including test's
//! `common` (store_common) and `ship_common`.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use crate::ship_common::*;
use xdp_audit::ship::ShipOptions;
use xdp_audit::store::compact::DEFAULT_MAX_ROWS;
use xdp_audit::store::fsutil::sha256_file;
use xdp_audit::store::StoreConfig;

pub fn opts() -> ShipOptions {
    ShipOptions {
        poll: Duration::from_millis(50),
        backoff_max: Duration::from_millis(300),
        ..ShipOptions::default()
    }
}

/// The keys the chain's live segments must have, with their sealed SHA-256.
pub fn expected(dir: &Path, prefix: &str, gateway: &str) -> Vec<(String, String)> {
    let layout = xdp_audit::ship::layout::Layout::new(prefix, gateway);
    let mut v: Vec<(String, String)> = live(dir)
        .iter()
        .map(|s| (layout.segment(s), s.sha256.clone()))
        .collect();
    v.sort();
    v
}

/// The segment objects in the bucket with the SHA-256 of their bytes.
pub fn remote_segments(s3: &S3Server, prefix: &str) -> Vec<(String, String)> {
    s3.objects(prefix, ".parquet")
        .into_iter()
        .map(|k| {
            let sha = sha256_file(&s3.root.join(BUCKET).join(&k))
                .unwrap_or_else(|e| panic!("hash object {k}: {e}"));
            (k, sha)
        })
        .collect()
}

pub fn compacting(dir: &Path) -> StoreConfig {
    let mut cfg = config(dir);
    cfg.compact_max_rows = DEFAULT_MAX_ROWS;
    cfg
}
