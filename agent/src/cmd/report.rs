//! `xdp-audit report`: the incident report of a time window, for a hand-over.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use sha2::Digest;

use super::export::{ExportFile, ExportFormat, PartialFile};
use super::store_args::{readable_store, FilterArgs, StoreDirArgs};
use crate::report::{self, Attachment, Inputs, Report};
use crate::store::access::{self, filter_text, AccessInfo, Who};
use crate::store::fsutil::hex;
use crate::store::manifest::load_public_key;
use crate::store::{StoreClock, SystemClock};

/// The exit status of a report on a store that does not verify.
pub const EXIT_BROKEN: u8 = 4;

/// Report formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// One self-contained HTML page (inline styles and SVG timeline, no script).
    Html,
    /// Markdown with tables.
    Md,
    /// JSON (schema `xdp-audit-report/2`, see docs/report-format.md).
    Json,
}

/// The long help of `xdp-audit report`, with examples.
pub const LONG_ABOUT: &str = "Writes the incident report of a time window, to hand to an inspector: the gateway's
identity (its --gateway-id, host name, the fingerprint of the chain's signing key), the window and selection,
who made the report and when; summary counts (flows, packets, bytes, distinct clients and
accounts, blocked flows, dropped packets); blocked destinations by rule and by client; a
timeline of flows and blocked flows; the matching records (the earliest --limit in a table,
all of them with --attach in a CSV or JSON Lines file beside the report, whose SHA-256 the
report prints); the chain entries of the sealed segments covering the window, with their
hashes; the signed chain head; and the `verify` verdict at report time.

The selection takes the same flags as `query`; --since and --until are required. The
report reads the store like `query` and records itself in the operator log with its
SHA-256. With --out, the report (and the attachment, named after it: case.html ->
case.records.csv) is written whole and fsynced, an existing file is refused, and the
SHA-256 of each file is printed in `sha256sum` format.

The title page opens with the verdict: verified, BROKEN or NOT CHECKED, and how many
matching records are still in the live journal, which no chain entry vouches for until the
next seal.

Exit status: 0 when the report is written and the store verified; 4 when the store does not
verify (BROKEN: the report is written and says why, on its title page and at the damaged
entry; this wins over 3; when a segment the window needs, or the manifest, is too damaged
for the scan to go on, no report can be built: the error names the file and says BROKEN,
and the exit status is 4 as well); 3 when the report is incomplete (live journals could not
be read whole) or the chain could not be checked (a file could not be read: no verdict
either way); 1 on an error (nothing is written).

Examples:
  xdp-audit report --since 2026-05-03T14:00:00Z --until 2026-05-03T16:00:00Z --format html --out case-4711.html --attach csv
  xdp-audit report --since 24h --until 0s --ip 10.1.2.3 --format md > 10.1.2.3.md
  xdp-audit report --since 7d --until 0s --rule /etc/xdp-audit/block.list --format json --out week.json";

/// Arguments of `xdp-audit report`.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
// A hand-over names its window: --at is refused here, so it is not offered.
#[command(mut_arg("at", |a| a.hide(true)), mut_arg("at_slack", |a| a.hide(true)))]
pub struct ReportArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub dir: StoreDirArgs,
    /// What to select; --since and --until are required.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Report format.
    #[arg(long, value_enum, default_value = "html")]
    pub format: ReportFormat,
    /// The file to write (must not exist); stdout without it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Attach every matching record as a file beside --out, in this format.
    #[arg(long, value_enum, value_name = "FORMAT", requires = "out")]
    pub attach: Option<ExportFormat>,
    /// Records shown in the report's table (the earliest), at most 100000: a report is read
    /// by people; --attach writes every record to a file beside it.
    #[arg(
        long,
        default_value_t = report::DEFAULT_LIMIT,
        value_name = "RECORDS",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=report::MAX_LIMIT as u64)
    )]
    pub limit: usize,
    /// The gateway's id on the title page (default: the --config file's gateway-id, else the
    /// id the store was shipped under, from its `ship-cursor.json`, else the host name, as
    /// `run --gateway-id` defaults).
    #[arg(long, value_name = "ID", value_parser = crate::ship::config::check_gateway_id)]
    pub gateway_id: Option<String>,
    /// Check the chain head's signature against this key (a file from `xdp-audit keygen`).
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
}

