//! The S3 client against hostile servers: raw HTTP/1.1 listeners on 127.0.0.1 that lie about
//! their bodies, redirect elsewhere, or never answer. Each test runs its own listener and
//! drives the real client ([`Remote`]); nothing of ours is mocked.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use sha2::Digest as _;

use super::config::{Credentials, Secret, ShipConfig, Target};
use super::echo::HEADER;
use super::remote::{Job, Remote, RemoteError};
use crate::blocklist::tests::TempDir;

/// Longest a test waits for the client: far above any bound under test, so only a hang trips it.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// A listener answering every connection from its own thread; counts connections and records
/// each request's method.
struct Listener {
    port: u16,
    connections: Arc<AtomicUsize>,
    methods: Arc<Mutex<Vec<String>>>,
}

impl Listener {
    /// Reads one request per connection (head and `Content-Length` body), then lets `answer`
    /// write the raw reply for its method.
    fn start(answer: impl Fn(&str, &mut TcpStream) + Send + 'static) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let methods = Arc::new(Mutex::new(Vec::new()));
        let (n, m) = (connections.clone(), methods.clone());
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                n.fetch_add(1, Ordering::SeqCst);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let Some(method) = read_request(&mut s) else {
                    continue;
                };
                if let Ok(mut m) = m.lock() {
                    m.push(method.clone());
                }
                answer(&method, &mut s);
            }
        });
        Self {
            port,
            connections,
            methods,
        }
    }

    /// A listener that accepts every connection and never reads or answers.
    fn silent() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let n = connections.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in l.incoming().flatten() {
                n.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        Self {
            port,
            connections,
            methods: Arc::default(),
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// The method of one request read off `s` with its body; `None` if the client went away.
fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf);
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    std::io::copy(&mut s.take(length), &mut std::io::sink()).ok()?;
    head.split(' ').next().map(str::to_owned)
}

/// The client's settings for a server on `port`: a request bound far above the hang guard and
/// an idle timeout of a second, so only the bounds under test end a request, quickly.
fn config(port: u16) -> ShipConfig {
    ShipConfig {
        target: Target {
            bucket: "audit".into(),
            prefix: "p".into(),
        },
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: "us-east-1".into(),
        credentials: Credentials {
            access_key_id: Secret::new("AKIAHOSTILETEST"),
            secret_access_key: Secret::new("hostile-test-secret"),
            session_token: Some(Secret::new("hostile-test-token")),
        },
        gateway_id: "g".into(),
        multipart_bytes: 5 << 20,
        request_timeout: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(1),
    }
}

/// Runs `f` on its own thread: its value, or a test failure naming `what` if it panicked or
/// did not return within [`HANG_GUARD`].
fn guarded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(HANG_GUARD) {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => panic!("{what}: the client panicked"),
        Err(_) => panic!("{what}: no answer within {HANG_GUARD:?}"),
    }
}

/// Writes `chunk` to `s` until `total` bytes went or the client hung up.
fn pour(s: &mut TcpStream, chunk: &[u8], total: usize) {
    let mut sent = 0;
    while sent < total && s.write_all(chunk).is_ok() {
        sent += chunk.len();
    }
}

#[test]
fn a_refusal_claiming_a_body_of_2_pow_63_bytes_fails_the_request_without_a_panic() {
    let server = Listener::start(|_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9223372036854775000\r\nConnection: close\r\n\r\n<Error>",
        );
        let _ = s.flush();
        std::thread::sleep(Duration::from_millis(50));
        pour(s, &[b' '; 64 << 10], 4 << 20);
    });
    let cfg = config(server.port);
    let result = guarded("PUT answered 403 with a huge Content-Length", move || {
        let remote = Remote::new(&cfg).expect("client");
        remote.put_bytes("p/manifest", b"{}".to_vec())
    });
    let e = result.expect_err("a 403 is a failure");
    assert!(e.to_string().contains("larger than"), "{e}");
}

