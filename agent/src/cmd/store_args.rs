//! Flags shared by the commands that use the audit store.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::record::{parse_proto, rfc3339_ns, Mac};
use crate::store::query::{parse_time, parse_written_time, Cidr, DomainFilter, Filter, NatFilter};
use crate::store::retention::{check_days, DEFAULT_DAYS};
use crate::store::{compact, manifest, StoreConfig, DEFAULT_BUFFER_RECORDS};

/// Default store directory: where the package creates it (`/var/lib`: the store is the
/// agent's state, kept for the retention period, not a log to rotate).
pub const DEFAULT_LOG_DIR: &str = "/var/lib/xdp-audit";

/// Where the audit store lives.
#[derive(clap::Args, Debug, Clone)]
pub struct LogDirArgs {
    /// Directory of the audit store (journals, segments, manifest).
    #[arg(long, env = "XDP_AUDIT_LOG_DIR", default_value = DEFAULT_LOG_DIR, value_name = "DIR")]
    pub log_dir: PathBuf,
}

/// Where the audit store lives, for the commands that read it: `--log-dir`, else the
/// `log-dir` of the agent's config file (`--config`, as `run` takes it), else the default.
/// Call [`StoreDirArgs::resolve`] before reading `log_dir`.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreDirArgs {
    /// Directory of the audit store (journals, segments, manifest) [default: the --config
    /// file's log-dir, else /var/lib/xdp-audit]
    #[arg(long = "log-dir", env = "XDP_AUDIT_LOG_DIR", value_name = "DIR")]
    given: Option<PathBuf>,
    /// The agent's config file (`run --config`): its log-dir is this command's store
    #[arg(long, env = crate::config::CONFIG_ENV, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The store's directory, once resolved.
    #[arg(skip)]
    pub log_dir: PathBuf,
    /// The `--config` file's `gateway-id`, once resolved.
    #[arg(skip)]
    pub gateway_id: Option<String>,
}

impl StoreDirArgs {
    /// Settles `log_dir`: `--log-dir` (or XDP_AUDIT_LOG_DIR), else the config file's, else
    /// [`DEFAULT_LOG_DIR`].
    pub fn resolve(&mut self) -> anyhow::Result<()> {
        let config = match &self.config {
            Some(path) => Some(run_settings(path)?),
            None => None,
        };
        let from_config = (config.as_ref())
            .filter(|_| self.given.is_none())
            .map(|c| c.store.dir.log_dir.clone());
        self.gateway_id = config.and_then(|c| c.ship.gateway_id);
        self.log_dir = (self.given.clone())
            .or(from_config)
            .unwrap_or_else(|| DEFAULT_LOG_DIR.into());
        Ok(())
    }
}

/// The agent's settings from its config file, read as `run` reads them (its interfaces not
/// required: the commands that read it want its directories and retention).
pub fn run_settings(path: &Path) -> anyhow::Result<crate::cmd::run::RunArgs> {
    use clap::{Args as _, FromArgMatches as _};
    let text = crate::store::fsutil::read_input_text(path, crate::store::fsutil::CONFIG_MAX)
        .with_context(|| format!("--config {}: cannot read", path.display()))?;
    let cmd = crate::cmd::run::RunArgs::augment_args(clap::Command::new("run"))
        .mut_arg("ifaces", |a| a.required(false))
        .no_binary_name(true);
    let args = crate::config::to_args(path, &text, &cmd)?;
    let m = cmd
        .try_get_matches_from(args)
        .with_context(|| format!("--config {}", path.display()))?;
    Ok(crate::cmd::run::RunArgs::from_arg_matches(&m)?)
}

/// A port number, said plainly when it is not one (a service name such as `http`).
fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>().map_err(|_| {
        "a port is a number from 0 to 65535 (service names such as `http` are not taken)".to_owned()
    })
}

/// Checks that the store directory can be read and is a store. The commands that read a store
/// call it first: a store that cannot be read is the command line's error, said alone, before
/// any access line could be attempted (and warned about) for a read that never happened; and a
/// directory that is no store (`/tmp`, a typo) is refused before `operator.log` is written
/// into it.
pub fn readable_store(dir: &Path) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("--log-dir {}: cannot read the audit store", dir.display()))?;
    for e in entries {
        let e =
            e.with_context(|| format!("--log-dir {}: cannot read the audit store", dir.display()))?;
        if e.file_name().to_str().is_some_and(is_store_file) {
            return Ok(());
        }
    }
    anyhow::bail!(
        "--log-dir {}: not an xdp-audit store (no lock file, manifest, journal or segment in it)",
        dir.display()
    )
}

