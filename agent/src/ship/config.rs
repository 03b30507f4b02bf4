//! Where and as whom segments are shipped: the `--ship*` flags (also TOML keys of `run`), the
//! credentials file and the standard AWS environment variables.
//!
//! Secrets live in [`Secret`], whose `Debug` and `Display` print a placeholder, so no log line,
//! error or `{:?}` of a config can carry them.

use std::path::{Path, PathBuf};

/// Environment variables read when no credentials file is given (the AWS SDKs' names).
pub const ENV_ACCESS_KEY: &str = "AWS_ACCESS_KEY_ID";
/// See [`ENV_ACCESS_KEY`].
pub const ENV_SECRET_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// See [`ENV_ACCESS_KEY`].
pub const ENV_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// Region when `--ship-region` is not given (then `AWS_DEFAULT_REGION`, then `us-east-1`).
pub const ENV_REGION: &str = "AWS_REGION";
/// See [`ENV_REGION`].
pub const ENV_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
/// Endpoint when `--ship-endpoint` is not given.
pub const ENV_ENDPOINT: &str = "AWS_ENDPOINT_URL";

/// Why the shipping settings cannot be used; each names the flag or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ShipConfigError {
    /// `--ship` is not `s3://BUCKET[/PREFIX]`.
    #[error("--ship {given:?}: {reason} (expected s3://BUCKET/PREFIX)")]
    Target {
        /// What was given.
        given: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// `--gateway-id` holds a character that cannot stand in a Hive partition value.
    #[error("--gateway-id {0:?}: use letters, digits, '.', '_' and '-' only (it becomes the gateway=<id> part of every object key)")]
    GatewayId(String),
    /// The host name could not be read for the default gateway id.
    #[error("cannot read the host name for the default --gateway-id ({0}); give --gateway-id")]
    HostName(std::io::Error),
    /// The credentials file could not be read or is readable by others.
    #[error("--ship-credentials {path}: {reason}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A line of the credentials file is not understood.
    #[error("--ship-credentials {path} line {line}: {reason}")]
    CredentialsLine {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No access key anywhere.
    #[error("no S3 credentials: give --ship-credentials FILE (aws_access_key_id / aws_secret_access_key lines, mode 0600) or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")]
    NoCredentials,
    /// The endpoint is not an http(s) URL.
    #[error("--ship-endpoint {0:?}: expected http://HOST:PORT or https://HOST[:PORT]")]
    Endpoint(String),
    /// The endpoint carries a user and password: S3 does not take them from there, and the
    /// URL is in logs, `status.json` and the process list (shown with them cut out).
    #[error("--ship-endpoint {0:?}: a user or password in the URL is not sent to S3 and would be logged; give the keys with --ship-credentials FILE")]
    EndpointCredentials(String),
}

/// A secret string: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for the one place that signs requests with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// An access key pair (and session token) for SigV4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// `aws_access_key_id` (not secret on its own, but kept out of logs all the same).
    pub access_key_id: Secret,
    /// `aws_secret_access_key`.
    pub secret_access_key: Secret,
    /// `aws_session_token`, for temporary credentials.
    pub session_token: Option<Secret>,
}

/// Bucket and key prefix from `--ship s3://BUCKET/PREFIX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The bucket.
    pub bucket: String,
    /// The key prefix without slashes at either end (may be empty).
    pub prefix: String,
}

