//! The whole pipeline in one process: intake behind an HTTP server, mapper and
//! dispatcher behind their queue pollers, all on the real SDK against one endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchyard_common::config::Config;
use switchyard_common::gate::{DynamoGate, Gate};
use switchyard_common::ledger::DynamoLedger;
use switchyard_common::names::Stage;
use switchyard_common::queue::SqsQueue;
use switchyard_common::runtime::now_ms;
use switchyard_common::secrets::{AwsSecrets, CachedSecrets};
use tokio::task::JoinHandle;

use crate::poller::{self, Mapping};
use crate::stack::Stack;

/// The template's BatchSize for both SQS event sources.
pub const BATCH_SIZE: i32 = 10;

pub struct Deps {
    pub intake: switchyard_intake::Deps,
    pub mapper: switchyard_mapper::Deps,
    pub dispatcher: switchyard_dispatcher::Deps,
}

impl Deps {
    /// The same dependencies each function's `main` builds, pointed at `stack`, with
    /// the same cold-start checks (the dispatcher's timeout and the queues' redrive
    /// backstop against every destination's budget).
    pub async fn new(sdk: &aws_config::SdkConfig, stack: &Stack, config: Arc<Config>) -> Result<Self, String> {
        let max_receive_count = switchyard_dispatcher::backstop::check_budgets(
            &aws_sdk_sqs::Client::new(sdk),
            &config,
            Duration::from_secs(stack.dispatcher_timeout_secs),
            &[&stack.dispatch_queue_url, &stack.dispatch_fifo_queue_url],
        )
        .await?;
        let stage = Stage::new(&stack.stage).map_err(|e| e.to_string())?;
        let sqs = SqsQueue::new(aws_sdk_sqs::Client::new(sdk));
        let dynamo = aws_sdk_dynamodb::Client::new(sdk);
        let ledger = Arc::new(DynamoLedger::new(dynamo.clone(), &stack.ledger_table));
        let secrets = Arc::new(CachedSecrets::new(
            AwsSecrets::new(aws_sdk_secretsmanager::Client::new(sdk)),
            Duration::from_secs(300),
        ));
        let archive = stack.archive_bucket.as_ref().map(|bucket| {
            Arc::new(switchyard_common::archive::S3Archive::new(sdk, bucket))
                as Arc<dyn switchyard_common::archive::ArchiveWriter>
        });
        Ok(Self {
            intake: switchyard_intake::Deps {
                config: config.clone(),
                stage: stage.clone(),
                ledger: ledger.clone(),
                queue: Arc::new(sqs.clone()),
                secrets: secrets.clone(),
                ingest_queue_url: stack.ingest_queue_url.clone(),
                limits: switchyard_intake::Limits::default(),
            },
            mapper: switchyard_mapper::Deps {
                config: config.clone(),
                queue: Arc::new(sqs.clone()),
                dispatch_queue_url: stack.dispatch_queue_url.clone(),
                dispatch_fifo_queue_url: stack.dispatch_fifo_queue_url.clone(),
                ingest_dlq_url: stack.ingest_dlq_url.clone(),
                ledger: ledger.clone(),
                archive: archive.clone(),
            },
            dispatcher: switchyard_dispatcher::Deps {
                settings: switchyard_dispatcher::Settings::for_config(&config, max_receive_count),
                gate: Gate::new(DynamoGate::new(dynamo, &stack.ledger_table)),
                config,
                stage,
                ledger,
                queue: Arc::new(sqs),
                secrets,
                http: switchyard_dispatcher::http_client()?,
                tokens: Default::default(),
                dispatch_queue_url: stack.dispatch_queue_url.clone(),
                dispatch_dlq_url: stack.dispatch_dlq_url.clone(),
                dispatch_fifo_queue_url: stack.dispatch_fifo_queue_url.clone(),
                dispatch_fifo_dlq_url: stack.dispatch_fifo_dlq_url.clone(),
                archive,
            },
        })
    }
}

/// One dispatcher container: its two event source mappings, as in the template. Each
/// call with its own `deps` is another container (its own caches), as when Lambda
/// scales the dispatcher out.
pub fn dispatcher_pollers(
    sdk: &aws_config::SdkConfig,
    stack: &Stack,
    deps: switchyard_dispatcher::Deps,
) -> Vec<JoinHandle<()>> {
    let client = aws_sdk_sqs::Client::new(sdk);
    let dispatcher = Arc::new(deps);
    let timeout_ms = i64::try_from(stack.dispatcher_timeout_secs).unwrap_or(i64::MAX).saturating_mul(1000);
    [&stack.dispatch_queue_url, &stack.dispatch_fifo_queue_url]
        .into_iter()
        .map(|queue_url| {
            let dispatch = Mapping { queue_url: queue_url.clone(), batch_size: BATCH_SIZE, wait_secs: 1 };
            let dispatcher = dispatcher.clone();
            tokio::spawn(poller::run(client.clone(), dispatch, move |event| {
                let deps = dispatcher.clone();
                async move {
                    let deadline = now_ms() + timeout_ms;
                    switchyard_dispatcher::handle(&deps, event, deadline).await
                }
            }))
        })
        .collect()
}

/// The running pipeline; dropping it stops the server and the pollers.
pub struct Pipeline {
    pub intake_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Pipeline {
    pub async fn start(
        sdk: &aws_config::SdkConfig,
        stack: &Stack,
        deps: Deps,
        intake: SocketAddr,
    ) -> std::io::Result<Self> {
        let Deps { intake: intake_deps, mapper, dispatcher } = deps;
        let listener = crate::intake_http::bind(intake).await?;
        let intake_addr = listener.local_addr()?;
        let mut tasks = Vec::new();
        let intake_deps = Arc::new(intake_deps);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::intake_http::serve(intake_deps, listener).await {
                tracing::error!(error = %e, "intake server stopped");
            }
        }));
        let client = aws_sdk_sqs::Client::new(sdk);
        let mapper = Arc::new(mapper);
        let ingest = Mapping { queue_url: stack.ingest_queue_url.clone(), batch_size: BATCH_SIZE, wait_secs: 1 };
        tasks.push(tokio::spawn(poller::run(client.clone(), ingest, move |event| {
            let deps = mapper.clone();
            async move { switchyard_mapper::handle(&deps, event).await }
        })));
        tasks.extend(dispatcher_pollers(sdk, stack, dispatcher));
        Ok(Self { intake_addr, tasks })
    }

    pub fn intake_url(&self, source: &str) -> String {
        format!("http://{}/hooks/{source}", self.intake_addr)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
