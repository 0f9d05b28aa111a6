//! `switchyard-ops trace`: one event's history, from the one Query the ledger layout
//! allows (every record of an event shares its partition key).

use serde_json::{json, Value};
use switchyard_common::ledger::LedgerRecord;
use switchyard_common::runtime::rfc3339;

/// What a record is, in words: `intake`, `delivery <flow> v<n>`.
pub fn step(record: &LedgerRecord) -> String {
    let sk = record.key.sk.as_str();
    if sk == "INTAKE" {
        return "intake".to_owned();
    }
    if let Some(rest) = sk.strip_prefix("DELIVERY#") {
        let (flow, version) = rest.rsplit_once('#').unwrap_or((rest, ""));
        return format!("delivery {flow} {version}");
    }
    sk.to_lowercase()
}

/// Records in the order things happened.
pub fn timeline(mut records: Vec<LedgerRecord>) -> Vec<LedgerRecord> {
    records.sort_by_key(|r| (r.created_at_ms, r.updated_at_ms));
    records
}

pub fn render_text(event: &str, records: &[LedgerRecord]) -> String {
    if records.is_empty() {
        return format!("{event}: no records (unknown event, or expired from the ledger)\n");
    }
    let correlation = records.iter().find_map(|r| r.correlation_id.clone()).unwrap_or_default();
    let mut out = format!("{event}  correlation {correlation}\n");
    for r in records {
        let mut line = format!(
            "  {}  {:<48} {:<10} attempts {}",
            rfc3339(r.created_at_ms),
            step(r) + &r.destination.as_deref().map(|d| format!(" → {d}")).unwrap_or_default(),
            r.status.as_str(),
            r.attempts
        );
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
        line.push_str(&format!("  (updated {})", rfc3339(r.updated_at_ms)));
        out.push_str(&line);
        out.push('\n');
    }
    out
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
                "correlation_id": r.correlation_id,
                "created_at": rfc3339(r.created_at_ms),
                "updated_at": rfc3339(r.updated_at_ms),
            })
        })
        .collect();
    json!({"event": event, "steps": steps})
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_common::ledger::{RecordKey, Status};

    fn record(sk: &str, status: Status, created: i64) -> LedgerRecord {
        LedgerRecord {
            key: RecordKey { pk: "EVT#stripe#evt_1".into(), sk: sk.into() },
            status,
            attempts: 1,
            permission_failures: 0,
            payload_hash: "h".into(),
            correlation_id: Some("corr-9".into()),
            flow: None,
            destination: None,
            summary: None,
            error_class: None,
            reason: None,
            created_at_ms: created,
            updated_at_ms: created + 5,
            in_progress_until_ms: None,
            expires_at_s: 0,
        }
    }

    #[test]
    fn the_timeline_puts_intake_before_the_deliveries_it_caused() {
        let records =
            vec![record("DELIVERY#crm#v1", Status::Completed, 2_000), record("INTAKE", Status::Completed, 1_000)];
        let steps: Vec<String> = timeline(records).iter().map(step).collect();
        assert_eq!(steps, vec!["intake", "delivery crm v1"]);
    }

    #[test]
    fn the_text_shows_status_attempts_and_the_last_error() {
        let mut parked = record("DELIVERY#crm#v1", Status::Parked, 2_000);
        parked.attempts = 5;
        parked.error_class = Some("terminal".into());
        parked.reason = Some("HTTP 400 from crm".into());
        parked.destination = Some("crm".into());
        let text = render_text("stripe/evt_1", &[record("INTAKE", Status::Completed, 1_000), parked]);
        assert!(text.contains("correlation corr-9"), "{text}");
        assert!(text.contains("delivery crm v1 → crm"), "{text}");
        assert!(text.contains("PARKED") && text.contains("attempts 5"), "{text}");
        assert!(text.contains("last error (terminal): HTTP 400 from crm"), "{text}");
    }

    #[test]
    fn an_unknown_event_says_so() {
        assert!(render_text("stripe/evt_x", &[]).contains("no records"));
    }

    #[test]
    fn the_json_form_lists_every_step() {
        let v = render_json("stripe/evt_1", &[record("INTAKE", Status::Completed, 1_000)]);
        assert_eq!(v["steps"][0]["step"], "intake");
        assert_eq!(v["steps"][0]["status"], "COMPLETED");
    }
}
