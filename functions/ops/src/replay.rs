//! `switchyard-ops replay`: parked messages sent again, guarded and audited.
//!
//! Each selected DLQ message becomes the delivery it should have been:
//! - from the dispatch DLQs, the parked delivery itself;
//! - from the ingest DLQ, the envelope mapped again by the *current* version of the
//!   flow that parked it (so a fixed mapping fixes the replay).
//!
//! `--patch JQ` (or `--edit`) corrects the payload first (the provider's event for an
//! envelope, the request body for a delivery). A patched delivery is a different
//! request: its idempotency key is derived from the original key and the patch's
//! hash, so the destination does not answer it from its idempotency store for the
//! original, and the same patch replayed twice is the same request (delivered once).
//!
//! Per message, in this order, each step safe to die after:
//! 1. arm the claim the dispatcher will use (`IdempotencyStore::arm`): refused when
//!    already delivered (unless `--force`) or being retried right now; the armed record
//!    carries the replay's id, derived from what is sent;
//! 2. write the audit record under the event (who, why, selection, patch, hashes);
//! 3. send the delivery to the dispatch queue;
//! 4. delete the DLQ message.
//!
//! A rerun after a death anywhere finds its own mark: armed but not delivered → sent
//! again (the dispatcher's claim absorbs a duplicate), delivered → the DLQ copy is
//! deleted. Nothing leaves a DLQ before its replay is on the dispatch queue.

use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_common::archive::Archive;
use switchyard_common::config::{Config, Flow};
use switchyard_common::envelope::{sha256_hex, Delivery, Envelope, Mode};
use switchyard_common::ledger::{ArmOutcome, ArmRequest, IdempotencyStore, RecordKey, RECORD_TTL};
use switchyard_common::mapping::JqProgram;
use switchyard_common::queue::{Queue, SqsQueue};
use switchyard_common::runtime::now_ms;

use crate::audit;
use crate::diff;
use crate::dlq::{self, DlqError, DlqName, Filter, Parked};

/// How long received messages stay invisible while a replay works on them (and after
/// the process is killed outright, before a rerun can see them):
/// `SWITCHYARD_OPS_HOLD_SECS`, default 300.
fn hold() -> Duration {
    let secs = std::env::var("SWITCHYARD_OPS_HOLD_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    Duration::from_secs(secs)
}

/// A correction to the payload before it is sent again.
#[derive(Debug)]
pub enum Patch {
    /// A jq program run over the payload.
    Jq { text: String, program: JqProgram },
    /// A whole replacement payload (from `--edit`).
    Document { text: String, value: Value },
}

impl Patch {
    pub fn jq(text: &str) -> Result<Self, String> {
        let program =
            JqProgram::compile("--patch", text).map_err(|e| format!("--patch does not compile: {}", e.reason()))?;
        Ok(Patch::Jq { text: text.to_owned(), program })
    }

    pub fn sha256(&self) -> String {
        match self {
            Patch::Jq { text, .. } | Patch::Document { text, .. } => sha256_hex(text.as_bytes()),
        }
    }

    fn apply(&self, payload: &Value) -> Result<Value, String> {
        match self {
            Patch::Jq { program, .. } => {
                program.run_one(payload).map_err(|e| format!("the patch fails: {}", e.reason()))
            }
            Patch::Document { value, .. } => Ok(value.clone()),
        }
    }

    /// What the audit record keeps: the patch's shape without its values.
    fn audited(&self) -> String {
        match self {
            Patch::Jq { text, .. } => audit::mask_literals(text),
            Patch::Document { .. } => "a whole payload edited with --edit".to_owned(),
        }
    }
}

/// What to replay and how.
#[derive(Debug, Default)]
pub struct Options {
    /// Message ids or delivery ids; empty: select by `filter`.
    pub ids: Vec<String>,
    pub dlqs: Vec<DlqName>,
    pub filter: Filter,
    pub reason: String,
    pub patch: Option<Patch>,
    pub max: Option<usize>,
    /// Sends per second at most.
    pub rate: Option<f64>,
    pub force: bool,
    /// Send; without it nothing changes (a dry run).
    pub yes: bool,
    /// The selection in words, for the audit record (the command's own flags).
    pub selection: String,
}

impl Options {
    fn selects(&self, m: &Parked) -> bool {
        if self.ids.is_empty() {
            return self.filter.matches(m);
        }
        self.ids.iter().any(|id| *id == m.message_id || m.attribute("delivery_id") == Some(id))
    }
}

/// Where a replay reads from and sends to.
pub struct Context<'a> {
    pub sqs: aws_sdk_sqs::Client,
    pub ledger: &'a dyn IdempotencyStore,
    pub config: &'a Config,
    /// DLQ → its URL.
    pub dlq_urls: BTreeMap<DlqName, String>,
    pub dispatch_url: String,
    pub dispatch_fifo_url: String,
    /// Who replays (from STS); needed only to send.
    pub actor: String,
}

