//! One run of one polling source: page after page from the stored cursor.
//!
//! Per page, in this order: fetch → read its records → check each `{id}@{version}`
//! against the ledger (a record already accepted is not enqueued again) → enqueue
//! the new ones (one `SendMessageBatch` per ten) → record each as accepted (intake's
//! one write) → advance the cursor. A run that dies anywhere resumes from the last
//! cursor written: before the enqueue nothing of the page was sent; after the
//! accepts the check skips the page's records; only a death between the enqueue and
//! the accepts enqueues those records once more, and the dispatcher's claims deliver
//! them once.

use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use switchyard_common::batch::parked_message;
use switchyard_common::config::{Destination, PollSource};
use switchyard_common::envelope::{sha256_hex, Envelope};
use switchyard_common::failure::Failure;
use switchyard_common::ledger::{ClaimOutcome, ClaimRequest, RecordKey, RECORD_TTL};
use switchyard_common::metrics;
use switchyard_common::queue::{envelope_message, OutboundMessage};
use switchyard_common::runtime::{now_ms, rfc3339};
use tracing::{info, warn, Instrument};

use crate::cursor::{self, Cursor};
use crate::Deps;

/// What one run did.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct RunReport {
    pub source: String,
    pub pages: u32,
    pub records: u64,
    /// Records enqueued (new ids or new versions).
    pub accepted: u64,
    /// Records already accepted (same id and version).
    pub duplicates: u64,
    /// Records that cannot become an envelope (no id, too large): in the ingest DLQ.
    pub parked: u64,
    /// The cursor at the end of the run (the stored one).
    pub cursor: String,
    /// The source said there was nothing more; otherwise the page limit or the
    /// deadline ended the run and the next one goes on.
    pub caught_up: bool,
    /// Not due yet: nothing read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// What stopped the run early (the cursor stays at the last finished page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The scheduler's invocation: every polling source that is due (or only `only`),
/// one after the other; `force` reads them even if not due.
pub async fn handle(deps: &Deps, only: Option<&str>, force: bool, deadline_ms: i64) -> Vec<RunReport> {
    let mut reports = Vec::new();
    for source in deps.config.polls.values().filter(|s| only.is_none_or(|o| o == s.name)) {
        let span = tracing::info_span!("poll", source = %source.name);
        let report = poll_source(deps, source, force, deadline_ms).instrument(span.clone()).await;
        span.in_scope(|| {
            metrics::count("PolledRecords", report.accepted, &[("Source", &source.name)]);
            if let Some(error) = &report.error {
                warn!(%error, pages = report.pages, accepted = report.accepted, "poll run stopped early");
                metrics::count_with_total(metrics::names::POLL_FAILED, 1, &[("Source", &source.name)]);
            } else if report.skipped.is_none() {
                info!(pages = report.pages, accepted = report.accepted, duplicates = report.duplicates, "polled");
            }
        });
        reports.push(report);
    }
    reports
}

/// How long a run keeps free before its deadline: one more page could not finish.
fn page_reserve(source: &PollSource) -> i64 {
    source.timeout.as_millis() as i64 + 2_000
}

