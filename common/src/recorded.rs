//! What a flow version sent, or would have sent: the exact request (method, URL,
//! headers without their secret values, body), kept in the stage's archive bucket
//! beside the envelopes so that `switchyard-ops flows diff` can compare a dark version
//! with the live one event by event, and `flows backtest` can render the same thing
//! from archived envelopes without sending anything.
//!
//! The dispatcher records the request of every dark delivery (it sends nothing) and
//! of every live delivery of a flow that has a dark version beside it (once its 2xx
//! came back); flows without a dark sibling record nothing, so they cost nothing more.
//! One object per (flow, version, event), at
//! `requests/{flow}/v{version}/{YYYY-MM-DD}/{sha256(event id)}.json`, the day being
//! the one intake accepted the event on: the live and the dark request of one event
//! sit at the same place under two versions. The bucket's lifecycle expires them
//! with the envelopes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::archive::day_prefix_under;
use crate::config::{Auth, Destination};
use crate::envelope::{sha256_hex, Delivery, Mode};

/// Where recorded requests are kept, under one prefix per flow version.
pub const REQUESTS: &str = "requests/";

/// What stands in for a credential in a recorded request.
pub const SECRET: &str = "[secret]";

/// The key of one event's request through one flow version.
pub fn request_key(flow: &str, version: u32, event_id: &str, accepted_at_ms: i64) -> String {
    format!("{}{}.json", request_day_prefix(flow, version, accepted_at_ms), sha256_hex(event_id.as_bytes()))
}

/// The prefix of one flow version's requests of the (UTC) day of `at_ms`.
pub fn request_day_prefix(flow: &str, version: u32, at_ms: i64) -> String {
    day_prefix_under(&format!("{REQUESTS}{flow}/v{version}/"), at_ms)
}

/// One HTTP request as the dispatcher builds it, credentials replaced by [`SECRET`].
/// Outbound signature headers (computed from the body with the signing secret at send
/// time) are not part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub method: String,
    pub url: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

impl Request {
    /// The request `delivery` makes of `destination`. A destination whose URL is its
    /// credential (`webhook_url`) shows the flow's path on the base URL instead.
    pub fn of(delivery: &Delivery, destination: &Destination) -> Self {
        let mut headers = BTreeMap::from([
            ("content-type".to_owned(), "application/json".to_owned()),
            ("idempotency-key".to_owned(), delivery.idempotency_key.clone()),
            ("x-correlation-id".to_owned(), delivery.correlation_id.clone()),
        ]);
        let credential = match &destination.auth {
            Auth::None | Auth::WebhookUrl { .. } => None,
            Auth::ApiKey { header, .. } => Some(header.to_ascii_lowercase()),
            Auth::Bearer { .. } | Auth::Basic { .. } | Auth::OAuth2ClientCredentials { .. } => {
                Some("authorization".to_owned())
            }
        };
        if let Some(name) = credential {
            headers.insert(name, SECRET.to_owned());
        }
        Self {
            method: delivery.method.clone(),
            url: format!("{}{}", destination.base_url, delivery.path),
            headers,
            body: delivery.body.clone(),
        }
    }
}

/// One recorded request and whose it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub event_id: String,
    pub source: String,
    pub flow: String,
    pub flow_version: u32,
    pub mode: Mode,
    /// The destination's answer to a live request; `None` for a dark one (not sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub recorded_at_ms: i64,
    pub request: Request,
}

impl Recorded {
    pub fn new(delivery: &Delivery, destination: &Destination, status: Option<u16>, now_ms: i64) -> Self {
        Self {
            event_id: delivery.event_id.clone(),
            source: delivery.source.clone(),
            flow: delivery.flow.clone(),
            flow_version: delivery.flow_version,
            mode: delivery.mode,
            status,
            recorded_at_ms: now_ms,
            request: Request::of(delivery, destination),
        }
    }

    /// Where it is kept: the day intake accepted the event (else the recording's).
    pub fn key(delivery: &Delivery, now_ms: i64) -> String {
        let day = delivery.accepted_at_ms.unwrap_or(now_ms);
        request_key(&delivery.flow, delivery.flow_version, &delivery.event_id, day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn delivery() -> Delivery {
        Delivery {
            delivery_id: "stripe:evt_1:f:v2".into(),
            event_id: "evt_1".into(),
            source: "stripe".into(),
            event_type: "payment_intent.succeeded".into(),
            correlation_id: "corr-1".into(),
            flow: "f".into(),
            flow_version: 2,
            destination: "crm".into(),
            method: "POST".into(),
            path: "/api/contacts".into(),
            mode: Mode::Dark,
            idempotency_key: "key-1".into(),
            ordering_key: None,
            entity_version: None,
            entity: None,
            accepted_at_ms: Some(1_796_292_000_000), // 2026-12-03T10:00Z
            body: serde_json::json!({"status": "lead"}),
        }
    }

    #[test]
    fn a_recorded_request_shows_method_url_headers_and_body_and_names_the_credential_without_its_value() {
        let config = Config::bundled().expect("the bundled flow file");
        let crm = config.destination("crm").expect("crm");
        let r = Request::of(&delivery(), crm);
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, format!("{}/api/contacts", crm.base_url));
        assert_eq!(r.headers["idempotency-key"], "key-1");
        assert_eq!(r.headers["x-correlation-id"], "corr-1");
        assert_eq!(r.body, serde_json::json!({"status": "lead"}));
        let credentials: Vec<_> = r.headers.iter().filter(|(_, v)| v.as_str() == SECRET).collect();
        assert_eq!(credentials.len(), 1, "crm authenticates with one header: {:?}", r.headers);
    }

    #[test]
    fn the_live_and_dark_requests_of_one_event_are_kept_at_the_same_place_under_their_versions() {
        let d = delivery();
        let dark = Recorded::key(&d, 0);
        let live = Recorded::key(&Delivery { flow_version: 1, mode: Mode::Live, ..d.clone() }, 0);
        let id = sha256_hex(b"evt_1");
        assert_eq!(dark, format!("requests/f/v2/2026-12-03/{id}.json"));
        assert_eq!(live, format!("requests/f/v1/2026-12-03/{id}.json"));
        let unaccepted = Recorded::key(&Delivery { accepted_at_ms: None, ..d }, 1_796_292_000_000 + 86_400_000);
        assert!(unaccepted.starts_with("requests/f/v2/2026-12-04/"), "{unaccepted}");
    }
}
