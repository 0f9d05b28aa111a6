//! Intake's logic against in-memory ports. The same paths run against moto's server
//! in `tests/` (end to end).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use aws_lambda_events::encodings::Body;
use std::time::Duration;
use switchyard_common::config::Config;
use switchyard_common::ledger::{IdempotencyStore, MemoryLedger, Status};
use switchyard_common::names::Stage;
use switchyard_common::queue::MemoryQueue;

use switchyard_common::secrets::{CachedSecrets, SecretSource, StaticSecrets};
use switchyard_common::signature::{sign, Scheme};

use super::*;
use crate::Limits;

const SECRET: &str = "whsec_test";
const QUEUE: &str = "https://sqs.local/ingest";

struct World {
    deps: Deps,
    ledger: Arc<MemoryLedger>,
    queue: Arc<MemoryQueue>,
}

const SECRET_ID: &str = "switchyard/dev/source/stripe";

fn world() -> World {
    let secrets = StaticSecrets::default().with(SECRET_ID, VersionStage::Current, SECRET).with(
        SECRET_ID,
        VersionStage::Previous,
        "whsec_old",
    );
    world_with(Arc::new(secrets), |_| {})
}

fn world_with(secrets: Arc<dyn SecretSource>, customize: impl FnOnce(&mut Config)) -> World {
    let ledger = Arc::new(MemoryLedger::new());
    let queue = Arc::new(MemoryQueue::default());
    let mut config = Config::bundled().unwrap();
    customize(&mut config);
    let deps = Deps {
        config: Arc::new(config),
        stage: Stage::new("dev").unwrap(),
        ledger: ledger.clone(),
        queue: queue.clone(),
        secrets,
        ingest_queue_url: QUEUE.to_owned(),
        limits: Limits { max_body_bytes: 4096, ..Limits::default() },
    };
    World { deps, ledger, queue }
}

fn payment(id: &str) -> String {
    serde_json::json!({"id": id, "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_1"}}}).to_string()
}

fn request(source: &str, body: &str, secret: &str, timestamp: i64) -> ApiGatewayV2httpRequest {
    let mut req = ApiGatewayV2httpRequest::default();
    req.request_context.http.method = http::Method::POST;
    req.raw_path = Some(format!("/hooks/{source}"));
    req.path_parameters.insert("source".into(), source.into());
    for (name, value) in sign(&Scheme::Stripe, &SigningSecret::new(secret), body.as_bytes(), timestamp, "").unwrap() {
        req.headers.insert(name, value);
    }
    req.body = Some(body.to_owned());
    req
}

fn signed(body: &str) -> ApiGatewayV2httpRequest {
    request("stripe", body, SECRET, now_ms() / 1000)
}

