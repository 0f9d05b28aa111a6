//! A polling source's cursor, kept in the ledger table (`POLL#{source}` / `CURSOR`):
//! where its next page starts and when it last ran. Written after a page's records
//! are on the ingest queue, never before, so a run that dies resumes from the last
//! page it finished.

use std::time::Duration;

use switchyard_common::ledger::{IdempotencyStore, LedgerError, LedgerRecord, RecordKey, Status};

/// A cursor outlives any record's TTL; rewritten on every run, it lasts while the
/// source is polled at least once a year.
const KEEP: Duration = Duration::from_secs(400 * 86_400);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub value: String,
    /// When a run last ended (epoch ms); 0 never.
    pub last_run_ms: i64,
}

pub fn key(source: &str) -> RecordKey {
    RecordKey { pk: format!("POLL#{source}"), sk: "CURSOR".to_owned() }
}

pub async fn read(ledger: &dyn IdempotencyStore, source: &str) -> Result<Option<Cursor>, LedgerError> {
    let key = key(source);
    let records = ledger.history(&key.pk).await?;
    Ok(records.into_iter().find(|r| r.key == key).map(|r| Cursor {
        value: r.details.get("cursor").cloned().unwrap_or_default(),
        last_run_ms: r.details.get("last_run_ms").and_then(|v| v.parse().ok()).unwrap_or(0),
    }))
}

pub async fn write(
    ledger: &dyn IdempotencyStore,
    source: &str,
    cursor: &Cursor,
    now_ms: i64,
) -> Result<(), LedgerError> {
    let mut record = LedgerRecord::new(key(source), Status::Completed, now_ms, now_ms / 1000 + KEEP.as_secs() as i64);
    record.summary = Some(format!("poll cursor of {source}"));
    record.details.insert("cursor".to_owned(), cursor.value.clone());
    record.details.insert("last_run_ms".to_owned(), cursor.last_run_ms.to_string());
    ledger.put_record(&record).await
}