/// Whether a file of this name is one a store holds from its first open on: the lock file
/// and a live journal (an agent that started but never sealed), the manifest and segments.
fn is_store_file(name: &str) -> bool {
    name == crate::store::LOCK_FILE
        || name == manifest::MANIFEST
        || crate::store::journal::file::journal_id_of(name).is_some()
        || crate::store::seal::is_segment_name(name)
}

fn parse_retention(s: &str) -> Result<u32, String> {
    let days: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of days"))?;
    check_days(days).map_err(|e| e.to_string())
}

/// `--segment-max-bytes`: a journal is sealed at this size, so it must stay well under what
/// the journal reader accepts ([`crate::store::journal::file::MAX_JOURNAL_BYTES`]).
fn parse_segment_bytes(s: &str) -> Result<u64, String> {
    const MAX: u64 = crate::store::journal::file::MAX_JOURNAL_BYTES / 2;
    let bytes = crate::bytesize::parse(s)?;
    if bytes == 0 || bytes > MAX {
        return Err(format!("{bytes} is not within 1..={MAX} bytes"));
    }
    Ok(bytes)
}

/// `--buffer-records`: at least a write's worth (the store writes at half of it, so a tiny
/// buffer writes for every record and drops at once on a full disk), at most about a GiB of
/// memory (a record held takes some 60 bytes).
fn parse_buffer_records(s: &str) -> Result<usize, String> {
    const RANGE: std::ops::RangeInclusive<usize> = 1_024..=16 << 20;
    let n: usize = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of records"))?;
    if !RANGE.contains(&n) {
        return Err(format!(
            "{n} is not within {}..={} records",
            RANGE.start(),
            RANGE.end()
        ));
    }
    Ok(n)
}

/// Flags of the writer (`xdp-audit run` flattens these).
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub dir: LogDirArgs,
    /// Longest time an accepted record waits for fsync (`1s`, `200ms`; see `run --help`).
    #[arg(long, default_value = "1s", value_parser = crate::span::parse, value_name = "SPAN")]
    pub fsync_interval: Duration,
    /// Seal the journal when it reaches this size (bytes, or 256MiB, 1GiB), even within the
    /// hour (at most 8 GiB: a journal past 16 GiB is refused as damaged when read).
    #[arg(long, default_value_t = 256 << 20, value_parser = parse_segment_bytes, value_name = "BYTES")]
    pub segment_max_bytes: u64,
    /// Delete segments this many days after their newest record; at least 90 (the legal floor),
    /// at most 36500 (a hundred years; more is refused, not read as "keep forever").
    #[arg(long, default_value_t = DEFAULT_DAYS, value_parser = parse_retention, value_name = "DAYS")]
    pub retention_days: u32,
    /// Sign the chain head at every seal with this ed25519 key (see `xdp-audit keygen`).
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// Records held in memory while the disk refuses writes (1024 to 16777216); more are
    /// dropped and counted.
    #[arg(long, default_value_t = DEFAULT_BUFFER_RECORDS, value_parser = parse_buffer_records, value_name = "RECORDS")]
    pub buffer_records: usize,
    /// Merge each closed day's hourly segments into segments of at most this many rows, so
    /// queries over months open a file per day, not per hour (the merge holds ~130 bytes
    /// per row in memory); 0 turns compaction off.
    #[arg(long, default_value_t = compact::DEFAULT_MAX_ROWS, value_name = "ROWS")]
    pub compact_max_rows: u64,
}

impl StoreArgs {
    /// The store configuration these flags describe (loads the signing key).
    pub fn to_config(&self) -> anyhow::Result<StoreConfig> {
        let signing_key = match &self.signing_key {
            Some(p) => {
                let key = manifest::load_signing_key(p).context("loading --signing-key")?;
                crate::privilege::check_secret_file(p).context("--signing-key")?;
                manifest::check_key_fits(&self.dir.log_dir, &key)
                    .map_err(|why| anyhow::anyhow!("--signing-key {}: {why}", p.display()))?;
                Some(key)
            }
            None => None,
        };
        Ok(StoreConfig {
            dir: self.dir.log_dir.clone(),
            fsync_interval: self.fsync_interval,
            segment_max_bytes: self.segment_max_bytes,
            retention_days: self.retention_days,
            signing_key,
            buffer_records: self.buffer_records,
            compact_max_rows: self.compact_max_rows,
            ship_gate: None,
            // `run` says whether its program is pinned.
            kept_by_pins: false,
        })
    }
}

