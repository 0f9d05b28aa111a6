use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::future::join_all;
use switchyard_common::archive::{self, ArchiveError};
use switchyard_common::batch::{self, batch_response, parked_message, receive_count, record_span, RecordResult};
use switchyard_common::config::{Config, Flow};
use switchyard_common::envelope::{is_header_text, sha256_hex, Delivery, Envelope, EnvelopeError, Mode};
use switchyard_common::failure::Failure;
use switchyard_common::ledger::{self, LedgerRecord, RecordKey, Status, RECORD_TTL};
use switchyard_common::mapping::MappingError;
use switchyard_common::metrics;
use switchyard_common::queue::{delivery_message, OutboundMessage, QueueError};
use switchyard_common::runtime::now_ms;
use tracing::{field, info, warn, Instrument};

use crate::Deps;

/// A flow that did not become a delivery, and why.
#[derive(Debug)]
pub struct NotMapped {
    pub flow: String,
    pub version: u32,
    pub destination: String,
    /// The flow's business key, hashed, when it could be read.
    pub entity: Option<String>,
    /// `None`: the flow's filter said no.
    pub failure: Option<Failure>,
}

/// What one envelope turned into.
#[derive(Debug, Default)]
pub struct Mapped {
    pub deliveries: Vec<Delivery>,
    /// Flows whose mapping or contract failed (terminal, with the reason) or whose
    /// filter said no.
    pub not_mapped: Vec<NotMapped>,
}

impl Mapped {
    /// Flows whose mapping or contract failed.
    pub fn failed(&self) -> impl Iterator<Item = (&NotMapped, &Failure)> {
        self.not_mapped.iter().filter_map(|n| Some((n, n.failure.as_ref()?)))
    }

    fn push(&mut self, flow: &Flow, result: Result<Option<Delivery>, Failure>, envelope: &Envelope) {
        let failure = match result {
            Ok(Some(d)) => return self.deliveries.push(d),
            Ok(None) => None,
            Err(failure) => Some(failure),
        };
        self.not_mapped.push(NotMapped {
            flow: flow.name.clone(),
            version: flow.version,
            destination: flow.destination.clone(),
            entity: entity_of(flow, &envelope.data),
            failure,
        });
    }
}

/// Runs every matching flow over one envelope. Pure: no I/O, so it is what the golden
/// fixtures test.
pub fn map_envelope(config: &Config, envelope: &Envelope) -> Mapped {
    let mut mapped = Mapped::default();
    for flow in config.flows.iter().filter(|f| selects(f, envelope)) {
        mapped.push(flow, map_flow(config, flow, envelope), envelope);
    }
    mapped
}

/// The flow's business key, hashed; `None` when the flow has none or it cannot be read
/// from this payload (it only serves lookups, so it never fails a delivery).
fn entity_of(flow: &Flow, data: &serde_json::Value) -> Option<String> {
    let value = flow.entity_key.as_ref()?.run_key(data).ok()?;
    Some(ledger::entity_hash(&flow.name, &value))
}

fn selects(flow: &Flow, envelope: &Envelope) -> bool {
    flow.mode != Mode::Off && flow.source == envelope.source_name() && flow.accepts_type(&envelope.event_type)
}

/// A mapping error is terminal for its record, except a container too busy with
/// runaway mappings to start one: that record is retried.
fn mapping_failure(e: MappingError) -> Failure {
    if e.is_transient() {
        Failure::transient(e.reason())
    } else {
        Failure::terminal(e.reason())
    }
}

