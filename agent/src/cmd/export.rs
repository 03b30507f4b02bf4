//! `xdp-audit export`: hand a time window of flows over as a file, with its SHA-256.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use sha2::Digest;

use super::store_args::{progress_line, readable_store, FilterArgs, LogDirArgs};
use crate::store::access::{self, AccessInfo};
use crate::store::export::{Format, RecordWriter};
use crate::store::fsutil::hex;
use crate::store::query::{default_threads, scan, Filter};
use crate::store::{StoreClock, SystemClock};

/// Export file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// RFC 4180 CSV with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// The long help of `xdp-audit export`, with examples.
pub const LONG_ABOUT: &str = "Writes every flow of a time window (optionally filtered like `query`) to a
file for a hand-over, then prints the file's SHA-256 in `sha256sum` format, so the receiver can
check what they got (`sha256sum -c`). The file is written whole and fsynced; an existing file is
refused, and an export that fails removes what it wrote.

Examples:
  xdp-audit export --since 2026-05-03T14:00:00Z --until 2026-05-03T16:00:00Z --format csv --out case-4711.csv
  xdp-audit export --since 7d --until 0s --ip 10.1.2.3 --format jsonl --out 10.1.2.3-week.jsonl";

/// Arguments of `xdp-audit export`.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub struct ExportArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub dir: LogDirArgs,
    /// What to select; --since and --until are required.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// File format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The file to write (must not exist).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

struct Hashing<W> {
    inner: W,
    hash: sha2::Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A file this run created, removed on drop unless the run completed (`.0` taken).
struct Created<'a>(Option<&'a Path>);

impl Drop for Created<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Runs `xdp-audit export`.
pub fn main(args: ExportArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.filter.since.is_some() && args.filter.until.is_some(),
        "export needs both --since and --until (a hand-over names its window)"
    );
    let filter = args.filter.to_filter(SystemClock.now_ns())?;
    readable_store(&args.dir.log_dir)?;
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    // From here on the file is ours: a failed export removes it, so no partial hand-over is
    // left behind and a retry is not refused for an existing file.
    let mut created = Created(Some(&args.out));
    let format = match args.format {
        ExportFormat::Csv => Format::Csv,
        ExportFormat::Jsonl => Format::Jsonl,
    };
    let written = write(&args, &filter, file, format);
    // A failed export read records too: it is recorded with its error (and no file, which
    // `created` removes). A failure to record only warns (see `access::record`).
    let access = match &written {
        Ok((rows, digest)) => AccessInfo::export(&filter, *rows, digest, &args.out),
        Err(e) => AccessInfo::new("export", access::filter_text(&filter)).failed(&format!("{e:#}")),
    };
    access::record(&args.dir.log_dir, access);
    let (rows, digest) = written?;
    created.0 = None;
    tracing::info!(records = rows, file = %args.out.display(), "export written");
    println!("{digest}  {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes the selected records to `file`, hashing what is written, and fsyncs it: the rows
/// and the file's SHA-256 (hex).
fn write(
    args: &ExportArgs,
    filter: &Filter,
    file: File,
    format: Format,
) -> anyhow::Result<(u64, String)> {
    let sink = Hashing {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        hash: sha2::Sha256::new(),
    };
    let mut out = RecordWriter::new(sink, format);
    out.header()
        .with_context(|| format!("writing {}", args.out.display()))?;
    let mut progress = progress_line("export");
    let stats = scan(
        &args.dir.log_dir,
        filter,
        default_threads(),
        &mut |r| out.write(r),
        &mut progress,
    )
    .with_context(|| {
        format!(
            "exporting from {} to {}",
            args.dir.log_dir.display(),
            args.out.display()
        )
    })?;
    let sink = out
        .finish()
        .with_context(|| format!("writing {}", args.out.display()))?;
    let digest = hex(&sink.hash.finalize());
    let file = sink
        .inner
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", args.out.display()))?;
    file.sync_all()
        .with_context(|| format!("fsync {}", args.out.display()))?;
    Ok((stats.matched, digest))
}
