//! Traffic that runs in the background of a test while the agent is stopped, killed or
//! replaced: a ping to count replies, and a steady TCP transfer to count bytes.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::lab::Lab;
use crate::netns::run_in;

/// A `ping` running in a namespace until [`Ping::finish`]; killed on drop.
pub struct Ping(Option<Child>);

/// What a ping counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingCount {
    /// Echo requests sent.
    pub transmitted: u64,
    /// Echo replies received.
    pub received: u64,
}

impl Ping {
    /// Pings `addr` from namespace `ns` every `interval_s` seconds (below 0.2 needs root).
    pub fn start(lab: &Lab, ns: &str, addr: &str, interval_s: &str) -> anyhow::Result<Self> {
        let child = lab
            .cmd(ns, "ping")
            .args(["-n", "-q", "-i", interval_s, "-W", "1", addr])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn ping (Debian package iputils-ping)")?;
        Ok(Self(Some(child)))
    }

    /// Stops the ping (SIGINT, so it prints its statistics) and returns what it counted.
    pub fn finish(mut self) -> anyhow::Result<PingCount> {
        let child = self.0.take().context("ping already finished")?;
        // SAFETY: kill(2) on our own child (`ip netns exec` execs ping in place).
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = child.wait_with_output().context("wait for ping")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .with_context(|| format!("no statistics in ping's output: {text}"))?;
        let number_before = |word: &str| -> anyhow::Result<u64> {
            let at = line
                .find(word)
                .with_context(|| format!("no {word:?} in {line:?}"))?;
            line[..at]
                .split_whitespace()
                .last()
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("no count before {word:?} in {line:?}"))
        };
        Ok(PingCount {
            transmitted: number_before("packets transmitted")?,
            received: number_before("received")?,
        })
    }
}

impl Drop for Ping {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A TCP connection from the client namespace to a server in the internet namespace that
/// carries `chunk` bytes every `every` until [`Transfer::finish`].
pub struct Transfer {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    client: Option<JoinHandle<anyhow::Result<u64>>>,
    server: Option<JoinHandle<anyhow::Result<u64>>>,
    /// The client's source port (the flow's key in the records).
    pub sport: u16,
}

impl Transfer {
    /// Listens on `server:port` in `lab.internet`, connects from `lab.client`, and starts
    /// sending.
    pub fn start(
        lab: &Lab,
        server: &str,
        port: u16,
        chunk: usize,
        every: Duration,
    ) -> anyhow::Result<Self> {
        let addr: std::net::SocketAddr = format!("{server}:{port}").parse()?;
        let listener = run_in(&lab.internet, move || Ok(TcpListener::bind(addr)?))?;
        let server = std::thread::spawn(move || -> anyhow::Result<u64> {
            let (mut s, _) = listener.accept().context("accept the transfer")?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            loop {
                match s.read(&mut buf).context("read the transfer")? {
                    0 => return Ok(total),
                    n => total += n as u64,
                }
            }
        });
        let stream = run_in(&lab.client, move || {
            Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(5))?)
        })
        .context("connect the transfer")?;
        let sport = stream.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let client = std::thread::spawn(move || -> anyhow::Result<u64> {
            let mut stream = stream;
            let data = vec![0x5a_u8; chunk];
            while !stop2.load(Ordering::Relaxed) {
                stream.write_all(&data).context("send on the transfer")?;
                sent2.fetch_add(chunk as u64, Ordering::Relaxed);
                // The pace of the transfer, not a wait for a condition.
                std::thread::sleep(every);
            }
            stream.shutdown(Shutdown::Write)?;
            Ok(sent2.load(Ordering::Relaxed))
        });
        Ok(Self {
            stop,
            sent,
            client: Some(client),
            server: Some(server),
            sport,
        })
    }

    /// Payload bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops sending, closes the connection; returns the payload bytes sent, checked
    /// against what the server received.
    pub fn finish(mut self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let join = |h: Option<JoinHandle<anyhow::Result<u64>>>, who: &str| match h {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("the transfer's {who} thread panicked"))?,
            None => bail!("the transfer's {who} is gone"),
        };
        let sent = join(self.client.take(), "client")?;
        let received = join(self.server.take(), "server")?;
        if sent != received {
            bail!("the transfer sent {sent} bytes but the server received {received}");
        }
        Ok(sent)
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        // The threads end when the lab's namespaces (and so the connection) go away.
        self.stop.store(true, Ordering::Relaxed);
    }
}