/// Runs one flow (whatever its mode) over an envelope; `Ok(None)`: its filter said no.
/// Also what a replay of a parked envelope through the current flow version runs.
pub fn map_flow(config: &Config, flow: &Flow, envelope: &Envelope) -> Result<Option<Delivery>, Failure> {
    let data = &envelope.data;
    if let Some(filter) = &flow.filter {
        match filter.run_one(data) {
            Ok(serde_json::Value::Bool(true)) => {}
            Ok(_) => return Ok(None),
            Err(e) => return Err(mapping_failure(e)),
        }
    }
    let body = flow.mapping.run_one(data).map_err(mapping_failure)?;
    if let Some(contract) = &flow.contract {
        contract.validate(&body).map_err(|e| Failure::terminal(e.reason()))?;
    }
    let source = envelope.source_name();
    let idempotency_key = match &flow.idempotency_key {
        Some(expr) => expr.run_idempotency_key(data).map_err(mapping_failure)?,
        None => Delivery::default_key(source, &envelope.id, &flow.name, flow.version),
    };
    // It is sent as the `Idempotency-Key` header: one that cannot be never will be.
    if !is_header_text(&idempotency_key) {
        return Err(Failure::terminal("idempotency key is not a valid HTTP header value"));
    }
    let ordering_key = flow.ordering_key.as_ref().map(|e| e.run_key(data)).transpose().map_err(mapping_failure)?;
    let entity_version =
        match &flow.entity_version {
            Some(expr) => {
                let text = expr.run_key(data).map_err(mapping_failure)?;
                Some(text.parse::<i64>().map_err(|_| {
                    Failure::terminal(format!("entity_version of flow {} is not an integer", flow.name))
                })?)
            }
            None => None,
        };
    let destination = config.destination(&flow.destination).map(|d| d.name.clone()).unwrap_or_default();
    let entity = entity_of(flow, data);
    Ok(Some(Delivery {
        delivery_id: Delivery::id_for(source, &envelope.id, &flow.name, flow.version),
        event_id: envelope.id.clone(),
        source: source.to_owned(),
        event_type: envelope.event_type.clone(),
        correlation_id: envelope.correlationid.clone(),
        flow: flow.name.clone(),
        flow_version: flow.version,
        destination,
        method: flow.method.to_string(),
        path: flow.path.clone(),
        mode: flow.mode,
        idempotency_key,
        ordering_key,
        entity_version,
        entity,
        accepted_at_ms: envelope.accepted_at_ms(),
        body,
    }))
}

/// What one record of the batch came to before anything is sent: settled already
/// (parked, acknowledged, to retry), or deliveries to enqueue with the rest.
enum Plan<'a> {
    Settled(RecordResult),
    Send(Box<Planned<'a>>),
}

struct Planned<'a> {
    message: &'a SqsMessage,
    body: &'a str,
    envelope: Envelope,
    mapped: Mapped,
    standard: Vec<OutboundMessage>,
    ordered: Vec<OutboundMessage>,
    span: tracing::Span,
}

/// A batch in three steps: each record mapped (no I/O unless it settles at once), then
/// every record's deliveries in one `send_all` per queue (one `SendMessageBatch` per
/// ten messages, not one per record), then each record's flows that became no
/// delivery recorded or parked. A record whose messages were not all sent comes back
/// whole; the dispatcher's claims absorb the ones that were.
pub async fn handle(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    // The batch's figures (events in per flow, unmatched per source) in one line per set.
    metrics::per_batch(handle_batch(deps, event)).await
}

async fn handle_batch(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    let parsed: Vec<_> =
        event.records.iter().map(|m| Envelope::from_json(m.body.as_deref().unwrap_or_default())).collect();
    let archived = archive_batch(deps, &event.records, &parsed).await;
    let plans = join_all(
        event
            .records
            .iter()
            .zip(parsed)
            .zip(archived)
            .map(|((m, e), a)| plan(deps, m, e, a).instrument(record_span(m))),
    )
    .await;
    let sent = send_planned(deps, &plans).await;
    // Events in, per flow (the dashboard's first column).
    for (plan, unsent) in plans.iter().zip(&sent) {
        if let (Plan::Send(p), None) = (plan, unsent) {
            // A dark version's deliveries are the same events again: not counted in.
            for d in p.mapped.deliveries.iter().filter(|d| d.mode == Mode::Live) {
                metrics::count("Mapped", 1, &[("Flow", &d.flow)]);
            }
        }
    }
    let results = join_all(plans.into_iter().zip(sent).map(|(plan, unsent)| async move {
        match plan {
            Plan::Settled(r) => r,
            Plan::Send(p) => {
                let outer = record_span(p.message);
                let span = p.span.clone();
                finish(deps, *p, unsent).instrument(span).instrument(outer).await
            }
        }
    }))
    .await;
    batch_response(&event, &results)
}

