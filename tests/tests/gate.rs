//! Issue 9, protecting destinations: a rate limit shared by concurrent dispatchers, a
//! circuit breaker that lets only probes through during an outage, and a 429's
//! Retry-After that pauses the whole destination. Moto and a real HTTP sink; each
//! test counts what the destination actually received.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use switchyard_common::config::{BreakerPolicy, RateLimit};
use switchyard_common::gate::{DynamoGate, GateStore};
use switchyard_common::ledger::Status;
use switchyard_e2e::{delivery, eventually, settle, World};
use switchyard_local::sink::{Received, Reply};

fn deliveries(prefix: &str, n: usize) -> Vec<switchyard_common::envelope::Delivery> {
    (0..n).map(|i| delivery(&format!("{prefix}-{i}"), json!({"n": i}))).collect()
}

/// 201 answers per Idempotency-Key.
fn delivered(received: &[Received]) -> HashMap<String, usize> {
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for r in received.iter().filter(|r| r.answered == 201) {
        *by_key.entry(r.header("Idempotency-Key").unwrap_or_default().to_owned()).or_default() += 1;
    }
    by_key
}

async fn enqueue(w: &World, all: &[switchyard_common::envelope::Delivery]) {
    for chunk in all.chunks(100) {
        w.aws.enqueue_deliveries(&w.aws.stack.dispatch_queue_url, chunk).await;
    }
}

