//! `run`'s attribution flags: subscribers files, DHCP lease files, trusted DHCP servers and
//! conntrack (NAT).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::enrich::inputs::{EnrichOptions, NatMode};
use crate::enrich::leases::file::LeaseFile;
use crate::enrich::leases::LeaseFormat;
use crate::enrich::nat::ListenerConfig;

/// Who and what behind each record (see README, "Attribution").
#[derive(Args, Debug, Clone)]
pub struct EnrichArgs {
    /// A subscribers file (repeatable; the first file wins a tie): CSV with the header
    /// `match,account[,name][,valid_from][,valid_to]`, see docs/attribution.md. Watched and
    /// re-read like the lists; check it with `xdp-audit check FILE`.
    #[arg(long = "subscribers", value_name = "FILE")]
    pub subscribers: Vec<PathBuf>,
    /// A DHCP server's lease file (repeatable): dnsmasq's leases file or Kea's memfile CSV,
    /// the format told from the content, or named as `dnsmasq:FILE` or `kea:FILE`. Watched
    /// and re-read when it changes.
    #[arg(long = "dhcp-leases", value_name = "[FORMAT:]FILE", value_parser = parse_lease_file)]
    pub dhcp_leases: Vec<LeaseFile>,
    /// A DHCP server (or relay) whose replies (or relayed REQUESTs) seen on an audited
    /// interface are trusted (repeatable);
    /// without one, replies from any sender teach bindings, or none with --dhcp-leases (the
    /// gateway is then the server, whose replies XDP never sees).
    #[arg(long = "dhcp-server", value_name = "IP")]
    pub dhcp_servers: Vec<IpAddr>,
    /// Follow conntrack for NAT outside addresses and ports (on: required; auto: if the
    /// kernel allows, said at start). Turns on nf_conntrack_events, _timestamp and _acct if
    /// they are off, and says so.
    #[arg(long = "nat", visible_alias = "conntrack", value_enum, value_name = "on|off|auto", default_value_t = NatMode::Auto)]
    pub nat: NatMode,
}

/// Parses `FILE`, `dnsmasq:FILE` or `kea:FILE`.
pub fn parse_lease_file(s: &str) -> Result<LeaseFile, String> {
    if let Some((format, path)) = s.split_once(':') {
        if let Ok(format) = format.parse::<LeaseFormat>() {
            if path.is_empty() {
                return Err(format!("{s:?}: no file after the format"));
            }
            return Ok(LeaseFile {
                path: path.into(),
                format: Some(format),
            });
        }
    }
    Ok(LeaseFile {
        path: s.into(),
        format: None,
    })
}

impl EnrichArgs {
    /// The files whose directories must exist (they are watched), with their flags.
    pub fn watched(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        let subs = self
            .subscribers
            .iter()
            .map(|p| ("--subscribers", p.as_path()));
        let leases = self
            .dhcp_leases
            .iter()
            .map(|f| ("--dhcp-leases", f.path.as_path()));
        subs.chain(leases)
    }

    /// The sources to start.
    pub fn to_options(&self) -> EnrichOptions {
        EnrichOptions {
            subscribers: self.subscribers.clone(),
            leases: self.dhcp_leases.clone(),
            dhcp_servers: self.dhcp_servers.clone(),
            nat: self.nat,
            listener: ListenerConfig::default(),
            state_dir: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_file_may_name_its_format() {
        let f = parse_lease_file("kea:/var/lib/kea/kea-leases4.csv").expect("parses");
        assert_eq!(f.format, Some(LeaseFormat::Kea));
        assert_eq!(f.path, PathBuf::from("/var/lib/kea/kea-leases4.csv"));
        let f = parse_lease_file("/var/lib/misc/dnsmasq.leases").expect("parses");
        assert_eq!(f.format, None);
        // A colon that names no format is part of the path.
        let f = parse_lease_file("odd:name.leases").expect("parses");
        assert_eq!((f.format, f.path), (None, PathBuf::from("odd:name.leases")));
        assert!(parse_lease_file("dnsmasq:").is_err());
    }
}
