//! The ledger on DynamoDB: one conditional write per claim, the old item returned on a
//! conflict (`ReturnValuesOnConditionCheckFailure=ALL_OLD`) so a duplicate costs no
//! second read.
//!
//! Claims use `UpdateItem` rather than Powertools' `PutItem` so that `attempts` and
//! `created_at` survive a retry: the ledger is also the trace of the event.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use super::*;

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// A claim; with `done`, one that lands `COMPLETED` with that summary (and its log
    /// entry) in the same conditional write: intake's only write for an event.
    async fn claim_as(&self, request: &ClaimRequest, done: Option<&str>) -> Result<ClaimOutcome, LedgerError> {
        let mut update = String::from(
            "SET #st = :st, payload_hash = :h, expires_at = :exp, updated_at = :now, \
             created_at = if_not_exists(created_at, :now), attempts = if_not_exists(attempts, :zero) + :one, \
             correlation_id = :cid",
        );
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&request.key.pk))
            .key("sk", s(&request.key.sk))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at <= :now_s OR \
                 (payload_hash = :h AND (#st = :failed OR (#st = :ip AND ipx < :now)))",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":ip", s(Status::InProgress.as_str()))
            .expression_attribute_values(":failed", s(Status::Failed.as_str()))
            .expression_attribute_values(":h", s(&request.payload_hash))
            .expression_attribute_values(":exp", n(request.expires_at_s))
            .expression_attribute_values(":now", n(request.now_ms))
            .expression_attribute_values(":now_s", n(request.now_ms / 1000))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cid", s(&request.correlation_id));
        match done {
            None => {
                update.push_str(", ipx = :ipx");
                req = req
                    .expression_attribute_values(":st", s(Status::InProgress.as_str()))
                    .expression_attribute_values(":ipx", n(request.in_progress_until_ms));
            }
            Some(summary) => {
                let entry = log_entry(request.now_ms, Status::Completed, None, summary);
                update.push_str(", summary = :sum, #log = list_append(if_not_exists(#log, :empty), :entry)");
                req = req
                    .expression_attribute_names("#log", "log")
                    .expression_attribute_values(":st", s(Status::Completed.as_str()))
                    .expression_attribute_values(":sum", s(summary))
                    .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
                    .expression_attribute_values(":entry", AttributeValue::L(vec![s(&entry)]));
            }
        }
        if let Some(flow) = &request.flow {
            update.push_str(", flow = :flow");
            req = req.expression_attribute_values(":flow", s(flow));
        }
        if let Some(dest) = &request.destination {
            update.push_str(", destination = :dest");
            req = req.expression_attribute_values(":dest", s(dest));
        }
        if let Some(entity) = &request.entity {
            update.push_str(", ekey = :ekey");
            req = req.expression_attribute_values(":ekey", s(entity));
        }
        if request.index_correlation {
            update.push_str(", corr = :cid");
        }
        if done.is_some() {
            // A lapsed claim taken over leaves no lease behind.
            update.push_str(" REMOVE ipx");
        }
        let result = req
            .update_expression(update)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let attempt = out.attributes().and_then(|a| get_n(a, "attempts")).unwrap_or(1);
                let log = out.attributes().and_then(|a| a.get("log")).and_then(|l| l.as_l().ok());
                let unknown = log.map_or(0, |l| unknown_outcomes(l.iter().filter_map(|v| v.as_s().ok())));
                Ok(ClaimOutcome::Claimed { attempt: attempt.try_into().unwrap_or(1), unknown_outcomes: unknown })
            }
            Err(SdkError::ServiceError(ctx))
                if matches!(ctx.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                let UpdateItemError::ConditionalCheckFailedException(e) = ctx.err() else { unreachable!() };
                let old = e.item().ok_or_else(|| {
                    LedgerError::Unavailable("conditional check failed without the old item".to_owned())
                })?;
                let existing = record_from_item(old)?;
                // The write was refused, so the old record must be a live conflict; if
                // the state machine disagrees (clock skew between writers) retry later.
                Ok(conflict_outcome(&existing, request).unwrap_or(ClaimOutcome::InProgress))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn finish(
        &self,
        key: &RecordKey,
        status: Status,
        fields: &[(&str, AttributeValue)],
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        self.finish_counting(key, status, fields, None, now_ms).await
    }

    /// `count`: a numeric attribute to increment by one, e.g. `permission_failures`.
    /// Appends the outcome to the record's `log` and keeps the parked index in step:
    /// a parked event record enters it, any other state leaves it.
    async fn finish_counting(
        &self,
        key: &RecordKey,
        status: Status,
        fields: &[(&str, AttributeValue)],
        count: Option<&str>,
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        let (class, text) = log_text(fields);
        let mut update =
            String::from("SET #st = :st, updated_at = :now, #log = list_append(if_not_exists(#log, :empty), :entry)");
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&key.pk))
            .key("sk", s(&key.sk))
            // Only finish a record that exists: never create a half-record here.
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#log", "log")
            .expression_attribute_values(":st", s(status.as_str()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(
                ":entry",
                AttributeValue::L(vec![s(&log_entry(now_ms, status, class, &text))]),
            );
        for (i, (name, value)) in fields.iter().enumerate() {
            update.push_str(&format!(", {name} = :v{i}"));
            req = req.expression_attribute_values(format!(":v{i}"), value.clone());
        }
        match (status == Status::Parked).then(|| key.parked_sort_key(now_ms)).flatten() {
            Some(sort) => {
                update.push_str(", pidx = :pidx, pidx_sk = :pidx_sk REMOVE ipx");
                req = req
                    .expression_attribute_values(":pidx", s(index::PARKED_PARTITION))
                    .expression_attribute_values(":pidx_sk", s(&sort));
            }
            None => update.push_str(" REMOVE ipx, pidx, pidx_sk"),
        }
        if let Some(counter) = count {
            update.push_str(&format!(" ADD {counter} :one"));
            req = req.expression_attribute_values(":one", n(1));
        }
        req.update_expression(update).send().await.map_err(unavailable)?;
        Ok(())
    }

    /// A PutItem of the whole record (its index attributes derived from its state).
    fn put(&self, record: &LedgerRecord) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
        self.client.put_item().table_name(&self.table).set_item(Some(item_from_record(record)))
    }

    /// Every record a query finds, through all its pages.
    async fn query_records(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<LedgerRecord>, LedgerError> {
        let mut records = Vec::new();
        let mut pages = query.into_paginator().items().send();
        while let Some(item) = pages.next().await {
            records.push(record_from_item(&item.map_err(unavailable)?)?);
        }
        Ok(records)
    }

    /// One item, read consistently.
    async fn get_item(&self, key: &RecordKey) -> Result<Option<Item>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&key.pk))
            .key("sk", s(&key.sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    async fn get(&self, key: &RecordKey) -> Result<Option<LedgerRecord>, LedgerError> {
        self.get_item(key).await?.as_ref().map(record_from_item).transpose()
    }

    /// Event partition keys from an index holding `attr = value`, first seen first.
    async fn event_keys(&self, index: &str, attr: &str, value: &str) -> Result<Vec<String>, LedgerError> {
        let mut pks: Vec<String> = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#k = :v")
            .expression_attribute_names("#k", attr)
            .expression_attribute_values(":v", s(value))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(unavailable)?;
            if let Some(pk) = get_s(&item, "pk").filter(|pk| pk.starts_with("EVT#")) {
                if !pks.contains(&pk) {
                    pks.push(pk);
                }
            }
        }
        Ok(pks)
    }
}