async fn call(w: &World, req: ApiGatewayV2httpRequest) -> (i64, Value) {
    let r = handle(&w.deps, req, now_ms() + 10_000).await;
    let body = match r.body {
        Some(Body::Text(t)) => serde_json::from_str(&t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (r.status_code, body)
}

#[tokio::test]
async fn a_signed_event_is_accepted_enveloped_and_claimed() {
    let w = world();
    let (status, body) = call(&w, signed(&payment("evt_1"))).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["event_id"], "evt_1");
    let sent = w.queue.sent_to(QUEUE);
    assert_eq!(sent.len(), 1);
    let envelope = Envelope::from_json(&sent[0].body).unwrap();
    assert_eq!(envelope.id, "evt_1");
    assert_eq!(envelope.event_type, "payment_intent.succeeded");
    assert_eq!(envelope.source_name(), "stripe");
    assert_eq!(sent[0].attributes["correlation_id"], envelope.correlationid);
    let history = w.ledger.history(&RecordKey::intake("stripe", "evt_1").pk).await.unwrap();
    assert_eq!(history[0].status, Status::Completed);
}

#[tokio::test]
async fn the_same_event_twice_is_a_duplicate_and_enqueued_once() {
    let w = world();
    assert_eq!(call(&w, signed(&payment("evt_1"))).await.0, 202);
    let (status, body) = call(&w, signed(&payment("evt_1"))).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(w.queue.sent_to(QUEUE).len(), 1);
}

#[tokio::test]
async fn an_event_whose_enqueue_failed_leaves_no_record_and_its_retry_is_accepted() {
    let w = world();
    w.queue.fail_sends.store(true, Ordering::SeqCst);
    assert_eq!(call(&w, signed(&payment("evt_q"))).await.0, 503);
    let pk = switchyard_common::ledger::RecordKey::event_pk("stripe", "evt_q");
    assert!(w.ledger.history(&pk).await.unwrap().is_empty(), "nothing recorded for an event not on the queue");
    w.queue.fail_sends.store(false, Ordering::SeqCst);
    assert_eq!(call(&w, signed(&payment("evt_q"))).await.0, 202, "the provider's retry is accepted");
    assert_eq!(w.queue.sent_to(QUEUE).len(), 1);
    let history = w.ledger.history(&pk).await.unwrap();
    assert_eq!((history.len(), history[0].status, history[0].attempts), (1, Status::Completed, 1));
}

#[tokio::test]
async fn rejected_requests_get_their_documented_status_and_enqueue_nothing() {
    let w = world();
    let now = now_ms() / 1000;
    let mut cases = vec![
        ("wrong secret", request("stripe", &payment("e"), "whsec_wrong", now), 401, "signature_mismatch"),
        ("stale", request("stripe", &payment("e"), SECRET, now - 301), 401, "stale_timestamp"),
        ("future", request("stripe", &payment("e"), SECRET, now + 301), 401, "future_timestamp"),
        ("unknown source", request("nope", &payment("e"), SECRET, now), 404, "unknown_source"),
        ("malformed json", signed("{not json"), 400, "malformed_json"),
        ("too large", signed(&format!("{{\"id\":\"e\",\"pad\":\"{}\"}}", "x".repeat(5000))), 413, "body_too_large"),
        ("no event id", signed(r#"{"type":"x"}"#), 400, "missing_event_id"),
    ];
    let mut unsigned = signed(&payment("e"));
    unsigned.headers.remove("stripe-signature");
    cases.push(("unsigned", unsigned, 401, "missing_signature"));
    let mut get = signed(&payment("e"));
    get.request_context.http.method = http::Method::GET;
    cases.push(("GET", get, 405, "method_not_allowed"));
    for (what, req, want_status, want_code) in cases {
        let (status, body) = call(&w, req).await;
        assert_eq!((status, body["error"].as_str().unwrap_or_default()), (want_status, want_code), "{what}: {body}");
    }
    assert!(w.queue.sent_to(QUEUE).is_empty());
}

#[tokio::test]
async fn an_event_signed_with_the_previous_secret_is_accepted_during_rotation() {
    let w = world();
    let (status, _) = call(&w, request("stripe", &payment("evt_2"), "whsec_old", now_ms() / 1000)).await;
    assert_eq!(status, 202);
}

/// A rotated Stripe secret: the new one current since `age_secs`, the old one previous.
fn rotated(age_secs: i64) -> Arc<StaticSecrets> {
    let created = now_ms() / 1000 - age_secs;
    Arc::new(StaticSecrets::default().with_created(SECRET_ID, VersionStage::Current, SECRET, created).with(
        SECRET_ID,
        VersionStage::Previous,
        "whsec_old",
    ))
}

#[test]
fn the_previous_secret_is_accepted_only_while_the_current_one_is_younger_than_the_grace() {
    let now = 1_000_000;
    let cases = [
        (Some(now), 60, true),
        (Some(now - 59), 60, true),
        (Some(now - 60), 60, false),
        (Some(now - 86_400 * 2), 86_400, false),
        (Some(now + 30), 60, true), // a clock a little ahead of ours
        (None, 60, true),           // a source that does not date its versions
        (Some(now), 0, false),      // no grace at all
        (None, 0, false),
    ];
    for (created, grace, want) in cases {
        assert_eq!(previous_accepted(created, now, grace), want, "created {created:?}, grace {grace}");
    }
}

#[tokio::test]
async fn the_previous_secret_is_accepted_within_the_grace_and_refused_after_it() {
    let fresh = world_with(rotated(60), |_| {});
    let now = now_ms() / 1000;
    assert_eq!(call(&fresh, request("stripe", &payment("evt_g1"), "whsec_old", now)).await.0, 202);
    assert_eq!(call(&fresh, request("stripe", &payment("evt_g2"), SECRET, now)).await.0, 202);

    let old = world_with(rotated(86_400 + 1), |_| {});
    let (status, body) = call(&old, request("stripe", &payment("evt_g3"), "whsec_old", now)).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("signature_mismatch")), "{body}");
    assert_eq!(call(&old, request("stripe", &payment("evt_g4"), SECRET, now)).await.0, 202);
    assert!(old.queue.sent_to(QUEUE).iter().all(|m| !m.body.contains("evt_g3")));
}

#[tokio::test]
async fn the_grace_window_is_the_sources_own_setting() {
    let short = world_with(rotated(60), |config| config.sources.get_mut("stripe").unwrap().rotation_grace_secs = 30);
    let (status, _) = call(&short, request("stripe", &payment("evt_s1"), "whsec_old", now_ms() / 1000)).await;
    assert_eq!(status, 401);
    let none = world_with(rotated(0), |config| config.sources.get_mut("stripe").unwrap().rotation_grace_secs = 0);
    let (status, _) = call(&none, request("stripe", &payment("evt_s2"), "whsec_old", now_ms() / 1000)).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_secret_rotated_since_it_was_cached_is_read_again_on_a_mismatch() {
    let store = Arc::new(StaticSecrets::default().with(SECRET_ID, VersionStage::Current, "whsec_first"));
    let cached = CachedSecrets::new(store.clone(), Duration::from_secs(300));
    let w = world_with(Arc::new(cached), |_| {});
    let now = now_ms() / 1000;
    assert_eq!(call(&w, request("stripe", &payment("evt_r1"), "whsec_first", now)).await.0, 202);

    // The operator puts the provider's new secret; the cache still holds the first.
    {
        let mut values = store.values.lock().unwrap();
        values.insert((SECRET_ID.into(), VersionStage::Current), SECRET.into());
        values.insert((SECRET_ID.into(), VersionStage::Previous), "whsec_first".into());
    }
    assert_eq!(call(&w, request("stripe", &payment("evt_r2"), SECRET, now)).await.0, 202);
    assert_eq!(call(&w, request("stripe", &payment("evt_r3"), "whsec_first", now)).await.0, 202);

    // Bad signatures right after do not send every request back to the store.
    let reads = store.reads.load(Ordering::SeqCst);
    for i in 0..5 {
        assert_eq!(call(&w, request("stripe", &payment(&format!("evt_bad{i}")), "whsec_wrong", now)).await.0, 401);
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), reads);
}

#[tokio::test]
async fn a_failed_enqueue_answers_503_and_the_providers_retry_is_not_a_duplicate() {
    let w = world();
    w.queue.fail_sends.store(true, Ordering::SeqCst);
    assert_eq!(call(&w, signed(&payment("evt_3"))).await.0, 503);
    w.queue.fail_sends.store(false, Ordering::SeqCst);
    assert_eq!(call(&w, signed(&payment("evt_3"))).await.0, 202);
    assert_eq!(w.queue.sent_to(QUEUE).len(), 1);
}

#[tokio::test]
async fn a_base64_encoded_body_is_decoded_before_verification() {
    let w = world();
    let mut req = signed(&payment("evt_4"));
    req.body = Some(base64::engine::general_purpose::STANDARD.encode(payment("evt_4")));
    req.is_base64_encoded = true;
    assert_eq!(call(&w, req).await.0, 202);
}

#[test]
fn the_source_name_comes_from_the_path_when_there_are_no_path_parameters() {
    let mut req = ApiGatewayV2httpRequest::default();
    req.raw_path = Some("/prod/hooks/stripe".into());
    assert_eq!(source_name(&req).as_deref(), Some("stripe"));
    req.raw_path = Some("/hooks/".into());
    assert_eq!(source_name(&req), None);
    req.raw_path = Some("/hooks/a/b".into());
    assert_eq!(source_name(&req), None);
}

#[test]
fn a_correlation_id_header_is_kept_only_when_it_is_a_plain_token() {
    let mut req = ApiGatewayV2httpRequest::default();
    req.headers.insert("x-correlation-id", "abc-123".parse().unwrap());
    assert_eq!(correlation_id(&req).as_deref(), Some("abc-123"));
    req.headers.insert("x-correlation-id", "a b\"c".parse().unwrap());
    assert_eq!(correlation_id(&req), None);
}

/// Issue 10: without a caller's id the event's correlation id is derived from it (the
/// same for the provider's retries) and found without an index entry; a caller's id
/// is indexed and found from the index. A caller's id that looks derived but names
/// another event finds only its own event.
#[tokio::test]
async fn a_derived_correlation_id_names_its_event_without_an_index_entry_and_a_callers_id_is_indexed() {
    use switchyard_common::ledger::{derived_correlation_id, events_with_correlation};
    let w = world();
    let (status, body) = call(&w, signed(&payment("evt_derived"))).await;
    assert_eq!(status, 202, "{body}");
    let derived = derived_correlation_id("stripe", "evt_derived");
    assert_eq!(body["correlation_id"], derived.as_str(), "{body}");
    let envelope = Envelope::from_json(&w.queue.sent_to(QUEUE)[0].body).unwrap();
    assert_eq!(envelope.correlationid, derived);
    let pk = RecordKey::intake("stripe", "evt_derived").pk;
    assert!(w.ledger.events_by_correlation(&derived).await.unwrap().is_empty(), "indexed anyway");
    assert_eq!(events_with_correlation(w.ledger.as_ref(), &derived).await.unwrap(), vec![pk.clone()]);

    let mut req = signed(&payment("evt_supplied"));
    req.headers.insert("x-correlation-id", "order-1042".parse().unwrap());
    assert_eq!(call(&w, req).await.0, 202);
    let supplied = RecordKey::intake("stripe", "evt_supplied").pk;
    assert_eq!(w.ledger.events_by_correlation("order-1042").await.unwrap(), vec![supplied.clone()]);
    assert_eq!(events_with_correlation(w.ledger.as_ref(), "order-1042").await.unwrap(), vec![supplied]);

    // A caller sends evt_derived's id with another event: that event is indexed under
    // it; evt_derived is found too, once.
    let mut req = signed(&payment("evt_lookalike"));
    req.headers.insert("x-correlation-id", derived.parse().unwrap());
    assert_eq!(call(&w, req).await.0, 202);
    let mut found = events_with_correlation(w.ledger.as_ref(), &derived).await.unwrap();
    found.sort();
    assert_eq!(found, vec![pk, RecordKey::intake("stripe", "evt_lookalike").pk]);
    // An id that decodes to an event whose intake record carries another id: not it.
    let spoof = derived_correlation_id("stripe", "evt_supplied");
    assert!(events_with_correlation(w.ledger.as_ref(), &spoof).await.unwrap().is_empty());
}

fn world_with_max_body(max_body_bytes: usize) -> World {
    let mut w = world();
    w.deps.limits.max_body_bytes = max_body_bytes;
    w
}

/// `{"id":ID,"type":…,"pad":PAD…}` padded with `unit` (JSON text) to exactly `bytes`.
fn padded_payment(id: &str, unit: &str, separator: &str, bytes: usize) -> String {
    let (head, tail) = (format!(r#"{{"id":"{id}","type":"payment_intent.succeeded","pad":["#), "]}");
    let mut body = head;
    while body.len() + separator.len() + unit.len() + tail.len() <= bytes {
        if !body.ends_with('[') {
            body.push_str(separator);
        }
        body.push_str(unit);
    }
    body.push_str(tail);
    // Fill the last few bytes with spaces, which JSON ignores.
    body.insert_str(body.len() - tail.len(), &" ".repeat(bytes - body.len()));
    assert_eq!(body.len(), bytes);
    body
}

#[tokio::test]
async fn a_plain_body_at_the_upper_bound_yields_an_envelope_within_the_sqs_limit() {
    let w = world_with_max_body(crate::deps::MAX_BODY_BYTES_LIMIT);
    let body = padded_payment("evt_at_bound", r#""abcdefghij""#, ",", crate::deps::MAX_BODY_BYTES_LIMIT);
    let (status, answer) = call(&w, signed(&body)).await;
    assert_eq!(status, 202, "{answer}");
    let sent = w.queue.sent_to(QUEUE);
    assert!(sent[0].size() <= switchyard_common::queue::MAX_MESSAGE_BYTES, "{}", sent[0].size());
}

#[tokio::test]
async fn a_body_whose_envelope_would_not_fit_sqs_is_answered_413_and_leaves_no_claim() {
    let w = world_with_max_body(crate::deps::MAX_BODY_BYTES_LIMIT);
    // The worst growth when intake re-writes a body: `9e15` (4 bytes) becomes
    // `9000000000000000.0` (18), U+FFFE (3 bytes) becomes `\ufffe` (6).
    for (id, unit) in [("evt_numbers", "9e15"), ("evt_nonchars", "\"\u{FFFE}\u{FFFE}\u{FFFE}\"")] {
        let body = padded_payment(id, unit, ",", crate::deps::MAX_BODY_BYTES_LIMIT);
        let (status, answer) = call(&w, signed(&body)).await;
        assert_eq!((status, answer["error"].as_str()), (413, Some("body_too_large")), "{id}: {answer}");
        assert!(
            answer["message"].as_str().unwrap_or_default().contains("over the queue's limit of 262144"),
            "{answer}"
        );
        let history = w.ledger.history(&RecordKey::intake("stripe", id).pk).await.unwrap();
        assert!(history.is_empty(), "{id}: a refused event leaves no claim");
    }
    assert!(w.queue.sent_to(QUEUE).is_empty());
}

#[tokio::test]
async fn characters_sqs_refuses_are_escaped_in_the_envelope_and_the_event_is_unchanged() {
    let w = world();
    let payload = serde_json::json!({
        "id": "evt_chars",
        "type": "payment_intent.succeeded",
        "data": {"object": {"name": "a\u{FFFE}b\u{FFFF}c\u{1}d\u{1F600}", "\u{FFFE}": true}},
    });
    let (status, answer) = call(&w, signed(&serde_json::to_string(&payload).unwrap())).await;
    assert_eq!(status, 202, "{answer}");
    let sent = w.queue.sent_to(QUEUE);
    assert!(sent[0].body.chars().all(switchyard_common::queue::is_sqs_char), "{:?}", sent[0].body);
    assert!(sent[0].check().is_ok());
    assert_eq!(Envelope::from_json(&sent[0].body).unwrap().data, payload);
}

#[tokio::test]
async fn an_event_id_or_type_sqs_cannot_carry_does_not_stop_the_event() {
    let w = world();
    let payload = serde_json::json!({"id": "evt\u{1}\u{FFFE}", "type": "odd\u{FFFF}type"});
    let (status, answer) = call(&w, signed(&payload.to_string())).await;
    assert_eq!(status, 202, "{answer}");
    assert!(answer["event_id"].as_str().unwrap().starts_with("sha256:"), "hashed like an overlong id: {answer}");
    let sent = w.queue.sent_to(QUEUE);
    assert!(sent[0].check().is_ok(), "{:?}", sent[0]);
    assert_eq!(sent[0].attributes["event_type"], "odd\u{FFFD}type", "attributes are labels: replaced");
    assert_eq!(Envelope::from_json(&sent[0].body).unwrap().event_type, "odd\u{FFFF}type", "the envelope keeps it");
}

#[tokio::test]
async fn the_cold_starts_warm_up_caches_the_signing_secrets_so_the_first_event_reads_none() {
    let store = Arc::new(StaticSecrets::default().with(SECRET_ID, VersionStage::Current, SECRET));
    let w = world_with(Arc::new(CachedSecrets::new(store.clone(), Duration::from_secs(300))), |_| {});
    warm_up(&w.deps).await;
    let warmed = store.reads.load(Ordering::SeqCst);
    assert!(warmed >= 1, "the warm-up read the sources' secrets");
    assert!(w.queue.sent_to(QUEUE).is_empty(), "the warm-up sends nothing");
    assert_eq!(call(&w, signed(&payment("evt_warm"))).await.0, 202);
    assert_eq!(store.reads.load(Ordering::SeqCst), warmed, "the first event read no secret");
}

#[tokio::test]
async fn the_warm_up_reads_current_secrets_only_and_a_previous_one_is_read_once_when_a_sender_still_signs_with_it() {
    let store = rotated(60);
    let w = world_with(Arc::new(CachedSecrets::new(store.clone(), Duration::from_secs(300))), |_| {});
    warm_up(&w.deps).await;
    let warmed = store.reads.load(Ordering::SeqCst);
    let now = now_ms() / 1000;
    assert_eq!(call(&w, request("stripe", &payment("evt_c1"), SECRET, now)).await.0, 202);
    assert_eq!(store.reads.load(Ordering::SeqCst), warmed, "the current secret came from the warm-up");

    // A sender still on the previous secret, inside the grace: read once, then cached.
    assert_eq!(call(&w, request("stripe", &payment("evt_p1"), "whsec_old", now)).await.0, 202);
    assert_eq!(store.reads.load(Ordering::SeqCst), warmed + 1, "the previous version was not read before");
    assert_eq!(call(&w, request("stripe", &payment("evt_p2"), "whsec_old", now)).await.0, 202);
    assert_eq!(store.reads.load(Ordering::SeqCst), warmed + 1, "the previous version came from the cache");
    // A signature neither matches: both versions read again once (a rotation since), then no more.
    assert_eq!(call(&w, request("stripe", &payment("evt_p3"), "whsec_wrong", now)).await.0, 401);
    assert_eq!(call(&w, request("stripe", &payment("evt_p4"), "whsec_wrong", now)).await.0, 401);
    assert_eq!(store.reads.load(Ordering::SeqCst), warmed + 3);
}
