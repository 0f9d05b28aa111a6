//! Logs never carry secrets, signatures or personal data, end to end.
//!
//! How the logs are captured: the pipeline runs in this process (as in every
//! end-to-end test), so this test installs the production logger —
//! `runtime::init_logging_to`, the same JSON format and the same redacting writer
//! that `init_logging` puts in front of stdout — over an in-memory buffer, before
//! the harness calls `init_logging` (which then keeps the first logger). Only the
//! final byte sink differs from production, and redaction happens before it. Running
//! the local runner as a subprocess and reading its stdout would exercise the same
//! writer through more plumbing (a stack file, fixed ports) and add nothing the
//! redaction depends on. This binary holds a single test, so the capture holds only
//! its own pipeline's lines.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_common::config::{Signing, SigningScheme};
use switchyard_common::logging::capture::Buffer;
use switchyard_common::redact;
use switchyard_e2e::{eventually, local_secret, settle, stripe_payment, World};
use switchyard_local::sink::Reply;

const WAIT: Duration = Duration::from_secs(30);
const SIGNING_SECRET: &str = "whsec_cmVkYWN0aW9uLXRlc3Qtc2lnbmluZy1rZXk=";

/// A payment carrying personal data in the places real payloads do.
fn private_payment(event_id: &str) -> Value {
    let mut event = stripe_payment(event_id);
    let pi = &mut event["data"]["object"];
    pi["receipt_email"] = json!("grace.hopper@navy.example.org");
    pi["shipping"]["name"] = json!("Grace Hopper");
    pi["shipping"]["phone"] = json!("+1 415 555 0142");
    pi["description"] = json!("paid with 4242 4242 4242 4242, call (212) 555-0199");
    pi["metadata"] = json!({"card_on_file": "5555555555554444", "contact": "grace@example.com"});
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_run_with_secrets_and_personal_data_logs_none_of_them() {
    let captured = Buffer::default();
    captured.install();
    // The flow-level `sensitive = [...]` list is not wired to config yet; this is
    // what its cold-start registration would do for the customer's name.
    redact::register_sensitive_field("name");

    let w = World::start_with(|config| {
        let crm = config.destinations.get_mut("crm").unwrap();
        crm.signing =
            Some(Signing { scheme: SigningScheme::StandardWebhooks, secret: "destination/crm-signing".into() });
    })
    .await;
    aws_sdk_secretsmanager::Client::new(&w.aws.sdk)
        .create_secret()
        .name(format!("switchyard/{}/destination/crm-signing", w.aws.stack.stage))
        .secret_string(SIGNING_SECRET)
        .send()
        .await
        .expect("create the signing secret");
    // The first call is refused: the credential refresh path logs too.
    w.sink.script([Reply::Status(401)]);

    let event = private_payment("evt_private_1");
    let (status, answer) = w.post_stripe(&event.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    let correlation_id = answer["correlation_id"].as_str().unwrap().to_owned();
    let mut unmappable = private_payment("evt_private_2");
    unmappable["data"]["object"]["receipt_email"] = Value::Null;
    assert_eq!(w.post_stripe(&unmappable.to_string()).await.0, 202);

    assert!(eventually(WAIT, async || w.sink.received().len() >= 2).await, "not delivered");
    let ingest_dlq = w.aws.stack.ingest_dlq_url.clone();
    assert!(eventually(WAIT, async || w.aws.depth(&ingest_dlq).await == 1).await, "unmappable event not parked");
    settle(Duration::from_secs(1)).await;

    // What careless lines would dump: the payload and the request as the API got it
    // (credential and signature headers included) as JSON, the headers in `Debug`
    // form, and a credential by name. (A `Debug` dump of a payload would still be
    // masked for secrets, emails, phones and cards, but not by field name: that
    // needs JSON.)
    let delivered = w.sink.received().last().cloned().unwrap();
    let signature = delivered.header("webhook-signature").expect("signed").to_owned();
    let api_key = delivered.header("x-api-key").expect("api key").to_owned();
    let headers = Value::Object(delivered.headers.clone());
    tracing::warn!(payload = %event, headers = %headers, body = %delivered.body, "careless dump as JSON");
    tracing::warn!(headers = ?delivered.headers, "careless Debug dump");
    tracing::warn!(key = %api_key, signature = %signature, "careless dump of a credential");

    let logs = captured.text();
    let lines: Vec<&str> = logs.lines().collect();
    for line in &lines {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: not a JSON log line: {line}"));
    }
    for expected in ["accepted", "credentials refused; refreshing them once", "delivered", "parked in the ingest DLQ"] {
        assert!(logs.contains(expected), "the capture misses the pipeline's {expected:?} line");
    }
    assert!(logs.contains("careless Debug dump") && logs.contains("[redacted:"), "the redactor did not act");
    assert!(logs.contains(&correlation_id), "ids must survive redaction");

    let secrets =
        [api_key.as_str(), SIGNING_SECRET, "cmVkYWN0aW9uLXRlc3Qtc2lnbmluZy1rZXk", &local_secret("source/stripe")];
    let signatures: Vec<&str> = signature.split(' ').map(|s| s.trim_start_matches("v1,")).collect();
    let personal = [
        "grace.hopper@navy.example.org",
        "grace@example.com",
        "Grace Hopper",
        "415 555 0142",
        "4242 4242 4242 4242",
        "5555555555554444",
        "555-0199",
        "pi_3QfExamplePaymentIntent1_secret_example",
    ];
    for value in secrets.iter().chain(&signatures).chain(&personal) {
        let leaks: Vec<&&str> = lines.iter().filter(|l| l.contains(value)).collect();
        assert!(leaks.is_empty(), "{value:?} is in the logs: {leaks:#?}");
    }
}
