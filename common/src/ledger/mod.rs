//! Idempotency records, which are also the event ledger (DESIGN.md).
//!
//! One table, keyed so that one Query by `pk` returns an event's whole history:
//! `pk = EVT#{source}#{event_id}`, `sk = INTAKE` | `MAPPER` | `DELIVERY#{flow}#v{version}`
//! | `AUDIT#{action}#{id}`. A record holds ids, statuses, times, attempts, each
//! attempt's outcome and error class/reason — never a payload (only its hash) and never
//! a secret. Three sparse indexes serve the operator's CLI: `parked` (records in the
//! `PARKED` state, by time), `entity` (a flow's hashed business key) and `correlation`
//! (the intake record's correlation id).
//!
//! The state machine is Powertools': a claim succeeds for a new key, an expired
//! record, a released (`FAILED`) record, or an `INPROGRESS` record whose in-progress
//! expiry has passed (its worker died). Key derivation stays with the callers.

mod dynamo;
mod memory;
mod replay;

pub use dynamo::DynamoLedger;
pub use memory::MemoryLedger;
pub use replay::{ArmOutcome, ArmRequest};

use async_trait::async_trait;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::failure::FailureClass;

/// How long a record lives (its TTL): an event's history, the claims that make repeats
/// harmless and the parked index all last this long. One value for every writer.
pub const RECORD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The names of the table's secondary indexes (the template declares them).
pub mod index {
    /// Parked records: `pidx = "PARKED"`, `pidx_sk = "{updated_at:013}#{pk}#{sk}"`.
    pub const PARKED: &str = "parked";
    /// A flow's hashed business key: `ekey = "{flow}#{sha256}"`, sorted by `created_at`.
    pub const ENTITY: &str = "entity";
    /// The intake record's correlation id: `corr`.
    pub const CORRELATION: &str = "correlation";
    /// The single partition of the parked index.
    pub const PARKED_PARTITION: &str = "PARKED";
}

/// A flow's business key as the ledger stores and indexes it: hashed, so no invoice
/// number or e-mail address is kept in clear, and scoped by flow.
pub fn entity_hash(flow: &str, value: &str) -> String {
    format!("{flow}#{}", crate::envelope::sha256_hex(format!("{flow}\n{value}").as_bytes()))
}

/// The prefix of the correlation ids intake derives from the event itself.
const DERIVED_CORRELATION: &str = "sy.";

/// The correlation id intake gives an event whose caller sent none: `sy.` followed by
/// `{source}#{event id}` in unpadded base64url. It names its event, so `find
/// --correlation` needs no index entry for it (one write unit less per event), and a
/// provider's retries of an event carry the same id. Caller-supplied ids are indexed.
pub fn derived_correlation_id(source: &str, event_id: &str) -> String {
    use base64::Engine as _;
    let named = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{source}#{event_id}"));
    format!("{DERIVED_CORRELATION}{named}")
}

/// The event partition key a derived correlation id names; `None` for any other id.
pub fn derived_correlation_event(correlation_id: &str) -> Option<String> {
    use base64::Engine as _;
    let named = correlation_id.strip_prefix(DERIVED_CORRELATION)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(named).ok()?;
    let (source, event_id) = std::str::from_utf8(&bytes).ok()?.split_once('#')?;
    Some(RecordKey::event_pk(source, event_id))
}

/// Partition keys of the events with this correlation id: the index's entries (ids a
/// caller supplied), and the event a derived id names if its intake record carries
/// that id (a caller may send an id that looks derived; then the index has it).
pub async fn events_with_correlation(
    ledger: &dyn IdempotencyStore,
    correlation_id: &str,
) -> Result<Vec<String>, LedgerError> {
    let mut pks = ledger.events_by_correlation(correlation_id).await?;
    if let Some(pk) = derived_correlation_event(correlation_id).filter(|pk| !pks.contains(pk)) {
        let records = ledger.history(&pk).await?;
        let carries = |r: &LedgerRecord| r.key.sk == "INTAKE" && r.correlation_id.as_deref() == Some(correlation_id);
        if records.iter().any(carries) {
            pks.push(pk);
        }
    }
    Ok(pks)
}

/// At most this many characters of a reason or summary go into an attempt's log entry.
const LOG_TEXT_CHARS: usize = 300;

/// One attempt's outcome as kept in a record's `log`: `{ms}|{STATUS}|{class}|{text}`.
pub fn log_entry(now_ms: i64, status: Status, class: Option<FailureClass>, text: &str) -> String {
    let text: String = text.chars().take(LOG_TEXT_CHARS).collect();
    format!("{now_ms}|{}|{}|{text}", status.as_str(), class.map_or("", FailureClass::as_str))
}

