use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use switchyard_common::batch::{self, parked_message, process_batch, receive_count, RecordResult};
use switchyard_common::config::{Config, Flow};
use switchyard_common::envelope::{is_header_text, sha256_hex, Delivery, Envelope, Mode};
use switchyard_common::failure::Failure;
use switchyard_common::mapping::MappingError;
use switchyard_common::metrics;
use switchyard_common::queue::{OutboundMessage, Unsendable, MAX_MESSAGE_BYTES};
use tracing::{field, info, warn, Instrument};

use crate::Deps;

pub async fn handle(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    process_batch(&event, |m| handle_record(deps, m)).await
}

/// What one envelope turned into.
#[derive(Debug, Default)]
pub struct Mapped {
    pub deliveries: Vec<Delivery>,
    /// Flows whose mapping or contract failed: terminal, with the reason.
    pub failed: Vec<(String, u32, Failure)>,
}

/// Runs every matching flow over one envelope. Pure: no I/O, so it is what the golden
/// fixtures test.
pub fn map_envelope(config: &Config, envelope: &Envelope) -> Mapped {
    let mut mapped = Mapped::default();
    for flow in config.flows.iter().filter(|f| selects(f, envelope)) {
        match map_one(config, flow, envelope) {
            Ok(Some(d)) => mapped.deliveries.push(d),
            Ok(None) => {}
            Err(failure) => mapped.failed.push((flow.name.clone(), flow.version, failure)),
        }
    }
    mapped
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

/// `Ok(None)`: the flow's filter said no.
fn map_one(config: &Config, flow: &Flow, envelope: &Envelope) -> Result<Option<Delivery>, Failure> {
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
        Some(expr) => expr.run_key(data).map_err(mapping_failure)?,
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
        body,
    }))
}

async fn handle_record(deps: &Deps, message: &SqsMessage) -> RecordResult {
    let body = message.body.as_deref().unwrap_or_default();
    let envelope = match Envelope::from_json(body) {
        Ok(e) => e,
        Err(e) => {
            let failure = Failure::terminal(e.to_string());
            let dlq = dlq_message(body, &failure, None, None, message);
            return park(deps, dlq, &failure).await;
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
    async {
        let mut mapped = map_envelope(&deps.config, &envelope);
        if let Some((flow, _, failure)) = mapped.failed.iter().find(|(_, _, f)| !f.is_terminal()) {
            warn!(flow = %flow, reason = %failure.reason, "cannot map now; will retry");
            return RecordResult::Retry;
        }
        if mapped.deliveries.is_empty() && mapped.failed.is_empty() {
            info!("no flow for this event type; acknowledged");
            metrics::count("UnmatchedEvents", 1, &[("Source", envelope.source_name())]);
            return RecordResult::Done;
        }
        let (mut standard, mut ordered) = (Vec::new(), Vec::new());
        let mut sendable = Vec::with_capacity(mapped.deliveries.len());
        for d in std::mem::take(&mut mapped.deliveries) {
            let mut m = match delivery_message(&d) {
                Ok(m) => m,
                Err(failure) => {
                    // Terminal for this flow only; the other flows' deliveries still go.
                    mapped.failed.push((d.flow.clone(), d.flow_version, failure));
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
        let sent = async {
            if !standard.is_empty() {
                deps.queue.send_all(&deps.dispatch_queue_url, &standard).await?;
            }
            if !ordered.is_empty() {
                deps.queue.send_all(&deps.dispatch_fifo_queue_url, &ordered).await?;
            }
            Ok::<(), switchyard_common::queue::QueueError>(())
        };
        if let Err(e) = sent.await {
            // The whole envelope comes back; the dispatcher's claims absorb the repeats.
            warn!(error = %e, "could not enqueue deliveries; will retry");
            return RecordResult::Retry;
        }
        for d in &mapped.deliveries {
            info!(flow = %d.flow, destination = %d.destination, "mapped");
        }
        let mut result = RecordResult::Done;
        for (flow, version, failure) in &mapped.failed {
            let dlq = dlq_message(body, failure, Some(flow), Some(*version), message)
                .attribute("delivery_id", Delivery::id_for(envelope.source_name(), &envelope.id, flow, *version))
                .attribute("correlation_id", &envelope.correlationid)
                .attribute("event_id", &envelope.id);
            let to =
                deps.config.flows.iter().find(|f| f.name == *flow && f.version == *version).map(|f| &f.destination);
            let span = tracing::info_span!("flow", flow = %flow, destination = to.map(String::as_str));
            if park(deps, dlq, failure).instrument(span).await == RecordResult::Retry {
                result = RecordResult::Retry;
            }
        }
        result
    }
    .instrument(span)
    .await
}

/// A delivery as a dispatch queue message, or why SQS would never take it. The parked
/// copy is the envelope, which intake keeps within SQS's limits, never the delivery.
fn delivery_message(d: &Delivery) -> Result<OutboundMessage, Failure> {
    let message = OutboundMessage::json(d)
        .map_err(|e| Failure::terminal(e.to_string()))?
        .attribute("correlation_id", &d.correlation_id)
        .attribute("event_id", &d.event_id)
        .attribute("source", &d.source)
        .attribute("flow", &d.flow)
        .attribute("destination", &d.destination);
    match message.check() {
        Ok(()) => Ok(message),
        Err(Unsendable::TooLarge { bytes, .. }) => Err(Failure::terminal(format!(
            "too_large: the mapped delivery is {bytes} bytes, over SQS's limit of {MAX_MESSAGE_BYTES}"
        ))),
        Err(e) => Err(Failure::terminal(e.to_string())),
    }
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

async fn park(deps: &Deps, dlq: OutboundMessage, failure: &Failure) -> RecordResult {
    let to = batch::Dlq { url: &deps.ingest_dlq_url, name: "ingest", stage: "mapper" };
    batch::park(deps.queue.as_ref(), to, &dlq, failure).await
}

#[cfg(test)]
mod tests;
