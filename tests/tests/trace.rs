//! `switchyard-ops trace`: the history of a delivered, a retried and a parked event,
//! read back from the ledger with the one Query the layout allows.

use std::time::Duration;

use switchyard_common::ledger::{IdempotencyStore, RecordKey};
use switchyard_e2e::{eventually, stripe_payment, World};
use switchyard_local::sink::Reply;
use switchyard_ops::trace;

async fn timeline(w: &World, event_id: &str) -> String {
    let records = w.aws.ledger().history(&RecordKey::event_pk("stripe", event_id)).await.unwrap();
    trace::render_text(&format!("stripe/{event_id}"), &trace::timeline(records))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_shows_the_whole_history_of_a_delivered_a_retried_and_a_parked_event() {
    let w = World::start().await;
    // delivered at once; retried once (503, then 201); parked (400).
    w.sink.script([Reply::Status(201), Reply::Status(503)]);
    assert_eq!(w.post_stripe(&stripe_payment("evt_ok").to_string()).await.0, 202);
    assert!(eventually(Duration::from_secs(15), async || w.sink.received().len() == 1).await);
    assert_eq!(w.post_stripe(&stripe_payment("evt_retried").to_string()).await.0, 202);
    assert!(eventually(Duration::from_secs(20), async || w.sink.received().len() == 3).await);
    w.sink.answer_by_default(Reply::Status(400));
    assert_eq!(w.post_stripe(&stripe_payment("evt_parked").to_string()).await.0, 202);
    assert!(eventually(Duration::from_secs(20), async || w.sink.received().len() == 4).await);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ok = timeline(&w, "evt_ok").await;
    assert!(ok.contains("intake") && ok.contains("enqueued"), "{ok}");
    assert!(ok.contains("delivery stripe-payment-to-crm-contact v1 → crm") && ok.contains("HTTP 201"), "{ok}");

    let retried = timeline(&w, "evt_retried").await;
    assert!(retried.contains("COMPLETED") && retried.contains("attempts 2"), "{retried}");
    assert!(retried.contains("last error (transient): HTTP 503 from crm"), "{retried}");

    let parked = timeline(&w, "evt_parked").await;
    assert!(parked.contains("intake"), "{parked}");
    assert!(parked.contains("PARKED") && parked.contains("last error (terminal): HTTP 400 from crm"), "{parked}");

    let json =
        trace::render_json("x", &w.aws.ledger().history(&RecordKey::event_pk("stripe", "evt_ok")).await.unwrap());
    assert_eq!(json["steps"].as_array().unwrap().len(), 2);
}