async fn plan<'a>(
    deps: &Deps,
    message: &'a SqsMessage,
    parsed: Result<Envelope, EnvelopeError>,
    archived: Result<(), ArchiveError>,
) -> Plan<'a> {
    let body = message.body.as_deref().unwrap_or_default();
    let envelope = match parsed {
        Ok(e) => e,
        Err(e) => {
            let failure = Failure::terminal(e.to_string());
            let dlq = dlq_message(body, &failure, None, None, message);
            return Plan::Settled(park(deps, dlq, &failure).await);
        }
    };
    let span = tracing::info_span!(
        "envelope",
        correlation_id = %envelope.correlationid,
        event_id = %envelope.id,
        source = envelope.source_name(),
        event_type = %envelope.event_type,
        flow = field::Empty,
        destination = field::Empty,
    );
    if let Err(e) = archived {
        // Nothing is mapped that was not archived first: the record comes back.
        span.in_scope(|| warn!(error = %e, "cannot archive the envelope; will retry"));
        return Plan::Settled(RecordResult::Retry);
    }
    match span.in_scope(|| prepare(&deps.config, envelope)) {
        Prepared::Retry => Plan::Settled(RecordResult::Retry),
        Prepared::Unmatched(record) => Plan::Settled(record_or_retry(deps, &record).instrument(span).await),
        Prepared::Send(to_send) => {
            let ToSend { envelope, mapped, standard, ordered } = *to_send;
            Plan::Send(Box::new(Planned { message, body, envelope, mapped, standard, ordered, span }))
        }
    }
}

/// Writes the batch's envelopes, exactly as queued, to the stage's archive if it has
/// one, for the sources that archive (`archive = true`, the default): one object per
/// source and acceptance minute (`archive::batches`), the objects concurrently. Per
/// record: whether its envelope is archived or need not be; a record whose object
/// could not be written comes back.
async fn archive_batch(
    deps: &Deps,
    records: &[SqsMessage],
    parsed: &[Result<Envelope, EnvelopeError>],
) -> Vec<Result<(), ArchiveError>> {
    let mut out = vec![Ok(()); records.len()];
    let Some(store) = &deps.archive else { return out };
    let mut wanted = Vec::with_capacity(records.len());
    let mut items = Vec::with_capacity(records.len());
    for (i, (message, envelope)) in records.iter().zip(parsed).enumerate() {
        let Ok(envelope) = envelope else { continue };
        let source = envelope.source_name();
        // Not an envelope intake wrote (no acceptance time): the mapping decides.
        let Some(accepted_at_ms) = envelope.accepted_at_ms().filter(|_| deps.config.archives(source)) else {
            continue;
        };
        wanted.push(i);
        items.push((source, envelope.id.as_str(), accepted_at_ms, message.body.as_deref().unwrap_or_default()));
    }
    let objects = archive::batches(items);
    let written = join_all(objects.iter().map(|(o, _)| store.put(&o.key, &o.body))).await;
    for ((_, held), result) in objects.iter().zip(written) {
        if let Err(e) = result {
            for i in held {
                out[wanted[*i]] = Err(e.clone());
            }
        }
    }
    out
}

enum Prepared {
    Retry,
    /// No flow wants the event: its decision to record.
    Unmatched(Box<LedgerRecord>),
    Send(Box<ToSend>),
}

