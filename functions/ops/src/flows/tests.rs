use super::*;
use switchyard_common::archive::{self, envelope_key, ArchiveWriter, MemoryArchive};
use switchyard_common::envelope::Mode;
use switchyard_common::mapping::JqProgram;

const FLOW: &str = "stripe-payment-to-crm-contact";

fn request(status: &str, name: &str, key: &str) -> Side {
    Side::Request(Box::new(Request {
        method: "POST".into(),
        url: "http://crm/api/contacts".into(),
        headers: BTreeMap::from([("idempotency-key".to_owned(), key.to_owned())]),
        body: json!({"status": status, "name": name}),
    }))
}

fn pair(event: &str, from: Side, to: Side) -> Pair {
    Pair { event_id: event.into(), source: "stripe".into(), from, to }
}

fn default_key(event: &str, version: u32) -> String {
    Delivery::default_key("stripe", event, FLOW, version)
}

#[test]
fn requests_equal_but_for_each_versions_default_idempotency_key_are_identical() {
    let pairs: Vec<Pair> = (0..3)
        .map(|n| {
            let e = format!("evt_{n}");
            pair(&e, request("customer", "A", &default_key(&e, 1)), request("customer", "A", &default_key(&e, 2)))
        })
        .collect();
    let c = compare(FLOW, 1, 2, "diff", &pairs);
    assert_eq!((c.events, c.identical, c.different_count()), (3, 3, 0), "{c:?}");
    // A custom key that changes is a difference.
    let changed = [pair("e", request("customer", "A", "order-1"), request("customer", "A", "order-2"))];
    let c = compare(FLOW, 1, 2, "diff", &changed);
    assert_eq!(c.different[0].fields, ["headers.idempotency-key"]);
}

#[test]
fn differences_are_grouped_by_the_fields_that_differ_with_one_redacted_diff_per_group() {
    let pairs = [
        pair("evt_a", request("customer", "A", "k"), request("lead", "A", "k")),
        pair("evt_b", request("customer", "B", "k"), request("lead", "B", "k")),
        pair("evt_c", request("customer", "C", "k"), request("customer", "C. Doe", "k")),
        pair("evt_d", request("customer", "D", "k"), request("customer", "D", "k")),
    ];
    let c = compare(FLOW, 1, 2, "diff", &pairs);
    assert_eq!((c.identical, c.different_count()), (1, 3));
    assert_eq!(c.different.len(), 2);
    let status = &c.different[0];
    assert_eq!((status.fields.as_slice(), status.count), (["body.status".to_owned()].as_slice(), 2));
    assert_eq!(status.examples, ["evt_a", "evt_b"]);
    assert!(status.diff.starts_with("--- v1\n+++ v2\n"), "{}", status.diff);
    assert!(status.diff.contains("-    \"status\": \"customer\"") && status.diff.contains("+    \"status\": \"lead\""));
    assert_eq!(c.different[1].fields, ["body.name"]);
    let text = render_text(&c);
    assert!(text.contains("identical: 1") && text.contains("different: 3"), "{text}");
    assert!(text.contains("2 events differ in body.status"), "{text}");
}

#[test]
fn a_diff_masks_personal_data_in_the_requests_it_shows() {
    let mut a = request("customer", "A", "k");
    let mut b = request("lead", "A", "k");
    for side in [&mut a, &mut b] {
        if let Side::Request(r) = side {
            r.body["email"] = json!("jane.doe@example.com");
        }
    }
    let c = compare(FLOW, 1, 2, "diff", &[pair("e", a, b)]);
    assert!(!c.different[0].diff.contains("jane.doe@example.com"), "{}", c.different[0].diff);
}