/// The class and text an outcome's log entry carries, from the fields it sets.
fn log_text(fields: &[(&str, AttributeValue)]) -> (Option<FailureClass>, String) {
    let field = |name: &str| fields.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.as_s().ok()).cloned();
    let class = field("error_class").and_then(|c| FailureClass::parse(&c));
    (class, field("reason").or_else(|| field("summary")).unwrap_or_default())
}

/// An `UpdateItem` whose refused condition means there is nothing to do.
fn refused_is_fine<T, R: std::fmt::Debug>(result: Result<T, SdkError<UpdateItemError, R>>) -> Result<(), LedgerError> {
    match result {
        Ok(_) => Ok(()),
        Err(SdkError::ServiceError(ctx))
            if matches!(ctx.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
        {
            Ok(())
        }
        Err(e) => Err(unavailable(e)),
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> LedgerError {
    LedgerError::Unavailable(DisplayErrorContext(e).to_string())
}

fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

/// A record as a whole item, its index attributes derived from its state.
fn item_from_record(r: &LedgerRecord) -> Item {
    let mut item: Item = HashMap::new();
    item.insert("pk".into(), s(&r.key.pk));
    item.insert("sk".into(), s(&r.key.sk));
    item.insert("status".into(), s(r.status.as_str()));
    item.insert("attempts".into(), n(i64::from(r.attempts)));
    item.insert("permission_failures".into(), n(i64::from(r.permission_failures)));
    item.insert("payload_hash".into(), s(&r.payload_hash));
    item.insert("created_at".into(), n(r.created_at_ms));
    item.insert("updated_at".into(), n(r.updated_at_ms));
    item.insert("expires_at".into(), n(r.expires_at_s));
    let optional = [
        ("correlation_id", &r.correlation_id),
        ("flow", &r.flow),
        ("destination", &r.destination),
        ("summary", &r.summary),
        ("error_class", &r.error_class),
        ("reason", &r.reason),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            item.insert(name.into(), s(v));
        }
    }
    if let Some(ipx) = r.in_progress_until_ms {
        item.insert("ipx".into(), n(ipx));
    }
    if let Some(entity) = &r.entity {
        item.insert("ekey".into(), s(entity));
    }
    if !r.log.is_empty() {
        item.insert("log".into(), AttributeValue::L(r.log.iter().map(|e| s(e)).collect()));
    }
    for (name, value) in [("dlq", &r.dlq), ("replay_id", &r.replay_id)] {
        if let Some(v) = value {
            item.insert(name.into(), s(v));
        }
    }
    if !r.details.is_empty() {
        item.insert("details".into(), AttributeValue::M(r.details.iter().map(|(k, v)| (k.clone(), s(v))).collect()));
    }
    if let Some(sort) = r.parked_index_key() {
        item.insert("pidx".into(), s(index::PARKED_PARTITION));
        item.insert("pidx_sk".into(), s(&sort));
    }
    item
}

/// `Ok(false)` when a conditional write was refused by its condition.
fn conditional<T, R: std::fmt::Debug, E>(result: Result<T, SdkError<E, R>>) -> Result<bool, LedgerError>
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(ctx)) if ctx.err().code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(e) => Err(unavailable(e)),
    }
}

