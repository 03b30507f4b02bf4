//! The remote store: object_store's S3 client, driven from the shipping thread's own runtime.
//!
//! Every segment is uploaded as a conditional create (`If-None-Match: *`) carrying its sealed
//! SHA-256 twice: as the S3 checksum (`x-amz-checksum-sha256`, which the server checks
//! against the bytes it received) and as the object metadata `sha256` (hex, as in the chain),
//! which a HEAD returns. The file is read and hashed once, and sent only if it still hashes
//! to the sealed SHA-256. An upload counts once the server vouched for it: a single PUT by
//! its response's checksum when the server answers with one ([`super::echo`]: it checked the
//! bytes it stored against that checksum), otherwise, and after every multipart upload, by a
//! HEAD showing the size and that SHA-256.
//! An existing object is never overwritten: if a create finds one (a re-upload after a
//! crash), its bytes are read back and hashed, and it is accepted only when they are the
//! sealed ones and its metadata says so; its `sha256` metadata alone proves nothing (it is the
//! client's own header, kept whatever the server stored). Anything else is refused, but for
//! the sealed bytes left without their metadata by a request cut short, which are created
//! again ([`check`]).
//! Large segments go up in parts; S3's multipart completion has no conditional form in the
//! client, so a multipart upload starts only after a HEAD found no object (one shipper per
//! gateway prefix holds `ship.lock`, so nothing else writes the key meanwhile).
//! [`Remote::upload_all`] keeps a few uploads in flight at once (the file reads and hashes on
//! the runtime's blocking threads), so the client's work overlaps the server's.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, Checksum};
use object_store::path::Path as Key;
use object_store::{
    Attribute, Attributes, GetOptions, ObjectStore, ObjectStoreExt as _, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, RetryConfig,
};
use sha2::Digest;

use super::config::ShipConfig;
use super::echo::{EchoConnector, Limits, ServerChecksum};
use crate::store::fsutil::hex;

/// The metadata key carrying the sealed SHA-256 (header `x-amz-meta-sha256`).
pub const SHA256_META: &str = "sha256";
/// Size of a multipart upload's parts (S3 wants at least 5 MiB but for the last).
pub const PART_BYTES: usize = 8 << 20;
/// Uploads [`Remote::upload_all`] keeps in flight: the client reads and hashes the next file
/// while the server stores the last. Bounds the memory too: a single PUT holds its file (below
/// the multipart threshold, 32 MiB by default), a multipart upload one part.
pub const IN_FLIGHT: usize = 3;

/// What [`Remote::upload_all`] reports as it goes.
#[derive(Debug)]
pub enum Step {
    /// A job finished, with its outcome.
    Done(Job, Result<Uploaded, RemoteError>),
    /// Another `every` has passed (the uploads in flight may wait on a stalled server).
    Tick,
}

