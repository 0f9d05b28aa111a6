//! Issue 11: the event archive. Every accepted envelope is kept in the stage's bucket
//! (moto's S3 here), found from its ledger record; `switchyard-ops replay --archived`
//! sends any archived event again with the DLQ replay's guards, and `trace` says
//! whether an event is archived.

use std::time::Duration;

use serde_json::Value;
use switchyard_common::archive::{envelope_key, Archive, S3Archive};
use switchyard_common::envelope::{Delivery, Envelope};
use switchyard_common::ledger::{RecordKey, Status};
use switchyard_e2e::{eventually, settle, stripe_payment, World};
use switchyard_local::sink::Reply;

const FLOW: &str = "stripe-payment-to-crm-contact";
const WAIT: Duration = Duration::from_secs(60);

fn ops(w: &World, args: &[&str]) -> tokio::process::Command {
    let mut cmd = w.aws.ops_command(env!("CARGO_BIN_EXE_ops"));
    cmd.args(args);
    cmd
}

async fn run(w: &World, args: &[&str]) -> (i32, String) {
    let out = ops(w, args).output().await.expect("run switchyard-ops");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn archive(w: &World) -> S3Archive {
    S3Archive::new(&w.aws.sdk, w.aws.stack.archive_bucket.clone().expect("the local stack has an archive bucket"))
}

/// Requests the destination answered with a 2xx.
fn delivered(w: &World) -> Vec<String> {
    w.sink
        .received()
        .iter()
        .filter(|r| (200..300).contains(&r.answered))
        .map(|r| r.header("idempotency-key").unwrap_or_default().to_owned())
        .collect()
}

async fn trace_json(w: &World, event_id: &str) -> Value {
    let (code, text) = run(w, &["--json", "trace", event_id, "--source", "stripe"]).await;
    assert_eq!(code, 0, "{text}");
    let v: Value = serde_json::from_str(text.lines().next().unwrap_or_default()).expect("trace --json");
    v[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_event_whose_queues_were_drained_is_replayed_from_the_archive_once_and_traced() {
    let w = World::start().await;
    // The CRM refuses it for good: the delivery is parked.
    w.sink.answer_by_default(Reply::Status(400));
    let payment = stripe_payment("evt_archived_1");
    assert_eq!(w.post_stripe(&payment.to_string()).await.0, 202);
    let dlq = w.aws.stack.dispatch_dlq_url.clone();
    assert!(eventually(WAIT, async || w.aws.depth(&dlq).await == 1).await, "not parked");

    // The envelope is in the archive at the key its intake record gives, as queued.
    let history = w.aws.history("stripe", "evt_archived_1").await;
    let intake = history.iter().find(|r| r.key == RecordKey::intake("stripe", "evt_archived_1")).unwrap();
    let key = envelope_key("stripe", "evt_archived_1", intake.created_at_ms);
    let bytes = archive(&w).get(&key).await.unwrap().expect("archived");
    let envelope = Envelope::from_json(&String::from_utf8(bytes).unwrap()).unwrap();
    assert_eq!((envelope.id.as_str(), &envelope.data), ("evt_archived_1", &payment));
    assert_eq!(envelope.correlationid, intake.correlation_id.clone().unwrap());

    // Its queues are done with it: the parked copy is gone too.
    w.aws.sqs().purge_queue().queue_url(&dlq).send().await.expect("purge the DLQ");
    for (queue, depth) in w.aws.all_depths().await {
        assert_eq!(depth, 0, "{queue} still holds something");
        assert_eq!(w.aws.visible_and_in_flight(&queue).await, (0, 0), "{queue}");
    }
    w.sink.answer_by_default(Reply::Status(201));

    // A dry run shows the request and sends nothing.
    let (code, text) = run(&w, &["replay", "--archived", "evt_archived_1", "--source", "stripe"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("archive stripe/evt_archived_1") && text.contains("would replay"), "{text}");
    settle(Duration::from_secs(1)).await;
    assert!(delivered(&w).is_empty(), "a dry run sent something");

    let send = ["replay", "--archived", "evt_archived_1", "--reason", "CRM lost it", "--yes"];
    let (code, text) = run(&w, &send).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("replayed 1"), "{text}");
    let key_sent = Delivery::default_key("stripe", "evt_archived_1", FLOW, 1);
    assert!(eventually(WAIT, async || delivered(&w).len() == 1).await, "not delivered");
    assert_eq!(delivered(&w), vec![key_sent.clone()]);

    // The same command again finds its own replay: nothing sent.
    let (code, text) = run(&w, &send).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("already replayed by this same command") && text.contains("replayed 0"), "{text}");
    settle(Duration::from_secs(2)).await;
    assert_eq!(delivered(&w), vec![key_sent]);

    // The trace: archived, the replay's audit record (from the archive), delivered.
    let trace = trace_json(&w, "evt_archived_1").await;
    assert_eq!(trace["archive"]["archived"], true, "{trace}");
    assert_eq!(trace["archive"]["key"], key.as_str());
    let steps = trace["steps"].as_array().unwrap();
    let audit = steps.iter().find(|s| s["status"] == "AUDIT").expect("the replay's audit record");
    assert_eq!(audit["details"]["from_archive"], key.as_str(), "{audit}");
    assert_eq!(audit["details"]["reason"], "CRM lost it");
    let delivery = steps.iter().find(|s| s["sk"] == format!("DELIVERY#{FLOW}#v1")).unwrap();
    assert_eq!(delivery["status"], Status::Completed.as_str(), "{delivery}");
    let (_, text) = run(&w, &["trace", "evt_archived_1", "--source", "stripe"]).await;
    assert!(text.contains("archive: payload archived"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_opts_out_of_the_archive_is_not_archived_and_trace_and_replay_say_so() {
    let w = World::start_with(|c| c.sources.get_mut("stripe").unwrap().archive = false).await;
    assert_eq!(w.post_stripe(&stripe_payment("evt_not_archived").to_string()).await.0, 202);
    assert!(eventually(WAIT, async || delivered(&w).len() == 1).await, "not delivered");
    assert!(archive(&w).list("events/stripe/").await.unwrap().is_empty(), "archived anyway");

    let trace = trace_json(&w, "evt_not_archived").await;
    assert_eq!(trace["archive"]["archived"], false, "{trace}");
    let (code, text) = run(&w, &["replay", "--archived", "evt_not_archived", "--reason", "try", "--yes"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("not archived") && text.contains("replayed 0"), "{text}");
    let (_, text) = run(&w, &["replay", "--archived", "evt_never_seen", "--reason", "try", "--yes"]).await;
    assert!(text.contains("no intake record"), "{text}");
    settle(Duration::from_secs(1)).await;
    assert_eq!(delivered(&w).len(), 1);
}