/// The attachment's path for a report at `out`: `case.html` -> `case.records.csv`.
pub fn attachment_path(out: &Path, format: ExportFormat) -> PathBuf {
    let stem = out.file_stem().unwrap_or(out.as_os_str()).to_string_lossy();
    out.with_file_name(format!("{stem}.records.{}", format.extension()))
}

/// Runs `xdp-audit report`.
pub fn main(mut args: ReportArgs) -> anyhow::Result<ExitCode> {
    args.dir.resolve()?;
    anyhow::ensure!(
        args.filter.since.is_some() && args.filter.until.is_some(),
        "report needs both --since and --until (a report names its window)"
    );
    let now = SystemClock.now_ns();
    let filter = args.filter.to_filter(now)?;
    let key = match &args.public_key {
        Some(p) => Some(load_public_key(p).context("loading --public-key")?),
        None => None,
    };
    readable_store(&args.dir.log_dir)?;
    // Recorded once the report is made and before it (or its attachment) takes its name:
    // a kill between the two must not leave a complete report no access entry names. A
    // failure after that (publishing) is recorded as a failed access as well.
    let record_made = |report: &Report, digest: &str| {
        let access = AccessInfo::report(&filter, report.records.total, digest, args.out.as_deref())
            .unreadable(report.records.unreadable_journals);
        access::record(&args.dir.log_dir, access);
    };
    let made = make(&args, &filter, key.as_ref(), now, &record_made);
    if let Err(e) = &made {
        let failed = AccessInfo::new("report", filter_text(&filter)).failed(&format!("{e:#}"));
        access::record(&args.dir.log_dir, failed);
    }
    let (report, digest, attachment) = match made {
        Ok(m) => m,
        // A damaged segment the window needs, or a manifest cut short or deleted, stops the
        // scan: no report can be built, but a script must still tell a store that does not
        // verify from a mere error. Only what reading the store met (`report::build`'s
        // errors): a refused --out, an attachment's write or a closed pipe is no verdict on
        // the store.
        Err(e)
            if !matches!(
                e.downcast_ref::<report::ReportError>(),
                Some(
                    report::ReportError::Manifest(_)
                        | report::ReportError::Query(
                            crate::store::query::QueryError::Segment(_)
                                | crate::store::query::QueryError::Manifest(_)
                                | crate::store::query::QueryError::Journal(_)
                        )
                )
            ) =>
        {
            return Err(e)
        }
        Err(e) => match crate::store::verify::verify(&args.dir.log_dir, key.as_ref()) {
            Err(b) if b.fault == crate::store::verify::Fault::Altered => {
                return Err(e
                    .context("no report was written")
                    .context(format!("BROKEN: {b}"))
                    .context(super::BrokenStore))
            }
            _ => return Err(e),
        },
    };
    tracing::info!(
        records = report.records.total,
        blocked = report.summary.blocked_flows,
        verified = report.verify.ok,
        sha256 = %digest,
        "report written"
    );
    if let Some(out) = &args.out {
        outln!("{digest}  {}", out.display())?;
        if let (Some(path), Some(a)) = (attachment, &report.records.attachment) {
            outln!("{}  {}", a.sha256, path.display())?;
        }
    }
    Ok(exit_status(&report))
}

