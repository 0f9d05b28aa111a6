//! Every signature scheme through the running intake (HTTP, as API Gateway calls it)
//! against moto: a correctly signed request is accepted, each kind of tampering is
//! refused with its error code, and afterwards the ingest queue holds exactly the
//! accepted events and no other queue holds anything.
//!
//! Intake runs here without the mapper's poller, so the ingest queue can be drained
//! and its envelopes counted.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use serde_json::Value;
use switchyard_common::config::Config;
use switchyard_common::envelope::Envelope;
use switchyard_common::runtime::now_ms;
use switchyard_common::signature::{sign, SigningSecret};
use switchyard_e2e::{config_for, fixture, local_secret, repo, stripe_payment, LocalAws};
use switchyard_local::pipeline::Deps;
use switchyard_local::send::{send, SendArgs};

/// Where a scheme carries its signed timestamp, if it has one.
#[derive(Clone, Copy)]
enum Timestamp {
    None,
    /// `t=` inside the signature header (Stripe).
    InSignature,
    /// A header of its own (Standard Webhooks).
    Header(&'static str),
}

struct Case {
    source: &'static str,
    signature_header: &'static str,
    timestamp: Timestamp,
    /// The event type header for providers that put the type there.
    type_header: Option<(&'static str, &'static str)>,
    /// For `switchyard-local send`.
    payload_file: &'static str,
}

const CASES: [Case; 5] = [
    Case {
        source: "stripe",
        signature_header: "stripe-signature",
        timestamp: Timestamp::InSignature,
        type_header: None,
        payload_file: "stripe/charge.refunded.json",
    },
    Case {
        source: "github",
        signature_header: "x-hub-signature-256",
        timestamp: Timestamp::None,
        type_header: Some(("x-github-event", "push")),
        payload_file: "github/push.json",
    },
    Case {
        source: "shopify",
        signature_header: "x-shopify-hmac-sha256",
        timestamp: Timestamp::None,
        type_header: Some(("x-shopify-topic", "orders/create")),
        payload_file: "shopify/orders-create.json",
    },
    Case {
        source: "standard",
        signature_header: "webhook-signature",
        timestamp: Timestamp::Header("webhook-timestamp"),
        type_header: None,
        payload_file: "standard/invoice.paid.json",
    },
    Case {
        source: "acme",
        signature_header: "x-acme-signature",
        timestamp: Timestamp::None,
        type_header: None,
        payload_file: "acme/order.shipped.json",
    },
];

type Headers = Vec<(HeaderName, HeaderValue)>;

/// A request that must be refused: what was done to it, body, headers, error code.
type Attempt = (&'static str, Vec<u8>, Headers, &'static str);

/// LocalAws plus intake behind its HTTP front, and nothing consuming the queues.
struct Intake {
    aws: LocalAws,
    config: Config,
    addr: SocketAddr,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Intake {
    async fn start() -> Self {
        switchyard_common::runtime::init_logging();
        let aws = LocalAws::start().await;
        // No destination is called: nothing dispatches here.
        let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let config = config_for(unused);
        let deps = Deps::new(&aws.sdk, &aws.stack, Arc::new(config_for(unused))).await.unwrap();
        let listener = switchyard_local::intake_http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(switchyard_local::intake_http::serve(Arc::new(deps.intake), listener));
        Self { aws, config, addr, http: switchyard_e2e::http_client(), server }
    }

    async fn post(&self, source: &str, body: &[u8], headers: &[(HeaderName, HeaderValue)]) -> (u16, Value) {
        let mut req = self.http.post(format!("http://{}/hooks/{source}", self.addr)).body(body.to_vec());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.expect("intake reachable");
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }

    /// The headers the provider would send for `body`, signed at `timestamp`.
    fn signed(&self, case: &Case, body: &[u8], id: &str, timestamp: i64) -> Headers {
        let source = &self.config.sources[case.source];
        let secret = SigningSecret::new(local_secret(&source.secret));
        let mut headers = sign(&source.scheme, &secret, body, timestamp, id).expect("sign");
        if let Some((name, value)) = case.type_header {
            headers.push((HeaderName::from_static(name), HeaderValue::from_static(value)));
        }
        headers
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A payload of `case` whose event id is `id`: in the body for the sources that
/// read it there (stripe, acme), in the scheme's id header for the others.
fn payload(case: &Case, id: &str) -> Vec<u8> {
    match case.source {
        "stripe" => stripe_payment(id).to_string().into_bytes(),
        "acme" => {
            let mut v: Value = serde_json::from_str(&fixture(case.payload_file)).unwrap();
            v["id"] = Value::String(id.to_owned());
            v.to_string().into_bytes()
        }
        _ => fixture(case.payload_file).into_bytes(),
    }
}

fn set(headers: &mut [(HeaderName, HeaderValue)], name: &str, value: &str) {
    let slot = headers.iter_mut().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no header {name}"));
    slot.1 = HeaderValue::from_str(value).unwrap();
}

fn get<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &str) -> &'a str {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_str().unwrap()).unwrap_or_else(|| panic!("no {name}"))
}

/// One character of the signature changed to another of the same alphabet (hex and
/// base64 alike), away from the padding, so it still parses but no longer matches.
fn tampered_signature(value: &str) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    let i = (chars.len() / 2..chars.len()).find(|&i| chars[i].is_ascii_alphanumeric()).expect("a signature character");
    chars[i] = match chars[i] {
        '9' => '0',
        d @ '0'..='8' => (d as u8 + 1) as char,
        'a' => 'b',
        'A' => 'B',
        c if c.is_ascii_lowercase() => 'a',
        _ => 'A',
    };
    chars.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scheme_accepts_a_signed_request_refuses_each_tampering_with_its_code_and_queues_only_the_accepted() {
    let intake = Intake::start().await;
    let now = now_ms() / 1000;
    let mut accepted: BTreeSet<(String, String)> = BTreeSet::new();
    let mut refused: Vec<(String, String)> = Vec::new();

    for case in &CASES {
        let src = case.source;
        let id = format!("{src}_ok");
        let body = payload(case, &id);
        let (status, answer) = intake.post(src, &body, &intake.signed(case, &body, &id, now)).await;
        assert_eq!(status, 202, "{src}: {answer}");
        assert_eq!(answer["event_id"], id.as_str(), "{src}: the event id where the source says");
        accepted.insert((src.to_owned(), id));

        // Each refused request has an event id of its own: none may leave a trace.
        let mut attempts: Vec<Attempt> = Vec::new();
        let fresh = |what: &str| format!("{src}_{what}");

        let id = fresh("body");
        let mut body = payload(case, &id);
        let headers = intake.signed(case, &body, &id, now);
        let middle = body.len() / 2;
        body[middle] ^= 0x01;
        attempts.push(("one body byte changed", body, headers, "signature_mismatch"));

        let id = fresh("sig");
        let body = payload(case, &id);
        let mut headers = intake.signed(case, &body, &id, now);
        let signature = tampered_signature(get(&headers, case.signature_header));
        set(&mut headers, case.signature_header, &signature);
        attempts.push(("signature header changed", body, headers, "signature_mismatch"));

        let id = fresh("unsigned");
        let body = payload(case, &id);
        let mut headers = intake.signed(case, &body, &id, now);
        headers.retain(|(n, _)| n != case.signature_header);
        attempts.push(("signature header missing", body, headers, "missing_signature"));

        if !matches!(case.timestamp, Timestamp::None) {
            let id = fresh("ts");
            let body = payload(case, &id);
            let mut headers = intake.signed(case, &body, &id, now);
            let (t, later) = (now.to_string(), (now + 1).to_string());
            match case.timestamp {
                Timestamp::InSignature => {
                    let value = get(&headers, case.signature_header).replace(&format!("t={t}"), &format!("t={later}"));
                    set(&mut headers, case.signature_header, &value);
                }
                Timestamp::Header(name) => set(&mut headers, name, &later),
                Timestamp::None => unreachable!(),
            }
            attempts.push(("timestamp changed", body, headers, "signature_mismatch"));

            let id = fresh("stale");
            let body = payload(case, &id);
            let headers = intake.signed(case, &body, &id, now - 600);
            attempts.push(("signed 10 minutes ago", body, headers, "stale_timestamp"));

            let id = fresh("future");
            let body = payload(case, &id);
            let headers = intake.signed(case, &body, &id, now + 600);
            attempts.push(("signed 10 minutes ahead", body, headers, "future_timestamp"));
        }

        for (what, body, headers, code) in attempts {
            let (status, answer) = intake.post(src, &body, &headers).await;
            assert_eq!((status, answer["error"].as_str()), (401, Some(code)), "{src}, {what}: {answer}");
            refused.push((src.to_owned(), what.to_owned()));
        }
    }
    assert_eq!(refused.len(), 5 * 3 + 2 * 3, "every kind of tampering was tried");

    // `switchyard-local send` signs the way each scheme does.
    for case in &CASES {
        let (status, answer) = send(SendArgs {
            source: case.source,
            payload: &repo().join("events").join(case.payload_file),
            url: &format!("http://{}", intake.addr),
            config: &intake.config,
            secrets_file: &repo().join("infra/local-secrets.json"),
            event_type: case.type_header.map(|(_, t)| t),
        })
        .await
        .expect("send");
        assert_eq!(status, 202, "send {}: {answer}", case.source);
        let answer: Value = serde_json::from_str(&answer).unwrap();
        accepted.insert((case.source.to_owned(), answer["event_id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(accepted.len(), 10);

    let s = &intake.aws.stack;
    for (queue, depth) in intake.aws.all_depths().await {
        let want = if queue == s.ingest_queue_url { accepted.len() as u64 } else { 0 };
        assert_eq!(depth, want, "{queue}");
    }
    let envelopes: Vec<Envelope> = intake
        .aws
        .drain(&s.ingest_queue_url)
        .await
        .iter()
        .map(|m| Envelope::from_json(&m.body).expect("an envelope"))
        .collect();
    let queued: BTreeSet<(String, String)> =
        envelopes.iter().map(|e| (e.source_name().to_owned(), e.id.clone())).collect();
    assert_eq!((envelopes.len(), queued), (accepted.len(), accepted), "the ingest queue holds the accepted events");
    // Each source's event type comes from where its provider puts it.
    let types: BTreeSet<(&str, &str)> =
        envelopes.iter().filter(|e| e.id.ends_with("_ok")).map(|e| (e.source_name(), e.event_type.as_str())).collect();
    let expected = [
        ("acme", "order.shipped"),
        ("github", "push"),
        ("shopify", "orders/create"),
        ("standard", "invoice.paid"),
        ("stripe", "payment_intent.succeeded"),
    ];
    assert_eq!(types, BTreeSet::from(expected));
    for (source, id) in [("github", "github_ok"), ("shopify", "shopify_ok")] {
        let types: Vec<String> = intake.aws.history(source, id).await.iter().map(|r| r.key.sk.clone()).collect();
        assert_eq!(types, ["INTAKE"], "{source}");
    }
    for case in &CASES {
        let id = format!("{}_sig", case.source);
        assert!(intake.aws.history(case.source, &id).await.is_empty(), "{id} left a ledger record");
    }
}
