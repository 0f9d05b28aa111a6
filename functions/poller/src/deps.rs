use std::sync::Arc;

use switchyard_common::config::Config;
use switchyard_common::ledger::{DynamoLedger, IdempotencyStore};
use switchyard_common::names::Stage;
use switchyard_common::queue::{Queue, SqsQueue};
use switchyard_common::runtime::env;

pub struct Deps {
    pub config: Arc<Config>,
    /// The accepted records (one intake record per `{id}@{version}`) and the cursors.
    pub ledger: Arc<dyn IdempotencyStore>,
    pub queue: Arc<dyn Queue>,
    /// How sources are read: the dispatcher's credentials, token cache and HTTP client.
    pub reads: switchyard_dispatcher::Deps,
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
        config.check_programs(switchyard_common::config::Programs::Polls).map_err(|e| format!("flow file: {e}"))?;
        let config = Arc::new(config);
        let table = env("SWITCHYARD_LEDGER_TABLE")?;
        let stage = Stage::new(&env("SWITCHYARD_STAGE")?).map_err(|e| e.to_string())?;
        Ok(Self {
            ledger: Arc::new(DynamoLedger::new(aws_sdk_dynamodb::Client::new(sdk), &table)),
            queue: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(sdk))),
            reads: switchyard_dispatcher::Deps::for_reads(sdk, config.clone(), stage, &table)?,
            config,
            ingest_queue_url: env("SWITCHYARD_INGEST_QUEUE_URL")?,
            ingest_dlq_url: env("SWITCHYARD_INGEST_DLQ_URL")?,
        })
    }
}
