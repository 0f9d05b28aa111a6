//! One HTTP call to a destination, classified by the taxonomy: its credentials
//! (a static header, or an OAuth2 access token fetched here and cached per
//! container), its outbound signature, and the one retry after a 401/403 with
//! freshly read credentials.
//!
//! Every secret read here, and every token obtained, is registered with the log
//! redactor before it is used, so no log line can carry it.

use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use switchyard_common::auth::credentials::{self, AuthHeader, SecretFields};
use switchyard_common::auth::oauth2::{self, AccessToken, ClientCredentials, TokenCache};
use switchyard_common::auth::signing;
use switchyard_common::config::{Auth, Destination, SigningScheme};
use switchyard_common::envelope::{is_header_text, Delivery};
use switchyard_common::failure::{self, classify_status, Failure, FailureClass};
use switchyard_common::redact;
use switchyard_common::runtime::{self, now_ms};
use switchyard_common::secrets::{SecretValue, VersionStage};
use switchyard_common::signature::SigningSecret;
use tracing::{debug, info, warn};

use crate::Deps;

/// Outcome of a successful call: the status, for the ledger summary.
pub struct Delivered {
    pub status: u16,
}

/// The access tokens of the container's OAuth2 destinations, held by `Deps`. Keys
/// include the token URL, so a token never crosses to another token endpoint.
fn tokens(deps: &Deps) -> &TokenCache {
    &deps.tokens
}

fn token_key(destination: &Destination, token_url: &str) -> String {
    format!("{} {token_url}", destination.name)
}

/// The credential one attempt used: what to forget when the destination refuses it.
enum Credential {
    None,
    Static(AuthHeader),
    /// The secret path of an incoming-webhook URL.
    Path(String),
    Token {
        key: String,
        token: AccessToken,
        header: AuthHeader,
    },
}

impl Credential {
    fn header(&self) -> Option<&AuthHeader> {
        match self {
            Credential::None | Credential::Path(_) => None,
            Credential::Static(header) | Credential::Token { header, .. } => Some(header),
        }
    }
}

fn terminal(e: impl std::fmt::Display) -> Failure {
    Failure::terminal(e.to_string())
}

/// The current (or previous) version of `switchyard/{stage}/{suffix}`.
async fn read_secret(deps: &Deps, suffix: &str, stage: VersionStage) -> Result<Option<SecretValue>, Failure> {
    let id = deps.stage.secret_id(suffix);
    let value =
        deps.secrets.get(&id, stage).await.map_err(|e| Failure::transient(format!("credentials unavailable: {e}")))?;
    if let Some(v) = &value {
        redact::register_secret(v.expose());
    }
    Ok(value)
}

/// A destination secret's JSON object; each of its values is registered as secret.
async fn secret_fields(deps: &Deps, suffix: &str) -> Result<SecretFields, Failure> {
    let id = deps.stage.secret_id(suffix);
    let value = read_secret(deps, suffix, VersionStage::Current)
        .await?
        .ok_or_else(|| Failure::transient(format!("secret {id} has no current version")))?;
    let fields = SecretFields::parse(&id, value.expose()).map_err(terminal)?;
    fields.values().for_each(redact::register_secret);
    Ok(fields)
}

async fn credential(deps: &Deps, destination: &Destination) -> Result<Credential, Failure> {
    let header = match &destination.auth {
        Auth::None => return Ok(Credential::None),
        Auth::ApiKey { header, secret } => credentials::api_key_header(&secret_fields(deps, secret).await?, header),
        Auth::Bearer { secret } => credentials::bearer_header(&secret_fields(deps, secret).await?),
        Auth::Basic { secret } => credentials::basic_header(&secret_fields(deps, secret).await?),
        Auth::WebhookUrl { secret } => {
            let path = credentials::webhook_path(&secret_fields(deps, secret).await?, &destination.base_url);
            let path = path.map_err(terminal)?;
            redact::register_secret(&path);
            return Ok(Credential::Path(path));
        }
        Auth::OAuth2ClientCredentials { token_url, scope, audience, secret } => {
            let key = token_key(destination, token_url);
            let token = tokens(deps)
                .get_or_fetch(&key, || {
                    fetch_token(deps, destination, token_url, scope.as_deref(), audience.as_deref(), secret)
                })
                .await?;
            let header =
                credentials::bearer_token_header(token_url, "access_token", token.expose()).map_err(terminal)?;
            return Ok(Credential::Token { key, token, header });
        }
    }
    .map_err(terminal)?;
    if let Some(derived) = &header.derived {
        redact::register_secret(derived);
    }
    Ok(Credential::Static(header))
}

