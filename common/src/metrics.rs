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
    emit_all(std::slice::from_ref(metric));
}

/// Several metrics sharing their dimensions, in one line (one log event, one bill).
/// Inside [`per_batch`] they are kept for the batch's lines instead.
pub fn emit_all(metrics: &[Metric<'_>]) {
    let kept = BATCH.try_with(|batch| batch.borrow_mut().extend(metrics.iter().map(Figure::from))).is_ok();
    if !kept {
        let figures: Vec<Figure> = metrics.iter().map(Figure::from).collect();
        for line in batch_lines(&figures, stage(), crate::runtime::now_ms()) {
            println!("{line}");
        }
    }
}

tokio::task_local! {
    static BATCH: std::cell::RefCell<Vec<Figure>>;
}

/// Runs `work` (one invocation's batch) and emits the metrics it emitted as one line
/// per dimension set instead of one line per call: counts summed, other values (a
/// delivery's lag, the error budget it spent) as an EMF value array, one datapoint
/// each, so sums and percentiles are unchanged. A batch of ten deliveries logs one
/// metric line, not ten. Metrics emitted outside it (or in a task it spawns) are
/// written at once.
pub async fn per_batch<F: std::future::Future>(work: F) -> F::Output {
    let (out, figures) = BATCH
        .scope(std::cell::RefCell::new(Vec::new()), async {
            let out = work.await;
            (out, BATCH.with(|batch| batch.take()))
        })
        .await;
    for line in batch_lines(&figures, stage(), crate::runtime::now_ms()) {
        println!("{line}");
    }
    out
}

/// A [`Metric`] kept until its batch's lines are written.
#[derive(Debug, Clone)]
struct Figure {
    name: String,
    unit: String,
    value: f64,
    dimensions: Vec<(String, String)>,
    rollup: bool,
}

impl From<&Metric<'_>> for Figure {
    fn from(m: &Metric<'_>) -> Self {
        Self {
            name: m.name.to_owned(),
            unit: m.unit.to_owned(),
            value: m.value,
            dimensions: m.dimensions.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            rollup: m.rollup,
        }
    }
}

/// EMF takes at most 100 values per metric in one line.
const MAX_VALUES: usize = 100;

/// The EMF lines of `figures`: one per dimension set (and rollup), in first-seen
/// order; more only when a metric has over [`MAX_VALUES`] values.
fn batch_lines(figures: &[Figure], stage: &str, now_ms: i64) -> Vec<String> {
    // (dimensions, rollup) → [(name, unit, values)], both in first-seen order.
    type Set<'f> = (&'f [(String, String)], bool);
    type Values<'f> = Vec<(&'f str, &'f str, Vec<f64>)>;
    let mut groups: Vec<(Set<'_>, Values<'_>)> = Vec::new();
    for f in figures {
        let set = (f.dimensions.as_slice(), f.rollup);
        let at = match groups.iter().position(|(k, _)| *k == set) {
            Some(i) => i,
            None => {
                groups.push((set, Vec::new()));
                groups.len() - 1
            }
        };
        let metrics = &mut groups[at].1;
        match metrics.iter_mut().find(|(name, unit, _)| *name == f.name && *unit == f.unit) {
            Some((_, unit, values)) if *unit == "Count" => values[0] += f.value,
            Some((_, _, values)) => values.push(f.value),
            None => metrics.push((&f.name, &f.unit, vec![f.value])),
        }
    }
    let mut lines = Vec::new();
    for ((dimensions, rollup), metrics) in &groups {
        let longest = metrics.iter().map(|(_, _, v)| v.len()).max().unwrap_or(0);
        for chunk in 0..longest.div_ceil(MAX_VALUES) {
            let part: Vec<(&str, &str, &[f64])> = metrics
                .iter()
                .filter_map(|(name, unit, values)| {
                    let from = chunk * MAX_VALUES;
                    (from < values.len()).then(|| (*name, *unit, &values[from..values.len().min(from + MAX_VALUES)]))
                })
                .collect();
            lines.push(emf_line(&part, dimensions, *rollup, stage, now_ms));
        }
    }
    lines
}

fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

