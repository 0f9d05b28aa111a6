//! What `infra/local_stack.py deploy` created, as it prints it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Stack {
    pub stage: String,
    pub endpoint: String,
    pub ledger_table: String,
    pub ingest_queue_url: String,
    pub ingest_dlq_url: String,
    pub dispatch_queue_url: String,
    pub dispatch_dlq_url: String,
    pub dispatch_fifo_queue_url: String,
    pub dispatch_fifo_dlq_url: String,
    /// The template's `DispatcherTimeoutSecs`: the deadline the local runner gives
    /// each dispatcher batch, as Lambda would.
    pub dispatcher_timeout_secs: u64,
    /// The event archive bucket (`ArchiveEvents`), when the stage keeps one.
    #[serde(default)]
    pub archive_bucket: Option<String>,
}

impl Stack {
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is not a stack description: {e}", path.display()))
    }
}