/// A transport error in words, and whether the request may have been sent: a refused
/// or timed-out connection never carried it; a timeout or a break after connecting may.
fn transport_failure(e: &reqwest::Error) -> (&'static str, bool) {
    if e.is_connect() {
        ("connection failed", false)
    } else if e.is_timeout() {
        ("timeout", true)
    } else {
        ("request failed", true)
    }
}

/// Asks the token endpoint for an access token (RFC 6749 §4.4).
async fn fetch_token(
    deps: &Deps,
    destination: &Destination,
    token_url: &str,
    scope: Option<&str>,
    audience: Option<&str>,
    secret: &str,
) -> Result<AccessToken, Failure> {
    let client = ClientCredentials::from_secret(&secret_fields(deps, secret).await?).map_err(terminal)?;
    let request = oauth2::token_request(&client, scope, audience).map_err(terminal)?;
    redact::register_secret(&request.encoded_credentials);
    let requested_at = Instant::now();
    let response = deps
        .http
        .post(token_url)
        .timeout(destination.timeout)
        .header(AUTHORIZATION, request.authorization)
        .header(CONTENT_TYPE, oauth2::FORM_CONTENT_TYPE)
        .header(ACCEPT, "application/json")
        .body(request.body)
        .send()
        .await
        .map_err(|e| {
            Failure::transient(format!(
                "{} calling the token endpoint of {}",
                transport_failure(&e).0,
                destination.name
            ))
        })?;
    let status = response.status().as_u16();
    let after = retry_after(response.headers());
    let body = response
        .bytes()
        .await
        .map_err(|_| Failure::transient(format!("token endpoint of {} dropped its answer", destination.name)))?;
    let token = oauth2::parse_token_response(status, &body, requested_at).map_err(|e| Failure {
        class: e.class(),
        reason: format!("{}: {e}", destination.name),
        retry_after: after,
    })?;
    redact::register_secret(token.expose());
    let valid_for = token.refresh_at().saturating_duration_since(Instant::now()).as_secs();
    info!(destination = %destination.name, refresh_in_secs = valid_for, "access token obtained");
    Ok(token)
}

/// The Standard Webhooks headers for `body`, signed with the current secret and,
/// while the previous version exists (a rotation's grace window), with that too.
async fn signature_headers(
    deps: &Deps,
    destination: &Destination,
    delivery: &Delivery,
    body: &[u8],
) -> Result<Vec<(HeaderName, HeaderValue)>, Failure> {
    let Some(config) = &destination.signing else { return Ok(Vec::new()) };
    let id = deps.stage.secret_id(&config.secret);
    let current = read_secret(deps, &config.secret, VersionStage::Current)
        .await?
        .ok_or_else(|| Failure::transient(format!("secret {id} has no current version")))?;
    let mut secrets: Vec<SigningSecret> = vec![signing::signing_secret(&id, current.expose()).map_err(terminal)?];
    match read_secret(deps, &config.secret, VersionStage::Previous).await {
        Ok(Some(previous)) if previous != current => {
            // An unusable old version must not stop signing with the new one.
            match signing::signing_secret(&id, previous.expose()) {
                Ok(s) if config.scheme.scheme().check_secret(&s).is_ok() => secrets.push(s),
                _ => warn!(secret_id = %id, "previous signing secret is unusable; signing with the current one only"),
            }
        }
        Ok(_) => {}
        Err(f) => warn!(reason = %f.reason, "previous signing secret unavailable; signing with the current one only"),
    }
    let webhook_id =
        if delivery.idempotency_key.is_empty() { &delivery.delivery_id } else { &delivery.idempotency_key };
    match config.scheme {
        SigningScheme::StandardWebhooks => {
            signing::standard_webhooks_headers(&secrets, body, now_ms() / 1000, webhook_id)
                .map_err(|e| Failure::terminal(format!("cannot sign for {}: {e}", destination.name)))
        }
    }
}

