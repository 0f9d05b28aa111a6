//! HMAC-SHA256: the keyed MAC every scheme computes, and the generic scheme for
//! providers without one of their own, where the signature header, its prefix and
//! encoding, an optional signed timestamp and an optional event id header are all
//! configuration. GitHub and Shopify are presets of it (`github.rs`, `shopify.rs`).

use super::{header_value, optional, parse_unix, required, Clock, SignatureError, Verified};
use ::hmac::{Hmac, Mac};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

/// How the signature bytes are written in the header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

/// Configuration of the generic scheme, e.g. in a source's TOML table:
/// `scheme = "hmac"`, `header = "X-Acme-Signature"`, `prefix = "sha256="`, `encoding = "hex"`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct HmacScheme {
    /// The header carrying the signature, e.g. `X-Acme-Signature`.
    pub header: String,
    /// Text before the encoded signature, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// When set, the signed content is `"{timestamp}.{body}"` and the timestamp
    /// (unix seconds, from this header) is checked against the tolerance.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// The header carrying the event id, if any.
    #[serde(default)]
    pub id_header: Option<String>,
}

impl HmacScheme {
    /// Checks that every configured header name is a valid HTTP header name.
    pub fn validate(&self) -> Result<(), SignatureError> {
        let optional = self.timestamp_header.iter().chain(&self.id_header);
        for name in std::iter::once(&self.header).chain(optional) {
            header_name(name)?;
        }
        Ok(())
    }

    pub(super) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        keys: &[Key],
        clock: Clock,
    ) -> Result<Verified, SignatureError> {
        self.validate()?;
        let malformed = |reason| SignatureError::MalformedHeader(self.header.clone(), reason);
        let encoded = required(headers, &self.header)?
            .strip_prefix(self.prefix.as_str())
            .ok_or_else(|| malformed("signature prefix missing"))?;
        let signature = match self.encoding {
            Encoding::Hex => hex::decode(encoded).map_err(|_| malformed("signature is not hex")),
            Encoding::Base64 => STANDARD.decode(encoded).map_err(|_| malformed("signature is not base64")),
        }?;
        if signature.is_empty() {
            return Err(malformed("signature is empty"));
        }
        let signed_timestamp = match &self.timestamp_header {
            Some(name) => {
                let raw = required(headers, name)?;
                Some((raw, parse_unix(name, raw)?))
            }
            None => None,
        };
        let event_id = match &self.id_header {
            Some(name) => optional(headers, name)?.map(str::to_owned),
            None => None,
        };
        let content: &[&[u8]] = match signed_timestamp {
            Some((raw, _)) => &[raw.as_bytes(), b".", body],
            None => &[body],
        };
        let key_index = matching_key(keys, content, &[signature]).ok_or(SignatureError::Mismatch)?;
        let timestamp = signed_timestamp.map(|(_, t)| t);
        if let Some(t) = timestamp {
            clock.check(t)?;
        }
        Ok(Verified { event_id, timestamp, key_index })
    }

    pub(super) fn sign(
        &self,
        key: &Key,
        body: &[u8],
        timestamp: i64,
        id: &str,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignatureError> {
        self.validate()?;
        let t = timestamp.to_string();
        let content: &[&[u8]] = match self.timestamp_header {
            Some(_) => &[t.as_bytes(), b".", body],
            None => &[body],
        };
        let mac = tag(key, content);
        let encoded = match self.encoding {
            Encoding::Hex => hex::encode(mac),
            Encoding::Base64 => STANDARD.encode(mac),
        };
        let signature = format!("{}{encoded}", self.prefix);
        let mut headers = vec![(header_name(&self.header)?, header_value(&self.header, &signature)?)];
        if let Some(name) = &self.timestamp_header {
            headers.push((header_name(name)?, header_value(name, &t)?));
        }
        if let Some(name) = self.id_header.as_ref().filter(|_| !id.is_empty()) {
            headers.push((header_name(name)?, header_value(name, id)?));
        }
        Ok(headers)
    }
}

/// A keyed HMAC-SHA256, prepared once per secret and cloned per message.
pub(super) type Key = Hmac<Sha256>;

/// HMAC-SHA256 of the concatenated `parts`.
fn mac_of(key: &Key, parts: &[&[u8]]) -> Key {
    let mut mac = key.clone();
    parts.iter().for_each(|part| mac.update(part));
    mac
}

pub(super) fn tag(key: &Key, parts: &[&[u8]]) -> Vec<u8> {
    mac_of(key, parts).finalize().into_bytes().to_vec()
}

