//! Partial batch responses for SQS-triggered functions (STYLE.md habit 5).
//!
//! The per-record function says only whether its record succeeded; this module lifts
//! it to the batch. On a standard queue records run concurrently and one failure never
//! touches its neighbours; on a FIFO queue records run in order and a group stops at
//! its first failure (the rest of that group is reported failed, so SQS keeps order),
//! while other groups go on.

use std::collections::HashSet;
use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::future::join_all;
use tracing::{field, warn, Instrument};

use crate::failure::Failure;
use crate::metrics;
use crate::queue::{OutboundMessage, Queue};

/// Whether a record is done with (deleted from the queue) or must come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordResult {
    Done,
    Retry,
}

/// A message parked in a DLQ: its own body (so it can be replayed) with the reason,
/// class, attempt count and the function (`stage`) that parked it as attributes.
pub fn parked_message(body: &str, failure: &Failure, attempts: u32, stage: &str) -> OutboundMessage {
    OutboundMessage::new(body)
        .attribute("reason", &failure.reason)
        .attribute("error_class", failure.class.as_str())
        .attribute("attempts", attempts.to_string())
        .attribute("stage", stage)
}

/// Where a function parks what it cannot process.
#[derive(Debug, Clone, Copy)]
pub struct Dlq<'a> {
    pub url: &'a str,
    /// `ingest` or `dispatch`, for the log line.
    pub name: &'a str,
    /// The function parking (`mapper`, `dispatcher`), for the metric.
    pub stage: &'a str,
}

/// Sends `dlq` to the DLQ. Done once the DLQ holds it; if the DLQ cannot be reached,
/// the record is retried rather than lost.
pub async fn park(queue: &dyn Queue, to: Dlq<'_>, dlq: &OutboundMessage, failure: &Failure) -> RecordResult {
    let function = to.stage;
    match queue.send(to.url, dlq).await {
        Ok(()) => {
            warn!(reason = %failure.reason, class = %failure.class, "parked in the {} DLQ", to.name);
            metrics::count("Parked", 1, &[("Function", function)]);
            RecordResult::Done
        }
        Err(e) => {
            warn!(error = %e, "could not park; will retry");
            RecordResult::Retry
        }
    }
}

/// `ApproximateReceiveCount` of a received message: which attempt this is.
pub fn receive_count(message: &SqsMessage) -> u32 {
    message.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// The ids a sender puts in a message's attributes (intake on the ingest queue, the
/// mapper on the dispatch queues), copied onto the record's span.
const ID_ATTRIBUTES: [&str; 5] = ["correlation_id", "event_id", "source", "flow", "destination"];

/// The span one record is handled in: its message id, its FIFO group, and the ids its
/// sender put in the message attributes. So every line logged about the record carries
/// them, even one about a body that cannot be parsed (the handler's own span, opened
/// once the body is read, repeats them from the body).
pub fn record_span(m: &SqsMessage) -> tracing::Span {
    let span = tracing::info_span!(
        "record",
        message_id = m.message_id.as_deref().unwrap_or_default(),
        group = field::Empty,
        correlation_id = field::Empty,
        event_id = field::Empty,
        source = field::Empty,
        flow = field::Empty,
        destination = field::Empty,
    );
    if let Some(group) = group_of(m) {
        span.record("group", group);
    }
    for name in ID_ATTRIBUTES {
        if let Some(value) = m.message_attributes.get(name).and_then(|a| a.string_value.as_deref()) {
            span.record(name, value);
        }
    }
    span
}

fn failure(id: &str) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id.to_owned();
    f
}

fn group_of(m: &SqsMessage) -> Option<&str> {
    m.attributes.get("MessageGroupId").map(String::as_str)
}

