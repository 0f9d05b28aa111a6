//! OAuth2 client credentials (RFC 6749 §4.4): the token request, the token
//! response, how long a token is used, and a per-destination token cache.
//!
//! The client authenticates with HTTP Basic (§2.3.1: id and secret each
//! form-urlencoded first). A token is used until `expires_in` minus a safety margin,
//! and dropped early when the API refuses it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderValue;
use serde::Deserialize;
use serde_json::Value;

use super::credentials::{CredentialError, SecretFields};
use crate::failure::FailureClass;

/// The lifetime assumed when a token endpoint does not say (`expires_in` is only
/// RECOMMENDED by RFC 6749 §5.1).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// A token is refreshed this long before it expires, or a tenth of its lifetime
/// when that is shorter: a request must not reach the API just as its token expires.
pub const MAX_MARGIN: Duration = Duration::from_secs(30);

/// The secret of an OAuth2 destination: `{"client_id": "...", "client_secret": "..."}`.
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

impl ClientCredentials {
    pub fn from_secret(secret: &SecretFields) -> Result<Self, CredentialError> {
        Ok(Self {
            client_id: secret.get("client_id")?.to_owned(),
            client_secret: secret.get("client_secret")?.to_owned(),
        })
    }
}

/// What to POST to the token endpoint.
pub struct TokenRequest {
    /// `Basic …`, marked sensitive.
    pub authorization: HeaderValue,
    /// The base64 credentials inside `authorization`, for the redactor.
    pub encoded_credentials: String,
    /// `application/x-www-form-urlencoded`.
    pub body: String,
}

pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

pub fn token_request(
    credentials: &ClientCredentials,
    scope: Option<&str>,
    audience: Option<&str>,
) -> Result<TokenRequest, CredentialError> {
    use super::form_urlencode as enc;
    let encoded = super::basic_credentials(&enc(&credentials.client_id), &enc(&credentials.client_secret));
    let mut authorization = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| CredentialError::NotAHeaderValue { id: "token request".to_owned(), field: "client_secret" })?;
    authorization.set_sensitive(true);
    let mut body = "grant_type=client_credentials".to_owned();
    for (name, value) in [("scope", scope), ("audience", audience)] {
        if let Some(v) = value {
            body.push_str(&format!("&{name}={}", enc(v)));
        }
    }
    Ok(TokenRequest { authorization, encoded_credentials: encoded, body })
}

/// An access token and when to stop using it. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    value: String,
    refresh_at: Instant,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken").field("refresh_at", &self.refresh_at).finish_non_exhaustive()
    }
}

impl AccessToken {
    pub fn new(value: impl Into<String>, refresh_at: Instant) -> Self {
        Self { value: value.into(), refresh_at }
    }

    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn refresh_at(&self) -> Instant {
        self.refresh_at
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }
}

/// When a token obtained by a request sent at `requested_at` must be replaced:
/// its lifetime minus the smaller of [`MAX_MARGIN`] and a tenth of the lifetime.
/// Counting from the request, not the response, errs on the early side.
pub fn refresh_at(requested_at: Instant, expires_in: Option<Duration>) -> Instant {
    let lifetime = expires_in.unwrap_or(DEFAULT_LIFETIME);
    let margin = MAX_MARGIN.min(lifetime / 10);
    requested_at + (lifetime - margin)
}

/// A failed token request, classified by the taxonomy through [`TokenError::class`].
/// Messages carry the status and the RFC 6749 error code, never a response body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token endpoint unavailable: HTTP {0}")]
    Unavailable(u16),
    #[error("token endpoint refused the client credentials: HTTP {status} {code}")]
    Refused { status: u16, code: String },
    #[error("token endpoint rejected the request: HTTP {status} {code}")]
    Rejected { status: u16, code: String },
    #[error("token endpoint answer has no usable token: {0}")]
    Malformed(&'static str),
    #[error("token endpoint issued a {0:?} token; only bearer tokens are supported")]
    UnsupportedTokenType(String),
}

