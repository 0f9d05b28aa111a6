use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use switchyard_common::archive::ArchiveError;
use switchyard_common::backoff;
use switchyard_common::batch::{self, parked_message, process_batch_while, RecordResult};
use switchyard_common::budget;
use switchyard_common::envelope::{Delivery, Mode};
use switchyard_common::failure::{self, Failure, FailureClass};
use switchyard_common::gate::{hold_secs, Admission, BreakerState, HoldReason};
use switchyard_common::ledger::{ClaimOutcome, ClaimRequest, RecordKey, RECORD_TTL};
use switchyard_common::metrics::{self, Metric};
use switchyard_common::queue::{delivery_message, OutboundMessage};
use switchyard_common::recorded::Recorded;
use switchyard_common::runtime::now_ms;
use tracing::{info, warn, Instrument};

use crate::call::deliver;
use crate::Deps;

/// Handles one batch from the dispatch queue. `deadline_ms` is the invocation's
/// deadline: a claim not completed by then may be taken over, and a FIFO record is
/// started only while the worst case of one record still fits before it.
pub async fn handle(deps: &Deps, event: SqsEvent, deadline_ms: i64) -> SqsBatchResponse {
    // The batch's figures (delivered, lag, retries, holds …) in one line per flow or destination.
    metrics::per_batch(handle_batch(deps, event, deadline_ms)).await
}

async fn handle_batch(deps: &Deps, event: SqsEvent, deadline_ms: i64) -> SqsBatchResponse {
    let reserve = deps.settings.record_reserve.as_millis() as i64;
    let may_start = |_: &SqsMessage| now_ms() + reserve <= deadline_ms;
    let (response, skipped) = process_batch_while(&event, may_start, |m| handle_record(deps, m, deadline_ms)).await;
    for m in skipped {
        let (queue_url, _) = deps.queues_for(m.event_source_arn.as_deref());
        if let Some(handle) = m.receipt_handle.as_deref() {
            if let Err(e) = deps.queue.set_visibility(queue_url, handle, 0).await {
                let _record = batch::record_span(m).entered();
                warn!(error = %e, "could not release a message behind a failed one; its group waits for the visibility timeout");
            }
        }
    }
    response
}

/// The message attribute a re-sent copy carries: when its original was first queued.
const FIRST_SENT: &str = "first_sent_ms";

/// When the delivery was first queued: retries do not re-send it, and a copy re-sent
/// after many holds carries its original's time.
fn first_sent_ms(message: &SqsMessage) -> Option<i64> {
    message
        .message_attributes
        .get(FIRST_SENT)
        .and_then(|a| a.string_value.as_deref())
        .or(message.attributes.get("SentTimestamp").map(String::as_str))
        .and_then(|v| v.parse::<i64>().ok())
}

/// How long ago the delivery was first queued.
fn age_ms(message: &SqsMessage, now: i64) -> i64 {
    first_sent_ms(message).map_or(0, |sent| now - sent)
}

async fn handle_record(deps: &Deps, message: &SqsMessage, deadline_ms: i64) -> RecordResult {
    let body = message.body.as_deref().unwrap_or_default();
    let delivery = match Delivery::from_json(body) {
        Ok(d) => d,
        Err(e) => {
            // Never tried: nothing was sent, so no attempt is counted.
            let failure = Failure::terminal(e.to_string());
            return park(deps, message, dlq_message(body, &failure, 0), &failure).await;
        }
    };
    let span = tracing::info_span!(
        "delivery",
        correlation_id = %delivery.correlation_id,
        event_id = %delivery.event_id,
        source = %delivery.source,
        flow = %delivery.flow,
        destination = %delivery.destination,
    );
    dispatch(deps, message, &delivery, deadline_ms).instrument(span).await
}

