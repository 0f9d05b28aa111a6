//! Issue 11: polling sources. The poller reads the example legacy orders API (a real
//! local HTTP server, `switchyard_local::orders_api`) page by page from the cursor
//! it keeps in the ledger (moto's DynamoDB), puts each record on the ingest queue
//! (moto's SQS) as an envelope, and is SIGKILLed mid-run to prove it resumes from the
//! last durable cursor without losing or duplicating a record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchyard_common::config::Config;
use switchyard_common::envelope::Envelope;
use switchyard_common::ledger::{IdempotencyStore, RecordKey, Status};
use switchyard_common::names::Stage;
use switchyard_common::queue::SqsQueue;
use switchyard_e2e::{eventually, local_secret, repo, settle, LocalAws, World};
use switchyard_local::orders_api::{order, OrdersApi};
use switchyard_poller::{cursor, Deps, RunReport};

const SOURCE: &str = "legacy-orders";
const WAIT: Duration = Duration::from_secs(60);

/// The orders API with `n` orders, `ord-0` … changed one second apart.
fn orders_api(n: usize) -> (OrdersApi, String) {
    let token: Value = serde_json::from_str(&local_secret("source/legacy-orders")).unwrap();
    let api = OrdersApi::new(token["token"].as_str().unwrap());
    for i in 0..n {
        api.put(order(&format!("ord-{i}"), &at(i as i64)));
    }
    let addr = api.start_apart("127.0.0.1:0".parse().unwrap()).expect("orders API");
    (api, format!("http://{addr}/api/orders"))
}

/// `2026-12-01T00:00:00Z` plus `secs`.
fn at(secs: i64) -> String {
    switchyard_common::runtime::rfc3339(1_796_083_200_000 + secs * 1000).replace(".000", "")
}

/// The poller as the template configures it, in this process, against moto.
fn deps(aws: &LocalAws, url: &str) -> Deps {
    let mut config = Config::load(&repo().join("config/flows.toml")).expect("flow file");
    config.polls.get_mut(SOURCE).expect("the example polling source").url = url.to_owned();
    let config = Arc::new(config);
    let stage = Stage::new(&aws.stack.stage).unwrap();
    Deps {
        ledger: Arc::new(aws.ledger()),
        queue: Arc::new(SqsQueue::new(aws.sqs())),
        reads: switchyard_dispatcher::Deps::for_reads(&aws.sdk, config.clone(), stage, &aws.stack.ledger_table)
            .unwrap(),
        config,
        ingest_queue_url: aws.stack.ingest_queue_url.clone(),
        ingest_dlq_url: aws.stack.ingest_dlq_url.clone(),
    }
}

