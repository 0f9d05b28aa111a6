//! Sending to SQS queues and steering redelivery. Receiving belongs to the event
//! source mapping (or the local runner that plays it), not to the functions.

mod limits;
mod memory;
mod sqs;

pub use limits::{
    batches, check_all, is_sqs_char, sqs_safe_text, to_sqs_json, Unsendable, MAX_BATCH, MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
};
pub use memory::MemoryQueue;
pub use sqs::SqsQueue;

use std::collections::BTreeMap;

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutboundMessage {
    pub body: String,
    /// String message attributes (reason, flow, correlation id …).
    pub attributes: BTreeMap<String, String>,
    /// FIFO queues only.
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
}

impl OutboundMessage {
    pub fn new(body: impl Into<String>) -> Self {
        Self { body: body.into(), ..Self::default() }
    }

    /// A message whose body is `value` as JSON, with the characters SQS refuses escaped
    /// (see [`to_sqs_json`]): what every producer of envelopes and deliveries uses.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, Unsendable> {
        Ok(Self::new(to_sqs_json(value)?))
    }

    pub fn attribute(mut self, name: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        // SQS refuses empty attribute values; an absent attribute says the same. It
        // refuses some characters too: attributes are labels, the body is the record.
        if !value.is_empty() {
            self.attributes.insert(name.to_owned(), sqs_safe_text(&value));
        }
        self
    }
}

/// A delivery as a dispatch queue message (body and the ids its consumers log), or why
/// SQS would never take it. What the mapper enqueues, a replay re-enqueues and a
/// dispatcher re-sends after many holds.
/// An envelope as the ingest queue's message: JSON with the characters SQS refuses
/// escaped, its ids as attributes (so that even a message that cannot be parsed is
/// logged with them), refused if it would not fit an SQS message. Intake's and the
/// poller's.
pub fn envelope_message(envelope: &crate::envelope::Envelope) -> Result<OutboundMessage, Unsendable> {
    let message = OutboundMessage::json(envelope)?
        .attribute("correlation_id", &envelope.correlationid)
        .attribute("event_id", &envelope.id)
        .attribute("source", envelope.source_name())
        .attribute("event_type", &envelope.event_type);
    message.check()?;
    Ok(message)
}

pub fn delivery_message(d: &crate::envelope::Delivery) -> Result<OutboundMessage, crate::failure::Failure> {
    use crate::failure::Failure;
    let message = OutboundMessage::json(d)
        .map_err(|e| Failure::terminal(e.to_string()))?
        .attribute("correlation_id", &d.correlation_id)
        .attribute("event_id", &d.event_id)
        .attribute("source", &d.source)
        .attribute("flow", &d.flow)
        .attribute("destination", &d.destination);
    match message.check() {
        Ok(()) => Ok(message),
        Err(Unsendable::TooLarge { bytes, .. }) => Err(Failure::terminal(format!(
            "too_large: the mapped delivery is {bytes} bytes, over SQS's limit of {MAX_MESSAGE_BYTES}"
        ))),
        Err(e) => Err(Failure::terminal(e.to_string())),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// Some entries of a batch were refused; their positions in the input.
    #[error("{} of the batch were not sent: {reason}", failed.len())]
    Partial { failed: Vec<usize>, reason: String },
    /// SQS would refuse message `index` whatever happens (nothing was sent): retrying
    /// cannot help.
    #[error("message {index} cannot be sent: {problem}")]
    Unsendable { index: usize, problem: Unsendable },
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends all messages in as few calls as possible (batches of at most ten messages
    /// and 256 KiB). Every message is checked first: one SQS would refuse fails the
    /// call with [`QueueError::Unsendable`] before anything is sent.
    async fn send_all(&self, queue_url: &str, messages: &[OutboundMessage]) -> Result<(), QueueError>;

    async fn send(&self, queue_url: &str, message: &OutboundMessage) -> Result<(), QueueError> {
        self.send_all(queue_url, std::slice::from_ref(message)).await
    }

    /// Makes a received message visible again after `seconds`: the backoff of a retry.
    async fn set_visibility(&self, queue_url: &str, receipt_handle: &str, seconds: i32) -> Result<(), QueueError>;

    /// One cheap read of `queue_url`'s attributes at cold start, so the connection the
    /// first send needs is open (every queue of a region shares the endpoint).
    async fn warm_up(&self, _queue_url: &str) -> Result<(), QueueError> {
        Ok(())
    }
}
