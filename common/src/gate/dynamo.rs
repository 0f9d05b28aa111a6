//! The gate on DynamoDB: one item per destination in the ledger table, every
//! operation one conditional `UpdateItem` that returns the item (new on success, old
//! on a failed condition), so no operation needs a read before it.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use super::*;

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoGate {
    client: Client,
    table: String,
}

/// A conditional update's answer: the item after it, or the item that failed the condition.
enum Written {
    Done(GateState),
    Refused(GateState),
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn num(item: &Item, name: &str) -> i64 {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn state_from(item: Option<&Item>) -> GateState {
    let Some(item) = item else { return GateState::default() };
    GateState {
        tat_ms: num(item, "tat"),
        fails: u32::try_from(num(item, "fails")).unwrap_or(u32::MAX),
        open_until_ms: num(item, "open_until"),
        opened_at_ms: num(item, "opened_at"),
        probe_until_ms: num(item, "probe_until"),
        paused_until_ms: num(item, "paused_until"),
        transitions: item
            .get("transitions")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
    }
}

fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> GateError {
    GateError(DisplayErrorContext(e).to_string())
}

impl DynamoGate {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn update(&self, destination: &str) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(gate_pk(destination)))
            .key("sk", AttributeValue::S(GATE_SK.to_owned()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    fn slot(&self, destination: &str, index: u32) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(gate_pk(destination)))
            .key("sk", AttributeValue::S(slot_sk(index)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::None)
    }

    async fn write(&self, req: UpdateItemFluentBuilder) -> Result<Written, GateError> {
        match req.send().await {
            Ok(out) => Ok(Written::Done(state_from(out.attributes.as_ref()))),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                let UpdateItemError::ConditionalCheckFailedException(c) = e.into_err() else { unreachable!() };
                Ok(Written::Refused(state_from(c.item.as_ref())))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Appends a transition, keeping the last [`KEEP_TRANSITIONS`].
    fn with_transition(
        req: UpdateItemFluentBuilder,
        now_ms: i64,
        t: &Transition,
        seen: &GateState,
    ) -> UpdateItemFluentBuilder {
        let mut log: Vec<String> = seen.transitions.clone();
        log.push(transition_entry(now_ms, t));
        let start = log.len().saturating_sub(KEEP_TRANSITIONS);
        req.expression_attribute_values(
            ":log",
            AttributeValue::L(log[start..].iter().cloned().map(AttributeValue::S).collect()),
        )
    }
}

#[async_trait]
impl GateStore for DynamoGate {
    async fn read(&self, destination: &str) -> Result<GateState, GateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(gate_pk(destination)))
            .key("sk", AttributeValue::S(GATE_SK.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(state_from(out.item.as_ref()))
    }

    async fn take_token(
        &self,
        destination: &str,
        now_ms: i64,
        limit: &RateLimit,
    ) -> Result<(Result<(), i64>, GateState), GateError> {
        let (interval, tolerance) = gcra(limit);
        // Busy bucket first (relative, so concurrent dispatchers do not conflict);
        // a drained one restarts from now. Each refusal says which case holds.
        let mut busy = true;
        for _ in 0..4 {
            let req = if busy {
                self.update(destination)
                    .update_expression("SET tat = tat + :t")
                    .condition_expression("tat >= :now AND tat <= :limit")
                    .expression_attribute_values(":t", n(interval))
                    .expression_attribute_values(":now", n(now_ms))
                    .expression_attribute_values(":limit", n(now_ms + tolerance))
            } else {
                self.update(destination)
                    .update_expression("SET tat = :next")
                    .condition_expression("attribute_not_exists(tat) OR tat < :now")
                    .expression_attribute_values(":next", n(now_ms + interval))
                    .expression_attribute_values(":now", n(now_ms))
            };
            match self.write(req).await? {
                Written::Done(state) => return Ok((Ok(()), state)),
                Written::Refused(seen) => match gcra_step(seen.tat_ms, now_ms, interval, tolerance) {
                    Err(free_at) => return Ok((Err(free_at), seen)),
                    Ok(_) => busy = seen.tat_ms >= now_ms,
                },
            }
        }
        // Lost four races in a row: the bucket is contended, come back shortly.
        Ok((Err(now_ms + interval), self.read(destination).await?))
    }

    async fn claim_probe(&self, destination: &str, now_ms: i64, lease_until_ms: i64) -> Result<bool, GateError> {
        let req = self
            .update(destination)
            .update_expression("SET probe_until = :lease")
            .condition_expression(
                "open_until > :zero AND open_until <= :now AND (attribute_not_exists(probe_until) OR probe_until <= :now)",
            )
            .expression_attribute_values(":lease", n(lease_until_ms))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now_ms));
        Ok(matches!(self.write(req).await?, Written::Done(_)))
    }

    async fn failed(
        &self,
        destination: &str,
        now_ms: i64,
        policy: &BreakerPolicy,
        probe: bool,
    ) -> Result<(Option<Transition>, GateState), GateError> {
        let counted = match self
            .write(
                self.update(destination).update_expression("ADD fails :one").expression_attribute_values(":one", n(1)),
            )
            .await?
        {
            Written::Done(s) | Written::Refused(s) => s,
        };
        let reopen = probe && counted.open_until_ms > 0;
        if !reopen && (counted.open_until_ms > 0 || counted.fails < policy.failures) {
            return Ok((None, counted));
        }
        let t = Transition {
            to: BreakerState::Open,
            why: if reopen {
                "the half-open probe failed".to_owned()
            } else {
                format!("{} consecutive transient failures", counted.fails)
            },
        };
        let until = now_ms + (policy.cooldown_secs as i64) * 1_000;
        let req = self
            .update(destination)
            .update_expression("SET open_until = :until, opened_at = if_not_exists(opened_at, :now), probe_until = :zero, transitions = :log")
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":zero", n(0));
        // Exactly one dispatcher opens a closed breaker; a probe re-opens only its own half-open one.
        let req = if reopen {
            req.condition_expression("open_until > :zero AND open_until <= :now")
        } else {
            req.condition_expression("attribute_not_exists(open_until) OR open_until = :zero")
        };
        let req = Self::with_transition(req, now_ms, &t, &counted);
        Ok(match self.write(req).await? {
            Written::Done(s) => (Some(t), s),
            Written::Refused(s) => (None, s),
        })
    }

    async fn succeeded(&self, destination: &str, now_ms: i64) -> Result<Option<Transition>, GateError> {
        // Clear the failure count; close the breaker only in a separate, conditional step,
        // so the transition is written (and logged) once.
        let reset = self
            .update(destination)
            .update_expression("SET fails = :zero")
            .condition_expression("fails > :zero AND (attribute_not_exists(open_until) OR open_until = :zero)")
            .expression_attribute_values(":zero", n(0));
        let seen = match self.write(reset).await? {
            Written::Done(_) => return Ok(None),
            Written::Refused(s) => s,
        };
        if seen.open_until_ms == 0 {
            return Ok(None);
        }
        let t = Transition { to: BreakerState::Closed, why: "a call succeeded".to_owned() };
        let close = self
            .update(destination)
            .update_expression(
                "SET fails = :zero, open_until = :zero, probe_until = :zero, transitions = :log REMOVE opened_at",
            )
            .condition_expression("open_until = :was")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":was", n(seen.open_until_ms));
        let close = Self::with_transition(close, now_ms, &t, &seen);
        Ok(match self.write(close).await? {
            Written::Done(_) => Some(t),
            Written::Refused(_) => None,
        })
    }