/// Every delivery's ledger record: completed on its first (and only) attempt.
async fn assert_each_completed_on_one_attempt(w: &World, prefix: &str, n: usize) {
    for i in 0..n {
        let history = w.aws.history("stripe", &format!("{prefix}-{i}")).await;
        let record =
            history.iter().find(|r| r.status == Status::Completed).unwrap_or_else(|| panic!("{i}: {history:?}"));
        assert_eq!(record.attempts, 1, "{prefix}-{i} was charged for being held: {record:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_dispatchers_sharing_a_10_per_second_limit_never_exceed_rate_plus_burst_and_charge_no_attempt() {
    let w = World::start_with(|c| {
        let crm = c.destinations.get_mut("crm").unwrap();
        crm.rate_limit = Some(RateLimit { per_second: 10, burst: Some(10) });
    })
    .await;
    let _more = w.more_dispatchers(3).await;
    let all = deliveries("rl", 500);
    enqueue(&w, &all).await;

    let done = eventually(Duration::from_secs(240), async || delivered(&w.sink.received()).len() == 500);
    assert!(done.await, "only {} of 500 delivered", delivered(&w.sink.received()).len());
    settle(Duration::from_secs(2)).await;

    let received = w.sink.received();
    let times: Vec<i64> = received.iter().map(|r| r.received_at_ms).collect();
    let busiest = times.iter().map(|&a| times.iter().filter(|&&b| b >= a && b < a + 1_000).count()).max().unwrap();
    let first = times.iter().min().unwrap();
    let last = times.iter().max().unwrap();
    println!(
        "rate limit 10/s burst 10, 4 dispatchers: {} requests over {:.1} s, busiest 1-second window {busiest}",
        received.len(),
        (last - first) as f64 / 1_000.0
    );
    assert!(busiest <= 20, "a 1-second window at the destination held {busiest} requests (limit 10 + burst 10)");
    assert_eq!(received.len(), 500, "a delivery was sent twice or failed");
    assert!(delivered(&received).values().all(|&n| n == 1));
    assert_eq!(w.aws.depth(&w.aws.stack.dispatch_dlq_url).await, 0, "the limiter parked something");
    assert_each_completed_on_one_attempt(&w, "rl", 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn during_a_60_second_outage_the_open_breaker_lets_only_probes_through_then_all_500_are_delivered_once() {
    let w = World::start_with(|c| {
        let crm = c.destinations.get_mut("crm").unwrap();
        crm.breaker = Some(BreakerPolicy { failures: 5, cooldown_secs: 10 });
        crm.retry.max_attempts = 6;
    })
    .await;
    w.sink.answer_by_default(Reply::Status(503));
    let outage_start = switchyard_common::runtime::now_ms();
    let all = deliveries("out", 500);
    enqueue(&w, &all).await;
    settle(Duration::from_secs(60)).await;
    let outage_end = switchyard_common::runtime::now_ms();
    w.sink.answer_by_default(Reply::Status(201));

    let done = eventually(Duration::from_secs(240), async || delivered(&w.sink.received()).len() == 500);
    assert!(done.await, "only {} of 500 delivered after the outage", delivered(&w.sink.received()).len());
    settle(Duration::from_secs(2)).await;

    let gate = DynamoGate::new(aws_sdk_dynamodb::Client::new(&w.aws.sdk), &w.aws.stack.ledger_table);
    let state = gate.read("crm").await.unwrap();
    let transitions: Vec<(i64, &str, &str)> = state
        .transitions
        .iter()
        .map(|t| {
            let mut p = t.splitn(3, '|');
            (p.next().unwrap().parse().unwrap(), p.next().unwrap(), p.next().unwrap())
        })
        .collect();
    let opened_at = transitions.first().expect("the breaker never opened").0;
    assert_eq!(transitions[0].1, "open");
    assert_eq!(transitions.last().unwrap().1, "closed", "{transitions:?}");
    let reopened = transitions.iter().filter(|t| t.2 == "the half-open probe failed").count();

    let received = w.sink.received();
    let failed: Vec<&Received> = received.iter().filter(|r| r.answered == 503).collect();
    // Calls a dispatcher started before it could see the opening (its cache is at most
    // a second old) land in the first second; after that, only probes.
    let settled_open = opened_at + 1_500;
    let probes = failed.iter().filter(|r| r.received_at_ms > settled_open && r.received_at_ms < outage_end).count();
    let before_open = failed.iter().filter(|r| r.received_at_ms <= settled_open).count();
    println!(
        "60 s outage, breaker 5 failures / 10 s cool-down: {} failed calls in all, {before_open} before it opened \
         (+1.5 s), {probes} probes while open ({reopened} re-openings), then {} deliveries",
        failed.len(),
        delivered(&received).len()
    );
    assert!(opened_at - outage_start < 10_000, "the breaker took {} ms to open", opened_at - outage_start);
    assert_eq!(probes, reopened, "a call other than a probe reached the destination while the breaker was open");
    assert!((3..=7).contains(&probes), "{probes} probes in a 60 s outage with a 10 s cool-down");
    assert!(delivered(&received).values().all(|&n| n == 1), "a delivery was sent twice");
    assert_eq!(w.aws.depth(&w.aws.stack.dispatch_dlq_url).await, 0, "the outage parked deliveries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_with_retry_after_5_pauses_the_whole_destination_for_5_seconds() {
    let w = World::start_with(|c| {
        let crm = c.destinations.get_mut("crm").unwrap();
        crm.rate_limit = Some(RateLimit { per_second: 5, burst: Some(1) });
    })
    .await;
    let _more = w.more_dispatchers(1).await;
    w.sink.script([Reply::StatusWithRetryAfter(429, 5)]);
    enqueue(&w, &deliveries("ra", 20)).await;

    let done = eventually(Duration::from_secs(90), async || delivered(&w.sink.received()).len() == 20);
    assert!(done.await, "only {} of 20 delivered", delivered(&w.sink.received()).len());
    let received = w.sink.received();
    let throttled = received.iter().find(|r| r.answered == 429).expect("the 429 was answered").received_at_ms;
    let next = received.iter().map(|r| r.received_at_ms).filter(|&t| t > throttled).min().unwrap();
    println!("429 Retry-After: 5 at {throttled}; next request {} ms later", next - throttled);
    assert!(
        next - throttled >= 5_000,
        "a request reached the paused destination {} ms after the 429",
        next - throttled
    );
    assert_eq!(received.len(), 21);
    assert_each_completed_or_retried_once(&w).await;
}

/// The throttled delivery was charged its one failed attempt; no other was charged.
async fn assert_each_completed_or_retried_once(w: &World) {
    let mut attempts = Vec::new();
    for i in 0..20 {
        let history = w.aws.history("stripe", &format!("ra-{i}")).await;
        let record = history.iter().find(|r| r.status == Status::Completed).expect("completed");
        attempts.push(record.attempts);
    }
    attempts.sort_unstable();
    assert_eq!(attempts.iter().filter(|&&a| a == 2).count(), 1, "{attempts:?}");
    assert_eq!(attempts.iter().filter(|&&a| a == 1).count(), 19, "{attempts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_dispatchers_never_have_more_than_max_in_flight_calls_open_at_once() {
    let w = World::start_with(|c| c.destinations.get_mut("crm").unwrap().max_in_flight = Some(2)).await;
    let _more = w.more_dispatchers(3).await;
    let answer_after = Duration::from_millis(300);
    w.sink.answer_by_default(Reply::Delay(answer_after, 201));
    enqueue(&w, &deliveries("mif", 40)).await;

    let done = eventually(Duration::from_secs(180), async || delivered(&w.sink.received()).len() == 40);
    assert!(done.await, "only {} of 40 delivered", delivered(&w.sink.received()).len());
    // The last answers are still on their way (the sink counts a request as it arrives).
    settle(Duration::from_secs(2)).await;
    let starts: Vec<i64> = w.sink.received().iter().map(|r| r.received_at_ms).collect();
    // Each call is open for the 300 ms the destination takes to answer.
    let open = |t: i64| starts.iter().filter(|&&s| s <= t && t < s + answer_after.as_millis() as i64 - 10).count();
    let most = starts.iter().map(|&t| open(t)).max().unwrap();
    println!("max_in_flight 2, 4 dispatchers, 300 ms answers: at most {most} calls open at once");
    assert!(most <= 2, "{most} calls were open at once");
    assert_eq!(most, 2, "the slots were never both used: the test proves nothing");
    assert_eq!(w.sink.received().len(), 40);
    assert_each_completed_on_one_attempt(&w, "mif", 40).await;
}