async fn dispatch(deps: &Deps, message: &SqsMessage, delivery: &Delivery, deadline_ms: i64) -> RecordResult {
    let Some(destination) = deps.config.destination(&delivery.destination) else {
        let failure = Failure::terminal(format!("unknown destination {:?}", delivery.destination));
        return park(deps, message, delivery_dlq_message(message, delivery, &failure, 0), &failure).await;
    };

    let now = now_ms();
    // The gate first: a delivery held back is neither claimed nor charged an attempt.
    let (mut probe, mut slot) = (false, None);
    if destination.is_gated() && delivery.mode != Mode::Dark {
        let lease = budget::worst_case_record(destination).as_millis() as i64;
        match deps.gate.admit(destination, now, lease).await {
            Ok(Admission::Go { probe: p, slot: s }) => {
                if p {
                    warn!(breaker = "half_open", "circuit breaker half-open: this call is the probe");
                    metrics::count_with_total(
                        breaker_metric(BreakerState::HalfOpen),
                        1,
                        &[("Destination", &destination.name)],
                    );
                }
                (probe, slot) = (p, s);
            }
            Ok(Admission::Hold { until_ms, why }) => {
                return hold(deps, message, delivery, destination, until_ms - now, why).await
            }
            Err(e) => {
                warn!(error = %e, "destination gate unavailable; will retry");
                return retry_later(deps, message, destination, &Failure::transient(e.to_string()), 1).await;
            }
        }
    }
    let event_key = delivery.event_key();
    // A flow's own idempotency key is the claim: every event yielding it shares one.
    let key = delivery.claim_key();
    let turn = Turn { now, deadline_ms, probe };
    let result = claim_and_deliver(deps, message, delivery, destination, &key, turn).await;
    if let Some(slot) = &slot {
        deps.gate.release(destination, slot).await;
    }
    if key != event_key {
        if let Err(e) = deps.ledger.mirror(&key, &event_key).await {
            warn!(error = %e, "could not copy the outcome into the event's history");
        }
    }
    result
}

/// When a delivery's turn began, when its invocation ends, and whether its call is the
/// breaker's half-open probe.
struct Turn {
    now: i64,
    deadline_ms: i64,
    probe: bool,
}

