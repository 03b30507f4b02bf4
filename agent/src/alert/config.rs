//! The alerts' thresholds, windows and destinations: `run` flags `--alert-*`, or keys of the
//! config file's `[alerts]` table (`burst_hits = 100` is `--alert-burst-hits 100`).

use std::time::Duration;

use clap::{Args, FromArgMatches as _};

use crate::span;

/// Alert settings (flags of `run`); [`Default`] is what `run` uses without them.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct AlertConfig {
    /// POST each alert notice as JSON to this URL (http:// or https://), retried with backoff.
    #[arg(long, value_name = "URL", value_parser = parse_webhook)]
    pub alert_webhook: Option<String>,
    /// An alert resolves once its condition has not held for this long; the same condition
    /// after that raises a new alert. Also the window of "first blocked hit per client and rule".
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = span::parse)]
    pub alert_window: Duration,
    /// Blocked records from one client within --alert-burst-window that make a burst.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub alert_burst_hits: u64,
    /// The window of --alert-burst-hits.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = span::parse)]
    pub alert_burst_window: Duration,
    /// Alert when a flow table holds more than this percentage of its entries.
    #[arg(long, value_name = "PERCENT", default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub alert_flow_table_percent: u8,
    /// How often the agent verifies the store's hash chain (`xdp-audit verify`, read only,
    /// on its own thread); 0 turns it off.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = span::parse)]
    pub alert_verify_interval: Duration,
    /// Inputs the alert thread's queue holds; more blocked-record batches and snapshots are
    /// dropped and counted (an event waits up to 5 s for room).
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub alert_queue: u32,
    /// Notices the webhook's queue holds; more are dropped and counted.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub alert_webhook_queue: u32,
    /// Attempts per notice before the webhook gives it up (backoff 1 s, doubling, at most 60 s).
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..))]
    pub alert_webhook_attempts: u32,
    /// Alerts of each traffic id (XA-BLOCK-FIRST, XA-BLOCK-BURST) tracked at once; clients
    /// beyond are counted as suppressed and in one alert per rule with no client. System
    /// alerts (losses, the store, lists, the chain) always get in.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub alert_max_active: u32,
    /// XA-BLOCK-FIRST alerts of one rule tracked at once: a spoofed flood to one blocked
    /// address raises one per source (each a line of alerts.jsonl in the store); clients
    /// beyond are counted in the rule's alert with no client.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub alert_max_per_rule: u32,
}

impl Default for AlertConfig {
    fn default() -> Self {
        let cmd = AlertConfig::augment_args(clap::Command::new("alerts").no_binary_name(true));
        // The defaults are constants of this file; the test below proves they parse.
        match cmd
            .try_get_matches_from(std::iter::empty::<String>())
            .and_then(|m| AlertConfig::from_arg_matches(&m))
        {
            Ok(c) => c,
            Err(e) => unreachable!("the alert defaults do not parse: {e}"),
        }
    }
}

/// A webhook URL: http or https, with a host.
fn parse_webhook(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("{s:?}: a webhook URL starts with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{s:?}: the URL names no host"));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_parse_and_are_the_documented_ones() {
        let c = AlertConfig::default();
        assert_eq!(c.alert_window, Duration::from_secs(300));
        assert_eq!((c.alert_burst_hits, c.alert_flow_table_percent), (100, 90));
        assert_eq!(c.alert_verify_interval, Duration::from_secs(3600));
        assert_eq!(c.alert_webhook, None);
    }

    #[test]
    fn a_webhook_needs_a_scheme_and_a_host() {
        assert!(parse_webhook("http://127.0.0.1:9/hook").is_ok());
        assert!(parse_webhook("ftp://x").is_err());
        assert!(parse_webhook("https:///path").is_err());
    }
}
