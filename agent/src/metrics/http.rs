//! A small HTTP/1.1 server for `GET /metrics` on the agent's tokio runtime. Each connection
//! is one request and one answer (`Connection: close`); the request head is bounded in size
//! and time, connections beyond a bound are closed at once, and the exposition is rendered
//! on the blocking pool so the ring-buffer reader on the same runtime never waits for it.
//! When every slot is taken, the connection that has waited longest for its request head, or
//! is draining a refused request, is closed to make room: idle connections cannot keep a
//! scraper, which sends its request as it connects, out.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};
use tracing::{debug, info, warn};

use super::Exporter;

/// The largest request head read; larger ones get 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed unanswered (and counted).
pub const MAX_CONNECTIONS: usize = 64;
/// Connections served at once from one address other than loopback: a host that opens idle
/// connections (each waits [`READ_TIMEOUT`] for its request) cannot hold every slot and keep
/// the scraper out. Loopback is not bound by it: every local client, the scraper too, has the
/// same address there.
pub const MAX_PER_PEER: usize = 8;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// The head is not complete yet.
    Partial,
    /// `GET /metrics` (or `HEAD`: the same headers, no body).
    Metrics {
        /// Whether to send the body.
        body: bool,
    },
    /// An answer without the metrics: status code and reason.
    Error(u16, &'static str),
}

/// Routes a request head (the bytes read so far).
pub fn route(head: &[u8]) -> Route {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Partial) if head.len() >= MAX_REQUEST_BYTES => {
            Route::Error(431, "Request Header Fields Too Large")
        }
        Ok(httparse::Status::Partial) => Route::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            Route::Error(431, "Request Header Fields Too Large")
        }
        Err(_) => Route::Error(400, "Bad Request"),
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or("");
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            match (req.method.unwrap_or(""), path) {
                ("GET", "/metrics") => Route::Metrics { body: true },
                ("HEAD", "/metrics") => Route::Metrics { body: false },
                (_, "/metrics") => Route::Error(405, "Method Not Allowed"),
                _ => Route::Error(404, "Not Found"),
            }
        }
    }
}

/// An answer: status line, headers, body.
fn answer(code: u16, reason: &str, content_type: &str, body: &[u8], send_body: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        body.len(),
        if code == 405 { "Allow: GET, HEAD\r\n" } else { "" }
    )
    .into_bytes();
    if send_body {
        out.extend_from_slice(body);
    }
    out
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("--metrics {addr}: cannot listen: {cause} ({})", bind_hint(*addr, cause))]
pub struct BindError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// The cause (in the message, so not named `source`).
    pub cause: std::io::Error,
}

/// What to do about a failed bind.
fn bind_hint(addr: SocketAddr, cause: &std::io::Error) -> &'static str {
    match cause.raw_os_error() {
        // The bind comes after `--user` and the packaged unit grants no CAP_NET_BIND_SERVICE.
        Some(libc::EACCES) if addr.port() < 1024 => {
            "a port below 1024 needs CAP_NET_BIND_SERVICE, which the agent does not hold: \
             choose a port of 1024 or above (the default is 9477)"
        }
        Some(libc::EAFNOSUPPORT | libc::EPERM | libc::EACCES) => {
            "a sandbox forbids IP sockets: under the packaged unit add AF_INET AF_INET6 to \
             RestrictAddressFamilies= and IPAddressAllow=localhost in a drop-in (README, \
             \"Metrics\")"
        }
        Some(libc::EADDRINUSE) => {
            "another process listens there: choose another port with --metrics ADDR"
        }
        Some(libc::EADDRNOTAVAIL) => "no interface of this host has that address",
        _ => "check the address given to --metrics",
    }
}

/// Listens on `addr`; done before the program is loaded, so a port in use fails the start.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, BindError> {
    std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|cause| BindError { addr, cause })
}

/// Serves `exporter` on `listener` from a task of the current runtime, until aborted.
pub fn spawn(
    listener: std::net::TcpListener,
    exporter: Arc<Exporter>,
) -> Result<tokio::task::JoinHandle<()>, BindError> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener = TcpListener::from_std(listener).map_err(|cause| BindError { addr, cause })?;
    info!("metrics at http://{addr}/metrics");
    Ok(tokio::spawn(serve(listener, exporter)))
}