/// What can go wrong talking to the bucket.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The client could not be built from the settings.
    #[error("S3 client for {target}: {cause}")]
    Client {
        /// `s3://BUCKET`.
        target: String,
        /// The cause.
        cause: object_store::Error,
    },
    /// A request failed (after the client's own retries); said with its causes (a refused
    /// connection, a timeout), which the client's own text leaves out.
    #[error("{op} {key}: {}", crate::causes::with_causes(cause))]
    Request {
        /// What was being done.
        op: &'static str,
        /// The object key.
        key: String,
        /// The cause.
        cause: object_store::Error,
    },
    /// The local file could not be read (a compaction may have replaced it meanwhile).
    #[error("{path}: read for upload: {cause}")]
    Local {
        /// The file.
        path: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// The local file is not what the chain sealed: it is not shipped.
    #[error("{path}: SHA-256 {found} differs from the sealed {sealed}; not shipped (run `xdp-audit verify`)")]
    LocalChanged {
        /// The file.
        path: String,
        /// What the chain says.
        sealed: String,
        /// What the file hashes to.
        found: String,
    },
    /// The local file's size is not what the chain sealed (a file grown, even sparse to a
    /// terabyte, is never read into memory): it is not shipped.
    #[error("{path}: {found} bytes, but the chain sealed {sealed}; not shipped (run `xdp-audit verify`)")]
    LocalSize {
        /// The file.
        path: String,
        /// The sealed size.
        sealed: u64,
        /// The size found (at least, for a file that grew while read).
        found: u64,
    },
    /// An object already holds the key with other content: it is left alone.
    #[error("{key}: the bucket holds another object under this key ({found}); it is never overwritten: move it away or ship to another prefix")]
    Conflict {
        /// The key.
        key: String,
        /// What the server reported.
        found: String,
    },
    /// An upload task ended without an answer (it panicked or was cancelled).
    #[error("{key}: the upload task ended without an answer: {cause}")]
    Task {
        /// The key.
        key: String,
        /// What the runtime says.
        cause: String,
    },
    /// After the upload, the server reports something else than what was sent.
    #[error(
        "{key}: uploaded but the server reports {found}, expected size {size} and SHA-256 {sha256}"
    )]
    Mismatch {
        /// The key.
        key: String,
        /// Expected size.
        size: u64,
        /// Expected SHA-256.
        sha256: String,
        /// What the server reported.
        found: String,
    },
}

impl RemoteError {
    /// The local file is gone (compacted or pruned meanwhile): the chain is read again.
    pub fn is_local_gone(&self) -> bool {
        matches!(self, RemoteError::Local { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound)
    }

    /// A fault of this one segment or key (its file damaged or unreadable, another object
    /// under its key, the server storing other bytes), not of the bucket or the link: the
    /// other segments are still shipped.
    pub fn is_one_object(&self) -> bool {
        matches!(
            self,
            RemoteError::Local { .. }
                | RemoteError::LocalChanged { .. }
                | RemoteError::LocalSize { .. }
                | RemoteError::Conflict { .. }
                | RemoteError::Mismatch { .. }
        )
    }
}

/// What a HEAD reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Size in bytes.
    pub size: u64,
    /// The `sha256` metadata, if any.
    pub sha256: Option<String>,
}

impl std::fmt::Display for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "size {} and SHA-256 {}",
            self.size,
            self.sha256.as_deref().unwrap_or("(none)")
        )
    }
}

/// How an upload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uploaded {
    /// Created now.
    Created,
    /// The identical object was already there (a re-upload after a crash).
    AlreadyThere,
}

/// One sealed segment to upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The object key.
    pub key: String,
    /// The local file.
    pub path: PathBuf,
    /// Its sealed size.
    pub size: u64,
    /// Its sealed SHA-256 (hex).
    pub sha256: String,
}

/// A connection to the bucket.
pub struct Remote {
    store: Arc<AmazonS3>,
    rt: tokio::runtime::Runtime,
}

/// Installs ring as rustls' process-wide crypto provider (once; aws-lc-rs is not built in).
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn req<'a>(op: &'static str, key: &'a str) -> impl FnOnce(object_store::Error) -> RemoteError + 'a {
    move |cause| RemoteError::Request {
        op,
        key: key.to_owned(),
        cause,
    }
}

