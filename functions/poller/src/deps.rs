use std::sync::Arc;
use std::time::Duration;

use switchyard_common::config::Config;
use switchyard_common::ledger::{DynamoLedger, IdempotencyStore};
use switchyard_common::names::Stage;
use switchyard_common::queue::{Queue, SqsQueue};
use switchyard_common::runtime::env;
use switchyard_common::secrets::{CachedSecrets, SecretSource};

pub struct Deps {
    pub config: Arc<Config>,
    pub stage: Stage,
    /// The accepted records (one intake record per `{id}@{version}`) and the cursors.
    pub ledger: Arc<dyn IdempotencyStore>,
    pub queue: Arc<dyn Queue>,
    pub secrets: Arc<dyn SecretSource>,
    pub http: reqwest::Client,
    pub ingest_queue_url: String,
    /// Where a record that cannot become an envelope is parked, with its reason.
    pub ingest_dlq_url: String,
}

impl Deps {
    /// Reads `SWITCHYARD_STAGE`, `SWITCHYARD_LEDGER_TABLE`, `SWITCHYARD_INGEST_QUEUE_URL`,
    /// `SWITCHYARD_INGEST_DLQ_URL` and the flow file (with each polling source's
    /// `SWITCHYARD_SOURCE_{NAME}_URL`).
    pub async fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, String> {
        let config = Config::from_env().map_err(|e| format!("flow file: {e}"))?;
        Ok(Self {
            config: Arc::new(config),
            stage: Stage::new(&env("SWITCHYARD_STAGE")?).map_err(|e| e.to_string())?,
            ledger: Arc::new(DynamoLedger::new(aws_sdk_dynamodb::Client::new(sdk), &env("SWITCHYARD_LEDGER_TABLE")?)),
            queue: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(sdk))),
            secrets: Arc::new(CachedSecrets::from_env(sdk)?),
            http: http_client()?,
            ingest_queue_url: env("SWITCHYARD_INGEST_QUEUE_URL")?,
            ingest_dlq_url: env("SWITCHYARD_INGEST_DLQ_URL")?,
        })
    }
}

/// The client the poller reads sources with: no redirects (a source that redirects
/// is misconfigured), a bounded connect.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("switchyard-poller/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("the HTTP client for polling sources cannot be built: {e}"))
}
