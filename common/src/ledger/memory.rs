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
    /// (correlation id, event pk) of the records claimed with `index_correlation`.
    correlations: Mutex<Vec<(String, String)>>,
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
            let class = r.error_class.as_deref().and_then(FailureClass::parse);
            let text = if status == Status::Completed { r.summary.clone() } else { r.reason.clone() };
            r.log.push(log_entry(now_ms, status, class, text.as_deref().unwrap_or_default()));
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
        let attempt = previous_attempts + 1;
        // Like DynamoDB's UpdateItem: what the claim does not set survives it.
        let mut record = records.get(&k).cloned().unwrap_or_else(|| {
            LedgerRecord::new(request.key.clone(), Status::InProgress, request.now_ms, request.expires_at_s)
        });
        record.status = Status::InProgress;
        record.attempts = attempt;
        record.payload_hash = request.payload_hash.clone();
        record.correlation_id = Some(request.correlation_id.clone());
        record.flow = request.flow.clone().or(record.flow);
        record.destination = request.destination.clone().or(record.destination);
        record.entity = request.entity.clone().or(record.entity);
        record.updated_at_ms = request.now_ms;
        record.in_progress_until_ms = Some(request.in_progress_until_ms);
        record.expires_at_s = request.expires_at_s;
        if request.index_correlation {
            self.correlations
                .lock()
                .expect("ledger lock")
                .push((request.correlation_id.clone(), request.key.pk.clone()));
        }
        let unknown = unknown_outcomes(&record.log);
        records.insert(k, record);
        Ok(ClaimOutcome::Claimed { attempt, unknown_outcomes: unknown })
    }

    async fn accept(&self, request: &ClaimRequest, summary: &str) -> Result<ClaimOutcome, LedgerError> {
        let outcome = self.claim(request).await?;
        if matches!(outcome, ClaimOutcome::Claimed { .. }) {
            // One write in DynamoDB; two here, which the unit tests that use this
            // ledger never race.
            self.complete(&request.key, summary, request.now_ms).await?;
        }
        Ok(outcome)
    }

    async fn check(&self, request: &ClaimRequest) -> Result<Option<ClaimOutcome>, LedgerError> {
        let records = self.records.lock().expect("ledger lock");
        Ok(records.get(&(request.key.pk.clone(), request.key.sk.clone())).and_then(|r| conflict_outcome(r, request)))
    }

    async fn complete(&self, key: &RecordKey, summary: &str, now_ms: i64) -> Result<(), LedgerError> {
        self.finish(key, Status::Completed, now_ms, |r| {
            r.summary = Some(summary.to_owned());
        })
    }

    async fn unclaim(&self, key: &RecordKey, attempt: u32, reason: &str, now_ms: i64) -> Result<(), LedgerError> {
        self.update(key, |r| {
            if r.status == Status::InProgress && r.attempts == attempt {
                r.status = Status::Failed;
                r.attempts -= 1;
                r.in_progress_until_ms = None;
                r.updated_at_ms = now_ms;
                r.reason = Some(reason.to_owned());
                r.error_class = None;
            }
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

    async fn park(
        &self,
        key: &RecordKey,
        class: FailureClass,
        reason: &str,
        dlq: &str,
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        self.finish(key, Status::Parked, now_ms, |r| {
            r.error_class = Some(class.as_str().to_owned());
            r.reason = Some(reason.to_owned());
            r.dlq = Some(dlq.to_owned());
        })
    }

    async fn record_decision(&self, record: &LedgerRecord) -> Result<bool, LedgerError> {
        let mut records = self.records.lock().expect("ledger lock");
        let k = (record.key.pk.clone(), record.key.sk.clone());
        if records.get(&k).is_some_and(|r| matches!(r.status, Status::Completed | Status::InProgress)) {
            return Ok(false);
        }
        records.insert(k, record.clone());
        Ok(true)
    }

    async fn put_new(&self, record: &LedgerRecord) -> Result<bool, LedgerError> {
        let mut records = self.records.lock().expect("ledger lock");
        let k = (record.key.pk.clone(), record.key.sk.clone());
        if records.contains_key(&k) {
            return Ok(false);
        }
        records.insert(k, record.clone());
        Ok(true)
    }

    async fn arm(&self, request: &ArmRequest) -> Result<ArmOutcome, LedgerError> {
        let mut records = self.records.lock().expect("ledger lock");
        let k = (request.key.pk.clone(), request.key.sk.clone());
        let attempts_before = match replay::decide(records.get(&k), request) {
            Ok(n) => n,
            Err(outcome) => return Ok(outcome),
        };
        let log = replay::armed_log(records.get(&k), request);
        let mut r = records.get(&k).cloned().unwrap_or_else(|| {
            LedgerRecord::new(request.key.clone(), Status::Failed, request.now_ms, request.expires_at_s)
        });
        r.status = Status::Failed;
        r.attempts = 0;
        r.payload_hash = request.payload_hash.clone();
        r.replay_id = Some(request.replay_id.clone());
        r.updated_at_ms = request.now_ms;
        r.expires_at_s = request.expires_at_s;
        r.in_progress_until_ms = None;
        r.correlation_id = r.correlation_id.or(Some(request.correlation_id.clone()));
        r.flow = Some(request.flow.clone());
        r.destination = Some(request.destination.clone());
        r.entity = request.entity.clone().or(r.entity);
        r.log = log;
        records.insert(k, r);
        Ok(ArmOutcome::Armed { attempts_before })
    }

    async fn parked(&self, since_ms: i64, until_ms: i64) -> Result<Vec<LedgerRecord>, LedgerError> {
        let records = self.records.lock().expect("ledger lock");
        let mut parked: Vec<LedgerRecord> = records
            .values()
            .filter(|r| r.parked_index_key().is_some() && (since_ms..until_ms).contains(&r.updated_at_ms))
            .cloned()
            .collect();
        parked.sort_by_key(|r| r.parked_index_key());
        Ok(parked)
    }

    async fn events_by_entity(&self, entity: &str) -> Result<Vec<String>, LedgerError> {
        let records = self.records.lock().expect("ledger lock");
        let mut pks: Vec<String> = Vec::new();
        for r in records.values().filter(|r| r.key.is_event() && r.entity.as_deref() == Some(entity)) {
            if !pks.contains(&r.key.pk) {
                pks.push(r.key.pk.clone());
            }
        }
        Ok(pks)
    }

    async fn events_by_correlation(&self, correlation_id: &str) -> Result<Vec<String>, LedgerError> {
        let index = self.correlations.lock().expect("ledger lock");
        Ok(index.iter().filter(|(c, _)| c == correlation_id).map(|(_, pk)| pk.clone()).collect())
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