/// Parses `s3://BUCKET[/PREFIX]`.
pub fn parse_target(s: &str) -> Result<Target, ShipConfigError> {
    let err = |reason| ShipConfigError::Target {
        given: s.to_owned(),
        reason,
    };
    let rest = s
        .strip_prefix("s3://")
        .ok_or_else(|| err("not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(err("no bucket name"));
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(err(
            "a bucket name has lower-case letters, digits, '-' and '.' only",
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
        return Err(err("the prefix has an empty, '.' or '..' part"));
    }
    Ok(Target {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
    })
}

/// Checks a gateway id (it becomes a path part and a Hive partition value).
pub fn check_gateway_id(id: &str) -> Result<String, ShipConfigError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(id.to_owned())
    } else {
        Err(ShipConfigError::GatewayId(id.to_owned()))
    }
}

/// The host name, the default gateway id.
pub fn host_name() -> Result<String, ShipConfigError> {
    let raw =
        std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(ShipConfigError::HostName)?;
    check_gateway_id(raw.trim())
}

/// Reads an AWS-style credentials file: `key = value` lines (`aws_access_key_id`,
/// `aws_secret_access_key`, optional `aws_session_token`), `#`/`;` comments, and optionally a
/// `[default]` section (other sections are ignored). Refused if its group or others may read it.
pub fn read_credentials_file(path: &Path) -> Result<Credentials, ShipConfigError> {
    crate::privilege::check_secret_file(path).map_err(|e| ShipConfigError::Credentials {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let text = crate::store::fsutil::read_input_text(path, crate::store::fsutil::KEY_MAX).map_err(
        |e| ShipConfigError::Credentials {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    )?;
    parse_credentials(path, &text)
}

/// Parses the text of a credentials file (see [`read_credentials_file`]).
pub fn parse_credentials(path: &Path, text: &str) -> Result<Credentials, ShipConfigError> {
    let (mut key, mut secret, mut token) = (None, None, None);
    let mut in_default = true;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_default = section.trim() == "default";
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            // The line may hold a secret: say where, never what.
            return Err(ShipConfigError::CredentialsLine {
                path: path.to_owned(),
                line: i + 1,
                reason: "expected `key = value`".into(),
            });
        };
        if !in_default {
            continue;
        }
        let v = Secret::new(v.trim());
        match k.trim() {
            "aws_access_key_id" => key = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            other => {
                return Err(ShipConfigError::CredentialsLine {
                    path: path.to_owned(),
                    line: i + 1,
                    reason: format!("unknown key {other:?} (expected aws_access_key_id, aws_secret_access_key, aws_session_token)"),
                })
            }
        }
    }
    match (key, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
            access_key_id,
            secret_access_key,
            session_token: token,
        }),
        _ => Err(ShipConfigError::Credentials {
            path: path.to_owned(),
            reason: "needs both aws_access_key_id and aws_secret_access_key (in [default] or before any section)".into(),
        }),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The `--ship*` flags, shared by `run`, `ship` and `verify --remote`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ShipArgs {
    /// Ship every sealed segment and the manifest to this bucket and key prefix
    /// (`s3://BUCKET/PREFIX`); see README "Shipping to S3".
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub ship: Option<String>,
    /// S3 endpoint URL for S3-compatible servers (`http://127.0.0.1:9000`); default AWS, or
    /// AWS_ENDPOINT_URL.
    #[arg(long, value_name = "URL")]
    pub ship_endpoint: Option<String>,
    /// Region (default AWS_REGION, AWS_DEFAULT_REGION, else us-east-1).
    #[arg(long, value_name = "REGION")]
    pub ship_region: Option<String>,
    /// AWS-style credentials file (`aws_access_key_id = ...`, `aws_secret_access_key = ...`),
    /// refused unless only its owner can read it; default AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY.
    #[arg(long, value_name = "FILE")]
    pub ship_credentials: Option<PathBuf>,
    /// This gateway's name in the object keys (`gateway=<id>`); default the host name.
    #[arg(long, value_name = "ID")]
    pub gateway_id: Option<String>,
    /// Segments at least this big (bytes, or 32MiB) are uploaded in parts (multipart upload).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MULTIPART_BYTES,
          value_parser = crate::bytesize::parse)]
    pub ship_multipart_bytes: u64,
    /// Longest one request to the bucket may take, its body included (30s, 5m); a request
    /// past it fails and is retried. Default: what the largest request (a single PUT just
    /// under the multipart threshold) takes with the uploads in flight sharing 1 Mbit/s,
    /// at least 60s.
    #[arg(long, value_name = "DURATION", value_parser = crate::span::parse_positive)]
    pub ship_request_timeout: Option<std::time::Duration>,
}

/// Default threshold of multipart uploads: 32 MiB.
pub const DEFAULT_MULTIPART_BYTES: u64 = 32 << 20;

/// The default of `--ship-request-timeout` for a multipart threshold: the largest request
/// body (a single PUT below the threshold, or a part) sent by each of the uploads in flight
/// at once over a 1 Mbit/s link, at least 60 s. A fixed 60 s failed every such PUT, again at
/// each retry, on an uplink slower than about 13 Mbit/s.
pub fn default_request_timeout(multipart_bytes: u64) -> std::time::Duration {
    let largest = multipart_bytes.max(super::remote::PART_BYTES as u64);
    let bits = largest.saturating_mul(8 * super::remote::IN_FLIGHT as u64);
    std::time::Duration::from_secs((bits / 1_000_000).max(60))
}

/// The longest a server may stay silent: no answer to a request with a small body, or no
/// byte of an answer's body, for this long fails the request (see `echo`). The request
/// timeout, sized for the largest upload on a slow link, was the only bound before: a server
/// that accepted and never answered held each HEAD, DELETE and manifest PUT for ~13 minutes.
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Everything the shipper needs, checked.
#[derive(Clone, Debug)]
pub struct ShipConfig {
    /// Bucket and prefix.
    pub target: Target,
    /// Endpoint URL, if not AWS.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Credentials.
    pub credentials: Credentials,
    /// The gateway's id in object keys.
    pub gateway_id: String,
    /// Multipart threshold in bytes.
    pub multipart_bytes: u64,
    /// Bound of one HTTP request, its body included.
    pub request_timeout: std::time::Duration,
    /// Longest silence of the server ([`DEFAULT_IDLE_TIMEOUT`]).
    pub idle_timeout: std::time::Duration,
}

