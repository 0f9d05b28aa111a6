use serde_json::{json, Value};
use tracing::{field, info, info_span, warn};

use super::capture::Buffer;

/// The raw lines logged by `f` under the production subscriber.
fn raw_lines(f: impl FnOnce()) -> Vec<String> {
    let buffer = Buffer::default();
    tracing::subscriber::with_default(buffer.subscriber(), f);
    buffer.lines()
}

fn lines(f: impl FnOnce()) -> Vec<Value> {
    raw_lines(f).iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[test]
fn a_line_carries_the_fields_of_every_enclosing_span_not_only_the_innermost() {
    let out = lines(|| {
        // A span's parent is the span current where it is created.
        info_span!("record", message_id = "m-1").in_scope(|| {
            info_span!("envelope", correlation_id = "c-1", event_id = "evt_1", source = "stripe").in_scope(|| {
                info_span!("flow", flow = "f-1", destination = "crm").in_scope(|| warn!(reason = "no email", "parked"))
            })
        });
    });
    assert_eq!(out.len(), 1);
    let line = &out[0];
    for (key, value) in [
        ("message_id", "m-1"),
        ("correlation_id", "c-1"),
        ("event_id", "evt_1"),
        ("source", "stripe"),
        ("flow", "f-1"),
        ("destination", "crm"),
        ("reason", "no email"),
        ("message", "parked"),
        ("level", "WARN"),
    ] {
        assert_eq!(line[key], json!(value), "{key} in {line}");
    }
    assert_eq!(line["span"], json!({ "name": "flow" }), "the innermost span is named");
}

#[test]
fn an_unsampled_xray_trace_id_is_left_off_the_line_and_a_sampled_one_kept() {
    let out = lines(|| {
        let unsampled = "Root=1-00000000-000000000000000000000000;Sampled=0";
        info_span!("invoke", requestId = "r-1", xrayTraceId = unsampled).in_scope(|| info!("unsampled"));
        let sampled = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1";
        info_span!("invoke", requestId = "r-2", xrayTraceId = sampled).in_scope(|| info!("sampled"));
    });
    assert_eq!(out[0]["requestId"], json!("r-1"));
    assert!(out[0].get("xrayTraceId").is_none(), "{}", out[0]);
    assert_eq!(out[1]["xrayTraceId"], json!("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"));
}

#[test]
fn an_inner_span_overrides_an_outer_one_and_the_event_overrides_both() {
    let raw = raw_lines(|| {
        info_span!("envelope", flow = "outer", destination = "outer").in_scope(|| {
            info_span!("flow", flow = "inner").in_scope(|| {
                info!("from the inner span");
                info!(destination = "event", "with its own destination");
            })
        });
    });
    let out: Vec<Value> = raw.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((&out[0]["flow"], &out[0]["destination"]), (&json!("inner"), &json!("outer")));
    assert_eq!((&out[1]["flow"], &out[1]["destination"]), (&json!("inner"), &json!("event")));
    for line in &raw {
        assert_eq!(line.matches("\"flow\":").count(), 1, "each key once: {line}");
        assert_eq!(line.matches("\"destination\":").count(), 1, "each key once: {line}");
    }
}

#[test]
fn a_field_recorded_on_an_entered_span_is_on_every_later_line() {
    let out = lines(|| {
        let span = info_span!("intake", correlation_id = "c-2", event_id = field::Empty);
        span.in_scope(|| {
            info!("before the event id is known");
            tracing::Span::current().record("event_id", "evt_2");
            info!("after");
        });
    });
    assert_eq!(out[0]["correlation_id"], "c-2");
    assert!(out[0].get("event_id").is_none(), "an empty field is not written: {}", out[0]);
    assert_eq!(out[1]["event_id"], "evt_2");
    assert_eq!(out[1]["correlation_id"], "c-2");
}

#[test]
fn the_line_reads_timestamp_level_fields_message_span_in_that_order() {
    let raw = raw_lines(|| {
        info_span!("delivery", event_id = "evt_3").in_scope(|| info!(status = 201, "delivered"));
    });
    let line = &raw[0];
    let at = |key: &str| line.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("no {key} in {line}"));
    let order = [at("timestamp"), at("level"), at("event_id"), at("status"), at("message"), at("span")];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{line}");
    assert!(line.starts_with("{\"timestamp\":\"") && line.ends_with('}'), "{line}");
    let value: Value = serde_json::from_str(line).unwrap();
    assert_eq!(value["status"], json!(201), "numbers stay numbers");
    let ts = value["timestamp"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "RFC 3339 timestamp: {ts}");
}

#[test]
fn fields_named_like_the_formatters_own_keys_are_prefixed_not_duplicated() {
    let raw = raw_lines(|| {
        info_span!("odd", level = "span-level", span = "x").in_scope(|| info!(timestamp = 7, "m"));
    });
    let line = &raw[0];
    for key in ["timestamp", "level", "message", "span"] {
        assert_eq!(line.matches(&format!("\"{key}\":")).count(), 1, "{key} once: {line}");
    }
    let value: Value = serde_json::from_str(line).unwrap();
    assert_eq!(value["level"], "INFO");
    assert_eq!(value["field.level"], "span-level");
    assert_eq!(value["field.span"], "x");
    assert_eq!(value["field.timestamp"], 7);
}

#[test]
fn a_line_outside_any_span_has_no_span_key() {
    let out = lines(|| info!(answer = true, "alone"));
    assert_eq!(out[0]["answer"], true);
    assert_eq!(out[0]["message"], "alone");
    assert!(out[0].get("span").is_none());
}

#[test]
fn span_fields_pass_the_redacting_writer_like_every_other_field() {
    let secret = "sk_logging_test_5f1c0e9a";
    crate::redact::register_secret(secret);
    let raw = raw_lines(|| {
        info_span!("delivery", event_id = "evt_4", note = secret).in_scope(|| info!(contact = "ada@example.com", "m"));
    });
    assert!(!raw[0].contains(secret) && !raw[0].contains("ada@example.com"), "{}", raw[0]);
    assert!(raw[0].contains("evt_4"), "ids survive: {}", raw[0]);
}
