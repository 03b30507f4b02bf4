//! The server's own word on what it stored: the `x-amz-checksum-sha256` header of a PUT's
//! response, carried to the caller.
//!
//! A server that checks an upload's `x-amz-checksum-sha256` against the bytes it received
//! answers with the checksum it computed (AWS S3, MinIO, s3s); object_store's `PutResult`
//! keeps the HTTP response's extensions but not that header, so this connector wraps the
//! client's HTTP service and copies the header into the response's extensions as a
//! [`ServerChecksum`]. With it, a single PUT is verified by its response and needs no HEAD;
//! a server that does not answer with it gets the HEAD (see `remote::Remote::upload`).

use base64::Engine as _;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::ClientOptions;

/// The response header of S3's SHA-256 checksum (base64 of the 32 bytes).
pub const HEADER: &str = "x-amz-checksum-sha256";

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

/// object_store's reqwest connector, with the checksum header copied into each response's
/// extensions.
#[derive(Debug, Default)]
pub struct EchoConnector;

impl HttpConnector for EchoConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Echo(inner)))
    }
}

#[derive(Debug)]
struct Echo(HttpClient);

#[async_trait::async_trait]
impl HttpService for Echo {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let mut response = self.0.execute(req).await?;
        let echoed = response
            .headers()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(ServerChecksum::from_header);
        if let Some(c) = echoed {
            response.extensions_mut().insert(c);
        }
        Ok(response)
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
