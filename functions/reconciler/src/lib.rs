//! The reconciler: what the ledger says a flow delivered, read back from the
//! destination. For each flow with `reconcile = { … }` it takes the deliveries of a
//! window — the archived envelopes of the flow's source accepted in it
//! (`events/{source}/{day}/`), each with a `COMPLETED` delivery record for the flow's
//! live version in the ledger — re-maps each envelope with that version (mappings are
//! deterministic: the body it sent), reads the record back with the destination's own
//! credentials and rate limit, and reports:
//!
//! - **equal**: present, and `compare` projects both sides alike;
//! - **missing**: the destination answers 404/410;
//! - **different**: present, with the fields that differ;
//! - **unreadable**: any other answer, or a delivery that cannot be re-mapped;
//! - **unknown**: with `list`, what the destination holds that no delivery explains.
//!
//! The report goes to the logs (counts and event ids only), to one metric per
//! outcome (`ReconcileMissing` alarmed), and to the archive bucket at
//! `reconcile/{flow}/v{version}/{time}.json`, where `switchyard-ops reconcile report`
//! reads it and `--repair` re-sends the missing ones through the guarded replay.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_common::archive::{self, Archive};
use switchyard_common::config::{Config, Flow, Reconcile};
use switchyard_common::json_fields;
use switchyard_common::ledger::{IdempotencyStore, RecordKey, Status};
use switchyard_common::metrics;
use switchyard_common::redact;
use switchyard_common::runtime::{now_ms, rfc3339};
use tracing::{info, warn};

/// Where reports are kept in the archive bucket.
pub const REPORTS: &str = "reconcile/";

/// The prefix of one flow version's reports.
pub fn report_prefix(flow: &str, version: u32) -> String {
    format!("{REPORTS}{flow}/v{version}/")
}

pub struct Deps {
    pub config: Arc<Config>,
    pub ledger: Arc<dyn IdempotencyStore>,
    pub archive: Arc<dyn Archive>,
    /// The destinations' credentials, HTTP client and shared rate limits.
    pub reads: switchyard_dispatcher::Deps,
}

/// One delivery that is not equal at the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub source: String,
    pub event_id: String,
    /// `different`: the fields that differ; `unreadable`: why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub flow: String,
    pub version: u32,
    pub destination: String,
    pub since_ms: i64,
    pub until_ms: i64,
    pub ran_at_ms: i64,
    /// Deliveries read back.
    pub checked: u64,
    pub equal: u64,
    pub missing: Vec<Finding>,
    pub different: Vec<Finding>,
    pub unreadable: Vec<Finding>,
    /// Ids the destination lists that no delivery of the window explains (redacted
    /// like a log line: they are often emails).
    pub unknown: Vec<String>,
    /// `list` was read (else `unknown` means nothing).
    pub listed: bool,
}

impl Report {
    pub fn key(&self) -> String {
        format!("{}{}.json", report_prefix(&self.flow, self.version), rfc3339(self.ran_at_ms))
    }
}

/// The scheduler's invocation: every live flow that declares `reconcile`, over its
/// window up to now.
pub async fn handle(deps: &Deps) -> Vec<Result<Report, String>> {
    let now = now_ms();
    let mut out = Vec::new();
    for flow in
        deps.config.flows.iter().filter(|f| f.reconcile.is_some() && f.mode == switchyard_common::envelope::Mode::Live)
    {
        let window = flow.reconcile.as_ref().map_or(86_400, |r| r.window_secs) as i64 * 1000;
        out.push(run(deps, flow, now - window, now).await);
    }
    out
}

/// Reconciles one flow over `since_ms..=until_ms`, stores and announces the report.
pub async fn run(deps: &Deps, flow: &Flow, since_ms: i64, until_ms: i64) -> Result<Report, String> {
    let span = tracing::info_span!("reconcile", flow = %flow.name, destination = %flow.destination);
    let _entered = span.enter();
    let report = reconcile(deps, flow, since_ms, until_ms).await?;
    let body = serde_json::to_vec(&report).map_err(|e| e.to_string())?;
    deps.archive.put(&report.key(), &body).await.map_err(|e| e.to_string())?;
    for f in &report.missing {
        warn!(event_id = %f.event_id, "reconcile: delivered, missing at the destination");
    }
    for f in &report.different {
        warn!(event_id = %f.event_id, fields = %f.fields.join(","), "reconcile: delivered, different at the destination");
    }
    info!(
        checked = report.checked,
        equal = report.equal,
        missing = report.missing.len(),
        different = report.different.len(),
        unreadable = report.unreadable.len(),
        unknown = report.unknown.len(),
        report = %report.key(),
        "reconciled"
    );
    let dims = [("Flow", flow.name.as_str())];
    metrics::count("ReconcileEqual", report.equal, &dims);
    metrics::count_with_total(metrics::names::RECONCILE_MISSING, report.missing.len() as u64, &dims);
    metrics::count("ReconcileDifferent", report.different.len() as u64, &dims);
    metrics::count("ReconcileUnreadable", report.unreadable.len() as u64, &dims);
    metrics::count("ReconcileUnknown", report.unknown.len() as u64, &dims);
    Ok(report)
}

/// Whether the ledger says this flow version delivered the event.
async fn delivered(ledger: &dyn IdempotencyStore, source: &str, event_id: &str, flow: &Flow) -> Result<bool, String> {
    let key = RecordKey::delivery(source, event_id, &flow.name, flow.version);
    let history = ledger.history(&key.pk).await.map_err(|e| e.to_string())?;
    Ok(history.iter().any(|r| r.key == key && r.status == Status::Completed))
}

