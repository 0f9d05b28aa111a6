//! Which fields two JSON values differ in, as dotted paths: what `flows diff` groups
//! events by and what the reconciler reports for a record the destination altered.

use serde_json::Value;

/// The dotted paths at which `a` and `b` differ (`body.status`, `lines.0.sku`); empty
/// when they are equal. `(whole value)` when they differ as a whole at the top.
pub fn changed(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(a, b, "", &mut out);
    out
}

/// Objects key by key, arrays of the same length item by item, anything else as a whole.
fn walk(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    let here = |key: &str| if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => walk(p, q, &here(k), out),
                    _ => out.push(here(k)),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (n, (p, q)) in x.iter().zip(y).enumerate() {
                walk(p, q, &here(&n.to_string()), out);
            }
        }
        _ if a != b => out.push(if at.is_empty() { "(whole value)".to_owned() } else { at.to_owned() }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_that_differ_are_named_by_path_and_equal_values_name_none() {
        let a = json!({"body": {"status": "customer", "name": "A", "lines": [{"sku": "x"}]}, "url": "/a"});
        assert!(changed(&a, &a).is_empty());
        let b = json!({"body": {"status": "lead", "name": "A", "lines": [{"sku": "y"}], "extra": 1}, "url": "/a"});
        assert_eq!(changed(&a, &b), ["body.extra", "body.lines.0.sku", "body.status"]);
        assert_eq!(changed(&json!([1]), &json!([1, 2])), ["(whole value)"], "arrays of other lengths differ whole");
    }
}
