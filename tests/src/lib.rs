//! The end-to-end harness: a moto server of the test's own on a free port, the
//! template's resources deployed into it by `infra/local_stack.py` (the same step as
//! `make run`), the pipeline of the local runner, and a scripted destination.
//!
//! Needs the project virtual environment (`make test` creates it); its location is
//! `SWITCHYARD_VENV`, else `.venv` at the workspace root.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::Value;
use switchyard_common::config::Config;
use switchyard_common::ledger::{DynamoLedger, IdempotencyStore, LedgerRecord, RecordKey};
use switchyard_common::runtime::now_ms;
use switchyard_common::signature::{sign, SigningSecret};
use switchyard_local::pipeline::{Deps, Pipeline};
use switchyard_local::sink::Sink;
use switchyard_local::stack::Stack;
use tokio::process::{Child, Command};

pub use switchyard_common::tls::http_client_builder;

/// The tests' own HTTP client (to intake, sinks, the proxy), on the project's TLS stack.
pub fn http_client() -> reqwest::Client {
    http_client_builder().build().expect("the tests' HTTP client")
}

pub mod crm;
pub mod iam;
pub mod lambda;
pub mod proxy;
pub mod runner;

pub mod soak;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn venv() -> PathBuf {
    let venv = std::env::var("SWITCHYARD_VENV").map(PathBuf::from).unwrap_or_else(|_| repo().join(".venv"));
    assert!(
        venv.join("bin/moto_server").exists(),
        "no moto_server in {}: run `make test`, which creates the virtual environment",
        venv.display()
    );
    venv
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A moto server of one test's own (via `infra/moto_server.py`), with the template's
/// resources deployed.
pub struct LocalAws {
    child: Child,
    pub endpoint: String,
    pub stack: Stack,
    pub sdk: aws_config::SdkConfig,
}

impl LocalAws {
    pub async fn start() -> Self {
        let venv = venv();
        let port = free_port();
        let endpoint = format!("http://127.0.0.1:{port}");
        // Through the launcher that restores DynamoDB's atomic conditional writes.
        let child = Command::new(venv.join("bin/python"))
            .arg(repo().join("infra/moto_server.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_server");
        let script = repo().join("infra/local_stack.py");
        let python = venv.join("bin/python");
        let wait = Command::new(&python)
            .arg(&script)
            .args(["wait", "--endpoint", &endpoint])
            .status()
            .await
            .expect("run local_stack.py wait");
        assert!(wait.success(), "moto did not come up on {endpoint}");
        let out = Command::new(&python)
            .arg(&script)
            .args(["deploy", "--endpoint", &endpoint, "--stage", "dev", "--secrets"])
            .arg(repo().join("infra/local-secrets.json"))
            .output()
            .await
            .expect("run local_stack.py deploy");
        assert!(out.status.success(), "deploy failed: {}", String::from_utf8_lossy(&out.stderr));
        let stack: Stack = serde_json::from_slice(&out.stdout).expect("deploy prints the stack as JSON");
        let sdk = switchyard_common::tls::aws_config_loader()
            .endpoint_url(&endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "tests"))
            .load()
            .await;
        Self { child, endpoint, stack, sdk }
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    /// `switchyard-ops` (the tests crate's `ops` binary at `bin`) pointed at this
    /// endpoint and stack, with the repository's flow file.
    pub fn ops_command(&self, bin: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("SWITCHYARD_STAGE", "dev")
            .env("SWITCHYARD_LEDGER_TABLE", &self.stack.ledger_table)
            .env("SWITCHYARD_CONFIG", repo().join("config/flows.toml"))
            .kill_on_drop(true);
        cmd
    }

    pub fn ledger(&self) -> DynamoLedger {
        DynamoLedger::new(aws_sdk_dynamodb::Client::new(&self.sdk), &self.stack.ledger_table)
    }

    pub async fn history(&self, source: &str, event_id: &str) -> Vec<LedgerRecord> {
        self.ledger().history(&RecordKey::event_pk(source, event_id)).await.expect("ledger query")
    }

    /// Puts a new AWSCURRENT value on `switchyard/{stage}/{suffix}` (what an operator or
    /// a rotation does).
    pub async fn put_secret(&self, suffix: &str, value: &str) {
        aws_sdk_secretsmanager::Client::new(&self.sdk)
            .put_secret_value()
            .secret_id(format!("switchyard/{}/{suffix}", self.stack.stage))
            .secret_string(value)
            .send()
            .await
            .expect("put secret");
    }

    /// Sends deliveries straight onto a dispatch queue (as the mapper would).
    pub async fn enqueue_deliveries(&self, queue_url: &str, deliveries: &[switchyard_common::envelope::Delivery]) {
        use switchyard_common::queue::{OutboundMessage, Queue, SqsQueue};
        let messages: Vec<_> = deliveries
            .iter()
            .map(|d| {
                let mut m = OutboundMessage::new(serde_json::to_string(d).unwrap());
                if let Some(key) = &d.ordering_key {
                    m.group_id = Some(key.clone());
                    m.dedup_id = Some(switchyard_common::envelope::sha256_hex(d.delivery_id.as_bytes()));
                }
                m
            })
            .collect();
        SqsQueue::new(self.sqs()).send_all(queue_url, &messages).await.expect("enqueue");
    }

    /// Receives one batch from `queue_url` as the Lambda event the dispatcher would get.
    pub async fn receive_event(&self, queue_url: &str) -> aws_lambda_events::event::sqs::SqsEvent {
        let got = std::sync::Mutex::new(aws_lambda_events::event::sqs::SqsEvent::default());
        let mapping =
            switchyard_local::poller::Mapping { queue_url: queue_url.to_owned(), batch_size: 10, wait_secs: 2 };
        switchyard_local::poller::poll_once(&self.sqs(), &mapping, &|e: aws_lambda_events::event::sqs::SqsEvent| {
            // Report every record failed so nothing is deleted: the test decides.
            let mut r = aws_lambda_events::event::sqs::SqsBatchResponse::default();
            r.batch_item_failures = e
                .records
                .iter()
                .map(|m| {
                    let mut f = aws_lambda_events::event::sqs::BatchItemFailure::default();
                    f.item_identifier = m.message_id.clone().unwrap_or_default();
                    f
                })
                .collect();
            *got.lock().unwrap() = e;
            std::future::ready(r)
        })
        .await
        .expect("receive");
        got.into_inner().unwrap()
    }

    /// Visible plus in-flight messages.
    pub async fn depth(&self, queue_url: &str) -> u64 {
        let (visible, in_flight) = self.visible_and_in_flight(queue_url).await;
        visible + in_flight
    }

    /// Messages visible, and messages received and not yet deleted or made visible.
    pub async fn visible_and_in_flight(&self, queue_url: &str) -> (u64, u64) {
        let out = self
            .sqs()
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let attrs = out.attributes().cloned().unwrap_or_default();
        let n = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        (
            n(QueueAttributeName::ApproximateNumberOfMessages),
            n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Every queue of the stack, with its depth.
    pub async fn all_depths(&self) -> Vec<(String, u64)> {
        let s = &self.stack;
        let mut out = Vec::new();
        for url in [
            &s.ingest_queue_url,
            &s.ingest_dlq_url,
            &s.dispatch_queue_url,
            &s.dispatch_dlq_url,
            &s.dispatch_fifo_queue_url,
            &s.dispatch_fifo_dlq_url,
        ] {
            out.push((url.clone(), self.depth(url).await));
        }
        out
    }

    /// Receives what a DLQ holds (and leaves it invisible for a while).
    pub async fn drain(&self, queue_url: &str) -> Vec<DlqMessage> {
        let mut out = Vec::new();
        for _ in 0..100 {
            let r = self
                .sqs()
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive");
            if r.messages().is_empty() {
                break;
            }
            for m in r.messages() {
                let attributes = switchyard_ops::dlq::string_attributes(m).into_iter().collect();
                out.push(DlqMessage { body: m.body().unwrap_or_default().to_owned(), attributes });
            }
        }
        out
    }
}

impl Drop for LocalAws {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[derive(Debug, Clone)]
pub struct DlqMessage {
    pub body: String,
    pub attributes: HashMap<String, String>,
}

/// Local signing secrets, as documented in the README.
pub fn local_secret(name: &str) -> String {
    let text = std::fs::read_to_string(repo().join("infra/local-secrets.json")).expect("local secrets");
    let all: HashMap<String, String> = serde_json::from_str(&text).expect("local secrets JSON");
    all.get(name).cloned().unwrap_or_else(|| panic!("no local secret {name}"))
}

pub fn fixture(rel: &str) -> String {
    std::fs::read_to_string(repo().join("events").join(rel)).unwrap_or_else(|e| panic!("events/{rel}: {e}"))
}

/// The checked-in flow file, with every destination pointed at `sink` and quick retries.
pub fn config_for(sink: SocketAddr) -> Config {
    let mut config = Config::load(&repo().join("config/flows.toml")).expect("flow file");
    for d in config.destinations.values_mut() {
        d.base_url = format!("http://{sink}");
        d.retry.base_delay_ms = 500;
        d.retry.max_delay_ms = 1_000;
    }
    config
}

/// Everything one end-to-end test needs.
pub struct World {
    pub aws: LocalAws,
    pub sink: Sink,
    pub pipeline: Pipeline,
    pub http: reqwest::Client,
    /// The flow file the pipeline runs (for more dispatcher containers).
    pub config: Arc<Config>,
}

impl World {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(customize: impl FnOnce(&mut Config)) -> Self {
        switchyard_common::runtime::init_logging();
        let aws = LocalAws::start().await;
        let sink = Sink::default();
        let sink_addr = sink.clone().start_apart("127.0.0.1:0".parse().unwrap()).expect("sink");
        let mut config = config_for(sink_addr);
        customize(&mut config);
        let config = Arc::new(config);
        let deps = Deps::new(&aws.sdk, &aws.stack, config.clone()).await.expect("deps");
        let pipeline =
            Pipeline::start(&aws.sdk, &aws.stack, deps, "127.0.0.1:0".parse().unwrap()).await.expect("pipeline");
        Self { aws, sink, pipeline, http: http_client(), config }
    }

    /// Starts `n` more dispatcher containers on the same queues (each with its own
    /// caches); dropping the handles does not stop them, aborting does.
    pub async fn more_dispatchers(&self, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let deps = Deps::new(&self.aws.sdk, &self.aws.stack, self.config.clone()).await.expect("deps");
            tasks.extend(switchyard_local::pipeline::dispatcher_pollers(
                &self.aws.sdk,
                &self.aws.stack,
                deps.dispatcher,
            ));
        }
        tasks
    }

    /// Posts `body` to `/hooks/{source}` with extra headers; returns status and JSON answer.
    pub async fn post(
        &self,
        source: &str,
        body: &[u8],
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
    ) -> (u16, Value) {
        let mut req = self.http.post(self.pipeline.intake_url(source)).body(body.to_vec());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.expect("intake reachable");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Posts `body` signed as Stripe signs, with the local secret, at `timestamp`.
    pub async fn post_stripe_at(&self, body: &str, secret: &str, timestamp: i64) -> (u16, Value) {
        let headers = sign(
            &switchyard_common::signature::Scheme::Stripe,
            &SigningSecret::new(secret),
            body.as_bytes(),
            timestamp,
            "",
        )
        .expect("sign");
        self.post("stripe", body.as_bytes(), headers).await
    }

    /// The events (the body's `event`) the destination received at `path`, in arrival
    /// order, with the status it answered.
    pub fn sent_to(&self, path: &str) -> Vec<(String, u16)> {
        self.sink
            .received()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| (r.body["event"].as_str().unwrap_or_default().to_owned(), r.answered))
            .collect()
    }

    /// Posts `body` to `source` signed as its flow-file scheme says, with its local
    /// secret, now; `id` is the event id for schemes that carry it in a header.
    pub async fn post_signed(
        &self,
        source: &str,
        body: &[u8],
        id: &str,
        extra: Vec<(http::HeaderName, http::HeaderValue)>,
    ) -> (u16, Value) {
        let s = &self.config.sources[source];
        let mut headers =
            sign(&s.scheme, &SigningSecret::new(local_secret(&s.secret)), body, now_ms() / 1000, id).expect("sign");
        headers.extend(extra);
        self.post(source, body, headers).await
    }

    pub async fn post_stripe(&self, body: &str) -> (u16, Value) {
        self.post_stripe_at(body, &local_secret("source/stripe"), now_ms() / 1000).await
    }
}

/// Polls `check` until it is true or `timeout` passes; returns whether it became true.
pub async fn eventually(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Lets the pipeline run for `d` (to show that nothing more happens).
pub async fn settle(d: Duration) {
    tokio::time::sleep(d).await;
}

/// A Stripe `payment_intent.succeeded` event with the given id, from the fixture.
pub fn stripe_payment(event_id: &str) -> Value {
    let mut v: Value = serde_json::from_str(&fixture("stripe/payment_intent.succeeded.json")).expect("fixture JSON");
    v["id"] = Value::String(event_id.to_owned());
    v
}

/// A delivery of an ordered flow: grouped by `group`, sent to `/{group}`, its body
/// naming the event (see [`World::sent_to`]).
pub fn ordered_delivery(event_id: &str, group: &str) -> switchyard_common::envelope::Delivery {
    let mut d = delivery(event_id, serde_json::json!({"event": event_id}));
    d.ordering_key = Some(group.to_owned());
    d.path = format!("/{group}");
    d
}

/// A delivery for the example flow, as the mapper would build it.
pub fn delivery(event_id: &str, body: Value) -> switchyard_common::envelope::Delivery {
    switchyard_common::envelope::Delivery {
        delivery_id: format!("stripe:{event_id}:stripe-payment-to-crm-contact:v1"),
        event_id: event_id.to_owned(),
        source: "stripe".into(),
        event_type: "payment_intent.succeeded".into(),
        correlation_id: format!("corr-{event_id}"),
        flow: "stripe-payment-to-crm-contact".into(),
        flow_version: 1,
        destination: "crm".into(),
        method: "POST".into(),
        path: "/api/contacts".into(),
        mode: switchyard_common::envelope::Mode::Live,
        idempotency_key: switchyard_common::envelope::Delivery::default_key(
            "stripe",
            event_id,
            "stripe-payment-to-crm-contact",
            1,
        ),
        ordering_key: None,
        entity_version: None,
        entity: None,
        accepted_at_ms: None,
        body,
    }
}

/// What API Gateway hands intake for a Stripe event signed now with the local secret.
pub fn signed_stripe_request(body: &str) -> aws_lambda_events::event::apigw::ApiGatewayV2httpRequest {
    let mut req = aws_lambda_events::event::apigw::ApiGatewayV2httpRequest::default();
    req.request_context.http.method = http::Method::POST;
    req.raw_path = Some("/hooks/stripe".into());
    req.path_parameters.insert("source".into(), "stripe".into());
    let secret = SigningSecret::new(local_secret("source/stripe"));
    for (name, value) in
        sign(&switchyard_common::signature::Scheme::Stripe, &secret, body.as_bytes(), now_ms() / 1000, "")
            .expect("sign")
    {
        req.headers.insert(name, value);
    }
    req.body = Some(body.to_owned());
    req
}
