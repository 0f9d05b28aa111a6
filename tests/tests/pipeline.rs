//! The foundation, end to end: real SDK over HTTP to a moto server, real handlers,
//! real HTTP destination. Assertions are on what happened — the request the
//! destination received, the queues, the DLQ messages, the ledger records.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_common::ledger::Status;
use switchyard_common::runtime::now_ms;
use switchyard_e2e::{eventually, fixture, local_secret, settle, stripe_payment, World};
use switchyard_local::sink::Reply;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_stripe_payment_reaches_the_crm_as_the_golden_request_once_and_is_in_the_ledger() {
    let w = World::start().await;
    let golden: Value = serde_json::from_str(&fixture("golden/stripe-payment-to-crm-contact.json")).unwrap();
    let body = fixture(golden["input"].as_str().unwrap());
    let (status, answer) = w.post_stripe(&body).await;
    assert_eq!(status, 202, "{answer}");
    let event_id = answer["event_id"].as_str().unwrap().to_owned();

    assert!(eventually(WAIT, async || !w.sink.received().is_empty()).await, "nothing delivered");
    settle(Duration::from_secs(2)).await;
    let received = w.sink.received();
    assert_eq!(received.len(), 1, "delivered more than once: {received:?}");
    let r = &received[0];
    assert_eq!(r.method, golden["method"]);
    assert_eq!(r.path, golden["path"]);
    assert_eq!(r.body, golden["body"]);
    for (name, value) in golden["headers"].as_object().unwrap() {
        assert_eq!(r.header(name), value.as_str(), "header {name}");
    }
    assert_eq!(r.header("x-correlation-id"), answer["correlation_id"].as_str());
    assert!(r.header("idempotency-key").is_some_and(|k| k.len() >= 32));

    let history = w.aws.history("stripe", &event_id).await;
    let steps: Vec<(&str, Status)> = history.iter().map(|h| (h.key.sk.as_str(), h.status)).collect();
    assert_eq!(
        steps,
        vec![("DELIVERY#stripe-payment-to-crm-contact#v1", Status::Completed), ("INTAKE", Status::Completed)]
    );
    assert_eq!(history[0].summary.as_deref(), Some("HTTP 201"));
    assert!(w.aws.all_depths().await.iter().all(|(_, d)| *d == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_sent_twice_is_answered_duplicate_and_delivered_once() {
    let w = World::start().await;
    let body = stripe_payment("evt_twice").to_string();
    assert_eq!(w.post_stripe(&body).await.0, 202);
    let (status, answer) = w.post_stripe(&body).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("duplicate")));
    assert!(eventually(WAIT, async || !w.sink.received().is_empty()).await);
    settle(Duration::from_secs(3)).await;
    assert_eq!(w.sink.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_documented_answers_and_no_queue_holds_anything() {
    let w = World::start().await;
    let body = stripe_payment("evt_bad").to_string();
    let now = now_ms() / 1000;
    let secret = local_secret("source/stripe");

    let (s, a) = w.post_stripe_at(&body, "whsec_wrong", now).await;
    assert_eq!((s, a["error"].as_str()), (401, Some("signature_mismatch")));
    let (s, a) = w.post_stripe_at(&body, &secret, now - 600).await;
    assert_eq!((s, a["error"].as_str()), (401, Some("stale_timestamp")));
    let (s, a) = w.post("nope", body.as_bytes(), vec![]).await;
    assert_eq!((s, a["error"].as_str()), (404, Some("unknown_source")));
    let (s, a) = w.post_stripe("{\"id\": \"evt_x\", ").await;
    assert_eq!((s, a["error"].as_str()), (400, Some("malformed_json")));
    let big = json!({"id": "evt_big", "type": "payment_intent.succeeded", "pad": "x".repeat(300 * 1024)}).to_string();
    let (s, a) = w.post_stripe(&big).await;
    assert_eq!((s, a["error"].as_str()), (413, Some("body_too_large")));
    let (s, a) = w.post("stripe", body.as_bytes(), vec![]).await;
    assert_eq!((s, a["error"].as_str()), (401, Some("missing_signature")));

    settle(Duration::from_secs(2)).await;
    for (queue, depth) in w.aws.all_depths().await {
        assert_eq!(depth, 0, "{queue} holds messages");
    }
    assert!(w.sink.received().is_empty());
    assert!(w.aws.history("stripe", "evt_bad").await.is_empty(), "a rejected event left a ledger record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_answering_503_twice_then_201_gets_the_delivery_once_after_retries() {
    let w = World::start().await;
    w.sink.script([Reply::Status(503), Reply::Status(503), Reply::Status(201)]);
    let (status, answer) = w.post_stripe(&stripe_payment("evt_flaky").to_string()).await;
    assert_eq!(status, 202, "{answer}");

    assert!(eventually(Duration::from_secs(30), async || w.sink.received().len() >= 3).await, "no third attempt");
    settle(Duration::from_secs(3)).await;
    let received = w.sink.received();
    assert_eq!(received.len(), 3, "one delivery, three attempts");
    let keys: Vec<_> = received.iter().map(|r| r.header("idempotency-key").map(str::to_owned)).collect();
    assert!(keys.windows(2).all(|k| k[0] == k[1]), "the same Idempotency-Key on every attempt");
    let history = w.aws.history("stripe", "evt_flaky").await;
    let delivery = history.iter().find(|h| h.key.sk.starts_with("DELIVERY#")).unwrap();
    assert_eq!((delivery.status, delivery.attempts), (Status::Completed, 3));
    assert!(w.aws.all_depths().await.iter().all(|(_, d)| *d == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_answering_400_parks_the_delivery_in_the_dispatch_dlq_with_its_reason_at_once() {
    let w = World::start().await;
    w.sink.answer_by_default(Reply::Status(400));
    let (status, answer) = w.post_stripe(&stripe_payment("evt_rejected").to_string()).await;
    assert_eq!(status, 202);

    let dlq = w.aws.stack.dispatch_dlq_url.clone();
    assert!(eventually(WAIT, async || w.aws.depth(&dlq).await == 1).await, "nothing parked");
    let parked = w.aws.drain(&dlq).await;
    assert_eq!(parked.len(), 1);
    let a = &parked[0].attributes;
    assert_eq!(a["reason"], "HTTP 400 from crm");
    assert_eq!(a["error_class"], "terminal");
    assert_eq!(a["attempts"], "1", "a terminal error uses no retry budget");
    assert_eq!(a["flow"], "stripe-payment-to-crm-contact");
    assert_eq!(a["correlation_id"], answer["correlation_id"].as_str().unwrap());
    let delivery: Value = serde_json::from_str(&parked[0].body).unwrap();
    assert_eq!(delivery["event_id"], "evt_rejected", "the DLQ holds the delivery itself, replayable");
    assert_eq!(w.sink.received().len(), 1);
    let history = w.aws.history("stripe", "evt_rejected").await;
    let record = history.iter().find(|h| h.key.sk.starts_with("DELIVERY#")).unwrap();
    assert_eq!((record.status, record.reason.as_deref()), (Status::Parked, Some("HTTP 400 from crm")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_result_that_violates_the_contract_parks_the_envelope_in_the_ingest_dlq() {
    let w = World::start().await;
    let mut event = stripe_payment("evt_bad_currency");
    event["data"]["object"]["currency"] = json!(978);
    assert_eq!(w.post_stripe(&event.to_string()).await.0, 202);

    let dlq = w.aws.stack.ingest_dlq_url.clone();
    assert!(eventually(WAIT, async || w.aws.depth(&dlq).await == 1).await, "nothing parked");
    let parked = w.aws.drain(&dlq).await;
    let a = &parked[0].attributes;
    assert!(a["reason"].contains("contract") && a["reason"].contains("/currency"), "{}", a["reason"]);
    assert_eq!(a["error_class"], "terminal");
    assert_eq!(a["flow"], "stripe-payment-to-crm-contact");
    let envelope: Value = serde_json::from_str(&parked[0].body).unwrap();
    assert_eq!((envelope["specversion"].as_str(), envelope["id"].as_str()), (Some("1.0"), Some("evt_bad_currency")));
    assert!(w.sink.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_without_an_email_is_parked_with_a_clear_reason_and_never_sent() {
    let w = World::start().await;
    assert_eq!(w.post_stripe(&fixture("stripe/payment_intent.succeeded.no-email.json")).await.0, 202);
    let dlq = w.aws.stack.ingest_dlq_url.clone();
    assert!(eventually(WAIT, async || w.aws.depth(&dlq).await == 1).await, "nothing parked");
    let parked = w.aws.drain(&dlq).await;
    assert!(parked[0].attributes["reason"].contains("receipt_email is missing"), "{:?}", parked[0].attributes);
    assert!(w.sink.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_stripe_event_types_are_accepted_and_not_delivered() {
    let w = World::start().await;
    let (status, _) = w.post_stripe(&fixture("stripe/charge.refunded.json")).await;
    assert_eq!(status, 202);
    let ingest = w.aws.stack.ingest_queue_url.clone();
    assert!(eventually(WAIT, async || w.aws.depth(&ingest).await == 0).await, "the mapper did not take it");
    settle(Duration::from_secs(2)).await;
    assert!(w.sink.received().is_empty());
    for (queue, depth) in w.aws.all_depths().await {
        assert_eq!(depth, 0, "{queue}");
    }
}