impl Remote {
    /// Builds the client for `cfg` with its own single-threaded runtime. Its
    /// `request_timeout` bounds each HTTP request and its `idle_timeout` each silence of the
    /// server (a stalled server must not hold the shipper); redirects are failures
    /// ([`super::echo`]).
    pub fn new(cfg: &ShipConfig) -> Result<Self, RemoteError> {
        let request_timeout = cfg.request_timeout;
        let limits = Limits {
            request: request_timeout,
            connect: Duration::from_secs(5),
            idle: cfg.idle_timeout,
            allow_http: cfg
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
        };
        install_crypto();
        let c = &cfg.credentials;
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&cfg.target.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(c.access_key_id.expose())
            .with_secret_access_key(c.secret_access_key.expose())
            .with_checksum_algorithm(Checksum::SHA256)
            // The body's integrity rides on the checksum header, which is signed with the
            // other headers and checked by the server against the bytes: signing the payload
            // too would have client and server hash every byte once more for nothing.
            .with_unsigned_payload(true)
            .with_http_connector(EchoConnector(limits))
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: request_timeout,
                ..RetryConfig::default()
            });
        if let Some(t) = &c.session_token {
            b = b.with_token(t.expose());
        }
        if let Some(e) = &cfg.endpoint {
            // S3-compatible servers answer path-style requests; plain http only when the
            // operator named an http:// endpoint.
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let client = |cause| RemoteError::Client {
            target: format!("s3://{}", cfg.target.bucket),
            cause,
        };
        let store = b.build().map_err(client)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                client(object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(e),
                })
            })?;
        Ok(Self {
            store: Arc::new(store),
            rt,
        })
    }

    /// Size and `sha256` metadata of `key`, `None` if there is no such object.
    pub fn stat(&self, key: &str) -> Result<Option<Stat>, RemoteError> {
        self.rt.block_on(stat(&self.store, key))
    }

    /// The SHA-256 (hex) of the bytes the bucket holds under `key`, read back whole.
    pub fn read_sha256(&self, key: &str) -> Result<String, RemoteError> {
        self.rt.block_on(stored_sha256(&self.store, key))
    }

    /// Deletes `key` (absent is fine).
    pub fn delete(&self, key: &str) -> Result<(), RemoteError> {
        let k = Key::from(key);
        match self.rt.block_on(self.store.delete(&k)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(req("DELETE", key)(e)),
        }
    }

    /// Uploads one segment and verifies it there. Files of at least `multipart_bytes` go up
    /// in parts.
    pub fn upload(&self, job: &Job, multipart_bytes: u64) -> Result<Uploaded, RemoteError> {
        self.rt
            .block_on(upload(self.store.clone(), job.clone(), multipart_bytes))
    }

    /// Uploads `jobs` in their order, [`IN_FLIGHT`] at a time, each verified; `step` gets
    /// every finished job with its outcome as it finishes, and [`Step::Tick`] every `every`
    /// (finished jobs or not: a stalled server holds a request up to its timeout), and says
    /// whether to start more (`false`: stop, finishing what is in flight; at a tick, also
    /// dropping what is in flight, which a stalled server would hold past a stop).
    pub fn upload_all(
        &self,
        jobs: impl IntoIterator<Item = Job>,
        multipart_bytes: u64,
        every: Duration,
        mut step: impl FnMut(Step) -> bool,
    ) {
        let mut jobs = jobs.into_iter();
        self.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            let mut flying = std::collections::HashMap::new();
            // What `step` last said: go on. (Not "jobs left": with all of them started, a tick
            // that aborted what was in flight lost the pass's last uploads.)
            let mut go = true;
            let mut ticked = tokio::time::Instant::now();
            loop {
                if ticked.elapsed() >= every {
                    ticked = tokio::time::Instant::now();
                    go &= step(Step::Tick);
                    if !go {
                        return; // the set dropped: its uploads aborted, none acknowledged
                    }
                }
                while go && set.len() < IN_FLIGHT {
                    let Some(job) = jobs.next() else {
                        break;
                    };
                    let task = upload(self.store.clone(), job.clone(), multipart_bytes);
                    flying.insert(set.spawn(task).id(), job);
                }
                // `join_next_with_id` is cancel-safe: a timeout loses no finished task.
                let wait = every.saturating_sub(ticked.elapsed());
                let Ok(next) = tokio::time::timeout(wait, set.join_next_with_id()).await else {
                    continue; // the tick is due
                };
                let (id, result) = match next {
                    None => return,
                    Some(Ok((id, r))) => (id, Ok(r)),
                    Some(Err(e)) => (e.id(), Err(e.to_string())),
                };
                let Some(job) = flying.remove(&id) else {
                    continue;
                };
                let result = result.unwrap_or_else(|cause| {
                    Err(RemoteError::Task {
                        key: job.key.clone(),
                        cause,
                    })
                });
                go &= step(Step::Done(job, result));
            }
        });
    }

    /// Uploads small bytes (the manifest) under `key` as a conditional create; an identical
    /// object already there counts as done.
    pub fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<Uploaded, RemoteError> {
        let job = Job {
            key: key.to_owned(),
            path: PathBuf::new(),
            size: bytes.len() as u64,
            sha256: hex(&sha2::Sha256::digest(&bytes)),
        };
        self.rt.block_on(async {
            match create_or_find(&self.store, key, bytes.into(), &job.sha256).await? {
                None => Ok(Uploaded::AlreadyThere),
                Some(put) => vouched(&self.store, &job, &put).await,
            }
        })
    }
}

