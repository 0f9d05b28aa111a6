//! `switchyard-ops dlq`: what is parked, read from the DLQs without disturbing them.
//!
//! A DLQ cannot be peeked at: a received message is invisible until its visibility
//! timeout passes. So a listing receives every message with a visibility long enough
//! for the whole scan (messages already received are not handed out again, which is
//! how the scan knows it has seen them all), then makes every one of them visible again
//! at once, also when the scan fails half-way. The DLQs have no redrive policy, so the
//! receive counts this adds move nothing. Copies of one parked delivery (a worker died
//! between the DLQ send and the delete) are shown once (`batch::parked_identity`).
//!
//! A FIFO DLQ hands out a group's next messages only once the earlier ones are
//! deleted: a listing shows at most the first ten of each message group and says how
//! many it could not see.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};
use serde_json::{json, Value};
use switchyard_common::batch::parked_identity;
use switchyard_common::envelope::{Delivery, Envelope};
use switchyard_common::ledger::{LedgerRecord, RecordKey};
use switchyard_common::runtime::rfc3339;

/// How long scanned messages stay invisible if the command dies before it makes
/// them visible again (a clean end, Ctrl-C included, resets them at once).
pub const SCAN_VISIBILITY: Duration = Duration::from_secs(300);

/// The DLQs of a stage, by the role in their name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum DlqName {
    /// `switchyard-{stage}-ingest-dlq`: envelopes the mapper parked.
    Ingest,
    /// `switchyard-{stage}-dispatch-dlq`: deliveries the dispatcher parked.
    Dispatch,
    /// `switchyard-{stage}-dispatch-dlq.fifo`: ordered deliveries.
    DispatchFifo,
}

impl DlqName {
    pub const ALL: [DlqName; 3] = [DlqName::Ingest, DlqName::Dispatch, DlqName::DispatchFifo];

    pub fn queue_role(self) -> &'static str {
        match self {
            DlqName::Ingest => "ingest-dlq",
            DlqName::Dispatch => "dispatch-dlq",
            DlqName::DispatchFifo => "dispatch-dlq.fifo",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DlqName::Ingest => "ingest",
            DlqName::Dispatch => "dispatch",
            DlqName::DispatchFifo => "dispatch-fifo",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("cannot read {queue}: {message}")]
    Sqs { queue: String, message: String },
    #[error("interrupted; every message received so far was made visible again")]
    Interrupted,
}

fn sqs_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    queue: &str,
) -> impl FnOnce(aws_sdk_sqs::error::SdkError<E, R>) -> DlqError + '_ {
    move |e| DlqError::Sqs { queue: queue.to_owned(), message: DisplayErrorContext(e).to_string() }
}

/// One parked message as the DLQ holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parked {
    pub dlq: DlqName,
    pub message_id: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    /// When it was parked (the DLQ's `SentTimestamp`).
    pub parked_at_ms: i64,
    /// Copies of the same parked delivery (1 when it was parked once).
    pub copies: u32,
}

impl Parked {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    pub fn identity(&self) -> String {
        parked_identity(|k| self.attribute(k), &self.body)
    }

    /// The partition key of the event this message belongs to, from its body.
    pub fn event_pk(&self) -> Option<String> {
        if let Ok(d) = Delivery::from_json(&self.body) {
            return Some(RecordKey::event_pk(&d.source, &d.event_id));
        }
        let e = Envelope::from_json(&self.body).ok()?;
        Some(RecordKey::event_pk(e.source_name(), &e.id))
    }
}

/// What a scan of one DLQ saw.
#[derive(Debug, Default)]
pub struct Scan {
    pub messages: Vec<Parked>,
    /// Messages the queue holds that the scan could not receive (behind the first ten
    /// of a FIFO group, or in flight elsewhere).
    pub unseen: u64,
}

/// Receives every message of `url`, then makes all of them visible again.
pub async fn scan(sqs: &aws_sdk_sqs::Client, dlq: DlqName, url: &str) -> Result<Scan, DlqError> {
    let mut handles = Vec::new();
    let scanned = tokio::select! {
        scanned = receive_all(sqs, dlq, url, &mut handles) => scanned,
        _ = tokio::signal::ctrl_c() => Err(DlqError::Interrupted),
    };
    // Whatever happened above, nothing stays invisible because of this command.
    let reset = make_visible(sqs, url, &handles).await;
    let mut scan = scanned?;
    reset?;
    let depth = depth(sqs, url).await?;
    scan.unseen = depth.saturating_sub(handles.len() as u64);
    Ok(scan)
}