fn record_from_item(item: &Item) -> Result<LedgerRecord, LedgerError> {
    let pk = get_s(item, "pk").unwrap_or_default();
    let sk = get_s(item, "sk").unwrap_or_default();
    let corrupt = |message: &str| LedgerError::Corrupt { pk: pk.clone(), sk: sk.clone(), message: message.to_owned() };
    let status = get_s(item, "status").and_then(|v| Status::parse(&v)).ok_or_else(|| corrupt("bad status"))?;
    Ok(LedgerRecord {
        status,
        attempts: get_n(item, "attempts").unwrap_or(0).try_into().unwrap_or(0),
        permission_failures: get_n(item, "permission_failures").unwrap_or(0).try_into().unwrap_or(0),
        payload_hash: get_s(item, "payload_hash").unwrap_or_default(),
        correlation_id: get_s(item, "correlation_id"),
        flow: get_s(item, "flow"),
        destination: get_s(item, "destination"),
        summary: get_s(item, "summary"),
        error_class: get_s(item, "error_class"),
        reason: get_s(item, "reason"),
        created_at_ms: get_n(item, "created_at").unwrap_or(0),
        updated_at_ms: get_n(item, "updated_at").unwrap_or(0),
        in_progress_until_ms: get_n(item, "ipx"),
        expires_at_s: get_n(item, "expires_at").ok_or_else(|| corrupt("no expires_at"))?,
        entity: get_s(item, "ekey"),
        log: item
            .get("log")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|e| e.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
        dlq: get_s(item, "dlq"),
        replay_id: get_s(item, "replay_id"),
        details: item
            .get("details")
            .and_then(|v| v.as_m().ok())
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone()))).collect())
            .unwrap_or_default(),
        key: RecordKey { pk: pk.clone(), sk: sk.clone() },
    })
}

