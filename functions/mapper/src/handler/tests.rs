//! The mapper's logic against in-memory queues, and the golden fixtures of every flow.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};
use switchyard_common::queue::MemoryQueue;

use super::*;

const DISPATCH: &str = "https://sqs.local/dispatch";
const DLQ: &str = "https://sqs.local/ingest-dlq";
const FIFO: &str = "https://sqs.local/dispatch.fifo";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(rel: &str) -> Value {
    let text = std::fs::read_to_string(repo().join("events").join(rel)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn deps() -> (Deps, Arc<MemoryQueue>) {
    let queue = Arc::new(MemoryQueue::default());
    let config = Config::load(&repo().join("config/flows.toml")).unwrap();
    let deps = Deps {
        config: Arc::new(config),
        queue: queue.clone(),
        dispatch_queue_url: DISPATCH.into(),
        dispatch_fifo_queue_url: FIFO.into(),
        ingest_dlq_url: DLQ.into(),
        ledger: Arc::new(switchyard_common::ledger::MemoryLedger::new()),
        archive: None,
    };
    (deps, queue)
}

fn envelope(source: &str, data: Value) -> Envelope {
    let id = data["id"].as_str().unwrap_or("evt").to_owned();
    let event_type = data["type"].as_str().unwrap_or("unknown").to_owned();
    Envelope::new(source, id, event_type, "2026-11-23T00:00:00Z".into(), data, "corr-1".into())
}

fn sqs_event(bodies: &[String]) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(b.clone());
            m
        })
        .collect();
    e
}

/// Every `events/golden/*.json` names an input and a flow; the flow must produce
/// exactly the golden method, path and body.
#[test]
fn every_golden_fixture_is_reproduced_exactly_by_its_flow() {
    let (deps, _) = deps();
    let dir = repo().join("events/golden");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let golden: Value = serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        let flow = golden["flow"].as_str().unwrap();
        let source = deps.config.flows.iter().find(|f| f.name == flow).unwrap().source.clone();
        let data = fixture(golden["input"].as_str().unwrap());
        let mut envelope = envelope(&source, data.clone());
        // The type where the source's flow-file entry says it is (or the golden's own
        // `event_type`, for a source that takes it from a header).
        let pointer = deps.config.sources.get(&source).and_then(|s| s.event_type.clone());
        if let Some(t) = golden["event_type"].as_str().or(pointer.and_then(|p| data.pointer(&p)?.as_str())) {
            envelope.event_type = t.to_owned();
        }
        let mapped = map_envelope(&deps.config, &envelope);
        assert!(mapped.failed().next().is_none(), "{flow}: {:?}", mapped.not_mapped);
        let d = mapped.deliveries.iter().find(|d| d.flow == flow).unwrap();
        assert_eq!(d.method, golden["method"], "{flow}");
        assert_eq!(d.path, golden["path"], "{flow}");
        assert_eq!(d.body, golden["body"], "{flow}");
        checked += 1;
    }
    assert!(checked >= 1, "no golden fixtures found");
}

