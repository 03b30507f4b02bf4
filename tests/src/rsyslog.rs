//! A real rsyslog (Debian `rsyslog`, `rsyslog-gnutls` for TLS) for the syslog tests: its own
//! config with an imtcp listener (plain or TLS) on a loopback port, `mmpstrucdata` parsing
//! each message's RFC 5424 structured data, and a JSON line per message in a file. Killed
//! when dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::lab::{require, sh};
use crate::wait::poll_until;

/// The module rsyslog loads for TLS listeners.
const GTLS_MODULE: &str = "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so";

/// A CA, a server certificate for `localhost` and 127.0.0.1 signed by it, and a second CA
/// that signed nothing (the wrong one), made with `openssl`.
pub struct Certs {
    /// The CA that signed the server's certificate (PEM).
    pub ca: PathBuf,
    /// A CA the server's certificate does not chain to (PEM).
    pub wrong_ca: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's key (PEM).
    pub key: PathBuf,
}

impl Certs {
    /// Makes the files in `dir`.
    pub fn make(dir: &Path) -> anyhow::Result<Self> {
        require("openssl", "openssl")?;
        let p = |n: &str| dir.join(n);
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, cn) in [("ca", "xdp-audit test CA"), ("wrong-ca", "another CA")] {
            sh(Command::new("openssl")
                .args(["req", "-x509", "-days", "2", "-subj", &format!("/CN={cn}")])
                .args(ec)
                .arg("-keyout")
                .arg(p(&format!("{name}.key")))
                .arg("-out")
                .arg(p(&format!("{name}.pem"))))?;
        }
        sh(Command::new("openssl")
            .args(["req", "-subj", "/CN=localhost"])
            .args(ec)
            .arg("-keyout")
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr")))?;
        std::fs::write(
            p("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .context("write server.ext")?;
        sh(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(p("ca.pem"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-extfile")
            .arg(p("server.ext"))
            .arg("-out")
            .arg(p("server.pem")))?;
        Ok(Self {
            ca: p("ca.pem"),
            wrong_ca: p("wrong-ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
        })
    }
}

/// A running rsyslogd.
pub struct Rsyslog {
    child: Option<Child>,
    conf: PathBuf,
    pid_file: PathBuf,
    /// The JSON Lines file of received messages.
    pub out: PathBuf,
    /// The listener's port on 127.0.0.1.
    pub port: u16,
    /// The namespace it runs in (`None`: the test's own).
    ns: Option<String>,
}

impl Rsyslog {
    /// Starts rsyslogd with a listener on 127.0.0.1:`port` (TLS with `certs`), its config,
    /// work files and output in `dir`, inside namespace `ns` if given.
    pub fn start(
        dir: &Path,
        port: u16,
        certs: Option<&Certs>,
        ns: Option<&str>,
    ) -> anyhow::Result<Self> {
        require("rsyslogd", "rsyslog")?;
        if certs.is_some() && !Path::new(GTLS_MODULE).exists() {
            bail!(
                "{GTLS_MODULE} is missing: TLS listeners need the Debian package `rsyslog-gnutls` \
                 (`cargo xtask setup` installs it)"
            );
        }
        let out = dir.join("received.jsonl");
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).context("rsyslog work dir")?;
        let tls_global = certs.map_or(String::new(), |c| {
            format!(
                "global(defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\")\n",
                c.ca.display(),
                c.cert.display(),
                c.key.display()
            )
        });
        let tls_input = if certs.is_some() {
            r#" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon""#
        } else {
            ""
        };
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}")
{tls_global}module(load="imtcp")
module(load="mmpstrucdata")
template(name="json" type="list" option.jsonf="on") {{
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="host" name="hostname" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="pri" name="pri" format="jsonf")
  property(outname="time" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="sd" name="$!rfc5424-sd" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
ruleset(name="in") {{
  action(type="mmpstrucdata")
  action(type="omfile" file="{out}" template="json")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="in"{tls_input})
"#,
                work = work.display(),
                out = out.display(),
            ),
        )
        .context("write rsyslog.conf")?;
        let mut me = Self {
            child: None,
            conf,
            pid_file: dir.join("rsyslogd.pid"),
            out,
            port,
            ns: ns.map(str::to_owned),
        };
        me.spawn()?;
        Ok(me)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "rsyslogd"]);
                c
            }
            None => Command::new("rsyslogd"),
        };
        let _ = std::fs::remove_file(&self.pid_file);
        let child = cmd
            .arg("-n")
            .arg("-f")
            .arg(&self.conf)
            .arg("-i")
            .arg(&self.pid_file)
            .stdin(Stdio::null())
            .spawn()
            .context("spawn rsyslogd")?;
        self.child = Some(child);
        let port = self.port;
        let ns = self.ns.clone();
        poll_until(
            Duration::from_secs(10),
            &format!("rsyslogd listens on 127.0.0.1:{port}"),
            || {
                let probe = move || Ok(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
                match &ns {
                    Some(ns) => crate::netns::run_in(ns, probe),
                    None => probe(),
                }
            },
        )
    }

    /// Stops rsyslogd (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait().context("wait for rsyslogd")?;
        }
        Ok(())
    }

    /// Stops rsyslogd and starts it again on the same port and output file.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Every message received so far: rsyslog's parsed fields, with `sd` the structured data
    /// as mmpstrucdata parsed it (`{"SD-ID": {"param": "value"}}`).
    pub fn messages(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let text = match std::fs::read_to_string(&self.out) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("read {}", self.out.display())),
        };
        // A line being written is complete only with its newline.
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete
            .lines()
            .map(|l| {
                let mut v: serde_json::Value =
                    serde_json::from_str(l).with_context(|| format!("rsyslog wrote {l}"))?;
                let sd = v["sd"].as_str().unwrap_or("{}").to_owned();
                v["sd"] = serde_json::from_str(&sd)
                    .with_context(|| format!("mmpstrucdata's structured data {sd}"))?;
                Ok(v)
            })
            .collect()
    }

    /// Waits until at least `n` messages were received.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut got = Vec::new();
        poll_until(timeout, &format!("rsyslog received {n} messages"), || {
            got = self.messages()?;
            Ok(got.len() >= n)
        })
        .with_context(|| format!("{} received", self.messages().map_or(0, |m| m.len())))?;
        Ok(got)
    }

    /// Waits until at least `n` messages with MSGID `msgid` were received; returns every
    /// message received by then (other MSGIDs too, such as the agent's alerts).
    pub fn wait_for_msgid(
        &self,
        msgid: &str,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut got = Vec::new();
        let count = |got: &[serde_json::Value]| got.iter().filter(|m| m["msgid"] == msgid).count();
        poll_until(
            timeout,
            &format!("rsyslog received {n} messages of MSGID {msgid}"),
            || {
                got = self.messages()?;
                Ok(count(&got) >= n)
            },
        )
        .with_context(|| format!("{} received", self.messages().map_or(0, |m| count(&m))))?;
        Ok(got)
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A record as `xdp-audit query --format jsonl` prints it, as the parameters its syslog
/// message carries: absent (null) fields left out, every value as text.
pub fn record_params(record: &serde_json::Value) -> BTreeMap<String, String> {
    let Some(fields) = record.as_object() else {
        panic!("a record is a JSON object: {record}")
    };
    fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

/// The parameters of the element `sd_id` of a received message (see [`Rsyslog::messages`]).
pub fn sd_params(message: &serde_json::Value, sd_id: &str) -> BTreeMap<String, String> {
    let Some(element) = message["sd"][sd_id].as_object() else {
        panic!("no {sd_id} element in {message}")
    };
    element
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}
