//! Counters as CloudWatch Embedded Metric Format lines on stdout: CloudWatch Logs turns
//! them into metrics with no API call on the hot path.

use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "switchyard";

/// Emits `name += value` with the given dimensions (names and values must carry no
/// personal data: sources, flows, destinations, classes).
pub fn count(name: &str, value: u64, dimensions: &[(&str, &str)]) {
    println!("{}", emf_line(name, value, dimensions, crate::runtime::now_ms()));
}

fn emf_line(name: &str, value: u64, dimensions: &[(&str, &str)], now_ms: i64) -> String {
    let mut line = Map::new();
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
    for (k, v) in dimensions {
        line.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    line.insert(name.to_owned(), json!(value));
    Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_its_metric_and_dimensions() {
        let v: Value = serde_json::from_str(&emf_line("UnmatchedEvents", 1, &[("Source", "stripe")], 5)).unwrap();
        assert_eq!(v["UnmatchedEvents"], 1);
        assert_eq!(v["Source"], "stripe");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0], "Source");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "UnmatchedEvents");
    }
}
