//! The gateway as a home router's DHCP and DNS server (dnsmasq on its client-facing interface)
//! and the client asking it with a real DHCP client (busybox `udhcpc`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::lab::{self, require, sh, Lab};
use crate::wait::poll_until;

/// First and last address dnsmasq hands out on the client side.
pub const POOL: (&str, &str) = ("198.51.100.100", "198.51.100.150");

/// dnsmasq serving DHCP and DNS on the gateway's client-facing interface; it runs as long as
/// the lab.
pub struct GatewayDnsmasq {
    /// dnsmasq's lease file (`--dhcp-leasefile`): what the agent reads with `--dhcp-leases`.
    pub leases: PathBuf,
    /// dnsmasq's log (DHCP exchanges and DNS queries), shown when a step fails.
    pub log: PathBuf,
}

impl GatewayDnsmasq {
    /// Starts dnsmasq in the gateway: DHCP from [`POOL`] with the gateway as router and DNS
    /// server, and DNS for `hosts` (`(name, IPv4 address)`, TTL 300 s) and nothing else. Files
    /// go to `dir`. Returns once it serves both.
    pub fn start(lab: &mut Lab, dir: &Path, hosts: &[(&str, &str)]) -> anyhow::Result<Self> {
        require("dnsmasq", "dnsmasq-base")?;
        let leases = dir.join("dnsmasq.leases");
        let log = dir.join("dnsmasq.log");
        let args = crate::servers::dnsmasq_args(
            dir,
            &log,
            format!("--interface={}", lab::GW_LAN_IF),
            hosts,
            vec![
                format!("--dhcp-range={},{},255.255.255.0,1h", POOL.0, POOL.1),
                format!("--dhcp-option=option:router,{}", lab::GW_LAN_V4),
                format!("--dhcp-option=option:dns-server,{}", lab::GW_LAN_V4),
                "--dhcp-authoritative".to_owned(),
                format!("--dhcp-leasefile={}", leases.display()),
                "--log-dhcp".to_owned(),
            ],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.spawn(&lab.gateway.clone(), "dnsmasq", &args)?;
        let me = Self { leases, log };
        poll_until(Duration::from_secs(10), "dnsmasq serves DHCP", || {
            Ok(me.log_text().contains("DHCP, IP range"))
        })
        .with_context(|| me.log_text())?;
        Ok(me)
    }

    /// dnsmasq's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Runs busybox `udhcpc` on the client's `eth0` until it holds a lease, sending `hostname`
/// (option 12). Its script replaces the client's IPv4 addresses with the leased one and routes
/// through the router the server named. Returns the leased address.
pub fn udhcpc(
    lab: &Lab,
    dir: &Path,
    hostname: &str,
    server: &GatewayDnsmasq,
) -> anyhow::Result<IpAddr> {
    require("busybox", "busybox")?;
    let script = dir.join("udhcpc.script");
    std::fs::write(
        &script,
        "#!/bin/sh\n\
         case \"$1\" in bound|renew)\n  \
           ip -4 addr flush dev \"$interface\"\n  \
           ip addr add \"$ip/${mask:-24}\" dev \"$interface\"\n  \
           for r in $router; do ip route replace default via \"$r\" dev \"$interface\"; break; done\n\
         ;; esac\nexit 0\n",
    )
    .with_context(|| format!("write {}", script.display()))?;
    sh(Command::new("chmod").arg("+x").arg(&script))?;
    let out = lab
        .cmd(&lab.client, "busybox")
        .args([
            "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "10", "-T", "1",
        ])
        .args(["-x", &format!("hostname:{hostname}"), "-s"])
        .arg(&script)
        .output()
        .context("spawn udhcpc")?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "udhcpc got no lease ({}):\n{text}\ndnsmasq's log:\n{}",
            out.status,
            server.log_text()
        );
    }
    let addr = text
        .lines()
        .find_map(|l| l.split("lease of ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .with_context(|| format!("no lease in udhcpc's output:\n{text}"))?;
    addr.parse()
        .with_context(|| format!("leased address `{addr}` in udhcpc's output"))
}