/// The object's metadata carrying the sealed SHA-256.
fn attributes(sha256: &str) -> Attributes {
    let mut a = Attributes::new();
    a.insert(
        Attribute::Metadata(SHA256_META.into()),
        sha256.to_owned().into(),
    );
    a
}

/// A conditional create carrying the sealed SHA-256 as metadata.
fn create(sha256: &str) -> PutOptions {
    PutOptions {
        mode: PutMode::Create,
        attributes: attributes(sha256),
        ..PutOptions::default()
    }
}

async fn stat(store: &AmazonS3, key: &str) -> Result<Option<Stat>, RemoteError> {
    let opts = GetOptions {
        head: true,
        ..GetOptions::default()
    };
    match store.get_opts(&Key::from(key), opts).await {
        Ok(r) => Ok(Some(Stat {
            size: r.meta.size,
            sha256: r
                .attributes
                .get(&Attribute::Metadata(SHA256_META.into()))
                .map(|v| v.to_string()),
        })),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(req("HEAD", key)(e)),
    }
}

/// Checks an existing object against what was sealed: `Some` if it holds the sealed size,
/// SHA-256 metadata and bytes, `None` if there is no object (any more),
/// [`RemoteError::Conflict`] otherwise. The bytes are read back and hashed
/// ([`stored_sha256`]): the metadata is only what a client sent, and a server that stored
/// other bytes (and answered a PUT with their checksum, refused as
/// [`RemoteError::Mismatch`]) keeps it all the same.
///
/// One object is taken away instead of refused: the sealed bytes without their `sha256`
/// metadata. A server that renames the body into place before it saves the metadata (s3s-fs
/// does) leaves exactly that when the client dies between the two; only when its bytes are
/// the sealed ones is the object deleted, for the caller to create again with its metadata
/// (one shipper per prefix holds `ship.lock`).
async fn check(
    store: &AmazonS3,
    key: &str,
    size: u64,
    sha256: &str,
) -> Result<Option<Stat>, RemoteError> {
    let Some(s) = stat(store, key).await? else {
        return Ok(None);
    };
    let conflict = |found: String| RemoteError::Conflict {
        key: key.to_owned(),
        found,
    };
    let meta_ok = match s.sha256.as_deref() {
        Some(m) if m == sha256 => true,
        None => false,
        Some(_) => return Err(conflict(s.to_string())),
    };
    if s.size != size {
        return Err(conflict(s.to_string()));
    }
    let stored = stored_sha256(store, key).await?;
    if stored != sha256 {
        return Err(conflict(format!(
            "{s}, but the bytes it holds hash to {stored}: the stored object differs from the sealed segment"
        )));
    }
    if meta_ok {
        return Ok(Some(s));
    }
    tracing::warn!(%key, "the bucket held this segment's bytes without their SHA-256 metadata (a request cut short); it is created again");
    match store.delete(&Key::from(key)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(req("DELETE", key)(e)),
    }
}

/// The SHA-256 (hex) of the bytes the bucket holds under `key`, read back in chunks.
async fn stored_sha256(store: &AmazonS3, key: &str) -> Result<String, RemoteError> {
    use futures_util::StreamExt as _;
    let get = store.get(&Key::from(key)).await.map_err(req("GET", key))?;
    let mut body = get.into_stream();
    let mut hasher = sha2::Sha256::new();
    while let Some(chunk) = body.next().await {
        hasher.update(chunk.map_err(req("GET", key))?);
    }
    Ok(hex(&hasher.finalize()))
}