struct ToSend {
    envelope: Envelope,
    mapped: Mapped,
    standard: Vec<OutboundMessage>,
    ordered: Vec<OutboundMessage>,
}

/// The mapping of one envelope and its deliveries' queue messages (no I/O).
fn prepare(config: &Config, envelope: Envelope) -> Prepared {
    let mut mapped = map_envelope(config, &envelope);
    if let Some((n, failure)) = mapped.failed().find(|(_, f)| !f.is_terminal()) {
        warn!(flow = %n.flow, reason = %failure.reason, "cannot map now; will retry");
        return Prepared::Retry;
    }
    if mapped.deliveries.is_empty() && mapped.not_mapped.is_empty() {
        info!("no flow for this event type; acknowledged");
        metrics::count("UnmatchedEvents", 1, &[("Source", envelope.source_name())]);
        let mut record = decision(&envelope, RecordKey::mapper(envelope.source_name(), &envelope.id));
        record.summary = Some(format!("no flow wants event type {:?}", envelope.event_type));
        return Prepared::Unmatched(Box::new(record));
    }
    let (mut standard, mut ordered) = (Vec::new(), Vec::new());
    let mut sendable = Vec::with_capacity(mapped.deliveries.len());
    for d in std::mem::take(&mut mapped.deliveries) {
        let mut m = match delivery_message(&d) {
            Ok(m) => m,
            Err(failure) => {
                // Terminal for this flow only; the other flows' deliveries still go.
                mapped.not_mapped.push(NotMapped {
                    flow: d.flow.clone(),
                    version: d.flow_version,
                    destination: d.destination.clone(),
                    entity: d.entity.clone(),
                    failure: Some(failure),
                });
                continue;
            }
        };
        match &d.ordering_key {
            Some(key) => {
                // SQS limits both ids to 128 characters of a restricted set: hash them.
                m.group_id = Some(sha256_hex(key.as_bytes()));
                m.dedup_id = Some(sha256_hex(d.delivery_id.as_bytes()));
                ordered.push(m);
            }
            None => standard.push(m),
        }
        sendable.push(d);
    }
    mapped.deliveries = sendable;
    Prepared::Send(Box::new(ToSend { envelope, mapped, standard, ordered }))
}

