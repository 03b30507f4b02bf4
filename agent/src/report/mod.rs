//! The incident report (`xdp-audit report`): what an operator hands an inspector about a time
//! window. One pass over the store's one query path ([`crate::store::query::scan`]) counts the
//! matching records ([`tally`]) while the command writes the full set as an attachment with
//! the export codec; the chain entries that cover the window, the signed head and the
//! `verify` verdict at report time come from the manifest. The [`Report`] is rendered as
//! HTML ([`html`], with the inline SVG timeline of [`svg`]), Markdown ([`markdown`]) or JSON
//! (its `Serialize`, schema in `docs/report-format.md`): the same facts in each.

use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use sha2::Digest;

use crate::record::{rfc3339_ns, rfc3339_s, FlowRecord};
use crate::store::access::{filter_text, Who};
use crate::store::fsutil::{hex, unhex, InputError};
use crate::store::manifest::{self, Body, ManifestError};
use crate::store::query::{default_threads, scan, Filter, QueryError};
use crate::store::verify::{verify, Fault};

pub mod html;
pub mod markdown;
pub mod svg;
pub mod tally;
pub mod text;
pub mod view;

pub use svg::Timeline;
pub use tally::{BlockedRow, BlockedTable, Summary};

/// The `schema` of a JSON report; a change of its meaning is a new version.
pub const SCHEMA: &str = "xdp-audit-report/2";

/// Records shown in the report's table by default; the attachment holds them all.
pub const DEFAULT_LIMIT: usize = 200;

/// The most records `report --limit` shows: the table is for people, and the records kept
/// for it are held in memory until the scan ends (`--attach` writes them all to a file).
pub const MAX_LIMIT: usize = 100_000;

/// Errors of building a report; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The records could not be read, or the attachment not written.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The manifest could not be read.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The filter names no window.
    #[error("a report needs both --since and --until (it names its window)")]
    NoWindow,
}

/// The title page: who made the report, of what, where and when.
#[derive(Clone, Debug, Serialize)]
pub struct Title {
    /// The gateway's id (`--gateway-id`, the name its shipped objects carry as `gateway=<id>`).
    pub gateway_id: String,
    /// Where [`Title::gateway_id`] came from.
    pub gateway_id_source: GatewaySource,
    /// Host name of the machine the report was made on (the gateway, for its own store).
    pub gateway_host: String,
    /// SHA-256 of the public key the chain head names as its signer, hex; none if the head
    /// names none (or not 32 bytes of hex).
    pub key_fingerprint: Option<String>,
    /// Whether that key is `--public-key` and the store verified with it: else the key is
    /// only what the head states.
    pub key_checked: bool,
    /// SHA-256 of `--public-key`, hex, when it was given and is not the key the head names:
    /// the operator's key is never shown as the chain's.
    pub given_key_fingerprint: Option<String>,
    /// Version of xdp-audit that made the report.
    pub agent_version: String,
    /// When the report was made, RFC 3339 UTC.
    pub generated_at: String,
    /// Start of the window, RFC 3339 UTC, exact (with its fraction when it has one: the
    /// bound `query` is given to find the same records).
    pub since: String,
    /// End of the window (exclusive), RFC 3339 UTC, exact.
    pub until: String,
    /// The selection as canonical text (the access log's form).
    pub filter: String,
    /// The store directory.
    pub store: String,
    /// Who made the report.
    pub operator: Who,
}

/// The full set of matching records, as a file beside the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// The file's name (beside the report).
    pub file: String,
    /// `csv` or `jsonl`.
    pub format: String,
    /// Records in it.
    pub rows: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// The matching records.
#[derive(Clone, Debug, Serialize)]
pub struct Records {
    /// Records matched.
    pub total: u64,
    /// The earliest of them (at most the limit), in the export's field form.
    pub shown: Vec<FlowRecord>,
    /// The full set, if attached.
    pub attachment: Option<Attachment>,
    /// Live journals that could not be read: their records are missing, so the report is
    /// incomplete (each is named in a warning on stderr; `report` exits 3).
    pub unreadable_journals: u64,
}

/// One manifest entry that covers the window: a sealed (or merged) segment holding records
/// of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainEntry {
    /// Position in the chain.
    pub seq: u64,
    /// `segment` (sealed from a journal) or `compact` (a day's segments merged).
    pub kind: &'static str,
    /// The segment file.
    pub file: String,
    /// Rows in it.
    pub rows: u64,
    /// Its earliest record start, RFC 3339 UTC.
    pub time_min: String,
    /// Its latest record end, RFC 3339 UTC.
    pub time_max: String,
    /// SHA-256 of the segment file.
    pub sha256: String,
    /// The entry's hash (its link in the chain).
    pub hash: String,
}

