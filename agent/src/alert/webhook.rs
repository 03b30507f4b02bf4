//! The webhook delivery: each notice POSTed as one JSON object ([`Payload`]) to
//! `--alert-webhook`, from a thread of its own with a bounded queue. A notice is retried
//! with backoff (1 s, doubling, at most 60 s) until a 2xx answer or `--alert-webhook-attempts`
//! attempts; notices are sent in order. A full queue drops the notice and counts it. At the
//! agent's stop the thread has [`CLOSE_GRACE`]: each POST from then on waits at most what is
//! left of it, and past it every notice left is counted as dropped, never posted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::deliver::Delivery;
use super::{Alert, DeliveryStats};

/// Longest wait for one POST.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// First retry delay; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long the agent's stop waits for queued notices.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The JSON body of a POST: the alert's fields, the gateway's host name and the times as
/// RFC 3339 as well.
#[derive(Serialize)]
pub struct Payload<'a> {
    /// The gateway's host name.
    pub host: &'a str,
    /// The notice.
    #[serde(flatten)]
    pub alert: &'a Alert,
    /// `first_ns` as RFC 3339 UTC.
    pub first: String,
    /// `last_ns` as RFC 3339 UTC.
    pub last: String,
}

impl<'a> Payload<'a> {
    /// The payload of `alert` sent by `host`.
    pub fn new(host: &'a str, alert: &'a Alert) -> Self {
        Self {
            host,
            alert,
            first: crate::record::rfc3339_ns(alert.first_ns),
            last: crate::record::rfc3339_ns(alert.last_ns),
        }
    }
}

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The HTTP client could not be built (TLS roots, runtime).
    #[error("--alert-webhook {url}: cannot start the HTTP client: {reason}")]
    Client {
        /// The URL, as logs show it.
        url: String,
        /// Why.
        reason: String,
    },
    /// The thread could not be started.
    #[error("--alert-webhook: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicU64,
    /// When the close began: set by [`Delivery::close`] before its message is queued, so the
    /// thread knows it while the notices ahead of that message are still being sent.
    closing: OnceLock<Instant>,
}

/// How long the thread waits: for one POST, and at the close for all of them.
#[derive(Clone, Copy, Debug)]
struct Timing {
    request: Duration,
    grace: Duration,
}

const TIMING: Timing = Timing {
    request: REQUEST_TIMEOUT,
    grace: CLOSE_GRACE,
};

enum Msg {
    Post(Vec<u8>),
    Close,
}

/// The webhook delivery; see the module docs.
pub struct Webhook {
    tx: SyncSender<Msg>,
    counters: Arc<Counters>,
    thread: Option<std::thread::JoinHandle<()>>,
    host: String,
}

/// The machine's host name (empty if unknown).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: a buffer of the given length.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl Webhook {
    /// Starts the thread that POSTs to `url`, with a queue of `queue` notices and `attempts`
    /// attempts per notice.
    pub fn start(url: &str, queue: usize, attempts: u32) -> Result<Self, WebhookError> {
        Self::start_timed(url, queue, attempts, TIMING)
    }

    fn start_timed(
        url: &str,
        queue: usize,
        attempts: u32,
        timing: Timing,
    ) -> Result<Self, WebhookError> {
        let client_err = |reason: String| WebhookError::Client {
            url: shown_url(url),
            reason,
        };
        // The ring provider (never aws-lc-rs); already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| client_err(e.to_string()))?;
        // A redirect is a failed attempt: followed, it turned the POST into a GET without the
        // alert, which a 2xx then counted delivered (and sent the agent to any host).
        let client = reqwest::Client::builder()
            .timeout(timing.request)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("xdp-audit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| client_err(e.to_string()))?;
        let (tx, rx) = mpsc::sync_channel(queue.max(1));
        let counters = Arc::new(Counters::default());
        let sender = Sender {
            url: url.to_owned(),
            shown: shown_url(url),
            client,
            rt,
            attempts: attempts.max(1),
            counters: counters.clone(),
            queue: queue.max(1),
            timing,
        };
        let thread = std::thread::Builder::new()
            .name("xdp-audit-webhook".into())
            .spawn(move || sender.run(rx))
            .map_err(WebhookError::Thread)?;
        Ok(Self {
            tx,
            counters,
            thread: Some(thread),
            host: host_name(),
        })
    }
}