#[async_trait]
impl IdempotencyStore for DynamoLedger {
    async fn warm_up(&self) -> Result<(), LedgerError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", s("WARMUP"))
            .key("sk", s("WARMUP"))
            .projection_expression("pk")
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimOutcome, LedgerError> {
        self.claim_as(request, None).await
    }

    async fn accept(&self, request: &ClaimRequest, summary: &str) -> Result<ClaimOutcome, LedgerError> {
        self.claim_as(request, Some(summary)).await
    }

    async fn check(&self, request: &ClaimRequest) -> Result<Option<ClaimOutcome>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&request.key.pk))
            .key("sk", s(&request.key.sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        match out.item() {
            Some(item) => Ok(conflict_outcome(&record_from_item(item)?, request)),
            None => Ok(None),
        }
    }

    async fn complete(&self, key: &RecordKey, summary: &str, now_ms: i64) -> Result<(), LedgerError> {
        self.finish(key, Status::Completed, &[("summary", s(summary))], now_ms).await
    }

    async fn unclaim(&self, key: &RecordKey, attempt: u32, reason: &str, now_ms: i64) -> Result<(), LedgerError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&key.pk))
            .key("sk", s(&key.sk))
            .update_expression(
                "SET #st = :failed, attempts = attempts - :one, updated_at = :now, reason = :reason \
                 REMOVE ipx, error_class",
            )
            .condition_expression("#st = :ip AND attempts = :attempt")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":failed", s(Status::Failed.as_str()))
            .expression_attribute_values(":ip", s(Status::InProgress.as_str()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":attempt", n(i64::from(attempt)))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":reason", s(reason))
            .send()
            .await;
        // Not ours any more (lapsed and taken by another worker): nothing to give back.
        refused_is_fine(result)
    }

    async fn release(
        &self,
        key: &RecordKey,
        class: FailureClass,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        let fields = [("error_class", s(class.as_str())), ("reason", s(reason))];
        let count = (class == FailureClass::Auth).then_some("permission_failures");
        self.finish_counting(key, Status::Failed, &fields, count, now_ms).await
    }

    async fn mark_stale(&self, key: &RecordKey, reason: &str, now_ms: i64) -> Result<(), LedgerError> {
        self.finish(key, Status::Stale, &[("reason", s(reason))], now_ms).await
    }

    async fn last_version(&self, flow: &str, entity: &str) -> Result<Option<i64>, LedgerError> {
        let item = self.get_item(&RecordKey::entity(flow, entity)).await?;
        Ok(item.and_then(|i| get_n(&i, "version")))
    }

    async fn advance_version(
        &self,
        flow: &str,
        entity: &str,
        version: i64,
        expires_at_s: i64,
    ) -> Result<(), LedgerError> {
        let key = RecordKey::entity(flow, entity);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&key.pk))
            .key("sk", s(&key.sk))
            .update_expression("SET version = :v, expires_at = :exp")
            .condition_expression("attribute_not_exists(version) OR version < :v")
            .expression_attribute_values(":v", n(version))
            .expression_attribute_values(":exp", n(expires_at_s))
            .send()
            .await;
        // A newer version is already recorded: nothing to do.
        refused_is_fine(result)
    }

    async fn park(
        &self,
        key: &RecordKey,
        class: FailureClass,
        reason: &str,
        dlq: &str,
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        let fields = [("error_class", s(class.as_str())), ("reason", s(reason)), ("dlq", s(dlq))];
        self.finish(key, Status::Parked, &fields, now_ms).await
    }

    async fn record_decision(&self, record: &LedgerRecord) -> Result<bool, LedgerError> {
        let result = self
            .put(record)
            .condition_expression("attribute_not_exists(pk) OR (#st <> :done AND #st <> :ip)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":done", s(Status::Completed.as_str()))
            .expression_attribute_values(":ip", s(Status::InProgress.as_str()))
            .send()
            .await;
        conditional(result)
    }

    async fn put_new(&self, record: &LedgerRecord) -> Result<bool, LedgerError> {
        conditional(self.put(record).condition_expression("attribute_not_exists(pk)").send().await)
    }

    async fn arm(&self, request: &ArmRequest) -> Result<ArmOutcome, LedgerError> {
        // Read, decide, then write on condition that nothing changed in between; a
        // change (a dispatcher finishing the delivery meanwhile) means deciding again.
        for _ in 0..5 {
            let existing = self.get(&request.key).await?;
            let attempts_before = match replay::decide(existing.as_ref(), request) {
                Ok(n) => n,
                Err(outcome) => return Ok(outcome),
            };
            let log = replay::armed_log(existing.as_ref(), request);
            let mut update = String::from(
                "SET #st = :failed, attempts = :zero, payload_hash = :h, replay_id = :r, updated_at = :now, \
                 created_at = if_not_exists(created_at, :now), expires_at = :exp, \
                 correlation_id = if_not_exists(correlation_id, :cid), flow = :flow, destination = :dest, \
                 #log = :log",
            );
            let mut req = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(&request.key.pk))
                .key("sk", s(&request.key.sk))
                .expression_attribute_names("#st", "status")
                .expression_attribute_names("#log", "log")
                .expression_attribute_values(":failed", s(Status::Failed.as_str()))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":h", s(&request.payload_hash))
                .expression_attribute_values(":r", s(&request.replay_id))
                .expression_attribute_values(":now", n(request.now_ms))
                .expression_attribute_values(":exp", n(request.expires_at_s))
                .expression_attribute_values(":cid", s(&request.correlation_id))
                .expression_attribute_values(":flow", s(&request.flow))
                .expression_attribute_values(":dest", s(&request.destination))
                .expression_attribute_values(":log", AttributeValue::L(log.iter().map(|e| s(e)).collect()));
            if let Some(entity) = &request.entity {
                update.push_str(", ekey = :ekey");
                req = req.expression_attribute_values(":ekey", s(entity));
            }
            update.push_str(" REMOVE ipx, pidx, pidx_sk");
            req = match &existing {
                Some(r) => req
                    .condition_expression("updated_at = :seen AND #st = :seen_st")
                    .expression_attribute_values(":seen", n(r.updated_at_ms))
                    .expression_attribute_values(":seen_st", s(r.status.as_str())),
                None => req.condition_expression("attribute_not_exists(pk)"),
            };
            if conditional(req.update_expression(update).send().await)? {
                return Ok(ArmOutcome::Armed { attempts_before });
            }
        }
        Err(LedgerError::Unavailable(format!("{} kept changing while being armed for replay", request.key.sk)))
    }

    async fn parked(&self, since_ms: i64, until_ms: i64) -> Result<Vec<LedgerRecord>, LedgerError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index::PARKED)
            .key_condition_expression("pidx = :p AND pidx_sk BETWEEN :from AND :to")
            .expression_attribute_values(":p", s(index::PARKED_PARTITION))
            .expression_attribute_values(":from", s(&format!("{:013}", since_ms.max(0))))
            .expression_attribute_values(":to", s(&format!("{:013}", until_ms.max(0))));
        self.query_records(query).await
    }

    async fn events_by_entity(&self, entity: &str) -> Result<Vec<String>, LedgerError> {
        self.event_keys(index::ENTITY, "ekey", entity).await
    }

    async fn events_by_correlation(&self, correlation_id: &str) -> Result<Vec<String>, LedgerError> {
        self.event_keys(index::CORRELATION, "corr", correlation_id).await
    }

    async fn put_record(&self, r: &LedgerRecord) -> Result<(), LedgerError> {
        self.put(r).send().await.map_err(unavailable)?;
        Ok(())
    }

    async fn history(&self, pk: &str) -> Result<Vec<LedgerRecord>, LedgerError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true);
        self.query_records(query).await
    }
}
