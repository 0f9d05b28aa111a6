//! Standard Webhooks (standardwebhooks.com, Svix): `webhook-id`, `webhook-timestamp`
//! and `webhook-signature` (space-separated `v1,<base64>` entries; other versions,
//! such as the asymmetric `v1a`, are ignored). The signed content is
//! `"{id}.{timestamp}.{body}"` and the key is the base64 after `whsec_`.

use super::{
    header_value, matching_key, parse_unix, required, tag, Clock, Key, SignatureError, SigningSecret, Verified,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";

/// The HMAC key inside a `whsec_<base64>` secret. The prefix is optional, as in
/// the reference libraries; the reason never quotes the secret.
pub(super) fn decode_secret(secret: &SigningSecret) -> Result<Vec<u8>, &'static str> {
    let encoded = secret.0.strip_prefix("whsec_").unwrap_or(&secret.0);
    match STANDARD.decode(encoded) {
        Ok(key) if key.is_empty() => Err("empty"),
        Ok(key) => Ok(key),
        Err(_) => Err("not whsec_ followed by base64"),
    }
}

pub(super) fn verify(headers: &HeaderMap, body: &[u8], keys: &[Key], clock: Clock) -> Result<Verified, SignatureError> {
    let id = required(headers, ID)?;
    let t = required(headers, TIMESTAMP)?;
    let timestamp = parse_unix(TIMESTAMP, t)?;
    let signatures = parse(required(headers, SIGNATURE)?)?;
    let content = [id.as_bytes(), b".", t.as_bytes(), b".", body];
    let key_index = matching_key(keys, &content, &signatures).ok_or(SignatureError::Mismatch)?;
    // After the signature, so "stale" is only ever said of a genuine message.
    clock.check(timestamp)?;
    Ok(Verified { event_id: Some(id.to_owned()), timestamp: Some(timestamp), key_index })
}

