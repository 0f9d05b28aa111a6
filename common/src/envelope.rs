//! The two messages that travel between the functions.
//!
//! [`Envelope`] (intake → mapper) is a CloudEvents 1.0 event in the JSON format, so any
//! other consumer of the ingest queue can read it. [`Delivery`] (mapper → dispatcher)
//! is one flow's mapped request for one destination.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const CLOUDEVENTS_VERSION: &str = "1.0";
const SOURCE_PREFIX: &str = "/hooks/";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub specversion: String,
    /// The provider's event id (or a hash of the body when the provider has none).
    pub id: String,
    /// `/hooks/{source}`: a URI-reference, as CloudEvents requires.
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339 time intake received the event.
    pub time: String,
    pub datacontenttype: String,
    pub data: Value,
    /// Extension attribute: the id that follows the event through every log line.
    pub correlationid: String,
}

impl Envelope {
    pub fn new(
        source_name: &str,
        id: String,
        event_type: String,
        time: String,
        data: Value,
        correlation_id: String,
    ) -> Self {
        Self {
            specversion: CLOUDEVENTS_VERSION.to_owned(),
            id,
            source: format!("{SOURCE_PREFIX}{source_name}"),
            event_type,
            time,
            datacontenttype: "application/json".to_owned(),
            data,
            correlationid: correlation_id,
        }
    }

    /// When intake accepted it, in epoch milliseconds (`time` parsed).
    pub fn accepted_at_ms(&self) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(&self.time).ok().map(|t| t.timestamp_millis())
    }

    /// The configured source name (`stripe` for `/hooks/stripe`).
    pub fn source_name(&self) -> &str {
        self.source.strip_prefix(SOURCE_PREFIX).unwrap_or(&self.source)
    }

    /// Parses and checks the attributes a consumer depends on.
    pub fn from_json(text: &str) -> Result<Self, EnvelopeError> {
        let envelope: Envelope = serde_json::from_str(text).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if envelope.specversion != CLOUDEVENTS_VERSION {
            return Err(EnvelopeError::Malformed(format!("unsupported specversion {:?}", envelope.specversion)));
        }
        if envelope.id.is_empty() || envelope.source_name().is_empty() {
            return Err(EnvelopeError::Malformed("empty id or source".to_owned()));
        }
        Ok(envelope)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Whether a flow sends for real (`live`), only records what it would send (`dark`),
/// or is switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Live,
    Dark,
    Off,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Unique per (event, flow, flow version): the dispatcher's claim key.
    pub delivery_id: String,
    pub event_id: String,
    pub source: String,
    pub event_type: String,
    pub correlation_id: String,
    pub flow: String,
    pub flow_version: u32,
    pub destination: String,
    pub method: String,
    pub path: String,
    pub mode: Mode,
    /// Sent to the destination as the `Idempotency-Key` header.
    pub idempotency_key: String,
    /// The entity this delivery is about; deliveries with one go through the FIFO
    /// queue with it as the message group, so one entity's changes arrive in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    /// The entity's version in this event; an older one than already delivered is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_version: Option<i64>,
    /// The flow's business key, hashed (`ledger::entity_hash`): indexed with the
    /// delivery's ledger record for `switchyard-ops find --key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// When intake accepted the event (epoch ms): where a delivery's lag starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at_ms: Option<i64>,
    pub body: Value,
}

impl Delivery {
    pub fn from_json(text: &str) -> Result<Self, EnvelopeError> {
        let delivery: Delivery = serde_json::from_str(text).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if delivery.delivery_id.is_empty() || delivery.flow.is_empty() {
            return Err(EnvelopeError::Malformed("empty delivery id or flow".to_owned()));
        }
        Ok(delivery)
    }

    /// The id of one event's delivery through one flow version (also what identifies
    /// it when parked, by the mapper or the dispatcher).
    pub fn id_for(source: &str, event_id: &str, flow: &str, flow_version: u32) -> String {
        format!("{source}:{event_id}:{flow}:v{flow_version}")
    }

    /// The ledger record the dispatcher claims for this delivery: the event's own, or
    /// the one shared by every event yielding the flow's own idempotency key.
    pub fn claim_key(&self) -> crate::ledger::RecordKey {
        use crate::ledger::RecordKey;
        if self.idempotency_key == Self::default_key(&self.source, &self.event_id, &self.flow, self.flow_version) {
            self.event_key()
        } else {
            RecordKey::keyed_delivery(&self.flow, self.flow_version, &self.idempotency_key)
        }
    }

    /// The delivery's record in its event's history.
    pub fn event_key(&self) -> crate::ledger::RecordKey {
        crate::ledger::RecordKey::delivery(&self.source, &self.event_id, &self.flow, self.flow_version)
    }

    /// The payload a delivery claim is bound to: what the destination would receive.
    pub fn payload_hash(&self) -> String {
        let canonical = serde_json::json!([self.method, self.destination, self.path, self.idempotency_key, self.body]);
        sha256_hex(canonical.to_string().as_bytes())
    }

    /// The default idempotency key: stable across retries and replays of the same
    /// event through the same flow version, different for anything else.
    pub fn default_key(source: &str, event_id: &str, flow: &str, flow_version: u32) -> String {
        sha256_hex(format!("{source}\n{event_id}\n{flow}\n{flow_version}").as_bytes())
    }
}

/// Whether `value` can be sent as an HTTP header value as it is: visible ASCII and
/// spaces. A delivery's `Idempotency-Key` and `X-Correlation-Id` must be; the `http`
/// crate would also pass bytes above 0x7F, which many servers refuse or mangle.
pub fn is_header_text(value: &str) -> bool {
    value.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Envelope {
        Envelope::new(
            "stripe",
            "evt_1".into(),
            "payment_intent.succeeded".into(),
            "2026-11-23T10:00:00Z".into(),
            json!({"id": "evt_1"}),
            "corr-1".into(),
        )
    }

    #[test]
    fn envelope_is_a_cloudevents_json_event_with_extensions() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["source"], "/hooks/stripe");
        assert_eq!(v["type"], "payment_intent.succeeded");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["correlationid"], "corr-1");
    }

    #[test]
    fn envelope_round_trips_and_knows_its_source_name() {
        let text = serde_json::to_string(&sample()).unwrap();
        let back = Envelope::from_json(&text).unwrap();
        assert_eq!(back, sample());
        assert_eq!(back.source_name(), "stripe");
    }

    #[test]
    fn a_message_that_is_not_an_envelope_is_malformed() {
        for text in ["", "{", "[]", r#"{"specversion":"0.3"}"#] {
            assert!(Envelope::from_json(text).is_err(), "{text}");
        }
        let mut e = sample();
        e.specversion = "0.3".into();
        assert!(Envelope::from_json(&serde_json::to_string(&e).unwrap()).is_err());
    }

    #[test]
    fn header_text_is_visible_ascii_and_spaces() {
        assert!(is_header_text("pi_3PqRsT2e ZvKYlo2C:1/2"));
        for bad in ["line\nbreak", "tab\there", "caf\u{e9}", "nul\u{0}", "del\u{7f}"] {
            assert!(!is_header_text(bad), "{bad:?}");
        }
    }

    #[test]
    fn default_keys_differ_by_flow_version_and_repeat_for_the_same_inputs() {
        let a = Delivery::default_key("stripe", "evt_1", "crm", 1);
        assert_eq!(a, Delivery::default_key("stripe", "evt_1", "crm", 1));
        assert_ne!(a, Delivery::default_key("stripe", "evt_1", "crm", 2));
        assert_ne!(a, Delivery::default_key("stripe", "evt_2", "crm", 1));
    }
}