impl Delivery for Webhook {
    fn deliver(&mut self, alert: &Alert) {
        let body = match serde_json::to_vec(&Payload::new(&self.host, alert)) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an alert for the webhook");
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match self.tx.try_send(Msg::Post(body)) {
            Ok(()) => {
                self.counters.pending.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn close(&mut self) {
        self.counters.closing.get_or_init(Instant::now);
        // Blocking send: the thread drains the queue, so room comes.
        let _ = self.tx.send(Msg::Close);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn stats(&self) -> DeliveryStats {
        let c = &self.counters;
        DeliveryStats {
            name: "webhook".into(),
            delivered: c.delivered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            pending: c.pending.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.close();
    }
}

/// The webhook thread's state.
struct Sender {
    url: String,
    /// The URL as logs show it: scheme, host and port (a path or query may carry a token).
    shown: String,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
    attempts: u32,
    counters: Arc<Counters>,
    queue: usize,
    timing: Timing,
}

impl Sender {
    fn run(self, rx: mpsc::Receiver<Msg>) {
        let mut waiting: VecDeque<Vec<u8>> = VecDeque::new();
        loop {
            let body = match waiting.pop_front() {
                Some(b) => b,
                None => {
                    // Closing: what is queued still goes, then the thread ends.
                    let m = match self.grace_left() {
                        Some(_) => rx.try_recv().ok(),
                        None => rx.recv().ok(),
                    };
                    match m {
                        Some(m) => match self.take(m) {
                            Some(b) => b,
                            None => continue,
                        },
                        None => return,
                    }
                }
            };
            if self.grace_left().is_some_and(|left| left.is_zero()) {
                self.give_up(1 + waiting.len() as u64, &rx);
                return;
            }
            let mut backoff = FIRST_BACKOFF;
            let mut attempt = 1;
            loop {
                // Once closing, a POST waits no longer than the grace left.
                let limit = self
                    .grace_left()
                    .map_or(self.timing.request, |left| left.min(self.timing.request));
                match self.post(&body, limit) {
                    Ok(()) => {
                        self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => {
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(url = %self.shown, attempt, error = %e, "alert webhook POST failed");
                    }
                }
                let past_grace = self.grace_left().is_some_and(|left| left.is_zero());
                if attempt >= self.attempts || past_grace {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                attempt += 1;
                // Wait out the backoff on the queue: what arrives meanwhile is kept in order.
                let until = Instant::now() + backoff;
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    if self.grace_left().is_some() {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(m) => {
                            if let Some(b) = self.take(m) {
                                if waiting.len() == self.queue {
                                    waiting.pop_front();
                                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                                    self.counters.pending.fetch_sub(1, Ordering::Relaxed);
                                }
                                waiting.push_back(b);
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => {
                            self.counters.closing.get_or_init(Instant::now);
                        }
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            self.counters.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// While closing, what is left of the grace (zero once it is spent); `None` before.
    fn grace_left(&self) -> Option<Duration> {
        let since = self.counters.closing.get()?;
        Some(self.timing.grace.saturating_sub(since.elapsed()))
    }

    /// The grace is spent: `held` notices taken from the queue and every one still in it are
    /// counted as dropped, none posted.
    fn give_up(&self, held: u64, rx: &mpsc::Receiver<Msg>) {
        let queued = rx.try_iter().filter(|m| matches!(m, Msg::Post(_))).count() as u64;
        let n = held + queued;
        self.counters.dropped.fetch_add(n, Ordering::Relaxed);
        self.counters.pending.fetch_sub(n, Ordering::Relaxed);
        tracing::warn!(url = %self.shown, dropped = n, "alert webhook: the stop's grace is spent; notices not sent");
    }

    /// A message's body, or `None` for the close.
    fn take(&self, m: Msg) -> Option<Vec<u8>> {
        match m {
            Msg::Post(b) => Some(b),
            Msg::Close => {
                self.counters.closing.get_or_init(Instant::now);
                None
            }
        }
    }

    /// One POST, waiting at most `limit` for the whole exchange.
    fn post(&self, body: &[u8], limit: Duration) -> Result<(), String> {
        let req = self
            .client
            .post(&self.url)
            .timeout(limit)
            .header("content-type", "application/json")
            .body(body.to_vec());
        self.rt.block_on(async {
            let resp = req.send().await.map_err(|e| e.without_url().to_string())?;
            let status = resp.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {status}"))
            }
        })
    }
}

/// `url` without what may be secret (user, path, query): what logs show of it.
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}/...",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(the --alert-webhook URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertId, AlertState, Severity};

    fn notice(i: i64) -> Alert {
        Alert {
            id: AlertId::RingLoss,
            severity: Severity::Critical,
            state: AlertState::Raised,
            text: format!("notice {i}"),
            subject: Default::default(),
            first_ns: i,
            last_ns: i,
            count: 1,
        }
    }

    /// Answers every connection to `listener` with `response` (one request a connection),
    /// counting them.
    fn answer_all(
        listener: std::net::TcpListener,
        response: String,
    ) -> Arc<std::sync::atomic::AtomicU64> {
        use std::io::{Read as _, Write as _};
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            for mut c in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::Relaxed);
                let mut head = [0u8; 4096];
                let _ = c.read(&mut head);
                let _ = c.write_all(response.as_bytes());
            }
        });
        seen
    }

    /// A receiver that redirects: the attempt fails (followed, the POST became a GET
    /// without the alert, which the target's 200 counted delivered), and the other host is
    /// never asked.
    #[test]
    fn a_redirect_is_a_failed_attempt_and_is_not_followed() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let other_addr = other.local_addr().expect("addr");
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let followed = answer_all(other, ok.into());
        let hook_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", hook_listener.local_addr().expect("addr"));
        let redirect = format!(
            "HTTP/1.1 302 Found\r\nlocation: http://{other_addr}/elsewhere\r\n\
             content-length: 0\r\nconnection: close\r\n\r\n"
        );
        let asked = answer_all(hook_listener, redirect);
        let mut hook = Webhook::start_timed(&url, 4, 2, TIMING).expect("start the webhook");
        hook.deliver(&notice(1));
        hook.close();
        let st = hook.stats();
        assert_eq!((st.delivered, st.failed, st.dropped), (0, 2, 1), "{st:?}");
        assert_eq!(asked.load(Ordering::Relaxed), 2, "two attempts");
        assert_eq!(
            followed.load(Ordering::Relaxed),
            0,
            "the redirect was followed"
        );
    }

    #[test]
    fn shown_urls_keep_no_path_query_or_user() {
        assert_eq!(
            shown_url("https://user:pw@hooks.example:8443/services/T0/B1/secret?token=x"),
            "https://hooks.example:8443/..."
        );
        assert_eq!(shown_url("not a url"), "(the --alert-webhook URL)");
    }

    #[test]
    fn a_receiver_that_never_answers_holds_the_stop_no_longer_than_the_grace_and_one_request() {
        // Never accepted, never answered: the kernel completes each connection into the
        // listen backlog, so every POST is sent and waits for an answer that never comes.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let url = format!(
            "http://{}/hook",
            silent.local_addr().expect("the listener's address")
        );
        let timing = Timing {
            request: Duration::from_secs(2),
            grace: Duration::from_secs(1),
        };
        let mut hook = Webhook::start_timed(&url, 64, 6, timing).expect("start the webhook");
        for i in 0..20 {
            hook.deliver(&notice(i));
        }
        assert_eq!(hook.stats().pending, 20);
        let started = Instant::now();
        let (done, stopped) = mpsc::channel();
        std::thread::spawn(move || {
            hook.close();
            let _ = done.send(hook.stats());
        });
        // Twice the designed grace and one request: a hang guard under the 40 s that
        // waiting out every notice's request would take.
        let bound = 2 * (timing.grace + timing.request);
        let st = stopped
            .recv_timeout(bound)
            .unwrap_or_else(|_| panic!("the close took longer than {bound:?}"));
        assert!(started.elapsed() <= bound, "{:?}", started.elapsed());
        assert_eq!(
            (st.delivered, st.dropped, st.pending),
            (0, 20, 0),
            "each notice not delivered is counted as dropped: {st:?}"
        );
        assert!(st.failed >= 1, "{st:?}");
        drop(silent);
    }
}
