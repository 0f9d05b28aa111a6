//! Issue 9: the example flows beyond Stripe → CRM, end to end through intake, the
//! mapper and the dispatcher, asserted on what each destination received.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_e2e::runner::{serve, sink_lines, work_dir};
use switchyard_e2e::{eventually, fixture, local_secret, settle, LocalAws, World};
use tokio::io::{AsyncBufReadExt, BufReader};

const ORDERS: &str = "/v1/fulfilment-orders";

/// The example `order.placed` event with its event id and order id replaced.
fn order(event_id: &str, order_id: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(&fixture("acme/order.placed.json")).unwrap();
    v["id"] = json!(event_id);
    v["order"]["id"] = json!(order_id);
    v.to_string().into_bytes()
}

fn golden(name: &str) -> Value {
    serde_json::from_str(&fixture(&format!("golden/{name}.json"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_placed_twice_reaches_fulfilment_once_keyed_by_its_order_id_with_the_golden_request() {
    let w = World::start().await;
    // The shop fires order ord_1043 twice (two event ids), and another order once.
    for (event, order_id) in [("acme_o1", "ord_1043"), ("acme_o2", "ord_1043"), ("acme_o3", "ord_2001")] {
        let (status, answer) = w.post_signed("acme", &order(event, order_id), event, vec![]).await;
        assert_eq!(status, 202, "{answer}");
    }
    let both = eventually(Duration::from_secs(60), async || {
        w.sink.received().iter().filter(|r| r.path == ORDERS && r.answered == 201).count() >= 2
    });
    assert!(both.await, "fulfilment received {:?}", w.sink.received().len());
    settle(Duration::from_secs(3)).await;

    let received: Vec<_> = w.sink.received().into_iter().filter(|r| r.path == ORDERS).collect();
    let keys: Vec<&str> = received.iter().map(|r| r.header("Idempotency-Key").unwrap()).collect();
    assert_eq!(received.len(), 2, "an order was sent twice: {keys:?}");
    assert!(keys.contains(&"ord_1043") && keys.contains(&"ord_2001"), "{keys:?}");
    let g = golden("acme-order-to-fulfilment");
    let first = received.iter().find(|r| r.header("Idempotency-Key") == Some("ord_1043")).unwrap();
    assert_eq!(first.body, g["body"]);
    assert_eq!(first.method, g["method"].as_str().unwrap());
    for (name, value) in g["headers"].as_object().unwrap() {
        assert_eq!(first.header(name), value.as_str(), "header {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivered_order_emits_its_lag_and_slo_budget_as_datapoints_of_its_flows_emf_lines() {
    let aws = LocalAws::start().await;
    let dir = work_dir("order-lag");
    let (mut runner, banner) = serve(&aws, &dir, &[], true).await;
    let mut stdout = BufReader::new(runner.stdout.take().unwrap()).lines();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let collected = lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            collected.lock().unwrap().push(line);
        }
    });

    let http = switchyard_e2e::http_client();
    let source = switchyard_common::config::Config::load(&switchyard_e2e::repo().join("config/flows.toml")).unwrap();
    let acme = &source.sources["acme"];
    let secret = switchyard_common::signature::SigningSecret::new(local_secret(&acme.secret));
    for i in 0..3 {
        let body = order(&format!("acme_lag_{i}"), &format!("ord_lag_{i}"));
        let headers = switchyard_common::signature::sign(&acme.scheme, &secret, &body, 0, "").unwrap();
        let mut req = http.post(format!("{}/hooks/acme", banner.intake)).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        assert_eq!(req.send().await.unwrap().status().as_u16(), 202);
    }
    let arrived = eventually(Duration::from_secs(60), async || {
        sink_lines(&dir).iter().filter(|r| r["path"] == ORDERS).count() == 3
    });
    assert!(arrived.await, "the orders did not reach the sink");
    settle(Duration::from_secs(2)).await;

    let figures: Vec<Value> = lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["_aws"].is_object() && v["Flow"] == "acme-order-to-fulfilment" && v.get("DeliveryLag").is_some())
        .collect();
    // A dispatcher batch writes one line per flow: counts summed, lags one datapoint each.
    let values = |f: &Value, name: &str| -> Vec<f64> {
        match &f[name] {
            Value::Array(many) => many.iter().filter_map(Value::as_f64).collect(),
            one => one.as_f64().into_iter().collect(),
        }
    };
    let total = |name: &str| figures.iter().map(|f| values(f, name).iter().sum::<f64>()).sum::<f64>();
    let lags: Vec<f64> = figures.iter().flat_map(|f| values(f, "DeliveryLag")).collect();
    assert_eq!(lags.len(), 3, "one lag datapoint per delivery: {figures:?}");
    assert!(lags.iter().all(|lag| (0.0..120_000.0).contains(lag)), "lags {lags:?} ms");
    assert_eq!(total("Delivered"), 3.0);
    assert_eq!(total("SloEvents"), 3.0);
    let spent: Vec<f64> = figures.iter().flat_map(|f| values(f, "SloBudgetSpent")).collect();
    assert_eq!(spent, vec![0.0; 3], "on time spends nothing");
    for f in &figures {
        let declared = &f["_aws"]["CloudWatchMetrics"][0]["Metrics"];
        assert!(declared.as_array().unwrap().iter().any(|m| m["Name"] == "DeliveryLag" && m["Unit"] == "Milliseconds"));
    }
}

// ------------------------------------------------------------------ the web-form lead

const CONTACTS: &str = "/api/contacts";
const TASKS: &str = "/api/tasks";
const EMAILS: &str = "/v1/messages";
/// The chat webhook's path: the secret part of its URL (infra/local-secrets.json).
const CHAT: &str = "/chat/T0LOCAL/B0LOCAL/local-chat-webhook-secret";
const ALL: [&str; 4] = [CONTACTS, TASKS, EMAILS, CHAT];

/// The example form submission with its submission id, and `edit` applied to its fields.
fn submission(id: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(&fixture("webform/form.submitted.json")).unwrap();
    v["submission_id"] = json!(id);
    edit(&mut v["fields"]);
    v.to_string().into_bytes()
}

async fn submit(w: &World, body: &[u8]) {
    let (status, answer) = w.post_signed("webform", body, "", vec![]).await;
    assert_eq!(status, 202, "{answer}");
}

/// What `path` answered 2xx to.
fn accepted_at(w: &World, path: &str) -> Vec<switchyard_local::sink::Received> {
    w.sink.received().into_iter().filter(|r| r.path == path && (200..300).contains(&r.answered)).collect()
}

async fn wait_for(w: &World, paths: &[&str]) {
    let done = eventually(Duration::from_secs(60), async || paths.iter().all(|p| !accepted_at(w, p).is_empty()));
    assert!(
        done.await,
        "not all of {paths:?} were reached: {:?}",
        w.sink.received().iter().map(|r| (&r.path, r.answered)).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_form_lead_reaches_all_four_systems_with_the_golden_requests_and_a_double_submit_makes_one_of_each() {
    let w = World::start().await;
    submit(&w, &submission("sub_1", |_| {})).await;
    // The visitor clicks again: a new submission with the same content.
    submit(&w, &submission("sub_2", |_| {})).await;
    wait_for(&w, &ALL).await;
    settle(Duration::from_secs(4)).await;

    for (path, flow) in [
        (CONTACTS, "webform-lead-to-crm-contact"),
        (TASKS, "webform-lead-to-sales-task"),
        (EMAILS, "webform-lead-to-welcome-email"),
        (CHAT, "webform-lead-to-team-chat"),
    ] {
        let got = accepted_at(&w, path);
        assert_eq!(got.len(), 1, "{flow}: the double submit was delivered {} times", got.len());
        let g = golden(flow);
        assert_eq!(got[0].body, g["body"], "{flow}");
        for (name, value) in g["headers"].as_object().unwrap() {
            assert_eq!(got[0].header(name), value.as_str(), "{flow}: header {name}");
        }
        let key = got[0].header("Idempotency-Key").unwrap();
        assert!(key.len() == 64 && !key.contains("example"), "{flow}: a content key, hashed: {key}");
    }
    assert_eq!(w.aws.depth(&w.aws.stack.ingest_dlq_url).await, 0);
    assert_eq!(w.aws.depth(&w.aws.stack.dispatch_dlq_url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_email_parks_the_contact_and_the_welcome_email_and_delivers_the_task_and_the_chat_message() {
    let w = World::start().await;
    submit(&w, &submission("sub_bad_email", |f| f["email"] = json!("katherine at example dot com"))).await;
    wait_for(&w, &[TASKS, CHAT]).await;
    settle(Duration::from_secs(3)).await;

    assert!(
        accepted_at(&w, CONTACTS).is_empty() && accepted_at(&w, EMAILS).is_empty(),
        "a contract violation was sent"
    );
    assert!(w.sink.received().iter().all(|r| r.path != CONTACTS && r.path != EMAILS), "nothing was even tried");
    let parked = w.aws.drain(&w.aws.stack.ingest_dlq_url).await;
    let mut flows: Vec<&str> = parked.iter().map(|m| m.attributes["flow"].as_str()).collect();
    flows.sort_unstable();
    assert_eq!(flows, ["webform-lead-to-crm-contact", "webform-lead-to-welcome-email"]);
    for m in &parked {
        assert_eq!(m.attributes["error_class"], "terminal");
        assert!(m.attributes["reason"].contains("email"), "the reason names the field: {}", m.attributes["reason"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_crm_down_the_other_three_are_delivered_and_the_contact_once_it_is_back() {
    let w = World::start().await;
    w.sink.answer_path(CONTACTS, switchyard_local::sink::Reply::Status(503));
    submit(&w, &submission("sub_crm_down", |_| {})).await;
    wait_for(&w, &[TASKS, EMAILS, CHAT]).await;
    let tried = w.sink.received().iter().filter(|r| r.path == CONTACTS).count();
    assert!(tried >= 1 && accepted_at(&w, CONTACTS).is_empty(), "the CRM was down");

    w.sink.clear_path(CONTACTS);
    wait_for(&w, &[CONTACTS]).await;
    settle(Duration::from_secs(2)).await;
    for path in ALL {
        assert_eq!(accepted_at(&w, path).len(), 1, "{path}");
    }
    assert_eq!(w.aws.depth(&w.aws.stack.dispatch_dlq_url).await, 0, "the CRM's delivery was parked instead of retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_owner_who_no_longer_exists_parks_the_task_with_the_task_apis_own_reason() {
    let w = World::start().await;
    let gone = r#"{"error": "owner usr_sales_17 does not exist"}"#;
    w.sink.answer_path(TASKS, switchyard_local::sink::Reply::Json(422, gone.to_owned()));
    submit(&w, &submission("sub_owner_gone", |_| {})).await;
    wait_for(&w, &[CONTACTS, EMAILS, CHAT]).await;
    let parked = eventually(Duration::from_secs(30), async || w.aws.depth(&w.aws.stack.dispatch_dlq_url).await == 1);
    assert!(parked.await, "the task was not parked");

    let m = w.aws.drain(&w.aws.stack.dispatch_dlq_url).await.remove(0);
    assert_eq!(m.attributes["flow"], "webform-lead-to-sales-task");
    assert_eq!(m.attributes["reason"], "HTTP 422 from tasks: owner usr_sales_17 does not exist");
    assert_eq!(w.sink.received().iter().filter(|r| r.path == TASKS).count(), 1, "a 422 is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_crm_key_is_read_again_once_per_attempt_then_counted_as_a_permission_failure() {
    let w = World::start().await;
    w.sink.answer_path(CONTACTS, switchyard_local::sink::Reply::Status(401));
    submit(&w, &submission("sub_expired", |_| {})).await;
    wait_for(&w, &[TASKS, EMAILS, CHAT]).await;
    let refused = eventually(Duration::from_secs(30), async || {
        w.sink.received().iter().filter(|r| r.path == CONTACTS).count() >= 4
    });
    assert!(refused.await, "the CRM was not tried twice");

    // Each attempt is the call and one call with freshly read credentials.
    let history = w.aws.history("webform", "sub_expired").await;
    let crm = history.iter().find(|r| r.flow.as_deref() == Some("webform-lead-to-crm-contact"));
    let keyed = match crm {
        Some(r) => r.clone(),
        None => panic!("no CRM delivery record in {history:?}"),
    };
    assert!(keyed.permission_failures >= 1, "{keyed:?}");
    let calls = w.sink.received().iter().filter(|r| r.path == CONTACTS).count() as u32;
    assert!(calls >= 2 * keyed.permission_failures, "{calls} calls for {} refused attempts", keyed.permission_failures);

    // The key is renewed (here: the CRM accepts again): the retry delivers it.
    w.sink.clear_path(CONTACTS);
    wait_for(&w, &[CONTACTS]).await;
    assert_eq!(w.aws.depth(&w.aws.stack.dispatch_dlq_url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_runner_delivers_an_invoice_through_its_sinks_own_token_endpoint() {
    let aws = LocalAws::start().await;
    let dir = work_dir("invoice-local");
    let (_runner, banner) = serve(&aws, &dir, &[], false).await;
    let config = switchyard_common::config::Config::load(&switchyard_e2e::repo().join("config/flows.toml")).unwrap();
    let standard = &config.sources["standard"];
    let secret = switchyard_common::signature::SigningSecret::new(local_secret(&standard.secret));
    let body = fixture("standard/invoice.paid.json").into_bytes();
    let now = switchyard_common::runtime::now_ms() / 1000;
    let headers = switchyard_common::signature::sign(&standard.scheme, &secret, &body, now, "msg_local_1").unwrap();
    let mut req = switchyard_e2e::http_client().post(format!("{}/hooks/standard", banner.intake)).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status().as_u16(), 202);

    let arrived =
        eventually(Duration::from_secs(60), async || sink_lines(&dir).iter().any(|r| r["path"] == "/api/invoices"));
    assert!(arrived.await, "no invoice reached the sink");
    let lines = sink_lines(&dir);
    let invoice = lines.iter().find(|r| r["path"] == "/api/invoices").unwrap();
    assert_eq!(invoice["headers"]["authorization"], "Bearer local-access-token");
    assert_eq!(lines.iter().filter(|r| r["path"] == "/oauth/token").count(), 1);
}
