//! The template agrees with the code: its alarms watch what the code emits, its roles
//! allow the calls the functions make. The template is read with cfn-lint's own YAML
//! loader (`switchyard_e2e::iam::template`).

use serde_json::Value;
use switchyard_common::config::Config;
use switchyard_common::metrics::{names, BURN_WINDOWS, NAMESPACE};
use switchyard_e2e::iam::{self, template};
use switchyard_e2e::repo;

fn resources_of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    t["Resources"].as_object().unwrap().iter().filter(|(_, r)| r["Type"] == kind).collect()
}

/// The metric query of `metric` for `flow` in an alarm, with its period.
fn period_of(alarm: &Value, metric: &str, flow: &str) -> Option<u64> {
    alarm["Properties"]["Metrics"].as_array()?.iter().find_map(|m| {
        let stat = &m["MetricStat"];
        let dims = stat["Metric"]["Dimensions"].as_array()?;
        let for_flow = dims.iter().any(|d| d["Name"] == "Flow" && d["Value"] == flow);
        let staged = dims.iter().any(|d| d["Name"] == "Stage" && d["Value"]["Ref"] == "Stage");
        (stat["Metric"]["Namespace"] == NAMESPACE && stat["Metric"]["MetricName"] == metric && for_flow && staged)
            .then(|| stat["Period"].as_u64())
            .flatten()
    })
}

#[test]
fn every_flow_with_an_slo_has_fast_and_slow_multi_window_burn_rate_alarms_over_what_the_dispatcher_emits() {
    let config = Config::load(&repo().join("config/flows.toml")).expect("flow file");
    let t = template();
    let alarms = resources_of_type(&t, "AWS::CloudWatch::Alarm");
    let composites = resources_of_type(&t, "AWS::CloudWatch::CompositeAlarm");
    let with_slo: Vec<_> = config.flows.iter().filter(|f| f.slo.is_some()).collect();
    assert!(!with_slo.is_empty(), "the example order flow declares an slo");
    for flow in with_slo {
        for w in &BURN_WINDOWS {
            // One alarm per window of the pair: spent / events over that window, above the factor.
            let mut pair = Vec::new();
            for secs in [w.long_secs, w.short_secs] {
                let (name, alarm) = alarms
                    .iter()
                    .find(|(_, a)| {
                        period_of(a, names::SLO_BUDGET_SPENT, &flow.name) == Some(u64::from(secs))
                            && period_of(a, names::SLO_EVENTS, &flow.name) == Some(u64::from(secs))
                    })
                    .unwrap_or_else(|| panic!("{}: no {} burn alarm over {secs} s", flow.name, w.name));
                let p = &alarm["Properties"];
                assert_eq!(p["Threshold"].as_f64(), Some(w.factor), "{name}");
                assert_eq!(p["ComparisonOperator"], "GreaterThanThreshold", "{name}");
                assert_eq!(p["TreatMissingData"], "notBreaching", "{name}");
                let returned: Vec<&Value> =
                    p["Metrics"].as_array().unwrap().iter().filter(|m| m["ReturnData"] == true).collect();
                assert_eq!(returned.len(), 1, "{name}");
                assert_eq!(returned[0]["Expression"], "spent / events", "{name}: not a burn rate");
                pair.push(name.as_str());
            }
            // Both windows must agree before anyone is paged.
            let (cname, composite) = composites
                .iter()
                .find(|(_, c)| {
                    let rule = c["Properties"]["AlarmRule"]["Fn::Sub"].as_str().unwrap_or_default();
                    pair.iter().all(|a| rule.contains(&format!("ALARM(\"${{{a}}}\")"))) && rule.contains(" AND ")
                })
                .unwrap_or_else(|| panic!("{}: no composite alarm ANDs {pair:?}", flow.name));
            assert_eq!(composite["Properties"]["AlarmActions"][0]["Ref"], "AlarmTopic", "{cname}");
        }
    }
}