/// `Retry-After`, in seconds or as an HTTP-date.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    failure::retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?, std::time::SystemTime::now())
}

/// One attempt; the credential it used comes back with a failure so a refused one
/// can be forgotten.
async fn call_once(
    deps: &Deps,
    destination: &Destination,
    delivery: &Delivery,
    body: &[u8],
) -> Result<Delivered, (Failure, Option<Credential>)> {
    let method = http::Method::from_bytes(delivery.method.as_bytes())
        .map_err(|_| (Failure::terminal(format!("invalid method {:?}", delivery.method)), None))?;
    let credential = credential(deps, destination).await.map_err(|f| (f, None))?;
    let signature = signature_headers(deps, destination, delivery, body).await.map_err(|f| (f, None))?;
    let path = match &credential {
        Credential::Path(secret_path) => secret_path.as_str(),
        _ => delivery.path.as_str(),
    };
    let url = format!("{}{path}", destination.base_url);
    // What cannot make a request never will: terminal, with the part that is wrong.
    let unbuildable = |what: &str| (Failure::terminal(format!("request cannot be built: {what}")), None);
    let url = reqwest::Url::parse(&url).map_err(|_| unbuildable("the destination URL and path are not a valid URL"))?;
    for (header, value) in
        [("idempotency key", &delivery.idempotency_key), ("correlation id", &delivery.correlation_id)]
    {
        if !is_header_text(value) {
            return Err(unbuildable(&format!("the {header} is not a valid HTTP header value")));
        }
    }
    let mut req = deps
        .http
        .request(method, url)
        .timeout(destination.timeout)
        .header(CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", &delivery.idempotency_key)
        .header("X-Correlation-Id", &delivery.correlation_id)
        .body(body.to_vec());
    if let Some(h) = credential.header() {
        req = req.header(h.name.clone(), h.value.clone());
    }
    for (name, value) in signature {
        req = req.header(name, value);
    }
    let request = req.build().map_err(|_| unbuildable("reqwest refused the request"))?;
    let response = match deps.http.execute(request).await {
        Ok(r) => r,
        Err(e) => {
            let reason = match transport_failure(&e) {
                (what, true) => format!("{} {what} calling {}", failure::MAYBE_ARRIVED, destination.name),
                (what, false) => format!("{what} calling {}", destination.name),
            };
            return Err((Failure::transient(reason), None));
        }
    };
    let status = response.status().as_u16();
    match classify_status(status) {
        None => Ok(Delivered { status }),
        Some(class) => {
            let after = retry_after(response.headers());
            let said = read_at_most(response, ERROR_BODY_LIMIT).await.and_then(|b| destination_message(&b));
            let reason = match said {
                Some(message) => format!("HTTP {status} from {}: {message}", destination.name),
                None => format!("HTTP {status} from {}", destination.name),
            };
            Err((Failure { class, reason, retry_after: after }, Some(credential)))
        }
    }
}

/// How much of a refusal's body is read for the destination's own reason.
const ERROR_BODY_LIMIT: usize = 4 * 1024;

/// The longest destination message kept in a reason.
const MESSAGE_LIMIT: usize = 200;

/// Up to `limit` bytes of a response body; `None` if it cannot be read in time.
async fn read_at_most(mut response: reqwest::Response, limit: usize) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]),
            Ok(None) => break,
            Err(_) => return None,
        }
    }
    Some(body)
}

