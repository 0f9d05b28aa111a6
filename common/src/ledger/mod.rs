//! Idempotency records, which are also the event ledger (DESIGN.md).
//!
//! One table, keyed so that one Query by `pk` returns an event's whole history:
//! `pk = EVT#{source}#{event_id}`, `sk = INTAKE` | `DELIVERY#{flow}#v{version}`.
//! A record holds ids, statuses, times, attempts and error class/reason — never a
//! payload (only its hash) and never a secret.
//!
//! The state machine is Powertools': a claim succeeds for a new key, an expired
//! record, a released (`FAILED`) record, or an `INPROGRESS` record whose in-progress
//! expiry has passed (its worker died). Key derivation stays with the callers.

mod dynamo;
mod memory;

pub use dynamo::DynamoLedger;
pub use memory::MemoryLedger;

use async_trait::async_trait;

use crate::failure::FailureClass;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub pk: String,
    pub sk: String,
}

impl RecordKey {
    pub fn event_pk(source: &str, event_id: &str) -> String {
        format!("EVT#{source}#{event_id}")
    }

    pub fn intake(source: &str, event_id: &str) -> Self {
        Self { pk: Self::event_pk(source, event_id), sk: "INTAKE".to_owned() }
    }

    pub fn delivery(source: &str, event_id: &str, flow: &str, flow_version: u32) -> Self {
        Self { pk: Self::event_pk(source, event_id), sk: format!("DELIVERY#{flow}#v{flow_version}") }
    }

    /// A delivery claimed by a flow's own idempotency key: shared by every event that
    /// yields the same key. Its outcome is mirrored under the event (see `mirror`).
    pub fn keyed_delivery(flow: &str, flow_version: u32, key: &str) -> Self {
        let hash = crate::envelope::sha256_hex(key.as_bytes());
        Self { pk: format!("KEY#{flow}#v{flow_version}#{hash}"), sk: "DELIVERY".to_owned() }
    }

    /// The record holding the last delivered version of an entity.
    pub fn entity(flow: &str, entity: &str) -> Self {
        Self { pk: format!("ENTITY#{flow}#{entity}"), sk: "VERSION".to_owned() }
    }
}

/// A record's state. There is no "expired" state: a record past its TTL is never
/// rewritten, whoever reads it compares `expires_at_s` with the time (DynamoDB deletes
/// lazily; see `conflict_outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Completed,
    /// Released after a retryable failure: the next attempt may claim it.
    Failed,
    /// Terminal: sent to a DLQ with its reason.
    Parked,
    /// Skipped: older than the last version delivered for the same entity.
    Stale,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "INPROGRESS",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
            Status::Parked => "PARKED",
            Status::Stale => "STALE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "INPROGRESS" => Status::InProgress,
            "COMPLETED" => Status::Completed,
            "FAILED" => Status::Failed,
            "PARKED" => Status::Parked,
            "STALE" => Status::Stale,
            _ => return None,
        })
    }
}

/// Everything a claim needs; times are passed in so the logic is testable.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub key: RecordKey,
    pub payload_hash: String,
    pub now_ms: i64,
    /// When this claim may be taken over if not completed: the Lambda's deadline.
    pub in_progress_until_ms: i64,
    /// TTL of the record, epoch seconds.
    pub expires_at_s: i64,
    pub correlation_id: String,
    pub flow: Option<String>,
    pub destination: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Ours to process; `attempt` counts claims of this key, starting at 1.
    Claimed {
        attempt: u32,
    },
    AlreadyCompleted {
        summary: Option<String>,
    },
    /// Another worker holds a live claim.
    InProgress,
    /// Same key, different payload: refused.
    PayloadMismatch,
    /// Parked before: what it was parked with, so a message that comes back (its
    /// worker died between the ledger write and the DLQ send or the delete) can be
    /// parked again with the same reason.
    AlreadyParked {
        reason: Option<String>,
        error_class: Option<String>,
        attempts: u32,
    },
}

/// A ledger record as read back (for the trace tool and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecord {
    pub key: RecordKey,
    pub status: Status,
    pub attempts: u32,
    /// Attempts that ended in a refused credential (after a refresh).
    pub permission_failures: u32,
    pub payload_hash: String,
    pub correlation_id: Option<String>,
    pub flow: Option<String>,
    pub destination: Option<String>,
    pub summary: Option<String>,
    pub error_class: Option<String>,
    pub reason: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub in_progress_until_ms: Option<i64>,
    pub expires_at_s: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store could not be reached or refused the call: always retryable.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    #[error("ledger record {pk}/{sk} is malformed: {message}")]
    Corrupt { pk: String, sk: String, message: String },
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimOutcome, LedgerError>;
    async fn complete(&self, key: &RecordKey, summary: &str, now_ms: i64) -> Result<(), LedgerError>;
    /// Gives the claim back after a retryable failure; the failure is kept for the trace.
    async fn release(&self, key: &RecordKey, class: FailureClass, reason: &str, now_ms: i64)
        -> Result<(), LedgerError>;
    /// Terminal: no claim will succeed again (until the record expires).
    async fn park(&self, key: &RecordKey, class: FailureClass, reason: &str, now_ms: i64) -> Result<(), LedgerError>;
    /// Done without sending: an older version than one already delivered.
    async fn mark_stale(&self, key: &RecordKey, reason: &str, now_ms: i64) -> Result<(), LedgerError>;
    /// The last version delivered for an entity of a flow (ordering key), if any.
    async fn last_version(&self, flow: &str, entity: &str) -> Result<Option<i64>, LedgerError>;
    /// Records `version` as delivered unless a newer one already is.
    async fn advance_version(
        &self,
        flow: &str,
        entity: &str,
        version: i64,
        expires_at_s: i64,
    ) -> Result<(), LedgerError>;
    /// An event's whole history, in key order.
    async fn history(&self, pk: &str) -> Result<Vec<LedgerRecord>, LedgerError>;
    /// Writes `record` as it is (no condition): copies an outcome into an event's
    /// partition so that its trace is complete.
    async fn put_record(&self, record: &LedgerRecord) -> Result<(), LedgerError>;

    /// Copies the record at `from` to `to` (same state, other key).
    async fn mirror(&self, from: &RecordKey, to: &RecordKey) -> Result<(), LedgerError> {
        let found = self.history(&from.pk).await?.into_iter().find(|r| r.key.sk == from.sk);
        match found {
            Some(mut record) => {
                record.key = to.clone();
                self.put_record(&record).await
            }
            None => Ok(()),
        }
    }
}

/// Decides what a conflicting existing record means for a claim. Shared by every
/// implementation so that the state machine is written once.
pub(crate) fn conflict_outcome(existing: &LedgerRecord, request: &ClaimRequest) -> Option<ClaimOutcome> {
    if existing.expires_at_s <= request.now_ms / 1000 {
        return None;
    }
    if existing.payload_hash != request.payload_hash {
        return Some(ClaimOutcome::PayloadMismatch);
    }
    match existing.status {
        Status::Completed => Some(ClaimOutcome::AlreadyCompleted { summary: existing.summary.clone() }),
        Status::Parked => Some(ClaimOutcome::AlreadyParked {
            reason: existing.reason.clone(),
            error_class: existing.error_class.clone(),
            attempts: existing.attempts,
        }),
        Status::Stale => Some(ClaimOutcome::AlreadyCompleted { summary: existing.reason.clone() }),
        Status::InProgress if existing.in_progress_until_ms.unwrap_or(0) > request.now_ms => {
            Some(ClaimOutcome::InProgress)
        }
        Status::InProgress | Status::Failed => None,
    }
}

#[cfg(test)]
mod tests;