/// What to select (query and export).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Flows with this address on either side.
    #[arg(long, value_name = "IP", conflicts_with = "cidr")]
    pub ip: Option<std::net::IpAddr>,
    /// Flows with an address in this prefix on either side (`10.1.0.0/16`, `2001:db8::/32`).
    #[arg(long, value_name = "PREFIX")]
    pub cidr: Option<String>,
    /// Flows with this port on either side (ICMP: type or code).
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    pub port: Option<u16>,
    /// Flows with this MAC address on either side.
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// IP protocol: tcp, udp, icmp, icmpv6 or a number.
    #[arg(long, value_name = "PROTO")]
    pub proto: Option<String>,
    /// Flows active at or after this time: RFC 3339 (`2026-05-03T14:00:00Z`) or a span ago (`2h`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Flows that started before this time: RFC 3339 or a span ago.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Flows active at this time, to the precision written: `2026-05-03T14:05:09Z` is that
    /// whole second, `...T14:05:09.5Z` those 100 ms, nine fractional digits one nanosecond (a span ago: that
    /// second), widened by --at-slack on both sides. RFC 3339 or a span ago. Instead of
    /// --since and --until.
    #[arg(long, value_name = "TIME", conflicts_with_all = ["since", "until"])]
    pub at: Option<String>,
    /// How far --at reaches on both sides of the time written, for clocks that differ (the
    /// gateway's and the one the time came from): `2s`, `500ms`, `0s` for none.
    #[arg(long, value_name = "SPAN", default_value = "1s", value_parser = crate::span::parse, requires = "at")]
    pub at_slack: Duration,
    /// Flows of this subscriber account, exactly as the subscribers file writes it.
    #[arg(long, value_name = "ACCOUNT")]
    pub user: Option<String>,
    /// Flows whose domain or DNS question is this name or a name under it (`example.com`
    /// matches `www.example.com`, not `badexample.com`).
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,
    /// Flows the NAT gave this outside address, and port if given: `203.0.113.5`,
    /// `203.0.113.5:40001`, `[2001:db8::5]:40001`.
    #[arg(long, value_name = "IP[:PORT]")]
    pub nat: Option<String>,
    /// Flows a list rule decided: `FILE:LINE` as `status` and the records name it, or `FILE`
    /// for every rule of that file.
    #[arg(long, value_name = "FILE[:LINE]")]
    pub rule: Option<String>,
}

/// `--at T` as the window it asks for: the unit T is written to, widened by `--at-slack` on
/// both sides, `[T - slack, T + unit + slack)`. Displayed as the line that tells the operator
/// what was searched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtWindow {
    /// `--at` as written.
    pub written: String,
    /// The length of the unit written (ns).
    pub unit_ns: i64,
    /// `--at-slack`.
    pub slack: Duration,
    /// The window's first nanosecond (Unix ns).
    pub since_ns: i64,
    /// The window's end, excluded (Unix ns).
    pub until_ns: i64,
}

impl std::fmt::Display for AtWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Whole seconds as spans are written (`1s`, `1m`, `0s`), less as `100ms`, `1ns`.
        let text = |d: Duration| {
            if d.subsec_nanos() == 0 {
                crate::span::format(d)
            } else {
                format!("{d:?}")
            }
        };
        write!(
            f,
            "--at {} is the {} written, ±{} slack: window [{}, {})",
            self.written,
            text(Duration::from_nanos(self.unit_ns.unsigned_abs())),
            text(self.slack),
            rfc3339_ns(self.since_ns),
            rfc3339_ns(self.until_ns)
        )
    }
}

impl FilterArgs {
    /// The window `--at` asks for, if given, with a span ago taken from `now_ns`.
    pub fn at_window(&self, now_ns: i64) -> anyhow::Result<Option<AtWindow>> {
        let Some(written) = &self.at else {
            return Ok(None);
        };
        let t = parse_written_time(written, now_ns).map_err(|e| anyhow::anyhow!("--at: {e}"))?;
        // `span::parse` keeps a slack within i64 nanoseconds; the window saturates at the
        // clock's ends.
        let slack = i64::try_from(self.at_slack.as_nanos()).unwrap_or(i64::MAX);
        Ok(Some(AtWindow {
            written: written.clone(),
            unit_ns: t.unit_ns,
            slack: self.at_slack,
            since_ns: t.ns.saturating_sub(slack),
            until_ns: t.ns.saturating_add(t.unit_ns).saturating_add(slack),
        }))
    }

