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
async fn every_delivered_order_emits_its_lag_and_slo_budget_as_one_emf_line_for_its_flow() {
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

    let http = reqwest::Client::new();
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
    assert_eq!(figures.len(), 3, "one lag line per delivery: {figures:?}");
    for f in &figures {
        let lag = f["DeliveryLag"].as_i64().unwrap();
        assert!((0..120_000).contains(&lag), "lag {lag} ms");
        assert_eq!(f["Delivered"], 1);
        assert_eq!(f["SloEvents"], 1);
        assert_eq!(f["SloBudgetSpent"], 0, "on time spends nothing");
        let declared = &f["_aws"]["CloudWatchMetrics"][0]["Metrics"];
        assert!(declared.as_array().unwrap().iter().any(|m| m["Name"] == "DeliveryLag" && m["Unit"] == "Milliseconds"));
    }
}
