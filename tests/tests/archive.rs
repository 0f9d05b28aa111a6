//! Issue 11: the event archive. Every accepted envelope is kept in the stage's bucket
//! (moto's S3 here), found from its ledger record; `switchyard-ops replay --archived`
//! sends any archived event again with the DLQ replay's guards, and `trace` says
//! whether an event is archived.

use std::time::Duration;

use serde_json::Value;
use switchyard_common::archive::{minute_prefix, Archive, Locator, S3Archive};
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

    // The envelope is in the archive, found from its intake record, as queued: in
    // its batch's object under its acceptance minute, whose name holds its hash.
    let history = w.aws.history("stripe", "evt_archived_1").await;
    let intake = history.iter().find(|r| r.key == RecordKey::intake("stripe", "evt_archived_1")).unwrap();
    let at =
        Locator { source: "stripe".into(), event_id: "evt_archived_1".into(), accepted_at_ms: intake.created_at_ms };
    let (key, text) = at.fetch(&archive(&w)).await.unwrap().expect("archived");
    assert!(key.starts_with(&minute_prefix("stripe", intake.created_at_ms)) && key.ends_with(".jsonl"), "{key}");
    let envelope = Envelope::from_json(&text).unwrap();
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

/// Issue 10: a batch of ten envelopes is archived in one object per acceptance minute
/// (one PutObject, not ten) in moto's S3; each event is still found from its ledger
/// record alone — by `trace` from a listing, by `replay --archived` from the object —
/// and a batch mapped again after a crash rewrites the same object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_ten_is_archived_in_one_object_per_minute_and_each_event_is_found_from_its_ledger_record() {
    let aws = switchyard_e2e::LocalAws::start().await;
    let config = std::sync::Arc::new(switchyard_e2e::config_for("127.0.0.1:9".parse().unwrap()));
    let deps = switchyard_local::pipeline::Deps::new(&aws.sdk, &aws.stack, config).await.unwrap();
    let ids: Vec<String> = (0..10).map(|i| format!("evt_batch_{i}")).collect();
    for id in &ids {
        let body = stripe_payment(id).to_string();
        let answer =
            switchyard_intake::handle(&deps.intake, switchyard_e2e::signed_stripe_request(&body), now() + 10_000).await;
        assert_eq!(answer.status_code, 202, "{:?}", answer.body);
    }
    let mut batch = aws_lambda_events::event::sqs::SqsEvent::default();
    while batch.records.len() < ids.len() {
        let more = aws.receive_event(&aws.stack.ingest_queue_url).await.records;
        assert!(!more.is_empty(), "only {} of the events on the ingest queue", batch.records.len());
        batch.records.extend(more);
    }
    assert!(switchyard_mapper::handle(&deps.mapper, batch.clone()).await.batch_item_failures.is_empty());

    let bucket = S3Archive::new(&aws.sdk, aws.stack.archive_bucket.clone().expect("an archive bucket"));
    let objects = bucket.list("events/stripe/").await.unwrap();
    let mut minutes = std::collections::BTreeSet::new();
    for id in &ids {
        let intake = aws.history("stripe", id).await.into_iter().find(|r| r.key == RecordKey::intake("stripe", id));
        let at =
            Locator { source: "stripe".into(), event_id: id.clone(), accepted_at_ms: intake.unwrap().created_at_ms };
        let (key, text) = at.fetch(&bucket).await.unwrap().unwrap_or_else(|| panic!("{id} not archived"));
        assert_eq!(Envelope::from_json(&text).unwrap().data, stripe_payment(id));
        assert!(objects.iter().any(|o| o.key == key));
        minutes.insert(at.prefix());
    }
    assert_eq!(objects.len(), minutes.len(), "one object per minute the batch was accepted in: {objects:?}");

    // The mapper died after archiving: the same batch again rewrites the same object.
    assert!(switchyard_mapper::handle(&deps.mapper, batch).await.batch_item_failures.is_empty());
    let again = bucket.list("events/stripe/").await.unwrap();
    assert_eq!(again.iter().map(|o| &o.key).collect::<Vec<_>>(), objects.iter().map(|o| &o.key).collect::<Vec<_>>());

    let mut trace = aws.ops_command(env!("CARGO_BIN_EXE_ops"));
    trace.args(["--json", "trace", &ids[7], "--source", "stripe"]);
    let out = trace.output().await.unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).expect("trace --json");
    assert_eq!(v[0]["archive"]["archived"], true, "{v}");
    let key = v[0]["archive"]["key"].as_str().unwrap();
    assert!(switchyard_common::archive::may_hold(key, &ids[7]) && objects.iter().any(|o| o.key == key), "{key}");
    let mut replay = aws.ops_command(env!("CARGO_BIN_EXE_ops"));
    replay.args(["replay", "--archived", &ids[7], "--source", "stripe"]);
    let text = String::from_utf8_lossy(&replay.output().await.unwrap().stdout).into_owned();
    assert!(text.contains(&format!("archive stripe/{}", ids[7])) && text.contains("would replay"), "{text}");
}

