//! `sql --remote`: a fleet's shipped segments in S3 as the engine's tables.
//!
//! The shipper writes `PREFIX/gateway=<id>/date=YYYY-MM-DD/<segment>.parquet`
//! (`ship::layout`); the engine lists every `.parquet` object under the prefix (the manifests
//! beside them are `.jsonl`, so left out) and reads the Hive partitions `gateway` (text) and
//! `date` (a date) from each key, as DuckDB, Trino or Spark read the same folder. The S3
//! client is the engine's own `object_store` (0.13, its `aws` feature), given the endpoint,
//! region and credentials the shipper takes (`ship::config`). Only objects are read: nothing
//! is written to the bucket.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::Result as DfResult;
use datafusion::prelude::SessionContext;
use object_store_df::aws::AmazonS3Builder;
use object_store_df::ClientOptions;

use super::tables::{register_views, schema};
use crate::ship::config::ShipConfig;

/// The Hive partition columns of the shipped layout, in key order.
pub const PARTITIONS: [&str; 2] = ["gateway", "date"];

/// Why the bucket cannot be read; names the bucket.
#[derive(Debug, thiserror::Error)]
#[error("--remote s3://{bucket}/{prefix}: {cause}")]
pub struct RemoteError {
    /// The bucket.
    pub bucket: String,
    /// The key prefix.
    pub prefix: String,
    /// What went wrong.
    pub cause: String,
}

/// `s3://BUCKET/PREFIX/`: the folder the engine lists.
pub fn url(cfg: &ShipConfig) -> String {
    let t = &cfg.target;
    if t.prefix.is_empty() {
        format!("s3://{}/", t.bucket)
    } else {
        format!("s3://{}/{}/", t.bucket, t.prefix)
    }
}

/// Registers `segments_raw` (every shipped segment under the prefix, with `gateway` and
/// `date`), `flows_raw` (the same: a bucket has no live journal) and `flows` with `ctx`.
pub async fn register(ctx: &SessionContext, cfg: &ShipConfig) -> Result<(), RemoteError> {
    let err = |cause: String| RemoteError {
        bucket: cfg.target.bucket.clone(),
        prefix: cfg.target.prefix.clone(),
        cause,
    };
    let store = client(cfg).map_err(|e| err(e.to_string()))?;
    let table_url = ListingTableUrl::parse(url(cfg)).map_err(|e| err(e.to_string()))?;
    ctx.register_object_store(table_url.object_store().as_ref(), Arc::new(store));
    tables(ctx, table_url).await.map_err(|e| err(e.to_string()))
}

async fn tables(ctx: &SessionContext, url: ListingTableUrl) -> DfResult<()> {
    let partitions = vec![
        (PARTITIONS[0].to_owned(), DataType::Utf8),
        (PARTITIONS[1].to_owned(), DataType::Date32),
    ];
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(partitions);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema()?);
    ctx.register_table("segments_raw", Arc::new(ListingTable::try_new(config)?))?;
    let raw = ctx.sql("SELECT * FROM segments_raw").await?;
    ctx.register_table("flows_raw", raw.into_view())?;
    register_views(ctx, &PARTITIONS).await
}

/// The S3 client for `cfg`: path-style requests and plain http only to an `http://` endpoint
/// the operator named, as the shipper does.
fn client(cfg: &ShipConfig) -> object_store_df::Result<object_store_df::aws::AmazonS3> {
    // The same process-wide rustls provider the shipper installs (ring; aws-lc-rs is not built).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = &cfg.credentials;
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&cfg.target.bucket)
        .with_region(&cfg.region)
        .with_access_key_id(c.access_key_id.expose())
        .with_secret_access_key(c.secret_access_key.expose())
        .with_client_options(ClientOptions::new().with_connect_timeout(Duration::from_secs(5)));
    if let Some(t) = &c.session_token {
        b = b.with_token(t.expose());
    }
    if let Some(e) = &cfg.endpoint {
        b = b
            .with_endpoint(e)
            .with_allow_http(e.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    b.build()
}