/// The exit status of a written report: 4 when the store is BROKEN (evidence whose integrity
/// is not shown; it wins over an incomplete answer), 3 when the answer is incomplete or the
/// chain could not be checked (no verdict), else 0.
fn exit_status(report: &Report) -> ExitCode {
    let v = &report.verify;
    // A report on a store that does not verify is written (its verification section says
    // why), but a script must not take it for a clean one, nor for a merely incomplete one.
    if !v.ok && !v.unchecked {
        tracing::warn!(
            "the store did not verify (BROKEN): the report says so in its verification section"
        );
        return ExitCode::from(EXIT_BROKEN);
    }
    // An incomplete answer must not look complete: as `query` and `export`, exit 3.
    if report.records.unreadable_journals > 0 {
        tracing::warn!(
            journals = report.records.unreadable_journals,
            "the report is INCOMPLETE: live journals could not be read whole (named above); its title page says so"
        );
        return ExitCode::from(super::EXIT_INCOMPLETE);
    }
    if v.unchecked {
        tracing::warn!(
            "the chain could not be checked ({}); the report says so and gives no verdict",
            v.verdict
        );
        return ExitCode::from(super::EXIT_UNCHECKED);
    }
    ExitCode::SUCCESS
}

/// Builds, renders and writes the report: the report, its SHA-256, and the attachment's path.
/// `made` is called with the report and its SHA-256 before anything is published.
fn make(
    args: &ReportArgs,
    filter: &crate::store::query::Filter,
    key: Option<&ed25519_dalek::VerifyingKey>,
    now: i64,
    made: &dyn Fn(&Report, &str),
) -> anyhow::Result<(Report, String, Option<PathBuf>)> {
    // Both files are created (under temporary names) before the store is read: an existing
    // file is refused at once.
    let target = match &args.out {
        Some(p) => Some(PartialFile::create(p)?),
        None => None,
    };
    let attach_path = args
        .out
        .as_deref()
        .zip(args.attach)
        .map(|(out, f)| (attachment_path(out, f), f));
    let mut attachment = match &attach_path {
        Some((p, f)) => Some(ExportFile::create(p, *f)?),
        None => None,
    };
    let host = report::host_name();
    let inputs = Inputs {
        filter,
        limit: args.limit,
        public_key: key,
        who: Who::current(),
        now_ns: now,
        host: host.clone(),
        gateway: report::gateway_id(
            &args.dir.log_dir,
            args.gateway_id.as_deref(),
            args.dir.gateway_id.as_deref(),
            &host,
        ),
    };
    let mut report = report::build(&args.dir.log_dir, inputs, &mut |r| match &mut attachment {
        Some(a) => a.write(r),
        None => Ok(()),
    })
    .with_context(|| format!("reading {}", args.dir.log_dir.display()))?;
    let mut attached = None;
    if let (Some(file), Some((path, format))) = (attachment, &attach_path) {
        let (sha256, guard) = file.finish_unkept()?;
        attached = Some(guard);
        report.records.attachment = Some(Attachment {
            file: path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            format: format.extension().into(),
            rows: report.records.total,
            sha256,
        });
    }
    let text = match args.format {
        ReportFormat::Html => report::html::html(&report),
        ReportFormat::Md => report::markdown::markdown(&report),
        ReportFormat::Json => {
            let mut j =
                serde_json::to_string_pretty(&report).context("encoding the JSON report")?;
            j.push('\n');
            j
        }
    };
    let digest = hex(&sha2::Sha256::digest(text.as_bytes()));
    made(&report, &digest);
    match target {
        Some((guard, mut file)) => {
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", guard.path().display()))?;
            // The attachment is published only with the report that names its hash: first,
            // and taken back if the report cannot be.
            let attached_path = attached.as_ref().map(|a| a.path().to_owned());
            if let Some(a) = attached.take() {
                a.publish()?;
            }
            if let Err(e) = guard.publish() {
                if let Some(p) = attached_path {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(super::stdout_error)?;
        }
    }
    if let Some(a) = attached {
        a.publish()?;
    }
    Ok((report, digest, attach_path.map(|(p, _)| p)))
}
