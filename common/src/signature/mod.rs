//! Inbound webhook signature schemes: verify what a provider sent, and sign the
//! way a provider would (for tests, the local `send` command and outbound signing).
//!
//! Every comparison of a signature is constant-time (`Mac::verify_slice`), every
//! header is read defensively (absent, repeated, non-ASCII, empty, garbage all
//! become a [`SignatureError`], never a panic), and no error message can carry key
//! material or a signature: reasons are `&'static str` by construction.

mod github;
mod hmac;
#[cfg(test)]
mod properties;
mod shopify;
mod standard;
mod stripe;

use self::hmac::{matching_key, tag, Key};
pub use self::hmac::{Encoding, HmacScheme};

use ::hmac::KeyInit;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;

/// How a source signs its webhooks; deserialized from the source's config table,
/// e.g. `scheme = "stripe"` or `scheme = "hmac"` plus the [`HmacScheme`] fields.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum Scheme {
    Stripe,
    /// A preset of [`Scheme::Hmac`] (see `github.rs`).
    Github,
    /// A preset of [`Scheme::Hmac`] (see `shopify.rs`).
    Shopify,
    StandardWebhooks,
    Hmac(HmacScheme),
}

impl Scheme {
    /// Checks the scheme's own configuration (the generic scheme's header names),
    /// so a bad config is found at cold start rather than by the first event.
    pub fn validate(&self) -> Result<(), SignatureError> {
        match self {
            Scheme::Hmac(config) => config.validate(),
            _ => Ok(()),
        }
    }

    /// Checks that `secret` is usable with this scheme (e.g. a Standard Webhooks
    /// secret is `whsec_` + base64), so a bad secret is found at cold start rather
    /// than by the first event.
    pub fn check_secret(&self, secret: &SigningSecret) -> Result<(), SignatureError> {
        self.keys(std::slice::from_ref(secret)).map(|_| ())
    }

    /// The HMAC keys of `secrets`, in order; any unusable secret fails the whole
    /// set, because a half-configured rotation should be loud, not silently halved.
    fn keys(&self, secrets: &[SigningSecret]) -> Result<Vec<Key>, SignatureError> {
        if secrets.is_empty() {
            return Err(SignatureError::NoSecrets);
        }
        secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let key = match self {
                    Scheme::StandardWebhooks => standard::decode_secret(s),
                    _ if s.0.is_empty() => Err("empty"),
                    _ => Ok(s.0.as_bytes().to_vec()),
                };
                key.and_then(|k| Key::new_from_slice(&k).map_err(|_| "unusable as an HMAC key"))
                    .map_err(|reason| SignatureError::InvalidSecret(i, reason))
            })
            .collect()
    }
}

/// A signing secret. `Debug` and `Display` never show the key material.
#[derive(Clone)]
pub struct SigningSecret(String);

