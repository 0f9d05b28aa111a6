//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 over the raw body; the
//! delivery id rides in `X-GitHub-Delivery`. There is no signed timestamp, so the
//! ledger's deduplication on the delivery id is what stops a replay.
//!
//! A preset of the generic scheme: GitHub's signature is exactly what an
//! [`HmacScheme`] with these headers, this prefix and hex describes.

use super::{Encoding, HmacScheme};
use std::sync::LazyLock;

pub(super) static GITHUB: LazyLock<HmacScheme> = LazyLock::new(|| HmacScheme {
    header: "X-Hub-Signature-256".to_owned(),
    prefix: "sha256=".to_owned(),
    encoding: Encoding::Hex,
    timestamp_header: None,
    id_header: Some("X-GitHub-Delivery".to_owned()),
});

#[cfg(test)]
mod tests {
    use super::super::{header_map, secrets, sign, verify, Scheme, SignatureError, SigningSecret, Verified};
    use http::{HeaderMap, HeaderValue};

    // GitHub's documented example ("Validating webhook deliveries").
    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const DELIVERY_ID: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

    fn headers(signature: &[u8], delivery: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-hub-signature-256", HeaderValue::from_bytes(signature).unwrap());
        if let Some(id) = delivery {
            headers.insert("x-github-delivery", HeaderValue::from_str(id).unwrap());
        }
        headers
    }

    fn check(headers: &HeaderMap, body: &[u8], keys: &[&str]) -> Result<Verified, SignatureError> {
        // GitHub carries no timestamp: any clock and tolerance must do.
        verify(&Scheme::Github, headers, body, &secrets(keys), i64::MIN, 0)
    }

    #[test]
    fn github_accepts_its_documented_example() {
        let verified = check(&headers(SIGNATURE.as_bytes(), Some(DELIVERY_ID)), BODY, &[SECRET]).unwrap();
        let expected = Verified { event_id: Some(DELIVERY_ID.into()), timestamp: None, key_index: 0 };
        assert_eq!(verified, expected);
    }

    #[test]
    fn github_signs_exactly_what_github_would_send() {
        let signed = sign(&Scheme::Github, &SigningSecret::new(SECRET), BODY, 0, DELIVERY_ID).unwrap();
        assert_eq!(header_map(signed), headers(SIGNATURE.as_bytes(), Some(DELIVERY_ID)));
    }

    #[test]
    fn github_round_trips_what_it_signs() {
        let signed = sign(&Scheme::Github, &SigningSecret::new("s3cret"), b"{}", 0, "d-1").unwrap();
        let verified = check(&header_map(signed), b"{}", &["s3cret"]).unwrap();
        assert_eq!(verified.event_id.as_deref(), Some("d-1"));
    }

    #[test]
    fn github_rejects_a_body_with_one_byte_changed() {
        let result = check(&headers(SIGNATURE.as_bytes(), None), b"Hello, World?", &[SECRET]);
        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn github_rejects_a_changed_signature() {
        let changed = SIGNATURE.replace("7571", "7572");
        assert_eq!(check(&headers(changed.as_bytes(), None), BODY, &[SECRET]), Err(SignatureError::Mismatch));
        let short = &SIGNATURE[..SIGNATURE.len() - 2];
        assert_eq!(check(&headers(short.as_bytes(), None), BODY, &[SECRET]), Err(SignatureError::Mismatch));
    }

    #[test]
    fn github_reports_a_missing_signature_header() {
        let result = check(&HeaderMap::new(), BODY, &[SECRET]);
        assert_eq!(result, Err(SignatureError::MissingHeader("X-Hub-Signature-256".into())));
    }

    #[test]
    fn github_accepts_a_delivery_without_an_id() {
        let verified = check(&headers(SIGNATURE.as_bytes(), None), BODY, &[SECRET]).unwrap();
        assert_eq!(verified.event_id, None);
    }

    #[test]
    fn github_reports_malformed_headers() {
        let bare_hex = &SIGNATURE["sha256=".len()..];
        let sha1 = format!("sha1={bare_hex}");
        let odd = format!("{SIGNATURE}0");
        for bad in [bare_hex.as_bytes(), sha1.as_bytes(), odd.as_bytes(), b"sha256=zz", b"sha256=", b"\xff\xfe"] {
            let result = check(&headers(bad, None), BODY, &[SECRET]);
            assert!(matches!(result, Err(SignatureError::MalformedHeader(..))), "{bad:?}: {result:?}");
        }
        let mut repeated = headers(SIGNATURE.as_bytes(), None);
        repeated.append("x-hub-signature-256", HeaderValue::from_static("sha256=00"));
        assert!(matches!(check(&repeated, BODY, &[SECRET]), Err(SignatureError::MalformedHeader(..))));
        let mut bad_id = headers(SIGNATURE.as_bytes(), None);
        bad_id.insert("x-github-delivery", HeaderValue::from_bytes(b"\xe9t\xe9").unwrap());
        let result = check(&bad_id, BODY, &[SECRET]);
        assert_eq!(result, Err(SignatureError::MalformedHeader("X-GitHub-Delivery".into(), "not visible ASCII")));
    }

    #[test]
    fn github_accepts_the_previous_secret_and_reports_key_index_1() {
        let verified = check(&headers(SIGNATURE.as_bytes(), None), BODY, &["rotated", SECRET]).unwrap();
        assert_eq!(verified.key_index, 1);
    }

    #[test]
    fn github_refuses_to_sign_with_an_id_that_cannot_be_a_header() {
        let result = sign(&Scheme::Github, &SigningSecret::new(SECRET), BODY, 0, "line\nbreak");
        assert_eq!(result, Err(SignatureError::InvalidHeaderValue("X-GitHub-Delivery".into())));
    }
}