#[test]
fn the_breaker_and_permission_alarms_watch_the_stage_totals_the_dispatcher_emits() {
    let t = template();
    for (metric, alarm_name) in
        [(names::BREAKER_HELD, "BreakerOpenAlarm"), (names::PERMISSION_FAILURE, "PermissionFailureAlarm")]
    {
        let p = &t["Resources"][alarm_name]["Properties"];
        assert_eq!(p["Namespace"], NAMESPACE, "{alarm_name}");
        assert_eq!(p["MetricName"], metric, "{alarm_name}");
        assert_eq!(p["Dimensions"].as_array().unwrap().len(), 1, "{alarm_name}: the stage total has only Stage");
        assert_eq!(p["AlarmActions"][0]["Ref"], "AlarmTopic", "{alarm_name}");
    }
    let breaker = &t["Resources"]["BreakerOpenAlarm"]["Properties"];
    assert_eq!(breaker["EvaluationPeriods"]["Ref"], "BreakerAlarmMinutes");
    assert_eq!(breaker["DatapointsToAlarm"]["Ref"], "BreakerAlarmMinutes");
}

/// Issue 10: the FIFO dispatch queue is polled only where `OrderedDelivery` says so,
/// and the mapper is told the same parameter (its cold start refuses an ordered flow
/// on a stage that does not poll the queue: `check_ordered_delivery`).
#[test]
fn the_fifo_queues_poller_and_the_mappers_ordered_check_follow_one_parameter() {
    let t = template();
    assert_eq!(t["Parameters"]["OrderedDelivery"]["Default"], "false");
    assert_eq!(t["Conditions"]["PollOrderedQueue"]["Fn::Equals"][0]["Ref"], "OrderedDelivery");
    let dispatcher = &t["Resources"]["DispatcherFunction"]["Properties"];
    let enabled = &dispatcher["Events"]["DispatchOrdered"]["Properties"]["Enabled"]["Fn::If"];
    assert_eq!(enabled[0], "PollOrderedQueue");
    assert_eq!((&enabled[1], &enabled[2]), (&Value::Bool(true), &Value::Bool(false)));
    let mapper = &t["Resources"]["MapperFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(mapper["SWITCHYARD_ORDERED_DELIVERY"]["Ref"], "OrderedDelivery");
    // The flow file shipped with the template has no ordered flow: the default holds.
    let config = Config::load(&repo().join("config/flows.toml")).unwrap();
    assert_eq!(switchyard_mapper::check_ordered_delivery(&config, None), Ok(()));
}

/// Issue 10: the optional Function URL front door exists only with `FrontDoor =
/// function-url`, is public (the webhook signature is the authentication) and comes
/// with intake's reserved concurrency as its throttle.
#[test]
fn a_function_url_front_door_is_created_only_on_request_with_reserved_concurrency_as_its_throttle() {
    let t = template();
    assert_eq!(t["Parameters"]["FrontDoor"]["Default"], "api-gateway");
    let url = &t["Resources"]["IntakeFunctionUrl"];
    assert_eq!(url["Condition"], "UseFunctionUrl");
    assert_eq!(url["Properties"]["AuthType"], "NONE");
    assert_eq!(t["Resources"]["IntakeFunctionUrlPermission"]["Condition"], "UseFunctionUrl");
    let reserved = &t["Resources"]["IntakeFunction"]["Properties"]["ReservedConcurrentExecutions"]["Fn::If"];
    assert_eq!(reserved[0], "UseFunctionUrl");
    assert_eq!(reserved[1]["Ref"], "IntakeReservedConcurrency");
}

/// Issue 11: every function deploys through its `live` alias with the stage's canary,
/// rolled back by every function-errors alarm and every DLQ-not-empty alarm of the
/// template (the list is checked against the alarms, not kept by hand), and whatever
/// invokes a function invokes that alias.
#[test]
fn every_function_deploys_through_a_canary_alias_rolled_back_by_every_errors_and_parked_alarm() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["AutoPublishAlias"], "live");
    assert_eq!(globals["DeploymentPreference"]["Type"]["Ref"], "DeploymentPreferenceType");
    assert_eq!(t["Parameters"]["DeploymentPreferenceType"]["Default"], "Canary10Percent5Minutes");
    for (name, f) in resources_of_type(&t, "AWS::Serverless::Function") {
        for key in ["AutoPublishAlias", "DeploymentPreference"] {
            assert!(f["Properties"].get(key).is_none(), "{name} overrides the stage's {key}");
        }
    }
    let mut rollback: Vec<&str> = globals["DeploymentPreference"]["Alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["Ref"].as_str().expect("an alarm by Ref"))
        .collect();
    rollback.sort_unstable();
    let mut expected: Vec<&str> = resources_of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, a)| {
            let p = &a["Properties"];
            let function_errors = p["Namespace"] == "AWS/Lambda" && p["MetricName"] == "Errors";
            let parked = p["Namespace"] == "AWS/SQS"
                && p["MetricName"] == "ApproximateNumberOfMessagesVisible"
                && p["Dimensions"][0]["Value"]["Fn::GetAtt"][0].as_str().is_some_and(|q| q.ends_with("Dlq"));
            function_errors || parked
        })
        .map(|(name, _)| name.as_str())
        .collect();
    expected.sort_unstable();
    assert!(expected.len() >= 7, "{expected:?}");
    assert_eq!(rollback, expected);

    let r = &t["Resources"];
    assert_eq!(r["IntakeFunctionUrl"]["Properties"]["Qualifier"], "live");
    assert_eq!(r["IntakeFunctionUrlPermission"]["Properties"]["FunctionName"]["Ref"], "IntakeFunctionAliaslive");
    assert_eq!(r["RotatorInvokePermission"]["Properties"]["FunctionName"]["Ref"], "RotatorFunctionAliaslive");
    assert_eq!(r["CrmDestinationSecretRotation"]["Properties"]["RotationLambdaARN"]["Ref"], "RotatorFunctionAliaslive");
}

