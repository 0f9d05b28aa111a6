//! `switchyard-ops dlq list`: the DLQs of a real (moto) stack are listed with their
//! reasons, copies of one delivery count once, filters select, and the queues are left
//! exactly as they were: nothing lost, nothing left invisible.

use switchyard_common::batch::parked_message;
use switchyard_common::failure::Failure;
use switchyard_common::queue::{OutboundMessage, Queue, SqsQueue};
use switchyard_e2e::LocalAws;
use switchyard_ops::dlq::{self, DlqName, Filter};

fn parked(delivery_id: &str, flow: &str, reason: &str) -> OutboundMessage {
    parked_message(&format!("{{\"delivery\":\"{delivery_id}\"}}"), &Failure::terminal(reason), 1, "dispatcher")
        .attribute("delivery_id", delivery_id)
        .attribute("flow", flow)
        .attribute("destination", "crm")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_a_dlq_shows_each_parked_delivery_once_with_its_reason_and_leaves_the_queue_as_it_was() {
    let aws = LocalAws::start().await;
    let url = aws.stack.dispatch_dlq_url.clone();
    let mut messages: Vec<OutboundMessage> = (0..23)
        .map(|i| {
            let reason = if i % 3 == 0 { "HTTP 400 from crm" } else { "retry budget exhausted after 5 attempts" };
            parked(&format!("stripe:evt_{i}:f:v1"), if i % 2 == 0 { "f" } else { "g" }, reason)
        })
        .collect();
    // A worker died between the DLQ send and the delete: a second copy of evt_0.
    messages.push(parked("stripe:evt_0:f:v1", "f", "HTTP 400 from crm"));
    SqsQueue::new(aws.sqs()).send_all(&url, &messages).await.unwrap();
    assert_eq!(aws.visible_and_in_flight(&url).await, (24, 0));

    let scan = dlq::scan(&aws.sqs(), DlqName::Dispatch, &url).await.unwrap();
    assert_eq!(scan.messages.len(), 24);
    assert_eq!(scan.unseen, 0);
    let listed = dlq::dedupe(scan.messages);
    assert_eq!(listed.len(), 23, "two copies of evt_0 are one parked delivery");
    assert_eq!(listed.iter().find(|m| m.attribute("delivery_id") == Some("stripe:evt_0:f:v1")).unwrap().copies, 2);

    let filter = Filter { flow: Some("f".into()), reason: Some("http 400".into()), ..Filter::default() };
    let selected: Vec<_> = listed.iter().filter(|m| filter.matches(m)).collect();
    // i in 0..23 with i % 6 == 0: 0, 6, 12, 18.
    assert_eq!(selected.len(), 4);
    assert!(selected.iter().all(|m| m.attribute("reason") == Some("HTTP 400 from crm")));

    assert_eq!(aws.visible_and_in_flight(&url).await, (24, 0), "the listing left messages invisible or lost some");
    // And the same listing again sees the same thing.
    assert_eq!(dlq::dedupe(dlq::scan(&aws.sqs(), DlqName::Dispatch, &url).await.unwrap().messages).len(), 23);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_dlq_listing_says_how_many_messages_it_could_not_see_behind_a_group() {
    let aws = LocalAws::start().await;
    let url = aws.stack.dispatch_fifo_dlq_url.clone();
    let messages: Vec<OutboundMessage> = (0..13)
        .map(|i| {
            let mut m = parked(&format!("stripe:evt_{i}:f:v1"), "f", "HTTP 422 from crm");
            m.group_id = Some("customer-1".into());
            m.dedup_id = Some(format!("d{i}"));
            m
        })
        .collect();
    SqsQueue::new(aws.sqs()).send_all(&url, &messages).await.unwrap();

    let scan = dlq::scan(&aws.sqs(), DlqName::DispatchFifo, &url).await.unwrap();
    assert_eq!(scan.messages.len() as u64 + scan.unseen, 13);
    assert!(!scan.messages.is_empty());
    assert_eq!(aws.visible_and_in_flight(&url).await, (13, 0));
}
