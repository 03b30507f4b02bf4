//! Connections to the syslog server: plain TCP, or TLS (rustls with the `ring` provider) with
//! the server's certificate checked against `--syslog-ca` for the host name of the URL.
//!
//! Blocking sockets on the sender's own thread: nothing else waits on them, and a write
//! timeout bounds how long a server that stopped reading holds the sender.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::{SyslogConfig, SyslogError, Target};

/// How long one connection attempt (TCP connect, then the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes a server may send between two batches before the connection is given up.
const UNEXPECTED_MAX: usize = 64 * 1024;

/// Makes connections to the configured server.
pub(super) struct Connector {
    target: Target,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

impl Connector {
    /// Checks the settings and reads the CA file for a `tls://` server.
    pub(super) fn new(config: &SyslogConfig) -> Result<Self, SyslogError> {
        let target = config.target.clone();
        let tls = match (&config.ca_file, target.tls) {
            (Some(path), true) => {
                let roots = read_roots(path)?;
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let client = ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| SyslogError::Settings(format!("TLS for {target}: {e}")))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let name = ServerName::try_from(target.host.clone()).map_err(|e| {
                    SyslogError::Url {
                        url: target.to_string(),
                        reason: format!("{:?} is not a valid TLS server name: {e}", target.host),
                    }
                })?;
                Some((Arc::new(client), name))
            }
            (None, true) => {
                return Err(SyslogError::Settings(format!(
                    "--syslog {target} needs --syslog-ca FILE: the CA certificates the server's certificate must chain to"
                )))
            }
            (Some(path), false) => {
                return Err(SyslogError::Settings(format!(
                    "--syslog-ca {} is given but --syslog {target} is not tls://: use tls://HOST:PORT or leave out the CA file",
                    path.display()
                )))
            }
            (None, false) => None,
        };
        Ok(Self { target, tls })
    }

    /// The server.
    pub(super) fn target(&self) -> &Target {
        &self.target
    }

    /// One attempt: each address of the host in turn, then the TLS handshake. The error
    /// names the server and says what failed.
    pub(super) fn connect(&self, write_timeout: Duration) -> Result<Conn, String> {
        let t = &self.target;
        let addrs = (t.host.as_str(), t.port)
            .to_socket_addrs()
            .map_err(|e| format!("{t}: cannot resolve {:?}: {e}", t.host))?;
        let mut last = format!("{t}: {:?} has no address", t.host);
        let mut sock = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = format!("{t}: cannot connect to {addr}: {e}"),
            }
        }
        let mut sock = sock.ok_or(last)?;
        let io = |what: &str, e: std::io::Error| format!("{t}: {what}: {e}");
        sock.set_nodelay(true).map_err(|e| io("TCP_NODELAY", e))?;
        let Some((client, name)) = &self.tls else {
            sock.set_write_timeout(Some(write_timeout))
                .map_err(|e| io("write timeout", e))?;
            return Ok(Conn::Tcp(sock));
        };
        sock.set_read_timeout(Some(CONNECT_TIMEOUT))
            .and_then(|()| sock.set_write_timeout(Some(CONNECT_TIMEOUT)))
            .map_err(|e| io("socket timeouts", e))?;
        let mut tls = ClientConnection::new(client.clone(), name.clone())
            .map_err(|e| format!("{t}: TLS: {e}"))?;
        while tls.is_handshaking() {
            tls.complete_io(&mut sock)
                .map_err(|e| format!("{t}: TLS handshake refused: {e}"))?;
        }
        sock.set_read_timeout(None)
            .and_then(|()| sock.set_write_timeout(Some(write_timeout)))
            .map_err(|e| io("socket timeouts", e))?;
        Ok(Conn::Tls(Box::new(StreamOwned::new(tls, sock))))
    }
}

/// The CA certificates of `path` (PEM).
fn read_roots(path: &std::path::Path) -> Result<RootCertStore, SyslogError> {
    let err = |reason: String| SyslogError::Ca {
        path: path.to_owned(),
        reason,
    };
    let pem = crate::store::fsutil::read_input(path, crate::store::fsutil::CONFIG_MAX)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| err(format!("certificate {}: {e}", i + 1)))?;
        roots
            .add(cert)
            .map_err(|e| err(format!("certificate {}: {e}", i + 1)))?;
    }
    if roots.is_empty() {
        return Err(err(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(roots)
}

/// An open connection.
pub(super) enum Conn {
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    /// Writes all of `bytes` (and flushes TLS records to the socket).
    pub(super) fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(bytes),
            Conn::Tls(s) => {
                s.write_all(bytes)?;
                s.flush()
            }
        }
    }

    /// Whether the server is still there: a syslog server sends nothing, so a readable
    /// socket means it closed (end of stream) or reset the connection. TLS data the server
    /// sends (session tickets, a close_notify) is read and handled by rustls. Checked before
    /// each batch, so a server that went away is noticed before a batch goes into the void.
    /// What a server does send is read and dropped up to [`UNEXPECTED_MAX`] bytes a check;
    /// one that sends more is no syslog receiver (or a flood), and the connection is given up
    /// rather than read for ever on the sender's core.
    pub(super) fn check_open(&mut self) -> Result<(), String> {
        let sock = match self {
            Conn::Tcp(s) => &*s,
            Conn::Tls(s) => s.get_ref(),
        };
        sock.set_nonblocking(true)
            .map_err(|e| format!("cannot poll the connection: {e}"))?;
        let mut scratch = [0u8; 4096];
        let mut unexpected = 0usize;
        let seen = loop {
            let r = match self {
                Conn::Tcp(s) => s.read(&mut scratch),
                Conn::Tls(s) => s.read(&mut scratch),
            };
            match r {
                Ok(0) => break Err("the server closed the connection".to_owned()),
                Ok(n) => {
                    unexpected += n;
                    if unexpected > UNEXPECTED_MAX {
                        break Err(format!(
                            "the server keeps sending data (more than {UNEXPECTED_MAX} bytes \
                             since the last batch; a syslog receiver sends nothing)"
                        ));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => break Err(format!("the connection failed: {e}")),
            }
        };
        let sock = match self {
            Conn::Tcp(s) => &*s,
            Conn::Tls(s) => s.get_ref(),
        };
        sock.set_nonblocking(false)
            .map_err(|e| format!("cannot poll the connection: {e}"))?;
        seen
    }
}
