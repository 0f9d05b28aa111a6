//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...][,v0=...]`, HMAC-SHA256
//! over `"{t}.{body}"`, keyed with the `whsec_...` string as-is (Stripe does not
//! decode it). Several `v1` entries appear while Stripe rolls a secret; any match
//! wins. The event id lives in the payload, not in a header.

use super::{header_value, matching_key, parse_unix, required, tag, Clock, Key, SignatureError, Verified};
use http::{HeaderMap, HeaderName, HeaderValue};

const HEADER: &str = "Stripe-Signature";

pub(super) fn verify(headers: &HeaderMap, body: &[u8], keys: &[Key], clock: Clock) -> Result<Verified, SignatureError> {
    let (t, signatures) = parse(required(headers, HEADER)?)?;
    let timestamp = parse_unix(HEADER, t)?;
    let key_index = matching_key(keys, &[t.as_bytes(), b".", body], &signatures).ok_or(SignatureError::Mismatch)?;
    // Checked after the signature, so "stale" is only ever said of a genuine
    // (replayed or delayed) Stripe event, never of a forgery.
    clock.check(timestamp)?;
    Ok(Verified { event_id: None, timestamp: Some(timestamp), key_index })
}

pub(super) fn sign(key: &Key, body: &[u8], timestamp: i64) -> Result<Vec<(HeaderName, HeaderValue)>, SignatureError> {
    let t = timestamp.to_string();
    let v1 = hex::encode(tag(key, &[t.as_bytes(), b".", body]));
    let value = header_value(HEADER, &format!("t={t},v1={v1}"))?;
    Ok(vec![(HeaderName::from_static("stripe-signature"), value)])
}

/// The raw `t` value and the decodable `v1` signatures.
fn parse(value: &str) -> Result<(&str, Vec<Vec<u8>>), SignatureError> {
    let malformed = |reason| SignatureError::MalformedHeader(HEADER.to_owned(), reason);
    let mut t = None;
    let mut v1_seen = false;
    let mut signatures = Vec::new();
    // Like Stripe's own libraries: unknown items (v0, future schemes) are skipped.
    for (key, val) in value.split(',').filter_map(|item| item.trim().split_once('=')) {
        match key {
            "t" if t.is_some() => return Err(malformed("t appears twice")),
            "t" => t = Some(val),
            "v1" => {
                v1_seen = true;
                signatures.extend(hex::decode(val).ok().filter(|s| !s.is_empty()));
            }
            _ => {}
        }
    }
    let t = t.ok_or(malformed("no t= timestamp"))?;
    if !v1_seen {
        return Err(malformed("no v1 signature"));
    }
    if signatures.is_empty() {
        return Err(malformed("v1 signature is not hex"));
    }
    Ok((t, signatures))
}

#[cfg(test)]
mod tests {
    use super::super::{header_map, secrets, sign, verify, Scheme, SigningSecret};
    use super::*;

    // Computed independently with Python's hmac module:
    // hmac.new(SECRET, b"1700000000." + BODY, sha256).hexdigest()
    const SECRET: &str = "whsec_stripe_example_secret";
    const T: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event"}"#;
    const V1: &str = "0ce52b5cc981c5efbed579d14f6a579d03f0b9167debc23ddf573f8519400ad9";

    fn check_with(header: &[u8], body: &[u8], keys: &[&str], now: i64) -> Result<Verified, SignatureError> {
        let mut headers = HeaderMap::new();
        headers.insert("stripe-signature", HeaderValue::from_bytes(header).unwrap());
        verify(&Scheme::Stripe, &headers, body, &secrets(keys), now, 300)
    }

    fn check(header: &str, body: &[u8], now: i64) -> Result<Verified, SignatureError> {
        check_with(header.as_bytes(), body, &[SECRET], now)
    }

    fn signed(secret: &str, body: &[u8], t: i64) -> HeaderMap {
        header_map(sign(&Scheme::Stripe, &SigningSecret::new(secret), body, t, "ignored").unwrap())
    }

    #[test]
    fn stripe_accepts_an_independently_computed_signature() {
        let verified = check(&format!("t={T},v1={V1}"), BODY, T).unwrap();
        assert_eq!(verified, Verified { event_id: None, timestamp: Some(T), key_index: 0 });
    }

