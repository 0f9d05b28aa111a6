//! What the `intake_request` fuzz target does with its bytes, shared by the target in
//! `fuzz/` and the corpus replay in `tests/fuzz_corpus.rs`: build an API Gateway
//! request from them and run the whole handler against in-memory ports (the bundled
//! flow file, a fresh ledger and queue per request, a secret for every source).
//!
//! Input: a flags byte, then text (invalid UTF-8 is replaced):
//!
//! ```text
//! <flags>/hooks/stripe            path (raw path; also the `source` path parameter with flag 8)
//! stripe-signature: t=1,v1=00     headers, `name: value`, up to the first empty line
//!
//! {"id": "evt_1"}                 body (everything after the empty line)
//! ```
//!
//! Flags: 1 the body is marked base64; 2 sign the (decoded) body for the path's
//! source with its secret, now, and id `evt_fuzz` (so the fuzzer reaches what lies
//! behind verification); 4 GET instead of POST; 8 set the `source` path parameter
//! from the last path segment, as API Gateway does; 16 no body at all.
//!
//! Invariants: with ports that cannot fail, intake never answers 5xx; its answer is
//! JSON; an accepted event is enqueued exactly once as an envelope that parses and
//! carries the answered event id; anything else enqueues nothing.

use std::sync::{Arc, LazyLock};

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use serde_json::Value;
use switchyard_common::config::Config;
use switchyard_common::envelope::Envelope;
use switchyard_common::ledger::MemoryLedger;
use switchyard_common::names::Stage;
use switchyard_common::queue::{is_sqs_char, MemoryQueue};
use switchyard_common::runtime::now_ms;
use switchyard_common::secrets::{StaticSecrets, VersionStage};
use switchyard_common::signature::{sign, SigningSecret};

use crate::{handle, Deps, Limits};

const QUEUE: &str = "https://sqs.local/ingest";
const STAGE: &str = "dev";
/// Usable with every scheme (Standard Webhooks wants `whsec_` + base64).
const SECRET: &str = "whsec_ZnV6ei1zb3VyY2Utc2VjcmV0LWtleQ==";
const SIGNED_ID: &str = "evt_fuzz";

const BASE64: u8 = 1;
const SIGN: u8 = 2;
const GET: u8 = 4;
const PATH_PARAMETER: u8 = 8;
const NO_BODY: u8 = 16;

/// Compiling the bundled flow file's jq is the slow part: done once per process.
static CONFIG: LazyLock<Arc<Config>> =
    LazyLock::new(|| Arc::new(Config::bundled().expect("the bundled flow file loads")));

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a current-thread runtime")
});

/// Runs one request built from `data` through intake and checks the answer.
pub fn request(data: &[u8]) {
    answer(data);
}

/// The status intake answered `data` with (`None` for empty input), invariants checked.
fn answer(data: &[u8]) -> Option<i64> {
    let (&flags, rest) = data.split_first()?;
    let text = String::from_utf8_lossy(rest);
    let req = build(flags, &text);

    let config = CONFIG.clone();
    let stage = Stage::new(STAGE).expect("a valid stage");
    let secrets = config.sources.values().fold(StaticSecrets::default(), |s, source| {
        s.with(&stage.secret_id(&source.secret), VersionStage::Current, SECRET)
    });
    let queue = Arc::new(MemoryQueue::default());
    let deps = Deps {
        config,
        stage,
        ledger: Arc::new(MemoryLedger::new()),
        queue: queue.clone(),
        secrets: Arc::new(secrets),
        ingest_queue_url: QUEUE.to_owned(),
        limits: Limits::default(),
    };
    let answer = RUNTIME.block_on(handle(&deps, req, now_ms() + 10_000));

    let status = answer.status_code;
    assert!((200..500).contains(&status), "intake answered {status} with ports that cannot fail");
    let body = match &answer.body {
        Some(Body::Text(text)) => serde_json::from_str::<Value>(text).expect("intake answers JSON"),
        other => panic!("intake answered without a text body: {other:?}"),
    };
    let sent = queue.sent_to(QUEUE);
    if status == 202 {
        assert_eq!(sent.len(), 1, "an accepted event is enqueued exactly once");
        assert!(sent[0].body.chars().all(is_sqs_char), "the envelope holds a character SQS refuses");
        let envelope = Envelope::from_json(&sent[0].body).expect("the enqueued envelope parses");
        assert_eq!(Some(envelope.id.as_str()), body["event_id"].as_str(), "the envelope carries the answered id");
    } else {
        assert!(sent.is_empty(), "answered {status} but enqueued {}", sent.len());
    }
    Some(status)
}

fn build(flags: u8, text: &str) -> ApiGatewayV2httpRequest {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let path = lines.next().unwrap_or_default();

    let mut req = ApiGatewayV2httpRequest::default();
    req.request_context.http.method = if flags & GET != 0 { http::Method::GET } else { http::Method::POST };
    req.raw_path = Some(path.to_owned());
    req.request_context.http.path = Some(path.to_owned());
    let segment = path.rsplit('/').next().unwrap_or_default();
    if flags & PATH_PARAMETER != 0 {
        req.path_parameters.insert("source".into(), segment.to_owned());
    }
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        if let (Ok(name), Ok(value)) =
            (HeaderName::try_from(name.trim()), HeaderValue::from_bytes(value.trim().as_bytes()))
        {
            req.headers.append(name, value);
        }
    }
    req.is_base64_encoded = flags & BASE64 != 0;
    if flags & NO_BODY == 0 {
        req.body = Some(body.to_owned());
    }
    if flags & SIGN != 0 {
        sign_for(&mut req, segment);
    }
    req
}

/// Signs the body as the source named `source` would, replacing any such headers.
fn sign_for(req: &mut ApiGatewayV2httpRequest, source: &str) {
    let Some(source) = CONFIG.sources.get(source) else { return };
    let body = req.body.as_deref().unwrap_or_default();
    let bytes = match req.is_base64_encoded {
        true => base64::engine::general_purpose::STANDARD.decode(body).unwrap_or_default(),
        false => body.as_bytes().to_vec(),
    };
    let now = now_ms() / 1000;
    let Ok(headers) = sign(&source.scheme, &SigningSecret::new(SECRET), &bytes, now, SIGNED_ID) else { return };
    for (name, value) in headers {
        req.headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(flags: u8, path: &str, body: &str) -> Vec<u8> {
        [&[flags], format!("{path}\ncontent-type: application/json\n\n{body}").as_bytes()].concat()
    }

    #[test]
    fn the_sign_flag_takes_a_request_past_verification_and_without_it_intake_refuses() {
        let body = r#"{"id": "evt_1", "type": "payment_intent.succeeded"}"#;
        assert_eq!(answer(&input(SIGN | PATH_PARAMETER, "/hooks/stripe", body)), Some(202));
        assert_eq!(answer(&input(PATH_PARAMETER, "/hooks/stripe", body)), Some(401));
        let encoded = base64::engine::general_purpose::STANDARD.encode(body);
        assert_eq!(answer(&input(SIGN | BASE64, "/hooks/stripe", &encoded)), Some(202));
        assert_eq!(answer(&input(SIGN | GET, "/hooks/stripe", body)), Some(405));
        assert_eq!(answer(&input(SIGN, "/hooks/nope", body)), Some(404));
        assert_eq!(answer(&[]), None);
    }
}
