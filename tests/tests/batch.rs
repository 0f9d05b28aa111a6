//! Partial batch responses against a real queue: the runner's event-source emulation
//! receives a batch, the real dispatcher handles it, and only failures come back.

use std::sync::Arc;

use switchyard_common::envelope::Delivery;
use switchyard_common::queue::{OutboundMessage, Queue, SqsQueue};
use switchyard_e2e::{config_for, LocalAws};
use switchyard_local::pipeline::Deps;
use switchyard_local::poller::{poll_once, Mapping};
use switchyard_local::sink::{Reply, Sink};

fn delivery(n: u32, path: &str) -> Delivery {
    let mut d = switchyard_e2e::delivery(&format!("evt_batch_{n}"), serde_json::json!({"n": n}));
    d.path = path.into();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_record_in_a_batch_does_not_fail_its_neighbours() {
    let aws = LocalAws::start().await;
    let sink = Sink::default();
    sink.answer_path("/flaky", Reply::Status(503));
    let sink_addr = sink.clone().start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let deps = Deps::new(&aws.sdk, &aws.stack, Arc::new(config_for(sink_addr))).await.unwrap();

    let queue = SqsQueue::new(aws.sqs());
    let messages: Vec<_> = [delivery(1, "/a"), delivery(2, "/flaky"), delivery(3, "/b")]
        .iter()
        .map(|d| OutboundMessage::new(serde_json::to_string(d).unwrap()))
        .collect();
    queue.send_all(&aws.stack.dispatch_queue_url, &messages).await.unwrap();

    let dispatcher = deps.dispatcher;
    let mapping = Mapping { queue_url: aws.stack.dispatch_queue_url.clone(), batch_size: 10, wait_secs: 1 };
    let failures = std::sync::Mutex::new(Vec::new());
    let timeout_ms = aws.stack.dispatcher_timeout_secs as i64 * 1000;
    let received = poll_once(&aws.sqs(), &mapping, &|event| {
        let deadline = switchyard_common::runtime::now_ms() + timeout_ms;
        let dispatcher = &dispatcher;
        let failures = &failures;
        async move {
            let r = switchyard_dispatcher::handle(dispatcher, event, deadline).await;
            failures.lock().unwrap().extend(r.batch_item_failures.iter().map(|f| f.item_identifier.clone()));
            r
        }
    })
    .await
    .unwrap();

    assert_eq!(received, 3, "one batch of three");
    assert_eq!(failures.lock().unwrap().len(), 1, "only the 503 is reported failed");
    let mut paths: Vec<String> = sink.received().iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, vec!["/a", "/b", "/flaky"]);
    // The two successes were deleted; the failure stays on the queue (in flight, with its backoff).
    assert_eq!(aws.depth(&aws.stack.dispatch_queue_url).await, 1);
    assert_eq!(aws.depth(&aws.stack.dispatch_dlq_url).await, 0);
}
