//! Shopify: `X-Shopify-Hmac-Sha256: <base64>`, HMAC-SHA256 over the raw body with
//! the app's client secret; the event id rides in `X-Shopify-Webhook-Id`. No signed
//! timestamp, so replays are stopped by deduplicating on the webhook id.
//!
//! A preset of the generic scheme: no prefix, base64, these two headers.

use super::{Encoding, HmacScheme};
use std::sync::LazyLock;

pub(super) static SHOPIFY: LazyLock<HmacScheme> = LazyLock::new(|| HmacScheme {
    header: "X-Shopify-Hmac-Sha256".to_owned(),
    prefix: String::new(),
    encoding: Encoding::Base64,
    timestamp_header: None,
    id_header: Some("X-Shopify-Webhook-Id".to_owned()),
});

#[cfg(test)]
mod tests {
    use super::super::{header_map, secrets, sign, verify, Scheme, SignatureError, SigningSecret, Verified};
    use http::{HeaderMap, HeaderValue};

    // Shopify publishes no fixed vector; this one was computed independently with
    // Python: base64.b64encode(hmac.new(SECRET, BODY, sha256).digest()).
    const SECRET: &str = "shpss_example_secret";
    const BODY: &[u8] = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
    const SIGNATURE: &str = "35DGSCsYGhssCXikM1rFvRtvLrHjZ3LG9BTZ5lYDs7g=";
    const WEBHOOK_ID: &str = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";

    fn headers(signature: &[u8], id: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-shopify-hmac-sha256", HeaderValue::from_bytes(signature).unwrap());
        if let Some(id) = id {
            headers.insert("x-shopify-webhook-id", HeaderValue::from_str(id).unwrap());
        }
        headers
    }

    fn check(headers: &HeaderMap, body: &[u8], keys: &[&str]) -> Result<Verified, SignatureError> {
        verify(&Scheme::Shopify, headers, body, &secrets(keys), 0, 300)
    }

    #[test]
    fn shopify_accepts_an_independently_computed_signature() {
        let verified = check(&headers(SIGNATURE.as_bytes(), Some(WEBHOOK_ID)), BODY, &[SECRET]).unwrap();
        let expected = Verified { event_id: Some(WEBHOOK_ID.into()), timestamp: None, key_index: 0 };
        assert_eq!(verified, expected);
    }

    #[test]
    fn shopify_signs_exactly_what_shopify_would_send() {
        let signed = sign(&Scheme::Shopify, &SigningSecret::new(SECRET), BODY, 0, WEBHOOK_ID).unwrap();
        assert_eq!(header_map(signed), headers(SIGNATURE.as_bytes(), Some(WEBHOOK_ID)));
    }

    #[test]
    fn shopify_round_trips_what_it_signs() {
        let signed = sign(&Scheme::Shopify, &SigningSecret::new("k"), b"[]", 0, "w-1").unwrap();
        let verified = check(&header_map(signed), b"[]", &["k"]).unwrap();
        assert_eq!(verified.event_id.as_deref(), Some("w-1"));
    }

    #[test]
    fn shopify_rejects_a_body_with_one_byte_changed() {
        let mut body = BODY.to_vec();
        body[10] = b'3';
        assert_eq!(check(&headers(SIGNATURE.as_bytes(), None), &body, &[SECRET]), Err(SignatureError::Mismatch));
    }

    #[test]
    fn shopify_rejects_a_changed_signature() {
        let changed = SIGNATURE.replacen('3', "4", 1);
        assert_eq!(check(&headers(changed.as_bytes(), None), BODY, &[SECRET]), Err(SignatureError::Mismatch));
    }

    #[test]
    fn shopify_reports_a_missing_signature_header() {
        let result = check(&HeaderMap::new(), BODY, &[SECRET]);
        assert_eq!(result, Err(SignatureError::MissingHeader("X-Shopify-Hmac-Sha256".into())));
    }

    #[test]
    fn shopify_reports_malformed_headers() {
        let unpadded = SIGNATURE.trim_end_matches('=');
        for bad in [b"not base64!".as_slice(), unpadded.as_bytes(), b"====", b"\xff"] {
            let result = check(&headers(bad, None), BODY, &[SECRET]);
            assert!(matches!(result, Err(SignatureError::MalformedHeader(..))), "{bad:?}: {result:?}");
        }
    }

    #[test]
    fn shopify_accepts_the_previous_secret_and_reports_key_index_1() {
        let verified = check(&headers(SIGNATURE.as_bytes(), None), BODY, &["shpss_new", SECRET]).unwrap();
        assert_eq!(verified.key_index, 1);
    }
}
