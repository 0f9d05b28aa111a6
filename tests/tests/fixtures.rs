//! `events/` holds real-shaped Lambda events (usable with `cargo lambda invoke
//! --data-file`) and provider payloads: they must parse as what they claim to be.

use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::Value;
use switchyard_common::envelope::{Delivery, Envelope};
use switchyard_e2e::repo;

fn files(dir: &str) -> Vec<(String, String)> {
    let mut out: Vec<_> = std::fs::read_dir(repo().join("events").join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in events/{dir}");
    out
}

#[test]
fn api_gateway_fixtures_round_trip_as_http_api_v2_events() {
    for (path, text) in files("intake") {
        let event: ApiGatewayV2httpRequest = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(event.request_context.http.method, http::Method::POST, "{path}");
        let again: ApiGatewayV2httpRequest = serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
        assert_eq!(again.body, event.body, "{path}");
        assert_eq!(again.path_parameters, event.path_parameters, "{path}");
    }
}

#[test]
fn sqs_fixtures_round_trip_and_carry_an_envelope_or_a_delivery() {
    for (path, text) in files("sqs") {
        let event: SqsEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let again: SqsEvent = serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
        assert_eq!(again.records.len(), event.records.len());
        for record in &event.records {
            let body = record.body.as_deref().unwrap();
            let ok = Envelope::from_json(body).is_ok() || Delivery::from_json(body).is_ok();
            assert!(ok, "{path}: body is neither an envelope nor a delivery");
        }
    }
}

#[test]
fn provider_payloads_and_golden_requests_are_json_objects() {
    for dir in ["stripe", "github", "shopify", "standard", "acme", "webform", "golden"] {
        for (path, text) in files(dir) {
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(v.is_object(), "{path}");
        }
    }
}
