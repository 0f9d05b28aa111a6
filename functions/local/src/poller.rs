//! Plays an SQS event source mapping: receive up to the batch size, invoke the real
//! handler with the event Lambda would build, delete what succeeded, and leave the
//! reported `batchItemFailures` to the queue (visibility timeout, then redrive).

use std::collections::HashMap;
use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use aws_sdk_sqs::Client;
use tracing::warn;

#[derive(Debug, Clone)]
pub struct Mapping {
    pub queue_url: String,
    /// The template's BatchSize.
    pub batch_size: i32,
    pub wait_secs: i32,
}

fn to_event_message(m: &aws_sdk_sqs::types::Message, queue_url: &str) -> SqsMessage {
    let mut out = SqsMessage::default();
    out.message_id = m.message_id().map(str::to_owned);
    out.receipt_handle = m.receipt_handle().map(str::to_owned);
    out.body = m.body().map(str::to_owned);
    out.md5_of_body = m.md5_of_body().map(str::to_owned);
    out.event_source = Some("aws:sqs".to_owned());
    // Lambda gives the queue's ARN; its last segment, the name, is what handlers look
    // at (the `.fifo` suffix), and the URL ends with the same name.
    out.event_source_arn =
        Some(format!("arn:aws:sqs:local:000000000000:{}", queue_url.rsplit('/').next().unwrap_or_default()));
    out.attributes =
        m.attributes().map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect()).unwrap_or_default();
    let mut attrs = HashMap::new();
    for (name, v) in m.message_attributes().into_iter().flatten() {
        let mut a = SqsMessageAttribute::default();
        a.string_value = v.string_value().map(str::to_owned);
        a.data_type = Some(v.data_type().to_owned());
        attrs.insert(name.clone(), a);
    }
    out.message_attributes = attrs;
    out
}

/// Receives one batch and runs it; returns how many messages were received.
pub async fn poll_once<F, Fut>(client: &Client, mapping: &Mapping, handler: &F) -> Result<usize, String>
where
    F: Fn(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    let out = client
        .receive_message()
        .queue_url(&mapping.queue_url)
        .max_number_of_messages(mapping.batch_size)
        .wait_time_seconds(mapping.wait_secs)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    let messages = out.messages();
    if messages.is_empty() {
        return Ok(0);
    }
    let mut event = SqsEvent::default();
    event.records = messages.iter().map(|m| to_event_message(m, &mapping.queue_url)).collect();
    let response = handler(event).await;
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    let entries: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !failed.contains(&m.message_id().unwrap_or_default()))
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(format!("d{i}"))
                .receipt_handle(m.receipt_handle()?)
                .build()
                .ok()
        })
        .collect();
    if !entries.is_empty() {
        client
            .delete_message_batch()
            .queue_url(&mapping.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    }
    Ok(messages.len())
}

/// Polls until the task is dropped or aborted.
pub async fn run<F, Fut>(client: Client, mapping: Mapping, handler: F)
where
    F: Fn(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    loop {
        if let Err(e) = poll_once(&client, &mapping, &handler).await {
            warn!(queue = %mapping.queue_url, error = %e, "poll failed");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}
