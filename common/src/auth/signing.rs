//! Outbound signatures: the dispatcher signs what it sends the way Standard Webhooks
//! providers do, so a destination can verify the request came from us.
//!
//! During a rotation the request carries one `v1,` signature per secret (current
//! first, then previous) in one `webhook-signature` header — receivers accept a
//! message if any signature matches, so both the rotated and the not-yet-rotated
//! receiver keep verifying.

use http::{HeaderName, HeaderValue};

use super::credentials::{CredentialError, SecretFields};
use crate::signature::{sign, Scheme, SignatureError, SigningSecret};

const SIGNATURE: &str = "webhook-signature";

/// A signing secret as stored: the bare `whsec_…` string (like a source's secret) or
/// a JSON object `{"secret": "whsec_…"}` (like other destination secrets).
pub fn signing_secret(id: &str, text: &str) -> Result<SigningSecret, CredentialError> {
    if text.trim_start().starts_with('{') {
        let fields = SecretFields::parse(id, text)?;
        Ok(SigningSecret::new(fields.get("secret")?))
    } else {
        Ok(SigningSecret::new(text.trim()))
    }
}

/// `webhook-id`, `webhook-timestamp` and `webhook-signature` for `body`, with one
/// signature per secret, in order. The signature header is marked sensitive.
pub fn standard_webhooks_headers(
    secrets: &[SigningSecret],
    body: &[u8],
    timestamp: i64,
    id: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, SignatureError> {
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let mut signatures: Vec<String> = Vec::new();
    for secret in secrets {
        for (name, value) in sign(&Scheme::StandardWebhooks, secret, body, timestamp, id)? {
            if name == SIGNATURE {
                signatures
                    .push(value.to_str().map_err(|_| SignatureError::InvalidHeaderValue(SIGNATURE.into()))?.into());
            } else if !headers.iter().any(|(n, _)| *n == name) {
                headers.push((name, value));
            }
        }
    }
    if signatures.is_empty() {
        return Err(SignatureError::NoSecrets);
    }
    let mut value = HeaderValue::from_str(&signatures.join(" "))
        .map_err(|_| SignatureError::InvalidHeaderValue(SIGNATURE.to_owned()))?;
    value.set_sensitive(true);
    headers.push((HeaderName::from_static(SIGNATURE), value));
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::verify;
    use http::HeaderMap;

    const CURRENT: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const PREVIOUS: &str = "whsec_c3VwZXItc2VjcmV0LWtleS1tYXRlcmlhbA==";

    fn map(headers: Vec<(HeaderName, HeaderValue)>) -> HeaderMap {
        headers.into_iter().collect()
    }

    fn check(headers: &HeaderMap, secret: &str) -> Result<crate::signature::Verified, SignatureError> {
        verify(&Scheme::StandardWebhooks, headers, b"{}", &[SigningSecret::new(secret)], 1_000, 300)
    }

    #[test]
    fn one_secret_gives_a_signature_any_standard_webhooks_receiver_verifies() {
        let h = map(standard_webhooks_headers(&[SigningSecret::new(CURRENT)], b"{}", 1_000, "key-1").unwrap());
        assert_eq!(h["webhook-id"], "key-1");
        assert_eq!(h["webhook-timestamp"], "1000");
        assert_eq!(h["webhook-signature"].to_str().unwrap().split(' ').count(), 1);
        assert!(h["webhook-signature"].is_sensitive());
        assert_eq!(check(&h, CURRENT).unwrap().event_id.as_deref(), Some("key-1"));
        assert_eq!(check(&h, PREVIOUS).unwrap_err(), SignatureError::Mismatch);
    }

    #[test]
    fn during_a_rotation_both_secrets_sign_in_one_header_current_first() {
        let secrets = [SigningSecret::new(CURRENT), SigningSecret::new(PREVIOUS)];
        let signed = standard_webhooks_headers(&secrets, b"{}", 1_000, "key-1").unwrap();
        assert_eq!(signed.len(), 3, "one id, one timestamp, one signature header");
        let h = map(signed);
        let entries: Vec<&str> = h["webhook-signature"].to_str().unwrap().split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|e| e.starts_with("v1,")));
        let only_current = map(standard_webhooks_headers(&secrets[..1], b"{}", 1_000, "key-1").unwrap());
        assert_eq!(entries[0], only_current["webhook-signature"]);
        assert!(check(&h, CURRENT).is_ok(), "a receiver on the new secret verifies");
        assert!(check(&h, PREVIOUS).is_ok(), "a receiver still on the old secret verifies");
    }

    #[test]
    fn signing_needs_a_usable_secret_and_an_id() {
        assert_eq!(standard_webhooks_headers(&[], b"{}", 1, "id").unwrap_err(), SignatureError::NoSecrets);
        assert!(standard_webhooks_headers(&[SigningSecret::new("not base64!")], b"{}", 1, "id").is_err());
        assert!(standard_webhooks_headers(&[SigningSecret::new(CURRENT)], b"{}", 1, "").is_err());
    }

    #[test]
    fn a_signing_secret_is_stored_bare_or_as_a_json_object() {
        let sign_with = |s: SigningSecret| standard_webhooks_headers(&[s], b"{}", 1, "id").unwrap();
        let bare = sign_with(signing_secret("id", CURRENT).unwrap());
        let object = sign_with(signing_secret("id", &format!(r#"{{"secret":"{CURRENT}"}}"#)).unwrap());
        assert_eq!(bare, object);
        let e = signing_secret("id", r#"{"key":"whsec_x"}"#).unwrap_err();
        assert!(matches!(e, CredentialError::MissingField { field: "secret", .. }));
    }
}