impl ShipArgs {
    /// The checked configuration, or `None` without `--ship`.
    pub fn to_config(&self) -> Result<Option<ShipConfig>, ShipConfigError> {
        let Some(url) = &self.ship else {
            return Ok(None);
        };
        let target = parse_target(url)?;
        let endpoint = self.ship_endpoint.clone().or_else(|| env(ENV_ENDPOINT));
        if let Some(e) = &endpoint {
            let Some((scheme, rest)) = e
                .split_once("://")
                .filter(|(s, _)| matches!(*s, "http" | "https"))
            else {
                return Err(ShipConfigError::Endpoint(e.clone()));
            };
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if let Some((_, host)) = authority.rsplit_once('@') {
                return Err(ShipConfigError::EndpointCredentials(format!(
                    "{scheme}://…@{host}"
                )));
            }
        }
        let region = self
            .ship_region
            .clone()
            .or_else(|| env(ENV_REGION))
            .or_else(|| env(ENV_DEFAULT_REGION))
            .unwrap_or_else(|| "us-east-1".into());
        let credentials = match &self.ship_credentials {
            Some(p) => read_credentials_file(p)?,
            None => match (env(ENV_ACCESS_KEY), env(ENV_SECRET_KEY)) {
                (Some(k), Some(s)) => Credentials {
                    access_key_id: Secret::new(k),
                    secret_access_key: Secret::new(s),
                    session_token: env(ENV_SESSION_TOKEN).map(Secret::new),
                },
                _ => return Err(ShipConfigError::NoCredentials),
            },
        };
        let gateway_id = match &self.gateway_id {
            Some(id) => check_gateway_id(id)?,
            None => host_name()?,
        };
        let multipart_bytes = self.ship_multipart_bytes.max(5 << 20);
        Ok(Some(ShipConfig {
            target,
            endpoint,
            region,
            credentials,
            gateway_id,
            multipart_bytes,
            request_timeout: self
                .ship_request_timeout
                .unwrap_or_else(|| default_request_timeout(multipart_bytes)),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_request_timeout_lets_the_largest_request_through_at_1_mbit() {
        let secs = |bytes| default_request_timeout(bytes).as_secs();
        // 32 MiB x 8 bits x 3 in flight / 1 Mbit/s.
        assert_eq!(secs(32 << 20), 805);
        // Below the part size, the 8 MiB parts are the largest requests.
        assert_eq!(secs(5 << 20), 201);
        assert_eq!(secs(1 << 40), 26_388_279, "no overflow");
    }

    #[test]
    fn targets_parse_and_bad_ones_say_why() {
        let t = parse_target("s3://audit-logs/fleet/eu/").expect("valid");
        assert_eq!(
            (t.bucket.as_str(), t.prefix.as_str()),
            ("audit-logs", "fleet/eu")
        );
        assert_eq!(parse_target("s3://b").expect("bucket only").prefix, "");
        for bad in [
            "http://b/p",
            "s3:///p",
            "s3://B/p",
            "s3://b/a//c",
            "s3://b/../x",
        ] {
            assert!(parse_target(bad).is_err(), "{bad} accepted");
        }
    }

    /// An endpoint with a user and password is refused, and the error does not repeat them.
    #[test]
    fn an_endpoint_with_credentials_is_refused_without_showing_them() {
        let args = |endpoint: &str| ShipArgs {
            ship: Some("s3://b/p".into()),
            ship_endpoint: Some(endpoint.into()),
            ..ShipArgs::default()
        };
        for bad in [
            "http://s3user:s3pass@127.0.0.1:9000",
            "https://s3pass@s3.example:9000/path",
        ] {
            match args(bad).to_config() {
                Err(e @ ShipConfigError::EndpointCredentials(_)) => {
                    let text = e.to_string();
                    assert!(!text.contains("s3pass") && text.contains(":9000"), "{text}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            args("ftp://h").to_config(),
            Err(ShipConfigError::Endpoint(_))
        ));
    }

    #[test]
    fn gateway_ids_must_be_partition_safe() {
        assert!(check_gateway_id("gw-01.site_a").is_ok());
        for bad in ["", "a/b", "a=b", "a b"] {
            assert!(check_gateway_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn credentials_files_are_read_and_secrets_never_printed() {
        let text = "# comment\n[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = s3cr3t/KEY\n[other]\naws_access_key_id = nope\n";
        let c = parse_credentials(Path::new("c"), text).expect("parses");
        assert_eq!(c.access_key_id.expose(), "AKIDEXAMPLE");
        assert_eq!(c.secret_access_key.expose(), "s3cr3t/KEY");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("AKID"),
            "{shown}"
        );
        let e =
            parse_credentials(Path::new("c"), "aws_secret_access_key s3cr3t\n").expect_err("no =");
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
