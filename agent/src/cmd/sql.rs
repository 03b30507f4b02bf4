//! `xdp-audit sql`: an SQL statement over the audit store, for investigators.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::export::{Hashing, PartialFile};
use super::store_args::{readable_store, StoreDirArgs};
use crate::ship::config::{ShipArgs, ShipConfig};
use crate::sql::{remote, Session, SqlError, Summary};
use crate::store::access::{self, AccessInfo};
use crate::store::export::Format;

/// The long help of `xdp-audit sql`, with examples.
pub const LONG_ABOUT: &str = "Runs one SQL statement (SELECT, WITH, EXPLAIN, SHOW) over the audit store, sealed segments
and live journal alike, with an embedded engine (Apache DataFusion; PostgreSQL-like dialect).
The store is only read: statements that would define, change or write anything (CREATE,
INSERT, COPY, SET...) are refused. Every run, failed ones too, is an access entry in the
operator log, with the statement and the rows of its answer (a user who may read the store
but not append to its operator log gets the answer and a warning that no entry was written).

Tables:
  flows      every record, readable: src_ip, dst_ip and nat_ip as text ('192.0.2.1' for IPv4,
             IPv6 text otherwise), src_mac and dst_mac as 'aa:bb:cc:dd:ee:ff', time_start and
             time_end as timestamps in UTC; the other columns as `query --format jsonl` names
             them (user, hostname, domain, dns_qname, nat_port, end_reason, bytes, ...).
  flows_raw  the same rows in the store's column form (16-byte addresses, 6-byte MACs): a filter
             on it skips row groups by their statistics, e.g. src_ip = ip_column('10.1.2.3').
  segments_raw, journal_raw   flows_raw split into the sealed segments and the live journal.
Functions: ip_text(addr), mac_text(mac) (column form to text), ip_column(text), mac_column(text)
(text to column form). `SELECT * FROM information_schema.columns` lists every column.
Write `user` in double quotes (\"user\") where the engine would read the keyword.

With --remote s3://BUCKET/PREFIX, the tables hold a fleet's shipped segments instead: every
`.parquet` object under PREFIX as the shipper lays them out (gateway=<id>/date=YYYY-MM-DD/),
with two more columns, `gateway` (text) and `date` (the UTC day of the segment's first
record). Endpoint, region and credentials as the shipper takes them (--ship-endpoint,
--ship-region, --ship-credentials, or the AWS_* variables). A bucket has no live journal.
The access entry goes to the store of --log-dir if one is there, else a warning says that
none was recorded.

Examples:
  # the 10 destinations with most flows in a window
  xdp-audit sql \"SELECT dst_ip, dst_port, count(*) AS flows FROM flows
    WHERE time_start >= TIMESTAMP '2026-05-03T00:00:00Z' GROUP BY dst_ip, dst_port
    ORDER BY flows DESC LIMIT 10\"
  # which accounts reached a domain in the last 7 days, how often
  xdp-audit sql \"SELECT \\\"user\\\", count(*) AS flows, min(time_start) AS first FROM flows
    WHERE (domain = 'example.com' OR domain LIKE '%.example.com')
      AND time_start >= now() - INTERVAL '7 days'
    GROUP BY \\\"user\\\" ORDER BY flows DESC\" --format csv
  # every MAC an address had
  xdp-audit sql \"SELECT DISTINCT mac_text(src_mac) AS mac FROM flows_raw
    WHERE src_ip = ip_column('10.1.2.3')\"
  # which gateways saw an address, on which days: every gateway's shipped segments
  xdp-audit sql --remote s3://audit/fleet --ship-endpoint http://10.0.0.5:9000 \\
    --ship-credentials /etc/xdp-audit/s3.cred \"SELECT gateway, date, count(*) AS flows
    FROM flows WHERE src_ip = '10.1.2.3' GROUP BY gateway, date ORDER BY gateway, date\"
  # flows a client opened within 5 s after asking DNS for a name
  xdp-audit sql \"SELECT d.src_ip, d.time_start AS asked, f.dst_ip, f.dst_port, f.time_start AS opened
    FROM flows d JOIN flows f ON f.src_ip = d.src_ip
     AND f.time_start BETWEEN d.time_start AND d.time_start + INTERVAL '5 seconds'
    WHERE d.dns_qname = 'example.com' AND f.dst_port <> 53\" --format jsonl";

/// Arguments of `xdp-audit sql`.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub struct SqlArgs {
    /// The statement: one SELECT, WITH, EXPLAIN or SHOW.
    #[arg(value_name = "STATEMENT")]
    pub statement: String,
    /// Where the store lives.
    #[command(flatten)]
    pub dir: StoreDirArgs,
    /// Output format: `table` (every column of the answer, aligned, in tables of 10,000 rows
    /// printed as they come), `csv` (with a header line of the answer's column names) or `jsonl` (one JSON
    /// object per row).
    #[arg(long, value_enum, default_value = "table", hide_possible_values = true)]
    pub format: Format,
    /// Write the answer to FILE (which must not exist) and print its SHA-256, not to stdout
    /// (`--out` too, as `export` and `report` spell it).
    #[arg(long, value_name = "FILE", alias = "out")]
    pub output: Option<PathBuf>,
    /// Read a fleet's shipped segments from this bucket and prefix, not the local store.
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub remote: Option<String>,
    /// With --remote: S3 endpoint URL for S3-compatible servers (default AWS, or
    /// AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL", requires = "remote")]
    pub ship_endpoint: Option<String>,
    /// With --remote: region (default AWS_REGION, AWS_DEFAULT_REGION, else us-east-1).
    #[arg(long, value_name = "REGION", requires = "remote")]
    pub ship_region: Option<String>,
    /// With --remote: AWS-style credentials file, as `run --ship-credentials` takes it;
    /// default AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, value_name = "FILE", requires = "remote")]
    pub ship_credentials: Option<PathBuf>,
    /// The most memory the engine holds (bytes, or 512MiB, 2GiB; default a quarter of the machine's, or of
    /// its cgroup's when less, at least 256 MiB): a statement that needs more (a large join
    /// or sort) fails with "Resources exhausted" instead of taking the gateway's memory.
    #[arg(long, value_name = "BYTES", value_parser = crate::bytesize::parse_usize)]
    pub memory_limit: Option<usize>,
}

