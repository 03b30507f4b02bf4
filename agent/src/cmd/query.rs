//! `xdp-audit query`: find flows in the audit store.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::interrupt;
use super::store_args::{progress_line, readable_store, FilterArgs, StoreDirArgs};
use crate::store::access::{self, AccessInfo};
use crate::store::export::{Format, RecordWriter, Table};
use crate::store::query::{self, default_threads, scan, QueryError, ScanStats};
use crate::store::{StoreClock, SystemClock};

/// The long help of `xdp-audit query`, with examples.
pub const LONG_ABOUT: &str = "Finds flows in the audit store: sealed segments and the live journal.

Conditions combine with AND. --ip and --cidr match either side of a flow; --port and --mac too.
A flow matches a time window when it was active in it: its last packet is at or after --since
and its first packet is before --until. Times are RFC 3339 with an offset, or a span before
now (s, m, h, d, w: `2h`, `1h30m`, `7d`).

--at T asks for the flows active at T, to the precision T is written: `2026-05-03T14:05:09Z` is
that whole second, `...T14:05:09.5Z` those 100 ms, nine fractional digits one nanosecond, `...T14:05Z` the minute
(a span ago: that second). A flow's times are the gateway's clock and T is usually another's,
so the window reaches --at-slack (default 1s, 0s for none) before and after:
[T - slack, T + unit + slack). The window searched is printed on stderr and recorded in the
access log.

