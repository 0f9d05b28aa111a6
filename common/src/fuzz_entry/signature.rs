//! Signature targets. Input: one line per header the scheme reads, in the order
//! given below, then the body (everything after the last of those lines). A header
//! line holding NUL bytes is that header repeated (one value per NUL-separated
//! piece); a value HTTP refuses (control characters) leaves the header out.
//!
//! The secrets and the clock are those of each provider's published test vector
//! (see the scheme's unit tests), so a seed that is the vector verifies and the
//! fuzzer starts from the accepting path.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::signature::{sign, verify, Encoding, HmacScheme, Scheme, SignatureError, SigningSecret, Verified};

struct Case {
    scheme: Scheme,
    headers: &'static [&'static str],
    /// Which of `headers` carries the event id, if any.
    id_header: Option<usize>,
    secret: &'static str,
    now: i64,
}

/// Another secret, configured after the vector's one: key rotation's second key.
const OTHER_SECRET: &str = "whsec_b3RoZXItZnV6ei1zZWNyZXQ=";
const TOLERANCE_SECS: i64 = 300;

/// `Stripe-Signature`, body.
pub fn stripe_signature(data: &[u8]) {
    check(&stripe(), data);
}

/// `X-Hub-Signature-256`, `X-GitHub-Delivery`, body.
pub fn github_signature(data: &[u8]) {
    check(&github(), data);
}

/// `X-Shopify-Hmac-Sha256`, `X-Shopify-Webhook-Id`, body.
pub fn shopify_signature(data: &[u8]) {
    check(&shopify(), data);
}

/// `webhook-id`, `webhook-timestamp`, `webhook-signature`, body.
pub fn standard_signature(data: &[u8]) {
    check(&standard(), data);
}

/// The generic scheme, twice: hex with a prefix, a signed timestamp and an id
/// (`X-Acme-Signature`, `X-Acme-Timestamp`, `X-Acme-Event`, body), and plain
/// base64 of the body in `X-Acme-Signature` (the same input read again).
pub fn hmac_signature(data: &[u8]) {
    check(&hmac_timed(), data);
    check(&hmac_plain(), data);
}

fn stripe() -> Case {
    Case { scheme: Scheme::Stripe, headers: &["stripe-signature"], id_header: None, secret: STRIPE, now: 1_700_000_000 }
}

fn github() -> Case {
    let headers = &["x-hub-signature-256", "x-github-delivery"];
    Case { scheme: Scheme::Github, headers, id_header: Some(1), secret: GITHUB, now: 0 }
}

fn shopify() -> Case {
    let headers = &["x-shopify-hmac-sha256", "x-shopify-webhook-id"];
    Case { scheme: Scheme::Shopify, headers, id_header: Some(1), secret: SHOPIFY, now: 0 }
}

fn standard() -> Case {
    let headers = &["webhook-id", "webhook-timestamp", "webhook-signature"];
    Case { scheme: Scheme::StandardWebhooks, headers, id_header: Some(0), secret: STANDARD, now: 1_614_265_330 }
}

const ACME_HEADERS: &[&str] = &["x-acme-signature", "x-acme-timestamp", "x-acme-event"];

fn hmac_timed() -> Case {
    let scheme = Scheme::Hmac(HmacScheme {
        header: "X-Acme-Signature".into(),
        prefix: "sha256=".into(),
        encoding: Encoding::Hex,
        timestamp_header: Some("X-Acme-Timestamp".into()),
        id_header: Some("X-Acme-Event".into()),
    });
    Case { scheme, headers: ACME_HEADERS, id_header: Some(2), secret: ACME, now: 1_700_000_000 }
}

fn hmac_plain() -> Case {
    let scheme = Scheme::Hmac(HmacScheme {
        header: "X-Acme-Signature".into(),
        prefix: String::new(),
        encoding: Encoding::Base64,
        timestamp_header: None,
        id_header: None,
    });
    Case { scheme, headers: ACME_HEADERS, id_header: None, secret: ACME, now: 0 }
}

// The published (or independently computed) vectors' secrets, as in the unit tests.
const STRIPE: &str = "whsec_stripe_example_secret";
const GITHUB: &str = "It's a Secret to Everybody";
const SHOPIFY: &str = "shpss_example_secret";
const STANDARD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ACME: &str = "acme-secret";

