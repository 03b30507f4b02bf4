//! A syslog receiver for the benchmarks (included with `#[path]`): a TCP reader on loopback
//! that counts RFC 6587 octet-counted frames over all its connections.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A TCP reader on 127.0.0.1 counting octet-counted frames over all its connections.
pub fn receiver() -> (u16, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
    let port = l.local_addr().expect("receiver address").port();
    let frames = Arc::new(AtomicU64::new(0));
    let count = frames.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { break };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::with_capacity(1 << 20, conn);
                let mut len = Vec::with_capacity(8);
                let mut body = vec![0u8; 1 << 16];
                loop {
                    len.clear();
                    match r.read_until(b' ', &mut len) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let n: usize = match std::str::from_utf8(&len[..len.len() - 1])
                        .ok()
                        .and_then(|s| s.parse().ok())
                    {
                        Some(n) => n,
                        None => panic!("bad frame length {:?}", String::from_utf8_lossy(&len)),
                    };
                    if body.len() < n {
                        body.resize(n, 0);
                    }
                    if r.read_exact(&mut body[..n]).is_err() {
                        break;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    (port, frames)
}

/// Waits until `frames` reaches `n`, with a deadline.
pub fn wait_frames(frames: &AtomicU64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while frames.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "the receiver counted {} of {n} frames in 120 s",
            frames.load(Ordering::Relaxed)
        );
        std::thread::yield_now();
    }
}
