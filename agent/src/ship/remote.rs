//! The remote store: object_store's S3 client, driven from the shipping thread's own runtime.
//!
//! Every segment is uploaded as a conditional create (`If-None-Match: *`) carrying its sealed
//! SHA-256 twice: as the S3 checksum (`x-amz-checksum-sha256`, which the server checks
//! against the bytes it received) and as the object metadata `sha256` (hex, as in the chain),
//! which a HEAD returns. The upload counts only once a HEAD shows the size and that SHA-256.
//! An existing object is never overwritten: if a create finds one (a re-upload after a
//! crash), it is accepted when its size and SHA-256 are the sealed ones and refused otherwise.
//! Large segments go up in parts; S3's multipart completion has no conditional form in the
//! client, so a multipart upload starts only after a HEAD found no object (one shipper per
//! gateway prefix holds `ship.lock`, so nothing else writes the key meanwhile).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, Checksum};
use object_store::path::Path as Key;
use object_store::{
    Attribute, Attributes, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt as _, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, RetryConfig,
};
use sha2::Digest;

use super::config::ShipConfig;
use crate::store::fsutil::hex;

/// The metadata key carrying the sealed SHA-256 (header `x-amz-meta-sha256`).
pub const SHA256_META: &str = "sha256";
/// Size of a multipart upload's parts (S3 wants at least 5 MiB but for the last).
pub const PART_BYTES: usize = 8 << 20;

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
    /// A request failed (after the client's own retries).
    #[error("{op} {key}: {cause}")]
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
    /// An object already holds the key with other content: it is left alone.
    #[error("{key}: the bucket holds another object under this key ({found}); it is never overwritten: move it away or ship to another prefix")]
    Conflict {
        /// The key.
        key: String,
        /// What the server reported.
        found: String,
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

/// A connection to the bucket.
pub struct Remote {
    store: Arc<AmazonS3>,
    rt: tokio::runtime::Runtime,
}

/// Installs ring as rustls' process-wide crypto provider (once; aws-lc-rs is not built in).
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Remote {
    /// Builds the client for `cfg` with its own single-threaded runtime. `request_timeout`
    /// bounds each HTTP request (a stalled server must not hold the shipper forever).
    pub fn new(cfg: &ShipConfig, request_timeout: Duration) -> Result<Self, RemoteError> {
        install_crypto();
        let c = &cfg.credentials;
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&cfg.target.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(c.access_key_id.expose())
            .with_secret_access_key(c.secret_access_key.expose())
            .with_checksum_algorithm(Checksum::SHA256)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: request_timeout,
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(request_timeout)
                    .with_connect_timeout(Duration::from_secs(5)),
            );
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
        let store = b.build().map_err(|cause| RemoteError::Client {
            target: format!("s3://{}", cfg.target.bucket),
            cause,
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Client {
                target: format!("s3://{}", cfg.target.bucket),
                cause: object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(e),
                },
            })?;
        Ok(Self {
            store: Arc::new(store),
            rt,
        })
    }

    fn req<'a>(
        op: &'static str,
        key: &'a str,
    ) -> impl FnOnce(object_store::Error) -> RemoteError + 'a {
        move |cause| RemoteError::Request {
            op,
            key: key.to_owned(),
            cause,
        }
    }

    /// Size and `sha256` metadata of `key`, `None` if there is no such object.
    pub fn stat(&self, key: &str) -> Result<Option<Stat>, RemoteError> {
        let opts = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        let k = Key::from(key);
        match self.rt.block_on(self.store.get_opts(&k, opts)) {
            Ok(r) => Ok(Some(Stat {
                size: r.meta.size,
                sha256: r
                    .attributes
                    .get(&Attribute::Metadata(SHA256_META.into()))
                    .map(|v| v.to_string()),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::req("HEAD", key)(e)),
        }
    }

    /// Deletes `key` (absent is fine).
    pub fn delete(&self, key: &str) -> Result<(), RemoteError> {
        let k = Key::from(key);
        match self.rt.block_on(self.store.delete(&k)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::req("DELETE", key)(e)),
        }
    }

    fn attributes(sha256: &str) -> Attributes {
        let mut a = Attributes::new();
        a.insert(
            Attribute::Metadata(SHA256_META.into()),
            sha256.to_owned().into(),
        );
        a
    }

    /// Checks an existing object against what was sealed.
    fn check(&self, key: &str, size: u64, sha256: &str) -> Result<Option<Stat>, RemoteError> {
        let stat = self.stat(key)?;
        match &stat {
            Some(s) if s.size == size && s.sha256.as_deref() == Some(sha256) => Ok(stat),
            Some(s) => Err(RemoteError::Conflict {
                key: key.to_owned(),
                found: s.to_string(),
            }),
            None => Ok(None),
        }
    }

    /// Uploads the file at `path` (sealed with `sha256`, `size` bytes) to `key` and verifies it
    /// there. Files of at least `multipart_bytes` go up in parts.
    pub fn upload(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        sha256: &str,
        multipart_bytes: u64,
    ) -> Result<Uploaded, RemoteError> {
        let outcome = if size >= multipart_bytes {
            if self.check(key, size, sha256)?.is_some() {
                return Ok(Uploaded::AlreadyThere);
            }
            self.upload_parts(key, path, sha256)?;
            Uploaded::Created
        } else {
            let bytes = read_sealed(path, sha256)?;
            let opts = PutOptions {
                mode: PutMode::Create,
                attributes: Self::attributes(sha256),
                ..PutOptions::default()
            };
            let k = Key::from(key);
            match self
                .rt
                .block_on(self.store.put_opts(&k, bytes.into(), opts))
            {
                Ok(_) => Uploaded::Created,
                Err(object_store::Error::AlreadyExists { .. }) => {
                    if self.check(key, size, sha256)?.is_none() {
                        // Reported as existing, yet gone: the next pass creates it.
                        return Err(RemoteError::Mismatch {
                            key: key.to_owned(),
                            size,
                            sha256: sha256.to_owned(),
                            found: "no object after a refused create".into(),
                        });
                    }
                    return Ok(Uploaded::AlreadyThere);
                }
                Err(e) => return Err(Self::req("PUT", key)(e)),
            }
        };
        match self.stat(key)? {
            Some(s) if s.size == size && s.sha256.as_deref() == Some(sha256) => Ok(outcome),
            found => Err(RemoteError::Mismatch {
                key: key.to_owned(),
                size,
                sha256: sha256.to_owned(),
                found: found.map_or_else(|| "no object".into(), |s| s.to_string()),
            }),
        }
    }

    /// Uploads small bytes (the manifest) under `key` as a conditional create; an identical
    /// object already there counts as done.
    pub fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<Uploaded, RemoteError> {
        let sha256 = hex(&sha2::Sha256::digest(&bytes));
        let size = bytes.len() as u64;
        let opts = PutOptions {
            mode: PutMode::Create,
            attributes: Self::attributes(&sha256),
            ..PutOptions::default()
        };
        let k = Key::from(key);
        match self
            .rt
            .block_on(self.store.put_opts(&k, bytes.into(), opts))
        {
            Ok(_) => Ok(Uploaded::Created),
            Err(object_store::Error::AlreadyExists { .. }) => self
                .check(key, size, &sha256)
                .map(|_| Uploaded::AlreadyThere),
            Err(e) => Err(Self::req("PUT", key)(e)),
        }
    }

    fn upload_parts(&self, key: &str, path: &Path, sha256: &str) -> Result<(), RemoteError> {
        let local = |cause| RemoteError::Local {
            path: path.display().to_string(),
            cause,
        };
        let mut file = std::fs::File::open(path).map_err(local)?;
        let opts = PutMultipartOptions {
            attributes: Self::attributes(sha256),
            ..PutMultipartOptions::default()
        };
        let k = Key::from(key);
        let mut upload = self
            .rt
            .block_on(self.store.put_multipart_opts(&k, opts))
            .map_err(Self::req("CreateMultipartUpload", key))?;
        let mut hasher = sha2::Sha256::new();
        let result = (|| {
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
                hasher.update(&part);
                self.rt
                    .block_on(upload.put_part(PutPayload::from(part)))
                    .map_err(Self::req("UploadPart", key))?;
                if filled < PART_BYTES {
                    break;
                }
            }
            let found = hex(&hasher.finalize());
            if found != sha256 {
                return Err(RemoteError::LocalChanged {
                    path: path.display().to_string(),
                    sealed: sha256.to_owned(),
                    found,
                });
            }
            self.rt
                .block_on(upload.complete())
                .map_err(Self::req("CompleteMultipartUpload", key))
        })();
        if result.is_err() {
            // Best effort: a lifecycle rule for incomplete uploads collects what this misses.
            let _ = self.rt.block_on(upload.abort());
        }
        result.map(drop)
    }
}

/// The file's bytes, checked against the SHA-256 the chain sealed.
fn read_sealed(path: &Path, sha256: &str) -> Result<Vec<u8>, RemoteError> {
    let bytes = std::fs::read(path).map_err(|cause| RemoteError::Local {
        path: path.display().to_string(),
        cause,
    })?;
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