--user matches the subscriber account exactly. --domain matches a flow whose domain (TLS
or QUIC SNI, HTTP Host, the client's DNS answer) or DNS question is the name or a name
under it, label by label, in any case (`*.example.com`, as lists write it, means the
same). --nat matches the outside address (and port) the gateway's NAT gave a flow; IPv6
with a port goes in brackets. A masquerade gives the same outside port to a TCP and a UDP
flow at once: add --proto when the request names the protocol. Records written before the
attribution existed match none of these three. --rule FILE:LINE matches the flows that
list rule decided (as `status` names rules); --rule FILE, those of any rule of that file.
Records name a list by the path the agent was given; a relative FILE (`block.list`)
matches its last components too.

With --nat, the table answers \"who had this outside address and port\": one line per inside
flow, with the outside tuple, the account, the inside and remote tuples, protocol, first and
last packet, end reason, host name and domain. Records with end reason `nat` are NAT sessions
the program saw no flow of (the gateway's own traffic, or an interface not audited). Two
inside flows mean the outside tuple was reused within the window (a line ending `active` is a
long flow's slice, continued by the next line of the same inside tuple): read their times. If --at
finds nothing, widen --at-slack, or ask for a window with --since and --until: a connection
silent longer than the agent's --inactive-timeout has records before and after the silence,
none within it. T from another host's clock (a server's log) needs slack: the clocks differ,
and that host saw the packet after the gateway stamped it.

Results go to stdout (segments in chain order, each sorted by client then time; the live
journal last); diagnostics and progress to stderr. --count prints only the number of matching
flows, reading only the columns the conditions test.

Examples:
  xdp-audit query --ip 10.1.2.3 --since 2026-05-03T14:00:00+02:00 --until 2026-05-03T16:00:00+02:00
  xdp-audit query --nat 203.0.113.5:40001 --at 2026-05-03T14:05:09Z
  xdp-audit query --nat 203.0.113.5:40001 --at 2026-05-03T14:05:09.250Z --at-slack 3s
  xdp-audit query --user C-000042 --domain example.com --since 7d
  xdp-audit query --cidr 192.0.2.0/24 --port 443 --since 2h --format csv > flows.csv
  xdp-audit query --mac 3c:22:fb:00:00:2a --proto udp --format jsonl | jq .dst_ip
  xdp-audit query --port 8443 --since 7d --count";

/// Arguments of `xdp-audit query`.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub struct QueryArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub dir: StoreDirArgs,
    /// What to select.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Print only the number of matching flows (reads only the columns the filter tests).
    #[arg(long, conflicts_with = "format")]
    pub count: bool,
}

/// Runs `xdp-audit query`.
pub fn main(mut args: QueryArgs) -> anyhow::Result<ExitCode> {
    args.dir.resolve()?;
    let now = SystemClock.now_ns();
    let filter = args.filter.to_filter(now)?;
    readable_store(&args.dir.log_dir)?;
    // The window `--at` became is what was searched: the operator sees it, as the access
    // line records it.
    if let Some(w) = args.filter.at_window(now)? {
        // Not eprintln!, which panics when stderr's reader is gone.
        let _ = writeln!(std::io::stderr(), "query: {w}");
    }
    if args.count {
        let mut progress = progress_line("query");
        let result = query::count(&args.dir.log_dir, &filter, default_threads(), &mut progress);
        access::record(&args.dir.log_dir, AccessInfo::query(&filter, &result));
        let stats = done(result, &args.dir.log_dir, &filter)?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", stats.matched)
            .and_then(|()| out.flush())
            .map_err(super::stdout_error)?;
        return Ok(super::answer_status(&stats));
    }
    let stdout = std::io::stdout();
    let table = if filter.nat.is_some() {
        Table::Nat
    } else {
        Table::Flows
    };
    // Records printed are disclosed: a signal after the first one records the access, with
    // the records handed out so far, and ends the command.
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (dir, stopped_filter, counted) =
        (args.dir.log_dir.clone(), filter.clone(), written.clone());
    interrupt::catch(move || {
        let stopped: Result<ScanStats, _> = Err(interrupt::Stopped);
        let rows = counted.load(std::sync::atomic::Ordering::SeqCst);
        access::record(
            &dir,
            AccessInfo::query(&stopped_filter, &stopped).rows(rows),
        );
    })
    .context("installing the signal handlers")?;
    let mut out = RecordWriter::new(
        std::io::BufWriter::new(interrupt::Guarded(stdout.lock())),
        args.format,
    )
    .with_table(table);
    let mut progress = progress_line("query");
    // The header waits for the first record or the end of a good scan: a store that cannot be
    // read gives its error alone, not a table header followed by it.
    let mut header_written = false;
    let mut header = |out: &mut RecordWriter<_>| {
        if !std::mem::replace(&mut header_written, true) {
            out.header()?;
        }
        Ok::<(), std::io::Error>(())
    };
    let result = scan(
        &args.dir.log_dir,
        &filter,
        default_threads(),
        &mut |r| {
            header(&mut out)?;
            out.write(r)?;
            written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        },
        &mut progress,
    )
    .and_then(|stats| {
        header(&mut out).map_err(QueryError::Output)?;
        Ok(stats)
    });
    if !interrupt::claim() {
        interrupt::wait_for_exit();
    }
    // Stopped by a signal, the watcher not woken yet: recorded here, as it would have.
    let rows = written.load(std::sync::atomic::Ordering::SeqCst);
    if let Some(code) = interrupt::when_stopped(|| {
        access::record(
            &args.dir.log_dir,
            AccessInfo::query(&filter, &result).rows(rows),
        );
    }) {
        return Ok(code);
    }
    // Records printed before a failure were handed out all the same.
    let info = AccessInfo::query(&filter, &result);
    let info = match &result {
        Err(_) if rows > 0 => info.rows(rows),
        _ => info,
    };
    access::record(&args.dir.log_dir, info);
    let stats = match result {
        Err(QueryError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            return Ok(ExitCode::SUCCESS)
        }
        result => done(result, &args.dir.log_dir, &filter)?,
    };
    let mut w = out.finish().map_err(super::stdout_error)?;
    w.flush().map_err(super::stdout_error)?;
    Ok(super::answer_status(&stats))
}

/// The stats of a finished scan, logged; or its error, naming the store.
fn done(
    result: Result<ScanStats, QueryError>,
    dir: &std::path::Path,
    filter: &crate::store::filter::Filter,
) -> anyhow::Result<ScanStats> {
    let stats = result.with_context(|| format!("querying {}", dir.display()))?;
    if stats.matched == 0 {
        for hint in empty_answer_hints(filter, SystemClock.now_ns()) {
            let _ = writeln!(std::io::stderr(), "query: {hint}");
        }
    }
    if let (0, Some(rule)) = (stats.matched, &filter.rule) {
        // The likeliest cause of an empty answer is a name the records do not use.
        let _ = writeln!(
            std::io::stderr(),
            "query: no flow matched --rule {rule:?}; records name a rule by the list's path as \
             the agent was given it, and its line (`xdp-audit status` lists them)"
        );
    }
    tracing::info!(
        matched = stats.matched,
        segments = stats.segments,
        segments_opened = stats.segments_opened,
        row_groups_skipped = stats.row_groups_skipped,
        rows_scanned = stats.rows_scanned,
        journals = stats.journals,
        journals_unreadable = stats.journals_unreadable,
        "query done"
    );
    if stats.journals_unreadable > 0 {
        tracing::warn!(
            "{} live journals could not be read whole (each named above): the answer lacks their \
             records (exit status {})",
            stats.journals_unreadable,
            super::EXIT_INCOMPLETE
        );
    }
    Ok(stats)
}

/// How long a flow may run before the store holds a record of it: the agent's default active
/// timeout (a flow is written when it ends, or every active timeout while it runs).
const OPEN_FLOW_LAG_NS: i64 = 300 * 1_000_000_000;

/// A window at most this long is an --at's (a minute's, its slack included, or as narrow):
/// an instant a silent connection's records can miss.
const NARROW_WINDOW_NS: i64 = 180 * 1_000_000_000;

/// What an empty answer may mean that the operator should be told: a window this recent may
/// hold flows still open at the gateway, which have no record yet; a narrow window may fall
/// in a connection's silence; an IPv6 address asked as a NAT's outside address was never
/// translated.
fn empty_answer_hints(filter: &crate::store::filter::Filter, now_ns: i64) -> Vec<String> {
    let mut hints = Vec::new();
    if filter
        .until_ns
        .is_none_or(|until| until > now_ns - OPEN_FLOW_LAG_NS)
    {
        hints.push(
            "no flow matched; a flow still open at the gateway is recorded when it ends, or at \
             the agent's --active-timeout (default 5 min) while it runs: a time this recent may \
             need asking again later"
                .to_owned(),
        );
    }
    // A connection idle longer than the inactive timeout is written as records before and
    // after the silence: a narrow window (an --at) inside it finds neither.
    if let (Some(since), Some(until)) = (filter.since_ns, filter.until_ns) {
        if until - since <= NARROW_WINDOW_NS {
            hints.push(
                "a connection silent at that time for longer than the agent's \
                 --inactive-timeout (default 30s) has records before and after the silence \
                 and none within it: ask a wider window (--at-slack, or --since and --until)"
                    .to_owned(),
            );
        }
    }
    if let Some(user) = (filter.user.as_deref()).filter(|u| u.chars().any(char::is_alphabetic)) {
        hints.push(format!(
            "accounts match exactly, case included: `{user}` is not `{}`; `sql` can match \
             otherwise (WHERE lower(\"user\") = lower('{user}'))",
            if user.chars().any(char::is_lowercase) {
                user.to_uppercase()
            } else {
                user.to_lowercase()
            }
        ));
    }
    if let Some(rule) = (filter.rule.as_deref()).filter(|r| {
        r.rsplit_once(':')
            .is_some_and(|(_, line)| line.parse::<u32>().is_err())
    }) {
        hints.push(format!(
            "a rule is FILE:LINE, as records name it (`{rule}` ends in no line number), or \
             the file alone for every rule of it"
        ));
    }
    if let Some(nat) = (filter.nat.as_ref()).filter(|n| n.ip.to_canonical().is_ipv6()) {
        let port = nat.port.map_or(String::new(), |p| format!(" --port {p}"));
        hints.push(format!(
            "an IPv6 client's address is usually its own, not translated: ask --ip {}{port} \
             (the flow's own address and port)",
            nat.ip
        ));
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_answer_says_what_it_may_mean() {
        let now = 1_800_000_000 * 1_000_000_000_i64;
        let mut f = crate::store::filter::Filter {
            until_ns: Some(now - 3_600 * 1_000_000_000),
            ..Default::default()
        };
        assert!(
            empty_answer_hints(&f, now).is_empty(),
            "an hour ago: no hint"
        );
        f.until_ns = Some(now - 60 * 1_000_000_000);
        let h = empty_answer_hints(&f, now);
        assert!(h.len() == 1 && h[0].contains("still open"), "{h:?}");
        assert!(!h[0].contains("  "), "one line of text: {h:?}");
        f.until_ns = Some(now - 3_600 * 1_000_000_000);
        f.nat = Some(crate::store::filter::NatFilter {
            ip: "fd53::11".parse().expect("literal"),
            port: Some(51138),
        });
        let h = empty_answer_hints(&f, now);
        assert!(
            h.len() == 1 && h[0].contains("--ip fd53::11 --port 51138"),
            "{h:?}"
        );
        // An --at an hour ago (its second, 1 s of slack each side): it may fall in a silence.
        f.nat = None;
        f.since_ns = Some(now - 3_601 * 1_000_000_000);
        f.until_ns = Some(now - 3_598 * 1_000_000_000);
        let h = empty_answer_hints(&f, now);
        assert!(h.len() == 1 && h[0].contains("--inactive-timeout"), "{h:?}");
        f.since_ns = Some(now - 7_200 * 1_000_000_000);
        assert!(empty_answer_hints(&f, now).is_empty(), "an hour's window");
        // An account asked in another case; a rule with no line number.
        f.user = Some("c-0042".into());
        f.rule = Some("/etc/xdp-audit/block.list:x".into());
        let h = empty_answer_hints(&f, now);
        assert!(
            h.len() == 2 && h[0].contains("`c-0042` is not `C-0042`") && h[1].contains("FILE:LINE"),
            "{h:?}"
        );
        f.user = Some("10042".into());
        f.rule = Some("/etc/xdp-audit/block.list:7".into());
        assert!(empty_answer_hints(&f, now).is_empty(), "nothing to say");
    }
}
