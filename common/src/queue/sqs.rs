use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;

use super::*;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
}

impl SqsQueue {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn entry(i: usize, m: &OutboundMessage) -> Result<SendMessageBatchRequestEntry, QueueError> {
    let mut e = SendMessageBatchRequestEntry::builder()
        .id(format!("m{i}"))
        .message_body(&m.body)
        .set_message_group_id(m.group_id.clone())
        .set_message_deduplication_id(m.dedup_id.clone());
    for (name, value) in &m.attributes {
        let attr = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        e = e.message_attributes(name, attr);
    }
    e.build().map_err(|e| QueueError::Unavailable(e.to_string()))
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send_all(&self, queue_url: &str, messages: &[OutboundMessage]) -> Result<(), QueueError> {
        check_all(messages)?;
        let mut failed = Vec::new();
        let mut reason = String::new();
        for range in batches(messages) {
            let first = range.start;
            let entries =
                messages[range].iter().enumerate().map(|(i, m)| entry(i, m)).collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError::Unavailable(DisplayErrorContext(e).to_string()))?;
            for f in out.failed() {
                let index = f.id().trim_start_matches('m').parse::<usize>().unwrap_or(0);
                failed.push(first + index);
                reason = format!("{}: {}", f.code(), f.message().unwrap_or_default());
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(QueueError::Partial { failed, reason })
        }
    }

    async fn warm_up(&self, queue_url: &str) -> Result<(), QueueError> {
        self.client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(DisplayErrorContext(e).to_string()))?;
        Ok(())
    }

    async fn set_visibility(&self, queue_url: &str, receipt_handle: &str, seconds: i32) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}