pub async fn poll_source(deps: &Deps, source: &PollSource, force: bool, deadline_ms: i64) -> RunReport {
    let mut report = RunReport { source: source.name.clone(), ..RunReport::default() };
    let stored = match cursor::read(deps.ledger.as_ref(), &source.name).await {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(format!("cannot read the cursor: {e}"));
            return report;
        }
    };
    let started = now_ms();
    // A little early is due: the scheduler's minute is not exact.
    let due_at = stored.as_ref().map_or(0, |c| c.last_run_ms + source.every.as_millis() as i64 - 5_000);
    let mut at = stored.map(|c| c.value).unwrap_or_else(|| source.cursor_initial.clone());
    report.cursor = at.clone();
    if !force && started < due_at {
        report.skipped = Some(format!("not due until {}", rfc3339(due_at)));
        return report;
    }
    let endpoint = source.endpoint();
    let mut last_request: Option<Instant> = None;
    let mut stored = false;
    for _ in 0..source.max_pages {
        if now_ms() + page_reserve(source) > deadline_ms {
            break;
        }
        switchyard_common::runtime::pace(source.page_interval(), &mut last_request).await;
        let page = match fetch(deps, source, &endpoint, &at).await {
            Ok(p) => p,
            Err(e) => {
                report.error = Some(e);
                break;
            }
        };
        report.pages += 1;
        let taken = match take_page(deps, source, &page, &mut report).await {
            Ok(n) => n,
            Err(e) => {
                report.error = Some(e);
                break;
            }
        };
        let next = match source.next_cursor.run_one(&page) {
            Ok(Value::Null) => None,
            Ok(Value::String(s)) if s.is_empty() => None,
            Ok(Value::String(s)) => Some(s),
            Ok(Value::Number(n)) => Some(n.to_string()),
            Ok(other) => {
                report.error = Some(format!("cursor.next yielded {other}, not a string or number"));
                break;
            }
            Err(e) => {
                report.error = Some(format!("cursor.next: {}", e.reason()));
                break;
            }
        };
        let more = match &source.more {
            Some(more) => match more.run_one(&page) {
                Ok(Value::Bool(b)) => b,
                Ok(other) => {
                    report.error = Some(format!("more yielded {other}, not a boolean"));
                    break;
                }
                Err(e) => {
                    report.error = Some(format!("more: {}", e.reason()));
                    break;
                }
            },
            None => taken > 0 && next.is_some(),
        };
        let moved = next.as_ref().is_some_and(|n| *n != at);
        if let Some(next) = next.filter(|_| moved) {
            // The page's records are on the queue and recorded: only now the cursor.
            let c = Cursor { value: next.clone(), last_run_ms: started };
            if let Err(e) = cursor::write(deps.ledger.as_ref(), &source.name, &c, now_ms()).await {
                report.error = Some(format!("cannot store the cursor: {e}"));
                break;
            }
            stored = true;
            at = next;
            report.cursor = at.clone();
        }
        if !more {
            report.caught_up = true;
            break;
        }
        if !moved {
            report.error = Some("the source says there is more but its cursor did not move".to_owned());
            break;
        }
    }
    // A page that moved the cursor stored this run's time with it; otherwise the run's
    // time is stored here, so that the next one knows when this one ran.
    if !stored {
        let end = Cursor { value: at, last_run_ms: started };
        if let Err(e) = cursor::write(deps.ledger.as_ref(), &source.name, &end, now_ms()).await {
            report.error.get_or_insert(format!("cannot store the end of the run: {e}"));
        }
    }
    report
}

/// One page: `GET url?{params}&{cursor param}={cursor}` (no cursor parameter while
/// the cursor is empty), answered with JSON; read with the dispatcher's own call (the
/// source's credentials, refreshed once after a 401/403).
async fn fetch(deps: &Deps, source: &PollSource, endpoint: &Destination, at: &str) -> Result<Value, String> {
    let mut query = reqwest::Url::parse("http://query.invalid/").map_err(|e| e.to_string())?;
    {
        let mut pairs = query.query_pairs_mut();
        for (k, v) in &source.params {
            pairs.append_pair(k, v);
        }
        if !at.is_empty() {
            pairs.append_pair(&source.cursor_param, at);
        }
    }
    let path = query.query().map(|q| format!("?{q}")).unwrap_or_default();
    let page = switchyard_dispatcher::read(&deps.reads, endpoint, "GET", &path).await.map_err(|f| f.reason)?;
    if !(200..300).contains(&page.status) {
        return Err(format!("HTTP {} from source {}", page.status, source.name));
    }
    page.body.ok_or_else(|| format!("a page of source {} is not JSON", source.name))
}

