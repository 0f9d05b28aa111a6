use std::sync::Arc;

use switchyard_common::config::Config;
use switchyard_common::ledger::{DynamoLedger, IdempotencyStore};
use switchyard_common::queue::{Queue, SqsQueue};
use switchyard_common::runtime::env;

pub struct Deps {
    pub config: Arc<Config>,
    pub queue: Arc<dyn Queue>,
    pub dispatch_queue_url: String,
    /// For flows with an ordering key.
    pub dispatch_fifo_queue_url: String,
    /// Where envelopes that cannot be mapped go, with their reason.
    pub ingest_dlq_url: String,
    /// Where the mapper records what it decided when it did not simply enqueue
    /// deliveries (a parked or filtered flow, no flow for the type): never on the
    /// happy path.
    pub ledger: Arc<dyn IdempotencyStore>,
}

impl Deps {
    /// Reads `SWITCHYARD_DISPATCH_QUEUE_URL`, `SWITCHYARD_DISPATCH_FIFO_QUEUE_URL`,
    /// `SWITCHYARD_INGEST_DLQ_URL`, `SWITCHYARD_LEDGER_TABLE` and the flow file.
    pub async fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, String> {
        Ok(Self {
            config: Arc::new(switchyard_common::config::Config::from_env().map_err(|e| format!("flow file: {e}"))?),
            queue: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(sdk))),
            dispatch_queue_url: env("SWITCHYARD_DISPATCH_QUEUE_URL")?,
            dispatch_fifo_queue_url: env("SWITCHYARD_DISPATCH_FIFO_QUEUE_URL")?,
            ingest_dlq_url: env("SWITCHYARD_INGEST_DLQ_URL")?,
            ledger: Arc::new(DynamoLedger::new(aws_sdk_dynamodb::Client::new(sdk), env("SWITCHYARD_LEDGER_TABLE")?)),
        })
    }
}