fn now() -> i64 {
    switchyard_common::runtime::now_ms()
}

/// The S3 client computes a CRC32 of every object it writes (patch/crc-fast stands in
/// for the crate the SDK uses) and checks the one S3 returns on a read. moto stores the
/// value the client sent without checking it (AWS checks it), but computes its own, with
/// Python's zlib CRC, when asked to copy an object with a checksum: the copy's value
/// must equal the one the SDK sent, and the SDK must accept it on reading the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crc32_the_sdk_sends_with_an_object_is_the_one_s3_computes_and_the_sdk_accepts_s3s_on_read() {
    use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
    use base64::Engine as _;
    let aws = switchyard_e2e::LocalAws::start().await;
    let bucket = aws.stack.archive_bucket.clone().expect("the local stack has an archive bucket");
    let s3 = switchyard_common::archive::s3_client(&aws.sdk);
    // Every length 0..=64 crosses the eight-byte steps; a larger one many of them.
    let mut bodies: Vec<Vec<u8>> =
        (0..=64u8).map(|n| (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect()).collect();
    bodies.push((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect());
    for (i, body) in bodies.iter().enumerate() {
        let (key, copy) = (format!("crc-check/{i}"), format!("crc-check/{i}.copy"));
        let put = s3.put_object().bucket(&bucket).key(&key).body(body.clone().into()).send().await;
        let sent = put.unwrap_or_else(|e| panic!("put {key}: {e:?}")).checksum_crc32().map(str::to_owned);
        let ours = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, body) as u32;
        let ours = base64::engine::general_purpose::STANDARD.encode(ours.to_be_bytes());
        assert_eq!(sent.as_deref(), Some(ours.as_str()), "the CRC32 the SDK sent with {key}");
        let copied = s3
            .copy_object()
            .bucket(&bucket)
            .key(&copy)
            .copy_source(format!("{bucket}/{key}"))
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .unwrap_or_else(|e| panic!("copy {key}: {e:?}"));
        let computed = copied.copy_object_result().and_then(|r| r.checksum_crc32()).map(str::to_owned);
        assert_eq!(computed, sent, "S3's own CRC32 of {key}");
        let got = s3.get_object().bucket(&bucket).key(&copy).checksum_mode(ChecksumMode::Enabled).send().await;
        let got = got.unwrap_or_else(|e| panic!("get {copy}: {e:?}"));
        assert_eq!(got.checksum_crc32().map(str::to_owned), sent, "the CRC32 S3 returned with {copy}");
        let read = got.body.collect().await.unwrap_or_else(|e| panic!("the SDK refused {copy}'s body: {e:?}"));
        assert_eq!(read.into_bytes().as_ref(), body.as_slice());
    }
}
