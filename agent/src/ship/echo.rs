//! The HTTP client under object_store's S3 client, and what it refuses from a server.
//!
//! The server's own word on what it stored: a server that checks an upload's
//! `x-amz-checksum-sha256` against the bytes it received answers with the checksum it
//! computed (AWS S3, MinIO, s3s); object_store's `PutResult` keeps the HTTP response's
//! extensions but not that header, so [`Echo`] copies it into the extensions as a
//! [`ServerChecksum`]. With it, a single PUT is verified by its response and needs no HEAD;
//! a server that does not answer with it gets the HEAD (see `remote::Remote::upload`).
//!
//! What a hostile or broken server cannot do through this client:
//! - redirect a request: a redirect is a failed request, never followed (a PUT answered 303
//!   became a GET to any host, whose 200 and echoed checksum counted as the upload; HEAD, GET
//!   and DELETE carried the session token and checksums there);
//! - make the client hold a body in memory: object_store reads a non-2xx answer (and every
//!   answer to a PUT or POST) whole, reserving what the server's `Content-Length` claims, so
//!   2^63 bytes aborted the agent; every answer's size hint is clamped to [`BODY_MAX`], and all
//!   but an object's bytes (which `remote::stored_sha256` streams and hashes) fail past it;
//! - hold a request by going quiet: a request with a small body fails when no answer came
//!   within the idle timeout, and every answer when its body stalls that long.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use object_store::ClientOptions;

/// The response header of S3's SHA-256 checksum (base64 of the 32 bytes).
pub const HEADER: &str = "x-amz-checksum-sha256";
/// The most bytes of an answer read into memory (S3's error documents and the XML of a
/// multipart upload are a few KiB), and the most any answer's size hint reserves.
pub const BODY_MAX: u64 = 1 << 20;
/// Requests with at most this much body must be answered within the idle timeout of their
/// start (connecting and sending are part of it). Larger ones (a segment, a part) are
/// bounded by the request timeout alone while they send: it is sized for their body on a
/// slow uplink, where no fixed idle time is right while the server reads.
pub const SMALL_BODY: usize = 64 << 10;

/// The SHA-256 a server reported for what it stored, as the hex the chain writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerChecksum(pub String);

impl ServerChecksum {
    /// From the header's base64 value; `None` if it is not 32 bytes of base64.
    pub fn from_header(value: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()?;
        (bytes.len() == 32).then(|| Self(crate::store::fsutil::hex(&bytes)))
    }
}

/// How long the client waits (from `ShipConfig`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bound of a whole request, its bodies included.
    pub request: Duration,
    /// Bound of connecting.
    pub connect: Duration,
    /// Longest silence of the server: waiting for the answer to a small request, or between
    /// two reads of any answer's body.
    pub idle: Duration,
    /// Plain http allowed (the operator named an http:// endpoint); https only otherwise.
    pub allow_http: bool,
}

/// Builds our own reqwest client (no redirects, our timeouts) and wraps it in [`Echo`].
/// object_store's `ClientOptions` are not used: its client follows redirects.
#[derive(Debug)]
pub struct EchoConnector(pub Limits);

impl HttpConnector for EchoConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let l = self.0;
        let client = reqwest::Client::builder()
            .user_agent(concat!("xdp-audit/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(l.request)
            .connect_timeout(l.connect)
            .https_only(!l.allow_http)
            // As object_store's own client: HTTP/1 (its HTTP/2 is slower), and never a
            // decompressed body, whose size would not be the object's.
            .http1_only()
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate()
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(Echo {
            client: HttpClient::new(client),
            idle: l.idle,
        }))
    }
}

/// The HTTP service object_store's S3 client calls: reqwest's, with the checksum header
/// copied into the extensions and every answer's body bounded ([`Bounded`]).
#[derive(Debug)]
pub struct Echo {
    client: HttpClient,
    idle: Duration,
}

/// Why an answer was cut off.
#[derive(Debug, thiserror::Error)]
enum Refused {
    /// No answer within the idle timeout.
    #[error("no answer within {0:?} (the idle timeout)")]
    Silent(Duration),
    /// The body stalled.
    #[error("the answer's body stalled for {0:?} (the idle timeout)")]
    Stalled(Duration),
    /// More than [`BODY_MAX`] of an answer that is read into memory.
    #[error("the answer's body is larger than {BODY_MAX} bytes; refused")]
    TooLarge,
}

#[async_trait::async_trait]
impl HttpService for Echo {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        // An object's bytes are the one answer read as a stream (`remote::stored_sha256`), not
        // into memory; a listing (a GET with a query) is read whole.
        let object_get = req.method() == "GET" && req.uri().query().is_none();
        let small = req.body().content_length() <= SMALL_BODY;
        let answer = self.client.execute(req);
        let response = if small {
            tokio::time::timeout(self.idle, answer)
                .await
                .map_err(|_| HttpError::new(HttpErrorKind::Timeout, Refused::Silent(self.idle)))??
        } else {
            answer.await?
        };
        let (mut parts, body) = response.into_parts();
        let echoed = parts
            .headers
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(ServerChecksum::from_header);
        if let Some(c) = echoed {
            parts.extensions.insert(c);
        }
        let max = (!(object_get && parts.status.is_success())).then_some(BODY_MAX);
        let body = Bounded {
            inner: body,
            seen: 0,
            max,
            idle: self.idle,
            silence: Box::pin(tokio::time::sleep(self.idle)),
            waiting: false,
        };
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

/// An answer's body, bounded: its size hint at most [`BODY_MAX`] (object_store reserves the
/// hint before reading), at most `max` bytes, and no silence past `idle` between frames.
struct Bounded {
    inner: HttpResponseBody,
    /// Bytes let through so far.
    seen: u64,
    /// Most bytes let through; `None` for an object's bytes.
    max: Option<u64>,
    idle: Duration,
    /// Fires `idle` after the reader began to wait for the next frame.
    silence: Pin<Box<tokio::time::Sleep>>,
    /// Whether the reader is waiting (the timer runs only then: a reader that takes its
    /// time between frames is not the server's silence).
    waiting: bool,
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(other) => return Poll::Ready(other),
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let deadline = tokio::time::Instant::now() + this.idle;
                    this.silence.as_mut().reset(deadline);
                }
                return match this.silence.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::new(
                        HttpErrorKind::Timeout,
                        Refused::Stalled(this.idle),
                    )))),
                    Poll::Pending => Poll::Pending,
                };
            }
        };
        this.waiting = false;
        if let Some(data) = frame.data_ref() {
            this.seen = this.seen.saturating_add(data.len() as u64);
            if this.max.is_some_and(|max| this.seen > max) {
                let e = HttpError::new(HttpErrorKind::Decode, Refused::TooLarge);
                return Poll::Ready(Some(Err(e)));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let hint = self.inner.size_hint();
        let mut out = SizeHint::new();
        out.set_lower(hint.lower().min(BODY_MAX));
        if let Some(upper) = hint.upper() {
            // Never below the lower bound, which the clamp only lowered.
            out.set_upper(upper);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_decodes_to_the_chains_hex_form() {
        // SHA-256 of the empty string.
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let b64 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(
            ServerChecksum::from_header(b64),
            Some(ServerChecksum(hex.into()))
        );
        assert_eq!(ServerChecksum::from_header("AAAA"), None, "not 32 bytes");
        assert_eq!(ServerChecksum::from_header("*not base64*"), None);
    }
}