/// The connections being served per peer address, each held by a [`PeerSlot`].
#[derive(Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in [`Peers`] (none for loopback), given back when dropped.
struct PeerSlot {
    peers: Arc<Peers>,
    ip: Option<IpAddr>,
}

impl Peers {
    /// A slot for a connection from `ip`, unless [`MAX_PER_PEER`] are being served.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let ip = ip.to_canonical();
        if ip.is_loopback() {
            return Some(PeerSlot {
                peers: self.clone(),
                ip: None,
            });
        }
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= MAX_PER_PEER {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip: Some(ip),
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut map = self.peers.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// The connections still waiting for their request head, oldest first, each with the way
/// to close it.
#[derive(Default)]
struct Waiting(Mutex<(u64, BTreeMap<u64, oneshot::Sender<()>>)>);

/// A connection's place in [`Waiting`], left when its head is read or it ends.
struct WaitingSlot {
    waiting: Arc<Waiting>,
    id: u64,
}

impl Waiting {
    /// A place for a new connection, and what tells it it was closed to make room.
    fn enter(self: &Arc<Self>) -> (WaitingSlot, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let id = w.0;
        w.0 += 1;
        w.1.insert(id, tx);
        let slot = WaitingSlot {
            waiting: self.clone(),
            id,
        };
        (slot, rx)
    }

    /// Closes the connection that has waited longest for its head; false if none waits.
    fn evict_oldest(&self) -> bool {
        loop {
            let oldest = {
                let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
                w.1.pop_first()
            };
            match oldest {
                None => return false,
                // One that ended meanwhile frees its own slot; the next is closed too.
                Some((_, tx)) => {
                    if tx.send(()).is_ok() {
                        return true;
                    }
                }
            }
        }
    }
}

impl Drop for WaitingSlot {
    fn drop(&mut self) {
        let mut w = self.waiting.0.lock().unwrap_or_else(|p| p.into_inner());
        w.1.remove(&self.id);
    }
}

/// How long the accept loop waits for the slot of a connection it closed to make room.
const EVICT_WAIT: Duration = Duration::from_millis(200);

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, exporter: Arc<Exporter>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let peers = Arc::new(Peers::default());
    let waiting = Arc::new(Waiting::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: wait a moment rather than spin.
                warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(peer_slot) = peers.take(peer.ip()) else {
            exporter.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            // One closed waiting for its head counts itself refused.
            Err(_) if waiting.evict_oldest() => {
                tokio::time::timeout(EVICT_WAIT, permits.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        };
        let Some(permit) = permit else {
            exporter.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        // In the waiting list from its accept: a connection not polled yet can make room too.
        let head_wait = waiting.enter();
        let (exporter, waiting) = (exporter.clone(), waiting.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(stream, exporter, waiting, head_wait).await {
                debug!(error = %e, "metrics: connection ended early");
            }
            drop((peer_slot, permit));
        });
    }
}

/// The request head's route, and whether it is a HEAD request (no body in any answer).
async fn read_head(s: &mut TcpStream) -> std::io::Result<(Route, bool)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok((Route::Error(400, "Bad Request"), false));
        }
        let take = n.min(MAX_REQUEST_BYTES - buf.len());
        buf.extend_from_slice(&chunk[..take]);
        match route(&buf) {
            Route::Partial => {}
            r => return Ok((r, buf.starts_with(b"HEAD "))),
        }
    }
}

