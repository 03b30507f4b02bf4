//! Object keys: a Hive-style layout engines read directly.
//!
//! ```text
//! PREFIX/gateway=<id>/date=YYYY-MM-DD/<segment file>     (date: UTC day of the segment's first record)
//! PREFIX/gateway=<id>/manifest/manifest-<seq>.jsonl      (the chain as of entry <seq>, 20 digits)
//! ```
//! Every key is written once (conditional create), so a key names one content forever.

use crate::store::manifest::SegmentInfo;

/// The directory part holding a gateway's manifests.
pub const MANIFEST_DIR: &str = "manifest";

/// Where one gateway's objects live under the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    base: String,
}

impl Layout {
    /// The layout under `prefix` (no slashes at the ends, may be empty) for `gateway_id`.
    pub fn new(prefix: &str, gateway_id: &str) -> Self {
        let base = if prefix.is_empty() {
            format!("gateway={gateway_id}")
        } else {
            format!("{prefix}/gateway={gateway_id}")
        };
        Self { base }
    }

    /// `PREFIX/gateway=<id>`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The key of a segment.
    pub fn segment(&self, s: &SegmentInfo) -> String {
        format!("{}/date={}/{}", self.base, utc_date(s.time_min_ns), s.file)
    }

    /// The key of the manifest as of chain entry `seq`.
    pub fn manifest(&self, seq: u64) -> String {
        format!("{}/{MANIFEST_DIR}/manifest-{seq:020}.jsonl", self.base)
    }
}

/// The gateway id of a target name (`s3://BUCKET/PREFIX/gateway=<id>`, as a cursor or the
/// status names it): the inverse of [`Layout::base`]'s last part.
pub fn gateway_of(target: &str) -> Option<&str> {
    let (_, id) = target.rsplit_once("gateway=")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// `YYYY-MM-DD` (UTC) of a Unix-ns instant; instants outside jiff's range clamp to its ends.
pub fn utc_date(ns: i64) -> String {
    let ts = jiff::Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(if ns < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    });
    ts.strftime("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_hive_layout() {
        let s = SegmentInfo {
            file: "seg-7-1.parquet".into(),
            journal_id: 1,
            time_min_ns: 1_764_547_199_000_000_000, // 2025-11-30T23:59:59Z
            time_max_ns: 1_764_547_300_000_000_000,
            rows: 1,
            size: 1,
            sha256: String::new(),
            footer_sha256: None,
        };
        let l = Layout::new("fleet/eu", "gw1");
        assert_eq!(
            l.segment(&s),
            "fleet/eu/gateway=gw1/date=2025-11-30/seg-7-1.parquet"
        );
        assert_eq!(
            Layout::new("", "gw1").manifest(12),
            "gateway=gw1/manifest/manifest-00000000000000000012.jsonl"
        );
        let target = format!("s3://b/{}", l.base());
        assert_eq!(gateway_of(&target), Some("gw1"));
        assert_eq!(gateway_of("s3://b/fleet"), None);
    }
}
