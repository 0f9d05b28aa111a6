//! Compiling and running mappings, their error reasons, and the example Stripe mapping.

use super::*;
use crate::contract::Contract;
use serde_json::json;

const STRIPE_TO_CRM: &str = include_str!("../../../config/mappings/stripe_payment_to_crm_contact.jq");
const CRM_CONTACT: &str = include_str!("../../../config/contracts/crm_contact.schema.json");

fn program(code: &str) -> JqProgram {
    JqProgram::compile("test.jq", code).expect("compiles")
}

fn stripe_to_crm() -> JqProgram {
    JqProgram::compile("stripe_payment_to_crm_contact.jq", STRIPE_TO_CRM).expect("compiles")
}

/// A `payment_intent.succeeded` event as Stripe sends it (trimmed of fields
/// the mapping ignores, but shaped like the real thing).
fn payment_intent_succeeded() -> Value {
    json!({
        "id": "evt_3PqRsT2eZvKYlo2C1a2b3c4d",
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1718000000,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": "req_8fJk2LmN0pQr", "idempotency_key": "b7c1d6e2-5f3a-4c8e-9a1b-2d3e4f5a6b7c"},
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": "pi_3PqRsT2eZvKYlo2C1x2y3z4w",
                "object": "payment_intent",
                "amount": 4999,
                "amount_capturable": 0,
                "amount_received": 4999,
                "capture_method": "automatic",
                "client_secret": "pi_3PqRsT2eZvKYlo2C1x2y3z4w_secret_abc",
                "created": 1717999990,
                "currency": "eur",
                "customer": "cus_QabcDEF123",
                "description": "Order #1042",
                "latest_charge": "ch_3PqRsT2eZvKYlo2C1q2w3e4r",
                "livemode": false,
                "metadata": {"order_id": "1042"},
                "payment_method": "pm_1PqRsT2eZvKYlo2Cabcdefgh",
                "payment_method_types": ["card"],
                "receipt_email": "jenny.rosen@example.com",
                "shipping": {
                    "address": {
                        "city": "Berlin", "country": "DE", "line1": "Unter den Linden 1",
                        "line2": null, "postal_code": "10117", "state": null
                    },
                    "carrier": null,
                    "name": "Jenny Rosen",
                    "phone": null,
                    "tracking_number": null
                },
                "status": "succeeded"
            }
        }
    })
}

#[test]
fn compile_error_is_reported_with_the_name_and_position() {
    let err = JqProgram::compile("broken.jq", "{email: .a,\n  name: (.b | }").unwrap_err();
    let MappingError::Compile { name, message } = &err else {
        panic!("expected a compile error, got {err:?}");
    };
    assert_eq!(name, "broken.jq");
    assert!(message.contains("line 2"), "{message}");
    assert!(err.reason().starts_with("mapping broken.jq does not compile: "));
}

#[test]
fn a_deferred_program_compiles_on_first_use_and_a_broken_one_fails_every_run_with_its_compile_error() {
    let good = JqProgram::deferred("good.jq", "def twice: . * 2; .n | twice");
    assert_eq!(good.run_one(&json!({"n": 21})).unwrap(), json!(42));
    good.check().expect("already compiled");
    let broken = JqProgram::deferred("broken.jq", "{email: .a,\n  name: (.b | }");
    for _ in 0..2 {
        let err = broken.run_one(&json!({})).unwrap_err();
        assert!(matches!(&err, MappingError::Compile { message, .. } if message.contains("line 2")), "{err:?}");
    }
    assert!(broken.check().is_err());
}

#[test]
fn undefined_filter_is_a_compile_error() {
    let err = JqProgram::compile("typo.jq", ".email | ascii_upcas").unwrap_err();
    let reason = err.reason();
    assert!(reason.contains("undefined filter `ascii_upcas/0`"), "{reason}");
    assert!(reason.contains("line 1, column 10"), "{reason}");
}

