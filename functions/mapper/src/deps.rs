use std::sync::Arc;

use switchyard_common::config::Config;
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
}

impl Deps {
    /// Reads `SWITCHYARD_DISPATCH_QUEUE_URL`, `SWITCHYARD_DISPATCH_FIFO_QUEUE_URL`, `SWITCHYARD_INGEST_DLQ_URL` and the flow file.
    pub async fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, String> {
        Ok(Self {
            config: Arc::new(switchyard_common::config::Config::from_env().map_err(|e| format!("flow file: {e}"))?),
            queue: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(sdk))),
            dispatch_queue_url: env("SWITCHYARD_DISPATCH_QUEUE_URL")?,
            dispatch_fifo_queue_url: env("SWITCHYARD_DISPATCH_FIFO_QUEUE_URL")?,
            ingest_dlq_url: env("SWITCHYARD_INGEST_DLQ_URL")?,
        })
    }
}