/// What happened to one selected message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Dry run: what would be sent.
    WouldReplay,
    Replayed,
    /// Left alone (in the DLQ unless said otherwise), and why.
    Skipped(String),
    /// Could not be replayed; still in the DLQ.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Item {
    /// Where it was replayed from: a DLQ's name, or `archive`.
    pub from: String,
    /// The DLQ message's id; the event id for an archived event.
    pub message_id: String,
    pub delivery_id: Option<String>,
    pub outcome: Outcome,
    /// The request as it would be sent, redacted.
    pub request: Option<Value>,
    /// The patch's effect on the payload: a unified diff of the redacted payloads.
    pub diff: Option<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub dry_run: bool,
    pub items: Vec<Item>,
    pub interrupted: bool,
}

impl Report {
    pub fn replayed(&self) -> usize {
        self.items.iter().filter(|i| matches!(i.outcome, Outcome::Replayed | Outcome::WouldReplay)).count()
    }

    /// Counts of skipped and failed items by reason.
    pub fn by_reason(&self, failed: bool) -> Vec<(String, usize)> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for i in &self.items {
            match (&i.outcome, failed) {
                (Outcome::Skipped(r), false) | (Outcome::Failed(r), true) => *counts.entry(r.clone()).or_default() += 1,
                _ => {}
            }
        }
        counts.into_iter().collect()
    }
}

/// The delivery a parked message becomes, and the payload before and after a patch.
struct Planned {
    delivery: Delivery,
    before: Value,
    after: Value,
}

/// The latest version of a flow that still runs (live over dark).
fn current_flow<'c>(config: &'c Config, name: &str) -> Option<&'c Flow> {
    config
        .flows
        .iter()
        .filter(|f| f.name == name && f.mode != Mode::Off)
        .max_by_key(|f| (f.mode == Mode::Live, f.version))
}

/// The idempotency key of a patched replay: the original's, tied to the patch.
pub fn patched_key(original: &str, patch_sha256: &str) -> String {
    sha256_hex(format!("{original}\npatch {patch_sha256}").as_bytes())
}

/// A replay's id: derived from the delivery and exactly what it sends.
pub fn replay_id(delivery: &Delivery, force: bool) -> String {
    let id = sha256_hex(format!("{}\n{}\n{force}", delivery.delivery_id, delivery.payload_hash()).as_bytes());
    id[..20].to_owned()
}

fn plan(config: &Config, options: &Options, m: &Parked) -> Result<Planned, Outcome> {
    let patch = |before: &Value| match &options.patch {
        Some(p) => p.apply(before).map_err(Outcome::Failed),
        None => Ok(before.clone()),
    };
    let mut planned = match m.dlq {
        DlqName::Dispatch | DlqName::DispatchFifo => {
            let mut delivery = Delivery::from_json(&m.body)
                .map_err(|e| Outcome::Skipped(format!("not a delivery, cannot be replayed: {e}")))?;
            let before = delivery.body.clone();
            let after = patch(&before)?;
            delivery.body = after.clone();
            Planned { delivery, before, after }
        }
        DlqName::Ingest => {
            let mut envelope = Envelope::from_json(&m.body)
                .map_err(|e| Outcome::Skipped(format!("not an envelope, cannot be replayed: {e}")))?;
            let name = m
                .attribute("flow")
                .filter(|f| !f.is_empty())
                .ok_or_else(|| Outcome::Skipped("parked before any flow took it (no flow attribute)".into()))?;
            let flow = current_flow(config, name)
                .ok_or_else(|| Outcome::Skipped(format!("flow {name} is not in the flow file (or is off)")))?;
            let before = envelope.data.clone();
            envelope.data = patch(&before)?;
            let delivery = switchyard_mapper::map_flow(config, flow, &envelope)
                .map_err(|f| Outcome::Failed(format!("flow {name} v{} still fails: {}", flow.version, f.reason)))?
                .ok_or_else(|| Outcome::Skipped(format!("the filter of flow {name} v{} says no", flow.version)))?;
            Planned { delivery, before, after: envelope.data }
        }
    };
    if let Some(p) = &options.patch {
        planned.delivery.idempotency_key = patched_key(&planned.delivery.idempotency_key, &p.sha256());
    }
    Ok(planned)
}