/// Sends every planned record's messages, one `send_all` per queue; for each plan,
/// `None` when all of its messages were sent, else why not.
async fn send_planned(deps: &Deps, plans: &[Plan<'_>]) -> Vec<Option<String>> {
    let mut unsent = vec![None; plans.len()];
    for (url, fifo) in [(&deps.dispatch_queue_url, false), (&deps.dispatch_fifo_queue_url, true)] {
        let of = |p: &Planned<'_>| if fifo { p.ordered.clone() } else { p.standard.clone() };
        // Each message's owner: the plan it came from.
        let (mut messages, mut owners) = (Vec::new(), Vec::new());
        for (i, plan) in plans.iter().enumerate() {
            if let Plan::Send(p) = plan {
                let mine = of(p);
                owners.extend(std::iter::repeat_n(i, mine.len()));
                messages.extend(mine);
            }
        }
        if messages.is_empty() {
            continue;
        }
        // Each event's own line says what happened to it (`finish`).
        match deps.queue.send_all(url, &messages).await {
            Ok(()) => {}
            Err(QueueError::Partial { failed, reason }) => {
                for index in failed {
                    if let Some(&owner) = owners.get(index) {
                        unsent[owner] = Some(reason.clone());
                    }
                }
            }
            Err(e) => {
                // Nothing of this queue's share is known to be sent: every event with
                // a message in it comes back.
                for &owner in &owners {
                    unsent[owner] = Some(e.to_string());
                }
            }
        }
    }
    unsent
}

/// A planned record once its messages were sent (or not): the flows that became no
/// delivery are recorded or parked.
async fn finish(deps: &Deps, p: Planned<'_>, unsent: Option<String>) -> RecordResult {
    if let Some(error) = unsent {
        // The whole envelope comes back; the dispatcher's claims absorb the repeats.
        warn!(error = %error, "could not enqueue deliveries; will retry");
        return RecordResult::Retry;
    }
    let Planned { message, body, envelope, mapped, .. } = p;
    for d in &mapped.deliveries {
        info!(flow = %d.flow, destination = %d.destination, "mapped");
    }
    let mut result = RecordResult::Done;
    for n in &mapped.not_mapped {
        let span = tracing::info_span!("flow", flow = %n.flow, destination = %n.destination);
        if settle(deps, &envelope, body, n, message).instrument(span).await == RecordResult::Retry {
            result = RecordResult::Retry;
        }
    }
    result
}

fn dlq_message(
    body: &str,
    failure: &Failure,
    flow: Option<&str>,
    flow_version: Option<u32>,
    message: &SqsMessage,
) -> OutboundMessage {
    parked_message(body, failure, receive_count(message), "mapper")
        .attribute("flow", flow.unwrap_or_default())
        .attribute("flow_version", flow_version.map(|v| v.to_string()).unwrap_or_default())
}

/// A record of the mapper's decision about an event (no claim precedes it).
fn decision(envelope: &Envelope, key: RecordKey) -> LedgerRecord {
    let now = now_ms();
    let mut record = LedgerRecord::new(key, Status::Filtered, now, now / 1000 + RECORD_TTL.as_secs() as i64);
    record.correlation_id = Some(envelope.correlationid.clone());
    record
}

/// Records a decision; if the ledger cannot take it the envelope comes back (its
/// deliveries already enqueued are absorbed by the dispatcher's claims).
async fn record_or_retry(deps: &Deps, record: &LedgerRecord) -> RecordResult {
    match deps.ledger.record_decision(record).await {
        Ok(_) => RecordResult::Done,
        Err(e) => {
            warn!(error = %e, "could not record the mapper's decision; will retry");
            RecordResult::Retry
        }
    }
}

/// A flow that became no delivery: filtered out (recorded), or failed (recorded as
/// parked in the ledger first, then parked in the ingest DLQ).
async fn settle(deps: &Deps, envelope: &Envelope, body: &str, n: &NotMapped, message: &SqsMessage) -> RecordResult {
    let source = envelope.source_name();
    let mut record = decision(envelope, RecordKey::delivery(source, &envelope.id, &n.flow, n.version));
    record.flow = Some(n.flow.clone());
    record.destination = Some(n.destination.clone());
    record.entity = n.entity.clone();
    let Some(failure) = &n.failure else {
        info!("the flow's filter said no");
        record.summary = Some(format!("filtered out by flow {} v{}", n.flow, n.version));
        return record_or_retry(deps, &record).await;
    };
    record.status = Status::Parked;
    record.error_class = Some(failure.class.as_str().to_owned());
    record.reason = Some(failure.reason.clone());
    record.dlq = Some("ingest".to_owned());
    record.attempts = 1;
    record.log.push(ledger::log_entry(record.created_at_ms, Status::Parked, Some(failure.class), &failure.reason));
    if record_or_retry(deps, &record).await == RecordResult::Retry {
        return RecordResult::Retry;
    }
    let dlq = dlq_message(body, failure, Some(&n.flow), Some(n.version), message)
        .attribute("delivery_id", Delivery::id_for(source, &envelope.id, &n.flow, n.version))
        .attribute("correlation_id", &envelope.correlationid)
        .attribute("event_id", &envelope.id)
        .attribute("source", source)
        .attribute("destination", &n.destination);
    park(deps, dlq, failure).await
}

async fn park(deps: &Deps, dlq: OutboundMessage, failure: &Failure) -> RecordResult {
    let to = batch::Dlq { url: &deps.ingest_dlq_url, name: "ingest", stage: "mapper" };
    batch::park(deps.queue.as_ref(), to, &dlq, failure).await
}

#[cfg(test)]
mod tests;