async fn receive_all(
    sqs: &aws_sdk_sqs::Client,
    dlq: DlqName,
    url: &str,
    handles: &mut Vec<String>,
) -> Result<Scan, DlqError> {
    let mut scan = Scan::default();
    let mut seen = HashSet::new();
    let mut empty_rounds = 0;
    // A standard queue may answer empty while messages remain on other hosts: stop
    // after a few empty answers in a row.
    while empty_rounds < 3 {
        let batch = receive(sqs, dlq, url, SCAN_VISIBILITY).await?;
        if batch.is_empty() {
            empty_rounds += 1;
            continue;
        }
        empty_rounds = 0;
        for (parked, handle) in batch {
            handles.push(handle);
            if seen.insert(parked.message_id.clone()) {
                scan.messages.push(parked);
            }
        }
    }
    Ok(scan)
}

/// One receive of up to ten messages, each with its receipt handle; they stay
/// invisible for `visibility` unless made visible again (`make_visible`) or deleted.
pub async fn receive(
    sqs: &aws_sdk_sqs::Client,
    dlq: DlqName,
    url: &str,
    visibility: Duration,
) -> Result<Vec<(Parked, String)>, DlqError> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(visibility.as_secs() as i32)
        .wait_time_seconds(0)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
        .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
        .send()
        .await
        .map_err(sqs_error(url))?;
    Ok(out
        .messages()
        .iter()
        .map(|m| {
            let parked_at_ms = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let parked = Parked {
                dlq,
                message_id: m.message_id().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                attributes: string_attributes(m),
                parked_at_ms,
                copies: 1,
            };
            (parked, m.receipt_handle().unwrap_or_default().to_owned())
        })
        .collect())
}

/// A received message's string attributes (every attribute switchyard writes is one).
pub fn string_attributes(m: &aws_sdk_sqs::types::Message) -> BTreeMap<String, String> {
    m.message_attributes()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
        .collect()
}

/// Makes received messages visible again at once.
pub async fn make_visible(sqs: &aws_sdk_sqs::Client, url: &str, handles: &[String]) -> Result<(), DlqError> {
    for chunk in handles.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        sqs.change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(sqs_error(url))?;
    }
    Ok(())
}

/// Messages in a queue, visible or not (approximate, as SQS counts).
pub async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64, DlqError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(sqs_error(url))?;
    let attrs = out.attributes().cloned().unwrap_or_default();
    Ok([QueueAttributeName::ApproximateNumberOfMessages, QueueAttributeName::ApproximateNumberOfMessagesNotVisible]
        .iter()
        .filter_map(|k| attrs.get(k).and_then(|v| v.parse::<u64>().ok()))
        .sum())
}

/// A parked ledger record as a listing shows it (the parked index holds no message
/// id or body: `dlq show` and `replay` fetch those from the queue).
pub fn from_record(r: &LedgerRecord) -> Option<Parked> {
    let (source, event_id) = r.key.pk.strip_prefix("EVT#")?.split_once('#')?;
    let dlq = match r.dlq.as_deref() {
        Some("ingest") => DlqName::Ingest,
        Some("dispatch-fifo") => DlqName::DispatchFifo,
        _ => DlqName::Dispatch,
    };
    let (flow, version) = r.key.sk.strip_prefix("DELIVERY#")?.rsplit_once("#v")?;
    let version: u32 = version.parse().ok()?;
    let mut attributes = BTreeMap::new();
    attributes.insert("delivery_id".to_owned(), Delivery::id_for(source, event_id, flow, version));
    attributes.insert("event_id".to_owned(), event_id.to_owned());
    attributes.insert("source".to_owned(), source.to_owned());
    attributes.insert("flow".to_owned(), flow.to_owned());
    attributes.insert("flow_version".to_owned(), version.to_string());
    attributes.insert("attempts".to_owned(), r.attempts.to_string());
    let optional = [
        ("destination", &r.destination),
        ("error_class", &r.error_class),
        ("reason", &r.reason),
        ("correlation_id", &r.correlation_id),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            attributes.insert(name.to_owned(), v.clone());
        }
    }
    Some(Parked {
        dlq,
        message_id: String::new(),
        body: String::new(),
        attributes,
        parked_at_ms: r.updated_at_ms,
        copies: 1,
    })
}

/// Merges copies of one parked delivery into its first copy (oldest first).
pub fn dedupe(mut messages: Vec<Parked>) -> Vec<Parked> {
    messages.sort_by_key(|m| m.parked_at_ms);
    let mut out: Vec<Parked> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for m in messages {
        match index.get(&(m.dlq, m.identity())) {
            Some(&i) => {
                let first: &mut Parked = &mut out[i];
                first.copies += 1;
            }
            None => {
                index.insert((m.dlq, m.identity()), out.len());
                out.push(m);
            }
        }
    }
    out
}