    async fn take_slot(
        &self,
        destination: &str,
        index: u32,
        holder: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, GateError> {
        let req = self
            .slot(destination, index)
            .update_expression("SET holder = :h, lease_until = :lease")
            .condition_expression("attribute_not_exists(lease_until) OR lease_until <= :now")
            .expression_attribute_values(":h", AttributeValue::S(holder.to_owned()))
            .expression_attribute_values(":lease", n(lease_until_ms))
            .expression_attribute_values(":now", n(now_ms));
        Ok(matches!(self.write(req).await?, Written::Done(_)))
    }

    async fn release_slot(&self, destination: &str, slot: &Slot) -> Result<(), GateError> {
        let req = self
            .slot(destination, slot.index)
            .update_expression("SET lease_until = :zero")
            .condition_expression("holder = :h")
            .expression_attribute_values(":h", AttributeValue::S(slot.holder.clone()))
            .expression_attribute_values(":zero", n(0));
        self.write(req).await?;
        Ok(())
    }

    async fn pause(&self, destination: &str, until_ms: i64) -> Result<(), GateError> {
        let req = self
            .update(destination)
            .update_expression("SET paused_until = :until")
            .condition_expression("attribute_not_exists(paused_until) OR paused_until < :until")
            .expression_attribute_values(":until", n(until_ms));
        self.write(req).await?;
        Ok(())
    }
}
