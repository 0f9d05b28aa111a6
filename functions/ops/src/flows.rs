//! `flows diff` and `flows backtest`: two versions of one flow compared event by
//! event — what the live version sent against what a dark one recorded it would
//! send (`diff`), or what two versions make of archived envelopes, rendered here
//! without sending anything (`backtest`).
//!
//! Each event comes out identical, different (grouped by the set of fields that
//! differ, one redacted unified diff per group), or present on one side only with
//! the reason the other side has nothing (filtered, parked, a mapping error, not
//! done yet). Requests are compared as `switchyard_common::recorded::Request`s, with
//! one normalisation: an `Idempotency-Key` that is its version's default key (which
//! names the version, so always differs) compares as "the default key".

use std::collections::BTreeMap;

use serde_json::{json, Value};
use switchyard_common::archive::{self, Archive};
use switchyard_common::config::{Config, Flow};
use switchyard_common::envelope::{Delivery, Envelope};
use switchyard_common::json_fields;
use switchyard_common::ledger::{IdempotencyStore, RecordKey, Status};
use switchyard_common::recorded::{request_day_prefix, Recorded, Request};

use crate::diff;
use crate::replay::pretty_redacted;

/// What one version did with one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Side {
    Request(Box<Request>),
    /// No request, and why.
    Absent(String),
}

/// One event as both versions saw it.
#[derive(Debug, Clone)]
pub struct Pair {
    pub event_id: String,
    pub source: String,
    pub from: Side,
    pub to: Side,
}

/// Examples kept per group.
const EXAMPLES: usize = 3;

/// Events whose requests differ in the same set of fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Dotted paths (`body.status`, `headers.x-api-key`, `url`).
    pub fields: Vec<String>,
    pub count: usize,
    pub examples: Vec<String>,
    /// The first example's requests, redacted, as a unified diff.
    pub diff: String,
}

/// Events that have a request on one side only, grouped by why the other has none.
#[derive(Debug, Clone, PartialEq)]
pub struct OneSided {
    pub reason: String,
    pub count: usize,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub flow: String,
    pub from: u32,
    pub to: u32,
    /// `diff` or `backtest`.
    pub kind: &'static str,
    pub events: usize,
    pub identical: usize,
    pub different: Vec<Change>,
    /// A request from `from` only.
    pub only_from: Vec<OneSided>,
    /// A request from `to` only.
    pub only_to: Vec<OneSided>,
    /// Neither made a request (both filtered, both failed): by the two reasons.
    pub neither: Vec<OneSided>,
}

impl Comparison {
    pub fn different_count(&self) -> usize {
        self.different.iter().map(|c| c.count).sum()
    }

    pub fn only_count(groups: &[OneSided]) -> usize {
        groups.iter().map(|g| g.count).sum()
    }
}

/// A request as it is compared: JSON, the default idempotency key named as such.
fn comparable(r: &Request, flow: &str, version: u32, source: &str, event_id: &str) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    let default = Delivery::default_key(source, event_id, flow, version);
    if let Some(key) = v.pointer_mut("/headers/idempotency-key") {
        if key.as_str() == Some(default.as_str()) {
            *key = Value::String("(the version's default key)".to_owned());
        }
    }
    v
}

fn push_one_sided(groups: &mut BTreeMap<String, OneSided>, reason: &str, event_id: &str) {
    let g = groups.entry(reason.to_owned()).or_insert_with(|| OneSided {
        reason: reason.to_owned(),
        count: 0,
        examples: Vec::new(),
    });
    g.count += 1;
    if g.examples.len() < EXAMPLES {
        g.examples.push(event_id.to_owned());
    }
}

fn by_count<T>(groups: impl IntoIterator<Item = T>, count: impl Fn(&T) -> usize) -> Vec<T> {
    let mut v: Vec<T> = groups.into_iter().collect();
    v.sort_by_key(|g| std::cmp::Reverse(count(g)));
    v
}

