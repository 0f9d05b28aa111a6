use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use base64::Engine as _;
use serde_json::Value;
use switchyard_common::config::Source;
use switchyard_common::envelope::{sha256_hex, Envelope};
use switchyard_common::ledger::{derived_correlation_id, ClaimOutcome, ClaimRequest, RecordKey};
use switchyard_common::queue::{envelope_message, is_sqs_char, Unsendable};
use switchyard_common::runtime::{self, now_ms, rfc3339};
use switchyard_common::secrets::VersionStage;
use switchyard_common::signature::{self, SignatureError, SigningSecret, Verified};
use tracing::{debug, field, info, warn, Instrument};

use crate::respond::{accepted, duplicate, error};
use crate::Deps;

const MAX_EVENT_ID_LEN: usize = 200;

/// Handles one API Gateway (HTTP API, payload v2) request. Never fails: every outcome
/// is an answer to the provider. `deadline_ms` is the invocation's deadline, after
/// which an unfinished claim may be taken over by the provider's retry.
pub async fn handle(deps: &Deps, req: ApiGatewayV2httpRequest, deadline_ms: i64) -> ApiGatewayV2httpResponse {
    // A caller's id is kept (and indexed); without one, lines before the event id is
    // known carry a random id, and the event then gets the id derived from it.
    let supplied = correlation_id(&req);
    let early = supplied.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!(
        "intake",
        correlation_id = %early,
        source = field::Empty,
        event_id = field::Empty,
        event_type = field::Empty,
    );
    handle_in_span(deps, req, deadline_ms, supplied).instrument(span).await
}

async fn handle_in_span(
    deps: &Deps,
    req: ApiGatewayV2httpRequest,
    deadline_ms: i64,
    supplied: Option<String>,
) -> ApiGatewayV2httpResponse {
    if req.request_context.http.method != http::Method::POST {
        return error(405, "method_not_allowed", "webhooks are delivered with POST");
    }
    let Some(source_name) = source_name(&req) else {
        return error(404, "unknown_source", "post to /hooks/{source}");
    };
    let Some(source) = deps.config.sources.get(&source_name) else {
        info!(source = %source_name, "rejected: unknown source");
        return error(404, "unknown_source", "no source of that name is configured");
    };
    tracing::Span::current().record("source", source.name.as_str());

    let body = match body_bytes(&req) {
        Ok(b) => b,
        Err(()) => return error(400, "malformed_body", "the body is marked base64 but is not"),
    };
    if body.len() > deps.limits.max_body_bytes {
        info!(bytes = body.len(), "rejected: body too large");
        return error(413, "body_too_large", &format!("bodies are limited to {} bytes", deps.limits.max_body_bytes));
    }

    let now = now_ms();
    let verified = match verify(deps, source, &req.headers, &body, now / 1000).await {
        Ok(v) => v,
        Err(answer) => return *answer,
    };
    if verified.key_index > 0 {
        info!("verified with the previous secret (rotation grace)");
    }

    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        info!("rejected: malformed JSON");
        return error(400, "malformed_json", "the body is not valid JSON");
    };
    let event_id = match event_id(source, &payload, verified.event_id.as_deref(), &body) {
        Ok(id) => id,
        Err(message) => return error(400, "missing_event_id", message),
    };
    let event_type = event_type(source, &payload, &req.headers);
    let correlation_id = supplied.clone().unwrap_or_else(|| derived_correlation_id(&source.name, &event_id));
    tracing::Span::current()
        .record("event_id", event_id.as_str())
        .record("event_type", event_type.as_str())
        .record("correlation_id", correlation_id.as_str());

    let envelope = Envelope::new(
        &source.name,
        event_id.clone(),
        event_type.clone(),
        rfc3339(now),
        payload,
        correlation_id.clone(),
    );
    let message = match envelope_message(&envelope) {
        Ok(m) => m,
        Err(Unsendable::TooLarge { bytes, limit }) => {
            // Checked before the claim, so a refused event leaves nothing behind.
            info!(bytes, "rejected: envelope too large for the queue");
            return error(
                413,
                "body_too_large",
                &format!("the event's envelope would be {bytes} bytes, over the queue's limit of {limit}"),
            );
        }
        Err(e) => {
            // Cannot happen: the envelope is written with the refused characters escaped.
            warn!(error = %e, "envelope cannot be queued");
            return error(400, "malformed_body", "the event cannot be queued");
        }
    };

    let key = RecordKey::intake(&source.name, &event_id);
    let claim = ClaimRequest {
        key: key.clone(),
        payload_hash: sha256_hex(&body),
        now_ms: now,
        in_progress_until_ms: deadline_ms.max(now + 1_000),
        expires_at_s: now / 1000 + deps.limits.ledger_ttl.as_secs() as i64,
        correlation_id: correlation_id.clone(),
        flow: None,
        destination: None,
        entity: None,
        // `switchyard-ops find --correlation`: a caller's id from the index (one entry per
        // event), a derived one from the event it names (no index write).
        index_correlation: supplied.is_some(),
    };
    // Intake's one write comes after the enqueue (below): a read first answers the
    // event's repeats without queueing them again.
    match deps.ledger.check(&claim).await {
        Ok(None) => {}
        Ok(Some(outcome)) => return refused(outcome, &event_id),
        Err(e) => {
            warn!(error = %e, "ledger unavailable; provider will retry");
            return error(503, "unavailable", "try again later");
        }
    }
    if let Err(e) = deps.queue.send(&deps.ingest_queue_url, &message).await {
        // Nothing was written: the provider's retry meets a clean slate.
        warn!(error = %e, "enqueue failed; provider will retry");
        return error(503, "unavailable", "try again later");
    }
    // On the queue: the event is accepted whatever the ledger says now. An intake that
    // dies before this write, or a ledger that refuses it, leaves no record: the
    // provider's retry (if any) is enqueued again and the mapper's deliveries are
    // deduplicated by the dispatcher's claims.
    match deps.ledger.accept(&claim, "enqueued").await {
        Ok(ClaimOutcome::Claimed { .. } | ClaimOutcome::InProgress) => {}
        Ok(ClaimOutcome::AlreadyCompleted { .. } | ClaimOutcome::AlreadyParked { .. }) => {
            // A repeat accepted at the same moment: its copy is deduplicated downstream.
            info!("duplicate");
            return duplicate(&event_id);
        }
        Ok(ClaimOutcome::PayloadMismatch) => {
            // Only when two bodies with one event id arrive at the same moment (the
            // read above refuses a later one): the first accepted is the event's.
            warn!("same event id, different body, accepted concurrently");
            return error(409, "payload_mismatch", "this event id was accepted with a different body");
        }
        Err(e) => warn!(error = %e, "could not record the accepted event; it is on the queue"),
    }
    info!("accepted");
    accepted(&event_id, &correlation_id)
}