/// A record the poller will enqueue, and its intake claim.
struct New {
    message: OutboundMessage,
    claim: ClaimRequest,
}

/// Enqueues the page's new records and records them accepted; returns how many
/// records the page had. An error leaves the cursor where it was.
async fn take_page(deps: &Deps, source: &PollSource, page: &Value, report: &mut RunReport) -> Result<usize, String> {
    let records = match source.records.run_one(page) {
        Ok(Value::Array(records)) => records,
        Ok(Value::Null) => Vec::new(),
        Ok(other) => return Err(format!("records yielded {}, not a list", json_type(&other))),
        Err(e) => return Err(format!("records: {}", e.reason())),
    };
    report.records += records.len() as u64;
    let now = now_ms();
    let mut fresh: Vec<New> = Vec::new();
    for (n, record) in records.iter().enumerate() {
        let id_and_version =
            source.id.run_key(record).map_err(|e| format!("id: {}", e.reason())).and_then(|id| {
                Ok((id, source.version.run_key(record).map_err(|e| format!("version: {}", e.reason()))?))
            });
        let event_id = match id_and_version {
            Ok((id, version)) => format!("{id}@{version}"),
            Err(why) => {
                park(deps, source, record, &format!("record {n} of a page: {why}")).await?;
                report.parked += 1;
                continue;
            }
        };
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let envelope = Envelope::new(
            &source.name,
            event_id.clone(),
            source.event_type.clone(),
            rfc3339(now),
            record.clone(),
            correlation_id.clone(),
        );
        let message = match envelope_message(&envelope) {
            Ok(m) => m,
            Err(e) => {
                park(deps, source, record, &format!("record {event_id}: {e}")).await?;
                report.parked += 1;
                continue;
            }
        };
        let claim = ClaimRequest {
            key: RecordKey::intake(&source.name, &event_id),
            payload_hash: sha256_hex(record.to_string().as_bytes()),
            now_ms: now,
            in_progress_until_ms: now + 1_000,
            expires_at_s: now / 1000 + RECORD_TTL.as_secs() as i64,
            correlation_id,
            flow: None,
            destination: None,
            entity: None,
            index_correlation: true,
        };
        match deps.ledger.check(&claim).await {
            Ok(None) => fresh.push(New { message, claim }),
            Ok(Some(ClaimOutcome::PayloadMismatch)) => {
                // The same id and version with other content: the source changed a
                // record without changing its version. The first one stands.
                warn!(event_id = %event_id, "same id and version, different content: kept the first");
                report.duplicates += 1;
            }
            Ok(Some(_)) => report.duplicates += 1,
            Err(e) => return Err(format!("ledger unavailable: {e}")),
        }
    }
    if fresh.is_empty() {
        return Ok(records.len());
    }
    let messages: Vec<OutboundMessage> = fresh.iter().map(|f| f.message.clone()).collect();
    deps.queue.send_all(&deps.ingest_queue_url, &messages).await.map_err(|e| e.to_string())?;
    for f in &fresh {
        // On the queue: accepted whatever the ledger says now; a record not recorded
        // here is enqueued again by the next run and delivered once downstream.
        if let Err(e) = deps.ledger.accept(&f.claim, "enqueued by the poller").await {
            warn!(error = %e, "could not record a polled record; it is on the queue");
        }
    }
    report.accepted += fresh.len() as u64;
    Ok(records.len())
}

/// A record that cannot become an envelope, in the ingest DLQ with the reason.
async fn park(deps: &Deps, source: &PollSource, record: &Value, reason: &str) -> Result<(), String> {
    let failure = Failure::terminal(reason);
    let message = parked_message(&record.to_string(), &failure, 1, "poller").attribute("source", &source.name);
    deps.queue.send(&deps.ingest_dlq_url, &message).await.map_err(|e| format!("cannot park a record: {e}"))?;
    warn!(reason, "record parked");
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