impl TokenError {
    /// 5xx, 408, 429 and garbled answers are transient; a refused client is an auth
    /// failure (refresh the secret once, then retry later); a request the endpoint
    /// can never accept (bad scope, unsupported grant) is terminal.
    pub fn class(&self) -> FailureClass {
        match self {
            TokenError::Unavailable(_) | TokenError::Malformed(_) => FailureClass::Transient,
            TokenError::Refused { .. } => FailureClass::Auth,
            TokenError::Rejected { .. } | TokenError::UnsupportedTokenType(_) => FailureClass::Terminal,
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<Value>,
}

/// The RFC 6749 §5.2 `error` code of an error answer, if it is a plain code (a
/// code is echoed into reasons and logs, so anything else is not repeated).
fn error_code(body: &[u8]) -> String {
    let code = serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("error")?.as_str().map(str::to_owned));
    match code {
        Some(c) if !c.is_empty() && c.len() <= 40 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => c,
        Some(_) => "(unrecognised error code)".to_owned(),
        None => "(no error code)".to_owned(),
    }
}

/// Reads a token endpoint's answer to a request sent at `requested_at`.
pub fn parse_token_response(status: u16, body: &[u8], requested_at: Instant) -> Result<AccessToken, TokenError> {
    match status {
        200..=299 => {}
        408 | 429 | 500..=599 => return Err(TokenError::Unavailable(status)),
        401 | 403 => return Err(TokenError::Refused { status, code: error_code(body) }),
        400 => {
            let code = error_code(body);
            return Err(match code.as_str() {
                "invalid_client" | "invalid_grant" | "unauthorized_client" => TokenError::Refused { status, code },
                _ => TokenError::Rejected { status, code },
            });
        }
        _ => return Err(TokenError::Rejected { status, code: error_code(body) }),
    }
    let answer: TokenResponse = serde_json::from_slice(body).map_err(|_| TokenError::Malformed("not a JSON object"))?;
    let token = answer.access_token.filter(|t| !t.is_empty()).ok_or(TokenError::Malformed("no access_token"))?;
    if HeaderValue::from_str(&token).is_err() {
        return Err(TokenError::Malformed("access_token cannot be sent in a header"));
    }
    // token_type is REQUIRED and case-insensitive (§7.1); some servers omit it anyway.
    if let Some(kind) = answer.token_type.filter(|t| !t.eq_ignore_ascii_case("bearer")) {
        return Err(TokenError::UnsupportedTokenType(kind.chars().take(20).collect()));
    }
    // Usually a number; some servers send a string.
    let expires_in = match answer.expires_in {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().ok_or(TokenError::Malformed("expires_in is not a whole number"))?),
        Some(Value::String(s)) => {
            Some(s.trim().parse().map_err(|_| TokenError::Malformed("expires_in is not a number"))?)
        }
        Some(_) => return Err(TokenError::Malformed("expires_in is not a number")),
    };
    Ok(AccessToken::new(token, refresh_at(requested_at, expires_in.map(Duration::from_secs))))
}

type Slot = Arc<tokio::sync::Mutex<Option<AccessToken>>>;

/// Access tokens by key (one per destination), shared by every invocation of a
/// container. One fetch at a time per key: concurrent deliveries that find no fresh
/// token wait for the one fetch in flight instead of each asking for a token.
#[derive(Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self.slots.lock().map(|s| s.keys().cloned().collect()).unwrap_or_default();
        f.debug_struct("TokenCache").field("keys", &keys).finish()
    }
}

impl TokenCache {
    fn slot(&self, key: &str) -> Slot {
        self.slots.lock().expect("token cache lock").entry(key.to_owned()).or_default().clone()
    }

    /// The cached token for `key` while it is fresh, else the result of `fetch`
    /// (kept when it succeeds).
    pub async fn get_or_fetch<F, Fut, E>(&self, key: &str, fetch: F) -> Result<AccessToken, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AccessToken, E>>,
    {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.is_fresh(Instant::now())) {
            return Ok(token.clone());
        }
        let token = fetch().await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Forgets `rejected` (a token the API refused) unless it was already replaced:
    /// of many deliveries refused with the same token, only the first causes a fetch.
    pub async fn invalidate(&self, key: &str, rejected: &AccessToken) {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == rejected.value) {
            *cached = None;
        }
    }
}

#[cfg(test)]
mod tests;
