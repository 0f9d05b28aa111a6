use std::sync::Mutex;

use async_trait::async_trait;

use super::*;

/// Records what was sent, for unit tests of the handlers' logic. `fail_sends` makes
/// every send fail, to test what a handler does when a queue is down.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<(String, OutboundMessage)>>,
    pub visibility: Mutex<Vec<(String, String, i32)>>,
    pub fail_sends: std::sync::atomic::AtomicBool,
    /// How many `send_all` calls were made.
    pub send_calls: std::sync::atomic::AtomicUsize,
    /// Messages whose body contains this text are refused one by one (what a
    /// `SendMessageBatch` with some failed entries does); the others are sent.
    pub refuse_containing: Mutex<Option<String>>,
}

impl MemoryQueue {
    pub fn sent_to(&self, queue_url: &str) -> Vec<OutboundMessage> {
        let sent = self.sent.lock().expect("queue lock");
        sent.iter().filter(|(q, _)| q == queue_url).map(|(_, m)| m.clone()).collect()
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send_all(&self, queue_url: &str, messages: &[OutboundMessage]) -> Result<(), QueueError> {
        if self.fail_sends.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(QueueError::Unavailable("queue is down (test)".to_owned()));
        }
        // What SQS would refuse, this refuses too, so handlers meet it in unit tests.
        check_all(messages)?;
        self.send_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let refuse = self.refuse_containing.lock().expect("queue lock").clone();
        let mut sent = self.sent.lock().expect("queue lock");
        let mut failed = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            match &refuse {
                Some(text) if m.body.contains(text.as_str()) => failed.push(i),
                _ => sent.push((queue_url.to_owned(), m.clone())),
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(QueueError::Partial { failed, reason: "InternalError: refused (test)".to_owned() })
        }
    }

    async fn set_visibility(&self, queue_url: &str, receipt_handle: &str, seconds: i32) -> Result<(), QueueError> {
        let mut v = self.visibility.lock().expect("queue lock");
        v.push((queue_url.to_owned(), receipt_handle.to_owned(), seconds));
        Ok(())
    }
}
