//! Intake's answers (DESIGN.md): 202 accepted, 200 duplicate, 400 malformed, 401 bad or
//! stale signature, 404 unknown source, 405 wrong method, 409 conflict, 413 too large,
//! 503 only when the event was not durably accepted.

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::ApiGatewayV2httpResponse;
use http::header::{HeaderValue, CONTENT_TYPE};
use serde_json::{json, Value};

fn respond(status: u16, body: Value) -> ApiGatewayV2httpResponse {
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = i64::from(status);
    r.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.body = Some(Body::Text(body.to_string()));
    r
}

pub fn accepted(event_id: &str, correlation_id: &str) -> ApiGatewayV2httpResponse {
    respond(202, json!({"status": "accepted", "event_id": event_id, "correlation_id": correlation_id}))
}

pub fn duplicate(event_id: &str) -> ApiGatewayV2httpResponse {
    respond(200, json!({"status": "duplicate", "event_id": event_id}))
}

/// `code` is stable and documented; `message` says what to do about it.
pub fn error(status: u16, code: &str, message: &str) -> ApiGatewayV2httpResponse {
    respond(status, json!({"error": code, "message": message}))
}