/// A log entry read back: (time, status, class, text).
/// How many entries of a record's log are attempts whose outcome is unknown.
pub fn unknown_outcomes<'a>(log: impl IntoIterator<Item = &'a String>) -> u32 {
    log.into_iter()
        .filter_map(|e| parse_log_entry(e))
        .filter(|(_, status, _, text)| *status == Status::Failed.as_str() && crate::failure::maybe_arrived(text))
        .count() as u32
}

pub fn parse_log_entry(entry: &str) -> Option<(i64, &str, &str, &str)> {
    let mut parts = entry.splitn(4, '|');
    let at = parts.next()?.parse().ok()?;
    Some((at, parts.next()?, parts.next()?, parts.next().unwrap_or("")))
}

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

    /// What the mapper decided when no flow turned an event into a delivery.
    pub fn mapper(source: &str, event_id: &str) -> Self {
        Self { pk: Self::event_pk(source, event_id), sk: "MAPPER".to_owned() }
    }

    /// An operator's action on an event (`replay`, `reveal`): `id` makes a rerun of the
    /// same action find the same record (a replay's id is derived from what it sends).
    pub fn audit(event_pk: &str, action: &str, id: &str) -> Self {
        Self { pk: event_pk.to_owned(), sk: format!("AUDIT#{action}#{id}") }
    }

    /// Whether this is one of an event's own records (not a shared claim).
    pub fn is_event(&self) -> bool {
        self.pk.starts_with("EVT#")
    }

    /// Its sort key in the parked index when parked at `at_ms`: only an event's own
    /// records are indexed (a shared claim is mirrored into them).
    pub fn parked_sort_key(&self, at_ms: i64) -> Option<String> {
        self.is_event().then(|| format!("{:013}#{}#{}", at_ms.max(0), self.pk, self.sk))
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
    /// Not delivered by decision: a flow's filter said no, or no flow wants the type.
    Filtered,
    /// An operator's action (an audit record).
    Audit,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "INPROGRESS",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
            Status::Parked => "PARKED",
            Status::Stale => "STALE",
            Status::Filtered => "FILTERED",
            Status::Audit => "AUDIT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "INPROGRESS" => Status::InProgress,
            "COMPLETED" => Status::Completed,
            "FAILED" => Status::Failed,
            "PARKED" => Status::Parked,
            "STALE" => Status::Stale,
            "FILTERED" => Status::Filtered,
            "AUDIT" => Status::Audit,
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
    /// The flow's hashed business key (`entity_hash`), indexed for `find --key`.
    pub entity: Option<String>,
    /// Index this record by its correlation id (the intake record only, and only an
    /// id the caller supplied: a derived one names its event, see
    /// [`derived_correlation_id`]).
    pub index_correlation: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Ours to process; `attempt` counts claims of this key, starting at 1;
    /// `unknown_outcomes` counts the earlier attempts whose request may have arrived
    /// (from the record's log, [`crate::failure::maybe_arrived`]).
    Claimed {
        attempt: u32,
        unknown_outcomes: u32,
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
    /// The flow's hashed business key, if the flow declares `entity_key`.
    pub entity: Option<String>,
    /// Each attempt's outcome, oldest first (`log_entry`).
    pub log: Vec<String>,
    /// Which DLQ holds it when `PARKED`: `ingest`, `dispatch` or `dispatch-fifo`.
    pub dlq: Option<String>,
    /// The replay that armed this record last (see `ArmRequest`).
    pub replay_id: Option<String>,
    /// An audit record's facts (who, reason, selection, patch, hashes).
    pub details: BTreeMap<String, String>,
}

impl LedgerRecord {
    /// A record with nothing but its key, state and times.
    pub fn new(key: RecordKey, status: Status, now_ms: i64, expires_at_s: i64) -> Self {
        Self {
            key,
            status,
            attempts: 0,
            permission_failures: 0,
            payload_hash: String::new(),
            correlation_id: None,
            flow: None,
            destination: None,
            summary: None,
            error_class: None,
            reason: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            in_progress_until_ms: None,
            expires_at_s,
            entity: None,
            log: Vec::new(),
            dlq: None,
            replay_id: None,
            details: BTreeMap::new(),
        }
    }

    /// The sort key of the parked index, if this record belongs in it: an event's own
    /// record in the `PARKED` state.
    pub fn parked_index_key(&self) -> Option<String> {
        (self.status == Status::Parked).then(|| self.key.parked_sort_key(self.updated_at_ms)).flatten()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store could not be reached or refused the call: always retryable.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    #[error("ledger record {pk}/{sk} is malformed: {message}")]
    Corrupt { pk: String, sk: String, message: String },
}

/// The one ledger write the mapper makes ([`IdempotencyStore::record_decision`]), as
/// a trait of its own: a function that holds only this links none of the ledger's
/// other DynamoDB operations (every method of a `dyn IdempotencyStore` is kept through
/// its vtable). Every store is one.
#[async_trait]
pub trait DecisionLog: Send + Sync {
    /// See [`IdempotencyStore::record_decision`].
    async fn record_decision(&self, record: &LedgerRecord) -> Result<bool, LedgerError>;
}

#[async_trait]
impl<T: IdempotencyStore + ?Sized> DecisionLog for T {
    async fn record_decision(&self, record: &LedgerRecord) -> Result<bool, LedgerError> {
        IdempotencyStore::record_decision(self, record).await
    }
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimOutcome, LedgerError>;
    /// A claim that lands finished: under the same conditions as [`claim`](Self::claim),
    /// the record is written `COMPLETED` with `summary` in one write. Intake's only
    /// write for an event, made once the event is on the queue.
    async fn accept(&self, request: &ClaimRequest, summary: &str) -> Result<ClaimOutcome, LedgerError>;
    /// What a claim of `request` would meet, from a strongly consistent read (no
    /// write): `Some` the conflict it would be refused with, `None` claimable.
    async fn check(&self, request: &ClaimRequest) -> Result<Option<ClaimOutcome>, LedgerError>;
    async fn complete(&self, key: &RecordKey, summary: &str, now_ms: i64) -> Result<(), LedgerError>;
    /// Takes back claim number `attempt` that made no call (the destination's rate
    /// limit held it back): not an attempt, so it is not counted. Does nothing if the
    /// claim is no longer ours (it lapsed and another worker took it).
    async fn unclaim(&self, key: &RecordKey, attempt: u32, reason: &str, now_ms: i64) -> Result<(), LedgerError>;
    /// Gives the claim back after a retryable failure; the failure is kept for the trace.
    async fn release(&self, key: &RecordKey, class: FailureClass, reason: &str, now_ms: i64)
        -> Result<(), LedgerError>;
    /// Terminal: no claim will succeed again (until the record expires or an operator
    /// replays it). `dlq` names the queue that holds it (`ingest`, `dispatch`,
    /// `dispatch-fifo`); an event's own parked record is in the parked index.
    async fn park(
        &self,
        key: &RecordKey,
        class: FailureClass,
        reason: &str,
        dlq: &str,
        now_ms: i64,
    ) -> Result<(), LedgerError>;
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

    /// Writes a decision that no claim preceded (the mapper's: parked, filtered, no flow)
    /// unless the record is already delivered or being delivered. `Ok(false)`: refused.
    async fn record_decision(&self, record: &LedgerRecord) -> Result<bool, LedgerError>;
    /// Writes `record` unless one exists at its key (an audit record written again by a
    /// rerun keeps its first time). `Ok(false)`: it existed.
    async fn put_new(&self, record: &LedgerRecord) -> Result<bool, LedgerError>;
    /// Makes a parked (or, forced, a delivered) claim claimable again for one replay.
    async fn arm(&self, request: &ArmRequest) -> Result<ArmOutcome, LedgerError>;
    /// Parked records updated in `[since_ms, until_ms)`, oldest first (the parked index).
    async fn parked(&self, since_ms: i64, until_ms: i64) -> Result<Vec<LedgerRecord>, LedgerError>;
    /// Partition keys of the events with this hashed business key (the entity index).
    async fn events_by_entity(&self, entity: &str) -> Result<Vec<String>, LedgerError>;
    /// Partition keys of the events with this correlation id (the correlation index).
    async fn events_by_correlation(&self, correlation_id: &str) -> Result<Vec<String>, LedgerError>;

    /// One cheap read (a key no record has) at cold start: the connection the first
    /// event's check or claim needs is open before that event arrives (in AWS, the
    /// TLS handshake). Nothing is written.
    async fn warm_up(&self) -> Result<(), LedgerError> {
        Ok(())
    }

    /// Copies the record at `from` to `to` (same state, other key). What `to` told
    /// before a replay armed `from` is already in `from`'s log (`ArmRequest::history`).
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
        Status::Stale | Status::Filtered | Status::Audit => {
            Some(ClaimOutcome::AlreadyCompleted { summary: existing.reason.clone().or(existing.summary.clone()) })
        }
        Status::InProgress if existing.in_progress_until_ms.unwrap_or(0) > request.now_ms => {
            Some(ClaimOutcome::InProgress)
        }
        Status::InProgress | Status::Failed => None,
    }
}

#[cfg(test)]
mod tests;
