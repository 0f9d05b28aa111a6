//! Counters as CloudWatch Embedded Metric Format lines on stdout: CloudWatch Logs turns
//! them into metrics with no API call on the hot path.

use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "switchyard";

/// Metric names the template's alarms watch (a test on the template checks them).
pub mod names {
    /// Per flow with an SLO: one per final outcome.
    pub const SLO_EVENTS: &str = "SloEvents";
    /// Per flow with an SLO: `1 / (1 − objective)` per late or parked event, else 0.
    pub const SLO_BUDGET_SPENT: &str = "SloBudgetSpent";
    /// Per destination and stage-wide: a delivery held back by an open breaker.
    pub const BREAKER_HELD: &str = "BreakerHeld";
    /// Per destination and stage-wide: credentials refused after a refresh.
    pub const PERMISSION_FAILURE: &str = "PermissionFailure";
    /// Per polling source and stage-wide: a poll run that stopped early (the source
    /// unreachable or refusing, a page unreadable, the ledger or queue unavailable).
    pub const POLL_FAILED: &str = "PollFailed";
    /// Per flow and stage-wide: deliveries the ledger says were made that the
    /// destination does not have (the reconciler's read-back answered 404/410).
    pub const RECONCILE_MISSING: &str = "ReconcileMissing";
}

/// Multi-window burn-rate alerting over an SLO's error budget (the SRE workbook's
/// pairs): the burn rate `spent / events` must exceed `factor` over both the long and
/// the short window. Fast: 2 % of a 30-day budget in an hour; slow: 5 % in six hours.
pub struct BurnWindow {
    pub name: &'static str,
    pub long_secs: u32,
    pub short_secs: u32,
    pub factor: f64,
}

pub const BURN_WINDOWS: [BurnWindow; 2] = [
    BurnWindow { name: "fast", long_secs: 3_600, short_secs: 300, factor: 14.4 },
    BurnWindow { name: "slow", long_secs: 21_600, short_secs: 1_800, factor: 6.0 },
];

/// The deployment stage (`SWITCHYARD_STAGE`), the first dimension of every metric, so
/// that a dashboard or alarm of one stage never counts another's events.
fn stage() -> &'static str {
    static STAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STAGE.get_or_init(|| std::env::var("SWITCHYARD_STAGE").unwrap_or_else(|_| "local".to_owned()))
}

/// Emits `name += value` with `Stage` and the given dimensions (names and values must
/// carry no personal data: functions, sources, flows, destinations, classes).
pub fn count(name: &str, value: u64, dimensions: &[(&str, &str)]) {
    emit(&Metric { name, value: value as f64, unit: "Count", dimensions, rollup: false });
}

/// Like [`count`], and also as a stage-wide total (dimension `Stage` alone): what one
/// alarm watches for every destination or flow of the flow file, whatever their names.
pub fn count_with_total(name: &str, value: u64, dimensions: &[(&str, &str)]) {
    emit(&Metric { name, value: value as f64, unit: "Count", dimensions, rollup: true });
}

/// One EMF value: a count, a latency in milliseconds, a share of an error budget.
pub struct Metric<'a> {
    pub name: &'a str,
    pub value: f64,
    /// A CloudWatch unit: `Count`, `Milliseconds`, `None`.
    pub unit: &'a str,
    pub dimensions: &'a [(&'a str, &'a str)],
    /// Also publish it with the `Stage` dimension alone.
    pub rollup: bool,
}

pub fn emit(metric: &Metric<'_>) {
    println!("{}", emf_line(std::slice::from_ref(metric), stage(), crate::runtime::now_ms()));
}

/// Several metrics sharing their dimensions, in one line (one log event, one bill).
pub fn emit_all(metrics: &[Metric<'_>]) {
    println!("{}", emf_line(metrics, stage(), crate::runtime::now_ms()));
}

fn emf_line(metrics: &[Metric<'_>], stage: &str, now_ms: i64) -> String {
    let mut line = Map::new();
    let first = metrics.first().map(|m| m.dimensions).unwrap_or_default();
    let rollup = metrics.iter().any(|m| m.rollup);
    let dimensions: Vec<(&str, &str)> = std::iter::once(("Stage", stage)).chain(first.iter().copied()).collect();
    let dims: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    let sets = if rollup && dims.len() > 1 { json!([dims, ["Stage"]]) } else { json!([dims]) };
    let declared: Vec<Value> = metrics.iter().map(|m| json!({"Name": m.name, "Unit": m.unit})).collect();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": sets,
                "Metrics": declared,
            }],
        }),
    );
    for (k, v) in &dimensions {
        line.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    for m in metrics {
        let value = if m.value.fract() == 0.0 && m.value.abs() < 9e15 { json!(m.value as i64) } else { json!(m.value) };
        line.insert(m.name.to_owned(), value);
    }
    Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_its_metric_and_dimensions_with_the_stage_first() {
        let metric = Metric {
            name: "UnmatchedEvents",
            value: 1.0,
            unit: "Count",
            dimensions: &[("Source", "stripe")],
            rollup: false,
        };
        let v: Value = serde_json::from_str(&emf_line(&[metric], "prod", 5)).unwrap();
        assert_eq!(v["UnmatchedEvents"], 1);
        assert_eq!(v["Stage"], "prod");
        assert_eq!(v["Source"], "stripe");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0], "Stage");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][1], "Source");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "UnmatchedEvents");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_rolled_up_line_also_declares_the_stage_alone_and_keeps_fractions() {
        let dims = [("Flow", "orders")];
        let line = emf_line(
            &[
                Metric { name: "DeliveryLag", value: 1250.0, unit: "Milliseconds", dimensions: &dims, rollup: true },
                Metric { name: "SloBudgetSpent", value: 0.5, unit: "None", dimensions: &dims, rollup: true },
            ],
            "prod",
            5,
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Stage", "Flow"], ["Stage"]]));
        assert_eq!(v["DeliveryLag"], 1250);
        assert_eq!(v["SloBudgetSpent"], 0.5);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Unit"], "None");
    }
}
