//! New secret values, in the shape of the current one, from the operating system's
//! random number generator.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::TryRngCore;
use serde_json::{Map, Value};

const KEY_BYTES: usize = 32;
const API_KEY_LEN: usize = 40;
const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The next value of a secret whose current value is `current`:
///
/// - `whsec_…` (Standard Webhooks): `whsec_` + base64 of 32 random bytes;
/// - `{"api_key": …, …}`: a new 40-character alphanumeric `api_key`, other fields kept;
/// - `{"secret": "whsec_…", …}` (an outbound signing key): a new `secret`, likewise;
/// - any other non-empty string (a plain HMAC key): 32 random bytes in hex.
///
/// Other JSON secrets (bearer tokens, user and password, OAuth2 clients) are issued
/// by whoever checks them: they are refused, with the reason, never guessed at.
pub fn next_value(current: &str) -> Result<String, &'static str> {
    let trimmed = current.trim();
    if trimmed.is_empty() {
        return Err("its current value is empty");
    }
    if trimmed.starts_with(['{', '[']) {
        let mut fields: Map<String, Value> = match serde_json::from_str(trimmed) {
            Ok(Value::Object(fields)) => fields,
            _ => return Err("its current value looks like JSON but is not a JSON object"),
        };
        let (field, value) = match (fields.get("api_key"), fields.get("secret")) {
            (Some(Value::String(_)), _) => ("api_key", api_key()?),
            (None, Some(Value::String(s))) => ("secret", next_plain(s)?),
            _ => {
                return Err("a JSON secret without an api_key or secret field is issued by its owner: rotate it there")
            }
        };
        fields.insert(field.to_owned(), Value::String(value));
        return Ok(Value::Object(fields).to_string());
    }
    next_plain(trimmed)
}

fn next_plain(current: &str) -> Result<String, &'static str> {
    let key = random_bytes::<KEY_BYTES>()?;
    Ok(if current.starts_with("whsec_") { format!("whsec_{}", STANDARD.encode(key)) } else { hex::encode(key) })
}

fn api_key() -> Result<String, &'static str> {
    let mut out = String::with_capacity(API_KEY_LEN);
    while out.len() < API_KEY_LEN {
        // Rejection sampling: 248 = 4 × 62, so every character is equally likely.
        for b in random_bytes::<64>()? {
            if b < 248 && out.len() < API_KEY_LEN {
                out.push(ALPHANUMERIC[usize::from(b) % ALPHANUMERIC.len()] as char);
            }
        }
    }
    Ok(out)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], &'static str> {
    let mut buf = [0u8; N];
    OsRng.try_fill_bytes(&mut buf).map_err(|_| "the operating system's random number generator failed")?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whsec_secret_gets_a_new_whsec_secret_of_32_random_bytes() {
        let next = next_value("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let key = STANDARD.decode(next.strip_prefix("whsec_").expect("whsec_ kept")).unwrap();
        assert_eq!(key.len(), 32);
        assert_ne!(next, next_value("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap());
    }

    #[test]
    fn an_api_key_secret_gets_a_new_alphanumeric_key_and_keeps_its_other_fields() {
        let next: Value = serde_json::from_str(&next_value(r#"{"api_key":"old","note":"crm"}"#).unwrap()).unwrap();
        let key = next["api_key"].as_str().unwrap();
        assert!(key.len() == 40 && key.bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
        assert_ne!(key, "old");
        assert_eq!(next["note"], "crm");
    }

    #[test]
    fn an_outbound_signing_key_in_json_gets_a_new_whsec_secret() {
        let next: Value = serde_json::from_str(&next_value(r#"{"secret":"whsec_b2xk"}"#).unwrap()).unwrap();
        assert!(next["secret"].as_str().unwrap().starts_with("whsec_"));
    }

    #[test]
    fn a_plain_hmac_key_gets_64_hex_characters() {
        let next = next_value("local-acme-hmac-secret").unwrap();
        assert!(next.len() == 64 && hex::decode(&next).is_ok(), "{next}");
    }

    #[test]
    fn secrets_issued_by_others_and_empty_or_broken_ones_are_refused() {
        for current in ["", "  ", r#"{"token":"t"}"#, r#"{"username":"u","password":"p"}"#, "{not json", "[]"] {
            assert!(next_value(current).is_err(), "{current:?}");
        }
    }
}