/// Waits for the destination's shared rate limit (the dispatchers' token bucket).
async fn take_token(deps: &Deps, destination: &switchyard_common::config::Destination) -> Result<(), String> {
    loop {
        match deps.reads.gate.take_token(destination, now_ms()).await {
            Ok(None) => return Ok(()),
            Ok(Some((until_ms, _))) => {
                tokio::time::sleep(Duration::from_millis((until_ms - now_ms()).clamp(1, 60_000) as u64)).await
            }
            Err(e) => return Err(format!("destination gate unavailable: {e}")),
        }
    }
}

async fn reconcile(deps: &Deps, flow: &Flow, since_ms: i64, until_ms: i64) -> Result<Report, String> {
    let spec: &Reconcile =
        flow.reconcile.as_ref().ok_or_else(|| format!("flow {} declares no reconcile", flow.name))?;
    let destination = deps
        .config
        .destination(&flow.destination)
        .ok_or_else(|| format!("unknown destination {}", flow.destination))?;
    let mut report = Report {
        flow: flow.name.clone(),
        version: flow.version,
        destination: destination.name.clone(),
        since_ms,
        until_ms,
        ran_at_ms: now_ms(),
        ..Report::default()
    };
    let mut ours: BTreeSet<String> = BTreeSet::new();
    let mut reader = archive::EnvelopeReader::default();
    for prefix in archive::day_prefixes(&flow.source, since_ms, until_ms) {
        for object in deps.archive.list(&prefix).await.map_err(|e| e.to_string())? {
            let Some(bytes) = deps.archive.get(&object.key).await.map_err(|e| e.to_string())? else { continue };
            // An object that cannot be read is skipped; an event in two objects is read once.
            let Ok(envelopes) = reader.read(&object, &bytes) else { continue };
            for envelope in envelopes {
                let accepted = envelope.accepted_at_ms().unwrap_or(object.written_at_ms);
                if accepted < since_ms || accepted > until_ms || !flow.accepts_type(&envelope.event_type) {
                    continue;
                }
                let source = envelope.source_name().to_owned();
                if !delivered(deps.ledger.as_ref(), &source, &envelope.id, flow).await? {
                    continue;
                }
                report.checked += 1;
                let finding = |fields: Vec<String>, reason: Option<String>| Finding {
                    source: source.clone(),
                    event_id: envelope.id.clone(),
                    fields,
                    reason,
                };
                let sent = match switchyard_mapper::map_flow(&deps.config, flow, &envelope) {
                    Ok(Some(d)) => d.body,
                    Ok(None) => {
                        report.unreadable.push(finding(vec![], Some("the flow's filter now says no".into())));
                        continue;
                    }
                    Err(f) => {
                        report.unreadable.push(finding(vec![], Some(format!("cannot be re-mapped: {}", f.reason))));
                        continue;
                    }
                };
                let id = match spec.id.run_key(&sent) {
                    Ok(id) => id,
                    Err(e) => {
                        report.unreadable.push(finding(vec![], Some(format!("reconcile.id: {}", e.reason()))));
                        continue;
                    }
                };
                ours.insert(id.clone());
                take_token(deps, destination).await?;
                match switchyard_dispatcher::read(&deps.reads, destination, spec.method.as_str(), &spec.path_for(&id))
                    .await
                {
                    Ok(r) if r.status == 404 || r.status == 410 => report.missing.push(finding(vec![], None)),
                    Ok(r) if (200..300).contains(&r.status) => {
                        let project = |v: &Value| spec.compare.run_one(v).map_err(|e| e.reason());
                        match (project(&sent), project(r.body.as_ref().unwrap_or(&Value::Null))) {
                            (Ok(a), Ok(b)) => {
                                let fields = json_fields::changed(&a, &b);
                                if fields.is_empty() {
                                    report.equal += 1;
                                } else {
                                    report.different.push(finding(fields, None));
                                }
                            }
                            (Err(e), _) | (_, Err(e)) => {
                                report.unreadable.push(finding(vec![], Some(format!("reconcile.compare: {e}"))))
                            }
                        }
                    }
                    Ok(r) => {
                        report.unreadable.push(finding(vec![], Some(format!("HTTP {} reading it back", r.status))))
                    }
                    Err(f) => report.unreadable.push(finding(vec![], Some(f.reason))),
                }
            }
        }
    }
    if let Some(list) = &spec.list {
        take_token(deps, destination).await?;
        let r = switchyard_dispatcher::read(&deps.reads, destination, "GET", &list.path).await.map_err(|f| f.reason)?;
        if !(200..300).contains(&r.status) {
            return Err(format!("HTTP {} listing {}", r.status, list.path));
        }
        let listing = r.body.ok_or_else(|| format!("the listing at {} is not JSON", list.path))?;
        let records = match list.records.run_one(&listing).map_err(|e| e.reason())? {
            Value::Array(records) => records,
            _ => return Err("reconcile.list.records did not yield a list".into()),
        };
        report.listed = true;
        for record in &records {
            if let Ok(id) = list.id.run_key(record) {
                if !ours.contains(&id) {
                    report.unknown.push(redact::redact(&id).into_owned());
                }
            }
        }
    }
    Ok(report)
}
