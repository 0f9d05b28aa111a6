//! The soak's accounting: every event delivered exactly once or parked with a reason,
//! and every request answered as the README documents.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde_json::Value;
use switchyard_common::envelope::Delivery;

use super::destination::Report;
use super::provider::{Fate, Plan, Post, CHANGED_TAG};
use super::{Sent, Settings};
use crate::LocalAws;

const FLOW: &str = "stripe-payment-to-crm-contact";

/// One message found in a DLQ.
#[derive(Debug, Clone)]
pub struct Parked {
    pub event_id: String,
    /// `None`: moved by the queue's redrive, not parked by a function.
    pub reason: Option<String>,
    pub stage: String,
    pub attempts: Option<String>,
}

#[derive(Debug, Default)]
pub struct Tally {
    pub events: usize,
    pub posts: usize,
    pub delivered_once: usize,
    pub parked: usize,
    pub no_flow: usize,
    pub duplicated: usize,
    pub lost: usize,
    pub delivered_and_parked: usize,
    /// Delivered once and parked saying so: some attempt was sent and never answered,
    /// so the park reason starts `outcome unknown:` (the operator is told the
    /// destination may have it, and a replay sends the same Idempotency-Key).
    pub delivered_parked_as_unknown: usize,
    pub parked_without_reason: usize,
    pub wrong_answers: usize,
    pub unanswered: usize,
    /// Deliveries of a body intake refused (a changed body, a malformed request) or of
    /// an event no flow takes.
    pub wrong_deliveries: usize,
    pub drained: bool,
    /// Every planned kill and outage happened.
    pub chaos_complete: bool,
    pub defects: Vec<String>,
    pub report: String,
}

impl Tally {
    pub fn passed(&self) -> bool {
        self.drained
            && self.chaos_complete
            && self.duplicated == 0
            && self.lost == 0
            && self.delivered_and_parked == 0
            && self.parked_without_reason == 0
            && self.wrong_answers == 0
            && self.unanswered == 0
            && self.wrong_deliveries == 0
    }
}

impl Tally {
    /// Records what the chaos did, in the report, and ends the report with the verdict.
    pub fn chaos_done(&mut self, settings: &Settings, kills: usize, outages: usize) {
        let planned = usize::from(!settings.outage.is_zero());
        self.chaos_complete = kills == settings.kills && outages == planned;
        let line = format!(
            "  chaos done              {kills} of {} kills, {outages} of {planned} outages{}\n",
            settings.kills,
            if self.chaos_complete { "" } else { " (INCOMPLETE)" }
        );
        let at = self.report.find("  drained").unwrap_or(self.report.len());
        self.report.insert_str(at, &line);
        self.report.push_str(if self.passed() { "soak: PASS\n" } else { "soak: FAIL\n" });
    }
}

/// Every message of a DLQ (received with a long visibility timeout, so each once).
async fn read_dlq(aws: &LocalAws, url: &str, stage: &str) -> Vec<Parked> {
    let mut out = Vec::new();
    let mut empty = 0;
    while empty < 3 {
        let Ok(r) = aws
            .sqs()
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(3_600)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
        else {
            empty += 1;
            continue;
        };
        if r.messages().is_empty() {
            empty += 1;
        }
        for m in r.messages() {
            let attr = |name: &str| {
                m.message_attributes().and_then(|a| a.get(name)).and_then(|v| v.string_value()).map(str::to_owned)
            };
            // A message moved by redrive keeps only its own attributes: read its body.
            let body: Value = serde_json::from_str(m.body().unwrap_or_default()).unwrap_or(Value::Null);
            let from_body = body.get("event_id").or_else(|| body.get("id")).and_then(Value::as_str);
            let event_id = attr("event_id").or(from_body.map(str::to_owned)).unwrap_or_default();
            out.push(Parked {
                event_id,
                reason: attr("reason").filter(|r| !r.is_empty()),
                stage: attr("stage").unwrap_or_else(|| format!("{stage} (redrive)")),
                attempts: attr("attempts"),
            });
        }
    }
    out
}

/// A reason without its numbers, for counting reasons by kind.
fn reason_kind(reason: &str) -> String {
    let head = reason.split([';', ':']).next().unwrap_or_default();
    head.chars().map(|c| if c.is_ascii_digit() { 'N' } else { c }).collect()
}

