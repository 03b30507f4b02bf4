//! Real servers in the lab's internet namespace: HTTPS (`openssl s_server` with a certificate
//! made at test time), plain HTTP (`python3 -m http.server`) and a DNS resolver (dnsmasq).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;

use crate::lab::{self, require, sh, Lab};

/// How long a server may take to accept its first connection: a bound on a condition, not a
/// sleep (a server accepts in well under a second). With 10 s, one suite run under heavy load
/// (two release builds beside it) saw `python3 -m http.server` not accept in time, its
/// output discarded; servers now write theirs to a log the error quotes.
const START: Duration = Duration::from_secs(30);

/// Makes a self-signed certificate for `name` (P-256, one day, the name as CN and SAN) in
/// `dir` and serves HTTPS with it on the internet server's port 443 (`openssl s_server -www`).
/// Returns the certificate, for the client's `--cacert`.
pub fn https(lab: &mut Lab, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    require("openssl", "openssl")?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    sh(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec"])
        .args([
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", &format!("subjectAltName=DNS:{name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert))
    .context("make the test certificate")?;
    let (cert_s, key_s) = (
        cert.to_str().context("temp path not UTF-8")?,
        key.to_str().context("temp path not UTF-8")?,
    );
    let log = dir.join("https-server.log");
    lab.spawn_logged(
        &lab.internet.clone(),
        "openssl",
        &[
            "s_server",
            "-accept",
            &format!("{}:443", lab::SERVER_V4),
            "-cert",
            cert_s,
            "-key",
            key_s,
            "-www",
            "-quiet",
        ],
        &log,
    )?;
    lab.wait_serving(lab::SERVER_V4, 443, START, &log)?;
    Ok(cert)
}

/// Serves `dir` over HTTP on the internet server's port 80, IPv4 and IPv6
/// (`python3 -m http.server`).
pub fn http(lab: &mut Lab, dir: &Path) -> anyhow::Result<()> {
    require("python3", "python3")?;
    // Beside the web root, not in it.
    let log = dir.parent().unwrap_or(dir).join("http-server.log");
    lab.spawn_logged(
        &lab.internet.clone(),
        "python3",
        &[
            "-m",
            "http.server",
            "80",
            "--bind",
            "::",
            "--directory",
            dir.to_str().context("temp path not UTF-8")?,
        ],
        &log,
    )?;
    lab.wait_serving(lab::SERVER_V4, 80, START, &log)
}

/// Answers DNS on the internet server's address (UDP and TCP port 53, dnsmasq) with `hosts`
/// (name, IPv4 address), TTL 300 s, and nothing else; its queries logged to `dir/dnsmasq.log`.
pub fn dns(lab: &mut Lab, dir: &Path, hosts: &[(&str, &str)]) -> anyhow::Result<()> {
    require("dnsmasq", "dnsmasq-base")?;
    let log = dir.join("dnsmasq.log");
    let listen = format!("--listen-address={}", lab::SERVER_V4);
    let args = dnsmasq_args(dir, &log, listen, hosts, Vec::new());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.spawn(&lab.internet.clone(), "dnsmasq", &args)?;
    lab.wait_serving(lab::SERVER_V4, 53, START, &log)
}

/// dnsmasq's arguments for a lab server: no config file, upstream or hosts file, in the
/// foreground as root, bound to `bind` (`--interface=` or `--listen-address=`), its pid file
/// in `dir` and its log (queries too) in `log`, `hosts` (name, IPv4 address) answered with TTL
/// 300 s; then `extra`.
pub(crate) fn dnsmasq_args(
    dir: &Path,
    log: &Path,
    bind: String,
    hosts: &[(&str, &str)],
    extra: Vec<String>,
) -> Vec<String> {
    let mut args = vec![
        "--keep-in-foreground".to_owned(),
        "--conf-file=/dev/null".to_owned(),
        "--no-resolv".to_owned(),
        "--no-hosts".to_owned(),
        "--user=root".to_owned(),
        bind,
        "--bind-interfaces".to_owned(),
        format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
        format!("--log-facility={}", log.display()),
        "--log-queries".to_owned(),
        "--local-ttl=300".to_owned(),
    ];
    args.extend(
        hosts
            .iter()
            .map(|(name, addr)| format!("--host-record={name},{addr}")),
    );
    args.extend(extra);
    args
}