/// Reads and drops what the client still sends, for at most a second and 64 KiB: closed with
/// unread bytes, a socket answers with a reset, and the client may lose the answer to it.
async fn drain(s: &mut TcpStream) {
    let mut chunk = [0u8; 4096];
    let mut left: usize = 64 << 10;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while left > 0 {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Serves one connection. While it waits for its request head (`head_wait`, its place in
/// `waiting` from its accept), and while it drains what a refused request still sends, it can
/// be closed to make room for a new connection when every slot is taken: unanswered (counted
/// refused), or after its answer. A scrape being rendered or answered is never closed so.
async fn handle(
    mut s: TcpStream,
    exporter: Arc<Exporter>,
    waiting: Arc<Waiting>,
    (slot, evicted): (WaitingSlot, oneshot::Receiver<()>),
) -> std::io::Result<()> {
    let (route, head) = tokio::select! {
        biased;
        read = tokio::time::timeout(READ_TIMEOUT, read_head(&mut s)) => {
            read.unwrap_or(Ok((Route::Error(408, "Request Timeout"), false)))?
        }
        Ok(()) = evicted => {
            exporter.refused.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
    };
    drop(slot);
    let error = !matches!(route, Route::Metrics { .. });
    let out = match route {
        Route::Metrics { body } => {
            let exporter = exporter.clone();
            let text = tokio::task::spawn_blocking(move || exporter.render())
                .await
                .map_err(std::io::Error::other)?;
            answer(200, "OK", CONTENT_TYPE, text.as_bytes(), body)
        }
        Route::Error(code, reason) => {
            let body = format!("{code} {reason}: the metrics are at GET /metrics\n");
            answer(
                code,
                reason,
                "text/plain; charset=utf-8",
                body.as_bytes(),
                !head,
            )
        }
        // read_head returns complete heads only.
        Route::Partial => answer(400, "Bad Request", "text/plain; charset=utf-8", b"", true),
    };
    let sent = tokio::time::timeout(WRITE_TIMEOUT, async {
        s.write_all(&out).await?;
        s.shutdown().await
    })
    .await
    .unwrap_or(Ok(()));
    // An answer before the whole request was read (too large, a body of a refused method):
    // what is left is read first, so the close is not a reset.
    if error && sent.is_ok() {
        // Answered already: closed to make room, it is no refusal.
        let (_slot, evicted) = waiting.enter();
        tokio::select! {
            biased;
            () = drain(&mut s) => {}
            Ok(()) = evicted => {}
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on a loopback port for `secs` on a thread of its own; its address and
    /// exporter.
    fn serving(secs: u64) -> (SocketAddr, Arc<Exporter>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        let addr = listener.local_addr().expect("local address");
        let exporter = Arc::new(Exporter::new(
            Arc::new(crate::metrics::Latest::default()),
            crate::metrics::render::Static::default(),
        ));
        let served = exporter.clone();
        std::thread::spawn(move || {
            rt.block_on(async move {
                let l = TcpListener::from_std(listener).expect("listener");
                let _ = tokio::time::timeout(Duration::from_secs(secs), serve(l, served)).await;
            })
        });
        (addr, exporter)
    }

    /// A scrape's whole answer.
    fn scrape(addr: SocketAddr) -> String {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .expect("write");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("read");
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// One address holding [`MAX_PER_PEER`] connections is refused more while others are
    /// served (64 idle connections from one host kept every scrape out as long as it reopened
    /// them); its slots come back as its connections end; loopback, the address of every
    /// local client and of the scraper too, is not bound by it.
    #[test]
    fn one_peer_cannot_take_every_connection() {
        let peers = Arc::new(Peers::default());
        let (one, two): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let held: Vec<_> = (0..MAX_PER_PEER)
            .map(|_| peers.take(one).expect("a slot"))
            .collect();
        assert!(peers.take(one).is_none(), "the ninth from one address");
        assert!(peers.take(two).is_some(), "another address");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(
            peers.take(mapped).is_none(),
            "the same address, IPv4-mapped"
        );
        let local: Vec<_> = (0..2 * MAX_PER_PEER)
            .map(|_| peers.take("127.0.0.1".parse().unwrap()).expect("loopback"))
            .collect();
        drop(held);
        assert!(peers.take(one).is_some(), "its slots came back");
        drop(local);
        assert!(peers.0.lock().unwrap().is_empty(), "every slot given back");
    }

    /// A HEAD request's error answer has no body (it had one); a request head too large is
    /// answered 431 whole, the bytes after it read and dropped before the close (left unread,
    /// they made the close a reset, which can cost the client the answer; a reset on loopback
    /// comes after the answer here too often for this test to catch that).
    #[test]
    fn an_error_answer_arrives_whole_and_a_head_request_gets_no_body() {
        use std::io::{Read as _, Write as _};
        let (addr, _) = serving(30);
        let ask = |request: &[u8]| {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.write_all(request).expect("write");
            s.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut answer = Vec::new();
            s.read_to_end(&mut answer)
                .map(|_| String::from_utf8_lossy(&answer).into_owned())
        };
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(4 * MAX_REQUEST_BYTES, b'a');
        for _ in 0..20 {
            let answer = ask(&big).expect("the answer, not a reset");
            assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        }
        let answer = ask(b"HEAD /nothing HTTP/1.1\r\n\r\n").expect("read");
        assert!(
            answer.starts_with("HTTP/1.1 404 ") && answer.ends_with("\r\n\r\n"),
            "{answer:?}"
        );
    }

    /// Idle or draining connections on every slot, from loopback (where all local clients,
    /// the scraper too, have one address): a scrape is still answered, the connection that
    /// waited longest closed to make room (64 held by any local user kept every scrape out).
    #[test]
    fn idle_or_draining_connections_on_every_slot_do_not_keep_a_scrape_out() {
        use std::io::{Read as _, Write as _};
        let (addr, seen) = serving(60);
        let idle: Vec<_> = (0..2 * MAX_CONNECTIONS)
            .map(|i| std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("idle {i}: {e}")))
            .collect();
        for round in 0..3 {
            let answer = scrape(addr);
            assert!(
                answer.starts_with("HTTP/1.1 200 "),
                "round {round}: {answer:?}"
            );
        }
        drop(idle);
        assert!(
            seen.refused.load(Ordering::Relaxed) >= 3,
            "an idle connection was closed for each scrape"
        );
        // Every slot held by a connection whose refused request was answered and that keeps
        // its socket open (the server drains it for up to a second): a scrape still comes in.
        let draining: Vec<_> = (0..MAX_CONNECTIONS)
            .map(|i| {
                let mut s = std::net::TcpStream::connect(addr)
                    .unwrap_or_else(|e| panic!("draining {i}: {e}"));
                s.set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                s.write_all(b"GET /x HTTP/1.1\r\n\r\n").expect("write");
                let mut answer = [0u8; 12];
                s.read_exact(&mut answer).expect("its answer");
                assert_eq!(&answer, b"HTTP/1.1 404", "draining {i}");
                s
            })
            .collect();
        let answer = scrape(addr);
        assert!(
            answer.starts_with("HTTP/1.1 200 "),
            "behind draining: {answer:?}"
        );
        drop(draining);
    }

    /// EACCES on a privileged port is the missing capability, not a sandbox's socket rule.
    #[test]
    fn a_refused_privileged_port_is_said_as_such() {
        let refused = |addr: &str| {
            BindError {
                addr: addr.parse().expect("address"),
                cause: std::io::Error::from_raw_os_error(libc::EACCES),
            }
            .to_string()
        };
        let low = refused("127.0.0.1:80");
        assert!(
            low.contains("CAP_NET_BIND_SERVICE") && !low.contains("sandbox"),
            "{low}"
        );
        let high = refused("127.0.0.1:9477");
        assert!(high.contains("sandbox"), "{high}");
    }

    #[test]
    fn requests_are_routed_by_method_and_path() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { body: true }
        );
        assert_eq!(
            route(b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n"),
            Route::Metrics { body: true }
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { body: false }
        );
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost"), Route::Partial);
        assert_eq!(
            route(b"GET / HTTP/1.1\r\n\r\n"),
            Route::Error(404, "Not Found")
        );
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::Error(405, "Method Not Allowed")
        );
        assert_eq!(
            route(b"\x16\x03\x01garbage\r\n\r\n"),
            Route::Error(400, "Bad Request")
        );
    }

    #[test]
    fn an_endless_head_is_refused_at_the_bound() {
        let mut head = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        head.resize(MAX_REQUEST_BYTES, b'a');
        assert_eq!(
            route(&head),
            Route::Error(431, "Request Header Fields Too Large")
        );
        head.truncate(MAX_REQUEST_BYTES - 1);
        assert_eq!(route(&head), Route::Partial);
    }
}