#[allow(clippy::too_many_arguments)]
pub async fn account(
    aws: &LocalAws,
    plan: &Plan,
    sent: &[Sent],
    dest: &Report,
    settings: &Settings,
    drained: bool,
    wall: Duration,
    posted_in: Duration,
) -> Tally {
    let mut t = Tally { events: plan.events.len(), posts: sent.len(), drained, ..Tally::default() };
    let s = &aws.stack;

    // ---- intake's answers
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut retried: BTreeMap<String, usize> = BTreeMap::new();
    let mut unreachable = 0;
    let mut accepted_202: HashMap<usize, usize> = HashMap::new();
    let mut lost_an_answer: HashSet<usize> = HashSet::new();
    for x in sent {
        let o = &x.outcome;
        unreachable += o.unreachable as usize;
        for a in &o.retried {
            *retried.entry(a.to_string()).or_default() += 1;
        }
        let Some(last) = &o.last else {
            t.unanswered += 1;
            t.defects.push(format!("{:?}: never answered after {} tries", x.post, o.retried.len()));
            continue;
        };
        *answers.entry(last.to_string()).or_default() += 1;
        let (ok, what) = match &x.post {
            Post::Event { event, .. } => {
                if o.unreachable > 0 {
                    lost_an_answer.insert(*event);
                }
                if last.status == 202 {
                    *accepted_202.entry(*event).or_default() += 1;
                }
                (
                    matches!((last.status, last.code.as_str()), (202, "accepted") | (200, "duplicate")),
                    plan.events[*event].id.clone(),
                )
            }
            Post::ChangedBody { event, .. } => (
                last.status == 409 && last.code == "payload_mismatch",
                format!("{} (changed body)", plan.events[*event].id),
            ),
            Post::Malformed { kind, .. } => {
                let (status, code) = kind.answer();
                (last.status == status && last.code == code, format!("malformed {kind:?}"))
            }
        };
        if !ok {
            t.wrong_answers += 1;
            t.defects.push(format!("{what}: answered {last}"));
        }
    }
    for (i, e) in plan.events.iter().enumerate() {
        match accepted_202.get(&i).copied().unwrap_or(0) {
            0 if !lost_an_answer.contains(&i) => {
                t.wrong_answers += 1;
                t.defects.push(format!("{}: no post of it was answered 202 accepted", e.id));
            }
            n if n > 1 => {
                t.wrong_answers += n - 1;
                t.defects.push(format!("{}: answered 202 accepted {n} times", e.id));
            }
            _ => {}
        }
    }

    // ---- what the destination did, by event
    let index: HashMap<String, usize> =
        plan.events.iter().enumerate().map(|(i, e)| (Delivery::default_key("stripe", &e.id, FLOW, 1), i)).collect();
    let mut effects_of: HashMap<usize, usize> = HashMap::new();
    for effect in &dest.effects {
        let by_key = index.get(&effect.key).copied();
        let tag = effect.tag.and_then(|n| usize::try_from(n).ok());
        match (by_key, tag) {
            (Some(i), Some(n)) if i == n => *effects_of.entry(i).or_default() += 1,
            (Some(i), _) => {
                t.wrong_deliveries += 1;
                t.defects.push(format!(
                    "{}: delivered with another body (tag {:?}{})",
                    plan.events[i].id,
                    effect.tag,
                    if effect.tag.is_some_and(|n| n >= CHANGED_TAG) { ", a refused body" } else { "" }
                ));
            }
            (None, Some(n)) if n < plan.events.len() => {
                // Event n delivered under a key that is not its own: a second effect.
                *effects_of.entry(n).or_default() += 1;
            }
            (None, _) => {
                t.wrong_deliveries += 1;
                t.defects.push(format!("a delivery of no event sent (key {}, tag {:?})", effect.key, effect.tag));
            }
        }
    }

    // ---- what the DLQs hold, two copies of one event's delivery counted once
    let mut parked_msgs = read_dlq(aws, &s.ingest_dlq_url, "ingest-dlq").await;
    parked_msgs.extend(read_dlq(aws, &s.dispatch_dlq_url, "dispatch-dlq").await);
    parked_msgs.extend(read_dlq(aws, &s.dispatch_fifo_dlq_url, "dispatch-dlq.fifo").await);
    let mut parked: HashMap<&str, Vec<&Parked>> = HashMap::new();
    for p in &parked_msgs {
        parked.entry(p.event_id.as_str()).or_default().push(p);
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for copies in parked.values() {
        let p = copies.iter().find(|p| p.reason.is_some()).unwrap_or(&copies[0]);
        let kind = p.reason.as_deref().map(reason_kind).unwrap_or_else(|| "no reason".to_owned());
        *reasons.entry(format!("{}: {kind}", p.stage)).or_default() += 1;
    }
    let known: HashSet<&str> = plan.events.iter().map(|e| e.id.as_str()).collect();
    for id in parked.keys().filter(|id| !known.contains(*id)) {
        t.wrong_deliveries += 1;
        t.defects.push(format!("parked {id:?}, which is no event sent"));
    }

    // ---- every event
    let mut to_trace = Vec::new();
    for (i, e) in plan.events.iter().enumerate() {
        let delivered = effects_of.get(&i).copied().unwrap_or(0);
        let copies = parked.get(e.id.as_str());
        let with_reason = copies.is_some_and(|c| c.iter().any(|p| p.reason.is_some()));
        let describe = |c: &Vec<&Parked>| {
            c.iter()
                .map(|p| {
                    format!(
                        "{} attempts {} {}",
                        p.stage,
                        p.attempts.as_deref().unwrap_or("?"),
                        p.reason.as_deref().unwrap_or("NO REASON")
                    )
                })
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let defect = match (e.fate, delivered, copies) {
            (Fate::NoFlow, 0, None) => {
                t.no_flow += 1;
                None
            }
            (Fate::NoFlow, n, c) => {
                t.wrong_deliveries += 1;
                Some(format!(
                    "no flow takes it, yet delivered {n} times, parked: {}",
                    c.map(describe).unwrap_or_default()
                ))
            }
            (_, 1, None) => {
                t.delivered_once += 1;
                None
            }
            (_, 0, Some(_)) if with_reason => {
                t.parked += 1;
                None
            }
            (_, 0, Some(c)) => {
                t.parked_without_reason += 1;
                Some(format!("parked without a reason: {}", describe(c)))
            }
            (_, 0, None) => {
                t.lost += 1;
                Some("lost: neither delivered nor parked".to_owned())
            }
            (_, 1, Some(c))
                if c.iter().all(|p| {
                    p.reason.as_deref().is_some_and(|r| r.starts_with(switchyard_common::failure::OUTCOME_UNKNOWN))
                }) =>
            {
                t.delivered_parked_as_unknown += 1;
                None
            }
            (_, n, Some(c)) => {
                t.delivered_and_parked += 1;
                if n > 1 {
                    t.duplicated += 1;
                }
                Some(format!("delivered {n} times and parked: {}", describe(c)))
            }
            (_, n, None) => {
                t.duplicated += 1;
                Some(format!("delivered {n} times"))
            }
        };
        if let Some(d) = defect {
            t.defects.push(format!("{}: {d}", e.id));
            to_trace.push(e.id.clone());
        }
    }
    // The ledger's word on the first few, to match them against a fix.
    let mut traces = String::new();
    for id in to_trace.iter().take(20) {
        for r in aws.history("stripe", id).await {
            let _ = writeln!(
                traces,
                "    {id} {} {} attempts {} {}",
                r.key.sk,
                r.status.as_str(),
                r.attempts,
                r.summary.or(r.reason).unwrap_or_default()
            );
        }
    }

    let mut out = String::new();
    let secs = wall.as_secs_f64();
    let _ = writeln!(out, "soak tally (seed {}):", settings.seed);
    let _ = writeln!(
        out,
        "  sent      {} events in {} posts: {} duplicates ({} concurrent, {} late), {} same id with another body, {} malformed",
        plan.events.len(),
        sent.len(),
        plan.concurrent_duplicates + plan.late_duplicates,
        plan.concurrent_duplicates,
        plan.late_duplicates,
        plan.changed_bodies,
        plan.malformed
    );
    let _ = writeln!(
        out,
        "  chaos     runner to be killed {} times (SIGKILL), destination down {} s, faults {:?}",
        settings.kills,
        settings.outage.as_secs(),
        settings.faults
    );
    let _ = writeln!(out, "  intake    final answers {answers:?}");
    let _ = writeln!(out, "            retried after {retried:?}; tries without an answer (runner down) {unreachable}");
    let _ = writeln!(out, "  destination {} requests {:?}", dest.requests, dest.answers);
    let _ = writeln!(
        out,
        "            keys answered 2xx sent again: {} after an answer in time (2xx-to-ledger window), {} after a slow answer",
        dest.replays_after_seen, dest.replays_after_slow
    );
    if !dest.replayed_keys.is_empty() {
        let ids: Vec<&str> = dest
            .replayed_keys
            .iter()
            .take(20)
            .map(|k| index.get(k).map_or(k.as_str(), |&i| plan.events[i].id.as_str()))
            .collect();
        let _ = writeln!(out, "            sent again after an answer in time: {}", ids.join(", "));
    }
    let _ = writeln!(out, "  DLQs      {} messages, {} events: {reasons:?}", parked_msgs.len(), parked.len());
    let _ = writeln!(out, "  delivered exactly once  {}", t.delivered_once);
    let _ = writeln!(out, "  parked with a reason    {}", t.parked);
    let _ = writeln!(out, "  accepted, no flow       {}", t.no_flow);
    let _ = writeln!(out, "  duplicates delivered    {}", t.duplicated);
    let _ = writeln!(out, "  lost                    {}", t.lost);
    let _ = writeln!(out, "  delivered and parked    {}", t.delivered_and_parked);
    let _ = writeln!(out, "  delivered, parked as outcome unknown (not a defect) {}", t.delivered_parked_as_unknown);
    let _ = writeln!(out, "  parked without reason   {}", t.parked_without_reason);
    let _ = writeln!(out, "  wrong answers           {}", t.wrong_answers);
    let _ = writeln!(out, "  unanswered posts        {}", t.unanswered);
    let _ = writeln!(out, "  wrong deliveries        {}", t.wrong_deliveries);
    let _ = writeln!(out, "  drained                 {}", if drained { "yes" } else { "NO (timed out)" });
    let _ = writeln!(
        out,
        "  wall time {secs:.1} s (posting {:.1} s), {:.1} events/s",
        posted_in.as_secs_f64(),
        plan.events.len() as f64 / secs
    );
    if !t.defects.is_empty() {
        let _ = writeln!(out, "  defects ({}):", t.defects.len());
        for d in t.defects.iter().take(50) {
            let _ = writeln!(out, "    {d}");
        }
        if !traces.is_empty() {
            let _ = writeln!(out, "  ledger of the first defective events:\n{traces}");
        }
    }
    t.report = out;
    t
}