#[test]
fn every_flow_in_the_flow_file_has_a_golden_fixture() {
    let (deps, _) = deps();
    let goldens: Vec<String> = std::fs::read_dir(repo().join("events/golden"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for flow in &deps.config.flows {
        assert!(
            goldens.iter().any(|g| g.contains(&format!("\"flow\": \"{}\"", flow.name))),
            "flow {} has no golden fixture in events/golden",
            flow.name
        );
    }
}

#[tokio::test]
async fn a_mapped_envelope_becomes_one_delivery_on_the_dispatch_queue() {
    let (deps, queue) = deps();
    let e = envelope("stripe", fixture("stripe/payment_intent.succeeded.json"));
    let r = handle(&deps, sqs_event(&[serde_json::to_string(&e).unwrap()])).await;
    assert!(r.batch_item_failures.is_empty());
    let sent = queue.sent_to(DISPATCH);
    assert_eq!(sent.len(), 1);
    let d = Delivery::from_json(&sent[0].body).unwrap();
    assert_eq!((d.event_id.as_str(), d.correlation_id.as_str()), (e.id.as_str(), "corr-1"));
    assert_eq!(d.idempotency_key, Delivery::default_key("stripe", &e.id, &d.flow, d.flow_version));
    assert!(queue.sent_to(DLQ).is_empty());
}

#[tokio::test]
async fn an_unknown_event_type_is_acknowledged_and_sends_nothing() {
    let (deps, queue) = deps();
    let e = envelope("stripe", fixture("stripe/charge.refunded.json"));
    let r = handle(&deps, sqs_event(&[serde_json::to_string(&e).unwrap()])).await;
    assert!(r.batch_item_failures.is_empty());
    assert!(queue.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_malformed_envelope_goes_to_the_dlq_with_its_reason_and_is_not_retried() {
    let (deps, queue) = deps();
    let r = handle(&deps, sqs_event(&["{not json".into()])).await;
    assert!(r.batch_item_failures.is_empty());
    let parked = queue.sent_to(DLQ);
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].body, "{not json");
    assert!(parked[0].attributes["reason"].starts_with("malformed message"));
    assert_eq!(parked[0].attributes["error_class"], "terminal");
}

#[tokio::test]
async fn a_mapping_error_parks_the_envelope_with_flow_and_correlation_id() {
    let (deps, queue) = deps();
    let e = envelope("stripe", fixture("stripe/payment_intent.succeeded.no-email.json"));
    handle(&deps, sqs_event(&[serde_json::to_string(&e).unwrap()])).await;
    let parked = queue.sent_to(DLQ);
    assert_eq!(parked.len(), 1);
    let a = &parked[0].attributes;
    assert!(a["reason"].contains("receipt_email is missing"), "{a:?}");
    assert_eq!(a["flow"], "stripe-payment-to-crm-contact");
    assert_eq!(a["correlation_id"], "corr-1");
    assert!(queue.sent_to(DISPATCH).is_empty());
}

#[tokio::test]
async fn when_the_dispatch_queue_is_down_the_record_is_retried_not_lost() {
    let (deps, queue) = deps();
    queue.fail_sends.store(true, Ordering::SeqCst);
    let e = envelope("stripe", fixture("stripe/payment_intent.succeeded.json"));
    let r = handle(&deps, sqs_event(&[serde_json::to_string(&e).unwrap()])).await;
    assert_eq!(r.batch_item_failures.len(), 1);
}

#[tokio::test]
async fn one_bad_envelope_does_not_hold_back_its_neighbours() {
    let (deps, queue) = deps();
    let good = |id: &str| {
        let mut data = fixture("stripe/payment_intent.succeeded.json");
        data["id"] = json!(id);
        serde_json::to_string(&envelope("stripe", data)).unwrap()
    };
    let r = handle(&deps, sqs_event(&[good("evt_a"), "garbage".into(), good("evt_b")])).await;
    assert!(r.batch_item_failures.is_empty());
    assert_eq!(queue.sent_to(DISPATCH).len(), 2);
    assert_eq!(queue.sent_to(DLQ).len(), 1);
}

#[tokio::test]
async fn a_batch_of_ten_envelopes_is_enqueued_in_one_send_not_one_per_envelope() {
    let (deps, queue) = deps();
    let bodies: Vec<String> = (0..10)
        .map(|i| {
            let mut data = fixture("stripe/payment_intent.succeeded.json");
            data["id"] = json!(format!("evt_{i}"));
            serde_json::to_string(&envelope("stripe", data)).unwrap()
        })
        .collect();
    let r = handle(&deps, sqs_event(&bodies)).await;
    assert!(r.batch_item_failures.is_empty());
    assert_eq!(queue.sent_to(DISPATCH).len(), 10);
    assert_eq!(queue.send_calls.load(Ordering::SeqCst), 1, "one send_all for the whole batch");
}

#[tokio::test]
async fn an_envelope_whose_delivery_the_queue_refused_comes_back_and_its_neighbours_do_not() {
    let (deps, queue) = deps();
    let good = |id: &str| {
        let mut data = fixture("stripe/payment_intent.succeeded.json");
        data["id"] = json!(id);
        serde_json::to_string(&envelope("stripe", data)).unwrap()
    };
    *queue.refuse_containing.lock().unwrap() = Some("evt_refused".to_owned());
    let r = handle(&deps, sqs_event(&[good("evt_a"), good("evt_refused"), good("evt_b")])).await;
    let failed: Vec<&str> = r.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, ["m1"], "only the refused envelope is retried");
    let sent: Vec<String> = queue.sent_to(DISPATCH).iter().map(|m| m.body.clone()).collect();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|b| !b.contains("evt_refused")));
}

#[test]
fn a_dark_or_off_flow_is_handled_by_mode() {
    let (deps, _) = deps();
    let mut config = Config::load(&repo().join("config/flows.toml")).unwrap();
    let e = envelope("stripe", fixture("stripe/payment_intent.succeeded.json"));
    config.flows[0].mode = Mode::Off;
    assert!(map_envelope(&config, &e).deliveries.is_empty(), "off: no delivery");
    config.flows[0].mode = Mode::Dark;
    let mapped = map_envelope(&config, &e);
    assert_eq!(mapped.deliveries[0].mode, Mode::Dark, "dark: mapped and marked, the dispatcher records it");
    drop(deps);
}