/// The chain's part of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Chain {
    /// Entries of live segments overlapping the window, in chain order.
    pub entries: Vec<ChainEntry>,
    /// Matching records read from live journals: not sealed yet, so no entry covers them
    /// (the next seal adds one).
    pub unsealed_records: u64,
    /// The head: the last entry, and its signature if the agent signs.
    pub head: Option<manifest::Head>,
}

/// `verify` at report time.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// Whether the store verified.
    pub ok: bool,
    /// Whether `verify` reached no verdict because a file could not be read (named in
    /// [`Verification::verdict`]), or because nothing is sealed yet where a key was given:
    /// the store is shown neither unaltered nor altered.
    pub unchecked: bool,
    /// Whether that is because nothing is sealed yet (no chain, so no signed head).
    pub nothing_sealed: bool,
    /// The verdict as `verify` prints it, without its `ok: ` or `BROKEN: `.
    pub verdict: String,
    /// Whether the head's signature was checked against a key the operator gave.
    pub signature_checked: bool,
    /// The file at fault, when the store did not verify (its path as `verify` names it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// A finished report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The title page.
    pub title: Title,
    /// Summary counts.
    pub summary: Summary,
    /// Blocked destinations by rule.
    pub blocked_by_rule: BlockedTable,
    /// Blocked destinations by client.
    pub blocked_by_client: BlockedTable,
    /// Flows and blocked flows over the window.
    pub timeline: Timeline,
    /// The matching records.
    pub records: Records,
    /// Chain entries covering the window, and the head.
    pub chain: Chain,
    /// `verify` at report time.
    pub verify: Verification,
}

/// What a report is made of besides the store.
pub struct Inputs<'a> {
    /// The selection; both ends of its window must be set.
    pub filter: &'a Filter,
    /// Records shown in the table.
    pub limit: usize,
    /// The trusted chain key (`--public-key`), if given: the head's signature is checked.
    pub public_key: Option<&'a VerifyingKey>,
    /// Who makes the report.
    pub who: Who,
    /// Now, Unix ns.
    pub now_ns: i64,
    /// This machine's host name.
    pub host: String,
    /// The gateway's id and where it came from ([`gateway_id`]).
    pub gateway: (String, GatewaySource),
}

/// Where the report's gateway id came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewaySource {
    /// `report --gateway-id`.
    Flag,
    /// The `gateway-id` of the agent's config file (`report --config`).
    Config,
    /// The store's shipping cursor (`ship-cursor.json`): the id its objects were shipped under.
    ShippingCursor,
    /// This machine's host name (the agent's default `--gateway-id`).
    HostName,
}

impl GatewaySource {
    /// How the title page says it.
    pub fn text(self) -> &'static str {
        match self {
            GatewaySource::Flag => "--gateway-id",
            GatewaySource::Config => "the config file's gateway-id",
            GatewaySource::ShippingCursor => "the id the store was shipped under",
            GatewaySource::HostName => "host name",
        }
    }
}

/// The gateway id a report of the store in `dir` names: `flag` if given, else the id the
/// store was shipped under (its cursor's target), else `host` (the agent's default id).
pub fn gateway_id(
    dir: &Path,
    flag: Option<&str>,
    config: Option<&str>,
    host: &str,
) -> (String, GatewaySource) {
    if let Some(id) = flag {
        return (id.to_owned(), GatewaySource::Flag);
    }
    if let Some(id) = config {
        return (id.to_owned(), GatewaySource::Config);
    }
    let shipped = crate::ship::cursor::read(dir)
        .ok()
        .flatten()
        .and_then(|c| crate::ship::layout::gateway_of(&c.target).map(str::to_owned));
    match shipped {
        Some(id) => (id, GatewaySource::ShippingCursor),
        None => (host.to_owned(), GatewaySource::HostName),
    }
}

