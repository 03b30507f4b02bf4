//! Flags shared by the commands that use the audit store.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::record::{parse_proto, Mac};
use crate::store::query::{parse_time, Cidr, DomainFilter, Filter, NatFilter};
use crate::store::retention::{check_days, DEFAULT_DAYS};
use crate::store::{compact, manifest, StoreConfig, DEFAULT_BUFFER_RECORDS};

/// Default log directory.
pub const DEFAULT_LOG_DIR: &str = "/var/log/xdp-audit";

/// Where the audit store lives.
#[derive(clap::Args, Debug, Clone)]
pub struct LogDirArgs {
    /// Directory of the audit store (journals, segments, manifest).
    #[arg(long, env = "XDP_AUDIT_LOG_DIR", default_value = DEFAULT_LOG_DIR, value_name = "DIR")]
    pub log_dir: PathBuf,
}

/// Checks that the store directory can be read. The commands that read a store call it first:
/// a store that cannot be read is the command line's error, said alone, before any access
/// line could be attempted (and warned about) for a read that never happened.
pub fn readable_store(dir: &Path) -> anyhow::Result<()> {
    std::fs::read_dir(dir)
        .map(drop)
        .with_context(|| format!("--log-dir {}: cannot read the audit store", dir.display()))
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
    let bytes: u64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    if bytes == 0 || bytes > MAX {
        return Err(format!("{bytes} is not within 1..={MAX} bytes"));
    }
    Ok(bytes)
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
    /// Seal the journal when it reaches this many bytes, even within the hour (at most 8 GiB:
    /// a journal past 16 GiB is refused as damaged when read).
    #[arg(long, default_value_t = 256 << 20, value_parser = parse_segment_bytes, value_name = "BYTES")]
    pub segment_max_bytes: u64,
    /// Delete segments this many days after their newest record; at least 90 (the legal floor),
    /// at most 36500 (a hundred years; more is refused, not read as "keep forever").
    #[arg(long, default_value_t = DEFAULT_DAYS, value_parser = parse_retention, value_name = "DAYS")]
    pub retention_days: u32,
    /// Sign the chain head at every seal with this ed25519 key (see `xdp-audit keygen`).
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// Records held in memory while the disk refuses writes; more are dropped and counted.
    #[arg(long, default_value_t = DEFAULT_BUFFER_RECORDS, value_name = "RECORDS")]
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
    #[arg(long, value_name = "PORT")]
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
    /// Flows active at this instant (first packet at or before it, last packet at or after
    /// it): RFC 3339 or a span ago. Instead of --since and --until.
    #[arg(long, value_name = "TIME", conflicts_with_all = ["since", "until"])]
    pub at: Option<String>,
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

impl FilterArgs {
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
        // `--at T`: active at T, the window [T, T + 1 ns).
        let at = time("at", &self.at)?;
        let f = Filter {
            cidr,
            port: self.port,
            mac,
            proto,
            since_ns: at.or(time("since", &self.since)?),
            until_ns: at
                .map(|t| t.saturating_add(1))
                .or(time("until", &self.until)?),
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
            anyhow::ensure!(s < u, "--since must be before --until");
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
            eprint!("\r{what}: {done}/{total} segments");
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
            eprint!("\r\x1b[2K");
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
    use super::parse_retention;

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