/// The selection `dlq list` and `replay` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filter {
    /// Only messages of this flow.
    #[arg(long)]
    pub flow: Option<String>,
    /// Only deliveries to this destination.
    #[arg(long)]
    pub destination: Option<String>,
    /// Only this error class (terminal, transient, auth).
    #[arg(long = "class")]
    pub error_class: Option<String>,
    /// Only reasons containing this text (case-insensitive).
    #[arg(long)]
    pub reason: Option<String>,
    /// Parked at or after: RFC 3339 (2026-12-01T10:00:00Z) or an age (30m, 2h, 7d).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Parked before: RFC 3339 or an age.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
}

impl Filter {
    pub fn matches(&self, m: &Parked) -> bool {
        let same = |want: &Option<String>, name: &str| want.as_deref().is_none_or(|w| m.attribute(name) == Some(w));
        let reason = self
            .reason
            .as_deref()
            .is_none_or(|text| m.attribute("reason").unwrap_or_default().to_lowercase().contains(&text.to_lowercase()));
        same(&self.flow, "flow")
            && same(&self.destination, "destination")
            && same(&self.error_class, "error_class")
            && reason
            && self.since.is_none_or(|t| m.parked_at_ms >= t)
            && self.until.is_none_or(|t| m.parked_at_ms < t)
    }
}

/// Epoch milliseconds from RFC 3339 or an age before now (`90s`, `30m`, `2h`, `7d`).
pub fn parse_time(text: &str) -> Result<i64, String> {
    parse_time_at(text, switchyard_common::runtime::now_ms())
}

fn parse_time_at(text: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    let split = text.len().saturating_sub(1);
    let (number, unit) = text.split_at(split);
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?} is neither RFC 3339 nor an age like 30m, 2h, 7d")),
    };
    let n: i64 = number.parse().map_err(|_| format!("{text:?}: {number:?} is not a whole number"))?;
    Ok(now_ms - n.saturating_mul(unit_ms))
}

