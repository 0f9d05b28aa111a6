//! Issue 7, retry accounting: attempts are counted in the ledger where they happen,
//! SQS's redrive is a backstop out of every budget's reach, and a parked delivery that
//! comes back (its worker died between the ledger write, the DLQ send and the delete)
//! is parked again, never tried again, and counted once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use switchyard_common::ledger::Status;
use switchyard_e2e::{config_for, delivery, eventually, ordered_delivery, settle, LocalAws, World};
use switchyard_local::pipeline::Deps;
use switchyard_local::sink::{Reply, Sink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_head_failing_seven_times_leaves_its_followers_untried_in_order_and_charged_only_their_own_sends() {
    let w = World::start_with(|c| {
        let crm = c.destinations.get_mut("crm").unwrap();
        // Eight attempts: the head's seven failures and its success fit the budget.
        crm.retry.max_attempts = 8;
    })
    .await;
    w.sink.script(std::iter::repeat_n(Reply::Status(503), 7));
    let fifo = w.aws.stack.dispatch_fifo_queue_url.clone();
    let group = ["head", "f1", "f2", "f3", "f4"];
    w.aws.enqueue_deliveries(&fifo, &group.map(|e| ordered_delivery(e, "g"))).await;

    let done =
        eventually(Duration::from_secs(90), async || w.sent_to("/g").iter().filter(|(_, s)| *s == 201).count() == 5);
    assert!(done.await, "the group never finished: {:?}", w.sent_to("/g"));
    settle(Duration::from_secs(1)).await;

    let mut expected: Vec<(String, u16)> = vec![("head".into(), 503); 7];
    expected.extend(group.iter().map(|e| (e.to_string(), 201)));
    assert_eq!(w.sent_to("/g"), expected, "the destination saw the group out of order or a follower early");
    assert_eq!(w.aws.depth(&w.aws.stack.dispatch_fifo_dlq_url).await, 0, "a follower was parked untried");
    assert_eq!(w.aws.depth(&fifo).await, 0);

    let sends: HashMap<String, usize> = group
        .iter()
        .map(|e| (e.to_string(), w.sink.received().iter().filter(|r| r.body["event"] == *e).count()))
        .collect();
    for e in group {
        let history = w.aws.history("stripe", e).await;
        assert_eq!(history.len(), 1, "{e}: {history:?}");
        assert_eq!(history[0].status, Status::Completed, "{e}");
        assert_eq!(history[0].attempts as usize, sends[e], "{e}: the ledger's attempts are not the sends");
    }
    assert_eq!(sends["head"], 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_received_many_times_without_being_tried_still_gets_its_whole_retry_budget() {
    let sink = Sink::default();
    let aws = LocalAws::start().await;
    let addr = sink.clone().start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut config = config_for(addr);
    config.destinations.get_mut("crm").unwrap().retry.max_attempts = 3;
    let url = aws.stack.dispatch_queue_url.clone();
    aws.enqueue_deliveries(&url, &[delivery("evt_returned", json!({"event": "evt_returned"}))]).await;
    // A worker that dies before claiming, six times: received, never tried.
    for _ in 0..6 {
        let event = aws.receive_event(&url).await;
        assert_eq!(event.records.len(), 1);
        let handle = event.records[0].receipt_handle.clone().unwrap();
        aws.sqs()
            .change_message_visibility()
            .queue_url(&url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }

    sink.script([Reply::Status(503), Reply::Status(503)]);
    let deps = Deps::new(&aws.sdk, &aws.stack, Arc::new(config)).await.unwrap();
    let pipeline =
        switchyard_local::pipeline::Pipeline::start(&aws.sdk, &aws.stack, deps, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let delivered = eventually(Duration::from_secs(30), async || sink.received().iter().any(|r| r.answered == 201));
    assert!(delivered.await, "parked before its budget was spent: {:?}", aws.drain(&aws.stack.dispatch_dlq_url).await);
    settle(Duration::from_secs(1)).await;
    drop(pipeline);
    assert_eq!(sink.received().len(), 3);
    let history = aws.history("stripe", "evt_returned").await;
    assert_eq!((history[0].status, history[0].attempts), (Status::Completed, 3));
    assert_eq!(aws.depth(&aws.stack.dispatch_dlq_url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_delivery_that_comes_back_is_parked_again_never_retried_and_its_copies_count_once() {
    let w = World::start().await;
    w.sink.answer_by_default(Reply::Status(400));
    let url = w.aws.stack.dispatch_queue_url.clone();
    let dlq = w.aws.stack.dispatch_dlq_url.clone();
    let d = delivery("evt_parked_twice", json!({"event": "evt_parked_twice"}));
    w.aws.enqueue_deliveries(&url, std::slice::from_ref(&d)).await;
    assert!(eventually(Duration::from_secs(20), async || w.aws.depth(&dlq).await == 1).await);

    // The worker died after the DLQ send and before the delete: the message is back.
    w.aws.enqueue_deliveries(&url, std::slice::from_ref(&d)).await;
    assert!(eventually(Duration::from_secs(20), async || w.aws.depth(&dlq).await == 2).await);
    // The worker died after recording the park and before the DLQ send: the DLQ
    // lost nothing it should hold once the message comes back.
    w.aws.sqs().purge_queue().queue_url(&dlq).send().await.unwrap();
    w.aws.enqueue_deliveries(&url, std::slice::from_ref(&d)).await;
    assert!(eventually(Duration::from_secs(20), async || w.aws.depth(&dlq).await == 1).await);
    settle(Duration::from_secs(1)).await;

    assert_eq!(w.sink.received().len(), 1, "a parked delivery was tried again");
    let parked = w.aws.drain(&dlq).await;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].attributes["reason"], "HTTP 400 from crm");
    assert_eq!(parked[0].attributes["attempts"], "1");
    assert_eq!(parked[0].attributes["delivery_id"], d.delivery_id);
    let history = w.aws.history("stripe", "evt_parked_twice").await;
    assert_eq!((history[0].status, history[0].attempts), (Status::Parked, 1));
    assert_eq!(w.aws.depth(&url).await, 0, "the returning copies must not loop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_budget_the_redrive_backstop_could_cut_short_stops_the_cold_start_naming_both_numbers() {
    let aws = LocalAws::start().await;
    let mut config = config_for("127.0.0.1:9".parse().unwrap());
    config.destinations.get_mut("crm").unwrap().retry.max_attempts = 20;
    let err = Deps::new(&aws.sdk, &aws.stack, Arc::new(config)).await.err().expect("cold start must fail");
    assert!(err.contains("max_attempts = 20") && err.contains("RedriveMaxReceiveCount"), "{err}");
    assert!(err.contains("has 100"), "the backstop is read from the queue itself: {err}");
}