/// Claim → call → record → (park) in that order; the attempt number is the ledger's
/// count of claims, so a message that came back without being tried (behind a failed
/// FIFO head, or after its worker died before claiming) does not spend its budget.
async fn claim_and_deliver(
    deps: &Deps,
    message: &SqsMessage,
    delivery: &Delivery,
    destination: &switchyard_common::config::Destination,
    key: &RecordKey,
    turn: Turn,
) -> RecordResult {
    let Turn { now, deadline_ms, probe } = turn;
    let claim = ClaimRequest {
        key: key.clone(),
        payload_hash: delivery.payload_hash(),
        now_ms: now,
        in_progress_until_ms: deadline_ms.max(now + 1_000),
        expires_at_s: now / 1000 + RECORD_TTL.as_secs() as i64,
        correlation_id: delivery.correlation_id.clone(),
        flow: Some(delivery.flow.clone()),
        destination: Some(delivery.destination.clone()),
        entity: delivery.entity.clone(),
        index_correlation: false,
    };
    let (attempt, unknown_before) = match deps.ledger.claim(&claim).await {
        Ok(ClaimOutcome::Claimed { attempt, unknown_outcomes }) => (attempt, unknown_outcomes),
        Ok(ClaimOutcome::AlreadyCompleted { summary }) => {
            info!(summary = summary.as_deref().unwrap_or_default(), "already delivered; acknowledged");
            return RecordResult::Done;
        }
        Ok(ClaimOutcome::AlreadyParked { reason, error_class, attempts }) => {
            // Its worker died after recording the park and before the DLQ send or the
            // delete: park it (again) so the DLQ surely holds it. Whatever lists the DLQ
            // counts copies of one delivery once (`batch::parked_identity`).
            let class = error_class.as_deref().and_then(FailureClass::parse).unwrap_or(FailureClass::Terminal);
            let failure = Failure { class, ..Failure::terminal(reason.unwrap_or_else(|| "parked".to_owned())) };
            info!(reason = %failure.reason, "already parked; making sure the DLQ holds it");
            return park(deps, message, delivery_dlq_message(message, delivery, &failure, attempts), &failure).await;
        }
        Ok(ClaimOutcome::InProgress) => {
            info!("another worker holds this delivery; will look again");
            return retry_later(deps, message, destination, &Failure::transient("in progress elsewhere"), 1).await;
        }
        Ok(ClaimOutcome::PayloadMismatch) => {
            // Not ours to record: the record belongs to the delivery that holds the key.
            let failure = Failure::terminal("payload_mismatch");
            return park(deps, message, delivery_dlq_message(message, delivery, &failure, 0), &failure).await;
        }
        Err(e) => {
            warn!(error = %e, "ledger unavailable; will retry");
            return retry_later(deps, message, destination, &Failure::transient(e.to_string()), 1).await;
        }
    };

    if let (Some(entity), Some(version)) = (&delivery.ordering_key, delivery.entity_version) {
        match deps.ledger.last_version(&delivery.flow, entity).await {
            Ok(Some(last)) if version < last => {
                let reason = format!("stale: version {version} is older than {last}, already delivered");
                info!(%reason, "skipped");
                metrics::count("Stale", 1, &[("Flow", &delivery.flow)]);
                if let Err(e) = deps.ledger.mark_stale(key, &reason, now_ms()).await {
                    warn!(error = %e, "could not record the stale delivery");
                }
                return RecordResult::Done;
            }
            Ok(_) => {}
            Err(e) => {
                let failure = Failure::transient(e.to_string());
                release(deps, key, &failure).await;
                return retry_later(deps, message, destination, &failure, attempt).await;
            }
        }
    }

    if delivery.mode == Mode::Dark {
        return record_dark(deps, message, delivery, destination, key, attempt).await;
    }

    // The rate limit's token last, so that tokens are spaced as calls are. Refused: the
    // claim is given back uncounted and the message waits.
    if destination.rate_limit.is_some() {
        crate::call::warm(deps, destination).await;
        let held = match deps.gate.take_token(destination, now_ms()).await {
            Ok(None) => None,
            Ok(Some(hold)) => Some(Ok(hold)),
            Err(e) => Some(Err(e)),
        };
        if let Some(held) = held {
            let reason = match &held {
                Ok((_, why)) => format!("held back: {}", why.as_str()),
                Err(e) => format!("destination gate unavailable: {e}"),
            };
            if let Err(e) = deps.ledger.unclaim(key, attempt, &reason, now_ms()).await {
                warn!(error = %e, "could not give the claim back; it lapses at the deadline");
            }
            return match held {
                Ok((until_ms, why)) => hold(deps, message, delivery, destination, until_ms - now_ms(), why).await,
                Err(e) => {
                    warn!(error = %e, "destination gate unavailable; will retry");
                    retry_later(deps, message, destination, &Failure::transient(e.to_string()), 1).await
                }
            };
        }
    }
    let outcome = deliver(deps, destination, delivery).await;
    if destination.is_gated() {
        // The breaker counts what says the destination is unwell; any answer that is
        // not a transient failure (a 422 included) says it is up.
        let unwell = match &outcome {
            Err(f) if f.class == FailureClass::Transient => Some(f.retry_after),
            _ => None,
        };
        match deps.gate.record(destination, now_ms(), unwell, probe).await {
            Ok(Some(t)) => {
                warn!(breaker = t.to.as_str(), why = %t.why, "circuit breaker {}", t.to.as_str());
                metrics::count_with_total(breaker_metric(t.to), 1, &[("Destination", &destination.name)]);
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "could not record the call's outcome on the destination gate"),
        }
    }
    match outcome {
        Ok(done) => {
            info!(status = done.status, attempt, "delivered");
            flow_figures(deps, delivery, true);
            if deps.config.has_dark_version(&delivery.flow) {
                // What `flows diff` compares the dark version with. Sent already: a
                // failure here loses only the comparison of this event.
                if let Err(e) = record_request(deps, delivery, destination, Some(done.status)).await {
                    warn!(error = %e, "could not record the request for flows diff");
                }
            }
            finish(deps, key, &format!("HTTP {}", done.status)).await;
            if let (Some(entity), Some(version)) = (&delivery.ordering_key, delivery.entity_version) {
                if let Err(e) = deps.ledger.advance_version(&delivery.flow, entity, version, claim.expires_at_s).await {
                    warn!(error = %e, "could not record the delivered version");
                }
            }
            RecordResult::Done
        }
        Err(failure) if failure.is_terminal() => park_recorded(deps, message, delivery, key, &failure, attempt).await,
        Err(failure) => {
            if failure.class == FailureClass::Auth {
                warn!(permission_failure = true, reason = %failure.reason, "credentials refused after a refresh");
                metrics::count_with_total(metrics::names::PERMISSION_FAILURE, 1, &[("Destination", &destination.name)]);
            }
            let too_old = age_ms(message, now_ms()) > (destination.retry.max_age_secs as i64).saturating_mul(1000);
            if attempt >= destination.retry.max_attempts || too_old {
                let spent = format!(
                    "retry budget exhausted after {attempt} attempts{}; last error: {}",
                    if too_old { " (max age)" } else { "" },
                    failure.reason
                );
                // Some attempt was sent and never answered: say so, the destination
                // may have it (a replay sends the same Idempotency-Key).
                let unknown = unknown_before + u32::from(failure::maybe_arrived(&failure.reason));
                let spent = Failure::terminal(if unknown > 0 {
                    format!(
                        "{} {unknown} of {attempt} attempts got no answer after sending, so {} may have it; {spent}",
                        failure::OUTCOME_UNKNOWN,
                        destination.name
                    )
                } else {
                    spent
                });
                return park_recorded(deps, message, delivery, key, &spent, attempt).await;
            }
            release(deps, key, &failure).await;
            retry_later(deps, message, destination, &failure, attempt).await
        }
    }
}

