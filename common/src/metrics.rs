//! Counters as CloudWatch Embedded Metric Format lines on stdout: CloudWatch Logs turns
//! them into metrics with no API call on the hot path.

use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "switchyard";

/// The deployment stage (`SWITCHYARD_STAGE`), the first dimension of every metric, so
/// that a dashboard or alarm of one stage never counts another's events.
fn stage() -> &'static str {
    static STAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STAGE.get_or_init(|| std::env::var("SWITCHYARD_STAGE").unwrap_or_else(|_| "local".to_owned()))
}

/// Emits `name += value` with `Stage` and the given dimensions (names and values must
/// carry no personal data: functions, sources, flows, destinations, classes).
pub fn count(name: &str, value: u64, dimensions: &[(&str, &str)]) {
    println!("{}", emf_line(name, value, stage(), dimensions, crate::runtime::now_ms()));
}

fn emf_line(name: &str, value: u64, stage: &str, dimensions: &[(&str, &str)], now_ms: i64) -> String {
    let mut line = Map::new();
    let dimensions: Vec<(&str, &str)> = std::iter::once(("Stage", stage)).chain(dimensions.iter().copied()).collect();
    let dims: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dims],
                "Metrics": [{"Name": name, "Unit": "Count"}],
            }],
        }),
    );
    for (k, v) in &dimensions {
        line.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    line.insert(name.to_owned(), json!(value));
    Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_its_metric_and_dimensions_with_the_stage_first() {
        let v: Value =
            serde_json::from_str(&emf_line("UnmatchedEvents", 1, "prod", &[("Source", "stripe")], 5)).unwrap();
        assert_eq!(v["UnmatchedEvents"], 1);
        assert_eq!(v["Stage"], "prod");
        assert_eq!(v["Source"], "stripe");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0], "Stage");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][1], "Source");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "UnmatchedEvents");
    }
}