/// `poll-once`: one scheduled invocation as a process of its own.
fn poll_once(aws: &LocalAws, url: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_poll-once"));
    cmd.env("AWS_ENDPOINT_URL", &aws.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("SWITCHYARD_STAGE", &aws.stack.stage)
        .env("SWITCHYARD_LEDGER_TABLE", &aws.stack.ledger_table)
        .env("SWITCHYARD_INGEST_QUEUE_URL", &aws.stack.ingest_queue_url)
        .env("SWITCHYARD_INGEST_DLQ_URL", &aws.stack.ingest_dlq_url)
        .env("SWITCHYARD_SOURCE_LEGACY_ORDERS_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn report_of(out: std::process::Output) -> RunReport {
    let text = String::from_utf8_lossy(&out.stdout);
    let reports: Value = serde_json::from_str(text.lines().last().unwrap_or_default()).expect("poll-once reports");
    let r = &reports[0];
    assert_eq!(r["source"], SOURCE, "{reports}");
    RunReport {
        source: SOURCE.into(),
        pages: r["pages"].as_u64().unwrap() as u32,
        records: r["records"].as_u64().unwrap(),
        accepted: r["accepted"].as_u64().unwrap(),
        duplicates: r["duplicates"].as_u64().unwrap(),
        parked: r["parked"].as_u64().unwrap(),
        cursor: r["cursor"].as_str().unwrap().to_owned(),
        caught_up: r["caught_up"].as_bool().unwrap(),
        skipped: r["skipped"].as_str().map(str::to_owned),
        error: r["error"].as_str().map(str::to_owned),
    }
}

/// Every envelope on the ingest queue, counted by event id.
async fn enqueued(aws: &LocalAws) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for m in aws.drain(&aws.stack.ingest_queue_url).await {
        let e = Envelope::from_json(&m.body).expect("an envelope");
        assert_eq!((e.source_name(), e.event_type.as_str()), (SOURCE, "order.updated"));
        *counts.entry(e.id).or_default() += 1;
    }
    counts
}

async fn stored_cursor(aws: &LocalAws) -> Option<String> {
    cursor::read(&aws.ledger(), SOURCE).await.unwrap().map(|c| c.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_records_with_the_poller_killed_mid_run_are_each_enqueued_once_and_only_a_new_version_again() {
    let aws = LocalAws::start().await;
    let (api, url) = orders_api(500);
    // Each page takes 300 ms: the kill below lands while the poller waits for page 3.
    api.slow_down(Duration::from_millis(300));

    let mut first = poll_once(&aws, &url).spawn().unwrap();
    assert!(eventually(WAIT, async || api.requests() >= 3).await, "the poller never asked for page 3");
    first.start_kill().unwrap(); // SIGKILL
    let _ = first.wait().await;
    // Pages 1 and 2 (100 records each) were finished: the cursor is at record 199.
    assert_eq!(stored_cursor(&aws).await.as_deref(), Some(at(199).as_str()), "the durable cursor after the kill");

    api.slow_down(Duration::ZERO);
    let out = poll_once(&aws, &url).output().await.unwrap();
    let report = report_of(out).await;
    assert_eq!(report.error, None, "{report:?}");
    assert!(report.caught_up, "{report:?}");
    assert_eq!(
        (report.accepted, report.duplicates),
        (300, 0),
        "the restart re-read nothing it had finished: {report:?}"
    );
    assert_eq!(stored_cursor(&aws).await.as_deref(), Some(at(499).as_str()), "the cursor ends at the last record");

    let counts = enqueued(&aws).await;
    assert_eq!(counts.len(), 500, "records enqueued");
    assert!(counts.values().all(|&n| n == 1), "a record enqueued twice: {:?}", counts.iter().find(|(_, &n)| n > 1));
    for i in [0, 199, 200, 499] {
        let id = format!("ord-{i}@{}", at(i));
        assert!(counts.contains_key(&id), "{id} missing");
        let history = aws.history(SOURCE, &id).await;
        let intake = history.iter().find(|r| r.key == RecordKey::intake(SOURCE, &id)).expect("accepted in the ledger");
        assert_eq!(intake.status, Status::Completed);
    }

    // A record changed at the source (a new updated_at) is enqueued again; none other is.
    api.put(order("ord-7", &at(600)));
    let report = report_of(poll_once(&aws, &url).output().await.unwrap()).await;
    assert_eq!((report.accepted, report.error.as_deref()), (1, None), "{report:?}");
    let counts = enqueued(&aws).await;
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![(format!("ord-7@{}", at(600)), 1)]);
    assert_eq!(stored_cursor(&aws).await.as_deref(), Some(at(600).as_str()));
    // Nothing changed: nothing enqueued.
    let report = report_of(poll_once(&aws, &url).output().await.unwrap()).await;
    assert_eq!((report.accepted, report.pages), (0, 1), "{report:?}");
    assert!(enqueued(&aws).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_orders_reach_the_fulfilment_api_once_per_version_and_a_source_outage_loses_nothing() {
    let w = World::start().await;
    let (api, url) = orders_api(3);
    let deps = deps(&w.aws, &url);
    let source = deps.config.polls.get(SOURCE).unwrap();
    let fulfilled = || {
        w.sink
            .received()
            .iter()
            .filter(|r| r.path == "/v1/fulfilment-orders" && (200..300).contains(&r.answered))
            .map(|r| {
                (
                    r.body["order_id"].as_str().unwrap_or_default().to_owned(),
                    r.header("idempotency-key").unwrap_or_default().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };

    let report = switchyard_poller::poll_source(&deps, source, true, i64::MAX).await;
    assert_eq!((report.accepted, report.error.as_deref()), (3, None), "{report:?}");
    assert!(eventually(WAIT, async || fulfilled().len() == 3).await, "{:?}", fulfilled());
    let sent = w.sink.received().into_iter().find(|r| r.body["order_id"] == "ord-1").unwrap();
    assert_eq!(sent.body["ship_to"]["country"], "US", "mapped by legacy_order_to_fulfilment.jq");
    assert!(sent.header("authorization").is_some_and(|h| h.starts_with("Bearer ")));

    // Not due again for a minute: a scheduled run reads nothing.
    let report = switchyard_poller::poll_source(&deps, source, false, i64::MAX).await;
    assert!(report.skipped.is_some() && report.pages == 0, "{report:?}");

    // The source is down: the run stops, the cursor stays; the next run catches up.
    let before = stored_cursor(&w.aws).await;
    api.put(order("ord-1", &at(100)));
    api.fail_next(1);
    let report = switchyard_poller::poll_source(&deps, source, true, i64::MAX).await;
    assert!(report.error.as_deref().is_some_and(|e| e.contains("HTTP 503")), "{report:?}");
    assert_eq!(stored_cursor(&w.aws).await, before);
    let report = switchyard_poller::poll_source(&deps, source, true, i64::MAX).await;
    assert_eq!((report.accepted, report.error.as_deref()), (1, None), "{report:?}");

    // The new version of ord-1 is fulfilled again, under its own key; the others not.
    assert!(eventually(WAIT, async || fulfilled().len() == 4).await, "{:?}", fulfilled());
    settle(Duration::from_secs(2)).await;
    let all = fulfilled();
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(all.iter().filter(|(o, _)| o == "ord-1").count(), 2);
    let keys: std::collections::BTreeSet<_> = all.iter().map(|(_, k)| k.clone()).collect();
    assert_eq!(keys.len(), 4, "each version has its own idempotency key");
    let ledger: &dyn IdempotencyStore = deps.ledger.as_ref();
    assert!(cursor::read(ledger, SOURCE).await.unwrap().is_some_and(|c| c.value == at(100)));
}