#[test]
fn environment_and_clock_are_not_available_to_mappings() {
    for code in ["env.AWS_SECRET_ACCESS_KEY", "now"] {
        let err = JqProgram::compile("sneaky.jq", code).unwrap_err();
        assert!(err.reason().contains("not available in mappings"), "{err}");
    }
}

#[test]
fn mapping_produces_an_object() {
    let out = program("{id: .id, total: (.items | map(.price) | add)}")
        .run_one(&json!({"id": "o1", "items": [{"price": 2}, {"price": 3}]}))
        .unwrap();
    assert_eq!(out, json!({"id": "o1", "total": 5}));
}

#[test]
fn raised_error_surfaces_with_its_message() {
    let err = program(r#"error("receipt_email is missing")"#).run_one(&json!({})).unwrap_err();
    assert!(matches!(&err, MappingError::Raised { message, .. } if message == "receipt_email is missing"), "{err:?}");
    assert_eq!(err.reason(), "mapping test.jq raised: receipt_email is missing");
}

#[test]
fn raised_non_string_value_is_not_shown() {
    let err = program("error(.)").run_one(&json!({"email": "a@b.example"})).unwrap_err();
    assert!(matches!(&err, MappingError::Raised { .. }), "{err:?}");
    assert!(!err.reason().contains("a@b.example"), "{err}");
}

#[test]
fn no_output_is_an_error() {
    let err = program("empty").run_one(&json!(1)).unwrap_err();
    assert!(matches!(err, MappingError::NoOutput { .. }), "{err:?}");
}

#[test]
fn two_outputs_are_an_error() {
    let err = program(".a, .b").run_one(&json!({})).unwrap_err();
    assert!(matches!(err, MappingError::ManyOutputs { count: 2, .. }), "{err:?}");
}

#[test]
fn endless_outputs_are_counted_up_to_a_cap() {
    let err = program("repeat(1)").run_one(&json!(null)).unwrap_err();
    assert!(matches!(err, MappingError::ManyOutputs { count: 100, .. }), "{err:?}");
}

#[test]
fn error_after_the_first_output_is_the_error() {
    let err = program(r#"1, error("second failed")"#).run_one(&json!(null)).unwrap_err();
    assert!(matches!(err, MappingError::Raised { .. }), "{err:?}");
}

#[test]
fn run_key_renders_strings_and_numbers_and_refuses_null() {
    let input = json!({"id": "evt_1", "seq": 42, "ratio": 1.5});
    assert_eq!(program(".id").run_key(&input).unwrap(), "evt_1");
    assert_eq!(program(".seq").run_key(&input).unwrap(), "42");
    assert_eq!(program(".ratio").run_key(&input).unwrap(), "1.5");
    let err = program(".missing").run_key(&input).unwrap_err();
    assert!(matches!(err, MappingError::NotAKey { found: "null", .. }), "{err:?}");
    let err = program(".").run_key(&input).unwrap_err();
    assert!(matches!(err, MappingError::NotAKey { found: "object", .. }), "{err:?}");
}

#[test]
fn runtime_type_error_is_an_error_without_the_value() {
    let err = program(".email.domain").run_one(&json!({"email": "jenny.rosen@example.com"})).unwrap_err();
    let MappingError::Runtime { message, .. } = &err else {
        panic!("expected a runtime error, got {err:?}");
    };
    assert!(!message.contains("jenny"), "{message}");
    assert!(message.contains("<string>"), "{message}");
}

#[test]
fn native_errors_do_not_quote_the_input() {
    let err = program("fromjson").run_one(&json!("jenny.rosen@example.com")).unwrap_err();
    assert!(!err.reason().contains("jenny"), "{err}");
    let err = program("1 + .").run_one(&json!("4242424242424242")).unwrap_err();
    assert!(!err.reason().contains("4242"), "{err}");
}

#[test]
fn halt_is_an_error_not_an_exit() {
    let err = program("halt_error").run_one(&json!("bye")).unwrap_err();
    assert!(matches!(err, MappingError::Runtime { .. }), "{err:?}");
}

#[test]
fn debug_passes_values_through_without_logging() {
    assert_eq!(program("debug | .a").run_one(&json!({"a": 1})).unwrap(), json!(1));
}

#[test]
fn std_functions_work() {
    let input = json!({"name": "jenny", "n": 7, "items": [1, 2, 3, 4]});
    let cases = [
        (".name | ascii_upcase", json!("JENNY")),
        (".nickname // \"none\"", json!("none")),
        ("[.items[] | select(. > 2)]", json!([3, 4])),
        ("[has(\"name\"), has(\"nickname\")]", json!([true, false])),
        (".n | tostring", json!("7")),
        (".items | length", json!(4)),
        ("[.items[] | . * 2] | add", json!(20)),
        ("\"a-b-c\" | split(\"-\")", json!(["a", "b", "c"])),
        (".name | test(\"^j\")", json!(true)),
    ];
    for (code, expected) in cases {
        assert_eq!(program(code).run_one(&input).unwrap(), expected, "{code}");
    }
}

#[test]
fn odd_inputs_and_numbers_do_not_panic() {
    let huge = serde_json::from_str::<Value>("1e300").unwrap();
    assert_eq!(program(". * 1e10").run_one(&huge).unwrap(), json!(f64::MAX));
    assert_eq!(program("nan").run_one(&json!(null)).unwrap(), json!(null));
    assert_eq!(program(".").run_one(&json!(u64::MAX)).unwrap(), json!(u64::MAX));
    let big = program("12345678901234567890123 * 10").run_one(&json!(null)).unwrap();
    assert!(big.is_number(), "{big}");
    for input in [json!(3), json!("s"), json!([1]), json!(true)] {
        let err = program(".data.object.id").run_one(&input).unwrap_err();
        assert!(matches!(err, MappingError::Runtime { .. }), "{err:?}");
    }
    assert_eq!(program(".data.object.id").run_one(&json!(null)).unwrap(), json!(null));
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let mut deep = json!(1);
    for _ in 0..MAX_DEPTH + 10 {
        deep = json!([deep]);
    }
    let err = program(".").run_one(&deep).unwrap_err();
    assert!(matches!(err, MappingError::TooDeep { which: "input", .. }), "{err:?}");
    // Tear down iteratively: serde_json drops nested values recursively.
    while let Value::Array(mut items) = deep {
        deep = items.pop().unwrap_or(Value::Null);
    }

    let code = format!("reduce range({}) as $i (1; [.])", MAX_DEPTH + 10);
    let err = program(&code).run_one(&json!(null)).unwrap_err();
    assert!(matches!(err, MappingError::TooDeep { which: "output", .. }), "{err:?}");
}

#[test]
fn non_string_object_keys_are_an_error() {
    let err = program("{(1): 2}").run_one(&json!(null));
    assert!(err.is_err(), "{err:?}");
}

#[test]
fn program_is_send_and_sync_and_debug_shows_only_the_name() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<JqProgram>();
    assert_eq!(format!("{:?}", program(".")), r#"JqProgram { name: "test.jq" }"#);
}

#[test]
fn stripe_payment_maps_to_the_exact_crm_contact() {
    let contact = stripe_to_crm().run_one(&payment_intent_succeeded()).unwrap();
    assert_eq!(
        contact,
        json!({
            "email": "jenny.rosen@example.com",
            "name": "Jenny Rosen",
            "source": "stripe_payment",
            "total_spent_minor": 4999,
            "currency": "EUR",
            "status": "customer"
        })
    );
}

#[test]
fn stripe_payment_without_shipping_has_a_null_name() {
    let mut event = payment_intent_succeeded();
    event["data"]["object"]["shipping"] = Value::Null;
    let contact = stripe_to_crm().run_one(&event).unwrap();
    assert_eq!(contact["name"], Value::Null);
}

#[test]
fn stripe_payment_without_receipt_email_raises() {
    let expected = "receipt_email is missing: a contact needs an email";
    for email in [None, Some(Value::Null), Some(json!("")), Some(json!("   "))] {
        let mut event = payment_intent_succeeded();
        let pi = event["data"]["object"].as_object_mut().unwrap();
        match email {
            None => pi.remove("receipt_email"),
            Some(v) => pi.insert("receipt_email".into(), v),
        };
        let err = stripe_to_crm().run_one(&event).unwrap_err();
        assert!(matches!(&err, MappingError::Raised { message, .. } if message == expected), "{err:?}");
        assert_eq!(err.reason(), format!("mapping stripe_payment_to_crm_contact.jq raised: {expected}"));
    }
}

#[test]
fn stripe_contact_satisfies_the_crm_contract() {
    let schema: Value = serde_json::from_str(CRM_CONTACT).unwrap();
    let contract = Contract::compile("crm_contact", &schema).unwrap();
    let contact = stripe_to_crm().run_one(&payment_intent_succeeded()).unwrap();
    contract.validate(&contact).unwrap();

    let mut event = payment_intent_succeeded();
    event["data"]["object"]["shipping"] = Value::Null;
    contract.validate(&stripe_to_crm().run_one(&event).unwrap()).unwrap();
}

#[test]
fn a_program_that_never_ends_is_stopped_at_the_time_limit() {
    let started = std::time::Instant::now();
    let err = program("def f: f; f").run_one(&json!({"id": "evt_1"})).unwrap_err();
    assert!(started.elapsed() < TIME_LIMIT * 3, "{:?}", started.elapsed());
    let MappingError::Runaway { bound, .. } = &err else { panic!("expected a runaway, got {err:?}") };
    assert!(bound.contains("time limit of 1000 ms"), "{bound}");
    assert!(!err.is_transient());
}

#[test]
fn an_output_over_the_size_limit_is_a_runaway() {
    let err = program(r#""x" * 1100000"#).run_one(&json!(null)).unwrap_err();
    let MappingError::Runaway { bound, .. } = &err else { panic!("expected a runaway, got {err:?}") };
    assert!(bound.contains("output is over the limit of 1048576 bytes"), "{bound}");
    assert_eq!(program(r#""x" * 1000 | length"#).run_one(&json!(null)).unwrap(), json!(1000));
}

#[test]
fn recursion_without_end_is_stopped_before_it_overflows_the_stack() {
    for code in ["def f: [f]; f", "def f: 1 + f; f", "def f(g): [f(g)]; f(.)", "def f: def g: [f]; g; f"] {
        let err = program(code).run_one(&json!(null)).unwrap_err();
        let MappingError::Runaway { bound, .. } = &err else { panic!("{code}: expected a runaway, got {err:?}") };
        assert!(bound.contains("recursion deeper than the stack"), "{code}: {bound}");
    }
    // Deep but finite recursion is fine.
    let code = "def count($n): if $n == 0 then 0 else 1 + count($n - 1) end; count(500)";
    assert_eq!(program(code).run_one(&json!(null)).unwrap(), json!(500));
}

#[test]
fn an_idempotency_key_from_content_is_a_hash_of_it_and_a_plain_key_is_kept() {
    let content = JqProgram::compile("k", "[.form, (.email | ascii_downcase)]").unwrap();
    let a = content.run_idempotency_key(&serde_json::json!({"form": "demo", "email": "Ada@Example.com"})).unwrap();
    let b =
        content.run_idempotency_key(&serde_json::json!({"form": "demo", "email": "ada@example.com", "x": 1})).unwrap();
    assert_eq!(a, b, "the same content gives the same key");
    assert_eq!(a.len(), 64);
    assert!(!a.contains("example"), "no field in the clear");
    let plain = JqProgram::compile("k", ".id").unwrap();
    assert_eq!(plain.run_idempotency_key(&serde_json::json!({"id": "ord_1"})).unwrap(), "ord_1");
    assert!(plain.run_idempotency_key(&serde_json::json!({"id": null})).is_err());
}