/// Index of the first key whose MAC over `parts` equals any of `candidates`,
/// each comparison constant-time.
pub(super) fn matching_key(keys: &[Key], parts: &[&[u8]], candidates: &[Vec<u8>]) -> Option<usize> {
    keys.iter().position(|key| {
        let mac = mac_of(key, parts);
        candidates.iter().any(|c| mac.clone().verify_slice(c).is_ok())
    })
}

fn header_name(name: &str) -> Result<HeaderName, SignatureError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| SignatureError::InvalidConfig("a configured header name is not a valid HTTP header name"))
}

#[cfg(test)]
mod tests {
    use super::super::{header_map, secrets, sign, verify, Scheme, SigningSecret};
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    // Computed independently with Python's hmac module.
    const SECRET: &str = "acme-secret";
    const T: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"event":"ping"}"#;
    /// hex(hmac(SECRET, "1700000000." + BODY))
    const TIMED_HEX: &str = "f3299f0d735063a1152ae3a0d3e8fcf98a4032308189c917e5b19b5533843acd";
    /// base64(hmac(SECRET, BODY))
    const PLAIN_BASE64: &str = "unJ7eq1UxVJDGNgqvIqLjoB0YJuflAbzJhKv6WyYIiw=";

    fn timed() -> Scheme {
        Scheme::Hmac(HmacScheme {
            header: "X-Acme-Signature".into(),
            prefix: "sha256=".into(),
            encoding: Encoding::Hex,
            timestamp_header: Some("X-Acme-Timestamp".into()),
            id_header: Some("X-Acme-Event".into()),
        })
    }

    fn plain_config() -> HmacScheme {
        HmacScheme {
            header: "X-Sig".into(),
            prefix: String::new(),
            encoding: Encoding::Base64,
            timestamp_header: None,
            id_header: None,
        }
    }

    fn plain() -> Scheme {
        Scheme::Hmac(plain_config())
    }

    fn timed_headers(signature: &str, t: &str) -> HeaderMap {
        let values = [signature, t, "evt_42"].map(|v| HeaderValue::from_str(v).unwrap());
        let names = ["x-acme-signature", "x-acme-timestamp", "x-acme-event"].map(HeaderName::from_static);
        names.into_iter().zip(values).collect()
    }

    fn plain_headers(signature: &'static str) -> HeaderMap {
        let value = HeaderValue::from_static(signature);
        HeaderMap::from_iter([(HeaderName::from_static("x-sig"), value)])
    }

    fn vector() -> HeaderMap {
        timed_headers(&format!("sha256={TIMED_HEX}"), &T.to_string())
    }

    fn check(scheme: &Scheme, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Verified, SignatureError> {
        verify(scheme, headers, body, &secrets(&[SECRET]), now, 300)
    }

    #[test]
    fn hmac_accepts_independently_computed_signatures() {
        let verified = check(&timed(), &vector(), BODY, T).unwrap();
        let expected = Verified { event_id: Some("evt_42".into()), timestamp: Some(T), key_index: 0 };
        assert_eq!(verified, expected);
        let verified = check(&plain(), &plain_headers(PLAIN_BASE64), BODY, 0).unwrap();
        assert_eq!(verified, Verified { event_id: None, timestamp: None, key_index: 0 });
    }

    #[test]
    fn hmac_round_trips_what_it_signs_in_both_encodings() {
        for scheme in [timed(), plain()] {
            let signed = sign(&scheme, &SigningSecret::new(SECRET), b"x", T, "evt_42").unwrap();
            assert!(check(&scheme, &header_map(signed), b"x", T).is_ok(), "{scheme:?}");
        }
        let signed = sign(&timed(), &SigningSecret::new(SECRET), BODY, T, "evt_42").unwrap();
        assert_eq!(header_map(signed), vector());
    }

    #[test]
    fn hmac_rejects_a_body_with_one_byte_changed() {
        let result = check(&timed(), &vector(), br#"{"event":"pong"}"#, T);
        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn hmac_rejects_a_changed_signature_or_timestamp() {
        let changed = timed_headers(&format!("sha256=0{}", &TIMED_HEX[1..]), &T.to_string());
        let moved = timed_headers(&format!("sha256={TIMED_HEX}"), &(T - 1).to_string());
        for headers in [changed, moved] {
            assert_eq!(check(&timed(), &headers, BODY, T), Err(SignatureError::Mismatch));
        }
    }

    #[test]
    fn hmac_rejects_stale_and_future_timestamps_distinctly() {
        let stale = check(&timed(), &vector(), BODY, T + 301);
        assert_eq!(stale, Err(SignatureError::StaleTimestamp { age_secs: 301 }));
        let future = check(&timed(), &vector(), BODY, T - 301);
        assert_eq!(future, Err(SignatureError::FutureTimestamp { ahead_secs: 301 }));
    }

    #[test]
    fn hmac_reports_missing_headers() {
        for name in ["X-Acme-Signature", "X-Acme-Timestamp"] {
            let mut headers = vector();
            headers.remove(name);
            let result = check(&timed(), &headers, BODY, T);
            assert_eq!(result, Err(SignatureError::MissingHeader(name.into())));
        }
    }

    #[test]
    fn hmac_reports_malformed_headers() {
        let (t, good) = (T.to_string(), format!("sha256={TIMED_HEX}"));
        let cases = [(TIMED_HEX, t.as_str()), ("sha256=xyz", &t), ("sha256=", &t), (&good, "soon"), (&good, "1e9")];
        for (signature, timestamp) in cases {
            let result = check(&timed(), &timed_headers(signature, timestamp), BODY, T);
            let malformed = matches!(result, Err(SignatureError::MalformedHeader(..)));
            assert!(malformed, "{signature} {timestamp}: {result:?}");
        }
        let result = check(&plain(), &plain_headers("!!!"), BODY, 0);
        let reason = "signature is not base64";
        assert_eq!(result, Err(SignatureError::MalformedHeader("X-Sig".into(), reason)));
    }

    #[test]
    fn hmac_accepts_the_previous_secret_and_reports_key_index_1() {
        let rotated = secrets(&["acme-next", SECRET]);
        let verified = verify(&timed(), &vector(), BODY, &rotated, T, 300).unwrap();
        assert_eq!(verified.key_index, 1);
    }

    #[test]
    fn hmac_reports_an_invalid_header_name_as_a_config_error() {
        let broken = Scheme::Hmac(HmacScheme { header: "X Bad Header".into(), ..plain_config() });
        let err = check(&broken, &vector(), BODY, T).unwrap_err();
        assert!(err.is_config_error() && err.code() == "invalid_config", "{err:?}");
        assert_eq!(broken.validate(), Err(err));
        assert!(sign(&broken, &SigningSecret::new(SECRET), BODY, T, "").is_err());
    }

    #[derive(Debug, serde::Deserialize)]
    struct Source {
        secret_id: String,
        #[serde(flatten)]
        scheme: Scheme,
    }

    #[test]
    fn schemes_deserialize_from_flattened_toml_tables_and_refuse_unknown_names() {
        #[derive(serde::Deserialize)]
        struct Config {
            sources: BTreeMap<String, Source>,
        }
        let config: Config = toml::from_str(
            r#"
            [sources.acme]
            scheme = "hmac"
            secret_id = "switchyard/dev/source/acme"
            header = "X-Acme-Signature"
            prefix = "sha256="
            encoding = "hex"
            timestamp_header = "X-Acme-Timestamp"
            id_header = "X-Acme-Event"

            [sources.defaults]
            scheme = "hmac"
            header = "X-Sig"
            secret_id = "switchyard/dev/source/defaults"

            [sources.stripe]
            scheme = "stripe"
            secret_id = "switchyard/dev/source/stripe"

            [sources.svix]
            secret_id = "switchyard/dev/source/svix"
            scheme = "standard_webhooks"
            "#,
        )
        .unwrap();
        let scheme = |name: &str| config.sources[name].scheme.clone();
        assert_eq!(scheme("acme"), timed());
        let defaults = HmacScheme { encoding: Encoding::Hex, ..plain_config() };
        assert_eq!(scheme("defaults"), Scheme::Hmac(defaults));
        assert_eq!(scheme("stripe"), Scheme::Stripe);
        assert_eq!(scheme("svix"), Scheme::StandardWebhooks);
        assert_eq!(config.sources["svix"].secret_id, "switchyard/dev/source/svix");
        let github = json!({"scheme": "github", "secret_id": "s"});
        assert_eq!(serde_json::from_value::<Source>(github).unwrap().scheme, Scheme::Github);
        let base32 = json!({"scheme": "hmac", "header": "X-Sig", "encoding": "base32"});
        for bad in [json!({"scheme": "paypal"}), json!({"scheme": "hmac"}), base32] {
            assert!(serde_json::from_value::<Scheme>(bad.clone()).is_err(), "{bad}");
        }
    }
}