#[tokio::test]
async fn a_flow_with_an_ordering_key_sends_through_the_fifo_queue_grouped_by_entity() {
    let (mut deps, queue) = deps();
    let mut config = Config::load(&repo().join("config/flows.toml")).unwrap();
    config.flows[0].ordering_key =
        Some(switchyard_common::mapping::JqProgram::compile("k", ".data.object.customer").unwrap());
    config.flows[0].entity_version = Some(switchyard_common::mapping::JqProgram::compile("v", ".created").unwrap());
    deps.config = Arc::new(config);
    let e = envelope("stripe", fixture("stripe/payment_intent.succeeded.json"));
    handle(&deps, sqs_event(&[serde_json::to_string(&e).unwrap()])).await;
    assert!(queue.sent_to(DISPATCH).is_empty());
    let sent = queue.sent_to(FIFO);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].group_id.is_some() && sent[0].dedup_id.is_some());
    let d = Delivery::from_json(&sent[0].body).unwrap();
    assert_eq!(d.ordering_key.as_deref(), Some("cus_ExampleCustomer1"));
    assert_eq!(d.entity_version, Some(1763892000));
}

/// A flow file written by the test: source `stripe`, destination `crm`, and one flow
/// per `(name, mapping, extra TOML)`; mapping files are named after their flow.
fn test_deps(flows: &[(&str, &str, &str)]) -> (Deps, Arc<MemoryQueue>) {
    let mut text = String::from(
        "[sources.stripe]\nscheme = \"stripe\"\nevent_id = \"/id\"\nevent_type = \"/type\"\n\n\
         [destinations.crm]\nbase_url = \"http://127.0.0.1:3001\"\n",
    );
    for (name, _, extra) in flows {
        text.push_str(&format!(
            "\n[[flows]]\nname = \"{name}\"\nversion = 1\nsource = \"stripe\"\nmapping = \"{name}.jq\"\n\
             destination = \"crm\"\npath = \"/api/{name}\"\n{extra}\n"
        ));
    }
    let mappings: Vec<(String, String)> =
        flows.iter().map(|(name, code, _)| (format!("{name}.jq"), (*code).to_owned())).collect();
    let config = Config::parse("test.toml", &text, |rel| {
        mappings.iter().find(|(file, _)| file == rel).map(|(_, code)| code.clone()).ok_or_else(|| {
            switchyard_common::config::ConfigError::Read { path: rel.to_owned(), message: "no such file".into() }
        })
    })
    .unwrap();
    let (mut deps, queue) = deps();
    deps.config = Arc::new(config);
    (deps, queue)
}

fn stripe_event(id: &str, data: Value) -> String {
    let mut payload = fixture("stripe/payment_intent.succeeded.json");
    payload["id"] = json!(id);
    payload["data"]["object"]["test"] = data;
    serde_json::to_string(&envelope("stripe", payload)).unwrap()
}

#[tokio::test]
async fn a_mapping_that_runs_away_is_parked_naming_the_bound_and_its_neighbours_go_on() {
    let mapping = "if .data.object.test == \"spin\" then (def f: f; f) else {id: .id} end";
    let (deps, queue) = test_deps(&[("spin", mapping, "")]);
    let batch =
        [stripe_event("evt_a", json!("ok")), stripe_event("evt_b", json!("spin")), stripe_event("evt_c", json!(1))];
    let r = handle(&deps, sqs_event(&batch)).await;
    assert!(r.batch_item_failures.is_empty(), "terminal: the runaway record is not retried");
    let sent: Vec<String> =
        queue.sent_to(DISPATCH).iter().map(|m| Delivery::from_json(&m.body).unwrap().event_id).collect();
    assert_eq!(sent, vec!["evt_a", "evt_c"]);
    let parked = queue.sent_to(DLQ);
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].body, batch[1], "the envelope itself is parked");
    let reason = &parked[0].attributes["reason"];
    assert!(reason.contains("ran away") && reason.contains("time limit of 1000 ms"), "{reason}");
    assert_eq!(parked[0].attributes["event_id"], "evt_b");
}

#[tokio::test]
async fn a_delivery_over_the_sqs_limit_is_parked_too_large_and_the_other_flows_still_go() {
    let big = "{id: .id, blob: (\"x\" * 270000)}";
    let (deps, queue) = test_deps(&[("small", "{id: .id}", ""), ("big", big, "")]);
    let event = stripe_event("evt_big", json!(null));
    let r = handle(&deps, sqs_event(std::slice::from_ref(&event))).await;
    assert!(r.batch_item_failures.is_empty());
    let sent = queue.sent_to(DISPATCH);
    assert_eq!(sent.len(), 1);
    assert_eq!(Delivery::from_json(&sent[0].body).unwrap().flow, "small");
    let parked = queue.sent_to(DLQ);
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].body, event, "the envelope is parked, not the oversized delivery");
    assert_eq!(parked[0].attributes["flow"], "big");
    assert!(parked[0].attributes["reason"].starts_with("too_large: the mapped delivery is "), "{:?}", parked[0]);
}