#[test]
fn an_event_with_a_request_on_one_side_only_is_counted_by_the_reason_the_other_has_none() {
    let parked = || Side::Absent("parked: mapping error".into());
    let pairs = [
        pair("evt_1", request("customer", "A", "k"), parked()),
        pair("evt_2", request("customer", "A", "k"), parked()),
        pair("evt_3", Side::Absent("filtered out by its filter".into()), request("customer", "A", "k")),
        pair("evt_4", Side::Absent("x".into()), Side::Absent("y".into())),
    ];
    let c = compare(FLOW, 1, 2, "diff", &pairs);
    assert_eq!(
        c.only_from,
        [OneSided { reason: "parked: mapping error".into(), count: 2, examples: vec!["evt_1".into(), "evt_2".into()] }]
    );
    assert_eq!(Comparison::only_count(&c.only_to), 1);
    assert_eq!(c.neither[0].reason, "v1: x; v2: y");
    let j = to_json(&c);
    assert_eq!((j["only_from"].as_u64(), j["only_to"].as_u64(), j["neither"].as_u64()), (Some(2), Some(1), Some(1)));
}

/// Version `version` of the Stripe flow with its own mapping (no contract).
fn version_of(config: &Config, version: u32, mode: Mode, mapping: &str) -> Flow {
    let live = config.flow(FLOW, 1).expect("the Stripe flow");
    live.another_version(version, mode, JqProgram::compile("v2.jq", mapping).expect("mapping"))
}

fn payment(id: &str, email: Option<&str>) -> Envelope {
    let data = json!({
        "id": id, "type": "payment_intent.succeeded",
        "data": {"object": {"object": "payment_intent", "receipt_email": email, "amount_received": 100, "currency": "eur"}}
    });
    Envelope::new(
        "stripe",
        id.into(),
        "payment_intent.succeeded".into(),
        "2026-12-03T10:00:00Z".into(),
        data,
        "c".into(),
    )
}

#[tokio::test]
async fn a_backtest_maps_archived_envelopes_with_both_versions_and_reports_each_side() {
    let mut config = Config::bundled().expect("bundled flow file");
    let v2 = version_of(
        &config,
        2,
        Mode::Off,
        r#".data.object as $pi | if $pi.receipt_email == null then error("no email") else
           {email: $pi.receipt_email, name: null, source: "stripe_payment", total_spent_minor: $pi.amount_received,
            currency: ($pi.currency | ascii_upcase), status: "lead"} end"#,
    );
    config.flows.push(v2);
    let archive = MemoryArchive::default();
    let at = payment("x", None).accepted_at_ms().unwrap();
    let text = |id: &str, email: Option<&str>| serde_json::to_string(&payment(id, email)).unwrap();
    let (e1, e2, e3) =
        (text("evt_1", Some("a@example.com")), text("evt_2", Some("b@example.com")), text("evt_3", None));
    // Another type of the same source: neither version takes it, it is not counted.
    let mut other = payment("evt_other", Some("c@example.com"));
    other.event_type = "charge.refunded".into();
    let other = serde_json::to_string(&other).unwrap();
    // evt_1, evt_2 and the other type in one batch's object; evt_2 again in a second
    // (a batch retried in part): counted once; evt_3 in a one-event object from before.
    let batch = [("stripe", "evt_1", at, e1.as_str()), ("stripe", "evt_2", at, e2.as_str())];
    for (object, _) in archive::batches(batch.into_iter().chain([("stripe", "evt_other", at, other.as_str())])) {
        archive.put(&object.key, &object.body).await.unwrap();
    }
    for (object, _) in archive::batches([batch[1]]) {
        archive.put(&object.key, &object.body).await.unwrap();
    }
    archive.put(&envelope_key("stripe", "evt_3", at), e3.as_bytes()).await.unwrap();
    assert_eq!(archive.keys().len(), 3);

    let (from, to) = (config.flow(FLOW, 1).unwrap(), config.flow(FLOW, 2).unwrap());
    let c = backtest(&archive, &config, (from, to), (at - 1_000, at + 1_000)).await.unwrap();
    assert_eq!((c.kind, c.events, c.identical, c.different_count()), ("backtest", 3, 0, 2), "{c:?}");
    assert_eq!(c.different[0].fields, ["body.status"]);
    // v1's mapping refuses a payment without an email, v2's too: neither sends it.
    assert_eq!(Comparison::only_count(&c.neither), 1, "{c:?}");
    assert!(c.neither[0].reason.contains("mapping error"), "{c:?}");
    // Outside the window: nothing.
    let none = backtest(&archive, &config, (from, to), (at + 86_400_000, at + 2 * 86_400_000)).await.unwrap();
    assert_eq!(none.events, 0);
}
