//! Static credentials — an API key, a bearer token, a user and password — read from
//! a destination's secret (a JSON object) and turned into one sensitive header.

use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use serde_json::{Map, Value};

/// Why a secret cannot be used. Never quotes a value: only the secret id and field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("secret {0} is not a JSON object")]
    NotAnObject(String),
    #[error("secret {id} has no string field {field}")]
    MissingField { id: String, field: &'static str },
    #[error("secret {id}: {field} cannot be sent in an HTTP header")]
    NotAHeaderValue { id: String, field: &'static str },
    #[error("secret {0}: a Basic username cannot contain ':'")]
    ColonInUsername(String),
    #[error("invalid auth header name {0:?}")]
    InvalidHeaderName(String),
    #[error("secret {id}: url is not an http(s) URL on {host}, the destination's base_url host")]
    WebhookUrlElsewhere { id: String, host: String },
}

/// `{"url": "..."}`: the path and query of an incoming-webhook URL (the part that is
/// secret), checked to be on `base_url`'s host so a changed secret cannot send
/// deliveries anywhere else.
pub fn webhook_path(secret: &SecretFields, base_url: &str) -> Result<String, CredentialError> {
    let elsewhere =
        || CredentialError::WebhookUrlElsewhere { id: secret.id.clone(), host: host_of(base_url).unwrap_or_default() };
    let url = secret.get("url")?;
    if !(url.starts_with("https://") || url.starts_with("http://")) || host_of(url) != host_of(base_url) {
        return Err(elsewhere());
    }
    let after_scheme = url.split_once("://").map(|(_, rest)| rest).unwrap_or_default();
    let path = after_scheme.find('/').map(|i| &after_scheme[i..]).unwrap_or("/");
    Ok(path.to_owned())
}

/// The host of an http(s) URL (no port, no credentials), lower-cased.
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host_port.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// A destination secret: a JSON object. `Debug` shows the id and field names only.
pub struct SecretFields {
    id: String,
    fields: Map<String, Value>,
}

impl std::fmt::Debug for SecretFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFields").field("id", &self.id).field("fields", &self.fields.keys()).finish()
    }
}

impl SecretFields {
    /// `id` names the secret in errors; `text` is its value.
    pub fn parse(id: &str, text: &str) -> Result<Self, CredentialError> {
        match serde_json::from_str(text) {
            Ok(Value::Object(fields)) => Ok(Self { id: id.to_owned(), fields }),
            _ => Err(CredentialError::NotAnObject(id.to_owned())),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// A non-empty string field.
    pub fn get(&self, field: &'static str) -> Result<&str, CredentialError> {
        match self.fields.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            _ => Err(CredentialError::MissingField { id: self.id.clone(), field }),
        }
    }

    /// Every string value of the object: what the log redactor must know about.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.fields.values().filter_map(Value::as_str)
    }
}

/// One header carrying a credential; its value is marked sensitive, so `Debug` of
/// the value (and of any `HeaderMap` holding it) prints `Sensitive`.
pub struct AuthHeader {
    pub name: HeaderName,
    pub value: HeaderValue,
    /// The credential as it appears on the wire when that differs from any secret
    /// field (the base64 of Basic): registered with the redactor too.
    pub derived: Option<String>,
}

impl std::fmt::Debug for AuthHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthHeader").field("name", &self.name).finish_non_exhaustive()
    }
}

fn sensitive(id: &str, field: &'static str, text: &str) -> Result<HeaderValue, CredentialError> {
    let mut value =
        HeaderValue::from_str(text).map_err(|_| CredentialError::NotAHeaderValue { id: id.to_owned(), field })?;
    value.set_sensitive(true);
    Ok(value)
}

/// `{"api_key": "..."}` sent as is in `header`.
pub fn api_key_header(secret: &SecretFields, header: &str) -> Result<AuthHeader, CredentialError> {
    let name =
        HeaderName::from_bytes(header.as_bytes()).map_err(|_| CredentialError::InvalidHeaderName(header.to_owned()))?;
    let value = sensitive(&secret.id, "api_key", secret.get("api_key")?)?;
    Ok(AuthHeader { name, value, derived: None })
}

/// `{"token": "..."}` sent as `Authorization: Bearer <token>`.
pub fn bearer_header(secret: &SecretFields) -> Result<AuthHeader, CredentialError> {
    bearer_token_header(&secret.id, "token", secret.get("token")?)
}

/// `Authorization: Bearer <token>` for a token from anywhere (a secret, a token
/// endpoint); `origin` and `field` name it in errors.
pub fn bearer_token_header(origin: &str, field: &'static str, token: &str) -> Result<AuthHeader, CredentialError> {
    Ok(AuthHeader { name: AUTHORIZATION, value: sensitive(origin, field, &format!("Bearer {token}"))?, derived: None })
}