/// A dark delivery: its request recorded (nothing is sent), then the claim
/// completed. A recording that fails gives the claim back for another attempt.
async fn record_dark(
    deps: &Deps,
    message: &SqsMessage,
    delivery: &Delivery,
    destination: &switchyard_common::config::Destination,
    key: &RecordKey,
    attempt: u32,
) -> RecordResult {
    let summary = match record_request(deps, delivery, destination, None).await {
        Ok(Some(at)) => format!("dark: recorded the request it would send at {at}"),
        Ok(None) => format!(
            "dark: would {} {}{} (not recorded: the stage keeps no archive)",
            delivery.method, destination.base_url, delivery.path
        ),
        Err(e) => {
            let failure = Failure::transient(e.to_string());
            release(deps, key, &failure).await;
            return retry_later(deps, message, destination, &failure, attempt).await;
        }
    };
    info!(%summary, "dark mode: not sent");
    finish(deps, key, &summary).await;
    RecordResult::Done
}

/// Writes the request `delivery` makes (or would make) to the archive; where, or
/// `None` when the stage keeps no archive.
async fn record_request(
    deps: &Deps,
    delivery: &Delivery,
    destination: &switchyard_common::config::Destination,
    status: Option<u16>,
) -> Result<Option<String>, ArchiveError> {
    let Some(archive) = &deps.archive else { return Ok(None) };
    let now = now_ms();
    let at = Recorded::key(delivery, now);
    let body = serde_json::to_vec(&Recorded::new(delivery, destination, status, now))
        .map_err(|e| ArchiveError(format!("cannot serialize the request: {e}")))?;
    archive.put(&at, &body).await?;
    Ok(Some(at))
}

async fn finish(deps: &Deps, key: &RecordKey, summary: &str) {
    if let Err(e) = deps.ledger.complete(key, summary, now_ms()).await {
        // Delivered already; a redelivery would find the claim lapsed and call again,
        // which the destination's Idempotency-Key handling absorbs.
        warn!(error = %e, "could not mark the delivery completed");
    }
}

