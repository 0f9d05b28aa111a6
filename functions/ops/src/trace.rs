//! `switchyard-ops trace`: one event's history, from the one Query the ledger layout
//! allows (every record of an event shares its partition key).
//!
//! Two parts: the timeline (every outcome in the order it happened: intake, the
//! mapper's decisions, each delivery attempt, operator actions) and where each step
//! stands now.

use serde_json::{json, Value};
use switchyard_common::archive::Locator;
use switchyard_common::ledger::{parse_log_entry, LedgerRecord, Status};
use switchyard_common::runtime::rfc3339;

/// What a record is, in words: `intake`, `mapper`, `delivery <flow> v<n>`, `replay`.
pub fn step(record: &LedgerRecord) -> String {
    let sk = record.key.sk.as_str();
    match sk {
        "INTAKE" => return "intake".to_owned(),
        "MAPPER" => return "mapper".to_owned(),
        _ => {}
    }
    if let Some(rest) = sk.strip_prefix("DELIVERY#") {
        let (flow, version) = rest.rsplit_once('#').unwrap_or((rest, ""));
        return format!("delivery {flow} {version}");
    }
    if let Some(rest) = sk.strip_prefix("AUDIT#") {
        // AUDIT#{action}#{id}
        return rest.split('#').next().unwrap_or("audit").to_owned();
    }
    sk.to_lowercase()
}

fn label(r: &LedgerRecord) -> String {
    step(r)
        + &r.destination.as_deref().filter(|_| r.status != Status::Audit).map(|d| format!(" → {d}")).unwrap_or_default()
}

/// Records in the order they began.
pub fn timeline(mut records: Vec<LedgerRecord>) -> Vec<LedgerRecord> {
    records.sort_by_key(|r| (r.created_at_ms, r.updated_at_ms));
    records
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Moment {
    pub at_ms: i64,
    pub step: String,
    pub status: String,
    pub class: Option<String>,
    pub text: String,
}

/// Every outcome of every record, in time order: a record with an attempt log gives
/// one moment per attempt; one without (intake, the mapper, an audit) gives one.
pub fn moments(records: &[LedgerRecord]) -> Vec<Moment> {
    let mut out = Vec::new();
    for r in records {
        let step = label(r);
        let entries: Vec<_> = r.log.iter().filter_map(|e| parse_log_entry(e)).collect();
        if entries.is_empty() || r.status == Status::InProgress {
            out.push(Moment {
                at_ms: if entries.is_empty() { r.created_at_ms } else { r.updated_at_ms },
                step: step.clone(),
                status: r.status.as_str().to_owned(),
                class: r.error_class.clone().filter(|_| r.status != Status::Completed),
                text: audit_text(r).unwrap_or_else(|| r.summary.clone().or(r.reason.clone()).unwrap_or_default()),
            });
        }
        for (at, status, class, text) in entries {
            out.push(Moment {
                at_ms: at,
                step: step.clone(),
                status: status.to_owned(),
                class: Some(class.to_owned()).filter(|c| !c.is_empty()),
                text: text.to_owned(),
            });
        }
    }
    out.sort_by_key(|m| m.at_ms);
    out
}

/// An audit record in words: who, why, what was selected and changed.
fn audit_text(r: &LedgerRecord) -> Option<String> {
    if r.status != Status::Audit {
        return None;
    }
    let d = &r.details;
    let mut parts = vec![format!("by {}", d.get("actor").map_or("?", String::as_str))];
    if let Some(reason) = d.get("reason") {
        parts.push(format!("reason {reason:?}"));
    }
    for key in ["delivery_id", "selection", "patch", "before_sha256", "after_sha256", "replay_id", "attempts_before"] {
        if let Some(v) = d.get(key) {
            parts.push(format!("{key} {v}"));
        }
    }
    Some(parts.join("; "))
}

/// Where a record stands now, with its last error and where it is parked.
fn standing(r: &LedgerRecord) -> String {
    let mut line = format!("{:<48} {:<10} attempts {}", label(r), r.status.as_str(), r.attempts);
    if r.status == Status::Parked {
        if let Some(dlq) = &r.dlq {
            line.push_str(&format!("  parked in the {dlq} DLQ"));
        }
    }
    if let Some(summary) = &r.summary {
        line.push_str(&format!("  {summary}"));
    }
    if let Some(reason) = &r.reason {
        let class = r.error_class.as_deref().unwrap_or("-");
        line.push_str(&format!("  last error ({class}): {reason}"));
    }
    if r.permission_failures > 0 {
        line.push_str(&format!("  permission failures {}", r.permission_failures));
    }
    if let Some(id) = &r.replay_id {
        line.push_str(&format!("  replay {id}"));
    }
    line.push_str(&format!("  (updated {})", rfc3339(r.updated_at_ms)));
    line
}

pub fn render_text(event: &str, records: &[LedgerRecord]) -> String {
    if records.is_empty() {
        return format!("{event}: no records (unknown event, or expired from the ledger)\n");
    }
    let correlation = records.iter().find_map(|r| r.correlation_id.clone()).unwrap_or_default();
    let mut out = format!("{event}  correlation {correlation}\n");
    for m in moments(records) {
        let class = m.class.as_deref().map(|c| format!("({c}) ")).unwrap_or_default();
        out.push_str(&format!("  {}  {:<48} {:<10} {class}{}\n", rfc3339(m.at_ms), m.step, m.status, m.text));
    }
    out.push_str("  now:\n");
    for r in records.iter().filter(|r| r.status != Status::Audit) {
        out.push_str(&format!("    {}\n", standing(r)));
    }
    out
}

/// Whether an event's envelope is in the stage's archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveState {
    /// In the object at `key` (with the other events of its batch and minute).
    Archived { key: String, object_bytes: u64 },
    /// No object under `prefix` holds it: its source does not archive, the mapper has
    /// not reached it yet, or the lifecycle expired it.
    Missing { prefix: String },
    /// The ledger has no intake record to find it from.
    NoIntakeRecord,
    /// The archive could not be asked (no bucket on this stage, or no permission).
    Unknown(String),
}

