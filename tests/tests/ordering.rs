//! Issue 3, ordering per key: the FIFO dispatch queue of moto, the dispatcher's two
//! event source mappings played by the runner, a real HTTP destination.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_common::envelope::Delivery;
use switchyard_common::ledger::Status;
use switchyard_e2e::{eventually, ordered_delivery, settle, stripe_payment, World};
use switchyard_local::sink::Reply;

fn ordered(event_id: &str, group: &str, version: i64) -> Delivery {
    let mut d = ordered_delivery(event_id, group);
    d.entity_version = Some(version);
    d
}

fn bodies_at(w: &World, path: &str) -> Vec<(String, u16)> {
    w.sent_to(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_group_does_not_hold_up_other_groups_and_each_group_arrives_in_order() {
    let w = World::start_with(|c| {
        let crm = c.destinations.get_mut("crm").unwrap();
        crm.retry.base_delay_ms = 2_000;
        crm.retry.max_delay_ms = 4_000;
    })
    .await;
    w.sink.answer_path("/b", Reply::Status(201));
    // Group a: its head fails twice before it succeeds (the script serves /a only).
    w.sink.script([Reply::Status(503), Reply::Status(503)]);
    let fifo = w.aws.stack.dispatch_fifo_queue_url.clone();
    let deliveries = [
        ordered("a1", "a", 1),
        ordered("b1", "b", 1),
        ordered("a2", "a", 2),
        ordered("b2", "b", 2),
        ordered("a3", "a", 3),
        ordered("b3", "b", 3),
    ];
    w.aws.enqueue_deliveries(&fifo, &deliveries).await;

    assert!(eventually(Duration::from_secs(20), async || bodies_at(&w, "/b").len() == 3).await, "group b stalled");
    let a_when_b_done = bodies_at(&w, "/a");
    assert!(
        a_when_b_done.iter().all(|(e, status)| e == "a1" && *status == 503),
        "group b finished while group a was still retrying its head: {a_when_b_done:?}"
    );
    let b: Vec<String> = bodies_at(&w, "/b").into_iter().map(|(e, _)| e).collect();
    assert_eq!(b, ["b1", "b2", "b3"]);

    assert!(
        eventually(Duration::from_secs(40), async || bodies_at(&w, "/a").len() == 5).await,
        "group a never finished"
    );
    let a = bodies_at(&w, "/a");
    let expected = [("a1", 503), ("a1", 503), ("a1", 201), ("a2", 201), ("a3", 201)];
    assert_eq!(a, expected.map(|(e, s)| (e.to_owned(), s)), "group a out of order");
    settle(Duration::from_secs(1)).await;
    assert_eq!(w.aws.depth(&fifo).await, 0);
    assert_eq!(w.aws.depth(&w.aws.stack.dispatch_fifo_dlq_url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_older_than_the_last_one_delivered_for_its_entity_is_skipped_and_recorded_stale() {
    let w = World::start().await;
    let fifo = w.aws.stack.dispatch_fifo_queue_url.clone();
    w.aws
        .enqueue_deliveries(&fifo, &[ordered("c_new", "c", 20), ordered("c_old", "c", 10), ordered("c_newer", "c", 30)])
        .await;

    assert!(eventually(Duration::from_secs(20), async || w.aws.depth(&fifo).await == 0).await);
    settle(Duration::from_secs(1)).await;
    let sent: Vec<String> = bodies_at(&w, "/c").into_iter().map(|(e, _)| e).collect();
    assert_eq!(sent, ["c_new", "c_newer"], "the stale version was sent");
    let history = w.aws.history("stripe", "c_old").await;
    assert_eq!(history[0].status, Status::Stale);
    assert!(history[0].reason.as_deref().unwrap_or_default().contains("version 10 is older than 20"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_with_an_ordering_key_goes_end_to_end_through_the_fifo_queue() {
    let w = World::start_with(|c| {
        let flow = &mut c.flows[0];
        flow.ordering_key = Some(switchyard_common::mapping::JqProgram::compile("k", ".data.object.customer").unwrap());
        flow.entity_version = Some(switchyard_common::mapping::JqProgram::compile("v", ".created").unwrap());
    })
    .await;
    for (i, created) in [(1, 100), (2, 200), (3, 300)] {
        let mut event = stripe_payment(&format!("evt_fifo_{i}"));
        event["created"] = json!(created);
        event["data"]["object"]["amount_received"] = json!(i);
        assert_eq!(w.post_stripe(&event.to_string()).await.0, 202);
    }
    assert!(eventually(Duration::from_secs(20), async || w.sink.received().len() == 3).await);
    let amounts: Vec<Value> = w.sink.received().iter().map(|r| r.body["total_spent_minor"].clone()).collect();
    assert_eq!(amounts, [json!(1), json!(2), json!(3)]);
    assert_eq!(w.aws.depth(&w.aws.stack.dispatch_queue_url).await, 0, "ordered flows bypass the standard queue");
}
