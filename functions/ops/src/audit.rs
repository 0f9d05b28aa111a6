//! Operator actions leave a record in the event's own ledger history (`trace` shows
//! it): who (the caller's AWS identity, from STS), when, why and what.
//!
//! The record holds no payload: a replay's patch is kept with its string and number
//! literals masked (`.data.object.receipt_email = "…"`) next to the SHA-256 of the
//! patch text and of the payload before and after, so the exact patch can be checked
//! against the operator's command without the ledger holding personal data.

use std::collections::BTreeMap;

use switchyard_common::ledger::{IdempotencyStore, LedgerError, LedgerRecord, RecordKey, Status, RECORD_TTL};
use switchyard_common::runtime::now_ms;

/// The caller's identity (its ARN), as every audit record names it.
pub async fn caller(sdk: &aws_config::SdkConfig) -> Result<String, String> {
    let out = aws_sdk_sts::Client::new(sdk).get_caller_identity().send().await.map_err(|e| {
        format!(
            "cannot tell who you are (sts:GetCallerIdentity failed: {}); actions are audited, so nothing was done",
            aws_sdk_sts::error::DisplayErrorContext(e)
        )
    })?;
    Ok(out.arn().unwrap_or("unknown").to_owned())
}

/// An audit record under `event_pk`; `id` makes a rerun of the same action find it.
pub fn record(event_pk: &str, action: &str, id: &str, actor: &str, details: BTreeMap<String, String>) -> LedgerRecord {
    let now = now_ms();
    let mut r = LedgerRecord::new(
        RecordKey::audit(event_pk, action, id),
        Status::Audit,
        now,
        now / 1000 + RECORD_TTL.as_secs() as i64,
    );
    r.details = details;
    r.details.insert("actor".into(), actor.to_owned());
    r.details.insert("action".into(), action.to_owned());
    r
}

/// Writes it unless this very action was recorded already (a rerun keeps the first).
pub async fn write(ledger: &dyn IdempotencyStore, record: &LedgerRecord) -> Result<(), LedgerError> {
    ledger.put_new(record).await.map(|_| ())
}

/// A jq program with its string and number literals masked: the shape of a patch
/// without the values it writes.
pub fn mask_literals(program: &str) -> String {
    let mut out = String::with_capacity(program.len());
    let mut chars = program.chars().peekable();
    let mut prev_ident = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    match c {
                        _ if escaped => escaped = false,
                        '\\' => escaped = true,
                        '"' => break,
                        _ => {}
                    }
                }
                out.push_str("\"…\"");
                prev_ident = false;
            }
            c if c.is_ascii_digit() && !prev_ident => {
                while chars.peek().is_some_and(|c| c.is_ascii_alphanumeric() || *c == '.') {
                    chars.next();
                }
                out.push('…');
                prev_ident = false;
            }
            c => {
                prev_ident = c.is_alphanumeric() || c == '_' || c == '$';
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_keeps_its_shape_and_loses_its_values() {
        assert_eq!(
            mask_literals(r#".data.object.receipt_email = "buyer@example.com""#),
            r#".data.object.receipt_email = "…""#
        );
        assert_eq!(mask_literals(r#".a = "x\"y" | .n = 4242 | .v2 = 1.5"#), r#".a = "…" | .n = … | .v2 = …"#);
        assert!(!mask_literals(r#".card = "4242 4242 4242 4242""#).contains("4242"));
    }
}