/// Verifies the input as sent, then signs its body (with its id) and verifies that.
fn check(case: &Case, data: &[u8]) {
    let (headers, lines, body) = split(case.headers, data);
    let secrets = [SigningSecret::new(case.secret), SigningSecret::new(OTHER_SECRET)];
    match verify_as_sent(case, &headers, body) {
        Ok(verified) => {
            if let Some(t) = verified.timestamp {
                assert!(case.now.abs_diff(t) <= TOLERANCE_SECS as u64, "accepted a timestamp out of tolerance: {t}");
            }
            let sent_id = case.id_header.and_then(|i| headers.get(case.headers[i])?.to_str().ok());
            let sent_id = sent_id.map(str::trim).filter(|id| !id.is_empty());
            assert_eq!(verified.event_id.as_deref(), sent_id, "event id is not the header's");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains(case.secret) && !message.contains(OTHER_SECRET), "error shows a secret");
        }
    }

    // Whatever body and id `sign` accepts, `verify` must accept in return.
    let id = case.id_header.and_then(|i| lines.get(i)).and_then(|l| std::str::from_utf8(l).ok()).unwrap_or("");
    let Ok(signed) = sign(&case.scheme, &secrets[0], body, case.now, id) else { return };
    let signed: HeaderMap = signed.into_iter().collect();
    let verified = verify(&case.scheme, &signed, body, &secrets, case.now, TOLERANCE_SECS);
    let verified = verified.unwrap_or_else(|e| panic!("verify refused what sign made ({e}): id {id:?}"));
    assert_eq!(verified.key_index, 0, "signed with the first secret");
    if case.id_header.is_some() {
        let expected = (!id.is_empty()).then_some(id);
        assert_eq!(verified.event_id.as_deref(), expected, "the signed id is not read back");
    }
}

fn verify_as_sent(case: &Case, headers: &HeaderMap, body: &[u8]) -> Result<Verified, SignatureError> {
    let secrets = [SigningSecret::new(case.secret), SigningSecret::new(OTHER_SECRET)];
    verify(&case.scheme, headers, body, &secrets, case.now, TOLERANCE_SECS)
}

/// The header map (named `names`), the raw header lines and the body of `data`.
fn split<'a>(names: &[&'static str], data: &'a [u8]) -> (HeaderMap, Vec<&'a [u8]>, &'a [u8]) {
    let mut lines = Vec::new();
    let mut rest = data;
    for _ in names {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else { break };
        lines.push(&rest[..end]);
        rest = &rest[end + 1..];
    }
    let mut headers = HeaderMap::new();
    for (name, line) in names.iter().zip(&lines) {
        for piece in line.split(|&b| b == 0) {
            if let Ok(value) = HeaderValue::from_bytes(piece) {
                headers.append(HeaderName::from_static(name), value);
            }
        }
    }
    (headers, lines, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzzer starts from the accepting path only if the harness's secrets and
    /// clocks are the vectors' own: the published vectors, in the target's layout.
    #[test]
    fn each_signature_target_accepts_its_providers_published_vector_in_its_input_layout() {
        let vectors: [(Case, &[u8]); 5] = [
            (stripe(), b"t=1700000000,v1=0ce52b5cc981c5efbed579d14f6a579d03f0b9167debc23ddf573f8519400ad9\n{\"id\":\"evt_1NG8Du2eZvKYlo2CUI79vXWy\",\"object\":\"event\"}"),
            (github(), b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17\nd-1\nHello, World!"),
            (shopify(), b"35DGSCsYGhssCXikM1rFvRtvLrHjZ3LG9BTZ5lYDs7g=\nw-1\n{\"id\":820982911946154508,\"email\":\"jon@example.com\"}"),
            (standard(), b"msg_p5jXN8AQM9LWM0D4loKWxJek\n1614265330\nv1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\n{\"test\": 2432232314}"),
            (hmac_timed(), b"sha256=f3299f0d735063a1152ae3a0d3e8fcf98a4032308189c917e5b19b5533843acd\n1700000000\nevt_42\n{\"event\":\"ping\"}"),
        ];
        for (case, data) in vectors {
            let (headers, _, body) = split(case.headers, data);
            let verified = verify_as_sent(&case, &headers, body);
            assert!(verified.is_ok_and(|v| v.key_index == 0), "{:?}", case.scheme);
            check(&case, data);
        }
    }

    #[test]
    fn a_header_line_with_nul_bytes_is_that_header_repeated() {
        let (headers, lines, body) = split(&["x-a", "x-b"], b"1\x002\n\x01\nrest\nof body");
        assert_eq!(headers.get_all("x-a").iter().count(), 2);
        assert!(headers.get("x-b").is_none(), "a control character leaves the header out");
        assert_eq!((lines.len(), body), (2, b"rest\nof body".as_slice()));
    }
}