/// The payload a patch applies to: the provider's event of a parked envelope, the
/// request body of a parked delivery.
pub fn payload_of(m: &Parked) -> Result<Value, String> {
    match m.dlq {
        DlqName::Dispatch | DlqName::DispatchFifo => {
            Delivery::from_json(&m.body).map(|d| d.body).map_err(|e| format!("not a delivery: {e}"))
        }
        DlqName::Ingest => Envelope::from_json(&m.body).map(|e| e.data).map_err(|e| format!("not an envelope: {e}")),
    }
}

/// Pretty JSON through the logs' redactor.
pub fn pretty_redacted(v: &Value) -> String {
    // Masked on the compact text (the redactor re-serializes a line whose sensitive
    // field it masks), then laid out one field per line for a readable diff.
    let text = v.to_string();
    let masked = switchyard_common::redact::redact(&text);
    match serde_json::from_str::<Value>(&masked) {
        Ok(masked) => serde_json::to_string_pretty(&masked).unwrap_or_default(),
        Err(_) => masked.into_owned(),
    }
}

/// The request as the dispatcher would send it, redacted (credentials are added by
/// the dispatcher from the destination's secret and never shown).
fn request_view(config: &Config, d: &Delivery) -> Value {
    let base = config.destination(&d.destination).map(|x| x.base_url.clone()).unwrap_or_default();
    let body =
        serde_json::from_str::<Value>(&switchyard_common::redact::redact(&d.body.to_string())).unwrap_or(Value::Null);
    json!({
        "method": d.method,
        "url": format!("{base}{}", d.path),
        "idempotency_key": d.idempotency_key,
        "correlation_id": d.correlation_id,
        "flow": format!("{} v{}", d.flow, d.flow_version),
        "mode": d.mode,
        "body": body,
    })
}

