//! Every log line written while handling a record carries its ids, end to end.
//!
//! The logs are captured as in `redaction.rs`: this test installs the production
//! logger (`runtime::init_logging_to`: the same line format, the same redacting
//! writer) over an in-memory buffer before the harness starts the pipeline in this
//! process, and this binary holds a single test, so the capture holds exactly the
//! lines of its own run. The run covers the paths an operator searches the logs for:
//! good events (one posted twice), an event the mapping cannot map (parked in the
//! ingest DLQ from inside a `flow` span nested in the `envelope` span), an event the
//! destination first refuses with a 503 (retried, then delivered), and a message on the
//! dispatch queue that is not a delivery at all (parked from the batch layer's span).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_sqs::types::MessageAttributeValue;
use http::{HeaderName, HeaderValue};
use serde_json::Value;
use switchyard_common::envelope::Delivery;
use switchyard_common::logging::capture::Buffer;
use switchyard_common::runtime::now_ms;
use switchyard_common::signature::{sign, Scheme, SigningSecret};
use switchyard_e2e::{eventually, fixture, local_secret, settle, stripe_payment, World};
use switchyard_local::sink::Reply;

const WAIT: Duration = Duration::from_secs(30);
const FLOW: &str = "stripe-payment-to-crm-contact";
const DESTINATION: &str = "crm";

fn idempotency_key(event_id: &str) -> String {
    Delivery::default_key("stripe", event_id, FLOW, 1)
}

fn text<'a>(line: &'a Value, key: &str) -> Option<&'a str> {
    line.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Posts `event` signed as Stripe signs it, with `correlation_id` as the caller's
