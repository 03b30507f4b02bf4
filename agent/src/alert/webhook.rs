//! The webhook delivery: each notice POSTed as one JSON object ([`Payload`]) to
//! `--alert-webhook`, from a thread of its own with a bounded queue. A notice is retried
//! with backoff (1 s, doubling, at most 60 s) until a 2xx answer or `--alert-webhook-attempts`
//! attempts; notices are sent in order. A full queue drops the notice and counts it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
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
        /// The URL.
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
}

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
        let client_err = |reason: String| WebhookError::Client {
            url: url.to_owned(),
            reason,
        };
        // The ring provider (never aws-lc-rs); already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| client_err(e.to_string()))?;
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("xdp-audit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| client_err(e.to_string()))?;
        let (tx, rx) = mpsc::sync_channel(queue.max(1));
        let counters = Arc::new(Counters::default());
        let sender = Sender {
            url: url.to_owned(),
            client,
            rt,
            attempts: attempts.max(1),
            counters: counters.clone(),
            queue: queue.max(1),
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
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
    attempts: u32,
    counters: Arc<Counters>,
    queue: usize,
}

impl Sender {
    fn run(self, rx: mpsc::Receiver<Msg>) {
        let mut waiting: VecDeque<Vec<u8>> = VecDeque::new();
        let mut closing: Option<Instant> = None;
        loop {
            let body = match waiting.pop_front() {
                Some(b) => b,
                None => {
                    // Closing: what is queued still goes, then the thread ends.
                    let m = match closing {
                        Some(_) => rx.try_recv().ok(),
                        None => rx.recv().ok(),
                    };
                    match m {
                        Some(m) => match self.take(m, &mut closing) {
                            Some(b) => b,
                            None => continue,
                        },
                        None => return,
                    }
                }
            };
            let mut backoff = FIRST_BACKOFF;
            let mut attempt = 1;
            loop {
                match self.post(&body) {
                    Ok(()) => {
                        self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => {
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(url = %self.url, attempt, error = %e, "alert webhook POST failed");
                    }
                }
                let past_grace = closing.is_some_and(|t| t.elapsed() >= CLOSE_GRACE);
                if attempt >= self.attempts || past_grace {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                attempt += 1;
                // Wait out the backoff on the queue: what arrives meanwhile is kept in order.
                let until = Instant::now() + backoff;
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    if closing.is_some() {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(m) => {
                            if let Some(b) = self.take(m, &mut closing) {
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
                            closing.get_or_insert_with(Instant::now);
                        }
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            self.counters.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A message's body, or `None` for the close (noted in `closing`).
    fn take(&self, m: Msg, closing: &mut Option<Instant>) -> Option<Vec<u8>> {
        match m {
            Msg::Post(b) => Some(b),
            Msg::Close => {
                closing.get_or_insert_with(Instant::now);
                None
            }
        }
    }

    fn post(&self, body: &[u8]) -> Result<(), String> {
        let req = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        self.rt.block_on(async {
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {status}"))
            }
        })
    }
}
