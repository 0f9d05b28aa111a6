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
        tat_us: num(item, "tat_us"),
        fails: u32::try_from(num(item, "fails")).unwrap_or(u32::MAX),
        open_until_ms: num(item, "open_until"),
        opened_at_ms: num(item, "opened_at"),
        probe_until_ms: num(item, "probe_until"),
        paused_until_ms: num(item, "paused_until"),
        window_start_ms: num(item, "w_start"),
        window_calls: u32::try_from(num(item, "w_calls")).unwrap_or(u32::MAX),
        window_failed: u32::try_from(num(item, "w_bad")).unwrap_or(u32::MAX),
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
        now_us: i64,
        limit: &RateLimit,
    ) -> Result<(Result<i64, i64>, GateState), GateError> {
        let (interval, tolerance) = gcra(limit);
        // Busy bucket first (relative, so concurrent dispatchers do not conflict);
        // a drained one restarts from now. Each refusal says which case holds.
        let mut busy = true;
        for _ in 0..4 {
            let req = if busy {
                self.update(destination)
                    .update_expression("SET tat_us = tat_us + :t")
                    .condition_expression("tat_us >= :now AND tat_us <= :limit")
                    .expression_attribute_values(":t", n(interval))
                    .expression_attribute_values(":now", n(now_us))
                    .expression_attribute_values(":limit", n(now_us + tolerance))
            } else {
                self.update(destination)
                    .update_expression("SET tat_us = :next")
                    .condition_expression("attribute_not_exists(tat_us) OR tat_us < :now")
                    .expression_attribute_values(":next", n(now_us + interval))
                    .expression_attribute_values(":now", n(now_us))
            };
            match self.write(req).await? {
                // Either way the slot is `tat` before the update: `tat − T` after it.
                Written::Done(state) => return Ok((Ok(state.tat_us - interval), state)),
                Written::Refused(seen) => match gcra_step(seen.tat_us, now_us, interval, tolerance) {
                    Err(free_at) => return Ok((Err(free_at), seen)),
                    Ok(_) => busy = seen.tat_us >= now_us,
                },
            }
        }
        // Lost four races in a row: the bucket is contended, come back shortly.
        Ok((Err(now_us + interval), self.read(destination).await?))
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

    async fn count_failure(&self, destination: &str) -> Result<GateState, GateError> {
        let req =
            self.update(destination).update_expression("ADD fails :one").expression_attribute_values(":one", n(1));
        match self.write(req).await? {
            Written::Done(s) | Written::Refused(s) => Ok(s),
        }
    }

    async fn count_in_window(
        &self,
        destination: &str,
        now_ms: i64,
        window_ms: i64,
        failed: bool,
    ) -> Result<GateState, GateError> {
        // The window in course first (relative, so dispatchers do not conflict); a
        // passed one is restarted by whichever call sees it first.
        let stale = now_ms - window_ms;
        for _ in 0..3 {
            let add = self
                .update(destination)
                .update_expression("ADD w_calls :one, w_bad :bad")
                .condition_expression("w_start > :stale")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":bad", n(i64::from(failed)))
                .expression_attribute_values(":stale", n(stale));
            if let Written::Done(s) = self.write(add).await? {
                return Ok(s);
            }
            let restart = self
                .update(destination)
                .update_expression("SET w_start = :now, w_calls = :one, w_bad = :bad")
                .condition_expression("attribute_not_exists(w_start) OR w_start <= :stale")
                .expression_attribute_values(":now", n(now_ms))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":bad", n(i64::from(failed)))
                .expression_attribute_values(":stale", n(stale));
            if let Written::Done(s) = self.write(restart).await? {
                return Ok(s);
            }
        }
        self.read(destination).await
    }

    async fn open(
        &self,
        destination: &str,
        now_ms: i64,
        until_ms: i64,
        t: &Transition,
        reopen: bool,
        seen: &GateState,
    ) -> Result<bool, GateError> {
        let req = self
            .update(destination)
            .update_expression(
                "SET open_until = :until, opened_at = if_not_exists(opened_at, :now), probe_until = :zero, transitions = :log",
            )
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":zero", n(0));
        // Exactly one dispatcher opens a closed breaker; a probe re-opens only its own half-open one.
        let req = if reopen {
            req.condition_expression("open_until > :zero AND open_until <= :now")
        } else {
            req.condition_expression("attribute_not_exists(open_until) OR open_until = :zero")
        };
        let req = Self::with_transition(req, now_ms, t, seen);
        Ok(matches!(self.write(req).await?, Written::Done(_)))
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