/// Compares every pair (pure: what both commands print).
pub fn compare(flow: &str, from: u32, to: u32, kind: &'static str, pairs: &[Pair]) -> Comparison {
    let mut identical = 0;
    let mut changes: BTreeMap<Vec<String>, Change> = BTreeMap::new();
    let (mut only_from, mut only_to, mut neither) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for p in pairs {
        match (&p.from, &p.to) {
            (Side::Request(a), Side::Request(b)) => {
                let a = comparable(a, flow, from, &p.source, &p.event_id);
                let b = comparable(b, flow, to, &p.source, &p.event_id);
                let fields = json_fields::changed(&a, &b);
                if fields.is_empty() {
                    identical += 1;
                    continue;
                }
                let change = changes.entry(fields.clone()).or_insert_with(|| {
                    let unified = diff::unified(&pretty_redacted(&a), &pretty_redacted(&b));
                    let unified = unified.replacen("--- before\n+++ after\n", &format!("--- v{from}\n+++ v{to}\n"), 1);
                    Change { fields, count: 0, examples: Vec::new(), diff: unified }
                });
                change.count += 1;
                if change.examples.len() < EXAMPLES {
                    change.examples.push(p.event_id.clone());
                }
            }
            (Side::Request(_), Side::Absent(why)) => push_one_sided(&mut only_from, why, &p.event_id),
            (Side::Absent(why), Side::Request(_)) => push_one_sided(&mut only_to, why, &p.event_id),
            (Side::Absent(x), Side::Absent(y)) => {
                push_one_sided(&mut neither, &format!("v{from}: {x}; v{to}: {y}"), &p.event_id)
            }
        }
    }
    Comparison {
        flow: flow.to_owned(),
        from,
        to,
        kind,
        events: pairs.len(),
        identical,
        different: by_count(changes.into_values(), |c| c.count),
        only_from: by_count(only_from.into_values(), |g| g.count),
        only_to: by_count(only_to.into_values(), |g| g.count),
        neither: by_count(neither.into_values(), |g| g.count),
    }
}

/// The summary first, then each distinct change with its diff, then the one-sided.
pub fn render_text(c: &Comparison) -> String {
    let (from, to) = (c.from, c.to);
    let mut out = format!(
        "{} {} v{from} against v{to}: {} events\n  identical: {}\n  different: {}\n  only v{from} sent: {}\n  only v{to} sent: {}\n  neither sent: {}\n",
        c.kind,
        c.flow,
        c.events,
        c.identical,
        c.different_count(),
        Comparison::only_count(&c.only_from),
        Comparison::only_count(&c.only_to),
        Comparison::only_count(&c.neither),
    );
    for change in &c.different {
        out.push_str(&format!(
            "\n{} events differ in {} (e.g. {}):\n{}",
            change.count,
            change.fields.join(", "),
            change.examples.join(", "),
            change.diff
        ));
    }
    for (title, groups) in [
        (format!("only v{from} sent; v{to}"), &c.only_from),
        (format!("only v{to} sent; v{from}"), &c.only_to),
        ("neither sent".to_owned(), &c.neither),
    ] {
        for g in groups {
            out.push_str(&format!("\n{title}: {} — {} (e.g. {})\n", g.reason, g.count, g.examples.join(", ")));
        }
    }
    out
}

pub fn to_json(c: &Comparison) -> Value {
    let sided = |groups: &[OneSided]| -> Value {
        groups.iter().map(|g| json!({"reason": g.reason, "count": g.count, "examples": g.examples})).collect()
    };
    json!({
        "kind": c.kind,
        "flow": c.flow,
        "from": c.from,
        "to": c.to,
        "events": c.events,
        "identical": c.identical,
        "different": c.different_count(),
        "only_from": Comparison::only_count(&c.only_from),
        "only_to": Comparison::only_count(&c.only_to),
        "neither": Comparison::only_count(&c.neither),
        "changes": c.different.iter().map(|d| json!({
            "fields": d.fields, "count": d.count, "examples": d.examples, "diff": d.diff,
        })).collect::<Vec<_>>(),
        "only_from_reasons": sided(&c.only_from),
        "only_to_reasons": sided(&c.only_to),
        "neither_reasons": sided(&c.neither),
    })
}

/// Why a version has no recorded request for an event, from the ledger.
async fn why_absent(ledger: &dyn IdempotencyStore, source: &str, event_id: &str, flow: &str, version: u32) -> String {
    let key = RecordKey::delivery(source, event_id, flow, version);
    let history = match ledger.history(&key.pk).await {
        Ok(h) => h,
        Err(e) => return format!("unknown (ledger unavailable: {e})"),
    };
    let Some(r) = history.into_iter().find(|r| r.key == key) else {
        return "no delivery record (the version did not take the event)".to_owned();
    };
    match r.status {
        Status::Filtered => "filtered out by its filter".to_owned(),
        Status::Parked => format!("parked: {}", r.reason.unwrap_or_default()),
        Status::Stale => "skipped as stale".to_owned(),
        Status::Completed => "delivered, but its request was not recorded".to_owned(),
        other => format!("not done yet ({})", other.as_str()),
    }
}

