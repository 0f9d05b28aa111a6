//! Issue 3: duplicates, concurrent workers, dead workers and retries are harmless.
//! Real ledger (DynamoDB API of moto), real queues, real HTTP destination.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use switchyard_common::ledger::Status;
use switchyard_common::runtime::now_ms;
use switchyard_e2e::{config_for, delivery, eventually, settle, stripe_payment, LocalAws, World};
use switchyard_local::pipeline::Deps;
use switchyard_local::sink::{Reply, Sink};

async fn dispatcher_world(sink: &Sink) -> (LocalAws, switchyard_dispatcher::Deps) {
    let aws = LocalAws::start().await;
    let addr = sink.clone().start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let deps = Deps::new(&aws.sdk, &aws.stack, Arc::new(config_for(addr))).await.unwrap();
    (aws, deps.dispatcher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_handling_the_same_delivery_at_the_same_moment_call_the_destination_once() {
    let sink = Sink::default();
    // Slow enough that both workers are inside the call window together.
    sink.answer_by_default(Reply::Delay(Duration::from_millis(800), 201));
    let (aws, dispatcher) = dispatcher_world(&sink).await;
    let url = aws.stack.dispatch_queue_url.clone();
    aws.enqueue_deliveries(&url, &[delivery("evt_race", json!({"email": "a@example.com"}))]).await;
    let event = aws.receive_event(&url).await;
    assert_eq!(event.records.len(), 1);

    let deadline = now_ms() + 15_000;
    let (a, b) = tokio::join!(
        switchyard_dispatcher::handle(&dispatcher, event.clone(), deadline),
        switchyard_dispatcher::handle(&dispatcher, event, deadline),
    );
    settle(Duration::from_millis(500)).await;
    assert_eq!(sink.received().len(), 1, "the destination was called twice");
    let failed = a.batch_item_failures.len() + b.batch_item_failures.len();
    assert_eq!(failed, 1, "the loser leaves the message for later, it does not drop it");
    let history = aws.history("stripe", "evt_race").await;
    assert_eq!((history[0].status, history[0].attempts), (Status::Completed, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_after_claiming_is_taken_over_after_its_in_progress_expiry_with_the_same_key() {
    let sink = Sink::default();
    sink.script([Reply::Delay(Duration::from_secs(5), 201), Reply::Status(201)]);
    let (aws, dispatcher) = dispatcher_world(&sink).await;
    let url = aws.stack.dispatch_queue_url.clone();
    aws.enqueue_deliveries(&url, &[delivery("evt_dies", json!({"n": 1}))]).await;
    let event = aws.receive_event(&url).await;

    // Worker 1 claims with a 2 s deadline, calls the destination, and dies mid-call.
    let claimed_at = now_ms();
    let dispatcher = Arc::new(dispatcher);
    let first = {
        let (d, e) = (dispatcher.clone(), event.clone());
        tokio::spawn(async move { switchyard_dispatcher::handle(&d, e, claimed_at + 2_000).await })
    };
    assert!(eventually(Duration::from_secs(5), async || sink.received().len() == 1).await);
    first.abort();

    // Before the expiry the claim holds.
    let early = switchyard_dispatcher::handle(&dispatcher, event.clone(), now_ms() + 15_000).await;
    assert_eq!(early.batch_item_failures.len(), 1, "taken over before the in-progress expiry");
    assert_eq!(sink.received().len(), 1);

    tokio::time::sleep(Duration::from_millis((claimed_at + 2_100 - now_ms()).max(0) as u64)).await;
    let late = switchyard_dispatcher::handle(&dispatcher, event, now_ms() + 15_000).await;
    assert!(late.batch_item_failures.is_empty());
    let received = sink.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].header("idempotency-key"), received[1].header("idempotency-key"));
    let history = aws.history("stripe", "evt_dies").await;
    assert_eq!((history[0].status, history[0].attempts), (Status::Completed, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_delivery_key_with_a_different_payload_is_refused_and_parked_as_payload_mismatch() {
    let sink = Sink::default();
    let (aws, dispatcher) = dispatcher_world(&sink).await;
    let url = aws.stack.dispatch_queue_url.clone();
    aws.enqueue_deliveries(&url, &[delivery("evt_same", json!({"amount": 1}))]).await;
    let first = aws.receive_event(&url).await;
    assert!(switchyard_dispatcher::handle(&dispatcher, first, now_ms() + 15_000).await.batch_item_failures.is_empty());
    aws.sqs().purge_queue().queue_url(&url).send().await.unwrap();

    aws.enqueue_deliveries(&url, &[delivery("evt_same", json!({"amount": 999}))]).await;
    let second = aws.receive_event(&url).await;
    let r = switchyard_dispatcher::handle(&dispatcher, second, now_ms() + 15_000).await;
    assert!(r.batch_item_failures.is_empty(), "a terminal refusal is not retried");
    let parked = aws.drain(&aws.stack.dispatch_dlq_url).await;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].attributes["reason"], "payload_mismatch");
    assert!(parked[0].body.contains("999"));
    assert_eq!(sink.received().len(), 1, "the second payload never reached the destination");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_2_is_not_retried_sooner_than_2_seconds_later() {
    let w = World::start().await;
    w.sink.script([Reply::StatusWithRetryAfter(429, 2), Reply::Status(201)]);
    assert_eq!(w.post_stripe(&stripe_payment("evt_429").to_string()).await.0, 202);
    assert!(eventually(Duration::from_secs(20), async || w.sink.received().len() == 2).await);
    let r = w.sink.received();
    let gap = r[1].received_at_ms - r[0].received_at_ms;
    assert!(gap >= 2_000, "retried after {gap} ms despite Retry-After: 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_timeouts_back_off_with_growing_delays_then_park_saying_the_timed_out_attempt_may_have_arrived(
) {
    let w = World::start_with(|c| {
        let crm = c.destinations.get_mut("crm").unwrap();
        crm.retry.max_attempts = 4;
        crm.retry.base_delay_ms = 1_000;
        crm.retry.max_delay_ms = 8_000;
        crm.timeout = Duration::from_millis(500);
    })
    .await;
    w.sink.script([Reply::Status(503), Reply::Delay(Duration::from_secs(2), 201), Reply::Status(502)]);
    w.sink.answer_by_default(Reply::Status(503));
    assert_eq!(w.post_stripe(&stripe_payment("evt_backoff").to_string()).await.0, 202);

    let dlq = w.aws.stack.dispatch_dlq_url.clone();
    assert!(eventually(Duration::from_secs(40), async || w.aws.depth(&dlq).await == 1).await, "never parked");
    let times: Vec<i64> = w.sink.received().iter().map(|r| r.received_at_ms).collect();
    assert_eq!(times.len(), 4, "the budget is four attempts");
    let gaps: Vec<i64> = times.windows(2).map(|t| t[1] - t[0]).collect();
    // Ceilings 1 s, 2 s, 4 s with equal jitter: each delay at least the previous ceiling.
    assert!(gaps[0] >= 500 && gaps[1] >= 1_000 && gaps[2] >= 2_000, "gaps {gaps:?}");
    assert!(gaps[2] > gaps[0], "gaps {gaps:?}");
    let parked = w.aws.drain(&dlq).await;
    let a = &parked[0].attributes;
    // The second attempt timed out after the request was sent, and the destination did
    // store it (its 201 came too late): the park says the outcome is unknown.
    assert_eq!(
        a["reason"],
        "outcome unknown: 1 of 4 attempts got no answer after sending, so crm may have it; \
         retry budget exhausted after 4 attempts; last error: HTTP 503 from crm"
    );
    assert_eq!(w.sink.received()[1].answered, 201, "the timed-out attempt was stored");
    assert_eq!(a["attempts"], "4");
    let history = w.aws.history("stripe", "evt_backoff").await;
    let record = history.iter().find(|h| h.key.sk.starts_with("DELIVERY#")).unwrap();
    assert_eq!((record.status, record.attempts), (Status::Parked, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_refreshes_the_credentials_and_after_the_secret_is_corrected_delivers_with_one_permission_failure() {
    // A retry delay long enough for the test to correct the secret in between.
    let w = World::start_with(|c| {
        let crm = c.destinations.get_mut("crm").unwrap();
        crm.retry.base_delay_ms = 4_000;
        crm.retry.max_delay_ms = 8_000;
    })
    .await;
    w.sink.require_header("x-api-key", "the-corrected-key");
    assert_eq!(w.post_stripe(&stripe_payment("evt_401").to_string()).await.0, 202);

    // First attempt: 401, refresh, 401 again (the secret is still wrong).
    assert!(eventually(Duration::from_secs(20), async || w.sink.received().len() >= 2).await);
    w.aws.put_secret("destination/crm", r#"{"api_key":"the-corrected-key"}"#).await;

    assert!(
        eventually(Duration::from_secs(30), async || {
            w.sink.received().iter().any(|r| r.header("x-api-key") == Some("the-corrected-key"))
        })
        .await,
        "never retried with the corrected key"
    );
    settle(Duration::from_secs(1)).await;
    let history = w.aws.history("stripe", "evt_401").await;
    let record = history.iter().find(|h| h.key.sk.starts_with("DELIVERY#")).unwrap();
    assert_eq!(record.status, Status::Completed);
    assert_eq!(record.permission_failures, 1);
    let sent_keys: Vec<_> =
        w.sink.received().iter().map(|r| r.header("x-api-key").unwrap_or_default().to_owned()).collect();
    assert_eq!(sent_keys[..2], ["local-crm-api-key", "local-crm-api-key"], "one refresh per attempt");
    assert_eq!(w.aws.depth(&w.aws.stack.dispatch_dlq_url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flows_own_idempotency_key_is_the_claim_shared_by_every_event_that_yields_it() {
    // Keyed by the PaymentIntent: a second event about it (same payload) is a duplicate.
    let w = World::start_with(|c| {
        c.flows[0].idempotency_key =
            Some(switchyard_common::mapping::JqProgram::compile("key", ".data.object.id").unwrap());
    })
    .await;
    assert_eq!(w.post_stripe(&stripe_payment("evt_key_1").to_string()).await.0, 202);
    assert!(eventually(Duration::from_secs(15), async || w.sink.received().len() == 1).await);
    assert_eq!(w.post_stripe(&stripe_payment("evt_key_2").to_string()).await.0, 202);
    let ingest = w.aws.stack.ingest_queue_url.clone();
    let dispatch = w.aws.stack.dispatch_queue_url.clone();
    assert!(
        eventually(Duration::from_secs(15), async || {
            w.aws.depth(&ingest).await + w.aws.depth(&dispatch).await == 0
                && w.aws.history("stripe", "evt_key_2").await.len() == 2
        })
        .await
    );
    let received = w.sink.received();
    assert_eq!(received.len(), 1, "one call per key");
    assert_eq!(received[0].header("idempotency-key"), Some("pi_3QfExamplePaymentIntent1"));
    for event in ["evt_key_1", "evt_key_2"] {
        let history = w.aws.history("stripe", event).await;
        let delivery = history.iter().find(|h| h.key.sk.starts_with("DELIVERY#")).expect("mirrored outcome");
        assert_eq!((delivery.status, delivery.summary.as_deref()), (Status::Completed, Some("HTTP 201")), "{event}");
    }
}
