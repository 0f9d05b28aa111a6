use std::sync::Arc;
use std::time::Duration;

use switchyard_common::config::Config;
use switchyard_common::ledger::{DynamoLedger, IdempotencyStore};
use switchyard_common::names::Stage;
use switchyard_common::queue::{Queue, SqsQueue};
use switchyard_common::runtime::{env, optional_env};
use switchyard_common::secrets::{CachedSecrets, SecretSource};

/// The largest `SWITCHYARD_MAX_BODY_BYTES` accepted: 16 KiB under SQS's 256 KiB, room
/// for the envelope's attributes, ids and kept headers around a compact JSON body.
/// Intake also measures each finished envelope and answers 413 when one would not
/// fit (a body can grow when it is re-written: `1e15` becomes `1000000000000000.0`).
pub const MAX_BODY_BYTES_LIMIT: usize = 240 * 1024;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Larger bodies get 413. The envelope must still fit an SQS message (256 KiB).
    pub max_body_bytes: usize,
    /// How long the ledger remembers an event (deduplication window).
    pub ledger_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_body_bytes: 200 * 1024, ledger_ttl: switchyard_common::ledger::RECORD_TTL }
    }
}

/// Everything the handler uses, built once per container.
pub struct Deps {
    pub config: Arc<Config>,
    pub stage: Stage,
    pub ledger: Arc<dyn IdempotencyStore>,
    pub queue: Arc<dyn Queue>,
    pub secrets: Arc<dyn SecretSource>,
    pub ingest_queue_url: String,
    pub limits: Limits,
}

impl Deps {
    /// Reads `SWITCHYARD_STAGE`, `SWITCHYARD_LEDGER_TABLE`, `SWITCHYARD_INGEST_QUEUE_URL`,
    /// optional `SWITCHYARD_MAX_BODY_BYTES`, `SWITCHYARD_SECRET_MAX_AGE_SECS` and the flow
    /// file (`SWITCHYARD_CONFIG` or the bundled one). Fails with a message naming what is wrong.
    pub async fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, String> {
        let stage = Stage::new(&env("SWITCHYARD_STAGE")?).map_err(|e| e.to_string())?;
        let config = Config::from_env().map_err(|e| format!("flow file: {e}"))?;
        let mut limits = Limits::default();
        if let Some(v) = optional_env("SWITCHYARD_MAX_BODY_BYTES")? {
            limits.max_body_bytes = max_body_bytes(&v)?;
        }
        Ok(Self {
            config: Arc::new(config),
            stage,
            ledger: Arc::new(DynamoLedger::new(aws_sdk_dynamodb::Client::new(sdk), env("SWITCHYARD_LEDGER_TABLE")?)),
            queue: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(sdk))),
            secrets: Arc::new(CachedSecrets::from_env(sdk)?),
            ingest_queue_url: env("SWITCHYARD_INGEST_QUEUE_URL")?,
            limits,
        })
    }
}

/// `SWITCHYARD_MAX_BODY_BYTES`: 1 to [`MAX_BODY_BYTES_LIMIT`].
pub fn max_body_bytes(value: &str) -> Result<usize, String> {
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_BODY_BYTES_LIMIT).contains(n))
        .ok_or_else(|| format!("SWITCHYARD_MAX_BODY_BYTES must be a number of bytes from 1 to {MAX_BODY_BYTES_LIMIT}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_body_bytes_outside_its_range_is_refused_naming_the_variable() {
        assert_eq!(max_body_bytes("204800"), Ok(204_800));
        assert_eq!(max_body_bytes(&MAX_BODY_BYTES_LIMIT.to_string()), Ok(MAX_BODY_BYTES_LIMIT));
        for bad in ["0", "-1", "lots", "", "245761", "1048576"] {
            let err = max_body_bytes(bad).unwrap_err();
            assert!(err.contains("SWITCHYARD_MAX_BODY_BYTES") && err.contains("245760"), "{bad}: {err}");
        }
    }
}