/// Replays (or, without `yes`, plans) every selected message of the chosen DLQs.
/// `stop` ends the run early, cleanly: every message not replayed is made visible.
pub async fn run(
    ctx: &Context<'_>,
    options: &Options,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Report, DlqError> {
    let mut report = Report { dry_run: !options.yes, ..Report::default() };
    let chosen = if options.dlqs.is_empty() { DlqName::ALL.to_vec() } else { options.dlqs.clone() };
    let mut progress = Progress::new(ctx, &chosen, options).await;
    tokio::pin!(stop);
    for dlq in chosen {
        let Some(url) = ctx.dlq_urls.get(&dlq) else { continue };
        let mut held: Vec<String> = Vec::new();
        let work = replay_queue(ctx, options, dlq, url, &mut held, &mut report, &mut progress);
        let interrupted = tokio::select! {
            result = work => { result.map(|()| false) }
            _ = &mut stop => Ok(true),
        };
        // Whatever happened, nothing this command did not replay stays invisible.
        let released = dlq::make_visible(&ctx.sqs, url, &held).await;
        let interrupted = interrupted?;
        released?;
        if interrupted {
            report.interrupted = true;
            break;
        }
        if options.max.is_some_and(|max| attempted(&report) >= max) {
            break;
        }
    }
    progress.finish();
    Ok(report)
}

fn attempted(report: &Report) -> usize {
    report.items.iter().filter(|i| !matches!(i.outcome, Outcome::Skipped(_))).count()
}

async fn replay_queue(
    ctx: &Context<'_>,
    options: &Options,
    dlq: DlqName,
    url: &str,
    held: &mut Vec<String>,
    report: &mut Report,
    progress: &mut Progress,
) -> Result<(), DlqError> {
    let mut seen = HashSet::new();
    let mut replayed_here: HashSet<String> = HashSet::new();
    let mut last_send: Option<Instant> = None;
    let mut empty_rounds = 0;
    while empty_rounds < 3 {
        if options.max.is_some_and(|max| attempted(report) >= max) {
            return Ok(());
        }
        let batch = dlq::receive(&ctx.sqs, dlq, url, hold()).await?;
        if batch.is_empty() {
            empty_rounds += 1;
            continue;
        }
        empty_rounds = 0;
        // Held from the moment they are received, so that an interruption anywhere
        // below makes them visible again; a deleted one is let go.
        held.extend(batch.iter().map(|(_, h)| h.clone()));
        for (m, handle) in batch {
            if !seen.insert(m.message_id.clone()) || !options.selects(&m) {
                continue;
            }
            if options.max.is_some_and(|max| attempted(report) >= max) {
                continue;
            }
            let identity = m.identity();
            let mut item = Item {
                from: dlq.as_str().to_owned(),
                message_id: m.message_id.clone(),
                delivery_id: m.attribute("delivery_id").map(str::to_owned),
                outcome: Outcome::WouldReplay,
                request: None,
                diff: None,
            };
            if options.yes && replayed_here.contains(&identity) {
                // A second copy of one this run just replayed: it goes with it.
                item.outcome = match delete(ctx, url, &handle).await {
                    Ok(()) => {
                        held.retain(|h| *h != handle);
                        Outcome::Skipped("a copy of a delivery replayed in this run (deleted)".into())
                    }
                    Err(e) => Outcome::Failed(e),
                };
                progress.tick(&item.outcome);
                report.items.push(item);
                continue;
            }
            match plan(ctx.config, options, &m) {
                Err(outcome) => item.outcome = outcome,
                Ok(planned) => {
                    item.request = Some(request_view(ctx.config, &planned.delivery));
                    if options.patch.is_some() {
                        item.diff =
                            Some(diff::unified(&pretty_redacted(&planned.before), &pretty_redacted(&planned.after)));
                    }
                    if options.yes {
                        pace(options.rate, &mut last_send).await;
                        item.outcome = replay_one(ctx, options, dlq, url, &m, &handle, &planned).await;
                        let gone = match &item.outcome {
                            Outcome::Replayed => true,
                            Outcome::Skipped(reason) => reason.starts_with("already replayed"),
                            Outcome::Failed(_) | Outcome::WouldReplay => false,
                        };
                        if gone {
                            replayed_here.insert(identity);
                            held.retain(|h| *h != handle);
                        }
                    }
                }
            }
            progress.tick(&item.outcome);
            report.items.push(item);
        }
    }
    Ok(())
}

/// Waits until a send at `rate` per second (none: no limit) may follow the last one.
async fn pace(rate: Option<f64>, last_send: &mut Option<Instant>) {
    let interval = rate.filter(|r| *r > 0.0).map_or(Duration::ZERO, |r| Duration::from_secs_f64(1.0 / r));
    switchyard_common::runtime::pace(interval, last_send).await;
}

/// Where an archived event is looked for, from its intake record (its acceptance time).
pub async fn archived_at(
    ledger: &dyn IdempotencyStore,
    source: &str,
    event_id: &str,
) -> Result<Option<switchyard_common::archive::Locator>, String> {
    let pk = RecordKey::event_pk(source, event_id);
    let records = ledger.history(&pk).await.map_err(|e| format!("ledger: {e}"))?;
    Ok(crate::trace::archive_locator(&pk, &records))
}

/// The deliveries an archived envelope becomes now: for each flow name that wants it,
/// the current version (live over dark; `--flow` narrows), patched first if asked.
fn plan_archived(config: &Config, options: &Options, envelope: &Envelope) -> Vec<Result<Planned, Outcome>> {
    let mut names: Vec<&str> = config
        .flows
        .iter()
        .filter(|f| f.mode != Mode::Off && f.source == envelope.source_name() && f.accepts_type(&envelope.event_type))
        .filter(|f| options.filter.flow.as_deref().is_none_or(|want| want == f.name))
        .map(|f| f.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return vec![Err(Outcome::Skipped(format!(
            "no flow (of this selection) wants event type {:?} of source {}",
            envelope.event_type,
            envelope.source_name()
        )))];
    }
    names
        .into_iter()
        .filter_map(|name| current_flow(config, name))
        .map(|flow| {
            let before = envelope.data.clone();
            let mut patched = envelope.clone();
            if let Some(p) = &options.patch {
                patched.data = p.apply(&before).map_err(Outcome::Failed)?;
            }
            let mut delivery = switchyard_mapper::map_flow(config, flow, &patched)
                .map_err(|f| Outcome::Failed(format!("flow {} v{} fails: {}", flow.name, flow.version, f.reason)))?
                .ok_or_else(|| {
                    Outcome::Skipped(format!("the filter of flow {} v{} says no", flow.name, flow.version))
                })?;
            if let Some(p) = &options.patch {
                delivery.idempotency_key = patched_key(&delivery.idempotency_key, &p.sha256());
            }
            Ok(Planned { delivery, before, after: patched.data })
        })
        .collect()
}

/// Replays archived events (by source and event id) through the current version of
/// each flow that wants them, with a DLQ replay's guards: a dry run unless `yes`,
/// already delivered is skipped unless `force`, each send armed and audited first
/// (arm → audit → send, so a rerun after a death anywhere sends nothing twice). The
/// archive is only read.
pub async fn run_archived(
    ctx: &Context<'_>,
    options: &Options,
    archive: &dyn Archive,
    events: &[(String, String)],
) -> Report {
    let mut report = Report { dry_run: !options.yes, ..Report::default() };
    let mut last_send: Option<Instant> = None;
    for (source, event_id) in events {
        let item = |outcome: Outcome| Item {
            from: "archive".into(),
            message_id: format!("{source}/{event_id}"),
            delivery_id: None,
            outcome,
            request: None,
            diff: None,
        };
        let at = match archived_at(ctx.ledger, source, event_id).await {
            Ok(Some(at)) => at,
            Ok(None) => {
                report.items.push(item(Outcome::Skipped("no intake record (unknown event, or expired)".into())));
                continue;
            }
            Err(e) => {
                report.items.push(item(Outcome::Failed(e)));
                continue;
            }
        };
        let (key, envelope) = match at.fetch(archive).await {
            Ok(Some((key, text))) => match Envelope::from_json(&text) {
                Ok(e) => (key, e),
                Err(e) => {
                    report.items.push(item(Outcome::Failed(format!("archived object {key} is not an envelope: {e}"))));
                    continue;
                }
            },
            Ok(None) => {
                let why = "not archived (its source does not archive, or the archive expired it)";
                report.items.push(item(Outcome::Skipped(why.into())));
                continue;
            }
            Err(e) => {
                report.items.push(item(Outcome::Failed(e.to_string())));
                continue;
            }
        };
        for planned in plan_archived(ctx.config, options, &envelope) {
            if options.max.is_some_and(|max| attempted(&report) >= max) {
                return report;
            }
            let mut it = item(Outcome::WouldReplay);
            match planned {
                Err(outcome) => it.outcome = outcome,
                Ok(planned) => {
                    it.delivery_id = Some(planned.delivery.delivery_id.clone());
                    it.request = Some(request_view(ctx.config, &planned.delivery));
                    if options.patch.is_some() {
                        it.diff =
                            Some(diff::unified(&pretty_redacted(&planned.before), &pretty_redacted(&planned.after)));
                    }
                    if options.yes {
                        pace(options.rate, &mut last_send).await;
                        let origin = [("from_archive", key.clone())];
                        it.outcome = match guarded_send(ctx, options, &origin, &planned).await {
                            Guarded::Sent => Outcome::Replayed,
                            Guarded::AlreadyReplayed => {
                                Outcome::Skipped("already replayed by this same command".into())
                            }
                            Guarded::Refused(outcome) => outcome,
                        };
                    }
                }
            }
            report.items.push(it);
        }
    }
    report
}

/// Arm → audit → send → delete for one message. An `already replayed` outcome has
/// deleted the DLQ copy too; any other non-`Replayed` outcome has left it there.
async fn replay_one(
    ctx: &Context<'_>,
    options: &Options,
    dlq: DlqName,
    url: &str,
    m: &Parked,
    handle: &str,
    planned: &Planned,
) -> Outcome {
    let origin = [("from_dlq", dlq.as_str().to_owned()), ("message_id", m.message_id.clone())];
    match guarded_send(ctx, options, &origin, planned).await {
        Guarded::Sent => match delete(ctx, url, handle).await {
            Ok(()) => Outcome::Replayed,
            // Enqueued: a rerun finds it armed or delivered and deletes the copy then.
            Err(e) => Outcome::Failed(format!("replayed, but the DLQ copy stays: {e}")),
        },
        Guarded::AlreadyReplayed => match delete(ctx, url, handle).await {
            Ok(()) => Outcome::Skipped("already replayed by this same command (DLQ copy deleted)".into()),
            Err(e) => Outcome::Failed(e),
        },
        Guarded::Refused(outcome) => outcome,
    }
}

/// What the guarded part of a replay came to.
enum Guarded {
    /// Armed, audited and on the dispatch queue.
    Sent,
    /// This same replay (same delivery, same request) was sent before.
    AlreadyReplayed,
    /// Not sent, and why.
    Refused(Outcome),
}

/// Arm → audit → send for one planned delivery, each step safe to die after (a rerun
/// finds its own mark). `origin` goes into the audit record: where it came from.
async fn guarded_send(ctx: &Context<'_>, options: &Options, origin: &[(&str, String)], planned: &Planned) -> Guarded {
    let d = &planned.delivery;
    let now = now_ms();
    let replay_id = replay_id(d, options.force);
    let key = d.claim_key();
    // A shared claim carries the event record's log (e.g. the mapper parking it), so
    // the outcome mirrored back into the event's history keeps it.
    let history = if key == d.event_key() {
        Vec::new()
    } else {
        match ctx.ledger.history(&key_pk(d)).await {
            Ok(records) => records.into_iter().find(|r| r.key == d.event_key()).map(|r| r.log).unwrap_or_default(),
            Err(e) => return Guarded::Refused(Outcome::Failed(format!("ledger: {e}"))),
        }
    };
    let arm = ArmRequest {
        key,
        payload_hash: d.payload_hash(),
        replay_id: replay_id.clone(),
        force: options.force,
        now_ms: now,
        expires_at_s: now / 1000 + RECORD_TTL.as_secs() as i64,
        correlation_id: d.correlation_id.clone(),
        flow: d.flow.clone(),
        destination: d.destination.clone(),
        entity: d.entity.clone(),
        history,
    };
    let attempts_before = match ctx.ledger.arm(&arm).await {
        Ok(ArmOutcome::Armed { attempts_before }) => attempts_before,
        Ok(ArmOutcome::AlreadyReplayed) => return Guarded::AlreadyReplayed,
        Ok(ArmOutcome::AlreadyDelivered { summary }) => {
            let summary = summary.map(|s| format!(" ({s})")).unwrap_or_default();
            return Guarded::Refused(Outcome::Skipped(format!("already delivered{summary}; --force sends it again")));
        }
        Ok(ArmOutcome::Busy) => {
            return Guarded::Refused(Outcome::Skipped("being delivered or retried right now".into()))
        }
        Err(e) => return Guarded::Refused(Outcome::Failed(format!("ledger: {e}"))),
    };

    let mut details = BTreeMap::from([
        ("reason".to_owned(), options.reason.clone()),
        ("selection".to_owned(), options.selection.clone()),
        ("delivery_id".to_owned(), d.delivery_id.clone()),
        ("replay_id".to_owned(), replay_id.clone()),
        ("attempts_before".to_owned(), attempts_before.to_string()),
        ("before_sha256".to_owned(), sha256_hex(planned.before.to_string().as_bytes())),
        ("after_sha256".to_owned(), sha256_hex(planned.after.to_string().as_bytes())),
        ("idempotency_key".to_owned(), d.idempotency_key.clone()),
    ]);
    details.extend(origin.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    if let Some(p) = &options.patch {
        details.insert("patch".into(), p.audited());
        details.insert("patch_sha256".into(), p.sha256());
    }
    if options.force {
        details.insert("forced".into(), "true".into());
    }
    let record = audit::record(&key_pk(d), "replay", &replay_id, &ctx.actor, details);
    if let Err(e) = audit::write(ctx.ledger, &record).await {
        return Guarded::Refused(Outcome::Failed(format!("could not write the audit record: {e}")));
    }

    let mut message = match switchyard_common::queue::delivery_message(d) {
        Ok(message) => message.attribute("replay_id", &replay_id),
        Err(f) => return Guarded::Refused(Outcome::Failed(f.reason)),
    };
    let queue = match &d.ordering_key {
        Some(key) => {
            message.group_id = Some(sha256_hex(key.as_bytes()));
            // Not the mapper's: SQS would drop a replay within five minutes of it.
            message.dedup_id = Some(sha256_hex(format!("{}\nreplay {replay_id}", d.delivery_id).as_bytes()));
            &ctx.dispatch_fifo_url
        }
        None => &ctx.dispatch_url,
    };
    match SqsQueue::new(ctx.sqs.clone()).send_all(queue, &[message]).await {
        Ok(()) => Guarded::Sent,
        Err(e) => Guarded::Refused(Outcome::Failed(format!("could not enqueue: {e}"))),
    }
}

/// The partition of the delivery's event.
fn key_pk(d: &Delivery) -> String {
    RecordKey::event_pk(&d.source, &d.event_id)
}

async fn delete(ctx: &Context<'_>, url: &str, handle: &str) -> Result<(), String> {
    ctx.sqs
        .delete_message()
        .queue_url(url)
        .receipt_handle(handle)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("could not delete the DLQ message: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))
}

/// A progress bar on stderr when it is a terminal and the run is a bulk one.
struct Progress {
    total: u64,
    done: u64,
    replayed: u64,
    shown: bool,
}

impl Progress {
    async fn new(ctx: &Context<'_>, chosen: &[DlqName], options: &Options) -> Self {
        let shown = options.yes && options.ids.len() != 1 && std::io::stderr().is_terminal();
        let mut total = 0;
        if shown {
            for dlq in chosen {
                if let Some(url) = ctx.dlq_urls.get(dlq) {
                    total += dlq::depth(&ctx.sqs, url).await.unwrap_or(0);
                }
            }
            if let Some(max) = options.max {
                total = total.min(max as u64);
            }
        }
        Self { total, done: 0, replayed: 0, shown }
    }

    fn tick(&mut self, outcome: &Outcome) {
        self.done += 1;
        self.replayed += u64::from(*outcome == Outcome::Replayed);
        if self.shown {
            let total = self.total.max(self.done);
            let width = 30;
            let filled = (self.done * width / total.max(1)) as usize;
            eprint!(
                "\r[{}{}] {}/{} replayed {}",
                "=".repeat(filled),
                " ".repeat(width as usize - filled),
                self.done,
                total,
                self.replayed
            );
        }
    }

    fn finish(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

/// The report for people: each message, then the summary.
pub fn render_text(report: &Report, verbose: bool) -> String {
    let mut out = String::new();
    for i in &report.items {
        let id = i.delivery_id.as_deref().unwrap_or("-");
        let what = match &i.outcome {
            Outcome::WouldReplay => "would replay".to_owned(),
            Outcome::Replayed => "replayed".to_owned(),
            Outcome::Skipped(r) => format!("skipped: {r}"),
            Outcome::Failed(r) => format!("FAILED: {r}"),
        };
        out.push_str(&format!("{} {} {id}: {what}\n", i.from, i.message_id));
        if verbose || report.dry_run {
            if let Some(r) = &i.request {
                out.push_str(&format!(
                    "  {} {}  Idempotency-Key: {}\n  body: {}\n",
                    r["method"].as_str().unwrap_or_default(),
                    r["url"].as_str().unwrap_or_default(),
                    r["idempotency_key"].as_str().unwrap_or_default(),
                    r["body"]
                ));
            }
            if let Some(d) = i.diff.as_deref().filter(|d| !d.is_empty()) {
                for line in d.lines() {
                    out.push_str(&format!("  {line}\n"));
                }
            }
        }
    }
    let verb = if report.dry_run { "would replay" } else { "replayed" };
    out.push_str(&format!("{verb} {}", report.replayed()));
    let skipped = report.by_reason(false);
    let failed = report.by_reason(true);
    out.push_str(&format!(
        ", skipped {}, failed {}{}\n",
        skipped.iter().map(|(_, n)| n).sum::<usize>(),
        failed.iter().map(|(_, n)| n).sum::<usize>(),
        if report.interrupted { " (interrupted: rerun the same command to finish)" } else { "" }
    ));
    for (reason, n) in skipped {
        out.push_str(&format!("  skipped {n:>5}  {reason}\n"));
    }
    for (reason, n) in failed {
        out.push_str(&format!("  failed  {n:>5}  {reason}\n"));
    }
    if report.dry_run && report.replayed() > 0 {
        out.push_str("dry run: nothing was sent; add --yes (and --reason) to replay\n");
    }
    out
}

pub fn render_json(report: &Report) -> Value {
    let items: Vec<Value> = report
        .items
        .iter()
        .map(|i| {
            let (outcome, reason) = match &i.outcome {
                Outcome::WouldReplay => ("would_replay", None),
                Outcome::Replayed => ("replayed", None),
                Outcome::Skipped(r) => ("skipped", Some(r)),
                Outcome::Failed(r) => ("failed", Some(r)),
            };
            json!({
                "from": i.from,
                "message_id": i.message_id,
                "delivery_id": i.delivery_id,
                "outcome": outcome,
                "reason": reason,
                "request": i.request,
                "diff": i.diff,
            })
        })
        .collect();
    let counts = |failed| -> Value {
        report.by_reason(failed).into_iter().map(|(r, n)| json!({"reason": r, "count": n})).collect()
    };
    json!({
        "dry_run": report.dry_run,
        "interrupted": report.interrupted,
        "replayed": report.replayed(),
        "skipped": counts(false),
        "failed": counts(true),
        "messages": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        serde_json::from_value(json!({
            "delivery_id": "stripe:evt_1:crm:v1", "event_id": "evt_1", "source": "stripe",
            "event_type": "t", "correlation_id": "c", "flow": "crm", "flow_version": 1,
            "destination": "crm", "method": "POST", "path": "/x", "mode": "live",
            "idempotency_key": "k", "body": {"email": "a@example.com"}
        }))
        .unwrap()
    }

    #[test]
    fn a_patch_changes_the_key_and_the_same_patch_gives_the_same_key() {
        let p1 = Patch::jq(".email = \"b@example.com\"").unwrap();
        let p2 = Patch::jq(".email = \"c@example.com\"").unwrap();
        assert_ne!(patched_key("k", &p1.sha256()), "k");
        assert_eq!(patched_key("k", &p1.sha256()), patched_key("k", &p1.sha256()));
        assert_ne!(patched_key("k", &p1.sha256()), patched_key("k", &p2.sha256()));
        assert!(switchyard_common::envelope::is_header_text(&patched_key("k", &p1.sha256())));
    }

    #[test]
    fn the_replay_id_follows_what_is_sent_and_whether_it_is_forced() {
        let d = delivery();
        let mut patched = d.clone();
        patched.body = json!({"email": "b@example.com"});
        assert_eq!(replay_id(&d, false), replay_id(&d.clone(), false));
        assert_ne!(replay_id(&d, false), replay_id(&patched, false));
        assert_ne!(replay_id(&d, false), replay_id(&d, true));
    }

    #[test]
    fn a_patch_that_does_not_compile_says_so() {
        assert!(Patch::jq(".a = ").unwrap_err().contains("--patch does not compile"));
    }

    #[test]
    fn the_audit_keeps_the_patch_shape_not_its_values() {
        let p = Patch::jq(".data.object.receipt_email = \"buyer@example.com\"").unwrap();
        assert_eq!(p.audited(), ".data.object.receipt_email = \"…\"");
    }
}