/// Builds the report of the store in `dir`, calling `emit` with every matching record (the
/// command writes the attachment from it), and fills in `attachment` from the caller after
/// the scan.
pub fn build(
    dir: &Path,
    inputs: Inputs<'_>,
    emit: &mut dyn FnMut(&FlowRecord) -> std::io::Result<()>,
) -> Result<Report, ReportError> {
    let f = inputs.filter;
    let (Some(since), Some(until)) = (f.since_ns, f.until_ns) else {
        return Err(ReportError::NoWindow);
    };
    let mut tally = tally::Tally::new(since, until, inputs.limit);
    let stats = scan(
        dir,
        f,
        default_threads(),
        &mut |r| {
            tally.add(r);
            emit(r)
        },
        &mut |_, _| {},
    )?;
    let counted = tally.finish();
    // The verdict after the records: the chain it walked holds every segment they were read
    // from (a chain only grows), and the table below is of that very chain, so table and
    // verdict are of one reading of the manifest (a seal between two readings put an entry
    // in one and not the other).
    let mut verified = verify(dir, inputs.public_key);
    let (entries, head) = match &mut verified {
        Ok(v) => std::mem::take(&mut v.chain),
        Err(_) => read_chain(dir)?,
    };
    let live: std::collections::HashSet<&str> = manifest::live_segments(&entries)
        .into_iter()
        .map(|s| s.file.as_str())
        .collect();
    let covering = entries
        .iter()
        .filter_map(|e| {
            let (kind, s) = match &e.body {
                Body::Segment(s) => ("segment", s),
                Body::Compact(c) => ("compact", &c.segment),
                Body::Prune(_) | Body::Anchor(_) => return None,
            };
            (live.contains(s.file.as_str()) && f.overlaps(s.time_min_ns, s.time_max_ns)).then(
                || ChainEntry {
                    seq: e.seq,
                    kind,
                    file: s.file.clone(),
                    rows: s.rows,
                    time_min: rfc3339_ns(s.time_min_ns),
                    time_max: rfc3339_ns(s.time_max_ns),
                    sha256: s.sha256.clone(),
                    hash: e.hash.clone(),
                },
            )
        })
        .collect();
    let verify = match verified {
        Ok(v) => Verification {
            ok: true,
            unchecked: false,
            nothing_sealed: false,
            verdict: v.summary(),
            signature_checked: v.signature_checked,
            file: None,
        },
        Err(b) => Verification {
            ok: false,
            unchecked: matches!(b.fault, Fault::Unreadable | Fault::Empty),
            nothing_sealed: b.fault == Fault::Empty,
            verdict: b.to_string(),
            signature_checked: false,
            file: Some(b.file.display().to_string()),
        },
    };
    let (key_fingerprint, key_checked, given_key_fingerprint) =
        signer(head.as_ref(), inputs.public_key, &verify);
    Ok(Report {
        schema: SCHEMA,
        title: Title {
            gateway_id: inputs.gateway.0,
            gateway_id_source: inputs.gateway.1,
            gateway_host: inputs.host,
            key_fingerprint,
            key_checked,
            given_key_fingerprint,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            generated_at: rfc3339_s(inputs.now_ns),
            since: text::rfc3339_exact(since),
            until: text::rfc3339_exact(until),
            filter: filter_text(f),
            // Absolute: the report leaves the directory it was made in.
            store: std::path::absolute(dir)
                .unwrap_or_else(|_| dir.to_owned())
                .display()
                .to_string(),
            operator: inputs.who,
        },
        summary: counted.summary,
        blocked_by_rule: counted.blocked_by_rule,
        blocked_by_client: counted.blocked_by_client,
        timeline: counted.timeline,
        records: Records {
            total: stats.matched,
            shown: counted.shown,
            attachment: None,
            unreadable_journals: stats.journals_unreadable as u64,
        },
        chain: Chain {
            entries: covering,
            unsealed_records: stats.journal_matched,
            head,
        },
        verify,
    })
}

/// The entries and head line of the manifest in `dir` as they are now (none for no manifest):
/// the table of a store that did not verify.
fn read_chain(dir: &Path) -> Result<(Vec<manifest::Entry>, Option<manifest::Head>), ReportError> {
    let path = dir.join(manifest::MANIFEST);
    match manifest::read_manifest_file(&path) {
        Ok(bytes) => Ok(manifest::parse_with_head(
            &path,
            &String::from_utf8_lossy(&bytes),
        )?),
        Err(InputError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok((Vec::new(), None))
        }
        Err(refused) => Err(ManifestError::Io {
            path,
            op: "read",
            cause: refused.into(),
        }
        .into()),
    }
}

/// The signer on the title page: the fingerprint of the key the head names, whether it was
/// checked (it is `given` and the store verified with it), and the fingerprint of `given`
/// when it is another key (or the head names none).
fn signer(
    head: Option<&manifest::Head>,
    given: Option<&VerifyingKey>,
    verify: &Verification,
) -> (Option<String>, bool, Option<String>) {
    let named = head
        .and_then(|h| h.public_key.as_deref())
        .and_then(unhex::<32>);
    let given_bytes = given.map(VerifyingKey::to_bytes);
    let checked = verify.ok && verify.signature_checked && named.is_some() && named == given_bytes;
    let other = given_bytes
        .filter(|g| named.as_ref() != Some(g))
        .map(|g| fingerprint(&g));
    (named.map(|k| fingerprint(&k)), checked, other)
}

/// A public key's fingerprint: the SHA-256 of its 32 bytes, hex.
pub fn fingerprint(key: &[u8; 32]) -> String {
    hex(&sha2::Sha256::digest(key))
}

/// This machine's host name (`/proc/sys/kernel/hostname`), or `unknown`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