/// What a refusing destination said, from the usual JSON error fields (`error`,
/// `message`, `detail`, `error_description`, `title`, or `error.message`) or a short
/// plain-text body; redacted like a log line and cut to [`MESSAGE_LIMIT`] characters.
/// It becomes part of the reason a parked delivery carries.
fn destination_message(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let said = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => ["error", "message", "detail", "error_description", "title"]
            .iter()
            .find_map(|k| v.get(k).and_then(|x| x.as_str().or_else(|| x.get("message")?.as_str())))?
            .to_owned(),
        Err(_) if !text.is_empty() && !text.starts_with('<') => text.to_owned(),
        Err(_) => return None,
    };
    let one_line: String = said.split_whitespace().collect::<Vec<_>>().join(" ");
    let redacted = redact::redact(&one_line).into_owned();
    let cut: String = redacted.chars().take(MESSAGE_LIMIT).collect();
    (!cut.is_empty()).then_some(cut)
}

/// Forgets what a refused attempt used: the cached secrets (credentials and signing
/// key, either may have been rotated) and the access token.
async fn forget(deps: &Deps, destination: &Destination, used: Option<Credential>) {
    for suffix in destination.auth.secret().into_iter().chain(destination.signing.as_ref().map(|s| s.secret.as_str())) {
        deps.secrets.invalidate(&deps.stage.secret_id(suffix));
    }
    if let Some(Credential::Token { key, token, .. }) = used {
        tokens(deps).invalidate(&key, &token).await;
    }
}

/// Reads what a call to `destination` needs from AWS or its token endpoint (its
/// credentials, its signing key) into the container's caches, so that the call itself
/// makes no other request first: the dispatcher does this before it takes a rate-limit
/// token, keeping the token's time the call's time. A failure here is left for the
/// call to meet and classify.
pub async fn warm(deps: &Deps, destination: &Destination) {
    let _ = credential(deps, destination).await;
    if let Some(signing) = &destination.signing {
        let _ = read_secret(deps, &signing.secret, VersionStage::Current).await;
        let _ = read_secret(deps, &signing.secret, VersionStage::Previous).await;
    }
}

/// What the dispatcher's cold start does before its first batch (`runtime::warm_up`):
/// every destination's credential and signing secrets into the cache, and one ledger
/// read so its connection is open. No token endpoint is called: an OAuth2 token waits
/// for a delivery that needs it.
pub async fn warm_up(deps: &Deps) {
    let mut steps: Vec<runtime::WarmUpStep<'_>> = vec![Box::pin(async {
        if let Err(e) = deps.ledger.warm_up().await {
            debug!(error = %e, "ledger warm-up");
        }
    })];
    steps.push(Box::pin(async move {
        let suffixes: Vec<&str> = deps
            .config
            .destinations
            .values()
            .flat_map(|d| d.auth.secret().into_iter().chain(d.signing.as_ref().map(|s| s.secret.as_str())))
            .collect();
        // All of them in one read (BatchGetSecretValue: one connection), then each from
        // the cache, registered for redaction.
        let ids: Vec<String> = suffixes.iter().map(|s| deps.stage.secret_id(s)).collect();
        deps.secrets.get_current_many(&ids).await;
        for secret in suffixes {
            if let Err(e) = read_secret(deps, secret, VersionStage::Current).await {
                debug!(reason = %e.reason, "secret warm-up");
            }
        }
    }));
    runtime::warm_up(steps).await;
}

/// Calls the destination; on 401/403 (from it or from its token endpoint) re-reads
/// the credentials once and tries again.
pub async fn deliver(deps: &Deps, destination: &Destination, delivery: &Delivery) -> Result<Delivered, Failure> {
    let body = serde_json::to_vec(&delivery.body).unwrap_or_default();
    match call_once(deps, destination, delivery, &body).await {
        Ok(done) => Ok(done),
        Err((f, used)) if f.class == FailureClass::Auth => {
            info!(reason = %f.reason, auth = destination.auth.kind(), "credentials refused; refreshing them once");
            forget(deps, destination, used).await;
            call_once(deps, destination, delivery, &body).await.map_err(|(f, _)| f)
        }
        Err((f, _)) => Err(f),
    }
}

