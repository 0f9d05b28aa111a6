//! Issue 3's accounting: a few hundred events with random duplicates, destination
//! faults (429, 503, timeouts, 400) and shuffled arrival. Every event must end up
//! either delivered exactly once — counted at the destination by Idempotency-Key,
//! among the requests it accepted — or parked in a DLQ with a reason. The test prints
//! the tally and fails on any event that is neither, or both.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use switchyard_common::batch::parked_identity;
use switchyard_common::envelope::Delivery;
use switchyard_e2e::{stripe_payment, World};
use switchyard_local::sink::Reply;

const EVENTS: usize = 300;
const FLOW: &str = "stripe-payment-to-crm-contact";

fn fault_script(rng: &mut StdRng, n: usize) -> Vec<Reply> {
    (0..n)
        .map(|_| match rng.random_range(0..100) {
            0..70 => Reply::Status(201),
            70..80 => Reply::Status(503),
            80..87 => Reply::StatusWithRetryAfter(429, 1),
            87..93 => Reply::Delay(Duration::from_millis(1_500), 503),
            _ => Reply::Status(400),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_delivered_exactly_once_or_parked_with_a_reason_despite_duplicates_faults_and_disorder() {
    let seed: u64 = std::env::var("ACCOUNTING_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261123);
    let mut rng = StdRng::seed_from_u64(seed);
    let w = World::start_with(|c| {
        let crm = c.destinations.get_mut("crm").unwrap();
        crm.timeout = Duration::from_secs(1);
        crm.retry.max_attempts = 6;
        crm.retry.base_delay_ms = 300;
        crm.retry.max_delay_ms = 1_000;
    })
    .await;
    w.sink.script(fault_script(&mut rng, EVENTS * 3));

    // Events: some without an email (the mapper parks them); a fifth posted twice.
    let mut posts = Vec::new();
    let mut ids = Vec::new();
    for i in 0..EVENTS {
        let id = format!("evt_acc_{i:04}");
        let mut event = stripe_payment(&id);
        event["data"]["object"]["amount_received"] = json!(i);
        if rng.random_range(0..100) < 5 {
            event["data"]["object"]["receipt_email"] = json!(null);
        }
        let body = event.to_string();
        if rng.random_range(0..100) < 20 {
            posts.push(body.clone());
        }
        posts.push(body);
        ids.push(id);
    }
    posts.shuffle(&mut rng);
    let duplicates = posts.len() - EVENTS;

    let started = Instant::now();
    let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
    for chunk in posts.chunks(8) {
        for (status, _) in join_all(chunk.iter().map(|b| w.post_stripe(b))).await {
            *answers.entry(status).or_default() += 1;
        }
    }
    assert_eq!(answers.get(&202).copied().unwrap_or(0), EVENTS, "every event accepted once: {answers:?}");

    // Wait for the pipeline to drain: nothing visible or in flight on the work queues.
    let s = w.aws.stack.clone();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let busy = w.aws.depth(&s.ingest_queue_url).await + w.aws.depth(&s.dispatch_queue_url).await;
        if busy == 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if w.aws.depth(&s.ingest_queue_url).await + w.aws.depth(&s.dispatch_queue_url).await == 0 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the pipeline did not drain: {busy} messages left");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed();

    let mut accepted_by_key: HashMap<String, usize> = HashMap::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let received = w.sink.received();
    for r in &received {
        *statuses.entry(r.answered).or_default() += 1;
        if (200..300).contains(&r.answered) {
            *accepted_by_key.entry(r.header("idempotency-key").unwrap_or_default().to_owned()).or_default() += 1;
        }
    }
    let mut parked: HashMap<String, String> = HashMap::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    // Copies of one parked delivery (same identity) are one; one event parked as two
    // different deliveries is a defect.
    let mut identities = HashSet::new();
    for (stage, url) in [("mapper", &s.ingest_dlq_url), ("dispatcher", &s.dispatch_dlq_url)] {
        for m in w.aws.drain(url).await {
            if !identities.insert(parked_identity(|k| m.attributes.get(k).map(String::as_str), &m.body)) {
                continue;
            }
            let event = m.attributes.get("event_id").cloned().unwrap_or_default();
            let reason = m.attributes.get("reason").cloned().unwrap_or_default();
            assert!(!reason.is_empty(), "a parked message without a reason: {m:?}");
            let kind = reason.split(':').next().unwrap_or_default().to_owned();
            *reasons.entry(format!("{stage}: {kind}")).or_default() += 1;
            assert!(parked.insert(event.clone(), reason).is_none(), "{event} parked twice");
        }
    }

    let mut delivered = 0;
    let mut defects = Vec::new();
    for id in &ids {
        let key = Delivery::default_key("stripe", id, FLOW, 1);
        let accepted = accepted_by_key.get(&key).copied().unwrap_or(0);
        match (accepted, parked.contains_key(id)) {
            (1, false) => delivered += 1,
            (0, true) => {}
            (n, p) => defects.push(format!("{id}: accepted {n} times, parked {p}")),
        }
    }
    let unknown: HashSet<_> = parked.keys().filter(|k| !ids.contains(k)).collect();

    println!("accounting (seed {seed}) in {:.1} s:", elapsed.as_secs_f64());
    println!("  events {EVENTS}, duplicate posts {duplicates}, intake answers {answers:?}");
    println!("  destination requests {} by answer {statuses:?}", received.len());
    println!("  delivered exactly once {delivered}, parked {} {reasons:?}", parked.len());
    println!("  neither or both: {}", defects.len());
    assert!(unknown.is_empty(), "parked events that were never sent: {unknown:?}");
    assert!(defects.is_empty(), "{defects:#?}");
    assert_eq!(delivered + parked.len(), EVENTS);
}