/// `X-Correlation-Id`; returns intake's status.
async fn post_with_correlation_id(w: &World, event: &Value, correlation_id: &str) -> u16 {
    let body = event.to_string();
    let secret = SigningSecret::new(local_secret("source/stripe"));
    let mut headers = sign(&Scheme::Stripe, &secret, body.as_bytes(), now_ms() / 1000, "").expect("sign");
    headers.push((HeaderName::from_static("x-correlation-id"), HeaderValue::from_str(correlation_id).unwrap()));
    let (status, answer) = w.post("stripe", body.as_bytes(), headers).await;
    if status == 202 {
        assert_eq!(answer["correlation_id"], correlation_id, "intake keeps the caller's correlation id");
    }
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_logged_while_handling_a_record_carries_its_correlation_id_event_id_source_flow_and_destination() {
    let captured = Buffer::default();
    captured.install();
    let w = World::start().await;
    // event id → the correlation ids of its requests, the accepted one first.
    let mut correlation: HashMap<String, Vec<String>> = HashMap::new();
    let mut post = async |event: &Value| {
        let id = event["id"].as_str().unwrap().to_owned();
        let ids = correlation.entry(id.clone()).or_default();
        ids.push(format!("corr-{id}-{}", ids.len() + 1));
        let status = post_with_correlation_id(&w, event, ids.last().unwrap()).await;
        assert_eq!(status, if ids.len() == 1 { 202 } else { 200 }, "{id}");
    };

    // Retried: the destination answers 503 to its first request.
    w.sink.script([Reply::Status(503)]);
    let retried = "evt_logs_retried";
    post(&stripe_payment(retried)).await;
    let delivered = |id: &str| {
        let key = idempotency_key(id);
        w.sink.received().iter().any(|r| r.answered == 201 && r.header("idempotency-key") == Some(key.as_str()))
    };
    assert!(eventually(WAIT, async || delivered(retried)).await, "the retried event was not delivered");

    let good = ["evt_logs_good_1", "evt_logs_good_2", "evt_logs_good_3"];
    for id in good {
        post(&stripe_payment(id)).await;
    }
    post(&stripe_payment(good[0])).await; // a duplicate: intake answers 200
    let parked = "evt_logs_parked";
    let mut no_email: Value = serde_json::from_str(&fixture("stripe/payment_intent.succeeded.no-email.json")).unwrap();
    no_email["id"] = Value::String(parked.into());
    post(&no_email).await;

    // Not a delivery, with the ids the mapper puts in a delivery's attributes.
    let malformed = "evt_logs_malformed";
    let malformed_ids = [
        ("correlation_id", "corr-logs-malformed"),
        ("event_id", malformed),
        ("source", "stripe"),
        ("flow", FLOW),
        ("destination", DESTINATION),
    ];
    correlation.insert(malformed.into(), vec![malformed_ids[0].1.into()]);
    let mut send = w.aws.sqs().send_message().queue_url(&w.aws.stack.dispatch_queue_url).message_body("{\"flow\": 7}");
    for (name, value) in malformed_ids {
        let attribute = MessageAttributeValue::builder().data_type("String").string_value(value).build().unwrap();
        send = send.message_attributes(name, attribute);
    }
    send.send().await.expect("send the malformed delivery");

    assert!(eventually(WAIT, async || good.iter().all(|id| delivered(id))).await, "good events not delivered");
    let (ingest_dlq, dispatch_dlq) = (&w.aws.stack.ingest_dlq_url, &w.aws.stack.dispatch_dlq_url);
    assert!(eventually(WAIT, async || w.aws.depth(ingest_dlq).await == 1).await, "unmappable event not parked");
    assert!(eventually(WAIT, async || w.aws.depth(dispatch_dlq).await == 1).await, "malformed delivery not parked");
    settle(Duration::from_secs(1)).await;

    let logs = captured.text();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not a JSON log line: {l}")))
        .collect();

    // Every line of the run was written while handling a record (intake's request, a
    // queue record): each carries the ids of the one it was about, and the right ones.
    let mut missing = Vec::new();
    let mut story: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in &lines {
        let (Some(event_id), Some(correlation_id), Some(source)) =
            (text(line, "event_id"), text(line, "correlation_id"), text(line, "source"))
        else {
            missing.push(line);
            continue;
        };
        let span = line["span"]["name"].as_str().unwrap_or_default();
        let requests = correlation.get(event_id).unwrap_or_else(|| panic!("an event of this run: {line}"));
        // Intake logs each request under its own id; what follows, under the accepted one's.
        let expected = if span == "intake" { requests.as_slice() } else { &requests[..1] };
        assert!(expected.iter().any(|c| c == correlation_id), "{line}");
        assert_eq!(source, "stripe", "{line}");
        story.entry(event_id.to_owned()).or_default().push(text(line, "message").unwrap_or_default().to_owned());

        // Once the flow is known (the mapper's work per flow, the dispatcher), it and
        // its destination are on the line.
        let flow_known = matches!(span, "flow" | "delivery") || text(line, "flow").is_some() || event_id == malformed;
        if flow_known {
            assert_eq!((text(line, "flow"), text(line, "destination")), (Some(FLOW), Some(DESTINATION)), "{line}");
        }
    }
    assert!(missing.is_empty(), "lines without correlation_id, event_id and source: {missing:#?}");

    // An operator searching by event id finds what happened to it.
    let has = |id: &str, expected: &[&str]| {
        let messages = story.get(id).cloned().unwrap_or_default();
        for m in expected {
            assert!(messages.iter().any(|s| s == m), "{id}: no {m:?} line among {messages:?}");
        }
    };
    has(retried, &["accepted", "mapped", "will retry", "delivered"]);
    for id in good {
        has(id, &["accepted", "mapped", "delivered"]);
    }
    has(good[0], &["duplicate"]);
    has(parked, &["accepted", "parked in the ingest DLQ"]);
    has(malformed, &["parked in the dispatch DLQ"]);
    let park = lines.iter().find(|l| text(l, "event_id") == Some(parked) && text(l, "reason").is_some()).unwrap();
    assert_eq!(park["span"]["name"], "flow", "the park line is logged inside the nested flow span: {park}");
}