pub(super) fn sign(
    key: &Key,
    body: &[u8],
    timestamp: i64,
    id: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, SignatureError> {
    if id.is_empty() {
        return Err(SignatureError::InvalidHeaderValue(ID.to_owned()));
    }
    let t = timestamp.to_string();
    let signature = STANDARD.encode(tag(key, &[id.as_bytes(), b".", t.as_bytes(), b".", body]));
    Ok(vec![
        (HeaderName::from_static(ID), header_value(ID, id)?),
        (HeaderName::from_static(TIMESTAMP), header_value(TIMESTAMP, &t)?),
        (HeaderName::from_static(SIGNATURE), header_value(SIGNATURE, &format!("v1,{signature}"))?),
    ])
}

/// The decodable `v1` signatures of the header.
fn parse(value: &str) -> Result<Vec<Vec<u8>>, SignatureError> {
    let malformed = |reason| SignatureError::MalformedHeader(SIGNATURE.to_owned(), reason);
    let v1: Vec<&str> = value
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .map(|(_, signature)| signature)
        .collect();
    if v1.is_empty() {
        return Err(malformed("no v1 signature"));
    }
    let signatures: Vec<Vec<u8>> =
        v1.into_iter().filter_map(|s| STANDARD.decode(s).ok()).filter(|s| !s.is_empty()).collect();
    if signatures.is_empty() {
        return Err(malformed("v1 signature is not base64"));
    }
    Ok(signatures)
}

#[cfg(test)]
mod tests {
    use super::super::{header_map, secrets, sign, verify, Scheme};
    use super::*;

    // The published test vector of the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const T: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(id: &str, t: &str, signature: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_str(id).unwrap());
        headers.insert("webhook-timestamp", HeaderValue::from_str(t).unwrap());
        headers.insert("webhook-signature", HeaderValue::from_bytes(signature).unwrap());
        headers
    }

    fn vector() -> HeaderMap {
        headers(ID, &T.to_string(), SIGNATURE.as_bytes())
    }

    fn check(headers: &HeaderMap, body: &[u8], keys: &[&str], now: i64) -> Result<Verified, SignatureError> {
        verify(&Scheme::StandardWebhooks, headers, body, &secrets(keys), now, 300)
    }

    #[test]
    fn standard_webhooks_accepts_the_published_test_vector() {
        let verified = check(&vector(), BODY, &[SECRET], T).unwrap();
        assert_eq!(verified, Verified { event_id: Some(ID.into()), timestamp: Some(T), key_index: 0 });
    }

    #[test]
    fn standard_webhooks_signs_the_published_test_vector() {
        let signed = sign(&Scheme::StandardWebhooks, &SigningSecret::new(SECRET), BODY, T, ID).unwrap();
        assert_eq!(header_map(signed), vector());
    }

    #[test]
    fn standard_webhooks_round_trips_what_it_signs() {
        let secret = "whsec_c2VjcmV0LWtleS1vZi1hdC1sZWFzdC0yNC1ieXRlcw==";
        let signed = sign(&Scheme::StandardWebhooks, &SigningSecret::new(secret), b"{}", T, "msg_1").unwrap();
        let verified = check(&header_map(signed), b"{}", &[secret], T - 5).unwrap();
        assert_eq!((verified.event_id.as_deref(), verified.timestamp), (Some("msg_1"), Some(T)));
    }

    #[test]
    fn standard_webhooks_rejects_a_body_with_one_byte_changed() {
        let body = br#"{"test": 2432232315}"#;
        assert_eq!(check(&vector(), body, &[SECRET], T), Err(SignatureError::Mismatch));
    }

    #[test]
    fn standard_webhooks_rejects_a_changed_signature_id_or_timestamp() {
        let changed = SIGNATURE.replace("g0h", "g1h");
        let cases = [
            headers(ID, &T.to_string(), changed.as_bytes()),
            headers("msg_p5jXN8AQM9LWM0D4loKWxJel", &T.to_string(), SIGNATURE.as_bytes()),
            headers(ID, &(T + 1).to_string(), SIGNATURE.as_bytes()),
        ];
        for headers in cases {
            assert_eq!(check(&headers, BODY, &[SECRET], T), Err(SignatureError::Mismatch));
        }
    }

    #[test]
    fn standard_webhooks_rejects_stale_and_future_timestamps_distinctly() {
        assert!(check(&vector(), BODY, &[SECRET], T + 300).is_ok());
        assert!(check(&vector(), BODY, &[SECRET], T - 300).is_ok());
        let stale = check(&vector(), BODY, &[SECRET], T + 301);
        assert_eq!(stale, Err(SignatureError::StaleTimestamp { age_secs: 301 }));
        let future = check(&vector(), BODY, &[SECRET], T - 301);
        assert_eq!(future, Err(SignatureError::FutureTimestamp { ahead_secs: 301 }));
    }

    #[test]
    fn standard_webhooks_reports_each_missing_header() {
        for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut headers = vector();
            headers.remove(missing);
            let result = check(&headers, BODY, &[SECRET], T);
            assert_eq!(result, Err(SignatureError::MissingHeader(missing.into())));
        }
    }

    #[test]
    fn standard_webhooks_reports_malformed_headers() {
        let t = T.to_string();
        let bad_timestamps = ["soon", "1614265330.5", "+1614265330", "99999999999999999999"];
        for bad in bad_timestamps {
            let result = check(&headers(ID, bad, SIGNATURE.as_bytes()), BODY, &[SECRET], T);
            assert_eq!(result, Err(SignatureError::MalformedHeader(TIMESTAMP.into(), "timestamp is not an integer")));
        }
        let bad_signatures: [&[u8]; 6] = [b"garbage", b"v1", b"v2,abc", b"v1a,abc", b"v1,***", b"v1,\xff"];
        for bad in bad_signatures {
            let result = check(&headers(ID, &t, bad), BODY, &[SECRET], T);
            assert!(matches!(result, Err(SignatureError::MalformedHeader(..))), "{bad:?}: {result:?}");
        }
    }

    #[test]
    fn standard_webhooks_accepts_any_listed_signature_and_ignores_other_versions() {
        let listed = format!("v1a,c2lnbmF0dXJl v2,abc v1,AAAA v1,*** {SIGNATURE}");
        let result = check(&headers(ID, &T.to_string(), listed.as_bytes()), BODY, &[SECRET], T);
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn standard_webhooks_accepts_the_previous_secret_and_reports_key_index_1() {
        let current = "whsec_bmV3LXNlY3JldC1rZXktbWF0ZXJpYWwtaGVyZQ==";
        let verified = check(&vector(), BODY, &[current, SECRET], T).unwrap();
        assert_eq!(verified.key_index, 1);
    }

    #[test]
    fn standard_webhooks_accepts_a_secret_without_the_whsec_prefix() {
        let bare = SECRET.trim_start_matches("whsec_");
        assert!(check(&vector(), BODY, &[bare], T).is_ok());
    }

    #[test]
    fn standard_webhooks_reports_a_bad_secret_without_quoting_it() {
        for bad in ["whsec_not base64!", "whsec_", ""] {
            let result = check(&vector(), BODY, &[SECRET, bad], T);
            let err = result.unwrap_err();
            assert!(matches!(err, SignatureError::InvalidSecret(1, _)), "{err:?}");
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad), "{err}");
            }
        }
    }

    #[test]
    fn standard_webhooks_refuses_to_sign_without_an_id() {
        let result = sign(&Scheme::StandardWebhooks, &SigningSecret::new(SECRET), BODY, T, "");
        assert_eq!(result, Err(SignatureError::InvalidHeaderValue("webhook-id".into())));
    }
}
