//! Outbound credentials end to end: each auth kind as the destination sees it, an
//! OAuth2 token endpoint, a key rotated while deliveries flow, and outbound
//! Standard Webhooks signatures verified on the receiving side.
//!
//! The destination here is `Api`, a small server of this file rather than the
//! harness's `Sink`: it has to issue tokens, decide per request whether the
//! credentials are good, and keep the raw body bytes a signature is computed over.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::json;
use switchyard_common::config::{Auth, Config, Signing, SigningScheme};
use switchyard_common::runtime::now_ms;
use switchyard_common::signature::{verify, Scheme, SigningSecret};
use switchyard_e2e::{eventually, repo, settle, stripe_payment, World};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN_PATH: &str = "/oauth/token";
const CLIENT_ID: &str = "switchyard-dev";
const CLIENT_SECRET: &str = "oauth-client-secret-2f9a";
/// base64("switchyard-dev:oauth-client-secret-2f9a"), worked out independently.
const CLIENT_BASIC: &str = "Basic c3dpdGNoeWFyZC1kZXY6b2F1dGgtY2xpZW50LXNlY3JldC0yZjlh";

/// One request the API received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    status: u16,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct ApiState {
    /// The header carrying credentials (lower case) and the values it accepts;
    /// no header name means every request is accepted.
    credential_header: Option<String>,
    accepted: Vec<String>,
    /// `expires_in` of the tokens issued from now on.
    token_lifetime_secs: u64,
    tokens_issued: usize,
    token_requests: Vec<Seen>,
    requests: Vec<Seen>,
}

/// A destination API with an OAuth2 token endpoint at [`TOKEN_PATH`].
#[derive(Clone, Default)]
struct Api {
    state: Arc<Mutex<ApiState>>,
}

impl Api {
    async fn start() -> (Self, SocketAddr) {
        let api = Api::default();
        api.state.lock().unwrap().token_lifetime_secs = 3600;
        let app = Router::new().route(TOKEN_PATH, post(issue_token)).fallback(serve).with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (api, addr)
    }

    fn require(&self, header: &str, values: &[&str]) {
        let mut s = self.state.lock().unwrap();
        s.credential_header = Some(header.to_ascii_lowercase());
        s.accepted = values.iter().map(|v| v.to_string()).collect();
    }

    fn revoke(&self, value: &str) {
        self.state.lock().unwrap().accepted.retain(|v| v != value);
    }

    fn issue_tokens_for(&self, secs: u64) {
        self.state.lock().unwrap().token_lifetime_secs = secs;
    }

    fn requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap().requests.clone()
    }

    fn token_requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap().token_requests.clone()
    }

    /// Distinct idempotency keys answered 2xx: the deliveries that got through.
    fn delivered(&self) -> usize {
        let mut keys: Vec<String> = self
            .requests()
            .iter()
            .filter(|r| r.status < 300)
            .filter_map(|r| r.header("idempotency-key").map(str::to_owned))
            .collect();
        keys.sort();
        keys.dedup();
        keys.len()
    }
}

fn form(body: &[u8]) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("percent escape"));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).expect("UTF-8 form value")
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

async fn issue_token(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = api.state.lock().unwrap();
    let fields = form(&body);
    let client_ok = headers.get("authorization").is_some_and(|v| v == CLIENT_BASIC);
    let grant_ok = fields.get("grant_type").map(String::as_str) == Some("client_credentials");
    let status = if client_ok && grant_ok { 200 } else { 401 };
    s.token_requests.push(Seen { path: TOKEN_PATH.to_owned(), headers, body, status });
    if status != 200 {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    s.tokens_issued += 1;
    let token = format!("tok-{}", s.tokens_issued);
    s.accepted.push(format!("Bearer {token}"));
    let answer = json!({"access_token": token, "token_type": "Bearer", "expires_in": s.token_lifetime_secs});
    axum::Json(answer).into_response()
}

async fn serve(State(api): State<Api>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut s = api.state.lock().unwrap();
    let ok = match &s.credential_header {
        None => true,
        Some(name) => {
            headers.get(name).and_then(|v| v.to_str().ok()).is_some_and(|v| s.accepted.iter().any(|a| a == v))
        }
    };
    let status = if ok { StatusCode::CREATED } else { StatusCode::UNAUTHORIZED };
    s.requests.push(Seen { path: uri.path().to_owned(), headers, body, status: status.as_u16() });
    status
}

fn secrets_client(w: &World) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&w.aws.sdk)
}