/// What a destination answered to a read (the reconciler's read-back).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadBack {
    pub status: u16,
    /// The body as JSON; `None` when empty or not JSON.
    pub body: Option<serde_json::Value>,
}

/// The largest body read (a read-back, a polled page).
const READ_LIMIT: usize = 8 * 1024 * 1024;

/// Reads `path` (and query) of `destination` with `method` and the destination's own
/// credentials, re-read once after a 401/403 as a delivery would: the reconciler's
/// read-back and the poller's pages. Any status is an
/// answer; only a transport failure or a second refusal of the credentials is an error.
pub async fn read(deps: &Deps, destination: &Destination, method: &str, path: &str) -> Result<ReadBack, Failure> {
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| Failure::terminal(format!("invalid method {method:?}")))?;
    let mut refreshed = false;
    loop {
        let credential = credential(deps, destination).await?;
        let url = reqwest::Url::parse(&format!("{}{path}", destination.base_url))
            .map_err(|_| Failure::terminal("the destination URL and path are not a valid URL"))?;
        let mut req =
            deps.http.request(method.clone(), url).timeout(destination.timeout).header(ACCEPT, "application/json");
        if let Some(h) = credential.header() {
            req = req.header(h.name.clone(), h.value.clone());
        }
        let response = req.send().await.map_err(|e| {
            let (what, _) = transport_failure(&e);
            Failure::transient(format!("{what} reading from {}", destination.name))
        })?;
        let status = response.status().as_u16();
        if matches!(status, 401 | 403) && !refreshed {
            forget(deps, destination, Some(credential)).await;
            refreshed = true;
            continue;
        }
        if matches!(status, 401 | 403) {
            return Err(Failure {
                class: FailureClass::Auth,
                ..Failure::transient(format!("HTTP {status} from {}", destination.name))
            });
        }
        let body = read_at_most(response, READ_LIMIT).await.unwrap_or_default();
        let body = serde_json::from_slice(&body).ok();
        return Ok(ReadBack { status, body });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_or_as_an_http_date_and_garbage_ignored() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        let in_a_minute = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(61));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&in_a_minute).unwrap());
        let delay = retry_after(&h).unwrap();
        assert!(delay > Duration::from_secs(55) && delay <= Duration::from_secs(61), "{delay:?}");
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date in the past: retry now");
        h.insert(RETRY_AFTER, HeaderValue::from_static("later"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn a_destinations_own_reason_is_taken_from_its_error_fields_redacted_and_cut() {
        assert_eq!(
            destination_message(br#"{"error": "owner u_42 does not exist"}"#).unwrap(),
            "owner u_42 does not exist"
        );
        assert_eq!(destination_message(br#"{"error": {"code": 7, "message": "bad\n  owner"}}"#).unwrap(), "bad owner");
        assert_eq!(destination_message(br#"{"ok": true}"#), None, "nothing said");
        assert_eq!(destination_message(b"<html>502 Bad Gateway</html>"), None, "no HTML pages");
        assert_eq!(destination_message(b"quota exceeded").unwrap(), "quota exceeded");
        let personal = destination_message(br#"{"message": "ada@example.com is already a contact"}"#).unwrap();
        assert!(!personal.contains("ada@example.com"), "{personal}");
        assert_eq!(destination_message("x".repeat(1000).as_bytes()).unwrap().len(), MESSAGE_LIMIT);
    }

    #[test]
    fn token_cache_keys_differ_per_destination_and_token_url() {
        let config = switchyard_common::config::Config::bundled().unwrap();
        let crm = config.destination("crm").unwrap();
        assert_ne!(token_key(crm, "http://a/token"), token_key(crm, "http://b/token"));
    }
}