/// Counts by reason, most frequent first (ties by reason).
pub fn counts_by_reason(messages: &[Parked]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in messages {
        *counts.entry(m.attribute("reason").unwrap_or("(no reason)").to_owned()).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

fn summary_json(m: &Parked) -> Value {
    json!({
        "dlq": m.dlq.as_str(),
        "message_id": m.message_id,
        "parked_at": rfc3339(m.parked_at_ms),
        "copies": m.copies,
        "stage": m.attribute("stage"),
        "event_id": m.attribute("event_id"),
        "delivery_id": m.attribute("delivery_id"),
        "correlation_id": m.attribute("correlation_id"),
        "flow": m.attribute("flow"),
        "destination": m.attribute("destination"),
        "error_class": m.attribute("error_class"),
        "attempts": m.attribute("attempts").and_then(|a| a.parse::<u32>().ok()),
        "reason": m.attribute("reason"),
    })
}

pub fn render_list_json(messages: &[Parked], unseen: u64) -> Value {
    let counts: Vec<Value> =
        counts_by_reason(messages).into_iter().map(|(reason, n)| json!({"reason": reason, "count": n})).collect();
    json!({
        "total": messages.len(),
        "unseen": unseen,
        "counts_by_reason": counts,
        "messages": messages.iter().map(summary_json).collect::<Vec<_>>(),
    })
}

pub fn render_list_text(messages: &[Parked], unseen: u64) -> String {
    let mut out = format!(
        "{:<14} {:<24} {:<36} {:<32} {:<12} {:<9} {:>3}  {}\n",
        "DLQ", "PARKED AT", "MESSAGE ID (OR DELIVERY ID)", "FLOW", "DESTINATION", "CLASS", "ATT", "REASON"
    );
    for m in messages {
        let copies = if m.copies > 1 { format!(" (×{} copies)", m.copies) } else { String::new() };
        out.push_str(&format!(
            "{:<14} {:<24} {:<36} {:<32} {:<12} {:<9} {:>3}  {}{copies}\n",
            m.dlq.as_str(),
            rfc3339(m.parked_at_ms),
            if m.message_id.is_empty() { m.attribute("delivery_id").unwrap_or("-") } else { &m.message_id },
            m.attribute("flow").filter(|f| !f.is_empty()).unwrap_or("-"),
            m.attribute("destination").filter(|d| !d.is_empty()).unwrap_or("-"),
            m.attribute("error_class").unwrap_or("-"),
            m.attribute("attempts").unwrap_or("-"),
            m.attribute("reason").unwrap_or("(no reason)"),
        ));
    }
    out.push_str(&format!("\n{} parked", messages.len()));
    if unseen > 0 {
        out.push_str(&format!(
            ", {unseen} more not visible to this listing (behind a FIFO group's first ten, or in flight)"
        ));
    }
    out.push_str("\nby reason:\n");
    for (reason, n) in counts_by_reason(messages) {
        out.push_str(&format!("  {n:>6}  {reason}\n"));
    }
    out
}

/// `dlq show`: the attributes and the body, redacted by the logs' redactor (secrets,
/// credentials, e-mail addresses, phone and card numbers, a flow's sensitive fields).
pub fn render_show(m: &Parked) -> Value {
    render_body(m, true)
}

/// `dlq show --reveal`: the body in clear (the caller writes the audit record first).
pub fn render_revealed(m: &Parked) -> Value {
    render_body(m, false)
}

fn render_body(m: &Parked, redacted: bool) -> Value {
    let text = serde_json::from_str::<Value>(&m.body).map(|b| b.to_string()).unwrap_or_else(|_| m.body.clone());
    let shown = if redacted { switchyard_common::redact::redact(&text) } else { text.into() };
    let mut v = summary_json(m);
    v["attributes"] = json!(m.attributes);
    v["body"] = serde_json::from_str(&shown).unwrap_or(Value::String(shown.into_owned()));
    v["redacted"] = json!(redacted);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(id: &str, delivery: &str, at: i64, reason: &str) -> Parked {
        let attributes = [
            ("stage", "dispatcher"),
            ("delivery_id", delivery),
            ("flow", "f"),
            ("destination", "crm"),
            ("error_class", "terminal"),
            ("reason", reason),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Parked {
            dlq: DlqName::Dispatch,
            message_id: id.into(),
            body: format!("{{\"id\":\"{id}\"}}"),
            attributes,
            parked_at_ms: at,
            copies: 1,
        }
    }

    #[test]
    fn two_copies_of_one_delivery_are_listed_once_with_their_count() {
        let list = dedupe(vec![
            parked("m2", "d1", 20, "HTTP 400"),
            parked("m1", "d1", 10, "HTTP 400"),
            parked("m3", "d2", 30, "HTTP 400"),
        ]);
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].message_id.as_str(), list[0].copies), ("m1", 2));
        assert_eq!(list[1].copies, 1);
    }

    #[test]
    fn filters_combine_and_reason_text_ignores_case() {
        let m = parked("m1", "d1", 1_000, "HTTP 400 from crm");
        let f = |reason: &str, flow: &str| Filter {
            reason: Some(reason.into()),
            flow: Some(flow.into()),
            ..Filter::default()
        };
        assert!(f("http 400", "f").matches(&m));
        assert!(!f("http 500", "f").matches(&m));
        assert!(!f("http 400", "other").matches(&m));
        assert!(Filter { since: Some(1_000), until: Some(1_001), ..Filter::default() }.matches(&m));
        assert!(!Filter { since: Some(1_001), ..Filter::default() }.matches(&m));
    }

    #[test]
    fn times_are_rfc3339_or_an_age_and_anything_else_says_what_it_wants() {
        assert_eq!(parse_time_at("2h", 10_000_000), Ok(10_000_000 - 7_200_000));
        assert_eq!(parse_time_at("1970-01-01T00:00:01Z", 0), Ok(1_000));
        assert!(parse_time_at("yesterday", 0).unwrap_err().contains("RFC 3339"));
        assert!(parse_time_at("", 0).is_err());
    }

    #[test]
    fn counts_by_reason_put_the_most_frequent_first() {
        let list = vec![parked("a", "1", 0, "x"), parked("b", "2", 0, "y"), parked("c", "3", 0, "y")];
        assert_eq!(counts_by_reason(&list), vec![("y".to_owned(), 2), ("x".to_owned(), 1)]);
        let text = render_list_text(&list, 4);
        assert!(text.contains("3 parked, 4 more not visible"), "{text}");
    }

    #[test]
    fn show_redacts_personal_data_in_the_body_and_keeps_the_rest() {
        let mut m = parked("m1", "d1", 0, "HTTP 400");
        m.body = r#"{"email":"buyer@example.com","amount":5}"#.into();
        let shown = render_show(&m);
        assert!(!shown.to_string().contains("buyer@example.com"), "{shown}");
        assert_eq!(shown["body"]["amount"], 5);
    }
}
