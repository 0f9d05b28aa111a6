//! Issue 8: the operator loop end to end against the local stack. What is parked is
//! traced with its reason, corrected and replayed — guarded (dry run, already
//! delivered, --force), audited (who, why, the patch's shape) and safe to interrupt
//! and rerun — and every assertion is on what happened: the requests the destination
//! received, the DLQs, the ledger.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard_common::batch::parked_message;
use switchyard_common::config::Config;
use switchyard_common::failure::Failure;
use switchyard_common::ledger::{
    entity_hash, events_with_correlation, IdempotencyStore, LedgerRecord, RecordKey, Status,
};
use switchyard_common::queue::{OutboundMessage, Queue, SqsQueue};
use switchyard_e2e::{delivery, eventually, fixture, repo, settle, World};
use switchyard_local::sink::Reply;
use switchyard_ops::dlq::{DlqName, Filter};
use switchyard_ops::replay::{self, Outcome, Patch};
use switchyard_ops::{audit, trace};

const FLOW: &str = "stripe-payment-to-crm-contact";
const WAIT: Duration = Duration::from_secs(60);

async fn run_replay(w: &World, options: replay::Options) -> replay::Report {
    let config = Config::load(&repo().join("config/flows.toml")).unwrap();
    let ledger = w.aws.ledger();
    let stack = &w.aws.stack;
    let ctx = replay::Context {
        sqs: w.aws.sqs(),
        ledger: &ledger,
        config: &config,
        dlq_urls: BTreeMap::from([
            (DlqName::Ingest, stack.ingest_dlq_url.clone()),
            (DlqName::Dispatch, stack.dispatch_dlq_url.clone()),
            (DlqName::DispatchFifo, stack.dispatch_fifo_dlq_url.clone()),
        ]),
        dispatch_url: stack.dispatch_queue_url.clone(),
        dispatch_fifo_url: stack.dispatch_fifo_queue_url.clone(),
        actor: audit::caller(&w.aws.sdk).await.expect("STS answers who we are"),
    };
    replay::run(&ctx, &options, std::future::pending()).await.expect("replay runs")
}

fn options(reason: &str) -> replay::Options {
    replay::Options { reason: reason.into(), yes: true, selection: "test".into(), ..replay::Options::default() }
}

fn trace_text(records: Vec<LedgerRecord>) -> String {
    trace::render_text("event", &trace::timeline(records))
}

/// Requests the destination answered with a 2xx, by `Idempotency-Key`.
fn delivered_by_key(w: &World) -> BTreeMap<String, usize> {
    let mut keys = BTreeMap::new();
    for r in w.sink.received().iter().filter(|r| (200..300).contains(&r.answered)) {
        *keys.entry(r.header("idempotency-key").unwrap_or_default().to_owned()).or_insert(0) += 1;
    }
    keys
}