impl SqlArgs {
    /// The bucket of --remote with the shipper's settings, checked; `None` without it.
    fn remote(&self) -> anyhow::Result<Option<ShipConfig>> {
        let ship = ShipArgs {
            ship: self.remote.clone(),
            ship_endpoint: self.ship_endpoint.clone(),
            ship_region: self.ship_region.clone(),
            ship_credentials: self.ship_credentials.clone(),
            // Every gateway under the prefix is read, so the id names no object; a fixed one
            // spares reading the host name.
            gateway_id: Some("sql".into()),
            ..ShipArgs::default()
        };
        ship.to_config().context("--remote")
    }
}

/// Runs `xdp-audit sql`.
pub fn main(mut args: SqlArgs) -> anyhow::Result<ExitCode> {
    args.dir.resolve()?;
    let remote = args.remote()?;
    let local_store = match &remote {
        None => readable_store(&args.dir.log_dir).map(|()| true)?,
        Some(_) => readable_store(&args.dir.log_dir).is_ok(),
    };
    let statement = match &remote {
        Some(cfg) => format!("--remote {}: {}", remote::url(cfg), args.statement.trim()),
        None => args.statement.clone(),
    };
    if args.output.is_none() && local_store {
        // Rows printed are disclosed: a signal after the first records the access and ends
        // the command.
        let (dir, stopped) = (args.dir.log_dir.clone(), statement.clone());
        super::interrupt::catch(move || {
            let rows: Result<u64, String> = Err(super::interrupt::Stopped.to_string());
            access::record(&dir, AccessInfo::sql(&stopped, &rows));
        })
        .context("installing the signal handlers")?;
    }
    let run = run(&args, remote.as_ref());
    let rows = run
        .as_ref()
        .map(|(s, _)| s.rows)
        .map_err(|e| format!("{e:#}"));
    if !super::interrupt::claim() {
        super::interrupt::wait_for_exit();
    }
    let mut access = AccessInfo::sql(&statement, &rows);
    if let (Ok((_, Some((digest, _)))), Some(out)) = (&run, &args.output) {
        access = access.output(digest, out);
    }
    if let Ok((summary, _)) = &run {
        access = access.unreadable(summary.damaged_journals as u64);
    }
    if local_store {
        let stopped = super::interrupt::when_stopped(|| {
            let rows: Result<u64, String> = Err(super::interrupt::Stopped.to_string());
            access::record(&args.dir.log_dir, AccessInfo::sql(&statement, &rows));
        });
        if let Some(code) = stopped {
            return Ok(code);
        }
        // Recorded before the output file takes its name: a kill between the two must not
        // leave a complete answer no access entry names.
        access::record(&args.dir.log_dir, access);
    } else {
        tracing::warn!(
            "no audit store at --log-dir {}: this --remote access was NOT recorded in an operator log; give --log-dir of the store whose log should hold it",
            args.dir.log_dir.display()
        );
    }
    let run = run.and_then(|(summary, output)| match output {
        Some((digest, file)) => {
            let log_dir = local_store.then_some(args.dir.log_dir.as_path());
            file.publish_recorded(log_dir, |e| AccessInfo::sql(&statement, &Err(e)))?;
            Ok((summary, Some(digest)))
        }
        None => Ok((summary, None)),
    });
    match run {
        Ok((summary, digest)) => {
            tracing::info!(
                rows = summary.rows,
                segments = summary.segments,
                journals = summary.journals,
                journal_rows = summary.journal_rows,
                "sql done"
            );
            if let (Some(digest), Some(out)) = (digest, &args.output) {
                outln!("{digest}  {}", out.display())?;
            }
            // An incomplete answer must not look complete: as `query`'s, exit 3.
            if summary.damaged_journals > 0 {
                tracing::warn!(
                    journals = summary.damaged_journals,
                    "the answer is INCOMPLETE: live journals cannot be read or hold damaged stretches (named above)"
                );
                return Ok(ExitCode::from(3));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
    }
}

/// What a run did, and the output file's SHA-256 and guard (unpublished), if any.
type Answer = (Summary, Option<(String, PartialFile)>);

/// Runs the statement to stdout or the output file ([`Answer`]).
fn run(args: &SqlArgs, remote: Option<&ShipConfig>) -> anyhow::Result<Answer> {
    let answer = answer(args, remote);
    match remote {
        // The engine's own messages name the endpoint's URL, not the bucket the operator gave.
        Some(cfg) => answer.with_context(|| format!("--remote {}", remote::url(cfg))),
        None => answer,
    }
}

/// The answer written (see [`run`]).
fn answer(args: &SqlArgs, remote: Option<&ShipConfig>) -> anyhow::Result<Answer> {
    let dir = &args.dir.log_dir;
    let limit = args
        .memory_limit
        .unwrap_or_else(crate::sql::default_memory_limit);
    let session = match remote {
        Some(cfg) => Session::remote(cfg, limit)?,
        None => Session::open(dir, limit)
            .with_context(|| format!("reading the store {}", dir.display()))?,
    };
    let Some(path) = &args.output else {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(super::interrupt::Guarded(stdout.lock()));
        let summary = session.run(&args.statement, args.format, &mut out)?;
        return Ok((summary, None));
    };
    let (guard, file) = PartialFile::create(path)?;
    let mut out = Hashing::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let summary = session.run(&args.statement, args.format, &mut out)?;
    let written = (|| {
        out.flush()?;
        let (buffered, digest) = out.finish();
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok::<_, std::io::Error>(digest)
    })();
    let digest = written.with_context(|| format!("writing {}", path.display()))?;
    Ok((summary, Some((digest, guard))))
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<SqlError>(), Some(SqlError::Output(io)) if io.kind() == std::io::ErrorKind::BrokenPipe)
}
