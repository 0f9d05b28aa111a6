//! Sending to SQS queues and steering redelivery. Receiving belongs to the event
//! source mapping (or the local runner that plays it), not to the functions.

mod memory;
mod sqs;

pub use memory::MemoryQueue;
pub use sqs::SqsQueue;

use std::collections::BTreeMap;

use async_trait::async_trait;

/// The most SQS takes in one `SendMessageBatch`.
pub const MAX_BATCH: usize = 10;

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

    pub fn attribute(mut self, name: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        // SQS refuses empty attribute values; an absent attribute says the same.
        if !value.is_empty() {
            self.attributes.insert(name.to_owned(), value);
        }
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// Some entries of a batch were refused; their positions in the input.
    #[error("{} of the batch were not sent: {reason}", failed.len())]
    Partial { failed: Vec<usize>, reason: String },
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends all messages in as few calls as possible (batches of ten).
    async fn send_all(&self, queue_url: &str, messages: &[OutboundMessage]) -> Result<(), QueueError>;

    async fn send(&self, queue_url: &str, message: &OutboundMessage) -> Result<(), QueueError> {
        self.send_all(queue_url, std::slice::from_ref(message)).await
    }

    /// Makes a received message visible again after `seconds`: the backoff of a retry.
    async fn set_visibility(&self, queue_url: &str, receipt_handle: &str, seconds: i32) -> Result<(), QueueError>;
}
