use std::sync::Arc;

use switchyard_common::archive::{ArchiveWriter, S3Archive};
use switchyard_common::config::Config;
use switchyard_common::ledger::{DecisionLog, DynamoLedger};
use switchyard_common::queue::{Queue, SqsQueue};
use switchyard_common::runtime::{env, optional_env};

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
    pub ledger: Arc<dyn DecisionLog>,
    /// The stage's event archive (`SWITCHYARD_ARCHIVE_BUCKET`): every envelope of a
    /// source that archives is written there before it is mapped. `None`: no archive.
    pub archive: Option<Arc<dyn ArchiveWriter>>,
}

impl Deps {
    /// Reads `SWITCHYARD_DISPATCH_QUEUE_URL`, `SWITCHYARD_DISPATCH_FIFO_QUEUE_URL`,
    /// `SWITCHYARD_INGEST_DLQ_URL`, `SWITCHYARD_LEDGER_TABLE`, optional
    /// `SWITCHYARD_ARCHIVE_BUCKET` and the flow file.
    /// Refuses to start when a flow is ordered but `SWITCHYARD_ORDERED_DELIVERY` (the
    /// template's `OrderedDelivery`) is not `true`: the FIFO queue's poller is off.
    pub async fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, String> {
        let config = switchyard_common::config::Config::from_env().map_err(|e| format!("flow file: {e}"))?;
        config.check_programs(switchyard_common::config::Programs::Flows).map_err(|e| format!("flow file: {e}"))?;
        config.check_contracts().map_err(|e| format!("flow file: {e}"))?;
        check_ordered_delivery(&config, optional_env("SWITCHYARD_ORDERED_DELIVERY")?.as_deref())?;
        Ok(Self {
            config: Arc::new(config),
            queue: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(sdk))),
            dispatch_queue_url: env("SWITCHYARD_DISPATCH_QUEUE_URL")?,
            dispatch_fifo_queue_url: env("SWITCHYARD_DISPATCH_FIFO_QUEUE_URL")?,
            ingest_dlq_url: env("SWITCHYARD_INGEST_DLQ_URL")?,
            ledger: Arc::new(DynamoLedger::new(aws_sdk_dynamodb::Client::new(sdk), env("SWITCHYARD_LEDGER_TABLE")?)),
            archive: S3Archive::from_env(sdk)?.map(|a| Arc::new(a) as Arc<dyn ArchiveWriter>),
        })
    }
}

/// An ordered flow's deliveries go to the FIFO dispatch queue, which the dispatcher
/// polls only when the stage's `OrderedDelivery` is `true` (`ordered`, unset: false).
pub fn check_ordered_delivery(config: &Config, ordered: Option<&str>) -> Result<(), String> {
    let polled = match ordered.map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(format!("SWITCHYARD_ORDERED_DELIVERY must be true or false, not {other:?}")),
    };
    match config.flows.iter().find(|f| f.ordering_key.is_some()) {
        Some(f) if !polled => Err(format!(
            "flow {} has an ordering_key, but the FIFO dispatch queue is not polled on this stage: deploy with \
             OrderedDelivery=true (SWITCHYARD_ORDERED_DELIVERY)",
            f.name
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ordered: bool) -> Config {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/flows.toml");
        let mut text = std::fs::read_to_string(&root).unwrap();
        if ordered {
            text = text.replacen(
                "entity_key = \".data.object.metadata.order_id\"",
                "entity_key = \".data.object.metadata.order_id\"\nordering_key = \".data.object.customer\"",
                1,
            );
        }
        let dir = std::env::temp_dir().join(format!("mapper-ordered-{}-{ordered}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for sub in ["mappings", "contracts"] {
            let to = dir.join(sub);
            std::fs::create_dir_all(&to).unwrap();
            for e in std::fs::read_dir(root.parent().unwrap().join(sub)).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
        std::fs::write(dir.join("flows.toml"), text).unwrap();
        Config::load(&dir.join("flows.toml")).unwrap()
    }

    #[test]
    fn an_ordered_flow_on_a_stage_whose_fifo_queue_is_not_polled_stops_the_cold_start() {
        let ordered = config(true);
        let err = check_ordered_delivery(&ordered, None).unwrap_err();
        assert!(err.contains("stripe-payment-to-crm-contact") && err.contains("OrderedDelivery=true"), "{err}");
        assert!(check_ordered_delivery(&ordered, Some("false")).is_err());
        assert_eq!(check_ordered_delivery(&ordered, Some("true")), Ok(()));
        assert!(check_ordered_delivery(&ordered, Some("yes")).unwrap_err().contains("true or false"));
        // Without an ordered flow the FIFO queue's poller may be off.
        assert_eq!(check_ordered_delivery(&config(false), None), Ok(()));
    }
}
