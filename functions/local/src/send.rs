//! `switchyard-local send`: posts a provider payload to intake, signed the way that
//! provider signs, with the local secret of the source — for every scheme (Stripe,
//! GitHub, Shopify, Standard Webhooks, generic HMAC).

use std::collections::HashMap;
use std::path::Path;

use switchyard_common::config::Config;
use switchyard_common::runtime::now_ms;
use switchyard_common::signature::{sign, SigningSecret};

pub struct SendArgs<'a> {
    pub source: &'a str,
    pub payload: &'a Path,
    pub url: &'a str,
    pub config: &'a Config,
    pub secrets_file: &'a Path,
    /// Sent in the source's `event_type_header` (e.g. `X-GitHub-Event: push`) for
    /// providers that name the event type in a header rather than the payload.
    pub event_type: Option<&'a str>,
}

/// Returns the HTTP status and body of intake's answer.
pub async fn send(args: SendArgs<'_>) -> Result<(u16, String), String> {
    let source =
        args.config.sources.get(args.source).ok_or_else(|| format!("no source {:?} in the flow file", args.source))?;
    let secrets: HashMap<String, String> = serde_json::from_str(
        &std::fs::read_to_string(args.secrets_file).map_err(|e| format!("{}: {e}", args.secrets_file.display()))?,
    )
    .map_err(|e| format!("{}: {e}", args.secrets_file.display()))?;
    let secret = secrets.get(&source.secret).ok_or_else(|| format!("no local secret {:?}", source.secret))?;
    let body = std::fs::read(args.payload).map_err(|e| format!("{}: {e}", args.payload.display()))?;
    let id = format!("local-{}", uuid::Uuid::new_v4());
    let headers = sign(&source.scheme, &SigningSecret::new(secret), &body, now_ms() / 1000, &id)
        .map_err(|e| format!("cannot sign: {e}"))?;
    let url = format!("{}/hooks/{}", args.url.trim_end_matches('/'), args.source);
    let http =
        switchyard_common::tls::http_client_builder().build().map_err(|e| format!("cannot build a client: {e}"))?;
    let mut req = http.post(&url).header("content-type", "application/json").body(body);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    match (&source.event_type_header, args.event_type) {
        (Some(header), Some(event_type)) => req = req.header(header.as_str(), event_type),
        (None, Some(_)) => return Err(format!("source {:?} takes its event type from the payload", args.source)),
        _ => {}
    }
    let resp = req.send().await.map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.unwrap_or_default()))
}
