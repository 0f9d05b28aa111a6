//! One HTTP call to a destination, classified by the taxonomy.

use std::time::Duration;

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use serde::Deserialize;
use switchyard_common::config::{Auth, Destination};
use switchyard_common::envelope::Delivery;
use switchyard_common::failure::{classify_status, Failure, FailureClass};
use switchyard_common::secrets::VersionStage;

use crate::Deps;

/// The JSON shape of a destination secret.
#[derive(Deserialize)]
struct DestinationSecret {
    api_key: Option<String>,
}

/// Outcome of a successful call: the status, for the ledger summary.
pub struct Delivered {
    pub status: u16,
}

async fn auth_header(
    deps: &Deps,
    destination: &Destination,
) -> Result<Option<(HeaderName, HeaderValue)>, Failure> {
    match &destination.auth {
        Auth::None => Ok(None),
        Auth::ApiKey { header, secret } => {
            let id = deps.stage.secret_id(secret);
            let value = deps
                .secrets
                .get(&id, VersionStage::Current)
                .await
                .map_err(|e| Failure::transient(format!("credentials unavailable: {e}")))?
                .ok_or_else(|| Failure::transient(format!("secret {id} has no current version")))?;
            let parsed: DestinationSecret = serde_json::from_str(value.expose())
                .map_err(|_| Failure::terminal(format!("secret {id} is not a JSON object")))?;
            let key = parsed.api_key.ok_or_else(|| Failure::terminal(format!("secret {id} has no api_key")))?;
            let name = HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| Failure::terminal(format!("invalid auth header name {header:?}")))?;
            let mut value =
                HeaderValue::from_str(&key).map_err(|_| Failure::terminal(format!("secret {id} is not a header value")))?;
            value.set_sensitive(true);
            Ok(Some((name, value)))
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from APIs and not honoured).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

async fn call_once(deps: &Deps, destination: &Destination, delivery: &Delivery) -> Result<Delivered, Failure> {
    let method = http::Method::from_bytes(delivery.method.as_bytes())
        .map_err(|_| Failure::terminal(format!("invalid method {:?}", delivery.method)))?;
    let url = format!("{}{}", destination.base_url, delivery.path);
    let mut req = deps
        .http
        .request(method, &url)
        .timeout(destination.timeout)
        .header(CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", &delivery.idempotency_key)
        .header("X-Correlation-Id", &delivery.correlation_id)
        .body(serde_json::to_vec(&delivery.body).unwrap_or_default());
    if let Some((name, value)) = auth_header(deps, destination).await? {
        req = req.header(name, value);
    }
    let response = req.send().await.map_err(|e| {
        let what = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        Failure::transient(format!("{what} calling {}", destination.name))
    })?;
    let status = response.status().as_u16();
    match classify_status(status) {
        None => Ok(Delivered { status }),
        Some(class) => {
            let reason = format!("HTTP {status} from {}", destination.name);
            let after = retry_after(response.headers());
            Err(Failure { class, reason, retry_after: after })
        }
    }
}

/// Calls the destination; on 401/403 re-reads the credentials once and tries again.
pub async fn deliver(deps: &Deps, destination: &Destination, delivery: &Delivery) -> Result<Delivered, Failure> {
    match call_once(deps, destination, delivery).await {
        Err(f) if f.class == FailureClass::Auth => {
            if let Some(secret) = destination.auth.secret() {
                deps.secrets.invalidate(&deps.stage.secret_id(secret));
            }
            call_once(deps, destination, delivery).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_is_read_and_anything_else_ignored() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), None);
    }
}