async fn dlqs_empty(w: &World) -> bool {
    let s = &w.aws.stack;
    for url in [&s.ingest_dlq_url, &s.dispatch_dlq_url, &s.dispatch_fifo_dlq_url] {
        if w.aws.visible_and_in_flight(url).await != (0, 0) {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_no_email_payment_is_traced_as_parked_then_patched_replayed_once_and_traced_as_delivered() {
    let w = World::start().await;
    let payment: Value = serde_json::from_str(&fixture("stripe/payment_intent.succeeded.no-email.json")).unwrap();
    let event_id = payment["id"].as_str().unwrap().to_owned();
    assert_eq!(w.post_stripe(&payment.to_string()).await.0, 202);
    let dlq = w.aws.stack.ingest_dlq_url.clone();
    assert!(eventually(WAIT, async || w.aws.depth(&dlq).await == 1).await, "nothing parked");

    // The mapper left its decision in the ledger: trace tells the truth.
    let history = w.aws.history("stripe", &event_id).await;
    let parked = history.iter().find(|r| r.key.sk == format!("DELIVERY#{FLOW}#v1")).expect("a parked record");
    assert_eq!(parked.status, Status::Parked);
    assert_eq!(parked.dlq.as_deref(), Some("ingest"));
    assert!(parked.reason.as_deref().unwrap().contains("receipt_email is missing"), "{parked:?}");
    let text = trace_text(history.clone());
    assert!(text.contains("parked in the ingest DLQ") && text.contains("receipt_email is missing"), "{text}");
    // ... and it is in the parked index.
    let indexed = w.aws.ledger().parked(0, i64::MAX / 2).await.unwrap();
    assert_eq!(indexed.len(), 1);

    // A dry run sends nothing and leaves the message where it was.
    let patch = r#".data.object.receipt_email = "buyer@example.com""#;
    let mut dry = options("customer gave their e-mail by phone");
    dry.yes = false;
    dry.ids = vec![parked_delivery_id(&event_id)];
    dry.patch = Some(Patch::jq(patch).unwrap());
    let report = run_replay(&w, dry).await;
    assert_eq!(report.items.len(), 1);
    assert_eq!(report.items[0].outcome, Outcome::WouldReplay);
    let diff = report.items[0].diff.clone().unwrap();
    assert!(diff.contains("+") && diff.contains("receipt_email"), "{diff}");
    assert!(!diff.contains("buyer@example.com"), "the diff is redacted: {diff}");
    assert_eq!(w.aws.visible_and_in_flight(&dlq).await, (1, 0));
    assert!(w.sink.received().is_empty());
    let original_copy = first_message(&w, &dlq).await;

    // Fix, then send.
    let mut fix = options("customer gave their e-mail by phone");
    fix.ids = vec![parked_delivery_id(&event_id)];
    fix.patch = Some(Patch::jq(patch).unwrap());
    let report = run_replay(&w, fix).await;
    assert_eq!(report.items[0].outcome, Outcome::Replayed, "{:?}", report.items);
    assert!(eventually(WAIT, async || w.sink.received().len() == 1).await, "not delivered");
    let got = &w.sink.received()[0];
    assert_eq!(got.body["email"], "buyer@example.com", "{:?}", got.body);
    let default_key = switchyard_common::envelope::Delivery::default_key("stripe", &event_id, FLOW, 1);
    assert_ne!(got.header("idempotency-key"), Some(default_key.as_str()), "a patched replay is a new request");
    assert!(eventually(WAIT, async || dlqs_empty(&w).await).await, "the DLQ still holds it");

    // parked → replayed (who, why) → delivered, in that order.
    let history = w.aws.history("stripe", &event_id).await;
    let audit = history.iter().find(|r| r.status == Status::Audit).expect("an audit record");
    assert!(audit.details["actor"].starts_with("arn:"), "{:?}", audit.details);
    assert_eq!(audit.details["reason"], "customer gave their e-mail by phone");
    assert_eq!(audit.details["patch"], r#".data.object.receipt_email = "…""#);
    assert_ne!(audit.details["before_sha256"], audit.details["after_sha256"]);
    let moments = trace::moments(&trace::timeline(history.clone()));
    let order: Vec<&str> = moments.iter().map(|m| m.status.as_str()).collect();
    let parked_at = order.iter().position(|s| *s == "PARKED").unwrap();
    let audit_at = order.iter().position(|s| *s == "AUDIT").unwrap();
    let done_at = order.iter().rposition(|s| *s == "COMPLETED").unwrap();
    assert!(parked_at < audit_at && audit_at < done_at, "{order:?}");
    let delivered = history.iter().find(|r| r.key.sk == format!("DELIVERY#{FLOW}#v1")).unwrap();
    assert_eq!(delivered.status, Status::Completed, "{delivered:?}");
    assert!(w.aws.ledger().parked(0, i64::MAX / 2).await.unwrap().is_empty(), "still in the parked index");

    // The same patch again (a second copy of the parked envelope): delivered once.
    SqsQueue::new(w.aws.sqs()).send_all(&dlq, &[original_copy]).await.unwrap();
    let mut again = options("customer gave their e-mail by phone");
    again.ids = vec![parked_delivery_id(&event_id)];
    again.patch = Some(Patch::jq(patch).unwrap());
    let report = run_replay(&w, again).await;
    assert!(matches!(&report.items[0].outcome, Outcome::Skipped(r) if r.starts_with("already replayed")));
    settle(Duration::from_secs(2)).await;
    assert_eq!(w.sink.received().len(), 1);
    assert!(dlqs_empty(&w).await);

    // Found by its business key (the fixture's order id) and by its correlation id.
    let by_key = w.aws.ledger().events_by_entity(&entity_hash(FLOW, "1042")).await.unwrap();
    assert_eq!(by_key, vec![RecordKey::event_pk("stripe", &event_id)]);
    let correlation = history.iter().find(|r| r.key.sk == "INTAKE").unwrap().correlation_id.clone().unwrap();
    let by_correlation = events_with_correlation(&w.aws.ledger(), &correlation).await.unwrap();
    assert_eq!(by_correlation, vec![RecordKey::event_pk("stripe", &event_id)]);
}

fn parked_delivery_id(event_id: &str) -> String {
    switchyard_common::envelope::Delivery::id_for("stripe", event_id, FLOW, 1)
}

/// A copy of the first message of a queue (its body and attributes), left in place.
async fn first_message(w: &World, url: &str) -> OutboundMessage {
    let scan = switchyard_ops::dlq::scan(&w.aws.sqs(), DlqName::Ingest, url).await.unwrap();
    let m = &scan.messages[0];
    let mut out = OutboundMessage::new(m.body.clone());
    for (k, v) in &m.attributes {
        out = out.attribute(k, v);
    }
    out
}

/// `n` deliveries to the CRM parked by an outage (503 until their budget of two
/// attempts is spent); the destination is back up when this returns.
async fn outage(n: usize) -> (World, Vec<String>) {
    let w = World::start_with(|c| {
        let crm = c.destinations.get_mut("crm").unwrap();
        crm.retry.max_attempts = 2;
        crm.retry.base_delay_ms = 200;
        crm.retry.max_delay_ms = 300;
    })
    .await;
    w.sink.answer_by_default(Reply::Status(503));
    let deliveries: Vec<_> = (0..n)
        .map(|i| delivery(&format!("evt_outage_{i}"), json!({"email": format!("c{i}@example.com"), "n": i})))
        .collect();
    let keys = deliveries.iter().map(|d| d.idempotency_key.clone()).collect();
    w.aws.enqueue_deliveries(&w.aws.stack.dispatch_queue_url, &deliveries).await;
    let dlq = w.aws.stack.dispatch_dlq_url.clone();
    assert!(
        eventually(Duration::from_secs(240), async || w.aws.depth(&dlq).await == n as u64).await,
        "not all {n} parked: {}",
        w.aws.depth(&dlq).await
    );
    assert!(delivered_by_key(&w).is_empty());
    w.sink.answer_by_default(Reply::Status(201));
    (w, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_deliveries_parked_in_an_outage_are_redriven_once_each_by_one_command_and_a_rerun_changes_nothing()
{
    let (w, keys) = outage(200).await;
    assert_eq!(w.aws.ledger().parked(0, i64::MAX / 2).await.unwrap().len(), 200, "the parked index");

    let mut redrive = options("crm was down 10:02-10:40");
    redrive.filter = Filter { destination: Some("crm".into()), ..Filter::default() };
    redrive.rate = Some(50.0);
    let report = run_replay(&w, redrive).await;
    assert_eq!(report.replayed(), 200, "{:?}", report.by_reason(false));
    assert!(report.by_reason(true).is_empty(), "{:?}", report.by_reason(true));

    assert!(
        eventually(Duration::from_secs(120), async || delivered_by_key(&w).len() == 200).await,
        "not all delivered"
    );
    assert!(eventually(WAIT, async || dlqs_empty(&w).await).await);
    settle(Duration::from_secs(2)).await;
    let delivered = delivered_by_key(&w);
    for key in &keys {
        assert_eq!(delivered.get(key), Some(&1), "{key} delivered {:?} times", delivered.get(key));
    }

    // The same command again: nothing left to select, nothing sent.
    let mut rerun = options("crm was down 10:02-10:40");
    rerun.filter = Filter { destination: Some("crm".into()), ..Filter::default() };
    rerun.rate = Some(50.0);
    assert!(run_replay(&w, rerun).await.items.is_empty());
    settle(Duration::from_secs(2)).await;
    assert_eq!(delivered_by_key(&w), delivered);
}

fn ops_command(w: &World) -> tokio::process::Command {
    w.aws.ops_command(env!("CARGO_BIN_EXE_ops"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_delivery_is_not_replayed_without_force_and_a_reveal_leaves_an_audit_record() {
    let w = World::start().await;
    let d = delivery("evt_done", json!({"email": "ada@example.com"}));
    w.aws.enqueue_deliveries(&w.aws.stack.dispatch_queue_url, std::slice::from_ref(&d)).await;
    assert!(eventually(WAIT, async || w.sink.received().len() == 1).await);
    settle(Duration::from_millis(500)).await;

    // A stray parked copy of a delivery the ledger says was delivered.
    let dlq = w.aws.stack.dispatch_dlq_url.clone();
    let copy =
        parked_message(&serde_json::to_string(&d).unwrap(), &Failure::transient("HTTP 503 from crm"), 1, "dispatcher")
            .attribute("delivery_id", &d.delivery_id)
            .attribute("flow", &d.flow)
            .attribute("destination", &d.destination)
            .attribute("event_id", &d.event_id);
    SqsQueue::new(w.aws.sqs()).send_all(&dlq, &[copy]).await.unwrap();

    let mut plain = options("looks stuck");
    plain.ids = vec![d.delivery_id.clone()];
    let report = run_replay(&w, plain).await;
    assert!(matches!(&report.items[0].outcome, Outcome::Skipped(r) if r.contains("already delivered")), "{report:?}");
    settle(Duration::from_secs(1)).await;
    assert_eq!(w.sink.received().len(), 1, "replayed without --force");
    assert_eq!(w.aws.visible_and_in_flight(&dlq).await, (1, 0), "a refused replay leaves the message visible");

    // dlq show is redacted; --reveal prints it in clear and is audited.
    let shown = ops_command(&w).args(["dlq", "show", &d.delivery_id]).output().await.unwrap();
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    assert!(!String::from_utf8_lossy(&shown.stdout).contains("ada@example.com"));
    let revealed = ops_command(&w)
        .args(["dlq", "show", &d.delivery_id, "--reveal", "--reason", "ticket 7"])
        .output()
        .await
        .unwrap();
    assert!(revealed.status.success(), "{}", String::from_utf8_lossy(&revealed.stderr));
    assert!(String::from_utf8_lossy(&revealed.stdout).contains("ada@example.com"));
    let history = w.aws.history("stripe", "evt_done").await;
    let reveal = history.iter().find(|r| r.key.sk.starts_with("AUDIT#reveal#")).expect("an audit record of the reveal");
    assert_eq!(reveal.details["reason"], "ticket 7");
    assert!(reveal.details["actor"].starts_with("arn:"));
    assert_eq!(w.aws.visible_and_in_flight(&dlq).await, (1, 0), "showing left it invisible");

    let mut forced = options("the CRM lost it; send again");
    forced.ids = vec![d.delivery_id.clone()];
    forced.force = true;
    let report = run_replay(&w, forced).await;
    assert_eq!(report.items[0].outcome, Outcome::Replayed, "{report:?}");
    assert!(eventually(WAIT, async || w.sink.received().len() == 2).await, "--force did not send it");
    assert!(eventually(WAIT, async || dlqs_empty(&w).await).await);
}

/// Starts a bulk replay, stops it with `signal` half-way, reruns it to the end: every
/// message is delivered exactly once and the DLQ ends empty.
async fn interrupted_then_rerun(signal: &str) {
    let (w, keys) = outage(60).await;
    let dlq = w.aws.stack.dispatch_dlq_url.clone();
    let args = ["replay", "--destination", "crm", "--rate", "15", "--reason", "crm back", "--yes"];

    let child = ops_command(&w)
        .args(args)
        .env("SWITCHYARD_OPS_HOLD_SECS", "4")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted once it is under way (a few delivered), however slowly it started.
    assert!(
        eventually(Duration::from_secs(60), async || delivered_by_key(&w).len() >= 3).await,
        "the replay never got going"
    );
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args([signal, &pid]).status().unwrap().success());
    let out = child.wait_with_output().await.unwrap();
    if signal == "-INT" {
        assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
        let (visible, in_flight) = w.aws.visible_and_in_flight(&dlq).await;
        assert_eq!(in_flight, 0, "the interrupted run left messages invisible");
        assert!(visible > 0 && visible < 60, "interrupted half-way: {visible} left");
    } else {
        // Killed outright: what it held comes back when its hold ends.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(w.aws.depth(&dlq).await > 0, "killed half-way, yet nothing is left");
    }

    let out = ops_command(&w).args(args).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(eventually(Duration::from_secs(120), async || delivered_by_key(&w).len() == 60).await);
    assert!(eventually(WAIT, async || dlqs_empty(&w).await).await);
    settle(Duration::from_secs(2)).await;
    let delivered = delivered_by_key(&w);
    for key in &keys {
        assert_eq!(delivered.get(key), Some(&1), "{key} delivered {:?} times", delivered.get(key));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_interrupted_with_sigint_then_rerun_delivers_every_message_exactly_once() {
    interrupted_then_rerun("-INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_with_sigkill_then_rerun_delivers_every_message_exactly_once() {
    interrupted_then_rerun("-KILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_by_business_key_lists_the_entitys_events_from_the_command_line() {
    let w = World::start().await;
    for id in ["evt_order_a", "evt_order_b"] {
        assert_eq!(w.post_stripe(&switchyard_e2e::stripe_payment(id).to_string()).await.0, 202);
    }
    assert!(eventually(WAIT, async || w.sink.received().len() == 2).await);
    settle(Duration::from_millis(500)).await;
    let out = ops_command(&w).args(["--json", "find", "--flow", FLOW, "--key", "1042"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, vec!["stripe/evt_order_a", "stripe/evt_order_b"]);
    let missing = ops_command(&w).args(["find", "--flow", FLOW, "--key", "9999"]).output().await.unwrap();
    assert_eq!(missing.status.code(), Some(1));

    // By the correlation id intake derived for evt_order_b (no index entry for it).
    let history = w.aws.history("stripe", "evt_order_b").await;
    let derived = history.iter().find(|r| r.key.sk == "INTAKE").unwrap().correlation_id.clone().unwrap();
    assert_eq!(derived, switchyard_common::ledger::derived_correlation_id("stripe", "evt_order_b"));
    let out = ops_command(&w).args(["--json", "find", "--correlation", &derived]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    assert_eq!(events[0]["event"], "stripe/evt_order_b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_opens_the_payload_in_the_editor_and_the_edited_request_is_delivered() {
    let w = World::start().await;
    // Parked by hand, never tried: the ledger has no record of it yet.
    let d = delivery("evt_edit", json!({"email": "ada@example.com", "plan": "basci"}));
    let copy = parked_message(
        &serde_json::to_string(&d).unwrap(),
        &Failure::terminal("HTTP 422 from crm: unknown plan"),
        1,
        "dispatcher",
    )
    .attribute("delivery_id", &d.delivery_id)
    .attribute("flow", &d.flow)
    .attribute("destination", &d.destination)
    .attribute("event_id", &d.event_id);
    SqsQueue::new(w.aws.sqs()).send_all(&w.aws.stack.dispatch_dlq_url, &[copy]).await.unwrap();

    let out = ops_command(&w)
        .args(["replay", &d.delivery_id, "--edit", "--reason", "fix the typo", "--yes"])
        .env("EDITOR", "sed -i s/basci/basic/")
        .env_remove("VISUAL")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("+++ after"), "the diff is shown first");
    assert!(eventually(WAIT, async || w.sink.received().len() == 1).await, "not delivered");
    assert_eq!(w.sink.received()[0].body["plan"], "basic");
    assert!(eventually(WAIT, async || dlqs_empty(&w).await).await);
    let history = w.aws.history("stripe", "evt_edit").await;
    let audit = history.iter().find(|r| r.status == Status::Audit).expect("audited");
    assert_eq!(audit.details["patch"], "a whole payload edited with --edit");
}