    /// The filter, with relative times taken from `now_ns`.
    pub fn to_filter(&self, now_ns: i64) -> anyhow::Result<Filter> {
        let time = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<i64>> {
            v.as_deref()
                .map(|s| parse_time(s, now_ns).map_err(|e| anyhow::anyhow!("--{flag}: {e}")))
                .transpose()
        };
        let cidr = match (&self.ip, &self.cidr) {
            (Some(ip), _) => Some(Cidr::host(*ip)),
            (None, Some(c)) => Some(
                c.parse::<Cidr>()
                    .map_err(|e| anyhow::anyhow!("--cidr: {e}"))?,
            ),
            (None, None) => None,
        };
        let mac = self
            .mac
            .as_deref()
            .map(|m| m.parse::<Mac>().map_err(|e| anyhow::anyhow!("--mac: {e}")))
            .transpose()?;
        let proto = self
            .proto
            .as_deref()
            .map(|p| {
                parse_proto(p).ok_or_else(|| {
                    anyhow::anyhow!("--proto: {p:?} is not tcp, udp, icmp, icmpv6 or 0-255")
                })
            })
            .transpose()?;
        let user = match self.user.as_deref() {
            Some("") => {
                anyhow::bail!("--user: empty; give the account as the subscribers file writes it")
            }
            u => u.map(str::to_owned),
        };
        let domain = self
            .domain
            .as_deref()
            .map(|d| {
                d.parse::<DomainFilter>()
                    .map_err(|e| anyhow::anyhow!("--domain {d:?}: {e}"))
            })
            .transpose()?;
        let nat = self
            .nat
            .as_deref()
            .map(|n| {
                n.parse::<NatFilter>()
                    .map_err(|e| anyhow::anyhow!("--nat: {e}"))
            })
            .transpose()?;
        // `--at T`: active in the unit T is written to, give or take the slack.
        let at = self.at_window(now_ns)?;
        let f = Filter {
            cidr,
            port: self.port,
            mac,
            proto,
            since_ns: at
                .as_ref()
                .map(|w| w.since_ns)
                .or(time("since", &self.since)?),
            until_ns: at.map(|w| w.until_ns).or(time("until", &self.until)?),
            user,
            domain,
            nat,
            rule: match self.rule.as_deref() {
                Some("") => anyhow::bail!("--rule: empty; give FILE:LINE or FILE"),
                Some(r)
                    if r.rsplit_once(':')
                        .is_some_and(|(_, l)| !l.is_empty() && l.bytes().all(|b| b == b'0')) =>
                {
                    anyhow::bail!("--rule {r:?}: line numbers start at 1")
                }
                r => r.map(str::to_owned),
            },
            ignore_index: false,
        };
        if let (Some(s), Some(u)) = (f.since_ns, f.until_ns) {
            // The resolved times, and how spans count: `--since 2h --until 3h` reads as a
            // window that ends before it begins.
            anyhow::ensure!(
                s < u,
                "--since must be before --until ({} is not before {}; a span counts back from \
                 now: the larger one is the earlier time, as in --since 3h --until 2h)",
                crate::record::rfc3339_ns(s),
                crate::record::rfc3339_ns(u)
            );
        }
        Ok(f)
    }
}

/// A progress callback that redraws one stderr line, only when stderr is a terminal. The
/// line is erased when done and when the callback is dropped, so an error that stops the
/// work starts on a clean line.
pub fn progress_line(what: &'static str) -> impl FnMut(usize, usize) {
    let tty = std::io::stderr().is_terminal();
    let mut line = ProgressLine { shown: false };
    move |done, total| {
        if tty && total > 0 {
            // Not eprint!: a terminal gone (hung up) must not panic the command.
            let _ = write!(std::io::stderr(), "\r{what}: {done}/{total} segments");
            line.shown = true;
            if done == total {
                line.erase();
            }
        }
    }
}

struct ProgressLine {
    shown: bool,
}