/// Where an event's envelope is looked for in the archive, from its intake record
/// (its acceptance time; see `switchyard_common::archive`).
pub fn archive_locator(pk: &str, records: &[LedgerRecord]) -> Option<Locator> {
    let (source, event_id) = pk.strip_prefix("EVT#")?.split_once('#')?;
    let intake = records.iter().find(|r| r.key == switchyard_common::ledger::RecordKey::intake(source, event_id))?;
    Some(Locator { source: source.to_owned(), event_id: event_id.to_owned(), accepted_at_ms: intake.created_at_ms })
}

pub fn render_archive_text(state: &ArchiveState) -> String {
    match state {
        ArchiveState::Archived { key, object_bytes } => format!(
            "  archive: payload archived (in {key}, {object_bytes} bytes with its batch); `replay --archived` can send it again\n"
        ),
        ArchiveState::Missing { prefix } => format!(
            "  archive: not archived (nothing under {prefix} holds it: source not archived, not mapped yet, or expired)\n"
        ),
        ArchiveState::NoIntakeRecord => "  archive: unknown (no intake record to find it from)\n".to_owned(),
        ArchiveState::Unknown(why) => format!("  archive: unknown ({why})\n"),
    }
}

pub fn archive_json(state: &ArchiveState) -> Value {
    match state {
        ArchiveState::Archived { key, object_bytes } => {
            json!({"archived": true, "key": key, "object_bytes": object_bytes})
        }
        ArchiveState::Missing { prefix } => json!({"archived": false, "looked_under": prefix}),
        ArchiveState::NoIntakeRecord => json!({"archived": null, "reason": "no intake record"}),
        ArchiveState::Unknown(why) => json!({"archived": null, "reason": why}),
    }
}