/// A conditional create of `payload` under `key`: `Some` with the server's answer when it
/// created the object, `None` when the identical object was already there (a re-upload after
/// a crash). Whatever else holds the key is refused or, if [`check`] took it away, created
/// again once.
async fn create_or_find(
    store: &AmazonS3,
    key: &str,
    payload: bytes::Bytes,
    sha256: &str,
) -> Result<Option<object_store::PutResult>, RemoteError> {
    let k = Key::from(key);
    let size = payload.len() as u64;
    let mut taken_away = false;
    loop {
        match store
            .put_opts(&k, payload.clone().into(), create(sha256))
            .await
        {
            Ok(put) => return Ok(Some(put)),
            Err(object_store::Error::AlreadyExists { .. }) => {
                if check(store, key, size, sha256).await?.is_some() {
                    return Ok(None);
                }
                if taken_away {
                    // Reported as existing, yet gone twice: the next pass creates it.
                    return Err(RemoteError::Mismatch {
                        key: key.to_owned(),
                        size,
                        sha256: sha256.to_owned(),
                        found: "no object after a refused create".into(),
                    });
                }
                taken_away = true;
            }
            // A server may refuse a conditional create before it has read the body and drop
            // the connection (s3s-fs does for a body of a few MB), which reads as a failed
            // request: the identical object may well be there, and is taken if it is.
            Err(e) => {
                return match check(store, key, size, sha256).await {
                    Ok(Some(_)) => Ok(None),
                    Err(conflict @ RemoteError::Conflict { .. }) => Err(conflict),
                    _ => Err(req("PUT", key)(e)),
                };
            }
        }
    }
}

/// A HEAD must show the sealed size and SHA-256.
async fn verify_by_head(store: &AmazonS3, job: &Job) -> Result<(), RemoteError> {
    match stat(store, &job.key).await? {
        Some(s) if s.size == job.size && s.sha256.as_deref() == Some(job.sha256.as_str()) => Ok(()),
        found => Err(RemoteError::Mismatch {
            key: job.key.clone(),
            size: job.size,
            sha256: job.sha256.clone(),
            found: found.map_or_else(|| "no object".into(), |s| s.to_string()),
        }),
    }
}

/// Uploads one segment and verifies it (see the module docs).
async fn upload(
    store: Arc<AmazonS3>,
    job: Job,
    multipart_bytes: u64,
) -> Result<Uploaded, RemoteError> {
    if job.size >= multipart_bytes {
        if check(&store, &job.key, job.size, &job.sha256)
            .await?
            .is_some()
        {
            return Ok(Uploaded::AlreadyThere);
        }
        upload_parts(&store, &job).await?;
        verify_by_head(&store, &job).await?;
        return Ok(Uploaded::Created);
    }
    // Reading and hashing are the upload's own CPU work: off the runtime's thread, so the
    // uploads in flight keep moving meanwhile.
    let (path, sha256, size) = (job.path.clone(), job.sha256.clone(), job.size);
    let bytes = tokio::task::spawn_blocking(move || read_sealed(&path, &sha256, size))
        .await
        .map_err(|e| RemoteError::Task {
            key: job.key.clone(),
            cause: e.to_string(),
        })??;
    match create_or_find(&store, &job.key, bytes.into(), &job.sha256).await? {
        None => Ok(Uploaded::AlreadyThere),
        Some(put) => vouched(&store, &job, &put).await,
    }
}