/// Gives the claim back after a retryable failure, keeping the failure for the trace.
async fn release(deps: &Deps, key: &RecordKey, failure: &Failure) {
    if let Err(e) = deps.ledger.release(key, failure.class, &failure.reason, now_ms()).await {
        warn!(error = %e, "could not record the failure; the claim lapses at the deadline");
    }
}

/// Parks a claimed delivery: the ledger first, then the DLQ, then (by the caller's
/// `Done`) the delete. A death after the ledger write brings the message back to
/// `AlreadyParked`, which parks it again; it is never tried again, so it can never
/// end up both delivered and parked. If the ledger cannot record it, the message
/// comes back for another attempt instead.
async fn park_recorded(
    deps: &Deps,
    message: &SqsMessage,
    delivery: &Delivery,
    key: &RecordKey,
    failure: &Failure,
    attempts: u32,
) -> RecordResult {
    let dlq = if message.attributes.contains_key("MessageGroupId") { "dispatch-fifo" } else { "dispatch" };
    if let Err(e) = deps.ledger.park(key, failure.class, &failure.reason, dlq, now_ms()).await {
        warn!(error = %e, reason = %failure.reason, "could not record the park; will retry");
        return RecordResult::Retry;
    }
    flow_figures(deps, delivery, false);
    park(deps, message, delivery_dlq_message(message, delivery, failure, attempts), failure).await
}

/// A final outcome's figures per flow, in one line: out (`Delivered`) or
/// `ParkedDeliveries`, the lag from intake's acceptance to the 2xx, and for a flow with
/// an SLO the error budget the event spent (a parked one is late by definition).
fn flow_figures(deps: &Deps, delivery: &Delivery, delivered: bool) {
    let lag = if delivered { delivery.accepted_at_ms.map(|t| (now_ms() - t).max(0)) } else { None };
    let slo = deps.config.flow(&delivery.flow, delivery.flow_version).and_then(|f| f.slo);
    let dimensions = [("Flow", delivery.flow.as_str())];
    let count = |name| Metric { name, value: 1.0, unit: "Count", dimensions: &dimensions, rollup: false };
    let mut figures = vec![count(if delivered { "Delivered" } else { "ParkedDeliveries" })];
    if let Some(ms) = lag {
        figures.push(Metric {
            name: "DeliveryLag",
            value: ms as f64,
            unit: "Milliseconds",
            dimensions: &dimensions,
            rollup: false,
        });
    }
    if let Some(slo) = slo {
        figures.push(count(metrics::names::SLO_EVENTS));
        figures.push(Metric {
            name: metrics::names::SLO_BUDGET_SPENT,
            value: slo.budget_spent(lag),
            unit: "None",
            dimensions: &dimensions,
            rollup: false,
        });
    }
    metrics::emit_all(&figures);
}

/// The flow a message's delivery belongs to, from its attributes (for a metric's dimension).
fn delivery_flow(message: &SqsMessage) -> String {
    message.message_attributes.get("flow").and_then(|a| a.string_value.clone()).unwrap_or_default()
}

fn breaker_metric(to: BreakerState) -> &'static str {
    match to {
        BreakerState::Open => "BreakerOpened",
        BreakerState::HalfOpen => "BreakerHalfOpened",
        BreakerState::Closed => "BreakerClosed",
    }
}

