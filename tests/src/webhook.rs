//! A webhook receiver for the alert tests: a real HTTP/1.1 server on a loopback port (of the
//! test's own network namespace, or of a lab namespace where the agent runs) that keeps the
//! JSON body of every POST. It can refuse the first requests (HTTP 500) to prove retries.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;

/// The running receiver; dropping it stops it.
pub struct Receiver {
    addr: SocketAddr,
    ns: Option<String>,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    /// Listens on 127.0.0.1 of namespace `ns` (the test's own if `None`); answers the first
    /// `refuse` requests with HTTP 500, the others with 200.
    pub fn start(ns: Option<&str>, refuse: u64) -> anyhow::Result<Self> {
        let bind = || TcpListener::bind("127.0.0.1:0").context("bind the webhook receiver");
        let listener = match ns {
            Some(ns) => crate::netns::run_in(ns, bind)?,
            None => bind()?,
        };
        let addr = listener.local_addr()?;
        let r = Self {
            addr,
            ns: ns.map(str::to_owned),
            bodies: Arc::default(),
            requests: Arc::default(),
            stop: Arc::default(),
        };
        let (bodies, requests, stop) = (r.bodies.clone(), r.requests.clone(), r.stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (bodies, requests) = (bodies.clone(), requests.clone());
                std::thread::spawn(move || serve(conn, &bodies, &requests, refuse));
            }
        });
        Ok(r)
    }

    /// The URL to give `--alert-webhook`.
    pub fn url(&self) -> String {
        format!("http://{}/alerts", self.addr)
    }

    /// The JSON bodies received so far, in order.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        match self.bodies.lock() {
            Ok(b) => b.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Requests received so far (refused ones included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let addr = self.addr;
        let wake = move || {
            // Only the wake-up matters; a refused connection means it is gone already.
            let _ = TcpStream::connect(addr);
            Ok(())
        };
        let _ = match &self.ns {
            Some(ns) => crate::netns::run_in(ns, wake),
            None => wake(),
        };
    }
}

/// Serves the requests of one connection (keep-alive) until it closes.
fn serve(
    conn: TcpStream,
    bodies: &Mutex<Vec<serde_json::Value>>,
    requests: &AtomicU64,
    refuse: u64,
) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        // Request line and headers.
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
        let status = if n <= refuse {
            "500 Internal Server Error"
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => {
                    match bodies.lock() {
                        Ok(mut b) => b.push(v),
                        Err(p) => p.into_inner().push(v),
                    }
                    "200 OK"
                }
                Err(_) => "400 Bad Request",
            }
        };
        let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