pub async fn process_batch<'a, F, Fut>(event: &'a SqsEvent, f: F) -> SqsBatchResponse
where
    F: Fn(&'a SqsMessage) -> Fut,
    Fut: Future<Output = RecordResult> + 'a,
{
    process_batch_reporting_skipped(event, f).await.0
}

/// As [`process_batch`], also returning the FIFO records that were reported failed
/// without being processed (behind a failed record of their group). Their caller
/// should make them visible again at once: left in flight until the visibility
/// timeout, they would block their group long after the failed head is retried.
pub async fn process_batch_reporting_skipped<'a, F, Fut>(
    event: &'a SqsEvent,
    f: F,
) -> (SqsBatchResponse, Vec<&'a SqsMessage>)
where
    F: Fn(&'a SqsMessage) -> Fut,
    Fut: Future<Output = RecordResult> + 'a,
{
    process_batch_while(event, |_| true, f).await
}

/// As [`process_batch_reporting_skipped`]; on a FIFO queue, where records run one
/// after the other, `may_start` is asked before each record but the first: once it
/// says no (the function's deadline is too close for another record), that record
/// and every later one are skipped untried, in every group, and come back later.
pub async fn process_batch_while<'a, S, F, Fut>(
    event: &'a SqsEvent,
    may_start: S,
    f: F,
) -> (SqsBatchResponse, Vec<&'a SqsMessage>)
where
    S: Fn(&'a SqsMessage) -> bool,
    F: Fn(&'a SqsMessage) -> Fut,
    Fut: Future<Output = RecordResult> + 'a,
{
    let fifo = event.records.iter().any(|m| group_of(m).is_some());
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    if fifo {
        let mut stopped: HashSet<&str> = HashSet::new();
        let (mut started, mut out_of_time) = (false, false);
        for m in &event.records {
            let id = m.message_id.as_deref().unwrap_or_default();
            let group = group_of(m).unwrap_or_default();
            out_of_time = out_of_time || (started && !stopped.contains(group) && !may_start(m));
            if out_of_time || stopped.contains(group) {
                failures.push(failure(id));
                skipped.push(m);
                continue;
            }
            started = true;
            if f(m).instrument(record_span(m)).await == RecordResult::Retry {
                stopped.insert(group);
                failures.push(failure(id));
            }
        }
        if out_of_time {
            warn!(
                skipped = skipped.len(),
                "deadline too close for another record; the rest of the batch comes back untried"
            );
        }
    } else {
        let results = join_all(event.records.iter().map(|m| f(m).instrument(record_span(m)))).await;
        return (batch_response(event, &results), skipped);
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    (response, skipped)
}

/// The answer for a batch whose records (of a standard queue) came to `results`, in
/// the event's order: the ones to retry reported as `batchItemFailures`.
pub fn batch_response(event: &SqsEvent, results: &[RecordResult]) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = event
        .records
        .iter()
        .zip(results)
        .filter(|(_, r)| **r == RecordResult::Retry)
        .map(|(m, _)| failure(m.message_id.as_deref().unwrap_or_default()))
        .collect();
    response
}

/// The identity of a parked message, for whatever lists or replays a DLQ: the stage
/// that parked it and the delivery it stands for (`{source}:{event}:{flow}:v{n}`), or
/// a hash of the body for a message too malformed to say. Two copies of one delivery —
/// a worker died after the DLQ send and before the delete, and the message came back
/// and was parked again — have the same identity and are one parked delivery.
pub fn parked_identity<'v>(attribute: impl Fn(&str) -> Option<&'v str>, body: &str) -> String {
    let stage = attribute("stage").unwrap_or("unknown");
    match attribute("delivery_id").filter(|id| !id.is_empty()) {
        Some(id) => format!("{stage}:{id}"),
        None => format!("{stage}:body:{}", crate::envelope::sha256_hex(body.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, group: Option<&str>, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.to_owned());
        m.body = Some(body.to_owned());
        if let Some(g) = group {
            m.attributes.insert("MessageGroupId".to_owned(), g.to_owned());
        }
        m
    }

    fn event(records: Vec<SqsMessage>) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = records;
        e
    }

    fn failed_ids(r: &SqsBatchResponse) -> Vec<&str> {
        r.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect()
    }

    async fn fail_on_bad(m: &SqsMessage) -> RecordResult {
        if m.body.as_deref() == Some("bad") {
            RecordResult::Retry
        } else {
            RecordResult::Done
        }
    }

    #[tokio::test]
    async fn one_failing_record_does_not_fail_its_neighbours() {
        let e = event(vec![message("1", None, "ok"), message("2", None, "bad"), message("3", None, "ok")]);
        assert_eq!(failed_ids(&process_batch(&e, fail_on_bad).await), vec!["2"]);
    }

    #[tokio::test]
    async fn a_fifo_group_stops_at_its_first_failure_and_other_groups_go_on() {
        let e = event(vec![
            message("a1", Some("a"), "ok"),
            message("a2", Some("a"), "bad"),
            message("b1", Some("b"), "ok"),
            message("a3", Some("a"), "ok"),
            message("b2", Some("b"), "ok"),
        ]);
        let seen = std::sync::Mutex::new(Vec::new());
        let (r, skipped) = process_batch_reporting_skipped(&e, |m| {
            seen.lock().unwrap().push(m.message_id.clone().unwrap());
            fail_on_bad(m)
        })
        .await;
        assert_eq!(failed_ids(&r), vec!["a2", "a3"]);
        let skipped: Vec<_> = skipped.iter().map(|m| m.message_id.as_deref().unwrap()).collect();
        assert_eq!(skipped, vec!["a3"], "a2 was processed and failed; a3 was skipped");
        assert_eq!(*seen.lock().unwrap(), vec!["a1", "a2", "b1", "b2"], "a3 must not be processed after a2 failed");
    }

    #[tokio::test]
    async fn a_fifo_batch_stops_starting_records_when_the_deadline_is_too_close() {
        let e = event(vec![
            message("a1", Some("a"), "ok"),
            message("b1", Some("b"), "ok"),
            message("a2", Some("a"), "ok"),
            message("b2", Some("b"), "ok"),
        ]);
        let started = std::sync::Mutex::new(Vec::new());
        // Room for two records only: the third is not started, nor anything after it.
        let (r, skipped) = process_batch_while(
            &e,
            |_| started.lock().unwrap().len() < 2,
            |m| {
                started.lock().unwrap().push(m.message_id.clone().unwrap());
                fail_on_bad(m)
            },
        )
        .await;
        assert_eq!(*started.lock().unwrap(), vec!["a1", "b1"]);
        assert_eq!(failed_ids(&r), vec!["a2", "b2"]);
        assert_eq!(skipped.len(), 2);
    }

    #[tokio::test]
    async fn the_first_fifo_record_is_always_started() {
        let e = event(vec![message("a1", Some("a"), "ok")]);
        let (r, skipped) = process_batch_while(&e, |_| false, fail_on_bad).await;
        assert!(r.batch_item_failures.is_empty() && skipped.is_empty());
    }

    #[test]
    fn two_parked_copies_of_one_delivery_have_one_identity_and_malformed_bodies_are_told_apart() {
        let attrs = |id: &'static str| {
            move |k: &str| match k {
                "stage" => Some("dispatcher"),
                "delivery_id" => Some(id),
                _ => None,
            }
        };
        let a = parked_identity(attrs("stripe:evt_1:f:v1"), "{copy 1}");
        let b = parked_identity(attrs("stripe:evt_1:f:v1"), "{copy 2}");
        assert_eq!(a, b);
        assert_ne!(a, parked_identity(attrs("stripe:evt_2:f:v1"), "{copy 1}"));
        assert_ne!(parked_identity(attrs(""), "x"), parked_identity(attrs(""), "y"));
    }

    #[tokio::test]
    async fn lines_logged_while_handling_a_record_carry_the_ids_of_its_message_attributes() {
        let mut m = message("m-1", Some("g-1"), "not a delivery");
        for (name, value) in [("correlation_id", "c-1"), ("event_id", "evt_1"), ("flow", "f-1"), ("unrelated", "x")] {
            let mut a = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
            a.string_value = Some(value.to_owned());
            m.message_attributes.insert(name.to_owned(), a);
        }
        let buffer = crate::logging::capture::Buffer::default();
        let _default = tracing::subscriber::set_default(buffer.subscriber());
        process_batch(&event(vec![m, message("m-2", Some("g-2"), "no attributes")]), |m| async move {
            warn!(body = m.body.as_deref().unwrap_or_default(), "cannot parse");
            RecordResult::Done
        })
        .await;
        let lines: Vec<serde_json::Value> = buffer.lines().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        let with = &lines[0];
        for (key, value) in
            [("message_id", "m-1"), ("group", "g-1"), ("correlation_id", "c-1"), ("event_id", "evt_1"), ("flow", "f-1")]
        {
            assert_eq!(with[key], value, "{key} in {with}");
        }
        assert!(with.get("unrelated").is_none() && with.get("source").is_none(), "{with}");
        assert_eq!(lines[1]["message_id"], "m-2");
        assert!(lines[1].get("event_id").is_none(), "{}", lines[1]);
    }

    #[tokio::test]
    async fn an_empty_batch_reports_no_failures() {
        assert!(process_batch(&event(vec![]), fail_on_bad).await.batch_item_failures.is_empty());
    }
}