impl SigningSecret {
    pub fn new(s: impl Into<String>) -> Self {
        SigningSecret(s.into())
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

impl fmt::Display for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What a successful verification learned from the headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The provider's event/delivery id when the scheme carries one in a header.
    pub event_id: Option<String>,
    /// The signed timestamp (unix seconds) when the scheme carries one.
    pub timestamp: Option<i64>,
    /// Which of the secrets matched: 0 = current, 1 = previous.
    pub key_index: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignatureError {
    #[error("missing header {0}")]
    MissingHeader(String),
    #[error("malformed header {0}: {1}")]
    MalformedHeader(String, &'static str),
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp is {age_secs}s old, beyond the tolerance")]
    StaleTimestamp { age_secs: i64 },
    #[error("timestamp is {ahead_secs}s in the future, beyond the tolerance")]
    FutureTimestamp { ahead_secs: i64 },
    #[error("signing secret #{0} is invalid: {1}")]
    InvalidSecret(usize, &'static str),
    #[error("no signing secret configured")]
    NoSecrets,
    #[error("invalid scheme configuration: {0}")]
    InvalidConfig(&'static str),
    #[error("cannot put the value into header {0}")]
    InvalidHeaderValue(String),
}

impl SignatureError {
    /// Stable snake_case code for HTTP answers, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::MissingHeader(_) => "missing_signature",
            SignatureError::MalformedHeader(..) => "malformed_signature",
            SignatureError::Mismatch => "signature_mismatch",
            SignatureError::StaleTimestamp { .. } => "stale_timestamp",
            SignatureError::FutureTimestamp { .. } => "future_timestamp",
            SignatureError::InvalidSecret(..) => "invalid_secret",
            SignatureError::NoSecrets => "no_secrets",
            SignatureError::InvalidConfig(_) => "invalid_config",
            SignatureError::InvalidHeaderValue(_) => "invalid_header_value",
        }
    }

    /// True when the fault is ours (secrets or scheme config), not the sender's:
    /// the event was not judged, so it must not be answered as a bad signature.
    pub fn is_config_error(&self) -> bool {
        matches!(self, SignatureError::InvalidSecret(..) | SignatureError::NoSecrets | SignatureError::InvalidConfig(_))
    }
}

/// Verify `body` against `headers` with any of `secrets` (current first, then
/// previous: rotation grace). `tolerance_secs` applies where the scheme carries a
/// timestamp, both into the past and the future.
pub fn verify(
    scheme: &Scheme,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[SigningSecret],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<Verified, SignatureError> {
    let keys = scheme.keys(secrets)?;
    let clock = Clock { now: now_unix, tolerance: tolerance_secs.max(0) };
    match scheme {
        Scheme::Stripe => stripe::verify(headers, body, &keys, clock),
        Scheme::Github => github::GITHUB.verify(headers, body, &keys, clock),
        Scheme::Shopify => shopify::SHOPIFY.verify(headers, body, &keys, clock),
        Scheme::StandardWebhooks => standard::verify(headers, body, &keys, clock),
        Scheme::Hmac(config) => config.verify(headers, body, &keys, clock),
    }
}

/// Produce the headers a provider would send. `id` is the event/delivery id where
/// the scheme carries one in a header (ignored by Stripe).
pub fn sign(
    scheme: &Scheme,
    secret: &SigningSecret,
    body: &[u8],
    timestamp: i64,
    id: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, SignatureError> {
    let key = scheme.keys(std::slice::from_ref(secret))?.pop().ok_or(SignatureError::NoSecrets)?;
    match scheme {
        Scheme::Stripe => stripe::sign(&key, body, timestamp),
        Scheme::Github => github::GITHUB.sign(&key, body, timestamp, id),
        Scheme::Shopify => shopify::SHOPIFY.sign(&key, body, timestamp, id),
        Scheme::StandardWebhooks => standard::sign(&key, body, timestamp, id),
        Scheme::Hmac(config) => config.sign(&key, body, timestamp, id),
    }
}

#[derive(Debug, Clone, Copy)]
struct Clock {
    now: i64,
    tolerance: i64,
}

impl Clock {
    fn check(self, timestamp: i64) -> Result<(), SignatureError> {
        let age_secs = self.now.saturating_sub(timestamp);
        if age_secs > self.tolerance {
            Err(SignatureError::StaleTimestamp { age_secs })
        } else if age_secs < -self.tolerance {
            Err(SignatureError::FutureTimestamp { ahead_secs: age_secs.saturating_neg() })
        } else {
            Ok(())
        }
    }
}

/// The single value of a header the scheme cannot do without, trimmed.
fn required<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, SignatureError> {
    optional(headers, name)?.ok_or_else(|| SignatureError::MissingHeader(name.to_owned()))
}

/// The single value of a header, `None` when absent or blank; a repeated or
/// non-ASCII header is malformed rather than guessed at.
fn optional<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(SignatureError::MalformedHeader(name.to_owned(), "header repeated"));
    }
    let value =
        value.to_str().map_err(|_| SignatureError::MalformedHeader(name.to_owned(), "not visible ASCII"))?.trim();
    Ok((!value.is_empty()).then_some(value))
}

/// A unix timestamp in canonical decimal form; anything else ("+1", "01", " 1",
/// out of range) is refused so the signed text and the checked number agree.
fn parse_unix(header: &str, value: &str) -> Result<i64, SignatureError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|t| t.to_string() == value)
        .ok_or_else(|| SignatureError::MalformedHeader(header.to_owned(), "timestamp is not an integer"))
}

/// A value `sign` puts in a header. Surrounding whitespace is refused: HTTP strips
/// it on the way (and `verify` trims it), so the receiver would read another id
/// than the one signed. So is anything but visible ASCII and inner spaces: HTTP
/// lets other bytes through, but `verify` (like most receivers) refuses them.
fn header_value(name: &str, value: &str) -> Result<HeaderValue, SignatureError> {
    let invalid = || SignatureError::InvalidHeaderValue(name.to_owned());
    let visible = value.bytes().all(|b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b));
    if value.trim() != value || !visible {
        return Err(invalid());
    }
    HeaderValue::from_str(value).map_err(|_| invalid())
}

#[cfg(test)]
fn header_map(pairs: Vec<(HeaderName, HeaderValue)>) -> HeaderMap {
    pairs.into_iter().collect()
}