/// Leaves a delivery the gate held back for later, uncharged: visible again after the
/// wait plus jitter. A message held so often that its receive count nears the redrive
/// backstop is re-sent as a fresh copy (carrying when it was first queued) and this
/// one deleted; dying between the two leaves two copies, which the claim reduces to
/// one call. A FIFO message is never re-sent: that would reorder its group.
async fn hold(
    deps: &Deps,
    message: &SqsMessage,
    delivery: &Delivery,
    destination: &switchyard_common::config::Destination,
    wait_ms: i64,
    why: HoldReason,
) -> RecordResult {
    let name = destination.name.as_str();
    metrics::count("Held", 1, &[("Destination", name), ("Reason", why.as_str())]);
    if why.is_breaker() {
        metrics::count_with_total(metrics::names::BREAKER_HELD, 1, &[("Destination", name)]);
    }
    let receives = message.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1);
    let fifo = message.attributes.contains_key("MessageGroupId");
    let (queue_url, _) = deps.queues_for(message.event_source_arn.as_deref());
    if !fifo && receives >= budget::hold_requeue_at(destination, deps.settings.max_receive_count) {
        let first = first_sent_ms(message).unwrap_or_else(now_ms);
        match delivery_message(delivery) {
            Ok(copy) => {
                let copy = copy.attribute(FIRST_SENT, first.to_string());
                match deps.queue.send(queue_url, &copy).await {
                    Ok(()) => {
                        info!(held = why.as_str(), receives, "held back often; re-sent as a fresh message");
                        return RecordResult::Done;
                    }
                    Err(e) => warn!(error = %e, "could not re-send a held message; holding it again"),
                }
            }
            Err(e) => warn!(error = %e, "could not re-send a held message; holding it again"),
        }
    }
    let secs = hold_secs(wait_ms, receives, &mut rand::rng());
    if let Some(handle) = message.receipt_handle.as_deref() {
        if let Err(e) = deps.queue.set_visibility(queue_url, handle, secs).await {
            warn!(error = %e, "could not set the hold; the queue's visibility timeout applies");
        }
    }
    info!(held = why.as_str(), wait_ms, hold_secs = secs, "held back by the destination gate");
    RecordResult::Retry
}

/// Leaves the message for another attempt, visible again after the backoff.
async fn retry_later(
    deps: &Deps,
    message: &SqsMessage,
    destination: &switchyard_common::config::Destination,
    failure: &Failure,
    attempt: u32,
) -> RecordResult {
    let delay = backoff::delay(&destination.retry, attempt, failure.retry_after, &mut rand::rng());
    let secs = backoff::as_visibility_secs(delay);
    if let Some(handle) = message.receipt_handle.as_deref() {
        let (queue_url, _) = deps.queues_for(message.event_source_arn.as_deref());
        if let Err(e) = deps.queue.set_visibility(queue_url, handle, secs).await {
            warn!(error = %e, "could not set the retry delay; the queue's visibility timeout applies");
        }
    }
    info!(reason = %failure.reason, class = %failure.class, attempt, retry_in_secs = secs, "will retry");
    metrics::count("Retries", 1, &[("Flow", &delivery_flow(message)), ("Destination", &destination.name)]);
    RecordResult::Retry
}

/// A parked delivery: its own message body, with the reason and where it belongs.
fn delivery_dlq_message(
    message: &SqsMessage,
    delivery: &Delivery,
    failure: &Failure,
    attempts: u32,
) -> OutboundMessage {
    dlq_message(message.body.as_deref().unwrap_or_default(), failure, attempts)
        .attribute("delivery_id", &delivery.delivery_id)
        .attribute("correlation_id", &delivery.correlation_id)
        .attribute("event_id", &delivery.event_id)
        .attribute("flow", &delivery.flow)
        .attribute("destination", &delivery.destination)
}

fn dlq_message(body: &str, failure: &Failure, attempts: u32) -> OutboundMessage {
    parked_message(body, failure, attempts, "dispatcher")
}

async fn park(deps: &Deps, message: &SqsMessage, dlq: OutboundMessage, failure: &Failure) -> RecordResult {
    let (_, dlq_url) = deps.queues_for(message.event_source_arn.as_deref());
    // A FIFO DLQ needs a group and a deduplication id: keep the message's group.
    let dlq = OutboundMessage {
        group_id: message.attributes.get("MessageGroupId").cloned(),
        dedup_id: message.attributes.get("MessageGroupId").and(message.message_id.clone()),
        ..dlq
    };
    let to = batch::Dlq { url: dlq_url, name: "dispatch", stage: "dispatcher" };
    batch::park(deps.queue.as_ref(), to, &dlq, failure).await
}
