use std::sync::Arc;
use std::time::Duration;

use switchyard_common::archive::{ArchiveWriter, S3Archive};
use switchyard_common::auth::oauth2::TokenCache;
use switchyard_common::budget;
use switchyard_common::config::Config;
use switchyard_common::gate::{DynamoGate, Gate};
use switchyard_common::ledger::{DynamoLedger, IdempotencyStore};
use switchyard_common::names::Stage;
use switchyard_common::queue::{Queue, SqsQueue};
use switchyard_common::runtime::env;
use switchyard_common::secrets::{CachedSecrets, SecretSource};

#[derive(Debug, Clone)]
pub struct Settings {
    /// What a FIFO batch keeps free before starting another record: the worst case
    /// of one record of any destination (`budget::worst_case_any_record`).
    pub record_reserve: Duration,
    /// The dispatch queues' redrive `maxReceiveCount` (the lower of the two), read at
    /// cold start: a message held back by the gate this often is re-sent fresh.
    pub max_receive_count: u32,
}

impl Settings {
    pub fn for_config(config: &Config, max_receive_count: u32) -> Self {
        Self { record_reserve: budget::worst_case_any_record(config), max_receive_count }
    }
}

pub struct Deps {
    pub config: Arc<Config>,
    pub stage: Stage,
    pub ledger: Arc<dyn IdempotencyStore>,
    pub queue: Arc<dyn Queue>,
    pub secrets: Arc<dyn SecretSource>,
    pub http: reqwest::Client,
    /// OAuth2 access tokens, per destination, shared by the invocations of a container.
    pub tokens: TokenCache,
    /// Rate limits, breakers and pauses, shared with every dispatcher through the ledger table.
    pub gate: Gate,
    /// The queue this dispatcher consumes (for visibility changes).
    pub dispatch_queue_url: String,
    pub dispatch_dlq_url: String,
    /// The FIFO pair for flows with an ordering key.
    pub dispatch_fifo_queue_url: String,
    pub dispatch_fifo_dlq_url: String,
    pub settings: Settings,
    /// The stage's archive bucket (`SWITCHYARD_ARCHIVE_BUCKET`): where dark deliveries,
    /// and live ones of a flow with a dark version, record their request
    /// (`switchyard_common::recorded`). `None`: the stage keeps no archive.
    pub archive: Option<Arc<dyn ArchiveWriter>>,
}

impl Deps {
    /// The queue a message came from and its DLQ: FIFO deliveries park in the FIFO DLQ.
    pub fn queues_for(&self, event_source_arn: Option<&str>) -> (&str, &str) {
        if event_source_arn.is_some_and(|arn| arn.ends_with(".fifo")) {
            (&self.dispatch_fifo_queue_url, &self.dispatch_fifo_dlq_url)
        } else {
            (&self.dispatch_queue_url, &self.dispatch_dlq_url)
        }
    }
}

impl Deps {
    /// Reads `SWITCHYARD_STAGE`, `SWITCHYARD_LEDGER_TABLE`, `SWITCHYARD_DISPATCH_QUEUE_URL`,
    /// `SWITCHYARD_DISPATCH_DLQ_URL`, their `_FIFO_` twins, `SWITCHYARD_DISPATCHER_TIMEOUT_SECS`, optional `SWITCHYARD_SECRET_MAX_AGE_SECS` and the flow file.
    pub async fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, String> {
        let config = Config::from_env().map_err(|e| format!("flow file: {e}"))?;
        let timeout = env("SWITCHYARD_DISPATCHER_TIMEOUT_SECS")?
            .parse::<u64>()
            .map_err(|_| "SWITCHYARD_DISPATCHER_TIMEOUT_SECS must be a whole number of seconds".to_owned())?;
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let dispatch_queue_url = env("SWITCHYARD_DISPATCH_QUEUE_URL")?;
        let dispatch_fifo_queue_url = env("SWITCHYARD_DISPATCH_FIFO_QUEUE_URL")?;
        let queues = [dispatch_queue_url.as_str(), dispatch_fifo_queue_url.as_str()];
        let max_receive_count =
            crate::backstop::check_budgets(&sqs, &config, Duration::from_secs(timeout), &queues).await?;
        let table = env("SWITCHYARD_LEDGER_TABLE")?;
        let dynamo = aws_sdk_dynamodb::Client::new(sdk);
        Ok(Self {
            settings: Settings::for_config(&config, max_receive_count),
            config: Arc::new(config),
            stage: Stage::new(&env("SWITCHYARD_STAGE")?).map_err(|e| e.to_string())?,
            ledger: Arc::new(DynamoLedger::new(dynamo.clone(), table.clone())),
            gate: Gate::new(DynamoGate::new(dynamo, table)),
            queue: Arc::new(SqsQueue::new(sqs)),
            secrets: Arc::new(CachedSecrets::from_env(sdk)?),
            http: http_client()?,
            tokens: TokenCache::default(),
            dispatch_queue_url,
            dispatch_dlq_url: env("SWITCHYARD_DISPATCH_DLQ_URL")?,
            dispatch_fifo_queue_url,
            dispatch_fifo_dlq_url: env("SWITCHYARD_DISPATCH_FIFO_DLQ_URL")?,
            archive: S3Archive::from_env(sdk)?.map(|a| Arc::new(a) as Arc<dyn ArchiveWriter>),
        })
    }
}

impl Deps {
    /// What reading from destinations needs and nothing more (the reconciler's):
    /// their credentials and rate limits, no queues, no archive.
    pub fn for_reads(
        sdk: &aws_config::SdkConfig,
        config: Arc<Config>,
        stage: Stage,
        table: &str,
    ) -> Result<Self, String> {
        let dynamo = aws_sdk_dynamodb::Client::new(sdk);
        Ok(Self {
            settings: Settings::for_config(&config, 0),
            config,
            stage,
            ledger: Arc::new(DynamoLedger::new(dynamo.clone(), table)),
            gate: Gate::new(DynamoGate::new(dynamo, table)),
            queue: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(sdk))),
            secrets: Arc::new(CachedSecrets::from_env(sdk)?),
            http: http_client()?,
            tokens: TokenCache::default(),
            dispatch_queue_url: String::new(),
            dispatch_dlq_url: String::new(),
            dispatch_fifo_queue_url: String::new(),
            dispatch_fifo_dlq_url: String::new(),
            archive: None,
        })
    }
}

/// One client per container: connection pooling across invocations. A client that
/// cannot be built (e.g. no TLS roots) stops the cold start: a default client would
/// silently drop the timeouts and the no-redirect policy.
pub fn http_client() -> Result<reqwest::Client, String> {
    switchyard_common::tls::http_client_builder()
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("the HTTP client for destinations cannot be built: {e}"))
}