/// Every AWS call of each function's happy path (what `make bench-pipeline` counts per
/// caller, which also checks what it met against the roles) is allowed by its role.
#[test]
fn each_functions_role_allows_every_aws_call_of_its_happy_path() {
    let t = template();
    let calls = [
        // check (consistent GetItem) -> enqueue -> accept (UpdateItem); the signing secret.
        (
            "intake",
            &[
                ("dynamodb", "GetItem"),
                ("dynamodb", "UpdateItem"),
                ("sqs", "SendMessageBatch"),
                ("secretsmanager", "GetSecretValue"),
            ][..],
        ),
        // The event source mapping's; one batch to the dispatch queue; the archive.
        (
            "mapper",
            &[("sqs", "ReceiveMessage"), ("sqs", "DeleteMessageBatch"), ("sqs", "SendMessageBatch"), ("s3", "PUT")][..],
        ),
        // Claim and complete (UpdateItem), the entity's last version, credentials, a retry's visibility.
        (
            "dispatcher",
            &[
                ("dynamodb", "UpdateItem"),
                ("dynamodb", "GetItem"),
                ("secretsmanager", "GetSecretValue"),
                ("sqs", "ChangeMessageVisibility"),
                ("sqs", "DeleteMessageBatch"),
            ][..],
        ),
    ];
    for (function, ops) in calls {
        let allowed = iam::allowed(&t, &iam::role_of(function));
        assert!(!allowed.is_empty(), "no policies on {}", iam::role_of(function));
        for (service, op) in ops {
            let action = iam::action(service, op);
            assert!(iam::covers(&allowed, &action), "{function}'s role does not allow {action}: {allowed:?}");
        }
    }
}