    #[test]
    fn stripe_signs_exactly_what_stripe_would_send() {
        let headers = signed(SECRET, BODY, T);
        assert_eq!(headers["stripe-signature"], format!("t={T},v1={V1}").as_str());
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn stripe_round_trips_what_it_signs() {
        let headers = signed(SECRET, b"{}", T);
        let verified = verify(&Scheme::Stripe, &headers, b"{}", &secrets(&[SECRET]), T + 10, 300);
        assert_eq!(verified.unwrap().timestamp, Some(T));
    }

    #[test]
    fn stripe_rejects_a_body_with_one_byte_changed() {
        let mut body = BODY.to_vec();
        body[7] ^= 1;
        assert_eq!(check(&format!("t={T},v1={V1}"), &body, T), Err(SignatureError::Mismatch));
    }

    #[test]
    fn stripe_rejects_a_changed_signature() {
        let changed = format!("1{}", &V1[1..]);
        assert_eq!(check(&format!("t={T},v1={changed}"), BODY, T), Err(SignatureError::Mismatch));
        let truncated = &V1[..62];
        assert_eq!(check(&format!("t={T},v1={truncated}"), BODY, T), Err(SignatureError::Mismatch));
    }

    #[test]
    fn stripe_rejects_a_changed_timestamp() {
        assert_eq!(check(&format!("t={},v1={V1}", T + 1), BODY, T), Err(SignatureError::Mismatch));
    }

    #[test]
    fn stripe_rejects_a_stale_timestamp_as_stale() {
        let header = format!("t={T},v1={V1}");
        assert!(check(&header, BODY, T + 300).is_ok());
        assert_eq!(check(&header, BODY, T + 301), Err(SignatureError::StaleTimestamp { age_secs: 301 }));
    }

    #[test]
    fn stripe_rejects_a_future_timestamp_as_future() {
        let header = format!("t={T},v1={V1}");
        assert!(check(&header, BODY, T - 300).is_ok());
        assert_eq!(check(&header, BODY, T - 301), Err(SignatureError::FutureTimestamp { ahead_secs: 301 }));
    }

    #[test]
    fn stripe_reports_a_missing_or_blank_header() {
        let missing = verify(&Scheme::Stripe, &HeaderMap::new(), BODY, &secrets(&[SECRET]), T, 300);
        assert_eq!(missing, Err(SignatureError::MissingHeader("Stripe-Signature".into())));
        assert_eq!(check("  ", BODY, T), Err(SignatureError::MissingHeader("Stripe-Signature".into())));
    }

    #[test]
    fn stripe_reports_malformed_headers() {
        let v1 = format!("v1={V1}");
        for header in [
            "garbage".to_owned(),
            v1.clone(),
            format!("t={T}"),
            format!("t={T},v0={V1}"),
            format!("t=abc,{v1}"),
            format!("t=+{T},{v1}"),
            format!("t=0{T},{v1}"),
            format!("t=99999999999999999999,{v1}"),
            format!("t={T},t={T},{v1}"),
            format!("t={T},v1=not-hex"),
            format!("t={T},v1="),
        ] {
            let err = check(&header, BODY, T).unwrap_err();
            assert!(matches!(err, SignatureError::MalformedHeader(..)), "{header}: {err:?}");
        }
        let non_utf8 = check_with(b"t=1700000000,v1=\xff\xfe", BODY, &[SECRET], T);
        assert!(matches!(non_utf8, Err(SignatureError::MalformedHeader(..))));
    }

    #[test]
    fn stripe_accepts_any_of_several_v1_signatures_and_ignores_v0() {
        let other = "ab".repeat(32);
        let header = format!("t={T}, v1={other}, v1=zz, v1={V1}, v0={other}, scheme=x, junk");
        assert!(check(&header, BODY, T).is_ok());
    }

    #[test]
    fn stripe_accepts_the_previous_secret_and_reports_key_index_1() {
        let header = format!("t={T},v1={V1}");
        let verified = check_with(header.as_bytes(), BODY, &["whsec_new", SECRET], T).unwrap();
        assert_eq!(verified.key_index, 1);
        let neither = check_with(header.as_bytes(), BODY, &["whsec_new", "whsec_old"], T);
        assert_eq!(neither, Err(SignatureError::Mismatch));
    }

    #[test]
    fn stripe_survives_extreme_timestamps() {
        let far_future = signed(SECRET, BODY, i64::MAX);
        let result = verify(&Scheme::Stripe, &far_future, BODY, &secrets(&[SECRET]), i64::MIN, i64::MAX);
        assert_eq!(result, Err(SignatureError::FutureTimestamp { ahead_secs: i64::MAX }));
        let ancient = signed(SECRET, BODY, i64::MIN);
        let result = verify(&Scheme::Stripe, &ancient, BODY, &secrets(&[SECRET]), i64::MAX, 300);
        assert_eq!(result, Err(SignatureError::StaleTimestamp { age_secs: i64::MAX }));
    }
}