#[tokio::test]
async fn an_idempotency_key_that_cannot_be_a_header_is_parked_at_mapping_time() {
    let (deps, queue) =
        test_deps(&[("keyed", "{id: .id}", "idempotency_key = '.data.object.test'"), ("plain", "{id: .id}", "")]);
    for (id, key) in [("evt_nl", "two\nlines"), ("evt_utf", "caf\u{e9}")] {
        let r = handle(&deps, sqs_event(&[stripe_event(id, json!(key))])).await;
        assert!(r.batch_item_failures.is_empty());
    }
    let parked = queue.sent_to(DLQ);
    assert_eq!(parked.len(), 2);
    for p in &parked {
        assert_eq!(p.attributes["reason"], "idempotency key is not a valid HTTP header value");
        assert_eq!(p.attributes["flow"], "keyed");
    }
    let sent: Vec<String> =
        queue.sent_to(DISPATCH).iter().map(|m| Delivery::from_json(&m.body).unwrap().flow).collect();
    assert_eq!(sent, vec!["plain", "plain"], "the flow without the key still delivers");
}

#[tokio::test]
async fn deliveries_carry_characters_sqs_refuses_escaped_and_unchanged() {
    let (deps, queue) = test_deps(&[("echo", "{id: .id, text: .data.object.test}", "")]);
    let text = "nonchar \u{FFFE}\u{FFFF} control \u{1} astral \u{1F600}";
    handle(&deps, sqs_event(&[stripe_event("evt_chars", json!(text))])).await;
    let sent = queue.sent_to(DISPATCH);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].body.chars().all(switchyard_common::queue::is_sqs_char), "{:?}", sent[0].body);
    assert_eq!(Delivery::from_json(&sent[0].body).unwrap().body["text"], text);
}

/// Issue 11 (batched by issue 10): a batch's envelopes are archived, byte for byte,
/// in one object per source and minute that the ledger's record finds, before they
/// are mapped; an archive that cannot be written sends nothing and the records come
/// back; a source with `archive = false` is not archived.
#[tokio::test]
async fn a_batchs_envelopes_are_archived_in_one_object_before_they_are_mapped_and_an_unwritable_archive_sends_nothing()
{
    use switchyard_common::archive::{Archive, Locator, MemoryArchive};
    let (mut deps, queue) = deps();
    let archive = Arc::new(MemoryArchive::default());
    deps.archive = Some(archive.clone());
    let e = envelope("stripe", fixture("stripe/payment_intent.succeeded.json"));
    let mut second = fixture("stripe/payment_intent.succeeded.json");
    second["id"] = json!("evt_second_of_batch");
    let e2 = envelope("stripe", second);
    let bodies = [serde_json::to_string(&e).unwrap(), serde_json::to_string(&e2).unwrap()];

    archive.failing.store(true, Ordering::SeqCst);
    let r = handle(&deps, sqs_event(&bodies)).await;
    assert_eq!(r.batch_item_failures.len(), 2, "both records come back");
    assert!(queue.sent.lock().unwrap().is_empty(), "nothing sent that was not archived");

    archive.failing.store(false, Ordering::SeqCst);
    let r = handle(&deps, sqs_event(&bodies)).await;
    assert!(r.batch_item_failures.is_empty());
    let keys = archive.keys();
    assert_eq!(keys.len(), 1, "one object for the batch: {keys:?}");
    for (e, body) in [(&e, &bodies[0]), (&e2, &bodies[1])] {
        let at =
            Locator { source: "stripe".into(), event_id: e.id.clone(), accepted_at_ms: e.accepted_at_ms().unwrap() };
        assert_eq!(at.fetch(archive.as_ref() as &dyn Archive).await.unwrap(), Some((keys[0].clone(), body.clone())));
    }
    assert_eq!(queue.sent_to(DISPATCH).len(), 2);

    let mut config = Config::load(&repo().join("config/flows.toml")).unwrap();
    config.sources.get_mut("stripe").unwrap().archive = false;
    deps.config = Arc::new(config);
    let other = envelope("stripe", json!({"id": "evt_not_kept", "type": "charge.refunded"}));
    handle(&deps, sqs_event(&[serde_json::to_string(&other).unwrap()])).await;
    assert_eq!(archive.keys(), keys, "a source that opts out is not archived");
}
