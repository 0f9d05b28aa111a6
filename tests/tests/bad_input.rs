//! Bad input is terminal and bounded, end to end against moto: characters SQS
//! refuses, deliveries over SQS's limits, requests that cannot be built. Each test
//! asserts the answer or the DLQ reason, and that nothing is left to loop.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use serde_json::json;
use switchyard_common::config::Config;
use switchyard_common::envelope::{Delivery, Envelope};
use switchyard_common::mapping::JqProgram;
use switchyard_common::queue::is_sqs_char;
use switchyard_common::runtime::now_ms;
use switchyard_e2e::{
    config_for, delivery, eventually, settle, signed_stripe_request, stripe_payment, LocalAws, World,
};

const WAIT: Duration = Duration::from_secs(30);

/// Receives the raw bodies a queue holds, as SQS hands them out, and deletes them.
async fn take_bodies(aws: &LocalAws, queue_url: &str) -> Vec<String> {
    let sqs = aws.sqs();
    let out = sqs.receive_message().queue_url(queue_url).max_number_of_messages(10).wait_time_seconds(2).send().await;
    let mut bodies = Vec::new();
    for m in out.expect("receive").messages() {
        bodies.push(m.body().unwrap_or_default().to_owned());
        sqs.delete_message().queue_url(queue_url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn characters_sqs_refuses_are_sent_escaped_by_intake_and_mapper_and_parse_back_unchanged() {
    let aws = LocalAws::start().await;
    let nowhere = "127.0.0.1:9".parse().unwrap();
    let deps =
        switchyard_local::pipeline::Deps::new(&aws.sdk, &aws.stack, Arc::new(config_for(nowhere))).await.unwrap();
    let name = "Jenny \u{FFFE}\u{FFFF} Rosen \u{1} \u{1F600}";
    let mut payment = stripe_payment("evt_nonchar");
    payment["data"]["object"]["shipping"]["name"] = json!(name);
    // What a provider sends: the JSON escape, since raw control characters are not JSON.
    let body = serde_json::to_string(&payment).unwrap();

    let answer = switchyard_intake::handle(&deps.intake, signed_stripe_request(&body), now_ms() + 10_000).await;
    assert_eq!(answer.status_code, 202, "{:?}", answer.body);
    let on_ingest = take_bodies(&aws, &aws.stack.ingest_queue_url).await;
    assert_eq!(on_ingest.len(), 1);
    assert!(on_ingest[0].chars().all(is_sqs_char), "intake sent a character SQS refuses: {:?}", on_ingest[0]);
    let envelope = Envelope::from_json(&on_ingest[0]).unwrap();
    assert_eq!(envelope.data, payment, "the event is recoverable byte for byte");

    let mut message = SqsMessage::default();
    message.message_id = Some("m1".into());
    message.body = Some(on_ingest[0].clone());
    let mut event = SqsEvent::default();
    event.records = vec![message];
    assert!(switchyard_mapper::handle(&deps.mapper, event).await.batch_item_failures.is_empty());
    let on_dispatch = take_bodies(&aws, &aws.stack.dispatch_queue_url).await;
    assert_eq!(on_dispatch.len(), 1);
    assert!(on_dispatch[0].chars().all(is_sqs_char), "the mapper sent a character SQS refuses: {:?}", on_dispatch[0]);
    assert_eq!(Delivery::from_json(&on_dispatch[0]).unwrap().body["name"], name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_over_the_sqs_limit_is_parked_too_large_and_nothing_loops() {
    let w = World::start_with(|config| {
        let flow = config.flows.iter_mut().find(|f| f.name == "stripe-payment-to-crm-contact").unwrap();
        flow.mapping =
            JqProgram::compile("huge.jq", r#"{email: .data.object.receipt_email, blob: ("x" * 270000)}"#).unwrap();
        flow.contract = None;
    })
    .await;
    let (status, answer) = w.post_stripe(&stripe_payment("evt_huge").to_string()).await;
    assert_eq!(status, 202, "{answer}");
    let dlq = &w.aws.stack.ingest_dlq_url;
    assert!(eventually(WAIT, async || w.aws.depth(dlq).await == 1).await, "nothing parked");
    let parked = w.aws.drain(dlq).await;
    assert_eq!(parked.len(), 1);
    let reason = &parked[0].attributes["reason"];
    assert!(reason.starts_with("too_large: the mapped delivery is "), "{reason}");
    assert_eq!(parked[0].attributes["error_class"], "terminal");
    assert_eq!(Envelope::from_json(&parked[0].body).unwrap().id, "evt_huge", "the envelope is parked");
    settle(Duration::from_secs(2)).await;
    for url in [&w.aws.stack.ingest_queue_url, &w.aws.stack.dispatch_queue_url, &w.aws.stack.dispatch_dlq_url] {
        assert_eq!(w.aws.depth(url).await, 0, "{url}");
    }
    assert!(w.sink.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_over_ten_deliveries_and_one_mebibyte_is_split_into_batches_sqs_accepts() {
    const FLOWS: usize = 11;
    let w = World::start_with(|config| {
        let url = config.destinations["crm"].base_url.clone();
        let mut text = String::from(
            "[sources.stripe]\nscheme = \"stripe\"\nevent_id = \"/id\"\nevent_type = \"/type\"\n\n\
             [destinations.crm]\nbase_url = \"http://127.0.0.1:1\"\nretry = { base_delay_ms = 500, max_delay_ms = 1000 }\n",
        );
        for i in 0..FLOWS {
            text.push_str(&format!(
                "\n[[flows]]\nname = \"fan-{i}\"\nversion = 1\nsource = \"stripe\"\nmapping = \"m.jq\"\n\
                 destination = \"crm\"\npath = \"/api/fan/{i}\"\n"
            ));
        }
        // ~110 KB each: ten of them (one unsplit batch) would be over moto's 1 MiB too.
        let mapping = r#"{id: .id, blob: ("z" * 110000)}"#.to_owned();
        *config = Config::parse("fan.toml", &text, |_| Ok(mapping.clone())).unwrap();
        config.destinations.get_mut("crm").unwrap().base_url = url;
    })
    .await;
    let (status, answer) = w.post_stripe(&stripe_payment("evt_fan").to_string()).await;
    assert_eq!(status, 202, "{answer}");
    assert!(
        eventually(WAIT, async || w.sink.received().len() >= FLOWS).await,
        "delivered {} of {FLOWS}",
        w.sink.received().len()
    );
    let mut paths: Vec<String> = w.sink.received().iter().map(|r| r.path.clone()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), FLOWS);
    assert!(w.aws.all_depths().await.iter().all(|(_, d)| *d == 0), "{:?}", w.aws.all_depths().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_request_cannot_be_built_is_parked_at_once_with_the_reason() {
    let w = World::start().await;
    let mut bad = delivery("evt_badkey", json!({"email": "a@example.com"}));
    bad.idempotency_key = "key with a\u{7f}delete".into();
    w.aws.enqueue_deliveries(&w.aws.stack.dispatch_queue_url, &[bad]).await;
    let dlq = &w.aws.stack.dispatch_dlq_url;
    assert!(eventually(WAIT, async || w.aws.depth(dlq).await == 1).await, "nothing parked");
    let parked = w.aws.drain(dlq).await;
    assert_eq!(parked.len(), 1);
    assert_eq!(
        parked[0].attributes["reason"],
        "request cannot be built: the idempotency key is not a valid HTTP header value"
    );
    assert_eq!(parked[0].attributes["attempts"], "1", "terminal at the first attempt, not retried");
    assert_eq!(w.aws.depth(&w.aws.stack.dispatch_queue_url).await, 0);
    assert!(w.sink.received().is_empty());
}