impl ProgressLine {
    fn erase(&mut self) {
        if std::mem::take(&mut self.shown) {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.erase();
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        filter: FilterArgs,
    }

    fn filter_args(args: &[&str]) -> FilterArgs {
        let argv = std::iter::once("query").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .filter
    }

    #[test]
    fn buffer_records_has_a_floor_and_a_ceiling() {
        for bad in ["0", "1", "1023", "16777217", "100000000000", "-5", "1e6"] {
            assert!(parse_buffer_records(bad).is_err(), "{bad} taken");
        }
        assert_eq!(parse_buffer_records("100000"), Ok(DEFAULT_BUFFER_RECORDS));
        assert_eq!(parse_buffer_records("16777216"), Ok(16 << 20));
    }

    #[test]
    fn at_is_the_unit_written_widened_by_the_slack_on_both_sides() {
        let sec = 1_000_000_000;
        let t = parse_time("2026-11-28T07:07:07Z", 0).expect("RFC 3339");
        let window = |args: &[&str]| {
            let f = filter_args(args).to_filter(0).expect("filter");
            (f.since_ns.expect("since"), f.until_ns.expect("until"))
        };
        let whole = ["--at", "2026-11-28T07:07:07Z"];
        assert_eq!(window(&whole), (t - sec, t + 2 * sec), "default slack 1s");
        let exact = ["--at", "2026-11-28T07:07:07.700000000Z"];
        let none = ["--at-slack", "0s"];
        assert_eq!(window(&[&whole[..], &none].concat()), (t, t + sec));
        let tenth = ["--at", "2026-11-28T07:07:07.7Z"];
        let ms = ["--at-slack", "250ms"];
        assert_eq!(
            window(&[&tenth[..], &ms].concat()),
            (t + 7 * sec / 10 - sec / 4, t + 8 * sec / 10 + sec / 4)
        );
        assert_eq!(
            window(&[&exact[..], &none].concat()),
            (t + 7 * sec / 10, t + 7 * sec / 10 + 1),
            "nine digits and no slack: the old instant"
        );
        let now = t + sec / 3;
        let ago = filter_args(&["--at", "10m", "--at-slack", "2s"])
            .to_filter(now)
            .expect("a span ago");
        assert_eq!(
            (ago.since_ns, ago.until_ns),
            (Some(now - 602 * sec), Some(now - 597 * sec))
        );
        // The window is what the operator is told.
        let w = filter_args(&whole).at_window(0).expect("window");
        assert_eq!(
            w.map(|w| w.to_string()).as_deref(),
            Some(
                "--at 2026-11-28T07:07:07Z is the 1s written, ±1s slack: window \
                 [2026-11-28T07:07:06.000000000Z, 2026-11-28T07:07:09.000000000Z)"
            )
        );
        let w = filter_args(&[&exact[..], &ms].concat()).at_window(0);
        let text = w.expect("window").expect("--at").to_string();
        assert!(text.contains("is the 1ns written, ±250ms slack"), "{text}");
        let w = filter_args(&["--at", "2026-11-28T07:07Z", "--at-slack", "0s"]).at_window(0);
        let text = w.expect("window").expect("--at").to_string();
        assert!(text.contains("is the 1m written, ±0s slack"), "{text}");
        assert_eq!(filter_args(&[]).at_window(0).expect("no --at"), None);
    }

    #[test]
    fn at_slack_needs_at_and_a_span() {
        let err = |args: &[&str]| {
            let argv = std::iter::once("query").chain(args.iter().copied());
            match Cli::try_parse_from(argv) {
                Ok(_) => panic!("{args:?} accepted"),
                Err(e) => e.to_string(),
            }
        };
        let e = err(&["--at-slack", "2s"]);
        assert!(e.contains("--at <TIME>"), "{e}");
        let e = err(&["--at", "2h", "--at-slack=-1s"]);
        assert!(e.contains("--at-slack") && e.contains("negative"), "{e}");
        let e = err(&["--at", "2h", "--at-slack", "soon"]);
        assert!(e.contains("--at-slack") && e.contains("soon"), "{e}");
    }

    #[test]
    fn retention_days_past_the_maximum_are_refused_naming_the_setting_and_the_maximum() {
        assert_eq!(parse_retention("36500"), Ok(36_500));
        let e = parse_retention("106752").expect_err("past the clock's range");
        // The flag's or the config key's name is the caller's to add (clap, the config
        // reader), so it is said once.
        assert!(e.contains("106752") && e.contains("36500"), "{e}");
        let e = parse_retention("4294967295").expect_err("u32::MAX");
        assert!(e.contains("36500"), "{e}");
    }
}