/// Whether the server vouched for what a create `put` stored under `job`'s key: by the
/// checksum its response reports, else by a HEAD ([`verify_by_head`]).
async fn vouched(
    store: &AmazonS3,
    job: &Job,
    put: &object_store::PutResult,
) -> Result<Uploaded, RemoteError> {
    match put.extensions.get::<ServerChecksum>() {
        // The server checked what it stored against the sealed SHA-256 (which the sent bytes
        // were just hashed to): verified, no HEAD needed.
        Some(ServerChecksum(c)) if *c == job.sha256 => Ok(Uploaded::Created),
        Some(ServerChecksum(c)) => Err(RemoteError::Mismatch {
            key: job.key.clone(),
            size: job.size,
            sha256: job.sha256.clone(),
            found: format!("a stored object of SHA-256 {c} (its PUT response)"),
        }),
        None => verify_by_head(store, job).await.map(|()| Uploaded::Created),
    }
}

async fn upload_parts(store: &AmazonS3, job: &Job) -> Result<(), RemoteError> {
    let (key, path) = (job.key.as_str(), job.path.as_path());
    let local = |cause| RemoteError::Local {
        path: path.display().to_string(),
        cause,
    };
    let wrong_size = |found| RemoteError::LocalSize {
        path: path.display().to_string(),
        sealed: job.size,
        found,
    };
    // Never a blocking open: a FIFO in a segment's place would hold the upload forever.
    let file = crate::store::fsutil::open_read(path).map_err(|e| local(e.into()))?;
    let len = file.metadata().map_err(local)?.len();
    if len != job.size {
        return Err(wrong_size(len));
    }
    // A file that grows while read is read one byte past its sealed size, no further.
    let mut file = file.take(job.size.saturating_add(1));
    let mut total = 0u64;
    let opts = PutMultipartOptions {
        attributes: attributes(&job.sha256),
        ..PutMultipartOptions::default()
    };
    let mut upload = store
        .put_multipart_opts(&Key::from(key), opts)
        .await
        .map_err(req("CreateMultipartUpload", key))?;
    let mut hasher = sha2::Sha256::new();
    let result = async {
        loop {
            let mut part = vec![0u8; PART_BYTES];
            let mut filled = 0;
            while filled < PART_BYTES {
                let n = file.read(&mut part[filled..]).map_err(local)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            part.truncate(filled);
            total += filled as u64;
            if total > job.size {
                return Err(wrong_size(total));
            }
            hasher.update(&part);
            upload
                .put_part(PutPayload::from(part))
                .await
                .map_err(req("UploadPart", key))?;
            if filled < PART_BYTES {
                break;
            }
        }
        let found = hex(&hasher.finalize());
        if found != job.sha256 {
            return Err(RemoteError::LocalChanged {
                path: path.display().to_string(),
                sealed: job.sha256.clone(),
                found,
            });
        }
        upload
            .complete()
            .await
            .map_err(req("CompleteMultipartUpload", key))
    }
    .await;
    if result.is_err() {
        // Best effort: a lifecycle rule for incomplete uploads collects what this misses.
        let _ = upload.abort().await;
    }
    result.map(drop)
}

/// The file's bytes, checked against the size and SHA-256 the chain sealed; never more than
/// the sealed size is read.
fn read_sealed(path: &Path, sha256: &str, size: u64) -> Result<Vec<u8>, RemoteError> {
    use crate::store::fsutil::{read_input, InputError};
    let bytes = read_input(path, size).map_err(|e| match e {
        InputError::TooLarge { .. } => RemoteError::LocalSize {
            path: path.display().to_string(),
            sealed: size,
            found: std::fs::metadata(path).map_or(size + 1, |m| m.len()),
        },
        e => RemoteError::Local {
            path: path.display().to_string(),
            cause: e.into(),
        },
    })?;
    if bytes.len() as u64 != size {
        return Err(RemoteError::LocalSize {
            path: path.display().to_string(),
            sealed: size,
            found: bytes.len() as u64,
        });
    }
    let found = hex(&sha2::Sha256::digest(&bytes));
    if found != sha256 {
        return Err(RemoteError::LocalChanged {
            path: path.display().to_string(),
            sealed: sha256.to_owned(),
            found,
        });
    }
    Ok(bytes)
}