fn emf_line(
    metrics: &[(&str, &str, &[f64])],
    dimensions: &[(String, String)],
    rollup: bool,
    stage: &str,
    now_ms: i64,
) -> String {
    let mut line = Map::new();
    let dimensions: Vec<(&str, &str)> =
        std::iter::once(("Stage", stage)).chain(dimensions.iter().map(|(k, v)| (k.as_str(), v.as_str()))).collect();
    let dims: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    let sets = if rollup && dims.len() > 1 { json!([dims, ["Stage"]]) } else { json!([dims]) };
    let declared: Vec<Value> = metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
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
    for (name, _, values) in metrics {
        let value = match values {
            [one] => number(*one),
            many => Value::Array(many.iter().map(|v| number(*v)).collect()),
        };
        line.insert((*name).to_owned(), value);
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
        let lines = batch_lines(&[Figure::from(&metric)], "prod", 5);
        assert_eq!(lines.len(), 1);
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
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
        let figures = [
            Metric { name: "DeliveryLag", value: 1250.0, unit: "Milliseconds", dimensions: &dims, rollup: true },
            Metric { name: "SloBudgetSpent", value: 0.5, unit: "None", dimensions: &dims, rollup: true },
        ];
        let lines = batch_lines(&figures.iter().map(Figure::from).collect::<Vec<_>>(), "prod", 5);
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Stage", "Flow"], ["Stage"]]));
        assert_eq!(v["DeliveryLag"], 1250);
        assert_eq!(v["SloBudgetSpent"], 0.5);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Unit"], "None");
    }

    #[test]
    fn a_batch_writes_one_line_per_dimension_set_summing_counts_and_listing_other_values() {
        let orders = [("Flow", "orders")];
        let refunds = [("Flow", "refunds")];
        let mut figures = Vec::new();
        for lag in [100.0, 250.0, 4000.0] {
            figures.push(Metric { name: "Delivered", value: 1.0, unit: "Count", dimensions: &orders, rollup: false });
            figures.push(Metric {
                name: "DeliveryLag",
                value: lag,
                unit: "Milliseconds",
                dimensions: &orders,
                rollup: false,
            });
        }
        figures.push(Metric { name: "Delivered", value: 1.0, unit: "Count", dimensions: &refunds, rollup: false });
        figures.push(Metric { name: "Held", value: 1.0, unit: "Count", dimensions: &orders, rollup: true });
        let lines = batch_lines(&figures.iter().map(Figure::from).collect::<Vec<_>>(), "prod", 5);
        let v: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(v.len(), 3, "{lines:?}");
        assert_eq!((&v[0]["Flow"], &v[0]["Delivered"]), (&json!("orders"), &json!(3)));
        assert_eq!(v[0]["DeliveryLag"], json!([100, 250, 4000]), "one datapoint per delivery");
        assert_eq!((&v[1]["Flow"], &v[1]["Delivered"]), (&json!("refunds"), &json!(1)));
        assert_eq!(v[2]["Held"], 1);
        assert_eq!(v[2]["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Stage", "Flow"], ["Stage"]]));
    }

    #[test]
    fn more_than_a_hundred_values_of_one_metric_spill_into_another_line() {
        let dims = [("Flow", "orders")];
        let figures: Vec<Figure> = (0..150)
            .map(|i| {
                Figure::from(&Metric {
                    name: "DeliveryLag",
                    value: f64::from(i),
                    unit: "Milliseconds",
                    dimensions: &dims,
                    rollup: false,
                })
            })
            .collect();
        let lines = batch_lines(&figures, "prod", 5);
        let v: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["DeliveryLag"].as_array().unwrap().len(), 100);
        assert_eq!(v[1]["DeliveryLag"].as_array().unwrap().len(), 50);
    }

    #[tokio::test]
    async fn metrics_emitted_inside_a_batch_are_kept_for_its_lines_and_outside_one_are_not() {
        let kept = per_batch(async {
            count("Delivered", 1, &[("Flow", "orders")]);
            count("Delivered", 1, &[("Flow", "orders")]);
            BATCH.with(|b| b.borrow().len())
        })
        .await;
        assert_eq!(kept, 2, "both kept until the batch ends");
        assert!(BATCH.try_with(|_| ()).is_err(), "no batch outside per_batch: emitted at once");
    }
}