fn secret_id(w: &World, suffix: &str) -> String {
    format!("switchyard/{}/{suffix}", w.aws.stack.stage)
}

/// A secret the template does not declare (a test's own destination).
async fn create_secret(w: &World, suffix: &str, value: &str) {
    secrets_client(w).create_secret().name(secret_id(w, suffix)).secret_string(value).send().await.expect("create");
}

/// A new AWSCURRENT version; the one before becomes AWSPREVIOUS.
async fn put_secret(w: &World, suffix: &str, value: &str) {
    secrets_client(w)
        .put_secret_value()
        .secret_id(secret_id(w, suffix))
        .secret_string(value)
        .send()
        .await
        .expect("put");
}

async fn post_events(w: &World, prefix: &str, range: std::ops::RangeInclusive<u32>) {
    for i in range {
        let (status, answer) = w.post_stripe(&stripe_payment(&format!("{prefix}_{i}")).to_string()).await;
        assert_eq!(status, 202, "{answer}");
    }
}

fn bearer_of(r: &Seen) -> &str {
    r.header("authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("(none)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth2_destination_gets_one_token_for_many_deliveries_and_a_new_one_after_a_401_or_expiry() {
    let (api, addr) = Api::start().await;
    api.require("authorization", &[]);
    let w = World::start_with(|config| {
        let crm = config.destinations.get_mut("crm").unwrap();
        crm.base_url = format!("http://{addr}");
        crm.auth = Auth::OAuth2ClientCredentials {
            token_url: format!("http://{addr}{TOKEN_PATH}"),
            scope: Some("contacts:write".into()),
            audience: Some("https://crm.example".into()),
            secret: "destination/crm-oauth".into(),
        };
    })
    .await;
    let client = json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).to_string();
    create_secret(&w, "destination/crm-oauth", &client).await;

    // Five deliveries, one token.
    post_events(&w, "evt_oauth", 1..=5).await;
    assert!(eventually(WAIT, async || api.delivered() == 5).await, "delivered {} of 5", api.delivered());
    let tokens = api.token_requests();
    assert_eq!(tokens.len(), 1, "one token for five deliveries");
    let t = &tokens[0];
    assert_eq!(t.header("content-type"), Some("application/x-www-form-urlencoded"));
    let fields = form(&t.body);
    assert_eq!(fields["grant_type"], "client_credentials");
    assert_eq!(fields["scope"], "contacts:write");
    assert_eq!(fields["audience"], "https://crm.example");
    assert!(!fields.contains_key("client_secret"), "the client authenticates with HTTP Basic, not in the body");
    assert!(api.requests().iter().all(|r| bearer_of(r) == "tok-1"));

    // The API stops accepting the token before it expires: one 401, a new token, delivered.
    api.issue_tokens_for(2);
    api.revoke("Bearer tok-1");
    post_events(&w, "evt_oauth", 6..=6).await;
    assert!(eventually(WAIT, async || api.delivered() == 6).await, "not delivered after the 401");
    assert_eq!(api.token_requests().len(), 2);
    let sixth: Vec<(String, u16)> = api.requests()[5..].iter().map(|r| (bearer_of(r).to_owned(), r.status)).collect();
    assert_eq!(sixth, [("tok-1".to_owned(), 401), ("tok-2".to_owned(), 201)]);

    // tok-2 lives 2 s: the next delivery, later than that, fetches a new one first.
    settle(Duration::from_secs(2)).await;
    post_events(&w, "evt_oauth", 7..=7).await;
    assert!(eventually(WAIT, async || api.delivered() == 7).await, "not delivered after expiry");
    assert_eq!(api.token_requests().len(), 3);
    let seventh: Vec<(String, u16)> = api.requests()[7..].iter().map(|r| (bearer_of(r).to_owned(), r.status)).collect();
    assert_eq!(seventh, [("tok-3".to_owned(), 201)], "refreshed before use, not after a refusal");
    assert_eq!(w.aws.depth(&w.aws.stack.dispatch_dlq_url).await, 0);
}

/// The example flow, sent to two destinations of this test's own.
fn two_destination_config(api: SocketAddr) -> Config {
    let toml = format!(
        r#"
[sources.stripe]
scheme = "stripe"
event_id = "/id"
event_type = "/type"

[destinations.bearer-api]
base_url = "http://{api}"
auth = {{ kind = "bearer", secret = "destination/bearer-api" }}
retry = {{ max_attempts = 3, base_delay_ms = 500, max_delay_ms = 1000 }}

[destinations.basic-api]
base_url = "http://{api}"
auth = {{ kind = "basic", secret = "destination/basic-api" }}
retry = {{ max_attempts = 3, base_delay_ms = 500, max_delay_ms = 1000 }}

[[flows]]
name = "to-bearer"
version = 1
source = "stripe"
mapping = "mappings/stripe_payment_to_crm_contact.jq"
destination = "bearer-api"
path = "/bearer"

[[flows]]
name = "to-basic"
version = 1
source = "stripe"
mapping = "mappings/stripe_payment_to_crm_contact.jq"
destination = "basic-api"
path = "/basic"
"#
    );
    let dir = repo().join("config");
    let read = |rel: &str| {
        std::fs::read_to_string(dir.join(rel))
            .map_err(|e| switchyard_common::config::ConfigError::Read { path: rel.to_owned(), message: e.to_string() })
    };
    Config::parse("auth-test.toml", &toml, read).expect("test flow file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_and_basic_destinations_receive_their_credentials_in_authorization() {
    let (api, addr) = Api::start().await;
    // base64("switchyard:basic-password-71c3"), worked out independently.
    api.require("authorization", &["Bearer bearer-token-5e8d", "Basic c3dpdGNoeWFyZDpiYXNpYy1wYXNzd29yZC03MWMz"]);
    let w = World::start_with(|config| *config = two_destination_config(addr)).await;
    create_secret(&w, "destination/bearer-api", r#"{"token":"bearer-token-5e8d"}"#).await;
    create_secret(&w, "destination/basic-api", r#"{"username":"switchyard","password":"basic-password-71c3"}"#).await;

    post_events(&w, "evt_kinds", 1..=1).await;
    assert!(eventually(WAIT, async || api.delivered() == 2).await, "{:?}", api.requests());
    let mut seen: Vec<(String, u16)> = api.requests().iter().map(|r| (r.path.clone(), r.status)).collect();
    seen.sort();
    assert_eq!(seen, [("/basic".to_owned(), 201), ("/bearer".to_owned(), 201)], "each accepted at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_rotated_while_deliveries_flow_is_picked_up_after_one_401_and_nothing_is_parked() {
    const OLD: &str = "local-crm-api-key";
    const NEW: &str = "rotated-crm-api-key-9b41";
    let (api, addr) = Api::start().await;
    api.require("x-api-key", &[OLD]);
    let w = World::start_with(|config| config.destinations.get_mut("crm").unwrap().base_url = format!("http://{addr}"))
        .await;
    let total = 10;

    post_events(&w, "evt_rotation", 1..=5).await;
    assert!(eventually(WAIT, async || api.delivered() >= 3).await, "nothing delivered before the rotation");
    // What a rotation does: the new key becomes current, then the API drops the old
    // one — while deliveries 4 and 5 may still be on their way, and 6 to 10 follow.
    put_secret(&w, "destination/crm", &json!({"api_key": NEW}).to_string()).await;
    api.require("x-api-key", &[NEW]);
    for i in 6..=total {
        post_events(&w, "evt_rotation", i..=i).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert!(eventually(WAIT, async || api.delivered() == total as usize).await, "delivered {}", api.delivered());
    settle(Duration::from_secs(2)).await;
    let requests = api.requests();
    let refused: Vec<&Seen> = requests.iter().filter(|r| r.status == 401).collect();
    assert!(!refused.is_empty(), "no delivery used the old key after the rotation: the 401 path was not exercised");
    assert!(refused.iter().all(|r| r.header("x-api-key") == Some(OLD)));
    let first_refusal = requests.iter().position(|r| r.status == 401).unwrap();
    assert!(
        requests[first_refusal + 1..].iter().all(|r| r.header("x-api-key") == Some(NEW) || r.status == 401),
        "after its first 401 the dispatcher sends the new key"
    );
    assert_eq!(w.aws.depth(&w.aws.stack.dispatch_dlq_url).await, 0, "something was parked");
    for i in 1..=total {
        let history = w.aws.history("stripe", &format!("evt_rotation_{i}")).await;
        let delivery = history.iter().find(|h| h.key.sk.starts_with("DELIVERY#")).expect("a delivery record");
        assert_eq!(delivery.summary.as_deref(), Some("HTTP 201"), "evt_rotation_{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_standard_webhooks_signature_verifies_with_the_new_and_during_rotation_the_old_secret() {
    const OLD: &str = "whsec_b2xkLXNpZ25pbmcta2V5LW1hdGVyaWFsLTEyMzQ=";
    const NEW: &str = "whsec_bmV3LXNpZ25pbmcta2V5LW1hdGVyaWFsLTU2Nzg=";
    let (api, addr) = Api::start().await;
    let w = World::start_with(|config| {
        let crm = config.destinations.get_mut("crm").unwrap();
        crm.base_url = format!("http://{addr}");
        crm.signing =
            Some(Signing { scheme: SigningScheme::StandardWebhooks, secret: "destination/crm-signing".into() });
    })
    .await;
    create_secret(&w, "destination/crm-signing", OLD).await;
    put_secret(&w, "destination/crm-signing", &json!({ "secret": NEW }).to_string()).await;

    post_events(&w, "evt_signed", 1..=1).await;
    assert!(eventually(WAIT, async || api.delivered() == 1).await, "not delivered");
    let r = &api.requests()[0];
    let check = |secret: &str| {
        verify(&Scheme::StandardWebhooks, &r.headers, &r.body, &[SigningSecret::new(secret)], now_ms() / 1000, 300)
    };
    assert!(check(NEW).is_ok(), "a receiver on the new secret verifies: {:?}", check(NEW));
    assert!(check(OLD).is_ok(), "a receiver still on the old secret verifies: {:?}", check(OLD));
    assert!(check("whsec_b3RoZXI=").is_err());
    assert_eq!(r.header("webhook-signature").unwrap().split(' ').count(), 2);
    assert_eq!(r.header("webhook-id"), r.header("idempotency-key"), "webhook-id is the delivery's idempotency key");
}

/// The example invoice flow's event, with its invoice id replaced.
fn invoice_paid(invoice: &str) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_str(&switchyard_e2e::fixture("standard/invoice.paid.json")).unwrap();
    v["data"]["invoice_id"] = json!(invoice);
    v.to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_accounting_flow_creates_invoices_with_one_token_and_fetches_one_more_after_a_401() {
    let (api, addr) = Api::start().await;
    api.require("authorization", &[]);
    let w = World::start_with(|config| {
        let accounting = config.destinations.get_mut("accounting").unwrap();
        accounting.base_url = format!("http://{addr}");
        let Auth::OAuth2ClientCredentials { token_url, .. } = &mut accounting.auth else { panic!("not OAuth2") };
        *token_url = format!("http://{addr}{TOKEN_PATH}");
    })
    .await;

    let n = 6;
    for i in 1..=n {
        let (status, answer) =
            w.post_signed("standard", &invoice_paid(&format!("inv_{i}")), &format!("msg_inv_{i}"), vec![]).await;
        assert_eq!(status, 202, "{answer}");
    }
    assert!(eventually(Duration::from_secs(60), async || api.delivered() == n).await, "delivered {}", api.delivered());
    assert_eq!(api.token_requests().len(), 1, "{n} invoices, one token");
    let fields = form(&api.token_requests()[0].body);
    assert_eq!(fields["scope"], "accounting.transactions");
    let first = api.requests().into_iter().find(|r| r.header("idempotency-key") == Some("inv_1")).unwrap();
    assert_eq!(first.path, "/api/invoices");
    let body: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    let golden: serde_json::Value =
        serde_json::from_str(&switchyard_e2e::fixture("golden/invoice-paid-to-accounting-invoice.json")).unwrap();
    let mut expected = golden["body"].clone();
    expected["reference"] = json!("inv_1");
    assert_eq!(body, expected);

    // The API revokes the token: one 401, one more token request, delivered.
    api.revoke("Bearer tok-1");
    let (status, _) = w.post_signed("standard", &invoice_paid("inv_after"), "msg_inv_after", vec![]).await;
    assert_eq!(status, 202);
    assert!(
        eventually(Duration::from_secs(60), async || api.delivered() == n + 1).await,
        "not delivered after the 401"
    );
    assert_eq!(api.token_requests().len(), 2, "a 401 costs exactly one more token");
    assert_eq!(w.aws.depth(&w.aws.stack.dispatch_dlq_url).await, 0);
}
