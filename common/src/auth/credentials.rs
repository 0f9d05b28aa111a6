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