/// The answer to an event the ledger already has.
fn refused(outcome: ClaimOutcome, event_id: &str) -> ApiGatewayV2httpResponse {
    match outcome {
        ClaimOutcome::AlreadyCompleted { .. } | ClaimOutcome::AlreadyParked { .. } => {
            info!("duplicate");
            duplicate(event_id)
        }
        ClaimOutcome::InProgress => error(409, "in_progress", "this event is being accepted right now; retry later"),
        ClaimOutcome::PayloadMismatch => {
            warn!("same event id, different body");
            error(409, "payload_mismatch", "this event id was accepted with a different body")
        }
        // `check` never answers a claim.
        ClaimOutcome::Claimed { .. } => error(503, "unavailable", "try again later"),
    }
}

fn source_name(req: &ApiGatewayV2httpRequest) -> Option<String> {
    if let Some(s) = req.path_parameters.get("source") {
        return Some(s.clone());
    }
    let path = req.raw_path.as_deref().or(req.request_context.http.path.as_deref())?;
    let rest = &path[path.find("/hooks/")? + "/hooks/".len()..];
    let name = rest.trim_end_matches('/');
    (!name.is_empty() && !name.contains('/')).then(|| name.to_owned())
}

fn body_bytes(req: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, ()> {
    let body = req.body.as_deref().unwrap_or_default();
    if req.is_base64_encoded {
        base64::engine::general_purpose::STANDARD.decode(body).map_err(|_| ())
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

/// Verifies the request with the source's secrets. A mismatch may mean the sender
/// already signs with a secret rotated since this container cached its copy: the
/// secrets are then read again (at most once per few seconds per secret, see
/// `SecretSource::refresh`) and the request verified once more.
async fn verify(
    deps: &Deps,
    source: &Source,
    headers: &http::HeaderMap,
    body: &[u8],
    now_s: i64,
) -> Result<Verified, Box<ApiGatewayV2httpResponse>> {
    let id = deps.stage.secret_id(&source.secret);
    let check = |secrets: &[SigningSecret]| {
        signature::verify(&source.scheme, headers, body, secrets, now_s, source.tolerance_secs)
    };
    let secrets = signing_secrets(deps, source, &id, now_s, false).await.map_err(|message| {
        warn!(%message, "secret unavailable; provider will retry");
        Box::new(error(503, "unavailable", "try again later"))
    })?;
    let mut result = check(&secrets);
    if result == Err(SignatureError::Mismatch) {
        // The previous version is read (once, then cached) only when the current one
        // does not match: a sender still on it during a rotation's grace.
        if let Ok(both) = signing_secrets(deps, source, &id, now_s, true).await {
            if both.len() > secrets.len() {
                result = check(&both);
            }
        }
    }
    if result == Err(SignatureError::Mismatch) && deps.secrets.refresh(&id) {
        match signing_secrets(deps, source, &id, now_s, true).await {
            Ok(fresh) => result = check(&fresh),
            // The answer stays the mismatch already found.
            Err(message) => warn!(%message, "secret unavailable for a re-read"),
        }
    }
    result.map_err(|e| {
        if e.is_config_error() {
            warn!(code = e.code(), "source secret is unusable");
            Box::new(error(503, "unavailable", "try again later"))
        } else {
            info!(code = e.code(), "rejected: signature");
            Box::new(error(401, e.code(), &e.to_string()))
        }
    })
}

/// Whether the previous secret is still accepted `now_s`: while the current one is
/// younger than the source's grace window. A current version of unknown age (a
/// source that does not say when it was created) leaves the previous one accepted.
fn previous_accepted(current_created_at: Option<i64>, now_s: i64, grace_secs: i64) -> bool {
    grace_secs > 0 && current_created_at.is_none_or(|created| now_s.saturating_sub(created) < grace_secs)
}

/// What intake's cold start does before its first request (`runtime::warm_up`): every
/// webhook source's current signing secret into the cache, and one read each of the
/// ledger and the ingest queue, so their connections are open. A previous version is
/// not read here: `verify` reads it on the first signature the current one refuses.
pub async fn warm_up(deps: &Deps) {
    let now_s = now_ms() / 1_000;
    let mut steps: Vec<runtime::WarmUpStep<'_>> = vec![
        Box::pin(async { deps.ledger.warm_up().await.unwrap_or_else(|e| debug!(error = %e, "ledger warm-up")) }),
        Box::pin(async {
            deps.queue.warm_up(&deps.ingest_queue_url).await.unwrap_or_else(|e| debug!(error = %e, "queue warm-up"))
        }),
    ];
    steps.push(Box::pin(async move {
        // Every source's current secret in one read (BatchGetSecretValue: one connection),
        // then each source's from the cache, registered with the log redaction.
        let ids: Vec<String> = deps.config.sources.values().map(|s| deps.stage.secret_id(&s.secret)).collect();
        deps.secrets.get_current_many(&ids).await;
        for (source, id) in deps.config.sources.values().zip(&ids) {
            if let Err(message) = signing_secrets(deps, source, id, now_s, false).await {
                debug!(%message, "secret warm-up");
            }
        }
    }));
    runtime::warm_up(steps).await;
}

/// The current secret and, `with_previous` and during the rotation grace window, the
/// previous one after it.
async fn signing_secrets(
    deps: &Deps,
    source: &Source,
    id: &str,
    now_s: i64,
    with_previous: bool,
) -> Result<Vec<SigningSecret>, String> {
    let current = deps.secrets.get(id, VersionStage::Current).await.map_err(|e| e.to_string())?;
    // From here on, no log line can carry these values.
    if let Some(v) = &current {
        switchyard_common::redact::register_secret(v.expose());
    }
    let in_grace = previous_accepted(current.as_ref().and_then(|v| v.created_at()), now_s, source.rotation_grace_secs);
    let mut secrets: Vec<SigningSecret> = current.into_iter().map(|v| SigningSecret::new(v.expose())).collect();
    if !(with_previous && in_grace) {
        return Ok(secrets);
    }
    match deps.secrets.get(id, VersionStage::Previous).await {
        Ok(Some(previous)) => {
            switchyard_common::redact::register_secret(previous.expose());
            secrets.push(SigningSecret::new(previous.expose()));
        }
        Ok(None) => {}
        // The current secret is enough to go on with.
        Err(e) => warn!(error = %e, "previous secret unavailable"),
    }
    Ok(secrets)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The provider's event id (payload, then header), else a hash of the body so the
/// same body is still deduplicated.
fn event_id(source: &Source, payload: &Value, header_id: Option<&str>, body: &[u8]) -> Result<String, &'static str> {
    let id = match &source.event_id {
        Some(pointer) => Some(
            payload
                .pointer(pointer)
                .and_then(scalar_text)
                .ok_or("the payload has no event id where the source says")?,
        ),
        None => header_id.filter(|s| !s.is_empty()).map(str::to_owned),
    };
    Ok(match id {
        // An id SQS cannot carry in an attribute is hashed like an overlong one.
        Some(id) if id.len() <= MAX_EVENT_ID_LEN && !id.contains('#') && id.chars().all(is_sqs_char) => id,
        Some(id) => format!("sha256:{}", sha256_hex(id.as_bytes())),
        None => format!("sha256:{}", sha256_hex(body)),
    })
}

fn event_type(source: &Source, payload: &Value, headers: &http::HeaderMap) -> String {
    let from_payload = source.event_type.as_deref().and_then(|p| payload.pointer(p)).and_then(scalar_text);
    let from_header = || {
        let name = source.event_type_header.as_deref()?;
        headers.get(name)?.to_str().ok().filter(|s| !s.is_empty()).map(str::to_owned)
    };
    from_payload.or_else(from_header).unwrap_or_else(|| "unknown".to_owned())
}

/// A caller-supplied `X-Correlation-Id`, if it is a plain token.
fn correlation_id(req: &ApiGatewayV2httpRequest) -> Option<String> {
    req.headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests;