#[test]
fn a_refusal_with_an_endless_chunked_body_fails_once_the_cap_arrived() {
    let server = Listener::start(|_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        );
        let mut chunk = format!("{:x}\r\n", 64 << 10).into_bytes();
        chunk.extend_from_slice(&[b'x'; 64 << 10]);
        chunk.extend_from_slice(b"\r\n");
        // Far past the cap, and past the hang guard at loopback speed had it no cap.
        pour(s, &chunk, usize::MAX);
    });
    let cfg = config(server.port);
    let result = guarded("PUT answered 400 with an endless body", move || {
        Remote::new(&cfg)
            .expect("client")
            .put_bytes("p/manifest", b"{}".to_vec())
    });
    let e = result.expect_err("a 400 is a failure");
    assert!(e.to_string().contains("larger than"), "{e}");
}

/// The manifest's PUT is vouched for as a segment's is: a server answering it with another
/// checksum is a mismatch, not a shipped manifest the cursor would never send again.
#[test]
fn a_manifest_put_answered_with_another_checksum_is_a_mismatch() {
    let zeros = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
    let server = Listener::start(move |_, s| {
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\n{HEADER}: {zeros}\r\nETag: \"1\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    });
    let cfg = config(server.port);
    let result = guarded("a manifest PUT answered with a wrong checksum", move || {
        Remote::new(&cfg)
            .expect("client")
            .put_bytes("p/manifest-1.jsonl", b"{}".to_vec())
    });
    assert!(
        matches!(result, Err(RemoteError::Mismatch { .. })),
        "{result:?}"
    );
}

#[test]
fn redirects_are_failures_and_the_other_host_is_never_contacted() {
    let bytes = b"a sealed segment".to_vec();
    let sha = sha2::Sha256::digest(&bytes);
    let echoed = base64::engine::general_purpose::STANDARD.encode(sha);
    // Answers anything with success and the segment's checksum: had the client followed the
    // redirect, an upload would count as created on this host's word.
    let other = Listener::start(move |_, s| {
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\n{HEADER}: {echoed}\r\nx-amz-meta-sha256: {}\r\nLast-Modified: Tue, 01 Dec 2026 00:00:00 GMT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            crate::store::fsutil::hex(&sha)
        );
    });
    let to = other.port;
    let endpoint = Listener::start(move |method, s| {
        // A PUT answered 303 becomes a GET; 307 keeps the method (and the headers).
        let status = if method == "PUT" {
            "303 See Other"
        } else {
            "307 Temporary Redirect"
        };
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\nLocation: http://127.0.0.1:{to}/audit/p/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    });
    let tmp = TempDir::new("ship-redirect");
    let path = tmp.0.join("seg-1-1.parquet");
    std::fs::write(&path, &bytes).expect("write the segment");
    let job = Job {
        key: "p/seg-1-1.parquet".into(),
        path,
        size: bytes.len() as u64,
        sha256: crate::store::fsutil::hex(&sha),
    };
    let cfg = config(endpoint.port);
    let (upload, stat, delete) = guarded("requests answered with redirects", move || {
        let remote = Remote::new(&cfg).expect("client");
        (
            remote.upload(&job, u64::MAX),
            remote.stat("p/seg-1-1.parquet"),
            remote.delete("p/seg-1-1.parquet"),
        )
    });
    for (what, status, outcome) in [
        ("upload", "303", format!("{upload:?}")),
        ("HEAD", "307", format!("{stat:?}")),
        ("DELETE", "307", format!("{delete:?}")),
    ] {
        assert!(
            outcome.starts_with("Err") && outcome.contains(status),
            "{what} answered {status}: {outcome}"
        );
    }
    let seen = endpoint
        .methods
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    assert!(seen.contains(&"PUT".to_owned()), "{seen:?}");
    assert_eq!(other.connections(), 0, "the redirect's host was contacted");
}

#[test]
fn a_server_that_never_answers_fails_each_request_after_the_idle_timeout() {
    let server = Listener::silent();
    let cfg = config(server.port);
    let (stat, put) = guarded("requests to a server that never answers", move || {
        let remote = Remote::new(&cfg).expect("client");
        (
            remote.stat("p/seg-1-1.parquet"),
            remote.put_bytes("p/manifest", b"{}".to_vec()),
        )
    });
    for (what, outcome) in [("HEAD", stat.map(drop)), ("PUT", put.map(drop))] {
        let e = outcome.expect_err(what).to_string();
        assert!(e.contains("idle timeout"), "{what}: {e}");
    }
    assert!(server.connections() > 0, "the listener saw no request");
}
