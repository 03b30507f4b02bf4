//! `run`'s syslog flags (also TOML keys: `syslog`, `syslog-ca`, `syslog-records`,
//! `syslog-queue`).

use std::path::PathBuf;

use clap::Args;

use super::{Records, SyslogConfig, SyslogError, Target};

/// Records and alerts to a syslog server (see README, "Syslog").
#[derive(Args, Debug, Clone)]
pub struct SyslogArgs {
    /// Send drop records (and, with --syslog-records, every record) to this syslog server as
    /// RFC 5424 messages with octet-counting framing: tcp://HOST:PORT, or tls://HOST:PORT with
    /// --syslog-ca. A server that is down is retried with backoff; the record path never
    /// waits for it.
    #[arg(long, value_name = "tcp://HOST:PORT|tls://HOST:PORT", value_parser = parse_target)]
    pub syslog: Option<Target>,
    /// PEM file of the CA certificates a tls:// server's certificate must chain to (for the
    /// host name of --syslog).
    #[arg(long, value_name = "FILE")]
    pub syslog_ca: Option<PathBuf>,
    /// Send every flow record to syslog, not only those with dropped packets.
    #[arg(long)]
    pub syslog_records: bool,
    /// Messages queued for the syslog server at most (1 to 4194304);
    /// beyond it a message is dropped and counted in `status`. The store keeps every record
    /// whatever syslog loses.
    #[arg(long, value_name = "N", default_value_t = 65_536, value_parser = parse_queue)]
    pub syslog_queue: usize,
}

/// Most messages `--syslog-queue` may hold: a typo of a few digits more must not reserve
/// gigabytes for an outage.
const QUEUE_MAX: usize = 4 << 20;

fn parse_queue(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of messages: {e}"))?;
    if (1..=QUEUE_MAX).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} is outside 1..={QUEUE_MAX}"))
    }
}

fn parse_target(s: &str) -> Result<Target, String> {
    Target::parse(s).map_err(|e| e.to_string())
}

impl SyslogArgs {
    /// The sink's configuration, or `None` without --syslog (a stray --syslog-ca is an error).
    pub fn to_config(&self) -> Result<Option<SyslogConfig>, SyslogError> {
        let Some(target) = self.syslog.clone() else {
            if let Some(ca) = &self.syslog_ca {
                return Err(SyslogError::Settings(format!(
                    "--syslog-ca {} without --syslog: name the server with --syslog tls://HOST:PORT",
                    ca.display()
                )));
            }
            return Ok(None);
        };
        Ok(Some(SyslogConfig {
            ca_file: self.syslog_ca.clone(),
            records: if self.syslog_records {
                Records::All
            } else {
                Records::Drops
            },
            queue: self.syslog_queue,
            ..SyslogConfig::new(target)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(syslog: Option<&str>, ca: Option<&str>, records: bool, queue: usize) -> SyslogArgs {
        SyslogArgs {
            syslog: syslog.map(|u| Target::parse(u).expect("test URL")),
            syslog_ca: ca.map(PathBuf::from),
            syslog_records: records,
            syslog_queue: queue,
        }
    }

    #[test]
    fn flags_make_the_config_or_say_what_is_wrong() {
        assert!(args(None, None, false, 10)
            .to_config()
            .expect("no syslog")
            .is_none());
        let c = args(Some("tcp://h:1"), None, true, 10)
            .to_config()
            .expect("valid")
            .expect("configured");
        assert_eq!((c.records, c.queue, c.target.port), (Records::All, 10, 1));
        let e = args(None, Some("/ca.pem"), false, 10)
            .to_config()
            .expect_err("stray CA");
        assert!(
            e.to_string()
                .contains("--syslog-ca /ca.pem without --syslog"),
            "{e}"
        );
        assert!(parse_queue("0").is_err(), "no queue");
        assert!(parse_queue("100000000000").is_err(), "a typo of digits");
        assert_eq!(parse_queue("4194304"), Ok(4 << 20));
    }
}
