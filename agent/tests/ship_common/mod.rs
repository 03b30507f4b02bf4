//! A real S3 server for the shipping tests: `s3s-fs` (installed by `cargo xtask setup`) on
//! 127.0.0.1 with a free port, SigV4 credentials and a bucket folder, killed by a guard.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use xdp_audit::ship::config::{Credentials, Secret, ShipConfig, Target};

#[path = "../common/wait.rs"]
mod wait;
pub use wait::wait_until;

/// Access key of the test server.
pub const ACCESS_KEY: &str = "AKIAXDPAUDITTEST";
/// Secret key of the test server (the secret-logging test looks for it in the output).
pub const SECRET_KEY: &str = "xdpAuditTestSecret/ShouldNeverBeLogged0";
/// The bucket.
pub const BUCKET: &str = "audit";

/// A running `s3s-fs`; killed (and continued first, if stopped) on drop.
pub struct S3Server {
    child: Option<Child>,
    /// Folder the server keeps its buckets in (`root/BUCKET/KEY`).
    pub root: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// A free port on 127.0.0.1 (the kernel's pick; released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

impl S3Server {
    /// Starts a server over a new folder `root` with the bucket created, on a free port.
    pub fn start(root: &Path) -> Self {
        Self::start_on(root, free_port())
    }

    /// Starts a server on `port` over `root` (kept across restarts of the server).
    pub fn start_on(root: &Path, port: u16) -> Self {
        std::fs::create_dir_all(root.join(BUCKET))
            .unwrap_or_else(|e| panic!("create bucket folder in {}: {e}", root.display()));
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start s3s-fs ({e}): run `cargo xtask setup` (it installs s3s-fs 0.14.1 with `cargo install --locked s3s-fs --version 0.14.1 --features binary`)")
            });
        let server = Self {
            child: Some(child),
            root: root.to_owned(),
            port,
        };
        wait_until(
            Duration::from_secs(20),
            "s3s-fs accepts connections",
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Sends `sig` to the server.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Stops the server process (kill, wait); the folder stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The ship settings for this server, `prefix` and `gateway`.
    pub fn config(&self, prefix: &str, gateway: &str) -> ShipConfig {
        ship_config(self.port, prefix, gateway)
    }

    /// Every object under `prefix` in the bucket whose name ends in `suffix`, as paths
    /// relative to the bucket, sorted.
    pub fn objects(&self, prefix: &str, suffix: &str) -> Vec<String> {
        let base = self.root.join(BUCKET);
        let mut out = Vec::new();
        let mut stack = vec![base.join(prefix)];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.to_string_lossy().ends_with(suffix) {
                    if let Ok(rel) = p.strip_prefix(&base) {
                        out.push(rel.to_string_lossy().into_owned());
                    }
                }
            }
        }
        out.sort();
        out
    }
}

/// The ship settings for a test server on `port` (running or not), `prefix` and `gateway`.
pub fn ship_config(port: u16, prefix: &str, gateway: &str) -> ShipConfig {
    ShipConfig {
        target: Target {
            bucket: BUCKET.into(),
            prefix: prefix.into(),
        },
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: "us-east-1".into(),
        credentials: Credentials {
            access_key_id: Secret::new(ACCESS_KEY),
            secret_access_key: Secret::new(SECRET_KEY),
            session_token: None,
        },
        gateway_id: gateway.into(),
        multipart_bytes: 5 << 20,
        request_timeout: std::time::Duration::from_secs(10),
        idle_timeout: xdp_audit::ship::config::DEFAULT_IDLE_TIMEOUT,
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a credentials file (mode 0600) for the test server.
pub fn credentials_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("s3.credentials");
    std::fs::write(
        &p,
        format!(
            "[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
    p
}