pub fn render_json(event: &str, records: &[LedgerRecord]) -> Value {
    let steps: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "step": step(r),
                "sk": r.key.sk,
                "status": r.status.as_str(),
                "attempts": r.attempts,
                "permission_failures": r.permission_failures,
                "flow": r.flow,
                "destination": r.destination,
                "summary": r.summary,
                "error_class": r.error_class,
                "reason": r.reason,
                "dlq": r.dlq.as_ref().filter(|_| r.status == Status::Parked),
                "replay_id": r.replay_id,
                "details": r.details,
                "correlation_id": r.correlation_id,
                "created_at": rfc3339(r.created_at_ms),
                "updated_at": rfc3339(r.updated_at_ms),
            })
        })
        .collect();
    let timeline: Vec<Value> = moments(records)
        .into_iter()
        .map(|m| json!({"at": rfc3339(m.at_ms), "step": m.step, "status": m.status, "class": m.class, "text": m.text}))
        .collect();
    json!({"event": event, "steps": steps, "timeline": timeline})
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_common::failure::FailureClass;
    use switchyard_common::ledger::{log_entry, RecordKey};

    fn record(sk: &str, status: Status, created: i64) -> LedgerRecord {
        let mut r = LedgerRecord::new(RecordKey { pk: "EVT#stripe#evt_1".into(), sk: sk.into() }, status, created, 0);
        r.attempts = 1;
        r.correlation_id = Some("corr-9".into());
        r.updated_at_ms = created + 5;
        r
    }

    #[test]
    fn the_timeline_puts_intake_before_the_deliveries_it_caused() {
        let records =
            vec![record("DELIVERY#crm#v1", Status::Completed, 2_000), record("INTAKE", Status::Completed, 1_000)];
        let steps: Vec<String> = timeline(records).iter().map(step).collect();
        assert_eq!(steps, vec!["intake", "delivery crm v1"]);
    }

    #[test]
    fn the_text_shows_status_attempts_the_last_error_and_the_dlq() {
        let mut parked = record("DELIVERY#crm#v1", Status::Parked, 2_000);
        parked.attempts = 5;
        parked.error_class = Some("terminal".into());
        parked.reason = Some("HTTP 400 from crm".into());
        parked.destination = Some("crm".into());
        parked.dlq = Some("dispatch".into());
        let text = render_text("stripe/evt_1", &[record("INTAKE", Status::Completed, 1_000), parked]);
        assert!(text.contains("correlation corr-9"), "{text}");
        assert!(text.contains("delivery crm v1 → crm"), "{text}");
        assert!(text.contains("PARKED") && text.contains("attempts 5"), "{text}");
        assert!(text.contains("parked in the dispatch DLQ"), "{text}");
        assert!(text.contains("last error (terminal): HTTP 400 from crm"), "{text}");
    }

    #[test]
    fn each_attempt_and_an_operators_replay_appear_in_time_order() {
        let mut d = record("DELIVERY#crm#v1", Status::Completed, 2_000);
        d.log = vec![
            log_entry(2_100, Status::Failed, Some(FailureClass::Transient), "HTTP 503 from crm"),
            log_entry(2_200, Status::Parked, Some(FailureClass::Terminal), "retry budget exhausted"),
            log_entry(9_000, Status::Failed, None, "armed for replay r1"),
            log_entry(9_500, Status::Completed, None, "HTTP 201"),
        ];
        let mut audit = record("AUDIT#replay#x", Status::Audit, 8_900);
        audit.details.insert("actor".into(), "arn:aws:iam::1:user/alice".into());
        audit.details.insert("reason".into(), "crm back up".into());
        let m = moments(&[d, audit]);
        let seen: Vec<(&str, &str)> = m.iter().map(|m| (m.step.as_str(), m.status.as_str())).collect();
        assert_eq!(
            seen,
            vec![
                ("delivery crm v1", "FAILED"),
                ("delivery crm v1", "PARKED"),
                ("replay", "AUDIT"),
                ("delivery crm v1", "FAILED"),
                ("delivery crm v1", "COMPLETED")
            ]
        );
        assert!(m[2].text.contains("by arn:aws:iam::1:user/alice") && m[2].text.contains("\"crm back up\""));
        assert_eq!(m[0].class.as_deref(), Some("transient"));
    }

    #[test]
    fn an_unknown_event_says_so() {
        assert!(render_text("stripe/evt_x", &[]).contains("no records"));
    }

    #[test]
    fn the_json_form_lists_every_step_and_the_timeline() {
        let v = render_json("stripe/evt_1", &[record("INTAKE", Status::Completed, 1_000)]);
        assert_eq!(v["steps"][0]["step"], "intake");
        assert_eq!(v["steps"][0]["status"], "COMPLETED");
        assert_eq!(v["timeline"][0]["step"], "intake");
    }
}