/// `{"username": "...", "password": "..."}` sent as HTTP Basic (RFC 7617).
pub fn basic_header(secret: &SecretFields) -> Result<AuthHeader, CredentialError> {
    let (user, password) = (secret.get("username")?, secret.get("password")?);
    if user.contains(':') {
        return Err(CredentialError::ColonInUsername(secret.id.clone()));
    }
    let encoded = super::basic_credentials(user, password);
    let value = sensitive(&secret.id, "password", &format!("Basic {encoded}"))?;
    Ok(AuthHeader { name: AUTHORIZATION, value, derived: Some(encoded) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> SecretFields {
        SecretFields::parse("switchyard/dev/destination/x", text).unwrap()
    }

    #[test]
    fn a_webhook_url_gives_its_path_only_on_the_base_urls_host() {
        let chat = secret(r#"{"url":"https://hooks.chat.example/services/T0/B0/XyZ?thread=1"}"#);
        assert_eq!(webhook_path(&chat, "https://hooks.chat.example").unwrap(), "/services/T0/B0/XyZ?thread=1");
        assert_eq!(webhook_path(&chat, "https://HOOKS.chat.example:443/").unwrap(), "/services/T0/B0/XyZ?thread=1");
        let local = secret(r#"{"url":"http://127.0.0.1:3001/chat/T0"}"#);
        assert_eq!(
            webhook_path(&local, "http://127.0.0.1:4567").unwrap(),
            "/chat/T0",
            "a moved local sink keeps the path"
        );
        for (text, base) in [
            (r#"{"url":"https://evil.example/services/T0"}"#, "https://hooks.chat.example"),
            (r#"{"url":"https://hooks.chat.example@evil.example/x"}"#, "https://hooks.chat.example"),
            (r#"{"url":"ftp://hooks.chat.example/x"}"#, "https://hooks.chat.example"),
            (r#"{"url":""}"#, "https://hooks.chat.example"),
        ] {
            let err = webhook_path(&secret(text), base).unwrap_err().to_string();
            assert!(!err.contains("services") && !err.contains("evil"), "the error names no part of the secret: {err}");
        }
    }

    #[test]
    fn an_api_key_goes_in_its_configured_header_marked_sensitive() {
        let h = api_key_header(&secret(r#"{"api_key":"k-123"}"#), "X-Api-Key").unwrap();
        assert_eq!((h.name.as_str(), h.value.to_str().unwrap()), ("x-api-key", "k-123"));
        assert!(h.value.is_sensitive());
        assert!(!format!("{:?} {h:?}", h.value).contains("k-123"));
    }

    #[test]
    fn a_bearer_token_goes_in_authorization() {
        let h = bearer_header(&secret(r#"{"token":"t-456"}"#)).unwrap();
        assert_eq!((h.name, h.value.to_str().unwrap()), (AUTHORIZATION, "Bearer t-456"));
        assert!(h.value.is_sensitive());
    }

    #[test]
    fn basic_credentials_go_in_authorization_and_the_encoded_form_is_reported_for_redaction() {
        let h = basic_header(&secret(r#"{"username":"Aladdin","password":"open sesame"}"#)).unwrap();
        assert_eq!(h.value.to_str().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(h.derived.as_deref(), Some("QWxhZGRpbjpvcGVuIHNlc2FtZQ=="));
        assert!(h.value.is_sensitive());
        let e = basic_header(&secret(r#"{"username":"a:b","password":"p"}"#)).unwrap_err();
        assert!(matches!(e, CredentialError::ColonInUsername(_)));
    }

    #[test]
    fn unusable_secrets_are_named_without_quoting_their_values() {
        let e = SecretFields::parse("id", "not-json-hunter2").unwrap_err();
        assert_eq!(e, CredentialError::NotAnObject("id".into()));
        assert!(!e.to_string().contains("hunter2"));
        let e = bearer_header(&secret(r#"{"api_key":"hunter2"}"#)).unwrap_err();
        assert!(matches!(e, CredentialError::MissingField { field: "token", .. }), "{e}");
        let e = bearer_header(&secret(r#"{"token":""}"#)).unwrap_err();
        assert!(matches!(e, CredentialError::MissingField { .. }), "an empty token is no token");
        let e = api_key_header(&secret(r#"{"api_key":"line\nbreak-hunter2"}"#), "X-Key").unwrap_err();
        assert!(matches!(e, CredentialError::NotAHeaderValue { .. }) && !e.to_string().contains("hunter2"));
        let e = api_key_header(&secret(r#"{"api_key":"k"}"#), "Bad Header").unwrap_err();
        assert!(matches!(e, CredentialError::InvalidHeaderName(_)));
    }

    #[test]
    fn secret_fields_debug_shows_names_not_values_and_values_lists_every_string() {
        let s = secret(r#"{"username":"u","password":"hunter2","port":8080}"#);
        let shown = format!("{s:?}");
        assert!(shown.contains("password") && !shown.contains("hunter2"), "{shown}");
        let mut values: Vec<&str> = s.values().collect();
        values.sort();
        assert_eq!(values, ["hunter2", "u"]);
    }
}