#[cfg(test)]
fn secrets(values: &[&str]) -> Vec<SigningSecret> {
    values.iter().map(|v| SigningSecret::new(*v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_c3VwZXItc2VjcmV0LWtleS1tYXRlcmlhbA==";
    const HEADER_NAMES: &str = "stripe-signature x-hub-signature-256 x-github-delivery \
        x-shopify-hmac-sha256 webhook-id webhook-timestamp webhook-signature x-sig x-sig-time";

    fn all_schemes() -> [Scheme; 5] {
        let generic = HmacScheme {
            header: "X-Sig".into(),
            prefix: "sha256=".into(),
            encoding: Encoding::Hex,
            timestamp_header: Some("X-Sig-Time".into()),
            id_header: Some("X-Sig-Id".into()),
        };
        let (stripe, github, shopify) = (Scheme::Stripe, Scheme::Github, Scheme::Shopify);
        [stripe, github, shopify, Scheme::StandardWebhooks, Scheme::Hmac(generic)]
    }

    #[test]
    fn signing_secret_debug_and_display_never_show_the_key() {
        let secret = SigningSecret::new("whsec_hunter2");
        let nested = format!("{:?}", Some(&secret));
        for shown in [format!("{secret:?}"), format!("{secret}"), nested] {
            assert!(!shown.contains("hunter2") && !shown.contains("whsec"), "{shown}");
        }
    }

    #[test]
    fn every_scheme_refuses_missing_or_empty_secrets_as_config_errors() {
        for scheme in all_schemes() {
            let err = verify(&scheme, &HeaderMap::new(), b"", &[], 0, 300).unwrap_err();
            assert!(err == SignatureError::NoSecrets && err.is_config_error());
            let err = scheme.check_secret(&SigningSecret::new("")).unwrap_err();
            assert!(matches!(err, SignatureError::InvalidSecret(0, _)), "{scheme:?}");
            assert!(sign(&scheme, &SigningSecret::new(""), b"{}", 1, "id").is_err());
            assert!(scheme.check_secret(&SigningSecret::new(SECRET)).is_ok());
            assert!(scheme.validate().is_ok());
        }
    }

    #[test]
    fn every_scheme_round_trips_and_errors_never_echo_signatures_or_secrets() {
        for scheme in all_schemes() {
            let signed = sign(&scheme, &SigningSecret::new(SECRET), b"{}", 1_000, "evt_1").unwrap();
            let headers = header_map(signed.clone());
            let check = |body: &[u8], secret| verify(&scheme, &headers, body, &secrets(&[secret]), 1_000, 300);
            assert!(check(b"{}", SECRET).is_ok(), "{scheme:?}");
            for err in [check(b"[]", SECRET), check(b"{}", "whsec_b3RoZXI=")] {
                let message = err.unwrap_err().to_string();
                for value in signed.iter().filter_map(|(_, v)| v.to_str().ok()) {
                    assert!(value.len() < 12 || !message.contains(value), "{message}");
                }
                assert!(!message.contains("c3VwZXIt"), "{message}");
            }
        }
    }

    #[test]
    fn every_scheme_turns_garbage_into_errors_without_panicking() {
        let garbage: [&[u8]; 10] = [
            b"",
            b" ",
            b"\xff\xfe\xfd",
            b"=,=,=,,,",
            b"t=,v1=",
            b"v1,",
            b"sha256=",
            b"-9223372036854775808",
            b"99999999999999999999999999999999",
            b"t=9223372036854775807,v1=00,v1,AA== sha256=00",
        ];
        let clocks = [(0, 0), (i64::MIN, i64::MAX), (i64::MAX, i64::MIN)];
        for (scheme, value) in all_schemes().iter().flat_map(|s| garbage.map(|g| (s, g))) {
            let mut headers = HeaderMap::new();
            for name in HEADER_NAMES.split_whitespace() {
                headers.insert(name, HeaderValue::from_bytes(value).unwrap());
            }
            for (now, tolerance) in clocks {
                let result = verify(scheme, &headers, value, &secrets(&[SECRET]), now, tolerance);
                assert!(result.is_err(), "{scheme:?} accepted {value:?}");
            }
        }
    }

    #[test]
    fn every_scheme_refuses_to_sign_an_id_with_surrounding_whitespace_or_beyond_visible_ascii() {
        // Found by the signature fuzz targets: GitHub signed " d-1" and verify read
        // back "d-1", since HTTP (and verify) trim header values; every scheme with an
        // id header signed an id with "\u{3db}" in it, which verify refuses as not
        // visible ASCII. Stripe carries no id in a header.
        for scheme in all_schemes().into_iter().filter(|s| *s != Scheme::Stripe) {
            for id in [" d-1", "d-1 ", "\td-1", "d-\u{3db}1", "d-\u{7f}1"] {
                let result = sign(&scheme, &SigningSecret::new(SECRET), b"{}", 1, id);
                assert!(matches!(result, Err(SignatureError::InvalidHeaderValue(_))), "{scheme:?} {id:?}: {result:?}");
            }
        }
    }

    #[test]
    fn error_codes_are_stable_snake_case() {
        use SignatureError::*;
        let errors = [
            MissingHeader("h".into()),
            MalformedHeader("h".into(), "r"),
            Mismatch,
            StaleTimestamp { age_secs: 1 },
            FutureTimestamp { ahead_secs: 1 },
            InvalidSecret(0, "r"),
        ];
        let codes = ["missing_signature", "malformed_signature", "signature_mismatch"];
        let more = ["stale_timestamp", "future_timestamp", "invalid_secret"];
        assert_eq!(errors.map(|e| e.code()), [codes, more].concat().as_slice());
    }
}