/// `flows diff`: the requests both versions recorded on the days of `since_ms..until_ms`
/// (kept by the dispatcher, see `switchyard_common::recorded`), paired by event.
pub async fn diff_recorded(
    archive: &dyn Archive,
    ledger: &dyn IdempotencyStore,
    flow: &str,
    (from, to): (u32, u32),
    (since_ms, until_ms): (i64, i64),
) -> Result<Comparison, String> {
    // Per event (its key's file name): each version's recorded request.
    let mut events: BTreeMap<String, [Option<Recorded>; 2]> = BTreeMap::new();
    for (side, version) in [(0, from), (1, to)] {
        for day in archive::days_between(since_ms, until_ms) {
            let prefix = request_day_prefix(flow, version, day);
            for object in archive.list(&prefix).await.map_err(|e| e.to_string())? {
                let Some(bytes) = archive.get(&object.key).await.map_err(|e| e.to_string())? else { continue };
                let recorded: Recorded = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{} is not a recorded request: {e}", object.key))?;
                if recorded.recorded_at_ms < since_ms || recorded.recorded_at_ms > until_ms {
                    continue;
                }
                let name = object.key.rsplit('/').next().unwrap_or_default().to_owned();
                events.entry(name).or_default()[side] = Some(recorded);
            }
        }
    }
    let mut pairs = Vec::with_capacity(events.len());
    for [a, b] in events.into_values() {
        let Some(known) = a.as_ref().or(b.as_ref()) else { continue };
        let (event_id, source) = (known.event_id.clone(), known.source.clone());
        let side = async |r: Option<Recorded>, version: u32| match r {
            Some(r) => Side::Request(Box::new(r.request)),
            None => Side::Absent(why_absent(ledger, &source, &event_id, flow, version).await),
        };
        let (from_side, to_side) = (side(a, from).await, side(b, to).await);
        pairs.push(Pair { event_id: event_id.clone(), source: source.clone(), from: from_side, to: to_side });
    }
    Ok(compare(flow, from, to, "diff", &pairs))
}

/// What `flow` makes of `envelope`, rendered as the dispatcher would send it.
pub fn render(config: &Config, flow: &Flow, envelope: &Envelope) -> Side {
    if !flow.accepts_type(&envelope.event_type) {
        return Side::Absent(format!("does not take event type {:?}", envelope.event_type));
    }
    let Some(destination) = config.destination(&flow.destination) else {
        return Side::Absent(format!("unknown destination {:?}", flow.destination));
    };
    match switchyard_mapper::map_flow(config, flow, envelope) {
        Ok(Some(d)) => Side::Request(Box::new(Request::of(&d, destination))),
        Ok(None) => Side::Absent("filtered out by its filter".to_owned()),
        Err(f) => Side::Absent(format!("mapping error (would be parked): {}", f.reason)),
    }
}

/// `flows backtest`: both versions over the archived envelopes of their source
/// accepted on the days of `since_ms..until_ms`, nothing sent. Envelopes neither
/// version takes (another event type) are not counted.
pub async fn backtest(
    archive: &dyn Archive,
    config: &Config,
    (from, to): (&Flow, &Flow),
    (since_ms, until_ms): (i64, i64),
) -> Result<Comparison, String> {
    let mut pairs = Vec::new();
    let mut reader = archive::EnvelopeReader::default();
    for prefix in archive::day_prefixes(&to.source, since_ms, until_ms) {
        for object in archive.list(&prefix).await.map_err(|e| e.to_string())? {
            let Some(bytes) = archive.get(&object.key).await.map_err(|e| e.to_string())? else { continue };
            for envelope in reader.read(&object, &bytes)? {
                let accepted = envelope.accepted_at_ms().unwrap_or(object.written_at_ms);
                if accepted < since_ms || accepted > until_ms {
                    continue;
                }
                if !from.accepts_type(&envelope.event_type) && !to.accepts_type(&envelope.event_type) {
                    continue;
                }
                pairs.push(Pair {
                    event_id: envelope.id.clone(),
                    source: envelope.source_name().to_owned(),
                    from: render(config, from, &envelope),
                    to: render(config, to, &envelope),
                });
            }
        }
    }
    Ok(compare(&to.name, from.version, to.version, "backtest", &pairs))
}

#[cfg(test)]
mod tests;
