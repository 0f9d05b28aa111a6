//! An in-memory ledger for unit tests of pure logic. Same state machine as DynamoDB
//! (via `conflict_outcome`); the DynamoDB adapter itself is tested end to end.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;

#[derive(Debug, Default)]
pub struct MemoryLedger {
    records: Mutex<BTreeMap<(String, String), LedgerRecord>>,
    versions: Mutex<BTreeMap<RecordKey, i64>>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends a claim: sets `status`, stamps the time, drops the in-progress expiry, then `f`.
    fn finish(
        &self,
        key: &RecordKey,
        status: Status,
        now_ms: i64,
        f: impl FnOnce(&mut LedgerRecord),
    ) -> Result<(), LedgerError> {
        self.update(key, |r| {
            r.status = status;
            r.updated_at_ms = now_ms;
            r.in_progress_until_ms = None;
            f(r);
        })
    }

    fn update(&self, key: &RecordKey, f: impl FnOnce(&mut LedgerRecord)) -> Result<(), LedgerError> {
        let mut records = self.records.lock().expect("ledger lock");
        match records.get_mut(&(key.pk.clone(), key.sk.clone())) {
            Some(r) => {
                f(r);
                Ok(())
            }
            None => {
                Err(LedgerError::Corrupt { pk: key.pk.clone(), sk: key.sk.clone(), message: "no such record".into() })
            }
        }
    }
}

#[async_trait]
impl IdempotencyStore for MemoryLedger {
    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimOutcome, LedgerError> {
        let mut records = self.records.lock().expect("ledger lock");
        let k = (request.key.pk.clone(), request.key.sk.clone());
        let previous_attempts = match records.get(&k) {
            Some(existing) => {
                if let Some(outcome) = conflict_outcome(existing, request) {
                    return Ok(outcome);
                }
                existing.attempts
            }
            None => 0,
        };
        let created = records.get(&k).map_or(request.now_ms, |r| r.created_at_ms);
        let permission_failures = records.get(&k).map_or(0, |r| r.permission_failures);
        let attempt = previous_attempts + 1;
        records.insert(
            k,
            LedgerRecord {
                key: request.key.clone(),
                status: Status::InProgress,
                attempts: attempt,
                permission_failures,
                payload_hash: request.payload_hash.clone(),
                correlation_id: Some(request.correlation_id.clone()),
                flow: request.flow.clone(),
                destination: request.destination.clone(),
                summary: None,
                error_class: None,
                reason: None,
                created_at_ms: created,
                updated_at_ms: request.now_ms,
                in_progress_until_ms: Some(request.in_progress_until_ms),
                expires_at_s: request.expires_at_s,
            },
        );
        Ok(ClaimOutcome::Claimed { attempt })
    }

    async fn complete(&self, key: &RecordKey, summary: &str, now_ms: i64) -> Result<(), LedgerError> {
        self.finish(key, Status::Completed, now_ms, |r| {
            r.summary = Some(summary.to_owned());
        })
    }

    async fn release(
        &self,
        key: &RecordKey,
        class: FailureClass,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        self.finish(key, Status::Failed, now_ms, |r| {
            r.permission_failures += u32::from(class == FailureClass::Auth);
            r.error_class = Some(class.as_str().to_owned());
            r.reason = Some(reason.to_owned());
        })
    }

    async fn park(&self, key: &RecordKey, class: FailureClass, reason: &str, now_ms: i64) -> Result<(), LedgerError> {
        self.finish(key, Status::Parked, now_ms, |r| {
            r.error_class = Some(class.as_str().to_owned());
            r.reason = Some(reason.to_owned());
        })
    }

    async fn mark_stale(&self, key: &RecordKey, reason: &str, now_ms: i64) -> Result<(), LedgerError> {
        self.finish(key, Status::Stale, now_ms, |r| {
            r.reason = Some(reason.to_owned());
        })
    }

    async fn last_version(&self, flow: &str, entity: &str) -> Result<Option<i64>, LedgerError> {
        Ok(self.versions.lock().expect("ledger lock").get(&RecordKey::entity(flow, entity)).copied())
    }

    async fn advance_version(
        &self,
        flow: &str,
        entity: &str,
        version: i64,
        _expires_at_s: i64,
    ) -> Result<(), LedgerError> {
        let mut versions = self.versions.lock().expect("ledger lock");
        let v = versions.entry(RecordKey::entity(flow, entity)).or_insert(version);
        *v = (*v).max(version);
        Ok(())
    }

    async fn put_record(&self, record: &LedgerRecord) -> Result<(), LedgerError> {
        let mut records = self.records.lock().expect("ledger lock");
        records.insert((record.key.pk.clone(), record.key.sk.clone()), record.clone());
        Ok(())
    }

    async fn history(&self, pk: &str) -> Result<Vec<LedgerRecord>, LedgerError> {
        let records = self.records.lock().expect("ledger lock");
        Ok(records.values().filter(|r| r.key.pk == pk).cloned().collect())
    }
}
